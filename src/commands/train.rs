//! `vigie train`: train a model from its spec, evaluate it, register it.

use std::path::PathBuf;

use anyhow::Context;
use vigie_core::spec::ModelSpec;
use vigie_core::train;

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
    println!(
        "Rows: {} fit, {} validation (threshold chosen there), {} holdout",
        summary.fit_rows, summary.validation_rows, summary.holdout_rows
    );
    if summary.refit_on_all_rows {
        println!(
            "Final model refitted on all {} training rows, threshold kept",
            summary.fit_rows + summary.validation_rows
        );
    }
    for (what, report) in [
        ("training", &summary.train_report),
        ("holdout", &summary.holdout_report),
    ] {
        for (i, name) in artifact.feature_order.iter().enumerate() {
            if report.out_of_range_as_missing[i] > 0 {
                println!(
                    "Note: {what} data: {} values of {name} out of range, treated as missing and imputed (spec policy)",
                    report.out_of_range_as_missing[i]
                );
            }
            if report.missing[i] > 0 {
                println!(
                    "Note: {what} data: {} empty values of {name}, imputed",
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
    registry.close().await;
    Ok(())
}
