//! `evidenced verify`: proves, without trusting the server's word, that nothing was altered.
//! It re-walks the custody chain with the public hash rule (sequence gaps, broken links,
//! recomputed hashes, non-canonical rows), checks every signed checkpoint (signature with the
//! node key it names; the chain still reaches the signed entry with the signed hash), checks
//! every time-stamp token (the bytes recorded in the chain; imprint, signature and chain to the
//! TSA CA), compares the store's copy of the log (`custody/` segments) with the chain, and
//! re-reads every stored object — originals, manifests, proxies, posters, clips —
//! recomputing its SHA-256 against what the chain recorded. Each discrepancy names its culprit
//! with expected and found values. Entries after the newest checkpoint are only a warning:
//! a `kill -9` can leave some.
//!
//! The object checks are shared with the daemon's fixity worker (`fixity.rs`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use base64::Engine;
use futures_util::StreamExt;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::checkpoint::{self, Body};
use super::{EntryBody, GENESIS, canonical_value, entry_hash, kind};
use crate::catalog::custody::subject;
use crate::catalog::{Catalog, Checkpoint, NodeKey, Recording};
use crate::store::{ObjectStore, StoreError};

/// One problem (or warning), naming what it is about.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Finding {
    /// The culprit: `custody entry 17`, `object originals/n/x/original`, `checkpoint <id>`, ...
    pub subject: String,
    /// What is wrong.
    pub message: String,
    /// The value that should be there.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected: Option<String>,
    /// The value that is there.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub found: Option<String>,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.subject, self.message)?;
        match (&self.expected, &self.found) {
            (Some(e), Some(x)) => write!(f, " (expected {e}, found {x})"),
            (Some(e), None) => write!(f, " (expected {e})"),
            (None, Some(x)) => write!(f, " (found {x})"),
            (None, None) => Ok(()),
        }
    }
}

fn finding(subject: impl Into<String>, message: impl Into<String>) -> Finding {
    Finding { subject: subject.into(), message: message.into(), expected: None, found: None }
}

fn mismatch(subject: impl Into<String>, message: impl Into<String>, expected: impl Into<String>, found: impl Into<String>) -> Finding {
    Finding { subject: subject.into(), message: message.into(), expected: Some(expected.into()), found: Some(found.into()) }
}

/// What was checked.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Counts {
    /// Custody entries walked.
    pub entries: i64,
    /// Checkpoints checked.
    pub checkpoints: usize,
    /// Entries of the store's copy of the log (`custody/` segments) compared with the chain.
    pub copied_entries: i64,
    /// Time-stamp tokens checked.
    pub tokens: usize,
    /// Stored objects re-read.
    pub objects: usize,
    /// Bytes re-read and hashed.
    pub bytes: u64,
}

/// The outcome of a verification run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// True when there is no discrepancy (warnings allowed).
    pub ok: bool,
    /// Everything that does not hold.
    pub discrepancies: Vec<Finding>,
    /// Things worth knowing that are not errors (entries after the last checkpoint, ...).
    pub warnings: Vec<Finding>,
    /// What was covered.
    pub checked: Counts,
}

/// A stored object and what the custody log says its bytes are.
#[derive(Debug, Clone, Serialize)]
pub struct StoredObject {
    /// `original`, `manifest`, `proxy`, `poster`, `clip` or `token`.
    pub what: &'static str,
    /// Store key.
    pub key: String,
    /// Expected SHA-256 (for a manifest: the original's, which its content must name).
    pub sha256: String,
    /// Expected size, when known.
    pub size: Option<i64>,
}

/// The result of re-reading one object.
#[derive(Debug, Clone, Serialize)]
pub struct ObjectCheck {
    /// The object.
    pub object: StoredObject,
    /// What was found (hash, or for a manifest the hash it names).
    pub found: Option<String>,
    /// Bytes read.
    pub bytes: u64,
    /// The problem, if any.
    pub problem: Option<Finding>,
}

