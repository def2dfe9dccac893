//! Media derivation in the daemon: the `derive` job (probe, proxy, poster) and the `clip` job.
//! All decoding happens in a child process (`evidenced-media-worker`, built from `worker/`) with a
//! wall-clock limit, an address-space and a CPU-time limit, a lower CPU priority and
//! kill-on-drop, so a hostile or broken file can only kill that child. The child always gets a
//! local, seekable, ASCII-named path: the `fs` store's own file or a temporary copy from S3.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;

use crate::catalog::{Catalog, Job, MediaUpdate, ObjectRef};
use crate::config::MediaConfig;
use crate::jobs::JobHandler;
use crate::metrics::Metrics;
use crate::store::{NoJournal, ObjectStore};

/// Recordings claiming a start before this come from a camera whose clock reset.
const PLAUSIBLE_SINCE_MICROS: i64 = 1_104_537_600_000_000; // 2005-01-01

/// Why a media worker run did not produce a result.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// The file could not be processed (a property of the file: not retried).
    #[error("{0}")]
    Media(String),
    /// The operation does not apply (e.g. a poster of an audio recording).
    #[error("{0}")]
    NotApplicable(String),
    /// The worker could not be started or its output read (retried).
    #[error("media worker: {0}")]
    Worker(String),
}

/// Runs media-worker children with the configured limits.
#[derive(Debug, Clone)]
pub struct Runner {
    /// Limits and encoding settings.
    pub cfg: MediaConfig,
    /// The worker executable (`evidenced-media-worker`, installed beside `evidenced`).
    pub exe: PathBuf,
    /// Where temporary copies and outputs go.
    pub tmp: PathBuf,
}

impl Runner {
    /// A runner using the current executable.
    pub fn new(cfg: MediaConfig, state_dir: &Path) -> std::io::Result<Self> {
        let tmp = std::path::absolute(state_dir.join("media-tmp"))?;
        std::fs::create_dir_all(&tmp)?;
        let exe = match &cfg.worker {
            Some(p) => p.clone(),
            None => std::env::current_exe()?.with_file_name("evidenced-media-worker"),
        };
        Ok(Self { cfg, exe, tmp })
    }

