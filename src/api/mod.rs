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
pub mod oidc;
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

pub use error::ApiError;

use crate::catalog::Catalog;
use crate::metrics::Metrics;
use crate::store::ObjectStore;

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

/// Builds the router.
pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/recordings", get(recordings::list))
        .route("/recordings/{id}", get(recordings::get_one).patch(updates::patch))
        .route("/recordings/{id}/classification", axum::routing::put(updates::classify))
        .route("/recordings/{id}/category", axum::routing::put(updates::set_category).delete(updates::clear_category))
        .route("/recordings/{id}/hold", axum::routing::put(updates::place_hold).delete(updates::lift_hold))
        .route("/recordings/{id}/original", get(recordings::original))
        .route("/recordings/{id}/access", axum::routing::post(access::grant_access))
        .route("/recordings/{id}/grants", get(access::list_grants))
        .route("/recordings/{id}/grants/{principal}", axum::routing::put(access::put_grant).delete(access::delete_grant))
        .route("/session", get(access::whoami).post(access::sign_in).delete(access::sign_out))
        .route("/audit", get(audit::list))
        .route("/recordings/{id}/custody", get(recordings::custody))
        .route("/recordings/{id}/proxy", get(media::proxy))
        .route("/recordings/{id}/poster", get(media::poster))
        .route("/recordings/{id}/clips", axum::routing::post(media::create_clip))
        .route("/clips/{id}", get(media::get_clip))
        .route("/clips/{id}/media", get(media::clip_media))
        .route("/cases", get(cases::list).post(cases::create))
        .route("/cases/{id}", get(cases::get_one).patch(cases::update).put(cases::put))
        .route("/cases/{id}/recordings", get(cases::recordings))
        .route("/cases/{id}/recordings/{rid}", axum::routing::put(cases::link).delete(cases::unlink))
        .route("/keys", get(keys))
        .route("/destructions", get(retention::list))
        .route("/destructions/{id}", get(retention::get_one))
        .route("/destructions/{id}/approve", axum::routing::post(retention::approve))
        .route("/destruction-batches", get(retention::batches))
        .route("/destruction-batches/{batch}/certificate", get(retention::certificate))
        .route("/destruction-batches/{batch}/certificate.html", get(retention::certificate_html))
        .route("/reports/{year}", get(retention::report))
        .route("/checkpoints", get(checkpoints))
        .route("/events", get(events::stream))
        .route("/principals", get(principals::list).post(principals::create))
        .route("/principals/{name}", get(principals::get_one).delete(principals::revoke))
        // Unknown /api routes still demand a valid token first: nothing under /api answers
        // an unauthenticated caller with anything but 401.
        .fallback(|_caller: auth::Caller| async { ApiError::NotFound });
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
async fn keys(_caller: auth::Caller, State(st): State<AppState>) -> Result<axum::Json<serde_json::Value>, ApiError> {
    Ok(axum::Json(serde_json::json!({ "keys": st.catalog.node_keys().await? })))
}

/// Signed checkpoints of the custody chain head (body and base64 signature): any valid token.
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
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], st.metrics.render())
}
