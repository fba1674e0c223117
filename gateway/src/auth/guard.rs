//! What the whole router enforces before any handler runs: a POST or WebSocket upgrade
//! from a foreign `Origin` is refused (no CSRF, no cross-site WebSocket hijacking), a
//! POST carries JSON; and what every response carries: CSP and friends.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{Auth, AuthError};

/// The page's Content-Security-Policy: no inline script or style, nothing from elsewhere,
/// never framed.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
img-src 'self' data:; connect-src 'self'; font-src 'self'; manifest-src 'self'; \
form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// `scheme://host[:port]` of `url`, lowercased, without a default port.
pub fn public_origin(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("http", url));
    let scheme = scheme.to_ascii_lowercase();
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let authority = authority.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "https" => ":443",
        _ => ":80",
    };
    let authority = authority.strip_suffix(default_port).unwrap_or(&authority);
    format!("{scheme}://{authority}")
}

fn is_websocket_upgrade(headers: &HeaderMap) -> bool {
    headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

fn has_body(headers: &HeaderMap) -> bool {
    let length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim() != "0");
    length.unwrap_or(false) || headers.contains_key(header::TRANSFER_ENCODING)
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"))
}

/// The Origin and content-type checks, then the security headers on whatever answers.
pub async fn security_headers(
    State(auth): State<Arc<Auth>>,
    request: Request,
    next: Next,
) -> Response {
    let mut response = match refusal(&auth, &request) {
        Some(refused) => refused.into_response(),
        None => next.run(request).await,
    };
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

fn refusal(auth: &Auth, request: &Request) -> Option<AuthError> {
    let headers = request.headers();
    let upgrade = is_websocket_upgrade(headers);
    let reads = matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    if reads && !upgrade {
        return None;
    }
    // Browsers always send Origin on these; the CLI and curl send none and are judged by
    // their credentials alone.
    if let Some(origin) = headers.get(header::ORIGIN) {
        let expected = public_origin(&auth.config().server.public_url);
        let ok = origin
            .to_str()
            .is_ok_and(|o| public_origin(o.trim_end_matches('/')) == expected);
        if !ok {
            let shown = String::from_utf8_lossy(origin.as_bytes()).into_owned();
            tracing::info!(origin = %shown, path = %request.uri().path(), "cross-origin request refused");
            return Some(AuthError::Forbidden(format!(
                "cross-origin request refused: Origin {shown:?} is not {expected:?} (server.public_url)"
            )));
        }
    }
    // A body that is not JSON is what a cross-site form can send without a preflight;
    // a POST without a body (cancel, logout) carries nothing to be typed.
    if !upgrade && !reads && has_body(headers) && !is_json(headers) {
        return Some(AuthError::UnsupportedMedia(
            "send the request body as content-type: application/json".into(),
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::public_origin;

    #[test]
    fn origins_compare_without_path_case_or_default_port() {
        assert_eq!(
            public_origin("http://127.0.0.1:8080"),
            "http://127.0.0.1:8080"
        );
        assert_eq!(
            public_origin("https://Deploy.Example.com:443/shipwatch"),
            "https://deploy.example.com"
        );
        assert_eq!(public_origin("http://a.example:80"), "http://a.example");
        assert_ne!(
            public_origin("http://localhost:8080"),
            public_origin("http://127.0.0.1:8080")
        );
        assert_ne!(
            public_origin("null"),
            public_origin("http://127.0.0.1:8080")
        );
    }
}
