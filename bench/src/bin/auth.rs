//! What authentication costs, on the real system (`shipwatch up`, one runner):
//!
//!   auth rps [SECONDS] [CONNECTIONS]   requests/s of `GET /api/jobs/1` anonymous and with
//!                                      a token, alternating rounds, side by side
//!   auth flood [RATE] [SECONDS] [LOGINS]  a watcher's line latency at RATE lines/s alone,
//!                                      then while LOGINS clients send wrong passwords
//!
//! Prints markdown rows. Needs target/release/{shipwatch,linegen} beside this binary
//! (bench/auth.sh builds them).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use shipwatch_bench::system::{System, linegen_script};
use shipwatch_bench::{Error, now_nanos};
use shipwatch_wstest::{After, End, Limit, Options, read_events};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TOKEN: &str = "swt_benchbenchbenchbenchbenchbenchbenchbenchbenchbenchbenchbenchbench";

/// `shipwatch up` with one host running linegen, anonymous viewers, a user and a token
/// (the bench's own requests carry it).
fn start_system(lines: u64, rate: u64) -> Result<System, Error> {
    use shipwatch_gateway::auth::secret::hash;
    let access = format!(
        r#"[auth]
anonymous = "viewer"

[[users]]
name = "alice"
password_hash = "{password}"
role = "operator"

[[tokens]]
name = "bench"
token_hash = "{token}"
role = "operator"
"#,
        password = hash(b"the right one")?,
        token = hash(TOKEN.as_bytes())?,
    );
    System::start_with(1, &linegen_script(lines, rate, false), &access, Some(TOKEN))
}

/// Keep-alive GETs of `path` on one connection until `stop`; counts answers with 200.
async fn hammer(
    port: u16,
    path: String,
    token: Option<&'static str>,
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
) -> Result<(), Error> {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    s.set_nodelay(true)?;
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}\r\n");
    let mut buf = vec![0u8; 64 * 1024];
    while !stop.load(Ordering::Relaxed) {
        s.write_all(request.as_bytes()).await?;
        // One response: headers, then Content-Length bytes.
        let mut have = 0;
        let (head_end, length) = loop {
            let n = s.read(&mut buf[have..]).await?;
            if n == 0 {
                return Err("connection closed".into());
            }
            have += n;
            if let Some(end) = memchr::memmem::find(&buf[..have], b"\r\n\r\n") {
                let head = std::str::from_utf8(&buf[..end])?;
                if !head.starts_with("HTTP/1.1 200") {
                    return Err(format!("answer: {}", head.lines().next().unwrap_or("")).into());
                }
                let length = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().to_string())
                    })
                    .and_then(|v| v.parse::<usize>().ok())
                    .ok_or("no content-length")?;
                break (end + 4, length);
            }
        };
        while have < head_end + length {
            let n = s.read(&mut buf[have..]).await?;
            if n == 0 {
                return Err("connection closed mid-body".into());
            }
            have += n;
        }
        ok.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

async fn rate_of(
    port: u16,
    token: Option<&'static str>,
    secs: u64,
    conns: usize,
) -> Result<f64, Error> {
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..conns {
        tasks.push(tokio::spawn(hammer(
            port,
            "/api/jobs/1".into(),
            token,
            stop.clone(),
            ok.clone(),
        )));
    }
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await??;
    }
    Ok(ok.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64())
}

async fn rps(secs: u64, conns: usize) -> Result<(), Error> {
    let mut system = start_system(10, 0)?;
    system.create_job()?;
    // Warm up: the token is verified (argon2) once, then known by its SHA-256.
    rate_of(system.port, Some(TOKEN), 1, conns).await?;
    rate_of(system.port, None, 1, conns).await?;
    let (mut anon, mut token) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        anon.push(rate_of(system.port, None, secs, conns).await?);
        token.push(rate_of(system.port, Some(TOKEN), secs, conns).await?);
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (a, t) = (mean(&anon), mean(&token));
    println!(
        "| GET /api/jobs/1, {conns} keep-alive connections, 3 alternating rounds of {secs} s | requests/s |"
    );
    println!("|---|---|");
    println!("| anonymous (viewer) | {a:.0} (rounds {anon:.0?}) |");
    println!(
        "| Bearer token (cached after its first argon2 check) | {t:.0} (rounds {token:.0?}) |"
    );
    println!("| token / anonymous | {:.1} % |", 100.0 * t / a);
    Ok(())
}

