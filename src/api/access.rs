//! Access for browsers and explicit grants:
//! - console sessions (`POST`/`GET`/`DELETE /api/v1/session`): a token signs in once and the
//!   browser then carries an HttpOnly, SameSite=Strict cookie, since `<video>`, `<img>` and
//!   `EventSource` cannot send an Authorization header;
//! - access grants (`POST /api/v1/recordings/{id}/access`): one audited access, answered with
//!   short-lived signed URLs for the proxy, poster and original, so a player's many Range
//!   requests neither need a header nor each count as an access;
//! - explicit grants of `state_secret` recordings (`PUT`/`DELETE
//!   /api/v1/recordings/{id}/grants/{principal}`, archivists).
//!
//! Grant URLs carry `?grant=<claims>.<mac>`: base64url JSON claims (recording, principal, role,
//! whether the original is included, expiry, the audit event's sequence number) and an
//! HMAC-SHA-256 over them with a key shared by every node through the catalog.

use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::auth::{Caller, Client, SESSION_COOKIE, resolve_token, token_hash};
use super::recordings::{ORIGINAL_ROLES, audit, header_reason, open, visible};
use super::updates::reason;
use super::{ApiError, AppState};
use crate::catalog::access::{NewSession, PrincipalSnapshot};
use crate::catalog::{Principal, Recording};
use crate::config::ApiConfig;
use crate::custody::kind;

/// Session and grant settings, and the URL-signing key (fetched from the catalog once).
#[derive(Debug)]
pub struct AccessSettings {
    /// Session lifetime (`api.session_ttl`).
    pub session_ttl: Duration,
    /// Signed-URL lifetime (`api.grant_ttl`).
    pub grant_ttl: Duration,
    /// Whether the session cookie is `Secure` (`api.cookie_secure`).
    pub cookie_secure: bool,
    /// The HMAC key, shared by all nodes of the catalog.
    key: tokio::sync::OnceCell<Vec<u8>>,
}

/// The catalog secret that holds the URL-signing key.
const KEY_NAME: &str = "access_url_hmac";

impl AccessSettings {
    /// Settings from `[api]`.
    pub fn new(api: &ApiConfig) -> Self {
        AccessSettings { session_ttl: api.session_ttl, grant_ttl: api.grant_ttl, cookie_secure: api.cookie_secure, key: Default::default() }
    }

    async fn key(&self, st: &AppState) -> Result<&[u8], ApiError> {
        let k = self
            .key
            .get_or_try_init(|| async {
                let mut fresh = [0u8; 32];
                rand::rng().fill_bytes(&mut fresh);
                let stored = st.catalog.shared_secret(KEY_NAME, &hex::encode(fresh)).await?;
                hex::decode(stored.trim()).map_err(|e| ApiError::Internal(format!("secret {KEY_NAME} is not hex: {e}")))
            })
            .await?;
        Ok(k)
    }
}

impl Default for AccessSettings {
    fn default() -> Self {
        AccessSettings::new(&ApiConfig::default())
    }
}

// --- sessions -----------------------------------------------------------------------------------

/// Body of `POST /api/v1/session`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct SignIn {
    /// The principal's token (`evd_…`); missing or empty is 401 like a missing bearer token.
    #[serde(default)]
    token: String,
}

/// A session as `GET`/`POST /api/v1/session` answer it (for the API description).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct SessionView {
    /// Who signed in.
    principal: SessionPrincipal,
    /// When the session (or the token behind a bearer request) expires, RFC 3339; null: never.
    expires_at: Option<String>,
}

/// The principal of a [`SessionView`].
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct SessionPrincipal {
    /// Name.
    name: String,
    /// Role.
    role: String,
    /// Unit subtree; empty = everything.
    unit: String,
    /// Officer id (role officer).
    officer: Option<String>,
}

fn session_json(p: &Principal, expires_at: i64) -> serde_json::Value {
    serde_json::json!({
        "principal": {"name": p.name, "role": p.role, "unit": p.unit, "officer": p.officer},
        "expires_at": crate::custody::format_at(expires_at),
    })
}

fn session_cookie(st: &AppState, value: &str, max_age: Duration) -> Result<HeaderValue, ApiError> {
    let secure = if st.access.cookie_secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!("{SESSION_COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}", max_age.as_secs()))
        .map_err(|e| ApiError::Internal(e.to_string()))
}

