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
    c.create_principal(&p, "h1", "cli").await.unwrap();
    assert!(matches!(c.create_principal(&p, "h2", "root").await, Err(CatalogError::Conflict(_))));
    assert_eq!(c.principal_by_token("h1").await.unwrap().unwrap().name, "alice");
    assert!(c.principal_by_token("nope").await.unwrap().is_none());
    c.revoke_principal("alice", "root").await.unwrap();
    assert!(c.principal_by_token("h1").await.unwrap().unwrap().revoked_at.is_some());
    assert!(matches!(c.revoke_principal("bob", "root").await, Err(CatalogError::NotFound(_))));
    assert_eq!(c.principals().await.unwrap().len(), 1);
    assert_eq!(assert_chain_valid(c.as_ref()).await, 2, "created and revoked are custody events");
    // Each event names who acted: the CLI created alice, the admin "root" revoked her; revoking
    // her again changes nothing and logs nothing.
    c.revoke_principal("alice", "root").await.unwrap();
    let events = c.custody_events(None, 0, 100).await.unwrap();
    let seen: Vec<(&str, &str, &str)> =
        events.iter().map(|e| (e.body.kind.as_str(), e.body.actor.as_str(), e.body.details["action"].as_str().unwrap_or(""))).collect();
    assert_eq!(seen, [("principal", "cli", "created"), ("principal", "root", "revoked")]);
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
    // Fenced: a late second derivation (a worker that lost its lease) is refused, changes nothing.
    let late = catalog::MediaUpdate { state: "failed".into(), error: Some("late".into()), ..Default::default() };
    assert!(matches!(c.set_media(&s.id, &late, "node:n2").await, Err(catalog::CatalogError::Refused(_))));
    assert!(c.recording(&s.id).await.unwrap().playable);

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

