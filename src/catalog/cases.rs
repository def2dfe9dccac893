//! Cases: the agency's case numbers and the recordings linked to them. A supertrait of
//! [`super::Catalog`], implemented for both backends by the shared SQL in `cases_sql.rs`. Every
//! change is a custody event: `case_created`, `case_updated`, and `linked` / `unlinked` on the
//! recording. `recordings.case_ids` (the API's `cases`) is kept equal to the sorted ids of a
//! recording's links, in the same transaction as the link change.

use async_trait::async_trait;
use serde::Serialize;

use super::Result;
use crate::custody::format_at;

/// Case states.
pub mod status {
    /// Open (the default).
    pub const OPEN: &str = "open";
    /// Closed; `closed_at` is set. Reopening clears it.
    pub const CLOSED: &str = "closed";
}

/// The longest case id accepted, in bytes.
pub const MAX_ID_LEN: usize = 128;

/// Whether `id` can name a case: not blank, at most [`MAX_ID_LEN`] bytes, no control characters.
pub fn valid_id(id: &str) -> bool {
    !id.trim().is_empty() && id.len() <= MAX_ID_LEN && !id.chars().any(char::is_control)
}

/// The case ids a sidecar names, as they are stored and linked: valid ones only, sorted, unique.
pub fn normalize_ids(ids: &[String]) -> Vec<String> {
    let set: std::collections::BTreeSet<&String> = ids.iter().filter(|c| valid_id(c)).collect();
    set.into_iter().cloned().collect()
}

/// A case as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Case {
    /// The agency's case number.
    pub id: String,
    /// Free text.
    pub title: String,
    /// `open` or `closed` ([`status`]).
    pub status: String,
    /// Owning unit path (empty = root).
    pub unit: String,
    /// Created, RFC 3339.
    pub created_at: String,
    /// Who created it (a principal name, `node:<id>` for a sidecar, or `migration`).
    pub created_by: String,
    /// Last changed, RFC 3339.
    pub updated_at: String,
    /// When it was closed, RFC 3339; null while open.
    pub closed_at: Option<String>,
    /// Number of linked recordings (all of them, whatever the caller's scope).
    pub recordings: i64,
}

/// Selects [`CaseRow`]s (`c` is the case; append a `WHERE`).
pub(super) const SELECT_CASE: &str = "SELECT c.id, c.title, c.status, c.unit, c.created_at, c.created_by, c.updated_at, c.closed_at, \
     (SELECT COUNT(*) FROM case_links l WHERE l.case_id = c.id) AS recordings FROM cases c";

/// A `cases` row with its link count.
#[derive(sqlx::FromRow)]
pub(super) struct CaseRow {
    pub id: String,
    pub title: String,
    pub status: String,
    pub unit: String,
    pub created_at: i64,
    pub created_by: String,
    pub updated_at: i64,
    pub closed_at: Option<i64>,
    pub recordings: i64,
}

impl From<CaseRow> for Case {
    fn from(r: CaseRow) -> Self {
        Case {
            id: r.id,
            title: r.title,
            status: r.status,
            unit: r.unit,
            created_at: format_at(r.created_at),
            created_by: r.created_by,
            updated_at: format_at(r.updated_at),
            closed_at: r.closed_at.map(format_at),
            recordings: r.recordings,
        }
    }
}

/// A case to create (open).
#[derive(Debug, Clone, Default)]
pub struct NewCase {
    /// The agency's case number (see [`valid_id`]).
    pub id: String,
    /// Free text.
    pub title: String,
    /// Owning unit path (empty = root).
    pub unit: String,
}

/// A change to a case; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct CaseUpdate {
    /// New title.
    pub title: Option<String>,
    /// New status: `closed` sets `closed_at`, `open` clears it.
    pub status: Option<String>,
}

/// Cases and their links (see the module docs).
#[async_trait]
pub trait CaseRecords: Send + Sync {
    /// Creates an open case with a `case_created` event; `Conflict` when the id is taken.
    async fn create_case(&self, c: &NewCase, actor: &str) -> Result<Case>;
    /// Changes title and/or status with a `case_updated` event naming what changed (none when
    /// nothing did); `NotFound` for an unknown id. A status other than open/closed is refused by
    /// the database (the API checks it first).
    async fn update_case(&self, id: &str, u: &CaseUpdate, actor: &str) -> Result<Case>;
    /// One case; `NotFound` for an unknown id.
    async fn case(&self, id: &str) -> Result<Case>;
    /// A page of cases by id, optionally of one status, after the id `after`.
    async fn cases(&self, status: Option<&str>, limit: i64, after: Option<&str>) -> Result<Vec<Case>>;
    /// Links a recording to a case with a `linked` event, in one transaction; false (and no
    /// event) when it already was. Creates nothing: an unknown case or recording is `NotFound`.
    async fn link(&self, case_id: &str, recording_id: &str, actor: &str, reason: Option<&str>) -> Result<bool>;
    /// Unlinks with an `unlinked` event; false when it was not linked. Unknown ids: `NotFound`.
    async fn unlink(&self, case_id: &str, recording_id: &str, actor: &str, reason: Option<&str>) -> Result<bool>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        assert!(valid_id("C-1") && valid_id("2024/0042 Nord") && valid_id(&"x".repeat(128)));
        assert!(!valid_id("") && !valid_id("  ") && !valid_id(&"x".repeat(129)) && !valid_id("a\nb") && !valid_id("a\u{7f}"));
        let ids = ["C-2", "C-1", "", "C-2", "bad\u{0}"].map(String::from);
        assert_eq!(normalize_ids(&ids), ["C-1", "C-2"]);
    }
}
