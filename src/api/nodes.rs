//! `GET /api/v1/nodes` (admins, auditors): the nodes sharing this catalog — id, version, host,
//! API address, start, last heartbeat, liveness (`alive`, `stopped`, `lost`) and the job leases
//! each holds — so an operator sees which node died and whether its jobs were taken over.

use axum::Json;
use axum::extract::State;

use super::auth::Caller;
use super::{ApiError, AppState};

/// `GET /api/v1/nodes` → `{"items": [...]}`.
#[utoipa::path(
    get,
    path = "/nodes",
    tag = "admin",
    operation_id = "list_nodes",
    summary = "The nodes sharing this catalog",
    description = "Id, version, host, API address, start, last heartbeat, liveness (`alive`, `stopped`, `lost`) and the \
                   job leases each holds (admin, auditor): `{\"items\": [...]}`.",
    responses(
        (status = 200, description = "The nodes", body = Object),
        (status = 403, description = "Not an admin or auditor", body = super::error::ErrorBody),
    ),
)]
pub async fn list(State(st): State<AppState>, caller: Caller) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(&["admin", "auditor"])?;
    let nodes = st.catalog.nodes().await?;
    st.metrics.set_nodes(&nodes);
    Ok(Json(serde_json::json!({"items": nodes})))
}
