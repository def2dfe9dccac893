//! Recording routes: search with cursor paging, one recording, its custody events, and the
//! original's bytes with single/suffix Range, strong ETag, `Repr-Digest` and `Content-Digest`.

use std::collections::HashMap;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

use super::access::MediaAccess;
use super::auth::Caller;
use super::{ApiError, AppState};
use crate::catalog::{ObjectRef, Recording, RecordingFilter};

/// The query parameters the recording search accepts; any other is a 400 `unknown_parameter`.
pub const FILTER_KEYS: [&str; 11] =
    ["officer", "device", "unit", "case", "category", "from", "to", "state", "needs_review", "limit", "cursor"];

/// The search filters of `GET /recordings` and `GET /cases/{id}/recordings` as the API
/// description shows them ([`filter_from`] reads them from the raw query, so that an unknown one
/// is a 400); a test keeps the two in step with [`FILTER_KEYS`].
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct RecordingQuery {
    /// Exact officer id.
    officer: Option<String>,
    /// Exact device serial.
    device: Option<String>,
    /// Unit path; matches the unit and everything below it.
    unit: Option<String>,
    /// Case id the recording is linked to.
    case: Option<String>,
    /// Retention category.
    category: Option<String>,
    /// Started (or, without a start time, archived) at or after this RFC 3339 time.
    #[param(format = DateTime)]
    from: Option<String>,
    /// Started (or archived) before this RFC 3339 time.
    #[param(format = DateTime)]
    to: Option<String>,
    /// `archived`, `pending_destruction` or `destroyed`.
    state: Option<String>,
    /// `true` or `false`: flagged for attribution review.
    needs_review: Option<bool>,
    /// Page size, 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// A page of recordings, newest first.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct RecordingPage {
    /// The recordings.
    items: Vec<Recording>,
    /// Pass as `cursor` for the next page; null on the last one.
    next_cursor: Option<String>,
}

/// A page size: 1 to 500, else 400 `invalid_parameter`.
pub fn parse_limit(v: &str) -> Result<i64, ApiError> {
    v.parse::<i64>()
        .ok()
        .filter(|n| (1..=500).contains(n))
        .ok_or_else(|| ApiError::bad("invalid_parameter", "limit: expected an integer from 1 to 500"))
}

/// An RFC 3339 query parameter in micros, else 400 `invalid_parameter` naming `key`.
pub fn parse_time(key: &str, v: &str) -> Result<i64, ApiError> {
    chrono::DateTime::parse_from_rfc3339(v)
        .map(|t| t.timestamp_micros())
        .map_err(|_| ApiError::bad("invalid_parameter", format!("{key}: expected an RFC 3339 time, got {v:?}")))
}

/// Parses the search query into a filter.
pub fn filter_from(q: &HashMap<String, String>) -> Result<RecordingFilter, ApiError> {
    if let Some(k) = q.keys().find(|k| !FILTER_KEYS.contains(&k.as_str())) {
        return Err(ApiError::bad("unknown_parameter", format!("unknown parameter {k:?}")));
    }
    let s = |k: &str| q.get(k).filter(|v| !v.is_empty()).cloned();
    let mut f = RecordingFilter {
        officer: s("officer"),
        device: s("device"),
        unit: s("unit").map(|u| u.trim_end_matches('/').to_string()),
        case: s("case"),
        category: s("category"),
        state: s("state"),
        limit: 50,
        ..Default::default()
    };
    if let Some(v) = s("from") {
        f.from = Some(parse_time("from", &v)?);
    }
    if let Some(v) = s("to") {
        f.to = Some(parse_time("to", &v)?);
    }
    if let Some(v) = s("needs_review") {
        f.needs_review = Some(match v.as_str() {
            "true" | "1" => true,
            "false" | "0" => false,
            _ => return Err(ApiError::bad("invalid_parameter", "needs_review: expected true or false")),
        });
    }
    if let Some(v) = s("limit") {
        f.limit = parse_limit(&v)?;
    }
    if let Some(v) = s("cursor") {
        f.after = Some(decode_cursor(&v).ok_or_else(|| ApiError::bad("invalid_cursor", "cursor: not a cursor from next_cursor"))?);
    }
    Ok(f)
}

