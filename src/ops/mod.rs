//! Operations commands: `evidenced reconcile` (the object store against the catalog),
//! `evidenced backup` (a consistent copy of a SQLite catalog and the node key) and, in
//! [`rebuild`], `evidenced rebuild` (a lost catalog restored from the store alone).
//!
//! **Reconcile** lists the store under `originals/` and `derived/` first and reads the catalog
//! second, so an upload committed in between is seen as referenced (never as an orphan), and
//! re-checks every object it is about to call missing with `size`, so a recording committed in
//! between is not reported missing either. Referenced are the objects of every recording
//! (destroyed ones' too, should any remain), their time-stamp tokens, and the checkpoints;
//! `checkpoints/` and `keys/` are never orphans. An orphan is classified from the journal:
//! under `originals/<node>/<sighting>/` it is *in progress* while that sighting is still
//! `discovered` (an ingest between upload and commit: never deleted), and *safe* when there is
//! no such sighting or it ended without this object (a crash before the commit was recorded, a
//! duplicate whose redundant copy is still there); under `derived/<recording>/` it is in
//! progress while the recording's media (or the clip) is pending. `--clean` deletes safe
//! orphans older than an hour, and only where the store tells an object's age (the `fs` store:
//! its mtime); nothing referenced is ever deleted, and missing objects are only reported.
//!
//! **Backup** uses `VACUUM INTO` through a plain SQLite pool (a snapshot taken in one read
//! transaction while the daemon keeps running), copies the node key with mode 0600, and writes
//! `backup.json` with the chain head contained in the copy and the SHA-256 of each file. It is
//! built in `DIR.partial` and renamed. PostgreSQL catalogs are backed up with `pg_dump`
//! (the command is printed).

pub mod rebuild;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::catalog::custody::subject;
use crate::catalog::{Catalog, CatalogError, Recording, sighting_state};
use crate::config::{Config, StoreKind};
use crate::store::{ObjectStore, StoreError};

/// Prefixes whose objects must each be referenced by a catalog row.
pub const RECONCILED_PREFIXES: [&str; 2] = ["originals/", "derived/"];

/// How old a safe orphan must be before `--clean` deletes it.
pub const CLEAN_MIN_AGE: Duration = Duration::from_secs(3600);

/// What may be done with an orphan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OrphanClass {
    /// Nothing will ever reference it: deletable (when old enough).
    Safe,
    /// Work still in progress will reference it (an ingest or a derivation): keep.
    InProgress,
    /// Not a layout reconcile understands, or inside a live recording's directory: keep and look.
    Unknown,
}

/// A store object no catalog row references.
#[derive(Debug, Clone, Serialize)]
pub struct Orphan {
    /// Store key.
    pub key: String,
    /// Seconds since it was last written, when the store can tell (`fs`).
    pub age_secs: Option<u64>,
    /// Whether it may be deleted.
    pub class: OrphanClass,
    /// Why.
    pub reason: String,
    /// Deleted by this run (`--clean`).
    pub deleted: bool,
}

/// A catalog row whose object is not in the store.
#[derive(Debug, Clone, Serialize)]
pub struct Missing {
    /// Store key.
    pub key: String,
    /// `original`, `manifest`, `proxy`, `poster`, `clip`, `token`, `checkpoint`, `signature`.
    pub what: String,
    /// The row: `recording <id>`, `checkpoint <id>`.
    pub owner: String,
}

/// The outcome of a reconciliation.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReconcileReport {
    /// True when nothing is missing (orphans are only a warning).
    pub ok: bool,
    /// Objects listed under `originals/` and `derived/`.
    pub store_objects: usize,
    /// Keys the catalog references.
    pub referenced: usize,
    /// Objects no row references.
    pub orphans: Vec<Orphan>,
    /// Rows whose objects are not in the store.
    pub missing: Vec<Missing>,
    /// Unfinished uploads the store holds (`fs`: temporary files), when it can count them.
    pub stray_uploads: Option<usize>,
    /// Orphans deleted by `--clean`.
    pub deleted: usize,
    /// Things the operator should know (limits of this store, why nothing was cleaned, ...).
    pub notes: Vec<String>,
}

