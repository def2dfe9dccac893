//! The query string of `GET /recordings` and `GET /cases/{id}/recordings`: decoded the way
//! axum's `Query<HashMap<String, String>>` decodes it (`serde_urlencoded`), then `filter_from`,
//! `parse_limit` and `parse_time` as the handlers call them. Input: the raw query string.
//!
//! Properties: every query is a filter or a 400 with one of the three documented codes; a filter
//! carries exactly the values asked for (empty ones dropped, limits 1 to 500, times in micros
//! that survive RFC 3339 and back, cursors that decode to what re-encodes to them).

#![no_main]

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Datelike;
use evidenced::api::ApiError;
use evidenced::api::fuzzing::{FILTER_KEYS, filter_from, parse_limit, parse_time};
use libfuzzer_sys::fuzz_target;

/// `parse_limit` accepts exactly the integers 1 to 500.
fn check_limit(v: &str) {
    match parse_limit(v) {
        Ok(n) => assert!((1..=500).contains(&n) && v.parse::<i64>() == Ok(n), "{v:?} -> {n}"),
        Err(ApiError::BadRequest { code, .. }) => {
            assert_eq!(code, "invalid_parameter");
            assert!(!v.parse::<i64>().is_ok_and(|n| (1..=500).contains(&n)), "{v:?} refused");
        }
        Err(e) => panic!("limit {v:?}: not a 400: {e:?}"),
    }
}

/// `parse_time` gives micros that name a real instant and survive formatting and parsing again.
fn check_time(v: &str) -> Option<i64> {
    match parse_time("from", v) {
        Ok(t) => {
            let back = chrono::DateTime::from_timestamp_micros(t).unwrap_or_else(|| panic!("{v:?} -> {t} is no instant"));
            // RFC 3339 has four-digit years: 9999-12-31T23:59:59-23:59 is in the year 10000 UTC.
            if (0..=9999).contains(&back.year()) {
                let again = parse_time("to", &back.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)).expect("own output parses");
                assert_eq!(again, t, "{v:?} does not round-trip");
            }
            Some(t)
        }
        Err(ApiError::BadRequest { code, message }) => {
            assert_eq!(code, "invalid_parameter");
            assert!(message.starts_with("from:"), "the message names the parameter: {message}");
            None
        }
        Err(e) => panic!("time {v:?}: not a 400: {e:?}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(pairs) = serde_urlencoded::from_bytes::<Vec<(String, String)>>(data) else { return };
    // Later duplicates win, as when axum fills a HashMap.
    let q: HashMap<String, String> = pairs.into_iter().collect();
    for v in q.values() {
        check_limit(v);
        check_time(v);
    }
    let f = match filter_from(&q) {
        Ok(f) => f,
        Err(ApiError::BadRequest { code, .. }) => {
            assert!(["unknown_parameter", "invalid_parameter", "invalid_cursor"].contains(&code), "{code}");
            if code == "unknown_parameter" {
                assert!(q.keys().any(|k| !FILTER_KEYS.contains(&k.as_str())));
            }
            return;
        }
        Err(e) => panic!("not a 400: {e:?}"),
    };
    assert!(q.keys().all(|k| FILTER_KEYS.contains(&k.as_str())), "unknown parameter accepted: {q:?}");
    // The caller's scope comes from its token, never from the query.
    assert!(f.scope_unit.is_none() && f.scope_officer.is_none() && f.scope_grantee.is_none(), "{f:?}");
    let given = |k: &str| q.get(k).filter(|v| !v.is_empty()).cloned();
    assert_eq!(f.officer, given("officer"));
    assert_eq!(f.device, given("device"));
    assert_eq!(f.case, given("case"));
    assert_eq!(f.category, given("category"));
    assert_eq!(f.state, given("state"));
    assert_eq!(f.unit, given("unit").map(|u| u.trim_end_matches('/').to_string()));
    assert_eq!(f.from, given("from").and_then(|v| check_time(&v)));
    assert_eq!(f.to, given("to").and_then(|v| check_time(&v)));
    assert_eq!(f.limit, given("limit").map_or(50, |v| v.parse().unwrap()));
    assert!((1..=500).contains(&f.limit));
    assert_eq!(
        f.needs_review,
        given("needs_review").map(|v| match v.as_str() {
            "true" | "1" => true,
            "false" | "0" => false,
            other => panic!("needs_review {other:?} accepted"),
        })
    );
    // A cursor names (sort time, id); the cursor the API would hand out for it decodes the same.
    assert_eq!(f.after.is_some(), given("cursor").is_some());
    if let Some((t, id)) = &f.after {
        let cursor = URL_SAFE_NO_PAD.encode(format!("{t}:{id}"));
        let q2: HashMap<String, String> = [("cursor".to_string(), cursor)].into();
        assert_eq!(filter_from(&q2).expect("own cursor").after.as_ref(), Some(&(*t, id.clone())));
    }
});
