//! Who is asking, and what they may do (DESIGN §8).
//!
//! A request is judged by its `Authorization: Bearer` token, else its `shipwatch_session`
//! cookie, else `auth.anonymous`. Passwords and tokens are checked with argon2id off the
//! async threads, a few at a time; a token checked once is then known by its SHA-256 until
//! the next reload. Sessions live in the store as the SHA-256 of their id only, so a
//! restart logs nobody out and a logout really ends one. Removing a user or token and
//! reloading ends its sessions and cancels its [`Principal::revoked`], which closes its
//! open WebSockets.
//!
//! This module never logs or returns a secret: not a password, token, hash or session id.

pub mod cli;
mod error;
mod guard;
mod routes;
pub mod secret;
pub mod throttle;

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRef, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use shipwatch_config::{Config, Role, Task};
use shipwatch_protocol::JobId;
use tokio::sync::{Semaphore, watch};
use tokio_util::sync::CancellationToken;

use crate::store::{AuditRecord, SessionWrite, Store};

pub use error::AuthError;
pub use guard::{public_origin, security_headers};
pub use routes::routes;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "shipwatch_session";

/// A session's `seen` time is written to the store at most this often (ms), so idle
/// expiry survives a restart without a write per request.
const TOUCH_EVERY_MS: i64 = 60_000;
/// How long a request waits for its turn at argon2 before it is told the server is busy.
const HASH_QUEUE_WAIT: Duration = Duration::from_secs(10);
/// Presented tokens longer than this are refused without hashing.
const MAX_TOKEN_LEN: usize = 512;
/// Unknown tokens remembered (then forgotten all at once), so a client retrying a stale
/// token does not cost an argon2 run per request.
const REFUSED_TOKENS: usize = 4096;
/// Failed logins per user name: 10 in a row, then one per 6 s.
const USER_BURST: u32 = 10;
const USER_LEAK: Duration = Duration::from_secs(6);
/// Failed logins and unknown tokens per client address: 30, then one per 2 s.
const ADDR_BURST: u32 = 30;
const ADDR_LEAK: Duration = Duration::from_secs(2);
/// User names longer than this are not remembered by the throttle.
const MAX_NAME_LEN: usize = 128;

/// How a request proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// Nothing: `auth.anonymous` decides.
    Anonymous,
    /// A login session cookie.
    Session,
    /// An `Authorization: Bearer` API token.
    Token,
}

/// Who is asking, with what role, from where.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The user or token name, or `anonymous`.
    pub name: String,
    pub role: Role,
    pub via: Via,
    /// The client's address, when the connection has one.
    pub addr: Option<IpAddr>,
    /// Cancelled when these credentials end (logout, or a reload removed them): a
    /// WebSocket opened with them closes.
    pub revoked: CancellationToken,
}

impl Principal {
    /// 403 unless the role is at least `role`.
    pub fn at_least(&self, role: Role) -> Result<(), AuthError> {
        if self.role >= role {
            Ok(())
        } else {
            Err(AuthError::Forbidden(format!(
                "{} ({}) may not do this: it takes {role}",
                self.name, self.role
            )))
        }
    }

    /// 403 unless this principal may start or cancel jobs of `task`: an operator the
    /// task's `allow` names, or an admin.
    pub fn may_run(&self, task: &Task) -> Result<(), AuthError> {
        if self.role == Role::Admin {
            return Ok(());
        }
        self.at_least(Role::Operator)?;
        if task.allow.is_empty() || task.allow.contains(&self.role) {
            Ok(())
        } else {
            Err(AuthError::Forbidden(format!(
                "{} ({}) may not run {}",
                self.name, self.role, task.name
            )))
        }
    }

    /// The address as the audit log shows it.
    pub fn addr_text(&self) -> String {
        self.addr.map(|a| a.to_string()).unwrap_or_default()
    }
}

