//! `[server]`, and where its sockets live (`run_dir`, which `$RUNTIME_DIRECTORY` overrides).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use super::checker::Checker;
use super::resolve;
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
            .unwrap_or_else(|| PathBuf::from(DEFAULT_RUN_DIR));
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

/// `[server] run_dir` when the file does not set it.
const DEFAULT_RUN_DIR: &str = "/run/shipwatch";

/// The run_dir of `source` even while its file is invalid (that is when `ctl status` and
/// `ctl reload` matter most): the valid config's; else `$RUNTIME_DIRECTORY`; else whatever
/// `[server] run_dir` still parses to; else the default.
pub fn run_dir_of(source: &ConfigSource) -> PathBuf {
    if let Ok(config) = crate::load(source) {
        return config.server.run_dir;
    }
    if let Some(dir) = runtime_directory() {
        return dir;
    }
    if let ConfigSource::File(path) = source
        && let Ok(text) = std::fs::read_to_string(path)
        && let Ok(table) = text.parse::<toml::Table>()
        && let Some(dir) = table
            .get("server")
            .and_then(|s| s.get("run_dir"))
            .and_then(|d| d.as_str())
        && !dir.is_empty()
    {
        return resolve(path.parent().unwrap_or(Path::new(".")), dir);
    }
    PathBuf::from(DEFAULT_RUN_DIR)
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

    #[test]
    fn run_dir_of_a_broken_file_is_what_its_server_table_still_says() {
        if std::env::var_os("RUNTIME_DIRECTORY").is_some() {
            return; // it wins, by design; nothing of the file is read then
        }
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("shipwatch.toml");
        std::fs::write(&file, "[server]\nrun_dir = \"sockets\"\nbogus = 1\n").unwrap();
        let source = ConfigSource::File(file.clone());
        assert!(crate::load(&source).is_err(), "the file is invalid");
        assert_eq!(run_dir_of(&source), dir.path().join("sockets"));
        std::fs::write(&file, "[server\n").unwrap();
        assert_eq!(run_dir_of(&source), PathBuf::from(DEFAULT_RUN_DIR));
    }
}
