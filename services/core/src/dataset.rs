//! Reading a spec's CSV files with polars and checking every value against the spec.
//!
//! Every problem is collected, not just the first: a file that contradicts its spec is reported
//! cell by cell (file, line, column, reason), so it can be fixed in one pass.

use std::fmt;
use std::path::{Path, PathBuf};

use polars::prelude::*;
use serde::{Deserialize, Serialize};
use vigie_model::Matrix;

use crate::schema::{Cell, Origin, Schema};
use crate::spec::{ModelSpec, normalise_token};
use crate::{Error, Result};

/// One thing wrong in a data file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: PathBuf,
    /// 1-based line in the file (the header is line 1); `None` for a problem of the whole file.
    pub line: Option<usize>,
    pub column: Option<String>,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, " line {line}")?;
        }
        if let Some(column) = &self.column {
            write!(f, " column {column}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// What loading found, beyond the values themselves: reported by `vigie train`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LoadReport {
    pub rows: usize,
    /// Columns of the file that are not features of the spec.
    pub ignored_columns: Vec<String>,
    /// Per feature (model order): empty values, imputed later.
    pub missing: Vec<usize>,
    /// Per feature (model order): values outside the valid range treated as missing by spec.
    pub out_of_range_as_missing: Vec<usize>,
}

/// Features and targets of one split, checked against the spec.
#[derive(Debug, Clone)]
pub struct LabelledData {
    /// Row-major, model order, `NaN` where a value is missing.
    pub x: Matrix,
    /// 1.0 for the positive class, 0.0 for the negative.
    pub y: Vec<f64>,
    pub report: LoadReport,
}

/// Loads a features file and its target file and checks them against the spec.
pub fn load(
    spec: &ModelSpec,
    schema: &Schema,
    features: &Path,
    target: &Path,
) -> Result<LabelledData> {
    let mut problems = Vec::new();
    let x = read_features(spec, schema, features, &mut problems);
    let y = read_target(spec, target, &mut problems);
    if let (Ok((x, _)), Ok(y)) = (&x, &y)
        && x.rows() != y.len()
    {
        problems.push(Problem {
            file: target.to_path_buf(),
            line: None,
            column: None,
            message: format!(
                "{} target rows but {} holds {} feature rows",
                y.len(),
                features.display(),
                x.rows()
            ),
        });
    }
    match (x, y) {
        (Ok((x, report)), Ok(y)) if problems.is_empty() => Ok(LabelledData { x, y, report }),
        _ => Err(Error::Data { problems }),
    }
}

fn read_csv(
    path: &Path,
    separator: char,
    problems: &mut Vec<Problem>,
) -> std::result::Result<DataFrame, ()> {
    let whole_file = |message: String| Problem {
        file: path.to_path_buf(),
        line: None,
        column: None,
        message,
    };
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => {
            problems.push(whole_file(format!("cannot read: {e}")));
            return Err(());
        }
    };
    let Ok(separator) = u8::try_from(separator)
        .map_err(|_| ())
        .and_then(|s| if s.is_ascii() { Ok(s) } else { Err(()) })
    else {
        problems.push(whole_file(format!(
            "separator {separator:?} is not an ASCII character"
        )));
        return Err(());
    };
    let before = problems.len();
    check_structure(path, &bytes, separator, problems);
    if problems.len() > before {
        return Err(());
    }
    let frame = CsvReadOptions::default()
        .with_has_header(true)
        // Every column is read as text, so that each value is checked by the spec, not by
        // polars' type inference (which would turn "1.0" codes into floats and a stray letter
        // into a whole column of strings).
        .with_infer_schema_length(Some(0))
        .map_parse_options(|o| o.with_separator(separator))
        .into_reader_with_file_handle(std::io::Cursor::new(bytes))
        .finish();
    frame.map_err(|e| problems.push(whole_file(format!("malformed CSV: {e}"))))
}

