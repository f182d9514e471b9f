//! The pages people open in a browser, the part every service shares: signing in to a session
//! cookie, signing out, the guard of forms against cross-site requests, and the layout.
//!
//! A session is a token of [`Auth`] (the same accounts, roles, login limits and lifetime as
//! `/auth/token`) carried in the `vigie_session` cookie: `HttpOnly` (no script reads it),
//! `SameSite=Strict` (no other site's page sends it), `Secure` when the request came over TLS
//! through a proxy (`X-Forwarded-Proto: https`), and as long-lived as the token. A token never
//! appears in a URL. The services' read routes ([`crate::CurrentUser`] on `GET`) accept the
//! cookie as they accept a bearer header; the routes that change state accept only the
//! header, and the pages' forms post to their own routes, which check the form's token (an
//! HMAC of the session under the service's secret, [`Session::check_form`]) and the request's
//! origin before calling the API's handler.
//!
//! Services on one host share the cookie (a cookie is per host, not per port), so with one
//! secret, signing in to one of `vigie up`'s services signs in to all three.

use std::fmt::Write as _;

use axum::Form;
use axum::Router;
use axum::extract::rejection::FormRejection;
use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use vigie_registry::Role;

use crate::auth::{AdminUser, Auth, ClientAddress, HasAuth, Principal};
use crate::error::ApiError;

/// The session cookie's name.
pub const COOKIE: &str = "vigie_session";

/// The pages' script: refreshes the parts of a page marked `data-live` (never while a form
/// field has the focus) and asks before a form marked `data-confirm` is sent.
const SCRIPT: &str = include_str!("console.js");

/// What every page's answer carries: no caching of personal pages, nothing loaded from
/// another origin, no framing.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; \
                   img-src 'self' data:; connect-src 'self'; form-action 'self'; \
                   frame-ancestors 'none'; base-uri 'none'";

/// A signed-in browser: its account and the token its cookie carries.
#[derive(Debug, Clone)]
pub struct Session {
    pub principal: Principal,
    token: String,
}

impl Session {
    pub fn is_admin(&self) -> bool {
        self.principal.role == Role::Admin
    }

    /// The token the session's forms carry: an HMAC of the session under the service's secret,
    /// which a page of another site can neither read nor compute.
    pub fn form_token(&self, auth: &Auth) -> String {
        auth.sign_form(&self.token)
    }

    /// Checks that a form comes from this service's pages: its token is the session's, and
    /// the browser does not say the request comes from another site. 403 otherwise.
    pub fn check_form(
        &self,
        auth: &Auth,
        headers: &HeaderMap,
        token: &str,
    ) -> Result<(), ApiError> {
        check_origin(headers)?;
        if auth.check_form(&self.token, token) {
            Ok(())
        } else {
            Err(ApiError::forbidden(
                "the form's token is not this session's: reload the page and send it again",
            ))
        }
    }

    /// The admin a page's form comes from: the form read, its token and origin checked
    /// ([`Session::check_form`]), its sender an admin. 422 for a form that cannot be read,
    /// 403 otherwise.
    pub fn admin_form<T: SignedForm>(
        &self,
        auth: &Auth,
        headers: &HeaderMap,
        form: Result<Form<T>, FormRejection>,
    ) -> Result<(AdminUser, T), ApiError> {
        let Form(form) = form.map_err(|r| ApiError::invalid("invalid_form", r.body_text()))?;
        self.check_form(auth, headers, form.form_token())?;
        if !self.is_admin() {
            return Err(ApiError::forbidden(format!(
                "{} has role user; this needs an admin",
                self.principal.name
            )));
        }
        Ok((AdminUser(self.principal.clone()), form))
    }

    /// The hidden field every form of the session carries.
    pub fn form_field(&self, auth: &Auth) -> String {
        format!(
            "<input type=\"hidden\" name=\"form_token\" value=\"{}\">",
            self.form_token(auth)
        )
    }
}

/// A page's form: it carries the session's form token ([`Session::form_field`]).
pub trait SignedForm {
    fn form_token(&self) -> &str;
}

