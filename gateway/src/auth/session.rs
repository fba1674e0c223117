//! Login sessions: the cookie's id is random and the store keeps only its SHA-256, so a
//! restart logs nobody out and a logout really ends one.
//!
//! Sessions looked up once are cached in memory, and so are ids the store does not hold
//! (made up, logged out, expired): a flood of bogus or stale cookies costs a SHA-256 and
//! a map lookup each, and ids never seen before reach the store a few at a time
//! ([`LOOKUPS_AT_ONCE`]), never on a global lock. A lookup that raced a logout (or a
//! reload ending the user's sessions) sees that `endings` moved and looks again, so it
//! never caches a session the store no longer holds.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::time::Duration;

use axum::http::{HeaderMap, header};
use shipwatch_config::Config;
use tokio_util::sync::CancellationToken;

use super::{Auth, AuthError, Principal, SESSION_COOKIE, Via, millis, now_ms, secret};
use crate::store::{AuditRecord, SessionWrite};

/// A session's `seen` time is written to the store at most this often (ms), so idle
/// expiry survives a restart without a write per request.
const TOUCH_EVERY_MS: i64 = 60_000;
/// Ids the store does not hold, remembered (then forgotten all at once).
const UNKNOWN_IDS: usize = 4096;
/// Store lookups of session ids not in memory, at once.
pub(super) const LOOKUPS_AT_ONCE: usize = 4;
/// Times a lookup is retried when sessions ended while it read the store.
const LOOKUP_TRIES: usize = 3;

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

/// Sessions this gateway has looked up, by the SHA-256 of their id.
#[derive(Default)]
pub(super) struct SessionCache {
    live: HashMap<[u8; 32], LiveSession>,
    /// Ids the store does not hold.
    unknown: HashSet<[u8; 32]>,
    /// Bumped whenever sessions end.
    endings: u64,
}

impl SessionCache {
    fn remember_unknown(&mut self, key: [u8; 32]) {
        if self.unknown.len() >= UNKNOWN_IDS {
            self.unknown.clear();
        }
        self.unknown.insert(key);
    }

    /// Forgets the sessions of `users` (a reload ended them).
    pub(super) fn end_users(&mut self, users: &[String]) {
        let ended: Vec<[u8; 32]> = self
            .live
            .iter()
            .filter(|(_, live)| users.contains(&live.user))
            .map(|(key, _)| *key)
            .collect();
        for key in ended {
            self.live.remove(&key);
            self.remember_unknown(key);
        }
        self.endings += 1;
    }
}

/// What the cache knows of one id.
enum Cached {
    Live(LiveSession),
    Unknown,
    Miss(u64),
}

impl Auth {
    fn cached_session(&self, key: &[u8; 32]) -> Cached {
        let cache = self.lock_sessions();
        if let Some(live) = cache.live.get(key) {
            Cached::Live(live.clone())
        } else if cache.unknown.contains(key) {
            Cached::Unknown
        } else {
            Cached::Miss(cache.endings)
        }
    }

    /// The session whose id hashes to `key`, from memory or else from the store.
    async fn live_session(&self, key: [u8; 32]) -> Result<Option<LiveSession>, AuthError> {
        let endings = match self.cached_session(&key) {
            Cached::Live(live) => return Ok(Some(live)),
            Cached::Unknown => return Ok(None),
            Cached::Miss(endings) => endings,
        };
        let _turn = self
            .session_lookups
            .acquire()
            .await
            .map_err(|_| AuthError::Busy)?;
        let mut endings = endings;
        for _ in 0..LOOKUP_TRIES {
            let row = self.store.session(key).await?;
            let revoked = row.as_ref().map(|row| self.user_revocation(&row.user));
            let mut cache = self.lock_sessions();
            if let Some(live) = cache.live.get(&key) {
                return Ok(Some(live.clone()));
            }
            if cache.endings != endings {
                endings = cache.endings;
                continue;
            }
            let (Some(row), Some(revoked)) = (row, revoked) else {
                cache.remember_unknown(key);
                return Ok(None);
            };
            let live = LiveSession {
                user: row.user,
                created_ms: row.created_ms,
                seen_ms: row.seen_ms,
                stored_seen_ms: row.seen_ms,
                revoked,
            };
            cache.live.insert(key, live.clone());
            return Ok(Some(live));
        }
        // Sessions kept ending while this one was looked up: refused this time.
        Ok(None)
    }

    pub(super) async fn session_principal(
        &self,
        id: &str,
        addr: Option<IpAddr>,
    ) -> Result<Option<Principal>, AuthError> {
        if !secret::is_session_id(id) {
            return Ok(None);
        }
        let key = secret::key(id.as_bytes());
        let Some(live) = self.live_session(key).await? else {
            return Ok(None);
        };
        let config = self.config();
        let policy = SessionPolicy::of(&config);
        let now = now_ms();
        let user = config.users.iter().find(|u| u.name == live.user);
        let expired = now.saturating_sub(live.seen_ms) > millis(policy.idle)
            || now.saturating_sub(live.created_ms) > millis(policy.max_age);
        let (Some(user), false) = (user, expired || live.revoked.is_cancelled()) else {
            self.end_session(key).await?;
            return Ok(None);
        };
        let touch = now - live.stored_seen_ms >= TOUCH_EVERY_MS;
        if let Some(entry) = self.lock_sessions().live.get_mut(&key) {
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

    /// Stores a new session of `user` for the id hashing to `key`.
    pub(super) async fn create_session(
        &self,
        key: [u8; 32],
        user: &str,
        policy: SessionPolicy,
    ) -> Result<(), AuthError> {
        let now_ms = now_ms();
        self.store
            .session_write(SessionWrite::Create {
                id_hash: key,
                user: user.to_string(),
                now_ms,
                idle_before_ms: now_ms - millis(policy.idle),
                created_before_ms: now_ms - millis(policy.max_age),
            })
            .await?;
        self.lock_sessions().unknown.remove(&key);
        Ok(())
    }

    /// Ends the session whose id hashes to `key`: from the store, the cache, and its
    /// WebSockets.
    pub(super) async fn end_session(&self, key: [u8; 32]) -> Result<(), AuthError> {
        self.store
            .session_write(SessionWrite::Delete { id_hash: key })
            .await?;
        let ended = {
            let mut cache = self.lock_sessions();
            cache.endings += 1;
            cache.remember_unknown(key);
            cache.live.remove(&key)
        };
        if let Some(live) = ended {
            live.revoked.cancel();
        }
        Ok(())
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
        let Some(user) = self.live_session(key).await?.map(|live| live.user) else {
            return Ok(None);
        };
        self.end_session(key).await?;
        self.record(AuditRecord {
            actor: user.clone(),
            action: "logout".into(),
            addr: addr.map(|a| a.to_string()).unwrap_or_default(),
            outcome: "ok".into(),
            ..AuditRecord::default()
        })
        .await;
        tracing::info!(user = %user, addr = ?addr, "logged out");
        Ok(Some(user))
    }

    /// The `Set-Cookie` value for session `id`.
    pub(super) fn cookie(&self, id: &str, max_age: Duration) -> String {
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
}

/// The session id in the request's `shipwatch_session` cookie.
pub(super) fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.trim())
}
