//! Media routes: the proxy and poster of a recording, and clips (request, status, bytes).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::access::MediaAccess;
use super::auth::Caller;
use super::recordings::{audit, open, open_with, serve_object};
use super::{ApiError, AppState};
use crate::catalog::{Clip, NewClip};

/// `GET /api/v1/recordings/{id}/proxy` (a caller, or a signed URL from an access grant).
#[utoipa::path(
    get,
    path = "/recordings/{id}/proxy",
    tag = "media",
    operation_id = "get_proxy",
    summary = "The browser-playable proxy",
    description = "The proxy (`video/mp4`, or `audio/mp4` for audio), with byte ranges and a strong ETag; for a caller \
                   (audited as `accessed`) or a signed `grant=` URL. 404 `no_proxy` while it is not made yet or when it failed.",
    params(("id" = String, Path, description = "Recording id"), super::openapi::ReasonHeader, super::openapi::RangeHeaders),
    responses(
        (status = 200, description = "The whole proxy", content(("video/mp4"), ("audio/mp4"))),
        (status = 206, description = "The requested range", content(("video/mp4"), ("audio/mp4"))),
        (status = 304, description = "`If-None-Match` matched"),
        (status = 403, description = "`reason_required`, `grant_required` or `grant_invalid`", body = super::error::ErrorBody),
        (status = 404, description = "No such recording in the caller's scope, or `no_proxy`", body = super::error::ErrorBody),
        (status = 416, description = "The range lies outside the proxy", body = super::error::ErrorBody),
    ),
    security(("bearer" = []), ("session" = []), ("grant" = [])),
)]
pub async fn proxy(
    State(st): State<AppState>,
    access: MediaAccess,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (r, reason) = access.open(&st, &id, &headers).await?;
    let obj = r.proxy.clone().ok_or_else(|| match r.media_state.as_str() {
        "failed" => ApiError::missing("no_proxy", format!("media could not be derived: {}", r.media_error.clone().unwrap_or_default())),
        _ => ApiError::missing("no_proxy", "the proxy is not ready yet"),
    })?;
    let d = serde_json::json!({"sha256": obj.sha256, "reason": reason});
    access.audit(&st, &headers, crate::custody::kind::ACCESSED, &r, "proxy", d).await?;
    serve_object(&st, &headers, &obj, None).await
}

/// `GET /api/v1/recordings/{id}/poster` (a caller, or a signed URL); audio recordings have none
/// (404 `no_poster`). A poster is a frame of the footage: classified ones need a reason too.
#[utoipa::path(
    get,
    path = "/recordings/{id}/poster",
    tag = "media",
    operation_id = "get_poster",
    summary = "The poster frame",
    description = "A JPEG frame of the footage, for a caller or a signed `grant=` URL; 404 `no_poster` for audio and \
                   while media is not ready.",
    params(("id" = String, Path, description = "Recording id"), super::openapi::ReasonHeader, super::openapi::RangeHeaders),
    responses(
        (status = 200, description = "The poster", content_type = "image/jpeg"),
        (status = 206, description = "The requested range", content_type = "image/jpeg"),
        (status = 304, description = "`If-None-Match` matched"),
        (status = 403, description = "`reason_required`, `grant_required` or `grant_invalid`", body = super::error::ErrorBody),
        (status = 404, description = "No such recording in the caller's scope, or `no_poster`", body = super::error::ErrorBody),
        (status = 416, description = "The range lies outside the poster", body = super::error::ErrorBody),
    ),
    security(("bearer" = []), ("session" = []), ("grant" = [])),
)]
pub async fn poster(
    State(st): State<AppState>,
    access: MediaAccess,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (r, _) = access.open(&st, &id, &headers).await?;
    let audio_only = r.media.as_ref().is_some_and(|m| m["has_video"] == false);
    let obj = r.poster.ok_or_else(|| {
        if audio_only {
            ApiError::missing("no_poster", "audio recordings have no poster")
        } else {
            ApiError::missing("no_poster", format!("no poster (media {})", r.media_state))
        }
    })?;
    serve_object(&st, &headers, &obj, None).await
}

/// Body of `POST .../clips`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClipRequest {
    /// Range start, ms.
    start_ms: i64,
    /// Range end (exclusive), ms.
    end_ms: i64,
    /// Frame-accurate re-encode.
    #[serde(default)]
    accurate: bool,
    /// Why the clip is made.
    #[serde(default)]
    reason: String,
}

fn clip_json(c: &Clip) -> serde_json::Value {
    serde_json::to_value(c).unwrap_or_default()
}

