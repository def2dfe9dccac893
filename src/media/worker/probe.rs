//! `probe`: container and stream facts, creation time, GPS location, rotation, and whether the
//! file can be played by a browser as it is.

use std::ffi::CStr;

use ffmpeg_next as ffmpeg;
use ffmpeg_next::codec::Id;
use ffmpeg_next::format::context::Input;
use ffmpeg_next::media::Type as Medium;
use serde_json::{Value, json};

use super::{ratio, to_us};

// Pixel formats are plain ints in `AVCodecParameters`; these take them as ints (C enums are ints)
// so an unknown value can never become an invalid Rust enum.
unsafe extern "C" {
    #[link_name = "av_get_pix_fmt_name"]
    fn pix_fmt_name(fmt: libc::c_int) -> *const libc::c_char;
    #[link_name = "av_pix_fmt_desc_get"]
    fn pix_fmt_desc(fmt: libc::c_int) -> *const ffmpeg::ffi::AVPixFmtDescriptor;
}

/// Kind of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Video,
    Audio,
    Other,
}

/// One stream.
#[derive(Debug, Clone)]
pub(crate) struct StreamInfo {
    pub index: usize,
    pub kind: Kind,
    pub codec_id: Id,
    pub codec: String,
    pub profile: Option<String>,
    pub pix_fmt: Option<String>,
    pub bit_depth: Option<i64>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub fps: Option<f64>,
    /// Clockwise degrees to turn the picture to show it upright: 0, 90, 180 or 270.
    pub rotation: i32,
    pub sample_rate: Option<u32>,
    pub channels: Option<u32>,
    pub duration_ms: Option<i64>,
    /// Cover art and the like: a video stream that is not the recording.
    pub attached_pic: bool,
}

/// A GPS position from an ISO 6709 tag.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Location {
    pub lat: f64,
    pub lon: f64,
    pub alt: Option<f64>,
    pub iso6709: String,
}

/// Probe results.
#[derive(Debug, Clone)]
pub(crate) struct Info {
    pub container: String,
    pub duration_ms: Option<i64>,
    pub start_time_ms: Option<i64>,
    /// The container's start time in microseconds (0 when unknown).
    pub start_us: i64,
    pub bit_rate: Option<i64>,
    pub creation_time: Option<String>,
    pub creation_time_raw: Option<String>,
    pub location: Option<Location>,
    pub streams: Vec<StreamInfo>,
    /// Index (into `streams`, equal to the stream index) of the first real video stream.
    pub video: Option<usize>,
    /// Index of the first audio stream.
    pub audio: Option<usize>,
    pub browser_safe: bool,
}

impl Info {
    /// The first video stream.
    pub fn video(&self) -> Option<&StreamInfo> {
        self.video.and_then(|i| self.streams.get(i))
    }

    /// The first audio stream.
    pub fn audio(&self) -> Option<&StreamInfo> {
        self.audio.and_then(|i| self.streams.get(i))
    }

    /// Upright display size of the first video stream (after rotation).
    pub fn display_size(&self) -> Option<(u32, u32)> {
        let v = self.video()?;
        let (w, h) = (v.width?, v.height?);
        Some(if v.rotation % 180 == 90 { (h, w) } else { (w, h) })
    }

    /// The JSON the `probe` op prints.
    pub fn to_json(&self) -> Value {
        let streams: Vec<Value> = self
            .streams
            .iter()
            .map(|s| {
                json!({
                    "index": s.index,
                    "type": match s.kind { Kind::Video => "video", Kind::Audio => "audio", Kind::Other => "other" },
                    "codec": s.codec,
                    "profile": s.profile,
                    "pix_fmt": s.pix_fmt,
                    "bit_depth": s.bit_depth,
                    "width": s.width,
                    "height": s.height,
                    "fps": s.fps,
                    "rotation": s.rotation,
                    "sample_rate": s.sample_rate,
                    "channels": s.channels,
                    "duration_ms": s.duration_ms,
                })
            })
            .collect();
        json!({
            "container": self.container,
            "duration_ms": self.duration_ms,
            "start_time_ms": self.start_time_ms,
            "bit_rate": self.bit_rate,
            "creation_time": self.creation_time,
            "creation_time_raw": self.creation_time_raw,
            "location": self.location.as_ref().map(|l| json!({"lat": l.lat, "lon": l.lon, "alt": l.alt, "iso6709": l.iso6709})),
            "has_video": self.video.is_some(),
            "has_audio": self.audio.is_some(),
            "streams": streams,
            "browser_safe": self.browser_safe,
        })
    }
}

