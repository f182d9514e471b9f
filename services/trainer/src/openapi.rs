//! The OpenAPI 3.1 document of the trainer.

use serde_json::{Map, Value, json};
use vigie_api::openapi::{Document, error, token_required};

fn name_parameter() -> Value {
    json!({"name": "name", "in": "path", "required": true, "schema": {"type": "string"}, "description": "The model's name"})
}

/// The whole document.
pub fn build() -> Value {
    let webhook = json!([{"webhook": []}]);
    let object = |value: Value| match value {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    let schemas = object(json!({
        "Run": {
            "type": "object",
            "properties": {
                "id": {"type": "string"},
                "model": {"type": "string"},
                "state": {"type": "string", "enum": ["triggered", "training", "evaluated", "promoted", "rejected", "failed"]},
                "trigger": {"type": "string", "enum": ["alert", "manual"]},
                "triggered_by": {"type": "string"},
                "production_version": {"type": ["integer", "null"]},
                "candidate_version": {"type": ["integer", "null"]},
                "detail": {"type": "object", "description": "data (rows used, labelled traffic join), evaluation (both models' holdout figures, the bootstrap comparison), verdict"},
                "error": {"type": ["string", "null"]},
                "created_at": {"type": "integer", "description": "Unix time, ms"},
                "updated_at": {"type": "integer"},
                "finished_at": {"type": ["integer", "null"]}
            }
        },
        "AlertmanagerWebhook": {
            "type": "object",
            "required": ["version", "status", "receiver", "groupKey", "alerts"],
            "properties": {
                "version": {"const": "4"},
                "status": {"enum": ["firing", "resolved"]},
                "receiver": {"type": "string"},
                "groupKey": {"type": "string"},
                "alerts": {"type": "array", "items": {
                    "type": "object",
                    "required": ["status", "labels", "startsAt", "fingerprint"],
                    "properties": {
                        "status": {"enum": ["firing", "resolved"]},
                        "labels": {"type": "object", "additionalProperties": {"type": "string"}, "description": "alertname, and model for the drift alert"},
                        "startsAt": {"type": "string", "format": "date-time"},
                        "fingerprint": {"type": "string"}
                    }
                }}
            }
        }
    }));
    let paths = object(json!({
        "/v1/alerts": {
            "post": {
                "summary": "Alertmanager's webhook: a new firing drift alert starts a retraining",
                "security": webhook,
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/AlertmanagerWebhook"}}}},
                "responses": {
                    "200": {"description": "What was done about each alert: started, busy, cooldown, duplicate, resolved or ignored"},
                    "401": error("No or wrong webhook token"),
                    "422": error("Not a version 4 webhook payload; the field is named"),
                    "503": error("The registry database does not answer (Alertmanager retries)")
                }
            },
            "get": {
                "summary": "The alerts received, newest first",
                "security": token_required(),
                "parameters": [{"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000}}],
                "responses": {"200": {"description": "Alerts"}, "401": error("No token")}
            }
        },
        "/v1/runs": {
            "get": {
                "summary": "Retraining runs, newest first",
                "security": token_required(),
                "parameters": [
                    {"name": "model", "in": "query", "schema": {"type": "string"}},
                    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000}}
                ],
                "responses": {"200": {"description": "Runs", "content": {"application/json": {"schema": {"type": "array", "items": {"$ref": "#/components/schemas/Run"}}}}}, "422": error("Bad parameter")}
            }
        },
        "/v1/runs/{id}": {
            "get": {
                "summary": "One run",
                "security": token_required(),
                "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}],
                "responses": {"200": {"description": "The run", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Run"}}}}, "404": error("No such run")}
            }
        },
        "/v1/models/{name}": {
            "get": {
                "summary": "A model's versions, promotions and latest runs",
                "security": token_required(),
                "parameters": [name_parameter()],
                "responses": {"200": {"description": "History"}, "404": error("No such model")}
            }
        },
        "/v1/models/{name}/retrain": {
            "post": {
                "summary": "Start a retraining now (admin; no cooldown)",
                "security": token_required(),
                "parameters": [name_parameter()],
                "responses": {"202": {"description": "Started", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Run"}}}}, "403": error("Not an admin"), "404": error("No such model"), "409": error("A run of the model is in progress")}
            }
        },
        "/v1/models/{name}/promote": {
            "post": {
                "summary": "Make a version production (admin); its artifact is checked first",
                "security": token_required(),
                "parameters": [name_parameter()],
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["version"], "properties": {"version": {"type": "integer", "minimum": 1}}}}}},
                "responses": {"200": {"description": "Promoted"}, "403": error("Not an admin"), "404": error("No such version"), "409": error("The artifact fails its checks"), "422": error("Bad body")}
            }
        },
        "/v1/models/{name}/rollback": {
            "post": {
                "summary": "Back to the version the production one replaced (admin)",
                "security": token_required(),
                "parameters": [name_parameter()],
                "responses": {"200": {"description": "Rolled back"}, "403": error("Not an admin"), "404": error("No such model"), "409": error("No earlier version recorded, or its artifact fails its checks")}
            }
        }
    }));
    let mut security_schemes = Map::new();
    security_schemes.insert(
        "webhook".into(),
        json!({"type": "http", "scheme": "bearer", "description": "The webhook token alertmanager.yml's http_config sends"}),
    );
    Document {
        title: "Vigie trainer".into(),
        description: "Retrains a model when its drift alert fires (Alertmanager's webhook), compares the candidate with production on the fixed holdout, and promotes it only when a paired bootstrap says it is better. Admins can retrain, promote and roll back by hand. Tokens come from /auth/token (the same accounts and secret as the other services).".into(),
        ready: "The registry database answers".into(),
        paths,
        schemas,
        security_schemes,
    }
    .build()
}
