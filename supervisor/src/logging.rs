//! How every shipwatch process writes its log: one line per event on stderr, read by
//! an operator in `journalctl -u shipwatch` (DESIGN §7).
//!
//! A line is `LEVEL message key=value…`. Colour only for a person at a terminal, never
//! with `NO_COLOR`. No timestamp where one is added anyway: the supervisor stamps the
//! lines it relays from its children (they find [`READY_FD_ENV`] set), and the journal
//! stamps the supervisor's when stderr is the journal (`JOURNAL_STREAM` names stderr's
//! device and inode, systemd.exec(5)). There each line starts with its syslog priority
//! (`<4>` for a warning, sd-daemon(3)), so `journalctl -p warning` finds warnings,
//! relayed children's included: the supervisor relays each at the child's own level.

use std::io::IsTerminal;

pub use crate::log_queue::Flush;
use shipwatch_protocol::supervision::READY_FD_ENV;
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// The variable that filters what is logged (`info` unless set), e.g. `shipwatch=debug`.
pub const FILTER_ENV: &str = "SHIPWATCH_LOG";

/// How lines look on this process's stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Style {
    /// Colour escapes: only on a terminal, and never with `NO_COLOR`.
    pub ansi: bool,
    /// A timestamp first, unless the supervisor or the journal adds one.
    pub time: bool,
    /// A syslog priority prefix (`<6>`) that the journal turns into the entry's priority.
    pub priority: bool,
}

impl Style {
    /// Looks at stderr and the environment this process was started with.
    pub fn detect() -> Style {
        let stderr = std::io::stderr();
        let journal = std::env::var("JOURNAL_STREAM")
            .ok()
            .zip(nix::sys::stat::fstat(&stderr).ok())
            .is_some_and(|(stream, stat)| names_stream(&stream, stat.st_dev, stat.st_ino));
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        let supervised = std::env::var_os(READY_FD_ENV).is_some();
        Style {
            ansi: stderr.is_terminal() && !no_color,
            time: !(supervised || journal),
            priority: journal,
        }
    }
}

/// Whether `JOURNAL_STREAM` (`DEVICE:INODE`) names this stream: a child that inherited
/// the variable but writes to a pipe or a file must not think it talks to the journal.
fn names_stream(journal_stream: &str, dev: u64, ino: u64) -> bool {
    journal_stream
        .split_once(':')
        .and_then(|(d, i)| Some((d.parse::<u64>().ok()?, i.parse::<u64>().ok()?)))
        == Some((dev, ino))
}

/// Installs the process-wide logger on stderr, filtered by [`FILTER_ENV`].
pub fn init() {
    install(std::io::stderr);
}

/// Like [`init`], for the supervisor: lines go to stderr through a queue and a thread of
/// their own, so a stalled journal never stops the loop that restarts children (see
/// `log_queue`). Keep the [`Flush`] until the process ends; it writes what is queued.
pub fn init_queued() -> Option<Flush> {
    match crate::log_queue::start() {
        Ok((queued, flush)) => {
            install(queued);
            Some(flush)
        }
        Err(error) => {
            init();
            tracing::warn!(error = %shipwatch_protocol::Report(&error), "cannot start the log writer thread; logging to stderr directly");
            None
        }
    }
}

fn install<W>(writer: W)
where
    W: for<'a> tracing_subscriber::fmt::MakeWriter<'a> + Send + Sync + 'static,
{
    let filter = tracing_subscriber::EnvFilter::try_from_env(FILTER_ENV)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let style = Style::detect();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(style.ansi)
        .with_target(false);
    if style.time {
        builder.init();
    } else {
        builder.event_format(Untimed::new(style.priority)).init();
    }
}

/// `[<priority>]LEVEL message key=value…`: for lines that something else timestamps.
/// The level is not padded (`INFO`, not ` INFO`), so the journal's message and the
/// supervisor's relayed line start with it.
pub struct Untimed {
    priority: bool,
    rest: tracing_subscriber::fmt::format::Format<tracing_subscriber::fmt::format::Full, ()>,
}

impl Untimed {
    /// With `priority`, each line starts with its syslog priority for the journal.
    pub fn new(priority: bool) -> Untimed {
        Untimed {
            priority,
            rest: tracing_subscriber::fmt::format()
                .without_time()
                .with_level(false)
                .with_target(false)
                .with_ansi(false),
        }
    }
}

impl<S, N> FormatEvent<S, N> for Untimed
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let level = *event.metadata().level();
        let mut text = String::new();
        self.rest.format_event(ctx, Writer::new(&mut text), event)?;
        // A message of several lines (a config error listing each problem) keeps its
        // level on every line: the journal and the supervisor take each line alone.
        for (i, line) in text.trim_end_matches('\n').split('\n').enumerate() {
            if self.priority {
                write!(writer, "<{}>", syslog_priority(level))?;
            }
            let indent = if i == 0 { "" } else { "  " };
            writeln!(writer, "{level} {indent}{line}")?;
        }
        Ok(())
    }
}

/// sd-daemon(3)'s `SD_ERR` … `SD_DEBUG`.
fn syslog_priority(level: Level) -> u8 {
    match level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        Level::DEBUG | Level::TRACE => 7,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// What one event looks like through [`Untimed`].
    fn untimed(priority: bool, log: impl FnOnce()) -> String {
        let out = Arc::new(Mutex::new(Vec::new()));
        let sink = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || Sink(sink.clone()))
            .with_max_level(Level::DEBUG)
            .event_format(Untimed::new(priority))
            .finish();
        tracing::subscriber::with_default(subscriber, log);
        let bytes = out.lock().map(|b| b.clone()).unwrap_or_default();
        String::from_utf8(bytes).unwrap_or_default()
    }

    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if let Ok(mut out) = self.0.lock() {
                out.extend_from_slice(buf);
            }
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn untimed_lines_start_with_the_level_and_carry_plain_fields() {
        let line = untimed(
            false,
            || tracing::info!(job = 1, host = %"web-07", state = %"ok", exit_code = 0, "host finished"),
        );
        assert_eq!(
            line,
            "INFO host finished job=1 host=web-07 state=ok exit_code=0\n"
        );
        let line = untimed(false, || tracing::warn!("gateway silent too long"));
        assert_eq!(line, "WARN gateway silent too long\n");
    }

    #[test]
    fn journal_lines_start_with_their_syslog_priority() {
        assert_eq!(untimed(true, || tracing::error!("x")), "<3>ERROR x\n");
        assert_eq!(untimed(true, || tracing::warn!("x")), "<4>WARN x\n");
        assert_eq!(untimed(true, || tracing::info!("x")), "<6>INFO x\n");
        assert_eq!(untimed(true, || tracing::debug!("x")), "<7>DEBUG x\n");
    }

    #[test]
    fn every_line_of_a_long_message_keeps_its_level() {
        let text = untimed(true, || {
            tracing::error!("config not reloaded:\nx.toml:3:1: unknown key `bogus`")
        });
        assert_eq!(
            text,
            "<3>ERROR config not reloaded:\n<3>ERROR   x.toml:3:1: unknown key `bogus`\n"
        );
        let text = untimed(false, || tracing::warn!("a\nb"));
        assert_eq!(text, "WARN a\nWARN   b\n");
    }

    #[test]
    fn journal_stream_must_name_this_very_stream() {
        assert!(names_stream("8:123456", 8, 123456));
        assert!(!names_stream("8:123456", 8, 654321));
        assert!(!names_stream("8:123456", 9, 123456));
        assert!(!names_stream("", 8, 123456));
        assert!(!names_stream("garbage", 8, 123456));
    }
}
