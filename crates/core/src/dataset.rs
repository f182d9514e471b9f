//! Reading a spec's CSV files and checking every value against the spec: features and targets
//! go through the same reader (the structure checked first; a file without quotes cut in place
//! and in parallel, one with quotes by csv-core).
//!
//! Every problem is collected, not just the first: a file that contradicts its spec is reported
//! cell by cell (file, line, column, reason), so it can be fixed in one pass.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use vigie_model::Matrix;

use crate::schema::{Cell, Origin, Schema, UNSEEN, ValueError};
use crate::spec::{ModelSpec, Task, normalise_token};
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

impl Problem {
    /// A problem of the whole file, not of one line.
    fn whole_file(path: &Path, message: String) -> Self {
        Problem {
            file: path.to_path_buf(),
            line: None,
            column: None,
            message,
        }
    }
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
    /// Per feature (model order): codes the spec does not list, treated as missing by the
    /// feature's `unseen` policy when read for the model, counted in its "other" bin when read
    /// for drift (absent from reports written before the policy).
    #[serde(default)]
    pub unseen_codes: Vec<usize>,
    /// Read for the model: each such code as `(row, feature, text as written)`, by row, so an
    /// event built from the row can carry it as the prediction service would (replays,
    /// backtests). Not saved.
    #[serde(skip)]
    pub unseen_cells: Vec<(usize, usize, String)>,
}

/// Features and targets of one split, checked against the spec.
#[derive(Debug, Clone)]
pub struct LabelledData {
    /// Row-major, model order, `NaN` where a value is missing.
    pub x: Matrix,
    /// 1.0 for the positive class, 0.0 for the negative; the number, for a regression.
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

/// Loads a features file alone, column by column (one per feature, model order, `NaN` =
/// missing), checked against the spec: what drift reports compare. A code the spec does not
/// list, whatever the feature's unseen policy, is [`UNSEEN`] (its "other" bin, as the drift
/// service counts it) and counted in the report's `unseen_codes`.
pub fn load_feature_columns(
    spec: &ModelSpec,
    schema: &Schema,
    features: &Path,
) -> Result<(Vec<Vec<f64>>, LoadReport)> {
    let mut problems = Vec::new();
    match read_feature_columns(spec, schema, features, Purpose::Drift, &mut problems) {
        Ok(loaded) if problems.is_empty() => Ok(loaded),
        _ => Err(Error::Data { problems }),
    }
}

/// Loads a features file alone and checks it against the spec.
pub fn load_features(
    spec: &ModelSpec,
    schema: &Schema,
    features: &Path,
) -> Result<(Matrix, LoadReport)> {
    let mut problems = Vec::new();
    match read_features(spec, schema, features, &mut problems) {
        Ok(loaded) if problems.is_empty() => Ok(loaded),
        _ => Err(Error::Data { problems }),
    }
}

/// Reads a column of event times from a data file (the spec's separator), which must be in
/// time order: what `vigie backtest` replays. A time is RFC 3339 (`2021-06-01T08:30:00+02:00`),
/// a date and time in UTC (`2021-06-01 08:30:00`, seconds optional, `T` or a space), or a date
/// (midnight UTC). Returned as milliseconds since the epoch, one per record.
pub fn load_times(spec: &ModelSpec, path: &Path, column: &str) -> Result<Vec<i64>> {
    let mut problems = Vec::new();
    let Ok((records, lines, header)) = read_records(path, spec.data.separator, &mut problems)
    else {
        return Err(Error::Data { problems });
    };
    let problem = |line: usize, message: String| Problem {
        file: path.to_path_buf(),
        line: Some(line),
        column: Some(column.to_string()),
        message,
    };
    let Some(c) = spec.column_names.find(&header, column) else {
        return Err(Error::Data {
            problems: vec![problem(1, "missing column: the events' time".into())],
        });
    };
    let mut times = Vec::with_capacity(records.len().saturating_sub(1));
    let mut previous: Option<(i64, usize)> = None;
    for (r, &line) in lines.iter().enumerate().skip(1) {
        let text = records.field(r, c).trim();
        let Some(t) = parse_time(text) else {
            problems.push(problem(
                line,
                format!(
                    "{text:?} is not a time: write 2021-06-01T08:30:00Z (RFC 3339), 2021-06-01 08:30:00 (UTC) or 2021-06-01"
                ),
            ));
            continue;
        };
        if let Some((before, before_line)) = previous
            && t < before
        {
            problems.push(problem(
                line,
                format!(
                    "{text} is before the time of line {before_line}: the events must be in time order (sort the file by {column})"
                ),
            ));
        }
        previous = Some((t, line));
        times.push(t);
    }
    if problems.is_empty() {
        Ok(times)
    } else {
        Err(Error::Data { problems })
    }
}

/// A time as [`load_times`] reads it, in milliseconds since the epoch.
fn parse_time(text: &str) -> Option<i64> {
    use chrono::{DateTime, NaiveDate, NaiveDateTime};
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.timestamp_millis());
    }
    for format in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(text, format) {
            return Some(t.and_utc().timestamp_millis());
        }
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc().timestamp_millis())
}

