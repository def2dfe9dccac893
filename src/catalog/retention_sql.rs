//! The shared SQL of [`super::retention::RetentionRecords`] for both backends, expanded per
//! backend like `sql.rs`'s `impl_catalog!`: each queue change and its custody event commit in one
//! transaction that holds the chain lock.

/// A `destructions` row.
#[derive(sqlx::FromRow)]
pub(super) struct DestructionRow {
    pub id: String,
    pub recording_id: String,
    pub state: String,
    pub rule: String,
    pub retention_until: i64,
    pub queued_at: i64,
    pub eligible_at: i64,
    pub approvals: String,
    pub finished_at: Option<i64>,
    pub objects: String,
    pub versions: String,
    pub batch_id: Option<String>,
}

/// A finished destruction joined with its recording's tombstone facts.
#[derive(sqlx::FromRow)]
pub(super) struct DestroyedRow {
    #[sqlx(flatten)]
    pub d: DestructionRow,
    pub sha256: String,
    pub size: i64,
    pub original_name: String,
    pub unit: Option<String>,
    pub category: String,
    pub started_at: Option<i64>,
    pub archived_at: i64,
    pub destroyed_by: Option<String>,
}

impl From<DestroyedRow> for super::retention::DestroyedRecording {
    fn from(r: DestroyedRow) -> Self {
        use crate::custody::format_at;
        super::retention::DestroyedRecording {
            destruction: r.d.into(),
            sha256: r.sha256,
            size: r.size,
            original_name: r.original_name,
            unit: r.unit,
            category: r.category,
            started_at: r.started_at.map(format_at),
            archived_at: format_at(r.archived_at),
            destroyed_by: r.destroyed_by,
        }
    }
}

impl From<DestructionRow> for super::retention::Destruction {
    fn from(r: DestructionRow) -> Self {
        use crate::custody::format_at;
        super::retention::Destruction {
            id: r.id,
            recording_id: r.recording_id,
            state: r.state,
            rule: r.rule,
            retention_until: format_at(r.retention_until),
            queued_at: format_at(r.queued_at),
            eligible_at: format_at(r.eligible_at),
            approvals: serde_json::from_str(&r.approvals).unwrap_or_default(),
            finished_at: r.finished_at.map(format_at),
            objects: serde_json::from_str(&r.objects).unwrap_or_default(),
            versions: serde_json::from_str(&r.versions).unwrap_or_default(),
            batch: r.batch_id,
        }
    }
}

