//! The shared SQL of [`super::rebuild::RebuildRecords`] for both backends, expanded per backend
//! like `sql.rs`'s `impl_catalog!` (whose `write_tx`, `insert_recording_in` and `apply_media_in` it
//! uses, so a replayed entry makes exactly the rows the original change made). Its
//! `insert_checkpoint_in` is shared with `custody_sql.rs`.

/// Expands `RebuildRecords` for backend type `$ty`.
macro_rules! impl_rebuild_records {
    ($ty:ty, $db:ty) => {
        impl $ty {
            /// Stores a checkpoint record (idempotent by id): a new checkpoint's (`record_checkpoint`,
            /// which appends its entry in the same transaction) and a restored one's.
            async fn insert_checkpoint_in(
                tx: &mut sqlx::Transaction<'static, $db>,
                c: &$crate::catalog::custody::Checkpoint,
            ) -> $crate::catalog::Result<()> {
                sqlx::query(
                    "INSERT INTO checkpoints (id, node, key_id, seq, hash, at, body, signature, object_key) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (id) DO NOTHING",
                )
                .bind(&c.id)
                .bind(&c.node)
                .bind(&c.key_id)
                .bind(c.seq)
                .bind(&c.hash)
                .bind(c.at)
                .bind(&c.body)
                .bind(&c.signature)
                .bind(&c.object_key)
                .execute(&mut **tx)
                .await?;
                Ok(())
            }

            /// Applies one replayed entry to the tables (see `rebuild.rs` for what each kind does).
            async fn replay_in(
                tx: &mut sqlx::Transaction<'static, $db>,
                e: &$crate::custody::segments::StoredEntry,
                at: i64,
            ) -> $crate::catalog::Result<()> {
                use $crate::custody::kind;
                let b = &e.body;
                let d = &b.details;
                let text = |k: &str| d[k].as_str().map(str::to_string);
                let rid = b.recording_id.clone().unwrap_or_default();
                let corrupt = |why: &str| $crate::catalog::CatalogError::Corrupt(format!("custody entry {} ({}): {why}", b.seq, b.kind));
                match b.kind.as_str() {
                    kind::ARCHIVED => {
                        let name = text("original_name").ok_or_else(|| corrupt("no original_name"))?;
                        let attribution: $crate::ingest::attribution::Attribution =
                            serde_json::from_value(d["attribution"].clone()).map_err(|e| corrupt(&format!("attribution: {e}")))?;
                        let rec = $crate::catalog::NewRecording {
                            sha256: text("sha256").ok_or_else(|| corrupt("no sha256"))?,
                            size: d["size"].as_i64().ok_or_else(|| corrupt("no size"))?,
                            object_key: text("object_key").ok_or_else(|| corrupt("no object_key"))?,
                            manifest_key: text("manifest_key").ok_or_else(|| corrupt("no manifest_key"))?,
                            extension: std::path::Path::new(&name)
                                .extension()
                                .map(|x| x.to_string_lossy().to_ascii_lowercase())
                                .unwrap_or_default(),
                            original_name: name,
                            attribution,
                            node: b.actor.strip_prefix("node:").unwrap_or(&b.actor).to_string(),
                            timestamp: false,
                        };
                        Self::insert_recording_in(tx, &rid, &rec, &b.actor, at).await?;
                    }
                    kind::DERIVED => {
                        let u = $crate::catalog::media_update_of(d);
                        Self::apply_media_in(tx, &rid, &u, at).await?;
                    }
                    kind::ATTRIBUTED => {
                        let new = &d["new"];
                        let s = |k: &str| new[k].as_str().map(str::to_string);
                        let started = s("started_at").and_then(|t| $crate::custody::parse_at(&t));
                        sqlx::query(
                            "UPDATE recordings SET device = COALESCE($2, device), officer = COALESCE($3, officer), unit = COALESCE($4, unit), \
                             started_at = COALESCE($5, started_at), needs_review = COALESCE($6, needs_review), sort_at = COALESCE($5, sort_at) \
                             WHERE id = $1",
                        )
                        .bind(&rid)
                        .bind(s("device"))
                        .bind(s("officer"))
                        .bind(s("unit"))
                        .bind(started)
                        .bind(new["needs_review"].as_bool())
                        .execute(&mut **tx)
                        .await?;
                    }
                    kind::CLASSIFIED | kind::CATEGORISED => {
                        let column = if b.kind == kind::CLASSIFIED { "classification" } else { "category" };
                        let new = text("new").ok_or_else(|| corrupt("no new value"))?;
                        sqlx::query(&format!("UPDATE recordings SET {column} = $2 WHERE id = $1")).bind(&rid).bind(new).execute(&mut **tx).await?;
                    }
                    kind::HELD | kind::HOLD_RELEASED => {
                        let held = b.kind == kind::HELD;
                        sqlx::query("UPDATE recordings SET legal_hold = $2, hold_reason = $3 WHERE id = $1")
                            .bind(&rid)
                            .bind(held)
                            .bind(if held { text("reason") } else { None })
                            .execute(&mut **tx)
                            .await?;
                    }
                    kind::CASE_CREATED => {
                        sqlx::query(
                            "INSERT INTO cases (id, title, unit, created_at, created_by, updated_at) VALUES ($1, $2, $3, $4, $5, $4) \
                             ON CONFLICT (id) DO NOTHING",
                        )
                        .bind(text("case").ok_or_else(|| corrupt("no case"))?)
                        .bind(text("title").unwrap_or_default())
                        .bind(text("unit").unwrap_or_default())
                        .bind(at)
                        .bind(&b.actor)
                        .execute(&mut **tx)
                        .await?;
                    }
                    kind::CASE_UPDATED => {
                        let changes = &d["changes"];
                        let closed = changes["status"]["to"].as_str().map(|s| s == $crate::catalog::cases::status::CLOSED);
                        sqlx::query(
                            "UPDATE cases SET title = COALESCE($2, title), status = COALESCE($3, status), updated_at = $4, \
                             closed_at = CASE WHEN $5 = 1 THEN $4 WHEN $5 = 0 THEN NULL ELSE closed_at END WHERE id = $1",
                        )
                        .bind(text("case").ok_or_else(|| corrupt("no case"))?)
                        .bind(changes["title"]["to"].as_str())
                        .bind(changes["status"]["to"].as_str())
                        .bind(at)
                        .bind(closed.map(i64::from).unwrap_or(-1))
                        .execute(&mut **tx)
                        .await?;
                    }
                    kind::LINKED | kind::UNLINKED => {
                        let case = text("case").ok_or_else(|| corrupt("no case"))?;
                        if b.kind == kind::LINKED {
                            sqlx::query(
                                "INSERT INTO case_links (case_id, recording_id, linked_at, linked_by) VALUES ($1, $2, $3, $4) \
                                 ON CONFLICT (case_id, recording_id) DO NOTHING",
                            )
                            .bind(&case)
                            .bind(&rid)
                            .bind(at)
                            .bind(&b.actor)
                            .execute(&mut **tx)
                            .await?;
                        } else {
                            sqlx::query("DELETE FROM case_links WHERE case_id = $1 AND recording_id = $2")
                                .bind(&case)
                                .bind(&rid)
                                .execute(&mut **tx)
                                .await?;
                        }
                        sqlx::query("UPDATE recordings SET case_ids = $2 WHERE id = $1")
                            .bind(&rid)
                            .bind(d["cases"].to_string())
                            .execute(&mut **tx)
                            .await?;
                    }
                    kind::TIMESTAMPED => {
                        let subject = text("subject").ok_or_else(|| corrupt("no subject"))?;
                        let subject_id = text("subject_id").ok_or_else(|| corrupt("no subject_id"))?;
                        sqlx::query(
                            "INSERT INTO timestamps (id, subject, subject_id, sha256, token_key, token_sha256, gen_time, serial, tsa, created_at) \
                             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (subject, subject_id) DO NOTHING",
                        )
                        .bind(uuid::Uuid::now_v7().to_string())
                        .bind(&subject)
                        .bind(&subject_id)
                        .bind(text("sha256").unwrap_or_default())
                        .bind(text("token_key").unwrap_or_default())
                        .bind(text("token_sha256").unwrap_or_default())
                        .bind(text("gen_time").and_then(|t| $crate::custody::parse_at(&t)).unwrap_or(at))
                        .bind(text("serial").unwrap_or_default())
                        .bind(text("tsa").unwrap_or_default())
                        .bind(at)
                        .execute(&mut **tx)
                        .await?;
                        if subject == $crate::catalog::custody::subject::RECORDING {
                            sqlx::query("UPDATE recordings SET timestamped = TRUE WHERE id = $1").bind(&subject_id).execute(&mut **tx).await?;
                        }
                    }
                    kind::QUEUED_FOR_DESTRUCTION => {
                        sqlx::query(
                            "INSERT INTO destructions (id, recording_id, state, rule, retention_until, queued_at, eligible_at) \
                             VALUES ($1, $2, 'pending', $3, $4, $5, $6)",
                        )
                        .bind(text("destruction").ok_or_else(|| corrupt("no destruction"))?)
                        .bind(&rid)
                        .bind(text("rule").unwrap_or_default())
                        .bind(text("retention_until").and_then(|t| $crate::custody::parse_at(&t)).unwrap_or(at))
                        .bind(at)
                        .bind(text("eligible_at").and_then(|t| $crate::custody::parse_at(&t)).unwrap_or(at))
                        .execute(&mut **tx)
                        .await?;
                        sqlx::query("UPDATE recordings SET state = 'pending_destruction' WHERE id = $1").bind(&rid).execute(&mut **tx).await?;
                    }
                    kind::DESTRUCTION_APPROVED => {
                        let id = text("destruction").ok_or_else(|| corrupt("no destruction"))?;
                        let (approvals,): (String,) =
                            sqlx::query_as("SELECT approvals FROM destructions WHERE id = $1").bind(&id).fetch_one(&mut **tx).await?;
                        let mut list: Vec<serde_json::Value> = serde_json::from_str(&approvals).unwrap_or_default();
                        list.push(serde_json::json!({"archivist": b.actor, "at": b.at, "reason": d["reason"]}));
                        sqlx::query("UPDATE destructions SET approvals = $2, approval_count = $3 WHERE id = $1")
                            .bind(&id)
                            .bind(serde_json::Value::from(list.clone()).to_string())
                            .bind(list.len() as i64)
                            .execute(&mut **tx)
                            .await?;
                    }
                    kind::DESTRUCTION_CANCELLED => {
                        sqlx::query("UPDATE destructions SET state = 'cancelled', finished_at = $2 WHERE id = $1")
                            .bind(text("destruction").ok_or_else(|| corrupt("no destruction"))?)
                            .bind(at)
                            .execute(&mut **tx)
                            .await?;
                        sqlx::query("UPDATE recordings SET state = 'archived' WHERE id = $1 AND state = 'pending_destruction'")
                            .bind(&rid)
                            .execute(&mut **tx)
                            .await?;
                    }
                    kind::DESTROYED => {
                        sqlx::query(
                            "UPDATE destructions SET state = 'destroyed', finished_at = $2, objects = $3, batch_id = $4, versions = $5 WHERE id = $1",
                        )
                        .bind(text("destruction").ok_or_else(|| corrupt("no destruction"))?)
                        .bind(at)
                        .bind(d["objects"].to_string())
                        .bind(text("batch"))
                        .bind(d["versions"].to_string())
                        .execute(&mut **tx)
                        .await?;
                        sqlx::query(
                            "UPDATE recordings SET state = 'destroyed', media_state = CASE WHEN media_state = 'ready' THEN 'failed' ELSE media_state END, \
                             media_error = 'destroyed', proxy_key = NULL, poster_key = NULL WHERE id = $1",
                        )
                        .bind(&rid)
                        .execute(&mut **tx)
                        .await?;
                    }
                    kind::CLIPPED => {
                        let key = text("object_key").unwrap_or_default();
                        let content_type = if key.ends_with(".m4a") { "audio/mp4" } else { "video/mp4" };
                        sqlx::query(
                            "INSERT INTO clips (id, recording_id, start_ms, end_ms, accurate, reason, actor, state, object_key, sha256, size, \
                             content_type, created_at, finished_at) VALUES ($1, $2, $3, $4, $5, $6, $7, 'ready', $8, $9, $10, $11, $12, $12) \
                             ON CONFLICT (id) DO NOTHING",
                        )
                        .bind(text("clip").ok_or_else(|| corrupt("no clip"))?)
                        .bind(&rid)
                        .bind(d["start_ms"].as_i64().unwrap_or(0))
                        .bind(d["end_ms"].as_i64().unwrap_or(0))
                        .bind(d["accurate"].as_bool().unwrap_or(false))
                        .bind(text("reason").unwrap_or_default())
                        .bind(text("requested_by").unwrap_or_else(|| b.actor.clone()))
                        .bind(&key)
                        .bind(text("sha256"))
                        .bind(d["size"].as_i64())
                        .bind(content_type)
                        .bind(at)
                        .execute(&mut **tx)
                        .await?;
                    }
                    kind::GRANTED => {
                        sqlx::query(
                            "INSERT INTO grants (recording_id, principal, reason, granted_by, granted_at) VALUES ($1, $2, $3, $4, $5) \
                             ON CONFLICT (recording_id, principal) DO UPDATE SET reason = $3, granted_by = $4, granted_at = $5",
                        )
                        .bind(&rid)
                        .bind(text("principal").ok_or_else(|| corrupt("no principal"))?)
                        .bind(text("reason").unwrap_or_default())
                        .bind(&b.actor)
                        .bind(at)
                        .execute(&mut **tx)
                        .await?;
                    }
                    kind::GRANT_REVOKED => {
                        sqlx::query("DELETE FROM grants WHERE recording_id = $1 AND principal = $2")
                            .bind(&rid)
                            .bind(text("principal").ok_or_else(|| corrupt("no principal"))?)
                            .execute(&mut **tx)
                            .await?;
                    }
                    kind::FIXITY_CHECKED => {
                        sqlx::query("UPDATE recordings SET fixity_checked_at = $2 WHERE id = $1").bind(&rid).bind(at).execute(&mut **tx).await?;
                    }
                    // Facts with no table state to restore (or none that can be: principals'
                    // tokens, sessions, dock sightings); checkpoints come from their objects.
                    _ => {}
                }
                Ok(())
            }
        }

        #[async_trait::async_trait]
        impl $crate::catalog::rebuild::RebuildRecords for $ty {
            async fn is_blank(&self) -> $crate::catalog::Result<bool> {
                let (n,): (i64,) = sqlx::query_as("SELECT (SELECT COUNT(*) FROM custody_events) + (SELECT COUNT(*) FROM recordings)")
                    .fetch_one(&self.pool)
                    .await?;
                Ok(n == 0)
            }

            async fn restore_entries(&self, entries: &[$crate::custody::segments::StoredEntry]) -> $crate::catalog::Result<()> {
                let mut tx = self.write_tx().await?;
                let head: Option<(i64, String)> =
                    sqlx::query_as("SELECT seq, hash FROM custody_events ORDER BY seq DESC LIMIT 1").fetch_optional(&mut *tx).await?;
                let (mut seq, mut prev) = head.unwrap_or((0, $crate::custody::GENESIS.to_string()));
                for e in entries {
                    if e.body.seq != seq + 1 || e.body.prev_hash != prev || $crate::custody::entry_hash(&e.body) != e.hash {
                        return Err($crate::catalog::CatalogError::Refused(format!(
                            "custody entry {} does not follow entry {seq} of the catalog's chain",
                            e.body.seq
                        )));
                    }
                    let at = $crate::custody::parse_at(&e.body.at)
                        .ok_or_else(|| $crate::catalog::CatalogError::Corrupt(format!("custody entry {}: time {:?}", e.body.seq, e.body.at)))?;
                    let details = String::from_utf8($crate::custody::canonical_value(&e.body.details))
                        .map_err(|x| $crate::catalog::CatalogError::Corrupt(x.to_string()))?;
                    sqlx::query(
                        "INSERT INTO custody_events (seq, at, kind, actor, recording_id, details, prev_hash, hash) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                    )
                    .bind(e.body.seq)
                    .bind(at)
                    .bind(&e.body.kind)
                    .bind(&e.body.actor)
                    .bind(&e.body.recording_id)
                    .bind(details)
                    .bind(&e.body.prev_hash)
                    .bind(&e.hash)
                    .execute(&mut *tx)
                    .await?;
                    Self::replay_in(&mut tx, e, at).await?;
                    seq = e.body.seq;
                    prev = e.hash.clone();
                }
                tx.commit().await?;
                Ok(())
            }

            async fn restore_checkpoint(&self, c: &$crate::catalog::custody::Checkpoint) -> $crate::catalog::Result<()> {
                let mut tx = self.write_tx().await?;
                Self::insert_checkpoint_in(&mut tx, c).await?;
                tx.commit().await?;
                Ok(())
            }
        }
    };
}

pub(super) use impl_rebuild_records;
