//! Runs a job's script on one host, over ssh or locally, and tells how it ended.
//!
//! Both transports run the same small bash wrapper and feed it the script on stdin. The
//! wrapper starts the script in its own process group and keeps reading stdin as a
//! lifeline: when stdin reaches EOF (we close it to cancel or time out, ssh dies, the
//! connection drops, the runner dies) it kills the script's whole process group, TERM
//! then KILL. That stops remote processes without a pty, so stdout and stderr stay two
//! pipes. The wrapper marks its start and the script's exit status on stderr with a
//! random per-run token, which tells "ssh could not connect or lost the connection" (255,
//! no exit marker: `unreachable`) apart from a script that exits 255 (`failed`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use shipwatch_protocol::{HostState, HostTarget, JobId, SshSpec, Stream, Transport};
use tokio::io::AsyncWriteExt;
use tokio::process::Command;
use tokio::sync::oneshot;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::output::{EventSender, Markers, pump_until};
use crate::ssh;

/// How long the pipes may stay open after the host's processes are gone (something that
/// escaped the script's process group holding them), or may take to bring the exit
/// marker when the process ended first; then the host completes anyway.
pub const DRAIN: Duration = Duration::from_secs(2);

/// How long after closing the lifeline the host's process may take to exit before the
/// local side is killed outright (the wrapper's own TERM→KILL grace is 3 s).
const STOP_GRACE: Duration = Duration::from_secs(6);

/// The wrapper's own stderr is /dev/null from the script's start on (the host's stderr
/// kept on fd 5 for the script and the exit marker), so bash's job notices ("[1]+ Done
/// …") never reach the host's output.
/// The wrapper, run as `bash -c WRAPPER shipwatch TOKEN LENGTH` (quoted again for ssh's
/// remote command, which the login shell parses). It reads exactly LENGTH bytes of stdin
/// (the params' exports, the script and an end marker that proves nothing was cut off)
/// and hands them to bash as a here-string on fd 4 (a pipe, or a 0600 temp file bash
/// unlinks at once), so neither the script nor a param value is ever in an argv that
/// `ps` shows other users, and no size limit of argv applies. `head -c` never reads past
/// LENGTH, so the rest of stdin stays the lifeline. The payload's first line closes fd 4
/// (`.` has read the whole file by then). Its `wait` is silenced: bash would otherwise
/// print "… Killed …" into the host's stderr when a cancel or timeout has to SIGKILL the
/// script.
const WRAPPER: &str = r##"t=$1
printf "shipwatch-start-%s\n" "$t" >&2
m="# shipwatch-end-$t"
s=$(head -c "$2") || exit 254
[ "${s: -${#m}}" = "$m" ] || exit 254
exec 3<&0 </dev/null 5>&2 2>/dev/null
set -m
bash -c '. /dev/fd/4' shipwatch 3<&- 4<<<"$s" 2>&5 5>&- &
p=$!
set +m
s=
{ while IFS= read -r _ <&3; do :; done
  kill -TERM -- -$p 2>/dev/null
  for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30; do
    kill -0 -- -$p 2>/dev/null || exit 0
    sleep 0.1
  done
  kill -KILL -- -$p 2>/dev/null
} >/dev/null 2>&1 &
w=$!
exec 3<&-
wait $p 2>/dev/null
r=$?
printf "shipwatch-exit-%s:%d\n" "$t" "$r" >&5
exec >/dev/null 2>&1 5>&-
wait $w
exit $r
"##;

/// Where ssh control sockets live, and other per-runner settings of a host run.
#[derive(Debug, Clone)]
pub struct HostContext {
    /// Directory for ssh ControlPath sockets; kept short (< 108 bytes per socket).
    pub control_dir: PathBuf,
    /// `ControlPersist` in seconds.
    pub control_persist_secs: u64,
}

/// Everything one host run needs.
pub struct HostRun<'a> {
    pub job: JobId,
    pub target: &'a HostTarget,
    pub transport: Transport,
    pub script: &'a str,
    pub params: &'a BTreeMap<String, String>,
    pub ssh: &'a SshSpec,
    pub timeout: Duration,
    pub ctx: &'a HostContext,
}

