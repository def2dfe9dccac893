//! The media worker: runs in a child process (`evidenced media-worker ...`), never in the daemon,
//! so a hostile or broken file can only kill this process.
//!
//! Every operation prints exactly one JSON object on stdout: its result (exit 0), or
//! `{"error": "..."}` (exit 1; exit 2 for "not applicable", such as a poster of an audio-only
//! recording). Outputs are written under a temporary name beside the output and renamed into place
//! only on success. Paths must be UTF-8 (FFmpeg takes C strings); they are made absolute so that a
//! name with a colon is never read as a protocol.

mod audio;
mod clip;
mod pipeline;
mod poster;
mod probe;
mod proxy;
mod video;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use ffmpeg_next as ffmpeg;
use ffmpeg_next::{Rational, Rescale};

/// One media operation.
#[derive(Debug, clap::Subcommand)]
pub enum Op {
    /// Print probe results of INPUT as JSON.
    Probe {
        /// Local, seekable input file.
        input: PathBuf,
    },
    /// Write a browser-playable MP4 (H.264/AAC, faststart) of INPUT to OUTPUT.
    Proxy {
        /// Local, seekable input file.
        input: PathBuf,
        /// The MP4 to write (replaced atomically).
        output: PathBuf,
        /// Encoding settings.
        #[command(flatten)]
        enc: EncodeArgs,
        /// Stream-copy inputs that are already browser-safe and small enough.
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
        remux_allowed: bool,
    },
    /// Write one JPEG of a representative frame of INPUT to OUTPUT (exit 2 without video).
    Poster {
        /// Local, seekable input file.
        input: PathBuf,
        /// The JPEG to write (replaced atomically).
        output: PathBuf,
        /// Scale down (never up) to at most this height.
        #[arg(long, default_value_t = 720)]
        max_height: u32,
    },
    /// Write the part [start, end) of INPUT to OUTPUT as MP4.
    Clip {
        /// Local, seekable input file.
        input: PathBuf,
        /// The MP4 to write (replaced atomically).
        output: PathBuf,
        /// Start, milliseconds from the beginning of the recording.
        #[arg(long, allow_negative_numbers = true)]
        start_ms: i64,
        /// End (exclusive), milliseconds from the beginning of the recording.
        #[arg(long, allow_negative_numbers = true)]
        end_ms: i64,
        /// Re-encode exactly [start, end) instead of copying from the keyframe before start.
        #[arg(long)]
        accurate: bool,
        /// Encoding settings (for re-encoding).
        #[command(flatten)]
        enc: EncodeArgs,
    },
}

/// Encoding settings shared by `proxy` and `clip`.
#[derive(Debug, Clone, clap::Args)]
pub struct EncodeArgs {
    /// Scale video down (never up) to at most this height.
    #[arg(long, default_value_t = 720)]
    pub max_height: u32,
    /// H.264 bit rate (also the VBV max rate), bits per second.
    #[arg(long, default_value_t = 2_500_000)]
    pub video_bitrate: u64,
    /// AAC bit rate, bits per second.
    #[arg(long, default_value_t = 128_000)]
    pub audio_bitrate: u64,
}

/// Runs one operation; prints one JSON object on stdout.
pub fn run(op: Op) -> ExitCode {
    // A panic is a bug, but the daemon still gets one JSON line and a failure code.
    std::panic::set_hook(Box::new(|info| {
        note(&format!("internal error: {info}"));
    }));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        ffmpeg::init().map_err(|e| Failure::new(format!("cannot initialise FFmpeg: {e}")))?;
        logging::install();
        match op {
            Op::Probe { input } => {
                let input = input_path(&input)?;
                let ictx = open_input(&input)?;
                Ok(probe::probe(&ictx).to_json())
            }
            Op::Proxy { input, output, enc, remux_allowed } => proxy::run(&input, &output, &enc, remux_allowed),
            Op::Poster { input, output, max_height } => poster::run(&input, &output, max_height),
            Op::Clip { input, output, start_ms, end_ms, accurate, enc } => clip::run(&input, &output, start_ms, end_ms, accurate, &enc),
        }
    }));
    let (code, json) = match result {
        Ok(Ok(v)) => (0, v),
        Ok(Err(f)) => (f.code, serde_json::json!({ "error": f.msg })),
        Err(_) => (1, serde_json::json!({ "error": "internal error in the media worker (see its stderr)" })),
    };
    // Never a panic, even with stdout gone: the exit code still tells.
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{json}").and_then(|()| out.flush());
    ExitCode::from(code)
}