/// How long sessions last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionPolicy {
    /// A session unused this long ends.
    pub idle: Duration,
    /// Every session ends this long after its login.
    pub max_age: Duration,
}

impl SessionPolicy {
    /// The policy `config` asks for.
    pub fn of(config: &Config) -> SessionPolicy {
        SessionPolicy {
            idle: config.auth.session_idle,
            max_age: config.auth.session_max,
        }
    }
}

/// A session this gateway has seen, as cached in memory.
#[derive(Debug, Clone)]
struct LiveSession {
    user: String,
    created_ms: i64,
    seen_ms: i64,
    /// The `seen_ms` the store holds.
    stored_seen_ms: i64,
    /// A child of the user's token: cancelled by logout or the user's removal.
    revoked: CancellationToken,
}

/// Tokens known good or bad by the SHA-256 of what was presented.
#[derive(Default)]
struct TokenCache {
    known: HashMap<[u8; 32], String>,
    refused: HashSet<[u8; 32]>,
}

/// What to cancel when credentials end.
struct Revocations {
    anonymous: CancellationToken,
    users: HashMap<String, CancellationToken>,
    tokens: HashMap<String, CancellationToken>,
}

/// The gateway's authentication state, shared by every request.
pub struct Auth {
    config: watch::Receiver<Arc<Config>>,
    store: Store,
    tokens: Mutex<TokenCache>,
    sessions: Mutex<HashMap<[u8; 32], LiveSession>>,
    /// Held while a session is loaded from the store or ended, so a logout racing a
    /// request cannot leave the ended session in the cache.
    session_loads: tokio::sync::Mutex<()>,
    revocations: Mutex<Revocations>,
    /// argon2 runs at once at most: a login flood queues here instead of taking every
    /// core from the event path.
    hashing: Arc<Semaphore>,
    failed_users: throttle::Throttle<String>,
    failed_addrs: throttle::Throttle<IpAddr>,
}

/// A successful login: who, and the `Set-Cookie` value carrying the new session.
pub struct Login {
    pub principal: Principal,
    pub set_cookie: String,
}

