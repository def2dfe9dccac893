//! Principal management through the API (`/api/v1/principals`), on a real daemon: admins list,
//! create (the token is shown once and works at once), read and revoke (at once) principals;
//! every other role gets 403 and no token 401; admins still see no footage; each create and
//! revoke is a `principal` custody event naming the admin.

use reqwest::Method;
use serde_json::json;
use sqlx::Row as _;

use crate::harness::{Daemon, DaemonSpec, write_random};

/// A station with one imported recording and an admin `root`; returns the daemon, the admin's
/// token and the recording's id.
async fn station(dir: &std::path::Path) -> (Daemon, String, String) {
    let mut d = Daemon::configure(dir, &DaemonSpec::station(dir));
    let src = dir.join("import");
    std::fs::create_dir_all(&src).unwrap();
    write_random(&src.join("BWC1_P1_20260101120000_1.mp4"), 200_000, 7);
    let (code, out, err) = d.cli(&["ingest", "--quiet", src.to_str().unwrap()]);
    assert_eq!(code, 0, "ingest: {out}{err}");
    let admin = d.token_create(&["--name", "root", "--role", "admin"]);
    d.start().await;
    let recs = d.recordings().await;
    assert_eq!(recs.len(), 1, "the supervisor sees the imported recording");
    let id = recs[0]["id"].as_str().unwrap().to_string();
    (d, admin, id)
}

/// No token material anywhere in a principal JSON: no `token*` key, no `evd_` value, no 64-hex hash.
fn assert_no_secrets(v: &serde_json::Value) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, x) in m {
                assert!(!k.contains("token") && !k.contains("hash"), "key {k:?} in {v}");
                assert_no_secrets(x);
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(assert_no_secrets),
        serde_json::Value::String(s) => {
            assert!(!s.starts_with("evd_"), "token in {s:?}");
            assert!(!(s.len() == 64 && s.chars().all(|c| c.is_ascii_hexdigit())), "hash-like value {s:?}");
        }
        _ => {}
    }
}

