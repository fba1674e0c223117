//! End-to-end bench on the real system: `shipwatch up` (supervisor, gateway, one runner)
//! runs a task whose hosts run `linegen`, and W watchers read the job over real
//! WebSockets. Every line is counted at every watcher (seq gapless, no duplicate, or the
//! run fails) and its latency is receipt time minus the stamp the script wrote.
//!
//! Usage (bench/e2e.sh runs these and prints the table):
//!   e2e flood WATCHERS HOSTS LINES_PER_HOST     as fast as the system goes
//!   e2e paced WATCHERS RATE SECONDS             one host at RATE lines/s
//!   e2e idle WATCHERS                           gateway RSS per idle watcher
//!   e2e replay LINES                            a late joiner of a finished job
//! Each prints one markdown table row. Needs target/release/{shipwatch,linegen}.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Log-linear latency histogram in microseconds (about 12 % resolution), cheap to merge.
#[derive(Clone)]
struct Histogram([u64; 320]);

impl Histogram {
    fn new() -> Self {
        Histogram([0; 320])
    }
    fn bucket(us: u64) -> usize {
        if us < 16 {
            return us as usize;
        }
        let e = 63 - us.leading_zeros() as u64;
        let m = (us >> (e - 3)) & 7;
        (16 + (e - 4) * 8 + m).min(319) as usize
    }
    fn upper(b: usize) -> u64 {
        if b < 16 {
            return b as u64;
        }
        let e = (b as u64 - 16) / 8 + 4;
        let m = (b as u64 - 16) % 8;
        ((8 + m + 1) << (e - 3)) - 1
    }
    fn record(&mut self, us: u64) {
        self.0[Self::bucket(us)] += 1;
    }
    fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.0.iter_mut().zip(other.0.iter()) {
            *a += b;
        }
    }
    fn count(&self) -> u64 {
        self.0.iter().sum()
    }
    fn percentile(&self, p: f64) -> Duration {
        let want = ((self.count() as f64) * p).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (b, n) in self.0.iter().enumerate() {
            seen += n;
            if seen >= want {
                return Duration::from_micros(Self::upper(b));
            }
        }
        Duration::ZERO
    }
    fn max(&self) -> Duration {
        let b = self.0.iter().rposition(|&n| n > 0).unwrap_or(0);
        Duration::from_micros(Self::upper(b))
    }
}

fn now_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// A running `shipwatch up` in a temp dir.
struct System {
    dir: tempfile::TempDir,
    port: u16,
    up: Child,
}

impl System {
    fn start(hosts: usize, script: &str) -> Result<System, Error> {
        let dir = tempfile::Builder::new().prefix("swb").tempdir_in("/tmp")?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let names: Vec<String> = (1..=hosts).map(|i| format!("\"h-{i:02}\"")).collect();
        let config = format!(
            r#"[server]
listen = "127.0.0.1:{port}"
data_dir = "./data"
run_dir = "./run"

[supervisor]
runners = 1

[auth]
anonymous = "admin"

[hosts]
load = [{hosts}]

[[tasks]]
name = "load"
hosts = ["load"]
transport = "local"
batch = "100%"
timeout_secs = 3600
script = "{script}"

[[tasks.params]]
name = "START"
pattern = "[0-9]+"
default = "0"
"#,
            hosts = names.join(", ")
        );
        std::fs::write(dir.path().join("shipwatch.toml"), config)?;
        let log = std::fs::File::create(dir.path().join("up.log"))?;
        let up = Command::new(bin("shipwatch"))
            .args(["up", "-c", "shipwatch.toml"])
            .current_dir(dir.path())
            .env("SHIPWATCH_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        let system = System { dir, port, up };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !system.http("GET", "/healthz", "").is_ok_and(|r| r.0 == 200) {
            if Instant::now() > deadline {
                return Err(format!("gateway not up; log:\n{}", system.log()).into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Runners connect once the gateway listens: wait until one is there.
        while !system.runner_ready() {
            if Instant::now() > deadline {
                return Err(format!("runner not up; log:\n{}", system.log()).into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(system)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("up.log")).unwrap_or_default()
    }

    fn http(&self, method: &str, path: &str, body: &str) -> Result<(u16, String), Error> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port))?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\
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
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        Ok((code, body))
    }

    fn runner_ready(&self) -> bool {
        self.pid("runner-0").is_some()
    }

    fn create_job(&self, start_ms: u128) -> Result<u64, Error> {
        let body = format!(r#"{{"task":"load","params":{{"START":"{start_ms}"}}}}"#);
        let (code, body) = self.http("POST", "/api/jobs", &body)?;
        if code != 201 {
            return Err(format!("create job: {code} {body}").into());
        }
        let job: serde_json::Value = serde_json::from_str(&body)?;
        job["id"].as_u64().ok_or_else(|| "no job id".into())
    }

    fn job_state(&self, id: u64) -> String {
        self.http("GET", &format!("/api/jobs/{id}"), "")
            .ok()
            .and_then(|(_, body)| serde_json::from_str::<serde_json::Value>(&body).ok())
            .and_then(|job| job["state"].as_str().map(str::to_owned))
            .unwrap_or_default()
    }

    /// A child's pid from `shipwatch ctl status --json`.
    fn pid(&self, name: &str) -> Option<u32> {
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

    fn url(&self, job: u64, after: u64) -> String {
        format!("ws://127.0.0.1:{}/ws/jobs/{job}?after={after}", self.port)
    }
}

impl Drop for System {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.up.id().to_string()])
            .status();
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

fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from(name));
    exe.parent().unwrap_or(Path::new(".")).join(name)
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// utime + stime of a process, in seconds.
fn cpu_secs(pid: u32) -> f64 {
    let ticks = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let rest = s.rsplit_once(") ")?.1.to_owned();
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let u: u64 = fields.get(11)?.parse().ok()?;
            let s: u64 = fields.get(12)?.parse().ok()?;
            Some(u + s)
        })
        .unwrap_or(0);
    ticks as f64 / 100.0
}

