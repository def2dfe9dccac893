//! Video: decoding, the rotate/scale filter graph and the libx264 pipeline.

use ffmpeg_next as ffmpeg;
use ffmpeg_next::format::context::{Input, Output};
use ffmpeg_next::{Dictionary, Packet, Rational, codec, decoder, encoder, filter, frame};

use super::pipeline::{Mux, Settings, Span, Window, is_again, is_end, open_checked};
use super::probe::StreamInfo;
use super::{Context, Failure, MICROS, Res, from_us, rescale, to_us};

/// Upright, scaled-down (never up), even output size for a display size.
pub(crate) fn target_size(dw: u32, dh: u32, max_h: u32) -> (u32, u32) {
    let (dw, dh) = (dw.max(1), dh.max(1));
    let h = dh.min(max_h.max(2));
    let w = (f64::from(dw) * f64::from(h) / f64::from(dh)).round() as u32;
    (w.div_ceil(2).saturating_mul(2).max(2), (h / 2 * 2).max(2))
}

/// Filters that turn a picture `rotation` degrees clockwise (each ends with a comma).
pub(crate) fn rotation_filters(rotation: i32) -> &'static str {
    match rotation {
        90 => "transpose=clock,",
        180 => "hflip,vflip,",
        270 => "transpose=cclock,",
        _ => "",
    }
}

/// The upright display size of a picture with this sample aspect ratio and rotation.
pub(crate) fn display_size((w, h): (u32, u32), sar: Rational, rotation: i32) -> (u32, u32) {
    let w = if sar.0 > 0 && sar.1 > 0 && sar.0 != sar.1 { (f64::from(w) * f64::from(sar.0) / f64::from(sar.1)).round() as u32 } else { w };
    if rotation % 180 == 90 { (h, w) } else { (w, h) }
}

/// A video decoder with frame threading on (as many threads as cores).
pub(crate) fn video_decoder(ist: &ffmpeg::Stream) -> Res<decoder::Video> {
    let mut ctx = codec::Context::from_parameters(ist.parameters()).ctx("cannot read the video parameters")?;
    ctx.set_threading(ffmpeg::threading::Config { kind: ffmpeg::threading::Type::Frame, count: 0, ..Default::default() });
    let mut dec = ctx.decoder();
    dec.set_packet_time_base(ist.time_base());
    dec.video().ctx("cannot open the video decoder")
}

/// The frame rate to encode at (average, else the base rate, else 30).
pub(crate) fn frame_rate(ist: &ffmpeg::Stream) -> Rational {
    let ok = |r: Rational| r.0 > 0 && r.1 > 0 && f64::from(r.0) / f64::from(r.1) <= 240.0;
    [ist.avg_frame_rate(), ist.rate()].into_iter().find(|&r| ok(r)).unwrap_or(Rational(30, 1))
}

/// What a filter graph's input is set up for: width, height, pixel format (FFmpeg's int).
pub(crate) type FrameKey = (u32, u32, i32);

/// The size and pixel format of a decoded frame.
pub(crate) fn frame_key(f: &frame::Video) -> FrameKey {
    // SAFETY: a plain field of a frame we own.
    (f.width(), f.height(), unsafe { (*f.as_ptr()).format })
}

/// A video filter graph from frames like `key` to `spec` (which ends with the output format).
pub(crate) fn video_graph(key: FrameKey, sar: Rational, tb: Rational, fps: Rational, spec: &str) -> Res<filter::Graph> {
    let (w, h, pix) = key;
    if pix < 0 || w == 0 || h == 0 {
        return Err(Failure::new("the video's size or pixel format is unknown"));
    }
    let sar = if sar.0 > 0 && sar.1 > 0 { sar } else { Rational(1, 1) };
    let args = format!(
        "video_size={w}x{h}:pix_fmt={pix}:time_base={}/{}:pixel_aspect={}/{}:frame_rate={}/{}",
        tb.0, tb.1, sar.0, sar.1, fps.0, fps.1
    );
    let mut g = filter::Graph::new();
    let buffer = filter::find("buffer").ok_or_else(|| Failure::new("FFmpeg lacks the buffer filter"))?;
    let sink = filter::find("buffersink").ok_or_else(|| Failure::new("FFmpeg lacks the buffersink filter"))?;
    g.add(&buffer, "in", &args).ctx("cannot create the video filter input")?;
    g.add(&sink, "out", "").ctx("cannot create the video filter output")?;
    g.output("in", 0).and_then(|p| p.input("out", 0)).and_then(|p| p.parse(spec)).ctx("cannot build the video filters")?;
    g.validate().ctx("cannot configure the video filters")?;
    Ok(g)
}

/// The H.264 encoder and where its packets go.
struct Enc {
    enc: encoder::video::Encoder,
    tb: Rational,
    ost: usize,
    /// One frame, in `tb`.
    frame_dur: i64,
    last_pts: Option<i64>,
}

