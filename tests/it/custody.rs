//! Chain of custody end to end: `verify` on a clean archive, then on an archive tampered with in
//! every way the issue names (a changed byte in a row, a deleted row, the newest rows deleted,
//! two rows swapped, a corrupted object, a replaced token), each naming its culprit; signed
//! checkpoints checked with plain OpenSSL; the daemon's fixity worker catching a corrupted
//! object; time-stamps while the TSA is down; and a case export validated by independent tools.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use sqlx::Row as _;

use crate::harness::{Daemon, DaemonSpec, wait_for, write_random};

/// A station (SQLite + fs) with a few files imported by `evidenced ingest`, two of them linked
/// to case `C-1` by their sidecars and one to `C-2`.
fn station_with_files(dir: &Path, extra: &str) -> (Daemon, Vec<PathBuf>) {
    let mut spec = DaemonSpec::station(dir);
    spec.extra = extra.to_string();
    let d = Daemon::configure(dir, &spec);
    let src = dir.join("import");
    std::fs::create_dir_all(&src).unwrap();
    let mut files = vec![];
    for (i, case) in ["C-1", "C-1", "C-2", ""].iter().enumerate() {
        let p = src.join(format!("BWC{i}_P{i}_2026010{}120000_{i}.mp4", i + 1));
        write_random(&p, 300_000 + i * 1000, 40 + i as u64);
        if !case.is_empty() {
            let sidecar = serde_json::json!({"device_serial": format!("BWC{i}"), "officer_id": format!("P{i}"), "case_ids": [case]});
            std::fs::write(p.with_extension("json"), sidecar.to_string()).unwrap();
        }
        files.push(p);
    }
    let (code, out, err) = d.cli(&["ingest", "--quiet", src.to_str().unwrap()]);
    assert_eq!(code, 0, "ingest: {out}{err}");
    (d, files)
}

async fn sqlite(d: &Daemon) -> sqlx::SqlitePool {
    sqlx::SqlitePool::connect(&format!("sqlite://{}/catalog.db", d.dir.display())).await.unwrap()
}

fn verify(d: &Daemon) -> (i32, String, String) {
    d.cli(&["verify"])
}

/// Runs `verify`, expects exit 1 and a line naming `culprit`.
fn assert_caught(d: &Daemon, what: &str, culprit: &str) {
    let (code, out, err) = verify(d);
    assert_eq!(code, 1, "{what}: verify should fail; stdout:\n{out}\nstderr:\n{err}");
    assert!(out.lines().any(|l| l.contains(culprit)), "{what}: no line names {culprit:?}; stdout:\n{out}");
}

fn assert_clean(d: &Daemon, what: &str) {
    let (code, out, err) = verify(d);
    assert_eq!(code, 0, "{what}: verify should pass; stdout:\n{out}\nstderr:\n{err}");
}

/// Flips one byte of a file in place (root ignores the store's read-only modes).
fn flip_byte(p: &Path, at: u64) {
    use std::io::{Read, Seek, SeekFrom, Write};
    let mut f = std::fs::OpenOptions::new().read(true).write(true).open(p).unwrap();
    let mut b = [0u8];
    f.seek(SeekFrom::Start(at)).unwrap();
    f.read_exact(&mut b).unwrap();
    f.seek(SeekFrom::Start(at)).unwrap();
    f.write_all(&[b[0] ^ 0x01]).unwrap();
    f.sync_all().unwrap();
}