fn client_details(client: &Client, headers: &HeaderMap) -> serde_json::Value {
    let mut d = serde_json::json!({"from": client.ip.map(|ip| ip.to_string())});
    if let Some(ua) = headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()) {
        d["user_agent"] = ua.chars().take(200).collect::<String>().into();
    }
    d
}

/// `POST /api/v1/session` `{"token"}`: signs in (custody `signed_in`) and sets the session
/// cookie; a wrong token is 401 and counts as a failed authentication like a bad bearer token.
#[utoipa::path(
    post,
    path = "/session",
    tag = "access",
    operation_id = "sign_in",
    summary = "Sign in to the console",
    description = "Exchanges a token for the session cookie `evidenced_session` (HttpOnly, SameSite=Strict); custody \
                   `signed_in`. A wrong or missing token is 401 and counts as a failed authentication.",
    request_body = SignIn,
    responses(
        (status = 200, description = "Signed in", body = SessionView,
            headers(("Set-Cookie" = String, description = "`evidenced_session=…; Path=/; HttpOnly; SameSite=Strict; Max-Age=…`"))),
        (status = 400, description = "`invalid_body`", body = super::error::ErrorBody),
        (status = 429, description = "`too_many_failures`: locked out after repeated failed authentications", body = super::error::ErrorBody),
    ),
    security(()),
)]
pub async fn sign_in(State(st): State<AppState>, client: Client, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    if let Some(resp) = client.lockout() {
        return Ok(resp);
    }
    let req: SignIn =
        serde_json::from_slice(&body).map_err(|e| ApiError::bad("invalid_body", format!("expected {{\"token\": ...}}: {e}")))?;
    if req.token.trim().is_empty() {
        return Err(ApiError::Unauthorized);
    }
    let (p, token_sha256) = match resolve_token(&st, req.token.trim()).await {
        Ok(v) => v,
        Err(ApiError::Unauthorized) => {
            client.failed(&st, &headers, "sign_in").await;
            return Err(ApiError::Unauthorized);
        }
        Err(e) => return Err(e),
    };
    if p.role == "admin" {
        // Admins manage principals from the CLI or API; the console is for footage.
        tracing::debug!(principal = %p.name, "admin signed in to the console");
    }
    let now = crate::catalog::now_micros();
    let ttl = i64::try_from(st.access.session_ttl.as_micros()).unwrap_or(i64::MAX);
    let expires_at = p.expires_at.map_or(now.saturating_add(ttl), |t| t.min(now.saturating_add(ttl)));
    let mut raw = [0u8; 32];
    rand::rng().fill_bytes(&mut raw);
    let id = URL_SAFE_NO_PAD.encode(raw);
    st.catalog
        .open_session(&NewSession {
            id_sha256: token_hash(&id),
            principal: PrincipalSnapshot::from(&p),
            token_sha256,
            expires_at,
            details: client_details(&client, &headers),
        })
        .await?;
    let max_age = Duration::from_micros(u64::try_from(expires_at - now).unwrap_or(0));
    let mut resp = Json(session_json(&p, expires_at)).into_response();
    resp.headers_mut().insert(header::SET_COOKIE, session_cookie(&st, &id, max_age)?);
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

/// `GET /api/v1/session`: who the caller is (by cookie or bearer token).
#[utoipa::path(
    get,
    path = "/session",
    tag = "access",
    operation_id = "get_session",
    summary = "Who the caller is",
    description = "The principal behind the session cookie or bearer token, and when it expires.",
    responses((status = 200, description = "The caller", body = SessionView)),
)]
pub async fn whoami(State(st): State<AppState>, caller: Caller, headers: HeaderMap) -> Result<Json<serde_json::Value>, ApiError> {
    let expires = match super::auth::cookie(&headers, SESSION_COOKIE) {
        Some(id) if !headers.contains_key(header::AUTHORIZATION) => {
            st.catalog.session(&token_hash(id), crate::catalog::now_micros()).await?.map(|s| s.expires_at)
        }
        _ => caller.0.expires_at,
    };
    let mut v = session_json(&caller.0, expires.unwrap_or(0));
    if expires.is_none() {
        v["expires_at"] = serde_json::Value::Null;
    }
    Ok(Json(v))
}

