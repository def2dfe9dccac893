//! The destruction queue for archivists: `GET /destructions[?state=]`, `GET /destructions/{id}`
//! and `POST /destructions/{id}/approve {"reason"}`. Approval by the same archivist twice is
//! refused (409); the retention worker destroys an entry once its grace period is over and it has
//! the configured number of distinct approvals. Each pass of the worker is a batch with a
//! destruction certificate (`GET /destruction-batches`, `.../{batch}/certificate[.html]`); annual
//! statistics are `GET /reports/{year}[?format=csv]`.

use std::collections::HashMap;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::auth::Caller;
use super::{ApiError, AppState};
use crate::catalog::{AnnualReport, DestroyedRecording, Destruction};

/// The destruction queue (for the API description).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct DestructionQueue {
    /// The entries.
    items: Vec<Destruction>,
    /// Distinct archivists' approvals an entry needs (`retention.approvals`).
    approvals_required: i64,
}

/// The destruction batches (for the API description).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct BatchList {
    /// Newest first.
    items: Vec<crate::catalog::DestructionBatch>,
}

/// `GET /api/v1/destructions?state=pending|destroyed|cancelled`.
#[utoipa::path(
    get,
    path = "/destructions",
    tag = "retention",
    operation_id = "list_destructions",
    summary = "The destruction queue",
    description = "Entries of the destruction queue (archivist, auditor).",
    params(("state" = Option<String>, Query, description = "`pending`, `destroyed` or `cancelled`")),
    responses(
        (status = 200, description = "The queue", body = DestructionQueue),
        (status = 400, description = "`unknown_parameter` or `invalid_parameter`", body = super::error::ErrorBody),
        (status = 403, description = "Not an archivist or auditor", body = super::error::ErrorBody),
    ),
)]
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
#[utoipa::path(
    get,
    path = "/destructions/{id}",
    tag = "retention",
    operation_id = "get_destruction",
    summary = "One destruction queue entry",
    description = "Archivist, auditor.",
    params(("id" = String, Path, description = "Queue entry id")),
    responses(
        (status = 200, description = "The entry", body = Destruction),
        (status = 403, description = "Not an archivist or auditor", body = super::error::ErrorBody),
        (status = 404, description = "`destruction_not_found`", body = super::error::ErrorBody),
    ),
)]
pub async fn get_one(State(st): State<AppState>, caller: Caller, Path(id): Path<String>) -> Result<Json<Destruction>, ApiError> {
    caller.require(&["archivist", "auditor"])?;
    Ok(Json(st.catalog.destruction(&id).await.map_err(|_| ApiError::missing("destruction_not_found", format!("no destruction {id}")))?))
}

/// Body of an approval.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Approve {
    /// Why (required).
    reason: Option<String>,
}

/// `POST /api/v1/destructions/{id}/approve`.
#[utoipa::path(
    post,
    path = "/destructions/{id}/approve",
    tag = "retention",
    operation_id = "approve_destruction",
    summary = "Approve a destruction",
    description = "With a reason (archivist). The retention worker destroys an entry once its grace period is over and \
                   it has `retention.approvals` approvals from different archivists.",
    params(("id" = String, Path, description = "Queue entry id")),
    request_body = Approve,
    responses(
        (status = 200, description = "The entry with the approval", body = Destruction),
        (status = 400, description = "`reason_required`, `invalid_reason` or `invalid_body`", body = super::error::ErrorBody),
        (status = 403, description = "Not an archivist", body = super::error::ErrorBody),
        (status = 404, description = "`destruction_not_found`", body = super::error::ErrorBody),
        (status = 409, description = "`refused`: approved by this archivist already, or no longer pending", body = super::error::ErrorBody),
    ),
)]
pub async fn approve(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<Json<Approve>, JsonRejection>,
) -> Result<Json<Destruction>, ApiError> {
    caller.require(&["archivist"])?;
    let Json(a) = body.map_err(ApiError::from)?;
    let reason = super::updates::reason(a.reason, true)?.unwrap_or_default();
    st.catalog.destruction(&id).await.map_err(|_| ApiError::missing("destruction_not_found", format!("no destruction {id}")))?;
    Ok(Json(st.catalog.approve_destruction(&id, &caller.0.name, &reason).await?))
}

/// Most batches listed.
const BATCH_LIMIT: i64 = 1000;

