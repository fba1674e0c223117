//! shipwatch's configuration (DESIGN §4): the TOML schema with its defaults, and the
//! validation that turns a file into a [`Config`] every other crate can trust.
//!
//! Loading collects every problem before failing, and each error reads
//! `FILE:LINE:COL: message naming the key`. A [`Config`] is plain data that is already
//! valid: consumers never re-check it. This crate reads the config file (and the task
//! `script_file`s it names) and nothing else; it starts no process and opens no socket.

mod error;
mod model;

pub use error::{ConfigError, ConfigErrors};
pub use model::*;

/// Reads and validates the config `source` names.
pub fn load(source: &ConfigSource) -> Result<Config, ConfigErrors> {
    // Placeholder until the loader lands: the config issue replaces this.
    let file = match source {
        ConfigSource::File(path) => path.display().to_string(),
        ConfigSource::Demo => "<demo>".to_string(),
    };
    Err(ConfigErrors(vec![ConfigError {
        file,
        location: None,
        message: "config loading is not implemented yet".into(),
    }]))
}
