//! RFC 3161 time-stamping: the client that asks a Time-Stamping Authority (TSA) for a token over
//! an object's SHA-256, and the verification of such tokens, both when they arrive (with the nonce
//! we sent) and later from storage (`evidenced verify`, exports). A token proves to a third party
//! that the digest existed at the token's `genTime`, independently of our own clock and catalog.
//!
//! All ASN.1 and CMS work is done by libcrypto (OpenSSL 3): the Rust `openssl` crate has no
//! wrappers for the `TS_*` API, so the few functions needed are declared in [`ffi`] and every raw
//! pointer lives in an [`Owned`] guard that frees it on every path. Verification is
//! `TS_RESP_verify_response` with the imprint (and nonce) taken from the request we build, plus the
//! signature, which checks the signer certificate's chain to the configured CA, its critical
//! `timeStamping` extended key usage (purpose `TIMESTAMP_SIGN`), the ESS signing-certificate
//! attribute and the CMS signature.
//!
//! HTTP is plain `reqwest` without TLS: an `https://` TSA URL needs reqwest's TLS feature and is
//! refused by [`TsaClient::new`] until it is enabled.

use std::ffi::{c_int, c_long};
use std::ptr::NonNull;
use std::time::Duration;

use foreign_types::{ForeignType, ForeignTypeRef};
use openssl::error::ErrorStack;
use openssl::pkcs7::Pkcs7Ref;
use openssl::x509::X509;
use openssl::x509::store::{X509Store, X509StoreBuilder};
use openssl::x509::verify::X509VerifyParam;
use openssl_sys as sys;

/// The largest TimeStampResp we accept (a token with a certificate chain is a few KiB).
const MAX_RESPONSE: usize = 1 << 20;

/// Why time-stamping or token verification failed. The variants tell the caller what to do:
/// retry later ([`TsaError::Unavailable`]), give up on this answer ([`TsaError::Rejected`],
/// [`TsaError::Invalid`]) or fix the configuration ([`TsaError::Config`]).
#[derive(Debug, thiserror::Error)]
pub enum TsaError {
    /// The TSA could not be reached or failed on its side (connection refused, timeout, HTTP 5xx):
    /// transient, the caller keeps the object pending and retries later.
    #[error("TSA {url} unavailable: {message}")]
    Unavailable {
        /// The TSA asked, so logs show which one is down.
        url: String,
        /// What went wrong (the HTTP client's error chain or the status line).
        message: String,
    },
    /// The TSA answered but refused: a PKIStatus other than granted, or HTTP 4xx. Retrying the
    /// same request will not help without a change on one side.
    #[error("TSA {url} rejected the request: {message}")]
    Rejected {
        /// The TSA asked.
        url: String,
        /// The status (and failure info / text) the TSA gave.
        message: String,
    },
    /// A response or stored token fails verification: unparsable DER, bad signature, an imprint
    /// for another digest, a wrong nonce, a signer not chaining to the CA or lacking the
    /// `timeStamping` extended key usage, or a response whose status is not granted.
    #[error("invalid time-stamp token: {0}")]
    Invalid(String),
    /// The configuration cannot work: no usable CA certificate, a malformed or unsupported URL,
    /// or libcrypto failing to build a request.
    #[error("TSA configuration: {0}")]
    Config(String),
}

impl TsaError {
    /// Whether trying again later may succeed (only [`TsaError::Unavailable`]); the daemon keeps
    /// stamping pending on transient errors and records the others.
    pub fn is_transient(&self) -> bool {
        matches!(self, TsaError::Unavailable { .. })
    }
}

/// The TSA client: URL, CA for checking answers, HTTP client with a timeout.
#[derive(Clone)]
pub struct TsaClient {
    /// Where TimeStampReqs are POSTed.
    url: String,
    /// The trusted CA certificate(s): every answer's signer must chain to one of them.
    ca: Vec<X509>,
    /// The HTTP client, carrying the per-request timeout.
    http: reqwest::Client,
}

impl std::fmt::Debug for TsaClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TsaClient").field("url", &self.url).field("ca_certs", &self.ca.len()).finish()
    }
}

impl TsaClient {
    /// `ca_pem`: the PEM bytes of the TSA's CA certificate(s) (the `[tsa] ca_file` contents).
    /// `timeout` bounds each whole request (connect, send, answer). Only `http://` URLs work with
    /// the TLS-less HTTP client this crate is built with; `https://` is refused here.
    pub fn new(url: &str, ca_pem: &[u8], timeout: Duration) -> Result<Self, TsaError> {
        let parsed = reqwest::Url::parse(url).map_err(|e| TsaError::Config(format!("TSA URL {url:?}: {e}")))?;
        match parsed.scheme() {
            "http" => {}
            "https" => {
                return Err(TsaError::Config(format!("TSA URL {url}: https needs reqwest's TLS feature, which this build lacks")));
            }
            other => return Err(TsaError::Config(format!("TSA URL {url}: unsupported scheme {other:?}"))),
        }
        let ca = parse_ca(ca_pem)?;
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .map_err(|e| TsaError::Config(format!("HTTP client: {}", error_chain(&e))))?;
        Ok(TsaClient { url: url.to_string(), ca, http })
    }

