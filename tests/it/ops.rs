//! Operations commands: `evidenced reconcile` (store against catalog: orphans, missing objects,
//! the safe clean-up that never touches an ingest in progress) and `evidenced backup` (a
//! consistent SQLite copy, the node key, `backup.json`; the `pg_dump` hint for PostgreSQL).

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
