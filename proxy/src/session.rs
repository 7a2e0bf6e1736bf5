//! One client connection: reads its commands, answers those the proxy owns, forwards the
//! rest, and writes every reply back in the order the commands arrived.
//!
//! Ordering: a client's commands go to ONE backend connection at a time (shared, pinned by
//! client id; or its own dedicated one), so they never race each other. Replies come back
//! through the client's own channel; `pending` records, in command order, whether the next
//! replies come from the backend (and how many) or are the proxy's own, so the two kinds
//! interleave exactly as the commands did.
//!
//! Batching: consecutive forwarded commands in the input buffer are handed over as one
//! zero-copy `Bytes` (one channel message, one pending entry), so a pipeline of 16 costs
//! about what one command does.
//!
//! Switching connection (to a dedicated one, or to another db/protocol pool) first waits
//! until every reply owed on the current one has arrived: the input buffer simply stops
//! being parsed, so it doubles as the queue of held commands.
//!
//! The parts, each with its own state: `replies.rs` (what is owed equals what is pending),
//! `routing.rs` (the embedded cluster router), `migrate.rs` (the client's share of a
//! cutover), `registry.rs` (the client as CLIENT LIST/UNBLOCK/TRACKING see it), `local.rs`
//! (the commands the proxy answers itself). This file: the socket loop and the dispatch.
//!
//! Backpressure: at most `max_inflight_per_client` commands of a client are owed replies;
//! beyond that the client is not read. Replies for a client that does not read accumulate
//! up to `client_output_limit`, then it is disconnected (the shared connection never waits
//! for a slow client).

mod classify;
mod local;
mod migrate;
mod registry;
mod replies;
mod routing;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::{Buf, Bytes, BytesMut};
use cluster::client::{ClientOptions, ClusterClient, Hint};
use cluster::pipeline::{
    pubsub_frame, Batch, BatchFlags, PubSubKind, Reply, ReplyKind, ReplySender,
};
use cluster::PipelineHandle;
use resp::command::{self, flags, CommandInfo};
use resp::{FrameKind, Limits, RequestParser};
use smallvec::SmallVec;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::auth::Users;
use crate::config::Settings;
use crate::metrics::{Kind, Metrics};
use crate::route::{Route, Router};
use crate::stats::Stats;
use crate::track::Touch;
#[cfg(test)]
pub(crate) use classify::{classify, sub_kind};
pub(crate) use classify::{classify_info, Action, Effect, TimeoutArg};
use migrate::Migration;

/// What every session shares.
pub struct Shared {
    pub settings: Settings,
    pub users: Users,
    /// Where commands go now (source, or target after the cutover).
    pub router: Arc<Router>,
    /// Script bodies seen through the proxy (EVAL, SCRIPT LOAD), loaded on the target
    /// before the switch so EVALSHA keeps working.
    pub scripts: crate::scripts::Scripts,
    pub stats: Arc<Stats>,
    pub metrics: Metrics,
    pub next_client_id: AtomicU64,
    pub shutdown: CancellationToken,
    /// The syncer's state, when a target is configured.
    pub sync: Option<Arc<sync::SyncSet>>,
    pub source: Arc<crate::upstream::Upstream>,
    /// The target, once it answered (a target down at start is reached later, in the
    /// background: the clients are served from the source meanwhile).
    pub target: arc_swap::ArcSwapOption<crate::upstream::Upstream>,
    pub cutover: crate::cutover::CutoverStatus,
    /// TLS on the client listener, when configured.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// The proxy's own clients (CLIENT KILL).
    pub clients: crate::clients::Clients,
    /// Stops the syncer (FINISH, shutdown).
    pub stop_sync: tokio::sync::watch::Sender<bool>,
    /// The SCAN copy's tracker (source_mode scan or auto): the keys written are marked
    /// once their replies arrive.
    pub tracker: Option<Arc<sync::tracking::Tracker>>,
    /// Admin VERIFY.
    pub verify: crate::verify::VerifyState,
    /// The users clients logged in as (client_auth = "source"): made to exist on the
    /// target before a CUTOVER.
    pub logins: crate::users::SeenLogins,
}

