//! Who is asking: today the configured `auth.anonymous` role (401 when that is none).
//! The login and token work of DESIGN §8 replaces this extractor, not the handlers.

use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;
use shipwatch_config::Role;

use super::{ApiError, HttpState};

/// Who is asking, and with what role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    pub role: Role,
}

impl FromRequestParts<HttpState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(_parts: &mut Parts, http: &HttpState) -> Result<Self, ApiError> {
        match http.gateway.config().auth.anonymous {
            Some(role) => Ok(Principal {
                name: "anonymous".into(),
                role,
            }),
            None => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "log in first: anonymous access is off",
            )),
        }
    }
}

impl Principal {
    /// 403 unless this caller's role is `role` or above.
    pub fn at_least(&self, role: Role) -> Result<(), ApiError> {
        if self.role >= role {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!("{} may not do this", self.name),
            ))
        }
    }
}