    /// The configured URL (for logs and custody details).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Requests a token for a SHA-256 digest: builds a TimeStampReq (version 1, SHA-256 imprint,
    /// certReq = true, a random 64-bit nonce), POSTs it as `application/timestamp-query`, and checks the
    /// answer fully (status granted, imprint, nonce, signature, signer's timeStamping EKU, chain to the CA)
    /// before returning it.
    pub async fn stamp(&self, sha256: &[u8; 32]) -> Result<Token, TsaError> {
        let mut nonce = [0u8; 8];
        openssl::rand::rand_bytes(&mut nonce).map_err(|e| TsaError::Config(format!("random nonce: {e}")))?;
        // Built (and dropped) before the first await: raw libcrypto pointers never cross one.
        let body = request_der(sha256, Some(&nonce)).map_err(TsaError::Config)?;
        let unavailable = |message: String| TsaError::Unavailable { url: self.url.clone(), message };
        let mut resp = self
            .http
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, "application/timestamp-query")
            .header(reqwest::header::ACCEPT, "application/timestamp-reply")
            .body(body)
            .send()
            .await
            .map_err(|e| unavailable(error_chain(&e)))?;
        let status = resp.status();
        if status.is_client_error() {
            return Err(TsaError::Rejected { url: self.url.clone(), message: format!("HTTP {status}") });
        }
        if !status.is_success() {
            return Err(unavailable(format!("HTTP {status}")));
        }
        let mut der = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| unavailable(error_chain(&e)))? {
            if der.len() + chunk.len() > MAX_RESPONSE {
                return Err(TsaError::Invalid(format!("response larger than {MAX_RESPONSE} bytes")));
            }
            der.extend_from_slice(&chunk);
        }
        let token = check_response(&der, sha256, Some(&nonce), &self.ca, CheckTime::Now).map_err(|f| match f {
            Failure::NotGranted(message) => TsaError::Rejected { url: self.url.clone(), message },
            Failure::Invalid(m) => TsaError::Invalid(m),
        })?;
        tracing::debug!(url = %self.url, serial = %token.serial, gen_time_micros = token.gen_time_micros, "time-stamp granted");
        Ok(token)
    }
}

/// A verified time-stamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// The whole TimeStampResp, DER, as received (what is stored beside the object; `openssl ts -verify -in` reads it).
    pub der: Vec<u8>,
    /// genTime from TSTInfo, as microseconds since the Unix epoch (UTC).
    pub gen_time_micros: i64,
    /// The TSA's serial number of the token, as a decimal string.
    pub serial: String,
}

/// Verifies a stored TimeStampResp (DER) against a digest and the CA, without a nonce
/// (what `evidenced verify` and exports do later). Returns the parsed facts.
///
/// The signer's chain is checked at the token's `genTime`, not at the current time, so a token
/// stays verifiable after the TSA certificate expires (the signature proves the TSA vouched for
/// that time while its certificate was valid). `openssl ts -verify` checks at the current time;
/// after expiry it needs `-attime <genTime as Unix seconds>` to agree.
pub fn verify_token(resp_der: &[u8], sha256: &[u8; 32], ca_pem: &[u8]) -> Result<Token, TsaError> {
    let ca = parse_ca(ca_pem)?;
    check_response(resp_der, sha256, None, &ca, CheckTime::GenTime).map_err(|f| match f {
        Failure::NotGranted(m) => TsaError::Invalid(format!("response status is not granted: {m}")),
        Failure::Invalid(m) => TsaError::Invalid(m),
    })
}