/// Serves one client until it leaves, misbehaves, or the proxy shuts down.
pub async fn serve(stream: TcpStream, peer: SocketAddr, sh: Arc<Shared>) {
    let id = sh.next_client_id.fetch_add(1, Ordering::Relaxed);
    let local_addr = stream.local_addr().ok();
    let _ = stream.set_nodelay(true);
    let (tx, rx) = mpsc::unbounded_channel();
    let limits = Limits {
        max_bulk_len: sh.settings.max_bulk_len,
        ..Limits::default()
    };
    let mut parser = RequestParser::new(limits);
    let sh_route = Arc::clone(&sh.router.route());
    let auth_required = auth_required(&sh, &sh_route);
    parser.set_authenticated(!auth_required);
    let mut s = Session {
        st: ClientState {
            id,
            peer,
            created: Instant::now(),
            db: sh_route.upstream.default_db(),
            resp3: false,
            name: None,
            lib_name: None,
            lib_ver: None,
            user: None,
            authenticated: !auth_required,
            reply_mode: ReplyMode::On,
            monitoring: false,
            dedicated: false,
            subscribed: false,
            in_multi: false,
            watching: false,
            watch_broken: false,
        },
        sh,
        parser,
        inbuf: BytesMut::new(),
        batch: BatchAcc::default(),
        out: BytesMut::new(),
        pending: VecDeque::new(),
        owed: 0,
        dedicated: None,
        tx,
        rx,
        wait_drain: false,
        closing: false,
        counts: [0; 9],
        held: false,
        mig: Migration {
            presub_id: -1,
            ..Migration::default()
        },
        subs: Default::default(),
        counted_subscriber: false,
        next_writes: 0,
        lane: 0,
        next_touches: Vec::new(),
        tx_touches: Vec::new(),
        tx_db: 0,
        backend_id: -1,
        block: None,
        route: Arc::clone(&sh_route),
        changes: tokio::sync::watch::channel(0).1,
        skip_pending: false,
        batches_sent: 0,
        queued: Vec::new(),
        cluster: None,
        retiring: Vec::new(),
        deferred: VecDeque::new(),
        cluster_gen: 0,
        cluster_ready: Vec::new(),
        hints: Vec::new(),
        login: None,
        user_pools: None,
        last_info: None,
        view: Default::default(),
    };
    s.changes = s.sh.router.subscribe();
    // Cancelled by the shutdown or by another client's CLIENT KILL: either way the client
    // gets what it is owed, then the connection closes.
    s.publish();
    let closed =
        s.sh.clients
            .register(id, peer, local_addr, &s.sh.shutdown, s.view.clone());
    let result = s.run(stream, closed).await;
    s.sh.clients.unregister(id);
    // Replies this client will never read still count as in flight until they come; the
    // cutover's drain must not wait for them forever.
    let counted: u32 = s
        .pending
        .iter()
        .map(|p| match p {
            Pending::Backend { writes, .. } | Pending::Exec { writes, .. } => *writes,
            Pending::Local(_) => 0,
        })
        .sum::<u32>()
        + s.batch.writes
        + s.next_writes;
    s.sh.router.add_inflight(-(counted as i64));
    // Writes this client sent whose replies it left before: marked now, and again a
    // moment later in case they had not run yet (a mark must follow the write).
    if let Some(t) = s.sh.tracker.clone().filter(|t| t.enabled()) {
        let mut left: Vec<Touch> = Vec::new();
        for p in s.pending.iter_mut() {
            if let Pending::Backend { touches, .. } | Pending::Exec { touches, .. } = p {
                left.append(touches);
            }
        }
        left.append(&mut s.batch.touches);
        left.append(&mut s.next_touches);
        if !left.is_empty() {
            crate::track::apply(&t, left.clone());
            tokio::spawn(async move {
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                crate::track::apply(&t, left);
            });
        }
    }
    if s.held {
        s.sh.router.held_clients.fetch_sub(1, Ordering::Relaxed);
    }
    if s.counted_subscriber {
        s.sh.router.subscribers.fetch_sub(1, Ordering::Relaxed);
    }
    if s.mig.presub_counted {
        s.sh.router.resubscribed.fetch_sub(1, Ordering::Relaxed);
    }
    if s.st.in_multi {
        s.sh.router.in_multi.fetch_sub(1, Ordering::Relaxed);
    }
    if let Err(e) = result {
        tracing::debug!(client = id, %peer, reason = %e, "client connection closed");
    }
}

/// Per-client state the proxy keeps (what Redis keeps per connection).
pub(crate) struct ClientState {
    pub id: u64,
    pub peer: SocketAddr,
    pub created: Instant,
    pub db: u32,
    pub resp3: bool,
    pub name: Option<Bytes>,
    pub lib_name: Option<Bytes>,
    pub lib_ver: Option<Bytes>,
    /// Authenticated user name; None = default.
    pub user: Option<Bytes>,
    pub authenticated: bool,
    pub reply_mode: ReplyMode,
    pub monitoring: bool,
    /// Whether the client is on a dedicated connection.
    pub dedicated: bool,
    /// RESP2 pub/sub mode: only (P|S)(UN)SUBSCRIBE, PING, QUIT and RESET are allowed.
    pub subscribed: bool,
    /// Between MULTI and EXEC/DISCARD.
    pub in_multi: bool,
    /// WATCH in effect (until EXEC, DISCARD, UNWATCH).
    pub watching: bool,
    /// A WATCH spanned the switch to the target: the next EXEC answers nil, as if a
    /// watched key had changed.
    pub watch_broken: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReplyMode {
    On,
    Off,
    /// Skip the reply of the next command.
    Skip,
}

enum Pending {
    /// `remaining` replies still to come from the backend.
    Backend {
        remaining: u32,
        discard: bool,
        /// Set on the batches sampled for the latency histogram.
        sent: Option<Instant>,
        /// Writes among these commands, counted in `Router::inflight` until all replied.
        writes: u32,
        /// What they change, for the tracker once all replied (empty unless tracking).
        touches: Vec<Touch>,
    },
    /// The proxy's own reply, waiting for earlier backend replies.
    Local(Bytes),
    /// EXEC of a transaction that queued commands the proxy answers itself: their
    /// results are spliced into the server's EXEC reply at their positions.
    Exec {
        queued: Vec<Queued>,
        discard: bool,
        writes: u32,
        touches: Vec<Touch>,
    },
}

/// A blocking command in flight, as sent, with when it was sent.
pub(crate) struct Blocked {
    raw: Bytes,
    at: Instant,
    timeout: TimeoutArg,
}

/// A command queued inside MULTI, in order.
pub(crate) enum Queued {
    /// Queued on the server. `set_db`: a SELECT, which takes effect at EXEC.
    Remote { set_db: Option<u32> },
    /// Answered by the proxy when EXEC runs.
    Local(local::Cmd, SmallVec<[Bytes; 4]>),
}

/// The forwarded commands at the front of the input buffer, not yet handed over.
#[derive(Default)]
struct BatchAcc {
    end: usize,
    count: u32,
    flags: u8,
    /// Writes in it, already counted in `Router::inflight`.
    writes: u32,
    /// What they change (tracking only).
    touches: Vec<Touch>,
}

#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("output buffer over limit ({0} bytes): client not reading")]
    OutputLimit(usize),
}

