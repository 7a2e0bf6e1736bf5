//! The syncer's run against a Redis Cluster target (found by `INFO cluster` answering
//! `cluster_enabled:1` on the target URL's node; no setting needed).
//!
//! Same steps as for one node ([`crate::syncer`]), with what a cluster changes:
//! - Start: the target cluster has db 0 only, so every source db holding keys must map
//!   to 0 (`sync.db_map`); the source's `INFO keyspace` is read before PSYNC so a source
//!   with keys elsewhere is refused at once, naming its dbs.
//! - Full load: every master must be empty (`DBSIZE` on each; `FLUSHALL` on each when
//!   allowed), RESTOREs and re-created values are routed by their key's slot, scripts and
//!   functions go to every master ([`apply_batches`]).
//! - Stream: each command is placed ([`crate::slotting`]) and applied in its slot's
//!   transaction with that slot's checkpoint ([`crate::slot_checkpoint`]); consecutive
//!   commands of a slot share a transaction while the previous one is in flight. The
//!   source's own transactions stay whole when their keys share a slot; across slots they
//!   are split per slot (counted), or stop the sync (`sync.cross_slot_transactions`).
//!   Keyless commands every node needs (FLUSHALL, FUNCTION LOAD...) are a barrier:
//!   everything before them confirmed, then every master runs them, then the stream goes
//!   on ([`Barrier`]).
//! - Offsets: the applied offset is the start of the oldest stream command not yet
//!   confirmed by its node ([`Outstanding`]): every node has confirmed everything below it.
//!   It is what is acknowledged, reported, and written as the floor of the main checkpoint
//!   hash (one write at a time, so it trails by about one round trip), from which the next
//!   run resumes, skipping per slot what that slot's checkpoint already covers.

//!
//! Modules: [`stream`] (the stream applier), [`router`] (units per slot, redirections),
//! [`slotting`] (where each command goes), [`purge`] (emptying a link's slots).

pub mod piece;
pub mod purge;
pub mod router;
pub mod slotting;
pub mod stream;
pub mod tag;

pub(crate) use tag::trailer;
pub use tag::{ClusterRouter, Tag};

use ::cluster::slots::{key_slot, NodeAddr};
use bytes::{Bytes, BytesMut};
use resp::{Limits, RequestParser};

use super::load::full_load;
use super::{ours, source_spec, LoadTarget, Next, StatusAdd, TargetMemory};
use crate::checkpoint::{self, Checkpoint};
use crate::config::{unmapped_dbs, NotEmpty, OnFullResync, SyncConfig};
use crate::load::LoadBatch;
use crate::reencode;
use crate::reply::{error_text, load_error};
use crate::slot_checkpoint::{self, SkipTable};
use crate::source::{PsyncReply, Source};
use crate::status::SyncStatus;
use crate::SyncError;
use router::{Done, Mode, Piece, Router};
use stream::Stream;

