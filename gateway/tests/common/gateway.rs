//! Configs and gateways for the tests: a bare config, the API tests' and the auth tests'
//! (users and tokens), the router served in-process, and a real gateway (`run()`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use shipwatch_gateway::fanout::Hub;
use shipwatch_gateway::store::Store;
use shipwatch_gateway::{AppState, Dispatcher};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{http, short_tempdir};

/// The password of every user in [`USERS`].
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

/// A free loopback port (bound then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A config with one local host and task `deploy`, data and sockets under `dir`,
/// anonymous admin (the tests talk to loopback only).
pub fn config(dir: &Path) -> shipwatch_config::Config {
    let text = format!(
        r#"
[server]
listen = "127.0.0.1:0"
data_dir = "{d}/data"
run_dir = "{d}/run"

[auth]
anonymous = "admin"

[hosts]
web = ["web-01"]

[[tasks]]
name = "deploy"
hosts = ["web"]
transport = "local"
script = "true"
"#,
        d = dir.display()
    );
    shipwatch_config::load_str(&text, "shipwatch.toml", dir).unwrap()
}

/// The API tests' config: task `deploy` on two local hosts with a required `REVISION`,
/// listening on `port`, anonymous visitors given `role`.
pub fn api_config(dir: &Path, port: u16, role: &str) -> shipwatch_config::Config {
    let text = format!(
        r#"
[server]
listen = "127.0.0.1:{port}"
data_dir = "{d}/data"
run_dir = "{d}/run"

[auth]
anonymous = "{role}"

[hosts]
web = ["web-01", "web-02"]

[[tasks]]
name = "deploy"
hosts = ["web"]
transport = "local"
script = "echo hi"

[[tasks.params]]
name = "REVISION"
pattern = "[0-9a-f]{{7,40}}"
required = true
"#,
        d = dir.display()
    );
    shipwatch_config::load_str(&text, "shipwatch.toml", dir).unwrap()
}

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

/// The auth tests' config for `port` with `anonymous`, users, tokens, and two tasks:
/// `deploy` (allows operators) and `guarded` (admins only). `extra_auth` goes into `[auth]`.
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

/// The gateway's HTTP router (`cfg`, `store`, `hub`) served on a free loopback port of
/// the current runtime until `shutdown`; returns the port.
pub async fn serve_api(
    cfg: shipwatch_config::Config,
    store: &Store,
    hub: &Arc<Hub>,
    tracker: TaskTracker,
    shutdown: &CancellationToken,
) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (config_tx, config_rx) = tokio::sync::watch::channel(Arc::new(cfg));
    let dispatcher = Dispatcher::new(store.clone(), config_rx.clone(), tracker, shutdown.clone());
    let router = shipwatch_gateway::http::router(
        AppState {
            config: config_rx.clone(),
            config_tx: Arc::new(config_tx),
            store: store.clone(),
            dispatcher,
            auth: shipwatch_gateway::auth::Auth::new(config_rx, store.clone()),
        },
        hub.clone(),
    );
    let stop = shutdown.clone();
    tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await
    });
    port
}

/// A real gateway (`run()`) on a free loopback port; stop it with [`Gateway::stop`].
pub struct Gateway {
    /// Where its config, data and sockets are.
    pub dir: PathBuf,
    pub port: u16,
    /// The temp dir of a gateway that made its own ([`Gateway::start_api`]).
    _owned_dir: Option<tempfile::TempDir>,
    shutdown: CancellationToken,
    server: tokio::task::JoinHandle<Result<(), shipwatch_gateway::GatewayError>>,
}

impl Gateway {
    /// The API tests' gateway ([`api_config`]) for anonymous visitors with `role`, in a
    /// temp dir of its own.
    pub async fn start_api(role: &str) -> Gateway {
        let dir = short_tempdir("api");
        let port = free_port();
        let config = api_config(dir.path(), port, role);
        let mut gateway = Gateway::run(config, dir.path(), port).await;
        gateway._owned_dir = Some(dir);
        gateway
    }

    /// Writes the auth tests' config ([`config_text`]) with `anonymous` into `dir` and
    /// starts it.
    pub async fn start(dir: &Path, anonymous: &str) -> Gateway {
        let port = free_port();
        std::fs::write(
            dir.join("shipwatch.toml"),
            config_text(dir, port, anonymous, ""),
        )
        .unwrap();
        Gateway::start_in(dir, port).await
    }

    /// Starts a gateway for the config file in `dir` (written by the caller).
    pub async fn start_in(dir: &Path, port: u16) -> Gateway {
        let file = dir.join("shipwatch.toml");
        let config = shipwatch_config::load(&shipwatch_config::ConfigSource::File(file)).unwrap();
        Gateway::run(config, dir, port).await
    }

    /// Runs `config` (which listens on `port`) until it listens.
    async fn run(config: shipwatch_config::Config, dir: &Path, port: u16) -> Gateway {
        keep_log();
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
            _owned_dir: None,
            shutdown,
            server,
        }
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
    ) -> super::Reply {
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

/// Starts task `deploy` with `REVISION=abc1234` on the gateway at `port`; its job id.
pub async fn start_deploy(port: u16) -> u64 {
    let reply = http(
        port,
        "POST",
        "/api/jobs",
        &[],
        r#"{"task":"deploy","params":{"REVISION":"abc1234"}}"#,
    )
    .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    reply.json()["id"].as_u64().unwrap()
}

/// Under `tests/run.sh` (`$SHIPWATCH_TEST_LOGS` set) the in-process gateways log at
/// debug into a file there, one per test binary, so the run's last step can check that
/// no log line holds a secret. Elsewhere they log nowhere, as before.
fn keep_log() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let Some(dir) = std::env::var_os("SHIPWATCH_TEST_LOGS") else {
            return;
        };
        let binary = std::env::current_exe()
            .ok()
            .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().to_string()))
            .unwrap_or_default();
        let path = Path::new(&dir).join(format!("{binary}-{}.log", std::process::id()));
        let Ok(file) = std::fs::File::create(&path) else {
            return;
        };
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                "debug,hyper=info,hyper_util=info,tungstenite=info,tokio_tungstenite=info",
            )
            .with_writer(std::sync::Mutex::new(file))
            .with_ansi(false)
            .try_init();
    });
}