fn self_cpu_secs() -> f64 {
    cpu_secs(std::process::id())
}

/// What one watcher saw.
struct Seen {
    lines: u64,
    last_seq: u64,
    last_line_at: u128,
    latency: Histogram,
    close: Option<u16>,
}

/// The unsigned number at the start of `bytes`.
fn leading_number(bytes: &[u8]) -> Option<u128> {
    let digits = bytes.iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&bytes[..digits]).ok()?.parse().ok()
}

type Socket = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

/// A WebSocket client with a 256 KiB receive buffer. Left to autotune, a thousand
/// loopback sockets each grow theirs toward 32 MiB, the kernel hits TCP memory pressure
/// and retransmits, and the bench measures that instead of the gateway.
async fn connect(url: &str) -> Result<Socket, Error> {
    let port = url
        .split(':')
        .nth(2)
        .and_then(|p| p.split('/').next())
        .and_then(|p| p.parse::<u16>().ok())
        .ok_or("no port in url")?;
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.set_recv_buffer_size(256 * 1024)?;
    let stream = socket
        .connect(std::net::SocketAddr::from(([127, 0, 0, 1], port)))
        .await?;
    let (socket, _) = tokio_tungstenite::client_async(url, stream).await?;
    Ok(socket)
}

const SEQ_KEY: &[u8] = b"\"seq\":";
const TEXT_KEY: &[u8] = b"\"text\":\"";

/// Reads one job's events until the server closes; checks seqs are 1.. gapless.
async fn watch(url: String, connected: Arc<AtomicUsize>) -> Result<Seen, Error> {
    let mut socket = connect(&url).await?;
    connected.fetch_add(1, Ordering::Relaxed);
    let seq_finder = memchr::memmem::Finder::new(SEQ_KEY);
    let text_finder = memchr::memmem::Finder::new(TEXT_KEY);
    let mut seen = Seen {
        lines: 0,
        last_seq: 0,
        last_line_at: 0,
        latency: Histogram::new(),
        close: None,
    };
    while let Some(message) = socket.next().await {
        match message? {
            Message::Text(text) => {
                let now = now_nanos();
                let bytes = text.as_bytes();
                // Searchers built once per watcher; each event is `…"seq":N,…` and a
                // line's text holds the stamp: `"text":"{seq:010} {nanos:020} xxx…"`.
                let seqs: Vec<usize> = seq_finder.find_iter(bytes).collect();
                for (i, &at) in seqs.iter().enumerate() {
                    let start = at + SEQ_KEY.len();
                    let seq = leading_number(&bytes[start..]).ok_or("bad seq")? as u64;
                    if seq != seen.last_seq + 1 {
                        return Err(format!("seq {seq} after {}", seen.last_seq).into());
                    }
                    seen.last_seq = seq;
                    let end = seqs.get(i + 1).copied().unwrap_or(bytes.len());
                    if let Some(t) = text_finder.find(&bytes[start..end]) {
                        let stamp_at = start + t + TEXT_KEY.len() + 11;
                        if let Some(stamp) = bytes.get(stamp_at..).and_then(leading_number) {
                            seen.lines += 1;
                            seen.last_line_at = now;
                            seen.latency
                                .record((now.saturating_sub(stamp) / 1000) as u64);
                        }
                    }
                }
            }
            Message::Close(frame) => {
                seen.close = frame.map(|f| u16::from(f.code));
                break;
            }
            _ => {}
        }
    }
    Ok(seen)
}

