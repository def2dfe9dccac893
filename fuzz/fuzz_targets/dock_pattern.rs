//! Dock path patterns (`[[dock]] pattern` in the config): `Pattern::compile`, then `matches` on
//! paths. Input: the pattern on the first line, paths to match on the following lines.
//!
//! Properties: compiling and matching never panic; what a match reports is taken from the path
//! (device and officer are one path segment's text, seq is digits); and the round trip: a path
//! rendered from the pattern with known values matches and gives back exactly those values,
//! whenever the pattern separates its placeholders (else the split is legitimately ambiguous).

#![no_main]

use chrono::{NaiveDate, NaiveDateTime, TimeZone};
use evidenced::ingest::pattern::{PathFacts, Pattern};
use libfuzzer_sys::fuzz_target;

/// One piece of a pattern, tokenised the way `Pattern::compile` does.
#[derive(Debug)]
enum Piece<'a> {
    Literal(&'a str),
    /// Lower-cased name and the `:FORMAT`, if any.
    Placeholder(String, Option<&'a str>),
}

fn pieces(pattern: &str) -> Option<Vec<Piece<'_>>> {
    let mut out = Vec::new();
    let mut rest = pattern;
    while let Some(open) = rest.find('{') {
        out.push(Piece::Literal(&rest[..open]));
        let close = rest[open..].find('}')? + open;
        let inner = &rest[open + 1..close];
        out.push(match inner.split_once(':') {
            Some((n, f)) => Piece::Placeholder(n.to_ascii_lowercase(), Some(f)),
            None => Piece::Placeholder(inner.to_ascii_lowercase(), None),
        });
        rest = &rest[close + 1..];
    }
    out.push(Piece::Literal(rest));
    Some(out)
}

/// The values rendered into a path: letters and digits only, so any other character a pattern
/// puts after a placeholder ends it unambiguously.
struct Values {
    device: String,
    officer: String,
    seq: String,
    ext: String,
    any: String,
    start: NaiveDateTime,
}

fn values(seed: &[u8]) -> Values {
    let h = seed.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3));
    let start = NaiveDate::from_ymd_opt(2006 + (h % 90) as i32, 1 + (h >> 8) as u32 % 12, 1 + (h >> 12) as u32 % 28)
        .and_then(|d| d.and_hms_opt((h >> 20) as u32 % 24, (h >> 28) as u32 % 60, (h >> 36) as u32 % 60))
        .unwrap();
    Values {
        device: format!("BWC{:X}", h & 0xffff),
        officer: format!("P{}", (h >> 16) % 100_000),
        seq: format!("{:04}", (h >> 40) % 10_000),
        ext: ["mp4", "MP4", "mov", "wav"][(h >> 50) as usize % 4].to_string(),
        any: ["", "x", "cam2"][(h >> 54) as usize % 3].to_string(),
        start,
    }
}

/// Whether a `{start:FORMAT}` has a variable-width field that digits after it could extend.
fn start_is_ambiguous(fmt: &str) -> bool {
    let mut prev_f = false;
    let mut chars = fmt.chars().peekable();
    while let Some(c) = chars.next() {
        let piece_is_digits = if c == '%' {
            let d = chars.next();
            if prev_f && d != Some('%') {
                return true;
            }
            prev_f = d == Some('f');
            continue;
        } else {
            c.is_ascii_digit()
        };
        if prev_f && piece_is_digits {
            return true;
        }
        prev_f = false;
    }
    false
}

/// Renders `pieces` with `v`; `None` when the pattern does not separate its placeholders.
fn render(pieces: &[Piece<'_>], v: &Values) -> Option<(String, Option<String>)> {
    let mut path = String::new();
    let mut time_text = None;
    for (i, p) in pieces.iter().enumerate() {
        match p {
            Piece::Literal(l) => path.push_str(l),
            Piece::Placeholder(name, fmt) => {
                // The next character must end the placeholder: the end, or a literal character
                // that is not a letter or a digit and does not occur in the time text.
                let next = match pieces.get(i + 1) {
                    Some(Piece::Literal(l)) => l.chars().next(),
                    _ => None,
                };
                let last = i + 2 == pieces.len() && matches!(pieces.get(i + 1), Some(Piece::Literal("")));
                let separated = last || next.is_some_and(|c| !c.is_alphanumeric());
                if !separated {
                    return None;
                }
                match (name.as_str(), fmt) {
                    ("device", None) => path.push_str(&v.device),
                    ("officer", None) => path.push_str(&v.officer),
                    ("seq", None) => path.push_str(&v.seq),
                    ("ext", None) => path.push_str(&v.ext),
                    ("any", None) => path.push_str(&v.any),
                    ("start", Some(f)) => {
                        if start_is_ambiguous(f) || next.is_some_and(|c| f.contains(c)) {
                            return None;
                        }
                        let t = v.start.format(f).to_string();
                        path.push_str(&t);
                        time_text = Some(t);
                    }
                    _ => return None,
                }
            }
        }
    }
    Some((path, time_text))
}

/// What a match reports comes from the path.
fn check_facts(f: &PathFacts, path: &str, pattern: &str) {
    for v in [&f.device, &f.officer].into_iter().flatten() {
        assert!(!v.is_empty() && !v.contains('/') && path.contains(v.as_str()), "{v:?} from {path:?} by {pattern:?}");
    }
    if let Some(s) = &f.seq {
        assert!(!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && path.contains(s.as_str()), "seq {s:?} from {path:?}");
    }
    if f.start.is_some() {
        assert!(pattern.to_ascii_lowercase().contains("{start:"), "a start time without {{start}}: {pattern:?}");
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split('\n');
    let pattern = lines.next().unwrap_or_default();
    let Ok(compiled) = Pattern::compile(pattern) else {
        return;
    };
    for path in lines.take(16) {
        for tz in [chrono_tz::UTC, chrono_tz::Asia::Shanghai, chrono_tz::America::New_York] {
            if let Some(f) = compiled.matches(path, tz) {
                check_facts(&f, path, pattern);
            }
        }
    }

    // The round trip.
    let Some(pieces) = pieces(pattern) else { panic!("{pattern:?} compiled but does not tokenise") };
    let v = values(data);
    let Some((path, time_text)) = render(&pieces, &v) else { return };
    let has = |n: &str| pieces.iter().any(|p| matches!(p, Piece::Placeholder(name, _) if name == n));
    let start_fmt = pieces.iter().find_map(|p| match p {
        Piece::Placeholder(n, Some(f)) if n == "start" => Some(*f),
        _ => None,
    });
    // A format without a full date and time would turn every path down: compiling refuses it.
    let parsed = match (start_fmt, &time_text) {
        (Some(f), Some(t)) => {
            Some(NaiveDateTime::parse_from_str(t, f).unwrap_or_else(|e| panic!("{pattern:?} compiled, but {t:?} does not read back: {e}")))
        }
        _ => None,
    };
    let f = compiled.matches(&path, chrono_tz::UTC).unwrap_or_else(|| panic!("{path:?}, rendered from {pattern:?}, does not match it"));
    check_facts(&f, &path, pattern);
    assert_eq!(f.device, has("device").then(|| v.device.clone()), "{path:?} by {pattern:?}");
    assert_eq!(f.officer, has("officer").then(|| v.officer.clone()), "{path:?} by {pattern:?}");
    assert_eq!(f.seq, has("seq").then(|| v.seq.clone()), "{path:?} by {pattern:?}");
    assert_eq!(f.start, parsed.map(|n| chrono::Utc.from_utc_datetime(&n)), "{path:?} by {pattern:?}");
});
