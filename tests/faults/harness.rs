//! The fault suite's run: a 20-host rolling deploy over the real sshd fleet, 100 checking
//! watchers, and the accounting of one table row (events, final states, leaks).
//!
//! Every scenario takes [`serial`] first: they run one at a time, so the processes and
//! sshd sessions left after one are its own, and its timing does not depend on the others.
//! Every local process of a run carries [`TOKEN_ENV`] in its environment (inherited from
//! `shipwatch up`: gateway, runners, ssh clients and masters) and every remote script
//! sleeps for the run's own odd duration ([`Run::nap`]), which is how leaks are found.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::task::JoinHandle;

use crate::e2e_support::*;
use crate::fleet::Fleet;
use crate::support::*;

/// Hosts in every deploy.
pub const HOSTS: usize = 20;
/// Watchers that check every event of the deploy.
pub const CHECKERS: usize = 100;
/// Set on `shipwatch up`: every local process of the run inherits it.
pub const TOKEN_ENV: &str = "SHIPWATCH_FAULTS_RUN";

static SERIAL: Mutex<()> = Mutex::new(());

/// One scenario at a time (a failed one poisons nothing for the next).
pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// How big the deploy is: `SHIPWATCH_FAULTS=full` for the issue's figures, otherwise sized
/// for CI (2 cores, the whole suite in ~2-3 min).
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub full: bool,
    pub bursts: usize,
    pub out_per_burst: usize,
    pub err_per_burst: usize,
    /// Seconds between bursts.
    pub nap: &'static str,
    /// Hosts per wave.
    pub batch: usize,
}

impl Shape {
    pub fn get() -> Shape {
        if std::env::var("SHIPWATCH_FAULTS").is_ok_and(|v| v == "full") {
            Shape {
                full: true,
                bursts: 30,
                out_per_burst: 60,
                err_per_burst: 6,
                nap: "0.2",
                batch: 10,
            }
        } else {
            Shape {
                full: false,
                bursts: 6,
                out_per_burst: 10,
                err_per_burst: 1,
                nap: "0.25",
                batch: 10,
            }
        }
    }

    pub fn stdout_lines(&self) -> usize {
        self.bursts * self.out_per_burst
    }

    pub fn stderr_lines(&self) -> usize {
        self.bursts * self.err_per_burst
    }

    /// The whole log of a deploy where every host ran to its end.
    pub fn events(&self) -> usize {
        HOSTS * (self.stdout_lines() + self.stderr_lines() + 2) + 2
    }
}

/// The deploy task (`deploy`, lines `o N` + `$PAD` / `e N`) and a `quick` one, over ssh.
pub fn tasks(shape: &Shape, timeout_secs: u64, max_failures: usize) -> String {
    format!(
        r#"[[tasks]]
name = "deploy"
hosts = ["fleet"]
transport = "ssh"
batch = {batch}
timeout_secs = {timeout_secs}
max_failures = {max_failures}
script = '''
o=0
e=0
for b in $(seq 1 {bursts}); do
  for i in $(seq 1 {out}); do o=$((o+1)); echo "o $o$PAD"; done
  for i in $(seq 1 {err}); do e=$((e+1)); echo "e $e" >&2; done
  sleep "$NAP"
  if [ "$b" = {gate_at} ] && [ -n "$GATE" ]; then
    while [ ! -e "$GATE" ]; do sleep 0.05; done
  fi
done
'''

[[tasks.params]]
name = "NAP"
pattern = "^[0-9.]+$"
default = "0.2"

[[tasks.params]]
name = "PAD"
pattern = "^x*$"
default = ""

# Hosts halfway through wait until this file exists (a fault placed mid-script).
[[tasks.params]]
name = "GATE"
pattern = "^[A-Za-z0-9/._-]*$"
default = ""

[[tasks]]
name = "quick"
hosts = ["fleet"]
transport = "ssh"
batch = {HOSTS}
script = 'echo "quick on $SHIPWATCH_HOST"'
"#,
        batch = shape.batch,
        bursts = shape.bursts,
        out = shape.out_per_burst,
        err = shape.err_per_burst,
        gate_at = shape.bursts / 2,
    )
}

