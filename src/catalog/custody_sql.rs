//! The shared SQL of [`super::custody::CustodyRecords`] for both backends, expanded per backend
//! like `sql.rs`'s `impl_catalog!` (whose `write_tx` and `append_in` it uses, so every custody
//! event appended here is chained under the same lock as all the others).

/// Expands `CustodyRecords` for backend type `$ty` over database `$db`.
macro_rules! impl_custody_records {
    ($ty:ty, $db:ty) => {
        #[async_trait::async_trait]
        impl $crate::catalog::custody::CustodyRecords for $ty {
            async fn register_key(&self, k: &$crate::catalog::custody::NodeKey) -> $crate::catalog::Result<()> {
                sqlx::query(
                    "INSERT INTO node_keys (key_id, node, public_pem, created_at) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (key_id) DO NOTHING",
                )
                .bind(&k.key_id)
                .bind(&k.node)
                .bind(&k.public_pem)
                .bind(k.created_at)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn node_keys(&self) -> $crate::catalog::Result<Vec<$crate::catalog::custody::NodeKey>> {
                Ok(sqlx::query_as("SELECT * FROM node_keys ORDER BY created_at, key_id").fetch_all(&self.pool).await?)
            }

            async fn chain_head(&self) -> $crate::catalog::Result<Option<(i64, String)>> {
                Ok(sqlx::query_as("SELECT seq, hash FROM custody_events ORDER BY seq DESC LIMIT 1").fetch_optional(&self.pool).await?)
            }

            async fn record_checkpoint(&self, c: &$crate::catalog::custody::Checkpoint, actor: &str) -> $crate::catalog::Result<i64> {
                let mut tx = self.write_tx().await?;
                Self::insert_checkpoint_in(&mut tx, c).await?;
                let d = serde_json::json!({
                    "checkpoint": c.id, "node": c.node, "key_id": c.key_id, "seq": c.seq, "hash": c.hash,
                    "signature": c.signature, "object_key": c.object_key,
                });
                let seq = Self::append_in(&mut tx, $crate::custody::kind::CHECKPOINT, actor, None, d).await?;
                tx.commit().await?;
                Ok(seq)
            }

            async fn checkpoints(&self) -> $crate::catalog::Result<Vec<$crate::catalog::custody::Checkpoint>> {
                Ok(sqlx::query_as("SELECT * FROM checkpoints ORDER BY seq, at, id").fetch_all(&self.pool).await?)
            }

            async fn latest_checkpoint(&self) -> $crate::catalog::Result<Option<$crate::catalog::custody::Checkpoint>> {
                Ok(sqlx::query_as("SELECT * FROM checkpoints ORDER BY seq DESC, at DESC, id DESC LIMIT 1").fetch_optional(&self.pool).await?)
            }

            async fn record_timestamp(&self, t: &$crate::catalog::custody::Timestamp, actor: &str) -> $crate::catalog::Result<bool> {
                let mut tx = self.write_tx().await?;
                let n = sqlx::query(
                    "INSERT INTO timestamps (id, subject, subject_id, sha256, token_key, token_sha256, gen_time, serial, tsa, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (subject, subject_id) DO NOTHING",
                )
                .bind(&t.id)
                .bind(&t.subject)
                .bind(&t.subject_id)
                .bind(&t.sha256)
                .bind(&t.token_key)
                .bind(&t.token_sha256)
                .bind(t.gen_time)
                .bind(&t.serial)
                .bind(&t.tsa)
                .bind(t.created_at)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if n == 0 {
                    return Ok(false);
                }
                let is_recording = t.subject == $crate::catalog::custody::subject::RECORDING;
                if is_recording {
                    sqlx::query("UPDATE recordings SET timestamped = TRUE WHERE id = $1").bind(&t.subject_id).execute(&mut *tx).await?;
                }
                let d = serde_json::json!({
                    "subject": t.subject, "subject_id": t.subject_id, "sha256": t.sha256, "token_key": t.token_key,
                    "token_sha256": t.token_sha256, "gen_time": $crate::custody::format_at(t.gen_time), "serial": t.serial, "tsa": t.tsa,
                });
                let rid = is_recording.then_some(t.subject_id.as_str());
                Self::append_in(&mut tx, $crate::custody::kind::TIMESTAMPED, actor, rid, d).await?;
                tx.commit().await?;
                Ok(true)
            }

            async fn timestamps(&self, subject_id: Option<&str>) -> $crate::catalog::Result<Vec<$crate::catalog::custody::Timestamp>> {
                Ok(match subject_id {
                    Some(s) => {
                        sqlx::query_as("SELECT * FROM timestamps WHERE subject_id = $1 ORDER BY created_at, id")
                            .bind(s)
                            .fetch_all(&self.pool)
                            .await?
                    }
                    None => sqlx::query_as("SELECT * FROM timestamps ORDER BY created_at, id").fetch_all(&self.pool).await?,
                })
            }

            async fn fixity_population(&self) -> $crate::catalog::Result<i64> {
                let (n,): (i64,) =
                    sqlx::query_as("SELECT COUNT(*) FROM recordings WHERE state <> 'destroyed'").fetch_one(&self.pool).await?;
                Ok(n)
            }

            async fn fixity_due(&self, limit: i64) -> $crate::catalog::Result<Vec<String>> {
                let rows: Vec<(String,)> = sqlx::query_as(
                    "SELECT id FROM recordings WHERE state <> 'destroyed' ORDER BY fixity_checked_at, id LIMIT $1",
                )
                .bind(limit)
                .fetch_all(&self.pool)
                .await?;
                Ok(rows.into_iter().map(|(id,)| id).collect())
            }

            async fn record_fixity(
                &self,
                recording_id: &str,
                ok: bool,
                details: serde_json::Value,
                actor: &str,
            ) -> $crate::catalog::Result<()> {
                let mut tx = self.write_tx().await?;
                let n = sqlx::query("UPDATE recordings SET fixity_checked_at = $2 WHERE id = $1")
                    .bind(recording_id)
                    .bind($crate::catalog::now_micros())
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if n == 0 {
                    return Err($crate::catalog::CatalogError::NotFound(format!("recording {recording_id}")));
                }
                let mut d = details;
                d["ok"] = ok.into();
                Self::append_in(&mut tx, $crate::custody::kind::FIXITY_CHECKED, actor, Some(recording_id), d).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn clips_of(&self, recording_id: &str) -> $crate::catalog::Result<Vec<$crate::catalog::Clip>> {
                let rows: Vec<$crate::catalog::sql::ClipRow> =
                    sqlx::query_as("SELECT * FROM clips WHERE recording_id = $1 ORDER BY created_at, id")
                        .bind(recording_id)
                        .fetch_all(&self.pool)
                        .await?;
                Ok(rows.into_iter().map(Into::into).collect())
            }
        }
    };
}

pub(super) use impl_custody_records;
