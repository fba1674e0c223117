//! Over real ssh on the real binary: a job's hosts run over the runners' master
//! connections, and none of those outlives `shipwatch up` (a master is a daemon in its
//! own session: stopping the runner's process group does not reach it).

mod e2e_support;
mod support;

use std::time::Duration;

use e2e_support::*;
use serde_json::json;
use shipwatch_sshtest as fleet;
use support::*;

#[test]
fn no_ssh_master_outlives_shipwatch_up() {
    let Some(f) = fleet::fleet() else { return };
    let setup = Setup::new("");
    let hosts: Vec<String> = (0..4)
        .map(|i| format!("\"web-{i:02}=127.0.0.1:{}\"", f.ports[i]))
        .collect();
    let config = setup.config_with(
        "runners = 2\nwatch_config = false",
        &format!(
            r#"[auth]
anonymous = "admin"

{ssh}
[hosts]
fleet = [{hosts}]

[[tasks]]
name = "greet"
hosts = ["fleet"]
batch = 2
script = "echo hi from $SHIPWATCH_HOST"
"#,
            ssh = f.ssh_section(&f.known_hosts),
            hosts = hosts.join(", "),
        ),
    );
    setup.write_raw(&config);
    let mut up = Guard(setup.up(&[]));
    setup.wait_status("all running", |s| s.all_running(2));
    for _ in 0..2 {
        let id = create_job(setup.port, &json!({"task": "greet"}));
        let job = wait_job(
            setup.port,
            id,
            Duration::from_secs(60),
            "its end",
            is_terminal,
        );
        assert_eq!(
            job["state"],
            "succeeded",
            "{job:#}\n{}",
            log_tail(&setup, 30)
        );
    }
    // Masters: ssh processes naming a ControlPath in this setup's run dir.
    let marker = format!("ControlPath={}", setup.dir.path().join("run").display());
    let masters = processes_with(&marker);
    assert!(
        !masters.is_empty(),
        "the jobs left master connections for the next one"
    );
    kill(up.0.id() as i32, "TERM");
    let status = wait_exit(&mut up.0, Duration::from_secs(30));
    assert!(status.success(), "shipwatch up stopped cleanly: {status:?}");
    wait_until("no ssh master left", Duration::from_secs(10), || {
        processes_with(&marker).is_empty()
    });
}
