//! Retention at scale on one catalog: seeds N recordings (E of them past a 184-day retention, the
//! rest recent, 1 % held), then times, each against a plain baseline on the same database:
//! planning (`Policy::plan`: the expired, unheld recordings not in open cases) against the bare
//! `SELECT id ... WHERE archived_at < cutoff` scan; queuing the E recordings (one transaction and
//! custody event each) and approving them, against plain one-row INSERT transactions; destroying
//! them from an `fs` store (objects deleted, tombstones, custody events) against `unlink` of the
//! same number of files. Run by `bench/retention.sh`; prints one JSON object.
//!
//! Usage: retention_scale CATALOG_URL STORE_DIR N E

use std::sync::Arc;
use std::time::Instant;

use evidenced::catalog::{self, Catalog};
use evidenced::config::RetentionConfig;
use evidenced::retention::{Policy, RetentionWorker};

const DAY: i64 = 86_400_000_000;

/// Inserts `n` recordings in multi-row statements; the first `expired` are 400 days old.
async fn seed(url: &str, n: usize, expired: usize) -> f64 {
    let now = catalog::now_micros();
    let t = Instant::now();
    macro_rules! fill {
        ($pool:expr, $db:ty) => {{
            let pool = $pool;
            let mut i = 0;
            while i < n {
                let chunk = (n - i).min(2000);
                let mut tx = pool.begin().await.expect("begin");
                let mut qb = sqlx::QueryBuilder::<$db>::new(
                    "INSERT INTO recordings (id, sha256, size, object_key, manifest_key, original_name, extension, \
                     archived_at, sort_at, node, legal_hold) ",
                );
                qb.push_values(i..i + chunk, |mut b, k| {
                    let id = format!("r{k:09}");
                    let at = if k < expired { now - 400 * DAY } else { now - (k % 100) as i64 * DAY };
                    b.push_bind(id.clone())
                        .push_bind(format!("{k:064x}"))
                        .push_bind(1i64)
                        .push_bind(format!("originals/bench/{id}/original"))
                        .push_bind(format!("originals/bench/{id}/manifest.json"))
                        .push_bind(format!("{id}.mp4"))
                        .push_bind("mp4")
                        .push_bind(at)
                        .push_bind(at)
                        .push_bind("bench")
                        .push_bind(k % 100 == 99);
                });
                qb.build().execute(&mut *tx).await.expect("insert");
                tx.commit().await.expect("commit");
                i += chunk;
            }
        }};
    }
    if url.starts_with("sqlite:") {
        fill!(sqlx::SqlitePool::connect(url).await.expect("connect"), sqlx::Sqlite);
    } else {
        fill!(sqlx::PgPool::connect(url).await.expect("connect"), sqlx::Postgres);
    }
    t.elapsed().as_secs_f64()
}

/// The baselines: the bare scan, and `k` plain one-row INSERT transactions.
async fn baselines(url: &str, k: usize) -> (f64, f64) {
    let cutoff = catalog::now_micros() - 184 * DAY;
    macro_rules! run {
        ($pool:expr) => {{
            let pool = $pool;
            let t = Instant::now();
            let rows: Vec<(String,)> =
                sqlx::query_as("SELECT id FROM recordings WHERE archived_at < $1").bind(cutoff).fetch_all(&pool).await.expect("scan");
            assert!(!rows.is_empty());
            let scan = t.elapsed().as_secs_f64();
            sqlx::query("CREATE TABLE bench_plain (id TEXT, at BIGINT)").execute(&pool).await.expect("create");
            let t = Instant::now();
            for i in 0..k {
                let mut tx = pool.begin().await.expect("begin");
                sqlx::query("INSERT INTO bench_plain VALUES ($1, $2)")
                    .bind(i.to_string())
                    .bind(i as i64)
                    .execute(&mut *tx)
                    .await
                    .expect("insert");
                tx.commit().await.expect("commit");
            }
            let inserts = t.elapsed().as_secs_f64();
            sqlx::query("DROP TABLE bench_plain").execute(&pool).await.expect("drop");
            (scan, inserts)
        }};
    }
    if url.starts_with("sqlite:") {
        run!(sqlx::SqlitePool::connect(url).await.expect("connect"))
    } else {
        run!(sqlx::PgPool::connect(url).await.expect("connect"))
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let url = args.get(1).filter(|u| u.starts_with("sqlite:") || u.starts_with("postgres"));
    let (Some(url), Some(dir), Some(n), Some(e)) =
        (url, args.get(2), args.get(3).and_then(|n| n.parse::<usize>().ok()), args.get(4).and_then(|n| n.parse::<usize>().ok()))
    else {
        eprintln!("usage: retention_scale CATALOG_URL STORE_DIR N E (bench/retention.sh runs it)");
        // `cargo test --all-targets` runs this target with test-harness flags: nothing to measure.
        let harness = args.iter().skip(1).all(|a| a.starts_with("--") || a.parse::<u32>().is_ok());
        std::process::exit(if harness { 0 } else { 2 });
    };
    let c: Arc<dyn Catalog> = catalog::open(url, 8).await.expect("open catalog");
    let seed_s = seed(url, n, e).await;
    // The objects of the expired recordings (tiny files), and as many more for the unlink baseline.
    let store_dir = std::path::Path::new(dir);
    for k in 0..e {
        let d = store_dir.join(format!("archive/originals/bench/r{k:09}"));
        std::fs::create_dir_all(&d).expect("mkdir");
        std::fs::write(d.join("original"), b"x").expect("write");
        let p = store_dir.join(format!("plain/{k}"));
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, b"x").expect("write");
    }
    let store: Arc<dyn evidenced::store::ObjectStore> =
        Arc::new(evidenced::store::fs::FsStore::open(store_dir.join("archive")).expect("store"));
    let cfg = RetentionConfig { grace: std::time::Duration::ZERO, approvals: 1, ..Default::default() };
    let policy = Policy::from_config(&cfg);
    let worker = RetentionWorker {
        catalog: c.clone(),
        store,
        policy: policy.clone(),
        sweep: std::time::Duration::from_secs(3600),
        actor: "node:bench".into(),
        last_sweep: None,
    };

    let t = Instant::now();
    let plan = policy.plan(&*c, usize::MAX).await.expect("plan");
    let plan_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let queued = worker.queue_expired().await.expect("queue");
    let queue_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    for d in c.destructions(Some("pending"), i64::MAX).await.expect("list") {
        c.approve_destruction(&d.id, "arch1", "bench").await.expect("approve");
    }
    let approve_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let mut destroyed = 0;
    loop {
        let n = worker.destroy_due().await.expect("destroy");
        if n == 0 {
            break;
        }
        destroyed += n;
    }
    let destroy_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    for k in 0..e {
        std::fs::remove_file(store_dir.join(format!("plain/{k}"))).expect("unlink");
    }
    let unlink_s = t.elapsed().as_secs_f64();
    let (scan_s, inserts_s) = baselines(url, e).await;
    println!(
        "{}",
        serde_json::json!({
            "backend": c.backend(), "recordings": n, "expired": e, "held": n / 100, "planned": plan.len(), "queued": queued,
            "destroyed": destroyed, "seed_s": seed_s, "plan_s": plan_s, "scan_s": scan_s, "queue_s": queue_s,
            "approve_s": approve_s, "inserts_s": inserts_s, "destroy_s": destroy_s, "unlink_s": unlink_s,
        })
    );
}