/// The objects of a recording with the hashes the catalog holds for them (verify overrides them
/// with the chain's where the two could differ).
pub async fn objects_of(catalog: &dyn Catalog, rec: &Recording) -> crate::catalog::Result<Vec<StoredObject>> {
    let mut v = vec![
        StoredObject { what: "original", key: rec.object_key.clone(), sha256: rec.sha256.clone(), size: Some(rec.size) },
        StoredObject { what: "manifest", key: rec.manifest_key.clone(), sha256: rec.sha256.clone(), size: None },
    ];
    for (what, o) in [("proxy", &rec.proxy), ("poster", &rec.poster)] {
        if let Some(o) = o {
            v.push(StoredObject { what, key: o.key.clone(), sha256: o.sha256.clone(), size: Some(o.size) });
        }
    }
    for c in catalog.clips_of(&rec.id).await? {
        if let (Some(key), Some(sha)) = (c.object_key, c.sha256) {
            v.push(StoredObject { what: "clip", key, sha256: sha, size: c.size });
        }
    }
    Ok(v)
}

/// Reads an object once and returns its SHA-256 and size. A local file is hashed on a blocking
/// thread in large reads; other stores stream.
pub async fn hash_object(store: &dyn ObjectStore, key: &str, progress: &(dyn Fn(u64) + Sync)) -> Result<(String, u64), StoreError> {
    if let Some(path) = store.local_path(key) {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
        let task = tokio::task::spawn_blocking(move || {
            crate::store::fs::hash_file(&path, false, |n| {
                let _ = tx.send(n);
            })
        });
        while let Some(n) = rx.recv().await {
            progress(n);
        }
        return match task.await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => Err(StoreError::NotFound(key.into())),
            Ok(Err(e)) => Err(StoreError::Io { context: format!("reading {key}"), source: e }),
            Err(e) => Err(StoreError::Io { context: "hash task".into(), source: std::io::Error::other(e) }),
        };
    }
    let mut s = store.get(key, None).await?;
    let mut h = Sha256::new();
    let mut n = 0u64;
    while let Some(chunk) = s.next().await {
        let chunk = chunk.map_err(StoreError::io(format!("reading {key}")))?;
        h.update(&chunk);
        n += chunk.len() as u64;
        progress(chunk.len() as u64);
    }
    Ok((hex::encode(h.finalize()), n))
}

/// Re-reads one object and compares it with what it should be.
pub async fn check_object(store: &dyn ObjectStore, o: StoredObject, progress: &(dyn Fn(u64) + Sync)) -> ObjectCheck {
    let subject = format!("object {} ({})", o.key, o.what);
    if o.what == "manifest" {
        return check_manifest(store, o, subject).await;
    }
    match hash_object(store, &o.key, progress).await {
        Ok((sha, n)) => {
            let problem = if sha != o.sha256 {
                Some(mismatch(&subject, "SHA-256 differs", &o.sha256, &sha))
            } else if o.size.is_some_and(|s| s as u64 != n) {
                Some(mismatch(&subject, "size differs", o.size.unwrap_or_default().to_string(), n.to_string()))
            } else {
                None
            };
            ObjectCheck { object: o, found: Some(sha), bytes: n, problem }
        }
        Err(StoreError::NotFound(_)) => {
            ObjectCheck { problem: Some(finding(&subject, "missing from the store")), object: o, found: None, bytes: 0 }
        }
        Err(e) => ObjectCheck { problem: Some(finding(&subject, format!("cannot read: {e}"))), object: o, found: None, bytes: 0 },
    }
}

