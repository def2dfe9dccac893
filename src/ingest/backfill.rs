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

/// What happened to one file.
enum FileResult {
    /// Counted in the summary under this outcome.
    Done(Outcome),
    /// Empty file, recorded and skipped.
    Empty,
    /// Failed with this reason.
    Failed(String),
}

/// Ingests one collected file.
async fn one(ingestor: &Ingestor, root: PathBuf, f: &watch::Seen) -> FileResult {
    let dock = DockCtx::backfill(root);
    if f.fingerprint.size == 0 {
        return match ingestor.saw_empty(&dock, f).await {
            Ok(()) => FileResult::Empty,
            Err(e) => FileResult::Failed(e.to_string()),
        };
    }
    let res = match ingestor.discover(&dock, f).await {
        Ok(Some(s)) => ingestor.process(&dock, &s).await,
        Ok(None) => Ok(Outcome::AlreadyDone),
        Err(e) => Err(e),
    };
    match res {
        Ok(Outcome::Changed) => FileResult::Failed("file changed while being read".into()),
        Ok(o) => FileResult::Done(o),
        Err(e) => FileResult::Failed(e.to_string()),
    }
}

/// Imports every file under `paths`, `concurrency` files at a time (so one file's fsyncs and
/// catalog commits overlap another's reading and hashing).
pub async fn run(ingestor: Arc<Ingestor>, paths: &[PathBuf], show_progress: bool, concurrency: usize) -> Summary {
    use futures_util::StreamExt;
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
    let ing = &ingestor;
    let mut results = futures_util::stream::iter(files.into_iter().map(|(root, f)| async move {
        let r = one(ing, root, &f).await;
        (f, r)
    }))
    .buffer_unordered(concurrency.max(1));
    let mut done = 0;
    while let Some((f, r)) = results.next().await {
        done += 1;
        bar.set_message(format!("file {done}/{n}"));
        match r {
            FileResult::Done(Outcome::Archived(_)) => sum.archived += 1,
            FileResult::Done(Outcome::Duplicate(_)) => sum.duplicates += 1,
            FileResult::Done(_) | FileResult::Empty => sum.skipped += 1,
            FileResult::Failed(why) => sum.failed.push((f.path.to_string_lossy().into_owned(), why)),
        }
        bar.inc(f.fingerprint.size as u64);
    }
    bar.finish_and_clear();
    sum
}
