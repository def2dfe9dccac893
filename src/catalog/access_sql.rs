//! The shared SQL of [`super::access::AccessRecords`] for both backends, expanded per backend like
//! `sql.rs`'s `impl_catalog!`. Changes and their custody events commit in one transaction that
//! holds the chain lock.

/// Expands `AccessRecords` for backend type `$ty` over database `$db`.
macro_rules! impl_access_records {
    ($ty:ty, $db:ty) => {
        #[async_trait::async_trait]
        impl $crate::catalog::access::AccessRecords for $ty {
            async fn put_grant(&self, recording_id: &str, principal: &str, reason: &str, actor: &str) -> $crate::catalog::Result<bool> {
                let mut tx = self.write_tx().await?;
                let exists: Option<(String,)> = sqlx::query_as("SELECT id FROM recordings WHERE id = $1")
                    .bind(recording_id)
                    .fetch_optional(&mut *tx)
                    .await?;
                if exists.is_none() {
                    return Err($crate::catalog::CatalogError::NotFound(format!("recording {recording_id}")));
                }
                let added = sqlx::query(
                    "INSERT INTO grants (recording_id, principal, reason, granted_by, granted_at) VALUES ($1, $2, $3, $4, $5) \
                     ON CONFLICT (recording_id, principal) DO NOTHING",
                )
                .bind(recording_id)
                .bind(principal)
                .bind(reason)
                .bind(actor)
                .bind($crate::catalog::now_micros())
                .execute(&mut *tx)
                .await?
                .rows_affected()
                    > 0;
                if added {
                    let d = serde_json::json!({"principal": principal, "reason": reason});
                    Self::append_in(&mut tx, $crate::custody::kind::GRANTED, actor, Some(recording_id), d).await?;
                }
                tx.commit().await?;
                Ok(added)
            }

            async fn delete_grant(
                &self,
                recording_id: &str,
                principal: &str,
                reason: Option<&str>,
                actor: &str,
            ) -> $crate::catalog::Result<bool> {
                let mut tx = self.write_tx().await?;
                let removed = sqlx::query("DELETE FROM grants WHERE recording_id = $1 AND principal = $2")
                    .bind(recording_id)
                    .bind(principal)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected()
                    > 0;
                if removed {
                    let d = serde_json::json!({"principal": principal, "reason": reason});
                    Self::append_in(&mut tx, $crate::custody::kind::GRANT_REVOKED, actor, Some(recording_id), d).await?;
                }
                tx.commit().await?;
                Ok(removed)
            }

            async fn grants(&self, recording_id: &str) -> $crate::catalog::Result<Vec<$crate::catalog::access::Grant>> {
                let rows: Vec<(String, String, String, String, i64)> = sqlx::query_as(
                    "SELECT recording_id, principal, reason, granted_by, granted_at FROM grants WHERE recording_id = $1 ORDER BY principal",
                )
                .bind(recording_id)
                .fetch_all(&self.pool)
                .await?;
                Ok(rows
                    .into_iter()
                    .map(|(recording_id, principal, reason, granted_by, at)| $crate::catalog::access::Grant {
                        recording_id,
                        principal,
                        reason,
                        granted_by,
                        granted_at: $crate::custody::format_at(at),
                    })
                    .collect())
            }

            async fn has_grant(&self, recording_id: &str, principal: &str) -> $crate::catalog::Result<bool> {
                let row: Option<(String,)> = sqlx::query_as("SELECT principal FROM grants WHERE recording_id = $1 AND principal = $2")
                    .bind(recording_id)
                    .bind(principal)
                    .fetch_optional(&self.pool)
                    .await?;
                Ok(row.is_some())
            }

            async fn open_session(&self, s: &$crate::catalog::access::NewSession) -> $crate::catalog::Result<()> {
                let principal =
                    serde_json::to_string(&s.principal).map_err(|e| $crate::catalog::CatalogError::Corrupt(e.to_string()))?;
                let now = $crate::catalog::now_micros();
                let mut tx = self.write_tx().await?;
                // Sessions past their end are of no use to anyone: drop them on the way.
                sqlx::query("DELETE FROM sessions WHERE expires_at < $1").bind(now).execute(&mut *tx).await?;
                sqlx::query(
                    "INSERT INTO sessions (id_sha256, principal, token_sha256, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(&s.id_sha256)
                .bind(principal)
                .bind(&s.token_sha256)
                .bind(now)
                .bind(s.expires_at)
                .execute(&mut *tx)
                .await?;
                let mut d = s.details.clone();
                if let Some(m) = d.as_object_mut() {
                    m.insert("role".into(), s.principal.role.clone().into());
                    m.insert("via".into(), if s.token_sha256.is_some() { "token" } else { "oidc" }.into());
                    m.insert("expires_at".into(), $crate::custody::format_at(s.expires_at).into());
                }
                Self::append_in(&mut tx, $crate::custody::kind::SIGNED_IN, &s.principal.name, None, d).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn session(&self, id_sha256: &str, now: i64) -> $crate::catalog::Result<Option<$crate::catalog::access::Session>> {
                type Row = (String, Option<String>, i64, Option<String>, Option<String>, Option<String>, Option<String>, Option<i64>, Option<i64>, Option<i64>);
                let row: Option<Row> = sqlx::query_as(
                    "SELECT s.principal, s.token_sha256, s.expires_at, p.name, p.role, p.unit, p.officer, p.created_at, p.expires_at, p.revoked_at \
                     FROM sessions s LEFT JOIN principals p ON p.token_sha256 = s.token_sha256 \
                     WHERE s.id_sha256 = $1 AND s.ended_at IS NULL AND s.expires_at > $2",
                )
                .bind(id_sha256)
                .bind(now)
                .fetch_optional(&self.pool)
                .await?;
                let Some((snapshot, token, expires_at, name, role, unit, officer, created, p_expires, revoked)) = row else { return Ok(None) };
                let principal = match (token, name, role, unit, created) {
                    // A token session lives only as long as its token.
                    (Some(_), Some(name), Some(role), Some(unit), Some(created_at)) => {
                        if revoked.is_some() || p_expires.is_some_and(|t| t <= now) {
                            return Ok(None);
                        }
                        $crate::catalog::Principal { name, role, unit, officer, created_at, expires_at: p_expires, revoked_at: None }
                    }
                    (Some(_), ..) => return Ok(None),
                    (None, ..) => {
                        let s: $crate::catalog::access::PrincipalSnapshot =
                            serde_json::from_str(&snapshot).map_err(|e| $crate::catalog::CatalogError::Corrupt(format!("session: {e}")))?;
                        $crate::catalog::Principal {
                            name: s.name,
                            role: s.role,
                            unit: s.unit,
                            officer: s.officer,
                            created_at: now,
                            expires_at: Some(expires_at),
                            revoked_at: None,
                        }
                    }
                };
                Ok(Some($crate::catalog::access::Session { principal, expires_at }))
            }

            async fn end_session(&self, id_sha256: &str, actor: &str, details: serde_json::Value) -> $crate::catalog::Result<bool> {
                let now = $crate::catalog::now_micros();
                let mut tx = self.write_tx().await?;
                let ended = sqlx::query("UPDATE sessions SET ended_at = $2 WHERE id_sha256 = $1 AND ended_at IS NULL AND expires_at > $2")
                    .bind(id_sha256)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected()
                    > 0;
                if ended {
                    Self::append_in(&mut tx, $crate::custody::kind::SIGNED_OUT, actor, None, details).await?;
                }
                tx.commit().await?;
                Ok(ended)
            }

            async fn principal(&self, name: &str) -> $crate::catalog::Result<Option<$crate::catalog::Principal>> {
                let row: Option<$crate::catalog::sql::PrincipalRow> =
                    sqlx::query_as("SELECT name, role, unit, officer, created_at, expires_at, revoked_at FROM principals WHERE name = $1")
                        .bind(name)
                        .fetch_optional(&self.pool)
                        .await?;
                Ok(row.map(Into::into))
            }

            async fn shared_secret(&self, name: &str, fresh: &str) -> $crate::catalog::Result<String> {
                sqlx::query("INSERT INTO secrets (name, value, created_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING")
                    .bind(name)
                    .bind(fresh)
                    .bind($crate::catalog::now_micros())
                    .execute(&self.pool)
                    .await?;
                let (v,): (String,) = sqlx::query_as("SELECT value FROM secrets WHERE name = $1").bind(name).fetch_one(&self.pool).await?;
                Ok(v)
            }

            async fn audit_events(
                &self,
                f: &$crate::catalog::access::AuditFilter,
            ) -> $crate::catalog::Result<Vec<$crate::catalog::CustodyEvent>> {
                use $crate::catalog::sql::like_escape;
                let mut qb = sqlx::QueryBuilder::<$db>::new("SELECT * FROM custody_events e WHERE e.kind IN (");
                let kinds: Vec<String> = if f.kinds.is_empty() {
                    $crate::custody::AUDIT_KINDS.iter().map(|k| k.to_string()).collect()
                } else {
                    f.kinds.clone()
                };
                let mut sep = qb.separated(", ");
                for k in kinds {
                    sep.push_bind(k);
                }
                qb.push(")");
                if let Some(a) = &f.actor {
                    qb.push(" AND e.actor = ").push_bind(a.clone());
                }
                if let Some(r) = &f.recording {
                    qb.push(" AND e.recording_id = ").push_bind(r.clone());
                }
                if let Some(t) = f.from {
                    qb.push(" AND e.at >= ").push_bind(t);
                }
                if let Some(t) = f.to {
                    qb.push(" AND e.at < ").push_bind(t);
                }
                if let Some(s) = f.before_seq {
                    qb.push(" AND e.seq < ").push_bind(s);
                }
                if let Some(u) = f.scope_unit.as_ref().filter(|u| !u.is_empty()) {
                    let sub = format!("{}/%", like_escape(u));
                    qb.push(" AND ((e.recording_id IS NOT NULL AND EXISTS (SELECT 1 FROM recordings r WHERE r.id = e.recording_id AND (r.unit = ");
                    qb.push_bind(u.clone()).push(" OR r.unit LIKE ").push_bind(sub.clone()).push(" ESCAPE '\\')))");
                    qb.push(" OR (e.recording_id IS NULL AND EXISTS (SELECT 1 FROM principals p WHERE p.name = e.actor AND (p.unit = ");
                    qb.push_bind(u.clone()).push(" OR p.unit LIKE ").push_bind(sub).push(" ESCAPE '\\'))))");
                }
                qb.push(" ORDER BY e.seq DESC LIMIT ").push_bind(f.limit);
                let rows: Vec<$crate::catalog::sql::EventRow> = qb.build_query_as().fetch_all(&self.pool).await?;
                Ok(rows.into_iter().map(Into::into).collect())
            }
        }
    };
}

pub(super) use impl_access_records;
