//! `POST /v1/models/{name}/predict/csv`: a CSV upload answered as CSV, streamed both ways.
//!
//! The header is read and checked before anything is answered (a bad header is a 422 like
//! any JSON request). Then rows are read, checked and predicted in chunks of
//! [`CHUNK_ROWS`], and each chunk's answer is sent as soon as it is ready; the channel to the
//! client holds at most [`CHANNEL_CHUNKS`] chunks, so a slow reader slows the upload rather
//! than filling memory. Memory stays bounded by the chunk size, whatever the file's length.
//!
//! The answer has one line per data row, in order: `row,class,label,probability,error,field`
//! for a classification, `row,prediction,lower,upper,underestimation_risk,group,error,field`
//! for a regression. A row the spec refuses gets its error and the field at fault instead of a prediction; the
//! other rows are predicted (a status code cannot change once rows are streaming). Every
//! predicted row is published like any prediction, with `source` `batch` and its row index.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Extension, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use bytes::Bytes;
use csv_core::{ReadRecordResult, Reader};
use futures_util::{Stream, StreamExt};
use vigie_api::{ApiError, CurrentUser, RequestId};
use vigie_core::inference::Prediction;
use vigie_core::schema::RowError;
use vigie_core::spec::Task;
use vigie_model::Matrix;
use vigie_stream::Source;
use vigie_stream::event::Value as EventValue;

use crate::models::Served;
use crate::predict::{Answering, event_value, media_type, source_of, value_error};
use crate::state::AppState;

/// Rows predicted together (one blocking task, one write to the client).
pub const CHUNK_ROWS: usize = 1024;
/// Chunks waiting for a slow client before reading pauses.
pub const CHANNEL_CHUNKS: usize = 4;
/// The answer's header line for a classification.
pub const ANSWER_HEADER: &str = "row,class,label,probability,error,field\n";
/// The answer's header line for a regression.
pub const ESTIMATE_ANSWER_HEADER: &str =
    "row,prediction,lower,upper,underestimation_risk,group,error,field\n";

/// The answer's header for a model of `task`, and how many answer columns lie between `row`
/// and `error` (left empty on a refused row).
fn answer_shape(task: Task) -> (&'static str, &'static str) {
    match task {
        Task::BinaryClassification => (ANSWER_HEADER, ",,,"),
        Task::Regression => (ESTIMATE_ANSWER_HEADER, ",,,,,"),
    }
}

/// One CSV record: its text and where each field ends.
#[derive(Debug, Clone)]
pub struct Record {
    text: String,
    ends: Vec<usize>,
}

impl Record {
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    pub fn field(&self, i: usize) -> &str {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.text[start..self.ends[i]]
    }

    /// A line with nothing on it.
    fn is_blank(&self) -> bool {
        self.ends.len() == 1 && self.text.trim().is_empty()
    }
}

/// Why reading stopped.
#[derive(Debug, Clone, PartialEq)]
pub enum ReadError {
    /// The body could not be read (the client went away, or the connection broke).
    Body(String),
    /// A record longer than the limit, starting at `line` of the upload: the rest of the file
    /// cannot be split reliably. `in_quote` when a quote opened in it is still open (the
    /// usual cause: a quote never closed swallows the lines after it).
    LineTooLong {
        max: usize,
        line: usize,
        in_quote: bool,
    },
    /// The upload ended inside a quoted field: the quote opened in the record starting at
    /// `line` is never closed, and that record took the `lines` lines after it.
    UnclosedQuote { line: usize, lines: usize },
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Body(e) => write!(f, "the upload broke off: {e}"),
            ReadError::LineTooLong {
                max,
                line,
                in_quote: true,
            } => write!(
                f,
                "a quote opened on line {line} is not closed within {max} bytes"
            ),
            ReadError::LineTooLong { max, line, .. } => {
                write!(f, "line {line} is longer than {max} bytes")
            }
            ReadError::UnclosedQuote { line, lines } => write!(
                f,
                "a quote opened on line {line} is never closed: that line and the {lines} after it were read as one field"
            ),
        }
    }
}