/// The session cookie's token in `headers`, if any.
pub fn cookie_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim())
        .filter(|value| !value.is_empty())
}

/// Refuses a request the browser says comes from another site (`Sec-Fetch-Site`), or whose
/// `Origin` is not the host it was sent to.
fn check_origin(headers: &HeaderMap) -> Result<(), ApiError> {
    let cross_site = || {
        ApiError::forbidden("a form sent from another site is refused: use this service's own page")
    };
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok())
        && !matches!(site, "same-origin" | "none")
    {
        return Err(cross_site());
    }
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        // Behind a proxy that rewrites Host, the host the browser asked is the forwarded one
        // (a page of another site cannot make a browser send either header).
        let host = headers
            .get("x-forwarded-host")
            .or_else(|| headers.get(header::HOST))
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let origin_host = origin.split_once("://").map(|(_, h)| h).unwrap_or(origin);
        if origin == "null" || origin_host != host {
            return Err(cross_site());
        }
    }
    Ok(())
}

/// Why a page sends the browser to the sign-in page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignInNeeded {
    /// No session cookie.
    NoSession,
    /// The session's token expired.
    Expired,
    /// The cookie is not a session of this service (tampered with, of another secret, or its
    /// account deleted or changed).
    Invalid,
}

impl SignInNeeded {
    fn code(self) -> &'static str {
        match self {
            SignInNeeded::NoSession => "none",
            SignInNeeded::Expired => "expired",
            SignInNeeded::Invalid => "invalid",
        }
    }
}

/// The answer of a page asked without a valid session: to the sign-in page, which comes back
/// to the page asked for.
#[derive(Debug)]
pub struct SignIn {
    why: SignInNeeded,
    next: String,
}

impl IntoResponse for SignIn {
    fn into_response(self) -> Response {
        let mut location = format!("/sign-in?next={}", encode_component(&self.next));
        if self.why != SignInNeeded::NoSession {
            let _ = write!(location, "&why={}", self.why.code());
        }
        // A cookie this service cannot read is left as it is: services of one host share it,
        // and another one (of another secret) may read it; the next sign-in replaces it.
        see_other(&location)
    }
}

impl Session {
    /// The session of a request with `headers` for `uri` (asked with `method`), or the way to
    /// the sign-in page: it comes back to `uri` when that is a page (a form's route answers
    /// only its POST: the browser comes back to the service's root instead).
    pub fn of(
        auth: &Auth,
        method: &axum::http::Method,
        uri: &axum::http::Uri,
        headers: &HeaderMap,
    ) -> Result<Session, SignIn> {
        let next = match *method {
            axum::http::Method::GET | axum::http::Method::HEAD => uri
                .path_and_query()
                .map(|p| p.as_str().to_string())
                .unwrap_or_else(|| "/".into()),
            _ => "/".into(),
        };
        let Some(token) = cookie_token(headers) else {
            return Err(SignIn {
                why: SignInNeeded::NoSession,
                next,
            });
        };
        match auth.check(token) {
            Ok(principal) => Ok(Session {
                principal,
                token: token.to_string(),
            }),
            Err(e) => Err(SignIn {
                why: if e.message.contains("expired") {
                    SignInNeeded::Expired
                } else {
                    SignInNeeded::Invalid
                },
                next,
            }),
        }
    }
}

impl<S: HasAuth + Send + Sync> FromRequestParts<S> for Session {
    type Rejection = SignIn;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, SignIn> {
        Session::of(state.auth(), &parts.method, &parts.uri, &parts.headers)
    }
}

/// A page's answer: HTML with the pages' headers.
pub fn html(status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    response
}

