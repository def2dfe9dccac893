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

// ---------------------------------------------------------------- a Garage cluster

/// One member of a [`GarageCluster`].
pub struct GarageNode {
    /// Its config (`garage.toml`), metadata and data directories, and log (`garage.log`).
    pub dir: tempfile::TempDir,
    /// S3 API port.
    pub s3_port: u16,
    /// RPC port (Garage's own protocol between nodes and from the CLI).
    pub rpc_port: u16,
    /// Admin API port.
    pub admin_port: u16,
    /// Full node id (hex public key), known once the node has run.
    pub id: String,
    /// The running server.
    child: Option<Child>,
}

/// The admin API bearer token of every [`GarageCluster`] node.
pub const GARAGE_ADMIN_TOKEN: &str = "evidenced-test-admin-token";

/// A Garage cluster of several nodes on 127.0.0.1 (different S3, RPC and admin ports, one
/// `rpc_secret`), `replication_factor = 3` (fewer with fewer nodes), the default consistency mode
/// (`consistent`: writes and reads need 2 of 3), a layout with each node in its own zone, the
/// test key imported and the `evidence` bucket allowed to it. Nodes can be killed and restarted
/// on the same data; each knows the others as `bootstrap_peers`, so a restart rejoins at once.
/// Everything is killed on drop.
pub struct GarageCluster {
    /// The members.
    pub nodes: Vec<GarageNode>,
    /// `replication_factor`.
    pub replication_factor: usize,
}

fn garage_node_toml(node: &GarageNode, rf: usize, peers: &[String]) -> String {
    let peers: Vec<String> = peers.iter().map(|p| format!("\"{p}\"")).collect();
    format!(
        "metadata_dir = \"{d}/meta\"\ndata_dir = \"{d}/data\"\ndb_engine = \"sqlite\"\nreplication_factor = {rf}\n\
         consistency_mode = \"consistent\"\n\
         rpc_bind_addr = \"127.0.0.1:{rpc}\"\nrpc_public_addr = \"127.0.0.1:{rpc}\"\nrpc_secret = \"{secret}\"\n\
         bootstrap_peers = [{peers}]\n\
         [s3_api]\ns3_region = \"garage\"\napi_bind_addr = \"127.0.0.1:{s3}\"\nroot_domain = \".s3.garage.localhost\"\n\
         [admin]\napi_bind_addr = \"127.0.0.1:{admin}\"\nadmin_token = \"{GARAGE_ADMIN_TOKEN}\"\n",
        d = node.dir.path().display(),
        rpc = node.rpc_port,
        s3 = node.s3_port,
        admin = node.admin_port,
        secret = "cd".repeat(32),
        peers = peers.join(", "),
    )
}

/// The `[store]` section for a daemon reaching the test bucket at `endpoint` (the shape of
/// [`Garage::store_toml`]).
pub fn garage_store_toml(prefix: &str, endpoint: &str) -> String {
    format!(
        "[store]\nkind = \"s3\"\nbucket = \"{GARAGE_BUCKET}\"\nprefix = \"{prefix}\"\nendpoint = \"{endpoint}\"\nregion = \"garage\"\n\
         force_path_style = true\naccess_key_id = \"{GARAGE_KEY}\"\nsecret_access_key = \"{GARAGE_SECRET}\"\n\
         multipart_threshold = 8388608\npart_size = 5242880\nparts_in_flight = 3\n"
    )
}

/// A parsed store config from a `[store]` section.
pub fn store_config_of(store_toml: &str) -> evidenced::config::StoreConfig {
    let toml = format!("[catalog]\nurl = \"sqlite://x.db\"\n{store_toml}");
    evidenced::config::Config::from_toml("test", &toml, std::iter::empty()).unwrap().store
}

