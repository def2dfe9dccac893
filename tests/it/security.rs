//! Hostile clients against the real daemon: path traversal in every id-taking route, oversized and
//! malformed bodies, and token brute force (429 lockout per client address). Traversal requests go
//! over a raw TCP connection, since an HTTP client library would normalise `..` and `%2e%2e` away
//! before the server ever saw them.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{Daemon, DaemonSpec, write_random};

/// Sends `request_head` (request line and headers, without the final blank line) and `body` over
/// a fresh connection; returns the status and the whole raw answer (head and body).
async fn raw(port: u16, request_head: &str, body: &[u8]) -> (u16, String) {
    let s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let (mut rd, mut wr) = s.into_split();
    let mut data = format!("{request_head}\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n").into_bytes();
    data.extend_from_slice(body);
    // Written while reading: a server may answer (413) and close before the body is all sent.
    let writer = tokio::spawn(async move {
        for c in data.chunks(64 << 10) {
            if wr.write_all(c).await.is_err() {
                break;
            }
        }
        wr
    });
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 << 10];
    let read = async {
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), read).await.expect("answer within 30 s");
    writer.abort();
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or_else(|| panic!("no status line in {text:?}"));
    (status, text)
}

async fn raw_get(port: u16, path: &str, token: &str) -> (u16, String) {
    raw(port, &format!("GET {path} HTTP/1.1\r\nAuthorization: Bearer {token}"), b"").await
}

/// A station with one archived recording; returns the daemon and the recording's id.
async fn station_with_one(dir: &std::path::Path) -> (Daemon, String) {
    let mut d = Daemon::configure(dir, &DaemonSpec::station(dir));
    let src = dir.join("import");
    std::fs::create_dir_all(&src).unwrap();
    write_random(&src.join("one.mp4"), 100_000, 7);
    assert_eq!(d.cli(&["ingest", "--quiet", src.to_str().unwrap()]).0, 0);
    d.start().await;
    let recs = d.wait_recordings(1, Duration::from_secs(20)).await;
    let id = recs[0]["id"].as_str().unwrap().to_string();
    (d, id)
}

#[tokio::test]
async fn path_traversal_in_every_id_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    // A file the traversal would reach if an id were ever used as a path under the archive.
    std::fs::write(dir.path().join("secret.txt"), "TOP-SECRET-CONTENTS").unwrap();
    let (mut d, id) = station_with_one(dir.path()).await;
    let admin = d.token_create(&["--name", "root-admin", "--role", "admin"]);
    let sup = d.token.clone();
    // Retention routes are for archivists and auditors: a supervisor would stop at 403 before the id.
    let arch = d.token_create(&["--name", "arch", "--role", "archivist"]);
    let aud = d.token_create(&["--name", "aud", "--role", "auditor"]);
    let cases: Vec<(String, &str)> = [
        "/api/v1/recordings/..%2F..%2Fetc%2Fpasswd",
        "/api/v1/recordings/..%2F..%2Fetc%2Fpasswd/original",
        "/api/v1/recordings/%2e%2e/original",
        "/api/v1/recordings/%2e%2e%2fsecret.txt/original",
        "/api/v1/recordings/..%2Fsecret.txt/custody",
        "/api/v1/recordings/../../etc/passwd",
        "/api/v1/recordings/..%5C..%5Cetc%5Cpasswd/proxy",
        "/api/v1/recordings/%2e%2e/poster",
        "/api/v1/recordings/..%00/original",
        "/api/v1/clips/../x/media",
        "/api/v1/clips/..%2Fx/media",
        "/api/v1/clips/%2e%2e",
        "/api/v1/cases/..%2F/recordings",
        "/api/v1/cases/..%2F..%2Fsecret.txt",
        "/api/v1/../../etc/passwd",
        "/api/v1/recordings/%252e%252e%252fsecret.txt/original",
    ]
    .iter()
    .map(|p| (p.to_string(), sup.as_str()))
    .chain([("/api/v1/principals/..%2Froot".to_string(), admin.as_str()), ("/api/v1/principals/..%2F..".to_string(), admin.as_str())])
    .chain(
        [
            "/api/v1/destructions/..%2F..",
            "/api/v1/destructions/%2e%2e%2f%2e%2e%2fsecret.txt",
            "/api/v1/destruction-batches/..%2F..%2Fsecret.txt/certificate",
            "/api/v1/destruction-batches/..%2F..%2Fsecret.txt/certificate.html",
            "/api/v1/reports/..%2F..",
        ]
        .iter()
        .flat_map(|p| [(p.to_string(), arch.as_str()), (p.to_string(), aud.as_str())]),
    )
    .chain([(format!("/api/v1/recordings/{id}%2F..%2F..%2Fsecret.txt/original"), sup.as_str())])
    .chain([(format!("/api/v1/recordings/{id}/../../../secret.txt"), sup.as_str())])
    .collect();
    for (path, token) in &cases {
        let (status, text) = raw_get(d.port, path, token).await;
        assert!((400..500).contains(&status), "{path}: {status}\n{text}");
        assert!(!text.contains("TOP-SECRET") && !text.contains("root:x:0:0"), "{path} leaked a file:\n{text}");
    }
    // The same traversals in writes.
    for path in
        ["/api/v1/recordings/..%2F..%2Fetc%2Fpasswd", "/api/v1/recordings/%2e%2e/hold", "/api/v1/cases/..%2F..%2Fx/recordings/..%2F.."]
    {
        let body = br#"{"reason":"x"}"#;
        let head = format!(
            "PUT {path} HTTP/1.1\r\nAuthorization: Bearer {sup}\r\nContent-Type: application/json\r\nContent-Length: {}",
            body.len()
        );
        let (status, text) = raw(d.port, &head, body).await;
        assert!((400..500).contains(&status), "PUT {path}: {status}\n{text}");
    }
    // None of it was a failed authentication: the same client is not locked out.
    assert_eq!(d.call(reqwest::Method::GET, &format!("/api/v1/recordings/{id}"), &sup, None).await.0, 200);
    assert!(d.alive(), "the daemon survived");
    assert!(!d.log().contains("panicked"), "{}", d.log());
}

