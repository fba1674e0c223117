//! The command-line client (DESIGN §3) on the real binary against a real `shipwatch up`:
//! what it prints, how it exits, and that a followed job's every line is printed exactly
//! once, also across a gateway SIGKILL and on a terminal with the live status line.

mod e2e_support;
mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use e2e_support::*;
use serde_json::Value;
use support::*;

/// The tasks of the first test: a 20-host task that succeeds, one whose last wave has
/// two failures (until `fixed` exists), and one that waits to be cancelled.
fn tasks(dir: &Path) -> String {
    format!(
        r#"[[tasks]]
name = "ok20"
hosts = ["fleet"]
transport = "local"
batch = 10
script = '''
for i in $(seq 1 20); do echo "line $i of $SHIPWATCH_HOST rev=$REV"; done
echo "warning from $SHIPWATCH_HOST" >&2
'''

[[tasks.params]]
name = "REV"
pattern = "[0-9a-f]{{7}}"
default = "abcdef0"

[[tasks]]
name = "fail20"
hosts = ["fleet"]
transport = "local"
batch = 5
max_failures = 1
script = '''
echo "start $SHIPWATCH_HOST"
case "$SHIPWATCH_HOST" in
  web-18|web-20) [ -e {fixed} ] || {{ echo "broken $SHIPWATCH_HOST" >&2; exit 7; }} ;;
esac
echo "done $SHIPWATCH_HOST"
'''

[[tasks]]
name = "slow"
hosts = ["web-01", "web-02"]
transport = "local"
script = '''
echo "waiting on $SHIPWATCH_HOST"
for i in $(seq 1 1200); do sleep 0.05; done
'''
"#,
        fixed = dir.join("fixed").display()
    )
}

/// `shipwatch ARGS` in the setup's directory (so the local config names the server),
/// with no server, token or NO_COLOR from the test's own environment.
fn cli(setup: &Setup, args: &[&str]) -> Output {
    cli_as(setup, None, args)
}

/// [`cli`] with `SHIPWATCH_TOKEN` set.
fn cli_as(setup: &Setup, token: Option<&str>, args: &[&str]) -> Output {
    cli_command(setup, token, args)
        .stdin(Stdio::null())
        .output()
        .expect("run shipwatch")
}

fn cli_command(setup: &Setup, token: Option<&str>, args: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    command
        .args(args)
        .current_dir(setup.dir.path())
        .env_remove("SHIPWATCH_URL")
        .env_remove("SHIPWATCH_TOKEN")
        .env_remove("NO_COLOR");
    if let Some(token) = token {
        command.env("SHIPWATCH_TOKEN", token);
    }
    command
}

