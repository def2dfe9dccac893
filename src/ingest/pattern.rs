//! Dock path patterns such as `{device}/{device}_{officer}_{start:%Y%m%d%H%M%S}_{seq}.{ext}`:
//! compiled once into an anchored regex, matched against a file's path relative to its dock.
//! A placeholder used twice must match the same text both times.

use chrono::{NaiveDate, NaiveDateTime, TimeZone};
use regex::Regex;

/// A pattern that cannot be compiled.
#[derive(Debug, thiserror::Error)]
pub enum PatternError {
    /// `{` without `}`.
    #[error("unclosed placeholder starting at byte {0}")]
    Unclosed(usize),
    /// A placeholder this implementation does not know.
    #[error("unknown placeholder {{{0}}}: use device, officer, start:FORMAT, seq, ext or any")]
    Unknown(String),
    /// A `{start:FORMAT}` with an unsupported strftime directive.
    #[error("unsupported time directive %{0} in {{start:...}}")]
    Directive(char),
    /// Two `{start}` placeholders with different formats.
    #[error("{{start}} used twice with different formats")]
    StartTwice,
    /// A `{start:FORMAT}` without a full date and time: no path could ever match it.
    #[error("{{start:{0}}} does not name a date and time: it needs a year, a date, an hour and a minute (e.g. %Y%m%d%H%M%S)")]
    StartIncomplete(String),
}

/// A compiled path pattern.
#[derive(Debug, Clone)]
pub struct Pattern {
    /// The anchored regex; groups are named `<placeholder>_<n>`.
    regex: Regex,
    /// (placeholder, group name) in order of appearance.
    groups: Vec<(String, String)>,
    /// The chrono format of `{start:...}`, if present.
    start_format: Option<String>,
}

/// What a matching path says about its recording.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PathFacts {
    /// Camera serial from `{device}`.
    pub device: Option<String>,
    /// Officer id from `{officer}`.
    pub officer: Option<String>,
    /// Start time from `{start:...}` interpreted in the dock's time zone, as UTC.
    pub start: Option<chrono::DateTime<chrono::Utc>>,
    /// Sequence number from `{seq}`.
    pub seq: Option<String>,
}

impl Pattern {
    /// Compiles a pattern.
    pub fn compile(pattern: &str) -> Result<Pattern, PatternError> {
        let mut re = String::from("^");
        let mut groups = Vec::new();
        let mut start_format: Option<String> = None;
        let mut rest = pattern;
        let mut offset = 0;
        while let Some(open) = rest.find('{') {
            re.push_str(&regex::escape(&rest[..open]));
            let close = rest[open..].find('}').ok_or(PatternError::Unclosed(offset + open))? + open;
            let inner = &rest[open + 1..close];
            let (name, fmt) = match inner.split_once(':') {
                Some((n, f)) => (n.to_ascii_lowercase(), Some(f)),
                None => (inner.to_ascii_lowercase(), None),
            };
            let group = format!("{}_{}", name, groups.len());
            let body = match (name.as_str(), fmt) {
                ("device" | "officer", None) => r"[^/]+?".to_string(),
                ("seq", None) => r"[0-9]+".to_string(),
                ("ext", None) => r"[A-Za-z0-9]+".to_string(),
                ("any", None) => r"[^/]*?".to_string(),
                ("start", Some(f)) => {
                    if start_format.as_deref().is_some_and(|s| s != f) {
                        return Err(PatternError::StartTwice);
                    }
                    start_format = Some(f.to_string());
                    let body = time_regex(f)?;
                    if !names_an_instant(f) {
                        return Err(PatternError::StartIncomplete(f.to_string()));
                    }
                    body
                }
                _ => return Err(PatternError::Unknown(inner.to_string())),
            };
            re.push_str(&format!("(?P<{group}>{body})"));
            groups.push((name, group));
            offset += close + 1;
            rest = &rest[close + 1..];
        }
        re.push_str(&regex::escape(rest));
        re.push('$');
        let regex = Regex::new(&re).map_err(|e| PatternError::Unknown(e.to_string()))?;
        Ok(Pattern { regex, groups, start_format })
    }

