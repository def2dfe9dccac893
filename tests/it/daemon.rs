//! The real daemon, end to end: the fixture corpus on docks, slow writers, duplicates, `kill -9`
//! during ingest, and an S3 outage. Each test checks afterwards that the catalog, the store and
//! the docks agree: every settled file archived once with its true SHA-256, and no dock copy
//! released before its archive was verified.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rand::Rng;

use crate::harness::{Daemon, DaemonSpec, Garage, copy_tree, corpus, files_under, pg_database, sha256_file, write_random};

const PATTERN: &str = "pattern = \"{device}/{device}_{officer}_{start:%Y%m%d%H%M%S}_{seq}.{ext}\"\nunit = \"JS/NJ/XW\"\n";

/// sha256 -> relative path of every file a dock should archive under `root`.
fn expected_media(root: &Path) -> BTreeMap<String, PathBuf> {
    files_under(root)
        .into_iter()
        .filter(|p| p.extension().is_none_or(|e| e != "json"))
        .filter(|p| std::fs::metadata(root.join(p)).unwrap().len() > 0)
        .map(|p| (sha256_file(&root.join(&p)), p))
        .collect()
}

fn by_sha(recs: &[serde_json::Value]) -> BTreeMap<String, serde_json::Value> {
    recs.iter().map(|r| (r["sha256"].as_str().unwrap().to_string(), r.clone())).collect()
}

