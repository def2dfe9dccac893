//! Audio: decode → resample to 48 kHz mono/stereo (optionally trimmed) → AAC.

use ffmpeg_next as ffmpeg;
use ffmpeg_next::format::context::{Input, Output};
use ffmpeg_next::{Dictionary, Packet, Rational, codec, decoder, encoder, filter, frame};

use super::pipeline::{Mux, Settings, Span, Window, is_again, is_end, open_checked};
use super::probe::StreamInfo;
use super::{Context, Failure, Res, from_us, rescale, to_us};

/// What a filter graph's input is set up for: sample rate, sample format (FFmpeg's int) and the
/// channel layout (as FFmpeg describes it, e.g. "stereo" or "1 channels").
type FrameKey = (i32, i32, String);

/// The sample rate, format and channel layout of a decoded frame, and the abuffer argument
/// for the layout.
fn frame_key(f: &frame::Audio) -> (FrameKey, String) {
    // SAFETY: plain fields of a frame we own; FFmpeg NUL-terminates the description.
    unsafe {
        let p = f.as_ptr();
        let l = &(*p).ch_layout;
        let mut buf = [0 as libc::c_char; 128];
        let n = ffmpeg::ffi::av_channel_layout_describe(l, buf.as_mut_ptr(), buf.len());
        let name = if n > 0 { std::ffi::CStr::from_ptr(buf.as_ptr()).to_string_lossy().into_owned() } else { String::new() };
        let native = l.order == ffmpeg::ffi::AVChannelOrder::AV_CHANNEL_ORDER_NATIVE;
        let arg = if native && !name.is_empty() { format!("channel_layout={name}") } else { format!("channels={}", l.nb_channels.max(1)) };
        (((*p).sample_rate, (*p).format, name), arg)
    }
}

/// The AAC encoder and where its packets go.
struct Enc {
    enc: encoder::audio::Encoder,
    tb: Rational,
    ost: usize,
    frame_size: u32,
    /// Where the next frame starts (in `tb`, samples at 48 kHz).
    next_pts: Option<i64>,
}

impl Enc {
    /// Encodes one filtered frame; audio is one continuous run, so a frame that would overlap
    /// the previous one (after a filter reconfiguration) is moved after it.
    fn frame(&mut self, f: &mut frame::Audio, mux: &mut Mux) -> Res<()> {
        let pts = match (f.pts(), self.next_pts) {
            (Some(p), Some(n)) if p < n => n,
            (Some(p), _) => p,
            (None, n) => n.unwrap_or(0),
        };
        f.set_pts(Some(pts));
        self.next_pts = Some(pts + f.samples() as i64);
        self.enc.send_frame(f).ctx("AAC encoder")?;
        self.drain(mux)
    }

    fn drain(&mut self, mux: &mut Mux) -> Res<()> {
        loop {
            let mut pkt = Packet::empty();
            match self.enc.receive_packet(&mut pkt) {
                Ok(()) => mux.write(pkt, self.ost, self.tb)?,
                Err(e) if is_end(&e) => return Ok(()),
                Err(e) => return Err(e).ctx("AAC encoder"),
            }
        }
    }
}

/// Pulls every frame (of the encoder's frame size) the graph has ready into the encoder.
fn pull(graph: &mut filter::Graph, enc: &mut Enc, mux: &mut Mux) -> Res<()> {
    let mut f = frame::Audio::empty();
    loop {
        let r = graph.get("out").ok_or_else(|| Failure::new("internal: no filter output"))?.sink().frame(&mut f);
        match r {
            Ok(()) => enc.frame(&mut f, mux)?,
            Err(e) if is_end(&e) => return Ok(()),
            Err(e) => return Err(e).ctx("audio filter"),
        }
    }
}

/// Ends a graph's input and encodes what it still holds.
fn close(graph: &mut filter::Graph, enc: &mut Enc, mux: &mut Mux) -> Res<()> {
    if let Some(mut c) = graph.get("in") {
        c.source().flush().ctx("audio filter")?;
    }
    pull(graph, enc, mux)
}