impl Auth {
    /// Auth for the configuration `config` follows, with sessions in `store`.
    pub fn new(config: watch::Receiver<Arc<Config>>, store: Store) -> Arc<Auth> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Arc::new(Auth {
            config,
            store,
            tokens: Mutex::new(TokenCache::default()),
            sessions: Mutex::new(HashMap::new()),
            session_loads: tokio::sync::Mutex::new(()),
            revocations: Mutex::new(Revocations {
                anonymous: CancellationToken::new(),
                users: HashMap::new(),
                tokens: HashMap::new(),
            }),
            hashing: Arc::new(Semaphore::new((cores / 2).max(1))),
            failed_users: throttle::Throttle::new(USER_BURST, USER_LEAK),
            failed_addrs: throttle::Throttle::new(ADDR_BURST, ADDR_LEAK),
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

    fn lock_revocations(&self) -> std::sync::MutexGuard<'_, Revocations> {
        self.revocations
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn lock_tokens(&self) -> std::sync::MutexGuard<'_, TokenCache> {
        self.tokens
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn lock_sessions(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], LiveSession>> {
        self.sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
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

    async fn token_principal(
        &self,
        token: &str,
        addr: Option<IpAddr>,
    ) -> Result<Principal, AuthError> {
        let refused = || AuthError::Unauthorized("unknown or revoked API token".into());
        if token.is_empty() || token.len() > MAX_TOKEN_LEN {
            return Err(refused());
        }
        let config = self.config();
        let key = secret::key(token.as_bytes());
        let known = {
            let cache = self.lock_tokens();
            if cache.refused.contains(&key) {
                return Err(refused());
            }
            cache.known.get(&key).cloned()
        };
        let name = match known {
            Some(name) => name,
            None => {
                if let Some(addr) = addr {
                    self.failed_addrs
                        .check(&addr, Instant::now())
                        .map_err(AuthError::Throttled)?;
                }
                let hashes: Vec<Option<String>> = config
                    .tokens
                    .iter()
                    .map(|t| Some(t.token_hash.clone()))
                    .collect();
                let found = self.verify_any(hashes, token.as_bytes().to_vec()).await?;
                let mut cache = self.lock_tokens();
                match found.and_then(|i| config.tokens.get(i)) {
                    Some(t) => {
                        cache.known.insert(key, t.name.clone());
                        t.name.clone()
                    }
                    None => {
                        if cache.refused.len() >= REFUSED_TOKENS {
                            cache.refused.clear();
                        }
                        cache.refused.insert(key);
                        drop(cache);
                        if let Some(addr) = addr {
                            self.failed_addrs.fail(&addr, Instant::now());
                        }
                        tracing::info!(addr = ?addr, "request with an unknown API token refused");
                        return Err(refused());
                    }
                }
            }
        };
        // The cache is cleared on reload, but the config may have moved on since.
        let Some(entry) = config.tokens.iter().find(|t| t.name == name) else {
            return Err(refused());
        };
        Ok(Principal {
            name,
            role: entry.role,
            via: Via::Token,
            addr,
            revoked: self.token_revocation(&entry.name),
        })
    }

    /// The index of the first of `hashes` that `secret` matches, checked off the async
    /// threads with at most a few argon2 runs at once.
    /// `None` among `hashes` stands for a user who does not exist: checked against a
    /// decoy, so that costs what a wrong password does.
    async fn verify_any(
        &self,
        hashes: Vec<Option<String>>,
        secret: Vec<u8>,
    ) -> Result<Option<usize>, AuthError> {
        let permit = tokio::time::timeout(HASH_QUEUE_WAIT, self.hashing.clone().acquire_owned())
            .await
            .map_err(|_| AuthError::Busy)?
            .map_err(|_| AuthError::Busy)?;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            hashes.iter().position(|h| {
                let hash = match h {
                    Some(hash) => hash.as_str(),
                    None => secret::decoy_hash(),
                };
                secret::verify(hash, &secret) && h.is_some()
            })
        })
        .await
        .map_err(|_| AuthError::Busy)
    }

    async fn session_principal(
        &self,
        id: &str,
        addr: Option<IpAddr>,
    ) -> Result<Option<Principal>, AuthError> {
        if !secret::is_session_id(id) {
            return Ok(None);
        }
        let key = secret::key(id.as_bytes());
        let config = self.config();
        let policy = SessionPolicy::of(&config);
        let now = now_ms();
        let cached = self.lock_sessions().get(&key).cloned();
        let live = match cached {
            Some(live) => live,
            None => {
                let _loading = self.session_loads.lock().await;
                let Some(row) = self.store.session(key).await? else {
                    return Ok(None);
                };
                let live = LiveSession {
                    revoked: self.user_revocation(&row.user),
                    user: row.user,
                    created_ms: row.created_ms,
                    seen_ms: row.seen_ms,
                    stored_seen_ms: row.seen_ms,
                };
                self.lock_sessions().insert(key, live.clone());
                live
            }
        };
        let user = config.users.iter().find(|u| u.name == live.user);
        let expired = now.saturating_sub(live.seen_ms) > millis(policy.idle)
            || now.saturating_sub(live.created_ms) > millis(policy.max_age);
        let (Some(user), false) = (user, expired || live.revoked.is_cancelled()) else {
            self.end_session(key).await?;
            return Ok(None);
        };
        let touch = now - live.stored_seen_ms >= TOUCH_EVERY_MS;
        if let Some(entry) = self.lock_sessions().get_mut(&key) {
            entry.seen_ms = now;
            if touch {
                entry.stored_seen_ms = now;
            }
        }
        if touch {
            self.store
                .session_write(SessionWrite::Touch {
                    id_hash: key,
                    seen_ms: now,
                })
                .await?;
        }
        Ok(Some(Principal {
            name: user.name.clone(),
            role: user.role,
            via: Via::Session,
            addr,
            revoked: live.revoked,
        }))
    }

    /// Ends the session whose id hashes to `key`: from the store, the cache, and its
    /// WebSockets.
    async fn end_session(&self, key: [u8; 32]) -> Result<(), AuthError> {
        let _loading = self.session_loads.lock().await;
        self.store
            .session_write(SessionWrite::Delete { id_hash: key })
            .await?;
        if let Some(live) = self.lock_sessions().remove(&key) {
            live.revoked.cancel();
        }
        Ok(())
    }

    /// Checks `user`'s `password` and opens a new session; the session `previous` (the
    /// cookie the request carried, if any) ends, so every login gets a fresh id.
    pub async fn login(
        &self,
        user: &str,
        password: &str,
        addr: Option<IpAddr>,
        previous: Option<&str>,
    ) -> Result<Login, AuthError> {
        let now = Instant::now();
        let user_key = (user.len() <= MAX_NAME_LEN).then(|| user.to_string());
        let throttled = [
            user_key
                .as_ref()
                .and_then(|k| self.failed_users.check(k, now).err()),
            addr.and_then(|a| self.failed_addrs.check(&a, now).err()),
        ]
        .into_iter()
        .flatten()
        .max();
        let config = self.config();
        let known = config.users.iter().find(|u| u.name == user);
        let actor = || known.map_or_else(|| "?".to_string(), |u| u.name.clone());
        if let Some(wait) = throttled {
            // Neither recorded nor logged one by one: a flood would turn each refusal
            // into a store write and a journal line. The failures that led here were.
            tracing::debug!(user = %actor(), addr = ?addr, "login throttled");
            return Err(AuthError::Throttled(wait));
        }
        let hash = known.map(|u| u.password_hash.clone());
        let matched = self
            .verify_any(vec![hash], password.as_bytes().to_vec())
            .await?
            .is_some();
        let Some(account) = known.filter(|_| matched) else {
            let now = Instant::now();
            if let Some(k) = &user_key {
                self.failed_users.fail(k, now);
            }
            if let Some(a) = addr {
                self.failed_addrs.fail(&a, now);
            }
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
        if let Some(previous) = previous.filter(|p| secret::is_session_id(p)) {
            self.end_session(secret::key(previous.as_bytes())).await?;
        }
        let id = secret::new_session_id().map_err(|e| {
            tracing::error!(error = %shipwatch_protocol::Report(&e), "cannot make a session id");
            AuthError::Busy
        })?;
        let policy = SessionPolicy::of(&config);
        let now_ms = now_ms();
        self.store
            .session_write(SessionWrite::Create {
                id_hash: secret::key(id.as_bytes()),
                user: account.name.clone(),
                now_ms,
                idle_before_ms: now_ms - millis(policy.idle),
                created_before_ms: now_ms - millis(policy.max_age),
            })
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

    /// Ends the session the request's cookie names, if any; returns whose it was.
    pub async fn logout(
        &self,
        headers: &HeaderMap,
        addr: Option<IpAddr>,
    ) -> Result<Option<String>, AuthError> {
        let Some(id) = session_cookie(headers).filter(|id| secret::is_session_id(id)) else {
            return Ok(None);
        };
        let key = secret::key(id.as_bytes());
        let cached = self.lock_sessions().get(&key).map(|live| live.user.clone());
        let user = match cached {
            Some(user) => Some(user),
            None => self.store.session(key).await?.map(|row| row.user),
        };
        self.end_session(key).await?;
        if let Some(user) = &user {
            self.record(AuditRecord {
                actor: user.clone(),
                action: "logout".into(),
                addr: addr.map(|a| a.to_string()).unwrap_or_default(),
                outcome: "ok".into(),
                ..AuditRecord::default()
            })
            .await;
            tracing::info!(user = %user, addr = ?addr, "logged out");
        }
        Ok(user)
    }

    /// The `Set-Cookie` value for session `id`.
    fn cookie(&self, id: &str, max_age: Duration) -> String {
        format!(
            "{SESSION_COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
            max_age.as_secs(),
            self.secure_suffix()
        )
    }

    /// The `Set-Cookie` value that makes a browser forget its session cookie.
    pub fn cleared_cookie(&self) -> String {
        format!(
            "{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{}",
            self.secure_suffix()
        )
    }

    fn secure_suffix(&self) -> &'static str {
        if self.config().server.public_url.starts_with("https://") {
            "; Secure"
        } else {
            ""
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

    /// Applies each new configuration until `shutdown`: tokens are checked again, and
    /// the sessions and WebSockets of users and tokens that were removed (or whose hash
    /// changed) end.
    pub async fn follow_reloads(self: Arc<Self>, shutdown: CancellationToken) {
        let mut config = self.config.clone();
        let mut previous = config.borrow_and_update().clone();
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                changed = config.changed() => if changed.is_err() { return },
            }
            let current = config.borrow_and_update().clone();
            self.apply_reload(&previous, &current).await;
            previous = current;
        }
    }

    async fn apply_reload(&self, old: &Config, new: &Config) {
        let removed_users: Vec<String> = old
            .users
            .iter()
            .filter(|u| {
                new.users
                    .iter()
                    .all(|n| n.name != u.name || n.password_hash != u.password_hash)
            })
            .map(|u| u.name.clone())
            .collect();
        let removed_tokens: Vec<String> = old
            .tokens
            .iter()
            .filter(|t| {
                new.tokens
                    .iter()
                    .all(|n| n.name != t.name || n.token_hash != t.token_hash)
            })
            .map(|t| t.name.clone())
            .collect();
        *self.lock_tokens() = TokenCache::default();
        {
            let mut revocations = self.lock_revocations();
            for user in &removed_users {
                if let Some(token) = revocations.users.remove(user) {
                    token.cancel();
                }
            }
            for name in &removed_tokens {
                if let Some(token) = revocations.tokens.remove(name) {
                    token.cancel();
                }
            }
            let rank = |r: Option<Role>| r.map_or(0, |r| r as u8 + 1);
            if rank(new.auth.anonymous) < rank(old.auth.anonymous) {
                revocations.anonymous.cancel();
                revocations.anonymous = CancellationToken::new();
            }
        }
        if !removed_users.is_empty() {
            let _loading = self.session_loads.lock().await;
            self.lock_sessions()
                .retain(|_, live| !removed_users.contains(&live.user));
            if let Err(e) = self
                .store
                .session_write(SessionWrite::DeleteUsers {
                    users: removed_users.clone(),
                })
                .await
            {
                tracing::warn!(error = %shipwatch_protocol::Report(&e), "sessions of removed users not deleted from the store; they are refused anyway");
            }
        }
        for warning in new.warnings() {
            tracing::warn!("{warning}");
        }
        let mut detail = format!(
            "{} tasks, {} users, {} tokens",
            new.tasks.len(),
            new.users.len(),
            new.tokens.len()
        );
        if !removed_users.is_empty() {
            detail.push_str(&format!("; ended users {}", removed_users.join(", ")));
        }
        if !removed_tokens.is_empty() {
            detail.push_str(&format!("; ended tokens {}", removed_tokens.join(", ")));
        }
        tracing::info!(
            ended_users = removed_users.len(),
            ended_tokens = removed_tokens.len(),
            "authentication follows the new configuration"
        );
        self.record(AuditRecord {
            actor: "gateway".into(),
            action: "reload".into(),
            detail,
            outcome: "ok".into(),
            ..AuditRecord::default()
        })
        .await;
    }
}

/// The session id in the request's `shipwatch_session` cookie.
fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.trim())
}

/// The client's address, when the server recorded it.
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
