//! Following a job over `WS /ws/jobs/{id}`: replay then live, and after a dropped
//! connection or a gateway restart, a reconnect with `after=` the last seq handed on, so
//! the output has no gap and no line twice.

use std::time::Duration;

use futures_util::StreamExt;
use shipwatch_protocol::{Event, EventBody, JobId, JobState, Stream};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::{self, Message, client::IntoClientRequest, http};

use crate::{ApiClient, ClientError};

/// First wait before a reconnect; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Which of a job's events to follow (DESIGN §6 filters).
#[derive(Debug, Clone, Default)]
pub struct Filters {
    pub hosts: Vec<String>,
    pub stream: Option<Stream>,
}

/// One job's event stream, resumable: `last` survives a dropped `run` future.
pub struct Follower {
    api: ApiClient,
    job: JobId,
    filters: Filters,
    /// The highest seq handed to the sink; a reconnect asks for what comes after it.
    pub last: u64,
    /// The job's final state, once its final event went by.
    pub ended: Option<JobState>,
    /// How long to keep trying while the gateway cannot be reached.
    reconnect_for: Duration,
}

impl Follower {
    pub fn new(
        api: ApiClient,
        job: JobId,
        filters: Filters,
        after: u64,
        reconnect_for: Duration,
    ) -> Follower {
        Follower {
            api,
            job,
            filters,
            last: after,
            ended: None,
            reconnect_for,
        }
    }

    fn url(&self) -> String {
        let mut path = format!("/ws/jobs/{}?after={}", self.job, self.last);
        if !self.filters.hosts.is_empty() {
            path.push_str("&hosts=");
            path.push_str(&self.filters.hosts.join(","));
        }
        if let Some(stream) = self.filters.stream {
            path.push_str("&streams=");
            path.push_str(stream.as_str());
        }
        self.api.server().ws_url(&path)
    }

    /// Hands every event after `last` to `sink`, in seq order and each once, until the
    /// job's final event; reconnects whenever the connection drops.
    pub async fn run(
        &mut self,
        mut sink: impl FnMut(&[Event]) -> Result<(), ClientError>,
    ) -> Result<(), ClientError> {
        let mut backoff = FIRST_BACKOFF;
        let mut offline_since: Option<Instant> = None;
        loop {
            let url = self.url();
            let why: Box<dyn std::error::Error + Send + Sync> = match self.connect(&url).await {
                Ok(mut ws) => {
                    backoff = FIRST_BACKOFF;
                    offline_since = None;
                    match self.read(&mut ws, &mut sink).await? {
                        Ended::Done => return Ok(()),
                        Ended::Dropped(why) => why,
                    }
                }
                Err(Connect::Fatal(e)) => return Err(e),
                Err(Connect::Retry(why)) => why,
            };
            if self.ended.is_some() {
                return Ok(());
            }
            let since = *offline_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= self.reconnect_for {
                return Err(ClientError::GaveUp {
                    url,
                    secs: self.reconnect_for.as_secs(),
                    source: why,
                });
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    async fn connect(&self, url: &str) -> Result<Socket, Connect> {
        let mut request = url
            .into_client_request()
            .map_err(|e| Connect::Fatal(ClientError::Usage(format!("{url}: {e}"))))?;
        if let Some(token) = self.api.token() {
            let value = http::HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
                Connect::Fatal(ClientError::Usage(
                    "the token is not valid header text".into(),
                ))
            })?;
            request
                .headers_mut()
                .insert(http::header::AUTHORIZATION, value);
        }
        let tls = tokio_tungstenite::Connector::Rustls(self.api.tls());
        let handshake =
            tokio_tungstenite::connect_async_tls_with_config(request, None, false, Some(tls));
        match tokio::time::timeout(CONNECT_TIMEOUT, handshake).await {
            Err(_) => Err(Connect::Retry(
                format!(
                    "no WebSocket handshake within {} s",
                    CONNECT_TIMEOUT.as_secs()
                )
                .into(),
            )),
            Ok(Ok((ws, _))) => Ok(ws),
            Ok(Err(tungstenite::Error::Http(response))) => {
                let status = response.status();
                let body = response.body().as_deref().unwrap_or_default();
                let refusal = crate::http::Refusal {
                    status,
                    answer: serde_json::from_slice(body).unwrap_or(
                        shipwatch_protocol::api::ErrorBody {
                            error: format!("the server refused the WebSocket with HTTP {status}"),
                            field: None,
                        },
                    ),
                };
                if status.is_server_error() {
                    // A gateway coming back up may answer 503 for a moment.
                    return Err(Connect::Retry(refusal.answer.error.into()));
                }
                Err(Connect::Fatal(crate::commands::explain(
                    &self.api,
                    refusal,
                    "watching a job",
                    "the viewer role",
                )))
            }
            Ok(Err(e)) => Err(Connect::Retry(Box::new(e))),
        }
    }

    async fn read(
        &mut self,
        ws: &mut Socket,
        sink: &mut impl FnMut(&[Event]) -> Result<(), ClientError>,
    ) -> Result<Ended, ClientError> {
        loop {
            let message = match ws.next().await {
                None => {
                    return Ok(Ended::Dropped(
                        "the connection ended without a close frame".into(),
                    ));
                }
                Some(Err(e)) => return Ok(Ended::Dropped(Box::new(e))),
                Some(Ok(message)) => message,
            };
            match message {
                Message::Text(text) => {
                    let events: Vec<Event> =
                        serde_json::from_str(&text).map_err(|source| ClientError::Decode {
                            url: self.url(),
                            source,
                        })?;
                    // The server promises no duplicate at the seam; this guard keeps
                    // the promise for the output even if a reconnect overlaps.
                    let fresh_from = events.partition_point(|e| e.seq <= self.last);
                    let fresh = &events[fresh_from..];
                    if fresh.is_empty() {
                        continue;
                    }
                    sink(fresh)?;
                    for event in fresh {
                        if let EventBody::Job { state, .. } = &event.body
                            && state.is_terminal()
                        {
                            self.ended = Some(*state);
                        }
                    }
                    self.last = fresh[fresh.len() - 1].seq;
                }
                Message::Close(frame) => {
                    let code = frame.as_ref().map(|f| u16::from(f.code));
                    if code == Some(1000) {
                        return Ok(Ended::Done);
                    }
                    return Ok(Ended::Dropped(
                        format!(
                            "the server closed the WebSocket with code {}",
                            code.unwrap_or(0)
                        )
                        .into(),
                    ));
                }
                _ => {}
            }
        }
    }
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

enum Connect {
    /// Worth another try (nothing listens yet, the gateway restarts).
    Retry(Box<dyn std::error::Error + Send + Sync>),
    /// Trying again cannot help (401, 403, 404).
    Fatal(ClientError),
}

enum Ended {
    /// Closed with 1000 after the final event.
    Done,
    Dropped(Box<dyn std::error::Error + Send + Sync>),
}
