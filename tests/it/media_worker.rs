//! The media worker (`evidenced-media-worker probe|proxy|poster|clip`) on the fixture corpus,
//! its results checked with the real `ffprobe`.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::harness::corpus;

/// Runs `evidenced-media-worker ARGS`; returns the exit code and the one JSON object it printed.
fn worker<S: AsRef<OsStr>>(args: &[S]) -> (i32, Value) {
    worker_in(None, args)
}

fn worker_in<S: AsRef<OsStr>>(dir: Option<&Path>, args: &[S]) -> (i32, Value) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_evidenced-media-worker"));
    c.args(args);
    if let Some(d) = dir {
        c.current_dir(d);
    }
    let out = c.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let printed: Vec<&str> = stdout.lines().filter(|l| !l.trim().is_empty()).collect();
    let shown: Vec<String> = args.iter().map(|a| a.as_ref().to_string_lossy().into_owned()).collect();
    assert_eq!(printed.len(), 1, "exactly one JSON line from {shown:?}; stdout:\n{stdout}\nstderr:\n{stderr}");
    let v: Value = serde_json::from_str(printed[0]).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"));
    assert!(!stderr.contains("panicked"), "{shown:?} panicked:\n{stderr}");
    (out.status.code().unwrap_or(-1), v)
}

/// `ffprobe -show_format -show_streams` as JSON.
fn ffprobe(p: &Path) -> Value {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-print_format", "json", "-show_format", "-show_streams"])
        .arg(p)
        .output()
        .expect("ffprobe is required");
    assert!(out.status.success(), "ffprobe {}: {}", p.display(), String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn fnum(v: &Value) -> f64 {
    v.as_str().and_then(|s| s.parse().ok()).or_else(|| v.as_f64()).unwrap_or_else(|| panic!("not a number: {v}"))
}

fn streams_of<'a>(probe: &'a Value, kind: &str) -> Vec<&'a Value> {
    probe["streams"].as_array().unwrap().iter().filter(|s| s["codec_type"] == kind).collect()
}

/// Top-level MP4 box types in file order.
fn top_boxes(p: &Path) -> Vec<String> {
    let d = std::fs::read(p).unwrap();
    let mut i = 0usize;
    let mut out = vec![];
    while i + 8 <= d.len() {
        let mut size = u32::from_be_bytes(d[i..i + 4].try_into().unwrap()) as u64;
        out.push(String::from_utf8_lossy(&d[i + 4..i + 8]).into_owned());
        if size == 1 && i + 16 <= d.len() {
            size = u64::from_be_bytes(d[i + 8..i + 16].try_into().unwrap());
        }
        if size < 8 {
            break;
        }
        i += size as usize;
    }
    out
}

fn assert_faststart(p: &Path) {
    let boxes = top_boxes(p);
    let moov = boxes.iter().position(|b| b == "moov");
    let mdat = boxes.iter().position(|b| b == "mdat");
    assert!(moov.is_some() && mdat.is_some() && moov < mdat, "{}: moov must precede mdat: {boxes:?}", p.display());
}

/// `(path, expect, kind)` of the corpus' media files (sidecars left out).
fn manifest() -> Vec<(PathBuf, String, String)> {
    let dir = corpus();
    let text = std::fs::read_to_string(dir.join("manifest.tsv")).unwrap();
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f.len() >= 3 && f[1] != "skip" && !f[0].ends_with(".json")).then(|| (dir.join(f[0]), f[1].to_string(), f[2].to_string()))
        })
        .collect()
}

fn named(name: &str) -> PathBuf {
    manifest().into_iter().map(|m| m.0).find(|p| p.to_string_lossy().contains(name)).unwrap_or_else(|| panic!("{name} not in the corpus"))
}

fn is_wav(p: &Path) -> bool {
    p.extension().is_some_and(|e| e == "wav")
}

