//! The BagIt (RFC 8493) writer behind `evidenced export`: it owns the on-disk layout of one bag
//! (`bagit.txt`, `bag-info.txt`, the `data/` payload, tag files and tag directories,
//! `manifest-sha256.txt`, `tagmanifest-sha256.txt`), hashes every byte in the same pass that
//! writes it, and owns the crash-safety protocol: everything is written under `<out>.partial`,
//! every file and directory is fsynced, and only a finished bag is renamed to `<out>` (then the
//! parent directory is fsynced). A bag therefore either exists complete at `<out>` or not at all.
//!
//! A writer dropped before [`BagWriter::finish`] (an error, a cancelled export, a crash) leaves
//! `<out>.partial` behind on purpose: nothing is deleted behind the operator's back, and the next
//! [`BagWriter::create`] for the same `<out>` removes it before starting again.
//!
//! Manifest paths are percent-encoded exactly as RFC 8493 §2.1.3 says (`CR` → `%0D`, `LF` →
//! `%0A`, `%` → `%25`, nothing else). Note for exports: bagit-python up to at least 1.9 does not
//! decode `%25` (LibraryOfCongress/bagit-python#157), so a recipient validating with it will
//! reject a bag whose payload names contain `%`; names without `%`, CR or LF validate everywhere.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

/// Free space demanded beyond the expected payload: room for tag files, manifests and
/// filesystem overhead, so a bag never fills its disk to the last block.
pub const SPACE_MARGIN: u64 = 16 << 20;

/// Name of the payload manifest (the only payload manifest this writer emits).
pub const MANIFEST: &str = "manifest-sha256.txt";

/// Name of the tag manifest (covers every tag file, including [`MANIFEST`]).
pub const TAGMANIFEST: &str = "tagmanifest-sha256.txt";

/// Read and write buffer size: large enough for throughput, small enough for a flat RSS.
const CHUNK: usize = 1 << 20;

/// Stream chunks that may wait for the writer thread: bounds memory to a few chunks per payload.
const CHANNEL_DEPTH: usize = 8;

/// Bag writer failures. Every variant names the path it concerns.
#[derive(Debug, thiserror::Error)]
pub enum BagError {
    /// The output directory (or a file or symlink with its name) exists; an export never
    /// overwrites anything.
    #[error("bag output {path} already exists; refusing to overwrite it")]
    Exists {
        /// The existing output path.
        path: PathBuf,
    },
    /// The filesystem of the output cannot hold the expected payload plus [`SPACE_MARGIN`].
    #[error("not enough free space for bag {path}: {needed} bytes needed (payload plus a 16 MiB margin), {available} available")]
    NoSpace {
        /// The bag output path whose filesystem was checked.
        path: PathBuf,
        /// Bytes needed: expected payload plus [`SPACE_MARGIN`].
        needed: u64,
        /// Bytes available to this (unprivileged) process on that filesystem.
        available: u64,
    },
    /// A bag-relative path (or the output path) is not acceptable.
    #[error("invalid bag path {path:?}: {reason}")]
    InvalidPath {
        /// The path as given.
        path: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// The same payload or tag file was added twice.
    #[error("{path} is already in the bag")]
    Duplicate {
        /// The bag-relative path (`data/...` for payload).
        path: String,
    },
    /// The bytes written do not hash to what the caller (the catalog) expected; the file was
    /// removed from the bag, so the export cannot ship them.
    #[error("SHA-256 mismatch for {path}: expected {expected}, found {found}")]
    Mismatch {
        /// The bag-relative path (`data/...`).
        path: String,
        /// The SHA-256 the caller expected (hex).
        expected: String,
        /// The SHA-256 of the bytes actually received (hex).
        found: String,
    },
    /// A `bag-info.txt` element is not acceptable (RFC 8493 §2.2.2), or contradicts the payload.
    #[error("invalid bag-info.txt element {label:?}: {reason}")]
    InvalidInfo {
        /// The label as given.
        label: String,
        /// Why it was refused.
        reason: String,
    },
    /// The partial bag may hold a file that is in no manifest (an add was cancelled midway, or a
    /// failed add could not be cleaned up); this writer refuses to go on. Start the export again.
    #[error("partial bag {path} cannot be finished: {reason}")]
    Broken {
        /// The `.partial` directory.
        path: PathBuf,
        /// What left it in that state.
        reason: String,
    },
    /// An operating-system error, with what was being done and to which path.
    #[error("{context} {path}: {source}")]
    Io {
        /// What was being done ("writing", "reading the payload stream for", ...).
        context: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
}

/// Convenience alias.
pub type Result<T, E = BagError> = std::result::Result<T, E>;

/// Builds an [`BagError::Io`] mapper for `path`.
fn io_err(context: &'static str, path: &Path) -> impl FnOnce(io::Error) -> BagError + use<> {
    let path = path.to_owned();
    move |source| BagError::Io { context, path, source }
}

/// What an added file proved: the digest and size of exactly the bytes now in the bag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fixity {
    /// SHA-256 of the bytes written, lowercase hex (as recorded in the manifest).
    pub sha256: String,
    /// Number of bytes written.
    pub bytes: u64,
}

/// What [`BagWriter::finish`] produced, for the export's report and custody entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BagSummary {
    /// The finished bag directory (the `out` given to [`BagWriter::create`]).
    pub path: PathBuf,
    /// Number of payload files (second half of `Payload-Oxum`).
    pub payload_files: u64,
    /// Total payload octets (first half of `Payload-Oxum`).
    pub payload_bytes: u64,
    /// Bag-relative payload paths (`data/...`), sorted as in the manifest.
    pub payload: Vec<String>,
    /// Bag-relative tag file paths, sorted, including `bagit.txt`, `bag-info.txt`,
    /// [`MANIFEST`] and [`TAGMANIFEST`].
    pub tag_files: Vec<String>,
    /// SHA-256 of [`TAGMANIFEST`] (hex). It transitively commits to every byte of the bag, so
    /// it is the one value to record in the custody log or to time-stamp for the export.
    pub tagmanifest_sha256: String,
}

