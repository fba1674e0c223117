//! Behaviour of a job on real hosts: the same test bodies over ssh (a fleet of real sshd
//! instances on loopback) and over the local transport.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::fleet::{self, Fleet};
use common::{assert_no_survivors, processes_with};
use shipwatch_config::MAX_SCRIPT_BYTES;
use shipwatch_protocol::{
    EventBody, HostState, HostTarget, JobSpec, JobState, SshSpec, Stream, Transport,
};
use shipwatch_runner::{HostContext, Pending, run_job};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// A job's environment for one transport.
struct Env {
    transport: Transport,
    fleet: Option<&'static Fleet>,
    dir: tempfile::TempDir,
}

impl Env {
    /// `None` when the transport is ssh and the fleet is unavailable (skipped loudly).
    fn new(transport: Transport) -> Option<Env> {
        let fleet = match transport {
            Transport::Ssh => Some(fleet::fleet()?),
            Transport::Local => None,
        };
        let dir = tempfile::Builder::new()
            .prefix("swr")
            .tempdir_in("/tmp")
            .expect("tempdir");
        Some(Env {
            transport,
            fleet,
            dir,
        })
    }

    fn host(&self, i: usize) -> HostTarget {
        let name = format!("h{i:02}");
        match self.fleet {
            Some(f) => HostTarget {
                name,
                address: Some("127.0.0.1".into()),
                port: Some(f.ports[i]),
            },
            None => HostTarget {
                name,
                address: None,
                port: None,
            },
        }
    }

    fn spec(&self, n: usize, batches: &[usize], script: &str) -> JobSpec {
        let hosts: Vec<HostTarget> = (0..n).map(|i| self.host(i)).collect();
        let mut waves = Vec::new();
        let mut next = 0;
        let mut b = 0;
        while next < n {
            let size = batches[b.min(batches.len() - 1)];
            waves.push(
                hosts[next..(next + size).min(n)]
                    .iter()
                    .map(|h| h.name.clone())
                    .collect(),
            );
            next += size;
            b += 1;
        }
        let (user, identity, known_hosts) = match self.fleet {
            Some(f) => (
                f.user.clone(),
                Some(f.identity.display().to_string()),
                Some(f.known_hosts.display().to_string()),
            ),
            None => ("nobody".into(), None, None),
        };
        let ends: Vec<String> = waves
            .iter()
            .scan(0, |acc, w: &Vec<String>| {
                *acc += w.len();
                Some(acc.to_string())
            })
            .collect();
        let base = JobSpec::local::<&str>("test", script, &[]);
        JobSpec {
            transport: self.transport,
            hosts,
            waves,
            params: BTreeMap::from([
                ("DIR".to_owned(), self.dir.path().display().to_string()),
                ("WAVE_ENDS".to_owned(), ends.join(" ")),
            ]),
            ssh: SshSpec {
                user,
                identity_file: identity,
                known_hosts,
                ..base.ssh
            },
            ..base
        }
    }

    fn ctx(&self) -> HostContext {
        HostContext {
            control_dir: self.dir.path().to_owned(),
            control_persist_secs: 5,
        }
    }
}

/// Everything a job sent, and its final state.
struct Run {
    state: JobState,
    events: Vec<EventBody>,
}