/// Nothing but `keep` is left in `dir` (no half-written or temporary files).
fn assert_only(dir: &Path, keep: &[&str]) {
    let mut names: Vec<String> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    let mut want: Vec<String> = keep.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(names, want, "files in {}", dir.display());
}

#[test]
fn probe_reports_the_corpus() {
    for (path, expect, kind) in manifest() {
        let (code, v) = worker(&[OsStr::new("probe"), path.as_os_str()]);
        if expect == "error" {
            assert_eq!(code, 1, "{}: {v}", path.display());
            assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()), "{}: {v}", path.display());
            continue;
        }
        assert_eq!(code, 0, "{}: {v}", path.display());
        let truth = ffprobe(&path);
        let dur = fnum(&truth["format"]["duration"]);
        let ms = v["duration_ms"].as_i64().unwrap_or_else(|| panic!("{}: duration_ms {v}", path.display()));
        assert!((ms as f64 / 1000.0 - dur).abs() < 0.1, "{}: {ms} ms vs {dur} s", path.display());
        assert_eq!(v["has_video"], !streams_of(&truth, "video").is_empty(), "{}", path.display());
        assert_eq!(v["has_audio"], !streams_of(&truth, "audio").is_empty(), "{}", path.display());
        assert_eq!(v["streams"].as_array().unwrap().len(), truth["streams"].as_array().unwrap().len(), "{}", path.display());
        assert!(v["container"].as_str().is_some_and(|c| !c.is_empty()));
        for s in v["streams"].as_array().unwrap() {
            assert!([0, 90, 180, 270].contains(&s["rotation"].as_i64().unwrap()), "{s}");
            if s["type"] == "video" {
                assert!(s["width"].as_u64().unwrap() > 0 && s["height"].as_u64().unwrap() > 0 && s["fps"].as_f64().unwrap() > 0.0, "{s}");
            }
        }
        // H.264/AAC in MP4/MOV (the truncated file too) is browser-safe; HEVC, MJPEG/ADPCM AVI
        // and PCM WAV are not.
        let safe = kind.starts_with("h264/aac") || expect == "partial";
        assert_eq!(v["browser_safe"], safe, "{}: {v}", path.display());
        if kind.contains("mp4") && kind.starts_with("h264") {
            let ct = v["creation_time"].as_str().unwrap_or_else(|| panic!("{}: creation_time {v}", path.display()));
            assert!(ct.ends_with('Z') && ct.starts_with("2024-03-"), "{ct}");
        }
    }

    let (_, v) = worker(&["probe", named("BWC4A7F21_P10482_20240315142205_0001.mp4").to_str().unwrap()]);
    assert_eq!(v["location"]["lat"], 40.7128, "{v}");
    assert_eq!(v["location"]["lon"], -74.006, "{v}");
    assert_eq!(v["creation_time"], "2024-03-15T14:22:05Z");
    assert_eq!((v["streams"][0]["width"].as_u64(), v["streams"][0]["height"].as_u64()), (Some(1920), Some(1080)));
    assert_eq!(v["streams"][0]["codec"], "h264");
    assert_eq!(v["streams"][0]["pix_fmt"], "yuv420p");
    assert_eq!(v["streams"][0]["bit_depth"], 8);
    assert_eq!(v["streams"][1]["sample_rate"], 48000);
    let (_, v) = worker(&["probe", named("BWC4A7F21_P10482_20240315143240_0002.mp4").to_str().unwrap()]);
    assert_eq!((v["streams"][0]["width"].as_u64(), v["streams"][0]["height"].as_u64()), (Some(1920), Some(1080)));
    assert!(v["location"].is_null(), "{v}");

    let (_, v) = worker(&["probe", named("IMG_0042.MOV").to_str().unwrap()]);
    assert_eq!(v["location"]["lat"], 40.758, "{v}");
    assert_eq!(v["location"]["lon"], -73.9855, "{v}");
    assert_eq!(v["location"]["iso6709"], "+40.7580-073.9855/");

    let (_, v) = worker(&["probe", named("ROOM-3_20240315093000_0001.wav").to_str().unwrap()]);
    assert_eq!(v["has_video"], false);
    assert_eq!(v["creation_time"], Value::Null, "'09:30:00' is not a date: {v}");
    assert_eq!(v["creation_time_raw"], "09:30:00");
    assert_eq!(v["streams"][0]["codec"], "pcm_s16le");
    assert_eq!(v["streams"][0]["channels"], 1);

    let (_, v) = worker(&["probe", named("LEGACY07_P07777_20190601100000_0001.avi").to_str().unwrap()]);
    assert_eq!(v["creation_time"], Value::Null);
    assert_eq!(v["streams"][0]["codec"], "mjpeg");

    // The truncated faststart file opens and claims its full length.
    let (code, v) = worker(&["probe", named("truncated-moov-first.mp4").to_str().unwrap()]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["duration_ms"], 6000);

    let (code, v) = worker(&["probe", named("truncated-no-moov.mp4").to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(v["error"].as_str().unwrap().contains("moov atom not found"), "{v}");
    let (code, v) = worker(&["probe", named("zero-byte.mp4").to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(v["error"].as_str().unwrap().contains("empty"), "{v}");
}

#[test]
fn proxies_play_in_a_browser() {
    let out = tempfile::tempdir().unwrap();
    for (i, (path, expect, _)) in manifest().into_iter().enumerate() {
        let dest = out.path().join(format!("{i}.mp4"));
        let (code, v) = worker(&[OsStr::new("proxy"), path.as_os_str(), dest.as_os_str()]);
        if expect == "error" {
            assert_eq!(code, 1, "{}: {v}", path.display());
            assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()), "{v}");
            assert!(!dest.exists(), "no output for a failure");
            continue;
        }
        assert_eq!(code, 0, "{}: {v}", path.display());
        let src = ffprobe(&path);
        let got = ffprobe(&dest);
        assert!(got["format"]["format_name"].as_str().unwrap().contains("mp4"), "{got}");
        assert_faststart(&dest);
        let audio = streams_of(&got, "audio");
        assert_eq!(audio.len(), 1, "{}: {got}", path.display());
        assert_eq!(audio[0]["codec_name"], "aac");
        let video = streams_of(&got, "video");
        if is_wav(&path) {
            assert!(video.is_empty());
            assert_eq!(v["content_type"], "audio/mp4");
            assert_eq!(v["mode"], "transcode");
        } else {
            assert_eq!(video.len(), 1, "{}: {got}", path.display());
            assert_eq!(video[0]["codec_name"], "h264");
            assert_eq!(video[0]["pix_fmt"], "yuv420p");
            let h = video[0]["height"].as_i64().unwrap();
            assert!(h <= 720 && h % 2 == 0, "{}: height {h}", path.display());
            assert_eq!(v["content_type"], "video/mp4");
            assert_eq!(v["height"].as_i64(), Some(h));
            assert_eq!(v["width"], video[0]["width"]);
            // Source 1080p is re-encoded; 720p H.264/AAC MP4/MOV is copied.
            let src_h = streams_of(&src, "video")[0]["height"].as_i64().unwrap();
            let copied =
                src_h <= 720 && streams_of(&src, "video")[0]["codec_name"] == "h264" && path.extension() != Some(OsStr::new("avi"));
            assert_eq!(v["mode"], if copied { "remux" } else { "transcode" }, "{}: {v}", path.display());
        }
        let want = fnum(&src["format"]["duration"]);
        let have = fnum(&got["format"]["duration"]);
        if expect == "partial" {
            let w = v["warning"].as_str().unwrap_or_else(|| panic!("a warning for {}: {v}", path.display()));
            assert!(w.starts_with("decoded ") && w.ends_with(" of 6.0 s"), "{w}");
            assert!(have > 1.0 && have < want - 1.0, "{have} of {want}");
            assert!((v["decoded_ms"].as_f64().unwrap() / 1000.0 - have).abs() < 0.5, "{v} vs {have}");
        } else {
            assert!((have - want).abs() < 0.5, "{}: proxy {have} s, source {want} s", path.display());
            assert!(v["warning"].is_null(), "{v}");
            assert!((v["decoded_ms"].as_f64().unwrap() / 1000.0 - want).abs() < 0.5, "{v}");
        }
        assert_eq!(v["duration_ms"].as_i64().unwrap(), (want * 1000.0).round() as i64, "declared duration: {v}");
    }
    // Nothing half-written or temporary is left beside the outputs.
    for e in std::fs::read_dir(out.path()).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        assert!(!name.contains(".tmp-"), "{name}");
    }
}

