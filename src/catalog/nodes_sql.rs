//! The shared SQL of [`super::nodes::NodeRecords`] for both backends, expanded per backend like
//! `sql.rs`'s `impl_catalog!`.

/// Expands `NodeRecords` for backend type `$ty`.
macro_rules! impl_node_records {
    ($ty:ty, $db:ty) => {
        #[async_trait::async_trait]
        impl $crate::catalog::nodes::NodeRecords for $ty {
            async fn register_node(&self, n: &$crate::catalog::nodes::NodeInfo, replace: Option<&str>) -> $crate::catalog::Result<()> {
                let now = $crate::catalog::now_micros();
                let mut tx = self.write_tx().await?;
                let old: Option<(String, String, i64, i64, Option<i64>)> =
                    sqlx::query_as("SELECT instance, hostname, heartbeat_at, heartbeat_every_ms, stopped_at FROM nodes WHERE id = $1")
                        .bind(&n.id)
                        .fetch_optional(&mut *tx)
                        .await?;
                if let Some((instance, host, beat, every, stopped)) = old {
                    let state = $crate::catalog::nodes::node_state(beat, every * 1000, stopped.is_some(), now);
                    if instance != n.instance && state == "alive" && replace != Some(instance.as_str()) {
                        return Err($crate::catalog::CatalogError::Refused(format!(
                            "node id {:?} is in use by a live process on host {host} (last heartbeat {}); give each node its own node.id",
                            n.id,
                            $crate::custody::format_at(beat)
                        )));
                    }
                }
                sqlx::query(
                    "INSERT INTO nodes (id, instance, version, hostname, api_listen, started_at, heartbeat_at, heartbeat_every_ms, stopped_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $6, $7, NULL) \
                     ON CONFLICT (id) DO UPDATE SET instance = $2, version = $3, hostname = $4, api_listen = $5, started_at = $6, \
                     heartbeat_at = $6, heartbeat_every_ms = $7, stopped_at = NULL",
                )
                .bind(&n.id)
                .bind(&n.instance)
                .bind(&n.version)
                .bind(&n.hostname)
                .bind(&n.api_listen)
                .bind(now)
                .bind(n.heartbeat_every / 1000)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn node_heartbeat(&self, id: &str, instance: &str, clock_skew: Option<i64>) -> $crate::catalog::Result<bool> {
                let r = sqlx::query("UPDATE nodes SET heartbeat_at = $3, clock_skew_ms = $4 WHERE id = $1 AND instance = $2")
                    .bind(id)
                    .bind(instance)
                    .bind($crate::catalog::now_micros())
                    .bind(clock_skew.map(|us| us / 1000))
                    .execute(&self.pool)
                    .await?;
                Ok(r.rows_affected() > 0)
            }

            async fn catalog_clock(&self) -> $crate::catalog::Result<Option<i64>> {
                let Some(sql) = Self::CATALOG_CLOCK else { return Ok(None) };
                let (micros,): (i64,) = sqlx::query_as(sql).fetch_one(&self.pool).await?;
                Ok(Some(micros))
            }

            async fn node_stopped(&self, id: &str, instance: &str) -> $crate::catalog::Result<()> {
                sqlx::query("UPDATE nodes SET stopped_at = $3 WHERE id = $1 AND instance = $2")
                    .bind(id)
                    .bind(instance)
                    .bind($crate::catalog::now_micros())
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn nodes(&self) -> $crate::catalog::Result<Vec<$crate::catalog::nodes::NodeStatus>> {
                type Row = (String, String, String, String, String, i64, i64, i64, Option<i64>, i64, Option<i64>);
                let rows: Vec<Row> = sqlx::query_as(
                    "SELECT n.id, n.instance, n.version, n.hostname, n.api_listen, n.started_at, n.heartbeat_at, n.heartbeat_every_ms, \
                     n.stopped_at, (SELECT COUNT(*) FROM jobs j WHERE j.lease_owner = n.id AND j.state = 'running'), n.clock_skew_ms \
                     FROM nodes n ORDER BY n.id",
                )
                .fetch_all(&self.pool)
                .await?;
                let now = $crate::catalog::now_micros();
                let at = $crate::custody::format_at;
                Ok(rows
                    .into_iter()
                    .map(|(id, instance, version, hostname, api_listen, started, beat, every, stopped, leases, skew_ms)| {
                        $crate::catalog::nodes::NodeStatus {
                            state: $crate::catalog::nodes::node_state(beat, every * 1000, stopped.is_some(), now).to_string(),
                            id,
                            instance,
                            version,
                            hostname,
                            api_listen,
                            started_at: at(started),
                            heartbeat_at: at(beat),
                            stopped_at: stopped.map(at),
                            leases,
                            clock_skew_seconds: skew_ms.map(|ms| ms as f64 / 1000.0),
                        }
                    })
                    .collect())
            }
        }
    };
}

pub(super) use impl_node_records;
