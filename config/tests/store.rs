//! `[store]`: SQLite unless a URL is given; a PostgreSQL URL is checked at its line and
//! column, and its password comes from a file rather than the config.

use std::path::Path;

use shipwatch_config::{PasswordFrom, StoreLocation, load_str};

fn load(text: &str, dir: &Path) -> Result<StoreLocation, Vec<String>> {
    match load_str(text, "shipwatch.toml", dir) {
        Ok(config) => Ok(config.store),
        Err(errors) => Err(errors.0.iter().map(ToString::to_string).collect()),
    }
}

fn errors(text: &str) -> Vec<String> {
    load(text, Path::new("/nonexistent-shipwatch-test")).expect_err("accepted")
}

#[test]
fn no_url_is_the_sqlite_file_in_data_dir() {
    let dir = Path::new("/srv");
    assert_eq!(load("", dir), Ok(StoreLocation::Sqlite));
    assert_eq!(
        load("[store]\nurl = \"\"\n", dir),
        Ok(StoreLocation::Sqlite)
    );
}

#[test]
fn a_url_gives_user_host_port_and_database() {
    let text = "[store]\nurl = \"postgres://shipwatch@db.internal:6432/deploys\"\n";
    let Ok(StoreLocation::Postgres(url)) = load(text, Path::new("/srv")) else {
        panic!("not postgres");
    };
    assert_eq!(
        (
            url.user.as_str(),
            url.host.as_str(),
            url.port,
            url.dbname.as_str()
        ),
        ("shipwatch", "db.internal", 6432, "deploys")
    );
    assert_eq!(
        url.to_string(),
        "postgres://shipwatch@db.internal:6432/deploys"
    );
}

#[test]
fn the_password_comes_from_its_file_and_never_prints() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pg.secret"), "s3cret-pw\n").unwrap();
    let text = "[store]\nurl = \"postgres://sw@127.0.0.1/sw\"\npassword_file = \"pg.secret\"\n";
    let config = load_str(text, "shipwatch.toml", dir.path()).unwrap();
    let StoreLocation::Postgres(url) = &config.store else {
        panic!("not postgres");
    };
    assert_eq!(url.password.as_ref().map(|p| p.expose()), Some("s3cret-pw"));
    assert_eq!(
        url.password_from,
        PasswordFrom::File(dir.path().join("pg.secret"))
    );
    let shown = format!("{config:?} {url}");
    assert!(!shown.contains("s3cret"), "{shown}");
    let warnings = config.warnings();
    assert!(
        !warnings.iter().any(|w| w.contains("store")),
        "{warnings:?}"
    );
}

#[test]
fn a_password_in_the_url_works_with_a_warning() {
    let text = "[store]\nurl = \"postgres://sw:in-the-url@127.0.0.1/sw\"\n";
    let config = load_str(text, "shipwatch.toml", Path::new("/srv")).unwrap();
    let StoreLocation::Postgres(url) = &config.store else {
        panic!("not postgres");
    };
    assert_eq!(
        url.password.as_ref().map(|p| p.expose()),
        Some("in-the-url")
    );
    assert!(!url.to_string().contains("in-the-url"));
    let warnings = config.warnings();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("store.url holds a password")),
        "{warnings:?}"
    );
}

#[test]
fn every_mistake_in_store_is_reported_at_its_key() {
    let cases: &[(&str, &str)] = &[
        (
            "[store]\nurl = \"mysql://sw@db/sw\"\n",
            "shipwatch.toml:2:7: store.url = \"mysql://sw@db/sw\": the scheme must be postgres:// (not mysql://); expected a URL like \"postgres://shipwatch@db.internal:5432/shipwatch\"",
        ),
        (
            "[store]\nurl = \"postgres://sw@/sw\"\n",
            "shipwatch.toml:2:7: store.url = \"postgres://sw@/sw\": no host; expected a URL like \"postgres://shipwatch@db.internal:5432/shipwatch\"",
        ),
        (
            "[store]\nurl = \"postgres://sw@db.internal\"\n",
            "shipwatch.toml:2:7: store.url = \"postgres://sw@db.internal\": no database named after the host; expected a URL like \"postgres://shipwatch@db.internal:5432/shipwatch\"",
        ),
        (
            "[store]\nurl = \"postgres://db.internal/sw\"\n",
            "shipwatch.toml:2:7: store.url = \"postgres://db.internal/sw\": no user: write it before the host, USER@HOST; expected a URL like \"postgres://shipwatch@db.internal:5432/shipwatch\"",
        ),
        (
            "[store]\nurl = \"postgres://sw@db:99999/sw\"\n",
            "shipwatch.toml:2:7: store.url = \"postgres://sw@db:99999/sw\": port \"99999\" is not a port, 1 to 65535",
        ),
        (
            "[store]\nurl = \"postgres://sw@db/sw?sslmode=require\"\n",
            "shipwatch.toml:2:7: store.url = \"postgres://sw@db/sw?sslmode=require\": this build speaks to PostgreSQL without TLS: use a private network, a Unix socket or a local TLS tunnel, and sslmode=disable",
        ),
        (
            "[store]\nurl = \"postgres://sw@db/sw\"\npassword_file = \"/nonexistent-shipwatch-test/pw\"\n",
            "shipwatch.toml:3:17: store.password_file = \"/nonexistent-shipwatch-test/pw\": cannot read /nonexistent-shipwatch-test/pw: No such file or directory (os error 2)",
        ),
        (
            "[store]\nurl = \"postgres://sw:pw@db/sw\"\npassword_file = \"pw\"\n",
            "shipwatch.toml:3:17: store.password_file = \"pw\": store.url holds a password already: keep only one (the file)",
        ),
        (
            "[store]\npassword_file = \"pw\"\n",
            "shipwatch.toml:2:17: store.password_file = \"pw\": only used with store.url (the SQLite store has no password)",
        ),
        (
            "[store]\nurl = \"postgres://sw@db/sw\"\npasword_file = \"pw\"\n",
            "shipwatch.toml:3:1: store: unknown key `pasword_file`, expected one of `url`, `password_file`",
        ),
        (
            "[store]\nurl = 5432\n",
            "shipwatch.toml:2:7: store.url: invalid type: integer `5432`, expected a string",
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(errors(text), [*expected], "{text}");
    }
}
