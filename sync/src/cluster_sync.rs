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

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use cluster::slots::{key_slot, NodeAddr};
use cluster::NodeStream;
use resp::{Limits, RequestParser};
use tokio::sync::mpsc;

use crate::checkpoint::{self, Checkpoint};
use crate::cluster_target::{Done, Mode, Piece, PieceInfo, Router};
use crate::load::LoadMsg;
use crate::reencode;
use crate::slot_checkpoint::{self, SkipTable};
use crate::slotting::{self, Placement};
use crate::source::{PsyncReply, Source};
use crate::spool::Spool;
use crate::status::{SyncState, SyncStatus};
use crate::stream::{Front, Step};
use crate::syncer::{
    bad_stream, full_load, load_error, nth_command, ours, source_spec, warn_truncated, CrossSlot,
    LoadDest, Next, NotEmpty, OnFullResync, StatusAdd, SyncConfig, TargetMemory,
};
use crate::target::{array_elements, error_text};
use crate::SyncError;

/// What a piece sent to the cluster is, for checking its replies and for offsets.
#[derive(Debug)]
pub enum Tag {
    /// A command of the full load.
    Load { name: &'static str, key: Bytes },
    /// The target probe's commands (one key, in order).
    Probe,
    /// Stream commands of one slot, lying at `start..end` of the stream (a source
    /// transaction's part: the whole transaction's span).
    Stream { start: i64, end: i64 },
    /// A keyless command of a barrier; an error starting with `tolerate` means done.
    Broadcast { tolerate: Option<&'static str> },
    /// The main checkpoint's floor.
    Floor(i64),
    /// Anything else (reads, control writes).
    Control,
}

impl PieceInfo for Tag {
    fn order_key(&self) -> Option<&[u8]> {
        match self {
            // A whole value replaced: harmless to repeat after anything.
            Tag::Load {
                name: "RESTORE", ..
            } => None,
            Tag::Load { key, .. } if !key.is_empty() => Some(key),
            Tag::Probe => Some(reencode::PROBE_KEY),
            _ => None,
        }
    }
}

/// Closes a slot's stream transaction: its checkpoint, at the end of its last piece.
fn trailer(slot: u16, pieces: &[Piece<Tag>], out: &mut BytesMut) -> u32 {
    let end = pieces
        .iter()
        .filter_map(|p| match p.info {
            Tag::Stream { end, .. } => Some(end),
            _ => None,
        })
        .max();
    match end {
        Some(end) => {
            slot_checkpoint::set_command(out, slot, end);
            1
        }
        None => 0,
    }
}

/// The router the cluster syncer uses.
pub type ClusterRouter = Router<Tag>;

/// Whether the target node is part of a Redis Cluster.
pub async fn is_cluster(conn: &mut NodeStream) -> Result<bool, SyncError> {
    let r = conn
        .request(&[&[b"INFO", b"cluster"]])
        .await
        .map_err(|e| SyncError::Target(e.to_string()))?;
    Ok(memchr::memmem::find(&r[0], b"cluster_enabled:1").is_some())
}

/// The error for source dbs with keys that do not map to db 0.
pub fn unmapped_dbs(dbs: &[String]) -> SyncError {
    SyncError::Config(format!(
        "the source has keys in {}, and a Redis Cluster target has db 0 only: map them to 0 in [sync.db_map] (e.g. \"3\" = 0; their keys then share one keyspace)",
        dbs.join(", ")
    ))
}

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
            if resume.is_some() {
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
                    crate::purge::cluster(&mut router, scope).await?;
                }
                Some(_) => {}
                None => prepare_for_full_load(cfg, &mut router, &record, resume.is_some()).await?,
            }
            StatusAdd::full(status);
            let mut dest = LoadDest::Cluster(&mut router);
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
    let bad: Vec<String> = keyspace(&text)
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

/// `(db, keys)` from an `INFO keyspace` reply.
pub fn keyspace(text: &str) -> Vec<(u32, u64)> {
    text.lines()
        .filter_map(|line| {
            let (name, rest) = line.split_once(':')?;
            let db = name.strip_prefix("db")?.parse().ok()?;
            let keys = rest
                .split(',')
                .find_map(|kv| kv.strip_prefix("keys="))?
                .trim()
                .parse()
                .ok()?;
            Some((db, keys))
        })
        .collect()
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
        None => (0..cluster::slots::SLOT_COUNT).collect(),
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

/// The full load's batches, routed: each command to its key's slot, scripts and
/// functions to every master. Returns the db the stream starts in.
pub(crate) async fn apply_batches(
    cfg: &SyncConfig,
    status: &SyncStatus,
    router: &mut ClusterRouter,
    batches: &mut mpsc::Receiver<Result<LoadMsg, SyncError>>,
) -> Result<u32, SyncError> {
    let mut stream_db = 0;
    let mut last_progress = std::time::Instant::now();
    let limit = cfg.max_inflight_bytes.clamp(1024 * 1024, 16 * 1024 * 1024);
    while let Some(msg) = batches.recv().await {
        let b = match msg? {
            LoadMsg::Batch(b) => b,
            LoadMsg::Probe { rdb_version, reply } => {
                let caps = probe(router, rdb_version).await?;
                tracing::info!(rdb_version, ?caps, "what the target takes");
                let _ = reply.send(caps);
                continue;
            }
        };
        if let Some(db) = b.stream_db {
            stream_db = db;
        }
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
                    let masters = router.masters().to_vec();
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
                        router.enqueue_node(m, Mode::Plain, piece)?;
                    }
                }
                _ => {
                    let slot = key_slot(&key);
                    let piece = Piece {
                        data,
                        count: 1,
                        info: Tag::Load { name, key },
                    };
                    router.enqueue(slot, Mode::Plain, piece);
                }
            }
        }
        router.flush()?;
        while router.inflight_bytes() > limit {
            check_load(router.next().await?)?;
            refresh(router).await?;
        }
        if last_progress.elapsed() > Duration::from_secs(5) {
            last_progress = std::time::Instant::now();
            let per_node: Vec<String> = router
                .node_inflight()
                .into_iter()
                .map(|(n, b)| format!("{n}={}KiB", b / 1024))
                .collect();
            tracing::info!(
                keys = SyncStatus::get(&status.keys_loaded),
                bytes = SyncStatus::get(&status.rdb_bytes_loaded),
                total = SyncStatus::get(&status.rdb_bytes),
                in_flight = %per_node.join(" "),
                "full sync progress"
            );
        }
    }
    router.flush()?;
    while !router.idle() {
        check_load(router.next().await?)?;
        refresh(router).await?;
    }
    Ok(stream_db)
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

