//! One client's commands routed over a Redis Cluster, looking to the client like a single
//! server: a task per client that takes the same [`Batch`]es a node connection takes,
//! sends each command to the node serving its slot, and gives the replies back in the
//! client's order.
//!
//! Why a task per client: routing, redirections and merging are per-client state (the
//! order of its commands, a transaction pinned to one slot), and a task keeps that state
//! out of the session, which then treats a cluster exactly as one node.
//!
//! - Keyed commands go to the master of their slot, over the node's shared connection
//!   (or the client's own connection to that node, for a dedicated client).
//! - `-MOVED`: the map is refreshed and the command resent to the named node. `-ASK`:
//!   `ASKING` + the command, once, to the named node. `-TRYAGAIN`/`-CLUSTERDOWN`: resent
//!   after a backoff. Replies still leave in the client's order.
//! - Order across a `-TRYAGAIN`: a command with several keys of a slot seen migrating
//!   ([`crate::migrating`]) is a barrier: the client's later commands wait until it is
//!   answered, so its retry can't be overtaken.
//! - Order across a map change: commands routed with an older map may still be in flight
//!   (and be redirected); commands routed with the new map could overtake them. So a new
//!   map is adopted only when nothing is in flight: until then new batches wait.
//! - MGET, MSET, DEL, UNLINK, EXISTS, TOUCH spanning slots are split per slot and merged;
//!   other commands spanning slots get Redis's `-CROSSSLOT`.
//! - Keyless commands: DBSIZE, KEYS, RANDOMKEY, SCAN, FLUSHALL/FLUSHDB, SCRIPT
//!   LOAD/FLUSH, FUNCTION LOAD/DELETE/FLUSH/RESTORE and CONFIG SET go to every master and
//!   are merged; SCAN's cursor carries the master it is on. The rest go to one master.
//! - A dedicated client (MULTI, WATCH, blocking commands, pub/sub) has its own
//!   connection per node it touches. A transaction is pinned to the slot of its first key
//!   (MULTI is held back until that key is known); a key of another slot gets
//!   `-CROSSSLOT` and makes EXEC fail with `-EXECABORT`, as Redis does.
//!
//! The parts: `plan.rs` (which nodes take a command, as what parts, merged how), `nodes.rs`
//! (the connections parts travel on), `answers.rs` (node replies, redirections, retries,
//! and the client's replies in its order). This file: the client's state, its batches,
//! and when a new slot map is adopted.

/// Whether every entry has its whole reply (answered locally, or every part's result in):
/// nothing routed is still owed by a node.
fn all_answered<'a>(entries: impl IntoIterator<Item = &'a Entry>) -> bool {
    entries.into_iter().all(|e| {
        e.local.is_some() || (e.pending == 0 && e.parts.iter().all(|p| p.result.is_some()))
    })
}

mod answers;
mod nodes;
mod plan;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use resp::command;
use resp::{FrameKind, Limits, ReplyScanner, RequestParser};
use smallvec::{smallvec, SmallVec};
use tokio::sync::mpsc;

use crate::connect::SessionSetup;
use crate::pipeline::{Batch, BatchFlags, PipelineHandle, Reply, ReplyKind, ReplySender};
use crate::slots::{key_slot, NodeAddr, Redirect, RedirectKind};
use crate::topology::{MapState, Topology};

const CROSSSLOT: &[u8] = b"-CROSSSLOT Keys in request don't hash to the same slot\r\n";
const EXECABORT: &[u8] = b"-EXECABORT Transaction discarded because of previous errors.\r\n";
/// Bits of a SCAN cursor that name the master (so up to 1024 masters).
const SCAN_NODE_BITS: u32 = 10;
/// Redirections or retries of one command before its last error is given to the client.
const MAX_ATTEMPTS: u32 = 16;
const RETRY_MIN: Duration = Duration::from_millis(10);
const RETRY_MAX: Duration = Duration::from_millis(500);

