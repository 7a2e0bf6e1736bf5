//! The syncer's connections to a Redis Cluster target: commands routed to the node that
//! owns their slot, in order per slot, through resharding and failures of the moment.
//!
//! Why this shape:
//! - Work arrives as *pieces* (a stream command, the part of a source transaction for one
//!   slot, one RESTORE) queued per slot. A slot has at most ONE unit on the wire (or
//!   waiting to be retried) at a time; what arrives meanwhile queues behind it and leaves
//!   as the next unit once it is confirmed. That is what keeps each slot's order through
//!   every redirection: during a migration a node answers `-ASK`/`-TRYAGAIN` or serves a
//!   unit depending on which keys it still holds, so two units of one slot in flight
//!   could be applied out of order (and a later checkpoint overwritten by an earlier one).
//!   Slots are independent, so the pipeline of each node still carries up to one unit per
//!   slot it owns: thousands in flight, and a busy slot batches while it waits.
//! - [`Mode::Txn`] units are `MULTI, pieces..., <trailer>, EXEC` (the trailer is the
//!   slot's checkpoint): applied whole or not at all, so any redirection or transient
//!   error just sends the whole unit again. [`Mode::Plain`] units (the full load, reads)
//!   are independent one-command pieces: the ones refused are sent again, alone.
//! - `-MOVED`: the slot's owner is updated at once (and the whole map refreshed when the
//!   caller gets to it, [`Router::refresh`]); the unit goes to the new owner. `-ASK`: the
//!   unit goes once to the importing node behind `ASKING` (which holds through a MULTI).
//!   `-TRYAGAIN`, `-CLUSTERDOWN`, `-LOADING`, `-BUSY`, `-MASTERDOWN`: retried after a
//!   backoff (10 ms doubling to 1 s), still first in its slot's line.
//! - One connection per node (opened lazily when a slot or a redirection first names it),
//!   all answering into one channel, told apart by the batch tag. A lost connection ends
//!   the run (the commands on it may or may not have run; the checkpoints say which).
//! - Only what is confirmed is reported ([`Done`]); the caller decides what an applied
//!   unit means (offsets, checkpoints) and reads refusals out of the replies.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use ::cluster::pipeline::{Batch, BatchFlags, Reply, ReplyKind};
use ::cluster::slots::{NodeAddr, SlotMap, SLOT_COUNT};
use ::cluster::{Connector, PipelineHandle, SessionSetup};
use bytes::{Bytes, BytesMut};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::piece::{cost, retry_of, txn_retry, Retry};
pub use super::piece::{Done, Mode, Piece, PieceInfo, Trailer};
use crate::SyncError;

/// What waits for a slot's unit on the wire.
type SlotQueue<T> = VecDeque<(Mode, Piece<T>)>;

/// The slot of units addressed to a node rather than a slot.
pub const NO_SLOT: u16 = u16::MAX;
const NO_NODE: u32 = u32::MAX;
const MIN_BACKOFF: Duration = Duration::from_millis(10);
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// Most piece bytes in one unit by default (a single bigger piece goes alone).
const MAX_UNIT_BYTES: usize = 1024 * 1024;

struct Unit<T> {
    slot: u16,
    /// Units for a node (broadcasts) go there whatever the map says.
    node: Option<u32>,
    /// Sent on the node's control connection, outside its slot's line.
    control: bool,
    mode: Mode,
    pieces: Vec<Piece<T>>,
    /// Plain: each piece's final reply, once it has one.
    results: Vec<Option<Bytes>>,
    backoff: Duration,
    /// When it first had to wait (for the log).
    waiting_since: Option<Instant>,
}

/// A unit on a node's wire.
struct Attempt<T> {
    unit: Unit<T>,
    /// Txn: the unit is preceded by ASKING. Plain: per piece sent, (index, after ASKING).
    asking: bool,
    sent: Vec<(usize, bool)>,
    /// Replies owed.
    need: usize,
}