/// Writes one bag. Create it with [`BagWriter::create`], add payload and tag files, then call
/// [`BagWriter::finish`]. Dropping it without `finish` leaves `<out>.partial` in place (see the
/// module docs); the next `create` for the same `out` removes it.
#[derive(Debug)]
pub struct BagWriter {
    /// Where the finished bag will be (renamed into place by `finish`).
    out: PathBuf,
    /// Where the bag is built: `<out>.partial`.
    partial: PathBuf,
    /// Payload files by path below `data/`: what `manifest-sha256.txt` lists.
    payload: BTreeMap<String, Fixity>,
    /// Tag files by bag-relative path: what `tagmanifest-sha256.txt` lists besides the files
    /// `finish` writes itself.
    tags: BTreeMap<String, Fixity>,
    /// Bag-relative directories created for added files, to fsync before the final rename.
    dirs: BTreeSet<String>,
    /// Set while an add is in progress and left set if it never completed (its future was
    /// dropped) or its file could not be removed after a failure: the partial bag may then hold
    /// a file no manifest lists, so further adds and `finish` are refused.
    poisoned: Option<String>,
}

impl BagWriter {
    /// Starts a bag that will end up at `out`. Refuses if `out` exists in any form; removes a
    /// stale `<out>.partial` left by an interrupted run; checks (with `statvfs` on the parent
    /// directory) that `expected_payload_bytes` plus [`SPACE_MARGIN`] is free; then creates
    /// `<out>.partial/data/`.
    pub async fn create(out: &Path, expected_payload_bytes: u64) -> Result<BagWriter> {
        let out = out.to_owned();
        let partial = partial_path(&out)?;
        let p = partial.clone();
        let o = out.clone();
        blocking("creating", &partial, move || prepare_output(&o, &p, expected_payload_bytes)).await?;
        Ok(BagWriter { out, partial, payload: BTreeMap::new(), tags: BTreeMap::new(), dirs: BTreeSet::new(), poisoned: None })
    }

    /// The directory the bag is being built in (`<out>.partial`).
    pub fn partial_path(&self) -> &Path {
        &self.partial
    }

    /// Streams a payload file to `data/<rel>` (for example an object store's
    /// [`crate::store::ByteStream`]), hashing it in the same pass, and fsyncs it. Memory stays
    /// bounded: at most a few chunks wait for the writer thread. If `expected_sha256` is given
    /// and differs from what arrived, the file is removed and [`BagError::Mismatch`] returned.
    /// On any error the file is removed and the writer stays usable.
    pub async fn add_payload_stream<S>(&mut self, rel: &str, stream: S, expected_sha256: Option<&str>) -> Result<Fixity>
    where
        S: Stream<Item = io::Result<Bytes>> + Unpin,
    {
        let (bag_rel, dest) = self.begin(rel, Kind::Payload)?;
        let result = write_stream(&dest, &bag_rel, stream, expected_sha256).await;
        self.end(rel, Kind::Payload, &dest, result).await
    }

    /// Copies a local file to `data/<rel>`, hashing it in the same pass (on a blocking thread,
    /// in 1 MiB reads), and fsyncs it. `expected_sha256` as for [`Self::add_payload_stream`].
    pub async fn add_payload_file(&mut self, rel: &str, src: &Path, expected_sha256: Option<&str>) -> Result<Fixity> {
        let (bag_rel, dest) = self.begin(rel, Kind::Payload)?;
        let (s, d) = (src.to_owned(), dest.clone());
        let result = match blocking("copying to", &dest, move || copy_file(&s, &d)).await {
            Ok((file, fixity)) => verify_and_sync(file, &dest, &bag_rel, fixity, expected_sha256).await,
            Err(e) => Err(e),
        };
        self.end(rel, Kind::Payload, &dest, result).await
    }

    /// Writes small in-memory bytes to `data/<rel>` (they are copied once to a blocking
    /// thread; use [`Self::add_payload_stream`] for anything large). `expected_sha256` as for
    /// [`Self::add_payload_stream`].
    pub async fn add_payload_bytes(&mut self, rel: &str, bytes: &[u8], expected_sha256: Option<&str>) -> Result<Fixity> {
        let chunk = Bytes::copy_from_slice(bytes);
        self.add_payload_stream(rel, futures_util::stream::iter([Ok(chunk)]), expected_sha256).await
    }

