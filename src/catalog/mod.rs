//! The catalog: recordings, the ingest journal (sightings), the custody log, the job queue and API
//! principals, behind one `Catalog` trait with a SQLite and a PostgreSQL implementation that share
//! their SQL (`sql.rs`). Times are integer microseconds UTC; every multi-row change is one
//! transaction, and every custody append serializes on the chain head.

pub mod access;
mod access_sql;
pub mod cases;
mod cases_sql;
pub mod custody;
mod custody_sql;
pub mod nodes;
mod nodes_sql;
mod postgres;
pub mod rebuild;
mod rebuild_sql;
pub mod report;
mod report_sql;
pub mod retention;
mod retention_sql;
mod sql;
mod sqlite;
pub mod updates;
mod updates_sql;

use std::sync::Arc;

use async_trait::async_trait;
use serde::Serialize;

pub use access::{AccessRecords, AuditFilter, Grant, NewSession, Session};
pub use cases::{Case, CaseRecords, CaseUpdate, NewCase};
pub use custody::{Checkpoint, CustodyRecords, NodeKey, Timestamp};
pub use nodes::{NodeInfo, NodeRecords, NodeStatus};
pub use postgres::PgCatalog;
pub use rebuild::RebuildRecords;
pub use report::{AnnualReport, ReportRecords};
pub use retention::{DestroyedRecording, Destruction, DestructionBatch, RetentionRecords};
pub use sqlite::SqliteCatalog;
pub use updates::{AttributionFix, RecordingUpdates};

/// Catalog failures. `Unavailable` is transient (retry later); the rest are bugs or bad input.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The database cannot be reached or is busy; callers wait and retry.
    #[error("catalog unavailable: {0}")]
    Unavailable(sqlx::Error),
    /// A query failed.
    #[error("catalog query failed: {0}")]
    Query(sqlx::Error),
    /// Migrations failed.
    #[error("catalog migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A uniqueness rule was violated (e.g. a principal name already taken).
    #[error("{0} already exists")]
    Conflict(String),
    /// A row that should exist does not.
    #[error("{0} not found")]
    NotFound(String),
    /// A job lease was lost to another worker; the result must not be committed.
    #[error("lease on job {0} lost")]
    LeaseLost(String),
    /// A stored value could not be decoded.
    #[error("corrupt catalog value: {0}")]
    Corrupt(String),
    /// The change is not allowed in the current state (e.g. the same archivist approving twice).
    #[error("refused: {0}")]
    Refused(String),
}

impl From<sqlx::Error> for CatalogError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Protocol(_)
            | sqlx::Error::WorkerCrashed => CatalogError::Unavailable(e),
            sqlx::Error::Database(d) if d.is_unique_violation() => CatalogError::Conflict(d.message().to_string()),
            // SQLITE_BUSY / SQLITE_LOCKED and PostgreSQL's "cannot connect now"/admin shutdown.
            sqlx::Error::Database(d)
                if matches!(d.code().as_deref(), Some("5") | Some("6") | Some("57P01") | Some("57P03") | Some("53300")) =>
            {
                CatalogError::Unavailable(e)
            }
            _ => CatalogError::Query(e),
        }
    }
}

impl CatalogError {
    /// True when waiting and retrying may help (the database is down or busy).
    pub fn is_transient(&self) -> bool {
        matches!(self, CatalogError::Unavailable(_))
    }
}

/// Convenience alias.
pub type Result<T, E = CatalogError> = std::result::Result<T, E>;

/// Current time in catalog units: the catalog's clock once this process has measured it (see
/// [`crate::clock`]), the system clock before.
pub fn now_micros() -> i64 {
    crate::clock::now_micros()
}

/// Identity of a file on a dock at one instant; any change makes it a new sighting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Fingerprint {
    /// Device number of the filesystem.
    pub dev: i64,
    /// Inode number.
    pub ino: i64,
    /// Size in bytes.
    pub size: i64,
    /// Modification time, nanoseconds.
    pub mtime_ns: i64,
    /// Status-change time, nanoseconds.
    pub ctime_ns: i64,
}

