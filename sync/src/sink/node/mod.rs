//! One server as the sink: its run (checkpoint, PSYNC, full load or resume, stream),
//! target preparation, and the full load's shipping. The stream is [`stream`]; the
//! pipelined connection [`target`]; emptying a link's slots [`purge`].

pub mod purge;
pub mod stream;
pub mod target;

use bytes::BytesMut;

use super::load::full_load;
use super::{ours, source_spec, LoadTarget, Next, StatusAdd};
use crate::checkpoint::{self, Checkpoint};
use crate::config::{NotEmpty, OnFullResync, SyncConfig};
use crate::load::LoadBatch;
use crate::reencode;
use crate::reply::{error_text, frames, load_error};
use crate::source::{PsyncReply, Source};
use crate::status::SyncStatus;
use crate::SyncError;
use target::{Meta, Target};

pub(crate) async fn run_once(
    cfg: &SyncConfig,
    status: &SyncStatus,
    mut control: ::cluster::NodeStream,
) -> Result<Next, SyncError> {
    let cp = checkpoint::read(&mut control, cfg.checkpoint_db, cfg.checkpoint_key()).await?;
    let resume = cp
        .as_ref()
        .filter(|c| c.is_streaming())
        .map(|c| (c.replid.as_str(), c.offset));
    // A link of a cluster source whose last full load did not finish loads again: its
    // slots are emptied first, before the source starts sending (emptying them SCANs the
    // whole target, and a source left unread that long drops the replica).
    let purged = match (&cfg.scope, &cp) {
        (Some(scope), Some(c)) if resume.is_none() && !c.is_streaming() => {
            crate::sink::node::purge::node(&mut control, cfg.db_map.target(0), scope).await?;
            true
        }
        _ => false,
    };
    let (spec, seeding) = source_spec(cfg, cp.as_ref());
    let (mut link, reply) = Source::open(&spec, cfg.listening_port, resume).await?;
    let mut target = Target::connect(&cfg.target).await?;
    let (replid, offset, db) = match reply {
        PsyncReply::Full { replid, offset } => {
            // Files: a checkpoint of other files is not this run's to resume or redo.
            let (cp, resume) = ours(&link, cp.as_ref(), resume, &replid);
            if status.fence().is_some() {
                // After the cutover the target is live: loading (and first emptying) it
                // would destroy the writes it took since.
                return Err(SyncError::Config(
                    "the source offered a full resync after the cutover; the target is live and nothing is loaded into it".into(),
                ));
            }
            if resume.is_some() && link.copies_again() {
                tracing::info!("the SCAN copy starts over: the target is emptied and loaded again");
            } else if resume.is_some() {
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
            match &cfg.scope {
                // One of several links: the target was prepared once for all of them;
                // only what this link loaded before is taken away.
                Some(scope) if cp.is_some() && !purged => {
                    crate::sink::node::purge::node(&mut control, cfg.db_map.target(0), scope)
                        .await?;
                }
                Some(_) => {}
                None => prepare_for_full_load(cfg, &mut control, cp, resume.is_some()).await?,
            }
            StatusAdd::full(status);
            let mut dest = NodeDest {
                target: &mut target,
                control: &mut control,
            };
            let (db, offset) =
                full_load(cfg, status, &mut link, &mut dest, &replid, offset).await?;
            if seeding {
                tracing::info!(
                    replid = %replid,
                    offset,
                    "seeded from the file: asking the source to continue from there"
                );
                return Ok(Next::Again);
            }
            (replid, offset, db)
        }
        PsyncReply::Continue { replid: new_id } => {
            let Some(cp) = cp else {
                return Err(SyncError::Source("CONTINUE without a checkpoint".into()));
            };
            tracing::info!(
                offset = cp.offset,
                "partial resync: continuing from the target's checkpoint"
            );
            StatusAdd::partial(status);
            (new_id.unwrap_or(cp.replid), cp.offset, cp.db)
        }
    };
    status.set_applied(offset);
    stream::stream(cfg, status, link, target, replid, offset, db).await?;
    Ok(Next::Done)
}

/// Makes sure a full load starts on an empty target (or one we emptied on purpose).
async fn prepare_for_full_load(
    cfg: &SyncConfig,
    control: &mut ::cluster::NodeStream,
    cp: Option<&Checkpoint>,
    resuming: bool,
) -> Result<(), SyncError> {
    let ours = cp.is_some();
    // Never over a target that took the clients: a cutover recorded there means it is live.
    let ckdb = cfg.checkpoint_db.to_string();
    let rec = control
        .request(&[&[b"SELECT", ckdb.as_bytes()], &checkpoint::SWITCH_QUERY])
        .await
        .map_err(|e| SyncError::Target(e.to_string()))?;
    let switched = checkpoint::parse_switch(rec.get(1).map_or(&[][..], |r| &r[..]))
        .map_err(SyncError::Target)?;
    if switched.is_some() {
        return Err(SyncError::Config(
            "the target records a completed cutover (it is live): refusing to load the source into it".into(),
        ));
    }
    let r = control
        .request(&[&[b"INFO", b"keyspace"]])
        .await
        .map_err(|e| SyncError::Target(e.to_string()))?;
    let text = String::from_utf8_lossy(&r[0]).into_owned();
    let mut busy = Vec::new();
    for (n, keys) in ::cluster::info::keyspace(&text) {
        let own = u64::from(ours && n == cfg.checkpoint_db);
        if keys > own {
            busy.push(format!("db{n} ({} keys)", keys - own));
        }
    }
    // Our own partial load, or a resume the source could not continue: start over.
    let flush = busy.is_empty() || ours || resuming || cfg.not_empty == NotEmpty::Flush;
    if !busy.is_empty() && !flush {
        return Err(SyncError::Config(format!(
            "the target is not empty: {}; empty it, or set sync.target_not_empty = \"flush\" (cutover restore: --target-not-empty flush) to let cutover empty it",
            busy.join(", ")
        )));
    }
    if !busy.is_empty() || ours {
        tracing::warn!(dbs = %busy.join(", "), "emptying the target before the full load");
        let r = control
            .request(&[&[b"FLUSHALL"]])
            .await
            .map_err(|e| SyncError::Target(e.to_string()))?;
        if let Some(e) = error_text(&r[0]) {
            return Err(SyncError::Target(format!("FLUSHALL: {e}")));
        }
    }
    Ok(())
}

/// The full load's way into one server: its pipelined connection, and a control
/// connection for the checkpoint.
pub(crate) struct NodeDest<'a> {
    pub target: &'a mut Target,
    pub control: &'a mut ::cluster::NodeStream,
}