    /// Writes a tag file at `rel` relative to the bag root (`VERIFY.txt`) or in a tag
    /// directory (`custody/entries.jsonl`, `keys/node-a.pem`, `tokens/<sha>.tsr`), fsyncs it
    /// and records it for `tagmanifest-sha256.txt`. The names `finish` writes itself,
    /// `fetch.txt`, and anything under `data/` are refused.
    pub async fn add_tag_file(&mut self, rel: &str, bytes: &[u8]) -> Result<Fixity> {
        let (_, dest) = self.begin(rel, Kind::Tag)?;
        let (d, b) = (dest.clone(), bytes.to_vec());
        let result = blocking("writing", &dest, move || write_new(&d, &b)).await;
        self.end(rel, Kind::Tag, &dest, result).await
    }

    /// Completes the bag: writes `bagit.txt`, `bag-info.txt` (the given elements in order,
    /// plus `Bagging-Date` (UTC), `Payload-Oxum` and `Bag-Size` unless given; a given
    /// `Payload-Oxum` must match the payload), `manifest-sha256.txt` and
    /// `tagmanifest-sha256.txt`, fsyncs every directory of the bag, renames `<out>.partial` to
    /// `<out>` (refusing to replace anything that appeared there meanwhile) and fsyncs the
    /// parent. On error the `.partial` stays, as when the writer is dropped (only a failed fsync
    /// of the parent, after the rename, leaves the complete bag at `<out>` with an error).
    pub async fn finish(self, bag_info: &[(String, String)]) -> Result<BagSummary> {
        self.usable()?;
        let payload_bytes: u64 = self.payload.values().map(|f| f.bytes).sum();
        let tag_bytes: u64 = self.tags.values().map(|f| f.bytes).sum();
        let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
        let info = bag_info_text(bag_info, payload_bytes, self.payload.len() as u64, payload_bytes + tag_bytes, &today)?;
        let partial = self.partial.clone();
        blocking("finishing", &partial, move || self.finish_blocking(info, payload_bytes)).await
    }

    /// The blocking part of [`Self::finish`].
    fn finish_blocking(mut self, info: String, payload_bytes: u64) -> Result<BagSummary> {
        let root = self.partial.clone();
        let bagit = "BagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\n";
        let mut manifest = String::new();
        for (rel, f) in &self.payload {
            manifest.push_str(&manifest_line(&f.sha256, &format!("data/{rel}")));
        }
        for (name, text) in [("bagit.txt", bagit), ("bag-info.txt", info.as_str()), (MANIFEST, manifest.as_str())] {
            let fixity = write_new(&root.join(name), text.as_bytes())?;
            self.tags.insert(name.to_owned(), fixity);
        }
        let mut tagmanifest = String::new();
        for (rel, f) in &self.tags {
            tagmanifest.push_str(&manifest_line(&f.sha256, rel));
        }
        let tm = write_new(&root.join(TAGMANIFEST), tagmanifest.as_bytes())?;

        // Deepest directories first, then data/ and the root: every entry made durable
        // before the rename publishes the bag.
        for dir in self.dirs.iter().rev() {
            sync_dir(&root.join(dir))?;
        }
        sync_dir(&root.join("data"))?;
        sync_dir(&root)?;
        rename_noreplace(&root, &self.out)?;
        sync_dir(&parent_dir(&self.out))?;

        let mut tag_files: Vec<String> = self.tags.keys().cloned().collect();
        tag_files.push(TAGMANIFEST.to_owned());
        tag_files.sort();
        Ok(BagSummary {
            path: self.out.clone(),
            payload_files: self.payload.len() as u64,
            payload_bytes,
            payload: self.payload.keys().map(|r| format!("data/{r}")).collect(),
            tag_files,
            tagmanifest_sha256: tm.sha256,
        })
    }

    /// Refuses to go on if an earlier add left the partial bag in an unknown state.
    fn usable(&self) -> Result<()> {
        match &self.poisoned {
            Some(reason) => Err(BagError::Broken { path: self.partial.clone(), reason: reason.clone() }),
            None => Ok(()),
        }
    }

    /// Validates `rel` for its kind, refuses duplicates, and marks the add as in progress.
    /// Returns the bag-relative path and the destination file.
    fn begin(&mut self, rel: &str, kind: Kind) -> Result<(String, PathBuf)> {
        self.usable()?;
        let bag_rel = match kind {
            Kind::Payload => {
                check_payload_path(rel)?;
                format!("data/{rel}")
            }
            Kind::Tag => {
                check_tag_path(rel)?;
                rel.to_owned()
            }
        };
        let taken = match kind {
            Kind::Payload => self.payload.contains_key(rel),
            Kind::Tag => self.tags.contains_key(rel),
        };
        if taken {
            return Err(BagError::Duplicate { path: bag_rel });
        }
        self.poisoned = Some(format!("adding {bag_rel} did not complete"));
        let dest = self.partial.join(&bag_rel);
        Ok((bag_rel, dest))
    }

    /// Records a successful add, or removes the file of a failed one; clears the in-progress
    /// mark unless the removal failed.
    async fn end(&mut self, rel: &str, kind: Kind, dest: &Path, result: Result<Fixity>) -> Result<Fixity> {
        match result {
            Ok(fixity) => {
                let bag_rel = match kind {
                    Kind::Payload => format!("data/{rel}"),
                    Kind::Tag => rel.to_owned(),
                };
                let mut dir = Path::new(&bag_rel).parent();
                while let Some(d) = dir.filter(|d| !d.as_os_str().is_empty() && *d != Path::new("data")) {
                    self.dirs.insert(d.to_string_lossy().into_owned());
                    dir = d.parent();
                }
                match kind {
                    Kind::Payload => self.payload.insert(rel.to_owned(), fixity.clone()),
                    Kind::Tag => self.tags.insert(rel.to_owned(), fixity.clone()),
                };
                self.poisoned = None;
                Ok(fixity)
            }
            Err(e) => {
                let d = dest.to_owned();
                let removed = blocking("removing", dest, move || discard(&d)).await;
                self.poisoned = match removed {
                    Ok(()) => None,
                    Err(r) => Some(format!("could not remove the file of a failed add ({r})")),
                };
                Err(e)
            }
        }
    }
}