/// One run against a cluster: read the checkpoints, PSYNC, full load or resume, stream.
pub(crate) async fn run_once(
    cfg: &SyncConfig,
    status: &SyncStatus,
    memory: &mut TargetMemory,
) -> Result<Next, SyncError> {
    if cfg.checkpoint_db != 0 {
        return Err(SyncError::Config(
            "sync.checkpoint_db must be 0 for a Redis Cluster target (it has db 0 only)".into(),
        ));
    }
    let mut router = Router::connect(cfg.target.clone(), trailer, &memory.cluster_masters).await?;
    memory.cluster_masters = router.masters().to_vec();
    router.set_max_unit_bytes(cfg.max_txn_bytes);
    let record = read_record(&mut router, cfg.checkpoint_key()).await?;
    check_source_dbs(cfg).await?;
    let resume = record
        .checkpoint
        .as_ref()
        .filter(|c| c.is_streaming())
        .map(|c| (c.replid.as_str(), c.offset));
    let (spec, seeding) = source_spec(cfg, record.checkpoint.as_ref());
    let (mut link, reply) = Source::open(&spec, cfg.listening_port, resume).await?;
    let (replid, offset, db, skip) = match reply {
        PsyncReply::Full { replid, offset } => {
            // Files: a checkpoint of other files is not this run's to resume or redo.
            let (ours_cp, resume) = ours(&link, record.checkpoint.as_ref(), resume, &replid);
            let record = checkpoint::Record {
                checkpoint: ours_cp.cloned(),
                switched: record.switched,
            };
            if status.fence().is_some() {
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
                Some(scope) if record.checkpoint.is_some() => {
                    crate::sink::cluster::purge::cluster(&mut router, scope).await?;
                }
                Some(_) => {}
                None => prepare_for_full_load(cfg, &mut router, &record, resume.is_some()).await?,
            }
            StatusAdd::full(status);
            let (db, offset) =
                full_load(cfg, status, &mut link, &mut router, &replid, offset).await?;
            if seeding {
                tracing::info!(
                    replid = %replid,
                    offset,
                    "seeded from the file: asking the source to continue from there"
                );
                return Ok(Next::Again);
            }
            (replid, offset, db, SkipTable::new(offset))
        }
        PsyncReply::Continue { replid: new_id } => {
            let Some(cp) = record.checkpoint else {
                return Err(SyncError::Source("CONTINUE without a checkpoint".into()));
            };
            let skip = read_slot_checkpoints(&mut router, cp.offset, cfg.scope.as_deref()).await?;
            tracing::info!(
                floor = cp.offset,
                highest = skip.max(),
                "partial resync: continuing from the cluster's checkpoints"
            );
            StatusAdd::partial(status);
            (new_id.unwrap_or(cp.replid), cp.offset, cp.db, skip)
        }
    };
    status.set_applied(offset);
    Stream::new(cfg, status, router, replid, offset, db, skip)
        .run(link)
        .await?;
    Ok(Next::Done)
}

/// Sends one control command to the node of `slot` and waits for its reply (the router
/// must have nothing else in flight).
async fn request(router: &mut ClusterRouter, slot: u16, cmd: BytesMut) -> Result<Bytes, SyncError> {
    router.enqueue(
        slot,
        Mode::Plain,
        Piece {
            data: cmd.freeze(),
            count: 1,
            info: Tag::Control,
        },
    );
    router.flush()?;
    let d = router.next().await?;
    d.replies
        .into_iter()
        .next()
        .ok_or_else(|| SyncError::Target("internal: no reply".into()))
}

/// Sends `cmd` to every master; returns each one's reply.
async fn each_master(
    router: &mut ClusterRouter,
    cmd: &[&[u8]],
) -> Result<Vec<(NodeAddr, Bytes)>, SyncError> {
    let mut out = BytesMut::new();
    resp::encode::command(&mut out, cmd.iter().copied());
    let data = out.freeze();
    let masters = router.masters().to_vec();
    for m in &masters {
        router.enqueue_node(
            m,
            Mode::Plain,
            Piece {
                data: data.clone(),
                count: 1,
                info: Tag::Control,
            },
        )?;
    }
    router.flush()?;
    let mut replies = Vec::new();
    while replies.len() < masters.len() {
        let d = router.next().await?;
        let r = d.replies.into_iter().next().unwrap_or_default();
        replies.push((d.node, r));
    }
    Ok(replies)
}

async fn read_record(
    router: &mut ClusterRouter,
    key: &[u8],
) -> Result<checkpoint::Record, SyncError> {
    let mut cmd = BytesMut::new();
    resp::encode::command(&mut cmd, [&b"HGETALL"[..], key].into_iter());
    let reply = request(router, key_slot(key), cmd).await?;
    checkpoint::parse(&reply)
}

/// Writes the main checkpoint hash (`key`) on the node of its slot.
pub(crate) async fn write_checkpoint(
    router: &mut ClusterRouter,
    key: &[u8],
    cp: &Checkpoint,
) -> Result<(), SyncError> {
    let mut cmd = BytesMut::new();
    cp.hset(key, &mut cmd);
    let reply = request(router, key_slot(key), cmd).await?;
    match error_text(&reply) {
        Some(e) => Err(SyncError::Target(format!("writing the checkpoint: {e}"))),
        None => Ok(()),
    }
}