/// Splits a body stream into CSV records as its chunks arrive (quotes, escaped quotes and
/// CRLF handled by `csv-core`). Holds at most one line and one chunk of input.
pub struct Records<S> {
    stream: S,
    reader: Reader,
    input: Vec<u8>,
    pos: usize,
    eof: bool,
    out: Vec<u8>,
    out_len: usize,
    ends: Vec<usize>,
    ends_len: usize,
    max_line: usize,
    /// The upload's line (1-based) where the record being read starts.
    line: usize,
    /// Line ends and double quotes in the record being read, as sent.
    record_newlines: usize,
    record_quotes: usize,
    /// The last byte read, for the count of lines at the end.
    last: u8,
}

impl<S> std::fmt::Debug for Records<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Records").field("eof", &self.eof).finish()
    }
}

impl<S, E> Records<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    pub fn new(stream: S, max_line: usize) -> Self {
        Records {
            stream,
            reader: Reader::new(),
            input: Vec::new(),
            pos: 0,
            eof: false,
            out: vec![0; max_line.clamp(1, 1024)],
            out_len: 0,
            ends: vec![0; 64],
            ends_len: 0,
            max_line,
            line: 1,
            record_newlines: 0,
            record_quotes: 0,
            last: b'\n',
        }
    }

    /// The upload's line (1-based) where the next record starts.
    pub fn line(&self) -> usize {
        self.line
    }

    /// Reads the rest of the upload without splitting it: how many lines it holds from the
    /// first line of the record being read on (the lines a stopped upload did not read), or
    /// the error that broke it off.
    pub async fn count_rest(&mut self) -> Result<usize, ReadError> {
        let mut lines = self.record_newlines;
        let mut last = self.last;
        let mut count = |bytes: &[u8]| {
            if let Some(&b) = bytes.last() {
                lines += memchr::memchr_iter(b'\n', bytes).count();
                last = b;
            }
        };
        count(&self.input[self.pos..]);
        self.pos = self.input.len();
        while !self.eof {
            match self.stream.next().await {
                Some(Ok(chunk)) => count(&chunk),
                Some(Err(e)) => return Err(ReadError::Body(e.to_string())),
                None => self.eof = true,
            }
        }
        Ok(lines + usize::from(last != b'\n'))
    }

    /// The next record (`Err` inside for a record that is not UTF-8), or `None` at the end.
    pub async fn next(&mut self) -> Result<Option<Result<Record, String>>, ReadError> {
        loop {
            // csv-core reads an empty input as the end of the data: fetch before asking.
            if self.pos == self.input.len() && !self.eof {
                self.input.clear();
                self.pos = 0;
                match self.stream.next().await {
                    Some(Ok(chunk)) => self.input.extend_from_slice(&chunk),
                    Some(Err(e)) => return Err(ReadError::Body(e.to_string())),
                    None => self.eof = true,
                }
                continue;
            }
            let (result, nin, nout, nend) = self.reader.read_record(
                &self.input[self.pos..],
                &mut self.out[self.out_len..],
                &mut self.ends[self.ends_len..],
            );
            let read = &self.input[self.pos..self.pos + nin];
            self.record_newlines += memchr::memchr_iter(b'\n', read).count();
            self.record_quotes += memchr::memchr_iter(b'"', read).count();
            if let Some(&b) = read.last() {
                self.last = b;
            }
            self.pos += nin;
            self.out_len += nout;
            self.ends_len += nend;
            match result {
                ReadRecordResult::InputEmpty => {
                    if self.eof {
                        return Ok(None);
                    }
                }
                ReadRecordResult::OutputFull => {
                    if self.out.len() >= self.max_line {
                        return Err(ReadError::LineTooLong {
                            max: self.max_line,
                            line: self.line,
                            in_quote: self.record_quotes % 2 == 1,
                        });
                    }
                    let grown = (self.out.len() * 2).min(self.max_line);
                    self.out.resize(grown, 0);
                }
                ReadRecordResult::OutputEndsFull => {
                    let grown = self.ends.len() * 2;
                    self.ends.resize(grown, 0);
                }
                ReadRecordResult::Record => {
                    // At the end of the upload csv-core closes an open quoted field: a record
                    // with an odd number of quotes there never closed its quote.
                    let at_end = self.eof && self.pos == self.input.len();
                    if at_end && self.record_quotes % 2 == 1 {
                        let lines = self.record_newlines + usize::from(self.last != b'\n');
                        return Err(ReadError::UnclosedQuote {
                            line: self.line,
                            lines: lines.saturating_sub(1),
                        });
                    }
                    self.line += self.record_newlines;
                    self.record_newlines = 0;
                    self.record_quotes = 0;
                    let bytes = self.out[..self.out_len].to_vec();
                    let ends = self.ends[..self.ends_len].to_vec();
                    self.out_len = 0;
                    self.ends_len = 0;
                    return Ok(Some(
                        String::from_utf8(bytes)
                            .map(|text| Record { text, ends })
                            .map_err(|_| {
                                "not valid UTF-8 text (another encoding? send the file as UTF-8)"
                                    .to_string()
                            }),
                    ));
                }
                ReadRecordResult::End => return Ok(None),
            }
        }
    }
}

