//! The shared SQL of [`super::updates::RecordingUpdates`] for both backends, expanded per backend
//! like `sql.rs`'s `impl_catalog!`: each change and its custody event commit in one transaction
//! that holds the chain lock.

/// Expands `RecordingUpdates` for backend type `$ty` over database `$db`.
macro_rules! impl_recording_updates {
    ($ty:ty, $db:ty) => {
        impl $ty {
            /// The mutable fields of a recording, read inside the write transaction.
            async fn current(
                tx: &mut sqlx::Transaction<'static, $db>,
                id: &str,
            ) -> $crate::catalog::Result<$crate::catalog::updates_sql::Current> {
                sqlx::query_as(
                    "SELECT device, officer, unit, started_at, needs_review, classification, category, legal_hold, hold_reason \
                     FROM recordings WHERE id = $1",
                )
                .bind(id)
                .fetch_optional(&mut **tx)
                .await?
                .ok_or_else(|| $crate::catalog::CatalogError::NotFound(format!("recording {id}")))
            }
        }

        #[async_trait::async_trait]
        impl $crate::catalog::updates::RecordingUpdates for $ty {
            async fn correct_attribution(
                &self,
                id: &str,
                fix: &$crate::catalog::updates::AttributionFix,
                actor: &str,
            ) -> $crate::catalog::Result<$crate::catalog::Recording> {
                let mut tx = self.write_tx().await?;
                let old = Self::current(&mut tx, id).await?;
                let new_started = fix.started_at.or(old.started_at);
                sqlx::query(
                    "UPDATE recordings SET device = $2, officer = $3, unit = $4, started_at = $5, needs_review = $6, \
                     sort_at = COALESCE($5, sort_at) WHERE id = $1",
                )
                .bind(id)
                .bind(fix.device.as_ref().or(old.device.as_ref()))
                .bind(fix.officer.as_ref().or(old.officer.as_ref()))
                .bind(fix.unit.as_ref().or(old.unit.as_ref()))
                .bind(new_started)
                .bind(fix.needs_review.unwrap_or(old.needs_review))
                .execute(&mut *tx)
                .await?;
                let at = |t: Option<i64>| t.map($crate::custody::format_at);
                let d = serde_json::json!({
                    "old": {"device": old.device, "officer": old.officer, "unit": old.unit, "started_at": at(old.started_at), "needs_review": old.needs_review},
                    "new": {"device": fix.device, "officer": fix.officer, "unit": fix.unit, "started_at": at(fix.started_at), "needs_review": fix.needs_review},
                    "reason": fix.reason,
                });
                Self::append_in(&mut tx, $crate::custody::kind::ATTRIBUTED, actor, Some(id), d).await?;
                tx.commit().await?;
                $crate::catalog::Catalog::recording(self, id).await
            }

            async fn set_classification(
                &self,
                id: &str,
                classification: &str,
                reason: &str,
                actor: &str,
            ) -> $crate::catalog::Result<$crate::catalog::Recording> {
                let mut tx = self.write_tx().await?;
                let old = Self::current(&mut tx, id).await?;
                sqlx::query("UPDATE recordings SET classification = $2 WHERE id = $1").bind(id).bind(classification).execute(&mut *tx).await?;
                let d = serde_json::json!({"old": old.classification, "new": classification, "reason": reason});
                Self::append_in(&mut tx, $crate::custody::kind::CLASSIFIED, actor, Some(id), d).await?;
                tx.commit().await?;
                $crate::catalog::Catalog::recording(self, id).await
            }

            async fn set_category(
                &self,
                id: &str,
                category: Option<&str>,
                reason: Option<&str>,
                actor: &str,
            ) -> $crate::catalog::Result<$crate::catalog::Recording> {
                let mut tx = self.write_tx().await?;
                let old = Self::current(&mut tx, id).await?;
                let new = category.unwrap_or("uncategorized");
                sqlx::query("UPDATE recordings SET category = $2 WHERE id = $1").bind(id).bind(new).execute(&mut *tx).await?;
                let d = serde_json::json!({"old": old.category, "new": new, "reason": reason});
                Self::append_in(&mut tx, $crate::custody::kind::CATEGORISED, actor, Some(id), d).await?;
                tx.commit().await?;
                $crate::catalog::Catalog::recording(self, id).await
            }

            async fn place_hold(&self, id: &str, reason: &str, actor: &str) -> $crate::catalog::Result<$crate::catalog::Recording> {
                let mut tx = self.write_tx().await?;
                let old = Self::current(&mut tx, id).await?;
                sqlx::query("UPDATE recordings SET legal_hold = TRUE, hold_reason = $2 WHERE id = $1")
                    .bind(id)
                    .bind(reason)
                    .execute(&mut *tx)
                    .await?;
                let d = serde_json::json!({"reason": reason, "was_held": old.legal_hold, "previous_reason": old.hold_reason});
                Self::append_in(&mut tx, $crate::custody::kind::HELD, actor, Some(id), d).await?;
                tx.commit().await?;
                $crate::catalog::Catalog::recording(self, id).await
            }

            async fn lift_hold(&self, id: &str, reason: Option<&str>, actor: &str) -> $crate::catalog::Result<$crate::catalog::Recording> {
                let mut tx = self.write_tx().await?;
                let old = Self::current(&mut tx, id).await?;
                if old.legal_hold {
                    sqlx::query("UPDATE recordings SET legal_hold = FALSE, hold_reason = NULL WHERE id = $1").bind(id).execute(&mut *tx).await?;
                    let d = serde_json::json!({"reason": reason, "hold_reason": old.hold_reason});
                    Self::append_in(&mut tx, $crate::custody::kind::HOLD_RELEASED, actor, Some(id), d).await?;
                }
                tx.commit().await?;
                $crate::catalog::Catalog::recording(self, id).await
            }
        }
    };
}

pub(super) use impl_recording_updates;

/// The mutable fields of a recording before a change.
#[derive(sqlx::FromRow)]
pub(super) struct Current {
    pub device: Option<String>,
    pub officer: Option<String>,
    pub unit: Option<String>,
    pub started_at: Option<i64>,
    pub needs_review: bool,
    pub classification: String,
    pub category: String,
    pub legal_hold: bool,
    pub hold_reason: Option<String>,
}
