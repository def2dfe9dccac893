//! The object store conformance suite: every case runs against the `fs` store and against a
//! real S3 server (Garage, which verifies SHA-256 checksums).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use futures_util::TryStreamExt;
use sha2::{Digest, Sha256};

use evidenced::store::fs::FsStore;
use evidenced::store::s3::S3Store;
use evidenced::store::{NoJournal, ObjectStore, StoreError, UploadJournal};

use crate::harness::{Garage, write_random};

async fn read_all(s: &dyn ObjectStore, key: &str, range: Option<(u64, u64)>) -> Vec<u8> {
    let stream = s.get(key, range).await.unwrap();
    let chunks: Vec<Bytes> = stream.try_collect().await.unwrap();
    chunks.concat()
}

/// Records journaled upload ids.
#[derive(Default)]
struct Recorder(std::sync::Mutex<Vec<String>>);

#[async_trait::async_trait]
impl UploadJournal for Recorder {
    async fn upload_started(&self, id: &str) -> Result<(), String> {
        self.0.lock().unwrap().push(id.to_string());
        Ok(())
    }
}

/// The suite proper.
async fn conformance(s: Arc<dyn ObjectStore>, multipart_expected: bool) {
    s.check().await.unwrap();
    let dir = tempfile::tempdir().unwrap();

    // Small object: exact bytes, true hash.
    let small = dir.path().join("small.bin");
    write_random(&small, 300_000, 1);
    let data = std::fs::read(&small).unwrap();
    let r = s.put_file("t/small/original", std::fs::File::open(&small).unwrap(), data.len() as u64, &NoJournal).await.unwrap();
    assert_eq!(r.sha256, hex::encode(Sha256::digest(&data)));
    assert_eq!(r.size, data.len() as u64);
    assert_eq!(read_all(s.as_ref(), "t/small/original", None).await, data);
    assert_eq!(read_all(s.as_ref(), "t/small/original", Some((1000, 500))).await, &data[1000..1500]);
    assert_eq!(s.size("t/small/original").await.unwrap(), data.len() as u64);

    // Large object (multipart on S3: 21 MiB over 5 MiB parts), one pass, true hash.
    let big = dir.path().join("big.bin");
    let n = 21 * (1 << 20) + 12345;
    write_random(&big, n, 2);
    let journal = Recorder::default();
    let r = s.put_file("t/big/original", std::fs::File::open(&big).unwrap(), n as u64, &journal).await.unwrap();
    assert_eq!(r.sha256, crate::harness::sha256_file(&big));
    assert_eq!(journal.0.lock().unwrap().len(), usize::from(multipart_expected), "upload id journaled before parts");
    let tail = read_all(s.as_ref(), "t/big/original", Some((n as u64 - 10, 10))).await;
    assert_eq!(tail, std::fs::read(&big).unwrap()[n - 10..]);

    // The snapshot said more bytes than the file has (truncated after settling), or fewer
    // (still growing): the put fails and nothing counts as stored.
    for (size, name) in [(data.len() as u64 + 5, "t/short/original"), (data.len() as u64 - 5, "t/long/original")] {
        let e = s.put_file(name, std::fs::File::open(&small).unwrap(), size, &NoJournal).await.unwrap_err();
        assert!(matches!(e, StoreError::SourceChanged { .. }), "{e}");
    }
    for (size, name) in [(n as u64 + 5, "t/bigshort/original"), (n as u64 - 5, "t/biglong/original")] {
        let e = s.put_file(name, std::fs::File::open(&big).unwrap(), size, &NoJournal).await.unwrap_err();
        assert!(matches!(e, StoreError::SourceChanged { .. }), "{e}");
    }

    // Small objects, overwrite, delete, not found.
    s.put_bytes("t/m.json", Bytes::from_static(b"{\"a\":1}"), "application/json").await.unwrap();
    s.put_bytes("t/m.json", Bytes::from_static(b"{\"a\":2}"), "application/json").await.unwrap();
    assert_eq!(read_all(s.as_ref(), "t/m.json", None).await, b"{\"a\":2}");
    s.delete("t/m.json").await.unwrap();
    assert!(matches!(s.size("t/m.json").await, Err(StoreError::NotFound(_))));
    assert!(matches!(s.get("t/nope", None).await.err(), Some(StoreError::NotFound(_))));

    // Listing by prefix: sorted, nested keys included, other prefixes and missing ones empty.
    for k in ["cp/n1/002.json", "cp/n1/001.json", "cp/n2/001.sig", "cpx/other"] {
        s.put_bytes(k, Bytes::from_static(b"x"), "text/plain").await.unwrap();
    }
    assert_eq!(s.list("cp/").await.unwrap(), ["cp/n1/001.json", "cp/n1/002.json", "cp/n2/001.sig"]);
    assert_eq!(s.list("cp/n1/00").await.unwrap(), ["cp/n1/001.json", "cp/n1/002.json"]);
    assert!(s.list("nothing/").await.unwrap().is_empty());
}

#[tokio::test]
async fn fs_store_conformance() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsStore::open(dir.path().join("archive")).unwrap();
    conformance(Arc::new(store), false).await;
    // Archived files are read-only, and so is the directory holding them.
    use std::os::unix::fs::PermissionsExt;
    let f = dir.path().join("archive/t/small/original");
    assert_eq!(std::fs::metadata(&f).unwrap().permissions().mode() & 0o777, 0o444);
    assert_eq!(std::fs::metadata(f.parent().unwrap()).unwrap().permissions().mode() & 0o777, 0o555);
}

