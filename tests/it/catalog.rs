//! The catalog conformance suite: every case runs against SQLite and against PostgreSQL.

use std::sync::Arc;

use evidenced::catalog::{self, ArchiveOutcome, Catalog, CatalogError, Fingerprint, NewRecording, NewSighting, Principal, RecordingFilter};
use evidenced::custody;

use crate::harness::pg_database;

async fn sqlite() -> (Arc<dyn Catalog>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    // A nested, not yet existing directory: opening must create it.
    let url = format!("sqlite://{}/nested/dir/catalog.db", dir.path().display());
    (catalog::open(&url, 4).await.unwrap(), dir)
}

async fn postgres() -> Arc<dyn Catalog> {
    catalog::open(&pg_database().await, 4).await.unwrap()
}

/// Runs a suite function on both backends.
macro_rules! both {
    ($name:ident) => {
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                let (c, _dir) = super::sqlite().await;
                super::$name(c).await;
            }
            #[tokio::test]
            async fn postgres() {
                super::$name(super::postgres().await).await;
            }
        }
    };
}

fn sighting(path: &[u8], size: i64) -> NewSighting {
    NewSighting {
        node: "n1".into(),
        dock: "d1".into(),
        path: path.to_vec(),
        path_display: String::from_utf8_lossy(path).into(),
        fingerprint: Fingerprint { dev: 1, ino: 2, size, mtime_ns: 3, ctime_ns: 4 },
        actor: "node:n1".into(),
    }
}

fn recording(sha: &str, id: &str) -> NewRecording {
    let mut r = NewRecording {
        sha256: sha.into(),
        size: 10,
        object_key: format!("originals/n1/{id}/original"),
        manifest_key: format!("originals/n1/{id}/manifest.json"),
        original_name: "a.mp4".into(),
        extension: "mp4".into(),
        node: "n1".into(),
        ..Default::default()
    };
    r.attribution.device = Some("BWC1".into());
    r.attribution.officer = Some("P1".into());
    r.attribution.unit = Some("JS/NJ/XW".into());
    r.attribution.started_at = Some(1_710_000_000_000_000);
    r
}

/// Re-walks the whole custody chain with the public hash rule.
async fn assert_chain_valid(c: &dyn Catalog) -> usize {
    let events = c.custody_events(None, 0, 1_000_000).await.unwrap();
    let mut prev = custody::GENESIS.to_string();
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.body.seq, i as i64 + 1, "gap or fork in the chain");
        assert_eq!(e.body.prev_hash, prev, "prev_hash of seq {}", e.body.seq);
        assert_eq!(custody::entry_hash(&e.body), e.hash, "hash of seq {}", e.body.seq);
        prev = e.hash.clone();
    }
    events.len()
}

async fn sightings_are_idempotent_and_journaled(c: Arc<dyn Catalog>) {
    // Raw, non-UTF-8 path bytes survive the round trip.
    let path = b"/dock/\xff\xfe odd.mp4";
    let (s, new) = c.record_sighting(&sighting(path, 10)).await.unwrap();
    assert!(new);
    assert_eq!(s.path, path.to_vec());
    assert!(s.path_display.contains('\u{fffd}'));
    let (again, new) = c.record_sighting(&sighting(path, 10)).await.unwrap();
    assert!(!new);
    assert_eq!(again.id, s.id);
    // A different snapshot of the same path is a new sighting.
    let (other, new) = c.record_sighting(&sighting(path, 11)).await.unwrap();
    assert!(new && other.id != s.id);

    let due = c.due_sightings("n1", catalog::now_micros(), 10).await.unwrap();
    assert_eq!(due.len(), 2);
    c.set_upload(&s.id, "k", Some("upload-1")).await.unwrap();
    c.sighting_failed(&s.id, "boom", catalog::now_micros() + 60_000_000).await.unwrap();
    let due = c.due_sightings("n1", catalog::now_micros(), 10).await.unwrap();
    assert_eq!(due.len(), 1, "a failed sighting waits for its retry time");
    let s = c.sighting(&s.id).await.unwrap();
    assert_eq!((s.attempts, s.upload_id.as_deref(), s.last_error.as_deref()), (1, Some("upload-1"), Some("boom")));
    assert!(c.due_sightings("other-node", catalog::now_micros(), 10).await.unwrap().is_empty());

    c.sighting_changed(&other.id, "node:n1", "changed").await.unwrap();
    assert_eq!(c.sighting(&other.id).await.unwrap().state, "changed");
    c.record_empty(&sighting(b"/dock/empty.mp4", 0)).await.unwrap();
    c.record_empty(&sighting(b"/dock/empty.mp4", 0)).await.unwrap();
    let kinds: Vec<String> = c.custody_events(None, 0, 100).await.unwrap().into_iter().map(|e| e.body.kind).collect();
    assert_eq!(kinds, ["discovered", "discovered", "changed_during_ingest", "zero_length_seen"]);
    assert_chain_valid(c.as_ref()).await;
}
both!(sightings_are_idempotent_and_journaled);

