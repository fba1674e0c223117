//! The system under test: the real `shipwatch up` (supervisor, gateway, one runner) in
//! a temp dir, a `transport = "local"` task whose hosts run linegen behind a gate.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::procfs::nofile_of;
use crate::report::ms;
use crate::{Error, GATEWAY_NOFILE};

pub(crate) fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from(name));
    exe.parent().unwrap_or(Path::new(".")).join(name)
}

/// The task's script: linegen on every host; `@DIR@` becomes the system's temp dir.
pub fn linegen_script(lines: u64, rate: u64, gated: bool) -> String {
    let gate = if gated { " --start-file @DIR@/go" } else { "" };
    format!(
        "exec {} --lines {lines} --rate {rate} --size 100{gate}",
        bin("linegen").display()
    )
}

/// A running `shipwatch up` in a temp dir; stopped (SIGTERM) when dropped.
pub struct System {
    pub(crate) dir: tempfile::TempDir,
    pub port: u16,
    pub(crate) up: Child,
    /// Sent as `Authorization: Bearer` with every request the bench itself makes.
    token: Option<String>,
}

/// What [`System::start`] lets in: everyone, as admin.
const ANONYMOUS_ADMIN: &str = "[auth]\nanonymous = \"admin\"\n";

impl System {
    /// `hosts` hosts `h-01`… in group and task `load` running `script`, everyone admin.
    pub fn start(hosts: usize, script: &str) -> Result<System, Error> {
        System::start_with(hosts, script, ANONYMOUS_ADMIN, None)
    }

    /// [`System::start`] with `access` (the `[auth]` section, users and tokens) in the
    /// config instead, the bench's own requests carrying `token`.
    pub fn start_with(
        hosts: usize,
        script: &str,
        access: &str,
        token: Option<&str>,
    ) -> Result<System, Error> {
        System::start_full(hosts, script, access, token, 1 << 30)
    }

    /// [`System::start`] with jobs keeping at most `max_log_bytes` of text.
    pub fn start_capped(hosts: usize, script: &str, max_log_bytes: u64) -> Result<System, Error> {
        System::start_full(hosts, script, ANONYMOUS_ADMIN, None, max_log_bytes)
    }

    fn start_full(
        hosts: usize,
        script: &str,
        access: &str,
        token: Option<&str>,
        max_log_bytes: u64,
    ) -> Result<System, Error> {
        let names: Vec<String> = (1..=hosts).map(|i| format!("\"h-{i:02}\"")).collect();
        let body = format!(
            r#"{access}
[hosts]
load = [{hosts}]

[[tasks]]
name = "load"
hosts = ["load"]
transport = "local"
batch = "100%"
timeout_secs = 3600
script = '''{script}'''
"#,
            hosts = names.join(", ")
        );
        System::start_config(&body, token, max_log_bytes)
    }

