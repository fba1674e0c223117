//! The audit and session records the store keeps for the auth layer.

use shipwatch_protocol::JobId;

/// What happened, for [`Store::record`](super::Store::record): never a secret in any field.
#[derive(Debug, Clone, Default)]
pub struct AuditRecord {
    pub actor: String,
    pub action: String,
    pub job: Option<JobId>,
    pub detail: String,
    pub addr: String,
    pub outcome: String,
}

/// A login session as stored: only the SHA-256 of its id, never the id itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    pub user: String,
    /// Milliseconds since the Unix epoch.
    pub created_ms: i64,
    pub seen_ms: i64,
}

/// The session writes the auth layer asks of the store.
#[derive(Debug, Clone)]
pub enum SessionWrite {
    /// A new session; sessions unused since `idle_before_ms` or made before
    /// `created_before_ms` are deleted in the same transaction.
    Create {
        id_hash: [u8; 32],
        user: String,
        now_ms: i64,
        idle_before_ms: i64,
        created_before_ms: i64,
    },
    /// The session was used at `seen_ms`.
    Touch { id_hash: [u8; 32], seen_ms: i64 },
    /// Logout or expiry.
    Delete { id_hash: [u8; 32] },
    /// Every session of these users (removed from the config).
    DeleteUsers { users: Vec<String> },
}
