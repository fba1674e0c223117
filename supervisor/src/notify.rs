//! sd_notify(3) messages to systemd that never block the supervisor's loop.
//!
//! A notify datagram goes into the receiver's queue; when that is full (systemd busy, or
//! a `NOTIFY_SOCKET` nobody drains) a blocking send would stop the loop that restarts
//! children. So sends are non-blocking: a message that cannot be queued is dropped and
//! counted, and the first drop of a burst is logged. systemd's state is only ever a
//! little stale (the next STATUS= or WATCHDOG=1 says it again; a dropped READY=1 is sent
//! again on the next event), never our children's.

use std::fmt::Write;
use std::io;
use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use sd_notify::NotifyState;

/// Messages dropped because the notify socket's queue was full, since start.
static DROPPED: AtomicU64 = AtomicU64::new(0);
/// A burst of drops is under way (logged at its start, and when it ends).
static DROPPING: AtomicBool = AtomicBool::new(false);

/// Sends `states` to `$NOTIFY_SOCKET` if set, without ever waiting. False when the
/// message was dropped, so a state systemd waits for (READY=1) can be sent again.
pub(crate) fn notify(states: &[NotifyState<'_>]) -> bool {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return true;
    };
    let mut message = String::new();
    for state in states {
        let _ = writeln!(message, "{state}");
    }
    match send(&path, message.as_bytes()) {
        Ok(()) => {
            if DROPPING.swap(false, Ordering::Relaxed) {
                tracing::info!(
                    dropped = DROPPED.load(Ordering::Relaxed),
                    "the notify socket takes messages again"
                );
            }
            true
        }
        Err(error) => {
            let dropped = DROPPED.fetch_add(1, Ordering::Relaxed) + 1;
            if !DROPPING.swap(true, Ordering::Relaxed) {
                let error = shipwatch_protocol::Report(&error);
                tracing::warn!(
                    %error,
                    dropped,
                    "cannot queue an sd_notify message: dropping it (and any more until the socket takes them) rather than wait"
                );
            }
            false
        }
    }
}

fn send(path: &std::ffi::OsStr, message: &[u8]) -> io::Result<()> {
    let socket = UnixDatagram::unbound()?;
    socket.set_nonblocking(true)?;
    let bytes = std::os::unix::ffi::OsStrExt::as_bytes(path);
    // sd_notify(3): a leading '@' names an abstract socket.
    if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        let address = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
        socket.connect_addr(&address)?;
    } else {
        socket.connect(path)?;
    }
    let sent = socket.send(message)?;
    if sent == message.len() {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::WriteZero,
            "incomplete notify datagram",
        ))
    }
}
