//! `vigie drift-report`: compare a current features file with a reference one, feature by
//! feature, and write the comparison as an HTML page and as JSON.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use serde::Serialize;
use vigie_core::dataset;
use vigie_core::schema::Schema;
use vigie_core::spec::ModelSpec;
use vigie_drift::{Binner, DriftReport, Histograms, NullModel, Profile, compare, report};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The model spec (TOML): feature types, codes and drift rules.
    #[arg(long)]
    spec: PathBuf,
    /// Reference features (CSV with the spec's columns), e.g. the training rows.
    #[arg(long)]
    reference: PathBuf,
    /// Current features to compare with the reference.
    #[arg(long)]
    current: PathBuf,
    /// Folder for drift-report.html and drift-report.json.
    #[arg(long, default_value = "drift-report")]
    out: PathBuf,
}

#[derive(Debug, Serialize)]
struct IgnoredColumns<'a> {
    reference: &'a [String],
    current: &'a [String],
}

/// The JSON document: the decisions, and the counts behind them.
#[derive(Debug, Serialize)]
struct Document<'a> {
    model: &'a str,
    reference_file: &'a Path,
    current_file: &'a Path,
    report: &'a DriftReport,
    /// The reference's bins and counts.
    reference: &'a Profile,
    /// The current counts, one list per feature, in the reference's bins.
    current_counts: Vec<&'a [u64]>,
    /// Columns of each file that are no feature of the spec, ignored.
    ignored_columns: IgnoredColumns<'a>,
    /// Time from reading the spec to the decisions, in seconds, and the part spent reading and
    /// checking the two files.
    seconds: f64,
    load_seconds: f64,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let start = Instant::now();
    let spec = ModelSpec::from_file(&args.spec)?;
    let schema = Schema::new(&spec);
    let (reference_x, current_x) = std::thread::scope(|s| {
        let reference = s.spawn(|| dataset::load_feature_columns(&spec, &schema, &args.reference));
        let current = dataset::load_feature_columns(&spec, &schema, &args.current);
        (reference.join().expect("the loading thread ends"), current)
    });
    let (reference_x, reference_report) = reference_x?;
    let (current_x, current_report) = current_x?;
    for (path, report) in [
        (&args.reference, &reference_report),
        (&args.current, &current_report),
    ] {
        if !report.ignored_columns.is_empty() {
            println!(
                "{}: {} columns that are no feature of {} ignored: {}",
                path.display(),
                report.ignored_columns.len(),
                spec.name,
                report.ignored_columns.join(", ")
            );
        }
        for (name, &n) in schema.names().iter().zip(&report.unseen_codes) {
            if n > 0 {
                println!(
                    "{}: {n} values of {name} are codes the spec does not list (counted in its other bin)",
                    path.display()
                );
            }
        }
    }
    let loaded = start.elapsed().as_secs_f64();

    let (names, kinds) = (schema.names(), schema.drift_kinds());
    let mut profile =
        Profile::from_columns(&names, &kinds, &reference_x, &spec.reference.binning());
    profile.null = Some(NullModel::simulate(&profile, &spec.drift, &spec.drift.null));
    let binner = Binner::new(&profile);
    let mut current = Histograms::new(&binner);
    current.add_columns(&binner, &current_x);
    let drift = compare(&profile, &current, &spec.drift);
    let seconds = start.elapsed().as_secs_f64();

    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("Failed to create {}", args.out.display()))?;
    let title = format!(
        "Drift of {} against {} ({})",
        args.current.display(),
        args.reference.display(),
        spec.name
    );
    let html_path = args.out.join("drift-report.html");
    std::fs::write(&html_path, report::html(&title, &profile, &current, &drift))
        .with_context(|| format!("Failed to write {}", html_path.display()))?;
    let document = Document {
        model: &spec.name,
        reference_file: &args.reference,
        current_file: &args.current,
        report: &drift,
        reference: &profile,
        current_counts: (0..names.len()).map(|f| current.feature(f)).collect(),
        ignored_columns: IgnoredColumns {
            reference: &reference_report.ignored_columns,
            current: &current_report.ignored_columns,
        },
        seconds,
        load_seconds: loaded,
    };
    let json_path = args.out.join("drift-report.json");
    std::fs::write(&json_path, serde_json::to_vec_pretty(&document)?)
        .with_context(|| format!("Failed to write {}", json_path.display()))?;

    print_summary(&drift);
    println!(
        "Compared in {:.1} ms ({:.1} ms reading and checking the files)",
        seconds * 1e3,
        loaded * 1e3
    );
    println!("Wrote {} and {}", html_path.display(), json_path.display());
    Ok(())
}

fn print_summary(drift: &DriftReport) {
    println!(
        "Reference: {} rows; current: {} rows",
        drift.reference_rows, drift.current_rows
    );
    if !drift.scored {
        println!(
            "Not scored: {} current rows, at least {} needed (drift.min_rows)",
            drift.current_rows, drift.min_rows
        );
    }
    if let Some(level) = drift.feature_level {
        println!(
            "Each feature tested at level {level:.2e} (a window a day, drift.false_alarms_per_30_days spread over the features)"
        );
    }
    println!(
        "{:<14} {:<12} {:<20} {:>9} {:>9}  drifted",
        "feature", "kind", "floor", "score", "noise"
    );
    for f in &drift.features {
        println!(
            "{:<14} {:<12} {:<20} {:>9.4} {:>9}  {}",
            f.name,
            f.kind,
            f.rule.to_string(),
            f.score,
            f.noise_threshold
                .map_or_else(|| "-".to_string(), |t| format!("{t:.4}")),
            match (f.drifted, f.beyond_floor, f.beyond_noise) {
                (true, ..) => "yes",
                (false, true, false) => "no (within noise)",
                (false, false, true) => "no (below the floor)",
                _ => "no",
            }
        );
    }
    println!(
        "Drift score {:.3}: {} of {} features drifted; data set {}",
        drift.score,
        drift.drifted_features,
        drift.features.len(),
        if drift.dataset_drifted {
            "drifted"
        } else {
            "not drifted"
        }
    );
}
