//! Test harness: real services started per test (Garage, a fresh PostgreSQL database, the real
//! `evidenced` binary), the fixture corpus generated once per FFmpeg version, and small helpers.
//! Everything a test starts is killed when the test ends (and at process exit).

#![allow(dead_code)]

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// The daemon binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_evidenced")
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// PIDs to kill at process exit, in case a test panicked before its guards ran.
static CHILDREN: Mutex<Vec<u32>> = Mutex::new(Vec::new());

extern "C" fn kill_children() {
    if let Ok(pids) = CHILDREN.lock() {
        for p in pids.iter() {
            unsafe { libc::kill(*p as i32, libc::SIGKILL) };
        }
    }
}

fn track(pid: u32) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| unsafe {
        libc::atexit(kill_children);
    });
    CHILDREN.lock().unwrap().push(pid);
}

/// Polls `f` until it returns `Some` or `timeout` passes.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// SHA-256 of a file, hex.
pub fn sha256_file(p: &Path) -> String {
    sha256_bytes(&std::fs::read(p).unwrap())
}

/// SHA-256 (hex) of bytes.
pub fn sha256_bytes(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// Writes `size` deterministic pseudo-random bytes derived from `seed`.
pub fn write_random(p: &Path, size: usize, seed: u64) {
    let mut f = std::fs::File::create(p).unwrap();
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let mut buf = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        for chunk in buf.chunks_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let b = state.to_le_bytes();
            chunk.copy_from_slice(&b[..chunk.len()]);
        }
        let n = left.min(buf.len());
        f.write_all(&buf[..n]).unwrap();
        left -= n;
    }
    f.sync_all().unwrap();
}

// ---------------------------------------------------------------- corpus

/// The fixture corpus (`tests/fixtures/make-corpus.sh`, a copy of `../shared/fixtures`), generated
/// once per FFmpeg version and script version into the target directory and reused by later runs.
pub fn corpus() -> PathBuf {
    static CORPUS: OnceLock<PathBuf> = OnceLock::new();
    CORPUS
        .get_or_init(|| {
            // A copy of the shared fixture generator lives in the repository so a clone anywhere works.
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/make-corpus.sh");
            assert!(script.exists(), "fixture generator missing at {}", script.display());
            let version = Command::new("ffmpeg").arg("-version").output().expect("ffmpeg CLI is required (apt-get install ffmpeg)");
            let mut h = Sha256::new();
            h.update(&version.stdout);
            h.update(std::fs::read(&script).unwrap());
            let tag = &hex::encode(h.finalize())[..12];
            let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("corpus-{tag}"));
            if !dir.join("manifest.tsv").exists() {
                let tmp = dir.with_extension("partial");
                let _ = std::fs::remove_dir_all(&tmp);
                let out = Command::new("bash").arg(&script).arg(&tmp).output().unwrap();
                assert!(out.status.success(), "make-corpus failed: {}", String::from_utf8_lossy(&out.stderr));
                let _ = std::fs::remove_dir_all(&dir);
                std::fs::rename(&tmp, &dir).unwrap();
            }
            dir
        })
        .clone()
}

/// Copies a directory tree (preserving nothing but contents).
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), &dest).unwrap();
        }
    }
}

/// Every regular file under `dir`, relative.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                stack.push(e.path());
            } else if ft.is_file() {
                out.push(e.path().strip_prefix(dir).unwrap().to_path_buf());
            }
        }
    }
    out.sort();
    out
}

// ---------------------------------------------------------------- PostgreSQL

/// A fresh, empty PostgreSQL database on the local server, named `evt_<pid>_<uuid>`. The first
/// call of a test process drops the databases earlier test processes left behind (those whose
/// pid is no longer alive), so repeated runs do not pile up databases.
pub async fn pg_database() -> String {
    static SWEPT: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    let admin = "postgres://postgres@127.0.0.1:5432/postgres";
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(10))
        .connect(admin)
        .await
        .expect("PostgreSQL must run at 127.0.0.1:5432 (trust auth); .ci/run starts it");
    SWEPT
        .get_or_init(|| async {
            let names: Vec<(String,)> =
                sqlx::query_as("SELECT datname FROM pg_database WHERE datname LIKE 'evt\\_%'").fetch_all(&pool).await.unwrap_or_default();
            for (name,) in names {
                let pid = name.split('_').nth(1).and_then(|p| p.parse::<i32>().ok());
                // SAFETY: kill with signal 0 only checks whether the process exists.
                let alive = pid.is_some_and(|p| unsafe { libc::kill(p, 0) } == 0);
                if !alive {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&pool).await;
                }
            }
        })
        .await;
    let name = format!("evt_{}_{}", std::process::id(), uuid::Uuid::new_v4().simple());
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(&pool).await.unwrap();
    format!("postgres://postgres@127.0.0.1:5432/{name}")
}