    /// Matches a dock-relative path (with `/` separators). `None` when it does not fit or when a
    /// repeated placeholder matched different text, so the caller falls through to the next source.
    pub fn matches(&self, rel_path: &str, tz: chrono_tz::Tz) -> Option<PathFacts> {
        let caps = self.regex.captures(rel_path)?;
        let mut seen: Vec<(&str, &str)> = Vec::new();
        for (name, group) in &self.groups {
            let v = caps.name(group)?.as_str();
            if let Some((_, prev)) = seen.iter().find(|(n, _)| n == name) {
                if !prev.eq_ignore_ascii_case(v) || (name != "ext" && *prev != v) {
                    return None;
                }
            }
            seen.push((name, v));
        }
        let get = |n: &str| seen.iter().find(|(k, _)| *k == n).map(|(_, v)| v.to_string());
        let start = match (&self.start_format, get("start")) {
            (Some(fmt), Some(s)) => {
                let naive = NaiveDateTime::parse_from_str(&s, fmt).ok()?;
                Some(tz.from_local_datetime(&naive).earliest()?.with_timezone(&chrono::Utc))
            }
            _ => None,
        };
        Some(PathFacts { device: get("device"), officer: get("officer"), start, seq: get("seq") })
    }
}

/// Whether a `{start:FORMAT}` names an instant: a time written with it reads back. `%Y%m%d`
/// alone does not (no hour), and [`Pattern::matches`] would then turn every path down.
fn names_an_instant(fmt: &str) -> bool {
    let sample = NaiveDate::from_ymd_opt(2024, 3, 15).and_then(|d| d.and_hms_opt(8, 30, 5)).expect("a valid time");
    NaiveDateTime::parse_from_str(&sample.format(fmt).to_string(), fmt).is_ok()
}

