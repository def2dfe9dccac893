//! The node's clock. Every time the daemon writes to the catalog (custody events, archiving and
//! retention dates, leases, retries) comes from [`now_micros`]: on a PostgreSQL catalog that is
//! the catalog's clock, measured at every heartbeat and carried forward on the monotonic clock in
//! between, so a host whose wall clock jumps (a bad NTP step, a reset RTC, an operator's `date
//! -s`) neither dates custody events years away nor starts retention clocks early or late. Until
//! a measurement exists (SQLite, which has no clock of its own, or before the first one) it is the
//! system clock. The skew between the system clock and the catalog's is exposed (metrics, `GET
//! /api/v1/nodes`); while it is larger than `node.max_clock_skew` the node keeps ingesting but
//! does no time-dependent work that cannot be undone ([`ClockGated`]: retention, fixity), and says
//! so in its log until the clock is fixed.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::jobs::{Worker, WorkerState};

/// A measurement slower than this (a busy pool, a catalog restarting) is too imprecise to anchor on.
const MAX_ROUND_TRIP: Duration = Duration::from_secs(2);

/// The catalog's clock at one monotonic instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Anchor {
    /// The catalog's time, micros since the epoch.
    pub catalog_micros: i64,
    /// When it was read (the middle of the query's round trip).
    pub at: Instant,
}

impl Anchor {
    /// An anchor from a catalog time read between `sent` and `received`; `None` when the round
    /// trip took too long to tell the time precisely.
    pub fn measured(catalog_micros: i64, sent: Instant, received: Instant) -> Option<Anchor> {
        let rtt = received.checked_duration_since(sent)?;
        (rtt <= MAX_ROUND_TRIP).then(|| Anchor { catalog_micros, at: sent + rtt / 2 })
    }

    /// The catalog's time at monotonic instant `now`.
    pub fn catalog_at(&self, now: Instant) -> i64 {
        match now.checked_duration_since(self.at) {
            Some(d) => self.catalog_micros.saturating_add(d.as_micros() as i64),
            None => self.catalog_micros.saturating_sub(self.at.duration_since(now).as_micros() as i64),
        }
    }

    /// The system clock's skew (system − catalog, micros) when the system clock reads
    /// `system_micros` at monotonic instant `now`.
    pub fn skew_at(&self, system_micros: i64, now: Instant) -> i64 {
        system_micros.saturating_sub(self.catalog_at(now))
    }
}

/// The process's anchor (none until the first measurement).
static ANCHOR: Mutex<Option<Anchor>> = Mutex::new(None);

fn anchor() -> Option<Anchor> {
    *ANCHOR.lock().unwrap_or_else(|p| p.into_inner())
}

/// This host's wall clock, micros since the epoch.
pub fn system_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// Now, micros since the epoch: the catalog's clock once measured, the system clock before.
pub fn now_micros() -> i64 {
    match anchor() {
        Some(a) => a.catalog_at(Instant::now()),
        None => system_micros(),
    }
}

/// Records a measurement of the catalog's clock (read between `sent` and `received`); returns
/// whether it was precise enough to be used.
pub fn record(catalog_micros: i64, sent: Instant, received: Instant) -> bool {
    match Anchor::measured(catalog_micros, sent, received) {
        Some(a) => {
            *ANCHOR.lock().unwrap_or_else(|p| p.into_inner()) = Some(a);
            true
        }
        None => false,
    }
}

/// Reads the catalog's clock and anchors this process's time on it; returns the system clock's
/// skew (system − catalog, micros), `None` when the catalog has no clock of its own (SQLite) or
/// the read was too slow to be precise (the previous anchor, if any, stays).
pub async fn measure(catalog: &dyn crate::catalog::Catalog) -> crate::catalog::Result<Option<i64>> {
    let sent = Instant::now();
    let Some(catalog_micros) = catalog.catalog_clock().await? else { return Ok(None) };
    let received = Instant::now();
    if !record(catalog_micros, sent, received) {
        tracing::debug!(round_trip = ?received.duration_since(sent), "catalog clock read too slow to anchor on");
    }
    Ok(skew_micros())
}

/// The system clock's skew against the catalog's now (system − catalog, micros); `None` until
/// the catalog's clock was measured. Follows a jump of the system clock at once (the anchor is
/// carried on the monotonic clock), not only at the next heartbeat.
pub fn skew_micros() -> Option<i64> {
    anchor().map(|a| a.skew_at(system_micros(), Instant::now()))
}

/// Why time-dependent work is paused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the system clock is {skew} {dir} the catalog's clock (node.max_clock_skew = {max}); \
     retention and fixity are paused until it is fixed (ingest goes on, dated by the catalog's clock)"
)]
pub struct Skewed {
    /// How far off, human-readable.
    pub skew: String,
    /// `ahead of` or `behind`.
    pub dir: &'static str,
    /// The limit, human-readable.
    pub max: String,
}

