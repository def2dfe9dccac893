//! The daemon's ingest loops: one watcher per dock (scan + notify + settle), a small pool of
//! ingest workers, a retry pump that resumes journaled sightings (after failures or a crash), and
//! a release pump for scheduled dock releases. Shutdown stops intake at once and gives in-flight
//! uploads a grace period; anything abandoned resumes from the journal on the next start.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use super::{DockCtx, Ingestor, Outcome};
use crate::catalog::{Fingerprint, Sighting};
use crate::config::IngestConfig;
use crate::watch::{self, Settler};

/// How often the journal is polled for due retries and releases.
const PUMP_EVERY: Duration = Duration::from_secs(1);

/// A sighting ready for an ingest worker, with its dock.
type WorkItem = (Arc<DockCtx>, Sighting);
/// The workers' shared end of the work queue.
type WorkQueue = Arc<tokio::sync::Mutex<mpsc::Receiver<WorkItem>>>;

/// Shared state of the loops.
struct Shared {
    /// The pipeline.
    ingestor: Arc<Ingestor>,
    /// This node's docks.
    docks: Vec<Arc<DockCtx>>,
    /// Sightings queued or being processed, so none is processed twice at once.
    in_flight: Mutex<HashSet<String>>,
    /// Snapshots already journaled, so settled files kept on the dock are not re-journaled on every scan.
    journaled: Mutex<HashSet<(std::path::PathBuf, Fingerprint)>>,
    /// Work for the ingest workers.
    tx: mpsc::Sender<WorkItem>,
}

impl Shared {
    fn dock(&self, name: &str) -> Arc<DockCtx> {
        self.docks.iter().find(|d| d.name == name).cloned().unwrap_or_else(|| Arc::new(DockCtx::backfill(std::path::PathBuf::from("/"))))
    }

    async fn enqueue(&self, dock: Arc<DockCtx>, s: Sighting) {
        if !self.in_flight.lock().unwrap_or_else(|p| p.into_inner()).insert(s.id.clone()) {
            return;
        }
        self.ingestor.metrics.ingest_pending.inc();
        if self.tx.send((dock, s)).await.is_err() {
            self.ingestor.metrics.ingest_pending.dec();
        }
    }

    fn done(&self, id: &str) {
        self.in_flight.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
        self.ingestor.metrics.ingest_pending.dec();
    }
}

/// When the pump loop last completed a round (on a monotonic clock): the systemd
/// watchdog is fed only while this keeps moving, so a wedged ingest loop gets the unit restarted.
#[derive(Debug)]
pub struct Liveness {
    /// Origin of the clock.
    origin: Instant,
    /// Milliseconds since `origin` at the last round.
    last: std::sync::atomic::AtomicU64,
}

impl Default for Liveness {
    fn default() -> Self {
        Self { origin: Instant::now(), last: std::sync::atomic::AtomicU64::new(0) }
    }
}

impl Liveness {
    fn tick(&self) {
        self.last.store(self.origin.elapsed().as_millis() as u64, std::sync::atomic::Ordering::Relaxed);
    }

    /// How long ago the last round completed.
    pub fn since_last(&self) -> Duration {
        let now = self.origin.elapsed().as_millis() as u64;
        Duration::from_millis(now.saturating_sub(self.last.load(std::sync::atomic::Ordering::Relaxed)))
    }
}

/// Starts every ingest loop; returns their handles. `stop` ends intake; `hard_stop` abandons
/// in-flight uploads; `live` is ticked by the pump loop.
pub fn start(
    ingestor: Arc<Ingestor>,
    docks: Vec<Arc<DockCtx>>,
    cfg: &IngestConfig,
    stop: CancellationToken,
    hard_stop: CancellationToken,
    live: Arc<Liveness>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let (tx, rx) = mpsc::channel(4096);
    let shared = Arc::new(Shared {
        ingestor,
        docks: docks.clone(),
        in_flight: Mutex::new(HashSet::new()),
        journaled: Mutex::new(HashSet::new()),
        tx,
    });
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let mut tasks = Vec::new();
    for dock in docks {
        tasks.push(tokio::spawn(watch_dock(shared.clone(), dock, cfg.scan_interval, stop.clone())));
    }
    for _ in 0..cfg.concurrency {
        tasks.push(tokio::spawn(ingest_worker(shared.clone(), rx.clone(), stop.clone(), hard_stop.clone())));
    }
    tasks.push(tokio::spawn(pump(shared, stop, live)));
    tasks
}

async fn ingest_worker(shared: Arc<Shared>, rx: WorkQueue, stop: CancellationToken, hard_stop: CancellationToken) {
    loop {
        let item = tokio::select! {
            _ = stop.cancelled() => break,
            item = async { rx.lock().await.recv().await } => item,
        };
        let Some((dock, s)) = item else { break };
        let ing = shared.ingestor.clone();
        let work = async {
            let outcome = ing.process(&dock, &s).await;
            if matches!(outcome, Ok(Outcome::Archived(_) | Outcome::Duplicate(_))) {
                release_if_due(&ing, &s.id).await;
            }
        };
        tokio::select! {
            _ = work => {}
            _ = hard_stop.cancelled() => {
                tracing::warn!(path = %s.path_display, "shutdown: abandoning in-flight ingest; it resumes from the journal on next start");
                shared.done(&s.id);
                break;
            }
        }
        shared.done(&s.id);
    }
}

