//! The one run every sink goes through ([`run`]): read the target's checkpoint, open the
//! source from it (or from the start), and on a full resync check the cutover's fence and
//! the history, prepare the target (refuse, flush, or empty this link's slots), load the
//! snapshot and, when seeding, hand over to the live source; on CONTINUE take the sink's
//! resume point; then stream. What differs between one server and a Redis Cluster is the
//! [`Sink`] each supplies. Whether a busy target is refused or emptied is decided by
//! [`must_empty`], for every sink and for a cluster source's links
//! ([`crate::cluster_source::prepare_target`]).

use super::load::full_load;
use super::{ours, source_spec, LoadTarget, Next, StatusAdd};
use crate::checkpoint::Checkpoint;
use crate::config::{NotEmpty, OnFullResync, SyncConfig};
use crate::scope::LinkScope;
use crate::source::{PsyncReply, Source};
use crate::status::SyncStatus;
use crate::SyncError;

/// Where the stream starts: the history, the offset, and the db selected there.
pub(crate) struct Start {
    pub replid: String,
    pub offset: i64,
    pub db: u32,
}

/// One kind of target, as [`run`] drives it: only what differs between kinds.
pub(crate) trait Sink: Sized {
    /// What the full load ships the snapshot to.
    type Load: LoadTarget;
    /// What the stream needs besides its [`Start`] (a cluster: each slot's checkpoint).
    type Resume;

    /// The target's checkpoint (None when it has none).
    async fn checkpoint(&mut self, cfg: &SyncConfig) -> Result<Option<Checkpoint>, SyncError>;

    /// What is done before the source is opened, given the target's checkpoint `cp`.
    /// Returns whether this link's slots were emptied already.
    async fn before_open(
        &mut self,
        cfg: &SyncConfig,
        cp: Option<&Checkpoint>,
    ) -> Result<bool, SyncError>;

    /// What is done once the source is open, whatever it answered.
    async fn opened(&mut self, cfg: &SyncConfig) -> Result<(), SyncError>;

    /// Whether the target records a completed cutover (it is live).
    async fn switched(&mut self, cfg: &SyncConfig) -> Result<bool, SyncError>;

    /// What holds keys on the target, named with its count ("db0 (3 keys)"); with `ours`,
    /// our own checkpoint is not counted where the sink can tell it apart.
    async fn busy(&mut self, cfg: &SyncConfig, ours: bool) -> Result<Vec<String>, SyncError>;

    /// Empties the whole target (`busy`: what [`Sink::busy`] found, for the log).
    async fn flush(&mut self, busy: &[String]) -> Result<(), SyncError>;

    /// Deletes the keys of `scope`'s slots (one link of a cluster source loads again).
    async fn purge(&mut self, cfg: &SyncConfig, scope: &LinkScope) -> Result<(), SyncError>;

    /// Where the full load goes.
    fn load_target(&mut self) -> &mut Self::Load;

    /// The resume data after a full load that ends at `offset`.
    fn loaded(offset: i64) -> Self::Resume;

    /// The resume data when the source continues from the checkpoint `cp` (logged).
    async fn resume(
        &mut self,
        cfg: &SyncConfig,
        cp: &Checkpoint,
    ) -> Result<Self::Resume, SyncError>;

    /// Applies the source's stream from `start` until it ends or fails.
    async fn stream(
        self,
        cfg: &SyncConfig,
        status: &SyncStatus,
        link: Source,
        start: Start,
        resume: Self::Resume,
    ) -> Result<(), SyncError>;
}

/// One run into `sink`: checkpoint, open the source, full load or resume, stream.
pub(crate) async fn run<S: Sink>(
    cfg: &SyncConfig,
    status: &SyncStatus,
    mut sink: S,
) -> Result<Next, SyncError> {
    let cp = sink.checkpoint(cfg).await?;
    let resume = cp
        .as_ref()
        .filter(|c| c.is_streaming())
        .map(|c| (c.replid.as_str(), c.offset));
    let purged = sink.before_open(cfg, cp.as_ref()).await?;
    let (spec, seeding) = source_spec(cfg, cp.as_ref());
    let (mut link, reply) = Source::open(&spec, cfg.listening_port, resume).await?;
    sink.opened(cfg).await?;
    let (start, data) = match reply {
        PsyncReply::Full { replid, offset } => {
            // Files: a checkpoint of other files is not this run's to resume or redo.
            let (own, resume) = ours(&link, cp.as_ref(), resume, &replid);
            full_resync_allowed(cfg, status, &link, resume.is_some())?;
            match &cfg.scope {
                // One of several links: the target was prepared once for all of them;
                // only what this link loaded before is taken away.
                Some(scope) if own.is_some() && !purged => sink.purge(cfg, scope).await?,
                Some(_) => {}
                None => prepare(&mut sink, cfg, own.is_some(), resume.is_some()).await?,
            }
            StatusAdd::full(status);
            let (db, offset) =
                full_load(cfg, status, &mut link, sink.load_target(), &replid, offset).await?;
            if seeding {
                tracing::info!(
                    replid = %replid,
                    offset,
                    "seeded from the file: asking the source to continue from there"
                );
                return Ok(Next::Again);
            }
            (Start { replid, offset, db }, S::loaded(offset))
        }
        PsyncReply::Continue { replid: new_id } => {
            let Some(cp) = cp else {
                return Err(SyncError::Source("CONTINUE without a checkpoint".into()));
            };
            let data = sink.resume(cfg, &cp).await?;
            StatusAdd::partial(status);
            let start = Start {
                replid: new_id.unwrap_or(cp.replid),
                offset: cp.offset,
                db: cp.db,
            };
            (start, data)
        }
    };
    status.set_applied(start.offset);
    sink.stream(cfg, status, link, start, data).await?;
    Ok(Next::Done)
}

