//! The systemd integration: the unit files in `systemd/` are valid, and the daemon speaks the
//! notify protocol (READY=1 after start-up, WATCHDOG=1 at half of WATCHDOG_USEC, STOPPING=1 on
//! SIGTERM, then a clean exit) over `NOTIFY_SOCKET`. Self-contained: std, tempfile, tokio, reqwest.

use std::fs;
use std::io::ErrorKind;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_evidenced");
const MANIFEST_DIR: &str = env!("CARGO_MANIFEST_DIR");

fn systemd_file(name: &str) -> PathBuf {
    Path::new(MANIFEST_DIR).join("systemd").join(name)
}

/// Runs a systemd tool; a missing tool is a test failure with a clear message, not a skip.
fn run_tool(cmd: &mut Command, what: &str) -> Output {
    match cmd.env("SYSTEMD_COLORS", "0").env("SYSTEMD_PAGER", "cat").output() {
        Ok(o) => o,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            panic!("`{what}` not found: install the systemd package (Debian: apt-get install systemd) to run this test")
        }
        Err(e) => panic!("cannot run `{what}`: {e}"),
    }
}

/// Environment complaints that are not about our unit's syntax (the test machine has no
/// `evidenced` user).
fn tolerated(line: &str) -> bool {
    let l = line.to_ascii_lowercase();
    l.contains("evidenced") && (l.contains("user") || l.contains("group"))
}

#[test]
fn unit_files_verify() {
    let unit = fs::read_to_string(systemd_file("evidenced.service")).expect("read systemd/evidenced.service");
    const EXEC: &str = "ExecStart=/usr/bin/evidenced --config /etc/evidenced/evidenced.toml run";
    assert!(unit.lines().any(|l| l == EXEC), "the unit must contain the line {EXEC:?}");
    for must in [
        "Type=notify",
        "NotifyAccess=main",
        "WatchdogSec=60",
        "User=evidenced",
        "Group=evidenced",
        "Restart=on-failure",
        "TimeoutStopSec=20",
        "KillMode=mixed",
        "StateDirectory=evidenced",
        "WorkingDirectory=/var/lib/evidenced",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "CapabilityBoundingSet=",
        "UMask=0027",
        "ReadWritePaths=-/srv/dock",
    ] {
        assert!(unit.lines().any(|l| l.trim() == must), "the unit lacks {must:?}");
    }

    // /usr/bin/evidenced does not exist here: verify a copy that runs the freshly built binary.
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("evidenced.service");
    let rewritten: String = unit
        .lines()
        .map(|l| if l == EXEC { EXEC.replacen("/usr/bin/evidenced", BIN, 1) } else { l.to_string() })
        .map(|l| l + "\n")
        .collect();
    fs::write(&copy, rewritten).unwrap();

    let out = run_tool(Command::new("systemd-analyze").arg("verify").arg("--man=no").arg(&copy), "systemd-analyze");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let bad: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("evidenced.service"))
        .filter(|l| ["Unknown", "Invalid", "Failed to parse", "ignoring", "not executable", "Missing"].iter().any(|w| l.contains(w)))
        .filter(|l| !tolerated(l))
        .collect();
    assert!(bad.is_empty(), "systemd-analyze verify rejects parts of the unit:\n{}\n--- full stderr ---\n{stderr}", bad.join("\n"));
    if !out.status.success() {
        let other: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty() && !tolerated(l)).collect();
        assert!(other.is_empty(), "systemd-analyze verify failed ({}):\n{stderr}{}", out.status, String::from_utf8_lossy(&out.stdout));
    }

    // sysusers.d and tmpfiles.d: applied to an empty alternate root. Needs root for the chown.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("not root: sysusers/tmpfiles files not applied (syntax only checked by the unit test above)");
        return;
    }
    let root = tempfile::tempdir().unwrap();
    fs::create_dir(root.path().join("etc")).unwrap();
    let out = run_tool(
        Command::new("systemd-sysusers").arg(format!("--root={}", root.path().display())).arg(systemd_file("evidenced.sysusers")),
        "systemd-sysusers",
    );
    assert!(out.status.success(), "systemd-sysusers failed ({}):\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    let passwd = fs::read_to_string(root.path().join("etc/passwd")).unwrap();
    let user = passwd.lines().find(|l| l.starts_with("evidenced:")).expect("sysusers created no user evidenced");
    let uid: u32 = user.split(':').nth(2).unwrap().parse().unwrap();
    assert!(uid > 0 && uid < 1000, "evidenced must be a system user, got uid {uid}");

    let out = run_tool(
        Command::new("systemd-tmpfiles")
            .arg(format!("--root={}", root.path().display()))
            .arg("--create")
            .arg(systemd_file("evidenced.tmpfiles")),
        "systemd-tmpfiles",
    );
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "systemd-tmpfiles failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    for (path, mode, owner_is_evidenced) in [("etc/evidenced", 0o750, false), ("var/lib/evidenced", 0o750, true), ("srv/dock", 0o770, true)]
    {
        let md = fs::metadata(root.path().join(path)).unwrap_or_else(|e| panic!("tmpfiles did not create /{path}: {e}"));
        assert!(md.is_dir());
        assert_eq!(md.permissions().mode() & 0o7777, mode, "mode of /{path}");
        assert_eq!(md.uid() == uid, owner_is_evidenced, "owner of /{path}");
        assert_eq!(md.gid(), uid, "group of /{path} (sysusers gives evidenced gid = uid here)");
    }
}

