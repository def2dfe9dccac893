//! Media end to end through the daemon: every fixture gets probed, a browser-playable proxy and
//! a poster (or a clear failure), clips are cut with their own hash and lineage, and a worker
//! that exceeds its limit is killed while the daemon carries on.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::harness::{Daemon, DaemonSpec, copy_tree, corpus, sha256_file, wait_for};

/// `ffprobe` JSON of a file.
pub fn ffprobe(p: &Path) -> serde_json::Value {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-print_format", "json", "-show_format", "-show_streams"])
        .arg(p)
        .output()
        .expect("ffprobe is required");
    serde_json::from_slice(&out.stdout).unwrap_or_default()
}

fn duration_s(probe: &serde_json::Value) -> f64 {
    probe["format"]["duration"].as_str().and_then(|d| d.parse().ok()).unwrap_or(-1.0)
}

/// Whether the `moov` box comes before `mdat` (faststart).
fn moov_first(bytes: &[u8]) -> bool {
    let mut i = 0usize;
    while i + 8 <= bytes.len() {
        let size = u32::from_be_bytes(bytes[i..i + 4].try_into().unwrap()) as usize;
        match &bytes[i + 4..i + 8] {
            b"moov" => return true,
            b"mdat" => return false,
            _ => {}
        }
        if size < 8 {
            return false;
        }
        i += size;
    }
    false
}

async fn download(d: &Daemon, path: &str, dest: &Path) -> reqwest::StatusCode {
    let r = d.get(path).await;
    let status = r.status();
    std::fs::write(dest, r.bytes().await.unwrap()).unwrap();
    status
}

