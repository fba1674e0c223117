//! Who is asking: [`crate::auth`] decides (a token, a session cookie, or
//! `auth.anonymous`); the handlers only ask [`Principal::at_least`] and
//! [`Principal::may_run`].

use std::sync::Arc;

use axum::extract::FromRef;

use super::HttpState;
use crate::auth::Auth;

pub use crate::auth::Principal;

impl FromRef<HttpState> for Arc<Auth> {
    fn from_ref(http: &HttpState) -> Arc<Auth> {
        http.gateway.auth.clone()
    }
}