/// Kills the daemon on every exit path of the test.
struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Daemon {
    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Panics with the daemon's log if it has already exited.
    fn assert_alive(&mut self, waiting_for: &str) {
        if let Ok(Some(st)) = self.child.try_wait() {
            panic!("evidenced exited ({st}) while waiting for {waiting_for}; its log:\n{}", self.log());
        }
    }

    fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(st) = self.child.try_wait().unwrap() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// All notify messages received so far (one entry per datagram).
struct Notifications {
    sock: UnixDatagram,
    got: Vec<String>,
}

impl Notifications {
    /// Reads datagrams until one contains the line `want`, or `within` passes (then panics).
    fn wait_for(&mut self, want: &str, within: Duration, daemon: &mut Daemon) {
        let deadline = Instant::now() + within;
        let start = self.got.len();
        let mut buf = vec![0u8; 65536];
        loop {
            if self.got[start..].iter().any(|m| m.lines().any(|l| l == want)) {
                return;
            }
            if Instant::now() >= deadline {
                panic!("no {want:?} notification within {within:?}; received {:?}; daemon log:\n{}", self.got, daemon.log());
            }
            daemon.assert_alive(want);
            match self.sock.recv(&mut buf) {
                Ok(n) => self.got.push(String::from_utf8_lossy(&buf[..n]).into_owned()),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted) => {}
                Err(e) => panic!("notify socket: {e}"),
            }
        }
    }

    /// Reads whatever is queued without waiting.
    fn drain(&mut self) {
        self.sock.set_nonblocking(true).unwrap();
        let mut buf = vec![0u8; 65536];
        while let Ok(n) = self.sock.recv(&mut buf) {
            self.got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }

    fn any_line(&self, want: &str) -> bool {
        self.got.iter().any(|m| m.lines().any(|l| l == want))
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn ready_and_stopping_via_notify_socket() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let sock_path = root.join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let mut notes = Notifications { sock, got: Vec::new() };

    let port = free_port();
    let dock = root.join("dock");
    fs::create_dir_all(&dock).unwrap();
    let config = format!(
        r#"[node]
state_dir = "{root}/state"

[catalog]
url = "sqlite://{root}/catalog.db"

[store]
kind = "fs"
path = "{root}/archive"

[[dock]]
path = "{dock}"
pattern = "{{device}}/{{device}}_{{officer}}_{{start:%Y%m%d%H%M%S}}_{{seq}}.{{ext}}"
timezone = "UTC"
settle = "3s"
release = "delete"

[api]
listen = "127.0.0.1:{port}"

[ingest]
scan_interval = "10s"
concurrency = 2

[log]
format = "human"
"#,
        root = root.display(),
        dock = dock.display(),
    );
    let config_path = root.join("evidenced.toml");
    fs::write(&config_path, config).unwrap();

    let log = root.join("daemon.log");
    let log_file = fs::File::create(&log).unwrap();
    let mut cmd = Command::new(BIN);
    cmd.arg("--config").arg(&config_path).arg("run").current_dir(root);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("EVIDENCED") {
            cmd.env_remove(k);
        }
    }
    cmd.env("NOTIFY_SOCKET", &sock_path)
        .env("WATCHDOG_USEC", "2000000")
        .env_remove("WATCHDOG_PID")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().unwrap())
        .stderr(log_file);
    let mut daemon = Daemon { child: cmd.spawn().expect("spawn evidenced"), log };

    notes.wait_for("READY=1", Duration::from_secs(30), &mut daemon);

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let status = rt
        .block_on(async {
            let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build()?;
            client.get(format!("http://127.0.0.1:{port}/healthz")).send().await.map(|r| r.status())
        })
        .unwrap_or_else(|e| panic!("GET /healthz after READY=1: {e}; daemon log:\n{}", daemon.log()));
    assert_eq!(status.as_u16(), 200, "GET /healthz after READY=1");

    notes.wait_for("WATCHDOG=1", Duration::from_secs(5), &mut daemon);

    let pid = daemon.child.id() as libc::pid_t;
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0, "kill -TERM {pid}");
    let exit = daemon.wait_exit(Duration::from_secs(10));
    notes.drain();
    let Some(exit) = exit else {
        panic!("evidenced did not exit within 10 s of SIGTERM; daemon log:\n{}", daemon.log());
    };
    assert!(exit.success(), "evidenced exited with {exit} after SIGTERM; daemon log:\n{}", daemon.log());
    assert!(notes.any_line("STOPPING=1"), "no STOPPING=1 notification; received {:?}", notes.got);
    let ready_at = notes.got.iter().position(|m| m.lines().any(|l| l == "READY=1")).unwrap();
    let stopping_at = notes.got.iter().position(|m| m.lines().any(|l| l == "STOPPING=1")).unwrap();
    assert!(ready_at < stopping_at, "STOPPING=1 before READY=1: {:?}", notes.got);
}
