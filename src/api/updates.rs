//! Routes that change an archived recording, each a custody event naming the principal:
//! `PATCH /recordings/{id}` (attribution corrections for review, supervisor or archivist),
//! `PUT /recordings/{id}/classification` (with a reason: supervisors may raise it, archivists
//! may set any level),
//! `PUT`/`DELETE /recordings/{id}/category` and `PUT`/`DELETE /recordings/{id}/hold` (archivist).
//! The original's bytes never change; only catalog fields and the log do.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use serde::Deserialize;

use super::auth::Caller;
use super::recordings::{present, visible};
use super::{ApiError, AppState};
use crate::catalog::Recording;
use crate::catalog::updates::{AttributionFix, CLASSIFICATIONS};

type Body<T> = Result<Json<T>, JsonRejection>;

fn body<T>(b: Body<T>) -> Result<T, ApiError> {
    b.map(|Json(v)| v).map_err(ApiError::from)
}

/// A reason, trimmed: printable, at most 1000 characters; 400 `reason_required` when required
/// and missing.
pub(super) fn reason(r: Option<String>, required: bool) -> Result<Option<String>, ApiError> {
    match r.map(|s| s.trim().to_string()).filter(|s| !s.is_empty()) {
        None if required => Err(ApiError::bad("reason_required", "a non-empty \"reason\" is required")),
        Some(s) if s.len() > 1000 || s.chars().any(|c| c.is_control()) => {
            Err(ApiError::bad("invalid_reason", "\"reason\": at most 1000 printable characters"))
        }
        r => Ok(r),
    }
}

/// A short identifier-like field (device, officer, unit, category).
fn field(name: &str, v: &Option<String>) -> Result<(), ApiError> {
    match v {
        Some(s) if s.is_empty() || s.len() > 128 || s.chars().any(|c| c.is_control()) => {
            Err(ApiError::bad("invalid_field", format!("{name:?}: 1 to 128 printable characters")))
        }
        _ => Ok(()),
    }
}

/// `PATCH /recordings/{id}` body: only the fields given change.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Patch {
    /// Device serial.
    device: Option<String>,
    /// Officer id.
    officer: Option<String>,
    /// Unit path.
    unit: Option<String>,
    /// Start time, RFC 3339.
    started_at: Option<String>,
    /// Clear or raise the review flag.
    needs_review: Option<bool>,
    /// Why.
    reason: Option<String>,
}

/// `PATCH /recordings/{id}`: correct attribution (usually of a recording flagged for review).
#[utoipa::path(
    patch,
    path = "/recordings/{id}",
    tag = "recordings",
    operation_id = "patch_recording",
    summary = "Correct attribution",
    description = "Changes `device`, `officer`, `unit`, `started_at` and/or `needs_review` (supervisor, archivist); \
                   custody `attributed`. Answers the recording as it is now.",
    params(("id" = String, Path, description = "Recording id")),
    request_body = Patch,
    responses(
        (status = 200, description = "The corrected recording", body = crate::catalog::Recording),
        (status = 400, description = "`invalid_field`, `invalid_reason`, `nothing_to_change` or `invalid_body`", body = super::error::ErrorBody),
        (status = 403, description = "The role may not correct attribution", body = super::error::ErrorBody),
        (status = 404, description = "No such recording in the caller's scope", body = super::error::ErrorBody),
    ),
)]
pub async fn patch(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    b: Body<Patch>,
) -> Result<Json<Recording>, ApiError> {
    caller.require(&["supervisor", "archivist"])?;
    let r = visible(&st, &caller, &id).await?;
    let p = body(b)?;
    let mut fix = AttributionFix {
        device: p.device,
        officer: p.officer,
        unit: p.unit.map(|u| u.trim_matches('/').to_string()),
        started_at: None,
        needs_review: p.needs_review,
        reason: reason(p.reason, false)?,
    };
    field("device", &fix.device)?;
    field("officer", &fix.officer)?;
    field("unit", &fix.unit)?;
    if let Some(t) = p.started_at {
        let t = chrono::DateTime::parse_from_rfc3339(&t)
            .map_err(|_| ApiError::bad("invalid_field", format!("\"started_at\": expected an RFC 3339 time, got {t:?}")))?;
        fix.started_at = Some(t.timestamp_micros());
    }
    if fix.device.is_none() && fix.officer.is_none() && fix.unit.is_none() && fix.started_at.is_none() && fix.needs_review.is_none() {
        return Err(ApiError::bad("nothing_to_change", "give at least one of device, officer, unit, started_at, needs_review"));
    }
    Ok(Json(present(&st, st.catalog.correct_attribution(&r.id, &fix, &caller.0.name).await?)))
}

