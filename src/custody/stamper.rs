//! The `timestamp` job: obtains an RFC 3161 token for a recording's SHA-256 or a checkpoint's
//! body, stores the whole TimeStampResp beside the object, and records it (catalog row and a
//! `timestamped` custody event) in one transaction. The job is queued with the archive commit
//! (or the checkpoint), so while the TSA is unreachable requests simply wait in the queue with
//! backoff; ingest never waits for them.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use sha2::{Digest, Sha256};

use super::tsa::TsaClient;
use crate::catalog::{Catalog, Job, Timestamp};
use crate::jobs::JobHandler;
use crate::store::ObjectStore;

/// The payload of a `timestamp` job.
pub fn payload(subject: &str, subject_id: &str, sha256: &str, token_key: &str) -> serde_json::Value {
    serde_json::json!({"subject": subject, "subject_id": subject_id, "sha256": sha256, "token_key": token_key})
}

/// Store key of a recording's token, beside its original.
pub fn recording_token_key(object_key: &str) -> String {
    match object_key.rsplit_once('/') {
        Some((dir, _)) => format!("{dir}/timestamp.tsr"),
        None => format!("{object_key}.tsr"),
    }
}

/// Runs `timestamp` jobs.
pub struct Stamper {
    /// Where tokens are recorded.
    pub catalog: Arc<dyn Catalog>,
    /// Where tokens are kept.
    pub store: Arc<dyn ObjectStore>,
    /// The TSA.
    pub tsa: Arc<TsaClient>,
    /// Custody actor (`node:<id>`).
    pub actor: String,
}

#[async_trait]
impl JobHandler for Stamper {
    async fn handle(&self, job: &Job) -> anyhow::Result<()> {
        let field = |k: &str| job.payload[k].as_str().map(str::to_string).ok_or_else(|| anyhow::anyhow!("timestamp job without {k}"));
        let (subject, subject_id, sha256, token_key) = (field("subject")?, field("subject_id")?, field("sha256")?, field("token_key")?);
        if self.catalog.timestamps(Some(&subject_id)).await?.iter().any(|t| t.subject == subject) {
            return Ok(());
        }
        let digest: [u8; 32] =
            hex::decode(&sha256).ok().and_then(|d| d.try_into().ok()).ok_or_else(|| anyhow::anyhow!("bad sha256 {sha256:?} in job"))?;
        let token = self.tsa.stamp(&digest).await?;
        let token_sha256 = hex::encode(Sha256::digest(&token.der));
        self.store.put_bytes(&token_key, Bytes::from(token.der), "application/timestamp-reply").await?;
        let t = Timestamp {
            id: uuid::Uuid::now_v7().to_string(),
            subject,
            subject_id,
            sha256,
            token_key,
            token_sha256,
            gen_time: token.gen_time_micros,
            serial: token.serial,
            tsa: self.tsa.url().to_string(),
            created_at: crate::catalog::now_micros(),
        };
        self.catalog.record_timestamp(&t, &self.actor).await?;
        tracing::info!(subject = %t.subject, id = %t.subject_id, serial = %t.serial, "time-stamped");
        Ok(())
    }
}