/// Probes an opened input.
pub(crate) fn probe(ictx: &Input) -> Info {
    let container = ictx.format().name().to_string();
    // SAFETY: reading plain fields of the open format context.
    let (start, duration) = unsafe { ((*ictx.as_ptr()).start_time, (*ictx.as_ptr()).duration) };
    let start_time_ms = to_us(start, super::MICROS).map(|us| us / 1000);
    let duration_ms = to_us(duration, super::MICROS).filter(|&d| d >= 0).map(|us| (us + 500) / 1000);
    let bit_rate = Some(ictx.bit_rate()).filter(|&b| b > 0);

    let streams: Vec<StreamInfo> = ictx.streams().map(|s| stream_info(&s)).collect();
    let video = streams.iter().position(|s| s.kind == Kind::Video && !s.attached_pic);
    let audio = streams.iter().position(|s| s.kind == Kind::Audio);

    let meta = ictx.metadata();
    let creation_time_raw = meta
        .get("creation_time")
        .map(str::to_string)
        .or_else(|| ictx.streams().find_map(|s| s.metadata().get("creation_time").map(str::to_string)));
    let creation_time = creation_time_raw.as_deref().and_then(parse_creation_time);
    let location =
        ["location", "com.apple.quicktime.location.ISO6709", "location-eng"].iter().find_map(|k| meta.get(k).and_then(parse_iso6709));

    let mut info = Info {
        container,
        duration_ms,
        start_time_ms,
        start_us: to_us(start, super::MICROS).unwrap_or(0),
        bit_rate,
        creation_time,
        creation_time_raw,
        location,
        streams,
        video,
        audio,
        browser_safe: false,
    };
    info.browser_safe = browser_safe(&info);
    info
}

/// MP4/MOV with H.264 8-bit 4:2:0 upright video (if any) and AAC audio (if any).
fn browser_safe(info: &Info) -> bool {
    if !info.container.contains("mp4") || (info.video.is_none() && info.audio.is_none()) {
        return false;
    }
    let video_ok = info
        .video()
        .is_none_or(|v| v.codec_id == Id::H264 && v.pix_fmt.as_deref() == Some("yuv420p") && v.bit_depth == Some(8) && v.rotation == 0);
    let audio_ok = info.audio().is_none_or(|a| a.codec_id == Id::AAC);
    video_ok && audio_ok
}

fn stream_info(s: &ffmpeg::Stream) -> StreamInfo {
    let par = s.parameters();
    // SAFETY: the parameters belong to the stream, which outlives this function.
    let p = unsafe { &*par.as_ptr() };
    let kind = match par.medium() {
        Medium::Video => Kind::Video,
        Medium::Audio => Kind::Audio,
        _ => Kind::Other,
    };
    let id = par.id();
    // SAFETY: FFmpeg returns a static string or NULL.
    let profile = unsafe { cstr(ffmpeg::ffi::avcodec_profile_name(id.into(), p.profile)) };
    let positive = |v: libc::c_int| u32::try_from(v).ok().filter(|&v| v > 0);
    let mut st = StreamInfo {
        index: s.index(),
        kind,
        codec_id: id,
        codec: id.name().to_string(),
        profile,
        pix_fmt: None,
        bit_depth: None,
        width: None,
        height: None,
        fps: None,
        rotation: 0,
        sample_rate: None,
        channels: None,
        duration_ms: to_us(s.duration(), s.time_base()).filter(|&d| d >= 0).map(|us| (us + 500) / 1000),
        attached_pic: s.disposition().contains(ffmpeg::format::stream::Disposition::ATTACHED_PIC),
    };
    match kind {
        Kind::Video => {
            if p.format >= 0 {
                // SAFETY: both accept any int and return NULL for unknown formats.
                unsafe {
                    st.pix_fmt = cstr(pix_fmt_name(p.format));
                    let desc = pix_fmt_desc(p.format);
                    if !desc.is_null() && (*desc).nb_components > 0 {
                        st.bit_depth = Some(i64::from((*desc).comp[0].depth));
                    }
                }
            }
            if st.bit_depth.is_none() && p.bits_per_raw_sample > 0 {
                st.bit_depth = Some(i64::from(p.bits_per_raw_sample));
            }
            st.width = positive(p.width);
            st.height = positive(p.height);
            st.fps = ratio(s.avg_frame_rate()).or_else(|| ratio(s.rate()).filter(|&r| r < 1000.0));
            st.rotation = rotation(s);
        }
        Kind::Audio => {
            st.sample_rate = positive(p.sample_rate);
            st.channels = positive(p.ch_layout.nb_channels).or_else(|| positive(p.channels));
            if p.bits_per_raw_sample > 0 {
                st.bit_depth = Some(i64::from(p.bits_per_raw_sample));
            }
        }
        Kind::Other => {}
    }
    st
}