// ---------------------------------------------------------------- Garage

/// A private single-node Garage S3 server (verifies SHA-256 checksums), stoppable and restartable.
pub struct Garage {
    /// Its data, metadata and config.
    pub dir: tempfile::TempDir,
    /// S3 API port.
    pub port: u16,
    /// The running server.
    child: Option<Child>,
}

pub const GARAGE_KEY: &str = "GK0123456789abcdef01234567";
pub const GARAGE_SECRET: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
pub const GARAGE_BUCKET: &str = "evidence";

fn garage_bin() -> PathBuf {
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let p = Path::new(&home).join(".cargo/bin/garage");
    if p.exists() {
        return p;
    }
    which("garage").expect("garage is required (cargo install garage --locked; .ci/run installs it)")
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| std::env::split_paths(&paths).map(|d| d.join(name)).find(|p| p.exists()))
}

impl Garage {
    /// Starts a new server and waits until its S3 API answers.
    pub async fn start() -> Garage {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let rpc = free_port();
        let cfg = format!(
            "metadata_dir = \"{d}/meta\"\ndata_dir = \"{d}/data\"\ndb_engine = \"sqlite\"\nreplication_factor = 1\n\
             rpc_bind_addr = \"127.0.0.1:{rpc}\"\nrpc_public_addr = \"127.0.0.1:{rpc}\"\n\
             rpc_secret = \"{secret}\"\n[s3_api]\ns3_region = \"garage\"\napi_bind_addr = \"127.0.0.1:{port}\"\n\
             root_domain = \".s3.garage.localhost\"\n",
            d = dir.path().display(),
            secret = "ab".repeat(32),
        );
        std::fs::write(dir.path().join("garage.toml"), cfg).unwrap();
        let mut g = Garage { dir, port, child: None };
        g.restart().await;
        g
    }

    /// (Re)starts the server process on the same ports and data.
    pub async fn restart(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.path().join("garage.log")).unwrap();
        let child = Command::new(garage_bin())
            .arg("-c")
            .arg(self.dir.path().join("garage.toml"))
            .args(["server", "--single-node", "--default-bucket"])
            .env("GARAGE_DEFAULT_ACCESS_KEY", GARAGE_KEY)
            .env("GARAGE_DEFAULT_SECRET_KEY", GARAGE_SECRET)
            .env("GARAGE_DEFAULT_BUCKET", GARAGE_BUCKET)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        track(child.id());
        self.child = Some(child);
        let port = self.port;
        wait_for("garage to listen", Duration::from_secs(30), || async move {
            let r = reqwest::Client::new().get(format!("http://127.0.0.1:{port}/")).send().await;
            r.ok().map(|_| ())
        })
        .await;
        // The default bucket and key are created right after the listener comes up.
        let cfg = self.store_config("probe/");
        wait_for("garage bucket", Duration::from_secs(30), || {
            let cfg = cfg.clone();
            async move {
                let s = evidenced::store::s3::S3Store::open(&cfg).await.ok()?;
                evidenced::store::ObjectStore::check(&s).await.ok()
            }
        })
        .await;
    }

    /// Stops the server (SIGKILL: an outage, not a clean shutdown).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Endpoint URL.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A store config pointing at this server with a key prefix.
    pub fn store_config(&self, prefix: &str) -> evidenced::config::StoreConfig {
        let toml = format!("[catalog]\nurl = \"sqlite://x.db\"\n{}", self.store_toml(prefix));
        evidenced::config::Config::from_toml("test", &toml, std::iter::empty()).unwrap().store
    }

    /// The `[store]` section for a daemon config.
    pub fn store_toml(&self, prefix: &str) -> String {
        format!(
            "[store]\nkind = \"s3\"\nbucket = \"{GARAGE_BUCKET}\"\nprefix = \"{prefix}\"\nendpoint = \"{}\"\nregion = \"garage\"\n\
             force_path_style = true\naccess_key_id = \"{GARAGE_KEY}\"\nsecret_access_key = \"{GARAGE_SECRET}\"\n\
             multipart_threshold = 8388608\npart_size = 5242880\nparts_in_flight = 3\n",
            self.endpoint()
        )
    }
}

impl Drop for Garage {
    fn drop(&mut self) {
        self.stop();
    }
}

// ---------------------------------------------------------------- the daemon

/// A running `evidenced run` with its own directories, config, port and an API token.
pub struct Daemon {
    /// Working directory holding config, catalog, archive, docks.
    pub dir: PathBuf,
    /// Config file.
    pub config: PathBuf,
    /// API port.
    pub port: u16,
    /// A supervisor token covering everything.
    pub token: String,
    /// The process.
    child: Option<Child>,
}

