//! `GET /api/v1/events`: live arrivals and changes as Server-Sent Events.
//!
//! The custody log is the event feed. Every change to a recording already appends a custody entry
//! (archived, derived, linked, classified, ...), and the entry's `seq` is the SSE `id`, so a client
//! that reconnects with `Last-Event-ID` (or `?after=SEQ`) resumes exactly where it stopped, even on
//! another node. Without either the stream starts at the current chain head (new events only).
//!
//! Each connection polls the catalog (`custody_events(None, after, 200)`, an indexed range scan
//! by `seq`) every 250 ms, at once again while pages come back full. Polling the shared catalog,
//! rather than an in-process signal or PostgreSQL `LISTEN/NOTIFY`, sees what every node appends and
//! works the same on SQLite and PostgreSQL; an in-process `tokio::sync::Notify` could later wake
//! the poll early for this node's own changes. The loop is the response body's stream: it runs
//! only while the client reads and stops when the connection closes (the stream is dropped). At
//! most one page of events is held per connection.
//!
//! For each entry of a recording-changing kind ([`CHANGES`]) the recording is loaded in its
//! current state and sent, as `GET /recordings/{id}` shows it plus `"change": KIND`, as
//! `event: recording` with `id: SEQ` — only when the caller may see it (judged on that current
//! state). Entries the caller may not see, and entries of other kinds, still move the position: a
//! page that ends with such entries is followed by a bare `id: SEQ` message (no data, so no event
//! fires in a browser, but `lastEventId` advances) so a reconnect does not scan them again. Nothing
//! is recorded in the custody log per message: an `accessed` entry per message would feed the
//! stream itself; a client fetching a recording it was told about is audited as usual.
//!
//! Keep-alive comments every 15 s; `Cache-Control: no-cache` and `X-Accel-Buffering: no` so
//! proxies do not hold messages back. Admins see no footage, so they get 403 as on `/recordings`.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream};

use super::auth::Caller;
use super::recordings::present;
use super::{ApiError, AppState};
use crate::catalog::{CatalogError, Recording, RecordingFilter};
use crate::custody::kind;

/// Custody kinds that announce a new recording or a change to one; each becomes an event.
pub const CHANGES: [&str; 13] = [
    kind::ARCHIVED,
    kind::DERIVED,
    kind::LINKED,
    kind::UNLINKED,
    kind::CLASSIFIED,
    kind::CATEGORISED,
    kind::HELD,
    kind::HOLD_RELEASED,
    kind::ATTRIBUTED,
    kind::DESTROYED,
    kind::CLIPPED,
    kind::TIMESTAMPED,
    kind::QUEUED_FOR_DESTRUCTION,
];

/// How often an idle connection asks the catalog for new entries.
const POLL: Duration = Duration::from_millis(250);
/// Custody entries read per poll (and so the most events held per connection).
const PAGE: i64 = 200;
/// Keep-alive comment interval.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Longest wait between retries while the catalog is unavailable.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// `GET /api/v1/events` (`?after=SEQ`, `Last-Event-ID: SEQ`; the header wins, as a browser's
/// `EventSource` reconnects to the same URL with the header added).
#[utoipa::path(
    get,
    path = "/events",
    tag = "custody",
    operation_id = "stream_events",
    summary = "Live events (Server-Sent Events)",
    description = "`text/event-stream`: `event: recording`, `id:` a custody sequence number, `data:` the recording as \
                   `GET /api/v1/recordings/{id}` shows it plus `\"change\"` (the custody kind); keep-alive comments every \
                   15 s. Resumes after `Last-Event-ID` (or `?after=`), else starts at the chain head. Admins get 403.",
    params(
        ("after" = Option<i64>, Query, minimum = 0, description = "Start after this custody sequence number"),
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this id (wins over `after`)"),
    ),
    responses(
        (status = 200, description = "The event stream", content_type = "text/event-stream", body = String),
        (status = 400, description = "`unknown_parameter` or `invalid_parameter`", body = super::error::ErrorBody),
        (status = 403, description = "The role sees no footage", body = super::error::ErrorBody),
    ),
)]
pub async fn stream(
    State(st): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    // Same scope rule as the recording list: admins see no footage (403).
    caller.scope(&mut RecordingFilter::default())?;
    let after = start_after(&st, &headers, &q).await?;
    let feed = Feed { st, caller, after, sent: after, ready: VecDeque::new(), hurry: true, backoff: POLL };
    let sse = Sse::new(feed.into_stream()).keep_alive(KeepAlive::new().interval(KEEP_ALIVE));
    Ok(([(HeaderName::from_static("x-accel-buffering"), HeaderValue::from_static("no"))], sse).into_response())
}

/// A sequence number from the query or the header.
fn parse_seq(what: &str, v: &str) -> Result<i64, ApiError> {
    v.trim()
        .parse::<i64>()
        .ok()
        .filter(|n| *n >= 0)
        .ok_or_else(|| ApiError::bad("invalid_parameter", format!("{what}: expected a custody sequence number, got {v:?}")))
}