/// Which manifest an added file belongs to.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// Under `data/`, listed in `manifest-sha256.txt`.
    Payload,
    /// Outside `data/`, listed in `tagmanifest-sha256.txt`.
    Tag,
}

/// Runs blocking file work off the async runtime; a panicked or cancelled task becomes an
/// [`BagError::Io`] naming `path`.
async fn blocking<T: Send + 'static>(context: &'static str, path: &Path, f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) => Err(BagError::Io { context, path: path.to_owned(), source: io::Error::other(e) }),
    }
}

/// Streams chunks to a blocking writer thread through a bounded channel, so hashing and
/// writing never block the runtime and memory stays at a few chunks.
async fn write_stream<S>(dest: &Path, bag_rel: &str, mut stream: S, expected: Option<&str>) -> Result<Fixity>
where
    S: Stream<Item = io::Result<Bytes>> + Unpin,
{
    let (tx, rx) = mpsc::channel::<Bytes>(CHANNEL_DEPTH);
    let d = dest.to_owned();
    let writer = tokio::task::spawn_blocking(move || write_chunks(&d, rx));
    let mut read_error = None;
    while let Some(item) = stream.next().await {
        match item {
            Ok(chunk) if chunk.is_empty() => {}
            Ok(chunk) => {
                if tx.send(chunk).await.is_err() {
                    break; // the writer stopped; its error is reported below
                }
            }
            Err(e) => {
                read_error = Some(e);
                break;
            }
        }
    }
    drop(tx);
    let written = writer.await.map_err(|e| BagError::Io { context: "writing", path: dest.to_owned(), source: io::Error::other(e) })?;
    if let Some(e) = read_error {
        return Err(BagError::Io { context: "reading the payload stream for", path: dest.to_owned(), source: e });
    }
    let (file, fixity) = written?;
    verify_and_sync(file, dest, bag_rel, fixity, expected).await
}

/// The writer thread of [`write_stream`]: creates `dest`, hashes and writes every chunk.
fn write_chunks(dest: &Path, mut rx: mpsc::Receiver<Bytes>) -> Result<(File, Fixity)> {
    let file = create_new(dest)?;
    let mut w = BufWriter::with_capacity(CHUNK, file);
    let mut h = Sha256::new();
    let mut n = 0u64;
    while let Some(chunk) = rx.blocking_recv() {
        h.update(&chunk);
        w.write_all(&chunk).map_err(io_err("writing", dest))?;
        n += chunk.len() as u64;
    }
    let file = w.into_inner().map_err(|e| io_err("writing", dest)(e.into_error()))?;
    Ok((file, Fixity { sha256: hex::encode(h.finalize()), bytes: n }))
}

/// Copies `src` to a new file `dest`, hashing in the same pass.
fn copy_file(src: &Path, dest: &Path) -> Result<(File, Fixity)> {
    let mut input = File::open(src).map_err(io_err("opening payload source", src))?;
    let mut file = create_new(dest)?;
    let mut buf = vec![0u8; CHUNK];
    let mut h = Sha256::new();
    let mut n = 0u64;
    loop {
        let r = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(r) => r,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_err("reading payload source", src)(e)),
        };
        h.update(&buf[..r]);
        file.write_all(&buf[..r]).map_err(io_err("writing", dest))?;
        n += r as u64;
    }
    Ok((file, Fixity { sha256: hex::encode(h.finalize()), bytes: n }))
}

/// Compares with the expected digest (case-insensitively), then fsyncs the file.
async fn verify_and_sync(file: File, dest: &Path, bag_rel: &str, fixity: Fixity, expected: Option<&str>) -> Result<Fixity> {
    if let Some(exp) = expected
        && !exp.eq_ignore_ascii_case(&fixity.sha256)
    {
        return Err(BagError::Mismatch { path: bag_rel.to_owned(), expected: exp.to_owned(), found: fixity.sha256 });
    }
    let d = dest.to_owned();
    blocking("syncing", dest, move || file.sync_all().map_err(io_err("syncing", &d))).await?;
    Ok(fixity)
}

/// Creates `path` (and missing parent directories); never overwrites.
fn create_new(path: &Path) -> Result<File> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(io_err("creating directory", parent))?;
    }
    OpenOptions::new().write(true).create_new(true).open(path).map_err(io_err("creating", path))
}

/// Writes a new small file in one go, fsyncs it, and returns its fixity.
fn write_new(path: &Path, bytes: &[u8]) -> Result<Fixity> {
    let mut f = create_new(path)?;
    f.write_all(bytes).map_err(io_err("writing", path))?;
    f.sync_all().map_err(io_err("syncing", path))?;
    Ok(Fixity { sha256: hex::encode(Sha256::digest(bytes)), bytes: bytes.len() as u64 })
}

