//! One way to print an error with its causes, for every crate's log lines.
//!
//! The workspace rule (issue 8): a `thiserror` variant that has a source (`#[source]`,
//! `#[from]` or a field named `source`) never puts that source in its own message; the
//! message says what we were doing, in our words. Whoever prints the error prints the
//! chain: the binary through anyhow's `{:#}`, a library's log line through [`Report`].
//! So each cause appears exactly once, whichever way the error is shown.

use std::error::Error;
use std::fmt;

/// Displays an error and each of its sources, joined by `": "`, like anyhow's `{:#}`.
pub struct Report<'a>(pub &'a (dyn Error + 'static));

impl fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::Report;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot open the store")]
    struct Outer {
        source: std::io::Error,
    }

    #[test]
    fn prints_every_cause_once() {
        let e = Outer {
            source: std::io::Error::from_raw_os_error(2),
        };
        let shown = Report(&e).to_string();
        assert_eq!(
            shown,
            "cannot open the store: No such file or directory (os error 2)"
        );
    }
}
