//! Typed configuration: built-in defaults, then the TOML file, then `EVIDENCED__SECTION__KEY`
//! environment overrides, then validation. Every error names the key and the file it came from,
//! because an operator fixing a broken config at 3 a.m. needs to know exactly what to change.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// The embedded default configuration (SQLite + `fs` store under `./var`).
pub const DEFAULT_TOML: &str = include_str!("../config/evidenced.toml");

/// Prefix of environment variables that override config keys.
const ENV_PREFIX: &str = "EVIDENCED__";

/// Everything that can go wrong while loading the config.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("config file {file}: cannot read: {source}")]
    Read {
        /// Which file.
        file: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("config file {file}: invalid TOML: {message}")]
    Syntax {
        /// Which file.
        file: String,
        /// The parser's message, with line and column.
        message: String,
    },
    /// A key has a value of the wrong type or an unknown key was given.
    #[error("config file {file}: key `{key}`: {message}")]
    Key {
        /// Which file (or environment variable) the bad value came from.
        file: String,
        /// Dotted path of the key, e.g. `dock[0].settle`.
        key: String,
        /// What is wrong with it.
        message: String,
    },
}

/// The whole configuration of one node.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Identity of this node (journal rows, job leases and multipart uploads carry it).
    #[serde(default)]
    pub node: NodeConfig,
    /// Where the catalog lives.
    pub catalog: CatalogConfig,
    /// Where archived objects live.
    pub store: StoreConfig,
    /// Dock roots this node watches.
    #[serde(default)]
    pub dock: Vec<DockConfig>,
    /// The HTTP API.
    #[serde(default)]
    pub api: ApiConfig,
    /// Ingest tuning.
    #[serde(default)]
    pub ingest: IngestConfig,
    /// Logging.
    #[serde(default)]
    pub log: LogConfig,
    /// Optional RFC 3161 time-stamping authority: when set, every original and checkpoint is stamped.
    #[serde(default)]
    pub tsa: Option<TsaConfig>,
    /// Retention: categories and their periods, the destruction queue's grace and approvals.
    #[serde(default)]
    pub retention: RetentionConfig,
    /// Media derivation: proxy bounds and the limits of the isolated media worker.
    #[serde(default)]
    pub media: MediaConfig,
    /// Custody log: node signing key, checkpoint cadence, fixity checks.
    #[serde(default)]
    pub custody: CustodyConfig,
    /// Optional OpenID Connect: bearer JWTs from the agency's identity provider, besides the
    /// daemon's own tokens. Absent: only `evd_` tokens are accepted.
    #[serde(default)]
    pub oidc: Option<OidcConfig>,
    /// The file the config came from, for messages.
    #[serde(skip)]
    pub source: String,
}

/// `[node]`: this process's identity in a cluster.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// Stable node id; defaults to the host name. Must be unique among nodes sharing a catalog.
    #[serde(default = "default_node_id")]
    pub id: String,
    /// Directory for local state (temporary copies, keys).
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// How often the node records that it is alive in the catalog; after three missed beats
    /// it shows as `lost` (`GET /api/v1/nodes`, `evidenced_nodes{state}`).
    #[serde(default = "default_heartbeat", with = "humantime_serde_compat")]
    pub heartbeat: Duration,
    /// How far this host's clock may be from the catalog's (PostgreSQL) before the node pauses
    /// work that decides something irreversible by the time (retention, fixity); ingest goes on.
    #[serde(default = "default_max_clock_skew", with = "humantime_serde_compat")]
    pub max_clock_skew: Duration,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            id: default_node_id(),
            state_dir: default_state_dir(),
            heartbeat: default_heartbeat(),
            max_clock_skew: default_max_clock_skew(),
        }
    }
}

fn default_heartbeat() -> Duration {
    Duration::from_secs(10)
}

fn default_max_clock_skew() -> Duration {
    Duration::from_secs(120)
}

fn default_node_id() -> String {
    std::fs::read_to_string("/etc/hostname").ok().map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).unwrap_or_else(|| "node".into())
}

fn default_state_dir() -> PathBuf {
    PathBuf::from("var/state")
}

/// `[catalog]`: the relational catalog.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogConfig {
    /// `sqlite://path` or `postgres://user@host/db`.
    #[serde(default)]
    pub url: String,
    /// A file holding the URL instead (e.g. a systemd credential, so the password is not in
    /// the config file); wins over `url`.
    pub url_file: Option<PathBuf>,
    /// Maximum pooled connections.
    #[serde(default = "default_pool")]
    pub max_connections: u32,
}

fn default_pool() -> u32 {
    8
}

/// `[store]`: the object store for originals, manifests and derivatives.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// `fs` or `s3`.
    pub kind: StoreKind,
    /// Root directory (`fs`).
    pub path: Option<PathBuf>,
    /// Bucket name (`s3`).
    pub bucket: Option<String>,
    /// Key prefix, so several deployments can share a bucket (`s3`).
    #[serde(default)]
    pub prefix: String,
    /// Endpoint URL of an S3-compatible server; AWS when absent (`s3`).
    pub endpoint: Option<String>,
    /// Region (`s3`); many S3-compatible servers want a fixed one, e.g. `garage`.
    #[serde(default = "default_region")]
    pub region: String,
    /// Path-style addressing (`http://host/bucket/key`), needed by most self-hosted servers.
    #[serde(default)]
    pub force_path_style: bool,
    /// `fs`: re-read every stored file from disk and re-hash it before it counts as archived
    /// (catches a lying disk or controller at the cost of a second read).
    #[serde(default)]
    pub verify_readback: bool,
    /// Object Lock mode (a later issue enforces it): `off`, `governance`, `compliance`.
    #[serde(default = "default_lock")]
    pub object_lock: String,
    /// Files at least this large use multipart upload (`s3`).
    #[serde(default = "default_multipart_threshold")]
    pub multipart_threshold: u64,
    /// Smallest part size; grown with the file so 10 000 parts always suffice (`s3`).
    #[serde(default = "default_part_size")]
    pub part_size: u64,
    /// Parts uploaded concurrently (`s3`); each in-flight part holds one part in memory.
    #[serde(default = "default_parts_in_flight")]
    pub parts_in_flight: usize,
    /// Access key id; else `AWS_ACCESS_KEY_ID`.
    pub access_key_id: Option<String>,
    /// Secret key; prefer `secret_access_key_file` or `AWS_SECRET_ACCESS_KEY`.
    pub secret_access_key: Option<String>,
    /// File holding the secret key (e.g. a systemd credential).
    pub secret_access_key_file: Option<PathBuf>,
}

