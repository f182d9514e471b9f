//! The interactive API docs page: Swagger UI, compiled into the binary (the `vendored`
//! build of utoipa-swagger-ui), reading the service's `/openapi.json`. No CDN: it works on a
//! network with no internet.

use axum::Router;
use utoipa_swagger_ui::{Config, SwaggerUi};

/// Serves Swagger UI at `/docs`, pointed at `openapi_url`.
pub fn routes<S>(openapi_url: &'static str) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    let ui = SwaggerUi::new("/docs").config(
        Config::from(openapi_url)
            .try_it_out_enabled(true)
            .persist_authorization(true),
    );
    Router::from(ui)
}