async fn check_manifest(store: &dyn ObjectStore, o: StoredObject, subject: String) -> ObjectCheck {
    match read_all(store, &o.key).await {
        Ok(buf) => {
            let named = serde_json::from_slice::<serde_json::Value>(&buf).ok().and_then(|v| v["sha256"].as_str().map(str::to_string));
            let problem = match &named {
                Some(s) if *s == o.sha256 => None,
                Some(s) => Some(mismatch(&subject, "names another SHA-256", &o.sha256, s)),
                None => Some(finding(&subject, "is not a manifest (no sha256 field)")),
            };
            ObjectCheck { found: named, bytes: buf.len() as u64, problem, object: o }
        }
        Err(StoreError::NotFound(_)) => {
            ObjectCheck { problem: Some(finding(&subject, "missing from the store")), object: o, found: None, bytes: 0 }
        }
        Err(e) => ObjectCheck { problem: Some(finding(&subject, format!("cannot read: {e}"))), object: o, found: None, bytes: 0 },
    }
}

/// What the chain recorded about one recording.
#[derive(Debug, Default)]
struct Recorded {
    /// SHA-256 from the `archived` entry.
    sha256: Option<String>,
    /// Latest proxy and poster hashes from `derived` entries, by key.
    derived: HashMap<String, String>,
    /// Clip hashes from `clipped` entries, by key.
    clips: HashMap<String, String>,
}

/// Facts gathered while walking the chain.
#[derive(Default)]
struct ChainFacts {
    /// Per recording.
    recordings: HashMap<String, Recorded>,
    /// Token SHA-256 per (subject, subject id), from `timestamped` entries.
    tokens: HashMap<(String, String), String>,
    /// Hash of the entries at the sequence numbers checkpoints signed.
    at_checkpoints: BTreeMap<i64, String>,
    /// Last entry.
    head: Option<(i64, String)>,
    /// Sequence number of the last entry that is not a `checkpoint` event.
    last_real: i64,
}

/// Runs the checks.
pub struct Verifier {
    /// The catalog (chain, records).
    pub catalog: Arc<dyn Catalog>,
    /// The store (objects, checkpoint copies, keys, tokens).
    pub store: Arc<dyn ObjectStore>,
    /// The TSA's CA certificates (`[tsa] ca_file`); without them token signatures are not checked.
    pub tsa_ca: Option<Vec<u8>>,
    /// This node's own public key, trusted even if the catalog and store lost theirs.
    pub local_key: Option<NodeKey>,
    /// Only this recording's objects and tokens (the chain and checkpoints are always checked whole).
    pub recording: Option<String>,
    /// Shows a progress bar on stderr.
    pub progress: bool,
}

impl Verifier {
    /// Runs every check and returns the report.
    pub async fn run(&self) -> anyhow::Result<Report> {
        let mut r = Report::default();
        let checkpoints = self.load_checkpoints(&mut r).await?;
        let mut facts = ChainFacts::default();
        for c in &checkpoints {
            facts.at_checkpoints.insert(c.body.seq, String::new());
        }
        self.walk_chain(&mut r, &mut facts).await?;
        self.check_checkpoints(&mut r, &facts, &checkpoints).await?;
        self.check_segments(&mut r, &checkpoints).await?;
        self.check_tokens(&mut r, &facts, &checkpoints).await?;
        self.check_objects(&mut r, &facts).await?;
        r.ok = r.discrepancies.is_empty();
        Ok(r)
    }

    /// Every checkpoint, from the store (which the catalog cannot rewrite) and the catalog, parsed.
    async fn load_checkpoints(&self, r: &mut Report) -> anyhow::Result<Vec<checkpoint::Stored>> {
        let mut by_id: BTreeMap<String, checkpoint::Stored> = BTreeMap::new();
        let in_catalog = self.catalog.checkpoints().await?;
        let (stored, unreadable) = checkpoint::read_stored(&*self.store).await?;
        for (key, why) in unreadable {
            r.discrepancies.push(finding(format!("checkpoint object {key}"), why));
        }
        for c in stored {
            by_id.insert(c.body.id.clone(), c);
        }
        for c in in_catalog {
            if by_id.contains_key(&c.id) {
                continue;
            }
            r.discrepancies
                .push(finding(format!("checkpoint {} (seq {})", c.id, c.seq), "recorded in the catalog but missing from the store"));
            if let Ok(body) = serde_json::from_str::<Body>(&c.body) {
                let (text, sig) = checkpoint_files(&c);
                by_id.insert(c.id.clone(), checkpoint::Stored { key: c.object_key.clone(), body, text, sig });
            }
        }
        Ok(by_id.into_values().collect())
    }