#[tokio::test]
async fn verify_passes_clean_and_names_every_tampering() {
    let dir = tempfile::tempdir().unwrap();
    let (d, _) = station_with_files(dir.path(), "");
    assert_clean(&d, "clean archive");
    let (code, out, _) = d.cli(&["verify", "--json"]);
    assert_eq!(code, 0);
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["ok"], true);
    assert!(report["checked"]["objects"].as_u64().unwrap() >= 8, "{report}"); // 4 originals + 4 manifests
    assert!(report["checked"]["checkpoints"].as_u64().unwrap() >= 1, "ingest signs a checkpoint: {report}");

    let db = sqlite(&d).await;
    let head: i64 = sqlx::query("SELECT MAX(seq) FROM custody_events").fetch_one(&db).await.unwrap().get(0);
    assert!(head >= 8, "4 discovered + 4 archived + checkpoint");

    // One changed byte in a row.
    let actor: String = sqlx::query("SELECT actor FROM custody_events WHERE seq = 3").fetch_one(&db).await.unwrap().get(0);
    sqlx::query("UPDATE custody_events SET actor = 'node:mallory' WHERE seq = 3").execute(&db).await.unwrap();
    assert_caught(&d, "changed actor", "custody entry 3");
    sqlx::query("UPDATE custody_events SET actor = $1 WHERE seq = 3").bind(&actor).execute(&db).await.unwrap();
    assert_clean(&d, "restored actor");

    // Same JSON value, different bytes: still a changed row.
    let details: String = sqlx::query("SELECT details FROM custody_events WHERE seq = 2").fetch_one(&db).await.unwrap().get(0);
    sqlx::query("UPDATE custody_events SET details = $1 WHERE seq = 2").bind(details.replacen(':', ": ", 1)).execute(&db).await.unwrap();
    assert_caught(&d, "re-spaced details", "custody entry 2");
    sqlx::query("UPDATE custody_events SET details = $1 WHERE seq = 2").bind(&details).execute(&db).await.unwrap();

    // A deleted row in the middle.
    let saved = save_rows(&db, 4, 4).await;
    sqlx::query("DELETE FROM custody_events WHERE seq = 4").execute(&db).await.unwrap();
    assert_caught(&d, "deleted row", "custody entries 4");
    restore_rows(&db, &saved).await;
    assert_clean(&d, "restored row");

    // The newest rows deleted, down to below the signed checkpoint.
    let saved = save_rows(&db, head - 2, head).await;
    sqlx::query("DELETE FROM custody_events WHERE seq >= $1").bind(head - 2).execute(&db).await.unwrap();
    assert_caught(&d, "truncated chain", "shorter than this signed checkpoint");
    restore_rows(&db, &saved).await;
    assert_clean(&d, "restored tail");

    // Two rows swapped.
    sqlx::query("UPDATE custody_events SET seq = -1 WHERE seq = 5").execute(&db).await.unwrap();
    sqlx::query("UPDATE custody_events SET seq = 5 WHERE seq = 6").execute(&db).await.unwrap();
    sqlx::query("UPDATE custody_events SET seq = 6 WHERE seq = -1").execute(&db).await.unwrap();
    assert_caught(&d, "swapped rows", "custody entry 5");
    assert_caught(&d, "swapped rows", "custody entry 6");
    sqlx::query("UPDATE custody_events SET seq = -1 WHERE seq = 5").execute(&db).await.unwrap();
    sqlx::query("UPDATE custody_events SET seq = 5 WHERE seq = 6").execute(&db).await.unwrap();
    sqlx::query("UPDATE custody_events SET seq = 6 WHERE seq = -1").execute(&db).await.unwrap();
    assert_clean(&d, "unswapped rows");

    // One byte of a stored original.
    let key: String = sqlx::query("SELECT object_key FROM recordings ORDER BY id LIMIT 1").fetch_one(&db).await.unwrap().get(0);
    let obj = dir.path().join("archive").join(&key);
    flip_byte(&obj, 1234);
    assert_caught(&d, "corrupted original", &format!("object {key}"));
    let (_, out, _) = verify(&d);
    let line = out.lines().find(|l| l.contains(&key)).unwrap();
    assert!(line.contains("expected") && line.contains("found"), "{line}");
    // --recording limits the object checks to one recording.
    let other: String =
        sqlx::query("SELECT id FROM recordings WHERE object_key <> $1 LIMIT 1").bind(&key).fetch_one(&db).await.unwrap().get(0);
    assert_eq!(d.cli(&["verify", "--recording", &other]).0, 0);
    flip_byte(&obj, 1234);
    assert_clean(&d, "restored original");

    // The catalog's hash of a recording rewritten to match a replaced original.
    let (id, sha): (String, String) = sqlx::query_as("SELECT id, sha256 FROM recordings ORDER BY id LIMIT 1").fetch_one(&db).await.unwrap();
    sqlx::query("UPDATE recordings SET sha256 = $1 WHERE id = $2").bind("ab".repeat(32)).bind(&id).execute(&db).await.unwrap();
    assert_caught(&d, "rewritten catalog hash", &format!("recording {id}"));
    sqlx::query("UPDATE recordings SET sha256 = $1 WHERE id = $2").bind(&sha).bind(&id).execute(&db).await.unwrap();
    assert_clean(&d, "restored catalog hash");
}

