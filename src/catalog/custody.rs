//! The catalog's custody records beyond the hash-chained log itself: node public keys, signed
//! checkpoints of the chain head, RFC 3161 time-stamp tokens, and the fixity schedule. A
//! supertrait of [`super::Catalog`], so every `dyn Catalog` has them; both backends implement it
//! with the shared SQL in `custody_sql.rs` and pass the same conformance suite.

use async_trait::async_trait;
use serde::Serialize;

use super::Result;

/// A node's Ed25519 public key, as published (API, exports, `verify`).
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct NodeKey {
    /// Hex SHA-256 of the key's SPKI DER: names the key in checkpoints.
    pub key_id: String,
    /// The node that holds the private half.
    pub node: String,
    /// PEM (`-----BEGIN PUBLIC KEY-----`, SPKI), what `openssl pkeyutl -pubin -inkey` reads.
    pub public_pem: String,
    /// When it was first registered, micros.
    #[serde(skip)]
    pub created_at: i64,
}

/// A signed checkpoint of the chain head.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct Checkpoint {
    /// Unique id (UUIDv7).
    pub id: String,
    /// Node that signed it.
    pub node: String,
    /// Which key signed it.
    pub key_id: String,
    /// Sequence number of the signed head entry.
    pub seq: i64,
    /// Hash of that entry.
    pub hash: String,
    /// When it was signed, micros.
    pub at: i64,
    /// The exact signed bytes (canonical JSON), kept so the signature can be checked as is.
    pub body: String,
    /// Base64 of the 64-byte Ed25519 signature over `body`.
    pub signature: String,
    /// Store key of the body (`.json`); the signature sits beside it (`.sig`).
    pub object_key: String,
}

/// Subjects a time-stamp token can be about.
pub mod subject {
    /// The SHA-256 of a recording's original.
    pub const RECORDING: &str = "recording";
    /// The SHA-256 of a checkpoint's signed body.
    pub const CHECKPOINT: &str = "checkpoint";
}

/// An RFC 3161 time-stamp token kept for a subject.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct Timestamp {
    /// Unique id (UUIDv7).
    pub id: String,
    /// What was stamped ([`subject`]).
    pub subject: String,
    /// Recording id or checkpoint id.
    pub subject_id: String,
    /// The message imprint (hex SHA-256).
    pub sha256: String,
    /// Store key of the whole TimeStampResp (DER).
    pub token_key: String,
    /// Hex SHA-256 of the token bytes, so a swapped token is caught even if it verifies.
    pub token_sha256: String,
    /// The TSA's genTime, micros.
    pub gen_time: i64,
    /// The TSA's serial number of the token.
    pub serial: String,
    /// The TSA URL that issued it.
    pub tsa: String,
    /// When it was recorded, micros.
    pub created_at: i64,
}

/// Custody records (see the module docs).
#[async_trait]
pub trait CustodyRecords: Send + Sync {
    /// Registers a node key (idempotent).
    async fn register_key(&self, k: &NodeKey) -> Result<()>;
    /// Every registered key, oldest first.
    async fn node_keys(&self) -> Result<Vec<NodeKey>>;
    /// The newest entry of the chain: `(seq, hash)`, or `None` while it is empty.
    async fn chain_head(&self) -> Result<Option<(i64, String)>>;
    /// Stores a checkpoint and appends its `checkpoint` custody event in one transaction.
    async fn record_checkpoint(&self, c: &Checkpoint, actor: &str) -> Result<i64>;
    /// Every checkpoint, by signed sequence number then time.
    async fn checkpoints(&self) -> Result<Vec<Checkpoint>>;
    /// The checkpoint of the highest sequence number (the newest of those), if any.
    async fn latest_checkpoint(&self) -> Result<Option<Checkpoint>>;
    /// Stores a token, marks a recording `timestamped` and appends the `timestamped` event, in
    /// one transaction. Returns false (and changes nothing) when the subject already has one.
    async fn record_timestamp(&self, t: &Timestamp, actor: &str) -> Result<bool>;
    /// Tokens, all of them or those of one subject id.
    async fn timestamps(&self, subject_id: Option<&str>) -> Result<Vec<Timestamp>>;
    /// Number of recordings whose objects fixity checks cover (all that are not destroyed).
    async fn fixity_population(&self) -> Result<i64>;
    /// Ids of the recordings checked longest ago (never checked first).
    async fn fixity_due(&self, limit: i64) -> Result<Vec<String>>;
    /// Records one fixity check: the time on the recording and a `fixity_checked` event.
    async fn record_fixity(&self, recording_id: &str, ok: bool, details: serde_json::Value, actor: &str) -> Result<()>;
    /// The clips of a recording, oldest first.
    async fn clips_of(&self, recording_id: &str) -> Result<Vec<super::Clip>>;
}