/// For each feature in model order, its column in the upload (matched as the spec's
/// `column_names` says, aliases included), and the columns that are no feature: ignored, and
/// listed in the answer's `x-ignored-columns` header (an export carries more than a model reads).
fn columns_of(served: &Served, header: &Record) -> Result<(Vec<usize>, Vec<String>), ApiError> {
    let schema = served.model.schema();
    let mut order = vec![usize::MAX; schema.len()];
    let mut ignored = Vec::new();
    for col in 0..header.len() {
        let name = header.field(col).trim().trim_start_matches('\u{feff}');
        match schema.column(name) {
            Some(i) if order[i] != usize::MAX => {
                let first = header.field(order[i]).trim().trim_start_matches('\u{feff}');
                return Err(ApiError::invalid(
                    "duplicate_field",
                    format!(
                        "the header names feature {} twice ({first:?} and {name:?})",
                        schema.features()[i].name()
                    ),
                )
                .with_field(name));
            }
            Some(i) => order[i] = col,
            None => ignored.push(name.to_string()),
        }
    }
    if let Some(i) = order.iter().position(|&c| c == usize::MAX) {
        let name = schema.features()[i].name();
        return Err(ApiError::invalid(
            "missing_field",
            format!("the header has no column {name}; every feature needs one (empty cells for unknown values)"),
        )
        .with_field(name));
    }
    Ok((order, ignored))
}