#[test]
fn forced_transcode_of_a_browser_safe_file() {
    let out = tempfile::tempdir().unwrap();
    let src = named("BWC1E55A0_P33005_20240317221009_0001.mp4");
    let dest = out.path().join("p.mp4");
    let args: Vec<OsString> = vec![
        "proxy".into(),
        src.clone().into(),
        dest.clone().into(),
        "--remux-allowed".into(),
        "false".into(),
        "--max-height".into(),
        "360".into(),
        "--video-bitrate".into(),
        "800000".into(),
        "--audio-bitrate".into(),
        "64000".into(),
    ];
    let (code, v) = worker(&args);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["mode"], "transcode");
    assert_eq!((v["width"].as_i64(), v["height"].as_i64()), (Some(640), Some(360)));
    let got = ffprobe(&dest);
    let video = streams_of(&got, "video");
    assert_eq!((video[0]["width"].as_i64(), video[0]["height"].as_i64()), (Some(640), Some(360)));
    assert_eq!(video[0]["codec_name"], "h264");
    // Keyframes about every 2 s (30 fps): at most 4 in 5 s.
    let frames = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v", "-show_entries", "packet=flags", "-of", "csv=p=0"])
        .arg(&dest)
        .output()
        .unwrap();
    let keys = String::from_utf8_lossy(&frames.stdout).lines().filter(|l| l.starts_with('K')).count();
    assert!((2..=4).contains(&keys), "{keys} keyframes");
    let audio = streams_of(&got, "audio");
    assert_eq!(audio[0]["sample_rate"], "48000");
    assert!((fnum(&got["format"]["duration"]) - 5.0).abs() < 0.5);
    assert_faststart(&dest);
}

