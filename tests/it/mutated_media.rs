//! The media child fed hostile files: recordings from the fixture corpus mutated deterministically
//! (bit flips, truncation, chunks duplicated, deleted or zeroed, random header bytes, corrupted
//! box and chunk sizes), each run through `evidenced-media-worker` probe, proxy and poster under
//! the daemon's limits, then through the daemon's own `derive` job. Every run must end in bounded
//! time with a result or a clean error (exit code 1 or 2 and one JSON line naming the error),
//! never a signal, a panic or a hang; and the daemon must mark whatever does not decode
//! unplayable, with the reason, while the original stays archived.

use std::ffi::OsString;
use std::io::Read;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use evidenced::catalog::{self, ArchiveOutcome, Catalog, Fingerprint, Job, NewRecording, NewSighting};
use evidenced::config::MediaConfig;
use evidenced::jobs::JobHandler;
use evidenced::media::{Deriver, Runner};
use evidenced::metrics::Metrics;
use evidenced::store::fs::FsStore;
use evidenced::store::{NoJournal, ObjectStore};
use serde_json::Value;

use crate::harness::{corpus, sha256_file};

/// The corpus files mutated: small ones of every container and codec the corpus has, so that
/// the whole test stays within its budget (about a minute on 2 cores).
const SOURCES: [&str; 6] = [
    "证据 视频 2024-03-15 第1段.mp4",
    "BWC1E55A0_P33005_20240317221009_0001.mp4",
    "IMG_0042.MOV",
    "LEGACY07_P07777_20190601100000_0001.avi",
    "ROOM-3_20240315093000_0001.wav",
    "BWC7F00B2_P41200_20240318061530_0001.mp4",
];

/// The mutations; every source gets each of them once.
const KINDS: [&str; 8] = ["bitflip", "headflip", "truncate", "duplicate", "delete", "headbytes", "boxsize", "zerofill"];

/// Wall-clock limit of one worker run. Far above what any run here needs (a few seconds).
const WALL: Duration = Duration::from_secs(60);

/// SplitMix64: a seeded generator whose sequence no crate upgrade can change.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..hi` (`lo` when the range is empty).
    fn range(&mut self, lo: usize, hi: usize) -> usize {
        if hi <= lo { lo } else { lo + (self.next() % (hi - lo) as u64) as usize }
    }
}

/// Applies mutation `kind` to `d`.
fn mutate(d: &mut Vec<u8>, kind: &str, rng: &mut Rng) {
    let len = d.len();
    match kind {
        "bitflip" => {
            for _ in 0..rng.range(1, 33) {
                let bit = rng.range(0, len * 8);
                d[bit / 8] ^= 1 << (bit % 8);
            }
        }
        // The first 64 KiB hold the container headers (and the moov of a faststart MP4).
        "headflip" => {
            for _ in 0..rng.range(8, 65) {
                let bit = rng.range(0, len.min(64 << 10) * 8);
                d[bit / 8] ^= 1 << (bit % 8);
            }
        }
        "truncate" => d.truncate(rng.range(len / 10, len * 9 / 10)),
        "duplicate" => {
            let n = rng.range(1, 64 << 10).min(len);
            let from = rng.range(0, len - n);
            let chunk = d[from..from + n].to_vec();
            let at = rng.range(0, len);
            d.splice(at..at, chunk);
        }
        "delete" => {
            let n = rng.range(1, 64 << 10).min(len / 2);
            let from = rng.range(0, len - n);
            d.drain(from..from + n);
        }
        "headbytes" => {
            let n = rng.range(16, 513);
            let at = rng.range(0, 4096.min(len - n));
            for b in &mut d[at..at + n] {
                *b = rng.next() as u8;
            }
        }
        // The size field in front of an MP4 box or a RIFF chunk, set to something hostile.
        "boxsize" => {
            let tags: [&[u8]; 11] = [b"moov", b"trak", b"mdia", b"stsd", b"stsz", b"stco", b"mdat", b"RIFF", b"LIST", b"movi", b"data"];
            let found: Vec<(usize, bool)> = tags
                .iter()
                .flat_map(|t| d.windows(4).enumerate().filter(move |(_, w)| w == t).map(|(i, _)| i).take(4))
                .map(|i| (i, d[i] == b'R' || d[i..].starts_with(b"LIST") || d[i..].starts_with(b"movi") || d[i..].starts_with(b"data")))
                .collect();
            assert!(!found.is_empty(), "no box or chunk to corrupt");
            let (at, riff) = found[rng.range(0, found.len())];
            let size: u32 = [0, 1, 7, 8, u32::MAX, u32::MAX / 2, len as u32 + 1, rng.next() as u32][rng.range(0, 8)];
            // MP4: big-endian size before the type; RIFF: little-endian size after the id.
            if riff && at + 8 <= len {
                d[at + 4..at + 8].copy_from_slice(&size.to_le_bytes());
            } else if at >= 4 {
                d[at - 4..at].copy_from_slice(&size.to_be_bytes());
            }
        }
        "zerofill" => {
            let n = rng.range(4 << 10, 64 << 10).min(len / 2);
            let from = rng.range(0, len - n);
            d[from..from + n].fill(0);
        }
        other => unreachable!("{other}"),
    }
}

