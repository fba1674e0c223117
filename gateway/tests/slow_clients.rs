//! Slow and idle clients cannot hold the descriptors that watchers need: half-sent
//! headers, bodies trickled a byte at a time and idle keep-alive connections are
//! dropped within their deadlines, and past the cap of HTTP connections new ones are
//! closed at once while upgraded WebSockets keep theirs.

mod common;

use std::time::{Duration, Instant};

use common::{Gateway, http};
use shipwatch_gateway::serve::{BODY_TIMEOUT, HEADER_TIMEOUT, Limits};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The full number of the issue: CI runs it too, it takes one header timeout.
const HALF_SENT: usize = 3_000;

/// Waits until the peer closes `stream` (EOF or reset), reading and discarding what it
/// sends; `Err` when it is still open at `deadline`.
async fn closed_by(stream: &mut TcpStream, deadline: Instant) -> Result<(), ()> {
    let mut buf = vec![0u8; 4096];
    let left = deadline.saturating_duration_since(Instant::now());
    tokio::time::timeout(left, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    })
    .await
    .map_err(|_| ())
}

/// Each test's client descriptors: the soft limit lifted to the hard one, which the
/// gateway in this process does for itself too.
fn enough_descriptors(needed: u64) {
    shipwatch_gateway::nofile::raise_soft_limit();
    let (soft, _) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .expect("getrlimit");
    assert!(
        soft >= needed,
        "the test needs {needed} descriptors; the hard RLIMIT_NOFILE allows {soft}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_thousand_half_sent_headers_are_all_dropped_within_the_deadline() {
    // Both ends of every connection live in this process.
    enough_descriptors(2 * HALF_SENT as u64 + 500);
    let dir = tempfile::tempdir().unwrap();
    let gateway = Gateway::start(dir.path(), "viewer").await;
    let started = Instant::now();
    let mut slow = Vec::with_capacity(HALF_SENT);
    for _ in 0..HALF_SENT {
        let mut s = TcpStream::connect(("127.0.0.1", gateway.port))
            .await
            .unwrap();
        s.write_all(b"GET /api/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            .await
            .unwrap();
        slow.push(s);
    }
    let opened = started.elapsed();
    let deadline = Instant::now() + HEADER_TIMEOUT + Duration::from_secs(5);
    let mut open = 0;
    for s in &mut slow {
        open += usize::from(closed_by(s, deadline).await.is_err());
    }
    assert_eq!(
        open,
        0,
        "{open} of {HALF_SENT} connections (opened in {opened:?}) still open {:?} after they stopped sending",
        started.elapsed()
    );
    drop(slow);
    assert_eq!(
        http(gateway.port, "GET", "/healthz", &[], "").await.status,
        200
    );
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed_after_the_header_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let gateway = Gateway::start(dir.path(), "viewer").await;
    let mut idle = TcpStream::connect(("127.0.0.1", gateway.port))
        .await
        .unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = idle.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let answered = Instant::now();
    closed_by(
        &mut idle,
        answered + HEADER_TIMEOUT + Duration::from_secs(5),
    )
    .await
    .expect("the idle keep-alive connection is closed");
    assert!(
        answered.elapsed() >= HEADER_TIMEOUT - Duration::from_millis(500),
        "kept for its timeout, not dropped at once: {:?}",
        answered.elapsed()
    );
    gateway.stop().await;
}

/// Sends `head` and then `length` body bytes one every 200 ms until the gateway closes
/// the connection; returns how long that took and what it answered.
async fn trickle(port: u16, head: &str, length: usize) -> (Duration, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(format!("{head}Content-Length: {length}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    let mut buf = vec![0u8; 4096];
    let limit = BODY_TIMEOUT + HEADER_TIMEOUT + Duration::from_secs(5);
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        assert!(
            started.elapsed() < limit,
            "a trickled body still read after {:?}; answer so far: {}",
            started.elapsed(),
            String::from_utf8_lossy(&answer)
        );
        tokio::select! {
            read = s.read(&mut buf) => match read {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            },
            _ = tick.tick() => {
                // The gateway may have closed its end already: the read above says so.
                let _ = s.write_all(b"x").await;
            }
        }
    }
    (
        started.elapsed(),
        String::from_utf8_lossy(&answer).to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_trickled_byte_by_byte_times_out() {
    let dir = tempfile::tempdir().unwrap();
    let gateway = Gateway::start(dir.path(), "viewer").await;
    let host = format!("Host: 127.0.0.1:{}\r\n", gateway.port);
    // A route that reads its body, and one that never does.
    for head in [
        format!("POST /api/login HTTP/1.1\r\n{host}Content-Type: application/json\r\n"),
        format!("GET /healthz HTTP/1.1\r\n{host}"),
    ] {
        let (took, answer) = trickle(gateway.port, &head, 1_000).await;
        let first = head.lines().next().unwrap_or_default();
        assert!(
            took >= BODY_TIMEOUT - Duration::from_secs(1) || answer.starts_with("HTTP/1.1 200"),
            "{first}: closed after {took:?}: {answer}"
        );
    }
    assert_eq!(
        http(gateway.port, "GET", "/healthz", &[], "").await.status,
        200
    );
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_connection_cap_new_ones_close_at_once_and_websockets_keep_theirs() {
    use axum::extract::ws::{Message, WebSocketUpgrade};
    use futures_util::{SinkExt, StreamExt};

    const CAP: usize = 8;
    let app = axum::Router::new()
        .route("/ok", axum::routing::get(|| async { "ok" }))
        .route(
            "/echo",
            axum::routing::get(|ws: WebSocketUpgrade| async move {
                ws.on_upgrade(|mut socket| async move {
                    while let Some(Ok(Message::Text(text))) = socket.recv().await {
                        if socket.send(Message::Text(text)).await.is_err() {
                            return;
                        }
                    }
                })
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let limits = Limits {
        header_timeout: Duration::from_secs(3),
        body_timeout: Duration::from_secs(3),
        max_connections: CAP,
    };
    let shutdown = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn(shipwatch_gateway::serve::serve(
        listener,
        app,
        limits,
        shutdown.clone(),
    ));

    // Watchers first: once upgraded they are no longer HTTP connections.
    let mut watchers = Vec::new();
    for _ in 0..CAP {
        let (socket, _) = tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/echo"))
            .await
            .unwrap();
        watchers.push(socket);
    }
    let mut slow = Vec::new();
    for _ in 0..CAP {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        s.write_all(b"GET /ok HTTP/1.1\r\nX-Slow: ").await.unwrap();
        slow.push(s);
    }
    let filled = Instant::now();
    // The cap is reached: the next connection is accepted and closed, long before any
    // header timeout.
    let mut late = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let _ = late.write_all(b"GET /ok HTTP/1.1\r\n\r\n").await;
    closed_by(&mut late, filled + Duration::from_secs(2))
        .await
        .expect("a connection past the cap is closed at once");
    // The slow ones were held (they count), and every watcher still answers.
    for s in &mut slow {
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_millis(10), s.read(&mut byte)).await;
        assert!(
            read.is_err(),
            "a slow connection under the cap is held until its timeout"
        );
    }
    for socket in &mut watchers {
        socket
            .send(tokio_tungstenite::tungstenite::Message::Text("ping".into()))
            .await
            .unwrap();
        let echo = tokio::time::timeout(Duration::from_secs(5), socket.next())
            .await
            .expect("an echo in time")
            .unwrap()
            .unwrap();
        assert_eq!(echo.into_text().unwrap().as_str(), "ping");
    }
    // Once the slow ones time out, connections are served again.
    for s in &mut slow {
        closed_by(s, filled + limits.header_timeout + Duration::from_secs(5))
            .await
            .expect("a slow connection is dropped at its header timeout");
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let reply = http(port, "GET", "/ok", &[], "").await;
        if reply.status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "never served again: {reply:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    shutdown.cancel();
    drop(watchers);
    server.await.unwrap().unwrap();
}