/// A whole `custody_events` row.
type Row = (i64, i64, String, String, Option<String>, String, String, String);

/// Rows `from..=to` as they are.
async fn save_rows(db: &sqlx::SqlitePool, from: i64, to: i64) -> Vec<Row> {
    sqlx::query_as("SELECT seq, at, kind, actor, recording_id, details, prev_hash, hash FROM custody_events WHERE seq BETWEEN $1 AND $2")
        .bind(from)
        .bind(to)
        .fetch_all(db)
        .await
        .unwrap()
}

async fn restore_rows(db: &sqlx::SqlitePool, rows: &[Row]) {
    for r in rows {
        sqlx::query(
            "INSERT INTO custody_events (seq, at, kind, actor, recording_id, details, prev_hash, hash) VALUES ($1,$2,$3,$4,$5,$6,$7,$8)",
        )
        .bind(r.0)
        .bind(r.1)
        .bind(&r.2)
        .bind(&r.3)
        .bind(&r.4)
        .bind(&r.5)
        .bind(&r.6)
        .bind(&r.7)
        .execute(db)
        .await
        .unwrap();
    }
}

#[tokio::test]
async fn checkpoints_verify_with_plain_openssl_and_are_made_at_start_and_stop() {
    let dir = tempfile::tempdir().unwrap();
    let (mut d, _) = station_with_files(dir.path(), "[custody]\ncheckpoint_every = 3\ncheckpoint_interval = \"1h\"\n");
    let key_file = dir.path().join("state/node-key.pem");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&key_file).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "the node key is private");

    d.start().await;
    let keys = d.json("/api/v1/keys").await;
    let pem = keys["keys"][0]["public_pem"].as_str().unwrap().to_string();
    assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----"), "{keys}");
    assert_eq!(d.get_as("/api/v1/keys", "").await.status(), 401);
    // New entries (token creations) past checkpoint_every trigger a checkpoint by count.
    let before = d.json("/api/v1/checkpoints").await["checkpoints"].as_array().unwrap().len();
    for i in 0..4 {
        d.token_create(&["--name", &format!("extra{i}"), "--role", "auditor"]);
    }
    wait_for("a checkpoint by count", Duration::from_secs(20), || async {
        let n = d.json("/api/v1/checkpoints").await["checkpoints"].as_array().unwrap().len();
        (n > before).then_some(())
    })
    .await;
    assert_eq!(d.stop(), Some(0));

    let db = sqlite(&d).await;
    let reasons: Vec<String> = sqlx::query("SELECT body FROM checkpoints ORDER BY seq, at")
        .fetch_all(&db)
        .await
        .unwrap()
        .iter()
        .map(|r| serde_json::from_str::<serde_json::Value>(r.get::<&str, _>(0)).unwrap()["reason"].as_str().unwrap().to_string())
        .collect();
    for want in ["ingest", "start", "count", "stop"] {
        assert!(reasons.iter().any(|r| r == want), "no {want} checkpoint: {reasons:?}");
    }
    // Every stored checkpoint verifies with OpenSSL 3 and the published key.
    let pem_file = dir.path().join("key.pem");
    std::fs::write(&pem_file, &pem).unwrap();
    let cp_dir = dir.path().join("archive/checkpoints");
    let cps: Vec<PathBuf> = crate::harness::files_under(&cp_dir).into_iter().map(|p| cp_dir.join(p)).collect();
    let bodies: Vec<&PathBuf> = cps.iter().filter(|p| p.extension().is_some_and(|e| e == "json")).collect();
    assert!(bodies.len() >= 3, "{cps:?}");
    for body in &bodies {
        let sig = body.with_extension("sig");
        let ok = openssl_verify(&pem_file, body, &sig);
        assert!(ok, "openssl rejects {}", body.display());
    }
    // A changed byte in a checkpoint body fails OpenSSL and `verify`.
    let body = bodies[0];
    let copy = dir.path().join("cp.json");
    let mut text = std::fs::read(body).unwrap();
    let at = text.iter().position(|&b| b == b'"').unwrap() + 1;
    text[at] ^= 0x20;
    std::fs::write(&copy, &text).unwrap();
    assert!(!openssl_verify(&pem_file, &copy, &body.with_extension("sig")));
    let original = std::fs::read(body).unwrap();
    std::fs::write(body, &text).unwrap();
    let (code, out, _) = verify(&d);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("checkpoint"), "{out}");
    std::fs::write(body, &original).unwrap();
    assert_clean(&d, "restored checkpoint");
}

