//! Why a request was refused before it reached its handler's work.

use std::time::Duration;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::store::StoreError;

/// A refusal, answered as DESIGN §6's JSON error `{"error":"…","field":…}`.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// 401: who are you?
    #[error("{0}")]
    Unauthorized(String),
    /// 403: you may not.
    #[error("{0}")]
    Forbidden(String),
    /// 429: too many failures; try again after this long.
    #[error("too many failed attempts; try again in {} s", retry_secs(*.0))]
    Throttled(Duration),
    /// 400 naming the request field at fault.
    #[error("{message}")]
    BadRequest {
        message: String,
        field: Option<String>,
    },
    /// 415: mutations take JSON only.
    #[error("{0}")]
    UnsupportedMedia(String),
    /// 503: every argon2 slot stayed busy.
    #[error("the server is busy checking passwords; try again")]
    Busy,
    /// 503: the store failed.
    #[error("the store failed")]
    Store(#[from] StoreError),
}

fn retry_secs(wait: Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
}

impl AuthError {
    /// The HTTP status this refusal is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            AuthError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            AuthError::Forbidden(_) => StatusCode::FORBIDDEN,
            AuthError::Throttled(_) => StatusCode::TOO_MANY_REQUESTS,
            AuthError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            AuthError::UnsupportedMedia(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            AuthError::Busy | AuthError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The request field at fault, if one is.
    pub fn field(&self) -> Option<&str> {
        match self {
            AuthError::BadRequest { field, .. } => field.as_deref(),
            _ => None,
        }
    }
}

impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        if let AuthError::Store(e) = &self {
            tracing::warn!(error = %shipwatch_protocol::Report(e), "store request failed");
        }
        let body = serde_json::json!({ "error": self.to_string(), "field": self.field() });
        let mut response = (self.status(), Json(body)).into_response();
        if let AuthError::Throttled(wait) = self {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(retry_secs(wait).max(1)),
            );
        }
        response
    }
}