struct Node<T> {
    addr: NodeAddr,
    handle: PipelineHandle,
    inflight: VecDeque<Attempt<T>>,
    /// Complete reply frames not yet matched to an attempt.
    frames: VecDeque<Bytes>,
    /// Encoded attempts gathered for one write.
    outbox: BytesMut,
    outbox_count: u32,
    /// What its attempts on the wire cost ([`cost`]).
    inflight_bytes: usize,
}

pub struct Router<T> {
    connector: Arc<Connector>,
    nodes: Vec<Node<T>>,
    by_addr: HashMap<NodeAddr, u32>,
    /// Each node's control connection (an entry of `nodes` too), by node index.
    control_lanes: HashMap<u32, u32>,
    /// Node index per slot (NO_NODE: unassigned).
    owner: Box<[u32]>,
    masters: Vec<NodeAddr>,
    /// A slot has a unit on a wire or waiting to be retried.
    busy: Box<[bool]>,
    pending: Box<[SlotQueue<T>]>,
    /// Slots with pending pieces and nothing busy (`listed` dedupes).
    ready: Vec<u16>,
    listed: Box<[bool]>,
    /// Units for nodes, not yet sent.
    node_pending: Vec<Unit<T>>,
    parked: Vec<(Instant, Unit<T>)>,
    events: VecDeque<Done<T>>,
    tx: mpsc::UnboundedSender<Reply>,
    rx: mpsc::UnboundedReceiver<Reply>,
    bytes: usize,
    trailer: Trailer<T>,
    max_unit_bytes: usize,
    refresh_wanted: bool,
    last_refresh: Instant,
    last_wait_log: Instant,
}

fn tgt(e: impl std::fmt::Display) -> SyncError {
    SyncError::Target(e.to_string())
}

