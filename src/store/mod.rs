//! Object stores for originals, manifests and derivatives: the `ObjectStore` trait with a local
//! directory (`fs`) and an S3-compatible (`s3`) implementation. Uploads read the source once: the
//! same bytes feed SHA-256 and the store, and an upload returns only after the store has
//! confirmed (and, for S3, checksummed) every byte.

pub mod fs;
pub mod s3;

use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::Stream;

use crate::config::{StoreConfig, StoreKind};

/// Store failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store cannot be reached or answered with a server error; retry later.
    #[error("object store {store} unavailable: {message}")]
    Unavailable {
        /// Which store (bucket and endpoint, or directory).
        store: String,
        /// What happened.
        message: String,
    },
    /// The store rejected or contradicted what was sent (checksum, size); redo the upload.
    #[error("object store {store} failed verification of {key}: {message}")]
    Verification {
        /// Which store.
        store: String,
        /// Which object.
        key: String,
        /// Expected vs found.
        message: String,
    },
    /// The object does not exist.
    #[error("object {0} not found")]
    NotFound(String),
    /// The requested byte range is outside the object.
    #[error("range not satisfiable")]
    Range,
    /// Reading the source file or writing local files failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The source changed size while being read (it is being written to).
    #[error("source changed while being read: expected {expected} bytes, read {read}")]
    SourceChanged {
        /// Size at the snapshot.
        expected: u64,
        /// Bytes actually read.
        read: u64,
    },
    /// The store's configuration is unusable.
    #[error("object store config: {0}")]
    Config(String),
    /// The store refused to delete a locked object version (S3 Object Lock: a retention date
    /// not yet reached, or a legal hold). Not transient: the object stays until the lock ends.
    #[error("object store {store} refused to delete {key}, which is locked: {message}")]
    Locked {
        /// Which store.
        store: String,
        /// Which object.
        key: String,
        /// What the store said.
        message: String,
    },
}

impl StoreError {
    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> StoreError {
        let context = context.into();
        move |source| StoreError::Io { context, source }
    }
}

/// Convenience alias.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// What a completed, verified upload proved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutReceipt {
    /// SHA-256 of exactly the bytes stored, hex.
    pub sha256: String,
    /// Bytes stored.
    pub size: u64,
}

/// A stream of object bytes.
pub type ByteStream = Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>>;

/// Receives the multipart upload id before any part is sent, so a crash can abort it later.
#[async_trait]
pub trait UploadJournal: Send + Sync {
    /// Persist `upload_id` for the object being written; an error aborts the upload.
    async fn upload_started(&self, upload_id: &str) -> Result<(), String>;
}

/// A journal that records nothing (small objects, tests).
pub struct NoJournal;

#[async_trait]
impl UploadJournal for NoJournal {
    async fn upload_started(&self, _upload_id: &str) -> Result<(), String> {
        Ok(())
    }
}

/// The object store boundary. Both implementations pass the same conformance suite
/// (`tests/it/store.rs`).
#[async_trait]
pub trait ObjectStore: Send + Sync {
    /// Human description for logs and errors (`fs:/var/archive`, `s3://bucket/prefix@endpoint`).
    fn describe(&self) -> String;
    /// A local, seekable path of the object when the store has one (`fs`), so media workers can
    /// read it in place instead of from a temporary copy.
    fn local_path(&self, _key: &str) -> Option<std::path::PathBuf> {
        None
    }
    /// Stores the first `size` bytes of `file` under `key`, reading it exactly once. Fails with
    /// `SourceChanged` if the file does not have exactly `size` bytes.
    async fn put_file(&self, key: &str, file: std::fs::File, size: u64, journal: &dyn UploadJournal) -> Result<PutReceipt>;
    /// Stores a small object (manifests).
    async fn put_bytes(&self, key: &str, data: Bytes, content_type: &str) -> Result<PutReceipt>;
    /// Reads `len` bytes from `offset` (the whole object when `range` is `None`).
    async fn get(&self, key: &str, range: Option<(u64, u64)>) -> Result<ByteStream>;
    /// Size of an object, or `NotFound`.
    async fn size(&self, key: &str) -> Result<u64>;
    /// Keys of every object whose key starts with `prefix`, sorted (checkpoints, keys: small sets).
    async fn list(&self, prefix: &str) -> Result<Vec<String>>;
    /// Deletes an object (an unreferenced duplicate, or a destroyed recording's objects). With
    /// S3 Object Lock on, every version and delete marker of exactly `key` is deleted, and a
    /// version the store refuses to delete (retention or legal hold) fails with `Locked`.
    async fn delete(&self, key: &str) -> Result<()>;
    /// Destroys an object for good: every version of it where the store keeps versions (with
    /// Object Lock), returning the version ids deleted (empty for stores without versions).
    /// Refused with `Locked` while a version is under retention or legal hold.
    async fn destroy(&self, key: &str) -> Result<Vec<String>> {
        self.delete(key).await.map(|_| Vec::new())
    }
    /// Aborts a journaled multipart upload (no-op for stores without them).
    async fn abort_upload(&self, key: &str, upload_id: &str) -> Result<()>;
    /// Aborts every unfinished multipart upload under `key_prefix` (this node's), returning how
    /// many. Called at start, when none of this node's uploads can be in flight.
    async fn sweep_uploads(&self, key_prefix: &str) -> Result<usize>;
    /// Reachability check for `/readyz`.
    async fn check(&self) -> Result<()>;
    /// Start-up check of write-once storage: with S3 `object_lock` other than `off`, the bucket
    /// must have versioning `Enabled` and Object Lock enabled, else `Config` naming the bucket and
    /// what is missing (the daemon then refuses to start). Stores without locking: `Ok(())`.
    async fn check_worm(&self) -> Result<()> {
        Ok(())
    }
    /// Locks the current version of `key` until `until_micros` (only ever extending an existing
    /// retention date, never shortening it) and, with `legal_hold: Some(on)`, sets or clears its
    /// legal hold; returns the locked version id. Never uses a governance bypass. `None` when the
    /// store has no locking: the default, for S3 with `object_lock = "off"` and for the `fs`
    /// store, whose read-only files make tampering evident but do not make it impossible (the
    /// `fs` store is tamper-evident, not WORM).
    async fn retain(&self, _key: &str, _until_micros: i64, _legal_hold: Option<bool>) -> Result<Option<String>> {
        Ok(None)
    }
}

/// Builds the store named by the config.
pub async fn open(cfg: &StoreConfig) -> Result<Arc<dyn ObjectStore>> {
    match cfg.kind {
        StoreKind::Fs => {
            let path = cfg.path.clone().ok_or_else(|| StoreError::Config("store.path is required".into()))?;
            Ok(Arc::new(fs::FsStore::open(path)?.with_readback(cfg.verify_readback)))
        }
        StoreKind::S3 => Ok(Arc::new(s3::S3Store::open(cfg).await?)),
    }
}

/// Object key of a recording's original.
pub fn original_key(node: &str, id: &str) -> String {
    format!("originals/{node}/{id}/original")
}

/// Object key of a recording's manifest (beside the original).
pub fn manifest_key(node: &str, id: &str) -> String {
    format!("originals/{node}/{id}/manifest.json")
}

/// Key prefix of everything a node uploads (for the start-up multipart sweep).
pub fn node_prefix(node: &str) -> String {
    format!("originals/{node}/")
}
