//! `poster`: one JPEG of a representative frame (10 % in, at most 10 s), upright and scaled down.

use std::path::Path;

use ffmpeg_next as ffmpeg;
use ffmpeg_next::format::context::Input;
use ffmpeg_next::{Dictionary, Packet, Rational, codec, encoder, frame};
use serde_json::{Value, json};

use super::pipeline::{Read, read_packet};
use super::probe::{StreamInfo, probe};
use super::video::{display_size, frame_key, frame_rate, rotation_filters, target_size, video_decoder, video_graph};
use super::{Context, Failure, Res, TempOutput, input_path, open_input, to_us};

/// MJPEG quality (`-q:v`): 2 is best, 31 worst.
const QSCALE: i32 = 3;
/// FFmpeg's `FF_QP2LAMBDA` (a fixed constant of its API).
const QP2LAMBDA: i32 = 118;

pub(crate) fn run(input: &Path, output: &Path, max_height: u32) -> Res<Value> {
    let input = input_path(input)?;
    let out = TempOutput::new(output, &input)?;
    let mut ictx = open_input(&input)?;
    let info = probe(&ictx);
    let Some(v) = info.video().cloned() else { return Err(Failure::not_applicable("no video stream")) };
    let offset_us = info.duration_ms.map_or(0, |d| (d * 1000 / 10).min(10_000_000)).max(0);
    let grabbed = match grab(&mut ictx, &v, info.start_us, Some(info.start_us + offset_us))? {
        Some(g) => g,
        None => {
            // Nothing at or after the target: the first decodable frame from the start.
            drop(ictx);
            let mut ictx = open_input(&input)?;
            grab(&mut ictx, &v, info.start_us, None)?.ok_or_else(|| Failure::new("no decodable video frame"))?
        }
    };
    let (jpeg, w, h) = encode_jpeg(grabbed.frame, grabbed.tb, grabbed.fps, v.rotation, max_height)?;
    std::fs::write(out.path(), &jpeg).map_err(|e| Failure::new(format!("cannot write {}: {e}", out.path())))?;
    out.commit()?;
    Ok(json!({ "width": w, "height": h, "at_ms": grabbed.at_us / 1000 }))
}

struct Grabbed {
    frame: frame::Video,
    tb: Rational,
    fps: Rational,
    at_us: i64,
}

/// The first frame at or after `target_us` (seeking to the keyframe before it), or with no
/// target the first decodable frame.
fn grab(ictx: &mut Input, v: &StreamInfo, start_us: i64, target_us: Option<i64>) -> Res<Option<Grabbed>> {
    let (mut dec, tb, fps) = {
        let ist = ictx.stream(v.index).ok_or_else(|| Failure::new("internal: no such input stream"))?;
        (video_decoder(&ist)?, ist.time_base(), frame_rate(&ist))
    };
    if let Some(t) = target_us.filter(|&t| t > start_us) {
        if let Err(e) = ictx.seek(t, ..t) {
            super::note(&format!("seek failed ({e}); decoding from the start"));
        }
    }
    let mut f = frame::Video::empty();
    let mut take = |dec: &mut ffmpeg::decoder::Video| -> Option<Grabbed> {
        while dec.receive_frame(&mut f).is_ok() {
            let at = f.timestamp().or(f.pts()).and_then(|p| to_us(p, tb));
            let ok = match (target_us, at) {
                (None, _) | (_, None) => true,
                (Some(t), Some(a)) => a >= t,
            };
            if ok {
                let frame = std::mem::replace(&mut f, frame::Video::empty());
                return Some(Grabbed { frame, tb, fps, at_us: at.map_or(0, |a| (a - start_us).max(0)) });
            }
        }
        None
    };
    loop {
        let pkt: Packet = match read_packet(ictx) {
            Read::Packet(p) => p,
            Read::Eof | Read::Error(_) => break,
        };
        if pkt.stream() != v.index {
            continue;
        }
        // Corrupt packets are skipped.
        let _ = dec.send_packet(&pkt);
        if let Some(g) = take(&mut dec) {
            return Ok(Some(g));
        }
    }
    let _ = dec.send_eof();
    Ok(take(&mut dec))
}

/// Rotates, scales and encodes one frame as a JPEG; returns it with its size.
fn encode_jpeg(mut src: frame::Video, tb: Rational, fps: Rational, rotation: i32, max_height: u32) -> Res<(Vec<u8>, u32, u32)> {
    let (dw, dh) = display_size((src.width(), src.height()), src.aspect_ratio(), rotation);
    let (w, h) = target_size(dw, dh, max_height);
    let spec = format!("{}scale={w}:{h},setsar=1,format=yuvj420p", rotation_filters(rotation));
    let mut graph = video_graph(frame_key(&src), src.aspect_ratio(), tb, fps, &spec)?;
    src.set_pts(Some(0));
    graph.get("in").ok_or_else(|| Failure::new("internal: no filter input"))?.source().add(&src).ctx("poster filter")?;
    graph.get("in").ok_or_else(|| Failure::new("internal: no filter input"))?.source().flush().ctx("poster filter")?;
    let mut scaled = frame::Video::empty();
    graph.get("out").ok_or_else(|| Failure::new("internal: no filter output"))?.sink().frame(&mut scaled).ctx("poster filter")?;

    let mjpeg = encoder::find_by_name("mjpeg").ok_or_else(|| Failure::new("FFmpeg lacks the mjpeg encoder"))?;
    let mut e = codec::Context::new_with_codec(mjpeg).encoder().video().ctx("cannot create the JPEG encoder")?;
    e.set_width(scaled.width());
    e.set_height(scaled.height());
    e.set_format(ffmpeg::format::Pixel::YUVJ420P);
    e.set_time_base(Rational(1, 25));
    e.set_flags(codec::Flags::QSCALE);
    let lambda = QSCALE * QP2LAMBDA;
    e.set_global_quality(lambda);
    let mut enc = e.open_with(Dictionary::new()).ctx("cannot open the JPEG encoder")?;
    scaled.set_pts(Some(0));
    scaled.set_kind(ffmpeg::picture::Type::None);
    // The mpegvideo encoders take a fixed quantiser from the frame (as `ffmpeg -q:v` does).
    // SAFETY: a plain field of our own frame.
    unsafe { (*scaled.as_mut_ptr()).quality = lambda };
    enc.send_frame(&scaled).ctx("JPEG encoder")?;
    enc.send_eof().ctx("JPEG encoder")?;
    let mut pkt = Packet::empty();
    enc.receive_packet(&mut pkt).ctx("JPEG encoder")?;
    let data = pkt.data().map(<[u8]>::to_vec).unwrap_or_default();
    if data.len() < 4 || data[0] != 0xFF || data[1] != 0xD8 {
        return Err(Failure::new("the JPEG encoder produced no image"));
    }
    Ok((data, scaled.width(), scaled.height()))
}
