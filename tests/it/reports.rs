//! Destruction certificates and annual statistics end to end, with periods of seconds and one
//! approval: after a destruction its batch is listed, the certificate (JSON and printable HTML)
//! names exactly the destroyed recording and its SHA-256 recomputes; `evidenced report` and
//! `GET /api/v1/reports/{year}` count per unit and category; roles and bad years are refused.

use std::time::Duration;

use chrono::Datelike;
use sha2::{Digest, Sha256};

use crate::harness::{Daemon, DaemonSpec, wait_for, write_random};

async fn json_as(d: &Daemon, path: &str, token: &str) -> serde_json::Value {
    let r = d.get_as(path, token).await;
    assert_eq!(r.status(), 200, "GET {path}");
    r.json().await.unwrap()
}

#[tokio::test]
async fn certificates_and_annual_report() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = DaemonSpec::station(dir.path());
    spec.extra = "[retention]\ngrace = \"1s\"\napprovals = 1\nsweep = \"1s\"\n[retention.categories]\nuncategorized = \"3s\"\n".into();
    let mut d = Daemon::configure(dir.path(), &spec);
    let src = dir.path().join("import");
    std::fs::create_dir_all(&src).unwrap();
    // a: JS/NJ/XW, uncategorized (will be destroyed); b: JS/NJ/XW, evidence; c: no unit, evidence.
    let sidecars =
        [("a", r#"{"unit": "JS/NJ/XW"}"#), ("b", r#"{"unit": "JS/NJ/XW", "category": "evidence"}"#), ("c", r#"{"category": "evidence"}"#)];
    for (i, (name, sidecar)) in sidecars.iter().enumerate() {
        write_random(&src.join(format!("{name}.mp4")), 100_000 + i, 90 + i as u64);
        std::fs::write(src.join(format!("{name}.json")), sidecar).unwrap();
    }
    assert_eq!(d.cli(&["ingest", "--quiet", src.to_str().unwrap()]).0, 0);
    let arch = d.token_create(&["--name", "arch", "--role", "archivist"]);
    let aud = d.token_create(&["--name", "aud", "--role", "auditor"]);
    d.start().await;
    let recs = d.wait_recordings(3, Duration::from_secs(10)).await;
    let rec = |n: &str| recs.iter().find(|r| r["original_name"] == n).unwrap().clone();
    let (a, b) = (rec("a.mp4"), rec("b.mp4"));
    let a_id = a["id"].as_str().unwrap().to_string();
    assert_eq!((a["unit"].as_str(), rec("c.mp4")["category"].as_str()), (Some("JS/NJ/XW"), Some("evidence")), "sidecars apply");

    let queued = wait_for("a queued for destruction", Duration::from_secs(20), || async {
        let q = json_as(&d, "/api/v1/destructions?state=pending", &arch).await;
        q["items"].as_array().unwrap().iter().find(|i| i["recording_id"] == a_id.as_str()).cloned()
    })
    .await;
    let did = queued["id"].as_str().unwrap().to_string();
    let (s, _) = d
        .call(
            reqwest::Method::POST,
            &format!("/api/v1/destructions/{did}/approve"),
            &arch,
            Some(serde_json::json!({"reason": "period over"})),
        )
        .await;
    assert_eq!(s, 200);
    let done = wait_for("a destroyed", Duration::from_secs(20), || async {
        let e = json_as(&d, &format!("/api/v1/destructions/{did}"), &arch).await;
        (e["state"] == "destroyed").then_some(e)
    })
    .await;
    let batch = done["batch"].as_str().expect("a finished destruction names its batch").to_string();

    // The batch list.
    let list = json_as(&d, "/api/v1/destruction-batches", &aud).await;
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{list}");
    assert_eq!((items[0]["batch"].as_str(), items[0]["count"].as_i64()), (Some(batch.as_str()), Some(1)));
    assert_eq!(items[0]["finished_at"], done["finished_at"]);

    // The certificate lists exactly the destroyed recording, and its hash recomputes.
    let mut cert = json_as(&d, &format!("/api/v1/destruction-batches/{batch}/certificate"), &aud).await;
    assert_eq!((cert["batch"].as_str(), cert["count"].as_i64()), (Some(batch.as_str()), Some(1)), "{cert}");
    assert!(cert["generated_at"].is_string() && cert["node"].as_str().unwrap().starts_with("node:"), "{cert}");
    let listed = cert["recordings"].as_array().unwrap();
    assert_eq!(listed.len(), 1, "{cert}");
    let r = &listed[0];
    assert_eq!((r["id"].as_str(), &r["sha256"], &r["size"]), (Some(a_id.as_str()), &a["sha256"], &a["size"]));
    assert_eq!(
        (r["original_name"].as_str(), r["unit"].as_str(), r["category"].as_str()),
        (Some("a.mp4"), Some("JS/NJ/XW"), Some("uncategorized"))
    );
    assert_eq!(
        (r["rule"].as_str(), &r["retention_until"], &r["queued_at"]),
        (Some("uncategorized: 3s"), &queued["retention_until"], &queued["queued_at"])
    );
    let approvals = r["approvals"].as_array().unwrap();
    assert_eq!(approvals.len(), 1);
    assert_eq!((approvals[0]["archivist"].as_str(), approvals[0]["reason"].as_str()), (Some("arch"), Some("period over")));
    assert!(approvals[0]["at"].is_string());
    assert_eq!(r["destroyed_at"], done["finished_at"]);
    assert!(r["objects"].as_array().unwrap().iter().any(|k| k.as_str().unwrap().ends_with("/original")), "{r}");
    let claimed = cert.as_object_mut().unwrap().remove("certificate_sha256").unwrap();
    let canonical = serde_json_canonicalizer::to_vec(&cert).unwrap();
    assert_eq!(claimed.as_str().unwrap(), hex::encode(Sha256::digest(&canonical)), "certificate_sha256 recomputes");
    assert!(!cert.to_string().contains(b["id"].as_str().unwrap()), "only what was destroyed");

    // The printable page.
    let page = d.get_as(&format!("/api/v1/destruction-batches/{batch}/certificate.html"), &arch).await;
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
    let html = page.text().await.unwrap();
    for want in ["<!DOCTYPE html>", "<table", a["sha256"].as_str().unwrap(), a_id.as_str(), batch.as_str(), "Certificate SHA-256"] {
        assert!(html.contains(want), "{want} missing from the page");
    }

    // Unknown batches, roles.
    for p in ["certificate", "certificate.html"] {
        let (s, e) = d.call(reqwest::Method::GET, &format!("/api/v1/destruction-batches/nope/{p}"), &aud, None).await;
        assert_eq!((s, e["error"]["code"].as_str()), (404, Some("batch_not_found")), "{p}: {e}");
    }
    let year = chrono::Utc::now().year();
    for p in [
        "/api/v1/destruction-batches".to_string(),
        format!("/api/v1/destruction-batches/{batch}/certificate"),
        format!("/api/v1/destruction-batches/{batch}/certificate.html"),
        format!("/api/v1/reports/{year}"),
    ] {
        assert_eq!(d.get_as(&p, &d.token).await.status(), 403, "a supervisor may not GET {p}");
        assert_eq!(d.get_as(&p, "").await.status(), 401, "{p} without a token");
    }

    // Two audited views of b count as accesses in its row.
    for _ in 0..2 {
        assert_eq!(d.get_as(&format!("/api/v1/recordings/{}", b["id"].as_str().unwrap()), &d.token).await.status(), 200);
    }

    // The annual report through the API.
    let rep = json_as(&d, &format!("/api/v1/reports/{year}"), &aud).await;
    assert_eq!(rep["year"].as_i64(), Some(year as i64));
    assert_eq!(rep["rows"].as_array().unwrap().len(), 3, "{rep}");
    assert_eq!((rep["total"]["recordings"].as_i64(), rep["total"]["destructions"].as_i64()), (Some(3), Some(1)), "{rep}");
    assert_eq!((rep["total"]["accesses"].as_i64(), rep["total"]["bytes"].as_i64()), (Some(2), Some(300_003)), "{rep}");
    let csv = d.get_as(&format!("/api/v1/reports/{year}?format=csv"), &arch).await;
    assert_eq!(csv.status(), 200);
    assert_eq!(csv.headers()["content-type"], "text/csv; charset=utf-8");
    let csv = csv.text().await.unwrap();
    assert!(csv.starts_with("unit,category,recordings,hours,bytes,accesses,clips,exports,holds,destructions\r\n"), "{csv}");
    for (p, code) in [("/api/v1/reports/20x6", 400), (&*format!("/api/v1/reports/{year}?format=xml"), 400), ("/api/v1/reports/1969", 400)] {
        assert_eq!(d.get_as(p, &aud).await.status(), code, "{p}");
    }
    assert_eq!(d.stop(), Some(0));

    // The annual report on the command line.
    let (code, out, err) = d.cli(&["report", "--year", &year.to_string(), "--format", "csv"]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [
            "unit,category,recordings,hours,bytes,accesses,clips,exports,holds,destructions",
            "(none),evidence,1,0.000,100002,0,0,0,0,0",
            "JS/NJ/XW,evidence,1,0.000,100001,2,0,0,0,0",
            "JS/NJ/XW,uncategorized,1,0.000,100000,0,0,0,0,1",
            "TOTAL,,3,0.000,300003,2,0,0,0,1",
        ],
        "{out}"
    );
    assert_eq!(csv.lines().skip(1).collect::<Vec<_>>(), lines[1..], "the API and the CLI agree");
    let (code, out, err) = d.cli(&["report", "--year", &year.to_string(), "--format", "json"]);
    assert_eq!(code, 0, "{err}");
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!((j["year"].as_i64(), j["rows"].as_array().unwrap().len()), (Some(year as i64), 3), "{j}");
    assert_eq!(j["rows"][0]["unit"], "(none)");
    assert_eq!((j["total"]["recordings"].as_i64(), j["total"]["destructions"].as_i64()), (Some(3), Some(1)));
    assert!(j["generated_at"].is_string());
    let (code, out, _) = d.cli(&["report", "--year", &(year - 1).to_string()]);
    assert_eq!((code, out.lines().count()), (0, 2), "an empty year: header and TOTAL only: {out}");
    let (code, _, err) = d.cli(&["report", "--year", "20x6"]);
    assert_eq!(code, 2);
    assert!(err.contains("20x6") && err.contains("year"), "{err}");
}
