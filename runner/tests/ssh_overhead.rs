//! Per-host overhead over real ssh: a host ends as soon as its script's exit is known,
//! and a second job reuses the first one's connections.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{assert_no_survivors, fleet};
use shipwatch_protocol::{EventBody, HostState, HostTarget, JobSpec, JobState, SshSpec};
use shipwatch_runner::{HostContext, Pending, run_job};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const SCRIPT: &str = "echo first\nsleep 0.4\necho last\n";

/// Per host, in ms: (started_at → first line, last line → ended_at).
type Overheads = BTreeMap<String, (i64, i64)>;

/// Runs `spec` as job `id` to its end (within a minute); its state and every event.
async fn run_collecting(id: u64, spec: &JobSpec, ctx: &HostContext) -> (JobState, Vec<Pending>) {
    let (tx, mut rx) = mpsc::channel::<Vec<Pending>>(64);
    let job = run_job(id, spec, ctx, tx, CancellationToken::new());
    let collect = async {
        let mut events = Vec::new();
        while let Some(batch) = rx.recv().await {
            events.extend(batch);
        }
        events
    };
    tokio::time::timeout(Duration::from_secs(60), async {
        tokio::join!(job, collect)
    })
    .await
    .expect("job finished in time")
}

async fn timed_job(spec: &JobSpec, ctx: &HostContext) -> Overheads {
    let (state, events) = run_collecting(7, spec, ctx).await;
    assert_eq!(state, JobState::Succeeded, "{events:?}");
    let mut out = Overheads::new();
    for h in &spec.hosts {
        let ts = |pick: &dyn Fn(&EventBody) -> bool| {
            events
                .iter()
                .filter(|(_, b)| pick(b))
                .map(|(t, _)| t.as_millis())
                .collect::<Vec<_>>()
        };
        let started = ts(
            &|b| matches!(b, EventBody::Host { host, state: HostState::Running, .. } if *host == h.name),
        );
        let ended = ts(
            &|b| matches!(b, EventBody::Host { host, state: HostState::Ok, .. } if *host == h.name),
        );
        let lines = ts(&|b| matches!(b, EventBody::Line { host, .. } if *host == h.name));
        assert_eq!(
            lines.len(),
            2,
            "{} printed its two lines: {events:?}",
            h.name
        );
        assert_eq!(
            (started.len(), ended.len()),
            (1, 1),
            "{} ran once, ok",
            h.name
        );
        out.insert(h.name.clone(), (lines[0] - started[0], ended[0] - lines[1]));
    }
    out
}

/// A runner's ssh control directory of its own (short, under /tmp: a ControlPath must
/// fit a socket address) and the host context over it.
fn control_dir(prefix: &str) -> (tempfile::TempDir, HostContext) {
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in("/tmp")
        .expect("tempdir");
    let ctx = HostContext {
        control_dir: dir.path().to_owned(),
        control_persist_secs: 30,
    };
    (dir, ctx)
}

/// Host `name` at the fleet's sshd on `port`.
fn host_at(name: String, port: u16) -> HostTarget {
    HostTarget {
        name,
        address: Some("127.0.0.1".into()),
        port: Some(port),
    }
}

