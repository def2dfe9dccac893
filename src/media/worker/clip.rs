//! `clip`: the part [start, end) of a recording as MP4 — a fast stream copy from the keyframe at
//! or before start, or (`--accurate`, or when the streams cannot go into MP4 as they are) a
//! re-encode of exactly the frames in the range.

use std::path::Path;

use ffmpeg_next::codec::Id;
use ffmpeg_next::format::context::Input;
use ffmpeg_next::{Packet, Rational};
use serde_json::{Value, json};

use super::pipeline::{Mux, Read, Reader, Settings, Transcode, Window, Written, read_packet};
use super::probe::{Info, probe};
use super::proxy::{copy_streams, shift};
use super::{EncodeArgs, Failure, Res, TempOutput, from_us, input_path, open_input, shortfall_warning, to_us};

pub(crate) fn run(input: &Path, output: &Path, start_ms: i64, end_ms: i64, accurate: bool, enc: &EncodeArgs) -> Res<Value> {
    if start_ms < 0 || end_ms < 0 {
        return Err(Failure::new(format!("invalid range {start_ms}..{end_ms} ms: negative")));
    }
    if start_ms >= end_ms {
        return Err(Failure::new(format!("invalid range {start_ms}..{end_ms} ms: start is not before end")));
    }
    let input = input_path(input)?;
    let out = TempOutput::new(output, &input)?;
    let mut ictx = open_input(&input)?;
    let info = probe(&ictx);
    if info.video.is_none() && info.audio.is_none() {
        return Err(Failure::new("no video or audio stream"));
    }
    let end_ms = match info.duration_ms {
        Some(d) if start_ms >= d => {
            return Err(Failure::new(format!("invalid range {start_ms}..{end_ms} ms: the recording is {d} ms long")));
        }
        Some(d) => end_ms.min(d),
        None => end_ms,
    };
    let start_us = info.start_us.saturating_add(start_ms.saturating_mul(1000));
    let end_us = info.start_us.saturating_add(end_ms.saturating_mul(1000));
    let copy = !accurate && copyable(&info);
    let reader = position(&mut ictx, &input, &info, start_us)?;
    let (actual_start_us, written) = if copy {
        copy_range(&mut ictx, reader, &info, out.path(), start_us, end_us)?
    } else {
        reencode_range(&mut ictx, reader, &info, out.path(), &Settings::from(enc), start_us, end_us)?
    };
    // Video, when there is any, is the first output stream.
    let video = info.video.is_some() && written.has(0);
    if info.video.is_some() && !video {
        return Err(Failure::new("no video frame could be decoded in the range"));
    }
    out.commit()?;
    let duration_ms = (written.all.end.unwrap_or(0).max(0) + 500) / 1000;
    let start_ms = (actual_start_us - info.start_us) / 1000;
    Ok(json!({
        "content_type": if video { "video/mp4" } else { "audio/mp4" },
        "mode": if copy { "copy" } else { "reencode" },
        "start_ms": start_ms,
        "duration_ms": duration_ms,
        "warning": shortfall_warning(duration_ms, Some(end_ms - start_ms)),
    }))
}

/// Streams MP4 can carry as they are (and a browser can play): H.264 upright video, AAC audio.
fn copyable(info: &Info) -> bool {
    info.video().is_none_or(|v| v.codec_id == Id::H264 && v.rotation == 0) && info.audio().is_none_or(|a| a.codec_id == Id::AAC)
}

/// Positions the input so that the first video packet is a keyframe at or before `start_us`:
/// seeks there (then 1, 5 and 30 s earlier, for inputs without an exact index), else reads from
/// the beginning. Returns the packets read while checking.
fn position(ictx: &mut Input, input: &str, info: &Info, start_us: i64) -> Res<Reader> {
    if start_us <= info.start_us {
        return Ok(Reader::default());
    }
    let video = info.video.and_then(|v| ictx.stream(v).map(|s| (v, s.time_base())));
    for back_us in [0, 1_000_000, 5_000_000, 30_000_000] {
        let target = start_us - back_us;
        if target <= info.start_us {
            break;
        }
        if let Err(e) = ictx.seek(target, ..target) {
            super::note(&format!("seek failed ({e}); reading from the start"));
            break;
        }
        let Some((v, tb)) = video else { return Ok(Reader::default()) };
        let mut reader = Reader::default();
        let mut landed = false;
        while reader.ahead.len() < 10_000 {
            let Read::Packet(p) = read_packet(ictx) else { break };
            let first_video = p.stream() == v;
            landed = first_video && p.is_key() && p.pts().or(p.dts()).and_then(|t| to_us(t, tb)).is_some_and(|t| t <= start_us);
            reader.ahead.push_back(p);
            if first_video {
                break;
            }
        }
        if landed {
            return Ok(reader);
        }
    }
    // Reopening is the surest way back to the start of any input.
    *ictx = open_input(input)?;
    Ok(Reader::default())
}

