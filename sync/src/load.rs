//! The full load's encoder, run on the RDB reader's thread: RDB events become batches of
//! target commands. Each key becomes `RESTORE key <abs ms> <payload> ABSTTL REPLACE`, the
//! payload built straight from the value's bytes (type + value + RDB version + CRC64), so
//! values are never decoded when the target can take the source's format.
//!
//! When it can't (an older Redis: the async side probes the target when the RDB header
//! arrives, see [`LoadMsg::Probe`]), and for values bigger than `big_value_bytes`, values
//! are decoded and re-created with ordinary commands, in chunks ([`crate::reencode`]).
//!
//! Memory stays bounded whatever the value sizes: the reader hands values above
//! `big_value_bytes` out in pieces (strings, lists, sets, sorted sets, hashes, streams; see
//! [`RdbReader::set_value_limit`]), each piece's commands are written at once, and batches
//! are shipped as they fill, so a big value never sits whole in memory here or in the
//! reader. Only the single-blob encodings (listpacks, ziplists, intsets: bounded by the
//! source's settings) and module values come whole.

use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::{Bytes, BytesMut};
use tokio::sync::{mpsc, oneshot};

use crate::rdb::{decode, Event, KeyEntry, RdbError, RdbReader};
use crate::reencode::{self, PartWriter, Sink, TargetCaps};
use crate::SyncError;

/// What the encoder sends to the async side.
#[derive(Debug)]
pub enum LoadMsg {
    Batch(LoadBatch),
    /// Sent at the RDB header, before any batch: probe the target (with
    /// [`reencode::probe_commands`]) and answer what it can take. The encoder waits.
    Probe {
        rdb_version: u16,
        reply: oneshot::Sender<TargetCaps>,
    },
}

/// Commands for the target, ready to send.
#[derive(Debug)]
pub struct LoadBatch {
    pub data: Bytes,
    pub count: u32,
    /// (command, key) per command, to name a key the target refuses.
    pub names: Vec<(&'static str, Bytes)>,
    /// Where each command ends in `data` (a cluster target routes them one by one).
    pub ends: Vec<usize>,
    /// The db the command stream will start in (AUX `repl-stream-db`), once known.
    pub stream_db: Option<u32>,
}

const BATCH_BYTES: usize = 256 * 1024;

struct Builder {
    buf: BytesMut,
    names: Vec<(&'static str, Bytes)>,
    ends: Vec<usize>,
    stream_db: Option<u32>,
    /// Strings without a TTL waiting to go as one MSET (keys and values as RESP bulks),
    /// how many, and the first key (to name it if the target refuses): one command for a
    /// run of them instead of one RESTORE each, which the target runs several times faster.
    /// One server only (a cluster takes MSET within one slot).
    mset: BytesMut,
    mset_pairs: u32,
    mset_first: Bytes,
}

/// A run of strings goes out as one MSET at this many keys or bytes.
const MSET_MAX_PAIRS: u32 = 512;
const MSET_MAX_BYTES: usize = 128 * 1024;

impl Builder {
    fn take(&mut self) -> LoadBatch {
        LoadBatch {
            data: self.buf.split().freeze(),
            count: self.names.len() as u32,
            names: std::mem::take(&mut self.names),
            ends: std::mem::take(&mut self.ends),
            stream_db: self.stream_db.take(),
        }
    }

    /// A command was just written to `buf`.
    fn mark(&mut self, name: &'static str, key: Bytes) {
        self.names.push((name, key));
        self.ends.push(self.buf.len());
    }

    /// A string key without TTL joins the MSET run.
    fn push_string(&mut self, key: &Bytes, value: &[u8]) {
        if self.mset_pairs == 0 {
            self.mset_first = key.clone();
        }
        for b in [&key[..], value] {
            self.mset.extend_from_slice(b"$");
            self.mset.extend_from_slice(b.len().to_string().as_bytes());
            self.mset.extend_from_slice(b"\r\n");
            self.mset.extend_from_slice(b);
            self.mset.extend_from_slice(b"\r\n");
        }
        self.mset_pairs += 1;
        if self.mset_pairs >= MSET_MAX_PAIRS || self.mset.len() >= MSET_MAX_BYTES {
            self.emit_mset();
        }
    }

