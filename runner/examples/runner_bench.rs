//! Throughput of one runner: 20 local hosts print `yes`-style 100-byte lines as fast as
//! they can; the runner frames them and sends them through the codec to a gateway double
//! (a child process of this one) that just reads and acks. Prints lines/s and the
//! runner's CPU seconds per million lines (getrusage of this process; the hosts and the
//! double are other processes).
//!
//! `cargo run --release -p shipwatch-runner --example runner_bench [LINES_PER_HOST]`

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use shipwatch_protocol::{GatewayFrame, JobSpec};
use shipwatch_runner::client::{ClientConfig, serve};
use shipwatch_runner::{Codec, HostContext};
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;

const HOSTS: usize = 20;

type AnyError = Box<dyn std::error::Error + Send + Sync>;

fn main() -> Result<(), AnyError> {
    let args: Vec<String> = std::env::args().collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    if args.get(1).map(String::as_str) == Some("--double") {
        let socket = args.get(2).ok_or("socket path")?.clone();
        let per_host: u64 = args.get(3).ok_or("lines")?.parse()?;
        return rt.block_on(double(socket, per_host));
    }
    let per_host: u64 = args
        .get(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(500_000);
    rt.block_on(runner(per_host))
}

async fn runner(per_host: u64) -> Result<(), AnyError> {
    let dir = tempfile::Builder::new().prefix("swb").tempdir_in("/tmp")?;
    let socket = dir.path().join("runners.sock");
    let mut double = tokio::process::Command::new(std::env::current_exe()?)
        .arg("--double")
        .arg(&socket)
        .arg(per_host.to_string())
        .spawn()?;
    let shutdown = CancellationToken::new();
    let cfg = ClientConfig {
        socket,
        index: 0,
        hosts: HostContext {
            control_dir: dir.path().to_owned(),
            control_persist_secs: 5,
        },
        max_buffer_bytes: 64 << 20,
        heartbeat: Duration::from_secs(5),
        silence: Duration::from_secs(30),
        stop_timeout: Duration::from_secs(5),
    };
    let client = tokio::spawn(serve(
        cfg,
        Codec::default,
        shutdown.clone(),
        CancellationToken::new(),
    ));
    let cpu_before = cpu_seconds();
    let status = double.wait().await?;
    let cpu = cpu_seconds() - cpu_before;
    shutdown.cancel();
    let _ = client.await;
    let lines = (per_host * HOSTS as u64) as f64;
    println!(
        "runner CPU: {cpu:.2} s for {lines} lines = {:.2} CPU s per million lines",
        cpu / (lines / 1e6)
    );
    if !status.success() {
        return Err("the gateway double failed".into());
    }
    Ok(())
}

/// This process's user + system CPU seconds, from /proc/self/stat (in USER_HZ = 100 ticks).
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return f64::NAN;
    };
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return f64::NAN;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    (ticks(11) + ticks(12)) / 100.0
}

#[derive(serde::Deserialize)]
struct Ev {
    rseq: u64,
    kind: String,
    state: Option<String>,
}

#[derive(serde::Deserialize)]
struct Frame {
    #[serde(rename = "type")]
    kind: String,
    job: Option<u64>,
    events: Option<Vec<Ev>>,
}

/// The gateway double: welcome, assign, read, ack, count.
async fn double(socket: String, per_host: u64) -> Result<(), AnyError> {
    use tokio_util::codec::LengthDelimitedCodec;
    let listener = tokio::net::UnixListener::bind(&socket)?;
    let (stream, _) = listener.accept().await?;
    // Length-prefixed JSON, read with a light struct: the double must not be the bottleneck.
    let mut conn = Framed::new(
        stream,
        LengthDelimitedCodec::builder()
            .max_frame_length(16 << 20)
            .new_codec(),
    );
    let _hello = conn.next().await.ok_or("no hello")??;
    let send = |frame: GatewayFrame| -> Result<bytes::Bytes, AnyError> {
        Ok(serde_json::to_vec(&frame)?.into())
    };
    conn.send(send(GatewayFrame::Welcome {
        version: shipwatch_protocol::PROTOCOL_VERSION,
    })?)
    .await?;
    let hosts: Vec<String> = (0..HOSTS).map(|i| format!("bench-{i:02}")).collect();
    let spec = JobSpec {
        timeout_secs: 3600,
        ..JobSpec::local(
            "bench",
            &format!("yes \"$(printf '%099d' 0)\" | head -n {per_host}\n"),
            &hosts,
        )
    };
    let started = Instant::now();
    conn.send(send(GatewayFrame::Assign {
        job: 1,
        spec: Box::new(spec),
    })?)
    .await?;
    let mut lines: u64 = 0;
    let mut frames: u64 = 0;
    loop {
        let bytes = conn.next().await.ok_or("runner went away")??;
        let frame: Frame = serde_json::from_slice(&bytes)?;
        if frame.kind != "events" {
            continue;
        }
        frames += 1;
        let events = frame.events.unwrap_or_default();
        let Some(last) = events.last().map(|e| e.rseq) else {
            continue;
        };
        let mut done = false;
        for e in &events {
            match e.kind.as_str() {
                "line" => lines += 1,
                "job" if e.state.as_deref() != Some("running") => done = true,
                _ => {}
            }
        }
        conn.send(send(GatewayFrame::Ack {
            job: frame.job.unwrap_or(1),
            rseq: last,
        })?)
        .await?;
        if done {
            break;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{lines} lines from {HOSTS} hosts in {secs:.2} s = {:.0} lines/s ({frames} frames)",
        lines as f64 / secs
    );
    if lines != per_host * HOSTS as u64 {
        return Err(format!("expected {} lines, got {lines}", per_host * HOSTS as u64).into());
    }
    Ok(())
}
