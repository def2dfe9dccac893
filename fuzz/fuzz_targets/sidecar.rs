//! JSON sidecars as docks write them, through `attribute` with the shipped dock pattern. Input:
//! the sidecar's bytes, optionally followed by a NUL and the dock-relative path of the recording.
//!
//! Properties: an unreadable sidecar is a review reason, never an error; a readable one wins for
//! every field it names (trimmed, non-empty); whatever is missing or implausible is flagged for
//! review; GPS and durations are sane; the result is storable and the raw sidecar is kept.

#![no_main]

use std::sync::LazyLock;

use evidenced::ingest::attribution::{Attribution, Inputs, Sidecar, attribute};
use evidenced::ingest::pattern::Pattern;
use libfuzzer_sys::fuzz_target;

/// 2005-01-01T00:00:00Z: earlier starts come from a camera whose clock reset.
const PLAUSIBLE_SINCE_MICROS: i64 = 1_104_537_600_000_000;

/// The embedded default dock pattern.
const PATTERN: &str = "{device}/{device}_{officer}_{start:%Y%m%d%H%M%S}_{seq}.{ext}";

fn trimmed(s: &Option<String>) -> Option<String> {
    s.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_string)
}

fn check(a: &Attribution, sidecar: Option<&[u8]>) {
    assert_eq!(a.needs_review, !a.review_reasons.is_empty());
    if a.device.is_none() || a.officer.is_none() || a.started_at.is_none() {
        assert!(a.needs_review, "incomplete attribution without review: {a:?}");
    }
    assert!(a.started_at.is_none_or(|t| t >= PLAUSIBLE_SINCE_MICROS), "{a:?}");
    assert!(a.gps.is_none_or(|g| g.lat.abs() <= 90.0 && g.lon.abs() <= 180.0), "{a:?}");
    assert!(a.duration_ms.is_none_or(|d| d >= 0), "{a:?}");
    let stored = serde_json::to_value(a).expect("an attribution is always storable");
    assert_eq!(stored["needs_review"], a.needs_review);
    let Some(bytes) = sidecar else { return };
    match serde_json::from_slice::<Sidecar>(bytes) {
        Err(_) => assert!(a.review_reasons.iter().any(|r| r.starts_with("unreadable sidecar")), "{:?}", a.review_reasons),
        Ok(s) => {
            // The sidecar wins for what it names.
            if let Some(d) = trimmed(&s.device_serial) {
                assert_eq!(a.device.as_deref(), Some(d.as_str()));
            }
            if let Some(o) = trimmed(&s.officer_id) {
                assert_eq!(a.officer.as_deref(), Some(o.as_str()));
            }
            if let Some(u) = trimmed(&s.unit) {
                assert_eq!(a.unit.as_deref(), Some(u.as_str()));
            }
            assert_eq!(a.case_ids, s.case_ids);
            assert_eq!(a.category, s.category);
            assert_eq!(a.classification, s.classification);
            if let Some(t) = s.start_time.as_deref() {
                match chrono::DateTime::parse_from_rfc3339(t).map(|t| t.timestamp_micros()) {
                    Ok(m) if m >= PLAUSIBLE_SINCE_MICROS => assert_eq!(a.started_at, Some(m)),
                    Ok(_) => assert!(a.started_at.is_none() && a.needs_review),
                    Err(_) => assert!(a.review_reasons.iter().any(|r| r.starts_with("sidecar start_time")), "{:?}", a.review_reasons),
                }
            }
            if let Some(d) = s.duration_s.filter(|d| d.is_finite() && *d >= 0.0) {
                assert_eq!(a.duration_ms, Some((d * 1000.0).round() as i64));
            }
        }
    }
    // The raw sidecar is kept for the record whenever it is JSON at all.
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(bytes) {
        assert_eq!(a.sources["sidecar"], v);
    }
}

fuzz_target!(|data: &[u8]| {
    let (sidecar, rel) = match data.iter().rposition(|b| *b == 0) {
        Some(i) => (&data[..i], String::from_utf8_lossy(&data[i + 1..]).into_owned()),
        None => (data, "BWC4A7F21/BWC4A7F21_P10482_20240315142205_0001.mp4".to_string()),
    };
    static PATTERNS: LazyLock<[Pattern; 1]> = LazyLock::new(|| [Pattern::compile(PATTERN).unwrap()]);
    let patterns = &*PATTERNS;
    for (tz, unit) in [(chrono_tz::UTC, Some("JS/NJ")), (chrono_tz::Asia::Shanghai, None)] {
        let inputs = Inputs { rel_path: &rel, sidecar: Some(sidecar), patterns, tz, dock_unit: unit };
        check(&attribute(&inputs), Some(sidecar));
    }
    // Without the sidecar, what the path says is what is kept.
    let a = attribute(&Inputs { rel_path: &rel, sidecar: None, patterns, tz: chrono_tz::UTC, dock_unit: None });
    check(&a, None);
    let facts = patterns[0].matches(&rel, chrono_tz::UTC).unwrap_or_default();
    assert_eq!((a.device, a.officer), (facts.device, facts.officer));
});