#[test]
fn posters_are_jpegs() {
    let out = tempfile::tempdir().unwrap();
    for (i, (path, expect, _)) in manifest().into_iter().enumerate() {
        let dest = out.path().join(format!("{i}.jpg"));
        let (code, v) = worker(&[OsStr::new("poster"), path.as_os_str(), dest.as_os_str(), OsStr::new("--max-height"), OsStr::new("720")]);
        if expect == "error" {
            assert_eq!(code, 1, "{}: {v}", path.display());
            assert!(!dest.exists());
            continue;
        }
        if is_wav(&path) {
            assert_eq!(code, 2, "audio only: {v}");
            assert_eq!(v["error"], "no video stream");
            assert!(!dest.exists());
            continue;
        }
        assert_eq!(code, 0, "{}: {v}", path.display());
        let bytes = std::fs::read(&dest).unwrap();
        assert_eq!(&bytes[..2], &[0xFF, 0xD8], "JPEG magic");
        let got = ffprobe(&dest);
        let s = &got["streams"][0];
        assert_eq!(s["codec_name"], "mjpeg");
        assert!(s["height"].as_i64().unwrap() <= 720);
        assert_eq!((v["width"].as_i64(), v["height"].as_i64()), (s["width"].as_i64(), s["height"].as_i64()));
        // 10 % in, at most 10 s.
        let at = v["at_ms"].as_i64().unwrap();
        let dur = fnum(&ffprobe(&path)["format"]["duration"]) * 1000.0;
        assert!((at as f64) >= dur / 10.0 - 100.0 && at <= 10_100, "{}: at {at} of {dur}", path.display());
    }
}

