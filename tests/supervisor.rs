//! `shipwatch up` end to end: the real binary, its real gateway and runners, a
//! NOTIFY_SOCKET bound by the test, and `shipwatch ctl` to look inside.

mod support;

use std::time::Duration;

use support::*;

fn gateway_answers_healthz(port: u16) -> bool {
    try_http(port, "GET", "/healthz", "").is_some_and(|(status, _)| status == 200)
}

#[test]
fn ready_only_when_all_run_then_watchdog_then_stopping_and_clean_exit() {
    let setup = Setup::new("runners = 3");
    let (notify, notify_path) = setup.notify_socket();
    let mut up = Guard(setup.up(&[
        ("NOTIFY_SOCKET", path_str(&notify_path)),
        ("WATCHDOG_USEC", "1000000"),
    ]));

    let mut seen = Vec::new();
    wait_notify(&notify, "READY=1", &mut seen);
    // READY=1 came: by then the gateway answers and every runner runs.
    assert!(
        gateway_answers_healthz(setup.port),
        "READY=1 before /healthz answers"
    );
    let status = setup.status().expect("ctl status answers once ready");
    assert!(status.all_running(3), "READY=1 before all ran: {status:#?}");
    assert!(
        seen.iter()
            .any(|m| m.contains("STATUS=gateway up, 3/3 runners")),
        "STATUS= says what runs: {seen:?}"
    );

    wait_notify(&notify, "WATCHDOG=1", &mut seen);

    let pids = status.pids();
    assert_eq!(pids.len(), 4);
    kill(up.0.id() as i32, "TERM");
    wait_notify(&notify, "STOPPING=1", &mut seen);
    let exit = wait_exit(&mut up.0, DEADLINE);
    assert!(
        exit.success(),
        "exit status {exit:?}; log:\n{}",
        setup.log()
    );
    for pid in pids {
        assert!(process_gone(pid), "child {pid} outlived the supervisor");
    }
    assert!(
        !setup.dir.path().join("run/control.sock").exists(),
        "control socket left behind"
    );
}

#[test]
fn killed_runner_and_gateway_come_back_and_restarts_count() {
    let setup = Setup::new("runners = 2");
    let _up = Guard(setup.up(&[]));
    let before = setup.wait_status("all running", |s| s.all_running(2));

    let runner = before.pid("runner-1");
    kill(runner, "KILL");
    let after = setup.wait_status("runner-1 back", |s| {
        s.get("runner-1")
            .is_some_and(|p| p.state == "running" && p.pid != Some(runner) && p.restarts == 1)
    });
    let last = after.get("runner-1").and_then(|p| p.last_exit.clone());
    assert!(
        last.as_deref().is_some_and(|l| l.contains("SIGKILL")),
        "last exit names the signal: {last:?}"
    );
    assert_eq!(
        after.pid("runner-0"),
        before.pid("runner-0"),
        "runner-0 untouched"
    );

    let gateway = before.pid("gateway");
    kill(gateway, "KILL");
    setup.wait_status("gateway back", |s| {
        s.get("gateway")
            .is_some_and(|p| p.state == "running" && p.pid != Some(gateway) && p.restarts == 1)
    });
    wait_until("gateway answers again", DEADLINE, || {
        gateway_answers_healthz(setup.port)
    });

    let table = setup.ctl(&["status"]);
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        table.contains("NAME") && table.contains("RESTARTS") && table.contains("LAST-EXIT"),
        "{table}"
    );
    let gateway_row = table
        .lines()
        .skip_while(|l| !l.starts_with("NAME"))
        .find(|l| l.starts_with("gateway "))
        .expect("gateway row");
    assert!(
        gateway_row.split_whitespace().nth(4) == Some("1"),
        "restart count in the table: {gateway_row}"
    );
}

