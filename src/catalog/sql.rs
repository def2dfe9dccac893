//! The SQL both catalog backends share. SQLite and PostgreSQL accept the same `$N` placeholders,
//! `ON CONFLICT`, `RETURNING` and row-value comparisons, so one macro expands the `Catalog`
//! implementation for each backend; the backends supply only how a write transaction begins
//! (`BEGIN IMMEDIATE` vs an advisory lock on the chain head) and the job-claim locking clause.

use super::{CustodyEvent, Fingerprint, Principal, Recording, Sighting, SightingView};
use crate::custody::{EntryBody, format_at};

/// A `recordings` row.
#[derive(sqlx::FromRow)]
pub(super) struct RecordingRow {
    pub id: String,
    pub sha256: String,
    pub size: i64,
    pub object_key: String,
    pub manifest_key: String,
    pub original_name: String,
    pub extension: String,
    pub device: Option<String>,
    pub officer: Option<String>,
    pub unit: Option<String>,
    pub started_at: Option<i64>,
    pub ended_at: Option<i64>,
    pub duration_ms: Option<i64>,
    pub gps_lat: Option<f64>,
    pub gps_lon: Option<f64>,
    pub case_ids: String,
    pub category: String,
    pub classification: String,
    pub needs_review: bool,
    pub review_reasons: String,
    pub attribution: String,
    pub state: String,
    pub media_state: String,
    pub archived_at: i64,
    pub sort_at: i64,
    pub media: Option<String>,
    pub media_error: Option<String>,
    pub media_warning: Option<String>,
    pub proxy_key: Option<String>,
    pub proxy_sha256: Option<String>,
    pub proxy_size: Option<i64>,
    pub proxy_type: Option<String>,
    pub poster_key: Option<String>,
    pub poster_sha256: Option<String>,
    pub poster_size: Option<i64>,
    pub timestamped: bool,
    pub legal_hold: bool,
}

fn object_ref(key: Option<String>, sha: Option<String>, size: Option<i64>, ct: Option<String>) -> Option<super::ObjectRef> {
    Some(super::ObjectRef { key: key?, sha256: sha?, size: size?, content_type: ct? })
}

/// A `clips` row.
#[derive(sqlx::FromRow)]
pub(super) struct ClipRow {
    pub id: String,
    pub recording_id: String,
    pub start_ms: i64,
    pub end_ms: i64,
    pub accurate: bool,
    pub reason: String,
    pub actor: String,
    pub state: String,
    pub object_key: Option<String>,
    pub sha256: Option<String>,
    pub size: Option<i64>,
    pub content_type: Option<String>,
    pub error: Option<String>,
    pub created_at: i64,
}

impl From<ClipRow> for super::Clip {
    fn from(r: ClipRow) -> Self {
        super::Clip {
            id: r.id,
            recording_id: r.recording_id,
            start_ms: r.start_ms,
            end_ms: r.end_ms,
            accurate: r.accurate,
            reason: r.reason,
            actor: r.actor,
            state: r.state,
            sha256: r.sha256,
            size: r.size,
            content_type: r.content_type,
            error: r.error,
            created_at: format_at(r.created_at),
            object_key: r.object_key,
        }
    }
}

impl RecordingRow {
    pub fn into_recording(self, sightings: Vec<SightingView>) -> Recording {
        let location = match (self.gps_lat, self.gps_lon) {
            (Some(lat), Some(lon)) => Some(serde_json::json!({"lat": lat, "lon": lon})),
            _ => None,
        };
        Recording {
            playable: self.media_state == "ready",
            id: self.id,
            sha256: self.sha256,
            size: self.size,
            object_key: self.object_key,
            manifest_key: self.manifest_key,
            original_name: self.original_name,
            extension: self.extension,
            device: self.device,
            officer: self.officer,
            unit: self.unit,
            started_at: self.started_at.map(format_at),
            ended_at: self.ended_at.map(format_at),
            duration_ms: self.duration_ms,
            location,
            cases: serde_json::from_str(&self.case_ids).unwrap_or_default(),
            category: self.category,
            classification: self.classification,
            needs_review: self.needs_review,
            review_reasons: serde_json::from_str(&self.review_reasons).unwrap_or_default(),
            state: self.state,
            media_state: self.media_state,
            media_error: self.media_error,
            media_warning: self.media_warning,
            media: self.media.as_deref().and_then(|m| serde_json::from_str(m).ok()),
            sightings,
            archived_at: format_at(self.archived_at),
            retention_until: None,
            retention_permanent: false,
            retention_from: self.started_at.filter(|s| *s > self.archived_at).unwrap_or(self.archived_at),
            legal_hold: self.legal_hold,
            timestamped: self.timestamped,
            attribution: serde_json::from_str(&self.attribution).unwrap_or_default(),
            sort_at: self.sort_at,
            proxy: object_ref(self.proxy_key, self.proxy_sha256, self.proxy_size, self.proxy_type),
            poster: object_ref(self.poster_key, self.poster_sha256, self.poster_size, Some("image/jpeg".into())),
        }
    }
}

/// A `sightings` row.
#[derive(sqlx::FromRow)]
pub(super) struct SightingRow {
    pub id: String,
    pub recording_id: Option<String>,
    pub node: String,
    pub dock: String,
    pub path: Vec<u8>,
    pub path_display: String,
    pub dev: i64,
    pub ino: i64,
    pub size: i64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
    pub state: String,
    pub object_key: Option<String>,
    pub upload_id: Option<String>,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub last_error: Option<String>,
    pub seen_at: i64,
    pub release_after: Option<i64>,
    pub released_at: Option<i64>,
}