impl<T: PieceInfo> Router<T> {
    /// Reads the cluster's slot map from the node of `connector`'s URL, or, when it does
    /// not answer, from one of `seeds` (the masters a previous run knew).
    pub async fn connect(
        connector: Arc<Connector>,
        trailer: Trailer<T>,
        seeds: &[NodeAddr],
    ) -> Result<Self, SyncError> {
        let origin = NodeAddr::from(connector.url());
        let mut first_err = None;
        let mut map = None;
        for addr in std::iter::once(&origin).chain(seeds.iter().filter(|s| **s != origin)) {
            let conn = if *addr == origin {
                connector.connect(&SessionSetup::default()).await
            } else {
                match connector.for_node(&addr.host, addr.port) {
                    Ok(c) => c.connect(&SessionSetup::default()).await,
                    Err(e) => Err(e),
                }
            };
            let mut conn = match conn {
                Ok(c) => c,
                Err(e) if !e.is_retryable() => {
                    return Err(SyncError::Config(format!("target: {e}")))
                }
                Err(e) => {
                    first_err.get_or_insert(tgt(e));
                    continue;
                }
            };
            match SlotMap::fetch(&mut conn, addr).await {
                Ok(m) if m.assigned_slots() > 0 => {
                    map = Some(m);
                    break;
                }
                Ok(_) => {
                    first_err.get_or_insert(tgt("the cluster serves no slot yet"));
                }
                Err(e) => {
                    first_err.get_or_insert(tgt(format!("reading the cluster's slot map: {e}")));
                }
            }
        }
        let Some(map) = map else {
            return Err(first_err.unwrap_or_else(|| tgt("no node of the cluster answers")));
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let now = Instant::now();
        let mut r = Router {
            connector,
            nodes: Vec::new(),
            by_addr: HashMap::new(),
            control_lanes: HashMap::new(),
            owner: vec![NO_NODE; usize::from(SLOT_COUNT)].into_boxed_slice(),
            masters: Vec::new(),
            busy: vec![false; usize::from(SLOT_COUNT)].into_boxed_slice(),
            pending: (0..SLOT_COUNT).map(|_| VecDeque::new()).collect(),
            ready: Vec::new(),
            listed: vec![false; usize::from(SLOT_COUNT)].into_boxed_slice(),
            node_pending: Vec::new(),
            parked: Vec::new(),
            events: VecDeque::new(),
            tx,
            rx,
            bytes: 0,
            trailer,
            max_unit_bytes: MAX_UNIT_BYTES,
            refresh_wanted: false,
            last_refresh: now,
            last_wait_log: now,
        };
        r.apply_map(&map)?;
        Ok(r)
    }

    fn apply_map(&mut self, map: &SlotMap) -> Result<(), SyncError> {
        if map.assigned_slots() < usize::from(SLOT_COUNT) {
            tracing::warn!(
                assigned = map.assigned_slots(),
                "the target cluster does not serve every slot: commands for the others wait"
            );
        }
        for slot in 0..SLOT_COUNT {
            self.owner[usize::from(slot)] = match map.master_for(slot) {
                Some(addr) => self.node_index(addr)?,
                None => NO_NODE,
            };
        }
        self.masters = map.masters();
        Ok(())
    }

    /// Most piece bytes in one unit (`sync.max_txn_bytes`).
    pub fn set_max_unit_bytes(&mut self, n: usize) {
        self.max_unit_bytes = n.max(1);
    }

    /// The masters of the last slot map read.
    pub fn masters(&self) -> &[NodeAddr] {
        &self.masters
    }

    /// The master the map names for `slot`.
    pub fn owner_of(&self, slot: u16) -> Option<&NodeAddr> {
        let i = *self.owner.get(usize::from(slot))?;
        self.nodes.get(i as usize).map(|n| &n.addr)
    }

    /// The index of the node at `addr`, connecting to it (lazily) the first time.
    fn node_index(&mut self, addr: &NodeAddr) -> Result<u32, SyncError> {
        if let Some(&i) = self.by_addr.get(addr) {
            return Ok(i);
        }
        let i = self.open(addr, "cutover-syncer")?;
        self.by_addr.insert(addr.clone(), i);
        Ok(i)
    }

    /// The control connection of node `node` (opened lazily the first time).
    fn control_lane(&mut self, node: u32) -> Result<u32, SyncError> {
        if let Some(&i) = self.control_lanes.get(&node) {
            return Ok(i);
        }
        let addr = self
            .nodes
            .get(node as usize)
            .map(|n| n.addr.clone())
            .ok_or_else(|| tgt("internal: unknown node"))?;
        let i = self.open(&addr, "cutover-syncer-control")?;
        self.control_lanes.insert(node, i);
        Ok(i)
    }

    fn open(&mut self, addr: &NodeAddr, name: &'static str) -> Result<u32, SyncError> {
        let connector = self
            .connector
            .for_node(&addr.host, addr.port)
            .map_err(|e| SyncError::Config(format!("target node {addr}: {e}")))?;
        let setup = SessionSetup {
            name: Some(Bytes::from_static(name.as_bytes())),
            ..SessionSetup::default()
        };
        let handle = PipelineHandle::spawn_dedicated_lazy(Arc::new(connector), setup, "target");
        let i = u32::try_from(self.nodes.len()).map_err(|_| tgt("too many nodes"))?;
        self.nodes.push(Node {
            addr: addr.clone(),
            handle,
            inflight: VecDeque::new(),
            frames: VecDeque::new(),
            outbox: BytesMut::new(),
            outbox_count: 0,
            inflight_bytes: 0,
        });
        Ok(i)
    }

    /// Sends a one-command piece for `slot` at once, on its node's control connection:
    /// outside the slot's line, so it does not wait behind the data in flight (the
    /// checkpoint's floor, which must trail the applied offset closely). Redirections
    /// and retries as for any unit.
    pub fn send_control(&mut self, slot: u16, piece: Piece<T>) -> Result<(), SyncError> {
        self.bytes += cost(&piece);
        let unit = Unit {
            slot,
            node: None,
            control: true,
            mode: Mode::Plain,
            pieces: vec![piece],
            results: Vec::new(),
            backoff: MIN_BACKOFF,
            waiting_since: None,
        };
        self.send(unit, None, false)?;
        self.write_outboxes()
    }

    /// Queues `piece` for `slot`; it leaves with [`Router::flush`] (or when the slot's
    /// current unit is confirmed).
    pub fn enqueue(&mut self, slot: u16, mode: Mode, piece: Piece<T>) {
        debug_assert!(mode == Mode::Txn || piece.count == 1);
        let s = usize::from(slot);
        if s >= self.pending.len() {
            return;
        }
        self.bytes += cost(&piece);
        self.pending[s].push_back((mode, piece));
        if !self.busy[s] && !self.listed[s] {
            self.listed[s] = true;
            self.ready.push(slot);
        }
    }

    /// Queues a one-piece unit for the node at `addr` (keyless commands every master runs).
    pub fn enqueue_node(
        &mut self,
        addr: &NodeAddr,
        mode: Mode,
        piece: Piece<T>,
    ) -> Result<(), SyncError> {
        let node = self.node_index(addr)?;
        self.bytes += cost(&piece);
        self.node_pending.push(Unit {
            slot: NO_SLOT,
            node: Some(node),
            control: false,
            mode,
            pieces: vec![piece],
            results: Vec::new(),
            backoff: MIN_BACKOFF,
            waiting_since: None,
        });
        Ok(())
    }

    /// Sends a unit for every slot that has pieces and nothing on a wire.
    pub fn flush(&mut self) -> Result<(), SyncError> {
        for u in std::mem::take(&mut self.node_pending) {
            self.send(u, None, false)?;
        }
        while let Some(slot) = self.ready.pop() {
            let s = usize::from(slot);
            self.listed[s] = false;
            if self.busy[s] {
                continue;
            }
            let Some(mode) = self.pending[s].front().map(|(m, _)| *m) else {
                continue;
            };
            let mut pieces = Vec::new();
            let mut bytes = 0;
            while let Some((m, _)) = self.pending[s].front() {
                if *m != mode || (bytes > 0 && bytes >= self.max_unit_bytes) {
                    break;
                }
                if let Some((_, p)) = self.pending[s].pop_front() {
                    bytes += p.data.len();
                    pieces.push(p);
                }
            }
            self.busy[s] = true;
            let unit = Unit {
                slot,
                node: None,
                control: false,
                mode,
                results: Vec::new(),
                pieces,
                backoff: MIN_BACKOFF,
                waiting_since: None,
            };
            self.send(unit, None, false)?;
        }
        self.write_outboxes()
    }

    /// Bytes queued, on a wire or waiting to be retried (with their bookkeeping).
    pub fn inflight_bytes(&self) -> usize {
        self.bytes
    }

    /// What is on each node's wire (its connections together), for progress reports.
    pub fn node_inflight(&self) -> Vec<(NodeAddr, usize)> {
        let mut out: Vec<(NodeAddr, usize)> = Vec::new();
        for n in &self.nodes {
            match out.iter_mut().find(|(a, _)| *a == n.addr) {
                Some((_, b)) => *b += n.inflight_bytes,
                None => out.push((n.addr.clone(), n.inflight_bytes)),
            }
        }
        out
    }

    /// Nothing queued, sent or waiting.
    pub fn idle(&self) -> bool {
        self.bytes == 0
            && self.events.is_empty()
            && self.parked.is_empty()
            && self.node_pending.is_empty()
            && self.nodes.iter().all(|n| n.inflight.is_empty())
    }

    /// Whether a `-MOVED` asked for a new slot map.
    pub fn wants_refresh(&self) -> bool {
        self.refresh_wanted && self.last_refresh.elapsed() > Duration::from_millis(100)
    }

    /// Reads the slot map again (after `-MOVED`), from a node that answered last. Failing
    /// is not fatal: each slot's own `-MOVED` still corrects it.
    pub async fn refresh(&mut self) -> Result<(), SyncError> {
        self.refresh_wanted = false;
        self.last_refresh = Instant::now();
        let mut candidates: Vec<NodeAddr> = self.masters.clone();
        candidates.extend(self.nodes.iter().map(|n| n.addr.clone()));
        for addr in candidates {
            let Ok(connector) = self.connector.for_node(&addr.host, addr.port) else {
                continue;
            };
            let Ok(mut conn) = connector.connect(&SessionSetup::default()).await else {
                continue;
            };
            match SlotMap::fetch(&mut conn, &addr).await {
                Ok(map) if map.assigned_slots() > 0 => {
                    tracing::debug!(from = %addr, "target slot map refreshed");
                    return self.apply_map(&map);
                }
                Ok(_) => continue,
                Err(e) => {
                    tracing::debug!(from = %addr, error = %e, "reading the slot map");
                    continue;
                }
            }
        }
        tracing::warn!("could not read the target's slot map again; following redirections");
        Ok(())
    }

    /// The next unit the target answered for good. Cancel-safe.
    pub async fn next(&mut self) -> Result<Done<T>, SyncError> {
        loop {
            if let Some(d) = self.events.pop_front() {
                self.bytes -= d.pieces.iter().map(cost).sum::<usize>();
                return Ok(d);
            }
            self.resend_due()?;
            if !self.events.is_empty() {
                continue;
            }
            let deadline = self.parked.iter().map(|(at, _)| *at).min();
            tokio::select! {
                r = self.rx.recv() => {
                    let r = r.ok_or_else(|| tgt("internal: reply channel closed"))?;
                    self.on_reply(r)?;
                }
                _ = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {}
            }
        }
    }

    fn resend_due(&mut self) -> Result<(), SyncError> {
        let now = Instant::now();
        if !self.parked.iter().any(|(at, _)| *at <= now) {
            return Ok(());
        }
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.parked)
            .into_iter()
            .partition(|(at, _)| *at <= now);
        self.parked = later;
        for (_, unit) in due {
            self.send(unit, None, false)?;
        }
        self.write_outboxes()
    }

