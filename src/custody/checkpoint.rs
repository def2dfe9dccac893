//! Signed checkpoints of the custody chain head. A checkpoint is a small canonical JSON document
//! (node, key id, head sequence number and hash, time, reason) signed with the node's Ed25519
//! key. It is written to the object store first (`checkpoints/<node>/<seq>-<id>.json` and the raw
//! 64-byte signature beside it as `.sig`, exactly what `openssl pkeyutl -verify -rawin` takes),
//! then recorded in the catalog together with a `checkpoint` custody event. Because the store
//! keeps a copy the catalog cannot rewrite, deleting the newest custody rows leaves a chain
//! shorter than a signed checkpoint, which `verify` reports.
//!
//! Before the signature, the entries not yet copied to the store are written there as custody
//! segments (`super::segments`), so the store holds the whole chain up to every checkpoint and
//! `evidenced rebuild` can restore a lost catalog from the store alone.
//!
//! The daemon makes one at start, every `custody.checkpoint_every` entries or
//! `custody.checkpoint_interval` (when there is anything new), and at stop; `export` makes one so
//! a bag's entries are covered.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use base64::Engine;
use bytes::Bytes;
use sha2::{Digest, Sha256};

use super::keys::NodeSigner;
use crate::catalog::custody::subject;
use crate::catalog::{Catalog, Checkpoint};
use crate::jobs::{Worker, WorkerState};
use crate::store::ObjectStore;

/// The `type` field of a checkpoint body.
pub const CHECKPOINT_TYPE: &str = "evidenced-checkpoint/1";

/// Store key prefix of every checkpoint.
pub const PREFIX: &str = "checkpoints/";

/// Store key prefix of published public keys (`keys/<key_id>.pem`).
pub const KEYS_PREFIX: &str = "keys/";

/// The facts a checkpoint body carries, parsed back for verification.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
pub struct Body {
    /// Always [`CHECKPOINT_TYPE`].
    #[serde(rename = "type")]
    pub kind: String,
    /// Checkpoint id.
    pub id: String,
    /// Signing node.
    pub node: String,
    /// Signing key id.
    pub key_id: String,
    /// Sequence number of the signed head.
    pub seq: i64,
    /// Hash of the signed head.
    pub hash: String,
    /// When it was signed (RFC 3339).
    pub at: String,
    /// Why: `start`, `stop`, `count`, `interval`, `export`, `ingest`.
    pub reason: String,
}

/// Makes checkpoints for one node.
pub struct Checkpointer {
    /// Where the chain lives.
    pub catalog: Arc<dyn Catalog>,
    /// Where the checkpoint copies go.
    pub store: Arc<dyn ObjectStore>,
    /// The node key.
    pub signer: Arc<NodeSigner>,
    /// Queue a time-stamp for every checkpoint (a TSA is configured).
    pub timestamp: bool,
    /// Highest sequence number this process knows the store's segments cover (looked up in the
    /// store at the first checkpoint), so each checkpoint copies only what is new.
    pub copied: tokio::sync::Mutex<Option<i64>>,
}

impl Checkpointer {
    /// Publishes the node's public key: in the catalog and as `keys/<key_id>.pem` in the store.
    pub async fn publish_key(&self) -> anyhow::Result<()> {
        self.catalog.register_key(&self.signer.node_key()).await?;
        let key = format!("{KEYS_PREFIX}{}.pem", self.signer.key_id);
        if self.store.size(&key).await.is_err() {
            self.store.put_bytes(&key, Bytes::from(self.signer.public_pem.clone()), "application/x-pem-file").await?;
        }
        Ok(())
    }

    /// Entries appended since the newest checkpoint (not counting `checkpoint` events), and the head.
    async fn pending(&self) -> anyhow::Result<(i64, Option<(i64, String)>)> {
        let head = self.catalog.chain_head().await?;
        let Some((head_seq, _)) = head.clone() else { return Ok((0, None)) };
        let last = self.catalog.latest_checkpoint().await?.map(|c| c.seq).unwrap_or(0);
        if head_seq <= last {
            return Ok((0, head));
        }
        // Look past the checkpoint events themselves (one per checkpoint, appended after it).
        let after = self.catalog.custody_events(None, last, 16).await?;
        let only_checkpoints = after.len() < 16 && after.iter().all(|e| e.body.kind == super::kind::CHECKPOINT);
        Ok((if only_checkpoints { 0 } else { head_seq - last }, head))
    }

