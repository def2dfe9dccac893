//! The ingest pipeline for one settled file: journal it, check it is still the snapshot that
//! settled, upload it in one hashing pass, attribute it, write its manifest, commit it (new
//! recording or duplicate sighting), and release the dock copy only after all of that, re-checking
//! the snapshot right before deleting. Every step is journaled so a crash resumes cleanly.

pub mod attribution;
pub mod backfill;
pub mod pattern;
pub mod runner;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;

use crate::catalog::{ArchiveOutcome, Catalog, CatalogError, Fingerprint, NewRecording, NewSighting, Sighting};
use crate::config::{DockConfig, Release};
use crate::metrics::Metrics;
use crate::store::{self, ObjectStore, StoreError, UploadJournal};
use crate::watch::{self, Seen};

/// Largest sidecar read (a sidecar is a few hundred bytes; anything huge is not one).
const MAX_SIDECAR: u64 = 1 << 20;

/// Ingest failures; all of them leave the journal consistent and are retried later.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The catalog failed.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The dock file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// Which file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
}

/// What processing a sighting did.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Archived as a new recording.
    Archived(String),
    /// Matched an existing recording.
    Duplicate(String),
    /// The file changed or vanished; a later scan will see its new state.
    Changed,
    /// Nothing to do (already finished).
    AlreadyDone,
}

/// A dock as ingest needs it: its config plus compiled patterns.
pub struct DockCtx {
    /// The config entry.
    pub cfg: DockConfig,
    /// Its name in sightings.
    pub name: String,
    /// Compiled `pattern`s.
    pub patterns: Vec<pattern::Pattern>,
    /// Its time zone.
    pub tz: chrono_tz::Tz,
    /// The release policy.
    pub release: Release,
}

impl DockCtx {
    /// Builds the context (config is validated at load, so failures here are bugs in validation).
    pub fn new(cfg: DockConfig) -> Self {
        let patterns = cfg.pattern.iter().filter_map(|p| pattern::Pattern::compile(p).ok()).collect();
        let tz = cfg.timezone.parse().unwrap_or(chrono_tz::UTC);
        let release = cfg.release_policy();
        Self { name: cfg.display_name(), patterns, tz, release, cfg }
    }

    /// A context for backfill: no patterns, never releases.
    pub fn backfill(root: PathBuf) -> Self {
        let cfg = DockConfig {
            path: root,
            name: Some("backfill".into()),
            pattern: vec![],
            timezone: "UTC".into(),
            unit: None,
            settle: Duration::ZERO,
            release: "keep".into(),
        };
        Self::new(cfg)
    }

    fn rel_of(&self, path: &Path) -> String {
        path.strip_prefix(&self.cfg.path).unwrap_or(path).to_string_lossy().into_owned()
    }
}

/// Journals the multipart upload id of a sighting.
struct SightingJournal<'a> {
    catalog: &'a dyn Catalog,
    id: &'a str,
    key: &'a str,
}

#[async_trait]
impl UploadJournal for SightingJournal<'_> {
    async fn upload_started(&self, upload_id: &str) -> Result<(), String> {
        self.catalog.set_upload(self.id, self.key, Some(upload_id)).await.map_err(|e| e.to_string())
    }
}

/// The pipeline, shared by the daemon and `evidenced ingest`.
pub struct Ingestor {
    /// The catalog.
    pub catalog: Arc<dyn Catalog>,
    /// The store.
    pub store: Arc<dyn ObjectStore>,
    /// This node's id (object keys, journal rows).
    pub node: String,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// First retry delay.
    pub backoff: Duration,
    /// Longest retry delay.
    pub max_backoff: Duration,
    /// Queue an RFC 3161 time-stamp for every new recording (a `[tsa]` is configured).
    pub timestamp: bool,
    /// Queue a `worm_lock` job for every new recording (`store.object_lock` is on).
    pub worm: bool,
}

fn open_nofollow(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK).open(path)
}

impl Ingestor {
    fn actor(&self) -> String {
        format!("node:{}", self.node)
    }

    /// Journals a settled file; returns the sighting when it still needs processing.
    pub async fn discover(&self, dock: &DockCtx, seen: &Seen) -> Result<Option<Sighting>, IngestError> {
        let (s, _new) = self.catalog.record_sighting(&self.new_sighting(dock, seen)).await?;
        Ok((s.state == crate::catalog::sighting_state::DISCOVERED).then_some(s))
    }

    /// Journals an empty file (once per snapshot).
    pub async fn saw_empty(&self, dock: &DockCtx, seen: &Seen) -> Result<(), IngestError> {
        self.catalog.record_empty(&self.new_sighting(dock, seen)).await?;
        Ok(())
    }

    fn new_sighting(&self, dock: &DockCtx, seen: &Seen) -> NewSighting {
        NewSighting {
            node: self.node.clone(),
            dock: dock.name.clone(),
            path: seen.path.as_os_str().as_bytes().to_vec(),
            path_display: seen.path.to_string_lossy().into_owned(),
            fingerprint: seen.fingerprint,
            actor: self.actor(),
        }
    }