/// Compares the store with the catalog.
pub struct Reconciler {
    /// The catalog.
    pub catalog: Arc<dyn Catalog>,
    /// The store.
    pub store: Arc<dyn ObjectStore>,
    /// The `fs` store's temporary upload directory (`None` for S3).
    pub upload_dir: Option<PathBuf>,
    /// Delete safe orphans older than `min_age`.
    pub clean: bool,
    /// See [`CLEAN_MIN_AGE`].
    pub min_age: Duration,
}

fn not_found(e: &CatalogError) -> bool {
    matches!(e, CatalogError::NotFound(_))
}

impl Reconciler {
    /// Runs the comparison (and the clean-up when asked).
    pub async fn run(&self) -> anyhow::Result<ReconcileReport> {
        let mut r = ReconcileReport::default();
        // The store first, the catalog second (see the module docs).
        let mut listed = BTreeSet::new();
        for p in RECONCILED_PREFIXES {
            listed.extend(self.store.list(p).await.with_context(|| format!("listing {p} in {}", self.store.describe()))?);
        }
        let present_checkpoints: HashSet<String> = self.store.list(crate::custody::checkpoint::PREFIX).await?.into_iter().collect();
        r.store_objects = listed.len();

        let mut referenced: HashSet<String> = HashSet::new();
        let mut expected: Vec<(String, String, String)> = Vec::new();
        let mut live: HashSet<String> = HashSet::new();
        let mut add = |rec: &Recording, objs: Vec<crate::custody::verify::StoredObject>, referenced: &mut HashSet<String>| {
            let is_live = rec.state != "destroyed";
            for o in objs {
                if is_live {
                    expected.push((o.key.clone(), o.what.to_string(), format!("recording {}", rec.id)));
                }
                referenced.insert(o.key);
            }
        };
        for id in self.catalog.fixity_due(i64::MAX).await? {
            let rec = match self.catalog.recording(&id).await {
                Ok(rec) => rec,
                Err(e) if not_found(&e) => continue,
                Err(e) => return Err(e.into()),
            };
            let objs = crate::custody::verify::objects_of(&*self.catalog, &rec).await?;
            live.insert(id);
            add(&rec, objs, &mut referenced);
        }
        // Destroyed recordings' keys count as referenced should any remain (e.g. still locked).
        for d in self.catalog.destructions(None, i64::MAX).await? {
            if live.contains(&d.recording_id) {
                continue;
            }
            let rec = match self.catalog.recording(&d.recording_id).await {
                Ok(rec) => rec,
                Err(e) if not_found(&e) => continue,
                Err(e) => return Err(e.into()),
            };
            let objs = crate::custody::verify::objects_of(&*self.catalog, &rec).await?;
            if rec.state != "destroyed" {
                live.insert(rec.id.clone());
            }
            add(&rec, objs, &mut referenced);
        }
        let mut expected_cp = Vec::new();
        for t in self.catalog.timestamps(None).await? {
            let wanted = t.subject != subject::RECORDING || live.contains(&t.subject_id);
            if wanted {
                let owner = format!("{} {}", t.subject, t.subject_id);
                if t.subject == subject::RECORDING {
                    expected.push((t.token_key.clone(), "token".into(), owner));
                } else {
                    expected_cp.push((t.token_key.clone(), "token".into(), owner));
                }
            }
            referenced.insert(t.token_key);
        }
        for c in self.catalog.checkpoints().await? {
            let sig = crate::custody::checkpoint::sig_key(&c.object_key);
            expected_cp.push((c.object_key.clone(), "checkpoint".into(), format!("checkpoint {}", c.id)));
            expected_cp.push((sig, "signature".into(), format!("checkpoint {}", c.id)));
        }
        r.referenced = referenced.len();

        // Orphans.
        for key in listed.iter().filter(|k| !referenced.contains(*k)) {
            let (class, reason) = self.classify(key).await?;
            r.orphans.push(Orphan { key: key.clone(), age_secs: self.age(key), class, reason, deleted: false });
        }

        // Missing: not listed and still absent now.
        let candidates = expected
            .into_iter()
            .filter(|e| !listed.contains(&e.0))
            .chain(expected_cp.into_iter().filter(|e| !present_checkpoints.contains(&e.0) && !listed.contains(&e.0)));
        for (key, what, owner) in candidates {
            match self.store.size(&key).await {
                Ok(_) => {}
                Err(StoreError::NotFound(_)) => r.missing.push(Missing { key, what, owner }),
                Err(e) => return Err(anyhow::Error::new(e).context(format!("checking {key}"))),
            }
        }
        r.missing.sort_by(|a, b| a.key.cmp(&b.key));
        r.missing.dedup_by(|a, b| a.key == b.key);

        // Stray uploads.
        match &self.upload_dir {
            Some(dir) => {
                let n = std::fs::read_dir(dir).map(|rd| rd.flatten().count()).unwrap_or(0);
                r.stray_uploads = Some(n);
                if n > 0 {
                    r.notes.push(format!(
                        "{n} temporary upload file(s) in {}: uploads in flight, or left by a crash (the daemon's start-up sweep removes those older than 1 h)",
                        dir.display()
                    ));
                }
            }
            None => r.notes.push(
                "unfinished multipart uploads are not counted on this store (listing them is left to the daemon's start-up sweep, \
                 which aborts each node's stray uploads): restart the daemon of each node to sweep them"
                    .into(),
            ),
        }

        if self.clean {
            self.clean_up(&mut r, live.len()).await;
        }
        r.ok = r.missing.is_empty();
        Ok(r)
    }