/// `GET /api/v1/destruction-batches`: the batches of finished destructions, newest first. A caller
/// scoped to a unit sees the batches (and counts) of its unit's recordings only.
#[utoipa::path(
    get,
    path = "/destruction-batches",
    tag = "retention",
    operation_id = "list_destruction_batches",
    summary = "Destruction batches",
    description = "The batches of finished destructions, newest first (archivist, auditor; scoped to the caller's unit).",
    responses(
        (status = 200, description = "The batches", body = BatchList),
        (status = 403, description = "Not an archivist or auditor", body = super::error::ErrorBody),
    ),
)]
pub async fn batches(State(st): State<AppState>, caller: Caller) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(&["archivist", "auditor"])?;
    let mut items = st.catalog.destruction_batches(BATCH_LIMIT).await?;
    if !caller.0.unit.is_empty() {
        let mut scoped = Vec::with_capacity(items.len());
        for mut b in items {
            b.count =
                st.catalog.destruction_batch(&b.batch).await?.iter().filter(|d| caller.may_see(None, d.unit.as_deref())).count() as i64;
            if b.count > 0 {
                scoped.push(b);
            }
        }
        items = scoped;
    }
    Ok(Json(serde_json::json!({ "items": items })))
}

/// The certificate of a batch as JSON, with `certificate_sha256` = hex SHA-256 of the RFC 8785
/// canonical JSON of everything else (so a printed copy can be matched), and those canonical bytes.
async fn certificate_of(st: &AppState, caller: &Caller, batch: &str) -> Result<(serde_json::Value, Vec<u8>), ApiError> {
    caller.require(&["archivist", "auditor"])?;
    let items: Vec<DestroyedRecording> =
        st.catalog.destruction_batch(batch).await?.into_iter().filter(|d| caller.may_see(None, d.unit.as_deref())).collect();
    if items.is_empty() {
        return Err(ApiError::missing("batch_not_found", format!("no destruction batch {batch}")));
    }
    let mut nodes: Vec<&str> = items.iter().filter_map(|d| d.destroyed_by.as_deref()).collect();
    nodes.sort_unstable();
    nodes.dedup();
    let recordings: Vec<serde_json::Value> = items
        .iter()
        .map(|d| {
            serde_json::json!({
                "id": d.destruction.recording_id,
                "sha256": d.sha256,
                "size": d.size,
                "original_name": d.original_name,
                "unit": d.unit,
                "category": d.category,
                "started_at": d.started_at,
                "archived_at": d.archived_at,
                "rule": d.destruction.rule,
                "retention_until": d.destruction.retention_until,
                "queued_at": d.destruction.queued_at,
                "approvals": d.destruction.approvals,
                "destroyed_at": d.destruction.finished_at,
                "destroyed_by": d.destroyed_by,
                "destruction": d.destruction.id,
                "objects": d.destruction.objects,
            })
        })
        .collect();
    let mut cert = serde_json::json!({
        "certificate": "destruction",
        "batch": batch,
        "generated_at": crate::custody::format_at(crate::catalog::now_micros()),
        "generated_by": caller.0.name,
        "node": nodes.join(", "),
        "scope": if caller.0.unit.is_empty() { "/" } else { caller.0.unit.as_str() },
        "finished_at": items.iter().filter_map(|d| d.destruction.finished_at.clone()).max(),
        "count": recordings.len(),
        "recordings": recordings,
    });
    let canonical = crate::custody::canonical_value(&cert);
    cert["certificate_sha256"] = hex::encode(Sha256::digest(&canonical)).into();
    Ok((cert, canonical))
}

/// `GET /api/v1/destruction-batches/{batch}/certificate`.
#[utoipa::path(
    get,
    path = "/destruction-batches/{batch}/certificate",
    tag = "retention",
    operation_id = "get_destruction_certificate",
    summary = "A batch's destruction certificate",
    description = "The certificate as JSON, with `certificate_sha256`: the SHA-256 of the RFC 8785 canonical JSON of the \
                   rest (archivist, auditor).",
    params(("batch" = String, Path, description = "Batch id")),
    responses(
        (status = 200, description = "The certificate", body = Object),
        (status = 403, description = "Not an archivist or auditor", body = super::error::ErrorBody),
        (status = 404, description = "`batch_not_found`", body = super::error::ErrorBody),
    ),
)]
pub async fn certificate(
    State(st): State<AppState>,
    caller: Caller,
    Path(batch): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    Ok(Json(certificate_of(&st, &caller, &batch).await?.0))
}

