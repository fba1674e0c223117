//! Serving HTTP/1.1 connections with deadlines and a cap for slow clients, so a client
//! on the network cannot use up the descriptors that watchers, runners and the store
//! need (`axum::serve` has no deadline: 3,000 clients sending half a header held 3,000
//! descriptors for as long as they liked).
//!
//! - A request's headers must arrive within [`HEADER_TIMEOUT`] of the connection
//!   opening or of the previous response, so an idle keep-alive connection ends too.
//! - Its body must arrive within [`BODY_TIMEOUT`] of its headers: a body trickled a byte
//!   at a time fails to read, the request is answered with an error and the connection
//!   closed.
//! - At most [`Limits::max_connections`] connections speak HTTP at once; past it a new
//!   one is closed as soon as it is accepted. WebSockets do not count: an upgraded
//!   connection leaves this loop, so however many slow clients arrive, the watchers
//!   already connected keep theirs and the process keeps descriptors to spare.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::{Body, Bytes, Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// How long a client has to send a request's headers, from connecting or from the end
/// of its previous response.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a request's body may take to arrive after its headers. Bodies here are
/// small JSON documents; a client that needs longer is not sending one.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// After shutdown, how long requests in flight get to finish before their connections
/// are dropped.
const DRAIN: Duration = Duration::from_secs(5);
/// Pause after an accept error (out of descriptors): retrying at once would spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// The share of the open-file limit HTTP connections may hold; the rest is for
/// WebSockets, runners, the store and the runner socket.
const HTTP_SHARE_OF_NOFILE: u64 = 4;

/// The deadlines and the cap of [`serve`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// See [`HEADER_TIMEOUT`].
    pub header_timeout: Duration,
    /// See [`BODY_TIMEOUT`].
    pub body_timeout: Duration,
    /// Connections not upgraded to WebSockets, at once.
    pub max_connections: usize,
}

impl Limits {
    /// The defaults, with a cap of a quarter of this process's open-file limit (at
    /// least 256).
    pub fn for_this_process() -> Limits {
        use nix::sys::resource::{Resource, getrlimit};
        let soft = getrlimit(Resource::RLIMIT_NOFILE).map_or(1024, |(soft, _)| soft);
        let cap = (soft / HTTP_SHARE_OF_NOFILE).max(256);
        Limits {
            header_timeout: HEADER_TIMEOUT,
            body_timeout: BODY_TIMEOUT,
            max_connections: usize::try_from(cap).unwrap_or(usize::MAX),
        }
    }
}

/// Serves `app` on `listener` until `shutdown`; each request carries its peer's
/// [`ConnectInfo<SocketAddr>`]. Upgraded connections (WebSockets) are no longer this
/// loop's: they end with their own tasks.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    let mut connections = JoinSet::new();
    // Accept errors in a row: logged at the first and when accepting works again, so
    // running out of descriptors is two log lines, not ten a second.
    let mut failed_accepts: u64 = 0;
    // Connections refused at the cap since it was last logged, for the same reason.
    let mut refused: u64 = 0;
    loop {
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    metrics::counter!(crate::metrics::HTTP_ACCEPT_ERRORS_TOTAL).increment(1);
                    failed_accepts += 1;
                    if failed_accepts == 1 {
                        tracing::warn!(
                            error = %shipwatch_protocol::Report(&error),
                            connections = connections.len(),
                            "cannot accept connections; retrying every 100 ms, open ones are served on"
                        );
                    }
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(ACCEPT_BACKOFF) => continue,
                    }
                }
            },
        };
        if failed_accepts > 0 {
            tracing::info!(failed_accepts, "accepting connections again");
            failed_accepts = 0;
        }
        if connections.len() >= limits.max_connections {
            metrics::counter!(crate::metrics::HTTP_CONNECTIONS_REFUSED_TOTAL).increment(1);
            refused += 1;
            if refused == 1 {
                tracing::warn!(
                    max = limits.max_connections,
                    "too many HTTP connections at once; new ones are closed until some end"
                );
            }
            drop(stream);
            continue;
        }
        if refused > 0 {
            tracing::info!(refused, "below the HTTP connection cap again");
            refused = 0;
        }
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let body_timeout = limits.body_timeout;
        let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let mut request =
                request.map(|body| axum::body::Body::new(Timed::new(body, body_timeout)));
            request.extensions_mut().insert(ConnectInfo(peer));
            let mut app = app.clone();
            async move {
                let response = tower_service::Service::call(&mut app, request).await;
                Ok::<_, Infallible>(response.unwrap_or_else(|never| match never {}))
            }
        });
        let connection = builder
            .serve_connection(TokioIo::new(stream), service)
            .with_upgrades();
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            tokio::pin!(connection);
            let served = tokio::select! {
                served = connection.as_mut() => served,
                () = shutdown.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(error) = served
                && !error.is_incomplete_message()
            {
                tracing::debug!(%peer, error = %shipwatch_protocol::Report(&error), "connection ended");
            }
        });
    }
    drop(listener);
    let drained = tokio::time::timeout(DRAIN, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::info!(
            connections = connections.len(),
            "connections still busy after shutdown are dropped"
        );
    }
    Ok(())
}

/// A request body that fails once its deadline passes.
struct Timed {
    body: Incoming,
    timeout: Duration,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl Timed {
    fn new(body: Incoming, timeout: Duration) -> Timed {
        Timed {
            body,
            timeout,
            deadline: Box::pin(tokio::time::sleep(timeout)),
        }
    }
}

/// The body did not arrive in time.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {0:?}")]
struct BodyTimeout(Duration);

impl Body for Timed {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::BoxError>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.body).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        match this.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(BodyTimeout(this.timeout).into()))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
