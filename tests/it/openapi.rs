//! The API description at `GET /api/v1/openapi.json`, on a real daemon: it needs a token like
//! every `/api` route; it describes every route of the CONTRACT's table; and every operation it
//! describes exists on the server and is guarded (401 without credentials), as is anything
//! under `/api/v1` it does not describe. When the Python `openapi-spec-validator` is installed
//! (scripts/test installs it), the document is also checked by that independent validator.

use std::collections::BTreeSet;
use std::process::Command;

use reqwest::Method;

use crate::harness::{Daemon, DaemonSpec};

/// The routes of the CONTRACT's HTTP API table, as (method, path) in the document's spelling.
const CONTRACT_ROUTES: &[(&str, &str)] = &[
    ("get", "/api/v1/recordings"),
    ("get", "/api/v1/recordings/{id}"),
    ("patch", "/api/v1/recordings/{id}"),
    ("post", "/api/v1/recordings/{id}/access"),
    ("get", "/api/v1/recordings/{id}/original"),
    ("get", "/api/v1/recordings/{id}/proxy"),
    ("get", "/api/v1/recordings/{id}/poster"),
    ("post", "/api/v1/recordings/{id}/clips"),
    ("get", "/api/v1/clips/{id}"),
    ("get", "/api/v1/clips/{id}/media"),
    ("put", "/api/v1/cases/{id}"),
    ("get", "/api/v1/cases/{id}"),
    ("put", "/api/v1/cases/{id}/recordings/{rid}"),
    ("delete", "/api/v1/cases/{id}/recordings/{rid}"),
    ("put", "/api/v1/recordings/{id}/classification"),
    ("put", "/api/v1/recordings/{id}/grants/{principal}"),
    ("delete", "/api/v1/recordings/{id}/grants/{principal}"),
    ("get", "/api/v1/recordings/{id}/custody"),
    ("get", "/api/v1/events"),
    ("put", "/api/v1/recordings/{id}/category"),
    ("delete", "/api/v1/recordings/{id}/category"),
    ("put", "/api/v1/recordings/{id}/hold"),
    ("delete", "/api/v1/recordings/{id}/hold"),
    ("get", "/api/v1/destructions"),
    ("post", "/api/v1/destructions/{id}/approve"),
    ("get", "/api/v1/audit"),
    ("get", "/api/v1/principals"),
    ("post", "/api/v1/principals"),
    ("get", "/api/v1/principals/{name}"),
    ("delete", "/api/v1/principals/{name}"),
    ("get", "/api/v1/session"),
    ("post", "/api/v1/session"),
    ("delete", "/api/v1/session"),
];

const METHODS: [&str; 5] = ["get", "put", "post", "delete", "patch"];

/// Every (method, path) the document describes.
fn operations(doc: &serde_json::Value) -> Vec<(String, String)> {
    let mut out = vec![];
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for m in METHODS {
            if item.get(m).is_some() {
                out.push((m.to_string(), path.clone()));
            }
        }
        for key in item.as_object().unwrap().keys() {
            assert!(METHODS.contains(&key.as_str()) || key == "parameters", "{path}: unexpected {key}");
        }
    }
    out
}

/// A concrete path: each `{param}` filled with a made-up id.
fn concrete(path: &str) -> String {
    path.split('/').map(|seg| if seg.starts_with('{') { "0192f0c0-0000-7000-8000-00000000000a" } else { seg }).collect::<Vec<_>>().join("/")
}

#[tokio::test]
async fn the_description_matches_the_served_routes() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::configure(dir.path(), &DaemonSpec::station(dir.path()));
    d.start().await;

    // Like every /api route, it needs credentials.
    let (s, _) = d.call(Method::GET, "/api/v1/openapi.json", "", None).await;
    assert_eq!(s, 401);
    let r = d.get("/api/v1/openapi.json").await;
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
    let text = r.text().await.unwrap();
    let doc: serde_json::Value = serde_json::from_str(&text).expect("the description is JSON");
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")), "{}", doc["openapi"]);
    assert_eq!(doc["info"]["title"], "evidenced");
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));

    // The contract's routes are all there.
    let ops = operations(&doc);
    let have: BTreeSet<(String, String)> = ops.iter().cloned().collect();
    for (m, p) in CONTRACT_ROUTES {
        assert!(have.contains(&(m.to_string(), p.to_string())), "{m} {p} is not described");
    }
    assert!(have.contains(&("get".into(), "/api/v1/openapi.json".into())));

    // Every described operation exists and is guarded: without credentials it answers 401 with
    // the error envelope (a route the server lacks would answer 405, or the fallback's 401 only
    // for unknown paths, so the method is checked by sending it).
    let client = reqwest::Client::new();
    for (m, p) in &ops {
        assert!(p.starts_with("/api/v1/"), "{p}");
        let method = Method::from_bytes(m.to_uppercase().as_bytes()).unwrap();
        let mut req = client.request(method, format!("http://127.0.0.1:{}{}", d.port, concrete(p)));
        if m != "get" {
            req = req.json(&serde_json::json!({}));
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let body: serde_json::Value = resp.json().await.unwrap_or_default();
        assert_eq!(status, 401, "{m} {p} without credentials: {body}");
        assert_eq!(body["error"]["code"], "unauthorized", "{m} {p}: {body}");
    }
    // A wrong method on a described path is not a route (so the loop above did test the methods).
    let (s, _) = d.call(Method::PATCH, "/api/v1/audit", "", Some(serde_json::json!({}))).await;
    assert_eq!(s, 405, "PATCH /api/v1/audit is no route");

    // Paths the document does not describe still answer 401 first (the fallback), then 404.
    for p in ["/api/v1/nope", "/api/v1/recordings/1/nope", "/api/v1/openapi.yaml", "/api/v1/clips"] {
        assert!(!doc["paths"].as_object().unwrap().contains_key(p), "{p}");
        let (s, body) = d.call(Method::GET, p, "", None).await;
        assert_eq!(s, 401, "{p}: {body}");
        let (s, body) = d.call(Method::GET, p, &d.token, None).await;
        assert_eq!((s, body["error"]["code"].as_str()), (404, Some("not_found")), "{p}: {body}");
    }

    // An independent validator, when installed.
    if Command::new("python3").args(["-c", "import openapi_spec_validator"]).output().is_ok_and(|o| o.status.success()) {
        let file = dir.path().join("openapi.json");
        std::fs::write(&file, &text).unwrap();
        let out = Command::new("python3").args(["-m", "openapi_spec_validator"]).arg(&file).output().unwrap();
        assert!(
            out.status.success(),
            "openapi-spec-validator: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    } else {
        eprintln!("openapi-spec-validator is not installed: the independent check is skipped");
    }
    d.stop();
}
