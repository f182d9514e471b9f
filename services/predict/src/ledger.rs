//! The requests this process answered lately, by request id: what feedback is checked against
//! before it is published.
//!
//! Every published answer is recorded under its request id: its model and, for a batch or an
//! upload, how many rows it answered; an upload's rows refused for their values are listed
//! (the first [`REFUSED_LISTED`] of a request). At most [`Ledger::capacity`] requests are kept; the
//! oldest leave first, and the ledger remembers when the newest of those it let go was
//! recorded (its horizon).
//!
//! Feedback is then judged in three ways:
//! - the request is in the ledger: the label must be for its model and one of its answered
//!   rows (or no row, for a single prediction), and not for an answer labelled already here
//!   (the first label counts);
//! - the id is one this process issued ([`vigie_api::issued_here`]) after the horizon: had
//!   its request been answered, it would be in the ledger. It was not (refused, or never
//!   sent): the feedback is refused;
//! - otherwise (an id from another instance or from before a restart, a caller's own id, a
//!   request older than the horizon) nothing here can judge it: it is published, counted as
//!   unverified, and the drift service's join is the check (its label is counted unmatched
//!   if no answer ever comes).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Mutex;

use vigie_api::ApiError;

/// What the ledger holds of an answered request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    /// A hash of the model's name.
    model: u64,
    /// `None`: a single prediction; otherwise one past the highest row answered.
    rows: Option<u32>,
    /// Rows refused beyond those listed: a row in range and not listed may be one.
    unlisted: bool,
}

/// Refused rows listed per request; beyond, a label for a row in range is not judged.
pub const REFUSED_LISTED: usize = 1_024;

#[derive(Debug, Default)]
struct Inner {
    requests: HashMap<u64, Entry>,
    /// The refused rows of the requests that have some (few: kept apart).
    refused: HashMap<u64, Vec<u32>>,
    /// Keys in the order they were recorded, with when (ms since the epoch).
    order: VecDeque<(u64, i64)>,
    /// Answers labelled here: (request, row) keys, oldest first.
    labelled: HashSet<u64>,
    labelled_order: VecDeque<u64>,
    /// When the newest request let go was recorded (ms); ids issued before may have left.
    horizon_ms: i64,
}

/// See the module.
#[derive(Debug)]
pub struct Ledger {
    inner: Mutex<Inner>,
    capacity: usize,
}

/// Why feedback is refused, as `vigie_feedback_refused_total` counts it.
pub const UNKNOWN_REQUEST: &str = "unknown_request";
pub const NO_SUCH_ROW: &str = "no_such_row";
pub const OTHER_MODEL: &str = "other_model";
pub const ALREADY_LABELLED: &str = "already_labelled";