#[tokio::test]
async fn corpus_is_archived_attributed_and_released() {
    let corpus = corpus();
    let dir = tempfile::tempdir().unwrap();
    let mut spec = DaemonSpec::station(dir.path());
    let docks = ["dock-01", "dock-02", "import", "interview-room", "edge-cases"];
    for d in docks {
        let extra = if d.starts_with("dock-") { PATTERN } else { "" };
        spec.docks.push((d.to_string(), extra.to_string()));
    }
    let mut daemon = Daemon::configure(dir.path(), &spec);
    daemon.start().await;

    // Hostile and ignorable things beside the real footage.
    let outside = dir.path().join("outside.mp4");
    std::fs::write(&outside, b"not on the dock").unwrap();
    let d1 = daemon.dock("dock-01");
    for name in [".hidden.mp4", "clip.mp4.part", "upload.tmp", "backup.mp4~"] {
        std::fs::write(d1.join(name), b"ignore me").unwrap();
    }
    std::os::unix::fs::symlink(&outside, d1.join("link.mp4")).unwrap();
    let odd = daemon.dock("edge-cases").join(std::ffi::OsStr::from_bytes(b"odd-\xff\xfe-name.mp4"));
    let odd_bytes = b"bytes under a name that is not UTF-8";
    let odd_sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(odd_bytes));
    std::fs::write(&odd, odd_bytes).unwrap();

    let mut expected = BTreeMap::new();
    for d in docks {
        copy_tree(&corpus.join(d), &daemon.dock(d));
        expected.extend(expected_media(&corpus.join(d)));
    }
    expected.insert(odd_sha.clone(), PathBuf::from("odd"));

    let recs = daemon.wait_recordings(expected.len(), Duration::from_secs(90)).await;
    let got = by_sha(&recs);
    assert_eq!(got.keys().collect::<BTreeSet<_>>(), expected.keys().collect::<BTreeSet<_>>(), "archived exactly the settled files");
    assert_eq!(recs.len(), expected.len(), "no duplicates");

    // Attribution from sidecar and pattern.
    let cam = got.values().find(|r| r["original_name"] == "BWC1E55A0_P33005_20240317221009_0001.mp4").unwrap();
    assert_eq!(
        (cam["device"].as_str(), cam["officer"].as_str(), cam["unit"].as_str()),
        (Some("BWC1E55A0"), Some("P33005"), Some("JS/NJ/XW"))
    );
    assert_eq!(cam["started_at"], "2024-03-17T22:10:09.000000Z");
    assert_eq!(cam["location"]["lat"].as_f64(), Some(-33.86882));
    assert_eq!(cam["needs_review"], false);
    let no_sidecar = got.values().find(|r| r["original_name"] == "BWC9C0D13_P20917_20240316094117_0002.mp4").unwrap();
    assert_eq!((no_sidecar["officer"].as_str(), no_sidecar["needs_review"].as_bool()), (Some("P20917"), Some(false)));
    let legacy = got.values().find(|r| r["extension"] == "avi").unwrap();
    assert_eq!(legacy["needs_review"], true, "a name that fits no pattern is flagged, not blocked");
    let odd_rec = &got[&odd_sha];
    assert!(odd_rec["original_name"].as_str().unwrap().contains('\u{fffd}'));

    // Dock copies released after verification; ignored things untouched; empty file kept.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let left = loop {
        let left: BTreeSet<String> =
            docks.iter().flat_map(|d| files_under(&daemon.dock(d)).into_iter().map(move |p| format!("{d}/{}", p.display()))).collect();
        if left.len() <= 6 || std::time::Instant::now() > deadline {
            break left;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let want: BTreeSet<String> =
        ["dock-01/.hidden.mp4", "dock-01/clip.mp4.part", "dock-01/upload.tmp", "dock-01/backup.mp4~", "edge-cases/zero-byte.mp4"]
            .into_iter()
            .map(String::from)
            .collect();
    assert_eq!(left, want, "only ignored and empty files stay on the docks");
    assert!(std::fs::symlink_metadata(d1.join("link.mp4")).is_ok(), "symlink left alone");
    assert!(outside.exists(), "symlink target untouched");

    // The custody log: one valid chain, with the empty file recorded.
    let cat = evidenced::catalog::open(&spec.catalog_url, 1).await.unwrap();
    let events = cat.custody_events(None, 0, 100_000).await.unwrap();
    assert!(
        events.iter().any(|e| e.body.kind == "zero_length_seen" && e.body.details["path"].as_str().unwrap().ends_with("zero-byte.mp4"))
    );
    let mut prev = evidenced::custody::GENESIS.to_string();
    for e in &events {
        assert_eq!(e.body.prev_hash, prev);
        assert_eq!(evidenced::custody::entry_hash(&e.body), e.hash);
        prev = e.hash.clone();
    }
    let custody = daemon.json(&format!("/api/v1/recordings/{}/custody", cam["id"].as_str().unwrap())).await;
    let kinds: Vec<&str> = custody["items"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["archived", "dock_released"]);

    original_download(&daemon, cam, &corpus.join("dock-02/BWC1E55A0/BWC1E55A0_P33005_20240317221009_0001.mp4")).await;
    api_access_control(&daemon, cam).await;

    let metrics = daemon.get_as("/metrics", "").await.text().await.unwrap();
    assert!(metrics.contains(&format!("evidenced_files_ingested_total {}", expected.len())), "{metrics}");
    assert!(daemon.alive(), "bad files never crash the daemon");
    assert_eq!(daemon.stop(), Some(0), "clean stop on SIGTERM");
}

