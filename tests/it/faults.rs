//! Fault tests of one or two nodes, each bounded in time and ending with the same audit (what was
//! fed vs the docks, the catalog and the store; one valid custody chain; `evidenced verify`) and
//! one figures line. Full disks, for real: the archive (`fs` store) and the node's state
//! directory on small tmpfs mounts that fill up while a dock keeps receiving files, and a dock on
//! one whose copies fail until the daemon's releases make room. PostgreSQL
//! restarted (fast, and once stopped `immediate` for 10 s) under continuous ingest on two nodes.
//! A dock file truncated or rewritten while its upload is stalled mid-read. A node's wall clock
//! jumped two years ahead and then a day back (libfaketime) on a catalog shared with a node on a
//! correct clock. The whole store unreachable for a full minute during uploads. Ingest must fail
//! cleanly, wait, retry, and archive everything exactly once — lost 0, duplicated 0, `verify`
//! clean. Needs root (mount, `runuser -u postgres`); CI runs as root.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::harness::{
    ArchiveAudit, CutProxy, Daemon, DaemonSpec, Garage, PgCluster, StallProxy, audit_archive, files_under, garage_store_toml, sha256_file,
    tail, wait_for, write_random,
};

/// A tmpfs mounted at a directory, unmounted on drop.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(at).unwrap();
        let out = Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"]).arg(at).output().unwrap();
        assert!(out.status.success(), "mount tmpfs (the test needs root): {}", String::from_utf8_lossy(&out.stderr));
        Tmpfs(at.to_path_buf())
    }

    fn resize(&self, size: &str) {
        let out = Command::new("mount").args(["-o", &format!("remount,size={size}")]).arg(&self.0).output().unwrap();
        assert!(out.status.success(), "remount: {}", String::from_utf8_lossy(&out.stderr));
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[tokio::test]
async fn full_archive_and_state_disks_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let archive = Tmpfs::mount(&dir.path().join("archive"), "3m");
    let state = Tmpfs::mount(&dir.path().join("state"), "1m");
    let mut spec = DaemonSpec::station(dir.path());
    spec.docks = vec![("dock".into(), String::new())];
    let mut d = Daemon::configure(dir.path(), &spec);
    d.start().await;

    // 12 files of 700 KB: about four fit in the archive.
    let dock = d.dock("dock");
    let mut fed = BTreeMap::new();
    for i in 0..12u64 {
        let p = dock.join(format!("BWC9_P9_20260101120{i:03}_{i}.mp4"));
        write_random(&p, 700_000, 900 + i);
        fed.insert(sha256_file(&p), p.file_name().unwrap().to_string_lossy().into_owned());
    }
    // The disk fills: some are archived, the rest wait on the dock with their errors logged.
    wait_for("the archive to fill", Duration::from_secs(60), || async { d.log().contains("No space left on device").then_some(()) }).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let archived_while_full = d.recordings().await.len();
    let left_on_dock = files_under(&dock).len();
    assert!(archived_while_full < 12 && left_on_dock > 0, "{archived_while_full} archived, {left_on_dock} on the dock");
    assert_eq!(archived_while_full + left_on_dock, 12, "every file is either archived or still on the dock");
    assert!(d.alive(), "the daemon keeps running on a full disk");
    let readyz = d.get("/readyz").await;
    let _ = readyz.status(); // may say ok: the store answers; the disk is the problem

    // Space comes back: everything is archived exactly once and leaves the dock.
    archive.resize("64m");
    state.resize("16m");
    let recs = d.wait_recordings(12, Duration::from_secs(90)).await;
    wait_for("the dock to empty", Duration::from_secs(60), || async { files_under(&dock).is_empty().then_some(()) }).await;
    let got: BTreeMap<String, String> =
        recs.iter().map(|r| (r["sha256"].as_str().unwrap().to_string(), r["original_name"].as_str().unwrap().to_string())).collect();
    assert_eq!(recs.len(), 12, "duplicated: {}", recs.len() as i64 - 12);
    assert_eq!(got, fed, "lost or changed recordings");
    // No partial objects left in the store's temp directory once ingest settled.
    let tmp = dir.path().join("archive/.tmp");
    assert!(files_under(&tmp).is_empty(), "partial copies left in {}: {:?}", tmp.display(), files_under(&tmp));
    d.stop();
    let (c, out, err) = d.cli(&["verify"]);
    assert_eq!(c, 0, "verify: {out}{err}");
    println!("full disk: files fed 12, archived while full {archived_while_full}, lost 0, duplicated 0, verify discrepancies 0");
    drop((archive, state));
}

