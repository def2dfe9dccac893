//! The command line (clap): `run`, `ingest`, `token create|list|revoke`. `--config` is global and
//! defaults to `$EVIDENCED_CONFIG`, then `config/evidenced.toml` (or the embedded default when
//! that file does not exist). Errors print one clear line and exit non-zero, never a panic.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::config::Config;

/// Command-line interface.
#[derive(Debug, Parser)]
#[command(name = "evidenced", version, about = "Evidence archive daemon for audio/video recordings")]
pub struct Cli {
    /// Config file (default: $EVIDENCED_CONFIG, then config/evidenced.toml).
    #[arg(long, global = true, env = "EVIDENCED_CONFIG")]
    pub config: Option<PathBuf>,
    /// Log as JSON lines (overrides [log] format).
    #[arg(long, global = true)]
    pub log_json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: watch docks, ingest, serve the API, until SIGTERM/SIGINT.
    Run,
    /// Import existing files or folders through the ingest pipeline (sources stay in place).
    Ingest {
        /// Files or directories.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
    },
    /// Manage API principals and their bearer tokens.
    Token {
        /// What to do with tokens.
        #[command(subcommand)]
        action: TokenCommand,
    },
}

/// `token` subcommands.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a principal; prints its bearer token alone on the last line.
    Create {
        /// Unique name.
        #[arg(long)]
        name: String,
        /// officer, supervisor, archivist, auditor or admin.
        #[arg(long)]
        role: String,
        /// Unit subtree it covers (default: everything).
        #[arg(long, default_value = "")]
        unit: String,
        /// Officer id carried by recordings (role officer; default: NAME).
        #[arg(long)]
        officer: Option<String>,
        /// Lifetime such as 90d or 12h (default: no expiry).
        #[arg(long)]
        expires: Option<String>,
    },
    /// List principals and their state.
    List,
    /// Revoke a principal's token at once.
    Revoke {
        /// The principal's name.
        name: String,
    },
}

fn load_config(path: Option<PathBuf>) -> anyhow::Result<Config> {
    let default = PathBuf::from("config/evidenced.toml");
    let path = path.or_else(|| default.exists().then_some(default));
    Ok(Config::load(path.as_deref())?)
}

/// Entry point: parse, run, map errors to exit codes.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let cfg = match load_config(cli.config.clone()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("evidenced: {e:#}");
            return ExitCode::from(2);
        }
    };
    crate::app::init_logging(&cfg, cli.log_json);
    // systemd's variables leave the environment before any thread exists (and so before any
    // child process could inherit them).
    let systemd = (crate::app::Notifier::take_from_env(), crate::app::watchdog_from_env());
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("evidenced: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let result = rt.block_on(dispatch(cli.command, cfg, systemd));
    rt.shutdown_timeout(Duration::from_secs(2));
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("evidenced: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn dispatch(cmd: Command, cfg: Config, systemd: (crate::app::Notifier, Option<Duration>)) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Run => crate::app::run(cfg, systemd.0, systemd.1).await.map(|_| ExitCode::SUCCESS),
        Command::Ingest { paths, quiet } => ingest(cfg, paths, quiet).await,
        Command::Token { action } => token(cfg, action).await,
    }
}

async fn ingest(cfg: Config, paths: Vec<PathBuf>, quiet: bool) -> anyhow::Result<ExitCode> {
    let catalog = crate::app::open_catalog(&cfg).await?;
    let store = crate::app::open_store(&cfg).await?;
    let metrics = std::sync::Arc::new(crate::metrics::Metrics::new());
    // Backfill uploads under their own key prefix so the daemon's start-up sweep of its node's
    // multipart uploads never aborts a backfill running beside it.
    let node = format!("{}.backfill", cfg.node.id);
    let ing = crate::app::ingestor(&cfg, catalog, store, metrics, node);
    let show = !quiet && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let sum = crate::ingest::backfill::run(ing, &paths, show).await;
    println!(
        "archived {}, already archived (duplicates) {}, skipped {}, failed {}",
        sum.archived,
        sum.duplicates,
        sum.skipped,
        sum.failed.len()
    );
    for (p, why) in &sum.failed {
        println!("failed: {p}: {why}");
    }
    Ok(if sum.failed.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

async fn token(cfg: Config, action: TokenCommand) -> anyhow::Result<ExitCode> {
    let catalog = crate::app::open_catalog(&cfg).await?;
    match action {
        TokenCommand::Create { name, role, unit, officer, expires } => {
            if !crate::api::auth::ROLES.contains(&role.as_str()) {
                anyhow::bail!("--role {role:?}: expected one of {}", crate::api::auth::ROLES.join(", "));
            }
            if name.is_empty() || name.len() > 128 || name.chars().any(|c| c.is_control()) {
                anyhow::bail!("--name: must be 1 to 128 printable characters");
            }
            let unit = unit.trim_matches('/').to_string();
            let now = crate::catalog::now_micros();
            let expires_at = match expires {
                Some(e) => Some(now + humantime::parse_duration(&e).with_context(|| format!("--expires {e:?}"))?.as_micros() as i64),
                None => None,
            };
            let officer = (role == "officer").then(|| officer.unwrap_or_else(|| name.clone()));
            let p = crate::catalog::Principal { name, role, unit, officer, created_at: now, expires_at, revoked_at: None };
            let token = crate::api::auth::new_token();
            catalog.create_principal(&p, &crate::api::auth::token_hash(&token)).await?;
            eprintln!("created principal {} ({}); the token is shown once:", p.name, p.role);
            println!("{token}");
        }
        TokenCommand::List => {
            let now = crate::catalog::now_micros();
            for p in catalog.principals().await? {
                let state = if p.revoked_at.is_some() {
                    "revoked"
                } else if p.expires_at.is_some_and(|t| t <= now) {
                    "expired"
                } else {
                    "active"
                };
                let unit = if p.unit.is_empty() { "/" } else { &p.unit };
                println!("{}\t{}\t{}\t{}\t{}", p.name, p.role, unit, p.officer.as_deref().unwrap_or("-"), state);
            }
        }
        TokenCommand::Revoke { name } => {
            catalog.revoke_principal(&name).await?;
            eprintln!("revoked {name}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
