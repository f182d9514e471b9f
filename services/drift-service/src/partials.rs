//! Partials: what each instance of a group counted of its partitions, published on a compacted
//! topic (`vigie.drift.partials`) for the others.
//!
//! An instance reads some partitions of `vigie.predictions` (the consumer group shares them
//! out) and keeps each one's counts ([`crate::watch::Counts`]) and quality
//! ([`crate::quality::Quality`]). At every checkpoint it publishes, for each model and each of
//! its partitions, a [`Partial`] keyed `model/partition`: the latest one per key is all a
//! reader needs, which is what compaction keeps. Every instance reads every partial (its own
//! too) and adds, for each partition it does not read, the latest partial to its own counts:
//! each instance scores the same sums, which are those of a single instance reading every
//! partition (counts are plain sums, added in partition order).
//!
//! A partial is only added when it was counted against the reference the reader scores with
//! (same version and spec); others are counted in `vigie_drift_partials_total{outcome}` and
//! left out, as are partials of another group or that do not fit the reference's bins.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::quality::QualityShare;
use crate::watch::Counts;

/// Version of the partial's format.
pub const FORMAT: u32 = 1;

/// One partition's counts of one model, as an instance publishes them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Partial {
    pub format: u32,
    /// The consumer group of the instance that counted them.
    pub group: String,
    pub model: String,
    pub partition: i32,
    /// The reference the counts are binned for.
    pub version: u32,
    pub spec_hash: String,
    /// The instance that counted them (its `--instance` name).
    pub instance: String,
    pub written_at: DateTime<Utc>,
    /// The predictions partition's next offset: every event before it is counted.
    pub offset: i64,
    pub counts: Counts,
    pub quality: QualityShare,
}

/// The key of a model's partial of a partition.
pub fn key(model: &str, partition: i32) -> String {
    format!("{model}/{partition}")
}

/// What became of a partial read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Added to the sums (the partition is read by another instance).
    Added,
    /// Of a partition this instance reads: its own counts are newer.
    Own,
    /// Counted against another reference version (a promotion in between).
    OtherReference,
    /// Not a partial of this format, or its counts do not fit the reference's bins.
    Unreadable,
    /// Of a model this instance does not watch, or of another group.
    Foreign,
}

impl Outcome {
    pub const ALL: [Outcome; 5] = [
        Outcome::Added,
        Outcome::Own,
        Outcome::OtherReference,
        Outcome::Unreadable,
        Outcome::Foreign,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Added => "added",
            Outcome::Own => "own",
            Outcome::OtherReference => "other_reference",
            Outcome::Unreadable => "unreadable",
            Outcome::Foreign => "foreign",
        }
    }
}

/// Checks at start that the partials topic exists and, when `compaction` is asked, that it is
/// compacted (`cleanup.policy` holds `compact`): a topic that deletes old messages would lose
/// the latest partial of a partition idle for longer than its retention. A broker that does
/// not answer is left to the consumer's retries (logged); a broker that answers without the
/// topic, or with the topic not compacted, is an error that names it.
pub async fn check_topic(brokers: &str, topic: &str, compaction: bool) -> Result<(), String> {
    let (b, t) = (brokers.to_string(), topic.to_string());
    let found = tokio::task::spawn_blocking(move || -> Result<bool, String> {
        let client: rdkafka::consumer::BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &b)
            .create()
            .map_err(|e| e.to_string())?;
        let metadata = rdkafka::consumer::Consumer::fetch_metadata(
            &client,
            Some(&t),
            std::time::Duration::from_secs(10),
        )
        .map_err(|e| e.to_string())?;
        Ok(metadata
            .topics()
            .iter()
            .any(|m| m.name() == t && m.error().is_none() && !m.partitions().is_empty()))
    })
    .await
    .map_err(|e| e.to_string())?;
    match found {
        Ok(true) => {}
        Ok(false) => {
            return Err(format!(
                "the partials topic {topic} does not exist: create it compacted, with as many partitions as there will be drift instances or more (kafka-topics.sh --create --topic {topic} --config cleanup.policy=compact)"
            ));
        }
        Err(e) => {
            tracing::warn!(error = %e, %topic, "cannot ask the broker about the partials topic; going on");
            return Ok(());
        }
    }
    if !compaction {
        return Ok(());
    }
    let admin: rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext> =
        rdkafka::ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .create()
            .map_err(|e| format!("cannot create an admin client: {e}"))?;
    let options = rdkafka::admin::AdminOptions::new()
        .request_timeout(Some(std::time::Duration::from_secs(10)));
    let described = admin
        .describe_configs(&[rdkafka::admin::ResourceSpecifier::Topic(topic)], &options)
        .await;
    let policy = match described.as_deref() {
        Ok([Ok(resource)]) => resource
            .get("cleanup.policy")
            .and_then(|e| e.value.clone())
            .unwrap_or_else(|| "delete".into()),
        Ok(other) => {
            tracing::warn!(?other, %topic, "the broker did not describe the partials topic's configuration; going on");
            return Ok(());
        }
        Err(e) => {
            tracing::warn!(error = %e, %topic, "cannot read the partials topic's configuration; going on");
            return Ok(());
        }
    };
    if policy.split(',').any(|p| p.trim() == "compact") {
        Ok(())
    } else {
        Err(format!(
            "the partials topic {topic} is not compacted (cleanup.policy={policy}): a partition's latest counts would be deleted with its old messages; set cleanup.policy=compact on it"
        ))
    }
}

/// The key of a model's shared noise injection.
pub fn noise_key(model: &str) -> String {
    format!("noise/{model}")
}

/// A noise injection an admin started or stopped on one instance, shared with the group on
/// the partials topic (key [`noise_key`]), so that every instance changes the events of its
/// own partitions alike: the sums are those of the whole stream noised. The latest per model is
/// what counts; an instance that starts reads it back and resumes the injection until it
/// expires.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SharedNoise {
    pub format: u32,
    pub group: String,
    pub model: String,
    /// The injection; `None` when it was stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<vigie_synthetic::NoiseSpec>,
    pub started_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub by: String,
    pub instance: String,
}
