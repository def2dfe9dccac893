//! Case routes: create, list, read and update cases, page through a case's recordings (scoped
//! like `GET /recordings`), and link or unlink recordings. Supervisors and archivists change
//! cases and links; auditors read. Every change is a custody event written by the catalog in the
//! same transaction (`case_created`, `case_updated`, `linked`, `unlinked`) with the principal's
//! name as the actor.

use std::collections::HashMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;

use super::auth::Caller;
use super::recordings::{encode_cursor, filter_from, visible};
use super::{ApiError, AppState};
use crate::catalog::CatalogError;
use crate::catalog::cases::{self, Case, CaseUpdate, NewCase};

/// Roles that create and change cases and links.
const WRITERS: [&str; 2] = ["supervisor", "archivist"];
/// Roles that read cases.
const READERS: [&str; 3] = ["supervisor", "archivist", "auditor"];
/// Longest title, in bytes.
const MAX_TITLE: usize = 1000;
/// Longest link/unlink reason, in bytes.
const MAX_REASON: usize = 2000;

fn case_not_found(id: &str) -> ApiError {
    ApiError::missing("case_not_found", format!("no case {id:?}"))
}

/// Catalog errors of a case operation: an unknown case is 404 `case_not_found` (an unknown
/// recording stays the plain 404), a taken id 409 `case_exists`.
fn case_error(id: &str, e: CatalogError) -> ApiError {
    match e {
        CatalogError::NotFound(what) if what.starts_with("case ") => case_not_found(id),
        CatalogError::Conflict(_) => ApiError::Conflict { code: "case_exists", message: format!("case {id:?} exists already") },
        other => other.into(),
    }
}

fn check_id(id: &str) -> Result<(), ApiError> {
    if cases::valid_id(id) {
        Ok(())
    } else {
        Err(ApiError::bad("invalid_case_id", format!("a case id is 1 to {} bytes without control characters", cases::MAX_ID_LEN)))
    }
}

fn check_title(t: &str) -> Result<(), ApiError> {
    if t.len() > MAX_TITLE || t.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(ApiError::bad("invalid_body", format!("title: at most {MAX_TITLE} bytes, no control characters")));
    }
    Ok(())
}

fn check_status(s: Option<&str>) -> Result<(), ApiError> {
    match s {
        None | Some(cases::status::OPEN) | Some(cases::status::CLOSED) => Ok(()),
        Some(other) => Err(ApiError::bad("invalid_status", format!("status: expected \"open\" or \"closed\", got {other:?}"))),
    }
}

/// The unit a new case belongs to: the one asked for, which must lie within the caller's own
/// unit, or else the caller's unit.
fn case_unit(caller: &Caller, asked: Option<&str>) -> Result<String, ApiError> {
    let mine = caller.0.unit.as_str();
    let Some(u) = asked.map(|u| u.trim_end_matches('/')).filter(|u| !u.is_empty()) else { return Ok(mine.to_string()) };
    if u.len() > 256 || u.chars().any(char::is_control) {
        return Err(ApiError::bad("invalid_body", "unit: at most 256 bytes, no control characters"));
    }
    if mine.is_empty() || u == mine || u.starts_with(&format!("{mine}/")) {
        Ok(u.to_string())
    } else {
        Err(ApiError::Forbidden(format!("unit {u} is outside your unit {mine}")))
    }
}

fn body_of<T>(body: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    body.map(|Json(b)| b).map_err(ApiError::from)
}

/// Body of `POST /api/v1/cases`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCase {
    /// The agency's case number.
    id: String,
    /// Free text.
    #[serde(default)]
    title: String,
    /// Owning unit (default: the caller's).
    unit: Option<String>,
}

/// Body of `PATCH /api/v1/cases/{id}` (and of `PUT`, which creates the case when it is new).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeCase {
    /// New title.
    title: Option<String>,
    /// `open` or `closed`.
    status: Option<String>,
    /// Owning unit, only when `PUT` creates the case.
    unit: Option<String>,
}

/// Body of link and unlink (optional).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LinkBody {
    /// Why (recorded in the custody event).
    reason: Option<String>,
}

/// Whether a link changed (for the API description).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct Linked {
    /// `PUT`: true when the recording was linked now, false when it already was.
    linked: Option<bool>,
    /// `DELETE`: true when the recording was unlinked now, false when it was not linked.
    unlinked: Option<bool>,
}

