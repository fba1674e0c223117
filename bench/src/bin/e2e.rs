//! End-to-end bench on the real system (issue 5's targets): `shipwatch up` — the real
//! supervisor, gateway and one runner — runs a `transport = "local"` task whose hosts run
//! `linegen`, and W watchers read the job over real WebSockets on loopback.
//!
//! Every watcher checks every event: the gateway's `seq` is 1.. without gap or
//! duplicate, every host's lines arrive exactly once and in order by linegen's own
//! sequence number, the job ends `succeeded` and the socket closes with 1000. Anything
//! else fails the scenario with the evidence (watcher, frame, excerpt) and keeps the temp
//! dir (up.log, the SQLite store). Latency is receipt time minus the send time the script
//! wrote into the line (both CLOCK_REALTIME).
//!
//! Usage (bench/e2e.sh runs these and prints the table):
//!   e2e flood [WATCHERS] [HOSTS] [LINES_PER_HOST]   hosts write as fast as they can
//!   e2e paced [WATCHERS] [RATE] [SECONDS]           one host at RATE lines/s
//!   e2e idle [WATCHERS]                             gateway RSS per idle watcher
//!   e2e replay [LINES] [HOSTS]                      a late joiner of a finished job
//!   e2e churn [WATCHERS] [HOSTS] [LINES_PER_HOST]   joins at random moments, slow readers
//!   e2e stalled [WATCHERS] [HOSTS] [LINES_PER_HOST] watchers that read nothing, then all
//!   e2e crash [WATCHERS] [HOSTS] [LINES_PER_HOST] [KILLS]  gateway SIGKILLed mid-flood
//!   e2e store [MAX_LOG_BYTES] [HOSTS] [LINES_PER_HOST]  disk taken by a capped flood
//!   e2e ssh [HOSTS] [WAVES] [SECONDS]               a rolling deploy over real sshd
//! Options before or after the scenario: `--read-buffer BYTES` (the client's
//! tungstenite read buffer), `--gateway-nofile N` (start the system with that soft
//! RLIMIT_NOFILE, as systemd would without LimitNOFILE=).
//! Each prints markdown rows `| figure | measured | target | met | notes |`; exit 1 when
//! the scenario could not run or a watcher saw a wrong stream. Needs
//! target/release/{shipwatch,linegen} beside this binary. A watcher closed with 4008
//! reconnects with `after=` its last seq, as DESIGN §6 tells clients to.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use shipwatch_bench::procfs::raise_nofile;
use shipwatch_bench::{Error, GATEWAY_NOFILE, READ_BUFFER, SCENARIO_LIMIT};

use shipwatch_bench::scenario;

/// End-to-end load generator: the real `shipwatch up`, real WebSocket watchers.
#[derive(Parser)]
struct Cli {
    /// Start `shipwatch up` (hence the gateway) with this soft RLIMIT_NOFILE, e.g. 1024 as
    /// under systemd without LimitNOFILE=, and skip the check that it is enough.
    #[arg(long, global = true)]
    gateway_nofile: Option<u64>,
    /// tungstenite's read buffer per watcher, in bytes. It is zero-filled up to this size
    /// before every read(2), so the 128 KiB default costs the load generator a 128 KiB
    /// memset per frame: at 1,000 watchers × 100 frames/s that alone took most of a core.
    #[arg(long, global = true, default_value_t = 16 * 1024)]
    read_buffer: usize,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand)]
