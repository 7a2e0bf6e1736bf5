//! Errors of the syncer. Each says which side failed and whether retrying can help: a lost
//! link is retried (resuming from the applied offset); a refused command or a source that
//! forbids replication stops the sync with a message saying why.

use crate::rdb::RdbError;

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("source: {0}")]
    Source(String),
    #[error("target: {0}")]
    Target(String),
    /// The source refuses to be replicated from (managed services block SYNC/PSYNC).
    #[error("the source refuses replication ({0}); SYNC/PSYNC are blocked there, so only the SCAN copy can move this data (sync.source_mode = \"scan\" or \"auto\", --source-mode)")]
    Forbidden(String),
    /// Backup files that can't be read or are not what they should be (the message names
    /// the file and the byte). Retrying can't help.
    #[error("input file: {0}")]
    File(String),
    #[error("source RDB: {0}")]
    Rdb(#[from] RdbError),
    /// The target refused a command: the sync stops at this offset.
    #[error("target refused {command} (key {key}) at offset {offset}: {reply}")]
    Apply {
        command: String,
        key: String,
        offset: i64,
        reply: String,
    },
    /// A stream command that has no equivalent on a Redis Cluster target.
    #[error("{command} can't be applied to a Redis Cluster target: {why}")]
    Cluster { command: String, why: String },
    /// Something the configuration must change (target not empty, unsupported value...).
    #[error("{0}")]
    Config(String),
    #[error("stopped")]
    Stopped,
}

impl SyncError {
    /// Whether reconnecting and resuming may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, SyncError::Source(_) | SyncError::Target(_))
    }
}