/// One scenario's system: its config dir, the fleet, the supervisor, and what it must
/// leave behind as it found it.
pub struct Run {
    pub name: &'static str,
    pub shape: Shape,
    pub setup: Setup,
    pub fleet: &'static Fleet,
    /// `name=127.0.0.1:port` of each of the deploy's hosts.
    pub hosts: Vec<String>,
    /// Extra known_hosts lines (hosts outside the fleet).
    pub known: String,
    /// This run's value of [`TOKEN_ENV`].
    pub token: String,
    /// The deploy's `NAP`: the burst pause with this run's own digits, so a remote
    /// `sleep` of this run is found by its command line.
    pub nap: String,
    pub up: Option<Guard>,
    /// Where the checkers live.
    pub rt: tokio::runtime::Runtime,
    /// Where churning watchers live, apart from the checkers: 100 checkers decoding a
    /// replay kept a shared runtime's threads so busy that a churner's request went out
    /// more than the gateway's 5 s header deadline after its connect, and the gateway
    /// closed it as the slow client it looked like ("Handshake not finished", issue 12).
    pub clients: tokio::runtime::Runtime,
    /// Open descriptors per process name and kind once everything ran, before the job.
    baseline_fds: BTreeMap<String, BTreeMap<String, usize>>,
    pub failures: Vec<String>,
}

impl Run {
    /// A run over the fleet's first 20 hosts; `index` (1-8) makes its markers unique.
    pub fn new(name: &'static str, index: u32) -> Run {
        let fleet = crate::fleet::fleet().expect("the sshd fleet (install openssh-server)");
        let shape = Shape::get();
        let hosts = host_names(HOSTS)
            .into_iter()
            .zip(&fleet.ports)
            .map(|(name, port)| format!("{name}=127.0.0.1:{port}"))
            .collect();
        let unique = format!("{:07}{index}", std::process::id());
        Run {
            name,
            shape,
            setup: Setup::new(""),
            fleet,
            hosts,
            known: String::new(),
            token: format!("faults-{unique}"),
            nap: format!("{}000{unique}", shape.nap),
            up: None,
            rt: runtime(),
            clients: runtime(),
            baseline_fds: BTreeMap::new(),
            failures: Vec::new(),
        }
    }

    /// A run whose `shipwatch up` serves the deploy tasks (120 s per host, no failure
    /// tolerated) with `runners` runners, all running; their status.
    pub fn ready(name: &'static str, index: u32, runners: u32) -> (Run, Status) {
        let mut run = Run::new(name, index);
        let tasks = tasks(&run.shape, 120, 0);
        run.start(&format!("runners = {runners}"), &tasks, &[]);
        let status = run.wait_ready(runners);
        (run, status)
    }

    pub fn port(&self) -> u16 {
        self.setup.port
    }

    /// The whole config: `[supervisor]` lines, the fleet's ssh settings, the hosts, and
    /// `tasks`.
    pub fn config(&self, supervisor: &str, tasks: &str) -> String {
        let known_hosts = self.setup.dir.path().join("known_hosts");
        let fleet_known = std::fs::read_to_string(&self.fleet.known_hosts).unwrap_or_default();
        std::fs::write(&known_hosts, format!("{fleet_known}{}", self.known))
            .expect("write known_hosts");
        let hosts = self
            .hosts
            .iter()
            .map(|h| format!("\"{h}\""))
            .collect::<Vec<_>>()
            .join(", ");
        self.setup.config_with(
            supervisor,
            &format!(
                r#"[auth]
anonymous = "admin"

{ssh}connect_timeout_secs = 5
# How an operator finds a host whose network vanished: 3 unanswered keepalives.
options = ["ServerAliveInterval=1", "ServerAliveCountMax=3"]

[hosts]
fleet = [{hosts}]

{tasks}
"#,
                ssh = self.fleet.ssh_section(&known_hosts),
            ),
        )
    }

    /// Writes the config and starts `shipwatch up` with the run's token.
    pub fn start(&mut self, supervisor: &str, tasks: &str, env: &[(&str, &str)]) {
        self.setup.write_raw(&self.config(supervisor, tasks));
        let mut env = env.to_vec();
        env.push((TOKEN_ENV, &self.token));
        self.up = Some(Guard(self.setup.up(&env)));
    }

