//! `vigie events`: look at what is on Vigie's topics.

use std::time::Duration;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Count the messages on a topic (sum over partitions of high minus low watermark).
    Count {
        #[arg(long, env = "KAFKA_BROKERS")]
        kafka_brokers: String,
        #[arg(long, default_value = vigie_stream::PREDICTIONS_TOPIC)]
        topic: String,
    },
    /// Read a prediction topic from the start until it goes quiet and count its events: records,
    /// distinct event ids, duplicates and unreadable payloads.
    Audit {
        #[arg(long, env = "KAFKA_BROKERS")]
        kafka_brokers: String,
        #[arg(long, default_value = vigie_stream::PREDICTIONS_TOPIC)]
        topic: String,
        /// Stop after this many seconds without a message.
        #[arg(long, default_value_t = 10)]
        idle_secs: u64,
    },
}

pub async fn run(command: &Command) -> anyhow::Result<()> {
    match command {
        Command::Count {
            kafka_brokers,
            topic,
        } => {
            let (brokers, t) = (kafka_brokers.clone(), topic.clone());
            let partitions = tokio::task::spawn_blocking(move || {
                vigie_stream::read::count(&brokers, &t, Duration::from_secs(10))
            })
            .await??;
            let total: i64 = partitions.iter().map(|(_, n)| n).sum();
            for (p, n) in &partitions {
                println!("{topic}[{p}] {n}");
            }
            println!("{topic} {total}");
        }
        Command::Audit {
            kafka_brokers,
            topic,
            idle_secs,
        } => {
            let (brokers, t, idle) = (
                kafka_brokers.clone(),
                topic.clone(),
                Duration::from_secs(*idle_secs),
            );
            let a =
                tokio::task::spawn_blocking(move || vigie_stream::read::audit(&brokers, &t, idle))
                    .await??;
            println!(
                "{topic}: {} records, {} distinct event ids, {} duplicates, {} unreadable",
                a.records, a.distinct, a.duplicates, a.unreadable
            );
        }
    }
    Ok(())
}