/// A line on stderr for the daemon's log (write errors ignored).
pub(crate) fn note(msg: &str) {
    let _ = writeln!(std::io::stderr(), "media-worker: {msg}");
}

// ---------------------------------------------------------------- errors

/// Why an operation failed: a message for the daemon and the exit code.
#[derive(Debug)]
pub(crate) struct Failure {
    pub code: u8,
    pub msg: String,
}

impl Failure {
    pub fn new(msg: impl Into<String>) -> Self {
        Failure { code: 1, msg: msg.into() }
    }

    /// The operation does not apply to this input (exit 2).
    pub fn not_applicable(msg: impl Into<String>) -> Self {
        Failure { code: 2, msg: msg.into() }
    }
}

pub(crate) type Res<T> = Result<T, Failure>;

/// Adds what was being done to an FFmpeg error.
pub(crate) trait Context<T> {
    fn ctx(self, what: &str) -> Res<T>;
}

impl<T> Context<T> for Result<T, ffmpeg::Error> {
    fn ctx(self, what: &str) -> Res<T> {
        self.map_err(|e| Failure::new(format!("{what}: {}", with_log_detail(&e.to_string()))))
    }
}

/// `msg`, plus FFmpeg's last logged error line when it says more (e.g. "moov atom not found").
fn with_log_detail(msg: &str) -> String {
    match logging::take_last_error() {
        Some(detail) if !msg.contains(&detail) => format!("{msg} ({detail})"),
        _ => msg.to_string(),
    }
}

// ---------------------------------------------------------------- paths and files

/// An input path as FFmpeg wants it: UTF-8, absolute, a regular file.
pub(crate) fn input_path(p: &Path) -> Res<String> {
    let s = utf8_absolute(p, "input")?;
    match std::fs::metadata(&s) {
        Ok(m) if m.is_file() && m.len() == 0 => Err(Failure::new(format!("input {s} is empty (0 bytes)"))),
        Ok(m) if m.is_file() => Ok(s),
        Ok(_) => Err(Failure::new(format!("input {s} is not a regular file"))),
        Err(e) => Err(Failure::new(format!("cannot read input {s}: {e}"))),
    }
}

fn utf8_absolute(p: &Path, what: &str) -> Res<String> {
    let Some(s) = p.to_str() else {
        return Err(Failure::new(format!("{what} path is not valid UTF-8: {}", p.display())));
    };
    if s.is_empty() {
        return Err(Failure::new(format!("{what} path is empty")));
    }
    let abs = std::path::absolute(s).map_err(|e| Failure::new(format!("{what} path {s}: {e}")))?;
    match abs.to_str() {
        Some(a) if a.starts_with('/') => Ok(a.to_string()),
        _ => Err(Failure::new(format!("{what} path is not valid UTF-8: {}", abs.display()))),
    }
}

/// Opens an input file (and reads its stream info).
pub(crate) fn open_input(path: &str) -> Res<ffmpeg::format::context::Input> {
    logging::take_last_error();
    ffmpeg::format::input(path).ctx("cannot open input")
}

/// An output written to `OUTPUT.tmp-<pid>` and renamed to `OUTPUT` by [`TempOutput::commit`];
/// removed when dropped uncommitted.
pub(crate) struct TempOutput {
    tmp: String,
    dest: String,
    committed: bool,
}

impl TempOutput {
    /// Validates the output path (UTF-8, existing directory, not the input itself).
    pub fn new(output: &Path, input: &str) -> Res<Self> {
        let dest = utf8_absolute(output, "output")?;
        let parent = Path::new(&dest).parent().unwrap_or(Path::new("/"));
        if !parent.is_dir() {
            return Err(Failure::new(format!("output directory {} does not exist", parent.display())));
        }
        if Path::new(&dest).is_dir() {
            return Err(Failure::new(format!("output {dest} is a directory")));
        }
        if same_file(&dest, input) {
            return Err(Failure::new("output is the input file; refusing to overwrite it"));
        }
        let tmp = format!("{dest}.tmp-{}", std::process::id());
        Ok(TempOutput { tmp, dest, committed: false })
    }

    /// Where to write.
    pub fn path(&self) -> &str {
        &self.tmp
    }

