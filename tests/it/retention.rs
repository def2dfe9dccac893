//! Retention end to end with periods of seconds: expired recordings enter the destruction queue,
//! are destroyed only after the grace period and two different archivists' approvals, leave a
//! tombstone and custody events; a hold or a permanent category keeps a recording; a hold placed
//! while queued calls the destruction off; `retention plan` shows what would be queued.

use std::time::Duration;

use crate::harness::{Daemon, DaemonSpec, wait_for, write_random};

async fn json_as(d: &Daemon, path: &str, token: &str) -> serde_json::Value {
    let r = d.get_as(path, token).await;
    assert_eq!(r.status(), 200, "GET {path}");
    r.json().await.unwrap()
}

#[tokio::test]
async fn expired_recordings_are_destroyed_only_after_grace_and_two_approvals_sqlite() {
    destruction_flow(false).await;
}

#[tokio::test]
async fn expired_recordings_are_destroyed_only_after_grace_and_two_approvals_postgres() {
    destruction_flow(true).await;
}

async fn destruction_flow(postgres: bool) {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = DaemonSpec::station(dir.path());
    if postgres {
        spec.catalog_url = crate::harness::pg_database().await;
    }
    spec.extra = "[retention]\ngrace = \"2s\"\napprovals = 2\nsweep = \"1s\"\n[retention.categories]\nuncategorized = \"4s\"\n".into();
    let mut d = Daemon::configure(dir.path(), &spec);
    let src = dir.path().join("import");
    std::fs::create_dir_all(&src).unwrap();
    for (i, name) in ["a.mp4", "b.mp4", "c.mp4"].iter().enumerate() {
        write_random(&src.join(name), 100_000 + i, 70 + i as u64);
    }
    assert_eq!(d.cli(&["ingest", "--quiet", src.to_str().unwrap()]).0, 0);
    let (code, out, _) = d.cli(&["retention", "plan"]);
    assert_eq!(code, 0);
    assert!(out.trim().is_empty(), "nothing has expired on arrival: {out}");
    let arch1 = d.token_create(&["--name", "arch1", "--role", "archivist"]);
    let arch2 = d.token_create(&["--name", "arch2", "--role", "archivist"]);
    d.start().await;
    assert!(d.log().contains("shorter than six months"), "a short category is warned about");
    let recs = d.wait_recordings(3, Duration::from_secs(10)).await;
    let id_of = |n: &str| recs.iter().find(|r| r["original_name"] == n).unwrap()["id"].as_str().unwrap().to_string();
    let (a, b, c) = (id_of("a.mp4"), id_of("b.mp4"), id_of("c.mp4"));
    assert!(recs[0]["retention_until"].is_string() && recs[0]["retention_permanent"] == false, "{}", recs[0]);

    // b is held, c is evidence (permanent); a will expire.
    assert_eq!(
        d.call(reqwest::Method::PUT, &format!("/api/v1/recordings/{b}/hold"), &arch1, Some(serde_json::json!({"reason": "court order"})))
            .await
            .0,
        200
    );
    let (s, r) = d
        .call(reqwest::Method::PUT, &format!("/api/v1/recordings/{c}/category"), &arch1, Some(serde_json::json!({"category": "evidence"})))
        .await;
    assert_eq!((s, r["retention_permanent"].as_bool()), (200, Some(true)), "{r}");

    let queued = wait_for("a queued for destruction", Duration::from_secs(20), || async {
        let q = json_as(&d, "/api/v1/destructions?state=pending", &arch1).await;
        q["items"].as_array().unwrap().iter().find(|i| i["recording_id"] == a.as_str()).cloned()
    })
    .await;
    let did = queued["id"].as_str().unwrap().to_string();
    let (code, out, _) = d.cli(&["retention", "plan"]);
    assert_eq!(code, 0);
    assert!(!out.contains(&b) && !out.contains(&c), "held and permanent recordings are never planned: {out}");
    assert_eq!(d.json(&format!("/api/v1/recordings/{a}")).await["state"], "pending_destruction");

    // Approvals: archivists only, a reason, two different people.
    let approve = format!("/api/v1/destructions/{did}/approve");
    assert_eq!(d.call(reqwest::Method::POST, &approve, &d.token, Some(serde_json::json!({"reason": "x"}))).await.0, 403);
    assert_eq!(d.call(reqwest::Method::POST, &approve, &arch1, Some(serde_json::json!({}))).await.1["error"]["code"], "reason_required");
    assert_eq!(d.call(reqwest::Method::POST, &approve, &arch1, Some(serde_json::json!({"reason": "retention ended"}))).await.0, 200);
    let (s, e) = d.call(reqwest::Method::POST, &approve, &arch1, Some(serde_json::json!({"reason": "again"}))).await;
    assert_eq!((s, e["error"]["code"].as_str()), (409, Some("refused")), "{e}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(d.json(&format!("/api/v1/recordings/{a}")).await["state"], "pending_destruction", "one approval is not enough");
    assert_eq!(d.call(reqwest::Method::POST, &approve, &arch2, Some(serde_json::json!({"reason": "agreed"}))).await.0, 200);

    let tomb = wait_for("a destroyed", Duration::from_secs(20), || async {
        let r = d.json(&format!("/api/v1/recordings/{a}")).await;
        (r["state"] == "destroyed").then_some(r)
    })
    .await;
    assert_eq!(tomb["sha256"], recs.iter().find(|r| r["id"] == a.as_str()).unwrap()["sha256"], "the tombstone keeps the hash");
    let archive = crate::harness::files_under(&dir.path().join("archive/originals"));
    assert!(!archive.iter().any(|p| p.to_string_lossy().contains(&a)), "a's objects are gone: {archive:?}");
    assert!(archive.iter().any(|p| p.to_string_lossy().contains(&b)), "b stays");
    let custody = d.json(&format!("/api/v1/recordings/{a}/custody")).await;
    let kinds: Vec<&str> = custody["items"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    for k in ["queued_for_destruction", "destruction_approved", "destroyed"] {
        assert!(kinds.contains(&k), "{kinds:?}");
    }
    let destroyed = custody["items"].as_array().unwrap().iter().find(|e| e["kind"] == "destroyed").unwrap();
    assert_eq!(destroyed["details"]["approvals"].as_array().unwrap().len(), 2, "{destroyed}");
    let done = json_as(&d, &format!("/api/v1/destructions/{did}"), &arch2).await;
    assert_eq!(done["state"], "destroyed");
    assert!(done["objects"].as_array().unwrap().iter().any(|k| k.as_str().unwrap().ends_with("/original")), "{done}");

    // b: the hold lifted, it is queued; a hold placed again calls the destruction off.
    assert_eq!(
        d.call(reqwest::Method::DELETE, &format!("/api/v1/recordings/{b}/hold"), &arch1, Some(serde_json::json!({"reason": "lifted"})))
            .await
            .0,
        200
    );
    wait_for("b queued", Duration::from_secs(20), || async {
        (d.json(&format!("/api/v1/recordings/{b}")).await["state"] == "pending_destruction").then_some(())
    })
    .await;
    assert_eq!(
        d.call(reqwest::Method::PUT, &format!("/api/v1/recordings/{b}/hold"), &arch1, Some(serde_json::json!({"reason": "new order"})))
            .await
            .0,
        200
    );
    wait_for("b's destruction called off", Duration::from_secs(20), || async {
        (d.json(&format!("/api/v1/recordings/{b}")).await["state"] == "archived").then_some(())
    })
    .await;
    assert_eq!(d.json(&format!("/api/v1/recordings/{c}")).await["state"], "archived");
    assert_eq!(d.stop(), Some(0));
    let (code, out, err) = d.cli(&["verify"]);
    assert_eq!(code, 0, "a destroyed recording is not a discrepancy: {out}{err}");
}
