//! The `s3` store (aws-sdk-s3, any S3-compatible endpoint). Small files: one PUT carrying the
//! full SHA-256 (`x-amz-checksum-sha256`), which the server verifies. Large files: a multipart
//! upload with a few parts in flight, a SHA-256 on every part and the composite (SHA-256 of the
//! part digests) in the completion; afterwards the size and the composite checksum the server
//! reports (`<b64>-N`) are compared with our own. The SDK's automatic CRC32 is switched off
//! (`WhenRequired`) so SHA-256 is the one checksum, computed by us, once. Payload signing is off
//! for uploads: the checksum already guards the body, and signing would hash every byte again.
//!
//! With `object_lock` on (`governance` or `compliance`) the store is WORM: the bucket must have
//! versioning and Object Lock enabled ([`ObjectStore::check_worm`]), `retain` puts a retention
//! date (only ever extended) and the legal hold on the original's exact version, and `delete`
//! removes every version and delete marker of the key; a version still locked comes back as
//! `StoreError::Locked`. The governance bypass header is never sent. PutObjectRetention and
//! PutObjectLegalHold are "checksum required" operations: the SDK adds the checksum itself even
//! with `WhenRequired`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::{Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream as SdkBody;
use aws_sdk_s3::primitives::DateTime as SdkTime;
use aws_sdk_s3::types::{
    BucketVersioningStatus, ChecksumAlgorithm, ChecksumMode, CompletedMultipartUpload, CompletedPart, ObjectLockEnabled,
    ObjectLockLegalHold, ObjectLockLegalHoldStatus, ObjectLockMode, ObjectLockRetention, ObjectLockRetentionMode,
};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::io::ReaderStream;

use super::{ByteStream, ObjectStore, PutReceipt, Result, StoreError, UploadJournal};
use crate::config::StoreConfig;

/// S3's limit on parts per upload.
const MAX_PARTS: u64 = 10_000;

/// An S3-compatible object store.
pub struct S3Store {
    /// The SDK client.
    client: Client,
    /// Bucket holding everything.
    bucket: String,
    /// Key prefix (ends with `/` when non-empty).
    prefix: String,
    /// For messages.
    endpoint: String,
    /// Files at least this large go multipart.
    multipart_threshold: u64,
    /// Minimum part size.
    part_size: u64,
    /// Parts uploaded concurrently.
    parts_in_flight: usize,
    /// Upload buffer budget shared by every upload of this store, in MiB: `(parts_in_flight + 1)
    /// × part_size`. Each part (or small object) holds its size in permits until it is sent, so
    /// memory stays bounded however many files are ingested at once.
    buffers: Arc<Semaphore>,
    /// Total permits of `buffers` (a larger part waits for all of them).
    buffer_mib: u32,
    /// `store.object_lock`: the retention mode originals are locked with, `None` when `off`.
    object_lock: Option<ObjectLockRetentionMode>,
}

impl S3Store {
    /// Waits until `len` bytes of buffer budget are free and holds them.
    async fn reserve(&self, len: u64) -> Result<OwnedSemaphorePermit> {
        let want = (len.div_ceil(1 << 20) as u32).clamp(1, self.buffer_mib);
        self.buffers.clone().acquire_many_owned(want).await.map_err(|_| StoreError::Config("upload buffers closed".into()))
    }
}

/// The shared upload buffer budget in MiB.
fn buffer_mib(parts_in_flight: usize, part_size: u64) -> u32 {
    ((parts_in_flight as u64 + 1) * part_size.div_ceil(1 << 20)).min(u32::MAX as u64 / 2) as u32
}

/// Part size for a file: the configured size, grown (in whole MiB) so the file fits in 10 000 parts.
pub fn part_size_for(size: u64, min_part: u64) -> u64 {
    let needed = size.div_ceil(MAX_PARTS);
    let mib = 1 << 20;
    min_part.max(needed.div_ceil(mib) * mib)
}