/// Ingest progress of one sighting (the journal state machine).
pub mod sighting_state {
    /// Seen and settled; not yet (fully) uploaded.
    pub const DISCOVERED: &str = "discovered";
    /// Archived as a new recording; dock copy not yet released.
    pub const ARCHIVED: &str = "archived";
    /// Bytes already archived; dock copy not yet released.
    pub const DUPLICATE: &str = "duplicate";
    /// Dock copy deleted after verification.
    pub const RELEASED: &str = "released";
    /// The file changed or vanished before it was read to the end; a new sighting will follow.
    pub const CHANGED: &str = "changed";
    /// Archived, but the dock copy changed before release; it was left for a new sighting.
    pub const SUPERSEDED: &str = "superseded";
    /// An empty file (recorded once, left on the dock).
    pub const EMPTY: &str = "empty";
}

/// A row of the ingest journal: one file snapshot on one dock.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sighting {
    /// Journal id; also the id the recording gets when this sighting archives new bytes.
    pub id: String,
    /// The recording it became or matched, once known.
    pub recording_id: Option<String>,
    /// The node that watches the dock.
    pub node: String,
    /// Dock name.
    pub dock: String,
    /// Raw path bytes (absolute), as the filesystem gave them.
    #[serde(skip)]
    pub path: Vec<u8>,
    /// The path as text, invalid UTF-8 replaced, for people.
    pub path_display: String,
    /// The snapshot that is hashed and later re-checked before release.
    #[serde(skip)]
    pub fingerprint: Fingerprint,
    /// See [`sighting_state`].
    pub state: String,
    /// Object key the upload writes to.
    pub object_key: Option<String>,
    /// A journaled multipart upload id, so a crash can abort it.
    pub upload_id: Option<String>,
    /// Failed attempts so far (drives backoff).
    pub attempts: i64,
    /// Not retried before this time.
    pub next_attempt_at: i64,
    /// The last failure, for operators.
    pub last_error: Option<String>,
    /// When it was first seen settled.
    pub seen_at: i64,
    /// When the dock copy may be deleted (`keep:Nd`), if scheduled.
    pub release_after: Option<i64>,
    /// When the dock copy was deleted.
    pub released_at: Option<i64>,
}

/// A new sighting to journal.
#[derive(Debug, Clone)]
pub struct NewSighting {
    /// Node watching the dock.
    pub node: String,
    /// Dock name.
    pub dock: String,
    /// Raw absolute path bytes.
    pub path: Vec<u8>,
    /// Lossy display form.
    pub path_display: String,
    /// Snapshot.
    pub fingerprint: Fingerprint,
    /// Custody actor.
    pub actor: String,
}

/// Everything known about a recording when its original is archived.
#[derive(Debug, Clone, Default, Serialize)]
pub struct NewRecording {
    /// SHA-256 of the original (hex).
    pub sha256: String,
    /// Size in bytes.
    pub size: i64,
    /// Key of the original in the store.
    pub object_key: String,
    /// Key of the manifest object beside it.
    pub manifest_key: String,
    /// File name as docked (lossy UTF-8).
    pub original_name: String,
    /// Lower-case extension without dot.
    pub extension: String,
    /// Attribution result.
    pub attribution: crate::ingest::attribution::Attribution,
    /// Node that archived it.
    pub node: String,
    /// Queue an RFC 3161 time-stamp request with the commit (a TSA is configured).
    pub timestamp: bool,
}

/// Outcome of committing an archived upload.
#[derive(Debug, Clone, PartialEq)]
pub enum ArchiveOutcome {
    /// A new recording with this id.
    Archived(String),
    /// The bytes were already archived as this recording; the new upload is redundant.
    Duplicate(String),
}