/// A dock on a small filesystem: the docking station's copies fail with ENOSPC until the daemon
/// archives and releases what is there, and it retries them (as a station copying off a camera
/// does). Everything gets through, once; the daemon never deletes a file it has not archived.
#[tokio::test]
async fn a_full_dock_drains_as_files_are_archived() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = DaemonSpec::station(dir.path());
    spec.docks = vec![("dock".into(), String::new())];
    let mut d = Daemon::configure(dir.path(), &spec);
    let dock_fs = Tmpfs::mount(&d.dock("dock"), "2m");
    d.start().await;
    let dock = d.dock("dock");
    let mut fed = BTreeMap::new();
    let (mut full, started) = (0u32, Instant::now());
    for i in 0..10u64 {
        let src = dir.path().join("camera.bin");
        write_random(&src, 700_000, 4000 + i);
        let data = std::fs::read(&src).unwrap();
        let name = format!("BWC8_P8_20260101130{i:03}_{i}.mp4");
        let part = dock.join(format!("{name}.part"));
        // Copy under a temporary name and rename when whole; on ENOSPC drop the partial copy and
        // try again once the daemon has made room.
        loop {
            match std::fs::write(&part, &data) {
                Ok(()) => break,
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => {
                    full += 1;
                    let _ = std::fs::remove_file(&part);
                    assert!(started.elapsed() < Duration::from_secs(90), "the dock never drained: {}", tail(&d.log(), 30));
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("writing {}: {e}", part.display()),
            }
        }
        std::fs::rename(&part, dock.join(&name)).unwrap();
        fed.insert(crate::harness::sha256_bytes(&data), name);
    }
    let recs = d.wait_recordings(10, Duration::from_secs(60)).await;
    wait_for("the dock to empty", Duration::from_secs(60), || async { files_under(&dock).is_empty().then_some(()) }).await;
    let got: BTreeMap<String, String> =
        recs.iter().map(|r| (r["sha256"].as_str().unwrap().to_string(), r["original_name"].as_str().unwrap().to_string())).collect();
    assert_eq!(recs.len(), 10, "duplicated: {}", recs.len() as i64 - 10);
    assert_eq!(got, fed, "lost or changed recordings");
    assert!(full > 0, "the dock never filled up: the test proves nothing");
    assert!(d.alive());
    d.stop();
    let (c, out, err) = d.cli(&["verify"]);
    assert_eq!(c, 0, "verify: {out}{err}");
    println!(
        "full dock: files fed 10 through a 2 MiB dock, copies refused for lack of space {full}, lost 0, duplicated 0, verify discrepancies 0"
    );
    drop(dock_fs);
}

// ---------------------------------------------------------------- shared by the tests below

/// A thread putting files of unique random content (10 KB to `max_size`) on a dock until
/// stopped, each written under a `.part` name (ignored by the daemon) and renamed into place.
struct Feeder {
    stop: Arc<AtomicBool>,
    fed: Arc<Mutex<Vec<String>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Feeder {
    fn start(dock: PathBuf, tag: &str, seed: u64, pause: Duration, max_size: usize) -> Feeder {
        let (stop, fed) = (Arc::new(AtomicBool::new(false)), Arc::new(Mutex::new(Vec::new())));
        let (s, f, tag) = (stop.clone(), fed.clone(), tag.to_string());
        let thread = std::thread::spawn(move || {
            let mut n = 0u64;
            while !s.load(Ordering::Relaxed) {
                n += 1;
                let part = dock.join(format!("{tag}-{n:04}.mp4.part"));
                let size = 10_000 + (seed.wrapping_mul(n).wrapping_mul(2_654_435_761) as usize % max_size.saturating_sub(10_000).max(1));
                write_random(&part, size, seed.wrapping_mul(1000).wrapping_add(n));
                f.lock().unwrap().push(sha256_file(&part));
                std::fs::rename(&part, dock.join(format!("{tag}-{n:04}.mp4"))).unwrap();
                let until = Instant::now() + pause;
                while Instant::now() < until && !s.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        });
        Feeder { stop, fed, thread: Some(thread) }
    }

    fn count(&self) -> usize {
        self.fed.lock().unwrap().len()
    }

    /// Stops feeding; returns the SHA-256 of every file fed.
    fn finish(&mut self) -> Vec<String> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().expect("feeder thread panicked");
        }
        self.fed.lock().unwrap().clone()
    }
}