    async fn walk_chain(&self, r: &mut Report, facts: &mut ChainFacts) -> anyhow::Result<()> {
        let bar = self.bar(self.catalog.chain_head().await?.map(|h| h.0).unwrap_or(0).max(0) as u64, "custody chain");
        let (mut expected_seq, mut prev) = (1i64, GENESIS.to_string());
        loop {
            let page = self.catalog.custody_events(None, expected_seq - 1, 5000).await?;
            if page.is_empty() {
                break;
            }
            for e in page {
                let b = &e.body;
                let subject = format!("custody entry {}", b.seq);
                if b.seq > expected_seq {
                    let gap = if b.seq - 1 == expected_seq { expected_seq.to_string() } else { format!("{expected_seq}..{}", b.seq - 1) };
                    r.discrepancies.push(finding(format!("custody entries {gap}"), "missing (deleted rows)"));
                }
                if b.prev_hash != prev {
                    r.discrepancies.push(mismatch(&subject, "prev_hash does not link to the entry before it", &prev, &b.prev_hash));
                }
                let recomputed = entry_hash(b);
                if recomputed != e.hash {
                    r.discrepancies.push(mismatch(
                        &subject,
                        "hash does not match its content (recomputed vs stored)",
                        &recomputed,
                        &e.hash,
                    ));
                }
                if canonical_value(&b.details) != e.details_raw.as_bytes() {
                    r.discrepancies.push(finding(&subject, "details are not the canonical JSON that was hashed (the row was edited)"));
                }
                if let Some(h) = facts.at_checkpoints.get_mut(&b.seq) {
                    *h = e.hash.clone();
                }
                note_facts(facts, b);
                if b.kind != kind::CHECKPOINT {
                    facts.last_real = b.seq;
                }
                r.checked.entries += 1;
                bar.inc(1);
                prev = e.hash.clone();
                expected_seq = b.seq + 1;
                facts.head = Some((b.seq, e.hash));
            }
        }
        bar.finish_and_clear();
        Ok(())
    }

    async fn check_checkpoints(&self, r: &mut Report, facts: &ChainFacts, cps: &[checkpoint::Stored]) -> anyhow::Result<()> {
        let mut keys: HashMap<String, String> = HashMap::new();
        for k in self.catalog.node_keys().await?.into_iter().chain(self.local_key.clone()) {
            keys.insert(k.key_id, k.public_pem);
        }
        keys.extend(checkpoint::published_keys(&*self.store).await?);
        let head_seq = facts.head.as_ref().map(|h| h.0).unwrap_or(0);
        let mut newest = 0;
        for checkpoint::Stored { key, body: b, text, sig } in cps {
            r.checked.checkpoints += 1;
            let subject = format!("checkpoint {key} (seq {})", b.seq);
            match keys.get(&b.key_id) {
                None => r.discrepancies.push(finding(&subject, format!("signed by unknown key {}", b.key_id))),
                Some(pem) => {
                    if let Err(e) = super::keys::verify(pem, text, sig) {
                        r.discrepancies.push(finding(&subject, e.to_string()));
                        continue;
                    }
                }
            }
            if b.seq > head_seq {
                r.discrepancies.push(mismatch(
                    &subject,
                    "the chain is shorter than this signed checkpoint: newest entries were deleted",
                    format!("at least {} entries", b.seq),
                    format!("{head_seq} entries"),
                ));
                continue;
            }
            match facts.at_checkpoints.get(&b.seq) {
                Some(h) if *h == b.hash => newest = newest.max(b.seq),
                Some(h) if h.is_empty() => {
                    r.discrepancies.push(finding(&subject, format!("signed entry {} is missing from the chain", b.seq)))
                }
                Some(h) => {
                    r.discrepancies.push(mismatch(&subject, format!("signed hash of entry {} differs from the chain's", b.seq), &b.hash, h))
                }
                None => {}
            }
        }
        if head_seq > 0 && cps.is_empty() {
            r.warnings.push(finding("custody chain", format!("{head_seq} entries and no signed checkpoint yet")));
        } else if facts.last_real > newest && newest > 0 {
            r.warnings.push(finding(
                "custody chain",
                format!(
                    "entries {}..{} come after the newest signed checkpoint (seq {newest}); the next checkpoint covers them",
                    newest + 1,
                    facts.last_real
                ),
            ));
        }
        Ok(())
    }

