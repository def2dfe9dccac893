//! WORM originals on S3 with Object Lock, against a real moto server (`moto_server`; Garage has
//! no Object Lock). Each test starts its own moto on a free port with two buckets: one created
//! with Object Lock (which turns versioning on) and one plain.
//!
//! What moto 5.x enforces, and so what these tests can prove: a version under retention
//! (GOVERNANCE without the bypass header, or COMPLIANCE) or under a legal hold cannot be deleted
//! by version id, and can be once the date has passed and the hold is off. What it does not:
//! it never refuses to shorten or weaken a retention (COMPLIANCE can be shortened, GOVERNANCE
//! without a bypass too), so "retain only ever extends" is proven here against our own client
//! logic; it has no GetObjectRetention (the lock is read from HeadObject, as the store does);
//! and it does not verify request checksums (Garage does, in tests/it/store.rs).

use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::TryStreamExt;

use evidenced::store::s3::S3Store;
use evidenced::store::{ObjectStore, StoreError};

use crate::harness::{Daemon, DaemonSpec, free_port, wait_for, write_random};

/// The bucket created with Object Lock.
const LOCKED: &str = "worm-locked";
/// The bucket without it.
const PLAIN: &str = "worm-plain";

/// A private moto S3 server with the two buckets; killed (its whole process group) on drop.
pub struct Moto {
    /// S3 API port.
    pub port: u16,
    /// The server process (leader of its own process group).
    child: Child,
}

impl Moto {
    /// Starts `moto_server`, waits until it answers and creates the buckets.
    pub async fn start() -> Moto {
        let port = free_port();
        let log = tempfile::tempfile().unwrap();
        let child = std::os::unix::process::CommandExt::process_group(
            Command::new("moto_server").args(["-H", "127.0.0.1", "-p", &port.to_string()]).stdout(Stdio::null()).stderr(log),
            0,
        )
        .spawn()
        .expect("moto_server is required (pip install --break-system-packages 'moto[server]'; scripts/test installs it)");
        let moto = Moto { port, child };
        wait_for("moto to listen", Duration::from_secs(30), || async move {
            reqwest::get(format!("http://127.0.0.1:{port}/")).await.ok().map(|_| ())
        })
        .await;
        let c = moto.client();
        c.create_bucket().bucket(LOCKED).object_lock_enabled_for_bucket(true).send().await.unwrap();
        c.create_bucket().bucket(PLAIN).send().await.unwrap();
        moto
    }

    /// Endpoint URL.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A plain SDK client (any credentials do for moto).
    pub fn client(&self) -> aws_sdk_s3::Client {
        let creds = aws_sdk_s3::config::Credentials::new("test", "test", None, None, "t");
        let conf = aws_sdk_s3::config::Builder::new()
            .behavior_version_latest()
            .region(aws_sdk_s3::config::Region::new("us-east-1"))
            .endpoint_url(self.endpoint())
            .credentials_provider(creds)
            .force_path_style(true)
            .build();
        aws_sdk_s3::Client::from_conf(conf)
    }

    /// The `[store]` section for `bucket` with `object_lock = lock`.
    pub fn store_toml(&self, bucket: &str, prefix: &str, lock: &str) -> String {
        format!(
            "[store]\nkind = \"s3\"\nbucket = \"{bucket}\"\nprefix = \"{prefix}\"\nendpoint = \"{}\"\nregion = \"us-east-1\"\n\
             force_path_style = true\naccess_key_id = \"test\"\nsecret_access_key = \"test\"\nobject_lock = \"{lock}\"\n",
            self.endpoint()
        )
    }

    /// A store config for `bucket`.
    pub fn store_config(&self, bucket: &str, prefix: &str, lock: &str) -> evidenced::config::StoreConfig {
        let toml = format!("[catalog]\nurl = \"sqlite://x.db\"\n{}", self.store_toml(bucket, prefix, lock));
        evidenced::config::Config::from_toml("test", &toml, std::iter::empty()).unwrap().store
    }