#[test]
fn clips_copy_or_reencode_the_range() {
    let out = tempfile::tempdir().unwrap();
    let src = named("BWC4A7F21_P10482_20240315142205_0001.mp4");
    let clip = |name: &str, extra: &[&str]| {
        let dest = out.path().join(name);
        let mut args: Vec<OsString> = vec!["clip".into(), src.clone().into(), dest.clone().into()];
        args.extend(extra.iter().map(OsString::from));
        let (code, v) = worker(&args);
        (code, v, dest)
    };

    // Copy: from the keyframe at or before 3 s (GOP 2 s) to 5 s.
    let (code, v, dest) = clip("copy.mp4", &["--start-ms", "3000", "--end-ms", "5000"]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["mode"], "copy");
    assert_eq!(v["content_type"], "video/mp4");
    assert_eq!(v["start_ms"], 2000, "{v}");
    let got = ffprobe(&dest);
    let d = fnum(&got["format"]["duration"]);
    assert!((d - 2.0).abs() <= 2.0 + 0.05, "copy clip {d} s");
    assert!((v["duration_ms"].as_f64().unwrap() / 1000.0 - d).abs() < 0.05, "{v} vs {d}");
    assert_eq!(streams_of(&got, "video")[0]["height"], 1080, "a copy keeps the resolution");
    assert_faststart(&dest);

    // Keyframe-aligned copy: exactly 2 s of video.
    let (code, v, dest) = clip("copy2.mp4", &["--start-ms", "4000", "--end-ms", "6000"]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["start_ms"], 4000);
    let got = ffprobe(&dest);
    let vd = fnum(&streams_of(&got, "video")[0]["duration"]);
    assert!((vd - 2.0).abs() < 0.04, "{vd}");

    // Accurate: exactly [3 s, 5 s), re-encoded.
    let (code, v, dest) = clip("exact.mp4", &["--start-ms", "3000", "--end-ms", "5000", "--accurate"]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["mode"], "reencode");
    assert_eq!(v["start_ms"], 3000);
    let got = ffprobe(&dest);
    let d = fnum(&got["format"]["duration"]);
    assert!((d - 2.0).abs() <= 1.0 / 30.0 + 0.005, "accurate clip {d} s");
    let video = streams_of(&got, "video");
    assert_eq!(video[0]["codec_name"], "h264");
    assert_eq!(video[0]["height"], 720);
    assert_eq!(video[0]["nb_frames"], "60");
    assert_eq!(streams_of(&got, "audio")[0]["codec_name"], "aac");
    assert_faststart(&dest);

    // An end past the recording is clamped.
    let (code, v, _) = clip("tail.mp4", &["--start-ms", "9000", "--end-ms", "60000"]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["duration_ms"], 2000, "from the keyframe at 8 s: {v}");

    // Invalid ranges.
    for (a, b) in [("5000", "5000"), ("6000", "5000"), ("-1", "5000"), ("10000", "12000"), ("20000", "30000")] {
        let (code, v, dest) = clip("bad.mp4", &["--start-ms", a, "--end-ms", b]);
        assert_eq!(code, 1, "{a}..{b}: {v}");
        assert!(v["error"].as_str().unwrap().contains("range"), "{v}");
        assert!(!dest.exists());
    }

    // Streams MP4 cannot carry as they are are re-encoded even without --accurate.
    for (name, ct, secs) in
        [("ROOM-3_20240315093000_0001.wav", "audio/mp4", 2.5), ("LEGACY07_P07777_20190601100000_0001.avi", "video/mp4", 2.5)]
    {
        let dest = out.path().join(format!("{name}.mp4"));
        let (code, v) = worker(&[
            OsStr::new("clip"),
            named(name).as_os_str(),
            dest.as_os_str(),
            "--start-ms".as_ref(),
            "1000".as_ref(),
            "--end-ms".as_ref(),
            "3500".as_ref(),
        ]);
        assert_eq!(code, 0, "{name}: {v}");
        assert_eq!(v["mode"], "reencode");
        assert_eq!(v["content_type"], ct);
        let got = ffprobe(&dest);
        assert!((fnum(&got["format"]["duration"]) - secs).abs() < 0.1, "{name}: {got}");
        assert_eq!(streams_of(&got, "audio")[0]["codec_name"], "aac");
    }

    // The truncated file: what is there.
    let dest = out.path().join("trunc.mp4");
    let (code, v) = worker(&[
        OsStr::new("clip"),
        named("truncated-moov-first.mp4").as_os_str(),
        dest.as_os_str(),
        "--start-ms".as_ref(),
        "2000".as_ref(),
        "--end-ms".as_ref(),
        "5000".as_ref(),
    ]);
    assert_eq!(code, 0, "{v}");
    assert!(v["warning"].as_str().is_some_and(|w| w.starts_with("decoded ")), "{v}");
}