    async fn clean_up(&self, r: &mut ReconcileReport, live: usize) {
        let safe = r.orphans.iter().filter(|o| o.class == OrphanClass::Safe).count();
        if safe == 0 {
            return;
        }
        // A wrong or emptied catalog would make everything look orphaned: refuse to act on it.
        if live == 0 || (safe > 10 && safe > r.store_objects - safe) {
            r.notes.push(format!(
                "--clean refused: {safe} of {} objects look orphaned ({live} live recordings in the catalog); \
                 is this the catalog the store belongs to?",
                r.store_objects
            ));
            return;
        }
        if r.orphans.iter().any(|o| o.class == OrphanClass::Safe && o.age_secs.is_none()) {
            r.notes.push("this store does not tell objects' ages: --clean deletes no orphan here; check and delete them by hand".into());
        }
        let min = self.min_age.as_secs();
        // An unknown age (S3) is never old enough.
        for o in r.orphans.iter_mut().filter(|o| o.class == OrphanClass::Safe && o.age_secs.is_some_and(|a| a >= min)) {
            match self.store.delete(&o.key).await {
                Ok(()) | Err(StoreError::NotFound(_)) => {
                    tracing::info!(key = %o.key, reason = %o.reason, "reconcile: deleted orphan");
                    o.deleted = true;
                    r.deleted += 1;
                }
                Err(e) => r.notes.push(format!("cannot delete orphan {}: {e}", o.key)),
            }
        }
    }

    /// Seconds since the object was written, when the store has a local file for it.
    fn age(&self, key: &str) -> Option<u64> {
        let p = self.store.local_path(key)?;
        let m = std::fs::metadata(p).ok()?.modified().ok()?;
        Some(SystemTime::now().duration_since(m).unwrap_or_default().as_secs())
    }

