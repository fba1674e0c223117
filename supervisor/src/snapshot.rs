//! The config snapshot: the last valid config text, saved in the run_dir for children to
//! read, so one that restarts while the file on disk is broken comes back with the
//! config everyone else runs.

use std::path::Path;

/// In the run_dir: the config text children read (see [`ConfigSource::Snapshot`]).
pub(crate) const FILE: &str = "config.snapshot.toml";

/// Saves the text children read, atomically; 0600 because it may hold password hashes.
pub(crate) fn save(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("toml.tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(text.as_bytes())?;
    std::fs::rename(&tmp, path)
}
