//! Accounts and tokens.
//!
//! `POST /auth/token` (OAuth2 password form) checks a password against its argon2id hash and
//! issues an HS256 JWT carrying the account's role. Routes take [`CurrentUser`] (any valid
//! token) or [`AdminUser`] (role admin). A token authenticates only while its account exists
//! with the same role and was issued after the account's creation, checked against an
//! in-memory copy of the accounts that each service refreshes on every change it makes and
//! on its polling period: deleting an account or changing a role takes effect everywhere
//! within that period, without a database round trip per request.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use axum::extract::rejection::{FormRejection, JsonRejection};
use axum::extract::{FromRequestParts, Path, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::routing::{delete, get, post};
use axum::{Form, Json, Router};
use chrono::Utc;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use vigie_registry::{Registry, Role, User};

use crate::error::ApiError;

/// The shortest JWT secret accepted (bytes): HS256 wants at least its 256-bit output.
pub const MIN_SECRET_BYTES: usize = 32;
/// The shortest password accepted.
pub const MIN_PASSWORD_CHARS: usize = 8;

/// What a token says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Claims {
    /// The account name.
    pub sub: String,
    pub role: Role,
    /// Issued at, Unix seconds.
    pub iat: i64,
    /// Expires at, Unix seconds.
    pub exp: i64,
    pub iss: String,
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    pub role: Role,
}

#[derive(Debug, Clone, Copy)]
struct Account {
    role: Role,
    created_at: i64,
}

/// Token issuing and checking, and the accounts they refer to.
pub struct Auth {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl: Duration,
    registry: Registry,
    accounts: ArcSwap<HashMap<String, Account>>,
    /// Verified when the account does not exist, so that a wrong name costs as much time as a
    /// wrong password.
    dummy_hash: String,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("ttl", &self.ttl)
            .field("accounts", &self.accounts.load().len())
            .finish_non_exhaustive()
    }
}

const ISSUER: &str = "vigie";

/// Hashes a password with argon2id and a random salt (PHC string). Takes tens of
/// milliseconds on purpose: call it off the async threads.
pub fn hash_password(password: &str) -> Result<String, String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| format!("cannot hash the password: {e}"))
}

/// Checks a password against a PHC string.
pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

/// Why a new password is refused.
pub fn check_password(password: &str) -> Result<(), String> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(format!(
            "a password has at least {MIN_PASSWORD_CHARS} characters"
        ));
    }
    Ok(())
}

impl Auth {
    /// Loads the accounts; refuses a secret shorter than [`MIN_SECRET_BYTES`].
    pub async fn new(secret: &[u8], ttl: Duration, registry: Registry) -> Result<Self, String> {
        if secret.len() < MIN_SECRET_BYTES {
            return Err(format!(
                "the JWT secret has {} bytes; it needs at least {MIN_SECRET_BYTES} bytes",
                secret.len()
            ));
        }
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "iat", "sub", "iss"]);
        validation.leeway = 5;
        let dummy_hash = tokio::task::spawn_blocking(|| hash_password("not a password"))
            .await
            .map_err(|e| e.to_string())??;
        let auth = Auth {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            ttl,
            registry,
            accounts: ArcSwap::from_pointee(HashMap::new()),
            dummy_hash,
        };
        auth.refresh()
            .await
            .map_err(|e| format!("cannot read the accounts: {e}"))?;
        Ok(auth)
    }

    /// Reloads the accounts from the database.
    pub async fn refresh(&self) -> Result<(), vigie_registry::Error> {
        let users = self.registry.users().await?;
        let accounts = users
            .into_iter()
            .map(|u| {
                (
                    u.name,
                    Account {
                        role: u.role,
                        created_at: u.created_at,
                    },
                )
            })
            .collect();
        self.accounts.store(Arc::new(accounts));
        Ok(())
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// How long issued tokens live.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Issues a token for an account (its password already checked).
    pub fn issue(&self, name: &str, role: Role) -> Result<String, ApiError> {
        let now = Utc::now().timestamp();
        let claims = Claims {
            sub: name.to_string(),
            role,
            iat: now,
            exp: now + self.ttl.as_secs() as i64,
            iss: ISSUER.into(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| ApiError::internal("cannot sign the token", &e))
    }

    /// Checks a bearer token: signature, expiry, issuer, and that its account still exists
    /// with the same role and is not newer than the token.
    pub fn check(&self, token: &str) -> Result<Principal, ApiError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| {
                let message = match e.kind() {
                    jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
                        "the token has expired; ask /auth/token for a new one".to_string()
                    }
                    _ => format!("the token is not valid: {e}"),
                };
                ApiError::unauthorized("invalid_token", message)
            })?;
        let claims = data.claims;
        let accounts = self.accounts.load();
        match accounts.get(&claims.sub) {
            Some(account) if account.role == claims.role && claims.iat >= account.created_at => {
                Ok(Principal {
                    name: claims.sub,
                    role: claims.role,
                })
            }
            _ => Err(ApiError::unauthorized(
                "invalid_token",
                "the account behind this token no longer exists or changed; ask /auth/token for a new one",
            )),
        }
    }

    /// Checks a name and password; `None` when either is wrong (which one is not said).
    pub async fn login(&self, name: &str, password: &str) -> Result<Option<Role>, ApiError> {
        let user = self.registry.user(name).await.map_err(|e| {
            ApiError::unavailable(
                "database_unavailable",
                format!("cannot read the accounts: {e}"),
            )
        })?;
        let (hash, role) = match &user {
            Some(u) => (u.password_hash.clone(), Some(u.role)),
            None => (self.dummy_hash.clone(), None),
        };
        let password = password.to_string();
        let ok = tokio::task::spawn_blocking(move || verify_password(&password, &hash))
            .await
            .map_err(|e| ApiError::internal("password check failed", &e))?;
        Ok(if ok { role } else { None })
    }
}

