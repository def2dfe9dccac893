//! Retention: how long each recording is kept, and how it leaves. A recording's clock starts at
//! the later of its start and its archiving; its category (`[retention.categories]`) gives the
//! period, `permanent` never ends, and a legal hold or a link to an open case holds it whatever
//! its period. The retention worker queues expired recordings for destruction (re-checked while
//! they wait), and destroys those past the grace period with enough distinct archivist approvals:
//! every object is deleted from the store and the recording row stays as the tombstone. The
//! daemon never deletes a recording's objects before its retention date.

pub mod worm;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::catalog::{Catalog, Recording};
use crate::config::{Period, RetentionConfig};
use crate::jobs::{Worker, WorkerState};
use crate::store::{ObjectStore, StoreError};

/// Recordings examined per query while queuing.
const BATCH: i64 = 500;

/// The retention rules in force.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Category → period.
    pub periods: BTreeMap<String, Period>,
    /// Time in the queue before a destruction can happen.
    pub grace: Duration,
    /// Distinct approvals a destruction needs.
    pub approvals: u8,
    /// Categories whose clock starts at the closing of the recording's cases.
    pub case_driven: std::collections::BTreeSet<String>,
}

/// A recording that would be queued now, and why (`retention plan`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct PlanItem {
    /// The recording.
    pub recording_id: String,
    /// Its category.
    pub category: String,
    /// The rule, e.g. `uncategorized: 184d`.
    pub rule: String,
    /// When its retention ended (RFC 3339).
    pub retention_until: String,
}

impl Policy {
    /// The policy of a config; warns about categories shorter than six months.
    pub fn from_config(cfg: &RetentionConfig) -> Self {
        let periods = cfg.periods();
        for (name, p) in &periods {
            if let Period::For(d) = p {
                if *d < Duration::from_secs(183 * 86_400) {
                    tracing::warn!(category = %name, period = %humantime::format_duration(*d), "retention period shorter than six months");
                }
            }
        }
        Self { periods, grace: cfg.grace, approvals: cfg.approvals, case_driven: cfg.case_driven.iter().cloned().collect() }
    }

    /// The period of a category (an unknown category counts as `uncategorized`).
    pub fn period(&self, category: &str) -> Period {
        self.periods.get(category).or_else(|| self.periods.get("uncategorized")).copied().unwrap_or(Period::Permanent)
    }

    /// Fills `retention_until` / `retention_permanent` on a recording for the API.
    pub fn annotate(&self, r: &mut Recording) {
        match self.period(&r.category) {
            Period::Permanent => {
                r.retention_permanent = true;
                r.retention_until = None;
            }
            // A case-driven category's end depends on when its cases close: not known here.
            Period::For(_) if self.case_driven.contains(&r.category) && !r.cases.is_empty() => {
                r.retention_permanent = false;
                r.retention_until = None;
            }
            Period::For(d) => {
                r.retention_permanent = false;
                r.retention_until = Some(crate::custody::format_at(r.retention_from + d.as_micros() as i64));
            }
        }
    }

    fn rule(category: &str, d: Duration) -> String {
        format!("{category}: {}", humantime::format_duration(d))
    }

    /// Every recording that is expired and not held now, by category.
    pub async fn plan(&self, catalog: &dyn Catalog, limit: usize) -> anyhow::Result<Vec<PlanItem>> {
        let now = crate::catalog::now_micros();
        let mut out = Vec::new();
        for (category, p) in &self.periods {
            let Period::For(d) = p else { continue };
            let mut after = String::new();
            loop {
                let page =
                    catalog.expired(category, self.case_driven.contains(category), now - d.as_micros() as i64, &after, BATCH).await?;
                let done = (page.len() as i64) < BATCH;
                for e in page {
                    after = e.id.clone();
                    out.push(PlanItem {
                        recording_id: e.id,
                        category: category.clone(),
                        rule: Self::rule(category, *d),
                        retention_until: crate::custody::format_at(e.retention_from + d.as_micros() as i64),
                    });
                    if out.len() >= limit {
                        return Ok(out);
                    }
                }
                if done {
                    break;
                }
            }
        }
        Ok(out)
    }
}

/// The daemon's retention worker.
pub struct RetentionWorker {
    /// Recordings and the queue.
    pub catalog: Arc<dyn Catalog>,
    /// Where the objects are.
    pub store: Arc<dyn ObjectStore>,
    /// The rules.
    pub policy: Policy,
    /// How often to look for newly expired recordings.
    pub sweep: Duration,
    /// Custody actor (`node:<id>`).
    pub actor: String,
    /// When the last sweep ran.
    pub last_sweep: Option<Instant>,
}

impl RetentionWorker {
    /// Queues every recording whose retention has ended.
    pub async fn queue_expired(&self) -> anyhow::Result<usize> {
        let items = self.policy.plan(&*self.catalog, usize::MAX).await?;
        let grace = self.policy.grace.as_micros() as i64;
        let mut n = 0;
        for it in items {
            let until = chrono::DateTime::parse_from_rfc3339(&it.retention_until).map(|t| t.timestamp_micros()).unwrap_or(0);
            if self.catalog.queue_destruction(&it.recording_id, &it.rule, until, grace, &self.actor).await?.is_some() {
                n += 1;
            }
        }
        Ok(n)
    }