/// How a client is served.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    pub resp3: bool,
    /// Connections of its own (transactions, blocking commands, pub/sub).
    pub dedicated: bool,
    /// Its name, for its own connections.
    pub name: Option<Bytes>,
    /// Whose credentials its connections log in with (shared ones: the URL's, or
    /// `Anonymous`).
    pub auth: crate::connect::Auth,
    /// Which shared connections it uses: 0, or 1 for scripts and functions.
    pub lane: u8,
}

/// Starts the routing task of one client; its handle takes batches like a node connection.
/// Used for dedicated clients (their own connections, transactions, pub/sub); a client on
/// shared connections embeds a [`ClusterClient`] in its session instead (one task hop less).
pub fn spawn_client(topo: Arc<Topology>, opts: ClientOptions) -> PipelineHandle {
    let (tx, rx) = mpsc::unbounded_channel();
    let (node_tx, node_rx) = mpsc::unbounded_channel();
    let client = ClusterClient::new(topo, opts, node_tx, 0);
    tokio::spawn(run_task(client, rx, node_rx));
    PipelineHandle::from_sender(tx)
}

async fn run_task(
    mut c: ClusterClient,
    mut rx: mpsc::UnboundedReceiver<Batch>,
    mut node_rx: mpsc::UnboundedReceiver<Reply>,
) {
    let mut client: Option<ReplySender> = None;
    let mut ready = Vec::new();
    loop {
        let next_retry = c.next_retry();
        tokio::select! {
            biased;
            Some(r) = node_rx.recv() => {
                c.on_reply(r);
                while let Ok(r) = node_rx.try_recv() {
                    c.on_reply(r);
                }
            }
            b = rx.recv() => match b {
                Some(b) => {
                    client.get_or_insert_with(|| b.reply.clone());
                    c.send(b.data, b.flags);
                    while let Ok(b) = rx.try_recv() {
                        c.send(b.data, b.flags);
                    }
                }
                // The client is gone: replies still owed are dropped by the nodes'
                // connections (sends to a closed channel are ignored).
                None => return,
            },
            _ = sleep_until(next_retry), if next_retry.is_some() => c.on_timer(),
        }
        c.flush();
        c.take_replies(&mut ready);
        if let Some(tx) = &client {
            for r in ready.drain(..) {
                let _ = tx.send(r);
            }
        }
    }
}

/// What the session learned of one command of a batch (see
/// [`ClusterClient::send_hinted`]).
#[derive(Debug, Clone, Copy)]
pub struct Hint {
    /// Its length in the batch.
    pub len: u32,
    /// The slot it goes to as is, or [`Hint::NONE`] (the router looks at it itself).
    pub slot: u16,
}

impl Hint {
    pub const NONE: u16 = u16::MAX;
}

/// The slot of a command that goes as is to one slot's master: keys at fixed positions
/// (no movable keys, no container), all in one slot, no pub/sub. `None` for anything else
/// (the router then parses and routes it itself). `arg(i)` is argument i.
pub fn direct_slot<'a>(
    info: &command::CommandInfo,
    argc: usize,
    arg: impl Fn(usize) -> &'a [u8],
) -> Option<u16> {
    use command::flags::{CONTAINER, MOVABLE_KEYS, PUBSUB, TRANSACTION};
    if info.first_key <= 0 || info.has(MOVABLE_KEYS | CONTAINER | PUBSUB | TRANSACTION) {
        return None;
    }
    let first = info.first_key as usize;
    let last = if info.last_key < 0 {
        (argc as i64 + i64::from(info.last_key)).max(0) as usize
    } else {
        info.last_key as usize
    };
    let step = info.step.max(1) as usize;
    let mut slot = None;
    let mut i = first;
    while i <= last && i < argc {
        let s = key_slot(arg(i));
        match slot {
            None => slot = Some(s),
            Some(x) if x != s => return None,
            _ => {}
        }
        i += step;
    }
    slot
}