    /// Runs `evidenced-media-worker ARGS` and returns its JSON result.
    pub async fn run(&self, args: &[String]) -> Result<serde_json::Value, MediaError> {
        let mut cmd = tokio::process::Command::new(&self.exe);
        cmd.args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
        cmd.env_remove("NOTIFY_SOCKET").env_remove("WATCHDOG_USEC").env_remove("WATCHDOG_PID");
        let mem = self.cfg.memory_limit_mib.saturating_mul(1 << 20);
        // CPU time may exceed wall time with threads; allow two cores' worth.
        let cpu = self.cfg.timeout.as_secs().saturating_mul(2).max(1);
        let nice = self.cfg.nice;
        // SAFETY: only async-signal-safe calls (setrlimit, setpriority, prctl) run between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                let as_limit = libc::rlimit { rlim_cur: mem, rlim_max: mem };
                let cpu_limit = libc::rlimit { rlim_cur: cpu, rlim_max: cpu + 5 };
                if libc::setrlimit(libc::RLIMIT_AS, &as_limit) != 0 || libc::setrlimit(libc::RLIMIT_CPU, &cpu_limit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                libc::setpriority(libc::PRIO_PROCESS, 0, nice);
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(|e| MediaError::Worker(format!("cannot start {}: {e}", self.exe.display())))?;
        let out = match tokio::time::timeout(self.cfg.timeout, child.wait_with_output()).await {
            Ok(r) => r.map_err(|e| MediaError::Worker(e.to_string()))?,
            // Dropping the future kills the child (kill_on_drop).
            Err(_) => {
                return Err(MediaError::Media(format!(
                    "media worker exceeded its {} s time limit and was killed",
                    self.cfg.timeout.as_secs()
                )));
            }
        };
        let json: Option<serde_json::Value> = String::from_utf8_lossy(&out.stdout).lines().rev().find_map(|l| serde_json::from_str(l).ok());
        let error = json.as_ref().and_then(|j| j["error"].as_str()).map(str::to_string);
        match out.status.code() {
            Some(0) => json.ok_or_else(|| MediaError::Worker("no result on stdout".into())),
            Some(2) => Err(MediaError::NotApplicable(error.unwrap_or_else(|| "not applicable".into()))),
            Some(_) => Err(MediaError::Media(error.unwrap_or_else(|| tail_text(&out.stderr)))),
            None => {
                use std::os::unix::process::ExitStatusExt;
                let sig = out.status.signal().unwrap_or(0);
                let why = match sig {
                    libc::SIGXCPU => "exceeded its CPU time limit".to_string(),
                    libc::SIGKILL => "was killed (memory or time limit)".to_string(),
                    libc::SIGSEGV | libc::SIGABRT => format!("crashed (signal {sig}) decoding this file"),
                    s => format!("died from signal {s}"),
                };
                Err(MediaError::Media(format!("media worker {why}")))
            }
        }
    }

    /// Common encoding arguments.
    fn encode_args(&self) -> Vec<String> {
        vec![
            "--max-height".into(),
            self.cfg.max_height.to_string(),
            "--video-bitrate".into(),
            self.cfg.video_bitrate.to_string(),
            "--audio-bitrate".into(),
            self.cfg.audio_bitrate.to_string(),
        ]
    }
}

fn tail_text(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(b);
    let t: Vec<&str> = s.lines().rev().take(3).collect();
    let msg = t.into_iter().rev().collect::<Vec<_>>().join("; ");
    if msg.is_empty() { "media worker failed without a message".into() } else { msg }
}

fn path_arg(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// A local copy (or the store's own file) of an object, removed on drop when it is a copy.
struct LocalInput {
    /// The path to hand to the worker.
    path: PathBuf,
    /// Whether `path` is a temporary copy.
    temporary: bool,
}

impl Drop for LocalInput {
    fn drop(&mut self) {
        if self.temporary {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Makes `key` available as a local, seekable, ASCII-named file.
async fn local_input(store: &dyn ObjectStore, key: &str, tmp: &Path, name: &str) -> anyhow::Result<LocalInput> {
    if let Some(p) = store.local_path(key) {
        return Ok(LocalInput { path: std::path::absolute(p)?, temporary: false });
    }
    let path = tmp.join(format!("{name}.input"));
    let mut input = LocalInput { path: path.clone(), temporary: true };
    let mut f = tokio::fs::File::create(&path).await?;
    let mut s = store.get(key, None).await?;
    while let Some(chunk) = s.next().await {
        f.write_all(&chunk?).await?;
    }
    f.flush().await?;
    input.temporary = true;
    Ok(input)
}

/// Uploads a finished derivative and returns its reference.
async fn store_output(store: &dyn ObjectStore, key: &str, path: &Path, content_type: &str) -> anyhow::Result<ObjectRef> {
    let f = std::fs::File::open(path)?;
    let size = f.metadata()?.len();
    let r = store.put_file(key, f, size, &NoJournal).await?;
    Ok(ObjectRef { key: key.to_string(), sha256: r.sha256, size: r.size as i64, content_type: content_type.to_string() })
}

/// Removes a file on drop.
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The `derive` job: probe, proxy, poster.
pub struct Deriver {
    /// Catalog.
    pub catalog: Arc<dyn Catalog>,
    /// Store.
    pub store: Arc<dyn ObjectStore>,
    /// Child runner.
    pub runner: Runner,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Actor for custody events.
    pub actor: String,
}

/// Container facts that may fill attribution gaps.
fn container_facts(probe: &serde_json::Value) -> (Option<i64>, Option<(f64, f64)>, Option<i64>) {
    let started = probe["creation_time"]
        .as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.timestamp_micros())
        .filter(|t| *t >= PLAUSIBLE_SINCE_MICROS);
    let gps = match (probe["location"]["lat"].as_f64(), probe["location"]["lon"].as_f64()) {
        (Some(a), Some(b)) if (-90.0..=90.0).contains(&a) && (-180.0..=180.0).contains(&b) => Some((a, b)),
        _ => None,
    };
    (started, gps, probe["duration_ms"].as_i64())
}

impl Deriver {
    /// Records the derivation; false when another attempt already did (this one lost its
    /// lease), which is logged and not an error: the job is done.
    async fn commit(&self, id: &str, upd: &MediaUpdate) -> anyhow::Result<bool> {
        match self.catalog.set_media(id, upd, &self.actor).await {
            Ok(()) => Ok(true),
            Err(crate::catalog::CatalogError::Refused(m)) => {
                tracing::info!(recording = %id, "{m}: this late attempt is discarded");
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }
}

#[async_trait]
impl JobHandler for Deriver {
    async fn handle(&self, job: &Job) -> anyhow::Result<()> {
        let id = job.payload["recording_id"].as_str().ok_or_else(|| anyhow::anyhow!("derive job without recording_id"))?;
        let rec = self.catalog.recording(id).await?;
        if rec.media_state != "pending" {
            return Ok(());
        }
        let started = Instant::now();
        let input = local_input(self.store.as_ref(), &rec.object_key, &self.runner.tmp, id).await?;
        let inp = path_arg(&input.path);
        let probe = match self.runner.run(&["probe".into(), inp.clone()]).await {
            Ok(p) => p,
            Err(MediaError::Worker(e)) => anyhow::bail!(e),
            Err(e) => {
                let upd = MediaUpdate { state: "failed".into(), error: Some(e.to_string()), ..Default::default() };
                if self.commit(id, &upd).await? {
                    tracing::warn!(recording = %id, error = %e, "media not decodable; original stays archived");
                }
                return Ok(());
            }
        };
        let (started_at, gps, duration_ms) = container_facts(&probe);
        let mut upd = MediaUpdate { media: Some(probe.clone()), started_at, gps, duration_ms, ..Default::default() };

        let proxy_path = TempFile(self.runner.tmp.join(format!("{id}.proxy.mp4")));
        let mut args = vec!["proxy".into(), inp.clone(), path_arg(&proxy_path.0)];
        args.extend(self.runner.encode_args());
        match self.runner.run(&args).await {
            Ok(out) => {
                let ct = out["content_type"].as_str().unwrap_or("video/mp4").to_string();
                let key = format!("derived/{id}/proxy.mp4");
                upd.proxy = Some(store_output(self.store.as_ref(), &key, &proxy_path.0, &ct).await?);
                upd.warning = out["warning"].as_str().map(str::to_string);
                upd.state = "ready".into();
                if let Some(ms) = out["duration_ms"].as_i64() {
                    let secs = started.elapsed().as_secs_f64().max(0.001);
                    self.metrics.transcode_speed.observe(ms as f64 / 1000.0 / secs);
                }
            }
            Err(MediaError::Worker(e)) => anyhow::bail!(e),
            Err(e) => {
                upd.state = "failed".into();
                upd.error = Some(e.to_string());
            }
        }
        if upd.state == "ready" && probe["has_video"].as_bool() == Some(true) {
            let poster_path = TempFile(self.runner.tmp.join(format!("{id}.poster.jpg")));
            let args =
                vec!["poster".into(), inp.clone(), path_arg(&poster_path.0), "--max-height".into(), self.runner.cfg.max_height.to_string()];
            match self.runner.run(&args).await {
                Ok(_) => {
                    let key = format!("derived/{id}/poster.jpg");
                    upd.poster = Some(store_output(self.store.as_ref(), &key, &poster_path.0, "image/jpeg").await?);
                }
                Err(MediaError::Worker(e)) => anyhow::bail!(e),
                Err(e) => tracing::warn!(recording = %id, error = %e, "no poster"),
            }
        }
        drop(input);
        if !self.commit(id, &upd).await? {
            return Ok(());
        }
        if upd.state == "ready" {
            if let Some(seen) = rec.sightings.first().and_then(|s| chrono::DateTime::parse_from_rfc3339(&s.seen_at).ok()) {
                let secs = (chrono::Utc::now() - seen.with_timezone(&chrono::Utc)).num_milliseconds() as f64 / 1000.0;
                self.metrics.settle_to_playable.observe(secs.max(0.0));
            }
            tracing::info!(recording = %id, warning = ?upd.warning, "media ready");
        } else {
            tracing::warn!(recording = %id, error = ?upd.error, "media failed; original stays archived");
        }
        Ok(())
    }
}

/// The `clip` job.
pub struct Clipper {
    /// Catalog.
    pub catalog: Arc<dyn Catalog>,
    /// Store.
    pub store: Arc<dyn ObjectStore>,
    /// Child runner.
    pub runner: Runner,
}

#[async_trait]
impl JobHandler for Clipper {
    async fn handle(&self, job: &Job) -> anyhow::Result<()> {
        let id = job.payload["clip_id"].as_str().ok_or_else(|| anyhow::anyhow!("clip job without clip_id"))?;
        let clip = self.catalog.clip(id).await?;
        if clip.state != "pending" {
            return Ok(());
        }
        let rec = self.catalog.recording(&clip.recording_id).await?;
        let input = local_input(self.store.as_ref(), &rec.object_key, &self.runner.tmp, &format!("clip-{id}")).await?;
        let out_path = TempFile(self.runner.tmp.join(format!("{id}.clip.mp4")));
        let mut args = vec![
            "clip".into(),
            path_arg(&input.path),
            path_arg(&out_path.0),
            "--start-ms".into(),
            clip.start_ms.to_string(),
            "--end-ms".into(),
            clip.end_ms.to_string(),
        ];
        if clip.accurate {
            args.push("--accurate".into());
        }
        args.extend(self.runner.encode_args());
        match self.runner.run(&args).await {
            Ok(out) => {
                let ct = out["content_type"].as_str().unwrap_or("video/mp4").to_string();
                let key = format!("derived/{}/clips/{id}.mp4", rec.id);
                let obj = store_output(self.store.as_ref(), &key, &out_path.0, &ct).await?;
                self.catalog.finish_clip(id, Ok(obj)).await?;
            }
            Err(MediaError::Worker(e)) => anyhow::bail!(e),
            Err(e) => self.catalog.finish_clip(id, Err(e.to_string())).await?,
        }
        Ok(())
    }
}

/// How long `POST .../clips` waits for a clip before answering 202.
pub const CLIP_WAIT: Duration = Duration::from_secs(5);
