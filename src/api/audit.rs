//! `GET /api/v1/audit` (auditors): the accesses to footage and the security events of the
//! custody log — who, what, when, from where, why — newest first, with cursor paging. An
//! auditor of a unit sees the events on its recordings and the security events of its
//! principals; an auditor at the root sees everything.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Query, State};

use super::auth::Caller;
use super::recordings::{parse_limit, parse_time};
use super::{ApiError, AppState};
use crate::catalog::AuditFilter;
use crate::custody::AUDIT_KINDS;

pub(super) const KEYS: [&str; 7] = ["actor", "recording", "kind", "from", "to", "limit", "cursor"];

/// Parses the audit query (`actor`, `recording`, `kind` (comma-separated), `from`, `to`,
/// `limit` 1–500, `cursor`).
fn filter_from(q: &HashMap<String, String>) -> Result<AuditFilter, ApiError> {
    if let Some(k) = q.keys().find(|k| !KEYS.contains(&k.as_str())) {
        return Err(ApiError::bad("unknown_parameter", format!("unknown parameter {k:?}")));
    }
    let s = |k: &str| q.get(k).map(|v| v.trim()).filter(|v| !v.is_empty()).map(str::to_string);
    let mut f = AuditFilter { actor: s("actor"), recording: s("recording"), limit: 100, ..Default::default() };
    if let Some(kinds) = s("kind") {
        for k in kinds.split(',').map(str::trim) {
            if !AUDIT_KINDS.contains(&k) {
                return Err(ApiError::bad("invalid_parameter", format!("kind: {k:?} is not one of {}", AUDIT_KINDS.join(", "))));
            }
            f.kinds.push(k.to_string());
        }
    }
    f.from = s("from").map(|v| parse_time("from", &v)).transpose()?;
    f.to = s("to").map(|v| parse_time("to", &v)).transpose()?;
    if let Some(v) = s("limit") {
        f.limit = parse_limit(&v)?;
    }
    if let Some(v) = s("cursor") {
        f.before_seq = Some(
            v.parse::<i64>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| ApiError::bad("invalid_cursor", "cursor: not a cursor from next_cursor"))?,
        );
    }
    Ok(f)
}

/// `GET /api/v1/audit?actor=&recording=&kind=&from=&to=&limit=&cursor=` → `{"items": [custody
/// events], "next_cursor"}`.
#[utoipa::path(
    get,
    path = "/audit",
    tag = "custody",
    operation_id = "list_audit_events",
    summary = "The audit trail",
    description = "Accesses to footage and security events (sign-ins, failed authentications, grants, principal \
                   changes), newest first, with cursor paging (auditors; scoped to the auditor's unit).",
    params(
        ("actor" = Option<String>, Query, description = "Who (a principal name)"),
        ("recording" = Option<String>, Query, description = "Recording id"),
        ("kind" = Option<String>, Query, description = "Custody kinds, comma-separated (`accessed`, `downloaded`, `signed_in`, ...)"),
        ("from" = Option<String>, Query, format = DateTime, description = "At or after this RFC 3339 time"),
        ("to" = Option<String>, Query, format = DateTime, description = "Before this RFC 3339 time"),
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 500, description = "Page size, 1 to 500 (default 100)"),
        ("cursor" = Option<String>, Query, description = "The `next_cursor` of the previous page"),
    ),
    responses(
        (status = 200, description = "A page of custody events", body = super::openapi::AuditPage),
        (status = 400, description = "`unknown_parameter`, `invalid_parameter` or `invalid_cursor`", body = super::error::ErrorBody),
        (status = 403, description = "Not an auditor", body = super::error::ErrorBody),
    ),
)]
pub async fn list(
    State(st): State<AppState>,
    caller: Caller,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(&["auditor"])?;
    let mut f = filter_from(&q)?;
    f.scope_unit = Some(caller.0.unit.clone());
    let items = st.catalog.audit_events(&f).await?;
    let next = (items.len() as i64 == f.limit).then(|| items.last().map(|e| e.body.seq.to_string())).flatten();
    Ok(Json(serde_json::json!({"items": items, "next_cursor": next})))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn parses_and_refuses() {
        let f = filter_from(&q(&[("actor", "sup"), ("kind", "accessed,signed_in"), ("limit", "5"), ("cursor", "42")])).unwrap();
        assert_eq!((f.actor.as_deref(), f.kinds.len(), f.limit, f.before_seq), (Some("sup"), 2, 5, Some(42)));
        for bad in [&[("kind", "archived")][..], &[("limit", "0")], &[("cursor", "x")], &[("from", "yesterday")], &[("who", "x")]] {
            assert!(matches!(filter_from(&q(bad)), Err(ApiError::BadRequest { .. })), "{bad:?}");
        }
    }
}