/// How one worker run ended.
#[derive(Debug)]
enum Ending {
    /// Exit 0 with a result.
    Ok(Value),
    /// Exit 1 (the file) or 2 (not applicable) with `{"error": ...}`.
    Clean(i32, String),
    /// Anything else: a signal, a panic, another exit code, no JSON, or the wall-clock limit.
    Crash(String),
}

/// Runs the worker as the daemon does (address-space and CPU limits, no stdin) with a wall-clock
/// limit; `out` is the output file, which must not exist after a failure.
fn run_worker(args: &[OsString], out: Option<&Path>) -> Ending {
    let cfg = MediaConfig::default();
    let mem = cfg.memory_limit_mib << 20;
    let cpu = WALL.as_secs() * 2;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_evidenced-media-worker"));
    cmd.args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    // SAFETY: only async-signal-safe calls (setrlimit) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let as_limit = libc::rlimit { rlim_cur: mem, rlim_max: mem };
            let cpu_limit = libc::rlimit { rlim_cur: cpu, rlim_max: cpu + 5 };
            if libc::setrlimit(libc::RLIMIT_AS, &as_limit) != 0 || libc::setrlimit(libc::RLIMIT_CPU, &cpu_limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let started = Instant::now();
    let mut child = cmd.spawn().expect("the media worker starts");
    // Drain both pipes while waiting, so a chatty child cannot block on a full pipe.
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = so.read_to_end(&mut s);
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = se.read_to_end(&mut s);
        s
    });
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if started.elapsed() > WALL {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let stdout = String::from_utf8_lossy(&t_out.join().unwrap()).into_owned();
    let stderr = String::from_utf8_lossy(&t_err.join().unwrap()).into_owned();
    let Some(status) = status else { return Ending::Crash(format!("still running after {} s (killed)", WALL.as_secs())) };
    if let Some(sig) = status.signal() {
        return Ending::Crash(format!("signal {sig}; stderr: {}", crate::harness::tail(&stderr, 5)));
    }
    if stderr.contains("panicked") {
        return Ending::Crash(format!("panicked: {}", crate::harness::tail(&stderr, 5)));
    }
    let lines: Vec<&str> = stdout.lines().filter(|l| !l.trim().is_empty()).collect();
    let json: Option<Value> = match lines.as_slice() {
        [one] => serde_json::from_str(one).ok(),
        _ => None,
    };
    let Some(json) = json else { return Ending::Crash(format!("exit {status}, not one JSON line: {stdout:?}")) };
    match (status.code(), json["error"].as_str()) {
        (Some(0), None) => {
            if let Some(p) = out.filter(|p| !p.exists()) {
                return Ending::Crash(format!("success without {}", p.display()));
            }
            Ending::Ok(json)
        }
        (Some(c @ (1 | 2)), Some(e)) if !e.trim().is_empty() => {
            if let Some(p) = out.filter(|p| p.exists()) {
                return Ending::Crash(format!("error {e:?} but {} was left behind", p.display()));
            }
            Ending::Clean(c, e.to_string())
        }
        (c, _) => Ending::Crash(format!("exit {c:?} with {json}")),
    }
}

