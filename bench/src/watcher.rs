//! A WebSocket watcher that checks every event it reads (gapless seq, each host's lines
//! once and in order), reconnecting with `after=` on 4008; spawning and joining many.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub(crate) use shipwatch_wstest::Socket;
use shipwatch_wstest::{End, Frame, Limit, Options, next_frame};
use tokio::sync::Semaphore;

use crate::histogram::Histogram;
use crate::scan::{Cursor, KIND_KEY, STATE_KEY, Scanner, excerpt};
use crate::{CONNECTING_AT_ONCE, Error, now_nanos};

/// A WebSocket client. The kernel receive buffer is fixed at 256 KiB (see
/// [`shipwatch_wstest::Options::recv_buffer`]); `read_buffer` is tungstenite's own.
pub(crate) async fn connect(url: &str, read_buffer: usize) -> Result<Socket, Error> {
    let options = Options {
        recv_buffer: Some(256 * 1024),
        read_buffer: Some(read_buffer),
        ..Options::default()
    };
    Ok(shipwatch_wstest::connect(url, &options).await?)
}

/// What one watcher saw; every count is checked as it arrives.
pub(crate) struct Seen {
    pub(crate) lines: u64,
    pub(crate) frames: u64,
    pub(crate) bytes: u64,
    pub(crate) last_seq: u64,
    /// The last linegen sequence number seen per host (index = host number - 1); 0: none
    /// yet, and then, for a watcher that joined with `after` > 0, any line may come first.
    pub(crate) per_host: Vec<u64>,
    /// The `after=` it joined with.
    pub(crate) after: u64,
    /// Times the gateway closed it with 4008 and it reconnected with `after=`.
    pub(crate) reconnects: u64,
    /// Times its connection dropped (gateway killed) and it reconnected with `after=`.
    pub(crate) resumes: u64,
    /// When the last frame arrived, and the longest wait between two frames (ns).
    pub(crate) last_frame_at: u64,
    pub(crate) longest_silence: u64,
    pub(crate) min_stamp: u128,
    pub(crate) last_line_at: u128,
    pub(crate) latency: Histogram,
    pub(crate) job_state: Option<String>,
    pub(crate) close: Option<u16>,
}

impl Seen {
    pub(crate) fn new(hosts: usize, after: u64) -> Self {
        Seen {
            lines: 0,
            frames: 0,
            bytes: 0,
            last_seq: after,
            per_host: vec![0; hosts],
            after,
            reconnects: 0,
            resumes: 0,
            last_frame_at: 0,
            longest_silence: 0,
            min_stamp: u128::MAX,
            last_line_at: 0,
            latency: Histogram::new(),
            job_state: None,
            close: None,
        }
    }