/// The `next_cursor` that continues after `r`.
pub(super) fn encode_cursor(r: &Recording) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}:{}", r.sort_at, r.id))
}

fn decode_cursor(c: &str) -> Option<(i64, String)> {
    let raw = String::from_utf8(URL_SAFE_NO_PAD.decode(c).ok()?).ok()?;
    let (t, id) = raw.split_once(':')?;
    Some((t.parse().ok()?, id.to_string()))
}

/// `GET /api/v1/recordings`.
#[utoipa::path(
    get,
    path = "/recordings",
    tag = "recordings",
    operation_id = "list_recordings",
    summary = "Search recordings",
    description = "The recordings the caller may see, newest first, with cursor paging. Admins get 403 (they see no footage).",
    params(RecordingQuery),
    responses(
        (status = 200, description = "A page of recordings", body = RecordingPage),
        (status = 400, description = "`unknown_parameter`, `invalid_parameter` or `invalid_cursor`", body = super::error::ErrorBody),
        (status = 403, description = "The role sees no footage", body = super::error::ErrorBody),
    ),
)]
pub async fn list(
    State(st): State<AppState>,
    caller: Caller,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let mut f = filter_from(&q)?;
    caller.scope(&mut f)?;
    let items: Vec<Recording> = st.catalog.list_recordings(&f).await?.into_iter().map(|r| present(&st, r)).collect();
    let next = (items.len() as i64 == f.limit).then(|| items.last().map(encode_cursor)).flatten();
    Ok(Json(serde_json::json!({"items": items, "next_cursor": next})))
}

/// Loads a recording the caller may see, or 404.
pub async fn visible(st: &AppState, caller: &Caller, id: &str) -> Result<Recording, ApiError> {
    if id.len() > 64 || !id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
        return Err(ApiError::NotFound);
    }
    let r = st.catalog.recording(id).await?;
    if !listed(st, caller, &r).await? {
        return Err(ApiError::NotFound);
    }
    Ok(r)
}

/// Whether a caller may see a recording at all (search, events, by id): in its scope, and a
/// state secret only with an explicit grant (archivists and auditors excepted: they manage and
/// audit grants). The same rule as the search filter of [`Caller::scope`].
pub async fn listed(st: &AppState, caller: &Caller, r: &Recording) -> Result<bool, crate::catalog::CatalogError> {
    if !caller.may_see(r.officer.as_deref(), r.unit.as_deref()) {
        return Ok(false);
    }
    if r.classification == STATE_SECRET && !caller.sees_all_classified() {
        return st.catalog.has_grant(&r.id, &caller.0.name).await;
    }
    Ok(true)
}

/// The classification that also needs an explicit grant.
pub const STATE_SECRET: &str = "state_secret";

/// The request header that carries the reason for opening a classified recording
/// (percent-encoded UTF-8, since header values cannot carry other text portably).
pub const REASON_HEADER: &str = "x-access-reason";

/// The reason a request gives in [`REASON_HEADER`], decoded; 400 `invalid_reason` when it is not
/// percent-encoded UTF-8 or longer than 1000 characters.
pub fn header_reason(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(v) = headers.get(REASON_HEADER) else { return Ok(None) };
    let decoded = v
        .to_str()
        .ok()
        .and_then(|s| percent_encoding::percent_decode_str(s).decode_utf8().ok().map(|c| c.into_owned()))
        .ok_or_else(|| ApiError::bad("invalid_reason", "X-Access-Reason: expected percent-encoded UTF-8"))?;
    super::updates::reason(Some(decoded), false)
}

