//! `proxy`: a browser-playable MP4 (H.264/AAC, faststart) — a stream copy when the input already
//! is one and small enough, else a re-encode.

use std::path::Path;

use ffmpeg_next as ffmpeg;
use ffmpeg_next::format::context::{Input, Output};
use ffmpeg_next::{Rational, codec, encoder};
use serde_json::{Value, json};

use super::pipeline::{Mux, Read, Settings, Span, Transcode, Window, read_packet};
use super::probe::{Info, probe};
use super::{Context, EncodeArgs, Failure, Res, TempOutput, from_us, input_path, open_input, shortfall_warning, to_us};

pub(crate) fn run(input: &Path, output: &Path, enc: &EncodeArgs, remux_allowed: bool) -> Res<Value> {
    let input = input_path(input)?;
    let out = TempOutput::new(output, &input)?;
    let mut ictx = open_input(&input)?;
    let info = probe(&ictx);
    if info.video.is_none() && info.audio.is_none() {
        return Err(Failure::new("no video or audio stream"));
    }
    let set = Settings::from(enc);
    let fits = info.display_size().is_none_or(|(_, h)| h <= set.max_height);
    let remux = remux_allowed && info.browser_safe && fits;
    let done = if remux { copy_all(&mut ictx, &info, out.path())? } else { transcode(&mut ictx, &info, out.path(), &set)? };
    out.commit()?;

    let duration_ms = info.duration_ms.unwrap_or(done.decoded_ms);
    let mut warning =
        shortfall_warning(done.decoded_ms, info.duration_ms).or_else(|| done.read_error.map(|e| format!("the input ends early: {e}")));
    let size = if done.has_video { done.size } else { None };
    if info.video.is_some() && !done.has_video {
        warning =
            Some(warning.map_or_else(|| "the video could not be decoded".to_string(), |w| format!("the video could not be decoded; {w}")));
    }
    Ok(json!({
        "mode": if remux { "remux" } else { "transcode" },
        "content_type": if size.is_some() { "video/mp4" } else { "audio/mp4" },
        "width": size.map(|s| s.0),
        "height": size.map(|s| s.1),
        "duration_ms": duration_ms,
        "decoded_ms": done.decoded_ms,
        "warning": warning,
    }))
}

/// What a proxy run produced.
struct Done {
    size: Option<(u32, u32)>,
    /// The output has a video stream (the first output stream, when the input has video).
    has_video: bool,
    decoded_ms: i64,
    read_error: Option<String>,
}

/// Adds stream-copy outputs for the first video and audio streams; returns, per input stream,
/// its output stream and time base.
pub(crate) fn copy_streams(ictx: &Input, info: &Info, octx: &mut Output) -> Res<Vec<Option<(usize, Rational)>>> {
    let mut map = vec![None; ictx.nb_streams() as usize];
    for st in [info.video(), info.audio()].into_iter().flatten() {
        let ist = ictx.stream(st.index).ok_or_else(|| Failure::new("internal: no such input stream"))?;
        let mut ost = octx.add_stream(encoder::find(codec::Id::None)).ctx("cannot add an output stream")?;
        ost.set_parameters(ist.parameters());
        // The input container's codec tag may not be valid in MP4; let the muxer choose.
        // SAFETY: the output stream's own parameters.
        unsafe { (*ost.parameters().as_mut_ptr()).codec_tag = 0 };
        ost.set_time_base(ist.time_base());
        if st.kind == super::probe::Kind::Video {
            ost.set_avg_frame_rate(ist.avg_frame_rate());
        }
        if let Some(slot) = map.get_mut(st.index) {
            *slot = Some((ost.index(), ist.time_base()));
        }
    }
    Ok(map)
}

/// Shifts a packet's timestamps by `-offset` (in its own time base).
pub(crate) fn shift(pkt: &mut ffmpeg::Packet, offset: i64) {
    if let Some(p) = pkt.pts() {
        pkt.set_pts(Some(p - offset));
    }
    if let Some(d) = pkt.dts() {
        pkt.set_dts(Some(d - offset));
    }
}

/// Stream copy of the first video and audio streams into a faststart MP4.
fn copy_all(ictx: &mut Input, info: &Info, path: &str) -> Res<Done> {
    let mut octx = Mux::create(path)?;
    let map = copy_streams(ictx, info, &mut octx)?;
    let mut mux = Mux::start(octx)?;
    let mut span = Span::default();
    let mut written = 0u64;
    let mut read_error = None;
    loop {
        match read_packet(ictx) {
            Read::Packet(mut pkt) => {
                let Some(&Some((ost, tb))) = map.get(pkt.stream()) else { continue };
                shift(&mut pkt, from_us(info.start_us, tb));
                if let Some(start) = pkt.pts().and_then(|p| to_us(p, tb)) {
                    span.add(start, start + to_us(pkt.duration().max(0), tb).unwrap_or(0));
                }
                mux.write(pkt, ost, tb)?;
                written += 1;
            }
            Read::Eof => break,
            Read::Error(e) if written > 0 => {
                super::note(&format!("input ends early: {e}"));
                read_error = Some(e);
                break;
            }
            Read::Error(e) => return Err(Failure::new(format!("cannot read the input: {e}"))),
        }
    }
    if written == 0 {
        return Err(Failure::new("the input has no packets"));
    }
    let w = mux.finish()?;
    Ok(Done { size: info.display_size(), has_video: info.video.is_some() && w.has(0), decoded_ms: span.len_ms(), read_error })
}

/// Re-encode to H.264/AAC.
fn transcode(ictx: &mut Input, info: &Info, path: &str, set: &Settings) -> Res<Done> {
    let mut octx = Mux::create(path)?;
    let win = Window { origin_us: info.start_us, end_us: None, trim: false };
    let mut tc = Transcode::new(ictx, info, &mut octx, set, &win)?;
    let mut mux = Mux::start(octx)?;
    let mut read_error = None;
    loop {
        match read_packet(ictx) {
            Read::Packet(pkt) => tc.packet(&pkt, &mut mux)?,
            Read::Eof => break,
            Read::Error(e) if tc.frames() > 0 => {
                super::note(&format!("input ends early: {e}"));
                read_error = Some(e);
                break;
            }
            Read::Error(e) => return Err(Failure::new(format!("cannot read the input: {e}"))),
        }
    }
    tc.finish(&mut mux)?;
    if tc.frames() == 0 {
        return Err(Failure::new("nothing in the input could be decoded"));
    }
    let w = mux.finish()?;
    let has_video = tc.video.is_some() && w.has(0);
    Ok(Done { size: tc.video.as_ref().map(|v| (v.width, v.height)), has_video, decoded_ms: tc.span().len_ms(), read_error })
}
