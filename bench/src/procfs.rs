//! What /proc says about a process (CPU ticks, peak RSS, open-file limit) and the
//! machine, and raising our own RLIMIT_NOFILE.

use std::time::Instant;

use crate::Error;

/// Clock ticks per second of /proc's CPU times (USER_HZ, 100 on every Linux we run on).
pub(crate) const TICKS: f64 = 100.0;

/// Fields of /proc/PID/stat after the command name, as numbers.
pub(crate) fn proc_stat(pid: u32) -> Vec<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(") ").map(|(_, rest)| rest.to_owned()))
        .map(|rest| {
            rest.split_whitespace()
                .map(|f| f.parse().unwrap_or(0))
                .collect()
        })
        .unwrap_or_default()
}

/// CPU seconds of a process: its own user and system time, and its waited-for
/// children's (user + system).
#[derive(Clone, Copy, Default)]
pub(crate) struct ProcCpu {
    pub(crate) user: f64,
    pub(crate) system: f64,
    pub(crate) children: f64,
}

impl ProcCpu {
    pub(crate) fn of(pid: u32) -> Self {
        let f = proc_stat(pid);
        let at = |i: usize| f.get(i).copied().unwrap_or(0) as f64 / TICKS;
        ProcCpu {
            user: at(11),
            system: at(12),
            children: at(13) + at(14),
        }
    }

    pub(crate) fn own(&self) -> f64 {
        self.user + self.system
    }
}

/// CPU seconds both cores spent busy (anyone's), from /proc/stat.
pub(crate) fn machine_busy_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(cpu) = stat.lines().next() else {
        return 0.0;
    };
    let f: Vec<u64> = cpu
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    // user nice system idle iowait irq softirq steal
    let busy: u64 = [0, 1, 2, 5, 6, 7].iter().filter_map(|&i| f.get(i)).sum();
    busy as f64 / TICKS
}

/// Where the CPU went during a measurement.
#[derive(Clone, Copy)]
pub(crate) struct CpuSnapshot {
    pub(crate) gateway: ProcCpu,
    pub(crate) runner: ProcCpu,
    pub(crate) load_gen: ProcCpu,
    pub(crate) machine: f64,
    pub(crate) at: Instant,
}

impl CpuSnapshot {
    pub(crate) fn take(gateway: u32, runner: u32) -> Self {
        CpuSnapshot {
            gateway: ProcCpu::of(gateway),
            runner: ProcCpu::of(runner),
            load_gen: ProcCpu::of(std::process::id()),
            machine: machine_busy_secs(),
            at: Instant::now(),
        }
    }

    /// "cpu s over W s: …"; `scripts` are the runner's finished children (linegen and its
    /// shell), `others` everyone else on the machine (builds, tests).
    pub(crate) fn since(&self, before: &CpuSnapshot) -> String {
        let gateway = self.gateway.own() - before.gateway.own();
        let gateway_sys = self.gateway.system - before.gateway.system;
        let runner = self.runner.own() - before.runner.own();
        let scripts = self.runner.children - before.runner.children;
        let load_gen = self.load_gen.own() - before.load_gen.own();
        let load_gen_sys = self.load_gen.system - before.load_gen.system;
        let machine = self.machine - before.machine;
        let others = (machine - gateway - runner - scripts - load_gen).max(0.0);
        format!(
            "cpu s over {:.1} s: gateway {gateway:.1} (sys {gateway_sys:.1}), runner {runner:.1}, scripts {scripts:.1}, load gen {load_gen:.1} (sys {load_gen_sys:.1}), others {others:.1}",
            self.at.duration_since(before.at).as_secs_f64()
        )
    }
}

/// A /proc/PID/status field in KiB (VmRSS, VmHWM).
pub(crate) fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// The soft RLIMIT_NOFILE of another process, from /proc/PID/limits.
pub(crate) fn nofile_of(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/limits"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(u64::MAX)
}

/// Raises this process's soft RLIMIT_NOFILE to its hard limit (the children, hence the
/// gateway, inherit it); errors when even that is below `need`.
pub fn raise_nofile(need: u64) -> Result<u64, Error> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed to them.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    if limit.rlim_cur < limit.rlim_max {
        limit.rlim_cur = limit.rlim_max;
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
            return Err(std::io::Error::last_os_error().into());
        }
    }
    if limit.rlim_cur < need {
        return Err(format!(
            "RLIMIT_NOFILE hard limit {} < {need} descriptors needed (raise it: ulimit -Hn)",
            limit.rlim_cur
        )
        .into());
    }
    Ok(limit.rlim_cur)
}