/// 303 to `location` (after a form: the browser asks the page again with GET).
pub fn see_other(location: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

/// `text` with the five characters HTML gives meaning to escaped: safe in text and in quoted
/// attributes.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `text` percent-encoded for a query string's value.
pub fn encode_component(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// `text` percent-encoded for one segment of a path (`/` included).
pub fn encode_segment(text: &str) -> String {
    encode_component(text).replace('/', "%2F")
}

/// Where a sign-in may send the browser: a path of this service, else its root. Refuses what
/// would leave it (`//host`, `/\host`, a scheme) or is not plain visible ASCII.
pub fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.starts_with("/\\")
                && n.len() <= 2048
                && n.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            n.to_string()
        }
        _ => "/".into(),
    }
}

/// A link in a page's navigation: its text and where it goes.
#[derive(Debug, Clone)]
pub struct Link {
    pub text: String,
    pub href: String,
}

impl Link {
    pub fn new(text: impl Into<String>, href: impl Into<String>) -> Self {
        Link {
            text: text.into(),
            href: href.into(),
        }
    }
}

/// A page in the shared layout.
#[derive(Debug)]
pub struct Page<'a> {
    /// The page's title (escaped here).
    pub title: &'a str,
    /// The service's name, beside the title.
    pub service: &'a str,
    pub nav: &'a [Link],
    /// The session the page is shown to (its account and the sign-out form), if any.
    pub session: Option<(&'a Session, &'a Auth)>,
    /// A message at the top of the page: (`ok` or `error`, text; escaped here).
    pub flash: Option<(&'a str, &'a str)>,
    /// The page's body, HTML already escaped where it must be.
    pub body: String,
}

impl Page<'_> {
    pub fn render(&self) -> String {
        let mut nav = String::new();
        for link in self.nav {
            let _ = write!(
                nav,
                "<a href=\"{}\">{}</a>",
                escape(&link.href),
                escape(&link.text)
            );
        }
        let account = match self.session {
            Some((session, auth)) => format!(
                "<form class=\"signout\" method=\"post\" action=\"/sign-out\">{}\
                 <span>{} ({})</span> <button type=\"submit\">Sign out</button></form>",
                session.form_field(auth),
                escape(&session.principal.name),
                if session.is_admin() {
                    "admin"
                } else {
                    "read only"
                },
            ),
            None => String::new(),
        };
        let flash = match self.flash {
            Some((kind, text)) => format!(
                "<p class=\"flash {}\" role=\"{}\">{}</p>",
                if kind == "error" { "error" } else { "ok" },
                if kind == "error" { "alert" } else { "status" },
                escape(text)
            ),
            None => String::new(),
        };
        format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
             <link rel=\"icon\" href=\"data:,\">\
             <title>{title} · Vigie {service}</title><style>{STYLE}</style>\
             <script src=\"/console.js\" defer></script></head><body>\
             <header><strong>Vigie</strong> <span class=\"service\">{service}</span>\
             <nav>{nav}</nav>{account}</header><main><h1>{title}</h1>{flash}{body}</main>\
             </body></html>",
            title = escape(self.title),
            service = escape(self.service),
            body = self.body,
        )
    }
}

/// The pages' style: system fonts, no external resource.
pub const STYLE: &str = "\
body{font-family:system-ui,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}\
header{display:flex;gap:1.2em;align-items:center;flex-wrap:wrap;padding:.6em 1.2em;background:#1d2330;color:#fff}\
header a{color:#cfe0ff;margin-right:1em}header nav{flex:1}.service{color:#9fb3d1}\
.signout span{margin-right:.5em}main{padding:1em 1.5em;max-width:1200px}\
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.6em}\
section.card{background:#fff;border:1px solid #d9dde5;border-radius:6px;padding:1em 1.2em;margin:1em 0}\
table{border-collapse:collapse;margin:.5em 0}th,td{border-bottom:1px solid #e3e6ec;padding:.25em .6em;text-align:left;vertical-align:top}\
.flash{padding:.6em 1em;border-radius:4px}.flash.ok{background:#e3f4e6}.flash.error{background:#fbe3e3}\
.drifted{color:#b3261e;font-weight:600}.steady{color:#1e6b34}.muted{color:#667085}\
form.inline{display:inline}label{display:inline-block;min-width:9em}\
fieldset{border:1px solid #d9dde5;border-radius:4px;margin:.6em 0}\
input,select,button{font:inherit;margin:.2em 0}button{cursor:pointer}\
:focus-visible{outline:3px solid #2f6fde;outline-offset:2px}\
.figures{display:flex;gap:2em;flex-wrap:wrap}.figure b{display:block;font-size:1.5em}\
svg text{font-size:11px;fill:#475467}";

