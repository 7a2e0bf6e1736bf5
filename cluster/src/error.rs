//! Errors of reaching a Redis node. Each says which side failed and whether retrying can help.

use std::io;

/// A Redis URL that can't be used.
#[derive(Debug, thiserror::Error)]
pub enum UrlError {
    #[error("unsupported scheme in Redis URL (expected redis:// or rediss://)")]
    Scheme,
    #[error("Redis URL has no host")]
    NoHost,
    #[error("invalid port in Redis URL")]
    Port,
    #[error("invalid database number in Redis URL (expected /0../N)")]
    Db,
    #[error("invalid percent-encoding in Redis URL credentials")]
    Encoding,
}

/// Opening a connection to a node failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("connecting to {addr}: {source}")]
    Io {
        addr: String,
        #[source]
        source: io::Error,
    },
    #[error("connecting to {addr}: timed out")]
    Timeout { addr: String },
    #[error("TLS setup for {addr}: {reason}")]
    Tls { addr: String, reason: String },
    /// The server refused our handshake (AUTH, SELECT, HELLO). Retrying won't help until
    /// the configuration changes, so callers should report it rather than spin.
    #[error("{addr} refused {step}: {reply}")]
    Refused {
        addr: String,
        step: &'static str,
        reply: String,
    },
    #[error("{addr} sent an invalid reply during {step}")]
    BadReply { addr: String, step: &'static str },
}

impl ConnectError {
    /// Whether trying again later may succeed (network trouble) or not (bad credentials).
    pub fn is_retryable(&self) -> bool {
        match self {
            ConnectError::Io { .. } | ConnectError::Timeout { .. } => true,
            ConnectError::Refused { reply, .. } => {
                reply.starts_with("LOADING")
                    || reply.starts_with("BUSY")
                    || reply.starts_with("ERR max number of clients reached")
            }
            ConnectError::Tls { .. } | ConnectError::BadReply { .. } => false,
        }
    }
}