/// A recording as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Recording {
    /// Stable id.
    pub id: String,
    /// SHA-256 of the original, hex.
    pub sha256: String,
    /// Size in bytes.
    pub size: i64,
    /// Store key of the original (not shown in the API).
    #[serde(skip)]
    pub object_key: String,
    /// Store key of the manifest (not shown in the API).
    #[serde(skip)]
    pub manifest_key: String,
    /// Name as docked.
    pub original_name: String,
    /// Extension, lower case.
    pub extension: String,
    /// Camera serial.
    pub device: Option<String>,
    /// Officer id.
    pub officer: Option<String>,
    /// Unit path such as `JS/NJ/XW`.
    pub unit: Option<String>,
    /// Start time, RFC 3339.
    pub started_at: Option<String>,
    /// End time, RFC 3339.
    pub ended_at: Option<String>,
    /// Duration in milliseconds.
    pub duration_ms: Option<i64>,
    /// GPS position from the sidecar or container.
    pub location: Option<serde_json::Value>,
    /// Case ids named at docking.
    pub cases: Vec<String>,
    /// Retention category.
    pub category: String,
    /// `normal`, `privacy`, `trade_secret`, `state_secret`.
    pub classification: String,
    /// Attribution is missing or conflicting.
    pub needs_review: bool,
    /// Why it needs review.
    pub review_reasons: Vec<String>,
    /// `archived`, `pending_destruction`, `destroyed`.
    pub state: String,
    /// `pending`, `ready`, `failed`.
    pub media_state: String,
    /// `media_state == "ready"`.
    pub playable: bool,
    /// Why media derivation failed (the original stays archived).
    pub media_error: Option<String>,
    /// Partial-decode note, e.g. "decoded 3.0 s of 6.0 s".
    pub media_warning: Option<String>,
    /// Probe results.
    pub media: Option<serde_json::Value>,
    /// Where and when it was seen on docks.
    pub sightings: Vec<SightingView>,
    /// When it was archived, RFC 3339.
    pub archived_at: String,
    /// Retention end (set by the retention issue).
    pub retention_until: Option<String>,
    /// Kept forever (set by the retention issue).
    pub retention_permanent: bool,
    /// When the retention clock started (the later of start and archiving), micros.
    #[serde(skip)]
    pub retention_from: i64,
    /// Under legal hold (set by the retention issue).
    pub legal_hold: bool,
    /// Has an RFC 3161 token (set by the custody issue).
    pub timestamped: bool,
    /// How each field was attributed.
    pub attribution: serde_json::Value,
    /// Sort key (start if known and plausible, else archive time); cursor paging uses it.
    #[serde(skip)]
    pub sort_at: i64,
    /// The browser-playable proxy, once made.
    #[serde(skip)]
    pub proxy: Option<ObjectRef>,
    /// The poster frame, once made (never for audio).
    #[serde(skip)]
    pub poster: Option<ObjectRef>,
}

/// A stored derivative object.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ObjectRef {
    /// Store key.
    pub key: String,
    /// SHA-256 hex of its bytes.
    pub sha256: String,
    /// Size in bytes.
    pub size: i64,
    /// MIME type served.
    pub content_type: String,
}

/// The outcome of deriving media for a recording.
#[derive(Debug, Clone, Default)]
pub struct MediaUpdate {
    /// `ready` or `failed`.
    pub state: String,
    /// Probe results.
    pub media: Option<serde_json::Value>,
    /// Why it failed.
    pub error: Option<String>,
    /// Partial decode note.
    pub warning: Option<String>,
    /// The proxy.
    pub proxy: Option<ObjectRef>,
    /// The poster.
    pub poster: Option<ObjectRef>,
    /// Start time from the container, used only when attribution had none.
    pub started_at: Option<i64>,
    /// Position from the container, used only when attribution had none.
    pub gps: Option<(f64, f64)>,
    /// Duration from the container, used only when attribution had none.
    pub duration_ms: Option<i64>,
}

/// The details of a `derived` custody entry: everything [`MediaUpdate`] set, so the entry alone
/// restores the recording's media columns (`evidenced rebuild`).
pub fn media_details(u: &MediaUpdate) -> serde_json::Value {
    serde_json::json!({
        "media_state": u.state, "error": u.error, "warning": u.warning,
        "proxy": u.proxy, "poster": u.poster, "media": u.media,
        "started_at": u.started_at.map(crate::custody::format_at),
        "gps": u.gps.map(|(lat, lon)| serde_json::json!({"lat": lat, "lon": lon})),
        "duration_ms": u.duration_ms,
    })
}