    /// Puts `unit` on the wire of `to` (or of its slot's owner); `asking`: behind ASKING.
    fn send(&mut self, unit: Unit<T>, to: Option<u32>, asking: bool) -> Result<(), SyncError> {
        let node = match to.or(unit.node) {
            Some(n) => n,
            None => {
                let o = self
                    .owner
                    .get(usize::from(unit.slot))
                    .copied()
                    .unwrap_or(NO_NODE);
                if o == NO_NODE {
                    self.refresh_wanted = true;
                    self.park(unit, "no node serves the slot".into());
                    return Ok(());
                }
                o
            }
        };
        let node = if unit.control {
            self.control_lane(node)?
        } else {
            node
        };
        let trailer = self.trailer;
        let n = self
            .nodes
            .get_mut(node as usize)
            .ok_or_else(|| tgt("internal: unknown node"))?;
        let out = &mut n.outbox;
        let mut need = 0usize;
        let mut sent = Vec::new();
        match unit.mode {
            Mode::Txn => {
                if asking {
                    resp::encode::command(out, [&b"ASKING"[..]].into_iter());
                    need += 1;
                }
                resp::encode::command(out, [&b"MULTI"[..]].into_iter());
                for p in &unit.pieces {
                    out.extend_from_slice(&p.data);
                    need += p.count as usize;
                }
                need += trailer(unit.slot, &unit.pieces, out) as usize;
                resp::encode::command(out, [&b"EXEC"[..]].into_iter());
                need += 2;
            }
            Mode::Plain => {
                for (i, p) in unit.pieces.iter().enumerate() {
                    if unit.results.get(i).is_some_and(Option::is_some) {
                        continue;
                    }
                    if asking {
                        resp::encode::command(out, [&b"ASKING"[..]].into_iter());
                        need += 1;
                    }
                    out.extend_from_slice(&p.data);
                    need += 1;
                    sent.push((i, asking));
                }
            }
        }
        n.outbox_count += u32::try_from(need).map_err(|_| tgt("unit too large"))?;
        n.inflight_bytes += unit.pieces.iter().map(cost).sum::<usize>();
        n.inflight.push_back(Attempt {
            unit,
            asking,
            sent,
            need,
        });
        Ok(())
    }