    /// Writes the strings waiting as one MSET.
    fn emit_mset(&mut self) {
        if self.mset_pairs == 0 {
            return;
        }
        self.buf.extend_from_slice(b"*");
        self.buf
            .extend_from_slice((2 * self.mset_pairs + 1).to_string().as_bytes());
        self.buf.extend_from_slice(b"\r\n$4\r\nMSET\r\n");
        self.buf.extend_from_slice(&self.mset);
        self.mset.clear();
        self.mset_pairs = 0;
        let first = std::mem::take(&mut self.mset_first);
        self.mark("MSET", first);
    }
}

/// Commands of a value re-created in pieces: shipped whenever a batch is full, so a big
/// value spans several batches (sent in order).
struct Flushing<'a> {
    b: &'a mut Builder,
    out: &'a mpsc::Sender<Result<LoadMsg, SyncError>>,
}

impl Sink for Flushing<'_> {
    fn buf(&mut self) -> &mut BytesMut {
        &mut self.b.buf
    }
    fn done(&mut self, name: &'static str, key: &Bytes) -> Result<(), SyncError> {
        self.b.mark(name, key.clone());
        if self.b.buf.len() >= BATCH_BYTES {
            self.out
                .blocking_send(Ok(LoadMsg::Batch(self.b.take())))
                .map_err(|_| stopped())?;
        }
        Ok(())
    }
}

fn out_of_order() -> SyncError {
    SyncError::Target("internal: a value piece without its start".into())
}

fn stopped() -> SyncError {
    SyncError::Target("full load stopped".into())
}

