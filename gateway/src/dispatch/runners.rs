//! The runner socket (`<run_dir>/runners.sock`): a runner says hello with its protocol
//! version (a different one is refused, with why), may reclaim the job it was running,
//! then sends events that are committed and acked in order, at most [`IN_FLIGHT`] frames
//! ahead, while the gateway sends assignments, cancels and heartbeats.

use std::time::Duration;

use futures_util::stream::FuturesOrdered;
use futures_util::{SinkExt, StreamExt};
use shipwatch_protocol::{
    EventBody, GatewayCodec, GatewayFrame, JobId, PROTOCOL_VERSION, Report, RunnerFrame,
};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;
use tokio_util::codec::Framed;

use super::queue::Expiry;
use super::{Dispatcher, HEARTBEAT, Runner, SILENCE};
use crate::store::StoreError;

/// Event frames of one runner committed but not yet acked, at most; then reading pauses.
const IN_FLIGHT: usize = 64;

/// How a runner's connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ConnectionEnd {
    /// The runner closed it and every frame it wrote was read.
    Eof,
    /// Dropped by us (silence, a bad frame, a failed write, shutdown): frames the runner
    /// wrote may be unread.
    Dropped,
}

/// The runner closed its end with frames of ours unread: Linux reports ECONNRESET, but
/// only once everything the runner wrote has been read, so this is an end like EOF.
fn peer_closed(error: &shipwatch_protocol::FrameError) -> bool {
    matches!(error, shipwatch_protocol::FrameError::Io(e) if e.kind() == std::io::ErrorKind::ConnectionReset)
}

