//! The OpenAPI 3.1 document of a service: its own paths and schemas, completed with what the
//! shell serves (`/health`, `/ready`, `/metrics`, the account routes), the error body, and
//! the OAuth2 password flow the docs page's Authorize button uses.

use serde_json::{Map, Value, json};

use crate::auth::MIN_PASSWORD_CHARS;

/// The security requirement of a route that needs a token.
pub fn token_required() -> Value {
    json!([{"oauth2": []}])
}

/// An error response: its description and the error body.
pub fn error(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    })
}

/// Error responses, each with the error body: `(status, description)`.
pub fn errors(codes: &[(&str, &str)]) -> Map<String, Value> {
    codes
        .iter()
        .map(|(status, description)| ((*status).to_string(), error(description)))
        .collect()
}

/// `ok` (a JSON object of responses) followed by [`errors`].
pub fn responses(ok: Value, codes: &[(&str, &str)]) -> Value {
    let mut all = match ok {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    all.extend(errors(codes));
    Value::Object(all)
}

/// A service's own part of its document.
#[derive(Debug, Clone, Default)]
pub struct Document {
    pub title: String,
    pub description: String,
    /// What a 200 from `/ready` means for this service.
    pub ready: String,
    pub paths: Map<String, Value>,
    pub schemas: Map<String, Value>,
    /// Security schemes beside `oauth2` (the trainer's webhook token).
    pub security_schemes: Map<String, Value>,
}

impl Document {
    /// The whole document: the service's paths and the shell's, each operation with every
    /// error the shell can answer it with (see [`complete_responses`]).
    pub fn build(self) -> Value {
        let mut paths = self.paths;
        for (path, item) in shell_paths(&self.ready) {
            paths.entry(path).or_insert(item);
        }
        for (path, item) in paths.iter_mut() {
            if let Some(item) = item.as_object_mut() {
                for operation in item.values_mut().filter_map(Value::as_object_mut) {
                    complete_responses(path, operation);
                }
            }
        }
        let mut schemas = self.schemas;
        for (name, schema) in shell_schemas() {
            schemas.entry(name).or_insert(schema);
        }
        let mut security = self.security_schemes;
        security.insert(
            "oauth2".into(),
            json!({"type": "oauth2", "flows": {"password": {"tokenUrl": "/auth/token", "scopes": {}}}}),
        );
        json!({
            "openapi": "3.1.0",
            "info": {
                "title": self.title,
                "version": env!("CARGO_PKG_VERSION"),
                "description": self.description,
            },
            "paths": paths,
            "components": {"schemas": schemas, "securitySchemes": security},
        })
    }
}

/// Adds to an operation the errors every route can answer, where it does not document them:
/// 500 (a failure of the service, logged); with a path parameter, 404; with a token, 401;
/// with query parameters, 400 and 422; with a body, 400 (not the syntax announced), 408 (the body stopped arriving), 413 (past
/// the body limit), 415 (another content type) and 422 (not the shape the route takes).
pub fn complete_responses(path: &str, operation: &mut Map<String, Value>) {
    let has_body = operation.contains_key("requestBody");
    let secured = operation
        .get("security")
        .and_then(Value::as_array)
        .is_some_and(|s| !s.is_empty());
    let mut add = vec![("500", "The service failed; its log has the details")];
    if path.contains('{') {
        add.push(("404", "Nothing by that name"));
    }
    if secured {
        add.push(("401", "No token, or an invalid or expired one"));
    }
    let has_query = operation
        .get("parameters")
        .and_then(Value::as_array)
        .is_some_and(|ps| ps.iter().any(|p| p["in"] == "query"));
    if has_query {
        add.extend([
            ("400", "The query string cannot be read"),
            (
                "422",
                "A query parameter is not what this route takes (`field` names it)",
            ),
        ]);
    }
    if has_body {
        add.extend([
            (
                "400",
                "The body is not in the syntax its content type announces",
            ),
            ("408", "The body stopped arriving before its end"),
            ("413", "The body is larger than this route takes"),
            ("415", "The body's content type is not one this route takes"),
            (
                "422",
                "The body is not what this route takes (`field` names what is wrong)",
            ),
        ]);
    }
    let responses = operation
        .entry("responses")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Some(responses) = responses.as_object_mut() {
        for (status, description) in add {
            responses
                .entry(status)
                .or_insert_with(|| error(description));
        }
    }
}

fn shell_paths(ready: &str) -> Map<String, Value> {
    let admin = [
        ("401", "No valid token"),
        ("403", "The token is not an admin's"),
    ];
    let mut paths = Map::new();
    paths.insert(
        "/health".into(),
        json!({"get": {"tags": ["operations"], "summary": "The process is alive",
        "responses": {"200": {"description": "Alive"}}}}),
    );
    paths.insert("/ready".into(), json!({"get": {"tags": ["operations"], "summary": "Whether the service can do its work, with the state of the database and the broker",
        "responses": {"200": {"description": ready}, "503": {"description": "Not ready: `reason` says why"}}}}));
    paths.insert("/metrics".into(), json!({"get": {"tags": ["operations"], "summary": "Prometheus metrics (text format)",
        "responses": {"200": {"description": "Metrics", "content": {"text/plain": {"schema": {"type": "string"}}}}}}}));
    paths.insert("/auth/token".into(), json!({"post": {
        "tags": ["accounts"],
        "summary": "Exchange a user name and password for a bearer token (OAuth2 password flow)",
        "requestBody": {"required": true, "content": {"application/x-www-form-urlencoded": {"schema": {
            "type": "object", "required": ["username", "password"],
            "properties": {"grant_type": {"type": "string", "enum": ["password"]}, "username": {"type": "string"}, "password": {"type": "string", "format": "password"}, "scope": {"type": "string"}}}}}},
        "responses": responses(json!({"200": {"description": "A token", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Token"}}}}}),
            &[("400", "Unsupported grant_type"), ("401", "Wrong user name or password"), ("422", "A form field is missing"),
              ("429", "Too many failed logins for this account or from this address: Retry-After says when to try again"),
              ("503", "The account database does not answer")]),
    }}));
    paths.insert("/v1/users".into(), json!({
        "get": {"tags": ["accounts"], "summary": "List accounts (admin)", "security": token_required(),
                "responses": responses(json!({"200": {"description": "Accounts, by name", "content": {"application/json": {"schema": {"type": "array", "items": {"$ref": "#/components/schemas/User"}}}}}}), &admin)},
        "post": {"tags": ["accounts"], "summary": "Create an account, user or admin (admin)", "security": token_required(),
                 "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/NewUser"}}}},
                 "responses": responses(json!({"201": {"description": "Created", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/User"}}}}}),
                    &[admin[0], admin[1], ("409", "The name is taken"), ("422", "Invalid name or too short a password")])},
    }));
    paths.insert("/v1/users/{name}".into(), json!({"delete": {
        "tags": ["accounts"], "summary": "Delete an account (admin); the last admin cannot be deleted", "security": token_required(),
        "parameters": [{"name": "name", "in": "path", "required": true, "schema": {"type": "string"}}],
        "responses": responses(json!({"204": {"description": "Deleted; its tokens stop working"}}),
            &[admin[0], admin[1], ("404", "No such account"), ("409", "The last admin, or the caller's own account")]),
    }}));
    paths
}

fn shell_schemas() -> Map<String, Value> {
    let mut schemas = Map::new();
    schemas.insert("Error".into(), json!({"type": "object", "required": ["error", "message"], "properties": {
        "error": {"type": "string", "description": "A stable code"}, "message": {"type": "string"},
        "field": {"type": "string", "description": "The field at fault"}, "row": {"type": "integer", "description": "The batch row at fault (0-based)"}}}));
    schemas.insert("Token".into(), json!({"type": "object", "properties": {
        "access_token": {"type": "string"}, "token_type": {"type": "string", "enum": ["bearer"]},
        "expires_in": {"type": "integer", "description": "Seconds"}, "role": {"type": "string", "enum": ["user", "admin"]}}}));
    schemas.insert("User".into(), json!({"type": "object", "properties": {
        "name": {"type": "string"}, "role": {"type": "string", "enum": ["user", "admin"]},
        "created_at": {"type": "string", "format": "date-time"}, "created_by": {"type": "string"}}}));
    schemas.insert("NewUser".into(), json!({"type": "object", "required": ["name", "password"], "additionalProperties": false, "properties": {
        "name": {"type": "string", "pattern": "^[A-Za-z0-9._@-]{1,64}$"},
        "password": {"type": "string", "minLength": MIN_PASSWORD_CHARS, "format": "password"},
        "role": {"type": "string", "enum": ["user", "admin"], "default": "user"}}}));
    schemas
}
