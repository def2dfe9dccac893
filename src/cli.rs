//! The command line (clap): `run`, `ingest`, `verify`, `export`, `retention plan`, `report`, `token create|list|revoke`,
//! `reconcile`, `backup`, `rebuild`. `--config` is global and
//! defaults to `$EVIDENCED_CONFIG`, then `config/evidenced.toml` (or the embedded default when
//! that file does not exist). Errors print one clear line and exit non-zero, never a panic.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

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
    /// Re-check the custody chain, checkpoint signatures, time-stamp tokens and every stored
    /// object's bytes. Exit 0: all holds; 1: discrepancies (one line each); 2: could not run.
    Verify {
        /// Only this recording's objects and tokens (the chain and checkpoints are always checked).
        #[arg(long)]
        recording: Option<String>,
        /// Print the whole report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write a BagIt (RFC 8493) evidence package of a case to a new directory.
    Export {
        /// The case id.
        #[arg(long)]
        case: String,
        /// The directory to create (built as DIR.partial, renamed when complete).
        #[arg(long)]
        out: PathBuf,
    },
    /// Retention: what would enter the destruction queue now, and why.
    Retention {
        /// What to do.
        #[command(subcommand)]
        action: RetentionCommand,
    },
    /// Annual statistics per unit and category: recordings archived in the year (count, hours,
    /// bytes) and the year's accesses, clips, exports, holds and destructions. Years are UTC.
    Report {
        /// The calendar year, e.g. 2025.
        #[arg(long, value_name = "YYYY", value_parser = crate::catalog::report::parse_year)]
        year: i32,
        /// Output: CSV with a header and a TOTAL line, or JSON.
        #[arg(long, value_enum, default_value_t = ReportFormat::Csv)]
        format: ReportFormat,
    },
    /// Compare the object store with the catalog: objects no row references (orphans) and rows
    /// whose objects are missing. Exit 0: nothing missing (orphans warn); 1: missing; 2: could not run.
    Reconcile {
        /// Print the whole report as JSON.
        #[arg(long)]
        json: bool,
        /// Delete orphans that are safe to delete and older than 1 hour (never anything referenced).
        #[arg(long)]
        clean: bool,
    },
    /// Consistent copy of a SQLite catalog (VACUUM INTO) and the node key into a new directory;
    /// for PostgreSQL, prints the pg_dump command to use (exit 2).
    Backup {
        /// The directory to create (refused when it exists).
        #[arg(long)]
        out: PathBuf,
    },
    /// Restore an empty catalog from the object store alone: the custody log copies, signed
    /// checkpoints and keys under `custody/`, `checkpoints/` and `keys/`. Exit 0: restored; 1:
    /// restored, with discrepancies reported; 2: could not run (for example, the catalog is not empty).
    Rebuild {
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Manage API principals and their bearer tokens.
    Token {
        /// What to do with tokens.
        #[command(subcommand)]
        action: TokenCommand,
    },
}

/// `retention` subcommands.
#[derive(Debug, Subcommand)]
pub enum RetentionCommand {
    /// List the recordings whose retention has ended and that nothing holds (a dry run of the
    /// retention worker's sweep): id, category, rule, retention end.
    Plan {
        /// Print JSON instead of tab-separated lines.
        #[arg(long)]
        json: bool,
    },
}

/// Output formats of `report`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    /// RFC 4180 CSV.
    Csv,
    /// `{"year", "generated_at", "rows", "total"}`.
    Json,
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
        Command::Verify { recording, json } => verify(cfg, recording, json).await,
        Command::Export { case, out } => export(cfg, case, out).await,
        Command::Retention { action: RetentionCommand::Plan { json } } => retention_plan(cfg, json).await,
        Command::Report { year, format } => report(cfg, year, format).await,
        Command::Token { action } => token(cfg, action).await,
        Command::Reconcile { json, clean } => crate::ops::reconcile_cmd(&cfg, json, clean).await,
        Command::Backup { out } => crate::ops::backup_cmd(&cfg, &out).await,
        Command::Rebuild { json } => crate::ops::rebuild::rebuild_cmd(&cfg, json).await,
    }
}

async fn report(cfg: Config, year: i32, format: ReportFormat) -> anyhow::Result<ExitCode> {
    let catalog = crate::app::open_catalog(&cfg).await?;
    let r = crate::catalog::AnnualReport::build(&*catalog, year).await?;
    match format {
        ReportFormat::Csv => print!("{}", r.to_csv()),
        ReportFormat::Json => println!("{}", serde_json::to_string_pretty(&r)?),
    }
    Ok(ExitCode::SUCCESS)
}

