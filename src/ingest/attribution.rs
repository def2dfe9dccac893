//! Attribution: who recorded what, when and where, from (in order of precedence) the JSON sidecar
//! with the same base name, then the dock's path patterns, then the dock's own unit. Missing or
//! conflicting facts never block archiving: they set `needs_review` with a reason a person can act on.

use serde::{Deserialize, Serialize};

use super::pattern::{PathFacts, Pattern};

/// Recordings that claim to start before this are from a camera whose clock reset (2000-01-01,
/// 1970): their start is kept in the sidecar record but not trusted for sorting or retention.
const PLAUSIBLE_SINCE_MICROS: i64 = 1_104_537_600_000_000; // 2005-01-01T00:00:00Z

/// A sidecar file as body-camera docks write it. Unknown fields are kept in `raw`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Sidecar {
    /// Camera serial.
    pub device_serial: Option<String>,
    /// Officer id.
    pub officer_id: Option<String>,
    /// Unit path.
    pub unit: Option<String>,
    /// Dock station id.
    pub dock_id: Option<String>,
    /// Start, RFC 3339.
    pub start_time: Option<String>,
    /// End, RFC 3339.
    pub end_time: Option<String>,
    /// Duration in seconds.
    pub duration_s: Option<f64>,
    /// Position.
    pub gps: Option<Gps>,
    /// Cases the officer named at docking.
    #[serde(default)]
    pub case_ids: Vec<String>,
    /// Retention category.
    pub category: Option<String>,
    /// Classification.
    pub classification: Option<String>,
}

/// A GPS fix.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq)]
pub struct Gps {
    /// Latitude, degrees.
    pub lat: f64,
    /// Longitude, degrees.
    pub lon: f64,
}

/// The merged result stored on the recording.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Attribution {
    /// Camera serial.
    pub device: Option<String>,
    /// Officer id.
    pub officer: Option<String>,
    /// Unit path.
    pub unit: Option<String>,
    /// Start, micros UTC.
    pub started_at: Option<i64>,
    /// End, micros UTC.
    pub ended_at: Option<i64>,
    /// Duration, ms.
    pub duration_ms: Option<i64>,
    /// Position.
    pub gps: Option<Gps>,
    /// Case ids.
    pub case_ids: Vec<String>,
    /// Category, if the sidecar named one.
    pub category: Option<String>,
    /// Classification, if the sidecar named one.
    pub classification: Option<String>,
    /// Whether a person must look at it.
    pub needs_review: bool,
    /// Why.
    pub review_reasons: Vec<String>,
    /// Where each field came from, plus the raw sidecar: kept for the record.
    pub sources: serde_json::Value,
}

/// Everything attribution looks at for one file.
pub struct Inputs<'a> {
    /// Path relative to the dock root, `/`-separated (lossy UTF-8).
    pub rel_path: &'a str,
    /// Sidecar bytes, if a sidecar exists.
    pub sidecar: Option<&'a [u8]>,
    /// The dock's patterns.
    pub patterns: &'a [Pattern],
    /// The dock's time zone.
    pub tz: chrono_tz::Tz,
    /// The dock's unit.
    pub dock_unit: Option<&'a str>,
}

fn parse_time(s: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(s).ok().map(|t| t.timestamp_micros())
}

/// Merges two candidate values: sidecar wins; disagreement is a review reason.
fn merge<T: PartialEq + std::fmt::Debug + Clone>(
    field: &str,
    sidecar: Option<T>,
    path: Option<T>,
    reasons: &mut Vec<String>,
    sources: &mut serde_json::Map<String, serde_json::Value>,
) -> Option<T> {
    match (sidecar, path) {
        (Some(a), Some(b)) => {
            if a != b {
                reasons.push(format!("conflicting {field}: sidecar {a:?}, file name {b:?}"));
            }
            sources.insert(field.into(), "sidecar".into());
            Some(a)
        }
        (Some(a), None) => {
            sources.insert(field.into(), "sidecar".into());
            Some(a)
        }
        (None, Some(b)) => {
            sources.insert(field.into(), "path".into());
            Some(b)
        }
        (None, None) => None,
    }
}

