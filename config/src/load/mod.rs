//! From text to a valid [`Config`]: parse with spans, apply DESIGN §4's defaults, and
//! collect every problem with the place it was written.

//!
//! One file per section of DESIGN §4 (`server`, `supervisor`, `ssh`, `hosts`, `tasks`,
//! `params`, `accounts`, `notify`, `store`); [`checker`] holds what they share to report problems.

mod accounts;
mod checker;
mod hosts;
mod notify;
mod params;
mod server;
mod ssh;
mod store;
mod supervisor;
mod tasks;

pub use server::run_dir_of;

use std::path::{Path, PathBuf};

use checker::Checker;

use crate::error::ConfigErrors;
use crate::model::*;
use crate::raw::*;

/// Parses and validates `text`; `file` labels errors, `base_dir` anchors relative paths.
pub(crate) fn load_text(
    text: &str,
    file: &str,
    base_dir: &Path,
    source: ConfigSource,
) -> Result<Config, ConfigErrors> {
    let mut checker = Checker {
        text,
        file: file.to_string(),
        errors: Vec::new(),
    };
    let table = match toml::de::DeTable::parse(text) {
        Ok(table) => table,
        Err(error) => {
            checker.syntax(&error);
            return Err(checker.finish());
        }
    };
    checker.unknown_keys(table.get_ref(), "top level", keys::TOP);
    if !checker.errors.is_empty() {
        return Err(checker.finish());
    }
    checker.sections(&table);
    if !checker.errors.is_empty() {
        return Err(checker.finish());
    }
    let raw: RawConfig = match serde::Deserialize::deserialize(toml::de::Deserializer::from(table))
    {
        Ok(raw) => raw,
        Err(error) => {
            checker.syntax(&error);
            return Err(checker.finish());
        }
    };
    let base_dir = absolute(base_dir);
    let config = checker.config(raw, &base_dir, source);
    if checker.errors.is_empty() {
        Ok(config)
    } else {
        Err(checker.finish())
    }
}

/// Makes `path` absolute against the current directory, dropping `.` components.
pub(crate) fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// A path from the file, relative to the file's directory, made absolute.
pub(super) fn resolve(base_dir: &Path, path: &str) -> PathBuf {
    absolute(&base_dir.join(path))
}

impl Checker<'_> {
    fn config(&mut self, raw: RawConfig, base_dir: &Path, source: ConfigSource) -> Config {
        let server = self.server(raw.server, base_dir);
        let supervisor = self.supervisor(raw.supervisor);
        let ssh = self.ssh(raw.ssh, base_dir);
        let (hosts, known_hosts) = self.host_groups(raw.hosts);
        let tasks = self.tasks(raw.tasks, &hosts, &known_hosts, base_dir);
        let users = self.users(raw.users);
        let tokens = self.tokens(raw.tokens);
        let auth = self.auth(raw.auth);
        let notify = self.notify(raw.notify, &tasks);
        let store = self.store(raw.store, base_dir);
        Config {
            source,
            server,
            supervisor,
            ssh,
            hosts,
            tasks,
            users,
            tokens,
            auth,
            store,
            notify,
        }
    }
}