async fn cases(c: Arc<dyn Catalog>) {
    use evidenced::catalog::{CaseUpdate, NewCase};
    let ids_of = |case: &str| {
        let (c, f) = (c.clone(), RecordingFilter { case: Some(case.into()), limit: 100, ..Default::default() });
        async move { c.list_recordings(&f).await.unwrap().into_iter().map(|r| r.id).collect::<Vec<_>>() }
    };
    // A sidecar naming C-7 creates the case (open, by the archiving actor) and the link, in the commit.
    let (s1, _) = c.record_sighting(&sighting(b"/dock/k1.mp4", 10)).await.unwrap();
    let mut r1 = recording(&"1".repeat(64), &s1.id);
    r1.attribution.case_ids = vec!["C-7".into()];
    c.commit_archive(&s1.id, &r1, "node:n1", None).await.unwrap();
    let c7 = c.case("C-7").await.unwrap();
    assert_eq!((c7.status.as_str(), c7.created_by.as_str(), c7.recordings, c7.closed_at.as_deref()), ("open", "node:n1", 1, None));
    assert_eq!(c.recording(&s1.id).await.unwrap().cases, ["C-7"]);
    assert_eq!(ids_of("C-7").await, [s1.id.as_str()]);
    let (s2, _) = c.record_sighting(&sighting(b"/dock/k2.mp4", 11)).await.unwrap();
    c.commit_archive(&s2.id, &recording(&"2".repeat(64), &s2.id), "node:n1", None).await.unwrap();

    // Create; a taken id is a conflict.
    let new = NewCase { id: "C-1".into(), title: "Burglary".into(), unit: "JS/NJ".into() };
    let k = c.create_case(&new, "sup").await.unwrap();
    assert_eq!((k.id.as_str(), k.title.as_str(), k.unit.as_str(), k.status.as_str()), ("C-1", "Burglary", "JS/NJ", "open"));
    assert_eq!((k.created_by.as_str(), k.recordings, k.closed_at.as_deref()), ("sup", 0, None));
    assert!(k.created_at.ends_with('Z'), "RFC 3339: {}", k.created_at);
    assert_eq!(c.case("C-1").await.unwrap(), k);
    assert!(matches!(c.create_case(&new, "sup").await, Err(CatalogError::Conflict(_))));
    assert!(matches!(c.create_case(&NewCase { id: "C-7".into(), ..Default::default() }, "sup").await, Err(CatalogError::Conflict(_))));
    c.create_case(&NewCase { id: "C-10".into(), ..Default::default() }, "sup").await.unwrap();

    // Closing sets closed_at, closing again keeps it, reopening clears it.
    let close = CaseUpdate { status: Some("closed".into()), ..Default::default() };
    let closed = c.update_case("C-1", &close, "arch").await.unwrap();
    assert_eq!(closed.status, "closed");
    let closed_at = closed.closed_at.clone().expect("closed_at set");
    assert_eq!(c.case("C-1").await.unwrap(), closed);
    assert_eq!(c.update_case("C-1", &close, "arch").await.unwrap().closed_at.as_deref(), Some(closed_at.as_str()));
    let reopen = CaseUpdate { status: Some("open".into()), title: Some("Burglary, 3 suspects".into()) };
    let open = c.update_case("C-1", &reopen, "arch").await.unwrap();
    assert_eq!((open.status.as_str(), open.closed_at, open.title.as_str()), ("open", None, "Burglary, 3 suspects"));
    assert_eq!(c.case("C-1").await.unwrap().closed_at, None);
    assert!(matches!(c.update_case("nope", &close, "arch").await, Err(CatalogError::NotFound(_))));
    c.update_case("C-10", &close, "arch").await.unwrap();

    // Listing: by id, by status, paged after an id.
    let ids = |v: Vec<evidenced::catalog::Case>| v.into_iter().map(|k| k.id).collect::<Vec<_>>();
    assert_eq!(ids(c.cases(None, 10, None).await.unwrap()), ["C-1", "C-10", "C-7"]);
    assert_eq!(ids(c.cases(None, 2, None).await.unwrap()), ["C-1", "C-10"]);
    assert_eq!(ids(c.cases(None, 2, Some("C-10")).await.unwrap()), ["C-7"]);
    assert_eq!(ids(c.cases(Some("closed"), 10, None).await.unwrap()), ["C-10"]);
    assert_eq!(ids(c.cases(Some("open"), 10, None).await.unwrap()), ["C-1", "C-7"]);

    // Link: idempotent; case_ids on the recording follow, sorted; the filter is exact.
    assert!(c.link("C-1", &s1.id, "sup", Some("seen in the report")).await.unwrap());
    assert!(!c.link("C-1", &s1.id, "sup", None).await.unwrap(), "already linked");
    assert!(c.link("C-10", &s2.id, "sup", None).await.unwrap());
    assert_eq!(c.recording(&s1.id).await.unwrap().cases, ["C-1", "C-7"]);
    assert_eq!(c.recording(&s2.id).await.unwrap().cases, ["C-10"]);
    assert_eq!(c.case("C-1").await.unwrap().recordings, 1);
    assert_eq!(ids_of("C-1").await, [s1.id.as_str()], "C-1 must not match C-10");
    assert_eq!(ids_of("C-10").await, [s2.id.as_str()]);
    assert!(ids_of("C").await.is_empty());

    // Unlink: idempotent too.
    assert!(c.unlink("C-1", &s1.id, "arch", Some("wrong case")).await.unwrap());
    assert!(!c.unlink("C-1", &s1.id, "arch", None).await.unwrap(), "not linked any more");
    assert_eq!(c.recording(&s1.id).await.unwrap().cases, ["C-7"]);
    assert!(ids_of("C-1").await.is_empty());
    assert_eq!(c.case("C-1").await.unwrap().recordings, 0);

    // Unknown ids: NotFound, and nothing is created on the way.
    assert!(matches!(c.case("nope").await, Err(CatalogError::NotFound(_))));
    assert!(matches!(c.link("nope", &s1.id, "sup", None).await, Err(CatalogError::NotFound(_))));
    assert!(matches!(c.link("C-1", "nope", "sup", None).await, Err(CatalogError::NotFound(_))));
    assert!(matches!(c.unlink("nope", &s1.id, "sup", None).await, Err(CatalogError::NotFound(_))));
    assert!(matches!(c.unlink("C-1", "nope", "sup", None).await, Err(CatalogError::NotFound(_))));
    assert!(matches!(c.case("nope").await, Err(CatalogError::NotFound(_))));
    assert_eq!(c.cases(None, 10, None).await.unwrap().len(), 3);

    // Custody: one event per change (none for the idempotent repeats), attributed, in one chain.
    let events = c.custody_events(Some(&s1.id), 0, 100).await.unwrap();
    let kinds: Vec<&str> = events.iter().map(|e| e.body.kind.as_str()).collect();
    assert_eq!(kinds, ["archived", "linked", "unlinked"]);
    let (linked, unlinked) = (&events[1].body, &events[2].body);
    assert_eq!((linked.actor.as_str(), linked.recording_id.as_deref()), ("sup", Some(s1.id.as_str())));
    assert_eq!(linked.details, serde_json::json!({"case": "C-1", "reason": "seen in the report", "cases": ["C-1", "C-7"]}));
    assert_eq!(unlinked.actor, "arch");
    assert_eq!(unlinked.details, serde_json::json!({"case": "C-1", "reason": "wrong case", "cases": ["C-7"]}));
    let all = c.custody_events(None, 0, 1000).await.unwrap();
    let of = |k: &str| all.iter().filter(|e| e.body.kind == k).collect::<Vec<_>>();
    assert_eq!(of(custody::kind::CASE_CREATED).len(), 2, "C-1 and C-10 (C-7 came with its archived event)");
    assert_eq!(of(custody::kind::CASE_UPDATED).len(), 3, "close, reopen, close C-10; the repeated close changed nothing");
    assert!(of(custody::kind::CASE_CREATED).iter().chain(of(custody::kind::CASE_UPDATED).iter()).all(|e| e.body.recording_id.is_none()));
    assert_eq!(of(custody::kind::CASE_UPDATED)[1].body.details["changes"]["status"], serde_json::json!({"from": "closed", "to": "open"}));
    assert_chain_valid(c.as_ref()).await;
}
both!(cases);

