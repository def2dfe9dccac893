//! `evidenced rebuild`: restores a lost catalog from the object store alone.
//!
//! The store holds the custody log as segments (`custody/`, written before every checkpoint), the
//! signed checkpoints (`checkpoints/`) and the node keys (`keys/`). Rebuild reads every segment,
//! assembles one chain from entry 1 (each entry's hash recomputed, overlaps identical, no gap),
//! checks every checkpoint's signature against its key and its hash against the chain, then
//! replays the chain into an empty catalog (`catalog::rebuild`), restores the checkpoints and keys,
//! and queues the media derivations the log shows unfinished (and the time-stamps, with a TSA).
//! It refuses a catalog that is not empty, and never writes to the store.
//!
//! What it cannot restore is said in its report: entries appended after the newest copy (the
//! window is at most `custody.checkpoint_interval`; a clean stop copies everything), principals
//! and their tokens, sessions and dock sightings.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use base64::Engine;
use serde::Serialize;

use crate::catalog::{Catalog, Checkpoint, NodeKey};
use crate::config::Config;
use crate::custody::checkpoint::Stored;
use crate::custody::segments::{self, StoredEntry};
use crate::store::ObjectStore;

/// Entries replayed per catalog transaction.
const BATCH: usize = 1_000;

/// What a rebuild found and did.
#[derive(Debug, Default, Serialize)]
pub struct RebuildReport {
    /// Segments read from the store.
    pub segments: usize,
    /// Entries restored (the chain length).
    pub entries: i64,
    /// Hash of the last restored entry.
    pub head_hash: Option<String>,
    /// Time of the last restored entry (RFC 3339): anything after it was never copied.
    pub head_at: Option<String>,
    /// Recordings restored (destroyed ones included, as tombstones).
    pub recordings: i64,
    /// Cases restored.
    pub cases: i64,
    /// Checkpoints restored (signature and hash checked).
    pub checkpoints: usize,
    /// Node keys restored.
    pub keys: usize,
    /// Media derivations queued (the log shows none finished).
    pub derive_queued: usize,
    /// Time-stamp requests queued (a TSA is configured and the log shows none obtained).
    pub timestamps_queued: usize,
    /// Checkpoints that could not be restored, and why (bad signature, unknown key, a hash the
    /// chain does not have). Any of these makes the exit status 1.
    pub discrepancies: Vec<String>,
}

/// Replays the store's copy of the custody log into `catalog`, which must be empty.
pub async fn rebuild(cfg: &Config, catalog: &Arc<dyn Catalog>, store: &Arc<dyn ObjectStore>) -> anyhow::Result<RebuildReport> {
    anyhow::ensure!(
        catalog.is_blank().await?,
        "the catalog at {} is not empty: rebuild writes only into an empty catalog (catalog.url in {})",
        crate::catalog::redact(&cfg.catalog.url),
        cfg.source
    );
    let mut report = RebuildReport::default();
    let segs = segments::read_all(store).await.with_context(|| format!("reading custody segments from {}", store.describe()))?;
    report.segments = segs.len();
    anyhow::ensure!(!segs.is_empty(), "{} holds no custody segments under {}: nothing to rebuild from", store.describe(), segments::PREFIX);
    let chain = segments::assemble(segs)?;
    let (checkpoints, keys, mut bad) = load_checkpoints(store, &chain).await?;
    for batch in chain.chunks(BATCH) {
        catalog.restore_entries(batch).await?;
    }
    report.entries = chain.len() as i64;
    report.head_hash = chain.last().map(|e| e.hash.clone());
    report.head_at = chain.last().map(|e| e.body.at.clone());
    for k in keys.values() {
        catalog.register_key(k).await?;
    }
    report.keys = keys.len();
    for c in &checkpoints {
        catalog.restore_checkpoint(c).await?;
    }
    report.checkpoints = checkpoints.len();
    report.discrepancies.append(&mut bad);
    queue_unfinished(cfg, catalog.as_ref(), &chain, &mut report).await?;
    report.cases = catalog.cases(None, i64::from(i32::MAX), None).await?.len() as i64;
    Ok(report)
}