    /// `shipwatch up` with one runner and `body` (auth, hosts, tasks…) after the
    /// `[server]` and `[supervisor]` sections; `@DIR@` in it becomes the system's temp
    /// dir. The bench's own requests carry `token`.
    pub fn start_config(
        body: &str,
        token: Option<&str>,
        max_log_bytes: u64,
    ) -> Result<System, Error> {
        let dir = tempfile::Builder::new().prefix("swb").tempdir_in("/tmp")?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let body = body.replace("@DIR@", &dir.path().display().to_string());
        let config = format!(
            r#"[server]
listen = "127.0.0.1:{port}"
data_dir = "./data"
run_dir = "./run"
max_log_bytes = {max_log_bytes}

[supervisor]
runners = 1

{body}"#
        );
        std::fs::write(dir.path().join("shipwatch.toml"), config)?;
        let log = std::fs::File::create(dir.path().join("up.log"))?;
        let mut command = Command::new(bin("shipwatch"));
        command
            .args(["up", "-c", "shipwatch.toml"])
            .current_dir(dir.path())
            .env("SHIPWATCH_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let soft_nofile = GATEWAY_NOFILE.get().copied();
        {
            use std::os::unix::process::CommandExt;
            // SAFETY: between fork and exec this only calls prctl, getrlimit and setrlimit,
            // which are async-signal-safe, on values on the child's stack.
            unsafe {
                command.pre_exec(move || {
                    // Killed with us (the supervisor's children die with it in turn), so a
                    // bench stopped by a signal leaves no system running.
                    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    let Some(soft) = soft_nofile else {
                        return Ok(());
                    };
                    let mut limit = libc::rlimit {
                        rlim_cur: 0,
                        rlim_max: 0,
                    };
                    if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    limit.rlim_cur = soft.min(limit.rlim_max);
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let up = command.spawn()?;
        let mut system = System {
            dir,
            port,
            up,
            token: token.map(str::to_owned),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !system.http("GET", "/healthz", "").is_ok_and(|r| r.0 == 200) {
            if Instant::now() > deadline {
                return Err(system.fail("gateway not answering /healthz after 30 s"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Runners connect once the gateway listens.
        while system.pid("runner-0").is_none() {
            if Instant::now() > deadline {
                return Err(system.fail("runner-0 not running after 30 s"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(system)
    }

    /// Keeps the temp dir for inspection and makes an error that says where it is.
    pub(crate) fn fail(&mut self, what: impl std::fmt::Display) -> Error {
        self.dir.disable_cleanup(true);
        let log = std::fs::read_to_string(self.dir.path().join("up.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(20).collect();
        format!(
            "{what}\n  kept {} (up.log, data/); last lines of up.log:\n    {}",
            self.dir.path().display(),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n    ")
        )
        .into()
    }

    /// Lets gated linegens start.
    pub(crate) fn open_gate(&self) -> std::io::Result<()> {
        std::fs::File::create(self.dir.path().join("go")).map(drop)
    }

    /// One request with `Connection: close` (and the system's token); status and body.
    pub fn http(&self, method: &str, path: &str, body: &str) -> Result<(u16, String), Error> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port))?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        let auth = self
            .token
            .as_ref()
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{auth}\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        let code = response
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
        let chunked = head
            .lines()
            .any(|l| l.eq_ignore_ascii_case("transfer-encoding: chunked"));
        let body = if chunked {
            dechunk(body)?
        } else {
            body.to_owned()
        };
        Ok((code, body))
    }

    /// Starts task `load`; its job id.
    pub fn create_job(&mut self) -> Result<u64, Error> {
        let (code, body) = self.http("POST", "/api/jobs", r#"{"task":"load"}"#)?;
        if code != 201 {
            return Err(self.fail(format!("create job: {code} {body}")));
        }
        let job: serde_json::Value = serde_json::from_str(&body)?;
        job["id"].as_u64().ok_or_else(|| "no job id".into())
    }

    pub(crate) fn job(&self, id: u64) -> serde_json::Value {
        self.http("GET", &format!("/api/jobs/{id}"), "")
            .ok()
            .and_then(|(_, body)| serde_json::from_str(&body).ok())
            .unwrap_or_default()
    }

    /// Polls the job until `done` holds for it.
    pub(crate) async fn wait_job(
        &mut self,
        id: u64,
        what: &str,
        within: Duration,
        done: impl Fn(&serde_json::Value) -> bool,
    ) -> Result<serde_json::Value, Error> {
        let deadline = Instant::now() + within;
        loop {
            let job = self.job(id);
            if done(&job) {
                return Ok(job);
            }
            if Instant::now() > deadline {
                return Err(self.fail(format!(
                    "job {id} not {what} within {within:?}: state {}",
                    job["state"]
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A child's pid from `shipwatch ctl status --json`.
    pub(crate) fn pid(&self, name: &str) -> Option<u32> {
        let output = Command::new(bin("shipwatch"))
            .args(["ctl", "-c", "shipwatch.toml", "status", "--json"])
            .current_dir(self.dir.path())
            .output()
            .ok()?;
        let status: serde_json::Value = serde_json::from_slice(&output.stdout).ok()?;
        status["processes"]
            .as_array()?
            .iter()
            .find(|p| p["name"] == name && p["state"] == "running")
            .and_then(|p| p["pid"].as_u64())
            .map(|p| p as u32)
    }

    pub(crate) fn pids(&mut self) -> Result<(u32, u32), Error> {
        match (self.pid("gateway"), self.pid("runner-0")) {
            (Some(g), Some(r)) => Ok((g, r)),
            _ => Err(self.fail("no gateway or runner-0 pid in ctl status")),
        }
    }

    /// Fails early when the gateway cannot hold `watchers` sockets.
    pub(crate) fn check_gateway_fds(
        &mut self,
        gateway: u32,
        watchers: usize,
    ) -> Result<u64, Error> {
        let limit = nofile_of(gateway);
        if limit < watchers as u64 + 64 && GATEWAY_NOFILE.get().is_none() {
            return Err(self.fail(format!(
                "the gateway's RLIMIT_NOFILE is {limit}, too few for {watchers} watchers \
                 (under systemd: LimitNOFILE= in the unit)"
            )));
        }
        Ok(limit)
    }

    /// From /metrics: watchers that overflowed the shared ring (and caught up from the
    /// store), the pages they read from it, the store's commit p99 and median group size.
    pub(crate) fn gateway_notes(&self) -> String {
        let text = self
            .http("GET", "/metrics", "")
            .map(|r| r.1)
            .unwrap_or_default();
        let get = |name: &str| {
            text.lines()
                .find(|l| l.strip_prefix(name).is_some_and(|v| v.starts_with(' ')))
                .and_then(|l| l.rsplit(' ').next())
                .and_then(|v| v.parse::<f64>().ok())
        };
        let mut notes = Vec::new();
        if let Some(p99) = get(r#"shipwatch_store_commit_seconds{quantile="0.99"}"#) {
            notes.push(format!(
                "store commit p99 {}",
                ms(Duration::from_secs_f64(p99))
            ));
        }
        if let Some(ops) = get(r#"shipwatch_store_commit_ops{quantile="0.5"}"#) {
            notes.push(format!("median commit {ops:.0} events"));
        }
        notes.push(format!(
            "{} ring overflows",
            get("shipwatch_watcher_overflows_total").unwrap_or(0.0)
        ));
        if let Some(reads) = get("shipwatch_watcher_store_reads_total") {
            notes.push(format!("{reads} store reads"));
        }
        notes.join(", ")
    }

    /// The job's WebSocket URL, without the query.
    pub(crate) fn url(&self, job: u64) -> String {
        format!("ws://127.0.0.1:{}/ws/jobs/{job}", self.port)
    }
}

/// The body of a `Transfer-Encoding: chunked` response (a streamed log).
fn dechunk(mut rest: &str) -> Result<String, Error> {
    let mut body = String::new();
    loop {
        let (size, after) = rest
            .split_once("\r\n")
            .ok_or("a chunk without its size line")?;
        let size = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|e| format!("chunk size {size:?}: {e}"))?;
        if size == 0 {
            return Ok(body);
        }
        let chunk = after.get(..size).ok_or("a chunk cut short")?;
        body.push_str(chunk);
        rest = after[size..]
            .strip_prefix("\r\n")
            .ok_or("a chunk without its CRLF")?;
    }
}

impl Drop for System {
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.up.id()) {
            // SAFETY: kill(2) on our own child's pid, which we have not reaped yet.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.up.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.up.kill();
        let _ = self.up.wait();
    }
}