impl Run {
    fn host_state(&self, host: &str) -> (HostState, Option<i32>) {
        self.events
            .iter()
            .rev()
            .find_map(|e| match e {
                EventBody::Host {
                    host: h,
                    state,
                    exit_code,
                } if h == host => Some((*state, *exit_code)),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no state for {host}"))
    }

    fn lines(&self, host: &str, stream: Stream) -> Vec<String> {
        self.events
            .iter()
            .filter_map(|e| match e {
                EventBody::Line {
                    host: h,
                    stream: s,
                    text,
                } if h == host && *s == stream => Some(text.clone()),
                _ => None,
            })
            .collect()
    }

    fn reason(&self) -> Option<String> {
        self.events.iter().rev().find_map(|e| match e {
            EventBody::Job { reason, .. } => reason.clone(),
            _ => None,
        })
    }
}

async fn run(env: &Env, spec: &JobSpec, cancel: CancellationToken) -> Run {
    run_watching(env, spec, cancel, |_| {}).await
}

/// Runs the job, calling `watch` with every event as it arrives.
async fn run_watching(
    env: &Env,
    spec: &JobSpec,
    cancel: CancellationToken,
    mut watch: impl FnMut(&EventBody),
) -> Run {
    let (tx, mut rx) = mpsc::channel::<Vec<Pending>>(64);
    let ctx = env.ctx();
    let job = run_job(7, spec, &ctx, tx, cancel);
    let collect = async {
        let mut events = Vec::new();
        while let Some(batch) = rx.recv().await {
            for (_, body) in batch {
                watch(&body);
                events.push(body);
            }
        }
        events
    };
    let (state, events) = tokio::time::timeout(Duration::from_secs(120), async {
        tokio::join!(job, collect)
    })
    .await
    .expect("job finished in time");
    assert!(
        matches!(events.last(), Some(EventBody::Job { state: s, .. }) if *s == state),
        "the job event comes last"
    );
    Run { state, events }
}

fn unique(tag: &str) -> String {
    format!(
        "{tag}{}{}",
        std::process::id(),
        Instant::now().elapsed().as_nanos() ^ rand_nanos()
    )
}

fn rand_nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// Peak number of hosts running at once, and per host (start, end), from a log where each
/// host appended `start NANOS HOST` and `end NANOS HOST`.
fn intervals(path: &std::path::Path) -> BTreeMap<String, (u128, u128)> {
    let text = std::fs::read_to_string(path).expect("read the timing log");
    let mut map: BTreeMap<String, (u128, u128)> = BTreeMap::new();
    for line in text.lines() {
        let parts: Vec<&str> = line.split_whitespace().collect();
        let [what, t, host] = parts[..] else {
            panic!("bad log line {line:?}")
        };
        let t: u128 = t.parse().expect("nanos");
        let e = map.entry(host.to_owned()).or_default();
        if what == "start" { e.0 = t } else { e.1 = t }
    }
    map
}

fn peak(iv: &BTreeMap<String, (u128, u128)>) -> usize {
    let mut points: Vec<(u128, i32)> = iv.values().flat_map(|(s, e)| [(*s, 1), (*e, -1)]).collect();
    points.sort_by_key(|(t, d)| (*t, *d));
    let (mut cur, mut max) = (0i32, 0i32);
    for (_, d) in points {
        cur += d;
        max = max.max(cur);
    }
    max as usize
}

/// Each host logs start/end; it waits (at most 20 s) until every host of its wave has
/// started, so slow ssh connects cannot hide concurrency, and a runner that started the
/// wave one host at a time would show a peak of 1.
const TIMED: &str = r#"echo "start $(date +%s%N) $SHIPWATCH_HOST" >> "$DIR/times"
i=$((10#${SHIPWATCH_HOST#h}))
for end in $WAVE_ENDS; do if [ "$i" -lt "$end" ]; then break; fi; done
for _ in $(seq 200); do
  [ "$(grep -c ^start "$DIR/times")" -ge "$end" ] && break
  sleep 0.1
done
sleep 0.3
echo "end $(date +%s%N) $SHIPWATCH_HOST" >> "$DIR/times"
echo "done on $SHIPWATCH_HOST job $SHIPWATCH_JOB"
"#;

/// Checks waves ran one after another with exactly `sizes` hosts at once.
fn check_waves(env: &Env, spec: &JobSpec, sizes: &[usize]) {
    let iv = intervals(&env.dir.path().join("times"));
    assert_eq!(iv.len(), spec.hosts.len());
    for (i, wave) in spec.waves.iter().enumerate() {
        let w: BTreeMap<String, (u128, u128)> = wave.iter().map(|h| (h.clone(), iv[h])).collect();
        assert_eq!(peak(&w), sizes[i], "wave {i} ran its hosts at once");
        if i > 0 {
            let prev_end = spec.waves[i - 1]
                .iter()
                .map(|h| iv[h].1)
                .max()
                .expect("hosts");
            let start = wave.iter().map(|h| iv[h].0).min().expect("hosts");
            assert!(
                start > prev_end,
                "wave {i} started before wave {} ended",
                i - 1
            );
        }
    }
    assert_eq!(peak(&iv), *sizes.iter().max().expect("sizes"));
}

async fn rolling_deploy_20_hosts(t: Transport) {
    let Some(env) = Env::new(t) else { return };
    let spec = env.spec(20, &[5], TIMED);
    let run = run(&env, &spec, CancellationToken::new()).await;
    assert_eq!(run.state, JobState::Succeeded, "{:?}", run.events);
    for h in &spec.hosts {
        assert_eq!(run.host_state(&h.name), (HostState::Ok, Some(0)));
        assert_eq!(
            run.lines(&h.name, Stream::Stdout),
            [format!("done on {} job 7", h.name)]
        );
    }
    check_waves(&env, &spec, &[5, 5, 5, 5]);
}

async fn canary_then_quarter(t: Transport) {
    let Some(env) = Env::new(t) else { return };
    // batch = [1, "25%"] over 20 hosts, as the gateway resolves it.
    let spec = env.spec(20, &[1, 5], TIMED);
    assert_eq!(
        spec.waves.iter().map(Vec::len).collect::<Vec<_>>(),
        [1, 5, 5, 5, 4]
    );
    let run = run(&env, &spec, CancellationToken::new()).await;
    assert_eq!(run.state, JobState::Succeeded);
    check_waves(&env, &spec, &[1, 5, 5, 5, 4]);
}

async fn failing_host_stops_later_waves(t: Transport) {
    let Some(env) = Env::new(t) else { return };
    let script = "echo hi\nif [ \"$SHIPWATCH_HOST\" = h01 ]; then echo broken >&2; exit 3; fi\n";
    let spec = env.spec(6, &[2], script);
    let run = run(&env, &spec, CancellationToken::new()).await;
    assert_eq!(run.state, JobState::Failed);
    assert_eq!(run.reason().as_deref(), Some("1 host failed"));
    assert_eq!(run.host_state("h00"), (HostState::Ok, Some(0)));
    assert_eq!(run.host_state("h01"), (HostState::Failed, Some(3)));
    assert_eq!(run.lines("h01", Stream::Stderr), ["broken"]);
    for h in ["h02", "h03", "h04", "h05"] {
        assert_eq!(run.host_state(h).0, HostState::Skipped);
        assert!(run.lines(h, Stream::Stdout).is_empty());
    }
}

async fn exit_255_is_failed_not_unreachable(t: Transport) {
    let Some(env) = Env::new(t) else { return };
    let mut spec = env.spec(2, &[2], "echo before\nexit 255\n");
    spec.max_failures = 5;
    let run = run(&env, &spec, CancellationToken::new()).await;
    assert_eq!(run.host_state("h00"), (HostState::Failed, Some(255)));
    assert_eq!(run.lines("h00", Stream::Stdout), ["before"]);
    assert_eq!(
        run.state,
        JobState::Succeeded,
        "2 failures are within max_failures 5"
    );
}

async fn hanging_host_times_out(t: Transport) {
    let Some(env) = Env::new(t) else { return };
    let tag = unique("hang");
    let script = format!("echo waiting\n(exec -a {tag} sleep 300)\n");
    let mut spec = env.spec(2, &[2], &script);
    // Long enough for h01's ssh to connect and print on a loaded machine (2 s was not,
    // and 5 s failed twice at a load average of 15).
    spec.timeout_secs = 10;
    spec.max_failures = 1;
    let started = Instant::now();
    let run = run(&env, &spec, CancellationToken::new()).await;
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_eq!(run.host_state("h00").0, HostState::Timeout);
    assert_eq!(run.state, JobState::Failed);
    assert_eq!(run.reason().as_deref(), Some("2 hosts failed"));
    assert_eq!(run.lines("h01", Stream::Stdout), ["waiting"]);
    assert_no_survivors(&tag).await;
}

async fn cancel_mid_wave_leaves_no_process(t: Transport) {
    let Some(env) = Env::new(t) else { return };
    let tag = unique("cancel");
    // A child of the script, and a grandchild in a subshell, must die too.
    let script = format!("(exec -a {tag} sleep 311) &\necho started\n(exec -a {tag} sleep 300)\n");
    let spec = env.spec(6, &[3], &script);
    let cancel = CancellationToken::new();
    let mut started = 0;
    let trigger = cancel.clone();
    let run = run_watching(&env, &spec, cancel, |e| {
        if matches!(e, EventBody::Line { text, .. } if text == "started") {
            started += 1;
            if started == 3 {
                trigger.cancel();
            }
        }
    })
    .await;
    assert_eq!(run.state, JobState::Cancelled);
    for h in ["h00", "h01", "h02"] {
        assert_eq!(run.host_state(h).0, HostState::Cancelled);
    }
    for h in ["h03", "h04", "h05"] {
        assert_eq!(run.host_state(h).0, HostState::Skipped);
    }
    assert_no_survivors(&tag).await;
}

async fn params_arrive_byte_for_byte(t: Transport) {
    let Some(env) = Env::new(t) else { return };
    let nasty = "it's \"$(touch /tmp/pwned)\" `id` $HOME \\n\n  two  spaces\ttab\n\nünï\r end ";
    let mut spec = env.spec(
        1,
        &[1],
        "printf '%s' \"$NASTY\" | od -An -v -tx1 | tr -d ' \\n'; echo\n",
    );
    spec.params.insert("NASTY".into(), nasty.into());
    let run = run(&env, &spec, CancellationToken::new()).await;
    let hex: String = nasty.bytes().map(|b| format!("{b:02x}")).collect();
    assert_eq!(run.lines("h00", Stream::Stdout), [hex]);
    assert_eq!(run.host_state("h00"), (HostState::Ok, Some(0)));
}

/// Values a hostile or careless user may send, each delivered as data: a canary file the
/// values try to create never appears, and each arrives byte for byte, the longest the
/// gateway accepts (4 KiB) included.
async fn hostile_params_are_data_never_code(t: Transport) {
    let Some(env) = Env::new(t) else { return };
    let canary = std::env::temp_dir().join(unique("pwned"));
    let c = canary.display();
    let values: Vec<String> = vec![
        format!("'; touch {c}; echo '"),
        format!("\"; touch {c}; echo \""),
        format!("$(touch {c})"),
        format!("`touch {c}`"),
        format!("x; touch {c}"),
        format!("a\ntouch {c}\n"),
        format!("'$(touch {c})'\\'\n`touch {c}`"),
        format!("${{IFS}}touch${{IFS}}{c}"),
        "q".repeat(4096),
    ];
    let mut script = String::new();
    for i in 0..values.len() {
        script.push_str(&format!(
            "printf '%s' \"$P{i}\" | od -An -v -tx1 | tr -d ' \\n'; echo\n"
        ));
    }
    let mut spec = env.spec(1, &[1], &script);
    for (i, value) in values.iter().enumerate() {
        spec.params.insert(format!("P{i}"), value.clone());
    }
    let run = run(&env, &spec, CancellationToken::new()).await;
    assert_eq!(
        run.host_state("h00"),
        (HostState::Ok, Some(0)),
        "{:?}",
        run.events
    );
    let expected: Vec<String> = values
        .iter()
        .map(|v| v.bytes().map(|b| format!("{b:02x}")).collect())
        .collect();
    assert_eq!(run.lines("h00", Stream::Stdout), expected);
    assert!(!canary.exists(), "a param value was executed");
}

async fn stdout_and_stderr_stay_separate(t: Transport) {
    let Some(env) = Env::new(t) else { return };
    let script = "echo out1\necho err1 >&2\nprintf 'out2\\n'\nprintf 'err2 partial' >&2\n";
    let spec = env.spec(1, &[1], script);
    let run = run(&env, &spec, CancellationToken::new()).await;
    assert_eq!(run.lines("h00", Stream::Stdout), ["out1", "out2"]);
    assert_eq!(run.lines("h00", Stream::Stderr), ["err1", "err2 partial"]);
}

async fn background_child_does_not_hang_the_host(t: Transport) {
    let Some(env) = Env::new(t) else { return };
    let tag = unique("bg");
    let script = format!("(exec -a {tag} sleep 300) &\necho main done\n");
    let spec = env.spec(1, &[1], &script);
    let started = Instant::now();
    let run = run(&env, &spec, CancellationToken::new()).await;
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(run.host_state("h00"), (HostState::Ok, Some(0)));
    assert_eq!(run.lines("h00", Stream::Stdout), ["main done"]);
    assert_no_survivors(&tag).await;
}

async fn script_of_the_size_limit_runs(t: Transport) {
    let Some(env) = Env::new(t) else { return };
    let head = "echo begin\n";
    let tail = "echo end on $SHIPWATCH_HOST\n";
    let filler = "# padding padding padding padding padding padding padding padding padding\n";
    let mut script = String::from(head);
    while script.len() + filler.len() + tail.len() <= MAX_SCRIPT_BYTES {
        script.push_str(filler);
    }
    script.push_str(&"#".repeat(MAX_SCRIPT_BYTES - script.len() - tail.len()));
    script.push('\n');
    script.push_str(&tail[..tail.len() - 1]);
    assert_eq!(script.len(), MAX_SCRIPT_BYTES);
    let spec = env.spec(2, &[2], &script);
    let run = run(&env, &spec, CancellationToken::new()).await;
    assert_eq!(run.state, JobState::Succeeded, "{:?}", run.events);
    for h in ["h00", "h01"] {
        assert_eq!(run.host_state(h), (HostState::Ok, Some(0)));
        assert_eq!(
            run.lines(h, Stream::Stdout),
            ["begin".to_owned(), format!("end on {h}")]
        );
    }
}

/// Every process's argv on the box (the fleet's hosts are this box too), twice while the
/// script runs, is searched for the param value and for the script's text.
async fn script_and_params_never_reach_an_argv(t: Transport) {
    let Some(env) = Env::new(t) else { return };
    let secret = unique("secret");
    let text = unique("scripttext");
    // Not ending in a simple command, which bash would exec in place of itself.
    let script = format!("echo started # {text}\nsleep 0.5\necho running\nsleep 30\necho done\n");
    let mut spec = env.spec(1, &[1], &script);
    spec.params.insert("TOKEN".into(), secret.clone());
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    let mut scans = 0;
    let mut seen = Vec::new();
    let run = run_watching(&env, &spec, cancel, |e| {
        if matches!(e, EventBody::Line { text, .. } if text == "started" || text == "running") {
            seen.extend(processes_with(&secret));
            seen.extend(processes_with(&text));
            scans += 1;
            if scans == 2 {
                trigger.cancel();
            }
        }
    })
    .await;
    assert_eq!(run.state, JobState::Cancelled, "{:?}", run.events);
    assert_eq!(scans, 2, "the script ran");
    assert!(seen.is_empty(), "visible in ps: {seen:#?}");
}

macro_rules! both {
    ($($name:ident),* $(,)?) => {
        mod ssh { $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name(shipwatch_protocol::Transport::Ssh).await } )* }
        mod local { $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name(shipwatch_protocol::Transport::Local).await } )* }
    };
}

both!(
    rolling_deploy_20_hosts,
    canary_then_quarter,
    failing_host_stops_later_waves,
    exit_255_is_failed_not_unreachable,
    hanging_host_times_out,
    cancel_mid_wave_leaves_no_process,
    params_arrive_byte_for_byte,
    hostile_params_are_data_never_code,
    stdout_and_stderr_stay_separate,
    background_child_does_not_hang_the_host,
    script_of_the_size_limit_runs,
    script_and_params_never_reach_an_argv,
);

#[tokio::test]
async fn host_without_sshd_is_unreachable() {
    let Some(env) = Env::new(Transport::Ssh) else {
        return;
    };
    let mut spec = env.spec(2, &[2], "echo hi\n");
    spec.hosts[1].port = Some(fleet::dead_port());
    spec.max_failures = 1;
    let run = run(&env, &spec, CancellationToken::new()).await;
    assert_eq!(run.host_state("h00"), (HostState::Ok, Some(0)));
    assert_eq!(run.host_state("h01"), (HostState::Unreachable, Some(255)));
    assert!(!run.lines("h01", Stream::Stderr).is_empty(), "ssh says why");
    assert_eq!(run.state, JobState::Succeeded);
}