/// How a host ended, and its exit code when it has one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostOutcome {
    pub state: HostState,
    pub exit_code: Option<i32>,
}

/// Quotes `value` for bash as one word that yields exactly its bytes.
pub fn shell_quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for c in value.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

fn token() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut bytes = [0u8; 16];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        use std::io::Read;
        if f.read_exact(&mut bytes).is_ok() {
            return bytes.iter().map(|b| format!("{b:02x}")).collect();
        }
    }
    // No /dev/urandom: RandomState is still seeded randomly per process.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(now_nanos());
    format!("{:016x}{:016x}", h.finish(), now_nanos() as u64)
}

fn now_nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// Runs the script on one host; its lines go to `tx`, the outcome is returned. The
/// caller sends the host's state events.
pub async fn run_host(
    run: HostRun<'_>,
    tx: EventSender,
    cancel: &CancellationToken,
) -> HostOutcome {
    let host = run.target.name.clone();
    let fail = |text: String| async {
        let _ = tx
            .send(vec![(
                shipwatch_protocol::Timestamp::now(),
                shipwatch_protocol::EventBody::Line {
                    host: host.clone(),
                    stream: Stream::Stderr,
                    text,
                },
            )])
            .await;
        HostOutcome {
            state: HostState::Failed,
            exit_code: None,
        }
    };
    let token = token();
    let mut payload = String::from("exec 4<&-\n");
    for (name, value) in run.params {
        if !valid_name(name) {
            return fail(format!(
                "shipwatch: parameter name {name:?} is not a valid shell name"
            ))
            .await;
        }
        // Locally the params are the process's environment (below); over ssh, where
        // the environment does not travel (AcceptEnv), single-quoted exports.
        if run.transport == Transport::Ssh {
            payload.push_str(&format!("export {name}={}\n", shell_quote(value)));
        }
    }
    payload.push_str(&format!("export SHIPWATCH_HOST={}\n", shell_quote(&host)));
    payload.push_str(&format!("export SHIPWATCH_JOB={}\n", run.job));
    payload.push_str(run.script);
    if !payload.ends_with('\n') {
        payload.push('\n');
    }
    payload.push_str(&format!("# shipwatch-end-{token}\n"));
    let length = payload.len().to_string();
    // A host that does not take the payload is handled by the timeout.
    let deadline = tokio::time::Instant::now() + run.timeout;

    let mut cmd = match run.transport {
        Transport::Local => {
            let mut cmd = Command::new("bash");
            cmd.arg("-c")
                .arg(WRAPPER)
                .arg("shipwatch")
                .arg(&token)
                .arg(&length);
            cmd.env("SHIPWATCH_HOST", &host)
                .env("SHIPWATCH_JOB", run.job.to_string())
                .envs(run.params);
            cmd
        }
        Transport::Ssh => {
            if let Err(outcome) = ssh::start_master(&run, &tx, deadline, cancel).await {
                return outcome;
            }
            // Over the master started above; should it have gone, a connection of its own
            // (never `auto`, which would make this ssh a master holding the host's pipes).
            let mut cmd = ssh::ssh_command(run.target, run.ssh, run.ctx, "no", &[]);
            cmd.arg(format!(
                "exec bash -c {} shipwatch {token} {length}",
                shell_quote(WRAPPER)
            ));
            cmd
        }
    };
    cmd.env_remove(shipwatch_protocol::supervision::READY_FD_ENV)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = match cmd.spawn() {
        Ok(child) => child,
        Err(e) => {
            return fail(format!(
                "shipwatch: could not start the host's process: {}",
                shipwatch_protocol::Report(&e)
            ))
            .await;
        }
    };
    let pid = child.id();
    let (Some(mut stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return fail("shipwatch: the host's process has no pipes".into()).await;
    };
    let (started_tx, mut started_rx) = oneshot::channel();
    let (exited_tx, mut exited_rx) = oneshot::channel();
    let markers = Markers {
        start: format!("shipwatch-start-{token}").into_bytes(),
        exit_prefix: format!("shipwatch-exit-{token}:").into_bytes(),
        started: Some(started_tx),
        exited: Some(exited_tx),
    };
    let stop_reading = CancellationToken::new();
    let mut readers = JoinSet::new();
    readers.spawn(pump_until(
        stdout,
        host.clone(),
        Stream::Stdout,
        tx.clone(),
        None,
        stop_reading.clone(),
    ));
    readers.spawn(pump_until(
        stderr,
        host.clone(),
        Stream::Stderr,
        tx.clone(),
        Some(markers),
        stop_reading.clone(),
    ));

    let write = async {
        stdin.write_all(payload.as_bytes()).await?;
        stdin.flush().await
    };
    let mut stopped: Option<HostState> = None;
    tokio::select! {
        r = write => { if r.is_err() { tracing::debug!(host, "host closed stdin early"); } }
        _ = tokio::time::sleep_until(deadline) => stopped = Some(HostState::Timeout),
        _ = cancel.cancelled() => stopped = Some(HostState::Cancelled),
    }

    let mut exit_code: Option<i32> = None;
    let mut status = None;
    if stopped.is_none() {
        tokio::select! {
            code = &mut exited_rx => { exit_code = code.ok(); }
            s = child.wait() => { status = s.ok(); }
            _ = tokio::time::sleep_until(deadline) => stopped = Some(HostState::Timeout),
            _ = cancel.cancelled() => stopped = Some(HostState::Cancelled),
        }
    }
    // Once the script's exit is known the host is done: the lifeline closes at once (over
    // ssh, ssh itself holds the pipes until the wrapper, waiting on the lifeline, exits).
    // Without it (the process ended first), the pipes get a bounded time to bring it.
    let drain_until = tokio::time::Instant::now() + DRAIN;
    if stopped.is_none() && exit_code.is_none() {
        let _ = tokio::time::timeout_at(drain_until, all_done(&mut readers)).await;
        if exit_code.is_none() {
            exit_code = exited_rx.try_recv().ok();
        }
    }
    // Close the lifeline: the wrapper kills whatever is left of the script's group.
    drop(stdin);
    if status.is_none() {
        match tokio::time::timeout(STOP_GRACE, child.wait()).await {
            Ok(s) => status = s.ok(),
            Err(_) => {
                if let Some(pid) = pid {
                    let _ = nix::sys::signal::killpg(
                        nix::unistd::Pid::from_raw(pid as i32),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
                status = child.wait().await.ok();
            }
        }
    }
    // The host's processes are gone: what is left in the pipes is read within moments,
    // unless something escaped the group and holds them open. Time the readers wait for
    // the gateway to make room does not count, so a stalled gateway loses no line.
    let _ = tokio::time::timeout_at(drain_until, all_done(&mut readers)).await;
    stop_reading.cancel();
    all_done(&mut readers).await;

    if let Some(state) = stopped {
        return HostOutcome {
            state,
            exit_code: None,
        };
    }
    if let Some(code) = exit_code {
        return HostOutcome {
            state: if code == 0 {
                HostState::Ok
            } else {
                HostState::Failed
            },
            exit_code: Some(code),
        };
    }
    // No exit marker and ssh's 255: ssh could not connect, or lost the connection
    // mid-script (the host crashed, its network vanished). A script's own `exit 255`
    // brings its marker and is `failed` above.
    let code = status.and_then(|s| s.code());
    if run.transport == Transport::Ssh && code == Some(255) {
        let started = started_rx.try_recv().is_ok();
        tracing::debug!(
            host,
            started,
            "ssh exited 255 without the script's exit status"
        );
        return HostOutcome {
            state: HostState::Unreachable,
            exit_code: Some(255),
        };
    }
    HostOutcome {
        state: HostState::Failed,
        exit_code: code,
    }
}

/// Waits for every pipe reader of a host; cancel-safe, so waiting again after a timeout
/// picks up where it stopped.
async fn all_done(readers: &mut JoinSet<()>) {
    while readers.join_next().await.is_some() {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_round_trips_through_bash() {
        let value = "it's $(echo no) `echo no` \"q\" \\ \n  spaces\ttab ünï";
        let out = std::process::Command::new("bash")
            .arg("-c")
            .arg(format!("printf %s {}", shell_quote(value)))
            .output()
            .expect("bash runs");
        assert_eq!(String::from_utf8_lossy(&out.stdout), value);
    }
}