#[derive(Debug, Deserialize)]
struct SignInQuery {
    next: Option<String>,
    why: Option<String>,
}

#[derive(Debug, Deserialize)]
struct SignInForm {
    username: String,
    password: String,
    next: Option<String>,
}

#[derive(Debug, Deserialize)]
struct SignOutForm {
    form_token: String,
}

/// What every service's pages share: `/sign-in`, `/sign-out`, `/console.js`.
pub fn routes<S>() -> Router<S>
where
    S: HasAuth + Clone + Send + Sync + 'static,
{
    Router::new()
        .route("/sign-in", get(sign_in_page::<S>).post(sign_in::<S>))
        .route("/sign-out", axum::routing::post(sign_out::<S>))
        .route("/console.js", get(script))
}

async fn script() -> Response {
    let mut response = SCRIPT.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/javascript; charset=utf-8"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("max-age=300"),
    );
    response
}

/// The sign-in form, with what brought the browser here.
fn sign_in_form(next: &str, username: &str, message: Option<(&str, &str)>) -> String {
    Page {
        title: "Sign in",
        service: "",
        nav: &[],
        session: None,
        flash: message,
        body: format!(
            "<section class=\"card\"><form method=\"post\" action=\"/sign-in\">\
             <input type=\"hidden\" name=\"next\" value=\"{next}\">\
             <p><label for=\"username\">User name</label> <input id=\"username\" name=\"username\" \
             autocomplete=\"username\" required autofocus value=\"{username}\"></p>\
             <p><label for=\"password\">Password</label> <input id=\"password\" name=\"password\" \
             type=\"password\" autocomplete=\"current-password\" required></p>\
             <p><button type=\"submit\">Sign in</button></p></form>\
             <p class=\"muted\">The accounts are those of the API: <code>vigie up</code> prints \
             the first admin's password; <code>vigie users add</code> makes more.</p></section>",
            next = escape(next),
            username = escape(username),
        ),
    }
    .render()
}

async fn sign_in_page<S: HasAuth + Send + Sync>(
    State(state): State<S>,
    headers: HeaderMap,
    Query(query): Query<SignInQuery>,
) -> Response {
    let next = safe_next(query.next.as_deref());
    let signed_in = cookie_token(&headers).and_then(|t| state.auth().check(t).ok());
    let message = match (query.why.as_deref(), &signed_in) {
        (_, Some(p)) => Some(("ok", format!("Signed in as {}.", p.name))),
        (Some("expired"), None) => Some(("error", "Your session has expired: sign in again.".into())),
        (Some("invalid"), None) => Some((
            "error",
            "Your session is not valid here (tampered with, or its account changed): sign in again."
                .into(),
        )),
        (Some("signed_out"), None) => Some(("ok", "Signed out.".into())),
        _ => None,
    };
    html(
        StatusCode::OK,
        sign_in_form(&next, "", message.as_ref().map(|(k, t)| (*k, t.as_str()))),
    )
}

