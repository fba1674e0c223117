//! What a user does on a good day, on the real binary: start a job over the API with a
//! nasty parameter, watch it live, read it back, and be told 409 when the task is busy.

mod e2e_support;
mod support;

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use e2e_support::*;
use serde_json::{Value, json};
use support::*;

fn tasks(dir: &std::path::Path) -> String {
    format!(
        r#"[[tasks]]
name = "greet"
hosts = ["fleet"]
transport = "local"
batch = [1, 2]
concurrency = 1
script = '''
printf 'msg=%s\n' "$MSG"
echo "warning from $SHIPWATCH_HOST" >&2
# Hold the first wave until the test lets it go (bounded: 30 s).
for i in $(seq 1 600); do [ -e {go} ] && break; sleep 0.05; done
echo "bye from $SHIPWATCH_HOST"
'''

[[tasks.params]]
name = "MSG"
required = true
"#,
        go = dir.join("go").display()
    )
}

#[test]
fn job_with_a_nasty_param_is_watched_live_read_back_and_a_second_one_gets_409() {
    let setup = Setup::new("");
    let dir = setup.dir.path().to_path_buf();
    setup.write_raw(&config_text(&setup, "runners = 2", 3, &tasks(&dir)));
    let _up = Guard(setup.up(&[]));
    setup.wait_status("all running", |s| s.all_running(2));
    let port = setup.port;

    let pwned = dir.join("pwned");
    let message = format!(
        "it's \"quoted\" $(touch {p}) `touch {p}` and  two  spaces; $HOME \\ end",
        p = pwned.display()
    );
    let (status, body) = http(
        port,
        "POST",
        "/api/jobs",
        &json!({"task": "greet", "params": {"MSG": message}}).to_string(),
    );
    assert_eq!(status, 201, "{body}");
    let created: Value = serde_json::from_str(&body).expect("job JSON");
    let id = created["id"].as_u64().expect("id");
    assert_eq!(created["params"]["MSG"], message.as_str());

    let rt = runtime();
    let seen = Arc::new(AtomicU64::new(0));
    let watcher = rt.spawn(watch_once(
        format!("ws://127.0.0.1:{port}/ws/jobs/{id}?after=0"),
        seen.clone(),
        Duration::from_secs(60),
    ));

    // While it runs, the same task (concurrency = 1) is refused with the running job's id.
    wait_job(port, id, Duration::from_secs(30), "running", |j| {
        j["state"] == "running"
    });
    let (status, body) = http(
        port,
        "POST",
        "/api/jobs",
        r#"{"task":"greet","params":{"MSG":"x"}}"#,
    );
    assert_eq!(status, 409, "{body}");
    let refused: Value = serde_json::from_str(&body).expect("error JSON");
    assert_eq!(refused["field"], "task", "{body}");
    let error = refused["error"].as_str().unwrap_or_default();
    assert!(
        error.contains(&format!("job {id}")),
        "the 409 names the running job {id}: {body}"
    );

    std::fs::write(dir.join("go"), "").expect("let the first wave go");
    let done = wait_job(port, id, Duration::from_secs(30), "the end", is_terminal);
    assert_eq!(
        done["state"],
        "succeeded",
        "{done:#}\n{}",
        log_tail(&setup, 30)
    );

    let (events, end) = rt.block_on(watcher).expect("watcher");
    assert_eq!(end, "close 1000", "the watcher's close after {events:#?}");
    let seqs: Vec<u64> = events.iter().filter_map(|e| e["seq"].as_u64()).collect();
    assert_eq!(
        seqs,
        (1..=events.len() as u64).collect::<Vec<_>>(),
        "the watcher got every seq once, in order"
    );
    let job_states: Vec<&str> = events
        .iter()
        .filter(|e| e["kind"] == "job")
        .filter_map(|e| e["state"].as_str())
        .collect();
    assert_eq!(
        job_states,
        ["running", "succeeded"],
        "the job starts once and ends once"
    );
    let last = events.last().expect("events");
    assert_eq!(
        (&last["kind"], &last["state"]),
        (&json!("job"), &json!("succeeded"))
    );
    for host in host_names(3) {
        let of_host: Vec<&Value> = events
            .iter()
            .filter(|e| e["host"] == host.as_str())
            .collect();
        let shown: Vec<String> = of_host
            .iter()
            .map(|e| match e["kind"].as_str() {
                Some("line") => format!(
                    "{} {}",
                    e["stream"].as_str().unwrap_or("?"),
                    e["text"].as_str().unwrap_or("?")
                ),
                _ => format!(
                    "host {} {}",
                    e["state"].as_str().unwrap_or("?"),
                    e["exit_code"]
                ),
            })
            .collect();
        let stdout: Vec<&str> = shown
            .iter()
            .filter(|s| s.starts_with("stdout "))
            .map(String::as_str)
            .collect();
        assert_eq!(
            stdout,
            [
                format!("stdout msg={message}").as_str(),
                format!("stdout bye from {host}").as_str()
            ],
            "{host}: the param arrives byte for byte, stdout in order: {shown:#?}"
        );
        let stderr: Vec<&str> = shown
            .iter()
            .filter(|s| s.starts_with("stderr "))
            .map(String::as_str)
            .collect();
        assert_eq!(
            stderr,
            [format!("stderr warning from {host}").as_str()],
            "{host}: stderr apart"
        );
        assert_eq!(
            shown.first().map(String::as_str),
            Some("host running null"),
            "{shown:#?}"
        );
        assert_eq!(
            shown.last().map(String::as_str),
            Some("host ok 0"),
            "{shown:#?}"
        );
    }
    assert!(!pwned.exists(), "the param was run as code");

    // Read back: counts, hosts with their waves, the spec that ran.
    let job = job(port, id);
    assert_eq!(
        job["counts"],
        json!({"pending":0,"running":0,"ok":3,"failed":0,"timeout":0,"unreachable":0,"cancelled":0,"skipped":0}),
        "{job:#}"
    );
    let waves: Vec<(String, u64)> = job["hosts"]
        .as_array()
        .expect("hosts")
        .iter()
        .map(|h| {
            (
                h["host"].as_str().unwrap_or("?").to_owned(),
                h["wave"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(
        waves,
        [
            ("web-01".to_owned(), 1),
            ("web-02".to_owned(), 2),
            ("web-03".to_owned(), 2)
        ],
        "{job:#}"
    );
    assert_eq!(
        job["spec"]["waves"],
        json!([["web-01"], ["web-02", "web-03"]])
    );
    assert_eq!(job["params"]["MSG"], message.as_str());
    assert!(
        job["started_at"].is_string() && job["ended_at"].is_string(),
        "{job:#}"
    );
    assert!(
        job["hosts"]
            .as_array()
            .expect("hosts")
            .iter()
            .all(|h| h["exit_code"] == 0 && h["ended_at"].is_string()),
        "{job:#}"
    );

    // The text log and its filters.
    let (status, text) = http(port, "GET", &format!("/api/jobs/{id}/log"), "");
    assert_eq!(status, 200);
    assert!(
        text.contains(&format!(" web-01 stdout| msg={message}\n")),
        "{text}"
    );
    let (status, stderr) = http(
        port,
        "GET",
        &format!("/api/jobs/{id}/log?stream=stderr&host=web-02"),
        "",
    );
    assert_eq!(status, 200);
    let stderr_lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(stderr_lines.len(), 1, "{stderr}");
    assert!(
        stderr_lines[0].ends_with(" web-02 stderr| warning from web-02"),
        "{stderr}"
    );

    // Once it ended, the task takes a new job again.
    let again = create_job(port, &json!({"task": "greet", "params": {"MSG": "again"}}));
    let again = wait_job(port, again, Duration::from_secs(30), "the end", is_terminal);
    assert_eq!(again["state"], "succeeded", "{again:#}");
}

#[test]
fn cancel_mid_job_stops_every_script_even_one_ignoring_sigterm() {
    // An odd sleep duration no other process sleeps for (pid in fixed width).
    let marker = format!("29.{:08}", std::process::id());
    let tasks = r#"[[tasks]]
name = "hold"
hosts = ["fleet"]
transport = "local"
batch = 3
script = '''
[ "$SHIPWATCH_HOST" = web-01 ] && trap '' TERM
echo "holding on $SHIPWATCH_HOST"
sleep "$NAP"
echo "never printed"
'''

[[tasks.params]]
name = "NAP"
pattern = "^[0-9.]+$"
required = true
"#;
    let setup = e2e_support::setup("runners = 1", 3, tasks);
    let _up = Guard(setup.up(&[]));
    setup.wait_status("all running", |s| s.all_running(1));
    let port = setup.port;
    let id = create_job(port, &json!({"task": "hold", "params": {"NAP": marker}}));
    let rt = runtime();
    let seen = Arc::new(AtomicU64::new(0));
    let watcher = rt.spawn(watch_once(
        format!("ws://127.0.0.1:{port}/ws/jobs/{id}?after=0"),
        seen.clone(),
        Duration::from_secs(60),
    ));
    wait_until("3 sleeps running", DEADLINE, || {
        processes_with(&format!("sleep {marker}")).len() == 3
    });

    let (status, body) = http(port, "POST", &format!("/api/jobs/{id}/cancel"), "");
    assert_eq!(status, 202, "{body}");
    let done = wait_job(port, id, Duration::from_secs(30), "the end", is_terminal);
    assert_eq!(done["state"], "cancelled", "{done:#}");
    assert_eq!(done["counts"]["cancelled"], 3, "{done:#}");
    wait_until("every script gone", DEADLINE, || {
        processes_with(&marker).is_empty()
    });

    let (events, end) = rt.block_on(watcher).expect("watcher");
    assert_eq!(end, "close 1000", "{events:#?}");
    let last = events.last().cloned().unwrap_or_default();
    assert_eq!(
        (&last["kind"], &last["state"]),
        (&json!("job"), &json!("cancelled"))
    );
    let lines = events.iter().filter(|e| e["kind"] == "line").count();
    assert_eq!(
        lines, 3,
        "one line a host, nothing after the cancel: {events:#?}"
    );

    // The runner is free again.
    let next = create_job(port, &json!({"task": "hold", "params": {"NAP": "0.1"}}));
    let next = wait_job(port, next, Duration::from_secs(30), "the end", is_terminal);
    assert_eq!(next["state"], "succeeded", "{next:#}");
}

#[test]
fn reload_mid_job_changes_nothing_in_the_running_job_and_drops_no_watcher() {
    let setup = Setup::new("");
    let dir = setup.dir.path().to_path_buf();
    let go = dir.join("go");
    let task = |version: &str, extra: bool| {
        let mut text = format!(
            r#"[[tasks]]
name = "say"
hosts = ["fleet"]
transport = "local"
batch = 2
script = '''
echo "{version} hello from $SHIPWATCH_HOST"
for i in $(seq 1 600); do [ -e {go} ] && break; sleep 0.05; done
echo "{version} bye from $SHIPWATCH_HOST"
'''
"#,
            go = go.display()
        );
        if extra {
            text.push_str(
                "\n[[tasks]]\nname = \"extra\"\nhosts = [\"fleet\"]\ntransport = \"local\"\nscript = \"true\"\n",
            );
        }
        text
    };
    setup.write_raw(&config_text(&setup, "runners = 1", 2, &task("v1", false)));
    let up = Guard(setup.up(&[]));
    let before = setup.wait_status("all running", |s| s.all_running(1));
    let port = setup.port;
    let id = create_job(port, &json!({"task": "say"}));

    let rt = runtime();
    let seen = Arc::new(AtomicU64::new(0));
    let watcher = rt.spawn(watch_once(
        format!("ws://127.0.0.1:{port}/ws/jobs/{id}?after=0"),
        seen.clone(),
        Duration::from_secs(60),
    ));
    let list = rt.spawn(watch_once(
        format!("ws://127.0.0.1:{port}/ws/jobs"),
        Arc::default(),
        Duration::from_secs(60),
    ));
    // job running + 2 host events + 2 lines.
    wait_progress(&seen, 5, DEADLINE, "the first lines");

    // A new script, a new task and one more runner, applied in place.
    setup.write_raw(&config_text(&setup, "runners = 2", 2, &task("v2", true)));
    let reload = setup.ctl(&["reload"]);
    assert!(
        reload.status.success(),
        "ctl reload: {}",
        String::from_utf8_lossy(&reload.stderr)
    );
    let after = setup.wait_status("two runners", |s| s.all_running(2));
    assert_eq!(after.pid("gateway"), before.pid("gateway"), "gateway kept");
    assert_eq!(
        after.pid("runner-0"),
        before.pid("runner-0"),
        "runner-0 kept"
    );
    wait_until("the gateway knows the new task", DEADLINE, || {
        http(port, "GET", "/api/tasks", "").1.contains("\"extra\"")
    });

    std::fs::write(&go, "").expect("go");
    let done = wait_job(port, id, Duration::from_secs(30), "the end", is_terminal);
    assert_eq!(done["state"], "succeeded", "{done:#}");
    let (events, end) = rt.block_on(watcher).expect("watcher");
    assert_eq!(end, "close 1000", "one connection all along: {events:#?}");
    let texts: Vec<&str> = events
        .iter()
        .filter(|e| e["kind"] == "line")
        .filter_map(|e| e["text"].as_str())
        .collect();
    assert!(
        texts.len() == 4 && texts.iter().all(|t| t.starts_with("v1 ")),
        "the running job ran the script it started with: {texts:?}"
    );
    let as_watched: Vec<Event> = events.iter().map(Event::from_json).collect();
    assert!(as_watched == stored_log(port, id), "watched = stored");

    let next = create_job(port, &json!({"task": "say"}));
    wait_job(port, next, Duration::from_secs(30), "the end", is_terminal);
    let texts: Vec<String> = stored_log(port, next)
        .into_iter()
        .filter_map(|e| e.text)
        .collect();
    assert!(
        texts.len() == 4 && texts.iter().all(|t| t.starts_with("v2 ")),
        "the next job runs the new script: {texts:?}"
    );

    // The job-list watcher stayed connected through the reload and saw both jobs end.
    let (changes, list_end) = {
        // It only ends when the gateway stops: stop the supervisor, then read it.
        kill(up.0.id() as i32, "TERM");
        rt.block_on(list).expect("list watcher")
    };
    assert_eq!(list_end, "close 1001", "{changes:#?}");
    for job in [id, next] {
        assert!(
            changes
                .iter()
                .any(|c| c["id"] == job && c["state"] == "succeeded"),
            "job {job}'s end on /ws/jobs: {changes:#?}"
        );
    }
}

#[test]
fn odd_output_arrives_as_designed_through_store_and_websocket() {
    let setup = Setup::new("");
    let shown = setup.dir.path().join("progress-shown");
    // The partial line goes out after the runner's idle flush (200 ms); the script holds
    // its last line until the test has seen that one stored, so no timing decides them.
    let tasks = format!(
        r#"[[tasks]]
name = "odd"
hosts = ["fleet"]
transport = "local"
script = '''
printf '\033[32mgreen\033[0m\n'
printf 'bad \377\376 bytes\n'
printf 'tab\there "quotes" \\ back\n'
head -c 100000 /dev/zero | tr '\0' z; echo
printf 'progress 50%%\r'
for i in $(seq 1 1200); do [ -e {shown} ] && break; sleep 0.05; done
printf 'no newline at the end'
'''
"#,
        shown = shown.display()
    );
    setup.write_raw(&config_text(&setup, "runners = 1", 1, &tasks));
    let _up = Guard(setup.up(&[]));
    setup.wait_status("all running", |s| s.all_running(1));
    let port = setup.port;
    let id = create_job(port, &json!({"task": "odd"}));
    let rt = runtime();
    let watcher = rt.spawn(watch_once(
        format!("ws://127.0.0.1:{port}/ws/jobs/{id}?after=0&kinds=line"),
        Arc::default(),
        Duration::from_secs(60),
    ));
    wait_until("the progress line stored", Duration::from_secs(30), || {
        stored_log(port, id)
            .iter()
            .any(|e| e.text.as_deref() == Some("progress 50%\r"))
    });
    std::fs::write(&shown, "").expect("touch progress-shown");
    let (events, end) = rt.block_on(watcher).expect("watcher");
    assert_eq!(end, "close 1000", "{events:#?}");
    let texts: Vec<String> = events
        .iter()
        .filter_map(|e| e["text"].as_str().map(str::to_owned))
        .collect();
    let zs = "z".repeat(100_000);
    let want = [
        "\u{1b}[32mgreen\u{1b}[0m".to_owned(),
        "bad \u{fffd}\u{fffd} bytes".to_owned(),
        "tab\there \"quotes\" \\ back".to_owned(),
        zs[..65_536].to_owned(),
        zs[65_536..].to_owned(),
        "progress 50%\r".to_owned(),
        "no newline at the end".to_owned(),
    ];
    assert_eq!(texts, want, "lines as DESIGN §5 says");
    let stored: Vec<String> = stored_log(port, id)
        .into_iter()
        .filter(|e| e.kind == "line")
        .filter_map(|e| e.text)
        .collect();
    assert_eq!(stored, want, "the store holds the same");
}
