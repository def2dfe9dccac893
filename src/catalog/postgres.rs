//! The PostgreSQL catalog (central deployments): many nodes share it. Custody appends serialize
//! on a transaction-scoped advisory lock so the chain stays one chain; job claims use
//! `FOR UPDATE SKIP LOCKED` so workers never block each other.

use std::time::Duration;

use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{Postgres, Transaction};

use super::Result;

/// Advisory lock key of the custody chain head ("evidence" in ASCII, as an i64).
const CHAIN_LOCK: i64 = 0x6576_6964_656e_6365;

/// Catalog on PostgreSQL.
pub struct PgCatalog {
    /// The connection pool.
    pool: PgPool,
}

impl PgCatalog {
    const BACKEND: &'static str = "postgres";
    const SKIP_LOCKED: &'static str = " FOR UPDATE SKIP LOCKED";
    /// The server's clock, which every node's time is measured against (`crate::clock`).
    const CATALOG_CLOCK: Option<&'static str> = Some("SELECT (EXTRACT(EPOCH FROM clock_timestamp()) * 1000000)::BIGINT");

    /// Connects and runs migrations (serialized by sqlx's own advisory lock).
    pub async fn open(url: &str, max_connections: u32) -> Result<Self> {
        let pool =
            PgPoolOptions::new().max_connections(max_connections.max(2)).acquire_timeout(Duration::from_secs(10)).connect(url).await?;
        sqlx::migrate!("migrations/postgres").run(&pool).await?;
        Ok(Self { pool })
    }

    /// A transaction holding the custody chain lock, released at commit or rollback.
    async fn write_tx(&self) -> Result<Transaction<'static, Postgres>> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(CHAIN_LOCK).execute(&mut *tx).await?;
        Ok(tx)
    }

    /// A plain transaction; the claim query locks its row with SKIP LOCKED.
    async fn claim_tx(&self) -> Result<Transaction<'static, Postgres>> {
        Ok(self.pool.begin().await?)
    }
}

super::sql::impl_catalog!(PgCatalog, Postgres);
super::custody_sql::impl_custody_records!(PgCatalog, Postgres);
super::updates_sql::impl_recording_updates!(PgCatalog, Postgres);
super::retention_sql::impl_retention_records!(PgCatalog, Postgres);
super::cases_sql::impl_case_records!(PgCatalog, Postgres);
super::report_sql::impl_report_records!(PgCatalog, Postgres);
super::access_sql::impl_access_records!(PgCatalog, Postgres);
super::nodes_sql::impl_node_records!(PgCatalog, Postgres);
super::rebuild_sql::impl_rebuild_records!(PgCatalog, Postgres);