/// A plain SDK client for the test bucket at `endpoint`.
pub fn sdk_client_at(endpoint: &str) -> aws_sdk_s3::Client {
    let creds = aws_sdk_s3::config::Credentials::new(GARAGE_KEY, GARAGE_SECRET, None, None, "t");
    let conf = aws_sdk_s3::config::Builder::new()
        .behavior_version_latest()
        .region(aws_sdk_s3::config::Region::new("garage"))
        .endpoint_url(endpoint)
        .credentials_provider(creds)
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

impl GarageCluster {
    /// Starts `n` nodes, wires them into one cluster with the garage CLI, and waits until an S3
    /// write and read-back succeed through every node.
    pub async fn start(n: usize) -> GarageCluster {
        assert!(n >= 1);
        let rf = n.min(3);
        let mut nodes = vec![];
        for _ in 0..n {
            let dir = tempfile::tempdir().unwrap();
            let node =
                GarageNode { dir, s3_port: free_port(), rpc_port: free_port(), admin_port: free_port(), id: String::new(), child: None };
            std::fs::write(node.dir.path().join("garage.toml"), garage_node_toml(&node, rf, &[])).unwrap();
            nodes.push(node);
        }
        let mut c = GarageCluster { nodes, replication_factor: rf };
        for i in 0..n {
            c.spawn(i);
        }
        for i in 0..n {
            let out = c.cli_retry(i, &["node", "id", "-q"]).await;
            let id = out.trim().split('@').next().unwrap().to_string();
            assert_eq!(id.len(), 64, "garage node id: {out}");
            c.nodes[i].id = id;
        }
        for j in 1..n {
            let addr = format!("{}@127.0.0.1:{}", c.nodes[j].id, c.nodes[j].rpc_port);
            c.cli_retry(0, &["node", "connect", &addr]).await;
        }
        for j in 0..n {
            let (zone, id) = (format!("dc{}", j + 1), c.nodes[j].id.clone());
            c.cli_retry(0, &["layout", "assign", "-z", &zone, "-c", "1G", &id]).await;
        }
        c.cli_retry(0, &["layout", "apply", "--version", "1"]).await;
        c.cli_retry(0, &["key", "import", "--yes", GARAGE_KEY, GARAGE_SECRET]).await;
        c.cli_retry(0, &["bucket", "create", GARAGE_BUCKET]).await;
        c.cli_retry(0, &["bucket", "allow", "--read", "--write", "--owner", GARAGE_BUCKET, "--key", GARAGE_KEY]).await;
        // Restarted nodes find the others at once (they also keep a peer list in metadata_dir).
        for i in 0..n {
            let peers: Vec<String> =
                (0..n).filter(|&j| j != i).map(|j| format!("{}@127.0.0.1:{}", c.nodes[j].id, c.nodes[j].rpc_port)).collect();
            std::fs::write(c.nodes[i].dir.path().join("garage.toml"), garage_node_toml(&c.nodes[i], rf, &peers)).unwrap();
        }
        for i in 0..n {
            c.wait_writable(i).await;
        }
        c
    }

    fn config(&self, i: usize) -> PathBuf {
        self.nodes[i].dir.path().join("garage.toml")
    }

    fn spawn(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let log = std::fs::OpenOptions::new().create(true).append(true).open(node.dir.path().join("garage.log")).unwrap();
        let child = Command::new(garage_bin())
            .arg("-c")
            .arg(node.dir.path().join("garage.toml"))
            .arg("server")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        track(child.id());
        node.child = Some(child);
    }

    /// Runs the garage CLI against node `i`; stdout, or the error output.
    pub fn cli(&self, i: usize, args: &[&str]) -> Result<String, String> {
        let out = Command::new(garage_bin()).arg("-c").arg(self.config(i)).args(args).env("RUST_LOG", "warn").output().unwrap();
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into())
        } else {
            Err(format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
        }
    }

    async fn cli_retry(&self, i: usize, args: &[&str]) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match self.cli(i, args) {
                Ok(s) => return s,
                Err(e) if Instant::now() > deadline => panic!("garage {args:?} on node {i} failed: {e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(300)).await,
            }
        }
    }

    /// Waits until a small object can be written and read back through node `i`'s S3 API.
    pub async fn wait_writable(&self, i: usize) {
        let client = sdk_client_at(&self.endpoint(i));
        let key = format!("_probe/node-{i}");
        let what = format!("an S3 write through garage node {i}");
        let log = self.nodes[i].dir.path().join("garage.log");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let attempt = tokio::time::timeout(Duration::from_secs(5), async {
                let body = aws_sdk_s3::primitives::ByteStream::from_static(b"probe");
                client.put_object().bucket(GARAGE_BUCKET).key(&key).body(body).send().await.ok()?;
                let got = client.get_object().bucket(GARAGE_BUCKET).key(&key).send().await.ok()?;
                let bytes = got.body.collect().await.ok()?.into_bytes();
                (&bytes[..] == b"probe").then_some(())
            })
            .await;
            if let Ok(Some(())) = attempt {
                return;
            }
            if Instant::now() > deadline {
                panic!("timed out waiting for {what}; garage log tail:\n{}", tail(&std::fs::read_to_string(&log).unwrap_or_default(), 30));
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    /// Kills node `i` (SIGKILL: an outage, not a clean shutdown).
    pub fn stop(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Restarts node `i` on its ports and data and waits until writes succeed through it.
    pub async fn restart(&mut self, i: usize) {
        self.stop(i);
        self.spawn(i);
        self.wait_writable(i).await;
    }

    /// Whether node `i` runs.
    pub fn running(&mut self, i: usize) -> bool {
        self.nodes[i].child.as_mut().is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    /// Node `i`'s S3 endpoint URL.
    pub fn endpoint(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.nodes[i].s3_port)
    }

    /// The `[store]` section for a daemon using node `i` as its S3 endpoint.
    pub fn store_toml(&self, prefix: &str, i: usize) -> String {
        garage_store_toml(prefix, &self.endpoint(i))
    }

    /// A store config for node `i` with a key prefix.
    pub fn store_config(&self, prefix: &str, i: usize) -> evidenced::config::StoreConfig {
        store_config_of(&self.store_toml(prefix, i))
    }

    /// Log tails of every node, for assertion messages.
    pub fn logs(&self, lines: usize) -> String {
        let mut out = String::new();
        for (i, n) in self.nodes.iter().enumerate() {
            let log = std::fs::read_to_string(n.dir.path().join("garage.log")).unwrap_or_default();
            out.push_str(&format!("--- garage node {i}\n{}\n", tail(&log, lines)));
        }
        out
    }
}

impl Drop for GarageCluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.stop(i);
        }
    }
}