/// `GET /api/v1/destruction-batches/{batch}/certificate.html`: the same certificate as a printable
/// page, with the canonical JSON whose SHA-256 it shows printed at the end.
#[utoipa::path(
    get,
    path = "/destruction-batches/{batch}/certificate.html",
    tag = "retention",
    operation_id = "get_destruction_certificate_html",
    summary = "A batch's destruction certificate, printable",
    description = "The same certificate as a printable HTML page, with the canonical JSON whose SHA-256 it shows.",
    params(("batch" = String, Path, description = "Batch id")),
    responses(
        (status = 200, description = "The page", content_type = "text/html", body = String),
        (status = 403, description = "Not an archivist or auditor", body = super::error::ErrorBody),
        (status = 404, description = "`batch_not_found`", body = super::error::ErrorBody),
    ),
)]
pub async fn certificate_html(State(st): State<AppState>, caller: Caller, Path(batch): Path<String>) -> Result<Response, ApiError> {
    let (cert, canonical) = certificate_of(&st, &caller, &batch).await?;
    let headers = [
        (header::CONTENT_TYPE, "text/html; charset=utf-8"),
        (header::CONTENT_SECURITY_POLICY, "default-src 'none'; style-src 'unsafe-inline'"),
    ];
    Ok((headers, certificate_page(&cert, &String::from_utf8_lossy(&canonical))).into_response())
}

/// Escapes text for HTML element content and quoted attribute values.
fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A JSON value as escaped text (strings without quotes, null as a dash).
fn cell(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => "–".into(),
        serde_json::Value::String(s) => html_escape(s),
        other => html_escape(&other.to_string()),
    }
}