    async fn classify(&self, key: &str) -> anyhow::Result<(OrphanClass, String)> {
        let parts: Vec<&str> = key.split('/').collect();
        match parts.as_slice() {
            ["originals", _node, id, _file] => {
                // The sighting id is also the id of the recording it archives.
                match self.catalog.recording(id).await {
                    Ok(rec) if rec.state != "destroyed" => {
                        return Ok((OrphanClass::Unknown, format!("in the directory of recording {id} but not named by the catalog")));
                    }
                    Ok(_) => {}
                    Err(e) if not_found(&e) => {}
                    Err(e) => return Err(e.into()),
                }
                match self.catalog.sighting(id).await {
                    Ok(s) if s.state == sighting_state::DISCOVERED => {
                        Ok((OrphanClass::InProgress, format!("sighting {id} is still being ingested (discovered)")))
                    }
                    Ok(s) => Ok((OrphanClass::Safe, format!("sighting {id} ended as {} without this object", s.state))),
                    Err(e) if not_found(&e) => Ok((OrphanClass::Safe, format!("no sighting {id} (upload never committed)"))),
                    Err(e) => Err(e.into()),
                }
            }
            ["derived", rec_id, rest @ ..] if !rest.is_empty() => {
                let rec = match self.catalog.recording(rec_id).await {
                    Ok(rec) => rec,
                    Err(e) if not_found(&e) => return Ok((OrphanClass::Safe, format!("no recording {rec_id}"))),
                    Err(e) => return Err(e.into()),
                };
                if rec.state == "destroyed" {
                    return Ok((OrphanClass::Safe, format!("recording {rec_id} is destroyed")));
                }
                if let ["clips", file] = rest {
                    let clip_id = file.rsplit_once('.').map(|(c, _)| c).unwrap_or(file);
                    return match self.catalog.clip(clip_id).await {
                        Ok(c) if c.state == "pending" => Ok((OrphanClass::InProgress, format!("clip {clip_id} is still being made"))),
                        Ok(c) => Ok((OrphanClass::Safe, format!("clip {clip_id} ended as {} without this object", c.state))),
                        Err(e) if not_found(&e) => Ok((OrphanClass::Safe, format!("no clip {clip_id}"))),
                        Err(e) => Err(e.into()),
                    };
                }
                if rec.media_state == "pending" {
                    return Ok((OrphanClass::InProgress, format!("media of recording {rec_id} are still being derived")));
                }
                Ok((OrphanClass::Safe, format!("media of recording {rec_id} ended as {} without this object", rec.media_state)))
            }
            _ => Ok((OrphanClass::Unknown, "not a key layout reconcile knows".into())),
        }
    }
}

fn fmt_age(secs: u64) -> String {
    humantime::format_duration(Duration::from_secs(secs)).to_string()
}