/// `shipwatch token new NAME --role ROLE`: the token, and the `[[tokens]]` block.
fn new_token(name: &str, role: &str) -> (String, String) {
    let out = Command::new(BIN)
        .args(["token", "new", name, "--role", role])
        .output()
        .expect("shipwatch token new");
    assert!(out.status.success(), "{out:?}");
    let stdout = text(&out.stdout);
    let (token, block) = stdout.split_once('\n').expect("token, then its block");
    assert!(block.contains("[[tokens]]"), "{stdout}");
    (token.trim().to_string(), block.to_string())
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn code(output: &Output) -> i32 {
    output.status.code().unwrap_or(-1)
}

/// A log line as the client prints it: `HH:MM:SS host | text` or `HH:MM:SS host !| text`.
fn parse_line(line: &str) -> Option<(String, String, String)> {
    let (time, rest) = line.split_once(' ')?;
    let clock = time.len() == 8
        && time.char_indices().all(|(i, c)| {
            if i == 2 || i == 5 {
                c == ':'
            } else {
                c.is_ascii_digit()
            }
        });
    if !clock {
        return None;
    }
    let (host, rest) = rest.split_once(' ')?;
    let rest = rest.trim_start_matches(' ');
    if let Some(text) = rest.strip_prefix("| ") {
        Some((host.into(), "stdout".into(), text.into()))
    } else {
        let text = rest.strip_prefix("!| ")?;
        Some((host.into(), "stderr".into(), text.into()))
    }
}

/// Every log line of a client's stdout, in order; panics on any other line.
fn printed_lines(stdout: &str) -> Vec<(String, String, String)> {
    stdout
        .lines()
        .map(|l| parse_line(l).unwrap_or_else(|| panic!("not a log line: {l:?}\n{stdout}")))
        .collect()
}

/// The job's stored line events (host, stream, text) in seq order, optionally filtered.
fn stored_lines(
    port: u16,
    id: u64,
    keep: impl Fn(&Event) -> bool,
) -> Vec<(String, String, String)> {
    stored_log(port, id)
        .iter()
        .filter(|e| e.kind == "line" && keep(e))
        .map(|e| {
            (
                e.host.clone().unwrap_or_default(),
                e.stream.clone().unwrap_or_default(),
                e.text.clone().unwrap_or_default(),
            )
        })
        .collect()
}

/// The job id a non-following `run` or `rerun` printed on stdout.
fn job_id(output: &Output) -> u64 {
    text(&output.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("no job id on stdout: {output:?}"))
}

/// The id `run … --follow` announced on stderr (`job N (task) queued: URL`).
fn announced_id(stderr: &str) -> u64 {
    stderr
        .lines()
        .find_map(|l| l.strip_prefix("job ")?.split_once(' ')?.0.parse().ok())
        .unwrap_or_else(|| panic!("no `job N` on stderr: {stderr}"))
}

#[test]
fn run_follow_tail_show_jobs_rerun_cancel_and_errors_on_the_real_binary() {
    let setup = Setup::new("");
    let dir = setup.dir.path().to_path_buf();
    let (operator, operator_block) = new_token("ci", "operator");
    let (viewer, viewer_block) = new_token("dashboard", "viewer");
    // Anonymous visitors may look (the test's own checks read the API without a token);
    // everything the client starts or cancels goes with the operator's token.
    let config = format!(
        "{}\n{operator_block}\n{viewer_block}",
        config_text(&setup, "runners = 2", 20, &tasks(&dir))
    );
    setup.write_raw(&config.replace("anonymous = \"admin\"", "anonymous = \"viewer\""));
    let _up = Guard(setup.up(&[]));
    setup.wait_status("all running", |s| s.all_running(2));
    let port = setup.port;
    let cli = |setup: &Setup, args: &[&str]| cli_as(setup, Some(&operator), args);

    // A succeeding 20-host job, followed: exit 0, every stored line once, no escapes.
    let out = cli(&setup, &["run", "ok20", "-p", "REV=1234abc", "--follow"]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(code(&out), 0, "{stderr}");
    assert!(
        !stdout.contains('\x1b'),
        "escapes in piped output: {stdout:?}"
    );
    let ok_id = announced_id(&stderr);
    let printed = printed_lines(&stdout);
    assert_eq!(printed.len(), 20 * 21, "{stdout}");
    assert_eq!(printed, stored_lines(port, ok_id, |_| true));
    assert!(
        printed
            .iter()
            .any(|(h, s, t)| h == "web-07" && s == "stderr" && t == "warning from web-07")
    );
    assert!(stdout.contains("web-07 !| warning from web-07"), "{stdout}");
    assert!(
        stderr.contains(&format!("job {ok_id} ok20 succeeded"))
            && stderr.contains("20 ok of 20 hosts"),
        "{stderr}"
    );

    // A failing one: exit 1, and the summary names the failed hosts with exit codes.
    let out = cli(&setup, &["run", "fail20", "--follow"]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(code(&out), 1, "{stderr}");
    let failed_id = announced_id(&stderr);
    assert_eq!(
        printed_lines(&stdout),
        stored_lines(port, failed_id, |_| true)
    );
    assert!(
        stderr.contains(&format!("job {failed_id} fail20 failed")),
        "{stderr}"
    );
    assert!(stderr.contains("18 ok, 2 failed of 20 hosts"), "{stderr}");
    let failed_hosts: Vec<&str> = stderr
        .lines()
        .skip_while(|l| *l != "failed hosts:")
        .skip(1)
        .collect();
    assert_eq!(failed_hosts.len(), 2, "{stderr}");
    for (line, host) in failed_hosts.iter().zip(["web-18", "web-20"]) {
        assert!(line.contains(host) && line.ends_with("exit 7"), "{line:?}");
    }

    // tail with host and stream filters prints only those, and ends with the job's status.
    let out = cli(
        &setup,
        &[
            "tail",
            &ok_id.to_string(),
            "--host",
            "web-03",
            "--host",
            "web-11",
        ],
    );
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let want = stored_lines(port, ok_id, |e| {
        matches!(e.host.as_deref(), Some("web-03" | "web-11"))
    });
    assert_eq!(want.len(), 42);
    assert_eq!(printed_lines(&text(&out.stdout)), want);
    let out = cli(
        &setup,
        &["tail", &failed_id.to_string(), "--stream", "stderr"],
    );
    assert_eq!(code(&out), 1, "a failed job's tail exits 1");
    let stderr_lines = printed_lines(&text(&out.stdout));
    assert_eq!(
        stderr_lines,
        stored_lines(port, failed_id, |e| e.stream.as_deref() == Some("stderr"))
    );
    let mut broken: Vec<&str> = stderr_lines.iter().map(|l| l.2.as_str()).collect();
    broken.sort();
    assert_eq!(broken, ["broken web-18", "broken web-20"]);
    let out = cli(
        &setup,
        &[
            "tail",
            &ok_id.to_string(),
            "-o",
            "ndjson",
            "--host",
            "web-01",
        ],
    );
    // A finished job's NDJSON is the server's own, byte for byte.
    let (_, served) = http(
        port,
        "GET",
        &format!("/api/jobs/{ok_id}/log?format=ndjson&host=web-01"),
        "",
    );
    assert_eq!(text(&out.stdout), served);
    let events: Vec<Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("ndjson line"))
        .collect();
    assert!(
        events
            .iter()
            .any(|e| e["kind"] == "host" && e["state"] == "ok")
    );
    assert!(
        events
            .iter()
            .any(|e| e["kind"] == "job" && e["state"] == "succeeded")
    );

    // A pasted URL of another server gets no token: the client refuses before connecting.
    let out = cli_as(
        &setup,
        Some("swt_not_for_them"),
        &["show", "http://127.0.0.2:9/jobs/1"],
    );
    assert_eq!(code(&out), 2, "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("not the configured server"),
        "{}",
        text(&out.stderr)
    );

    // show, with a pasted job URL and no --server at all.
    let url = format!("http://127.0.0.1:{port}/jobs/{failed_id}");
    let out = cli(&setup, &["show", &url]);
    let shown = text(&out.stdout);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    assert!(
        shown.starts_with(&format!("job {failed_id} · fail20 · failed")),
        "{shown}"
    );
    let web20 = shown
        .lines()
        .find(|l| l.starts_with("web-20"))
        .expect("web-20 row");
    assert!(web20.contains("failed") && web20.contains(" 7 "), "{web20}");
    assert_eq!(shown.lines().filter(|l| l.starts_with("web-")).count(), 20);

    // jobs --json parses as the API's job list; filters apply.
    let out = cli(&setup, &["jobs", "--json"]);
    let list: Value = serde_json::from_slice(&out.stdout).expect("jobs --json");
    let ids: Vec<u64> = list["jobs"]
        .as_array()
        .expect("jobs array")
        .iter()
        .map(|j| j["id"].as_u64().expect("id"))
        .collect();
    assert_eq!(ids, vec![failed_id, ok_id]);
    let out = cli(&setup, &["jobs", "--json", "--state", "failed"]);
    let list: Value = serde_json::from_slice(&out.stdout).expect("jobs --json");
    assert_eq!(list["jobs"].as_array().map(Vec::len), Some(1));
    assert_eq!(list["jobs"][0]["task"], "fail20");

    // rerun --failed: only web-18 and web-20, in their original order; now they pass.
    std::fs::write(dir.join("fixed"), "").expect("fixed");
    let out = cli(
        &setup,
        &["rerun", &failed_id.to_string(), "--failed", "--follow"],
    );
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(code(&out), 0, "{stderr}");
    let rerun_id = announced_id(&stderr);
    assert!(
        stderr.contains(&format!("a re-run of job {failed_id}")),
        "{stderr}"
    );
    let mut hosts: Vec<String> = printed_lines(&stdout).into_iter().map(|l| l.0).collect();
    hosts.sort();
    assert_eq!(hosts, ["web-18", "web-18", "web-20", "web-20"], "{stdout}");
    let rerun = job(port, rerun_id);
    assert_eq!(
        rerun["spec"]["waves"],
        serde_json::json!([["web-18", "web-20"]])
    );
    // The original's failure budget is the fleet's: the re-run may still lose one of the
    // two, as the 20-host job might have (a re-run succeeds when the fleet would have).
    assert_eq!(rerun["spec"]["max_failures"], 1);
    let out = cli(&setup, &["rerun", &rerun_id.to_string(), "--failed"]);
    assert_eq!(code(&out), 1);
    assert!(
        text(&out.stderr).contains("no failed"),
        "{}",
        text(&out.stderr)
    );

    // cancel: the follower of the cancelled job exits 3.
    let mut follower = cli_command(&setup, Some(&operator), &["run", "slow", "--follow"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn follower");
    let lines = lines_of(follower.stdout.take().expect("stdout"));
    let first = lines
        .recv_timeout(DEADLINE)
        .expect("the slow job's first line");
    assert!(first.contains("waiting on web-0"), "{first}");
    let stderr = BufReader::new(follower.stderr.take().expect("stderr"));
    let mut stderr_lines = stderr.lines();
    let announced = stderr_lines.next().expect("announce").expect("utf-8");
    let slow_id = announced_id(&announced);
    // Ctrl-C without a terminal only stops watching (130); the job goes on.
    let mut watcher = cli_command(&setup, Some(&operator), &["tail", &slow_id.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn watcher");
    let watched = lines_of(watcher.stdout.take().expect("stdout"));
    watched
        .recv_timeout(DEADLINE)
        .expect("the watcher's first line");
    kill(watcher.id() as i32, "INT");
    assert_eq!(wait_exit(&mut watcher, DEADLINE).code(), Some(130));
    let mut said = String::new();
    std::io::Read::read_to_string(&mut watcher.stderr.take().expect("stderr"), &mut said)
        .expect("stderr");
    assert!(
        said.contains(&format!("stopped watching job {slow_id}")),
        "{said}"
    );
    assert_eq!(job(port, slow_id)["state"], "running");
    let out = cli(
        &setup,
        &["cancel", &format!("http://127.0.0.1:{port}/jobs/{slow_id}")],
    );
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let status = wait_exit(&mut follower, DEADLINE);
    assert_eq!(
        status.code(),
        Some(3),
        "the follower of a cancelled job exits 3"
    );
    let rest: Vec<String> = stderr_lines.map_while(Result::ok).collect();
    assert!(rest.iter().any(|l| l.contains("cancelled")), "{rest:?}");

    // Errors read like the API's, with what to do.
    let out = cli(&setup, &["run", "nope"]);
    assert_eq!(code(&out), 1);
    let e = text(&out.stderr);
    assert!(
        e.contains("unknown task \"nope\"") && e.contains("ok20, fail20, slow"),
        "{e}"
    );
    let out = cli(&setup, &["run", "ok20", "-p", "REV=zz"]);
    assert_eq!(code(&out), 1);
    let e = text(&out.stderr);
    assert!(e.contains("REV") && e.contains("[0-9a-f]{7}"), "{e}");
    let out = cli(&setup, &["run", "ok20", "-p", "REVISION=1234abc"]);
    assert_eq!(code(&out), 1);
    let e = text(&out.stderr);
    assert!(
        e.contains("has no param \"REVISION\"") && e.contains("ok20 takes: REV"),
        "{e}"
    );
    assert_eq!(code(&cli(&setup, &["run"])), 2, "usage");
    assert_eq!(code(&cli(&setup, &["show", "deploy"])), 2, "not a job");
    let out = cli(&setup, &["--help"]);
    assert!(text(&out.stdout).contains("3 a followed job was cancelled"));
    let out = cli(&setup, &["tasks", "--server", "http://127.0.0.1:1"]);
    assert_eq!(code(&out), 1);
    let e = text(&out.stderr);
    assert!(
        e.contains("cannot reach the server at http://127.0.0.1:1/api/tasks"),
        "{e}"
    );

    // Without --follow, run prints the new job's id alone on stdout, for scripts.
    let out = cli(&setup, &["run", "ok20", "-p", "REV=fedcba9"]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let id = job_id(&out);
    assert_eq!(job(port, id)["params"]["REV"], "fedcba9");
    wait_job(port, id, DEADLINE, "the job to end", is_terminal);

    // With anonymous access off, the server asks who you are; a viewer's token (read
    // from a file only its owner may read) watches but may not start a job.
    let out = cli_as(&setup, None, &["run", "ok20"]);
    assert!(
        text(&out.stderr).contains("needs the operator role"),
        "{out:?}"
    );
    setup.write_raw(&config.replace("anonymous = \"admin\"", "anonymous = \"none\""));
    assert!(setup.ctl(&["reload"]).status.success());
    // The supervisor passes the reload on to the gateway, which applies it shortly after.
    wait_until("the gateway to turn anonymous access off", DEADLINE, || {
        http(port, "GET", "/api/jobs", "").0 == 401
    });
    let out = cli_as(&setup, None, &["jobs"]);
    assert_eq!(code(&out), 1);
    let e = text(&out.stderr);
    assert!(
        e.contains("--token") && e.contains("SHIPWATCH_TOKEN"),
        "{e}"
    );
    let out = cli_as(&setup, None, &["tail", &ok_id.to_string()]);
    assert_eq!(code(&out), 1, "{}", text(&out.stderr));
    let token_file = dir.join("viewer.token");
    std::fs::write(&token_file, format!("{viewer}\n")).expect("token file");
    let file = path_str(&token_file);
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |m| std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(m));
        mode(0o644).expect("chmod");
        let out = cli_as(&setup, None, &["jobs", "--token-file", file]);
        assert_eq!(code(&out), 2, "a token file others can read is refused");
        assert!(text(&out.stderr).contains("readable by others"));
        mode(0o600).expect("chmod");
    }
    let out = cli_as(
        &setup,
        None,
        &["tail", &ok_id.to_string(), "--token-file", file],
    );
    assert_eq!(code(&out), 0, "a viewer follows: {}", text(&out.stderr));
    assert_eq!(printed_lines(&text(&out.stdout)).len(), 20 * 21);
    let out = cli_as(&setup, None, &["run", "ok20", "--token-file", file]);
    assert_eq!(code(&out), 1);
    let e = text(&out.stderr);
    assert!(e.contains("needs the operator role"), "{e}");
    let out = cli_as(
        &setup,
        None,
        &["run", "ok20", "--token", "swt_not-a-real-token"],
    );
    assert_eq!(code(&out), 1);
    assert!(
        text(&out.stderr).contains("shipwatch: "),
        "{}",
        text(&out.stderr)
    );
}

/// Lines of a child's pipe as they come, on a thread of their own.
fn lines_of(pipe: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// 20 hosts, 100 lines each before `go` exists and 100 after.
fn flow_task(dir: &Path) -> String {
    format!(
        r#"[[tasks]]
name = "flow"
hosts = ["fleet"]
transport = "local"
batch = 20
script = '''
for i in $(seq 1 100); do echo "before $i on $SHIPWATCH_HOST"; done
for i in $(seq 1 600); do [ -e {go} ] && break; sleep 0.05; done
for i in $(seq 1 100); do echo "after $i on $SHIPWATCH_HOST"; [ $((i % 10)) = 0 ] && echo "tick $i" >&2; done
'''
"#,
        go = dir.join("go").display()
    )
}

#[test]
fn a_gateway_sigkill_during_follow_still_prints_every_line_exactly_once() {
    let setup = Setup::new("");
    let dir = setup.dir.path().to_path_buf();
    setup.write_raw(&config_text(&setup, "runners = 1", 20, &flow_task(&dir)));
    let _up = Guard(setup.up(&[]));
    let before = setup.wait_status("all running", |s| s.all_running(1));
    let port = setup.port;

    let mut follower = cli_command(&setup, None, &["run", "flow", "--follow"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn follower");
    let lines = lines_of(follower.stdout.take().expect("stdout"));
    let errors = lines_of(follower.stderr.take().expect("stderr"));
    let mut printed = Vec::new();
    while printed.len() < 100 {
        printed.push(lines.recv_timeout(DEADLINE).expect("lines before the kill"));
    }
    kill(before.pid("gateway"), "KILL");
    setup.wait_status("a new gateway", |s| {
        s.get("gateway")
            .is_some_and(|g| g.state == "running" && g.pid != Some(before.pid("gateway")))
    });
    std::fs::write(dir.join("go"), "").expect("go");
    let status = wait_exit(&mut follower, Duration::from_secs(60));
    printed.extend(lines.iter());
    let stderr: Vec<String> = errors.iter().collect();
    assert_eq!(status.code(), Some(0), "{stderr:?}");
    let id = announced_id(&stderr.join("\n"));
    let printed: Vec<_> = printed
        .iter()
        .map(|l| parse_line(l).unwrap_or_else(|| panic!("not a log line: {l:?}")))
        .collect();
    let stored = stored_lines(port, id, |_| true);
    assert_eq!(stored.len(), 20 * 210);
    if printed != stored {
        let first = printed.iter().zip(&stored).position(|(a, b)| a != b);
        panic!(
            "printed {} lines, stored {}; first difference at {first:?}",
            printed.len(),
            stored.len()
        );
    }
}

/// A minimal terminal: `\r`, `\n`, erase-line and SGR; returns each line as it was when
/// the cursor left it with a newline.
fn finished_lines(raw: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(raw);
    let mut chars = text.chars().peekable();
    let (mut line, mut col, mut done) = (Vec::<char>::new(), 0usize, Vec::new());
    while let Some(c) = chars.next() {
        match c {
            '\r' => col = 0,
            '\n' => {
                done.push(line.iter().collect::<String>().trim_end().to_string());
                line.clear();
                col = 0;
            }
            '\x1b' => {
                if chars.peek() != Some(&'[') {
                    continue;
                }
                chars.next();
                let mut params = String::new();
                let mut end = ' ';
                for p in chars.by_ref() {
                    if p.is_ascii_alphabetic() || p == '~' {
                        end = p;
                        break;
                    }
                    params.push(p);
                }
                match (end, params.as_str()) {
                    ('K', "2") => line.clear(),
                    ('K', "" | "0") => line.truncate(col),
                    _ => {}
                }
            }
            c => {
                if col < line.len() {
                    line[col] = c;
                } else {
                    line.resize(col, ' ');
                    line.push(c);
                }
                col += 1;
            }
        }
    }
    done
}

#[test]
fn on_a_terminal_the_status_line_never_shares_a_line_with_the_log() {
    let setup = Setup::new("");
    let dir = setup.dir.path().to_path_buf();
    setup.write_raw(&config_text(&setup, "runners = 1", 20, &tasks(&dir)));
    let _up = Guard(setup.up(&[]));
    setup.wait_status("all running", |s| s.all_running(1));
    let typescript = dir.join("typescript");
    let mut follow = on_a_terminal(&setup, "run ok20 --follow", &typescript);
    assert_eq!(wait_exit(&mut follow, DEADLINE).code(), Some(0));
    let raw = std::fs::read(&typescript).expect("typescript");
    let raw_text = text(&raw);
    assert!(
        raw_text.contains("running of 20"),
        "no status line drawn: {raw_text:?}"
    );
    assert!(raw_text.contains("\x1b["), "no colour on a terminal");
    let lines = finished_lines(&raw);
    let mut log = Vec::new();
    for line in &lines {
        let is_status = line.contains("running of 20");
        let parsed = parse_line(line);
        assert!(
            !(is_status && (parsed.is_some() || line.contains(" | "))),
            "status and log on one line: {line:?}"
        );
        if let Some(l) = parsed {
            log.push(l);
        }
    }
    let id = announced_id(&lines.join("\n"));
    assert_eq!(log, stored_lines(setup.port, id, |_| true));
}

/// `shipwatch ARGS` on a terminal of its own: script(1) gives it a pty, copies what it
/// shows to `typescript` as it comes (-f), and passes what the test writes to its stdin
/// on as typed keys, so a `\x03` is a real Ctrl-C from the terminal's line discipline.
fn on_a_terminal(setup: &Setup, args: &str, typescript: &Path) -> std::process::Child {
    Command::new("script")
        .args(["-qfec", &format!("exec {BIN} {args}")])
        .arg(typescript)
        .current_dir(setup.dir.path())
        .env_remove("SHIPWATCH_URL")
        .env_remove("NO_COLOR")
        .env("TERM", "xterm-256color")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("script from util-linux")
}

/// Types `keys` into a terminal started by [`on_a_terminal`] once it shows `when`.
fn type_when(child: &mut std::process::Child, typescript: &Path, when: &str, keys: &str) {
    use std::io::Write;
    wait_until(&format!("the terminal to show {when:?}"), DEADLINE, || {
        text(&std::fs::read(typescript).unwrap_or_default()).contains(when)
    });
    let stdin = child.stdin.as_mut().expect("script's stdin");
    stdin.write_all(keys.as_bytes()).expect("type");
    stdin.flush().expect("type");
}

#[test]
fn on_a_terminal_ctrl_c_asks_and_only_yes_cancels_the_job() {
    let setup = Setup::new("");
    let dir = setup.dir.path().to_path_buf();
    setup.write_raw(&config_text(&setup, "runners = 1", 20, &tasks(&dir)));
    let _up = Guard(setup.up(&[]));
    setup.wait_status("all running", |s| s.all_running(1));
    let out = cli(&setup, &["run", "slow"]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let id = job_id(&out);
    let question = format!("cancel job {id} too?");

    // Ctrl-C, then "no": only the watching stops (130); the job goes on.
    let typescript = dir.join("no.typescript");
    let mut tail = on_a_terminal(&setup, &format!("tail {id}"), &typescript);
    type_when(&mut tail, &typescript, "waiting on web-0", "\x03");
    type_when(&mut tail, &typescript, &question, "n\r");
    assert_eq!(wait_exit(&mut tail, DEADLINE).code(), Some(130));
    let shown = text(&std::fs::read(&typescript).expect("typescript"));
    assert!(
        shown.contains(&format!("stopped watching job {id}")),
        "{shown:?}"
    );
    assert_eq!(job(setup.port, id)["state"], "running");

    // Ctrl-C, then "y": the job is cancelled, followed to its end, and the exit says so (3).
    let typescript = dir.join("yes.typescript");
    let mut tail = on_a_terminal(&setup, &format!("tail {id}"), &typescript);
    type_when(&mut tail, &typescript, "waiting on web-0", "\x03");
    type_when(&mut tail, &typescript, &question, "y\r");
    assert_eq!(wait_exit(&mut tail, DEADLINE).code(), Some(3));
    assert_eq!(job(setup.port, id)["state"], "cancelled");
    let shown = text(&std::fs::read(&typescript).expect("typescript"));
    assert!(
        shown.contains(&format!("cancel of job {id} requested")),
        "{shown:?}"
    );
}

/// A webhook receiver on loopback that answers 200 and keeps every body it got; over
/// TLS with `tls`.
fn receiver(tls: Option<std::sync::Arc<rustls::ServerConfig>>) -> (u16, mpsc::Receiver<Value>) {
    use std::io::Write;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind receiver");
    let port = listener.local_addr().expect("addr").port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let mut stream: Box<dyn ReadWrite> = match &tls {
                None => Box::new(stream),
                Some(config) => match rustls::ServerConnection::new(config.clone()) {
                    Ok(tls) => Box::new(rustls::StreamOwned::new(tls, stream)),
                    Err(_) => continue,
                },
            };
            let body = request_body(&mut stream);
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            let _ = stream.flush();
            if let Some(body) = body.and_then(|b| serde_json::from_slice(&b).ok())
                && tx.send(body).is_err()
            {
                return;
            }
        }
    });
    (port, rx)
}

trait ReadWrite: std::io::Read + std::io::Write {}
impl<T: std::io::Read + std::io::Write> ReadWrite for T {}

/// The body of one HTTP/1.1 request read from `stream`; None when it breaks off (a TLS
/// handshake the client refused, for one).
fn request_body(stream: &mut impl std::io::Read) -> Option<Vec<u8>> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf).ok()?;
        if n == 0 {
            return None;
        }
        got.extend_from_slice(&buf[..n]);
        let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&got[..end]).to_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        if got.len() >= end + 4 + length {
            return Some(got[end + 4..end + 4 + length].to_vec());
        }
    }
}

/// A TLS server config for 127.0.0.1 with a certificate issued by a CA made here, and
/// that CA's PEM (what a gateway must trust to reach it).
fn tls_server(ca_name: &str) -> (std::sync::Arc<rustls::ServerConfig>, String) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, ca_name);
    let ca_cert = ca_params.self_signed(&ca_key).expect("CA certificate");
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().expect("server key");
    let cert = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .expect("server params")
        .signed_by(&key, &issuer)
        .expect("server certificate");
    let private = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_no_client_auth()
    .with_single_cert(vec![cert.der().clone()], private)
    .expect("server TLS config");
    (std::sync::Arc::new(config), ca_cert.pem())
}