// ---------------------------------------------------------------- a gateway that can be cut

/// A TCP proxy standing for a node's local S3 gateway: it forwards each connection to the first
/// of its upstream ports that accepts (so a dead store node is failed over to the next), and a
/// test can cut it, which closes every open connection and every new one at once, as an
/// unreachable store looks to the daemon, or make it refuse only the requests naming some key.
/// It runs on a runtime of its own, so a test that blocks
/// its own thread (a CLI command, a daemon's stop) does not stall the daemons' traffic. Stops on
/// drop.
pub struct CutProxy {
    /// Its port on 127.0.0.1.
    pub port: u16,
    cut: tokio::sync::watch::Sender<bool>,
    refuse: std::sync::Arc<Mutex<Option<Vec<u8>>>>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl CutProxy {
    /// Starts a proxy to `upstreams` (tried in this order for each new connection).
    pub async fn start(upstreams: Vec<u16>) -> CutProxy {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, rx) = tokio::sync::watch::channel(false);
        let refuse = std::sync::Arc::new(Mutex::new(None::<Vec<u8>>));
        let refusing = refuse.clone();
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        runtime.spawn(async move {
            let refuse = refusing;
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                let Ok((client, _)) = listener.accept().await else { return };
                if *rx.borrow() {
                    continue; // dropped: closed at once
                }
                let (ups, mut rx, refuse) = (upstreams.clone(), rx.clone(), refuse.clone());
                tokio::spawn(async move {
                    let mut server = None;
                    for u in ups {
                        if let Ok(Ok(s)) =
                            tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(("127.0.0.1", u))).await
                        {
                            server = Some(s);
                            break;
                        }
                    }
                    let Some(server) = server else { return };
                    let (mut cr, mut cw) = client.into_split();
                    let (mut sr, mut sw) = server.into_split();
                    // Requests go up chunk by chunk, so one that matches `refuse` closes the
                    // connection before any of it reaches the store; answers come down as they are.
                    let up = async {
                        use tokio::io::{AsyncReadExt, AsyncWriteExt};
                        let mut buf = vec![0u8; 64 * 1024];
                        loop {
                            let n = match cr.read(&mut buf).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => n,
                            };
                            let refused = refuse.lock().unwrap().as_ref().is_some_and(|p| buf[..n].windows(p.len()).any(|w| w == &p[..]));
                            if refused {
                                return true;
                            }
                            if sw.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                        let _ = sw.shutdown().await;
                        false
                    };
                    let down = tokio::io::copy(&mut sr, &mut cw);
                    tokio::pin!(up, down);
                    let outcome = tokio::select! {
                        refused = &mut up => Some(refused),
                        _ = &mut down => None,
                        _ = async { let _ = rx.wait_for(|cut| *cut).await; } => None,
                    };
                    // The client finished sending (not refused): let the answer come down.
                    if outcome == Some(false) {
                        tokio::select! {
                            _ = &mut down => {}
                            _ = async { let _ = rx.wait_for(|cut| *cut).await; } => {}
                        }
                    }
                });
            }
        });
        CutProxy { port, cut: tx, refuse, runtime: Some(runtime) }
    }

    /// Cuts (true) or restores (false) the connection to the store.
    pub fn set_cut(&self, cut: bool) {
        self.cut.send_replace(cut);
    }

    /// Closes every connection on which a request chunk contains `pattern` (e.g. an object key),
    /// before that chunk is forwarded: the store never sees the request. `None` stops refusing.
    pub fn refuse_requests_containing(&self, pattern: Option<&str>) {
        assert!(pattern.is_none_or(|p| !p.is_empty()), "an empty pattern would match everything");
        *self.refuse.lock().unwrap() = pattern.map(|p| p.as_bytes().to_vec());
    }

    /// Its URL.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.cut.send_replace(true);
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl Daemon {
    /// The process id while it runs (to send it signals such as SIGSTOP).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }
}