/// `PUT /recordings/{id}/classification` body.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Classify {
    /// `normal`, `privacy`, `trade_secret` or `state_secret`.
    classification: String,
    /// Why (required).
    reason: Option<String>,
}

/// `PUT /recordings/{id}/classification`.
#[utoipa::path(
    put,
    path = "/recordings/{id}/classification",
    tag = "recordings",
    operation_id = "set_classification",
    summary = "Set the classification",
    description = "`normal`, `privacy`, `trade_secret` or `state_secret`, with a reason (custody `classified`): \
                   supervisors may raise it, archivists set any level.",
    params(("id" = String, Path, description = "Recording id")),
    request_body = Classify,
    responses(
        (status = 200, description = "The recording", body = crate::catalog::Recording),
        (status = 400, description = "`invalid_classification`, `reason_required`, `invalid_reason` or `invalid_body`", body = super::error::ErrorBody),
        (status = 403, description = "The role may not classify, or a supervisor lowering it", body = super::error::ErrorBody),
        (status = 404, description = "No such recording in the caller's scope", body = super::error::ErrorBody),
    ),
)]
pub async fn classify(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    b: Body<Classify>,
) -> Result<Json<Recording>, ApiError> {
    caller.require(&["supervisor", "archivist"])?;
    let r = visible(&st, &caller, &id).await?;
    let c = body(b)?;
    if !CLASSIFICATIONS.contains(&c.classification.as_str()) {
        return Err(ApiError::bad("invalid_classification", format!("expected one of {}", CLASSIFICATIONS.join(", "))));
    }
    let rank = |c: &str| CLASSIFICATIONS.iter().position(|x| *x == c).unwrap_or(0);
    if caller.0.role == "supervisor" && rank(&c.classification) < rank(&r.classification) {
        return Err(ApiError::Forbidden(format!("a supervisor may raise the classification, not lower it from {}", r.classification)));
    }
    let why = reason(c.reason, true)?.unwrap_or_default();
    Ok(Json(present(&st, st.catalog.set_classification(&r.id, &c.classification, &why, &caller.0.name).await?)))
}

/// `PUT /recordings/{id}/category` body.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Categorise {
    /// Retention category name (`[retention.categories]`).
    category: String,
    /// Why.
    reason: Option<String>,
}

/// `PUT /recordings/{id}/category`.
#[utoipa::path(
    put,
    path = "/recordings/{id}/category",
    tag = "retention",
    operation_id = "set_category",
    summary = "Set the retention category",
    description = "A category of `[retention.categories]` (archivist); custody `categorised`.",
    params(("id" = String, Path, description = "Recording id")),
    request_body = Categorise,
    responses(
        (status = 200, description = "The recording", body = crate::catalog::Recording),
        (status = 400, description = "`invalid_category`, `invalid_reason` or `invalid_body`", body = super::error::ErrorBody),
        (status = 403, description = "Not an archivist", body = super::error::ErrorBody),
        (status = 404, description = "No such recording in the caller's scope", body = super::error::ErrorBody),
        (status = 409, description = "`refused`: the change is not allowed in the recording's state", body = super::error::ErrorBody),
    ),
)]
pub async fn set_category(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    b: Body<Categorise>,
) -> Result<Json<Recording>, ApiError> {
    caller.require(&["archivist"])?;
    let r = visible(&st, &caller, &id).await?;
    let c = body(b)?;
    if c.category.is_empty()
        || c.category.len() > 64
        || !c.category.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        return Err(ApiError::bad("invalid_category", "a category name: 1 to 64 of a-z, 0-9, _"));
    }
    let why = reason(c.reason, false)?;
    let rec = st.catalog.set_category(&r.id, Some(&c.category), why.as_deref(), &caller.0.name).await?;
    relock(&st, &rec.id).await;
    Ok(Json(present(&st, rec)))
}