/// Names as one header value: comma-separated, each byte outside visible ASCII (and `%` and
/// `,`) percent-encoded.
fn header_list(names: &[String]) -> String {
    let mut out = String::new();
    for (i, name) in names.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        for &b in name.as_bytes() {
            if (b.is_ascii_graphic() || b == b' ') && b != b'%' && b != b',' {
                out.push(b as char);
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
    }
    out
}

/// `POST /v1/models/{name}/predict/csv`
pub async fn predict_csv(
    State(state): State<AppState>,
    _user: CurrentUser,
    Path(name): Path<String>,
    Extension(request): Extension<RequestId>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let served = state.models.get_or_404(&name)?;
    let source = source_of(&headers, Source::Batch)?;
    if !media_type(&headers).is_some_and(|m| m.eq_ignore_ascii_case("text/csv")) {
        return Err(ApiError::unsupported_media_type("text/csv"));
    }
    let mut records = Records::new(body.into_data_stream(), state.config.max_csv_line_bytes);
    let header_record = match records.next().await {
        Ok(Some(Ok(record))) if !record.is_blank() => record,
        Ok(Some(Ok(_))) | Ok(None) => {
            return Err(ApiError::invalid(
                "empty_csv",
                "the upload has no header line",
            ));
        }
        Ok(Some(Err(message))) => {
            return Err(ApiError::bad_request(
                "invalid_csv",
                format!("the header line is {message}"),
            ));
        }
        Err(ReadError::LineTooLong { max, .. }) => {
            return Err(ApiError::too_large(
                "line_too_long",
                format!("the header line is longer than {max} bytes"),
            ));
        }
        Err(e) => return Err(ApiError::bad_request("invalid_csv", e.to_string())),
    };
    let (columns, ignored) = columns_of(&served, &header_record)?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(CHANNEL_CHUNKS);
    let model_version = served.version_label.clone();
    let artifact = served.model.artifact();
    let (decision_header, decision) = match &artifact.regression {
        None => ("x-threshold", artifact.threshold.to_string()),
        Some(r) => ("x-interval-coverage", r.interval.coverage.to_string()),
    };
    let upload = Upload {
        width: header_record.len(),
        columns,
        state,
        served,
        request,
        source,
    };
    tokio::spawn(answer_rows(Arc::new(upload), records, tx));
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let mut response = Response::new(Body::from_stream(stream));
    *response.status_mut() = StatusCode::OK;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    if let Ok(v) = HeaderValue::from_str(&name) {
        h.insert("x-model", v);
    }
    if let Ok(v) = HeaderValue::from_str(&model_version) {
        h.insert("x-model-version", v);
    }
    if let Ok(v) = HeaderValue::from_str(&decision) {
        h.insert(decision_header, v);
    }
    if !ignored.is_empty() {
        tracing::info!(model = %name, columns = %ignored.join(","), "CSV upload: columns that are no feature ignored");
    }
    if let Ok(v) = HeaderValue::from_str(&header_list(&ignored)) {
        h.insert("x-ignored-columns", v);
    }
    Ok(response)
}

/// An upload being answered: what every chunk of it shares.
struct Upload {
    state: AppState,
    served: Arc<Served>,
    request: RequestId,
    source: Source,
    /// For each feature in model order, its column in the upload.
    columns: Vec<usize>,
    /// Fields in the header: every row must have as many.
    width: usize,
}

impl Upload {
    fn answering(&self) -> Answering<'_> {
        Answering {
            state: &self.state,
            served: &self.served,
            request: &self.request,
            source: self.source,
        }
    }
}