fn certificate_page(cert: &serde_json::Value, canonical: &str) -> String {
    let mut rows = String::new();
    for r in cert["recordings"].as_array().into_iter().flatten() {
        let approvals: Vec<String> = r["approvals"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|a| format!("{} at {}: {}", cell(&a["archivist"]), cell(&a["at"]), cell(&a["reason"])))
            .collect();
        let objects: Vec<String> = r["objects"].as_array().into_iter().flatten().map(|k| format!("<code>{}</code>", cell(k))).collect();
        rows.push_str(&format!(
            "<tr><td><code>{}</code><br>{}<br>{} bytes</td><td class=\"h\"><code>{}</code></td><td>{}<br>{}</td>\
             <td>started {}<br>archived {}</td><td>{}<br>until {}<br>queued {}</td><td>{}</td><td>{}<br>by {}</td><td>{}</td></tr>\n",
            cell(&r["id"]),
            cell(&r["original_name"]),
            cell(&r["size"]),
            cell(&r["sha256"]),
            cell(&r["unit"]),
            cell(&r["category"]),
            cell(&r["started_at"]),
            cell(&r["archived_at"]),
            cell(&r["rule"]),
            cell(&r["retention_until"]),
            cell(&r["queued_at"]),
            approvals.join("<br>"),
            cell(&r["destroyed_at"]),
            cell(&r["destroyed_by"]),
            objects.join("<br>"),
        ));
    }
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Destruction certificate {batch}</title>\n<style>\
         body{{font-family:sans-serif;font-size:10pt;margin:2em}}h1{{font-size:16pt}}table{{border-collapse:collapse;width:100%}}\
         th,td{{border:1px solid #444;padding:3px 5px;vertical-align:top;text-align:left}}th{{background:#eee}}\
         td.h,pre{{word-break:break-all;white-space:pre-wrap}}code,pre{{font-size:8pt}}dl{{display:grid;grid-template-columns:max-content auto;gap:2px 1em}}\
         dt{{font-weight:bold}}dd{{margin:0}}@media print{{body{{margin:0}}tr{{break-inside:avoid}}}}</style></head>\n<body>\n\
         <h1>Destruction certificate</h1>\n<p>The recordings below were destroyed: every stored object listed was deleted from the \
         archive; the catalog keeps each recording's tombstone (hash, size, metadata) and the custody log its <code>destroyed</code> event.</p>\n\
         <dl><dt>Batch</dt><dd><code>{batch}</code></dd><dt>Recordings</dt><dd>{count}</dd><dt>Finished</dt><dd>{finished}</dd>\
         <dt>Destroyed by</dt><dd>{node}</dd><dt>Scope</dt><dd>{scope}</dd><dt>Generated</dt><dd>{generated} by {by}</dd>\
         <dt>Certificate SHA-256</dt><dd><code>{sha}</code></dd></dl>\n\
         <table><thead><tr><th>Recording</th><th>SHA-256</th><th>Unit, category</th><th>Times</th><th>Rule</th><th>Approvals</th>\
         <th>Destroyed</th><th>Deleted objects</th></tr></thead>\n<tbody>\n{rows}</tbody></table>\n\
         <h2>Canonical form</h2>\n<p>The certificate SHA-256 is the SHA-256 of this text (RFC 8785 canonical JSON of the certificate \
         without <code>certificate_sha256</code>), as served by <code>GET /api/v1/destruction-batches/{batch}/certificate</code> at the \
         time above.</p>\n<pre>{canonical}</pre>\n</body></html>\n",
        batch = cell(&cert["batch"]),
        count = cell(&cert["count"]),
        finished = cell(&cert["finished_at"]),
        node = cell(&cert["node"]),
        scope = cell(&cert["scope"]),
        generated = cell(&cert["generated_at"]),
        by = cell(&cert["generated_by"]),
        sha = cell(&cert["certificate_sha256"]),
        canonical = html_escape(canonical),
    )
}

/// `GET /api/v1/reports/{year}[?format=json|csv]`: annual statistics per unit and category
/// (archivist, auditor; a caller scoped to a unit gets its unit's rows only).
#[utoipa::path(
    get,
    path = "/reports/{year}",
    tag = "retention",
    operation_id = "get_annual_report",
    summary = "Annual statistics",
    description = "Per unit and category (archivist, auditor; scoped to the caller's unit), as JSON or CSV.",
    params(
        ("year" = String, Path, description = "The year, e.g. 2026"),
        ("format" = Option<String>, Query, description = "`json` (default) or `csv`"),
    ),
    responses(
        (status = 200, description = "The report", content((Object = "application/json"), (String = "text/csv"))),
        (status = 400, description = "`unknown_parameter` or `invalid_parameter`", body = super::error::ErrorBody),
        (status = 403, description = "Not an archivist or auditor", body = super::error::ErrorBody),
    ),
)]
pub async fn report(
    State(st): State<AppState>,
    caller: Caller,
    Path(year): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    caller.require(&["archivist", "auditor"])?;
    if let Some(k) = q.keys().find(|k| *k != "format") {
        return Err(ApiError::bad("unknown_parameter", format!("unknown parameter {k:?}")));
    }
    let csv = match q.get("format").map(String::as_str) {
        None | Some("json") => false,
        Some("csv") => true,
        Some(_) => return Err(ApiError::bad("invalid_parameter", "format: expected json or csv")),
    };
    let year = crate::catalog::report::parse_year(&year).map_err(|e| ApiError::bad("invalid_parameter", format!("year: {e}")))?;
    let r = AnnualReport::build(&*st.catalog, year).await?.retain(|u| caller.may_see(None, (!u.is_empty()).then_some(u)));
    if csv {
        let disposition = format!("attachment; filename=\"evidenced-report-{year}.csv\"");
        Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()), (header::CONTENT_DISPOSITION, disposition)], r.to_csv())
            .into_response())
    } else {
        Ok(Json(r).into_response())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_certificate_page_escapes_every_value() {
        assert_eq!(html_escape(r#"<a href="x">&'</a>"#), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;&lt;/a&gt;");
        let cert = serde_json::json!({
            "batch": "b<1>",
            "count": 1,
            "recordings": [{
                "id": "r1", "original_name": "<script>alert(1)</script>.mp4", "unit": null, "sha256": "ab",
                "approvals": [{"archivist": "a&b", "at": "t", "reason": "\"why\""}],
                "objects": ["k<1>"],
            }],
        });
        let page = certificate_page(&cert, r#"{"batch":"b<1>"}"#);
        assert!(!page.contains("<script>") && !page.contains("b<1>") && !page.contains("k<1>"), "{page}");
        for want in
            ["&lt;script&gt;alert(1)&lt;/script&gt;.mp4", "a&amp;b", "&quot;why&quot;", "{&quot;batch&quot;:&quot;b&lt;1&gt;&quot;}"]
        {
            assert!(page.contains(want), "{want} in {page}");
        }
    }
}
