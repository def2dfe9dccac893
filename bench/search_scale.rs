//! Search at scale (run by `bench/search.sh`). Three steps, each a subcommand:
//!
//! - `seed CATALOG_URL N`: opens the catalog (so its migrations run), seeds N recordings with
//!   realistic distributions (about 2 000 officers, 800 devices, a 3-level unit tree of 30 × 4 × 3
//!   units, start times over 2 years inserted in roughly chronological order, 5 % needing review,
//!   a few categories, 2 % linked to one of 5 000 cases), then `VACUUM ANALYZE` (PostgreSQL) or
//!   `ANALYZE` (SQLite). Prints one JSON object: timings, shares and the sample values the filters
//!   use (a typical officer, device, city, case, day).
//! - `proxy-of CATALOG_URL ORIGINAL_NAME`: prints `id proxy_key proxy_size` of the recording of
//!   that name once its proxy exists; exits 3 while it does not.
//! - `measure CATALOG_URL BASE_URL SAMPLES_JSON PLANS_OUT`: for every filter, the same query
//!   through `Catalog::list_recordings` in this process (the baseline), over HTTP against the
//!   running daemon sequentially, and over HTTP from several concurrent clients. Prints one JSON
//!   object per filter. Writes the query plans (PostgreSQL `EXPLAIN ANALYZE`, SQLite
//!   `EXPLAIN QUERY PLAN`) of the statement `list_recordings` builds to PLANS_OUT. Tokens come in
//!   the environment (`BENCH_TOKEN_SUPERVISOR`, `BENCH_TOKEN_OFFICER`, `BENCH_TOKEN_CITY`), sizes in
//!   `BENCH_REQUESTS` (sequential requests per filter, default 300), `BENCH_CLIENTS` (8) and
//!   `BENCH_CONC_REQUESTS` (total concurrent requests per filter, default 2 × BENCH_REQUESTS); a
//!   phase stops early after `BENCH_PHASE_SECONDS` (30) with at least 10 samples.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use evidenced::catalog::{self, RecordingFilter};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

const DAY: i64 = 86_400_000_000;
const HOUR: i64 = 3_600_000_000;
const PROVINCES: [&str; 30] = [
    "JS", "ZJ", "GD", "SD", "HA", "HB", "HN", "HE", "SC", "FJ", "AH", "JX", "SX", "SN", "GX", "YN", "GZ", "LN", "JL", "HL", "NM", "GS",
    "QH", "NX", "XJ", "HI", "CQ", "TJ", "SH", "BJ",
];
const CITIES: usize = 4;
const STATIONS: usize = 3;
const OFFICERS: usize = 2000;
const DEVICES: usize = 800;
const CASES: usize = 5000;
/// (category, share in per mille); the rest are `uncategorized`.
const CATEGORIES: [(&str, u32); 4] = [("traffic", 60), ("evidence", 40), ("complaint", 30), ("training", 10)];
/// Rows per INSERT statement: 37 columns each stays under SQLite's 32 766 bound parameters.
const CHUNK: usize = 800;

fn leaf_units() -> Vec<String> {
    let mut v = Vec::new();
    for p in PROVINCES {
        for c in 1..=CITIES {
            for s in 1..=STATIONS {
                v.push(format!("{p}/C{c:02}/S{s:02}"));
            }
        }
    }
    v
}

fn officer_id(o: usize) -> String {
    format!("P{:06}", 100_000 + o * 37)
}

fn device_id(d: usize) -> String {
    format!("BWC{:05}", 10_000 + d * 7)
}

fn case_id(c: usize) -> String {
    format!("AJ{}{:06}", 2023 + c % 3, c)
}

/// The station (leaf unit) of every officer. Stations differ in size as real ones do: station
/// `l` draws officers with weight `(rank + 1)^-0.8` (ranks shuffled across provinces), so the
/// busiest stations have a hundred times the officers of the quietest, and a few have none.
fn officer_leaves(leaves: usize) -> Vec<usize> {
    let w: Vec<f64> = (0..leaves).map(|l| ((l * 97 % leaves) as f64 + 1.0).powf(-0.8)).collect();
    let total: f64 = w.iter().sum();
    let mut rng = StdRng::seed_from_u64(0x0FF1CE);
    (0..OFFICERS)
        .map(|_| {
            let mut x = rng.random::<f64>() * total;
            w.iter()
                .position(|&wl| {
                    x -= wl;
                    x < 0.0
                })
                .unwrap_or(leaves - 1)
        })
        .collect()
}

/// The devices of every station: device `d` belongs to the station of officer `d × 5 / 2`, so
/// devices follow officers; a station left without one shares device `station % 800`.
fn station_devices(officer_leaf: &[usize], leaves: usize) -> Vec<Vec<usize>> {
    let mut v = vec![Vec::new(); leaves];
    for d in 0..DEVICES {
        v[officer_leaf[d * OFFICERS / DEVICES]].push(d);
    }
    for (l, devs) in v.iter_mut().enumerate() {
        if devs.is_empty() {
            devs.push(l % DEVICES);
        }
    }
    v
}

