//! Custody log segments in the object store, so a lost catalog does not mean lost custody.
//!
//! Every checkpoint first copies the entries appended since the last copy to the store as one
//! segment, `custody/<first seq>-<last seq>.jsonl` (sequence numbers zero-padded to 20 digits so
//! keys sort by position): one JSON object per line, the hashed entry body with its `hash`,
//! exactly what `GET /custody` shows. A segment is self-checking: each entry's hash is recomputed
//! by the CONTRACT.md rule and must chain onto the previous one, and the signed checkpoint written
//! right after it names the hash of its last entry. Each node copies from where the store's
//! copies end as it sees them ([`covered`] at its first checkpoint, then [`extended`]), so
//! segments of several nodes rarely overlap; where two checkpoint at once they do, and the
//! overlapping entries must then be identical, which [`assemble`] checks.
//!
//! `evidenced rebuild` (`crate::ops::rebuild`) reads them back with [`read_all`] and [`assemble`].

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;

use super::{EntryBody, GENESIS, entry_hash};
use crate::catalog::{Catalog, CustodyEvent};
use crate::store::ObjectStore;

/// Store key prefix of every custody segment.
pub const PREFIX: &str = "custody/";

/// Entries per segment at most (a long history is copied in several segments).
pub const MAX_ENTRIES: i64 = 5_000;

/// Why segments could not be written, read or assembled.
#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    /// The store failed.
    #[error("object store: {0}")]
    Store(#[from] crate::store::StoreError),
    /// The catalog failed.
    #[error("catalog: {0}")]
    Catalog(#[from] crate::catalog::CatalogError),
    /// A segment's text is not what this module writes.
    #[error("{key} line {line}: {why}")]
    Malformed {
        /// The segment.
        key: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        why: String,
    },
    /// The entries do not form one valid chain.
    #[error("custody chain in the store: {0}")]
    Chain(String),
}

/// Store key of the segment holding entries `first..=last`.
pub fn key(first: i64, last: i64) -> String {
    format!("{PREFIX}{first:020}-{last:020}.jsonl")
}

/// The range a segment key names, if it is one.
pub fn range_of(key: &str) -> Option<(i64, i64)> {
    let name = key.strip_prefix(PREFIX)?.strip_suffix(".jsonl")?;
    let (a, b) = name.split_once('-')?;
    let (a, b) = (a.parse().ok()?, b.parse().ok()?);
    (a >= 1 && b >= a).then_some((a, b))
}

/// The text of a segment: one entry per line.
pub fn encode(entries: &[CustodyEvent]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        out.extend_from_slice(&serde_json::to_vec(e).unwrap_or_default());
        out.push(b'\n');
    }
    out
}

/// One entry as read back from a segment.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct StoredEntry {
    /// The hashed body.
    #[serde(flatten)]
    pub body: EntryBody,
    /// The hash the writer recorded.
    pub hash: String,
}

/// Parses a segment, checking that each line's hash is the hash of its body.
pub fn decode(key: &str, text: &[u8]) -> Result<Vec<StoredEntry>, SegmentError> {
    let mut out = Vec::new();
    for (i, line) in text.split(|b| *b == b'\n').enumerate().filter(|(_, l)| !l.is_empty()) {
        let bad = |why: String| SegmentError::Malformed { key: key.to_string(), line: i + 1, why };
        let e: StoredEntry = serde_json::from_slice(line).map_err(|e| bad(e.to_string()))?;
        let want = entry_hash(&e.body);
        if want != e.hash {
            return Err(bad(format!("entry {} has hash {} but its body hashes to {want}", e.body.seq, e.hash)));
        }
        out.push(e);
    }
    Ok(out)
}