    /// Signs the current head if anything was appended since the last checkpoint (or always,
    /// with `force`). Returns the checkpoint made, if any.
    pub async fn checkpoint(&self, reason: &str, force: bool) -> anyhow::Result<Option<Checkpoint>> {
        let (pending, head) = self.pending().await?;
        let Some((seq, hash)) = head else { return Ok(None) };
        if pending == 0 && !force {
            return Ok(None);
        }
        // The entries first, so the store never holds a checkpoint of entries it lacks.
        {
            let mut copied = self.copied.lock().await;
            let from = match *copied {
                Some(c) => super::segments::extended(self.store.as_ref(), c).await?,
                None => super::segments::covered(self.store.as_ref()).await?,
            };
            let upto =
                if from < seq { super::segments::write(self.catalog.as_ref(), self.store.as_ref(), from + 1, seq).await? } else { from };
            *copied = Some(upto);
        }
        let id = uuid::Uuid::now_v7().to_string();
        let at = crate::catalog::now_micros();
        let body = Body {
            kind: CHECKPOINT_TYPE.into(),
            id: id.clone(),
            node: self.signer.node.clone(),
            key_id: self.signer.key_id.clone(),
            seq,
            hash: hash.clone(),
            at: super::format_at(at),
            reason: reason.into(),
        };
        let text = serde_json_canonicalizer::to_vec(&body)?;
        let sig = self.signer.sign(&text);
        let object_key = format!("{PREFIX}{}/{seq:020}-{id}.json", self.signer.node);
        // The signature first: a cut between the two uploads then leaves a lone `.sig`, which
        // nothing reads, never a body without its signature, which `verify` must report.
        self.store.put_bytes(&sig_key(&object_key), Bytes::copy_from_slice(&sig), "application/octet-stream").await?;
        self.store.put_bytes(&object_key, Bytes::from(text.clone()), "application/json").await?;
        let cp = Checkpoint {
            id: id.clone(),
            node: self.signer.node.clone(),
            key_id: self.signer.key_id.clone(),
            seq,
            hash,
            at,
            body: String::from_utf8(text.clone())?,
            signature: base64::engine::general_purpose::STANDARD.encode(sig),
            object_key: object_key.clone(),
        };
        self.catalog.record_checkpoint(&cp, &format!("node:{}", self.signer.node)).await?;
        if self.timestamp {
            let sha = hex::encode(Sha256::digest(&text));
            let payload = super::stamper::payload(subject::CHECKPOINT, &id, &sha, &token_key(&object_key));
            self.catalog.enqueue(crate::jobs::TIMESTAMP, &format!("checkpoint:{id}"), &payload, i64::MAX / 2, at).await?;
        }
        tracing::info!(seq, reason, key = %object_key, "signed a custody checkpoint");
        Ok(Some(cp))
    }
}

/// A checkpoint object as read back from the store.
pub struct Stored {
    /// Store key of its body.
    pub key: String,
    /// The parsed body.
    pub body: Body,
    /// The body's bytes exactly as stored (what the signature covers).
    pub text: Vec<u8>,
    /// The raw Ed25519 signature.
    pub sig: Vec<u8>,
}

/// Reads every checkpoint object in the store with its signature (`verify` and `rebuild`). Those
/// that cannot be read or are not checkpoint bodies come back apart, as (key, why).
pub async fn read_stored(store: &dyn ObjectStore) -> Result<(Vec<Stored>, Vec<(String, String)>), crate::store::StoreError> {
    let (mut good, mut bad) = (Vec::new(), Vec::new());
    for key in store.list(PREFIX).await?.into_iter().filter(|k| k.ends_with(".json")) {
        let read = |k: String| async move { super::verify::read_all(store, &k).await };
        let (text, sig) = match (read(key.clone()).await, read(sig_key(&key)).await) {
            (Ok(t), Ok(s)) => (t, s),
            (Err(e), _) | (_, Err(e)) => {
                bad.push((key, format!("cannot read it or its signature: {e}")));
                continue;
            }
        };
        match serde_json::from_slice::<Body>(&text) {
            Ok(body) if body.kind == CHECKPOINT_TYPE => good.push(Stored { key, body, text, sig }),
            Ok(body) => bad.push((key, format!("not a checkpoint: type {:?}", body.kind))),
            Err(e) => bad.push((key, format!("not a checkpoint: {e}"))),
        }
    }
    Ok((good, bad))
}

/// The public keys the store publishes (`keys/*.pem`), by the key id each PEM hashes to (so a
/// file's name is not trusted); unreadable or malformed files are skipped.
pub async fn published_keys(store: &dyn ObjectStore) -> Result<std::collections::HashMap<String, String>, crate::store::StoreError> {
    let mut keys = std::collections::HashMap::new();
    for key in store.list(KEYS_PREFIX).await? {
        if let Ok(pem) = super::verify::read_all(store, &key).await.map(|b| String::from_utf8_lossy(&b).into_owned())
            && let Ok(id) = super::keys::key_id_of(&pem)
        {
            keys.insert(id, pem);
        }
    }
    Ok(keys)
}

/// Store key of a checkpoint's signature, beside its body.
pub fn sig_key(body_key: &str) -> String {
    format!("{}.sig", body_key.strip_suffix(".json").unwrap_or(body_key))
}

/// Store key of a checkpoint's time-stamp token, beside its body.
pub fn token_key(body_key: &str) -> String {
    format!("{}.tsr", body_key.strip_suffix(".json").unwrap_or(body_key))
}

/// The daemon's checkpoint schedule as a background worker.
pub struct CheckpointWorker {
    /// Makes the checkpoints.
    pub checkpointer: Arc<Checkpointer>,
    /// Entries that trigger one.
    pub every: i64,
    /// Time that triggers one (when there is anything new).
    pub interval: Duration,
    /// When the last one was made (or the worker started).
    pub last: Instant,
}

#[async_trait]
impl Worker for CheckpointWorker {
    fn name(&self) -> String {
        "checkpoints".into()
    }

    async fn work(&mut self) -> anyhow::Result<WorkerState> {
        let (pending, _) = self.checkpointer.pending().await?;
        let due = pending >= self.every || (pending > 0 && self.last.elapsed() >= self.interval);
        if !due {
            return Ok(WorkerState::Idle);
        }
        let reason = if pending >= self.every { "count" } else { "interval" };
        self.checkpointer.checkpoint(reason, false).await?;
        self.last = Instant::now();
        Ok(WorkerState::Idle)
    }
}
