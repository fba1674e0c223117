//! A rolling deploy over real ssh: HOSTS sshd on loopback (the sshtest fleet), in WAVES
//! waves, a script of SCRIPT seconds that stamps its own first and last line. Run twice,
//! the second right after the first, so it can reuse the runner's master connections.
//!
//! What a host costs beyond its script is its `ended_at - started_at` against the span
//! between the script's own first and last stamp: connection setup before, output drain
//! and exit after. The target is the issue's: the deploy takes no more than its waves of
//! script plus one connection setup each, and half a second of slack.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use shipwatch_protocol::api::{JobView, LogLine};
use shipwatch_protocol::timestamp::Timestamp;

use crate::Error;
use crate::report::{Row, ms};
use crate::system::System;

/// Runs the ssh deploy scenario; its rows (first run, second run), or why it failed.
pub async fn ssh(hosts: usize, waves: usize, script_secs: f64) -> Result<Vec<Row>, Error> {
    let fleet = shipwatch_sshtest::fleet().ok_or("no sshd fleet: install openssh-server")?;
    if hosts > fleet.ports.len() {
        return Err(format!("the fleet has {} hosts, not {hosts}", fleet.ports.len()).into());
    }
    let setup = connection_setup(fleet)?;
    let per_wave = hosts.div_ceil(waves.max(1));
    let targets: Vec<String> = fleet.ports[..hosts]
        .iter()
        .enumerate()
        .map(|(i, port)| format!("\"h-{:02}=127.0.0.1:{port}\"", i + 1))
        .collect();
    let body = format!(
        r#"[auth]
anonymous = "admin"

{ssh}
[hosts]
fleet = [{targets}]

[[tasks]]
name = "load"
hosts = ["fleet"]
batch = {per_wave}
timeout_secs = 120
script = '''
echo "first $(date +%s%3N)"
sleep {script_secs}
echo "last $(date +%s%3N)"
'''
"#,
        ssh = fleet.ssh_section(&fleet.known_hosts),
        targets = targets.join(", "),
    );
    let mut system = System::start_config(&body, None, 1 << 30)?;
    let target = Duration::from_secs_f64(waves as f64 * (script_secs + setup.as_secs_f64()) + 0.5);
    let mut rows = Vec::new();
    for run in ["first run", "second run, right after"] {
        let began = Instant::now();
        let job = system.create_job()?;
        let view = system
            .wait_job(job, "ended", Duration::from_secs(120), |j| {
                j["ended_at"].is_string()
            })
            .await?;
        let wall = began.elapsed();
        let view: JobView = serde_json::from_value(view)?;
        if view.state.to_string() != "succeeded" {
            return Err(system.fail(format!("job {job} ended {}", view.state)));
        }
        let overhead = host_overheads(&mut system, &view)?;
        rows.push(Row {
            figure: format!(
                "{hosts}-host deploy over real ssh in {waves} waves, {script_secs} s script, {run}"
            ),
            measured: format!("{:.2} s", wall.as_secs_f64()),
            target: format!(
                "≤ {:.2} s ({waves} × ({script_secs} s + {} setup) + 0.5 s)",
                target.as_secs_f64(),
                ms(setup)
            ),
            met: Some(wall <= target),
            notes: format!(
                "per host beyond its script: median {} max {} (before its first line: median \
                 {} max {}; after its last: median {} max {})",
                ms(median(&overhead.total)),
                ms(max(&overhead.total)),
                ms(median(&overhead.before)),
                ms(max(&overhead.before)),
                ms(median(&overhead.after)),
                ms(max(&overhead.after)),
            ),
        });
    }
    Ok(rows)
}

/// One `ssh … true` to the fleet's first host, median of five: what a fresh connection
/// (TCP, key exchange, authentication, a session) costs on this box.
fn connection_setup(fleet: &shipwatch_sshtest::Fleet) -> Result<Duration, Error> {
    let mut took = Vec::new();
    for _ in 0..5 {
        let began = Instant::now();
        let status = Command::new("ssh")
            .args(["-o", "BatchMode=yes", "-o", "ControlMaster=no", "-i"])
            .arg(&fleet.identity)
            .arg("-o")
            .arg(format!(
                "UserKnownHostsFile={}",
                fleet.known_hosts.display()
            ))
            .args(["-p", &fleet.ports[0].to_string()])
            .arg(format!("{}@127.0.0.1", fleet.user))
            .arg("true")
            .stdin(Stdio::null())
            .status()?;
        if !status.success() {
            return Err(format!("ssh to the fleet's first host: {status}").into());
        }
        took.push(began.elapsed());
    }
    took.sort();
    Ok(took[took.len() / 2])
}

/// Per host: time beyond the script, before its first line, after its last.
#[derive(Default)]
struct Overheads {
    total: Vec<Duration>,
    before: Vec<Duration>,
    after: Vec<Duration>,
}

fn median(of: &[Duration]) -> Duration {
    let mut sorted = of.to_vec();
    sorted.sort();
    sorted.get(sorted.len() / 2).copied().unwrap_or_default()
}

fn max(of: &[Duration]) -> Duration {
    of.iter().max().copied().unwrap_or_default()
}

fn host_overheads(system: &mut System, job: &JobView) -> Result<Overheads, Error> {
    let (code, log) = system.http("GET", &format!("/api/jobs/{}/log", job.id), "")?;
    if code != 200 {
        return Err(system.fail(format!("job {} log: {code}", job.id)));
    }
    // The script's own stamps, in ms since the epoch: host -> (first, last).
    let mut stamps: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for line in log.lines() {
        let line = LogLine::parse(line)?;
        let Some((word, stamp)) = line.text.split_once(' ') else {
            continue;
        };
        let Ok(stamp) = stamp.trim().parse::<i64>() else {
            continue;
        };
        let entry = stamps.entry(line.host.to_string()).or_insert((0, 0));
        match word {
            "first" => entry.0 = stamp,
            "last" => entry.1 = stamp,
            _ => {}
        }
    }
    let mut overheads = Overheads::default();
    let span = |ms: i64| Duration::from_millis(ms.max(0) as u64);
    for host in job.hosts.iter().flatten() {
        let (Some(started), Some(ended)) = (&host.started_at, &host.ended_at) else {
            return Err(system.fail(format!("host {} has no start or end", host.host)));
        };
        let started = Timestamp::parse_rfc3339(started)?.0;
        let ended = Timestamp::parse_rfc3339(ended)?.0;
        let Some(&(first, last)) = stamps.get(&host.host).filter(|s| s.0 > 0 && s.1 > 0) else {
            return Err(system.fail(format!("host {} printed no stamps", host.host)));
        };
        overheads
            .total
            .push(span((ended - started) - (last - first)));
        overheads.before.push(span(first - started));
        overheads.after.push(span(ended - last));
    }
    Ok(overheads)
}