/// Copies entries `from..=to` of the catalog's chain to the store, in segments of at most
/// [`MAX_ENTRIES`]. Returns the last sequence number copied.
pub async fn write(catalog: &dyn Catalog, store: &dyn ObjectStore, from: i64, to: i64) -> Result<i64, SegmentError> {
    let mut next = from.max(1);
    while next <= to {
        let entries = catalog.custody_events(None, next - 1, MAX_ENTRIES.min(to - next + 1)).await?;
        let Some(last) = entries.last().map(|e| e.body.seq) else { break };
        if entries[0].body.seq != next {
            return Err(SegmentError::Chain(format!("the catalog has no entry {next}")));
        }
        store.put_bytes(&key(next, last), Bytes::from(encode(&entries)), "application/x-ndjson").await?;
        next = last + 1;
    }
    Ok(next - 1)
}

/// The highest sequence number the store's segments cover without a gap from 1 (0 when none).
pub async fn covered(store: &dyn ObjectStore) -> Result<i64, SegmentError> {
    let mut ranges: Vec<(i64, i64)> = store.list(PREFIX).await?.iter().filter_map(|k| range_of(k)).collect();
    ranges.sort();
    let mut upto = 0;
    for (a, b) in ranges {
        if a > upto + 1 {
            break;
        }
        upto = upto.max(b);
    }
    Ok(upto)
}

/// How far the store's segments reach contiguously past `upto` (which this node knows to be
/// covered), looking only at segments whose first entry shares all but its last four digits with
/// `upto + 1`: one short listing per checkpoint, so nodes do not copy again what another node
/// just copied. A segment outside that window is only copied again, never missed. Returns `upto`
/// when nothing extends it.
pub async fn extended(store: &dyn ObjectStore, upto: i64) -> Result<i64, SegmentError> {
    let next = format!("{:020}", upto + 1);
    let mut ranges: Vec<(i64, i64)> = store.list(&format!("{PREFIX}{}", &next[..16])).await?.iter().filter_map(|k| range_of(k)).collect();
    ranges.sort();
    let mut covered = upto;
    for (a, b) in ranges {
        if a > covered + 1 {
            break;
        }
        covered = covered.max(b);
    }
    Ok(covered)
}

/// Reads every segment in the store (sorted by key, so by first sequence number).
pub async fn read_all(store: &Arc<dyn ObjectStore>) -> Result<Vec<(String, Vec<StoredEntry>)>, SegmentError> {
    let mut out = Vec::new();
    for k in store.list(PREFIX).await? {
        if range_of(&k).is_none() {
            continue;
        }
        let text = super::verify::read_all(store.as_ref(), &k).await?;
        let entries = decode(&k, &text)?;
        out.push((k, entries));
    }
    Ok(out)
}