/// Whether a full resync may go on: never after the cutover; after a resume only when
/// the source copies again anyway (SCAN) or `sync.on_full_resync` allows it.
fn full_resync_allowed(
    cfg: &SyncConfig,
    status: &SyncStatus,
    link: &Source,
    resuming: bool,
) -> Result<(), SyncError> {
    if status.fence().is_some() {
        // After the cutover the target is live: loading (and first emptying) it would
        // destroy the writes it took since.
        return Err(SyncError::Config(
            "the source offered a full resync after the cutover; the target is live and nothing is loaded into it".into(),
        ));
    }
    if resuming && link.copies_again() {
        tracing::info!("the SCAN copy starts over: the target is emptied and loaded again");
    } else if resuming {
        tracing::error!(
            "the source answered FULLRESYNC to a resume (backlog overrun or a new replication id): the whole dataset is loaded again"
        );
        metrics::counter!("cutover_sync_unexpected_full_resyncs_total").increment(1);
        if cfg.on_full_resync == OnFullResync::Stop {
            return Err(SyncError::Config(
                "the source can only offer a full resync and sync.on_full_resync = \"stop\"".into(),
            ));
        }
    }
    Ok(())
}

/// Makes sure a full load starts on an empty target (or one we emptied on purpose).
async fn prepare<S: Sink>(
    sink: &mut S,
    cfg: &SyncConfig,
    ours: bool,
    resuming: bool,
) -> Result<(), SyncError> {
    // Never over a target that took the clients: a cutover recorded there means it is live.
    if sink.switched(cfg).await? {
        return Err(live_target());
    }
    let busy = sink.busy(cfg, ours).await?;
    if must_empty(&busy, ours, resuming, cfg.not_empty, true)? {
        sink.flush(&busy).await?;
    }
    Ok(())
}

/// The refusal of a target that records a completed cutover.
pub(crate) fn live_target() -> SyncError {
    SyncError::Config(
        "the target records a completed cutover (it is live): refusing to load the source into it"
            .into(),
    )
}

/// Whether a full load must first empty the target, where `busy` names what holds keys
/// there (besides our own checkpoint). `ours`: the target holds our own partial load, and
/// is emptied even when nothing else is listed; `resuming`: a resume the source could not
/// continue. Both start over. Anything else busy is emptied only with
/// `sync.target_not_empty = "flush"`, else refused, naming it (`restore`: the refusal
/// names `cutover restore`'s flag too).
pub(crate) fn must_empty(
    busy: &[String],
    ours: bool,
    resuming: bool,
    not_empty: NotEmpty,
    restore: bool,
) -> Result<bool, SyncError> {
    if busy.is_empty() {
        return Ok(ours);
    }
    if ours || resuming || not_empty == NotEmpty::Flush {
        return Ok(true);
    }
    let flag = if restore {
        " (cutover restore: --target-not-empty flush)"
    } else {
        ""
    };
    Err(SyncError::Config(format!(
        "the target is not empty: {}; empty it, or set sync.target_not_empty = \"flush\"{flag} to let cutover empty it",
        busy.join(", ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn busy() -> Vec<String> {
        vec!["db0 (3 keys)".to_string(), "db2 (1 keys)".to_string()]
    }

    #[test]
    fn empty_target_is_emptied_only_when_ours() {
        assert!(!must_empty(&[], false, true, NotEmpty::Flush, true).unwrap());
        assert!(must_empty(&[], true, false, NotEmpty::Refuse, true).unwrap());
    }

    #[test]
    fn busy_target_starts_over_or_flushes() {
        assert!(must_empty(&busy(), true, false, NotEmpty::Refuse, true).unwrap());
        assert!(must_empty(&busy(), false, true, NotEmpty::Refuse, true).unwrap());
        assert!(must_empty(&busy(), false, false, NotEmpty::Flush, false).unwrap());
    }

    #[test]
    fn busy_target_is_refused_naming_it() {
        let e = must_empty(&busy(), false, false, NotEmpty::Refuse, true)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "the target is not empty: db0 (3 keys), db2 (1 keys); empty it, or set sync.target_not_empty = \"flush\" (cutover restore: --target-not-empty flush) to let cutover empty it"
        );
        let e = must_empty(&busy(), false, false, NotEmpty::Refuse, false)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "the target is not empty: db0 (3 keys), db2 (1 keys); empty it, or set sync.target_not_empty = \"flush\" to let cutover empty it"
        );
    }
}
