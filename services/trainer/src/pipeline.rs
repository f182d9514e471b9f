//! One retraining run, step by step, each step persisted before the next starts:
//!
//! 1. **training**: the model's spec (from the models folder), its training rows, labelled
//!    traffic and synthetic rows as the spec's `[retraining]` section says; fit, threshold on
//!    the validation slice, refit. The candidate is registered (artifact written atomically
//!    with its sha256, status `candidate`).
//! 2. **evaluated**: candidate and production, each read back from the registry (sha256
//!    checked) and run with its own imputation on the same fixed holdout; paired bootstrap on
//!    the spec's primary metric.
//! 3. **promoted** when the bootstrap's lower bound clears the margin (the candidate's artifact
//!    is checked once more, the registry row flips, a model event goes to `vigie.models`), else
//!    **rejected**. Any error, or a panic in training, ends the run **failed** and leaves
//!    production as it was.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use chrono::DateTime;
use serde::Serialize;
use serde_json::json;
use vigie_core::artifact::Artifact;
use vigie_core::inference::Model;
use vigie_core::spec::ModelSpec;
use vigie_core::train::{self, PreparedData, TrainedModel};
use vigie_model::bootstrap::{self, Comparison, Evaluation as Figures, Scored};
use vigie_model::metrics::BinaryMetrics;
use vigie_model::regression::RegressionMetrics;
use vigie_registry::{ModelVersion, Registry, Run, RunState, RunUpdate, Started};

use crate::labels;
use crate::state::{AppState, now_ms, refresh_models};

/// What asking for a run gave.
#[derive(Debug, Clone)]
pub enum Asked {
    Started(Run),
    /// A run of the model is not finished.
    Busy(Run),
    /// The model's last run started less than the cooldown ago.
    Cooldown {
        last: Run,
        until: DateTime<chrono::Utc>,
    },
    UnknownModel,
}

/// Starts a run of `model` unless one is running (or, with `cooldown`, one started less than
/// the cooldown ago). The run goes on in the background ([`execute`]).
pub async fn ask(
    state: &AppState,
    model: &str,
    trigger: &str,
    by: &str,
    cooldown: bool,
) -> Result<Asked, vigie_registry::Error> {
    let registry = state.registry();
    let Some(production) = registry.production_of(model).await? else {
        return Ok(Asked::UnknownModel);
    };
    if let Some(active) = registry.active_run(model).await? {
        return Ok(Asked::Busy(active));
    }
    if cooldown && let Some(last) = registry.runs(Some(model), 1).await?.into_iter().next() {
        let until = last.created_at
            + i64::try_from(state.config.cooldown.as_millis()).unwrap_or(i64::MAX / 2);
        if now_ms() < until {
            let until = DateTime::from_timestamp_millis(until).unwrap_or_default();
            return Ok(Asked::Cooldown { last, until });
        }
    }
    let id = uuid::Uuid::now_v7().to_string();
    match registry
        .start_run(&id, model, trigger, by, Some(production.version), now_ms())
        .await?
    {
        Started::Busy(run) => Ok(Asked::Busy(run)),
        Started::Started(run) => {
            state
                .metrics
                .runs_started
                .with_label_values(&[model, trigger])
                .inc();
            tracing::info!(run = %run.id, %model, %trigger, %by, "retraining started");
            tokio::spawn(execute(state.clone(), run.clone()));
            Ok(Asked::Started(run))
        }
    }
}

/// Why a step failed: said in the run's `error`.
pub type StepError = String;

/// Finds the spec of `model` among the `*.toml` files of `dir`.
pub fn find_spec(dir: &Path, model: &str) -> Result<ModelSpec, StepError> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| format!("cannot read the models folder {}: {e}", dir.display()))?;
    let mut paths: Vec<_> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    paths.sort();
    for path in paths {
        match ModelSpec::from_file(&path) {
            Ok(spec) if spec.name == model => return Ok(spec),
            Ok(_) => {}
            Err(e) => tracing::warn!(path = %path.display(), error = %e, "unreadable spec skipped"),
        }
    }
    Err(format!("no spec for model {model:?} in {}", dir.display()))
}