impl Dispatcher {
    /// Serves each runner that connects to `listener`, until shutdown.
    pub(super) async fn accept_runners(&self, listener: UnixListener) {
        let shutdown = self.inner.shutdown.clone();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        let me = self.clone();
                        self.inner.tracker.spawn(async move { me.connection(stream).await });
                    }
                    Err(error) => {
                        tracing::warn!(error = %Report(&error), "cannot accept a runner connection");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
            }
        }
    }

    async fn connection(self, stream: UnixStream) {
        let mut framed = Framed::new(stream, GatewayCodec::new());
        let hello = tokio::select! {
            _ = self.inner.shutdown.cancelled() => return,
            first = tokio::time::timeout(SILENCE, framed.next()) => first,
        };
        let (index, reclaim, draining) = match hello {
            Ok(Some(Ok(RunnerFrame::Hello {
                version,
                runner,
                job,
                draining,
                ..
            }))) if version == PROTOCOL_VERSION => (runner, job, draining),
            Ok(Some(Ok(RunnerFrame::Hello { version, .. }))) => {
                let reason = format!(
                    "this gateway speaks runner protocol version {PROTOCOL_VERSION} and the \
                     runner speaks version {version}: the binaries differ; restart the whole \
                     system with one shipwatch binary (`shipwatch up` starts gateway and \
                     runners from the same file)"
                );
                tracing::warn!(%reason, "runner refused");
                let _ = framed
                    .send(GatewayFrame::Refused {
                        version: PROTOCOL_VERSION,
                        reason,
                    })
                    .await;
                return;
            }
            Ok(Some(Ok(_))) => {
                let _ = framed
                    .send(GatewayFrame::Refused {
                        version: PROTOCOL_VERSION,
                        reason: format!(
                            "the first frame must be a hello with protocol version \
                             {PROTOCOL_VERSION}"
                        ),
                    })
                    .await;
                return;
            }
            Ok(Some(Err(error))) => {
                let _ = framed
                    .send(GatewayFrame::Refused {
                        version: PROTOCOL_VERSION,
                        reason: format!(
                            "unreadable hello ({}); this gateway speaks runner protocol \
                             version {PROTOCOL_VERSION}",
                            Report(&error)
                        ),
                    })
                    .await;
                return;
            }
            Ok(None) | Err(_) => return,
        };
        if framed
            .send(GatewayFrame::Welcome {
                version: PROTOCOL_VERSION,
            })
            .await
            .is_err()
        {
            return;
        }
        let (tx, mut rx) = mpsc::unbounded_channel();
        let conn = {
            let mut st = self.lock();
            st.next_conn += 1;
            let conn = st.next_conn;
            st.runners.insert(
                conn,
                Runner {
                    index,
                    tx: tx.clone(),
                    job: None,
                    draining,
                },
            );
            conn
        };
        tracing::info!(runner = index, job = reclaim, "runner connected");
        if let Some(job) = reclaim {
            self.reclaim(conn, job, &tx);
        }
        self.wake();
        let ended = self.serve_runner(conn, index, &mut framed, &mut rx).await;
        // Gone: its job waits for it to come back.
        let orphan = {
            let mut st = self.lock();
            let job = st.runners.remove(&conn).and_then(|r| r.job);
            job.and_then(|job| {
                let r = st.running.get_mut(&job)?;
                if r.conn != Some(conn) {
                    return None;
                }
                r.conn = None;
                Some((job, r.epoch, r.started))
            })
        };
        tracing::info!(runner = index, "runner disconnected");
        if self.inner.shutdown.is_cancelled() {
            return;
        }
        // Read to its end, the connection holds every frame the runner wrote; the runner
        // starts nothing before its Started frame is written, so none means nothing ran.
        if let Some((job, _, false)) = orphan
            && ended == ConnectionEnd::Eof
        {
            self.requeue_unstarted(
                job,
                &format!("runner-{index} disconnected before starting it"),
            )
            .await;
            return;
        }
        if let Some((job, epoch, _)) = orphan {
            self.start_grace(
                job,
                epoch,
                format!(
                    "runner-{index} disconnected and did not come back within {} s",
                    self.inner.grace.as_secs()
                ),
                // A connection we dropped may hold an unread Started frame.
                Expiry::Lost,
            );
        }
    }

    /// A reconnecting runner takes its job back, or is told to stop it if it ended.
    fn reclaim(&self, conn: u64, job: JobId, tx: &mpsc::UnboundedSender<GatewayFrame>) {
        let mut st = self.lock();
        let taken = match st.running.get_mut(&job) {
            Some(r) => {
                r.conn = Some(conn);
                r.epoch += 1;
                r.started = true;
                true
            }
            None => false,
        };
        if taken {
            if let Some(r) = st.runners.get_mut(&conn) {
                r.job = Some(job);
            }
            tracing::info!(job, "runner reclaimed its job");
        } else {
            // The job ended (lost, cancelled) while the runner was away: stop it. Its
            // resent events are acked and dropped when they arrive; the runner is busy
            // until the job's last one does.
            if let Some(r) = st.runners.get_mut(&conn) {
                r.job = Some(job);
            }
            let _ = tx.send(GatewayFrame::Cancel { job });
        }
    }

    async fn serve_runner(
        &self,
        conn: u64,
        index: u32,
        framed: &mut Framed<UnixStream, GatewayCodec>,
        rx: &mut mpsc::UnboundedReceiver<GatewayFrame>,
    ) -> ConnectionEnd {
        let mut acks = FuturesOrdered::new();
        let mut beat = tokio::time::interval(HEARTBEAT);
        let mut last_heard = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = self.inner.shutdown.cancelled() => return ConnectionEnd::Dropped,
                _ = beat.tick() => {
                    if last_heard.elapsed() > SILENCE {
                        tracing::warn!(runner = index, "runner silent too long, dropping it");
                        return ConnectionEnd::Dropped;
                    }
                    if framed.send(GatewayFrame::Heartbeat).await.is_err() {
                        return self.after_write_error(conn, framed).await;
                    }
                }
                Some(frame) = rx.recv() => {
                    if framed.send(frame).await.is_err() {
                        return self.after_write_error(conn, framed).await;
                    }
                }
                Some((job, last_rseq, ends, result)) = acks.next(), if !acks.is_empty() => {
                    let (ends, result): (bool, Result<u64, StoreError>) = (ends, result);
                    let rseq = match result {
                        Ok(rseq) => rseq,
                        // Finished elsewhere (lost, cancelled), or the store failed and
                        // fails the job: the runner forgets these events and stops the
                        // job. It stays busy until the job's last event arrives, so it is
                        // not handed a job it would ignore while still stopping this one.
                        Err(error) => {
                            if !matches!(error, StoreError::Finished { .. } | StoreError::NoSuchJob(_)) {
                                tracing::error!(job, error = %Report(&error), "cannot store a runner's events");
                            }
                            self.job_given_up(conn, job);
                            if !ends {
                                let _ = framed.feed(GatewayFrame::Cancel { job }).await;
                            }
                            last_rseq
                        }
                    };
                    if framed.send(GatewayFrame::Ack { job, rseq }).await.is_err() {
                        return self.after_write_error(conn, framed).await;
                    }
                    if ends {
                        self.job_ended(conn, job);
                    }
                }
                frame = framed.next(), if acks.len() < IN_FLIGHT => {
                    last_heard = tokio::time::Instant::now();
                    match frame {
                        None => return ConnectionEnd::Eof,
                        Some(Err(error)) if peer_closed(&error) => return ConnectionEnd::Eof,
                        Some(Err(error)) => {
                            tracing::warn!(runner = index, error = %Report(&error), "bad frame from runner");
                            return ConnectionEnd::Dropped;
                        }
                        Some(Ok(RunnerFrame::Started { job })) => self.job_started(conn, job),
                        Some(Ok(RunnerFrame::Events { job, events })) => {
                            self.job_started(conn, job);
                            let last_rseq = events.last().map_or(0, |e| e.rseq);
                            let ends = events.iter().any(|e| matches!(
                                e.body,
                                EventBody::Job { state, .. } if state.is_terminal()
                            ));
                            let fut = self.inner.store.submit(job, events);
                            acks.push_back(async move { (job, last_rseq, ends, fut.await) });
                        }
                        Some(Ok(RunnerFrame::Draining)) => {
                            tracing::info!(runner = index, "runner draining");
                            if let Some(r) = self.lock().runners.get_mut(&conn) {
                                r.draining = true;
                            }
                        }
                        Some(Ok(RunnerFrame::Heartbeat)) => {}
                        Some(Ok(RunnerFrame::Hello { .. })) => {
                            tracing::warn!(runner = index, "second hello from runner, dropping it");
                            return ConnectionEnd::Dropped;
                        }
                    }
                }
            }
        }
    }

    /// A write failed (the runner closed its end, typically): what it wrote before is
    /// still readable, and tells whether it started its job.
    async fn after_write_error(
        &self,
        conn: u64,
        framed: &mut Framed<UnixStream, GatewayCodec>,
    ) -> ConnectionEnd {
        let until = tokio::time::Instant::now() + Duration::from_secs(1);
        loop {
            match tokio::time::timeout_at(until, framed.next()).await {
                Ok(None) => return ConnectionEnd::Eof,
                Ok(Some(Err(error))) if peer_closed(&error) => return ConnectionEnd::Eof,
                Ok(Some(Ok(RunnerFrame::Started { job } | RunnerFrame::Events { job, .. }))) => {
                    self.job_started(conn, job)
                }
                Ok(Some(Ok(_))) => {}
                Ok(Some(Err(_))) | Err(_) => return ConnectionEnd::Dropped,
            }
        }
    }
}