/// Which store implementation to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// A local directory.
    Fs,
    /// An S3-compatible object store.
    S3,
}

fn default_region() -> String {
    "us-east-1".into()
}
fn default_lock() -> String {
    "off".into()
}
fn default_multipart_threshold() -> u64 {
    16 << 20
}
fn default_part_size() -> u64 {
    8 << 20
}
fn default_parts_in_flight() -> usize {
    3
}

/// `[[dock]]`: one dock root.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DockConfig {
    /// The root directory the dock station writes into.
    pub path: PathBuf,
    /// Name used in sightings and custody events; defaults to the path.
    pub name: Option<String>,
    /// Path patterns that attribute a recording from its name (see CONTRACT.md).
    #[serde(default, deserialize_with = "one_or_many")]
    pub pattern: Vec<String>,
    /// IANA time zone of times written in file names.
    #[serde(default = "default_tz")]
    pub timezone: String,
    /// Unit of recordings from this dock.
    pub unit: Option<String>,
    /// How long (device, inode, size, mtime, ctime) must stay unchanged before a file is taken.
    #[serde(default = "default_settle", with = "humantime_serde_compat")]
    pub settle: Duration,
    /// `delete`, `keep` or `keep:7d`.
    #[serde(default = "default_release")]
    pub release: String,
}

fn default_tz() -> String {
    "UTC".into()
}
fn default_settle() -> Duration {
    Duration::from_secs(3)
}
fn default_release() -> String {
    "delete".into()
}

/// `[api]`: the HTTP API.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// Address to listen on.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// How long a console session lasts after sign-in (never longer than its token).
    #[serde(default = "default_session_ttl", with = "humantime_serde_compat")]
    pub session_ttl: Duration,
    /// How long the signed URLs of an access grant (`POST .../access`) stay valid.
    #[serde(default = "default_grant_ttl", with = "humantime_serde_compat")]
    pub grant_ttl: Duration,
    /// Deadline for a client's request head (slowloris clients that trickle header bytes are
    /// disconnected).
    #[serde(default = "default_header_timeout", with = "humantime_serde_compat")]
    pub header_timeout: Duration,
    /// Mark the session cookie `Secure` (set it when clients reach the API over HTTPS, e.g.
    /// behind a TLS-terminating proxy; browsers then send the cookie only over HTTPS).
    #[serde(default)]
    pub cookie_secure: bool,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            session_ttl: default_session_ttl(),
            grant_ttl: default_grant_ttl(),
            header_timeout: default_header_timeout(),
            cookie_secure: false,
        }
    }
}

fn default_header_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_session_ttl() -> Duration {
    Duration::from_secs(12 * 3600)
}

fn default_grant_ttl() -> Duration {
    Duration::from_secs(30 * 60)
}

fn default_listen() -> String {
    "127.0.0.1:8080".into()
}

/// `[ingest]`: scanning and upload tuning.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestConfig {
    /// How often every dock is fully rescanned (the source of truth; inotify only speeds it up).
    #[serde(default = "default_scan", with = "humantime_serde_compat")]
    pub scan_interval: Duration,
    /// Files ingested at once per node.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// First retry delay after a failed upload; doubles up to `max_backoff`.
    #[serde(default = "default_backoff", with = "humantime_serde_compat")]
    pub backoff: Duration,
    /// Longest delay between retries.
    #[serde(default = "default_max_backoff", with = "humantime_serde_compat")]
    pub max_backoff: Duration,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            scan_interval: default_scan(),
            concurrency: default_concurrency(),
            backoff: default_backoff(),
            max_backoff: default_max_backoff(),
        }
    }
}

fn default_scan() -> Duration {
    Duration::from_secs(10)
}
fn default_concurrency() -> usize {
    2
}
fn default_backoff() -> Duration {
    Duration::from_secs(1)
}
fn default_max_backoff() -> Duration {
    Duration::from_secs(60)
}

/// `[media]`: proxies, posters, clips, and the child process that makes them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MediaConfig {
    /// Largest proxy/poster/clip height; larger originals are scaled down.
    #[serde(default = "default_max_height")]
    pub max_height: u32,
    /// Proxy video bitrate (bits/s); also the VBV max rate.
    #[serde(default = "default_vbitrate")]
    pub video_bitrate: u64,
    /// Proxy audio bitrate (bits/s).
    #[serde(default = "default_abitrate")]
    pub audio_bitrate: u64,
    /// Wall-clock limit per media worker run.
    #[serde(default = "default_media_timeout", with = "humantime_serde_compat")]
    pub timeout: Duration,
    /// Address-space limit of the media worker in MiB (counts thread stacks; 4K needs 1-2 GiB).
    #[serde(default = "default_media_memory")]
    pub memory_limit_mib: u64,
    /// Media jobs run at once on this node (x264 uses every core by itself).
    #[serde(default = "default_media_concurrency")]
    pub concurrency: usize,
    /// Niceness of the media worker (higher = lower priority than the daemon).
    #[serde(default = "default_media_nice")]
    pub nice: i32,
    /// Path of `evidenced-media-worker`; default: beside the `evidenced` executable.
    pub worker: Option<PathBuf>,
}

impl Default for MediaConfig {
    fn default() -> Self {
        Self {
            max_height: default_max_height(),
            video_bitrate: default_vbitrate(),
            audio_bitrate: default_abitrate(),
            timeout: default_media_timeout(),
            memory_limit_mib: default_media_memory(),
            concurrency: default_media_concurrency(),
            nice: default_media_nice(),
            worker: None,
        }
    }
}

fn default_max_height() -> u32 {
    720
}
fn default_vbitrate() -> u64 {
    2_500_000
}
fn default_abitrate() -> u64 {
    128_000
}
fn default_media_timeout() -> Duration {
    Duration::from_secs(1800)
}
fn default_media_memory() -> u64 {
    2048
}
fn default_media_concurrency() -> usize {
    1
}
fn default_media_nice() -> i32 {
    10
}

