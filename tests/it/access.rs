//! Access control on a real daemon, on both catalogs: the role × unit × classification matrix of
//! every recording route (allowed and denied), reasons for classified recordings, explicit
//! grants of state secrets, the console's session cookie (with its CSRF guard), signed URLs of
//! access grants (one audited access however many Range requests follow), the audit route,
//! and that every `/api` route answers 401 without credentials.

use std::collections::BTreeSet;

use reqwest::Method;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{Value, json};

use crate::harness::{Daemon, DaemonSpec, corpus, pg_database, write_random};

/// Sends a request with a bearer token (none when empty), extra headers and an optional JSON
/// body; returns the status, the response headers and the JSON answer (null when none).
async fn send(
    d: &Daemon,
    method: Method,
    path: &str,
    token: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> (u16, HeaderMap, Value) {
    let mut r = reqwest::Client::new().request(method, format!("http://127.0.0.1:{}{path}", d.port));
    if !token.is_empty() {
        r = r.bearer_auth(token);
    }
    for (k, v) in headers {
        r = r.header(HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
    }
    if let Some(b) = body {
        r = r.json(&b);
    }
    let resp = r.send().await.unwrap();
    let (status, h) = (resp.status().as_u16(), resp.headers().clone());
    let text = resp.text().await.unwrap();
    (status, h, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// A route (method, path, body) and the status each principal gets.
type RouteCase = (Method, String, Option<Value>, Vec<(&'static str, u16)>);

fn code(v: &Value) -> Option<&str> {
    v["error"]["code"].as_str()
}

/// The recordings of the matrix: (name, officer, unit, classification).
const RECORDINGS: [(&str, &str, &str, &str); 5] = [
    ("A", "P1", "JS/NJ/XW", "normal"),
    ("B", "P2", "JS/NJ/GL", "normal"),
    ("C", "P1", "JS/NJ/XW", "privacy"),
    ("D", "P1", "JS/NJ/XW", "state_secret"),
    ("E", "P9", "ZJ/HZ", "normal"),
];

/// A daemon on `catalog_url` with the five recordings imported (random bytes: media fails, which
/// does not matter for access) and the principals of the matrix; returns the daemon, the ids by
/// name, and the tokens by principal name.
async fn matrix_station(dir: &std::path::Path, catalog_url: String) -> (Daemon, Vec<(String, String)>, Vec<(String, String)>) {
    let mut spec = DaemonSpec::station(dir);
    spec.catalog_url = catalog_url;
    let mut d = Daemon::configure(dir, &spec);
    let src = dir.join("import");
    std::fs::create_dir_all(&src).unwrap();
    for (i, (name, officer, unit, class)) in RECORDINGS.iter().enumerate() {
        let base = format!("BWC{i}_{officer}_2026010112000{i}_{name}");
        write_random(&src.join(format!("{base}.mp4")), 50_000, i as u64 + 11);
        let sidecar = json!({"device_serial": format!("BWC{i}"), "officer_id": officer, "unit": unit, "classification": class});
        std::fs::write(src.join(format!("{base}.json")), sidecar.to_string()).unwrap();
    }
    let (c, out, err) = d.cli(&["ingest", "--quiet", src.to_str().unwrap()]);
    assert_eq!(c, 0, "ingest: {out}{err}");
    let mut tokens = vec![("sup_root".to_string(), d.token.clone())];
    for (name, role, unit, officer) in [
        ("off1", "officer", "JS/NJ/XW", Some("P1")),
        ("sup_nj", "supervisor", "JS/NJ", None),
        ("sup_xw", "supervisor", "JS/NJ/XW", None),
        ("arch_nj", "archivist", "JS/NJ", None),
        ("arch2", "archivist", "", None),
        ("aud", "auditor", "", None),
        ("aud_zj", "auditor", "ZJ", None),
        ("root", "admin", "", None),
    ] {
        let mut args = vec!["--name", name, "--role", role, "--unit", unit];
        if let Some(o) = officer {
            args.extend(["--officer", o]);
        }
        tokens.push((name.to_string(), d.token_create(&args)));
    }
    d.start().await;
    let all = d.recordings().await;
    assert_eq!(all.len(), 4, "the root supervisor sees all but the state secret: {all:?}");
    let aud = &tokens.iter().find(|(n, _)| n == "aud").unwrap().1;
    let (s, _, v) = send(&d, Method::GET, "/api/v1/recordings?limit=50", aud, &[], None).await;
    assert_eq!(s, 200);
    let mut ids = vec![];
    for (name, officer, unit, class) in RECORDINGS {
        let r = v["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["officer"] == officer && r["unit"] == unit && r["classification"] == class)
            .unwrap_or_else(|| panic!("recording {name} missing: {v}"));
        ids.push((name.to_string(), r["id"].as_str().unwrap().to_string()));
    }
    (d, ids, tokens)
}

fn get<'a>(pairs: &'a [(String, String)], k: &str) -> &'a str {
    &pairs.iter().find(|(n, _)| n == k).unwrap_or_else(|| panic!("{k}")).1
}

async fn role_unit_classification_matrix(catalog_url: String) {
    let dir = tempfile::tempdir().unwrap();
    let (d, ids, tokens) = matrix_station(dir.path(), catalog_url).await;
    let id = |n: &str| get(&ids, n).to_string();
    let tok = |n: &str| get(&tokens, n).to_string();
    let reason = [("x-access-reason", "%E6%A1%88%E4%BB%B6%20123%20review")]; // "案件 123 review"

    // Search: each principal lists exactly its scope; state secrets only for archivists and
    // auditors (and grantees, below); admins get 403.
    let expect: [(&str, &[&str]); 8] = [
        ("off1", &["A", "C"]),
        ("sup_nj", &["A", "B", "C"]),
        ("sup_xw", &["A", "C"]),
        ("sup_root", &["A", "B", "C", "E"]),
        ("arch_nj", &["A", "B", "C", "D"]),
        ("arch2", &["A", "B", "C", "D", "E"]),
        ("aud", &["A", "B", "C", "D", "E"]),
        ("aud_zj", &["E"]),
    ];
    for (who, names) in expect {
        let (s, _, v) = send(&d, Method::GET, "/api/v1/recordings?limit=50", &tok(who), &[], None).await;
        assert_eq!(s, 200, "{who}: {v}");
        let got: BTreeSet<String> = v["items"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap().to_string()).collect();
        let want: BTreeSet<String> = names.iter().map(|n| id(n)).collect();
        assert_eq!(got, want, "{who} lists {names:?}");
        // By id: what is not listed is 404; what is listed opens (with a reason when classified,
        // and for the state secret only with a grant).
        for (name, ..) in RECORDINGS {
            let path = format!("/api/v1/recordings/{}", id(name));
            let (s, _, v) = send(&d, Method::GET, &path, &tok(who), &[], None).await;
            let class = RECORDINGS.iter().find(|r| r.0 == name).unwrap().3;
            let expected = match (names.contains(&name), class) {
                (false, _) => (404, Some("not_found")),
                (true, "normal") => (200, None),
                (true, _) => (403, Some("reason_required")),
            };
            assert_eq!((s, code(&v)), expected, "{who} GET {name}: {v}");
            if names.contains(&name) && class != "normal" {
                let (s, _, v) = send(&d, Method::GET, &path, &tok(who), &reason, None).await;
                let expected = if class == "state_secret" { (403, Some("grant_required")) } else { (200, None) };
                assert_eq!((s, code(&v)), expected, "{who} GET {name} with a reason: {v}");
            }
        }
    }
    let (s, _, v) = send(&d, Method::GET, "/api/v1/recordings", &tok("root"), &[], None).await;
    assert_eq!((s, code(&v)), (403, Some("forbidden")), "admins see no footage");
    let (s, _, v) = send(&d, Method::GET, &format!("/api/v1/recordings/{}", id("A")), &tok("root"), &[], None).await;
    assert_eq!(s, 404, "{v}");

    // A reason that is not percent-encoded UTF-8 is a 400.
    let (s, _, v) =
        send(&d, Method::GET, &format!("/api/v1/recordings/{}", id("C")), &tok("sup_nj"), &[("x-access-reason", "%FF%FE")], None).await;
    assert_eq!((s, code(&v)), (400, Some("invalid_reason")), "{v}");

    // Role rules per route, in scope (A) and out of scope (E for sup_nj).
    let a = id("A");
    let cases: Vec<RouteCase> = vec![
        (
            Method::GET,
            format!("/api/v1/recordings/{a}/original"),
            None,
            vec![("off1", 403), ("sup_nj", 200), ("arch_nj", 200), ("aud", 200), ("root", 403)],
        ),
        (
            Method::PATCH,
            format!("/api/v1/recordings/{a}"),
            Some(json!({"device": "BWC0", "reason": "matrix"})),
            vec![("off1", 403), ("aud", 403), ("sup_nj", 200), ("arch_nj", 200), ("root", 403)],
        ),
        (
            Method::PUT,
            format!("/api/v1/recordings/{a}/hold"),
            Some(json!({"reason": "matrix hold"})),
            vec![("off1", 403), ("sup_nj", 403), ("aud", 403), ("arch_nj", 200), ("root", 403)],
        ),
        (Method::DELETE, format!("/api/v1/recordings/{a}/hold"), None, vec![("sup_nj", 403), ("arch_nj", 200)]),
        (
            Method::PUT,
            format!("/api/v1/recordings/{a}/category"),
            Some(json!({"category": "uncategorized"})),
            vec![("off1", 403), ("sup_nj", 403), ("arch_nj", 200)],
        ),
        (
            Method::POST,
            format!("/api/v1/recordings/{a}/access"),
            Some(json!({"reason": "matrix"})),
            vec![("off1", 200), ("sup_xw", 200), ("aud_zj", 404), ("root", 404)],
        ),
        (Method::GET, format!("/api/v1/recordings/{a}/custody"), None, vec![("off1", 200), ("aud", 200), ("aud_zj", 404), ("root", 404)]),
        (Method::GET, format!("/api/v1/recordings/{a}/grants"), None, vec![("sup_nj", 403), ("arch_nj", 200), ("aud", 200)]),
        (
            Method::GET,
            "/api/v1/audit".to_string(),
            None,
            vec![("off1", 403), ("sup_root", 403), ("arch2", 403), ("aud", 200), ("root", 403)],
        ),
        (Method::GET, format!("/api/v1/recordings/{}", id("E")), None, vec![("sup_nj", 404), ("arch_nj", 404), ("aud_zj", 200)]),
    ];
    for (method, path, body, expectations) in &cases {
        for (who, want) in expectations {
            let (s, _, v) = send(&d, method.clone(), path, &tok(who), &[], body.clone()).await;
            assert_eq!(s, *want, "{who} {method} {path}: {v}");
        }
    }
    // Classification: supervisors may only raise it, with a reason; archivists may do anything.
    let b = id("B");
    let path = format!("/api/v1/recordings/{b}/classification");
    let (s, _, v) = send(&d, Method::PUT, &path, &tok("off1"), &[], Some(json!({"classification": "privacy", "reason": "x"}))).await;
    assert_eq!(s, 403, "officers may not classify: {v}");
    let (s, _, v) = send(&d, Method::PUT, &path, &tok("sup_nj"), &[], Some(json!({"classification": "privacy"}))).await;
    assert_eq!((s, code(&v)), (400, Some("reason_required")), "{v}");
    let (s, _, v) =
        send(&d, Method::PUT, &path, &tok("sup_nj"), &[], Some(json!({"classification": "privacy", "reason": "a minor"}))).await;
    assert_eq!(s, 200, "{v}");
    let (s, _, v) = send(&d, Method::GET, &format!("/api/v1/recordings/{b}"), &tok("sup_nj"), &[], None).await;
    assert_eq!((s, code(&v)), (403, Some("reason_required")), "B is now classified: {v}");
    let (s, _, v) = send(&d, Method::PUT, &path, &tok("sup_nj"), &[], Some(json!({"classification": "normal", "reason": "oops"}))).await;
    assert_eq!(s, 403, "a supervisor may not lower it: {v}");
    let (s, _, v) =
        send(&d, Method::PUT, &path, &tok("arch_nj"), &[], Some(json!({"classification": "normal", "reason": "reviewed"}))).await;
    assert_eq!(s, 200, "{v}");

    // Explicit grants of the state secret D: archivists only, with a reason, never to
    // themselves, only for state secrets; a grant makes D visible and openable for the grantee.
    let dd = id("D");
    let grant = |who: &str| format!("/api/v1/recordings/{dd}/grants/{who}");
    let (s, _, v) = send(&d, Method::PUT, &grant("sup_nj"), &tok("sup_root"), &[], Some(json!({"reason": "x"}))).await;
    assert_eq!(s, 403, "only archivists grant: {v}");
    let (s, _, v) = send(&d, Method::PUT, &grant("sup_nj"), &tok("arch_nj"), &[], None).await;
    assert_eq!((s, code(&v)), (400, Some("reason_required")), "{v}");
    let (s, _, v) = send(&d, Method::PUT, &grant("arch_nj"), &tok("arch_nj"), &[], Some(json!({"reason": "me"}))).await;
    assert_eq!((s, code(&v)), (403, Some("self_grant")), "{v}");
    let (s, _, v) =
        send(&d, Method::PUT, &format!("/api/v1/recordings/{a}/grants/sup_nj"), &tok("arch_nj"), &[], Some(json!({"reason": "x"}))).await;
    assert_eq!((s, code(&v)), (409, Some("not_state_secret")), "{v}");
    let (s, _, v) = send(&d, Method::PUT, &grant("sup_nj"), &tok("arch_nj"), &[], Some(json!({"reason": "investigation 7"}))).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["grants"][0]["principal"], "sup_nj", "{v}");
    let (s, _, _) = send(&d, Method::PUT, &grant("sup_nj"), &tok("arch_nj"), &[], Some(json!({"reason": "again"}))).await;
    assert_eq!(s, 200, "granting twice changes nothing");
    let (_, _, v) = send(&d, Method::GET, "/api/v1/recordings?limit=50", &tok("sup_nj"), &[], None).await;
    assert!(v["items"].as_array().unwrap().iter().any(|r| r["id"] == dd), "the grantee lists D: {v}");
    let (s, _, v) = send(&d, Method::GET, &format!("/api/v1/recordings/{dd}"), &tok("sup_nj"), &reason, None).await;
    assert_eq!(s, 200, "the grantee opens D with a reason: {v}");
    let (s, _, v) = send(&d, Method::GET, &format!("/api/v1/recordings/{dd}"), &tok("sup_xw"), &reason, None).await;
    assert_eq!(s, 404, "others still do not: {v}");
    let (s, _, v) = send(&d, Method::DELETE, &grant("sup_nj"), &tok("arch2"), &[], Some(json!({"reason": "done"}))).await;
    assert_eq!(s, 204, "{v}");
    let (s, _, v) = send(&d, Method::DELETE, &grant("sup_nj"), &tok("arch2"), &[], None).await;
    assert_eq!((s, code(&v)), (404, Some("no_grant")), "{v}");
    let (s, _, _) = send(&d, Method::GET, &format!("/api/v1/recordings/{dd}"), &tok("sup_nj"), &reason, None).await;
    assert_eq!(s, 404, "withdrawn");

    // The audit: auditors see accesses (with address and decoded reason) and grants; a unit
    // auditor only its unit's.
    let (s, _, v) =
        send(&d, Method::GET, &format!("/api/v1/audit?recording={}&kind=accessed&actor=sup_nj", id("C")), &tok("aud"), &[], None).await;
    assert_eq!(s, 200, "{v}");
    let items = v["items"].as_array().unwrap();
    assert!(!items.is_empty(), "sup_nj's view of C is audited: {v}");
    let e = &items[0];
    assert_eq!((e["kind"].as_str(), e["actor"].as_str()), (Some("accessed"), Some("sup_nj")));
    assert_eq!(e["details"]["reason"], "案件 123 review", "{e}");
    assert_eq!(e["details"]["from"], "127.0.0.1", "{e}");
    let (_, _, v) = send(&d, Method::GET, "/api/v1/audit?kind=granted,grant_revoked", &tok("aud"), &[], None).await;
    let kinds: Vec<&str> = v["items"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["grant_revoked", "granted"], "newest first: {v}");
    let (_, _, v) = send(&d, Method::GET, "/api/v1/audit?limit=500", &tok("aud_zj"), &[], None).await;
    let items = v["items"].as_array().unwrap();
    assert!(items.iter().all(|e| e["recording_id"].is_null() || e["recording_id"] == id("E")), "ZJ only: {v}");
    // Paging: limit 2 and the cursor continue without overlap.
    let (_, _, p1) = send(&d, Method::GET, "/api/v1/audit?limit=2", &tok("aud"), &[], None).await;
    let cursor = p1["next_cursor"].as_str().unwrap();
    let (_, _, p2) = send(&d, Method::GET, &format!("/api/v1/audit?limit=2&cursor={cursor}"), &tok("aud"), &[], None).await;
    let seqs = |v: &Value| v["items"].as_array().unwrap().iter().map(|e| e["seq"].as_i64().unwrap()).collect::<Vec<_>>();
    let (s1, s2) = (seqs(&p1), seqs(&p2));
    assert!(s1[0] > s1[1] && s1[1] > s2[0] && s2[0] > s2[1], "{s1:?} {s2:?}");

    let (c, out, err) = d.cli(&["verify"]);
    assert_eq!(c, 0, "the chain verifies: {out}{err}");
}

#[tokio::test]
async fn role_unit_classification_matrix_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    role_unit_classification_matrix(format!("sqlite://{}/matrix.db", dir.path().display())).await;
}

#[tokio::test]
async fn role_unit_classification_matrix_postgres() {
    role_unit_classification_matrix(pg_database().await).await;
}

#[tokio::test]
async fn every_api_route_needs_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::configure(dir.path(), &DaemonSpec::station(dir.path()));
    d.start().await;
    let id = "0190a0a0-0000-7000-8000-000000000000";
    let routes: &[(Method, String)] = &[
        (Method::GET, "/api/v1/recordings".into()),
        (Method::GET, format!("/api/v1/recordings/{id}")),
        (Method::PATCH, format!("/api/v1/recordings/{id}")),
        (Method::PUT, format!("/api/v1/recordings/{id}/classification")),
        (Method::PUT, format!("/api/v1/recordings/{id}/category")),
        (Method::DELETE, format!("/api/v1/recordings/{id}/category")),
        (Method::PUT, format!("/api/v1/recordings/{id}/hold")),
        (Method::DELETE, format!("/api/v1/recordings/{id}/hold")),
        (Method::GET, format!("/api/v1/recordings/{id}/original")),
        (Method::POST, format!("/api/v1/recordings/{id}/access")),
        (Method::GET, format!("/api/v1/recordings/{id}/grants")),
        (Method::PUT, format!("/api/v1/recordings/{id}/grants/sup")),
        (Method::DELETE, format!("/api/v1/recordings/{id}/grants/sup")),
        (Method::GET, format!("/api/v1/recordings/{id}/custody")),
        (Method::GET, format!("/api/v1/recordings/{id}/proxy")),
        (Method::GET, format!("/api/v1/recordings/{id}/poster")),
        (Method::POST, format!("/api/v1/recordings/{id}/clips")),
        (Method::GET, format!("/api/v1/clips/{id}")),
        (Method::GET, format!("/api/v1/clips/{id}/media")),
        (Method::GET, "/api/v1/cases".into()),
        (Method::POST, "/api/v1/cases".into()),
        (Method::GET, "/api/v1/cases/C1".into()),
        (Method::PUT, "/api/v1/cases/C1".into()),
        (Method::PATCH, "/api/v1/cases/C1".into()),
        (Method::GET, "/api/v1/cases/C1/recordings".into()),
        (Method::PUT, format!("/api/v1/cases/C1/recordings/{id}")),
        (Method::DELETE, format!("/api/v1/cases/C1/recordings/{id}")),
        (Method::GET, "/api/v1/keys".into()),
        (Method::GET, "/api/v1/checkpoints".into()),
        (Method::GET, "/api/v1/destructions".into()),
        (Method::GET, "/api/v1/destructions/x".into()),
        (Method::POST, "/api/v1/destructions/x/approve".into()),
        (Method::GET, "/api/v1/destruction-batches".into()),
        (Method::GET, "/api/v1/destruction-batches/x/certificate".into()),
        (Method::GET, "/api/v1/destruction-batches/x/certificate.html".into()),
        (Method::GET, "/api/v1/reports/2026".into()),
        (Method::GET, "/api/v1/events".into()),
        (Method::GET, "/api/v1/principals".into()),
        (Method::POST, "/api/v1/principals".into()),
        (Method::GET, "/api/v1/principals/sup".into()),
        (Method::DELETE, "/api/v1/principals/sup".into()),
        (Method::GET, "/api/v1/session".into()),
        (Method::POST, "/api/v1/session".into()),
        (Method::DELETE, "/api/v1/session".into()),
        (Method::GET, "/api/v1/audit".into()),
        (Method::GET, "/api/v1/nodes".into()),
        (Method::GET, "/api/v1/no-such-route".into()),
    ];
    for (method, path) in routes {
        let (s, h, v) = send(&d, method.clone(), path, "", &[], Some(json!({}))).await;
        assert_eq!((s, code(&v)), (401, Some("unauthorized")), "{method} {path}: {v}");
        assert_eq!(h["www-authenticate"], "Bearer", "{method} {path}");
        // A stale or forged session cookie is no better.
        let (s, _, v) = send(&d, method.clone(), path, "", &[("cookie", "evidenced_session=forged")], Some(json!({}))).await;
        assert_eq!(s, 401, "{method} {path} with a forged cookie: {v}");
    }
}

/// The console's session: sign-in sets an HttpOnly SameSite=Strict cookie that then
/// authenticates every route; cross-site writes are refused; revoking the token or signing out
/// ends it; sign-ins, failures and sign-outs are security events in the audit.
#[tokio::test]
async fn console_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::configure(dir.path(), &DaemonSpec::station(dir.path()));
    let carol = d.token_create(&["--name", "carol", "--role", "supervisor", "--unit", "JS"]);
    let aud = d.token_create(&["--name", "aud", "--role", "auditor"]);
    let root = d.token_create(&["--name", "root", "--role", "admin"]);
    d.start().await;

    let (s, _, v) = send(&d, Method::POST, "/api/v1/session", "", &[], Some(json!({"token": "evd_wrong"}))).await;
    assert_eq!((s, code(&v)), (401, Some("unauthorized")), "{v}");
    let (s, h, v) = send(&d, Method::POST, "/api/v1/session", "", &[("user-agent", "browser-test")], Some(json!({"token": carol}))).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (v["principal"]["name"].as_str(), v["principal"]["role"].as_str(), v["principal"]["unit"].as_str()),
        (Some("carol"), Some("supervisor"), Some("JS"))
    );
    let set = h["set-cookie"].to_str().unwrap().to_string();
    assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict") && set.contains("Path=/"), "{set}");
    assert!(!set.contains(&carol), "the cookie is not the token");
    let cookie = set.split(';').next().unwrap().to_string();
    let c = [("cookie", cookie.as_str())];

    let (s, _, v) = send(&d, Method::GET, "/api/v1/session", "", &c, None).await;
    assert_eq!((s, v["principal"]["name"].as_str()), (200, Some("carol")), "{v}");
    let (s, _, v) = send(&d, Method::GET, "/api/v1/recordings", "", &c, None).await;
    assert_eq!(s, 200, "{v}");
    // Writes: same origin passes, another origin or a cross-site fetch is refused.
    let host = format!("http://127.0.0.1:{}", d.port);
    let case = Some(json!({"title": "from the console", "status": "open"}));
    let (s, _, v) = send(&d, Method::PUT, "/api/v1/cases/K-1", "", &[c[0], ("origin", "http://evil.example")], case.clone()).await;
    assert_eq!((s, code(&v)), (403, Some("cross_site")), "{v}");
    let (s, _, v) = send(&d, Method::PUT, "/api/v1/cases/K-1", "", &[c[0], ("sec-fetch-site", "cross-site")], case.clone()).await;
    assert_eq!((s, code(&v)), (403, Some("cross_site")), "{v}");
    let (s, _, v) =
        send(&d, Method::PUT, "/api/v1/cases/K-1", "", &[c[0], ("origin", host.as_str()), ("sec-fetch-site", "same-origin")], case).await;
    assert_eq!(s, 201, "{v}");

    // Revoking carol's token ends her session at once.
    let (s, _, v) = send(&d, Method::DELETE, "/api/v1/principals/carol", &root, &[], None).await;
    assert_eq!(s, 200, "{v}");
    let (s, _, _) = send(&d, Method::GET, "/api/v1/recordings", "", &c, None).await;
    assert_eq!(s, 401, "revoked");

    // Sign in and out again as the root supervisor.
    let (_, h, _) = send(&d, Method::POST, "/api/v1/session", "", &[], Some(json!({"token": d.token}))).await;
    let cookie = h["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
    let c = [("cookie", cookie.as_str())];
    let (s, h, _) = send(&d, Method::DELETE, "/api/v1/session", "", &c, None).await;
    assert_eq!(s, 204);
    assert!(h["set-cookie"].to_str().unwrap().contains("Max-Age=0"), "the cookie is cleared");
    let (s, _, _) = send(&d, Method::GET, "/api/v1/recordings", "", &c, None).await;
    assert_eq!(s, 401, "signed out");

    let (_, _, v) = send(&d, Method::GET, "/api/v1/audit?kind=signed_in,signed_out,auth_failed,principal", &aud, &[], None).await;
    let got: Vec<(&str, &str)> =
        v["items"].as_array().unwrap().iter().map(|e| (e["kind"].as_str().unwrap(), e["actor"].as_str().unwrap())).collect();
    // Newest first; the revoked session's request is no failure (no token was presented); older
    // still are the CLI's token creations.
    let want = [("signed_out", "sup"), ("signed_in", "sup"), ("principal", "root"), ("signed_in", "carol"), ("auth_failed", "anonymous")];
    assert_eq!(&got[..5], &want[..], "{v}");
    let items = v["items"].as_array().unwrap();
    assert_eq!(
        (items[3]["details"]["from"].as_str(), items[3]["details"]["user_agent"].as_str()),
        (Some("127.0.0.1"), Some("browser-test"))
    );
    assert_eq!(items[4]["details"]["via"], "sign_in", "{v}");
}

/// An access grant: one audited access, then signed URLs that play without any header, however
/// many Range requests follow; the original link downloads (audited again, as a download) only
/// for roles that may; a forged link is refused; revoking the principal kills its links.
#[tokio::test]
async fn access_grants_sign_urls_for_players() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::configure(dir.path(), &DaemonSpec::station(dir.path()));
    let src = dir.path().join("import");
    let dock = corpus().join("dock-01");
    let clip = dock.join(crate::harness::files_under(&dock).into_iter().find(|p| p.extension().is_some_and(|e| e == "mp4")).unwrap());
    std::fs::create_dir_all(&src).unwrap();
    std::fs::copy(&clip, src.join(clip.file_name().unwrap())).unwrap();
    let sidecar = json!({"officer_id": "P42", "unit": "JS/NJ"});
    std::fs::write(src.join(clip.with_extension("json").file_name().unwrap()), sidecar.to_string()).unwrap();
    let (c, out, err) = d.cli(&["ingest", "--quiet", src.to_str().unwrap()]);
    assert_eq!(c, 0, "{out}{err}");
    let officer = d.token_create(&["--name", "off", "--role", "officer", "--officer", "P42"]);
    let carol = d.token_create(&["--name", "carol", "--role", "supervisor"]);
    let root = d.token_create(&["--name", "root", "--role", "admin"]);
    d.start().await;
    let id = d.wait_recordings(1, std::time::Duration::from_secs(30)).await[0]["id"].as_str().unwrap().to_string();
    let r = d.wait_media(&id, std::time::Duration::from_secs(120)).await;
    assert_eq!((r["media_state"].as_str(), r["officer"].as_str()), (Some("ready"), Some("P42")), "{r}");

    let (s, _, g) =
        send(&d, Method::POST, &format!("/api/v1/recordings/{id}/access"), &carol, &[], Some(json!({"reason": "review of incident"})))
            .await;
    assert_eq!(s, 200, "{g}");
    let proxy = g["proxy_url"].as_str().unwrap();
    assert!(proxy.starts_with(&format!("/api/v1/recordings/{id}/proxy?grant=")), "{g}");
    assert!(g["poster_url"].is_string() && g["original_url"].is_string(), "{g}");
    let exp = chrono::DateTime::parse_from_rfc3339(g["expires_at"].as_str().unwrap()).unwrap();
    let mins = (exp - chrono::Utc::now().fixed_offset()).num_minutes();
    assert!((25..=30).contains(&mins), "30 min by default: {mins}");

    let plain = reqwest::Client::new();
    let url = |p: &str| format!("http://127.0.0.1:{}{p}", d.port);
    for range in ["bytes=0-99", "bytes=1000-1999", "bytes=5000-"] {
        let resp = plain.get(url(proxy)).header("range", range).send().await.unwrap();
        assert_eq!(resp.status(), 206, "{range}");
        assert_eq!(resp.headers()["content-type"], "video/mp4");
    }
    let resp = plain.get(url(g["poster_url"].as_str().unwrap())).send().await.unwrap();
    assert_eq!((resp.status().as_u16(), resp.headers()["content-type"].to_str().unwrap()), (200, "image/jpeg"));
    let resp = plain.get(url(g["original_url"].as_str().unwrap())).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let bytes = resp.bytes().await.unwrap();
    assert_eq!(crate::harness::sha256_bytes(&bytes), r["sha256"].as_str().unwrap(), "the original, byte for byte");

    // The signed link is for this recording and these objects only; forged or foreign is refused.
    let forged = proxy.replace("grant=", "grant=x");
    let (s, _, v) = send(&d, Method::GET, &forged, "", &[], None).await;
    assert_eq!((s, code(&v)), (403, Some("grant_invalid")), "{v}");
    let token = proxy.split("grant=").nth(1).unwrap();
    let (s, _, _) =
        send(&d, Method::GET, &format!("/api/v1/recordings/0190a0a0-0000-7000-8000-000000000000/proxy?grant={token}"), "", &[], None).await;
    assert_eq!(s, 404, "another recording");

    // The audit: one `accessed` (the grant, with its reason) and one `downloaded` (the original,
    // naming the grant) — not one per Range request.
    let (_, _, ev) = send(&d, Method::GET, &format!("/api/v1/recordings/{id}/custody"), &carol, &[], None).await;
    let mine: Vec<&Value> = ev["items"].as_array().unwrap().iter().filter(|e| e["actor"] == "carol").collect();
    let kinds: Vec<(&str, &str)> =
        mine.iter().map(|e| (e["kind"].as_str().unwrap(), e["details"]["what"].as_str().unwrap_or(""))).collect();
    assert_eq!(kinds, [("accessed", "grant"), ("downloaded", "original")], "{ev}");
    assert_eq!(mine[0]["details"]["reason"], "review of incident");
    assert_eq!(mine[1]["details"]["grant_seq"], mine[0]["seq"], "{}", mine[1]);
    assert_eq!(g["access_seq"], mine[0]["seq"]);

    // Officers get no original link; their proxy link works; admins get none at all.
    let (s, _, og) = send(&d, Method::POST, &format!("/api/v1/recordings/{id}/access"), &officer, &[], None).await;
    assert_eq!(s, 200, "{og}");
    assert!(og["original_url"].is_null() && og["proxy_url"].is_string(), "{og}");
    let orig = g["original_url"].as_str().unwrap().replace(token, og["proxy_url"].as_str().unwrap().split("grant=").nth(1).unwrap());
    let (s, _, v) = send(&d, Method::GET, &orig, "", &[], None).await;
    assert_eq!(s, 403, "the officer's link does not include the original: {v}");
    let (s, _, _) = send(&d, Method::POST, &format!("/api/v1/recordings/{id}/access"), &root, &[], None).await;
    assert_eq!(s, 404);

    // Revoking carol kills her links at once.
    let (s, _, _) = send(&d, Method::DELETE, "/api/v1/principals/carol", &root, &[], None).await;
    assert_eq!(s, 200);
    let resp = plain.get(url(proxy)).header("range", "bytes=0-99").send().await.unwrap();
    assert_eq!(resp.status(), 401);
}