/// `DELETE /api/v1/session`: signs out (custody `signed_out`) and clears the cookie.
#[utoipa::path(
    delete,
    path = "/session",
    tag = "access",
    operation_id = "sign_out",
    summary = "Sign out",
    description = "Ends the session (custody `signed_out`) and clears the cookie.",
    responses((status = 204, description = "Signed out", headers(("Set-Cookie" = String, description = "The cleared cookie")))),
)]
pub async fn sign_out(State(st): State<AppState>, caller: Caller, client: Client, headers: HeaderMap) -> Result<Response, ApiError> {
    if let Some(id) = super::auth::cookie(&headers, SESSION_COOKIE) {
        st.catalog.end_session(&token_hash(id), &caller.0.name, client_details(&client, &headers)).await?;
    }
    let mut resp = StatusCode::NO_CONTENT.into_response();
    resp.headers_mut().insert(header::SET_COOKIE, session_cookie(&st, "", Duration::ZERO)?);
    Ok(resp)
}

// --- access grants ------------------------------------------------------------------------------

/// What a signed URL allows, signed as base64url JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Claims {
    /// Recording id.
    r: String,
    /// Principal name.
    p: String,
    /// Principal role (for audit events written while the URL is used).
    ro: String,
    /// Whether the principal has a principals row (then it must still be active at each use).
    c: bool,
    /// Whether the original is included.
    o: bool,
    /// Expiry, Unix seconds.
    x: i64,
    /// Sequence number of the `accessed` event that recorded the grant.
    s: i64,
    /// The reason given.
    why: Option<String>,
}

fn mac(key: &[u8], payload: &str) -> Hmac<Sha256> {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes keys of any size");
    m.update(payload.as_bytes());
    m
}

fn sign(key: &[u8], c: &Claims) -> String {
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(c).unwrap_or_default());
    let tag = URL_SAFE_NO_PAD.encode(mac(key, &payload).finalize().into_bytes());
    format!("{payload}.{tag}")
}

/// The claims of a grant token when its MAC is right and it has not expired at `now` (Unix s).
fn check(key: &[u8], token: &str, now: i64) -> Option<Claims> {
    let (payload, tag) = token.split_once('.')?;
    let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
    mac(key, payload).verify_slice(&tag).ok()?;
    let c: Claims = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
    (c.x > now).then_some(c)
}

/// Body of `POST .../access`.
#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct AccessRequest {
    /// Why (required for classified recordings).
    #[serde(default)]
    reason: Option<String>,
}

/// The answer of `POST /api/v1/recordings/{id}/access` (for the API description).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct AccessGrant {
    /// The recording.
    recording_id: String,
    /// Signed URL of the proxy; null while there is none.
    proxy_url: Option<String>,
    /// Signed URL of the poster; null while there is none.
    poster_url: Option<String>,
    /// Signed URL of the original, for roles that may download it; else null.
    original_url: Option<String>,
    /// When the URLs stop working, RFC 3339.
    expires_at: String,
    /// Sequence number of the custody event that recorded the access.
    access_seq: i64,
}

/// The explicit grants of a recording (for the API description).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct RecordingGrants {
    /// The recording (absent in the answer of `PUT .../grants/{principal}`).
    recording_id: Option<String>,
    /// Its grants.
    grants: Vec<crate::catalog::Grant>,
}