async fn original_download(daemon: &Daemon, rec: &serde_json::Value, source: &Path) {
    let bytes = std::fs::read(source).unwrap();
    let id = rec["id"].as_str().unwrap();
    let path = format!("/api/v1/recordings/{id}/original");
    let r = daemon.get(&path).await;
    assert_eq!(r.status(), 200);
    let h = r.headers().clone();
    let digest = format!("sha-256=:{}:", base64_of(&hex::decode(rec["sha256"].as_str().unwrap()).unwrap()));
    assert_eq!(h["repr-digest"], digest.as_str());
    assert_eq!(h["content-digest"], digest.as_str());
    assert_eq!(h["etag"], format!("\"{}\"", rec["sha256"].as_str().unwrap()).as_str());
    assert_eq!(h["accept-ranges"], "bytes");
    assert_eq!(h["content-type"], "video/mp4");
    assert!(h.get("content-encoding").is_none());
    assert_eq!(r.bytes().await.unwrap().to_vec(), bytes);

    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{}{path}", daemon.port);
    let get = |range: &str| client.get(&url).bearer_auth(&daemon.token).header("range", range.to_string()).send();
    let r = get("bytes=100-199").await.unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.headers()["content-range"], format!("bytes 100-199/{}", bytes.len()).as_str());
    assert!(r.headers().get("content-digest").is_none());
    assert_eq!(r.headers()["repr-digest"], digest.as_str());
    assert_eq!(r.bytes().await.unwrap().to_vec(), &bytes[100..200]);
    let r = get("bytes=-50").await.unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.bytes().await.unwrap().to_vec(), &bytes[bytes.len() - 50..]);
    let r = get(&format!("bytes={}-", bytes.len())).await.unwrap();
    assert_eq!(r.status(), 416);
    assert_eq!(r.headers()["content-range"], format!("bytes */{}", bytes.len()).as_str());
    let r = client
        .get(&url)
        .bearer_auth(&daemon.token)
        .header("if-none-match", format!("\"{}\"", rec["sha256"].as_str().unwrap()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);
}

fn base64_of(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(b)
}

async fn api_access_control(daemon: &Daemon, cam: &serde_json::Value) {
    let id = cam["id"].as_str().unwrap();
    // No token, a wrong token: 401 with a JSON error.
    for token in ["", "evd_wrong"] {
        let r = daemon.get_as("/api/v1/recordings", token).await;
        assert_eq!(r.status(), 401);
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "unauthorized");
    }
    assert_eq!(daemon.get_as("/api/v1/no-such-route", "").await.status(), 401);
    assert_eq!(daemon.get("/api/v1/no-such-route").await.status(), 404);
    // Bad input: 400 with a code naming the problem.
    for q in ["limit=0", "from=yesterday", "cursor=zzz", "bogus=1", "needs_review=maybe"] {
        let r = daemon.get(&format!("/api/v1/recordings?{q}")).await;
        assert_eq!(r.status(), 400, "{q}");
        let v: serde_json::Value = r.json().await.unwrap();
        assert!(v["error"]["code"].as_str().unwrap().starts_with("invalid") || v["error"]["code"] == "unknown_parameter", "{q}: {v}");
    }
    for bad in ["../../etc/passwd", "%2e%2e%2fx", "nope"] {
        assert_eq!(daemon.get(&format!("/api/v1/recordings/{bad}")).await.status(), 404, "{bad}");
    }
    // An officer sees only their own recordings; others' ids are 404; originals are supervisor+.
    let officer = daemon.token_create(&["--name", "p33005", "--role", "officer", "--officer", "P33005"]);
    let mine = daemon.get_as("/api/v1/recordings", &officer).await.json::<serde_json::Value>().await.unwrap();
    let items = mine["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["id"], id);
    let others = daemon.get_as("/api/v1/recordings?limit=500", &daemon.token).await.json::<serde_json::Value>().await.unwrap();
    let other_id =
        others["items"].as_array().unwrap().iter().find(|r| r["officer"] != "P33005").unwrap()["id"].as_str().unwrap().to_string();
    assert_eq!(daemon.get_as(&format!("/api/v1/recordings/{other_id}"), &officer).await.status(), 404);
    assert_eq!(daemon.get_as(&format!("/api/v1/recordings/{id}/original"), &officer).await.status(), 403);
    // A supervisor of another unit sees nothing of this one.
    let elsewhere = daemon.token_create(&["--name", "sz", "--role", "supervisor", "--unit", "JS/SZ"]);
    assert_eq!(daemon.get_as(&format!("/api/v1/recordings/{id}"), &elsewhere).await.status(), 404);
    // Admins manage principals, not footage.
    let admin = daemon.token_create(&["--name", "root", "--role", "admin"]);
    assert_eq!(daemon.get_as("/api/v1/recordings", &admin).await.status(), 403);
    // Revocation takes effect at once; expired tokens are refused.
    let (code, _, _) = daemon.cli(&["token", "revoke", "p33005"]);
    assert_eq!(code, 0);
    assert_eq!(daemon.get_as("/api/v1/recordings", &officer).await.status(), 401);
    let short = daemon.token_create(&["--name", "short", "--role", "auditor", "--expires", "1s"]);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(daemon.get_as("/api/v1/recordings", &short).await.status(), 401);
    let (_, list, _) = daemon.cli(&["token", "list"]);
    assert!(list.lines().any(|l| l.starts_with("p33005\tofficer") && l.ends_with("revoked")), "{list}");
    assert!(list.lines().any(|l| l.starts_with("short\t") && l.ends_with("expired")), "{list}");
}

