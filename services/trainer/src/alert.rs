//! Alertmanager's webhook payload (version 4), read field by field so that a malformed call
//! gets a 422 naming what is wrong.
//!
//! ```json
//! {"version": "4", "groupKey": "...", "status": "firing", "receiver": "trainer",
//!  "groupLabels": {...}, "commonLabels": {...}, "commonAnnotations": {...},
//!  "externalURL": "...", "truncatedAlerts": 0,
//!  "alerts": [{"status": "firing", "labels": {"alertname": "...", "model": "..."},
//!              "annotations": {...}, "startsAt": "RFC 3339", "endsAt": "...",
//!              "generatorURL": "...", "fingerprint": "..."}]}
//! ```

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::Value;
use vigie_api::ApiError;

/// One alert of a notification.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    pub firing: bool,
    pub labels: BTreeMap<String, String>,
    pub starts_at: DateTime<Utc>,
    /// `startsAt` as sent: with the fingerprint, what identifies one firing of an alert.
    pub starts_at_text: String,
    pub fingerprint: String,
}

impl Alert {
    pub fn name(&self) -> &str {
        self.labels.get("alertname").map_or("", String::as_str)
    }

    pub fn model(&self) -> Option<&str> {
        self.labels.get("model").map(String::as_str)
    }
}

/// A notification: the group's key and receiver, and its alerts.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    pub group_key: String,
    pub receiver: String,
    pub firing: bool,
    pub alerts: Vec<Alert>,
    /// Alerts past [`MAX_ALERTS`] that were not kept (not ones that retrain).
    pub skipped: usize,
}

/// Most alerts kept from one notification: those that retrain first, then the others in
/// their order; the rest are counted and skipped.
pub const MAX_ALERTS: usize = 1000;

fn invalid(field: impl Into<String>, message: impl Into<String>) -> ApiError {
    ApiError::invalid("invalid_webhook", message).with_field(field)
}

fn text<'a>(
    object: &'a serde_json::Map<String, Value>,
    key: &str,
    at: &str,
) -> Result<&'a str, ApiError> {
    match object.get(key) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(invalid(
            format!("{at}{key}"),
            format!("{at}{key} must be a string"),
        )),
        None => Err(invalid(
            format!("{at}{key}"),
            format!("{at}{key} is missing"),
        )),
    }
}

fn status(object: &serde_json::Map<String, Value>, at: &str) -> Result<bool, ApiError> {
    match text(object, "status", at)? {
        "firing" => Ok(true),
        "resolved" => Ok(false),
        other => Err(invalid(
            format!("{at}status"),
            format!("{at}status must be firing or resolved, not {other:?}"),
        )),
    }
}

fn labels(
    object: &serde_json::Map<String, Value>,
    at: &str,
) -> Result<BTreeMap<String, String>, ApiError> {
    let field = format!("{at}labels");
    let Some(Value::Object(map)) = object.get("labels") else {
        return Err(invalid(
            &field,
            format!("{field} must be an object of strings"),
        ));
    };
    map.iter()
        .map(|(k, v)| match v {
            Value::String(s) => Ok((k.clone(), s.clone())),
            _ => Err(invalid(
                format!("{field}.{k}"),
                format!("{field}.{k} must be a string"),
            )),
        })
        .collect()
}