/// Opens a recording the caller may see (else 404) for its content or details: a classified one
/// needs a reason (403 `reason_required`), a `state_secret` one also an explicit grant to the
/// caller (403 `grant_required`). Returns the recording and the reason to record.
pub async fn open(st: &AppState, caller: &Caller, id: &str, reason: Option<String>) -> Result<(Recording, Option<String>), ApiError> {
    let r = visible(st, caller, id).await?;
    if r.classification != "normal" && reason.is_none() {
        return Err(ApiError::Denied {
            code: "reason_required",
            message: format!(
                "this recording is classified {}: give a reason (X-Access-Reason or an access grant's reason)",
                r.classification
            ),
        });
    }
    if r.classification == STATE_SECRET && !st.catalog.has_grant(&r.id, &caller.0.name).await? {
        return Err(ApiError::Denied {
            code: "grant_required",
            message: "this recording is a state secret: an archivist must grant you access first".into(),
        });
    }
    Ok((r, reason))
}

/// [`open`] with the reason from the request's [`REASON_HEADER`].
pub async fn open_with(st: &AppState, caller: &Caller, id: &str, headers: &HeaderMap) -> Result<(Recording, Option<String>), ApiError> {
    open(st, caller, id, header_reason(headers)?).await
}

/// A recording as the API shows it: with `retention_until` / `retention_permanent` from the policy.
pub fn present(st: &AppState, mut r: Recording) -> Recording {
    st.policy.annotate(&mut r);
    r
}

/// The `what` of the byte routes (see [`audit`]): their later Range requests are not new accesses.
const RANGED: [&str; 3] = ["proxy", "original", "clip"];

/// Records one audited access (`accessed` or `downloaded`) in the custody log before anything is
/// served, so an access that cannot be recorded does not happen. Byte-range requests count once:
/// a player's later Range requests for the same object (see [`later_range_request`]) are not
/// accesses; every other request is, whatever headers it carries (a metadata view or a grant
/// with a `Range` header too).
pub async fn audit(
    st: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    kind: &str,
    recording_id: &str,
    what: &str,
    extra: serde_json::Value,
) -> Result<Option<i64>, ApiError> {
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    if RANGED.contains(&what) && later_range_request(headers) {
        return Ok(None);
    }
    let mut d = serde_json::json!({"what": what, "role": caller.0.role, "range": range, "from": caller.1.map(|ip| ip.to_string())});
    if let Some(ua) = headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()) {
        d["user_agent"] = ua.chars().take(200).collect::<String>().into();
    }
    if let (Some(m), serde_json::Value::Object(e)) = (d.as_object_mut(), extra) {
        m.extend(e);
    }
    Ok(Some(st.catalog.append_custody(kind, &caller.0.name, Some(recording_id), d).await?))
}

/// `GET /api/v1/recordings/{id}` (an audited view).
#[utoipa::path(
    get,
    path = "/recordings/{id}",
    tag = "recordings",
    operation_id = "get_recording",
    summary = "One recording",
    description = "An audited view (custody `accessed`). Classified recordings need a reason (`X-Access-Reason`), \
                   `state_secret` ones also an explicit grant.",
    params(("id" = String, Path, description = "Recording id"), super::openapi::ReasonHeader),
    responses(
        (status = 200, description = "The recording", body = Recording),
        (status = 400, description = "`invalid_reason`", body = super::error::ErrorBody),
        (status = 403, description = "`reason_required` or `grant_required`", body = super::error::ErrorBody),
        (status = 404, description = "No such recording in the caller's scope", body = super::error::ErrorBody),
    ),
)]
pub async fn get_one(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Recording>, ApiError> {
    let (r, reason) = open_with(&st, &caller, &id, &headers).await?;
    audit(&st, &caller, &headers, crate::custody::kind::ACCESSED, &r.id, "metadata", serde_json::json!({"reason": reason})).await?;
    Ok(Json(present(&st, r)))
}

/// `GET /api/v1/recordings/{id}/custody`: its events, for anyone who may open it, and for
/// auditors (whose role is to read them).
#[utoipa::path(
    get,
    path = "/recordings/{id}/custody",
    tag = "custody",
    operation_id = "get_recording_custody",
    summary = "A recording's custody events",
    description = "Its custody events, oldest first: for anyone who may open the recording (with a reason when \
                   classified), and for auditors.",
    params(("id" = String, Path, description = "Recording id"), super::openapi::ReasonHeader),
    responses(
        (status = 200, description = "`{\"items\": [custody events]}`", body = super::openapi::CustodyEvents),
        (status = 403, description = "`reason_required` or `grant_required`", body = super::error::ErrorBody),
        (status = 404, description = "No such recording in the caller's scope", body = super::error::ErrorBody),
    ),
)]
pub async fn custody(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    let r = if caller.0.role == "auditor" { visible(&st, &caller, &id).await? } else { open_with(&st, &caller, &id, &headers).await?.0 };
    let events = st.catalog.custody_events(Some(&r.id), 0, 10_000).await?;
    Ok(Json(serde_json::json!({"items": events})))
}

