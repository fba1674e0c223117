//! Helpers for the supervisor's end-to-end tests: a config in a short temp dir, the real
//! `shipwatch up` with a NOTIFY_SOCKET the test binds, `ctl status --json`, and waiting
//! for conditions with deadlines, and the one blocking HTTP client every test uses.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_shipwatch");

/// Generous: the machine is shared and slow.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// A free loopback port (bound then released).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    listener.local_addr().expect("local addr").port()
}

/// A config file in a short temp dir, with `[supervisor]` lines of the test's choosing.
pub struct Setup {
    pub dir: tempfile::TempDir,
    pub port: u16,
}

/// Under `tests/run.sh` every log a test's processes wrote outlives the test in
/// `$SHIPWATCH_TEST_LOGS`, so the run's last step can check that none holds a secret.
impl Drop for Setup {
    fn drop(&mut self) {
        keep_logs(self.dir.path());
    }
}

/// Copies the `*.log` files of `dir` into `$SHIPWATCH_TEST_LOGS`, when it is set.
pub fn keep_logs(dir: &Path) {
    let Some(keep) = std::env::var_os("SHIPWATCH_TEST_LOGS") else {
        return;
    };
    let keep = PathBuf::from(keep);
    let prefix = dir
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "log") {
            let name = format!("{prefix}-{}", entry.file_name().to_string_lossy());
            let _ = std::fs::copy(&path, keep.join(name));
        }
    }
}

impl Setup {
    pub fn new(supervisor: &str) -> Setup {
        let dir = tempfile::Builder::new()
            .prefix("sv")
            .tempdir_in("/tmp")
            .expect("temp dir");
        let setup = Setup {
            dir,
            port: free_port(),
        };
        setup.write_config(supervisor);
        setup
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("shipwatch.toml")
    }

    /// The one config every end-to-end test starts from: this setup's port, data and
    /// sockets under its dir, the `[supervisor]` lines given, then `rest` (hosts, tasks,
    /// auth…).
    pub fn config_with(&self, supervisor: &str, rest: &str) -> String {
        format!(
            r#"[server]
listen = "127.0.0.1:{port}"
data_dir = "./data"
run_dir = "./run"
public_url = "http://127.0.0.1:{port}"

[supervisor]
{supervisor}

{rest}"#,
            port = self.port
        )
    }

    /// [`Setup::config_with`] with one local host `web-01` and its task `deploy`.
    pub fn config_text(&self, supervisor: &str) -> String {
        self.config_with(
            supervisor,
            r#"[hosts]
web = ["web-01"]

[[tasks]]
name = "deploy"
hosts = ["web"]
transport = "local"
script = "echo hi"
"#,
        )
    }

    /// Writes the config the way editors do: a new file renamed over the old one.
    pub fn write_config(&self, supervisor: &str) {
        self.write_raw(&self.config_text(supervisor));
    }

    pub fn write_raw(&self, text: &str) {
        let tmp = self.dir.path().join(".shipwatch.toml.tmp");
        std::fs::write(&tmp, text).expect("write config");
        std::fs::rename(&tmp, self.config_path()).expect("rename config");
    }

    /// Binds a NOTIFY_SOCKET for the supervisor to talk to.
    pub fn notify_socket(&self) -> (UnixDatagram, PathBuf) {
        let path = self.dir.path().join("notify.sock");
        let socket = UnixDatagram::bind(&path).expect("bind notify socket");
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        (socket, path)
    }

    /// `shipwatch up -c FILE`, its log in `up.log`.
    pub fn up(&self, env: &[(&str, &str)]) -> Child {
        let log = std::fs::File::create(self.dir.path().join("up.log")).expect("log file");
        let mut command = Command::new(BIN);
        command
            .arg("up")
            .arg("-c")
            .arg(self.config_path())
            .current_dir(self.dir.path())
            .env("SHIPWATCH_LOG", "info")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log);
        for (key, value) in env {
            command.env(key, value);
        }
        command.spawn().expect("spawn shipwatch up")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("up.log")).unwrap_or_default()
    }

    pub fn ctl(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .arg("ctl")
            .arg("-c")
            .arg(self.config_path())
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .expect("run shipwatch ctl")
    }

    /// `ctl status --json`, or None while the supervisor does not answer yet.
    pub fn status(&self) -> Option<Status> {
        let output = self.ctl(&["status", "--json"]);
        if !output.status.success() {
            return None;
        }
        let value: serde_json::Value = serde_json::from_slice(&output.stdout).ok()?;
        let processes = value["processes"]
            .as_array()?
            .iter()
            .map(|p| Proc {
                name: p["name"].as_str().unwrap_or_default().to_owned(),
                state: p["state"].as_str().unwrap_or_default().to_owned(),
                pid: p["pid"].as_u64().map(|pid| pid as i32),
                restarts: p["restarts"].as_u64().unwrap_or(0),
                last_exit: p["last_exit"].as_str().map(str::to_owned),
            })
            .collect();
        Some(Status {
            message: value["message"].as_str().unwrap_or_default().to_owned(),
            processes,
        })
    }

    /// Waits for a status satisfying `condition`; panics with the last one and the log.
    pub fn wait_status(&self, what: &str, condition: impl Fn(&Status) -> bool) -> Status {
        let start = Instant::now();
        let mut last = None;
        while start.elapsed() < DEADLINE {
            if let Some(status) = self.status() {
                if condition(&status) {
                    return status;
                }
                last = Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "timed out waiting for {what}; last status {last:#?}\nlog:\n{}",
            self.log()
        );
    }
}