/// The [`MediaUpdate`] a `derived` entry's details record (entries written before the container
/// facts were added give `None` for them).
pub fn media_update_of(d: &serde_json::Value) -> MediaUpdate {
    let object = |k: &str| {
        let o = &d[k];
        Some(ObjectRef {
            key: o["key"].as_str()?.to_string(),
            sha256: o["sha256"].as_str().unwrap_or_default().to_string(),
            size: o["size"].as_i64().unwrap_or_default(),
            content_type: o["content_type"].as_str().unwrap_or_default().to_string(),
        })
    };
    MediaUpdate {
        state: d["media_state"].as_str().unwrap_or("failed").to_string(),
        media: Some(d["media"].clone()).filter(|m| !m.is_null()),
        error: d["error"].as_str().map(str::to_string),
        warning: d["warning"].as_str().map(str::to_string),
        proxy: object("proxy"),
        poster: object("poster"),
        started_at: d["started_at"].as_str().and_then(crate::custody::parse_at),
        gps: d["gps"]["lat"].as_f64().zip(d["gps"]["lon"].as_f64()),
        duration_ms: d["duration_ms"].as_i64(),
    }
}

/// A clip request.
#[derive(Debug, Clone)]
pub struct NewClip {
    /// Source recording.
    pub recording_id: String,
    /// Range start, ms.
    pub start_ms: i64,
    /// Range end (exclusive), ms.
    pub end_ms: i64,
    /// Frame-accurate re-encode instead of keyframe stream copy.
    pub accurate: bool,
    /// Why the clip is made (recorded in the custody log).
    pub reason: String,
    /// Who asked.
    pub actor: String,
}

/// A clip: a derivative with its own hash and lineage.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Clip {
    /// Clip id.
    pub id: String,
    /// Source recording.
    pub recording_id: String,
    /// Range start, ms.
    pub start_ms: i64,
    /// Range end, ms.
    pub end_ms: i64,
    /// Frame-accurate?
    pub accurate: bool,
    /// Why.
    pub reason: String,
    /// Who.
    pub actor: String,
    /// `pending`, `ready`, `failed`.
    pub state: String,
    /// SHA-256 of the clip bytes.
    pub sha256: Option<String>,
    /// Size.
    pub size: Option<i64>,
    /// MIME type.
    pub content_type: Option<String>,
    /// Why it failed.
    pub error: Option<String>,
    /// Created, RFC 3339.
    pub created_at: String,
    /// Store key (not shown).
    #[serde(skip)]
    pub object_key: Option<String>,
}

/// A sighting as shown on a recording.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SightingView {
    /// Dock name.
    pub dock: String,
    /// Path as text.
    pub path: String,
    /// When seen, RFC 3339.
    pub seen_at: String,
}

/// Filters of `GET /api/v1/recordings`; all combine with AND.
#[derive(Debug, Clone, Default)]
pub struct RecordingFilter {
    /// Exact officer id.
    pub officer: Option<String>,
    /// Exact device serial.
    pub device: Option<String>,
    /// Unit subtree.
    pub unit: Option<String>,
    /// Case id.
    pub case: Option<String>,
    /// Retention category.
    pub category: Option<String>,
    /// Start (or archive) time at or after, micros.
    pub from: Option<i64>,
    /// Start (or archive) time before, micros.
    pub to: Option<i64>,
    /// Recording state.
    pub state: Option<String>,
    /// Review flag.
    pub needs_review: Option<bool>,
    /// Caller scope: only this unit subtree (None = everything).
    pub scope_unit: Option<String>,
    /// Caller scope: only this officer's recordings.
    pub scope_officer: Option<String>,
    /// Caller scope: `state_secret` recordings only where this principal holds a grant (None =
    /// all of them, for archivists and auditors, who see their metadata).
    pub scope_grantee: Option<String>,
    /// Continue after this (sort_at, id).
    pub after: Option<(i64, String)>,
    /// Page size.
    pub limit: i64,
}