    /// Renames the finished file into place.
    pub fn commit(mut self) -> Res<()> {
        std::fs::rename(&self.tmp, &self.dest).map_err(|e| Failure::new(format!("cannot rename {} to {}: {e}", self.tmp, self.dest)))?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for TempOutput {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

fn same_file(a: &str, b: &str) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}

// ---------------------------------------------------------------- time

/// FFmpeg's "no timestamp".
const NOPTS: i64 = ffmpeg::ffi::AV_NOPTS_VALUE;

/// Microseconds, FFmpeg's internal time base.
pub(crate) const MICROS: Rational = Rational(1, 1_000_000);

fn valid_tb(tb: Rational) -> bool {
    tb.0 > 0 && tb.1 > 0
}

/// `ts` in `tb` as microseconds (None for no timestamp or a broken time base).
pub(crate) fn to_us(ts: i64, tb: Rational) -> Option<i64> {
    (ts != NOPTS && valid_tb(tb)).then(|| ts.rescale(tb, MICROS))
}

/// Microseconds as a timestamp in `tb` (0 for a broken time base).
pub(crate) fn from_us(us: i64, tb: Rational) -> i64 {
    if valid_tb(tb) { us.rescale(MICROS, tb) } else { 0 }
}

/// Rescales between time bases (0 for a broken one).
pub(crate) fn rescale(ts: i64, from: Rational, to: Rational) -> i64 {
    if valid_tb(from) && valid_tb(to) { ts.rescale(from, to) } else { 0 }
}

/// A rational as f64 (None when zero or invalid).
pub(crate) fn ratio(r: Rational) -> Option<f64> {
    (r.0 > 0 && r.1 > 0).then(|| f64::from(r.0) / f64::from(r.1))
}

/// `decoded 3.0 s of 6.0 s` when less than the declared duration (minus half a second) was read.
pub(crate) fn shortfall_warning(decoded_ms: i64, duration_ms: Option<i64>) -> Option<String> {
    let d = duration_ms?;
    (decoded_ms < d - 500).then(|| format!("decoded {:.1} s of {:.1} s", decoded_ms as f64 / 1000.0, d as f64 / 1000.0))
}

// ---------------------------------------------------------------- FFmpeg's log

/// FFmpeg logs warnings and errors to stderr; the last error line is kept so a failure can say
/// more than "Invalid data found when processing input".
mod logging {
    use std::sync::Mutex;

    use super::ffmpeg;

    static LAST_ERROR: Mutex<Option<String>> = Mutex::new(None);

    /// The last error line FFmpeg logged since the previous call.
    pub fn take_last_error() -> Option<String> {
        LAST_ERROR.lock().ok().and_then(|mut g| g.take())
    }

    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    pub fn install() {
        ffmpeg::log::set_level(ffmpeg::log::Level::Warning);
        // SAFETY: the callback matches FFmpeg's signature and only formats into a local buffer.
        unsafe { ffmpeg::ffi::av_log_set_callback(Some(callback)) };
    }

    #[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
    pub fn install() {
        ffmpeg::log::set_level(ffmpeg::log::Level::Error);
    }

    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    unsafe extern "C" fn callback(
        avcl: *mut libc::c_void,
        level: libc::c_int,
        fmt: *const libc::c_char,
        vl: *mut ffmpeg::ffi::__va_list_tag,
    ) {
        if level > ffmpeg::ffi::AV_LOG_WARNING as libc::c_int {
            return;
        }
        // SAFETY: FFmpeg's format strings are NUL-terminated.
        if !fmt.is_null() && unsafe { std::ffi::CStr::from_ptr(fmt) }.to_bytes().starts_with(b"deprecated pixel format used") {
            // swscale says this for every JPEG-range (yuvj*) frame size it sets up; nothing to fix.
            return;
        }
        let mut buf = [0 as libc::c_char; 1024];
        let mut prefix: libc::c_int = 1;
        // SAFETY: FFmpeg hands us a valid format and va_list; the buffer is NUL-terminated by it.
        let line = unsafe {
            if ffmpeg::ffi::av_log_format_line2(avcl, level, fmt, vl, buf.as_mut_ptr(), buf.len() as libc::c_int, &mut prefix) < 0 {
                return;
            }
            std::ffi::CStr::from_ptr(buf.as_ptr()).to_string_lossy().into_owned()
        };
        let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
        if level <= ffmpeg::ffi::AV_LOG_ERROR as libc::c_int {
            // "[mov,mp4,m4a,3gp,3g2,mj2 @ 0x55d0] moov atom not found" -> "moov atom not found"
            let msg = match line.find("] ") {
                Some(i) if line.starts_with('[') => &line[i + 2..],
                _ => &line[..],
            };
            let msg = msg.trim();
            if !msg.is_empty() {
                if let Ok(mut g) = LAST_ERROR.lock() {
                    *g = Some(msg.to_string());
                }
            }
        }
    }
}