/// Expands `RetentionRecords` for backend type `$ty` over database `$db`.
macro_rules! impl_retention_records {
    ($ty:ty, $db:ty) => {
        impl $ty {
            async fn destruction_in(
                tx: &mut sqlx::Transaction<'static, $db>,
                id: &str,
            ) -> $crate::catalog::Result<$crate::catalog::retention_sql::DestructionRow> {
                sqlx::query_as("SELECT * FROM destructions WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&mut **tx)
                    .await?
                    .ok_or_else(|| $crate::catalog::CatalogError::NotFound(format!("destruction {id}")))
            }
        }

        #[async_trait::async_trait]
        impl $crate::catalog::retention::RetentionRecords for $ty {
            async fn expired(
                &self,
                category: &str,
                case_driven: bool,
                started_before: i64,
                after: &str,
                limit: i64,
            ) -> $crate::catalog::Result<Vec<$crate::catalog::retention::Expired>> {
                // A case-driven category's clock starts at the later of the usual start and the
                // last closing of the recording's (all closed) cases.
                let clock = if case_driven {
                    format!(
                        "(SELECT CASE WHEN MAX(c.closed_at) IS NOT NULL AND MAX(c.closed_at) > {from} THEN MAX(c.closed_at) ELSE {from} END \
                         FROM case_links l JOIN cases c ON c.id = l.case_id WHERE l.recording_id = r.id)",
                        from = $crate::catalog::retention::RETENTION_FROM
                    )
                } else {
                    $crate::catalog::retention::RETENTION_FROM.to_string()
                };
                let sql = format!(
                    "SELECT id, {clock} AS retention_from FROM recordings r \
                     WHERE state = 'archived' AND category = $1 AND legal_hold = FALSE AND archived_at < $2 AND {clock} < $2 AND id > $3 \
                     AND NOT EXISTS (SELECT 1 FROM case_links l JOIN cases c ON c.id = l.case_id \
                                     WHERE l.recording_id = r.id AND c.status = 'open') \
                     ORDER BY id LIMIT $4"
                );
                let rows: Vec<(String, i64)> =
                    sqlx::query_as(&sql).bind(category).bind(started_before).bind(after).bind(limit).fetch_all(&self.pool).await?;
                Ok(rows.into_iter().map(|(id, retention_from)| $crate::catalog::retention::Expired { id, retention_from }).collect())
            }

            async fn queue_destruction(
                &self,
                recording_id: &str,
                rule: &str,
                retention_until: i64,
                grace_micros: i64,
                actor: &str,
            ) -> $crate::catalog::Result<Option<$crate::catalog::retention::Destruction>> {
                let mut tx = self.write_tx().await?;
                let n = sqlx::query("UPDATE recordings SET state = 'pending_destruction' WHERE id = $1 AND state = 'archived' AND legal_hold = FALSE")
                    .bind(recording_id)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if n == 0 {
                    return Ok(None);
                }
                let id = uuid::Uuid::now_v7().to_string();
                let now = $crate::catalog::now_micros();
                sqlx::query(
                    "INSERT INTO destructions (id, recording_id, state, rule, retention_until, queued_at, eligible_at) \
                     VALUES ($1, $2, 'pending', $3, $4, $5, $6)",
                )
                .bind(&id)
                .bind(recording_id)
                .bind(rule)
                .bind(retention_until)
                .bind(now)
                .bind(now + grace_micros)
                .execute(&mut *tx)
                .await?;
                let d = serde_json::json!({
                    "destruction": id, "rule": rule, "retention_until": $crate::custody::format_at(retention_until),
                    "eligible_at": $crate::custody::format_at(now + grace_micros),
                });
                Self::append_in(&mut tx, $crate::custody::kind::QUEUED_FOR_DESTRUCTION, actor, Some(recording_id), d).await?;
                let row = Self::destruction_in(&mut tx, &id).await?;
                tx.commit().await?;
                Ok(Some(row.into()))
            }

            async fn destructions(&self, state: Option<&str>, limit: i64) -> $crate::catalog::Result<Vec<$crate::catalog::retention::Destruction>> {
                let rows: Vec<$crate::catalog::retention_sql::DestructionRow> = match state {
                    Some(s) => {
                        sqlx::query_as("SELECT * FROM destructions WHERE state = $1 ORDER BY queued_at, id LIMIT $2")
                            .bind(s)
                            .bind(limit)
                            .fetch_all(&self.pool)
                            .await?
                    }
                    None => sqlx::query_as("SELECT * FROM destructions ORDER BY queued_at, id LIMIT $1").bind(limit).fetch_all(&self.pool).await?,
                };
                Ok(rows.into_iter().map(Into::into).collect())
            }

            async fn destruction(&self, id: &str) -> $crate::catalog::Result<$crate::catalog::retention::Destruction> {
                let row: Option<$crate::catalog::retention_sql::DestructionRow> =
                    sqlx::query_as("SELECT * FROM destructions WHERE id = $1").bind(id).fetch_optional(&self.pool).await?;
                row.map(Into::into).ok_or_else(|| $crate::catalog::CatalogError::NotFound(format!("destruction {id}")))
            }

            async fn approve_destruction(
                &self,
                id: &str,
                archivist: &str,
                reason: &str,
            ) -> $crate::catalog::Result<$crate::catalog::retention::Destruction> {
                let mut tx = self.write_tx().await?;
                let row = Self::destruction_in(&mut tx, id).await?;
                if row.state != "pending" {
                    return Err($crate::catalog::CatalogError::Refused(format!("destruction {id} is {}, not pending", row.state)));
                }
                let mut approvals: Vec<serde_json::Value> = serde_json::from_str(&row.approvals).unwrap_or_default();
                if approvals.iter().any(|a| a["archivist"] == archivist) {
                    return Err($crate::catalog::CatalogError::Refused(format!("{archivist} already approved destruction {id}; another archivist must")));
                }
                let now = $crate::catalog::now_micros();
                approvals.push(serde_json::json!({"archivist": archivist, "at": $crate::custody::format_at(now), "reason": reason}));
                sqlx::query("UPDATE destructions SET approvals = $2, approval_count = $3 WHERE id = $1")
                    .bind(id)
                    .bind(serde_json::Value::from(approvals.clone()).to_string())
                    .bind(approvals.len() as i64)
                    .execute(&mut *tx)
                    .await?;
                let d = serde_json::json!({"destruction": id, "reason": reason, "approvals": approvals.len()});
                Self::append_in(&mut tx, $crate::custody::kind::DESTRUCTION_APPROVED, archivist, Some(&row.recording_id), d).await?;
                let row = Self::destruction_in(&mut tx, id).await?;
                tx.commit().await?;
                Ok(row.into())
            }

            async fn cancel_destruction(&self, id: &str, reason: &str, actor: &str) -> $crate::catalog::Result<()> {
                let mut tx = self.write_tx().await?;
                let row = Self::destruction_in(&mut tx, id).await?;
                if row.state != "pending" {
                    return Ok(());
                }
                let now = $crate::catalog::now_micros();
                sqlx::query("UPDATE destructions SET state = 'cancelled', finished_at = $2 WHERE id = $1").bind(id).bind(now).execute(&mut *tx).await?;
                sqlx::query("UPDATE recordings SET state = 'archived' WHERE id = $1 AND state = 'pending_destruction'")
                    .bind(&row.recording_id)
                    .execute(&mut *tx)
                    .await?;
                let d = serde_json::json!({"destruction": id, "reason": reason});
                Self::append_in(&mut tx, $crate::custody::kind::DESTRUCTION_CANCELLED, actor, Some(&row.recording_id), d).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn due_destructions(&self, now: i64, approvals: i64) -> $crate::catalog::Result<Vec<$crate::catalog::retention::Destruction>> {
                let rows: Vec<$crate::catalog::retention_sql::DestructionRow> = sqlx::query_as(
                    "SELECT * FROM destructions WHERE state = 'pending' AND eligible_at <= $1 AND approval_count >= $2 ORDER BY eligible_at, id LIMIT 100",
                )
                .bind(now)
                .bind(approvals)
                .fetch_all(&self.pool)
                .await?;
                Ok(rows.into_iter().map(Into::into).collect())
            }

            async fn finish_destruction(
                &self,
                id: &str,
                objects: &[String],
                versions: &serde_json::Value,
                batch: &str,
                actor: &str,
            ) -> $crate::catalog::Result<()> {
                let mut tx = self.write_tx().await?;
                let row = Self::destruction_in(&mut tx, id).await?;
                if row.state != "pending" {
                    return Ok(());
                }
                let now = $crate::catalog::now_micros();
                sqlx::query("UPDATE destructions SET state = 'destroyed', finished_at = $2, objects = $3, batch_id = $4, versions = $5 WHERE id = $1")
                    .bind(id)
                    .bind(now)
                    .bind(serde_json::to_string(objects).unwrap_or_else(|_| "[]".into()))
                    .bind(batch)
                    .bind(versions.to_string())
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("UPDATE recordings SET state = 'destroyed', media_state = CASE WHEN media_state = 'ready' THEN 'failed' ELSE media_state END, \
                             media_error = 'destroyed', proxy_key = NULL, poster_key = NULL WHERE id = $1")
                    .bind(&row.recording_id)
                    .execute(&mut *tx)
                    .await?;
                let (sha, size): (String, i64) =
                    sqlx::query_as("SELECT sha256, size FROM recordings WHERE id = $1").bind(&row.recording_id).fetch_one(&mut *tx).await?;
                let d = serde_json::json!({
                    "destruction": id, "rule": row.rule, "retention_until": $crate::custody::format_at(row.retention_until),
                    "approvals": serde_json::from_str::<serde_json::Value>(&row.approvals).unwrap_or_default(),
                    "objects": objects, "versions": versions, "sha256": sha, "size": size, "batch": batch,
                });
                Self::append_in(&mut tx, $crate::custody::kind::DESTROYED, actor, Some(&row.recording_id), d).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn destruction_batches(&self, limit: i64) -> $crate::catalog::Result<Vec<$crate::catalog::retention::DestructionBatch>> {
                let rows: Vec<(String, i64, i64)> = sqlx::query_as(
                    "SELECT batch_id, MAX(finished_at), COUNT(*) FROM destructions \
                     WHERE state = 'destroyed' AND batch_id IS NOT NULL AND finished_at IS NOT NULL \
                     GROUP BY batch_id ORDER BY MAX(finished_at) DESC, batch_id DESC LIMIT $1",
                )
                .bind(limit)
                .fetch_all(&self.pool)
                .await?;
                Ok(rows
                    .into_iter()
                    .map(|(batch, at, count)| $crate::catalog::retention::DestructionBatch {
                        batch,
                        finished_at: $crate::custody::format_at(at),
                        count,
                    })
                    .collect())
            }

            async fn destruction_batch(&self, batch: &str) -> $crate::catalog::Result<Vec<$crate::catalog::retention::DestroyedRecording>> {
                let rows: Vec<$crate::catalog::retention_sql::DestroyedRow> = sqlx::query_as(
                    "SELECT d.*, r.sha256, r.size, r.original_name, r.unit, r.category, r.started_at, r.archived_at, \
                     (SELECT e.actor FROM custody_events e WHERE e.recording_id = d.recording_id AND e.kind = 'destroyed' \
                      ORDER BY e.seq DESC LIMIT 1) AS destroyed_by \
                     FROM destructions d JOIN recordings r ON r.id = d.recording_id \
                     WHERE d.batch_id = $1 AND d.state = 'destroyed' ORDER BY d.finished_at, d.id",
                )
                .bind(batch)
                .fetch_all(&self.pool)
                .await?;
                Ok(rows.into_iter().map(Into::into).collect())
            }
        }
    };
}

pub(super) use impl_retention_records;
