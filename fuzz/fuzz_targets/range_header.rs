//! The `Range` header of every byte route (originals, proxies, posters, clips), as
//! `serve_object` reads it through `requested_range`. Input: 8 bytes of object size (little
//! endian), then the raw header value.
//!
//! Properties: a range that is served lies inside the object and is not empty; anything else is
//! the whole object or a 416 naming the object's size; a plain single range (`bytes=A-B`,
//! `bytes=A-`, `bytes=-N`) gets exactly the bytes RFC 9110 section 14.1.2 says it selects; and a
//! request the access audit lets through as a player's later Range request is never served the
//! first byte or the whole object.

#![no_main]

use evidenced::api::ApiError;
use evidenced::api::fuzzing::{later_range_request, requested_range};
use http::{HeaderMap, HeaderValue, header};
use libfuzzer_sys::fuzz_target;

/// What RFC 9110 says a single, well-formed byte range selects: `Some(Ok(Some((start, len))))`,
/// `Some(Err(()))` for unsatisfiable, `Some(Ok(None))` for a syntactically invalid range (ignored:
/// the whole object), or `None` when the text is not in the plain form this model covers.
fn rfc9110(raw: &str, size: u64) -> Option<Result<Option<(u64, u64)>, ()>> {
    let spec = raw.strip_prefix("bytes=")?;
    let (first, last) = spec.split_once('-')?;
    let num = |s: &str| -> Option<u64> {
        // Plain decimal digits without leading zeros; other numbers are outside this model (a
        // server may ignore any Range header, and this one ignores those).
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0')) {
            return None;
        }
        s.parse().ok()
    };
    match (first.is_empty(), last.is_empty()) {
        // bytes=-N: the last N bytes (the whole object when it is shorter); `bytes=-0` is
        // outside the model (unsatisfiable, or ignored, as this server does).
        (true, false) => {
            let n = num(last).filter(|n| *n > 0)?;
            if size == 0 {
                return Some(Err(()));
            }
            let len = n.min(size);
            Some(Ok(Some((size - len, len))))
        }
        // bytes=A-: from A to the end.
        (false, true) => {
            let a = num(first)?;
            if a >= size {
                return Some(Err(()));
            }
            Some(Ok(Some((a, size - a))))
        }
        // bytes=A-B: A to B inclusive, B clamped to the end; B < A is invalid (ignored).
        (false, false) => {
            let (a, b) = (num(first)?, num(last)?);
            if b < a {
                return Some(Ok(None));
            }
            if a >= size {
                return Some(Err(()));
            }
            let end = b.min(size - 1);
            Some(Ok(Some((a, end - a + 1))))
        }
        (true, true) => None,
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 8 {
        return;
    }
    let size = u64::from_le_bytes(data[..8].try_into().unwrap());
    let Ok(value) = HeaderValue::from_bytes(&data[8..]) else { return };
    let mut headers = HeaderMap::new();
    headers.insert(header::RANGE, value.clone());
    let got = requested_range(&headers, size);
    match &got {
        Ok(None) => {}
        Ok(Some((start, len))) => {
            assert!(*len >= 1, "an empty range for {value:?}");
            assert!(start.checked_add(*len).is_some_and(|end| end <= size), "{value:?}: {start}+{len} outside {size}");
        }
        Err(ApiError::RangeNotSatisfiable(s)) => assert_eq!(*s, size, "416 must name the object's size"),
        Err(e) => panic!("{value:?}: neither a range nor a 416: {e:?}"),
    }
    if later_range_request(&headers) {
        assert!(!matches!(got, Ok(None) | Ok(Some((0, _)))), "{value:?} goes unaudited but is served {got:?} of {size} bytes");
    }
    let mut with_if_range = headers.clone();
    with_if_range.insert(header::IF_RANGE, HeaderValue::from_static("\"0000\""));
    assert!(!later_range_request(&with_if_range), "{value:?} with If-Range (perhaps the whole object) goes unaudited");
    if let Some(want) = value.to_str().ok().and_then(|raw| rfc9110(raw, size)) {
        let have = match got {
            Ok(r) => Ok(r),
            Err(_) => Err(()),
        };
        assert_eq!(have, want, "{value:?} on a {size}-byte object");
    }
});
