//! Who may do what, over real HTTP against the real gateway: every route and both
//! WebSocket endpoints for every kind of caller; foreign origins; throttled logins;
//! sessions that outlive a restart and end at logout.

mod common;

use std::time::Duration;

use common::{Gateway, PASSWORD, TOKENS, ws_status};

/// The callers of the table, in its column order.
const CALLERS: [&str; 9] = [
    "anonymous, anonymous=none",
    "anonymous, anonymous=viewer",
    "viewer",
    "operator, task allows",
    "operator, task does not",
    "admin",
    "wrong token",
    "expired session",
    "logged-out session",
];

/// A route as the table calls it; `{job}` and `{task}` are the caller's target: the job
/// and task of `deploy` (operators allowed) or of `guarded` (admins only).
struct Route {
    method: &'static str,
    path: &'static str,
    body: &'static str,
    /// Expected status per caller, in [`CALLERS`] order.
    expect: [u16; 9],
}

const ROUTES: &[Route] = &[
    Route {
        method: "GET",
        path: "/healthz",
        body: "",
        expect: [200, 200, 200, 200, 200, 200, 200, 200, 200],
    },
    Route {
        method: "GET",
        path: "/metrics",
        body: "",
        expect: [401, 200, 200, 200, 200, 200, 401, 401, 401],
    },
    Route {
        method: "GET",
        path: "/api/me",
        body: "",
        expect: [401, 200, 200, 200, 200, 200, 401, 401, 401],
    },
    Route {
        method: "GET",
        path: "/api/tasks",
        body: "",
        expect: [401, 200, 200, 200, 200, 200, 401, 401, 401],
    },
    Route {
        method: "GET",
        path: "/api/jobs",
        body: "",
        expect: [401, 200, 200, 200, 200, 200, 401, 401, 401],
    },
    Route {
        method: "GET",
        path: "/api/jobs/{job}",
        body: "",
        expect: [401, 200, 200, 200, 200, 200, 401, 401, 401],
    },
    Route {
        method: "GET",
        path: "/api/jobs/{job}/log",
        body: "",
        expect: [401, 200, 200, 200, 200, 200, 401, 401, 401],
    },
    Route {
        method: "POST",
        path: "/api/jobs",
        body: r#"{"task":"{task}"}"#,
        expect: [401, 403, 403, 201, 403, 201, 401, 401, 401],
    },
    Route {
        method: "POST",
        path: "/api/jobs/{job}/cancel",
        body: "",
        expect: [401, 403, 403, 202, 403, 202, 401, 401, 401],
    },
    Route {
        method: "POST",
        path: "/api/jobs/{job}/rerun",
        body: r#"{"hosts":"all"}"#,
        expect: [401, 403, 403, 201, 403, 201, 401, 401, 401],
    },
    Route {
        method: "GET",
        path: "/api/audit",
        body: "",
        expect: [401, 403, 403, 403, 403, 200, 401, 401, 401],
    },
    Route {
        method: "POST",
        path: "/api/logout",
        body: "",
        expect: [204, 204, 204, 204, 204, 204, 204, 204, 204],
    },
    Route {
        method: "WS",
        path: "/ws/jobs/{job}",
        body: "",
        expect: [401, 101, 101, 101, 101, 101, 401, 401, 401],
    },
    Route {
        method: "WS",
        path: "/ws/jobs",
        body: "",
        expect: [401, 101, 101, 101, 101, 101, 401, 401, 401],
    },
];

/// Which gateway a caller asks, with what credentials header, and whether its targets
/// are the `guarded` task's.
type Caller<'a> = (&'a Gateway, Option<(&'a str, &'a str)>, bool);

fn admin_token() -> String {
    format!("Bearer {}", TOKENS[0].2)
}