    /// Re-checks waiting entries: a hold, an open case or a longer category since queuing cancels.
    async fn recheck_pending(&self) -> anyhow::Result<()> {
        let now = crate::catalog::now_micros();
        for d in self.catalog.destructions(Some("pending"), 10_000).await? {
            let r = self.catalog.recording(&d.recording_id).await?;
            let (open_case, clock) = self.standing(&r).await?;
            let why = if r.legal_hold {
                Some("a legal hold was placed".to_string())
            } else if open_case {
                Some("the recording is linked to an open case".to_string())
            } else {
                match self.policy.period(&r.category) {
                    Period::Permanent => Some(format!("its category {} is now kept permanently", r.category)),
                    Period::For(p) if clock + p.as_micros() as i64 > now => {
                        Some(format!("its retention now ends later (category {})", r.category))
                    }
                    Period::For(_) => None,
                }
            };
            if let Some(why) = why {
                tracing::info!(recording = %r.id, reason = %why, "destruction cancelled");
                self.catalog.cancel_destruction(&d.id, &why, &self.actor).await?;
            }
        }
        Ok(())
    }

    /// Whether an open case holds a recording, and when its retention clock started: the later of
    /// its start and its archiving, and for a case-driven category also of the last closing of its
    /// cases. One read of each case; a case that cannot be read is an error, never "not held".
    async fn standing(&self, r: &Recording) -> anyhow::Result<(bool, i64)> {
        let driven = self.policy.case_driven.contains(&r.category);
        let (mut open, mut from) = (false, r.retention_from);
        for c in &r.cases {
            let case = match self.catalog.case(c).await {
                Ok(case) => case,
                Err(crate::catalog::CatalogError::NotFound(_)) => continue,
                Err(e) => return Err(e.into()),
            };
            open |= case.status == "open";
            if let Some(t) = case.closed_at.filter(|_| driven).and_then(|t| chrono::DateTime::parse_from_rfc3339(&t).ok()) {
                from = from.max(t.timestamp_micros());
            }
        }
        Ok((open, from))
    }

    /// Destroys approved entries past their grace period. The destructions of one pass form one
    /// batch, which gets one destruction certificate.
    pub async fn destroy_due(&self) -> anyhow::Result<usize> {
        let now = crate::catalog::now_micros();
        let batch = uuid::Uuid::now_v7().to_string();
        let mut n = 0;
        for d in self.catalog.due_destructions(now, self.policy.approvals as i64).await? {
            let r = self.catalog.recording(&d.recording_id).await?;
            // Never before the date, whatever the queue says.
            let (open_case, clock) = self.standing(&r).await?;
            let until = match self.policy.period(&r.category) {
                Period::For(p) => clock + p.as_micros() as i64,
                Period::Permanent => i64::MAX,
            };
            if r.legal_hold || until > now || open_case {
                tracing::warn!(recording = %r.id, "refusing to destroy a recording before its retention date or under a hold");
                continue;
            }
            let mut keys: Vec<String> = crate::custody::verify::objects_of(&*self.catalog, &r).await?.into_iter().map(|o| o.key).collect();
            for t in self.catalog.timestamps(Some(&r.id)).await? {
                keys.push(t.token_key);
            }
            // The original first: when the store still locks it, nothing else is gone either.
            keys.sort_by_key(|k| *k != r.object_key);
            let mut locked = false;
            let mut versions = serde_json::Map::new();
            for k in &keys {
                match self.store.destroy(k).await {
                    Ok(v) if !v.is_empty() => {
                        versions.insert(k.clone(), v.into());
                    }
                    Ok(_) | Err(StoreError::NotFound(_)) => {}
                    Err(e @ StoreError::Locked { .. }) => {
                        tracing::error!(recording = %r.id, key = %k, error = %e, "the store refuses to delete a locked object; retrying next pass");
                        locked = true;
                        break;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            if locked {
                continue;
            }
            self.catalog.finish_destruction(&d.id, &keys, &versions.into(), &batch, &self.actor).await?;
            tracing::info!(recording = %r.id, sha256 = %r.sha256, objects = keys.len(), batch = %batch, "recording destroyed");
            n += 1;
        }
        Ok(n)
    }
}

#[async_trait]
impl Worker for RetentionWorker {
    fn name(&self) -> String {
        "retention".into()
    }

    async fn work(&mut self) -> anyhow::Result<WorkerState> {
        if self.last_sweep.is_none_or(|t| t.elapsed() >= self.sweep) {
            let queued = self.queue_expired().await?;
            if queued > 0 {
                tracing::info!(queued, "recordings queued for destruction");
            }
            self.recheck_pending().await?;
            self.last_sweep = Some(Instant::now());
        }
        self.destroy_due().await?;
        Ok(WorkerState::Idle)
    }
}