/// A short H.264/AAC MP4 with a 90° display matrix (what a phone held upright writes).
fn rotated_mp4(dir: &Path) -> PathBuf {
    let plain = dir.join("plain.mp4");
    let st = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=1"])
        .args(["-f", "lavfi", "-i", "sine=frequency=500:sample_rate=44100:duration=1"])
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac"])
        .arg(&plain)
        .status()
        .unwrap();
    assert!(st.success());
    // tkhd: 8 header + 4 version/flags + 36 (times, ids, duration, layer, volume) = matrix at 48.
    let mut d = std::fs::read(&plain).unwrap();
    let at = d.windows(4).position(|w| w == b"tkhd").unwrap() - 4;
    let m: [i32; 9] = [0, 0x10000, 0, -0x10000, 0, 0, 240 << 16, 0, 0x4000_0000];
    for (i, x) in m.iter().enumerate() {
        d[at + 48 + 4 * i..at + 52 + 4 * i].copy_from_slice(&x.to_be_bytes());
    }
    let rotated = dir.join("rotated.mp4");
    std::fs::write(&rotated, d).unwrap();
    rotated
}

#[test]
fn rotation_is_applied() {
    let dir = tempfile::tempdir().unwrap();
    let src = rotated_mp4(dir.path());
    let (code, v) = worker(&[OsStr::new("probe"), src.as_os_str()]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["streams"][0]["rotation"], 90, "{v}");
    assert_eq!(v["browser_safe"], false, "a rotated picture is re-encoded upright");

    let proxy = dir.path().join("p.mp4");
    let (code, v) = worker(&[OsStr::new("proxy"), src.as_os_str(), proxy.as_os_str()]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["mode"], "transcode");
    let got = ffprobe(&proxy);
    let s = streams_of(&got, "video")[0];
    assert_eq!((s["width"].as_i64(), s["height"].as_i64()), (Some(240), Some(320)), "upright: {s}");
    assert!(s.get("side_data_list").is_none(), "no display matrix left: {s}");

    let poster = dir.path().join("p.jpg");
    let (code, v) = worker(&[OsStr::new("poster"), src.as_os_str(), poster.as_os_str()]);
    assert_eq!(code, 0, "{v}");
    assert_eq!((v["width"].as_i64(), v["height"].as_i64()), (Some(240), Some(320)));

    let clip = dir.path().join("c.mp4");
    let (code, v) = worker(&[
        OsStr::new("clip"),
        src.as_os_str(),
        clip.as_os_str(),
        "--start-ms".as_ref(),
        "0".as_ref(),
        "--end-ms".as_ref(),
        "500".as_ref(),
    ]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["mode"], "reencode", "{v}");
    let s = streams_of(&ffprobe(&clip), "video")[0].clone();
    assert_eq!((s["width"].as_i64(), s["height"].as_i64()), (Some(240), Some(320)));
}

