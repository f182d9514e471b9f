//! The OpenAPI 3.1 document of the drift service.

use serde_json::{Map, Value, json};
use vigie_api::openapi::{Document, responses, token_required};

fn model_parameter() -> Value {
    json!({
        "name": "model", "in": "query", "required": false,
        "description": "The model (optional when one model is watched)",
        "schema": {"type": "string"}
    })
}

/// The whole document.
pub fn build() -> Value {
    let mut schemas = Map::new();
    schemas.insert("NoiseRequest".into(), json!({
        "type": "object",
        "required": ["mode", "rate"],
        "additionalProperties": false,
        "properties": {
            "model": {"type": "string", "description": "Optional when one model is watched"},
            "mode": {"type": "string", "enum": ["gaussian", "category_swap", "prior_shift", "new_category", "missing"]},
            "features": {"type": "array", "items": {"type": "string"}, "description": "Features to change; all those the mode suits when empty"},
            "rate": {"type": "number", "exclusiveMinimum": 0, "maximum": 1, "description": "Share of events changed"},
            "seed": {"type": "integer", "minimum": 0},
            "scale": {"type": "number", "exclusiveMinimum": 0, "description": "gaussian: standard deviations of noise (default 1)"},
            "code": {"type": "number", "description": "prior_shift: the code to shift towards; new_category: the new code"},
            "ttl_seconds": {"type": "integer", "minimum": 1, "description": "Time to live (default 600)"}
        },
        "example": {"mode": "gaussian", "features": ["victim_age", "lat", "long"], "rate": 1.0, "seed": 7, "scale": 2.0, "ttl_seconds": 600}
    }));
    let mut paths = Map::new();
    paths.insert("/v1/drift".into(), json!({"get": {"tags": ["drift"], "summary": "The drift state per model and feature: reference, windows, last scores, noise",
        "security": token_required(), "parameters": [model_parameter()],
        "responses": responses(json!({"200": {"description": "The state"}}), &[("401", "No valid token"), ("404", "Unknown model")])}}));
    paths.insert("/v1/drift/history".into(), json!({"get": {"tags": ["drift"], "summary": "A model's drift over time: at most one point per history step (the scoring's result then: the dataset score, each feature's statistic, threshold and decision), oldest first, in a bounded ring saved with the checkpoints",
        "security": token_required(), "parameters": [model_parameter()],
        "responses": responses(json!({"200": {"description": "The history: `features` names the features the points' `i` index; per point `at_ms`, `version`, `events`, `score` (absent below the minimum sample size), `threshold`, `drifted`, `noise` and `features` ({i, s: statistic, t: noise threshold, d: drifted})"}}),
            &[("401", "No valid token"), ("404", "Unknown model"), ("422", "Several models: name one")])}}));
    paths.insert("/v1/drift/report".into(), json!({"get": {"tags": ["drift"], "summary": "The HTML report of the sliding window against the reference",
        "security": token_required(), "parameters": [model_parameter()],
        "responses": responses(json!({"200": {"description": "A self-contained HTML page", "content": {"text/html": {}}},
            "303": {"description": "A browser (Accept: text/html) with neither a token nor a session cookie: to the sign-in page, which comes back here"}}),
            &[("401", "No valid token"), ("404", "Unknown model"), ("422", "Several models: name one")])}}));
    let admin = [("401", "No valid token"), ("403", "Not an admin")];
    paths.insert("/config/noise".into(), json!({
        "get": {"tags": ["noise"], "summary": "The active noise injections", "security": token_required(),
            "responses": responses(json!({"200": {"description": "Active injections"}}), &admin)},
        "post": {"tags": ["noise"], "summary": "Inject noise into a model's events before they enter the windows (replaces the model's injection)",
            "security": token_required(),
            "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/NoiseRequest"}}}},
            "responses": responses(json!({"201": {"description": "The injection, active"}}),
                &[admin[0], admin[1], ("404", "Unknown model"), ("422", "A field is wrong (named in `field`)")])},
        "delete": {"tags": ["noise"], "summary": "Stop the injection of one model, or of all", "security": token_required(),
            "parameters": [model_parameter()],
            "responses": responses(json!({"200": {"description": "The injections removed"}}), &[admin[0], admin[1], ("404", "Unknown model")])}
    }));
    Document {
        title: "Vigie drift service".into(),
        description: "Scores each model's live prediction traffic against the reference profile of its production version. Get a token from /auth/token (the same accounts and secret as the prediction service).".into(),
        ready: "A reference is loaded; the consumer's assignment and the dependencies beside".into(),
        paths,
        schemas,
        ..Document::default()
    }
    .build()
}
