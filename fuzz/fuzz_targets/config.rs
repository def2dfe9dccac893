//! The config file and its `EVIDENCED__*` overrides through `Config::from_toml` (TOML, then
//! overrides, then validation). Input: the TOML text, optionally followed by NUL-separated
//! `SECTION__KEY=VALUE` overrides (the `EVIDENCED__` prefix is added).
//!
//! Errors are expected; panics are not. Properties: every error names the file or the variable
//! it came from and what to fix; a config that loads satisfies every documented bound; loading
//! is deterministic. Inputs naming a file that validation reads (`catalog.url_file`,
//! `store.secret_access_key_file`, `tsa.ca_file`) are skipped: reading `/dev/zero` or a FIFO is
//! an operator's choice, not hostile input.

#![no_main]

use std::time::Duration;

use evidenced::config::{Config, ConfigError};
use libfuzzer_sys::fuzz_target;

const FILE: &str = "fuzz.toml";

/// The keys whose files `Config::from_toml` reads while validating.
const READ_KEYS: [&str; 3] = ["url_file", "secret_access_key_file", "ca_file"];

/// Whether any key in `v` (at any depth) names a file the validator would read.
fn names_a_file(v: &toml::Value) -> bool {
    match v {
        toml::Value::Table(t) => t.iter().any(|(k, v)| READ_KEYS.contains(&k.to_ascii_lowercase().as_str()) || names_a_file(v)),
        toml::Value::Array(a) => a.iter().any(names_a_file),
        _ => false,
    }
}

fn check_loaded(c: &Config) {
    assert_eq!(c.source, FILE);
    let url = &c.catalog.url;
    assert!(url.starts_with("sqlite:") || url.starts_with("postgres:") || url.starts_with("postgresql:"), "{url:?}");
    assert!((1..=64).contains(&c.store.parts_in_flight));
    assert!(c.store.part_size >= 5 << 20);
    assert!(matches!(c.store.object_lock.as_str(), "off" | "governance" | "compliance"));
    assert!((144..=4320).contains(&c.media.max_height));
    assert!(c.media.concurrency >= 1 && c.media.memory_limit_mib >= 256 && c.ingest.concurrency >= 1);
    assert!(c.node.heartbeat >= Duration::from_millis(200) && c.node.heartbeat <= Duration::from_secs(300));
    assert!(c.api.grant_ttl >= Duration::from_secs(30) && c.api.grant_ttl <= Duration::from_secs(86_400));
    assert!(c.api.listen.parse::<std::net::SocketAddr>().is_ok(), "{:?}", c.api.listen);
    assert!(!c.node.id.is_empty() && c.node.id.chars().all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch)));
    assert!((1..=2).contains(&c.retention.approvals));
    assert!(c.custody.checkpoint_every >= 1 && (0.0..=1_000_000.0).contains(&c.custody.fixity_per_day));
    let periods = c.retention.periods();
    for name in c.retention.categories.keys().chain(&c.retention.case_driven) {
        assert!(periods.contains_key(name), "category {name:?} has no period");
    }
    for d in &c.dock {
        let _ = d.release_policy();
        let _ = d.display_name();
        assert!(d.timezone.parse::<chrono_tz::Tz>().is_ok(), "{:?}", d.timezone);
        for p in &d.pattern {
            assert!(evidenced::ingest::pattern::Pattern::compile(p).is_ok(), "{p:?}");
        }
    }
}

fn check_error(e: &ConfigError) {
    let msg = e.to_string();
    match e {
        ConfigError::Syntax { file, message } => {
            assert_eq!(file, FILE);
            assert!(!message.is_empty(), "{msg}");
        }
        ConfigError::Key { file, key, message } => {
            let from_env = file.starts_with("environment variable EVIDENCED__");
            assert!(file == FILE || from_env, "{msg}");
            assert!(!key.is_empty() || from_env, "no key named: {msg}");
            assert!(!message.is_empty(), "{msg}");
        }
        ConfigError::Read { .. } => panic!("nothing to read here: {msg}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut parts = text.split('\0');
    let toml_text = parts.next().unwrap_or_default();
    let env: Vec<(String, String)> = parts
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (format!("EVIDENCED__{}", k.trim_start_matches("EVIDENCED__")), v.to_string()))
        .collect();
    let env_names_a_file = |(k, v): &(String, String)| {
        k.to_ascii_lowercase().split("__").any(|s| READ_KEYS.contains(&s))
            || toml::from_str::<toml::Value>(&format!("v = {v}")).is_ok_and(|v| names_a_file(&v))
    };
    if env.iter().any(env_names_a_file) {
        return;
    }
    if toml::from_str::<toml::Value>(toml_text).is_ok_and(|v| names_a_file(&v)) {
        return;
    }
    let first = Config::from_toml(FILE, toml_text, env.iter().cloned());
    match &first {
        Ok(c) => check_loaded(c),
        Err(e) => check_error(e),
    }
    let second = Config::from_toml(FILE, toml_text, env.iter().cloned());
    assert_eq!(format!("{first:?}"), format!("{second:?}"), "loading is not deterministic");
});