/// How the replies of an entry's parts become the client's one reply.
#[derive(Debug, Clone)]
enum Merge {
    /// One part: its reply as is.
    One,
    /// MGET split per slot: `positions[p]` are the indexes of part p's keys in the request.
    Mget {
        positions: Vec<Vec<usize>>,
        keys: usize,
    },
    /// MSET: `+OK` unless a part failed.
    AllOk,
    /// DEL, UNLINK, EXISTS, TOUCH, DBSIZE: the sum.
    Sum,
    /// KEYS: the arrays concatenated.
    Concat,
    /// RANDOMKEY: the first part that found a key.
    FirstNonNil,
    /// Broadcasts: the first error, else the first part's reply.
    First,
    /// SCAN on master `node` of `masters`: the cursor is rewritten to carry the master.
    Scan { node: usize, masters: usize },
    /// A reply the proxy decided: the parts' replies are dropped.
    Replace(Bytes),
}

#[derive(Debug)]
struct Part {
    cmd: Bytes,
    /// Where it goes: a slot, or a node (keyless or redirected).
    slot: Option<u16>,
    node: Option<NodeAddr>,
    result: Option<Bytes>,
    attempts: u32,
    /// Replies received, for a part that gets several (UNSUBSCRIBE outside pub/sub).
    got: u32,
    failed: bool,
}

#[derive(Debug)]
struct Entry {
    parts: SmallVec<[Part; 1]>,
    pending: usize,
    merge: Merge,
    /// Replies the client expects (0 for subscribe-family commands: their confirmations
    /// come as unsolicited frames).
    replies: u32,
    /// A reply already known (local answers, CROSSSLOT).
    local: Option<Bytes>,
}

impl Entry {
    /// A command sent as `parts`, their replies merged by `merge` (one reply expected).
    fn sent(parts: SmallVec<[Part; 1]>, merge: Merge) -> Entry {
        Entry {
            pending: parts.len(),
            parts,
            merge,
            replies: 1,
            local: None,
        }
    }
}

/// One reply owed by a node connection.
#[derive(Debug, Clone, Copy)]
struct Owed {
    seq: u64,
    part: usize,
    /// A reply nobody waits for (the `+OK` of an ASKING before a redirected command, or of
    /// a MULTI the proxy already answered): dropped.
    discard: bool,
}

struct Conn {
    addr: NodeAddr,
    handle: PipelineHandle,
    owed: VecDeque<Owed>,
    /// Commands for this node not yet handed over: everything routed while handling one
    /// batch from the client leaves as one batch per node (one write, one reply message).
    out: BytesMut,
    out_count: u32,
    out_flags: u8,
}

/// The transaction of a dedicated client.
#[derive(Debug, Default)]
struct Multi {
    /// The slot (and so the node) the transaction runs on, once a key named it.
    slot: Option<u16>,
    node: Option<NodeAddr>,
    /// Commands before the first key (MULTI and keyless ones), already answered (`+OK`,
    /// `+QUEUED`) and sent once the node is known, their replies dropped. If the server
    /// refuses one, it flags the transaction and EXEC answers EXECABORT, as Redis would.
    held: Vec<Bytes>,
    /// A command was refused (CROSSSLOT): EXEC becomes DISCARD and answers EXECABORT.
    dirty: bool,
}

/// One client's routing state: takes the client's commands, sends each to the node of its
/// slot, follows redirections and gives the replies back in the client's order. It does no
/// I/O of its own: the owner feeds it batches ([`send`](Self::send)), node replies
/// ([`on_reply`](Self::on_reply)) and retry deadlines, and takes the client's replies
/// ([`take_replies`](Self::take_replies)).
pub struct ClusterClient {
    topo: Arc<Topology>,
    opts: ClientOptions,
    /// Where node connections send their replies (tagged with [`ClusterClient::owns`]).
    node_tx: ReplySender,
    /// `generation << 16`: the high bits of this client's tags, so that replies meant for
    /// an earlier client of the same session are told apart.
    tag_base: u32,
    /// Replies ready for the client, in its order.
    ready: Vec<Reply>,
    /// Reused for the merged replies handed to the client.
    emit_buf: BytesMut,
    /// Batches that must wait (a retry pending, or a map change with commands in flight).
    waiting: VecDeque<(Bytes, BatchFlags)>,
    /// Index + 1 (+ `tag_base`) = the tag of its replies.
    conns: Vec<Option<Conn>>,
    /// Entries in the client's order; `entries[0]` has sequence number `base`.
    entries: VecDeque<Entry>,
    base: u64,
    /// The map commands in flight were routed with.
    map: Arc<MapState>,
    /// Per shard of `map`: the tag of our connection to its master (0 = none yet).
    shard_tag: Vec<u32>,
    parser: RequestParser,
    scanner: ReplyScanner,
    keybuf: Vec<usize>,
    argbuf: Vec<std::ops::Range<usize>>,
    multi: Option<Multi>,
    /// WATCH pins the slot of a transaction to come.
    watch: Option<(u16, NodeAddr)>,
    /// Parts waiting to be resent: (when, seq, part).
    retries: Vec<(Instant, u64, usize)>,
    /// Where each batch taken ends (the sequence number after its last entry): replies
    /// are handed over a whole batch at a time, see [`emit`](Self::emit).
    batch_ends: VecDeque<u64>,
    /// A command with several keys of a slot seen migrating ([`crate::migrating`]): it
    /// may get `-TRYAGAIN` and be resent later, so nothing after it goes until it is
    /// answered (the rest of its batch waits in `waiting`).
    barrier: Option<u64>,
}

