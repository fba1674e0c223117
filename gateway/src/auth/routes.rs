//! `POST /api/login`, `POST /api/logout`, `GET /api/me` (DESIGN §6).

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRef, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use super::{Auth, AuthError, Principal, Via, client_addr, session_cookie};

/// The login routes, for any router state that holds the [`Auth`].
pub fn routes<S>() -> Router<S>
where
    Arc<Auth>: FromRef<S>,
    S: Clone + Send + Sync + 'static,
{
    Router::new()
        .route("/api/login", post(login))
        .route("/api/logout", post(logout))
        .route("/api/me", get(me))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Credentials {
    user: String,
    password: String,
}

fn who(principal: &Principal) -> serde_json::Value {
    serde_json::json!({ "user": principal.name, "role": principal.role.as_str() })
}

async fn login(
    State(auth): State<Arc<Auth>>,
    request: axum::extract::Request,
) -> Result<Response, AuthError> {
    let (parts, body) = request.into_parts();
    let body: Bytes =
        axum::body::to_bytes(body, 64 * 1024)
            .await
            .map_err(|_| AuthError::BadRequest {
                message: "the login body is at most 64 KiB".into(),
                field: None,
            })?;
    // serde's message could quote the password back: say only what is wrong.
    let credentials: Credentials =
        serde_json::from_slice(&body).map_err(|_| AuthError::BadRequest {
            message: r#"expected {"user":"…","password":"…"}"#.into(),
            field: None,
        })?;
    if credentials.user.is_empty() {
        return Err(AuthError::BadRequest {
            message: "user is required".into(),
            field: Some("user".into()),
        });
    }
    let login = auth
        .login(
            &credentials.user,
            &credentials.password,
            client_addr(&parts),
            session_cookie(&parts.headers),
        )
        .await?;
    let mut response = Json(who(&login.principal)).into_response();
    if let Ok(cookie) = HeaderValue::from_str(&login.set_cookie) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    no_store(response.headers_mut());
    Ok(response)
}

async fn logout(
    State(auth): State<Arc<Auth>>,
    request: axum::extract::Request,
) -> Result<Response, AuthError> {
    let (parts, _) = request.into_parts();
    auth.logout(&parts.headers, client_addr(&parts)).await?;
    let mut response = StatusCode::NO_CONTENT.into_response();
    if let Ok(cookie) = HeaderValue::from_str(&auth.cleared_cookie()) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    Ok(response)
}

async fn me(who_asks: Principal) -> Response {
    let mut body = who(&who_asks);
    body["anonymous"] = serde_json::Value::Bool(who_asks.via == Via::Anonymous);
    let mut response = Json(body).into_response();
    no_store(response.headers_mut());
    response
}

fn no_store(headers: &mut HeaderMap) {
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}