/// A session row that ended long ago, written straight into the store: `id`'s cookie.
fn plant_expired_session(gateway: &Gateway, user: &str) -> String {
    use sha2::Digest;
    let id = "e".repeat(64);
    let hash: [u8; 32] = sha2::Sha256::digest(id.as_bytes()).into();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let db = rusqlite::Connection::open(gateway.dir.join("data/shipwatch.db")).unwrap();
    db.busy_timeout(Duration::from_secs(5)).unwrap();
    db.execute(
        "INSERT INTO sessions (id_hash, user, created_ms, seen_ms) VALUES (?1, ?2, ?3, ?4)",
        rusqlite::params![&hash[..], user, now - 8 * 86_400_000, now - 60_000],
    )
    .unwrap();
    format!("shipwatch_session={id}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_and_websocket_answers_each_caller_as_its_role_allows() {
    let dir_none = tempfile::tempdir().unwrap();
    let dir_viewer = tempfile::tempdir().unwrap();
    let closed = Gateway::start(dir_none.path(), "none").await;
    let open = Gateway::start(dir_viewer.path(), "viewer").await;

    // One job of each task on each gateway, made by the admin token.
    let mut jobs = Vec::new();
    for gateway in [&closed, &open] {
        let mut ids = Vec::new();
        for task in ["deploy", "guarded"] {
            let reply = gateway
                .http(
                    "POST",
                    "/api/jobs",
                    &[("Authorization", &admin_token())],
                    &format!(r#"{{"task":"{task}"}}"#),
                )
                .await;
            assert_eq!(reply.status, 201, "{}", reply.body);
            ids.push(reply.json()["id"].as_u64().unwrap());
        }
        jobs.push(ids);
    }

    let viewer = closed.login("vera").await;
    let operator = closed.login("otto").await;
    let expired = plant_expired_session(&closed, "otto");
    let logged_out = closed.login("otto").await;
    let reply = closed
        .http("POST", "/api/logout", &[("Cookie", &logged_out)], "")
        .await;
    assert_eq!(reply.status, 204);
    let wrong = "Bearer swt_0000000000000000000000000000000000000000000000000000000000000000";

    // (gateway, credentials header, whether its targets are the guarded task's).
    let admin = admin_token();
    let callers: [Caller; 9] = [
        (&closed, None, false),
        (&open, None, false),
        (&closed, Some(("Cookie", &viewer)), false),
        (&closed, Some(("Cookie", &operator)), false),
        (&closed, Some(("Cookie", &operator)), true),
        (&closed, Some(("Authorization", &admin)), false),
        (&closed, Some(("Authorization", wrong)), false),
        (&closed, Some(("Cookie", &expired)), false),
        (&closed, Some(("Cookie", &logged_out)), false),
    ];

    let mut failures = Vec::new();
    for route in ROUTES {
        for (i, (gateway, credentials, guarded)) in callers.iter().enumerate() {
            // Logout would end the sessions the next routes use: its callers log in anew.
            let fresh;
            let credentials = match (route.path, credentials) {
                ("/api/logout", Some(("Cookie", _))) if i == 2 || i == 3 || i == 4 => {
                    fresh = gateway.login(if i == 2 { "vera" } else { "otto" }).await;
                    Some(("Cookie", fresh.as_str()))
                }
                _ => *credentials,
            };
            let which = usize::from(*guarded);
            let job = jobs[usize::from(std::ptr::eq(*gateway, &open))][which];
            let task = ["deploy", "guarded"][which];
            let path = route.path.replace("{job}", &job.to_string());
            let body = route.body.replace("{task}", task);
            let headers: Vec<(&str, &str)> = credentials.into_iter().collect();
            let status = if route.method == "WS" {
                ws_status(gateway.port, &path, &headers).await
            } else {
                gateway
                    .http(route.method, &path, &headers, &body)
                    .await
                    .status
            };
            if status != route.expect[i] {
                failures.push(format!(
                    "{} {path} as {}: {status}, expected {}",
                    route.method, CALLERS[i], route.expect[i]
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // 401 and 403 are JSON errors that say which.
    let reply = closed.http("GET", "/api/jobs", &[], "").await;
    assert_eq!(reply.status, 401);
    assert!(reply.json()["error"].is_string(), "{}", reply.body);
    let reply = closed
        .http("GET", "/api/audit", &[("Cookie", &viewer)], "")
        .await;
    assert_eq!(reply.status, 403);
    assert!(reply.json()["error"].is_string(), "{}", reply.body);
    closed.stop().await;
    open.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_origins_are_refused_and_no_origin_is_judged_by_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let gateway = Gateway::start(dir.path(), "none").await;
    let cookie = gateway.login("otto").await;
    let evil = ("Origin", "http://evil.example");
    let ours = gateway.origin();

    let status = ws_status(gateway.port, "/ws/jobs", &[("Cookie", &cookie), evil]).await;
    assert_eq!(status, 403, "cross-site WebSocket hijacking");
    let status = ws_status(
        gateway.port,
        "/ws/jobs",
        &[("Cookie", &cookie), ("Origin", &ours)],
    )
    .await;
    assert_eq!(status, 101, "our own page");

    let body = r#"{"task":"deploy"}"#;
    let reply = gateway
        .http("POST", "/api/jobs", &[("Cookie", &cookie), evil], body)
        .await;
    assert_eq!(reply.status, 403, "{}", reply.body);
    let reply = gateway
        .http(
            "POST",
            "/api/jobs",
            &[("Cookie", &cookie), ("Origin", "http://localhost:1")],
            body,
        )
        .await;
    assert_eq!(reply.status, 403, "{}", reply.body);
    let token = format!("Bearer {}", TOKENS[1].2);
    let reply = gateway
        .http("POST", "/api/jobs", &[("Authorization", &token)], body)
        .await;
    assert_eq!(
        reply.status, 201,
        "no Origin, a token: the CLI: {}",
        reply.body
    );
    let reply = gateway
        .http(
            "POST",
            "/api/jobs",
            &[("Cookie", &cookie), ("Origin", &ours)],
            body,
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let reply = gateway
        .http(
            "POST",
            "/api/login",
            &[evil],
            r#"{"user":"otto","password":"x"}"#,
        )
        .await;
    assert_eq!(reply.status, 403, "login from another site: {}", reply.body);

    // A form post (what another site can send without a preflight) is not JSON.
    let reply = gateway
        .http(
            "POST",
            "/api/jobs",
            &[("Authorization", &token), ("Content-Type", "text/plain")],
            body,
        )
        .await;
    assert_eq!(reply.status, 415, "{}", reply.body);
    // A POST without a body (the page's Cancel and Log out) needs no type.
    let job = gateway
        .http("POST", "/api/jobs", &[("Authorization", &token)], body)
        .await;
    let cancel = format!("/api/jobs/{}/cancel", job.json()["id"]);
    let reply =
        common::http_untyped(gateway.port, "POST", &cancel, &[("Authorization", &token)]).await;
    assert_eq!(reply.status, 202, "{}", reply.body);

    // Every answer carries the page's security headers, the page above all.
    let reply = gateway.http("GET", "/", &[], "").await;
    assert_eq!(reply.status, 200, "the page itself needs no login");
    assert!(
        reply
            .header("content-security-policy")
            .is_some_and(|v| v.contains("frame-ancestors 'none'") && !v.contains("unsafe-inline"))
    );
    assert_eq!(reply.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(reply.header("referrer-policy"), Some("same-origin"));
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_passwords_are_throttled_and_the_right_one_works_after_the_window() {
    let dir = tempfile::tempdir().unwrap();
    let gateway = Gateway::start(dir.path(), "none").await;
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for _ in 0..30 {
        let reply = gateway
            .http(
                "POST",
                "/api/login",
                &[],
                r#"{"user":"otto","password":"wrong"}"#,
            )
            .await;
        if reply.status == 429 {
            retry_after = reply
                .header("retry-after")
                .map(|v| v.parse::<u64>().unwrap());
            assert!(reply.json()["error"].is_string());
        }
        statuses.push(reply.status);
    }
    assert_eq!(statuses[0], 401);
    assert!(statuses.contains(&429), "{statuses:?}");
    let wait = retry_after.expect("429 says when to come back");
    assert!((1..=60).contains(&wait), "Retry-After {wait}");
    let right = format!(r#"{{"user":"otto","password":"{PASSWORD}"}}"#);
    let reply = gateway.http("POST", "/api/login", &[], &right).await;
    assert_eq!(
        reply.status, 429,
        "still inside the window, even with the right password"
    );

    tokio::time::sleep(Duration::from_secs(wait)).await;
    let reply = gateway.http("POST", "/api/login", &[], &right).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["user"], "otto");
    assert_eq!(reply.json()["role"], "operator");

    // Other users were never affected.
    assert_eq!(
        gateway
            .http("POST", "/api/login", &[], &right.replace("otto", "vera"))
            .await
            .status,
        200
    );
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_outlives_a_restart_ends_at_logout_and_each_login_is_a_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let gateway = Gateway::start(dir.path(), "none").await;
    let login = gateway
        .http(
            "POST",
            "/api/login",
            &[],
            &format!(r#"{{"user":"ada","password":"{PASSWORD}"}}"#),
        )
        .await;
    let set_cookie = login.header("set-cookie").unwrap().to_string();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set_cookie.contains(attribute), "{set_cookie}");
    }
    assert!(
        !set_cookie.contains("Secure"),
        "public_url is http: {set_cookie}"
    );
    let cookie = login.session_cookie().unwrap();
    let again = gateway.login("ada").await;
    assert_ne!(cookie, again, "a new id at every login");

    let me = gateway
        .http("GET", "/api/me", &[("Cookie", &cookie)], "")
        .await;
    assert_eq!(me.status, 200);
    assert_eq!(me.json()["user"], "ada");
    assert_eq!(me.json()["role"], "admin");

    let port = gateway.port;
    gateway.stop().await;
    let gateway = Gateway::start_in(dir.path(), port).await;
    let me = gateway
        .http("GET", "/api/me", &[("Cookie", &cookie)], "")
        .await;
    assert_eq!(me.status, 200, "a restart logs nobody out: {}", me.body);

    let db = std::fs::read(dir.path().join("data/shipwatch.db")).unwrap();
    let id = cookie.trim_start_matches("shipwatch_session=");
    assert!(
        !db.windows(id.len()).any(|w| w == id.as_bytes()),
        "the store holds no session id, only its hash"
    );

    assert_eq!(
        gateway
            .http("POST", "/api/logout", &[("Cookie", &cookie)], "")
            .await
            .status,
        204
    );
    assert_eq!(
        gateway
            .http("GET", "/api/me", &[("Cookie", &cookie)], "")
            .await
            .status,
        401
    );
    assert_eq!(
        gateway
            .http("GET", "/api/me", &[("Cookie", &again)], "")
            .await
            .status,
        200,
        "the other session lives"
    );

    // The audit log has the logins and the logout, with where from and never a secret.
    let audit = gateway
        .http("GET", "/api/audit?limit=100", &[("Cookie", &again)], "")
        .await;
    assert_eq!(audit.status, 200, "{}", audit.body);
    assert!(
        !audit.body.contains(PASSWORD)
            && !audit.body.contains(id)
            && !audit.body.contains("argon2")
    );
    let entries = audit.json()["audit"].as_array().unwrap().clone();
    let actions: Vec<&str> = entries
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions.first(),
        Some(&"logout"),
        "newest first: {actions:?}"
    );
    assert!(actions.iter().filter(|a| **a == "login").count() >= 2);
    assert_eq!(entries[0]["actor"], "ada");
    assert_eq!(entries[0]["addr"], "127.0.0.1");
    let older = entries[0]["id"].as_i64().unwrap();
    let page = gateway
        .http(
            "GET",
            &format!("/api/audit?limit=1&before={older}"),
            &[("Cookie", &again)],
            "",
        )
        .await;
    let page = page.json()["audit"].as_array().unwrap().clone();
    assert_eq!(page.len(), 1);
    assert!(page[0]["id"].as_i64().unwrap() < older);
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_dir_and_database_are_owner_only_whatever_the_umask() {
    let dir = tempfile::tempdir().unwrap();
    // SAFETY-free: umask is process-wide, and the modes below do not depend on it.
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
    let gateway = Gateway::start(dir.path(), "none").await;
    nix::sys::stat::umask(old);
    let cookie = gateway.login("ada").await;
    assert_eq!(
        gateway
            .http("GET", "/api/me", &[("Cookie", &cookie)], "")
            .await
            .status,
        200
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &str| {
        std::fs::metadata(dir.path().join(p))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode("data"), 0o700);
    for file in [
        "data/shipwatch.db",
        "data/shipwatch.db-wal",
        "data/shipwatch.db-shm",
    ] {
        assert_eq!(mode(file), 0o600, "{file}");
    }
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_param_values_are_refused_with_a_400_naming_the_param() {
    let dir = tempfile::tempdir().unwrap();
    let gateway = Gateway::start(dir.path(), "none").await;
    let token = format!("Bearer {}", TOKENS[0].2);
    let auth = [("Authorization", token.as_str())];
    let start = |params: &serde_json::Value| {
        serde_json::json!({"task": "deploy", "params": params}).to_string()
    };
    let refused = [
        ("NOTE", serde_json::json!({"NOTE": "a\u{0}b"})),
        ("NOTE", serde_json::json!({"NOTE": "x".repeat(1 << 20)})),
        ("NOTE", serde_json::json!({"NOTE": "x".repeat(4097)})),
        (
            "REVISION",
            serde_json::json!({"REVISION": "abc1234; touch /tmp/x"}),
        ),
        ("REVISION", serde_json::json!({"REVISION": "abc1234\n"})),
        ("REVISION", serde_json::json!({"REVISION": "$(id)"})),
    ];
    for (field, params) in &refused {
        let reply = gateway
            .http("POST", "/api/jobs", &auth, &start(params))
            .await;
        let shown: String = params.to_string().chars().take(80).collect();
        assert_eq!(reply.status, 400, "{shown}: {}", reply.body);
        assert_eq!(reply.json()["field"], *field, "{}", reply.body);
        assert!(
            reply.body.len() < 1024,
            "the error does not echo a huge value"
        );
    }
    // Not UTF-8 at all: a JSON error, never a job.
    let mut raw = br#"{"task":"deploy","params":{"NOTE":"a"#.to_vec();
    raw.extend_from_slice(b"\xff\xfe\"}}");
    let reply = common::http_bytes(gateway.port, "POST", "/api/jobs", &auth, &raw).await;
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert!(reply.json()["error"].is_string(), "{}", reply.body);

    let note = format!("'\"; $(id) `id` \n x{}", "q".repeat(4000));
    let accepted = serde_json::json!({"NOTE": note, "REVISION": "abc1234"});
    let reply = gateway
        .http("POST", "/api/jobs", &auth, &start(&accepted))
        .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    assert_eq!(reply.json()["params"], accepted, "stored as sent");
    gateway.stop().await;
}
