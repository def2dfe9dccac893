//! The web console: a few static files (plain ES modules, no build step) embedded in the binary
//! with `include_bytes!` and served at `GET /` (the page) and `GET /console/{file}` (its scripts,
//! style sheet and icon). The files hold no data and need no authentication; everything they show
//! comes from `/api/v1` after the user signs in (`POST /api/v1/session` sets the cookie).
//!
//! Every answer carries a strict `Content-Security-Policy` (only this origin's scripts, styles,
//! images and media; no inline script or style, no plug-ins, no framing, no `<base>`), `nosniff`,
//! `Referrer-Policy: no-referrer` and `Cache-Control: no-cache` with a strong `ETag` (the
//! SHA-256 of the bytes, computed once), so a browser revalidates each load and gets a 304 while
//! the binary is the same.

use std::sync::OnceLock;

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};

use super::AppState;

/// The policy on every console answer: the console loads nothing from elsewhere, runs no inline
/// code, and may not be framed.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; \
     connect-src 'self'; style-src 'self'; script-src 'self'; object-src 'none'; base-uri 'none'; \
     frame-ancestors 'none'; form-action 'self'";

/// One embedded file: its name under `/console/`, its content type and its bytes.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

const JS: &str = "text/javascript; charset=utf-8";

/// The console's files. `index.html` is also served at `/`.
const ASSETS: &[Asset] = &[
    Asset { name: "index.html", content_type: "text/html; charset=utf-8", bytes: include_bytes!("../../web/index.html") },
    Asset { name: "app.css", content_type: "text/css; charset=utf-8", bytes: include_bytes!("../../web/app.css") },
    Asset { name: "app.js", content_type: JS, bytes: include_bytes!("../../web/app.js") },
    Asset { name: "api.js", content_type: JS, bytes: include_bytes!("../../web/api.js") },
    Asset { name: "dom.js", content_type: JS, bytes: include_bytes!("../../web/dom.js") },
    Asset { name: "player.js", content_type: JS, bytes: include_bytes!("../../web/player.js") },
    Asset { name: "report.js", content_type: JS, bytes: include_bytes!("../../web/report.js") },
    Asset { name: "icon.svg", content_type: "image/svg+xml", bytes: include_bytes!("../../web/icon.svg") },
];

/// The strong ETag of each asset (same order as [`ASSETS`]), computed on first use.
fn etags() -> &'static [HeaderValue] {
    static ETAGS: OnceLock<Vec<HeaderValue>> = OnceLock::new();
    ETAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| HeaderValue::from_str(&format!("\"{}\"", hex::encode(Sha256::digest(a.bytes)))).expect("hex is a valid header value"))
            .collect()
    })
}

/// The console's routes: `GET /` and `GET /console/{file}` (HEAD too), without authentication.
pub fn routes() -> Router<AppState> {
    Router::new().route("/", get(index)).route("/console/{file}", get(asset))
}

/// `GET /`: the console page.
async fn index(headers: HeaderMap) -> Response {
    serve("index.html", &headers)
}

/// `GET /console/{file}`: one embedded file, or a plain 404.
async fn asset(Path(file): Path<String>, headers: HeaderMap) -> Response {
    serve(&file, &headers)
}

/// The security headers every console answer carries.
fn secure(h: &mut HeaderMap) {
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
}

/// Whether an `If-None-Match` header matches `etag` (weak comparison, as RFC 9110 asks; `*`
/// matches any).
fn matches(headers: &HeaderMap, etag: &HeaderValue) -> bool {
    let Ok(etag) = etag.to_str() else { return false };
    headers.get_all(header::IF_NONE_MATCH).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).any(|t| {
        let t = t.trim();
        t == "*" || t.strip_prefix("W/").unwrap_or(t) == etag
    })
}