/// Reads a file and checks the spec's separator: the bytes, and the separator as a byte.
fn read_file(
    path: &Path,
    separator: char,
    problems: &mut Vec<Problem>,
) -> std::result::Result<(Vec<u8>, u8), ()> {
    let whole_file = |message: String| Problem::whole_file(path, message);
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
    Ok((bytes, separator))
}

/// Checks that the file is text, that every record has as many fields as the header and that no
/// blank line sits between records (a reader that filled a short record with empty values, or
/// read a blank line as an empty row, would change the data silently), honouring double-quoted
/// fields, which may span lines.
/// Returns the line where each record starts, the header's first.
fn check_structure(
    path: &Path,
    bytes: &[u8],
    separator: u8,
    problems: &mut Vec<Problem>,
) -> Vec<usize> {
    let problem = |line: Option<usize>, message: String| Problem {
        file: path.to_path_buf(),
        line,
        column: None,
        message,
    };
    if bytes.is_empty() {
        problems.push(problem(None, "the file is empty".into()));
        return Vec::new();
    }
    if let Err(e) = std::str::from_utf8(bytes) {
        let line = bytes[..e.valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1;
        problems.push(problem(Some(line), "not valid UTF-8 text".into()));
        return Vec::new();
    }
    // Records as (start line, field count), and the first blank line not yet followed by a record.
    let mut records: Vec<(usize, usize)> = Vec::new();
    let mut blank: Option<usize> = None;
    let (mut fields, mut line, mut start, mut quoted, mut has_content) =
        (1usize, 1usize, 1usize, false, false);
    let mut finish =
        |fields: usize, start: usize, has_content: bool, problems: &mut Vec<Problem>| {
            if !has_content {
                blank.get_or_insert(start);
                return;
            }
            if let Some(at) = blank.take().filter(|_| !records.is_empty()) {
                problems.push(problem(Some(at), "blank line between records".into()));
            }
            records.push((start, fields));
        };
    for &b in bytes {
        match b {
            b'"' => quoted = !quoted,
            b'\n' if quoted => line += 1,
            b'\n' => {
                finish(fields, start, has_content, problems);
                fields = 1;
                line += 1;
                start = line;
                has_content = false;
                continue;
            }
            b if b == separator && !quoted => fields += 1,
            b'\r' => continue,
            _ => {}
        }
        has_content = true;
    }
    if quoted {
        problems.push(problem(
            Some(start),
            "a quoted field is never closed".into(),
        ));
        return Vec::new();
    }
    finish(fields, start, has_content, problems);
    let Some(&(_, header_fields)) = records.first() else {
        return Vec::new();
    };
    for &(at, n) in &records[1..] {
        if n != header_fields {
            problems.push(problem(
                Some(at),
                format!("{n} fields where the header has {header_fields}"),
            ));
        }
    }
    records.into_iter().map(|(at, _)| at).collect()
}

/// Records per block: blocks of [`Records`] are cut into fields in parallel, and blocks of rows
/// are checked in parallel.
const BLOCK_RECORDS: usize = 2048;

/// The fields of a checked file, unescaped: record `r`'s field `c` is `text[start..end]` for
/// `(start, end) = blocks[r / BLOCK_RECORDS][(r % BLOCK_RECORDS) * width + c]`.
struct Records {
    text: String,
    blocks: Vec<Vec<(u32, u32)>>,
    width: usize,
    count: usize,
}

impl Records {
    /// Runs [`check_structure`]'s checks and reads every record: the records and the line where
    /// each starts, the header's first. Files without a quote take a faster path than
    /// csv-core's state machine, which does both, in place and in parallel.
    fn read_checked(
        path: &Path,
        bytes: Vec<u8>,
        separator: u8,
        problems: &mut Vec<Problem>,
    ) -> std::result::Result<(Self, Vec<usize>), ()> {
        let before = problems.len();
        let (records, lines) = match String::from_utf8(bytes) {
            Ok(text) if !text.is_empty() && unquoted(text.as_bytes()) => {
                Self::read_unquoted(path, text, separator, problems)
            }
            text => {
                let bytes = text.map_or_else(|e| e.into_bytes(), String::into_bytes);
                let lines = check_structure(path, &bytes, separator, problems);
                if problems.len() > before {
                    return Err(());
                }
                let header_fields = bytes
                    .split(|&b| b == b'\n')
                    .next()
                    .map_or(1, |h| h.iter().filter(|&&b| b == separator).count() + 1);
                let records = Self::read(&bytes, separator, lines.len() * header_fields);
                (records, lines)
            }
        };
        if problems.len() > before {
            return Err(());
        }
        Ok((records, lines))
    }

    /// Reads every record with csv-core (quoted fields, `\r\n`, blank lines skipped) from a
    /// file that passed [`check_structure`]; `fields` is how many fields to expect in all.
    fn read(bytes: &[u8], separator: u8, fields: usize) -> Self {
        let mut reader = csv_core::ReaderBuilder::new().delimiter(separator).build();
        // Unescaping never lengthens a field, so the output always fits.
        let mut text = vec![0u8; bytes.len() + 1];
        let (mut input, mut out, mut start) = (bytes, 0, 0);
        let mut bounds = Vec::with_capacity(fields);
        let mut width = 0;
        loop {
            let (result, read, written) = reader.read_field(input, &mut text[out..]);
            input = &input[read..];
            out += written;
            match result {
                csv_core::ReadFieldResult::InputEmpty | csv_core::ReadFieldResult::OutputFull => {
                    if result == csv_core::ReadFieldResult::OutputFull {
                        text.resize(text.len() * 2, 0);
                    }
                }
                csv_core::ReadFieldResult::Field { record_end } => {
                    // `load` refuses files of 4 GiB or more before reading them.
                    bounds.push((start, out as u32));
                    start = out as u32;
                    if record_end && width == 0 {
                        width = bounds.len();
                    }
                }
                csv_core::ReadFieldResult::End => break,
            }
        }
        text.truncate(out);
        // The input is valid UTF-8 and fields are cut at ASCII bytes: so is the output.
        let text = String::from_utf8(text)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
        let count = bounds.len().checked_div(width).unwrap_or(0);
        let blocks = bounds
            .chunks(BLOCK_RECORDS * width.max(1))
            .map(<[_]>::to_vec)
            .collect();
        Records {
            text,
            blocks,
            width,
            count,
        }
    }

    /// [`check_structure`] and [`Records::read`] for a file without a double quote or a lone
    /// `\r` (see [`unquoted`]): no field can be escaped, so a field is the text between two
    /// separators or line ends, and stays where it is. Line ends are found first (SIMD
    /// `memchr`), then blocks of records are cut into fields in parallel. Same records, same
    /// problems, several times faster.
    fn read_unquoted(
        path: &Path,
        text: String,
        separator: u8,
        problems: &mut Vec<Problem>,
    ) -> (Self, Vec<usize>) {
        use rayon::prelude::*;
        let problem = |line: usize, message: String| Problem {
            file: path.to_path_buf(),
            line: Some(line),
            column: None,
            message,
        };
        let bytes = text.as_bytes();
        // Records as (line, start, end) without the line end; `load` refuses files of 4 GiB or
        // more before reading them, so offsets fit in u32.
        let mut records: Vec<(usize, u32, u32)> = Vec::new();
        let (mut line, mut start, mut blank) = (1, 0, None);
        for newline in memchr::memchr_iter(b'\n', bytes).chain([bytes.len()]) {
            let end = if newline > start && bytes[newline - 1] == b'\r' {
                newline - 1
            } else {
                newline
            };
            if end == start {
                blank.get_or_insert(line);
            } else {
                if let Some(at) = blank.take().filter(|_| !records.is_empty()) {
                    problems.push(problem(at, "blank line between records".into()));
                }
                records.push((line, start as u32, end as u32));
            }
            (line, start) = (line + 1, newline + 1);
        }
        let width = records.first().map_or(0, |&(_, start, end)| {
            memchr::memchr_iter(separator, &bytes[start as usize..end as usize]).count() + 1
        });
        let cut: Vec<_> = records
            .par_chunks(BLOCK_RECORDS)
            .map(|chunk| {
                let mut bounds = Vec::with_capacity(chunk.len() * width);
                let mut ragged = Vec::new();
                for &(line, start, end) in chunk {
                    let before = bounds.len();
                    let mut field = start;
                    each_byte_equal(&bytes[start as usize..end as usize], separator, |at| {
                        let at = start + at as u32;
                        bounds.push((field, at));
                        field = at + 1;
                    });
                    bounds.push((field, end));
                    let fields = bounds.len() - before;
                    if fields != width {
                        // Reported below; the record keeps its place in the layout.
                        ragged.push((line, fields));
                        bounds.resize(before + width, (end, end));
                    }
                }
                (bounds, ragged)
            })
            .collect();
        let mut blocks = Vec::with_capacity(cut.len());
        for (bounds, ragged) in cut {
            problems.extend(ragged.into_iter().map(|(line, fields)| {
                problem(
                    line,
                    format!("{fields} fields where the header has {width}"),
                )
            }));
            blocks.push(bounds);
        }
        let lines = records.iter().map(|&(line, _, _)| line).collect();
        let records = Records {
            text,
            blocks,
            width,
            count: records.len(),
        };
        (records, lines)
    }

    /// Records, the header included.
    fn len(&self) -> usize {
        self.count
    }

    fn field(&self, record: usize, column: usize) -> &str {
        let (start, end) =
            self.blocks[record / BLOCK_RECORDS][(record % BLOCK_RECORDS) * self.width + column];
        self.text
            .get(start as usize..end as usize)
            .unwrap_or_default()
    }
}

/// Calls `found` with the position of every byte of `text` equal to `byte`, in order. Fields
/// are a few bytes long, too short for `memchr`'s setup to pay: eight bytes are compared at
/// once, and the matches are read off a bit mask, without a branch per byte.
fn each_byte_equal(text: &[u8], byte: u8, mut found: impl FnMut(usize)) {
    const LOW: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    let pattern = u64::from_ne_bytes([byte; 8]);
    let mut words = text.chunks_exact(8);
    let mut base = 0;
    for word in &mut words {
        let x = u64::from_le_bytes(word.try_into().unwrap_or_default()) ^ pattern;
        // The high bit of each byte that is zero in `x`, exactly (no carry across bytes).
        let mut zeros = !(((x & LOW) + LOW) | x | LOW);
        while zeros != 0 {
            found(base + zeros.trailing_zeros() as usize / 8);
            zeros &= zeros - 1;
        }
        base += 8;
    }
    for (i, &b) in words.remainder().iter().enumerate() {
        if b == byte {
            found(base + i);
        }
    }
}

/// True when no field of the file can be quoted, and every `\r` ends a line with the `\n`
/// after it (csv-core also ends records on a lone `\r`).
fn unquoted(bytes: &[u8]) -> bool {
    !bytes.contains(&b'"')
        && (!bytes.contains(&b'\r')
            || bytes
                .iter()
                .zip(bytes.iter().skip(1).chain([&0]))
                .all(|(&b, &next)| b != b'\r' || next == b'\n'))
}

/// Reads a data file into records, its structure checked: the records (the header first), the
/// line where each starts, and the header's names.
fn read_records(
    path: &Path,
    separator: char,
    problems: &mut Vec<Problem>,
) -> std::result::Result<(Records, Vec<usize>, Vec<String>), ()> {
    let whole_file = |message: String| Problem::whole_file(path, message);
    let (bytes, separator) = read_file(path, separator, problems)?;
    if bytes.len() >= u32::MAX as usize {
        problems.push(whole_file("larger than 4 GiB: split it".into()));
        return Err(());
    }
    let (records, lines) = Records::read_checked(path, bytes, separator, problems)?;
    if records.len() != lines.len() || records.len() == 0 {
        problems.push(whole_file(format!(
            "read {} records where the file holds {}",
            records.len(),
            lines.len()
        )));
        return Err(());
    }
    let header = (0..records.width)
        .map(|c| records.field(0, c).trim().to_string())
        .collect();
    Ok((records, lines, header))
}

fn read_features(
    spec: &ModelSpec,
    schema: &Schema,
    path: &Path,
    problems: &mut Vec<Problem>,
) -> std::result::Result<(Matrix, LoadReport), ()> {
    let (columns, report) = read_feature_columns(spec, schema, path, Purpose::Model, problems)?;
    let (rows, width) = (report.rows, columns.len());
    let mut data = vec![f64::NAN; rows * width];
    for (c, values) in columns.into_iter().enumerate() {
        for (r, v) in values.into_iter().enumerate() {
            data[r * width + c] = v;
        }
    }
    let matrix = Matrix::from_row_major(data, rows, width).map_err(|_| ())?;
    Ok((matrix, report))
}

/// What a features file is read for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    /// The model's rows: an unlisted code is missing or refused, as the spec says.
    Model,
    /// Drift counts: an unlisted code is [`UNSEEN`], whatever the policy.
    Drift,
}