fn hex(rng: &mut StdRng, n: usize) -> String {
    (0..n).map(|_| char::from_digit(rng.random_range(0..16), 16).unwrap_or('0')).collect()
}

/// One recording row, all 37 seeded columns.
struct Row {
    id: String,
    sha256: String,
    size: i64,
    original_name: String,
    device: String,
    officer: Option<String>,
    unit: String,
    started_at: Option<i64>,
    ended_at: Option<i64>,
    duration_ms: i64,
    gps: (f64, f64),
    case_ids: String,
    category: &'static str,
    classification: &'static str,
    needs_review: bool,
    review_reasons: &'static str,
    attribution: &'static str,
    state: &'static str,
    archived_at: i64,
    sort_at: i64,
    node: String,
    media: String,
    proxy_sha256: String,
    proxy_size: i64,
    poster_sha256: String,
    legal_hold: bool,
    case: Option<usize>,
}

/// The rows of chunk `chunk` (deterministic: its own RNG seeded by the chunk number).
fn gen_chunk(chunk: usize, n: usize, now: i64, leaves: &[String], officer_leaf: &[usize], devices_of: &[Vec<usize>]) -> Vec<Row> {
    let mut rng = StdRng::seed_from_u64(0x5EA2C4 + chunk as u64);
    let first = chunk * CHUNK;
    let count = CHUNK.min(n - first);
    (first..first + count)
        .map(|k| {
            // Some officers record much more than others (a skewed pick), each at their station.
            let o = ((rng.random::<f64>().powf(1.3)) * OFFICERS as f64) as usize % OFFICERS;
            let leaf = officer_leaf[o];
            let devs = &devices_of[leaf];
            let d = devs[rng.random_range(0..devs.len())];
            let duration_ms = 60_000 + (rng.random::<f64>().powi(2) * 29.0 * 60_000.0) as i64;
            // Rows arrive in roughly chronological order, as an archive fills: row k of n starts
            // at k/n of the way through the last two years, give or take a day and a half.
            let span = 730 * DAY - 2 * HOUR;
            let started = (now - 730 * DAY + (k as f64 / n as f64 * span as f64) as i64 + rng.random_range(-36 * HOUR..36 * HOUR))
                .clamp(now - 730 * DAY, now - 2 * HOUR);
            let archived_at = (started + duration_ms * 1000 + rng.random_range(HOUR..72 * HOUR)).min(now);
            let review = rng.random_range(0..1000u32);
            let (officer, started_at, needs_review, review_reasons, attribution) = if review < 25 {
                (None, Some(started), true, r#"["officer_unknown"]"#, r#"{"device":"filename","started_at":"filename"}"#)
            } else if review < 50 {
                (Some(officer_id(o)), None, true, r#"["no_start_time"]"#, r#"{"device":"filename","officer":"filename"}"#)
            } else {
                (Some(officer_id(o)), Some(started), false, "[]", r#"{"device":"filename","officer":"filename","started_at":"filename"}"#)
            };
            let sort_at = started_at.unwrap_or(archived_at);
            let mut cat = rng.random_range(0..1000u32);
            let mut category = "uncategorized";
            for (c, share) in CATEGORIES {
                if cat < share {
                    category = c;
                    break;
                }
                cat -= share;
            }
            let classification = match rng.random_range(0..1000u32) {
                0..10 => "privacy",
                10..13 => "trade_secret",
                13..15 => "state_secret",
                _ => "normal",
            };
            let case = (rng.random_range(0..1000u32) < 20).then(|| rng.random_range(0..CASES));
            let state = if archived_at < now - 200 * DAY && category == "uncategorized" && rng.random_range(0..100u32) < 1 {
                "destroyed"
            } else {
                "archived"
            };
            // Ids are UUIDv7 of the archiving time, as ingest makes them.
            let id = uuid::Builder::from_unix_timestamp_millis((archived_at / 1000) as u64, &rng.random()).into_uuid().to_string();
            let size = duration_ms * 1_250; // about 10 Mb/s
            let t = chrono::DateTime::from_timestamp_micros(started).unwrap_or_default();
            let media = json!({
                "container": "mov,mp4,m4a,3gp,3g2,mj2", "duration_ms": duration_ms, "start_time_ms": 0, "bit_rate": 10_000_000,
                "creation_time": t.to_rfc3339(), "creation_time_raw": t.to_rfc3339(), "location": null, "has_video": true, "has_audio": true,
                "streams": [
                    {"index": 0, "type": "video", "codec": "h264", "profile": "High", "pix_fmt": "yuv420p", "bit_depth": 8, "width": 1920,
                     "height": 1080, "fps": 30.0, "rotation": 0, "sample_rate": null, "channels": null, "duration_ms": duration_ms},
                    {"index": 1, "type": "audio", "codec": "aac", "profile": "LC", "pix_fmt": null, "bit_depth": null, "width": null,
                     "height": null, "fps": null, "rotation": 0, "sample_rate": 48000, "channels": 1, "duration_ms": duration_ms}
                ],
                "browser_safe": true,
            });
            Row {
                sha256: hex(&mut rng, 64),
                size,
                original_name: format!("{}_{}_{}_{:04}.mp4", device_id(d), officer_id(o), t.format("%Y%m%d%H%M%S"), rng.random_range(1..10_000)),
                device: device_id(d),
                officer,
                unit: leaves[leaf].clone(),
                started_at,
                ended_at: started_at.map(|s| s + duration_ms * 1000),
                duration_ms,
                gps: (rng.random_range(20.0..45.0), rng.random_range(100.0..122.0)),
                case_ids: case.map_or_else(|| "[]".to_string(), |c| format!("[\"{}\"]", case_id(c))),
                category,
                classification,
                needs_review,
                review_reasons,
                attribution,
                state,
                archived_at,
                sort_at,
                node: format!("dock-{}", leaves[leaf].replace('/', "-").to_lowercase()),
                media: media.to_string(),
                proxy_sha256: hex(&mut rng, 64),
                proxy_size: duration_ms * 330,
                poster_sha256: hex(&mut rng, 64),
                legal_hold: rng.random_range(0..1000u32) < 2,
                case,
                id,
            }
        })
        .collect()
}

/// Seeds cases, recordings and case links; returns (seconds, links).
async fn seed(url: &str, n: usize, now: i64) -> (f64, usize) {
    let leaves = Arc::new(leaf_units());
    let officer_leaf = Arc::new(officer_leaves(leaves.len()));
    let devices_of = Arc::new(station_devices(&officer_leaf, leaves.len()));
    let chunks = n.div_ceil(CHUNK);
    let t = Instant::now();
    macro_rules! fill {
        ($pool:expr, $db:ty, $writers:expr) => {{
            let pool = $pool;
            // The cases first (the links refer to them).
            for first in (0..CASES).step_by(2000) {
                let mut qb =
                    sqlx::QueryBuilder::<$db>::new("INSERT INTO cases (id, title, status, unit, created_at, created_by, updated_at) ");
                qb.push_values(first..(first + 2000).min(CASES), |mut b, c| {
                    let at = now - (c as i64 % 700) * DAY;
                    b.push_bind(case_id(c))
                        .push_bind(format!("case {c}"))
                        .push_bind(if c % 4 == 0 { "closed" } else { "open" })
                        .push_bind(leaves[c % leaves.len()].clone())
                        .push_bind(at)
                        .push_bind("bench")
                        .push_bind(at);
                });
                qb.build().execute(&pool).await.expect("insert cases");
            }
            let mut tasks = Vec::new();
            for w in 0..$writers {
                let (pool, leaves, officer_leaf, devices_of) = (pool.clone(), leaves.clone(), officer_leaf.clone(), devices_of.clone());
                tasks.push(tokio::spawn(async move {
                    let mut links = Vec::new();
                    for chunk in (w..chunks).step_by($writers) {
                        let rows = gen_chunk(chunk, n, now, &leaves, &officer_leaf, &devices_of);
                        let mut qb = sqlx::QueryBuilder::<$db>::new(
                            "INSERT INTO recordings (id, sha256, size, object_key, manifest_key, original_name, extension, device, \
                             officer, unit, started_at, ended_at, duration_ms, gps_lat, gps_lon, case_ids, category, classification, needs_review, \
                             review_reasons, attribution, state, media_state, archived_at, sort_at, node, media, proxy_key, \
                             proxy_sha256, proxy_size, proxy_type, poster_key, poster_sha256, poster_size, media_ready_at, \
                             timestamped, legal_hold) ",
                        );
                        qb.push_values(&rows, |mut b, r| {
                            b.push_bind(r.id.clone())
                                .push_bind(r.sha256.clone())
                                .push_bind(r.size)
                                .push_bind(format!("originals/{}/{}/original", r.node, r.id))
                                .push_bind(format!("originals/{}/{}/manifest.json", r.node, r.id))
                                .push_bind(r.original_name.clone())
                                .push_bind("mp4")
                                .push_bind(r.device.clone())
                                .push_bind(r.officer.clone())
                                .push_bind(r.unit.clone())
                                .push_bind(r.started_at)
                                .push_bind(r.ended_at)
                                .push_bind(r.duration_ms)
                                .push_bind(r.gps.0)
                                .push_bind(r.gps.1)
                                .push_bind(r.case_ids.clone())
                                .push_bind(r.category)
                                .push_bind(r.classification)
                                .push_bind(r.needs_review)
                                .push_bind(r.review_reasons)
                                .push_bind(r.attribution)
                                .push_bind(r.state)
                                .push_bind("ready")
                                .push_bind(r.archived_at)
                                .push_bind(r.sort_at)
                                .push_bind(r.node.clone())
                                .push_bind(r.media.clone())
                                .push_bind(format!("derived/{}/proxy.mp4", r.id))
                                .push_bind(r.proxy_sha256.clone())
                                .push_bind(r.proxy_size)
                                .push_bind("video/mp4")
                                .push_bind(format!("derived/{}/poster.jpg", r.id))
                                .push_bind(r.poster_sha256.clone())
                                .push_bind(90_000i64)
                                .push_bind(r.archived_at + 10 * 60_000_000)
                                .push_bind(true)
                                .push_bind(r.legal_hold);
                        });
                        qb.build().execute(&pool).await.expect("insert recordings");
                        links.extend(rows.iter().filter_map(|r| r.case.map(|c| (case_id(c), r.id.clone(), r.archived_at))));
                    }
                    links
                }));
            }
            let mut links = Vec::new();
            for t in tasks {
                links.extend(t.await.expect("writer"));
            }
            for part in links.chunks(5000) {
                let mut qb = sqlx::QueryBuilder::<$db>::new("INSERT INTO case_links (case_id, recording_id, linked_at, linked_by) ");
                qb.push_values(part, |mut b, (c, r, at)| {
                    b.push_bind(c.clone()).push_bind(r.clone()).push_bind(*at + HOUR).push_bind("bench");
                });
                qb.build().execute(&pool).await.expect("insert links");
            }
            links.len()
        }};
    }
    let links = if url.starts_with("sqlite:") {
        fill!(sqlx::SqlitePool::connect(url).await.expect("connect"), sqlx::Sqlite, 1)
    } else {
        fill!(sqlx::postgres::PgPoolOptions::new().max_connections(4).connect(url).await.expect("connect"), sqlx::Postgres, 2)
    };
    (t.elapsed().as_secs_f64(), links)
}

/// The value of `col` at the median of its per-value row counts (a typical officer, device…).
async fn median_value(url: &str, sql: &str) -> (String, i64) {
    let mut rows: Vec<(String, i64)> = if url.starts_with("sqlite:") {
        sqlx::query_as(sql).fetch_all(&sqlx::SqlitePool::connect(url).await.expect("connect")).await.expect("median")
    } else {
        sqlx::query_as(sql).fetch_all(&sqlx::PgPool::connect(url).await.expect("connect")).await.expect("median")
    };
    rows.sort_by(|a, b| a.1.cmp(&b.1).then(a.0.cmp(&b.0)));
    rows[rows.len() / 2].clone()
}

async fn exec(url: &str, sql: &str) -> f64 {
    let t = Instant::now();
    if url.starts_with("sqlite:") {
        sqlx::query(sql).execute(&sqlx::SqlitePool::connect(url).await.expect("connect")).await.expect(sql);
    } else {
        sqlx::query(sql).execute(&sqlx::PgPool::connect(url).await.expect("connect")).await.expect(sql);
    }
    t.elapsed().as_secs_f64()
}

async fn cmd_seed(url: &str, n: usize) {
    let t = Instant::now();
    let c = catalog::open(url, 4).await.expect("open catalog (migrations)");
    let migrate_s = t.elapsed().as_secs_f64();
    drop(c);
    let now = catalog::now_micros();
    let (seed_s, links) = seed(url, n, now).await;
    let pg = !url.starts_with("sqlite:");
    let analyze_s = exec(url, if pg { "VACUUM ANALYZE" } else { "ANALYZE" }).await;
    let (officer, officer_rows) =
        median_value(url, "SELECT officer, COUNT(*) FROM recordings WHERE officer IS NOT NULL GROUP BY officer").await;
    let (device, device_rows) = median_value(url, "SELECT device, COUNT(*) FROM recordings GROUP BY device").await;
    let (case, case_rows) = median_value(url, "SELECT case_id, COUNT(*) FROM case_links GROUP BY case_id").await;
    let city_sql = if pg {
        "SELECT split_part(unit, '/', 1) || '/' || split_part(unit, '/', 2), COUNT(*) FROM recordings GROUP BY 1"
    } else {
        "SELECT substr(unit, 1, 6), COUNT(*) FROM recordings GROUP BY 1"
    };
    let (city, city_rows) = median_value(url, city_sql).await;
    let leaves = leaf_units();
    let o: usize = (0..OFFICERS).find(|o| officer_id(*o) == officer).expect("officer");
    let station = leaves[officer_leaves(leaves.len())[o]].clone();
    // Stations by size: the median one, a small one (the 10th percentile of those with
    // recordings) and, for a station added to the tree that has no recordings yet, `CITY/S99`.
    let mut stations: Vec<(String, i64)> = if pg {
        sqlx::query_as("SELECT unit, COUNT(*) FROM recordings GROUP BY unit")
            .fetch_all(&sqlx::PgPool::connect(url).await.expect("connect"))
            .await
            .expect("stations")
    } else {
        sqlx::query_as("SELECT unit, COUNT(*) FROM recordings GROUP BY unit")
            .fetch_all(&sqlx::SqlitePool::connect(url).await.expect("connect"))
            .await
            .expect("stations")
    };
    stations.sort_by(|a, b| a.1.cmp(&b.1).then(a.0.cmp(&b.0)));
    let (median_station, median_station_rows) = stations[stations.len() / 2].clone();
    let (small_station, small_station_rows) = stations[stations.len() / 10].clone();
    let station_sizes = (stations[0].1, stations[stations.len() - 1].1, leaves.len() - stations.len());
    // A whole UTC day a year back, and a 30-day window for the officer.
    let day_from = (now - 365 * DAY) / DAY * DAY;
    let month_from = (now - 90 * DAY) / DAY * DAY;
    let msql = "SELECT CAST(version AS TEXT) || '_' || description FROM _sqlx_migrations ORDER BY version";
    let migrations: Vec<(String,)> = if pg {
        sqlx::query_as(msql).fetch_all(&sqlx::PgPool::connect(url).await.expect("connect")).await.expect("migrations")
    } else {
        sqlx::query_as(msql).fetch_all(&sqlx::SqlitePool::connect(url).await.expect("connect")).await.expect("migrations")
    };
    let mut shares = serde_json::Map::new();
    for col in ["state", "category", "classification", "needs_review"] {
        let sql = format!("SELECT CAST({col} AS TEXT), COUNT(*) FROM recordings GROUP BY 1");
        let rows: Vec<(String, i64)> = if pg {
            sqlx::query_as(&sql).fetch_all(&sqlx::PgPool::connect(url).await.expect("connect")).await.expect("shares")
        } else {
            sqlx::query_as(&sql).fetch_all(&sqlx::SqlitePool::connect(url).await.expect("connect")).await.expect("shares")
        };
        shares.insert(col.into(), rows.into_iter().map(|(k, v)| (k, Value::from(v))).collect::<serde_json::Map<_, _>>().into());
    }
    let size: (i64,) = if pg {
        sqlx::query_as("SELECT pg_total_relation_size('recordings')")
            .fetch_one(&sqlx::PgPool::connect(url).await.expect("connect"))
            .await
            .expect("size")
    } else {
        (0,)
    };
    println!(
        "{}",
        json!({
            "backend": if pg { "postgres" } else { "sqlite" }, "recordings": n, "case_links": links, "cases": CASES,
            "officers": OFFICERS, "devices": DEVICES, "leaf_units": leaves.len(), "migrate_s": migrate_s, "seed_s": seed_s,
            "analyze_s": analyze_s, "recordings_bytes": size.0,
            "officer": officer, "officer_rows": officer_rows, "officer_station": station, "station": median_station, "station_rows": median_station_rows,
            "small_station": small_station, "small_station_rows": small_station_rows, "new_station": format!("{city}/S99"),
            "station_min_rows": station_sizes.0, "station_max_rows": station_sizes.1, "empty_stations": station_sizes.2, "device": device, "device_rows": device_rows,
            "case": case, "case_rows": case_rows, "city": city, "city_rows": city_rows, "province": city.split('/').next(),
            "day_from": day_from, "day_to": day_from + DAY, "month_from": month_from, "month_to": month_from + 30 * DAY,
            "category": "complaint", "shares": shares,
            "migrations": migrations.into_iter().map(|m| m.0).collect::<Vec<_>>(),
        })
    );
}

async fn cmd_proxy_of(url: &str, name: &str) {
    let sql = "SELECT id, proxy_key, proxy_size FROM recordings WHERE original_name = $1 AND proxy_key IS NOT NULL";
    let row: Option<(String, String, i64)> = if url.starts_with("sqlite:") {
        sqlx::query_as(sql).bind(name).fetch_optional(&sqlx::SqlitePool::connect(url).await.expect("connect")).await.expect("query")
    } else {
        sqlx::query_as(sql).bind(name).fetch_optional(&sqlx::PgPool::connect(url).await.expect("connect")).await.expect("query")
    };
    match row {
        Some((id, key, size)) => println!("{id} {key} {size}"),
        None => std::process::exit(3),
    }
}

/// One filter of the benchmark.
struct Case {
    name: String,
    /// Query string of `GET /api/v1/recordings` (without the cursor of page 10).
    query: String,
    /// Which token: `supervisor`, `officer` or `city`.
    token: &'static str,
    /// The same filter as `list_recordings` gets it after `Caller::scope`.
    filter: RecordingFilter,
    /// Follow `next_cursor` this many pages before measuring.
    pages: usize,
}

fn rfc3339(t: i64) -> String {
    chrono::DateTime::from_timestamp_micros(t).unwrap_or_default().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn cases(s: &Value) -> Vec<Case> {
    let st = |k: &str| s[k].as_str().unwrap_or_default().to_string();
    let num = |k: &str| s[k].as_i64().unwrap_or_default();
    let base = RecordingFilter { limit: 50, ..Default::default() };
    vec![
        Case { name: "no filter (first page)".into(), query: String::new(), token: "supervisor", filter: base.clone(), pages: 0 },
        Case {
            name: "officer=".into(),
            query: format!("officer={}", st("officer")),
            token: "supervisor",
            filter: RecordingFilter { officer: Some(st("officer")), ..base.clone() },
            pages: 0,
        },
        Case {
            name: "device=".into(),
            query: format!("device={}", st("device")),
            token: "supervisor",
            filter: RecordingFilter { device: Some(st("device")), ..base.clone() },
            pages: 0,
        },
        Case {
            name: format!("unit= city subtree `{}`", st("city")),
            query: format!("unit={}", st("city")),
            token: "supervisor",
            filter: RecordingFilter { unit: Some(st("city")), ..base.clone() },
            pages: 0,
        },
        Case {
            name: format!("unit= station `{}` (median size)", st("station")),
            query: format!("unit={}", st("station")),
            token: "supervisor",
            filter: RecordingFilter { unit: Some(st("station")), ..base.clone() },
            pages: 0,
        },
        Case {
            name: format!("unit= small station `{}`", st("small_station")),
            query: format!("unit={}", st("small_station")),
            token: "supervisor",
            filter: RecordingFilter { unit: Some(st("small_station")), ..base.clone() },
            pages: 0,
        },
        Case {
            name: format!("unit= new station `{}` (no recordings)", st("new_station")),
            query: format!("unit={}", st("new_station")),
            token: "supervisor",
            filter: RecordingFilter { unit: Some(st("new_station")), ..base.clone() },
            pages: 0,
        },
        Case {
            name: format!("unit= province subtree `{}`", st("province")),
            query: format!("unit={}", st("province")),
            token: "supervisor",
            filter: RecordingFilter { unit: Some(st("province")), ..base.clone() },
            pages: 0,
        },
        Case {
            name: "case=".into(),
            query: format!("case={}", st("case")),
            token: "supervisor",
            filter: RecordingFilter { case: Some(st("case")), ..base.clone() },
            pages: 0,
        },
        Case {
            name: "from/to: one day".into(),
            query: format!("from={}&to={}", rfc3339(num("day_from")), rfc3339(num("day_to"))),
            token: "supervisor",
            filter: RecordingFilter { from: Some(num("day_from")), to: Some(num("day_to")), ..base.clone() },
            pages: 0,
        },
        Case {
            name: "needs_review=true".into(),
            query: "needs_review=true".into(),
            token: "supervisor",
            filter: RecordingFilter { needs_review: Some(true), ..base.clone() },
            pages: 0,
        },
        Case {
            name: format!("category={}", st("category")),
            query: format!("category={}", st("category")),
            token: "supervisor",
            filter: RecordingFilter { category: Some(st("category")), ..base.clone() },
            pages: 0,
        },
        Case {
            name: "officer= + from/to: 30 days".into(),
            query: format!("officer={}&from={}&to={}", st("officer"), rfc3339(num("month_from")), rfc3339(num("month_to"))),
            token: "supervisor",
            filter: RecordingFilter {
                officer: Some(st("officer")),
                from: Some(num("month_from")),
                to: Some(num("month_to")),
                ..base.clone()
            },
            pages: 0,
        },
        Case { name: "page 10 (cursor), no filter".into(), query: String::new(), token: "supervisor", filter: base.clone(), pages: 9 },
        Case {
            name: "officer token (own recordings)".into(),
            query: String::new(),
            token: "officer",
            filter: RecordingFilter { scope_officer: Some(st("officer")), scope_unit: Some(st("officer_station")), ..base.clone() },
            pages: 0,
        },
        Case {
            name: format!("city supervisor token: needs_review=true (`{}`)", st("city")),
            query: "needs_review=true".into(),
            token: "city",
            filter: RecordingFilter { needs_review: Some(true), scope_unit: Some(st("city")), ..base.clone() },
            pages: 0,
        },
    ]
}

fn stats(mut v: Vec<Duration>) -> Value {
    v.sort();
    let ms = |d: Duration| (d.as_secs_f64() * 1e5).round() / 100.0;
    let pct = |p: f64| ms(v[((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1]);
    json!({"n": v.len(), "p50_ms": pct(0.50), "p99_ms": pct(0.99), "max_ms": ms(*v.last().expect("samples"))})
}

/// The statement `list_recordings` builds for `f` (src/catalog/sql.rs), with literal values, for
/// the query plans.
fn sql_of(f: &RecordingFilter) -> String {
    let q = |s: &str| format!("'{}'", s.replace('\'', "''"));
    let mut sql = "SELECT * FROM recordings WHERE 1 = 1".to_string();
    for (col, v) in
        [("officer", &f.officer), ("device", &f.device), ("category", &f.category), ("state", &f.state), ("officer", &f.scope_officer)]
    {
        if let Some(v) = v {
            sql += &format!(" AND {col} = {}", q(v));
        }
    }
    for u in [&f.unit, &f.scope_unit].into_iter().flatten().filter(|u| !u.is_empty()) {
        let esc = u.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
        sql += &format!(" AND (unit = {} OR unit LIKE {} ESCAPE '\\')", q(u), q(&format!("{esc}/%")));
    }
    if let Some(g) = &f.scope_grantee {
        sql += &format!(
            " AND (classification <> 'state_secret' OR EXISTS (SELECT 1 FROM grants g WHERE g.recording_id = recordings.id AND g.principal = {}))",
            q(g)
        );
    }
    if let Some(c) = &f.case {
        sql += &format!(" AND EXISTS (SELECT 1 FROM case_links l WHERE l.recording_id = recordings.id AND l.case_id = {})", q(c));
    }
    if let Some(t) = f.from {
        sql += &format!(" AND sort_at >= {t}");
    }
    if let Some(t) = f.to {
        sql += &format!(" AND sort_at < {t}");
    }
    if let Some(b) = f.needs_review {
        sql += &format!(" AND needs_review = {}", if b { "TRUE" } else { "FALSE" });
    }
    if let Some((s, id)) = &f.after {
        sql += &format!(" AND (sort_at < {s} OR (sort_at = {s} AND id < {}))", q(id));
    }
    sql + &format!(" ORDER BY sort_at DESC, id DESC LIMIT {}", f.limit)
}

async fn plan(url: &str, f: &RecordingFilter) -> String {
    let sql = sql_of(f);
    let lines: Vec<String> = if url.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(url).await.expect("connect");
        let rows: Vec<(i64, i64, i64, String)> = sqlx::query_as(&format!("EXPLAIN QUERY PLAN {sql}")).fetch_all(&pool).await.expect("plan");
        rows.into_iter().map(|r| r.3).collect()
    } else {
        let pool = sqlx::PgPool::connect(url).await.expect("connect");
        let rows: Vec<(String,)> = sqlx::query_as(&format!("EXPLAIN (ANALYZE, BUFFERS) {sql}")).fetch_all(&pool).await.expect("plan");
        rows.into_iter().map(|r| r.0).collect()
    };
    format!("{sql}\n\n{}\n", lines.join("\n"))
}

async fn cmd_measure(url: &str, base: &str, samples: &str, plans_out: &str) {
    let s: Value = serde_json::from_str(&std::fs::read_to_string(samples).expect("samples")).expect("samples json");
    let env = |k: &str, d: usize| std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d);
    let reqs = env("BENCH_REQUESTS", 300);
    let clients = env("BENCH_CLIENTS", 8);
    let conc_total = env("BENCH_CONC_REQUESTS", 2 * reqs);
    let warm = 20;
    // A slow filter stops after this long per phase (with at least 10 samples): a full scan on a
    // big SQLite catalog takes seconds per request.
    let budget = Duration::from_secs(env("BENCH_PHASE_SECONDS", 30) as u64);
    let more = |t0: Instant, n: usize, want: usize| n < want && (n < 10 || t0.elapsed() < budget);
    let tokens: HashMap<&str, String> = ["supervisor", "officer", "city"]
        .into_iter()
        .map(|k| (k, std::env::var(format!("BENCH_TOKEN_{}", k.to_uppercase())).expect("token in the environment")))
        .collect();
    let cat = catalog::open(url, 8).await.expect("open catalog");
    let http = reqwest::Client::builder().pool_max_idle_per_host(64).build().expect("client");
    let mut plans = String::new();
    for mut c in cases(&s) {
        // As `Caller::scope` adds for officers and supervisors (bench/search.sh names the tokens'
        // principals `bench-<token>`): state secrets only with a grant.
        c.filter.scope_grantee = Some(format!("bench-{}", c.token));
        // Page 10: follow the cursor in-process and over HTTP.
        let mut query = c.query.clone();
        let mut f = c.filter.clone();
        for _ in 0..c.pages {
            let page = cat.list_recordings(&f).await.expect("page");
            let last = page.last().expect("a full page");
            f.after = Some((last.sort_at, last.id.clone()));
        }
        for _ in 0..c.pages {
            let url = format!("{base}/api/v1/recordings?{query}");
            let v: Value = http.get(url).bearer_auth(&tokens[c.token]).send().await.expect("get").json().await.expect("json");
            let cur = v["next_cursor"].as_str().expect("next_cursor").to_string();
            query = if c.query.is_empty() { format!("cursor={cur}") } else { format!("{}&cursor={cur}", c.query) };
        }
        c.filter = f;
        let url_q = format!("{base}/api/v1/recordings?{query}");
        let token = tokens[c.token].clone();

        // In-process baseline.
        let mut items = 0;
        let mut lat = Vec::new();
        let t0 = Instant::now();
        for i in 0.. {
            if !more(t0, i, warm) {
                break;
            }
            items = cat.list_recordings(&c.filter).await.expect("list").len();
        }
        let t0 = Instant::now();
        while more(t0, lat.len(), reqs) {
            let t = Instant::now();
            items = cat.list_recordings(&c.filter).await.expect("list").len();
            lat.push(t.elapsed());
        }
        let inproc = stats(lat);

        // HTTP, one client.
        let get = |http: reqwest::Client, url: String, token: String| async move {
            let t = Instant::now();
            let r = http.get(&url).bearer_auth(&token).send().await.expect("get");
            let status = r.status().as_u16();
            let body = r.bytes().await.expect("body");
            (t.elapsed(), body.len(), status)
        };
        // Error answers (e.g. 503 when the catalog pool times out under load) are counted, and
        // their latency counts like any other.
        let mut seq_errors = Vec::new();
        let mut lat = Vec::new();
        let mut bytes = 0;
        let t0 = Instant::now();
        for i in 0.. {
            if !more(t0, i, warm) {
                break;
            }
            let (_, _, status) = get(http.clone(), url_q.clone(), token.clone()).await;
            assert_eq!(status, 200, "{url_q}: a warm-up request answered {status}");
        }
        let t0 = Instant::now();
        while more(t0, lat.len(), reqs) {
            let (d, n, status) = get(http.clone(), url_q.clone(), token.clone()).await;
            lat.push(d);
            if status == 200 {
                bytes = n;
            } else {
                seq_errors.push(status);
            }
        }
        let v: Value = http.get(&url_q).bearer_auth(&token).send().await.expect("get").json().await.expect("json");
        let http_items = v["items"].as_array().map_or(0, Vec::len);
        assert_eq!(http_items, items, "{}: HTTP and in-process pages differ", c.name);
        let seq = stats(lat);

        // HTTP, `clients` concurrent clients.
        let per = conc_total.div_ceil(clients);
        let t = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..clients {
            let (http, url_q, token) = (http.clone(), url_q.clone(), token.clone());
            tasks.push(tokio::spawn(async move {
                let mut v = Vec::new();
                while v.len() < per && (v.len() < 2 || t.elapsed() < budget) {
                    let (d, _, status) = get(http.clone(), url_q.clone(), token.clone()).await;
                    v.push((d, status));
                }
                v
            }));
        }
        let mut lat = Vec::new();
        let mut conc_errors = Vec::new();
        for t in tasks {
            for (d, status) in t.await.expect("client") {
                lat.push(d);
                if status != 200 {
                    conc_errors.push(status);
                }
            }
        }
        let wall = t.elapsed().as_secs_f64();
        let rps = lat.len() as f64 / wall;
        let conc = stats(lat);

        let matches = count(url, &c.filter).await;
        plans += &format!("### {}\n\n```\n{}```\n\n", c.name, plan(url, &c.filter).await);
        println!(
            "{}",
            json!({
                "backend": cat.backend(), "filter": c.name, "query": query, "token": c.token, "matches": matches, "items": items,
                "body_bytes": bytes, "inproc": inproc, "http": seq, "conc": conc, "clients": clients, "conc_rps": rps,
                "http_errors": seq_errors.len(), "conc_errors": conc_errors.len(),
                "error_statuses": seq_errors.iter().chain(&conc_errors).map(u16::to_string).collect::<std::collections::BTreeSet<_>>(),
            })
        );
    }
    std::fs::write(plans_out, plans).expect("write plans");
}

/// How many rows match `f` (no limit, no cursor).
async fn count(url: &str, f: &RecordingFilter) -> i64 {
    let sql = sql_of(&RecordingFilter { after: None, ..f.clone() });
    let sql = format!("SELECT COUNT(*) FROM ({}) AS m", sql.split(" ORDER BY").next().unwrap_or(&sql));
    let row: (i64,) = if url.starts_with("sqlite:") {
        sqlx::query_as(&sql).fetch_one(&sqlx::SqlitePool::connect(url).await.expect("connect")).await.expect("count")
    } else {
        sqlx::query_as(&sql).fetch_one(&sqlx::PgPool::connect(url).await.expect("connect")).await.expect("count")
    };
    row.0
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let a = |i: usize| args.get(i).map(String::as_str);
    match (a(1), a(2)) {
        (Some("seed"), Some(url)) if a(3).and_then(|n| n.parse::<usize>().ok()).is_some() => {
            cmd_seed(url, a(3).and_then(|n| n.parse().ok()).unwrap_or_default()).await
        }
        (Some("proxy-of"), Some(url)) if a(3).is_some() => cmd_proxy_of(url, a(3).unwrap_or_default()).await,
        (Some("measure"), Some(url)) if args.len() == 6 => cmd_measure(url, &args[3], &args[4], &args[5]).await,
        _ => {
            eprintln!(
                "usage: search_scale seed URL N | proxy-of URL NAME | measure URL BASE_URL SAMPLES_JSON PLANS_OUT (bench/search.sh runs it)"
            );
            // `cargo test --all-targets` runs this target with test-harness flags: nothing to measure.
            let harness = args.iter().skip(1).all(|a| a.starts_with("--") || a.parse::<u32>().is_ok());
            std::process::exit(if harness { 0 } else { 2 });
        }
    }
}
