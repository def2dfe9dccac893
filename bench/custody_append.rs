//! Custody append throughput on one catalog: `evidenced`'s chained append (chain-head lock, head
//! read, RFC 8785 + SHA-256, insert, commit) against a plain one-row INSERT transaction of the
//! same row shape on the same database (the cost of a durable commit alone), with 1 and 4
//! concurrent writers. Run by `bench/custody.sh`; prints one JSON object per measurement.
//!
//! Usage: custody_append CATALOG_URL N

use std::sync::Arc;
use std::time::Instant;

use evidenced::catalog::{self, Catalog};

/// Appends `n` entries split over `writers` tasks; returns seconds.
async fn chained(c: Arc<dyn Catalog>, n: usize, writers: usize) -> f64 {
    let t = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..n / writers {
                let d = serde_json::json!({"writer": w, "i": i, "sha256": "ab".repeat(32), "path": "/srv/dock/BWC1/BWC1_P1_20260101120000_1.mp4"});
                c.append_custody("accessed", "bench", Some("rec"), d).await.expect("append");
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    t.elapsed().as_secs_f64()
}

/// The same number of plain one-row INSERT transactions (no lock, no chain, no hashing).
macro_rules! plain {
    ($pool:expr, $n:expr, $writers:expr) => {{
        let (n, writers) = ($n, $writers);
        let pool = $pool;
        let _ = sqlx::query("DROP TABLE IF EXISTS bench_plain").execute(&pool).await;
        sqlx::query(
            "CREATE TABLE bench_plain (seq BIGINT, at BIGINT, kind TEXT, actor TEXT, recording_id TEXT, details TEXT, prev_hash TEXT, hash TEXT)",
        )
        .execute(&pool)
        .await
        .expect("create");
        let t = Instant::now();
        let mut tasks = Vec::new();
        for w in 0..writers {
            let pool = pool.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..n / writers {
                    let d = serde_json::json!({"writer": w, "i": i, "sha256": "ab".repeat(32), "path": "/srv/dock/BWC1/BWC1_P1_20260101120000_1.mp4"});
                    let mut tx = pool.begin().await.expect("begin");
                    sqlx::query("INSERT INTO bench_plain VALUES ($1, $2, 'accessed', 'bench', 'rec', $3, $4, $5)")
                        .bind(i as i64)
                        .bind(catalog::now_micros())
                        .bind(d.to_string())
                        .bind("0".repeat(64))
                        .bind("1".repeat(64))
                        .execute(&mut *tx)
                        .await
                        .expect("insert");
                    tx.commit().await.expect("commit");
                }
            }));
        }
        for t in tasks {
            t.await.expect("task");
        }
        let s = t.elapsed().as_secs_f64();
        let _ = sqlx::query("DROP TABLE bench_plain").execute(&pool).await;
        s
    }};
}

async fn plain(url: &str, n: usize, writers: usize) -> f64 {
    use std::str::FromStr;
    if url.starts_with("sqlite:") {
        // Same settings as the catalog: WAL, synchronous FULL, a busy timeout.
        let opts = sqlx::sqlite::SqliteConnectOptions::from_str(url)
            .expect("url")
            .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
            .synchronous(sqlx::sqlite::SqliteSynchronous::Full)
            .busy_timeout(std::time::Duration::from_secs(30));
        let pool = sqlx::sqlite::SqlitePoolOptions::new().max_connections(8).connect_with(opts).await.expect("connect");
        plain!(pool, n, writers)
    } else {
        let pool = sqlx::postgres::PgPoolOptions::new().max_connections(8).connect(url).await.expect("connect");
        plain!(pool, n, writers)
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let url = args.get(1).filter(|u| u.starts_with("sqlite:") || u.starts_with("postgres"));
    let (Some(url), Some(n)) = (url, args.get(2).and_then(|n| n.parse::<usize>().ok())) else {
        eprintln!("usage: custody_append CATALOG_URL N (bench/custody.sh runs it)");
        // `cargo test --all-targets` runs this target with test-harness flags: nothing to measure.
        let harness = args.iter().skip(1).all(|a| a.starts_with("--") || a.parse::<u32>().is_ok());
        std::process::exit(if harness { 0 } else { 2 });
    };
    let c = catalog::open(url, 8).await.expect("open catalog");
    let backend = c.backend();
    for writers in [1, 4] {
        let base = plain(url, n, writers).await;
        let ours = chained(c.clone(), n, writers).await;
        println!(
            "{}",
            serde_json::json!({
                "backend": backend, "writers": writers, "entries": n,
                "plain_per_sec": (n as f64 / base).round(), "evidenced_per_sec": (n as f64 / ours).round(),
                "ratio": ours / base,
            })
        );
    }
}
