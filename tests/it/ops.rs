//! Operations commands: `evidenced reconcile` (store against catalog: orphans, missing objects,
//! the safe clean-up that never touches an ingest in progress) and `evidenced backup` (a
//! consistent SQLite copy, the node key, `backup.json`; the `pg_dump` hint for PostgreSQL) and
//! `evidenced rebuild` (a lost catalog restored from the store alone, on both backends).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use sqlx::Row as _;

use crate::harness::{Daemon, DaemonSpec, sha256_file, write_random};

/// A station (SQLite + fs) with three files imported by `evidenced ingest`.
fn station(dir: &Path) -> Daemon {
    let d = Daemon::configure(dir, &DaemonSpec::station(dir));
    let src = dir.join("import");
    std::fs::create_dir_all(&src).unwrap();
    for i in 0..3u64 {
        write_random(&src.join(format!("BWC{i}_P{i}_2026010{}120000_{i}.mp4", i + 1)), 200_000 + i as usize * 1000, 70 + i);
    }
    let (code, out, err) = d.cli(&["ingest", "--quiet", src.to_str().unwrap()]);
    assert_eq!(code, 0, "ingest: {out}{err}");
    d
}

async fn sqlite(d: &Daemon) -> sqlx::SqlitePool {
    sqlx::SqlitePool::connect(&format!("sqlite://{}/catalog.db", d.dir.display())).await.unwrap()
}

/// Writes a store object by hand and backdates its mtime by `age`.
fn put_old_object(d: &Daemon, key: &str, age: Duration) -> PathBuf {
    let p = d.dir.join("archive").join(key);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    write_random(&p, 4096, 9);
    let f = std::fs::File::options().write(true).open(&p).unwrap();
    f.set_modified(SystemTime::now() - age).unwrap();
    p
}

fn reconcile_json(d: &Daemon, args: &[&str]) -> (i32, serde_json::Value, String) {
    let mut a = vec!["reconcile", "--json"];
    a.extend_from_slice(args);
    let (code, out, err) = d.cli(&a);
    let v = serde_json::from_str(&out).unwrap_or_else(|e| panic!("reconcile --json: {e}\nstdout:\n{out}\nstderr:\n{err}"));
    (code, v, err)
}

fn orphan<'a>(report: &'a serde_json::Value, key: &str) -> Option<&'a serde_json::Value> {
    report["orphans"].as_array().unwrap().iter().find(|o| o["key"] == key)
}

