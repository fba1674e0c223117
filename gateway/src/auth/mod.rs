//! Who is asking, and what they may do (DESIGN §8).
//!
//! A request is judged by its `Authorization: Bearer` token, else its `shipwatch_session`
//! cookie, else `auth.anonymous`. The parts, by what they own:
//!
//! - [`principal`]: the answer, a [`Principal`], and what it may do;
//! - [`token`]: API tokens, argon2 once and then known by their SHA-256 until a reload;
//! - [`session`]: login sessions, in the store as the SHA-256 of their id only, cached
//!   in memory with the ids the store does not hold;
//! - [`login`]: checking a password, under the [`throttle`] per user and per address;
//! - [`hashing`]: argon2 on a few threads of its own, a few at a time, so a login
//!   flood cannot starve the event path;
//! - [`reload`]: removing a user or token and reloading ends its sessions and cancels
//!   its [`Principal::revoked`], which closes its open WebSockets;
//! - [`guard`], [`routes`]: the Origin/JSON guard and security headers, and the HTTP
//!   routes of login, logout and `me`.
//!
//! This module never logs or returns a secret: not a password, token, hash or session id.

pub mod cli;
mod error;
mod guard;
mod hashing;
mod login;
mod principal;
mod reload;
mod routes;
pub mod secret;
mod session;
pub mod throttle;
mod token;

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::extract::{ConnectInfo, FromRef, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use shipwatch_config::Config;
use shipwatch_protocol::JobId;
use tokio::sync::{Semaphore, watch};
use tokio_util::sync::CancellationToken;

use crate::store::{AuditRecord, Store};

pub use error::AuthError;
pub use guard::{public_origin, security_headers};
pub use login::Login;
pub use principal::{Principal, Via};
pub use routes::routes;
pub use session::SessionPolicy;

use session::session_cookie;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "shipwatch_session";

/// The gateway's authentication state, shared by every request.
pub struct Auth {
    config: watch::Receiver<Arc<Config>>,
    store: Store,
    tokens: Mutex<token::TokenCache>,
    sessions: Mutex<session::SessionCache>,
    /// Store lookups of unknown session ids wait their turn here, a few at a time.
    session_lookups: Semaphore,
    revocations: Mutex<reload::Revocations>,
    hashing: hashing::HashPool,
    failed_users: throttle::Throttle<String>,
    failed_addrs: throttle::Throttle<IpAddr>,
}

impl Auth {
    /// Auth for the configuration `config` follows, with sessions in `store`.
    pub fn new(config: watch::Receiver<Arc<Config>>, store: Store) -> Arc<Auth> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Arc::new(Auth {
            config,
            store,
            tokens: Mutex::default(),
            sessions: Mutex::default(),
            session_lookups: Semaphore::new(session::LOOKUPS_AT_ONCE),
            revocations: Mutex::new(reload::Revocations::new()),
            // At most half the cores hash at once: a flood queues instead of taking them.
            hashing: hashing::HashPool::new(cores / 2),
            failed_users: throttle::Throttle::new(login::USER_BURST, login::USER_LEAK),
            failed_addrs: throttle::Throttle::new(login::ADDR_BURST, login::ADDR_LEAK),
        })
    }

    fn config(&self) -> Arc<Config> {
        self.config.borrow().clone()
    }

    /// The store, for audit records.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Who sent a request with these headers from `addr`.
    pub async fn principal(
        &self,
        headers: &HeaderMap,
        addr: Option<IpAddr>,
    ) -> Result<Principal, AuthError> {
        if let Some(value) = headers.get(header::AUTHORIZATION) {
            let token = value
                .to_str()
                .ok()
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::trim)
                .ok_or_else(|| AuthError::Unauthorized("use Authorization: Bearer TOKEN".into()))?;
            return self.token_principal(token, addr).await;
        }
        if let Some(id) = session_cookie(headers)
            && let Some(principal) = self.session_principal(id, addr).await?
        {
            return Ok(principal);
        }
        self.anonymous(addr)
    }

    fn anonymous(&self, addr: Option<IpAddr>) -> Result<Principal, AuthError> {
        match self.config().auth.anonymous {
            Some(role) => Ok(Principal {
                name: "anonymous".into(),
                role,
                via: Via::Anonymous,
                addr,
                revoked: self.lock_revocations().anonymous.clone(),
            }),
            None => Err(AuthError::Unauthorized(
                "log in first: anonymous access is off".into(),
            )),
        }
    }

    fn lock_revocations(&self) -> MutexGuard<'_, reload::Revocations> {
        self.revocations
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn lock_tokens(&self) -> MutexGuard<'_, token::TokenCache> {
        self.tokens.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn lock_sessions(&self) -> MutexGuard<'_, session::SessionCache> {
        self.sessions.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn token_revocation(&self, name: &str) -> CancellationToken {
        self.lock_revocations()
            .tokens
            .entry(name.to_string())
            .or_default()
            .clone()
    }

    fn user_revocation(&self, name: &str) -> CancellationToken {
        self.lock_revocations()
            .users
            .entry(name.to_string())
            .or_default()
            .child_token()
    }

    /// Records what `who` did to `job` (`start`, `cancel`, `rerun`…) in the audit log.
    pub async fn audit(
        &self,
        who: &Principal,
        action: &str,
        job: Option<JobId>,
        detail: &str,
        outcome: &str,
    ) {
        self.record(AuditRecord {
            actor: who.name.clone(),
            action: action.into(),
            job,
            detail: detail.into(),
            addr: who.addr_text(),
            outcome: outcome.into(),
        })
        .await;
    }

    /// Stores `record`; a store that cannot is logged, not failed on.
    pub async fn record(&self, record: AuditRecord) {
        let action = record.action.clone();
        if let Err(e) = self.store.record(record).await {
            tracing::warn!(action, error = %shipwatch_protocol::Report(&e), "audit record not stored");
        }
    }
}

/// The client's address, when the server recorded it: the TCP peer, never a header.
pub fn client_addr(parts: &Parts) -> Option<IpAddr> {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl<S> FromRequestParts<S> for Principal
where
    Arc<Auth>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = AuthError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, AuthError> {
        if let Some(known) = parts.extensions.get::<Principal>() {
            return Ok(known.clone());
        }
        let auth = Arc::<Auth>::from_ref(state);
        let principal = auth.principal(&parts.headers, client_addr(parts)).await?;
        parts.extensions.insert(principal.clone());
        Ok(principal)
    }
}
