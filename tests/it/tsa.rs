//! A real local RFC 3161 Time-Stamping Authority for tests, and the tests of
//! `evidenced::custody::tsa` against it.
//!
//! [`TestTsa`] builds a throwaway PKI with the `openssl` CLI (a root CA, a TSA signing certificate
//! issued by it with a critical `timeStamping` extended key usage, and an unrelated CA for negative
//! tests) and serves `openssl ts -reply` over HTTP on 127.0.0.1 from its own thread and tokio
//! runtime, so it keeps answering whatever the test's own runtime is doing (blocking CLI calls
//! included). It can be stopped (the port then refuses connections) and restarted on the same port
//! with the same PKI. Other test modules use it as `crate::tsa::TestTsa`.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use evidenced::custody::tsa::{Token, TsaClient, TsaError, token_certs_pem, verify_token};

/// The policy OID the test TSA puts into its tokens.
pub const POLICY: &str = "1.2.3.4.1";

/// How a [`TestTsa`] behaves.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Whether the TSA's signing certificate carries the (critical) `timeStamping` extended key
    /// usage. `openssl ts -reply` refuses to sign with a certificate without it, so with `false`
    /// the server produces the TSTInfo with a hidden helper certificate that has it (same key) and
    /// re-signs it as a CMS SignedData with the EKU-less certificate (`openssl cms -sign -cades`):
    /// a well-formed token whose only fault is the signer's missing EKU.
    pub eku: bool,
    /// Whether the TSA refuses every SHA-256 request (it is configured for SHA-384 only), so it
    /// answers with PKIStatus `rejection` / `badAlg`.
    pub reject: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options { eku: true, reject: false }
    }
}

/// State the HTTP handler shares with the test.
struct Shared {
    /// The PKI and scratch directory.
    dir: PathBuf,
    /// How to answer.
    opts: Options,
    /// Serializes `openssl ts -reply` runs (they share the serial file and scratch names).
    sign_lock: tokio::sync::Mutex<()>,
    /// When set, every request is answered with the last response produced (a replay).
    replay: AtomicBool,
    /// When set, every request is answered with HTTP 503.
    failing: AtomicBool,
    /// The last response produced.
    last: Mutex<Option<Vec<u8>>>,
    /// Requests received (any answer).
    requests: AtomicUsize,
}

/// The running HTTP server: its own thread and runtime.
struct Server {
    /// Tells the server thread to drop its runtime (closing the listener and every connection).
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    /// The server thread.
    thread: Option<std::thread::JoinHandle<()>>,
}

/// A local RFC 3161 TSA backed by the `openssl` CLI.
pub struct TestTsa {
    /// The PKI, config and scratch files; removed on drop.
    dir: tempfile::TempDir,
    /// The HTTP port (kept across stop/restart).
    port: u16,
    /// What the handler shares.
    shared: Arc<Shared>,
    /// The server while listening.
    server: Option<Server>,
}