#[tokio::test]
async fn oversized_and_malformed_bodies_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (d, id) = station_with_one(dir.path()).await;
    let url = format!("http://127.0.0.1:{}/api/v1/recordings/{id}", d.port);
    let client = reqwest::Client::new();

    // 2 MiB of JSON with a Content-Length: refused before the handler reads it.
    let big = serde_json::json!({"reason": "x".repeat(2 << 20)}).to_string();
    // Over a raw connection: the server may answer 413 and close before the whole body is sent,
    // which an HTTP client reports as a broken pipe instead of the answer.
    let head = format!(
        "PATCH /api/v1/recordings/{id} HTTP/1.1\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}",
        d.token,
        big.len()
    );
    let (status, text) = raw(d.port, &head, big.as_bytes()).await;
    assert_eq!(status, 413, "{text}");

    // The same without a Content-Length (chunked): refused once the limit is crossed.
    let mut chunked = Vec::new();
    for c in big.as_bytes().chunks(64 << 10) {
        chunked.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
        chunked.extend_from_slice(c);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let head = format!(
        "PATCH /api/v1/recordings/{id} HTTP/1.1\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked",
        d.token
    );
    let (status, text) = raw(d.port, &head, &chunked).await;
    // Without a length the limit trips while reading: still 413, with its code.
    assert_eq!(status, 413, "chunked 2 MiB:\n{text}");
    assert!(text.contains("payload_too_large"), "{text}");

    // Malformed JSON: 400 with a code.
    for bad in ["{not json", "", "[1,2", "{\"officer\": \"P1\"", "\u{feff}{}", "null", "{\"officer\": 1e999999}"] {
        let r = client.patch(&url).bearer_auth(&d.token).header("content-type", "application/json").body(bad).send().await.unwrap();
        let s = r.status().as_u16();
        let v: serde_json::Value = r.json().await.unwrap_or_default();
        assert!(s == 400 || s == 415, "{bad:?}: {s} {v}");
        assert!(v["error"]["code"].as_str().is_some_and(|c| !c.is_empty()), "{bad:?}: {v}");
    }
    // Deeply nested JSON does not overflow a stack.
    let deep = format!("{{\"officer\": {}1{}}}", "[".repeat(100_000), "]".repeat(100_000));
    let r = client.patch(&url).bearer_auth(&d.token).header("content-type", "application/json").body(deep).send().await.unwrap();
    assert_eq!(r.status(), 400);
    // Still serving, and the recording is unchanged.
    let r = d.json(&format!("/api/v1/recordings/{id}")).await;
    assert_eq!(r["officer"], serde_json::Value::Null, "{r}");
}

