//! What the syncer is told: the source and target, and the settings every source and sink
//! read (`[sync]` in the configuration).

use std::sync::Arc;

use cluster::Connector;

use crate::checkpoint;
use crate::source::SourceSpec;
use crate::SyncError;

/// What to do when the target already holds keys in the dbs being synced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotEmpty {
    Refuse,
    Flush,
}

/// What to do when a resume is answered with a full resync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFullResync {
    Flush,
    Stop,
}

/// What to do, on a Redis Cluster target, with a transaction of the source whose keys
/// span several slots (a cluster runs MULTI/EXEC within one slot only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CrossSlot {
    /// Apply it as one transaction per slot (counted and logged): each part is atomic,
    /// the whole is not.
    #[default]
    Split,
    /// Stop the sync with an error naming the transaction.
    Stop,
}

#[derive(Debug, Clone)]
pub struct SyncConfig {
    /// Where the data comes from: a live Redis (replication) or backup files.
    pub source: SourceSpec,
    pub target: Arc<Connector>,
    /// Announced to the source with `REPLCONF listening-port` (shows in its INFO).
    pub listening_port: u16,
    pub not_empty: NotEmpty,
    pub on_full_resync: OnFullResync,
    pub checkpoint_db: u32,
    /// Apply PUBLISH from the stream (Sentinel's hello messages are never applied).
    pub forward_publish: bool,
    /// Largest transaction of stream commands.
    pub max_txn_bytes: usize,
    /// Most bytes sent to the target and not yet confirmed.
    pub max_inflight_bytes: usize,
    /// Values whose serialized size passes this are re-created in chunks of ordinary
    /// commands instead of one RESTORE ([`DEFAULT_BIG_VALUE_BYTES`] by default).
    pub big_value_bytes: usize,
    /// Where stream bytes the target can't take yet are spooled, and how many at most.
    pub spool_dir: std::path::PathBuf,
    pub spool_max_bytes: u64,
    /// Source db -> target db; dbs not listed keep their number.
    pub db_map: DbMap,
    /// Cluster targets: the source's transactions whose keys span slots.
    pub cross_slot: CrossSlot,
    /// Set when this link is one of several sharing the target (a cluster source: one
    /// per master): what it owns ([`crate::scope`]). None: the only link.
    pub scope: Option<Arc<crate::scope::LinkScope>>,
    /// An RDB that fills a target holding no checkpoint yet, before the source is asked to
    /// continue from the replication offset it names (`--seed`).
    pub seed: Option<std::path::PathBuf>,
    /// `auto` mode: the SCAN copy to fall back to when the source refuses replication.
    pub scan_fallback: Option<crate::source::scan::ScanSpec>,
}

impl SyncConfig {
    /// The hash this link's checkpoint lives in.
    pub fn checkpoint_key(&self) -> &[u8] {
        self.scope
            .as_ref()
            .map_or(checkpoint::KEY, |s| &s.checkpoint_key[..])
    }
}

/// Default of [`SyncConfig::big_value_bytes`].
pub const DEFAULT_BIG_VALUE_BYTES: usize = 64 * 1024 * 1024;

/// Where each source db goes on the target (`sync.db_map`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DbMap(pub Vec<(u32, u32)>);

impl DbMap {
    pub fn target(&self, source_db: u32) -> u32 {
        self.0
            .iter()
            .find(|(s, _)| *s == source_db)
            .map_or(source_db, |(_, t)| *t)
    }
}

/// The error for source dbs with keys that do not map to db 0.
pub fn unmapped_dbs(dbs: &[String]) -> SyncError {
    SyncError::Config(format!(
        "the source has keys in {}, and a Redis Cluster target has db 0 only: map them to 0 in [sync.db_map] (e.g. \"3\" = 0; their keys then share one keyspace)",
        dbs.join(", ")
    ))
}
