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
use vigie_drift::{Histograms, SlidingState, SlidingWindow, TumblingWindows};

use crate::quality::QualityState;
use crate::unseen::UnseenCodes;
use crate::watch::{Mark, Positions, State};

/// Version of the checkpoint format.
pub const FORMAT: u32 = 1;

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
    pub events: u64,
    pub late: u64,
    pub sliding: SlidingState,
    /// The answers' window (absent for a model whose answers have no reference, and in
    /// checkpoints written before answers were watched).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predicted: Option<SlidingState>,
    pub tumbling: TumblingWindows,
    pub total: Histograms,
    pub tumbling_scored_until_ms: i64,
    /// Answers waiting for labels and the quality window (absent from checkpoints written
    /// before labels were joined).
    #[serde(default)]
    pub quality: QualityState,
    /// Codes the spec does not list, by feature and value (absent from checkpoints written
    /// before they were counted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unseen: Option<UnseenCodes>,
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
                            events: w.events,
                            late: w.late,
                            sliding: w.sliding.state(),
                            predicted: w.predicted.as_ref().map(SlidingWindow::state),
                            tumbling: w.tumbling.clone(),
                            total: w.total.clone(),
                            tumbling_scored_until_ms: w.tumbling_scored_until_ms,
                            quality: w.quality.state(),
                            unseen: Some(w.unseen.clone()),
                        },
                    )
                })
                .collect(),
        }
    }

    /// Takes the position of `checkpoint`, and the windows of each model whose reference is
    /// the one the windows were binned for. Models the checkpoint lacks start empty.
    pub fn restore(&mut self, checkpoint: Checkpoint) -> Result<Vec<Restored>, String> {
        if checkpoint.format != FORMAT {
            return Err(format!(
                "checkpoint format {} (this build reads {FORMAT})",
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
            watch.quality.restore(saved.quality.clone());
            if saved.version != reference.version {
                watch.quality.clear_window();
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
            let binner = &reference.binner;
            let sliding =
                match SlidingWindow::restore(binner, self.config.sliding_events, &saved.sliding) {
                    Ok(s) => s,
                    Err(e) => {
                        done.push(Restored::Discarded {
                            model,
                            reason: format!("sliding window: {e}"),
                        });
                        continue;
                    }
                };
            if !saved.tumbling.fits(binner) || !saved.total.fits(binner) {
                done.push(Restored::Discarded {
                    model,
                    reason: "tumbling windows or totals over other bins".into(),
                });
                continue;
            }
            watch.sliding = sliding;
            // The answers' window comes back when it fits; otherwise it refills from here.
            if let (Some(saved), Some(p)) = (&saved.predicted, &reference.predictions) {
                match SlidingWindow::restore(&p.binner, self.config.sliding_events, saved) {
                    Ok(window) => watch.predicted = Some(window),
                    Err(e) => {
                        tracing::warn!(%model, error = %e, "the answers' window does not fit its reference: it starts empty");
                    }
                }
            }
            // Tumbling windows of another width (the configuration changed) start over.
            if saved.tumbling.width_ms() == self.config.tumbling_ms {
                watch.tumbling = saved.tumbling;
                watch.tumbling_scored_until_ms = saved.tumbling_scored_until_ms;
            }
            watch.total = saved.total;
            if let Some(unseen) = saved.unseen.filter(|u| u.fits(binner.features())) {
                watch.unseen = unseen;
            }
            watch.events = saved.events;
            watch.late = saved.late;
            watch.since = saved.since;
            done.push(Restored::Windows {
                model,
                events: saved.events,
            });
        }
        Ok(done)
    }
}