#[tokio::test]
async fn admins_manage_principals_and_see_no_footage() {
    let dir = tempfile::tempdir().unwrap();
    let (d, admin, rec) = station(dir.path()).await;

    // List: the harness's supervisor `sup` and the admin `root`, by name, without token material.
    let (s, list) = d.call(Method::GET, "/api/v1/principals", &admin, None).await;
    assert_eq!(s, 200, "{list}");
    let names: Vec<&str> = list["items"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["root", "sup"]);
    assert_no_secrets(&list);
    let root = &list["items"][0];
    assert_eq!((root["role"].as_str(), root["state"].as_str(), root["unit"].as_str()), (Some("admin"), Some("active"), Some("")));
    assert!(chrono::DateTime::parse_from_rfc3339(root["created_at"].as_str().unwrap()).is_ok(), "{root}");
    assert!(root["expires_at"].is_null() && root["revoked_at"].is_null(), "{root}");

    // Create a supervisor: 201 with the principal and its token, which works at once.
    let body = json!({"name": "carol", "role": "supervisor", "unit": "/JS/NJ/", "expires": "90d"});
    let (s, created) = d.call(Method::POST, "/api/v1/principals", &admin, Some(body.clone())).await;
    assert_eq!(s, 201, "{created}");
    let token = created["token"].as_str().unwrap().to_string();
    assert!(token.starts_with("evd_") && token.len() == 47, "{token}");
    let p = &created["principal"];
    assert_eq!((p["name"].as_str(), p["role"].as_str(), p["unit"].as_str()), (Some("carol"), Some("supervisor"), Some("JS/NJ")));
    assert_eq!(p["state"], "active");
    let expires = chrono::DateTime::parse_from_rfc3339(p["expires_at"].as_str().unwrap()).unwrap();
    let days = (expires - chrono::Utc::now().fixed_offset()).num_hours() as f64 / 24.0;
    assert!((89.9..=90.0).contains(&days), "expires in {days} days");
    assert_no_secrets(p);
    let (s, v) = d.call(Method::GET, "/api/v1/recordings", &token, None).await;
    assert_eq!(s, 200, "the new token works at once: {v}");

    // An officer defaults its officer id to its name.
    let (s, v) = d.call(Method::POST, "/api/v1/principals", &admin, Some(json!({"name": "P7", "role": "officer"}))).await;
    assert_eq!((s, v["principal"]["officer"].as_str()), (201, Some("P7")), "{v}");

    // The token is shown only once: reading the principal back does not show it.
    let (s, one) = d.call(Method::GET, "/api/v1/principals/carol", &admin, None).await;
    assert_eq!(s, 200, "{one}");
    assert_eq!(one["name"], "carol");
    assert_no_secrets(&one);
    let (s, v) = d.call(Method::GET, "/api/v1/principals/nobody", &admin, None).await;
    assert_eq!((s, v["error"]["code"].as_str()), (404, Some("principal_not_found")));

    // Duplicates and bad input.
    let (s, v) = d.call(Method::POST, "/api/v1/principals", &admin, Some(body)).await;
    assert_eq!((s, v["error"]["code"].as_str()), (409, Some("principal_exists")), "{v}");
    for (bad, code) in [
        (json!({"name": "x", "role": "chief"}), "invalid_role"),
        (json!({"name": "", "role": "auditor"}), "invalid_name"),
        (json!({"name": "a\nb", "role": "auditor"}), "invalid_name"),
        (json!({"name": "y".repeat(129), "role": "auditor"}), "invalid_name"),
        (json!({"name": "x", "role": "auditor", "expires": "soon"}), "invalid_expires"),
        (json!({"name": "x", "role": "auditor", "token": "evd_mine"}), "invalid_body"),
        (json!({"role": "auditor"}), "invalid_body"),
    ] {
        let (s, v) = d.call(Method::POST, "/api/v1/principals", &admin, Some(bad.clone())).await;
        assert_eq!((s, v["error"]["code"].as_str()), (400, Some(code)), "{bad}: {v}");
    }
    let (s, list) = d.call(Method::GET, "/api/v1/principals", &admin, None).await;
    assert_eq!((s, list["items"].as_array().unwrap().len()), (200, 4), "nothing bad was created: {list}");

    // Revoke: 200 with the revoked principal; the token is refused at once.
    let (s, v) = d.call(Method::DELETE, "/api/v1/principals/carol", &admin, None).await;
    assert_eq!((s, v["state"].as_str()), (200, Some("revoked")), "{v}");
    assert!(chrono::DateTime::parse_from_rfc3339(v["revoked_at"].as_str().unwrap()).is_ok(), "{v}");
    let (s, _) = d.call(Method::GET, "/api/v1/recordings", &token, None).await;
    assert_eq!(s, 401, "a revoked token is refused at once");
    let (s, v) = d.call(Method::DELETE, "/api/v1/principals/nobody", &admin, None).await;
    assert_eq!((s, v["error"]["code"].as_str()), (404, Some("principal_not_found")));

    // An admin cannot revoke themselves (and keeps working).
    let (s, v) = d.call(Method::DELETE, "/api/v1/principals/root", &admin, None).await;
    assert_eq!((s, v["error"]["code"].as_str()), (409, Some("cannot_revoke_self")), "{v}");
    let (s, _) = d.call(Method::GET, "/api/v1/principals", &admin, None).await;
    assert_eq!(s, 200);

    // Admins see no footage.
    let (s, _) = d.call(Method::GET, &format!("/api/v1/recordings/{rec}/original"), &admin, None).await;
    assert_eq!(s, 403, "admins do not download originals");
    let (s, _) = d.call(Method::GET, "/api/v1/recordings", &admin, None).await;
    assert_eq!(s, 403, "admins do not search recordings");

    // The CLI sees the API's changes.
    let (code, out, err) = d.cli(&["token", "list"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.lines().any(|l| l.starts_with("carol\tsupervisor\tJS/NJ\t-\trevoked")), "{out}");

    // Custody: the CLI's creations name `cli`, the API's changes the admin.
    let db = sqlx::SqlitePool::connect(&format!("sqlite://{}/catalog.db", d.dir.display())).await.unwrap();
    let rows = sqlx::query("SELECT actor, details FROM custody_events WHERE kind = 'principal' ORDER BY seq").fetch_all(&db).await.unwrap();
    let events: Vec<(String, String, String)> = rows
        .iter()
        .map(|r| {
            let details: serde_json::Value = serde_json::from_str(&r.get::<String, _>("details")).unwrap();
            (r.get("actor"), details["action"].as_str().unwrap().to_string(), details["name"].as_str().unwrap().to_string())
        })
        .collect();
    let expected = [
        ("cli", "created", "sup"),
        ("cli", "created", "root"),
        ("root", "created", "carol"),
        ("root", "created", "P7"),
        ("root", "revoked", "carol"),
    ];
    let expected: Vec<(String, String, String)> = expected.iter().map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string())).collect();
    assert_eq!(events, expected);
    let (code, out, err) = d.cli(&["verify"]);
    assert_eq!(code, 0, "the chain still verifies: {out}{err}");
}

#[tokio::test]
async fn only_admins_reach_principal_routes() {
    let dir = tempfile::tempdir().unwrap();
    let (d, admin, _) = station(dir.path()).await;
    let officer = d.token_create(&["--name", "P1", "--role", "officer"]);
    let archivist = d.token_create(&["--name", "arch", "--role", "archivist"]);
    let auditor = d.token_create(&["--name", "aud", "--role", "auditor"]);
    let routes = [
        (Method::GET, "/api/v1/principals", None),
        (Method::POST, "/api/v1/principals", Some(json!({"name": "eve", "role": "admin"}))),
        (Method::GET, "/api/v1/principals/root", None),
        (Method::DELETE, "/api/v1/principals/root", None),
    ];
    for (method, path, body) in &routes {
        for (who, token) in [
            ("supervisor", d.token.as_str()),
            ("officer", officer.as_str()),
            ("archivist", archivist.as_str()),
            ("auditor", auditor.as_str()),
        ] {
            let (s, v) = d.call(method.clone(), path, token, body.clone()).await;
            assert_eq!((s, v["error"]["code"].as_str()), (403, Some("forbidden")), "{who} {method} {path}: {v}");
        }
        let (s, v) = d.call(method.clone(), path, "", body.clone()).await;
        assert_eq!((s, v["error"]["code"].as_str()), (401, Some("unauthorized")), "no token {method} {path}: {v}");
        let (s, _) = d.call(method.clone(), path, "evd_not-a-real-token", body.clone()).await;
        assert_eq!(s, 401, "bad token {method} {path}");
    }
    // Nothing was created or revoked by the refused calls.
    let (s, list) = d.call(Method::GET, "/api/v1/principals", &admin, None).await;
    assert_eq!(s, 200);
    let items = list["items"].as_array().unwrap();
    assert!(items.iter().all(|p| p["name"] != "eve" && p["state"] == "active"), "{list}");
}