/// Decode → (trim) → resample → AAC. The filter graph is set up from the first frame (HE-AAC
/// and friends decode at other rates or layouts than their headers say) and again whenever the
/// frames change.
pub(crate) struct AudioPipe {
    pub ist: usize,
    ist_tb: Rational,
    dec: decoder::Audio,
    graph: Option<(filter::Graph, FrameKey)>,
    spec: String,
    enc: Enc,
    origin: i64,
    end_us: Option<i64>,
    trim: bool,
    next_pts: Option<i64>,
    pub done: bool,
    pub frames: u64,
    pub span: Span,
}

impl AudioPipe {
    pub fn new(ictx: &Input, st: &StreamInfo, octx: &mut Output, set: &Settings, win: &Window) -> Res<Self> {
        let ist = ictx.stream(st.index).ok_or_else(|| Failure::new("internal: no such input stream"))?;
        let ist_tb = ist.time_base();
        if ist_tb.0 <= 0 || ist_tb.1 <= 0 {
            return Err(Failure::new("the audio stream has no time base"));
        }
        let mut dctx = codec::Context::from_parameters(ist.parameters()).ctx("cannot read the audio parameters")?.decoder();
        dctx.set_packet_time_base(ist_tb);
        let dec = dctx.audio().ctx("cannot open the audio decoder")?;
        let channels = st.channels.unwrap_or(2);
        let (out_layout, out_name) =
            if channels == 1 { (ffmpeg::ChannelLayout::MONO, "mono") } else { (ffmpeg::ChannelLayout::STEREO, "stereo") };
        let trim = match (win.trim, win.end_us) {
            (true, Some(end)) => format!("atrim=start=0:end={:.6},", (end - win.origin_us) as f64 / 1e6),
            (true, None) => "atrim=start=0,".to_string(),
            _ => String::new(),
        };
        let spec = format!("{trim}aresample=48000,aformat=sample_fmts=fltp:sample_rates=48000:channel_layouts={out_name}");

        let aac = encoder::find_by_name("aac").ok_or_else(|| Failure::new("FFmpeg lacks the aac encoder"))?;
        let global = octx.format().flags().contains(ffmpeg::format::Flags::GLOBAL_HEADER);
        let mut ost = octx.add_stream(aac).ctx("cannot add the audio stream")?;
        let mut e = codec::Context::new_with_codec(aac).encoder().audio().ctx("cannot create the audio encoder")?;
        let enc_tb = Rational(1, 48000);
        e.set_rate(48000);
        e.set_channel_layout(out_layout);
        e.set_format(ffmpeg::format::Sample::F32(ffmpeg::format::sample::Type::Planar));
        e.set_bit_rate(usize::try_from(set.audio_bitrate).unwrap_or(usize::MAX));
        e.set_time_base(enc_tb);
        if global {
            e.set_flags(codec::Flags::GLOBAL_HEADER);
        }
        // SAFETY: an unopened encoder context with its codec.
        unsafe { open_checked(e.as_mut_ptr(), Dictionary::new(), "AAC encoder")? };
        let enc = encoder::audio::Encoder(e);
        let frame_size = enc.frame_size();
        ost.set_parameters(&enc);
        ost.set_time_base(enc_tb);
        let ost_index = ost.index();
        Ok(AudioPipe {
            ist: st.index,
            ist_tb,
            dec,
            graph: None,
            spec,
            enc: Enc { enc, tb: enc_tb, ost: ost_index, frame_size, next_pts: None },
            origin: from_us(win.origin_us, ist_tb),
            end_us: win.end_us.map(|e| e - win.origin_us),
            trim: win.trim,
            next_pts: None,
            done: false,
            frames: 0,
            span: Span::default(),
        })
    }