struct Session {
    st: ClientState,
    sh: Arc<Shared>,
    parser: RequestParser,
    inbuf: BytesMut,
    batch: BatchAcc,
    out: BytesMut,
    pending: VecDeque<Pending>,
    /// Replies owed by the backend (sum of `Pending::Backend::remaining`).
    owed: u32,
    dedicated: Option<PipelineHandle>,
    tx: ReplySender,
    rx: mpsc::UnboundedReceiver<Reply>,
    /// A command needs every owed reply first; input is not parsed until `owed == 0`.
    wait_drain: bool,
    /// QUIT, shutdown, EOF or a fatal error: finish what is owed, then close.
    closing: bool,
    /// Commands handled since the last flush to the metrics, by kind.
    counts: [u64; 9],
    /// CLIENT REPLY SKIP was just run.
    skip_pending: bool,
    /// Holding commands behind the cutover's gate (they wait in `inbuf`).
    held: bool,
    /// The client's share of a cutover in progress (see `migrate.rs`).
    mig: Migration,
    /// Channels, patterns and shard channels subscribed (to subscribe again on the target).
    subs: [std::collections::BTreeSet<Bytes>; 3],
    /// Counted in `Router::subscribers`.
    counted_subscriber: bool,
    /// Writes already counted in `Router::inflight` for the next `send`.
    next_writes: u32,
    /// The lane of the shared connections this client's commands go to (0, or
    /// [`crate::upstream::LANE_SCRIPTS`]).
    lane: u8,
    /// What the next `send`'s writes change (tracking only).
    next_touches: Vec<Touch>,
    /// What the commands queued since MULTI change: marked at EXEC's reply.
    tx_touches: Vec<Touch>,
    /// The db the commands queued since MULTI run in (a queued SELECT changes it).
    tx_db: u32,
    /// The server's id of the dedicated connection.
    backend_id: i64,
    /// The blocking command waiting on the dedicated connection, if any.
    block: Option<Blocked>,
    /// The route this client's commands go to (its `epoch` is the one its connections
    /// belong to). Adopted from the router in `route_changed` only, never read afresh
    /// when a batch leaves: a switch landing between the check at the top of
    /// `process_input` and the flush of the batch parsed meanwhile would otherwise send it
    /// to the new upstream while the old one still owes replies, and replies from two
    /// servers could come back out of order. Such a batch holds reads only (a write keeps
    /// the drain, hence the switch, waiting until its reply is in) and goes to the fenced
    /// old side, behind what it owes; the next command sees the switch first.
    route: Arc<Route>,
    changes: tokio::sync::watch::Receiver<u64>,
    /// Backend batches sent, for sampling the latency histogram.
    batches_sent: u32,
    /// Commands queued since MULTI (only kept while `st.in_multi`).
    queued: Vec<Queued>,
    /// On a cluster (shared connections): this client's routing state, run inside the
    /// session (no task hop per batch), with the (route epoch, RESP3, lane) it serves. Node
    /// replies reach it through `rx` with the tags it owns; tag 0 is everything else.
    cluster: Option<((u64, bool, u8), ClusterClient)>,
    /// Routers replaced while they still owed replies (a route switch that landed while a
    /// batch was being handed over): their replies come first, in order, and the rest
    /// (`deferred`, the current router's) wait for them.
    retiring: Vec<ClusterClient>,
    deferred: VecDeque<Reply>,
    /// Counts routers made, so a new one's tags differ from an old one's.
    cluster_gen: u16,
    /// Replies the router has ready for the client (reused).
    cluster_ready: Vec<Reply>,
    /// One per command of `batch`, for the cluster router (reused).
    hints: Vec<Hint>,
    /// The user the client authenticated as, when the backend checks AUTH (its commands
    /// run as that user); None: the base pools' login.
    login: Option<Arc<cluster::Login>>,
    /// That user's pools on the upstream (by address) they belong to.
    user_pools: Option<(usize, Arc<crate::upstream::Pools>)>,
    /// The last command parsed since CLIENT LIST's view was stamped.
    last_info: Option<&'static CommandInfo>,
    /// What CLIENT LIST shows of this client.
    view: Arc<crate::clients::ClientView>,
}

/// Whether a new client must AUTH before its commands run: the proxy's own password is
/// set, or the backend checks AUTH and runs nothing for a connection that has not.
pub(super) fn auth_required(sh: &Shared, route: &Route) -> bool {
    sh.users.auth_required()
        || (sh.settings.auth_by_backend && !route.upstream.anonymous_ok.load(Ordering::Relaxed))
}

/// One batch in this many is timed for the latency histogram (a power of two).
const LATENCY_SAMPLE: u32 = 8;

const READ_RESERVE: usize = 4 * 1024;
const BIG_READ_RESERVE: usize = 64 * 1024;
/// Buffers larger than this are released when they empty, so idle clients stay small.
const KEEP_CAPACITY: usize = 64 * 1024;