/// A regex for the text a strftime format produces (the subset cameras use).
fn time_regex(fmt: &str) -> Result<String, PatternError> {
    let mut out = String::new();
    let mut chars = fmt.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push_str(&regex::escape(&c.to_string()));
            continue;
        }
        let d = chars.next().ok_or(PatternError::Directive('%'))?;
        out.push_str(match d {
            'Y' => r"[0-9]{4}",
            'm' | 'd' | 'H' | 'M' | 'S' | 'y' => r"[0-9]{2}",
            'j' => r"[0-9]{3}",
            'f' => r"[0-9]+",
            '%' => "%",
            other => return Err(PatternError::Directive(other)),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BWC: &str = "{device}/{device}_{officer}_{start:%Y%m%d%H%M%S}_{seq}.{ext}";

    #[test]
    fn body_camera_name() {
        let p = Pattern::compile(BWC).unwrap();
        let f = p.matches("BWC7F00A1/BWC7F00A1_P10234_20240315083000_0001.mp4", chrono_tz::UTC).unwrap();
        assert_eq!(f.device.as_deref(), Some("BWC7F00A1"));
        assert_eq!(f.officer.as_deref(), Some("P10234"));
        assert_eq!(f.seq.as_deref(), Some("0001"));
        assert_eq!(f.start.unwrap().to_rfc3339(), "2024-03-15T08:30:00+00:00");
    }

    #[test]
    fn timezone_applies() {
        let p = Pattern::compile(BWC).unwrap();
        let f = p.matches("A/A_B_20240315083000_1.MP4", chrono_tz::Asia::Shanghai).unwrap();
        assert_eq!(f.start.unwrap().to_rfc3339(), "2024-03-15T00:30:00+00:00");
    }

    #[test]
    fn repeated_placeholder_must_agree() {
        let p = Pattern::compile(BWC).unwrap();
        assert!(p.matches("A/B_P1_20240315083000_1.mp4", chrono_tz::UTC).is_none());
    }

    #[test]
    fn non_matching_and_bad_patterns() {
        let p = Pattern::compile(BWC).unwrap();
        assert!(p.matches("edge-cases/zero-byte.mp4", chrono_tz::UTC).is_none());
        assert!(p.matches("A/A_B_20241315083000_1.mp4", chrono_tz::UTC).is_none(), "month 13");
        assert!(Pattern::compile("{device").is_err());
        assert!(Pattern::compile("{camera}.mp4").is_err());
        assert!(Pattern::compile("{start:%Q}.mp4").is_err());
        // Found with the round trip of fuzz/fuzz_targets/dock_pattern.rs: a date without a time compiled, then never matched.
        for incomplete in ["%Y%m%d", "%H%M%S", "%m%d%H%M%S", "%Y%j", "%f"] {
            let p = format!("{{device}}_{{start:{incomplete}}}.{{ext}}");
            assert!(matches!(Pattern::compile(&p), Err(PatternError::StartIncomplete(_))), "{p}");
        }
        assert!(Pattern::compile("{device}_{start:%y%j%H%M}.{ext}").is_ok(), "seconds may be left out");
        assert!(Pattern::compile("{DEVICE}/{Any}.{EXT}").is_ok());
    }
}

/// Property tests ("fuzzing" on the stable toolchain): hostile pattern strings and paths.
#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;

    /// Pattern text built from the pieces the compiler cares about, so that most cases reach deep
    /// into it (placeholders, formats, unbalanced braces) rather than failing on the first byte.
    fn pattern_text() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just("{".to_string()),
            Just("}".to_string()),
            Just(":".to_string()),
            Just("%".to_string()),
            Just("/".to_string()),
            Just("_".to_string()),
            Just(".".to_string()),
            prop::sample::select(vec!["device", "officer", "seq", "ext", "any", "start", "DEVICE", "Start", "camera", ""])
                .prop_map(|n| format!("{{{n}}}")),
            prop::sample::select(vec!["Y", "m", "d", "H", "M", "S", "y", "j", "f", "%", "Q", "", "{", "}"])
                .prop_map(|d| format!("{{start:%{d}}}")),
            "[%a-zA-Z0-9{}:()\\[\\]*+?^$|\\\\.-]{0,12}",
            "\\PC{0,6}",
        ];
        prop::collection::vec(piece, 0..16).prop_map(|v| v.concat())
    }

    fn path_text() -> impl Strategy<Value = String> {
        prop_oneof![
            "\\PC{0,80}",
            "[A-Za-z0-9_./%{}-]{0,80}",
            "([A-Z0-9]{1,8}/)?[A-Z0-9]{1,8}_[A-Z0-9]{1,6}_[0-9]{8,16}_[0-9]{1,4}\\.[a-zA-Z0-9]{1,4}",
            prop::collection::vec(any::<u8>(), 0..120).prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
            (0usize..5000).prop_map(|n| "../".repeat(n / 3) + &"x".repeat(n)),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn compile_never_panics(p in pattern_text()) {
            let _ = Pattern::compile(&p);
        }

        #[test]
        fn compile_arbitrary_unicode_never_panics(p in "\\PC{0,64}") {
            let _ = Pattern::compile(&p);
        }

        #[test]
        fn matching_never_panics(p in pattern_text(), paths in prop::collection::vec(path_text(), 1..6)) {
            if let Ok(c) = Pattern::compile(&p) {
                for path in &paths {
                    if let Some(f) = c.matches(path, chrono_tz::Asia::Shanghai) {
                        // Whatever matched is a piece of the path.
                        for v in [&f.device, &f.officer, &f.seq].into_iter().flatten() {
                            prop_assert!(path.contains(v.as_str()), "{v:?} not in {path:?}");
                        }
                    }
                    let _ = c.matches(path, chrono_tz::UTC);
                }
            }
        }
    }
}