/// What went into a candidate's fit.
#[derive(Debug, Clone, Serialize)]
pub struct DataSummary {
    pub spec_hash: String,
    pub training_rows: usize,
    pub labelled_rows: usize,
    pub synthetic_rows: usize,
    pub fit_rows: usize,
    pub validation_rows: usize,
    pub holdout_rows: usize,
    /// The join of labels and predictions (absent when labelled traffic is off).
    pub labels: Option<labels::Summary>,
    /// Why labelled traffic could not be read, when it could not (the run goes on without).
    pub labels_error: Option<String>,
    pub fit_seconds: f64,
}

/// Loads the data, adds labelled traffic and synthetic rows, fits. Blocks.
pub fn fit_candidate(
    spec: &ModelSpec,
    source: Option<&labels::Source>,
) -> Result<(TrainedModel, PreparedData, DataSummary), StepError> {
    let mut data = PreparedData::load(spec, &mut |_| {}).map_err(|e| e.to_string())?;
    let training_rows = data.fit.x.rows() + data.validation.x.rows();
    let retraining = &spec.retraining;
    let (mut labelled_rows, mut join, mut labels_error) = (0, None, None);
    if retraining.labelled_traffic
        && let Some(source) = source
    {
        match labels::gather(source, &spec.name, &data.schema, &data.holdout_raw) {
            Ok(found) => {
                data.add_fit_rows(&found.x, &found.y)
                    .map_err(|e| format!("labelled rows: {e}"))?;
                labelled_rows = found.y.len();
                join = Some(found.summary);
            }
            Err(e) => {
                tracing::warn!(error = %e, "labelled traffic unavailable; retraining without");
                labels_error = Some(e.to_string());
            }
        }
    }
    let synthetic_rows = data
        .add_synthetic_fit_rows(retraining.synthetic_share, retraining.seed)
        .map_err(|e| format!("synthetic rows: {e}"))?;
    let trained = train::fit_and_evaluate(spec, &data, &spec.algorithm, &mut |_| {})
        .map_err(|e| e.to_string())?;
    let summary = DataSummary {
        spec_hash: spec.hash(),
        training_rows,
        labelled_rows,
        synthetic_rows,
        fit_rows: trained.summary.fit_rows,
        validation_rows: trained.summary.validation_rows,
        holdout_rows: trained.summary.holdout_rows,
        labels: join,
        labels_error,
        fit_seconds: trained.summary.fit_seconds,
    };
    Ok((trained, data, summary))
}

/// Candidate and production on the same holdout.
#[derive(Debug, Clone, Serialize)]
pub struct Evaluation {
    pub production: Figures,
    pub candidate: Figures,
    pub comparison: Comparison,
}

/// Runs both models on the holdout (each imputes with its own fills) and compares them with a
/// paired bootstrap. Blocks.
pub fn evaluate(
    spec: &ModelSpec,
    data: &PreparedData,
    production: Artifact,
    candidate: Artifact,
) -> Result<Evaluation, StepError> {
    for (what, a) in [("production", &production), ("candidate", &candidate)] {
        if a.feature_order != spec.feature_names() {
            return Err(format!(
                "the {what} version ({}) reads other features than the spec's; compare them by hand and promote over the API",
                a.id()
            ));
        }
    }
    let y = &data.holdout.y;
    // Each version's answers on the holdout (probabilities or estimates) and its full figures.
    let answers = |artifact: Artifact| -> (Vec<f64>, f64, Figures) {
        let threshold = artifact.threshold;
        let margin = spec.regression().underestimate_margin;
        let interval = artifact.regression.as_ref().map(|r| r.interval.clone());
        let model = Model::new(artifact);
        let p: Vec<f64> = model
            .predict_batch(&data.holdout_raw)
            .iter()
            .map(|p| p.score())
            .collect();
        let figures = match interval {
            None => Figures::Binary(BinaryMetrics::compute(y, &p, threshold)),
            Some(interval) => Figures::Regression(
                RegressionMetrics::compute(y, &p, margin).with_interval(y, &p, &interval),
            ),
        };
        (p, threshold, figures)
    };
    let (p_prod, t_prod, production_figures) = answers(production);
    let (p_cand, t_cand, candidate_figures) = answers(candidate);
    let comparison = bootstrap::compare(
        y,
        Scored {
            probabilities: &p_prod,
            threshold: t_prod,
        },
        Scored {
            probabilities: &p_cand,
            threshold: t_cand,
        },
        &spec.retraining.bootstrap(spec.task),
    );
    Ok(Evaluation {
        production: production_figures,
        candidate: candidate_figures,
        comparison,
    })
}