async fn recording_updates(c: Arc<dyn Catalog>) {
    use evidenced::catalog::AttributionFix;
    let (s, _) = c.record_sighting(&sighting(b"/dock/r.mp4", 10)).await.unwrap();
    let mut rec = recording(&"f".repeat(64), &s.id);
    rec.attribution.officer = None;
    rec.attribution.needs_review = true;
    c.commit_archive(&s.id, &rec, "node:n1", None).await.unwrap();

    // Attribution correction: old and new values are logged, the review flag cleared.
    let fix = AttributionFix {
        officer: Some("P77".into()),
        started_at: Some(1_720_000_000_000_000),
        needs_review: Some(false),
        reason: Some("sidecar was missing".into()),
        ..Default::default()
    };
    let r = c.correct_attribution(&s.id, &fix, "sup1").await.unwrap();
    assert_eq!(r.officer.as_deref(), Some("P77"));
    assert_eq!(r.device.as_deref(), Some("BWC1"), "fields not given stay");
    assert!(!r.needs_review);
    assert_eq!(r.started_at.as_deref(), Some("2024-07-03T09:46:40.000000Z"));
    let f = RecordingFilter { officer: Some("P77".into()), limit: 10, ..Default::default() };
    assert_eq!(c.list_recordings(&f).await.unwrap().len(), 1, "search sees the correction");

    let r = c.set_classification(&s.id, "privacy", "minor visible", "sup1").await.unwrap();
    assert_eq!(r.classification, "privacy");
    let r = c.set_category(&s.id, Some("evidence"), Some("case K-1"), "arch1").await.unwrap();
    assert_eq!(r.category, "evidence");
    let r = c.set_category(&s.id, None, None, "arch1").await.unwrap();
    assert_eq!(r.category, "uncategorized");
    assert!(c.place_hold(&s.id, "litigation", "arch1").await.unwrap().legal_hold);
    assert!(!c.lift_hold(&s.id, Some("settled"), "arch1").await.unwrap().legal_hold);
    // Lifting again changes nothing and logs nothing.
    c.lift_hold(&s.id, None, "arch1").await.unwrap();
    assert!(matches!(c.place_hold("nope", "x", "a").await, Err(CatalogError::NotFound(_))));

    let events = c.custody_events(Some(&s.id), 0, 100).await.unwrap();
    let kinds: Vec<&str> = events.iter().map(|e| e.body.kind.as_str()).collect();
    assert_eq!(kinds, ["archived", "attributed", "classified", "categorised", "categorised", "held", "hold_released"]);
    let attributed = &events[1].body;
    assert_eq!(attributed.actor, "sup1");
    assert_eq!(attributed.details["old"]["officer"], serde_json::Value::Null);
    assert_eq!(attributed.details["new"]["officer"], "P77");
    assert_eq!(events[2].body.details["old"], "normal");
    assert_chain_valid(c.as_ref()).await;
}
both!(recording_updates);

