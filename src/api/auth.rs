//! Authentication: bearer tokens (256 random bits, shown once, stored only as their SHA-256: a
//! fast hash is enough for random secrets, and a slow password hash would cost every request
//! tens of milliseconds) or the console's session cookie; the `Caller` extractor resolves either
//! to the principal and its scope, and the failure limiter locks out brute-force clients.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
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
pub struct Caller(
    /// Who: the authenticated principal.
    pub Principal,
    /// From where: the client address the request came from (absent in router tests), kept in
    /// audited access events.
    pub Option<std::net::IpAddr>,
);

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
        if !self.sees_all_classified() {
            f.scope_grantee = Some(self.0.name.clone());
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

    /// Whether this caller sees the metadata of `state_secret` recordings in its scope without
    /// a grant: archivists (who grant access) and auditors (who audit it). Their content still
    /// needs a grant like anyone's.
    pub fn sees_all_classified(&self) -> bool {
        matches!(self.0.role.as_str(), "archivist" | "auditor")
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

/// Failed bearer checks one client may make per [`FAILURE_WINDOW`] before it is locked out.
pub const MAX_FAILURES: u32 = 20;
/// The window failures are counted in; a locked-out client waits until it ends.
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// Clients tracked at once: beyond this, expired entries are dropped, then the oldest.
const MAX_TRACKED: usize = 10_000;

/// Counts failed bearer checks per client address (IPv6 per /64) and locks out a client that
/// makes [`MAX_FAILURES`] of them within [`FAILURE_WINDOW`]: until the window that began with its
/// first failure ends, every request it sends, even with a valid token, answers 429 (a brute
/// force must not learn that a guess was right). Successful requests are not counted. Installed
/// by the server as an `Extension` next to `ConnectInfo`; without either (router tests), nothing
/// is limited.
#[derive(Debug)]
pub struct FailureLimiter {
    clients: Mutex<HashMap<IpAddr, Failures>>,
    max_failures: u32,
    window: Duration,
    max_tracked: usize,
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    since: Instant,
    count: u32,
}

impl Default for FailureLimiter {
    fn default() -> Self {
        FailureLimiter::new(MAX_FAILURES, FAILURE_WINDOW, MAX_TRACKED)
    }
}

impl FailureLimiter {
    /// A limiter allowing `max_failures` per `window`, tracking at most `max_tracked` clients.
    pub fn new(max_failures: u32, window: Duration, max_tracked: usize) -> Self {
        FailureLimiter { clients: Mutex::new(HashMap::new()), max_failures: max_failures.max(1), window, max_tracked: max_tracked.max(1) }
    }

    fn key(ip: IpAddr) -> IpAddr {
        match ip {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
            },
            v4 => v4,
        }
    }

    /// `Some(wait)` while `ip` is locked out at `now`.
    pub fn locked(&self, ip: IpAddr, now: Instant) -> Option<Duration> {
        let clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        let f = clients.get(&Self::key(ip))?;
        let end = f.since + self.window;
        (f.count >= self.max_failures && now < end).then(|| end - now)
    }

    /// Counts one failure of `ip` at `now`; true when it is the one that locks the client out.
    pub fn fail(&self, ip: IpAddr, now: Instant) -> bool {
        let key = Self::key(ip);
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if !clients.contains_key(&key) && clients.len() >= self.max_tracked {
            let window = self.window;
            clients.retain(|_, f| now.saturating_duration_since(f.since) < window);
            if clients.len() >= self.max_tracked {
                if let Some(oldest) = clients.iter().min_by_key(|(_, f)| f.since).map(|(k, _)| *k) {
                    clients.remove(&oldest);
                }
            }
        }
        let f = clients.entry(key).or_insert(Failures { since: now, count: 0 });
        if now.saturating_duration_since(f.since) >= self.window {
            *f = Failures { since: now, count: 0 };
        }
        f.count = f.count.saturating_add(1);
        f.count == self.max_failures
    }

    /// Clients tracked now.
    pub fn tracked(&self) -> usize {
        self.clients.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// The 429 a locked-out client gets, with `Retry-After` in whole seconds.
fn too_many_failures(wait: Duration) -> Response {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let body = serde_json::json!({"error": {
        "code": "too_many_failures",
        "message": format!("too many failed authentications from this address; retry in {secs} s"),
    }});
    let mut resp = (StatusCode::TOO_MANY_REQUESTS, axum::Json(body)).into_response();
    resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
    resp
}

/// Where a request comes from: the peer address and the failure limiter, both installed by the
/// server (absent in router tests, where nothing is limited).
#[derive(Debug, Clone, Default)]
pub struct Client {
    /// The peer address.
    pub ip: Option<IpAddr>,
    /// The limiter of failed authentications.
    pub limiter: Option<std::sync::Arc<FailureLimiter>>,
}

impl Client {
    /// The client of a request.
    pub fn of(parts: &Parts) -> Client {
        Client {
            ip: parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(a)| a.ip()),
            limiter: parts.extensions.get::<std::sync::Arc<FailureLimiter>>().cloned(),
        }
    }

    /// The 429 to answer while this client is locked out.
    pub fn lockout(&self) -> Option<Response> {
        let (ip, l) = (self.ip?, self.limiter.as_ref()?);
        l.locked(ip, Instant::now()).map(too_many_failures)
    }

    /// Counts a failed authentication of this client, and records it in the custody log as a
    /// security event (`auth_failed`; best effort: a catalog that cannot take it must not turn
    /// the 401 into a 500). Locked-out clients never get here, so one client adds at most
    /// [`MAX_FAILURES`] events per window.
    pub async fn failed(&self, state: &AppState, headers: &axum::http::HeaderMap, via: &str) {
        if let (Some(ip), Some(l)) = (self.ip, &self.limiter) {
            if l.fail(ip, Instant::now()) {
                tracing::warn!(client = %ip, failures = l.max_failures, window = ?l.window, "too many failed authentications; locking the client out");
            }
        }
        let mut d = serde_json::json!({"via": via, "from": self.ip.map(|ip| ip.to_string())});
        if let Some(ua) = headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()) {
            d["user_agent"] = ua.chars().take(200).collect::<String>().into();
        }
        if let Err(e) = state.catalog.append_custody(crate::custody::kind::AUTH_FAILED, "anonymous", None, d).await {
            tracing::warn!(error = %e, "could not record a failed authentication");
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Client {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Client::of(parts))
    }
}

/// The console's session cookie.
pub const SESSION_COOKIE: &str = "evidenced_session";

/// The value of cookie `name` in a request.
pub fn cookie<'a>(headers: &'a axum::http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

/// Refuses a state-changing request authenticated by the cookie unless it comes from this
/// origin: SameSite=Strict keeps other sites' requests cookieless in current browsers, and this
/// check also covers older ones (`Origin` must name this host; `Sec-Fetch-Site` must not say
/// cross-site).
fn same_origin(parts: &Parts) -> Result<(), ApiError> {
    if matches!(parts.method, axum::http::Method::GET | axum::http::Method::HEAD | axum::http::Method::OPTIONS) {
        return Ok(());
    }
    let h = &parts.headers;
    let denied = || ApiError::Denied { code: "cross_site", message: "cross-site requests may not use the console session".into() };
    if let Some(site) = h.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        if !matches!(site, "same-origin" | "none") {
            return Err(denied());
        }
    }
    if let Some(origin) = h.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        let host = h.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or_default();
        let bare = origin.strip_prefix("http://").or_else(|| origin.strip_prefix("https://"));
        if bare != Some(host) {
            return Err(denied());
        }
    }
    Ok(())
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let client = Client::of(parts);
        if let Some(resp) = client.lockout() {
            return Err(resp);
        }
        // A bearer token wins over the cookie; only a presented token that fails counts as a
        // failure (a request without one, or with an expired session, does not).
        let presented = parts.headers.contains_key(header::AUTHORIZATION);
        let result = if presented { authenticate(parts, state).await } else { from_session(parts, state).await };
        match result {
            Ok(mut c) => {
                c.1 = client.ip;
                Ok(c)
            }
            Err(e) => {
                if presented && matches!(e, ApiError::Unauthorized) {
                    client.failed(state, &parts.headers, "bearer").await;
                }
                Err(e.into_response())
            }
        }
    }
}

