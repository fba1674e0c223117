//! argon2 off the async threads, a few at a time, on threads of its own.
//!
//! A login flood is argon2 work the event path must not wait behind. The cap on
//! concurrent hashes (a semaphore) bounds how many cores it takes, and the throttle
//! reserves each attempt's place before its hash, so a flood from one address costs its
//! burst of hashes and then one per leak. The threads are the pool's own, not
//! `spawn_blocking`'s, which the store's reads share, and a check whose client left
//! while it queued is skipped. They run at normal priority: at nice 10 or 19 a busy box
//! (a load of 24 on 2 cores) starved them until logins were answered 503.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Semaphore, oneshot};

use super::AuthError;
use super::secret;

/// How long a request waits for its turn at argon2 before it is told the server is busy.
const QUEUE_WAIT: Duration = Duration::from_secs(10);

/// One check: which of `hashes` `secret` matches, answered on `reply`.
struct Check {
    hashes: Vec<Option<String>>,
    secret: Vec<u8>,
    reply: oneshot::Sender<Option<usize>>,
}

/// argon2 checks, run by a few threads of their own; they end when the pool is dropped.
pub(super) struct HashPool {
    permits: Semaphore,
    checks: mpsc::Sender<Check>,
}

impl HashPool {
    /// A pool of `threads` hashing threads (at least one).
    pub(super) fn new(threads: usize) -> HashPool {
        let threads = threads.max(1);
        let (send, receive) = mpsc::channel::<Check>();
        let receive = Arc::new(Mutex::new(receive));
        for i in 0..threads {
            let receive = receive.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("argon2-{i}"))
                .spawn(move || {
                    loop {
                        let next = match receive.lock() {
                            Ok(queue) => queue.recv(),
                            Err(_) => return,
                        };
                        let Ok(check) = next else { return };
                        // Its client went away while it queued: nobody wants the answer.
                        if check.reply.is_closed() {
                            continue;
                        }
                        let _ = check.reply.send(first_match(&check.hashes, &check.secret));
                    }
                });
            if let Err(error) = spawned {
                tracing::error!(error = %shipwatch_protocol::Report(&error), "cannot start a password-hashing thread");
            }
        }
        HashPool {
            permits: Semaphore::new(threads),
            checks: send,
        }
    }

    /// The index of the first of `hashes` that `secret` matches. `None` among `hashes`
    /// stands for a user who does not exist: checked against a decoy, so that costs what
    /// a wrong password does.
    pub(super) async fn verify_any(
        &self,
        hashes: Vec<Option<String>>,
        secret: Vec<u8>,
    ) -> Result<Option<usize>, AuthError> {
        let _permit = tokio::time::timeout(QUEUE_WAIT, self.permits.acquire())
            .await
            .map_err(|_| AuthError::Busy)?
            .map_err(|_| AuthError::Busy)?;
        let (reply, answer) = oneshot::channel();
        let check = Check {
            hashes,
            secret,
            reply,
        };
        self.checks.send(check).map_err(|_| AuthError::Busy)?;
        answer.await.map_err(|_| AuthError::Busy)
    }
}

fn first_match(hashes: &[Option<String>], secret: &[u8]) -> Option<usize> {
    hashes.iter().position(|h| {
        let hash = h.as_deref().unwrap_or_else(|| secret::decoy_hash());
        secret::verify(hash, secret) && h.is_some()
    })
}
