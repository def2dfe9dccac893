//! OpenID Connect bearer tokens: JWTs issued by the agency's identity provider, accepted next to
//! the daemon's own `evd_` tokens when `[oidc]` is configured. This module owns the JWKS cache
//! (loaded from a file at start or fetched from a URL on first use, refetched for an unknown
//! `kid` at most once per `jwks_refresh`), the checks of a token (signature by the key its `kid`
//! names, an allowed asymmetric algorithm that matches that key, `iss`, `aud`, `exp`, `nbf`, with
//! leeway) and the mapping of its claims to a [`Principal`]. A verified token is not stored:
//! it is checked again on every request, and its principal lives as long as the request.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, Validation};
use serde_json::{Map, Value};

use super::auth::ROLES;
use crate::catalog::Principal;
use crate::config::OidcConfig;

/// Longest token accepted (a JWT with many group claims can be a few KiB).
pub const MAX_JWT_LEN: usize = 8 * 1024;
/// Largest JWKS document read.
const MAX_JWKS_BYTES: usize = 1 << 20;
/// A failed JWKS fetch is retried after this long at the latest, even when `jwks_refresh` is
/// longer, so one failure at the IdP does not lock every OIDC user out for minutes.
const RETRY_FAILED_FETCH: Duration = Duration::from_secs(10);
/// Keys are fetched again when they are older than this (or `jwks_refresh`, if longer), so a key
/// the IdP withdrew stops being accepted even if no unknown `kid` ever turns up.
const JWKS_MAX_AGE: Duration = Duration::from_secs(3600);
/// Longest wait for the JWKS endpoint.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// Why an OIDC verifier could not be built or a token was refused. The messages are for the log
/// (the client only ever sees 401); none of them contains the token.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    /// The JWKS could not be read, fetched or parsed.
    #[error("cannot load the JWKS from {from}: {message}")]
    Jwks {
        /// The URL, or `oidc.jwks_file` and the path.
        from: String,
        /// What went wrong.
        message: String,
    },
    /// The token is not a JWT we can read (too long, bad segments, unreadable header, `alg: none`).
    #[error("malformed token: {0}")]
    Malformed(String),
    /// The token's algorithm is not allowed by `oidc.algorithms` or does not fit its key.
    #[error("algorithm refused: {0}")]
    Algorithm(String),
    /// No key of the JWKS has the token's `kid` (after a refetch, when one was allowed).
    #[error("no key in the JWKS for kid {0:?}")]
    UnknownKey(String),
    /// Signature, issuer, audience, expiry or not-before check failed.
    #[error("token refused: {0}")]
    Token(#[source] jsonwebtoken::errors::Error),
    /// A verified token's claims do not make a principal (missing or unknown role, bad name...).
    #[error("claim `{claim}`: {message}")]
    Claim {
        /// The claim's name as configured.
        claim: String,
        /// What is wrong with it.
        message: String,
    },
}

/// Where the JWKS comes from.
#[derive(Debug, Clone)]
enum Source {
    Url(String),
    File(PathBuf),
}

impl Source {
    fn describe(&self) -> String {
        match self {
            Source::Url(u) => u.clone(),
            Source::File(p) => format!("oidc.jwks_file {}", p.display()),
        }
    }
}

/// One usable verification key of the JWKS.
#[derive(Clone)]
struct Key {
    key: DecodingKey,
    family: AlgorithmFamily,
    /// The JWK's `alg`, when it names one: then only that algorithm may use the key.
    alg: Option<Algorithm>,
    /// For EC keys: the curve, which fixes the algorithm (P-256: ES256, P-384: ES384).
    curve: Option<EllipticCurve>,
}

impl Key {
    fn fits(&self, alg: Algorithm) -> bool {
        family_of(alg) == Some(self.family)
            && self.alg.is_none_or(|a| a == alg)
            && match (&self.curve, alg) {
                (Some(EllipticCurve::P256), Algorithm::ES256) | (Some(EllipticCurve::P384), Algorithm::ES384) => true,
                (Some(_), _) => false,
                (None, _) => true,
            }
    }
}

/// The keys of one JWKS, by `kid` (keys without one under "").
#[derive(Default)]
struct KeySet {
    by_kid: HashMap<String, Vec<Key>>,
    loaded_at: Option<Instant>,
}

/// The state of fetching: one fetch at a time, and when the last one was tried.
#[derive(Default)]
struct FetchState {
    last_attempt: Option<Instant>,
    last_failed: bool,
    last_error: Option<String>,
}

/// Checks bearer JWTs against the identity provider's JWKS and maps them to principals. Built
/// once at start from `[oidc]`; shared by every request.
pub struct OidcVerifier {
    cfg: OidcConfig,
    source: Source,
    algorithms: Vec<Algorithm>,
    keys: RwLock<Arc<KeySet>>,
    fetch: tokio::sync::Mutex<FetchState>,
    http: reqwest::Client,
}