#[tokio::test]
async fn slowly_written_file_is_taken_only_after_it_settles() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = DaemonSpec::station(dir.path());
    spec.docks.push(("d".into(), String::new()));
    let mut daemon = Daemon::configure(dir.path(), &spec);
    daemon.start().await;
    let path = daemon.dock("d").join("slow.mp4");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&path).unwrap();
        for i in 0..10u8 {
            f.write_all(&vec![i; 100_000]).unwrap();
            f.flush().unwrap();
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
    }
    let expected = sha256_file(&path);
    let recs = daemon.wait_recordings(1, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let recs2 = daemon.recordings().await;
    assert_eq!(recs2.len(), 1, "no partial copy was archived: {recs2:?}");
    assert_eq!(recs[0]["sha256"], expected.as_str());
    assert_eq!(recs[0]["size"], 1_000_000);
}

#[tokio::test]
async fn same_bytes_docked_twice_are_one_recording_with_two_sightings() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = DaemonSpec::station(dir.path());
    spec.docks.push(("d".into(), String::new()));
    let mut daemon = Daemon::configure(dir.path(), &spec);
    daemon.start().await;
    let src = dir.path().join("clip.bin");
    write_random(&src, 200_000, 7);
    std::fs::copy(&src, daemon.dock("d").join("first.mp4")).unwrap();
    let recs = daemon.wait_recordings(1, Duration::from_secs(30)).await;
    let id = recs[0]["id"].as_str().unwrap().to_string();
    crate::harness::wait_for("first release", Duration::from_secs(20), || {
        let p = daemon.dock("d").join("first.mp4");
        async move { (!p.exists()).then_some(()) }
    })
    .await;
    std::fs::copy(&src, daemon.dock("d").join("again.mp4")).unwrap();
    let rec = crate::harness::wait_for("second sighting", Duration::from_secs(30), || {
        let d = &daemon;
        let id = id.clone();
        async move {
            let r = d.json(&format!("/api/v1/recordings/{id}")).await;
            (r["sightings"].as_array().unwrap().len() == 2).then_some(r)
        }
    })
    .await;
    assert_eq!(daemon.recordings().await.len(), 1);
    assert!(rec["sightings"][1]["path"].as_str().unwrap().ends_with("again.mp4"));
    let custody = daemon.json(&format!("/api/v1/recordings/{id}/custody")).await;
    let kinds: Vec<&str> = custody["items"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert!(kinds.contains(&"duplicate_sighting"), "{kinds:?}");
    // The redundant upload is deleted by the queued job: one original left in the archive.
    crate::harness::wait_for("redundant upload removed", Duration::from_secs(20), || {
        let archive = dir.path().join("archive");
        async move {
            let originals = files_under(&archive).into_iter().filter(|p| p.ends_with("original")).count();
            (originals == 1).then_some(())
        }
    })
    .await;
    assert!(!daemon.dock("d").join("again.mp4").exists(), "duplicate dock copy released too");
}

