//! The OpenAPI 3.1 document, built from the models being served: each model's prediction
//! paths carry a request schema derived from its spec (codes as enums with their meanings,
//! ranges as bounds, `null` only where the spec imputes) and a valid example, so the docs page
//! can send a real prediction.

use serde_json::{Value, json};
use vigie_api::openapi::{Document, responses, token_required};
use vigie_core::spec::{
    FeatureSpec, MissingPolicy, Task, UnseenPolicy, code_meanings, code_tokens,
};

use crate::models::Served;

/// A feature's JSON schema and an example value.
fn feature_schema(feature: &FeatureSpec) -> (Value, Value) {
    let nullable = feature.missing().allows_missing();
    let (mut schema, example) = match feature {
        FeatureSpec::Categorical {
            description,
            codes: Some(codes),
            unseen,
            ..
        } => {
            let tokens = code_tokens(codes);
            let meanings = code_meanings(codes);
            let numeric = tokens.iter().all(|t| t.parse::<i64>().is_ok());
            let values: Vec<Value> = tokens
                .iter()
                .map(|t| {
                    t.parse::<i64>()
                        .ok()
                        .filter(|_| numeric)
                        .map_or_else(|| json!(t), |n| json!(n))
                })
                .collect();
            let legend: Vec<String> = tokens
                .iter()
                .filter_map(|t| meanings.get(t).map(|m| format!("{t} = {m}")))
                .collect();
            let text = if legend.is_empty() {
                description.clone()
            } else {
                format!("{description}. Codes: {}", legend.join("; "))
            };
            let example = values.first().cloned().unwrap_or(Value::Null);
            let ty = if numeric { "integer" } else { "string" };
            let schema = if *unseen == UnseenPolicy::Missing {
                // Any code is accepted: an unlisted one is answered as missing.
                json!({"type": ty, "examples": values,
                       "description": format!("{text}. A code not listed in examples is answered as missing (and counted by the drift service)")})
            } else {
                json!({"type": ty, "enum": values, "description": text})
            };
            (schema, example)
        }
        FeatureSpec::Categorical {
            description,
            code_range,
            ..
        } => {
            let [min, max] = code_range.unwrap_or([0, 0]);
            (
                json!({"type": "integer", "minimum": min, "maximum": max,
                       "description": format!("{description}. Any code in [{min}, {max}]")}),
                json!(min),
            )
        }
        FeatureSpec::Numerical {
            description,
            min,
            max,
            integer,
            unit,
            missing_values,
            ..
        } => {
            let mid = (min + max) / 2.0;
            let example = if *integer {
                json!(mid.round() as i64)
            } else {
                json!(mid)
            };
            let mut unit = if unit.is_empty() {
                String::new()
            } else {
                format!(" ({unit})")
            };
            if !missing_values.is_empty() {
                let values: Vec<String> = missing_values.iter().map(f64::to_string).collect();
                unit.push_str(&format!(". {} means not known", values.join(" or ")));
            }
            (
                json!({"type": if *integer {"integer"} else {"number"}, "minimum": min, "maximum": max,
                       "description": format!("{description}{unit}")}),
                example,
            )
        }
    };
    if nullable {
        let ty = schema["type"].clone();
        schema["type"] = json!([ty, "null"]);
        if let Some(values) = schema.get_mut("enum").and_then(Value::as_array_mut) {
            values.push(Value::Null);
        }
        let d = schema["description"].as_str().unwrap_or("").to_string();
        let how = if feature.missing() == MissingPolicy::Keep {
            "the model routes it"
        } else {
            "imputed"
        };
        schema["description"] = json!(format!("{d}. May be null: {how}"));
    }
    (schema, example)
}

/// How else a request may name the features, when the spec allows it.
fn names_note(spec: &vigie_core::spec::ModelSpec) -> String {
    let mut note = String::new();
    if spec.column_names == vigie_core::spec::ColumnNames::CaseInsensitive {
        note.push_str(" Names are matched ignoring case.");
    }
    let aliases: Vec<String> = spec
        .features
        .iter()
        .filter(|f| !f.aliases().is_empty())
        .map(|f| format!("{} (also {})", f.name(), f.aliases().join(", ")))
        .collect();
    if !aliases.is_empty() {
        note.push_str(&format!(" Aliases: {}.", aliases.join("; ")));
    }
    note
}