enum Scenario {
    /// Every host writes its lines as fast as it can; lines/s at the slowest watcher.
    Flood {
        #[arg(default_value_t = 1)]
        watchers: usize,
        #[arg(default_value_t = 20)]
        hosts: usize,
        #[arg(default_value_t = 50_000)]
        lines_per_host: u64,
    },
    /// One host writes RATE lines/s, each flushed on its own; script-to-watcher latency.
    Paced {
        #[arg(default_value_t = 1)]
        watchers: usize,
        #[arg(default_value_t = 1_000)]
        rate: u64,
        #[arg(default_value_t = 10)]
        seconds: u64,
    },
    /// WATCHERS connect to a running job that prints nothing: gateway RSS per watcher.
    Idle {
        #[arg(default_value_t = 10_000)]
        watchers: usize,
    },
    /// Exactness under churn: WATCHERS watch a flood from the start (every fourth a slow
    /// reader), and as many join at random moments, with after=0, after=a seq already
    /// sent, or after=… and slow; every one must get exactly what it asked for.
    Churn {
        #[arg(default_value_t = 100)]
        watchers: usize,
        #[arg(default_value_t = 20)]
        hosts: usize,
        #[arg(default_value_t = 25_000)]
        lines_per_host: u64,
        /// Seed of the join times and `after` values (default: from the clock).
        #[arg(long)]
        seed: Option<u64>,
    },
    /// WATCHERS connect and read nothing while a flood runs beside one watcher that
    /// reads; then they read and must get every event.
    Stalled {
        #[arg(default_value_t = 4)]
        watchers: usize,
        #[arg(default_value_t = 20)]
        hosts: usize,
        #[arg(default_value_t = 50_000)]
        lines_per_host: u64,
    },
    /// The gateway is killed KILLS times during a flood; every watcher must still get
    /// every line exactly once.
    Crash {
        #[arg(default_value_t = 100)]
        watchers: usize,
        #[arg(default_value_t = 20)]
        hosts: usize,
        #[arg(default_value_t = 25_000)]
        lines_per_host: u64,
        #[arg(default_value_t = 2)]
        kills: u64,
    },
    /// A flood of 27-byte lines capped at MAX_LOG_BYTES: database and WAL on disk.
    Store {
        #[arg(default_value_t = 10_000_000)]
        max_log_bytes: u64,
        #[arg(default_value_t = 20)]
        hosts: usize,
        #[arg(default_value_t = 25_000)]
        lines_per_host: u64,
    },
    /// A rolling deploy of HOSTS hosts over the real sshd fleet in WAVES waves, its
    /// script SECONDS long, run twice: wall time and per-host overhead beyond the script.
    Ssh {
        #[arg(default_value_t = 20)]
        hosts: usize,
        #[arg(default_value_t = 5)]
        waves: usize,
        #[arg(default_value_t = 0.5)]
        seconds: f64,
    },
    /// A finished job of LINES lines, then one late watcher with after=0.
    Replay {
        #[arg(default_value_t = 1_000_000)]
        lines: u64,
        #[arg(default_value_t = 20)]
        hosts: usize,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let _ = READ_BUFFER.set(cli.read_buffer);
    if let Some(soft) = cli.gateway_nofile {
        let _ = GATEWAY_NOFILE.set(soft);
    }
    let need = match cli.scenario {
        Scenario::Idle { watchers }
        | Scenario::Flood { watchers, .. }
        | Scenario::Paced { watchers, .. } => watchers as u64 + 256,
        Scenario::Churn { watchers, .. } => 2 * watchers as u64 + 256,
        Scenario::Crash { watchers, .. } => watchers as u64 + 256,
        Scenario::Replay { .. }
        | Scenario::Stalled { .. }
        | Scenario::Store { .. }
        | Scenario::Ssh { .. } => 256,
    };
    let runtime = match raise_nofile(need).and_then(|_| {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(Error::from)
    }) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("e2e: {e}");
            return ExitCode::FAILURE;
        }
    };
    let name = match &cli.scenario {
        Scenario::Flood { watchers, .. } => format!("flood, {watchers} watcher(s)"),
        Scenario::Paced { watchers, rate, .. } => {
            format!("paced, {watchers} watcher(s) at {rate} lines/s")
        }
        Scenario::Idle { watchers } => format!("idle, {watchers} watchers"),
        Scenario::Churn { watchers, .. } => format!("churn, 2 × {watchers} watchers"),
        Scenario::Replay { lines, .. } => format!("replay of {lines} lines"),
        Scenario::Store { max_log_bytes, .. } => format!("store size at {max_log_bytes} bytes"),
        Scenario::Ssh { hosts, waves, .. } => format!("ssh deploy, {hosts} hosts in {waves} waves"),
        Scenario::Stalled { watchers, .. } => format!("{watchers} stalled watchers"),
        Scenario::Crash {
            watchers, kills, ..
        } => {
            format!("gateway killed {kills} times, {watchers} watchers")
        }
    };
    // Dropping a scenario's future stops its system, so a hung one still cleans up.
    let result = runtime.block_on(async {
        let scenario = async {
            match cli.scenario {
                Scenario::Flood {
                    watchers,
                    hosts,
                    lines_per_host,
                } => scenario::flood(watchers, hosts, lines_per_host).await,
                Scenario::Paced {
                    watchers,
                    rate,
                    seconds,
                } => scenario::paced(watchers, rate, seconds).await,
                Scenario::Idle { watchers } => scenario::idle(watchers).await,
                Scenario::Churn {
                    watchers,
                    hosts,
                    lines_per_host,
                    seed,
                } => scenario::churn(watchers, hosts, lines_per_host, seed).await,
                Scenario::Replay { lines, hosts } => scenario::replay(lines, hosts).await,
                Scenario::Store {
                    max_log_bytes,
                    hosts,
                    lines_per_host,
                } => scenario::store_size(max_log_bytes, hosts, lines_per_host).await,
                Scenario::Ssh {
                    hosts,
                    waves,
                    seconds,
                } => scenario::ssh(hosts, waves, seconds).await,
                Scenario::Crash {
                    watchers,
                    hosts,
                    lines_per_host,
                    kills,
                } => scenario::crash(watchers, hosts, lines_per_host, kills).await,
                Scenario::Stalled {
                    watchers,
                    hosts,
                    lines_per_host,
                } => scenario::stalled(watchers, hosts, lines_per_host).await,
            }
        };
        tokio::time::timeout(SCENARIO_LIMIT, scenario)
            .await
            .unwrap_or_else(|_| Err(format!("not done within {SCENARIO_LIMIT:?}").into()))
    });
    match result {
        Ok(rows) => {
            for row in rows {
                row.print();
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("| {name} | FAILED (see stderr) | | **no** | |");
            eprintln!("e2e {name}: FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}