/// The master sockets in a control directory (not their lock files).
fn master_sockets(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .expect("control dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_none())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_ends_with_its_script_and_the_next_job_reuses_the_connection() {
    let Some(f) = fleet::fleet() else { return };
    let (dir, ctx) = control_dir("swo");
    let hosts: Vec<HostTarget> = (0..3)
        .map(|i| host_at(format!("h{i:02}"), f.ports[i]))
        .collect();
    let waves = vec![
        vec![hosts[0].name.clone(), hosts[1].name.clone()],
        vec![hosts[2].name.clone()],
    ];
    let spec = fleet_spec(f, hosts, waves);
    let first = timed_job(&spec, &ctx).await;
    let second = timed_job(&spec, &ctx).await;
    for (name, run) in [("first", &first), ("second", &second)] {
        for (host, (connect, tail)) in run {
            eprintln!(
                "{name} job {host}: started_at → first line {connect} ms, last line → ended_at {tail} ms"
            );
        }
    }
    for (host, (_, tail)) in first.iter().chain(&second) {
        assert!(
            // What is guarded: the host no longer waits out DRAIN for pipes a master holds.
            *tail < (shipwatch_runner::host::DRAIN - Duration::from_millis(500)).as_millis() as i64,
            "{host} ended {tail} ms after its last line (the script's exit was known)"
        );
    }
    // The second job's hosts ran over the first job's masters: a socket per host is
    // still there and answers.
    let sockets = master_sockets(dir.path());
    assert_eq!(sockets.len(), 3, "one master socket per host: {sockets:?}");
    for s in sockets {
        let status = std::process::Command::new("ssh")
            .args(["-O", "check", "-o"])
            .arg(format!("ControlPath={}", s.display()))
            .arg("unused")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .expect("ssh runs");
        assert!(status.success(), "the master at {} answers", s.display());
    }
    // Reused, the connection setup is gone; on a loaded 2-core box bash start-up dominates
    // both jobs' first lines, so the figure is printed, not asserted (the live sockets
    // above are the proof of reuse).
    let mean = |r: &Overheads| r.values().map(|(c, _)| *c).sum::<i64>() / r.len() as i64;
    eprintln!(
        "mean started_at → first line: first job {} ms, second job {} ms",
        mean(&first),
        mean(&second)
    );
    // What a runner does on its way out: its masters end with it.
    assert_eq!(shipwatch_runner::ssh::close_masters(dir.path()).await, 3);
    assert_no_survivors(&dir.path().display().to_string()).await;
}

/// The ssh spec of the fleet, for `hosts`, in `waves`.
fn fleet_spec(f: &fleet::Fleet, hosts: Vec<HostTarget>, waves: Vec<Vec<String>>) -> JobSpec {
    let base = JobSpec::local::<&str>("overhead", SCRIPT, &[]);
    JobSpec {
        transport: shipwatch_protocol::Transport::Ssh,
        waves,
        hosts,
        ssh: SshSpec {
            user: f.user.clone(),
            identity_file: Some(f.identity.display().to_string()),
            known_hosts: Some(f.known_hosts.display().to_string()),
            ..base.ssh.clone()
        },
        ..base
    }
}

/// Hosts that are one destination start one master between them: each used to start
/// its own, and all but one, finding the socket taken, stayed behind as plain `ssh -N`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_sharing_a_destination_start_one_master_and_leave_no_ssh_behind() {
    let Some(f) = fleet::fleet() else { return };
    let (dir, ctx) = control_dir("swr");
    let hosts: Vec<HostTarget> = (0..6)
        .map(|i| host_at(format!("alias{i}"), f.ports[5]))
        .collect();
    let wave = hosts.iter().map(|h| h.name.clone()).collect();
    let spec = fleet_spec(f, hosts, vec![wave]);
    timed_job(&spec, &ctx).await;
    let sockets = master_sockets(dir.path());
    assert_eq!(sockets.len(), 1, "one master socket: {sockets:?}");
    assert_eq!(shipwatch_runner::ssh::close_masters(dir.path()).await, 1);
    assert_no_survivors(&dir.path().display().to_string()).await;
}

/// Median wall time of `ssh … true` over `ctx`'s control directory, three tries.
async fn median_ssh_true(target: &HostTarget, spec: &JobSpec, ctx: &HostContext) -> Duration {
    let mut took = Vec::new();
    for _ in 0..3 {
        let mut cmd = shipwatch_runner::ssh::ssh_command(target, &spec.ssh, ctx, "no", &[]);
        cmd.arg("true")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        let began = Instant::now();
        let status = cmd.status().await.expect("ssh runs");
        assert!(
            status.success(),
            "ssh true over {}",
            ctx.control_dir.display()
        );
        took.push(began.elapsed());
    }
    took.sort();
    took[1]
}

/// A session over the runner's master skips the key exchange and authentication a new
/// connection makes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_over_the_master_starts_faster_than_a_new_connection() {
    let Some(f) = fleet::fleet() else { return };
    let ((with_master, over_master), (_without, fresh_ctx)) =
        (control_dir("swm"), control_dir("swn"));
    let target = host_at("h06".into(), f.ports[6]);
    let spec = fleet_spec(f, vec![target.clone()], vec![vec!["h06".into()]]);
    // The job leaves its master behind for the next one.
    timed_job(&spec, &over_master).await;
    let reused = median_ssh_true(&target, &spec, &over_master).await;
    let fresh = median_ssh_true(&target, &spec, &fresh_ctx).await;
    eprintln!("ssh true: new connection {fresh:?}, over the master {reused:?} (medians of 3)");
    assert!(
        reused < fresh,
        "over the master {reused:?}, a new connection {fresh:?}"
    );
    shipwatch_runner::ssh::close_masters(with_master.path()).await;
    assert_no_survivors(&with_master.path().display().to_string()).await;
}

/// While a wave runs, the next wave's masters start: the first wave's host waits until
/// a second master socket is there, which without warming appears only after it ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_waves_masters_start_while_this_wave_runs() {
    let Some(f) = fleet::fleet() else { return };
    let (dir, ctx) = control_dir("sww");
    let hosts = vec![
        host_at("h07".into(), f.ports[7]),
        host_at("h08".into(), f.ports[8]),
    ];
    let waves = vec![vec!["h07".into()], vec!["h08".into()]];
    let script = format!(
        "for i in $(seq 1 400); do\n\
         [ \"$(find '{dir}' -maxdepth 1 -type s | wc -l)\" -ge 2 ] && {{ echo warmed; exit 0; }}\n\
         sleep 0.05\n\
         done\n\
         echo 'no master for the next wave within 20 s' >&2\n\
         exit 1\n",
        dir = dir.path().display()
    );
    let spec = JobSpec {
        script,
        ..fleet_spec(f, hosts, waves)
    };
    let (state, events) = run_collecting(8, &spec, &ctx).await;
    assert_eq!(state, JobState::Succeeded, "{events:?}");
    assert_eq!(shipwatch_runner::ssh::close_masters(dir.path()).await, 2);
    assert_no_survivors(&dir.path().display().to_string()).await;
}