    /// Retry delay after `attempts` failures.
    pub fn backoff_for(&self, attempts: i64) -> Duration {
        let factor = 1u32 << attempts.clamp(0, 16);
        self.backoff.saturating_mul(factor).min(self.max_backoff)
    }

    /// Processes a sighting; on error the journal records the failure and when to retry.
    pub async fn process(&self, dock: &DockCtx, s: &Sighting) -> Result<Outcome, IngestError> {
        let started = Instant::now();
        let res = self.process_inner(dock, s).await;
        match &res {
            Ok(Outcome::Archived(_)) => {
                self.metrics.files_ingested.inc();
                self.metrics.bytes_ingested.inc_by(s.fingerprint.size as u64);
                self.metrics.ingest_seconds.observe(started.elapsed().as_secs_f64());
            }
            Ok(_) => {}
            Err(e) => {
                self.metrics.ingest_errors.inc();
                let retry = crate::catalog::now_micros() + self.backoff_for(s.attempts).as_micros() as i64;
                tracing::warn!(path = %s.path_display, error = %e, attempt = s.attempts + 1, "ingest failed; will retry");
                if let Err(e2) = self.catalog.sighting_failed(&s.id, &e.to_string(), retry).await {
                    tracing::warn!(error = %e2, "cannot journal the failure");
                }
            }
        }
        res
    }