impl Drop for Feeder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Daemons sharing `catalog_url` and the store of `store_toml`, daemon `i` in `root/node<i>`
/// with one dock, `extra` added to every config.
fn nodes(root: &Path, n: usize, catalog_url: &str, store_toml: &str, extra: &str) -> Vec<Daemon> {
    (0..n)
        .map(|i| {
            let dir = root.join(format!("node{i}"));
            std::fs::create_dir_all(&dir).unwrap();
            let spec = DaemonSpec {
                catalog_url: catalog_url.into(),
                store_toml: store_toml.into(),
                docks: vec![("dock".into(), String::new())],
                extra: extra.into(),
            };
            Daemon::configure(&dir, &spec)
        })
        .collect()
}

/// SHA-256s in the catalog now (empty while it is unreachable).
async fn catalog_shas(catalog_url: &str) -> BTreeSet<String> {
    let Ok(mut c) = <sqlx::PgConnection as sqlx::Connection>::connect(catalog_url).await else { return BTreeSet::new() };
    sqlx::query_scalar::<_, String>("SELECT sha256 FROM recordings").fetch_all(&mut c).await.unwrap_or_default().into_iter().collect()
}

/// One number from a PostgreSQL catalog (`None` while it is unreachable).
async fn pg_count(catalog_url: &str, sql: &str) -> Option<i64> {
    let mut c = <sqlx::PgConnection as sqlx::Connection>::connect(catalog_url).await.ok()?;
    sqlx::query_scalar::<_, i64>(sql).fetch_one(&mut c).await.ok()
}

fn logs(daemons: &[Daemon], lines: usize) -> String {
    daemons.iter().enumerate().map(|(i, d)| format!("--- daemon {i} ({})\n{}\n", d.node_id(), tail(&d.log(), lines))).collect()
}

