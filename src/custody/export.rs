//! `evidenced export --case CASE --out DIR`: a court-ready BagIt (RFC 8493) package of a case.
//!
//! Payload (`data/`): every original of the case as `originals/<sha256>.<ext>`, its proxy and
//! poster, and its clips — each streamed from the store and checked against the hash the custody
//! log recorded while it is written. Tag files: the case's custody entries in full
//! (`custody/entries.jsonl`), the chain from the first of them to a checkpoint signed for this
//! export with every other entry reduced to `(seq, prev_hash, body_sha256, hash)`
//! (`custody/chain.jsonl`, so the chain can be recomputed without revealing other cases), the
//! signed checkpoints (`checkpoints/`), time-stamp tokens (`tokens/<sha256>.tsr`) with the TSA's
//! CA, the node public keys (`keys/`), the recordings' metadata and original file names
//! (`recordings.json`), and `VERIFY.txt` saying how to check it all with standard tools.
//! The bag is built in `DIR.partial` and renamed when complete; each exported recording gets an
//! `exported` custody event.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::bagit::BagWriter;
use super::checkpoint::Checkpointer;
use super::verify::objects_of;
use super::{canonical, kind};
use crate::catalog::custody::subject;
use crate::catalog::{Catalog, CustodyEvent, Recording, RecordingFilter};
use crate::store::ObjectStore;

/// What an export wrote.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ExportSummary {
    /// Recordings in the bag.
    pub recordings: usize,
    /// Payload files.
    pub files: usize,
    /// Payload bytes.
    pub bytes: u64,
    /// The checkpoint the chain in the bag ends at.
    pub checkpoint_seq: i64,
}

/// Builds case packages.
pub struct Exporter {
    /// Recordings and the custody log.
    pub catalog: Arc<dyn Catalog>,
    /// The objects.
    pub store: Arc<dyn ObjectStore>,
    /// Signs the checkpoint that covers the exported entries.
    pub checkpointer: Arc<Checkpointer>,
    /// The TSA's CA certificates, copied into the bag when configured.
    pub tsa_ca: Option<Vec<u8>>,
    /// Who asked (custody actor).
    pub actor: String,
}

/// Every recording linked to `case`.
async fn case_recordings(catalog: &dyn Catalog, case: &str) -> anyhow::Result<Vec<Recording>> {
    let mut out = Vec::new();
    let mut f = RecordingFilter { case: Some(case.to_string()), limit: 500, ..Default::default() };
    loop {
        let page = catalog.list_recordings(&f).await?;
        let done = (page.len() as i64) < f.limit;
        f.after = page.last().map(|r| (r.sort_at, r.id.clone()));
        // The case filter may match by substring; keep exact links only.
        out.extend(page.into_iter().filter(|r| r.cases.iter().any(|c| c == case)));
        if done {
            break;
        }
    }
    Ok(out)
}