/// `[tsa]`: the RFC 3161 time-stamping authority.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TsaConfig {
    /// Where time-stamp queries are POSTed (`application/timestamp-query`; plain HTTP, as most TSAs serve).
    pub url: String,
    /// PEM file with the TSA's CA certificate(s): every token is checked against it on receipt
    /// and by `verify`, and it is copied into exports.
    pub ca_file: PathBuf,
    /// Longest wait for one answer.
    #[serde(default = "default_tsa_timeout", with = "humantime_serde_compat")]
    pub timeout: Duration,
    /// The contents of `ca_file`, read at load so a bad path is reported with its key.
    #[serde(skip)]
    pub ca_pem: Vec<u8>,
}

fn default_tsa_timeout() -> Duration {
    Duration::from_secs(30)
}

/// `[retention]`: how long recordings are kept and how they leave.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    /// Time in the destruction queue before approval can take effect.
    #[serde(default = "default_grace", with = "humantime_serde_compat")]
    pub grace: Duration,
    /// Distinct archivists who must approve a destruction (1 or 2).
    #[serde(default = "default_approvals")]
    pub approvals: u8,
    /// How often the retention worker looks for expired recordings.
    #[serde(default = "default_sweep", with = "humantime_serde_compat")]
    pub sweep: Duration,
    /// Category name → period (`"184d"`, `"10y"`, `"permanent"`). Merged over the defaults
    /// (`uncategorized` 184 days; `evidence`, `obstruction`, `major_incident` permanent).
    #[serde(default)]
    pub categories: std::collections::BTreeMap<String, String>,
    /// Categories whose period counts from the closing of the recording's cases (the later of
    /// that and the usual start), e.g. `["case_closed_5y"]`. Empty by default.
    #[serde(default)]
    pub case_driven: Vec<String>,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            grace: default_grace(),
            approvals: default_approvals(),
            sweep: default_sweep(),
            categories: Default::default(),
            case_driven: Vec::new(),
        }
    }
}

fn default_grace() -> Duration {
    Duration::from_secs(7 * 86_400)
}
fn default_approvals() -> u8 {
    1
}
fn default_sweep() -> Duration {
    Duration::from_secs(86_400)
}

/// A retention period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    /// Kept this long after the later of the recording's start and its archiving.
    For(Duration),
    /// Never destroyed.
    Permanent,
}

impl RetentionConfig {
    /// Every category with its period: the defaults, overridden and extended by the config.
    pub fn periods(&self) -> std::collections::BTreeMap<String, Period> {
        let mut m: std::collections::BTreeMap<String, Period> = [
            ("uncategorized", Period::For(Duration::from_secs(184 * 86_400))),
            ("evidence", Period::Permanent),
            ("obstruction", Period::Permanent),
            ("major_incident", Period::Permanent),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        for (k, v) in &self.categories {
            if let Some(p) = parse_period(v) {
                m.insert(k.clone(), p);
            }
        }
        m
    }
}

/// `"permanent"` or a duration such as `"184d"` or `"10y"`.
pub fn parse_period(s: &str) -> Option<Period> {
    match s {
        "permanent" => Some(Period::Permanent),
        _ => humantime::parse_duration(s).ok().filter(|d| !d.is_zero()).map(Period::For),
    }
}

/// `[custody]`: the node key that signs checkpoints, their cadence, and fixity checks.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustodyConfig {
    /// The node's Ed25519 private key (PKCS#8 PEM, mode 0600), created on first run.
    /// Default: `node-key.pem` in `node.state_dir`.
    pub key_file: Option<PathBuf>,
    /// Sign a checkpoint once this many entries were appended since the last one.
    #[serde(default = "default_checkpoint_every")]
    pub checkpoint_every: i64,
    /// ... or once this long passed with new entries (and always at start and stop).
    #[serde(default = "default_checkpoint_interval", with = "humantime_serde_compat")]
    pub checkpoint_interval: Duration,
    /// Share of all recordings whose stored objects are re-read and re-hashed per day
    /// (0.05 = each recording about every 20 days; 0 turns fixity checks off).
    #[serde(default = "default_fixity_per_day")]
    pub fixity_per_day: f64,
}

impl Default for CustodyConfig {
    fn default() -> Self {
        Self {
            key_file: None,
            checkpoint_every: default_checkpoint_every(),
            checkpoint_interval: default_checkpoint_interval(),
            fixity_per_day: default_fixity_per_day(),
        }
    }
}

fn default_checkpoint_every() -> i64 {
    1000
}
fn default_checkpoint_interval() -> Duration {
    Duration::from_secs(300)
}
fn default_fixity_per_day() -> f64 {
    0.05
}

impl Config {
    /// The node key file (`custody.key_file`, default `node.state_dir/node-key.pem`).
    pub fn key_file(&self) -> PathBuf {
        self.custody.key_file.clone().unwrap_or_else(|| self.node.state_dir.join("node-key.pem"))
    }
}

/// `[log]`: logging.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `human` (default) or `json`.
    #[serde(default)]
    pub format: LogFormat,
    /// A tracing filter such as `info` or `evidenced=debug`; `RUST_LOG` wins when set.
    pub filter: Option<String>,
}

/// Log output format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Readable lines for a terminal or the journal.
    #[default]
    Human,
    /// One JSON object per line for log shippers.
    Json,
}

/// Signature algorithms `[oidc] algorithms` may name: asymmetric only. `none` and the HMAC
/// family (`HS256`...) are never accepted, since a public key must not double as a shared secret.
pub const OIDC_ALGORITHMS: [&str; 9] = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA"];

