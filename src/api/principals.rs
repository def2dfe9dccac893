//! Principal management for admins: list, create (the token is shown once, in the answer),
//! read and revoke principals. Admin only; admins see no footage. The checks are those of
//! `evidenced token create` ([`auth::new_principal`]); every create and revoke is a `principal`
//! custody event written by the catalog in the same transaction, with the admin's name as actor.
//! No answer ever carries a stored token hash.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::auth::{self, Caller};
use super::{ApiError, AppState};
use crate::catalog::{CatalogError, Principal};

/// Roles that manage principals.
const ADMINS: [&str; 1] = ["admin"];

/// A principal as the API shows it (never its token or token hash).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PrincipalView {
    /// Unique name.
    name: String,
    /// Role.
    role: String,
    /// Unit subtree it covers; empty = the root (everything).
    unit: String,
    /// Officer id (role officer).
    officer: Option<String>,
    /// RFC 3339.
    created_at: String,
    /// RFC 3339, or null: no expiry.
    expires_at: Option<String>,
    /// RFC 3339, or null.
    revoked_at: Option<String>,
    /// `active`, `expired` or `revoked`.
    state: &'static str,
}

impl PrincipalView {
    fn new(p: Principal, now: i64) -> Self {
        let at = crate::custody::format_at;
        PrincipalView {
            state: auth::principal_state(&p, now),
            created_at: at(p.created_at),
            expires_at: p.expires_at.map(at),
            revoked_at: p.revoked_at.map(at),
            name: p.name,
            role: p.role,
            unit: p.unit,
            officer: p.officer,
        }
    }
}

/// Body of `POST /api/v1/principals`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePrincipal {
    /// Unique name.
    name: String,
    /// officer, supervisor, archivist, auditor or admin.
    role: String,
    /// Unit subtree (default: everything).
    #[serde(default)]
    unit: String,
    /// Officer id (role officer; default: the name).
    officer: Option<String>,
    /// Lifetime such as `90d` (default: no expiry).
    expires: Option<String>,
}

/// The principals (for the API description).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct PrincipalList {
    /// By name.
    items: Vec<PrincipalView>,
}

/// A new principal and its token (for the API description).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct NewPrincipal {
    /// The principal.
    principal: PrincipalView,
    /// Its bearer token (`evd_…`), shown only this once.
    token: String,
}

fn not_found(name: &str) -> ApiError {
    ApiError::missing("principal_not_found", format!("no principal {name:?}"))
}

async fn find(st: &AppState, name: &str) -> Result<Principal, ApiError> {
    st.catalog.principals().await?.into_iter().find(|p| p.name == name).ok_or_else(|| not_found(name))
}

/// `GET /api/v1/principals`: `{"items": [...]}` by name.
#[utoipa::path(
    get,
    path = "/principals",
    tag = "admin",
    operation_id = "list_principals",
    summary = "List principals",
    description = "Admin only; never any token or token hash.",
    responses(
        (status = 200, description = "The principals", body = PrincipalList),
        (status = 403, description = "Not an admin", body = super::error::ErrorBody),
    ),
)]
pub async fn list(caller: Caller, State(st): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(&ADMINS)?;
    let now = crate::catalog::now_micros();
    let items: Vec<PrincipalView> = st.catalog.principals().await?.into_iter().map(|p| PrincipalView::new(p, now)).collect();
    Ok(Json(serde_json::json!({ "items": items })))
}