/// Inputs of a daemon config.
pub struct DaemonSpec {
    /// `[catalog] url`.
    pub catalog_url: String,
    /// The whole `[store]` section.
    pub store_toml: String,
    /// Dock names (directories under `<dir>/docks/`) with extra TOML lines each.
    pub docks: Vec<(String, String)>,
    /// Extra top-level TOML.
    pub extra: String,
}

impl DaemonSpec {
    /// SQLite + fs store inside `dir`.
    pub fn station(dir: &Path) -> Self {
        DaemonSpec {
            catalog_url: format!("sqlite://{}/catalog.db", dir.display()),
            store_toml: format!("[store]\nkind = \"fs\"\npath = \"{}/archive\"\n", dir.display()),
            docks: vec![],
            extra: String::new(),
        }
    }
}

impl Daemon {
    /// Writes the config for `spec` into `dir` and creates a supervisor token (daemon not started).
    pub fn configure(dir: &Path, spec: &DaemonSpec) -> Daemon {
        let port = free_port();
        let mut toml = format!(
            "[node]\nid = \"node-{port}\"\nstate_dir = \"{d}/state\"\n[catalog]\nurl = \"{}\"\n{}\n[api]\nlisten = \"127.0.0.1:{port}\"\n\
             [ingest]\nscan_interval = \"1s\"\nconcurrency = 2\nbackoff = \"300ms\"\nmax_backoff = \"2s\"\n{}\n",
            spec.catalog_url,
            spec.store_toml,
            spec.extra,
            d = dir.display()
        );
        for (name, extra) in &spec.docks {
            let p = dir.join("docks").join(name);
            std::fs::create_dir_all(&p).unwrap();
            toml.push_str(&format!("[[dock]]\npath = \"{}\"\nname = \"{name}\"\nsettle = \"1s\"\n{extra}\n", p.display()));
        }
        let config = dir.join("evidenced.toml");
        std::fs::write(&config, toml).unwrap();
        let mut d = Daemon { dir: dir.to_path_buf(), config, port, token: String::new(), child: None };
        // Nodes sharing a catalog each get their own supervisor (`sup`, then `sup-PORT`).
        let (code, out, err) = d.cli(&["token", "create", "--name", "sup", "--role", "supervisor"]);
        d.token = if code == 0 {
            out.lines().last().unwrap().trim().to_string()
        } else {
            assert!(err.contains("already exists"), "token create failed: {err}");
            d.token_create(&["--name", &format!("sup-{port}"), "--role", "supervisor"])
        };
        d
    }

    /// Runs a CLI command with this daemon's config; returns (status, stdout, stderr).
    pub fn cli(&self, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(bin()).arg("--config").arg(&self.config).args(args).current_dir(&self.dir).output().unwrap();
        (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
    }

    /// `token create ARGS`, returning the token.
    pub fn token_create(&self, args: &[&str]) -> String {
        let mut a = vec!["token", "create"];
        a.extend_from_slice(args);
        let (code, out, err) = self.cli(&a);
        assert_eq!(code, 0, "token create failed: {err}");
        out.lines().last().unwrap().trim().to_string()
    }

    /// The `node.id` written into the config.
    pub fn node_id(&self) -> String {
        format!("node-{}", self.port)
    }

    /// A dock directory.
    pub fn dock(&self, name: &str) -> PathBuf {
        self.dir.join("docks").join(name)
    }

    /// Starts the daemon and waits for `/healthz`.
    pub async fn start(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join("daemon.log")).unwrap();
        let child = Command::new(bin())
            .arg("--config")
            .arg(&self.config)
            .arg("run")
            .current_dir(&self.dir)
            .env("RUST_LOG", "info,evidenced=debug")
            .env_remove("NOTIFY_SOCKET")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        track(child.id());
        self.child = Some(child);
        let url = format!("http://127.0.0.1:{}/healthz", self.port);
        wait_for("daemon /healthz", Duration::from_secs(60), || {
            let url = url.clone();
            async move { reqwest::get(&url).await.ok().filter(|r| r.status().is_success()).map(|_| ()) }
        })
        .await;
    }

