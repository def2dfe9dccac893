//! OIDC bearer tokens on a real daemon: a JWKS served over HTTP by the test (keys can be swapped
//! to rotate them), JWTs signed here map to principals whose role, unit and officer id scope what
//! they see exactly as the daemon's own tokens do; expired, wrong-issuer, wrong-audience and
//! tampered tokens get 401 with the JSON error; a new `kid` is picked up by a refetch (rate
//! limited); accesses are audited under the JWT's principal; an unreadable `jwks_file` stops the
//! start with a message naming the key and the file.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use crate::harness::{Daemon, DaemonSpec, bin, write_random};

const ISS: &str = "https://idp.test/realms/pd";
const AUD: &str = "evidenced";

fn b64(b: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(b)
}

/// A signing key of the test IdP and its public JWK.
struct IdpKey {
    kid: &'static str,
    alg: Algorithm,
    enc: EncodingKey,
    jwk: Value,
}

fn rsa_key(kid: &'static str) -> IdpKey {
    let rsa = openssl::rsa::Rsa::generate(2048).unwrap();
    let jwk = json!({"kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid, "n": b64(&rsa.n().to_vec()), "e": b64(&rsa.e().to_vec())});
    IdpKey { kid, alg: Algorithm::RS256, enc: EncodingKey::from_rsa_der(&rsa.private_key_to_der().unwrap()), jwk }
}

fn ed_key(kid: &'static str) -> IdpKey {
    let pk = openssl::pkey::PKey::generate_ed25519().unwrap();
    let jwk = json!({"kty": "OKP", "crv": "Ed25519", "kid": kid, "x": b64(&pk.raw_public_key().unwrap())});
    IdpKey { kid, alg: Algorithm::EdDSA, enc: EncodingKey::from_ed_der(&pk.private_key_to_pkcs8().unwrap()), jwk }
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Claims of a token for `sub` with `role` in `unit`, valid for ten minutes.
fn claims(sub: &str, role: &str, unit: &str) -> Value {
    json!({"iss": ISS, "aud": AUD, "sub": sub, "role": role, "unit": unit, "iat": now(), "exp": now() + 600})
}

fn sign(k: &IdpKey, claims: &Value) -> String {
    let mut h = Header::new(k.alg);
    h.kid = Some(k.kid.to_string());
    jsonwebtoken::encode(&h, claims, &k.enc).unwrap()
}

/// The test IdP's JWKS endpoint: serves whatever key set is current and counts fetches.
struct Jwks {
    port: u16,
    keys: Arc<RwLock<Value>>,
    fetches: Arc<AtomicUsize>,
}

impl Jwks {
    async fn serve(keys: &[&IdpKey]) -> Jwks {
        let set = Arc::new(RwLock::new(Value::Null));
        let fetches = Arc::new(AtomicUsize::new(0));
        let (s, f) = (set.clone(), fetches.clone());
        let app = axum::Router::new().route(
            "/realms/pd/certs",
            axum::routing::get(move || {
                let (s, f) = (s.clone(), f.clone());
                async move {
                    f.fetch_add(1, Ordering::SeqCst);
                    axum::Json(s.read().unwrap().clone())
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let j = Jwks { port, keys: set, fetches };
        j.set(keys);
        j
    }

    fn set(&self, keys: &[&IdpKey]) {
        *self.keys.write().unwrap() = json!({"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()});
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/realms/pd/certs", self.port)
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

/// Ids of the recordings a token lists.
async fn listed(d: &Daemon, token: &str) -> Vec<String> {
    let (s, v) = d.call(reqwest::Method::GET, "/api/v1/recordings", token, None).await;
    assert_eq!(s, 200, "{v}");
    v["items"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap().to_string()).collect()
}

#[tokio::test]
async fn oidc_tokens_are_scoped_audited_checked_and_rotated() {
    let k1 = rsa_key("k1");
    let k2 = ed_key("k2");
    let jwks = Jwks::serve(&[&k1]).await;
    let dir = tempfile::tempdir().unwrap();
    let mut spec = DaemonSpec::station(dir.path());
    spec.extra = format!(
        "[oidc]\nissuer = \"{ISS}\"\njwks_url = \"{}\"\naudience = \"{AUD}\"\njwks_refresh = \"1s\"\nleeway = \"5s\"\n",
        jwks.url()
    );
    let mut d = Daemon::configure(dir.path(), &spec);
    // Two recordings in two units, by two officers.
    let src = dir.path().join("import");
    std::fs::create_dir_all(&src).unwrap();
    for (i, (officer, unit)) in [("P1", "JS/NJ/XW"), ("P2", "JS/SZ")].iter().enumerate() {
        let p = src.join(format!("rec{i}.mp4"));
        write_random(&p, 150_000 + i, 90 + i as u64);
        let sidecar = json!({"device_serial": format!("BWC{i}"), "officer_id": officer, "unit": unit});
        std::fs::write(p.with_extension("json"), sidecar.to_string()).unwrap();
    }
    let (code, out, err) = d.cli(&["ingest", "--quiet", src.to_str().unwrap()]);
    assert_eq!(code, 0, "ingest: {out}{err}");
    d.start().await;
    assert_eq!(jwks.fetches(), 0, "a JWKS URL is fetched on first use, not at start");
    let recs = d.wait_recordings(2, Duration::from_secs(10)).await;
    let id_of = |officer: &str| recs.iter().find(|r| r["officer"] == officer).unwrap()["id"].as_str().unwrap().to_string();
    let (nj, sz) = (id_of("P1"), id_of("P2"));

    // A supervisor of JS/NJ sees the NJ recording only; the SZ one is 404.
    let sup = sign(&k1, &claims("alice@pd.example", "supervisor", "/JS/NJ"));
    assert_eq!(listed(&d, &sup).await, [nj.as_str()]);
    assert_eq!(jwks.fetches(), 1);
    let (s, r) = d.call(reqwest::Method::GET, &format!("/api/v1/recordings/{nj}"), &sup, None).await;
    assert_eq!((s, r["unit"].as_str()), (200, Some("JS/NJ/XW")), "{r}");
    assert_eq!(d.call(reqwest::Method::GET, &format!("/api/v1/recordings/{sz}"), &sup, None).await.0, 404);
    // A supervisor of another unit does not see it.
    let other = sign(&k1, &claims("bob@pd.example", "supervisor", "JS/SZ"));
    assert_eq!(d.call(reqwest::Method::GET, &format!("/api/v1/recordings/{nj}"), &other, None).await.0, 404);
    assert_eq!(listed(&d, &other).await, [sz.as_str()]);
    // An officer sees only their own recordings (officer id from the officer_id claim).
    let mut c = claims("p2.smith", "officer", "JS");
    c["officer_id"] = json!("P2");
    let officer = sign(&k1, &c);
    assert_eq!(listed(&d, &officer).await, [sz.as_str()]);
    assert_eq!(d.call(reqwest::Method::GET, &format!("/api/v1/recordings/{nj}"), &officer, None).await.0, 404);
    // An admin JWT sees no footage; the daemon's own tokens still work.
    let admin = sign(&k1, &claims("root@pd.example", "admin", "/"));
    assert_eq!(d.call(reqwest::Method::GET, "/api/v1/recordings", &admin, None).await.0, 403);
    assert_eq!(listed(&d, &d.token).await.len(), 2);

    // The access is audited under the JWT's principal.
    let (s, v) = d.call(reqwest::Method::GET, &format!("/api/v1/recordings/{nj}/custody"), &d.token, None).await;
    assert_eq!(s, 200, "{v}");
    let accessed: Vec<&Value> =
        v["items"].as_array().unwrap().iter().filter(|e| e["kind"] == "accessed" && e["actor"] == "alice@pd.example").collect();
    assert!(!accessed.is_empty(), "no accessed event by the JWT's principal: {v}");

    // Refused tokens: 401 with the JSON error.
    let refused = |what: &'static str, token: String| {
        let d = &d;
        async move {
            let (s, v) = d.call(reqwest::Method::GET, "/api/v1/recordings", &token, None).await;
            assert_eq!((s, v["error"]["code"].as_str()), (401, Some("unauthorized")), "{what}: {v}");
        }
    };
    let mut c = claims("alice@pd.example", "supervisor", "JS/NJ");
    c["exp"] = json!(now() - 60);
    refused("expired", sign(&k1, &c)).await;
    let mut c = claims("alice@pd.example", "supervisor", "JS/NJ");
    c["iss"] = json!("https://evil.example/");
    refused("wrong issuer", sign(&k1, &c)).await;
    let mut c = claims("alice@pd.example", "supervisor", "JS/NJ");
    c["aud"] = json!("another-app");
    refused("wrong audience", sign(&k1, &c)).await;
    let parts: Vec<&str> = sup.split('.').collect();
    let forged = claims("alice@pd.example", "supervisor", "/");
    refused("tampered", format!("{}.{}.{}", parts[0], b64(forged.to_string().as_bytes()), parts[2])).await;
    refused("unknown role", sign(&k1, &claims("alice@pd.example", "chief", "JS"))).await;

    // Rotation: a token with the new kid fails until the JWKS serves it, then works after a refetch.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let rotated = sign(&k2, &claims("carol@pd.example", "auditor", "JS/NJ"));
    refused("kid not served yet", rotated.clone()).await;
    jwks.set(&[&k1, &k2]);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(listed(&d, &rotated).await, [nj.as_str()]);
    // Unknown kids do not make the daemon hammer the IdP: at most one fetch per jwks_refresh.
    let before = jwks.fetches();
    let stranger = ed_key("k9");
    for _ in 0..4 {
        refused("unknown kid", sign(&stranger, &claims("eve", "auditor", ""))).await;
    }
    assert!(jwks.fetches() - before <= 1, "{} fetches for 4 unknown kids within a second", jwks.fetches() - before);
    assert!(d.log().contains("OIDC token refused"), "refusals are logged");
}

#[tokio::test]
async fn missing_jwks_file_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-jwks.json");
    let mut spec = DaemonSpec::station(dir.path());
    spec.extra = format!("[oidc]\nissuer = \"{ISS}\"\njwks_file = \"{}\"\naudience = \"{AUD}\"\n", missing.display());
    let d = Daemon::configure(dir.path(), &spec);
    let mut child = std::process::Command::new(bin())
        .arg("--config")
        .arg(&d.config)
        .arg("run")
        .current_dir(&d.dir)
        .env_remove("NOTIFY_SOCKET")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the daemon did not stop on a missing JWKS file");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert!(!status.success(), "{err}");
    let last = err.lines().last().unwrap_or_default();
    assert!(
        last.contains("[oidc]") && last.contains("oidc.jwks_file") && last.contains(&missing.display().to_string()),
        "the error names the key and the file: {err}"
    );
}