fn content_type(ext: &str) -> &'static str {
    match ext {
        "mp4" | "m4v" => "video/mp4",
        "mov" => "video/quicktime",
        "avi" => "video/x-msvideo",
        "mkv" => "video/x-matroska",
        "wav" => "audio/wav",
        "m4a" => "audio/mp4",
        "mp3" => "audio/mpeg",
        _ => "application/octet-stream",
    }
}

/// The one range of a `Range` header, if it has exactly one that parses.
fn single_range(headers: &HeaderMap) -> Option<http_range_header::SyntacticallyCorrectRange> {
    let raw = headers.get(header::RANGE)?.to_str().ok()?;
    match http_range_header::parse_range_header(raw).ok()?.ranges.as_slice() {
        [r] => Some(*r),
        _ => None,
    }
}

/// The byte range a request asks for as `(start, length)`: `None` = the whole object. As RFC 9110
/// section 14.1.2 has it: unparseable, reversed or multiple ranges are ignored (the whole object);
/// a range that starts at or after the end is a 416, as is any range of an empty object; a
/// suffix longer than the object is the whole object.
pub fn requested_range(headers: &HeaderMap, size: u64) -> Result<Option<(u64, u64)>, ApiError> {
    use http_range_header::{EndPosition, StartPosition};
    let Some(r) = single_range(headers) else { return Ok(None) };
    let (start, last) = match (r.start, r.end) {
        (StartPosition::Index(a), EndPosition::Index(b)) if b < a => return Ok(None),
        (StartPosition::FromLast(0), _) => return Err(ApiError::RangeNotSatisfiable(size)),
        _ if size == 0 => return Err(ApiError::RangeNotSatisfiable(size)),
        (StartPosition::FromLast(n), _) => (size - n.min(size), size - 1),
        (StartPosition::Index(a), _) if a >= size => return Err(ApiError::RangeNotSatisfiable(size)),
        (StartPosition::Index(a), EndPosition::Index(b)) => (a, b.min(size - 1)),
        (StartPosition::Index(a), EndPosition::LastByte) => (a, size - 1),
    };
    Ok(Some((start, last - start + 1)))
}

/// Whether a request is one of a player's later Range requests, which [`audit`] does not count
/// as another access: one range that starts after the first byte (`bytes=N-` or `bytes=N-M`,
/// N > 0) and no `If-Range`. Whatever else may be served the first byte or the whole object (an
/// unparseable, multiple or suffix range, an `If-Range` that does not match), so it is audited.
pub fn later_range_request(headers: &HeaderMap) -> bool {
    use http_range_header::{EndPosition, StartPosition};
    if headers.contains_key(header::IF_RANGE) {
        return false;
    }
    match single_range(headers).map(|r| (r.start, r.end)) {
        Some((StartPosition::Index(a), EndPosition::Index(b))) => a > 0 && b >= a,
        Some((StartPosition::Index(a), EndPosition::LastByte)) => a > 0,
        _ => false,
    }
}

