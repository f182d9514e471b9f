//! The OpenAPI 3.1 document, built from the models being served: each model's prediction
//! paths carry a request schema derived from its spec (codes as enums with their meanings,
//! ranges as bounds, `null` only where the spec imputes) and a valid example, so the docs page
//! can send a real prediction.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};
use vigie_core::spec::{FeatureSpec, MissingPolicy, code_meanings, code_tokens};

use crate::models::Served;
use crate::state::AppState;

/// `GET /openapi.json`
pub async fn document(State(state): State<AppState>) -> Json<Value> {
    Json(build(&state.models.all()))
}

fn error_responses(codes: &[(&str, &str)]) -> Value {
    let mut responses = serde_json::Map::new();
    for (status, description) in codes {
        responses.insert(
            (*status).to_string(),
            json!({
                "description": description,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
            }),
        );
    }
    Value::Object(responses)
}

fn merge(mut a: Value, b: Value) -> Value {
    if let (Some(a), Value::Object(b)) = (a.as_object_mut(), b) {
        a.extend(b);
    }
    a
}

/// A feature's JSON schema and an example value.
fn feature_schema(feature: &FeatureSpec) -> (Value, Value) {
    let nullable = feature.missing() == MissingPolicy::Impute;
    let (mut schema, example) = match feature {
        FeatureSpec::Categorical {
            description,
            codes: Some(codes),
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
            (
                json!({"type": if numeric {"integer"} else {"string"}, "enum": values, "description": text}),
                example,
            )
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
            ..
        } => {
            let mid = (min + max) / 2.0;
            let example = if *integer {
                json!(mid.round() as i64)
            } else {
                json!(mid)
            };
            let unit = if unit.is_empty() {
                String::new()
            } else {
                format!(" ({unit})")
            };
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
        schema["description"] = json!(format!("{d}. May be null: imputed"));
    }
    (schema, example)
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
            "description": format!("The {} features of {name}, all required; null where the description says so.", required.len()),
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
                Value::String(s) => s.clone(),
                v => v.to_string(),
            })
            .collect::<Vec<_>>()
            .join(",")
    );
    let errors = error_responses(&[
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
    ]);
    let tag = json!([format!("{name}")]);
    paths.insert(
        format!("/v1/models/{name}/predict"),
        json!({"post": {
            "tags": tag,
            "summary": format!("Predict one case with {name}"),
            "description": spec.description,
            "security": [{"oauth2": []}],
            "parameters": [{"name": "x-request-id", "in": "header", "required": false,
                            "schema": {"type": "string"}, "description": "Your id for this request (letters, digits, -_.:), echoed back and put on its events"}],
            "requestBody": {"required": true, "content": {"application/json": {
                "schema": {"type": "object", "properties": {"features": features_ref}, "required": ["features"], "additionalProperties": false},
                "example": {"features": example}}}},
            "responses": merge(json!({"200": {"description": "The prediction", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Prediction"}}}}}), errors.clone()),
        }}),
    );
    paths.insert(
        format!("/v1/models/{name}/predict/batch"),
        json!({"post": {
            "tags": tag,
            "summary": format!("Predict a batch of cases with {name}"),
            "description": "Every row is checked before any is predicted; the first bad row answers 422 with its index in `row`.",
            "security": [{"oauth2": []}],
            "requestBody": {"required": true, "content": {"application/json": {
                "schema": {"type": "object", "properties": {"rows": {"type": "array", "items": features_ref}}, "required": ["rows"], "additionalProperties": false},
                "example": {"rows": [example]}}}},
            "responses": merge(json!({"200": {"description": "One prediction per row, in order", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/BatchPrediction"}}}}}), errors.clone()),
        }}),
    );
    paths.insert(
        format!("/v1/models/{name}/predict/csv"),
        json!({"post": {
            "tags": tag,
            "summary": format!("Predict a CSV file with {name}, answered as CSV"),
            "description": "The header names every feature (any order); empty cells are unknown values. The answer streams one line per data row: row,class,label,probability,error,field. Rows the spec refuses carry their error instead of a prediction. Headers x-model, x-model-version and x-threshold describe the model that answered.",
            "security": [{"oauth2": []}],
            "requestBody": {"required": true, "content": {"text/csv": {"schema": {"type": "string"}, "example": csv_example}}},
            "responses": merge(json!({"200": {"description": "The predictions, as CSV", "content": {"text/csv": {"schema": {"type": "string"}}}}}), errors),
        }}),
    );
    paths.insert(
        format!("/v1/models/{name}"),
        json!({"get": {
            "tags": tag,
            "summary": format!("The served version of {name}, its target and its features"),
            "security": [{"oauth2": []}],
            "responses": merge(json!({"200": {"description": "The model"}}), error_responses(&[("401", "No valid token"), ("404", "No such model")])),
        }}),
    );
}

/// The whole document for the given served models.
pub fn build(models: &[std::sync::Arc<Served>]) -> Value {
    let mut paths = serde_json::Map::new();
    let mut schemas = serde_json::Map::new();
    let admin_errors = error_responses(&[
        ("401", "No valid token"),
        ("403", "The token is not an admin's"),
    ]);
    paths.insert("/auth/token".into(), json!({"post": {
        "tags": ["accounts"],
        "summary": "Exchange a user name and password for a bearer token (OAuth2 password flow)",
        "requestBody": {"required": true, "content": {"application/x-www-form-urlencoded": {"schema": {
            "type": "object", "required": ["username", "password"],
            "properties": {"grant_type": {"type": "string", "enum": ["password"]}, "username": {"type": "string"}, "password": {"type": "string", "format": "password"}, "scope": {"type": "string"}}}}}},
        "responses": merge(json!({"200": {"description": "A token", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Token"}}}}}),
                           error_responses(&[("400", "Unsupported grant_type"), ("401", "Wrong user name or password"), ("422", "A form field is missing")])),
    }}));
    paths.insert("/v1/users".into(), json!({
        "get": {"tags": ["accounts"], "summary": "List accounts (admin)", "security": [{"oauth2": []}],
                "responses": merge(json!({"200": {"description": "Accounts, by name", "content": {"application/json": {"schema": {"type": "array", "items": {"$ref": "#/components/schemas/User"}}}}}}), admin_errors.clone())},
        "post": {"tags": ["accounts"], "summary": "Create an account, user or admin (admin)", "security": [{"oauth2": []}],
                 "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/NewUser"}}}},
                 "responses": merge(json!({"201": {"description": "Created", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/User"}}}}}),
                                    merge(admin_errors.clone(), error_responses(&[("409", "The name is taken"), ("422", "Invalid name or too short a password")])))},
    }));
    paths.insert("/v1/users/{name}".into(), json!({"delete": {
        "tags": ["accounts"], "summary": "Delete an account (admin); the last admin cannot be deleted", "security": [{"oauth2": []}],
        "parameters": [{"name": "name", "in": "path", "required": true, "schema": {"type": "string"}}],
        "responses": merge(json!({"204": {"description": "Deleted; its tokens stop working"}}),
                           merge(admin_errors, error_responses(&[("404", "No such account"), ("409", "The last admin")]))),
    }}));
    paths.insert("/v1/models".into(), json!({"get": {
        "tags": ["models"], "summary": "The models being served, with their versions and holdout figures", "security": [{"oauth2": []}],
        "responses": merge(json!({"200": {"description": "Served models"}}), error_responses(&[("401", "No valid token")])),
    }}));
    paths.insert("/health".into(), json!({"get": {"tags": ["operations"], "summary": "The process is alive", "responses": {"200": {"description": "Alive"}}}}));
    paths.insert("/ready".into(), json!({"get": {"tags": ["operations"], "summary": "Which model versions serve, and the state of the database and the broker",
        "responses": {"200": {"description": "At least one model is loaded"}, "503": {"description": "No model loaded yet"}}}}));
    paths.insert("/metrics".into(), json!({"get": {"tags": ["operations"], "summary": "Prometheus metrics (text format)",
        "responses": {"200": {"description": "Metrics", "content": {"text/plain": {"schema": {"type": "string"}}}}}}}));
    for served in models {
        model_paths(served, &mut paths, &mut schemas);
    }
    schemas.insert("Error".into(), json!({"type": "object", "required": ["error", "message"], "properties": {
        "error": {"type": "string", "description": "A stable code"}, "message": {"type": "string"},
        "field": {"type": "string", "description": "The field at fault"}, "row": {"type": "integer", "description": "The batch row at fault (0-based)"}}}));
    schemas.insert("Prediction".into(), json!({"type": "object", "properties": {
        "request_id": {"type": "string"}, "model": {"type": "string"}, "model_version": {"type": "integer"},
        "class": {"type": "integer", "enum": [0, 1]}, "label": {"type": "string"},
        "probability": {"type": "number", "description": "Probability of the positive class"},
        "threshold": {"type": "number", "description": "class = 1 when probability >= threshold"}}}));
    schemas.insert("BatchPrediction".into(), json!({"type": "object", "properties": {
        "request_id": {"type": "string"}, "model": {"type": "string"}, "model_version": {"type": "integer"}, "threshold": {"type": "number"},
        "predictions": {"type": "array", "items": {"type": "object", "properties": {
            "class": {"type": "integer"}, "label": {"type": "string"}, "probability": {"type": "number"}}}}}}));
    schemas.insert("Token".into(), json!({"type": "object", "properties": {
        "access_token": {"type": "string"}, "token_type": {"type": "string", "enum": ["bearer"]},
        "expires_in": {"type": "integer", "description": "Seconds"}, "role": {"type": "string", "enum": ["user", "admin"]}}}));
    schemas.insert("User".into(), json!({"type": "object", "properties": {
        "name": {"type": "string"}, "role": {"type": "string", "enum": ["user", "admin"]},
        "created_at": {"type": "string", "format": "date-time"}, "created_by": {"type": "string"}}}));
    schemas.insert("NewUser".into(), json!({"type": "object", "required": ["name", "password"], "additionalProperties": false, "properties": {
        "name": {"type": "string", "pattern": "^[A-Za-z0-9._@-]{1,64}$"},
        "password": {"type": "string", "minLength": vigie_api::auth::MIN_PASSWORD_CHARS, "format": "password"},
        "role": {"type": "string", "enum": ["user", "admin"], "default": "user"}}}));
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Vigie prediction service",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Accident severity predictions for dispatchers. Get a token from /auth/token (Authorize button), then call a model's predict endpoint. Every prediction is published to Kafka for drift monitoring.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"oauth2": {"type": "oauth2", "flows": {"password": {"tokenUrl": "/auth/token", "scopes": {}}}}},
        },
    })
}