/// `kill -9` at random moments while several docks ingest into S3 with a PostgreSQL catalog:
/// afterwards every file is archived exactly once with its true hash, every dock copy is
/// released, no multipart upload is left behind and the custody chain is intact.
#[tokio::test]
async fn kill_9_during_ingest_loses_and_duplicates_nothing() {
    let garage = Garage::start().await;
    let dir = tempfile::tempdir().unwrap();
    let spec = DaemonSpec {
        catalog_url: pg_database().await,
        store_toml: garage.store_toml("kill9/"),
        docks: vec![("a".into(), String::new()), ("b".into(), PATTERN.into())],
        extra: String::new(),
    };
    let mut daemon = Daemon::configure(dir.path(), &spec);
    let mut expected = BTreeMap::new();
    for i in 0..6u64 {
        let p = daemon.dock("a").join(format!("big-{i}.mp4"));
        write_random(&p, 11 * (1 << 20) + i as usize, 100 + i);
        expected.insert(sha256_file(&p), p);
    }
    copy_tree(&corpus().join("dock-01"), &daemon.dock("b"));
    expected.extend(expected_media(&daemon.dock("b")).into_iter().map(|(k, v)| (k, daemon.dock("b").join(v))));

    let mut rng = rand::rng();
    let mut moments = vec![];
    for _ in 0..5 {
        daemon.start().await;
        let ms = rng.random_range(100..2500);
        moments.push(ms);
        tokio::time::sleep(Duration::from_millis(ms)).await;
        daemon.kill9();
    }
    daemon.start().await;
    let recs = daemon.wait_recordings(expected.len(), Duration::from_secs(120)).await;
    let got = by_sha(&recs);
    assert_eq!(recs.len(), expected.len(), "duplicates after kills at {moments:?} ms");
    assert_eq!(got.keys().collect::<BTreeSet<_>>(), expected.keys().collect::<BTreeSet<_>>(), "lost files after kills at {moments:?} ms");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let left: Vec<_> = files_under(&daemon.dock("a")).into_iter().chain(files_under(&daemon.dock("b"))).collect();
        if left.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not released after kills at {moments:?} ms: {left:?}\n{}",
            crate::harness::tail(&daemon.log(), 60)
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // The store holds exactly one original and one manifest per recording, and no stray uploads.
    let cfg = garage.store_config("kill9/");
    let sdk = crate::harness::sdk_client(&garage).await;
    let listed = sdk.list_objects_v2().bucket(crate::harness::GARAGE_BUCKET).prefix("kill9/").send().await.unwrap();
    let keys: Vec<&str> = listed.contents().iter().filter_map(|o| o.key()).collect();
    let originals = keys.iter().filter(|k| k.ends_with("/original")).count();
    assert_eq!(originals, expected.len(), "{keys:?}");
    assert_eq!(keys.iter().filter(|k| k.ends_with("/manifest.json")).count(), expected.len());
    let uploads = sdk.list_multipart_uploads().bucket(crate::harness::GARAGE_BUCKET).prefix("kill9/").send().await.unwrap();
    assert!(uploads.uploads().is_empty(), "stray multipart uploads: {:?}", uploads.uploads());
    let _ = cfg;
    let cat = evidenced::catalog::open(&spec.catalog_url, 1).await.unwrap();
    let events = cat.custody_events(None, 0, 100_000).await.unwrap();
    let mut prev = evidenced::custody::GENESIS.to_string();
    for e in &events {
        assert_eq!(e.body.prev_hash, prev);
        assert_eq!(evidenced::custody::entry_hash(&e.body), e.hash);
        prev = e.hash.clone();
    }
    assert_eq!(events.iter().filter(|e| e.body.kind == "archived").count(), expected.len());
}