async fn archive_duplicate_and_release(c: Arc<dyn Catalog>) {
    let sha = "a".repeat(64);
    let (s1, _) = c.record_sighting(&sighting(b"/dock/a.mp4", 10)).await.unwrap();
    let now = catalog::now_micros();
    let out = c.commit_archive(&s1.id, &recording(&sha, &s1.id), "node:n1", Some(now)).await.unwrap();
    assert_eq!(out, ArchiveOutcome::Archived(s1.id.clone()));
    // Committing again is idempotent.
    assert_eq!(c.commit_archive(&s1.id, &recording(&sha, &s1.id), "node:n1", Some(now)).await.unwrap(), out);

    let (s2, _) = c.record_sighting(&sighting(b"/dock/copy.mp4", 10)).await.unwrap();
    let out2 = c.commit_archive(&s2.id, &recording(&sha, &s2.id), "node:n1", None).await.unwrap();
    assert_eq!(out2, ArchiveOutcome::Duplicate(s1.id.clone()));

    let r = c.recording(&s1.id).await.unwrap();
    assert_eq!(r.sha256, sha);
    assert_eq!(r.sightings.len(), 2, "one recording, two sightings");
    assert_eq!(r.started_at.as_deref(), Some("2024-03-09T16:00:00.000000Z"));
    // The redundant upload of the duplicate is queued for deletion in the same transaction.
    let job = c.claim(&[evidenced::jobs::DELETE_REDUNDANT], "w", 60_000_000).await.unwrap().unwrap();
    assert_eq!(job.payload["keys"][0], format!("originals/n1/{}/original", s2.id));

    // Release: only s1 is due (s2 is kept).
    let due = c.due_releases("n1", catalog::now_micros()).await.unwrap();
    assert_eq!(due.iter().map(|s| s.id.clone()).collect::<Vec<_>>(), vec![s1.id.clone()]);
    c.record_release(&s1.id, "node:n1").await.unwrap();
    c.record_release(&s1.id, "node:n1").await.unwrap();
    assert!(c.due_releases("n1", catalog::now_micros()).await.unwrap().is_empty());

    let kinds: Vec<String> = c.custody_events(Some(&s1.id), 0, 100).await.unwrap().into_iter().map(|e| e.body.kind).collect();
    assert_eq!(kinds, ["archived", "duplicate_sighting", "dock_released"]);
    assert_chain_valid(c.as_ref()).await;
}
both!(archive_duplicate_and_release);