    /// The store's copy of the log (what `evidenced rebuild` restores from): every copied entry
    /// must be the chain's entry at its position, and the copy must reach the newest checkpoint
    /// in the store (a checkpoint copies the entries before signing).
    async fn check_segments(&self, r: &mut Report, cps: &[checkpoint::Stored]) -> anyhow::Result<()> {
        let newest = cps.iter().map(|c| c.body.seq).max().unwrap_or(0);
        for key in self.store.list(super::segments::PREFIX).await? {
            let Some((first, last)) = super::segments::range_of(&key) else { continue };
            let subject = format!("custody copy {key}");
            let copied = match read_all(&*self.store, &key).await.map_err(|e| e.to_string()) {
                Ok(text) => super::segments::decode(&key, &text).map_err(|e| e.to_string()),
                Err(e) => Err(format!("cannot read it: {e}")),
            };
            let copied = match copied {
                Ok(c) => c,
                Err(e) => {
                    r.discrepancies.push(finding(&subject, e));
                    continue;
                }
            };
            let chain = self.catalog.custody_events(None, first - 1, last - first + 1).await?;
            if copied.len() as i64 != last - first + 1 {
                r.discrepancies.push(mismatch(&subject, "entry count", (last - first + 1).to_string(), copied.len().to_string()));
            }
            for (c, e) in copied.iter().zip(chain.iter().map(Some).chain(std::iter::repeat(None))) {
                r.checked.copied_entries += 1;
                match e {
                    Some(e) if e.body.seq == c.body.seq && e.hash == c.hash => {}
                    Some(e) => {
                        r.discrepancies.push(mismatch(&subject, format!("entry {} differs from the chain's", c.body.seq), &e.hash, &c.hash))
                    }
                    None => r.discrepancies.push(finding(&subject, format!("entry {} is not in the chain", c.body.seq))),
                }
            }
        }
        let covered = super::segments::covered(&*self.store).await?;
        if covered < newest {
            r.discrepancies.push(mismatch(
                "custody copy in the store",
                "does not reach the newest signed checkpoint: a rebuild from the store would stop short",
                format!("entries 1..{newest}"),
                format!("entries 1..{covered}"),
            ));
        }
        Ok(())
    }