/// `[oidc]`: bearer JWTs issued by the agency's identity provider, checked against its JWKS and
/// mapped to a principal (name, role, unit, officer id) from their claims.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcConfig {
    /// The identity provider's issuer; a token's `iss` must equal it (required).
    #[serde(default)]
    pub issuer: String,
    /// Where the JWKS (the IdP's public keys) is fetched: `http://` only, since this build has no
    /// TLS client; serve an `https://` JWKS through a local proxy or use `jwks_file`. Fetched on
    /// first use and again for an unknown `kid`. Exactly one of `jwks_url` and `jwks_file`.
    pub jwks_url: Option<String>,
    /// A local file holding the JWKS, read at start and re-read for an unknown `kid`.
    pub jwks_file: Option<PathBuf>,
    /// A token's `aud` must contain this (required).
    #[serde(default)]
    pub audience: String,
    /// Claim holding the principal's name (the actor in custody events).
    #[serde(default = "default_name_claim")]
    pub name_claim: String,
    /// Claim holding the role: a string or a list of strings, our role names, or the IdP's values
    /// mapped through `roles`. A dotted name (`realm_access.roles`) reaches into nested objects
    /// when no claim has that exact name.
    #[serde(default = "default_role_claim")]
    pub role_claim: String,
    /// Claim holding the unit path (`JS/NJ`; `/` or empty = the whole agency). Required in every
    /// token, so that a missing claim never means "everything".
    #[serde(default = "default_unit_claim")]
    pub unit_claim: String,
    /// Claim holding an officer's officer id (role officer); default: the name.
    #[serde(default = "default_officer_claim")]
    pub officer_claim: String,
    /// Clock skew allowed on `exp` and `nbf`.
    #[serde(default = "default_oidc_leeway", with = "humantime_serde_compat")]
    pub leeway: Duration,
    /// Least time between two JWKS fetches (an unknown `kid` triggers one), so tokens with made-up
    /// key ids cannot make us hammer the IdP. At least 1 s.
    #[serde(default = "default_jwks_refresh", with = "humantime_serde_compat")]
    pub jwks_refresh: Duration,
    /// Accepted signature algorithms, from [`OIDC_ALGORITHMS`].
    #[serde(default = "default_oidc_algorithms")]
    pub algorithms: Vec<String>,
    /// IdP role or group value → our role. When set, only the values listed here count; when
    /// empty, the role claim must hold our role names themselves.
    #[serde(default)]
    pub roles: std::collections::BTreeMap<String, String>,
}

fn default_name_claim() -> String {
    "sub".into()
}
fn default_role_claim() -> String {
    "role".into()
}
fn default_unit_claim() -> String {
    "unit".into()
}
fn default_officer_claim() -> String {
    "officer_id".into()
}
fn default_oidc_leeway() -> Duration {
    Duration::from_secs(60)
}
fn default_jwks_refresh() -> Duration {
    Duration::from_secs(300)
}
fn default_oidc_algorithms() -> Vec<String> {
    ["RS256", "ES256", "EdDSA"].map(String::from).to_vec()
}

/// How a dock copy is released once its archive is verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    /// Delete at once.
    Delete,
    /// Never delete.
    Keep,
    /// Delete after this long.
    KeepFor(Duration),
}

impl DockConfig {
    /// The parsed `release` policy (validated at load).
    pub fn release_policy(&self) -> Release {
        parse_release(&self.release).unwrap_or(Release::Keep)
    }

    /// The name used for this dock in sightings.
    pub fn display_name(&self) -> String {
        self.name.clone().unwrap_or_else(|| self.path.display().to_string())
    }
}

fn parse_release(s: &str) -> Option<Release> {
    match s {
        "delete" => Some(Release::Delete),
        "keep" => Some(Release::Keep),
        _ => {
            let d = s.strip_prefix("keep:")?;
            humantime::parse_duration(d).ok().map(Release::KeepFor)
        }
    }
}

/// serde glue: durations written as `"3s"`, `"7d"`.
mod humantime_serde_compat {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s).map_err(|e| serde::de::Error::custom(format!("invalid duration {s:?}: {e}")))
    }
}

fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    })
}