/// A custody log row.
#[derive(Debug, Clone, Serialize)]
pub struct CustodyEvent {
    /// The hashed body.
    #[serde(flatten)]
    pub body: crate::custody::EntryBody,
    /// Its hash.
    pub hash: String,
    /// `details` exactly as stored, so `verify` can insist on the canonical form (a re-spaced
    /// JSON text parses to the same value, yet it is a changed row).
    #[serde(skip)]
    pub details_raw: String,
}

/// A queued background job.
#[derive(Debug, Clone)]
pub struct Job {
    /// Job id.
    pub id: String,
    /// Handler name.
    pub kind: String,
    /// Idempotency key within the kind.
    pub dedupe_key: String,
    /// JSON arguments.
    pub payload: serde_json::Value,
    /// Attempts including the current one.
    pub attempts: i64,
    /// The lease token that must accompany completion (fencing).
    pub lease_token: String,
}

/// An API principal.
#[derive(Debug, Clone, Serialize)]
pub struct Principal {
    /// Unique name.
    pub name: String,
    /// `officer`, `supervisor`, `archivist`, `auditor`, `admin`.
    pub role: String,
    /// Unit subtree it covers; empty = root.
    pub unit: String,
    /// Officer id (role officer).
    pub officer: Option<String>,
    /// Created, micros.
    pub created_at: i64,
    /// Expiry, micros.
    pub expires_at: Option<i64>,
    /// Revocation, micros.
    pub revoked_at: Option<i64>,
}

/// Job queue depth by state, for metrics.
#[derive(Debug, Clone, Default)]
pub struct QueueDepth {
    /// Waiting to run.
    pub queued: i64,
    /// Leased.
    pub running: i64,
}