/// `DELETE /recordings/{id}/category`: back to `uncategorized`.
#[utoipa::path(
    delete,
    path = "/recordings/{id}/category",
    tag = "retention",
    operation_id = "clear_category",
    summary = "Clear the retention category",
    description = "Back to `uncategorized` (archivist); custody `categorised`.",
    params(("id" = String, Path, description = "Recording id")),
    responses(
        (status = 200, description = "The recording", body = crate::catalog::Recording),
        (status = 403, description = "Not an archivist", body = super::error::ErrorBody),
        (status = 404, description = "No such recording in the caller's scope", body = super::error::ErrorBody),
        (status = 409, description = "`refused`: the change is not allowed in the recording's state", body = super::error::ErrorBody),
    ),
)]
pub async fn clear_category(State(st): State<AppState>, caller: Caller, Path(id): Path<String>) -> Result<Json<Recording>, ApiError> {
    caller.require(&["archivist"])?;
    let r = visible(&st, &caller, &id).await?;
    Ok(Json(present(&st, st.catalog.set_category(&r.id, None, None, &caller.0.name).await?)))
}

/// `PUT`/`DELETE /recordings/{id}/hold` body.
#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Hold {
    /// Why (required to place a hold).
    reason: Option<String>,
}

/// `PUT /recordings/{id}/hold`: place a legal hold.
#[utoipa::path(
    put,
    path = "/recordings/{id}/hold",
    tag = "retention",
    operation_id = "place_hold",
    summary = "Place a legal hold",
    description = "With a reason (archivist); custody `held`. A held recording is never destroyed.",
    params(("id" = String, Path, description = "Recording id")),
    request_body = Hold,
    responses(
        (status = 200, description = "The recording", body = crate::catalog::Recording),
        (status = 400, description = "`reason_required`, `invalid_reason` or `invalid_body`", body = super::error::ErrorBody),
        (status = 403, description = "Not an archivist", body = super::error::ErrorBody),
        (status = 404, description = "No such recording in the caller's scope", body = super::error::ErrorBody),
        (status = 409, description = "`refused`: the change is not allowed in the recording's state", body = super::error::ErrorBody),
    ),
)]
pub async fn place_hold(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    b: Body<Hold>,
) -> Result<Json<Recording>, ApiError> {
    caller.require(&["archivist"])?;
    let r = visible(&st, &caller, &id).await?;
    let why = reason(body(b)?.reason, true)?.unwrap_or_default();
    let rec = st.catalog.place_hold(&r.id, &why, &caller.0.name).await?;
    relock(&st, &rec.id).await;
    Ok(Json(present(&st, rec)))
}

/// `DELETE /recordings/{id}/hold`: lift a legal hold (the body with a reason is optional).
#[utoipa::path(
    delete,
    path = "/recordings/{id}/hold",
    tag = "retention",
    operation_id = "lift_hold",
    summary = "Lift a legal hold",
    description = "Archivist; custody `hold_released`. The body with a reason is optional.",
    params(("id" = String, Path, description = "Recording id")),
    request_body = Option<Hold>,
    responses(
        (status = 200, description = "The recording", body = crate::catalog::Recording),
        (status = 400, description = "`invalid_reason`", body = super::error::ErrorBody),
        (status = 403, description = "Not an archivist", body = super::error::ErrorBody),
        (status = 404, description = "No such recording in the caller's scope", body = super::error::ErrorBody),
        (status = 409, description = "`refused`: the change is not allowed in the recording's state", body = super::error::ErrorBody),
    ),
)]
pub async fn lift_hold(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    b: Option<Json<Hold>>,
) -> Result<Json<Recording>, ApiError> {
    caller.require(&["archivist"])?;
    let r = visible(&st, &caller, &id).await?;
    let why = reason(b.map(|Json(h)| h).unwrap_or_default().reason, false)?;
    let rec = st.catalog.lift_hold(&r.id, why.as_deref(), &caller.0.name).await?;
    relock(&st, &rec.id).await;
    Ok(Json(present(&st, rec)))
}

/// With a WORM store, queues a `worm_lock` job so the original's lock follows the change (the
/// change itself is committed: a failure to queue is logged, not answered).
async fn relock(st: &AppState, id: &str) {
    if st.worm
        && let Err(e) = crate::retention::worm::enqueue(st.catalog.as_ref(), id).await
    {
        tracing::error!(recording = %id, error = %e, "cannot queue the WORM lock after a retention change");
    }
}