/// Gives the extractors access to the service's [`Auth`].
pub trait HasAuth {
    fn auth(&self) -> &Auth;
}

fn bearer(parts: &Parts) -> Result<&str, ApiError> {
    bearer_token(&parts.headers)
}

/// The token of an `Authorization: Bearer TOKEN` header: `missing_token` without the header,
/// `invalid_token` when it does not read so.
pub fn bearer_token(headers: &axum::http::HeaderMap) -> Result<&str, ApiError> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)
        .ok_or_else(|| {
            ApiError::unauthorized(
                "missing_token",
                "send Authorization: Bearer TOKEN; /auth/token issues one",
            )
        })?;
    let text = value.to_str().unwrap_or("");
    match text.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            Ok(token.trim())
        }
        _ => Err(ApiError::unauthorized(
            "invalid_token",
            "the Authorization header must read: Bearer TOKEN",
        )),
    }
}

/// Any authenticated account.
#[derive(Debug, Clone)]
pub struct CurrentUser(pub Principal);

impl<S: HasAuth + Send + Sync> FromRequestParts<S> for CurrentUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let token = bearer(parts)?;
        state.auth().check(token).map(CurrentUser)
    }
}

/// An authenticated admin.
#[derive(Debug, Clone)]
pub struct AdminUser(pub Principal);

impl<S: HasAuth + Send + Sync> FromRequestParts<S> for AdminUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let CurrentUser(principal) = CurrentUser::from_request_parts(parts, state).await?;
        if principal.role != Role::Admin {
            return Err(ApiError::forbidden(format!(
                "{} has role user; this needs an admin token",
                principal.name
            )));
        }
        Ok(AdminUser(principal))
    }
}

/// The OAuth2 password form.
#[derive(Debug, Deserialize)]
pub struct TokenForm {
    #[serde(default)]
    pub grant_type: Option<String>,
    pub username: String,
    pub password: String,
    /// Accepted and ignored (OAuth2 clients send it).
    #[serde(default)]
    pub scope: Option<String>,
}

/// A token, as OAuth2 clients expect it.
#[derive(Debug, Serialize, Deserialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: String,
    /// Seconds.
    pub expires_in: u64,
    pub role: Role,
}

/// An account as the API shows it (never its hash).
#[derive(Debug, Serialize, Deserialize)]
pub struct UserView {
    pub name: String,
    pub role: Role,
    pub created_at: String,
    pub created_by: String,
}

impl From<&User> for UserView {
    fn from(u: &User) -> Self {
        UserView {
            name: u.name.clone(),
            role: u.role,
            created_at: chrono::DateTime::from_timestamp(u.created_at, 0)
                .map(|t| t.to_rfc3339())
                .unwrap_or_default(),
            created_by: u.created_by.clone(),
        }
    }
}

/// A new account.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    pub name: String,
    pub password: String,
    #[serde(default = "default_role")]
    pub role: Role,
}

fn default_role() -> Role {
    Role::User
}