/// Removes the file of a failed add. Nothing there, a path through a file, or a directory (a
/// tag path naming an existing tag directory) means the add created nothing: every file in the
/// partial bag is either recorded under a unique path or the one this add was writing.
fn discard(path: &Path) -> Result<()> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => fs::remove_file(path).map_err(io_err("removing", path)),
        Err(e) if matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::NotADirectory) => Ok(()),
        Err(e) => Err(io_err("inspecting", path)(e)),
    }
}

/// fsyncs a directory so the entries made in it are durable.
fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_err("syncing directory", dir))
}

/// The directory holding `path` (`.` for a bare name).
fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    }
}

/// `<out>.partial`: the sibling of `out` with `.partial` appended to its file name.
fn partial_path(out: &Path) -> Result<PathBuf> {
    let invalid = || BagError::InvalidPath { path: out.display().to_string(), reason: "the bag output needs a file name" };
    let name = out.file_name().ok_or_else(invalid)?;
    if name == ".." {
        return Err(invalid());
    }
    let mut name = name.to_owned();
    name.push(".partial");
    Ok(out.with_file_name(name))
}

/// The blocking part of [`BagWriter::create`].
fn prepare_output(out: &Path, partial: &Path, expected_payload_bytes: u64) -> Result<()> {
    if fs::symlink_metadata(out).is_ok() {
        return Err(BagError::Exists { path: out.to_owned() });
    }
    if let Ok(meta) = fs::symlink_metadata(partial) {
        tracing::warn!(path = %partial.display(), "removing a stale partial bag left by an interrupted export");
        let removed = if meta.is_dir() { fs::remove_dir_all(partial) } else { fs::remove_file(partial) };
        removed.map_err(io_err("removing stale partial bag", partial))?;
    }
    let parent = parent_dir(out);
    let available = free_space(&parent).map_err(io_err("checking free space in", &parent))?;
    let needed = expected_payload_bytes.saturating_add(SPACE_MARGIN);
    if available < needed {
        return Err(BagError::NoSpace { path: out.to_owned(), needed, available });
    }
    fs::create_dir(partial).map_err(io_err("creating", partial))?;
    let data = partial.join("data");
    fs::create_dir(&data).map_err(io_err("creating", &data))?;
    Ok(())
}

/// Converts a path for a libc call.
fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

/// Bytes available to an unprivileged writer on the filesystem holding `dir` (`statvfs`).
fn free_space(dir: &Path) -> io::Result<u64> {
    let c = c_path(dir)?;
    // SAFETY: `c` is a valid NUL-terminated path and `st` a writable statvfs; statvfs only
    // writes into it.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
}

/// Renames `from` to `to` unless `to` exists (atomically, with `RENAME_NOREPLACE`, where the
/// filesystem supports it; otherwise checked just before a plain rename).
fn rename_noreplace(from: &Path, to: &Path) -> Result<()> {
    let (f, t) = (c_path(from).map_err(io_err("renaming", from))?, c_path(to).map_err(io_err("renaming to", to))?);
    // SAFETY: both are valid NUL-terminated paths.
    let rc = unsafe { libc::renameat2(libc::AT_FDCWD, f.as_ptr(), libc::AT_FDCWD, t.as_ptr(), libc::RENAME_NOREPLACE) };
    if rc == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EEXIST) | Some(libc::ENOTEMPTY) => Err(BagError::Exists { path: to.to_owned() }),
        Some(libc::EINVAL) | Some(libc::ENOSYS) => {
            if fs::symlink_metadata(to).is_ok() {
                return Err(BagError::Exists { path: to.to_owned() });
            }
            fs::rename(from, to).map_err(io_err("renaming partial bag to", to))
        }
        _ => Err(io_err("renaming partial bag to", to)(e)),
    }
}

/// Checks the shape every bag-relative path must have: relative, `/`-separated, no empty,
/// `.` or `..` components, no NUL.
fn check_rel(rel: &str) -> Result<()> {
    let reason = if rel.is_empty() {
        Some("empty path")
    } else if rel.starts_with('/') {
        Some("absolute path")
    } else if rel.contains('\0') {
        Some("contains a NUL byte")
    } else if rel.split('/').any(|c| c == "..") {
        Some("contains a `..` component")
    } else if rel.split('/').any(|c| c == ".") {
        Some("contains a `.` component")
    } else if rel.split('/').any(str::is_empty) {
        Some("contains an empty component")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(BagError::InvalidPath { path: rel.to_owned(), reason }),
        None => Ok(()),
    }
}

/// Checks a payload path (relative to `data/`).
pub fn check_payload_path(rel: &str) -> Result<()> {
    check_rel(rel)
}

/// Checks a tag file path (relative to the bag root): besides the general shape, it must not be
/// in `data/`, and its first component must not be a name the bag reserves (`bagit.txt`,
/// `bag-info.txt`, `fetch.txt`, `manifest-*.txt`, `tagmanifest-*.txt`), compared
/// case-insensitively so the bag also survives a case-insensitive filesystem.
pub fn check_tag_path(rel: &str) -> Result<()> {
    check_rel(rel)?;
    let first = rel.split('/').next().unwrap_or_default().to_ascii_lowercase();
    let reason = if first == "data" {
        Some("tag files cannot be in the payload directory data/")
    } else if first == "bagit.txt" || first == "bag-info.txt" || first == "fetch.txt" {
        Some("reserved BagIt tag file name")
    } else if (first.starts_with("manifest-") || first.starts_with("tagmanifest-")) && first.ends_with(".txt") {
        Some("reserved BagIt manifest name")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(BagError::InvalidPath { path: rel.to_owned(), reason }),
        None => Ok(()),
    }
}

