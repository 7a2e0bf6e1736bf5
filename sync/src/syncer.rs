//! The syncer: keeps the target equal to the source, as a replica would, with an applied
//! offset that is the truth.
//!
//! One run: read the target's checkpoint; PSYNC from it (or from scratch); on FULLRESYNC,
//! load the RDB (RESTORE of each value, straight from its bytes); then apply the command
//! stream in transactions that each carry the checkpoint of their end offset. Any lost
//! link ends the run; the next run resumes from the checkpoint, so nothing is applied twice
//! and nothing skipped.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use cluster::{Connector, SessionSetup};
use resp::{Limits, RequestParser};
use tokio::sync::{mpsc, watch};

use crate::checkpoint::{self, Checkpoint};
use crate::load::LoadMsg;
use crate::reencode;
use crate::source::{ChunkReader, Link, Payload, PsyncReply, Snapshot, Source, SourceSpec};
use crate::spool::Spool;
use crate::status::{SyncState, SyncStatus};
use crate::stream::{Front, Step};
use crate::target::{array_elements, error_text, frames, transient, Meta, Target};
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
}

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

/// What a run learned about the target that the next one may need.
#[derive(Debug, Default)]
pub(crate) struct TargetMemory {
    /// A cluster target's masters: where to start when the URL's node does not answer
    /// (it failed over, or is down).
    pub cluster_masters: Vec<cluster::slots::NodeAddr>,
}

