//! Builds the components from the config and runs the daemon: catalog (created and migrated),
//! store, the start-up multipart sweep, the ingest loops, the job worker and the API, with one
//! shutdown signal. Talks to systemd (READY, STATUS, WATCHDOG) when started by it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::catalog::{self, Catalog};
use crate::config::{Config, LogFormat};
use crate::custody;
use crate::ingest::{DockCtx, Ingestor, runner};
use crate::jobs::{self, JobHandler, JobWorker};
use crate::media;
use crate::metrics::Metrics;
use crate::store::{self, ObjectStore};

/// In-flight uploads get this long after SIGTERM before they are abandoned to the journal
/// (the contract says the daemon stops within 10 s).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(7);

/// Sets up logging (human or JSON) once per process.
pub fn init_logging(cfg: &Config, json_flag: bool) {
    let filter = std::env::var("RUST_LOG").ok().or_else(|| cfg.log.filter.clone()).unwrap_or_else(|| "info".into());
    let filter = tracing_subscriber::EnvFilter::try_new(&filter).unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr()) && std::env::var_os("NO_COLOR").is_none();
    let b = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    if json_flag || cfg.log.format == LogFormat::Json {
        let _ = b.json().try_init();
    } else {
        let _ = b.try_init();
    }
}

/// Opens the catalog, saying which one failed and where.
pub async fn open_catalog(cfg: &Config) -> anyhow::Result<Arc<dyn Catalog>> {
    catalog::open(&cfg.catalog.url, cfg.catalog.max_connections)
        .await
        .with_context(|| format!("cannot open the catalog at {} (catalog.url in {})", catalog::redact(&cfg.catalog.url), cfg.source))
}

/// Opens the store, saying which one failed.
pub async fn open_store(cfg: &Config) -> anyhow::Result<Arc<dyn ObjectStore>> {
    store::open(&cfg.store).await.with_context(|| format!("cannot open the object store ([store] in {})", cfg.source))
}

/// Loads (creating on first run) the node key and builds the checkpoint maker.
pub fn checkpointer(
    cfg: &Config,
    catalog: Arc<dyn Catalog>,
    store: Arc<dyn ObjectStore>,
) -> anyhow::Result<Arc<custody::checkpoint::Checkpointer>> {
    let signer = custody::keys::NodeSigner::load_or_create(&cfg.key_file(), &cfg.node.id)
        .with_context(|| format!("custody.key_file in {}", cfg.source))?;
    Ok(Arc::new(custody::checkpoint::Checkpointer {
        catalog,
        store,
        signer: Arc::new(signer),
        timestamp: cfg.tsa.is_some(),
        copied: Default::default(),
    }))
}

/// Builds the ingest pipeline for `node`.
pub fn ingestor(
    cfg: &Config,
    catalog: Arc<dyn Catalog>,
    store: Arc<dyn ObjectStore>,
    metrics: Arc<Metrics>,
    node: String,
) -> Arc<Ingestor> {
    Arc::new(Ingestor {
        catalog,
        store,
        node,
        metrics,
        backoff: cfg.ingest.backoff,
        max_backoff: cfg.ingest.max_backoff,
        timestamp: cfg.tsa.is_some(),
        worm: cfg.store.object_lock != "off",
    })
}

/// The systemd notification socket, taken out of the environment at start so that child
/// processes (media workers) never inherit it.
#[derive(Clone, Default)]
pub struct Notifier(Option<std::ffi::OsString>);

impl Notifier {
    /// Takes the socket out of the environment. Call before any thread is started.
    pub fn take_from_env() -> Self {
        let sock = std::env::var_os("NOTIFY_SOCKET");
        if sock.is_some() {
            // SAFETY: called from `cli::main` before the runtime (or any other thread) exists;
            // nothing reads the environment concurrently.
            unsafe { std::env::remove_var("NOTIFY_SOCKET") };
        }
        Notifier(sock)
    }

