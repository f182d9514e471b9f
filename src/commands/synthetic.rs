//! `vigie synthetic`: draw synthetic rows from a generator fitted on a spec's training data,
//! and measure how faithful they are: per-feature and pairwise fidelity against the real rows
//! (beside independent per-column resampling), and train-on-synthetic / test-on-real ROC AUC
//! against train-on-real.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use serde::Serialize;
use vigie_core::spec::{ModelSpec, Task};
use vigie_core::train::{self, PreparedData};
use vigie_synthetic::{Fidelity, Generator, GeneratorParams, MarginalSampler, fidelity};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The model spec (TOML).
    #[arg(long)]
    spec: PathBuf,
    /// Synthetic rows to draw; default as many as the training rows fitted on.
    #[arg(long)]
    rows: Option<usize>,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Write the synthetic rows (features and target) to this CSV file.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Write the fidelity report to this JSON file.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Skip the train-on-synthetic comparison (two model fits).
    #[arg(long)]
    no_tstr: bool,
}

#[derive(Debug, Serialize)]
struct Report {
    model: String,
    rows: usize,
    seed: u64,
    network: Fidelity,
    /// The same measures for independent per-column resampling.
    independent_columns: Fidelity,
    /// Holdout ROC AUC of the spec's model trained on real rows and on synthetic rows.
    train_on_real_roc_auc: Option<f64>,
    train_on_synthetic_roc_auc: Option<f64>,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let spec = ModelSpec::from_file(&args.spec)?;
    let data = PreparedData::load(&spec, &mut |_| {})?;
    let schema = &data.schema;
    let names = schema.names();
    let kinds = schema.synthetic_kinds();
    let real = &data.fit;
    let rows = args.rows.unwrap_or(real.x.rows());

    let generator = Generator::fit(&real.x, &kinds, Some(&real.y), &GeneratorParams::default())?;
    let sample = generator.sample(rows, args.seed);
    let target = spec.target.column.as_str();
    let network = fidelity(
        &names,
        &kinds,
        (&real.x, Some(&real.y)),
        (&sample.x, sample.y.as_deref()),
        target,
    );
    let independent = MarginalSampler::fit(&real.x)
        .context("no training row")?
        .sample(rows, args.seed);
    let independent = fidelity(
        &names,
        &kinds,
        (&real.x, None),
        (&independent, None),
        target,
    );

    // Train-on-synthetic needs class targets: a regression's generator draws none.
    let (on_real, on_synthetic) = if args.no_tstr || spec.task != Task::BinaryClassification {
        (None, None)
    } else {
        let on_real = train::fit_and_evaluate(&spec, &data, &spec.algorithm, &mut |_| {})?;
        let on_synthetic = train::train_on_synthetic(&spec, &data, args.seed, &mut |_| {})?;
        (
            on_real.holdout.as_binary().map(|m| m.roc_auc),
            on_synthetic.holdout.as_binary().map(|m| m.roc_auc),
        )
    };

    println!(
        "Fitted on {} training rows ({} features and {target}); drew {rows} rows (seed {})",
        real.x.rows(),
        names.len(),
        args.seed
    );
    println!("{:<34} {:>12} {:>20}", "", "network", "independent columns");
    for (what, a, b) in [
        (
            "mean per-column TVD",
            network.mean_tvd,
            independent.mean_tvd,
        ),
        ("max per-column TVD", network.max_tvd, independent.max_tvd),
        (
            "mean |Cramér's V real - synthetic|",
            network.mean_association_gap,
            independent.mean_association_gap,
        ),
        (
            "max |Cramér's V real - synthetic|",
            network.max_association_gap,
            independent.max_association_gap,
        ),
    ] {
        println!("{what:<34} {a:>12.4} {b:>20.4}");
    }
    println!(
        "(features only for independent columns; the network's pairs include {target}; mean real V {:.4})",
        network.mean_real_association
    );
    if let (Some(r), Some(s)) = (on_real, on_synthetic) {
        println!("Holdout ROC AUC: trained on real rows {r:.4}, on synthetic rows {s:.4}");
    }

    if let Some(path) = &args.out {
        write_csv(path, &names, target, &sample)
            .with_context(|| format!("Failed to write {}", path.display()))?;
        println!("Wrote {}", path.display());
    }
    if let Some(path) = &args.report {
        let report = Report {
            model: spec.name.clone(),
            rows,
            seed: args.seed,
            network,
            independent_columns: independent,
            train_on_real_roc_auc: on_real,
            train_on_synthetic_roc_auc: on_synthetic,
        };
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("Failed to write {}", path.display()))?;
        println!("Wrote {}", path.display());
    }
    Ok(())
}

fn write_csv(
    path: &std::path::Path,
    names: &[&str],
    target: &str,
    sample: &vigie_synthetic::Sample,
) -> std::io::Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    writeln!(out, "{},{target}", names.join(","))?;
    let y = sample.y.as_deref().unwrap_or(&[]);
    for (i, row) in sample.x.iter_rows().enumerate() {
        for (c, v) in row.iter().enumerate() {
            if c > 0 {
                out.write_all(b",")?;
            }
            if !v.is_nan() {
                write!(out, "{v}")?;
            }
        }
        match y.get(i) {
            Some(t) => writeln!(out, ",{t}")?,
            None => writeln!(out, ",")?,
        }
    }
    out.flush()
}
