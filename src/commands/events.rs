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
    }
    Ok(())
}