impl Enc {
    /// Encodes one filtered frame (timestamps in `tb`).
    fn frame(&mut self, f: &mut frame::Video, mux: &mut Mux) -> Res<()> {
        let Some(pts) = f.pts() else { return Ok(()) };
        // x264 needs strictly increasing timestamps.
        if self.last_pts.is_some_and(|l| pts <= l) {
            return Ok(());
        }
        self.last_pts = Some(pts);
        // Decoded frames carry their source picture type, which x264 would obey.
        f.set_kind(ffmpeg::picture::Type::None);
        self.enc.send_frame(f).ctx("H.264 encoder")?;
        self.drain(mux)
    }

    fn drain(&mut self, mux: &mut Mux) -> Res<()> {
        loop {
            let mut pkt = Packet::empty();
            match self.enc.receive_packet(&mut pkt) {
                Ok(()) => {
                    if pkt.duration() <= 0 {
                        pkt.set_duration(self.frame_dur);
                    }
                    mux.write(pkt, self.ost, self.tb)?;
                }
                Err(e) if is_end(&e) => return Ok(()),
                Err(e) => return Err(e).ctx("H.264 encoder"),
            }
        }
    }
}

/// Pulls every frame the graph has ready into the encoder.
fn pull(graph: &mut filter::Graph, enc: &mut Enc, mux: &mut Mux) -> Res<()> {
    let mut f = frame::Video::empty();
    loop {
        let r = graph.get("out").ok_or_else(|| Failure::new("internal: no filter output"))?.sink().frame(&mut f);
        match r {
            Ok(()) => enc.frame(&mut f, mux)?,
            Err(e) if is_end(&e) => return Ok(()),
            Err(e) => return Err(e).ctx("video filter"),
        }
    }
}

/// Ends a graph's input and encodes what it still holds.
fn close(graph: &mut filter::Graph, enc: &mut Enc, mux: &mut Mux) -> Res<()> {
    if let Some(mut c) = graph.get("in") {
        c.source().flush().ctx("video filter")?;
    }
    pull(graph, enc, mux)
}

/// Decode → rotate/scale → libx264. The filter graph is set up from the first frame and again
/// whenever the frames' size or format changes.
pub(crate) struct VideoPipe {
    pub ist: usize,
    ist_tb: Rational,
    dec: decoder::Video,
    graph: Option<(filter::Graph, FrameKey)>,
    spec: String,
    fps: Rational,
    sar: Rational,
    enc: Enc,
    frame_dur_us: i64,
    origin: i64,
    end: Option<i64>,
    trim: bool,
    last_in: Option<i64>,
    /// A frame at or after the window's end was seen.
    pub done: bool,
    pub frames: u64,
    /// Decoded (and kept) source time, relative to the origin, microseconds.
    pub span: Span,
    pub width: u32,
    pub height: u32,
}

impl VideoPipe {
    pub fn new(ictx: &Input, st: &StreamInfo, octx: &mut Output, set: &Settings, win: &Window) -> Res<Self> {
        let ist = ictx.stream(st.index).ok_or_else(|| Failure::new("internal: no such input stream"))?;
        let ist_tb = ist.time_base();
        let dec = video_decoder(&ist)?;
        let fps = frame_rate(&ist);
        let sar = dec.aspect_ratio();
        let (dw, dh) = display_size((dec.width(), dec.height()), sar, st.rotation);
        if dw == 0 || dh == 0 {
            return Err(Failure::new("the video's size is unknown"));
        }
        let (w, h) = target_size(dw, dh, set.max_height);
        let spec = format!("{}scale={w}:{h},setsar=1,format=yuv420p", rotation_filters(st.rotation));
        // The graph keeps the input time base, so the encoder works in it too.
        let enc_tb = if ist_tb.0 > 0 && ist_tb.1 > 0 { ist_tb } else { Rational(fps.1, fps.0) };

        let x264 = encoder::find_by_name("libx264").ok_or_else(|| Failure::new("FFmpeg lacks the libx264 encoder"))?;
        let global = octx.format().flags().contains(ffmpeg::format::Flags::GLOBAL_HEADER);
        let mut ost = octx.add_stream(x264).ctx("cannot add the video stream")?;
        let mut e = codec::Context::new_with_codec(x264).encoder().video().ctx("cannot create the video encoder")?;
        e.set_width(w);
        e.set_height(h);
        e.set_format(ffmpeg::format::Pixel::YUV420P);
        e.set_aspect_ratio(Rational(1, 1));
        e.set_time_base(enc_tb);
        // x264 takes its rate control frame rate from here (else from the time base).
        e.set_frame_rate(Some(fps));
        e.set_gop((2.0 * f64::from(fps.0) / f64::from(fps.1)).round().clamp(1.0, 600.0) as u32);
        e.set_bit_rate(usize::try_from(set.video_bitrate).unwrap_or(usize::MAX));
        e.set_max_bit_rate(usize::try_from(set.video_bitrate).unwrap_or(usize::MAX));
        // Without this libavcodec runs x264 on one thread.
        e.set_threading(ffmpeg::threading::Config { kind: ffmpeg::threading::Type::Frame, count: 0, ..Default::default() });
        if global {
            e.set_flags(codec::Flags::GLOBAL_HEADER);
        }
        let mut opts = Dictionary::new();
        opts.set("preset", "veryfast");
        opts.set("crf", "23");
        opts.set("maxrate", &set.video_bitrate.to_string());
        opts.set("bufsize", &set.video_bitrate.saturating_mul(2).to_string());
        opts.set("threads", "auto");
        // SAFETY: an unopened encoder context with its codec.
        unsafe { open_checked(e.as_mut_ptr(), opts, "H.264 encoder")? };
        let enc = encoder::video::Encoder(e);
        ost.set_parameters(&enc);
        ost.set_time_base(enc_tb);
        ost.set_avg_frame_rate(fps);
        let ost_index = ost.index();
        let frame_dur = rescale(1, Rational(fps.1, fps.0), enc_tb).max(1);
        Ok(VideoPipe {
            ist: st.index,
            ist_tb,
            dec,
            graph: None,
            spec,
            fps,
            sar,
            enc: Enc { enc, tb: enc_tb, ost: ost_index, frame_dur, last_pts: None },
            frame_dur_us: rescale(1, Rational(fps.1, fps.0), MICROS).max(1),
            origin: from_us(win.origin_us, ist_tb),
            end: win.end_us.map(|e| from_us(e - win.origin_us, ist_tb)),
            trim: win.trim,
            last_in: None,
            done: false,
            frames: 0,
            span: Span::default(),
            width: w,
            height: h,
        })
    }

