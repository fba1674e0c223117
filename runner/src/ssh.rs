//! ssh connections a runner reuses: one master per destination, started on its own
//! (`-N -f`, none of a host's pipes), which every host run and job then multiplexes over
//! until it has been idle `ControlPersist`.
//!
//! Masters live in the runner's own control directory (`<run_dir>/ssh/<index>`), so a
//! runner knows which are its own and ends them when it stops ([`close_masters`]): none
//! outlives its runner (a master is a daemon in its own session, which no signal to the
//! runner's process group reaches); a runner restarted after being killed ends those its
//! predecessor left. Two host runs wanting the same destination at once
//! (two hosts of a wave at one address, two jobs sharing a directory in tests) take turns
//! through a lock file beside the socket: without it both start a master, the second
//! finds the socket taken, carries on as a plain backgrounded `ssh -N`, and stays behind.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use shipwatch_protocol::{HostState, HostTarget, SshSpec, Stream};
use tokio::process::Command;
use tokio_util::sync::CancellationToken;

use crate::host::{HostContext, HostOutcome, HostRun};
use crate::output::EventSender;

/// A short, stable ControlPath name for a destination.
fn control_name(user: &str, address: &str, port: u16) -> String {
    // FNV-1a: stable across runs and processes, unlike RandomState.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in format!("{user}@{address}:{port}").bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    format!("{h:016x}")
}

/// The ControlPath of a host's master connection.
fn control_path(target: &HostTarget, ssh: &SshSpec, ctx: &HostContext) -> PathBuf {
    let address = target.address.as_deref().unwrap_or(&target.name);
    let port = target.port.unwrap_or(ssh.port);
    ctx.control_dir.join(control_name(&ssh.user, address, port))
}

/// The ssh command line (without the remote command) for a host; `control_master` is
/// ssh's `ControlMaster` setting and `extra` goes before the destination.
pub fn ssh_command(
    target: &HostTarget,
    ssh: &SshSpec,
    ctx: &HostContext,
    control_master: &str,
    extra: &[&str],
) -> Command {
    let address = target.address.as_deref().unwrap_or(&target.name);
    let port = target.port.unwrap_or(ssh.port);
    let mut cmd = Command::new("ssh");
    cmd.arg("-T")
        .args(["-o", "BatchMode=yes"])
        .args(["-o", "StrictHostKeyChecking=yes"])
        .arg("-o")
        .arg(format!(
            "ConnectTimeout={}",
            ssh.connect_timeout_secs.max(1)
        ))
        .arg("-o")
        .arg(format!("ControlMaster={control_master}"))
        .arg("-o")
        .arg(format!("ControlPersist={}", ctx.control_persist_secs))
        .arg("-o")
        .arg(format!(
            "ControlPath={}",
            control_path(target, ssh, ctx).display()
        ));
    if let Some(kh) = ssh.known_hosts.as_deref().filter(|s| !s.is_empty()) {
        cmd.arg("-o").arg(format!("UserKnownHostsFile={kh}"));
    }
    if let Some(id) = ssh.identity_file.as_deref().filter(|s| !s.is_empty()) {
        cmd.arg("-i").arg(id).args(["-o", "IdentitiesOnly=yes"]);
    }
    for opt in &ssh.options {
        cmd.arg("-o").arg(opt);
    }
    cmd.args(extra)
        .arg("-p")
        .arg(port.to_string())
        .arg("-l")
        .arg(&ssh.user)
        .arg("--")
        .arg(address);
    cmd
}

/// A master that accepts a connection is up: no ssh process needed to ask it.
async fn answers(socket: &Path) -> bool {
    tokio::net::UnixStream::connect(socket).await.is_ok()
}

/// Holds `<socket>.lock` while this host run starts the destination's master.
async fn lock_destination(socket: &Path) -> std::io::Result<nix::fcntl::Flock<std::fs::File>> {
    let mut path = socket.as_os_str().to_owned();
    path.push(".lock");
    tokio::task::spawn_blocking(move || {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)?;
        nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, errno)| std::io::Error::from(errno))
    })
    .await
    .map_err(std::io::Error::other)?
}

