//! `vigie models`: list and inspect registered model versions.

use vigie_model::bootstrap::Evaluation as Figures;
use vigie_model::metrics::BinaryMetrics;
use vigie_model::regression::RegressionMetrics;
use vigie_registry::{ModelRef, ModelVersion};

use crate::Cli;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Every registered version of every model.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// One version: NAME (its production version) or NAME@VERSION.
    Show {
        reference: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Also load the artifact and check its sha256 and contents.
        #[arg(long)]
        verify: bool,
    },
    /// Make NAME@VERSION the production version (the current one is archived). Running
    /// prediction services switch to it on their next registry poll; promoting an older
    /// version is a rollback.
    Promote { reference: String },
}

pub async fn run(cli: &Cli, command: &Command) -> anyhow::Result<()> {
    let registry = cli.registry().await?;
    match command {
        Command::List { json } => {
            let versions = registry.list().await?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&versions)?);
            } else if versions.is_empty() {
                println!(
                    "No model registered yet: run `vigie train --spec models/baac-severity.toml`."
                );
            } else {
                println!(
                    "{:<24} {:>7}  {:<10}  {:<17}  {:<36}  created",
                    "name", "version", "status", "algorithm", "holdout"
                );
                for v in &versions {
                    println!(
                        "{:<24} {:>7}  {:<10}  {:<17}  {:<36}  {}",
                        v.name,
                        v.version,
                        v.status.as_str(),
                        v.algorithm,
                        headline(v),
                        v.created_at.format("%Y-%m-%d %H:%M:%S")
                    );
                }
            }
        }
        Command::Promote { reference } => {
            let reference: ModelRef = reference.parse()?;
            let Some(version) = reference.version else {
                anyhow::bail!(
                    "say which version to promote: {}@VERSION (`vigie models list` shows them)",
                    reference.name
                );
            };
            let target = registry.version(&reference.name, version).await?;
            // Refuse an artifact that does not verify: it would never serve.
            registry.load(&target)?;
            let before = registry.production().await?;
            let promoted = registry.promote(&reference.name, version, "cli").await?;
            match before.iter().find(|v| v.name == promoted.name) {
                Some(old) if old.version == promoted.version => {
                    println!("{} is already in production", promoted.id())
                }
                Some(old) => println!(
                    "{} is now in production; {} is archived",
                    promoted.id(),
                    old.id()
                ),
                None => println!("{} is now in production", promoted.id()),
            }
        }
        Command::Show {
            reference,
            json,
            verify,
        } => {
            let reference: ModelRef = reference.parse()?;
            let version = registry.resolve(&reference).await?;
            if *verify {
                registry.load(&version)?;
            }
            if *json {
                println!("{}", serde_json::to_string_pretty(&version)?);
            } else {
                print_version(&version);
                if *verify {
                    println!("Artifact verified: sha256 matches, contents consistent");
                }
            }
        }
    }
    registry.close().await;
    Ok(())
}

/// A version's main holdout figures on one line.
pub fn headline(v: &ModelVersion) -> String {
    match &v.metrics.holdout {
        Figures::Binary(h) => format!(
            "ROC AUC {:.4}, F1 {:.4}, threshold {:.4}",
            h.roc_auc, h.f1, v.threshold
        ),
        Figures::Regression(h) => format!(
            "MAE {:.1}, R2 {:.3}, coverage {}",
            h.mae,
            h.r2,
            h.interval_coverage
                .map_or_else(|| "-".to_string(), |c| format!("{c:.3}"))
        ),
    }
}