#[tokio::test]
async fn every_fixture_gets_a_proxy_poster_or_a_clear_failure() {
    let corpus = corpus();
    let dir = tempfile::tempdir().unwrap();
    let mut spec = DaemonSpec::station(dir.path());
    spec.docks.push(("all".into(), String::new()));
    let mut daemon = Daemon::configure(dir.path(), &spec);
    daemon.start().await;
    let manifest = std::fs::read_to_string(corpus.join("manifest.tsv")).unwrap();
    // sha256 -> (corpus path, expect)
    let mut expected: BTreeMap<String, (std::path::PathBuf, String)> = BTreeMap::new();
    for line in manifest.lines().skip(1) {
        let cols: Vec<&str> = line.split('\t').collect();
        let (rel, expect, kind) = (cols[0], cols[1], cols[2]);
        if kind.contains("sidecar") || std::fs::metadata(corpus.join(rel)).unwrap().len() == 0 {
            continue;
        }
        expected.insert(sha256_file(&corpus.join(rel)), (corpus.join(rel), expect.to_string()));
    }
    for sub in ["dock-01", "dock-02", "import", "interview-room", "edge-cases"] {
        copy_tree(&corpus.join(sub), &daemon.dock("all").join(sub));
    }
    daemon.wait_recordings(expected.len(), Duration::from_secs(60)).await;
    let recs = wait_for("media derivation of the whole corpus", Duration::from_secs(600), || {
        let d = &daemon;
        async move {
            let recs = d.recordings().await;
            recs.iter().all(|r| r["media_state"] != "pending").then_some(recs)
        }
    })
    .await;
    let work = tempfile::tempdir().unwrap();
    for r in &recs {
        let sha = r["sha256"].as_str().unwrap();
        let (source, expect) = &expected[sha];
        let id = r["id"].as_str().unwrap();
        let name = source.file_name().unwrap().to_string_lossy().to_string();
        match expect.as_str() {
            "error" => {
                assert_eq!(r["playable"], false, "{name}");
                assert!(r["media_error"].as_str().is_some_and(|e| !e.is_empty()), "{name}: {r}");
                assert_eq!(daemon.get(&format!("/api/v1/recordings/{id}/proxy")).await.status(), 404);
            }
            _ => {
                assert_eq!(r["playable"], true, "{name}: {r}");
                let proxy = work.path().join(format!("{id}.mp4"));
                assert_eq!(download(&daemon, &format!("/api/v1/recordings/{id}/proxy"), &proxy).await, 200);
                let p = ffprobe(&proxy);
                let src = ffprobe(source);
                let streams = p["streams"].as_array().unwrap();
                let v = streams.iter().find(|s| s["codec_type"] == "video");
                let a = streams.iter().find(|s| s["codec_type"] == "audio");
                assert!(p["format"]["format_name"].as_str().unwrap().contains("mp4"), "{name}");
                assert!(moov_first(&std::fs::read(&proxy).unwrap()), "{name}: moov before mdat");
                let has_video = src["streams"].as_array().unwrap().iter().any(|s| s["codec_type"] == "video");
                if has_video {
                    let v = v.unwrap_or_else(|| panic!("{name}: proxy has video"));
                    assert_eq!((v["codec_name"].as_str(), v["pix_fmt"].as_str()), (Some("h264"), Some("yuv420p")), "{name}");
                    assert!(v["height"].as_i64().unwrap() <= 720, "{name}");
                    let poster = work.path().join(format!("{id}.jpg"));
                    assert_eq!(download(&daemon, &format!("/api/v1/recordings/{id}/poster"), &poster).await, 200);
                    assert_eq!(&std::fs::read(&poster).unwrap()[..2], &[0xff, 0xd8], "{name}: JPEG");
                    assert_eq!(ffprobe(&poster)["streams"][0]["codec_name"], "mjpeg");
                } else {
                    assert!(v.is_none());
                    let resp = daemon.get(&format!("/api/v1/recordings/{id}/poster")).await;
                    assert_eq!(resp.status(), 404);
                    assert_eq!(resp.json::<serde_json::Value>().await.unwrap()["error"]["code"], "no_poster");
                }
                if a.is_some() || src["streams"].as_array().unwrap().iter().any(|s| s["codec_type"] == "audio") {
                    assert_eq!(a.map(|a| a["codec_name"].as_str()), Some(Some("aac")), "{name}");
                }
                if expect == "partial" {
                    assert!(r["media_warning"].as_str().is_some_and(|w| w.starts_with("decoded")), "{name}: {r}");
                } else {
                    let (d_src, d_proxy) = (duration_s(&src), duration_s(&p));
                    assert!((d_src - d_proxy).abs() <= 0.5, "{name}: proxy {d_proxy} s vs original {d_src} s");
                }
                assert!(r["media"]["streams"].is_array(), "{name}: probe results on the recording");
            }
        }
    }
    // Container metadata fills attribution gaps: the MOV has a location and a creation time.
    let mov = recs.iter().find(|r| r["original_name"] == "IMG_0042.MOV").unwrap();
    assert!(mov["location"]["lat"].is_number(), "{mov}");
    assert!(mov["started_at"].is_string(), "{mov}");

    // Range on a proxy.
    let cam = recs.iter().find(|r| r["original_name"] == "BWC4A7F21_P10482_20240315142205_0001.mp4").unwrap();
    let id = cam["id"].as_str().unwrap();
    let r = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{}/api/v1/recordings/{id}/proxy", daemon.port))
        .bearer_auth(&daemon.token)
        .header("range", "bytes=0-99")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.headers()["content-type"], "video/mp4");
    assert_eq!(r.bytes().await.unwrap().len(), 100);

    // Clips: stream copy (± one GOP) and frame-accurate (± one frame), each with its own hash.
    for (accurate, tolerance) in [(false, 1.1), (true, 0.07)] {
        let resp = reqwest::Client::new()
            .post(format!("http://127.0.0.1:{}/api/v1/recordings/{id}/clips", daemon.port))
            .bearer_auth(&daemon.token)
            .json(&serde_json::json!({"start_ms": 3000, "end_ms": 5000, "accurate": accurate, "reason": "case 2024-17"}))
            .send()
            .await
            .unwrap();
        assert!(resp.status() == 201 || resp.status() == 202, "{}", resp.status());
        let clip: serde_json::Value = resp.json().await.unwrap();
        let clip_id = clip["id"].as_str().unwrap().to_string();
        let clip = wait_for("clip", Duration::from_secs(120), || {
            let d = &daemon;
            let clip_id = clip_id.clone();
            async move {
                let c = d.json(&format!("/api/v1/clips/{clip_id}")).await;
                (c["state"] != "pending").then_some(c)
            }
        })
        .await;
        assert_eq!(clip["state"], "ready", "{clip}");
        let f = work.path().join(format!("clip-{accurate}.mp4"));
        assert_eq!(download(&daemon, &format!("/api/v1/clips/{clip_id}/media"), &f).await, 200);
        assert_eq!(sha256_file(&f), clip["sha256"].as_str().unwrap());
        let d = duration_s(&ffprobe(&f));
        assert!((d - 2.0).abs() <= tolerance, "accurate={accurate}: clip lasts {d} s");
        let custody = daemon.json(&format!("/api/v1/recordings/{id}/custody")).await;
        let ev = custody["items"].as_array().unwrap().iter().find(|e| e["kind"] == "clipped" && e["details"]["clip"] == clip_id.as_str());
        let ev = ev.expect("clipped custody event");
        assert_eq!(ev["details"]["sha256"], clip["sha256"]);
        assert_eq!(ev["details"]["reason"], "case 2024-17");
    }
    let bad = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{}/api/v1/recordings/{id}/clips", daemon.port))
        .bearer_auth(&daemon.token)
        .json(&serde_json::json!({"start_ms": 5000, "end_ms": 1000}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    assert!(daemon.alive());
}

/// A worker that runs past its wall-clock limit is killed; the recording is marked failed with
/// the reason, and the daemon carries on with the next file.
#[tokio::test]
async fn a_worker_past_its_limit_is_killed_and_the_daemon_carries_on() {
    let corpus = corpus();
    let dir = tempfile::tempdir().unwrap();
    let mut spec = DaemonSpec::station(dir.path());
    spec.docks.push(("d".into(), String::new()));
    spec.extra = "[media]\ntimeout = \"1s\"\n".into();
    let mut daemon = Daemon::configure(dir.path(), &spec);
    daemon.start().await;
    // A 10 s 1080p file must be re-encoded, which takes several seconds here.
    let long = corpus.join("dock-01/BWC4A7F21/BWC4A7F21_P10482_20240315142205_0001.mp4");
    std::fs::copy(&long, daemon.dock("d").join("long.mp4")).unwrap();
    let recs = daemon.wait_recordings(1, Duration::from_secs(30)).await;
    let id = recs[0]["id"].as_str().unwrap().to_string();
    let r = daemon.wait_media(&id, Duration::from_secs(60)).await;
    assert_eq!(r["media_state"], "failed", "{r}");
    assert!(r["media_error"].as_str().unwrap().contains("time limit"), "{r}");
    // The daemon carries on: the next file is archived.
    std::fs::write(daemon.dock("d").join("next.mp4"), b"next file").unwrap();
    daemon.wait_recordings(2, Duration::from_secs(30)).await;
    assert!(daemon.alive());
}

/// With an S3 store the worker gets a temporary local copy (an MP4 with the moov at the end
/// cannot be read from a stream), and the copy is removed afterwards.
#[tokio::test]
async fn media_from_s3_uses_a_temporary_local_copy() {
    let garage = crate::harness::Garage::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut spec = DaemonSpec::station(dir.path());
    spec.store_toml = garage.store_toml("media/");
    spec.docks.push(("d".into(), String::new()));
    let mut daemon = Daemon::configure(dir.path(), &spec);
    daemon.start().await;
    // moov at the end (faststart=no in the manifest).
    let src = corpus().join("dock-01/BWC9C0D13/BWC9C0D13_P20917_20240316080500_0001.mp4");
    std::fs::copy(&src, daemon.dock("d").join("cam.mp4")).unwrap();
    let recs = daemon.wait_recordings(1, Duration::from_secs(30)).await;
    let id = recs[0]["id"].as_str().unwrap().to_string();
    let r = daemon.wait_media(&id, Duration::from_secs(120)).await;
    assert_eq!(r["playable"], true, "{r}");
    let proxy = dir.path().join("proxy.mp4");
    assert_eq!(download(&daemon, &format!("/api/v1/recordings/{id}/proxy"), &proxy).await, 200);
    assert!(moov_first(&std::fs::read(&proxy).unwrap()));
    let leftovers = crate::harness::files_under(&dir.path().join("state/media-tmp"));
    assert!(leftovers.is_empty(), "temporary copies removed: {leftovers:?}");
}