/// The composite checksum S3 keeps for a multipart object: base64 SHA-256 of the raw part
/// digests, without the `-N` suffix.
pub fn composite_checksum(part_digests: &[[u8; 32]]) -> String {
    let mut h = Sha256::new();
    for d in part_digests {
        h.update(d);
    }
    B64.encode(h.finalize())
}

impl S3Store {
    /// Builds the client from the config and the standard AWS environment.
    pub async fn open(cfg: &StoreConfig) -> Result<Self> {
        let bucket = cfg.bucket.clone().ok_or_else(|| StoreError::Config("store.bucket is required".into()))?;
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest()).region(Region::new(cfg.region.clone()));
        if let (Some(id), Some(secret)) = (&cfg.access_key_id, &cfg.secret_access_key) {
            loader = loader.credentials_provider(Credentials::new(id, secret, None, None, "evidenced-config"));
        }
        let shared = loader.load().await;
        let timeouts = aws_config::timeout::TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(5))
            .read_timeout(Duration::from_secs(60))
            .operation_attempt_timeout(Duration::from_secs(600))
            .build();
        let mut b = aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(cfg.force_path_style)
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .timeout_config(timeouts)
            .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(3));
        if let Some(ep) = &cfg.endpoint {
            b = b.endpoint_url(ep);
        }
        let mut prefix = cfg.prefix.clone();
        if !prefix.is_empty() && !prefix.ends_with('/') {
            prefix.push('/');
        }
        Ok(Self {
            client: Client::from_conf(b.build()),
            bucket,
            prefix,
            endpoint: cfg.endpoint.clone().unwrap_or_else(|| "AWS".into()),
            multipart_threshold: cfg.multipart_threshold,
            part_size: cfg.part_size,
            parts_in_flight: cfg.parts_in_flight,
            buffers: Arc::new(Semaphore::new(buffer_mib(cfg.parts_in_flight, cfg.part_size) as usize)),
            buffer_mib: buffer_mib(cfg.parts_in_flight, cfg.part_size),
            object_lock: match cfg.object_lock.as_str() {
                "off" => None,
                "governance" => Some(ObjectLockRetentionMode::Governance),
                "compliance" => Some(ObjectLockRetentionMode::Compliance),
                other => return Err(StoreError::Config(format!("store.object_lock = {other:?}: expected off, governance or compliance"))),
            },
        })
    }

    /// The Object Lock mode originals are locked with (`None`: `object_lock = "off"`).
    pub fn object_lock(&self) -> Option<&ObjectLockRetentionMode> {
        self.object_lock.as_ref()
    }

    /// Every version id (delete markers included) of exactly `full_key`.
    async fn versions_of(&self, key: &str, full_key: &str) -> Result<Vec<String>> {
        let mut ids = Vec::new();
        let (mut key_marker, mut id_marker): (Option<String>, Option<String>) = (None, None);
        loop {
            let out = self
                .client
                .list_object_versions()
                .bucket(&self.bucket)
                .prefix(full_key)
                .set_key_marker(key_marker.take())
                .set_version_id_marker(id_marker.take())
                .send()
                .await
                .map_err(|e| self.err(key, e))?;
            let versions = out.versions().iter().map(|v| (v.key(), v.version_id()));
            let markers = out.delete_markers().iter().map(|m| (m.key(), m.version_id()));
            ids.extend(versions.chain(markers).filter(|(k, _)| *k == Some(full_key)).filter_map(|(_, v)| v.map(str::to_string)));
            if out.is_truncated() != Some(true) {
                break;
            }
            key_marker = out.next_key_marker().map(str::to_string);
            id_marker = out.next_version_id_marker().map(str::to_string);
            // Past our key (or no marker to continue from): nothing more of it follows.
            if key_marker.as_deref().is_none_or(|k| k != full_key) {
                break;
            }
        }
        Ok(ids)
    }

    /// Deletes every version and delete marker of `key` (Object Lock on).
    async fn delete_versions(&self, key: &str) -> Result<Vec<String>> {
        let full_key = self.key(key);
        let versions = self.versions_of(key, &full_key).await?;
        for version in &versions {
            let r = self.client.delete_object().bucket(&self.bucket).key(&full_key).version_id(version).send().await;
            let Err(e) = r else { continue };
            let status = e.raw_response().map(|r| r.status().as_u16());
            let code = e.code().unwrap_or("").to_string();
            match (status, code.as_str()) {
                (Some(404), _) | (_, "NoSuchVersion" | "NoSuchKey") => {}
                (Some(403), _) | (_, "AccessDenied" | "InvalidRequest" | "ObjectLocked") => {
                    return Err(StoreError::Locked {
                        store: self.describe(),
                        key: key.into(),
                        message: format!("version {version}: {}", DisplayErrorContext(&e)),
                    });
                }
                _ => return Err(self.err(key, e)),
            }
        }
        Ok(versions)
    }

    fn key(&self, key: &str) -> String {
        format!("{}{}", self.prefix, key)
    }

    /// Maps an SDK error to a store error a caller can act on.
    fn err<E: ProvideErrorMetadata + std::error::Error + 'static>(
        &self,
        key: &str,
        e: SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
    ) -> StoreError {
        let status = e.raw_response().map(|r| r.status().as_u16());
        let code = e.code().unwrap_or("").to_string();
        let message = format!("{}", DisplayErrorContext(&e));
        match (status, code.as_str()) {
            (Some(404), _) | (_, "NoSuchKey") => StoreError::NotFound(key.into()),
            (Some(416), _) | (_, "InvalidRange") => StoreError::Range,
            (Some(400), "BadDigest" | "InvalidDigest" | "XAmzContentSHA256Mismatch" | "InvalidPart" | "IncompleteBody")
            | (_, "BadDigest") => StoreError::Verification { store: self.describe(), key: key.into(), message },
            _ => StoreError::Unavailable { store: self.describe(), message },
        }
    }

    async fn put_small(&self, key: &str, data: Bytes, content_type: &str) -> Result<PutReceipt> {
        let digest: [u8; 32] = Sha256::digest(&data).into();
        let b64 = B64.encode(digest);
        let size = data.len() as u64;
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(self.key(key))
            .content_type(content_type)
            .content_length(size as i64)
            // The algorithm header tells servers that only keep a checksum when it is named
            // (moto) to keep this one; the SDK sends our value and computes nothing itself.
            .checksum_algorithm(ChecksumAlgorithm::Sha256)
            .checksum_sha256(&b64)
            .body(SdkBody::from(data))
            .customize()
            .disable_payload_signing()
            .send()
            .await
            .map_err(|e| self.err(key, e))?;
        self.verify_head(key, size, &b64).await?;
        Ok(PutReceipt { sha256: hex::encode(digest), size })
    }

    /// Confirms the stored object's size and the checksum the server reports.
    async fn verify_head(&self, key: &str, size: u64, expected_b64: &str) -> Result<()> {
        let head = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(self.key(key))
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await
            .map_err(|e| self.err(key, e))?;
        let got_size = head.content_length().unwrap_or(-1);
        let got = head.checksum_sha256().unwrap_or("");
        let got_b64 = got.split('-').next().unwrap_or("");
        if got_size != size as i64 || got_b64 != expected_b64 {
            return Err(StoreError::Verification {
                store: self.describe(),
                key: key.into(),
                message: format!("expected {size} bytes with SHA-256 {expected_b64}, store reports {got_size} bytes with {got:?}"),
            });
        }
        Ok(())
    }

    async fn put_multipart(&self, key: &str, file: std::fs::File, size: u64, journal: &dyn UploadJournal) -> Result<PutReceipt> {
        let full_key = self.key(key);
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(&full_key)
            .checksum_algorithm(ChecksumAlgorithm::Sha256)
            .send()
            .await
            .map_err(|e| self.err(key, e))?;
        let upload_id = created
            .upload_id()
            .ok_or_else(|| StoreError::Unavailable { store: self.describe(), message: "no UploadId in response".into() })?
            .to_string();
        if let Err(e) = journal.upload_started(&upload_id).await {
            let _ = self.abort_upload(key, &upload_id).await;
            return Err(StoreError::Io { context: "journaling upload id".into(), source: std::io::Error::other(e) });
        }
        match self.upload_parts(key, &full_key, &upload_id, file, size).await {
            Ok(r) => Ok(r),
            Err(e) => {
                // Best effort; the journal still holds the id for the next attempt or the sweep.
                let _ = self.abort_upload(key, &upload_id).await;
                Err(e)
            }
        }
    }

    async fn upload_parts(&self, key: &str, full_key: &str, upload_id: &str, file: std::fs::File, size: u64) -> Result<PutReceipt> {
        let part_size = part_size_for(size, self.part_size);
        let parts = size.div_ceil(part_size);
        // Parts are read one at a time, in order, only when an upload slot is free, so at most
        // `parts_in_flight + 1` parts are ever in memory whatever the file size. The full-file
        // hash is updated in the same blocking task that reads the part.
        let file = std::sync::Arc::new(file);
        let mut full = Some(Sha256::new());
        let mut digests = vec![[0u8; 32]; parts as usize];
        let mut etags = vec![String::new(); parts as usize];
        let mut inflight: JoinSet<Result<(usize, String, [u8; 32])>> = JoinSet::new();
        for idx in 0..parts as usize {
            while inflight.len() >= self.parts_in_flight {
                let (i, etag, d) = join(inflight.join_next().await)?;
                etags[i] = etag;
                digests[i] = d;
            }
            let offset = idx as u64 * part_size;
            let n = part_size.min(size - offset) as usize;
            let permit = self.reserve(n as u64).await?;
            let (f, mut hasher) = (file.clone(), full.take().unwrap_or_default());
            let (chunk, hasher) = tokio::task::spawn_blocking(move || {
                use std::os::unix::fs::FileExt;
                let mut buf = vec![0u8; n];
                let r = f.read_exact_at(&mut buf, offset);
                if r.is_ok() {
                    hasher.update(&buf);
                }
                (r.map(|_| Bytes::from(buf)), hasher)
            })
            .await
            .map_err(|e| StoreError::Io { context: "read task".into(), source: std::io::Error::other(e) })?;
            full = Some(hasher);
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    return Err(StoreError::SourceChanged { expected: size, read: offset });
                }
                Err(e) => return Err(StoreError::Io { context: "reading source".into(), source: e }),
            };
            let client = self.client.clone();
            let (bucket, fk, uid) = (self.bucket.clone(), full_key.to_string(), upload_id.to_string());
            let store = self.describe();
            let key = key.to_string();
            inflight.spawn(async move {
                let _permit = permit;
                let digest: [u8; 32] = tokio::task::spawn_blocking({
                    let c = chunk.clone();
                    move || Sha256::digest(&c).into()
                })
                .await
                .map_err(|e| StoreError::Io { context: "hash task".into(), source: std::io::Error::other(e) })?;
                let len = chunk.len() as i64;
                let out = client
                    .upload_part()
                    .bucket(bucket)
                    .key(fk)
                    .upload_id(uid)
                    .part_number(idx as i32 + 1)
                    .content_length(len)
                    .checksum_sha256(B64.encode(digest))
                    .body(SdkBody::from(chunk))
                    .customize()
                    .disable_payload_signing()
                    .send()
                    .await
                    .map_err(|e| part_err(&store, &key, e))?;
                Ok((idx, out.e_tag().unwrap_or_default().to_string(), digest))
            });
        }
        while let Some(r) = inflight.join_next().await {
            let (i, etag, d) = join(Some(r))?;
            etags[i] = etag;
            digests[i] = d;
        }
        // More bytes than the snapshot: the file is still being written.
        let mut probe = [0u8; 1];
        if std::os::unix::fs::FileExt::read_at(file.as_ref(), &mut probe, size).map_err(StoreError::io("reading source"))? != 0 {
            return Err(StoreError::SourceChanged { expected: size, read: size + 1 });
        }
        let composite = composite_checksum(&digests);
        let completed = CompletedMultipartUpload::builder()
            .set_parts(Some(
                (0..parts as usize)
                    .map(|i| {
                        CompletedPart::builder().part_number(i as i32 + 1).e_tag(&etags[i]).checksum_sha256(B64.encode(digests[i])).build()
                    })
                    .collect(),
            ))
            .build();
        self.client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(full_key)
            .upload_id(upload_id)
            .multipart_upload(completed)
            .checksum_sha256(&composite)
            .send()
            .await
            .map_err(|e| self.err(key, e))?;
        self.verify_head(key, size, &composite).await?;
        Ok(PutReceipt { sha256: hex::encode(full.unwrap_or_default().finalize()), size })
    }
}

