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
    let mut lines = LineSplitter::new(MAX_LINE);
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
        let read = if lines.partial().is_empty() {
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
                let batch = partial_batch(&mut lines, &host, stream, &mut markers);
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
        let ts = Timestamp::now();
        let mut batch = Vec::new();
        lines.feed(&chunk[..n], |line| {
            push_line(&mut batch, &host, stream, line, ts, &mut markers)
        });
        if !batch.is_empty() && !send(&tx, batch, &mut give_up).await {
            return;
        }
    }
    if !lines.partial().is_empty() {
        let batch = partial_batch(&mut lines, &host, stream, &mut markers);
        let _ = tx.send(batch).await;
    }
}

/// Cuts a byte stream into line texts of at most `max` bytes, the same pieces however
/// the stream is cut into reads: a line is split at the largest UTF-8 boundary at or
/// below `max`, and a run whose newline has not come yet is cut only once it is longer
/// than `max`, so its pieces are the ones the whole line would give.
struct LineSplitter {
    max: usize,
    /// The current line's bytes not sent yet: never longer than `max`.
    partial: Vec<u8>,
}

impl LineSplitter {
    fn new(max: usize) -> Self {
        LineSplitter {
            max,
            partial: Vec::with_capacity(2 * max),
        }
    }

    /// Adds `bytes` just read; `emit` gets each finished piece, in order, without its
    /// newline.
    fn feed(&mut self, bytes: &[u8], mut emit: impl FnMut(&[u8])) {
        let mut rest = bytes;
        while let Some(pos) = memchr_newline(rest) {
            if self.partial.is_empty() {
                emit_pieces(&rest[..pos], self.max, &mut emit);
            } else {
                self.partial.extend_from_slice(&rest[..pos]);
                emit_pieces(&self.partial, self.max, &mut emit);
                self.partial.clear();
            }
            rest = &rest[pos + 1..];
        }
        self.partial.extend_from_slice(rest);
        // A run longer than `max` without its newline yet: its leading pieces are final.
        let mut start = 0;
        while self.partial.len() - start > self.max {
            let cut = char_boundary(&self.partial[start..], self.max);
            emit(&self.partial[start..start + cut]);
            start += cut;
        }
        self.partial.drain(..start);
    }

    /// The bytes of the line that has no newline yet.
    fn partial(&self) -> &[u8] {
        &self.partial
    }

    /// Ends the current line where it stands (idle, or the end of the pipe).
    fn take_partial(&mut self) -> Vec<u8> {
        std::mem::replace(&mut self.partial, Vec::with_capacity(2 * self.max))
    }
}

/// Sends `line` as pieces of at most `max` bytes.
fn emit_pieces(mut line: &[u8], max: usize, emit: &mut impl FnMut(&[u8])) {
    while line.len() > max {
        let cut = char_boundary(line, max);
        emit(&line[..cut]);
        line = &line[cut..];
    }
    emit(line);
}