/// Runs `openssl ARGS` in `dir`, panicking with its stderr on failure; returns stdout.
pub fn openssl(dir: &Path, args: &[&str]) -> Vec<u8> {
    let out = Command::new("openssl").args(args).current_dir(dir).output().expect("the openssl CLI is required");
    assert!(out.status.success(), "openssl {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// Runs `openssl ARGS` in `dir`; returns (success, stderr).
pub fn openssl_status(dir: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new("openssl").args(args).current_dir(dir).output().expect("the openssl CLI is required");
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Creates a self-signed P-256 CA `NAME.key`/`NAME.pem` in `dir` with subject `CN=cn`.
fn make_ca(dir: &Path, name: &str, cn: &str) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.pem"),
            "-days",
            "3650",
            "-subj",
            &format!("/CN={cn}"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
}

/// Issues `NAME.pem` for the key behind `csr` from the CA `ca`, with the extension lines `ext`.
fn issue(dir: &Path, csr: &str, name: &str, ext: &str) {
    std::fs::write(dir.join(format!("{name}.ext")), ext).unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "3650",
            "-extfile",
            &format!("{name}.ext"),
            "-out",
            &format!("{name}.pem"),
        ],
    );
}

/// The `openssl.cnf` of a TSA signing with `signer` and accepting `digest`.
fn ts_config(dir: &Path, signer: &str, digest: &str) -> String {
    let d = dir.display();
    format!(
        "[tsa]\ndefault_tsa = tsa_config1\n\n[tsa_config1]\ndir = {d}\nserial = {d}/serial\ncrypto_device = builtin\n\
         signer_cert = {d}/{signer}\ncerts = {d}/ca.pem\nsigner_key = {d}/tsa.key\nsigner_digest = sha256\n\
         default_policy = {POLICY}\nother_policies = 1.2.3.4.2\ndigests = {digest}\n\
         accuracy = secs:1, millisecs:500, microsecs:100\nordering = yes\ntsa_name = yes\n\
         ess_cert_id_chain = no\ness_cert_id_alg = sha256\n"
    )
}

/// Bytes as lowercase hex.
fn hexs(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl TestTsa {
    /// A TSA with the default [`Options`] (valid EKU, grants SHA-256).
    pub fn start() -> TestTsa {
        TestTsa::start_with(Options::default())
    }

    /// Creates the PKI in a fresh temp dir and starts serving on a free port. Blocking (it runs
    /// the `openssl` CLI a few times, well under a second with P-256 keys); fine in async tests.
    pub fn start_with(opts: Options) -> TestTsa {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        make_ca(d, "ca", "evidenced test TSA CA");
        // Same subject as the real CA: the negative test then proves signatures are checked,
        // not just names matched.
        make_ca(d, "wrong-ca", "evidenced test TSA CA");
        openssl(
            d,
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                "tsa.key",
                "-out",
                "tsa.csr",
                "-subj",
                "/CN=evidenced test TSA",
            ],
        );
        let base = "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,nonRepudiation\n\
                    subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n";
        let with_eku = format!("{base}extendedKeyUsage=critical,timeStamping\n");
        if opts.eku {
            issue(d, "tsa.csr", "tsa", &with_eku);
        } else {
            issue(d, "tsa.csr", "tsa", base);
            // Same key and subject, with the EKU: only used to get a TSTInfo out of `ts -reply`.
            issue(d, "tsa.csr", "helper", &with_eku);
        }
        let digest = if opts.reject { "sha384" } else { "sha256" };
        std::fs::write(d.join("ts.cnf"), ts_config(d, if opts.eku { "tsa.pem" } else { "helper.pem" }, digest)).unwrap();
        // What a TSA configured with the real signer would use (for the EKU test's CLI check).
        std::fs::write(d.join("signer.cnf"), ts_config(d, "tsa.pem", digest)).unwrap();
        std::fs::write(d.join("serial"), "01\n").unwrap();
        // The first listener is kept (not dropped and re-bound), so no other test can take the port.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared {
            dir: d.to_path_buf(),
            opts,
            sign_lock: tokio::sync::Mutex::new(()),
            replay: AtomicBool::new(false),
            failing: AtomicBool::new(false),
            last: Mutex::new(None),
            requests: AtomicUsize::new(0),
        });
        let mut t = TestTsa { dir, port, shared, server: None };
        t.serve(listener);
        t
    }

    /// The URL to POST TimeStampReqs to.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    /// The TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The CA certificate (PEM file) every token chains to.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// The CA certificate's PEM bytes.
    pub fn ca_pem(&self) -> Vec<u8> {
        std::fs::read(self.ca_file()).unwrap()
    }

    /// An unrelated CA (same subject name, other key), for negative tests.
    pub fn wrong_ca_file(&self) -> PathBuf {
        self.dir.path().join("wrong-ca.pem")
    }

    /// The TSA's signing certificate (PEM file).
    pub fn signer_file(&self) -> PathBuf {
        self.dir.path().join("tsa.pem")
    }

    /// The PKI directory (CLI work in tests).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A client for this TSA with a 10 s timeout.
    pub fn client(&self) -> TsaClient {
        TsaClient::new(&self.url(), &self.ca_pem(), Duration::from_secs(10)).unwrap()
    }

    /// Requests received so far (any answer).
    pub fn requests(&self) -> usize {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// When on, every request gets the last response produced again (a replayed answer).
    pub fn set_replay(&self, on: bool) {
        self.shared.replay.store(on, Ordering::SeqCst);
    }

    /// When on, every request gets HTTP 503.
    pub fn set_failing(&self, on: bool) {
        self.shared.failing.store(on, Ordering::SeqCst);
    }

    /// Stops listening: the port refuses connections and open connections are closed.
    pub fn stop(&mut self) {
        if let Some(mut s) = self.server.take() {
            if let Some(tx) = s.shutdown.take() {
                let _ = tx.send(());
            }
            if let Some(t) = s.thread.take() {
                let _ = t.join();
            }
        }
    }

    /// Listens again on the same port with the same PKI (stops first if running). Listening when
    /// this returns. (While stopped, the port is free: a test picking free ports at that moment
    /// could take it; re-binding then retries for 5 s before panicking.)
    pub fn restart(&mut self) {
        self.stop();
        // The port was ours a moment ago; SO_REUSEADDR (std sets it on Unix) covers TIME_WAIT.
        let mut tries = 0;
        let listener = loop {
            match TcpListener::bind(("127.0.0.1", self.port)) {
                Ok(l) => break l,
                Err(_) if tries < 50 => {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => panic!("rebinding test TSA port {}: {e}", self.port),
            }
        };
        self.serve(listener);
    }

    /// Serves on `listener` from a new thread with its own runtime.
    fn serve(&mut self, listener: TcpListener) {
        listener.set_nonblocking(true).unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let shared = self.shared.clone();
        let thread = std::thread::Builder::new()
            .name(format!("test-tsa-{}", self.port))
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                rt.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                    let app = axum::Router::new().route("/", axum::routing::post(reply)).with_state(shared);
                    tokio::select! {
                        r = axum::serve(listener, app) => { let _ = r; }
                        _ = rx => {}
                    }
                });
                // Dropping the runtime here aborts every connection task and closes the sockets;
                // pending `openssl` children are killed (kill_on_drop).
                drop(rt);
            })
            .unwrap();
        self.server = Some(Server { shutdown: Some(tx), thread: Some(thread) });
    }

    /// A TSTInfo (DER) for `sha256` with the given genTime (`YYYYMMDDHHMMSSZ`) and serial, built
    /// by `openssl asn1parse -genconf` (no nonce, no TSA name).
    pub fn tst_info(&self, sha256: &[u8; 32], gen_time: &str, serial: u64) -> Vec<u8> {
        let d = self.dir.path();
        let conf = format!(
            "asn1=SEQUENCE:tst\n[tst]\nversion=INTEGER:1\npolicy=OID:{POLICY}\nimprint=SEQUENCE:imprint\n\
             serial=INTEGER:{serial}\ngentime=GENTIME:{gen_time}\n[imprint]\nalg=SEQUENCE:alg\n\
             digest=FORMAT:HEX,OCTETSTRING:{}\n[alg]\noid=OID:sha256\nnull=NULL\n",
            hexs(sha256)
        );
        let name = format!("forged-{}", uuid::Uuid::new_v4().simple());
        std::fs::write(d.join(format!("{name}.cnf")), conf).unwrap();
        openssl(d, &["asn1parse", "-genconf", &format!("{name}.cnf"), "-out", &format!("{name}.tst"), "-noout"]);
        std::fs::read(d.join(format!("{name}.tst"))).unwrap()
    }

    /// Signs a TSTInfo with the TSA's signing certificate and key as a CMS SignedData (CAdES
    /// signingCertificateV2, the CA attached) and wraps it into a granted TimeStampResp.
    pub fn sign_tst_info(&self, tst_info: &[u8]) -> Vec<u8> {
        sign_tst_info_sync(self.dir.path(), tst_info)
    }
}