/// The S3 endpoint is down for a while: nothing is released, the daemon keeps running and says
/// it is not ready; once the endpoint is back everything archives and is released.
#[tokio::test]
async fn s3_outage_pauses_ingest_without_loss() {
    let mut garage = Garage::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut spec = DaemonSpec::station(dir.path());
    spec.store_toml = garage.store_toml("outage/");
    spec.docks.push(("d".into(), String::new()));
    let mut daemon = Daemon::configure(dir.path(), &spec);
    daemon.start().await;
    garage.stop();
    let mut expected = BTreeSet::new();
    for i in 0..4u64 {
        let p = daemon.dock("d").join(format!("f{i}.mp4"));
        write_random(&p, if i == 0 { 10 << 20 } else { 300_000 }, 50 + i);
        expected.insert(sha256_file(&p));
    }
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(files_under(&daemon.dock("d")).len(), 4, "nothing released while the store is down");
    assert!(daemon.recordings().await.is_empty());
    assert_eq!(daemon.get_as("/readyz", "").await.status(), 503);
    assert!(daemon.alive());
    garage.restart().await;
    let recs = daemon.wait_recordings(4, Duration::from_secs(60)).await;
    assert_eq!(recs.iter().map(|r| r["sha256"].as_str().unwrap().to_string()).collect::<BTreeSet<_>>(), expected);
    crate::harness::wait_for("released after recovery", Duration::from_secs(30), || {
        let d = daemon.dock("d");
        async move { files_under(&d).is_empty().then_some(()) }
    })
    .await;
    assert_eq!(daemon.get_as("/readyz", "").await.status(), 200);
}

/// SIGTERM in the middle of a multipart upload: the daemon exits cleanly within 10 s, and the
/// next start aborts the journaled upload, redoes it and archives the file.
#[tokio::test]
async fn sigterm_mid_upload_stops_in_time_and_resumes() {
    let garage = Garage::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut spec = DaemonSpec::station(dir.path());
    // Through a 4 MiB/s proxy the 60 MiB upload takes about 15 s, longer than the 7 s grace
    // period after SIGTERM: the daemon must abandon it safely and still stop within 10 s.
    let proxy = crate::harness::slow_proxy(garage.port, 4 << 20).await;
    spec.store_toml = garage.store_toml("sigterm/").replace(&garage.endpoint(), &format!("http://127.0.0.1:{proxy}"));
    spec.docks.push(("d".into(), String::new()));
    let mut daemon = Daemon::configure(dir.path(), &spec);
    let p = daemon.dock("d").join("long.mp4");
    write_random(&p, 60 << 20, 99);
    let sha = sha256_file(&p);
    daemon.start().await;
    // Wait until the upload is under way (its multipart upload id is journaled).
    let cat = evidenced::catalog::open(&spec.catalog_url, 1).await.unwrap();
    let node = daemon.node_id();
    crate::harness::wait_for("upload to start", Duration::from_secs(30), || {
        let (cat, node) = (cat.clone(), node.clone());
        async move {
            let due = cat.due_sightings(&node, i64::MAX, 10).await.ok()?;
            due.iter().any(|s| s.upload_id.is_some()).then_some(())
        }
    })
    .await;
    let t = std::time::Instant::now();
    assert_eq!(daemon.stop(), Some(0));
    assert!(t.elapsed() < Duration::from_secs(10), "stopped in {:?}", t.elapsed());
    assert!(p.exists(), "not released before it was archived");
    daemon.start().await;
    let recs = daemon.wait_recordings(1, Duration::from_secs(120)).await;
    assert_eq!(recs[0]["sha256"], sha.as_str());
    let sdk = crate::harness::sdk_client(&garage).await;
    crate::harness::wait_for("no stray uploads", Duration::from_secs(20), || {
        let sdk = sdk.clone();
        async move {
            let u = sdk.list_multipart_uploads().bucket(crate::harness::GARAGE_BUCKET).prefix("sigterm/").send().await.ok()?;
            u.uploads().is_empty().then_some(())
        }
    })
    .await;
}
