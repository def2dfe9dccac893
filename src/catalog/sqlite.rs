//! The SQLite catalog (the station default): one file, WAL, `synchronous = FULL`, and
//! `BEGIN IMMEDIATE` for every read-then-write transaction, since the daemon and a CLI command
//! may write at once.

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, Transaction};

use super::Result;

/// Catalog on SQLite.
pub struct SqliteCatalog {
    /// The connection pool.
    pool: SqlitePool,
}

impl SqliteCatalog {
    const BACKEND: &'static str = "sqlite";
    /// SQLite locks the whole database for writers, so claims need no row-locking clause.
    const SKIP_LOCKED: &'static str = "";
    /// SQLite runs in this process: its clock is this host's, nothing independent to measure.
    const CATALOG_CLOCK: Option<&'static str> = None;

    /// Opens the database file (creating it and its directory) and runs migrations.
    pub async fn open(url: &str, max_connections: u32) -> Result<Self> {
        let opts = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(30));
        let path = opts.get_filename().to_path_buf();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(sqlx::Error::Io)?;
        }
        let pool = SqlitePoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(opts)
            .await?;
        sqlx::migrate!("migrations/sqlite").run(&pool).await?;
        Ok(Self { pool })
    }

    /// A write transaction holding the database write lock (and so the custody chain head).
    async fn write_tx(&self) -> Result<Transaction<'static, Sqlite>> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }

    /// A transaction for claiming a job.
    async fn claim_tx(&self) -> Result<Transaction<'static, Sqlite>> {
        self.write_tx().await
    }
}

super::sql::impl_catalog!(SqliteCatalog, Sqlite);
super::custody_sql::impl_custody_records!(SqliteCatalog, Sqlite);
super::updates_sql::impl_recording_updates!(SqliteCatalog, Sqlite);
super::retention_sql::impl_retention_records!(SqliteCatalog, Sqlite);
super::cases_sql::impl_case_records!(SqliteCatalog, Sqlite);
super::report_sql::impl_report_records!(SqliteCatalog, Sqlite);
super::access_sql::impl_access_records!(SqliteCatalog, Sqlite);
super::nodes_sql::impl_node_records!(SqliteCatalog, Sqlite);
super::rebuild_sql::impl_rebuild_records!(SqliteCatalog, Sqlite);
