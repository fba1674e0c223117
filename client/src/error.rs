//! What can go wrong talking to a gateway, in the words a user acts on.

/// Why a client command could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The command line or its environment is wrong (exit 2).
    #[error("{0}")]
    Usage(String),
    #[error("cannot reach the server at {url} (set --server or SHIPWATCH_URL)")]
    Unreachable {
        url: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("no answer from {url} within {secs} s")]
    Timeout { url: String, secs: u64 },
    #[error("unexpected answer from {url}")]
    Decode {
        url: String,
        #[source]
        source: serde_json::Error,
    },
    /// 401: the server did not recognise anyone.
    #[error(
        "{message}: the server at {server} wants to know who you are; pass --token, \
         SHIPWATCH_TOKEN or --token-file (an admin makes one with `shipwatch token new NAME --role ROLE`)"
    )]
    Unauthenticated { server: String, message: String },
    /// 403: recognised, but the role is too low for what was asked.
    #[error("{message}: {action} needs {needs}")]
    Forbidden {
        message: String,
        action: String,
        needs: String,
    },
    #[error("unknown task {task:?}; this server offers: {offered}")]
    UnknownTask { task: String, offered: String },
    #[error("{message}")]
    BadParam {
        message: String,
        /// The param the server named.
        param: String,
    },
    /// Any other error answer of the API (`{"error":"…","field":…}`).
    #[error("{message} (HTTP {status})")]
    Api {
        status: u16,
        message: String,
        field: Option<String>,
    },
    #[error("token file {path}")]
    TokenFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("lost the WebSocket {url} and could not get it back within {secs} s")]
    GaveUp {
        url: String,
        secs: u64,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("cannot set up TLS")]
    Tls(#[source] rustls::Error),
    #[error("cannot write the output")]
    Output(#[source] std::io::Error),
}

impl ClientError {
    /// The process exit code this error ends with: 2 for usage, else 1.
    pub fn exit_code(&self) -> u8 {
        match self {
            ClientError::Usage(_) => 2,
            _ => 1,
        }
    }
}