/// Blocking form of [`TestTsa::sign_tst_info`].
fn sign_tst_info_sync(d: &Path, tst_info: &[u8]) -> Vec<u8> {
    let name = format!("resign-{}", uuid::Uuid::new_v4().simple());
    std::fs::write(d.join(format!("{name}.tst")), tst_info).unwrap();
    openssl(d, &sign_args(&name).iter().map(String::as_str).collect::<Vec<_>>());
    openssl(d, &["ts", "-reply", "-token_in", "-in", &format!("{name}.tok"), "-out", &format!("{name}.tsr")]);
    std::fs::read(d.join(format!("{name}.tsr"))).unwrap()
}

/// `openssl cms -sign` of `NAME.tst` into `NAME.tok` with `tsa.pem`/`tsa.key`.
fn sign_args(name: &str) -> Vec<String> {
    [
        "cms",
        "-sign",
        "-binary",
        "-nodetach",
        "-cades",
        "-md",
        "sha256",
        "-econtent_type",
        "id-smime-ct-TSTInfo",
        "-signer",
        "tsa.pem",
        "-inkey",
        "tsa.key",
        "-certfile",
        "ca.pem",
        "-outform",
        "DER",
        "-in",
        &format!("{name}.tst"),
        "-out",
        &format!("{name}.tok"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

impl Drop for TestTsa {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs `openssl ARGS` in `dir` without blocking the server's runtime.
async fn openssl_async(dir: &Path, args: &[String]) -> Result<(), String> {
    let out = tokio::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| format!("spawning openssl: {e}"))?;
    if out.status.success() { Ok(()) } else { Err(format!("openssl {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr))) }
}

/// Produces a TimeStampResp for a TimeStampReq with the real CLI (see [`Options::eku`]).
async fn sign(sh: &Shared, query: &[u8]) -> Result<Vec<u8>, String> {
    let d = &sh.dir;
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    tokio::fs::write(d.join("q.tsq"), query).await.map_err(|e| e.to_string())?;
    if sh.opts.eku {
        openssl_async(d, &s(&["ts", "-reply", "-config", "ts.cnf", "-queryfile", "q.tsq", "-out", "r.tsr"])).await?;
    } else {
        openssl_async(d, &s(&["ts", "-reply", "-config", "ts.cnf", "-queryfile", "q.tsq", "-token_out", "-out", "h.tok"])).await?;
        openssl_async(d, &s(&["cms", "-verify", "-noverify", "-inform", "DER", "-in", "h.tok", "-out", "r.tst"])).await?;
        openssl_async(d, &sign_args("r")).await?;
        openssl_async(d, &s(&["ts", "-reply", "-token_in", "-in", "r.tok", "-out", "r.tsr"])).await?;
    }
    tokio::fs::read(d.join("r.tsr")).await.map_err(|e| e.to_string())
}

/// POST / : TimeStampReq DER in, TimeStampResp DER out.
async fn reply(State(sh): State<Arc<Shared>>, body: Bytes) -> Response {
    sh.requests.fetch_add(1, Ordering::SeqCst);
    if sh.failing.load(Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, "test TSA failing on purpose").into_response();
    }
    let ok = |der: Vec<u8>| ([(header::CONTENT_TYPE, "application/timestamp-reply")], der).into_response();
    if sh.replay.load(Ordering::SeqCst) {
        let last = sh.last.lock().unwrap().clone();
        if let Some(der) = last {
            return ok(der);
        }
    }
    let _g = sh.sign_lock.lock().await;
    match sign(&sh, &body).await {
        Ok(der) => {
            *sh.last.lock().unwrap() = Some(der.clone());
            ok(der)
        }
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e).into_response(),
    }
}

// ---------------------------------------------------------------- tests

/// Fails the test if `f` takes longer than 60 s.
async fn within<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), f).await.expect("test timed out")
}

fn sha(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// Writes `bytes` to `DIR/name` and returns the path as a string.
fn put(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p.display().to_string()
}

/// `openssl ts -verify` of a stored response against a hex digest; true on exit 0.
fn cli_verify_digest(dir: &Path, resp: &str, digest: &[u8; 32], ca: &Path) -> bool {
    let ca = ca.display().to_string();
    openssl_status(dir, &["ts", "-verify", "-digest", &hexs(digest), "-in", resp, "-CAfile", &ca]).0
}

#[tokio::test]
async fn stamp_verifies_here_and_with_the_openssl_cli() {
    within(async {
        let tsa = TestTsa::start();
        let client = tsa.client();
        assert_eq!(client.url(), tsa.url());
        let data = b"an evidence recording's bytes".repeat(1000);
        let digest = sha(&data);
        let before = chrono::Utc::now().timestamp_micros();
        let token = client.stamp(&digest).await.unwrap();
        let after = chrono::Utc::now().timestamp_micros();
        // genTime comes from the TSA's clock (this machine's) with second precision.
        assert!(token.gen_time_micros >= before - 2_000_000 && token.gen_time_micros <= after + 2_000_000, "{token:?}");
        assert!(!token.serial.is_empty() && token.serial.chars().all(|c| c.is_ascii_digit()), "{}", token.serial);

        // Stored-token verification gives the same facts.
        let again = verify_token(&token.der, &digest, &tsa.ca_pem()).unwrap();
        assert_eq!(again, token);

        // The real CLI accepts the stored DER, by digest and by data.
        let d = tsa.dir();
        let resp = put(d, "stamped.tsr", &token.der);
        let file = put(d, "stamped.bin", &data);
        assert!(cli_verify_digest(d, &resp, &digest, &tsa.ca_file()));
        let ca = tsa.ca_file().display().to_string();
        let (ok, err) = openssl_status(d, &["ts", "-verify", "-data", &file, "-in", &resp, "-CAfile", &ca]);
        assert!(ok, "{err}");

        // The embedded chain: the TSA's certificate and the CA.
        let pem = token_certs_pem(&token.der).unwrap();
        let certs = openssl::x509::X509::stack_from_pem(&pem).unwrap();
        let ders: Vec<Vec<u8>> = certs.iter().map(|c| c.to_der().unwrap()).collect();
        let want = |p: &Path| openssl::x509::X509::from_pem(&std::fs::read(p).unwrap()).unwrap().to_der().unwrap();
        assert!(ders.contains(&want(&tsa.signer_file())), "signer certificate embedded");
        assert!(ders.contains(&want(&tsa.ca_file())), "CA certificate embedded");

        // Each stamp is a new token with its own serial.
        let second = client.stamp(&digest).await.unwrap();
        assert_ne!(second.serial, token.serial);
        assert_ne!(second.der, token.der);
        assert_eq!(tsa.requests(), 2);
    })
    .await;
}

#[tokio::test]
async fn verify_token_rejects_other_digest_wrong_ca_and_garbled_der() {
    within(async {
        let tsa = TestTsa::start();
        let digest = sha(b"original");
        let token = tsa.client().stamp(&digest).await.unwrap();
        let ca = tsa.ca_pem();
        // Each case must fail as Invalid, for the reason named (libcrypto's error text).
        let invalid = |r: Result<Token, TsaError>, what: &str, why: &str| match r {
            Err(e @ TsaError::Invalid(_)) => assert!(!e.is_transient() && e.to_string().contains(why), "{what}: {e}"),
            other => panic!("{what}: expected Invalid, got {other:?}"),
        };

        invalid(verify_token(&token.der, &sha(b"other"), &ca), "other digest", "message imprint mismatch");
        let wrong = std::fs::read(tsa.wrong_ca_file()).unwrap();
        invalid(verify_token(&token.der, &digest, &wrong), "wrong CA", "certificate verify error");
        assert!(!cli_verify_digest(tsa.dir(), &put(tsa.dir(), "ok.tsr", &token.der), &digest, &tsa.wrong_ca_file()));

        // Truncations at several places, and trailing garbage.
        for cut in [1, 10, token.der.len() / 2, token.der.len() - 1] {
            invalid(verify_token(&token.der[..cut], &digest, &ca), &format!("truncated to {cut}"), "unparsable");
        }
        let mut trailing = token.der.clone();
        trailing.push(0);
        invalid(verify_token(&trailing, &digest, &ca), "trailing byte", "trailing bytes");

        // The ECDSA signature is the last field of the DER: flip a bit in it.
        let mut flipped = token.der.clone();
        let n = flipped.len();
        flipped[n - 3] ^= 0x01;
        invalid(verify_token(&flipped, &digest, &ca), "flipped signature bit", "signature failure");
        assert!(!cli_verify_digest(tsa.dir(), &put(tsa.dir(), "flipped.tsr", &flipped), &digest, &tsa.ca_file()));

        // Changing the signed content (the imprint inside TSTInfo) breaks the signature too,
        // even when verifying against the changed digest.
        let mut tampered = token.der.clone();
        let at = tampered.windows(32).position(|w| w == digest).expect("imprint bytes in the DER");
        tampered[at] ^= 0x80;
        let mut forged_digest = digest;
        forged_digest[0] ^= 0x80;
        invalid(verify_token(&tampered, &forged_digest, &ca), "tampered TSTInfo", "signature failure");

        // The untouched token still verifies.
        verify_token(&token.der, &digest, &ca).unwrap();
    })
    .await;
}

#[tokio::test]
async fn rejection_status_is_rejected_when_stamping_and_invalid_when_stored() {
    within(async {
        let tsa = TestTsa::start_with(Options { reject: true, ..Options::default() });
        let digest = sha(b"refused");
        match tsa.client().stamp(&digest).await {
            Err(e @ TsaError::Rejected { .. }) => {
                assert!(!e.is_transient());
                let msg = e.to_string();
                assert!(msg.contains("Rejected") && msg.contains(&tsa.url()), "{msg}");
            }
            other => panic!("expected Rejected, got {other:?}"),
        }
        // The rejection response itself (a CLI-made query, POSTed raw) never verifies as a token.
        let d = tsa.dir();
        let (ok, err) = openssl_status(d, &["ts", "-query", "-digest", &hexs(&digest), "-sha256", "-cert", "-out", "rej.tsq"]);
        assert!(ok, "{err}");
        let query = std::fs::read(d.join("rej.tsq")).unwrap();
        let resp = reqwest::Client::new().post(tsa.url()).body(query).send().await.unwrap();
        assert!(resp.status().is_success());
        let der = resp.bytes().await.unwrap().to_vec();
        match verify_token(&der, &digest, &tsa.ca_pem()) {
            Err(TsaError::Invalid(m)) => assert!(m.contains("not granted"), "{m}"),
            other => panic!("expected Invalid, got {other:?}"),
        }
    })
    .await;
}

#[tokio::test]
async fn signer_without_timestamping_eku_is_invalid() {
    within(async {
        let tsa = TestTsa::start_with(Options { eku: false, ..Options::default() });
        let d = tsa.dir();
        // OpenSSL's own TSA refuses to sign with such a certificate (TS_RESP_CTX_set_signer_cert
        // checks purpose TIMESTAMP_SIGN), which is why the test TSA re-signs with `cms -sign`.
        let (ok, err) = openssl_status(d, &["ts", "-query", "-digest", &hexs(&sha(b"x")), "-sha256", "-cert", "-out", "x.tsq"]);
        assert!(ok, "{err}");
        let (ok, err) = openssl_status(d, &["ts", "-reply", "-config", "signer.cnf", "-queryfile", "x.tsq", "-out", "x.tsr"]);
        assert!(!ok && err.contains("invalid signer certificate purpose"), "{err}");

        let digest = sha(b"signed by a certificate without timeStamping");
        match tsa.client().stamp(&digest).await {
            Err(TsaError::Invalid(m)) => assert!(m.contains("unsuitable certificate purpose"), "{m}"),
            other => panic!("expected Invalid, got {other:?}"),
        }
        // The served response is otherwise well-formed: the real CLI rejects it for the same reason.
        let der = tsa.shared.last.lock().unwrap().clone().expect("a response was produced");
        assert!(!cli_verify_digest(d, &put(d, "noeku.tsr", &der), &digest, &tsa.ca_file()));
        assert!(matches!(verify_token(&der, &digest, &tsa.ca_pem()), Err(TsaError::Invalid(_))));
    })
    .await;
}

#[tokio::test]
async fn resigned_tokens_verify_and_the_chain_is_checked_at_gen_time() {
    within(async {
        let tsa = TestTsa::start();
        let digest = sha(b"forged");
        let d = tsa.dir();
        // Control: the CMS re-signing pipeline (used by the EKU test) yields a token that verifies
        // when the signer is fine.
        let now = chrono::Utc::now().format("%Y%m%d%H%M%SZ").to_string();
        let good = tsa.sign_tst_info(&tsa.tst_info(&digest, &now, 42));
        let t = verify_token(&good, &digest, &tsa.ca_pem()).unwrap();
        assert_eq!(t.serial, "42");
        assert!(cli_verify_digest(d, &put(d, "good.tsr", &good), &digest, &tsa.ca_file()));

        // A token dated after the certificates expire (they are valid for ten years): the CLI,
        // which checks at the current time, accepts it; `verify_token` checks the chain at
        // genTime and refuses it.
        let late = tsa.sign_tst_info(&tsa.tst_info(&digest, "20990101000000Z", 43));
        assert!(cli_verify_digest(d, &put(d, "late.tsr", &late), &digest, &tsa.ca_file()));
        match verify_token(&late, &digest, &tsa.ca_pem()) {
            Err(TsaError::Invalid(m)) => assert!(m.contains("expired"), "{m}"),
            other => panic!("expected Invalid, got {other:?}"),
        }
    })
    .await;
}

#[tokio::test]
async fn replayed_answer_fails_the_nonce_check() {
    within(async {
        let tsa = TestTsa::start();
        let client = tsa.client();
        let digest = sha(b"replayed");
        let first = client.stamp(&digest).await.unwrap();
        tsa.set_replay(true);
        // Same digest, so only the nonce differs from what the old answer carries.
        match client.stamp(&digest).await {
            Err(TsaError::Invalid(m)) => assert!(m.to_lowercase().contains("nonce"), "{m}"),
            other => panic!("expected Invalid, got {other:?}"),
        }
        // Stored verification has no nonce: the first token is still good.
        verify_token(&first.der, &digest, &tsa.ca_pem()).unwrap();
        tsa.set_replay(false);
        client.stamp(&digest).await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn outages_are_transient_and_restart_recovers() {
    within(async {
        let mut tsa = TestTsa::start();
        let client = tsa.client();
        let digest = sha(b"outage");
        client.stamp(&digest).await.unwrap();

        tsa.stop();
        assert!(std::net::TcpStream::connect(("127.0.0.1", tsa.port())).is_err(), "port refuses after stop");
        match client.stamp(&digest).await {
            Err(e @ TsaError::Unavailable { .. }) => assert!(e.is_transient(), "{e}"),
            other => panic!("expected Unavailable, got {other:?}"),
        }

        tsa.restart();
        let t = client.stamp(&digest).await.unwrap();
        verify_token(&t.der, &digest, &tsa.ca_pem()).unwrap();

        // HTTP 5xx is transient too; HTTP 4xx (here: a path the TSA does not serve) is a rejection.
        tsa.set_failing(true);
        match client.stamp(&digest).await {
            Err(e @ TsaError::Unavailable { .. }) => assert!(e.is_transient() && e.to_string().contains("503"), "{e}"),
            other => panic!("expected Unavailable, got {other:?}"),
        }
        tsa.set_failing(false);
        let wrong_path = TsaClient::new(&format!("{}nope", tsa.url()), &tsa.ca_pem(), Duration::from_secs(10)).unwrap();
        match wrong_path.stamp(&digest).await {
            Err(e @ TsaError::Rejected { .. }) => assert!(!e.is_transient() && e.to_string().contains("404"), "{e}"),
            other => panic!("expected Rejected, got {other:?}"),
        }
    })
    .await;
}

#[tokio::test]
async fn silent_tsa_times_out_as_unavailable() {
    within(async {
        // Accepts connections (the kernel's backlog) but never answers.
        let silent = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/", silent.local_addr().unwrap());
        let tsa = TestTsa::start();
        let client = TsaClient::new(&url, &tsa.ca_pem(), Duration::from_millis(500)).unwrap();
        let started = std::time::Instant::now();
        match client.stamp(&sha(b"slow")).await {
            Err(e @ TsaError::Unavailable { .. }) => assert!(e.is_transient(), "{e}"),
            other => panic!("expected Unavailable, got {other:?}"),
        }
        assert!(started.elapsed() < Duration::from_secs(10));
        drop(silent);
    })
    .await;
}
