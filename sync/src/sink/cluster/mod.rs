//! The syncer's run against a Redis Cluster target (found by `INFO cluster` answering
//! `cluster_enabled:1` on the target URL's node; no setting needed).
//!
//! Same run as for one node ([`super::run`], through [`ClusterSink`]), with what a cluster
//! changes:
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

use super::run::{Sink, Start};
use super::{LoadTarget, Next, TargetMemory};
use crate::checkpoint::{self, Checkpoint};
use crate::config::{unmapped_dbs, SyncConfig};
use crate::load::LoadBatch;
use crate::reencode;
use crate::reply::{error_text, load_error};
use crate::scope::LinkScope;
use crate::slot_checkpoint::{self, SkipTable};
use crate::source::Source;
use crate::status::SyncStatus;
use crate::SyncError;
use router::{Done, Mode, Piece, Router};
use stream::Stream;

/// One run against a cluster: [`super::run::run`] into a [`ClusterSink`].
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
    let sink = ClusterSink {
        router,
        switched: false,
    };
    super::run::run(cfg, status, sink).await
}

/// A Redis Cluster as the sink: its router, and whether the checkpoint hash read at the
/// start records a completed cutover.
pub(crate) struct ClusterSink {
    router: ClusterRouter,
    switched: bool,
}

impl Sink for ClusterSink {
    type Load = ClusterRouter;
    type Resume = SkipTable;

    async fn checkpoint(&mut self, cfg: &SyncConfig) -> Result<Option<Checkpoint>, SyncError> {
        let record = read_record(&mut self.router, cfg.checkpoint_key()).await?;
        self.switched = record.switched;
        Ok(record.checkpoint)
    }

    async fn before_open(
        &mut self,
        cfg: &SyncConfig,
        _cp: Option<&Checkpoint>,
    ) -> Result<bool, SyncError> {
        check_source_dbs(cfg).await?;
        Ok(false)
    }

    async fn opened(&mut self, _cfg: &SyncConfig) -> Result<(), SyncError> {
        Ok(())
    }

    async fn switched(&mut self, _cfg: &SyncConfig) -> Result<bool, SyncError> {
        Ok(self.switched)
    }

    /// Each master with keys (`DBSIZE`; the checkpoint hash counts).
    async fn busy(&mut self, _cfg: &SyncConfig, _ours: bool) -> Result<Vec<String>, SyncError> {
        let mut busy = Vec::new();
        for (node, reply) in each_master(&mut self.router, &[b"DBSIZE"]).await? {
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
        Ok(busy)
    }

    async fn flush(&mut self, busy: &[String]) -> Result<(), SyncError> {
        tracing::warn!(nodes = %busy.join(", "), "emptying the target cluster before the full load");
        for (node, reply) in each_master(&mut self.router, &[b"FLUSHALL"]).await? {
            if let Some(e) = error_text(&reply) {
                return Err(SyncError::Target(format!("FLUSHALL on {node}: {e}")));
            }
        }
        Ok(())
    }

    async fn purge(&mut self, _cfg: &SyncConfig, scope: &LinkScope) -> Result<(), SyncError> {
        purge::cluster(&mut self.router, scope).await?;
        Ok(())
    }

    fn load_target(&mut self) -> &mut ClusterRouter {
        &mut self.router
    }

    fn loaded(offset: i64) -> SkipTable {
        SkipTable::new(offset)
    }

    async fn resume(&mut self, cfg: &SyncConfig, cp: &Checkpoint) -> Result<SkipTable, SyncError> {
        let skip = read_slot_checkpoints(&mut self.router, cp.offset, cfg.scope.as_deref()).await?;
        tracing::info!(
            floor = cp.offset,
            highest = skip.max(),
            "partial resync: continuing from the cluster's checkpoints"
        );
        Ok(skip)
    }

    async fn stream(
        self,
        cfg: &SyncConfig,
        status: &SyncStatus,
        link: Source,
        start: Start,
        skip: SkipTable,
    ) -> Result<(), SyncError> {
        Stream::new(
            cfg,
            status,
            self.router,
            start.replid,
            start.offset,
            start.db,
            skip,
        )
        .run(link)
        .await
    }
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