/// Reads the whole RDB from `input`, sending batches to `out`; returns its length. Values whose serialized
/// size passes `big_value_bytes` are re-created in chunks. For a `cluster` target no SELECT
/// is written (every db must map to db 0). Blocking: run it on a blocking thread.
pub fn encode_rdb<R: Read>(
    input: R,
    out: &mpsc::Sender<Result<LoadMsg, SyncError>>,
    keys_loaded: &AtomicU64,
    big_value_bytes: usize,
    db_map: &crate::config::DbMap,
    cluster: bool,
    scope: Option<&crate::scope::LinkScope>,
) -> Result<LoadEnd, SyncError> {
    // A link of a cluster source loads the keys of its own slots only: a master's RDB
    // may also hold keys of a slot being imported, or left behind by a failed migration,
    // which belong to another link (RESTORE REPLACE over its keys, in no order).
    let foreign = |key: &[u8]| scope.is_some_and(|s| !s.owns(cluster::slots::key_slot(key)));
    let mut skipped: u64 = 0;
    // Keys whose TTL has passed: the target does not create them (RESTORE ... ABSTTL of a
    // time gone by answers +OK and stores nothing); counted for the report.
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let mut expired: u64 = 0;
    let mut skipping_big = false;
    let mut rd = RdbReader::new(input);
    rd.set_value_limit(big_value_bytes as u64);
    let mut b = Builder {
        buf: BytesMut::with_capacity(BATCH_BYTES + 64 * 1024),
        names: Vec::new(),
        ends: Vec::new(),
        stream_db: None,
        mset: BytesMut::new(),
        mset_pairs: 0,
        mset_first: Bytes::new(),
    };
    let mut version: u16 = 0;
    let mut caps = TargetCaps::ALL;
    let mut payload = Vec::new();
    // The value being read in pieces.
    let mut big: Option<PartWriter> = None;
    let gone = |_| stopped();
    while let Some(ev) = rd.next_event()? {
        let expire = match &ev {
            Event::Key(k) => k.expire_ms,
            Event::BigValueStart { expire_ms, .. } => *expire_ms,
            _ => None,
        };
        if expire.is_some_and(|e| e <= now_ms) {
            expired += 1;
        }
        // Strings without a TTL go in runs of one MSET (one server only).
        if let Event::Key(k) = &ev {
            if !cluster
                && caps.restore
                && k.value_type == 0
                && k.expire_ms.is_none()
                && !foreign(&k.key)
            {
                if let Ok(decode::Value::String(v)) = decode::decode_entry(k) {
                    b.push_string(&k.key, &v);
                    keys_loaded.fetch_add(1, Ordering::Relaxed);
                    if b.buf.len() >= BATCH_BYTES {
                        out.blocking_send(Ok(LoadMsg::Batch(b.take())))
                            .map_err(gone)?;
                    }
                    continue;
                }
            }
        }
        b.emit_mset();
        match ev {
            Event::Header { version: v } => {
                version = v as u16;
                let (reply, answer) = oneshot::channel();
                out.blocking_send(Ok(LoadMsg::Probe {
                    rdb_version: version,
                    reply,
                }))
                .map_err(gone)?;
                caps = answer.blocking_recv().map_err(|_| stopped())?;
                if !caps.restore {
                    tracing::warn!(
                        rdb_version = v,
                        "the target's Redis can't take the source's RDB format: every value is re-created with ordinary commands"
                    );
                }
            }
            Event::Aux { key, value } => match &key[..] {
                b"repl-stream-db" => {
                    b.stream_db = std::str::from_utf8(&value)
                        .ok()
                        .and_then(|v| v.parse().ok())
                }
                // Scripts of 6.2 and older sources: EVALSHA in the stream needs them.
                b"lua" => {
                    resp::encode::command(
                        &mut b.buf,
                        [&b"SCRIPT"[..], b"LOAD", &value].into_iter(),
                    );
                    b.mark("SCRIPT LOAD", Bytes::new());
                }
                _ => {}
            },
            Event::Db(n) if cluster => {
                // A cluster has db 0 only: every db with keys must map there.
                if db_map.target(n) != 0 {
                    return Err(crate::config::unmapped_dbs(&[format!("db{n}")]));
                }
            }
            Event::Db(n) => {
                let n = db_map.target(n).to_string();
                resp::encode::command(&mut b.buf, [&b"SELECT"[..], n.as_bytes()].into_iter());
                b.mark("SELECT", Bytes::new());
            }
            Event::Key(k) if foreign(&k.key) => skipped += 1,
            Event::BigValueStart { key, .. } if foreign(&key) => {
                skipped += 1;
                skipping_big = true;
            }
            Event::BigValueChunk(_) if skipping_big => {}
            Event::BigValueEnd if skipping_big => skipping_big = false,
            Event::Key(k) if !caps.restore || k.value.len() > big_value_bytes => {
                // The value's bytes end where the reader is.
                let value_at = rd.position().saturating_sub(k.value.len() as u64);
                rebuild(&k, value_at, caps, version, &mut b, out, &mut payload)?;
                keys_loaded.fetch_add(1, Ordering::Relaxed);
            }
            Event::Key(k) => {
                payload.clear();
                k.write_restore_payload(version, &mut payload);
                let ttl = itoa(k.expire_ms.unwrap_or(0).max(0));
                resp::encode::command(
                    &mut b.buf,
                    [
                        &b"RESTORE"[..],
                        &k.key,
                        ttl.as_bytes(),
                        &payload,
                        b"ABSTTL",
                        b"REPLACE",
                    ]
                    .into_iter(),
                );
                b.mark("RESTORE", k.key);
                keys_loaded.fetch_add(1, Ordering::Relaxed);
            }
            Event::BigValueStart {
                db,
                key,
                expire_ms,
                value_type,
            } => {
                let entry = KeyEntry {
                    db,
                    key,
                    expire_ms,
                    value_type,
                    value: Bytes::new(),
                };
                let mut sink = Flushing { b: &mut b, out };
                big = Some(PartWriter::start(entry, caps, &mut sink)?);
            }
            Event::BigValueChunk(part) => {
                let w = big.as_mut().ok_or_else(out_of_order)?;
                w.part(*part, &mut Flushing { b: &mut b, out })?;
            }
            Event::BigValueEnd => {
                let w = big.take().ok_or_else(out_of_order)?;
                w.finish(&mut Flushing { b: &mut b, out })?;
                keys_loaded.fetch_add(1, Ordering::Relaxed);
            }
            Event::Function { code } => {
                resp::encode::command(
                    &mut b.buf,
                    [&b"FUNCTION"[..], b"LOAD", b"REPLACE", &code].into_iter(),
                );
                b.mark("FUNCTION LOAD", Bytes::new());
            }
            Event::ModuleAux { module_id } => {
                tracing::warn!(module_id, "module AUX data in the RDB is not transferred");
            }
            Event::ResizeDb { .. } => {}
            Event::End { .. } => break,
        }
        if b.buf.len() >= BATCH_BYTES {
            out.blocking_send(Ok(LoadMsg::Batch(b.take())))
                .map_err(gone)?;
        }
    }
    b.emit_mset();
    if !b.buf.is_empty() || b.stream_db.is_some() {
        out.blocking_send(Ok(LoadMsg::Batch(b.take())))
            .map_err(gone)?;
    }
    if skipped > 0 {
        tracing::warn!(
            keys = skipped,
            link = %scope.map(|s| s.ranges_text()).unwrap_or_default(),
            "keys of slots this link does not own were in its master's RDB (a slot being imported, or left by a failed migration): not loaded"
        );
    }
    Ok(LoadEnd {
        rdb_len: rd.position(),
        expired,
    })
}