#[test]
fn child_exiting_at_once_backs_off_to_fatal_says_why_and_recovers() {
    // The gateway cannot bind a port the test holds: it exits at once, every time.
    let setup = Setup::new("runners = 1\nstart_secs = 1\nstart_retries = 3\nbackoff_max_secs = 1");
    let blocker = std::net::TcpListener::bind(("127.0.0.1", setup.port)).expect("hold the port");
    let _up = Guard(setup.up(&[]));

    let fatal = setup.wait_status("gateway fatal", |s| {
        s.get("gateway").is_some_and(|p| p.state == "fatal")
    });
    let gateway = fatal.get("gateway").expect("gateway row");
    assert!(gateway.restarts >= 3, "{gateway:?}");
    let why = gateway.last_exit.clone().unwrap_or_default();
    assert!(
        why.starts_with("exit ") && why.contains(" after 0."),
        "says how and how soon it exited: {why:?}"
    );
    assert!(
        fatal.message.contains("fatal"),
        "status line says so: {:?}",
        fatal.message
    );
    assert!(
        fatal.get("runner-0").is_none(),
        "runners wait for the gateway"
    );
    assert!(setup.log().contains("FATAL"), "the log says so");

    // Never a dead end: once the port is free it comes back by itself.
    drop(blocker);
    setup.wait_status("recovered after FATAL", |s| s.all_running(1));
}

#[test]
fn runner_count_follows_the_file_and_a_broken_edit_changes_nothing() {
    let setup = Setup::new("runners = 3");
    let _up = Guard(setup.up(&[]));
    let three = setup.wait_status("3 runners", |s| s.all_running(3));

    setup.write_config("runners = 5");
    let five = setup.wait_status("5 runners", |s| s.all_running(5));
    for name in ["gateway", "runner-0", "runner-1", "runner-2"] {
        assert_eq!(five.pid(name), three.pid(name), "{name} was restarted");
    }
    let drained = [
        five.pid("runner-2"),
        five.pid("runner-3"),
        five.pid("runner-4"),
    ];

    setup.write_config("runners = 2");
    let two = setup.wait_status("2 runners", |s| s.all_running(2));
    for name in ["gateway", "runner-0", "runner-1"] {
        assert_eq!(two.pid(name), three.pid(name), "{name} was restarted");
    }
    wait_until("drained runners exit", DEADLINE, || {
        drained.iter().all(|&pid| process_gone(pid))
    });

    // A broken edit: error with line:col from `ctl reload`, exit 1, nothing changes.
    setup.write_raw(&setup.config_text("runners = 7\nbogus_key = 1"));
    let reload = setup.ctl(&["reload"]);
    assert!(!reload.status.success(), "ctl reload must fail");
    let stderr = String::from_utf8_lossy(&reload.stderr);
    assert!(
        stderr.contains("shipwatch.toml:") && stderr.contains("bogus_key"),
        "error names file:line:col and key: {stderr}"
    );
    let after = setup.status().expect("status");
    assert!(after.all_running(2), "{after:#?}");
    for name in ["gateway", "runner-0", "runner-1"] {
        assert_eq!(after.pid(name), three.pid(name));
    }
    assert!(setup.log().contains("bogus_key"), "the log has the error");

    // Children killed while the file is broken come back with the config that runs
    // (the supervisor's snapshot), not the broken file: no backoff, no FATAL.
    kill(after.pid("gateway"), "KILL");
    kill(after.pid("runner-1"), "KILL");
    let back = setup.wait_status("gateway and runner-1 back on the running config", |s| {
        s.all_running(2)
            && s.get("gateway").is_some_and(|p| p.restarts == 1)
            && s.get("runner-1").is_some_and(|p| p.restarts == 1)
    });
    assert_eq!(back.pid("runner-0"), three.pid("runner-0"));
    assert!(gateway_answers_healthz(setup.port));
}

#[test]
fn ctl_scale_and_restart() {
    let setup = Setup::new("runners = 1\nwatch_config = false");
    let _up = Guard(setup.up(&[]));
    let one = setup.wait_status("1 runner", |s| s.all_running(1));

    assert!(setup.ctl(&["scale", "3"]).status.success());
    let three = setup.wait_status("3 runners", |s| s.all_running(3));
    assert_eq!(three.pid("runner-0"), one.pid("runner-0"));

    assert!(setup.ctl(&["restart", "runner-0"]).status.success());
    let restarted = setup.wait_status("runner-0 restarted", |s| {
        s.all_running(3) && s.get("runner-0").and_then(|p| p.pid) != Some(one.pid("runner-0"))
    });
    assert_eq!(restarted.pid("runner-1"), three.pid("runner-1"));
    assert_eq!(restarted.pid("gateway"), three.pid("gateway"));

    let unknown = setup.ctl(&["restart", "nobody"]);
    assert!(!unknown.status.success());

    assert!(setup.ctl(&["stop"]).status.success());
    let mut up = _up;
    let exit = wait_exit(&mut up.0, DEADLINE);
    assert!(exit.success());
    for pid in restarted.pids() {
        assert!(process_gone(pid), "child {pid} left behind");
    }
}