/// Waits until every dock is empty and every fed file is a recording whose media derivation has
/// ended (asked through the first daemon's API); returns how long that took.
async fn wait_drained(daemons: &[Daemon], fed: &BTreeSet<String>, timeout: Duration) -> Duration {
    let t = Instant::now();
    loop {
        let left: usize = daemons.iter().map(|d| files_under(&d.dock("dock")).len()).sum();
        let recs = daemons[0].recordings().await;
        let have: BTreeSet<&str> = recs.iter().filter_map(|r| r["sha256"].as_str()).collect();
        let missing = fed.iter().filter(|s| !have.contains(s.as_str())).count();
        let pending = recs.iter().filter(|r| r["media_state"] == "pending").count();
        if left == 0 && missing == 0 && pending == 0 {
            return t.elapsed();
        }
        assert!(
            t.elapsed() < timeout,
            "not drained after {timeout:?}: {left} files on docks, {missing} fed files not in the catalog, {pending} media pending\n{}",
            logs(daemons, 40)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Sum of a counter over the daemons' `/metrics`.
async fn metric_sum(daemons: &[Daemon], name: &str) -> f64 {
    let mut n = 0.0;
    for d in daemons {
        let m = d.get_as("/metrics", "").await.text().await.unwrap_or_default();
        n += m.lines().filter(|l| l.starts_with(name)).filter_map(|l| l.split_whitespace().last()?.parse::<f64>().ok()).sum::<f64>();
    }
    n
}

/// Stops every daemon (each must exit 0), audits docks vs catalog vs store and the custody
/// chain, runs `evidenced verify --json`; prints the figures line and asserts lost 0,
/// duplicated 0, verify clean. Returns the audit.
async fn final_checks(
    test: &str,
    faults: &str,
    daemons: &mut [Daemon],
    catalog_url: &str,
    store_toml: &str,
    fed: &BTreeSet<String>,
) -> ArchiveAudit {
    for (i, d) in daemons.iter_mut().enumerate() {
        assert_eq!(d.stop(), Some(0), "daemon {i} did not stop cleanly\n{}", tail(&d.log(), 40));
    }
    let docks: Vec<PathBuf> = daemons.iter().map(|d| d.dock("dock")).collect();
    let audit = audit_archive(catalog_url, store_toml, fed, &docks).await;
    let (code, out, err) = daemons[0].cli(&["verify", "--json"]);
    assert!(code == 0 || code == 1, "verify could not run (exit {code}): {err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("verify --json: {e}: {out}"));
    let discrepancies = v["discrepancies"].as_array().map_or(0, Vec::len);
    let duplicated = audit.duplicated.len() + audit.stray_originals.len();
    println!(
        "{test}: faults injected {faults}, files ingested {}, lost {}, duplicated {duplicated}, verify discrepancies {discrepancies}",
        audit.recordings,
        audit.lost.len()
    );
    println!(
        "  custody events {} ({}), duplicate sightings {}, left on docks {}, store objects missing {}, media pending {}",
        audit.custody_events,
        audit.chain_error.as_deref().unwrap_or("one valid chain"),
        audit.duplicate_sightings,
        audit.left_on_docks.len(),
        audit.missing_objects.len(),
        audit.media_pending
    );
    assert!(audit.is_clean(), "{test}: the archive does not match what was fed: {audit:#?}");
    assert_eq!(audit.media_pending, 0, "{test}: media derivation left pending");
    assert_eq!(code, 0, "{test}: verify found discrepancies: {:#}", v["discrepancies"]);
    audit
}

// ---------------------------------------------------------------- PostgreSQL restarted

/// Two nodes on a private PostgreSQL server ingest from their docks continuously while the
/// server is restarted (`pg_ctl restart -m fast`) four times and once stopped `-m immediate`
/// (no shutdown checkpoint: crash recovery) for 10 s: the daemons wait, retry and resume; every
/// fed file is archived exactly once and leaves its dock, every job finishes, the custody chain
/// is one valid chain and `verify` is clean.
#[tokio::test]
async fn postgres_restarted_under_load_loses_nothing() {
    let started = Instant::now();
    let pg = PgCluster::start().await;
    let catalog_url = pg.database().await;
    let root = tempfile::Builder::new().prefix("evd-pgrestart-").tempdir().unwrap();
    let store_toml = format!("[store]\nkind = \"fs\"\npath = \"{}/archive\"\n", root.path().display());
    let extra = "[custody]\ncheckpoint_interval = \"5s\"\n";
    let mut daemons = nodes(root.path(), 2, &catalog_url, &store_toml, extra);
    for d in daemons.iter_mut() {
        d.start().await;
    }
    let mut feeders: Vec<Feeder> = daemons
        .iter()
        .enumerate()
        .map(|(i, d)| Feeder::start(d.dock("dock"), &format!("n{i}"), 7 + i as u64, Duration::from_millis(250), 3 << 20))
        .collect();
    let mut faults = vec![];
    let mut archived_while_down = 0;
    for k in 0..5 {
        tokio::time::sleep(Duration::from_secs(5)).await;
        let before = catalog_shas(&catalog_url).await.len();
        let t = Instant::now();
        if k == 3 {
            pg.stop_server("immediate");
            tokio::time::sleep(Duration::from_secs(10)).await;
            pg.start_server();
            faults.push(format!("stop -m immediate, down {:.1?}", t.elapsed()));
        } else {
            pg.restart("fast");
            faults.push(format!("restart -m fast in {:.1?}", t.elapsed()));
        }
        pg.wait_ready().await;
        let after = catalog_shas(&catalog_url).await.len();
        archived_while_down += after.saturating_sub(before);
        for (i, d) in daemons.iter_mut().enumerate() {
            assert!(d.alive(), "daemon {i} died after {}\n{}", faults.last().unwrap(), tail(&d.log(), 60));
        }
        println!(
            "{:>5.1?}: {} (fed so far {})",
            started.elapsed(),
            faults.last().unwrap(),
            feeders.iter().map(Feeder::count).sum::<usize>()
        );
    }
    // The daemons caught up with the files fed meanwhile before feeding stops.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let fed: BTreeSet<String> = feeders.iter_mut().flat_map(Feeder::finish).collect();
    let drained = wait_drained(&daemons, &fed, Duration::from_secs(90)).await;
    let errors = metric_sum(&daemons, "evidenced_ingest_errors_total").await;
    let retried = pg_count(&catalog_url, "SELECT count(*) FROM sightings WHERE attempts > 0").await.unwrap_or(0);
    let audit = final_checks(
        "postgres_restarted_under_load_loses_nothing",
        &format!("{} ({})", faults.len(), faults.join("; ")),
        &mut daemons,
        &catalog_url,
        &store_toml,
        &fed,
    )
    .await;
    println!(
        "  files fed {}, ingest errors {errors} (all retried), sightings retried {retried}, recordings archived across the fault windows {archived_while_down}, \
         drained {drained:.1?} after feeding stopped, run time {:.1?}",
        fed.len(),
        started.elapsed()
    );
    assert_eq!(audit.recordings, fed.len());
    assert_eq!(audit.duplicate_sightings, 0, "a file docked once was sighted twice");
    drop(pg);
}

// ---------------------------------------------------------------- a dock file changing mid-read

/// Custody events of `kind` in a catalog.
async fn custody_kinds(catalog_url: &str, kind: &str) -> Vec<serde_json::Value> {
    let cat = evidenced::catalog::open(catalog_url, 1).await.unwrap();
    let mut out = vec![];
    let mut after = 0;
    loop {
        let page = cat.custody_events(None, after, 5000).await.unwrap();
        let Some(last) = page.last() else { break };
        after = last.body.seq;
        out.extend(page.iter().filter(|e| e.body.kind == kind).map(|e| e.body.details.clone()));
    }
    out
}

/// A file truncated, and another rewritten in place, after they settled but before the daemon
/// read them to the end: the upload is stalled by the gateway (ingest hashes and uploads in one
/// pass, so a stalled upload stalls the read), the file changed, the upload released. The pass
/// that saw the change is dropped — no recording, no object left (the single PUT's object
/// deleted, the multipart upload aborted), a `changed_during_ingest` custody event — and the
/// file's final content is archived later, exactly once, and only then leaves the dock.
#[tokio::test]
async fn file_changed_while_being_read_is_dropped_then_archived_once() {
    let started = Instant::now();
    let garage = Garage::start().await;
    let proxy = StallProxy::start(garage.port);
    let dir = tempfile::tempdir().unwrap();
    let prefix = format!("midread-{}/", uuid::Uuid::new_v4().simple());
    let store_toml = garage_store_toml(&prefix, &proxy.endpoint());
    let mut spec = DaemonSpec::station(dir.path());
    spec.store_toml = store_toml.clone();
    spec.docks = vec![("dock".into(), String::new())];
    let catalog_url = spec.catalog_url.clone();
    let mut d = Daemon::configure(dir.path(), &spec);
    d.start().await;
    let dock = d.dock("dock");
    let mut fed = BTreeSet::new();
    let mut dropped = vec![];

    // (1) A 2 MB file (one PUT, read whole before it is sent) rewritten in place with other bytes
    // of the same size while its PUT is held; (2) a 20 MB file (multipart: three 5 MiB parts read
    // and in flight, the fourth read only when a slot frees) truncated to 12 MB while its parts
    // are held, so the read of the fourth part hits the end of the file.
    let cases: [(&str, usize, &str); 2] =
        [("rewritten.mp4", 2 << 20, "/original?x-id=PutObject"), ("truncated.mp4", 20 << 20, "/original?x-id=UploadPart")];
    for (k, (name, size, request)) in cases.into_iter().enumerate() {
        proxy.arm(Some(request));
        let part = dock.join(format!("{name}.part"));
        write_random(&part, size, 500 + k as u64);
        dropped.push(sha256_file(&part));
        std::fs::rename(&part, dock.join(name)).unwrap();
        wait_for("the upload to stall at the gateway", Duration::from_secs(30), || async { (proxy.held() > 0).then_some(()) }).await;
        // Let every part that is going to be read get read and sent.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let path = dock.join(name);
        if k == 0 {
            let mut bytes = std::fs::read(&path).unwrap();
            bytes.iter_mut().take(4096).for_each(|b| *b ^= 0x5a);
            let mut f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
            std::io::Write::write_all(&mut f, &bytes[..4096]).unwrap();
            f.sync_all().unwrap();
        } else {
            let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
            f.set_len(12 << 20).unwrap();
            f.sync_all().unwrap();
        }
        let final_sha = sha256_file(&path);
        fed.insert(final_sha.clone());
        let held = proxy.held();
        proxy.release();
        println!("{:>5.1?}: {name}: changed while {held} request(s) were held; released", started.elapsed());
        // The changed pass is dropped and the final content archived.
        wait_for("the final content archived (media derived) and the dock emptied", Duration::from_secs(60), || {
            let (d, sha, dock) = (&d, final_sha.clone(), dock.clone());
            async move {
                let recs = d.recordings().await;
                let done = recs.iter().any(|r| r["sha256"] == sha.as_str()) && recs.iter().all(|r| r["media_state"] != "pending");
                (done && files_under(&dock).is_empty()).then_some(())
            }
        })
        .await;
    }
    let changed = custody_kinds(&catalog_url, "changed_during_ingest").await;
    let reasons: Vec<&str> = changed.iter().filter_map(|e| e["reason"].as_str()).collect();
    let log = d.log();
    let logged = log.lines().filter(|l| l.contains("file changed; it will be taken again once it settles")).count();
    let client = crate::harness::sdk_client(&garage).await;
    let uploads = client.list_multipart_uploads().bucket(crate::harness::GARAGE_BUCKET).prefix(&prefix).send().await.unwrap();
    let open_uploads = uploads.uploads().len();
    let recs = d.recordings().await;
    let audit = final_checks(
        "file_changed_while_being_read_is_dropped_then_archived_once",
        "2 (a file rewritten in place, another truncated, each while its upload was stalled mid-read)",
        std::slice::from_mut(&mut d),
        &catalog_url,
        &store_toml,
        &fed,
    )
    .await;
    println!(
        "  changed_during_ingest events {} ({reasons:?}), logged {logged}, open multipart uploads {open_uploads}, run time {:.1?}",
        changed.len(),
        started.elapsed()
    );
    assert_eq!(changed.len(), 2, "one changed_during_ingest event per changed file: {changed:?}");
    assert!(logged >= 2, "the changes are logged");
    assert_eq!(open_uploads, 0, "the multipart upload of the dropped pass was not aborted");
    for sha in &dropped {
        assert!(!recs.iter().any(|r| r["sha256"] == sha.as_str()), "the bytes before the change were archived");
    }
    assert_eq!(audit.recordings, 2);
    drop(proxy);
    drop(garage);
}

// ---------------------------------------------------------------- clock jumps

/// libfaketime preloaded into a daemon: its wall clock follows the offset in `file` (re-read
/// every second), its monotonic clock stays real so timers keep working.
fn faketime_env(file: &Path) -> Vec<(&'static str, String)> {
    let lib = ["/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1", "/usr/lib/aarch64-linux-gnu/faketime/libfaketimeMT.so.1"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("libfaketime is required (apt-get install faketime)");
    vec![
        ("LD_PRELOAD", lib.to_string()),
        ("FAKETIME_TIMESTAMP_FILE", file.display().to_string()),
        ("FAKETIME_CACHE_DURATION", "1".into()),
        ("FAKETIME_DONT_FAKE_MONOTONIC", "1".into()),
        ("DONT_FAKE_MONOTONIC", "1".into()),
    ]
}

/// The clock skew `GET /api/v1/nodes` shows for `node`.
async fn shown_skew(d: &Daemon, token: &str, node: &str) -> Option<f64> {
    let (status, v) = d.call(reqwest::Method::GET, "/api/v1/nodes", token, None).await;
    assert_eq!(status, 200, "{v}");
    v["items"].as_array()?.iter().find(|n| n["id"] == node)?["clock_skew_seconds"].as_f64()
}

/// `evidenced_clock_skew_seconds` of a daemon.
async fn skew_metric(d: &Daemon) -> Option<f64> {
    let m = d.get_as("/metrics", "").await.text().await.ok()?;
    m.lines().find(|l| l.starts_with("evidenced_clock_skew_seconds"))?.split_whitespace().last()?.parse().ok()
}

/// Time stamps the catalog holds outside `[from, to]` (micros): custody events, recordings'
/// archiving, sightings, nodes' heartbeats, destructions queued.
async fn times_outside(catalog_url: &str, from: i64, to: i64) -> Vec<String> {
    let mut c = <sqlx::PgConnection as sqlx::Connection>::connect(catalog_url).await.unwrap();
    let mut out = vec![];
    for (what, sql) in [
        ("custody event", "SELECT kind || ' #' || seq, at FROM custody_events"),
        ("recording archived_at", "SELECT original_name, archived_at FROM recordings"),
        ("sighting seen_at", "SELECT path_display, seen_at FROM sightings"),
        ("node heartbeat", "SELECT id, heartbeat_at FROM nodes"),
    ] {
        let rows: Vec<(String, i64)> = sqlx::query_as(sql).fetch_all(&mut c).await.unwrap();
        for (name, at) in rows.into_iter().filter(|(_, at)| *at < from || *at > to) {
            out.push(format!(
                "{what} {name}: {} ({:+.0} s off)",
                evidenced::custody::format_at(at),
                (at - to.min(at.max(from))) as f64 / 1e6
            ));
        }
    }
    out
}

/// Node B's wall clock (libfaketime) jumps two years ahead, then a day back, then back to the
/// truth, while node A on a correct clock shares its PostgreSQL catalog and both keep ingesting.
/// B dates everything by the catalog's clock (custody events, archiving, sightings, heartbeats stay
/// within the test's real time), shows its skew (`GET /api/v1/nodes`,
/// `evidenced_clock_skew_seconds`), logs an error and pauses retention and fixity while the skew
/// is beyond `node.max_clock_skew`: no recording is queued for destruction (a 1 s retention sweep
/// with the 184-day floor would queue every one of them on a clock two years ahead). Afterwards
/// lost 0, duplicated 0, `verify` clean.
#[tokio::test]
async fn clock_jumps_on_a_node_move_no_time_stamp_and_no_retention() {
    let started = Instant::now();
    let real_start = chrono::Utc::now().timestamp_micros() - 5_000_000;
    let pg = PgCluster::start().await;
    let catalog_url = pg.database().await;
    let root = tempfile::Builder::new().prefix("evd-clock-").tempdir().unwrap();
    let store_toml = format!("[store]\nkind = \"fs\"\npath = \"{}/archive\"\n", root.path().display());
    let extra = "[retention]\nsweep = \"1s\"\ngrace = \"1h\"\n[custody]\ncheckpoint_interval = \"5s\"\n";
    let mut daemons = nodes(root.path(), 2, &catalog_url, &store_toml, extra);
    for d in &daemons {
        let cfg = std::fs::read_to_string(&d.config).unwrap();
        std::fs::write(&d.config, cfg.replacen("[node]\n", "[node]\nheartbeat = \"1s\"\nmax_clock_skew = \"2m\"\n", 1)).unwrap();
    }
    let offset = root.path().join("faketime");
    std::fs::write(&offset, "+0\n").unwrap();
    daemons[0].start().await;
    daemons[1].start_with_env(&faketime_env(&offset)).await;
    let auditor = daemons[0].token_create(&["--name", "aud", "--role", "auditor"]);
    let b = daemons[1].node_id();
    let mut fed = BTreeSet::new();
    let mut n = 0u64;
    let mut feed = |d: &Daemon, count: usize| {
        for _ in 0..count {
            n += 1;
            let part = d.dock("dock").join(format!("c{n:03}.mp4.part"));
            write_random(&part, 50_000 + n as usize * 1000, 4000 + n);
            fed.insert(sha256_file(&part));
            std::fs::rename(&part, d.dock("dock").join(format!("c{n:03}.mp4"))).unwrap();
        }
    };
    feed(&daemons[0], 2);
    feed(&daemons[1], 3);
    let mut phases = vec![];
    for (label, file, lo, hi) in [
        ("+2 years", "+730d\n", 700.0 * 86_400.0, 760.0 * 86_400.0),
        ("-1 day", "-1d\n", -1.1 * 86_400.0, -0.9 * 86_400.0),
        ("correct", "+0\n", -5.0, 5.0),
    ] {
        std::fs::write(&offset, file).unwrap();
        let t = Instant::now();
        feed(&daemons[1], 3);
        feed(&daemons[0], 1);
        let shown = wait_for(&format!("node B's skew ({label}) in GET /api/v1/nodes"), Duration::from_secs(20), || {
            let (d, token, b) = (&daemons[0], auditor.clone(), b.clone());
            async move { shown_skew(d, &token, &b).await.filter(|s| (lo..=hi).contains(s)) }
        })
        .await;
        // Several retention sweeps on the skewed clock.
        tokio::time::sleep(Duration::from_secs(6)).await;
        let metric = skew_metric(&daemons[1]).await.unwrap_or_default();
        let queued = pg_count(&catalog_url, "SELECT count(*) FROM destructions").await.unwrap();
        let real_now = chrono::Utc::now().timestamp_micros() + 5_000_000;
        let off = times_outside(&catalog_url, real_start, real_now).await;
        println!(
            "{:>5.1?}: node B clock {label}: skew shown {shown:.0} s, metric {metric:.0} s, destructions queued {queued}, \
             time stamps out of range {} ({:.1?} in phase)",
            started.elapsed(),
            off.len(),
            t.elapsed()
        );
        assert!(daemons[1].alive(), "node B died after its clock moved {label}\n{}", tail(&daemons[1].log(), 40));
        assert!((lo..=hi).contains(&metric), "evidenced_clock_skew_seconds on node B: {metric}");
        assert_eq!(queued, 0, "recordings queued for destruction while node B's clock was {label}");
        assert!(off.is_empty(), "time stamps outside the test's real time with node B's clock {label}: {off:#?}");
        phases.push(format!("{label}: skew {shown:.0} s"));
    }
    let log_b = daemons[1].log();
    let paused = log_b.lines().filter(|l| l.contains("retention and fixity are paused")).count();
    let resumed = log_b.lines().filter(|l| l.contains("back within node.max_clock_skew")).count();
    assert!(paused > 0, "node B did not log the skew as an error\n{}", tail(&log_b, 40));
    assert!(resumed > 0, "node B did not resume retention once its clock was right\n{}", tail(&log_b, 40));
    let drained = wait_drained(&daemons, &fed, Duration::from_secs(60)).await;
    let audit = final_checks(
        "clock_jumps_on_a_node_move_no_time_stamp_and_no_retention",
        &format!("2 clock jumps on node B ({})", phases.join("; ")),
        &mut daemons,
        &catalog_url,
        &store_toml,
        &fed,
    )
    .await;
    println!("  skew errors logged by node B {paused}, resumed {resumed}, drained {drained:.1?}, run time {:.1?}", started.elapsed());
    assert_eq!(audit.recordings, fed.len());
    drop(pg);
}

// ---------------------------------------------------------------- a minute without the store

/// The whole store unreachable for a full minute while a dock keeps receiving files (some of
/// them multipart): nothing is archived or released meanwhile, `/readyz` says the store is
/// down, the daemon stays up; once the store is back everything is archived exactly once and
/// the dock empties.
#[tokio::test]
async fn store_unreachable_for_a_minute_loses_nothing() {
    const OUTAGE: Duration = Duration::from_secs(60);
    let started = Instant::now();
    let garage = Garage::start().await;
    let proxy = CutProxy::start(vec![garage.port]).await;
    let dir = tempfile::tempdir().unwrap();
    let prefix = format!("outage60-{}/", uuid::Uuid::new_v4().simple());
    let store_toml = garage_store_toml(&prefix, &proxy.endpoint());
    let mut spec = DaemonSpec::station(dir.path());
    spec.store_toml = store_toml.clone();
    spec.docks = vec![("dock".into(), String::new())];
    let catalog_url = spec.catalog_url.clone();
    let mut daemons = vec![Daemon::configure(dir.path(), &spec)];
    daemons[0].start().await;
    let mut feeder = Feeder::start(daemons[0].dock("dock"), "f", 31, Duration::from_millis(1000), 10 << 20);
    tokio::time::sleep(Duration::from_secs(6)).await;
    let before = daemons[0].recordings().await.len();
    proxy.set_cut(true);
    let t_cut = Instant::now();
    let fed_at_cut = feeder.count();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let r = daemons[0].get_as("/readyz", "").await;
    let (status, body) = (r.status(), r.json::<serde_json::Value>().await.unwrap_or_default());
    assert_eq!(status, 503, "ready while the store is unreachable: {body}");
    assert_ne!(body["store"], "ok", "{body}");
    let at_cut = daemons[0].recordings().await.len();
    tokio::time::sleep(OUTAGE.saturating_sub(t_cut.elapsed())).await;
    let during = daemons[0].recordings().await.len() - at_cut;
    let fed_during = feeder.count() - fed_at_cut;
    let on_dock = files_under(&daemons[0].dock("dock")).len();
    assert!(daemons[0].alive(), "the daemon died during the outage\n{}", tail(&daemons[0].log(), 60));
    assert_eq!(during, 0, "recordings archived while the store was unreachable");
    assert!(on_dock >= fed_during, "dock copies released while the store was unreachable: {on_dock} on the dock, {fed_during} arrived");
    proxy.set_cut(false);
    let outage = t_cut.elapsed();
    println!("{:>5.1?}: store back after {outage:.1?}; {fed_during} files arrived meanwhile, {on_dock} on the dock", started.elapsed());
    tokio::time::sleep(Duration::from_secs(5)).await;
    let fed: BTreeSet<String> = feeder.finish().into_iter().collect();
    let drained = wait_drained(&daemons, &fed, Duration::from_secs(90)).await;
    assert_eq!(daemons[0].get_as("/readyz", "").await.status(), 200, "not ready after the outage");
    let errors = metric_sum(&daemons, "evidenced_ingest_errors_total").await;
    let big = fed.len();
    let audit = final_checks(
        "store_unreachable_for_a_minute_loses_nothing",
        &format!("1 (the store unreachable for {outage:.1?})"),
        &mut daemons,
        &catalog_url,
        &store_toml,
        &fed,
    )
    .await;
    println!(
        "  files fed {big} ({before} archived before the cut, {fed_during} during it), ingest errors {errors} (all retried), \
         drained {drained:.1?} after feeding stopped, run time {:.1?}",
        started.elapsed()
    );
    assert_eq!(audit.recordings, fed.len());
    drop(proxy);
    drop(garage);
}