    /// `kill -9`.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait; returns the exit code.
    pub fn stop(&mut self) -> Option<i32> {
        let mut c = self.child.take()?;
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(s) = c.try_wait().unwrap() {
                return s.code();
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                panic!("daemon did not stop within 15 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether the process is still alive.
    pub fn alive(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    /// The daemon log so far (for assertion messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("daemon.log")).unwrap_or_default()
    }

    /// GET an API path with the supervisor token.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.get_as(path, &self.token).await
    }

    /// GET with a specific token (or none when empty), giving a reason (`X-Access-Reason`) so
    /// classified recordings open too; tests of the reason rule itself use [`Daemon::call`].
    pub async fn get_as(&self, path: &str, token: &str) -> reqwest::Response {
        let mut r =
            reqwest::Client::new().get(format!("http://127.0.0.1:{}{path}", self.port)).header("x-access-reason", "integration%20test");
        if !token.is_empty() {
            r = r.bearer_auth(token);
        }
        r.send().await.unwrap()
    }

    /// Sends a request with `token` (none when empty) and an optional JSON body; returns the
    /// status and the JSON answer (null when there is none).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let mut r = reqwest::Client::new().request(method, format!("http://127.0.0.1:{}{path}", self.port));
        if !token.is_empty() {
            r = r.bearer_auth(token);
        }
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(serde_json::Value::Null))
    }

    /// GET JSON (asserting 200).
    pub async fn json(&self, path: &str) -> serde_json::Value {
        let r = self.get(path).await;
        assert_eq!(r.status(), 200, "GET {path}");
        r.json().await.unwrap()
    }

    /// Every recording, following cursors.
    pub async fn recordings(&self) -> Vec<serde_json::Value> {
        let mut out = vec![];
        let mut cursor: Option<String> = None;
        loop {
            let path = match &cursor {
                Some(c) => format!("/api/v1/recordings?limit=7&cursor={c}"),
                None => "/api/v1/recordings?limit=7".into(),
            };
            let Ok(r) = reqwest::Client::new().get(format!("http://127.0.0.1:{}{path}", self.port)).bearer_auth(&self.token).send().await
            else {
                return out;
            };
            if !r.status().is_success() {
                return out;
            }
            let v: serde_json::Value = r.json().await.unwrap();
            out.extend(v["items"].as_array().unwrap().iter().cloned());
            match v["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => return out,
            }
        }
    }

    /// Waits until a recording's media derivation has ended (ready or failed); returns it.
    pub async fn wait_media(&self, id: &str, timeout: Duration) -> serde_json::Value {
        wait_for("media derivation", timeout, || async move {
            let r = self.json(&format!("/api/v1/recordings/{id}")).await;
            (r["media_state"] != "pending").then_some(r)
        })
        .await
    }

    /// Waits until at least `n` recordings exist; returns them.
    pub async fn wait_recordings(&self, n: usize, timeout: Duration) -> Vec<serde_json::Value> {
        let log_path = self.dir.join("daemon.log");
        let deadline = Instant::now() + timeout;
        loop {
            let rs = self.recordings().await;
            if rs.len() >= n {
                return rs;
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out waiting for {n} recordings, have {}; log tail:\n{}",
                    rs.len(),
                    tail(&std::fs::read_to_string(&log_path).unwrap_or_default(), 40)
                );
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Last `n` lines of a text.
pub fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A plain SDK client for inspecting a Garage server.
pub async fn sdk_client(g: &Garage) -> aws_sdk_s3::Client {
    let creds = aws_sdk_s3::config::Credentials::new(GARAGE_KEY, GARAGE_SECRET, None, None, "t");
    let conf = aws_sdk_s3::config::Builder::new()
        .behavior_version_latest()
        .region(aws_sdk_s3::config::Region::new("garage"))
        .endpoint_url(g.endpoint())
        .credentials_provider(creds)
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

/// Looks at (and may alter) each chunk a proxy forwards upstream; the bool is per-connection
/// state; the returned delay is waited before the next chunk is read.
pub type ProxyHook = std::sync::Arc<dyn Fn(&mut [u8], &mut bool) -> Duration + Send + Sync>;

/// A TCP proxy to `127.0.0.1:upstream` that passes every request chunk through `hook` (responses
/// pass unchanged). Returns its port.
pub async fn tcp_proxy(upstream: u16, hook: ProxyHook) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((client, _)) = listener.accept().await else { return };
            let hook = hook.clone();
            tokio::spawn(async move {
                let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await else { return };
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut sr, &mut cw).await;
                });
                let mut buf = vec![0u8; 64 * 1024];
                let mut state = false;
                loop {
                    let n = match cr.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    let delay = hook(&mut buf[..n], &mut state);
                    if sw.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                    if !delay.is_zero() {
                        tokio::time::sleep(delay).await;
                    }
                }
            });
        }
    });
    port
}

/// A proxy that forwards request bytes at about `bytes_per_sec`, so an upload is reliably still
/// in flight when a test interrupts it. Returns its port.
pub async fn slow_proxy(upstream: u16, bytes_per_sec: usize) -> u16 {
    let per_ms = (bytes_per_sec / 1000).max(1);
    tcp_proxy(upstream, std::sync::Arc::new(move |chunk: &mut [u8], _: &mut bool| Duration::from_millis((chunk.len() / per_ms) as u64)))
        .await
}