async fn search_filters_and_paging(c: Arc<dyn Catalog>) {
    let mut ids = vec![];
    for i in 0..12 {
        let (s, _) = c.record_sighting(&sighting(format!("/dock/{i}.mp4").as_bytes(), 10 + i)).await.unwrap();
        let mut r = recording(&format!("{i:064x}"), &s.id);
        r.attribution.officer = Some(if i % 2 == 0 { "P1" } else { "P2" }.into());
        r.attribution.unit = Some(if i < 6 { "JS/NJ/XW" } else { "JS/SZ" }.into());
        r.attribution.started_at = Some(1_700_000_000_000_000 + i * 1_000_000);
        r.attribution.needs_review = i == 3;
        r.attribution.case_ids = if i == 5 { vec!["C-1".into()] } else { vec![] };
        c.commit_archive(&s.id, &r, "node:n1", None).await.unwrap();
        ids.push(s.id);
    }
    let page = |f: RecordingFilter| {
        let c = c.clone();
        async move { c.list_recordings(&f).await.unwrap() }
    };
    // Newest first, stable cursor paging without gaps or repeats.
    let mut seen = vec![];
    let mut after = None;
    loop {
        let items = page(RecordingFilter { limit: 5, after: after.clone(), ..Default::default() }).await;
        if items.is_empty() {
            break;
        }
        after = items.last().map(|r| (r.sort_at, r.id.clone()));
        seen.extend(items.into_iter().map(|r| r.id));
    }
    let mut expected = ids.clone();
    expected.reverse();
    assert_eq!(seen, expected);

    let f = |mut f: RecordingFilter| {
        f.limit = 100;
        f
    };
    assert_eq!(page(f(RecordingFilter { officer: Some("P1".into()), ..Default::default() })).await.len(), 6);
    assert_eq!(page(f(RecordingFilter { unit: Some("JS".into()), ..Default::default() })).await.len(), 12);
    assert_eq!(page(f(RecordingFilter { unit: Some("JS/NJ".into()), ..Default::default() })).await.len(), 6);
    assert_eq!(
        page(f(RecordingFilter { unit: Some("JS/N".into()), ..Default::default() })).await.len(),
        0,
        "unit prefix is by path segment"
    );
    assert_eq!(page(f(RecordingFilter { needs_review: Some(true), ..Default::default() })).await.len(), 1);
    assert_eq!(page(f(RecordingFilter { case: Some("C-1".into()), ..Default::default() })).await.len(), 1);
    let window = RecordingFilter { from: Some(1_700_000_002_000_000), to: Some(1_700_000_005_000_000), ..Default::default() };
    assert_eq!(page(f(window)).await.len(), 3);
    let combined = RecordingFilter { officer: Some("P2".into()), unit: Some("JS/SZ".into()), ..Default::default() };
    assert_eq!(page(f(combined)).await.len(), 3);
    let scoped = RecordingFilter { scope_unit: Some("JS/NJ/XW".into()), scope_officer: Some("P1".into()), ..Default::default() };
    assert_eq!(page(f(scoped)).await.len(), 3);
}
both!(search_filters_and_paging);