/// Makes sure a master connection to the host is up, started on its own: `-N -f` with no
/// stdio of the host's, so it never holds the host's pipes and outlives the host for
/// `ControlPersist`, for the next host or job. A master that cannot start is the host's
/// end: ssh's own words go to the host's stderr, and 255 (ssh could not connect) makes it
/// unreachable.
pub(crate) async fn start_master(
    run: &HostRun<'_>,
    tx: &EventSender,
    deadline: tokio::time::Instant,
    cancel: &CancellationToken,
) -> Result<(), HostOutcome> {
    use tokio::io::AsyncReadExt;
    let host = &run.target.name;
    let socket = control_path(run.target, run.ssh, run.ctx);
    if answers(&socket).await {
        return Ok(());
    }
    let stopped = |state| HostOutcome {
        state,
        exit_code: None,
    };
    let lock = tokio::select! {
        l = lock_destination(&socket) => l,
        _ = tokio::time::sleep_until(deadline) => return Err(stopped(HostState::Timeout)),
        _ = cancel.cancelled() => return Err(stopped(HostState::Cancelled)),
    };
    // Without the lock (no room for a file) the race is only a leftover process, never a
    // wrong result: go on.
    let _lock = match lock {
        Ok(lock) => Some(lock),
        Err(error) => {
            tracing::warn!(host, error = %shipwatch_protocol::Report(&error), "cannot lock the ssh control path");
            None
        }
    };
    // Whoever held the lock before may have started it.
    if answers(&socket).await {
        return Ok(());
    }
    // `auto`: a stale socket (its master killed) is removed and replaced.
    let mut cmd = ssh_command(run.target, run.ssh, run.ctx, "auto", &["-N", "-f"]);
    cmd.env_remove(shipwatch_protocol::supervision::READY_FD_ENV)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let started = tokio::time::Instant::now();
    let mut child = cmd.spawn().map_err(|e| {
        tracing::warn!(host, error = %shipwatch_protocol::Report(&e), "could not start ssh");
        stopped(HostState::Failed)
    })?;
    let stderr = child.stderr.take();
    let status = tokio::select! {
        s = child.wait() => s.ok(),
        _ = tokio::time::sleep_until(deadline) => return Err(stopped(HostState::Timeout)),
        _ = cancel.cancelled() => return Err(stopped(HostState::Cancelled)),
    };
    // ssh's few words fit in the pipe; the backgrounded master has its stderr on
    // /dev/null, but should it keep ours (`-v`), do not wait for it.
    let mut said = Vec::new();
    if let Some(mut err) = stderr {
        let _ = tokio::time::timeout(Duration::from_secs(1), err.read_to_end(&mut said)).await;
    }
    let code = status.and_then(|s| s.code());
    if code == Some(0) {
        tracing::debug!(
            host,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "ssh master up"
        );
        return Ok(());
    }
    let now = shipwatch_protocol::Timestamp::now();
    let lines: Vec<_> = String::from_utf8_lossy(&said)
        .lines()
        .filter(|l| !l.is_empty())
        .map(|text| {
            (
                now,
                shipwatch_protocol::EventBody::Line {
                    host: host.clone(),
                    stream: Stream::Stderr,
                    text: text.to_owned(),
                },
            )
        })
        .collect();
    if !lines.is_empty() {
        let _ = tx.send(lines).await;
    }
    Err(HostOutcome {
        state: if code == Some(255) {
            HostState::Unreachable
        } else {
            HostState::Failed
        },
        exit_code: code,
    })
}

/// Starts the master of a host of the next wave while this one runs, so the host finds
/// its connection up and costs no setup of its own. Best effort and silent: a master that
/// cannot start here is started again, and reported, by the host's own run. Dropped when
/// the wave ends (an ssh still connecting is killed with it).
pub(crate) async fn warm_master(target: &HostTarget, ssh: &SshSpec, ctx: &HostContext) {
    let socket = control_path(target, ssh, ctx);
    if answers(&socket).await {
        return;
    }
    let Ok(_lock) = lock_destination(&socket).await else {
        return;
    };
    if answers(&socket).await {
        return;
    }
    let mut cmd = ssh_command(target, ssh, ctx, "auto", &["-N", "-f"]);
    cmd.env_remove(shipwatch_protocol::supervision::READY_FD_ENV)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    let started = tokio::time::Instant::now();
    let status = match cmd.spawn() {
        Ok(mut child) => child.wait().await.ok(),
        Err(_) => None,
    };
    tracing::debug!(
        host = %target.name,
        ok = status.is_some_and(|s| s.success()),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "ssh master warmed for the next wave"
    );
}