#[tokio::test]
async fn reconcile_reports_orphans_and_missing_and_cleans_only_what_is_safe() {
    let dir = tempfile::tempdir().unwrap();
    let d = station(dir.path());

    // A clean station: no findings, exit 0.
    let (code, out, err) = d.cli(&["reconcile"]);
    assert_eq!(code, 0, "clean station: stdout:\n{out}\nstderr:\n{err}");
    assert!(out.trim().is_empty(), "no finding lines expected on a clean station:\n{out}");
    let (code, r, _) = reconcile_json(&d, &[]);
    assert_eq!(code, 0);
    assert_eq!(r["ok"], true);
    assert_eq!(r["orphans"].as_array().unwrap().len(), 0, "{r}");
    assert_eq!(r["missing"].as_array().unwrap().len(), 0, "{r}");
    assert_eq!(r["store_objects"], 6, "3 originals + 3 manifests: {r}");

    // (a) An upload whose commit never happened (no sighting at all), two hours old.
    let node = format!("{}.backfill", d.node_id());
    let lost_key = format!("originals/{node}/{}/original", uuid::Uuid::now_v7());
    let lost = put_old_object(&d, &lost_key, Duration::from_secs(7200));
    // (b) An ingest in progress: its sighting is still `discovered`, its object already stored.
    let sid = uuid::Uuid::now_v7().to_string();
    let live_key = format!("originals/{}/{sid}/original", d.node_id());
    let db = sqlite(&d).await;
    let now = chrono::Utc::now().timestamp_micros();
    sqlx::query(
        "INSERT INTO sightings (id, node, dock, path, path_display, dev, ino, size, mtime_ns, ctime_ns, state, object_key, \
         seen_at, updated_at) VALUES ($1, $2, 'dock-a', $3, $4, 1, 2, 4096, 3, 4, 'discovered', $5, $6, $6)",
    )
    .bind(&sid)
    .bind(d.node_id())
    .bind(b"/docks/dock-a/in-progress.mp4".to_vec())
    .bind("/docks/dock-a/in-progress.mp4")
    .bind(&live_key)
    .bind(now)
    .execute(&db)
    .await
    .unwrap();
    let in_progress = put_old_object(&d, &live_key, Duration::from_secs(7200));
    // (c) A young safe orphan: reported, but too new for --clean.
    let young_key = format!("originals/{node}/{}/original", uuid::Uuid::now_v7());
    let young = put_old_object(&d, &young_key, Duration::from_secs(60));

    let (code, r, err) = reconcile_json(&d, &[]);
    assert_eq!(code, 0, "orphans are only a warning: {r}\n{err}");
    assert_eq!(r["orphans"].as_array().unwrap().len(), 3, "{r}");
    let o = orphan(&r, &lost_key).expect("lost upload reported");
    assert_eq!(o["class"], "safe", "{o}");
    assert!(o["age_secs"].as_u64().unwrap() >= 7100, "{o}");
    let o = orphan(&r, &live_key).expect("in-progress object reported");
    assert_eq!(o["class"], "in_progress", "{o}");
    assert!(o["reason"].as_str().unwrap().contains(&sid), "{o}");
    assert_eq!(orphan(&r, &young_key).unwrap()["class"], "safe");
    // Human output: one line per finding naming the key.
    let (code, out, _) = d.cli(&["reconcile"]);
    assert_eq!(code, 0);
    assert_eq!(out.lines().count(), 3, "{out}");
    assert!(out.lines().any(|l| l.starts_with(&format!("orphan {lost_key} (safe to delete"))), "{out}");
    assert!(out.lines().any(|l| l.starts_with(&format!("orphan {live_key} (in progress, kept"))), "{out}");

    // --clean deletes only the old safe orphan; the in-progress one and the young one stay.
    let (code, r, err) = reconcile_json(&d, &["--clean"]);
    assert_eq!(code, 0, "{r}\n{err}");
    assert_eq!(r["deleted"], 1, "{r}");
    assert_eq!(orphan(&r, &lost_key).unwrap()["deleted"], true);
    assert!(err.contains("deleted orphan") && err.contains(&lost_key), "each deletion is logged: {err}");
    assert!(!lost.exists(), "the safe orphan is gone");
    assert!(in_progress.exists(), "an ingest in progress must keep its object");
    assert!(young.exists(), "a young orphan is not cleaned");
    let (_, r, _) = reconcile_json(&d, &[]);
    assert_eq!(r["orphans"].as_array().unwrap().len(), 2, "{r}");
    // Every catalog object is still there.
    assert_eq!(d.cli(&["verify"]).0, 0, "clean-up must not touch anything referenced");

    // A recording's original deleted by hand: exit 1 naming the key.
    let key: String = sqlx::query("SELECT object_key FROM recordings ORDER BY id LIMIT 1").fetch_one(&db).await.unwrap().get(0);
    std::fs::remove_file(d.dir.join("archive").join(&key)).unwrap();
    let (code, out, err) = d.cli(&["reconcile"]);
    assert_eq!(code, 1, "missing original: stdout:\n{out}\nstderr:\n{err}");
    assert!(out.lines().any(|l| l.starts_with(&format!("missing {key}: original of recording"))), "{out}");
    let (code, r, _) = reconcile_json(&d, &["--clean"]);
    assert_eq!(code, 1);
    assert_eq!(r["ok"], false);
    assert_eq!(r["missing"][0]["key"], key.as_str());
    assert_eq!(r["missing"][0]["what"], "original");
    assert!(in_progress.exists() && young.exists());
}

