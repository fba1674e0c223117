//! The secrets themselves: argon2id hashing and checking, fresh random tokens and
//! session ids, and the fast SHA-256 key under which a checked secret is remembered.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use sha2::{Digest, Sha256};

/// What an API token starts with, so secret scanners can find a leaked one.
pub const TOKEN_PREFIX: &str = "swt_";

/// Random bytes in a token and in a session id: 256 bits.
const SECRET_BYTES: usize = 32;

/// Why a secret could not be made.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("the operating system's random number generator failed")]
    Random(#[source] getrandom::Error),
    /// argon2's error is no `std::error::Error` without its `std` feature: kept as text.
    #[error("argon2 could not hash: {0}")]
    Hash(String),
}

/// argon2id with OWASP's minimum cost (19 MiB, 2 passes, 1 lane).
fn argon2() -> Argon2<'static> {
    // The values are constants within argon2's limits: `new` cannot fail on them.
    let params = Params::new(19_456, 2, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// The argon2id PHC string of `secret`, with a fresh random salt.
pub fn hash(secret: &[u8]) -> Result<String, SecretError> {
    let salt_bytes: [u8; 16] = random()?;
    let salt = SaltString::encode_b64(&salt_bytes).map_err(|e| SecretError::Hash(e.to_string()))?;
    argon2()
        .hash_password(secret, &salt)
        .map(|h| h.to_string())
        .map_err(|e| SecretError::Hash(e.to_string()))
}

/// Whether `secret` matches the PHC string `phc` (with the cost written in `phc`).
/// Slow on purpose: call it off the async threads.
pub fn verify(phc: &str, secret: &[u8]) -> bool {
    match PasswordHash::new(phc) {
        Ok(parsed) => argon2().verify_password(secret, &parsed).is_ok(),
        Err(_) => false,
    }
}

/// A hash no password matches, checked against when the user is unknown so that an
/// unknown name costs as long as a wrong password (no user enumeration by timing).
pub fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| {
        let secret: [u8; 32] = random().unwrap_or([7; 32]);
        hash(&secret).unwrap_or_default()
    })
}

/// A new API token: `swt_` and 64 hex digits (256 random bits).
pub fn new_token() -> Result<String, SecretError> {
    Ok(format!("{TOKEN_PREFIX}{}", hex(&random::<SECRET_BYTES>()?)))
}

/// A new session id: 64 hex digits (256 random bits).
pub fn new_session_id() -> Result<String, SecretError> {
    Ok(hex(&random::<SECRET_BYTES>()?))
}

/// The key a presented secret is remembered under: its SHA-256. Fast, and the map never
/// holds the secret itself.
pub fn key(secret: &[u8]) -> [u8; 32] {
    Sha256::digest(secret).into()
}

fn random<const N: usize>() -> Result<[u8; N], SecretError> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(SecretError::Random)?;
    Ok(bytes)
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// Whether `text` looks like a session id this gateway made (64 lowercase hex digits).
pub fn is_session_id(text: &str) -> bool {
    text.len() == SECRET_BYTES * 2 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_secret_only() {
        let phc = hash(b"correct horse").unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(verify(&phc, b"correct horse"));
        assert!(!verify(&phc, b"correct horsf"));
        assert!(!verify("not a hash", b"correct horse"));
        assert_ne!(phc, hash(b"correct horse").unwrap(), "salts differ");
    }

    #[test]
    fn tokens_and_ids_are_long_random_and_recognisable() {
        let (a, b) = (new_token().unwrap(), new_token().unwrap());
        assert!(a.starts_with("swt_") && a.len() == 4 + 64, "{a}");
        assert_ne!(a, b);
        let id = new_session_id().unwrap();
        assert!(is_session_id(&id));
        assert!(!is_session_id(&a));
        assert_ne!(key(a.as_bytes()), key(b.as_bytes()));
    }
}