/// `evidenced reconcile [--json] [--clean]`: exit 0 when nothing is missing, 1 when something is.
pub async fn reconcile_cmd(cfg: &Config, json: bool, clean: bool) -> anyhow::Result<ExitCode> {
    let catalog = crate::app::open_catalog(cfg).await?;
    let store = crate::app::open_store(cfg).await?;
    let upload_dir = match cfg.store.kind {
        StoreKind::Fs => cfg.store.path.as_ref().map(|p| p.join(".tmp")),
        StoreKind::S3 => None,
    };
    let r = Reconciler { catalog, store, upload_dir, clean, min_age: CLEAN_MIN_AGE }.run().await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        for m in &r.missing {
            println!("missing {}: {} of {}", m.key, m.what, m.owner);
        }
        for o in &r.orphans {
            let age = o.age_secs.map(|a| format!(", age {}", fmt_age(a))).unwrap_or_default();
            let class = match (o.class, o.deleted) {
                (_, true) => "deleted",
                (OrphanClass::Safe, false) => "safe to delete",
                (OrphanClass::InProgress, false) => "in progress, kept",
                (OrphanClass::Unknown, false) => "unknown, kept",
            };
            println!("orphan {} ({class}{age}): {}", o.key, o.reason);
        }
        for n in &r.notes {
            eprintln!("note: {n}");
        }
        eprintln!(
            "{} store objects, {} referenced keys: {} missing, {} orphan(s), {} deleted",
            r.store_objects,
            r.referenced,
            r.missing.len(),
            r.orphans.len(),
            r.deleted
        );
    }
    Ok(if r.ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

// ---------------------------------------------------------------- backup

/// One copied file in `backup.json`.
#[derive(Debug, Clone, Serialize)]
pub struct BackupFile {
    /// Hex SHA-256 of the copy.
    pub sha256: String,
    /// Bytes.
    pub size: u64,
}

/// `backup.json`.
#[derive(Debug, Clone, Serialize)]
pub struct BackupManifest {
    /// When the backup was made, RFC 3339.
    pub created_at: String,
    /// The node that made it.
    pub node: String,
    /// `sqlite`.
    pub catalog: String,
    /// The newest custody entry in the copy: `{seq, hash}` (null for an empty chain).
    pub chain_head: Option<serde_json::Value>,
    /// Custody entries in the copy.
    pub custody_events: i64,
    /// Copied files (`catalog.db`, `node-key.pem`) by name.
    pub files: BTreeMap<String, BackupFile>,
}

/// The `pg_dump` command that backs up a PostgreSQL catalog at `url` (no password in it).
pub fn pg_dump_hint(url: &str, out: &Path) -> String {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let rest = rest.split(['?', '#']).next().unwrap_or("");
    let (creds, hostpart) = match rest.rsplit_once('@') {
        Some((c, h)) => (Some(c), h),
        None => (None, rest),
    };
    let user = creds.map(|c| c.split(':').next().unwrap_or(c)).filter(|u| !u.is_empty());
    let (hostport, db) = hostpart.split_once('/').unwrap_or((hostpart, ""));
    let (host, port) = match hostport.rsplit_once(':').filter(|(_, p)| p.chars().all(|c| c.is_ascii_digit())) {
        Some((h, p)) => (h, Some(p)),
        None => (hostport, None),
    };
    let mut cmd = String::from("pg_dump --format=custom --no-password");
    if !host.is_empty() {
        cmd.push_str(&format!(" --host={host}"));
    }
    if let Some(p) = port {
        cmd.push_str(&format!(" --port={p}"));
    }
    if let Some(u) = user {
        cmd.push_str(&format!(" --username={u}"));
    }
    if !db.is_empty() {
        cmd.push_str(&format!(" --dbname={db}"));
    }
    cmd.push_str(&format!(" --file={}", out.join("catalog.pgdump").display()));
    cmd
}

fn sha256_of(p: &Path) -> anyhow::Result<BackupFile> {
    let mut f = std::fs::File::open(p).with_context(|| format!("reading {}", p.display()))?;
    let mut h = Sha256::new();
    let size = std::io::copy(&mut f, &mut h)?;
    Ok(BackupFile { sha256: hex::encode(h.finalize()), size })
}

fn fsync(p: &Path) -> std::io::Result<()> {
    std::fs::File::open(p)?.sync_all()
}

/// Makes the backup of a SQLite catalog into `out` (which must not exist).
pub async fn backup_sqlite(cfg: &Config, out: &Path) -> anyhow::Result<BackupManifest> {
    use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};

    anyhow::ensure!(!out.exists(), "refusing to back up into {}: it exists (choose a new directory)", out.display());
    let partial = PathBuf::from(format!("{}.partial", out.display()));
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    std::fs::create_dir(&partial)
        .with_context(|| format!("creating {} (a backup may be running, or a crashed one left it: remove it)", partial.display()))?;
    let db = partial.join("catalog.db");

    // The snapshot: one read transaction of the live database, whatever the daemon does meanwhile.
    let opts = SqliteConnectOptions::from_str(&cfg.catalog.url)?.create_if_missing(false).busy_timeout(Duration::from_secs(30));
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(opts)
        .await
        .with_context(|| format!("opening the catalog {}", crate::catalog::redact(&cfg.catalog.url)))?;
    let target = db.to_str().context("backup path is not UTF-8")?.replace('\'', "''");
    sqlx::query(&format!("VACUUM INTO '{target}'")).execute(&pool).await.context("VACUUM INTO")?;
    pool.close().await;

    // What the copy holds, read without writing to it (immutable: no journal, no lock files).
    let copy = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(SqliteConnectOptions::new().filename(&db).read_only(true).immutable(true))
        .await
        .context("opening the copy")?;
    let check: (String,) = sqlx::query_as("PRAGMA quick_check").fetch_one(&copy).await?;
    anyhow::ensure!(check.0 == "ok", "the copy fails SQLite's quick_check: {}", check.0);
    let head: Option<(i64, String)> =
        sqlx::query_as("SELECT seq, hash FROM custody_events ORDER BY seq DESC LIMIT 1").fetch_optional(&copy).await?;
    let (events,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM custody_events").fetch_one(&copy).await?;
    copy.close().await;
    fsync(&db)?;

    let mut files = BTreeMap::new();
    files.insert("catalog.db".to_string(), sha256_of(&db)?);
    let key_file = cfg.key_file();
    if key_file.exists() {
        use std::os::unix::fs::OpenOptionsExt;
        let bytes = std::fs::read(&key_file).with_context(|| format!("reading the node key {}", key_file.display()))?;
        let dest = partial.join("node-key.pem");
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&dest)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        files.insert("node-key.pem".to_string(), sha256_of(&dest)?);
    } else {
        tracing::warn!(key_file = %key_file.display(), "no node key to back up (none was created yet)");
    }
    let manifest = BackupManifest {
        created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        node: cfg.node.id.clone(),
        catalog: "sqlite".into(),
        chain_head: head.map(|(seq, hash)| serde_json::json!({"seq": seq, "hash": hash})),
        custody_events: events,
        files,
    };
    let mpath = partial.join("backup.json");
    std::fs::write(&mpath, serde_json::to_vec_pretty(&manifest)?)?;
    fsync(&mpath)?;
    fsync(&partial)?;
    std::fs::rename(&partial, out).with_context(|| format!("renaming {} to {}", partial.display(), out.display()))?;
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        fsync(parent)?;
    }
    Ok(manifest)
}

