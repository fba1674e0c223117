//! What an operator reads in `journalctl -u shipwatch`: the real `shipwatch up`, its
//! stderr in a file (no terminal), one job end to end. One line per event that matters,
//! none per output line; no colour escapes; one timestamp (none when stderr is the
//! journal, which stamps lines itself); the child's level once; fields as the API spells
//! them.

mod e2e_support;
mod support;

use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use e2e_support::*;
use serde_json::json;
use support::*;

const TASKS: &str = r#"[[tasks]]
name = "deploy"
hosts = ["fleet"]
transport = "local"
max_failures = 1
script = '''
printf '\033[32mcolourful output line\033[0m from %s\n' "$SHIPWATCH_HOST"
echo "stderr output line" >&2
[ "$SHIPWATCH_HOST" != web-02 ] || exit 3
'''
"#;

/// Runs one 3-host job (web-02 fails, tolerated) under `shipwatch up` with `env`, stops
/// the supervisor, and returns its log.
fn log_of_one_job(setup: &Setup, env: &[(&str, &str)]) -> String {
    setup.write_raw(&config_text(setup, "runners = 1", 3, TASKS));
    let mut up = Guard(setup.up(env));
    setup.wait_status("all running", |s| s.all_running(1));
    let id = create_job(setup.port, &json!({"task": "deploy"}));
    let done = wait_job(
        setup.port,
        id,
        Duration::from_secs(30),
        "the end",
        is_terminal,
    );
    assert_eq!(done["state"], "succeeded", "{done:#}");
    // The runner's line is relayed by the supervisor a moment after the job event.
    wait_until("the runner's 'job finished' line", DEADLINE, || {
        setup.log().contains("job finished")
    });
    kill(up.0.id() as i32, "TERM");
    let status = wait_exit(&mut up.0, DEADLINE);
    assert!(status.success(), "{status:?}\n{}", setup.log());
    setup.log()
}

/// How many `YYYY-MM-DDTHH:MM:SS` stamps a line holds.
fn timestamps(line: &str) -> usize {
    let b = line.as_bytes();
    let digit = |i: usize| b.get(i).is_some_and(u8::is_ascii_digit);
    (0..b.len())
        .filter(|&i| {
            (0..4).all(|k| digit(i + k))
                && b.get(i + 4) == Some(&b'-')
                && b.get(i + 10) == Some(&b'T')
                && b.get(i + 13) == Some(&b':')
        })
        .count()
}

fn levels(line: &str) -> usize {
    line.split_whitespace()
        .filter(|w| {
            let w = w.trim_start_matches(|c: char| c == '<' || c == '>' || c.is_ascii_digit());
            matches!(w, "ERROR" | "WARN" | "INFO" | "DEBUG" | "TRACE")
        })
        .count()
}

fn assert_reads_well(log: &str) {
    assert!(!log.contains('\u{1b}'), "colour escapes in the log:\n{log}");
    assert!(
        !log.contains("output line"),
        "a script's output reached the log:\n{log}"
    );
    for debug_form in ["Some(", "None", "state=Ok", "state=Failed", "Succeeded"] {
        assert!(!log.contains(debug_form), "{debug_form} in the log:\n{log}");
    }
    for line in log.lines() {
        assert_eq!(levels(line), 1, "one level per line: {line:?}");
    }
    for expected in [
        "gateway: job queued job=1 task=deploy",
        "runner-0: job assigned job=1 task=deploy hosts=3",
        "runner-0: host finished job=1 host=web-01 state=ok exit_code=0",
        "runner-0: host finished job=1 host=web-02 state=failed exit_code=3",
        "runner-0: job finished job=1 state=succeeded reason=",
    ] {
        assert!(log.contains(expected), "no {expected:?} in:\n{log}");
    }
    let about_the_job = log.lines().filter(|l| l.contains("job=1")).count();
    assert!(
        about_the_job <= 3 + 6,
        "{about_the_job} lines about a 3-host job:\n{log}"
    );
}

#[test]
fn the_log_in_a_file_has_one_timestamp_and_one_level_per_line() {
    let setup = Setup::new("");
    let log = log_of_one_job(&setup, &[]);
    assert_reads_well(&log);
    for line in log.lines() {
        assert_eq!(timestamps(line), 1, "one timestamp per line: {line:?}");
        assert!(
            timestamps(&line[..line.len().min(20)]) == 1,
            "the line starts with its time: {line:?}"
        );
    }
    assert!(log.contains("  INFO runner-0: host finished job=1 host=web-03"));
    assert!(log.contains("  WARN runner-0: host finished job=1 host=web-02 state=failed"));
}

#[test]
fn under_the_journal_lines_carry_their_priority_and_no_timestamp() {
    let setup = Setup::new("");
    // `up` writes its log to this very file: JOURNAL_STREAM names it, as systemd names
    // the journal's socket.
    let path = setup.dir.path().join("up.log");
    std::fs::File::create(&path).expect("log file");
    let meta = std::fs::metadata(&path).expect("log file");
    let stream = format!("{}:{}", meta.dev(), meta.ino());
    let log = log_of_one_job(&setup, &[("JOURNAL_STREAM", &stream)]);
    assert_reads_well(&log);
    for line in log.lines() {
        assert_eq!(timestamps(line), 0, "the journal stamps lines: {line:?}");
        let priority = line.get(..3).unwrap_or_default();
        let level = line.get(3..).unwrap_or_default();
        let expected = match level.split(' ').next() {
            Some("ERROR") => "<3>",
            Some("WARN") => "<4>",
            Some("INFO") => "<6>",
            _ => "<7>",
        };
        assert_eq!(priority, expected, "syslog priority first: {line:?}");
    }
    assert!(log.contains("<6>INFO runner-0: host finished job=1 host=web-03"));
    // A failed host stands out in `journalctl -p warning`.
    assert!(log.contains("<4>WARN runner-0: host finished job=1 host=web-02 state=failed"));
}
