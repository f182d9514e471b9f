//! `vigie compare`: fit several algorithms on one spec's data (loaded once) and print their
//! holdout figures side by side, as benchmarks/README.md records them. Registers nothing.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use serde::Deserialize;
use vigie_core::inference::Model;
use vigie_core::spec::ModelSpec;
use vigie_core::train::{self, PreparedData};
use vigie_model::AlgorithmParams;

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
    }

    let start = Instant::now();
    let data = PreparedData::load(&spec, &mut |_| {})?;
    eprintln!(
        "Loaded and checked the data in {:.2} s",
        start.elapsed().as_secs_f64()
    );

    println!(
        "| algorithm | ROC AUC | PR AUC | F1 | precision | recall | accuracy | Brier | threshold | fit (s) | predict (µs/row) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for candidate in &candidates.candidate {
        eprintln!("Fitting {} ...", candidate.label);
        let trained = train::fit_and_evaluate(&spec, &data, &candidate.algorithm, &mut |_| {})?;
        let (h, fit_seconds) = (&trained.holdout, trained.summary.fit_seconds);
        let model = Model::new(vigie_core::artifact::Artifact::new(
            trained.clone(),
            0,
            chrono::Utc::now(),
        ));
        let per_row = single_row_micros(&model, &data);
        println!(
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
        );
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
        sink += model.predict_parsed(&mut row).probability;
    }
    let micros = start.elapsed().as_secs_f64() * 1e6 / x.rows().max(1) as f64;
    std::hint::black_box(sink);
    micros
}