/// Resolves the session cookie of a request to its principal.
async fn from_session(parts: &Parts, state: &AppState) -> Result<Caller, ApiError> {
    let id = cookie(&parts.headers, SESSION_COOKIE).filter(|v| !v.is_empty() && v.len() <= 100).ok_or(ApiError::Unauthorized)?;
    let session = state.catalog.session(&token_hash(id), crate::catalog::now_micros()).await?.ok_or(ApiError::Unauthorized)?;
    same_origin(parts)?;
    Ok(Caller(session.principal, None))
}

/// Resolves the bearer token of a request to an active principal.
async fn authenticate(parts: &Parts, state: &AppState) -> Result<Caller, ApiError> {
    let header = parts.headers.get(header::AUTHORIZATION).ok_or(ApiError::Unauthorized)?;
    let token = header
        .to_str()
        .ok()
        .and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")))
        .map(str::trim)
        .ok_or(ApiError::Unauthorized)?;
    Ok(Caller(resolve_token(state, token).await?.0, None))
}

/// Resolves a presented token (a bearer header, or the token a console user signs in with) to an
/// active principal, with the stored hash of a daemon token (None for an OIDC token, which has
/// no principals row).
pub async fn resolve_token(state: &AppState, token: &str) -> Result<(Principal, Option<String>), ApiError> {
    // A JWT from the agency's identity provider (`[oidc]`), up to `oidc::MAX_JWT_LEN` bytes.
    if let Some(verifier) = state.oidc.as_ref().filter(|_| super::oidc::looks_like_jwt(token)) {
        let p = verifier.verify(token).await.map_err(|e| {
            tracing::info!(error = %e, "OIDC token refused");
            ApiError::Unauthorized
        })?;
        return Ok((p, None));
    }
    if token.len() > 200 {
        return Err(ApiError::Unauthorized);
    }
    let hash = token_hash(token);
    let p = state.catalog.principal_by_token(&hash).await?.ok_or(ApiError::Unauthorized)?;
    if principal_state(&p, crate::catalog::now_micros()) != "active" {
        return Err(ApiError::Unauthorized);
    }
    Ok((p, Some(hash)))
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

    #[test]
    fn limiter_locks_out_after_max_failures_until_the_window_ends() {
        let l = FailureLimiter::new(3, Duration::from_secs(60), 100);
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let t0 = Instant::now();
        assert!(!l.fail(a, t0) && !l.fail(a, t0 + Duration::from_secs(1)));
        assert_eq!(l.locked(a, t0 + Duration::from_secs(2)), None);
        assert!(l.fail(a, t0 + Duration::from_secs(2)), "the third failure locks");
        assert_eq!(l.locked(a, t0 + Duration::from_secs(10)), Some(Duration::from_secs(50)));
        assert_eq!(l.locked(b, t0 + Duration::from_secs(10)), None, "other clients are not affected");
        assert_eq!(l.locked(a, t0 + Duration::from_secs(60)), None, "the window passed");
        // A new window starts from scratch.
        assert!(!l.fail(a, t0 + Duration::from_secs(61)));
        assert_eq!(l.locked(a, t0 + Duration::from_secs(62)), None);
        // Failures spread wider than the window never lock.
        for i in 0..10 {
            assert!(!l.fail(b, t0 + Duration::from_secs(40 * i)));
        }
    }

    #[test]
    fn limiter_groups_ipv6_by_64_and_stays_bounded() {
        let l = FailureLimiter::new(2, Duration::from_secs(60), 50);
        let t0 = Instant::now();
        l.fail("2001:db8::1".parse().unwrap(), t0);
        assert!(l.fail("2001:db8::ffff:1".parse().unwrap(), t0), "same /64");
        assert!(l.locked("2001:db8::2".parse().unwrap(), t0).is_some());
        assert!(l.locked("2001:db8:0:1::2".parse().unwrap(), t0).is_none());
        l.fail("::ffff:10.0.0.9".parse().unwrap(), t0);
        assert!(l.fail("10.0.0.9".parse().unwrap(), t0), "IPv4-mapped counts as IPv4");
        for i in 0..10_000u32 {
            l.fail(IpAddr::V4(i.into()), t0 + Duration::from_millis(u64::from(i)));
            assert!(l.tracked() <= 50);
        }
        // Entries older than the window are dropped first.
        l.fail("192.0.2.1".parse().unwrap(), t0 + Duration::from_secs(3600));
        assert_eq!(l.tracked(), 1);
    }

    #[test]
    fn lockout_response_has_code_and_retry_after() {
        let r = too_many_failures(Duration::from_millis(1500));
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.headers()[header::RETRY_AFTER], "2");
        assert_eq!(too_many_failures(Duration::ZERO).headers()[header::RETRY_AFTER], "1");
    }
}
