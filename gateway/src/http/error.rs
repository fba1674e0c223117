//! The API's error answer: a status and `{"error":"…","field":…}` (DESIGN §6).

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use shipwatch_protocol::api::ErrorBody;
use shipwatch_protocol::{JobId, Report};

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

impl From<crate::auth::AuthError> for ApiError {
    fn from(e: crate::auth::AuthError) -> Self {
        let field = e.field().map(str::to_string);
        let mut error = ApiError::new(e.status(), e.to_string());
        error.body.field = field;
        error
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        // The answer keeps the cause: "database error" alone tells nobody anything.
        let error = Report(&e).to_string();
        tracing::warn!(%error, "store request failed");
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, error)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_built_from_a_store_error_keeps_its_cause_once() {
        let e = StoreError::DataDir {
            path: "/srv/data".into(),
            source: std::io::Error::from_raw_os_error(13),
        };
        let answer = ApiError::from(e);
        assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            answer.body.error,
            "cannot create the data directory /srv/data: Permission denied (os error 13)"
        );
    }
}
