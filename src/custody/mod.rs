//! The custody log. This module holds the hash rule: each entry's hash is
//! `SHA-256(prev_hash ‖ SHA-256(RFC 8785 canonical JSON of the entry without its hash))`,
//! over raw 32-byte digests, with 32 zero bytes before the first entry — free of I/O so the
//! catalog (appending) and `verify` (re-walking) share one definition a third party can
//! re-implement. Its submodules build on it: the node key (`keys`), signed checkpoints
//! (`checkpoint`), copies of the log in the store (`segments`), RFC 3161 time-stamps (`tsa`, `stamper`), verification (`verify`), the
//! fixity worker (`fixity`) and court-ready exports (`export`, `bagit`).

pub mod bagit;
pub mod checkpoint;
pub mod export;
pub mod fixity;
pub mod keys;
pub mod segments;
pub mod stamper;
pub mod tsa;
pub mod verify;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// `prev_hash` of the first entry: 64 hex zeros.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The kinds of custody events (CONTRACT.md "Custody log").
pub mod kind {
    /// A file was seen on a dock (or in a backfill) and its ingest began.
    pub const DISCOVERED: &str = "discovered";
    /// The original is stored, verified and catalogued.
    pub const ARCHIVED: &str = "archived";
    /// Bytes already archived were seen again.
    pub const DUPLICATE_SIGHTING: &str = "duplicate_sighting";
    /// The dock copy was deleted after verification.
    pub const DOCK_RELEASED: &str = "dock_released";
    /// An empty file sat on a dock; it stays there.
    pub const ZERO_LENGTH_SEEN: &str = "zero_length_seen";
    /// A file changed between settling and the end of its read; it will be taken again.
    pub const CHANGED_DURING_INGEST: &str = "changed_during_ingest";
    /// Proxy and poster were derived (or derivation failed).
    pub const DERIVED: &str = "derived";
    /// A clip was cut from a recording.
    pub const CLIPPED: &str = "clipped";
    /// An API principal was created or revoked.
    pub const PRINCIPAL: &str = "principal";
    /// Attribution of a recording was set or corrected after archiving.
    pub const ATTRIBUTED: &str = "attributed";
    /// An RFC 3161 time-stamp token was obtained for a recording or a checkpoint.
    pub const TIMESTAMPED: &str = "timestamped";
    /// A recording's metadata or media was viewed.
    pub const ACCESSED: &str = "accessed";
    /// A recording's original (or a derivative) was downloaded.
    pub const DOWNLOADED: &str = "downloaded";
    /// An evidence package was exported.
    pub const EXPORTED: &str = "exported";
    /// A recording was linked to a case.
    pub const LINKED: &str = "linked";
    /// A recording was unlinked from a case.
    pub const UNLINKED: &str = "unlinked";
    /// A recording's classification changed.
    pub const CLASSIFIED: &str = "classified";
    /// A recording's retention category changed.
    pub const CATEGORISED: &str = "categorised";
    /// A legal hold was placed.
    pub const HELD: &str = "held";
    /// A legal hold was lifted.
    pub const HOLD_RELEASED: &str = "hold_released";
    /// A recording entered the destruction queue.
    pub const QUEUED_FOR_DESTRUCTION: &str = "queued_for_destruction";
    /// An archivist approved a queued destruction.
    pub const DESTRUCTION_APPROVED: &str = "destruction_approved";
    /// A queued destruction was called off (a hold, an open case or a longer category came first).
    pub const DESTRUCTION_CANCELLED: &str = "destruction_cancelled";
    /// A recording's objects were destroyed (the tombstone stays).
    pub const DESTROYED: &str = "destroyed";
    /// A recording's original version was locked in the store (S3 Object Lock) until a date.
    pub const WORM_LOCKED: &str = "worm_locked";
    /// A recording's stored objects were re-read and re-hashed.
    pub const FIXITY_CHECKED: &str = "fixity_checked";
    /// The chain head was signed by a node key.
    pub const CHECKPOINT: &str = "checkpoint";
    /// A case was created (by a person; cases named by sidecars come with `archived`).
    pub const CASE_CREATED: &str = "case_created";
    /// A case's title or status changed (closed or reopened).
    pub const CASE_UPDATED: &str = "case_updated";
    /// An archivist granted a principal explicit access to a `state_secret` recording.
    pub const GRANTED: &str = "granted";
    /// An explicit grant was withdrawn.
    pub const GRANT_REVOKED: &str = "grant_revoked";
    /// A principal opened a console session (security event).
    pub const SIGNED_IN: &str = "signed_in";
    /// A console session was ended by its principal (security event).
    pub const SIGNED_OUT: &str = "signed_out";
    /// A presented token or sign-in was refused (security event; actor `anonymous`).
    pub const AUTH_FAILED: &str = "auth_failed";
}