impl Session {
    /// Serves the client over its connection: a plain socket (its halves borrowed, no
    /// lock), or TLS (split with tokio's lock; only TLS clients pay for it).
    async fn run(
        &mut self,
        stream: TcpStream,
        closed: CancellationToken,
    ) -> Result<(), SessionError> {
        let tls = self.sh.tls.clone();
        match tls {
            None => {
                let mut stream = stream;
                let (rd, wr) = stream.split();
                self.run_io(rd, wr, closed).await
            }
            Some(acceptor) => {
                let tls = match tokio::time::timeout(
                    std::time::Duration::from_secs(10),
                    acceptor.accept(stream),
                )
                .await
                {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        tracing::debug!(client = self.st.id, peer = %self.st.peer, error = %e, "TLS handshake failed");
                        return Ok(());
                    }
                    Err(_) => {
                        tracing::debug!(client = self.st.id, peer = %self.st.peer, "TLS handshake timed out");
                        return Ok(());
                    }
                };
                let (rd, wr) = tokio::io::split(tls);
                self.run_io(rd, wr, closed).await
            }
        }
    }

    async fn run_io<R, W>(
        &mut self,
        mut rd: R,
        mut wr: W,
        closed: CancellationToken,
    ) -> Result<(), SessionError>
    where
        R: tokio::io::AsyncRead + Unpin,
        W: tokio::io::AsyncWrite + Unpin,
    {
        // Built once: creating the `cancelled` future on every turn of the loop costs a
        // lock and a waiter registration per command.
        let cancelled = closed.cancelled();
        tokio::pin!(cancelled);
        let mut eof = false;
        loop {
            self.process_input().await?;
            self.cluster_progress();
            self.flush_counts();
            if self.out.len() > self.sh.settings.client_output_limit {
                self.sh.metrics.output_limit_disconnects.increment(1);
                tracing::warn!(client = self.st.id, peer = %self.st.peer, bytes = self.out.len(),
                    "client not reading its replies: disconnected");
                return Err(SessionError::OutputLimit(self.out.len()));
            }
            if self.closing && self.pending.is_empty() && self.out.is_empty() {
                let _ = wr.shutdown().await;
                return Ok(());
            }
            let can_read = !self.closing
                && !eof
                && !self.held
                && !self.wait_drain
                && self.owed + self.batch.count < self.sh.settings.max_inflight_per_client;
            if can_read {
                let spare = self.inbuf.capacity() - self.inbuf.len();
                if spare < 512 {
                    let want = if self.inbuf.len() >= READ_RESERVE {
                        BIG_READ_RESERVE
                    } else {
                        READ_RESERVE
                    };
                    self.inbuf.reserve(want);
                }
            }
            let next_retry = self
                .cluster
                .iter()
                .map(|(_, c)| c)
                .chain(&self.retiring)
                .filter_map(|c| c.next_retry())
                .min();
            tokio::select! {
                biased;
                Some(r) = self.rx.recv() => {
                    self.on_channel_reply(r);
                    while let Ok(r) = self.rx.try_recv() {
                        self.on_channel_reply(r);
                    }
                    self.cluster_progress();
                }
                _ = sleep_until(next_retry), if next_retry.is_some() => {
                    if let Some((_, c)) = &mut self.cluster {
                        c.on_timer();
                    }
                    for c in &mut self.retiring {
                        c.on_timer();
                    }
                    self.cluster_progress();
                }
                n = wr.write(&self.out), if !self.out.is_empty() => {
                    let n = n?;
                    self.out.advance(n);
                    if self.out.is_empty() && self.out.capacity() > KEEP_CAPACITY {
                        self.out = BytesMut::new();
                    }
                }
                n = rd.read_buf(&mut self.inbuf), if can_read => {
                    self.view.active_ms.store(
                        self.st.created.elapsed().as_millis() as u64,
                        Ordering::Relaxed,
                    );
                    if n? == 0 {
                        eof = true;
                        self.closing = true;
                        if self.dedicated.is_some() {
                            // Redis frees a client at EOF. Closing the private connection
                            // makes the server do the same: a blocked BLPOP or WAIT must
                            // not stay behind to swallow a later push.
                            return Ok(());
                        }
                        // On a shared connection the replies owed are still read (the
                        // connection must stay in step); a half-closed client gets them.
                    }
                }
                changed = self.changes.changed() => {
                    if changed.is_ok() {
                        self.changes.borrow_and_update();
                        self.route_changed();
                    }
                }
                _ = &mut cancelled, if !self.closing => {
                    self.closing = true;
                }
            }
        }
    }

    /// Parses and dispatches every complete command that may go now.
    async fn process_input(&mut self) -> Result<(), SessionError> {
        if self.mig.presub_wanted {
            self.mig.presub_wanted = false;
            self.subscribe_on_target().await;
        }
        if self.mig.reissue_wanted && !self.sh.router.gating() {
            self.mig.reissue_wanted = false;
            self.reissue_blocked().await;
        }
        loop {
            // A gate or route change not yet seen is applied before any further command
            // goes anywhere (the reply branch of `run` may have won the race to wake us).
            if self.changes.has_changed().unwrap_or(false) {
                self.changes.borrow_and_update();
                self.route_changed();
            }
            if self.closing && !self.inbuf_has_unsent() {
                break;
            }
            if self.wait_drain {
                if self.owed > 0 {
                    break;
                }
                self.wait_drain = false;
                if let Some(p) = self.mig.swap_after_drain.take() {
                    self.dedicated = Some(p);
                    self.set_backend_id(self.mig.presub_id);
                }
                if self.mig.stale_dedicated {
                    self.mig.stale_dedicated = false;
                    self.dedicated = None;
                    self.st.dedicated = false;
                    self.view.backend_id.store(-1, Ordering::Relaxed);
                }
            }
            if self.owed + self.batch.count >= self.sh.settings.max_inflight_per_client {
                break;
            }
            if self.closing {
                break;
            }
            let frame = match self.parser.parse(&self.inbuf[self.batch.end..]) {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => {
                    // Redis's behaviour: the error, then close. Earlier commands still run
                    // and get their replies first.
                    self.flush_batch();
                    self.sh.metrics.protocol_errors.increment(1);
                    tracing::debug!(client = self.st.id, peer = %self.st.peer, error = %e, "protocol error");
                    let mut b = BytesMut::new();
                    e.write_reply(&mut b);
                    self.reply_local_force(b.freeze());
                    self.inbuf.clear();
                    self.closing = true;
                    break;
                }
            };
            if frame.kind == FrameKind::Empty {
                if self.batch.end == 0 {
                    self.inbuf.advance(frame.len);
                } else {
                    // Redis ignores it too; let it travel with the batch.
                    self.batch.end += frame.len;
                    self.hints.push(Hint {
                        len: frame.len as u32,
                        slot: Hint::NONE,
                    });
                }
                continue;
            }
            let inline = frame.kind == FrameKind::Inline;
            let (action, slot) = {
                let base: &[u8] = if inline {
                    self.parser.inline_encoded()
                } else {
                    &self.inbuf[self.batch.end..self.batch.end + frame.len]
                };
                let args = self.parser.args();
                let info = args.first().and_then(|r| command::lookup(&base[r.clone()]));
                if let Some(i) = info {
                    // Containers (CLIENT, CONFIG...: arity -2, no keys) as `client|list`.
                    self.last_info = Some(match args.get(1) {
                        Some(sub) if i.arity == -2 && i.first_key == 0 => {
                            command::lookup_sub(i, &base[sub.clone()]).unwrap_or(i)
                        }
                        _ => i,
                    });
                }
                let route = &self.route;
                // On a cluster, the slot the router would find, found now (see Hint).
                let slot = match info {
                    Some(i) if self.dedicated.is_none() && route.upstream.cluster().is_some() => {
                        let arg =
                            |n: usize| -> &[u8] { args.get(n).map_or(&[], |r| &base[r.clone()]) };
                        cluster::client::direct_slot(i, args.len(), arg)
                    }
                    _ => None,
                };
                let action = classify_info(&self.st, route.upstream.databases(), base, args, info);
                (action, slot.unwrap_or(Hint::NONE))
            };
            // The cutover's gate: hold the first command that may write, and everything
            // after it. A transaction in progress runs to its end first.
            //
            // A write is counted in flight BEFORE the gate is read (both SeqCst; the cutover
            // closes the gate before reading the count): either this sees the gate and
            // holds, or the drain sees the write and waits for it. Reads are not counted:
            // heavy read traffic cannot keep the drain from reaching zero.
            let is_write = matches!(&action, Action::Forward { kind, count, .. } if *kind != Kind::Read && *count > 0);
            if is_write {
                self.sh.router.add_inflight(1);
            }
            if self.sh.router.gating() && !self.st.in_multi {
                let hold = self.held || is_write;
                if is_write {
                    self.sh.router.add_inflight(-1);
                }
                if hold {
                    self.flush_batch();
                    if !self.held {
                        self.held = true;
                        self.sh.router.held_clients.fetch_add(1, Ordering::Relaxed);
                    }
                    break;
                }
            }
            match action {
                Action::Forward {
                    count,
                    flags,
                    kind,
                    dedicated,
                    effect,
                } => {
                    let w = is_write as u32;
                    // Scripts and functions go on the script lane of the shared connections
                    // (one that runs long must not hold everyone's commands behind it); a
                    // client moves between lanes only once its replies are in, so its
                    // commands keep their order.
                    if !dedicated && self.dedicated.is_none() {
                        let lane = if kind == Kind::Scripting {
                            crate::upstream::LANE_SCRIPTS
                        } else {
                            0
                        };
                        if lane != self.lane {
                            self.flush_batch();
                            if self.owed > 0 {
                                // Parsed again (and counted again) once the replies are in.
                                self.sh.router.add_inflight(-(w as i64));
                                self.wait_drain = true;
                                break;
                            }
                            self.lane = lane;
                        }
                    }
                    // What the write changes, for the SCAN copy's tracker.
                    let mut touched: Vec<Touch> = Vec::new();
                    if w == 1 && self.sh.tracker.as_ref().is_some_and(|t| t.enabled()) {
                        let base: &[u8] = if inline {
                            self.parser.inline_encoded()
                        } else {
                            &self.inbuf[self.batch.end..self.batch.end + frame.len]
                        };
                        let db = if self.st.in_multi {
                            self.tx_db
                        } else {
                            self.st.db
                        };
                        let kind =
                            crate::track::touches(base, self.parser.args(), db, &mut touched);
                        if let Some(t) = &self.sh.tracker {
                            crate::track::count(t, kind);
                        }
                    }
                    if dedicated && self.dedicated.is_none() {
                        self.flush_batch();
                        if self.owed > 0 {
                            // Parsed again (and counted again) once the replies are in.
                            self.sh.router.add_inflight(-(w as i64));
                            self.wait_drain = true;
                            break;
                        }
                        if let Err(reply) = self.open_dedicated().await {
                            self.sh.router.add_inflight(-(w as i64));
                            self.inbuf.advance(frame.len);
                            self.reply_local(reply);
                            continue;
                        }
                    }
                    let refused = self.st.subscribed && !self.st.resp3;
                    let mut exec_queued = None;
                    match effect {
                        // In RESP2 pub/sub mode the server refuses these: nothing changes.
                        Effect::SetDb(_)
                        | Effect::Multi
                        | Effect::Exec
                        | Effect::Discard
                        | Effect::Watch
                        | Effect::Unwatch
                        | Effect::Script(_)
                            if refused => {}
                        Effect::SetDb(db) if self.st.in_multi => {
                            self.tx_db = db;
                            self.queued.push(Queued::Remote { set_db: Some(db) })
                        }
                        Effect::SetDb(db) => {
                            self.st.db = db;
                            self.publish();
                        }
                        Effect::Multi if !self.st.in_multi => {
                            self.set_in_multi(true);
                            self.queued.clear();
                            self.tx_touches.clear();
                            self.tx_db = self.st.db;
                        }
                        Effect::Exec if self.st.in_multi && self.st.watch_broken => {
                            // The WATCH was made on the source; the keys it guarded may have
                            // changed before the switch: answer EXEC as Redis does when a
                            // watched key changed, and drop the transaction.
                            self.set_in_multi(false);
                            self.st.watching = false;
                            self.st.watch_broken = false;
                            self.queued.clear();
                            self.tx_touches.clear();
                            self.flush_batch();
                            self.inbuf.advance(frame.len);
                            let mut d = BytesMut::new();
                            resp::encode::command(&mut d, [&b"DISCARD"[..]].into_iter());
                            let mode = self.st.reply_mode;
                            self.st.reply_mode = ReplyMode::Off;
                            self.next_writes += w;
                            self.send(d.freeze(), 1, 0);
                            self.st.reply_mode = mode;
                            let mut nil = BytesMut::new();
                            if self.st.resp3 {
                                nil.extend_from_slice(b"_\r\n");
                            } else {
                                nil.extend_from_slice(b"*-1\r\n");
                            }
                            self.reply_local(nil.freeze());
                            self.counts[kind as usize] += 1;
                            self.after_command();
                            continue;
                        }
                        Effect::Exec if self.st.in_multi => {
                            self.set_in_multi(false);
                            self.st.watching = false;
                            // The queued writes run now: marked at EXEC's reply.
                            touched.append(&mut self.tx_touches);
                            let queued = std::mem::take(&mut self.queued);
                            let special = queued
                                .iter()
                                .any(|q| !matches!(q, Queued::Remote { set_db: None }));
                            if special {
                                exec_queued = Some(queued);
                            }
                        }
                        Effect::Discard => {
                            self.set_in_multi(false);
                            self.st.watching = false;
                            self.st.watch_broken = false;
                            self.queued.clear();
                            self.tx_touches.clear();
                        }
                        Effect::Subscribe(k) | Effect::Unsubscribe(k) => {
                            if matches!(effect, Effect::Subscribe(_)) {
                                self.st.subscribed = !self.st.resp3;
                            }
                            let base: &[u8] = if inline {
                                self.parser.inline_encoded()
                            } else {
                                &self.inbuf[self.batch.end..self.batch.end + frame.len]
                            };
                            let names: Vec<Bytes> = self.parser.args()[1..]
                                .iter()
                                .map(|r| Bytes::copy_from_slice(&base[r.clone()]))
                                .collect();
                            let set = &mut self.subs[k as usize];
                            if matches!(effect, Effect::Subscribe(_)) {
                                set.extend(names);
                            } else if names.is_empty() {
                                set.clear();
                            } else {
                                for n in &names {
                                    set.remove(n);
                                }
                            }
                            self.count_subscriber();
                        }
                        Effect::Watch => self.st.watching = true,
                        Effect::Unwatch => {
                            self.st.watching = false;
                            self.st.watch_broken = false;
                            if self.st.in_multi {
                                self.queued.push(Queued::Remote { set_db: None })
                            }
                        }
                        // Inside MULTI it does not block: just queued.
                        Effect::Blocking(_) if self.st.in_multi => {
                            self.queued.push(Queued::Remote { set_db: None })
                        }
                        Effect::Blocking(t) => {
                            let raw: &[u8] = if inline {
                                self.parser.inline_encoded()
                            } else {
                                &self.inbuf[self.batch.end..self.batch.end + frame.len]
                            };
                            self.block = Some(Blocked {
                                raw: Bytes::copy_from_slice(raw),
                                at: Instant::now(),
                                timeout: t,
                            });
                            self.view
                                .blocked_on
                                .store(self.backend_id, Ordering::Relaxed);
                        }
                        Effect::Script(i) => {
                            let base: &[u8] = if inline {
                                self.parser.inline_encoded()
                            } else {
                                &self.inbuf[self.batch.end..self.batch.end + frame.len]
                            };
                            if let Some(r) = self.parser.args().get(i) {
                                self.sh.scripts.record(&base[r.clone()]);
                            }
                            if self.st.in_multi {
                                self.queued.push(Queued::Remote { set_db: None })
                            }
                        }
                        Effect::None if self.st.in_multi => {
                            self.queued.push(Queued::Remote { set_db: None })
                        }
                        _ => {}
                    }
                    if self.st.in_multi {
                        // Queued: it runs at EXEC.
                        self.tx_touches.append(&mut touched);
                    }
                    if let Some(queued) = exec_queued {
                        // The EXEC travels alone so its reply arrives as exactly one frame.
                        self.flush_batch();
                        let data = if inline {
                            Bytes::copy_from_slice(self.parser.inline_encoded())
                        } else {
                            self.inbuf.split_to(frame.len).freeze()
                        };
                        if inline {
                            self.inbuf.advance(frame.len);
                        }
                        self.next_writes += w;
                        self.next_touches.append(&mut touched);
                        self.send_exec(data, queued);
                    } else if let Some(rewritten) = self.tracking_redirect(inline, frame.len) {
                        // CLIENT TRACKING ... REDIRECT <a proxy client's id>.
                        self.flush_batch();
                        self.inbuf.advance(frame.len);
                        match rewritten {
                            Ok(data) => self.send(data, count, flags),
                            Err(reply) => self.reply_local(reply),
                        }
                    } else if inline {
                        self.flush_batch();
                        let data = Bytes::copy_from_slice(self.parser.inline_encoded());
                        self.inbuf.advance(frame.len);
                        self.next_writes += w;
                        self.next_touches.append(&mut touched);
                        self.send(data, count, flags);
                    } else {
                        self.batch.end += frame.len;
                        self.batch.count += count;
                        self.batch.flags |= flags;
                        self.batch.writes += w;
                        self.batch.touches.append(&mut touched);
                        self.hints.push(Hint {
                            len: frame.len as u32,
                            slot,
                        });
                        // SKIP applies to this one command only: keep it a batch of its own.
                        if self.st.reply_mode == ReplyMode::Skip {
                            self.flush_batch();
                        }
                    }
                    if flags & BatchFlags::MONITOR != 0 {
                        self.st.monitoring = true;
                    }
                    self.counts[kind as usize] += 1;
                    self.after_command();
                }
                Action::Local { cmd, drain } => {
                    self.flush_batch();
                    // AUTH checked by the server changes the connections the client's
                    // commands go on: what it owes comes back first.
                    let drain = drain
                        || (self.sh.settings.auth_by_backend
                            && !self.st.in_multi
                            && cmd == local::Cmd::Auth);
                    if drain && self.owed > 0 {
                        self.wait_drain = true;
                        break;
                    }
                    let args: SmallVec<[Bytes; 4]> = {
                        let base: &[u8] = if inline {
                            self.parser.inline_encoded()
                        } else {
                            &self.inbuf[..frame.len]
                        };
                        self.parser
                            .args()
                            .iter()
                            .map(|r| Bytes::copy_from_slice(&base[r.clone()]))
                            .collect()
                    };
                    self.inbuf.advance(frame.len);
                    self.counts[Kind::Local as usize] += 1;
                    if cmd == local::Cmd::ClientUnblock && !self.st.in_multi {
                        // The id is one the proxy gave: the server knows the connection
                        // that client is blocked on by another, so the server's own CLIENT
                        // UNBLOCK goes there with that id (its reply, 1 or 0, comes back).
                        self.client_unblock(&args);
                        self.after_command();
                        continue;
                    }
                    if self.sh.settings.auth_by_backend
                        && !self.st.in_multi
                        && matches!(cmd, local::Cmd::Auth | local::Cmd::Hello)
                    {
                        let reply = self.auth_by_backend(cmd, &args).await;
                        self.reply_local(reply);
                        self.publish();
                        self.after_command();
                        continue;
                    }
                    if self.st.in_multi && cmd.queues_in_multi() {
                        self.queued.push(Queued::Local(cmd, args));
                        self.reply_local(Bytes::from_static(b"+QUEUED\r\n"));
                    } else {
                        self.run_local(cmd, &args);
                    }
                    self.after_command();
                }
                Action::Reply(reply) => {
                    self.flush_batch();
                    self.inbuf.advance(frame.len);
                    self.counts[Kind::Local as usize] += 1;
                    self.sh.metrics.client_errors.increment(1);
                    self.reply_local(reply);
                    self.after_command();
                }
            }
        }
        self.flush_batch();
        // CLIENT LIST's cmd= for this client: the last command of what was read.
        if let Some(i) = self.last_info.take().and_then(command::index_of) {
            self.view.last_cmd.store(i + 1, Ordering::Relaxed);
        }
        if self.inbuf.is_empty() && self.inbuf.capacity() > KEEP_CAPACITY {
            self.inbuf = BytesMut::new();
        }
        Ok(())
    }

    fn inbuf_has_unsent(&self) -> bool {
        self.batch.end > 0
    }

    /// Reply-mode bookkeeping once a command has been dispatched.
    fn after_command(&mut self) {
        if self.skip_pending {
            // CLIENT REPLY SKIP itself: the skip applies to the next command.
            self.skip_pending = false;
        } else if self.st.reply_mode == ReplyMode::Skip {
            self.st.reply_mode = ReplyMode::On;
        }
    }

    /// Hands the accumulated forwarded commands to the backend.
    fn flush_batch(&mut self) {
        if self.batch.end == 0 {
            return;
        }
        let data = self.inbuf.split_to(self.batch.end).freeze();
        let (count, flags) = (self.batch.count, self.batch.flags);
        self.next_writes += self.batch.writes;
        self.next_touches.append(&mut self.batch.touches);
        self.batch = BatchAcc::default();
        let mut hints = std::mem::take(&mut self.hints);
        self.send_hinted(data, count, flags, &hints);
        hints.clear();
        self.hints = hints;
    }

    fn send(&mut self, data: Bytes, count: u32, flags: u8) {
        self.send_hinted(data, count, flags, &[]);
    }

    /// `hints`: one per command of `data` for a cluster router, or none.
    fn send_hinted(&mut self, data: Bytes, count: u32, flags: u8, hints: &[Hint]) {
        let route = Arc::clone(&self.route);
        if self.dedicated.is_none() {
            if let Some(topo) = route.upstream.cluster() {
                // A logged-in client's router has connections of its own for both lanes.
                let lane = if self.login.is_some() { 0 } else { self.lane };
                let key = (route.epoch, self.st.resp3, lane);
                let topo = topo.clone();
                drop(route);
                self.send_cluster(key, topo, data, count, flags, hints);
                return;
            }
        }
        self.retire_cluster_router();
        let batch = Batch {
            data,
            count,
            flags: BatchFlags(flags),
            reply: self.tx.clone(),
            tag: 0,
        };
        let db = self.db_on(route.side);
        if let Some(login) = &self.login {
            let at = Arc::as_ptr(&route.upstream) as usize;
            if self.user_pools.as_ref().is_none_or(|(a, _)| *a != at) {
                self.user_pools = Some((at, route.upstream.user_pools(login)));
            }
        }
        let handle = match &self.dedicated {
            Some(h) => h,
            None => route.upstream.shared(
                self.user_pools.as_ref().map(|(_, p)| &**p),
                db,
                self.st.resp3,
                self.st.id,
                self.lane,
            ),
        };
        if let Err(b) = handle.send(batch) {
            // The connection's task is gone (dedicated connection lost): fail these
            // commands and close, as the state it carried is gone.
            let mut err = BytesMut::new();
            for _ in 0..b.count {
                resp::encode::error(
                    &mut err,
                    b"ERR cutover: lost the backend connection of this client",
                );
            }
            self.push_pending(b.count);
            drop(route);
            let _ = self.tx.send(Reply {
                data: err.freeze(),
                count: b.count,
                kind: ReplyKind::Failed,
                tag: 0,
            });
            return;
        }
        self.push_pending(count);
    }

    /// Enters or leaves a transaction, keeping `Router::in_multi` in step.
    pub(super) fn set_in_multi(&mut self, on: bool) {
        if on != self.st.in_multi {
            self.st.in_multi = on;
            self.sh
                .router
                .in_multi
                .fetch_add(if on { 1 } else { -1 }, Ordering::AcqRel);
        }
    }

    async fn open_dedicated(&mut self) -> Result<(), Bytes> {
        let (up, side) = {
            let r = self.sh.router.route();
            (r.upstream.clone(), r.side)
        };
        match up
            .dedicated(
                self.db_on(side),
                self.st.resp3,
                self.st.name.clone(),
                self.login.as_ref(),
            )
            .await
        {
            Ok((h, id)) => {
                self.dedicated = Some(h);
                self.set_backend_id(id);
                self.st.dedicated = true;
                self.sh.metrics.dedicated_connections.increment(1);
                Stats::add(&self.sh.stats.dedicated_connections, 1);
                Ok(())
            }
            Err(e) => {
                tracing::warn!(client = self.st.id, side = up.label, error = %e, "cannot open a dedicated backend connection");
                self.sh.metrics.backend_errors.increment(1);
                let mut b = BytesMut::new();
                resp::encode::error(
                    &mut b,
                    format!(
                        "ERR cutover: {} {} is unavailable ({e}); the command did not run",
                        up.label,
                        up.addr()
                    )
                    .as_bytes(),
                );
                Err(b.freeze())
            }
        }
    }

    fn flush_counts(&mut self) {
        let mut total = 0;
        for (i, n) in self.counts.iter_mut().enumerate() {
            if *n > 0 {
                total += *n;
                self.sh.metrics.commands[i].increment(*n);
                *n = 0;
            }
        }
        Stats::add(&self.sh.stats.commands_total, total);
    }
}

