//! Turns a host's stdout or stderr pipe into line events.
//!
//! Lines split on `\n` only (a `\r` progress line stays one line and is flushed after a
//! short idle), runs over 64 KiB are split, invalid UTF-8 becomes U+FFFD and everything
//! else, ANSI escapes included, passes through untouched. The timestamp is taken when the
//! bytes are read.

use std::time::Duration;

use shipwatch_protocol::{EventBody, Stream, Timestamp};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// Longest line event; longer runs are split.
pub const MAX_LINE: usize = 64 * 1024;

/// A partial line waits this long for its newline before it is sent as it is.
pub const IDLE_FLUSH: Duration = Duration::from_millis(200);

/// How long [`pump_until`] keeps reading after it is told to stop.
pub const AFTER_STOP: Duration = Duration::from_millis(300);

/// An event with the time it happened, before it gets an `rseq`.
pub type Pending = (Timestamp, EventBody);

/// Events from a job's hosts, in batches: one batch per read keeps the channel cheap.
pub type EventSender = mpsc::Sender<Vec<Pending>>;

/// Now, as a protocol timestamp.
pub fn now() -> Timestamp {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    Timestamp(ms)
}

/// The wrapper's markers on stderr; they carry a per-run random token so no script
/// output can forge them.
pub struct Markers {
    pub start: Vec<u8>,
    pub exit_prefix: Vec<u8>,
    pub started: Option<oneshot::Sender<()>>,
    pub exited: Option<oneshot::Sender<i32>>,
}

/// Reads `pipe` to its end, sending every line of `host` as events on `tx`. Returns
/// when the pipe closes or the receiver is gone.
pub async fn pump<R: AsyncRead + Unpin>(
    pipe: R,
    host: String,
    stream: Stream,
    tx: EventSender,
    markers: Option<Markers>,
) {
    pump_until(pipe, host, stream, tx, markers, CancellationToken::new()).await
}