/// `GET /api/v1/recordings/{id}/original`.
#[utoipa::path(
    get,
    path = "/recordings/{id}/original",
    tag = "media",
    operation_id = "get_original",
    summary = "The original's bytes",
    description = "The original as archived (supervisor, archivist, auditor; or a signed `grant=` URL that includes it), \
                   audited as `downloaded`. Single and suffix byte ranges; strong ETag (its SHA-256); \
                   `Repr-Digest: sha-256=:<base64>:` always, `Content-Digest` on 200.",
    params(("id" = String, Path, description = "Recording id"), super::openapi::ReasonHeader, super::openapi::RangeHeaders),
    responses(
        (status = 200, description = "The whole original",
            headers(
                ("ETag" = String, description = "The quoted SHA-256 (hex) of the bytes"),
                ("Repr-Digest" = String, description = "`sha-256=:<base64>:` of the whole original"),
                ("Content-Digest" = String, description = "`sha-256=:<base64>:` of this content"),
            ),
            content(("video/*"), ("audio/*"), ("application/octet-stream"))),
        (status = 206, description = "The requested range",
            headers(
                ("ETag" = String, description = "The quoted SHA-256 (hex) of the bytes"),
                ("Repr-Digest" = String, description = "`sha-256=:<base64>:` of the whole original"),
                ("Content-Range" = String, description = "`bytes START-END/SIZE`"),
            ),
            content(("video/*"), ("audio/*"), ("application/octet-stream"))),
        (status = 304, description = "`If-None-Match` matched"),
        (status = 403, description = "The role may not download originals, `reason_required`, `grant_required` or \
                                      `grant_invalid`", body = super::error::ErrorBody),
        (status = 404, description = "No such recording in the caller's scope", body = super::error::ErrorBody),
        (status = 416, description = "The range lies outside the original", body = super::error::ErrorBody),
    ),
    security(("bearer" = []), ("session" = []), ("grant" = [])),
)]
pub async fn original(
    State(st): State<AppState>,
    access: MediaAccess,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    access.require_original()?;
    let (r, reason) = access.open(&st, &id, &headers).await?;
    let d = serde_json::json!({"sha256": r.sha256, "reason": reason});
    access.audit(&st, &headers, crate::custody::kind::DOWNLOADED, &r, "original", d).await?;
    serve_object(&st, &headers, &original_ref(&r), Some(&r.original_name)).await
}

/// The roles that may download originals.
pub const ORIGINAL_ROLES: &[&str] = &["supervisor", "archivist", "auditor"];

/// The original of a recording as a stored object.
pub fn original_ref(r: &Recording) -> ObjectRef {
    ObjectRef { key: r.object_key.clone(), sha256: r.sha256.clone(), size: r.size, content_type: content_type(&r.extension).into() }
}

/// Serves a stored object: single and suffix Range (206, 416), strong ETag (its SHA-256),
/// `Repr-Digest` always and `Content-Digest` on 200, `If-None-Match`, `If-Range`; never compressed.
pub async fn serve_object(st: &AppState, headers: &HeaderMap, obj: &ObjectRef, download_name: Option<&str>) -> Result<Response, ApiError> {
    let size = obj.size as u64;
    let etag = format!("\"{}\"", obj.sha256);
    let digest = format!("sha-256=:{}:", STANDARD.encode(hex::decode(&obj.sha256).unwrap_or_default()));
    let mut h = HeaderMap::new();
    let hv = |s: &str| HeaderValue::from_str(s).map_err(|e| ApiError::Internal(e.to_string()));
    h.insert(header::ETAG, hv(&etag)?);
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert("repr-digest", hv(&digest)?);
    h.insert(header::CONTENT_TYPE, hv(&obj.content_type)?);
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, no-store"));
    if let Some(name) = download_name {
        h.insert(header::CONTENT_DISPOSITION, hv(&format!("attachment; filename*=UTF-8''{}", pct_encode(name)))?);
    }
    if headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()).is_some_and(|v| v.split(',').any(|t| t.trim() == etag)) {
        return Ok((StatusCode::NOT_MODIFIED, h).into_response());
    }
    // If-Range with another validator: send the whole object.
    let if_range_ok = headers.get(header::IF_RANGE).and_then(|v| v.to_str().ok()).is_none_or(|v| v == etag);
    let range = if if_range_ok { requested_range(headers, size)? } else { None };
    match range {
        Some((start, len)) => {
            let body = st.store.get(&obj.key, Some((start, len))).await?;
            h.insert(header::CONTENT_RANGE, hv(&format!("bytes {}-{}/{}", start, start + len - 1, size))?);
            h.insert(header::CONTENT_LENGTH, hv(&len.to_string())?);
            Ok((StatusCode::PARTIAL_CONTENT, h, Body::from_stream(body)).into_response())
        }
        None => {
            let body = st.store.get(&obj.key, None).await?;
            h.insert("content-digest", hv(&digest)?);
            h.insert(header::CONTENT_LENGTH, hv(&size.to_string())?);
            Ok((StatusCode::OK, h, Body::from_stream(body)).into_response())
        }
    }
}

