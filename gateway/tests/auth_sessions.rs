//! Sessions end when they should and throttling counts what it should: idle and
//! absolute expiry with short configured values, the Secure cookie under an https
//! `public_url`, bogus cookies refused without slowing real sessions, and the login
//! throttle keyed on the TCP peer (never a forwarded header) with concurrent attempts
//! counted before their hash.

mod common;

use std::time::{Duration, Instant};

use common::{Gateway, PASSWORD, config_text, free_port, http};

/// A gateway whose `[auth]` also has `extra`, and whose `public_url` is `public_url`
/// when given.
async fn start_with(dir: &std::path::Path, extra: &str, public_url: Option<&str>) -> Gateway {
    let port = free_port();
    let mut text = config_text(dir, port, "none", extra);
    if let Some(url) = public_url {
        text = text.replace(
            &format!("public_url = \"http://127.0.0.1:{port}\""),
            &format!("public_url = \"{url}\""),
        );
        assert!(text.contains(url));
    }
    std::fs::write(dir.join("shipwatch.toml"), text).unwrap();
    Gateway::start_in(dir, port).await
}

async fn me(gateway: &Gateway, cookie: &str) -> u16 {
    gateway
        .http("GET", "/api/me", &[("Cookie", cookie)], "")
        .await
        .status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_ends_when_idle_and_at_its_absolute_age_even_in_use() {
    const IDLE: Duration = Duration::from_millis(1800);
    const MAX: Duration = Duration::from_secs(4);
    let dir = tempfile::tempdir().unwrap();
    // 0.0005 h = 1.8 s; 0.0000463 days = 4.0 s.
    let gateway = start_with(
        dir.path(),
        "session_idle_hours = 0.0005\nsession_max_days = 0.0000463",
        None,
    )
    .await;

    // Used every 300 ms it never idles, but ends at its absolute age all the same.
    let busy = gateway.login("ada").await;
    let logged_in = Instant::now();
    let ended_at = loop {
        let status = me(&gateway, &busy).await;
        let age = logged_in.elapsed();
        if status != 200 {
            assert_eq!(status, 401);
            break age;
        }
        assert!(
            age < MAX + Duration::from_secs(3),
            "still valid after {age:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert!(
        ended_at >= MAX - Duration::from_millis(300),
        "ended after {ended_at:?}, before its absolute age {MAX:?}, though used every 300 ms (idle {IDLE:?})"
    );

    // Unused for longer than the idle time, it ends, though far from its absolute age.
    let idle = gateway.login("vera").await;
    assert_eq!(me(&gateway, &idle).await, 200);
    tokio::time::sleep(IDLE + Duration::from_millis(700)).await;
    assert_eq!(
        me(&gateway, &idle).await,
        401,
        "idle for longer than {IDLE:?}"
    );

    // Ended sessions stay ended after a restart: they were deleted from the store.
    let port = gateway.port;
    gateway.stop().await;
    let gateway = Gateway::start_in(dir.path(), port).await;
    assert_eq!(me(&gateway, &idle).await, 401);
    assert_eq!(me(&gateway, &busy).await, 401);
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cookie_is_secure_when_public_url_is_https() {
    let dir = tempfile::tempdir().unwrap();
    let gateway = start_with(dir.path(), "", Some("https://deploy.example.com")).await;
    let login = gateway
        .http(
            "POST",
            "/api/login",
            &[],
            &format!(r#"{{"user":"ada","password":"{PASSWORD}"}}"#),
        )
        .await;
    assert_eq!(login.status, 200, "{}", login.body);
    let set_cookie = login.header("set-cookie").unwrap().to_string();
    for attribute in ["Secure", "HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(
            set_cookie.split(';').any(|a| a.trim() == attribute),
            "{attribute} missing: {set_cookie}"
        );
    }
    let cookie = login.session_cookie().unwrap();
    let logout = gateway
        .http("POST", "/api/logout", &[("Cookie", &cookie)], "")
        .await;
    assert_eq!(logout.status, 204);
    let cleared = logout.header("set-cookie").unwrap_or_default();
    assert!(
        cleared.contains("Max-Age=0") && cleared.split(';').any(|a| a.trim() == "Secure"),
        "the clearing cookie is Secure too: {cleared}"
    );
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bogus_session_cookies_are_refused_and_real_sessions_keep_working() {
    let dir = tempfile::tempdir().unwrap();
    let gateway = start_with(dir.path(), "", None).await;
    let real = gateway.login("otto").await;
    let port = gateway.port;
    // Distinct well-formed ids (each reaches the store once), the same one over and
    // over (remembered as unknown), and garbage (refused before any lookup).
    let mut flood = tokio::task::JoinSet::new();
    for i in 0..600u32 {
        flood.spawn(async move {
            let id = match i % 3 {
                0 => format!("{i:064x}"),
                1 => "f".repeat(64),
                _ => format!("not-a-session-{i}"),
            };
            let cookie = format!("shipwatch_session={id}");
            http(port, "GET", "/api/me", &[("Cookie", &cookie)], "")
                .await
                .status
        });
    }
    // Meanwhile the real session is served.
    for _ in 0..20 {
        assert_eq!(me(&gateway, &real).await, 200);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while let Some(status) = flood.join_next().await {
        assert_eq!(status.unwrap(), 401);
        assert!(
            Instant::now() < deadline,
            "the bogus cookies took over a minute"
        );
    }
    // A remembered-unknown id never shadows a real one: logout still ends the real
    // session, and its id is then refused.
    assert_eq!(me(&gateway, &real).await, 200);
    assert_eq!(
        gateway
            .http("POST", "/api/logout", &[("Cookie", &real)], "")
            .await
            .status,
        204
    );
    assert_eq!(me(&gateway, &real).await, 401);
    assert_eq!(me(&gateway, &gateway.login("otto").await).await, 200);
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_wrong_passwords_cost_only_the_address_burst_and_forwarded_for_is_not_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let gateway = start_with(dir.path(), "", None).await;
    let port = gateway.port;
    // 200 at once, each a different user name (the per-user limit never bites) and a
    // different X-Forwarded-For (which a client can write as it likes): only the TCP
    // peer's budget of 30 reaches argon2, the rest are 429 without a hash.
    let mut flood = tokio::task::JoinSet::new();
    for i in 0..200u32 {
        flood.spawn(async move {
            let forwarded = format!("10.1.{}.{}", i / 250, i % 250);
            let body = format!(r#"{{"user":"nobody-{i}","password":"wrong"}}"#);
            http(
                port,
                "POST",
                "/api/login",
                &[("X-Forwarded-For", &forwarded)],
                &body,
            )
            .await
            .status
        });
    }
    // 503: still waiting for a hashing slot after 10 s (a box far busier than its
    // cores), so never hashed either.
    let (mut wrong, mut throttled, mut busy) = (0, 0, 0);
    while let Some(status) = flood.join_next().await {
        match status.unwrap() {
            401 => wrong += 1,
            429 => throttled += 1,
            503 => busy += 1,
            other => panic!("a wrong password answered {other}"),
        }
    }
    assert!(
        wrong <= 30 && wrong + throttled + busy == 200,
        "{wrong} argon2 checks, {throttled} refusals and {busy} busy for 200 concurrent attempts from one address"
    );
    // The address is throttled for everyone behind it, the right password included,
    // until its bucket leaks (2 s per attempt); then the right password works.
    let right = format!(r#"{{"user":"ada","password":"{PASSWORD}"}}"#);
    let mut reply = gateway.http("POST", "/api/login", &[], &right).await;
    if reply.status == 429 {
        let wait: u64 = reply.header("retry-after").unwrap().parse().unwrap();
        assert!((1..=3).contains(&wait), "Retry-After {wait}");
        tokio::time::sleep(Duration::from_secs(wait)).await;
        reply = gateway.http("POST", "/api/login", &[], &right).await;
    }
    assert_eq!(reply.status, 200, "{}", reply.body);

    // The audit log names the peer, not what X-Forwarded-For claimed.
    let cookie = reply.session_cookie().unwrap();
    let audit = gateway
        .http("GET", "/api/audit?limit=50", &[("Cookie", &cookie)], "")
        .await;
    assert!(!audit.body.contains("10.1."), "{}", audit.body);
    assert!(audit.body.contains("127.0.0.1"), "{}", audit.body);
    gateway.stop().await;
}
