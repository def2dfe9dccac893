//! The `fs` store: objects are files under a root directory. A put writes a temporary file while
//! hashing, fsyncs it, renames it into place, fsyncs the directory, makes the file and its
//! directory read-only, and (with `store.verify_readback`) reads it back from disk to verify the hash. Read-only
//! files are tamper-evident, not WORM: the owner or root can still change them, which the
//! hashes and the custody log then reveal.

use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::io::AsRawFd;
use std::path::{Component, Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::io::ReaderStream;

use super::{ByteStream, ObjectStore, PutReceipt, Result, StoreError, UploadJournal};

/// Read/write chunk size: large enough for throughput, small enough for a flat RSS.
const CHUNK: usize = 1 << 20;

/// A directory-backed object store.
pub struct FsStore {
    /// Root directory; keys are relative paths below it.
    root: PathBuf,
    /// Re-read each stored file from disk (after dropping it from the page cache) and compare
    /// its SHA-256 before the put counts as done (`store.verify_readback`; costs a second read).
    readback: bool,
}

impl FsStore {
    /// Opens (creating) the store at `root`.
    pub fn open(root: PathBuf) -> Result<Self> {
        fs::create_dir_all(root.join(".tmp")).map_err(StoreError::io(format!("creating store directory {}", root.display())))?;
        Ok(Self { root, readback: false })
    }

    /// Turns read-back verification on: every put is re-read from disk and re-hashed.
    pub fn with_readback(mut self, on: bool) -> Self {
        self.readback = on;
        self
    }

    /// Maps a key to a path, refusing anything that could escape the root.
    fn path(&self, key: &str) -> Result<PathBuf> {
        let rel = Path::new(key);
        if key.is_empty() || !rel.components().all(|c| matches!(c, Component::Normal(_))) {
            return Err(StoreError::Config(format!("invalid object key {key:?}")));
        }
        Ok(self.root.join(rel))
    }
}

/// fsyncs a directory so a rename or unlink in it is durable.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Makes `dir` writable for the duration of `f`, then read-only again.
fn with_writable_dir<T>(dir: &Path, f: impl FnOnce() -> std::io::Result<T>) -> std::io::Result<T> {
    fs::create_dir_all(dir)?;
    fs::set_permissions(dir, Permissions::from_mode(0o755))?;
    let out = f();
    let seal = fs::set_permissions(dir, Permissions::from_mode(0o555));
    let out = out?;
    seal?;
    Ok(out)
}

/// Hashes a file in large reads, reporting progress in bytes. With `from_disk` its cached pages
/// are dropped first, so the bytes are read from the disk rather than the page cache.
pub fn hash_file(path: &Path, from_disk: bool, mut progress: impl FnMut(u64)) -> std::io::Result<(String, u64)> {
    let mut f = File::open(path)?;
    if from_disk {
        // SAFETY: posix_fadvise only reads the descriptor; failure just means a cached read.
        unsafe {
            libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED);
        }
    }
    let mut h = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut n = 0u64;
    loop {
        let r = f.read(&mut buf)?;
        if r == 0 {
            break;
        }
        h.update(&buf[..r]);
        n += r as u64;
        progress(r as u64);
    }
    Ok((hex::encode(h.finalize()), n))
}

/// Buffers circulating between the reading, hashing and writing threads.
const RING: usize = 8;

/// Start writeback of what was written every this many bytes, so the final fsync finds little
/// left to flush and disk writes overlap with reading.
const WRITEBACK_EVERY: u64 = 16 << 20;

