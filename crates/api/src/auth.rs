//! Accounts and tokens.
//!
//! `POST /auth/token` (OAuth2 password form) checks a password against its argon2id hash and
//! issues an HS256 JWT carrying the account's role. Routes take [`CurrentUser`] (any valid
//! token) or [`AdminUser`] (role admin). A token authenticates only while its account exists
//! with the same role and was issued after the account's creation, checked against an
//! in-memory copy of the accounts that each service refreshes on every change it makes and
//! on its polling period: deleting an account or changing a role takes effect everywhere
//! within that period, without a database round trip per request.
//!
//! A client reuses its token for many requests (a dispatcher console holds one for its whole
//! shift), so tokens whose signature and claims were verified are remembered by their exact
//! text: a known token costs a hash lookup, not an HMAC, two base64 decodes and a JSON parse.
//! Its expiry and its account are still checked on every request.
//!
//! Logins that fail are counted per account and per client address ([`throttle`]): past a few,
//! the account or the address is answered 429 with `Retry-After` for a while that doubles.
//! Account names are compared without case.

pub mod throttle;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use axum::extract::rejection::{FormRejection, JsonRejection};
use axum::extract::{ConnectInfo, FromRequestParts, Path, State};
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
    /// Tokens already verified, by their exact text.
    verified: RwLock<HashMap<Box<str>, Arc<Claims>>>,
    /// Failed logins per account and address.
    throttle: throttle::Throttle,
    /// `vigie_logins_total{outcome}`, once the service's metrics are known.
    logins: OnceLock<prometheus::IntCounterVec>,
}

/// Most tokens remembered at once; past it, expired ones are dropped, then all of them.
const VERIFIED_TOKENS: usize = 10_000;

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("ttl", &self.ttl)
            .field("accounts", &self.accounts.load().len())
            .finish_non_exhaustive()
    }
}

const ISSUER: &str = "vigie";
/// What the pages' form tokens sign before the session's token.
const FORM_PREFIX: &str = "vigie form token:";

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

/// Passwords too common to accept (one per line; `#` starts a comment).
const COMMON_PASSWORDS: &str = include_str!("auth/common_passwords.txt");

