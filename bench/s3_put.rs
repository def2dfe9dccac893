//! The plain S3 upload that `bench/nodes.sh` compares evidenced's multi-node ingest with: the
//! same files sent to the same bucket with the same AWS SDK client settings as evidenced's `s3`
//! store (path style, SDK checksums only when required, unsigned payload) and the same upload
//! shape (one PUT below the multipart threshold, else parts of `part_size` with `parts_in_flight`
//! at a time, each read with `read_exact_at` on a blocking thread), `CONCURRENCY` files at a time
//! (evidenced's `ingest.concurrency`). What it leaves out is exactly evidenced's own work: no
//! SHA-256 of the file or of any part, no checksum headers, no HEAD to confirm the object, no
//! catalog, no custody log, no dock release. One process stands for one node; `bench/nodes.sh`
//! starts one per node and times them together.
//!
//!   s3_put ENDPOINT BUCKET PREFIX CONCURRENCY FILE...
//!
//! Credentials from `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`; `S3_PUT_THRESHOLD` (16 MiB),
//! `S3_PUT_PART` (8 MiB) and `S3_PUT_IN_FLIGHT` (3) as evidenced's `store.multipart_threshold`,
//! `store.part_size` and `store.parts_in_flight`. Prints one JSON line: files, bytes, seconds and
//! the process's CPU time (user + system).

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_s3::Client;
use aws_sdk_s3::config::{Region, RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::primitives::{ByteStream, SdkBody};
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::Bytes;
use tokio::task::JoinSet;

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

struct Shape {
    threshold: u64,
    part: u64,
    in_flight: usize,
}

fn read_at(file: &Arc<std::fs::File>, offset: u64, n: usize) -> std::io::Result<Bytes> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; n];
    file.read_exact_at(&mut buf, offset)?;
    Ok(Bytes::from(buf))
}

async fn read_part(file: &Arc<std::fs::File>, offset: u64, n: usize) -> Res<Bytes> {
    let f = file.clone();
    Ok(tokio::task::spawn_blocking(move || read_at(&f, offset, n)).await??)
}

async fn upload(client: &Client, bucket: &str, key: &str, path: PathBuf, shape: &Shape) -> Res<u64> {
    let file = Arc::new(std::fs::File::open(&path)?);
    let size = file.metadata()?.len();
    if size < shape.threshold {
        let body = read_part(&file, 0, size as usize).await?;
        client
            .put_object()
            .bucket(bucket)
            .key(key)
            .content_length(size as i64)
            .body(ByteStream::from(SdkBody::from(body)))
            .customize()
            .disable_payload_signing()
            .send()
            .await?;
        return Ok(size);
    }
    let created = client.create_multipart_upload().bucket(bucket).key(key).send().await?;
    let upload_id = created.upload_id().ok_or("no UploadId")?.to_string();
    let parts = size.div_ceil(shape.part);
    let mut etags = vec![String::new(); parts as usize];
    let mut inflight: JoinSet<Res<(usize, String)>> = JoinSet::new();
    for idx in 0..parts as usize {
        while inflight.len() >= shape.in_flight {
            let (i, e) = inflight.join_next().await.ok_or("no task")???;
            etags[i] = e;
        }
        let offset = idx as u64 * shape.part;
        let chunk = read_part(&file, offset, shape.part.min(size - offset) as usize).await?;
        let (client, bucket, key, uid) = (client.clone(), bucket.to_string(), key.to_string(), upload_id.clone());
        inflight.spawn(async move {
            let out = client
                .upload_part()
                .bucket(bucket)
                .key(key)
                .upload_id(uid)
                .part_number(idx as i32 + 1)
                .content_length(chunk.len() as i64)
                .body(ByteStream::from(SdkBody::from(chunk)))
                .customize()
                .disable_payload_signing()
                .send()
                .await?;
            Ok((idx, out.e_tag().unwrap_or_default().to_string()))
        });
    }
    while let Some(r) = inflight.join_next().await {
        let (i, e) = r??;
        etags[i] = e;
    }
    let done = CompletedMultipartUpload::builder()
        .set_parts(Some((0..parts as usize).map(|i| CompletedPart::builder().part_number(i as i32 + 1).e_tag(&etags[i]).build()).collect()))
        .build();
    client.complete_multipart_upload().bucket(bucket).key(key).upload_id(upload_id).multipart_upload(done).send().await?;
    Ok(size)
}

#[tokio::main]
async fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 5 {
        eprintln!("usage: s3_put ENDPOINT BUCKET PREFIX CONCURRENCY FILE... (bench/nodes.sh runs it)");
        // `cargo test --all-targets` runs this target with test-harness flags: nothing to measure.
        let harness = args.iter().all(|a| a.starts_with("--") || a.parse::<u32>().is_ok());
        std::process::exit(if harness { 0 } else { 2 });
    }
    let (endpoint, bucket, prefix) = (args[0].clone(), args[1].clone(), args[2].clone());
    let concurrency: usize = args[3].parse()?;
    let files: VecDeque<PathBuf> = args[4..].iter().map(PathBuf::from).collect();
    let shape = Arc::new(Shape {
        threshold: env_u64("S3_PUT_THRESHOLD", 16 << 20),
        part: env_u64("S3_PUT_PART", 8 << 20),
        in_flight: env_u64("S3_PUT_IN_FLIGHT", 3) as usize,
    });
    let shared = aws_config::defaults(aws_config::BehaviorVersion::latest()).region(Region::new("garage")).load().await;
    let timeouts = aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(5))
        .read_timeout(Duration::from_secs(60))
        .operation_attempt_timeout(Duration::from_secs(600))
        .build();
    let conf = aws_sdk_s3::config::Builder::from(&shared)
        .force_path_style(true)
        .endpoint_url(endpoint)
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
        .timeout_config(timeouts)
        .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(3))
        .build();
    let client = Client::from_conf(conf);
    let queue = Arc::new(Mutex::new(files));
    let started = Instant::now();
    let mut workers = JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let (client, bucket, prefix, queue, shape) = (client.clone(), bucket.clone(), prefix.clone(), queue.clone(), shape.clone());
        workers.spawn(async move {
            let (mut files, mut bytes) = (0u64, 0u64);
            loop {
                let Some(path) = queue.lock().unwrap().pop_front() else { return Ok::<_, String>((files, bytes)) };
                let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                let key = format!("{prefix}{name}");
                bytes += upload(&client, &bucket, &key, path.clone(), &shape).await.map_err(|e| format!("{}: {e:?}", path.display()))?;
                files += 1;
            }
        });
    }
    let (mut files, mut bytes) = (0u64, 0u64);
    while let Some(r) = workers.join_next().await {
        let (f, b) = r??;
        files += f;
        bytes += b;
    }
    // SAFETY: getrusage only writes the struct it is given.
    let cpu = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut ru);
        let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        tv(ru.ru_utime) + tv(ru.ru_stime)
    };
    println!("{{\"files\": {files}, \"bytes\": {bytes}, \"seconds\": {:.3}, \"cpu_s\": {cpu:.3}}}", started.elapsed().as_secs_f64());
    Ok(())
}