#[tokio::test]
async fn backup_copies_the_catalog_and_key_and_refuses_an_existing_dir() {
    let dir = tempfile::tempdir().unwrap();
    let d = station(dir.path());
    let out = dir.path().join("backups").join("b1");
    let (code, stdout, err) = d.cli(&["backup", "--out", out.to_str().unwrap()]);
    assert_eq!(code, 0, "backup: {stdout}{err}");
    assert!(!PathBuf::from(format!("{}.partial", out.display())).exists());

    // The copy opens with SQLite and holds the same custody log.
    let live = sqlite(&d).await;
    let copy = sqlx::SqlitePool::connect(&format!("sqlite://{}?mode=ro", out.join("catalog.db").display())).await.unwrap();
    let count = |pool: sqlx::SqlitePool| async move {
        sqlx::query("SELECT COUNT(*), MAX(seq) FROM custody_events")
            .fetch_one(&pool)
            .await
            .map(|r| (r.get::<i64, _>(0), r.get::<i64, _>(1)))
            .unwrap()
    };
    let (n_live, head_live) = count(live.clone()).await;
    let (n_copy, head_copy) = count(copy.clone()).await;
    assert_eq!(n_copy, n_live);
    assert!(n_copy >= 7, "3 discovered + 3 archived + checkpoint: {n_copy}");
    let recs: i64 = sqlx::query("SELECT COUNT(*) FROM recordings").fetch_one(&copy).await.unwrap().get(0);
    assert_eq!(recs, 3);
    copy.close().await;

    // The node key, private.
    let key = out.join("node-key.pem");
    assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(std::fs::read(&key).unwrap(), std::fs::read(d.dir.join("state/node-key.pem")).unwrap());

    // backup.json: node, chain head, and the SHA-256 of each copied file.
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("backup.json")).unwrap()).unwrap();
    assert_eq!(m["node"], d.node_id().as_str());
    assert_eq!(m["catalog"], "sqlite");
    assert_eq!(m["custody_events"], n_copy);
    assert_eq!(m["chain_head"]["seq"], head_copy);
    assert_eq!(head_copy, head_live);
    let hash: String = sqlx::query("SELECT hash FROM custody_events WHERE seq = $1").bind(head_live).fetch_one(&live).await.unwrap().get(0);
    assert_eq!(m["chain_head"]["hash"], hash.as_str());
    assert_eq!(m["files"]["catalog.db"]["sha256"], sha256_file(&out.join("catalog.db")).as_str());
    assert_eq!(m["files"]["node-key.pem"]["sha256"], sha256_file(&key).as_str());
    assert!(chrono::DateTime::parse_from_rfc3339(m["created_at"].as_str().unwrap()).is_ok(), "{m}");

    // A second run into the same directory is refused and changes nothing.
    let before = sha256_file(&out.join("backup.json"));
    let (code, _, err) = d.cli(&["backup", "--out", out.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("exists"), "{err}");
    assert_eq!(sha256_file(&out.join("backup.json")), before);
}

#[tokio::test]
async fn backup_of_a_postgresql_catalog_prints_the_pg_dump_command() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = DaemonSpec::station(dir.path());
    spec.catalog_url = crate::harness::pg_database().await;
    let d = Daemon::configure(dir.path(), &spec);
    let out = dir.path().join("b");
    let (code, stdout, err) = d.cli(&["backup", "--out", out.to_str().unwrap()]);
    assert_eq!(code, 2, "{stdout}{err}");
    let db = spec.catalog_url.rsplit('/').next().unwrap();
    assert!(err.contains("pg_dump") && err.contains("--host=127.0.0.1") && err.contains("--port=5432"), "{err}");
    assert!(err.contains(&format!("--dbname={db}")) && err.contains("--username=postgres"), "{err}");
    assert!(!out.exists(), "nothing is written for PostgreSQL");
}