fn model_paths(
    served: &Served,
    paths: &mut serde_json::Map<String, Value>,
    schemas: &mut serde_json::Map<String, Value>,
) {
    let name = served.name();
    let spec = &served.model.artifact().spec;
    let mut properties = serde_json::Map::new();
    let mut example = serde_json::Map::new();
    let mut required = Vec::new();
    for feature in &spec.features {
        let (schema, value) = feature_schema(feature);
        properties.insert(feature.name().to_string(), schema);
        example.insert(feature.name().to_string(), value);
        required.push(json!(feature.name()));
    }
    let features_ref = format!("Features.{name}");
    schemas.insert(
        features_ref.clone(),
        json!({
            "type": "object",
            "description": format!("The {} features of {name}, all required; null where the description says so.{}", required.len(), names_note(spec)),
            "properties": properties,
            "required": required,
            "additionalProperties": false,
        }),
    );
    let features_ref = json!({"$ref": format!("#/components/schemas/{features_ref}")});
    let header: Vec<&str> = spec.features.iter().map(FeatureSpec::name).collect();
    let csv_example = format!(
        "{}\n{}\n",
        header.join(","),
        spec.features
            .iter()
            .map(|f| match &example[f.name()] {
                Value::String(s) if s.contains([',', '"', '\n', '\r']) => {
                    format!("\"{}\"", s.replace('"', "\"\""))
                }
                Value::String(s) => s.clone(),
                v => v.to_string(),
            })
            .collect::<Vec<_>>()
            .join(",")
    );
    let errors: &[(&str, &str)] = &[
        ("400", "The body is not valid JSON"),
        ("401", "No token, or an invalid or expired one"),
        ("404", "No such model"),
        ("413", "The body or the batch is too large"),
        ("415", "The body is not application/json"),
        (
            "422",
            "A value the spec refuses: unknown_field, missing_field, duplicate_field, wrong_type, missing_value, unknown_code, out_of_range, invalid_value (field names it)",
        ),
        ("503", "The request took longer than the service's timeout"),
    ];
    let tag = json!([format!("{name}")]);
    let regression = spec.task == Task::Regression;
    let (single, batch) = if regression {
        ("Estimate", "BatchEstimate")
    } else {
        ("Prediction", "BatchPrediction")
    };
    let single = json!({"$ref": format!("#/components/schemas/{single}")});
    let batch = json!({"$ref": format!("#/components/schemas/{batch}")});
    let csv_answer = if regression {
        "row,prediction,lower,upper,underestimation_risk,group,error,field"
    } else {
        "row,class,label,probability,error,field"
    };
    let decision_header = if regression {
        "x-interval-coverage"
    } else {
        "x-threshold"
    };
    paths.insert(
        format!("/v1/models/{name}/predict"),
        json!({"post": {
            "tags": tag,
            "summary": format!("Predict one case with {name}"),
            "description": spec.description,
            "security": token_required(),
            "parameters": [{"name": "x-request-id", "in": "header", "required": false,
                            "schema": {"type": "string"}, "description": "Your id for this request (letters, digits, -_.:), echoed back and put on its events"}],
            "requestBody": {"required": true, "content": {"application/json": {
                "schema": {"type": "object", "properties": {"features": features_ref}, "required": ["features"], "additionalProperties": false},
                "example": {"features": example}}}},
            "responses": responses(json!({"200": {"description": "The prediction", "content": {"application/json": {"schema": single}}}}), errors),
        }}),
    );
    paths.insert(
        format!("/v1/models/{name}/predict/batch"),
        json!({"post": {
            "tags": tag,
            "summary": format!("Predict a batch of cases with {name}"),
            "description": "Every row is checked before any is predicted; the first bad row answers 422 with its index in `row`.",
            "security": token_required(),
            "requestBody": {"required": true, "content": {"application/json": {
                "schema": {"type": "object", "properties": {"rows": {"type": "array", "items": features_ref}}, "required": ["rows"], "additionalProperties": false},
                "example": {"rows": [example]}}}},
            "responses": responses(json!({"200": {"description": "One prediction per row, in order", "content": {"application/json": {"schema": batch}}}}), errors),
        }}),
    );
    paths.insert(
        format!("/v1/models/{name}/predict/csv"),
        json!({"post": {
            "tags": tag,
            "summary": format!("Predict a CSV file with {name}, answered as CSV"),
            "description": format!("The header names every feature (any order; names matched as the model's spec says: exactly, or ignoring case, aliases included); columns that are no feature are ignored and listed in the x-ignored-columns header (comma-separated, percent-encoded); empty cells are unknown values. The answer streams one line per data row: {csv_answer}. Rows the spec refuses carry their error instead of a prediction; an upload that cannot be read to its end ends with a line whose error starts with \"upload incomplete\". Headers x-model, x-model-version and {decision_header} describe the model that answered."),
            "security": token_required(),
            "requestBody": {"required": true, "content": {"text/csv": {"schema": {"type": "string", "minLength": 1}, "example": csv_example}}},
            "responses": responses(json!({"200": {"description": "The predictions, as CSV", "content": {"text/csv": {"schema": {"type": "string"}}}}}), errors),
        }}),
    );
    let truth = if regression {
        let (min, max) = spec.target.range();
        json!({"type": "number", "minimum": min, "maximum": max,
               "description": format!("What happened: the observed {} ({})", spec.target.column, spec.target.unit)})
    } else {
        json!({"description": format!("What happened: {} or {}", spec.target.positive_label(), spec.target.negative_label())})
    };
    let label = json!({"type": "object", "required": ["request_id", "label"], "additionalProperties": false, "properties": {
        "request_id": {"type": "string", "minLength": 1, "maxLength": 128, "description": "The request id the prediction was answered with"},
        "row": {"type": "integer", "minimum": 0, "description": "The row of a batch or CSV upload (absent for a single prediction)"},
        "label": truth}});
    paths.insert(
        format!("/v1/models/{name}/feedback"),
        json!({"post": {
            "tags": tag,
            "summary": format!("Ground truth for predictions {name} answered, published to vigie.labels for retraining"),
            "description": "One label, or {\"labels\": [...]} for many; every label is checked before any is published (the first bad one answers 4xx with its index in `row`): against the spec's target, then against the requests this service answered lately (a request it refused or never received: 404; a row it did not answer or another model's request: 422; an answer labelled already: 409, the first label counts). Labels it cannot judge (a caller's own request id, another instance's, an older one) are published and counted as unverified.",
            "security": token_required(),
            "requestBody": {"required": true, "content": {"application/json": {
                "schema": {"oneOf": [label.clone(), {"type": "object", "required": ["labels"], "additionalProperties": false,
                    "properties": {"labels": {"type": "array", "minItems": 1, "items": label}}}]}}}},
            "responses": responses(json!({"202": {"description": "Labels queued", "content": {"application/json": {"schema": {
                "type": "object", "properties": {"accepted": {"type": "integer"},
                    "unverified": {"type": "integer", "description": "Labels published that the ledger of answered requests could not judge"},
                    "topic": {"type": "string"}}}}}}}),
                &[("401", "No valid token"), ("404", "No such model, or no prediction answered under request_id"), ("409", "The answer was labelled already: the first label counts"),
                  ("413", "More labels than a request holds"),
                  ("422", "A label the spec refuses, a row the request did not have, another model's request (field names it)"), ("503", "The event queue is full; send again")]),
        }}),
    );
    paths.insert(
        format!("/v1/models/{name}"),
        json!({"get": {
            "tags": tag,
            "summary": format!("The served version of {name}, its target and its features"),
            "security": token_required(),
            "responses": responses(json!({"200": {"description": "The model"}}), &[("401", "No valid token"), ("404", "No such model")]),
        }}),
    );
}