/// Why a promotion did not happen.
#[derive(Debug, thiserror::Error)]
pub enum PromoteError {
    #[error(transparent)]
    Registry(#[from] vigie_registry::Error),
    /// The artifact is not what the registry recorded: never promoted.
    #[error("the artifact of {version} fails its checks, it is not promoted: {reason}")]
    BadArtifact { version: String, reason: String },
}

/// Reads `version`'s artifact back (whole-file sha256, header, payload hash, embedded spec)
/// and only then makes it production, recording `action` by `by`.
pub async fn promote_checked(
    registry: &Registry,
    name: &str,
    version: u32,
    action: &str,
    by: &str,
) -> Result<ModelVersion, PromoteError> {
    let row = registry.version(name, version).await?;
    let loaded = {
        let (registry, row) = (registry.clone(), row.clone());
        tokio::task::spawn_blocking(move || registry.load(&row)).await
    };
    match loaded {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            return Err(PromoteError::BadArtifact {
                version: row.id(),
                reason: e.to_string(),
            });
        }
        Err(e) => {
            return Err(PromoteError::BadArtifact {
                version: row.id(),
                reason: format!("loading panicked: {e}"),
            });
        }
    }
    Ok(registry
        .promote_by(name, version, action, by, now_ms())
        .await?)
}

/// Drives `run` to its end. Never panics: every failure ends the run `failed`.
pub async fn execute(state: AppState, run: Run) {
    let started = Instant::now();
    let model = run.model.clone();
    state
        .metrics
        .in_progress
        .with_label_values(&[&model])
        .set(1);
    let outcome = match steps(&state, &run).await {
        Ok(outcome) => outcome,
        Err(error) => {
            tracing::error!(run = %run.id, %model, %error, "retraining failed; production unchanged");
            // The run may be in any non-final state: fail it from there.
            let failed = state
                .registry()
                .advance_run(
                    &run.id,
                    RunState::Failed,
                    RunUpdate {
                        error: Some(error),
                        ..RunUpdate::default()
                    },
                    now_ms(),
                )
                .await;
            if let Err(e) = failed {
                tracing::error!(run = %run.id, error = %e, "cannot mark the run failed");
            }
            RunState::Failed
        }
    };
    state
        .metrics
        .in_progress
        .with_label_values(&[&model])
        .set(0);
    state
        .metrics
        .runs
        .with_label_values(&[&model, outcome.as_str()])
        .inc();
    state
        .metrics
        .run_seconds
        .with_label_values(&[&model, outcome.as_str()])
        .observe(started.elapsed().as_secs_f64());
    refresh_models(&state).await;
}

async fn advance(
    state: &AppState,
    run: &Run,
    next: RunState,
    update: RunUpdate,
) -> Result<Run, StepError> {
    tracing::info!(run = %run.id, model = %run.model, state = next.as_str(), "retraining");
    // When each step came, for the run's timeline.
    let at = now_ms();
    let mut update = update;
    let mut detail = update.detail.take().unwrap_or_else(|| json!({}));
    if let Some(map) = detail.as_object_mut() {
        map.insert(format!("{}_at", next.as_str()), json!(at));
    }
    update.detail = Some(detail);
    state
        .registry()
        .advance_run(&run.id, next, update, at)
        .await
        .map_err(|e| format!("cannot record the run's state {}: {e}", next.as_str()))
}