/// `POST /api/v1/recordings/{id}/access` `{"reason"}`: records one audited access (`accessed`,
/// `what: "grant"`) and answers signed `proxy_url`, `poster_url` and (for roles that may
/// download originals) `original_url`, valid for `api.grant_ttl`.
#[utoipa::path(
    post,
    path = "/recordings/{id}/access",
    tag = "access",
    operation_id = "grant_access",
    summary = "An audited access grant",
    description = "Records one access (custody `accessed`, `what: grant`) and answers short-lived signed URLs \
                   (`…?grant=…`) for the proxy, the poster and, for supervisors, archivists and auditors, the original, \
                   valid for `api.grant_ttl`. The body is optional; classified recordings need its `reason`.",
    params(("id" = String, Path, description = "Recording id")),
    request_body = Option<AccessRequest>,
    responses(
        (status = 200, description = "The signed URLs", body = AccessGrant),
        (status = 400, description = "`invalid_body` or `invalid_reason`", body = super::error::ErrorBody),
        (status = 403, description = "`reason_required` or `grant_required`", body = super::error::ErrorBody),
        (status = 404, description = "No such recording in the caller's scope", body = super::error::ErrorBody),
    ),
)]
pub async fn grant_access(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    let req: AccessRequest = if body.iter().all(u8::is_ascii_whitespace) {
        AccessRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::bad("invalid_body", format!("expected {{\"reason\": ...}}: {e}")))?
    };
    let (r, why) = open(&st, &caller, &id, reason(req.reason, false)?).await?;
    let with_original = ORIGINAL_ROLES.contains(&caller.0.role.as_str());
    let now = chrono::Utc::now().timestamp();
    let expires = now + i64::try_from(st.access.grant_ttl.as_secs()).unwrap_or(3600);
    let expires_at = crate::custody::format_at(expires * 1_000_000);
    let objects: Vec<&str> = [("proxy", r.proxy.is_some()), ("poster", r.poster.is_some()), ("original", with_original)]
        .into_iter()
        .filter_map(|(n, ok)| ok.then_some(n))
        .collect();
    let d = serde_json::json!({"reason": why, "objects": objects, "expires_at": expires_at});
    let seq = audit(&st, &caller, &headers, kind::ACCESSED, &r.id, "grant", d).await?.unwrap_or_default();
    let registered = st.catalog.principal(&caller.0.name).await?.is_some();
    let claims = Claims {
        r: r.id.clone(),
        p: caller.0.name.clone(),
        ro: caller.0.role.clone(),
        c: registered,
        o: with_original,
        x: expires,
        s: seq,
        why,
    };
    let token = sign(st.access.key(&st).await?, &claims);
    let url = |what: &str, ok: bool| ok.then(|| format!("/api/v1/recordings/{}/{what}?grant={token}", r.id));
    Ok(Json(serde_json::json!({
        "recording_id": r.id,
        "proxy_url": url("proxy", r.proxy.is_some()),
        "poster_url": url("poster", r.poster.is_some()),
        "original_url": url("original", with_original),
        "expires_at": expires_at,
        "access_seq": seq,
    })))
}

/// Who fetches a recording's media: a caller (token or session), or the holder of a signed URL.
pub enum MediaAccess {
    /// Authenticated like any API request.
    Caller(Caller),
    /// A valid signed URL: the grant's principal, and what it allows.
    Grant(SignedGrant),
}

/// A checked signed URL.
pub struct SignedGrant {
    /// The principal it was granted to (as far as the claims tell), with the client address.
    caller: Caller,
    /// The claims.
    claims: Claims,
}

fn grant_param(query: Option<&str>) -> Option<&str> {
    query?.split('&').find_map(|kv| kv.strip_prefix("grant="))
}

impl FromRequestParts<AppState> for MediaAccess {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let Some(token) = grant_param(parts.uri.query()).map(str::to_string) else {
            return Caller::from_request_parts(parts, state).await.map(MediaAccess::Caller);
        };
        let client = Client::of(parts);
        if let Some(resp) = client.lockout() {
            return Err(resp);
        }
        let key = state.access.key(state).await.map_err(IntoResponse::into_response)?;
        let Some(claims) = check(key, &token, chrono::Utc::now().timestamp()) else {
            client.failed(state, &parts.headers, "grant").await;
            let e = ApiError::Denied {
                code: "grant_invalid",
                message: "the access link is invalid or has expired: request access again".into(),
            };
            return Err(e.into_response());
        };
        // A token principal that was revoked (or expired) since loses its links at once.
        let principal = if claims.c {
            match state.catalog.principal(&claims.p).await {
                Ok(Some(p)) if super::auth::principal_state(&p, crate::catalog::now_micros()) == "active" => p,
                Ok(_) => return Err(ApiError::Unauthorized.into_response()),
                Err(e) => return Err(ApiError::from(e).into_response()),
            }
        } else {
            Principal {
                name: claims.p.clone(),
                role: claims.ro.clone(),
                unit: String::new(),
                officer: None,
                created_at: 0,
                expires_at: Some(claims.x * 1_000_000),
                revoked_at: None,
            }
        };
        Ok(MediaAccess::Grant(SignedGrant { caller: Caller(principal, client.ip), claims }))
    }
}

impl MediaAccess {
    /// Opens the recording `id` for its media: a caller as [`open`] does (reason header, grant);
    /// a signed URL only for its own recording, and for a `state_secret` only while the
    /// principal still holds the explicit grant. Returns the recording and the reason.
    pub async fn open(&self, st: &AppState, id: &str, headers: &HeaderMap) -> Result<(Recording, Option<String>), ApiError> {
        match self {
            MediaAccess::Caller(c) => open(st, c, id, header_reason(headers)?).await,
            MediaAccess::Grant(g) => {
                if g.claims.r != id {
                    return Err(ApiError::NotFound);
                }
                let r = st.catalog.recording(id).await?;
                if r.classification == super::recordings::STATE_SECRET && !st.catalog.has_grant(id, &g.claims.p).await? {
                    return Err(ApiError::Denied { code: "grant_required", message: "the explicit grant was withdrawn".into() });
                }
                Ok((r, g.claims.why.clone()))
            }
        }
    }