async fn retention_plan(cfg: Config, json: bool) -> anyhow::Result<ExitCode> {
    let catalog = crate::app::open_catalog(&cfg).await?;
    let policy = crate::retention::Policy::from_config(&cfg.retention);
    let items = policy.plan(&*catalog, usize::MAX).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&items)?);
    } else {
        for i in &items {
            println!("{}\t{}\t{}\tretention ended {}", i.recording_id, i.category, i.rule, i.retention_until);
        }
        eprintln!(
            "{} recording(s) would be queued for destruction (grace {}, {} approval(s))",
            items.len(),
            humantime::format_duration(policy.grace),
            policy.approvals
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn verify(cfg: Config, recording: Option<String>, json: bool) -> anyhow::Result<ExitCode> {
    let catalog = crate::app::open_catalog(&cfg).await?;
    let store = crate::app::open_store(&cfg).await?;
    // The local key is trusted even if the catalog and the store lost theirs (never created here).
    let key_file = cfg.key_file();
    let local_key = match key_file.exists() {
        true => Some(crate::custody::keys::NodeSigner::load_or_create(&key_file, &cfg.node.id)?.node_key()),
        false => None,
    };
    let v = crate::custody::verify::Verifier {
        catalog,
        store,
        tsa_ca: cfg.tsa.as_ref().map(|t| t.ca_pem.clone()),
        local_key,
        recording,
        progress: !json && std::io::IsTerminal::is_terminal(&std::io::stderr()),
    };
    let report = v.run().await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for d in &report.discrepancies {
            println!("{d}");
        }
        for w in &report.warnings {
            eprintln!("warning: {w}");
        }
        let c = &report.checked;
        eprintln!(
            "checked {} custody entries, {} checkpoints, {} time-stamp tokens, {} objects ({:.2} GiB): {}",
            c.entries,
            c.checkpoints,
            c.tokens,
            c.objects,
            c.bytes as f64 / (1u64 << 30) as f64,
            if report.ok { "all good".to_string() } else { format!("{} discrepancies", report.discrepancies.len()) }
        );
    }
    Ok(if report.ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

async fn export(cfg: Config, case: String, out: PathBuf) -> anyhow::Result<ExitCode> {
    let catalog = crate::app::open_catalog(&cfg).await?;
    let store = crate::app::open_store(&cfg).await?;
    let checkpointer = crate::app::checkpointer(&cfg, catalog.clone(), store.clone())?;
    checkpointer.publish_key().await?;
    let exporter = crate::custody::export::Exporter {
        catalog,
        store,
        checkpointer,
        tsa_ca: cfg.tsa.as_ref().map(|t| t.ca_pem.clone()),
        actor: "cli".into(),
    };
    let s = exporter.export(&case, &out).await?;
    println!(
        "exported case {case}: {} recordings, {} payload files, {} bytes, custody chain to entry {} -> {}",
        s.recordings,
        s.files,
        s.bytes,
        s.checkpoint_seq,
        out.display()
    );
    Ok(ExitCode::SUCCESS)
}

async fn ingest(cfg: Config, paths: Vec<PathBuf>, quiet: bool) -> anyhow::Result<ExitCode> {
    let catalog = crate::app::open_catalog(&cfg).await?;
    let store = crate::app::open_store(&cfg).await?;
    let metrics = std::sync::Arc::new(crate::metrics::Metrics::new());
    // Backfill uploads under their own key prefix so the daemon's start-up sweep of its node's
    // multipart uploads never aborts a backfill running beside it.
    let node = format!("{}.backfill", cfg.node.id);
    let ing = crate::app::ingestor(&cfg, catalog.clone(), store.clone(), metrics, node);
    let show = !quiet && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let sum = crate::ingest::backfill::run(ing, &paths, show, cfg.ingest.concurrency).await;
    // Sign what this run appended, so `verify` does not have to wait for the daemon to do it.
    let signed = async {
        let cp = crate::app::checkpointer(&cfg, catalog, store)?;
        cp.publish_key().await?;
        cp.checkpoint("ingest", false).await
    };
    if let Err(e) = signed.await {
        tracing::warn!(error = %format!("{e:#}"), "cannot sign a checkpoint after the import; the daemon will");
    }
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
            let p = crate::api::auth::new_principal(&name, &role, &unit, officer.as_deref(), expires.as_deref())
                .map_err(|e| anyhow::anyhow!("--{e}"))?;
            let token = crate::api::auth::new_token();
            catalog.create_principal(&p, &crate::api::auth::token_hash(&token), "cli").await?;
            eprintln!("created principal {} ({}); the token is shown once:", p.name, p.role);
            println!("{token}");
        }
        TokenCommand::List => {
            let now = crate::catalog::now_micros();
            for p in catalog.principals().await? {
                let state = crate::api::auth::principal_state(&p, now);
                let unit = if p.unit.is_empty() { "/" } else { &p.unit };
                println!("{}\t{}\t{}\t{}\t{}", p.name, p.role, unit, p.officer.as_deref().unwrap_or("-"), state);
            }
        }
        TokenCommand::Revoke { name } => {
            catalog.revoke_principal(&name, "cli").await?;
            eprintln!("revoked {name}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
