//! `shipwatch check` through the real binary: exit codes and what it prints.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn shipwatch_check(args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_shipwatch"))
        .arg("check")
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn shipwatch");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if child.try_wait().expect("wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("shipwatch check did not exit within 30 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn check_accepts_the_demo_file_with_a_summary() {
    let demo = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/demo.toml");
    let out = shipwatch_check(&["-c", demo]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        format!("ok: {demo}: 3 tasks, 20 hosts, 4 runners\n")
    );
}

#[test]
fn check_accepts_the_embedded_demo() {
    let out = shipwatch_check(&["--demo"]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "ok: <demo>: 3 tasks, 20 hosts, 4 runners\n"
    );
}

#[test]
fn check_prints_every_error_with_its_place_and_exits_1() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("shipwatch.toml");
    std::fs::write(
        &file,
        "[supervisor]\nrunners = 999\n[hosts]\nweb = [\"w1\"]\n[[tasks]]\nname = \"deploy\"\nhosts = [\"web\"]\nscript = \"true\"\nbatch = 0\n",
    )
    .expect("write config");
    let out = shipwatch_check(&["-c", file.to_str().expect("utf-8 path")]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stdout), "");
    let path = file.display();
    assert_eq!(
        text(&out.stderr),
        format!(
            "{path}:2:11: supervisor.runners = 999: expected runner processes: 0 to 256\n\
             {path}:9:9: tasks[0] \"deploy\": batch = 0: a batch is 1 or more hosts, a percent like \"25%\", or a list of those\n"
        )
    );
}

#[test]
fn check_with_a_missing_file_exits_1_and_a_usage_error_exits_2() {
    let out = shipwatch_check(&["-c", "/nonexistent-shipwatch/x.toml"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).starts_with("/nonexistent-shipwatch/x.toml: cannot read"));
    let out = shipwatch_check(&["--demo", "-c", "x.toml"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn check_refuses_a_script_over_the_size_limit_with_its_place() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("shipwatch.toml");
    let over = shipwatch_config::MAX_SCRIPT_BYTES + 1;
    std::fs::write(dir.path().join("big.sh"), "#".repeat(over)).expect("write script");
    std::fs::write(
        &file,
        "[hosts]\nweb = [\"w1\"]\n[[tasks]]\nname = \"deploy\"\nhosts = [\"web\"]\nscript_file = \"big.sh\"\n",
    )
    .expect("write config");
    let out = shipwatch_check(&["-c", file.to_str().expect("utf-8 path")]);
    assert_eq!(out.status.code(), Some(1), "stdout: {}", text(&out.stdout));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "{}:6:15: tasks[0] \"deploy\": script_file: the script is {over} bytes, over the limit of 1048576 bytes (1 MiB)",
            file.display()
        )),
        "{stderr}"
    );
}