// ---------------------------------------------------------------- docks vs catalog vs store

/// What the docks, the catalog and the store hold after a run, compared with what was fed.
#[derive(Debug, Default)]
pub struct ArchiveAudit {
    /// Recordings in the catalog.
    pub recordings: usize,
    /// Fed SHA-256s with no recording.
    pub lost: Vec<String>,
    /// SHA-256s with more than one recording, and recordings with more than one `archived` event.
    pub duplicated: Vec<String>,
    /// Recordings whose bytes were never fed.
    pub unexpected: Vec<String>,
    /// Originals and manifests the catalog names that the store lacks or holds with another size.
    pub missing_objects: Vec<String>,
    /// Originals in the store that no recording references (a file stored twice).
    pub stray_originals: Vec<String>,
    /// Files still on the docks (relative to the dock).
    pub left_on_docks: Vec<PathBuf>,
    /// Recordings whose media derivation has not ended.
    pub media_pending: usize,
    /// Entries in the custody chain.
    pub custody_events: usize,
    /// The first place the chain does not hold.
    pub chain_error: Option<String>,
    /// `duplicate_sighting` events.
    pub duplicate_sightings: usize,
}

impl ArchiveAudit {
    /// Nothing lost, duplicated, unexpected, missing, stray or left behind; one valid chain.
    pub fn is_clean(&self) -> bool {
        self.lost.is_empty()
            && self.duplicated.is_empty()
            && self.unexpected.is_empty()
            && self.missing_objects.is_empty()
            && self.stray_originals.is_empty()
            && self.left_on_docks.is_empty()
            && self.chain_error.is_none()
    }
}

