//! The error type of vigie-core.

use std::path::PathBuf;

use crate::dataset::Problem;

/// How many data problems an error message lists before summarising the rest.
const SHOWN_PROBLEMS: usize = 25;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid model spec {}: {message}", path.display())]
    Spec { path: PathBuf, message: String },
    #[error("{}", describe_problems(problems))]
    Data { problems: Vec<Problem> },
    #[error("invalid model artifact {}: {message}", path.display())]
    Artifact { path: PathBuf, message: String },
    #[error(transparent)]
    Model(#[from] vigie_model::Error),
    #[error("{0}")]
    Unsupported(String),
    #[error("cannot build the synthetic reference rows: {0}")]
    Synthetic(#[from] vigie_synthetic::FitError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

fn describe_problems(problems: &[Problem]) -> String {
    let mut text = format!(
        "the data does not match the spec ({} problem{}):",
        problems.len(),
        if problems.len() == 1 { "" } else { "s" }
    );
    for p in problems.iter().take(SHOWN_PROBLEMS) {
        text.push_str("\n  ");
        text.push_str(&p.to_string());
    }
    if problems.len() > SHOWN_PROBLEMS {
        text.push_str(&format!(
            "\n  ... and {} more",
            problems.len() - SHOWN_PROBLEMS
        ));
    }
    text
}
