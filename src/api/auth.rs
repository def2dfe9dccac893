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

/// A field of a new principal that does not pass [`new_principal`]. Displays as `FIELD: why`
/// (with the value where it helps); the CLI prefixes `--`, the API answers 400 [`code`](Self::code).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}{}: {message}", .value.as_ref().map(|v| format!(" {v:?}")).unwrap_or_default())]
pub struct InvalidPrincipal {
    /// `name`, `role`, `unit`, `officer` or `expires`.
    pub field: &'static str,
    /// The rejected value, when naming it helps.
    pub value: Option<String>,
    /// Why.
    pub message: String,
}

impl InvalidPrincipal {
    /// The API error code: `invalid_name`, `invalid_role`, `invalid_unit`, `invalid_officer`, `invalid_expires`.
    pub fn code(&self) -> &'static str {
        match self.field {
            "name" => "invalid_name",
            "role" => "invalid_role",
            "unit" => "invalid_unit",
            "officer" => "invalid_officer",
            _ => "invalid_expires",
        }
    }
}

fn printable(s: &str, max: usize) -> bool {
    !s.is_empty() && s.len() <= max && !s.chars().any(char::is_control)
}

/// Checks and builds a new principal, created now, for `token create` and `POST /principals`:
/// `role` one of [`ROLES`]; `name` 1 to 128 printable characters; `unit` (empty or `/` = the root)
/// without its outer slashes; `officer` only for role officer (default: the name); `expires` a
/// lifetime such as `90d` or `12h` (none: no expiry).
pub fn new_principal(
    name: &str,
    role: &str,
    unit: &str,
    officer: Option<&str>,
    expires: Option<&str>,
) -> Result<Principal, InvalidPrincipal> {
    let invalid = |field, value: Option<&str>, message: String| InvalidPrincipal { field, value: value.map(str::to_string), message };
    if !ROLES.contains(&role) {
        return Err(invalid("role", Some(role), format!("expected one of {}", ROLES.join(", "))));
    }
    if !printable(name, 128) {
        return Err(invalid("name", None, "must be 1 to 128 printable characters".into()));
    }
    let unit = unit.trim_matches('/');
    if unit.len() > 256 || unit.chars().any(char::is_control) {
        return Err(invalid("unit", None, "at most 256 bytes, no control characters".into()));
    }
    if let Some(o) = officer.filter(|o| !printable(o, 128)) {
        return Err(invalid("officer", Some(o), "must be 1 to 128 printable characters".into()));
    }
    let now = crate::catalog::now_micros();
    let expires_at = match expires {
        Some(e) => {
            let d = humantime::parse_duration(e).map_err(|err| invalid("expires", Some(e), err.to_string()))?;
            let at = i64::try_from(d.as_micros()).ok().and_then(|m| now.checked_add(m));
            Some(at.ok_or_else(|| invalid("expires", Some(e), "too far in the future".into()))?)
        }
        None => None,
    };
    let officer = (role == "officer").then(|| officer.unwrap_or(name).to_string());
    Ok(Principal {
        name: name.to_string(),
        role: role.to_string(),
        unit: unit.to_string(),
        officer,
        created_at: now,
        expires_at,
        revoked_at: None,
    })
}

/// A principal's state at `now` (micros): `revoked`, `expired` or `active`.
pub fn principal_state(p: &Principal, now: i64) -> &'static str {
    if p.revoked_at.is_some() {
        "revoked"
    } else if p.expires_at.is_some_and(|t| t <= now) {
        "expired"
    } else {
        "active"
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_principal_checks_like_token_create() {
        let p = new_principal("P7", "officer", "/JS/NJ/", None, Some("90d")).unwrap();
        assert_eq!((p.unit.as_str(), p.officer.as_deref()), ("JS/NJ", Some("P7")));
        assert_eq!(p.expires_at.unwrap() - p.created_at, 90 * 86_400_000_000);
        assert_eq!(principal_state(&p, p.created_at), "active");
        assert_eq!(principal_state(&p, p.expires_at.unwrap()), "expired");
        let s = new_principal("s", "supervisor", "", Some("X"), None).unwrap();
        assert!(s.officer.is_none() && s.expires_at.is_none() && s.revoked_at.is_none());

        let cli = |e: InvalidPrincipal| (e.code(), format!("--{e}"));
        let role = "--role \"chief\": expected one of officer, supervisor, archivist, auditor, admin";
        assert_eq!(cli(new_principal("x", "chief", "", None, None).unwrap_err()), ("invalid_role", role.into()));
        let name = "--name: must be 1 to 128 printable characters";
        for bad in ["", "a\nb", &"y".repeat(129)] {
            assert_eq!(cli(new_principal(bad, "admin", "", None, None).unwrap_err()), ("invalid_name", name.into()));
        }
        let (code, msg) = cli(new_principal("x", "admin", "", None, Some("soon")).unwrap_err());
        assert!(code == "invalid_expires" && msg.starts_with("--expires \"soon\": "), "{msg}");
        let (code, _) = cli(new_principal("x", "admin", "", None, Some("100000000000y")).unwrap_err());
        assert_eq!(code, "invalid_expires");
        assert_eq!(new_principal("x", "officer", "", Some(""), None).unwrap_err().code(), "invalid_officer");
        assert_eq!(new_principal("x", "admin", "a\tb", None, None).unwrap_err().code(), "invalid_unit");
    }
}