async fn sign_in<S: HasAuth + Send + Sync>(
    State(state): State<S>,
    ClientAddress(address): ClientAddress,
    headers: HeaderMap,
    form: Result<Form<SignInForm>, FormRejection>,
) -> Response {
    let page = |status: StatusCode, next: &str, username: &str, message: &str| {
        html(
            status,
            sign_in_form(next, username, Some(("error", message))),
        )
    };
    if let Err(e) = check_origin(&headers) {
        return page(StatusCode::FORBIDDEN, "/", "", &e.message);
    }
    let Form(form) = match form {
        Ok(form) => form,
        Err(r) => {
            let text = r.body_text();
            let missing = ["username", "password"]
                .into_iter()
                .find(|f| text.contains(&format!("missing field `{f}`")));
            let message = match missing {
                Some(field) => format!("The form has no {field}."),
                None => format!("The form cannot be read: {text}"),
            };
            return page(StatusCode::UNPROCESSABLE_ENTITY, "/", "", &message);
        }
    };
    let next = safe_next(form.next.as_deref());
    let auth = state.auth();
    match auth.login(&form.username, &form.password, address).await {
        Ok(Some((name, role))) => match auth.issue(&name, role) {
            Ok(token) => {
                tracing::info!(user = %name, "signed in to the pages");
                let mut response = see_other(&next);
                let secure = headers
                    .get("x-forwarded-proto")
                    .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"));
                let cookie = format!(
                    "{COOKIE}={token}; Path=/; Max-Age={}; HttpOnly; SameSite=Strict{}",
                    auth.ttl().as_secs(),
                    if secure { "; Secure" } else { "" }
                );
                if let Ok(value) = HeaderValue::from_str(&cookie) {
                    response.headers_mut().insert(header::SET_COOKIE, value);
                }
                response
            }
            Err(e) => page(e.status, &next, &form.username, &e.message),
        },
        Ok(None) => page(
            StatusCode::UNAUTHORIZED,
            &next,
            &form.username,
            "Wrong user name or password.",
        ),
        Err(e) => {
            let mut response = page(e.status, &next, &form.username, &e.message);
            if let Some(seconds) = e.retry_after
                && let Ok(value) = HeaderValue::from_str(&seconds.to_string())
            {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            response
        }
    }
}

async fn sign_out<S: HasAuth + Send + Sync>(
    State(state): State<S>,
    session: Session,
    headers: HeaderMap,
    form: Result<Form<SignOutForm>, FormRejection>,
) -> Response {
    let token = form.map(|Form(f)| f.form_token).unwrap_or_default();
    if let Err(e) = session.check_form(state.auth(), &headers, &token) {
        return html(
            e.status,
            sign_in_form("/", "", Some(("error", e.message.as_str()))),
        );
    }
    tracing::info!(user = %session.principal.name, "signed out of the pages");
    let mut response = see_other("/sign-in?why=signed_out");
    response
        .headers_mut()
        .insert(header::SET_COOKIE, clear_cookie());
    response
}

fn clear_cookie() -> HeaderValue {
    HeaderValue::from_static("vigie_session=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_paths_of_this_service_are_followed_after_sign_in() {
        assert_eq!(
            safe_next(Some("/v1/drift/report?model=a")),
            "/v1/drift/report?model=a"
        );
        for bad in [
            "//evil.example",
            "/\\evil.example",
            "https://evil.example",
            "",
            "/a b",
        ] {
            assert_eq!(safe_next(Some(bad)), "/", "{bad}");
        }
        assert_eq!(safe_next(None), "/");
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; vigie_session=tok; b=2"),
        );
        assert_eq!(cookie_token(&headers), Some("tok"));
        headers.insert(header::COOKIE, HeaderValue::from_static("vigie_session="));
        assert_eq!(cookie_token(&headers), None);
    }

    #[test]
    fn a_form_from_another_site_is_refused() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8081"));
        assert!(check_origin(&headers).is_ok());
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:8081"),
        );
        assert!(check_origin(&headers).is_ok());
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://evil.example"),
        );
        assert!(check_origin(&headers).is_err());
        headers.insert(header::ORIGIN, HeaderValue::from_static("null"));
        assert!(check_origin(&headers).is_err());
        headers.remove(header::ORIGIN);
        headers.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(check_origin(&headers).is_err());
        headers.insert("sec-fetch-site", HeaderValue::from_static("same-origin"));
        assert!(check_origin(&headers).is_ok());
    }

    #[test]
    fn text_is_escaped_for_html() {
        assert_eq!(
            escape("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        assert_eq!(encode_component("/a?b=c&d"), "/a%3Fb%3Dc%26d");
        assert_eq!(encode_segment("km/h"), "km%2Fh");
    }
}