/// Percent-encodes a bag-relative path for a manifest line as RFC 8493 §2.1.3 requires:
/// `CR` → `%0D`, `LF` → `%0A`, `%` → `%25`, and nothing else (spaces and non-ASCII stay).
pub fn encode_manifest_path(path: &str) -> String {
    let mut s = String::with_capacity(path.len());
    for ch in path.chars() {
        match ch {
            '%' => s.push_str("%25"),
            '\r' => s.push_str("%0D"),
            '\n' => s.push_str("%0A"),
            c => s.push(c),
        }
    }
    s
}

/// One manifest line: `<hex>  <encoded path>\n`.
fn manifest_line(sha256: &str, bag_rel: &str) -> String {
    format!("{sha256}  {}\n", encode_manifest_path(bag_rel))
}

/// `Payload-Oxum` (RFC 8493 §2.2.2): `<octets>.<streamcount>`.
pub fn payload_oxum(bytes: u64, files: u64) -> String {
    format!("{bytes}.{files}")
}

/// Human-readable approximate size for `Bag-Size` (decimal units, as the RFC's examples).
fn human_size(n: u64) -> String {
    if n < 1000 {
        return format!("{n} bytes");
    }
    let units = ["KB", "MB", "GB", "TB", "PB", "EB"];
    let mut v = n as f64 / 1000.0;
    let mut u = 0;
    while v >= 1000.0 && u + 1 < units.len() {
        v /= 1000.0;
        u += 1;
    }
    format!("{v:.1} {}", units[u])
}