/// `evidenced backup --out DIR`: 0 done; 2 refused (DIR exists, a PostgreSQL catalog) or failed.
pub async fn backup_cmd(cfg: &Config, out: &Path) -> anyhow::Result<ExitCode> {
    if !cfg.catalog.url.starts_with("sqlite:") {
        eprintln!(
            "evidenced: backup copies SQLite catalogs only; this catalog is PostgreSQL. Back it up with\n  {}\n\
             (the password from ~/.pgpass or PGPASSWORD; restore with pg_restore --dbname=...), and copy the node key {} (mode 0600) beside it.",
            pg_dump_hint(&cfg.catalog.url, out),
            cfg.key_file().display()
        );
        return Ok(ExitCode::from(2));
    }
    let m = backup_sqlite(cfg, out).await?;
    let head = m
        .chain_head
        .as_ref()
        .map(|h| format!("custody entry {} ({})", h["seq"], h["hash"].as_str().unwrap_or("")))
        .unwrap_or("an empty chain".into());
    println!(
        "backed up the catalog ({} custody entries, up to {head}) and {} file(s) -> {}",
        m.custody_events,
        m.files.len(),
        out.display()
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pg_dump_hint_has_no_password() {
        let h = pg_dump_hint("postgres://app:s3cret@db.example:6432/evidence?sslmode=require", Path::new("/b"));
        assert_eq!(
            h,
            "pg_dump --format=custom --no-password --host=db.example --port=6432 --username=app --dbname=evidence --file=/b/catalog.pgdump"
        );
        let h = pg_dump_hint("postgresql://localhost/ev", Path::new("out"));
        assert!(h.contains("--host=localhost --dbname=ev") && !h.contains("--username"), "{h}");
    }
}
