//! `GET /api/v1/events` against the real daemon: a new recording on the dock and a change made
//! through the API arrive as `event: recording` within moments, a reconnect with `Last-Event-ID`
//! (or `?after=`) resumes without replaying what was seen, and a caller sees only what is in their
//! scope. The 15 s keep-alive is not tested (too slow for the suite).

use std::time::{Duration, Instant};

use crate::harness::{Daemon, DaemonSpec, sha256_file, write_random};

/// One SSE message (comment-only blocks such as keep-alives are skipped).
#[derive(Debug, Clone, Default)]
struct Msg {
    id: Option<String>,
    event: Option<String>,
    data: String,
}

/// A `recording` event: its id and the JSON it carries.
#[derive(Debug, Clone)]
struct Rec {
    id: i64,
    data: serde_json::Value,
}

impl Rec {
    fn change(&self) -> &str {
        self.data["change"].as_str().unwrap_or_default()
    }
}

/// An open event stream, read chunk by chunk.
struct EventStream {
    resp: reqwest::Response,
    buf: Vec<u8>,
}

impl EventStream {
    /// Connects with `token`, optionally resuming after `last_id` (header) or with a query.
    async fn open(d: &Daemon, token: &str, query: &str, last_id: Option<i64>) -> EventStream {
        let mut r = reqwest::Client::new().get(format!("http://127.0.0.1:{}/api/v1/events{query}", d.port)).bearer_auth(token);
        if let Some(id) = last_id {
            r = r.header("Last-Event-ID", id.to_string());
        }
        let resp = r.send().await.unwrap();
        assert_eq!(resp.status(), 200);
        let ct = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
        assert!(ct.starts_with("text/event-stream"), "content-type {ct}");
        EventStream { resp, buf: Vec::new() }
    }

    /// The next message, or None when `until` passes first.
    async fn next(&mut self, until: Instant) -> Option<Msg> {
        loop {
            if let Some(end) = self.buf.windows(2).position(|w| w == b"\n\n") {
                let block: Vec<u8> = self.buf.drain(..end + 2).collect();
                let mut m = Msg::default();
                let mut any = false;
                for line in String::from_utf8(block).unwrap().lines() {
                    let (field, value) = line.split_once(':').unwrap_or((line, ""));
                    let value = value.strip_prefix(' ').unwrap_or(value);
                    match field {
                        "" => continue, // a comment (keep-alive)
                        "id" => m.id = Some(value.to_string()),
                        "event" => m.event = Some(value.to_string()),
                        "data" => m.data.push_str(value),
                        _ => {}
                    }
                    any = true;
                }
                if any {
                    return Some(m);
                }
                continue;
            }
            let left = until.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.resp.chunk()).await {
                Ok(Ok(Some(b))) => self.buf.extend_from_slice(&b),
                Ok(Ok(None)) => panic!("the event stream ended"),
                Ok(Err(e)) => panic!("reading the event stream: {e}"),
                Err(_) => return None,
            }
        }
    }

    /// The next `recording` event (bare `id:` messages skipped), or None when `until` passes.
    async fn next_recording(&mut self, until: Instant) -> Option<Rec> {
        loop {
            let m = self.next(until).await?;
            if m.event.as_deref() == Some("recording") {
                let id = m.id.as_deref().expect("a recording event has an id").parse().unwrap();
                return Some(Rec { id, data: serde_json::from_str(&m.data).unwrap() });
            }
            assert!(m.event.is_none() && m.data.is_empty(), "unexpected message {m:?}");
        }
    }

    /// Every message until `until`.
    async fn drain(&mut self, until: Instant) -> Vec<Msg> {
        let mut out = vec![];
        while let Some(m) = self.next(until).await {
            out.push(m);
        }
        out
    }
}

fn secs(n: u64) -> Instant {
    Instant::now() + Duration::from_secs(n)
}