/// Why a new password for the account `name` is refused: shorter than
/// [`MIN_PASSWORD_CHARS`], only white space, the account's name, or among the most common
/// passwords (compared without case).
pub fn check_password(password: &str, name: &str) -> Result<(), String> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(format!(
            "a password has at least {MIN_PASSWORD_CHARS} characters"
        ));
    }
    if password.trim().is_empty() {
        return Err("a password cannot be only white space".into());
    }
    let lower = password.to_lowercase();
    if lower == name.to_lowercase() {
        return Err("a password cannot be the account's name".into());
    }
    if COMMON_PASSWORDS
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .any(|common| common == lower)
    {
        return Err("this password is among the most common ones; choose another".into());
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
            verified: RwLock::new(HashMap::new()),
            throttle: throttle::Throttle::default(),
            logins: OnceLock::new(),
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

    /// Counts logins in `counter` (`vigie_logins_total{outcome}`: ok, refused, throttled).
    pub fn count_logins_in(&self, counter: prometheus::IntCounterVec) {
        for outcome in ["ok", "refused", "throttled"] {
            counter.with_label_values(&[outcome]);
        }
        let _ = self.logins.set(counter);
    }

    fn count_login(&self, outcome: &str) {
        if let Some(counter) = self.logins.get() {
            counter.with_label_values(&[outcome]).inc();
        }
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

    /// The token of the pages' forms for a session token: an HMAC-SHA256 of it under the
    /// service's secret, apart from the tokens' own signatures by its prefix.
    pub fn sign_form(&self, session: &str) -> String {
        let message = format!("{FORM_PREFIX}{session}");
        jsonwebtoken::crypto::sign(message.as_bytes(), &self.encoding, Algorithm::HS256)
            .unwrap_or_default()
    }

    /// Whether `token` is the form token of `session` (compared in constant time).
    pub fn check_form(&self, session: &str, token: &str) -> bool {
        let message = format!("{FORM_PREFIX}{session}");
        !token.is_empty()
            && jsonwebtoken::crypto::verify(
                token,
                message.as_bytes(),
                &self.decoding,
                Algorithm::HS256,
            )
            .unwrap_or(false)
    }

    /// Checks a bearer token: signature, expiry, issuer, and that its account still exists
    /// with the same role and is not newer than the token.
    pub fn check(&self, token: &str) -> Result<Principal, ApiError> {
        self.check_at(token, jsonwebtoken::get_current_timestamp() as i64)
    }

    /// [`Auth::check`] at a given time (Unix seconds).
    fn check_at(&self, token: &str, now: i64) -> Result<Principal, ApiError> {
        let known = self
            .verified
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(token)
            .cloned();
        let claims = match known {
            // The signature and the other claims were verified when it was first seen; only
            // the clock has moved since. Same rule as the decoder's: expired once `exp` is
            // more than the leeway in the past.
            Some(claims) if claims.exp < now - self.validation.leeway as i64 => {
                return Err(expired());
            }
            Some(claims) => claims,
            None => {
                let claims = Arc::new(self.decode(token)?);
                self.remember(token, Arc::clone(&claims), now);
                claims
            }
        };
        let accounts = self.accounts.load();
        match accounts.get(&claims.sub) {
            Some(account) if account.role == claims.role && claims.iat >= account.created_at => {
                Ok(Principal {
                    name: claims.sub.clone(),
                    role: claims.role,
                })
            }
            _ => Err(ApiError::unauthorized(
                "invalid_token",
                "the account behind this token no longer exists or changed; ask /auth/token for a new one",
            )),
        }
    }

    /// Verifies a token's signature and claims.
    fn decode(&self, token: &str) -> Result<Claims, ApiError> {
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|data| data.claims)
            .map_err(|e| {
                use jsonwebtoken::errors::ErrorKind as K;
                let why = match e.kind() {
                    K::ExpiredSignature => return expired(),
                    K::InvalidSignature => "its signature is not this service's",
                    K::InvalidIssuer
                    | K::InvalidAudience
                    | K::InvalidSubject
                    | K::ImmatureSignature
                    | K::MissingRequiredClaim(_) => "its claims are not this service's",
                    K::InvalidAlgorithm | K::InvalidAlgorithmName => "it is not signed with HS256",
                    _ => "it is not a token this service issued",
                };
                ApiError::unauthorized(
                    "invalid_token",
                    format!("the token is not valid: {why}; ask /auth/token for a new one"),
                )
            })
    }

    fn remember(&self, token: &str, claims: Arc<Claims>, now: i64) {
        let mut verified = self.verified.write().unwrap_or_else(|e| e.into_inner());
        if verified.len() >= VERIFIED_TOKENS {
            let leeway = self.validation.leeway as i64;
            verified.retain(|_, c| c.exp >= now - leeway);
            if verified.len() >= VERIFIED_TOKENS {
                verified.clear();
            }
        }
        verified.insert(token.into(), claims);
    }

    /// Checks a name (in any case) and password from `address`: the account's name as stored
    /// and its role, `None` when either is wrong (which one is not said), or a 429 while the
    /// account or the address has failed too often.
    pub async fn login(
        &self,
        name: &str,
        password: &str,
        address: Option<IpAddr>,
    ) -> Result<Option<(String, Role)>, ApiError> {
        let account_key = format!("account:{}", name.to_lowercase());
        let address_key = address.map(|a| format!("address:{a}"));
        let now = Instant::now();
        let blocked = [Some(&account_key), address_key.as_ref()]
            .into_iter()
            .flatten()
            .filter_map(|key| self.throttle.check(key, now).err())
            .max();
        if let Some(wait) = blocked {
            self.count_login("throttled");
            let seconds = wait.as_secs_f64().ceil() as u64;
            return Err(ApiError::too_many(
                "too_many_logins",
                format!(
                    "too many failed logins for this account or from this address; try again in {seconds} s"
                ),
                seconds,
            ));
        }
        let user = self.registry.user(name).await.map_err(|e| {
            tracing::error!(error = %e, "cannot read the accounts");
            ApiError::unavailable(
                "database_unavailable",
                "the account database does not answer; try again",
            )
        })?;
        let hash = match &user {
            Some(u) => u.password_hash.clone(),
            None => self.dummy_hash.clone(),
        };
        let password = password.to_string();
        let ok = tokio::task::spawn_blocking(move || verify_password(&password, &hash))
            .await
            .map_err(|e| ApiError::internal("password check failed", &e))?;
        match user.filter(|_| ok) {
            Some(user) => {
                self.throttle.succeeded(&account_key);
                self.count_login("ok");
                Ok(Some((user.name, user.role)))
            }
            None => {
                let now = Instant::now();
                self.throttle
                    .failed(&account_key, throttle::FREE_ACCOUNT_FAILURES, now);
                if let Some(key) = &address_key {
                    self.throttle
                        .failed(key, throttle::FREE_ADDRESS_FAILURES, now);
                }
                self.count_login("refused");
                Ok(None)
            }
        }
    }
}