/// The text of `bag-info.txt`: the given elements in order (checked against RFC 8493 §2.2.2:
/// a label is non-empty, has no `:`, CR or LF and no surrounding whitespace; a value has no CR
/// or LF, so a value never spans lines), then `Bagging-Date`, `Payload-Oxum` and `Bag-Size`
/// unless given. A given `Payload-Oxum` must equal the computed one. Lines are not folded.
fn bag_info_text(given: &[(String, String)], payload_bytes: u64, payload_files: u64, bag_bytes: u64, today: &str) -> Result<String> {
    let oxum = payload_oxum(payload_bytes, payload_files);
    let mut text = String::new();
    let has = |label: &str| given.iter().any(|(l, _)| l.eq_ignore_ascii_case(label));
    for (label, value) in given {
        let bad = |reason: &str| BagError::InvalidInfo { label: label.clone(), reason: reason.to_owned() };
        if label.is_empty() {
            return Err(bad("empty label"));
        }
        if label.contains([':', '\r', '\n']) {
            return Err(bad("a label cannot contain ':', CR or LF"));
        }
        if label.trim() != label {
            return Err(bad("a label cannot start or end with whitespace"));
        }
        if value.contains(['\r', '\n']) {
            return Err(bad("a value cannot contain CR or LF"));
        }
        if label.eq_ignore_ascii_case("Payload-Oxum") && value.trim() != oxum {
            return Err(bad(&format!("given as {value:?} but the payload is {oxum}")));
        }
        text.push_str(&format!("{label}: {value}\n"));
    }
    if !has("Bagging-Date") {
        text.push_str(&format!("Bagging-Date: {today}\n"));
    }
    if !has("Payload-Oxum") {
        text.push_str(&format!("Payload-Oxum: {oxum}\n"));
    }
    if !has("Bag-Size") {
        text.push_str(&format!("Bag-Size: {}\n", human_size(bag_bytes)));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(l, v)| (l.to_string(), v.to_string())).collect()
    }

    /// Compile-time check: an export can run on a spawned task (its futures are `Send`).
    #[allow(dead_code)]
    fn futures_are_send(w: &mut BagWriter, s: crate::store::ByteStream, src: &Path) {
        fn send<T: Send>(_: T) {}
        send(w.add_payload_stream("a", s, None));
        send(w.add_payload_file("b", src, None));
        send(w.add_payload_bytes("c", b"", None));
        send(w.add_tag_file("d", b""));
    }

    #[test]
    fn percent_encoding_touches_only_cr_lf_and_percent() {
        assert_eq!(encode_manifest_path("data/a b/é 证据.mp4"), "data/a b/é 证据.mp4");
        assert_eq!(encode_manifest_path("data/50%off\r\n.txt"), "data/50%25off%0D%0A.txt");
        // A literal "%0A" in a name must not read back as LF: its `%` is encoded.
        assert_eq!(encode_manifest_path("data/x%0Ay%25"), "data/x%250Ay%2525");
        assert_eq!(encode_manifest_path("+#?&=\t~"), "+#?&=\t~");
        assert_eq!(manifest_line("ab", "data/%"), "ab  data/%25\n");
    }

    #[test]
    fn bad_paths_are_rejected() {
        for p in ["", "/abs", "a/../b", "..", "a/..", "a//b", "a/", "./a", "a/./b", "a\0b"] {
            assert!(matches!(check_payload_path(p), Err(BagError::InvalidPath { .. })), "payload {p:?}");
            assert!(matches!(check_tag_path(p), Err(BagError::InvalidPath { .. })), "tag {p:?}");
        }
        for p in ["a", "a b/é.mp4", "50%off", "x..y", ".hidden", "line\nbreak", "bagit.txt", "data"] {
            check_payload_path(p).unwrap();
        }
        for p in [
            "bagit.txt",
            "BagIt.TXT",
            "bag-info.txt",
            "fetch.txt",
            "manifest-sha256.txt",
            "manifest-md5.txt",
            "tagmanifest-sha512.txt",
            "data",
            "data/x",
            "DATA/x",
            "bagit.txt/x",
        ] {
            let e = check_tag_path(p).unwrap_err();
            assert!(e.to_string().contains(&format!("{p:?}")), "{e}");
        }
        for p in ["VERIFY.txt", "custody/entries.jsonl", "keys/node-a.pem", "tokens/ab.tsr", "custody/manifest-sha256.txt", "database"] {
            check_tag_path(p).unwrap();
        }
    }

    #[test]
    fn bag_info_has_oxum_date_and_size_and_refuses_multiline_values() {
        let t = bag_info_text(&info(&[("Source-Organization", "PD"), ("External-Identifier", "case 1")]), 1005, 3, 2_500_000, "2024-05-06")
            .unwrap();
        assert_eq!(
            t,
            "Source-Organization: PD\nExternal-Identifier: case 1\nBagging-Date: 2024-05-06\nPayload-Oxum: 1005.3\nBag-Size: 2.5 MB\n"
        );
        assert_eq!(payload_oxum(0, 0), "0.0");
        // Given values win and are not repeated; a given Payload-Oxum must be right.
        let t =
            bag_info_text(&info(&[("bagging-date", "2020-01-01"), ("Payload-Oxum", "7.2"), ("Bag-Size", "1 GB")]), 7, 2, 9, "x").unwrap();
        assert_eq!(t, "bagging-date: 2020-01-01\nPayload-Oxum: 7.2\nBag-Size: 1 GB\n");
        let e = bag_info_text(&info(&[("Payload-Oxum", "8.2")]), 7, 2, 9, "x").unwrap_err();
        assert!(e.to_string().contains("7.2"), "{e}");
        for (l, v) in [("A", "x\ny"), ("A", "x\r"), ("A:B", "x"), ("", "x"), (" A", "x")] {
            assert!(matches!(bag_info_text(&info(&[(l, v)]), 0, 0, 0, "x"), Err(BagError::InvalidInfo { .. })), "{l:?} {v:?}");
        }
        assert_eq!(human_size(999), "999 bytes");
        assert_eq!(human_size(42_600_000_000), "42.6 GB");
    }

    #[tokio::test]
    async fn payload_oxum_of_a_finished_bag() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("bag");
        let mut w = BagWriter::create(&out, 1005).await.unwrap();
        w.add_payload_bytes("empty", b"", None).await.unwrap();
        w.add_payload_bytes("five", b"12345", None).await.unwrap();
        let f = w.add_payload_bytes("sub dir/k", &[7u8; 1000], None).await.unwrap();
        assert_eq!(f, Fixity { sha256: hex::encode(Sha256::digest([7u8; 1000])), bytes: 1000 });
        w.add_tag_file("custody/entries.jsonl", b"{}\n").await.unwrap();
        let s = w.finish(&[]).await.unwrap();
        assert_eq!((s.payload_files, s.payload_bytes), (3, 1005));
        assert_eq!(s.payload, ["data/empty", "data/five", "data/sub dir/k"]);
        assert_eq!(s.tag_files, ["bag-info.txt", "bagit.txt", "custody/entries.jsonl", "manifest-sha256.txt", "tagmanifest-sha256.txt"]);
        let bag_info = fs::read_to_string(out.join("bag-info.txt")).unwrap();
        assert!(bag_info.contains("Payload-Oxum: 1005.3\n"), "{bag_info}");
        assert!(bag_info.contains(&format!("Bagging-Date: {}\n", chrono::Utc::now().format("%Y-%m-%d"))), "{bag_info}");
        assert_eq!(fs::read_to_string(out.join("bagit.txt")).unwrap(), "BagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\n");
        let manifest = fs::read_to_string(out.join(MANIFEST)).unwrap();
        let paths: Vec<&str> = manifest.lines().map(|l| l.split_once("  ").unwrap().1).collect();
        assert_eq!(paths, ["data/empty", "data/five", "data/sub dir/k"]);
        let tm = fs::read(out.join(TAGMANIFEST)).unwrap();
        assert_eq!(s.tagmanifest_sha256, hex::encode(Sha256::digest(&tm)));
        let tm = String::from_utf8(tm).unwrap();
        assert!(!tm.contains(TAGMANIFEST) && tm.contains(MANIFEST) && tm.contains("  custody/entries.jsonl\n"), "{tm}");
        assert!(!partial_path(&out).unwrap().exists());
    }

    #[tokio::test]
    async fn refuses_an_existing_out_and_removes_a_stale_partial() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("bag");
        fs::create_dir(&out).unwrap();
        let e = BagWriter::create(&out, 0).await.unwrap_err();
        assert!(matches!(&e, BagError::Exists { path } if *path == out), "{e}");
        assert!(e.to_string().contains(&out.display().to_string()), "{e}");
        let file = dir.path().join("file");
        fs::write(&file, b"x").unwrap();
        assert!(matches!(BagWriter::create(&file, 0).await, Err(BagError::Exists { .. })));
        let link = dir.path().join("dangling");
        std::os::unix::fs::symlink(dir.path().join("nowhere"), &link).unwrap();
        assert!(matches!(BagWriter::create(&link, 0).await, Err(BagError::Exists { .. })));
        assert!(!dir.path().join("bag.partial").exists());

        // A crashed run's partial is replaced.
        let out = dir.path().join("case-7");
        let stale = dir.path().join("case-7.partial");
        fs::create_dir_all(stale.join("data/old")).unwrap();
        fs::write(stale.join("data/old/junk"), b"junk").unwrap();
        let w = BagWriter::create(&out, 0).await.unwrap();
        assert_eq!(w.partial_path(), stale);
        assert!(!stale.join("data/old").exists() && stale.join("data").is_dir());
        // Something appearing at `out` meanwhile is not replaced by finish.
        fs::create_dir(&out).unwrap();
        assert!(matches!(w.finish(&[]).await, Err(BagError::Exists { .. })));
        assert!(stale.join("bagit.txt").exists(), "the partial stays");
    }

    #[tokio::test]
    async fn no_space_for_an_absurd_payload() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("bag");
        let e = BagWriter::create(&out, u64::MAX / 2).await.unwrap_err();
        match &e {
            BagError::NoSpace { path, needed, available } => {
                assert_eq!(*path, out);
                assert_eq!(*needed, u64::MAX / 2 + SPACE_MARGIN);
                assert!(available < needed);
            }
            other => panic!("expected NoSpace, got {other}"),
        }
        assert!(e.to_string().contains(&out.display().to_string()), "{e}");
        assert!(!dir.path().join("bag.partial").exists());
    }

    #[tokio::test]
    async fn failed_adds_leave_no_file_and_the_writer_usable() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("bag");
        let mut w = BagWriter::create(&out, 0).await.unwrap();
        let partial = w.partial_path().to_owned();

        // Accepts the object store's stream type.
        let s: crate::store::ByteStream =
            Box::pin(futures_util::stream::iter([Ok(Bytes::from_static(b"ab")), Ok(Bytes::from_static(b"c"))]));
        let good = hex::encode(Sha256::digest(b"abc"));
        assert_eq!(w.add_payload_stream("s", s, Some(&good.to_uppercase())).await.unwrap().bytes, 3);

        let e = w.add_payload_bytes("m", b"abd", Some(&good)).await.unwrap_err();
        assert!(matches!(&e, BagError::Mismatch { path, expected, .. } if path == "data/m" && *expected == good), "{e}");
        assert!(!partial.join("data/m").exists());

        let broken = futures_util::stream::iter([Ok(Bytes::from_static(b"x")), Err(io::Error::other("connection reset"))]);
        let e = w.add_payload_stream("e", broken, None).await.unwrap_err();
        assert!(e.to_string().contains("connection reset") && e.to_string().contains("data/e"), "{e}");
        assert!(!partial.join("data/e").exists());

        let e = w.add_payload_file("f", &dir.path().join("missing"), None).await.unwrap_err();
        assert!(e.to_string().contains("missing"), "{e}");
        assert!(!partial.join("data/f").exists());

        assert!(matches!(w.add_payload_bytes("s", b"", None).await, Err(BagError::Duplicate { path }) if path == "data/s"));
        assert!(matches!(w.add_tag_file("data/x", b"").await, Err(BagError::InvalidPath { .. })));
        assert!(matches!(w.add_tag_file("bag-info.txt", b"").await, Err(BagError::InvalidPath { .. })));
        assert!(matches!(w.add_payload_bytes("../x", b"", None).await, Err(BagError::InvalidPath { .. })));
        w.add_tag_file("VERIFY.txt", b"v").await.unwrap();
        assert!(matches!(w.add_tag_file("VERIFY.txt", b"v").await, Err(BagError::Duplicate { .. })));
        // A file where a directory is needed, or the reverse: refused by the OS, nothing to
        // clean up, the recorded files stay and the writer goes on.
        let e = w.add_tag_file("VERIFY.txt/x", b"").await.unwrap_err();
        assert!(matches!(&e, BagError::Io { path, .. } if path.ends_with("VERIFY.txt")), "{e}");
        w.add_tag_file("keys/a.pem", b"k").await.unwrap();
        assert!(matches!(w.add_tag_file("keys", b"").await, Err(BagError::Io { .. })));
        assert!(partial.join("VERIFY.txt").is_file() && partial.join("keys/a.pem").is_file());
        w.add_payload_bytes("after", b"ok", None).await.unwrap();

        // A dropped (cancelled) add poisons the writer: its file may be in no manifest.
        let pending = futures_util::stream::pending::<io::Result<Bytes>>();
        let started = tokio::time::timeout(std::time::Duration::from_millis(50), w.add_payload_stream("p", pending, None)).await;
        assert!(started.is_err());
        let e = w.add_payload_bytes("q", b"", None).await.unwrap_err();
        assert!(matches!(e, BagError::Broken { .. }) && e.to_string().contains("data/p"), "{e}");
        assert!(matches!(w.finish(&[]).await, Err(BagError::Broken { .. })));
        assert!(partial.exists() && !out.exists());
    }
}