impl std::fmt::Debug for OidcVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcVerifier").field("issuer", &self.cfg.issuer).field("jwks", &self.source.describe()).finish()
    }
}

/// The family of an algorithm (`Algorithm::family` is private to jsonwebtoken).
fn family_of(alg: Algorithm) -> Option<AlgorithmFamily> {
    [AlgorithmFamily::Rsa, AlgorithmFamily::Ec, AlgorithmFamily::Ed, AlgorithmFamily::Hmac]
        .into_iter()
        .find(|f| f.algorithms().contains(&alg))
}

/// Whether a bearer token has the shape of a JWT: three non-empty base64url segments separated by
/// dots, and not one of our own `evd_` tokens.
pub fn looks_like_jwt(token: &str) -> bool {
    if token.starts_with("evd_") {
        return false;
    }
    let mut n = 0;
    for seg in token.split('.') {
        n += 1;
        if seg.is_empty() || !seg.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            return false;
        }
    }
    n == 3
}

/// Parses a JWKS document into the keys we can verify with: asymmetric signing keys only (an
/// `oct` key is never used, nor one marked `use: enc`); keys we cannot use are skipped.
fn parse_jwks(bytes: &[u8]) -> Result<KeySet, String> {
    let doc: Value = serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
    let list = doc.get("keys").and_then(Value::as_array).ok_or("no \"keys\" array")?;
    let mut set = KeySet::default();
    let mut usable = 0;
    for (i, raw) in list.iter().enumerate() {
        if raw.get("use").and_then(Value::as_str).is_some_and(|u| u != "sig") || raw.get("kty").and_then(Value::as_str) == Some("oct") {
            continue;
        }
        let jwk: Jwk = match serde_json::from_value(raw.clone()) {
            Ok(j) => j,
            Err(e) => {
                tracing::debug!(key = i, error = %e, "skipping a JWKS key we cannot read");
                continue;
            }
        };
        let (family, curve) = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => (AlgorithmFamily::Rsa, None),
            AlgorithmParameters::EllipticCurve(p) if matches!(p.curve, EllipticCurve::P256 | EllipticCurve::P384) => {
                (AlgorithmFamily::Ec, Some(p.curve.clone()))
            }
            AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => (AlgorithmFamily::Ed, None),
            _ => continue,
        };
        let alg = match jwk.common.key_algorithm {
            None => None,
            Some(a) => match a.to_string().parse::<Algorithm>() {
                Ok(a) if family_of(a) == Some(family) => Some(a),
                _ => continue,
            },
        };
        let Ok(key) = DecodingKey::from_jwk(&jwk) else { continue };
        usable += 1;
        set.by_kid.entry(jwk.common.key_id.clone().unwrap_or_default()).or_default().push(Key { key, family, alg, curve });
    }
    if usable == 0 {
        return Err(format!("none of its {} keys is an RSA, EC (P-256/P-384) or Ed25519 signing key", list.len()));
    }
    set.loaded_at = Some(Instant::now());
    Ok(set)
}

/// A claim by name, or by a dotted path into nested objects when no claim has that exact name.
fn claim<'a>(claims: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    if let Some(v) = claims.get(name) {
        return Some(v);
    }
    let mut parts = name.split('.');
    let mut cur = claims.get(parts.next()?)?;
    for p in parts {
        cur = cur.as_object()?.get(p)?;
    }
    Some(cur)
}

fn printable(s: &str, max: usize) -> bool {
    !s.is_empty() && s.len() <= max && !s.chars().any(char::is_control)
}

/// Seconds since the epoch (a JWT NumericDate, possibly fractional) as micros.
fn micros(v: Option<&Value>) -> Option<i64> {
    let s = v?.as_f64()?;
    (0.0..1e12).contains(&s).then_some((s * 1e6) as i64)
}