/// Complete replies held back for the rest of their batch at most (a batch that big is
/// handed over as it completes).
const HOLD_MAX_ENTRIES: usize = 64;

impl ClusterClient {
    /// `node_tx` receives the nodes' replies, to be given back to [`on_reply`]
    /// (Self::on_reply); `generation` tells this client's tags from those of an earlier
    /// one on the same channel.
    pub fn new(
        topo: Arc<Topology>,
        opts: ClientOptions,
        node_tx: ReplySender,
        generation: u16,
    ) -> ClusterClient {
        let map = topo.map().clone();
        let mut parser = RequestParser::new(Limits::default());
        parser.set_authenticated(true);
        ClusterClient {
            shard_tag: vec![0; map.slots.shards().len()],
            topo,
            opts,
            node_tx,
            tag_base: u32::from(generation) << 16,
            ready: Vec::new(),
            emit_buf: BytesMut::new(),
            waiting: VecDeque::new(),
            conns: Vec::new(),
            entries: VecDeque::new(),
            base: 0,
            map,
            parser,
            scanner: ReplyScanner::default(),
            keybuf: Vec::new(),
            argbuf: Vec::new(),
            multi: None,
            watch: None,
            retries: Vec::new(),
            batch_ends: VecDeque::new(),
            barrier: None,
        }
    }

    /// Takes whole commands of the client (valid ones: the session checked them) and
    /// routes them, or keeps them until they may go. Nothing is written until [`flush`]
    /// (Self::flush).
    pub fn send(&mut self, data: Bytes, flags: BatchFlags) {
        if self.waiting.is_empty() && self.can_take() {
            self.on_batch(data, flags);
        } else {
            self.waiting.push_back((data, flags));
        }
    }

    /// Whether a reply on the owner's channel belongs to this client.
    pub fn owns(&self, tag: u32) -> bool {
        tag > self.tag_base && tag - self.tag_base <= 0xffff
    }

    /// A node's reply (a tag this client [`owns`](Self::owns)).
    pub fn on_reply(&mut self, r: Reply) {
        self.on_node_reply(r);
        self.after_progress();
    }

    /// When the earliest retry is due.
    pub fn next_retry(&self) -> Option<Instant> {
        self.retries.iter().map(|r| r.0).min()
    }

    /// Resends what is due (call at [`next_retry`](Self::next_retry)).
    pub fn on_timer(&mut self) {
        self.retry_due();
        self.after_progress();
    }

    /// Hands every node the commands routed to it since the last flush (one batch each).
    pub fn flush(&mut self) {
        self.flush_out();
    }

    /// Moves the replies ready for the client (in its order) into `out`.
    pub fn take_replies(&mut self, out: &mut Vec<Reply>) {
        self.emit();
        if !self.waiting.is_empty() {
            // What `emit` just handed over may have been all that kept a waiting batch
            // back (a new map is adopted only with nothing in flight): nothing else would
            // wake us for it.
            self.after_progress();
            self.emit();
        }
        out.append(&mut self.ready);
    }

