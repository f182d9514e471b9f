//! Following `vigie.models`: a thread that reads every partition from its end and hands each
//! new model event to a callback. Services call their registry poll from it, so a promotion
//! reaches every replica at once; the poll stays the fallback (a replica that missed an event
//! while the broker was away still switches on its next poll).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::{ModelEvent, Result};

/// The following thread; stops when dropped.
#[derive(Debug)]
pub struct Follower {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Follower {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// How often a missing topic is looked for again.
const RETRY: Duration = Duration::from_secs(2);

/// Starts following `topic` on `brokers` from its current end; `on_event` runs on the
/// following thread for every event that reads as a [`ModelEvent`] (others are logged and
/// skipped).
pub fn follow(
    brokers: &str,
    topic: &str,
    on_event: impl FnMut(ModelEvent) + Send + 'static,
) -> Result<Follower> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "vigie-model-follower")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .set("reconnect.backoff.max.ms", "1000")
        .create()?;
    let stop = Arc::new(AtomicBool::new(false));
    let thread = {
        let (stop, topic) = (stop.clone(), topic.to_string());
        std::thread::Builder::new()
            .name("model-events".into())
            .spawn(move || run(&consumer, &topic, &stop, on_event))
            .map_err(|e| crate::Error::Config(format!("cannot start a thread: {e}")))?
    };
    Ok(Follower {
        stop,
        thread: Some(thread),
    })
}

/// Follows the model events on `topic` and calls `wake` for each, once logged: the prediction
/// and drift services wake their registry poll with it.
pub fn wake_on_model_events(
    brokers: &str,
    topic: &str,
    wake: impl Fn() + Send + 'static,
) -> Result<Follower> {
    follow(brokers, topic, move |event| {
        tracing::info!(
            model = %event.model,
            version = event.version,
            action = ?event.action,
            by = %event.by,
            "model event: reading the registry now"
        );
        wake();
    })
}

fn run(
    consumer: &BaseConsumer,
    topic: &str,
    stop: &AtomicBool,
    mut on_event: impl FnMut(ModelEvent),
) {
    let mut assigned = false;
    while !stop.load(Ordering::Relaxed) {
        if !assigned {
            assigned = assign_from_end(consumer, topic);
            if !assigned {
                // Sleep in short steps so that dropping the follower stays prompt.
                for _ in 0..(RETRY.as_millis() / 100) {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                continue;
            }
        }
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Err(error)) => tracing::debug!(%error, topic, "model events"),
            Some(Ok(message)) => {
                let payload = message.payload().unwrap_or_default();
                match serde_json::from_slice::<ModelEvent>(payload) {
                    Ok(event) => on_event(event),
                    Err(error) => tracing::warn!(
                        %error,
                        topic,
                        partition = message.partition(),
                        offset = message.offset(),
                        "unreadable model event skipped"
                    ),
                }
            }
        }
    }
}

/// Assigns every partition of `topic` at its end; false when the topic is not there (yet).
fn assign_from_end(consumer: &BaseConsumer, topic: &str) -> bool {
    let Ok(metadata) = consumer
        .client()
        .fetch_metadata(Some(topic), rdkafka::util::Timeout::After(RETRY))
    else {
        return false;
    };
    let mut assignment = TopicPartitionList::new();
    for t in metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic && t.error().is_none())
    {
        for p in t.partitions() {
            if assignment
                .add_partition_offset(topic, p.id(), Offset::End)
                .is_err()
            {
                return false;
            }
        }
    }
    assignment.count() > 0 && consumer.assign(&assignment).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MODELS_TOPIC, ModelAction};

    #[test]
    fn a_published_model_event_reaches_the_callback() {
        let (broker, producer) = crate::broker_and_producer();
        let brokers = broker.bootstrap_servers();
        // The mock cluster creates the topic on first use; make it exist before following.
        let old = ModelEvent {
            model: "toy".into(),
            version: 1,
            action: ModelAction::Promoted,
            ts: chrono::Utc::now(),
            by: "test".into(),
        };
        let json = serde_json::to_vec(&old).expect("json");
        producer
            .publish(MODELS_TOPIC, "toy", &json, &[])
            .expect("queued");
        assert_eq!(producer.flush(Duration::from_secs(10)), 0);

        let (tx, rx) = std::sync::mpsc::channel();
        let follower = follow(&brokers, MODELS_TOPIC, move |e| {
            let _ = tx.send(e);
        })
        .expect("follower");
        // Keep publishing until the follower, which starts at the end, sees one: the first
        // events may land before its assignment.
        let new = ModelEvent {
            version: 2,
            ..old.clone()
        };
        let json = serde_json::to_vec(&new).expect("json");
        let mut got = None;
        for _ in 0..60 {
            producer
                .publish(MODELS_TOPIC, "toy", &json, &[])
                .expect("queued");
            producer.flush(Duration::from_secs(5));
            if let Ok(e) = rx.recv_timeout(Duration::from_millis(500)) {
                got = Some(e);
                break;
            }
        }
        drop(follower);
        let got = got.expect("an event within 30 s");
        assert_eq!(
            got, new,
            "events before the follower started are not replayed"
        );
    }
}