    /// Checks one text frame (a JSON array of events) and counts its lines.
    pub(crate) fn frame(&mut self, scan: &Scanner, bytes: &[u8], now: u128) -> Result<(), String> {
        self.frames += 1;
        self.bytes += bytes.len() as u64;
        let first_seq = self.last_seq + 1;
        let now = now as u64;
        if self.last_frame_at > 0 {
            self.longest_silence = self
                .longest_silence
                .max(now.saturating_sub(self.last_frame_at));
        }
        self.last_frame_at = now;
        if !bytes.starts_with(b"[") || scan.kind.find(bytes) != Some(1) {
            return Err(format!(
                "frame {} is no event array: {}",
                self.frames,
                excerpt(bytes, 0)
            ));
        }
        let mut next = Some(1);
        while let Some(at) = next {
            let mut c = Cursor { bytes, at };
            let frames = self.frames;
            let bad = |what: &str| {
                format!(
                    "frame {frames}: {what} in event: {}",
                    excerpt(bytes, at + 80)
                )
            };
            let head = (|| {
                c.expect(KIND_KEY)?;
                let kind = c.string()?;
                c.expect(b",\"job\":")?;
                c.number()?;
                c.expect(b",\"seq\":")?;
                let seq = c.number()?;
                c.expect(b",\"ts\":\"")?;
                c.string()?;
                Some((kind, seq))
            })();
            let (kind, seq) = head.ok_or_else(|| bad("not kind, job, seq, ts"))?;
            if seq != self.last_seq + 1 {
                let what = if seq <= self.last_seq {
                    "DUPLICATE or out of order"
                } else {
                    "GAP"
                };
                return Err(format!(
                    "{what}: seq {seq} after seq {} (frame {frames}): {}",
                    self.last_seq,
                    excerpt(bytes, at + 80)
                ));
            }
            self.last_seq = seq;
            match kind {
                b"line" => {
                    let body = (|| {
                        c.expect(b",\"host\":\"h-")?;
                        let host = usize::try_from(c.number()?).ok()?;
                        c.expect(b"\",\"stream\":\"")?;
                        c.string()?;
                        c.expect(b",\"text\":\"")?;
                        let line_seq = c.number()?;
                        c.expect(b" ")?;
                        Some((host, line_seq, c.number()?))
                    })();
                    let (host, line_seq, stamp) =
                        body.ok_or_else(|| bad("not a linegen line from a host h-NN"))?;
                    let last = self
                        .per_host
                        .get_mut(host.wrapping_sub(1))
                        .ok_or_else(|| bad("unknown host"))?;
                    let joined_late = self.after > 0 && *last == 0;
                    if line_seq != *last + 1 && !joined_late {
                        let what = if line_seq <= *last {
                            "DUPLICATE line"
                        } else {
                            "MISSING line(s)"
                        };
                        return Err(format!(
                            "{what}: host h-{host:02} line {line_seq} after line {} (seq {seq}, frame {frames}): {}",
                            *last,
                            excerpt(bytes, at + 80)
                        ));
                    }
                    *last = line_seq;
                    self.lines += 1;
                    self.min_stamp = self.min_stamp.min(u128::from(stamp));
                    self.last_line_at = u128::from(now);
                    self.latency.record(now.saturating_sub(stamp) / 1000);
                }
                b"job" => {
                    let state = scan
                        .state
                        .find(&bytes[c.at..])
                        .and_then(|s| {
                            c.at += s + STATE_KEY.len();
                            c.string()
                        })
                        .ok_or_else(|| bad("no job state"))?;
                    self.job_state = Some(String::from_utf8_lossy(state).into_owned());
                }
                b"host" => {}
                _ => return Err(bad("unexpected event kind")),
            }
            next = scan.kind.find(&bytes[c.at..]).map(|n| c.at + n);
        }
        // Now and then, the scan is checked against a real JSON parse of the frame.
        if self.frames % 128 == 1 {
            let events: Vec<serde_json::Value> = serde_json::from_slice(bytes).map_err(|e| {
                format!(
                    "frame {} is not JSON ({e}): {}",
                    self.frames,
                    excerpt(bytes, 0)
                )
            })?;
            let seqs: Vec<u64> = events.iter().filter_map(|e| e["seq"].as_u64()).collect();
            let scanned: Vec<u64> = (first_seq..=self.last_seq).collect();
            if seqs != scanned {
                return Err(format!(
                    "frame {}: JSON holds seqs {:?}…, the scan found {:?}…",
                    self.frames,
                    &seqs[..seqs.len().min(5)],
                    &scanned[..scanned.len().min(5)]
                ));
            }
        }
        Ok(())
    }
}

/// One watcher's set-up: where to connect and how to report progress.
pub(crate) struct Watcher {
    pub(crate) id: usize,
    /// `ws://…/ws/jobs/{id}`, without the query.
    pub(crate) url: String,
    pub(crate) after: u64,
    pub(crate) hosts: usize,
    pub(crate) read_buffer: usize,
    /// Counted once connected (or once the first frame arrived, with `ready_on_frame`).
    pub(crate) ready: Arc<AtomicUsize>,
    pub(crate) ready_on_frame: bool,
    /// Limits how many watchers are connecting at once.
    pub(crate) connecting: Arc<Semaphore>,
    /// This watcher's last seq, for a report when the run stalls.
    pub(crate) progress: Arc<AtomicU64>,
    /// A watcher that receives nothing for this long fails.
    pub(crate) stall: Duration,
    /// A slow reader: pauses this long after each frame, so the gateway must let it fall
    /// behind and catch up from the store (or close it 4008) without a gap.
    pub(crate) pause: Option<Duration>,
    /// A stalled reader: once connected it reads nothing until this turns true.
    pub(crate) hold: Option<tokio::sync::watch::Receiver<bool>>,
    /// When the connection drops without a close frame (the gateway was killed), keep
    /// reconnecting with `after=` the last seq until the restarted gateway answers.
    pub(crate) resume: bool,
}