    /// Feeds one demuxed packet (timestamps in the input stream's time base).
    pub fn packet(&mut self, pkt: &Packet, mux: &mut Mux) -> Res<()> {
        // A corrupt packet is skipped; the decoder resynchronises on the next keyframe.
        if let Err(e) = self.dec.send_packet(pkt) {
            if !is_again(&e) {
                return Ok(());
            }
        }
        self.receive(mux)
    }

    fn receive(&mut self, mux: &mut Mux) -> Res<()> {
        let mut f = frame::Video::empty();
        loop {
            match self.dec.receive_frame(&mut f) {
                Ok(()) => self.frame(&mut f, mux)?,
                Err(e) if is_end(&e) => return Ok(()),
                // A broken frame: keep going.
                Err(_) => continue,
            }
        }
    }

    fn frame(&mut self, f: &mut frame::Video, mux: &mut Mux) -> Res<()> {
        let step = rescale(self.enc.frame_dur, self.enc.tb, self.ist_tb).max(1);
        let pts = match f.timestamp().or(f.pts()) {
            Some(p) => p,
            None => self.last_in.map_or(self.origin, |l| l + step),
        };
        self.last_in = Some(pts);
        let rel = pts - self.origin;
        if self.trim {
            if rel < 0 {
                return Ok(());
            }
            if self.end.is_some_and(|e| rel >= e) {
                self.done = true;
                return Ok(());
            }
        }
        let key = frame_key(f);
        if self.graph.as_ref().is_none_or(|(_, k)| *k != key) {
            if let Some((mut old, _)) = self.graph.take() {
                close(&mut old, &mut self.enc, mux)?;
            }
            let sar = Some(f.aspect_ratio()).filter(|r| r.0 > 0 && r.1 > 0).unwrap_or(self.sar);
            self.graph = Some((video_graph(key, sar, self.ist_tb, self.fps, &self.spec)?, key));
        }
        let Some((graph, _)) = self.graph.as_mut() else { return Ok(()) };
        let rel_us = to_us(rel, self.ist_tb).unwrap_or(0);
        self.span.add(rel_us, rel_us + self.frame_dur_us);
        self.frames += 1;
        f.set_pts(Some(rel));
        graph.get("in").ok_or_else(|| Failure::new("internal: no filter input"))?.source().add(f).ctx("video filter")?;
        pull(graph, &mut self.enc, mux)
    }

    /// Drains the decoder, the filters and the encoder.
    pub fn finish(&mut self, mux: &mut Mux) -> Res<()> {
        let _ = self.dec.send_eof();
        self.receive(mux)?;
        if let Some((mut g, _)) = self.graph.take() {
            close(&mut g, &mut self.enc, mux)?;
        }
        self.enc.enc.send_eof().ctx("H.264 encoder")?;
        self.enc.drain(mux)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(target_size(1920, 1080, 720), (1280, 720));
        assert_eq!(target_size(1280, 720, 720), (1280, 720));
        assert_eq!(target_size(640, 480, 720), (640, 480));
        assert_eq!(target_size(1080, 1920, 720), (406, 720));
        assert_eq!(target_size(641, 361, 720), (642, 360));
        assert_eq!(target_size(1, 1, 720), (2, 2));
        assert_eq!(display_size((1440, 1080), Rational(4, 3), 0), (1920, 1080));
        assert_eq!(display_size((1920, 1080), Rational(1, 1), 90), (1080, 1920));
    }
}
