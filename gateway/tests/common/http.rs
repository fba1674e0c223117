//! The one HTTP/1.1 client of the gateway's tests: raw requests with `Connection: close`,
//! so a test sees every header (cookies, Retry-After, CSP) and can send what no polite
//! client would; and the status of a WebSocket upgrade.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// An HTTP answer.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// `shipwatch_session=ID` from Set-Cookie.
    pub fn session_cookie(&self) -> Option<String> {
        let set = self.header("set-cookie")?;
        let pair = set.split(';').next()?.trim();
        pair.starts_with("shipwatch_session=")
            .then(|| pair.to_string())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// One HTTP/1.1 request with `Connection: close`.
pub async fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Reply {
    http_bytes(port, method, path, headers, body.as_bytes()).await
}

/// A request without a body and without a content type, as the page's `fetch` sends a
/// body-less POST.
pub async fn http_untyped(port: u16, method: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut with_type: Vec<(&str, &str)> = headers.to_vec();
    with_type.push(("X-No-Content-Type", "1"));
    http_bytes(port, method, path, &with_type, b"").await
}

/// [`http`] with a body that need not be UTF-8.
pub async fn http_bytes(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut req =
        format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    let mut typed = false;
    for (name, value) in headers {
        typed |= name.eq_ignore_ascii_case("content-type");
        req.push_str(&format!("{name}: {value}\r\n"));
    }
    let untyped = headers.iter().any(|(n, _)| *n == "X-No-Content-Type");
    if !typed && !untyped && method == "POST" {
        req.push_str("Content-Type: application/json\r\n");
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body);
    s.write_all(&bytes).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut out))
        .await
        .expect("an answer in time")
        .unwrap();
    let text = String::from_utf8_lossy(&out).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.get(9..12))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    Reply {
        status,
        headers,
        body: body.to_string(),
    }
}

/// The status of a WebSocket upgrade at `path` with `headers`: 101 when it opened.
pub async fn ws_status(port: u16, path: &str, headers: &[(&str, &str)]) -> u16 {
    use shipwatch_wstest::{ConnectError, Options};
    use tokio_tungstenite::tungstenite::Error;
    let options = Options {
        headers: headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect(),
        ..Options::default()
    };
    let url = format!("ws://127.0.0.1:{port}{path}");
    match tokio::time::timeout(
        Duration::from_secs(20),
        shipwatch_wstest::connect(&url, &options),
    )
    .await
    .expect("an upgrade answer in time")
    {
        Ok(_socket) => 101,
        Err(ConnectError::WebSocket(Error::Http(response))) => response.status().as_u16(),
        Err(other) => panic!("WebSocket {path}: {other}"),
    }
}