    /// Waits for the gateway and `runners` runners, then notes their descriptors.
    pub fn wait_ready(&mut self, runners: u32) -> Status {
        let status = self
            .setup
            .wait_status("all running", |s| s.all_running(runners));
        wait_until("the gateway answers", DEADLINE, || {
            try_http(self.port(), "GET", "/healthz", "").is_some_and(|(code, _)| code == 200)
        });
        self.baseline_fds = self.fds();
        status
    }

    /// The supervisor and each child, by name, with their pids.
    pub fn pids(&self) -> BTreeMap<String, i32> {
        let mut pids = BTreeMap::new();
        if let Some(up) = &self.up {
            // Under `unshare` the supervisor is unshare's exec'd self: same pid.
            pids.insert("supervisor".to_owned(), up.0.id() as i32);
        }
        if let Some(status) = self.setup.status() {
            for p in status.processes {
                if let Some(pid) = p.pid {
                    pids.insert(p.name, pid);
                }
            }
        }
        pids
    }

    /// Open descriptors of the supervisor and each child, by name and kind.
    pub fn fds(&self) -> BTreeMap<String, BTreeMap<String, usize>> {
        self.pids()
            .into_iter()
            .map(|(name, pid)| (name, fd_kinds(pid)))
            .collect()
    }