/// The certificates embedded in a TimeStampResp's SignedData (the TSA's signer certificate and
/// whatever chain it sent), PEM-concatenated, so an export can ship them beside the token.
/// Empty when the token carries none. Does not verify anything.
pub fn token_certs_pem(resp_der: &[u8]) -> Result<Vec<u8>, TsaError> {
    drain_errors();
    let resp = parse_resp(resp_der).map_err(TsaError::Invalid)?;
    // SAFETY: `resp` is a valid TS_RESP; the returned token is borrowed from it (or NULL).
    let token = unsafe { ffi::TS_RESP_get_token(resp.as_ptr()) };
    if token.is_null() {
        return Err(TsaError::Invalid("response carries no time-stamp token".into()));
    }
    // SAFETY: `token` is a valid PKCS7 owned by `resp`, which outlives this borrow.
    let token = unsafe { Pkcs7Ref::from_ptr(token) };
    let mut out = Vec::new();
    if let Some(certs) = token.signed().and_then(|s| s.certificates()) {
        for cert in certs {
            out.extend_from_slice(&cert.to_pem().map_err(|e| TsaError::Invalid(format!("certificate to PEM: {e}")))?);
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------- internals

/// At which time the signer's certificate chain must be valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CheckTime {
    /// Now: a fresh answer from the TSA.
    Now,
    /// The token's own genTime: a stored token, possibly older than its signer's expiry.
    GenTime,
}

/// Why a response failed, before it is mapped to the caller's [`TsaError`].
#[derive(Debug)]
enum Failure {
    /// The PKIStatus is neither granted nor grantedWithMods (text: what the TSA said).
    NotGranted(String),
    /// Anything else: parsing, signature, chain, imprint, nonce.
    Invalid(String),
}

/// Parses every certificate of a PEM bundle (at least one).
fn parse_ca(ca_pem: &[u8]) -> Result<Vec<X509>, TsaError> {
    let ca = X509::stack_from_pem(ca_pem).map_err(|e| TsaError::Config(format!("TSA CA certificates: {e}")))?;
    if ca.is_empty() {
        return Err(TsaError::Config("TSA CA file holds no certificate".into()));
    }
    Ok(ca)
}

/// A trust store of exactly `ca`, checking chains at `time` (Unix seconds) when given.
fn trust_store(ca: &[X509], time: Option<i64>) -> Result<X509Store, ErrorStack> {
    let mut b = X509StoreBuilder::new()?;
    for cert in ca {
        b.add_cert(cert.clone())?;
    }
    if let Some(t) = time {
        let mut param = X509VerifyParam::new()?;
        param.set_time(t as _);
        b.set_param(&param)?;
    }
    Ok(b.build())
}

/// Empties this thread's libcrypto error queue so a later [`ErrorStack::get`] reports only the
/// failure at hand.
fn drain_errors() {
    let _ = ErrorStack::get();
}

/// `what: <libcrypto error stack>`.
fn ossl(what: &str) -> String {
    let stack = ErrorStack::get();
    if stack.errors().is_empty() { what.to_string() } else { format!("{what}: {stack}") }
}

/// An error and its sources, joined (reqwest's top-level message alone hides the cause).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

/// Builds a TimeStampReq: version 1, SHA-256 imprint of `sha256`, certReq = true, and the nonce
/// (big-endian unsigned) when given.
fn build_request(sha256: &[u8; 32], nonce: Option<&[u8; 8]>) -> Result<Owned<ffi::TS_REQ>, String> {
    drain_errors();
    // SAFETY (all blocks below): every pointer passed is either freshly allocated and checked
    // non-NULL by `Owned::new`, or borrowed from such an object for the duration of the call.
    // The TS_* setters copy their arguments (set_algo/set_msg_imprint/set_nonce duplicate,
    // set_msg copies the bytes), so our guards keep ownership of what they hold.
    let req = Owned::new(unsafe { ffi::TS_REQ_new() }, ffi::TS_REQ_free).ok_or_else(|| ossl("TS_REQ_new"))?;
    if unsafe { ffi::TS_REQ_set_version(req.as_ptr(), 1) } != 1 {
        return Err(ossl("TS_REQ_set_version"));
    }
    let algo = Owned::new(unsafe { ffi::X509_ALGOR_new() }, sys::X509_ALGOR_free).ok_or_else(|| ossl("X509_ALGOR_new"))?;
    // OBJ_nid2obj returns a static object: handing it to set0 is what OpenSSL itself does.
    let obj = unsafe { sys::OBJ_nid2obj(sys::NID_sha256) };
    if obj.is_null() || unsafe { ffi::X509_ALGOR_set0(algo.as_ptr(), obj, sys::V_ASN1_NULL, std::ptr::null_mut()) } != 1 {
        return Err(ossl("X509_ALGOR_set0(sha256)"));
    }
    let imprint = Owned::new(unsafe { ffi::TS_MSG_IMPRINT_new() }, ffi::TS_MSG_IMPRINT_free).ok_or_else(|| ossl("TS_MSG_IMPRINT_new"))?;
    if unsafe { ffi::TS_MSG_IMPRINT_set_algo(imprint.as_ptr(), algo.as_ptr()) } != 1 {
        return Err(ossl("TS_MSG_IMPRINT_set_algo"));
    }
    // set_msg takes a non-const pointer but only reads (ASN1_OCTET_STRING_set copies).
    let mut digest = *sha256;
    if unsafe { ffi::TS_MSG_IMPRINT_set_msg(imprint.as_ptr(), digest.as_mut_ptr(), digest.len() as c_int) } != 1 {
        return Err(ossl("TS_MSG_IMPRINT_set_msg"));
    }
    if unsafe { ffi::TS_REQ_set_msg_imprint(req.as_ptr(), imprint.as_ptr()) } != 1 {
        return Err(ossl("TS_REQ_set_msg_imprint"));
    }
    if let Some(nonce) = nonce {
        let bn = openssl::bn::BigNum::from_slice(nonce).map_err(|e| format!("nonce: {e}"))?;
        let n = openssl::asn1::Asn1Integer::from_bn(&bn).map_err(|e| format!("nonce: {e}"))?;
        if unsafe { ffi::TS_REQ_set_nonce(req.as_ptr(), n.as_ptr()) } != 1 {
            return Err(ossl("TS_REQ_set_nonce"));
        }
    }
    if unsafe { ffi::TS_REQ_set_cert_req(req.as_ptr(), 1) } != 1 {
        return Err(ossl("TS_REQ_set_cert_req"));
    }
    Ok(req)
}

/// The DER of [`build_request`].
fn request_der(sha256: &[u8; 32], nonce: Option<&[u8; 8]>) -> Result<Vec<u8>, String> {
    let req = build_request(sha256, nonce)?;
    // SAFETY: `req` is a valid TS_REQ; a NULL output pointer asks for the length only.
    let len = unsafe { ffi::i2d_TS_REQ(req.as_ptr(), std::ptr::null_mut()) };
    if len <= 0 {
        return Err(ossl("i2d_TS_REQ"));
    }
    let mut der = vec![0u8; len as usize];
    let mut p = der.as_mut_ptr();
    // SAFETY: `der` has exactly the `len` bytes i2d reported; i2d writes them and advances `p`.
    let written = unsafe { ffi::i2d_TS_REQ(req.as_ptr(), &mut p) };
    if written != len {
        return Err(ossl("i2d_TS_REQ"));
    }
    Ok(der)
}

/// Parses a whole TimeStampResp; trailing bytes are refused.
fn parse_resp(der: &[u8]) -> Result<Owned<ffi::TS_RESP>, String> {
    let len = c_long::try_from(der.len()).map_err(|_| "response too large".to_string())?;
    let mut p = der.as_ptr();
    // SAFETY: `p` points at `len` readable bytes; d2i only reads them and advances `p`.
    let resp = Owned::new(unsafe { ffi::d2i_TS_RESP(std::ptr::null_mut(), &mut p, len) }, ffi::TS_RESP_free)
        .ok_or_else(|| ossl("unparsable TimeStampResp DER"))?;
    // SAFETY: d2i left `p` inside (or one past the end of) `der`.
    let used = unsafe { p.offset_from(der.as_ptr()) };
    if used != der.len() as isize {
        return Err(format!("{} trailing bytes after the TimeStampResp", der.len() as isize - used));
    }
    Ok(resp)
}

/// The textual status of a response (status, failure info, free text), for messages.
fn status_text(resp: &Owned<ffi::TS_RESP>) -> String {
    // SAFETY: `resp` is valid; the status info is borrowed from it; the BIO is ours and freed by
    // its guard; BIO_get_mem_data borrows the BIO's buffer, copied before the BIO is freed.
    unsafe {
        let si = ffi::TS_RESP_get_status_info(resp.as_ptr());
        let Some(bio) = Owned::new(sys::BIO_new(sys::BIO_s_mem()), sys::BIO_free_all) else { return "unknown status".into() };
        if si.is_null() || ffi::TS_STATUS_INFO_print_bio(bio.as_ptr(), si) != 1 {
            return "unknown status".into();
        }
        let mut data: *mut std::ffi::c_char = std::ptr::null_mut();
        let n = sys::BIO_get_mem_data(bio.as_ptr(), &mut data);
        if data.is_null() || n <= 0 {
            return "unknown status".into();
        }
        let bytes = std::slice::from_raw_parts(data as *const u8, n as usize);
        String::from_utf8_lossy(bytes).split_whitespace().collect::<Vec<_>>().join(" ")
    }
}

/// Parses, checks and verifies a TimeStampResp for `sha256` (and `nonce` when given) against `ca`.
fn check_response(der: &[u8], sha256: &[u8; 32], nonce: Option<&[u8; 8]>, ca: &[X509], at: CheckTime) -> Result<Token, Failure> {
    drain_errors();
    let resp = parse_resp(der).map_err(Failure::Invalid)?;

    // SAFETY: `resp` is valid; status info and its status integer are borrowed from it.
    let status = unsafe {
        let si = ffi::TS_RESP_get_status_info(resp.as_ptr());
        let st = if si.is_null() { std::ptr::null() } else { ffi::TS_STATUS_INFO_get0_status(si) };
        if st.is_null() { -1 } else { sys::ASN1_INTEGER_get(st) }
    };
    // 0 = granted, 1 = grantedWithMods: both carry a token.
    if status != 0 && status != 1 {
        return Err(Failure::NotGranted(status_text(&resp)));
    }

    // SAFETY: `resp` is valid; the TSTInfo and its fields are borrowed from it while `resp` lives.
    let tst = unsafe { ffi::TS_RESP_get_tst_info(resp.as_ptr()) };
    if tst.is_null() {
        return Err(Failure::Invalid("granted response without a time-stamp token".into()));
    }
    // SAFETY: as above; a GeneralizedTime is an ASN1_STRING holding its text form.
    let gen_time = unsafe {
        let t = ffi::TS_TST_INFO_get_time(tst);
        if t.is_null() {
            None
        } else {
            let s = t as *const sys::ASN1_STRING;
            let n = sys::ASN1_STRING_length(s);
            let d = sys::ASN1_STRING_get0_data(s);
            if d.is_null() || n <= 0 { None } else { Some(String::from_utf8_lossy(std::slice::from_raw_parts(d, n as usize)).into_owned()) }
        }
    };
    let gen_time = gen_time.ok_or_else(|| Failure::Invalid("TSTInfo without genTime".into()))?;
    let gen_time_micros = parse_generalized_time(&gen_time).ok_or_else(|| Failure::Invalid(format!("unparsable genTime {gen_time:?}")))?;
    // SAFETY: the serial is borrowed from `tst`; `Asn1IntegerRef` only reads it here.
    let serial = unsafe {
        let s = ffi::TS_TST_INFO_get_serial(tst);
        if s.is_null() {
            return Err(Failure::Invalid("TSTInfo without serialNumber".into()));
        }
        openssl::asn1::Asn1IntegerRef::from_ptr(s as *mut sys::ASN1_INTEGER).to_bn().and_then(|bn| bn.to_dec_str().map(|s| s.to_string()))
    }
    .map_err(|e| Failure::Invalid(format!("serialNumber: {e}")))?;

    // The verification context comes from the request we sent (or would have sent): it carries
    // the SHA-256 algorithm and imprint (and our nonce), copied into memory the context owns.
    let req = build_request(sha256, nonce).map_err(Failure::Invalid)?;
    // SAFETY: `req` is valid; with a NULL ctx, a new context is allocated and returned (owned).
    let ctx = Owned::new(unsafe { ffi::TS_REQ_to_TS_VERIFY_CTX(req.as_ptr(), std::ptr::null_mut()) }, ffi::TS_VERIFY_CTX_free)
        .ok_or_else(|| Failure::Invalid(ossl("TS_REQ_to_TS_VERIFY_CTX")))?;
    // TS_REQ_to_TS_VERIFY_CTX sets VERSION | IMPRINT | NONCE (if any) | SIGNER and leaves out
    // SIGNATURE, which must be added: it is the check of signature, chain, EKU and ESS attribute.
    // SAFETY: `ctx` is valid.
    unsafe { ffi::TS_VERIFY_CTX_add_flags(ctx.as_ptr(), ffi::TS_VFY_SIGNATURE) };
    let time = match at {
        CheckTime::Now => None,
        CheckTime::GenTime => Some(gen_time_micros.div_euclid(1_000_000)),
    };
    let store = trust_store(ca, time).map_err(|e| Failure::Invalid(format!("trust store: {e}")))?;
    // TS_VERIFY_CTX_set_store takes ownership of the store (TS_VERIFY_CTX_free frees it), so our
    // handle is forgotten right after handing it over: it is freed exactly once, by the ctx.
    let store_ptr = store.as_ptr();
    std::mem::forget(store);
    // SAFETY: `ctx` is valid and holds no store yet (TS_REQ_to_TS_VERIFY_CTX zeroes it);
    // `store_ptr` is a valid X509_STORE whose one reference now belongs to `ctx`.
    unsafe { ffi::TS_VERIFY_CTX_set_store(ctx.as_ptr(), store_ptr) };
    drain_errors();
    // SAFETY: both are valid; verification only reads the response.
    if unsafe { ffi::TS_RESP_verify_response(ctx.as_ptr(), resp.as_ptr()) } != 1 {
        return Err(Failure::Invalid(ossl("verification failed")));
    }
    Ok(Token { der: der.to_vec(), gen_time_micros, serial })
}

/// `YYYYMMDDHHMMSS[.fraction]Z` (DER GeneralizedTime) → microseconds since the epoch; digits of
/// the fraction beyond microseconds are dropped.
fn parse_generalized_time(s: &str) -> Option<i64> {
    let s = s.strip_suffix('Z')?;
    let (main, frac) = s.split_once('.').unwrap_or((s, ""));
    if main.len() != 14 || !main.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let dt = chrono::NaiveDateTime::parse_from_str(main, "%Y%m%d%H%M%S").ok()?;
    let mut micros = 0i64;
    for (i, b) in frac.bytes().take(6).enumerate() {
        micros += i64::from(b - b'0') * 10i64.pow(5 - i as u32);
    }
    dt.and_utc().timestamp_micros().checked_add(micros)
}

/// An owned libcrypto object, freed by its matching `*_free` on drop (every error path included).
struct Owned<T> {
    /// The object; never NULL.
    ptr: NonNull<T>,
    /// The libcrypto function that frees it.
    free: unsafe extern "C" fn(*mut T),
}

impl<T> Owned<T> {
    /// Takes ownership of `ptr`, or `None` if the allocation/parse returned NULL.
    fn new(ptr: *mut T, free: unsafe extern "C" fn(*mut T)) -> Option<Self> {
        NonNull::new(ptr).map(|ptr| Owned { ptr, free })
    }

    /// The raw pointer, still owned by the guard.
    fn as_ptr(&self) -> *mut T {
        self.ptr.as_ptr()
    }
}

impl<T> Drop for Owned<T> {
    fn drop(&mut self) {
        // SAFETY: `ptr` was returned by the allocator matching `free` and is freed only here.
        unsafe { (self.free)(self.ptr.as_ptr()) }
    }
}

/// The libcrypto `TS_*` API (libcrypto.so.3, linked by `openssl-sys`), declared by hand: the
/// `openssl` crates wrap none of it. Signatures follow `/usr/include/openssl/ts.h` (OpenSSL 3.0).
#[allow(non_camel_case_types)]
mod ffi {
    use std::ffi::{c_int, c_long, c_uchar, c_void};

    use openssl_sys::{ASN1_GENERALIZEDTIME, ASN1_INTEGER, ASN1_OBJECT, BIO, PKCS7, X509_ALGOR, X509_STORE};

    /// `TimeStampReq`.
    pub enum TS_REQ {}
    /// `MessageImprint`.
    pub enum TS_MSG_IMPRINT {}
    /// `TimeStampResp`.
    pub enum TS_RESP {}
    /// `PKIStatusInfo`.
    pub enum TS_STATUS_INFO {}
    /// `TSTInfo`.
    pub enum TS_TST_INFO {}
    /// Verification settings for `TS_RESP_verify_response`.
    pub enum TS_VERIFY_CTX {}

    /// Verify the CMS signature, the signer's chain, purpose and ESS attribute.
    pub const TS_VFY_SIGNATURE: c_int = 1 << 0;

    unsafe extern "C" {
        pub fn TS_REQ_new() -> *mut TS_REQ;
        pub fn TS_REQ_free(a: *mut TS_REQ);
        pub fn TS_REQ_set_version(a: *mut TS_REQ, version: c_long) -> c_int;
        pub fn TS_REQ_set_msg_imprint(a: *mut TS_REQ, msg_imprint: *mut TS_MSG_IMPRINT) -> c_int;
        pub fn TS_REQ_set_nonce(a: *mut TS_REQ, nonce: *const ASN1_INTEGER) -> c_int;
        pub fn TS_REQ_set_cert_req(a: *mut TS_REQ, cert_req: c_int) -> c_int;
        pub fn i2d_TS_REQ(a: *const TS_REQ, pp: *mut *mut c_uchar) -> c_int;
        #[cfg(test)]
        pub fn d2i_TS_REQ(a: *mut *mut TS_REQ, pp: *mut *const c_uchar, length: c_long) -> *mut TS_REQ;
        #[cfg(test)]
        pub fn TS_REQ_get_nonce(a: *const TS_REQ) -> *const ASN1_INTEGER;
        #[cfg(test)]
        pub fn TS_REQ_get_cert_req(a: *const TS_REQ) -> c_int;
        #[cfg(test)]
        pub fn TS_REQ_get_version(a: *const TS_REQ) -> c_long;

        pub fn TS_MSG_IMPRINT_new() -> *mut TS_MSG_IMPRINT;
        pub fn TS_MSG_IMPRINT_free(a: *mut TS_MSG_IMPRINT);
        pub fn TS_MSG_IMPRINT_set_algo(a: *mut TS_MSG_IMPRINT, alg: *mut X509_ALGOR) -> c_int;
        pub fn TS_MSG_IMPRINT_set_msg(a: *mut TS_MSG_IMPRINT, d: *mut c_uchar, len: c_int) -> c_int;

        pub fn d2i_TS_RESP(a: *mut *mut TS_RESP, pp: *mut *const c_uchar, length: c_long) -> *mut TS_RESP;
        pub fn TS_RESP_free(a: *mut TS_RESP);
        pub fn TS_RESP_get_status_info(a: *mut TS_RESP) -> *mut TS_STATUS_INFO;
        pub fn TS_RESP_get_token(a: *mut TS_RESP) -> *mut PKCS7;
        pub fn TS_RESP_get_tst_info(a: *mut TS_RESP) -> *mut TS_TST_INFO;
        pub fn TS_STATUS_INFO_get0_status(a: *const TS_STATUS_INFO) -> *const ASN1_INTEGER;
        pub fn TS_STATUS_INFO_print_bio(bio: *mut BIO, a: *mut TS_STATUS_INFO) -> c_int;
        pub fn TS_TST_INFO_get_time(a: *const TS_TST_INFO) -> *const ASN1_GENERALIZEDTIME;
        pub fn TS_TST_INFO_get_serial(a: *const TS_TST_INFO) -> *const ASN1_INTEGER;

        pub fn TS_REQ_to_TS_VERIFY_CTX(req: *mut TS_REQ, ctx: *mut TS_VERIFY_CTX) -> *mut TS_VERIFY_CTX;
        pub fn TS_VERIFY_CTX_free(ctx: *mut TS_VERIFY_CTX);
        pub fn TS_VERIFY_CTX_add_flags(ctx: *mut TS_VERIFY_CTX, f: c_int) -> c_int;
        pub fn TS_VERIFY_CTX_set_store(ctx: *mut TS_VERIFY_CTX, s: *mut X509_STORE) -> *mut X509_STORE;
        pub fn TS_RESP_verify_response(ctx: *mut TS_VERIFY_CTX, response: *mut TS_RESP) -> c_int;

        pub fn X509_ALGOR_new() -> *mut X509_ALGOR;
        pub fn X509_ALGOR_set0(alg: *mut X509_ALGOR, aobj: *mut ASN1_OBJECT, ptype: c_int, pval: *mut c_void) -> c_int;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest() -> [u8; 32] {
        let mut d = [0u8; 32];
        for (i, b) in d.iter_mut().enumerate() {
            *b = i as u8 * 7 + 1;
        }
        d
    }

    /// Parses request DER back with libcrypto.
    fn parse_req(der: &[u8]) -> Owned<ffi::TS_REQ> {
        let mut p = der.as_ptr();
        // SAFETY: `p` points at `der.len()` readable bytes.
        let req = unsafe { ffi::d2i_TS_REQ(std::ptr::null_mut(), &mut p, der.len() as c_long) };
        let req = Owned::new(req, ffi::TS_REQ_free).expect("request DER parses");
        // SAFETY: p stays within der.
        assert_eq!(unsafe { p.offset_from(der.as_ptr()) }, der.len() as isize, "whole request consumed");
        req
    }

    #[test]
    fn request_round_trips_through_libcrypto() {
        let nonce = [0x81, 2, 3, 4, 5, 6, 7, 8];
        let der = request_der(&digest(), Some(&nonce)).unwrap();
        let req = parse_req(&der);
        // SAFETY: req is valid; getters borrow.
        unsafe {
            assert_eq!(ffi::TS_REQ_get_version(req.as_ptr()), 1);
            assert_eq!(ffi::TS_REQ_get_cert_req(req.as_ptr()), 1);
            let n = ffi::TS_REQ_get_nonce(req.as_ptr());
            assert!(!n.is_null());
            let bn = openssl::asn1::Asn1IntegerRef::from_ptr(n as *mut _).to_bn().unwrap();
            assert_eq!(bn.to_vec(), nonce.to_vec(), "nonce is the 64-bit unsigned big-endian value");
            assert!(!bn.is_negative());
        }
        // The digest bytes appear verbatim as the imprint's OCTET STRING.
        let imprint = [&[0x04, 0x20][..], &digest()].concat();
        assert!(der.windows(imprint.len()).any(|w| w == imprint.as_slice()));
    }

    #[test]
    fn request_without_nonce_has_none() {
        let der = request_der(&digest(), None).unwrap();
        let req = parse_req(&der);
        // SAFETY: req is valid.
        assert!(unsafe { ffi::TS_REQ_get_nonce(req.as_ptr()) }.is_null());
    }

    #[test]
    fn request_reads_as_expected_with_the_openssl_cli() {
        let Ok(dir) = tempfile::tempdir() else { return };
        let path = dir.path().join("req.tsq");
        std::fs::write(&path, request_der(&digest(), Some(&[0, 0, 0, 0, 0, 0, 0x12, 0x34])).unwrap()).unwrap();
        let out = match std::process::Command::new("openssl").args(["ts", "-query", "-text", "-in"]).arg(&path).output() {
            Ok(o) => o,
            Err(_) => return, // no CLI: the libcrypto round trip above still covers the request
        };
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("Version: 1"), "{text}");
        assert!(text.contains("Hash Algorithm: sha256"), "{text}");
        assert!(text.contains("Nonce: 0x1234"), "{text}");
        assert!(text.contains("Certificate required: yes"), "{text}");
        assert!(text.contains("Policy OID: unspecified"), "{text}");
        assert!(text.contains("0000 - 01 08 0f 16"), "{text}");
    }

    #[test]
    fn generalized_time_parses_with_and_without_fraction() {
        assert_eq!(parse_generalized_time("19700101000000Z"), Some(0));
        assert_eq!(parse_generalized_time("20231114221320Z"), Some(1_700_000_000_000_000));
        assert_eq!(parse_generalized_time("20231114221320.5Z"), Some(1_700_000_000_500_000));
        assert_eq!(parse_generalized_time("20231114221320.000001Z"), Some(1_700_000_000_000_001));
        assert_eq!(parse_generalized_time("20231114221320.1234567Z"), Some(1_700_000_000_123_456));
        assert_eq!(parse_generalized_time("20231114221320"), None);
        assert_eq!(parse_generalized_time("2023111422132Z"), None);
        assert_eq!(parse_generalized_time("20231314221320Z"), None);
        assert_eq!(parse_generalized_time("20231114221320.x1Z"), None);
    }

    #[test]
    fn garbage_and_truncation_are_invalid() {
        let ca = X509::stack_from_pem(TEST_CA).unwrap();
        for der in [&b""[..], b"\x30\x03\x02\x01", b"not der at all", b"\x30\x80\x00\x00"] {
            let e = check_response(der, &digest(), None, &ca, CheckTime::Now).unwrap_err();
            assert!(matches!(e, Failure::Invalid(_)), "{e:?}");
        }
        assert!(matches!(verify_token(b"\x30\x00", &digest(), TEST_CA), Err(TsaError::Invalid(_))));
        assert!(matches!(token_certs_pem(b"\x30"), Err(TsaError::Invalid(_))));
    }

    #[test]
    fn config_errors() {
        let t = Duration::from_secs(1);
        assert!(matches!(TsaClient::new("http://127.0.0.1:1/", b"no pem here", t), Err(TsaError::Config(_))));
        assert!(matches!(TsaClient::new("https://tsa.example/", TEST_CA, t), Err(TsaError::Config(_))));
        assert!(matches!(TsaClient::new("ftp://tsa.example/", TEST_CA, t), Err(TsaError::Config(_))));
        assert!(matches!(TsaClient::new("not a url", TEST_CA, t), Err(TsaError::Config(_))));
        assert!(matches!(verify_token(b"", &digest(), b""), Err(TsaError::Config(_))));
        let c = TsaClient::new("http://127.0.0.1:1/tsa", TEST_CA, t).unwrap();
        assert_eq!(c.url(), "http://127.0.0.1:1/tsa");
    }

    #[test]
    fn stamp_future_is_send() {
        // The daemon spawns stamping on the multi-threaded runtime: no raw pointer may live across an await.
        fn assert_send<T: Send>(_: &T) {}
        let c = TsaClient::new("http://127.0.0.1:1/", TEST_CA, Duration::from_secs(1)).unwrap();
        let d = digest();
        assert_send(&c.stamp(&d));
    }

    #[tokio::test]
    async fn refused_connection_is_transient() {
        // A port that was just free: nothing listens there any more.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let c = TsaClient::new(&format!("http://127.0.0.1:{port}/"), TEST_CA, Duration::from_secs(5)).unwrap();
        let e = c.stamp(&digest()).await.unwrap_err();
        assert!(matches!(e, TsaError::Unavailable { .. }), "{e}");
        assert!(e.is_transient());
        assert!(!TsaError::Invalid("x".into()).is_transient());
        assert!(!TsaError::Rejected { url: "u".into(), message: "m".into() }.is_transient());
        assert!(!TsaError::Config("x".into()).is_transient());
    }

    /// A throwaway self-signed certificate (P-256), only for parsing.
    const TEST_CA: &[u8] = b"-----BEGIN CERTIFICATE-----
MIIBmTCCAT+gAwIBAgIUNnOpJUFRzVym60fAEtJZYTkJQlMwCgYIKoZIzj0EAwIw
ITEfMB0GA1UEAwwWZXZpZGVuY2VkIHVuaXQtdGVzdCBDQTAgFw0yNjExMjYxMDAz
MDBaGA8yMTI2MTEwMjEwMDMwMFowITEfMB0GA1UEAwwWZXZpZGVuY2VkIHVuaXQt
dGVzdCBDQTBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABMYjuFRsiDpMR3xGQmoO
uAfDasqKXfJ9IjjvT0N0nuNkuAXpYcoyaCJS3g0C5WluahKye5Ky7w1BGwS1YEK3
nyujUzBRMB0GA1UdDgQWBBSR4cyIS95H1aZXMx4pipkGte0BdzAfBgNVHSMEGDAW
gBSR4cyIS95H1aZXMx4pipkGte0BdzAPBgNVHRMBAf8EBTADAQH/MAoGCCqGSM49
BAMCA0gAMEUCIQCtVF5rqjEiGQk0+T1OPOn4DNZMo+gzzqURJ/OCtxT7UQIgCsGV
JZaSQug0IFLAb0XfT/hr6ZHuA77u5ombMPFJcno=
-----END CERTIFICATE-----
";
}
