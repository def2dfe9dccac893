//! Access records: explicit grants to `state_secret` recordings, console sessions, secrets
//! shared by all nodes (the URL-signing key), and the audit query over the custody log. A
//! supertrait of [`super::Catalog`], implemented for both backends by `access_sql.rs`. Grants and
//! sessions are custody events (`granted`, `grant_revoked`, `signed_in`, `signed_out`) written
//! in the same transaction as the row.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{CustodyEvent, Principal, Result};

/// An explicit grant of a `state_secret` recording to one principal.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Grant {
    /// The recording.
    pub recording_id: String,
    /// The principal's name (a token principal or an OIDC subject).
    pub principal: String,
    /// Why the archivist granted it.
    pub reason: String,
    /// The archivist who granted it.
    pub granted_by: String,
    /// When, RFC 3339.
    pub granted_at: String,
}

/// The principal as a session stores it (for OIDC sessions, which have no principals row).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrincipalSnapshot {
    /// Name.
    pub name: String,
    /// Role.
    pub role: String,
    /// Unit path.
    pub unit: String,
    /// Officer id.
    pub officer: Option<String>,
}

impl From<&Principal> for PrincipalSnapshot {
    fn from(p: &Principal) -> Self {
        PrincipalSnapshot { name: p.name.clone(), role: p.role.clone(), unit: p.unit.clone(), officer: p.officer.clone() }
    }
}

/// A session to open.
#[derive(Debug, Clone)]
pub struct NewSession {
    /// SHA-256 (hex) of the random session id the cookie carries.
    pub id_sha256: String,
    /// Who signed in.
    pub principal: PrincipalSnapshot,
    /// The token it was opened with (None for OIDC): its principal is re-read on every request.
    pub token_sha256: Option<String>,
    /// Ends at, micros.
    pub expires_at: i64,
    /// Audit details of the sign-in (client address, user agent).
    pub details: serde_json::Value,
}

/// A live session resolved to its principal as it is now.
#[derive(Debug, Clone)]
pub struct Session {
    /// The principal: re-read from `principals` for token sessions (so revocation and expiry
    /// apply at once), the stored snapshot for OIDC sessions.
    pub principal: Principal,
    /// Session end, micros.
    pub expires_at: i64,
}

/// Filters of `GET /api/v1/audit`; all combine with AND; newest first.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Event kinds (empty = all of [`crate::custody::AUDIT_KINDS`]).
    pub kinds: Vec<String>,
    /// Exact actor.
    pub actor: Option<String>,
    /// Exact recording.
    pub recording: Option<String>,
    /// At or after, micros.
    pub from: Option<i64>,
    /// Before, micros.
    pub to: Option<i64>,
    /// Caller scope: events on recordings of this unit subtree, and security events of
    /// principals of it (None or empty = everything).
    pub scope_unit: Option<String>,
    /// Continue below this sequence number.
    pub before_seq: Option<i64>,
    /// Page size.
    pub limit: i64,
}

/// Grants, sessions, shared secrets and the audit query.
#[async_trait]
pub trait AccessRecords: Send + Sync {
    /// Grants `principal` explicit access to a recording (custody `granted`); false when it
    /// already had it (nothing is written).
    async fn put_grant(&self, recording_id: &str, principal: &str, reason: &str, actor: &str) -> Result<bool>;
    /// Withdraws a grant (custody `grant_revoked`); false when there was none.
    async fn delete_grant(&self, recording_id: &str, principal: &str, reason: Option<&str>, actor: &str) -> Result<bool>;
    /// A recording's grants.
    async fn grants(&self, recording_id: &str) -> Result<Vec<Grant>>;
    /// Whether `principal` holds a grant to the recording.
    async fn has_grant(&self, recording_id: &str, principal: &str) -> Result<bool>;
    /// Opens a session (custody `signed_in` by its principal).
    async fn open_session(&self, s: &NewSession) -> Result<()>;
    /// The live session with this id hash: None when unknown, ended, expired, or its token was
    /// revoked or expired.
    async fn session(&self, id_sha256: &str, now: i64) -> Result<Option<Session>>;
    /// Ends a session (custody `signed_out`); false when it was not live.
    async fn end_session(&self, id_sha256: &str, actor: &str, details: serde_json::Value) -> Result<bool>;
    /// The principal row with this name, if any.
    async fn principal(&self, name: &str) -> Result<Option<Principal>>;
    /// The shared secret `name`: `fresh` is stored if there is none yet, and whichever value
    /// won is returned (every node of the catalog ends up with the same one).
    async fn shared_secret(&self, name: &str, fresh: &str) -> Result<String>;
    /// Audit events, newest first.
    async fn audit_events(&self, f: &AuditFilter) -> Result<Vec<CustodyEvent>>;
}
