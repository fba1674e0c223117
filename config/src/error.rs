//! Errors that point at the user's words: `FILE:LINE:COL: message naming the key`.

use std::fmt;

/// One problem with a config, located in its file where it has a place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file as the user named it (`<demo>` for the embedded demo).
    pub file: String,
    /// 1-based line and column; `None` for problems that have no place (unreadable file).
    pub location: Option<(usize, usize)>,
    /// Names the key, e.g. "tasks[1].batch: 0 is not a batch size (1 or more, or a percent)".
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.location {
            Some((line, col)) => write!(f, "{}:{line}:{col}: {}", self.file, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

/// Every problem found in one config, in file order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}