/// The line that has no newline yet, ended where it stands, as a batch of its own.
fn partial_batch(
    lines: &mut LineSplitter,
    host: &str,
    stream: Stream,
    markers: &mut Option<Markers>,
) -> Vec<Pending> {
    let mut batch = Vec::with_capacity(1);
    let line = lines.take_partial();
    push_line(&mut batch, host, stream, &line, Timestamp::now(), markers);
    batch
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
/// UTF-8 at all). `bytes` is longer than `max`, so the byte after the cut is known and
/// the cut never depends on where a read ended.
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

    /// Lines of the lengths given (cut from multi-byte text, so 64 KiB cuts fall inside
    /// characters and some lines end in a truncated sequence), then `\r\n`, invalid
    /// UTF-8, a multi-byte character that reads may cut, and a last line without newline.
    fn sample(lengths: &[usize]) -> Vec<u8> {
        let fills: [&[u8]; 4] = [b"x", "\u{e9}".as_bytes(), "\u{20ac}".as_bytes(), b"ab\xff"];
        let mut input = Vec::new();
        for (i, &len) in lengths.iter().enumerate() {
            input.extend(fills[i % fills.len()].iter().cycle().take(len));
            input.push(b'\n');
        }
        input.extend_from_slice(
            b"crlf\r\nbad \xff\xfe \xe2\x82 bytes\n\xe2\x82\xac\n\xe2\x82\xac end",
        );
        input
    }

    /// The pieces `input` becomes when its reads end at `cuts`; each is one line event's
    /// text before U+FFFD replaces what is not UTF-8.
    fn split_at(input: &[u8], cuts: &[usize], max: usize) -> Vec<Vec<u8>> {
        let mut lines = LineSplitter::new(max);
        let mut out = Vec::new();
        let mut from = 0;
        for &to in cuts.iter().chain([&input.len()]) {
            lines.feed(&input[from..to], |line| out.push(line.to_vec()));
            from = to;
        }
        if !lines.partial().is_empty() {
            out.push(lines.take_partial());
        }
        out
    }

    fn in_reads_of(input: &[u8], size: usize, max: usize) -> Vec<Vec<u8>> {
        let cuts: Vec<usize> = (size..input.len()).step_by(size).collect();
        split_at(input, &cuts, max)
    }

    fn lengths(pieces: &[Vec<u8>]) -> Vec<usize> {
        pieces.iter().map(Vec::len).collect()
    }

    #[test]
    fn line_events_are_the_same_wherever_reads_end_at_a_small_limit() {
        // The real sizes scaled down to a 16-byte limit, so every pair of cuts is tried.
        const MAX: usize = 16;
        let input = sample(&[0, 1, MAX - 1, MAX, MAX + 1, 25, 50]);
        let whole = split_at(&input, &[], MAX);
        assert_eq!(
            lengths(&whole),
            [0, 1, 15, 16, 16, 1, 16, 9, 15, 15, 15, 5, 5, 15, 3, 7],
            "{whole:?}"
        );
        for a in 0..=input.len() {
            for b in a..=input.len() {
                assert_eq!(split_at(&input, &[a, b], MAX), whole, "cuts at {a} and {b}");
            }
        }
        for size in 1..=input.len() {
            assert_eq!(in_reads_of(&input, size, MAX), whole, "reads of {size}");
        }
    }

    #[test]
    fn line_events_are_the_same_wherever_reads_end() {
        let line_lengths = [0, 1, 65_535, 65_536, 65_537, 100_000, 200_000];
        let input = sample(&line_lengths);
        let whole = split_at(&input, &[], MAX_LINE);
        // 200,000 bytes of € are cut before the character that 64 KiB would split.
        assert_eq!(
            lengths(&whole),
            [
                0, 1, 65_535, 65_536, 65_536, 1, 65_536, 34_464, 65_535, 65_535, 65_535, 3_395, 5,
                15, 3, 7
            ]
        );
        assert!(whole.iter().all(|piece| piece.len() <= MAX_LINE));
        // Cuts near every place where a line starts or ends, or a 64 KiB piece could end.
        let mut near = Vec::new();
        let mut at = 0;
        for len in line_lengths {
            near.extend((0..=len / MAX_LINE + 1).map(|k| at + k * MAX_LINE));
            at += len + 1;
            near.push(at);
        }
        for place in near {
            for a in place.saturating_sub(4)..=(place + 4).min(input.len()) {
                assert_eq!(split_at(&input, &[a], MAX_LINE), whole, "one cut at {a}");
            }
        }
        for size in [1, 2, 3, 7, 4_096, 65_535, 65_536, 65_537, 100_001] {
            assert_eq!(
                in_reads_of(&input, size, MAX_LINE),
                whole,
                "reads of {size}"
            );
        }
    }

    /// A pipe whose reads return exactly the chunks given.
    struct Reads(std::collections::VecDeque<Vec<u8>>);

    impl AsyncRead for Reads {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            if let Some(mut chunk) = self.0.pop_front() {
                let n = chunk.len().min(buf.remaining());
                buf.put_slice(&chunk[..n]);
                if n < chunk.len() {
                    self.0.push_front(chunk.split_off(n));
                }
            }
            std::task::Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn a_newline_read_with_the_last_64_kib_still_splits_the_line() {
        // What CI saw: 34,465 bytes, then one read of the last 65,535 and the newline.
        let (tx, mut rx) = mpsc::channel(16);
        let reads = Reads(
            [
                vec![b'z'; 34_465],
                [vec![b'z'; 65_535], vec![b'\n']].concat(),
            ]
            .into(),
        );
        pump(reads, "h".into(), Stream::Stdout, tx, None).await;
        let mut got = Vec::new();
        while let Some(batch) = rx.recv().await {
            for (_, body) in batch {
                if let EventBody::Line { text, .. } = body {
                    got.push(text.len());
                }
            }
        }
        assert_eq!(got, [65_536, 34_464]);
    }
}