/// `POST /api/v1/cases`: 201 with the new case; 409 `case_exists`.
#[utoipa::path(
    post,
    path = "/cases",
    tag = "cases",
    operation_id = "create_case",
    summary = "Create a case",
    description = "Supervisor, archivist; custody `case_created`. The unit defaults to the caller's and must lie within it.",
    request_body = CreateCase,
    responses(
        (status = 201, description = "The new case", body = Case),
        (status = 400, description = "`invalid_case_id` or `invalid_body`", body = super::error::ErrorBody),
        (status = 403, description = "The role may not create cases, or the unit is outside the caller's", body = super::error::ErrorBody),
        (status = 409, description = "`case_exists`", body = super::error::ErrorBody),
    ),
)]
pub async fn create(
    State(st): State<AppState>,
    caller: Caller,
    body: Result<Json<CreateCase>, JsonRejection>,
) -> Result<(StatusCode, Json<Case>), ApiError> {
    caller.require(&WRITERS)?;
    let req = body_of(body)?;
    check_id(&req.id)?;
    check_title(&req.title)?;
    let unit = case_unit(&caller, req.unit.as_deref())?;
    let new = NewCase { id: req.id.clone(), title: req.title, unit };
    let c = st.catalog.create_case(&new, &caller.0.name).await.map_err(|e| case_error(&req.id, e))?;
    Ok((StatusCode::CREATED, Json(c)))
}

const LIST_KEYS: [&str; 3] = ["status", "limit", "cursor"];

/// `GET /api/v1/cases?status=&limit=&cursor=`: by id, `{"items": [...], "next_cursor": ...}`.
#[utoipa::path(
    get,
    path = "/cases",
    tag = "cases",
    operation_id = "list_cases",
    summary = "List cases",
    description = "By id, with cursor paging (supervisor, archivist, auditor).",
    params(
        ("status" = Option<String>, Query, description = "`open` or `closed`"),
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 500, description = "Page size, 1 to 500 (default 50)"),
        ("cursor" = Option<String>, Query, description = "The `next_cursor` of the previous page"),
    ),
    responses(
        (status = 200, description = "A page of cases", body = super::openapi::CasePage),
        (status = 400, description = "`unknown_parameter`, `invalid_parameter` or `invalid_cursor`", body = super::error::ErrorBody),
        (status = 403, description = "The role may not read cases", body = super::error::ErrorBody),
    ),
)]
pub async fn list(
    State(st): State<AppState>,
    caller: Caller,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(&READERS)?;
    if let Some(k) = q.keys().find(|k| !LIST_KEYS.contains(&k.as_str())) {
        return Err(ApiError::bad("unknown_parameter", format!("unknown parameter {k:?}")));
    }
    let s = |k: &str| q.get(k).filter(|v| !v.is_empty()).cloned();
    let status = s("status");
    check_status(status.as_deref()).map_err(|_| ApiError::bad("invalid_parameter", "status: expected open or closed"))?;
    let limit = match s("limit") {
        Some(v) => v
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=500).contains(n))
            .ok_or_else(|| ApiError::bad("invalid_parameter", "limit: expected an integer from 1 to 500"))?,
        None => 50,
    };
    let after = match s("cursor") {
        Some(c) => Some(
            URL_SAFE_NO_PAD
                .decode(&c)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| ApiError::bad("invalid_cursor", "cursor: not a cursor from next_cursor"))?,
        ),
        None => None,
    };
    let items = st.catalog.cases(status.as_deref(), limit, after.as_deref()).await?;
    let next = (items.len() as i64 == limit).then(|| items.last().map(|c| URL_SAFE_NO_PAD.encode(&c.id))).flatten();
    Ok(Json(serde_json::json!({"items": items, "next_cursor": next})))
}

/// The case `id`, or 404 `case_not_found`.
async fn existing(st: &AppState, id: &str) -> Result<Case, ApiError> {
    if !cases::valid_id(id) {
        return Err(case_not_found(id));
    }
    st.catalog.case(id).await.map_err(|e| case_error(id, e))
}

/// `GET /api/v1/cases/{id}`.
#[utoipa::path(
    get,
    path = "/cases/{id}",
    tag = "cases",
    operation_id = "get_case",
    summary = "One case",
    description = "Supervisor, archivist, auditor; its recordings are at `GET /api/v1/cases/{id}/recordings`.",
    params(("id" = String, Path, description = "Case id (the agency's case number)")),
    responses(
        (status = 200, description = "The case", body = Case),
        (status = 403, description = "The role may not read cases", body = super::error::ErrorBody),
        (status = 404, description = "`case_not_found`", body = super::error::ErrorBody),
    ),
)]
pub async fn get_one(State(st): State<AppState>, caller: Caller, Path(id): Path<String>) -> Result<Json<Case>, ApiError> {
    caller.require(&READERS)?;
    Ok(Json(existing(&st, &id).await?))
}