/// The kinds `GET /api/v1/audit` shows: accesses to footage and security events.
pub const AUDIT_KINDS: [&str; 11] = [
    kind::ACCESSED,
    kind::DOWNLOADED,
    kind::EXPORTED,
    kind::CLIPPED,
    kind::GRANTED,
    kind::GRANT_REVOKED,
    kind::SIGNED_IN,
    kind::SIGNED_OUT,
    kind::AUTH_FAILED,
    kind::PRINCIPAL,
    kind::CLASSIFIED,
];

/// One custody entry as hashed: every column but `hash`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EntryBody {
    /// Position in the chain, from 1, without gaps.
    pub seq: i64,
    /// When it happened, RFC 3339 UTC with microseconds.
    pub at: String,
    /// What happened (see [`kind`]).
    pub kind: String,
    /// Who did it: a principal name, or `node:<id>` for the daemon.
    pub actor: String,
    /// The recording it concerns, if any.
    pub recording_id: Option<String>,
    /// Kind-specific facts.
    pub details: serde_json::Value,
    /// Hash of the previous entry (hex).
    pub prev_hash: String,
}

/// Canonical JSON (RFC 8785) of an entry body.
pub fn canonical(body: &EntryBody) -> Vec<u8> {
    serde_json_canonicalizer::to_vec(body).unwrap_or_else(|_| serde_json::to_vec(body).unwrap_or_default())
}

/// Canonical JSON (RFC 8785) of any value (the stored form of `details`).
pub fn canonical_value(v: &serde_json::Value) -> Vec<u8> {
    serde_json_canonicalizer::to_vec(v).unwrap_or_else(|_| v.to_string().into_bytes())
}

/// The hash of an entry (hex), by the CONTRACT.md rule.
pub fn entry_hash(body: &EntryBody) -> String {
    let inner = Sha256::digest(canonical(body));
    let prev = hex::decode(&body.prev_hash).unwrap_or_else(|_| vec![0; 32]);
    let mut h = Sha256::new();
    h.update(&prev);
    h.update(inner);
    hex::encode(h.finalize())
}

/// Formats catalog microseconds as the RFC 3339 text used in entries.
pub fn format_at(micros: i64) -> String {
    chrono::DateTime::from_timestamp_micros(micros).unwrap_or_default().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// Parses the RFC 3339 text of an entry's `at` (or any time this module formats) back to micros.
pub fn parse_at(s: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(s).ok().map(|t| t.timestamp_micros())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(prev: &str) -> EntryBody {
        EntryBody {
            seq: 1,
            at: format_at(1_700_000_000_000_001),
            kind: kind::ARCHIVED.into(),
            actor: "node:a".into(),
            recording_id: Some("r".into()),
            details: serde_json::json!({"z": 1, "a": "证据"}),
            prev_hash: prev.into(),
        }
    }

    #[test]
    fn canonical_json_sorts_keys_and_keeps_utf8() {
        let c = String::from_utf8(canonical(&body(GENESIS))).unwrap();
        assert!(c.starts_with("{\"actor\":\"node:a\",\"at\":\"2023-11-14T22:13:20.000001Z\",\"details\":{\"a\":\"证据\",\"z\":1}"), "{c}");
    }

    #[test]
    fn hash_depends_on_prev_and_body() {
        let a = entry_hash(&body(GENESIS));
        // Recompute by hand: SHA-256(zeros ‖ SHA-256(canonical)).
        let mut h = Sha256::new();
        h.update([0u8; 32]);
        h.update(Sha256::digest(canonical(&body(GENESIS))));
        assert_eq!(a, hex::encode(h.finalize()));
        assert_ne!(a, entry_hash(&body(&a)));
        let mut b = body(GENESIS);
        b.actor = "node:b".into();
        assert_ne!(a, entry_hash(&b));
    }
}
