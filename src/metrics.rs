//! Prometheus metrics: files and bytes ingested, ingest duration, errors, queue depths, node
//! identity, the liveness of the nodes sharing the catalog and this host's clock skew. One
//! registry per process, rendered by `GET /metrics`.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// The daemon's metrics.
pub struct Metrics {
    /// Registry they are rendered from.
    registry: Registry,
    /// Originals archived (new recordings).
    pub files_ingested: Counter,
    /// Bytes of originals archived.
    pub bytes_ingested: Counter,
    /// Seconds from pick-up to commit per archived file.
    pub ingest_seconds: Histogram,
    /// Failed ingest attempts (each is retried).
    pub ingest_errors: Counter,
    /// Settled files waiting for or in ingest on this node.
    pub ingest_pending: Gauge,
    /// Seconds from a file settling on a dock to its proxy being playable.
    pub settle_to_playable: Histogram,
    /// Proxy generation speed as a multiple of real time.
    pub transcode_speed: Histogram,
    /// Jobs queued in the catalog (all nodes).
    pub jobs_queued: Gauge,
    /// Jobs leased right now (all nodes).
    pub jobs_running: Gauge,
    /// Recordings whose objects the fixity worker re-read and re-hashed.
    pub fixity_checks: Counter,
    /// Stored objects that failed a fixity check (missing or different bytes): alert on any.
    pub fixity_failures: Counter,
    /// This process: 1, labelled with its node id, version and instance.
    pub node_info: Family<Vec<(String, String)>, Gauge>,
    /// Nodes sharing the catalog by state (`alive`, `lost`, `stopped`): alert on `lost`.
    pub nodes: Family<Vec<(String, String)>, Gauge>,
    /// Failed heartbeats of this node (catalog unreachable, or its id taken over).
    pub heartbeat_failures: Counter,
    /// This host's clock minus the catalog's, seconds (0 until measured; never on SQLite): alert
    /// when its magnitude nears `node.max_clock_skew`.
    pub clock_skew: Gauge<f64, std::sync::atomic::AtomicU64>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("evidenced");
        let files_ingested = Counter::default();
        let bytes_ingested = Counter::default();
        let ingest_seconds = Histogram::new(exponential_buckets(0.01, 2.0, 16));
        let ingest_errors = Counter::default();
        let ingest_pending = Gauge::default();
        let settle_to_playable = Histogram::new(exponential_buckets(0.5, 2.0, 14));
        let transcode_speed = Histogram::new(exponential_buckets(0.125, 2.0, 10));
        let jobs_queued = Gauge::default();
        let jobs_running = Gauge::default();
        let fixity_checks = Counter::default();
        let fixity_failures = Counter::default();
        let node_info = Family::<Vec<(String, String)>, Gauge>::default();
        let nodes = Family::<Vec<(String, String)>, Gauge>::default();
        let heartbeat_failures = Counter::default();
        let clock_skew = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register("files_ingested", "Originals archived as new recordings", files_ingested.clone());
        registry.register("bytes_ingested", "Bytes of originals archived", bytes_ingested.clone());
        registry.register("ingest_duration_seconds", "Time from pick-up to catalog commit", ingest_seconds.clone());
        registry.register("ingest_errors", "Failed ingest attempts (retried)", ingest_errors.clone());
        registry.register("ingest_pending", "Settled files waiting for or in ingest on this node", ingest_pending.clone());
        registry.register("settle_to_playable_seconds", "Time from dock settle to playable proxy", settle_to_playable.clone());
        registry.register("transcode_speed_ratio", "Proxy generation speed (x real time)", transcode_speed.clone());
        registry.register("jobs_queued", "Jobs waiting in the queue", jobs_queued.clone());
        registry.register("jobs_running", "Jobs currently leased", jobs_running.clone());
        registry.register("fixity_checks", "Recordings whose stored objects were re-verified", fixity_checks.clone());
        registry.register("fixity_failures", "Stored objects that failed a fixity check", fixity_failures.clone());
        registry.register("node_info", "This node: id, version and process instance", node_info.clone());
        registry.register("nodes", "Nodes sharing the catalog, by liveness state", nodes.clone());
        registry.register("node_heartbeat_failures", "Heartbeats this node could not record", heartbeat_failures.clone());
        registry.register("clock_skew_seconds", "This host's clock minus the catalog's clock", clock_skew.clone());
        Self {
            registry,
            files_ingested,
            bytes_ingested,
            ingest_seconds,
            ingest_errors,
            ingest_pending,
            settle_to_playable,
            transcode_speed,
            jobs_queued,
            jobs_running,
            fixity_checks,
            fixity_failures,
            node_info,
            nodes,
            heartbeat_failures,
            clock_skew,
        }
    }

    /// Sets `evidenced_nodes{state}` from a listing of the catalog's nodes.
    pub fn set_nodes(&self, nodes: &[crate::catalog::NodeStatus]) {
        for state in ["alive", "lost", "stopped"] {
            let n = nodes.iter().filter(|n| n.state == state).count() as i64;
            self.nodes.get_or_create(&vec![("state".to_string(), state.to_string())]).set(n);
        }
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = encode(&mut out, &self.registry);
        out
    }
}