/// RFC 5987 percent-encoding for `filename*`.
fn pct_encode(s: &str) -> String {
    s.bytes()
        .map(|b| if b.is_ascii_alphanumeric() || b"-._~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hdr(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::RANGE, HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn ranges() {
        assert_eq!(requested_range(&hdr("bytes=0-9"), 100).unwrap(), Some((0, 10)));
        assert_eq!(requested_range(&hdr("bytes=90-"), 100).unwrap(), Some((90, 10)));
        assert_eq!(requested_range(&hdr("bytes=-5"), 100).unwrap(), Some((95, 5)));
        assert_eq!(requested_range(&hdr("bytes=0-1,5-6"), 100).unwrap(), None);
        assert_eq!(requested_range(&hdr("garbage"), 100).unwrap(), None);
        assert!(matches!(requested_range(&hdr("bytes=100-"), 100), Err(ApiError::RangeNotSatisfiable(100))));
        // Against the RFC 9110 model of fuzz/fuzz_targets/range_header.rs: a suffix longer than the
        // object is the whole object (it was a 416), a reversed range is ignored (it was a 416),
        // and an empty object has no byte 0 (it was served as `bytes 0-0/0`, one byte long).
        assert_eq!(requested_range(&hdr("bytes=-500"), 100).unwrap(), Some((0, 100)));
        assert_eq!(requested_range(&hdr("bytes=5-3"), 100).unwrap(), None);
        assert!(matches!(requested_range(&hdr("bytes=0-"), 0), Err(ApiError::RangeNotSatisfiable(0))));
        assert!(matches!(requested_range(&hdr("bytes=0-0"), 0), Err(ApiError::RangeNotSatisfiable(0))));
    }

    #[test]
    fn only_later_range_requests_go_unaudited() {
        for later in ["bytes=1-", "bytes=5-9", "bytes=1000-"] {
            assert!(later_range_request(&hdr(later)), "{later}");
        }
        // Each of these is served the first byte or the whole object, so each is an access. All
        // but the first three went unaudited before (the rule was `starts_with("bytes=0-")`).
        for access in
            ["bytes=0-", "bytes=0-1", "bytes=0-1,5-6", "garbage", "BYTES=1-", "bytes=1-2,0-", "bytes=-999999", "bytes=00-", "bytes=9-3"]
        {
            assert!(!later_range_request(&hdr(access)), "{access}");
        }
        let mut h = hdr("bytes=1-");
        h.insert(header::IF_RANGE, HeaderValue::from_static("\"stale\""));
        assert!(!later_range_request(&h), "a stale If-Range gets the whole object");
        assert!(!later_range_request(&HeaderMap::new()));
    }

    #[test]
    fn cursor_round_trip_and_bad_params() {
        let c = URL_SAFE_NO_PAD.encode("123:abc");
        assert_eq!(decode_cursor(&c), Some((123, "abc".into())));
        assert!(decode_cursor("!!").is_none());
        let q: HashMap<String, String> = [("limit".to_string(), "0".to_string())].into();
        assert!(filter_from(&q).is_err());
        let q: HashMap<String, String> = [("evil".to_string(), "1".to_string())].into();
        assert!(filter_from(&q).is_err());
    }
}

