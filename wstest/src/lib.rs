//! The one WebSocket reader of `/ws/jobs/{id}` (DESIGN §6) that the gateway's tests, the
//! end-to-end tests and the benches share: [`connect`] with the socket options a load
//! test needs, then [`next_frame`] / [`read_frames`] / [`read_events`] until the
//! connection ends, each bounded by a [`Limit`], and an [`End`] that says how it ended.
//!
//! It only reads: what a frame must contain (gapless seqs, every line once) is for each
//! caller to check, since a test compares whole events and a bench scans bytes. It never
//! reconnects on its own either: a caller that resumes with `after=` decides when.

use std::time::Duration;

use futures_util::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderName;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message, Utf8Bytes};

/// A connection made by [`connect`].
pub type Socket = WebSocketStream<TcpStream>;

/// Why [`connect`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("bad WebSocket URL {0}")]
    Url(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    WebSocket(#[from] tungstenite::Error),
}

/// How [`connect`] sets the connection up; `Options::default()` is tungstenite's own.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// The kernel's receive buffer (SO_RCVBUF). Left to autotune, a thousand loopback
    /// sockets each grow theirs toward 32 MiB, the kernel hits TCP memory pressure and
    /// retransmits, and a load test measures that instead of the gateway.
    pub recv_buffer: Option<u32>,
    /// tungstenite's read buffer (128 KiB by default, zero-filled per socket).
    pub read_buffer: Option<usize>,
    /// tungstenite's write buffer; 0 for idle watchers that cost little memory.
    pub write_buffer: Option<usize>,
    /// Extra request headers (Cookie, Authorization, Origin).
    pub headers: Vec<(String, String)>,
}

/// Opens `url` (`ws://host:port/…`) with `options`. Messages and frames of any size are
/// accepted: a replay of a long job comes in large frames, and a reader must not be the
/// limit it measures.
pub async fn connect(url: &str, options: &Options) -> Result<Socket, ConnectError> {
    let mut request = url.into_client_request()?;
    for (name, value) in &options.headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| ConnectError::Url(format!("{url}: header name {name:?}")))?;
        let value = value
            .parse()
            .map_err(|_| ConnectError::Url(format!("{url}: header value of {name}")))?;
        request.headers_mut().insert(name, value);
    }
    let host = request
        .uri()
        .host()
        .ok_or_else(|| ConnectError::Url(url.to_owned()))?
        .to_owned();
    let port = request
        .uri()
        .port_u16()
        .ok_or_else(|| ConnectError::Url(url.to_owned()))?;
    let stream = match options.recv_buffer {
        None => TcpStream::connect((host.as_str(), port)).await?,
        Some(size) => {
            let address = tokio::net::lookup_host((host.as_str(), port))
                .await?
                .next()
                .ok_or_else(|| ConnectError::Url(url.to_owned()))?;
            let socket = if address.is_ipv4() {
                tokio::net::TcpSocket::new_v4()?
            } else {
                tokio::net::TcpSocket::new_v6()?
            };
            socket.set_recv_buffer_size(size)?;
            socket.connect(address).await?
        }
    };
    let mut config = WebSocketConfig::default()
        .max_message_size(None)
        .max_frame_size(None);
    if let Some(size) = options.read_buffer {
        config = config.read_buffer_size(size);
    }
    if let Some(size) = options.write_buffer {
        config = config.write_buffer_size(size);
    }
    let (socket, _response) =
        tokio_tungstenite::client_async_with_config(request, stream, Some(config)).await?;
    Ok(socket)
}

/// How long a read may wait.
#[derive(Clone, Copy, Debug)]
pub enum Limit {
    /// Until this instant, for the whole read.
    At(tokio::time::Instant),
    /// This long for each frame: a watcher that hears nothing for so long has stalled.
    Idle(Duration),
}

impl Limit {
    /// [`Limit::At`] `within` from now.
    pub fn within(within: Duration) -> Limit {
        Limit::At(tokio::time::Instant::now() + within)
    }
}

