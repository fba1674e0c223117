//! Events per second through the frame codec, each way, in batches as a runner sends them.
//!
//! `cargo run --release -p shipwatch-protocol --example codec_throughput [EVENTS] [BATCH]`

use std::time::Instant;

use bytes::BytesMut;
use shipwatch_protocol::{
    Event, EventBody, GatewayCodec, RunnerCodec, RunnerEvent, RunnerFrame, Stream, Timestamp,
};
use tokio_util::codec::{Decoder, Encoder};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let total: usize = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(2_000_000);
    let batch: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(500);
    // A 100-byte line of typical deploy output.
    let text = "2026-11-25 04:25:31 INFO unpacking release abc1234 into /srv/app/releases/abc1234 (3.2 MiB) done....";
    debug_assert_eq!(text.len(), 100);
    let frames: Vec<RunnerFrame> = (0..total / batch)
        .map(|b| RunnerFrame::Events {
            job: 42,
            events: (0..batch)
                .map(|i| RunnerEvent {
                    rseq: (b * batch + i + 1) as u64,
                    ts: Timestamp::now(),
                    body: EventBody::Line {
                        host: format!("web-{:02}", i % 20),
                        stream: Stream::Stdout,
                        text: text.to_string(),
                    },
                })
                .collect(),
        })
        .collect();
    let events = frames.len() * batch;

    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut wire = 0usize;
    let mut runner = RunnerCodec::new();
    let started = Instant::now();
    for f in &frames {
        runner.encode(f, &mut buf)?;
        wire += buf.len();
        buf.clear();
    }
    let enc = started.elapsed();

    let mut all = BytesMut::with_capacity(wire);
    for f in &frames {
        runner.encode(f, &mut all)?;
    }
    let mut gateway = GatewayCodec::new();
    let started = Instant::now();
    let mut decoded = 0;
    while let Some(RunnerFrame::Events { events, .. }) = gateway.decode(&mut all)? {
        decoded += events.len();
    }
    let dec = started.elapsed();
    assert_eq!(decoded, events);

    // The gateway's side after commit: each event serialised once as DESIGN §5 JSON.
    let stored: Vec<Event> = frames
        .iter()
        .flat_map(|f| match f {
            RunnerFrame::Events { job, events } => events
                .clone()
                .into_iter()
                .map(|e| Event {
                    job: *job,
                    seq: e.rseq,
                    ts: e.ts,
                    body: e.body,
                })
                .collect(),
            _ => Vec::new(),
        })
        .collect();
    let mut out = Vec::with_capacity(256);
    let started = Instant::now();
    for e in &stored {
        out.clear();
        e.write_json(&mut out);
    }
    let json = started.elapsed();

    println!(
        "{events} events of 100-byte lines in batches of {batch}, {:.0} bytes/event on the wire",
        wire as f64 / events as f64
    );
    println!(
        "encode: {:>12.0} events/s",
        events as f64 / enc.as_secs_f64()
    );
    println!(
        "decode: {:>12.0} events/s",
        events as f64 / dec.as_secs_f64()
    );
    println!(
        "write_json: {:>8.0} events/s (DESIGN §5 JSON, once per committed event)",
        events as f64 / json.as_secs_f64()
    );
    Ok(())
}
