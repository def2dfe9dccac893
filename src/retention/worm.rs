//! The `worm_lock` job: with S3 Object Lock on, locks a recording's original (its exact version)
//! until its retention date and mirrors its legal hold. Queued after archiving and after every
//! change that can move the date or the hold (category, hold placed or lifted); each queuing has
//! its own dedupe key, so a later change is a new job. The store only ever extends a retention
//! date, so running a job twice, or an older job after a newer one, never shortens a lock. A
//! permanent recording is locked to a horizon ([`PERMANENT_HORIZON`]) and a renewal job is queued
//! for half-way there. The only catalog record is a `worm_locked` custody event.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::Policy;
use crate::catalog::{Catalog, Job};
use crate::config::Period;
use crate::jobs::{JobHandler, WORM_LOCK};
use crate::store::ObjectStore;

/// How far ahead a permanent recording is locked; renewed when half of it has passed.
pub const PERMANENT_HORIZON: Duration = Duration::from_secs(10 * 365 * 86_400);

/// The payload of a `worm_lock` job.
pub fn payload(recording_id: &str) -> serde_json::Value {
    serde_json::json!({ "recording_id": recording_id })
}

/// Queues a `worm_lock` job for a recording (a new job each time: the dedupe key carries the time).
pub async fn enqueue(catalog: &dyn Catalog, recording_id: &str) -> crate::catalog::Result<bool> {
    let now = crate::catalog::now_micros();
    catalog.enqueue(WORM_LOCK, &format!("{recording_id}:{now}"), &payload(recording_id), 10, now).await
}

/// Runs `worm_lock` jobs.
pub struct WormLocker {
    /// Recordings and the custody log.
    pub catalog: Arc<dyn Catalog>,
    /// The locking store.
    pub store: Arc<dyn ObjectStore>,
    /// The retention rules.
    pub policy: Policy,
    /// `store.object_lock` (`governance` or `compliance`), for the custody event.
    pub mode: String,
    /// Custody actor (`node:<id>`).
    pub actor: String,
}

#[async_trait]
impl JobHandler for WormLocker {
    async fn handle(&self, job: &Job) -> anyhow::Result<()> {
        let id = job.payload["recording_id"].as_str().ok_or_else(|| anyhow::anyhow!("worm_lock job without recording_id"))?;
        let rec = self.catalog.recording(id).await?;
        if rec.state == "destroyed" {
            return Ok(());
        }
        let now = crate::catalog::now_micros();
        let (until, permanent) = match self.policy.period(&rec.category) {
            Period::For(d) => (rec.retention_from.saturating_add(d.as_micros() as i64), false),
            Period::Permanent => (now.saturating_add(PERMANENT_HORIZON.as_micros() as i64), true),
        };
        let Some(version) = self.store.retain(&rec.object_key, until, Some(rec.legal_hold)).await? else {
            return Ok(());
        };
        let details = serde_json::json!({
            "key": rec.object_key,
            "version_id": version,
            "until": crate::custody::format_at(until),
            "legal_hold": rec.legal_hold,
            "mode": self.mode,
        });
        self.catalog.append_custody(crate::custody::kind::WORM_LOCKED, &self.actor, Some(&rec.id), details).await?;
        tracing::info!(recording = %rec.id, version = %version, until = %crate::custody::format_at(until), legal_hold = rec.legal_hold, "original locked");
        if permanent {
            // Renew the horizon half-way through; one renewal per day of horizon at most.
            let at = now + PERMANENT_HORIZON.as_micros() as i64 / 2;
            let key = format!("{}:renew:{}", rec.id, until / 86_400_000_000);
            self.catalog.enqueue(WORM_LOCK, &key, &payload(&rec.id), 0, at).await?;
        }
        Ok(())
    }
}