/// Property tests ("fuzzing" on the stable toolchain): hostile query strings and Range headers.
#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;

    fn query() -> impl Strategy<Value = HashMap<String, String>> {
        let key = prop_oneof![prop::sample::select(FILTER_KEYS.to_vec()).prop_map(str::to_string), "\\PC{0,10}"];
        let val = prop_oneof![
            "\\PC{0,40}",
            any::<i64>().prop_map(|n| n.to_string()),
            prop::sample::select(vec![
                "true",
                "false",
                "1",
                "0",
                "",
                "2024-03-15T08:30:00Z",
                "9999-12-31T23:59:59Z",
                "0000-01-01T00:00:00+23:59",
                "2024-03-15T08:30:00.999999999999Z",
                "500",
                "501",
                "-1",
                "9223372036854775808",
                "!!",
                "MTIzOmFiYw",
            ])
            .prop_map(str::to_string),
            (any::<i64>(), "\\PC{0,20}").prop_map(|(t, id)| URL_SAFE_NO_PAD.encode(format!("{t}:{id}"))),
            prop::collection::vec(any::<u8>(), 0..40).prop_map(|b| URL_SAFE_NO_PAD.encode(b)),
        ];
        prop::collection::hash_map(key, val, 0..8)
    }

    fn range_header() -> impl Strategy<Value = String> {
        let num = prop_oneof![
            any::<u64>().prop_map(|n| n.to_string()),
            (0u64..300).prop_map(|n| n.to_string()),
            Just(String::new()),
            Just("18446744073709551616".to_string()),
            Just("-0".to_string()),
            Just("+5".to_string()),
        ];
        let one = (num.clone(), prop::sample::select(vec!["-", "--", "", " - "]), num).prop_map(|(a, d, b)| format!("{a}{d}{b}"));
        prop_oneof![
            (prop::sample::select(vec!["bytes=", "BYTES=", "bytes =", "items=", "bytes=,", ""]), prop::collection::vec(one, 0..4))
                .prop_map(|(u, rs)| format!("{u}{}", rs.join(","))),
            "[ -~]{0,40}",
        ]
    }

    fn size() -> impl Strategy<Value = u64> {
        prop_oneof![Just(0u64), Just(1), Just(u64::MAX / 2), Just(u64::MAX), 0u64..1000, any::<u64>()]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 3000, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn filter_is_ok_or_400(q in query()) {
            match filter_from(&q) {
                Ok(f) => {
                    prop_assert!((1..=500).contains(&f.limit));
                    prop_assert!(q.keys().all(|k| FILTER_KEYS.contains(&k.as_str())));
                }
                Err(ApiError::BadRequest { code, .. }) => {
                    prop_assert!(["unknown_parameter", "invalid_parameter", "invalid_cursor"].contains(&code), "{code}");
                }
                Err(e) => prop_assert!(false, "not a 400: {e:?}"),
            }
        }

        #[test]
        fn range_is_inside_the_object_or_416(raw in range_header(), size in size()) {
            let Ok(v) = HeaderValue::from_str(&raw) else { return Ok(()) };
            let mut h = HeaderMap::new();
            h.insert(header::RANGE, v);
            match requested_range(&h, size) {
                Ok(None) => {}
                Ok(Some((start, len))) => {
                    prop_assert!(len >= 1, "empty range for {raw:?}");
                    prop_assert!(start.checked_add(len).is_some_and(|end| end <= size), "{raw:?} -> {start}+{len} outside {size}");
                }
                Err(ApiError::RangeNotSatisfiable(s)) => prop_assert_eq!(s, size),
                Err(e) => prop_assert!(false, "not a 416: {e:?}"),
            }
        }

        #[test]
        fn range_bytes_never_panic(raw in prop::collection::vec(any::<u8>(), 0..60), size in size()) {
            if let Ok(v) = HeaderValue::from_bytes(&raw) {
                let mut h = HeaderMap::new();
                h.insert(header::RANGE, v);
                let _ = requested_range(&h, size);
            }
        }
    }
}