    /// An opened store on `bucket`.
    pub async fn store(&self, bucket: &str, prefix: &str, lock: &str) -> S3Store {
        S3Store::open(&self.store_config(bucket, prefix, lock)).await.unwrap()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        // SAFETY: signalling the process group this test created.
        unsafe { libc::kill(-(self.child.id() as i32), libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

/// Micros to whole seconds, rounded up (as the store rounds retention dates).
fn secs_up(micros: i64) -> i64 {
    (micros as u64).div_ceil(1_000_000) as i64
}

fn now_micros() -> i64 {
    evidenced::catalog::now_micros()
}

/// The version's retention date (seconds) and mode as HeadObject reports them.
async fn lock_of(c: &aws_sdk_s3::Client, key: &str, version: &str) -> (Option<i64>, Option<String>, Option<String>) {
    let h = c.head_object().bucket(LOCKED).key(key).version_id(version).send().await.unwrap();
    (
        h.object_lock_retain_until_date().map(|t| t.secs()),
        h.object_lock_mode().map(|m| m.as_str().to_string()),
        h.object_lock_legal_hold_status().map(|s| s.as_str().to_string()),
    )
}

/// Every (version id, is delete marker) of exactly `key`.
async fn versions(c: &aws_sdk_s3::Client, key: &str) -> Vec<(String, bool)> {
    let out = c.list_object_versions().bucket(LOCKED).prefix(key).send().await.unwrap();
    let v = out.versions().iter().filter(|v| v.key() == Some(key)).map(|v| (v.version_id().unwrap_or("").to_string(), false));
    let m = out.delete_markers().iter().filter(|m| m.key() == Some(key)).map(|m| (m.version_id().unwrap_or("").to_string(), true));
    v.chain(m).collect()
}

async fn read_all(s: &dyn ObjectStore, key: &str) -> Vec<u8> {
    let chunks: Vec<Bytes> = s.get(key, None).await.unwrap().try_collect().await.unwrap();
    chunks.concat()
}

#[tokio::test]
async fn worm_check_needs_versioning_and_object_lock() {
    let moto = Moto::start().await;
    moto.store(LOCKED, "", "compliance").await.check_worm().await.unwrap();
    let e = moto.store(PLAIN, "", "governance").await.check_worm().await.unwrap_err();
    assert!(matches!(e, StoreError::Config(_)), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains(PLAIN) && msg.contains("versioning") && msg.contains("Object Lock"),
        "names the bucket and what is missing: {msg}"
    );
    // Lock off: nothing to check, nothing to lock.
    let off = moto.store(PLAIN, "", "off").await;
    off.check_worm().await.unwrap();
    off.put_bytes("k", Bytes::from_static(b"x"), "text/plain").await.unwrap();
    assert_eq!(off.retain("k", now_micros() + 3_600_000_000, Some(true)).await.unwrap(), None);

    // The daemon refuses to start on the plain bucket, naming it.
    let dir = tempfile::tempdir().unwrap();
    let mut spec = DaemonSpec::station(dir.path());
    spec.store_toml = moto.store_toml(PLAIN, "d/", "compliance");
    let d = Daemon::configure(dir.path(), &spec);
    let mut child = Command::new(crate::harness::bin())
        .arg("--config")
        .arg(&d.config)
        .arg("run")
        .current_dir(&d.dir)
        .env_remove("NOTIFY_SOCKET")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the daemon kept running on a bucket without Object Lock");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(!status.success(), "non-zero exit; stderr:\n{stderr}");
    assert!(stderr.contains(PLAIN) && stderr.contains("object_lock"), "stderr names the bucket and the setting:\n{stderr}");
}

/// Locks a fresh object in `mode`; a delete of the locked version fails whichever way it is
/// asked, and the bytes stay readable.
async fn locked_version_survives_deletes(mode: &str) {
    let moto = Moto::start().await;
    let store = moto.store(LOCKED, "p/", mode).await;
    let c = moto.client();
    store.check_worm().await.unwrap();
    store.put_bytes("r1/original", Bytes::from_static(b"evidence bytes"), "application/octet-stream").await.unwrap();
    let until = now_micros() + 3_600_000_000;
    let version = store.retain("r1/original", until, Some(false)).await.unwrap().expect("a version id");
    let (date, m, hold) = lock_of(&c, "p/r1/original", &version).await;
    let want = secs_up(until);
    assert_eq!(date, Some(want), "locked to the date, rounded up to the second");
    assert_eq!(m.as_deref(), Some(mode.to_ascii_uppercase().as_str()));
    assert_eq!(hold.as_deref(), Some("OFF"));

    let direct = c.delete_object().bucket(LOCKED).key("p/r1/original").version_id(&version).send().await;
    assert!(direct.is_err(), "{mode}: a direct DeleteObject of the locked version must fail");
    let e = store.delete("r1/original").await.unwrap_err();
    assert!(matches!(e, StoreError::Locked { .. }), "{mode}: {e}");
    assert!(e.to_string().contains("r1/original"), "{e}");
    assert_eq!(read_all(&store, "r1/original").await, b"evidence bytes");
    assert!(versions(&c, "p/r1/original").await.contains(&(version.clone(), false)));

    // The governance bypass (which the daemon never sends) is what separates the modes.
    let bypass = c.delete_object().bucket(LOCKED).key("p/r1/original").version_id(&version).bypass_governance_retention(true).send().await;
    assert_eq!(bypass.is_ok(), mode == "governance", "{mode}: bypass delete");
}

#[tokio::test]
async fn worm_compliance_lock_refuses_deletes() {
    locked_version_survives_deletes("compliance").await;
}

#[tokio::test]
async fn worm_governance_lock_refuses_deletes_without_bypass() {
    locked_version_survives_deletes("governance").await;
}

#[tokio::test]
async fn worm_retain_never_shortens() {
    let moto = Moto::start().await;
    // Through a proxy that keeps the head of every lock request, to see its checksum header.
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let hook = {
        let seen = seen.clone();
        move |chunk: &mut [u8], _: &mut bool| {
            let text = String::from_utf8_lossy(chunk);
            if text.starts_with("PUT ") && (text.contains("?retention") || text.contains("?legal-hold")) {
                seen.lock().unwrap().push(text.split("\r\n\r\n").next().unwrap_or("").to_ascii_lowercase());
            }
            Duration::ZERO
        }
    };
    let proxy = crate::harness::tcp_proxy(moto.port, Arc::new(hook)).await;
    let mut store = moto.store_config(LOCKED, "", "compliance");
    store.endpoint = Some(format!("http://127.0.0.1:{proxy}"));
    let store = S3Store::open(&store).await.unwrap();
    let c = moto.client();
    store.put_bytes("r2/original", Bytes::from_static(b"x"), "application/octet-stream").await.unwrap();
    let two_h = now_micros() + 7_200_000_000;
    let v1 = store.retain("r2/original", two_h, None).await.unwrap().unwrap();
    let v2 = store.retain("r2/original", now_micros() + 3_600_000_000, None).await.unwrap().unwrap();
    assert_eq!(v1, v2, "the same version");
    assert_eq!(lock_of(&c, "r2/original", &v1).await.0, Some(secs_up(two_h)), "the later date stays");
    // Extending works.
    let three_h = now_micros() + 10_800_000_000;
    store.retain("r2/original", three_h, None).await.unwrap();
    assert_eq!(lock_of(&c, "r2/original", &v1).await.0, Some(secs_up(three_h)));
    // S3 requires Content-MD5 or a checksum on these requests: the SDK adds a CRC32 itself
    // (checksum "required" operations, even with `WhenRequired`). moto does not check it.
    store.retain("r2/original", three_h, Some(true)).await.unwrap();
    let seen = seen.lock().unwrap();
    assert!(seen.iter().any(|h| h.contains("?retention")) && seen.iter().any(|h| h.contains("?legal-hold")), "{seen:?}");
    for head in seen.iter() {
        assert!(head.contains("x-amz-checksum-crc32:") || head.contains("content-md5:"), "no checksum header: {head}");
        assert!(!head.contains("x-amz-bypass-governance-retention"), "never the bypass header: {head}");
    }
}

#[tokio::test]
async fn worm_legal_hold_outlives_the_date_and_delete_removes_every_version() {
    let moto = Moto::start().await;
    let store = moto.store(LOCKED, "", "governance").await;
    let c = moto.client();
    let key = "r3/original";
    // An older version and the current one: only the current one is locked.
    store.put_bytes(key, Bytes::from_static(b"first try"), "application/octet-stream").await.unwrap();
    store.put_bytes(key, Bytes::from_static(b"the original"), "application/octet-stream").await.unwrap();
    let until = now_micros() + 2_000_000;
    let version = store.retain(key, until, Some(true)).await.unwrap().unwrap();
    assert_eq!(lock_of(&c, key, &version).await.2.as_deref(), Some("ON"));
    // Wait out the retention date: the legal hold still protects the version.
    tokio::time::sleep(Duration::from_micros((until - now_micros()).max(0) as u64 + 1_500_000)).await;
    let direct = c.delete_object().bucket(LOCKED).key(key).version_id(&version).send().await;
    assert!(direct.is_err(), "a held version cannot be deleted after its date");
    assert!(matches!(store.delete(key).await, Err(StoreError::Locked { .. })));
    assert_eq!(read_all(&store, key).await, b"the original");

    // Lift the hold (the date is past: no new retention is set), add a delete marker, delete.
    assert_eq!(store.retain(key, until, Some(false)).await.unwrap().as_deref(), Some(version.as_str()));
    assert_eq!(lock_of(&c, key, &version).await.2.as_deref(), Some("OFF"));
    c.delete_object().bucket(LOCKED).key(key).send().await.unwrap();
    let before = versions(&c, key).await;
    assert_eq!(before.len(), 3, "two versions and a delete marker: {before:?}");
    // `destroy` (what the retention worker calls) returns the version ids it deleted, for the tombstone.
    let mut gone = store.destroy(key).await.unwrap();
    gone.sort();
    let mut want: Vec<String> = before.iter().map(|(v, _)| v.clone()).collect();
    want.sort();
    assert_eq!(gone, want, "destroy names every version it deleted");
    assert!(versions(&c, key).await.is_empty(), "every version and marker is gone");
    // Deleting what is already gone is fine.
    store.delete(key).await.unwrap();
}

/// The daemon locks an ingested original to its retention date.
#[tokio::test]
async fn worm_daemon_locks_originals_to_their_retention_date() {
    let moto = Moto::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut spec = DaemonSpec::station(dir.path());
    spec.store_toml = moto.store_toml(LOCKED, "e2e/", "governance");
    spec.extra = "[retention.categories]\nuncategorized = \"1h\"\n".into();
    let mut d = Daemon::configure(dir.path(), &spec);
    let src = dir.path().join("import");
    std::fs::create_dir_all(&src).unwrap();
    write_random(&src.join("BWC1_P1_20260101120000_1.mp4"), 200_000, 7);
    let (code, out, err) = d.cli(&["ingest", "--quiet", src.to_str().unwrap()]);
    assert_eq!(code, 0, "ingest: {out}{err}");
    d.start().await;
    let rec = d.wait_recordings(1, Duration::from_secs(30)).await.remove(0);
    let id = rec["id"].as_str().unwrap().to_string();
    let event = wait_for("worm_locked custody event", Duration::from_secs(60), || {
        let (d, id) = (&d, &id);
        async move {
            let v = d.json(&format!("/api/v1/recordings/{id}/custody")).await;
            v["items"].as_array().unwrap().iter().find(|e| e["kind"] == "worm_locked").cloned()
        }
    })
    .await;
    let details = &event["details"];
    assert_eq!(details["mode"], "governance");
    assert_eq!(details["legal_hold"], false);
    let key = format!("e2e/{}", details["key"].as_str().unwrap());
    let version = details["version_id"].as_str().unwrap();
    let rec = d.json(&format!("/api/v1/recordings/{id}")).await;
    let retention_until = chrono::DateTime::parse_from_rfc3339(rec["retention_until"].as_str().unwrap()).unwrap().timestamp_micros();
    assert_eq!(details["until"], rec["retention_until"], "the event names the recording's retention date");
    let c = moto.client();
    let (date, mode, _) = lock_of(&c, &key, version).await;
    assert_eq!(date, Some(secs_up(retention_until)), "locked to the retention date");
    assert_eq!(mode.as_deref(), Some("GOVERNANCE"));
    let direct = c.delete_object().bucket(LOCKED).key(&key).version_id(version).send().await;
    assert!(direct.is_err(), "a direct delete of the locked original fails");

    // A legal hold placed through the API is mirrored onto the same version.
    let archivist = d.token_create(&["--name", "arch", "--role", "archivist"]);
    let (status, _) = d
        .call(
            reqwest::Method::PUT,
            &format!("/api/v1/recordings/{id}/hold"),
            &archivist,
            Some(serde_json::json!({"reason": "court order"})),
        )
        .await;
    assert_eq!(status, 200);
    wait_for("worm_locked event with the hold", Duration::from_secs(60), || {
        let (d, id) = (&d, &id);
        async move {
            let v = d.json(&format!("/api/v1/recordings/{id}/custody")).await;
            v["items"].as_array().unwrap().iter().find(|e| e["kind"] == "worm_locked" && e["details"]["legal_hold"] == true).cloned()
        }
    })
    .await;
    assert_eq!(lock_of(&c, &key, version).await.2.as_deref(), Some("ON"), "the legal hold is on the original's version");
    d.stop();
}