#[tokio::test]
async fn token_brute_force_is_locked_out_per_client() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::configure(dir.path(), &DaemonSpec::station(dir.path()));
    d.start().await;
    let mut statuses = vec![];
    let mut retry_after = vec![];
    for i in 0..25 {
        let r = d.get_as("/api/v1/recordings", &format!("evd_wrong{i:040}")).await;
        statuses.push(r.status().as_u16());
        if r.status() == 429 {
            retry_after.push(r.headers()["retry-after"].to_str().unwrap().parse::<u64>().unwrap());
            let v: serde_json::Value = r.json().await.unwrap();
            assert_eq!(v["error"]["code"], "too_many_failures", "{v}");
        }
    }
    // MAX_FAILURES = 20 failures are answered 401; after that, 429 until the minute has passed.
    assert_eq!(statuses[..20], [401; 20], "{statuses:?}");
    assert_eq!(statuses[20..], [429; 5], "{statuses:?}");
    assert!(retry_after.iter().all(|s| (1..=60).contains(s)), "{retry_after:?}");

    // While locked, a correct token from the same address is refused too: otherwise the lockout
    // would tell a brute force which guess was right.
    let r = d.get("/api/v1/recordings").await;
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    // Requests without any token, and unknown API routes, are refused the same way.
    assert_eq!(d.get_as("/api/v1/recordings", "").await.status(), 429);
    assert_eq!(d.get_as("/api/v1/nowhere", "").await.status(), 429);
    // Unauthenticated health and metrics keep working.
    assert_eq!(d.get_as("/healthz", "").await.status(), 200);
    assert_eq!(d.get_as("/readyz", "").await.status(), 200);
    assert_eq!(d.get_as("/metrics", "").await.status(), 200);
    assert!(d.log().contains("too many failed authentications"), "lockout logged:\n{}", d.log());
    assert!(d.alive());
}

#[tokio::test]
async fn successful_and_tokenless_requests_are_not_counted() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::configure(dir.path(), &DaemonSpec::station(dir.path()));
    d.start().await;
    // Many good requests and many without a token, then 19 failures: still not locked.
    for _ in 0..30 {
        assert_eq!(d.get("/api/v1/recordings").await.status(), 200);
        assert_eq!(d.get_as("/api/v1/recordings", "").await.status(), 401);
    }
    for i in 0..19 {
        assert_eq!(d.get_as("/api/v1/recordings", &format!("evd_bad{i}")).await.status(), 401);
    }
    assert_eq!(d.get("/api/v1/recordings").await.status(), 200);
    // The twentieth failure locks.
    assert_eq!(d.get_as("/api/v1/recordings", "evd_bad19").await.status(), 401);
    assert_eq!(d.get("/api/v1/recordings").await.status(), 429);
}

/// Slowloris: a client that trickles its request head (a byte every 200 ms, never finishing) is
/// disconnected once `api.header_timeout` passes, while other clients are served meanwhile.
#[tokio::test]
async fn slowloris_clients_are_cut_off_at_the_header_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::configure(dir.path(), &DaemonSpec::station(dir.path()));
    let cfg = std::fs::read_to_string(&d.config).unwrap().replace("[api]\n", "[api]\nheader_timeout = \"1s\"\n");
    std::fs::write(&d.config, cfg).unwrap();
    d.start().await;

    let mut slow = Vec::new();
    for _ in 0..20 {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", d.port)).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await.unwrap();
        slow.push(s);
    }
    let started = std::time::Instant::now();
    // Trickle a header byte per client every 200 ms until the server hangs up on each.
    let mut open: Vec<bool> = vec![true; slow.len()];
    while open.iter().any(|o| *o) && started.elapsed() < Duration::from_secs(10) {
        for (s, o) in slow.iter_mut().zip(open.iter_mut()).filter(|(_, o)| **o) {
            let mut probe = [0u8; 256];
            match tokio::time::timeout(Duration::from_millis(1), s.read(&mut probe)).await {
                Ok(Ok(0)) | Ok(Err(_)) => *o = false,
                Ok(Ok(_)) => *o = false, // an error answer (408) and then the close
                Err(_) if s.write_all(b"X").await.is_err() => *o = false,
                Err(_) => {}
            }
        }
        // Meanwhile the server answers others at once.
        let r = tokio::time::timeout(Duration::from_secs(2), d.get("/healthz")).await.expect("healthz answers during the attack");
        assert_eq!(r.status(), 200);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let took = started.elapsed();
    assert!(open.iter().all(|o| !*o), "{} slow clients still connected after {took:?}", open.iter().filter(|o| **o).count());
    assert!(took < Duration::from_secs(5), "cut off after {took:?}, want about the 1 s deadline");
    assert!(took >= Duration::from_millis(800), "cut off after {took:?}: sooner than the deadline");
}