    fn send(&self, state: &[sd_notify::NotifyState]) {
        if let Some(sock) = &self.0 {
            send_notify(sock, state);
        }
    }
}

/// The watchdog interval systemd expects, taken out of the environment like `NOTIFY_SOCKET`.
/// Same rules as libsystemd's `sd_watchdog_enabled`: `WATCHDOG_USEC` > 0, and `WATCHDOG_PID`, when
/// set, must be this process (`sd_notify::watchdog_enabled` wrongly requires `WATCHDOG_PID`).
/// The watchdog interval systemd asked for (libsystemd's rules: `WATCHDOG_PID`, when set, must be
/// ours). Takes the variables out of the environment; call before any thread is started.
pub fn watchdog_from_env() -> Option<Duration> {
    let usec = std::env::var("WATCHDOG_USEC").ok().and_then(|s| s.parse::<u64>().ok()).filter(|&u| u > 0);
    let pid = std::env::var_os("WATCHDOG_PID");
    let for_us = pid.as_ref().is_none_or(|p| p.to_str().and_then(|p| p.parse::<u32>().ok()) == Some(std::process::id()));
    // SAFETY: as in `Notifier::take_from_env`, before this process spawns anything.
    unsafe {
        std::env::remove_var("WATCHDOG_USEC");
        std::env::remove_var("WATCHDOG_PID");
    }
    usec.filter(|_| for_us).map(Duration::from_micros)
}