#[derive(Debug, Clone)]
pub struct Status {
    pub message: String,
    pub processes: Vec<Proc>,
}

impl Status {
    pub fn get(&self, name: &str) -> Option<&Proc> {
        self.processes.iter().find(|p| p.name == name)
    }

    pub fn pid(&self, name: &str) -> i32 {
        self.get(name)
            .and_then(|p| p.pid)
            .unwrap_or_else(|| panic!("{name} has no pid in {self:#?}"))
    }

    /// The gateway and exactly `runners` runners (runner-0 …) all running.
    pub fn all_running(&self, runners: u32) -> bool {
        self.processes.len() == runners as usize + 1
            && self.get("gateway").is_some_and(|p| p.state == "running")
            && (0..runners).all(|i| {
                self.get(&format!("runner-{i}"))
                    .is_some_and(|p| p.state == "running")
            })
    }

    pub fn pids(&self) -> Vec<i32> {
        self.processes.iter().filter_map(|p| p.pid).collect()
    }
}

#[derive(Debug, Clone)]
pub struct Proc {
    pub name: String,
    pub state: String,
    pub pid: Option<i32>,
    pub restarts: u64,
    pub last_exit: Option<String>,
}

/// Waits until `condition` holds or the deadline passes.
pub fn wait_until(what: &str, deadline: Duration, mut condition: impl FnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < deadline {
        if condition() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("timed out after {deadline:?} waiting for {what}");
}

/// Gone or a zombie waiting for its reaper: either way it runs no more.
pub fn process_gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z') || rest.starts_with('X')),
    }
}

pub fn kill(pid: i32, signal: &str) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{signal} {pid} failed");
}

/// Waits for the child to exit within the deadline and returns its status.
pub fn wait_exit(child: &mut Child, deadline: Duration) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if start.elapsed() > deadline {
            let _ = child.kill();
            panic!("process {} did not exit within {deadline:?}", child.id());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Collects datagrams until one contains `needle`; returns everything received so far.
pub fn wait_notify(socket: &UnixDatagram, needle: &str, seen: &mut Vec<String>) {
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    while start.elapsed() < DEADLINE {
        if let Ok(n) = socket.recv(&mut buf) {
            let message = String::from_utf8_lossy(&buf[..n]).into_owned();
            let found = message.lines().any(|l| l == needle);
            seen.push(message);
            if found {
                return;
            }
        }
    }
    panic!("no {needle} from the supervisor; got {seen:?}");
}

/// Kills the supervisor if a test panics before stopping it.
pub struct Guard(pub Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.0.id().to_string())
            .status();
        let _ = wait_exit_quiet(&mut self.0);
    }
}

fn wait_exit_quiet(child: &mut Child) -> Option<std::process::ExitStatus> {
    let start = Instant::now();
    while start.elapsed() < DEADLINE {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    None
}

pub fn path_str(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// One HTTP/1.0 request (the server closes after the response, so a streamed body needs
/// no de-chunking); `None` while nothing listens or the connection breaks.
pub fn try_http(port: u16, method: &str, path: &str, body: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .ok()?;
    let request = format!(
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).ok()?;
    let mut out = Vec::new();
    stream.read_to_end(&mut out).ok()?;
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text.get(9..12)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|x| x.1)?.to_owned();
    Some((status, body))
}

/// [`try_http`], retried (the gateway may be restarting) until the deadline.
pub fn http(port: u16, method: &str, path: &str, body: &str) -> (u16, String) {
    let start = Instant::now();
    loop {
        if let Some(answer) = try_http(port, method, path, body) {
            return answer;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no answer to {method} {path} within 30 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