/// Compares `fed` (SHA-256 of every non-empty file put on `docks`) with the catalog at
/// `catalog_url`, the store of `store_toml` and what is left on the docks; walks the custody chain.
pub async fn audit_archive(
    catalog_url: &str,
    store_toml: &str,
    fed: &std::collections::BTreeSet<String>,
    docks: &[PathBuf],
) -> ArchiveAudit {
    use std::collections::BTreeMap;
    let cat = evidenced::catalog::open(catalog_url, 2).await.unwrap();
    let store = evidenced::store::open(&store_config_of(store_toml)).await.unwrap();
    let mut a = ArchiveAudit::default();
    let mut recs = vec![];
    let mut filter = evidenced::catalog::RecordingFilter { limit: 500, ..Default::default() };
    loop {
        let page = cat.list_recordings(&filter).await.unwrap();
        let Some(last) = page.last() else { break };
        filter.after = Some((last.sort_at, last.id.clone()));
        recs.extend(page);
    }
    a.recordings = recs.len();
    let mut by_sha: BTreeMap<&str, usize> = BTreeMap::new();
    for r in &recs {
        *by_sha.entry(r.sha256.as_str()).or_default() += 1;
        if !fed.contains(&r.sha256) {
            a.unexpected.push(format!("{} {} {}", r.id, r.sha256, r.original_name));
        }
        if r.media_state == "pending" {
            a.media_pending += 1;
        }
        for (key, want) in [(&r.object_key, Some(r.size as u64)), (&r.manifest_key, None)] {
            match store.size(key).await {
                Ok(n) if want.is_none_or(|w| w == n) => {}
                Ok(n) => a.missing_objects.push(format!("{key}: size {n}, catalog says {}", r.size)),
                Err(e) => a.missing_objects.push(format!("{key}: {e}")),
            }
        }
    }
    a.duplicated.extend(by_sha.iter().filter(|(_, n)| **n > 1).map(|(s, n)| format!("{s} in {n} recordings")));
    a.lost = fed.iter().filter(|s| !by_sha.contains_key(s.as_str())).cloned().collect();
    let referenced: std::collections::BTreeSet<&str> = recs.iter().map(|r| r.object_key.as_str()).collect();
    a.stray_originals = store
        .list("originals/")
        .await
        .unwrap()
        .into_iter()
        .filter(|k| k.ends_with("/original") && !referenced.contains(k.as_str()))
        .collect();
    for d in docks {
        a.left_on_docks.extend(files_under(d).into_iter().map(|p| d.join(p)));
    }
    // The custody chain: one valid chain, one `archived` event per recording.
    let mut prev = evidenced::custody::GENESIS.to_string();
    let mut after = 0;
    let mut archived: BTreeMap<String, usize> = BTreeMap::new();
    loop {
        let page = cat.custody_events(None, after, 5000).await.unwrap();
        let Some(last) = page.last() else { break };
        after = last.body.seq;
        for e in &page {
            a.custody_events += 1;
            if a.chain_error.is_none() {
                if e.body.prev_hash != prev {
                    a.chain_error = Some(format!("entry {}: prev_hash does not link to the entry before", e.body.seq));
                } else if evidenced::custody::entry_hash(&e.body) != e.hash {
                    a.chain_error = Some(format!("entry {}: hash does not match its content", e.body.seq));
                }
            }
            prev = e.hash.clone();
            match e.body.kind.as_str() {
                "archived" => *archived.entry(e.body.recording_id.clone().unwrap_or_default()).or_default() += 1,
                "duplicate_sighting" => a.duplicate_sightings += 1,
                _ => {}
            }
        }
    }
    a.duplicated.extend(archived.iter().filter(|(_, n)| **n > 1).map(|(r, n)| format!("recording {r} archived {n} times")));
    a
}

// ---------------------------------------------------------------- a private PostgreSQL server

/// A private PostgreSQL server for tests that stop, restart or crash it (never the shared one on
/// 127.0.0.1:5432): `initdb` into a temporary directory owned by `postgres` (the server refuses
/// to run as root, so every `pg_ctl` runs through `runuser -u postgres`), a free port on
/// 127.0.0.1, its unix socket in that directory, trust authentication. Stopped (immediate) and
/// removed on drop.
pub struct PgCluster {
    /// Data directory (`data/`), socket and server log (`server.log`).
    pub dir: tempfile::TempDir,
    /// TCP port on 127.0.0.1.
    pub port: u16,
    /// `/usr/lib/postgresql/<version>/bin`.
    bin: PathBuf,
}