/// Reads a webhook body; alerts named in `retrain` are kept first when the notification holds
/// more than [`MAX_ALERTS`]. Errors are 422s naming the field.
pub fn parse(body: &[u8], retrain: &[String]) -> Result<Notification, ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid("invalid_webhook", format!("the body is not JSON: {e}")))?;
    let Value::Object(root) = value else {
        return Err(ApiError::invalid(
            "invalid_webhook",
            "the body must be a JSON object",
        ));
    };
    let version = text(&root, "version", "")?;
    if version != "4" {
        return Err(invalid(
            "version",
            format!("webhook payload version {version:?}; this receiver reads version \"4\""),
        ));
    }
    let firing = status(&root, "")?;
    let group_key = text(&root, "groupKey", "")?.to_string();
    let receiver = text(&root, "receiver", "")?.to_string();
    let Some(Value::Array(items)) = root.get("alerts") else {
        return Err(invalid("alerts", "alerts must be an array"));
    };
    if items.is_empty() {
        return Err(invalid("alerts", "alerts is empty"));
    }
    let mut alerts = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let at = format!("alerts[{i}].");
        let Value::Object(alert) = item else {
            return Err(invalid(
                format!("alerts[{i}]"),
                format!("alerts[{i}] must be an object"),
            ));
        };
        let firing = status(alert, &at)?;
        let labels = labels(alert, &at)?;
        if labels.get("alertname").is_none_or(|n| n.is_empty()) {
            return Err(invalid(
                format!("{at}labels.alertname"),
                format!("{at}labels.alertname is missing"),
            ));
        }
        let fingerprint = text(alert, "fingerprint", &at)?;
        if fingerprint.is_empty() || fingerprint.len() > 128 {
            return Err(invalid(
                format!("{at}fingerprint"),
                format!("{at}fingerprint must be 1 to 128 characters"),
            ));
        }
        let starts_at_text = text(alert, "startsAt", &at)?;
        let starts_at = DateTime::parse_from_rfc3339(starts_at_text)
            .map_err(|e| {
                invalid(
                    format!("{at}startsAt"),
                    format!("{at}startsAt is not an RFC 3339 time: {e}"),
                )
            })?
            .with_timezone(&Utc);
        alerts.push(Alert {
            firing,
            labels,
            starts_at,
            starts_at_text: starts_at_text.to_string(),
            fingerprint: fingerprint.to_string(),
        });
    }
    // Past the cap, the alerts that retrain are kept first (in their order), then the others.
    let skipped = alerts.len().saturating_sub(MAX_ALERTS);
    if skipped > 0 {
        let (mut kept, others): (Vec<Alert>, Vec<Alert>) = alerts
            .into_iter()
            .partition(|a| retrain.iter().any(|r| r == a.name()));
        kept.extend(others);
        kept.truncate(MAX_ALERTS);
        alerts = kept;
    }
    Ok(Notification {
        group_key,
        receiver,
        firing,
        alerts,
        skipped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A notification as Alertmanager 0.25 sends it.
    pub(crate) fn payload() -> Value {
        serde_json::json!({
            "receiver": "vigie-trainer",
            "status": "firing",
            "alerts": [{
                "status": "firing",
                "labels": {"alertname": "VigieDataDrift", "model": "baac-severity", "severity": "critical", "instance": "127.0.0.1:8001", "job": "vigie-drift"},
                "annotations": {"summary": "drift"},
                "startsAt": "2026-11-22T10:00:00.123456789Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus:9090/graph?g0.expr=...",
                "fingerprint": "4c6f9a1e3b2d7c80"
            }],
            "groupLabels": {"alertname": "VigieDataDrift"},
            "commonLabels": {"alertname": "VigieDataDrift"},
            "commonAnnotations": {},
            "externalURL": "http://alertmanager:9093",
            "version": "4",
            "groupKey": "{}/{alertname=\"VigieDataDrift\"}:{alertname=\"VigieDataDrift\"}",
            "truncatedAlerts": 0
        })
    }

    #[test]
    fn reads_alertmanagers_payload() {
        let n = parse(payload().to_string().as_bytes(), &[]).expect("valid");
        assert!(n.firing);
        assert_eq!(n.receiver, "vigie-trainer");
        assert_eq!(n.alerts.len(), 1);
        let a = &n.alerts[0];
        assert!(a.firing);
        assert_eq!(a.name(), "VigieDataDrift");
        assert_eq!(a.model(), Some("baac-severity"));
        assert_eq!(a.fingerprint, "4c6f9a1e3b2d7c80");
        assert_eq!(a.starts_at_text, "2026-11-22T10:00:00.123456789Z");
    }

    #[test]
    fn every_malformed_field_is_named() {
        type Change = Box<dyn Fn(&mut Value)>;
        let cases: Vec<(&str, Change)> = vec![
            ("version", Box::new(|v| v["version"] = "3".into())),
            ("version", Box::new(|v| v["version"] = 4.into())),
            ("status", Box::new(|v| v["status"] = "pending".into())),
            (
                "groupKey",
                Box::new(|v| {
                    v.as_object_mut().map(|o| o.remove("groupKey"));
                }),
            ),
            ("alerts", Box::new(|v| v["alerts"] = serde_json::json!([]))),
            ("alerts", Box::new(|v| v["alerts"] = serde_json::json!({}))),
            ("alerts[0]", Box::new(|v| v["alerts"][0] = "x".into())),
            (
                "alerts[0].status",
                Box::new(|v| v["alerts"][0]["status"] = "odd".into()),
            ),
            (
                "alerts[0].labels",
                Box::new(|v| v["alerts"][0]["labels"] = serde_json::json!([])),
            ),
            (
                "alerts[0].labels.model",
                Box::new(|v| v["alerts"][0]["labels"]["model"] = 3.into()),
            ),
            (
                "alerts[0].labels.alertname",
                Box::new(|v| {
                    v["alerts"][0]["labels"]
                        .as_object_mut()
                        .map(|o| o.remove("alertname"));
                }),
            ),
            (
                "alerts[0].fingerprint",
                Box::new(|v| v["alerts"][0]["fingerprint"] = "".into()),
            ),
            (
                "alerts[0].fingerprint",
                Box::new(|v| {
                    v["alerts"][0]
                        .as_object_mut()
                        .map(|o| o.remove("fingerprint"));
                }),
            ),
            (
                "alerts[0].startsAt",
                Box::new(|v| v["alerts"][0]["startsAt"] = "yesterday".into()),
            ),
        ];
        for (field, change) in cases {
            let mut v = payload();
            change(&mut v);
            let err = parse(v.to_string().as_bytes(), &[]).expect_err(field);
            assert_eq!(err.status.as_u16(), 422, "{field}");
            assert_eq!(err.field.as_deref(), Some(field), "{}", err.message);
        }
        for body in ["", "{", "[1]", "null"] {
            let err = parse(body.as_bytes(), &[]).expect_err(body);
            assert_eq!(err.status.as_u16(), 422, "{body:?}");
        }
    }

    #[test]
    fn past_the_cap_the_alerts_that_retrain_are_kept_first() {
        let mut v = payload();
        let one = v["alerts"][0].clone();
        let alerts: Vec<Value> = (0..1500)
            .map(|i| {
                let mut a = one.clone();
                a["fingerprint"] = format!("f{i}").into();
                if i < 1497 {
                    a["labels"]["alertname"] = "HighLatency".into();
                }
                a
            })
            .collect();
        v["alerts"] = alerts.into();
        let retrain = ["VigieDataDrift".to_string()];
        let n = parse(v.to_string().as_bytes(), &retrain).expect("valid");
        assert_eq!((n.alerts.len(), n.skipped), (MAX_ALERTS, 500));
        let drift: Vec<&str> = n
            .alerts
            .iter()
            .filter(|a| a.name() == "VigieDataDrift")
            .map(|a| a.fingerprint.as_str())
            .collect();
        assert_eq!(drift, ["f1497", "f1498", "f1499"]);
        assert_eq!(
            n.alerts[3].fingerprint, "f0",
            "the others follow in their order"
        );
    }
}