    /// Nothing in flight, held, or waiting.
    pub fn idle(&self) -> bool {
        self.entries.is_empty()
            && self.waiting.is_empty()
            && self.retries.is_empty()
            && self.conns.iter().flatten().all(|c| c.owed.is_empty())
    }

    /// After replies or retries: batches that waited may go now; resends are written.
    fn after_progress(&mut self) {
        while !self.waiting.is_empty() && self.can_take() {
            if let Some((data, flags)) = self.waiting.pop_front() {
                self.on_batch(data, flags);
            }
        }
        self.flush_out();
    }

    /// New batches wait while a retry is pending (a later command must not overtake it)
    /// and while commands routed with an older map are in flight.
    fn can_take(&mut self) -> bool {
        if !self.retries.is_empty() {
            return false;
        }
        if let Some(b) = self.barrier {
            if !self.answered(b) {
                return false;
            }
            self.barrier = None;
        }
        let epoch = self.topo.map().epoch;
        if epoch != self.map.epoch {
            // Commands already answered may still wait to be handed over with the rest of
            // their batch (a batch split at a barrier ends after the commands held behind
            // it): they can't be overtaken, so they don't hold the new map back. Waiting
            // for them to leave `entries` instead deadlocked a batch whose held command
            // waited for the map while its answered barrier waited for that command.
            if !all_answered(&self.entries)
                || self.conns.iter().flatten().any(|c| !c.owed.is_empty())
            {
                return false;
            }
            self.adopt_map();
        }
        true
    }

    fn adopt_map(&mut self) {
        self.map = self.topo.map().clone();
        self.shard_tag = vec![0; self.map.slots.shards().len()];
        for (i, c) in self.conns.iter_mut().enumerate() {
            let Some(conn) = c else { continue };
            if let Some(s) = self
                .map
                .slots
                .shards()
                .iter()
                .position(|s| s.master == conn.addr)
            {
                self.shard_tag[s] = i as u32 + 1;
            } else if conn.owed.is_empty() && !self.opts.dedicated {
                // A node that left the cluster (or became a replica): let its shared
                // connection go.
                *c = None;
            }
        }
    }

    /// Whether entry `seq` has its whole reply (or was handed over already).
    fn answered(&self, seq: u64) -> bool {
        let Some(i) = seq.checked_sub(self.base) else {
            return true;
        };
        usize::try_from(i)
            .ok()
            .and_then(|i| self.entries.get(i))
            .is_none_or(|e| {
                e.local.is_some() || (e.pending == 0 && e.parts.iter().all(|p| p.result.is_some()))
            })
    }

    fn seq_end(&self) -> u64 {
        self.base + self.entries.len() as u64
    }

    fn entry_mut(&mut self, seq: u64) -> Option<&mut Entry> {
        let i = seq.checked_sub(self.base)?;
        self.entries.get_mut(usize::try_from(i).ok()?)
    }

    /// [`send`](Self::send) with what the session already learned of each command while
    /// parsing it: its length and, for a command that goes as is to one slot's master,
    /// that slot. Those skip the router's own parse, lookup and key hashing. The hints
    /// must cover `data` exactly, else they are ignored.
    pub fn send_hinted(&mut self, data: Bytes, hints: &[Hint], flags: BatchFlags) {
        let covered: usize = hints.iter().map(|h| h.len as usize).sum();
        if covered != data.len() || !self.waiting.is_empty() || !self.can_take() {
            return self.send(data, flags);
        }
        let mut pos = 0;
        for h in hints {
            let end = pos + h.len as usize;
            let cmd = data.slice(pos..end);
            pos = end;
            // A slot seen migrating: the router looks at the command itself (it may have
            // several keys there, and hold what follows).
            if h.slot == Hint::NONE || self.topo.migrating.is_migrating(h.slot) {
                if self.route_frames(&cmd, flags).is_some() && end < data.len() {
                    self.waiting.push_front((data.slice(end..), flags));
                    return;
                }
                continue;
            }
            let seq = self.seq_end();
            self.entries.push_back(Entry {
                parts: smallvec![Part::new(cmd, Some(h.slot), None)],
                pending: 1,
                merge: Merge::One,
                replies: 1,
                local: None,
            });
            self.send_part(seq, 0, false, flags);
        }
        self.end_batch();
    }