impl Config {
    /// Loads the config: the file at `path` (or the embedded default when `path` is `None`),
    /// then environment overrides, then validation.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let (file, text) = match path {
            Some(p) => {
                let file = p.display().to_string();
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read { file: file.clone(), source })?;
                (file, text)
            }
            None => ("<embedded default>".to_string(), DEFAULT_TOML.to_string()),
        };
        Self::from_toml(&file, &text, std::env::vars())
    }

    /// Parses `text` (from `file`), applying overrides from `env`.
    pub fn from_toml(file: &str, text: &str, env: impl Iterator<Item = (String, String)>) -> Result<Config, ConfigError> {
        let mut value: toml::Value = toml::from_str(text).map_err(|e| ConfigError::Syntax { file: file.into(), message: e.to_string() })?;
        let mut overridden = Vec::new();
        for (k, v) in env {
            if let Some(rest) = k.strip_prefix(ENV_PREFIX) {
                let path: Vec<String> = rest.split("__").map(|s| s.to_ascii_lowercase()).collect();
                apply_override(&mut value, &path, &v).map_err(|message| ConfigError::Key {
                    file: format!("environment variable {k}"),
                    key: path.join("."),
                    message,
                })?;
                overridden.push((path.join("."), k));
            }
        }
        let de = value.clone();
        let mut cfg: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            // Name the environment variable when the bad key came from one.
            let from = overridden
                .iter()
                .find(|(p, _)| key.replace('[', ".").replace(']', "") == *p)
                .map(|(_, k)| format!("environment variable {k}"))
                .unwrap_or_else(|| file.to_string());
            ConfigError::Key { file: from, key, message: e.into_inner().message().to_string() }
        })?;
        cfg.source = file.to_string();
        cfg.validate()?;
        Ok(cfg)
    }

    fn key_err(&self, key: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError::Key { file: self.source.clone(), key: key.into(), message: message.into() }
    }

    /// Checks `[oidc]`; the JWKS itself is read when the verifier is built at start.
    fn validate_oidc(&self, o: &OidcConfig) -> Result<(), ConfigError> {
        if o.issuer.trim().is_empty() {
            return Err(self.key_err("oidc.issuer", "required: the identity provider's issuer (a token's `iss`)"));
        }
        if o.audience.trim().is_empty() {
            return Err(self.key_err("oidc.audience", "required: the audience tokens must be issued for (a token's `aud`)"));
        }
        match (&o.jwks_url, &o.jwks_file) {
            (Some(_), Some(_)) => return Err(self.key_err("oidc.jwks_url", "give oidc.jwks_url or oidc.jwks_file, not both")),
            (None, None) => return Err(self.key_err("oidc.jwks_url", "required (or oidc.jwks_file): where the IdP's JWKS is")),
            (Some(u), None) => {
                if u.starts_with("https://") {
                    return Err(self.key_err(
                        "oidc.jwks_url",
                        format!("{u:?}: https is not supported by this build; fetch the JWKS through a local http proxy or copy it to oidc.jwks_file"),
                    ));
                }
                if !u.starts_with("http://") || reqwest::Url::parse(u).is_err() {
                    return Err(self.key_err("oidc.jwks_url", format!("{u:?} is not an http:// URL")));
                }
            }
            (None, Some(_)) => {}
        }
        for (key, claim) in [
            ("name_claim", &o.name_claim),
            ("role_claim", &o.role_claim),
            ("unit_claim", &o.unit_claim),
            ("officer_claim", &o.officer_claim),
        ] {
            if claim.is_empty() {
                return Err(self.key_err(format!("oidc.{key}"), "must name a claim"));
            }
        }
        if o.leeway > Duration::from_secs(600) {
            return Err(self.key_err("oidc.leeway", "at most 10m (it allows for clock skew, not for expired tokens)"));
        }
        if o.jwks_refresh < Duration::from_secs(1) {
            return Err(self.key_err("oidc.jwks_refresh", "must be at least 1s"));
        }
        if o.algorithms.is_empty() {
            return Err(self.key_err("oidc.algorithms", format!("name at least one of {}", OIDC_ALGORITHMS.join(", "))));
        }
        for a in &o.algorithms {
            if !OIDC_ALGORITHMS.contains(&a.as_str()) {
                let why = if a.eq_ignore_ascii_case("none") || a.to_ascii_uppercase().starts_with("HS") {
                    "is never accepted (unsigned or shared-secret tokens)"
                } else {
                    "is not a supported signature algorithm"
                };
                return Err(self.key_err("oidc.algorithms", format!("{a:?} {why}; use {}", OIDC_ALGORITHMS.join(", "))));
            }
        }
        for (value, role) in &o.roles {
            if !crate::api::auth::ROLES.contains(&role.as_str()) {
                return Err(self.key_err(
                    format!("oidc.roles.{value}"),
                    format!("{role:?} is not a role: use one of {}", crate::api::auth::ROLES.join(", ")),
                ));
            }
        }
        Ok(())
    }

    fn validate(&mut self) -> Result<(), ConfigError> {
        if let Some(f) = &self.catalog.url_file {
            let url =
                std::fs::read_to_string(f).map_err(|e| self.key_err("catalog.url_file", format!("cannot read {}: {e}", f.display())))?;
            self.catalog.url = url.trim().to_string();
        }
        let url = &self.catalog.url;
        if !(url.starts_with("sqlite:") || url.starts_with("postgres:") || url.starts_with("postgresql:")) {
            return Err(self.key_err("catalog.url", format!("unsupported URL {url:?}: use sqlite://PATH or postgres://...")));
        }
        match self.store.kind {
            StoreKind::Fs if self.store.path.is_none() => {
                return Err(self.key_err("store.path", "required when store.kind = \"fs\""));
            }
            StoreKind::S3 if self.store.bucket.as_deref().unwrap_or("").is_empty() => {
                return Err(self.key_err("store.bucket", "required when store.kind = \"s3\""));
            }
            _ => {}
        }
        if !matches!(self.store.object_lock.as_str(), "off" | "governance" | "compliance") {
            return Err(self.key_err("store.object_lock", "must be \"off\", \"governance\" or \"compliance\""));
        }
        if self.store.part_size < 5 << 20 {
            return Err(self.key_err("store.part_size", "must be at least 5 MiB (S3 minimum)"));
        }
        if self.store.parts_in_flight == 0 || self.store.parts_in_flight > 64 {
            return Err(self.key_err("store.parts_in_flight", "must be between 1 and 64"));
        }
        if let Some(f) = &self.store.secret_access_key_file {
            let secret = std::fs::read_to_string(f)
                .map_err(|e| self.key_err("store.secret_access_key_file", format!("cannot read {}: {e}", f.display())))?;
            self.store.secret_access_key = Some(secret.trim().to_string());
        }
        if self.node.heartbeat < Duration::from_millis(200) || self.node.heartbeat > Duration::from_secs(300) {
            return Err(self.key_err("node.heartbeat", "must be between 200ms and 5m"));
        }
        if self.node.max_clock_skew < Duration::from_secs(1) || self.node.max_clock_skew > Duration::from_secs(86_400) {
            return Err(self.key_err("node.max_clock_skew", "must be between 1s and 24h"));
        }
        if self.api.header_timeout < Duration::from_millis(100) || self.api.header_timeout > Duration::from_secs(300) {
            return Err(self.key_err("api.header_timeout", "must be between 100ms and 5m"));
        }
        if self.api.session_ttl < Duration::from_secs(60) || self.api.session_ttl > Duration::from_secs(30 * 86_400) {
            return Err(self.key_err("api.session_ttl", "must be between 1m and 30d"));
        }
        if self.api.grant_ttl < Duration::from_secs(30) || self.api.grant_ttl > Duration::from_secs(86_400) {
            return Err(self.key_err("api.grant_ttl", "must be between 30s and 24h"));
        }
        if !(144..=4320).contains(&self.media.max_height) {
            return Err(self.key_err("media.max_height", "must be between 144 and 4320"));
        }
        if self.media.concurrency == 0 {
            return Err(self.key_err("media.concurrency", "must be at least 1"));
        }
        if self.media.memory_limit_mib < 256 {
            return Err(self.key_err("media.memory_limit_mib", "must be at least 256 (decoders need room)"));
        }
        if let Some(t) = &mut self.tsa {
            if !(t.url.starts_with("http://") || t.url.starts_with("https://")) {
                return Err(ConfigError::Key {
                    file: self.source.clone(),
                    key: "tsa.url".into(),
                    message: format!("{:?} is not an http(s) URL", t.url),
                });
            }
            t.ca_pem = std::fs::read(&t.ca_file).map_err(|e| ConfigError::Key {
                file: self.source.clone(),
                key: "tsa.ca_file".into(),
                message: format!("cannot read {}: {e}", t.ca_file.display()),
            })?;
        }
        for (name, p) in &self.retention.categories {
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') {
                return Err(self.key_err(format!("retention.categories.{name}"), "category names are a-z, 0-9 and _"));
            }
            if parse_period(p).is_none() {
                return Err(self.key_err(
                    format!("retention.categories.{name}"),
                    format!("{p:?}: use \"permanent\" or a period such as \"184d\" or \"10y\""),
                ));
            }
        }
        let known = self.retention.periods();
        if let Some(c) = self.retention.case_driven.iter().find(|c| !known.contains_key(*c)) {
            return Err(self.key_err("retention.case_driven", format!("{c:?} is not a category (add it to [retention.categories])")));
        }
        if !(1..=2).contains(&self.retention.approvals) {
            return Err(self.key_err("retention.approvals", "must be 1 or 2"));
        }
        if let Some(o) = &self.oidc {
            self.validate_oidc(o)?;
        }
        if self.custody.checkpoint_every < 1 {
            return Err(self.key_err("custody.checkpoint_every", "must be at least 1"));
        }
        if !(0.0..=1_000_000.0).contains(&self.custody.fixity_per_day) {
            return Err(self.key_err("custody.fixity_per_day", "must be between 0 and 1000000"));
        }
        if self.ingest.concurrency == 0 {
            return Err(self.key_err("ingest.concurrency", "must be at least 1"));
        }
        if self.api.listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(self.key_err("api.listen", format!("not an address:port: {:?}", self.api.listen)));
        }
        if self.node.id.is_empty() || !self.node.id.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
            return Err(self.key_err("node.id", "must be non-empty ASCII letters, digits, '-', '_' or '.'"));
        }
        for (i, d) in self.dock.iter().enumerate() {
            if parse_release(&d.release).is_none() {
                return Err(self.key_err(format!("dock[{i}].release"), format!("{:?}: use \"delete\", \"keep\" or \"keep:7d\"", d.release)));
            }
            if d.timezone.parse::<chrono_tz::Tz>().is_err() {
                return Err(self.key_err(format!("dock[{i}].timezone"), format!("unknown IANA time zone {:?}", d.timezone)));
            }
            for (j, p) in d.pattern.iter().enumerate() {
                if let Err(e) = crate::ingest::pattern::Pattern::compile(p) {
                    return Err(self.key_err(format!("dock[{i}].pattern[{j}]"), e.to_string()));
                }
            }
        }
        Ok(())
    }
}