async fn retention_queue(c: Arc<dyn Catalog>) {
    use evidenced::catalog::NewCase;
    let hour = 3_600_000_000i64;
    let mut ids = vec![];
    for (i, sha) in ["1", "2", "3", "4", "5"].iter().enumerate() {
        let (s, _) = c.record_sighting(&sighting(format!("/dock/q{i}.mp4").as_bytes(), 10)).await.unwrap();
        c.commit_archive(&s.id, &recording(&sha.repeat(64), &s.id), "node:n1", None).await.unwrap();
        ids.push(s.id);
    }
    let now = catalog::now_micros();
    // Started in 2024 but archived now: the clock starts at archiving, so a 184-day rule finds
    // nothing yet (backfilled footage does not expire on arrival) ...
    assert!(c.expired("uncategorized", false, now - 184 * 24 * hour, "", 100).await.unwrap().is_empty());
    // ... while a rule that has run out finds every recording not held.
    c.place_hold(&ids[1], "litigation", "arch1").await.unwrap();
    c.create_case(&NewCase { id: "K-open".into(), title: String::new(), unit: String::new() }, "sup").await.unwrap();
    c.link("K-open", &ids[2], "sup", None).await.unwrap();
    assert_eq!(c.recording(&ids[2]).await.unwrap().category, "evidence", "case footage becomes evidence");
    c.set_category(&ids[3], Some("evidence"), None, "arch1").await.unwrap();
    // An archivist's explicit category is not overridden by a link, and unlinking shortens nothing.
    c.set_category(&ids[4], Some("traffic"), None, "arch1").await.unwrap();
    c.link("K-open", &ids[4], "sup", None).await.unwrap();
    assert_eq!(c.recording(&ids[4]).await.unwrap().category, "traffic");
    c.unlink("K-open", &ids[4], "sup", None).await.unwrap();
    c.set_category(&ids[4], None, None, "arch1").await.unwrap();
    c.unlink("K-open", &ids[2], "sup", None).await.unwrap();
    assert_eq!(c.recording(&ids[2]).await.unwrap().category, "evidence", "unlinking does not shorten retention");
    c.link("K-open", &ids[2], "sup", None).await.unwrap();
    let found: Vec<String> = c.expired("uncategorized", false, now + hour, "", 100).await.unwrap().into_iter().map(|e| e.id).collect();
    let mut want = vec![ids[0].clone(), ids[4].clone()];
    want.sort();
    assert_eq!(found, want, "held, open-case and other-category recordings are not expired");
    assert!(c.expired("uncategorized", false, now + hour, &want[0], 100).await.unwrap().len() == 1, "paging by id");

    // Queue, approvals by distinct archivists, destruction.
    let d = c.queue_destruction(&ids[0], "uncategorized: 1s", now, 0, "node:n1").await.unwrap().unwrap();
    assert!(c.queue_destruction(&ids[0], "uncategorized: 1s", now, 0, "node:n1").await.unwrap().is_none(), "queued once");
    assert!(
        c.queue_destruction(&ids[1], "uncategorized: 1s", now, 0, "node:n1").await.unwrap().is_none(),
        "a held recording is never queued"
    );
    assert_eq!(c.recording(&ids[0]).await.unwrap().state, "pending_destruction");
    assert!(c.due_destructions(catalog::now_micros(), 1).await.unwrap().is_empty(), "not approved yet");
    c.approve_destruction(&d.id, "arch1", "expired").await.unwrap();
    assert!(matches!(c.approve_destruction(&d.id, "arch1", "again").await, Err(CatalogError::Refused(_))), "same archivist twice");
    let d2 = c.approve_destruction(&d.id, "arch2", "agreed").await.unwrap();
    assert_eq!(d2.approvals.as_array().unwrap().len(), 2);
    assert!(c.due_destructions(catalog::now_micros(), 3).await.unwrap().is_empty());
    assert_eq!(c.due_destructions(catalog::now_micros(), 2).await.unwrap()[0].id, d.id);
    let versions = serde_json::json!({"originals/n1/x/original": ["v1", "v2"]});
    c.finish_destruction(&d.id, &["originals/n1/x/original".to_string()], &versions, "batch-1", "node:n1").await.unwrap();
    assert_eq!(c.destruction(&d.id).await.unwrap().versions, versions, "the tombstone keeps the deleted version ids");
    let tomb = c.recording(&ids[0]).await.unwrap();
    assert_eq!(
        (tomb.state.as_str(), tomb.sha256.as_str(), tomb.size),
        ("destroyed", &*"1".repeat(64), 10),
        "the tombstone keeps hash and size"
    );
    assert_eq!(c.destruction(&d.id).await.unwrap().state, "destroyed");
    assert!(matches!(c.approve_destruction(&d.id, "arch3", "late").await, Err(CatalogError::Refused(_))));

    // Cancel: back to archived.
    let e = c.queue_destruction(&ids[4], "uncategorized: 1s", now, 0, "node:n1").await.unwrap().unwrap();
    c.cancel_destruction(&e.id, "hold placed", "node:n1").await.unwrap();
    assert_eq!(c.recording(&ids[4]).await.unwrap().state, "archived");
    assert_eq!(c.destructions(Some("cancelled"), 10).await.unwrap().len(), 1);

    let kinds: Vec<String> = c.custody_events(Some(&ids[0]), 0, 100).await.unwrap().into_iter().map(|e| e.body.kind).collect();
    assert_eq!(kinds, ["archived", "queued_for_destruction", "destruction_approved", "destruction_approved", "destroyed"]);
    assert_chain_valid(c.as_ref()).await;
}
both!(retention_queue);