    fn on_batch(&mut self, data: Bytes, flags: BatchFlags) {
        match self.route_frames(&data, flags) {
            // A barrier: the rest of the batch goes once it is answered, and the batch
            // ends with that rest (its replies are still handed over together).
            Some(end) if end < data.len() => self.waiting.push_front((data.slice(end..), flags)),
            _ => self.end_batch(),
        }
    }

    fn end_batch(&mut self) {
        let end = self.seq_end();
        if self.batch_ends.back().is_none_or(|&b| b < end) {
            self.batch_ends.push_back(end);
        }
    }

    /// Parses and routes whole commands. Stops after a command that became a
    /// [`barrier`](Self::barrier) and returns where it ended (the rest is not routed).
    fn route_frames(&mut self, data: &Bytes, flags: BatchFlags) -> Option<usize> {
        let pubsub = flags.has(BatchFlags::PUBSUB);
        let mut pos = 0;
        while pos < data.len() {
            let frame = match self.parser.parse(&data[pos..]) {
                Ok(Some(f)) => f,
                // The session hands over whole, valid commands only.
                _ => break,
            };
            let end = pos + frame.len;
            if frame.kind == FrameKind::Multibulk {
                let cmd = data.slice(pos..end);
                if self.on_command(cmd, pubsub, flags) {
                    return Some(end);
                }
            }
            pos = end;
        }
        None
    }

    /// Routes one command: makes its entry and sends its parts. True if it is a barrier.
    fn on_command(&mut self, cmd: Bytes, pubsub: bool, flags: BatchFlags) -> bool {
        // The argument list is reused from command to command (no allocation per command).
        let mut args = std::mem::take(&mut self.argbuf);
        args.clear();
        args.extend_from_slice(self.parser.args());
        let seq = self.seq_end();
        self.route_command(cmd, &args, pubsub, flags);
        self.argbuf = args;
        self.barrier == Some(seq)
    }
}

impl Part {
    fn new(cmd: Bytes, slot: Option<u16>, node: Option<NodeAddr>) -> Part {
        Part {
            cmd,
            slot,
            node,
            result: None,
            attempts: 0,
            got: 0,
            failed: false,
        }
    }
}

fn local(reply: Bytes) -> Entry {
    Entry {
        parts: SmallVec::new(),
        pending: 0,
        merge: Merge::One,
        replies: 1,
        local: Some(reply),
    }
}

fn bulk(b: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(b.len() + 16);
    resp::encode::bulk(&mut out, b);
    out.freeze()
}

async fn sleep_until(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t.into()).await,
        None => std::future::pending().await,
    }
}