fn join<T>(r: Option<std::result::Result<Result<T>, tokio::task::JoinError>>) -> Result<T> {
    match r {
        Some(Ok(x)) => x,
        Some(Err(e)) => Err(StoreError::Io { context: "part upload task".into(), source: std::io::Error::other(e) }),
        None => Err(StoreError::Io { context: "part upload task".into(), source: std::io::Error::other("no task") }),
    }
}

fn part_err<E: ProvideErrorMetadata + std::error::Error + 'static>(
    store: &str,
    key: &str,
    e: SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> StoreError {
    let status = e.raw_response().map(|r| r.status().as_u16());
    let message = format!("{}", DisplayErrorContext(&e));
    if status == Some(400) {
        StoreError::Verification { store: store.into(), key: key.into(), message }
    } else {
        StoreError::Unavailable { store: store.into(), message }
    }
}

#[async_trait]
impl ObjectStore for S3Store {
    fn describe(&self) -> String {
        format!("s3://{}/{} at {}", self.bucket, self.prefix, self.endpoint)
    }

    async fn put_file(&self, key: &str, file: std::fs::File, size: u64, journal: &dyn UploadJournal) -> Result<PutReceipt> {
        if size >= self.multipart_threshold {
            return self.put_multipart(key, file, size, journal).await;
        }
        let _permit = self.reserve(size).await?;
        let data = tokio::task::spawn_blocking(move || {
            use std::io::Read;
            let mut buf = Vec::with_capacity(size as usize);
            let mut f = file;
            (&mut f).take(size + 1).read_to_end(&mut buf).map(|_| buf)
        })
        .await
        .map_err(|e| StoreError::Io { context: "read task".into(), source: std::io::Error::other(e) })?
        .map_err(StoreError::io("reading source"))?;
        if data.len() as u64 != size {
            return Err(StoreError::SourceChanged { expected: size, read: data.len() as u64 });
        }
        self.put_small(key, Bytes::from(data), "application/octet-stream").await
    }