    /// Fails with 403 unless the role may fetch originals (a signed URL: unless it includes it).
    pub fn require_original(&self) -> Result<(), ApiError> {
        match self {
            MediaAccess::Caller(c) => c.require(ORIGINAL_ROLES),
            MediaAccess::Grant(g) if g.claims.o => Ok(()),
            MediaAccess::Grant(_) => Err(ApiError::Forbidden("this access link does not include the original".into())),
        }
    }

    /// Records an access like [`audit`]. Through a signed URL only downloads are recorded again
    /// (the grant itself was the access), with the grant's event number.
    pub async fn audit(
        &self,
        st: &AppState,
        headers: &HeaderMap,
        kind: &str,
        r: &Recording,
        what: &str,
        mut extra: serde_json::Value,
    ) -> Result<(), ApiError> {
        let caller = match self {
            MediaAccess::Caller(c) => c,
            MediaAccess::Grant(g) if kind == crate::custody::kind::DOWNLOADED => {
                extra["grant_seq"] = g.claims.s.into();
                &g.caller
            }
            MediaAccess::Grant(_) => return Ok(()),
        };
        audit(st, caller, headers, kind, &r.id, what, extra).await.map(|_| ())
    }
}

// --- explicit grants of state secrets -----------------------------------------------------------

/// Body of `PUT`/`DELETE .../grants/{principal}`.
#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct GrantRequest {
    /// Why (required to grant).
    #[serde(default)]
    reason: Option<String>,
}

/// The checks shared by granting and withdrawing: an archivist, a recording in scope, a sane
/// principal name, a JSON body with a reason (required to grant). Returns the recording and the reason.
async fn grant_request(
    st: &AppState,
    caller: &Caller,
    id: &str,
    principal: &str,
    body: &Bytes,
    reason_required: bool,
) -> Result<(Recording, Option<String>), ApiError> {
    caller.require(&["archivist"])?;
    let r = visible(st, caller, id).await?;
    if principal.is_empty() || principal.len() > 128 || principal.chars().any(char::is_control) {
        return Err(ApiError::bad("invalid_principal", "principal: 1 to 128 printable characters"));
    }
    let req: GrantRequest = if body.iter().all(u8::is_ascii_whitespace) {
        GrantRequest::default()
    } else {
        serde_json::from_slice(body).map_err(|e| ApiError::bad("invalid_body", format!("expected {{\"reason\": ...}}: {e}")))?
    };
    Ok((r, reason(req.reason, reason_required)?))
}

/// `PUT /api/v1/recordings/{id}/grants/{principal}` `{"reason"}` (archivist): explicit access to
/// a `state_secret` recording (custody `granted`). An archivist cannot grant to themself: a
/// second person decides who reads a state secret.
#[utoipa::path(
    put,
    path = "/recordings/{id}/grants/{principal}",
    tag = "access",
    operation_id = "put_grant",
    summary = "Grant a state secret",
    description = "Explicit access of one principal to a `state_secret` recording, with a reason (archivist; not to \
                   themself); custody `granted`.",
    params(
        ("id" = String, Path, description = "Recording id"),
        ("principal" = String, Path, description = "The principal's name (or OIDC subject)"),
    ),
    request_body = GrantRequest,
    responses(
        (status = 200, description = "Granted already; the recording's grants", body = RecordingGrants),
        (status = 201, description = "Granted; the recording's grants", body = RecordingGrants),
        (status = 400, description = "`invalid_principal`, `reason_required`, `invalid_reason` or `invalid_body`", body = super::error::ErrorBody),
        (status = 403, description = "Not an archivist, or `self_grant`", body = super::error::ErrorBody),
        (status = 404, description = "No such recording in the caller's scope", body = super::error::ErrorBody),
        (status = 409, description = "`not_state_secret`", body = super::error::ErrorBody),
    ),
)]
pub async fn put_grant(
    State(st): State<AppState>,
    caller: Caller,
    Path((id, principal)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let (r, why) = grant_request(&st, &caller, &id, &principal, &body, true).await?;
    let why = why.unwrap_or_default();
    if principal == caller.0.name {
        return Err(ApiError::Denied { code: "self_grant", message: "another archivist must grant you access".into() });
    }
    if r.classification != super::recordings::STATE_SECRET {
        return Err(ApiError::Conflict {
            code: "not_state_secret",
            message: format!("recording is {}: explicit grants are for state_secret recordings", r.classification),
        });
    }
    let added = st.catalog.put_grant(&r.id, &principal, &why, &caller.0.name).await?;
    let status = if added { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(serde_json::json!({"grants": st.catalog.grants(&r.id).await?}))).into_response())
}

