//! The one-shot commands: config errors, backfill (`ingest`), tokens.

use std::path::Path;
use std::process::Command;

use crate::harness::{Daemon, DaemonSpec, bin, copy_tree, corpus, files_under};

fn run(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut c = Command::new(bin());
    c.args(args).current_dir(dir).env_remove("EVIDENCED_CONFIG");
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

#[test]
fn bad_config_names_the_key_and_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");
    std::fs::write(
        &cfg,
        "[catalog]\nurl = \"sqlite://c.db\"\n[store]\nkind = \"fs\"\npath = \"a\"\n[[dock]]\npath = \"d\"\nsettle = \"soon\"\n",
    )
    .unwrap();
    let (code, _, err) = run(dir.path(), &["--config", cfg.to_str().unwrap(), "token", "list"], &[]);
    assert_eq!(code, 2);
    assert!(err.contains("bad.toml") && err.contains("dock[0].settle") && err.contains("soon"), "{err}");
    assert!(!err.contains("panicked"), "{err}");

    let (code, _, err) = run(dir.path(), &["--config", "/nonexistent.toml", "token", "list"], &[]);
    assert_eq!(code, 2);
    assert!(err.contains("/nonexistent.toml"), "{err}");

    std::fs::write(&cfg, "[catalog]\nurl = \"sqlite://c.db\"\n[store]\nkind = \"fs\"\npath = \"a\"\n").unwrap();
    let (code, _, err) = run(dir.path(), &["--config", cfg.to_str().unwrap(), "token", "list"], &[("EVIDENCED__API__LISTEN", "nowhere")]);
    assert_eq!(code, 2);
    assert!(err.contains("EVIDENCED__API__LISTEN") || err.contains("api.listen"), "{err}");

    let (code, _, err) = run(dir.path(), &["--config", cfg.to_str().unwrap(), "token", "create", "--name", "x", "--role", "chief"], &[]);
    assert_ne!(code, 0);
    assert!(err.contains("--role"), "{err}");
}

#[test]
fn unreachable_catalog_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    let port = crate::harness::free_port();
    std::fs::write(&cfg, format!("[catalog]\nurl = \"postgres://postgres:pw@127.0.0.1:{port}/x\"\n[store]\nkind = \"fs\"\npath = \"a\"\n"))
        .unwrap();
    let (code, _, err) = run(dir.path(), &["--config", cfg.to_str().unwrap(), "token", "list"], &[]);
    assert_eq!(code, 2);
    assert!(err.contains(&format!("127.0.0.1:{port}")) && err.contains("catalog"), "{err}");
    assert!(!err.contains(":pw@"), "the password is not printed: {err}");
}

#[tokio::test]
async fn backfill_archives_in_place_and_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::configure(dir.path(), &DaemonSpec::station(dir.path()));
    let src = dir.path().join("old-footage");
    copy_tree(&corpus().join("import"), &src.join("import"));
    copy_tree(&corpus().join("edge-cases"), &src.join("edge-cases"));
    let before = files_under(&src);
    let (code, out, err) = daemon.cli(&["ingest", src.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}\n{err}");
    // 4 non-empty edge cases + the MOV; the empty file is skipped (and recorded in custody).
    assert!(out.contains("archived 5,"), "{out}");
    assert_eq!(files_under(&src), before, "sources stay in place");
    let (code, out, _) = daemon.cli(&["ingest", src.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(out.contains("archived 0,") && out.contains("skipped 6"), "re-running skips what is archived: {out}");
    let (code, out, _) = daemon.cli(&["ingest", "/nonexistent/footage"]);
    assert_eq!(code, 1);
    assert!(out.contains("failed: /nonexistent/footage"), "{out}");
}