/// # Safety
/// `p` is NULL or a NUL-terminated string.
unsafe fn cstr(p: *const libc::c_char) -> Option<String> {
    if p.is_null() { None } else { Some(unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()) }
}

/// Clockwise rotation to display the stream upright, from the display matrix or the legacy
/// `rotate` tag, as 0, 90, 180 or 270.
fn rotation(s: &ffmpeg::Stream) -> i32 {
    let from_matrix =
        s.side_data().find(|d| d.kind() == ffmpeg::codec::packet::side_data::Type::DisplayMatrix).and_then(|d| matrix_rotation(d.data()));
    let degrees = from_matrix.or_else(|| s.metadata().get("rotate").and_then(|r| r.trim().parse::<f64>().ok()));
    degrees.map(normalize_rotation).unwrap_or(0)
}

/// The clockwise rotation encoded in a 3x3 16.16 display matrix (as `-av_display_rotation_get`).
pub(crate) fn matrix_rotation(data: &[u8]) -> Option<f64> {
    if data.len() < 36 {
        return None;
    }
    let m: Vec<f64> = data[..36].chunks_exact(4).map(|c| f64::from(i32::from_ne_bytes([c[0], c[1], c[2], c[3]]))).collect();
    let scale0 = m[0].hypot(m[3]);
    let scale1 = m[1].hypot(m[4]);
    if scale0 == 0.0 || scale1 == 0.0 {
        return None;
    }
    Some((m[1] / scale1).atan2(m[0] / scale0).to_degrees())
}

/// Any angle to the nearest of 0, 90, 180, 270.
pub(crate) fn normalize_rotation(deg: f64) -> i32 {
    if !deg.is_finite() {
        return 0;
    }
    let quarter = (deg / 90.0).round() as i64;
    (quarter.rem_euclid(4) * 90) as i32
}

/// ISO 8601 / RFC 3339 to RFC 3339 UTC; None for anything else (such as a bare "09:30:00").
pub(crate) fn parse_creation_time(raw: &str) -> Option<String> {
    use chrono::{DateTime, NaiveDateTime, SecondsFormat, Utc};
    let raw = raw.trim();
    let utc: DateTime<Utc> = if let Ok(t) = DateTime::parse_from_rfc3339(raw) {
        t.with_timezone(&Utc)
    } else if let Ok(t) = DateTime::parse_from_str(raw, "%Y-%m-%dT%H:%M:%S%.f%z") {
        t.with_timezone(&Utc)
    } else {
        // No offset: FFmpeg's muxers and most cameras mean UTC.
        let naive = ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.fZ"]
            .iter()
            .find_map(|f| NaiveDateTime::parse_from_str(raw, f).ok())?;
        naive.and_utc()
    };
    Some(utc.to_rfc3339_opts(SecondsFormat::AutoSi, true))
}

/// ISO 6709 such as `+40.7128-074.0060/` or `+40.7128-074.0060+010.000/` (decimal degrees, or
/// degrees-minutes(-seconds) when the integer part is longer).
pub(crate) fn parse_iso6709(raw: &str) -> Option<Location> {
    let s = raw.trim();
    let body = s.split("CRS").next()?.trim_end_matches('/');
    let mut parts = vec![];
    let mut cur = String::new();
    for c in body.chars() {
        if c == '+' || c == '-' {
            if !cur.is_empty() {
                parts.push(std::mem::take(&mut cur));
            }
        } else if !(c.is_ascii_digit() || c == '.') {
            return None;
        }
        cur.push(c);
    }
    if !cur.is_empty() {
        parts.push(cur);
    }
    if parts.len() < 2 || parts.len() > 3 {
        return None;
    }
    let lat = angle(&parts[0], 2)?;
    let lon = angle(&parts[1], 3)?;
    let alt = match parts.get(2) {
        Some(a) => Some(a.parse::<f64>().ok().filter(|v| v.is_finite())?),
        None => None,
    };
    if !(-90.0..=90.0).contains(&lat) || !(-180.0..=180.0).contains(&lon) {
        return None;
    }
    Some(Location { lat, lon, alt, iso6709: s.to_string() })
}