/// Whether time-dependent work may run with system-clock skew `skew_micros` (`None`: not
/// measured, as on SQLite, where there is no other clock to compare with) under limit `max`.
pub fn check(skew_micros: Option<i64>, max: Duration) -> Result<(), Skewed> {
    let Some(skew) = skew_micros else { return Ok(()) };
    if skew.unsigned_abs() <= max.as_micros() as u64 {
        return Ok(());
    }
    // Whole seconds read better in a log line than microseconds.
    let secs = Duration::from_secs(skew.unsigned_abs() / 1_000_000);
    Err(Skewed {
        skew: humantime::format_duration(secs).to_string(),
        dir: if skew > 0 { "ahead of" } else { "behind" },
        max: humantime::format_duration(max).to_string(),
    })
}

/// Runs a time-dependent worker only while the system clock is within `max_skew` of the
/// catalog's; otherwise idles, logging an error when it pauses (and every ten minutes while it
/// stays paused) and a notice when it resumes.
pub struct ClockGated<W> {
    /// The worker.
    pub inner: W,
    /// `node.max_clock_skew`.
    pub max_skew: Duration,
    /// When the pause was last logged; `None` while running.
    paused_logged: Option<Instant>,
}

impl<W> ClockGated<W> {
    /// Gates `inner` by `max_skew`.
    pub fn new(inner: W, max_skew: Duration) -> Self {
        Self { inner, max_skew, paused_logged: None }
    }
}

#[async_trait]
impl<W: Worker> Worker for ClockGated<W> {
    fn name(&self) -> String {
        self.inner.name()
    }

    async fn work(&mut self) -> anyhow::Result<WorkerState> {
        match check(skew_micros(), self.max_skew) {
            Ok(()) => {
                if self.paused_logged.take().is_some() {
                    tracing::info!(worker = %self.inner.name(), "system clock back within node.max_clock_skew; resuming");
                }
                self.inner.work().await
            }
            Err(e) => {
                if self.paused_logged.is_none_or(|t| t.elapsed() >= Duration::from_secs(600)) {
                    tracing::error!(worker = %self.inner.name(), "{e}");
                    self.paused_logged = Some(Instant::now());
                }
                Ok(WorkerState::Idle)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const YEAR: i64 = 365 * 86_400 * 1_000_000;

    #[test]
    fn anchored_time_follows_the_monotonic_clock_not_the_wall_clock() {
        let t0 = Instant::now();
        let a = Anchor::measured(1_000_000_000, t0, t0 + Duration::from_millis(10)).unwrap();
        assert_eq!(a.at, t0 + Duration::from_millis(5));
        let later = a.at + Duration::from_secs(5);
        assert_eq!(a.catalog_at(later), 1_005_000_000);
        // The wall clock jumped two years ahead five seconds after the measurement.
        assert_eq!(a.skew_at(1_005_000_000 + 2 * YEAR, later), 2 * YEAR);
        // ... and a day back.
        assert_eq!(a.skew_at(1_005_000_000 - 86_400_000_000, later), -86_400_000_000);
        // Instants before the anchor work too.
        assert_eq!(a.catalog_at(t0), 999_995_000);
    }

    #[test]
    fn slow_measurements_are_not_used() {
        let t0 = Instant::now();
        assert!(Anchor::measured(0, t0, t0 + Duration::from_secs(3)).is_none());
        assert!(Anchor::measured(0, t0 + Duration::from_secs(1), t0).is_none());
        assert!(Anchor::measured(0, t0, t0 + MAX_ROUND_TRIP).is_some());
    }

    #[test]
    fn time_dependent_work_pauses_only_beyond_the_limit() {
        let max = Duration::from_secs(120);
        assert_eq!(check(None, max), Ok(()), "no catalog clock (SQLite): nothing to compare, never paused");
        assert_eq!(check(Some(0), max), Ok(()));
        assert_eq!(check(Some(120_000_000), max), Ok(()));
        assert_eq!(check(Some(-120_000_000), max), Ok(()));
        let ahead = check(Some(2 * YEAR), max).unwrap_err();
        assert_eq!(ahead.dir, "ahead of");
        assert!(ahead.to_string().contains("retention and fixity are paused"), "{ahead}");
        let behind = check(Some(-86_400_000_000), max).unwrap_err();
        assert_eq!((behind.dir, behind.skew.as_str()), ("behind", "1day"));
        assert!(check(Some(120_000_001), max).is_err());
    }

    struct Counting(usize);

    #[async_trait]
    impl Worker for Counting {
        fn name(&self) -> String {
            "counting".into()
        }
        async fn work(&mut self) -> anyhow::Result<WorkerState> {
            self.0 += 1;
            Ok(WorkerState::Idle)
        }
    }

    #[tokio::test]
    async fn gated_worker_runs_while_no_skew_is_known() {
        // No anchor in unit tests: the process's skew is unknown, so the worker runs.
        let mut g = ClockGated::new(Counting(0), Duration::from_secs(120));
        if skew_micros().is_none() {
            g.work().await.unwrap();
            assert_eq!(g.inner.0, 1);
        }
    }
}