#[test]
fn timestamps_start_at_zero() {
    // MPEG-TS starting at 3600 s, with B-frames and a single keyframe.
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("late.ts");
    let st = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=3"])
        .args(["-f", "lavfi", "-i", "sine=frequency=500:sample_rate=48000:duration=3"])
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-bf", "2", "-pix_fmt", "yuv420p", "-c:a", "aac", "-output_ts_offset", "3600"])
        .arg(&src)
        .status()
        .unwrap();
    assert!(st.success());
    let (code, v) = worker(&[OsStr::new("probe"), src.as_os_str()]);
    assert_eq!(code, 0, "{v}");
    assert!(v["start_time_ms"].as_i64().unwrap() >= 3_600_000, "{v}");
    assert_eq!(v["browser_safe"], false);

    let proxy = dir.path().join("p.mp4");
    let (code, v) = worker(&[OsStr::new("proxy"), src.as_os_str(), proxy.as_os_str()]);
    assert_eq!(code, 0, "{v}");
    let got = ffprobe(&proxy);
    assert!(fnum(&got["format"]["start_time"]).abs() < 0.1, "{got}");
    assert!((fnum(&got["format"]["duration"]) - 3.0).abs() < 0.5, "{got}");
    assert!(v["warning"].is_null(), "{v}");

    for (name, accurate, min, max) in [("copy.mp4", false, 1.0, 2.2), ("exact.mp4", true, 0.95, 1.05)] {
        let dest = dir.path().join(name);
        let mut args: Vec<&OsStr> = vec![
            "clip".as_ref(),
            src.as_os_str(),
            dest.as_os_str(),
            "--start-ms".as_ref(),
            "1000".as_ref(),
            "--end-ms".as_ref(),
            "2000".as_ref(),
        ];
        if accurate {
            args.push("--accurate".as_ref());
        }
        let (code, v) = worker(&args);
        assert_eq!(code, 0, "{name}: {v}");
        let got = ffprobe(&dest);
        let d = fnum(&got["format"]["duration"]);
        assert!(d >= min && d <= max, "{name}: {d} s");
        assert_eq!(streams_of(&got, "video").len(), 1, "{name}: {got}");
        assert!(fnum(&got["format"]["start_time"]).abs() < 0.1, "{name}: {got}");
    }
}