/// Reconnections after 4008 one watcher may make before the run counts as failed.
pub(crate) const MAX_RECONNECTS: u64 = 1000;

/// Reads one job's events until the server closes with 1000, checking each; after a
/// 4008 close it reconnects with `after=` its last seq, as DESIGN §6 tells clients to.
pub(crate) async fn watch(w: Watcher) -> Result<Seen, String> {
    let fail = |what: String| format!("watcher {} (after={}): {what}", w.id, w.after);
    let permit = w
        .connecting
        .acquire()
        .await
        .map_err(|e| fail(e.to_string()))?;
    let url = |after: u64| format!("{}?after={after}", w.url);
    let mut socket = connect(&url(w.after), w.read_buffer)
        .await
        .map_err(|e| fail(format!("connect: {e}")))?;
    let mut permit = Some(permit);
    if !w.ready_on_frame {
        w.ready.fetch_add(1, Ordering::Relaxed);
        permit = None;
    }
    let scan = Scanner::new();
    let mut seen = Seen::new(w.hosts, w.after);
    if let Some(mut hold) = w.hold.clone() {
        hold.wait_for(|&go| go)
            .await
            .map_err(|e| fail(format!("hold: {e}")))?;
    }
    loop {
        let text = match next_frame(&mut socket, Limit::Idle(w.stall)).await {
            Frame::Text(text) => text,
            Frame::End(End::Deadline) => {
                return Err(fail(format!(
                    "nothing for {:?} after seq {} ({} lines)",
                    w.stall, seen.last_seq, seen.lines
                )));
            }
            Frame::End(End::Eof | End::Failed(_)) if w.resume => {
                socket = reconnect(&url(seen.last_seq), w.read_buffer)
                    .await
                    .map_err(|e| fail(format!("resume after seq {}: {e}", seen.last_seq)))?;
                seen.resumes += 1;
                continue;
            }
            Frame::End(End::Closed(Some(4008))) => {
                seen.reconnects += 1;
                if seen.reconnects > MAX_RECONNECTS {
                    return Err(fail(format!("closed 4008 {MAX_RECONNECTS} times")));
                }
                socket = connect(&url(seen.last_seq), w.read_buffer)
                    .await
                    .map_err(|e| fail(format!("reconnect after seq {}: {e}", seen.last_seq)))?;
                continue;
            }
            Frame::End(End::Closed(code)) => {
                seen.close = code;
                break;
            }
            Frame::End(End::Eof) => break,
            Frame::End(other) => {
                return Err(fail(format!(
                    "after seq {} ({} lines): {other}",
                    seen.last_seq, seen.lines
                )));
            }
        };
        seen.frame(&scan, text.as_bytes(), now_nanos())
            .map_err(fail)?;
        w.progress.store(seen.last_seq, Ordering::Relaxed);
        if permit.take().is_some() {
            w.ready.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(pause) = w.pause {
            tokio::time::sleep(pause).await;
        }
    }
    Ok(seen)
}

/// Connects again and again (every 20 ms, for up to 30 s) while the gateway restarts.
pub(crate) async fn reconnect(url: &str, read_buffer: usize) -> Result<Socket, Error> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match connect(url, read_buffer).await {
            Ok(socket) => return Ok(socket),
            Err(e) if Instant::now() > deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// Checks a finished watcher got exactly the job it asked for.
pub(crate) fn check_complete(seen: &Seen, id: usize, lines_per_host: u64) -> Result<(), String> {
    let short: Vec<String> = seen
        .per_host
        .iter()
        .enumerate()
        // A late joiner may have joined after all of a host's lines.
        .filter(|(_, n)| **n != lines_per_host && !(seen.after > 0 && **n == 0))
        .map(|(h, n)| format!("h-{:02}: {n}", h + 1))
        .collect();
    if !short.is_empty() {
        return Err(format!(
            "watcher {id}: MISSING lines, expected {lines_per_host} per host, got {} (last seq {}, job {:?}, close {:?})",
            short.join(", "),
            seen.last_seq,
            seen.job_state,
            seen.close
        ));
    }
    if seen.job_state.as_deref() != Some("succeeded") || seen.close != Some(1000) {
        return Err(format!(
            "watcher {id}: ended with job state {:?} and close {:?}, expected succeeded and 1000",
            seen.job_state, seen.close
        ));
    }
    Ok(())
}

/// Spawns `count` watchers of `url` and waits until they are all ready; with `resume`
/// they reconnect with `after=` when the gateway goes away.
pub(crate) async fn spawn_watchers(
    count: usize,
    url: &str,
    hosts: usize,
    read_buffer: usize,
    ready_on_frame: bool,
    stall: Duration,
    resume: bool,
) -> Result<
    (
        Vec<tokio::task::JoinHandle<Result<Seen, String>>>,
        Vec<Arc<AtomicU64>>,
    ),
    Error,
> {
    let ready = Arc::new(AtomicUsize::new(0));
    let connecting = Arc::new(Semaphore::new(CONNECTING_AT_ONCE));
    let mut tasks = Vec::with_capacity(count);
    let mut progress = Vec::with_capacity(count);
    for id in 0..count {
        let p = Arc::new(AtomicU64::new(0));
        progress.push(p.clone());
        tasks.push(tokio::spawn(watch(Watcher {
            id,
            url: url.to_owned(),
            after: 0,
            hosts,
            read_buffer,
            ready: ready.clone(),
            ready_on_frame,
            connecting: connecting.clone(),
            progress: p,
            stall,
            pause: None,
            hold: None,
            resume,
        })));
    }
    let deadline =
        Instant::now() + Duration::from_secs(30) + Duration::from_millis(10) * count as u32;
    while ready.load(Ordering::Relaxed) < count {
        if let Some(done) = tasks.iter().position(|t| t.is_finished()) {
            let task = tasks.swap_remove(done);
            return Err(match task.await {
                Ok(Err(e)) => e.into(),
                Ok(Ok(_)) => "a watcher ended before all were connected".into(),
                Err(e) => e.into(),
            });
        }
        if Instant::now() > deadline {
            return Err(format!(
                "only {} of {count} watchers ready",
                ready.load(Ordering::Relaxed)
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok((tasks, progress))
}

/// Awaits every watcher; on a stall, says how far each got.
pub(crate) async fn join_watchers(
    tasks: Vec<tokio::task::JoinHandle<Result<Seen, String>>>,
    progress: &[Arc<AtomicU64>],
    within: Duration,
) -> Result<Vec<Seen>, String> {
    let all = futures_util::future::join_all(tasks);
    let results = match tokio::time::timeout(within, all).await {
        Ok(results) => results,
        Err(_) => {
            let seqs: Vec<u64> = progress.iter().map(|p| p.load(Ordering::Relaxed)).collect();
            return Err(format!(
                "watchers not done within {within:?}: last seq min {} max {}",
                seqs.iter().min().unwrap_or(&0),
                seqs.iter().max().unwrap_or(&0)
            ));
        }
    };
    let mut seen = Vec::with_capacity(results.len());
    let mut errors = Vec::new();
    for result in results {
        match result {
            Ok(Ok(s)) => seen.push(s),
            Ok(Err(e)) => errors.push(e),
            Err(e) => errors.push(e.to_string()),
        }
    }
    if !errors.is_empty() {
        let n = errors.len();
        errors.truncate(5);
        return Err(format!("{n} watcher(s) failed:\n  {}", errors.join("\n  ")));
    }
    Ok(seen)
}
