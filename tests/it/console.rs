//! The web console in a real browser: this test starts the daemon with two docks, docks a 5 s
//! H.264 camera clip, a classified camera clip and an interview-room WAV from the fixture corpus,
//! waits until their media is derived, and then runs `tests/browser/console.mjs` (Playwright on
//! Debian's headless Chromium) against it: sign-in (and a refused token), search with posters,
//! playing and seeking the proxy, a clip with its SHA-256, linking a case, a classified recording
//! opened with a reason, a live arrival, an officer's 403 and the archivist's annual report.
//!
//! Chromium, node and the npm packages are installed by `scripts/test`; without them this test
//! fails (it never skips). With `EVIDENCED_SCREENSHOTS=1` the screenshots go to `docs/console/`.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{Daemon, DaemonSpec, corpus, tail, wait_for};

/// Longest the browser script may run before it is killed.
const SCRIPT_LIMIT: Duration = Duration::from_secs(120);

const PATTERN: &str = "{device}/{device}_{officer}_{start:%Y%m%d%H%M%S}_{seq}.{ext}";

/// The browser test's prerequisites, or a message saying how to get them.
fn prerequisites(root: &Path) -> Result<(), String> {
    let how = "run scripts/test once (it installs Debian's chromium and nodejs and runs `npm ci --prefix tests/browser`)";
    if !Path::new("/usr/bin/chromium").exists() {
        return Err(format!("/usr/bin/chromium is missing: {how}"));
    }
    if !root.join("tests/browser/node_modules/playwright-core").exists() {
        return Err(format!("tests/browser/node_modules/playwright-core is missing: {how}"));
    }
    if Command::new("node").arg("--version").output().map(|o| !o.status.success()).unwrap_or(true) {
        return Err(format!("node is missing: {how}"));
    }
    Ok(())
}

/// Copies a corpus file into a dock (through a hidden name the daemon ignores, then a rename).
fn dock_file(from: &Path, to: &Path) {
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    let tmp = to.with_file_name(format!(".{}.tmp", to.file_name().unwrap().to_string_lossy()));
    std::fs::copy(from, &tmp).unwrap();
    std::fs::rename(&tmp, to).unwrap();
}

/// Runs `node console.mjs` with `envs`, killed after [`SCRIPT_LIMIT`]; returns (success, output).
fn run_script(root: &Path, work: &Path, envs: &[(&str, String)]) -> (bool, String) {
    let out_path = work.join("browser-stdout.txt");
    let err_path = work.join("browser-stderr.txt");
    let mut cmd = Command::new("node");
    cmd.arg("console.mjs")
        .current_dir(root.join("tests/browser"))
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("cannot start node");
    let deadline = Instant::now() + SCRIPT_LIMIT;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let read = |p: &Path| {
        let mut s = String::new();
        let _ = std::fs::File::open(p).and_then(|mut f| f.read_to_string(&mut s));
        s
    };
    let mut output = format!("--- stdout\n{}--- stderr\n{}", read(&out_path), read(&err_path));
    if status.is_none() {
        output.push_str(&format!("--- killed after {SCRIPT_LIMIT:?}\n"));
    }
    (status.is_some_and(|s| s.success()), output)
}