    async fn put_bytes(&self, key: &str, data: Bytes, content_type: &str) -> Result<PutReceipt> {
        self.put_small(key, data, content_type).await
    }

    async fn get(&self, key: &str, range: Option<(u64, u64)>) -> Result<ByteStream> {
        let mut req = self.client.get_object().bucket(&self.bucket).key(self.key(key));
        if let Some((start, len)) = range {
            if len == 0 {
                return Ok(Box::pin(futures_util::stream::empty()));
            }
            req = req.range(format!("bytes={}-{}", start, start + len - 1));
        }
        let out = req.send().await.map_err(|e| self.err(key, e))?;
        Ok(Box::pin(ReaderStream::with_capacity(out.body.into_async_read(), 256 * 1024)))
    }

    async fn size(&self, key: &str) -> Result<u64> {
        let head = self.client.head_object().bucket(&self.bucket).key(self.key(key)).send().await.map_err(|e| self.err(key, e))?;
        Ok(head.content_length().unwrap_or(0).max(0) as u64)
    }

    async fn delete(&self, key: &str) -> Result<()> {
        if self.object_lock.is_some() {
            // A delete without a version id would only add a delete marker.
            return self.delete_versions(key).await.map(|_| ());
        }
        self.client.delete_object().bucket(&self.bucket).key(self.key(key)).send().await.map_err(|e| self.err(key, e))?;
        Ok(())
    }