#[test]
fn control_socket_is_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let setup = Setup::new("runners = 1");
    let _up = Guard(setup.up(&[]));
    setup.wait_status("running", |s| s.all_running(1));
    let mode = std::fs::metadata(setup.dir.path().join("run/control.sock"))
        .expect("control.sock")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn sigkill_of_the_supervisor_takes_its_children_within_a_second() {
    let setup = Setup::new("runners = 2");
    let mut up = Guard(setup.up(&[]));
    let status = setup.wait_status("all running", |s| s.all_running(2));
    let pids = status.pids();
    kill(up.0.id() as i32, "KILL");
    let _ = wait_exit(&mut up.0, DEADLINE);
    wait_until("children gone", Duration::from_secs(1), || {
        pids.iter().all(|&pid| process_gone(pid))
    });
}

#[test]
fn sighup_tells_the_gateway_to_reload_in_place_between_reloading_and_ready() {
    let setup = Setup::new("runners = 1\nwatch_config = false");
    let (notify, notify_path) = setup.notify_socket();
    let mut up = Guard(setup.up(&[("NOTIFY_SOCKET", path_str(&notify_path))]));
    let mut seen = Vec::new();
    wait_notify(&notify, "READY=1", &mut seen);
    let before = setup.status().expect("status");

    // A task change concerns the gateway only.
    let text = setup
        .config_text("runners = 1\nwatch_config = false")
        .replace("echo hi", "echo changed");
    setup.write_raw(&text);
    seen.clear();
    kill(up.0.id() as i32, "HUP");
    wait_notify(&notify, "READY=1", &mut seen);
    assert!(
        seen.iter()
            .any(|m| m.contains("RELOADING=1") && m.contains("MONOTONIC_USEC=")),
        "RELOADING=1 with MONOTONIC_USEC before READY=1: {seen:?}"
    );
    wait_until("reload logged", DEADLINE, || {
        setup.log().contains("gateway told to reload")
    });
    let after = setup.status().expect("status");
    assert_eq!(
        after.pid("gateway"),
        before.pid("gateway"),
        "gateway restarted"
    );
    assert_eq!(
        after.pid("runner-0"),
        before.pid("runner-0"),
        "runner restarted"
    );
    assert!(after.all_running(1), "{after:#?}");
    kill(up.0.id() as i32, "TERM");
    assert!(wait_exit(&mut up.0, DEADLINE).success());
}