/// Appends the client's reply for a finished entry.
fn merge_into(out: &mut BytesMut, mut e: Entry, resp3: bool) {
    if let Some(r) = e.local {
        out.extend_from_slice(&r);
        return;
    }
    if let Merge::One = e.merge {
        // The common case, without collecting the results first.
        for p in &e.parts {
            out.extend_from_slice(p.result.as_deref().unwrap_or_default());
        }
        return;
    }
    let results: Vec<Bytes> = e
        .parts
        .iter_mut()
        .map(|p| p.result.take().unwrap_or_default())
        .collect();
    if let Merge::Replace(r) = &e.merge {
        out.extend_from_slice(r);
        return;
    }
    if !matches!(e.merge, Merge::One | Merge::Scan { .. }) {
        if let Some(err) = results.iter().find(|r| r.first() == Some(&b'-')) {
            out.extend_from_slice(err);
            return;
        }
    }
    match e.merge {
        Merge::One | Merge::Replace(_) => {
            for r in &results {
                out.extend_from_slice(r);
            }
        }
        Merge::First => out.extend_from_slice(results.first().map_or(&b"+OK\r\n"[..], |r| r)),
        Merge::AllOk => out.extend_from_slice(b"+OK\r\n"),
        Merge::Sum => {
            let sum: i64 = results.iter().filter_map(|r| parse_int(r)).sum();
            out.extend_from_slice(format!(":{sum}\r\n").as_bytes());
        }
        Merge::FirstNonNil => {
            let hit = results
                .iter()
                .find(|r| !matches!(&r[..], b"$-1\r\n" | b"_\r\n" | b"*-1\r\n"));
            match (hit, results.first()) {
                (Some(r), _) | (None, Some(r)) => out.extend_from_slice(r),
                (None, None) => out.extend_from_slice(if resp3 { b"_\r\n" } else { b"$-1\r\n" }),
            }
        }
        Merge::Concat => {
            let mut elems = Vec::new();
            for r in &results {
                elems.extend(array_elements(r).unwrap_or_default());
            }
            resp::encode::array_header(out, elems.len());
            for el in elems {
                out.extend_from_slice(&el);
            }
        }
        Merge::Mget { positions, keys } => {
            let mut slots: Vec<Option<Bytes>> = vec![None; keys];
            for (r, pos) in results.iter().zip(positions.iter()) {
                let elems = array_elements(r).unwrap_or_default();
                for (el, &k) in elems.into_iter().zip(pos.iter()) {
                    if let Some(s) = slots.get_mut(k) {
                        *s = Some(el);
                    }
                }
            }
            resp::encode::array_header(out, keys);
            for s in slots {
                match s {
                    Some(b) => out.extend_from_slice(&b),
                    None => out.extend_from_slice(if resp3 { b"_\r\n" } else { b"$-1\r\n" }),
                }
            }
        }
        Merge::Scan { node, masters } => {
            let r = results.into_iter().next().unwrap_or_default();
            out.extend_from_slice(&rewrite_scan(&r, node, masters));
        }
    }
}

fn parse_int(r: &[u8]) -> Option<i64> {
    let body = r.strip_prefix(b":")?;
    let end = body.iter().position(|&b| b == b'\r')?;
    std::str::from_utf8(&body[..end]).ok()?.parse().ok()
}

/// The elements of an array reply, each as its raw frame. `None` for anything else.
fn array_elements(r: &Bytes) -> Option<Vec<Bytes>> {
    if r.first() != Some(&b'*') {
        return None;
    }
    let nl = r.iter().position(|&b| b == b'\n')?;
    let n: i64 = std::str::from_utf8(r.get(1..nl.checked_sub(1)?)?)
        .ok()?
        .parse()
        .ok()?;
    let mut pos = nl + 1;
    let mut scanner = ReplyScanner::default();
    let mut out = Vec::with_capacity(n.max(0) as usize);
    for _ in 0..n.max(0) {
        let len = scanner.scan(r.get(pos..)?).ok()??;
        out.push(r.slice(pos..pos + len));
        pos += len;
    }
    Some(out)
}

/// `*2\r\n$N\r\n<cursor>\r\n<keys>`: the cursor becomes (cursor << bits | node), or the
/// next master's start when this master is done, or 0 after the last master.
fn rewrite_scan(r: &Bytes, node: usize, masters: usize) -> Bytes {
    let Some(elems) = array_elements(r) else {
        return r.clone();
    };
    let (Some(cur), Some(keys)) = (elems.first(), elems.get(1)) else {
        return r.clone();
    };
    let cursor = (|| {
        let nl = cur.iter().position(|&b| b == b'\n')?;
        let body = cur.get(nl + 1..cur.len().checked_sub(2)?)?;
        std::str::from_utf8(body).ok()?.parse::<u64>().ok()
    })();
    let Some(cursor) = cursor else {
        return r.clone();
    };
    let next = if cursor == 0 {
        if node + 1 < masters {
            (node + 1) as u64
        } else {
            0
        }
    } else if cursor >> (64 - SCAN_NODE_BITS) != 0 {
        return Bytes::from_static(b"-ERR cutover: SCAN cursor too large to route\r\n");
    } else {
        (cursor << SCAN_NODE_BITS) | node as u64
    };
    let mut out = BytesMut::with_capacity(r.len() + 16);
    out.extend_from_slice(b"*2\r\n");
    resp::encode::bulk(&mut out, next.to_string().as_bytes());
    out.extend_from_slice(keys);
    out.freeze()
}