/// Checks that the file is text and that every line has as many fields as the header (polars
/// would silently fill a short line with nulls), honouring double-quoted fields.
fn check_structure(path: &Path, bytes: &[u8], separator: u8, problems: &mut Vec<Problem>) {
    let problem = |line: Option<usize>, message: String| Problem {
        file: path.to_path_buf(),
        line,
        column: None,
        message,
    };
    if bytes.is_empty() {
        problems.push(problem(None, "the file is empty".into()));
        return;
    }
    if let Err(e) = std::str::from_utf8(bytes) {
        let line = bytes[..e.valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1;
        problems.push(problem(Some(line), "not valid UTF-8 text".into()));
        return;
    }
    let mut expected = None;
    let (mut fields, mut line, mut quoted, mut line_has_content) = (1usize, 1usize, false, false);
    let mut finish_line =
        |fields: usize, line: usize, has_content: bool, problems: &mut Vec<Problem>| {
            if !has_content {
                return;
            }
            match expected {
                None => expected = Some(fields),
                Some(n) if n != fields => {
                    problems.push(problem(
                        Some(line),
                        format!("{fields} fields where the header has {n}"),
                    ));
                }
                Some(_) => {}
            }
        };
    for &b in bytes {
        match b {
            b'"' => quoted = !quoted,
            b'\n' if !quoted => {
                finish_line(fields, line, line_has_content, problems);
                fields = 1;
                line += 1;
                line_has_content = false;
                continue;
            }
            b if b == separator && !quoted => fields += 1,
            b'\r' => continue,
            _ => {}
        }
        line_has_content = true;
    }
    if quoted {
        problems.push(problem(Some(line), "a quoted field is never closed".into()));
    } else {
        finish_line(fields, line, line_has_content, problems);
    }
}

fn text_column<'a>(frame: &'a DataFrame, name: &str) -> Option<&'a StringChunked> {
    frame.column(name).ok().and_then(|c| c.str().ok())
}

fn read_features(
    spec: &ModelSpec,
    schema: &Schema,
    path: &Path,
    problems: &mut Vec<Problem>,
) -> std::result::Result<(Matrix, LoadReport), ()> {
    let frame = read_csv(path, spec.data.separator, problems)?;
    let header: Vec<String> = frame
        .get_column_names()
        .iter()
        .map(|s| s.to_string())
        .collect();
    let mut columns = Vec::with_capacity(schema.len());
    for feature in schema.features() {
        match text_column(&frame, feature.name()) {
            Some(c) => columns.push(c),
            None => problems.push(Problem {
                file: path.to_path_buf(),
                line: Some(1),
                column: Some(feature.name().to_string()),
                message: "missing column: the spec declares this feature".into(),
            }),
        }
    }
    if columns.len() != schema.len() {
        return Err(());
    }
    let rows = frame.height();
    let mut report = LoadReport {
        rows,
        ignored_columns: header
            .iter()
            .filter(|h| schema.position(h).is_none())
            .cloned()
            .collect(),
        missing: vec![0; schema.len()],
        out_of_range_as_missing: vec![0; schema.len()],
    };
    let mut data = vec![f64::NAN; rows * schema.len()];
    let before = problems.len();
    for (c, (feature, column)) in schema.features().iter().zip(columns).enumerate() {
        for (r, raw) in column.iter().enumerate() {
            match feature.parse(raw, Origin::Data) {
                Ok(Cell::Value(v)) => data[r * schema.len() + c] = v,
                Ok(Cell::Missing) => report.missing[c] += 1,
                Ok(Cell::OutOfRangeAsMissing) => report.out_of_range_as_missing[c] += 1,
                Err(e) => problems.push(Problem {
                    file: path.to_path_buf(),
                    line: Some(r + 2),
                    column: Some(feature.name().to_string()),
                    message: e.to_string(),
                }),
            }
        }
    }
    if problems.len() > before {
        return Err(());
    }
    let matrix = Matrix::from_row_major(data, rows, schema.len()).map_err(|_| ())?;
    Ok((matrix, report))
}

fn read_target(
    spec: &ModelSpec,
    path: &Path,
    problems: &mut Vec<Problem>,
) -> std::result::Result<Vec<f64>, ()> {
    let frame = read_csv(path, spec.data.separator, problems)?;
    let target = &spec.target;
    let Some(column) = text_column(&frame, &target.column) else {
        problems.push(Problem {
            file: path.to_path_buf(),
            line: Some(1),
            column: Some(target.column.clone()),
            message: "missing column: the spec's target".into(),
        });
        return Err(());
    };
    let (positive, negative) = (
        normalise_token(&target.positive),
        normalise_token(&target.negative),
    );
    let before = problems.len();
    let values: Vec<f64> = column
        .iter()
        .enumerate()
        .map(|(r, raw)| {
            let token = raw.map(normalise_token).unwrap_or_default();
            if token == positive {
                1.0
            } else if token == negative {
                0.0
            } else {
                problems.push(Problem {
                    file: path.to_path_buf(),
                    line: Some(r + 2),
                    column: Some(target.column.clone()),
                    message: if token.is_empty() {
                        "missing target value".into()
                    } else {
                        format!(
                            "target {token:?} is neither the positive class {positive:?} nor the negative class {negative:?}"
                        )
                    },
                });
                f64::NAN
            }
        })
        .collect();
    if problems.len() > before {
        Err(())
    } else {
        Ok(values)
    }
}

#[cfg(test)]
mod tests;
