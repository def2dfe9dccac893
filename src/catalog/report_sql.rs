//! The shared SQL of [`super::report::ReportRecords`] for both backends, expanded per backend like
//! `sql.rs`'s `impl_catalog!`. Three grouped queries in plain SQL (no backend-specific
//! functions; sums cast to BIGINT since PostgreSQL sums BIGINT as NUMERIC), merged in Rust.

/// Expands `ReportRecords` for backend type `$ty`.
macro_rules! impl_report_records {
    ($ty:ty, $db:ty) => {
        #[async_trait::async_trait]
        impl $crate::catalog::report::ReportRecords for $ty {
            async fn report_rows(&self, from: i64, to: i64) -> $crate::catalog::Result<Vec<$crate::catalog::report::ReportRow>> {
                let recordings: Vec<(String, String, i64, i64, i64)> = sqlx::query_as(
                    "SELECT COALESCE(unit, ''), category, COUNT(*), CAST(COALESCE(SUM(duration_ms), 0) AS BIGINT), \
                     CAST(COALESCE(SUM(size), 0) AS BIGINT) \
                     FROM recordings WHERE archived_at >= $1 AND archived_at < $2 GROUP BY COALESCE(unit, ''), category",
                )
                .bind(from)
                .bind(to)
                .fetch_all(&self.pool)
                .await?;
                let events: Vec<(String, String, String, i64)> = sqlx::query_as(&format!(
                    "SELECT COALESCE(r.unit, ''), r.category, e.kind, COUNT(*) \
                     FROM custody_events e JOIN recordings r ON r.id = e.recording_id \
                     WHERE e.kind IN ({kinds}) AND e.at >= $1 AND e.at < $2 \
                     GROUP BY COALESCE(r.unit, ''), r.category, e.kind",
                    kinds = $crate::catalog::report::EVENT_KINDS
                ))
                .bind(from)
                .bind(to)
                .fetch_all(&self.pool)
                .await?;
                let clips: Vec<(String, String, i64)> = sqlx::query_as(
                    "SELECT COALESCE(r.unit, ''), r.category, COUNT(*) \
                     FROM clips c JOIN recordings r ON r.id = c.recording_id \
                     WHERE c.created_at >= $1 AND c.created_at < $2 AND c.state <> 'failed' \
                     GROUP BY COALESCE(r.unit, ''), r.category",
                )
                .bind(from)
                .bind(to)
                .fetch_all(&self.pool)
                .await?;
                Ok($crate::catalog::report::merge(recordings, events, clips))
            }
        }
    };
}

pub(super) use impl_report_records;
