//! Cases through the real daemon: create, list, read, close and reopen cases, link and unlink
//! recordings, with role and scope checks, the exact `case=` search, and the custody events the
//! links leave. Recordings come from `evidenced ingest`, one with a sidecar naming case `K-1`.

use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::{Daemon, DaemonSpec, write_random};

async fn call(d: &Daemon, method: Method, path: &str, token: &str, body: Option<Value>) -> (u16, Value) {
    d.call(method, path, token, body).await
}

fn ids(v: &Value) -> Vec<String> {
    let mut out: Vec<String> = v["items"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap().to_string()).collect();
    out.sort();
    out
}

#[tokio::test]
async fn cases_api_links_recordings_with_roles_scope_and_custody() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::configure(dir.path(), &DaemonSpec::station(dir.path()));
    let src = dir.path().join("import");
    std::fs::create_dir_all(&src).unwrap();
    for i in 0..2 {
        let p = src.join(format!("BWC{i}_P{i}_2026020{}090000_{i}.mp4", i + 1));
        write_random(&p, 200_000 + i * 1000, 70 + i as u64);
        if i == 0 {
            std::fs::write(p.with_extension("json"), json!({"case_ids": ["K-1"]}).to_string()).unwrap();
        }
    }
    let (code, out, err) = d.cli(&["ingest", "--quiet", src.to_str().unwrap()]);
    assert_eq!(code, 0, "ingest: {out}{err}");
    let arch = d.token_create(&["--name", "arch", "--role", "archivist"]);
    let aud = d.token_create(&["--name", "aud", "--role", "auditor"]);
    let off = d.token_create(&["--name", "off", "--role", "officer", "--officer", "P0"]);
    let other = d.token_create(&["--name", "other", "--role", "supervisor", "--unit", "OTHER"]);
    d.start().await;
    let sup = d.token.clone();

    let recs = d.recordings().await;
    assert_eq!(recs.len(), 2);
    let with_k1 = recs.iter().find(|r| r["cases"] == json!(["K-1"])).expect("the sidecar's case is on its recording");
    let plain = recs.iter().find(|r| r["cases"] == json!([])).unwrap();
    let (r1, r2) = (with_k1["id"].as_str().unwrap().to_string(), plain["id"].as_str().unwrap().to_string());

    // Every case route wants a token.
    let link_path = format!("/api/v1/cases/K-1/recordings/{r2}");
    for (m, p) in [
        (Method::GET, "/api/v1/cases"),
        (Method::POST, "/api/v1/cases"),
        (Method::GET, "/api/v1/cases/K-1"),
        (Method::PATCH, "/api/v1/cases/K-1"),
        (Method::PUT, "/api/v1/cases/K-1"),
        (Method::GET, "/api/v1/cases/K-1/recordings"),
        (Method::PUT, link_path.as_str()),
        (Method::DELETE, link_path.as_str()),
    ] {
        let (s, v) = call(&d, m.clone(), p, "", Some(json!({"id": "X-1", "status": "closed"}))).await;
        assert_eq!(s, 401, "{m} {p} without a token: {v}");
        assert_eq!(v["error"]["code"], "unauthorized", "{m} {p}");
    }

    // The sidecar's case exists, open, with its recording.
    let (s, k1) = call(&d, Method::GET, "/api/v1/cases/K-1", &aud, None).await;
    assert_eq!(s, 200, "{k1}");
    assert_eq!((k1["status"].clone(), k1["recordings"].clone(), k1["closed_at"].clone()), (json!("open"), json!(1), Value::Null));
    let (s, v) = call(&d, Method::GET, "/api/v1/cases/K-404", &sup, None).await;
    assert_eq!((s, v["error"]["code"].as_str()), (404, Some("case_not_found")));

    // Create: supervisors and archivists only; a taken id is 409; bad ids are 400.
    let k2 = json!({"id": "K-2", "title": "Robbery on 5th"});
    for t in [&off, &aud] {
        let (s, v) = call(&d, Method::POST, "/api/v1/cases", t, Some(k2.clone())).await;
        assert_eq!((s, v["error"]["code"].as_str()), (403, Some("forbidden")), "{v}");
    }
    let (s, v) = call(&d, Method::POST, "/api/v1/cases", &sup, Some(k2.clone())).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!((v["id"].as_str(), v["title"].as_str(), v["status"].as_str()), (Some("K-2"), Some("Robbery on 5th"), Some("open")));
    assert_eq!((v["created_by"].as_str(), v["recordings"].as_i64(), v["closed_at"].clone()), (Some("sup"), Some(0), Value::Null));
    let (s, v) = call(&d, Method::POST, "/api/v1/cases", &arch, Some(k2.clone())).await;
    assert_eq!((s, v["error"]["code"].as_str()), (409, Some("case_exists")), "{v}");
    for bad in [json!({"id": ""}), json!({"id": "x".repeat(129)}), json!({"id": "K-\u{1}3"}), json!({"title": "no id"})] {
        let (s, v) = call(&d, Method::POST, "/api/v1/cases", &sup, Some(bad.clone())).await;
        assert_eq!(s, 400, "{bad}: {v}");
        assert!(v["error"]["code"].is_string(), "{v}");
    }
    let (s, _) = call(&d, Method::POST, "/api/v1/cases", &arch, Some(json!({"id": "x".repeat(128)}))).await;
    assert_eq!(s, 201, "128 bytes is allowed");

    // List: readers only; status filter; cursor paging.
    let (s, _) = call(&d, Method::GET, "/api/v1/cases", &off, None).await;
    assert_eq!(s, 403);
    let (s, v) = call(&d, Method::GET, "/api/v1/cases?status=open", &aud, None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(ids(&v), ["K-1", "K-2", "x".repeat(128).as_str()]);
    let (s, v) = call(&d, Method::GET, "/api/v1/cases?status=pending", &aud, None).await;
    assert_eq!((s, v["error"]["code"].as_str()), (400, Some("invalid_parameter")));
    let mut seen = vec![];
    let mut path = "/api/v1/cases?limit=2".to_string();
    loop {
        let (s, v) = call(&d, Method::GET, &path, &sup, None).await;
        assert_eq!(s, 200, "{v}");
        seen.extend(ids(&v));
        match v["next_cursor"].as_str() {
            Some(c) => path = format!("/api/v1/cases?limit=2&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen.len(), 3, "{seen:?}");

    // Close and reopen: closed_at follows; bad status 400; auditors may not; unknown case 404.
    let (s, v) = call(&d, Method::PATCH, "/api/v1/cases/K-2", &arch, Some(json!({"status": "closed"}))).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["status"], "closed");
    assert!(v["closed_at"].as_str().is_some_and(|t| t.ends_with('Z')), "{v}");
    let (_, v) = call(&d, Method::GET, "/api/v1/cases?status=closed", &sup, None).await;
    assert_eq!(ids(&v), ["K-2"]);
    let (s, v) = call(&d, Method::PATCH, "/api/v1/cases/K-2", &arch, Some(json!({"status": "shelved"}))).await;
    assert_eq!((s, v["error"]["code"].as_str()), (400, Some("invalid_status")));
    let (s, _) = call(&d, Method::PATCH, "/api/v1/cases/K-2", &aud, Some(json!({"status": "open"}))).await;
    assert_eq!(s, 403);
    let (s, v) = call(&d, Method::PATCH, "/api/v1/cases/K-404", &sup, Some(json!({"status": "open"}))).await;
    assert_eq!((s, v["error"]["code"].as_str()), (404, Some("case_not_found")));
    let (s, v) = call(&d, Method::PATCH, "/api/v1/cases/K-2", &sup, Some(json!({"status": "open", "title": "Robbery"}))).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!((v["status"].as_str(), v["title"].as_str(), v["closed_at"].clone()), (Some("open"), Some("Robbery"), Value::Null));

    // The CONTRACT's PUT form creates (201), then updates (200).
    let (s, v) = call(&d, Method::PUT, "/api/v1/cases/K-3", &sup, Some(json!({"title": "Fraud"}))).await;
    assert_eq!((s, v["title"].as_str()), (201, Some("Fraud")), "{v}");
    let (s, v) = call(&d, Method::PUT, "/api/v1/cases/K-3", &sup, Some(json!({"status": "closed"}))).await;
    assert_eq!((s, v["status"].as_str(), v["title"].as_str()), (200, Some("closed"), Some("Fraud")), "{v}");

    // Link: auditors may not; a supervisor of another unit cannot see the recording (404).
    let k2_r2 = format!("/api/v1/cases/K-2/recordings/{r2}");
    let reason = Some(json!({"reason": "witness statement"}));
    let (s, _) = call(&d, Method::PUT, &k2_r2, &aud, reason.clone()).await;
    assert_eq!(s, 403);
    let (s, v) = call(&d, Method::PUT, &k2_r2, &other, reason.clone()).await;
    assert_eq!((s, v["error"]["code"].as_str()), (404, Some("not_found")), "{v}");
    let (s, v) = call(&d, Method::PUT, &k2_r2, &sup, reason.clone()).await;
    assert_eq!((s, v.clone()), (200, json!({"linked": true})));
    let (s, v) = call(&d, Method::PUT, &k2_r2, &sup, reason.clone()).await;
    assert_eq!((s, v), (200, json!({"linked": false})), "linking again changes nothing");
    let (s, v) = call(&d, Method::PUT, &format!("/api/v1/cases/K-2/recordings/{r1}"), &arch, None).await;
    assert_eq!((s, v), (200, json!({"linked": true})), "the body is optional");
    let (s, v) = call(&d, Method::PUT, &format!("/api/v1/cases/K-404/recordings/{r2}"), &sup, None).await;
    assert_eq!((s, v["error"]["code"].as_str()), (404, Some("case_not_found")));
    let (s, v) = call(&d, Method::PUT, "/api/v1/cases/K-2/recordings/0190f0e0-0000-7000-8000-000000000000", &sup, None).await;
    assert_eq!((s, v["error"]["code"].as_str()), (404, Some("not_found")));
    let (s, v) = call(&d, Method::PUT, &k2_r2, &sup, Some(json!({"why": "x"}))).await;
    assert_eq!((s, v["error"]["code"].as_str()), (400, Some("invalid_body")));

    // The links show on the recordings, in the exact case search and under the case.
    let (_, v) = call(&d, Method::GET, "/api/v1/recordings?case=K-2", &sup, None).await;
    assert_eq!(ids(&v), {
        let mut both = vec![r1.clone(), r2.clone()];
        both.sort();
        both
    });
    let (_, v) = call(&d, Method::GET, "/api/v1/recordings?case=K", &sup, None).await;
    assert!(ids(&v).is_empty(), "the case search is exact: {v}");
    assert_eq!(d.json(&format!("/api/v1/recordings/{r1}")).await["cases"], json!(["K-1", "K-2"]));
    assert_eq!(d.json(&format!("/api/v1/recordings/{r2}")).await["cases"], json!(["K-2"]));
    let (s, v) = call(&d, Method::GET, "/api/v1/cases/K-2/recordings?limit=1", &aud, None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["items"].as_array().unwrap().len(), 1);
    let cursor = v["next_cursor"].as_str().expect("a second page").to_string();
    let (_, v2) = call(&d, Method::GET, &format!("/api/v1/cases/K-2/recordings?limit=1&cursor={cursor}"), &aud, None).await;
    assert_eq!(v2["items"].as_array().unwrap().len(), 1);
    assert_ne!(v["items"][0]["id"], v2["items"][0]["id"]);
    let (s, v) = call(&d, Method::GET, "/api/v1/cases/K-2/recordings", &other, None).await;
    assert_eq!((s, ids(&v).len()), (200, 0), "scoped to what the caller may see");
    let (s, v) = call(&d, Method::GET, "/api/v1/cases/K-404/recordings", &sup, None).await;
    assert_eq!((s, v["error"]["code"].as_str()), (404, Some("case_not_found")));
    assert_eq!(d.json("/api/v1/cases/K-2").await["recordings"], 2);

    // The custody log names who linked, why, and the new list.
    let events = d.json(&format!("/api/v1/recordings/{r2}/custody")).await;
    let linked: Vec<&Value> = events["items"].as_array().unwrap().iter().filter(|e| e["kind"] == "linked").collect();
    assert_eq!(linked.len(), 1, "{events}");
    assert_eq!(linked[0]["actor"], "sup");
    assert_eq!(linked[0]["details"], json!({"case": "K-2", "reason": "witness statement", "cases": ["K-2"]}));

    // Unlink: idempotent, recorded, and the search follows.
    let (s, v) = call(&d, Method::DELETE, &k2_r2, &aud, None).await;
    assert_eq!((s, v["error"]["code"].as_str()), (403, Some("forbidden")));
    let (s, v) = call(&d, Method::DELETE, &k2_r2, &arch, Some(json!({"reason": "wrong case"}))).await;
    assert_eq!((s, v), (200, json!({"unlinked": true})));
    let (s, v) = call(&d, Method::DELETE, &k2_r2, &arch, None).await;
    assert_eq!((s, v), (200, json!({"unlinked": false})));
    let (_, v) = call(&d, Method::GET, "/api/v1/recordings?case=K-2", &sup, None).await;
    assert_eq!(ids(&v), [r1.as_str()]);
    assert_eq!(d.json(&format!("/api/v1/recordings/{r2}")).await["cases"], json!([]));
    let events = d.json(&format!("/api/v1/recordings/{r2}/custody")).await;
    let unlinked: Vec<&Value> = events["items"].as_array().unwrap().iter().filter(|e| e["kind"] == "unlinked").collect();
    assert_eq!(unlinked.len(), 1, "{events}");
    assert_eq!((unlinked[0]["actor"].as_str(), unlinked[0]["details"]["reason"].as_str()), (Some("arch"), Some("wrong case")));
    assert_eq!(d.json("/api/v1/cases/K-2").await["recordings"], 1);
}