/// Like [`pump`], and gives up reading [`AFTER_STOP`] after `stop` is cancelled (a
/// background child may hold the pipe open forever). Time spent waiting for room on `tx`
/// does not count: while the gateway is away `tx` is full, the host's last lines may
/// still sit in the pipe, and waiting is the backpressure; giving up would lose them.
pub async fn pump_until<R: AsyncRead + Unpin>(
    mut pipe: R,
    host: String,
    stream: Stream,
    tx: EventSender,
    mut markers: Option<Markers>,
    stop: CancellationToken,
) {
    let mut buf: Vec<u8> = Vec::with_capacity(2 * MAX_LINE);
    let mut chunk = vec![0u8; MAX_LINE];
    // Set when `stop` fires; moved later by the time each send waits.
    let mut give_up: Option<tokio::time::Instant> = None;
    let until = |give_up: Option<tokio::time::Instant>| {
        let stop = stop.clone();
        async move {
            match give_up {
                Some(at) => tokio::time::sleep_until(at).await,
                None => stop.cancelled().await,
            }
        }
    };
    loop {
        // Reads are cancel-safe: stopping loses nothing already read.
        let read = if buf.is_empty() {
            tokio::select! {
                biased;
                () = until(give_up) => None,
                read = pipe.read(&mut chunk) => Some(Ok(read)),
            }
        } else {
            tokio::select! {
                biased;
                () = until(give_up) => None,
                read = tokio::time::timeout(IDLE_FLUSH, pipe.read(&mut chunk)) => Some(read),
            }
        };
        let read = match read {
            None if give_up.is_none() => {
                give_up = Some(tokio::time::Instant::now() + AFTER_STOP);
                continue;
            }
            None => break,
            Some(Ok(read)) => read,
            Some(Err(_)) => {
                // Idle with a partial line (a progress bar, a prompt): send it as is.
                let mut batch = Vec::with_capacity(1);
                let line = std::mem::take(&mut buf);
                push_line(&mut batch, &host, stream, &line, now(), &mut markers);
                if !send(&tx, batch, &mut give_up).await {
                    return;
                }
                continue;
            }
        };
        let n = match read {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let ts = now();
        buf.extend_from_slice(&chunk[..n]);
        let mut batch = Vec::new();
        let mut start = 0;
        while let Some(pos) = memchr_newline(&buf[start..]) {
            let end = start + pos;
            push_line(
                &mut batch,
                &host,
                stream,
                &buf[start..end],
                ts,
                &mut markers,
            );
            start = end + 1;
        }
        // An over-long run without newline: send full 64 KiB pieces now.
        while buf.len() - start >= MAX_LINE {
            let cut = char_boundary(&buf[start..], MAX_LINE);
            push_line(
                &mut batch,
                &host,
                stream,
                &buf[start..start + cut],
                ts,
                &mut markers,
            );
            start += cut;
        }
        buf.drain(..start);
        if !batch.is_empty() && !send(&tx, batch, &mut give_up).await {
            return;
        }
    }
    if !buf.is_empty() {
        let mut batch = Vec::with_capacity(1);
        push_line(&mut batch, &host, stream, &buf, now(), &mut markers);
        let _ = tx.send(batch).await;
    }
}

/// Hands `batch` over; false when the receiver is gone. The wait for room moves
/// `give_up` later: only time spent reading counts against it.
async fn send(
    tx: &EventSender,
    batch: Vec<Pending>,
    give_up: &mut Option<tokio::time::Instant>,
) -> bool {
    let started = tokio::time::Instant::now();
    let sent = tx.send(batch).await.is_ok();
    if let Some(at) = give_up.as_mut() {
        *at += started.elapsed();
    }
    sent
}

fn memchr_newline(bytes: &[u8]) -> Option<usize> {
    bytes.iter().position(|&b| b == b'\n')
}

/// The largest cut ≤ `max` that does not split a UTF-8 sequence (when the bytes are
/// UTF-8 at all).
fn char_boundary(bytes: &[u8], max: usize) -> usize {
    let mut cut = max.min(bytes.len());
    for _ in 0..3 {
        if cut < bytes.len() && cut > 0 && (bytes[cut] & 0b1100_0000) == 0b1000_0000 {
            cut -= 1;
        } else {
            break;
        }
    }
    if cut == 0 { max.min(bytes.len()) } else { cut }
}

fn push_line(
    batch: &mut Vec<Pending>,
    host: &str,
    stream: Stream,
    mut line: &[u8],
    ts: Timestamp,
    markers: &mut Option<Markers>,
) {
    if let Some(m) = markers.as_mut() {
        if m.started.is_some() && line == m.start.as_slice() {
            if let Some(tx) = m.started.take() {
                let _ = tx.send(());
            }
            return;
        }
        if let Some(at) = find(line, &m.exit_prefix) {
            let code = std::str::from_utf8(&line[at + m.exit_prefix.len()..])
                .ok()
                .and_then(|s| s.trim().parse::<i32>().ok());
            if let (Some(code), Some(tx)) = (code, m.exited.take()) {
                let _ = tx.send(code);
                line = &line[..at];
                if line.is_empty() {
                    return;
                }
            }
        }
    }
    batch.push((
        ts,
        EventBody::Line {
            host: host.to_owned(),
            stream,
            text: String::from_utf8_lossy(line).into_owned(),
        },
    ));
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || haystack.len() < needle.len() {
        return None;
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn lines_of(input: Vec<u8>) -> Vec<String> {
        let (tx, mut rx) = mpsc::channel(1024);
        pump(&input[..], "h".into(), Stream::Stdout, tx, None).await;
        let mut out = Vec::new();
        while let Some(batch) = rx.recv().await {
            for (_, body) in batch {
                if let EventBody::Line { text, .. } = body {
                    out.push(text);
                }
            }
        }
        out
    }

    #[tokio::test]
    async fn splits_on_newline_and_flushes_partial_at_end() {
        let got = lines_of(b"a\nb\r\n\x1b[31mred\x1b[0m\nprogress 50%\r".to_vec()).await;
        assert_eq!(got, ["a", "b\r", "\x1b[31mred\x1b[0m", "progress 50%\r"]);
    }

    #[tokio::test]
    async fn long_lines_are_split_and_invalid_utf8_replaced() {
        let mut input = vec![b'x'; MAX_LINE * 2 + 10];
        input.extend_from_slice(b"\n\xffok\n");
        let got = lines_of(input).await;
        assert_eq!(got.len(), 4);
        assert_eq!(got[0].len(), MAX_LINE);
        assert_eq!(got[1].len(), MAX_LINE);
        assert_eq!(got[2].len(), 10);
        assert_eq!(got[3], "\u{fffd}ok");
    }

    #[tokio::test]
    async fn partial_line_flushed_after_idle() {
        let (mut w, r) = tokio::io::duplex(1024);
        let (tx, mut rx) = mpsc::channel(16);
        let task = tokio::spawn(pump(r, "h".into(), Stream::Stderr, tx, None));
        tokio::io::AsyncWriteExt::write_all(&mut w, b"50%\r")
            .await
            .expect("write");
        let batch = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("flushed before the pipe closed")
            .expect("batch");
        assert!(
            matches!(&batch[0].1, EventBody::Line { text, stream: Stream::Stderr, .. } if text == "50%\r")
        );
        drop(w);
        task.await.expect("pump");
    }
}