    async fn check_tokens(&self, r: &mut Report, facts: &ChainFacts, cps: &[checkpoint::Stored]) -> anyhow::Result<()> {
        let cp_digest: HashMap<&str, String> = cps.iter().map(|c| (c.body.id.as_str(), hex::encode(Sha256::digest(&c.text)))).collect();
        // Tokens of destroyed recordings went with them; the `destroyed` entry lists them.
        let destroyed: HashSet<String> =
            self.catalog.destructions(Some("destroyed"), i64::MAX).await?.into_iter().map(|d| d.recording_id).collect();
        let tokens = self.catalog.timestamps(self.recording.as_deref()).await?;
        let in_catalog: HashSet<(&str, &str)> = tokens.iter().map(|t| (t.subject.as_str(), t.subject_id.as_str())).collect();
        if self.tsa_ca.is_none() && !facts.tokens.is_empty() {
            r.warnings.push(finding("time-stamp tokens", "no [tsa] ca_file configured: token signatures are not checked"));
        }
        for t in &tokens {
            r.checked.tokens += 1;
            let subject = format!("token {} for {} {}", t.token_key, t.subject, t.subject_id);
            let recorded = facts.tokens.get(&(t.subject.clone(), t.subject_id.clone()));
            let imprint = match t.subject.as_str() {
                subject::RECORDING => facts.recordings.get(&t.subject_id).and_then(|x| x.sha256.clone()),
                subject::CHECKPOINT => cp_digest.get(t.subject_id.as_str()).cloned(),
                _ => None,
            };
            let Some(imprint) = imprint else {
                r.discrepancies.push(finding(&subject, "its subject is not in the custody chain"));
                continue;
            };
            if t.subject == subject::RECORDING && destroyed.contains(&t.subject_id) {
                continue;
            }
            let der = match read_all(&*self.store, &t.token_key).await {
                Ok(d) => d,
                Err(e) => {
                    r.discrepancies.push(finding(&subject, format!("cannot read: {e}")));
                    continue;
                }
            };
            let sha = hex::encode(Sha256::digest(&der));
            match recorded {
                Some(x) if *x == sha => {}
                Some(x) => r.discrepancies.push(mismatch(&subject, "token bytes differ from those the custody chain recorded", x, &sha)),
                None => r.discrepancies.push(finding(&subject, "no timestamped custody entry records this token")),
            }
            if let Some(ca) = &self.tsa_ca {
                let digest: [u8; 32] = hex::decode(&imprint).ok().and_then(|d| d.try_into().ok()).unwrap_or([0; 32]);
                if let Err(e) = super::tsa::verify_token(&der, &digest, ca) {
                    r.discrepancies.push(finding(&subject, format!("does not verify for SHA-256 {imprint}: {e}")));
                }
            }
        }
        for (subj, id) in facts.tokens.keys() {
            if self.recording.as_ref().is_some_and(|r| r != id) {
                continue;
            }
            if !in_catalog.contains(&(subj.as_str(), id.as_str())) {
                r.discrepancies
                    .push(finding(format!("token for {subj} {id}"), "recorded in the custody chain but missing from the catalog"));
            }
        }
        Ok(())
    }

