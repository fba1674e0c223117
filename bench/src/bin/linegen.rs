//! The script side of the end-to-end bench (bench/e2e.sh): the task's script on every
//! host is `exec …/linegen --lines N --rate R --size 100 --start-file F`.
//!
//! Writes `--lines` lines of `--size` bytes (newline included) to stdout, each
//! `{seq:010} {unix_nanos:020} xxx…`: a per-host sequence number from 1 (so a watcher can
//! tell a missing or doubled line from the script's side) and its send time
//! (CLOCK_REALTIME, so a watcher in another process measures script-to-watcher latency).
//! With `--rate` (lines/s of this host) each line is flushed on its own, so its latency is
//! real; with rate 0 it writes as fast as the pipe takes, in 64 KiB chunks.
//! With `--start-file` it first waits until that file exists: the load generator creates
//! it once every watcher is connected, so all hosts start together and watchers see the
//! output live instead of as a replay.

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;

/// Stamped output lines for the end-to-end bench.
#[derive(Parser)]
struct Args {
    /// Lines to write.
    #[arg(long, default_value_t = 100_000)]
    lines: u64,
    /// Lines per second; 0 = as fast as possible.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Bytes per line including the newline (at least 33: sequence and stamp).
    #[arg(long, default_value_t = 100)]
    size: usize,
    /// Wait until this file exists before the first line.
    #[arg(long)]
    start_file: Option<PathBuf>,
    /// Give up waiting for the start file after this many seconds (exit 3).
    #[arg(long, default_value_t = 600)]
    wait_secs: u64,
}

fn now_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

fn main() -> std::io::Result<()> {
    let args = Args::parse();
    if let Some(file) = &args.start_file {
        let deadline = Instant::now() + Duration::from_secs(args.wait_secs);
        // A 1 ms poll: cheap for 20 hosts, and the hosts start within a millisecond of
        // each other without a second channel from the load generator to the script.
        while !file.exists() {
            if Instant::now() > deadline {
                eprintln!("linegen: {} did not appear", file.display());
                std::process::exit(3);
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, stdout.lock());
    let size = args.size.max(33);
    let mut line = Vec::with_capacity(size);
    let begin = now_nanos();
    for seq in 1..=args.lines {
        if args.rate > 0 {
            // Paced from the start, not from the previous line: no drift.
            let due = begin + u128::from(seq - 1) * 1_000_000_000 / u128::from(args.rate);
            let now = now_nanos();
            if due > now {
                std::thread::sleep(Duration::from_nanos((due - now) as u64));
            }
        }
        line.clear();
        write!(line, "{seq:010} {:020} ", now_nanos())?;
        line.resize(size - 1, b'x');
        line.push(b'\n');
        out.write_all(&line)?;
        if args.rate > 0 {
            out.flush()?;
        }
    }
    out.flush()
}
