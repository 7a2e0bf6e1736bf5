//! The SCAN copy: a source for a Redis that refuses SYNC/PSYNC (managed services). It reads
//! keys with SCAN + DUMP + PEXPIRETIME (PTTL before 7.0) and gives the sinks what every
//! source gives them:
//!
//! - the snapshot: an RDB built from the DUMP payloads (a DUMP payload is an RDB value
//!   with the RDB version and a CRC after it), so the full load, its re-encoder for older
//!   targets, its pieces for big values and its cluster routing are the same as for a
//!   replica's RDB;
//! - the stream: `RESTORE key <abs ms> <payload> ABSTTL REPLACE` (or `DEL`) for each key
//!   the proxy saw written since it was copied ([`crate::tracking`]), FLUSHDB/FLUSHALL for
//!   the barriers (the dbs then copied again), as one more command stream whose offsets
//!   are the bytes made so far.
//!
//! The copy runs on a task of its own that feeds two channels, so that reading the stream
//! stays cancel-safe for the sinks' `select!`. The cutover's last copy is the tracker's
//! fence: answered with the stream offset once nothing dirty is left.
//!
//! A restart copies everything again: writes made while cutover was down were not seen.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use cluster::{Connector, SessionSetup};
use tokio::sync::mpsc;

use super::nodes::{bulk, Conn, Nodes, Pacer, Read};
use crate::rdb::crc64::crc64;
use crate::reply::array_elements;
use crate::tracking::{Barrier, Tracker};
use crate::SyncError;

/// What a SCAN copy is given.
#[derive(Debug, Clone)]
pub struct ScanSpec {
    pub source: Arc<Connector>,
    pub tracker: Arc<Tracker>,
    /// Keys read per second at most (0: no limit), so the source's latency stays low.
    pub max_ops: u64,
    /// The source is a Redis Cluster: every master is scanned, and each key read from the
    /// master of its slot (the slot map read when the copy starts).
    pub cluster: bool,
    /// The target, asked its version: when it is older than the source, the rounds
    /// re-create values with ordinary commands instead of RESTORE (the first pass's load
    /// probes it itself).
    pub target: Option<Arc<Connector>>,
}

/// Keys asked per SCAN call, and read per pipeline.
const SCAN_COUNT: usize = 512;
/// Bytes gathered before they go to the sink.
const CHUNK: usize = 64 * 1024;