    fn write_outboxes(&mut self) -> Result<(), SyncError> {
        for (i, n) in self.nodes.iter_mut().enumerate() {
            if n.outbox_count == 0 {
                continue;
            }
            let batch = Batch {
                data: n.outbox.split().freeze(),
                count: std::mem::take(&mut n.outbox_count),
                flags: BatchFlags::default(),
                reply: self.tx.clone(),
                tag: i as u32,
            };
            n.handle
                .send(batch)
                .map_err(|_| tgt(format!("lost connection to target node {}", n.addr)))?;
        }
        Ok(())
    }

    fn park(&mut self, mut unit: Unit<T>, why: String) {
        let now = Instant::now();
        let since = *unit.waiting_since.get_or_insert(now);
        if now.duration_since(since) > Duration::from_secs(5)
            && self.last_wait_log.elapsed() > Duration::from_secs(5)
        {
            self.last_wait_log = now;
            tracing::warn!(slot = unit.slot, reason = %why, waited_s = now.duration_since(since).as_secs(), "target slot keeps refusing for the moment; retrying");
        }
        let at = now + unit.backoff;
        unit.backoff = (unit.backoff * 2).min(MAX_BACKOFF);
        metrics::counter!("cutover_sync_target_retries_total", "reason" => "busy").increment(1);
        self.parked.push((at, unit));
    }