/// Starts of the stream pieces not yet confirmed (a multiset: the parts of one source
/// transaction share its start). The applied offset is the smallest, or, with none, the
/// end of what was parsed.
#[derive(Debug, Default)]
pub struct Outstanding(BTreeMap<i64, u32>);

impl Outstanding {
    pub fn add(&mut self, start: i64) {
        *self.0.entry(start).or_insert(0) += 1;
    }

    pub fn remove(&mut self, start: i64) {
        if let Some(n) = self.0.get_mut(&start) {
            *n -= 1;
            if *n == 0 {
                self.0.remove(&start);
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Everything below this offset is applied: the oldest outstanding start, or `parsed`,
    /// held back by `holds` (a source transaction or a barrier under way).
    pub fn applied(&self, parsed: i64, holds: impl IntoIterator<Item = i64>) -> i64 {
        let first = self.0.keys().next().copied().unwrap_or(parsed);
        holds.into_iter().fold(first.min(parsed), i64::min)
    }
}

/// A source transaction being read: its parts per slot, in the order slots appear.
struct SourceTxn {
    start: i64,
    parts: Vec<(u16, BytesMut, u32)>,
    commands: usize,
}

impl SourceTxn {
    fn push(&mut self, slot: u16, cmd: &[u8]) {
        self.commands += 1;
        match self.parts.iter_mut().find(|(s, _, _)| *s == slot) {
            Some((_, data, n)) => {
                data.extend_from_slice(cmd);
                *n += 1;
            }
            None => self.parts.push((slot, BytesMut::from(cmd), 1)),
        }
    }
}

/// A keyless command every master must run, between everything before it and everything
/// after it.
struct Barrier {
    cmd: Bytes,
    tolerate: Option<&'static str>,
    start: i64,
    end: i64,
    sent: bool,
    /// Masters that ran it.
    covered: HashSet<NodeAddr>,
    waiting: usize,
}

/// The stream applied to a cluster.
struct Stream<'a> {
    cfg: &'a SyncConfig,
    status: &'a SyncStatus,
    router: ClusterRouter,
    replid: String,
    db: u32,
    skip: SkipTable,
    /// End of what was parsed.
    offset: i64,
    outstanding: Outstanding,
    txn: Option<SourceTxn>,
    barrier: Option<Barrier>,
    /// The floor last written, and one being written.
    floor: i64,
    floor_writing: bool,
    /// Split transactions: when one was last logged, and how many since.
    split_logged_at: Option<std::time::Instant>,
    splits_unlogged: u64,
}

impl<'a> Stream<'a> {
    fn new(
        cfg: &'a SyncConfig,
        status: &'a SyncStatus,
        router: ClusterRouter,
        replid: String,
        start: i64,
        db: u32,
        skip: SkipTable,
    ) -> Self {
        Stream {
            cfg,
            status,
            router,
            replid,
            db,
            skip,
            offset: start,
            outstanding: Outstanding::default(),
            txn: None,
            barrier: None,
            floor: start,
            floor_writing: false,
            split_logged_at: None,
            splits_unlogged: 0,
        }
    }

    async fn run(mut self, mut link: Source) -> Result<(), SyncError> {
        let cfg = self.cfg;
        let status = self.status;
        status.set_state(SyncState::Streaming);
        let mut spool = Spool::new(cfg.spool_dir.clone(), SPOOL_MEMORY, cfg.spool_max_bytes);
        let mut received = self.offset + link.rbuf().len() as i64;
        spool
            .push(link.rbuf().split().freeze())
            .map_err(spool_err)?;
        status.set_received(received);
        let front = Front::new(cfg.forward_publish, link.until());
        let mut pbuf = BytesMut::new();
        let mut parser = RequestParser::new(Limits::default());
        let mut ack = tokio::time::interval(Duration::from_secs(1));
        ack.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Every complete frame in `pbuf` was handled (a full target can leave some).
        let mut parsed_all = true;
        // The point in time was reached (files): nothing more is read or applied.
        let mut until_reached = false;
        loop {
            // Parse while the target has room, up to a barrier.
            'fill: while !until_reached
                && self.barrier.is_none()
                && self.router.inflight_bytes() < cfg.max_inflight_bytes
            {
                if parsed_all {
                    match spool.pop(256 * 1024).map_err(spool_err)? {
                        Some(c) => pbuf.extend_from_slice(&c),
                        None => break,
                    }
                }
                parsed_all = false;
                loop {
                    let frame = match parser.parse(&pbuf) {
                        Ok(Some(f)) => f,
                        Ok(None) => {
                            parsed_all = true;
                            break;
                        }
                        Err(e) => {
                            let at = self.txn.as_ref().map_or(self.offset, |t| t.start);
                            return self.stop(bad_stream(&link, self.offset, e), at).await;
                        }
                    };
                    let len = frame.len;
                    let step =
                        front.step(&parser, frame.kind, &pbuf, self.offset + len as i64, status);
                    match step {
                        Step::Stop => {
                            until_reached = true;
                            break 'fill;
                        }
                        Step::Invalid => {
                            let at = self.txn.as_ref().map_or(self.offset, |t| t.start);
                            let e = bad_stream(&link, self.offset, "not a command");
                            return self.stop(e, at).await;
                        }
                        _ => {}
                    }
                    // Where the target stops if this command can't be applied.
                    let at = self.txn.as_ref().map_or(self.offset, |t| t.start);
                    // The command's bytes, shared (not copied) by the pieces that carry it.
                    let cmd = pbuf.split_to(len).freeze();
                    if let Err(e) = self.command(step, &cmd, parser.args(), &mut link).await {
                        return self.stop(e, at).await;
                    }
                    if self.barrier.is_some() {
                        break 'fill;
                    }
                    if self.router.inflight_bytes() >= cfg.max_inflight_bytes {
                        break;
                    }
                }
            }
            self.router.flush()?;
            self.barrier_step()?;
            self.publish_applied();
            // Files end: what is complete is applied, the rest reported.
            let ended = until_reached || (link.at_end() && spool.is_empty() && parsed_all);
            if ended && self.barrier.is_none() {
                return self.finish(&link, pbuf.len(), until_reached).await;
            }
            // The floor follows the applied offset closely (one small write at a time):
            // a resume starts there, and must stay within the source's backlog.
            self.write_floor()?;
            status
                .spool_bytes
                .store(spool.file_bytes(), std::sync::atomic::Ordering::Relaxed);
            let read = !spool.is_full() && (link.eager() || spool.is_empty()) && !link.at_end();
            tokio::select! {
                r = link.fill(), if read => {
                    r?;
                    received += link.rbuf().len() as i64;
                    status.set_received(received);
                    spool.push(link.rbuf().split().freeze()).map_err(spool_err)?;
                }
                done = self.router.next() => self.done(done?)?,
                _ = ack.tick() => {
                    link.ack(status.applied()).await?;
                    self.write_floor()?;
                }
            }
            if self.router.wants_refresh() {
                self.router.refresh().await?;
            }
        }
    }

    /// The end of a file source: an unclosed source transaction is dropped (as Redis
    /// drops it when it loads an AOF), everything else confirmed, and the floor written
    /// at the end.
    async fn finish(
        &mut self,
        link: &Source,
        left: usize,
        until_reached: bool,
    ) -> Result<(), SyncError> {
        let open_multi = self.txn.take().map(|t| self.offset = t.start).is_some();
        if !until_reached {
            warn_truncated(link, self.offset, left, open_multi);
        }
        loop {
            self.router.flush()?;
            self.barrier_step()?;
            self.publish_applied();
            if self.router.idle() && self.barrier.is_none() && !self.floor_writing {
                if self.status.applied() <= self.floor {
                    return Ok(());
                }
                self.write_floor()?;
            }
            let d = self.router.next().await?;
            self.done(d)?;
            if self.router.wants_refresh() {
                self.router.refresh().await?;
            }
        }
    }

    /// Ends the run with `e`. When retrying can't help (a command the cluster can't run),
    /// everything before that command is applied first, so the target stops exactly there.
    async fn stop(&mut self, e: SyncError, at: i64) -> Result<(), SyncError> {
        if e.is_retryable() {
            return Err(e);
        }
        self.router.flush()?;
        while !self.router.idle() {
            let d = self.router.next().await?;
            self.done(d)?;
        }
        self.txn = None;
        self.offset = at;
        self.publish_applied();
        Err(e)
    }

    /// One command of the stream (whole, raw, with its argument ranges).
    async fn command(
        &mut self,
        step: Step,
        cmd: &Bytes,
        args: &[std::ops::Range<usize>],
        link: &mut Source,
    ) -> Result<(), SyncError> {
        let arg = |i: usize| -> &[u8] { args.get(i).map(|r| &cmd[r.clone()]).unwrap_or(&[]) };
        let start = self.offset;
        self.offset += cmd.len() as i64;
        let end = self.offset;
        match step {
            Step::Skip | Step::Stop | Step::Invalid => Ok(()),
            Step::GetAck => link.ack(self.status.applied()).await,
            Step::Multi => {
                self.txn = Some(SourceTxn {
                    start,
                    parts: Vec::new(),
                    commands: 0,
                });
                Ok(())
            }
            Step::Exec => {
                if let Some(t) = self.txn.take() {
                    self.source_txn(t, end)?;
                }
                Ok(())
            }
            Step::Apply | Step::Select(_) => {
                SyncStatus::add(&self.status.stream_commands, 1);
                // Lower-cased on the stack: this runs for every command of the stream.
                let mut lower = [0u8; 16];
                let raw = arg(0);
                let name: &[u8] = match lower.get_mut(..raw.len()) {
                    Some(buf) => {
                        buf.copy_from_slice(raw);
                        buf.make_ascii_lowercase();
                        buf
                    }
                    None => raw,
                };
                self.apply(name, cmd, args, start, end)
            }
        }
    }

    /// A command to apply: placed in its slot(s), or a barrier.
    fn apply(
        &mut self,
        name: &[u8],
        cmd: &Bytes,
        args: &[std::ops::Range<usize>],
        start: i64,
        end: i64,
    ) -> Result<(), SyncError> {
        match self.placed(name, cmd, args)? {
            Placement::Select(n) => {
                if self.cfg.db_map.target(n) != 0 {
                    return Err(unmapped_dbs(&[format!("db{n} (the stream selects it)")]));
                }
                self.db = n;
            }
            Placement::Slot(slot) => self.add(slot, cmd.clone(), start, end),
            Placement::Split(parts) => {
                metrics::counter!("cutover_sync_split_commands_total").increment(1);
                for (slot, part) in parts {
                    self.add(slot, part.freeze(), start, end);
                }
            }
            Placement::Broadcast {
                cmd: bcmd,
                tolerate,
            } => {
                if self.txn.is_some() {
                    return Err(SyncError::Cluster {
                            command: String::from_utf8_lossy(name).to_uppercase(),
                            why: "it is inside a transaction of the source, and on a cluster it must run on every master on its own".into(),
                        });
                }
                if self.skip.max() >= end {
                    // Resuming: a later command of some slot was applied, so this one
                    // ran on every master before it.
                    return Ok(());
                }
                self.barrier = Some(Barrier {
                    cmd: bcmd.freeze(),
                    tolerate,
                    start,
                    end,
                    sent: false,
                    covered: HashSet::new(),
                    waiting: 0,
                });
            }
        }
        Ok(())
    }

    /// Where a stream command goes. One link of several (a cluster source) first checks
    /// it stays within the link's slots; a PUBLISH whose channel hashes elsewhere goes in
    /// the link's first slot (its checkpoint must stay within the link's own slots).
    fn placed(
        &self,
        name: &[u8],
        cmd: &[u8],
        args: &[std::ops::Range<usize>],
    ) -> Result<Placement, SyncError> {
        let Some(scope) = &self.cfg.scope else {
            return slotting::place(cmd, args);
        };
        scope.check(name, cmd, args)?;
        Ok(match slotting::place(cmd, args)? {
            Placement::Slot(slot) if !scope.owns(slot) => Placement::Slot(scope.first_slot()),
            p => p,
        })
    }

    /// A stream command for `slot` (inside a source transaction: a part of it).
    fn add(&mut self, slot: u16, cmd: Bytes, start: i64, end: i64) {
        if let Some(t) = self.txn.as_mut() {
            t.push(slot, &cmd);
            return;
        }
        self.piece(slot, cmd, 1, start, end);
    }

    fn piece(&mut self, slot: u16, data: Bytes, count: u32, start: i64, end: i64) {
        if self.skip.applied(slot, end) {
            return;
        }
        self.outstanding.add(start);
        let piece = Piece {
            data,
            count,
            info: Tag::Stream { start, end },
        };
        self.router.enqueue(slot, Mode::Txn, piece);
    }

    /// A source transaction is complete (EXEC at `end`).
    fn source_txn(&mut self, t: SourceTxn, end: i64) -> Result<(), SyncError> {
        // Resuming: a transaction already on the target (every part) is neither refused
        // nor counted again.
        let pending = t
            .parts
            .iter()
            .any(|(slot, _, _)| !self.skip.applied(*slot, end));
        if t.parts.len() > 1 && pending {
            if self.cfg.cross_slot == CrossSlot::Stop {
                return Err(SyncError::Cluster {
                    command: "MULTI/EXEC".into(),
                    why: format!(
                        "the source's transaction ending at offset {end} has {} commands on keys in {} slots, and sync.cross_slot_transactions = \"stop\"",
                        t.commands,
                        t.parts.len()
                    ),
                });
            }
            metrics::counter!("cutover_sync_split_transactions_total").increment(1);
            SyncStatus::add(&self.status.split_transactions, 1);
            // Logged once per 10 s at most: a workload can do this all the time.
            self.splits_unlogged += 1;
            let due = match self.split_logged_at {
                None => true,
                Some(at) => at.elapsed() > Duration::from_secs(10),
            };
            if due {
                tracing::warn!(
                    offset = end,
                    commands = t.commands,
                    slots = t.parts.len(),
                    since_last_log = self.splits_unlogged,
                    "a transaction of the source spans slots: applied as one transaction per slot"
                );
                self.split_logged_at = Some(std::time::Instant::now());
                self.splits_unlogged = 0;
            }
        }
        for (slot, data, n) in t.parts {
            self.piece(slot, data.freeze(), n, t.start, end);
        }
        Ok(())
    }

    /// Moves the barrier on: sends it once everything before it is confirmed, sends it
    /// again to masters it missed, and lifts it once every master ran it.
    fn barrier_step(&mut self) -> Result<(), SyncError> {
        let Some(b) = self.barrier.as_mut() else {
            return Ok(());
        };
        if b.sent {
            if b.waiting > 0 {
                return Ok(());
            }
            let missing: Vec<NodeAddr> = self
                .router
                .masters()
                .iter()
                .filter(|m| !b.covered.contains(*m))
                .cloned()
                .collect();
            if missing.is_empty() {
                tracing::info!(offset = b.end, "keyless command applied on every master");
                // Its transaction on the checkpoint's node wrote the floor.
                self.floor = self.floor.max(b.start);
                self.barrier = None;
                self.write_floor()?;
                return Ok(());
            }
            for m in &missing {
                let piece = Piece {
                    data: b.cmd.clone(),
                    count: 1,
                    info: Tag::Broadcast {
                        tolerate: b.tolerate,
                    },
                };
                self.router.enqueue_node(m, Mode::Plain, piece)?;
                b.waiting += 1;
            }
            return self.router.flush();
        }
        if !self.outstanding.is_empty() || self.floor_writing || !self.router.idle() {
            return Ok(());
        }
        // The node of the main checkpoint runs it in one transaction with the checkpoint
        // (offset: the barrier's start), so a FLUSHALL there can't leave the run without
        // a checkpoint; the other masters run it alone.
        let ck_key = self.cfg.checkpoint_key();
        let ck_slot = key_slot(ck_key);
        let owner = self.router.owner_of(ck_slot).cloned();
        let mut data = BytesMut::from(&b.cmd[..]);
        Checkpoint {
            state: "streaming".into(),
            replid: self.replid.clone(),
            offset: b.start,
            db: self.db,
        }
        .hset(ck_key, &mut data);
        let piece = Piece {
            data: data.freeze(),
            count: 2,
            info: Tag::Broadcast {
                tolerate: b.tolerate,
            },
        };
        self.router.enqueue(ck_slot, Mode::Txn, piece);
        b.waiting = 1;
        let others: Vec<NodeAddr> = self
            .router
            .masters()
            .iter()
            .filter(|m| Some(*m) != owner.as_ref())
            .cloned()
            .collect();
        for m in &others {
            let piece = Piece {
                data: b.cmd.clone(),
                count: 1,
                info: Tag::Broadcast {
                    tolerate: b.tolerate,
                },
            };
            self.router.enqueue_node(m, Mode::Plain, piece)?;
            b.waiting += 1;
        }
        b.sent = true;
        self.router.flush()
    }

    /// The applied offset, reported.
    fn publish_applied(&mut self) {
        let holds = [
            self.txn.as_ref().map(|t| t.start),
            self.barrier.as_ref().map(|b| b.start),
        ];
        let a = self
            .outstanding
            .applied(self.offset, holds.into_iter().flatten());
        if a > self.status.applied() {
            self.status.set_applied(a);
        }
    }

    /// Writes the main checkpoint's floor when it moved (not during a barrier: the
    /// barrier's own transaction writes it).
    fn write_floor(&mut self) -> Result<(), SyncError> {
        let a = self.status.applied();
        if self.floor_writing || a <= self.floor || self.barrier.is_some() {
            return Ok(());
        }
        let mut data = BytesMut::new();
        Checkpoint {
            state: "streaming".into(),
            replid: self.replid.clone(),
            offset: a,
            db: self.db,
        }
        .hset(self.cfg.checkpoint_key(), &mut data);
        self.floor_writing = true;
        self.router.send_control(
            key_slot(self.cfg.checkpoint_key()),
            Piece {
                data: data.freeze(),
                count: 1,
                info: Tag::Floor(a),
            },
        )
    }

    /// A unit the target answered.
    fn done(&mut self, d: Done<Tag>) -> Result<(), SyncError> {
        match d.pieces.first().map(|p| &p.info) {
            Some(Tag::Floor(off)) => {
                let off = *off;
                self.floor_writing = false;
                if let Some(e) = d.replies.first().and_then(|r| error_text(r)) {
                    return Err(SyncError::Target(format!("writing the checkpoint: {e}")));
                }
                self.floor = self.floor.max(off);
                Ok(())
            }
            Some(Tag::Broadcast { tolerate }) => {
                let tolerate = *tolerate;
                let results: Vec<&[u8]> = match d.mode {
                    Mode::Plain => d.replies.iter().map(|r| &r[..]).collect(),
                    Mode::Txn => txn_results(&d)?,
                };
                for (i, r) in results.iter().enumerate() {
                    let Some(e) = error_text(r) else { continue };
                    if i == 0 && tolerate.is_some_and(|t| e.starts_with(t)) {
                        continue;
                    }
                    let (command, key) = nth_command(&d.pieces[0].data, i);
                    return Err(SyncError::Apply {
                        command: format!("{command} (on {})", d.node),
                        key,
                        offset: self.barrier.as_ref().map_or(-1, |b| b.end),
                        reply: e,
                    });
                }
                if let Some(b) = self.barrier.as_mut() {
                    b.covered.insert(d.node);
                    b.waiting = b.waiting.saturating_sub(1);
                }
                Ok(())
            }
            Some(Tag::Stream { .. }) => {
                check_stream_txn(&d)?;
                for p in &d.pieces {
                    if let Tag::Stream { start, .. } = p.info {
                        self.outstanding.remove(start);
                    }
                }
                SyncStatus::add(&self.status.commands_applied, 1);
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

/// Checks a stream transaction's replies. Most are clean: every queued reply a status and
/// no error anywhere in EXEC's array (an error element always follows a CRLF), which a
/// byte search tells without framing each result.
fn check_stream_txn(d: &Done<Tag>) -> Result<(), SyncError> {
    if let Some((exec, queued)) = d.replies.split_last() {
        let clean = exec.starts_with(b"*")
            && !exec.starts_with(b"*-")
            && memchr::memmem::find(exec, b"\r\n-").is_none()
            && queued.iter().all(|f| f.first() == Some(&b'+'));
        if clean {
            return Ok(());
        }
    }
    txn_results(d).map(|_| ())
}

/// Checks a transaction unit's replies (MULTI, queued..., EXEC): the results inside EXEC,
/// or the error naming the command the target refused (never a value).
fn txn_results(d: &Done<Tag>) -> Result<Vec<&[u8]>, SyncError> {
    let end = d
        .pieces
        .iter()
        .filter_map(|p| match p.info {
            Tag::Stream { end, .. } => Some(end),
            _ => None,
        })
        .max()
        .unwrap_or(-1);
    let name = |i: usize| {
        let mut all = BytesMut::new();
        for p in &d.pieces {
            all.extend_from_slice(&p.data);
        }
        nth_command(&all, i)
    };
    let Some((exec, queued)) = d.replies.split_last() else {
        return Err(SyncError::Target("empty transaction reply".into()));
    };
    for (i, f) in queued.iter().enumerate() {
        if let Some(e) = error_text(f) {
            let (command, key) = name(i.wrapping_sub(1));
            return Err(SyncError::Apply {
                command,
                key,
                offset: end,
                reply: format!("{e} (on {})", d.node),
            });
        }
    }
    if let Some(e) = error_text(exec) {
        return Err(SyncError::Apply {
            command: "EXEC".into(),
            key: String::new(),
            offset: end,
            reply: format!("{e} (on {})", d.node),
        });
    }
    let Some(results) = array_elements(exec) else {
        return Err(SyncError::Target(
            "the target aborted a transaction (EXEC returned nil)".into(),
        ));
    };
    for (i, f) in results.iter().enumerate() {
        if let Some(e) = error_text(f) {
            let (command, key) = name(i);
            return Err(SyncError::Apply {
                command,
                key,
                offset: end,
                reply: format!("{e} (on {})", d.node),
            });
        }
    }
    Ok(results)
}

/// Stream bytes kept in memory before the spool goes to disk.
const SPOOL_MEMORY: usize = 16 * 1024 * 1024;

fn spool_err(e: std::io::Error) -> SyncError {
    SyncError::Config(format!("spooling the stream to disk: {e}"))
}

#[cfg(test)]
mod tests;