/// Runs until `stop` turns true, retrying what can be retried.
pub async fn run(cfg: SyncConfig, status: Arc<SyncStatus>, mut stop: watch::Receiver<bool>) {
    let poller = cfg
        .source
        .connector()
        .map(|c| tokio::spawn(poll_source_offset(c.clone(), status.clone())));
    let mut backoff = Duration::from_millis(100);
    let mut memory = TargetMemory::default();
    loop {
        let result = tokio::select! {
            r = run_once(&cfg, &status, &mut memory) => r,
            _ = stop.wait_for(|s| *s) => Err(SyncError::Stopped),
        };
        match result {
            Ok(Next::Again) => {
                backoff = Duration::from_millis(100);
                continue;
            }
            Err(SyncError::Stopped) | Ok(Next::Done) => {
                status.set_state(SyncState::Stopped);
                break;
            }
            Err(e) if e.is_retryable() => {
                tracing::warn!(error = %e, "sync interrupted; resuming from the target's checkpoint");
                status.set_error(e.to_string());
                status.set_state(SyncState::Connecting);
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.wait_for(|s| *s) => { status.set_state(SyncState::Stopped); break; }
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            Err(e) => {
                tracing::error!(error = %e, "sync stopped");
                status.set_error(e.to_string());
                status.set_state(SyncState::Error);
                break;
            }
        }
    }
    if let Some(p) = poller {
        p.abort();
    }
}

/// Polls the source's `master_repl_offset` once a second: the other half of the lag.
async fn poll_source_offset(source: Arc<Connector>, status: Arc<SyncStatus>) {
    let mut conn = None;
    loop {
        if conn.is_none() {
            conn = source.connect(&SessionSetup::default()).await.ok();
        }
        if let Some(c) = conn.as_mut() {
            match c.request(&[&[b"INFO", b"replication"]]).await {
                Ok(r) => {
                    let text = String::from_utf8_lossy(&r[0]);
                    if let Some(off) = text
                        .lines()
                        .find_map(|l| l.strip_prefix("master_repl_offset:"))
                        .and_then(|v| v.trim().parse::<i64>().ok())
                    {
                        status.set_source_offset(off);
                    }
                }
                Err(_) => conn = None,
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn run_once(
    cfg: &SyncConfig,
    status: &SyncStatus,
    memory: &mut TargetMemory,
) -> Result<Next, SyncError> {
    status.set_state(SyncState::Connecting);
    if let (None, Some(c)) = (&cfg.scope, cfg.source.connector()) {
        refuse_cluster_source(c).await?;
    }
    let mut control = match cfg.target.connect(&SessionSetup::default()).await {
        Ok(c) => c,
        Err(e) if e.is_retryable() && !memory.cluster_masters.is_empty() => {
            tracing::warn!(error = %e, "the target URL's node does not answer; reaching the cluster through its other masters");
            return crate::cluster_sync::run_once(cfg, status, memory).await;
        }
        Err(e) => return Err(SyncError::Target(e.to_string())),
    };
    if crate::cluster_sync::is_cluster(&mut control).await? {
        drop(control);
        return crate::cluster_sync::run_once(cfg, status, memory).await;
    }
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
            crate::purge::node(&mut control, cfg.db_map.target(0), scope).await?;
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
                Some(scope) if cp.is_some() && !purged => {
                    crate::purge::node(&mut control, cfg.db_map.target(0), scope).await?;
                }
                Some(_) => {}
                None => prepare_for_full_load(cfg, &mut control, cp, resume.is_some()).await?,
            }
            StatusAdd::full(status);
            let mut dest = LoadDest::Node {
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
    stream(cfg, status, link, target, replid, offset, db).await?;
    Ok(Next::Done)
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

/// A lone link replicates one node: a cluster node would give one master's share and look
/// complete. (A cluster source gets one link per master; it ends up here only when it did
/// not answer while cutover started and was taken for a single server.)
async fn refuse_cluster_source(source: &Connector) -> Result<(), SyncError> {
    let mut conn = source
        .connect(&SessionSetup::default())
        .await
        .map_err(|e| SyncError::Source(e.to_string()))?;
    let r = conn
        .request(&[&[b"INFO", b"cluster"]])
        .await
        .map_err(|e| SyncError::Source(e.to_string()))?;
    if memchr::memmem::find(&r[0], b"cluster_enabled:1").is_some() {
        return Err(SyncError::Config(format!(
            "the source {} is a Redis Cluster node, but it was not recognised as one when cutover started (it did not answer then): one link would copy one master's share only; restart cutover to sync every master",
            source.addr()
        )));
    }
    Ok(())
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

/// Makes sure a full load starts on an empty target (or one we emptied on purpose).
async fn prepare_for_full_load(
    cfg: &SyncConfig,
    control: &mut cluster::NodeStream,
    cp: Option<&Checkpoint>,
    resuming: bool,
) -> Result<(), SyncError> {
    let ours = cp.is_some();
    // Never over a target that took the clients: a cutover recorded there means it is live.
    let ckdb = cfg.checkpoint_db.to_string();
    let rec = control
        .request(&[
            &[b"SELECT", ckdb.as_bytes()],
            &[b"HGET", checkpoint::KEY, b"route"],
        ])
        .await
        .map_err(|e| SyncError::Target(e.to_string()))?;
    if rec.get(1).is_some_and(|r| &r[..] == b"$6\r\ntarget\r\n") {
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
    for line in text.lines() {
        let Some((dbname, rest)) = line.split_once(':') else {
            continue;
        };
        let Some(n) = dbname
            .strip_prefix("db")
            .and_then(|d| d.parse::<u32>().ok())
        else {
            continue;
        };
        let keys: u64 = rest
            .split(',')
            .find_map(|kv| kv.strip_prefix("keys="))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
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

/// Where the full load goes: one node (its pipelined connection, and a control connection
/// for the checkpoint), or a Redis Cluster ([`crate::cluster_sync`]).
pub(crate) enum LoadDest<'a> {
    Node {
        target: &'a mut Target,
        control: &'a mut cluster::NodeStream,
    },
    Cluster(&'a mut crate::cluster_sync::ClusterRouter),
}

impl LoadDest<'_> {
    /// Writes the checkpoint hash (in `checkpoint_db`).
    async fn write_checkpoint(
        &mut self,
        cfg: &SyncConfig,
        cp: &Checkpoint,
        ckdb: &str,
    ) -> Result<(), SyncError> {
        match self {
            LoadDest::Node { control, .. } => {
                let mut out = BytesMut::new();
                resp::encode::command(&mut out, [&b"SELECT"[..], ckdb.as_bytes()].into_iter());
                cp.hset(cfg.checkpoint_key(), &mut out);
                control
                    .request_raw(&out, 2)
                    .await
                    .map_err(|e| SyncError::Target(e.to_string()))?;
                Ok(())
            }
            LoadDest::Cluster(router) => {
                crate::cluster_sync::write_checkpoint(router, cfg.checkpoint_key(), cp).await
            }
        }
    }

    async fn apply_batches(
        &mut self,
        cfg: &SyncConfig,
        status: &SyncStatus,
        batches: &mut mpsc::Receiver<Result<LoadMsg, SyncError>>,
    ) -> Result<u32, SyncError> {
        match self {
            LoadDest::Node { target, .. } => apply_batches(cfg, status, target, batches).await,
            LoadDest::Cluster(router) => {
                crate::cluster_sync::apply_batches(cfg, status, router, batches).await
            }
        }
    }
}

/// Loads the source's snapshot into the target. Returns the db the command stream starts
/// in and the offset it starts at (files: the byte after the RDB).
pub(crate) async fn full_load(
    cfg: &SyncConfig,
    status: &SyncStatus,
    source: &mut Source,
    dest: &mut LoadDest<'_>,
    replid: &str,
    offset: i64,
) -> Result<(u32, i64), SyncError> {
    status.set_state(SyncState::FullSync);
    status
        .rdb_bytes_loaded
        .store(0, std::sync::atomic::Ordering::Relaxed);
    status
        .keys_loaded
        .store(0, std::sync::atomic::Ordering::Relaxed);
    let dbs = cfg.checkpoint_db.to_string();
    let loading = Checkpoint {
        state: "loading".into(),
        replid: replid.to_string(),
        offset,
        db: 0,
    };
    dest.write_checkpoint(cfg, &loading, &dbs).await?;

    let snapshot = source.snapshot().await?;
    let total = match &snapshot {
        Snapshot::Payload(Payload::Len(n)) => Some(*n),
        Snapshot::Preamble { total, .. } => Some(*total),
        _ => None,
    };
    if let Some(n) = total {
        status
            .rdb_bytes
            .store(n, std::sync::atomic::Ordering::Relaxed);
    }
    let (stream_db, offset) = if snapshot == Snapshot::None {
        // Commands from the first byte (an AOF without an RDB preamble).
        (0, offset)
    } else {
        tracing::info!(
            ?snapshot,
            "full load: loading the source's RDB into the target"
        );
        let started = std::time::Instant::now();
        let (db, rdb_len) = load_snapshot(cfg, status, source, dest, &snapshot).await?;
        tracing::info!(
            keys = SyncStatus::get(&status.keys_loaded),
            bytes = SyncStatus::get(&status.rdb_bytes_loaded),
            secs = started.elapsed().as_secs_f64(),
            "snapshot loaded"
        );
        match snapshot {
            Snapshot::Payload(Payload::Eof(_)) => {
                // A diskless master sends no stream until the replica's first ACK.
                source.ack(offset).await?;
                (db, offset)
            }
            Snapshot::Preamble {
                commands_follow: true,
                ..
            } => {
                // Files: the commands follow the RDB's checksum, and every AOF part starts
                // in db 0.
                source.seek(rdb_len)?;
                (0, rdb_len as i64)
            }
            _ => (db, offset),
        }
    };
    let streaming = Checkpoint {
        state: "streaming".into(),
        replid: replid.to_string(),
        offset,
        db: stream_db,
    };
    dest.write_checkpoint(cfg, &streaming, &dbs).await?;
    Ok((stream_db, offset))
}

/// Reads the RDB (on a blocking thread, encoding the target's commands there too) and
/// ships them. Returns the db the stream starts in and the RDB's length.
async fn load_snapshot(
    cfg: &SyncConfig,
    status: &SyncStatus,
    source: &mut Source,
    dest: &mut LoadDest<'_>,
    snapshot: &Snapshot,
) -> Result<(u32, u64), SyncError> {
    let (chunk_tx, chunk_rx) = mpsc::channel::<Bytes>(64);
    let (batch_tx, mut batch_rx) = mpsc::channel::<Result<LoadMsg, SyncError>>(16);
    let keys_loaded = status.keys_loaded_handle();
    let big_value_bytes = cfg.big_value_bytes;
    let db_map = cfg.db_map.clone();
    let cluster = matches!(dest, LoadDest::Cluster(_));
    let scope = cfg.scope.clone();
    // The parser thread also encodes the RESTORE commands: the async side only ships
    // finished batches, one channel message per ~256 KB instead of one per key.
    let reader = tokio::task::spawn_blocking(move || {
        let r = crate::load::encode_rdb(
            ChunkReader::new(chunk_rx),
            &batch_tx,
            &keys_loaded,
            big_value_bytes,
            &db_map,
            cluster,
            scope.as_deref(),
        );
        match r {
            Ok(len) => Some(len),
            Err(e) => {
                let _ = batch_tx.blocking_send(Err(e));
                None
            }
        }
    });
    let name = source.locate(0);
    let feeding = async {
        match (source, snapshot) {
            (Source::Link(link), Snapshot::Payload(p)) => {
                feed_link(cfg, status, link, p, chunk_tx).await
            }
            (Source::Backup(b), _) => b.feed(chunk_tx, &status.rdb_bytes_loaded).await,
            _ => Err(SyncError::Config("internal: no snapshot to feed".into())),
        }
    };
    let apply = dest.apply_batches(cfg, status, &mut batch_rx);
    let (fed, applied) = tokio::join!(feeding, apply);
    let rdb_len = reader.await.ok().flatten();
    fed?;
    let stream_db = applied.map_err(|e| match e {
        // Files: the error names the file (the RDB's own message has the byte offset).
        SyncError::Rdb(e) if matches!(snapshot, Snapshot::Preamble { .. }) => {
            SyncError::File(format!("{name}: {e}"))
        }
        e => e,
    })?;
    let rdb_len =
        rdb_len.ok_or_else(|| SyncError::Source("the RDB reader stopped early".into()))?;
    Ok((stream_db, rdb_len))
}

/// The link's payload: read at network speed into the spool (memory, then a bounded
/// file); a pump hands it to the reader as fast as the target takes it. A slow target never
/// makes the source wait (its replica output buffer fills meanwhile with the writes it
/// takes, and past its limit it would drop us).
async fn feed_link(
    cfg: &SyncConfig,
    status: &SyncStatus,
    link: &mut Link,
    payload: &Payload,
    chunk_tx: mpsc::Sender<Bytes>,
) -> Result<(), SyncError> {
    let loaded = &status.rdb_bytes_loaded;
    // (A mutex only to be Send; it is never held across an await.)
    let spool = std::sync::Mutex::new(Spool::new(
        cfg.spool_dir.clone(),
        PAYLOAD_SPOOL_MEMORY,
        cfg.spool_max_bytes,
    ));
    let arrived = tokio::sync::Notify::new();
    let fed_all = std::sync::atomic::AtomicBool::new(false);
    let feed = async {
        let r = link
            .stream_payload(
                payload,
                |c| {
                    let mut sp = spool
                        .lock()
                        .map_err(|_| SyncError::Config("spool lock poisoned".into()))?;
                    if sp.is_full() {
                        return Err(SyncError::Config(
                            "the spool is full (sync.spool_max_bytes) while loading the RDB".into(),
                        ));
                    }
                    sp.push(c).map_err(spool_err)?;
                    status
                        .spool_bytes
                        .store(sp.file_bytes(), std::sync::atomic::Ordering::Relaxed);
                    arrived.notify_one();
                    Ok(())
                },
                |n| SyncStatus::add(loaded, n),
            )
            .await;
        fed_all.store(true, std::sync::atomic::Ordering::Release);
        arrived.notify_one();
        r
    };
    let pump = async {
        loop {
            // "All fed" is read BEFORE popping: if it was set, nothing can arrive after the
            // pop, so an empty pop then means the payload is done.
            let all = fed_all.load(std::sync::atomic::Ordering::Acquire);
            let next = spool
                .lock()
                .map_err(|_| SyncError::Config("spool lock poisoned".into()))?
                // Pieces of a socket read's size: the channel to the reader holds 64.
                .pop(64 * 1024)
                .map_err(spool_err)?;
            match next {
                Some(c) => {
                    if chunk_tx.send(c).await.is_err() {
                        // The reader stopped: its error (or its early end) is what the
                        // load reports.
                        break;
                    }
                }
                None if all => break,
                None => arrived.notified().await,
            }
        }
        status
            .spool_bytes
            .store(0, std::sync::atomic::Ordering::Relaxed);
        drop(chunk_tx);
        Ok::<(), SyncError>(())
    };
    let (fed, pumped) = tokio::join!(feed, pump);
    fed?;
    pumped
}

/// Ships the encoded batches to the target, keeping a bounded amount in flight.
/// Returns the db the command stream starts in.
async fn apply_batches(
    cfg: &SyncConfig,
    status: &SyncStatus,
    target: &mut Target,
    batches: &mut mpsc::Receiver<Result<LoadMsg, SyncError>>,
) -> Result<u32, SyncError> {
    let mut stream_db = 0;
    let mut last_progress = std::time::Instant::now();
    // RESTOREs keep the target busy with far less in flight than the stream allows;
    // a smaller window keeps the full load's memory small whatever the dataset.
    let limit = cfg.max_inflight_bytes.clamp(1024 * 1024, 16 * 1024 * 1024);
    while let Some(msg) = batches.recv().await {
        let b = match msg? {
            LoadMsg::Batch(b) => b,
            LoadMsg::Probe { rdb_version, reply } => {
                let caps = probe_target(target, rdb_version).await?;
                tracing::info!(rdb_version, ?caps, "what the target takes");
                let _ = reply.send(caps);
                continue;
            }
        };
        if let Some(db) = b.stream_db {
            stream_db = db;
        }
        if b.count > 0 {
            target.send(b.data, b.count, Meta::Load(b.names))?;
        }
        while target.inflight_bytes() > limit {
            let (m, r) = target.next_done().await?;
            check_load(m, &r)?;
        }
        if last_progress.elapsed() > Duration::from_secs(5) {
            last_progress = std::time::Instant::now();
            tracing::info!(
                keys = SyncStatus::get(&status.keys_loaded),
                bytes = SyncStatus::get(&status.rdb_bytes_loaded),
                total = SyncStatus::get(&status.rdb_bytes),
                "full sync progress"
            );
        }
    }
    target.drain(|m, r| check_load(m, &r)).await?;
    Ok(stream_db)
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

/// The error for a command of the full load the target refused.
pub(crate) fn load_error(cmd: &str, key: &[u8], e: String) -> SyncError {
    if transient(&e) {
        return SyncError::Target(format!("{cmd}: {e}"));
    }
    let hint = if e.contains("payload version") {
        " (the target's Redis is older than the source's: its RDB format can't take these values)"
    } else {
        ""
    };
    SyncError::Apply {
        command: cmd.to_string(),
        key: show_key(key),
        offset: -1,
        reply: format!("{e}{hint}"),
    }
}

/// Keys in messages: printable, bounded. (Keys are names, not values; values never appear.)
pub(crate) fn show_key(k: &[u8]) -> String {
    let mut s: String = String::from_utf8_lossy(&k[..k.len().min(128)])
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if k.len() > 128 {
        s.push_str("...");
    }
    s
}

/// A transaction of stream commands being built.
struct Txn {
    buf: BytesMut,
    /// Raw stream commands in it, for naming one that fails.
    cmds: BytesMut,
    count: u32,
    start_db: u32,
    end_offset: i64,
    dirty: bool,
    /// Where the source's MULTI began in it: an unclosed MULTI at the end of a file is
    /// rolled back to there, as Redis does when it loads an AOF.
    multi_mark: Option<TxnMark>,
}

#[derive(Debug, Clone, Copy)]
struct TxnMark {
    buf: usize,
    cmds: usize,
    count: u32,
    end_offset: i64,
    dirty: bool,
    db: u32,
}

impl Txn {
    fn new(db: u32, offset: i64) -> Txn {
        Txn {
            buf: BytesMut::new(),
            cmds: BytesMut::new(),
            count: 0,
            start_db: db,
            end_offset: offset,
            dirty: false,
            multi_mark: None,
        }
    }

    fn mark(&mut self, db: u32) {
        self.multi_mark = Some(TxnMark {
            buf: self.buf.len(),
            cmds: self.cmds.len(),
            count: self.count,
            end_offset: self.end_offset,
            dirty: self.dirty,
            db,
        });
    }

    /// Drops the source transaction left open; returns the db it began in.
    fn roll_back(&mut self) -> Option<u32> {
        let m = self.multi_mark.take()?;
        self.buf.truncate(m.buf);
        self.cmds.truncate(m.cmds);
        self.count = m.count;
        self.end_offset = m.end_offset;
        self.dirty = m.dirty;
        Some(m.db)
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

/// Ends the stream with `e` (bad bytes in a file): what came before them is applied
/// first (an open source transaction dropped), so the checkpoint stands exactly there and
/// a run over mended files goes on from it.
async fn stop_at(
    e: SyncError,
    mut txn: Txn,
    in_multi: bool,
    target: &mut Target,
    ck: &TxnCheckpoint<'_>,
    mut db: u32,
    status: &SyncStatus,
) -> Result<(), SyncError> {
    if e.is_retryable() {
        return Err(e);
    }
    if in_multi {
        if let Some(d) = txn.roll_back() {
            db = d;
        }
    }
    if txn.dirty {
        flush_txn(&mut txn, target, ck, db)?;
    }
    target
        .drain(|m, r| {
            if let Some(off) = check_txn(m, &r)? {
                status.set_applied(off);
            }
            Ok(())
        })
        .await?;
    Err(e)
}

/// Applies the command stream, one checkpointed transaction at a time.
async fn stream(
    cfg: &SyncConfig,
    status: &SyncStatus,
    mut link: Source,
    mut target: Target,
    replid: String,
    start: i64,
    start_db: u32,
) -> Result<(), SyncError> {
    status.set_state(SyncState::Streaming);
    // The socket is always read; what the target can't take yet waits in the spool.
    let mut spool = Spool::new(cfg.spool_dir.clone(), SPOOL_MEMORY, cfg.spool_max_bytes);
    let mut received = start + link.rbuf().len() as i64;
    spool
        .push(link.rbuf().split().freeze())
        .map_err(spool_err)?;
    status.set_received(received);
    let front = Front::new(cfg.forward_publish, link.until());
    let mut pbuf = BytesMut::new();
    let mut parser = RequestParser::new(Limits::default());
    let mut offset = start;
    let mut db = start_db;
    let mut in_multi = false;
    // The point in time was reached (files): nothing more is read or applied.
    let mut until_reached = false;
    let mut txn = Txn::new(db, offset);
    let mut ack = tokio::time::interval(Duration::from_secs(1));
    ack.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let ckdb = cfg.checkpoint_db.to_string();
    let ck = TxnCheckpoint {
        replid: &replid,
        ckdb: &ckdb,
        key: cfg.checkpoint_key(),
    };
    loop {
        // Take stream bytes from the spool while the target has room for more.
        while !until_reached && target.inflight_bytes() < cfg.max_inflight_bytes {
            match spool.pop(256 * 1024).map_err(spool_err)? {
                Some(c) => pbuf.extend_from_slice(&c),
                None => break,
            }
            // Everything complete joins the transaction.
            loop {
                let frame = match parser.parse(&pbuf) {
                    Ok(Some(f)) => f,
                    Ok(None) => break,
                    Err(e) => {
                        let e = bad_stream(&link, offset, e);
                        return stop_at(e, txn, in_multi, &mut target, &ck, db, status).await;
                    }
                };
                let len = frame.len;
                let args = parser.args();
                let arg =
                    |i: usize| -> &[u8] { args.get(i).map(|r| &pbuf[r.clone()]).unwrap_or(&[]) };
                let step = front.step(&parser, frame.kind, &pbuf, offset + len as i64, status);
                match step {
                    Step::Stop => {
                        until_reached = true;
                        break;
                    }
                    Step::Invalid => {
                        let e = bad_stream(&link, offset, "not a command");
                        return stop_at(e, txn, in_multi, &mut target, &ck, db, status).await;
                    }
                    _ => {}
                }
                offset += len as i64;
                match step {
                    Step::GetAck => link.ack(status.applied()).await?,
                    Step::Multi => {
                        in_multi = true;
                        txn.mark(db);
                    }
                    Step::Exec => {
                        in_multi = false;
                        txn.multi_mark = None;
                    }
                    Step::Apply | Step::Select(_) => {
                        let refused = cfg
                            .scope
                            .as_ref()
                            .and_then(|s| s.check(&arg(0).to_ascii_lowercase(), &pbuf, args).err());
                        if let Some(e) = refused {
                            // Everything before it is applied, then the link stops.
                            if !in_multi && txn.dirty {
                                flush_txn(&mut txn, &mut target, &ck, db)?;
                            }
                            target
                                .drain(|m, r| {
                                    if let Some(off) = check_txn(m, &r)? {
                                        status.set_applied(off);
                                    }
                                    Ok(())
                                })
                                .await?;
                            return Err(e);
                        }
                        if let Step::Select(n) = step {
                            db = n;
                        }
                        if txn.count == 0 {
                            let sdb = cfg.db_map.target(txn.start_db).to_string();
                            resp::encode::command(&mut txn.buf, [&b"MULTI"[..]].into_iter());
                            resp::encode::command(
                                &mut txn.buf,
                                [&b"SELECT"[..], sdb.as_bytes()].into_iter(),
                            );
                        }
                        if matches!(step, Step::Select(_)) && !cfg.db_map.0.is_empty() {
                            // The stream's db, renumbered for the target.
                            let t = cfg.db_map.target(db).to_string();
                            resp::encode::command(
                                &mut txn.buf,
                                [&b"SELECT"[..], t.as_bytes()].into_iter(),
                            );
                        } else {
                            txn.buf.extend_from_slice(&pbuf[..len]);
                        }
                        txn.cmds.extend_from_slice(&pbuf[..len]);
                        txn.count += 1;
                        SyncStatus::add(&status.stream_commands, 1);
                    }
                    Step::Skip | Step::Stop | Step::Invalid => {}
                }
                txn.end_offset = offset;
                txn.dirty = true;
                pbuf.advance(len);
                if !in_multi && txn.buf.len() >= cfg.max_txn_bytes {
                    flush_txn(&mut txn, &mut target, &ck, db)?;
                }
            }
            if !in_multi && txn.dirty {
                flush_txn(&mut txn, &mut target, &ck, db)?;
            }
        }
        if !in_multi && txn.dirty {
            flush_txn(&mut txn, &mut target, &ck, db)?;
        }
        // Files end: what is complete is applied, the rest reported.
        if until_reached || (link.at_end() && spool.is_empty()) {
            if in_multi {
                if let Some(d) = txn.roll_back() {
                    db = d;
                }
            }
            if txn.dirty {
                flush_txn(&mut txn, &mut target, &ck, db)?;
            }
            target
                .drain(|m, r| {
                    if let Some(off) = check_txn(m, &r)? {
                        status.set_applied(off);
                    }
                    Ok(())
                })
                .await?;
            if !until_reached {
                warn_truncated(&link, offset, pbuf.len(), in_multi);
            }
            return Ok(());
        }
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
            done = target.next_done() => {
                let (meta, replies) = done?;
                if let Some(off) = check_txn(meta, &replies)? {
                    status.set_applied(off);
                    SyncStatus::add(&status.commands_applied, 1);
                }
            }
            _ = ack.tick() => link.ack(status.applied()).await?,
        }
    }
}

/// Stream bytes kept in memory before the spool goes to disk.
const SPOOL_MEMORY: usize = 16 * 1024 * 1024;
/// RDB payload kept in memory during the full load before the spool goes to disk (small:
/// the load's own windows already hold up to 16 MB).
const PAYLOAD_SPOOL_MEMORY: usize = 4 * 1024 * 1024;

fn spool_err(e: std::io::Error) -> SyncError {
    SyncError::Config(format!("spooling the stream to disk: {e}"))
}

/// What every checkpoint of one stream names: the source's replication id, the db and the
/// key of the checkpoint hash.
struct TxnCheckpoint<'a> {
    replid: &'a str,
    ckdb: &'a str,
    key: &'a [u8],
}

/// Sends the transaction: MULTI, SELECT, commands, SELECT, checkpoint, EXEC.
fn flush_txn(
    txn: &mut Txn,
    target: &mut Target,
    ck: &TxnCheckpoint<'_>,
    db: u32,
) -> Result<(), SyncError> {
    if txn.count == 0 {
        // Nothing but the checkpoint: the db the transaction starts in does not matter.
        let sdb = "0";
        resp::encode::command(&mut txn.buf, [&b"MULTI"[..]].into_iter());
        resp::encode::command(&mut txn.buf, [&b"SELECT"[..], sdb.as_bytes()].into_iter());
    }
    resp::encode::command(
        &mut txn.buf,
        [&b"SELECT"[..], ck.ckdb.as_bytes()].into_iter(),
    );
    Checkpoint {
        state: "streaming".into(),
        replid: ck.replid.to_string(),
        offset: txn.end_offset,
        db,
    }
    .hset(ck.key, &mut txn.buf);
    resp::encode::command(&mut txn.buf, [&b"EXEC"[..]].into_iter());
    let count = txn.count + 5;
    let meta = Meta::Txn {
        end_offset: txn.end_offset,
        cmds: txn.cmds.split().freeze(),
    };
    target.send(txn.buf.split().freeze(), count, meta)?;
    *txn = Txn::new(db, txn.end_offset);
    Ok(())
}

/// Checks a transaction's replies; its end offset when applied.
fn check_txn(meta: Meta, replies: &[u8]) -> Result<Option<i64>, SyncError> {
    let Meta::Txn { end_offset, cmds } = meta else {
        return Ok(None);
    };
    let all = frames(replies)?;
    let Some((exec, queued)) = all.split_last() else {
        return Err(SyncError::Target("empty transaction reply".into()));
    };
    // queued: MULTI's +OK, then +QUEUED for SELECT, each command, SELECT, HSET.
    for (i, f) in queued.iter().enumerate() {
        if let Some(e) = error_text(f) {
            if transient(&e) {
                return Err(SyncError::Target(e));
            }
            let (command, key) = nth_command(&cmds, i.wrapping_sub(2));
            return Err(SyncError::Apply {
                command,
                key,
                offset: end_offset,
                reply: e,
            });
        }
    }
    if let Some(e) = error_text(exec) {
        if transient(&e) {
            return Err(SyncError::Target(e));
        }
        return Err(SyncError::Apply {
            command: "EXEC".into(),
            key: String::new(),
            offset: end_offset,
            reply: e,
        });
    }
    let Some(results) = array_elements(exec) else {
        return Err(SyncError::Target(
            "the target aborted a transaction (EXEC returned nil)".into(),
        ));
    };
    for (i, f) in results.iter().enumerate() {
        if let Some(e) = error_text(f) {
            let (command, key) = nth_command(&cmds, i.wrapping_sub(1));
            return Err(SyncError::Apply {
                command,
                key,
                offset: end_offset,
                reply: e,
            });
        }
    }
    Ok(Some(end_offset))
}

/// Name and first key of the i-th raw command (for messages; never values).
pub(crate) fn nth_command(cmds: &[u8], i: usize) -> (String, String) {
    let mut parser = RequestParser::new(Limits::default());
    let mut pos = 0;
    let mut n = 0;
    while pos < cmds.len() {
        let Ok(Some(f)) = parser.parse(&cmds[pos..]) else {
            break;
        };
        if n == i {
            let args = parser.args();
            let base = &cmds[pos..];
            let name = args
                .first()
                .map(|r| String::from_utf8_lossy(&base[r.clone()]).to_uppercase())
                .unwrap_or_default();
            let key = resp::command::lookup(name.as_bytes())
                .and_then(|info| {
                    let mut keys = Vec::new();
                    resp::command::key_positions(
                        info,
                        args.len(),
                        |j| args.get(j).map(|r| &base[r.clone()]).unwrap_or(&[]),
                        &mut keys,
                    );
                    keys.first()
                        .and_then(|&k| args.get(k))
                        .map(|r| show_key(&base[r.clone()]))
                })
                .unwrap_or_default();
            return (name, key);
        }
        pos += f.len;
        n += 1;
    }
    ("(unknown)".into(), String::new())
}