impl PgCluster {
    /// `initdb`, start, and wait until the server accepts connections.
    pub async fn start() -> PgCluster {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL server binaries are required (/usr/lib/postgresql/<version>/bin)")
            .flatten()
            .map(|e| e.path().join("bin"))
            .filter(|b| b.join("pg_ctl").exists())
            .max_by_key(|b| b.parent().and_then(|v| v.file_name()?.to_str()?.parse::<u32>().ok()).unwrap_or(0))
            .expect("no /usr/lib/postgresql/<version>/bin/pg_ctl");
        let dir = tempfile::Builder::new().prefix("evd-pg-").tempdir().unwrap();
        let chown = Command::new("chown").args(["-R", "postgres:postgres"]).arg(dir.path()).status().unwrap();
        assert!(chown.success(), "chown of the PostgreSQL test directory to postgres (needs root)");
        let pg = PgCluster { dir, port: free_port(), bin };
        let data = pg.data();
        pg.pg(&pg.bin.join("initdb"), &["-D", &data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"]);
        pg.start_server();
        pg.wait_ready().await;
        pg
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    /// Runs a server program as `postgres`; panics with its output when it fails.
    fn pg(&self, program: &Path, args: &[&str]) {
        let out = Command::new("runuser").args(["-u", "postgres", "--"]).arg(program).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{} {args:?}: {}{}\nserver log tail:\n{}",
            program.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log_tail(20)
        );
    }

    /// Server options: this port and socket directory, TCP on 127.0.0.1 only; no fsync (tests
    /// stop or crash the server, never the machine, so nothing committed is lost).
    fn options(&self) -> String {
        format!("-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off", self.port, self.dir.path().display())
    }

    fn pg_ctl(&self, args: &[&str]) {
        let log = self.dir.path().join("server.log").display().to_string();
        let (opts, data) = (self.options(), self.data());
        let mut all = vec!["-D", data.as_str(), "-l", &log, "-o", &opts, "-t", "60"];
        all.extend_from_slice(args);
        self.pg(&self.bin.join("pg_ctl"), &all);
        self.track_postmaster();
    }

    /// Registers the postmaster's pid to be killed if the test process exits without dropping.
    fn track_postmaster(&self) {
        let pid = std::fs::read_to_string(self.dir.path().join("data/postmaster.pid")).ok();
        if let Some(pid) = pid.and_then(|s| s.lines().next()?.trim().parse::<u32>().ok()) {
            track(pid);
        }
    }

    /// Starts the server and waits until it runs (`pg_ctl start -w`).
    pub fn start_server(&self) {
        self.pg_ctl(&["-w", "start"]);
    }

    /// Stops the server: `fast` (disconnects everyone, clean shutdown) or `immediate` (no
    /// shutdown checkpoint: crash recovery at the next start).
    pub fn stop_server(&self, mode: &str) {
        self.pg_ctl(&["-w", "-m", mode, "stop"]);
    }

    /// `pg_ctl restart -m MODE -w`.
    pub fn restart(&self, mode: &str) {
        self.pg_ctl(&["-w", "-m", mode, "restart"]);
    }

    /// Waits until a client can connect over TCP.
    pub async fn wait_ready(&self) {
        let url = self.url("postgres");
        wait_for("the private PostgreSQL server", Duration::from_secs(60), || {
            let url = url.clone();
            async move {
                let mut c = <sqlx::PgConnection as sqlx::Connection>::connect(&url).await.ok()?;
                sqlx::query("SELECT 1").execute(&mut c).await.ok().map(|_| ())
            }
        })
        .await;
    }

    /// The URL of database `db` on this server.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Creates a fresh, empty database; returns its URL.
    pub async fn database(&self) -> String {
        let name = format!("evt_{}", uuid::Uuid::new_v4().simple());
        let mut c = <sqlx::PgConnection as sqlx::Connection>::connect(&self.url("postgres")).await.unwrap();
        sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut c).await.unwrap();
        self.url(&name)
    }

    /// The last `n` lines of the server log.
    pub fn log_tail(&self, n: usize) -> String {
        tail(&std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default(), n)
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let data = self.data();
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .args(["-D", &data, "-m", "immediate", "-w", "stop"])
            .output();
    }
}

impl Daemon {
    /// Like [`Daemon::start`], with extra environment variables for the daemon process (for
    /// example `LD_PRELOAD` of libfaketime).
    pub async fn start_with_env(&mut self, env: &[(&str, String)]) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join("daemon.log")).unwrap();
        let mut cmd = Command::new(bin());
        cmd.arg("--config")
            .arg(&self.config)
            .arg("run")
            .current_dir(&self.dir)
            .env("RUST_LOG", "info,evidenced=debug")
            .env_remove("NOTIFY_SOCKET")
            .stdout(Stdio::null())
            .stderr(log);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().unwrap();
        track(child.id());
        self.child = Some(child);
        let url = format!("http://127.0.0.1:{}/healthz", self.port);
        wait_for("daemon /healthz", Duration::from_secs(60), || {
            let url = url.clone();
            async move { reqwest::get(&url).await.ok().filter(|r| r.status().is_success()).map(|_| ()) }
        })
        .await;
    }
}