/// `±DD.DD`, `±DDMM.MM` or `±DDMMSS.SS` with `deg_digits` digits of degrees.
fn angle(s: &str, deg_digits: usize) -> Option<f64> {
    let (sign, digits) = match s.as_bytes().first()? {
        b'+' => (1.0, &s[1..]),
        b'-' => (-1.0, &s[1..]),
        _ => return None,
    };
    let int_len = digits.find('.').unwrap_or(digits.len());
    if int_len == 0 || digits.matches('.').count() > 1 {
        return None;
    }
    let frac: f64 = if int_len < digits.len() { format!("0{}", &digits[int_len..]).parse().ok()? } else { 0.0 };
    let int = &digits[..int_len];
    let n = |r: std::ops::Range<usize>| int.get(r).and_then(|x| x.parse::<f64>().ok());
    let value = if int_len == deg_digits {
        n(0..deg_digits)? + frac
    } else if int_len == deg_digits + 2 {
        n(0..deg_digits)? + (n(deg_digits..deg_digits + 2)? + frac) / 60.0
    } else if int_len == deg_digits + 4 {
        n(0..deg_digits)? + n(deg_digits..deg_digits + 2)? / 60.0 + (n(deg_digits + 2..deg_digits + 4)? + frac) / 3600.0
    } else {
        return None;
    };
    Some(sign * value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso6709() {
        let l = parse_iso6709("+40.7128-074.0060/").unwrap();
        assert_eq!((l.lat, l.lon, l.alt), (40.7128, -74.006, None));
        let l = parse_iso6709("+40.7128-074.0060+010.000/").unwrap();
        assert_eq!(l.alt, Some(10.0));
        let l = parse_iso6709("-33.8688+151.2093-005.5/").unwrap();
        assert_eq!((l.lat, l.lon, l.alt), (-33.8688, 151.2093, Some(-5.5)));
        let l = parse_iso6709("+4042.768-07400.360/").unwrap();
        assert!((l.lat - 40.7128).abs() < 1e-6 && (l.lon + 74.006).abs() < 1e-6, "{l:?}");
        let l = parse_iso6709("+404246.08-0740021.6/").unwrap();
        assert!((l.lat - 40.7128).abs() < 1e-4 && (l.lon + 74.006).abs() < 1e-4, "{l:?}");
        let l = parse_iso6709("+40.7128-074.0060+010.000CRSWGS_84/").unwrap();
        assert_eq!(l.alt, Some(10.0));
        for bad in ["", "/", "40.7-74.0/", "+40.7128/", "+95.0+010.0/", "+40.7x-074.0/", "+1.2.3-074.0/", "+40.7-74.0+1+2/"] {
            assert!(parse_iso6709(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn creation_times() {
        assert_eq!(parse_creation_time("2024-03-15T14:22:05.000000Z").as_deref(), Some("2024-03-15T14:22:05Z"));
        assert_eq!(parse_creation_time("2024-03-15T14:22:05.250+01:00").as_deref(), Some("2024-03-15T13:22:05.250Z"));
        assert_eq!(parse_creation_time("2024-03-15 14:22:05").as_deref(), Some("2024-03-15T14:22:05Z"));
        assert_eq!(parse_creation_time("2024-03-15T14:22:05+0100").as_deref(), Some("2024-03-15T13:22:05Z"));
        assert_eq!(parse_creation_time("09:30:00"), None);
        assert_eq!(parse_creation_time("2024-03-15"), None);
        assert_eq!(parse_creation_time("garbage"), None);
    }

    #[test]
    fn rotations() {
        let m = |v: [i32; 9]| v.iter().flat_map(|x| x.to_ne_bytes()).collect::<Vec<u8>>();
        let one = 1 << 16;
        assert_eq!(matrix_rotation(&m([one, 0, 0, 0, one, 0, 0, 0, 1 << 30])).map(normalize_rotation), Some(0));
        assert_eq!(matrix_rotation(&m([0, one, 0, -one, 0, 0, 0, 0, 1 << 30])).map(normalize_rotation), Some(90));
        assert_eq!(matrix_rotation(&m([-one, 0, 0, 0, -one, 0, 0, 0, 1 << 30])).map(normalize_rotation), Some(180));
        assert_eq!(matrix_rotation(&m([0, -one, 0, one, 0, 0, 0, 0, 1 << 30])).map(normalize_rotation), Some(270));
        assert_eq!(matrix_rotation(&[0; 8]), None);
        assert_eq!(normalize_rotation(-90.0), 270);
        assert_eq!(normalize_rotation(359.0), 0);
        assert_eq!(normalize_rotation(f64::NAN), 0);
    }
}