impl From<SightingRow> for Sighting {
    fn from(r: SightingRow) -> Self {
        Sighting {
            id: r.id,
            recording_id: r.recording_id,
            node: r.node,
            dock: r.dock,
            path: r.path,
            path_display: r.path_display,
            fingerprint: Fingerprint { dev: r.dev, ino: r.ino, size: r.size, mtime_ns: r.mtime_ns, ctime_ns: r.ctime_ns },
            state: r.state,
            object_key: r.object_key,
            upload_id: r.upload_id,
            attempts: r.attempts,
            next_attempt_at: r.next_attempt_at,
            last_error: r.last_error,
            seen_at: r.seen_at,
            release_after: r.release_after,
            released_at: r.released_at,
        }
    }
}

/// A `custody_events` row.
#[derive(sqlx::FromRow)]
pub(super) struct EventRow {
    pub seq: i64,
    pub at: i64,
    pub kind: String,
    pub actor: String,
    pub recording_id: Option<String>,
    pub details: String,
    pub prev_hash: String,
    pub hash: String,
}

impl From<EventRow> for CustodyEvent {
    fn from(r: EventRow) -> Self {
        CustodyEvent {
            body: EntryBody {
                seq: r.seq,
                at: format_at(r.at),
                kind: r.kind,
                actor: r.actor,
                recording_id: r.recording_id,
                details: serde_json::from_str(&r.details).unwrap_or(serde_json::Value::Null),
                prev_hash: r.prev_hash,
            },
            hash: r.hash,
            details_raw: r.details,
        }
    }
}

/// A `principals` row.
#[derive(sqlx::FromRow)]
pub(super) struct PrincipalRow {
    pub name: String,
    pub role: String,
    pub unit: String,
    pub officer: Option<String>,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

impl From<PrincipalRow> for Principal {
    fn from(r: PrincipalRow) -> Self {
        Principal {
            name: r.name,
            role: r.role,
            unit: r.unit,
            officer: r.officer,
            created_at: r.created_at,
            expires_at: r.expires_at,
            revoked_at: r.revoked_at,
        }
    }
}

/// Escapes a value for use inside `LIKE ... ESCAPE '\'`.
pub(super) fn like_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")
}

