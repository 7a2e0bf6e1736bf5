//! The stream into a Redis Cluster: each command placed ([`super::slotting`]) and applied
//! in its slot's transaction with that slot's checkpoint; source transactions whole within
//! a slot (split across slots, or refused); keyless commands every node needs as barriers;
//! the applied offset the oldest start not yet confirmed ([`Outstanding`]), written as the
//! main checkpoint's floor.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use ::cluster::slots::{key_slot, NodeAddr};
use bytes::{Bytes, BytesMut};
use resp::{Limits, RequestParser};

use super::router::{Done, Mode, Piece};
use super::slotting::{self, Placement};
use super::tag::{ClusterRouter, Tag};
use crate::checkpoint::Checkpoint;
use crate::config::{unmapped_dbs, CrossSlot, SyncConfig};
use crate::reply::{array_elements, error_text, nth_command};
use crate::sink::{bad_stream, warn_truncated};
use crate::slot_checkpoint::SkipTable;
use crate::source::Source;
use crate::spool::spool_err;
use crate::status::{SyncState, SyncStatus};
use crate::stream::{Front, Intake, Step};
use crate::SyncError;

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
pub(crate) struct Stream<'a> {
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
    pub(crate) fn new(
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

    pub(crate) async fn run(mut self, mut link: Source) -> Result<(), SyncError> {
        let cfg = self.cfg;
        let status = self.status;
        status.set_state(SyncState::Streaming);
        let mut intake = Intake::new(cfg, &mut link, self.offset, status)?;
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
                    match intake.spool.pop(256 * 1024).map_err(spool_err)? {
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
            let ended = until_reached || (intake.drained(&link) && parsed_all);
            if ended && self.barrier.is_none() {
                return self.finish(&link, pbuf.len(), until_reached).await;
            }
            // The floor follows the applied offset closely (one small write at a time):
            // a resume starts there, and must stay within the source's backlog.
            self.write_floor()?;
            intake.report(status);
            let read = intake.wants_read(&link);
            tokio::select! {
                r = link.fill(), if read => {
                    r?;
                    intake.took(&mut link, status)?;
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

#[cfg(test)]
mod tests;