/// How a read ended. Its `Display` is what the end-to-end tests record: `close CODE`,
/// `close none`, `eof`, `error …`, `bad frame …`, `deadline`, or the caller's reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum End {
    /// The server's close frame, with its code if it sent one.
    Closed(Option<u16>),
    /// The connection ended without a close frame (the gateway was killed).
    Eof,
    /// A read error, or a binary frame (the gateway sends only text).
    Failed(String),
    /// A text frame that is not JSON ([`read_events`]).
    BadFrame(String),
    /// The [`Limit`] passed.
    Deadline,
    /// The caller closed the connection ([`After::Close`]) for this reason.
    ClosedByUs(&'static str),
    /// The caller stopped reading ([`After::Stop`]); the connection stays open.
    Stopped,
}

impl std::fmt::Display for End {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            End::Closed(Some(code)) => write!(f, "close {code}"),
            End::Closed(None) => f.write_str("close none"),
            End::Eof => f.write_str("eof"),
            End::Failed(what) => write!(f, "error {what}"),
            End::BadFrame(what) => write!(f, "bad frame {what}"),
            End::Deadline => f.write_str("deadline"),
            End::ClosedByUs(why) => f.write_str(why),
            End::Stopped => f.write_str("stopped"),
        }
    }
}

/// What to do after a frame.
#[derive(Clone, Copy, Debug)]
pub enum After {
    Read,
    /// Wait this long before reading on: a slow watcher the gateway must let fall behind.
    Pause(Duration),
    /// Stop reading and leave the connection open.
    Stop,
    /// Close the connection, for this reason.
    Close(&'static str),
}

/// What one read gave: a text frame, or how the connection ended.
#[derive(Debug)]
pub enum Frame {
    Text(Utf8Bytes),
    End(End),
}

/// The next text frame of `ws` within `limit` (pings and pongs are skipped).
pub async fn next_frame<S>(ws: &mut WebSocketStream<S>, limit: Limit) -> Frame
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    loop {
        let message = match limit {
            Limit::At(at) => tokio::time::timeout_at(at, ws.next()).await,
            Limit::Idle(idle) => tokio::time::timeout(idle, ws.next()).await,
        };
        let message = match message {
            Err(_) => return Frame::End(End::Deadline),
            Ok(None) => return Frame::End(End::Eof),
            Ok(Some(Err(e))) => return Frame::End(End::Failed(e.to_string())),
            Ok(Some(Ok(message))) => message,
        };
        match message {
            Message::Text(text) => return Frame::Text(text),
            Message::Close(frame) => {
                return Frame::End(End::Closed(frame.map(|f| u16::from(f.code))));
            }
            Message::Binary(_) => return Frame::End(End::Failed("a binary frame".into())),
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
        }
    }
}

/// Reads `ws` until the connection ends, giving each text frame to `on_text`; returns
/// how it ended.
pub async fn read_frames<S>(
    ws: &mut WebSocketStream<S>,
    limit: Limit,
    mut on_text: impl FnMut(&str) -> After,
) -> End
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    loop {
        let text = match next_frame(ws, limit).await {
            Frame::Text(text) => text,
            Frame::End(end) => return end,
        };
        match on_text(&text) {
            After::Read => {}
            After::Pause(pause) => tokio::time::sleep(pause).await,
            After::Stop => return End::Stopped,
            After::Close(why) => {
                // The close handshake may fail on a connection already going away;
                // either way this reader is done with it.
                let _ = ws.close(None).await;
                return End::ClosedByUs(why);
            }
        }
    }
}

/// [`read_frames`], each frame's events parsed (a JSON array of events, or one event).
pub async fn read_events<S>(
    ws: &mut WebSocketStream<S>,
    limit: Limit,
    mut on_events: impl FnMut(Vec<serde_json::Value>) -> After,
) -> End
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut bad = None;
    let end = read_frames(ws, limit, |text| {
        match serde_json::from_str::<serde_json::Value>(text) {
            Ok(serde_json::Value::Array(values)) => on_events(values),
            Ok(value) => on_events(vec![value]),
            Err(e) => {
                bad = Some(format!("{e}: {text}"));
                After::Stop
            }
        }
    })
    .await;
    match bad {
        Some(what) => End::BadFrame(what),
        None => end,
    }
}
