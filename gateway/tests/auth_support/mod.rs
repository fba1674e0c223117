//! What the auth tests share: a real gateway (`run()`) with users and tokens, and a raw
//! HTTP/1.1 client that shows every header (cookies, Retry-After, CSP).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

pub const PASSWORD: &str = "correct horse battery staple";

/// The users every auth test config has, with [`PASSWORD`].
pub const USERS: &[(&str, &str)] = &[("vera", "viewer"), ("otto", "operator"), ("ada", "admin")];
/// Its API tokens: name, role, token.
pub const TOKENS: &[(&str, &str, &str)] = &[
    (
        "ci-admin",
        "admin",
        "swt_1111111111111111111111111111111111111111111111111111111111111111",
    ),
    (
        "ci-deploy",
        "operator",
        "swt_2222222222222222222222222222222222222222222222222222222222222222",
    ),
];

/// The `[[users]]` and `[[tokens]]` blocks (hashed once per test binary).
pub fn accounts() -> &'static str {
    static BLOCKS: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BLOCKS.get_or_init(|| {
        use shipwatch_gateway::auth::secret::hash;
        let password_hash = hash(PASSWORD.as_bytes()).unwrap();
        let mut out = String::new();
        for (name, role) in USERS {
            out.push_str(&format!(
                "[[users]]\nname = \"{name}\"\npassword_hash = \"{password_hash}\"\nrole = \"{role}\"\n\n"
            ));
        }
        for (name, role, token) in TOKENS {
            out.push_str(&format!(
                "[[tokens]]\nname = \"{name}\"\ntoken_hash = \"{}\"\nrole = \"{role}\"\n\n",
                hash(token.as_bytes()).unwrap()
            ));
        }
        out
    })
}

/// A config for `port` with `anonymous`, users, tokens, and two tasks: `deploy` (allows
/// operators) and `guarded` (admins only). `extra` goes into `[auth]`.
pub fn config_text(dir: &Path, port: u16, anonymous: &str, extra_auth: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:{port}"
data_dir = "{d}/data"
run_dir = "{d}/run"
public_url = "http://127.0.0.1:{port}"

[auth]
anonymous = "{anonymous}"
{extra_auth}

[hosts]
web = ["web-01"]

[[tasks]]
name = "deploy"
hosts = ["web"]
transport = "local"
script = "echo hi"
concurrency = 100

[[tasks.params]]
name = "NOTE"

[[tasks.params]]
name = "REVISION"
pattern = "[0-9a-f]{{7,40}}"

[[tasks]]
name = "guarded"
hosts = ["web"]
transport = "local"
script = "echo hi"
concurrency = 100
allow = ["admin"]

{accounts}
"#,
        d = dir.display(),
        accounts = accounts(),
    )
}

/// A real gateway on a free loopback port, its config in a file of its own.
pub struct Gateway {
    pub dir: PathBuf,
    pub port: u16,
    shutdown: CancellationToken,
    server: tokio::task::JoinHandle<Result<(), shipwatch_gateway::GatewayError>>,
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Gateway {
    /// Starts a gateway for the config file in `dir` (written by the caller).
    pub async fn start_in(dir: &Path, port: u16) -> Gateway {
        let file = dir.join("shipwatch.toml");
        let config = shipwatch_config::load(&shipwatch_config::ConfigSource::File(file)).unwrap();
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(shipwatch_gateway::run(config, shutdown.clone()));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "gateway never listened"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Gateway {
            dir: dir.to_path_buf(),
            port,
            shutdown,
            server,
        }
    }

    /// Writes the standard config with `anonymous` into `dir` and starts it.
    pub async fn start(dir: &Path, anonymous: &str) -> Gateway {
        let port = free_port();
        std::fs::write(
            dir.join("shipwatch.toml"),
            config_text(dir, port, anonymous, ""),
        )
        .unwrap();
        Gateway::start_in(dir, port).await
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(20), self.server)
            .await
            .expect("gateway stops in time")
            .unwrap()
            .unwrap();
    }

    pub fn origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `method path` with `headers` and a JSON `body`.
    pub async fn http(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Reply {
        http(self.port, method, path, headers, body).await
    }

    /// Logs `user` in; returns the `shipwatch_session=…` cookie pair.
    pub async fn login(&self, user: &str) -> String {
        let reply = self
            .http(
                "POST",
                "/api/login",
                &[],
                &format!(r#"{{"user":"{user}","password":"{PASSWORD}"}}"#),
            )
            .await;
        assert_eq!(reply.status, 200, "login of {user}: {}", reply.body);
        reply.session_cookie().expect("a session cookie")
    }
}

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
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = format!("ws://127.0.0.1:{port}{path}")
        .into_client_request()
        .unwrap();
    for (name, value) in headers {
        request.headers_mut().insert(
            tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
    }
    match tokio::time::timeout(
        Duration::from_secs(20),
        tokio_tungstenite::connect_async(request),
    )
    .await
    .expect("an upgrade answer in time")
    {
        Ok((_socket, response)) => response.status().as_u16(),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(other) => panic!("WebSocket {path}: {other}"),
    }
}
