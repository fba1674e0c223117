//! The end-to-end bench as a library: the system under test (`system`), what /proc says
//! (`procfs`), a latency `histogram`, the checking WebSocket `watcher`, one module per
//! `scenario`, and the `report` rows. `src/bin/e2e.rs` parses the command line and runs
//! one scenario.

pub mod histogram;
pub mod procfs;
pub mod report;
pub mod scan;
pub mod scenario;
pub mod system;
pub mod watcher;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Any failure of a scenario, with what went wrong in its message.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// `--read-buffer`, set once from the command line.
pub static READ_BUFFER: std::sync::OnceLock<usize> = std::sync::OnceLock::new();

/// `--read-buffer`, or its default.
pub(crate) fn read_buffer() -> usize {
    READ_BUFFER.get().copied().unwrap_or(16 * 1024)
}

/// `--gateway-nofile`, set once from the command line.
pub static GATEWAY_NOFILE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();

/// No scenario runs longer than this (bench/e2e.sh as a whole stays well under 10 min).
pub const SCENARIO_LIMIT: Duration = Duration::from_secs(300);

/// Watchers connecting at once; more overflows the gateway's accept backlog and the
/// bench then measures SYN retransmits instead of the gateway.
pub(crate) const CONNECTING_AT_ONCE: usize = 256;

/// CLOCK_REALTIME in nanoseconds, as linegen stamps its lines.
pub fn now_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}