/// The whole document for the given served models.
pub fn build(models: &[std::sync::Arc<Served>]) -> Value {
    let mut paths = serde_json::Map::new();
    let mut schemas = serde_json::Map::new();
    paths.insert("/v1/models".into(), json!({"get": {
        "tags": ["models"], "summary": "The models being served, with their versions and holdout figures", "security": token_required(),
        "responses": responses(json!({"200": {"description": "Served models"}}), &[("401", "No valid token")]),
    }}));
    for served in models {
        model_paths(served, &mut paths, &mut schemas);
    }
    schemas.insert("Prediction".into(), json!({"type": "object", "properties": {
        "request_id": {"type": "string"}, "model": {"type": "string"}, "model_version": {"type": "integer"},
        "class": {"type": "integer", "enum": [0, 1]}, "label": {"type": "string"},
        "probability": {"type": "number", "description": "Probability of the positive class"},
        "threshold": {"type": "number", "description": "class = 1 when probability >= threshold"}}}));
    schemas.insert("BatchPrediction".into(), json!({"type": "object", "properties": {
        "request_id": {"type": "string"}, "model": {"type": "string"}, "model_version": {"type": "integer"}, "threshold": {"type": "number"},
        "predictions": {"type": "array", "items": {"type": "object", "properties": {
            "class": {"type": "integer"}, "label": {"type": "string"}, "probability": {"type": "number"}}}}}}));
    let group = json!({"type": ["object", "null"], "description": "The row's group (the spec's underestimation group) and its residuals on the validation slice: why the flag is what it is. Null when the spec names no group or the validation slice never saw this one.",
        "properties": {
            "feature": {"type": "string"}, "group": {"type": "string"},
            "rows": {"type": "integer", "description": "Validation rows of the group"},
            "mean_residual": {"type": "number", "description": "Mean of truth minus estimate on them: positive means underestimated"},
            "lower_bound": {"type": ["number", "null"], "description": "One-sided lower confidence bound of that mean (Bonferroni over the groups judged); above 0 flags the group; null when the group has too few validation rows to be judged"},
            "flagged": {"type": "boolean"}}});
    let estimate = json!({
        "prediction": {"type": "number", "description": "The estimate, in the target's unit"},
        "interval": {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2, "description": "[lower, upper]: holds the truth with the probability `coverage` (split conformal, calibrated on the validation slice)"},
        "underestimation_risk": {"type": "boolean", "description": "Whether the row's group is one the model tends to underestimate"},
        "underestimation_group": group});
    let mut single = serde_json::Map::new();
    single.insert("request_id".into(), json!({"type": "string"}));
    single.insert("model".into(), json!({"type": "string"}));
    single.insert("model_version".into(), json!({"type": "integer"}));
    single.insert("unit".into(), json!({"type": "string"}));
    single.insert(
        "coverage".into(),
        json!({"type": "number", "description": "The interval's coverage"}),
    );
    single.extend(estimate.as_object().cloned().unwrap_or_default());
    schemas.insert(
        "Estimate".into(),
        json!({"type": "object", "properties": single,
        "required": ["prediction", "interval", "underestimation_risk"]}),
    );
    schemas.insert("BatchEstimate".into(), json!({"type": "object", "properties": {
        "request_id": {"type": "string"}, "model": {"type": "string"}, "model_version": {"type": "integer"},
        "unit": {"type": "string"}, "coverage": {"type": "number"},
        "predictions": {"type": "array", "items": {"type": "object", "properties": estimate,
            "required": ["prediction", "interval", "underestimation_risk"]}}}}));
    Document {
        title: "Vigie prediction service".into(),
        description: "Predictions for emergency dispatchers (a class with its probability, or an estimate with its interval). Get a token from /auth/token (Authorize button), then call a model's predict endpoint. Every prediction is published to Kafka for drift monitoring.".into(),
        ready: "At least one model is loaded".into(),
        paths,
        schemas,
        ..Document::default()
    }
    .build()
}