    fn graph_for(&self, key: &FrameKey, layout_arg: &str) -> Res<filter::Graph> {
        let (rate, fmt, _) = key;
        if *rate <= 0 || *fmt < 0 {
            return Err(Failure::new("the audio's sample rate or format is unknown"));
        }
        let args = format!("time_base={}/{}:sample_rate={rate}:sample_fmt={fmt}:{layout_arg}", self.ist_tb.0, self.ist_tb.1);
        let mut g = filter::Graph::new();
        let abuffer = filter::find("abuffer").ok_or_else(|| Failure::new("FFmpeg lacks the abuffer filter"))?;
        let asink = filter::find("abuffersink").ok_or_else(|| Failure::new("FFmpeg lacks the abuffersink filter"))?;
        g.add(&abuffer, "in", &args).ctx("cannot create the audio filter input")?;
        g.add(&asink, "out", "").ctx("cannot create the audio filter output")?;
        g.output("in", 0).and_then(|p| p.input("out", 0)).and_then(|p| p.parse(&self.spec)).ctx("cannot build the audio filters")?;
        g.validate().ctx("cannot configure the audio filters")?;
        // The AAC encoder takes exactly 1024 samples a frame (the last one may be shorter).
        if self.enc.frame_size > 0 {
            if let Some(mut out) = g.get("out") {
                out.sink().set_frame_size(self.enc.frame_size);
            }
        }
        Ok(g)
    }

    /// Feeds one demuxed packet.
    pub fn packet(&mut self, pkt: &Packet, mux: &mut Mux) -> Res<()> {
        if let Err(e) = self.dec.send_packet(pkt) {
            if !is_again(&e) {
                return Ok(());
            }
        }
        self.receive(mux)
    }

    fn receive(&mut self, mux: &mut Mux) -> Res<()> {
        let mut f = frame::Audio::empty();
        loop {
            match self.dec.receive_frame(&mut f) {
                Ok(()) => self.frame(&mut f, mux)?,
                Err(e) if is_end(&e) => return Ok(()),
                Err(_) => continue,
            }
        }
    }

    fn frame(&mut self, f: &mut frame::Audio, mux: &mut Mux) -> Res<()> {
        let rate = i64::from(f.rate());
        let samples = f.samples() as i64;
        if rate <= 0 || samples <= 0 {
            return Ok(());
        }
        let pts = match f.timestamp().or(f.pts()) {
            Some(p) => p,
            None => self.next_pts.unwrap_or(self.origin),
        };
        self.next_pts = Some(pts + rescale(samples, Rational(1, rate as i32), self.ist_tb));
        let rel = pts - self.origin;
        let rel_us = to_us(rel, self.ist_tb).unwrap_or(0);
        let mut end_us = rel_us + samples * 1_000_000 / rate;
        if self.trim {
            if end_us <= 0 {
                return Ok(());
            }
            if let Some(e) = self.end_us {
                if rel_us >= e {
                    self.done = true;
                    return Ok(());
                }
                end_us = end_us.min(e);
            }
            self.span.add(rel_us.max(0), end_us);
        } else {
            self.span.add(rel_us, end_us);
        }
        let (key, layout_arg) = frame_key(f);
        if self.graph.as_ref().is_none_or(|(_, k)| *k != key) {
            if let Some((mut old, _)) = self.graph.take() {
                close(&mut old, &mut self.enc, mux)?;
            }
            self.graph = Some((self.graph_for(&key, &layout_arg)?, key));
        }
        let Some((graph, _)) = self.graph.as_mut() else { return Ok(()) };
        self.frames += 1;
        f.set_pts(Some(rel));
        graph.get("in").ok_or_else(|| Failure::new("internal: no filter input"))?.source().add(f).ctx("audio filter")?;
        pull(graph, &mut self.enc, mux)
    }

    /// Drains the decoder, the filters and the encoder.
    pub fn finish(&mut self, mux: &mut Mux) -> Res<()> {
        let _ = self.dec.send_eof();
        self.receive(mux)?;
        if let Some((mut g, _)) = self.graph.take() {
            close(&mut g, &mut self.enc, mux)?;
        }
        self.enc.enc.send_eof().ctx("AAC encoder")?;
        self.enc.drain(mux)
    }
}