impl LoadTarget for NodeDest<'_> {
    async fn write_checkpoint(
        &mut self,
        cfg: &SyncConfig,
        cp: &Checkpoint,
        ckdb: &str,
    ) -> Result<(), SyncError> {
        let mut out = BytesMut::new();
        resp::encode::command(&mut out, [&b"SELECT"[..], ckdb.as_bytes()].into_iter());
        cp.hset(cfg.checkpoint_key(), &mut out);
        self.control
            .request_raw(&out, 2)
            .await
            .map_err(|e| SyncError::Target(e.to_string()))?;
        Ok(())
    }

    async fn probe(&mut self, rdb_version: u16) -> Result<reencode::TargetCaps, SyncError> {
        probe_target(self.target, rdb_version).await
    }

    fn ship(&mut self, b: LoadBatch) -> Result<(), SyncError> {
        if b.count > 0 {
            self.target.send(b.data, b.count, Meta::Load(b.names))?;
        }
        Ok(())
    }

    async fn settle(&mut self, limit: usize) -> Result<(), SyncError> {
        while self.target.inflight_bytes() > limit {
            let (m, r) = self.target.next_done().await?;
            check_load(m, &r)?;
        }
        Ok(())
    }

    async fn finish(&mut self) -> Result<(), SyncError> {
        self.target.drain(|m, r| check_load(m, &r)).await
    }

    fn in_flight(&self) -> String {
        String::new()
    }

    fn is_cluster(&self) -> bool {
        false
    }
}

/// Finds out what the target takes (RESTORE of the source's RDB version, newer stream and
/// hash commands): one unit of probe commands, answered after everything before it.
async fn probe_target(
    target: &mut Target,
    rdb_version: u16,
) -> Result<reencode::TargetCaps, SyncError> {
    let (data, count) = reencode::probe_commands(rdb_version);
    target.send(data.freeze(), count, Meta::Control("probe"))?;
    loop {
        match target.next_done().await? {
            (Meta::Control("probe"), r) => return reencode::parse_probe(&frames(&r)?),
            (m, r) => check_load(m, &r)?,
        }
    }
}

fn check_load(meta: Meta, replies: &[u8]) -> Result<(), SyncError> {
    let Meta::Load(names) = meta else {
        return Ok(());
    };
    for (frame, (cmd, key)) in frames(replies)?.into_iter().zip(names) {
        if let Some(e) = error_text(frame) {
            return Err(load_error(cmd, &key, e));
        }
    }
    Ok(())
}
