//! Node identity and liveness: the `evidenced run` processes sharing this catalog. A supertrait
//! of [`super::Catalog`], implemented for both backends by `nodes_sql.rs`. A node registers at
//! start (refused while another live process holds the same node id, since it would release
//! that process's job leases), heartbeats on a schedule, and marks itself stopped on a clean
//! stop; a node whose heartbeat is older than three intervals is `lost` and its job leases run
//! out on their own. Each heartbeat also records how far the node's system clock is from the
//! catalog's (`crate::clock`).

use async_trait::async_trait;
use serde::Serialize;

use super::Result;

/// A node as it registers.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    /// `node.id`.
    pub id: String,
    /// Per process, `HOST/PID/RANDOM`, so a restarted or duplicate process is told apart, and
    /// a successor on the same host can tell that its predecessor's process is gone.
    pub instance: String,
    /// The daemon's version.
    pub version: String,
    /// The host it runs on.
    pub hostname: String,
    /// Its API address (`api.listen`).
    pub api_listen: String,
    /// Its heartbeat interval, micros.
    pub heartbeat_every: i64,
}

/// A node as the admin route and metrics show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeStatus {
    /// `node.id`.
    pub id: String,
    /// The current (or last) process.
    pub instance: String,
    /// Its version.
    pub version: String,
    /// Its host.
    pub hostname: String,
    /// Its API address.
    pub api_listen: String,
    /// Started, RFC 3339.
    pub started_at: String,
    /// Last heartbeat, RFC 3339.
    pub heartbeat_at: String,
    /// Clean stop, RFC 3339; null while running or after a crash.
    pub stopped_at: Option<String>,
    /// `alive`, `stopped` (a clean stop) or `lost` (no heartbeat for three intervals: crashed,
    /// frozen or cut off).
    pub state: String,
    /// Jobs leased by this node right now.
    pub leases: i64,
    /// How far its system clock was from the catalog's at its last heartbeat (system − catalog,
    /// seconds; null before the first measurement and on SQLite, which has no clock of its own).
    pub clock_skew_seconds: Option<f64>,
}

/// The liveness of a node row at `now` (micros).
pub fn node_state(heartbeat_at: i64, every: i64, stopped: bool, now: i64) -> &'static str {
    if stopped {
        "stopped"
    } else if now - heartbeat_at <= 3 * every {
        "alive"
    } else {
        "lost"
    }
}

/// Node registration, heartbeats and listing.
#[async_trait]
pub trait NodeRecords: Send + Sync {
    /// Registers a starting process; `CatalogError::Refused` naming the other process while a
    /// different live instance holds the same node id — unless it is `replace`, an instance
    /// the caller knows is dead (its crashed predecessor on the same host).
    async fn register_node(&self, n: &NodeInfo, replace: Option<&str>) -> Result<()>;
    /// Refreshes the heartbeat and the measured clock skew (system − catalog, micros); false
    /// when another instance has taken the node id over.
    async fn node_heartbeat(&self, id: &str, instance: &str, clock_skew: Option<i64>) -> Result<bool>;
    /// The catalog's own clock (micros since the epoch) where it has one independent of this
    /// host (PostgreSQL's `clock_timestamp()`); `None` on SQLite.
    async fn catalog_clock(&self) -> Result<Option<i64>>;
    /// Marks a clean stop.
    async fn node_stopped(&self, id: &str, instance: &str) -> Result<()>;
    /// Every node, by id, with its state and leases now.
    async fn nodes(&self) -> Result<Vec<NodeStatus>>;
}