// ---------------------------------------------------------------- a gateway that can stall

/// A TCP proxy to `127.0.0.1:upstream` that, while armed with a pattern, holds back every
/// request chunk containing it (and the rest of that connection's requests) until released: an
/// upload that stalls, as a congested link makes it stall, at a moment the test chooses. Answers
/// pass unchanged. It runs on a runtime of its own (a test blocking its thread does not stall
/// the daemons' traffic). Stops on drop.
pub struct StallProxy {
    /// Its port on 127.0.0.1.
    pub port: u16,
    armed: std::sync::Arc<Mutex<Option<Vec<u8>>>>,
    release: tokio::sync::watch::Sender<u64>,
    held: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl StallProxy {
    /// Starts a proxy to `upstream`, not armed.
    pub fn start(upstream: u16) -> StallProxy {
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let armed = std::sync::Arc::new(Mutex::new(None::<Vec<u8>>));
        let held = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (release, rx) = tokio::sync::watch::channel(0u64);
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let (a, h) = (armed.clone(), held.clone());
        runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                let Ok((client, _)) = listener.accept().await else { return };
                let (armed, held, mut rx) = (a.clone(), h.clone(), rx.clone());
                tokio::spawn(async move {
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await else { return };
                    let (mut cr, mut cw) = client.into_split();
                    let (mut sr, mut sw) = server.into_split();
                    tokio::spawn(async move {
                        let _ = tokio::io::copy(&mut sr, &mut cw).await;
                    });
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        let n = match cr.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        // The generation before the check: a release (disarm, then a new generation)
                        // after it is always seen.
                        let generation = *rx.borrow_and_update();
                        let hold = armed.lock().unwrap().as_ref().is_some_and(|p| buf[..n].windows(p.len()).any(|w| w == &p[..]));
                        if hold {
                            held.fetch_add(1, Ordering::SeqCst);
                            let _ = rx.wait_for(|g| *g != generation).await;
                            held.fetch_sub(1, Ordering::SeqCst);
                        }
                        if sw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                    let _ = sw.shutdown().await;
                });
            }
        });
        StallProxy { port, armed, release, held, runtime: Some(runtime) }
    }

    /// Holds back every request chunk containing `pattern` from now on (`None`: no longer).
    pub fn arm(&self, pattern: Option<&str>) {
        assert!(pattern.is_none_or(|p| !p.is_empty()), "an empty pattern would match everything");
        *self.armed.lock().unwrap() = pattern.map(|p| p.as_bytes().to_vec());
    }

    /// Requests held back right now.
    pub fn held(&self) -> usize {
        self.held.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Disarms and lets every held request go on.
    pub fn release(&self) {
        self.arm(None);
        self.release.send_modify(|g| *g += 1);
    }

    /// Its URL.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for StallProxy {
    fn drop(&mut self) {
        self.release();
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}