async fn steps(state: &AppState, run: &Run) -> Result<RunState, StepError> {
    let spec = find_spec(&state.config.models_dir, &run.model)?;
    advance(
        state,
        run,
        RunState::Training,
        RunUpdate {
            detail: Some(json!({"spec_hash": spec.hash()})),
            ..RunUpdate::default()
        },
    )
    .await?;

    // Training runs on the blocking pool; a panic there is caught as a failed run.
    let source = state.labels_source();
    let fitted = {
        let spec = spec.clone();
        tokio::task::spawn_blocking(move || fit_candidate(&spec, Some(&source))).await
    };
    let (trained, data, summary) = match fitted {
        Ok(result) => result?,
        Err(e) => return Err(format!("training panicked: {e}")),
    };
    let data = Arc::new(data);
    let (candidate, _) = state
        .registry()
        .register(trained, &format!("trainer (run {})", run.id))
        .await
        .map_err(|e| format!("cannot register the candidate: {e}"))?;
    tracing::info!(run = %run.id, candidate = %candidate.id(), "candidate registered");

    let production = state
        .registry()
        .production_of(&run.model)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("{} has no production version any more", run.model))?;
    let evaluation = {
        let (registry, spec, data) = (state.registry().clone(), spec.clone(), data.clone());
        let (production, candidate) = (production.clone(), candidate.clone());
        tokio::task::spawn_blocking(move || {
            let p = registry
                .load(&production)
                .map_err(|e| format!("the production artifact {}: {e}", production.id()))?;
            let c = registry
                .load(&candidate)
                .map_err(|e| format!("the candidate artifact {}: {e}", candidate.id()))?;
            evaluate(&spec, &data, p, c)
        })
        .await
        .map_err(|e| format!("evaluation panicked: {e}"))??
    };
    let c = &evaluation.comparison;
    let metric = c.metric.as_str();
    for (bound, value) in [("estimate", c.improvement), ("lower", c.improvement_lower)] {
        state
            .metrics
            .last_improvement
            .with_label_values(&[&run.model, metric, bound])
            .set(value);
    }
    let better = c.better;
    let (relation, ending) = if better {
        (">", "")
    } else {
        ("<=", ": not shown better")
    };
    let verdict = format!(
        "{metric} {:.4} -> {:.4}: improvement {:+.4}, {:.0}% lower bound {:+.4} {relation} {}{ending}",
        c.production,
        c.candidate,
        c.improvement,
        c.confidence * 100.0,
        c.improvement_lower,
        c.min_improvement
    );
    let run = advance(
        state,
        run,
        RunState::Evaluated,
        RunUpdate {
            candidate_version: Some(candidate.version),
            detail: Some(json!({
                "data": summary,
                "production_version": production.version,
                "evaluation": evaluation,
                "verdict": verdict,
            })),
            ..RunUpdate::default()
        },
    )
    .await?;
    if !better {
        advance(state, &run, RunState::Rejected, RunUpdate::default()).await?;
        tracing::info!(run = %run.id, %verdict, "candidate rejected");
        return Ok(RunState::Rejected);
    }
    promote_checked(
        state.registry(),
        &run.model,
        candidate.version,
        "promoted",
        "trainer",
    )
    .await
    .map_err(|e| e.to_string())?;
    state.announce(
        &run.model,
        candidate.version,
        vigie_stream::ModelAction::Promoted,
        "trainer",
    );
    advance(
        state,
        &run,
        RunState::Promoted,
        RunUpdate {
            detail: Some(json!({"promoted_at": now_ms()})),
            ..RunUpdate::default()
        },
    )
    .await?;
    tracing::info!(run = %run.id, version = %candidate.id(), %verdict, "candidate promoted");
    Ok(RunState::Promoted)
}
