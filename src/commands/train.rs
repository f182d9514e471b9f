//! `vigie train`: train a model from its spec, evaluate it, register it.

use std::path::PathBuf;

use anyhow::Context;
use vigie_core::spec::{MissingPolicy, ModelSpec, Task};
use vigie_core::train::{self, RegressionModel};

use crate::Cli;
use crate::commands::models::print_version;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The model spec (TOML).
    #[arg(long)]
    spec: PathBuf,
    /// Recorded in the registry as who asked for this version.
    #[arg(long, default_value = "cli")]
    triggered_by: String,
}

pub async fn run(cli: &Cli, args: &Args) -> anyhow::Result<()> {
    let spec = ModelSpec::from_file(&args.spec)?;
    // Open the registry first: a bad database URL should fail before minutes of training.
    let registry = cli.registry().await?;

    let bar = super::stage_bar(1);
    let trained = tokio::task::block_in_place(|| train::train(&spec, &mut super::on_stage(&bar)));
    let trained = match trained {
        Ok(t) => t,
        Err(e) => {
            bar.abandon_with_message("training failed");
            return Err(e.into());
        }
    };
    bar.set_message("writing the artifact and registering");
    let registered = registry.register(trained, &args.triggered_by).await;
    bar.finish_and_clear();
    let (version, artifact) = registered.context("Failed to register the model")?;

    println!(
        "Trained {} ({}) in {:.1} s: {}",
        version.id(),
        version.algorithm,
        version.fit_seconds,
        version.status.as_str()
    );
    let summary = &artifact.training;
    let chosen = match artifact.task {
        Task::BinaryClassification => "threshold",
        Task::Regression => "interval and flagged groups",
    };
    println!(
        "Rows: {} fit, {} validation ({chosen} chosen there), {} holdout",
        summary.fit_rows, summary.validation_rows, summary.holdout_rows
    );
    if summary.refit_on_all_rows {
        println!(
            "Final model refitted on all {} training rows, {chosen} kept",
            summary.fit_rows + summary.validation_rows
        );
    }
    for (what, report) in [
        ("training", &summary.train_report),
        ("holdout", &summary.holdout_report),
    ] {
        for (i, name) in artifact.feature_order.iter().enumerate() {
            let treated = match artifact.spec.features.get(i).map(|f| f.missing()) {
                Some(MissingPolicy::Keep) => "kept as missing for the model",
                _ => "imputed",
            };
            if report.out_of_range_as_missing[i] > 0 {
                println!(
                    "Note: {what} data: {} values of {name} out of range, treated as missing and {treated} (spec policy)",
                    report.out_of_range_as_missing[i]
                );
            }
            if report.unseen_codes.get(i).is_some_and(|&n| n > 0) {
                println!(
                    "Note: {what} data: {} codes of {name} the spec does not list, treated as missing and {treated} (spec policy)",
                    report.unseen_codes[i]
                );
            }
            if report.missing[i] > 0 {
                println!(
                    "Note: {what} data: {} empty values of {name}, {treated}",
                    report.missing[i]
                );
            }
        }
        if !report.ignored_columns.is_empty() {
            println!(
                "Note: {what} data: columns not in the spec, ignored: {}",
                report.ignored_columns.join(", ")
            );
        }
    }
    let reference = &artifact.reference;
    println!(
        "Drift reference: {} training rows + {} synthetic rows, {} features profiled",
        reference.real_rows,
        reference.synthetic_rows,
        reference.features.len()
    );
    println!();
    print_version(&version);
    if let Some(regression) = &artifact.regression {
        print_regression_extras(&artifact.spec.target.unit, regression);
    }
    registry.close().await;
    Ok(())
}

/// A regression's interval and underestimated groups, and whether the flag holds on the
/// holdout.
pub fn print_regression_extras(unit: &str, regression: &RegressionModel) {
    let i = &regression.interval;
    println!(
        "  interval     estimate {:+.1} to {:+.1} {unit} ({:.0}% split conformal on {} validation rows)",
        i.lower_offset,
        i.upper_offset,
        i.coverage * 100.0,
        i.calibration_rows
    );
    let Some(u) = &regression.underestimation else {
        return;
    };
    let flagged: Vec<_> = u.flagged().collect();
    println!(
        "  underestimation: {} of {} groups of {} flagged ({} with at least {} validation rows judged; flagged when the one-sided {:.2}% lower bound of the mean residual is above 0: {:.0}% for all judged groups together)",
        flagged.len(),
        u.groups.len(),
        u.feature,
        u.judged,
        u.min_rows,
        u.per_group_confidence * 100.0,
        u.confidence * 100.0
    );
    if flagged.is_empty() {
        // Say why: the groups that came closest.
        let mut closest: Vec<_> = u
            .groups
            .iter()
            .filter_map(|g| Some((g, g.lower_bound?)))
            .collect();
        closest.sort_by(|a, b| b.1.total_cmp(&a.1));
        for (g, bound) in closest.iter().take(3) {
            println!(
                "    closest: {}: {} rows, mean residual {:+.1} {unit}, lower bound {bound:+.1}",
                g.code, g.rows, g.mean_residual
            );
        }
    }
    for g in &flagged {
        println!(
            "    {}: {} rows, mean residual {:+.1} {unit}, lower bound {:+.1}",
            g.code,
            g.rows,
            g.mean_residual,
            g.lower_bound.unwrap_or(f64::NAN)
        );
    }
    let h = &u.holdout;
    let show = |m: &vigie_model::regression::MeanEstimate| match m.rows {
        0 => "none (0 rows)".to_string(),
        rows => format!(
            "{:+.1} [{:+.1}, {:+.1}] ({rows} rows)",
            m.mean, m.lower, m.upper
        ),
    };
    println!(
        "  holdout mean residual: flagged {}, unflagged {}",
        show(&h.flagged),
        show(&h.unflagged)
    );
    match &h.difference {
        Some(d) => println!(
            "  difference {:+.1} {unit} [{:+.1}, {:+.1}] ({:.0}% bootstrap): {}",
            d.mean,
            d.lower,
            d.upper,
            h.confidence * 100.0,
            if h.is_meaningful() {
                "the flag holds on the holdout"
            } else {
                "the flag is not confirmed on the holdout"
            }
        ),
        None => println!("  no holdout row is flagged: nothing to compare"),
    }
}
