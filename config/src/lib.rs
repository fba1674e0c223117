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
pub use load::run_dir_of;
pub use model::*;

/// The largest script a task may have, in bytes; loading refuses more. The runner hands
/// the script to bash on stdin, never in an argv, so ARG_MAX does not bound it; this does,
/// well below a runner frame's 8 MiB so a job's spec with its params always fits one.
pub const MAX_SCRIPT_BYTES: usize = 1024 * 1024;

/// The demo config compiled into the binary (`shipwatch up --demo`); its relative paths
/// resolve against the current directory.
pub const DEMO_TOML: &str = include_str!("../../examples/demo.toml");

/// Reads and validates the config `source` names.
pub fn load(source: &ConfigSource) -> Result<Config, ConfigErrors> {
    load_keeping_text(source).map(|(config, _)| config)
}

/// [`load`], also returning the text that was validated: what a supervisor saves as a
/// [`ConfigSource::Snapshot`] for its children.
pub fn load_keeping_text(source: &ConfigSource) -> Result<(Config, String), ConfigErrors> {
    let (text, of) = match source {
        ConfigSource::Demo => {
            let config = load::load_text(DEMO_TOML, "<demo>", Path::new("."), source.clone())?;
            return Ok((config, DEMO_TOML.to_string()));
        }
        ConfigSource::File(path) => (read(path)?, path),
        ConfigSource::Snapshot { file, of } => (read(file)?, of),
    };
    let base_dir = match of.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let config = load::load_text(&text, &source.label(), &base_dir, source.clone())?;
    Ok((config, text))
}

fn read(path: &Path) -> Result<String, ConfigErrors> {
    std::fs::read_to_string(path).map_err(|error| {
        ConfigErrors(vec![ConfigError {
            file: path.display().to_string(),
            location: None,
            message: format!("cannot read the config file: {error}"),
        }])
    })
}

/// Validates `text` as if read from `file_label` in `base_dir` (tests, `check` of stdin).
pub fn load_str(text: &str, file_label: &str, base_dir: &Path) -> Result<Config, ConfigErrors> {
    let source = ConfigSource::File(base_dir.join(file_label));
    load::load_text(text, file_label, base_dir, source)
}