/// A fresh station: SQLite catalog, `fs` store, and the daemon's `derive` job handler.
async fn station(dir: &Path) -> (Arc<dyn Catalog>, Arc<dyn ObjectStore>, Deriver) {
    let catalog = catalog::open(&format!("sqlite://{}/catalog.db", dir.display()), 2).await.unwrap();
    let store: Arc<dyn ObjectStore> = Arc::new(FsStore::open(dir.join("archive")).unwrap());
    let cfg = MediaConfig { timeout: WALL, ..MediaConfig::default() };
    let tmp = dir.join("media-tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let runner = Runner { cfg, exe: PathBuf::from(env!("CARGO_BIN_EXE_evidenced-media-worker")), tmp };
    let deriver =
        Deriver { catalog: catalog.clone(), store: store.clone(), runner, metrics: Arc::new(Metrics::new()), actor: "node:n1".into() };
    (catalog, store, deriver)
}

/// Archives `file` as a new recording (as ingest would) and returns its id and the stored file
/// the daemon hands to the worker, or `None` when the same bytes were archived already.
async fn archive(catalog: &dyn Catalog, store: &dyn ObjectStore, file: &Path, n: i64) -> Option<(String, PathBuf)> {
    let size = std::fs::metadata(file).unwrap().len();
    let name = file.file_name().unwrap().to_string_lossy().into_owned();
    let sighting = NewSighting {
        node: "n1".into(),
        dock: "d1".into(),
        path: name.as_bytes().to_vec(),
        path_display: name.clone(),
        fingerprint: Fingerprint { dev: 1, ino: n, size: size as i64, mtime_ns: n, ctime_ns: n },
        actor: "node:n1".into(),
    };
    let (s, _) = catalog.record_sighting(&sighting).await.unwrap();
    let key = format!("originals/n1/{}/original", s.id);
    let receipt = store.put_file(&key, std::fs::File::open(file).unwrap(), size, &NoJournal).await.unwrap();
    let stored = store.local_path(&key).expect("the fs store has local files");
    let rec = NewRecording {
        sha256: receipt.sha256.clone(),
        size: size as i64,
        object_key: key,
        manifest_key: format!("originals/n1/{}/manifest.json", s.id),
        extension: file.extension().unwrap().to_string_lossy().to_ascii_lowercase(),
        original_name: name,
        node: "n1".into(),
        ..Default::default()
    };
    match catalog.commit_archive(&s.id, &rec, "node:n1", None).await.unwrap() {
        ArchiveOutcome::Archived(id) => Some((id, stored)),
        ArchiveOutcome::Duplicate(_) => None,
    }
}

#[tokio::test]
async fn mutated_corpus_files_fail_cleanly() {
    let started = Instant::now();
    let corpus = corpus();
    let manifest = std::fs::read_to_string(corpus.join("manifest.tsv")).unwrap();
    let sources: Vec<PathBuf> = SOURCES
        .iter()
        .filter_map(|name| manifest.lines().filter_map(|l| l.split('\t').next()).find(|p| p.ends_with(name)).map(|p| corpus.join(p)))
        .collect();
    // The HEVC file is absent when this FFmpeg has no libx265; every other one must be there.
    assert!(sources.len() >= SOURCES.len() - 1, "sources missing from the corpus: {sources:?}");

    let dir = tempfile::tempdir().unwrap();
    let files = dir.path().join("files");
    let outs = dir.path().join("out");
    std::fs::create_dir_all(&files).unwrap();
    std::fs::create_dir_all(&outs).unwrap();
    let (catalog, store, deriver) = station(&dir.path().join("station")).await;

    let (mut variants, mut ok, mut clean, mut not_applicable, mut playable, mut unplayable) = (0, 0, 0, 0, 0, 0);
    let mut crashes: Vec<String> = Vec::new();
    let mut rng = Rng(0x00e1_d3ce_d007);
    for (s, source) in sources.iter().enumerate() {
        let original = std::fs::read(source).unwrap();
        let ext = source.extension().unwrap().to_string_lossy().to_ascii_lowercase();
        for kind in KINDS {
            let mut d = original.clone();
            mutate(&mut d, kind, &mut rng);
            if d == original {
                continue;
            }
            let what = format!("{} {kind}", source.file_name().unwrap().to_string_lossy());
            let file = files.join(format!("v{s}-{kind}.{ext}"));
            std::fs::write(&file, &d).unwrap();
            // Archived whatever its bytes; the worker then reads the stored file, as in the daemon.
            let Some((id, stored)) = archive(catalog.as_ref(), store.as_ref(), &file, variants + 1).await else { continue };
            variants += 1;

            // The child on its own: probe, proxy, poster.
            let proxy = outs.join(format!("v{s}-{kind}.mp4"));
            let poster = outs.join(format!("v{s}-{kind}.jpg"));
            let runs: [(&str, Vec<OsString>, Option<&Path>); 3] = [
                ("probe", vec!["probe".into(), stored.clone().into()], None),
                ("proxy", vec!["proxy".into(), stored.clone().into(), proxy.clone().into()], Some(&proxy)),
                (
                    "poster",
                    vec!["poster".into(), stored.clone().into(), poster.clone().into(), "--max-height".into(), "720".into()],
                    Some(&poster),
                ),
            ];
            let mut endings = Vec::new();
            for (op, args, out) in runs {
                let ending = run_worker(&args, out);
                match &ending {
                    // A result the daemon can use: what it reads from each operation's JSON.
                    Ending::Ok(v) => {
                        let usable = match op {
                            "probe" => v["streams"].is_array() && v["has_video"].is_boolean(),
                            "proxy" => ["video/mp4", "audio/mp4"].contains(&v["content_type"].as_str().unwrap_or_default()),
                            _ => v["width"].as_i64().is_some_and(|w| w > 0),
                        };
                        if usable {
                            ok += 1;
                        } else {
                            crashes.push(format!("{what} ({}): {op}: exit 0 with an unusable result {v}", file.display()));
                        }
                    }
                    Ending::Clean(code, _) => {
                        clean += 1;
                        not_applicable += usize::from(*code == 2);
                    }
                    Ending::Crash(why) => crashes.push(format!("{what} ({}): {op}: {why}", file.display())),
                }
                endings.push(ending);
            }

            // The daemon's derive job either makes it playable or marks it unplayable with the reason.
            let job = Job {
                id: format!("job-{variants}"),
                kind: "derive".into(),
                dedupe_key: id.clone(),
                payload: serde_json::json!({"recording_id": id}),
                attempts: 1,
                lease_token: String::new(),
            };
            if let Err(e) = deriver.handle(&job).await {
                crashes.push(format!("{what}: the derive job failed (it would be retried forever): {e:#}"));
                continue;
            }
            let r = catalog.recording(&id).await.unwrap();
            match r.media_state.as_str() {
                "ready" => {
                    playable += 1;
                    assert!(r.playable && r.proxy.is_some(), "{what}: ready without a proxy: {r:?}");
                    assert!(matches!(endings[1], Ending::Ok(_)), "{what}: the daemon made a proxy the worker could not: {:?}", endings[1]);
                }
                "failed" => {
                    unplayable += 1;
                    let reason = r.media_error.clone().unwrap_or_default();
                    assert!(!r.playable && r.proxy.is_none() && !reason.trim().is_empty(), "{what}: unplayable without a reason: {r:?}");
                    // The reason is the worker's own message for the step that failed.
                    let said = match (&endings[0], &endings[1]) {
                        (Ending::Clean(_, e), _) | (Ending::Ok(_), Ending::Clean(_, e)) => Some(e),
                        _ => None,
                    };
                    assert!(said.is_none_or(|e| reason == *e), "{what}: reason {reason:?}, worker said {said:?}");
                }
                other => panic!("{what}: media_state {other:?} after derivation"),
            }
            assert_eq!(sha256_file(&file), r.sha256, "{what}: the original is archived as it came");
        }
    }
    // No temporary file of a failed run is left in the output directory.
    for e in std::fs::read_dir(&outs).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        assert!(!name.contains(".tmp"), "left behind: {name}");
    }
    println!(
        "mutated media: {variants} variants from {} corpus files, {} worker runs (probe, proxy, poster): {ok} ok, \
         {clean} clean errors ({not_applicable} of them exit 2, not applicable), {} crashes or hangs; \
         daemon: {playable} playable, {unplayable} unplayable with a reason; {:.1} s",
        sources.len(),
        variants * 3,
        crashes.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(variants >= 36, "only {variants} variants");
    assert!(crashes.is_empty(), "{} of the media worker's runs crashed or hung:\n{}", crashes.len(), crashes.join("\n"));
    assert!(unplayable > 0 && playable > 0, "the mutations should break some files and spare others");
}