/// Line latencies (µs) of one watcher over a whole job.
async fn watch(port: u16, job: u64) -> Result<Vec<u64>, Error> {
    let url = format!("ws://127.0.0.1:{port}/ws/jobs/{job}?kinds=line");
    let mut socket = shipwatch_wstest::connect(&url, &Options::default()).await?;
    let mut latencies = Vec::new();
    let end = read_events(
        &mut socket,
        Limit::Idle(Duration::from_secs(60)),
        |events| {
            let now = now_nanos();
            for e in events {
                let stamp = e["text"]
                    .as_str()
                    .and_then(|t| t.split(' ').nth(1))
                    .and_then(|s| s.parse::<u128>().ok());
                if let Some(sent) = stamp {
                    latencies.push((now.saturating_sub(sent) / 1000) as u64);
                }
            }
            After::Read
        },
    )
    .await;
    match end {
        End::Closed(_) | End::Eof => Ok(latencies),
        other => Err(format!("watcher of job {job}: {other}").into()),
    }
}

fn percentile(v: &mut [u64], p: f64) -> f64 {
    v.sort_unstable();
    v.get(((v.len().max(1) - 1) as f64 * p) as usize)
        .copied()
        .unwrap_or(0) as f64
        / 1000.0
}

/// Wrong passwords from `clients` concurrent clients, each a different user name (so the
/// per-user limit never helps, only the per-address one), until
/// `stop`: (answered 401, answered 429).
async fn login_flood(port: u16, clients: usize, stop: Arc<AtomicBool>) -> (u64, u64) {
    let (wrong, throttled) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut tasks = Vec::new();
    for i in 0..clients {
        let (stop, wrong, throttled) = (stop.clone(), wrong.clone(), throttled.clone());
        tasks.push(tokio::spawn(async move {
            let body = format!(r#"{{"user":"user-{i}","password":"wrong"}}"#);
            while !stop.load(Ordering::Relaxed) {
                let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else { continue };
                let req = format!(
                    "POST /api/login HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                if s.write_all(req.as_bytes()).await.is_err() {
                    continue;
                }
                let mut out = Vec::new();
                let _ = s.read_to_end(&mut out).await;
                match out.get(9..12) {
                    Some(b"401") => wrong.fetch_add(1, Ordering::Relaxed),
                    Some(b"429") => throttled.fetch_add(1, Ordering::Relaxed),
                    _ => 0,
                };
                // Each client tries again at once after a short pause: 200 attempts in
                // flight, up to 2,000 a second.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    (
        wrong.load(Ordering::Relaxed),
        throttled.load(Ordering::Relaxed),
    )
}

async fn flood(rate: u64, secs: u64, clients: usize) -> Result<(), Error> {
    println!(
        "| watcher at {rate} lines/s for {secs} s | p50 ms | p99 ms | max ms | logins 401 / 429 |"
    );
    println!("|---|---|---|---|---|");
    for with_flood in [false, true] {
        let mut system = start_system(rate * secs, rate)?;
        let job = system.create_job()?;
        let watcher = tokio::spawn(watch(system.port, job));
        let stop = Arc::new(AtomicBool::new(false));
        let flood =
            with_flood.then(|| tokio::spawn(login_flood(system.port, clients, stop.clone())));
        let mut latencies = watcher.await??;
        stop.store(true, Ordering::Relaxed);
        let logins = match flood {
            Some(f) => {
                let (wrong, throttled) = f.await?;
                format!("{wrong} / {throttled}")
            }
            None => "-".into(),
        };
        let max = latencies.iter().max().copied().unwrap_or(0) as f64 / 1000.0;
        println!(
            "| {} ({} lines) | {:.2} | {:.2} | {max:.2} | {logins} |",
            if with_flood {
                format!("{clients} concurrent wrong-password clients")
            } else {
                "alone".to_string()
            },
            latencies.len(),
            percentile(&mut latencies, 0.50),
            percentile(&mut latencies, 0.99),
        );
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let num = |i: usize, default: u64| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(default);
    match args.first().map(String::as_str) {
        Some("rps") => rps(num(1, 5), num(2, 4) as usize).await,
        Some("flood") => flood(num(1, 100), num(2, 10), num(3, 200) as usize).await,
        _ => Err(
            "usage: auth rps [SECONDS] [CONNECTIONS] | auth flood [RATE] [SECONDS] [LOGINS]".into(),
        ),
    }
}