/// Attributes one file.
pub fn attribute(inp: &Inputs<'_>) -> Attribution {
    let mut reasons = Vec::new();
    let mut sources = serde_json::Map::new();
    let mut sidecar = Sidecar::default();
    if let Some(bytes) = inp.sidecar {
        match serde_json::from_slice::<Sidecar>(bytes) {
            Ok(s) => sidecar = s,
            Err(e) => reasons.push(format!("unreadable sidecar: {e}")),
        }
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(bytes) {
            sources.insert("sidecar".into(), v);
        }
    }
    let facts: PathFacts = inp.patterns.iter().find_map(|p| p.matches(inp.rel_path, inp.tz)).unwrap_or_default();

    let side_start = sidecar.start_time.as_deref().and_then(parse_time);
    if sidecar.start_time.is_some() && side_start.is_none() {
        reasons.push(format!("sidecar start_time {:?} is not RFC 3339", sidecar.start_time.as_deref().unwrap_or("")));
    }
    let device = merge("device", non_empty(sidecar.device_serial), facts.device, &mut reasons, &mut sources);
    let officer = merge("officer", non_empty(sidecar.officer_id), facts.officer, &mut reasons, &mut sources);
    let mut started_at = merge("started_at", side_start, facts.start.map(|t| t.timestamp_micros()), &mut reasons, &mut sources);
    let unit = merge("unit", non_empty(sidecar.unit), inp.dock_unit.map(str::to_string), &mut Vec::new(), &mut sources);

    if device.is_none() {
        reasons.push("missing device".into());
    }
    if officer.is_none() {
        reasons.push("missing officer".into());
    }
    match started_at {
        None => reasons.push("missing start time".into()),
        Some(t) if t < PLAUSIBLE_SINCE_MICROS => {
            reasons.push(format!("implausible start time {} (camera clock reset?)", crate::custody::format_at(t)));
            started_at = None;
        }
        _ => {}
    }
    let ended_at = sidecar.end_time.as_deref().and_then(parse_time);
    let duration_ms = sidecar.duration_s.filter(|d| d.is_finite() && *d >= 0.0).map(|d| (d * 1000.0).round() as i64).or_else(|| {
        match (started_at, ended_at) {
            (Some(s), Some(e)) if e >= s => Some((e - s) / 1000),
            _ => None,
        }
    });
    let gps = sidecar.gps.filter(|g| (-90.0..=90.0).contains(&g.lat) && (-180.0..=180.0).contains(&g.lon));
    Attribution {
        device,
        officer,
        unit,
        started_at,
        ended_at,
        duration_ms,
        gps,
        case_ids: sidecar.case_ids,
        category: sidecar.category,
        classification: sidecar.classification,
        needs_review: !reasons.is_empty(),
        review_reasons: reasons,
        sources: serde_json::Value::Object(sources),
    }
}