/// Every checkpoint in the store whose signature verifies with a published key and whose hash is
/// the chain's at its sequence number; the keys that signed them; and what was wrong with the rest.
async fn load_checkpoints(
    store: &Arc<dyn ObjectStore>,
    chain: &[StoredEntry],
) -> anyhow::Result<(Vec<Checkpoint>, BTreeMap<String, NodeKey>, Vec<String>)> {
    let pems = crate::custody::checkpoint::published_keys(store.as_ref()).await?;
    let (stored, unreadable) = crate::custody::checkpoint::read_stored(store.as_ref()).await?;
    let (mut good, mut keys) = (Vec::new(), BTreeMap::new());
    let mut bad: Vec<String> = unreadable.into_iter().map(|(key, why)| format!("{key}: {why}")).collect();
    for Stored { key, body, text, sig } in stored {
        let Some(pem) = pems.get(&body.key_id) else {
            bad.push(format!("{key}: signed by key {} that the store does not publish", body.key_id));
            continue;
        };
        if let Err(e) = crate::custody::keys::verify(pem, &text, &sig) {
            bad.push(format!("{key}: signature does not verify ({e})"));
            continue;
        }
        let Some(entry) = usize::try_from(body.seq - 1).ok().and_then(|i| chain.get(i)) else {
            bad.push(format!("{key}: signs entry {} but the store's copy of the chain ends at {}", body.seq, chain.len()));
            continue;
        };
        if entry.hash != body.hash {
            bad.push(format!("{key}: signs hash {} for entry {}, the chain has {}", body.hash, body.seq, entry.hash));
            continue;
        }
        keys.entry(body.key_id.clone()).or_insert_with(|| NodeKey {
            key_id: body.key_id.clone(),
            node: body.node.clone(),
            public_pem: pem.clone(),
            created_at: crate::custody::parse_at(&body.at).unwrap_or(0),
        });
        good.push(Checkpoint {
            id: body.id.clone(),
            node: body.node.clone(),
            key_id: body.key_id.clone(),
            seq: body.seq,
            hash: body.hash.clone(),
            at: crate::custody::parse_at(&body.at).unwrap_or(0),
            body: String::from_utf8_lossy(&text).into_owned(),
            signature: base64::engine::general_purpose::STANDARD.encode(&sig),
            object_key: key,
        });
    }
    Ok((good, keys, bad))
}

/// Queues the derivations (and, with a TSA, the time-stamps) the log shows unfinished.
async fn queue_unfinished(cfg: &Config, catalog: &dyn Catalog, chain: &[StoredEntry], report: &mut RebuildReport) -> anyhow::Result<()> {
    use crate::custody::kind;
    let now = crate::catalog::now_micros();
    let mut archived = BTreeMap::new();
    let mut derived = std::collections::BTreeSet::new();
    let mut stamped = std::collections::BTreeSet::new();
    for e in chain {
        let Some(id) = e.body.recording_id.clone() else { continue };
        match e.body.kind.as_str() {
            kind::ARCHIVED => {
                archived.insert(id, e.body.details.clone());
            }
            kind::DERIVED | kind::DESTROYED | kind::QUEUED_FOR_DESTRUCTION => {
                derived.insert(id.clone());
                if e.body.kind != kind::DERIVED {
                    stamped.insert(id);
                }
            }
            kind::TIMESTAMPED => {
                stamped.insert(id);
            }
            _ => {}
        }
    }
    report.recordings = archived.len() as i64;
    for (id, d) in &archived {
        if !derived.contains(id) {
            let payload = serde_json::json!({"recording_id": id});
            if catalog.enqueue(crate::jobs::DERIVE, id, &payload, now / 1_000_000, now).await? {
                report.derive_queued += 1;
            }
        }
        if cfg.tsa.is_some() && !stamped.contains(id) {
            let (sha, key) = (d["sha256"].as_str().unwrap_or_default(), d["object_key"].as_str().unwrap_or_default());
            let token_key = crate::custody::stamper::recording_token_key(key);
            let payload = crate::custody::stamper::payload(crate::catalog::custody::subject::RECORDING, id, sha, &token_key);
            if catalog.enqueue(crate::jobs::TIMESTAMP, &format!("recording:{id}"), &payload, now / 1_000_000, now).await? {
                report.timestamps_queued += 1;
            }
        }
    }
    Ok(())
}

/// `evidenced rebuild`: exit 0 restored cleanly, 1 restored with discrepancies, 2 could not run.
pub async fn rebuild_cmd(cfg: &Config, json: bool) -> anyhow::Result<ExitCode> {
    let catalog = crate::app::open_catalog(cfg).await?;
    let store = crate::app::open_store(cfg).await?;
    let r = rebuild(cfg, &catalog, &store).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        println!(
            "restored {} custody entries from {} segments (head {} at {}), {} recordings, {} cases, {} checkpoints, {} keys",
            r.entries,
            r.segments,
            r.head_hash.as_deref().unwrap_or("-"),
            r.head_at.as_deref().unwrap_or("-"),
            r.recordings,
            r.cases,
            r.checkpoints,
            r.keys
        );
        println!("queued {} media derivations and {} time-stamp requests", r.derive_queued, r.timestamps_queued);
        println!(
            "not restored (never in the log): principals and their tokens (create them again with `evidenced token create`), sessions, dock sightings"
        );
        for d in &r.discrepancies {
            println!("DISCREPANCY {d}");
        }
    }
    Ok(if r.discrepancies.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
