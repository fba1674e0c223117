//! The script side of the end-to-end bench: writes `LINES` lines of `SIZE` bytes to
//! stdout, each stamped with its send time (CLOCK_REALTIME, ns) so the watcher can
//! measure script-to-browser latency. With `RATE` lines/s each line is flushed on its
//! own (latency is real); with rate 0 it writes as fast as the pipe takes, in big chunks.
//! Waits until `START` (unix ms) first, so watchers can connect before output begins.
//! Usage: `linegen LINES RATE SIZE START`.

use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn now_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

fn arg(args: &[String], i: usize, default: u64) -> u64 {
    args.get(i).and_then(|a| a.parse().ok()).unwrap_or(default)
}

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let lines = arg(&args, 0, 100_000);
    let rate = arg(&args, 1, 0);
    let size = arg(&args, 2, 100).max(40) as usize;
    let start_ms = arg(&args, 3, 0) as u128;

    let wait = (start_ms * 1_000_000).saturating_sub(now_nanos());
    if wait > 0 {
        std::thread::sleep(Duration::from_nanos(wait as u64));
    }

    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, stdout.lock());
    let mut line = Vec::with_capacity(size + 1);
    let begin = now_nanos();
    for seq in 1..=lines {
        if rate > 0 {
            // Paced from the start time, not from the previous line: no drift.
            let due = begin + u128::from(seq - 1) * 1_000_000_000 / u128::from(rate);
            let now = now_nanos();
            if due > now {
                std::thread::sleep(Duration::from_nanos((due - now) as u64));
            }
        }
        line.clear();
        write!(line, "{seq:010} {:020} ", now_nanos())?;
        line.resize(size, b'x');
        line.push(b'\n');
        out.write_all(&line)?;
        if rate > 0 {
            out.flush()?;
        }
    }
    out.flush()
}