    /// Descriptors above the baseline, process by process, once they had `settle` to
    /// close what the scenario opened (watchers gone, jobs over). The store's SQLite
    /// files do not count while within its bounded pool of connections.
    pub fn leaked_fds(&self, settle: Duration) -> (usize, String) {
        let start = Instant::now();
        loop {
            let now = self.fds();
            let mut leaked = 0;
            let mut detail = Vec::new();
            for (name, base) in &self.baseline_fds {
                let Some(kinds) = now.get(name) else {
                    continue;
                };
                let mut store = 0;
                for (kind, n) in kinds {
                    if kind.ends_with("/shipwatch.db") {
                        store += n;
                        continue;
                    }
                    if kind.ends_with("/shipwatch.db-wal") || kind.ends_with("/shipwatch.db-shm") {
                        continue;
                    }
                    let was = base.get(kind).copied().unwrap_or(0);
                    if *n > was {
                        leaked += n - was;
                        detail.push(format!("{name} {kind} {was}->{n}"));
                    }
                }
                if store > STORE_CONNECTIONS {
                    leaked += store - STORE_CONNECTIONS;
                    detail.push(format!("{name} has {store} store connections"));
                }
            }
            if leaked == 0 || start.elapsed() > settle {
                return (leaked, detail.join(", "));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until the deploy is `share` (0..1) through, as the store says: the first host
    /// of wave ⌊share·waves⌋ stored its part of that wave's stdout. (The checkers lag
    /// behind the store on a loaded box: their progress would put a fault too late.)
    pub fn wait_deploy(&self, id: u64, share: f64) {
        let waves = HOSTS.div_ceil(self.shape.batch);
        let at = share * waves as f64;
        let wave = (at.floor() as usize).min(waves - 1);
        let host = &host_names(HOSTS)[wave * self.shape.batch];
        let lines = ((at - wave as f64) * self.shape.stdout_lines() as f64).ceil() as usize;
        let start = Instant::now();
        loop {
            let stored = self.stdout_stored(id, host);
            if stored >= lines.max(1) {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "{host} stored {stored} of {lines} lines: {:#}\n{}",
                job(self.port(), id),
                log_tail(&self.setup, 40)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stdout lines of `host` in the store.
    pub fn stdout_stored(&self, id: u64, host: &str) -> usize {
        let (_, body) = http(
            self.port(),
            "GET",
            &format!("/api/jobs/{id}/log?host={host}&format=ndjson"),
            "",
        );
        body.lines().filter(|l| l.contains("\"stdout\"")).count()
    }

    /// POST a deploy job with this run's marker nap.
    pub fn create_deploy(&self, pad: &str) -> u64 {
        self.create_gated_deploy(pad, "")
    }

    /// A deploy whose hosts stop halfway until `gate` exists.
    pub fn create_gated_deploy(&self, pad: &str, gate: &str) -> u64 {
        create_job(
            self.port(),
            &json!({"task": "deploy", "params": {"NAP": self.nap, "PAD": pad, "GATE": gate}}),
        )
    }

    /// A deploy (`pad` after each stdout line; hosts wait halfway until `gate` exists,
    /// unless it is empty) with the checkers following it.
    pub fn deploy_with_checkers(&self, pad: &str, gate: &str) -> Deploy {
        let id = self.create_gated_deploy(pad, gate);
        let events = self.shape.events();
        let checkers = Checkers::start(
            &self.rt,
            self.port(),
            id,
            events,
            watch_deadline(&self.shape),
        );
        Deploy {
            id,
            events,
            checkers,
        }
    }

    /// Waits up to `secs` for job `id` to end; its final view.
    pub fn wait_end(&self, id: u64, secs: u64) -> Value {
        wait_job(
            self.port(),
            id,
            Duration::from_secs(secs),
            "the end",
            is_terminal,
        )
    }

    /// Waits until `name` runs as a new process `restarts` times restarted (after a kill).
    pub fn wait_restarted(&self, name: &str, old: i32, restarts: u64) -> Status {
        self.setup.wait_status(&format!("{name} restarted"), |s| {
            s.get(name).is_some_and(|p| {
                p.state == "running" && p.pid.is_some_and(|p| p != old) && p.restarts >= restarts
            })
        })
    }

    /// SIGKILLs the gateway and waits for the next one.
    pub fn kill_gateway(&self, restarts: u64) {
        let status = self.setup.wait_status("gateway running", |s| {
            s.get("gateway").is_some_and(|p| p.state == "running")
        });
        let pid = status.pid("gateway");
        kill(pid, "KILL");
        self.wait_restarted("gateway", pid, restarts);
    }

    /// Processes the run left: anything with its token (local), its nap (remote
    /// scripts), or an sshd session of the fleet's daemons.
    pub fn leftovers(&self) -> Vec<(i32, String)> {
        let token = format!("{TOKEN_ENV}={}", self.token);
        let listeners: BTreeSet<i32> = processes_with(&format!("{}/", self.fleet.dir.display()))
            .into_iter()
            .filter(|(_, cmd)| cmd.contains("sshd"))
            .map(|(pid, _)| pid)
            .collect();
        let mut left = Vec::new();
        for (pid, cmdline) in processes_with("") {
            if pid == std::process::id() as i32 {
                continue;
            }
            let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
            let has_token = environ
                .split(|b| *b == 0)
                .any(|var| var == token.as_bytes());
            let session = parent_of(pid).is_some_and(|p| listeners.contains(&p));
            if has_token || cmdline.contains(&self.nap) || session {
                left.push((pid, cmdline));
            }
        }
        left
    }

    /// Stops `shipwatch up` (SIGTERM) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut up) = self.up.take() {
            kill(up.0.id() as i32, "TERM");
            let status = wait_exit(&mut up.0, Duration::from_secs(60));
            if !status.success() {
                self.failures
                    .push(format!("shipwatch up exited {status} on SIGTERM"));
            }
            std::mem::forget(up);
        }
    }

    /// After [`Run::stop`]: waits up to `settle` for every process of the run to end,
    /// returns how many did not (and kills them, so the next scenario starts clean).
    pub fn leaked_processes(&mut self, settle: Duration) -> usize {
        let start = Instant::now();
        let mut left = self.leftovers();
        while !left.is_empty() && start.elapsed() < settle {
            std::thread::sleep(Duration::from_millis(100));
            left = self.leftovers();
        }
        if !left.is_empty() {
            self.failures.push(format!(
                "{} processes left {settle:?} after the stop: {left:?}",
                left.len()
            ));
            for (pid, _) in &left {
                let _ = std::process::Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
        }
        left.len()
    }

    /// Records a failure unless `ok`.
    pub fn check(&mut self, ok: bool, what: impl FnOnce() -> String) {
        if !ok {
            self.failures.push(what());
        }
    }
}

/// The store's SQLite connections at most: the writer, the checkpointer and a pool of
/// 8 readers (gateway/src/store), each with the database open once.
const STORE_CONNECTIONS: usize = 10;

/// What a process's descriptors point at, counted by kind (`socket`, `pipe`, a path…).
fn fd_kinds(pid: i32) -> BTreeMap<String, usize> {
    let mut kinds = BTreeMap::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let target = std::fs::read_link(entry.path())
            .map(|t| t.display().to_string())
            .unwrap_or_default();
        let kind = match target.split_once(":[") {
            Some((kind, _)) => kind.to_owned(),
            None => target,
        };
        *kinds.entry(kind).or_default() += 1;
    }
    kinds
}

/// A deploy job under way and the checkers following it.
pub struct Deploy {
    pub id: u64,
    /// Its whole log when every host runs to its end ([`Shape::events`]).
    pub events: usize,
    pub checkers: Checkers,
}

/// The 100 watchers, each following the job over reconnects until it closes with 1000.
pub struct Checkers {
    pub plans: Vec<WatchPlan>,
    tasks: Vec<JoinHandle<Seen>>,
}

impl Checkers {
    /// Half follow everything from the start; the rest resume after some seq, filter by
    /// stream, host or kind, hang up and reconnect now and then, or read slowly.
    pub fn start(
        rt: &tokio::runtime::Runtime,
        port: u16,
        job: u64,
        events: usize,
        deadline: Duration,
    ) -> Checkers {
        let filters = [
            "streams=stderr",
            "hosts=web-03",
            "kinds=host,job",
            "hosts=web-07,web-15&streams=stdout",
            "kinds=line&hosts=web-20",
        ];
        let plans: Vec<WatchPlan> = (0..CHECKERS)
            .map(|i| {
                let name = format!("checker-{i:03}");
                match i {
                    0..50 => WatchPlan::new(&name, "", 0),
                    50..60 => WatchPlan::new(&name, "", ((i - 49) * events / 12) as u64),
                    60..70 => WatchPlan::new(&name, filters[i % filters.len()], 0),
                    70..85 => WatchPlan {
                        churn_every: Some(events / 4 + i),
                        ..WatchPlan::new(&name, "", 0)
                    },
                    _ => WatchPlan {
                        slow: Some(Duration::from_millis(2)),
                        ..WatchPlan::new(&name, "", 0)
                    },
                }
            })
            .collect();
        let progress: Vec<Arc<AtomicU64>> = plans.iter().map(|_| Arc::default()).collect();
        let tasks = plans
            .iter()
            .zip(&progress)
            .map(|(plan, cell)| rt.spawn(follow(port, job, plan.clone(), cell.clone(), deadline)))
            .collect();
        Checkers { plans, tasks }
    }

    /// Waits for every watcher and compares what each saw with the stored `log`.
    pub fn finish(self, rt: &tokio::runtime::Runtime, log: &[Event]) -> Tally {
        let seen: Vec<Seen> = rt.block_on(async {
            let mut all = Vec::new();
            for task in self.tasks {
                all.push(task.await.unwrap_or_default());
            }
            all
        });
        let mut tally = Tally::default();
        for (plan, seen) in self.plans.iter().zip(&seen) {
            let expected = plan.expected(log);
            let got: BTreeSet<u64> = seen.events.iter().map(|e| e.seq).collect();
            tally.expected += expected.len();
            tally.delivered += seen.events.len();
            tally.lost += expected.iter().filter(|e| !got.contains(&e.seq)).count();
            tally.duplicated += seen.events.len() - got.len();
            tally.reconnects += seen.connects.saturating_sub(1) as usize;
            if plan.churn_every.is_none() {
                tally.dropped_sockets += seen.connects.saturating_sub(1) as usize;
            }
            if let Err(e) = check_watcher(plan, seen, log) {
                tally.failures.push(e);
            }
            if seen.final_code() != Some(1000) {
                tally
                    .failures
                    .push(format!("{}: ended {:?}", plan.name, seen.ends));
            }
        }
        tally
    }
}

/// What the watchers saw, summed.
#[derive(Debug, Default)]
pub struct Tally {
    pub expected: usize,
    pub delivered: usize,
    pub lost: usize,
    pub duplicated: usize,
    /// Connections after the first, all watchers.
    pub reconnects: usize,
    /// Reconnects of watchers that never hang up by themselves: sockets the server closed.
    pub dropped_sockets: usize,
    pub failures: Vec<String>,
}

/// Per host of a stored deploy log: its `o`/`e` numbers and host states.
#[derive(Debug, Default)]
pub struct HostLog {
    pub stdout: Vec<usize>,
    pub stderr: Vec<usize>,
    pub states: Vec<String>,
    /// Lines the script did not print (ssh's own words when a connection breaks).
    pub foreign: Vec<String>,
}

/// The stored log by host; the job's own states apart.
pub fn by_host(log: &[Event]) -> (BTreeMap<String, HostLog>, Vec<String>) {
    let mut hosts: BTreeMap<String, HostLog> = BTreeMap::new();
    let mut job = Vec::new();
    for e in log {
        let host = e.host.clone().unwrap_or_default();
        match e.kind.as_str() {
            "line" => {
                let text = e.text.as_deref().unwrap_or_default();
                let number = text
                    .get(2..)
                    .map(|t| t.trim_end_matches('x'))
                    .and_then(|t| t.parse().ok());
                let entry = hosts.entry(host).or_default();
                match (e.stream.as_deref(), text.get(..2), number) {
                    (Some("stdout"), Some("o "), Some(n)) => entry.stdout.push(n),
                    (Some("stderr"), Some("e "), Some(n)) => entry.stderr.push(n),
                    _ => entry
                        .foreign
                        .push(format!("{}: {text}", e.stream.as_deref().unwrap_or("?"))),
                }
            }
            "host" => hosts
                .entry(host)
                .or_default()
                .states
                .push(e.state.clone().unwrap_or_default()),
            "job" => job.push(e.state.clone().unwrap_or_default()),
            _ => {}
        }
    }
    (hosts, job)
}

/// Lines the stored log lacks or repeats: every host's numbers must run 1, 2, … without a
/// gap or repeat; a host that ended `ok` must have all of them. Returns (lost, duplicated,
/// what differs).
pub fn stored_lines(shape: &Shape, log: &[Event]) -> (usize, usize, Vec<String>) {
    let (hosts, _) = by_host(log);
    let (mut lost, mut duplicated, mut problems) = (0, 0, Vec::new());
    for (host, h) in &hosts {
        let complete = h.states.last().is_some_and(|s| s == "ok");
        for (stream, numbers, want) in [
            ("stdout", &h.stdout, shape.stdout_lines()),
            ("stderr", &h.stderr, shape.stderr_lines()),
        ] {
            let unique: BTreeSet<usize> = numbers.iter().copied().collect();
            duplicated += numbers.len() - unique.len();
            let top = if complete {
                want
            } else {
                unique.last().copied().unwrap_or(0)
            };
            let missing = (1..=top).filter(|n| !unique.contains(n)).count();
            lost += missing;
            let in_order = numbers.windows(2).all(|w| w[0] < w[1]);
            if missing > 0 || !in_order || numbers.len() != unique.len() {
                problems.push(format!(
                    "{host} {stream}: {} lines stored of 1..={top} (in order: {in_order})",
                    numbers.len()
                ));
            }
        }
    }
    (lost, duplicated, problems)
}

/// `host -> state` from the job's view.
pub fn host_states(job: &Value) -> BTreeMap<String, String> {
    job["hosts"]
        .as_array()
        .map(|hosts| {
            hosts
                .iter()
                .map(|h| {
                    (
                        h["host"].as_str().unwrap_or("?").to_owned(),
                        h["state"].as_str().unwrap_or("?").to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// One row of the suite's table.
#[derive(Debug)]
pub struct Row {
    pub scenario: String,
    pub expected: usize,
    pub delivered: usize,
    pub lost: usize,
    pub duplicated: usize,
    pub states_ok: bool,
    pub leaked_processes: usize,
    pub leaked_fds: usize,
    /// Figures of the scenario's own (restart times, churned connections …).
    pub note: String,
}

pub const HEADER: &str = "scenario | events expected | delivered | lost | duplicated | \
                          final states ok | leaked processes | leaked fds | notes";

impl Row {
    /// The row from the watchers' tally, the stored log's check and the leaks.
    pub fn new(run: &Run, tally: &Tally, stored: (usize, usize), states_ok: bool) -> Row {
        Row {
            scenario: run.name.to_owned(),
            expected: tally.expected,
            delivered: tally.delivered,
            lost: tally.lost + stored.0,
            duplicated: tally.duplicated + stored.1,
            states_ok,
            leaked_processes: 0,
            leaked_fds: 0,
            note: String::new(),
        }
    }

    pub fn line(&self) -> String {
        format!(
            "{} | {} | {} | {} | {} | {} | {} | {} | {}",
            self.scenario,
            self.expected,
            self.delivered,
            self.lost,
            self.duplicated,
            if self.states_ok { "yes" } else { "NO" },
            self.leaked_processes,
            self.leaked_fds,
            self.note
        )
    }

    /// Prints the row with the scenario's own figures (`note`) first (and appends it to
    /// `$SHIPWATCH_FAULTS_TABLE` when set, for bench/faults.sh), then fails the test on
    /// anything the row or `run` found wrong.
    pub fn report(mut self, run: &Run, note: &str) {
        if !note.is_empty() {
            self.note = format!("{note}, {}", self.note);
        }
        let line = self.line();
        println!("{HEADER}\n{line}");
        if let Ok(path) = std::env::var("SHIPWATCH_FAULTS_TABLE") {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path);
            if let Ok(mut file) = file {
                let _ = writeln!(file, "{line}");
            }
        }
        let mut failures = run.failures.clone();
        let kept = std::env::temp_dir().join(format!(
            "faults-{}-{}.log",
            run.name.replace(|c: char| !c.is_ascii_alphanumeric(), "-"),
            std::process::id()
        ));
        let kept = if !failures.is_empty() || self.lost + self.duplicated > 0 || !self.states_ok {
            let _ = std::fs::write(&kept, run.setup.log());
            format!("the whole log: {}", kept.display())
        } else {
            String::new()
        };
        if self.lost > 0 || self.duplicated > 0 {
            failures.push(format!(
                "{} lost, {} duplicated",
                self.lost, self.duplicated
            ));
        }
        if !self.states_ok {
            failures.push("final states wrong".into());
        }
        if self.leaked_processes > 0 || self.leaked_fds > 0 {
            failures.push(format!(
                "{} processes and {} descriptors leaked",
                self.leaked_processes, self.leaked_fds
            ));
        }
        assert!(
            failures.is_empty(),
            "{}: {line}\n{failures:#?}\nlog tail ({kept}):\n{}",
            run.name,
            log_tail(&run.setup, 60)
        );
    }
}

impl Run {
    /// The end of every scenario: compares the checkers with the stored `log`, checks the
    /// log's lines, stops `shipwatch up` and counts what it left open or running.
    pub fn conclude(&mut self, checkers: Checkers, log: &[Event], states_ok: bool) -> (Row, Tally) {
        if let Some((i, e)) = log.iter().enumerate().find(|(i, e)| e.seq != *i as u64 + 1) {
            self.failures
                .push(format!("stored seqs not gapless at index {i}: {e:?}"));
        }
        let tally = checkers.finish(&self.rt, log);
        let (stored_lost, stored_dup, problems) = stored_lines(&self.shape, log);
        self.failures.extend(problems);
        if !tally.failures.is_empty() {
            self.failures.push(format!(
                "{} watcher failures, first: {:?}",
                tally.failures.len(),
                &tally.failures[..tally.failures.len().min(5)]
            ));
        }
        let mut row = Row::new(self, &tally, (stored_lost, stored_dup), states_ok);
        let (fds, detail) = self.leaked_fds(Duration::from_secs(10));
        if fds > 0 {
            self.failures
                .push(format!("descriptors above baseline: {detail}"));
        }
        row.leaked_fds = fds;
        self.stop();
        row.leaked_processes = self.leaked_processes(Duration::from_secs(20));
        row.note = format!("{} reconnects", tally.reconnects);
        (row, tally)
    }
}

/// How long the checkers follow a job at most.
pub fn watch_deadline(shape: &Shape) -> Duration {
    Duration::from_secs(if shape.full { 400 } else { 180 })
}
