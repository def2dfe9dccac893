//! Watching docks: a periodic full scan is the source of truth (network mounts give no inotify
//! events), `notify` only triggers an early scan. A file is handed to ingest once its
//! (device, inode, size, mtime, ctime) have stayed unchanged for the dock's settle time.
//! Hidden and partial names are ignored, symlinks are never followed, sidecars (`.json`) are
//! read by attribution rather than ingested on their own.

use std::collections::HashMap;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::catalog::Fingerprint;

/// A regular file seen on a dock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// Absolute path.
    pub path: PathBuf,
    /// Path relative to the dock root, `/`-separated, invalid UTF-8 replaced.
    pub rel: String,
    /// Snapshot.
    pub fingerprint: Fingerprint,
}

/// Whether a file name is ignored: hidden, partial, editor backup or a sidecar.
pub fn is_ignored(name: &[u8]) -> bool {
    let lower = name.to_ascii_lowercase();
    name.first() == Some(&b'.')
        || lower.ends_with(b".part")
        || lower.ends_with(b".tmp")
        || lower.ends_with(b"~")
        || lower.ends_with(b".json")
}

/// The fingerprint of a file from its (l)stat.
pub fn fingerprint(m: &std::fs::Metadata) -> Fingerprint {
    Fingerprint {
        dev: m.dev() as i64,
        ino: m.ino() as i64,
        size: m.size() as i64,
        mtime_ns: m.mtime() * 1_000_000_000 + m.mtime_nsec(),
        ctime_ns: m.ctime() * 1_000_000_000 + m.ctime_nsec(),
    }
}

/// Lists every candidate regular file under `root` without following symlinks.
/// Unreadable subdirectories are skipped (and logged), never fatal.
pub fn scan(root: &Path) -> std::io::Result<Vec<Seen>> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    std::fs::symlink_metadata(root)?;
    while let Some(dir) = stack.pop() {
        let rd = match std::fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot read dock directory");
                continue;
            }
        };
        for entry in rd.flatten() {
            let name = entry.file_name();
            if is_ignored(name.as_bytes()) && !entry.file_type().is_ok_and(|t| t.is_dir() && name.as_bytes()[0] != b'.') {
                continue;
            }
            let path = entry.path();
            let Ok(meta) = std::fs::symlink_metadata(&path) else { continue };
            if meta.is_dir() {
                stack.push(path);
            } else if meta.is_file() {
                let rel = path.strip_prefix(root).unwrap_or(&path).to_string_lossy().replace('\\', "/");
                out.push(Seen { path, rel, fingerprint: fingerprint(&meta) });
            }
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// Settle detection over successive scans.
#[derive(Debug)]
pub struct Settler {
    /// How long a snapshot must stay unchanged.
    settle: Duration,
    /// Per path: the last snapshot and when it was first seen.
    seen: HashMap<PathBuf, (Fingerprint, Instant)>,
}

/// What one scan produced.
#[derive(Debug, Default)]
pub struct Observed {
    /// Non-empty files unchanged for the settle time.
    pub settled: Vec<Seen>,
    /// Empty files unchanged for the settle time.
    pub empty: Vec<Seen>,
    /// When the next not-yet-settled file will have settled, if any.
    pub next_deadline: Option<Instant>,
}

impl Settler {
    /// A settler with the dock's settle time.
    pub fn new(settle: Duration) -> Self {
        Self { settle, seen: HashMap::new() }
    }

    /// Feeds one scan; files that vanished are forgotten.
    pub fn observe(&mut self, files: Vec<Seen>, now: Instant) -> Observed {
        let mut out = Observed::default();
        let mut next = HashMap::with_capacity(files.len());
        for f in files {
            let since = match self.seen.get(&f.path) {
                Some((fp, since)) if *fp == f.fingerprint => *since,
                _ => now,
            };
            let ready_at = since + self.settle;
            next.insert(f.path.clone(), (f.fingerprint, since));
            if now >= ready_at {
                if f.fingerprint.size == 0 {
                    out.empty.push(f);
                } else {
                    out.settled.push(f);
                }
            } else {
                out.next_deadline = Some(out.next_deadline.map_or(ready_at, |d: Instant| d.min(ready_at)));
            }
        }
        self.seen = next;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ignores_hidden_partial_and_sidecars() {
        for n in [".hidden.mp4", "a.mp4.part", "a.TMP", "a.mp4~", "a.json"] {
            assert!(is_ignored(n.as_bytes()), "{n}");
        }
        assert!(!is_ignored(b"a.mp4"));
        assert!(!is_ignored(b"\xff\xfe.mp4"));
    }

    #[test]
    fn settles_only_after_unchanged_for_settle_time() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.mp4");
        std::fs::write(&p, b"abc").unwrap();
        let mut s = Settler::new(Duration::from_secs(3));
        let t0 = Instant::now();
        let o = s.observe(scan(dir.path()).unwrap(), t0);
        assert!(o.settled.is_empty());
        assert_eq!(o.next_deadline, Some(t0 + Duration::from_secs(3)));
        let o = s.observe(scan(dir.path()).unwrap(), t0 + Duration::from_secs(2));
        assert!(o.settled.is_empty());
        // A write restarts the clock.
        std::fs::write(&p, b"abcd").unwrap();
        let o = s.observe(scan(dir.path()).unwrap(), t0 + Duration::from_secs(4));
        assert!(o.settled.is_empty());
        let o = s.observe(scan(dir.path()).unwrap(), t0 + Duration::from_secs(7));
        assert_eq!(o.settled.len(), 1);
        assert_eq!(o.settled[0].rel, "a.mp4");
    }

    #[test]
    fn symlinks_are_not_followed_and_empty_files_reported() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret.mp4"), b"x").unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("link")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret.mp4"), dir.path().join("l.mp4")).unwrap();
        std::fs::write(dir.path().join("empty.mp4"), b"").unwrap();
        let files = scan(dir.path()).unwrap();
        assert_eq!(files.len(), 1, "{files:?}");
        let mut s = Settler::new(Duration::ZERO);
        let o = s.observe(files, Instant::now());
        assert_eq!(o.empty.len(), 1);
    }
}
