//! The gateway's open-file limit. Every watcher, request and runner is a descriptor, and
//! systemd's default soft limit (1,024) runs out long before the hard one (524,288), so
//! the gateway lifts its soft limit to the hard one at start. Under the shipped unit
//! `SystemCallFilter=~@resources` refuses `setrlimit` with EPERM: `LimitNOFILE=` has set
//! the limit already, so that is said and nothing fails.

use nix::errno::Errno;
use nix::sys::resource::{Resource, getrlimit, setrlimit};

/// Raises the soft RLIMIT_NOFILE to the hard limit (at most `fs.nr_open`) and logs both.
pub fn raise_soft_limit() {
    let (soft, hard) = match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok(limits) => limits,
        Err(errno) => {
            let error = std::io::Error::from(errno);
            tracing::warn!(error = %shipwatch_protocol::Report(&error), "cannot read the open-file limit");
            return;
        }
    };
    // The kernel refuses a soft limit above fs.nr_open, which an unlimited hard one is.
    let target = hard.min(nr_open().unwrap_or(hard));
    if soft >= target {
        tracing::info!(
            soft,
            hard,
            "open-file limit: soft already at the hard limit"
        );
        return;
    }
    match setrlimit(Resource::RLIMIT_NOFILE, target, hard) {
        Ok(()) => tracing::info!(
            was = soft,
            soft = target,
            hard,
            "open-file limit: raised the soft limit to the hard limit"
        ),
        Err(Errno::EPERM) => tracing::info!(
            soft,
            hard,
            "open-file limit: setrlimit is not permitted here (a seccomp filter such as \
             SystemCallFilter=~@resources); set LimitNOFILE= to raise it"
        ),
        Err(errno) => {
            let error = std::io::Error::from(errno);
            tracing::warn!(
                soft,
                hard,
                error = %shipwatch_protocol::Report(&error),
                "open-file limit: cannot raise the soft limit"
            );
        }
    }
}

fn nr_open() -> Option<u64> {
    std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()?
        .trim()
        .parse()
        .ok()
}
