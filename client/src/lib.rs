//! The command-line client of DESIGN §3: `run`, `jobs`, `show`, `tail`, `cancel`,
//! `rerun` and `tasks`, over the gateway's HTTP API and its job WebSocket.
//!
//! It owns talking to a gateway (HTTP on hyper, WebSocket on tokio-tungstenite),
//! following a job with resume after a dropped connection, and printing it for a
//! terminal or a pipe. It depends on `protocol` for every shape it reads and never on
//! the gateway: it sees a server only through its public API.

mod commands;
mod error;
mod follow;
mod http;
mod render;
mod server;

use std::path::PathBuf;

pub use commands::{Command, JobsQuery, TailOptions};
pub use error::ClientError;
pub use follow::{Filters, Follower};
pub use http::ApiClient;
pub use render::{Output, Timestamps};
pub use server::{JobRef, Server, token_from_file};

/// Where and as whom the client connects.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `--server` / `SHIPWATCH_URL`, when given: it wins over a pasted job URL.
    pub server: Option<String>,
    /// The local config's `public_url`, used when nothing else names a server.
    pub default_server: String,
    /// `--token` / `SHIPWATCH_TOKEN`.
    pub token: Option<String>,
    /// `--token-file`: read when no token was given directly.
    pub token_file: Option<PathBuf>,
}

/// How a client command ended, as the process exit code (DESIGN §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 0: done; a followed job succeeded.
    Succeeded,
    /// 1: a followed job failed or was lost.
    Failed,
    /// 3: a followed job was cancelled.
    Cancelled,
    /// 130: Ctrl-C stopped the watching; the job goes on.
    StoppedWatching,
}

impl Exit {
    pub fn code(self) -> u8 {
        match self {
            Exit::Succeeded => 0,
            Exit::Failed => 1,
            Exit::Cancelled => 3,
            Exit::StoppedWatching => 130,
        }
    }
}

/// Runs one client command to its end on a runtime of its own.
pub fn run(command: Command, options: Options) -> Result<Exit, ClientError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(ClientError::Output)?;
    let outcome = runtime.block_on(commands::run(command, &options));
    match outcome {
        // A closed pipe (`shipwatch tail 42 | head`) is not a failure.
        Err(ClientError::Output(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            Ok(Exit::Succeeded)
        }
        other => other,
    }
}
