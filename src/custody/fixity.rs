//! The fixity worker: in the daemon, re-reads a configurable share of the archive per day
//! (`custody.fixity_per_day`), the recordings checked longest ago first, recomputing every stored
//! object's SHA-256 against the catalog. Each check is a `fixity_checked` custody event; a
//! mismatch also raises `evidenced_fixity_failures_total` and logs an error naming the object.
//! Work is paced by a budget that grows with time, so a large archive is spread over the day.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::verify::{check_object, objects_of};
use crate::catalog::Catalog;
use crate::jobs::{Worker, WorkerState};
use crate::metrics::Metrics;
use crate::store::ObjectStore;

/// How long the recording count is trusted before it is counted again.
const RECOUNT: Duration = Duration::from_secs(300);

/// Re-verifies stored objects in the background.
pub struct FixityWorker {
    /// Recordings and the custody log.
    pub catalog: Arc<dyn Catalog>,
    /// The objects.
    pub store: Arc<dyn ObjectStore>,
    /// Mismatch counter.
    pub metrics: Arc<Metrics>,
    /// Share of all recordings to check per day.
    pub per_day: f64,
    /// Custody actor (`node:<id>`).
    pub actor: String,
    /// Checks owed so far (grows with time, one is spent per recording checked).
    budget: f64,
    /// When the budget last grew.
    last: Instant,
    /// Recording count and when it was taken.
    population: Option<(i64, Instant)>,
}

impl FixityWorker {
    /// A worker checking `per_day` of the archive per day.
    pub fn new(catalog: Arc<dyn Catalog>, store: Arc<dyn ObjectStore>, metrics: Arc<Metrics>, per_day: f64, actor: String) -> Self {
        Self { catalog, store, metrics, per_day, actor, budget: 0.0, last: Instant::now(), population: None }
    }

    /// Checks one recording's objects and records the outcome; returns whether all matched.
    pub async fn check(&self, id: &str) -> anyhow::Result<bool> {
        let rec = self.catalog.recording(id).await?;
        let mut results = Vec::new();
        let mut ok = true;
        for o in objects_of(&*self.catalog, &rec).await? {
            let c = check_object(&*self.store, o, &|_| {}).await;
            if let Some(p) = &c.problem {
                ok = false;
                self.metrics.fixity_failures.inc();
                tracing::error!(recording = %id, problem = %p, "fixity check failed");
            }
            results.push(serde_json::json!({
                "key": c.object.key, "what": c.object.what, "expected": c.object.sha256, "found": c.found,
                "ok": c.problem.is_none(), "problem": c.problem.as_ref().map(|p| p.to_string()),
            }));
        }
        self.catalog.record_fixity(id, ok, serde_json::json!({ "objects": results }), &self.actor).await?;
        self.metrics.fixity_checks.inc();
        Ok(ok)
    }
}

#[async_trait]
impl Worker for FixityWorker {
    fn name(&self) -> String {
        "fixity".into()
    }

    async fn work(&mut self) -> anyhow::Result<WorkerState> {
        if self.per_day <= 0.0 {
            return Ok(WorkerState::Done);
        }
        let population = match self.population {
            Some((n, at)) if at.elapsed() < RECOUNT => n,
            _ => {
                let n = self.catalog.fixity_population().await?;
                self.population = Some((n, Instant::now()));
                n
            }
        };
        let elapsed = self.last.elapsed().as_secs_f64();
        self.last = Instant::now();
        // Never owe more than a day's work (a long pause does not cause a storm).
        let day = population as f64 * self.per_day;
        self.budget = (self.budget + day * elapsed / 86_400.0).min(day.max(1.0));
        if self.budget < 1.0 {
            return Ok(WorkerState::Idle);
        }
        let Some(id) = self.catalog.fixity_due(1).await?.into_iter().next() else { return Ok(WorkerState::Idle) };
        self.check(&id).await?;
        self.budget -= 1.0;
        Ok(if self.budget >= 1.0 { WorkerState::Busy } else { WorkerState::Idle })
    }
}
