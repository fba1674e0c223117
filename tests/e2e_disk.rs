//! DESIGN §9 "disk full" on the real binary: `shipwatch up` runs in its own mount
//! namespace (`unshare`) with its data_dir on a small tmpfs, so the store really fills up.

mod e2e_support;
mod support;

use std::sync::Arc;
use std::time::Duration;

use e2e_support::*;
use serde_json::json;
use support::*;

/// The tmpfs holds the database and a ballast file the test deletes to make room again;
/// the ballast is larger than what the database can hold, because freeing room first lets
/// SQLite checkpoint its WAL into the database file, which takes up to the WAL's size.
const TMPFS: &str = "size=10m";
const BALLAST_MB: u32 = 6;

#[test]
fn disk_full_fails_the_job_with_a_reason_and_the_gateway_keeps_serving() {
    let setup = Setup::new("");
    let dir = setup.dir.path().to_path_buf();
    let go = dir.join("go");
    let tasks = format!(
        r#"[[tasks]]
name = "flood"
hosts = ["fleet"]
transport = "local"
batch = 2
script = '''
for i in $(seq 1 600); do [ -e {go} ] && break; sleep 0.05; done
x=$(head -c 1000 /dev/zero | tr '\0' y)
for i in $(seq 1 20000); do echo "$i $x"; done
'''

[[tasks]]
name = "small"
hosts = ["fleet"]
transport = "local"
script = 'echo "small on $SHIPWATCH_HOST"'
"#,
        go = go.display()
    );
    setup.write_raw(&config_text(&setup, "runners = 1", 2, &tasks));
    let (_up, ballast) = up_on_small_disk(&setup, TMPFS, BALLAST_MB, &[]);
    setup.wait_status("all running", |s| s.all_running(1));
    let port = setup.port;
    assert!(ballast.exists(), "no ballast at {}", ballast.display());

    let id = create_job(port, &json!({"task": "flood"}));
    let rt = runtime();
    let watcher = rt.spawn(follow(
        port,
        id,
        WatchPlan::new("all", "", 0),
        Arc::default(),
        Duration::from_secs(90),
    ));
    wait_job(port, id, Duration::from_secs(30), "2 hosts running", |j| {
        j["counts"]["running"] == 2
    });
    std::fs::write(&go, "").expect("go");

    // 40 MB of lines into 8 MB: the store fills up, and the gateway keeps serving.
    wait_until("the store full", Duration::from_secs(60), || {
        setup.log().contains("disk is full")
    });
    assert_eq!(http(port, "GET", "/healthz", "").0, 200);
    assert_eq!(http(port, "GET", &format!("/api/jobs/{id}"), "").0, 200);
    // The job's scripts were stopped: nothing can be stored for them.
    let marker = go.display().to_string();
    wait_until("the flood's scripts stopped", DEADLINE, || {
        processes_with(&marker).is_empty()
    });

    // Room again: the job ends failed with a reason, its watcher gets that and 1000,
    // and the next job runs.
    std::fs::remove_file(&ballast).expect("remove the ballast");
    let failed = wait_job(port, id, Duration::from_secs(30), "the end", is_terminal);
    assert_eq!(
        failed["state"],
        "failed",
        "{failed:#}\n{}",
        log_tail(&setup, 20)
    );
    let reason = failed["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("full"), "the reason says why: {failed:#}");
    assert_eq!(failed["counts"]["running"], 0, "{failed:#}");
    let seen = rt.block_on(watcher).expect("watcher");
    assert_eq!(seen.final_code(), Some(1000), "{:?}", seen.ends);
    let last = seen.events.last().expect("events");
    assert_eq!(
        (last.kind.as_str(), last.state.as_deref()),
        ("job", Some("failed"))
    );
    let log = stored_log(port, id);
    assert_gapless(&log);

    let next = create_job(port, &json!({"task": "small"}));
    let start = std::time::Instant::now();
    let mut last = job(port, next);
    while !is_terminal(&last) && start.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(100));
        last = job(port, next);
    }
    assert_eq!(
        last["state"],
        "succeeded",
        "the next job: {last:#}\n{}",
        log_tail(&setup, 60)
    );
}

#[test]
fn max_log_bytes_keeps_the_first_lines_then_one_notice_and_the_job_still_ends() {
    const CAP: usize = 20_000;
    let tasks = r#"[[tasks]]
name = "chatty"
hosts = ["fleet"]
transport = "local"
batch = 2
script = '''
pad=$(head -c 90 /dev/zero | tr '\0' .)
# Lines of 11, 51 and 91 bytes: a short line after a dropped long one must not be kept.
for i in $(seq 1 500); do printf '%05d %s\n' $i "${pad:0:$(( (i % 3) * 40 + 5 ))}"; done
'''
"#;
    let setup = Setup::new("");
    let text = config_text(&setup, "runners = 1", 2, tasks).replace(
        "[supervisor]",
        &format!("max_log_bytes = {CAP}\n\n[supervisor]"),
    );
    setup.write_raw(&text);
    let _up = Guard(setup.up(&[]));
    setup.wait_status("all running", |s| s.all_running(1));
    let port = setup.port;
    let id = create_job(port, &json!({"task": "chatty"}));
    let rt = runtime();
    let notices = rt.spawn(watch_once(
        format!("ws://127.0.0.1:{port}/ws/jobs/{id}?after=0&kinds=notice"),
        Arc::default(),
        Duration::from_secs(60),
    ));
    let done = wait_job(port, id, Duration::from_secs(30), "the end", is_terminal);
    assert_eq!(done["state"], "succeeded", "{done:#}");
    assert_eq!(done["counts"]["ok"], 2, "{done:#}");

    let log = stored_log(port, id);
    assert_gapless(&log);
    let notice_at = log
        .iter()
        .position(|e| e.kind == "notice")
        .expect("a notice when the cap is reached");
    assert_eq!(log.iter().filter(|e| e.kind == "notice").count(), 1);
    assert!(
        log[notice_at]
            .text
            .as_deref()
            .is_some_and(|t| t.contains("max_log_bytes")),
        "{:?}",
        log[notice_at]
    );
    let stored: usize = log
        .iter()
        .filter(|e| e.kind == "line")
        .map(|e| e.text.as_deref().unwrap_or_default().len())
        .sum();
    assert!(
        stored <= CAP && stored > CAP - 100,
        "{stored} bytes of lines stored"
    );
    assert!(
        log[notice_at..].iter().all(|e| e.kind != "line"),
        "no line stored after the notice"
    );
    for host in host_names(2) {
        let numbers: Vec<usize> = log
            .iter()
            .filter(|e| e.kind == "line" && e.host.as_deref() == Some(host.as_str()))
            .filter_map(|e| e.text.as_deref()?.get(..5)?.parse().ok())
            .collect();
        assert_eq!(
            numbers,
            (1..=numbers.len()).collect::<Vec<_>>(),
            "{host}: its first lines, in order"
        );
    }
    let (events, end) = rt.block_on(notices).expect("notice watcher");
    assert_eq!(end, "close 1000");
    assert_eq!(
        events.len(),
        1,
        "kinds=notice gets the notice only: {events:#?}"
    );
}
