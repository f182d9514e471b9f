//! The subcommands of `vigie`, one module each.

pub mod backtest;
pub mod bootstrap;
pub mod compare;
pub mod drift;
pub mod drift_report;
pub mod events;
pub mod models;
pub mod predict;
pub mod service;
pub mod synthetic;
pub mod train;
pub mod trainer;
pub mod up;
pub mod users;

use indicatif::{ProgressBar, ProgressStyle};
use vigie_core::train::Stage;

/// A setting that must be given and not blank, or `missing` as the error.
pub fn required<'a>(value: Option<&'a str>, missing: &str) -> anyhow::Result<&'a str> {
    value
        .filter(|v| !v.trim().is_empty())
        .ok_or_else(|| anyhow::anyhow!("{missing}"))
}

/// `items` joined with commas, or `none` when there are none.
pub fn listed(items: &[String], none: &str) -> String {
    if items.is_empty() {
        none.to_string()
    } else {
        items.join(", ")
    }
}

/// A progress bar over the training stages (drawn only on a terminal).
pub fn stage_bar(extra_steps: u64) -> ProgressBar {
    let bar = ProgressBar::new(Stage::ALL.len() as u64 + extra_steps);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}")
            .expect("a valid template"),
    );
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    bar
}

/// Advances `bar` as the pipeline reports stages.
pub fn on_stage(bar: &ProgressBar) -> impl FnMut(Stage) + '_ {
    move |stage| {
        bar.set_message(stage.describe());
        bar.inc(1);
    }
}