    async fn destroy(&self, key: &str) -> Result<Vec<String>> {
        if self.object_lock.is_some() {
            return self.delete_versions(key).await;
        }
        self.delete(key).await.map(|_| Vec::new())
    }

    async fn abort_upload(&self, key: &str, upload_id: &str) -> Result<()> {
        match self.client.abort_multipart_upload().bucket(&self.bucket).key(self.key(key)).upload_id(upload_id).send().await {
            Ok(_) => Ok(()),
            Err(e) => match self.err(key, e) {
                StoreError::NotFound(_) => Ok(()),
                other => Err(other),
            },
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let out = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(self.key(prefix))
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| self.err(prefix, e))?;
            keys.extend(out.contents().iter().filter_map(|o| o.key()).map(|k| k.strip_prefix(&self.prefix).unwrap_or(k).to_string()));
            match out.next_continuation_token() {
                Some(t) if out.is_truncated() == Some(true) => token = Some(t.to_string()),
                _ => break,
            }
        }
        keys.sort();
        Ok(keys)
    }

    async fn sweep_uploads(&self, key_prefix: &str) -> Result<usize> {
        let full_prefix = self.key(key_prefix);
        let mut n = 0;
        let (mut key_marker, mut id_marker): (Option<String>, Option<String>) = (None, None);
        loop {
            let out = self
                .client
                .list_multipart_uploads()
                .bucket(&self.bucket)
                .prefix(&full_prefix)
                .set_key_marker(key_marker.clone())
                .set_upload_id_marker(id_marker.clone())
                .send()
                .await
                .map_err(|e| self.err(key_prefix, e))?;
            for u in out.uploads() {
                if let (Some(k), Some(id)) = (u.key(), u.upload_id()) {
                    let rel = k.strip_prefix(&self.prefix).unwrap_or(k);
                    self.abort_upload(rel, id).await?;
                    n += 1;
                }
            }
            if out.is_truncated() == Some(true) {
                key_marker = out.next_key_marker().map(str::to_string);
                id_marker = out.next_upload_id_marker().map(str::to_string);
                if key_marker.is_none() {
                    break;
                }
            } else {
                break;
            }
        }
        Ok(n)
    }

    async fn check(&self) -> Result<()> {
        self.client.head_bucket().bucket(&self.bucket).send().await.map_err(|e| self.err("(bucket)", e))?;
        Ok(())
    }

    async fn check_worm(&self) -> Result<()> {
        let Some(mode) = &self.object_lock else { return Ok(()) };
        let bucket = &self.bucket;
        let mut missing = Vec::new();
        let status = match self.client.get_bucket_versioning().bucket(bucket).send().await {
            Ok(v) => v.status().map(|s| s.as_str().to_string()),
            // Some S3 emulators (moto 5) answer 200 with a differently named root element the SDK
            // rejects; the <Status> inside is still the answer.
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 200) => {
                let body = e.raw_response().and_then(|r| r.body().bytes()).map(String::from_utf8_lossy).unwrap_or_default();
                body.split_once("<Status>").and_then(|(_, rest)| rest.split_once("</Status>")).map(|(s, _)| s.trim().to_string())
            }
            Err(e) => return Err(self.err("(bucket)", e)),
        };
        match status.as_deref() {
            Some(s) if s == BucketVersioningStatus::Enabled.as_str() => {}
            Some(s) => missing.push(format!("versioning is {s} (must be Enabled)")),
            None => missing.push("versioning was never enabled".to_string()),
        }
        match self.client.get_object_lock_configuration().bucket(bucket).send().await {
            Ok(o) => {
                if o.object_lock_configuration().and_then(|c| c.object_lock_enabled()) != Some(&ObjectLockEnabled::Enabled) {
                    missing.push("Object Lock is not enabled".into());
                }
            }
            Err(e) if e.code() == Some("ObjectLockConfigurationNotFoundError") => {
                missing.push("Object Lock is not enabled (it can only be enabled when the bucket is created)".into())
            }
            Err(e) => return Err(self.err("(bucket)", e)),
        }
        if missing.is_empty() {
            return Ok(());
        }
        Err(StoreError::Config(format!(
            "object_lock = \"{}\" needs versioning and Object Lock on bucket {bucket:?} at {}, but {}",
            mode.as_str().to_ascii_lowercase(),
            self.endpoint,
            missing.join(" and ")
        )))
    }

    async fn retain(&self, key: &str, until_micros: i64, legal_hold: Option<bool>) -> Result<Option<String>> {
        let Some(mode) = &self.object_lock else { return Ok(None) };
        let full_key = self.key(key);
        let head = self.client.head_object().bucket(&self.bucket).key(&full_key).send().await.map_err(|e| self.err(key, e))?;
        let version = match head.version_id() {
            Some(v) if !v.is_empty() && v != "null" => v.to_string(),
            _ => {
                return Err(StoreError::Config(format!(
                    "{key} has no version id in bucket {:?}: versioning must be enabled for object_lock",
                    self.bucket
                )));
            }
        };
        // Whole seconds, rounded up: the lock never ends before the retention date.
        let until = until_micros.div_euclid(1_000_000) + i64::from(until_micros.rem_euclid(1_000_000) != 0);
        // The version's retention now (HeadObject reports it like GetObjectRetention, which not
        // every S3-compatible server implements): only ever extend it, never shorten it. A
        // version already under compliance stays under compliance.
        // A date already past locks nothing (and S3 refuses one): only the legal hold changes.
        let current = head.object_lock_retain_until_date().map(|t| t.secs());
        let now = crate::catalog::now_micros() / 1_000_000;
        if until > now && current.is_none_or(|c| c < until) {
            let mode = match head.object_lock_mode() {
                Some(ObjectLockMode::Compliance) => ObjectLockRetentionMode::Compliance,
                Some(ObjectLockMode::Governance) => ObjectLockRetentionMode::Governance,
                _ => mode.clone(),
            };
            let retention = ObjectLockRetention::builder().mode(mode).retain_until_date(SdkTime::from_secs(until)).build();
            self.client
                .put_object_retention()
                .bucket(&self.bucket)
                .key(&full_key)
                .version_id(&version)
                .retention(retention)
                .send()
                .await
                .map_err(|e| self.err(key, e))?;
        }
        if let Some(on) = legal_hold {
            let status = if on { ObjectLockLegalHoldStatus::On } else { ObjectLockLegalHoldStatus::Off };
            self.client
                .put_object_legal_hold()
                .bucket(&self.bucket)
                .key(&full_key)
                .version_id(&version)
                .legal_hold(ObjectLockLegalHold::builder().status(status).build())
                .send()
                .await
                .map_err(|e| self.err(key, e))?;
        }
        Ok(Some(version))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_always_fit() {
        let min = 8 << 20;
        assert_eq!(part_size_for(100, min), min);
        for size in [80u64 << 30, 1 << 40, 5 << 40] {
            let p = part_size_for(size, min);
            assert!(size.div_ceil(p) <= MAX_PARTS, "{size} {p}");
            assert_eq!(p % (1 << 20), 0);
        }
    }

    #[test]
    fn composite_is_hash_of_part_digests() {
        let a: [u8; 32] = Sha256::digest(b"a").into();
        let b: [u8; 32] = Sha256::digest(b"b").into();
        let mut cat = a.to_vec();
        cat.extend_from_slice(&b);
        assert_eq!(composite_checksum(&[a, b]), B64.encode(Sha256::digest(&cat)));
    }
}
