//! `[store]`: the embedded SQLite file (`url` empty), or a PostgreSQL database given as
//! `postgres://USER@HOST[:PORT]/DATABASE` that several gateways share (DESIGN §11).
//!
//! The URL is checked here, at its line and column, so `shipwatch check` catches a typo
//! before a gateway tries to connect. The password should not sit in the config: it is
//! read from `password_file` or `$PGPASSWORD` (a password in the URL works too, with a
//! warning, and then wins over the environment as in libpq). It is kept as
//! a [`Secret`], which never prints.

use std::path::Path;
use std::time::Duration;

use super::checker::Checker;
use crate::model::*;
use crate::raw::*;

/// What the URL says, before the password is settled.
#[derive(Debug, PartialEq, Eq)]
struct Parsed {
    user: String,
    password: Option<String>,
    host: String,
    port: u16,
    dbname: String,
    connect_timeout: Duration,
}

const SHAPE: &str = "expected a URL like \"postgres://shipwatch@db.internal:5432/shipwatch\"";

impl Checker<'_> {
    pub(super) fn store(&mut self, raw: RawStore, base_dir: &Path) -> StoreLocation {
        let file = raw
            .password_file
            .as_ref()
            .filter(|f| !f.get_ref().is_empty());
        let url = match raw.url.as_ref().filter(|u| !u.get_ref().trim().is_empty()) {
            Some(url) => url,
            None => {
                if let Some(file) = file {
                    self.bad_value(
                        "store.password_file",
                        file.span(),
                        "only used with store.url (the SQLite store has no password)",
                    );
                }
                return StoreLocation::Sqlite;
            }
        };
        let parsed = match parse(url.get_ref().trim()) {
            Ok(parsed) => parsed,
            Err(why) => {
                self.bad_value("store.url", url.span(), &why);
                return StoreLocation::Sqlite;
            }
        };
        let from_file = match file {
            None => None,
            Some(_) if parsed.password.is_some() => {
                let span = file.map(|f| f.span()).unwrap_or_default();
                self.bad_value(
                    "store.password_file",
                    span,
                    "store.url holds a password already: keep only one (the file)",
                );
                None
            }
            Some(file) => {
                let path = super::resolve(base_dir, file.get_ref());
                match std::fs::read_to_string(&path) {
                    Ok(text) => Some((text.trim_end_matches(['\n', '\r']).to_string(), path)),
                    Err(error) => {
                        self.bad_value(
                            "store.password_file",
                            file.span(),
                            &format!("cannot read {}: {error}", path.display()),
                        );
                        None
                    }
                }
            }
        };
        let (password, password_from) =
            settle_password(from_file, std::env::var("PGPASSWORD").ok(), parsed.password);
        StoreLocation::Postgres(PostgresUrl {
            user: parsed.user,
            host: parsed.host,
            port: parsed.port,
            dbname: parsed.dbname,
            connect_timeout: parsed.connect_timeout,
            password: password.map(Secret::new),
            password_from,
        })
    }
}

impl PostgresUrl {
    /// Reads `text` as `[store] url` is read, with only the URL's own password (tests and
    /// tools that are handed a URL rather than a config).
    pub fn parse(text: &str) -> Result<PostgresUrl, String> {
        let parsed = parse(text.trim())?;
        let (password, password_from) = settle_password(None, None, parsed.password);
        Ok(PostgresUrl {
            user: parsed.user,
            host: parsed.host,
            port: parsed.port,
            dbname: parsed.dbname,
            connect_timeout: parsed.connect_timeout,
            password: password.map(Secret::new),
            password_from,
        })
    }
}

/// The file's password, else the URL's, else the environment's (when not empty): libpq's
/// order, where the environment is the fallback.
fn settle_password(
    file: Option<(String, std::path::PathBuf)>,
    env: Option<String>,
    url: Option<String>,
) -> (Option<String>, PasswordFrom) {
    if let Some((password, path)) = file {
        return (Some(password), PasswordFrom::File(path));
    }
    if let Some(password) = url {
        return (Some(password), PasswordFrom::Url);
    }
    match env.filter(|p| !p.is_empty()) {
        Some(password) => (Some(password), PasswordFrom::Environment),
        None => (None, PasswordFrom::Nowhere),
    }
}