/// Where the stream starts: after `Last-Event-ID`, else after `?after=`, else at the chain head.
async fn start_after(st: &AppState, headers: &HeaderMap, q: &HashMap<String, String>) -> Result<i64, ApiError> {
    if let Some(k) = q.keys().find(|k| k.as_str() != "after") {
        return Err(ApiError::bad("unknown_parameter", format!("unknown parameter {k:?}")));
    }
    if let Some(h) = headers.get("last-event-id") {
        let v = h.to_str().map_err(|_| ApiError::bad("invalid_parameter", "Last-Event-ID: expected a custody sequence number"))?;
        if !v.trim().is_empty() {
            return parse_seq("Last-Event-ID", v);
        }
    }
    if let Some(v) = q.get("after").filter(|v| !v.is_empty()) {
        return parse_seq("after", v);
    }
    Ok(st.catalog.chain_head().await?.map_or(0, |(seq, _)| seq))
}

/// One connection's position in the custody log.
struct Feed {
    st: AppState,
    caller: Caller,
    /// The last custody seq handled (sent, skipped or of another kind).
    after: i64,
    /// The last id the client was given.
    sent: i64,
    /// Events of the current page not yet sent (at most one page).
    ready: VecDeque<Event>,
    /// Poll again without waiting (first poll, or the last page was full).
    hurry: bool,
    /// Wait before the next retry while the catalog is unavailable.
    backoff: Duration,
}

impl Feed {
    /// The event stream; ends only when the catalog fails for good (the client then reconnects
    /// with its `Last-Event-ID`), or is dropped with the connection.
    fn into_stream(self) -> impl Stream<Item = Result<Event, Infallible>> + Send + 'static {
        stream::unfold(self, |mut f| async move {
            loop {
                if let Some(e) = f.ready.pop_front() {
                    return Some((Ok(e), f));
                }
                if !f.hurry {
                    tokio::time::sleep(POLL).await;
                }
                match f.poll().await {
                    Ok(()) => f.backoff = POLL,
                    Err(e) if e.is_transient() => {
                        tracing::warn!(error = %e, after = f.after, "event stream: catalog unavailable; retrying");
                        f.hurry = false;
                        tokio::time::sleep(f.backoff).await;
                        f.backoff = (f.backoff * 2).min(MAX_BACKOFF);
                    }
                    Err(e) => {
                        tracing::error!(error = %e, after = f.after, "event stream: cannot read the custody log; closing");
                        // Whatever the page already produced is lost with the stream; the client
                        // resumes from the last id it received.
                        return None;
                    }
                }
            }
        })
    }

    /// Reads one page after the position and queues its events. On a transient failure the
    /// entries handled so far stay handled (their events are queued) and the rest is retried.
    async fn poll(&mut self) -> Result<(), CatalogError> {
        let page = self.st.catalog.custody_events(None, self.after, PAGE).await?;
        self.hurry = page.len() as i64 >= PAGE;
        for entry in page {
            let b = &entry.body;
            if let Some(rid) = b.recording_id.as_deref().filter(|_| CHANGES.contains(&b.kind.as_str())) {
                let found = match self.st.catalog.recording(rid).await {
                    Ok(r) => super::recordings::listed(&self.st, &self.caller, &r).await.map(|ok| (r, ok)),
                    Err(e) => Err(e),
                };
                match found {
                    Ok((r, true)) => {
                        if let Some(e) = recording_event(&self.st, r, &b.kind, b.seq) {
                            self.ready.push_back(e);
                            self.sent = b.seq;
                        }
                    }
                    Ok(_) | Err(CatalogError::NotFound(_)) => {}
                    Err(e) if e.is_transient() => {
                        self.hurry = true;
                        return if self.ready.is_empty() { Err(e) } else { Ok(()) };
                    }
                    Err(e) => tracing::warn!(error = %e, seq = b.seq, recording = rid, "event stream: cannot load the recording; skipped"),
                }
            }
            self.after = b.seq;
        }
        if self.after > self.sent {
            self.ready.push_back(Event::default().id(self.after.to_string()));
            self.sent = self.after;
        }
        Ok(())
    }
}

/// `event: recording`, `id: SEQ`, `data:` the recording as the API shows it plus `"change"`.
fn recording_event(st: &AppState, r: Recording, change: &str, seq: i64) -> Option<Event> {
    let mut v = match serde_json::to_value(present(st, r)) {
        Ok(v) => v,
        Err(e) => {
            tracing::error!(error = %e, seq, "event stream: cannot serialize a recording; skipped");
            return None;
        }
    };
    if let Some(m) = v.as_object_mut() {
        m.insert("change".into(), change.into());
    }
    Some(Event::default().event("recording").id(seq.to_string()).data(v.to_string()))
}