/// Reads a features file: every value checked against its feature, in parallel per column.
/// One column per feature, model order.
fn read_feature_columns(
    spec: &ModelSpec,
    schema: &Schema,
    path: &Path,
    purpose: Purpose,
    problems: &mut Vec<Problem>,
) -> std::result::Result<(Vec<Vec<f64>>, LoadReport), ()> {
    let before = problems.len();
    let (records, lines, header) = read_records(path, spec.data.separator, problems)?;
    let mut columns = Vec::with_capacity(schema.len());
    // The feature each column names (names and aliases, as the spec matches them); a column
    // spelled exactly as the feature's name comes first.
    let named: Vec<Option<usize>> = header.iter().map(|h| schema.column(h)).collect();
    for (i, feature) in schema.features().iter().enumerate() {
        let exact = header.iter().position(|h| h == feature.name());
        match exact.or_else(|| named.iter().position(|&f| f == Some(i))) {
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
    let rows = records.len() - 1;
    let mut report = LoadReport {
        rows,
        ignored_columns: header
            .iter()
            .enumerate()
            .filter(|&(c, _)| !columns.contains(&c))
            .map(|(_, h)| h.clone())
            .collect(),
        missing: vec![0; schema.len()],
        out_of_range_as_missing: vec![0; schema.len()],
        unseen_codes: vec![0; schema.len()],
        unseen_cells: Vec::new(),
    };
    // Blocks of rows are checked in parallel (rayon), each reading its records in file order
    // (column by column, the reads would stride across the whole file once per feature) and
    // writing its part of every column.
    use rayon::prelude::*;
    let features = schema.features();
    let mut values: Vec<Vec<f64>> = vec![vec![f64::NAN; rows]; features.len()];
    let mut blocks: Vec<Vec<&mut [f64]>> = (0..rows.div_ceil(BLOCK_RECORDS))
        .map(|_| Vec::with_capacity(features.len()))
        .collect();
    for column in &mut values {
        for (block, part) in blocks.iter_mut().zip(column.chunks_mut(BLOCK_RECORDS)) {
            block.push(part);
        }
    }
    let checked: Vec<_> = blocks
        .into_par_iter()
        .enumerate()
        .map(|(b, mut parts)| {
            let (mut missing, mut out_of_range, mut unseen) = (
                vec![0; features.len()],
                vec![0; features.len()],
                vec![0; features.len()],
            );
            let mut cells = Vec::new();
            let mut found = Vec::new();
            for k in 0..parts.first().map_or(0, |p| p.len()) {
                let r = b * BLOCK_RECORDS + k;
                for (c, (feature, &column)) in features.iter().zip(&columns).enumerate() {
                    match feature.parse(Some(records.field(r + 1, column)), Origin::Data) {
                        Ok(Cell::Value(v)) => parts[c][k] = v,
                        Ok(Cell::Missing) => missing[c] += 1,
                        Ok(Cell::Unseen) | Err(ValueError::UnknownCode(_))
                            if purpose == Purpose::Drift =>
                        {
                            parts[c][k] = UNSEEN;
                            unseen[c] += 1;
                        }
                        Ok(Cell::Unseen) => {
                            unseen[c] += 1;
                            let text = crate::number::trim(records.field(r + 1, column));
                            cells.push((r, c, text.to_string()));
                        }
                        Ok(Cell::OutOfRangeAsMissing) => out_of_range[c] += 1,
                        Err(e) => found.push((
                            c,
                            Problem {
                                file: path.to_path_buf(),
                                line: Some(lines[r + 1]),
                                column: Some(feature.name().to_string()),
                                message: e.to_string(),
                            },
                        )),
                    }
                }
            }
            (missing, out_of_range, unseen, cells, found)
        })
        .collect();
    let mut found = Vec::new();
    for (missing, out_of_range, unseen, cells, block_found) in checked {
        report.unseen_cells.extend(cells);
        for c in 0..features.len() {
            report.missing[c] += missing[c];
            report.out_of_range_as_missing[c] += out_of_range[c];
            report.unseen_codes[c] += unseen[c];
        }
        found.extend(block_found);
    }
    // Reported feature by feature, then line by line (the sort is stable).
    found.sort_by_key(|&(c, _)| c);
    problems.extend(found.into_iter().map(|(_, p)| p));
    if problems.len() > before {
        return Err(());
    }
    Ok((values, report))
}

/// Reads a target file: the spec's target column, each value the positive class (1) or the
/// negative one (0) for a classification, a number inside the target's range for a regression.
fn read_target(
    spec: &ModelSpec,
    path: &Path,
    problems: &mut Vec<Problem>,
) -> std::result::Result<Vec<f64>, ()> {
    let (records, lines, header) = read_records(path, spec.data.separator, problems)?;
    let target = &spec.target;
    let Some(column) = spec.target_position(&header) else {
        problems.push(Problem {
            file: path.to_path_buf(),
            line: Some(1),
            column: Some(target.column.clone()),
            message: "missing column: the spec's target".into(),
        });
        return Err(());
    };
    let reader = TargetReader::new(spec);
    let before = problems.len();
    let values: Vec<f64> = (1..records.len())
        .map(|r| {
            reader
                .read(records.field(r, column))
                .unwrap_or_else(|message| {
                    problems.push(Problem {
                        file: path.to_path_buf(),
                        line: Some(lines[r]),
                        column: Some(target.column.clone()),
                        message,
                    });
                    f64::NAN
                })
        })
        .collect();
    if problems.len() > before {
        Err(())
    } else {
        Ok(values)
    }
}

/// How a target cell becomes the number a model fits.
enum TargetReader {
    /// The positive and negative classes' tokens, normalised.
    Classes { positive: String, negative: String },
    /// A number in the valid range.
    Number { min: f64, max: f64 },
}

impl TargetReader {
    fn new(spec: &ModelSpec) -> Self {
        let target = &spec.target;
        match spec.task {
            Task::BinaryClassification => TargetReader::Classes {
                positive: normalise_token(target.positive()),
                negative: normalise_token(target.negative()),
            },
            Task::Regression => {
                let (min, max) = target.range();
                TargetReader::Number { min, max }
            }
        }
    }

    fn read(&self, cell: &str) -> std::result::Result<f64, String> {
        match self {
            TargetReader::Classes { positive, negative } => {
                let token = normalise_token(cell);
                if token == *positive {
                    Ok(1.0)
                } else if token == *negative {
                    Ok(0.0)
                } else if token.is_empty() {
                    Err("missing target value".into())
                } else {
                    Err(format!(
                        "target {token:?} is neither the positive class {positive:?} nor the negative class {negative:?}"
                    ))
                }
            }
            TargetReader::Number { min, max } => {
                let text = cell.trim();
                if text.is_empty() {
                    return Err("missing target value".into());
                }
                match crate::number::parse_f64(text).ok() {
                    Some(v) if v.is_finite() && (*min..=*max).contains(&v) => Ok(v),
                    Some(v) if v.is_finite() => Err(format!(
                        "target {v} is outside the valid range [{min}, {max}]"
                    )),
                    _ => Err(format!("target {text:?} is not a number")),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