/// `DELETE /api/v1/recordings/{id}/grants/{principal}` (archivist): withdraws a grant (custody
/// `grant_revoked`); signed URLs made under it stop working at once.
#[utoipa::path(
    delete,
    path = "/recordings/{id}/grants/{principal}",
    tag = "access",
    operation_id = "delete_grant",
    summary = "Withdraw a grant",
    description = "Archivist; custody `grant_revoked`. Signed URLs made under the grant stop working at once. The body \
                   with a reason is optional.",
    params(
        ("id" = String, Path, description = "Recording id"),
        ("principal" = String, Path, description = "The principal's name (or OIDC subject)"),
    ),
    request_body = Option<GrantRequest>,
    responses(
        (status = 204, description = "Withdrawn"),
        (status = 400, description = "`invalid_principal`, `invalid_reason` or `invalid_body`", body = super::error::ErrorBody),
        (status = 403, description = "Not an archivist", body = super::error::ErrorBody),
        (status = 404, description = "No such recording in the caller's scope, or `no_grant`", body = super::error::ErrorBody),
    ),
)]
pub async fn delete_grant(
    State(st): State<AppState>,
    caller: Caller,
    Path((id, principal)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let (r, why) = grant_request(&st, &caller, &id, &principal, &body, false).await?;
    if !st.catalog.delete_grant(&r.id, &principal, why.as_deref(), &caller.0.name).await? {
        return Err(ApiError::missing("no_grant", format!("{principal} holds no grant to this recording")));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /api/v1/recordings/{id}/grants` (archivist, auditor): the explicit grants.
#[utoipa::path(
    get,
    path = "/recordings/{id}/grants",
    tag = "access",
    operation_id = "list_grants",
    summary = "A recording's explicit grants",
    description = "Archivist, auditor.",
    params(("id" = String, Path, description = "Recording id")),
    responses(
        (status = 200, description = "The grants", body = RecordingGrants),
        (status = 403, description = "Not an archivist or auditor", body = super::error::ErrorBody),
        (status = 404, description = "No such recording in the caller's scope", body = super::error::ErrorBody),
    ),
)]
pub async fn list_grants(State(st): State<AppState>, caller: Caller, Path(id): Path<String>) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(&["archivist", "auditor"])?;
    let r = visible(&st, &caller, &id).await?;
    Ok(Json(serde_json::json!({"recording_id": r.id, "grants": st.catalog.grants(&r.id).await?})))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(x: i64) -> Claims {
        Claims { r: "rec".into(), p: "sup".into(), ro: "supervisor".into(), c: true, o: false, x, s: 7, why: Some("case 12".into()) }
    }

    #[test]
    fn signed_grants_verify_and_resist_tampering() {
        let key = b"k".repeat(32);
        let t = sign(&key, &claims(2_000));
        assert_eq!(check(&key, &t, 1_000), Some(claims(2_000)));
        assert_eq!(check(&key, &t, 2_000), None, "expired");
        assert_eq!(check(b"other", &t, 1_000), None, "another key");
        // Claims swapped for more generous ones under the old MAC.
        let (_, tag) = t.split_once('.').unwrap();
        let mut more = claims(2_000);
        more.o = true;
        let forged = format!("{}.{tag}", URL_SAFE_NO_PAD.encode(serde_json::to_vec(&more).unwrap()));
        assert_eq!(check(&key, &forged, 1_000), None);
        for junk in ["", ".", "a.b", "!!.!!", &t.replace('.', "")] {
            assert_eq!(check(&key, junk, 1_000), None, "{junk:?}");
        }
    }

    #[test]
    fn grant_param_is_found_among_others() {
        assert_eq!(grant_param(Some("a=1&grant=xyz.abc&b=2")), Some("xyz.abc"));
        assert_eq!(grant_param(Some("a=1")), None);
        assert_eq!(grant_param(None), None);
    }
}