/// Reads, predicts and answers the data rows, chunk by chunk, until the end of the upload,
/// the row limit, a fatal reading error, or the client leaving.
async fn answer_rows<S, E>(
    upload: Arc<Upload>,
    mut records: Records<S>,
    tx: tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
) where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let (header, blank) = answer_shape(upload.served.model.task());
    if tx
        .send(Ok(Bytes::from_static(header.as_bytes())))
        .await
        .is_err()
    {
        return;
    }
    let request = &upload.request;
    let max_rows = upload.state.config.max_csv_rows;
    let mut chunk = Vec::with_capacity(CHUNK_ROWS);
    let mut first = 0usize;
    let mut next_index = 0usize;
    let mut closing: Option<String> = None;
    loop {
        let line = records.line();
        let item = records.next().await;
        let done = match item {
            Ok(Some(record)) => {
                if record.as_ref().is_ok_and(Record::is_blank) {
                    continue;
                }
                if next_index >= max_rows {
                    let rest = records.count_rest().await;
                    closing = Some(not_read(
                        &format!(
                            "the upload has more than {max_rows} rows: row {max_rows} (line {line})"
                        ),
                        rest,
                    ));
                    true
                } else {
                    chunk.push(record);
                    next_index += 1;
                    false
                }
            }
            Ok(None) => true,
            Err(e) => {
                tracing::warn!(request_id = %request.id, row = next_index, error = %e, "CSV upload stopped");
                closing = Some(match &e {
                    ReadError::Body(_) => {
                        format!("{e}; rows from row {next_index} on were not read")
                    }
                    ReadError::UnclosedQuote { lines, .. } => format!(
                        "row {next_index}: {e}: that row and the {lines} lines after it were not read"
                    ),
                    ReadError::LineTooLong { .. } => {
                        // The lines from the record's own first line on, less that one.
                        let rest = records.count_rest().await.map(|n| n.saturating_sub(1));
                        not_read(&format!("row {next_index}: {e}: that row"), rest)
                    }
                });
                true
            }
        };
        if chunk.len() == CHUNK_ROWS || (done && !chunk.is_empty()) {
            let rows = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK_ROWS));
            let shared = Arc::clone(&upload);
            let answer =
                tokio::task::spawn_blocking(move || answer_chunk(&shared, &rows, first)).await;
            first = next_index;
            let answer = match answer {
                Ok(text) => text,
                Err(e) => {
                    tracing::error!(error = %e, "CSV chunk failed");
                    closing = Some("the service failed on a chunk; its log has the details".into());
                    break;
                }
            };
            if tx.send(Ok(Bytes::from(answer))).await.is_err() {
                tracing::info!(request_id = %request.id, "client left during a CSV answer");
                return;
            }
        }
        if done {
            break;
        }
    }
    if let Some(message) = closing {
        let line = format!("{blank},{},\n", quote(&format!("{INCOMPLETE}: {message}")));
        let _ = tx.send(Ok(Bytes::from(line))).await;
    }
}

/// How the last line of an answer to an upload that was not read to its end starts.
pub const INCOMPLETE: &str = "upload incomplete";

/// `what` was not read, nor the `rest` of the upload (its lines counted, or why they could
/// not be).
fn not_read(what: &str, rest: Result<usize, ReadError>) -> String {
    match rest {
        Ok(lines) => format!("{what} and the {lines} lines after it were not read"),
        Err(e) => format!("{what} and the rest of the upload were not read ({e})"),
    }
}