    fn on_reply(&mut self, r: Reply) -> Result<(), SyncError> {
        let idx = r.tag as usize;
        let Some(node) = self.nodes.get_mut(idx) else {
            return Err(tgt("internal: reply from an unknown node"));
        };
        match r.kind {
            ReplyKind::Unsolicited => return Ok(()),
            ReplyKind::Failed => {
                return Err(tgt(format!(
                    "lost connection to target node {} with commands in flight",
                    node.addr
                )))
            }
            ReplyKind::Data => {}
        }
        let data = r.data;
        let mut scanner = resp::ReplyScanner::default();
        let mut pos = 0;
        while pos < data.len() {
            match scanner.scan(&data[pos..]) {
                Ok(Some(n)) => {
                    node.frames.push_back(data.slice(pos..pos + n));
                    pos += n;
                }
                _ => return Err(tgt("invalid reply framing from the target")),
            }
        }
        loop {
            let node = &mut self.nodes[idx];
            let Some(front) = node.inflight.front() else {
                if node.frames.is_empty() {
                    break;
                }
                return Err(tgt("a target node sent a reply nothing was waiting for"));
            };
            if node.frames.len() < front.need {
                break;
            }
            let Some(att) = node.inflight.pop_front() else {
                break;
            };
            node.inflight_bytes = node
                .inflight_bytes
                .saturating_sub(att.unit.pieces.iter().map(cost).sum::<usize>());
            let frames: Vec<Bytes> = node.frames.drain(..att.need).collect();
            let from = node.addr.clone();
            self.answered(idx as u32, from, att, frames)?;
        }
        // Slots freed by confirmed units send what queued behind them at once.
        self.flush()
    }

