//! The HTTP API (axum): health, readiness and metrics without auth; everything under `/api/v1`
//! behind bearer tokens. The router is built apart from the server so tests can drive it.

pub mod access;
mod audit;
pub mod auth;
mod cases;
mod console;
pub mod error;
mod events;
mod media;
mod nodes;
pub mod oidc;
pub mod openapi;
mod principals;
mod recordings;
mod retention;
mod updates;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use error::ApiError;

use crate::catalog::Catalog;
use crate::metrics::Metrics;
use crate::store::ObjectStore;

/// The request parsers of the recording routes, for the fuzz targets in `fuzz/` (not a stable
/// API): the search filter and its parameters, and the `Range` header of every byte route with
/// the rule that decides whether a ranged request is audited.
#[doc(hidden)]
pub mod fuzzing {
    pub use super::recordings::{FILTER_KEYS, filter_from, later_range_request, parse_limit, parse_time, requested_range};
}

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    /// The catalog.
    pub catalog: Arc<dyn Catalog>,
    /// The store.
    pub store: Arc<dyn ObjectStore>,
    /// Metrics to render.
    pub metrics: Arc<Metrics>,
    /// Retention rules (for `retention_until` on recordings).
    pub policy: Arc<crate::retention::Policy>,
    /// The store locks originals (`store.object_lock` on): hold and category changes queue a
    /// `worm_lock` job.
    pub worm: bool,
    /// OIDC verifier when `[oidc]` is configured: bearer JWTs from the agency's identity provider.
    pub oidc: Option<std::sync::Arc<oidc::OidcVerifier>>,
    /// Console sessions and signed access-grant URLs.
    pub access: Arc<access::AccessSettings>,
}

/// The `/api/v1` routes, each registered from its handler's `#[utoipa::path]` annotation by
/// `routes!` (handlers of one path together), so the method and path the router serves are the
/// ones [`openapi::document`] describes. Register routes here only through `routes!`.
pub(crate) fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(recordings::list))
        .routes(routes!(recordings::get_one, updates::patch))
        .routes(routes!(updates::classify))
        .routes(routes!(updates::set_category, updates::clear_category))
        .routes(routes!(updates::place_hold, updates::lift_hold))
        .routes(routes!(recordings::original))
        .routes(routes!(access::grant_access))
        .routes(routes!(access::list_grants))
        .routes(routes!(access::put_grant, access::delete_grant))
        .routes(routes!(access::whoami, access::sign_in, access::sign_out))
        .routes(routes!(audit::list))
        .routes(routes!(recordings::custody))
        .routes(routes!(media::proxy))
        .routes(routes!(media::poster))
        .routes(routes!(media::create_clip))
        .routes(routes!(media::get_clip))
        .routes(routes!(media::clip_media))
        .routes(routes!(cases::list, cases::create))
        .routes(routes!(cases::get_one, cases::update, cases::put))
        .routes(routes!(cases::recordings))
        .routes(routes!(cases::link, cases::unlink))
        .routes(routes!(keys))
        .routes(routes!(retention::list))
        .routes(routes!(retention::get_one))
        .routes(routes!(retention::approve))
        .routes(routes!(retention::batches))
        .routes(routes!(retention::certificate))
        .routes(routes!(retention::certificate_html))
        .routes(routes!(retention::report))
        .routes(routes!(checkpoints))
        .routes(routes!(events::stream))
        .routes(routes!(nodes::list))
        .routes(routes!(principals::list, principals::create))
        .routes(routes!(principals::get_one, principals::revoke))
        .routes(routes!(openapi::serve))
        // Unknown /api routes still demand a valid token first: nothing under /api answers
        // an unauthenticated caller with anything but 401.
        .fallback(|_caller: auth::Caller| async { ApiError::NotFound })
}

/// Builds the router.
pub fn router(state: AppState) -> Router {
    let (api, _) = api_routes().split_for_parts();
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .merge(console::routes())
        .nest("/api/v1", api)
        .layer(tower_http::limit::RequestBodyLimitLayer::new(1 << 20))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(StatusCode::SERVICE_UNAVAILABLE, Duration::from_secs(30)))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}

/// The nodes' public signing keys (SPKI PEM), for anyone checking checkpoints: any valid token.
#[utoipa::path(
    get,
    path = "/keys",
    tag = "custody",
    operation_id = "list_node_keys",
    summary = "The nodes' signing keys",
    description = "The public keys (SPKI PEM) the nodes sign checkpoints with, for anyone checking them: `{\"keys\": [...]}`.",
    responses((status = 200, description = "The keys", body = Object)),
)]
async fn keys(_caller: auth::Caller, State(st): State<AppState>) -> Result<axum::Json<serde_json::Value>, ApiError> {
    Ok(axum::Json(serde_json::json!({ "keys": st.catalog.node_keys().await? })))
}

/// Signed checkpoints of the custody chain head (body and base64 signature): any valid token.
#[utoipa::path(
    get,
    path = "/checkpoints",
    tag = "custody",
    operation_id = "list_checkpoints",
    summary = "Signed checkpoints",
    description = "Signed checkpoints of the custody chain head (body and base64 signature): `{\"checkpoints\": [...]}`.",
    responses((status = 200, description = "The checkpoints", body = Object)),
)]
async fn checkpoints(_caller: auth::Caller, State(st): State<AppState>) -> Result<axum::Json<serde_json::Value>, ApiError> {
    Ok(axum::Json(serde_json::json!({ "checkpoints": st.catalog.checkpoints().await? })))
}

/// Ready when the catalog and the store answer.
async fn readyz(State(st): State<AppState>) -> impl IntoResponse {
    let (catalog, store) = tokio::join!(
        tokio::time::timeout(Duration::from_secs(5), st.catalog.ping()),
        tokio::time::timeout(Duration::from_secs(5), st.store.check())
    );
    let c = match catalog {
        Ok(Ok(())) => "ok".to_string(),
        Ok(Err(e)) => e.to_string(),
        Err(_) => "timed out".into(),
    };
    let s = match store {
        Ok(Ok(())) => "ok".to_string(),
        Ok(Err(e)) => e.to_string(),
        Err(_) => format!("{} timed out", st.store.describe()),
    };
    let status = if c == "ok" && s == "ok" { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, axum::Json(serde_json::json!({"catalog": c, "store": s})))
}

async fn metrics(State(st): State<AppState>) -> impl IntoResponse {
    if let Ok(d) = st.catalog.queue_depth().await {
        st.metrics.jobs_queued.set(d.queued);
        st.metrics.jobs_running.set(d.running);
    }
    if let Ok(n) = st.catalog.nodes().await {
        st.metrics.set_nodes(&n);
    }
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], st.metrics.render())
}