/// Opens the catalog, retrying while it is unreachable (the unit stays "activating" and says why).
async fn open_catalog_patiently(cfg: &Config, stop: &CancellationToken, sd: &Notifier) -> anyhow::Result<Arc<dyn Catalog>> {
    let mut delay = Duration::from_secs(1);
    loop {
        match open_catalog(cfg).await {
            Ok(c) => return Ok(c),
            Err(e) => {
                let transient = e.downcast_ref::<catalog::CatalogError>().is_some_and(|c| c.is_transient());
                if !transient {
                    return Err(e);
                }
                tracing::warn!(error = %format!("{e:#}"), retry_in = ?delay, "catalog unreachable; waiting");
                sd.send(&[sd_notify::NotifyState::Status(&format!("waiting for catalog: {e:#}"))]);
                tokio::select! {
                    _ = stop.cancelled() => anyhow::bail!("stopped while waiting for the catalog"),
                    _ = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(Duration::from_secs(30));
            }
        }
    }
}

/// Resolves when SIGTERM or SIGINT arrives.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// `evidenced run`.
pub async fn run(cfg: Config, sd: Notifier, watchdog: Option<Duration>) -> anyhow::Result<()> {
    let stop = CancellationToken::new();
    let hard_stop = CancellationToken::new();
    {
        let (stop, hard_stop) = (stop.clone(), hard_stop.clone());
        tokio::spawn(async move {
            shutdown_signal().await;
            tracing::info!("shutdown requested; finishing in-flight uploads");
            stop.cancel();
            tokio::time::sleep(SHUTDOWN_GRACE).await;
            hard_stop.cancel();
        });
    }

    // OIDC first: a bad `[oidc]` (an unreadable JWKS file) stops the start before anything runs.
    let oidc = cfg
        .oidc
        .as_ref()
        .map(crate::api::oidc::OidcVerifier::new)
        .transpose()
        .with_context(|| format!("cannot use OIDC bearer tokens ([oidc] in {})", cfg.source))?
        .map(Arc::new);
    let catalog = open_catalog_patiently(&cfg, &stop, &sd).await?;
    // From here on the node's time is the catalog's clock (`crate::clock`), registration included.
    match crate::clock::measure(catalog.as_ref()).await {
        Ok(skew) => log_clock_skew(skew, cfg.node.max_clock_skew),
        Err(e) => tracing::warn!(error = %e, "cannot read the catalog's clock now; the heartbeat retries"),
    }
    let store = open_store(&cfg).await?;
    store.check_worm().await.with_context(|| format!("[store] object_lock in {}", cfg.source))?;
    let node = cfg.node.id.clone();
    // Claim the node id before touching its uploads and leases: a second live process with the
    // same id would otherwise abort the first one's multipart uploads and release its jobs.
    let hostname = std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_string()).unwrap_or_default();
    let me = crate::catalog::NodeInfo {
        id: node.clone(),
        instance: format!("{hostname}/{}/{}", std::process::id(), uuid::Uuid::new_v4().simple()),
        version: env!("CARGO_PKG_VERSION").to_string(),
        hostname,
        api_listen: cfg.api.listen.clone(),
        heartbeat_every: i64::try_from(cfg.node.heartbeat.as_micros()).unwrap_or(i64::MAX),
    };
    register(catalog.as_ref(), &me, cfg.node.heartbeat, &stop)
        .await
        .with_context(|| format!("cannot register node {node:?} (node.id in {})", cfg.source))?;
    match store.sweep_uploads(&store::node_prefix(&node)).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(aborted = n, "aborted stray multipart uploads of this node"),
        Err(e) => tracing::warn!(error = %e, "cannot sweep stray uploads now; journaled ones are aborted on retry"),
    }
    match catalog.release_leases(&node).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(jobs = n, "resuming jobs this node left unfinished"),
        Err(e) => tracing::warn!(error = %e, "cannot release old leases; they expire on their own"),
    }
    let metrics = Arc::new(Metrics::new());
    metrics
        .node_info
        .get_or_create(&vec![
            ("node".into(), me.id.clone()),
            ("version".into(), me.version.clone()),
            ("instance".into(), me.instance.clone()),
        ])
        .set(1);
    let ingestor = ingestor(&cfg, catalog.clone(), store.clone(), metrics.clone(), node.clone());

    let listener = tokio::net::TcpListener::bind(&cfg.api.listen)
        .await
        .with_context(|| format!("cannot listen on {} (api.listen in {})", cfg.api.listen, cfg.source))?;
    tracing::info!(listen = %cfg.api.listen, catalog = catalog.backend(), store = %store.describe(), node = %node, "evidenced running");

    let docks: Vec<Arc<DockCtx>> = cfg.dock.iter().cloned().map(|d| Arc::new(DockCtx::new(d))).collect();
    let live = Arc::new(runner::Liveness::default());
    let mut tasks = runner::start(ingestor, docks, &cfg.ingest, stop.clone(), hard_stop.clone(), live.clone());

    let mut handlers: HashMap<&'static str, Arc<dyn JobHandler>> = HashMap::new();
    handlers.insert(jobs::DELETE_REDUNDANT, Arc::new(jobs::DeleteRedundant { store: store.clone() }));
    tasks.push(spawn_job_worker(&catalog, &node, handlers, &stop, Duration::from_secs(5), Duration::from_secs(3600)));

    // Custody: the node key, checkpoints (now, on a schedule, and at stop), time-stamps, fixity.
    let checkpointer = checkpointer(&cfg, catalog.clone(), store.clone())?;
    if let Err(e) = checkpointer.publish_key().await {
        tracing::warn!(error = %format!("{e:#}"), "cannot publish the node key now; verify also reads it from the key file");
    }
    if let Err(e) = checkpointer.checkpoint("start", true).await {
        tracing::warn!(error = %format!("{e:#}"), "cannot sign the start checkpoint now; the schedule retries");
    }
    let cp_worker = custody::checkpoint::CheckpointWorker {
        checkpointer: checkpointer.clone(),
        every: cfg.custody.checkpoint_every,
        interval: cfg.custody.checkpoint_interval,
        last: std::time::Instant::now(),
    };
    tasks.push(tokio::spawn(jobs::run_worker(Box::new(cp_worker), stop.clone(), Duration::from_secs(1))));
    if cfg.custody.fixity_per_day > 0.0 {
        let fixity = custody::fixity::FixityWorker::new(
            catalog.clone(),
            store.clone(),
            metrics.clone(),
            cfg.custody.fixity_per_day,
            format!("node:{node}"),
        );
        let fixity = crate::clock::ClockGated::new(fixity, cfg.node.max_clock_skew);
        tasks.push(tokio::spawn(jobs::run_worker(Box::new(fixity), stop.clone(), Duration::from_secs(1))));
    }
    if let Some(t) = &cfg.tsa {
        let tsa = custody::tsa::TsaClient::new(&t.url, &t.ca_pem, t.timeout)
            .with_context(|| format!("cannot use the TSA ([tsa] in {})", cfg.source))?;
        let stamper =
            custody::stamper::Stamper { catalog: catalog.clone(), store: store.clone(), tsa: Arc::new(tsa), actor: format!("node:{node}") };
        let mut handlers: HashMap<&'static str, Arc<dyn JobHandler>> = HashMap::new();
        handlers.insert(jobs::TIMESTAMP, Arc::new(stamper));
        // A TSA that was down is retried every few seconds at first, at most every 5 minutes.
        tasks.push(spawn_job_worker(&catalog, &node, handlers, &stop, Duration::from_secs(2), Duration::from_secs(300)));
    }

    // Media jobs get their own workers, as many as `media.concurrency` (one x264 encode
    // already uses every core), so a long transcode never holds up other jobs.
    let runner = media::Runner::new(cfg.media.clone(), &cfg.node.state_dir)
        .with_context(|| format!("cannot prepare media temp dir under {} (node.state_dir)", cfg.node.state_dir.display()))?;
    let actor = format!("node:{node}");
    let deriver: Arc<dyn JobHandler> = Arc::new(media::Deriver {
        catalog: catalog.clone(),
        store: store.clone(),
        runner: runner.clone(),
        metrics: metrics.clone(),
        actor,
    });
    let clipper: Arc<dyn JobHandler> = Arc::new(media::Clipper { catalog: catalog.clone(), store: store.clone(), runner });
    for _ in 0..cfg.media.concurrency {
        let mut handlers: HashMap<&'static str, Arc<dyn JobHandler>> = HashMap::new();
        handlers.insert(jobs::DERIVE, deriver.clone());
        handlers.insert(jobs::CLIP, clipper.clone());
        tasks.push(spawn_job_worker(&catalog, &node, handlers, &stop, Duration::from_secs(5), Duration::from_secs(3600)));
    }

    let policy = crate::retention::Policy::from_config(&cfg.retention);
    let retention = crate::retention::RetentionWorker {
        catalog: catalog.clone(),
        store: store.clone(),
        policy: policy.clone(),
        sweep: cfg.retention.sweep,
        actor: format!("node:{node}"),
        last_sweep: None,
    };
    // Retention and fixity decide by the time: they pause while the system clock is off.
    let retention = crate::clock::ClockGated::new(retention, cfg.node.max_clock_skew);
    tasks.push(tokio::spawn(jobs::run_worker(Box::new(retention), stop.clone(), Duration::from_secs(2))));
    let worm = cfg.store.object_lock != "off";
    if worm {
        let locker = crate::retention::worm::WormLocker {
            catalog: catalog.clone(),
            store: store.clone(),
            policy: policy.clone(),
            mode: cfg.store.object_lock.clone(),
            actor: format!("node:{node}"),
        };
        let handlers = HashMap::from([(jobs::WORM_LOCK, Arc::new(locker) as Arc<dyn JobHandler>)]);
        tasks.push(spawn_job_worker(&catalog, &node, handlers, &stop, Duration::from_secs(2), Duration::from_secs(300)));
    }
    let app = crate::api::router(crate::api::AppState {
        catalog: catalog.clone(),
        store: store.clone(),
        metrics: metrics.clone(),
        policy: Arc::new(policy),
        worm,
        access: Arc::new(crate::api::access::AccessSettings::new(&cfg.api)),
        oidc,
    })
    // Failed bearer checks are counted per client address (429 after too many).
    .layer(axum::Extension(Arc::new(crate::api::auth::FailureLimiter::default())));
    let server = tokio::spawn(crate::server::serve(listener, app, cfg.api.header_timeout, Duration::from_secs(2), stop.clone()));

    let beat = Heartbeat { every: cfg.node.heartbeat, max_clock_skew: cfg.node.max_clock_skew };
    tasks.push(tokio::spawn(heartbeat(catalog.clone(), me.clone(), beat, metrics.clone(), stop.clone())));

    sd.send(&[sd_notify::NotifyState::Ready, sd_notify::NotifyState::Status("running")]);
    if let Some(every) = watchdog {
        let stop = stop.clone();
        let sd = sd.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(every / 2) => {
                        // Fed only while the ingest loop makes rounds (a round may wait up to the
                        // catalog's 30 s acquire timeout, well inside WatchdogSec=60).
                        if live.since_last() < every {
                            sd.send(&[sd_notify::NotifyState::Watchdog]);
                        } else {
                            tracing::error!(stalled_for = ?live.since_last(), "ingest loop stalled; withholding the watchdog ping");
                        }
                    }
                }
            }
        }));
    }

    stop.cancelled().await;
    sd.send(&[sd_notify::NotifyState::Stopping]);
    for t in tasks {
        let _ = t.await;
    }
    match tokio::time::timeout(Duration::from_secs(2), checkpointer.checkpoint("stop", true)).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            tracing::warn!(error = %format!("{e:#}"), "cannot sign the stop checkpoint; verify will warn about the newest entries")
        }
        Err(_) => tracing::warn!("the stop checkpoint took too long; verify will warn about the newest entries"),
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), server).await;
    if let Ok(Err(e)) = tokio::time::timeout(Duration::from_secs(2), catalog.node_stopped(&me.id, &me.instance)).await {
        tracing::warn!(error = %e, "cannot record the clean stop; the node will show as lost");
    }
    tracing::info!("stopped");
    Ok(())
}