async fn release_if_due(ing: &Ingestor, id: &str) {
    match ing.catalog.sighting(id).await {
        Ok(s) if s.release_after.is_some_and(|t| t <= crate::catalog::now_micros()) => {
            if let Err(e) = ing.release(&s).await {
                tracing::warn!(path = %s.path_display, error = %e, "dock release failed; will retry");
            }
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "cannot read sighting for release"),
    }
}

/// Resumes due sightings and performs due releases.
async fn pump(shared: Arc<Shared>, stop: CancellationToken, live: Arc<Liveness>) {
    let node = shared.ingestor.node.clone();
    loop {
        live.tick();
        let now = crate::catalog::now_micros();
        match shared.ingestor.catalog.due_sightings(&node, now, 256).await {
            Ok(list) => {
                for s in list {
                    let dock = shared.dock(&s.dock);
                    shared.enqueue(dock, s).await;
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot read the ingest journal; retrying"),
        }
        match shared.ingestor.catalog.due_releases(&node, now).await {
            Ok(list) => {
                for s in list {
                    if shared.in_flight.lock().unwrap_or_else(|p| p.into_inner()).contains(&s.id) {
                        continue;
                    }
                    if let Err(e) = shared.ingestor.release(&s).await {
                        tracing::warn!(path = %s.path_display, error = %e, "dock release failed; will retry");
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot read due releases; retrying"),
        }
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(PUMP_EVERY) => {}
        }
    }
}

/// Watches one dock until `stop`.
async fn watch_dock(shared: Arc<Shared>, dock: Arc<DockCtx>, scan_interval: Duration, stop: CancellationToken) {
    let wake = Arc::new(Notify::new());
    let mut watcher: Option<notify::RecommendedWatcher> = None;
    let mut settler = Settler::new(dock.cfg.settle);
    let root = dock.cfg.path.clone();
    if !root.exists() {
        match std::fs::create_dir_all(&root) {
            Ok(()) => tracing::info!(dock = %dock.name, path = %root.display(), "created dock directory"),
            Err(e) => tracing::warn!(dock = %dock.name, path = %root.display(), error = %e, "dock directory missing"),
        }
    }
    loop {
        if watcher.is_none() {
            watcher = start_notify(&root, wake.clone());
        }
        let r = root.clone();
        let scanned = tokio::task::spawn_blocking(move || watch::scan(&r)).await;
        let mut next = Instant::now() + scan_interval;
        match scanned {
            Ok(Ok(files)) => {
                let seen_now: HashSet<_> = files.iter().map(|f| (f.path.clone(), f.fingerprint)).collect();
                shared.journaled.lock().unwrap_or_else(|p| p.into_inner()).retain(|k| !k.0.starts_with(&root) || seen_now.contains(k));
                let o = settler.observe(files, Instant::now());
                if let Some(d) = o.next_deadline {
                    next = next.min(d);
                }
                for f in o.empty {
                    if already_journaled(&shared, &f) {
                        continue;
                    }
                    match shared.ingestor.saw_empty(&dock, &f).await {
                        Ok(()) => mark_journaled(&shared, &f),
                        Err(e) => tracing::warn!(path = %f.path.display(), error = %e, "cannot journal empty file"),
                    }
                }
                for f in o.settled {
                    if already_journaled(&shared, &f) {
                        continue;
                    }
                    match shared.ingestor.discover(&dock, &f).await {
                        Ok(Some(s)) => {
                            mark_journaled(&shared, &f);
                            shared.enqueue(dock.clone(), s).await;
                        }
                        Ok(None) => mark_journaled(&shared, &f),
                        Err(e) => tracing::warn!(path = %f.path.display(), error = %e, "cannot journal settled file; will retry"),
                    }
                }
            }
            Ok(Err(e)) => {
                tracing::warn!(dock = %dock.name, path = %root.display(), error = %e, "cannot scan dock");
                watcher = None;
            }
            Err(e) => tracing::error!(error = %e, "scan task failed"),
        }
        let wait = next.saturating_duration_since(Instant::now()).max(Duration::from_millis(100));
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(wait) => {}
            _ = wake.notified() => {
                // Let a burst of events pass before rescanning.
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

fn already_journaled(shared: &Shared, f: &watch::Seen) -> bool {
    shared.journaled.lock().unwrap_or_else(|p| p.into_inner()).contains(&(f.path.clone(), f.fingerprint))
}

fn mark_journaled(shared: &Shared, f: &watch::Seen) {
    shared.journaled.lock().unwrap_or_else(|p| p.into_inner()).insert((f.path.clone(), f.fingerprint));
}

fn start_notify(root: &std::path::Path, wake: Arc<Notify>) -> Option<notify::RecommendedWatcher> {
    use notify::Watcher;
    let mut w = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if res.is_ok() {
            wake.notify_one();
        }
    })
    .ok()?;
    match w.watch(root, notify::RecursiveMode::Recursive) {
        Ok(()) => Some(w),
        Err(e) => {
            tracing::debug!(path = %root.display(), error = %e, "inotify unavailable; relying on periodic scans");
            None
        }
    }
}