#[tokio::test]
async fn reconcile_on_s3_reports_orphans_but_never_cleans_them() {
    let garage = crate::harness::Garage::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut spec = DaemonSpec::station(dir.path());
    spec.store_toml = garage.store_toml("ops/");
    let d = Daemon::configure(dir.path(), &spec);
    let src = dir.path().join("import");
    std::fs::create_dir_all(&src).unwrap();
    write_random(&src.join("BWC1_P1_20260101120000_1.mp4"), 100_000, 5);
    let (code, out, err) = d.cli(&["ingest", "--quiet", src.to_str().unwrap()]);
    assert_eq!(code, 0, "ingest: {out}{err}");
    let (code, r, err) = reconcile_json(&d, &[]);
    assert_eq!(code, 0, "{r}\n{err}");
    assert_eq!(r["orphans"].as_array().unwrap().len(), 0, "{r}");
    assert_eq!(r["store_objects"], 2, "{r}");
    assert!(r["stray_uploads"].is_null() && r["notes"].to_string().contains("start-up sweep"), "{r}");

    let key = format!("originals/{}.backfill/{}/original", d.node_id(), uuid::Uuid::now_v7());
    let s3 = crate::harness::sdk_client(&garage).await;
    s3.put_object()
        .bucket(crate::harness::GARAGE_BUCKET)
        .key(format!("ops/{key}"))
        .body(aws_sdk_s3::primitives::ByteStream::from(b"lost upload".to_vec()))
        .send()
        .await
        .unwrap();
    let (code, r, _) = reconcile_json(&d, &["--clean"]);
    assert_eq!(code, 0, "{r}");
    let o = orphan(&r, &key).expect("orphan reported");
    assert_eq!(o["class"], "safe");
    assert!(o["age_secs"].is_null() && o["deleted"] == false, "{o}");
    assert_eq!(r["deleted"], 0);
    assert!(r["notes"].to_string().contains("does not tell objects' ages"), "{r}");
    s3.head_object().bucket(crate::harness::GARAGE_BUCKET).key(format!("ops/{key}")).send().await.expect("still there");
}

/// A recording's details as the API shows them, minus what `rebuild` cannot restore (dock
/// sightings: the docks are watched again instead).
async fn details_of(d: &Daemon, token: &str, id: &str) -> serde_json::Value {
    let r = d.get_as(&format!("/api/v1/recordings/{id}"), token).await;
    assert_eq!(r.status(), 200);
    let mut v: serde_json::Value = r.json().await.unwrap();
    v.as_object_mut().unwrap().remove("sightings");
    v
}

async fn custody_of(d: &Daemon, token: &str, id: &str) -> serde_json::Value {
    let r = d.get_as(&format!("/api/v1/recordings/{id}/custody"), token).await;
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    v["items"].clone()
}

#[tokio::test]
async fn rebuild_restores_a_lost_sqlite_catalog_from_an_fs_store() {
    let dir = tempfile::tempdir().unwrap();
    rebuild_restores_a_lost_catalog(dir.path(), DaemonSpec::station(dir.path())).await;
}

#[tokio::test]
async fn rebuild_restores_a_lost_postgresql_catalog_from_s3() {
    let garage = crate::harness::Garage::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut spec = DaemonSpec::station(dir.path());
    spec.catalog_url = crate::harness::pg_database().await;
    spec.store_toml = garage.store_toml("rebuild/");
    rebuild_restores_a_lost_catalog(dir.path(), spec).await;
}

