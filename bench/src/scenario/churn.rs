//! Churn: watchers join at random moments with random `after=`, some slow; each gets
//! exactly what it asked for.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use crate::procfs::CpuSnapshot;
use crate::report::{Row, thousands};
use crate::system::{System, linegen_script};
use crate::watcher::{Watcher, check_complete, join_watchers, watch};
use crate::{CONNECTING_AT_ONCE, Error, now_nanos, read_buffer};

/// xorshift64*: join times and `after` values that differ per run, reproducible by seed.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n.max(1)
    }
}

/// Runs the churn scenario (see the module doc); its rows, or why it failed.
pub async fn churn(
    watchers: usize,
    hosts: usize,
    per_host: u64,
    seed: Option<u64>,
) -> Result<Vec<Row>, Error> {
    let seed = seed.unwrap_or(now_nanos() as u64) | 1;
    let mut rng = Rng(seed);
    let mut system = System::start(hosts, &linegen_script(per_host, 0, true))?;
    let (gateway, runner) = system.pids()?;
    system.check_gateway_fds(gateway, 2 * watchers)?;
    let job = system.create_job()?;
    let url = system.url(job);
    let ready = Arc::new(AtomicUsize::new(0));
    let connecting = Arc::new(Semaphore::new(CONNECTING_AT_ONCE));
    let mut tasks = Vec::with_capacity(2 * watchers);
    let mut progress = Vec::with_capacity(2 * watchers);
    let spawn = |id: usize, after: u64, pause: Option<Duration>| {
        let p = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(watch(Watcher {
            id,
            url: url.clone(),
            after,
            hosts,
            read_buffer: read_buffer(),
            ready: ready.clone(),
            ready_on_frame: false,
            connecting: connecting.clone(),
            stall: Duration::from_secs(60),
            pause,
            hold: None,
            resume: false,
            progress: p.clone(),
        }));
        (task, p)
    };
    let slow = Some(Duration::from_millis(5));
    for id in 0..watchers {
        let (task, p) = spawn(id, 0, if id % 4 == 3 { slow } else { None });
        tasks.push(task);
        progress.push(p);
    }
    // Watcher 0 is a fast one from the start: how far the job has got.
    let sent = progress[0].clone();
    let deadline = Instant::now() + Duration::from_secs(60);
    while ready.load(Ordering::Relaxed) < watchers {
        if Instant::now() > deadline {
            return Err(system.fail("watchers not connected within 60 s"));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let before = CpuSnapshot::take(gateway, runner);
    let began = Instant::now();
    system.open_gate()?;
    // Joins spread over about the flood's length (some land after the job ended: a
    // replay of a finished job must be exact too).
    let mut kinds = [0u64; 3];
    let mut slow_ones: Vec<bool> = (0..watchers).map(|id| id % 4 == 3).collect();
    let mut afters = Vec::new();
    for n in 0..watchers {
        tokio::time::sleep(Duration::from_millis(rng.below(60))).await;
        let sent = sent.load(Ordering::Relaxed);
        let (after, pause) = match n % 3 {
            0 => (0, None),
            1 => (rng.below(sent + 1), None),
            _ => (rng.below(sent + 1), slow),
        };
        kinds[n % 3] += 1;
        slow_ones.push(pause.is_some());
        afters.push(after);
        let (task, p) = spawn(watchers + n, after, pause);
        tasks.push(task);
        progress.push(p);
    }
    let seen = match join_watchers(tasks, &progress, Duration::from_secs(240)).await {
        Ok(seen) => seen,
        Err(e) => return Err(system.fail(format!("seed {seed}: {e}"))),
    };
    let cpu = CpuSnapshot::take(gateway, runner).since(&before);
    for (id, s) in seen.iter().enumerate() {
        if let Err(e) = check_complete(s, id, per_host) {
            return Err(system.fail(format!("seed {seed}: {e}")));
        }
    }
    let events = seen.iter().map(|s| s.last_seq - s.after).sum::<u64>();
    // When each watcher got its last line, in seconds from the gate: slow readers must
    // not hold back the others (DESIGN §6).
    let gate = now_nanos() - (began.elapsed().as_nanos());
    let finished = |slow: bool| {
        let secs: Vec<f64> = seen
            .iter()
            .zip(&slow_ones)
            .filter(|(s, is_slow)| **is_slow == slow && s.last_line_at > 0)
            .map(|(s, _)| s.last_line_at.saturating_sub(gate) as f64 / 1e9)
            .collect();
        let max = secs.iter().copied().fold(0.0, f64::max);
        let min = secs.iter().copied().fold(f64::MAX, f64::min);
        format!("{min:.1}-{max:.1} s")
    };
    let reconnects: u64 = seen.iter().map(|s| s.reconnects).sum();
    Ok(vec![Row {
        figure: format!(
            "exactness under churn: {watchers} watchers from the start ({} slow), {watchers} joining during {} lines ({} after=0, {} after=N, {} after=N and slow)",
            watchers / 4,
            thousands((hosts as u64 * per_host) as f64),
            kinds[0],
            kinds[1],
            kinds[2]
        ),
        measured: format!(
            "all {} exact: {} events checked, none missing, doubled or out of order",
            2 * watchers,
            thousands(events as f64)
        ),
        target: "every event once, in order".into(),
        met: Some(true),
        notes: format!(
            "last line reached fast watchers at {} and slow ones at {} after the start; after= values {}..{}; {}; {}; {}; seed {seed}",
            finished(false),
            finished(true),
            afters.iter().min().unwrap_or(&0),
            afters.iter().max().unwrap_or(&0),
            match reconnects {
                0 => "no 4008 close".to_owned(),
                n => format!("{n} reconnects after 4008"),
            },
            cpu,
            system.gateway_notes(),
        ),
    }])
}
