//! The shared SQL of [`super::cases::CaseRecords`] for both backends, expanded per backend like
//! `custody_sql.rs` (it uses `sql.rs`'s `write_tx` and `append_in`, so every case and link change
//! commits together with its custody event, chained under the same lock as all the others).

/// Expands `CaseRecords` for backend type `$ty` over database `$db`.
macro_rules! impl_case_records {
    ($ty:ty, $db:ty) => {
        impl $ty {
            /// Rewrites a recording's `case_ids` from its links (sorted here, not by the database's
            /// collation, so both backends store the same text); returns the new list.
            async fn sync_case_ids(tx: &mut sqlx::Transaction<'static, $db>, recording_id: &str) -> $crate::catalog::Result<Vec<String>> {
                let rows: Vec<(String,)> =
                    sqlx::query_as("SELECT case_id FROM case_links WHERE recording_id = $1").bind(recording_id).fetch_all(&mut **tx).await?;
                let mut cases: Vec<String> = rows.into_iter().map(|(c,)| c).collect();
                cases.sort();
                let text = serde_json::to_string(&cases).map_err(|e| $crate::catalog::CatalogError::Corrupt(e.to_string()))?;
                sqlx::query("UPDATE recordings SET case_ids = $2 WHERE id = $1").bind(recording_id).bind(text).execute(&mut **tx).await?;
                Ok(cases)
            }

            /// Fails with `NotFound` unless both the case and the recording exist.
            async fn check_link_ends(
                tx: &mut sqlx::Transaction<'static, $db>,
                case_id: &str,
                recording_id: &str,
            ) -> $crate::catalog::Result<()> {
                let case: Option<(String,)> = sqlx::query_as("SELECT id FROM cases WHERE id = $1").bind(case_id).fetch_optional(&mut **tx).await?;
                if case.is_none() {
                    return Err($crate::catalog::CatalogError::NotFound(format!("case {case_id}")));
                }
                let rec: Option<(String,)> =
                    sqlx::query_as("SELECT id FROM recordings WHERE id = $1").bind(recording_id).fetch_optional(&mut **tx).await?;
                if rec.is_none() {
                    return Err($crate::catalog::CatalogError::NotFound(format!("recording {recording_id}")));
                }
                Ok(())
            }
        }

        #[async_trait::async_trait]
        impl $crate::catalog::cases::CaseRecords for $ty {
            async fn create_case(&self, c: &$crate::catalog::cases::NewCase, actor: &str) -> $crate::catalog::Result<$crate::catalog::cases::Case> {
                let mut tx = self.write_tx().await?;
                let now = $crate::catalog::now_micros();
                sqlx::query(
                    "INSERT INTO cases (id, title, status, unit, created_at, created_by, updated_at) VALUES ($1, $2, 'open', $3, $4, $5, $4)",
                )
                .bind(&c.id)
                .bind(&c.title)
                .bind(&c.unit)
                .bind(now)
                .bind(actor)
                .execute(&mut *tx)
                .await
                .map_err(|e| match $crate::catalog::CatalogError::from(e) {
                    $crate::catalog::CatalogError::Conflict(_) => $crate::catalog::CatalogError::Conflict(format!("case {}", c.id)),
                    other => other,
                })?;
                let d = serde_json::json!({"case": c.id, "title": c.title, "unit": c.unit});
                Self::append_at(&mut tx, now, $crate::custody::kind::CASE_CREATED, actor, None, d).await?;
                tx.commit().await?;
                Ok($crate::catalog::cases::CaseRow {
                    id: c.id.clone(),
                    title: c.title.clone(),
                    status: $crate::catalog::cases::status::OPEN.into(),
                    unit: c.unit.clone(),
                    created_at: now,
                    created_by: actor.into(),
                    updated_at: now,
                    closed_at: None,
                    recordings: 0,
                }
                .into())
            }

            async fn update_case(
                &self,
                id: &str,
                u: &$crate::catalog::cases::CaseUpdate,
                actor: &str,
            ) -> $crate::catalog::Result<$crate::catalog::cases::Case> {
                let mut tx = self.write_tx().await?;
                let q = format!("{} WHERE c.id = $1", $crate::catalog::cases::SELECT_CASE);
                let mut row: $crate::catalog::cases::CaseRow = sqlx::query_as(&q)
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?
                    .ok_or_else(|| $crate::catalog::CatalogError::NotFound(format!("case {id}")))?;
                let mut changes = serde_json::Map::new();
                if let Some(t) = u.title.as_ref().filter(|t| **t != row.title) {
                    changes.insert("title".into(), serde_json::json!({"from": row.title, "to": t}));
                    row.title = t.clone();
                }
                if let Some(s) = u.status.as_ref().filter(|s| **s != row.status) {
                    changes.insert("status".into(), serde_json::json!({"from": row.status, "to": s}));
                    row.status = s.clone();
                }
                if changes.is_empty() {
                    tx.commit().await?;
                    return Ok(row.into());
                }
                let now = $crate::catalog::now_micros();
                row.updated_at = now;
                row.closed_at = if row.status == $crate::catalog::cases::status::CLOSED { row.closed_at.or(Some(now)) } else { None };
                sqlx::query("UPDATE cases SET title = $2, status = $3, closed_at = $4, updated_at = $5 WHERE id = $1")
                    .bind(id)
                    .bind(&row.title)
                    .bind(&row.status)
                    .bind(row.closed_at)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                let d = serde_json::json!({"case": id, "title": row.title, "status": row.status, "changes": changes});
                Self::append_at(&mut tx, now, $crate::custody::kind::CASE_UPDATED, actor, None, d).await?;
                tx.commit().await?;
                Ok(row.into())
            }

            async fn case(&self, id: &str) -> $crate::catalog::Result<$crate::catalog::cases::Case> {
                let q = format!("{} WHERE c.id = $1", $crate::catalog::cases::SELECT_CASE);
                let row: Option<$crate::catalog::cases::CaseRow> = sqlx::query_as(&q).bind(id).fetch_optional(&self.pool).await?;
                row.map(Into::into).ok_or_else(|| $crate::catalog::CatalogError::NotFound(format!("case {id}")))
            }

            async fn cases(
                &self,
                status: Option<&str>,
                limit: i64,
                after: Option<&str>,
            ) -> $crate::catalog::Result<Vec<$crate::catalog::cases::Case>> {
                let mut qb = sqlx::QueryBuilder::<$db>::new($crate::catalog::cases::SELECT_CASE);
                qb.push(" WHERE 1 = 1");
                if let Some(s) = status {
                    qb.push(" AND c.status = ").push_bind(s.to_string());
                }
                if let Some(a) = after {
                    qb.push(" AND c.id > ").push_bind(a.to_string());
                }
                qb.push(" ORDER BY c.id LIMIT ").push_bind(limit);
                let rows: Vec<$crate::catalog::cases::CaseRow> = qb.build_query_as().fetch_all(&self.pool).await?;
                Ok(rows.into_iter().map(Into::into).collect())
            }

            async fn link(&self, case_id: &str, recording_id: &str, actor: &str, reason: Option<&str>) -> $crate::catalog::Result<bool> {
                let mut tx = self.write_tx().await?;
                Self::check_link_ends(&mut tx, case_id, recording_id).await?;
                let now = $crate::catalog::now_micros();
                let n = sqlx::query(
                    "INSERT INTO case_links (case_id, recording_id, linked_at, linked_by) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (case_id, recording_id) DO NOTHING",
                )
                .bind(case_id)
                .bind(recording_id)
                .bind(now)
                .bind(actor)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if n == 0 {
                    return Ok(false);
                }
                let cases = Self::sync_case_ids(&mut tx, recording_id).await?;
                let d = serde_json::json!({"case": case_id, "reason": reason, "cases": cases});
                Self::append_at(&mut tx, now, $crate::custody::kind::LINKED, actor, Some(recording_id), d).await?;
                // Case footage is evidence unless an archivist has already chosen a category; later
                // unlinking never shortens it again.
                let upgraded = sqlx::query("UPDATE recordings SET category = 'evidence' WHERE id = $1 AND category = 'uncategorized'")
                    .bind(recording_id)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if upgraded > 0 {
                    let d = serde_json::json!({"old": "uncategorized", "new": "evidence", "reason": format!("linked to case {case_id}")});
                    Self::append_in(&mut tx, $crate::custody::kind::CATEGORISED, actor, Some(recording_id), d).await?;
                }
                tx.commit().await?;
                Ok(true)
            }

            async fn unlink(&self, case_id: &str, recording_id: &str, actor: &str, reason: Option<&str>) -> $crate::catalog::Result<bool> {
                let mut tx = self.write_tx().await?;
                Self::check_link_ends(&mut tx, case_id, recording_id).await?;
                let n = sqlx::query("DELETE FROM case_links WHERE case_id = $1 AND recording_id = $2")
                    .bind(case_id)
                    .bind(recording_id)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if n == 0 {
                    return Ok(false);
                }
                let cases = Self::sync_case_ids(&mut tx, recording_id).await?;
                let d = serde_json::json!({"case": case_id, "reason": reason, "cases": cases});
                Self::append_in(&mut tx, $crate::custody::kind::UNLINKED, actor, Some(recording_id), d).await?;
                tx.commit().await?;
                Ok(true)
            }
        }
    };
}

pub(super) use impl_case_records;