/// Quotes a CSV field when it needs it.
fn quote(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

/// Checks, predicts and publishes one chunk; returns its answer lines.
fn answer_chunk(upload: &Upload, rows: &[Result<Record, String>], first: usize) -> String {
    let served = &upload.served;
    let answering = upload.answering();
    let schema = served.model.schema();
    let cols = schema.len();
    let mut data: Vec<f64> = Vec::with_capacity(rows.len() * cols);
    let mut values: Vec<Vec<EventValue<'_>>> = Vec::with_capacity(rows.len());
    // Per row: Ok(position among the predicted rows) or the error and its field.
    let mut outcome: Vec<Result<usize, ApiError>> = Vec::with_capacity(rows.len());
    let mut row = vec![f64::NAN; cols];
    for record in rows {
        let record = match record {
            Ok(r) if r.len() != upload.width => {
                outcome.push(Err(ApiError::invalid(
                    "wrong_width",
                    format!(
                        "the row has {} fields, the header has {}",
                        r.len(),
                        upload.width
                    ),
                )));
                continue;
            }
            Ok(r) => r,
            Err(message) => {
                outcome.push(Err(ApiError::invalid("invalid_csv", message.clone())));
                continue;
            }
        };
        let texts = upload.columns.iter().map(|&col| Some(record.field(col)));
        match schema.parse_request_row(texts, &mut row) {
            Ok(()) => {
                let row_values = schema
                    .features()
                    .iter()
                    .zip(&row)
                    .zip(&upload.columns)
                    .map(|((feature, &v), &col)| event_value(feature, v, Some(record.field(col))))
                    .collect();
                data.extend_from_slice(&row);
                outcome.push(Ok(values.len()));
                values.push(row_values);
            }
            Err(RowError::Value { feature, error }) => {
                outcome.push(Err(value_error(&feature, &error)));
            }
            Err(e @ RowError::Width { .. }) => {
                outcome.push(Err(ApiError::invalid("wrong_width", e.to_string())));
            }
        }
    }
    let predicted = values.len();
    let predictions = match Matrix::from_row_major(data, predicted, cols) {
        Ok(x) => served.model.predict_batch(&x),
        Err(e) => {
            tracing::error!(error = %e, "CSV chunk matrix");
            Vec::new()
        }
    };
    let (_, blank) = answer_shape(served.model.task());
    let mut out = String::with_capacity(rows.len() * 48);
    for (i, result) in outcome.into_iter().enumerate() {
        let index = first + i;
        match result {
            Ok(k) if k < predictions.len() => {
                let p = predictions[k];
                answering.publish(Some(index as u64), &values[k], p);
                match p {
                    Prediction::Class(p) => out.push_str(&format!(
                        "{index},{},{},{},,\n",
                        p.class,
                        quote(served.model.label(p.class)),
                        p.probability
                    )),
                    Prediction::Estimate(e) => {
                        let group = served
                            .model
                            .group_finding(&e)
                            .map(|(_, g)| quote(&g.code))
                            .unwrap_or_default();
                        out.push_str(&format!(
                            "{index},{},{},{},{},{group},,\n",
                            e.value, e.interval[0], e.interval[1], e.underestimation_risk
                        ))
                    }
                }
            }
            Ok(_) => {
                answering.unanswered(index as u64);
                out.push_str(&format!("{index}{blank},prediction failed,\n"))
            }
            Err(error) => {
                answering.unanswered(index as u64);
                let field = error.field.clone().unwrap_or_default();
                let error = answering.rejected(error);
                out.push_str(&format!(
                    "{index}{blank},{},{}\n",
                    quote(&error.message),
                    quote(&field)
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read_all(
        chunks: Vec<&'static str>,
        max_line: usize,
    ) -> Vec<Result<Vec<String>, String>> {
        let stream = futures_util::stream::iter(
            chunks
                .into_iter()
                .map(|c| Ok::<_, std::convert::Infallible>(Bytes::from_static(c.as_bytes()))),
        );
        let mut records = Records::new(stream, max_line);
        let mut out = Vec::new();
        loop {
            match records.next().await {
                Ok(Some(Ok(r))) => {
                    out.push(Ok((0..r.len()).map(|i| r.field(i).to_string()).collect()))
                }
                Ok(Some(Err(e))) => out.push(Err(e)),
                Ok(None) => break,
                Err(e) => {
                    out.push(Err(e.to_string()));
                    break;
                }
            }
        }
        out
    }

    #[tokio::test]
    async fn records_split_across_chunks_with_quotes_and_crlf() {
        let got = read_all(
            vec!["a,b\r\n1,\"x,", "y\"\r\n2,\"say \"\"hi\"\"\"", "\n3,4"],
            1024,
        )
        .await;
        let want: Vec<Result<Vec<String>, String>> = vec![
            Ok(vec!["a".into(), "b".into()]),
            Ok(vec!["1".into(), "x,y".into()]),
            Ok(vec!["2".into(), "say \"hi\"".into()]),
            Ok(vec!["3".into(), "4".into()]),
        ];
        assert_eq!(got, want);
    }

    #[tokio::test]
    async fn a_line_past_the_limit_stops_reading() {
        let got = read_all(vec!["a,b\n", "1,22222222222222222222222222\n", "3,4\n"], 16).await;
        assert_eq!(got.len(), 2);
        assert_eq!(got[0], Ok(vec!["a".to_string(), "b".to_string()]));
        assert!(
            got[1]
                .as_ref()
                .unwrap_err()
                .contains("longer than 16 bytes")
        );
    }

    #[test]
    fn fields_are_quoted_only_when_needed() {
        assert_eq!(quote("plain"), "plain");
        assert_eq!(quote("a,b"), "\"a,b\"");
        assert_eq!(quote("say \"x\""), "\"say \"\"x\"\"\"");
    }
}