async fn annual_report(c: Arc<dyn Catalog>) {
    use chrono::Datelike;
    use evidenced::catalog::{AnnualReport, report};
    // u1/uncategorized: r1 (1 h, 10 B) and r2 (30 min, 20 B); u1/evidence: r3 (no duration);
    // u2/uncategorized: r4; no unit/uncategorized: r5, which is destroyed.
    let spec = [
        ("a", Some("U1"), "uncategorized", Some(3_600_000i64), 10i64),
        ("b", Some("U1"), "uncategorized", Some(1_800_000), 20),
        ("c", Some("U1"), "evidence", None, 30),
        ("d", Some("U2"), "uncategorized", Some(900_000), 40),
        ("e", None, "uncategorized", None, 50),
    ];
    let mut ids = vec![];
    for (i, (sha, unit, category, ms, size)) in spec.iter().enumerate() {
        let (s, _) = c.record_sighting(&sighting(format!("/dock/y{i}.mp4").as_bytes(), *size)).await.unwrap();
        let mut rec = recording(&sha.repeat(64), &s.id);
        rec.attribution.unit = unit.map(Into::into);
        rec.attribution.category = Some(category.to_string());
        rec.attribution.duration_ms = *ms;
        rec.size = *size;
        c.commit_archive(&s.id, &rec, "node:n1", None).await.unwrap();
        ids.push(s.id);
    }
    // Accesses: two views and a download of r1, one view of r4; an event about no recording is
    // not counted, nor are kinds the report does not count.
    for (kind, i) in [("accessed", 0), ("accessed", 0), ("downloaded", 0), ("accessed", 3)] {
        c.append_custody(kind, "sup", Some(&ids[i]), serde_json::json!({})).await.unwrap();
    }
    c.append_custody("accessed", "sup", None, serde_json::json!({})).await.unwrap();
    c.append_custody("linked", "sup", Some(&ids[0]), serde_json::json!({})).await.unwrap();
    c.append_custody("exported", "cli", Some(&ids[2]), serde_json::json!({})).await.unwrap();
    c.place_hold(&ids[1], "court order", "arch1").await.unwrap();
    let clip = catalog::NewClip {
        recording_id: ids[0].clone(),
        start_ms: 0,
        end_ms: 1000,
        accurate: false,
        reason: "court".into(),
        actor: "sup".into(),
    };
    c.create_clip(&clip).await.unwrap();
    // r5 is destroyed in batch "b-1".
    let d = c.queue_destruction(&ids[4], "uncategorized: 1s", catalog::now_micros(), 0, "node:n1").await.unwrap().unwrap();
    c.approve_destruction(&d.id, "arch1", "expired").await.unwrap();
    c.finish_destruction(&d.id, &["originals/n1/e/original".to_string()], &serde_json::json!({}), "b-1", "node:n1").await.unwrap();

    let year = chrono::Utc::now().year();
    let r = AnnualReport::build(c.as_ref(), year).await.unwrap();
    let got: Vec<(&str, &str, [i64; 8])> = r
        .rows
        .iter()
        .map(|r| {
            let n = &r.counts;
            (
                r.unit.as_str(),
                r.category.as_str(),
                [n.recordings, n.duration_ms, n.bytes, n.accesses, n.clips, n.exports, n.holds, n.destructions],
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("", "uncategorized", [1, 0, 50, 0, 0, 0, 0, 1]),
            ("U1", "evidence", [1, 0, 30, 0, 0, 1, 0, 0]),
            ("U1", "uncategorized", [2, 5_400_000, 30, 3, 1, 0, 1, 0]),
            ("U2", "uncategorized", [1, 900_000, 40, 1, 0, 0, 0, 0]),
        ]
    );
    assert!((r.rows[2].counts.hours - 1.5).abs() < 1e-9, "{}", r.rows[2].counts.hours);
    let t = &r.total;
    assert_eq!([t.recordings, t.bytes, t.accesses, t.clips, t.exports, t.holds, t.destructions], [5, 150, 4, 1, 1, 1, 1]);
    assert!((t.hours - 1.75).abs() < 1e-9);
    let csv = r.to_csv();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], report::CSV_HEADER);
    assert_eq!(lines[1], "(none),uncategorized,1,0.000,50,0,0,0,0,1");
    assert_eq!(lines[3], "U1,uncategorized,2,1.500,30,3,1,0,1,0");
    assert_eq!(lines[5], "TOTAL,,5,1.750,150,4,1,1,1,1");
    let j = serde_json::to_value(&r).unwrap();
    assert_eq!(
        (j["year"].as_i64(), j["rows"][0]["unit"].as_str(), j["total"]["destructions"].as_i64()),
        (Some(year as i64), Some("(none)"), Some(1))
    );
    // Nothing was archived or done the year before.
    let prev = AnnualReport::build(c.as_ref(), year - 1).await.unwrap();
    assert!(prev.rows.is_empty() && prev.total == Default::default(), "{prev:?}");

    // The batch and its certificate facts.
    let batches = c.destruction_batches(10).await.unwrap();
    assert_eq!((batches.len(), batches[0].batch.as_str(), batches[0].count), (1, "b-1", 1));
    let items = c.destruction_batch("b-1").await.unwrap();
    assert_eq!(items.len(), 1);
    let it = &items[0];
    assert_eq!(
        (it.destruction.recording_id.as_str(), it.sha256.as_str(), it.size, it.unit.as_deref(), it.category.as_str()),
        (ids[4].as_str(), &*"e".repeat(64), 50, None, "uncategorized")
    );
    assert_eq!((it.destruction.batch.as_deref(), it.destroyed_by.as_deref()), (Some("b-1"), Some("node:n1")));
    assert_eq!(it.destruction.approvals[0]["archivist"], "arch1");
    assert_eq!(it.destruction.objects[0], "originals/n1/e/original");
    assert_eq!(it.started_at.as_deref(), Some("2024-03-09T16:00:00.000000Z"));
    assert!(c.destruction_batch("nope").await.unwrap().is_empty());
    assert_chain_valid(c.as_ref()).await;
}
both!(annual_report);