#[tokio::test]
async fn console_works_in_headless_chromium() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    if let Err(e) = prerequisites(&root) {
        panic!("the browser test cannot run: {e}");
    }
    let corpus = corpus();
    let dir = tempfile::tempdir().unwrap();
    let mut spec = DaemonSpec::station(dir.path());
    spec.docks =
        vec![("cam".into(), format!("pattern = \"{PATTERN}\"\nunit = \"JS/NJ/XW\"\n")), ("room".into(), "unit = \"JS/NJ/INT\"\n".into())];
    let mut d = Daemon::configure(dir.path(), &spec);
    // The officer whose recording the 5 s clip is (its sidecar and name say P33005).
    let officer = d.token_create(&["--name", "p33005", "--role", "officer", "--officer", "P33005"]);
    let archivist = d.token_create(&["--name", "arch", "--role", "archivist"]);
    d.start().await;

    // The 5 s 720p H.264 clip with its sidecar: searched, played, clipped, linked.
    let main = "dock-02/BWC1E55A0/BWC1E55A0_P33005_20240317221009_0001";
    for ext in ["mp4", "json"] {
        dock_file(
            &corpus.join(format!("{main}.{ext}")),
            &d.dock("cam").join(format!("BWC1E55A0/BWC1E55A0_P33005_20240317221009_0001.{ext}")),
        );
    }
    // A classified one (privacy, category evidence), from its sidecar.
    let secret = "dock-01/BWC9C0D13/BWC9C0D13_P20917_20240316080500_0001";
    let mut sidecar: serde_json::Value = serde_json::from_slice(&std::fs::read(corpus.join(format!("{secret}.json"))).unwrap()).unwrap();
    sidecar["classification"] = "privacy".into();
    sidecar["category"] = "evidence".into();
    let secret_dest = d.dock("cam").join("BWC9C0D13/BWC9C0D13_P20917_20240316080500_0001.mp4");
    std::fs::create_dir_all(secret_dest.parent().unwrap()).unwrap();
    std::fs::write(secret_dest.with_extension("json"), sidecar.to_string()).unwrap();
    dock_file(&corpus.join(format!("{secret}.mp4")), &secret_dest);
    // Audio only: no poster.
    let wav = "interview-room/ROOM-3/ROOM-3_20240315093000_0001.wav";
    dock_file(&corpus.join(wav), &d.dock("room").join("ROOM-3/ROOM-3_20240315093000_0001.wav"));

    d.wait_recordings(3, Duration::from_secs(60)).await;
    // From the list: reading one classified recording would need a reason.
    let recs = wait_for("media of the three recordings", Duration::from_secs(240), || {
        let d = &d;
        async move {
            let recs = d.recordings().await;
            recs.iter().all(|r| r["media_state"] != "pending").then_some(recs)
        }
    })
    .await;
    for r in &recs {
        assert_eq!(r["media_state"], "ready", "media of {}: {r}\n{}", r["original_name"], tail(&d.log(), 30));
    }
    let classified =
        recs.iter().find(|r| r["classification"] != "normal").unwrap_or_else(|| panic!("the sidecar classifies one: {recs:?}"));

    let screenshots = match std::env::var("EVIDENCED_SCREENSHOTS").as_deref() {
        Ok("1") => root.join("docs/console"),
        _ => dir.path().join("screenshots"),
    };
    let new_video = corpus.join("dock-01/BWC4A7F21/BWC4A7F21_P10482_20240315143240_0002.mp4");
    let envs = [
        ("BASE_URL", format!("http://127.0.0.1:{}", d.port)),
        ("TOKEN", d.token.clone()),
        ("OFFICER_TOKEN", officer),
        ("ARCHIVIST_TOKEN", archivist),
        ("SEARCH_DEVICE", "BWC1E55A0".to_string()),
        ("CLASSIFIED_NAME", classified["original_name"].as_str().unwrap().to_string()),
        ("DOCK_DIR", d.dock("cam").display().to_string()),
        ("NEW_VIDEO", new_video.display().to_string()),
        ("NEW_VIDEO_DEST", "BWC4A7F21/BWC4A7F21_P10482_20240315143240_0002.mp4".to_string()),
        ("SCREENSHOT_DIR", screenshots.display().to_string()),
    ];
    let (ok, output) = tokio::task::spawn_blocking({
        let (root, work) = (root.clone(), dir.path().to_path_buf());
        move || run_script(&root, &work, &envs)
    })
    .await
    .unwrap();
    println!("{output}");
    assert!(ok, "the browser test failed:\n{output}\n--- daemon log (tail)\n{}", tail(&d.log(), 60));
}
