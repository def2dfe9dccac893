//! `evidenced ingest PATH...`: one-shot import of existing files through the same pipeline, with
//! a progress bar (files, bytes, rate, ETA). Sources are left in place. Re-running it is safe:
//! snapshots already archived are recognised from the journal and skipped.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use indicatif::{ProgressBar, ProgressStyle};

use super::{DockCtx, Ingestor, Outcome};
use crate::watch;

/// Totals of one backfill run.
#[derive(Debug, Default)]
pub struct Summary {
    /// Files archived as new recordings.
    pub archived: usize,
    /// Files whose bytes were already archived.
    pub duplicates: usize,
    /// Files skipped (already ingested by an earlier run, or empty).
    pub skipped: usize,
    /// Files that failed, with the reason.
    pub failed: Failures,
}

/// Paths that failed, with the reason.
type Failures = Vec<(String, String)>;

/// Collects the files under each argument (files as given; directories recursively), and the
/// arguments that could not be read.
fn collect(paths: &[PathBuf]) -> (Vec<(PathBuf, watch::Seen)>, Failures) {
    let mut out = Vec::new();
    let mut failed = Vec::new();
    for p in paths {
        match std::fs::symlink_metadata(p) {
            Ok(m) if m.is_dir() => match watch::scan(p) {
                Ok(files) => out.extend(files.into_iter().map(|f| (p.clone(), f))),
                Err(e) => failed.push((p.display().to_string(), format!("cannot scan: {e}"))),
            },
            Ok(m) if m.is_file() => {
                let root = p.parent().map(Path::to_path_buf).unwrap_or_default();
                let rel = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                out.push((root, watch::Seen { path: p.clone(), rel, fingerprint: watch::fingerprint(&m) }));
            }
            Ok(_) => failed.push((p.display().to_string(), "not a regular file or directory".into())),
            Err(e) => failed.push((p.display().to_string(), e.to_string())),
        }
    }
    (out, failed)
}

/// Imports every file under `paths`.
pub async fn run(ingestor: Arc<Ingestor>, paths: &[PathBuf], show_progress: bool) -> Summary {
    let (files, unreadable) = collect(paths);
    let total: u64 = files.iter().map(|(_, f)| f.fingerprint.size as u64).sum();
    let bar = if show_progress { ProgressBar::new(total) } else { ProgressBar::hidden() };
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let n = files.len();
    let mut sum = Summary { failed: unreadable, ..Default::default() };
    for (i, (root, f)) in files.into_iter().enumerate() {
        bar.set_message(format!("file {}/{n}", i + 1));
        let dock = DockCtx::backfill(root);
        let display = f.path.to_string_lossy().into_owned();
        if f.fingerprint.size == 0 {
            if let Err(e) = ingestor.saw_empty(&dock, &f).await {
                sum.failed.push((display, e.to_string()));
            } else {
                sum.skipped += 1;
            }
            continue;
        }
        let res = match ingestor.discover(&dock, &f).await {
            Ok(Some(s)) => ingestor.process(&dock, &s).await,
            Ok(None) => Ok(Outcome::AlreadyDone),
            Err(e) => Err(e),
        };
        match res {
            Ok(Outcome::Archived(_)) => sum.archived += 1,
            Ok(Outcome::Duplicate(_)) => sum.duplicates += 1,
            Ok(Outcome::AlreadyDone) => sum.skipped += 1,
            Ok(Outcome::Changed) => sum.failed.push((display, "file changed while being read".into())),
            Err(e) => sum.failed.push((display, e.to_string())),
        }
        bar.inc(f.fingerprint.size as u64);
    }
    bar.finish_and_clear();
    sum
}
