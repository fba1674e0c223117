//! How a job's events look in a terminal or a pipe: `HH:MM:SS host | text` lines (stderr
//! as `host !| text`, which survives `NO_COLOR`), a stable colour per host on a
//! terminal, and a status line below the log that is cleared before every write so it
//! never shares a line with log text.

use std::collections::HashMap;
use std::io::Write;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use shipwatch_protocol::{Event, EventBody, HostState, Stream};

use shipwatch_protocol::api::JobView;

/// What the log is printed as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// `HH:MM:SS host | text`.
    Text,
    /// Every event's JSON, one a line, exactly as the server sent it.
    Ndjson,
}

/// What the time column shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timestamps {
    /// The wall-clock time of the line, UTC.
    Absolute,
    /// Time since the job started, `+MM:SS.mmm`.
    Relative,
}

/// How the terminal is used, decided once from the environment.
#[derive(Debug, Clone, Copy)]
pub struct Look {
    pub colour: bool,
    pub status_line: bool,
}

impl Look {
    /// Colour and a status line only when stdout is a terminal and `NO_COLOR` is unset.
    pub fn detect() -> Look {
        use std::io::IsTerminal;
        let tty = std::io::stdout().is_terminal();
        let no_colour = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Look {
            colour: tty && !no_colour,
            status_line: tty && !no_colour,
        }
    }
}

/// Prints a followed job's events and keeps the status line true.
pub struct Printer {
    out: std::io::BufWriter<std::io::Stdout>,
    output: Output,
    timestamps: Timestamps,
    look: Look,
    /// Milliseconds since the epoch the relative clock counts from.
    origin_ms: i64,
    /// Host names are padded to this, so the text column lines up.
    width: usize,
    board: Board,
    bar: Option<ProgressBar>,
    buf: Vec<u8>,
}

impl Printer {
    /// A printer for `job` (shown with its hosts) starting with `after` events seen.
    pub fn new(job: &JobView, output: Output, timestamps: Timestamps, look: Look) -> Printer {
        let board = Board::new(job);
        let width = board.hosts.keys().map(|h| h.len()).max().unwrap_or(0);
        let origin_ms = job
            .started_at
            .as_deref()
            .or(Some(job.created_at.as_str()))
            .and_then(|t| shipwatch_protocol::Timestamp::parse_rfc3339(t).ok())
            .map_or(0, |t| t.as_millis());
        let bar = (look.status_line && output == Output::Text).then(|| {
            let mut bar =
                ProgressBar::with_draw_target(None, ProgressDrawTarget::stdout_with_hz(8));
            let style = ProgressStyle::with_template("{spinner} {msg} · {elapsed_precise}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner());
            bar.set_style(style);
            let since_start = shipwatch_protocol::Timestamp::now().as_millis() - origin_ms;
            if origin_ms > 0 && since_start > 0 {
                bar = bar.with_elapsed(Duration::from_millis(since_start as u64));
            }
            bar.enable_steady_tick(Duration::from_millis(250));
            bar
        });
        let printer = Printer {
            out: std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout()),
            output,
            timestamps,
            look,
            origin_ms,
            width,
            board,
            bar,
            buf: Vec::with_capacity(64 * 1024),
        };
        printer.update_bar(job.id);
        printer
    }

    /// Prints one frame's events and updates the status line.
    pub fn events(&mut self, job: u64, events: &[Event]) -> std::io::Result<()> {
        self.buf.clear();
        for event in events {
            match self.output {
                Output::Ndjson => {
                    event.write_json(&mut self.buf);
                    self.buf.push(b'\n');
                }
                Output::Text => self.text(event),
            }
            if let EventBody::Host {
                host,
                state,
                exit_code,
            } = &event.body
            {
                self.board.set(host, *state, *exit_code);
            }
        }
        if !self.buf.is_empty() {
            let (out, buf) = (&mut self.out, &self.buf);
            let mut write = || out.write_all(buf).and_then(|()| out.flush());
            match &self.bar {
                Some(bar) => bar.suspend(write)?,
                None => write()?,
            }
        }
        self.update_bar(job);
        Ok(())
    }

