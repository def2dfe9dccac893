//! Restoring a catalog from the custody log alone (`evidenced rebuild`). A supertrait of
//! [`super::Catalog`], implemented for both backends by `rebuild_sql.rs`.
//!
//! The log is the record; the tables are a projection of it. Replaying an entry inserts it
//! verbatim (same sequence number, time, hash) and applies what it says to the tables:
//! `archived` makes the recording row (and the cases its attribution names), `derived` its media
//! state and derivatives, `attributed`, `classified`, `categorised`, `held`/`hold_released`,
//! `linked`/`unlinked`, `case_created`/`case_updated`, `timestamped`, the destruction entries,
//! `clipped`, `granted`/`grant_revoked` and `fixity_checked` their columns and rows. Checkpoints
//! are restored from their signed objects in the store (the entry names the object). What the
//! log does not carry is not restored: dock sightings (the docks are watched again; bytes already
//! archived become duplicate sightings), probe details of the media, principals and their tokens
//! (only hashes were ever kept, and not in the log: issue new ones), sessions and queued jobs.

use async_trait::async_trait;

use super::Result;
use super::custody::Checkpoint;
use crate::custody::segments::StoredEntry;

/// Restoring a catalog (see the module docs).
#[async_trait]
pub trait RebuildRecords: Send + Sync {
    /// True while the catalog holds no custody entry and no recording: the only state `rebuild`
    /// writes into.
    async fn is_blank(&self) -> Result<bool>;
    /// Appends entries verbatim to the end of the chain and applies them to the tables, in one
    /// transaction. The first must follow the current head (sequence and hash), each the one
    /// before it.
    async fn restore_entries(&self, entries: &[StoredEntry]) -> Result<()>;
    /// Stores a checkpoint record whose `checkpoint` entry is already in the log (idempotent).
    async fn restore_checkpoint(&self, c: &Checkpoint) -> Result<()>;
}