/// Sets `path` in `value` to `raw`, creating tables as needed; numeric segments index arrays.
/// The raw string is parsed as a TOML value when it is one (numbers, booleans, arrays), else kept
/// as a string.
fn apply_override(value: &mut toml::Value, path: &[String], raw: &str) -> Result<(), String> {
    let parsed: toml::Value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()));
    let mut cur = value;
    for (i, seg) in path.iter().enumerate() {
        let last = i + 1 == path.len();
        if seg.is_empty() {
            return Err("empty key segment (`__` at an end or doubled)".into());
        }
        if let Ok(idx) = seg.parse::<usize>() {
            let arr = cur.as_array_mut().ok_or_else(|| format!("`{seg}` indexes something that is not a list"))?;
            // Missing entries before `idx` are padded (variables come in any order), but a typo
            // such as `DOCK__4294967296` must not allocate billions of them.
            if idx >= 1024 {
                return Err(format!("index {idx} is too large (at most 1023)"));
            }
            while arr.len() <= idx {
                arr.push(toml::Value::Table(toml::Table::new()));
            }
            if last {
                arr[idx] = parsed;
                return Ok(());
            }
            cur = &mut arr[idx];
        } else {
            let table = cur.as_table_mut().ok_or_else(|| format!("`{seg}` is inside something that is not a table"))?;
            if last {
                table.insert(seg.clone(), parsed);
                return Ok(());
            }
            let next_is_index = path[i + 1].parse::<usize>().is_ok();
            cur = table
                .entry(seg.clone())
                .or_insert_with(|| if next_is_index { toml::Value::Array(vec![]) } else { toml::Value::Table(toml::Table::new()) });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_toml("t.toml", text, env.iter().map(|(a, b)| (a.to_string(), b.to_string())))
    }

    #[test]
    fn embedded_default_loads() {
        let c = load(DEFAULT_TOML, &[]).unwrap();
        assert!(c.catalog.url.starts_with("sqlite:"));
        assert_eq!(c.store.kind, StoreKind::Fs);
        assert_eq!(c.api.listen, "127.0.0.1:8080");
        assert_eq!(c.dock[0].path, PathBuf::from("var/dock"));
    }

    #[test]
    fn retention_categories_and_case_driven_are_checked() {
        let base = format!("{DEFAULT_TOML}\n[retention]\napprovals = 2\n[retention.categories]\ncase_5y = \"5y\"\nbad = \"soon\"\n");
        let e = load(&base, &[]).unwrap_err().to_string();
        assert!(e.contains("retention.categories.bad") && e.contains("t.toml"), "{e}");
        let ok = base.replace("bad = \"soon\"\n", "");
        let c = load(&ok, &[("EVIDENCED__RETENTION__CASE_DRIVEN__0", "case_5y")]).unwrap();
        assert_eq!(c.retention.case_driven, ["case_5y"]);
        assert_eq!(c.retention.periods()["case_5y"], Period::For(Duration::from_secs(5 * 31_557_600)));
        let e = load(&ok, &[("EVIDENCED__RETENTION__CASE_DRIVEN__0", "nope")]).unwrap_err().to_string();
        assert!(e.contains("retention.case_driven") && e.contains("nope"), "{e}");
    }

    #[test]
    fn env_overrides_keys_and_dock_entries() {
        let c = load(
            DEFAULT_TOML,
            &[("EVIDENCED__API__LISTEN", "127.0.0.1:9999"), ("EVIDENCED__DOCK__0__SETTLE", "10s"), ("EVIDENCED__DOCK__1__PATH", "/x")],
        )
        .unwrap();
        assert_eq!(c.api.listen, "127.0.0.1:9999");
        assert_eq!(c.dock[0].settle, Duration::from_secs(10));
        assert_eq!(c.dock[1].path, PathBuf::from("/x"));
    }

    #[test]
    fn bad_key_names_key_and_file() {
        let e = load(DEFAULT_TOML.replace("settle = \"3s\"", "settle = \"soon\"").as_str(), &[]).unwrap_err().to_string();
        assert!(e.contains("t.toml") && e.contains("dock[0].settle"), "{e}");
        let e = load(DEFAULT_TOML, &[("EVIDENCED__DOCK__0__RELEASE", "burn")]).unwrap_err().to_string();
        assert!(e.contains("dock[0].release"), "{e}");
        let e = load("[catalog]\nurl='sqlite://x'\n[store]\nkind='fs'\npath='a'\nbogus=1\n", &[]).unwrap_err().to_string();
        assert!(e.contains("bogus") && e.contains("t.toml"), "{e}");
        let e = load("[catalog]\nurl='sqlite://x'\n[store]\nkind='s3'\n", &[]).unwrap_err().to_string();
        assert!(e.contains("store.bucket"), "{e}");
    }

    #[test]
    fn catalog_url_from_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("url");
        std::fs::write(&f, "postgres://evidenced:s3cret@db/evidenced\n").unwrap();
        let toml = format!("[catalog]\nurl_file = \"{}\"\n[store]\nkind = \"fs\"\npath = \"a\"\n", f.display());
        assert_eq!(load(&toml, &[]).unwrap().catalog.url, "postgres://evidenced:s3cret@db/evidenced");
        let e = load("[catalog]\nurl_file = \"/nonexistent\"\n[store]\nkind = \"fs\"\npath = \"a\"\n", &[]).unwrap_err().to_string();
        assert!(e.contains("catalog.url_file") && e.contains("/nonexistent"), "{e}");
        let e = load("[catalog]\n[store]\nkind = \"fs\"\npath = \"a\"\n", &[]).unwrap_err().to_string();
        assert!(e.contains("catalog.url"), "{e}");
    }

    #[test]
    fn huge_env_index_is_refused() {
        // Found by the property test below: this padded the dock list with 2^32 tables.
        let e = load(DEFAULT_TOML, &[("EVIDENCED__DOCK__4294967296__PATH", "/x")]).unwrap_err().to_string();
        assert!(e.contains("EVIDENCED__DOCK__4294967296__PATH") && e.contains("too large"), "{e}");
        // Also found by it: `EVIDENCED__` set an empty-named key, blamed on the config file.
        let e = load(DEFAULT_TOML, &[("EVIDENCED__", "1")]).unwrap_err().to_string();
        assert!(e.contains("environment variable EVIDENCED__:") && e.contains("empty key segment"), "{e}");
    }

    #[test]
    fn syntax_error_names_file() {
        let e = load("[catalog\n", &[]).unwrap_err().to_string();
        assert!(e.starts_with("config file t.toml: invalid TOML"), "{e}");
    }

    const OIDC: &str =
        "[oidc]\nissuer = \"https://idp.example/realms/pd\"\njwks_url = \"http://127.0.0.1:8081/certs\"\naudience = \"evidenced\"\n";

    #[test]
    fn oidc_section_with_defaults_and_role_table() {
        assert!(load(DEFAULT_TOML, &[]).unwrap().oidc.is_none(), "absent = off");
        let text = format!("{DEFAULT_TOML}\n{OIDC}role_claim = \"groups\"\n[oidc.roles]\n\"/evidence/supervisors\" = \"supervisor\"\n");
        let o = load(&text, &[]).unwrap().oidc.unwrap();
        assert_eq!((o.issuer.as_str(), o.audience.as_str(), o.jwks_file.as_deref()), ("https://idp.example/realms/pd", "evidenced", None));
        assert_eq!(
            (o.name_claim.as_str(), o.role_claim.as_str(), o.unit_claim.as_str(), o.officer_claim.as_str()),
            ("sub", "groups", "unit", "officer_id")
        );
        assert_eq!((o.leeway, o.jwks_refresh), (Duration::from_secs(60), Duration::from_secs(300)));
        assert_eq!(o.algorithms, ["RS256", "ES256", "EdDSA"]);
        assert_eq!(o.roles["/evidence/supervisors"], "supervisor");
        let c = load(
            &format!("{DEFAULT_TOML}\n{OIDC}"),
            &[("EVIDENCED__OIDC__ALGORITHMS", "[\"PS256\"]"), ("EVIDENCED__OIDC__JWKS_REFRESH", "30s")],
        )
        .unwrap();
        let o = c.oidc.unwrap();
        assert_eq!((o.algorithms, o.jwks_refresh), (vec!["PS256".to_string()], Duration::from_secs(30)));
    }

    #[test]
    fn bad_oidc_sections_name_the_key_and_file() {
        let bad = |section: &str, key: &str, words: &str| {
            let e = load(&format!("{DEFAULT_TOML}\n{section}"), &[]).unwrap_err().to_string();
            assert!(e.contains("t.toml") && e.contains(key) && e.contains(words), "{key}: {e}");
        };
        bad(&OIDC.replace("issuer = \"https://idp.example/realms/pd\"\n", ""), "oidc.issuer", "required");
        bad(&OIDC.replace("audience = \"evidenced\"\n", ""), "oidc.audience", "required");
        bad(&format!("{OIDC}jwks_file = \"/etc/jwks.json\"\n"), "oidc.jwks_url", "not both");
        bad(&OIDC.replace("jwks_url = \"http://127.0.0.1:8081/certs\"\n", ""), "oidc.jwks_url", "required");
        bad(&OIDC.replace("http://127.0.0.1:8081", "https://idp.example"), "oidc.jwks_url", "jwks_file");
        bad(&OIDC.replace("http://127.0.0.1:8081", "ftp://idp"), "oidc.jwks_url", "not an http");
        bad(&format!("{OIDC}[oidc.roles]\nchiefs = \"chief\"\n"), "oidc.roles.chiefs", "\"chief\" is not a role");
        bad(&format!("{OIDC}algorithms = [\"RS256\", \"HS256\"]\n"), "oidc.algorithms", "\"HS256\" is never accepted");
        bad(&format!("{OIDC}algorithms = [\"none\"]\n"), "oidc.algorithms", "never accepted");
        bad(&format!("{OIDC}algorithms = [\"RSA-OAEP\"]\n"), "oidc.algorithms", "not a supported");
        bad(&format!("{OIDC}algorithms = []\n"), "oidc.algorithms", "at least one");
        bad(&format!("{OIDC}jwks_refresh = \"0s\"\n"), "oidc.jwks_refresh", "at least 1s");
        bad(&format!("{OIDC}leeway = \"soon\"\n"), "oidc.leeway", "invalid duration");
        bad(&format!("{OIDC}leeway = \"1h\"\n"), "oidc.leeway", "at most");
        bad(&format!("{OIDC}role_claim = \"\"\n"), "oidc.role_claim", "must name a claim");
        bad(&format!("{OIDC}client_secret = \"x\"\n"), "client_secret", "unknown field");
    }
}