/// Expands the shared `Catalog` implementation for one backend type `$ty` over database `$db`.
/// The type must provide `pool`, `async fn write_tx(&self)` (a transaction that already holds
/// the write/chain lock) and the constant `SKIP_LOCKED` (the claim query's locking clause).
macro_rules! impl_catalog {
    ($ty:ty, $db:ty) => {
        impl $ty {
            /// Inserts a new recording row (state `archived`, media `pending`) and the cases its
            /// attribution names (created open when new, and linked), inside a write transaction:
            /// ingest's commit and `rebuild`'s replay of an `archived` entry share it.
            async fn insert_recording_in(
                tx: &mut sqlx::Transaction<'static, $db>,
                id: &str,
                rec: &$crate::catalog::NewRecording,
                actor: &str,
                now: i64,
            ) -> $crate::catalog::Result<()> {
                let a = &rec.attribution;
                let sort_at = a.started_at.unwrap_or(now);
                let case_ids = $crate::catalog::cases::normalize_ids(&a.case_ids);
                sqlx::query(
                    "INSERT INTO recordings (id, sha256, size, object_key, manifest_key, original_name, extension, \
                     device, officer, unit, started_at, ended_at, duration_ms, gps_lat, gps_lon, case_ids, category, \
                     classification, needs_review, review_reasons, attribution, state, media_state, archived_at, sort_at, node) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, \
                     $21, 'archived', 'pending', $22, $23, $24)",
                )
                .bind(id)
                .bind(&rec.sha256)
                .bind(rec.size)
                .bind(&rec.object_key)
                .bind(&rec.manifest_key)
                .bind(&rec.original_name)
                .bind(&rec.extension)
                .bind(&a.device)
                .bind(&a.officer)
                .bind(&a.unit)
                .bind(a.started_at)
                .bind(a.ended_at)
                .bind(a.duration_ms)
                .bind(a.gps.map(|g| g.lat))
                .bind(a.gps.map(|g| g.lon))
                .bind(serde_json::to_string(&case_ids).unwrap_or_else(|_| "[]".into()))
                .bind(a.category.clone().unwrap_or_else(|| if a.case_ids.is_empty() { "uncategorized" } else { "evidence" }.into()))
                .bind(a.classification.clone().unwrap_or_else(|| "normal".into()))
                .bind(a.needs_review)
                .bind(serde_json::to_string(&a.review_reasons).unwrap_or_else(|_| "[]".into()))
                .bind(a.sources.to_string())
                .bind(now)
                .bind(sort_at)
                .bind(&rec.node)
                .execute(&mut **tx)
                .await?;
                // Cases the sidecar names: created (open) when new, and linked; `archived` attributes both.
                for c in &case_ids {
                    sqlx::query(
                        "INSERT INTO cases (id, created_at, created_by, updated_at) VALUES ($1, $2, $3, $2) ON CONFLICT (id) DO NOTHING",
                    )
                    .bind(c)
                    .bind(now)
                    .bind(actor)
                    .execute(&mut **tx)
                    .await?;
                    sqlx::query(
                        "INSERT INTO case_links (case_id, recording_id, linked_at, linked_by) VALUES ($1, $2, $3, $4) \
                         ON CONFLICT (case_id, recording_id) DO NOTHING",
                    )
                    .bind(c)
                    .bind(id)
                    .bind(now)
                    .bind(actor)
                    .execute(&mut **tx)
                    .await?;
                }
                Ok(())
            }

            /// Records a derivation's outcome on a recording still `pending` (the fence: a late
            /// second derivation changes nothing) and returns the rows changed. Container facts
            /// (start, position, duration) fill only what attribution left empty. Shared by
            /// `set_media` and `rebuild`'s replay of a `derived` entry.
            async fn apply_media_in(
                tx: &mut sqlx::Transaction<'static, $db>,
                id: &str,
                u: &$crate::catalog::MediaUpdate,
                now: i64,
            ) -> $crate::catalog::Result<u64> {
                let (pk, ps, pz, pt) = match &u.proxy {
                    Some(o) => (Some(o.key.clone()), Some(o.sha256.clone()), Some(o.size), Some(o.content_type.clone())),
                    None => (None, None, None, None),
                };
                let (qk, qs, qz) = match &u.poster {
                    Some(o) => (Some(o.key.clone()), Some(o.sha256.clone()), Some(o.size)),
                    None => (None, None, None),
                };
                Ok(sqlx::query(
                    "UPDATE recordings SET media_state = $2, media = $3, media_error = $4, media_warning = $5, \
                     proxy_key = $6, proxy_sha256 = $7, proxy_size = $8, proxy_type = $9, \
                     poster_key = $10, poster_sha256 = $11, poster_size = $12, media_ready_at = $13, \
                     sort_at = CASE WHEN started_at IS NULL AND $14 IS NOT NULL THEN $14 ELSE sort_at END, \
                     started_at = COALESCE(started_at, $14), \
                     gps_lat = CASE WHEN gps_lat IS NULL THEN $15 ELSE gps_lat END, \
                     gps_lon = CASE WHEN gps_lat IS NULL THEN $16 ELSE gps_lon END, \
                     duration_ms = COALESCE(duration_ms, $17) WHERE id = $1 AND media_state = 'pending'",
                )
                .bind(id)
                .bind(&u.state)
                // Canonical (RFC 8785), as in the `derived` entry, so a replay stores the same text.
                .bind(u.media.as_ref().map(|m| String::from_utf8_lossy(&$crate::custody::canonical_value(m)).into_owned()))
                .bind(&u.error)
                .bind(&u.warning)
                .bind(pk)
                .bind(ps)
                .bind(pz)
                .bind(pt)
                .bind(qk)
                .bind(qs)
                .bind(qz)
                .bind(now)
                .bind(u.started_at)
                .bind(u.gps.map(|g| g.0))
                .bind(u.gps.map(|g| g.1))
                .bind(u.duration_ms)
                .execute(&mut **tx)
                .await?
                .rows_affected())
            }

            /// Appends one custody event inside a transaction that holds the chain lock.
            async fn append_in(
                tx: &mut sqlx::Transaction<'static, $db>,
                kind: &str,
                actor: &str,
                recording_id: Option<&str>,
                details: serde_json::Value,
            ) -> $crate::catalog::Result<i64> {
                Self::append_at(tx, $crate::catalog::now_micros(), kind, actor, recording_id, details).await
            }

            /// [`Self::append_in`] at a given time: the time the same transaction wrote into the
            /// rows the entry describes, read while it already held the chain lock (so entries
            /// stay in time order), so that replaying the entry restores those rows exactly.
            async fn append_at(
                tx: &mut sqlx::Transaction<'static, $db>,
                at: i64,
                kind: &str,
                actor: &str,
                recording_id: Option<&str>,
                details: serde_json::Value,
            ) -> $crate::catalog::Result<i64> {
                let head: Option<(i64, String)> =
                    sqlx::query_as("SELECT seq, hash FROM custody_events ORDER BY seq DESC LIMIT 1")
                        .fetch_optional(&mut **tx)
                        .await?;
                let (seq, prev_hash) = match head {
                    Some((s, h)) => (s + 1, h),
                    None => (1, $crate::custody::GENESIS.to_string()),
                };
                let body = $crate::custody::EntryBody {
                    seq,
                    at: $crate::custody::format_at(at),
                    kind: kind.to_string(),
                    actor: actor.to_string(),
                    recording_id: recording_id.map(str::to_string),
                    details,
                    prev_hash,
                };
                let hash = $crate::custody::entry_hash(&body);
                let details = String::from_utf8($crate::custody::canonical_value(&body.details))
                    .map_err(|e| $crate::catalog::CatalogError::Corrupt(e.to_string()))?;
                sqlx::query(
                    "INSERT INTO custody_events (seq, at, kind, actor, recording_id, details, prev_hash, hash) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(seq)
                .bind(at)
                .bind(kind)
                .bind(actor)
                .bind(recording_id)
                .bind(details)
                .bind(&body.prev_hash)
                .bind(hash)
                .execute(&mut **tx)
                .await?;
                Ok(seq)
            }

            async fn sightings_of(&self, ids: &[String]) -> $crate::catalog::Result<Vec<(String, $crate::catalog::SightingView)>> {
                if ids.is_empty() {
                    return Ok(vec![]);
                }
                let mut qb = sqlx::QueryBuilder::<$db>::new(
                    "SELECT recording_id, dock, path_display, seen_at FROM sightings WHERE recording_id IN (",
                );
                let mut sep = qb.separated(", ");
                for id in ids {
                    sep.push_bind(id.clone());
                }
                qb.push(") ORDER BY seen_at, id");
                let rows: Vec<(String, String, String, i64)> = qb.build_query_as().fetch_all(&self.pool).await?;
                Ok(rows
                    .into_iter()
                    .map(|(r, dock, path, seen)| {
                        (r, $crate::catalog::SightingView { dock, path, seen_at: $crate::custody::format_at(seen) })
                    })
                    .collect())
            }

            async fn fetch_sighting(&self, id: &str) -> $crate::catalog::Result<$crate::catalog::Sighting> {
                let row: Option<$crate::catalog::sql::SightingRow> =
                    sqlx::query_as("SELECT * FROM sightings WHERE id = $1").bind(id).fetch_optional(&self.pool).await?;
                row.map(Into::into).ok_or_else(|| $crate::catalog::CatalogError::NotFound(format!("sighting {id}")))
            }

            async fn insert_sighting(
                &self,
                s: &$crate::catalog::NewSighting,
                state: &str,
                kind: &str,
            ) -> $crate::catalog::Result<($crate::catalog::Sighting, bool)> {
                let mut tx = self.write_tx().await?;
                let id = uuid::Uuid::now_v7().to_string();
                let now = $crate::catalog::now_micros();
                let f = &s.fingerprint;
                let inserted = sqlx::query(
                    "INSERT INTO sightings (id, node, dock, path, path_display, dev, ino, size, mtime_ns, ctime_ns, \
                     state, seen_at, updated_at, next_attempt_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12, 0) \
                     ON CONFLICT (dock, path, dev, ino, size, mtime_ns, ctime_ns) DO NOTHING",
                )
                .bind(&id)
                .bind(&s.node)
                .bind(&s.dock)
                .bind(&s.path)
                .bind(&s.path_display)
                .bind(f.dev)
                .bind(f.ino)
                .bind(f.size)
                .bind(f.mtime_ns)
                .bind(f.ctime_ns)
                .bind(state)
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                    == 1;
                if inserted {
                    let details = serde_json::json!({
                        "sighting": id, "dock": s.dock, "path": s.path_display, "size": f.size,
                        "path_hex": hex::encode(&s.path),
                        "dev": f.dev, "ino": f.ino, "mtime_ns": f.mtime_ns, "ctime_ns": f.ctime_ns,
                    });
                    Self::append_in(&mut tx, kind, &s.actor, None, details).await?;
                }
                let row: $crate::catalog::sql::SightingRow = sqlx::query_as(
                    "SELECT * FROM sightings WHERE dock = $1 AND path = $2 AND dev = $3 AND ino = $4 AND size = $5 \
                     AND mtime_ns = $6 AND ctime_ns = $7",
                )
                .bind(&s.dock)
                .bind(&s.path)
                .bind(f.dev)
                .bind(f.ino)
                .bind(f.size)
                .bind(f.mtime_ns)
                .bind(f.ctime_ns)
                .fetch_one(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok((row.into(), inserted))
            }
        }

        #[async_trait::async_trait]
        impl $crate::catalog::Catalog for $ty {
            fn backend(&self) -> &'static str {
                Self::BACKEND
            }

            async fn ping(&self) -> $crate::catalog::Result<()> {
                sqlx::query("SELECT 1").execute(&self.pool).await?;
                Ok(())
            }

            async fn record_sighting(
                &self,
                s: &$crate::catalog::NewSighting,
            ) -> $crate::catalog::Result<($crate::catalog::Sighting, bool)> {
                self.insert_sighting(s, $crate::catalog::sighting_state::DISCOVERED, $crate::custody::kind::DISCOVERED).await
            }

            async fn record_empty(&self, s: &$crate::catalog::NewSighting) -> $crate::catalog::Result<()> {
                self.insert_sighting(s, $crate::catalog::sighting_state::EMPTY, $crate::custody::kind::ZERO_LENGTH_SEEN).await?;
                Ok(())
            }

            async fn sighting(&self, id: &str) -> $crate::catalog::Result<$crate::catalog::Sighting> {
                self.fetch_sighting(id).await
            }

            async fn due_sightings(&self, node: &str, now: i64, limit: i64) -> $crate::catalog::Result<Vec<$crate::catalog::Sighting>> {
                let rows: Vec<$crate::catalog::sql::SightingRow> = sqlx::query_as(
                    "SELECT * FROM sightings WHERE node = $1 AND state = 'discovered' AND next_attempt_at <= $2 \
                     ORDER BY seen_at, id LIMIT $3",
                )
                .bind(node)
                .bind(now)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?;
                Ok(rows.into_iter().map(Into::into).collect())
            }

            async fn set_upload(&self, id: &str, object_key: &str, upload_id: Option<&str>) -> $crate::catalog::Result<()> {
                sqlx::query("UPDATE sightings SET object_key = $2, upload_id = $3, updated_at = $4 WHERE id = $1")
                    .bind(id)
                    .bind(object_key)
                    .bind(upload_id)
                    .bind($crate::catalog::now_micros())
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn sighting_failed(&self, id: &str, error: &str, retry_at: i64) -> $crate::catalog::Result<()> {
                sqlx::query(
                    "UPDATE sightings SET attempts = attempts + 1, last_error = $2, next_attempt_at = $3, updated_at = $4 \
                     WHERE id = $1",
                )
                .bind(id)
                .bind(error)
                .bind(retry_at)
                .bind($crate::catalog::now_micros())
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn sighting_changed(&self, id: &str, actor: &str, why: &str) -> $crate::catalog::Result<()> {
                let mut tx = self.write_tx().await?;
                let n = sqlx::query(
                    "UPDATE sightings SET state = 'changed', last_error = $2, upload_id = NULL, updated_at = $3 \
                     WHERE id = $1 AND state = 'discovered'",
                )
                .bind(id)
                .bind(why)
                .bind($crate::catalog::now_micros())
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if n == 1 {
                    Self::append_in(&mut tx, $crate::custody::kind::CHANGED_DURING_INGEST, actor, None, serde_json::json!({"sighting": id, "reason": why})).await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn commit_archive(
                &self,
                sighting_id: &str,
                rec: &$crate::catalog::NewRecording,
                actor: &str,
                release_after: Option<i64>,
            ) -> $crate::catalog::Result<$crate::catalog::ArchiveOutcome> {
                use $crate::catalog::ArchiveOutcome;
                let mut tx = self.write_tx().await?;
                let s: $crate::catalog::sql::SightingRow = sqlx::query_as("SELECT * FROM sightings WHERE id = $1")
                    .bind(sighting_id)
                    .fetch_optional(&mut *tx)
                    .await?
                    .ok_or_else(|| $crate::catalog::CatalogError::NotFound(format!("sighting {sighting_id}")))?;
                // Idempotent: a retried commit returns what the first one decided.
                match (s.state.as_str(), &s.recording_id) {
                    ("archived", Some(r)) => return Ok(ArchiveOutcome::Archived(r.clone())),
                    ("duplicate", Some(r)) => return Ok(ArchiveOutcome::Duplicate(r.clone())),
                    ("discovered", _) => {}
                    (other, _) => {
                        return Err($crate::catalog::CatalogError::Corrupt(format!("sighting {sighting_id} is {other}, not discovered")))
                    }
                }
                let now = $crate::catalog::now_micros();
                let existing: Option<(String,)> = sqlx::query_as("SELECT id FROM recordings WHERE sha256 = $1")
                    .bind(&rec.sha256)
                    .fetch_optional(&mut *tx)
                    .await?;
                let place = serde_json::json!({"sighting": sighting_id, "dock": s.dock, "path": s.path_display});
                let (outcome, state) = if let Some((existing,)) = existing {
                    let mut d = place.clone();
                    d["redundant_object_key"] = rec.object_key.clone().into();
                    d["sha256"] = rec.sha256.clone().into();
                    d["attribution"] = serde_json::to_value(&rec.attribution).unwrap_or_default();
                    Self::append_in(&mut tx, $crate::custody::kind::DUPLICATE_SIGHTING, actor, Some(&existing), d).await?;
                    // The redundant upload is deleted by a job queued in the same transaction,
                    // so a crash right after this commit cannot leave it behind.
                    let payload = serde_json::json!({"keys": [rec.object_key, rec.manifest_key]});
                    sqlx::query(
                        "INSERT INTO jobs (id, kind, dedupe_key, payload, priority, state, run_at, created_at, updated_at) \
                         VALUES ($1, $2, $3, $4, 0, 'queued', $5, $5, $5) ON CONFLICT (kind, dedupe_key) DO NOTHING",
                    )
                    .bind(uuid::Uuid::now_v7().to_string())
                    .bind($crate::jobs::DELETE_REDUNDANT)
                    .bind(sighting_id)
                    .bind(payload.to_string())
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                    (ArchiveOutcome::Duplicate(existing), "duplicate")
                } else {
                    Self::insert_recording_in(&mut tx, sighting_id, rec, actor, now).await?;
                    let mut d = place.clone();
                    d["sha256"] = rec.sha256.clone().into();
                    d["size"] = rec.size.into();
                    d["object_key"] = rec.object_key.clone().into();
                    d["manifest_key"] = rec.manifest_key.clone().into();
                    d["original_name"] = rec.original_name.clone().into();
                    d["attribution"] = serde_json::to_value(&rec.attribution).unwrap_or_default();
                    Self::append_at(&mut tx, now, $crate::custody::kind::ARCHIVED, actor, Some(sighting_id), d).await?;
                    // Media derivation is queued with the commit; newer recordings first.
                    sqlx::query(
                        "INSERT INTO jobs (id, kind, dedupe_key, payload, priority, state, run_at, created_at, updated_at) \
                         VALUES ($1, $2, $3, $4, $5, 'queued', $6, $6, $6) ON CONFLICT (kind, dedupe_key) DO NOTHING",
                    )
                    .bind(uuid::Uuid::now_v7().to_string())
                    .bind($crate::jobs::DERIVE)
                    .bind(sighting_id)
                    .bind(serde_json::json!({"recording_id": sighting_id}).to_string())
                    .bind(now / 1_000_000)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                    if rec.timestamp {
                        // So is the time-stamp request; it waits in the queue while the TSA is down.
                        sqlx::query(
                            "INSERT INTO jobs (id, kind, dedupe_key, payload, priority, state, run_at, created_at, updated_at) \
                             VALUES ($1, $2, $3, $4, $5, 'queued', $6, $6, $6) ON CONFLICT (kind, dedupe_key) DO NOTHING",
                        )
                        .bind(uuid::Uuid::now_v7().to_string())
                        .bind($crate::jobs::TIMESTAMP)
                        .bind(format!("recording:{sighting_id}"))
                        .bind(
                            $crate::custody::stamper::payload(
                                $crate::catalog::custody::subject::RECORDING,
                                sighting_id,
                                &rec.sha256,
                                &$crate::custody::stamper::recording_token_key(&rec.object_key),
                            )
                            .to_string(),
                        )
                        .bind(now / 1_000_000)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                    }
                    (ArchiveOutcome::Archived(sighting_id.to_string()), "archived")
                };
                let rid = match &outcome {
                    ArchiveOutcome::Archived(r) | ArchiveOutcome::Duplicate(r) => r.clone(),
                };
                sqlx::query(
                    "UPDATE sightings SET state = $2, recording_id = $3, upload_id = NULL, release_after = $4, updated_at = $5 \
                     WHERE id = $1",
                )
                .bind(sighting_id)
                .bind(state)
                .bind(&rid)
                .bind(release_after)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(outcome)
            }

            async fn record_release(&self, id: &str, actor: &str) -> $crate::catalog::Result<()> {
                let mut tx = self.write_tx().await?;
                let s: $crate::catalog::sql::SightingRow = sqlx::query_as("SELECT * FROM sightings WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?
                    .ok_or_else(|| $crate::catalog::CatalogError::NotFound(format!("sighting {id}")))?;
                if s.state == "released" {
                    return Ok(());
                }
                sqlx::query("UPDATE sightings SET state = 'released', released_at = $2, updated_at = $2 WHERE id = $1")
                    .bind(id)
                    .bind($crate::catalog::now_micros())
                    .execute(&mut *tx)
                    .await?;
                let d = serde_json::json!({"sighting": id, "dock": s.dock, "path": s.path_display});
                Self::append_in(&mut tx, $crate::custody::kind::DOCK_RELEASED, actor, s.recording_id.as_deref(), d).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn release_superseded(&self, id: &str) -> $crate::catalog::Result<()> {
                sqlx::query("UPDATE sightings SET state = 'superseded', release_after = NULL, updated_at = $2 WHERE id = $1")
                    .bind(id)
                    .bind($crate::catalog::now_micros())
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn due_releases(&self, node: &str, now: i64) -> $crate::catalog::Result<Vec<$crate::catalog::Sighting>> {
                let rows: Vec<$crate::catalog::sql::SightingRow> = sqlx::query_as(
                    "SELECT * FROM sightings WHERE node = $1 AND state IN ('archived', 'duplicate') \
                     AND release_after IS NOT NULL AND release_after <= $2 ORDER BY release_after, id",
                )
                .bind(node)
                .bind(now)
                .fetch_all(&self.pool)
                .await?;
                Ok(rows.into_iter().map(Into::into).collect())
            }

            async fn recording(&self, id: &str) -> $crate::catalog::Result<$crate::catalog::Recording> {
                let row: Option<$crate::catalog::sql::RecordingRow> =
                    sqlx::query_as("SELECT * FROM recordings WHERE id = $1").bind(id).fetch_optional(&self.pool).await?;
                let row = row.ok_or_else(|| $crate::catalog::CatalogError::NotFound(format!("recording {id}")))?;
                let sightings = self.sightings_of(std::slice::from_ref(&row.id)).await?.into_iter().map(|(_, v)| v).collect();
                Ok(row.into_recording(sightings))
            }

            async fn list_recordings(
                &self,
                f: &$crate::catalog::RecordingFilter,
            ) -> $crate::catalog::Result<Vec<$crate::catalog::Recording>> {
                use $crate::catalog::sql::like_escape;
                let mut qb = sqlx::QueryBuilder::<$db>::new("SELECT * FROM recordings WHERE 1 = 1");
                for (col, v) in [("officer", &f.officer), ("device", &f.device), ("category", &f.category), ("state", &f.state), ("officer", &f.scope_officer)] {
                    if let Some(v) = v {
                        qb.push(format!(" AND {col} = ")).push_bind(v.clone());
                    }
                }
                for u in [&f.unit, &f.scope_unit].into_iter().flatten().filter(|u| !u.is_empty()) {
                    qb.push(" AND (unit = ").push_bind(u.clone());
                    qb.push(" OR unit LIKE ").push_bind(format!("{}/%", like_escape(u))).push(" ESCAPE '\\')");
                }
                if let Some(g) = &f.scope_grantee {
                    qb.push(" AND (classification <> 'state_secret' OR EXISTS (SELECT 1 FROM grants g WHERE g.recording_id = recordings.id AND g.principal = ");
                    qb.push_bind(g.clone()).push("))");
                }
                if let Some(c) = &f.case {
                    qb.push(" AND EXISTS (SELECT 1 FROM case_links l WHERE l.recording_id = recordings.id AND l.case_id = ");
                    qb.push_bind(c.clone()).push(")");
                }
                if let Some(t) = f.from {
                    qb.push(" AND sort_at >= ").push_bind(t);
                }
                if let Some(t) = f.to {
                    qb.push(" AND sort_at < ").push_bind(t);
                }
                if let Some(b) = f.needs_review {
                    qb.push(" AND needs_review = ").push_bind(b);
                }
                if let Some((s, id)) = &f.after {
                    qb.push(" AND (sort_at < ").push_bind(*s);
                    qb.push(" OR (sort_at = ").push_bind(*s).push(" AND id < ").push_bind(id.clone()).push("))");
                }
                qb.push(" ORDER BY sort_at DESC, id DESC LIMIT ").push_bind(f.limit);
                let rows: Vec<$crate::catalog::sql::RecordingRow> = qb.build_query_as().fetch_all(&self.pool).await?;
                let ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
                let mut sightings = self.sightings_of(&ids).await?;
                Ok(rows
                    .into_iter()
                    .map(|r| {
                        let mine = sightings.iter().filter(|(rid, _)| *rid == r.id).map(|(_, v)| v.clone()).collect();
                        sightings.retain(|(rid, _)| *rid != r.id);
                        r.into_recording(mine)
                    })
                    .collect())
            }

            async fn custody_events(
                &self,
                recording_id: Option<&str>,
                after_seq: i64,
                limit: i64,
            ) -> $crate::catalog::Result<Vec<$crate::catalog::CustodyEvent>> {
                let rows: Vec<$crate::catalog::sql::EventRow> = match recording_id {
                    Some(r) => sqlx::query_as(
                        "SELECT * FROM custody_events WHERE recording_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
                    )
                    .bind(r)
                    .bind(after_seq)
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?,
                    None => sqlx::query_as("SELECT * FROM custody_events WHERE seq > $1 ORDER BY seq LIMIT $2")
                        .bind(after_seq)
                        .bind(limit)
                        .fetch_all(&self.pool)
                        .await?,
                };
                Ok(rows.into_iter().map(Into::into).collect())
            }

            async fn append_custody(
                &self,
                kind: &str,
                actor: &str,
                recording_id: Option<&str>,
                details: serde_json::Value,
            ) -> $crate::catalog::Result<i64> {
                let mut tx = self.write_tx().await?;
                let seq = Self::append_in(&mut tx, kind, actor, recording_id, details).await?;
                tx.commit().await?;
                Ok(seq)
            }

            async fn set_media(&self, id: &str, u: &$crate::catalog::MediaUpdate, actor: &str) -> $crate::catalog::Result<()> {
                let mut tx = self.write_tx().await?;
                let now = $crate::catalog::now_micros();
                let n = Self::apply_media_in(&mut tx, id, u, now).await?;
                if n == 0 {
                    // Fenced: only the first derivation of a recording commits. A worker that
                    // lost its lease (frozen, cut off) and finishes late is refused here.
                    let state: Option<(String,)> =
                        sqlx::query_as("SELECT media_state FROM recordings WHERE id = $1").bind(id).fetch_optional(&mut *tx).await?;
                    return Err(match state {
                        Some((s,)) => $crate::catalog::CatalogError::Refused(format!("media of recording {id} is already recorded ({s})")),
                        None => $crate::catalog::CatalogError::NotFound(format!("recording {id}")),
                    });
                }
                let d = $crate::catalog::media_details(u);
                Self::append_at(&mut tx, now, $crate::custody::kind::DERIVED, actor, Some(id), d).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn create_clip(&self, c: &$crate::catalog::NewClip) -> $crate::catalog::Result<$crate::catalog::Clip> {
                let mut tx = self.write_tx().await?;
                let id = uuid::Uuid::now_v7().to_string();
                let now = $crate::catalog::now_micros();
                sqlx::query(
                    "INSERT INTO clips (id, recording_id, start_ms, end_ms, accurate, reason, actor, state, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', $8)",
                )
                .bind(&id)
                .bind(&c.recording_id)
                .bind(c.start_ms)
                .bind(c.end_ms)
                .bind(c.accurate)
                .bind(&c.reason)
                .bind(&c.actor)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "INSERT INTO jobs (id, kind, dedupe_key, payload, priority, state, run_at, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, 'queued', $6, $6, $6)",
                )
                .bind(uuid::Uuid::now_v7().to_string())
                .bind($crate::jobs::CLIP)
                .bind(&id)
                .bind(serde_json::json!({"clip_id": id}).to_string())
                // Someone is waiting for a clip: ahead of background derivation.
                .bind(i64::MAX / 2)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                let row: $crate::catalog::sql::ClipRow =
                    sqlx::query_as("SELECT * FROM clips WHERE id = $1").bind(&id).fetch_one(&mut *tx).await?;
                tx.commit().await?;
                Ok(row.into())
            }

            async fn clip(&self, id: &str) -> $crate::catalog::Result<$crate::catalog::Clip> {
                let row: Option<$crate::catalog::sql::ClipRow> =
                    sqlx::query_as("SELECT * FROM clips WHERE id = $1").bind(id).fetch_optional(&self.pool).await?;
                row.map(Into::into).ok_or_else(|| $crate::catalog::CatalogError::NotFound(format!("clip {id}")))
            }

            async fn finish_clip(
                &self,
                id: &str,
                result: std::result::Result<$crate::catalog::ObjectRef, String>,
            ) -> $crate::catalog::Result<()> {
                let mut tx = self.write_tx().await?;
                let c: $crate::catalog::sql::ClipRow = sqlx::query_as("SELECT * FROM clips WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?
                    .ok_or_else(|| $crate::catalog::CatalogError::NotFound(format!("clip {id}")))?;
                if c.state != "pending" {
                    return Ok(());
                }
                let now = $crate::catalog::now_micros();
                match result {
                    Ok(o) => {
                        sqlx::query(
                            "UPDATE clips SET state = 'ready', object_key = $2, sha256 = $3, size = $4, content_type = $5, \
                             finished_at = $6 WHERE id = $1",
                        )
                        .bind(id)
                        .bind(&o.key)
                        .bind(&o.sha256)
                        .bind(o.size)
                        .bind(&o.content_type)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                        let d = serde_json::json!({
                            "clip": id, "source_recording": c.recording_id, "start_ms": c.start_ms, "end_ms": c.end_ms,
                            "accurate": c.accurate, "requested_by": c.actor, "reason": c.reason,
                            "sha256": o.sha256, "size": o.size, "object_key": o.key,
                        });
                        Self::append_in(&mut tx, $crate::custody::kind::CLIPPED, &c.actor, Some(&c.recording_id), d).await?;
                    }
                    Err(e) => {
                        sqlx::query("UPDATE clips SET state = 'failed', error = $2, finished_at = $3 WHERE id = $1")
                            .bind(id)
                            .bind(e)
                            .bind(now)
                            .execute(&mut *tx)
                            .await?;
                    }
                }
                tx.commit().await?;
                Ok(())
            }

            async fn enqueue(
                &self,
                kind: &str,
                dedupe_key: &str,
                payload: &serde_json::Value,
                priority: i64,
                run_at: i64,
            ) -> $crate::catalog::Result<bool> {
                let now = $crate::catalog::now_micros();
                let n = sqlx::query(
                    "INSERT INTO jobs (id, kind, dedupe_key, payload, priority, state, run_at, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, 'queued', $6, $7, $7) ON CONFLICT (kind, dedupe_key) DO NOTHING",
                )
                .bind(uuid::Uuid::now_v7().to_string())
                .bind(kind)
                .bind(dedupe_key)
                .bind(payload.to_string())
                .bind(priority)
                .bind(run_at)
                .bind(now)
                .execute(&self.pool)
                .await?
                .rows_affected();
                Ok(n == 1)
            }

            async fn claim(
                &self,
                kinds: &[&str],
                owner: &str,
                lease_micros: i64,
            ) -> $crate::catalog::Result<Option<$crate::catalog::Job>> {
                if kinds.is_empty() {
                    return Ok(None);
                }
                let now = $crate::catalog::now_micros();
                let mut tx = self.claim_tx().await?;
                let mut qb = sqlx::QueryBuilder::<$db>::new(
                    "SELECT id, kind, dedupe_key, payload, attempts FROM jobs WHERE kind IN (",
                );
                let mut sep = qb.separated(", ");
                for k in kinds {
                    sep.push_bind(k.to_string());
                }
                qb.push(") AND ((state = 'queued' AND run_at <= ").push_bind(now);
                qb.push(") OR (state = 'running' AND lease_until < ").push_bind(now);
                qb.push(")) ORDER BY priority DESC, run_at, id LIMIT 1");
                qb.push(Self::SKIP_LOCKED);
                let row: Option<(String, String, String, String, i64)> = qb.build_query_as().fetch_optional(&mut *tx).await?;
                let Some((id, kind, dedupe_key, payload, attempts)) = row else {
                    tx.commit().await?;
                    return Ok(None);
                };
                let token = uuid::Uuid::new_v4().to_string();
                sqlx::query(
                    "UPDATE jobs SET state = 'running', lease_owner = $2, lease_token = $3, lease_until = $4, \
                     attempts = attempts + 1, updated_at = $5 WHERE id = $1",
                )
                .bind(&id)
                .bind(owner)
                .bind(&token)
                .bind(now + lease_micros)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(Some($crate::catalog::Job {
                    id,
                    kind,
                    dedupe_key,
                    payload: serde_json::from_str(&payload).unwrap_or(serde_json::Value::Null),
                    attempts: attempts + 1,
                    lease_token: token,
                }))
            }

            async fn heartbeat(&self, job_id: &str, token: &str, lease_micros: i64) -> $crate::catalog::Result<()> {
                let now = $crate::catalog::now_micros();
                let n = sqlx::query(
                    "UPDATE jobs SET lease_until = $3, updated_at = $4 WHERE id = $1 AND lease_token = $2 AND state = 'running'",
                )
                .bind(job_id)
                .bind(token)
                .bind(now + lease_micros)
                .bind(now)
                .execute(&self.pool)
                .await?
                .rows_affected();
                if n == 1 { Ok(()) } else { Err($crate::catalog::CatalogError::LeaseLost(job_id.to_string())) }
            }

            async fn complete(&self, job_id: &str, token: &str) -> $crate::catalog::Result<()> {
                let n = sqlx::query(
                    "UPDATE jobs SET state = 'done', lease_owner = NULL, lease_until = NULL, updated_at = $3 \
                     WHERE id = $1 AND lease_token = $2 AND state = 'running'",
                )
                .bind(job_id)
                .bind(token)
                .bind($crate::catalog::now_micros())
                .execute(&self.pool)
                .await?
                .rows_affected();
                if n == 1 { Ok(()) } else { Err($crate::catalog::CatalogError::LeaseLost(job_id.to_string())) }
            }

            async fn retry_later(&self, job_id: &str, token: &str, error: &str, run_at: i64) -> $crate::catalog::Result<()> {
                let n = sqlx::query(
                    "UPDATE jobs SET state = 'queued', lease_owner = NULL, lease_until = NULL, last_error = $3, run_at = $4, \
                     updated_at = $5 WHERE id = $1 AND lease_token = $2 AND state = 'running'",
                )
                .bind(job_id)
                .bind(token)
                .bind(error)
                .bind(run_at)
                .bind($crate::catalog::now_micros())
                .execute(&self.pool)
                .await?
                .rows_affected();
                if n == 1 { Ok(()) } else { Err($crate::catalog::CatalogError::LeaseLost(job_id.to_string())) }
            }

            async fn release_leases(&self, owner: &str) -> $crate::catalog::Result<u64> {
                let n = sqlx::query("UPDATE jobs SET lease_until = 0 WHERE lease_owner = $1 AND state = 'running'")
                    .bind(owner)
                    .execute(&self.pool)
                    .await?
                    .rows_affected();
                Ok(n)
            }

            async fn queue_depth(&self) -> $crate::catalog::Result<$crate::catalog::QueueDepth> {
                let rows: Vec<(String, i64)> =
                    sqlx::query_as("SELECT state, COUNT(*) FROM jobs WHERE state IN ('queued', 'running') GROUP BY state")
                        .fetch_all(&self.pool)
                        .await?;
                let mut d = $crate::catalog::QueueDepth::default();
                for (state, n) in rows {
                    if state == "queued" { d.queued = n } else { d.running = n }
                }
                Ok(d)
            }

            async fn create_principal(
                &self,
                p: &$crate::catalog::Principal,
                token_sha256: &str,
                actor: &str,
            ) -> $crate::catalog::Result<()> {
                let mut tx = self.write_tx().await?;
                sqlx::query(
                    "INSERT INTO principals (name, role, unit, officer, token_sha256, created_at, expires_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(&p.name)
                .bind(&p.role)
                .bind(&p.unit)
                .bind(&p.officer)
                .bind(token_sha256)
                .bind(p.created_at)
                .bind(p.expires_at)
                .execute(&mut *tx)
                .await
                .map_err(|e| match $crate::catalog::CatalogError::from(e) {
                    $crate::catalog::CatalogError::Conflict(_) => $crate::catalog::CatalogError::Conflict(format!("principal {}", p.name)),
                    other => other,
                })?;
                let d = serde_json::json!({"action": "created", "name": p.name, "role": p.role, "unit": p.unit});
                Self::append_in(&mut tx, $crate::custody::kind::PRINCIPAL, actor, None, d).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn principals(&self) -> $crate::catalog::Result<Vec<$crate::catalog::Principal>> {
                let rows: Vec<$crate::catalog::sql::PrincipalRow> =
                    sqlx::query_as("SELECT name, role, unit, officer, created_at, expires_at, revoked_at FROM principals ORDER BY name")
                        .fetch_all(&self.pool)
                        .await?;
                Ok(rows.into_iter().map(Into::into).collect())
            }

            async fn revoke_principal(&self, name: &str, actor: &str) -> $crate::catalog::Result<()> {
                let mut tx = self.write_tx().await?;
                let n = sqlx::query("UPDATE principals SET revoked_at = $2 WHERE name = $1 AND revoked_at IS NULL")
                    .bind(name)
                    .bind($crate::catalog::now_micros())
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if n == 0 {
                    let exists: Option<(String,)> =
                        sqlx::query_as("SELECT name FROM principals WHERE name = $1").bind(name).fetch_optional(&mut *tx).await?;
                    if exists.is_none() {
                        return Err($crate::catalog::CatalogError::NotFound(format!("principal {name}")));
                    }
                } else {
                    let d = serde_json::json!({"action": "revoked", "name": name});
                    Self::append_in(&mut tx, $crate::custody::kind::PRINCIPAL, actor, None, d).await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn principal_by_token(&self, token_sha256: &str) -> $crate::catalog::Result<Option<$crate::catalog::Principal>> {
                let row: Option<$crate::catalog::sql::PrincipalRow> = sqlx::query_as(
                    "SELECT name, role, unit, officer, created_at, expires_at, revoked_at FROM principals WHERE token_sha256 = $1",
                )
                .bind(token_sha256)
                .fetch_optional(&self.pool)
                .await?;
                Ok(row.map(Into::into))
            }
        }
    };
}

pub(super) use impl_catalog;
