//! Changes to archived recordings through the API — attribution corrections, classification,
//! retention category, legal hold — and the audit of accesses: each is a custody event naming the
//! principal, allowed only to the roles the contract names, with 4xx errors that say why.

use std::time::Duration;

use crate::harness::{Daemon, DaemonSpec, write_random};

async fn kinds(d: &Daemon, id: &str) -> Vec<(String, String)> {
    let c = d.json(&format!("/api/v1/recordings/{id}/custody")).await;
    c["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["kind"].as_str().unwrap().to_string(), e["actor"].as_str().unwrap().to_string()))
        .collect()
}

#[tokio::test]
async fn corrections_classification_category_and_holds_are_logged_and_role_checked() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::configure(dir.path(), &DaemonSpec::station(dir.path()));
    let src = dir.path().join("import");
    std::fs::create_dir_all(&src).unwrap();
    // No sidecar and no pattern: archived, flagged for review.
    write_random(&src.join("unknown.mp4"), 200_000, 5);
    assert_eq!(d.cli(&["ingest", "--quiet", src.to_str().unwrap()]).0, 0);
    let arch = d.token_create(&["--name", "arch1", "--role", "archivist"]);
    let officer = d.token_create(&["--name", "P5", "--role", "officer"]);
    let auditor = d.token_create(&["--name", "aud", "--role", "auditor"]);
    let elsewhere = d.token_create(&["--name", "sup-other", "--role", "supervisor", "--unit", "ZZ"]);
    d.start().await;
    let recs = d.wait_recordings(1, Duration::from_secs(10)).await;
    let id = recs[0]["id"].as_str().unwrap().to_string();
    assert_eq!(recs[0]["needs_review"], true);
    let p = format!("/api/v1/recordings/{id}");

    // Review: the supervisor corrects the attribution.
    let fix = serde_json::json!({"officer": "P5", "device": "BWC5", "unit": "JS/NJ", "started_at": "2026-03-01T08:00:00Z", "needs_review": false, "reason": "docking log"});
    let (s, r) = d.call(reqwest::Method::PATCH, &p, &d.token, Some(fix.clone())).await;
    assert_eq!(s, 200, "{r}");
    assert_eq!((r["officer"].as_str(), r["needs_review"].as_bool()), (Some("P5"), Some(false)));
    assert_eq!(r["started_at"], "2026-03-01T08:00:00.000000Z");
    // ... and now the officer P5 sees it; before the correction nobody could attribute it to them.
    assert_eq!(d.call(reqwest::Method::GET, &p, &officer, None).await.0, 200);
    // Roles and input errors.
    assert_eq!(d.call(reqwest::Method::PATCH, &p, &officer, Some(fix.clone())).await.0, 403);
    assert_eq!(d.call(reqwest::Method::PATCH, &p, &elsewhere, Some(fix.clone())).await.0, 404, "out of scope is not found");
    assert_eq!(d.call(reqwest::Method::PATCH, &p, "", Some(fix.clone())).await.0, 401);
    let (s, e) = d.call(reqwest::Method::PATCH, &p, &d.token, Some(serde_json::json!({"started_at": "yesterday"}))).await;
    assert_eq!((s, e["error"]["code"].as_str()), (400, Some("invalid_field")));
    let (s, e) = d.call(reqwest::Method::PATCH, &p, &d.token, Some(serde_json::json!({"colour": "red"}))).await;
    assert_eq!((s, e["error"]["code"].as_str()), (400, Some("invalid_body")));
    let (s, e) = d.call(reqwest::Method::PATCH, &p, &d.token, Some(serde_json::json!({}))).await;
    assert_eq!((s, e["error"]["code"].as_str()), (400, Some("nothing_to_change")));

    // Classification needs a reason.
    let (s, e) = d
        .call(reqwest::Method::PUT, &format!("{p}/classification"), &d.token, Some(serde_json::json!({"classification": "privacy"})))
        .await;
    assert_eq!((s, e["error"]["code"].as_str()), (400, Some("reason_required")));
    let (s, e) = d
        .call(
            reqwest::Method::PUT,
            &format!("{p}/classification"),
            &d.token,
            Some(serde_json::json!({"classification": "top", "reason": "x"})),
        )
        .await;
    assert_eq!((s, e["error"]["code"].as_str()), (400, Some("invalid_classification")));
    let (s, r) = d
        .call(
            reqwest::Method::PUT,
            &format!("{p}/classification"),
            &d.token,
            Some(serde_json::json!({"classification": "privacy", "reason": "a minor"})),
        )
        .await;
    assert_eq!((s, r["classification"].as_str()), (200, Some("privacy")));

    // Category and hold: archivists only.
    let cat = serde_json::json!({"category": "evidence", "reason": "case K-9"});
    assert_eq!(d.call(reqwest::Method::PUT, &format!("{p}/category"), &d.token, Some(cat.clone())).await.0, 403);
    let (s, r) = d.call(reqwest::Method::PUT, &format!("{p}/category"), &arch, Some(cat)).await;
    assert_eq!((s, r["category"].as_str()), (200, Some("evidence")));
    let (s, r) = d.call(reqwest::Method::DELETE, &format!("{p}/category"), &arch, None).await;
    assert_eq!((s, r["category"].as_str()), (200, Some("uncategorized")));
    let (s, e) = d.call(reqwest::Method::PUT, &format!("{p}/hold"), &arch, Some(serde_json::json!({}))).await;
    assert_eq!((s, e["error"]["code"].as_str()), (400, Some("reason_required")));
    let (s, r) = d.call(reqwest::Method::PUT, &format!("{p}/hold"), &arch, Some(serde_json::json!({"reason": "court order 12"}))).await;
    assert_eq!((s, r["legal_hold"].as_bool()), (200, Some(true)));
    assert_eq!(d.call(reqwest::Method::PUT, &format!("{p}/hold"), &auditor, Some(serde_json::json!({"reason": "x"}))).await.0, 403);
    let (s, r) = d.call(reqwest::Method::DELETE, &format!("{p}/hold"), &arch, Some(serde_json::json!({"reason": "lifted by court"}))).await;
    assert_eq!((s, r["legal_hold"].as_bool()), (200, Some(false)));

    // Accesses are audited once per access: a view, a download, not each Range request.
    let url = format!("http://127.0.0.1:{}{p}/original", d.port);
    for from in [0u64, 1000, 5000] {
        let r = reqwest::Client::new()
            .get(&url)
            .bearer_auth(&d.token)
            .header("Range", format!("bytes={from}-{}", from + 99))
            .header("X-Access-Reason", "review")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 206);
    }

    let log = kinds(&d, &id).await;
    let got: Vec<(&str, &str)> =
        log.iter().map(|(k, a)| (k.as_str(), a.as_str())).filter(|(k, _)| *k != "discovered" && *k != "derived").collect();
    let expect = [
        ("archived", "node:"),
        ("attributed", "sup"),
        ("accessed", "P5"),
        ("classified", "sup"),
        ("categorised", "arch1"),
        ("categorised", "arch1"),
        ("held", "arch1"),
        ("hold_released", "arch1"),
        ("downloaded", "sup"),
    ];
    assert_eq!(got.len(), expect.len(), "three Range requests are one download: {log:?}");
    let download =
        d.json(&format!("{p}/custody")).await["items"].as_array().unwrap().iter().find(|e| e["kind"] == "downloaded").cloned().unwrap();
    assert_eq!(download["details"]["from"], "127.0.0.1", "the audit says from where: {download}");
    for ((k, a), (gk, ga)) in expect.iter().zip(&got) {
        assert!(k == gk && ga.starts_with(a), "expected {k} by {a}, found {gk} by {ga}: {log:?}");
    }
    d.stop();
    let (code, out, err) = d.cli(&["verify"]);
    assert_eq!(code, 0, "{out}{err}");
}