async fn case_driven_retention(c: Arc<dyn Catalog>) {
    use evidenced::catalog::{CaseUpdate, NewCase};
    let (s, _) = c.record_sighting(&sighting(b"/dock/cd.mp4", 10)).await.unwrap();
    let mut rec = recording(&"9".repeat(64), &s.id);
    rec.attribution.category = Some("case_5y".into());
    c.commit_archive(&s.id, &rec, "node:n1", None).await.unwrap();
    c.create_case(&NewCase { id: "K-cd".into(), title: String::new(), unit: String::new() }, "sup").await.unwrap();
    c.link("K-cd", &s.id, "sup", None).await.unwrap();
    let after_archive = catalog::now_micros();
    // While the case is open the recording is held, whatever the clock says.
    assert!(c.expired("case_5y", true, after_archive + 3_600_000_000, "", 10).await.unwrap().is_empty());
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let between = catalog::now_micros();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    c.update_case("K-cd", &CaseUpdate { status: Some("closed".into()), title: None }, "sup").await.unwrap();
    // Archived before `between`, closed after it: the case-driven clock has not passed it yet ...
    assert!(c.expired("case_5y", true, between, "", 10).await.unwrap().is_empty(), "the clock starts at the closing");
    // ... the ordinary clock has, and a cutoff after the closing finds it with the closing as its start.
    assert_eq!(c.expired("case_5y", false, between, "", 10).await.unwrap().len(), 1);
    let e = c.expired("case_5y", true, catalog::now_micros() + 1, "", 10).await.unwrap();
    assert_eq!(e.len(), 1);
    assert!(e[0].retention_from > between, "{} <= {between}", e[0].retention_from);
}
both!(case_driven_retention);

