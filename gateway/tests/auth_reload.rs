//! A reload that removes a user and a token ends what they had open: sessions, token,
//! WebSockets. Its own test binary: it raises SIGHUP in this process.

mod common;

use std::time::Duration;

use common::{Gateway, TOKENS, config_text};
use shipwatch_wstest::{After, End, Limit, Options, Socket, read_frames};

/// `/ws/jobs` opened with `header` (Cookie or Authorization).
async fn open_ws(port: u16, header: (&str, &str)) -> Socket {
    let options = Options {
        headers: vec![(header.0.to_owned(), header.1.to_owned())],
        ..Options::default()
    };
    shipwatch_wstest::connect(&format!("ws://127.0.0.1:{port}/ws/jobs"), &options)
        .await
        .expect("the upgrade answers 101")
}

/// The close code the server sends within `within`.
async fn close_code(socket: &mut Socket, within: Duration) -> Option<u16> {
    match read_frames(socket, Limit::within(within), |_| After::Read).await {
        End::Closed(code) => code,
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_user_and_a_token_ends_their_sessions_and_websockets() {
    // Installed before anything raises SIGHUP, so the signal never takes the default
    // action (exit) whatever the gateway's own listener has done by then.
    let _hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let gateway = Gateway::start(dir.path(), "none").await;
    let otto = gateway.login("otto").await;
    let vera = gateway.login("vera").await;
    let deploy_token = format!("Bearer {}", TOKENS[1].2);
    let admin_token = format!("Bearer {}", TOKENS[0].2);
    let me = |header: (&'static str, String)| {
        let port = gateway.port;
        async move {
            common::http(port, "GET", "/api/me", &[(header.0, &header.1)], "")
                .await
                .status
        }
    };
    assert_eq!(me(("Authorization", deploy_token.clone())).await, 200);
    let mut otto_ws = open_ws(gateway.port, ("Cookie", &otto)).await;
    let mut token_ws = open_ws(gateway.port, ("Authorization", &deploy_token)).await;
    let mut vera_ws = open_ws(gateway.port, ("Cookie", &vera)).await;

    // The same config without otto and without the ci-deploy token.
    let text = config_text(dir.path(), gateway.port, "none", "");
    let kept: Vec<&str> = text
        .split("\n\n")
        .filter(|block| {
            !block.contains("name = \"otto\"") && !block.contains("name = \"ci-deploy\"")
        })
        .collect();
    std::fs::write(dir.path().join("shipwatch.toml"), kept.join("\n\n")).unwrap();
    nix::sys::signal::raise(nix::sys::signal::Signal::SIGHUP).unwrap();

    assert_eq!(
        close_code(&mut otto_ws, Duration::from_secs(10)).await,
        Some(1008)
    );
    assert_eq!(
        close_code(&mut token_ws, Duration::from_secs(10)).await,
        Some(1008)
    );
    assert_eq!(
        me(("Cookie", otto.clone())).await,
        401,
        "otto's session ended"
    );
    assert_eq!(
        me(("Authorization", deploy_token.clone())).await,
        401,
        "the token is gone"
    );
    assert_eq!(me(("Cookie", vera.clone())).await, 200, "vera is still in");
    assert_eq!(
        close_code(&mut vera_ws, Duration::from_millis(300)).await,
        None,
        "vera's WebSocket stays open"
    );

    let audit = common::http(
        gateway.port,
        "GET",
        "/api/audit",
        &[("Authorization", &admin_token)],
        "",
    )
    .await;
    let entries = audit.json()["audit"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let reload = entries
        .iter()
        .find(|e| e["action"] == "reload")
        .expect("the reload is in the audit log");
    let detail = reload["detail"].as_str().unwrap();
    assert!(
        detail.contains("otto") && detail.contains("ci-deploy"),
        "{detail}"
    );

    // A broken file is refused, and the audit log says so.
    std::fs::write(dir.path().join("shipwatch.toml"), "[server\n").unwrap();
    nix::sys::signal::raise(nix::sys::signal::Signal::SIGHUP).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let audit = common::http(
            gateway.port,
            "GET",
            "/api/audit",
            &[("Authorization", &admin_token)],
            "",
        )
        .await;
        let refused = audit.json()["audit"].as_array().is_some_and(|a| {
            a.iter()
                .any(|e| e["action"] == "reload" && e["outcome"] != "ok")
        });
        if refused {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no failed reload in {}",
            audit.body
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(me(("Cookie", vera)).await, 200, "the old config still runs");
    gateway.stop().await;
}
