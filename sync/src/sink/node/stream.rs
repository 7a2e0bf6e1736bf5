//! The stream into one server: the source's commands, each let through by the front
//! ([`crate::stream::front`]), applied in MULTI/EXEC units that also write the checkpoint
//! of their end offset; the source's own transactions stay whole inside a unit.

use std::time::Duration;

use bytes::{Buf, BytesMut};
use resp::{Limits, RequestParser};

use super::target::{Meta, Target};
use crate::checkpoint::Checkpoint;
use crate::config::SyncConfig;
use crate::reply::{array_elements, error_text, frames, nth_command, transient};
use crate::sink::{bad_stream, warn_truncated};
use crate::source::Source;
use crate::spool::spool_err;
use crate::status::{SyncState, SyncStatus};
use crate::stream::{Front, Intake, Step};
use crate::SyncError;

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
    /// Plain `SET key value` commands waiting to go as one MSET (their key and value as
    /// RESP bulks), and how many: the target runs one command for a run of them instead
    /// of one each (an AOF or a stream of SETs applies faster than `redis-cli --pipe`
    /// sends it). Same effect: MSET sets each key in order and clears its TTL, as SET does.
    mset: BytesMut,
    mset_pairs: u32,
}

/// A run of SETs goes out as one MSET at this many pairs or bytes.
const MSET_MAX_PAIRS: u32 = 1024;
const MSET_MAX_BYTES: usize = 256 * 1024;

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
            mset: BytesMut::new(),
            mset_pairs: 0,
        }
    }

    /// Whether nothing was written yet (no MULTI, no SELECT).
    fn is_empty(&self) -> bool {
        self.count == 0 && self.mset_pairs == 0
    }

    /// A plain `SET key value`: `bulks` is its key and value as RESP bulks.
    fn push_set(&mut self, bulks: &[u8]) {
        self.mset.extend_from_slice(bulks);
        self.mset_pairs += 1;
        if self.mset_pairs >= MSET_MAX_PAIRS || self.mset.len() >= MSET_MAX_BYTES {
            self.emit_mset();
        }
    }

    /// Writes the SETs waiting as one MSET.
    fn emit_mset(&mut self) {
        if self.mset_pairs == 0 {
            return;
        }
        let argc = (2 * self.mset_pairs + 1).to_string();
        for out in [&mut self.buf, &mut self.cmds] {
            out.extend_from_slice(b"*");
            out.extend_from_slice(argc.as_bytes());
            out.extend_from_slice(b"\r\n$4\r\nMSET\r\n");
            out.extend_from_slice(&self.mset);
        }
        self.mset.clear();
        self.mset_pairs = 0;
        self.count += 1;
    }

    fn mark(&mut self, db: u32) {
        self.emit_mset();
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
        self.mset.clear();
        self.mset_pairs = 0;
        self.buf.truncate(m.buf);
        self.cmds.truncate(m.cmds);
        self.count = m.count;
        self.end_offset = m.end_offset;
        self.dirty = m.dirty;
        Some(m.db)
    }
}

/// The key and value of a plain `SET key value` as their RESP bulks (the frame's bytes
/// from the key's `$` on), or None for anything else.
fn plain_set<'a>(frame: &'a [u8], args: &[std::ops::Range<usize>]) -> Option<&'a [u8]> {
    let [name, key, _] = args else {
        return None;
    };
    if !frame.get(name.clone())?.eq_ignore_ascii_case(b"set") {
        return None;
    }
    let dollar = memchr::memrchr(b'$', frame.get(..key.start)?)?;
    frame.get(dollar..)
}

/// Applies everything complete and confirms it: a source transaction left open is dropped
/// (the end of a file, bytes that are not commands, a command the link can't take), the
/// rest flushed with its checkpoint, and every reply awaited. The checkpoint then stands
/// exactly where the stream stops.
async fn settle(
    mut txn: Txn,
    in_multi: bool,
    target: &mut Target,
    ck: &TxnCheckpoint<'_>,
    mut db: u32,
    status: &SyncStatus,
) -> Result<(), SyncError> {
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
        .await
}

/// Ends the stream with `e`, a fault retrying can't mend, once what came before it is
/// applied ([`settle`]): a run over mended input goes on from there.
async fn stop_at(
    e: SyncError,
    txn: Txn,
    in_multi: bool,
    target: &mut Target,
    ck: &TxnCheckpoint<'_>,
    db: u32,
    status: &SyncStatus,
) -> Result<(), SyncError> {
    if e.is_retryable() {
        return Err(e);
    }
    settle(txn, in_multi, target, ck, db, status).await?;
    Err(e)
}

/// Applies the command stream, one checkpointed transaction at a time.
pub(crate) async fn stream(
    cfg: &SyncConfig,
    status: &SyncStatus,
    mut link: Source,
    mut target: Target,
    replid: String,
    start: i64,
    start_db: u32,
) -> Result<(), SyncError> {
    status.set_state(SyncState::Streaming);
    let mut intake = Intake::new(cfg, &mut link, start, status)?;
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
            match intake.spool.pop(256 * 1024).map_err(spool_err)? {
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
                            return stop_at(e, txn, in_multi, &mut target, &ck, db, status).await;
                        }
                        if let Step::Select(n) = step {
                            db = n;
                        }
                        if txn.is_empty() {
                            let sdb = cfg.db_map.target(txn.start_db).to_string();
                            resp::encode::command(&mut txn.buf, [&b"MULTI"[..]].into_iter());
                            resp::encode::command(
                                &mut txn.buf,
                                [&b"SELECT"[..], sdb.as_bytes()].into_iter(),
                            );
                        }
                        SyncStatus::add(&status.stream_commands, 1);
                        if let Some(bulks) = plain_set(&pbuf[..len], args) {
                            txn.push_set(bulks);
                            txn.end_offset = offset;
                            txn.dirty = true;
                            pbuf.advance(len);
                            if !in_multi && txn.buf.len() >= cfg.max_txn_bytes {
                                flush_txn(&mut txn, &mut target, &ck, db)?;
                            }
                            continue;
                        }
                        txn.emit_mset();
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
        if until_reached || intake.drained(&link) {
            if !until_reached {
                warn_truncated(&link, offset, pbuf.len(), in_multi);
            }
            return settle(txn, in_multi, &mut target, &ck, db, status).await;
        }
        intake.report(status);
        let read = intake.wants_read(&link);
        tokio::select! {
            r = link.fill(), if read => {
                r?;
                intake.took(&mut link, status)?;
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
    txn.emit_mset();
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

#[cfg(test)]
mod tests;
