//! `shipwatch hash-password` and `shipwatch token new` on the real binary, and a whole
//! `shipwatch up` whose log, after logins, failed logins, tokens and logouts, holds no
//! password, token, hash or session id.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use support::*;

fn shipwatch(args: &[&str], stdin: &[u8]) -> std::process::Output {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn shipwatch");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin)
        .expect("write stdin");
    child.wait_with_output().expect("shipwatch output")
}

fn hash_password(password: &str) -> String {
    let out = shipwatch(&["hash-password"], format!("{password}\n").as_bytes());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .trim_end()
        .to_string()
}

/// One HTTP/1.0 request with extra headers: status, headers and body.
fn request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut text = format!(
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    );
    for (name, value) in headers {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    text.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    stream.write_all(text.as_bytes()).unwrap();
    let mut out = String::new();
    stream.read_to_string(&mut out).unwrap();
    (
        out.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0),
        out,
    )
}

#[test]
fn hash_password_keeps_the_line_without_its_newline() {
    let hash = hash_password("  two words ");
    assert!(
        hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{hash}"
    );
    assert!(shipwatch_gateway::auth::secret::verify(
        &hash,
        b"  two words "
    ));
    assert!(!shipwatch_gateway::auth::secret::verify(
        &hash,
        b"  two words \n"
    ));
    let empty = shipwatch(&["hash-password"], b"\n");
    assert!(!empty.status.success(), "an empty password is refused");
}

#[test]
fn token_new_prints_the_token_once_and_a_block_that_loads_and_verifies() {
    let out = shipwatch(&["token", "new", "ci", "--role", "operator"], b"");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let (token, block) = stdout.split_once('\n').unwrap();
    assert!(token.starts_with("swt_") && token.len() == 68, "{token}");
    assert_eq!(
        stdout.matches(token).count(),
        1,
        "the token is printed once"
    );
    let hash = block
        .lines()
        .find_map(|l| l.strip_prefix("token_hash = \""))
        .and_then(|l| l.strip_suffix('"'))
        .expect("a token_hash line");
    assert!(shipwatch_gateway::auth::secret::verify(
        hash,
        token.as_bytes()
    ));

    let setup = Setup::new("runners = 0");
    setup.write_raw(&format!("{}\n{block}", setup.config_text("runners = 0")));
    let check = Command::new(BIN)
        .args(["check", "-c"])
        .arg(setup.config_path())
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );

    let bad = shipwatch(&["token", "new", "ci", "--role", "root"], b"");
    assert_eq!(
        bad.status.code(),
        Some(2),
        "an unknown role is a usage error"
    );
}

#[test]
fn the_log_of_logins_tokens_and_failures_holds_no_secret() {
    let password = "hunter2-but-longer";
    let password_hash = hash_password(password);
    let made = shipwatch(&["token", "new", "ci", "--role", "operator"], b"");
    let stdout = String::from_utf8(made.stdout).unwrap();
    let (token, block) = stdout.split_once('\n').unwrap();
    let setup = Setup::new("runners = 1");
    let text = format!(
        r#"{}
[auth]
anonymous = "none"

[[users]]
name = "alice"
password_hash = "{password_hash}"
role = "operator"

{block}"#,
        setup.config_text("runners = 1")
    );
    setup.write_raw(&text);
    let _up = Guard(setup.up(&[("SHIPWATCH_LOG", "debug,hyper=info,tokio=info")]));
    let port = setup.port;
    wait_until("the gateway answers", DEADLINE, || {
        try_http(port, "GET", "/healthz", "").is_some_and(|(status, _)| status == 200)
    });

    let wrong = request(
        port,
        "POST",
        "/api/login",
        &[],
        r#"{"user":"alice","password":"not-it-at-all"}"#,
    );
    assert_eq!(wrong.0, 401);
    let typo = request(
        port,
        "POST",
        "/api/login",
        &[],
        &format!(r#"{{"user":"{password}","password":"x"}}"#),
    );
    assert_eq!(typo.0, 401, "a password typed as the user name");
    let login = request(
        port,
        "POST",
        "/api/login",
        &[],
        &format!(r#"{{"user":"alice","password":"{password}"}}"#),
    );
    assert_eq!(login.0, 200, "{}", login.1);
    let session = login
        .1
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: shipwatch_session="))
        .and_then(|v| v.split(';').next())
        .expect("a session cookie")
        .to_string();
    let cookie = format!("shipwatch_session={session}");
    assert_eq!(
        request(port, "GET", "/api/me", &[("Cookie", &cookie)], "").0,
        200
    );
    let bearer = format!("Bearer {token}");
    let started = request(
        port,
        "POST",
        "/api/jobs",
        &[("Authorization", &bearer)],
        r#"{"task":"deploy"}"#,
    );
    assert_eq!(started.0, 201, "{}", started.1);
    let stale = format!("Bearer {}x", &token[..token.len() - 1]);
    assert_eq!(
        request(port, "GET", "/api/jobs", &[("Authorization", &stale)], "").0,
        401
    );
    assert_eq!(
        request(port, "POST", "/api/logout", &[("Cookie", &cookie)], "").0,
        204
    );
    assert_eq!(
        request(port, "GET", "/api/me", &[("Cookie", &cookie)], "").0,
        401
    );

    drop(_up);
    let log = setup.log();
    assert!(
        log.contains("logged in") && log.contains("login failed"),
        "the log is there:\n{log}"
    );
    let token_hash = block
        .lines()
        .find_map(|l| l.strip_prefix("token_hash = \""))
        .and_then(|l| l.strip_suffix('"'))
        .unwrap();
    for (what, secret) in [
        ("password", password),
        ("token", token),
        ("a stale token", &stale[7..]),
        ("password hash", password_hash.rsplit('$').next().unwrap()),
        ("token hash", token_hash.rsplit('$').next().unwrap()),
        ("session id", &session),
        ("the wrong password", "not-it-at-all"),
    ] {
        assert!(!log.contains(secret), "the {what} is in the log:\n{log}");
    }
}