/// Refuses a source with keys in dbs that do not map to db 0 (before any PSYNC: a full
/// sync would fork the source for nothing).
async fn check_source_dbs(cfg: &SyncConfig) -> Result<(), SyncError> {
    // Files: the load and the stream check each db they meet.
    let Some(source) = cfg.source.connector() else {
        return Ok(());
    };
    let mut conn = source
        .connect(&cluster::SessionSetup::default())
        .await
        .map_err(|e| SyncError::Source(e.to_string()))?;
    let r = conn
        .request(&[&[b"INFO", b"keyspace"]])
        .await
        .map_err(|e| SyncError::Source(e.to_string()))?;
    if error_text(&r[0]).is_some() {
        // INFO renamed away: the load checks each db it meets instead.
        return Ok(());
    }
    let text = String::from_utf8_lossy(&r[0]);
    let bad: Vec<String> = ::cluster::info::keyspace(&text)
        .into_iter()
        .filter(|(db, keys)| *keys > 0 && cfg.db_map.target(*db) != 0)
        .map(|(db, keys)| format!("db{db} ({keys} keys)"))
        .collect();
    if bad.is_empty() {
        Ok(())
    } else {
        Err(unmapped_dbs(&bad))
    }
}

/// Makes sure the full load starts on empty masters (or ones we emptied on purpose).
async fn prepare_for_full_load(
    cfg: &SyncConfig,
    router: &mut ClusterRouter,
    record: &checkpoint::Record,
    resuming: bool,
) -> Result<(), SyncError> {
    if record.switched {
        return Err(SyncError::Config(
            "the target records a completed cutover (it is live): refusing to load the source into it".into(),
        ));
    }
    let ours = record.checkpoint.is_some();
    let mut busy = Vec::new();
    for (node, reply) in each_master(router, &[b"DBSIZE"]).await? {
        let keys = std::str::from_utf8(reply.get(1..).unwrap_or_default())
            .ok()
            .and_then(|t| t.trim_end().parse::<u64>().ok())
            .ok_or_else(|| {
                SyncError::Target(format!(
                    "DBSIZE on {node}: {}",
                    String::from_utf8_lossy(&reply).trim_end()
                ))
            })?;
        if keys > 0 {
            busy.push(format!("{node} ({keys} keys)"));
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
    if !busy.is_empty() {
        tracing::warn!(nodes = %busy.join(", "), "emptying the target cluster before the full load");
        for (node, reply) in each_master(router, &[b"FLUSHALL"]).await? {
            if let Some(e) = error_text(&reply) {
                return Err(SyncError::Target(format!("FLUSHALL on {node}: {e}")));
            }
        }
    }
    Ok(())
}

/// Reads every slot's checkpoint (one GET per slot, pipelined per node); with a `scope`,
/// only its slots' (the others' belong to other links, in other offset spaces).
async fn read_slot_checkpoints(
    router: &mut ClusterRouter,
    floor: i64,
    scope: Option<&crate::scope::LinkScope>,
) -> Result<SkipTable, SyncError> {
    let mut skip = SkipTable::new(floor);
    let slots: Vec<u16> = match scope {
        Some(s) => s.slots().collect(),
        None => (0..::cluster::slots::SLOT_COUNT).collect(),
    };
    for &slot in &slots {
        let mut cmd = BytesMut::new();
        slot_checkpoint::get_command(&mut cmd, slot);
        router.enqueue(
            slot,
            Mode::Plain,
            Piece {
                data: cmd.freeze(),
                count: 1,
                info: Tag::Control,
            },
        );
    }
    router.flush()?;
    for _ in 0..slots.len() {
        let d = router.next().await?;
        let reply = d.replies.first().cloned().unwrap_or_default();
        match slot_checkpoint::parse_get(&reply) {
            Ok(Some(off)) => skip.set(d.slot, off),
            Ok(None) => {}
            Err(e) => {
                return Err(SyncError::Target(format!(
                    "reading the checkpoint of slot {}: {e}",
                    d.slot
                )))
            }
        }
    }
    Ok(skip)
}

impl LoadTarget for ClusterRouter {
    async fn write_checkpoint(
        &mut self,
        cfg: &SyncConfig,
        cp: &Checkpoint,
        _ckdb: &str,
    ) -> Result<(), SyncError> {
        write_checkpoint(self, cfg.checkpoint_key(), cp).await
    }

    async fn probe(&mut self, rdb_version: u16) -> Result<reencode::TargetCaps, SyncError> {
        probe(self, rdb_version).await
    }

    /// Each command to its key's slot; scripts and functions to every master.
    fn ship(&mut self, b: LoadBatch) -> Result<(), SyncError> {
        if b.ends.len() != b.names.len() {
            return Err(SyncError::Target(
                "internal: a load batch without command bounds".into(),
            ));
        }
        let mut start = 0;
        for ((name, key), end) in b.names.into_iter().zip(b.ends) {
            if end < start || end > b.data.len() {
                return Err(SyncError::Target(
                    "internal: a load batch with bad command bounds".into(),
                ));
            }
            let data = b.data.slice(start..end);
            start = end;
            match name {
                "SELECT" => {}
                "SCRIPT LOAD" | "FUNCTION LOAD" => {
                    let masters = self.masters().to_vec();
                    for m in &masters {
                        let info = Tag::Load {
                            name,
                            key: key.clone(),
                        };
                        let piece = Piece {
                            data: data.clone(),
                            count: 1,
                            info,
                        };
                        self.enqueue_node(m, Mode::Plain, piece)?;
                    }
                }
                _ => {
                    let slot = key_slot(&key);
                    let piece = Piece {
                        data,
                        count: 1,
                        info: Tag::Load { name, key },
                    };
                    self.enqueue(slot, Mode::Plain, piece);
                }
            }
        }
        self.flush()
    }

    async fn settle(&mut self, limit: usize) -> Result<(), SyncError> {
        while self.inflight_bytes() > limit {
            check_load(self.next().await?)?;
            refresh(self).await?;
        }
        Ok(())
    }

    async fn finish(&mut self) -> Result<(), SyncError> {
        self.flush()?;
        while !self.idle() {
            check_load(self.next().await?)?;
            refresh(self).await?;
        }
        Ok(())
    }

    fn in_flight(&self) -> String {
        self.node_inflight()
            .into_iter()
            .map(|(n, b)| format!("{n}={}KiB", b / 1024))
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn is_cluster(&self) -> bool {
        true
    }
}

async fn refresh(router: &mut ClusterRouter) -> Result<(), SyncError> {
    if router.wants_refresh() {
        router.refresh().await?;
    }
    Ok(())
}

fn check_load(d: Done<Tag>) -> Result<(), SyncError> {
    for (p, r) in d.pieces.iter().zip(&d.replies) {
        if let (Some(e), Tag::Load { name, key }) = (error_text(r), &p.info) {
            return Err(load_error(name, key, e));
        }
    }
    Ok(())
}

/// The target probe ([`reencode::probe_commands`]) on the node of the probe key.
async fn probe(
    router: &mut ClusterRouter,
    rdb_version: u16,
) -> Result<reencode::TargetCaps, SyncError> {
    let (data, count) = reencode::probe_commands(rdb_version);
    let data = data.freeze();
    let slot = key_slot(reencode::PROBE_KEY);
    let mut parser = RequestParser::new(Limits::default());
    let mut pos = 0;
    for _ in 0..count {
        let len = match parser.parse(&data[pos..]) {
            Ok(Some(f)) => f.len,
            _ => return Err(SyncError::Target("internal: probe framing".into())),
        };
        let piece = Piece {
            data: data.slice(pos..pos + len),
            count: 1,
            info: Tag::Probe,
        };
        router.enqueue(slot, Mode::Plain, piece);
        pos += len;
    }
    router.flush()?;
    loop {
        let d = router.next().await?;
        if d.pieces
            .first()
            .is_some_and(|p| matches!(p.info, Tag::Probe))
        {
            let frames: Vec<&[u8]> = d.replies.iter().map(|r| &r[..]).collect();
            return reencode::parse_probe(&frames);
        }
        check_load(d)?;
    }
}