async fn jobs_lease_retry_and_fencing(c: Arc<dyn Catalog>) {
    let now = catalog::now_micros();
    assert!(c.enqueue("k", "a", &serde_json::json!({"n": 1}), 0, now).await.unwrap());
    assert!(!c.enqueue("k", "a", &serde_json::json!({"n": 1}), 0, now).await.unwrap(), "dedupe");
    assert!(c.enqueue("k", "b", &serde_json::json!({"n": 2}), 5, now).await.unwrap());
    assert!(c.enqueue("k", "later", &serde_json::json!({}), 9, now + 3_600_000_000).await.unwrap());
    assert_eq!(c.queue_depth().await.unwrap().queued, 3);

    // Priority first; future jobs wait.
    let j1 = c.claim(&["k"], "w1", 60_000_000).await.unwrap().unwrap();
    assert_eq!(j1.dedupe_key, "b");
    let j2 = c.claim(&["k"], "w2", 500_000).await.unwrap().unwrap();
    assert_eq!(j2.dedupe_key, "a");
    assert!(c.claim(&["k"], "w3", 60_000_000).await.unwrap().is_none());
    assert!(c.claim(&["other"], "w3", 60_000_000).await.unwrap().is_none());

    // j2's 0.5 s lease expires: another worker takes it over, and the old holder is fenced out.
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    let j2b = c.claim(&["k"], "w3", 60_000_000).await.unwrap().unwrap();
    assert_eq!(j2b.id, j2.id);
    assert_eq!(j2b.attempts, 2);
    assert!(matches!(c.complete(&j2.id, &j2.lease_token).await, Err(CatalogError::LeaseLost(_))));
    assert!(matches!(c.heartbeat(&j2.id, &j2.lease_token, 1000).await, Err(CatalogError::LeaseLost(_))));
    c.heartbeat(&j2b.id, &j2b.lease_token, 60_000_000).await.unwrap();
    c.complete(&j2b.id, &j2b.lease_token).await.unwrap();

    // Retry with backoff.
    c.retry_later(&j1.id, &j1.lease_token, "transient", catalog::now_micros() + 3_600_000_000).await.unwrap();
    assert!(c.claim(&["k"], "w1", 60_000_000).await.unwrap().is_none());
    c.retry_later(&j1.id, &j1.lease_token, "again", 0).await.expect_err("lease already given up");
    let d = c.queue_depth().await.unwrap();
    assert_eq!((d.queued, d.running), (2, 0));

    // A restarted node releases the leases it held, so its jobs resume at once.
    assert!(c.enqueue("k", "c", &serde_json::json!({}), 100, catalog::now_micros()).await.unwrap());
    let j3 = c.claim(&["k"], "w9", 3_600_000_000).await.unwrap().unwrap();
    assert_eq!(c.release_leases("w9").await.unwrap(), 1);
    let again = c.claim(&["k"], "w10", 60_000_000).await.unwrap().unwrap();
    assert_eq!(again.id, j3.id);
}
both!(jobs_lease_retry_and_fencing);

async fn principals(c: Arc<dyn Catalog>) {
    let p = Principal {
        name: "alice".into(),
        role: "supervisor".into(),
        unit: "JS/NJ".into(),
        officer: None,
        created_at: catalog::now_micros(),
        expires_at: None,
        revoked_at: None,
    };
    c.create_principal(&p, "h1").await.unwrap();
    assert!(matches!(c.create_principal(&p, "h2").await, Err(CatalogError::Conflict(_))));
    assert_eq!(c.principal_by_token("h1").await.unwrap().unwrap().name, "alice");
    assert!(c.principal_by_token("nope").await.unwrap().is_none());
    c.revoke_principal("alice").await.unwrap();
    assert!(c.principal_by_token("h1").await.unwrap().unwrap().revoked_at.is_some());
    assert!(matches!(c.revoke_principal("bob").await, Err(CatalogError::NotFound(_))));
    assert_eq!(c.principals().await.unwrap().len(), 1);
    assert_eq!(assert_chain_valid(c.as_ref()).await, 2, "created and revoked are custody events");
}
both!(principals);