/// Merges segments into one chain from entry 1: overlapping copies must be identical, there must
/// be no gap, and every entry must name its predecessor's hash (the first one the genesis).
pub fn assemble(segments: Vec<(String, Vec<StoredEntry>)>) -> Result<Vec<StoredEntry>, SegmentError> {
    let mut by_seq: BTreeMap<i64, (String, StoredEntry)> = BTreeMap::new();
    for (k, entries) in segments {
        for e in entries {
            match by_seq.get(&e.body.seq) {
                Some((other, prev)) if prev != &e => {
                    return Err(SegmentError::Chain(format!("entry {} differs between {other} and {k}", e.body.seq)));
                }
                Some(_) => {}
                None => {
                    by_seq.insert(e.body.seq, (k.clone(), e));
                }
            }
        }
    }
    let mut chain = Vec::with_capacity(by_seq.len());
    let mut prev = GENESIS.to_string();
    for (i, (seq, (k, e))) in by_seq.into_iter().enumerate() {
        let want = i as i64 + 1;
        if seq != want {
            return Err(SegmentError::Chain(format!("entries {want}..{} are missing (the next one is in {k})", seq - 1)));
        }
        if e.body.prev_hash != prev {
            return Err(SegmentError::Chain(format!("entry {seq} in {k} does not chain onto entry {}", seq - 1)));
        }
        prev = e.hash.clone();
        chain.push(e);
    }
    Ok(chain)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: i64) -> Vec<StoredEntry> {
        let mut prev = GENESIS.to_string();
        (1..=n)
            .map(|seq| {
                let body = EntryBody {
                    seq,
                    at: super::super::format_at(1_700_000_000_000_000 + seq),
                    kind: "archived".into(),
                    actor: "node:a".into(),
                    recording_id: Some(format!("r{seq}")),
                    details: serde_json::json!({"n": seq, "证": "据"}),
                    prev_hash: prev.clone(),
                };
                let hash = entry_hash(&body);
                prev = hash.clone();
                StoredEntry { body, hash }
            })
            .collect()
    }

    fn text(entries: &[StoredEntry]) -> Vec<u8> {
        let events: Vec<CustodyEvent> =
            entries.iter().map(|e| CustodyEvent { body: e.body.clone(), hash: e.hash.clone(), details_raw: String::new() }).collect();
        encode(&events)
    }

    #[tokio::test]
    async fn a_node_sees_how_far_other_nodes_copied() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::fs::FsStore::open(dir.path().to_path_buf()).unwrap();
        let put = |a: i64, b: i64| {
            let key = key(a, b);
            let store = &store;
            async move { store.put_bytes(&key, Bytes::from_static(b"{}"), "application/x-ndjson").await.unwrap() }
        };
        put(1, 40).await;
        put(41, 90).await;
        put(95, 120).await;
        assert_eq!(covered(&store).await.unwrap(), 90, "stops at the gap 91..94");
        assert_eq!(extended(&store, 40).await.unwrap(), 90);
        assert_eq!(extended(&store, 90).await.unwrap(), 90);
        assert_eq!(extended(&store, 100).await.unwrap(), 120, "an overlapping copy counts");
        put(9_990, 10_100).await;
        assert_eq!(extended(&store, 9_989).await.unwrap(), 10_100);
        // Outside the listing window: copied again rather than missed.
        assert_eq!(extended(&store, 10_050).await.unwrap(), 10_050);
    }

    #[test]
    fn keys_sort_by_position_and_parse_back() {
        assert_eq!(key(1, 20), "custody/00000000000000000001-00000000000000000020.jsonl");
        assert!(key(9, 10) < key(10, 11));
        assert_eq!(range_of(&key(7, 9)), Some((7, 9)));
        assert_eq!(range_of("custody/x-y.jsonl"), None);
        assert_eq!(range_of(&key(9, 7)), None);
    }

    #[test]
    fn a_segment_round_trips_and_a_changed_line_is_caught() {
        let c = chain(3);
        let t = text(&c);
        assert_eq!(decode("k", &t).unwrap(), c);
        let tampered = String::from_utf8(t).unwrap().replace("node:a", "node:b");
        let err = decode("k", tampered.as_bytes()).unwrap_err().to_string();
        assert!(err.contains("k line 1") && err.contains("hashes to"), "{err}");
    }

    #[test]
    fn overlapping_segments_merge_and_gaps_or_forks_are_refused() {
        let c = chain(6);
        let merged = assemble(vec![("a".into(), c[0..4].to_vec()), ("b".into(), c[2..6].to_vec())]).unwrap();
        assert_eq!(merged, c);
        let gap = assemble(vec![("a".into(), c[0..2].to_vec()), ("b".into(), c[3..6].to_vec())]).unwrap_err().to_string();
        assert!(gap.contains("entries 3..3 are missing"), "{gap}");
        let mut fork = c[2..4].to_vec();
        fork[0].body.actor = "node:x".into();
        fork[0].hash = entry_hash(&fork[0].body);
        let err = assemble(vec![("a".into(), c[0..4].to_vec()), ("b".into(), fork)]).unwrap_err().to_string();
        assert!(err.contains("entry 3 differs"), "{err}");
        let unchained = assemble(vec![("a".into(), c[1..3].to_vec())]).unwrap_err().to_string();
        assert!(unchained.contains("entries 1..1 are missing"), "{unchained}");
    }
}
