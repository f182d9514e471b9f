//! Checkpoints: the drift state and the consumer's position, saved together in the registry
//! database, one row per partition (`group/partition`): its positions on both topics, and
//! every model's counts and quality on it. The partition is the unit of recovery: whichever
//! instance reads it next resumes it from its row.
//!
//! The consumer commits to Kafka the offsets of the checkpoints it has just saved, so the
//! group's committed offsets never pass the saved state. After a restart or a crash the state
//! is read back and consumption resumes at the checkpoints' positions; events counted after
//! the last checkpoint were lost with the process's memory, and are counted again from the
//! topic: none is lost, none is counted twice. A checkpoint also holds the first event
//! counted on its partition (its origin): a restart finds it again at the start of the
//! partition, or knows the log is another one (a new broker, a topic created again) and
//! counts that log from its beginning (see `consumer`).
//!
//! Groups checkpointed before partitions were saved apart have one row ([`Checkpoint`],
//! formats 1 and 2): it is read once, cut into its partitions ([`Checkpoint::split`]), and
//! deleted at the first save.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::quality::QualityState;
use crate::unseen::UnseenCodes;
use crate::watch::{Counts, Mark, State};

/// The last format of a group's one-row checkpoint: 2, windows per partition, in panes. A
/// format 1 checkpoint (one sliding window of the last events of every partition) gives its
/// positions back; its windows and join state cannot be cut into partitions and start empty.
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

/// Version of the per-partition checkpoint's format.
pub const PARTITION_FORMAT: u32 = 3;

/// One partition's checkpoint: its positions on both topics, and every model's counts and
/// quality on it. An instance of a group saves one per partition it reads, so that whichever
/// instance reads the partition next resumes it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PartitionCheckpoint {
    pub format: u32,
    pub topic: String,
    pub partition: i32,
    pub written_at: DateTime<Utc>,
    /// Next offset to count (absent before the first event).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<Mark>,
    /// The labels topic's partition of the same number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<PartitionPosition>,
    pub models: BTreeMap<String, PartitionModel>,
}

/// A partition's position on a topic.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PartitionPosition {
    pub topic: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<Mark>,
}

/// A model's counts and quality on one partition.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PartitionModel {
    pub version: u32,
    pub spec_hash: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counts: Option<Counts>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality: Option<QualityState>,
}

/// The registry key of a partition's checkpoint.
pub fn partition_key(group: &str, partition: i32) -> String {
    format!("{group}/{partition}")
}

impl Checkpoint {
    /// A whole-state checkpoint (one row per group, before partitions moved between
    /// instances) cut into its partitions' checkpoints.
    pub fn split(self) -> Vec<PartitionCheckpoint> {
        let mut partitions: std::collections::BTreeSet<i32> =
            self.offsets.keys().copied().collect();
        for model in self.models.values() {
            partitions.extend(model.partitions.keys());
            partitions.extend(model.qualities.keys());
        }
        if let Some(labels) = &self.labels {
            partitions.extend(labels.offsets.keys());
        }
        partitions
            .into_iter()
            .map(|p| PartitionCheckpoint {
                format: PARTITION_FORMAT,
                topic: self.topic.clone(),
                partition: p,
                written_at: self.written_at,
                offset: self.offsets.get(&p).copied(),
                origin: self.origins.get(&p).cloned(),
                labels: self.labels.as_ref().map(|l| PartitionPosition {
                    topic: l.topic.clone(),
                    offset: l.offsets.get(&p).copied(),
                    origin: l.origins.get(&p).cloned(),
                }),
                models: self
                    .models
                    .iter()
                    .map(|(name, m)| {
                        (
                            name.clone(),
                            PartitionModel {
                                version: m.version,
                                spec_hash: m.spec_hash.clone(),
                                counts: m.partitions.get(&p).cloned(),
                                quality: m.qualities.get(&p).cloned(),
                            },
                        )
                    })
                    .collect(),
            })
            .collect()
    }
}

impl State {
    /// The checkpoint of one partition this instance reads.
    pub fn partition_checkpoint(
        &self,
        topic: &str,
        labels_topic: Option<&str>,
        partition: i32,
    ) -> PartitionCheckpoint {
        PartitionCheckpoint {
            format: PARTITION_FORMAT,
            topic: topic.to_string(),
            partition,
            written_at: Utc::now(),
            offset: self.positions.offsets.get(&partition).copied(),
            origin: self.positions.origins.get(&partition).cloned(),
            labels: labels_topic.map(|topic| PartitionPosition {
                topic: topic.to_string(),
                offset: self.label_positions.offsets.get(&partition).copied(),
                origin: self.label_positions.origins.get(&partition).cloned(),
            }),
            models: self
                .models
                .iter()
                .map(|(name, w)| {
                    (
                        name.clone(),
                        PartitionModel {
                            version: w.reference.version,
                            spec_hash: w.reference.spec_hash.clone(),
                            counts: w.partitions.get(&partition).cloned(),
                            quality: w.quality.get(&partition).map(|q| q.state()),
                        },
                    )
                })
                .collect(),
        }
    }

    /// Takes a partition's checkpoint back: its positions, and each model's counts when they
    /// are binned for the model's reference now (its quality whatever the version: answers
    /// waiting carry their own; the window only with the version it measured).
    pub fn restore_partition(&mut self, checkpoint: PartitionCheckpoint) -> Vec<Restored> {
        let p = checkpoint.partition;
        if let Some(offset) = checkpoint.offset {
            self.positions.offsets.insert(p, offset);
        }
        if let Some(origin) = checkpoint.origin {
            self.positions.origins.insert(p, origin);
        }
        if let Some(labels) = checkpoint.labels {
            if let Some(offset) = labels.offset {
                self.label_positions.offsets.insert(p, offset);
            }
            if let Some(origin) = labels.origin {
                self.label_positions.origins.insert(p, origin);
            }
        }
        let mut done = Vec::new();
        for (model, saved) in checkpoint.models {
            let Some(watch) = self.models.get_mut(&model) else {
                continue;
            };
            let reference = watch.reference.clone();
            let same = saved.version == reference.version && saved.spec_hash == reference.spec_hash;
            if let Some(state) = saved.quality {
                let quality = watch.quality_of(p);
                quality.restore(state);
                if !same {
                    quality.clear_window();
                }
            }
            let Some(mut counts) = saved.counts else {
                continue;
            };
            if counts.unseen.features.is_empty() {
                counts.unseen = UnseenCodes::new(reference.binner.features());
            }
            if !same {
                done.push(Restored::Discarded {
                    model,
                    reason: format!(
                        "partition {p}: counts of version {}, reference now version {}",
                        saved.version, reference.version
                    ),
                });
            } else if !counts.fits(&reference, &watch.config) {
                done.push(Restored::Discarded {
                    model,
                    reason: format!("partition {p}: counts over other bins or other panes"),
                });
            } else {
                let events = counts.events;
                watch.partitions.insert(p, counts);
                done.push(Restored::Windows { model, events });
            }
        }
        done
    }

    /// Forgets a partition this instance no longer reads: its positions, counts and quality.
    pub fn release(&mut self, partition: i32) {
        for positions in [&mut self.positions, &mut self.label_positions] {
            positions.offsets.remove(&partition);
            positions.origins.remove(&partition);
            positions.recent.remove(&partition);
        }
        for watch in self.models.values_mut() {
            watch.release(partition);
        }
    }
}