    fn text(&mut self, event: &Event) {
        let (host, stream, text) = match &event.body {
            EventBody::Line { host, stream, text } => (host.as_str(), *stream, text.as_str()),
            EventBody::Notice { text } => {
                self.time(event.ts.as_millis());
                self.buf.extend_from_slice(b" -- ");
                self.buf.extend_from_slice(text.as_bytes());
                self.buf.push(b'\n');
                return;
            }
            _ => return,
        };
        self.time(event.ts.as_millis());
        self.buf.push(b' ');
        if self.look.colour {
            let _ = write!(
                self.buf,
                "\x1b[{}m{host:<w$}\x1b[0m",
                colour_of(host),
                w = self.width
            );
        } else {
            let _ = write!(self.buf, "{host:<w$}", w = self.width);
        }
        match (stream, self.look.colour) {
            (Stream::Stdout, _) => self.buf.extend_from_slice(b" | "),
            (Stream::Stderr, false) => self.buf.extend_from_slice(b" !| "),
            (Stream::Stderr, true) => self.buf.extend_from_slice(b" \x1b[1;31m!|\x1b[0m "),
        }
        self.buf.extend_from_slice(text.as_bytes());
        self.buf.push(b'\n');
    }

    fn time(&mut self, ms: i64) {
        if self.look.colour {
            self.buf.extend_from_slice(b"\x1b[2m");
        }
        let _ = match self.timestamps {
            Timestamps::Absolute => {
                let secs = ms.div_euclid(1000).rem_euclid(86_400);
                write!(
                    self.buf,
                    "{:02}:{:02}:{:02}",
                    secs / 3600,
                    secs / 60 % 60,
                    secs % 60
                )
            }
            Timestamps::Relative => {
                let d = (ms - self.origin_ms).max(0);
                write!(
                    self.buf,
                    "+{:02}:{:02}.{:03}",
                    d / 60_000,
                    d / 1000 % 60,
                    d % 1000
                )
            }
        };
        if self.look.colour {
            self.buf.extend_from_slice(b"\x1b[0m");
        }
    }

    fn update_bar(&self, job: u64) {
        if let Some(bar) = &self.bar {
            bar.set_message(format!("job {job} · {}", self.board.status()));
        }
    }

    /// Writes `bytes` as they are: the server's own NDJSON, passed through.
    pub fn raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.out.write_all(bytes)
    }

    /// Removes the status line, leaving only log lines on the terminal.
    pub fn finish(&mut self) -> std::io::Result<()> {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        self.out.flush()
    }

    /// Runs `f` (a prompt) with the status line out of the way.
    pub fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        match &self.bar {
            Some(bar) => bar.suspend(f),
            None => f(),
        }
    }
}

/// A host's colour: the same host gets the same one in every run and on every machine.
fn colour_of(host: &str) -> u8 {
    const COLOURS: [u8; 12] = [31, 32, 33, 34, 35, 36, 91, 92, 93, 94, 95, 96];
    // FNV-1a: std's hasher may change between Rust releases, this never does.
    let hash = host.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    COLOURS[(hash % COLOURS.len() as u64) as usize]
}

/// Every host's state as the events tell it, for the status line.
struct Board {
    hosts: HashMap<String, (HostState, u32)>,
    waves: usize,
}

impl Board {
    fn new(job: &JobView) -> Board {
        let hosts = job
            .hosts
            .iter()
            .flatten()
            .map(|h| (h.host.clone(), (h.state, h.wave)))
            .collect();
        let waves = job.spec.as_ref().map_or(0, |s| s.waves.len());
        Board { hosts, waves }
    }

    fn set(&mut self, host: &str, state: HostState, _exit_code: Option<i32>) {
        if let Some(entry) = self.hosts.get_mut(host) {
            entry.0 = state;
        }
    }

    fn status(&self) -> String {
        let count = |f: fn(HostState) -> bool| self.hosts.values().filter(|(s, _)| f(*s)).count();
        let ok = count(|s| s == HostState::Ok);
        let failed = count(HostState::is_failure);
        let running = count(|s| s == HostState::Running);
        let wave = self
            .hosts
            .values()
            .filter(|(s, _)| *s != HostState::Pending)
            .map(|(_, w)| *w)
            .max()
            .unwrap_or(0);
        let mut text = format!(
            "{ok} ok · {failed} failed · {running} running of {}",
            self.hosts.len()
        );
        if self.waves > 0 {
            text.push_str(&format!(" · wave {} of {}", wave.max(1), self.waves));
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_keeps_its_colour_and_hosts_spread_over_colours() {
        assert_eq!(colour_of("web-01"), colour_of("web-01"));
        let distinct: std::collections::HashSet<u8> = (1..=20)
            .map(|i| colour_of(&format!("web-{i:02}")))
            .collect();
        assert!(distinct.len() >= 6, "{distinct:?}");
    }
}
