//! Following configuration reloads: the token cache is cleared, and the sessions and
//! WebSockets of users and tokens that were removed (or whose hash changed) end.

use std::collections::HashMap;
use std::sync::Arc;

use shipwatch_config::{Config, Role};
use tokio_util::sync::CancellationToken;

use super::Auth;
use super::token::TokenCache;
use crate::store::{AuditRecord, SessionWrite};

/// What to cancel when credentials end.
pub(super) struct Revocations {
    pub(super) anonymous: CancellationToken,
    pub(super) users: HashMap<String, CancellationToken>,
    pub(super) tokens: HashMap<String, CancellationToken>,
}

impl Revocations {
    pub(super) fn new() -> Revocations {
        Revocations {
            anonymous: CancellationToken::new(),
            users: HashMap::new(),
            tokens: HashMap::new(),
        }
    }
}

impl Auth {
    /// Applies each new configuration until `shutdown`.
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
            // The store first: a lookup that reads it before this sees the cache's
            // `endings` move below and reads again.
            if let Err(e) = self
                .store
                .session_write(SessionWrite::DeleteUsers {
                    users: removed_users.clone(),
                })
                .await
            {
                tracing::warn!(error = %shipwatch_protocol::Report(&e), "sessions of removed users not deleted from the store; they are refused anyway");
            }
            self.lock_sessions().end_users(&removed_users);
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