/// Property tests ("fuzzing" on the stable toolchain): hostile config text and overrides.
#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;

    fn load(text: &str, env: &[(String, String)]) -> Result<Config, ConfigError> {
        Config::from_toml("t.toml", text, env.iter().cloned())
    }

    /// A TOML value of any type, or text that is almost one. No paths that name real files: the
    /// loader reads `*_file` keys, and `/dev/zero` is not what this test is about.
    fn value() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<i64>().prop_map(|n| n.to_string()),
            any::<f64>().prop_map(|f| format!("{f:?}")),
            prop::sample::select(vec![
                "true",
                "\"\"",
                "\"3s\"",
                "\"soon\"",
                "\"-1s\"",
                "\"18446744073709551615s\"",
                "\"delete\"",
                "\"keep:7d\"",
                "\"keep:\"",
                "\"fs\"",
                "\"s3\"",
                "\"compliance\"",
                "\"10y\"",
                "\"permanent\"",
                "\"Asia/Shanghai\"",
                "\"http://127.0.0.1:1/jwks\"",
                "[\"RS256\", \"HS256\"]",
                "\"supervisor\"",
                "\"Mars/Olympus\"",
                "\"127.0.0.1:0\"",
                "\"sqlite://x\"",
                "\"postgres://u:p@h/d\"",
                "[]",
                "[1, \"a\"]",
                "{}",
                "{ a = 1 }",
                "inf",
                "nan",
                "1979-05-27T07:32:00Z",
                "0x7fffffffffffffff",
                "1e400",
                "\"{device}/{start:%Q}\"",
                "\"{\"",
                "'''x'''",
                "\"\\u0000\"",
            ])
            .prop_map(str::to_string),
            "\"\\PC{0,20}\"".prop_map(|s| s.replace('\\', "\\\\")),
            "\\PC{0,12}",
            (1usize..3000).prop_map(|n| format!("{}1{}", "[".repeat(n), "]".repeat(n))),
            (1usize..3000).prop_map(|n| format!("{}{}", "{ a = ".repeat(n), "}".repeat(n))),
        ]
    }

    fn key() -> impl Strategy<Value = String> {
        prop::sample::select(vec![
            "id",
            "state_dir",
            "url",
            "max_connections",
            "kind",
            "path",
            "bucket",
            "object_lock",
            "part_size",
            "parts_in_flight",
            "listen",
            "scan_interval",
            "concurrency",
            "backoff",
            "max_backoff",
            "settle",
            "release",
            "timezone",
            "pattern",
            "name",
            "unit",
            "max_height",
            "memory_limit_mib",
            "approvals",
            "checkpoint_every",
            "fixity_per_day",
            "sweep",
            "categories",
            "format",
            "level",
            "issuer",
            "jwks_url",
            "audience",
            "algorithms",
            "role_claim",
            "jwks_refresh",
            "bogus",
            "",
            "a.b",
            "\"quoted key\"",
        ])
        .prop_map(str::to_string)
    }

    fn section() -> impl Strategy<Value = String> {
        prop::sample::select(vec![
            "[node]",
            "[catalog]",
            "[store]",
            "[api]",
            "[ingest]",
            "[media]",
            "[retention]",
            "[retention.categories]",
            "[custody]",
            "[log]",
            "[tsa]",
            "[oidc]",
            "[oidc.roles]",
            "[[dock]]",
            "[[dock]",
            "[dock]",
            "[[store]]",
            "[]",
            "[ x . y ]",
        ])
        .prop_map(str::to_string)
    }

    /// The shipped config with lines replaced, dropped, duplicated or added.
    fn mutated_default() -> impl Strategy<Value = String> {
        let lines: Vec<String> = DEFAULT_TOML.lines().map(str::to_string).collect();
        let n = lines.len();
        let edit = prop_oneof![
            (0..n, value()).prop_map(|(i, v)| (i, 0u8, v)),
            (0..n).prop_map(|i| (i, 1u8, String::new())),
            (0..n).prop_map(|i| (i, 2u8, String::new())),
            (0..n, section()).prop_map(|(i, s)| (i, 3u8, s)),
            (0..n, key(), value()).prop_map(|(i, k, v)| (i, 3u8, format!("{k} = {v}"))),
        ];
        prop::collection::vec(edit, 0..6).prop_map(move |edits| {
            let mut l = lines.clone();
            for (i, op, text) in edits {
                let i = i.min(l.len().saturating_sub(1));
                if l.is_empty() {
                    break;
                }
                match op {
                    0 => {
                        if let Some((k, _)) = l[i].split_once('=') {
                            l[i] = format!("{k}= {text}");
                        }
                    }
                    1 => {
                        l.remove(i);
                    }
                    2 => {
                        let dup = l[i].clone();
                        l.insert(i, dup);
                    }
                    _ => l.insert(i, text),
                }
            }
            l.join("\n")
        })
    }

    /// Sections and key = value lines in any order.
    fn soup() -> impl Strategy<Value = String> {
        let line = prop_oneof![section(), (key(), value()).prop_map(|(k, v)| format!("{k} = {v}")), "\\PC{0,30}"];
        prop::collection::vec(line, 0..24).prop_map(|v| v.join("\n"))
    }

    fn env() -> impl Strategy<Value = Vec<(String, String)>> {
        let seg = prop_oneof![
            key().prop_map(|k| k.to_ascii_uppercase()),
            section().prop_map(|s| s.trim_matches(|c| c == '[' || c == ']').to_ascii_uppercase()),
            (0usize..4).prop_map(|i| i.to_string()),
            prop::sample::select(vec!["18446744073709551615", "4294967296", "100000000", "99999999999999999999999"])
                .prop_map(str::to_string),
        ];
        let var = (prop::collection::vec(seg, 1..5), value()).prop_map(|(p, v)| (format!("{ENV_PREFIX}{}", p.join("__")), v));
        prop::collection::vec(var, 0..4)
    }

    fn check(r: Result<Config, ConfigError>) -> Result<(), TestCaseError> {
        if let Err(e) = r {
            let msg = e.to_string();
            match &e {
                ConfigError::Syntax { file, .. } => prop_assert_eq!(file, "t.toml"),
                ConfigError::Key { file, key, .. } => {
                    prop_assert!(file == "t.toml" || file.starts_with("environment variable EVIDENCED__"), "{msg}");
                    prop_assert!(!key.is_empty() || file.starts_with("environment"), "no key named: {msg}");
                }
                ConfigError::Read { .. } => prop_assert!(false, "nothing to read: {msg}"),
            }
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 1500, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn mutated_default_config(text in mutated_default(), env in env()) {
            check(load(&text, &env))?;
        }

        #[test]
        fn toml_soup(text in soup()) {
            check(load(&text, &[]))?;
        }

        #[test]
        fn arbitrary_text(text in "\\PC{0,300}") {
            check(load(&text, &[]))?;
        }
    }
}