/// Ends every master in `control_dir` (`ssh -O exit`): the runner's own on its way out,
/// and at its start those a killed predecessor of its index left; how many answered.
/// Sessions still open over one end with it, so this never runs beside a job.
pub async fn close_masters(control_dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(control_dir) else {
        return 0;
    };
    let mut exits = tokio::task::JoinSet::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_some() {
            continue; // a lock file
        }
        let mut cmd = Command::new("ssh");
        cmd.env_remove(shipwatch_protocol::supervision::READY_FD_ENV)
            .args(["-O", "exit", "-o"])
            .arg(format!("ControlPath={}", path.display()))
            .arg("shipwatch-master")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        exits.spawn(async move {
            let status = tokio::time::timeout(Duration::from_secs(2), cmd.status()).await;
            let exited = matches!(status, Ok(Ok(s)) if s.success());
            if !exited {
                // Killed (nobody answers), or too slow to answer on a loaded box: a master
                // still running ends by its command line, since once its socket is gone
                // nothing could reach it until ControlPersist.
                let socket = path.clone();
                let ended = tokio::task::spawn_blocking(move || end_masters_of(&socket))
                    .await
                    .unwrap_or(0);
                if ended > 0 {
                    tracing::info!(socket = %path.display(), ended, "ssh master did not answer -O exit; ended it");
                }
                let _ = std::fs::remove_file(&path);
            }
            exited
        });
    }
    let mut closed = 0;
    while let Some(done) = exits.join_next().await {
        closed += usize::from(matches!(done, Ok(true)));
    }
    closed
}

/// SIGTERMs every ssh master (`-N`) whose command line names `socket` as its
/// ControlPath (this runner's own directory: nobody else's); how many.
fn end_masters_of(socket: &Path) -> usize {
    let want = format!("ControlPath={}", socket.display());
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let mut ended = 0;
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let mut args = cmdline.split(|b| *b == 0);
        let names_it = args.clone().any(|a| a == want.as_bytes());
        if names_it
            && args.any(|a| a == b"-N")
            && nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            )
            .is_ok()
        {
            ended += 1;
        }
    }
    ended
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_master_that_does_not_answer_is_ended_by_its_command_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("0123456789abcdef");
        // Stands in for a master too slow to answer: a socket file nobody serves, and a
        // process whose command line names it (`-N`, as masters are started).
        std::fs::write(&socket, "").expect("socket stand-in");
        // bash waiting in its builtin `read` on a pipe nobody writes: one process, no child.
        let mut master = std::process::Command::new("bash")
            .arg("-c")
            .arg("read -t 600 x")
            .arg("-N")
            .arg(format!("ControlPath={}", socket.display()))
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("bash");
        // A host's session over the master (no -N) is not a master: it stays.
        let mut session = std::process::Command::new("bash")
            .arg("-c")
            .arg("read -t 600 x")
            .arg(format!("ControlPath={}", socket.display()))
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("bash");
        assert_eq!(
            close_masters(dir.path()).await,
            0,
            "nothing answered -O exit"
        );
        let asked = std::time::Instant::now();
        let status = loop {
            if let Some(status) = master.try_wait().expect("try_wait") {
                break Some(status);
            }
            if asked.elapsed() > Duration::from_secs(10) {
                let _ = master.kill();
                break None;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        assert!(
            status.is_some_and(|s| !s.success()),
            "the master that did not answer still runs"
        );
        assert!(!socket.exists(), "its socket removed");
        assert!(
            session.try_wait().expect("try_wait").is_none(),
            "the session runs on"
        );
        let _ = session.kill();
        let _ = session.wait();
    }

    #[test]
    fn control_path_is_short() {
        let name = control_name("deploy", &"a".repeat(300), 22);
        assert_eq!(name.len(), 16);
    }
}