    async fn process_inner(&self, dock: &DockCtx, s: &Sighting) -> Result<Outcome, IngestError> {
        if s.state != crate::catalog::sighting_state::DISCOVERED {
            return Ok(Outcome::AlreadyDone);
        }
        let path = PathBuf::from(OsStr::from_bytes(&s.path));
        let key = store::original_key(&self.node, &s.id);
        // A crash mid-upload left a multipart upload: abort it and start over.
        if let Some(upload_id) = &s.upload_id {
            self.store.abort_upload(&key, upload_id).await?;
            self.catalog.set_upload(&s.id, &key, None).await?;
        }
        let file = match open_nofollow(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return self.changed(s, &key, "vanished before it was read").await,
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => return self.changed(s, &key, "became a symlink").await,
            Err(e) => return Err(IngestError::Io { path: s.path_display.clone(), source: e }),
        };
        let meta = file.metadata().map_err(|e| IngestError::Io { path: s.path_display.clone(), source: e })?;
        if !meta.is_file() || watch::fingerprint(&meta) != s.fingerprint {
            return self.changed(s, &key, "changed between settling and reading").await;
        }
        let journal = SightingJournal { catalog: self.catalog.as_ref(), id: &s.id, key: &key };
        let receipt = match self.store.put_file(&key, file, s.fingerprint.size as u64, &journal).await {
            Ok(r) => r,
            Err(StoreError::SourceChanged { .. }) => return self.changed(s, &key, "size changed while being read").await,
            Err(e) => return Err(e.into()),
        };
        // The bytes read must be the snapshot's: re-check after the read.
        if current_fingerprint(&path).as_ref() != Some(&s.fingerprint) {
            return self.changed(s, &key, "changed while being read").await;
        }
        let (sidecar_bytes, _) = read_sidecar(&path);
        let rel = dock.rel_of(&path);
        let attribution = attribution::attribute(&attribution::Inputs {
            rel_path: &rel,
            sidecar: sidecar_bytes.as_deref(),
            patterns: &dock.patterns,
            tz: dock.tz,
            dock_unit: dock.cfg.unit.as_deref(),
        });
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let extension = path.extension().map(|e| e.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
        let rec = NewRecording {
            sha256: receipt.sha256.clone(),
            size: receipt.size as i64,
            object_key: key.clone(),
            manifest_key: store::manifest_key(&self.node, &s.id),
            original_name: name,
            extension,
            attribution,
            node: self.node.clone(),
            timestamp: self.timestamp,
        };
        let manifest = serde_json::json!({
            "recording_id": s.id,
            "sha256": rec.sha256,
            "size": rec.size,
            "original_name": rec.original_name,
            "original_path": s.path_display,
            "original_path_hex": hex::encode(&s.path),
            "dock": s.dock,
            "node": self.node,
            "fingerprint": s.fingerprint,
            "attribution": rec.attribution,
            "stored_at": crate::custody::format_at(crate::catalog::now_micros()),
        });
        let body = serde_json::to_vec_pretty(&manifest).unwrap_or_default();
        self.store.put_bytes(&rec.manifest_key, Bytes::from(body), "application/json").await?;
        let release_after = match dock.release {
            Release::Delete => Some(crate::catalog::now_micros()),
            Release::KeepFor(d) => Some(crate::catalog::now_micros() + d.as_micros() as i64),
            Release::Keep => None,
        };
        let outcome = self.catalog.commit_archive(&s.id, &rec, &self.actor(), release_after).await?;
        match outcome {
            ArchiveOutcome::Archived(id) => {
                tracing::info!(recording = %id, sha256 = %rec.sha256, size = rec.size, path = %s.path_display, "archived");
                // Not in the archive transaction: a failure here is logged (the commit stands).
                if self.worm
                    && let Err(e) = crate::retention::worm::enqueue(self.catalog.as_ref(), &id).await
                {
                    tracing::error!(recording = %id, error = %e, "cannot queue the WORM lock of the original");
                }
                Ok(Outcome::Archived(id))
            }
            ArchiveOutcome::Duplicate(id) => {
                tracing::info!(recording = %id, path = %s.path_display, "duplicate sighting of archived bytes");
                Ok(Outcome::Duplicate(id))
            }
        }
    }

    /// Drops a pass that saw its file change (or vanish): whatever this sighting may have stored
    /// under `key`, in this attempt or an earlier one, is removed first — its journaled multipart
    /// upload aborted, its object deleted — so nothing half-done outlives it; a store error leaves
    /// the sighting to be retried. Only while the catalog still says the sighting is being
    /// ingested: a stale queue entry of a sighting already archived must not touch its object.
    async fn changed(&self, s: &Sighting, key: &str, why: &str) -> Result<Outcome, IngestError> {
        let current = self.catalog.sighting(&s.id).await?;
        if current.state != crate::catalog::sighting_state::DISCOVERED {
            return Ok(Outcome::AlreadyDone);
        }
        if let Some(upload_id) = &current.upload_id {
            self.store.abort_upload(key, upload_id).await?;
        }
        match self.store.delete(key).await {
            Ok(()) | Err(StoreError::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
        tracing::info!(path = %s.path_display, why, "file changed; it will be taken again once it settles");
        self.catalog.sighting_changed(&s.id, &self.actor(), why).await?;
        Ok(Outcome::Changed)
    }

    /// Releases a dock copy whose archive is committed: deletes it only if it is still exactly
    /// the snapshot that was hashed.
    pub async fn release(&self, s: &Sighting) -> Result<(), IngestError> {
        let path = PathBuf::from(OsStr::from_bytes(&s.path));
        match current_fingerprint(&path) {
            None => {
                // Gone already (deleted before a crash recorded it, or by someone else).
                self.catalog.record_release(&s.id, &self.actor()).await?;
                self.release_sidecar(&path);
            }
            Some(fp) if fp != s.fingerprint => {
                // It changed after archiving: the scanner will treat it as a new sighting.
                tracing::info!(path = %s.path_display, "dock copy changed after archiving; kept as a new sighting");
                self.catalog.release_superseded(&s.id).await?;
            }
            Some(_) => {
                std::fs::remove_file(&path).map_err(|e| IngestError::Io { path: s.path_display.clone(), source: e })?;
                if let Some(dir) = path.parent() {
                    let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
                }
                self.catalog.record_release(&s.id, &self.actor()).await?;
                self.release_sidecar(&path);
                tracing::info!(path = %s.path_display, "dock copy released");
            }
        }
        Ok(())
    }

    /// Deletes the sidecar of a released file once no file with its base name remains.
    fn release_sidecar(&self, path: &Path) {
        let (Some(dir), Some(stem)) = (path.parent(), path.file_stem()) else { return };
        let sidecar = dir.join(Path::new(stem).with_extension("json"));
        let siblings_left = std::fs::read_dir(dir).into_iter().flatten().flatten().any(|e| {
            let p = e.path();
            p != sidecar && p.file_stem() == Some(stem)
        });
        if !siblings_left && std::fs::symlink_metadata(&sidecar).is_ok_and(|m| m.is_file()) {
            let _ = std::fs::remove_file(&sidecar);
        }
    }
}

/// The snapshot of `path` now (lstat), or `None` when it no longer exists as a regular file.
fn current_fingerprint(path: &Path) -> Option<Fingerprint> {
    std::fs::symlink_metadata(path).ok().filter(|m| m.is_file()).map(|m| watch::fingerprint(&m))
}

/// The sidecar beside a file (`<stem>.json`), if it is a small regular file.
fn read_sidecar(path: &Path) -> (Option<Vec<u8>>, Option<PathBuf>) {
    let Some(stem) = path.file_stem() else { return (None, None) };
    let sidecar = path.with_file_name(Path::new(stem).with_extension("json"));
    match std::fs::symlink_metadata(&sidecar) {
        Ok(m) if m.is_file() && m.len() <= MAX_SIDECAR => {
            let bytes = open_nofollow(&sidecar).and_then(|mut f| {
                let mut v = Vec::new();
                std::io::Read::read_to_end(&mut f, &mut v).map(|_| v)
            });
            (bytes.ok(), Some(sidecar))
        }
        _ => (None, None),
    }
}