/// `*N\r\n` at the start of a reply: N and the header's length. None for anything else
/// (nil arrays, errors, other types).
fn array_header(reply: &[u8]) -> Option<(usize, usize)> {
    if reply.first() != Some(&b'*') {
        return None;
    }
    let end = memchr_crlf(reply)?;
    let n = std::str::from_utf8(&reply[1..end])
        .ok()?
        .parse::<usize>()
        .ok()?;
    Some((n, end + 2))
}

fn memchr_crlf(b: &[u8]) -> Option<usize> {
    b.windows(2).position(|w| w == b"\r\n")
}

/// The blocking command `b` re-encoded with what is left of its timeout (0 stays 0:
/// forever). None if it cannot be parsed back.
pub(crate) fn with_remaining_timeout(b: &Blocked) -> Option<Bytes> {
    let mut parser = RequestParser::new(Limits::default());
    let frame = parser.parse(&b.raw).ok()??;
    let base: &[u8] = match frame.kind {
        FrameKind::Inline => parser.inline_encoded(),
        _ => &b.raw,
    };
    let mut args: Vec<Vec<u8>> = parser
        .args()
        .iter()
        .map(|r| base[r.clone()].to_vec())
        .collect();
    let elapsed = b.at.elapsed();
    let idx = match b.timeout {
        TimeoutArg::LastSecs => args.len().checked_sub(1)?,
        TimeoutArg::FirstSecs => 1,
        TimeoutArg::BlockMs => args.iter().position(|a| a.eq_ignore_ascii_case(b"block"))? + 1,
    };
    let old = std::str::from_utf8(args.get(idx)?).ok()?.to_string();
    let new = match b.timeout {
        TimeoutArg::BlockMs => {
            let ms: u64 = old.parse().ok()?;
            if ms == 0 {
                "0".to_string()
            } else {
                ms.saturating_sub(elapsed.as_millis() as u64)
                    .max(1)
                    .to_string()
            }
        }
        _ => {
            let secs: f64 = old.parse().ok()?;
            if secs == 0.0 {
                "0".to_string()
            } else {
                format!("{:.3}", (secs - elapsed.as_secs_f64()).max(0.001))
            }
        }
    };
    args[idx] = new.into_bytes();
    let mut out = BytesMut::new();
    resp::encode::command(&mut out, args.iter().map(|a| &a[..]));
    Some(out.freeze())
}

async fn sleep_until(t: Option<std::time::Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t.into()).await,
        None => std::future::pending().await,
    }
}

/// The length of the first `n` reply frames of `data` (None when it holds fewer).
fn frames_len(data: &[u8], n: u32) -> Option<usize> {
    let mut scanner = resp::ReplyScanner::default();
    let mut pos = 0;
    for _ in 0..n {
        pos += scanner.scan(data.get(pos..)?).ok()??;
    }
    Some(pos)
}