    async fn check_objects(&self, r: &mut Report, facts: &ChainFacts) -> anyhow::Result<()> {
        let ids = match &self.recording {
            Some(id) => vec![id.clone()],
            None => self.catalog.fixity_due(i64::MAX).await?,
        };
        let mut plan: Vec<StoredObject> = Vec::new();
        for id in &ids {
            let rec = self.catalog.recording(id).await?;
            if rec.state == "destroyed" {
                r.warnings.push(finding(format!("recording {id}"), "was destroyed under its retention rule; only the tombstone remains"));
                continue;
            }
            let chain = facts.recordings.get(id);
            let mut objs = objects_of(&*self.catalog, &rec).await?;
            match chain.and_then(|c| c.sha256.as_ref()) {
                None => r.discrepancies.push(finding(format!("recording {id}"), "has no archived entry in the custody chain")),
                Some(sha) if *sha != rec.sha256 => {
                    r.discrepancies.push(mismatch(
                        format!("recording {id}"),
                        "catalog SHA-256 differs from its archived custody entry",
                        sha,
                        &rec.sha256,
                    ));
                }
                _ => {}
            }
            // The chain's word wins over the catalog's: objects are compared with what was logged.
            for o in objs.iter_mut() {
                let logged = match o.what {
                    "original" | "manifest" => chain.and_then(|c| c.sha256.clone()),
                    "clip" => chain.and_then(|c| c.clips.get(&o.key).cloned()),
                    _ => chain.and_then(|c| c.derived.get(&o.key).cloned()),
                };
                match logged {
                    Some(s) => o.sha256 = s,
                    None if o.what != "original" && o.what != "manifest" => {
                        r.discrepancies.push(finding(format!("object {} ({})", o.key, o.what), "not recorded in the custody chain"));
                    }
                    None => {}
                }
            }
            plan.extend(objs);
        }
        let total: u64 = plan.iter().map(|o| o.size.unwrap_or(0).max(0) as u64).sum();
        let bar = self.bar(total, "objects");
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {msg} {wide_bar} {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        let progress = |n: u64| bar.inc(n);
        let store = &*self.store;
        let mut checks = futures_util::stream::iter(plan.into_iter().map(|o| check_object(store, o, &progress))).buffered(2);
        while let Some(c) = checks.next().await {
            r.checked.objects += 1;
            r.checked.bytes += c.bytes;
            if let Some(p) = c.problem {
                r.discrepancies.push(p);
            }
        }
        bar.finish_and_clear();
        Ok(())
    }

    fn bar(&self, len: u64, what: &str) -> indicatif::ProgressBar {
        let bar = if self.progress { indicatif::ProgressBar::new(len) } else { indicatif::ProgressBar::hidden() };
        bar.set_message(what.to_string());
        bar
    }
}

/// Records what an entry says about recordings, derivatives and tokens.
fn note_facts(facts: &mut ChainFacts, b: &EntryBody) {
    let d = &b.details;
    let s = |v: &serde_json::Value| v.as_str().map(str::to_string);
    match b.kind.as_str() {
        kind::ARCHIVED => {
            if let Some(id) = &b.recording_id {
                facts.recordings.entry(id.clone()).or_default().sha256 = s(&d["sha256"]);
            }
        }
        kind::DERIVED => {
            if let Some(id) = &b.recording_id {
                let rec = facts.recordings.entry(id.clone()).or_default();
                for part in ["proxy", "poster"] {
                    if let (Some(k), Some(h)) = (s(&d[part]["key"]), s(&d[part]["sha256"])) {
                        rec.derived.insert(k, h);
                    }
                }
            }
        }
        kind::CLIPPED => {
            if let (Some(id), Some(k), Some(h)) = (&b.recording_id, s(&d["object_key"]), s(&d["sha256"])) {
                facts.recordings.entry(id.clone()).or_default().clips.insert(k, h);
            }
        }
        kind::TIMESTAMPED => {
            if let (Some(sub), Some(id), Some(t)) = (s(&d["subject"]), s(&d["subject_id"]), s(&d["token_sha256"])) {
                facts.tokens.insert((sub, id), t);
            }
        }
        _ => {}
    }
}

/// Largest object [`read_all`] reads: manifests, checkpoints, keys and tokens are a few KiB.
const SMALL_OBJECT: usize = 16 << 20;

/// Reads a small object whole; anything larger than [`SMALL_OBJECT`] is refused, not buffered.
pub async fn read_all(store: &dyn ObjectStore, key: &str) -> Result<Vec<u8>, StoreError> {
    let mut s = store.get(key, None).await?;
    let mut buf = Vec::new();
    while let Some(c) = s.next().await {
        buf.extend_from_slice(&c.map_err(StoreError::io(format!("reading {key}")))?);
        if buf.len() > SMALL_OBJECT {
            let e = std::io::Error::other(format!("larger than {} MiB: not a small object", SMALL_OBJECT >> 20));
            return Err(StoreError::Io { context: format!("reading {key}"), source: e });
        }
    }
    Ok(buf)
}

/// Checkpoint records are public: a helper for exports and the API.
pub fn checkpoint_files(c: &Checkpoint) -> (Vec<u8>, Vec<u8>) {
    (c.body.as_bytes().to_vec(), base64::engine::general_purpose::STANDARD.decode(&c.signature).unwrap_or_default())
}