/// Several catalog handles (as several nodes would have) appending at once keep one chain.
async fn concurrent_appends_keep_one_chain(c: Arc<dyn Catalog>) {
    let mut tasks = vec![];
    for t in 0..4 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..25 {
                c.append_custody("fixity_checked", &format!("node:{t}"), None, serde_json::json!({"i": i})).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(assert_chain_valid(c.as_ref()).await, 100);
}
both!(concurrent_appends_keep_one_chain);

#[tokio::test]
async fn postgres_two_pools_share_one_chain() {
    let url = pg_database().await;
    let a = catalog::open(&url, 4).await.unwrap();
    let b = catalog::open(&url, 4).await.unwrap();
    let mut tasks = vec![];
    for (n, c) in [a.clone(), b.clone(), a.clone(), b].into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            for i in 0..20 {
                c.append_custody("fixity_checked", &format!("node:{n}"), None, serde_json::json!({"i": i})).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(assert_chain_valid(a.as_ref()).await, 80);
}

#[tokio::test]
async fn unreachable_postgres_is_transient_and_named() {
    let port = crate::harness::free_port();
    let e = match catalog::open(&format!("postgres://postgres:secret@127.0.0.1:{port}/x"), 1).await {
        Err(e) => e,
        Ok(_) => panic!("connected to a closed port"),
    };
    assert!(e.is_transient(), "{e}");
    assert!(!catalog::CatalogError::Conflict("x".into()).is_transient());
}

async fn media_results_and_clips(c: Arc<dyn Catalog>) {
    let (s, _) = c.record_sighting(&sighting(b"/dock/m.mp4", 10)).await.unwrap();
    let mut rec = recording(&"b".repeat(64), &s.id);
    rec.attribution.started_at = None;
    rec.attribution.gps = None;
    c.commit_archive(&s.id, &rec, "node:n1", None).await.unwrap();
    // Archiving queued the derive job with the commit.
    let job = c.claim(&[evidenced::jobs::DERIVE], "w", 60_000_000).await.unwrap().unwrap();
    assert_eq!(job.payload["recording_id"], s.id.as_str());
    let before = c.recording(&s.id).await.unwrap();
    assert_eq!((before.media_state.as_str(), before.playable), ("pending", false));

    let proxy = catalog::ObjectRef { key: "derived/p".into(), sha256: "c".repeat(64), size: 5, content_type: "video/mp4".into() };
    let upd = catalog::MediaUpdate {
        state: "ready".into(),
        media: Some(serde_json::json!({"duration_ms": 6000, "has_video": true})),
        warning: Some("decoded 3.0 s of 6.0 s".into()),
        proxy: Some(proxy.clone()),
        started_at: Some(1_710_000_000_000_000),
        gps: Some((40.7, -74.0)),
        duration_ms: Some(6000),
        ..Default::default()
    };
    c.set_media(&s.id, &upd, "node:n1").await.unwrap();
    let r = c.recording(&s.id).await.unwrap();
    assert!(r.playable);
    assert_eq!(r.media_warning.as_deref(), Some("decoded 3.0 s of 6.0 s"));
    assert_eq!(r.proxy, Some(proxy));
    assert!(r.poster.is_none());
    assert_eq!(r.media.unwrap()["duration_ms"], 6000);
    assert_eq!(r.started_at.as_deref(), Some("2024-03-09T16:00:00.000000Z"), "container time fills the gap");
    assert_eq!(r.location.unwrap()["lat"], 40.7);
    assert_eq!(r.sort_at, 1_710_000_000_000_000);

    let clip = c
        .create_clip(&catalog::NewClip {
            recording_id: s.id.clone(),
            start_ms: 1000,
            end_ms: 3000,
            accurate: false,
            reason: "for the DA".into(),
            actor: "sup".into(),
        })
        .await
        .unwrap();
    assert_eq!(clip.state, "pending");
    let job = c.claim(&[evidenced::jobs::CLIP], "w", 60_000_000).await.unwrap().unwrap();
    assert_eq!(job.payload["clip_id"], clip.id.as_str());
    let obj = catalog::ObjectRef { key: "derived/c".into(), sha256: "d".repeat(64), size: 3, content_type: "video/mp4".into() };
    c.finish_clip(&clip.id, Ok(obj)).await.unwrap();
    let done = c.clip(&clip.id).await.unwrap();
    assert_eq!((done.state.as_str(), done.sha256.as_deref()), ("ready", Some("d".repeat(64).as_str())));
    let events = c.custody_events(Some(&s.id), 0, 100).await.unwrap();
    let clipped = events.iter().find(|e| e.body.kind == "clipped").unwrap();
    assert_eq!(clipped.body.actor, "sup");
    assert_eq!(clipped.body.details["reason"], "for the DA");
    assert_eq!(clipped.body.details["start_ms"], 1000);
    assert!(events.iter().any(|e| e.body.kind == "derived"));
    assert!(matches!(c.clip("nope").await, Err(CatalogError::NotFound(_))));
    assert_chain_valid(c.as_ref()).await;
}
both!(media_results_and_clips);

async fn custody_records(c: Arc<dyn Catalog>) {
    use evidenced::catalog::custody::subject;
    use evidenced::catalog::{Checkpoint, NodeKey, Timestamp};
    assert_eq!(c.chain_head().await.unwrap(), None);
    let key = NodeKey { key_id: "k1".into(), node: "n1".into(), public_pem: "PEM".into(), created_at: 1 };
    c.register_key(&key).await.unwrap();
    c.register_key(&key).await.unwrap();
    assert_eq!(c.node_keys().await.unwrap(), vec![key]);

    // An archive with a time-stamp request queued in the same transaction.
    let sha = "c".repeat(64);
    let (s1, _) = c.record_sighting(&sighting(b"/dock/t.mp4", 10)).await.unwrap();
    let mut rec = recording(&sha, &s1.id);
    rec.timestamp = true;
    c.commit_archive(&s1.id, &rec, "node:n1", None).await.unwrap();
    let job = c.claim(&[evidenced::jobs::TIMESTAMP], "w", 60_000_000).await.unwrap().expect("timestamp job queued with the commit");
    assert_eq!(job.payload["sha256"], sha);
    assert_eq!(job.payload["token_key"], format!("originals/n1/{}/timestamp.tsr", s1.id));
    assert!(!c.recording(&s1.id).await.unwrap().timestamped);

    let t = Timestamp {
        id: "t1".into(),
        subject: subject::RECORDING.into(),
        subject_id: s1.id.clone(),
        sha256: sha.clone(),
        token_key: "k.tsr".into(),
        token_sha256: "d".repeat(64),
        gen_time: 5,
        serial: "7".into(),
        tsa: "http://tsa".into(),
        created_at: 6,
    };
    assert!(c.record_timestamp(&t, "node:n1").await.unwrap());
    assert!(!c.record_timestamp(&Timestamp { id: "t2".into(), ..t.clone() }, "node:n1").await.unwrap(), "one token per subject");
    assert!(c.recording(&s1.id).await.unwrap().timestamped);
    assert_eq!(c.timestamps(Some(&s1.id)).await.unwrap(), vec![t]);

    let (head_seq, head_hash) = c.chain_head().await.unwrap().unwrap();
    let cp = Checkpoint {
        id: "cp1".into(),
        node: "n1".into(),
        key_id: "k1".into(),
        seq: head_seq,
        hash: head_hash,
        at: 9,
        body: "{}".into(),
        signature: "c2ln".into(),
        object_key: "checkpoints/n1/x.json".into(),
    };
    let ev = c.record_checkpoint(&cp, "node:n1").await.unwrap();
    assert_eq!(ev, head_seq + 1, "the checkpoint event follows the signed head");
    assert_eq!(c.checkpoints().await.unwrap(), vec![cp.clone()]);
    assert_eq!(c.latest_checkpoint().await.unwrap(), Some(cp));

    // Fixity: never-checked recordings first; a check moves a recording to the back.
    let (s2, _) = c.record_sighting(&sighting(b"/dock/u.mp4", 10)).await.unwrap();
    c.commit_archive(&s2.id, &recording(&"e".repeat(64), &s2.id), "node:n1", None).await.unwrap();
    assert_eq!(c.fixity_population().await.unwrap(), 2);
    let first = c.fixity_due(1).await.unwrap()[0].clone();
    c.record_fixity(&first, true, serde_json::json!({"objects": []}), "node:n1").await.unwrap();
    let next = c.fixity_due(2).await.unwrap();
    assert_eq!(next.len(), 2);
    assert_ne!(next[0], first);
    assert_eq!(next[1], first);
    assert!(matches!(c.record_fixity("nope", true, serde_json::json!({}), "x").await, Err(CatalogError::NotFound(_))));
    let kinds: Vec<String> = c.custody_events(Some(&first), 0, 100).await.unwrap().into_iter().map(|e| e.body.kind).collect();
    assert!(kinds.contains(&"fixity_checked".to_string()), "{kinds:?}");
    assert!(c.clips_of(&s1.id).await.unwrap().is_empty());
    assert_chain_valid(c.as_ref()).await;
}
both!(custody_records);