/// Reads `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?connect_timeout=SECS]`; the
/// error says what is wrong in the user's terms.
fn parse(url: &str) -> Result<Parsed, String> {
    let rest = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))
        .ok_or_else(|| match url.split_once("://") {
            Some((scheme, _)) => {
                format!("the scheme must be postgres:// (not {scheme}://); {SHAPE}")
            }
            None => SHAPE.to_string(),
        })?;
    if rest.contains(char::is_whitespace) {
        return Err(format!("a URL has no spaces; {SHAPE}"));
    }
    let (rest, query) = match rest.split_once('?') {
        Some((rest, query)) => (rest, Some(query)),
        None => (rest, None),
    };
    let (authority, dbname) = rest
        .split_once('/')
        .ok_or_else(|| format!("no database named after the host; {SHAPE}"))?;
    let dbname = decode(dbname)?;
    if dbname.is_empty() || dbname.contains('/') {
        return Err(format!("no database named after the host; {SHAPE}"));
    }
    let (userinfo, hostport) = authority
        .rsplit_once('@')
        .ok_or_else(|| format!("no user: write it before the host, USER@HOST; {SHAPE}"))?;
    let (user, password) = match userinfo.split_once(':') {
        Some((user, password)) => (decode(user)?, Some(decode(password)?)),
        None => (decode(userinfo)?, None),
    };
    if user.is_empty() {
        return Err(format!(
            "no user: write it before the host, USER@HOST; {SHAPE}"
        ));
    }
    let (host, port) = split_host_port(hostport)?;
    let host = decode(host)?;
    if host.is_empty() {
        return Err(format!("no host; {SHAPE}"));
    }
    if host.contains('/') && !host.starts_with('/') {
        return Err("a socket directory must be absolute, e.g. %2Frun%2Fpostgresql".to_string());
    }
    let mut connect_timeout = Duration::from_secs(10);
    for pair in query.into_iter().flat_map(|q| q.split('&')) {
        match pair.split_once('=') {
            Some(("connect_timeout", secs)) => match secs.parse::<u64>() {
                Ok(secs @ 1..=3600) => connect_timeout = Duration::from_secs(secs),
                _ => return Err("connect_timeout is seconds, 1 to 3600".to_string()),
            },
            Some(("sslmode", "disable" | "prefer")) => {}
            Some(("sslmode", _)) => {
                return Err(
                    "this build speaks to PostgreSQL without TLS: use a private network, a \
                     Unix socket or a local TLS tunnel, and sslmode=disable"
                        .to_string(),
                );
            }
            _ => {
                return Err(format!(
                    "unknown parameter {pair:?}: only connect_timeout and sslmode are understood"
                ));
            }
        }
    }
    Ok(Parsed {
        user,
        password,
        host,
        port,
        dbname,
        connect_timeout,
    })
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`.
fn split_host_port(hostport: &str) -> Result<(&str, u16), String> {
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (host, after) = v6
            .split_once(']')
            .ok_or_else(|| "an IPv6 host goes in brackets, [::1]".to_string())?;
        match after {
            "" => (host, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None => return Err("an IPv6 host goes in brackets, [::1]:5432".to_string()),
            },
        }
    } else {
        match hostport.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (hostport, None),
        }
    };
    let port = match port {
        None => 5432,
        Some(port) => match port.parse::<u16>() {
            Ok(port) if port > 0 => port,
            _ => return Err(format!("port {port:?} is not a port, 1 to 65535")),
        },
    };
    Ok((host, port))
}

/// Percent-decoding, as URLs write `/`, `@` or `:` inside a part.
fn decode(part: &str) -> Result<String, String> {
    let bytes = part.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = part
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("{part:?} has a % not followed by two hex digits"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("{part:?} does not decode to UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_socket_directory_an_ipv6_host_and_defaults_parse() {
        let socket = parse("postgres://sw@%2Frun%2Fpostgresql/deploys").unwrap();
        assert_eq!(socket.host, "/run/postgresql");
        assert_eq!(socket.port, 5432);
        assert_eq!(socket.dbname, "deploys");
        let v6 = parse("postgresql://sw:p%40ss@[::1]:6543/db?connect_timeout=3").unwrap();
        assert_eq!(v6.host, "::1");
        assert_eq!(v6.port, 6543);
        assert_eq!(v6.password.as_deref(), Some("p@ss"));
        assert_eq!(v6.connect_timeout, Duration::from_secs(3));
    }

    #[test]
    fn the_file_wins_then_the_url_then_the_environment() {
        let file = Some(("f".to_string(), "/p".into()));
        let (pw, from) = settle_password(file, Some("e".into()), None);
        assert_eq!(
            (pw.as_deref(), from),
            (Some("f"), PasswordFrom::File("/p".into()))
        );
        let (pw, from) = settle_password(None, Some("e".into()), Some("u".into()));
        assert_eq!((pw.as_deref(), from), (Some("u"), PasswordFrom::Url));
        let (pw, from) = settle_password(None, Some("e".into()), None);
        assert_eq!(
            (pw.as_deref(), from),
            (Some("e"), PasswordFrom::Environment)
        );
        let (pw, from) = settle_password(None, Some(String::new()), None);
        assert_eq!((pw, from), (None, PasswordFrom::Nowhere));
        assert_eq!(
            settle_password(None, None, None),
            (None, PasswordFrom::Nowhere)
        );
    }
}