#[test]
fn ctl_with_nothing_running_names_the_os_error_once() {
    let setup = Setup::new("");
    let out = setup.ctl(&["status"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(
        stderr.matches("No such file or directory").count(),
        1,
        "each cause once: {stderr}"
    );
    assert!(
        stderr.contains("control.sock"),
        "names the socket: {stderr}"
    );
}

/// The live runner-`index` child of `supervisor` (a zombie not yet reaped does not count),
/// from the supervisor's own list of children (it forks on its main thread): cheap
/// enough to poll every half millisecond, so a restart's time is the supervisor's, not
/// the probe's (a walk over all of /proc every 10 ms added up to tens of ms on a busy box).
fn runner_pid(supervisor: i32, index: u32) -> Option<i32> {
    let want = format!("runner\0--index\0{index}\0");
    let children =
        std::fs::read_to_string(format!("/proc/{supervisor}/task/{supervisor}/children")).ok()?;
    children
        .split_whitespace()
        .filter_map(|p| p.parse::<i32>().ok())
        .find(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            String::from_utf8_lossy(&cmdline).contains(&want) && !process_gone(*pid)
        })
}

/// Kills runner-`index` (which ran past start_secs) and times until its successor runs.
fn kill_and_time_restart(supervisor: i32, index: u32) -> (i32, Duration) {
    let old = runner_pid(supervisor, index).expect("a runner to kill");
    // The signal itself, not kill(1): its own start and exit would hide part of the time.
    let killed = std::time::Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(old),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill the runner");
    loop {
        if let Some(pid) = runner_pid(supervisor, index).filter(|p| *p != old) {
            return (pid, killed.elapsed());
        }
        assert!(
            killed.elapsed() < DEADLINE,
            "runner-{index} not restarted within {DEADLINE:?}"
        );
        std::thread::sleep(Duration::from_micros(500));
    }
}

/// Waits until runner-`index` ran past start_secs (1 s), so its exit is restarted at once.
fn past_start_secs() {
    let started = std::time::Instant::now();
    wait_until("the runner ran start_secs", DEADLINE, || {
        started.elapsed() > Duration::from_millis(1200)
    });
}

/// A stderr nobody reads (a journal that stalls) never stops the supervisor: its own log
/// lines and those it relays wait in a queue, and it restarts a killed runner.
#[test]
fn a_stderr_nobody_reads_never_stops_a_restart() {
    use std::os::fd::AsFd;
    let setup = Setup::new("runners = 2");
    // A pipe of one page, already full, that nobody ever reads: every write blocks.
    let (read_end, write_end) = nix::unistd::pipe().expect("pipe");
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    let _ = fcntl(write_end.as_fd(), FcntlArg::F_SETPIPE_SZ(4096));
    fcntl(write_end.as_fd(), FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).expect("non-blocking");
    let block = [b'x'; 512];
    while nix::unistd::write(&write_end, &block).is_ok() {}
    fcntl(write_end.as_fd(), FcntlArg::F_SETFL(OFlag::empty())).expect("blocking again");
    let child = std::process::Command::new(BIN)
        .arg("up")
        .arg("-c")
        .arg(setup.config_path())
        .current_dir(setup.dir.path())
        .env("SHIPWATCH_LOG", "info")
        .env_remove("NOTIFY_SOCKET")
        .env_remove("WATCHDOG_USEC")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::from(write_end))
        .spawn()
        .expect("spawn shipwatch up");
    let up = Guard(child);
    let supervisor = up.0.id() as i32;
    wait_until("runner-1 up with stderr full", DEADLINE, || {
        runner_pid(supervisor, 1).is_some()
    });
    for _ in 0..3 {
        past_start_secs();
        let (_, took) = kill_and_time_restart(supervisor, 1);
        println!("runner-1 back {took:?} after a kill -9, stderr full");
    }
    setup.wait_status("ctl status answers, every child running", |s| {
        s.all_running(2)
    });
    drop(up);
    drop(read_end);
}

#[test]
fn a_notify_socket_nobody_reads_never_delays_a_restart() {
    let setup = Setup::new("runners = 2");
    // Bound, never read: its queue fills and stays full.
    let (_unread, notify_path) = setup.notify_socket();
    let up = Guard(setup.up(&[
        ("NOTIFY_SOCKET", path_str(&notify_path)),
        ("WATCHDOG_USEC", "1000000"),
    ]));
    let supervisor = up.0.id() as i32;
    wait_until("runner-1 up", DEADLINE, || {
        runner_pid(supervisor, 1).is_some()
    });
    // Fill what is left of the queue (net.unix.max_dgram_qlen), so the supervisor's next
    // STATUS= or WATCHDOG=1 finds it full.
    let filler = std::os::unix::net::UnixDatagram::unbound().expect("socket");
    filler.set_nonblocking(true).expect("non-blocking");
    let mut queued = 0;
    while filler.send_to(b"FILLER=1\n", &notify_path).is_ok() {
        queued += 1;
        assert!(queued < 100_000, "the notify queue never filled");
    }
    let mut times = Vec::new();
    for _ in 1..=3 {
        past_start_secs();
        let (_, took) = kill_and_time_restart(supervisor, 1);
        times.push(took);
    }
    println!("runner-1 restarts with the notify socket full: {times:?} after each kill -9");
    for (round, took) in times.iter().enumerate() {
        assert!(
            // A blocked loop never restarts it; the bound only keeps a loaded CI box
            // from failing a restart that merely took a while (the figure is printed).
            *took < Duration::from_secs(5),
            "restart {} took {took:?}; log:\n{}",
            round + 1,
            setup.log()
        );
    }
    let log = setup.log();
    let warned = log.matches("cannot queue an sd_notify message").count();
    assert_eq!(
        warned, 1,
        "one warning for the one burst of drops; log:\n{log}"
    );
}