/// Copies exactly `size` bytes from `src` to `out` and returns their SHA-256, reading once.
/// Three threads form a pipeline over a fixed ring of buffers — this one reads, one hashes, one
/// writes (and starts writeback as it goes) — so read I/O, hashing and writing overlap, nothing
/// is allocated per chunk, and memory stays at `RING` × `CHUNK` whatever the file size.
/// Fails with `SourceChanged` when `src` has more or fewer bytes than `size`.
fn copy_hashing(src: &mut impl Read, out: &mut File, size: u64, tmp: &Path) -> Result<String> {
    use std::sync::mpsc::{channel, sync_channel};
    std::thread::scope(|scope| {
        let (to_hash, hash_rx) = sync_channel::<(Vec<u8>, usize)>(RING);
        let (to_write, write_rx) = sync_channel::<(Vec<u8>, usize)>(RING);
        let (free_tx, free_rx) = channel::<Vec<u8>>();
        for _ in 0..RING {
            let _ = free_tx.send(vec![0u8; CHUNK]);
        }
        let hasher = scope.spawn(move || {
            let mut h = Sha256::new();
            for (buf, n) in hash_rx {
                h.update(&buf[..n]);
                if to_write.send((buf, n)).is_err() {
                    break;
                }
            }
            hex::encode(h.finalize())
        });
        let writer = scope.spawn(move || -> std::io::Result<()> {
            let fd = out.as_raw_fd();
            let (mut written, mut flushed) = (0u64, 0u64);
            for (buf, n) in write_rx {
                out.write_all(&buf[..n])?;
                written += n as u64;
                // The reader may have stopped; then the buffer is simply dropped.
                let _ = free_tx.send(buf);
                if written - flushed >= WRITEBACK_EVERY {
                    // SAFETY: a plain syscall on our own descriptor; failure only means the
                    // final fsync does all the work.
                    unsafe { libc::sync_file_range(fd, flushed as i64, (written - flushed) as i64, libc::SYNC_FILE_RANGE_WRITE) };
                    flushed = written;
                }
            }
            Ok(())
        });
        let outcome = (|| {
            let mut read = 0u64;
            while read < size {
                // No free buffer means the hasher or writer stopped (the writer's error is reported below).
                let Ok(mut buf) = free_rx.recv() else { return Ok(()) };
                let want = CHUNK.min((size - read) as usize);
                let mut filled = 0;
                while filled < want {
                    let r = src.read(&mut buf[filled..want]).map_err(StoreError::io("reading source"))?;
                    if r == 0 {
                        return Err(StoreError::SourceChanged { expected: size, read: read + filled as u64 });
                    }
                    filled += r;
                }
                read += want as u64;
                if to_hash.send((buf, want)).is_err() {
                    return Ok(());
                }
            }
            // The snapshot said `size` bytes; more bytes mean the file is still being written.
            let mut probe = [0u8; 1];
            if src.read(&mut probe).map_err(StoreError::io("reading source"))? != 0 {
                return Err(StoreError::SourceChanged { expected: size, read: size + 1 });
            }
            Ok(())
        })();
        drop(to_hash);
        let sha = hasher.join().unwrap_or_default();
        let written = writer.join().unwrap_or_else(|_| Err(std::io::Error::other("writer thread panicked")));
        outcome?;
        written.map_err(StoreError::io(format!("writing {}", tmp.display())))?;
        Ok(sha)
    })
}

impl FsStore {
    fn put_blocking(&self, key: &str, mut src: impl Read, size: u64) -> Result<PutReceipt> {
        let dest = self.path(key)?;
        let dir = dest.parent().map(Path::to_path_buf).unwrap_or_else(|| self.root.clone());
        let tmp = self.root.join(".tmp").join(uuid::Uuid::new_v4().to_string());
        let mut out =
            OpenOptions::new().write(true).create_new(true).open(&tmp).map_err(StoreError::io(format!("creating {}", tmp.display())))?;
        let result = copy_hashing(&mut src, &mut out, size, &tmp).and_then(|sha| {
            out.sync_all().map_err(StoreError::io(format!("fsync {}", tmp.display())))?;
            fs::set_permissions(&tmp, Permissions::from_mode(0o444)).map_err(StoreError::io("chmod"))?;
            Ok(sha)
        });
        let sha256 = match result {
            Ok(h) => h,
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                return Err(e);
            }
        };
        with_writable_dir(&dir, || {
            fs::rename(&tmp, &dest)?;
            sync_dir(&dir)
        })
        .map_err(StoreError::io(format!("placing {}", dest.display())))?;
        if self.readback {
            let (again, n) = hash_file(&dest, true, |_| {}).map_err(StoreError::io(format!("reading back {}", dest.display())))?;
            if again != sha256 || n != size {
                return Err(StoreError::Verification {
                    store: self.describe(),
                    key: key.into(),
                    message: format!("read back {n} bytes with SHA-256 {again}, wrote {size} bytes with {sha256}"),
                });
            }
        }
        Ok(PutReceipt { sha256, size })
    }
}

#[async_trait]
impl ObjectStore for FsStore {
    fn describe(&self) -> String {
        format!("fs:{}", self.root.display())
    }

    fn local_path(&self, key: &str) -> Option<PathBuf> {
        self.path(key).ok()
    }

    async fn put_file(&self, key: &str, file: File, size: u64, _journal: &dyn UploadJournal) -> Result<PutReceipt> {
        let this = FsStore { root: self.root.clone(), readback: self.readback };
        let key = key.to_string();
        tokio::task::spawn_blocking(move || this.put_blocking(&key, file, size))
            .await
            .map_err(|e| StoreError::Io { context: "upload task".into(), source: std::io::Error::other(e) })?
    }

    async fn put_bytes(&self, key: &str, data: Bytes, _content_type: &str) -> Result<PutReceipt> {
        let this = FsStore { root: self.root.clone(), readback: self.readback };
        let key = key.to_string();
        tokio::task::spawn_blocking(move || {
            let size = data.len() as u64;
            this.put_blocking(&key, &data[..], size)
        })
        .await
        .map_err(|e| StoreError::Io { context: "upload task".into(), source: std::io::Error::other(e) })?
    }

