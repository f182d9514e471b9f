//! Checkpoints: the drift state (every model's windows) and the consumer's position, saved
//! together in the registry database.
//!
//! The consumer commits to Kafka the offsets of the checkpoint it has just saved, so the
//! group's committed offsets never pass the saved state. After a restart or a crash the state
//! is read back and consumption resumes at the checkpoint's positions; events counted after
//! the last checkpoint were lost with the process's memory, and are counted again from the
//! topic: none is lost, none is counted twice. The checkpoint also holds the first event
//! counted on each partition (its origin): a restart finds it again at the start of the
//! partition, or knows the log is another one (a new broker, a topic created again) and
//! counts that log from its beginning (see `consumer`).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::quality::QualityState;
use crate::unseen::UnseenCodes;
use crate::watch::{Counts, Mark, Positions, State};

/// Version of the checkpoint format: 2 since windows are per partition, in panes. A format 1
/// checkpoint (one sliding window of the last events of every partition) gives its positions
/// and its quality state back; its windows cannot be cut into partitions and start empty.
pub const FORMAT: u32 = 2;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Checkpoint {
    pub format: u32,
    pub topic: String,
    pub written_at: DateTime<Utc>,
    /// Next offset to count, per partition.
    pub offsets: BTreeMap<i32, i64>,
    /// The first event counted on each partition (absent from checkpoints written before
    /// origins were kept: their positions are taken as they are).
    #[serde(default)]
    pub origins: BTreeMap<i32, Mark>,
    /// The labels topic's position (absent from checkpoints written before labels were read:
    /// the labels topic is then read from the group's committed offsets or its beginning).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<TopicPosition>,
    pub models: BTreeMap<String, ModelCheckpoint>,
}

/// A topic's position, as the checkpoint holds it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TopicPosition {
    pub topic: String,
    pub offsets: BTreeMap<i32, i64>,
    pub origins: BTreeMap<i32, Mark>,
}

/// One model's windows.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelCheckpoint {
    /// The reference version the windows are binned for.
    pub version: u32,
    pub spec_hash: String,
    pub since: DateTime<Utc>,
    /// Each partition's counts (absent from format 1).
    #[serde(default)]
    pub partitions: BTreeMap<i32, Counts>,
    pub tumbling_scored_until_ms: i64,
    /// Each partition's answers waiting for labels, labelled answers, live answers and
    /// periods (format 1 held one for every partition: it is not read back).
    #[serde(default)]
    pub qualities: BTreeMap<i32, QualityState>,
}

/// What a restore did per model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Restored {
    /// Windows back as they were.
    Windows { model: String, events: u64 },
    /// The checkpoint's windows are for another reference (a promotion in between) or do
    /// not fit its bins: the model starts from empty windows.
    Discarded { model: String, reason: String },
}

impl State {
    /// The state as a checkpoint of `topic` (and of `labels_topic`, when labels are read).
    pub fn checkpoint(&self, topic: &str, labels_topic: Option<&str>) -> Checkpoint {
        Checkpoint {
            format: FORMAT,
            topic: topic.to_string(),
            written_at: Utc::now(),
            offsets: self.positions.offsets.clone(),
            origins: self.positions.origins.clone(),
            labels: labels_topic.map(|topic| TopicPosition {
                topic: topic.to_string(),
                offsets: self.label_positions.offsets.clone(),
                origins: self.label_positions.origins.clone(),
            }),
            models: self
                .models
                .iter()
                .map(|(name, w)| {
                    (
                        name.clone(),
                        ModelCheckpoint {
                            version: w.reference.version,
                            spec_hash: w.reference.spec_hash.clone(),
                            since: w.since,
                            partitions: w.partitions.clone(),
                            tumbling_scored_until_ms: w.tumbling_scored_until_ms,
                            qualities: w.quality.iter().map(|(&p, q)| (p, q.state())).collect(),
                        },
                    )
                })
                .collect(),
        }
    }

    /// Takes the position of `checkpoint`, and the windows of each model whose reference is
    /// the one the windows were binned for. Models the checkpoint lacks start empty.
    pub fn restore(&mut self, checkpoint: Checkpoint) -> Result<Vec<Restored>, String> {
        if checkpoint.format != FORMAT && checkpoint.format != 1 {
            return Err(format!(
                "checkpoint format {} (this build reads 1 and {FORMAT})",
                checkpoint.format
            ));
        }
        self.positions = Positions {
            offsets: checkpoint.offsets,
            origins: checkpoint.origins,
            recent: BTreeMap::new(),
        };
        if let Some(labels) = checkpoint.labels {
            self.label_positions = Positions {
                offsets: labels.offsets,
                origins: labels.origins,
                recent: BTreeMap::new(),
            };
        }
        let mut done = Vec::new();
        for (model, saved) in checkpoint.models {
            let Some(watch) = self.models.get_mut(&model) else {
                done.push(Restored::Discarded {
                    model,
                    reason: "no reference is loaded for it".into(),
                });
                continue;
            };
            let reference = watch.reference.clone();
            // Answers waiting for labels come back whatever the version (each answer carries
            // its own); the quality window only with the version it measured.
            for (&partition, state) in &saved.qualities {
                let quality = watch.quality_of(partition);
                quality.restore(state.clone());
                if saved.version != reference.version {
                    quality.clear_window();
                }
            }
            if saved.version != reference.version || saved.spec_hash != reference.spec_hash {
                done.push(Restored::Discarded {
                    model,
                    reason: format!(
                        "windows of version {}, reference now version {}",
                        saved.version, reference.version
                    ),
                });
                continue;
            }
            if checkpoint.format == 1 {
                done.push(Restored::Discarded {
                    model,
                    reason: "windows of checkpoint format 1 are not per partition".into(),
                });
                continue;
            }
            let config = watch.config;
            let mut saved = saved;
            for counts in saved.partitions.values_mut() {
                // Counts saved before unseen codes were counted per partition.
                if counts.unseen.features.is_empty() {
                    counts.unseen = UnseenCodes::new(reference.binner.features());
                }
            }
            if let Some((p, _)) = saved
                .partitions
                .iter()
                .find(|(_, c)| !c.fits(&reference, &config))
            {
                done.push(Restored::Discarded {
                    model,
                    reason: format!(
                        "the counts of partition {p} are over other bins or other panes"
                    ),
                });
                continue;
            }
            let events = saved.partitions.values().map(|c| c.events).sum();
            watch.partitions = saved.partitions;
            watch.tumbling_scored_until_ms = saved.tumbling_scored_until_ms;
            watch.since = saved.since;
            done.push(Restored::Windows { model, events });
        }
        Ok(done)
    }
}