/// A TLS-terminating proxy on loopback in front of `backend` (as a load balancer in front
/// of a gateway would be), with `config`'s certificate; it serves for the test's life.
fn tls_proxy(config: std::sync::Arc<rustls::ServerConfig>, backend: u16) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind proxy");
    let port = listener.local_addr().expect("addr").port();
    listener.set_nonblocking(true).expect("nonblocking");
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("proxy runtime");
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("proxy listener");
            let acceptor = tokio_rustls::TlsAcceptor::from(config);
            while let Ok((client, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut client) = acceptor.accept(client).await else {
                        return;
                    };
                    let Ok(mut gateway) =
                        tokio::net::TcpStream::connect(("127.0.0.1", backend)).await
                    else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut gateway).await;
                });
            }
        });
    });
    port
}

#[test]
fn the_client_follows_over_https_when_it_trusts_the_certificate_and_refuses_otherwise() {
    let setup = Setup::new("");
    let dir = setup.dir.path().to_path_buf();
    setup.write_raw(&config_text(&setup, "runners = 1", 20, &tasks(&dir)));
    let _up = Guard(setup.up(&[]));
    setup.wait_status("all running", |s| s.all_running(1));
    let (tls, ca_pem) = tls_server("shipwatch test CA");
    let (_, other_ca_pem) = tls_server("someone else's CA");
    let (ca, other_ca) = (dir.join("ca.pem"), dir.join("other-ca.pem"));
    std::fs::write(&ca, ca_pem).expect("ca.pem");
    std::fs::write(&other_ca, other_ca_pem).expect("other-ca.pem");
    let server = format!("https://127.0.0.1:{}", tls_proxy(tls, setup.port));
    let over_https = |trust: &Path, args: &[&str]| {
        cli_command(&setup, None, args)
            .args(["--server", &server])
            .env("SSL_CERT_FILE", trust)
            .stdin(Stdio::null())
            .output()
            .expect("run shipwatch")
    };

    // HTTPS for the API, WSS for the log: every line once, and the page link is https.
    let out = over_https(&ca, &["run", "ok20", "--follow"]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(code(&out), 0, "{stderr}");
    let id = announced_id(&stderr);
    assert!(stderr.contains(&format!("{server}/jobs/{id}")), "{stderr}");
    assert_eq!(
        printed_lines(&stdout),
        stored_lines(setup.port, id, |_| true)
    );

    // A certificate from a CA it does not trust: refused, naming the URL it tried.
    let out = over_https(&other_ca, &["tasks"]);
    assert_eq!(code(&out), 1);
    let e = text(&out.stderr);
    assert!(
        e.contains(&format!("cannot reach the server at {server}/api/tasks"))
            && e.contains("UnknownIssuer"),
        "{e}"
    );
}

/// A receiver that accepts connections and never answers; counts them.
fn hanging_receiver() -> (u16, std::sync::Arc<std::sync::atomic::AtomicU64>) {
    use std::sync::atomic::Ordering;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind receiver");
    let port = listener.local_addr().expect("addr").port();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let count = accepted.clone();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().map_while(Result::ok) {
            count.fetch_add(1, Ordering::SeqCst);
            held.push(stream);
        }
    });
    (port, accepted)
}