impl Exporter {
    /// Writes the bag for `case` to `out`.
    pub async fn export(&self, case: &str, out: &Path) -> anyhow::Result<ExportSummary> {
        let recs = case_recordings(&*self.catalog, case).await?;
        if recs.is_empty() {
            anyhow::bail!("no recordings are linked to case {case:?}");
        }
        if out.exists() {
            anyhow::bail!("{} already exists; choose a new --out directory", out.display());
        }
        // Every entry up to now is covered by a checkpoint signed for this export.
        let cp = match self.checkpointer.checkpoint("export", false).await? {
            Some(cp) => cp,
            None => self.catalog.latest_checkpoint().await?.ok_or_else(|| anyhow::anyhow!("the custody log is empty: nothing to sign"))?,
        };
        let ids: HashSet<&str> = recs.iter().map(|r| r.id.as_str()).collect();

        let mut objects = Vec::new();
        for r in &recs {
            for o in objects_of(&*self.catalog, r).await? {
                let ext = match o.what {
                    "original" if !r.extension.is_empty() => format!(".{}", r.extension),
                    "original" => String::new(),
                    "poster" => ".jpg".into(),
                    "manifest" => ".json".into(),
                    _ => ".mp4".into(),
                };
                let dir = match o.what {
                    "original" => "originals",
                    "manifest" => "manifests",
                    "proxy" => "proxies",
                    "poster" => "posters",
                    _ => "clips",
                };
                let rel = match o.what {
                    "original" | "proxy" | "poster" => format!("{dir}/{}{ext}", o.sha256),
                    _ => format!("{dir}/{}{ext}", key_stem(&o.key, &r.id)),
                };
                objects.push((r.id.clone(), o, rel));
            }
        }
        let total: u64 = objects.iter().map(|(_, o, _)| o.size.unwrap_or(4096).max(0) as u64).sum();
        let mut bag = BagWriter::create(out, total).await?;
        let mut files = Vec::new();
        let mut seen = HashSet::new();
        for (rid, o, rel) in &objects {
            if !seen.insert(rel.clone()) {
                continue;
            }
            let stream = self.store.get(&o.key, None).await?;
            let expected = (o.what != "manifest").then_some(o.sha256.as_str());
            let fx = bag.add_payload_stream(rel, stream, expected).await?;
            let (sha, size) = (fx.sha256, fx.bytes);
            files.push(serde_json::json!({"recording_id": rid, "what": o.what, "path": format!("data/{rel}"), "sha256": sha, "size": size, "store_key": o.key}));
        }

        // Custody: the case's entries in full, the rest of the range reduced to hashes.
        let (entries, chain, first) = self.custody_range(&ids, cp.seq).await?;
        bag.add_tag_file("custody/entries.jsonl", &entries).await?;
        bag.add_tag_file("custody/chain.jsonl", &chain).await?;
        bag.add_tag_file("custody/verify_chain.py", VERIFY_CHAIN_PY.as_bytes()).await?;
        for c in self.catalog.checkpoints().await?.into_iter().filter(|c| c.seq >= first && c.seq <= cp.seq) {
            let (body, sig) = super::verify::checkpoint_files(&c);
            let name = format!("checkpoints/{:020}-{}", c.seq, c.id);
            bag.add_tag_file(&format!("{name}.json"), &body).await?;
            bag.add_tag_file(&format!("{name}.sig"), &sig).await?;
        }
        for k in self.catalog.node_keys().await? {
            bag.add_tag_file(&format!("keys/{}.pem", k.key_id), k.public_pem.as_bytes()).await?;
        }
        let mut tokens = Vec::new();
        let mut token_bytes = Vec::new();
        for t in self.catalog.timestamps(None).await? {
            let wanted = match t.subject.as_str() {
                subject::RECORDING => ids.contains(t.subject_id.as_str()),
                subject::CHECKPOINT => true,
                _ => false,
            };
            if !wanted {
                continue;
            }
            let der = super::verify::read_all(&*self.store, &t.token_key).await?;
            let name = if t.subject == subject::RECORDING {
                format!("tokens/{}.tsr", t.sha256)
            } else {
                format!("tokens/checkpoint-{}.tsr", t.subject_id)
            };
            bag.add_tag_file(&name, &der).await?;
            token_bytes.push(der);
            tokens.push(serde_json::json!({"file": name, "subject": t.subject, "subject_id": t.subject_id, "sha256": t.sha256, "gen_time": super::format_at(t.gen_time), "tsa": t.tsa}));
        }
        if let Some(ca) = &self.tsa_ca {
            bag.add_tag_file("tokens/tsa-ca.pem", ca).await?;
        }
        // The certificates the TSA embedded in its tokens (signer and chain), for reference.
        let mut chain: Vec<u8> = Vec::new();
        for der in &token_bytes {
            if let Ok(pem) = super::tsa::token_certs_pem(der) {
                if !pem.is_empty() && !chain.windows(pem.len()).any(|w| w == pem.as_slice()) {
                    chain.extend_from_slice(&pem);
                }
            }
        }
        if !chain.is_empty() {
            bag.add_tag_file("tokens/tsa-chain.pem", &chain).await?;
        }
        let recordings = serde_json::json!({
            "case": case,
            "recordings": recs.iter().map(|r| serde_json::json!({
                "id": r.id, "sha256": r.sha256, "size": r.size, "original_name": r.original_name,
                "sightings": r.sightings, "metadata": r,
            })).collect::<Vec<_>>(),
            "files": files,
            "tokens": tokens,
        });
        bag.add_tag_file("recordings.json", &serde_json::to_vec_pretty(&recordings)?).await?;
        bag.add_tag_file("VERIFY.txt", verify_txt(case, &cp.id, cp.seq).as_bytes()).await?;

        let now = chrono::Utc::now();
        let info = vec![
            ("Source-Organization".to_string(), "evidenced evidence archive".to_string()),
            ("External-Identifier".to_string(), case.to_string()),
            ("External-Description".to_string(), format!("Evidence package for case {case}: {} recording(s)", recs.len())),
            ("Bag-Software-Agent".to_string(), format!("evidenced {}", env!("CARGO_PKG_VERSION"))),
            ("Evidenced-Checkpoint".to_string(), format!("{} (custody entry {})", cp.id, cp.seq)),
            ("Evidenced-Exported-At".to_string(), now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
        ];
        let summary = bag.finish(&info).await?;
        for r in &recs {
            let d = serde_json::json!({"case": case, "out": out.display().to_string(), "checkpoint": cp.id, "checkpoint_seq": cp.seq});
            self.catalog.append_custody(kind::EXPORTED, &self.actor, Some(&r.id), d).await?;
        }
        Ok(ExportSummary {
            recordings: recs.len(),
            files: summary.payload_files as usize,
            bytes: summary.payload_bytes,
            checkpoint_seq: cp.seq,
        })
    }

    /// The custody lines: (case entries in full, the chain from the first of them to `to`, first seq).
    async fn custody_range(&self, ids: &HashSet<&str>, to: i64) -> anyhow::Result<(Vec<u8>, Vec<u8>, i64)> {
        let mut mine: Vec<CustodyEvent> = Vec::new();
        for id in ids {
            mine.extend(self.catalog.custody_events(Some(id), 0, i64::MAX).await?.into_iter().filter(|e| e.body.seq <= to));
        }
        mine.sort_by_key(|e| e.body.seq);
        let first = mine.first().map(|e| e.body.seq).unwrap_or(to);
        let (mut entries, mut chain) = (Vec::new(), Vec::new());
        for e in &mine {
            serde_json::to_writer(&mut entries, e)?;
            entries.push(b'\n');
        }
        let full: BTreeMap<i64, ()> = mine.iter().map(|e| (e.body.seq, ())).collect();
        let mut after = first - 1;
        while after < to {
            let page = self.catalog.custody_events(None, after, 5000).await?;
            if page.is_empty() {
                break;
            }
            for e in page.into_iter().take_while(|e| e.body.seq <= to) {
                after = e.body.seq;
                if full.contains_key(&e.body.seq) {
                    serde_json::to_writer(&mut chain, &e)?;
                } else {
                    let body_sha256 = hex::encode(Sha256::digest(canonical(&e.body)));
                    serde_json::to_writer(
                        &mut chain,
                        &serde_json::json!({"seq": e.body.seq, "prev_hash": e.body.prev_hash, "body_sha256": body_sha256, "hash": e.hash}),
                    )?;
                }
                chain.push(b'\n');
            }
            if after >= to {
                break;
            }
        }
        Ok((entries, chain, first))
    }
}

/// A short, unique file stem for a derived object: the recording id plus the key's last parts.
fn key_stem(key: &str, rid: &str) -> String {
    let last = key.rsplit('/').next().unwrap_or(key);
    let last = last.rsplit_once('.').map(|(a, _)| a).unwrap_or(last);
    format!("{rid}-{last}")
}

/// Recomputes `custody/chain.jsonl` (RFC 8785 for our entries: sorted keys, no spaces, UTF-8).
const VERIFY_CHAIN_PY: &str = r#"#!/usr/bin/env python3
"""Recomputes the custody chain in chain.jsonl and checks it ends at the signed checkpoint.

Usage: python3 custody/verify_chain.py custody/chain.jsonl checkpoints/<file>.json
hash = SHA-256(prev_hash || SHA-256(canonical JSON of the entry without "hash")), raw digests.
Full entries are re-hashed from their content; other cases' entries carry only body_sha256.
"""
import hashlib, json, sys

def canonical(v):
    return json.dumps(v, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")

chain_file, checkpoint_file = sys.argv[1], sys.argv[2]
prev, ok, last = None, True, None
for line in open(chain_file, encoding="utf-8"):
    e = json.loads(line)
    if "body_sha256" in e:
        inner = bytes.fromhex(e["body_sha256"])
    else:
        body = {k: v for k, v in e.items() if k != "hash"}
        inner = hashlib.sha256(canonical(body)).digest()
    if prev is not None and e["prev_hash"] != prev:
        print("entry %d: prev_hash does not link" % e["seq"]); ok = False
    h = hashlib.sha256(bytes.fromhex(e["prev_hash"]) + inner).hexdigest()
    if h != e["hash"]:
        print("entry %d: hash mismatch" % e["seq"]); ok = False
    prev, last = e["hash"], e
cp = json.load(open(checkpoint_file, encoding="utf-8"))
if last is None or last["seq"] != cp["seq"] or last["hash"] != cp["hash"]:
    print("the chain does not end at the checkpoint's entry %d" % cp["seq"]); ok = False
print("chain OK" if ok else "chain BROKEN")
sys.exit(0 if ok else 1)
"#;

fn verify_txt(case: &str, checkpoint_id: &str, seq: i64) -> String {
    format!(
        r#"HOW TO VERIFY THIS EVIDENCE PACKAGE (case {case})
====================================================

This folder is a BagIt package (RFC 8493). Everything below uses standard tools: coreutils,
OpenSSL 3 and any BagIt validator. Nothing needs the evidenced software or its server.

1. The package is complete and unaltered
   - Any BagIt validator, e.g. the Library of Congress's Python tool:
         pip install bagit && bagit.py --validate .
   - Or by hand with coreutils, from this folder:
         sha256sum -c manifest-sha256.txt        (every payload file under data/)
         sha256sum -c tagmanifest-sha256.txt     (every other file, including this one)

2. Each original is the recording that was archived
   data/originals/<sha256>.<ext> is named by its SHA-256; `sha256sum data/originals/*` must
   print each file's own name. recordings.json maps each file to its recording id, original
   file name, dock sightings and metadata.

3. Trusted time-stamps (RFC 3161) prove each original existed no later than the stamped time
   For every tokens/<sha256>.tsr:
         openssl ts -verify -data data/originals/<sha256>.<ext> -in tokens/<sha256>.tsr \
             -CAfile tokens/tsa-ca.pem
   must print "Verification: OK". tokens/tsa-chain.pem holds the certificates the TSA put in its
   tokens. `openssl ts -reply -in tokens/<sha256>.tsr -text` shows the
   time and the TSA. (Tokens are absent when no time-stamping authority was configured, or
   when the TSA had not answered yet at export time.)

4. The custody log was signed and not rewritten
   - keys/<key_id>.pem are the archive nodes' Ed25519 public keys (key_id = SHA-256 of the
     key's DER: `openssl pkey -pubin -in keys/X.pem -outform DER | sha256sum`).
   - Each checkpoints/<name>.json is a signed statement "the custody log had entry <seq> with
     hash <hash>". Check its signature with the key named in its key_id field:
         openssl pkeyutl -verify -pubin -inkey keys/<key_id>.pem -rawin \
             -in checkpoints/<name>.json -sigfile checkpoints/<name>.sig
     must print "Signature Verified Successfully". This package's chain ends at checkpoint
     {checkpoint_id} (entry {seq}); a checkpoint is time-stamped too when a TSA is configured
     (tokens/checkpoint-<id>.tsr over the SHA-256 of the .json file).
   - custody/entries.jsonl holds every custody entry of this case's recordings in full (who
     did what, when). custody/chain.jsonl holds the whole log from the first of them to the
     checkpoint: this case's entries in full, other entries reduced to their hashes so that no
     other case is revealed. Each entry's hash is
         SHA-256( prev_hash || SHA-256( RFC 8785 canonical JSON of the entry without "hash" ) )
     over raw 32-byte digests (body_sha256 is the inner digest for reduced entries). Recompute
     it with
         python3 custody/verify_chain.py custody/chain.jsonl checkpoints/<checkpoint>.json
     which must print "chain OK", and the last line's hash must equal the signed checkpoint's.

If any step fails, the package or the archive was altered after the fact.
"#
    )
}