    /// An attempt's replies are all in: done, or sent again.
    fn answered(
        &mut self,
        node: u32,
        from: NodeAddr,
        att: Attempt<T>,
        frames: Vec<Bytes>,
    ) -> Result<(), SyncError> {
        let Attempt {
            mut unit,
            asking,
            sent,
            ..
        } = att;
        match unit.mode {
            Mode::Txn => {
                let replies = if asking {
                    frames.get(1..).unwrap_or_default().to_vec()
                } else {
                    frames
                };
                match txn_retry(&replies, &from) {
                    None => self.finish(unit, from, replies),
                    Some(retry) => self.retry(node, unit, retry)?,
                }
            }
            Mode::Plain => {
                if unit.results.len() != unit.pieces.len() {
                    unit.results = vec![None; unit.pieces.len()];
                }
                let mut frames = frames.into_iter();
                let mut retries: Vec<(usize, Retry)> = Vec::new();
                for (i, after_asking) in sent {
                    if after_asking {
                        frames.next();
                    }
                    let f = frames.next().ok_or_else(|| tgt("internal: reply count"))?;
                    match retry_of(&f, &from) {
                        Some(r) => retries.push((i, r)),
                        None => unit.results[i] = Some(f),
                    }
                }
                // A command sent again after a later command of its key ran would apply
                // out of order (it can only happen when the cluster changes state between
                // two commands of one write, e.g. CLUSTERDOWN lifting).
                for (i, _) in &retries {
                    let Some(k) = unit.pieces[*i].info.order_key() else {
                        continue;
                    };
                    let overtaken = unit.pieces[i + 1..].iter().enumerate().any(|(j, p)| {
                        unit.results[i + 1 + j].is_some() && p.info.order_key() == Some(k)
                    });
                    if overtaken {
                        return Err(tgt(format!(
                            "a command for key {} was refused for the moment while a later one for the same key ran; starting over to keep their order",
                            crate::reply::show_key(k)
                        )));
                    }
                }
                if retries.is_empty() {
                    let replies = unit.results.iter_mut().filter_map(Option::take).collect();
                    self.finish(unit, from, replies);
                } else {
                    // One decision for the rest: wait, or follow the (first) redirection.
                    let later = retries.iter().find(|(_, r)| matches!(r, Retry::Later(_)));
                    let moved = retries.iter().find(|(_, r)| matches!(r, Retry::Moved(_)));
                    let retry = later.or(moved).or(retries.first()).map(|(_, r)| r.clone());
                    match retry {
                        Some(r) => self.retry(node, unit, r)?,
                        None => return Err(tgt("internal: retry without a reason")),
                    }
                }
            }
        }
        Ok(())
    }

    fn retry(&mut self, node: u32, unit: Unit<T>, retry: Retry) -> Result<(), SyncError> {
        match retry {
            Retry::Moved(to) => {
                metrics::counter!("cutover_sync_target_retries_total", "reason" => "moved")
                    .increment(1);
                if unit.node.is_some() {
                    return Err(tgt(format!("a keyless command was redirected to {to}")));
                }
                let to = self.node_index(&to)?;
                if let Some(o) = self.owner.get_mut(usize::from(unit.slot)) {
                    *o = to;
                }
                self.refresh_wanted = true;
                self.send(unit, Some(to), false)
            }
            Retry::Ask(to) => {
                metrics::counter!("cutover_sync_target_retries_total", "reason" => "ask")
                    .increment(1);
                let to = self.node_index(&to)?;
                if to == node {
                    // ASK to itself: the slot is settling; wait.
                    self.park(unit, "ASK to the same node".into());
                    return Ok(());
                }
                self.send(unit, Some(to), true)
            }
            Retry::Later(why) => {
                self.park(unit, why);
                Ok(())
            }
        }
    }

    fn finish(&mut self, unit: Unit<T>, from: NodeAddr, replies: Vec<Bytes>) {
        let s = usize::from(unit.slot);
        if unit.node.is_none() && !unit.control && s < self.busy.len() {
            self.busy[s] = false;
            if !self.pending[s].is_empty() {
                // The slot's next unit leaves at once: the caller may be waiting for it.
                self.listed[s] = true;
                self.ready.push(unit.slot);
            }
        }
        self.events.push_back(Done {
            slot: unit.slot,
            node: from,
            mode: unit.mode,
            pieces: unit.pieces,
            replies,
        });
    }
}

#[cfg(test)]
mod tests;