/// The opened SCAN copy.
pub struct Scan {
    pub rbuf: BytesMut,
    rdb: Option<mpsc::Receiver<Result<Bytes, SyncError>>>,
    stream: mpsc::Receiver<Result<Bytes, SyncError>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Scan {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Scan {
    /// Starts the copy: tracking on, then the first pass. The id names this copy only (a
    /// later run can't continue it).
    pub async fn open(spec: &ScanSpec) -> Result<(Scan, String), SyncError> {
        // Reach the source first: a bad address or a refused DUMP fails here, clearly.
        let nodes = Nodes::connect(&spec.source, spec.cluster).await?;
        spec.tracker.enable();
        let (rdb_tx, rdb_rx) = mpsc::channel(16);
        let (stream_tx, stream_rx) = mpsc::channel(16);
        let copier = Copier {
            nodes,
            spec: spec.clone(),
            pacer: Pacer::new(spec.max_ops),
            caps: None,
        };
        // Keyspace notifications, where the source sends them: writers that bypass the
        // proxy are tracked too.
        let events: Vec<_> = copier
            .nodes
            .connectors()
            .into_iter()
            .map(|c| tokio::spawn(watch_events(c, spec.tracker.clone())))
            .collect();
        let copy = tokio::spawn(copier.run(rdb_tx, stream_tx));
        let task = tokio::spawn(async move {
            // Aborting this aborts the copy too (a dropped JoinHandle does not: abort
            // them explicitly when this task is aborted, through a guard).
            let _guard = AbortAll(events);
            let _copy = AbortOnDrop(copy);
            std::future::pending::<()>().await;
        });
        let id = format!(
            "{:016x}{:024x}",
            std::process::id() as u64 ^ 0x5ca1_ab1e,
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        );
        Ok((
            Scan {
                rbuf: BytesMut::new(),
                rdb: Some(rdb_rx),
                stream: stream_rx,
                task,
            },
            id[..40].to_string(),
        ))
    }

    /// Hands the first pass's RDB to the full load's reader.
    pub async fn feed(
        &mut self,
        tx: mpsc::Sender<Bytes>,
        loaded: &std::sync::atomic::AtomicU64,
    ) -> Result<(), SyncError> {
        let Some(mut rx) = self.rdb.take() else {
            return Err(SyncError::Config(
                "internal: the SCAN copy's RDB was read".into(),
            ));
        };
        while let Some(chunk) = rx.recv().await {
            let chunk = chunk?;
            loaded.fetch_add(chunk.len() as u64, Ordering::Relaxed);
            if tx.send(chunk).await.is_err() {
                break;
            }
        }
        Ok(())
    }

    /// Waits for more of the stream (cancel-safe).
    pub async fn fill(&mut self) -> Result<usize, SyncError> {
        match self.stream.recv().await {
            Some(Ok(b)) => {
                self.rbuf.extend_from_slice(&b);
                Ok(b.len())
            }
            Some(Err(e)) => Err(e),
            None => Err(SyncError::Source("the SCAN copy stopped".into())),
        }
    }
}

/// The first pass as an RDB: header (the payloads' RDB version), then per key its db,
/// expiry, type, name and value bytes, then EOF and the CRC64 of it all.
pub struct RdbOut {
    buf: BytesMut,
    crc: u64,
    version: Option<u16>,
    db: Option<u32>,
}

impl RdbOut {
    #[allow(clippy::new_without_default)]
    pub fn new() -> RdbOut {
        RdbOut {
            buf: BytesMut::with_capacity(CHUNK * 2),
            crc: 0,
            version: None,
            db: None,
        }
    }

    fn header(&mut self, version: u16) {
        self.buf
            .extend_from_slice(format!("REDIS{version:04}").as_bytes());
        self.version = Some(version);
    }

    /// Adds the function libraries of a `FUNCTION DUMP` payload (a run of FUNCTION2
    /// records, then the RDB version and a CRC), before any key.
    pub fn functions(&mut self, payload: &[u8]) -> Result<(), SyncError> {
        let n = payload.len();
        if n < 10 {
            return Err(SyncError::Source("FUNCTION DUMP: payload too short".into()));
        }
        if n == 10 {
            return Ok(());
        }
        let version = u16::from_le_bytes([payload[n - 10], payload[n - 9]]);
        if self.version.is_none() {
            self.header(version);
        }
        if payload.first() != Some(&0xF5) {
            return Err(SyncError::Source(
                "FUNCTION DUMP: not a payload of function libraries (RDB 10+)".into(),
            ));
        }
        self.buf.extend_from_slice(&payload[..n - 10]);
        Ok(())
    }

    /// Adds a key from its DUMP payload.
    pub fn key(
        &mut self,
        db: u32,
        key: &[u8],
        payload: &[u8],
        expire_ms: i64,
    ) -> Result<(), SyncError> {
        let n = payload.len();
        if n < 11 {
            return Err(SyncError::Source(format!(
                "DUMP {}: payload too short",
                crate::reply::show_key(key)
            )));
        }
        let version = u16::from_le_bytes([payload[n - 10], payload[n - 9]]);
        match self.version {
            None => self.header(version),
            Some(v) if v != version => {
                return Err(SyncError::Source(format!(
                    "DUMP payloads of two RDB versions ({v} and {version})"
                )))
            }
            Some(_) => {}
        }
        if self.db != Some(db) {
            self.buf.extend_from_slice(&[0xFE]);
            write_len(&mut self.buf, u64::from(db));
            self.db = Some(db);
        }
        if expire_ms > 0 {
            self.buf.extend_from_slice(&[0xFC]);
            self.buf
                .extend_from_slice(&(expire_ms as u64).to_le_bytes());
        }
        self.buf.extend_from_slice(&payload[..1]);
        write_len(&mut self.buf, key.len() as u64);
        self.buf.extend_from_slice(key);
        self.buf.extend_from_slice(&payload[1..n - 10]);
        Ok(())
    }

    /// Bytes written since the last take.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether nothing was written since the last take.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// What was written since the last take.
    pub fn take(&mut self) -> Bytes {
        self.crc = crc64(self.crc, &self.buf);
        self.buf.split().freeze()
    }

    /// The end: EOF and checksum (an empty source: an empty RDB of version 9).
    pub fn finish(&mut self) -> Bytes {
        if self.version.is_none() {
            self.header(9);
        }
        self.buf.extend_from_slice(&[0xFF]);
        let crc = crc64(self.crc, &self.buf);
        self.buf.extend_from_slice(&crc.to_le_bytes());
        self.buf.split().freeze()
    }
}

/// RDB length encoding.
fn write_len(out: &mut BytesMut, n: u64) {
    if n < 64 {
        out.extend_from_slice(&[n as u8]);
    } else if n < 16384 {
        out.extend_from_slice(&[0x40 | (n >> 8) as u8, n as u8]);
    } else if n <= u64::from(u32::MAX) {
        out.extend_from_slice(&[0x80]);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    } else {
        out.extend_from_slice(&[0x81]);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

/// The stream: commands that make the target's copy of a key what the source holds.
struct StreamOut {
    buf: BytesMut,
    db: Option<u32>,
    /// Stream offset of the end of what was handed over.
    produced: i64,
}

impl StreamOut {
    fn select(&mut self, db: u32) {
        if self.db != Some(db) {
            let d = db.to_string();
            resp::encode::command(&mut self.buf, [&b"SELECT"[..], d.as_bytes()].into_iter());
            self.db = Some(db);
        }
    }
    /// The commands that make the target's `key` what `payload` holds: RESTORE, or, for a
    /// target that can't take the source's payloads (`caps`), the value decoded and
    /// re-created with ordinary commands (as the full load does for older targets).
    fn value(
        &mut self,
        db: u32,
        key: &Bytes,
        payload: &[u8],
        expire_ms: i64,
        caps: Option<crate::reencode::TargetCaps>,
    ) -> Result<(), SyncError> {
        let Some(caps) = caps.filter(|c| !c.restore) else {
            self.restore(db, key, payload, expire_ms);
            return Ok(());
        };
        let n = payload.len();
        if n < 11 {
            return Err(SyncError::Source(format!(
                "DUMP {}: payload too short",
                crate::reply::show_key(key)
            )));
        }
        let entry = crate::rdb::KeyEntry {
            db,
            key: key.clone(),
            expire_ms: (expire_ms > 0).then_some(expire_ms),
            value_type: payload[0],
            value: Bytes::copy_from_slice(&payload[1..n - 10]),
        };
        let decoded = crate::rdb::decode::decode_entry(&entry)?;
        self.select(db);
        let mut sink = BufSink(&mut self.buf);
        crate::reencode::write_commands(&entry, &decoded, caps, &mut sink)
    }

    fn restore(&mut self, db: u32, key: &[u8], payload: &[u8], expire_ms: i64) {
        self.select(db);
        let t = expire_ms.max(0).to_string();
        if expire_ms > 0 {
            resp::encode::command(
                &mut self.buf,
                [
                    &b"RESTORE"[..],
                    key,
                    t.as_bytes(),
                    payload,
                    b"ABSTTL",
                    b"REPLACE",
                ]
                .into_iter(),
            );
        } else {
            resp::encode::command(
                &mut self.buf,
                [&b"RESTORE"[..], key, b"0", payload, b"REPLACE"].into_iter(),
            );
        }
    }
    fn del(&mut self, db: u32, key: &[u8]) {
        self.select(db);
        resp::encode::command(&mut self.buf, [&b"DEL"[..], key].into_iter());
    }
    fn barrier(&mut self, b: Barrier) {
        match b {
            Barrier::Flush(None) => {
                resp::encode::command(&mut self.buf, [&b"FLUSHALL"[..]].into_iter())
            }
            Barrier::Flush(Some(d)) => {
                self.select(d);
                resp::encode::command(&mut self.buf, [&b"FLUSHDB"[..]].into_iter());
            }
            Barrier::Swap(a, b) => {
                self.barrier(Barrier::Flush(Some(a)));
                self.barrier(Barrier::Flush(Some(b)));
            }
        }
    }
    fn take(&mut self) -> Option<Bytes> {
        if self.buf.is_empty() {
            return None;
        }
        self.produced += self.buf.len() as i64;
        Some(self.buf.split().freeze())
    }
}

/// Marks the keys a node's keyspace notifications name (`__keyevent@<db>__:<event>`, the
/// key as the message), as the proxy marks its clients' writes: an event is sent after its
/// write ran, so the rule holds. Notifications off (nothing arrives) or refused: nothing to
/// do. A subscription that drops after events came may have lost some: everything is
/// copied again (a rescan). Aborted with the copy.
async fn watch_events(node: Arc<Connector>, tracker: Arc<Tracker>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut heard = false;
    let mut backoff = Duration::from_millis(100);
    loop {
        let Ok(mut conn) = node.connect(&SessionSetup::default()).await else {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
            continue;
        };
        let mut out = BytesMut::new();
        resp::encode::command(
            &mut out,
            [&b"PSUBSCRIBE"[..], b"__keyevent@*__:*"].into_iter(),
        );
        if conn.write_all(&out).await.is_err() {
            continue;
        }
        let mut buf = BytesMut::with_capacity(16 * 1024);
        let mut scanner = resp::ReplyScanner::default();
        'read: loop {
            while let Ok(Some(n)) = scanner.scan(&buf) {
                let frame = buf.split_to(n);
                if frame.first() == Some(&b'-') {
                    tracing::info!(
                        node = %node.addr(),
                        reply = %String::from_utf8_lossy(&frame).trim_end(),
                        "the source refuses PSUBSCRIBE: keyspace notifications are not used"
                    );
                    return;
                }
                let Some(parts) = array_elements(&frame) else {
                    continue;
                };
                // pmessage, pattern, channel, key.
                let [kind, _, channel, key] = parts.as_slice() else {
                    continue;
                };
                if bulk(kind) != Some(&b"pmessage"[..]) {
                    continue;
                }
                let (Some(channel), Some(key)) = (bulk(channel), bulk(key)) else {
                    continue;
                };
                let db = channel
                    .strip_prefix(&b"__keyevent@"[..])
                    .and_then(|rest| rest.split(|&c| c == b'_').next())
                    .and_then(|d| std::str::from_utf8(d).ok()?.parse::<u32>().ok());
                if let Some(db) = db {
                    if !key.starts_with(crate::checkpoint::OWN_PREFIX) {
                        heard = true;
                        tracker.mark(db, key);
                    }
                }
            }
            match conn.read_buf(&mut buf).await {
                Ok(n) if n > 0 => {}
                _ => break 'read,
            }
        }
        if heard {
            tracing::warn!(node = %node.addr(), "the keyspace notification subscription dropped: events may be lost, every key is copied again");
            tracker.rescan_all();
        }
        tokio::time::sleep(backoff).await;
    }
}

/// Aborts the tasks it holds when dropped.
struct AbortAll(Vec<tokio::task::JoinHandle<()>>);

impl Drop for AbortAll {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Re-created commands go straight into the stream's buffer.
struct BufSink<'a>(&'a mut BytesMut);

impl crate::reencode::Sink for BufSink<'_> {
    fn buf(&mut self) -> &mut BytesMut {
        self.0
    }
    fn done(&mut self, _name: &'static str, _key: &Bytes) -> Result<(), SyncError> {
        Ok(())
    }
}

/// A db of a node being copied again (after a barrier or an overflow), from its cursor.
struct Rescan {
    db: u32,
    node: usize,
    cursor: Bytes,
}

impl Rescan {
    fn all(dbs: &[u32], nodes: usize) -> impl Iterator<Item = Rescan> + '_ {
        dbs.iter().flat_map(move |&db| {
            (0..nodes).map(move |node| Rescan {
                db,
                node,
                cursor: Bytes::from_static(b"0"),
            })
        })
    }
}

struct Copier {
    nodes: Nodes,
    spec: ScanSpec,
    pacer: Pacer,
    /// Set when the target is older than the source: what it can take instead of RESTORE.
    caps: Option<crate::reencode::TargetCaps>,
}

type Tx = mpsc::Sender<Result<Bytes, SyncError>>;

impl Copier {
    async fn run(mut self, rdb_tx: Tx, stream_tx: Tx) {
        let r = self.first_pass(&rdb_tx).await;
        if let Err(e) = r {
            let _ = rdb_tx.send(Err(e)).await;
            return;
        }
        drop(rdb_tx);
        if let Err(e) = self.rounds(&stream_tx).await {
            let _ = stream_tx.send(Err(e)).await;
        }
    }