/// The account routes: `/auth/token`, and for admins `/v1/users` and `/v1/users/{name}`.
pub fn routes<S>() -> Router<S>
where
    S: HasAuth + Clone + Send + Sync + 'static,
{
    Router::new()
        .route("/auth/token", post(token::<S>))
        .route("/v1/users", get(list_users::<S>).post(create_user::<S>))
        .route("/v1/users/{name}", delete(delete_user::<S>))
}

async fn token<S: HasAuth + Send + Sync>(
    State(state): State<S>,
    form: Result<Form<TokenForm>, FormRejection>,
) -> Result<Json<TokenResponse>, ApiError> {
    let Form(form) = form.map_err(|r| {
        let text = r.body_text();
        let mut error = ApiError::from_rejection(r.status(), text.clone());
        for field in ["username", "password"] {
            if text.contains(&format!("missing field `{field}`")) {
                error = ApiError::invalid("missing_field", format!("the form has no {field}"))
                    .with_field(field);
            }
        }
        error
    })?;
    if let Some(grant) = form.grant_type.as_deref().filter(|g| *g != "password") {
        return Err(ApiError::bad_request(
            "unsupported_grant_type",
            format!("grant_type {grant:?} is not supported; use password"),
        )
        .with_field("grant_type"));
    }
    let auth = state.auth();
    match auth.login(&form.username, &form.password).await? {
        Some(role) => Ok(Json(TokenResponse {
            access_token: auth.issue(&form.username, role)?,
            token_type: "bearer".into(),
            expires_in: auth.ttl().as_secs(),
            role,
        })),
        None => Err(ApiError::unauthorized(
            "invalid_credentials",
            "wrong user name or password",
        )),
    }
}

fn registry_error(e: vigie_registry::Error) -> ApiError {
    use vigie_registry::Error as E;
    match e {
        E::UserExists(name) => ApiError::conflict(
            "user_exists",
            format!("a user named {name:?} already exists"),
        )
        .with_field("name"),
        E::UnknownUser(name) => {
            ApiError::not_found("unknown_user", format!("no user named {name:?}"))
        }
        e @ E::LastAdmin(_) => ApiError::conflict("last_admin", e.to_string()),
        E::BadUserName(message) => ApiError::invalid("invalid_value", message).with_field("name"),
        e => ApiError::unavailable(
            "database_unavailable",
            format!("account storage failed: {e}"),
        ),
    }
}

async fn list_users<S: HasAuth + Send + Sync>(
    State(state): State<S>,
    _admin: AdminUser,
) -> Result<Json<Vec<UserView>>, ApiError> {
    let users = state
        .auth()
        .registry()
        .users()
        .await
        .map_err(registry_error)?;
    Ok(Json(users.iter().map(UserView::from).collect()))
}

async fn create_user<S: HasAuth + Send + Sync>(
    State(state): State<S>,
    AdminUser(admin): AdminUser,
    body: Result<Json<NewUser>, JsonRejection>,
) -> Result<(StatusCode, Json<UserView>), ApiError> {
    let Json(new) = body.map_err(|r| ApiError::from_rejection(r.status(), r.body_text()))?;
    vigie_registry::users::check_user_name(&new.name)
        .map_err(|m| ApiError::invalid("invalid_value", m).with_field("name"))?;
    check_password(&new.password)
        .map_err(|m| ApiError::invalid("invalid_value", m).with_field("password"))?;
    let password = new.password;
    let password_hash = tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(|e| ApiError::internal("password hashing failed", &e))?
        .map_err(|e| ApiError::internal("password hashing failed", &e))?;
    let user = User {
        name: new.name,
        role: new.role,
        password_hash,
        created_at: Utc::now().timestamp(),
        created_by: admin.name,
    };
    let auth = state.auth();
    auth.registry()
        .add_user(&user)
        .await
        .map_err(registry_error)?;
    auth.refresh().await.map_err(registry_error)?;
    tracing::info!(user = %user.name, role = user.role.as_str(), by = %user.created_by, "account created");
    Ok((StatusCode::CREATED, Json(UserView::from(&user))))
}

async fn delete_user<S: HasAuth + Send + Sync>(
    State(state): State<S>,
    AdminUser(admin): AdminUser,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let auth = state.auth();
    let user = auth
        .registry()
        .delete_user(&name)
        .await
        .map_err(registry_error)?;
    auth.refresh().await.map_err(registry_error)?;
    tracing::info!(user = %user.name, by = %admin.name, "account deleted");
    Ok(StatusCode::NO_CONTENT)
}
