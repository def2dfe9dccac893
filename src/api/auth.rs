//! Bearer tokens: 256 random bits, shown once, stored only as their SHA-256 (a fast hash is
//! enough for random secrets, and a slow password hash would cost every request tens of
//! milliseconds). The `Caller` extractor resolves the principal and its scope.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};

use super::{ApiError, AppState};
use crate::catalog::{Principal, RecordingFilter};

/// Roles, from least to most footage access.
pub const ROLES: [&str; 5] = ["officer", "supervisor", "archivist", "auditor", "admin"];

/// A new random token (`evd_` + 43 base64url characters).
pub fn new_token() -> String {
    let mut b = [0u8; 32];
    rand::rng().fill_bytes(&mut b);
    format!("evd_{}", URL_SAFE_NO_PAD.encode(b))
}

/// The stored form of a token.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The authenticated principal of a request.
#[derive(Debug, Clone)]
pub struct Caller(pub Principal);

impl Caller {
    /// Restricts a filter to what this caller may see; admins see no footage.
    pub fn scope(&self, f: &mut RecordingFilter) -> Result<(), ApiError> {
        match self.0.role.as_str() {
            "officer" => {
                f.scope_officer = Some(self.0.officer.clone().unwrap_or_else(|| self.0.name.clone()));
                f.scope_unit = Some(self.0.unit.clone());
            }
            "admin" => return Err(ApiError::Forbidden("admins manage principals and do not see footage".into())),
            _ => f.scope_unit = Some(self.0.unit.clone()),
        }
        Ok(())
    }

    /// Whether a recording with this officer and unit is in scope.
    pub fn may_see(&self, officer: Option<&str>, unit: Option<&str>) -> bool {
        let unit_ok = self.0.unit.is_empty() || unit.is_some_and(|u| u == self.0.unit || u.starts_with(&format!("{}/", self.0.unit)));
        match self.0.role.as_str() {
            "admin" => false,
            "officer" => unit_ok && officer == Some(self.0.officer.as_deref().unwrap_or(&self.0.name)),
            _ => unit_ok,
        }
    }

    /// Fails with 403 unless the role is one of `roles`.
    pub fn require(&self, roles: &[&str]) -> Result<(), ApiError> {
        if roles.contains(&self.0.role.as_str()) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!("role {} may not do this", self.0.role)))
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let header = parts.headers.get(axum::http::header::AUTHORIZATION).ok_or(ApiError::Unauthorized)?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")))
            .map(str::trim)
            .ok_or(ApiError::Unauthorized)?;
        if token.len() > 200 {
            return Err(ApiError::Unauthorized);
        }
        let p = state.catalog.principal_by_token(&token_hash(token)).await?.ok_or(ApiError::Unauthorized)?;
        let now = crate::catalog::now_micros();
        if p.revoked_at.is_some() || p.expires_at.is_some_and(|t| t <= now) {
            return Err(ApiError::Unauthorized);
        }
        Ok(Caller(p))
    }
}
