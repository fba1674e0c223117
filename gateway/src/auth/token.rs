//! API tokens (`Authorization: Bearer`): argon2 the first time a token is presented,
//! then recognised by the SHA-256 of what was presented until the next reload.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::time::Instant;

use super::{Auth, AuthError, Principal, Via, secret};

/// Presented tokens longer than this are refused without hashing.
const MAX_TOKEN_LEN: usize = 512;
/// Unknown tokens remembered (then forgotten all at once), so a client retrying a stale
/// token does not cost an argon2 run per request.
const REFUSED_TOKENS: usize = 4096;

/// Tokens known good or bad by the SHA-256 of what was presented.
#[derive(Default)]
pub(super) struct TokenCache {
    known: HashMap<[u8; 32], String>,
    refused: HashSet<[u8; 32]>,
}

impl Auth {
    pub(super) async fn token_principal(
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
                        .reserve(&addr, Instant::now())
                        .map_err(AuthError::Throttled)?;
                }
                let hashes: Vec<Option<String>> = config
                    .tokens
                    .iter()
                    .map(|t| Some(t.token_hash.clone()))
                    .collect();
                let found = self
                    .hashing
                    .verify_any(hashes, token.as_bytes().to_vec())
                    .await;
                let found = match found {
                    Ok(found) => found,
                    Err(e) => {
                        if let Some(addr) = addr {
                            self.failed_addrs.refund(&addr, Instant::now());
                        }
                        return Err(e);
                    }
                };
                let mut cache = self.lock_tokens();
                match found.and_then(|i| config.tokens.get(i)) {
                    Some(t) => {
                        cache.known.insert(key, t.name.clone());
                        drop(cache);
                        if let Some(addr) = addr {
                            self.failed_addrs.refund(&addr, Instant::now());
                        }
                        t.name.clone()
                    }
                    None => {
                        if cache.refused.len() >= REFUSED_TOKENS {
                            cache.refused.clear();
                        }
                        cache.refused.insert(key);
                        drop(cache);
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
}
