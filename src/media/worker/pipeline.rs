//! Decode → filter → encode pipelines into an MP4 (H.264 via libx264, AAC via FFmpeg's encoder),
//! shared by `proxy` and the accurate `clip`, and the muxer wrapper shared with stream copies.

use ffmpeg_next as ffmpeg;
use ffmpeg_next::format::context::{Input, Output};
use ffmpeg_next::{Dictionary, Packet, Rational};

use super::audio::AudioPipe;
use super::video::VideoPipe;
use super::{Context, Failure, Res, to_us};

/// Encoding settings.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    pub max_height: u32,
    pub video_bitrate: u64,
    pub audio_bitrate: u64,
}

impl From<&super::EncodeArgs> for Settings {
    fn from(a: &super::EncodeArgs) -> Self {
        Settings { max_height: a.max_height, video_bitrate: a.video_bitrate, audio_bitrate: a.audio_bitrate }
    }
}

/// Which part of the source goes out, in source microseconds: `origin` becomes output time 0;
/// with `trim`, only [origin, end) is kept.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Window {
    pub origin_us: i64,
    pub end_us: Option<i64>,
    pub trim: bool,
}

/// The first and the last-plus-duration microsecond seen.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Span {
    pub first: Option<i64>,
    pub end: Option<i64>,
}

impl Span {
    pub fn add(&mut self, start: i64, end: i64) {
        self.first = Some(self.first.map_or(start, |f| f.min(start)));
        self.end = Some(self.end.map_or(end, |e| e.max(end)));
    }

    pub fn merge(&mut self, other: Span) {
        if let (Some(f), Some(e)) = (other.first, other.end) {
            self.add(f, e);
        }
    }

    pub fn len_ms(&self) -> i64 {
        match (self.first, self.end) {
            (Some(f), Some(e)) if e > f => (e - f + 500) / 1000,
            _ => 0,
        }
    }
}

pub(crate) fn is_again(e: &ffmpeg::Error) -> bool {
    matches!(e, ffmpeg::Error::Other { errno } if *errno == libc::EAGAIN)
}

pub(crate) fn is_end(e: &ffmpeg::Error) -> bool {
    is_again(e) || matches!(e, ffmpeg::Error::Eof)
}

// ---------------------------------------------------------------- muxer

/// An MP4 being written: output streams' time bases and what was written.
pub(crate) struct Mux {
    pub octx: Output,
    ost_tb: Vec<Rational>,
    last_dts: Vec<Option<i64>>,
    /// Output time written per output stream, microseconds.
    pub spans: Vec<Span>,
}

impl Mux {
    /// Creates the MP4 output context (streams are added before [`Mux::start`]).
    pub fn create(path: &str) -> Res<Output> {
        ffmpeg::format::output_as(path, "mp4").ctx("cannot create the output")
    }

    /// Writes the header with `moov` up front (faststart).
    pub fn start(mut octx: Output) -> Res<Mux> {
        let mut opts = Dictionary::new();
        opts.set("movflags", "+faststart");
        octx.write_header_with(opts).ctx("cannot write the MP4 header")?;
        let ost_tb: Vec<Rational> = octx.streams().map(|s| s.time_base()).collect();
        let spans = vec![Span::default(); ost_tb.len()];
        let last_dts = vec![None; ost_tb.len()];
        Ok(Mux { octx, ost_tb, last_dts, spans })
    }

    /// Writes `pkt` (timestamps in `tb`) to output stream `ost`.
    pub fn write(&mut self, mut pkt: Packet, ost: usize, tb: Rational) -> Res<()> {
        let Some(&otb) = self.ost_tb.get(ost) else { return Err(Failure::new("internal: no such output stream")) };
        pkt.set_stream(ost);
        pkt.set_position(-1);
        pkt.rescale_ts(tb, otb);
        // A damaged or spliced input may step back in time; the muxer refuses that, so nudge
        // the packet just after its predecessor (as the ffmpeg tool does).
        if let (Some(dts), Some(last)) = (pkt.dts(), self.last_dts[ost]) {
            if dts <= last {
                pkt.set_dts(Some(last + 1));
                if pkt.pts().is_some_and(|p| p <= last) {
                    pkt.set_pts(Some(last + 1));
                }
            }
        }
        if pkt.dts().is_some() {
            self.last_dts[ost] = pkt.dts();
        }
        if let Some(start) = pkt.pts().and_then(|p| to_us(p, otb)) {
            let dur = to_us(pkt.duration().max(0), otb).unwrap_or(0);
            self.spans[ost].add(start, start + dur);
        }
        pkt.write_interleaved(&mut self.octx).ctx("cannot write to the output")
    }

    /// Finishes the file (moves `moov` to the front) and closes it.
    pub fn finish(mut self) -> Res<Written> {
        self.octx.write_trailer().ctx("cannot finish the MP4")?;
        let mut all = Span::default();
        for s in &self.spans {
            all.merge(*s);
        }
        Ok(Written { all, streams: self.spans })
    }
}