/// A packet read while the clip's origin is not yet known.
struct Pending {
    pkt: Packet,
    ost: usize,
    tb: Rational,
    pts: i64,
    dts: i64,
    video: bool,
}

/// Stream copy from the last keyframe at or before `start_us` until `end_us`; returns the
/// source time the clip starts at and the end of the output, both in microseconds.
fn copy_range(ictx: &mut Input, mut reader: Reader, info: &Info, path: &str, start_us: i64, end_us: i64) -> Res<(i64, Written)> {
    let mut octx = Mux::create(path)?;
    let map = copy_streams(ictx, info, &mut octx)?;
    let mut mux = Mux::start(octx)?;
    let has_video = info.video.is_some();

    // Until the origin is known, packets wait here, from the latest keyframe at or before start.
    let mut pending: Vec<Pending> = vec![];
    let mut keyframe: Option<i64> = None;
    let mut origin: Option<i64> = None;
    let mut video_done = !has_video;
    let mut audio_done = info.audio.is_none();
    let mut written = 0u64;
    let mut eof = false;
    while !eof {
        let pkt = match reader.next(ictx) {
            Read::Packet(p) => Some(p),
            Read::Eof => None,
            Read::Error(e) => {
                super::note(&format!("input ends early: {e}"));
                None
            }
        };
        match pkt {
            Some(pkt) => {
                let idx = pkt.stream();
                let Some(&Some((ost, tb))) = map.get(idx) else { continue };
                let pts = pkt.pts().or(pkt.dts()).and_then(|t| to_us(t, tb));
                let dts = pkt.dts().or(pkt.pts()).and_then(|t| to_us(t, tb));
                let (Some(pts), Some(dts)) = (pts, dts) else { continue };
                let video = info.video == Some(idx);
                let key = pkt.is_key();
                let p = Pending { pkt, ost, tb, pts, dts, video };
                if origin.is_none() {
                    if video {
                        if key && (keyframe.is_none() || pts <= start_us) {
                            // A later keyframe still at or before start: begin there instead.
                            keyframe = Some(pts);
                            pending.retain(|q| !q.video && q.pts >= pts);
                        }
                        if keyframe.is_none() {
                            continue;
                        }
                        let past_start = dts > start_us;
                        pending.push(p);
                        if past_start {
                            origin = keyframe;
                        }
                    } else if has_video {
                        pending.push(p);
                    } else {
                        // Audio only: begin with the packet that covers start.
                        let dur = to_us(p.pkt.duration().max(0), tb).unwrap_or(0);
                        if pts + dur <= start_us {
                            continue;
                        }
                        origin = Some(pts);
                        pending.push(p);
                    }
                } else {
                    pending.push(p);
                }
            }
            None => {
                eof = true;
                if origin.is_none() {
                    origin = keyframe;
                }
            }
        }
        let Some(o) = origin else { continue };
        for p in pending.drain(..) {
            if p.video {
                // Cut in decode order so no kept frame loses a reference.
                if video_done || p.dts >= end_us {
                    video_done = true;
                    continue;
                }
            } else {
                if p.pts < o {
                    continue;
                }
                if audio_done || p.pts >= end_us {
                    audio_done = true;
                    continue;
                }
            }
            let mut pkt = p.pkt;
            shift(&mut pkt, from_us(o, p.tb));
            mux.write(pkt, p.ost, p.tb)?;
            written += 1;
        }
        if video_done && audio_done {
            break;
        }
    }
    let Some(origin) = origin else { return Err(Failure::new("nothing to copy in the range (no keyframe found)")) };
    if written == 0 {
        return Err(Failure::new("nothing to copy in the range"));
    }
    Ok((origin, mux.finish()?))
}

/// Decodes from the keyframe at or before `start_us` and re-encodes exactly [start, end).
fn reencode_range(
    ictx: &mut Input,
    mut reader: Reader,
    info: &Info,
    path: &str,
    set: &Settings,
    start_us: i64,
    end_us: i64,
) -> Res<(i64, Written)> {
    let mut octx = Mux::create(path)?;
    let win = Window { origin_us: start_us, end_us: Some(end_us), trim: true };
    let mut tc = Transcode::new(ictx, info, &mut octx, set, &win)?;
    let mut mux = Mux::start(octx)?;
    loop {
        match reader.next(ictx) {
            Read::Packet(pkt) => {
                tc.packet(&pkt, &mut mux)?;
                if tc.done() {
                    break;
                }
            }
            Read::Eof => break,
            Read::Error(e) => {
                super::note(&format!("input ends early: {e}"));
                break;
            }
        }
    }
    tc.finish(&mut mux)?;
    if tc.frames() == 0 {
        return Err(Failure::new("nothing in the range could be decoded"));
    }
    let first = tc.span().first.unwrap_or(0);
    Ok((start_us + first.max(0), mux.finish()?))
}
