//! Scaling down while runners are busy: the runner that goes away finishes its job first
//! (the job succeeds, nothing is lost or cancelled), the one that stays keeps its PID, and
//! the queue keeps moving on the runner that is left.

mod e2e_support;
mod support;

use e2e_support::{create_job, job};
use support::{DEADLINE, Guard, Setup, wait_until};

/// Two tasks whose hosts wait for the test's `go` file, so both runners are busy at once.
fn config(setup: &Setup, runners: u32) -> String {
    let go = setup.dir.path().join("go");
    let go = go.display();
    let task = |name: &str| {
        format!(
            r#"
[[tasks]]
name = "{name}"
hosts = ["web"]
transport = "local"
script = """
echo "{name} on $SHIPWATCH_HOST waiting"
while [ ! -e {go} ]; do sleep 0.05; done
echo "{name} done"
"""
"#
        )
    };
    setup.config_with(
        &format!("runners = {runners}"),
        &format!(
            r#"[auth]
anonymous = "operator"

[hosts]
web = ["web-01"]
{a}{b}"#,
            a = task("slow-a"),
            b = task("slow-b"),
        ),
    )
}

fn create(port: u16, task: &str) -> u64 {
    create_job(port, &serde_json::json!({ "task": task }))
}

fn job_state(port: u16, id: u64) -> String {
    job(port, id)["state"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn a_runner_scaled_away_finishes_its_job_before_it_exits() {
    let setup = Setup::new("runners = 2");
    setup.write_raw(&config(&setup, 2));
    let up = Guard(setup.up(&[]));
    let before = setup.wait_status("gateway and 2 runners", |s| s.all_running(2));
    let port = setup.port;

    let a = create(port, "slow-a");
    let b = create(port, "slow-b");
    wait_until("both jobs running", DEADLINE, || {
        job_state(port, a) == "running" && job_state(port, b) == "running"
    });

    setup.write_raw(&config(&setup, 1));
    wait_until("runner-1 draining", DEADLINE, || {
        setup.log().contains("runner-1: draining")
    });
    // Draining, not killed: runner-1 is still there while its job waits for `go`.
    let status = setup.status().expect("status");
    assert_eq!(
        status.get("runner-1").and_then(|p| p.pid),
        Some(before.pid("runner-1")),
        "runner-1 must stay alive until its job is done: {status:#?}"
    );
    assert_eq!(job_state(port, a), "running");
    assert_eq!(job_state(port, b), "running");

    std::fs::write(setup.dir.path().join("go"), "").expect("write go");
    wait_until("both jobs ended", DEADLINE, || {
        job_state(port, a) != "running" && job_state(port, b) != "running"
    });
    assert_eq!(job_state(port, a), "succeeded", "log:\n{}", setup.log());
    assert_eq!(job_state(port, b), "succeeded", "log:\n{}", setup.log());

    let after = setup.wait_status("runner-1 gone, runner-0 kept", |s| s.all_running(1));
    assert_eq!(after.pid("runner-0"), before.pid("runner-0"));
    assert_eq!(after.pid("gateway"), before.pid("gateway"));

    // The queue keeps moving on the runner that is left.
    let c = create(port, "slow-a");
    wait_until("the next job ends", DEADLINE, || {
        !matches!(job_state(port, c).as_str(), "queued" | "running")
    });
    assert_eq!(job_state(port, c), "succeeded", "log:\n{}", setup.log());
    drop(up);
}