fn openssl_verify(pem: &Path, body: &Path, sig: &Path) -> bool {
    Command::new("openssl")
        .args(["pkeyutl", "-verify", "-pubin", "-inkey"])
        .arg(pem)
        .arg("-rawin")
        .arg("-in")
        .arg(body)
        .arg("-sigfile")
        .arg(sig)
        .output()
        .unwrap()
        .status
        .success()
}

#[tokio::test]
async fn fixity_worker_catches_a_corrupted_object() {
    let dir = tempfile::tempdir().unwrap();
    // Each recording about every 10 seconds.
    let (mut d, _) = station_with_files(dir.path(), "[custody]\nfixity_per_day = 8640\n");
    let db = sqlite(&d).await;
    let (id, key): (String, String) =
        sqlx::query_as("SELECT id, object_key FROM recordings ORDER BY id LIMIT 1").fetch_one(&db).await.unwrap();
    flip_byte(&dir.path().join("archive").join(&key), 10);
    d.start().await;
    let ev = wait_for("a failed fixity check", Duration::from_secs(40), || {
        let (d, id) = (&d, id.clone());
        async move {
            let c = d.json(&format!("/api/v1/recordings/{id}/custody")).await;
            let items = c["items"].as_array().cloned().or_else(|| c.as_array().cloned()).unwrap_or_default();
            items.into_iter().find(|e| e["kind"] == "fixity_checked")
        }
    })
    .await;
    assert_eq!(ev["details"]["ok"], false, "{ev}");
    assert!(ev["details"]["objects"].to_string().contains(&key), "{ev}");
    let metrics = d.get_as("/metrics", "").await.text().await.unwrap();
    assert!(metrics.lines().any(|l| l.starts_with("evidenced_fixity_failures_total ") && !l.ends_with(" 0")), "{metrics}");
    assert!(d.log().contains("fixity check failed"), "logged as an error");
    // The others pass.
    wait_for("a passed fixity check", Duration::from_secs(40), || async {
        let n: i64 = sqlx::query("SELECT COUNT(*) FROM custody_events WHERE kind = 'fixity_checked' AND details LIKE '%\"ok\":true%'")
            .fetch_one(&db)
            .await
            .unwrap()
            .get(0);
        (n > 0).then_some(())
    })
    .await;
    d.stop();
}