/// `POST /api/v1/principals`: 201 `{"principal", "token"}` (the only time the token is shown);
/// 409 `principal_exists`; 400 `invalid_name|role|unit|officer|expires` or `invalid_body`.
#[utoipa::path(
    post,
    path = "/principals",
    tag = "admin",
    operation_id = "create_principal",
    summary = "Create a principal",
    description = "Admin only; custody `principal`. The answer carries the token, the only time it is shown.",
    request_body = CreatePrincipal,
    responses(
        (status = 201, description = "The principal and its token", body = NewPrincipal),
        (status = 400, description = "`invalid_name`, `invalid_role`, `invalid_unit`, `invalid_officer`, `invalid_expires` or \
                                      `invalid_body`", body = super::error::ErrorBody),
        (status = 403, description = "Not an admin", body = super::error::ErrorBody),
        (status = 409, description = "`principal_exists`", body = super::error::ErrorBody),
    ),
)]
pub async fn create(
    caller: Caller,
    State(st): State<AppState>,
    body: Result<Json<CreatePrincipal>, JsonRejection>,
) -> Result<Response, ApiError> {
    caller.require(&ADMINS)?;
    let Json(req) = body.map_err(ApiError::from)?;
    let p = auth::new_principal(&req.name, &req.role, &req.unit, req.officer.as_deref(), req.expires.as_deref())
        .map_err(|e| ApiError::bad(e.code(), e.to_string()))?;
    let token = auth::new_token();
    st.catalog.create_principal(&p, &auth::token_hash(&token), &caller.0.name).await.map_err(|e| match e {
        CatalogError::Conflict(_) => {
            ApiError::Conflict { code: "principal_exists", message: format!("principal {:?} exists already", p.name) }
        }
        other => other.into(),
    })?;
    let now = crate::catalog::now_micros();
    let body = serde_json::json!({ "principal": PrincipalView::new(p, now), "token": token });
    let mut resp = (StatusCode::CREATED, Json(body)).into_response();
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

/// `GET /api/v1/principals/{name}`: one principal; 404 `principal_not_found`.
#[utoipa::path(
    get,
    path = "/principals/{name}",
    tag = "admin",
    operation_id = "get_principal",
    summary = "One principal",
    description = "Admin only.",
    params(("name" = String, Path, description = "Principal name")),
    responses(
        (status = 200, description = "The principal", body = PrincipalView),
        (status = 403, description = "Not an admin", body = super::error::ErrorBody),
        (status = 404, description = "`principal_not_found`", body = super::error::ErrorBody),
    ),
)]
pub async fn get_one(caller: Caller, State(st): State<AppState>, Path(name): Path<String>) -> Result<Json<PrincipalView>, ApiError> {
    caller.require(&ADMINS)?;
    Ok(Json(PrincipalView::new(find(&st, &name).await?, crate::catalog::now_micros())))
}

/// `DELETE /api/v1/principals/{name}`: revokes at once and answers the principal (revoking a
/// revoked one changes nothing); 404 `principal_not_found`; 409 `cannot_revoke_self`, so an
/// admin cannot lock out the last admin by accident.
#[utoipa::path(
    delete,
    path = "/principals/{name}",
    tag = "admin",
    operation_id = "revoke_principal",
    summary = "Revoke a principal",
    description = "Admin only; at once (custody `principal`). Revoking a revoked principal changes nothing.",
    params(("name" = String, Path, description = "Principal name")),
    responses(
        (status = 200, description = "The revoked principal", body = PrincipalView),
        (status = 403, description = "Not an admin", body = super::error::ErrorBody),
        (status = 404, description = "`principal_not_found`", body = super::error::ErrorBody),
        (status = 409, description = "`cannot_revoke_self`", body = super::error::ErrorBody),
    ),
)]
pub async fn revoke(caller: Caller, State(st): State<AppState>, Path(name): Path<String>) -> Result<Json<PrincipalView>, ApiError> {
    caller.require(&ADMINS)?;
    if name == caller.0.name {
        return Err(ApiError::Conflict { code: "cannot_revoke_self", message: "an admin cannot revoke their own principal".into() });
    }
    st.catalog.revoke_principal(&name, &caller.0.name).await.map_err(|e| match e {
        CatalogError::NotFound(_) => not_found(&name),
        other => other.into(),
    })?;
    Ok(Json(PrincipalView::new(find(&st, &name).await?, crate::catalog::now_micros())))
}