/// Registers this process under its node id. The id may still look alive for a while after its
/// previous process died: a predecessor on this host whose process is gone (a crash, `kill -9`)
/// is replaced at once; otherwise we wait until its heartbeat is three intervals old, and give
/// up if it keeps beating (a second live process with the same id, which must not run).
async fn register(catalog: &dyn Catalog, me: &crate::catalog::NodeInfo, every: Duration, stop: &CancellationToken) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + every * 3 + Duration::from_secs(1);
    let mut replace: Option<String> = None;
    loop {
        match catalog.register_node(me, replace.as_deref()).await {
            Ok(()) => return Ok(()),
            Err(catalog::CatalogError::Refused(msg)) => {
                let holder = catalog.nodes().await?.into_iter().find(|n| n.id == me.id).map(|n| n.instance);
                if let Some(old) = holder.filter(|old| predecessor_is_gone(old, &me.hostname)) {
                    if replace.as_deref() != Some(old.as_str()) {
                        tracing::info!(previous = %old, "replacing this node's previous process, which is gone");
                        replace = Some(old);
                        continue;
                    }
                }
                if tokio::time::Instant::now() >= deadline {
                    anyhow::bail!(msg);
                }
                tracing::warn!("{msg}; waiting for its heartbeat to expire");
                tokio::select! {
                    _ = stop.cancelled() => anyhow::bail!("stopped while waiting to register"),
                    _ = tokio::time::sleep(every.min(Duration::from_secs(2))) => {}
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Whether instance `HOST/PID/…` ran on this host in a process that no longer exists.
fn predecessor_is_gone(instance: &str, hostname: &str) -> bool {
    let mut parts = instance.splitn(3, '/');
    let (Some(host), Some(pid)) = (parts.next(), parts.next().and_then(|p| p.parse::<i32>().ok())) else { return false };
    if host != hostname || pid <= 0 || pid as u32 == std::process::id() {
        return false;
    }
    // Signal 0 checks existence only. ESRCH: no such process.
    let alive = unsafe { libc::kill(pid, 0) } == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH);
    !alive
}

/// `[node]` settings of the heartbeat.
#[derive(Debug, Clone, Copy)]
struct Heartbeat {
    /// `node.heartbeat`.
    every: Duration,
    /// `node.max_clock_skew`.
    max_clock_skew: Duration,
}

/// Logs the system clock's skew: an error while it is beyond `max` (retention and fixity pause).
fn log_clock_skew(skew: Option<i64>, max: Duration) {
    if let Err(e) = crate::clock::check(skew, max) {
        tracing::error!(skew_seconds = skew.unwrap_or_default() / 1_000_000, "{e}; fix this host's time (NTP)");
    }
}

/// Records this node's heartbeat every `every` until `stop`, with the system clock's skew
/// measured against the catalog's (re-anchoring the node's time, `crate::clock`), and refreshes
/// the node and skew gauges. A missed beat is logged and counted; another instance taking the id
/// over is logged as an error (it should not happen: registration refuses a live duplicate).
async fn heartbeat(
    catalog: Arc<dyn Catalog>,
    me: crate::catalog::NodeInfo,
    beat: Heartbeat,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(beat.every) => {}
        }
        let skew = match crate::clock::measure(catalog.as_ref()).await {
            Ok(skew) => skew,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the catalog's clock");
                crate::clock::skew_micros()
            }
        };
        if let Some(s) = skew {
            metrics.clock_skew.set(s as f64 / 1e6);
        }
        log_clock_skew(skew, beat.max_clock_skew);
        match catalog.node_heartbeat(&me.id, &me.instance, skew).await {
            Ok(true) => {}
            Ok(false) => {
                metrics.heartbeat_failures.inc();
                tracing::error!(node = %me.id, "another process has registered this node id; give each node its own node.id");
            }
            Err(e) => {
                metrics.heartbeat_failures.inc();
                tracing::warn!(error = %e, "cannot record the heartbeat");
            }
        }
        if let Ok(nodes) = catalog.nodes().await {
            metrics.set_nodes(&nodes);
        }
    }
}

