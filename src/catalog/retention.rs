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
    /// When its retention clock started, micros.
    pub retention_from: i64,
}

/// One entry of the destruction queue.
#[derive(Debug, Clone, PartialEq, Serialize)]
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
}

/// Retention records (see the module docs).
#[async_trait]
pub trait RetentionRecords: Send + Sync {
    /// Archived recordings of `category` whose retention clock started before `started_before`
    /// and that nothing holds (no legal hold, no open case), oldest first, after id `after`.
    async fn expired(&self, category: &str, started_before: i64, after: &str, limit: i64) -> Result<Vec<Expired>>;
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
    /// the approvers and the deleted keys.
    async fn finish_destruction(&self, id: &str, objects: &[String], actor: &str) -> Result<()>;
}
