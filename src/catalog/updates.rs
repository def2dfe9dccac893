//! Changes people make to an archived recording after the fact — attribution corrections,
//! classification, retention category, legal hold — each committed together with the custody
//! event that records who changed what from which value to which, and why. A supertrait of
//! [`super::Catalog`]; both backends implement it with the shared SQL in `updates_sql.rs`.

use super::{Recording, Result};
use async_trait::async_trait;

/// The classifications a recording can carry (CONTRACT.md), least to most restricted.
pub const CLASSIFICATIONS: [&str; 4] = ["normal", "privacy", "trade_secret", "state_secret"];

/// An attribution correction (`PATCH /api/v1/recordings/{id}`): only the fields given change.
#[derive(Debug, Clone, Default)]
pub struct AttributionFix {
    /// Device serial.
    pub device: Option<String>,
    /// Officer id.
    pub officer: Option<String>,
    /// Unit path (`JS/NJ/XW`).
    pub unit: Option<String>,
    /// Start time, micros (the API takes RFC 3339).
    pub started_at: Option<i64>,
    /// Clear (false) or raise (true) the review flag; corrections usually clear it.
    pub needs_review: Option<bool>,
    /// Why (kept in the custody event).
    pub reason: Option<String>,
}

/// Recording changes (see the module docs). Each returns the recording as it is afterwards.
#[async_trait]
pub trait RecordingUpdates: Send + Sync {
    /// Corrects attribution fields; an `attributed` event keeps the old and new values.
    async fn correct_attribution(&self, id: &str, fix: &AttributionFix, actor: &str) -> Result<Recording>;
    /// Sets the classification; a `classified` event keeps old, new and the reason.
    async fn set_classification(&self, id: &str, classification: &str, reason: &str, actor: &str) -> Result<Recording>;
    /// Sets the retention category (`None`: back to `uncategorized`); a `categorised` event.
    async fn set_category(&self, id: &str, category: Option<&str>, reason: Option<&str>, actor: &str) -> Result<Recording>;
    /// Places a legal hold; a `held` event. A hold already in place only gets a new reason.
    async fn place_hold(&self, id: &str, reason: &str, actor: &str) -> Result<Recording>;
    /// Lifts a legal hold; a `hold_released` event. Lifting a hold that is off changes nothing.
    async fn lift_hold(&self, id: &str, reason: Option<&str>, actor: &str) -> Result<Recording>;
}