    fn progress(&self) -> &crate::tracking::ScanProgress {
        &self.spec.tracker.progress
    }

    /// Every key of every db, as an RDB.
    async fn first_pass(&mut self, tx: &Tx) -> Result<(), SyncError> {
        let started = Instant::now();
        let tracker = self.spec.tracker.clone();
        let (dbs, total) = self.nodes.keyspace().await?;
        let p = self.progress();
        p.set_state(crate::tracking::ScanState::Copy);
        p.keys_total.store(total, Ordering::Relaxed);
        p.keys_copied.store(0, Ordering::Relaxed);
        tracing::info!(keys = total, dbs = dbs.len(), "SCAN copy: first pass");
        let mut out = RdbOut::new();
        self.nodes.conns[0].functions(&mut out).await?;
        for r in Rescan::all(&dbs, self.nodes.conns.len()) {
            let (db, node) = (r.db, r.node);
            let mut cursor = r.cursor;
            loop {
                let (next, keys) = self.nodes.conns[node].scan(db, &cursor).await?;
                if !keys.is_empty() {
                    for k in &keys {
                        tracker.clear(db, k);
                    }
                    self.pacer.take(keys.len()).await;
                    let reads = self.nodes.conns[node].read(db, &keys).await?;
                    for (k, r) in keys.iter().zip(reads) {
                        match r {
                            // Deleted meanwhile, maybe after an earlier visit copied it:
                            // the rounds delete it on the target.
                            Read::Gone => tracker.mark(db, k),
                            Read::Value { payload, expire_ms } => {
                                out.key(db, k, &payload, expire_ms)?
                            }
                        }
                    }
                    self.progress()
                        .keys_copied
                        .fetch_add(keys.len() as u64, Ordering::Relaxed);
                    if out.len() >= CHUNK && tx.send(Ok(out.take())).await.is_err() {
                        return Ok(());
                    }
                }
                if &next[..] == b"0" {
                    break;
                }
                cursor = next;
            }
        }
        let last = out.take();
        let end = out.finish();
        let _ = tx.send(Ok(last)).await;
        let _ = tx.send(Ok(end)).await;
        tracing::info!(
            keys = self.progress().keys_copied.load(Ordering::Relaxed),
            secs = started.elapsed().as_secs_f64(),
            dirty = tracker.dirty_keys(),
            "SCAN copy: first pass read; copying what changed since, in rounds"
        );
        Ok(())
    }