/// `rebuild`'s replay: a blank catalog takes another's chain verbatim and projects the same
/// recording; it refuses entries that do not follow its head, and is no longer blank after.
async fn replay_restores_the_chain_and_the_rows(c: Arc<dyn Catalog>) {
    let (source, _dir) = sqlite().await;
    let sha = "b".repeat(64);
    let (s, _) = source.record_sighting(&sighting(b"/dock/r.mp4", 10)).await.unwrap();
    source.commit_archive(&s.id, &recording(&sha, &s.id), "node:n1", None).await.unwrap();
    source.set_classification(&s.id, "privacy", "a minor", "sup").await.unwrap();
    let entries: Vec<custody::segments::StoredEntry> = source
        .custody_events(None, 0, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| custody::segments::StoredEntry { body: e.body, hash: e.hash })
        .collect();

    assert!(c.is_blank().await.unwrap());
    // Not from the start of the chain: refused, nothing written.
    let err = c.restore_entries(&entries[1..]).await.unwrap_err();
    assert!(matches!(err, CatalogError::Refused(_)), "{err}");
    assert!(c.is_blank().await.unwrap());
    c.restore_entries(&entries[..1]).await.unwrap();
    c.restore_entries(&entries[1..]).await.unwrap();
    assert!(!c.is_blank().await.unwrap());
    assert_eq!(c.chain_head().await.unwrap(), source.chain_head().await.unwrap());
    let (a, b) = (c.recording(&s.id).await.unwrap(), source.recording(&s.id).await.unwrap());
    assert_eq!(serde_json::to_value(&a).unwrap(), {
        let mut v = serde_json::to_value(&b).unwrap();
        v["sightings"] = serde_json::json!([]);
        v
    });
    assert_eq!(a.classification, "privacy");
    // The same entries again do not follow the head any more.
    assert!(matches!(c.restore_entries(&entries[..1]).await.unwrap_err(), CatalogError::Refused(_)));
    assert_chain_valid(c.as_ref()).await;
}
both!(replay_restores_the_chain_and_the_rows);