#[test]
fn bad_paths_are_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let good = named("证据 视频 2024-03-15 第1段.mp4");

    // Non-UTF-8 input and output names.
    let bad_in = dir.path().join(OsStr::from_bytes(b"clip-\xff.mp4"));
    std::fs::copy(&good, &bad_in).unwrap();
    let (code, v) = worker(&[OsStr::new("probe"), bad_in.as_os_str()]);
    assert_eq!(code, 1, "{v}");
    assert!(v["error"].as_str().unwrap().contains("UTF-8"), "{v}");
    let bad_out = dir.path().join(OsStr::from_bytes(b"out-\xfe.mp4"));
    for op in ["proxy", "poster"] {
        let (code, v) = worker(&[OsStr::new(op), good.as_os_str(), bad_out.as_os_str()]);
        assert_eq!(code, 1, "{op}: {v}");
        assert!(v["error"].as_str().unwrap().contains("UTF-8"), "{v}");
    }
    let (code, v) = worker(&[
        OsStr::new("clip"),
        good.as_os_str(),
        bad_out.as_os_str(),
        "--start-ms".as_ref(),
        "0".as_ref(),
        "--end-ms".as_ref(),
        "1000".as_ref(),
    ]);
    assert_eq!(code, 1, "{v}");

    // A relative name with a colon is a file, not a protocol; so is a name with spaces and CJK.
    std::fs::copy(&good, dir.path().join("cam:1.mp4")).unwrap();
    let (code, v) = worker_in(Some(dir.path()), &["probe", "cam:1.mp4"]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["duration_ms"], 3000);
    let (code, v) = worker_in(Some(dir.path()), &["poster", "cam:1.mp4", "x:poster.jpg"]);
    assert_eq!(code, 0, "{v}");
    assert!(dir.path().join("x:poster.jpg").exists());

    // Missing input, missing output directory, a directory as input, the input as output.
    let (code, v) = worker(&["probe", "/nonexistent/x.mp4"]);
    assert_eq!(code, 1, "{v}");
    let (code, v) = worker(&[OsStr::new("proxy"), good.as_os_str(), dir.path().join("no/such/dir.mp4").as_os_str()]);
    assert_eq!(code, 1, "{v}");
    let (code, v) = worker(&[OsStr::new("probe"), dir.path().as_os_str()]);
    assert_eq!(code, 1, "{v}");
    let victim = dir.path().join("victim.mp4");
    std::fs::copy(&good, &victim).unwrap();
    let before = std::fs::read(&victim).unwrap();
    let (code, v) = worker(&[OsStr::new("proxy"), victim.as_os_str(), victim.as_os_str()]);
    assert_eq!(code, 1, "{v}");
    assert_eq!(std::fs::read(&victim).unwrap(), before, "the input is never overwritten");

    // Random bytes: an error naming what FFmpeg said, and nothing left behind.
    let out = tempfile::tempdir().unwrap();
    let (code, v) = worker(&[OsStr::new("proxy"), named("random-bytes.mp4").as_os_str(), out.path().join("r.mp4").as_os_str()]);
    assert_eq!(code, 1, "{v}");
    assert!(v["error"].as_str().unwrap().starts_with("cannot open input: "), "{v}");
    assert_only(out.path(), &[]);
}

#[test]
fn a_spliced_stream_that_changes_size_and_sample_rate() {
    // Two MPEG-TS parts back to back (as a camera that restarts its encoder writes):
    // 320x240 with 44.1 kHz mono, then 640x480 with 48 kHz stereo.
    let dir = tempfile::tempdir().unwrap();
    let part = |name: &str, size: &str, rate: &str, ch: &str, offset: &str| {
        let p = dir.path().join(name);
        let st = Command::new("ffmpeg")
            .args(["-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i", &format!("testsrc2=size={size}:rate=25:duration=1")])
            .args(["-f", "lavfi", "-i", &format!("sine=frequency=600:sample_rate={rate}:duration=1")])
            .args(["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-ac", ch, "-output_ts_offset", offset])
            .arg(&p)
            .status()
            .unwrap();
        assert!(st.success());
        std::fs::read(p).unwrap()
    };
    let mut both = part("a.ts", "320x240", "44100", "1", "0");
    both.extend(part("b.ts", "640x480", "48000", "2", "1"));
    let src = dir.path().join("spliced.ts");
    std::fs::write(&src, both).unwrap();

    let proxy = dir.path().join("p.mp4");
    let (code, v) = worker(&[OsStr::new("proxy"), src.as_os_str(), proxy.as_os_str()]);
    assert_eq!(code, 0, "{v}");
    let got = ffprobe(&proxy);
    let video = streams_of(&got, "video");
    assert_eq!((video[0]["width"].as_i64(), video[0]["height"].as_i64()), (Some(320), Some(240)), "one output size");
    assert!(video[0]["nb_frames"].as_str().unwrap().parse::<i64>().unwrap() >= 48, "both parts: {got}");
    assert!((fnum(&got["format"]["duration"]) - 2.0).abs() < 0.5, "{got}");
    assert_eq!(streams_of(&got, "audio")[0]["sample_rate"], "48000");
}
