//! The contract every Vigie HTTP service keeps, written once.
//!
//! A service is its own state `T` (served models, drift windows, retraining runs...) inside a
//! [`Shared<T>`], which adds what every service has: the accounts and tokens ([`Auth`]), the
//! registry, the metrics every service exports ([`ServiceMetrics`]), the last dependency check
//! ([`Dependencies`]) and the wake-up of its registry follower. `T` implements [`Service`]:
//! what it follows in the registry, how it checks the broker, when it is ready, and its
//! OpenAPI document.
//!
//! [`router`] wraps the service's own routes in the shell every service answers with:
//! `/health`, `/ready`, `/metrics`, `/openapi.json`, `/docs`, the account routes, the request
//! id and HTTP metrics layers, and JSON errors (the 404 and every error axum answers itself).
//! [`serve`] runs that router with the registry follower ([`Shared::follow`]) until shutdown,
//! on the server of [`crate::server`] and within the service's connection limits.

use std::future::Future;
use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::middleware::{from_fn, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use prometheus::{IntCounterVec, IntGauge, Opts, Registry as MetricsRegistry};
use serde::Serialize;
use serde_json::{Map, Value};
use tokio::sync::Notify;
use vigie_registry::Registry;

use crate::auth::{Auth, HasAuth};
use crate::layers::HttpMetrics;
use crate::server::Limits;

/// What a service does beyond the shell; implemented by its own state.
pub trait Service: Send + Sync + Sized + 'static {
    /// Reads what the service follows in the registry (production versions, references...).
    /// Runs on every poll, before the accounts are read again.
    fn sync(state: &Shared<Self>)
    -> impl Future<Output = Result<(), vigie_registry::Error>> + Send;

    /// Checks that the broker answers and holds the service's topic: `Err` says what is
    /// wrong. Runs on every poll.
    fn check_broker(state: &Shared<Self>) -> impl Future<Output = Result<(), String>> + Send;

    /// Whether the service can do its work, and what `/ready` shows beside.
    fn readiness(state: &Shared<Self>) -> impl Future<Output = Readiness> + Send;

    /// The service's OpenAPI document (see [`crate::openapi::Document`]).
    fn openapi(state: &Shared<Self>) -> Value;

    /// Runs before `/metrics` is encoded: gauges read on demand are set here.
    fn before_scrape(_state: &Shared<Self>) {}
}

/// What `/ready` answers: 200 with `ready`, else 503 with the reason; `details` are the
/// service's own fields, shown beside the status and the dependencies.
#[derive(Debug, Clone, Default)]
pub struct Readiness {
    pub ready: bool,
    /// Why the service is not ready (`null` when it is).
    pub reason: Option<String>,
    pub details: Map<String, Value>,
}

impl Readiness {
    /// Ready when `reason` is `None`.
    pub fn new(reason: Option<String>, details: Value) -> Self {
        Readiness {
            ready: reason.is_none(),
            reason,
            details: match details {
                Value::Object(map) => map,
                _ => Map::new(),
            },
        }
    }
}

/// What the last dependency check found: `ok`, or what is wrong.
#[derive(Debug, Clone, Serialize)]
pub struct Dependencies {
    pub database: String,
    pub broker: String,
    pub checked_at: Option<DateTime<Utc>>,
}

/// The metrics every service exports, in the registry its own metrics join.
#[derive(Debug, Clone)]
pub struct ServiceMetrics {
    pub registry: MetricsRegistry,
    pub http: HttpMetrics,
    /// 1 when the registry database answered the last check.
    pub database_up: IntGauge,
    /// 1 when the broker answered the last check and holds the service's topic.
    pub broker_up: IntGauge,
    /// Logins by outcome: ok, refused (wrong name or password), throttled (429).
    pub logins: IntCounterVec,
}