#[tokio::test]
async fn arrivals_and_changes_stream_live_resume_and_stay_in_scope() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = DaemonSpec::station(dir.path());
    spec.docks = vec![("cam".into(), String::new())];
    let mut d = Daemon::configure(dir.path(), &spec);
    let other = d.token_create(&["--name", "other", "--role", "officer", "--officer", "OTHER"]);
    let admin = d.token_create(&["--name", "adm", "--role", "admin"]);
    d.start().await;

    // Auth and parameters.
    assert_eq!(d.get_as("/api/v1/events", "").await.status(), 401);
    assert_eq!(d.get_as("/api/v1/events", &admin).await.status(), 403, "admins see no footage");
    let (s, e) = d.call(reqwest::Method::GET, "/api/v1/events?after=abc", &d.token, None).await;
    assert_eq!((s, e["error"]["code"].as_str()), (400, Some("invalid_parameter")));
    let (s, e) = d.call(reqwest::Method::GET, "/api/v1/events?since=1", &d.token, None).await;
    assert_eq!((s, e["error"]["code"].as_str()), (400, Some("unknown_parameter")));

    // Both connected before the file lands; without a position they start at the chain head.
    let mut sup = EventStream::open(&d, &d.token, "", None).await;
    let mut off = EventStream::open(&d, &other, "", None).await;
    let staged = dir.path().join("clip1.mp4");
    write_random(&staged, 300_000, 21);
    let sha = sha256_file(&staged);
    std::fs::rename(&staged, d.dock("cam").join("clip1.mp4")).unwrap();

    // The first recording event is the arrival, within moments of the commit.
    let archived = sup.next_recording(secs(30)).await.unwrap_or_else(|| panic!("no archived event; log:\n{}", d.log()));
    let seen_at = chrono::Utc::now();
    assert_eq!(archived.change(), "archived", "{:?}", archived.data);
    assert_eq!(archived.data["sha256"], sha);
    assert_eq!(archived.data["original_name"], "clip1.mp4");
    assert!(archived.data.get("retention_permanent").is_some(), "shown as GET /recordings/{{id}} shows it: {:?}", archived.data);
    let committed = chrono::DateTime::parse_from_rfc3339(archived.data["archived_at"].as_str().unwrap()).unwrap();
    let lag = seen_at.signed_duration_since(committed);
    assert!(lag < chrono::Duration::seconds(2), "archived event {lag} after the commit");
    let id = archived.data["id"].as_str().unwrap().to_string();
    assert_eq!(d.recordings().await.iter().map(|r| r["id"].as_str().unwrap().to_string()).collect::<Vec<_>>(), vec![id.clone()]);

    // A change through the API arrives as its custody kind.
    let asked = Instant::now();
    let (s, r) = d
        .call(
            reqwest::Method::PUT,
            &format!("/api/v1/recordings/{id}/classification"),
            &d.token,
            Some(serde_json::json!({"classification": "privacy", "reason": "a minor"})),
        )
        .await;
    assert_eq!(s, 200, "{r}");
    // Media derivation may add `derived` events in between; everything live from the archived
    // event to the classified one is kept to compare with the replays.
    let mut live = vec![archived.clone()];
    let classified = loop {
        let ev = sup.next_recording(secs(10)).await.expect("classified event");
        assert_eq!(ev.data["id"], id.as_str());
        assert!(ev.id > live.last().unwrap().id, "ids increase");
        live.push(ev.clone());
        if ev.change() == "classified" {
            break ev;
        }
        assert_eq!(ev.change(), "derived", "only media derivation happens meanwhile: {:?}", ev.data);
    };
    assert!(asked.elapsed() < Duration::from_secs(3), "classified event after {:?}", asked.elapsed());
    assert_eq!(classified.data["classification"], "privacy");

    // Resume with Last-Event-ID = the archived event: the rest follows, the archived one is not
    // sent again.
    let mut again = EventStream::open(&d, &d.token, "", Some(archived.id)).await;
    for want in &live[1..] {
        let got = again.next_recording(secs(5)).await.expect("replayed event");
        assert_eq!((got.id, got.change()), (want.id, want.change()));
    }
    // Resume right before the classified event (header beats the query): the next event is it.
    let before = live[live.len() - 2].id;
    let mut again = EventStream::open(&d, &d.token, "?after=0", Some(before)).await;
    let next = again.next_recording(secs(5)).await.expect("the classified event");
    assert_eq!((next.id, next.change()), (classified.id, "classified"));
    // `?after=` alone works too.
    let mut again = EventStream::open(&d, &d.token, &format!("?after={}", archived.id), None).await;
    assert_eq!(again.next_recording(secs(5)).await.expect("replayed event").id, live[1].id);

    // The officer of another id, connected all along, got no recording event — yet the stream
    // was live: its position moved past the filtered entries with bare `id:` messages.
    let msgs = off.drain(secs(2)).await;
    assert!(msgs.iter().all(|m| m.event.is_none() && m.data.is_empty()), "out of scope events leaked: {msgs:?}");
    let last = msgs.iter().filter_map(|m| m.id.as_deref()?.parse::<i64>().ok()).max();
    assert!(last.is_some_and(|l| l >= classified.id), "position did not advance: {msgs:?}");
    // Nor does a full replay from the start show it.
    let mut replay = EventStream::open(&d, &other, "?after=0", None).await;
    let msgs = replay.drain(secs(2)).await;
    assert!(msgs.iter().all(|m| m.event.is_none()), "out of scope events leaked on replay: {msgs:?}");

    // No `accessed` entry per message: the custody log holds no access by the stream's readers.
    let log = d.json(&format!("/api/v1/recordings/{id}/custody")).await;
    let accesses = log["items"].as_array().unwrap().iter().filter(|e| e["kind"] == "accessed").count();
    assert_eq!(accesses, 0, "{log}");
    drop((sup, off));
    d.stop();
}