/// `PATCH /api/v1/cases/{id}` `{"title"?, "status"?}`.
#[utoipa::path(
    patch,
    path = "/cases/{id}",
    tag = "cases",
    operation_id = "update_case",
    summary = "Change a case",
    description = "Title and/or status (supervisor, archivist); custody `case_updated`. The unit cannot change.",
    params(("id" = String, Path, description = "Case id")),
    request_body = ChangeCase,
    responses(
        (status = 200, description = "The case", body = Case),
        (status = 400, description = "`invalid_status` or `invalid_body`", body = super::error::ErrorBody),
        (status = 403, description = "The role may not change cases", body = super::error::ErrorBody),
        (status = 404, description = "`case_not_found`", body = super::error::ErrorBody),
    ),
)]
pub async fn update(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<Json<ChangeCase>, JsonRejection>,
) -> Result<Json<Case>, ApiError> {
    caller.require(&WRITERS)?;
    let req = body_of(body)?;
    if req.unit.is_some() {
        return Err(ApiError::bad("invalid_body", "unit: a case's unit cannot be changed"));
    }
    check_status(req.status.as_deref())?;
    check_title(req.title.as_deref().unwrap_or_default())?;
    existing(&st, &id).await?;
    let u = CaseUpdate { title: req.title, status: req.status };
    Ok(Json(st.catalog.update_case(&id, &u, &caller.0.name).await.map_err(|e| case_error(&id, e))?))
}

/// `PUT /api/v1/cases/{id}` `{"title"?, "status"?, "unit"?}` (the CONTRACT's form): creates the
/// case when it is new (201), else updates it like `PATCH` (200).
#[utoipa::path(
    put,
    path = "/cases/{id}",
    tag = "cases",
    operation_id = "put_case",
    summary = "Create or update a case",
    description = "Creates the case when it is new (201), else updates it like `PATCH` (200); supervisor, archivist.",
    params(("id" = String, Path, description = "Case id")),
    request_body = ChangeCase,
    responses(
        (status = 200, description = "Updated", body = Case),
        (status = 201, description = "Created", body = Case),
        (status = 400, description = "`invalid_case_id`, `invalid_status` or `invalid_body`", body = super::error::ErrorBody),
        (status = 403, description = "The role may not change cases, or the unit is outside the caller's", body = super::error::ErrorBody),
    ),
)]
pub async fn put(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<Json<ChangeCase>, JsonRejection>,
) -> Result<(StatusCode, Json<Case>), ApiError> {
    caller.require(&WRITERS)?;
    let req = body_of(body)?;
    check_id(&id)?;
    check_status(req.status.as_deref())?;
    check_title(req.title.as_deref().unwrap_or_default())?;
    let actor = caller.0.name.as_str();
    let mut code = StatusCode::OK;
    match st.catalog.case(&id).await {
        Ok(_) => {}
        Err(CatalogError::NotFound(_)) => {
            let unit = case_unit(&caller, req.unit.as_deref())?;
            let new = NewCase { id: id.clone(), title: req.title.clone().unwrap_or_default(), unit };
            match st.catalog.create_case(&new, actor).await {
                Ok(_) => code = StatusCode::CREATED,
                // Created meanwhile by someone else: update it instead.
                Err(CatalogError::Conflict(_)) => {}
                Err(e) => return Err(case_error(&id, e)),
            }
        }
        Err(e) => return Err(e.into()),
    }
    let u = CaseUpdate { title: req.title, status: req.status };
    let c = st.catalog.update_case(&id, &u, actor).await.map_err(|e| case_error(&id, e))?;
    Ok((code, Json(c)))
}

/// `GET /api/v1/cases/{id}/recordings`: the case's recordings the caller may see, newest first,
/// with the filters and cursor paging of `GET /api/v1/recordings`.
#[utoipa::path(
    get,
    path = "/cases/{id}/recordings",
    tag = "cases",
    operation_id = "list_case_recordings",
    summary = "A case's recordings",
    description = "The case's recordings the caller may see, newest first, with the filters and paging of \
                   `GET /api/v1/recordings` (supervisor, archivist, auditor).",
    params(("id" = String, Path, description = "Case id"), super::recordings::RecordingQuery),
    responses(
        (status = 200, description = "A page of recordings", body = super::recordings::RecordingPage),
        (status = 400, description = "`unknown_parameter`, `invalid_parameter` or `invalid_cursor`", body = super::error::ErrorBody),
        (status = 403, description = "The role may not read cases", body = super::error::ErrorBody),
        (status = 404, description = "`case_not_found`", body = super::error::ErrorBody),
    ),
)]
pub async fn recordings(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(&READERS)?;
    let mut f = filter_from(&q)?;
    existing(&st, &id).await?;
    f.case = Some(id);
    caller.scope(&mut f)?;
    let items: Vec<crate::catalog::Recording> =
        st.catalog.list_recordings(&f).await?.into_iter().map(|r| super::recordings::present(&st, r)).collect();
    let next = (items.len() as i64 == f.limit).then(|| items.last().map(encode_cursor)).flatten();
    Ok(Json(serde_json::json!({"items": items, "next_cursor": next})))
}