/// Serves the asset `name`: 200 with the bytes, 304 when `If-None-Match` names its ETag, else a
/// plain-text 404.
fn serve(name: &str, headers: &HeaderMap) -> Response {
    let mut h = HeaderMap::new();
    secure(&mut h);
    let Some(i) = ASSETS.iter().position(|a| a.name == name) else {
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
        return (StatusCode::NOT_FOUND, h, "not found\n").into_response();
    };
    let (a, etag) = (&ASSETS[i], &etags()[i]);
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::ETAG, etag.clone());
    if matches(headers, etag) {
        return (StatusCode::NOT_MODIFIED, h).into_response();
    }
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(a.content_type));
    (StatusCode::OK, h, a.bytes).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(name: &str, if_none_match: Option<&str>) -> Response {
        let mut h = HeaderMap::new();
        if let Some(v) = if_none_match {
            h.insert(header::IF_NONE_MATCH, HeaderValue::from_str(v).unwrap());
        }
        serve(name, &h)
    }

    #[test]
    fn every_asset_is_served_with_its_type_etag_and_policy() {
        for a in ASSETS {
            let r = get(a.name, None);
            assert_eq!(r.status(), StatusCode::OK, "{}", a.name);
            assert!(!a.bytes.is_empty(), "{} is empty", a.name);
            let h = r.headers();
            assert_eq!(h[header::CONTENT_TYPE], a.content_type, "{}", a.name);
            assert_eq!(h[header::CONTENT_SECURITY_POLICY], CONTENT_SECURITY_POLICY);
            assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
            assert_eq!(h[header::REFERRER_POLICY], "no-referrer");
            assert_eq!(h[header::CACHE_CONTROL], "no-cache");
            let etag = h[header::ETAG].to_str().unwrap().to_string();
            assert_eq!(etag, format!("\"{}\"", hex::encode(Sha256::digest(a.bytes))), "{}", a.name);
            // Revalidation: the same ETag (also in a list, or weak) answers 304; another one 200.
            for inm in [etag.clone(), format!("\"x\", {etag}"), format!("W/{etag}"), "*".to_string()] {
                let r = get(a.name, Some(&inm));
                assert_eq!(r.status(), StatusCode::NOT_MODIFIED, "{} with {inm}", a.name);
                assert_eq!(r.headers()[header::ETAG], etag.as_str());
                assert_eq!(r.headers()[header::CONTENT_SECURITY_POLICY], CONTENT_SECURITY_POLICY);
            }
            assert_eq!(get(a.name, Some("\"other\"")).status(), StatusCode::OK);
        }
    }

    #[test]
    fn unknown_files_are_a_plain_404() {
        for name in ["", "nope.js", "../Cargo.toml", "INDEX.HTML", "app.js/"] {
            let r = get(name, None);
            assert_eq!(r.status(), StatusCode::NOT_FOUND, "{name:?}");
            assert_eq!(r.headers()[header::CONTENT_TYPE], "text/plain; charset=utf-8");
            assert_eq!(r.headers()[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        }
    }

    #[test]
    fn the_console_refers_only_to_embedded_files_and_nothing_external() {
        let page = std::str::from_utf8(ASSETS[0].bytes).unwrap();
        for needle in ["/console/app.css", "/console/app.js", "/console/icon.svg"] {
            assert!(page.contains(needle), "index.html refers to {needle}");
        }
        for a in ASSETS {
            let text = std::str::from_utf8(a.bytes).unwrap().replace("http://www.w3.org/2000/svg", "");
            assert!(!text.contains("http://") && !text.contains("https://") && !text.contains("//cdn"), "{} names an external URL", a.name);
            assert!(!text.contains("innerHTML") && !text.contains("outerHTML"), "{} builds markup from strings", a.name);
            // Every module a script imports is one of the embedded files.
            for import in text.split("from './").skip(1) {
                let name = import.split('\'').next().unwrap_or_default();
                assert!(ASSETS.iter().any(|b| b.name == name), "{} imports {name:?}, which is not embedded", a.name);
            }
        }
    }
}