/// Footage of every sort is archived and worked on; the catalog is lost; `rebuild` restores
/// it from the store alone so that every recording, its custody and its case read exactly as
/// before, `verify` is clean, and ingest goes on.
async fn rebuild_restores_a_lost_catalog(dir: &Path, mut spec: DaemonSpec) {
    use reqwest::Method;
    use serde_json::json;
    let pg = spec.catalog_url.starts_with("postgres");
    spec.docks = vec![("dock".into(), String::new())];
    let mut d = Daemon::configure(dir, &spec);
    let arch = d.token_create(&["--name", "arch1", "--role", "archivist"]);
    d.start().await;

    // Footage of every sort: a body-camera video with its sidecar, a handheld clip whose position
    // comes from the container, an audio interview, a broken file, and an unattributed one.
    let corpus = crate::harness::corpus();
    let dock = d.dock("dock");
    for f in [
        "dock-01/BWC4A7F21/BWC4A7F21_P10482_20240315143240_0002.mp4",
        "dock-01/BWC4A7F21/BWC4A7F21_P10482_20240315143240_0002.json",
        "import/handheld/IMG_0042.MOV",
        "interview-room/ROOM-3/ROOM-3_20240315093000_0001.wav",
        "edge-cases/random-bytes.mp4",
    ] {
        let to = dock.join(Path::new(f).file_name().unwrap());
        std::fs::copy(corpus.join(f), to).unwrap();
    }
    write_random(&dock.join("unknown.mp4"), 150_000, 31);
    let recs = d.wait_recordings(5, Duration::from_secs(60)).await;
    let ids: Vec<String> = recs.iter().map(|r| r["id"].as_str().unwrap().to_string()).collect();
    for id in &ids {
        d.wait_media(id, Duration::from_secs(120)).await;
    }
    let by_name = |n: &str| recs.iter().find(|r| r["original_name"] == n).unwrap()["id"].as_str().unwrap().to_string();
    let (video, unknown) = (by_name("BWC4A7F21_P10482_20240315143240_0002.mp4"), by_name("unknown.mp4"));

    // What people did with them: an attribution fix, a classification, a case, a category, a hold
    // placed and one lifted, a clip.
    let rec = |id: &str| format!("/api/v1/recordings/{id}");
    let fix = json!({"officer": "P5", "device": "BWC5", "unit": "JS/NJ", "started_at": "2026-03-01T08:00:00Z", "needs_review": false, "reason": "docking log"});
    assert_eq!(d.call(Method::PATCH, &rec(&unknown), &d.token, Some(fix)).await.0, 200);
    let privacy = json!({"classification": "privacy", "reason": "a minor"});
    assert_eq!(d.call(Method::PUT, &format!("{}/classification", rec(&unknown)), &d.token, Some(privacy)).await.0, 200);
    let (s, v) = d.call(Method::PUT, "/api/v1/cases/K-77", &d.token, Some(json!({"title": "Robbery"}))).await;
    assert!(s == 200 || s == 201, "{s} {v}");
    let link = format!("/api/v1/cases/K-77/recordings/{video}");
    let (s, v) = d.call(Method::PUT, &link, &d.token, Some(json!({"reason": "scene"}))).await;
    assert!(s == 200 || s == 201, "{s} {v}");
    assert_eq!(d.call(Method::PATCH, "/api/v1/cases/K-77", &arch, Some(json!({"status": "closed"}))).await.0, 200);
    let hold = |r: &str| json!({"reason": r});
    assert_eq!(d.call(Method::PUT, &format!("{}/hold", rec(&video)), &arch, Some(hold("court order 12"))).await.0, 200);
    assert_eq!(d.call(Method::PUT, &format!("{}/hold", rec(&unknown)), &arch, Some(hold("inquiry"))).await.0, 200);
    assert_eq!(d.call(Method::DELETE, &format!("{}/hold", rec(&unknown)), &arch, Some(hold("lifted"))).await.0, 200);
    let cat = json!({"category": "traffic", "reason": "stop"});
    let _ = d.call(Method::PUT, &format!("{}/category", rec(&ids[0])), &arch, Some(cat)).await;
    let body = json!({"start_ms": 1000, "end_ms": 3000, "accurate": false, "reason": "for court"});
    let (s, clip) = d.call(Method::POST, &format!("{}/clips", rec(&video)), &d.token, Some(body)).await;
    assert!(s == 201 || s == 202, "{s} {clip}");
    let clip_path = format!("/api/v1/clips/{}", clip["id"].as_str().unwrap());
    crate::harness::wait_for("the clip", Duration::from_secs(60), || async {
        let r = d.get_as(&clip_path, &d.token).await;
        let v: serde_json::Value = r.json().await.unwrap_or_default();
        v["sha256"].is_string().then_some(())
    })
    .await;

    let mut before = Vec::new();
    for id in &ids {
        before.push((details_of(&d, &d.token, id).await, custody_of(&d, &d.token, id).await));
    }
    let cases_before = d.call(Method::GET, "/api/v1/cases/K-77", &d.token, None).await.1;
    // A clean stop copies the rest of the log to the store with its final checkpoint.
    assert_eq!(d.stop(), Some(0));
    let (code, out, err) = d.cli(&["verify"]);
    assert_eq!(code, 0, "verify before: {out}{err}");

    // The catalog is lost. The store alone brings it back.
    if pg {
        // A new, empty database in place of the lost one.
        let fresh = crate::harness::pg_database().await;
        let text = std::fs::read_to_string(&d.config).unwrap().replace(&spec.catalog_url, &fresh);
        std::fs::write(&d.config, text).unwrap();
    } else {
        for f in ["catalog.db", "catalog.db-wal", "catalog.db-shm"] {
            let _ = std::fs::remove_file(dir.join(f));
        }
    }
    if !pg {
        // A doctored copy is refused, naming the segment and line; the catalog stays empty.
        let seg = dir.join("archive/custody").join(&crate::harness::files_under(&dir.join("archive/custody"))[0]);
        let good = std::fs::read(&seg).unwrap();
        let bad = String::from_utf8(good.clone()).unwrap().replacen("\"actor\":\"cli\"", "\"actor\":\"mallory\"", 1);
        assert_ne!(bad.as_bytes(), good.as_slice());
        std::fs::write(&seg, &bad).unwrap();
        let (code, out, err) = d.cli(&["rebuild"]);
        assert_eq!(code, 2, "{out}{err}");
        assert!(err.contains("line") && err.contains("hashes to"), "{err}");
        std::fs::write(&seg, &good).unwrap();
    }
    let (code, out, err) = d.cli(&["rebuild", "--json"]);
    assert_eq!(code, 0, "rebuild: {out}{err}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["recordings"], 5, "{report}");
    assert!(report["checkpoints"].as_u64().unwrap() >= 1 && report["discrepancies"] == json!([]), "{report}");
    let (code, out, err) = d.cli(&["rebuild"]);
    assert_eq!(code, 2, "a second rebuild into a catalog that is no longer empty is refused: {out}{err}");
    assert!(err.contains("not empty"), "{err}");
    let (code, out, err) = d.cli(&["verify"]);
    assert_eq!(code, 0, "verify after rebuild: {out}{err}");

    // Principals were never in the log: issue tokens again, then everything reads as before.
    let sup = d.token_create(&["--name", "sup-again", "--role", "supervisor"]);
    d.token = sup.clone();
    d.start().await;
    for (id, (details, custody)) in ids.iter().zip(&before) {
        assert_eq!(&details_of(&d, &sup, id).await, details, "recording {id} differs after rebuild");
        let after = custody_of(&d, &sup, id).await;
        // Reading it again was audited: the old entries come first, unchanged.
        assert_eq!(
            &after.as_array().unwrap()[..custody.as_array().unwrap().len()],
            custody.as_array().unwrap().as_slice(),
            "custody of {id}"
        );
    }
    let cases_after = d.call(Method::GET, "/api/v1/cases/K-77", &sup, None).await.1;
    assert_eq!(cases_after, cases_before);

    // The archive goes on from there: a new file joins the restored chain.
    write_random(&dock.join("later.mp4"), 120_000, 32);
    d.wait_recordings(6, Duration::from_secs(30)).await;
    assert_eq!(d.stop(), Some(0));
    let (code, out, err) = d.cli(&["verify"]);
    assert_eq!(code, 0, "verify after more ingest: {out}{err}");
    println!(
        "rebuild ({}): {} custody entries from {} segments, {} recordings, {} checkpoints restored, differences 0",
        if pg { "PostgreSQL + S3" } else { "SQLite + fs" },
        report["entries"],
        report["segments"],
        report["recordings"],
        report["checkpoints"]
    );
}