fn non_empty(s: Option<String>) -> Option<String> {
    s.map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pats() -> Vec<Pattern> {
        vec![Pattern::compile("{device}/{device}_{officer}_{start:%Y%m%d%H%M%S}_{seq}.{ext}").unwrap()]
    }

    fn run(rel: &str, sidecar: Option<&str>) -> Attribution {
        let p = pats();
        attribute(&Inputs {
            rel_path: rel,
            sidecar: sidecar.map(str::as_bytes),
            patterns: &p,
            tz: chrono_tz::UTC,
            dock_unit: Some("JS/NJ"),
        })
    }

    #[test]
    fn path_only_is_complete() {
        let a = run("BWC1/BWC1_P1_20240315142205_0001.mp4", None);
        assert_eq!((a.device.as_deref(), a.officer.as_deref(), a.unit.as_deref()), (Some("BWC1"), Some("P1"), Some("JS/NJ")));
        assert!(!a.needs_review, "{:?}", a.review_reasons);
    }

    #[test]
    fn sidecar_wins_and_conflict_flags_review() {
        let a = run(
            "BWC1/BWC1_P1_20240315142205_0001.mp4",
            Some(r#"{"device_serial":"BWC1","officer_id":"P9","gps":{"lat":1.5,"lon":2.5},"duration_s":5}"#),
        );
        assert_eq!(a.officer.as_deref(), Some("P9"));
        assert!(a.needs_review);
        assert!(a.review_reasons[0].contains("conflicting officer"), "{:?}", a.review_reasons);
        assert_eq!(a.gps, Some(Gps { lat: 1.5, lon: 2.5 }));
        assert_eq!(a.duration_ms, Some(5000));
    }

    #[test]
    fn missing_and_reset_clock_and_bad_sidecar() {
        let a = run("edge-cases/random-bytes.mp4", None);
        assert_eq!(a.review_reasons, vec!["missing device", "missing officer", "missing start time"]);
        let a = run("X/X_P1_20000101000000_1.mp4", None);
        assert!(a.started_at.is_none() && a.review_reasons[0].contains("implausible"), "{:?}", a.review_reasons);
        let a = run("X/X_P1_20240101000000_1.mp4", Some("{not json"));
        assert!(a.review_reasons[0].starts_with("unreadable sidecar"));
        assert_eq!(a.device.as_deref(), Some("X"));
    }
}

/// Property tests ("fuzzing" on the stable toolchain): hostile sidecars and paths.
#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;

    fn patterns() -> Vec<Pattern> {
        [
            "{device}/{device}_{officer}_{start:%Y%m%d%H%M%S}_{seq}.{ext}",
            "{any}/{officer}-{start:%Y-%m-%dT%H%M%S_%f}.{ext}",
            "{device}_{start:%y%j%H%M%S}.{ext}",
        ]
        .iter()
        .map(|p| Pattern::compile(p).unwrap())
        .collect()
    }

    /// JSON-ish text: real sidecar keys with values of every type, nested, truncated or doubled.
    fn jsonish() -> impl Strategy<Value = Vec<u8>> {
        let key = prop::sample::select(vec![
            "device_serial",
            "officer_id",
            "unit",
            "dock_id",
            "start_time",
            "end_time",
            "duration_s",
            "gps",
            "case_ids",
            "category",
            "classification",
            "lat",
            "lon",
            "",
        ]);
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            any::<f64>().prop_map(serde_json::Value::from),
            prop::sample::select(vec![1e308, -1e308, 0.0, -0.0, 1e-308, 4.9e-324]).prop_map(serde_json::Value::from),
            "\\PC{0,24}".prop_map(serde_json::Value::from),
            prop::sample::select(vec![
                "2024-03-15T08:30:00Z",
                "1970-01-01T00:00:00Z",
                "0000-01-01T00:00:00Z",
                "9999-12-31T23:59:59.999999999+14:00",
                "2024-02-30T00:00:00Z",
                "-2024-01-01T00:00:00Z",
                "2024-03-15T08:30:00+99:99",
            ])
            .prop_map(serde_json::Value::from),
        ];
        let value = leaf.prop_recursive(4, 32, 6, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
                prop::collection::vec((key.clone(), inner), 0..8)
                    .prop_map(|kv| serde_json::Value::Object(kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect())),
            ]
        });
        (value, 0usize..3, any::<prop::sample::Index>()).prop_map(|(v, how, cut)| {
            let text = v.to_string().into_bytes();
            match how {
                0 => text,
                // Truncated at any byte (may split a UTF-8 character).
                1 => text[..cut.index(text.len() + 1)].to_vec(),
                // Two documents back to back.
                _ => [text.clone(), text].concat(),
            }
        })
    }

    fn rel_path() -> impl Strategy<Value = String> {
        prop_oneof![
            "\\PC{0,80}",
            "([A-Z0-9]{1,8}/)?[A-Z0-9]{1,8}_[A-Z0-9]{1,6}_[0-9]{14}_[0-9]{1,4}\\.[a-zA-Z0-9]{1,4}",
            prop::collection::vec(any::<u8>(), 0..200).prop_map(|b| String::from_utf8_lossy(&b).replace('\0', "")),
            (0usize..20, "[a-z]{0,8}").prop_map(|(n, tail)| "../".repeat(n) + &tail),
            (0usize..10_000).prop_map(|n| format!("{}/{}_P1_20240315083000_1.mp4", "A".repeat(n), "A".repeat(n))),
        ]
    }

    fn check(a: &Attribution, sidecar: Option<&[u8]>) -> Result<(), TestCaseError> {
        prop_assert_eq!(a.needs_review, !a.review_reasons.is_empty());
        if a.device.is_none() || a.officer.is_none() || a.started_at.is_none() {
            prop_assert!(a.needs_review, "incomplete attribution without review: {:?}", a);
        }
        if let Some(t) = a.started_at {
            prop_assert!(t >= PLAUSIBLE_SINCE_MICROS);
        }
        if let Some(g) = a.gps {
            prop_assert!(g.lat.abs() <= 90.0 && g.lon.abs() <= 180.0);
        }
        prop_assert!(a.duration_ms.is_none_or(|d| d >= 0));
        if let Some(b) = sidecar {
            if serde_json::from_slice::<Sidecar>(b).is_err() {
                prop_assert!(a.review_reasons.iter().any(|r| r.starts_with("unreadable sidecar")), "{:?}", a.review_reasons);
            }
        }
        // The record is always storable.
        prop_assert!(serde_json::to_string(a).is_ok());
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_bytes_as_sidecar(bytes in prop::collection::vec(any::<u8>(), 0..400), rel in rel_path()) {
            let p = patterns();
            let a = attribute(&Inputs { rel_path: &rel, sidecar: Some(&bytes), patterns: &p, tz: chrono_tz::UTC, dock_unit: Some("JS/NJ") });
            check(&a, Some(&bytes))?;
        }

        #[test]
        fn jsonish_sidecar(bytes in jsonish(), rel in rel_path(), unit in prop::option::of("\\PC{0,10}")) {
            let p = patterns();
            let a = attribute(&Inputs {
                rel_path: &rel,
                sidecar: Some(&bytes),
                patterns: &p,
                tz: chrono_tz::America::New_York,
                dock_unit: unit.as_deref(),
            });
            check(&a, Some(&bytes))?;
        }

        #[test]
        fn paths_without_sidecar(rel in rel_path()) {
            let p = patterns();
            let a = attribute(&Inputs { rel_path: &rel, sidecar: None, patterns: &p, tz: chrono_tz::Europe::London, dock_unit: None });
            check(&a, None)?;
        }
    }
}