/// A version's details and figures, for people.
pub fn print_version(v: &ModelVersion) {
    println!("{} ({}, {})", v.id(), v.status.as_str(), v.algorithm);
    println!(
        "  created      {} by {}",
        v.created_at.format("%Y-%m-%d %H:%M:%S UTC"),
        v.triggered_by
    );
    println!("  spec hash    {}", v.spec_hash);
    println!(
        "  artifact     {} ({} bytes)",
        v.artifact_path.display(),
        v.artifact_bytes
    );
    println!("  sha256       {}", v.artifact_sha256);
    match (&v.metrics.validation, &v.metrics.holdout) {
        (Figures::Binary(val), Figures::Binary(hold)) => print_binary(v, val, hold),
        (Figures::Regression(val), Figures::Regression(hold)) => {
            println!("  fit time     {:.2} s", v.fit_seconds);
            print_regression(val, hold)
        }
        _ => println!(
            "  (validation and holdout figures of different tasks: the row is inconsistent)"
        ),
    }
}

fn print_regression(val: &RegressionMetrics, hold: &RegressionMetrics) {
    println!("  {:<24} {:>10} {:>10}", "", "validation", "holdout");
    let coverage = |m: &RegressionMetrics| m.interval_coverage.unwrap_or(f64::NAN);
    let width = |m: &RegressionMetrics| m.interval_mean_width.unwrap_or(f64::NAN);
    for (name, a, b) in [
        ("MAE", val.mae, hold.mae),
        ("RMSE", val.rmse, hold.rmse),
        ("R2", val.r2, hold.r2),
        (
            "median absolute error",
            val.median_absolute_error,
            hold.median_absolute_error,
        ),
        ("mean residual", val.mean_residual, hold.mean_residual),
        ("interval coverage", coverage(val), coverage(hold)),
        ("interval mean width", width(val), width(hold)),
    ] {
        println!("  {name:<24} {a:>10.4} {b:>10.4}");
    }
    println!(
        "  {:<24} {:>10.4} {:>10.4}",
        format!("share > {} under", hold.underestimate_margin),
        val.share_underestimated,
        hold.share_underestimated
    );
    println!(
        "  holdout rows {}, mean target {:.2}",
        hold.rows, hold.mean_target
    );
}

fn print_binary(v: &ModelVersion, val: &BinaryMetrics, hold: &BinaryMetrics) {
    println!(
        "  threshold    {:.4} (best F1 on the validation slice)",
        v.threshold
    );
    println!("  fit time     {:.2} s", v.fit_seconds);
    println!("  {:<12} {:>10} {:>10}", "", "validation", "holdout");
    for (name, a, b) in [
        ("ROC AUC", val.roc_auc, hold.roc_auc),
        ("PR AUC", val.pr_auc, hold.pr_auc),
        ("F1", val.f1, hold.f1),
        ("precision", val.precision, hold.precision),
        ("recall", val.recall, hold.recall),
        ("accuracy", val.accuracy, hold.accuracy),
        ("Brier", val.brier, hold.brier),
        ("log loss", val.log_loss, hold.log_loss),
        (
            "ECE",
            val.ece.unwrap_or(f64::NAN),
            hold.ece.unwrap_or(f64::NAN),
        ),
    ] {
        println!("  {name:<12} {a:>10.4} {b:>10.4}");
    }
    if let Some(c) = &v.metrics.calibration {
        println!(
            "  calibration  {} (cross-fitted on the validation slice); raw probabilities: ECE {:.4} validation, {:.4} holdout; holdout ROC AUC {:.4}",
            c.method.as_str(),
            c.validation_ece_raw,
            c.holdout_ece_raw,
            c.holdout_roc_auc_raw
        );
        let scores: Vec<String> = c
            .cross_fitted
            .iter()
            .map(|s| format!("{} {:.4} (ECE {:.4})", s.method.as_str(), s.log_loss, s.ece))
            .collect();
        if !scores.is_empty() {
            println!("  cross-fitted log loss: {}", scores.join(", "));
        }
    }
    let c = &hold.confusion;
    println!(
        "  holdout confusion matrix ({} rows): TN {}  FP {}  FN {}  TP {}",
        hold.rows, c.true_negative, c.false_positive, c.false_negative, c.true_positive
    );
}
