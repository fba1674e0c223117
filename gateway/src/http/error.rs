//! The API's error answer: a status and `{"error":"…","field":…}` (DESIGN §6).

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use shipwatch_protocol::JobId;
use shipwatch_protocol::api::ErrorBody;

use crate::store::StoreError;

/// An error as the API returns it, with its status.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    body: ErrorBody,
}

impl ApiError {
    /// An error about the request as a whole.
    pub fn new(status: StatusCode, error: impl Into<String>) -> Self {
        ApiError {
            status,
            body: ErrorBody {
                error: error.into(),
                field: None,
            },
        }
    }

    /// An error naming the request field or param at fault.
    pub fn on_field(
        status: StatusCode,
        field: impl Into<String>,
        error: impl Into<String>,
    ) -> Self {
        let mut e = ApiError::new(status, error);
        e.body.field = Some(field.into());
        e
    }

    /// 404 for a job id nobody knows.
    pub fn not_found(id: JobId) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, format!("job {id} does not exist"))
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        tracing::warn!(error = %e, "store request failed");
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}
