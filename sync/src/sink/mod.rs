//! Sinks: where the data goes, and the contract every one keeps. One server ([`node`]), a
//! Redis Cluster ([`cluster`]): each prepares the target (empty, refuse or flush), loads a
//! snapshot ([`load`], through [`LoadTarget`]), applies the stream in units that carry their
//! checkpoint (exactly once), reports what it has applied, and reads back its resume point.
//! One driver runs both ([`run`], through [`run::Sink`]). A file ([`rdb_file`]) takes a
//! snapshot only.

pub mod cluster;
pub mod load;
pub mod node;
pub mod rdb_file;
pub mod run;

use ::cluster::NodeStream;

use crate::checkpoint::Checkpoint;
use crate::config::SyncConfig;
use crate::load::LoadBatch;
use crate::reencode;
use crate::source::{Source, SourceSpec};
use crate::status::SyncStatus;
use crate::SyncError;

/// What a run that ended well asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    /// The source ended (files), or the run was stopped.
    Done,
    /// Run again at once: the target was seeded, the live source comes next.
    Again,
}

/// The source to open: the seed while the target has no streaming checkpoint (a run
/// interrupted during the seed's load seeds again), else the configured one.
pub(crate) fn source_spec(cfg: &SyncConfig, cp: Option<&Checkpoint>) -> (SourceSpec, bool) {
    match &cfg.seed {
        Some(path) if !cp.is_some_and(Checkpoint::is_streaming) => {
            (SourceSpec::Seed(path.clone()), true)
        }
        _ => (cfg.source.clone(), false),
    }
}

/// What a run learned about the target that the next one may need.
#[derive(Debug, Default)]
pub(crate) struct TargetMemory {
    /// A cluster target's masters: where to start when the URL's node does not answer
    /// (it failed over, or is down).
    pub cluster_masters: Vec<::cluster::slots::NodeAddr>,
}

/// For files, a checkpoint of another input (another id) is not ours: the target then
/// counts as not empty, and is neither resumed nor emptied as our own partial load.
pub(crate) fn ours<'a, T>(
    source: &Source,
    cp: Option<T>,
    resume: Option<(&'a str, i64)>,
    replid: &str,
) -> (Option<T>, Option<(&'a str, i64)>)
where
    T: std::borrow::Borrow<Checkpoint>,
{
    let other = source.is_files()
        && cp
            .as_ref()
            .is_some_and(|c| c.borrow().replid.as_str() != replid);
    if other {
        (None, None)
    } else {
        (cp, resume)
    }
}

pub(crate) struct StatusAdd;

impl StatusAdd {
    pub(crate) fn full(s: &SyncStatus) {
        SyncStatus::add(&s.full_syncs, 1);
        metrics::counter!("cutover_sync_full_syncs_total").increment(1);
    }
    pub(crate) fn partial(s: &SyncStatus) {
        SyncStatus::add(&s.partial_syncs, 1);
        metrics::counter!("cutover_sync_partial_syncs_total").increment(1);
    }
}

/// The error for bytes of the stream that are not commands.
pub(crate) fn bad_stream(source: &Source, at: i64, what: impl std::fmt::Display) -> SyncError {
    let msg = format!("invalid command stream at {}: {what}", source.locate(at));
    if source.is_files() {
        SyncError::File(msg)
    } else {
        SyncError::Source(msg)
    }
}

/// What is left when a file source ends: a truncated last command is dropped with a
/// warning, as Redis's `aof-load-truncated yes` does.
pub(crate) fn warn_truncated(source: &Source, at: i64, left: usize, open_multi: bool) {
    if left > 0 {
        tracing::warn!(
            bytes = left,
            at = %source.locate(at),
            "the input ends inside a command (a truncated AOF): that command is not applied"
        );
    }
    if open_multi {
        tracing::warn!(
            at = %source.locate(at),
            "the input ends inside a MULTI without EXEC: that transaction is not applied"
        );
    }
}

/// Whether the target node is part of a Redis Cluster.
pub async fn is_cluster(conn: &mut NodeStream) -> Result<bool, SyncError> {
    let r = conn
        .request(&[&[b"INFO", b"cluster"]])
        .await
        .map_err(|e| SyncError::Target(e.to_string()))?;
    Ok(::cluster::info::cluster_enabled(&r[0]))
}

/// Where a snapshot goes: one server or a cluster. [`load::full_load`] drives it: one
/// loop for every sink, each shipping and settling in its own way.
pub(crate) trait LoadTarget {
    /// Writes the checkpoint hash `cp` (in `checkpoint_db`, as `ckdb`).
    async fn write_checkpoint(
        &mut self,
        cfg: &SyncConfig,
        cp: &Checkpoint,
        ckdb: &str,
    ) -> Result<(), SyncError>;

    /// What the target takes of an RDB of this version (answered after everything sent).
    async fn probe(&mut self, rdb_version: u16) -> Result<reencode::TargetCaps, SyncError>;

    /// Sends one batch of the encoder's commands.
    fn ship(&mut self, batch: LoadBatch) -> Result<(), SyncError>;

    /// Takes answers (each checked) until at most `limit` bytes are in flight.
    async fn settle(&mut self, limit: usize) -> Result<(), SyncError>;

    /// Takes every answer still owed.
    async fn finish(&mut self) -> Result<(), SyncError>;

    /// What is in flight, for progress lines (empty when there is nothing to add).
    fn in_flight(&self) -> String;

    /// A cluster takes no SELECT (db 0 only) and routes each command by its key.
    fn is_cluster(&self) -> bool;
}
