//! The one API error type: every failure becomes `{"error": {"code", "message"}}` with a fitting
//! status. 5xx details go to the log, not to the client.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::catalog::CatalogError;
use crate::store::StoreError;

/// An API failure.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request is malformed.
    #[error("{message}")]
    BadRequest {
        /// Machine-readable code.
        code: &'static str,
        /// Human message naming the bad input.
        message: String,
    },
    /// 401: no or invalid credentials.
    #[error("authentication required")]
    Unauthorized,
    /// 403: the role may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// 403 with a specific code: `reason_required` (a classified recording and no reason),
    /// `grant_required` (a `state_secret` recording and no explicit grant), `cross_site`.
    #[error("{message}")]
    Denied {
        /// Machine-readable code.
        code: &'static str,
        /// Human message.
        message: String,
    },
    /// 404: absent or outside the caller's scope (indistinguishable on purpose).
    #[error("not found")]
    NotFound,
    /// 404 with a specific code (e.g. `no_poster`): the thing exists but this part does not.
    #[error("{message}")]
    Missing {
        /// Machine-readable code.
        code: &'static str,
        /// Human message.
        message: String,
    },
    /// 409: the thing to create exists already (e.g. `case_exists`).
    #[error("{message}")]
    Conflict {
        /// Machine-readable code.
        code: &'static str,
        /// Human message.
        message: String,
    },
    /// 413: the request body is larger than the API accepts (1 MiB).
    #[error("{0}")]
    TooLarge(String),
    /// 416: the range lies outside the object.
    #[error("range not satisfiable")]
    RangeNotSatisfiable(u64),
    /// 503: a dependency is down.
    #[error("{0}")]
    Unavailable(String),
    /// 500: a bug or an unexpected failure.
    #[error("internal error")]
    Internal(String),
}

/// The body of every error answer: `{"error": {"code", "message"}}`.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// The `error` of an [`ErrorBody`].
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Machine-readable code, e.g. `unauthorized`, `not_found`, `invalid_parameter`, `reason_required`.
    pub code: &'static str,
    /// Human message (5xx details stay in the log).
    pub message: String,
}

impl ApiError {
    /// A 404 with a specific code.
    pub fn missing(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::Missing { code, message: message.into() }
    }

    /// A 400 with a code.
    pub fn bad(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::BadRequest { code, message: message.into() }
    }
}

impl From<axum::extract::rejection::JsonRejection> for ApiError {
    /// A body that is too large stays 413 (also when it came chunked, without a length); any
    /// other unreadable JSON body is 400 `invalid_body`.
    fn from(e: axum::extract::rejection::JsonRejection) -> Self {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge(e.body_text())
        } else {
            ApiError::bad("invalid_body", e.body_text())
        }
    }
}

impl From<CatalogError> for ApiError {
    fn from(e: CatalogError) -> Self {
        match e {
            CatalogError::NotFound(_) => ApiError::NotFound,
            CatalogError::Unavailable(_) => ApiError::Unavailable(format!("catalog unavailable: {e}")),
            CatalogError::Refused(m) => ApiError::Conflict { code: "refused", message: m },
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(k) => ApiError::Internal(format!("object {k} missing from the store")),
            StoreError::Unavailable { .. } => ApiError::Unavailable(e.to_string()),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, message) = match &self {
            ApiError::BadRequest { code, message } => (StatusCode::BAD_REQUEST, *code, message.clone()),
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized", self.to_string()),
            ApiError::Forbidden(m) => (StatusCode::FORBIDDEN, "forbidden", m.clone()),
            ApiError::Denied { code, message } => (StatusCode::FORBIDDEN, *code, message.clone()),
            ApiError::NotFound => (StatusCode::NOT_FOUND, "not_found", self.to_string()),
            ApiError::Missing { code, message } => (StatusCode::NOT_FOUND, *code, message.clone()),
            ApiError::Conflict { code, message } => (StatusCode::CONFLICT, *code, message.clone()),
            ApiError::TooLarge(m) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", m.clone()),
            ApiError::RangeNotSatisfiable(_) => (StatusCode::RANGE_NOT_SATISFIABLE, "range_not_satisfiable", self.to_string()),
            ApiError::Unavailable(m) => {
                tracing::warn!(error = %m, "API dependency unavailable");
                (StatusCode::SERVICE_UNAVAILABLE, "unavailable", "a backing service is unavailable; retry later".into())
            }
            ApiError::Internal(m) => {
                tracing::error!(error = %m, "API internal error");
                (StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error".into())
            }
        };
        let mut resp = (status, Json(ErrorBody { error: ErrorDetail { code, message } })).into_response();
        if let ApiError::RangeNotSatisfiable(size) = self {
            if let Ok(v) = format!("bytes */{size}").parse() {
                resp.headers_mut().insert(axum::http::header::CONTENT_RANGE, v);
            }
        }
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(axum::http::header::WWW_AUTHENTICATE, axum::http::HeaderValue::from_static("Bearer"));
        }
        resp
    }
}