/// Parses the optional link/unlink body (empty = no reason).
fn link_body(body: &Bytes) -> Result<Option<String>, ApiError> {
    let b: LinkBody = if body.iter().all(u8::is_ascii_whitespace) {
        LinkBody::default()
    } else {
        serde_json::from_slice(body).map_err(|e| ApiError::bad("invalid_body", format!("expected {{\"reason\": \"...\"}}: {e}")))?
    };
    match b.reason {
        Some(r) if r.len() > MAX_REASON => Err(ApiError::bad("invalid_body", format!("reason: at most {MAX_REASON} bytes"))),
        Some(r) if r.trim().is_empty() => Ok(None),
        r => Ok(r),
    }
}

/// Checks role, case and recording visibility for a link change; returns the reason.
async fn link_target(st: &AppState, caller: &Caller, id: &str, rid: &str, body: &Bytes) -> Result<Option<String>, ApiError> {
    caller.require(&WRITERS)?;
    let reason = link_body(body)?;
    existing(st, id).await?;
    visible(st, caller, rid).await?;
    Ok(reason)
}

/// `PUT /api/v1/cases/{id}/recordings/{rid}` `{"reason"?}`: `{"linked": true}`, or false when
/// it already was.
#[utoipa::path(
    put,
    path = "/cases/{id}/recordings/{rid}",
    tag = "cases",
    operation_id = "link_recording",
    summary = "Link a recording to a case",
    description = "Supervisor, archivist; custody `linked`. The body with a reason is optional.",
    params(("id" = String, Path, description = "Case id"), ("rid" = String, Path, description = "Recording id")),
    request_body = Option<LinkBody>,
    responses(
        (status = 200, description = "`{\"linked\": true}`, or false when it already was", body = Linked),
        (status = 400, description = "`invalid_body`", body = super::error::ErrorBody),
        (status = 403, description = "The role may not change links", body = super::error::ErrorBody),
        (status = 404, description = "`case_not_found`, or no such recording in the caller's scope", body = super::error::ErrorBody),
    ),
)]
pub async fn link(
    State(st): State<AppState>,
    caller: Caller,
    Path((id, rid)): Path<(String, String)>,
    body: Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    let reason = link_target(&st, &caller, &id, &rid, &body).await?;
    let linked = st.catalog.link(&id, &rid, &caller.0.name, reason.as_deref()).await.map_err(|e| case_error(&id, e))?;
    Ok(Json(serde_json::json!({"linked": linked})))
}

/// `DELETE /api/v1/cases/{id}/recordings/{rid}` `{"reason"?}`: `{"unlinked": true}`, or false
/// when it was not linked.
#[utoipa::path(
    delete,
    path = "/cases/{id}/recordings/{rid}",
    tag = "cases",
    operation_id = "unlink_recording",
    summary = "Unlink a recording from a case",
    description = "Supervisor, archivist; custody `unlinked`. The body with a reason is optional.",
    params(("id" = String, Path, description = "Case id"), ("rid" = String, Path, description = "Recording id")),
    request_body = Option<LinkBody>,
    responses(
        (status = 200, description = "`{\"unlinked\": true}`, or false when it was not linked", body = Linked),
        (status = 400, description = "`invalid_body`", body = super::error::ErrorBody),
        (status = 403, description = "The role may not change links", body = super::error::ErrorBody),
        (status = 404, description = "`case_not_found`, or no such recording in the caller's scope", body = super::error::ErrorBody),
    ),
)]
pub async fn unlink(
    State(st): State<AppState>,
    caller: Caller,
    Path((id, rid)): Path<(String, String)>,
    body: Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    let reason = link_target(&st, &caller, &id, &rid, &body).await?;
    let unlinked = st.catalog.unlink(&id, &rid, &caller.0.name, reason.as_deref()).await.map_err(|e| case_error(&id, e))?;
    Ok(Json(serde_json::json!({"unlinked": unlinked})))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_bodies() {
        assert_eq!(link_body(&Bytes::new()).unwrap(), None);
        assert_eq!(link_body(&Bytes::from_static(b" \n")).unwrap(), None);
        assert_eq!(link_body(&Bytes::from_static(br#"{"reason":"DA asked"}"#)).unwrap().as_deref(), Some("DA asked"));
        assert_eq!(link_body(&Bytes::from_static(br#"{"reason":"  "}"#)).unwrap(), None);
        assert!(link_body(&Bytes::from_static(br#"{"why":"x"}"#)).is_err());
        assert!(link_body(&Bytes::from_static(b"nope")).is_err());
    }

    #[test]
    fn statuses() {
        assert!(check_status(None).is_ok() && check_status(Some("open")).is_ok() && check_status(Some("closed")).is_ok());
        assert!(check_status(Some("archived")).is_err());
        assert!(check_id("").is_err() && check_id("C-1").is_ok());
    }
}