struct Outcome {
    per_watcher_lps: f64,
    deliveries_ps: f64,
    latency: Histogram,
    gateway_cpu: f64,
    runner_cpu: f64,
    client_cpu: f64,
    gateway_rss_mib: f64,
}

/// Starts the system, connects `watchers`, runs the job, checks every watcher got
/// `expected` lines.
async fn run_job(
    watchers: usize,
    hosts: usize,
    expected: u64,
    script: &str,
) -> Result<Outcome, Error> {
    let system = System::start(hosts, script)?;
    let gateway = system.pid("gateway").ok_or("no gateway pid")?;
    let runner = system.pid("runner-0").ok_or("no runner pid")?;
    // Output starts once every watcher is connected (linegen waits for START).
    let lead = 1_000 + watchers as u128 * 3;
    let start_ms = now_nanos() / 1_000_000 + lead;
    let job = system.create_job(start_ms)?;
    let connected = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::with_capacity(watchers);
    for _ in 0..watchers {
        tasks.push(tokio::spawn(watch(system.url(job, 0), connected.clone())));
    }
    while connected.load(Ordering::Relaxed) < watchers {
        if now_nanos() / 1_000_000 > start_ms {
            eprintln!("warning: watchers still connecting when output began");
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (g0, r0, c0) = (cpu_secs(gateway), cpu_secs(runner), self_cpu_secs());
    let mut latency = Histogram::new();
    let mut slowest_end = 0u128;
    let mut min_lps = f64::MAX;
    let mut peak_rss = 0;
    let start_ns = start_ms * 1_000_000;
    for task in tasks {
        let seen = task.await??;
        if seen.lines != expected {
            return Err(format!(
                "a watcher got {} lines, expected {expected} (close {:?}); log:\n{}",
                seen.lines,
                seen.close,
                system.log()
            )
            .into());
        }
        peak_rss = peak_rss.max(rss_kib(gateway));
        slowest_end = slowest_end.max(seen.last_line_at);
        let secs = (seen.last_line_at.saturating_sub(start_ns)) as f64 / 1e9;
        min_lps = min_lps.min(expected as f64 / secs);
        latency.merge(&seen.latency);
    }
    let secs = (slowest_end.saturating_sub(start_ns)) as f64 / 1e9;
    let state = system.job_state(job);
    if state != "succeeded" {
        return Err(format!("job ended {state}; log:\n{}", system.log()).into());
    }
    Ok(Outcome {
        per_watcher_lps: min_lps,
        deliveries_ps: expected as f64 * watchers as f64 / secs,
        latency,
        gateway_cpu: cpu_secs(gateway) - g0,
        runner_cpu: cpu_secs(runner) - r0,
        client_cpu: self_cpu_secs() - c0,
        gateway_rss_mib: peak_rss as f64 / 1024.0,
    })
}

fn linegen_script(lines: u64, rate: u64) -> String {
    format!(
        "exec {} {lines} {rate} 100 \\\"$START\\\"",
        bin("linegen").display()
    )
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

async fn flood(watchers: usize, hosts: usize, per_host: u64) -> Result<(), Error> {
    let total = hosts as u64 * per_host;
    let o = run_job(watchers, hosts, total, &linegen_script(per_host, 0)).await?;
    println!(
        "| flood: {hosts} hosts x {per_host} lines, {watchers} watcher(s) | {:.0} lines/s each, {:.2}M deliveries/s | p50 {} p99 {} max {} | cpu s: gateway {:.1}, runner {:.1}, load gen {:.1}; gateway RSS {:.0} MiB |",
        o.per_watcher_lps,
        o.deliveries_ps / 1e6,
        ms(o.latency.percentile(0.5)),
        ms(o.latency.percentile(0.99)),
        ms(o.latency.max()),
        o.gateway_cpu,
        o.runner_cpu,
        o.client_cpu,
        o.gateway_rss_mib,
    );
    Ok(())
}

async fn paced(watchers: usize, rate: u64, seconds: u64) -> Result<(), Error> {
    let lines = rate * seconds;
    let o = run_job(watchers, 1, lines, &linegen_script(lines, rate)).await?;
    println!(
        "| paced: 1 host at {rate} lines/s for {seconds} s, {watchers} watcher(s) | {:.0} lines/s each | p50 {} p99 {} max {} | cpu s: gateway {:.1}, runner {:.1}, load gen {:.1} |",
        o.per_watcher_lps,
        ms(o.latency.percentile(0.5)),
        ms(o.latency.percentile(0.99)),
        ms(o.latency.max()),
        o.gateway_cpu,
        o.runner_cpu,
        o.client_cpu,
    );
    Ok(())
}

async fn idle(watchers: usize) -> Result<(), Error> {
    let system = System::start(1, "sleep 600")?;
    let gateway = system.pid("gateway").ok_or("no gateway pid")?;
    let job = system.create_job(0)?;
    // One warm-up watcher so the job's first frames are built before the baseline.
    let warm = connect(&system.url(job, 0)).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = rss_kib(gateway);
    let mut sockets = Vec::with_capacity(watchers);
    let mut first_frames = 0usize;
    for _ in 0..watchers {
        let mut socket = connect(&system.url(job, 0)).await?;
        // Each gets the replay (job and host running) before the next connects.
        if let Some(Ok(Message::Text(_))) = socket.next().await {
            first_frames += 1;
        }
        sockets.push(socket);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = rss_kib(gateway);
    let per = (after.saturating_sub(before)) as f64 * 1024.0 / watchers as f64;
    println!(
        "| idle: {watchers} watchers on a running job | {first_frames} got their replay | gateway RSS {:.1} -> {:.1} MiB | {:.1} KB per watcher |",
        before as f64 / 1024.0,
        after as f64 / 1024.0,
        per / 1000.0,
    );
    drop(sockets);
    drop(warm);
    Ok(())
}

async fn replay(lines: u64) -> Result<(), Error> {
    let system = System::start(1, &linegen_script(lines, 0))?;
    let job = system.create_job(0)?;
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        match system.job_state(job).as_str() {
            "succeeded" => break,
            "queued" | "running" if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            state => return Err(format!("job ended {state}; log:\n{}", system.log()).into()),
        }
    }
    let gateway = system.pid("gateway").ok_or("no gateway pid")?;
    let g0 = cpu_secs(gateway);
    let began = Instant::now();
    let seen = watch(system.url(job, 0), Arc::new(AtomicUsize::new(0))).await?;
    let took = began.elapsed();
    if seen.lines != lines {
        return Err(format!("late joiner got {} of {lines} lines", seen.lines).into());
    }
    println!(
        "| replay: late joiner of a finished {lines}-line job | {:.2} s to the last event ({:.0} lines/s) | close {:?} | gateway cpu {:.2} s |",
        took.as_secs_f64(),
        lines as f64 / took.as_secs_f64(),
        seen.close,
        cpu_secs(gateway) - g0,
    );
    Ok(())
}

fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n = |i: usize, default: u64| -> u64 {
        args.get(i).and_then(|a| a.parse().ok()).unwrap_or(default)
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        match args.first().map(String::as_str) {
            Some("flood") => flood(n(1, 1) as usize, n(2, 20) as usize, n(3, 50_000)).await,
            Some("paced") => paced(n(1, 1) as usize, n(2, 1_000), n(3, 10)).await,
            Some("idle") => idle(n(1, 10_000) as usize).await,
            Some("replay") => replay(n(1, 1_000_000)).await,
            _ => Err("usage: e2e flood|paced|idle|replay ARGS (see the file's docs)".into()),
        }
    })
}
