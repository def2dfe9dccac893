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
    // Entries after the newest checkpoint (here a token created by the CLI) are a warning only.
    d.token_create(&["--name", "late", "--role", "auditor"]);
    let (code, out, err) = verify(&d);
    assert_eq!(code, 0, "{out}{err}");
    assert!(err.contains("warning") && err.contains("after the newest signed checkpoint"), "{err}");
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

/// `python3 -m bagit --validate DIR`, what a recipient would run.
fn bagit_validate(bag: &Path) -> (bool, String) {
    let o = Command::new("python3").args(["-m", "bagit", "--validate"]).arg(bag).output().unwrap();
    (o.status.success(), format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)))
}

#[tokio::test]
async fn tokens_wait_for_the_tsa_then_verify_and_the_case_exports_as_a_valid_bag() {
    let dir = tempfile::tempdir().unwrap();
    let mut tsa = crate::tsa::TestTsa::start();
    tsa.stop();
    let extra = format!("[tsa]\nurl = \"{}\"\nca_file = \"{}\"\ntimeout = \"3s\"\n", tsa.url(), tsa.ca_file().display());
    // The import does not wait for the (down) TSA: its requests are queued. One more recording,
    // a real video in case C-1, gets a proxy and a poster that verify and export must cover.
    let (mut d, _) = station_with_files(dir.path(), &extra);
    let video = dir.path().join("video/BWC9_P9_20260109120000_9.mp4");
    std::fs::create_dir_all(video.parent().unwrap()).unwrap();
    let ff = Command::new("ffmpeg")
        .args(["-v", "error", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=15", "-t", "2", "-c:v", "libx264", "-pix_fmt", "yuv420p"])
        .arg(&video)
        .status()
        .unwrap();
    assert!(ff.success());
    std::fs::write(video.with_extension("json"), r#"{"device_serial":"BWC9","officer_id":"P9","case_ids":["C-1"]}"#).unwrap();
    assert_eq!(d.cli(&["ingest", "--quiet", video.to_str().unwrap()]).0, 0);
    d.start().await;
    let recs = d.wait_recordings(5, Duration::from_secs(10)).await;
    assert!(recs.iter().all(|r| r["timestamped"] == false));
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(d.alive(), "a down TSA does not stop the daemon");
    assert!(d.recordings().await.iter().all(|r| r["timestamped"] == false));

    tsa.restart();
    wait_for("every recording time-stamped", Duration::from_secs(60), || async {
        let rs = d.recordings().await;
        rs.iter().all(|r| r["timestamped"] == true).then_some(())
    })
    .await;
    let vid = recs.iter().find(|r| r["original_name"].as_str().unwrap().starts_with("BWC9")).unwrap()["id"].as_str().unwrap().to_string();
    assert_eq!(d.wait_media(&vid, Duration::from_secs(60)).await["media_state"], "ready");
    assert_eq!(d.stop(), Some(0));
    let db = sqlite(&d).await;
    let checkpoint_tokens: i64 =
        sqlx::query("SELECT COUNT(*) FROM timestamps WHERE subject = 'checkpoint'").fetch_one(&db).await.unwrap().get(0);
    assert!(checkpoint_tokens >= 1, "checkpoints are time-stamped too");
    assert_clean(&d, "all tokens in place");

    // A token replaced by another recording's (a valid token, for other bytes) is caught.
    let keys: Vec<(String, String)> =
        sqlx::query_as("SELECT token_key, sha256 FROM timestamps WHERE subject = 'recording' ORDER BY token_key")
            .fetch_all(&db)
            .await
            .unwrap();
    let (a, b) = (dir.path().join("archive").join(&keys[0].0), dir.path().join("archive").join(&keys[1].0));
    let saved = std::fs::read(&a).unwrap();
    std::fs::write(&a, std::fs::read(&b).unwrap()).unwrap();
    assert_caught(&d, "replaced token", &format!("token {}", keys[0].0));
    std::fs::write(&a, &saved).unwrap();
    assert_clean(&d, "restored token");

    // Derivatives are re-read too: one byte of the proxy.
    let proxy: String = sqlx::query("SELECT proxy_key FROM recordings WHERE id = $1").bind(&vid).fetch_one(&db).await.unwrap().get(0);
    flip_byte(&dir.path().join("archive").join(&proxy), 2000);
    assert_caught(&d, "corrupted proxy", &format!("object {proxy} (proxy)"));
    flip_byte(&dir.path().join("archive").join(&proxy), 2000);
    assert_clean(&d, "restored proxy");

    // The case export.
    let bag = dir.path().join("bag-C-1");
    let (code, out, err) = d.cli(&["export", "--case", "C-1", "--out", bag.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(!dir.path().join("bag-C-1.partial").exists());
    let (ok, msg) = bagit_validate(&bag);
    assert!(ok, "an independent BagIt validator accepts the bag: {msg}");
    let manifest = std::fs::read_to_string(bag.join("manifest-sha256.txt")).unwrap();
    let originals: Vec<PathBuf> = std::fs::read_dir(bag.join("data/originals")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(originals.len(), 3, "the three C-1 recordings: {manifest}");
    assert!(manifest.contains("data/proxies/") && manifest.contains("data/posters/"), "{manifest}");
    assert!(std::fs::read_to_string(bag.join("tokens/tsa-chain.pem")).unwrap().contains("BEGIN CERTIFICATE"));
    for o in &originals {
        let sha = o.file_stem().unwrap().to_str().unwrap();
        assert_eq!(crate::harness::sha256_file(o), sha, "originals are named by their SHA-256");
        let token = bag.join(format!("tokens/{sha}.tsr"));
        let v = Command::new("openssl")
            .args(["ts", "-verify", "-data"])
            .arg(o)
            .arg("-in")
            .arg(&token)
            .arg("-CAfile")
            .arg(bag.join("tokens/tsa-ca.pem"))
            .output()
            .unwrap();
        assert!(v.status.success(), "openssl ts -verify rejects {}: {}", token.display(), String::from_utf8_lossy(&v.stderr));
    }
    // The signed checkpoint of the export, its key, and the chain up to it.
    let cp_dir = bag.join("checkpoints");
    let mut cps: Vec<PathBuf> =
        std::fs::read_dir(&cp_dir).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "json")).collect();
    cps.sort();
    let last = cps.last().unwrap();
    let body: serde_json::Value = serde_json::from_slice(&std::fs::read(last).unwrap()).unwrap();
    let key = bag.join(format!("keys/{}.pem", body["key_id"].as_str().unwrap()));
    assert!(openssl_verify(&key, last, &last.with_extension("sig")), "openssl pkeyutl accepts the bag's checkpoint");
    let py =
        Command::new("python3").arg(bag.join("custody/verify_chain.py")).arg(bag.join("custody/chain.jsonl")).arg(last).output().unwrap();
    assert!(py.status.success(), "{}", String::from_utf8_lossy(&py.stdout));
    // Other cases stay out: the C-2 recording is in the chain only as hashes.
    let c2: String = sqlx::query("SELECT id FROM recordings WHERE case_ids LIKE '%C-2%'").fetch_one(&db).await.unwrap().get(0);
    for f in ["custody/chain.jsonl", "custody/entries.jsonl", "recordings.json"] {
        assert!(!std::fs::read_to_string(bag.join(f)).unwrap().contains(&c2), "{f} reveals another case");
    }
    assert!(std::fs::read_to_string(bag.join("VERIFY.txt")).unwrap().contains("openssl ts -verify"));
    let exported: i64 = sqlx::query("SELECT COUNT(*) FROM custody_events WHERE kind = 'exported'").fetch_one(&db).await.unwrap().get(0);
    assert_eq!(exported, 3, "every export is in the custody log");

    // Refusals: an existing directory, an unknown case.
    let (code, _, err) = d.cli(&["export", "--case", "C-1", "--out", bag.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(err.contains("already exists"), "{err}");
    let (code, _, err) = d.cli(&["export", "--case", "NOPE", "--out", dir.path().join("x").to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(err.contains("NOPE"), "{err}");

    // One changed byte and the validator rejects the bag.
    flip_byte(&originals[0], 100);
    let (ok, _) = bagit_validate(&bag);
    assert!(!ok, "a changed payload byte fails validation");
}