/// What the ledger says of a label.
#[derive(Debug, PartialEq)]
pub enum Verdict {
    /// Its request was answered here, and this answer not labelled yet.
    Known,
    /// Nothing here can judge it (see the module).
    Unverified,
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The key of a request id.
fn key(request_id: &str) -> u64 {
    fnv(request_id.as_bytes())
}

/// The key of one answer of a request.
fn answer_key(request_id: &str, row: Option<u64>) -> u64 {
    let h = key(request_id);
    (h ^ row.map_or(0, |r| r.wrapping_add(1))).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Clocks are not perfectly monotonic: an id this long before the horizon is not judged.
const SLACK_MS: i64 = 1_000;

impl Ledger {
    pub fn new(capacity: usize) -> Self {
        Ledger {
            inner: Mutex::new(Inner::default()),
            capacity: capacity.max(1),
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding it leaves consistent maps: carry on with them.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records an answer of `model` to `request_id` (`row`: its index in a batch or upload).
    pub fn answered(&self, request_id: &str, model: &str, row: Option<u64>) {
        self.record(request_id, model, row, true);
    }

    /// Records a row of an upload refused for its values: it has no answer to label.
    pub fn refused(&self, request_id: &str, model: &str, row: u64) {
        self.record(request_id, model, Some(row), false);
    }

    fn record(&self, request_id: &str, model: &str, row: Option<u64>, answered: bool) {
        let k = key(request_id);
        let model = fnv(model.as_bytes());
        let row = row.map(|r| u32::try_from(r).unwrap_or(u32::MAX - 1));
        let mut inner = self.lock();
        let inner = &mut *inner;
        match inner.requests.get_mut(&k) {
            Some(entry) => {
                if let (Some(rows), Some(r)) = (&mut entry.rows, row) {
                    *rows = (*rows).max(r + 1);
                }
            }
            None => {
                inner.requests.insert(
                    k,
                    Entry {
                        model,
                        rows: row.map(|r| r + 1),
                        unlisted: false,
                    },
                );
                inner.order.push_back((k, now_ms()));
                while inner.order.len() > self.capacity {
                    if let Some((old, at)) = inner.order.pop_front() {
                        inner.requests.remove(&old);
                        inner.refused.remove(&old);
                        inner.horizon_ms = inner.horizon_ms.max(at);
                    }
                }
            }
        }
        if let (false, Some(r)) = (answered, row) {
            let listed = inner.refused.entry(k).or_default();
            if listed.len() < REFUSED_LISTED {
                listed.push(r);
            } else if let Some(entry) = inner.requests.get_mut(&k) {
                entry.unlisted = true;
            }
        }
    }

    /// Judges a label for `row` of `request_id`, for `model` (see the module); a refused one
    /// is a 4xx naming the field. `Known` labels are recorded as labelled.
    pub fn check(
        &self,
        request_id: &str,
        model: &str,
        row: Option<u64>,
    ) -> Result<Verdict, ApiError> {
        let k = key(request_id);
        let mut inner = self.lock();
        let Some(entry) = inner.requests.get(&k).copied() else {
            return match vigie_api::issued_here(request_id) {
                Some(at) if at > inner.horizon_ms + SLACK_MS => Err(ApiError::not_found(
                    UNKNOWN_REQUEST,
                    format!(
                        "no prediction was answered under request_id {request_id:?}: it names a request this service refused or never received"
                    ),
                )
                .with_field("request_id")),
                _ => Ok(Verdict::Unverified),
            };
        };
        if entry.model != fnv(model.as_bytes()) {
            return Err(ApiError::invalid(
                OTHER_MODEL,
                format!(
                    "request_id {request_id:?} was a prediction of another model: send its feedback to that model"
                ),
            )
            .with_field("request_id"));
        }
        match (entry.rows, row) {
            (None, Some(r)) => {
                return Err(ApiError::invalid(
                    NO_SUCH_ROW,
                    format!(
                        "request_id {request_id:?} was a single prediction: leave row out (row {r} does not exist)"
                    ),
                )
                .with_field("row"));
            }
            (Some(rows), None) => {
                return Err(ApiError::invalid(
                    NO_SUCH_ROW,
                    format!(
                        "request_id {request_id:?} answered a batch of {rows} rows: give the row the label is for (0 to {})",
                        rows - 1
                    ),
                )
                .with_field("row"));
            }
            (Some(rows), Some(r)) if r >= u64::from(rows) => {
                return Err(ApiError::invalid(
                    NO_SUCH_ROW,
                    format!(
                        "row {r} does not exist: request_id {request_id:?} answered rows 0 to {}",
                        rows - 1
                    ),
                )
                .with_field("row"));
            }
            (Some(_), Some(r))
                if inner
                    .refused
                    .get(&k)
                    .is_some_and(|listed| listed.contains(&(r as u32))) =>
            {
                return Err(ApiError::invalid(
                    NO_SUCH_ROW,
                    format!(
                        "row {r} of request_id {request_id:?} was refused (its answer line holds the error): there is no answer to label"
                    ),
                )
                .with_field("row"));
            }
            // More rows were refused than listed: this one may be one of them.
            (Some(_), Some(_)) if entry.unlisted => return Ok(Verdict::Unverified),
            _ => {}
        }
        let answer = answer_key(request_id, row);
        if inner.labelled.contains(&answer) {
            return Err(ApiError::conflict(
                ALREADY_LABELLED,
                format!(
                    "this answer (request_id {request_id:?}{}) was labelled already: the first label counts",
                    row.map(|r| format!(", row {r}")).unwrap_or_default()
                ),
            )
            .with_field(if row.is_some() { "row" } else { "request_id" }));
        }
        inner.labelled.insert(answer);
        inner.labelled_order.push_back(answer);
        while inner.labelled_order.len() > self.capacity {
            if let Some(old) = inner.labelled_order.pop_front() {
                inner.labelled.remove(&old);
            }
        }
        Ok(Verdict::Known)
    }

    /// Forgets that these answers were labelled (their labels could not be published).
    pub fn unlabel(&self, labels: &[(String, Option<u64>)]) {
        let mut inner = self.lock();
        for (request_id, row) in labels {
            inner.labelled.remove(&answer_key(request_id, *row));
        }
    }

    /// Requests held.
    pub fn len(&self) -> usize {
        self.lock().requests.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(r: Result<Verdict, ApiError>) -> (&'static str, Option<String>) {
        let e = r.expect_err("refused");
        (e.error, e.field)
    }

    #[test]
    fn labels_are_judged_against_what_was_answered() {
        let ledger = Ledger::new(10);
        let single = vigie_api::issue_request_id();
        let batch = vigie_api::issue_request_id();
        ledger.answered(&single, "m", None);
        for row in 0..3 {
            ledger.answered(&batch, "m", Some(row));
        }
        // An upload whose row 1 was refused for its values.
        let upload = vigie_api::issue_request_id();
        ledger.answered(&upload, "m", Some(0));
        ledger.refused(&upload, "m", 1);
        ledger.answered(&upload, "m", Some(2));
        assert_eq!(ledger.check(&upload, "m", Some(2)).unwrap(), Verdict::Known);
        assert_eq!(ledger.check(&single, "m", None).unwrap(), Verdict::Known);
        assert_eq!(ledger.check(&batch, "m", Some(2)).unwrap(), Verdict::Known);
        let field = |f: &str| Some(f.to_string());
        assert_eq!(
            refused(ledger.check(&batch, "m", Some(3))),
            (NO_SUCH_ROW, field("row"))
        );
        assert_eq!(
            refused(ledger.check(&batch, "m", None)),
            (NO_SUCH_ROW, field("row"))
        );
        assert_eq!(
            refused(ledger.check(&single, "other", None)),
            (OTHER_MODEL, field("request_id"))
        );
        assert_eq!(
            refused(ledger.check(&single, "m", Some(0))),
            (NO_SUCH_ROW, field("row"))
        );
        assert_eq!(
            refused(ledger.check(&upload, "m", Some(1))),
            (NO_SUCH_ROW, field("row"))
        );
        // Twice: the first label counts.
        assert_eq!(
            refused(ledger.check(&batch, "m", Some(2))),
            (ALREADY_LABELLED, field("row"))
        );
        assert_eq!(
            refused(ledger.check(&single, "m", None)),
            (ALREADY_LABELLED, field("request_id"))
        );
        // A label that could not be published may be sent again.
        ledger.unlabel(&[(batch.clone(), Some(2))]);
        assert_eq!(ledger.check(&batch, "m", Some(2)).unwrap(), Verdict::Known);
        // An id issued here and never answered: refused. Another's: not judged.
        let refused_request = vigie_api::issue_request_id();
        assert_eq!(
            refused(ledger.check(&refused_request, "m", None)),
            (UNKNOWN_REQUEST, field("request_id"))
        );
        assert_eq!(
            ledger.check("cad:2026-11-22.42", "m", None).unwrap(),
            Verdict::Unverified
        );
        let elsewhere = uuid::Uuid::now_v7().to_string();
        assert_eq!(
            ledger.check(&elsewhere, "m", None).unwrap(),
            Verdict::Unverified
        );
    }

    #[test]
    fn requests_that_left_are_not_judged() {
        let ledger = Ledger::new(2);
        let ids: Vec<String> = (0..3).map(|_| vigie_api::issue_request_id()).collect();
        for id in &ids {
            ledger.answered(id, "m", None);
        }
        assert_eq!(ledger.len(), 2);
        // The first left: its id is older than the horizon now, so it is let through.
        assert_eq!(
            ledger.check(&ids[0], "m", None).unwrap(),
            Verdict::Unverified
        );
        assert_eq!(ledger.check(&ids[2], "m", None).unwrap(), Verdict::Known);
        // An id issued now, never answered, is still refused: it is after the horizon.
        std::thread::sleep(std::time::Duration::from_millis(1_100));
        let fresh = vigie_api::issue_request_id();
        assert_eq!(refused(ledger.check(&fresh, "m", None)).0, UNKNOWN_REQUEST);
    }
}