/// Starts a job worker for `handlers` until `stop`, retrying failed jobs after `backoff`,
/// doubling up to `max_backoff`.
fn spawn_job_worker(
    catalog: &Arc<dyn Catalog>,
    node: &str,
    handlers: HashMap<&'static str, Arc<dyn JobHandler>>,
    stop: &CancellationToken,
    backoff: Duration,
    max_backoff: Duration,
) -> tokio::task::JoinHandle<()> {
    let worker =
        JobWorker { catalog: catalog.clone(), owner: node.to_string(), handlers, lease: Duration::from_secs(60), backoff, max_backoff };
    tokio::spawn(jobs::run_worker(Box::new(worker), stop.clone(), Duration::from_secs(1)))
}

/// Sends a notification to an explicit socket (the variable is gone from our environment).
fn send_notify(sock: &std::ffi::OsStr, state: &[sd_notify::NotifyState]) {
    use std::os::unix::net::UnixDatagram;
    let msg: String = state.iter().map(|s| format!("{s}\n")).collect();
    let path = sock.as_encoded_bytes();
    let Ok(d) = UnixDatagram::unbound() else { return };
    let res = if let Some(abs) = path.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(abs).and_then(|a| d.send_to_addr(msg.as_bytes(), &a))
    } else {
        d.send_to(msg.as_bytes(), std::path::Path::new(sock))
    };
    if let Err(e) = res {
        tracing::debug!(error = %e, "systemd notify failed");
    }
}