/// The catalog boundary. Both backends pass the same conformance suite (`tests/it/catalog.rs`).
#[async_trait]
pub trait Catalog:
    AccessRecords
    + NodeRecords
    + CustodyRecords
    + CaseRecords
    + RecordingUpdates
    + RetentionRecords
    + ReportRecords
    + RebuildRecords
    + Send
    + Sync
{
    /// Backend name for messages (`sqlite` or `postgres`).
    fn backend(&self) -> &'static str;
    /// Cheap liveness probe for `/readyz`.
    async fn ping(&self) -> Result<()>;

    /// Journals a settled file, returning the existing row when this snapshot was seen before;
    /// appends `discovered` on first sight. The bool is true when the row is new.
    async fn record_sighting(&self, s: &NewSighting) -> Result<(Sighting, bool)>;
    /// Journals an empty file once (`zero_length_seen`), idempotent per snapshot.
    async fn record_empty(&self, s: &NewSighting) -> Result<()>;
    /// One sighting.
    async fn sighting(&self, id: &str) -> Result<Sighting>;
    /// Sightings of `node` still to upload and due now (resume after a crash or failure).
    async fn due_sightings(&self, node: &str, now: i64, limit: i64) -> Result<Vec<Sighting>>;
    /// Journals the object key and multipart upload id before bytes are sent.
    async fn set_upload(&self, id: &str, object_key: &str, upload_id: Option<&str>) -> Result<()>;
    /// Records a failed attempt and when to try again.
    async fn sighting_failed(&self, id: &str, error: &str, retry_at: i64) -> Result<()>;
    /// Marks a sighting whose file changed or vanished mid-ingest, with a custody event.
    async fn sighting_changed(&self, id: &str, actor: &str, why: &str) -> Result<()>;
    /// Commits a verified upload: a new recording plus `archived`, or a link to the existing
    /// recording with the same SHA-256 plus `duplicate_sighting`. One transaction.
    /// `release_after` schedules the dock release in the same transaction (None = keep).
    async fn commit_archive(
        &self,
        sighting_id: &str,
        rec: &NewRecording,
        actor: &str,
        release_after: Option<i64>,
    ) -> Result<ArchiveOutcome>;
    /// Records that the dock copy was deleted, with `dock_released`.
    async fn record_release(&self, id: &str, actor: &str) -> Result<()>;
    /// Cancels the release of a dock copy that changed after archiving (it becomes a new sighting).
    async fn release_superseded(&self, id: &str) -> Result<()>;
    /// Archived/duplicate sightings of `node` whose release is due.
    async fn due_releases(&self, node: &str, now: i64) -> Result<Vec<Sighting>>;

    /// One recording by id.
    async fn recording(&self, id: &str) -> Result<Recording>;
    /// A page of recordings, newest first.
    async fn list_recordings(&self, f: &RecordingFilter) -> Result<Vec<Recording>>;
    /// The custody events of a recording, oldest first.
    async fn custody_events(&self, recording_id: Option<&str>, after_seq: i64, limit: i64) -> Result<Vec<CustodyEvent>>;
    /// Appends a custody event not tied to another change.
    async fn append_custody(&self, kind: &str, actor: &str, recording_id: Option<&str>, details: serde_json::Value) -> Result<i64>;

    /// Records the outcome of media derivation (with a `derived` custody event) and fills
    /// attribution gaps from the container.
    async fn set_media(&self, id: &str, upd: &MediaUpdate, actor: &str) -> Result<()>;
    /// Records a clip request and queues its job, in one transaction.
    async fn create_clip(&self, c: &NewClip) -> Result<Clip>;
    /// One clip.
    async fn clip(&self, id: &str) -> Result<Clip>;
    /// Records a finished clip (with a `clipped` custody event carrying its lineage) or its failure.
    async fn finish_clip(&self, id: &str, result: std::result::Result<ObjectRef, String>) -> Result<()>;

    /// Queues a job unless one with the same (kind, dedupe_key) exists.
    async fn enqueue(&self, kind: &str, dedupe_key: &str, payload: &serde_json::Value, priority: i64, run_at: i64) -> Result<bool>;
    /// Leases the next due job of one of `kinds` (or one whose lease expired).
    async fn claim(&self, kinds: &[&str], owner: &str, lease_micros: i64) -> Result<Option<Job>>;
    /// Extends a lease; `LeaseLost` when another worker took it.
    async fn heartbeat(&self, job_id: &str, token: &str, lease_micros: i64) -> Result<()>;
    /// Marks a job done; `LeaseLost` when the lease moved on (fencing).
    async fn complete(&self, job_id: &str, token: &str) -> Result<()>;
    /// Releases a job for a later retry.
    async fn retry_later(&self, job_id: &str, token: &str, error: &str, run_at: i64) -> Result<()>;
    /// Expires the leases `owner` holds; called at start, when none of its jobs can be running,
    /// so a restarted node resumes its unfinished jobs at once instead of after the lease.
    async fn release_leases(&self, owner: &str) -> Result<u64>;
    /// Counts for metrics.
    async fn queue_depth(&self) -> Result<QueueDepth>;

    /// Creates a principal with a token hash; a `principal` custody event names `actor` (`cli`
    /// or the admin's principal name). A taken name is `Conflict`.
    async fn create_principal(&self, p: &Principal, token_sha256: &str, actor: &str) -> Result<()>;
    /// All principals.
    async fn principals(&self) -> Result<Vec<Principal>>;
    /// Revokes a principal's token at once; a `principal` custody event names `actor`. Revoking a
    /// revoked principal changes nothing; an unknown name is `NotFound`.
    async fn revoke_principal(&self, name: &str, actor: &str) -> Result<()>;
    /// The principal owning a token hash, if any (revoked/expired ones included; caller checks).
    async fn principal_by_token(&self, token_sha256: &str) -> Result<Option<Principal>>;
}

/// Opens (creating and migrating) the catalog named by `url`.
pub async fn open(url: &str, max_connections: u32) -> Result<Arc<dyn Catalog>> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteCatalog::open(url, max_connections).await?))
    } else {
        Ok(Arc::new(PgCatalog::open(url, max_connections).await?))
    }
}

/// Strips a password from a URL for messages.
pub(crate) fn redact(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{}:***{}", &url[..s + 3], user, &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}
