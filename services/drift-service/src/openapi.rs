//! The OpenAPI 3.1 document of the drift service.

use axum::Json;
use serde_json::{Value, json};

fn error(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    })
}

fn model_parameter() -> Value {
    json!({
        "name": "model", "in": "query", "required": false,
        "description": "The model (optional when one model is watched)",
        "schema": {"type": "string"}
    })
}

/// `GET /openapi.json`
pub async fn document() -> Json<Value> {
    Json(build())
}

pub fn build() -> Value {
    let bearer = json!([{"bearer": []}]);
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Vigie drift service",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Scores each model's live prediction traffic against the reference profile of its production version. Get a token from /auth/token (the same accounts and secret as the prediction service)."
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error", "message"],
                    "properties": {
                        "error": {"type": "string"},
                        "message": {"type": "string"},
                        "field": {"type": "string"}
                    }
                },
                "NoiseRequest": {
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
                }
            }
        },
        "paths": {
            "/health": {"get": {"summary": "Alive", "responses": {"200": {"description": "The process answers"}}}},
            "/ready": {"get": {"summary": "Ready: a reference is loaded; the consumer's assignment and the dependencies beside",
                "responses": {"200": {"description": "Ready"}, "503": {"description": "No reference loaded yet"}}}},
            "/metrics": {"get": {"summary": "Prometheus metrics: ml_data_drift_score{model}, per-feature scores and decisions, window sizes, events consumed, consumer lag, noise",
                "responses": {"200": {"description": "Prometheus text format", "content": {"text/plain": {}}}}}},
            "/auth/token": {"post": {"summary": "A token for an account (OAuth2 password form)",
                "requestBody": {"required": true, "content": {"application/x-www-form-urlencoded": {"schema": {
                    "type": "object", "required": ["username", "password"],
                    "properties": {"username": {"type": "string"}, "password": {"type": "string"}}}}}},
                "responses": {"200": {"description": "A bearer token"}, "401": error("Wrong name or password")}}},
            "/v1/drift": {"get": {"summary": "The drift state per model and feature: reference, windows, last scores, noise",
                "security": bearer, "parameters": [model_parameter()],
                "responses": {"200": {"description": "The state"}, "401": error("No valid token"), "404": error("Unknown model")}}},
            "/v1/drift/report": {"get": {"summary": "The HTML report of the sliding window against the reference",
                "security": bearer, "parameters": [model_parameter()],
                "responses": {"200": {"description": "A self-contained HTML page", "content": {"text/html": {}}},
                    "401": error("No valid token"), "404": error("Unknown model"), "422": error("Several models: name one")}}},
            "/config/noise": {
                "get": {"summary": "The active noise injections", "security": bearer,
                    "responses": {"200": {"description": "Active injections"}, "401": error("No valid token"), "403": error("Not an admin")}},
                "post": {"summary": "Inject noise into a model's events before they enter the windows (replaces the model's injection)",
                    "security": bearer,
                    "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/NoiseRequest"}}}},
                    "responses": {"201": {"description": "The injection, active"}, "401": error("No valid token"), "403": error("Not an admin"),
                        "404": error("Unknown model"), "422": error("A field is wrong (named in `field`)")}},
                "delete": {"summary": "Stop the injection of one model, or of all", "security": bearer,
                    "parameters": [model_parameter()],
                    "responses": {"200": {"description": "The injections removed"}, "401": error("No valid token"), "403": error("Not an admin"), "404": error("Unknown model")}}
            }
        }
    })
}