/// What went into a finished MP4 (output time, microseconds).
pub(crate) struct Written {
    pub all: Span,
    pub streams: Vec<Span>,
}

impl Written {
    /// Whether output stream `i` got any packet.
    pub fn has(&self, i: usize) -> bool {
        self.streams.get(i).is_some_and(|s| s.end.is_some())
    }
}

/// Opens an encoder with `opts`, reporting options it did not recognise on stderr.
///
/// # Safety
/// `ctx` is an unopened encoder context with its codec set.
pub(crate) unsafe fn open_checked(ctx: *mut ffmpeg::ffi::AVCodecContext, opts: Dictionary, what: &str) -> Res<()> {
    unsafe {
        let mut raw = opts.disown();
        let r = ffmpeg::ffi::avcodec_open2(ctx, std::ptr::null(), &mut raw);
        let left = Dictionary::own(raw);
        let unused: Vec<String> = left.iter().map(|(k, v)| format!("{k}={v}")).collect();
        if !unused.is_empty() {
            super::note(&format!("{what} ignored options: {}", unused.join(", ")));
        }
        if r < 0 {
            return Err(ffmpeg::Error::from(r)).ctx(&format!("cannot open the {what}"));
        }
    }
    Ok(())
}

/// Both pipelines of a re-encode.
pub(crate) struct Transcode {
    pub video: Option<VideoPipe>,
    pub audio: Option<AudioPipe>,
}

impl Transcode {
    /// Sets up encoders for the first video and the first audio stream of `info`.
    pub fn new(ictx: &Input, info: &super::probe::Info, octx: &mut Output, set: &Settings, win: &Window) -> Res<Self> {
        let video = match info.video() {
            Some(v) => Some(VideoPipe::new(ictx, v, octx, set, win)?),
            None => None,
        };
        let audio = match info.audio() {
            Some(a) => Some(AudioPipe::new(ictx, a, octx, set, win)?),
            None => None,
        };
        if video.is_none() && audio.is_none() {
            return Err(Failure::new("no video or audio stream"));
        }
        Ok(Transcode { video, audio })
    }

    /// Routes a packet to its pipeline (others are ignored).
    pub fn packet(&mut self, pkt: &Packet, mux: &mut Mux) -> Res<()> {
        let i = pkt.stream();
        if let Some(v) = self.video.as_mut().filter(|v| v.ist == i) {
            if !v.done {
                v.packet(pkt, mux)?;
            }
        } else if let Some(a) = self.audio.as_mut().filter(|a| a.ist == i) {
            if !a.done {
                a.packet(pkt, mux)?;
            }
        }
        Ok(())
    }

    /// Every pipeline has passed the window's end.
    pub fn done(&self) -> bool {
        self.video.as_ref().is_none_or(|v| v.done) && self.audio.as_ref().is_none_or(|a| a.done)
    }

    /// Frames decoded (and kept) so far.
    pub fn frames(&self) -> u64 {
        self.video.as_ref().map_or(0, |v| v.frames) + self.audio.as_ref().map_or(0, |a| a.frames)
    }

    /// Decoded source time, relative to the origin.
    pub fn span(&self) -> Span {
        let mut s = Span::default();
        if let Some(v) = &self.video {
            s.merge(v.span);
        }
        if let Some(a) = &self.audio {
            s.merge(a.span);
        }
        s
    }

    pub fn finish(&mut self, mux: &mut Mux) -> Res<()> {
        if let Some(v) = self.video.as_mut() {
            v.finish(mux)?;
        }
        if let Some(a) = self.audio.as_mut() {
            a.finish(mux)?;
        }
        Ok(())
    }
}

/// What reading the next packet gave.
pub(crate) enum Read {
    Packet(Packet),
    Eof,
    /// A read error (a truncated or damaged file), with FFmpeg's message.
    Error(String),
}

/// Packets read ahead (while positioning), then the input.
#[derive(Default)]
pub(crate) struct Reader {
    pub ahead: std::collections::VecDeque<Packet>,
}

impl Reader {
    pub fn next(&mut self, ictx: &mut Input) -> Read {
        match self.ahead.pop_front() {
            Some(p) => Read::Packet(p),
            None => read_packet(ictx),
        }
    }
}

/// Reads the next packet, telling the end of the file from an error (which `packets()` hides).
pub(crate) fn read_packet(ictx: &mut Input) -> Read {
    for _ in 0..10_000 {
        let mut pkt = Packet::empty();
        match pkt.read(ictx) {
            Ok(()) => return Read::Packet(pkt),
            Err(ffmpeg::Error::Eof) => return Read::Eof,
            Err(e) if is_again(&e) => continue,
            Err(e) => return Read::Error(super::with_log_detail(&e.to_string())),
        }
    }
    Read::Error("the input keeps asking to try again".into())
}