/// How an RDB's load ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadEnd {
    /// Where the RDB ended (files: the commands of an AOF follow).
    pub rdb_len: u64,
    /// Keys whose TTL had passed when they were read (the target does not keep them).
    pub expired: u64,
}

/// A key re-created with commands (older target, or a big value of a type the reader
/// hands out whole: a single-blob encoding or a module value). A big value that commands
/// can't re-create exactly (a module value) goes by RESTORE when the target takes it.
/// `value_at`: where the value starts in the RDB (for errors).
fn rebuild(
    k: &KeyEntry,
    value_at: u64,
    caps: TargetCaps,
    version: u16,
    b: &mut Builder,
    out: &mpsc::Sender<Result<LoadMsg, SyncError>>,
    payload: &mut Vec<u8>,
) -> Result<(), SyncError> {
    let value = match decode::decode_entry(k) {
        Ok(v) if !(caps.restore && reencode::needs_restore(&v)) => Some(v),
        Ok(_) => None,
        Err(RdbError::Unsupported { .. }) if caps.restore => None,
        Err(RdbError::Unsupported { why, .. }) => {
            return Err(reencode::cannot(
                k,
                "RESTORE",
                format!("the target's Redis is older than the source's and {why}"),
            ))
        }
        Err(e) => return Err(e.in_file(value_at).into()),
    };
    let mut sink = Flushing { b, out };
    match value {
        Some(v) => reencode::write_commands(k, &v, caps, &mut sink),
        None => {
            payload.clear();
            k.write_restore_payload(version, payload);
            let ttl = itoa(k.expire_ms.unwrap_or(0).max(0));
            resp::encode::command(
                sink.buf(),
                [
                    &b"RESTORE"[..],
                    &k.key,
                    ttl.as_bytes(),
                    payload,
                    b"ABSTTL",
                    b"REPLACE",
                ]
                .into_iter(),
            );
            sink.done("RESTORE", &k.key)
        }
    }
}

fn itoa(n: i64) -> String {
    n.to_string()
}
