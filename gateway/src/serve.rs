//! Serving HTTP/1.1 connections with deadlines for slow clients: a request's headers
//! must arrive within [`HEADER_TIMEOUT`] of the connection opening or of the previous
//! response (so an idle keep-alive connection ends too), or the connection is closed.
//! `axum::serve` has no such deadline: 3,000 clients sending half a header held 3,000
//! descriptors for as long as they liked, descriptors that watchers need.

use std::convert::Infallible;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// How long a client has to send a request's headers, from connecting or from the end
/// of its previous response.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// After shutdown, how long requests in flight get to finish before their connections
/// are dropped.
const DRAIN: Duration = Duration::from_secs(5);
/// Pause after an accept error (out of descriptors): retrying at once would spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serves `app` on `listener` until `shutdown`; each request carries its peer's
/// [`ConnectInfo<SocketAddr>`]. Upgraded connections (WebSockets) are no longer this
/// loop's: they end with their own tasks.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .keep_alive(true);
    let mut connections = JoinSet::new();
    // Accept errors in a row: logged at the first and when accepting works again, so
    // running out of descriptors is two log lines, not ten a second.
    let mut failed_accepts: u64 = 0;
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
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
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