    async fn get(&self, key: &str, range: Option<(u64, u64)>) -> Result<ByteStream> {
        let path = self.path(key)?;
        let mut f = tokio::fs::File::open(&path).await.map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => StoreError::NotFound(key.into()),
            _ => StoreError::Io { context: format!("opening {}", path.display()), source: e },
        })?;
        let len = f.metadata().await.map_err(StoreError::io("stat"))?.len();
        let (start, n) = range.unwrap_or((0, len));
        if start + n > len {
            return Err(StoreError::Range);
        }
        f.seek(std::io::SeekFrom::Start(start)).await.map_err(StoreError::io("seek"))?;
        Ok(Box::pin(ReaderStream::with_capacity(f.take(n), 256 * 1024)))
    }

    async fn size(&self, key: &str) -> Result<u64> {
        let path = self.path(key)?;
        match tokio::fs::metadata(&path).await {
            Ok(m) => Ok(m.len()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(StoreError::NotFound(key.into())),
            Err(e) => Err(StoreError::Io { context: format!("stat {}", path.display()), source: e }),
        }
    }

    async fn delete(&self, key: &str) -> Result<()> {
        let path = self.path(key)?;
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_else(|| self.root.clone());
        tokio::task::spawn_blocking(move || {
            if !path.exists() {
                return Ok(());
            }
            with_writable_dir(&dir, || {
                fs::remove_file(&path)?;
                sync_dir(&dir)
            })
        })
        .await
        .map_err(|e| StoreError::Io { context: "delete task".into(), source: std::io::Error::other(e) })?
        .map_err(StoreError::io(format!("deleting {key}")))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let root = self.root.clone();
        let prefix = prefix.to_string();
        tokio::task::spawn_blocking(move || {
            // Walk the deepest directory the prefix names, then filter by the whole prefix.
            let dir_part = prefix.rfind('/').map(|i| &prefix[..i]).unwrap_or("");
            let mut keys = Vec::new();
            let mut stack = vec![root.join(dir_part)];
            while let Some(dir) = stack.pop() {
                let rd = match fs::read_dir(&dir) {
                    Ok(rd) => rd,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(StoreError::Io { context: format!("listing {}", dir.display()), source: e }),
                };
                for e in rd.flatten() {
                    let p = e.path();
                    let Ok(rel) = p.strip_prefix(&root) else { continue };
                    let Some(rel) = rel.to_str() else { continue };
                    if rel.starts_with(".tmp") {
                        continue;
                    }
                    match e.file_type() {
                        Ok(t) if t.is_dir() => stack.push(p.clone()),
                        Ok(t) if t.is_file() && rel.starts_with(prefix.as_str()) => keys.push(rel.to_string()),
                        _ => {}
                    }
                }
            }
            keys.sort();
            Ok(keys)
        })
        .await
        .map_err(|e| StoreError::Io { context: "list task".into(), source: std::io::Error::other(e) })?
    }

    async fn abort_upload(&self, _key: &str, _upload_id: &str) -> Result<()> {
        Ok(())
    }

    async fn sweep_uploads(&self, _key_prefix: &str) -> Result<usize> {
        // Temporary files older than an hour belong to no live put (another process may be
        // writing newer ones right now).
        let tmp = self.root.join(".tmp");
        let mut n = 0;
        let cutoff = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        if let Ok(rd) = fs::read_dir(&tmp) {
            for e in rd.flatten() {
                if e.metadata().and_then(|m| m.modified()).is_ok_and(|t| t < cutoff) && fs::remove_file(e.path()).is_ok() {
                    n += 1;
                }
            }
        }
        Ok(n)
    }

    async fn check(&self) -> Result<()> {
        let probe = self.root.join(".tmp");
        let c = std::ffi::CString::new(probe.as_os_str().as_encoded_bytes())
            .map_err(|_| StoreError::Config("store path contains NUL".into()))?;
        // SAFETY: access(2) with a valid C string.
        if unsafe { libc::access(c.as_ptr(), libc::W_OK) } != 0 {
            return Err(StoreError::Unavailable {
                store: self.describe(),
                message: format!("{} is not writable: {}", probe.display(), std::io::Error::last_os_error()),
            });
        }
        Ok(())
    }

    /// Nothing to lock: a directory has no retention dates or legal holds. The `fs` store is
    /// tamper-evident (read-only files, hashes, the custody log), not WORM; the retention worker
    /// refuses to delete a recording before its date, but the owner or root still could.
    async fn retain(&self, _key: &str, _until_micros: i64, _legal_hold: Option<bool>) -> Result<Option<String>> {
        Ok(None)
    }
}
