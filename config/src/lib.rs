//! shipwatch's configuration (DESIGN §4): the TOML schema with its defaults, and the
//! validation that turns a file into a [`Config`] every other crate can trust.
//!
//! Loading collects every problem before failing, and each error reads
//! `FILE:LINE:COL: message naming the key`. A [`Config`] is plain data that is already
//! valid: consumers never re-check it. This crate reads the config file (and the task
//! `script_file`s it names) and nothing else; it starts no process and opens no socket.

mod error;
mod load;
mod model;
mod raw;

use std::path::{Path, PathBuf};

pub use error::{ConfigError, ConfigErrors};
pub use model::*;

/// The demo config compiled into the binary (`shipwatch up --demo`); its relative paths
/// resolve against the current directory.
pub const DEMO_TOML: &str = include_str!("../../examples/demo.toml");

/// Reads and validates the config `source` names.
pub fn load(source: &ConfigSource) -> Result<Config, ConfigErrors> {
    match source {
        ConfigSource::Demo => {
            load::load_text(DEMO_TOML, "<demo>", Path::new("."), ConfigSource::Demo)
        }
        ConfigSource::File(path) => {
            let label = path.display().to_string();
            let text = std::fs::read_to_string(path).map_err(|error| {
                ConfigErrors(vec![ConfigError {
                    file: label.clone(),
                    location: None,
                    message: format!("cannot read the config file: {error}"),
                }])
            })?;
            let base_dir = match path.parent() {
                Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
                _ => PathBuf::from("."),
            };
            load::load_text(&text, &label, &base_dir, source.clone())
        }
    }
}

/// Validates `text` as if read from `file_label` in `base_dir` (tests, `check` of stdin).
pub fn load_str(text: &str, file_label: &str, base_dir: &Path) -> Result<Config, ConfigErrors> {
    let source = ConfigSource::File(base_dir.join(file_label));
    load::load_text(text, file_label, base_dir, source)
}