impl OidcVerifier {
    /// Builds the verifier for `[oidc]`: a `jwks_file` is read now (an unreadable or unusable
    /// file is an error naming it); a `jwks_url` is fetched on first use.
    pub fn new(cfg: &OidcConfig) -> Result<Self, OidcError> {
        let source = match (&cfg.jwks_url, &cfg.jwks_file) {
            (Some(u), None) => Source::Url(u.clone()),
            (None, Some(f)) => Source::File(f.clone()),
            _ => {
                return Err(OidcError::Jwks { from: "[oidc]".into(), message: "set exactly one of jwks_url and jwks_file".into() });
            }
        };
        let mut algorithms = Vec::new();
        for a in &cfg.algorithms {
            match a.parse::<Algorithm>() {
                Ok(alg) if family_of(alg).is_some_and(|f| f != AlgorithmFamily::Hmac) => algorithms.push(alg),
                _ => return Err(OidcError::Algorithm(format!("oidc.algorithms: {a:?} is not an accepted algorithm"))),
            }
        }
        if let Some((value, role)) = cfg.roles.iter().find(|(_, r)| !ROLES.contains(&r.as_str())) {
            return Err(OidcError::Claim { claim: format!("oidc.roles.{value}"), message: format!("{role:?} is not a role") });
        }
        if let Source::Url(u) = &source {
            let host = reqwest::Url::parse(u).ok().and_then(|u| u.host_str().map(str::to_string)).unwrap_or_default();
            if !matches!(host.as_str(), "localhost" | "127.0.0.1" | "[::1]" | "::1") && !host.starts_with("127.") {
                tracing::warn!(url = %u, "the JWKS is fetched over plain HTTP from another host: anyone on the path could substitute keys; prefer a local proxy or oidc.jwks_file");
            }
        }
        let http = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .connect_timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| OidcError::Jwks { from: source.describe(), message: e.to_string() })?;
        let v = OidcVerifier {
            cfg: cfg.clone(),
            source,
            algorithms,
            keys: RwLock::new(Arc::new(KeySet::default())),
            fetch: tokio::sync::Mutex::new(FetchState::default()),
            http,
        };
        if let Source::File(f) = &v.source {
            let bytes = std::fs::read(f).map_err(|e| OidcError::Jwks { from: v.source.describe(), message: e.to_string() })?;
            let set = parse_jwks(&bytes).map_err(|message| OidcError::Jwks { from: v.source.describe(), message })?;
            *v.keys.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(set);
            v.fetch.try_lock().expect("not shared yet").last_attempt = Some(Instant::now());
        }
        Ok(v)
    }

    /// Checks a bearer JWT and maps its claims to a principal: signature by the JWKS key its `kid`
    /// names, with an allowed algorithm that fits that key; `iss` equal to `oidc.issuer`; `aud`
    /// containing `oidc.audience`; `exp` (required) and `nbf` with `oidc.leeway`. The principal's
    /// name, role, unit and officer id come from the configured claims; it expires with the token.
    pub async fn verify(&self, token: &str) -> Result<Principal, OidcError> {
        if token.len() > MAX_JWT_LEN {
            return Err(OidcError::Malformed(format!("longer than {MAX_JWT_LEN} bytes")));
        }
        if !looks_like_jwt(token) {
            return Err(OidcError::Malformed("not three base64url segments".into()));
        }
        let header = jsonwebtoken::decode_header(token).map_err(|e| OidcError::Malformed(format!("header: {e}")))?;
        let alg = header.alg;
        if !self.algorithms.contains(&alg) {
            return Err(OidcError::Algorithm(format!("{alg:?} is not in oidc.algorithms")));
        }
        let kid = header.kid.unwrap_or_default();
        let key = match self.find(&kid, alg) {
            Some(k) if !self.stale() => k,
            found => {
                self.refresh(found.is_some()).await?;
                self.find(&kid, alg).ok_or_else(|| OidcError::UnknownKey(kid.clone()))?
            }
        };
        if !key.fits(alg) {
            return Err(OidcError::Algorithm(format!("{alg:?} does not fit key {kid:?}")));
        }
        let mut v = Validation::new(alg);
        v.algorithms = vec![alg];
        v.leeway = self.cfg.leeway.as_secs();
        v.validate_exp = true;
        v.validate_nbf = true;
        v.validate_aud = true;
        v.set_issuer(&[&self.cfg.issuer]);
        v.set_audience(&[&self.cfg.audience]);
        v.set_required_spec_claims(&["exp", "iss", "aud"]);
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &v).map_err(OidcError::Token)?;
        self.principal(&data.claims)
    }

    /// The key for `kid` that fits `alg`; for a token without `kid`, the only key that fits.
    fn find(&self, kid: &str, alg: Algorithm) -> Option<Key> {
        let set = self.keys.read().unwrap_or_else(|e| e.into_inner()).clone();
        if kid.is_empty() {
            let mut fitting = set.by_kid.values().flatten().filter(|k| k.fits(alg));
            return match (fitting.next(), fitting.next()) {
                (Some(k), None) => Some(k.clone()),
                _ => None,
            };
        }
        let keys = set.by_kid.get(kid)?;
        // A key with this kid but of another kind is still returned, so the error says so.
        keys.iter().find(|k| k.fits(alg)).or(keys.first()).cloned()
    }

    fn stale(&self) -> bool {
        let set = self.keys.read().unwrap_or_else(|e| e.into_inner()).clone();
        set.loaded_at.is_none_or(|t| t.elapsed() >= JWKS_MAX_AGE.max(self.cfg.jwks_refresh))
    }

    /// Loads the JWKS again unless the last attempt was too recent (`jwks_refresh` after a
    /// success, at most [`RETRY_FAILED_FETCH`] after a failure). With `have_key` (only the age of
    /// the keys asked for it) a failure keeps the old keys; otherwise it is the caller's error.
    async fn refresh(&self, have_key: bool) -> Result<(), OidcError> {
        let mut st = self.fetch.lock().await;
        let wait = if st.last_failed { self.cfg.jwks_refresh.min(RETRY_FAILED_FETCH) } else { self.cfg.jwks_refresh };
        if st.last_attempt.is_some_and(|t| t.elapsed() < wait) {
            // Another request may have just fetched; with no keys at all, say why.
            let empty = self.keys.read().unwrap_or_else(|e| e.into_inner()).loaded_at.is_none();
            return match (&st.last_error, empty) {
                (Some(message), true) => Err(OidcError::Jwks { from: self.source.describe(), message: message.clone() }),
                _ => Ok(()),
            };
        }
        st.last_attempt = Some(Instant::now());
        match self.load().await {
            Ok(set) => {
                tracing::info!(jwks = %self.source.describe(), keys = set.by_kid.values().map(Vec::len).sum::<usize>(), "loaded the OIDC JWKS");
                *self.keys.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(set);
                st.last_failed = false;
                st.last_error = None;
                Ok(())
            }
            Err(message) => {
                tracing::warn!(jwks = %self.source.describe(), error = %message, "cannot load the OIDC JWKS");
                st.last_failed = true;
                st.last_error = Some(message.clone());
                let empty = self.keys.read().unwrap_or_else(|e| e.into_inner()).loaded_at.is_none();
                if have_key && !empty { Ok(()) } else { Err(OidcError::Jwks { from: self.source.describe(), message }) }
            }
        }
    }

    /// Reads the JWKS from its source.
    async fn load(&self) -> Result<KeySet, String> {
        let bytes = match &self.source {
            Source::File(f) => tokio::fs::read(f).await.map_err(|e| e.to_string())?,
            Source::Url(u) => {
                let mut resp = self.http.get(u).header("accept", "application/json").send().await.map_err(|e| e.to_string())?;
                if !resp.status().is_success() {
                    return Err(format!("HTTP {}", resp.status()));
                }
                let mut body = Vec::new();
                while let Some(chunk) = resp.chunk().await.map_err(|e| e.to_string())? {
                    if body.len() + chunk.len() > MAX_JWKS_BYTES {
                        return Err(format!("larger than {MAX_JWKS_BYTES} bytes"));
                    }
                    body.extend_from_slice(&chunk);
                }
                body
            }
        };
        parse_jwks(&bytes)
    }

    /// Maps verified claims to a principal.
    fn principal(&self, claims: &Map<String, Value>) -> Result<Principal, OidcError> {
        let c = &self.cfg;
        let err = |claim: &str, message: String| OidcError::Claim { claim: claim.to_string(), message };
        let name = match claim(claims, &c.name_claim) {
            Some(Value::String(s)) if printable(s, 128) => s.clone(),
            Some(_) => return Err(err(&c.name_claim, "the name must be 1 to 128 printable characters".into())),
            None => return Err(err(&c.name_claim, "missing".into())),
        };
        let values: Vec<&str> = match claim(claims, &c.role_claim) {
            Some(Value::String(s)) => vec![s.as_str()],
            Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
            Some(_) => return Err(err(&c.role_claim, "must be a string or a list of strings".into())),
            None => return Err(err(&c.role_claim, "missing".into())),
        };
        let roles: BTreeSet<&str> = values
            .iter()
            .filter_map(|v| if c.roles.is_empty() { ROLES.iter().copied().find(|r| r == v) } else { c.roles.get(*v).map(String::as_str) })
            .collect();
        let role = match roles.len() {
            1 => roles.into_iter().next().unwrap_or_default().to_string(),
            0 if c.roles.is_empty() => return Err(err(&c.role_claim, format!("names none of the roles {}", ROLES.join(", ")))),
            0 => return Err(err(&c.role_claim, "holds no value listed in [oidc.roles]".into())),
            _ => {
                return Err(err(
                    &c.role_claim,
                    format!("ambiguous: maps to several roles ({})", roles.into_iter().collect::<Vec<_>>().join(", ")),
                ));
            }
        };
        let unit = match claim(claims, &c.unit_claim) {
            Some(Value::String(s)) => s.trim_matches('/').to_string(),
            Some(_) => return Err(err(&c.unit_claim, "must be a string".into())),
            None => return Err(err(&c.unit_claim, "missing (use \"/\" for the whole agency)".into())),
        };
        if unit.len() > 256 || unit.chars().any(char::is_control) {
            return Err(err(&c.unit_claim, "at most 256 bytes, no control characters".into()));
        }
        let officer = if role == "officer" {
            match claim(claims, &c.officer_claim) {
                Some(Value::String(s)) if printable(s, 128) => Some(s.clone()),
                Some(_) => return Err(err(&c.officer_claim, "the officer id must be 1 to 128 printable characters".into())),
                None => Some(name.clone()),
            }
        } else {
            None
        };
        let expires_at = micros(claims.get("exp")).ok_or_else(|| err("exp", "not a time".into()))?;
        let created_at = micros(claims.get("iat")).unwrap_or_else(crate::catalog::now_micros);
        Ok(Principal { name, role, unit, officer, created_at, expires_at: Some(expires_at), revoked_at: None })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use jsonwebtoken::errors::ErrorKind;
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::json;

    const ISS: &str = "https://idp.example/realms/pd";
    const AUD: &str = "evidenced";

    fn b64(b: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(b)
    }

    /// A signing key of the test IdP, with its public JWK.
    struct TestKey {
        kid: String,
        alg: Algorithm,
        enc: EncodingKey,
        jwk: Value,
        public_der: Vec<u8>,
    }

    fn rsa_key(kid: &str) -> TestKey {
        let rsa = openssl::rsa::Rsa::generate(2048).unwrap();
        let jwk = json!({"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256", "n": b64(&rsa.n().to_vec()), "e": b64(&rsa.e().to_vec())});
        let public_der = rsa.public_key_to_der().unwrap();
        TestKey {
            kid: kid.into(),
            alg: Algorithm::RS256,
            enc: EncodingKey::from_rsa_der(&rsa.private_key_to_der().unwrap()),
            jwk,
            public_der,
        }
    }

    fn ed_key(kid: &str) -> TestKey {
        let pk = openssl::pkey::PKey::generate_ed25519().unwrap();
        let jwk = json!({"kty": "OKP", "crv": "Ed25519", "kid": kid, "x": b64(&pk.raw_public_key().unwrap())});
        TestKey {
            kid: kid.into(),
            alg: Algorithm::EdDSA,
            enc: EncodingKey::from_ed_der(&pk.private_key_to_pkcs8().unwrap()),
            jwk,
            public_der: pk.public_key_to_der().unwrap(),
        }
    }

    fn ec_key(kid: &str) -> TestKey {
        use openssl::bn::{BigNum, BigNumContext};
        use openssl::ec::{EcGroup, EcKey};
        let group = EcGroup::from_curve_name(openssl::nid::Nid::X9_62_PRIME256V1).unwrap();
        let ec = EcKey::generate(&group).unwrap();
        let (mut x, mut y, mut ctx) = (BigNum::new().unwrap(), BigNum::new().unwrap(), BigNumContext::new().unwrap());
        ec.public_key().affine_coordinates(&group, &mut x, &mut y, &mut ctx).unwrap();
        let jwk = json!({"kty": "EC", "crv": "P-256", "kid": kid, "x": b64(&x.to_vec_padded(32).unwrap()), "y": b64(&y.to_vec_padded(32).unwrap())});
        let pk = openssl::pkey::PKey::from_ec_key(ec).unwrap();
        TestKey {
            kid: kid.into(),
            alg: Algorithm::ES256,
            enc: EncodingKey::from_ec_der(&pk.private_key_to_pkcs8().unwrap()),
            jwk,
            public_der: pk.public_key_to_der().unwrap(),
        }
    }

    fn now() -> i64 {
        chrono::Utc::now().timestamp()
    }

    fn claims(role: Value, unit: &str) -> Value {
        json!({"iss": ISS, "aud": AUD, "sub": "jdoe", "role": role, "unit": unit, "iat": now(), "exp": now() + 600})
    }

    fn sign(k: &TestKey, claims: &Value) -> String {
        let mut h = Header::new(k.alg);
        h.kid = Some(k.kid.clone());
        jsonwebtoken::encode(&h, claims, &k.enc).unwrap()
    }

    fn write_jwks(path: &std::path::Path, keys: &[&TestKey]) {
        std::fs::write(path, json!({"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()}).to_string()).unwrap();
    }

    /// A config reading the JWKS from `file`, refetching on every unknown kid.
    fn config(file: &std::path::Path, extra: &str) -> OidcConfig {
        let mut c: OidcConfig =
            toml::from_str(&format!("issuer = \"{ISS}\"\naudience = \"{AUD}\"\njwks_file = \"{}\"\n{extra}", file.display())).unwrap();
        c.jwks_refresh = Duration::ZERO;
        c
    }

    #[test]
    fn jwt_shape() {
        assert!(looks_like_jwt("eyJh.eyJz.c2ln"));
        assert!(looks_like_jwt("a-_b.c.d"));
        for t in ["evd_abc", "evd_a.b.c", "a.b", "a.b.c.d", "a..c", "a.b.", ".b.c", "a.b.c=", "a b.c.d", ""] {
            assert!(!looks_like_jwt(t), "{t:?}");
        }
    }

    #[tokio::test]
    async fn good_tokens_map_role_unit_and_officer() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("jwks.json");
        let (rsa, ed, ec) = (rsa_key("r1"), ed_key("e1"), ec_key("c1"));
        write_jwks(&f, &[&rsa, &ed, &ec]);
        let v = OidcVerifier::new(&config(&f, "")).unwrap();

        let c = claims(json!("supervisor"), "/JS/NJ/");
        let p = v.verify(&sign(&rsa, &c)).await.unwrap();
        assert_eq!((p.name.as_str(), p.role.as_str(), p.unit.as_str(), p.officer.as_deref()), ("jdoe", "supervisor", "JS/NJ", None));
        assert_eq!(p.expires_at, Some(c["exp"].as_i64().unwrap() * 1_000_000));
        assert_eq!(p.created_at, c["iat"].as_i64().unwrap() * 1_000_000);
        assert!(p.revoked_at.is_none());

        // An officer: the officer claim, else the name; Ed25519 and P-256 keys work too.
        let mut c = claims(json!("officer"), "JS/NJ/XW");
        c["officer_id"] = json!("P33005");
        let p = v.verify(&sign(&ed, &c)).await.unwrap();
        assert_eq!((p.role.as_str(), p.officer.as_deref(), p.unit.as_str()), ("officer", Some("P33005"), "JS/NJ/XW"));
        c.as_object_mut().unwrap().remove("officer_id");
        c.as_object_mut().unwrap().remove("iat");
        let p = v.verify(&sign(&ec, &c)).await.unwrap();
        assert_eq!(p.officer.as_deref(), Some("jdoe"));
        assert!((p.created_at - crate::catalog::now_micros()).abs() < 10_000_000, "no iat: now");
        // The root unit, and an audience list.
        let mut c = claims(json!(["auditor"]), "/");
        c["aud"] = json!(["account", AUD]);
        assert_eq!(v.verify(&sign(&rsa, &c)).await.unwrap().unit, "");
    }

    #[tokio::test]
    async fn role_table_nested_claims_and_bad_claims() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("jwks.json");
        let k = rsa_key("r1");
        write_jwks(&f, &[&k]);
        let extra = "name_claim = \"preferred_username\"\nrole_claim = \"realm_access.roles\"\nunit_claim = \"org.unit\"\n\
                     [roles]\n\"evidence-sup\" = \"supervisor\"\n\"evidence-officer\" = \"officer\"\n\"evidence-arch\" = \"archivist\"\n";
        let v = OidcVerifier::new(&config(&f, extra)).unwrap();
        let token = |groups: Value| {
            sign(
                &k,
                &json!({"iss": ISS, "aud": AUD, "exp": now() + 60, "preferred_username": "carol", "sub": "x",
                        "realm_access": {"roles": groups}, "org": {"unit": "JS"}}),
            )
        };
        let p = v.verify(&token(json!(["offline_access", "evidence-sup", "supervisor"]))).await.unwrap();
        assert_eq!((p.name.as_str(), p.role.as_str(), p.unit.as_str()), ("carol", "supervisor", "JS"));
        // With a table, our own role names count only when listed.
        let e = v.verify(&token(json!(["admin"]))).await.unwrap_err().to_string();
        assert!(e.contains("realm_access.roles") && e.contains("[oidc.roles]"), "{e}");
        let e = v.verify(&token(json!(["evidence-sup", "evidence-arch"]))).await.unwrap_err().to_string();
        assert!(e.contains("ambiguous") && e.contains("archivist, supervisor"), "{e}");
        assert!(v.verify(&token(json!(["evidence-sup", "evidence-sup"]))).await.is_ok(), "the same role twice is one role");
        assert!(v.verify(&token(json!(7))).await.unwrap_err().to_string().contains("string"));

        // Without a table: our role names only; missing claims and bad names are errors.
        let v = OidcVerifier::new(&config(&f, "")).unwrap();
        let e = v.verify(&sign(&k, &claims(json!("chief"), "JS"))).await.unwrap_err().to_string();
        assert!(e.contains("claim `role`") && e.contains("none of the roles"), "{e}");
        let mut c = claims(json!("supervisor"), "JS");
        c.as_object_mut().unwrap().remove("role");
        assert!(matches!(v.verify(&sign(&k, &c)).await, Err(OidcError::Claim { claim, .. }) if claim == "role"));
        let mut c = claims(json!("supervisor"), "JS");
        c.as_object_mut().unwrap().remove("unit");
        let e = v.verify(&sign(&k, &c)).await.unwrap_err().to_string();
        assert!(e.contains("claim `unit`: missing"), "a missing unit is never the root: {e}");
        for bad in [json!(""), json!("a\nb"), json!("y".repeat(129)), json!(5)] {
            let mut c = claims(json!("supervisor"), "JS");
            c["sub"] = bad.clone();
            let e = v.verify(&sign(&k, &c)).await.unwrap_err().to_string();
            assert!(e.contains("claim `sub`") && e.contains("printable"), "{bad}: {e}");
        }
        let mut c = claims(json!("officer"), "JS");
        c["officer_id"] = json!("");
        assert!(v.verify(&sign(&k, &c)).await.unwrap_err().to_string().contains("officer_id"));
    }

    #[tokio::test]
    async fn issuer_audience_time_and_signature_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("jwks.json");
        let (k, other) = (rsa_key("r1"), rsa_key("r1"));
        write_jwks(&f, &[&k]);
        let v = OidcVerifier::new(&config(&f, "leeway = \"5s\"")).unwrap();
        let kind = |r: Result<Principal, OidcError>| match r {
            Err(OidcError::Token(e)) => format!("{:?}", e.kind()),
            other => format!("not a token error: {other:?}"),
        };
        let good = claims(json!("supervisor"), "JS");
        assert!(v.verify(&sign(&k, &good)).await.is_ok());

        let mut c = good.clone();
        c["iss"] = json!("https://evil.example/");
        assert_eq!(kind(v.verify(&sign(&k, &c)).await), format!("{:?}", ErrorKind::InvalidIssuer));
        let mut c = good.clone();
        c["aud"] = json!("another-app");
        assert_eq!(kind(v.verify(&sign(&k, &c)).await), format!("{:?}", ErrorKind::InvalidAudience));
        for claim in ["aud", "iss", "exp"] {
            let mut c = good.clone();
            c.as_object_mut().unwrap().remove(claim);
            assert_eq!(kind(v.verify(&sign(&k, &c)).await), format!("{:?}", ErrorKind::MissingRequiredClaim(claim.into())), "{claim}");
        }
        let mut c = good.clone();
        c["exp"] = json!(now() - 6);
        assert_eq!(kind(v.verify(&sign(&k, &c)).await), format!("{:?}", ErrorKind::ExpiredSignature));
        c["exp"] = json!(now() - 2);
        assert!(v.verify(&sign(&k, &c)).await.is_ok(), "within the leeway");
        let mut c = good.clone();
        c["nbf"] = json!(now() + 60);
        assert_eq!(kind(v.verify(&sign(&k, &c)).await), format!("{:?}", ErrorKind::ImmatureSignature));

        // Signed by another key with the same kid; a tampered payload.
        assert_eq!(kind(v.verify(&sign(&other, &good)).await), format!("{:?}", ErrorKind::InvalidSignature));
        let t = sign(&k, &good);
        let parts: Vec<&str> = t.split('.').collect();
        let mut forged = good.clone();
        forged["role"] = json!("archivist");
        let tampered = format!("{}.{}.{}", parts[0], b64(forged.to_string().as_bytes()), parts[2]);
        assert_eq!(kind(v.verify(&tampered).await), format!("{:?}", ErrorKind::InvalidSignature));
        // Too long, not a JWT.
        assert!(matches!(v.verify(&"a".repeat(MAX_JWT_LEN + 1)).await, Err(OidcError::Malformed(_))));
        assert!(matches!(v.verify("evd_x").await, Err(OidcError::Malformed(_))));
    }

    #[tokio::test]
    async fn algorithm_confusion_and_none_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("jwks.json");
        let (rsa, ed) = (rsa_key("r1"), ed_key("e1"));
        write_jwks(&f, &[&rsa, &ed]);
        let v = OidcVerifier::new(&config(&f, "")).unwrap();
        let c = claims(json!("admin"), "");

        // HS256 with the public key (DER, or the JWK's n) as the HMAC secret.
        for secret in [rsa.public_der.clone(), rsa.jwk["n"].as_str().unwrap().as_bytes().to_vec()] {
            let mut h = Header::new(Algorithm::HS256);
            h.kid = Some("r1".into());
            let t = jsonwebtoken::encode(&h, &c, &EncodingKey::from_secret(&secret)).unwrap();
            let e = v.verify(&t).await.unwrap_err();
            assert!(matches!(e, OidcError::Algorithm(_)), "{e}");
        }
        // alg none, with and without a signature segment.
        let none = format!("{}.{}", b64(br#"{"alg":"none","typ":"JWT","kid":"r1"}"#), b64(c.to_string().as_bytes()));
        assert!(matches!(v.verify(&format!("{none}.")).await, Err(OidcError::Malformed(_))));
        assert!(matches!(v.verify(&format!("{none}.c2ln")).await, Err(OidcError::Malformed(_))));
        // An allowed algorithm that does not fit the key the kid names (EdDSA token, RSA kid).
        let mut h = Header::new(Algorithm::EdDSA);
        h.kid = Some("r1".into());
        let t = jsonwebtoken::encode(&h, &c, &ed.enc).unwrap();
        assert!(matches!(v.verify(&t).await, Err(OidcError::Algorithm(_))));
        // An algorithm left out of oidc.algorithms.
        let v = OidcVerifier::new(&config(&f, "algorithms = [\"EdDSA\"]")).unwrap();
        assert!(matches!(v.verify(&sign(&rsa, &c)).await, Err(OidcError::Algorithm(_))));
        assert!(v.verify(&sign(&ed, &c)).await.is_ok());
        // HMAC cannot be configured into the verifier either.
        let mut cfg = config(&f, "");
        cfg.algorithms = vec!["HS256".into()];
        assert!(matches!(OidcVerifier::new(&cfg), Err(OidcError::Algorithm(_))));
        // An `oct` key in the JWKS is never used.
        std::fs::write(&f, json!({"keys": [{"kty": "oct", "kid": "h", "k": b64(b"secret")}, ed.jwk]}).to_string()).unwrap();
        let v = OidcVerifier::new(&config(&f, "")).unwrap();
        let mut h = Header::new(Algorithm::HS256);
        h.kid = Some("h".into());
        assert!(v.verify(&jsonwebtoken::encode(&h, &c, &EncodingKey::from_secret(b"secret")).unwrap()).await.is_err());
    }

    #[tokio::test]
    async fn unknown_kid_refetches_then_fails_and_rotation_works() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("jwks.json");
        let (old, new) = (ed_key("2025"), ed_key("2026"));
        write_jwks(&f, &[&old]);
        let v = OidcVerifier::new(&config(&f, "")).unwrap();
        let c = claims(json!("auditor"), "");
        assert!(v.verify(&sign(&old, &c)).await.is_ok());
        let e = v.verify(&sign(&new, &c)).await.unwrap_err();
        assert!(matches!(&e, OidcError::UnknownKey(k) if k == "2026"), "{e}");
        write_jwks(&f, &[&old, &new]);
        assert!(v.verify(&sign(&new, &c)).await.is_ok(), "the new key is picked up by the refetch");
        write_jwks(&f, &[&new]);
        assert!(v.verify(&sign(&old, &c)).await.is_ok(), "a known kid needs no refetch");

        // Rate limit: with jwks_refresh, a new kid right after a fetch is not fetched.
        let mut cfg = config(&f, "");
        cfg.jwks_refresh = Duration::from_secs(300);
        write_jwks(&f, &[&old]);
        let v = OidcVerifier::new(&cfg).unwrap();
        write_jwks(&f, &[&old, &new]);
        assert!(matches!(v.verify(&sign(&new, &c)).await, Err(OidcError::UnknownKey(_))));

        // A token without kid: the only key that fits.
        let mut h = Header::new(Algorithm::EdDSA);
        h.kid = None;
        assert!(v.verify(&jsonwebtoken::encode(&h, &c, &old.enc).unwrap()).await.is_ok());
    }

    #[tokio::test]
    async fn jwks_that_cannot_be_loaded_name_their_source() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.json");
        let e = OidcVerifier::new(&config(&missing, "")).unwrap_err().to_string();
        assert!(e.contains("oidc.jwks_file") && e.contains(&missing.display().to_string()), "{e}");
        let f = dir.path().join("jwks.json");
        std::fs::write(&f, "{\"keys\": [{\"kty\": \"oct\", \"k\": \"c2VjcmV0\"}]}").unwrap();
        let e = OidcVerifier::new(&config(&f, "")).unwrap_err().to_string();
        assert!(e.contains("none of its 1 keys"), "{e}");
        std::fs::write(&f, "<html>").unwrap();
        assert!(OidcVerifier::new(&config(&f, "")).unwrap_err().to_string().contains("not JSON"));

        // A URL is fetched on first use; a refused connection names the URL.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let url = format!("http://127.0.0.1:{port}/certs");
        let mut cfg = config(&f, "");
        cfg.jwks_file = None;
        cfg.jwks_url = Some(url.clone());
        let v = OidcVerifier::new(&cfg).unwrap();
        let k = ed_key("e1");
        let e = v.verify(&sign(&k, &claims(json!("auditor"), ""))).await.unwrap_err();
        assert!(matches!(&e, OidcError::Jwks { from, .. } if *from == url), "{e}");
    }
}