fn metric(port: u16, name: &str) -> f64 {
    let (_, text) = http(port, "GET", "/metrics", "");
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn webhooks_get_one_notification_per_matching_job_and_a_hanging_one_delays_nothing() {
    use std::sync::atomic::Ordering;
    let setup = Setup::new("");
    let (good, bodies) = receiver(None);
    let (hang, hung) = hanging_receiver();
    let closed = free_port();
    // https: one receiver whose CA the gateway trusts (SSL_CERT_FILE), one it does not.
    let (trusted_tls, ca_pem) = tls_server("shipwatch test CA");
    let (slack, slack_bodies) = receiver(Some(trusted_tls));
    let (untrusted_tls, _) = tls_server("someone else's CA");
    let (untrusted, untrusted_bodies) = receiver(Some(untrusted_tls));
    let ca_file = setup.dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca_pem).expect("ca.pem");
    let tasks = format!(
        r#"[[tasks]]
name = "quick"
hosts = ["fleet"]
transport = "local"
script = "echo fine"

[[tasks]]
name = "broken"
hosts = ["fleet"]
transport = "local"
script = "echo no >&2; exit 3"

[[tasks]]
name = "other"
hosts = ["fleet"]
transport = "local"
concurrency = 3
script = "true"

[[notify]]
url = "http://127.0.0.1:{good}/hook"
on = ["succeeded", "failed"]
tasks = ["quick", "broken"]

[[notify]]
url = "http://127.0.0.1:{hang}/hook"
on = ["succeeded", "failed", "cancelled", "lost"]

[[notify]]
url = "http://127.0.0.1:{closed}/hook"
on = ["failed"]
format = "slack"

[[notify]]
url = "https://127.0.0.1:{slack}/services/T1/B2/secret"
on = ["failed"]
format = "slack"

[[notify]]
url = "https://127.0.0.1:{untrusted}/hook"
on = ["failed"]
"#
    );
    setup.write_raw(&config_text(&setup, "runners = 1", 2, &tasks));
    let _up = Guard(setup.up(&[("SSL_CERT_FILE", path_str(&ca_file))]));
    setup.wait_status("all running", |s| s.all_running(1));
    let port = setup.port;

    let out = cli(&setup, &["run", "quick", "--follow"]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let quick = announced_id(&text(&out.stderr));
    let first = bodies.recv_timeout(DEADLINE).expect("quick's notification");
    wait_until("the hanging receiver holds quick's", DEADLINE, || {
        hung.load(Ordering::SeqCst) >= 1
    });
    // The hanging receiver now holds a delivery for 5 s per attempt, 3 attempts with
    // backoff (~16 s): a next notification queued behind it would come after all of
    // them; one sent beside it comes as soon as the job ends.
    let start = Instant::now();
    let out = cli(&setup, &["run", "broken", "--follow"]);
    assert_eq!(code(&out), 1);
    let broken = announced_id(&text(&out.stderr));
    let second = bodies
        .recv_timeout(Duration::from_secs(12))
        .expect("broken's notification while the other receiver hangs");
    assert!(
        start.elapsed() < Duration::from_secs(12),
        "the next job was delayed: {:?}",
        start.elapsed()
    );
    let out = cli(&setup, &["run", "other", "--follow"]);
    assert_eq!(code(&out), 0);

    assert_eq!(first["job"], quick);
    assert_eq!(first["task"], "quick");
    assert_eq!(first["state"], "succeeded");
    assert_eq!(first["started_by"], "anonymous");
    assert_eq!(first["counts"]["ok"], 2);
    assert_eq!(
        first["url"],
        format!("http://127.0.0.1:{port}/jobs/{quick}")
    );
    assert_eq!(second["job"], broken);
    assert_eq!(second["state"], "failed");
    assert_eq!(second["counts"]["failed"], 2);
    assert!(second["reason"].is_string(), "{second}");

    // Over https to a receiver whose CA is trusted, in Slack's shape.
    let slack_body = slack_bodies
        .recv_timeout(DEADLINE)
        .expect("broken's notification over https");
    let slack_text = slack_body["text"].as_str().unwrap_or_default();
    assert!(
        slack_text.contains(&format!("#{broken}>")) && slack_text.contains("broken failed"),
        "{slack_body}"
    );

    // The closed port's and the untrusted certificate's deliveries (broken's) fail after
    // their retries and are counted; by then any duplicate would have come too.
    wait_until("the failed deliveries counted", DEADLINE, || {
        metric(port, "shipwatch_notify_failed_total") >= 2.0
    });
    assert_eq!(metric(port, "shipwatch_notify_failed_total"), 2.0);
    assert!(
        untrusted_bodies.try_recv().is_err(),
        "a receiver with an untrusted certificate got a notification"
    );
    assert!(
        bodies.try_recv().is_err() && slack_bodies.try_recv().is_err(),
        "one notification per job, none for a task the hook does not take"
    );
    assert_eq!(metric(port, "shipwatch_notify_sent_total"), 3.0);
    let log = setup.log();
    assert!(
        log.contains("job end notification failed"),
        "{}",
        log_tail(&setup, 20)
    );
    assert!(
        log.lines()
            .any(|l| l.contains(&format!("127.0.0.1:{untrusted}")) && l.contains("UnknownIssuer")),
        "{}",
        log_tail(&setup, 20)
    );
    assert!(!log.contains("secret"), "a hook's path reached the log");

    // The hanging hook holds quick's and broken's deliveries (~16 s each with retries);
    // two more job ends wait behind them instead of each opening another connection.
    for _ in 0..2 {
        let out = cli(&setup, &["run", "other"]);
        assert_eq!(code(&out), 0, "{}", text(&out.stderr));
        wait_job(port, job_id(&out), DEADLINE, "other to end", is_terminal);
    }
    let hook = format!("{{hook=\"127.0.0.1:{hang}\"}}");
    wait_until(
        "three deliveries waiting for the hanging hook",
        DEADLINE,
        || metric(port, &format!("shipwatch_notify_waiting{hook}")) == 3.0,
    );
    assert_eq!(
        metric(port, &format!("shipwatch_notify_in_flight{hook}")),
        2.0
    );
    assert!(hung.load(Ordering::SeqCst) >= 2);
}