impl ServiceMetrics {
    pub fn new() -> prometheus::Result<Self> {
        let registry = MetricsRegistry::new();
        let gauge = |name: &str, help: &str| -> prometheus::Result<IntGauge> {
            let g = IntGauge::new(name, help)?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        Ok(ServiceMetrics {
            http: HttpMetrics::register(&registry)?,
            database_up: gauge(
                "vigie_database_up",
                "1 when the registry database answered the last check",
            )?,
            broker_up: gauge(
                "vigie_broker_up",
                "1 when the Kafka broker answered the last check and holds the service's topic",
            )?,
            logins: {
                let c = IntCounterVec::new(
                    Opts::new(
                        "vigie_logins_total",
                        "Logins by outcome: ok, refused (wrong name or password), throttled (too many failures)",
                    ),
                    &["outcome"],
                )?;
                registry.register(Box::new(c.clone()))?;
                c
            },
            registry,
        })
    }
}

/// What every service is started with: the binary's shared flags, or `vigie up`'s defaults.
#[derive(Clone)]
pub struct Common {
    pub registry: Registry,
    /// Kafka bootstrap servers (`host:port,...`).
    pub brokers: String,
    /// The secret that signs and checks tokens: the same for every service.
    pub jwt_secret: String,
    /// How long issued tokens live.
    pub token_ttl: Duration,
    /// How often the registry, the accounts and the broker are checked.
    pub poll_interval: Duration,
    /// Timeouts and the most connections at once.
    pub limits: Limits,
}

impl std::fmt::Debug for Common {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Common")
            .field("brokers", &self.brokers)
            .field("jwt_secret", &"(hidden)")
            .field("token_ttl", &self.token_ttl)
            .field("poll_interval", &self.poll_interval)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Common {
    /// A service's [`Base`]: its metrics registry and the accounts, read once now.
    pub async fn base(&self) -> Result<Base, String> {
        let metrics =
            ServiceMetrics::new().map_err(|e| format!("cannot register the metrics: {e}"))?;
        let auth = Auth::new(
            self.jwt_secret.as_bytes(),
            self.token_ttl,
            self.registry.clone(),
        )
        .await?;
        let mut base = Base::new(auth, self.registry.clone(), metrics, self.poll_interval);
        base.limits = self.limits;
        Ok(base)
    }
}

/// What every service holds beside its own state.
pub struct Base {
    pub auth: Auth,
    pub registry: Registry,
    pub metrics: ServiceMetrics,
    /// How often the registry, the accounts and the broker are checked.
    pub poll_interval: Duration,
    /// Timeouts and the most connections at once ([`Limits::default`] unless set).
    pub limits: Limits,
    dependencies: ArcSwap<Dependencies>,
    wake: Arc<Notify>,
}

impl std::fmt::Debug for Base {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Base")
            .field("auth", &self.auth)
            .field("poll_interval", &self.poll_interval)
            .finish_non_exhaustive()
    }
}

impl Base {
    pub fn new(
        auth: Auth,
        registry: Registry,
        metrics: ServiceMetrics,
        poll_interval: Duration,
    ) -> Self {
        auth.count_logins_in(metrics.logins.clone());
        Base {
            auth,
            registry,
            metrics,
            poll_interval,
            limits: Limits::default(),
            dependencies: ArcSwap::from_pointee(Dependencies {
                database: "not checked yet".into(),
                broker: "not checked yet".into(),
                checked_at: None,
            }),
            wake: Arc::new(Notify::new()),
        }
    }
}

/// A service's state: [`Base`] and its own part `T`, behind one `Arc` (cheap to clone, as
/// axum's state is cloned per request). Derefs to `T`.
pub struct Shared<T>(Arc<Parts<T>>);

struct Parts<T> {
    base: Base,
    own: T,
}

impl<T> Clone for Shared<T> {
    fn clone(&self) -> Self {
        Shared(Arc::clone(&self.0))
    }
}

impl<T> Deref for Shared<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0.own
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for Shared<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("base", &self.0.base)
            .field("own", &self.0.own)
            .finish()
    }
}

impl<T> HasAuth for Shared<T> {
    fn auth(&self) -> &Auth {
        &self.0.base.auth
    }
}

impl<T> Shared<T> {
    pub fn new(base: Base, own: T) -> Self {
        Shared(Arc::new(Parts { base, own }))
    }

    pub fn base(&self) -> &Base {
        &self.0.base
    }

    pub fn registry(&self) -> &Registry {
        &self.0.base.registry
    }

    pub fn service_metrics(&self) -> &ServiceMetrics {
        &self.0.base.metrics
    }

    /// What the last poll found.
    pub fn dependencies(&self) -> Arc<Dependencies> {
        self.0.base.dependencies.load_full()
    }

    /// Wakes the registry follower before its next tick (a model event arrived).
    pub fn wake(&self) {
        self.0.base.wake.notify_one();
    }

    /// The follower's wake-up, for a thread that outlives no request (the model events).
    pub fn waker(&self) -> Arc<Notify> {
        Arc::clone(&self.0.base.wake)
    }
}

