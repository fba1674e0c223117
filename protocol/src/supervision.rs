//! How a child tells the supervisor it is ready.
//!
//! The supervisor hands each child the write end of a pipe and names its descriptor in
//! `SHIPWATCH_READY_FD`. The child writes `READY=1\n` once it serves (the gateway: both
//! listeners bound; a runner: its signal handlers installed) and closes it. A pipe per
//! child needs no socket in `run_dir` and cannot be confused about who spoke.

/// Environment variable naming the readiness pipe's descriptor.
pub const READY_FD_ENV: &str = "SHIPWATCH_READY_FD";

/// Tells the supervisor this process is ready; does nothing when no supervisor started
/// it. Later calls do nothing.
pub fn notify_ready() -> std::io::Result<()> {
    use std::io::Write;
    use std::os::fd::FromRawFd;
    use std::sync::atomic::{AtomicBool, Ordering};

    static SENT: AtomicBool = AtomicBool::new(false);
    if SENT.swap(true, Ordering::SeqCst) {
        return Ok(());
    }
    let Some(fd) = std::env::var(READY_FD_ENV)
        .ok()
        .and_then(|v| v.parse::<i32>().ok())
    else {
        return Ok(());
    };
    // SAFETY: the supervisor opened this descriptor for us and nothing else in this
    // process knows it; SENT guarantees we take ownership of it once. Processes this one
    // spawns must not inherit the variable (remove it from their environment).
    let mut pipe = unsafe { std::fs::File::from_raw_fd(fd) };
    pipe.write_all(b"READY=1\n")
}
