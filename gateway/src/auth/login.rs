//! `POST /api/login`'s work: throttle, argon2, a new session, the audit record.
//!
//! Failed logins are throttled per user name and per client address (the TCP peer:
//! `X-Forwarded-For` is never trusted, so behind a reverse proxy on the same box every
//! client shares the proxy's address and its budget; the per-user limit still holds).

use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::session::SessionPolicy;
use super::{Auth, AuthError, Principal, Via, secret};
use crate::store::AuditRecord;

/// Failed logins per user name: 10 in a row, then one per 6 s.
pub(super) const USER_BURST: u32 = 10;
pub(super) const USER_LEAK: Duration = Duration::from_secs(6);
/// Failed logins and unknown tokens per client address: 30, then one per 2 s.
pub(super) const ADDR_BURST: u32 = 30;
pub(super) const ADDR_LEAK: Duration = Duration::from_secs(2);
/// User names longer than this are not remembered by the throttle.
const MAX_NAME_LEN: usize = 128;

/// A successful login: who, and the `Set-Cookie` value carrying the new session.
pub struct Login {
    pub principal: Principal,
    pub set_cookie: String,
}

impl Auth {
    /// Checks `user`'s `password` and opens a new session; the session `previous` (the
    /// cookie the request carried, if any) ends, so every login gets a fresh id.
    pub async fn login(
        &self,
        user: &str,
        password: &str,
        addr: Option<IpAddr>,
        previous: Option<&str>,
    ) -> Result<Login, AuthError> {
        let config = self.config();
        let known = config.users.iter().find(|u| u.name == user);
        let actor = || known.map_or_else(|| "?".to_string(), |u| u.name.clone());
        let user_key = (user.len() <= MAX_NAME_LEN).then(|| user.to_string());
        if let Err(wait) = self.reserve_attempt(user_key.as_ref(), addr) {
            // Neither recorded nor logged one by one: a flood would turn each refusal
            // into a store write and a journal line. The failures that led here were.
            tracing::debug!(user = %actor(), addr = ?addr, "login throttled");
            return Err(AuthError::Throttled(wait));
        }
        let hash = known.map(|u| u.password_hash.clone());
        let matched = match self
            .hashing
            .verify_any(vec![hash], password.as_bytes().to_vec())
            .await
        {
            Ok(found) => found.is_some(),
            Err(e) => {
                self.refund_attempt(user_key.as_ref(), addr);
                return Err(e);
            }
        };
        let Some(account) = known.filter(|_| matched) else {
            // An unknown name is not logged or recorded: it may be a password typed
            // into the wrong field.
            let outcome = if known.is_some() {
                "wrong password"
            } else {
                "unknown user"
            };
            self.audit_login(actor(), addr, outcome).await;
            tracing::info!(user = %actor(), addr = ?addr, outcome, "login failed");
            return Err(AuthError::Unauthorized("wrong user or password".into()));
        };
        if let Some(k) = &user_key {
            self.failed_users.forget(k);
        }
        if let Some(a) = addr {
            self.failed_addrs.refund(&a, Instant::now());
        }
        if let Some(previous) = previous.filter(|p| secret::is_session_id(p)) {
            self.end_session(secret::key(previous.as_bytes())).await?;
        }
        let id = secret::new_session_id().map_err(|e| {
            tracing::error!(error = %shipwatch_protocol::Report(&e), "cannot make a session id");
            AuthError::Busy
        })?;
        let policy = SessionPolicy::of(&config);
        self.create_session(secret::key(id.as_bytes()), &account.name, policy)
            .await?;
        self.audit_login(account.name.clone(), addr, "ok").await;
        tracing::info!(user = %account.name, addr = ?addr, "logged in");
        let principal = Principal {
            name: account.name.clone(),
            role: account.role,
            via: Via::Session,
            addr,
            revoked: self.user_revocation(&account.name),
        };
        Ok(Login {
            principal,
            set_cookie: self.cookie(&id, policy.max_age),
        })
    }

    /// Counts this attempt as a failure of its address and its user name before its
    /// argon2 check, or the longest wait one of them imposes (then nothing is counted).
    fn reserve_attempt(&self, user: Option<&String>, addr: Option<IpAddr>) -> Result<(), Duration> {
        let now = Instant::now();
        if let Some(a) = &addr {
            self.failed_addrs.reserve(a, now)?;
        }
        if let Some(u) = user
            && let Err(wait) = self.failed_users.reserve(u, now)
        {
            if let Some(a) = &addr {
                self.failed_addrs.refund(a, now);
            }
            return Err(wait);
        }
        Ok(())
    }

    /// Gives back what [`Auth::reserve_attempt`] counted: the check never happened.
    fn refund_attempt(&self, user: Option<&String>, addr: Option<IpAddr>) {
        let now = Instant::now();
        if let Some(a) = &addr {
            self.failed_addrs.refund(a, now);
        }
        if let Some(u) = user {
            self.failed_users.refund(u, now);
        }
    }

    async fn audit_login(&self, actor: String, addr: Option<IpAddr>, outcome: &str) {
        self.record(AuditRecord {
            actor,
            action: "login".into(),
            addr: addr.map(|a| a.to_string()).unwrap_or_default(),
            outcome: outcome.into(),
            ..AuditRecord::default()
        })
        .await;
    }
}
