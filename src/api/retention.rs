//! The destruction queue for archivists: `GET /destructions[?state=]`, `GET /destructions/{id}`
//! and `POST /destructions/{id}/approve {"reason"}`. Approval by the same archivist twice is
//! refused (409); the retention worker destroys an entry once its grace period is over and it has
//! the configured number of distinct approvals.

use std::collections::HashMap;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use serde::Deserialize;

use super::auth::Caller;
use super::{ApiError, AppState};
use crate::catalog::Destruction;

/// `GET /api/v1/destructions?state=pending|destroyed|cancelled`.
pub async fn list(
    State(st): State<AppState>,
    caller: Caller,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(&["archivist", "auditor"])?;
    let state = q.get("state").map(String::as_str);
    if let Some(s) = state {
        if !["pending", "destroyed", "cancelled"].contains(&s) {
            return Err(ApiError::bad("invalid_parameter", "state: expected pending, destroyed or cancelled"));
        }
    }
    if let Some(k) = q.keys().find(|k| *k != "state") {
        return Err(ApiError::bad("unknown_parameter", format!("unknown parameter {k:?}")));
    }
    let items = st.catalog.destructions(state, 10_000).await?;
    Ok(Json(serde_json::json!({ "items": items, "approvals_required": st.policy.approvals })))
}

/// `GET /api/v1/destructions/{id}`.
pub async fn get_one(State(st): State<AppState>, caller: Caller, Path(id): Path<String>) -> Result<Json<Destruction>, ApiError> {
    caller.require(&["archivist", "auditor"])?;
    Ok(Json(st.catalog.destruction(&id).await.map_err(|_| ApiError::missing("destruction_not_found", format!("no destruction {id}")))?))
}

/// Body of an approval.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Approve {
    /// Why (required).
    reason: Option<String>,
}

/// `POST /api/v1/destructions/{id}/approve`.
pub async fn approve(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<Json<Approve>, JsonRejection>,
) -> Result<Json<Destruction>, ApiError> {
    caller.require(&["archivist"])?;
    let Json(a) = body.map_err(|e| ApiError::bad("invalid_body", e.body_text()))?;
    let reason = super::updates::reason(a.reason, true)?.unwrap_or_default();
    st.catalog.destruction(&id).await.map_err(|_| ApiError::missing("destruction_not_found", format!("no destruction {id}")))?;
    Ok(Json(st.catalog.approve_destruction(&id, &caller.0.name, &reason).await?))
}