fn expired() -> ApiError {
    ApiError::unauthorized(
        "invalid_token",
        "the token has expired; ask /auth/token for a new one",
    )
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
        let token = match bearer(parts) {
            Ok(token) => token,
            // A page's session authenticates reading (GET, HEAD); what changes state wants the
            // header, which no other site's page can make a browser send.
            Err(missing)
                if parts.method == axum::http::Method::GET
                    || parts.method == axum::http::Method::HEAD =>
            {
                if parts
                    .headers
                    .contains_key(axum::http::header::AUTHORIZATION)
                {
                    return Err(missing);
                }
                crate::console::cookie_token(&parts.headers).ok_or(missing)?
            }
            Err(missing) => return Err(missing),
        };
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

/// The client's address, when the server recorded it (router tests call without one).
#[derive(Debug, Clone, Copy)]
pub struct ClientAddress(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddress {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientAddress(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(address)| address.ip()),
        ))
    }
}

async fn token<S: HasAuth + Send + Sync>(
    State(state): State<S>,
    ClientAddress(address): ClientAddress,
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
    match auth.login(&form.username, &form.password, address).await? {
        Some((name, role)) => Ok(Json(TokenResponse {
            access_token: auth.issue(&name, role)?,
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
        e => {
            tracing::error!(error = %e, "account storage failed");
            ApiError::unavailable(
                "database_unavailable",
                "the account database does not answer; try again",
            )
        }
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
    check_password(&new.password, &new.name)
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
    if name.eq_ignore_ascii_case(&admin.name) {
        return Err(ApiError::conflict(
            "own_account",
            "an admin cannot delete their own account; another admin can",
        ));
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"a test secret of at least thirty-two bytes";

    async fn auth_with(users: &[&str]) -> (Auth, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("registry.db").display());
        let registry = Registry::open(&url, dir.path()).await.unwrap();
        for name in users {
            registry
                .add_user(&User {
                    name: name.to_string(),
                    role: Role::User,
                    password_hash: "unused".into(),
                    created_at: 0,
                    created_by: "test".into(),
                })
                .await
                .unwrap();
        }
        let auth = Auth::new(SECRET, Duration::from_secs(3600), registry)
            .await
            .unwrap();
        (auth, dir)
    }

    fn remembered(auth: &Auth) -> usize {
        auth.verified.read().unwrap().len()
    }

    #[tokio::test]
    async fn a_remembered_token_still_expires_and_still_needs_its_account() {
        let (auth, _dir) = auth_with(&["amy"]).await;
        let token = auth.issue("amy", Role::User).unwrap();
        let now = jsonwebtoken::get_current_timestamp() as i64;
        let principal = auth.check_at(&token, now).unwrap();
        assert_eq!(principal.name, "amy");
        assert_eq!(remembered(&auth), 1);
        // Known now: the same answer without decoding again.
        assert_eq!(auth.check_at(&token, now).unwrap(), principal);
        assert_eq!(remembered(&auth), 1);

        // The clock moves past the expiry (and the leeway): refused as expired.
        let exp = now + 3600;
        assert!(auth.check_at(&token, exp + 5).is_ok(), "within the leeway");
        let late = auth.check_at(&token, exp + 6).unwrap_err();
        assert_eq!(late.error, "invalid_token");
        assert!(late.message.contains("expired"), "{}", late.message);

        // The account goes away: its remembered token stops working.
        auth.registry().delete_user("amy").await.unwrap();
        auth.refresh().await.unwrap();
        let gone = auth.check_at(&token, now).unwrap_err();
        assert!(
            gone.message.contains("no longer exists"),
            "{}",
            gone.message
        );
    }

    #[tokio::test]
    async fn only_the_exact_verified_text_is_remembered() {
        let (auth, _dir) = auth_with(&["amy"]).await;
        let token = auth.issue("amy", Role::User).unwrap();
        let now = jsonwebtoken::get_current_timestamp() as i64;
        auth.check_at(&token, now).unwrap();
        // The same claims with one payload character changed: the signature no longer holds.
        let (header, rest) = token.split_once('.').unwrap();
        let mut payload = rest.as_bytes().to_vec();
        payload[3] = if payload[3] == b'A' { b'B' } else { b'A' };
        let tampered = format!("{header}.{}", String::from_utf8(payload).unwrap());
        let refused = auth.check_at(&tampered, now).unwrap_err();
        assert_eq!(refused.error, "invalid_token");
        // A refused token is not remembered.
        assert!(auth.check_at(&tampered, now).is_err());
        assert_eq!(remembered(&auth), 1);
        // A token signed with another secret, for an account that exists: refused.
        let forged = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &Claims {
                sub: "amy".into(),
                role: Role::User,
                iat: now,
                exp: now + 60,
                iss: ISSUER.into(),
            },
            &EncodingKey::from_secret(b"another secret, also thirty-two bytes long"),
        )
        .unwrap();
        assert!(auth.check_at(&forged, now).is_err());
        assert_eq!(remembered(&auth), 1);
    }

    #[tokio::test]
    async fn the_remembered_tokens_are_bounded() {
        let (auth, _dir) = auth_with(&[]).await;
        let claims = |exp: i64| {
            Arc::new(Claims {
                sub: "amy".into(),
                role: Role::User,
                iat: 0,
                exp,
                iss: ISSUER.into(),
            })
        };
        let now = 1_000_000;
        // Full, half of them expired: the expired ones make room.
        for i in 0..VERIFIED_TOKENS {
            let exp = if i % 2 == 0 { now - 100 } else { now + 100 };
            auth.remember(&format!("token-{i}"), claims(exp), now);
        }
        assert_eq!(remembered(&auth), VERIFIED_TOKENS);
        auth.remember("one more", claims(now + 100), now);
        assert_eq!(remembered(&auth), VERIFIED_TOKENS / 2 + 1);
        // Full of live ones: all are forgotten (each is verified again on its next use).
        for i in 0..VERIFIED_TOKENS {
            auth.remember(&format!("live-{i}"), claims(now + 100), now);
        }
        assert!(remembered(&auth) <= VERIFIED_TOKENS);
        auth.remember("last", claims(now + 100), now);
        assert!(remembered(&auth) <= VERIFIED_TOKENS);
    }
}
