//! `vigie compare`: fit several algorithms on one spec's data (loaded once) and print their
//! holdout figures side by side, as benchmarks/README.md records them. Registers nothing.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use serde::Deserialize;
use vigie_core::inference::Model;
use vigie_core::spec::{ModelSpec, Task};
use vigie_core::train::{self, PreparedData};
use vigie_model::AlgorithmParams;
use vigie_model::bootstrap::Evaluation as Figures;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The model spec whose data and features to use.
    #[arg(long)]
    spec: PathBuf,
    /// A TOML file of `[[candidate]]` entries, each with a `label` and an `[candidate.algorithm]`.
    #[arg(long)]
    candidates: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Candidates {
    candidate: Vec<Candidate>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Candidate {
    label: String,
    algorithm: AlgorithmParams,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let spec = ModelSpec::from_file(&args.spec)?;
    let text = std::fs::read_to_string(&args.candidates)
        .with_context(|| format!("Failed to read {}", args.candidates.display()))?;
    let candidates: Candidates = toml::from_str(&text)
        .with_context(|| format!("Invalid candidates file {}", args.candidates.display()))?;
    for c in &candidates.candidate {
        c.algorithm
            .clone()
            .check()
            .with_context(|| format!("Candidate {:?}", c.label))?;
        // The spec with this algorithm must hold (missing = "keep" needs gradient boosting).
        let mut with = spec.clone();
        with.algorithm = c.algorithm.clone();
        with.validate()
            .with_context(|| format!("Candidate {:?} on {}", c.label, spec.name))?;
    }

    let start = Instant::now();
    let data = PreparedData::load(&spec, &mut |_| {})?;
    eprintln!(
        "Loaded and checked the data in {:.2} s",
        start.elapsed().as_secs_f64()
    );

    match spec.task {
        Task::BinaryClassification => {
            println!(
                "| algorithm | ROC AUC | PR AUC | F1 | precision | recall | accuracy | Brier | threshold | fit (s) | predict (µs/row) |"
            );
            println!("|---|---|---|---|---|---|---|---|---|---|---|");
        }
        Task::Regression => {
            println!(
                "| algorithm | MAE | RMSE | R2 | median AE | share > {} under | interval coverage | fit (s) | predict (µs/row) |",
                spec.regression().underestimate_margin
            );
            println!("|---|---|---|---|---|---|---|---|---|");
        }
    }
    for candidate in &candidates.candidate {
        eprintln!("Fitting {} ...", candidate.label);
        let trained = train::fit_and_evaluate(&spec, &data, &candidate.algorithm, &mut |_| {})?;
        let fit_seconds = trained.summary.fit_seconds;
        let figures = trained.holdout.clone();
        let model = Model::new(vigie_core::artifact::Artifact::new(
            trained,
            0,
            chrono::Utc::now(),
        ));
        let per_row = single_row_micros(&model, &data);
        match figures {
            Figures::Binary(h) => println!(
                "| {} | {:.5} | {:.4} | {:.4} | {:.4} | {:.4} | {:.4} | {:.4} | {:.3} | {:.1} | {:.1} |",
                candidate.label,
                h.roc_auc,
                h.pr_auc,
                h.f1,
                h.precision,
                h.recall,
                h.accuracy,
                h.brier,
                h.threshold,
                fit_seconds,
                per_row
            ),
            Figures::Regression(h) => println!(
                "| {} | {:.2} | {:.2} | {:.4} | {:.2} | {:.4} | {:.4} | {:.1} | {:.1} |",
                candidate.label,
                h.mae,
                h.rmse,
                h.r2,
                h.median_absolute_error,
                h.share_underestimated,
                h.interval_coverage.unwrap_or(f64::NAN),
                fit_seconds,
                per_row
            ),
        }
    }
    Ok(())
}

/// Mean time of one single-row prediction over the holdout rows (a measurement for the table;
/// criterion benchmarks give the precise figure).
fn single_row_micros(model: &Model, data: &PreparedData) -> f64 {
    let x = &data.holdout.x;
    let mut row = vec![0.0; x.cols()];
    let mut sink = 0.0;
    let start = Instant::now();
    for r in x.iter_rows() {
        row.copy_from_slice(r);
        sink += model.predict_parsed(&mut row).score();
    }
    let micros = start.elapsed().as_secs_f64() * 1e6 / x.rows().max(1) as f64;
    std::hint::black_box(sink);
    micros
}
