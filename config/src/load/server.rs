//! `[server]`, and where its sockets live (`run_dir`, which `$RUNTIME_DIRECTORY` overrides).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use super::checker::Checker;
use crate::model::*;
use crate::raw::*;

impl Checker<'_> {
    pub(super) fn server(&mut self, raw: RawServer, base_dir: &Path) -> Server {
        let default_listen = SocketAddr::from(([127, 0, 0, 1], 8080));
        let listen = match &raw.listen {
            None => default_listen,
            Some(value) => match value.get_ref().parse::<SocketAddr>() {
                Ok(addr) => addr,
                Err(_) => {
                    self.bad_value(
                        "server.listen",
                        value.span(),
                        r#"expected a socket address like "127.0.0.1:8080" or "[::1]:8080""#,
                    );
                    default_listen
                }
            },
        };
        let data_dir = self
            .path("server.data_dir", raw.data_dir.as_ref(), base_dir)
            .unwrap_or_else(|| PathBuf::from("/var/lib/shipwatch"));
        let file_run_dir = self
            .path("server.run_dir", raw.run_dir.as_ref(), base_dir)
            .unwrap_or_else(|| PathBuf::from("/run/shipwatch"));
        let run_dir = runtime_directory().unwrap_or(file_run_dir);
        let public_url = match &raw.public_url {
            None => format!("http://{listen}"),
            Some(value) => {
                let url = value.get_ref().trim_end_matches('/');
                let rest = url
                    .strip_prefix("http://")
                    .or_else(|| url.strip_prefix("https://"));
                match rest {
                    Some(host) if !host.is_empty() && !host.contains(char::is_whitespace) => {
                        url.to_string()
                    }
                    _ => {
                        self.bad_value(
                            "server.public_url",
                            value.span(),
                            r#"expected an http:// or https:// URL like "https://deploy.example.com""#,
                        );
                        String::new()
                    }
                }
            }
        };
        let retention_days = self.int_in(
            "server.retention_days",
            raw.retention_days.as_ref(),
            90,
            1,
            u32::MAX as i64,
            "a number of days, 1 or more",
        ) as u32;
        let max_log_bytes = self.int_in(
            "server.max_log_bytes",
            raw.max_log_bytes.as_ref(),
            268_435_456,
            1,
            i64::MAX,
            "a number of bytes, 1 or more",
        ) as u64;
        Server {
            listen,
            data_dir,
            run_dir,
            public_url,
            retention_days,
            max_log_bytes,
        }
    }
}

/// systemd's `RuntimeDirectory=`: the first entry when it lists several.
fn runtime_directory() -> Option<PathBuf> {
    first_runtime_directory(&std::env::var_os("RUNTIME_DIRECTORY")?)
}

fn first_runtime_directory(value: &std::ffi::OsStr) -> Option<PathBuf> {
    let first = value.to_str()?.split(':').next()?.trim();
    (!first.is_empty()).then(|| PathBuf::from(first))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_directory_takes_the_first_entry() {
        let first = |s: &str| first_runtime_directory(std::ffi::OsStr::new(s));
        assert_eq!(
            first("/run/shipwatch"),
            Some(PathBuf::from("/run/shipwatch"))
        );
        assert_eq!(first("/run/a:/run/b"), Some(PathBuf::from("/run/a")));
        assert_eq!(first(""), None);
    }
}