#[tokio::test]
async fn fs_store_with_readback_conformance() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsStore::open(dir.path().join("archive")).unwrap().with_readback(true);
    conformance(Arc::new(store), false).await;
}

#[tokio::test]
async fn fs_store_refuses_keys_escaping_the_root() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsStore::open(dir.path().join("archive")).unwrap();
    for key in ["../x", "/etc/passwd", "a/../../b", ""] {
        assert!(store.put_bytes(key, Bytes::from_static(b"x"), "x").await.is_err(), "{key}");
    }
}

#[tokio::test]
async fn s3_store_conformance() {
    let garage = Garage::start().await;
    let store = S3Store::open(&garage.store_config("conformance/")).await.unwrap();
    conformance(Arc::new(store), true).await;
}

#[tokio::test]
async fn s3_sweep_aborts_stray_multipart_uploads_of_this_node_only() {
    let garage = Garage::start().await;
    let cfg = garage.store_config("sweep/");
    let store = S3Store::open(&cfg).await.unwrap();
    let sdk = crate::harness::sdk_client(&garage).await;
    for key in ["sweep/originals/n1/a/original", "sweep/originals/n1/b/original", "sweep/originals/n2/c/original"] {
        sdk.create_multipart_upload().bucket(crate::harness::GARAGE_BUCKET).key(key).send().await.unwrap();
    }
    assert_eq!(store.sweep_uploads("originals/n1/").await.unwrap(), 2);
    assert_eq!(store.sweep_uploads("originals/n1/").await.unwrap(), 0);
    let left = sdk.list_multipart_uploads().bucket(crate::harness::GARAGE_BUCKET).prefix("sweep/").send().await.unwrap();
    assert_eq!(left.uploads().len(), 1, "the other node's upload is untouched");
}

#[tokio::test]
async fn s3_unreachable_is_unavailable_not_fatal() {
    let mut garage = Garage::start().await;
    let store = S3Store::open(&garage.store_config("down/")).await.unwrap();
    garage.stop();
    let e = store.put_bytes("x", Bytes::from_static(b"x"), "x").await.unwrap_err();
    assert!(matches!(e, StoreError::Unavailable { .. }), "{e}");
    assert!(e.to_string().contains(&garage.endpoint()), "the message names the endpoint: {e}");
    assert!(store.check().await.is_err());
}

/// A byte flipped between the daemon and the server: the server's checksum check rejects it.
#[tokio::test]
async fn s3_rejects_a_byte_flipped_in_transit() {
    let garage = Garage::start().await;
    for (size, what) in [(1usize << 20, "single PUT"), (12 << 20, "multipart part")] {
        let proxy = FlipProxy::start(garage.port).await;
        let mut cfg = garage.store_config("flip/");
        cfg.endpoint = Some(format!("http://127.0.0.1:{}", proxy.port));
        let store = S3Store::open(&cfg).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.bin");
        write_random(&p, size, size as u64);
        let e = store.put_file("flip/x/original", std::fs::File::open(&p).unwrap(), size as u64, &NoJournal).await.unwrap_err();
        assert_eq!(proxy.flipped.load(Ordering::SeqCst), 1, "{what}: the proxy flipped a byte");
        assert!(matches!(e, StoreError::Verification { .. } | StoreError::Unavailable { .. }), "{what}: {e}");
        // Nothing half-written counts: a retry (no more flips) stores the true bytes.
        let r = store.put_file("flip/x/original", std::fs::File::open(&p).unwrap(), size as u64, &NoJournal).await.unwrap();
        assert_eq!(r.sha256, crate::harness::sha256_file(&p), "{what}");
    }
}

/// A TCP proxy that flips one byte in the body of the first PUT request it forwards.
pub struct FlipProxy {
    /// Listening port.
    pub port: u16,
    /// How many bytes it flipped (at most one).
    pub flipped: Arc<AtomicUsize>,
}

impl FlipProxy {
    pub async fn start(upstream: u16) -> FlipProxy {
        let flipped = Arc::new(AtomicUsize::new(0));
        let f = flipped.clone();
        // The bool: this connection is inside a PUT body whose first bytes were too few to flip.
        let hook = move |chunk: &mut [u8], in_put_body: &mut bool| {
            if f.load(Ordering::SeqCst) > 0 {
                return std::time::Duration::ZERO;
            }
            let n = chunk.len();
            let text = String::from_utf8_lossy(chunk).into_owned();
            if text.starts_with("PUT ") {
                if let Some(end) = text.find("\r\n\r\n") {
                    *in_put_body = true;
                    if end + 4 + 100 < n {
                        chunk[end + 4 + 100] ^= 0x01;
                        f.fetch_add(1, Ordering::SeqCst);
                        *in_put_body = false;
                    }
                }
            } else if *in_put_body && n > 100 {
                chunk[100] ^= 0x01;
                f.fetch_add(1, Ordering::SeqCst);
                *in_put_body = false;
            }
            std::time::Duration::ZERO
        };
        let port = crate::harness::tcp_proxy(upstream, Arc::new(hook)).await;
        FlipProxy { port, flipped }
    }
}