impl<T: Service> Shared<T> {
    /// One round of the follower: what the service follows in the registry, the accounts,
    /// then the broker; the outcome goes to `/ready` and to the `_up` gauges.
    pub async fn poll(&self) {
        let database = match T::sync(self).await {
            Ok(()) => self.auth().refresh().await,
            Err(e) => Err(e),
        };
        let database = match database {
            Ok(()) => "ok".to_string(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the registry; what is loaded stays");
                format!("unreachable: {e}")
            }
        };
        let broker = match T::check_broker(self).await {
            Ok(()) => "ok".to_string(),
            Err(why) => why,
        };
        let metrics = self.service_metrics();
        metrics.database_up.set(i64::from(database == "ok"));
        metrics.broker_up.set(i64::from(broker == "ok"));
        self.0.base.dependencies.store(Arc::new(Dependencies {
            database,
            broker,
            checked_at: Some(Utc::now()),
        }));
    }

    /// Polls every poll interval, and at once when woken, until the task is dropped.
    pub async fn follow(self) {
        let wake = self.waker();
        every(self.base().poll_interval, Some(&wake), || self.poll()).await;
    }
}

/// Runs `round` every `interval` (the first at once), and also as soon as `wake` is notified,
/// until the task is dropped. A round that overruns delays the next tick rather than
/// bunching the missed ones.
pub async fn every<F, Fut>(interval: Duration, wake: Option<&Notify>, mut round: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        match wake {
            Some(wake) => tokio::select! {
                _ = tick.tick() => {}
                _ = wake.notified() => tracing::debug!("woken: polling now"),
            },
            None => {
                tick.tick().await;
            }
        }
        round().await;
    }
}

/// Largest body of the account routes (a login form, a new account).
const ACCOUNT_BODY_BYTES: usize = 64 * 1024;
/// Longest time an account route may take (a password hash takes tens of milliseconds).
const ACCOUNT_TIMEOUT: Duration = Duration::from_secs(10);

/// The whole HTTP surface of a service: its own routes inside the shell.
pub fn router<T: Service>(state: Shared<T>, own: Router<Shared<T>>) -> Router {
    let accounts = crate::auth::routes()
        .merge(crate::console::routes())
        .layer(DefaultBodyLimit::max(ACCOUNT_BODY_BYTES))
        .route_layer(from_fn_with_state(ACCOUNT_TIMEOUT, crate::layers::timeout));
    let http = state.service_metrics().http.clone();
    own.merge(accounts)
        .route("/health", get(health))
        .route("/ready", get(ready::<T>))
        .route("/metrics", get(metrics::<T>))
        .route("/openapi.json", get(openapi::<T>))
        .route_layer(from_fn_with_state(http, crate::layers::track))
        .merge(crate::docs::routes("/openapi.json"))
        .fallback(crate::error::not_found)
        .layer(from_fn(crate::layers::json_errors))
        .layer(from_fn(crate::layers::request_id))
        .with_state(state)
}

async fn health() -> Json<Value> {
    Json(serde_json::json!({"status": "ok"}))
}

async fn ready<T: Service>(State(state): State<Shared<T>>) -> Response {
    let readiness = T::readiness(&state).await;
    let mut body = Map::new();
    body.insert(
        "status".into(),
        Value::from(if readiness.ready {
            "ready"
        } else {
            "not_ready"
        }),
    );
    body.insert("reason".into(), Value::from(readiness.reason));
    body.extend(readiness.details);
    body.insert(
        "dependencies".into(),
        serde_json::to_value(&*state.dependencies()).unwrap_or_default(),
    );
    let status = if readiness.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(Value::Object(body))).into_response()
}

async fn metrics<T: Service>(State(state): State<Shared<T>>) -> Response {
    T::before_scrape(&state);
    crate::metrics_response(&state.service_metrics().registry)
}

async fn openapi<T: Service>(State(state): State<Shared<T>>) -> Json<Value> {
    Json(T::openapi(&state))
}

/// Binds `address`, or says which address could not be taken.
pub async fn bind(address: &str) -> Result<tokio::net::TcpListener, String> {
    tokio::net::TcpListener::bind(address)
        .await
        .map_err(|e| format!("cannot listen on {address}: {e}"))
}

/// The URL a listener answers on.
pub fn url(listener: &tokio::net::TcpListener) -> String {
    match listener.local_addr() {
        Ok(addr) => format!("http://{addr}"),
        Err(_) => "http://?".into(),
    }
}

/// Serves `own` inside the shell, with the registry follower, until `shutdown` resolves;
/// then lets the requests in flight finish and stops the follower.
pub async fn serve<T: Service>(
    listener: tokio::net::TcpListener,
    state: Shared<T>,
    own: Router<Shared<T>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let follower = tokio::spawn(state.clone().follow());
    let limits = state.base().limits;
    let served = crate::server::run(listener, router(state, own), limits, shutdown).await;
    follower.abort();
    served
}
