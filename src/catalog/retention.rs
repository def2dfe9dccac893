//! The catalog side of retention: finding recordings whose retention has ended, the destruction
//! queue (queue, approve, cancel, finish) and the tombstone a destroyed recording leaves. Every
//! step is one transaction with its custody event. A supertrait of [`super::Catalog`]; both
//! backends implement it with the shared SQL in `retention_sql.rs`.

use async_trait::async_trait;
use serde::Serialize;

use super::Result;

/// SQL for the moment a recording's retention clock starts: the later of its start and its
/// archiving, so backfilled footage and cameras with a reset clock do not expire on arrival.
pub const RETENTION_FROM: &str = "CASE WHEN started_at IS NOT NULL AND started_at > archived_at THEN started_at ELSE archived_at END";

/// A recording whose retention has ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Expired {
    /// Recording id.
    pub id: String,
    /// When its retention clock started, micros (for a case-driven category: the case's closing
    /// when that is later).
    pub retention_from: i64,
}

/// One entry of the destruction queue.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Destruction {
    /// Queue entry id.
    pub id: String,
    /// The recording.
    pub recording_id: String,
    /// `pending`, `destroyed` or `cancelled`.
    pub state: String,
    /// The rule that expired it, e.g. `uncategorized: 184d`.
    pub rule: String,
    /// When its retention ended (RFC 3339).
    pub retention_until: String,
    /// When it entered the queue (RFC 3339).
    pub queued_at: String,
    /// When approval can take effect (queued + grace, RFC 3339).
    pub eligible_at: String,
    /// Approvals so far: `[{"archivist","at","reason"}]`.
    pub approvals: serde_json::Value,
    /// When it was destroyed or cancelled (RFC 3339).
    pub finished_at: Option<String>,
    /// Store keys deleted.
    pub objects: serde_json::Value,
    /// The S3 version ids deleted, by key (`{}` for stores without versions).
    pub versions: serde_json::Value,
    /// The retention worker pass that destroyed it (names its certificate).
    pub batch: Option<String>,
}

/// One batch of destructions (one pass of the retention worker), as listed for certificates.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct DestructionBatch {
    /// Batch id (UUIDv7).
    pub batch: String,
    /// When its last destruction finished (RFC 3339).
    pub finished_at: String,
    /// Recordings destroyed in it.
    pub count: i64,
}

/// A finished destruction with the tombstone facts of its recording: one line of a certificate.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DestroyedRecording {
    /// The queue entry (rule, retention end, approvals, finish time, deleted keys).
    pub destruction: Destruction,
    /// Hex SHA-256 of the original.
    pub sha256: String,
    /// Size of the original in bytes.
    pub size: i64,
    /// Name as docked.
    pub original_name: String,
    /// Unit path, if known.
    pub unit: Option<String>,
    /// Retention category.
    pub category: String,
    /// Start of the recording (RFC 3339), if known.
    pub started_at: Option<String>,
    /// When it was archived (RFC 3339).
    pub archived_at: String,
    /// Who destroyed it (the actor of its `destroyed` custody event, `node:<id>`).
    pub destroyed_by: Option<String>,
}

/// Retention records (see the module docs).
#[async_trait]
pub trait RetentionRecords: Send + Sync {
    /// Archived recordings of `category` whose retention clock started before `started_before`
    /// and that nothing holds (no legal hold, no open case), by id, after id `after`. For a
    /// `case_driven` category the clock starts at the later of the usual start and the last
    /// closing of the recording's linked cases.
    async fn expired(&self, category: &str, case_driven: bool, started_before: i64, after: &str, limit: i64) -> Result<Vec<Expired>>;
    /// Puts a recording in the queue (`pending_destruction`, a `queued_for_destruction` event).
    /// `None` when it is no longer eligible (held, already queued, destroyed).
    async fn queue_destruction(
        &self,
        recording_id: &str,
        rule: &str,
        retention_until: i64,
        grace_micros: i64,
        actor: &str,
    ) -> Result<Option<Destruction>>;
    /// Queue entries, optionally of one state, oldest first.
    async fn destructions(&self, state: Option<&str>, limit: i64) -> Result<Vec<Destruction>>;
    /// One queue entry.
    async fn destruction(&self, id: &str) -> Result<Destruction>;
    /// Records an archivist's approval (a `destruction_approved` event). Refused when the entry
    /// is not pending or this archivist already approved it.
    async fn approve_destruction(&self, id: &str, archivist: &str, reason: &str) -> Result<Destruction>;
    /// Takes an entry out of the queue (the recording is `archived` again; a
    /// `destruction_cancelled` event with the reason).
    async fn cancel_destruction(&self, id: &str, reason: &str, actor: &str) -> Result<()>;
    /// Pending entries past their grace period with at least `approvals` approvals.
    async fn due_destructions(&self, now: i64, approvals: i64) -> Result<Vec<Destruction>>;
    /// Marks an entry done after its objects were deleted: the recording becomes a tombstone
    /// (`destroyed`; id, hash, size and metadata stay) and a `destroyed` event records the rule,
    /// the approvers, the deleted keys and the batch (one per pass of the retention worker).
    async fn finish_destruction(&self, id: &str, objects: &[String], versions: &serde_json::Value, batch: &str, actor: &str) -> Result<()>;
    /// Batches of finished destructions, newest first.
    async fn destruction_batches(&self, limit: i64) -> Result<Vec<DestructionBatch>>;
    /// The destructions of one batch with their recordings' tombstone facts, in the order they
    /// finished; empty for an unknown batch.
    async fn destruction_batch(&self, batch: &str) -> Result<Vec<DestroyedRecording>>;
}
