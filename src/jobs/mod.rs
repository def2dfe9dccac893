//! The durable job queue's worker side: a `Worker` trait in the style of Garage's background
//! workers (each `work()` call does one bounded unit and says whether more is waiting), a runner
//! that drives a worker until shutdown with backoff on errors, and `JobWorker`, which claims jobs
//! from the catalog with a lease, heartbeats while a handler runs, and completes or reschedules
//! them. Handlers must be idempotent: a job may run again after a crash or a lost lease.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use crate::catalog::{Catalog, CatalogError, Job};

/// Job kind: delete the redundant upload of a duplicate sighting.
pub const DELETE_REDUNDANT: &str = "delete_redundant";
/// Job kind: probe a recording and make its proxy and poster.
pub const DERIVE: &str = "derive";
/// Job kind: cut a clip.
pub const CLIP: &str = "clip";
/// Job kind: obtain an RFC 3161 time-stamp token.
pub const TIMESTAMP: &str = "timestamp";
/// Job kind: lock a recording's original in a WORM store (`crate::retention::worm`).
pub const WORM_LOCK: &str = "worm_lock";

/// What a worker reports after one unit of work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerState {
    /// More work is waiting: call again at once.
    Busy,
    /// Nothing to do: wait a little (or until woken).
    Idle,
    /// Finished for good.
    Done,
}

/// A background worker.
#[async_trait]
pub trait Worker: Send {
    /// Name for logs.
    fn name(&self) -> String;
    /// Does one bounded unit of work.
    async fn work(&mut self) -> anyhow::Result<WorkerState>;
}

/// Runs `w` until `stop` fires or it is done. Errors are logged and retried with backoff.
pub async fn run_worker(mut w: Box<dyn Worker>, stop: CancellationToken, idle: Duration) {
    let mut errors = 0u32;
    loop {
        if stop.is_cancelled() {
            break;
        }
        let state = tokio::select! {
            _ = stop.cancelled() => break,
            r = w.work() => r,
        };
        let pause = match state {
            Ok(WorkerState::Busy) => {
                errors = 0;
                continue;
            }
            Ok(WorkerState::Idle) => {
                errors = 0;
                idle
            }
            Ok(WorkerState::Done) => break,
            Err(e) => {
                errors += 1;
                tracing::warn!(worker = %w.name(), error = %e, "worker error");
                Duration::from_millis(500u64.saturating_mul(1 << errors.min(7)))
            }
        };
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(pause) => {}
        }
    }
    tracing::debug!(worker = %w.name(), "worker stopped");
}

/// Runs one kind of job.
#[async_trait]
pub trait JobHandler: Send + Sync {
    /// Does the job. Must be idempotent.
    async fn handle(&self, job: &Job) -> anyhow::Result<()>;
}

/// Claims and runs jobs of the kinds it has handlers for.
pub struct JobWorker {
    /// The queue.
    pub catalog: Arc<dyn Catalog>,
    /// Lease owner (the node id).
    pub owner: String,
    /// Handlers by kind.
    pub handlers: HashMap<&'static str, Arc<dyn JobHandler>>,
    /// Lease length; heartbeats renew it at a third of that.
    pub lease: Duration,
    /// First retry delay; doubles per attempt up to `max_backoff`.
    pub backoff: Duration,
    /// Longest retry delay (an hour for most jobs; shorter where an outside service comes back,
    /// such as a TSA).
    pub max_backoff: Duration,
}

#[async_trait]
impl Worker for JobWorker {
    fn name(&self) -> String {
        "jobs".into()
    }

    async fn work(&mut self) -> anyhow::Result<WorkerState> {
        let kinds: Vec<&str> = self.handlers.keys().copied().collect();
        let lease = self.lease.as_micros() as i64;
        let Some(job) = self.catalog.claim(&kinds, &self.owner, lease).await? else {
            return Ok(WorkerState::Idle);
        };
        let handler = self.handlers.get(job.kind.as_str()).cloned().ok_or_else(|| anyhow::anyhow!("no handler for {}", job.kind))?;
        let beat = {
            let (catalog, id, token) = (self.catalog.clone(), job.id.clone(), job.lease_token.clone());
            let every = self.lease / 3;
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    if let Err(CatalogError::LeaseLost(_)) = catalog.heartbeat(&id, &token, lease).await {
                        break;
                    }
                }
            })
        };
        let result = handler.handle(&job).await;
        beat.abort();
        match result {
            Ok(()) => self.catalog.complete(&job.id, &job.lease_token).await?,
            Err(e) => {
                let delay = self.backoff.saturating_mul(1 << job.attempts.clamp(0, 12) as u32).min(self.max_backoff);
                tracing::warn!(job = %job.id, kind = %job.kind, attempt = job.attempts, error = %e, "job failed; will retry");
                let at = crate::catalog::now_micros() + delay.as_micros() as i64;
                self.catalog.retry_later(&job.id, &job.lease_token, &format!("{e:#}"), at).await?;
            }
        }
        Ok(WorkerState::Busy)
    }
}

/// Deletes the redundant objects of a duplicate sighting (idempotent: missing objects are fine).
pub struct DeleteRedundant {
    /// The store holding them.
    pub store: Arc<dyn crate::store::ObjectStore>,
}

#[async_trait]
impl JobHandler for DeleteRedundant {
    async fn handle(&self, job: &Job) -> anyhow::Result<()> {
        let keys = job.payload["keys"].as_array().cloned().unwrap_or_default();
        for k in keys.iter().filter_map(|k| k.as_str()) {
            match self.store.delete(k).await {
                Ok(()) | Err(crate::store::StoreError::NotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}
