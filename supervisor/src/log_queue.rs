//! The supervisor's stderr, written by a thread of its own, so a log line never waits
//! for whoever reads it. Under systemd stderr is the journal's stream socket: when
//! journald falls behind, the socket fills and a plain write blocks, and with it the loop
//! that restarts children (its own lines and every line it relays from them).
//!
//! A line is written at once when nothing waits before it and stderr can take it without
//! blocking (poll(2) says so; a line of up to PIPE_BUF bytes then goes in whole), so in
//! the usual case lines appear as they are logged, in order. Otherwise it waits in a
//! bounded queue for the writer thread; when that is full it is dropped and counted, and
//! the writer says how many before the next line it writes. [`Flush`] gives the queue a
//! moment to drain when the supervisor exits.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

/// Lines that may wait for stderr; a burst of relayed child output fits.
const QUEUED_LINES: usize = 16 * 1024;
/// How long an exiting supervisor waits for its last lines to be written.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(1);

enum Message {
    Line(Vec<u8>),
    /// Everything before this is written: answer on the sender.
    Flush(Sender<()>),
}

/// The `MakeWriter` of the queued stderr: each event is one line (or one message of
/// several lines) handed to the writer thread.
#[derive(Clone)]
pub(crate) struct QueuedStderr {
    tx: SyncSender<Message>,
    dropped: Arc<AtomicU64>,
    /// Lines queued and not yet written: while any, a new line queues behind them.
    waiting: Arc<AtomicU64>,
    /// Taken by whoever hands a line on (written at once or queued), never by the writer
    /// thread, which may block in a write for as long as stderr is stuck.
    order: Arc<Mutex<()>>,
}

/// Waits (at most [`FLUSH_TIMEOUT`]) for the queued lines when dropped.
#[must_use = "dropping it at once flushes at once; keep it until the process ends"]
pub struct Flush {
    tx: SyncSender<Message>,
}

/// Starts the writer thread.
pub(crate) fn start() -> std::io::Result<(QueuedStderr, Flush)> {
    let (tx, rx) = std::sync::mpsc::sync_channel(QUEUED_LINES);
    let dropped = Arc::new(AtomicU64::new(0));
    let waiting = Arc::new(AtomicU64::new(0));
    let (counted, queued) = (dropped.clone(), waiting.clone());
    std::thread::Builder::new()
        .name("stderr".into())
        .spawn(move || write_lines(rx, &counted, &queued))?;
    Ok((
        QueuedStderr {
            tx: tx.clone(),
            dropped,
            waiting,
            order: Arc::default(),
        },
        Flush { tx },
    ))
}

fn write_lines(rx: Receiver<Message>, dropped: &AtomicU64, waiting: &AtomicU64) {
    for message in rx {
        match message {
            Message::Line(line) => {
                let lost = dropped.swap(0, Ordering::Relaxed);
                if lost > 0 {
                    let note = format!(
                        "WARN {lost} log lines dropped: stderr (the journal) did not take them in time\n"
                    );
                    write_all(note.as_bytes());
                }
                write_all(&line);
                waiting.fetch_sub(1, Ordering::Relaxed);
            }
            Message::Flush(done) => {
                let _ = done.send(());
            }
        }
    }
}

impl Drop for Flush {
    fn drop(&mut self) {
        let (done, written) = std::sync::mpsc::channel();
        // A full queue means stderr is stuck: nothing to wait for.
        if self.tx.try_send(Message::Flush(done)).is_ok() {
            let _ = written.recv_timeout(FLUSH_TIMEOUT);
        }
    }
}

/// One event's bytes, queued when the formatter is done with it.
pub(crate) struct QueuedLine<'a> {
    line: Vec<u8>,
    queue: &'a QueuedStderr,
}

impl Write for QueuedLine<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.line.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for QueuedLine<'_> {
    fn drop(&mut self) {
        if self.line.is_empty() {
            return;
        }
        let line = std::mem::take(&mut self.line);
        let queue = self.queue;
        // A line never overtakes a queued one: with none waiting the writer is idle.
        let _order = queue
            .order
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if queue.waiting.load(Ordering::Relaxed) == 0 && takes_without_blocking(line.len()) {
            write_all(&line);
            return;
        }
        queue.waiting.fetch_add(1, Ordering::Relaxed);
        match queue.tx.try_send(Message::Line(line)) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                queue.waiting.fetch_sub(1, Ordering::Relaxed);
                queue.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Writes to fd 2 itself: std's `Stderr` lock would be held by a writer blocked in a
/// write, and everyone else would wait for it.
fn write_all(mut bytes: &[u8]) {
    let stderr = std::io::stderr();
    while !bytes.is_empty() {
        match nix::unistd::write(&stderr, bytes) {
            Ok(0) => return,
            Ok(n) => bytes = &bytes[n..],
            Err(nix::errno::Errno::EINTR) => {}
            Err(_) => return,
        }
    }
}

/// Whether stderr takes `len` bytes now: poll(2) says writable, which for a pipe means
/// room for PIPE_BUF bytes written whole (a socket or file: room for some, so only short
/// lines go this way).
fn takes_without_blocking(len: usize) -> bool {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    const PIPE_BUF: usize = 4096;
    if len > PIPE_BUF {
        return false;
    }
    let stderr = std::io::stderr();
    let mut fds = [PollFd::new(
        std::os::fd::AsFd::as_fd(&stderr),
        PollFlags::POLLOUT,
    )];
    matches!(poll(&mut fds, PollTimeout::ZERO), Ok(1))
        && fds[0]
            .revents()
            .is_some_and(|r| r.contains(PollFlags::POLLOUT))
}

impl<'a> MakeWriter<'a> for QueuedStderr {
    type Writer = QueuedLine<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        QueuedLine {
            line: Vec::with_capacity(128),
            queue: self,
        }
    }
}