    /// Whether the target is older than the source (then RESTORE payloads are refused
    /// there): what it can take instead. None: RESTORE.
    async fn target_caps(&self) -> Option<crate::reencode::TargetCaps> {
        let target = self.spec.target.as_ref()?;
        let mut c = target.connect(&SessionSetup::default()).await.ok()?;
        let r = c.request(&[&[b"INFO", b"server"]]).await.ok()?;
        let tv = super::nodes::version_of(&String::from_utf8_lossy(&r[0]));
        let sv = self.nodes.conns.first()?.version;
        (tv < sv).then(|| {
            tracing::info!(
                source = %format!("{}.{}", sv.0, sv.1),
                target = %format!("{}.{}", tv.0, tv.1),
                "SCAN copy: the target is older than the source; the rounds re-create values with ordinary commands"
            );
            crate::reencode::TargetCaps {
                restore: false,
                stream_meta: tv >= (7, 0),
                create_consumer: tv >= (6, 2),
                field_ttl: tv >= (7, 4),
            }
        })
    }

    /// Then, for ever: barriers, rescans, dirty keys; the fence once nothing is left.
    async fn rounds(&mut self, tx: &Tx) -> Result<(), SyncError> {
        self.caps = self.target_caps().await;
        let tracker = self.spec.tracker.clone();
        self.progress()
            .set_state(crate::tracking::ScanState::Rounds);
        let mut out = StreamOut {
            buf: BytesMut::new(),
            db: None,
            produced: 0,
        };
        let mut rescans: std::collections::VecDeque<Rescan> = Default::default();
        let mut batch: Vec<(u32, Bytes)> = Vec::with_capacity(SCAN_COUNT);
        let mut in_round = false;
        loop {
            for b in tracker.take_barriers() {
                out.barrier(b);
                let dbs = match b {
                    Barrier::Flush(Some(d)) => vec![d],
                    Barrier::Swap(a, b) => vec![a, b],
                    Barrier::Flush(None) => self.nodes.keyspace().await?.0,
                };
                rescans.retain(|r| !dbs.contains(&r.db));
                rescans.extend(Rescan::all(&dbs, self.nodes.conns.len()));
            }
            if tracker.take_rescan() {
                rescans.clear();
                let (dbs, _) = self.nodes.keyspace().await?;
                rescans.extend(Rescan::all(&dbs, self.nodes.conns.len()));
            }
            batch.clear();
            if let Some(r) = rescans.front_mut() {
                let db = r.db;
                let (next, keys) = self.nodes.conns[r.node].scan(db, &r.cursor).await?;
                if &next[..] == b"0" {
                    rescans.pop_front();
                } else {
                    r.cursor = next;
                }
                for k in keys {
                    tracker.clear(db, &k);
                    batch.push((db, k));
                }
            } else {
                tracker.take(SCAN_COUNT, &mut batch);
            }
            if batch.is_empty() && rescans.is_empty() {
                if let Some(b) = out.take() {
                    if tx.send(Ok(b)).await.is_err() {
                        return Ok(());
                    }
                }
                if in_round {
                    in_round = false;
                    self.progress().rounds.fetch_add(1, Ordering::Relaxed);
                }
                if tracker.fence_wanted() && tracker.dirty_keys() == 0 && !tracker.rescan_owed() {
                    tracker.answer_fences(out.produced);
                }
                tracker.wait(Duration::from_millis(100)).await;
                continue;
            }
            in_round = true;
            self.copy(&batch, &mut out).await?;
            if out.buf.len() >= CHUNK {
                if let Some(b) = out.take() {
                    if tx.send(Ok(b)).await.is_err() {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// Reads `keys` (each from its db and node) and writes their commands.
    async fn copy(&mut self, keys: &[(u32, Bytes)], out: &mut StreamOut) -> Result<(), SyncError> {
        // The cutover's last copy runs while the clients wait: at full speed.
        if !self.spec.tracker.fence_wanted() {
            self.pacer.take(keys.len()).await;
        }
        let mut keys: Vec<(u32, usize, &Bytes)> = keys
            .iter()
            .map(|(db, k)| (*db, self.nodes.of(k), k))
            .collect();
        keys.sort_unstable_by_key(|(db, node, _)| (*db, *node));
        let mut i = 0;
        while i < keys.len() {
            let (db, node) = (keys[i].0, keys[i].1);
            let j = keys[i..]
                .iter()
                .position(|(d, n, _)| (*d, *n) != (db, node))
                .map_or(keys.len(), |p| i + p);
            let names: Vec<Bytes> = keys[i..j].iter().map(|(_, _, k)| (*k).clone()).collect();
            let reads = self.nodes.conns[node].read(db, &names).await?;
            for (k, r) in names.iter().zip(reads) {
                match r {
                    Read::Gone => out.del(db, k),
                    Read::Value { payload, expire_ms } => {
                        out.value(db, k, &payload, expire_ms, self.caps)?
                    }
                }
            }
            self.progress()
                .keys_recopied
                .fetch_add(names.len() as u64, Ordering::Relaxed);
            i = j;
        }
        Ok(())
    }
}

/// Reads every key of `source` into an RDB file's bytes, handed to `sink` chunk by chunk
/// (`cutover dump --source-mode scan`). Returns how many keys it holds.
pub async fn dump_rdb(
    source: &Arc<Connector>,
    max_ops: u64,
    mut sink: impl FnMut(&[u8]) -> Result<(), SyncError>,
) -> Result<u64, SyncError> {
    let mut conn = Conn::connect(source).await?;
    let mut pacer = Pacer::new(max_ops);
    let (dbs, _) = conn.keyspace().await?;
    let mut out = RdbOut::new();
    conn.functions(&mut out).await?;
    let mut keys_written = 0u64;
    for db in dbs {
        let mut cursor = Bytes::from_static(b"0");
        loop {
            let (next, keys) = conn.scan(db, &cursor).await?;
            pacer.take(keys.len()).await;
            let reads = conn.read(db, &keys).await?;
            for (k, r) in keys.iter().zip(reads) {
                if let Read::Value { payload, expire_ms } = r {
                    out.key(db, k, &payload, expire_ms)?;
                    keys_written += 1;
                }
            }
            if out.len() >= CHUNK {
                sink(&out.take())?;
            }
            if &next[..] == b"0" {
                break;
            }
            cursor = next;
        }
    }
    sink(&out.take())?;
    sink(&out.finish())?;
    Ok(keys_written)
}

#[cfg(test)]
mod tests;
