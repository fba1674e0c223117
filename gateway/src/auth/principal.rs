//! Who is asking: the answer every route and WebSocket upgrade is judged by.

use std::net::IpAddr;

use shipwatch_config::{Role, Task};
use tokio_util::sync::CancellationToken;

use super::AuthError;

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