/// `POST /api/v1/recordings/{id}/clips`: 201 when the clip is ready within a few seconds,
/// else 202; it then appears at `GET /api/v1/clips/{id}`.
#[utoipa::path(
    post,
    path = "/recordings/{id}/clips",
    tag = "media",
    operation_id = "create_clip",
    summary = "Make a clip",
    description = "Cuts `[start_ms, end_ms)` out of the recording (supervisor, archivist): a derivative with its own \
                   hash and lineage (custody `clipped`). 201 when it is ready within a few seconds, else 202; then see \
                   `GET /api/v1/clips/{id}`.",
    params(("id" = String, Path, description = "Recording id")),
    request_body = ClipRequest,
    responses(
        (status = 201, description = "The clip, ready", body = crate::catalog::Clip),
        (status = 202, description = "The clip, still being made", body = crate::catalog::Clip),
        (status = 400, description = "`invalid_range`, `invalid_reason` or `invalid_body`", body = super::error::ErrorBody),
        (status = 403, description = "The role may not make clips, or `reason_required` / `grant_required`", body = super::error::ErrorBody),
        (status = 404, description = "No such recording in the caller's scope", body = super::error::ErrorBody),
        (status = 422, description = "The clip could not be made", body = crate::catalog::Clip),
    ),
)]
pub async fn create_clip(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<Json<ClipRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    caller.require(&["supervisor", "archivist"])?;
    let Json(req) = body.map_err(ApiError::from)?;
    let why = super::updates::reason(Some(req.reason.clone()), false)?;
    let (r, _) = open(&st, &caller, &id, why).await?;
    if req.start_ms < 0 || req.end_ms <= req.start_ms {
        return Err(ApiError::bad("invalid_range", "need 0 <= start_ms < end_ms"));
    }
    if let Some(d) = r.media.as_ref().and_then(|m| m["duration_ms"].as_i64()).or(r.duration_ms) {
        if req.start_ms >= d {
            return Err(ApiError::bad("invalid_range", format!("start_ms is beyond the recording's {d} ms")));
        }
    }
    let clip = st
        .catalog
        .create_clip(&NewClip {
            recording_id: r.id.clone(),
            start_ms: req.start_ms,
            end_ms: req.end_ms,
            accurate: req.accurate,
            reason: req.reason,
            actor: caller.0.name.clone(),
        })
        .await?;
    let deadline = tokio::time::Instant::now() + crate::media::CLIP_WAIT;
    let mut current = clip;
    while current.state == "pending" && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        current = st.catalog.clip(&current.id).await?;
    }
    let status = match current.state.as_str() {
        "ready" => StatusCode::CREATED,
        "failed" => StatusCode::UNPROCESSABLE_ENTITY,
        _ => StatusCode::ACCEPTED,
    };
    Ok((status, Json(clip_json(&current))).into_response())
}

/// A clip the caller may open (through its source recording, with the reason header when that
/// is classified), or 404; with the reason.
async fn open_clip(st: &AppState, caller: &Caller, id: &str, headers: &HeaderMap) -> Result<(Clip, Option<String>), ApiError> {
    if id.len() > 64 || !id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
        return Err(ApiError::NotFound);
    }
    let c = st.catalog.clip(id).await?;
    let (_, reason) = open_with(st, caller, &c.recording_id, headers).await?;
    Ok((c, reason))
}

/// `GET /api/v1/clips/{id}`.
#[utoipa::path(
    get,
    path = "/clips/{id}",
    tag = "media",
    operation_id = "get_clip",
    summary = "One clip",
    description = "A clip and its state (`pending`, `ready`, `failed`), for whoever may open its recording.",
    params(("id" = String, Path, description = "Clip id"), super::openapi::ReasonHeader),
    responses(
        (status = 200, description = "The clip", body = crate::catalog::Clip),
        (status = 403, description = "`reason_required` or `grant_required`", body = super::error::ErrorBody),
        (status = 404, description = "No such clip in the caller's scope", body = super::error::ErrorBody),
    ),
)]
pub async fn get_clip(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    Ok(Json(clip_json(&open_clip(&st, &caller, &id, &headers).await?.0)))
}

/// `GET /api/v1/clips/{id}/media`.
#[utoipa::path(
    get,
    path = "/clips/{id}/media",
    tag = "media",
    operation_id = "get_clip_media",
    summary = "A clip's bytes",
    description = "The clip (`video/mp4`), audited as `downloaded`; byte ranges, ETag and digests as for the original. \
                   404 `clip_not_ready` until it is made.",
    params(("id" = String, Path, description = "Clip id"), super::openapi::ReasonHeader, super::openapi::RangeHeaders),
    responses(
        (status = 200, description = "The whole clip", content(("video/mp4"), ("audio/mp4"))),
        (status = 206, description = "The requested range", content(("video/mp4"), ("audio/mp4"))),
        (status = 304, description = "`If-None-Match` matched"),
        (status = 403, description = "`reason_required` or `grant_required`", body = super::error::ErrorBody),
        (status = 404, description = "No such clip in the caller's scope, or `clip_not_ready`", body = super::error::ErrorBody),
        (status = 416, description = "The range lies outside the clip", body = super::error::ErrorBody),
    ),
)]
pub async fn clip_media(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (c, reason) = open_clip(&st, &caller, &id, &headers).await?;
    let obj = match (&c.object_key, &c.sha256, c.size, &c.content_type) {
        (Some(k), Some(s), Some(z), Some(t)) => {
            crate::catalog::ObjectRef { key: k.clone(), sha256: s.clone(), size: z, content_type: t.clone() }
        }
        _ => return Err(ApiError::missing("clip_not_ready", format!("clip is {}", c.state))),
    };
    let d = serde_json::json!({"clip": c.id, "sha256": obj.sha256, "reason": reason});
    audit(&st, &caller, &headers, crate::custody::kind::DOWNLOADED, &c.recording_id, "clip", d).await?;
    serve_object(&st, &headers, &obj, Some(&format!("clip-{}.mp4", c.id))).await
}
