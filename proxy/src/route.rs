//! Where client commands go: the route (source or target) shared by every connection, and
//! the write gate the cutover closes while it switches.
//!
//! The swap is one atomic step (`ArcSwap`). While the gate is closed each connection holds
//! its first command that is not a plain read, and everything after it, in its own input
//! buffer; connections holding nothing keep reading from the source. `inflight` counts the
//! commands sent and not yet answered, so the cutover knows when every acknowledged write
//! is in the source's replication stream.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::{ArcSwap, Guard};
use tokio::sync::watch;

use crate::upstream::Upstream;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Source,
    Target,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Source => "source",
            Side::Target => "target",
        }
    }
}

pub struct Route {
    pub epoch: u64,
    pub side: Side,
    pub upstream: Arc<Upstream>,
}

pub struct Router {
    current: ArcSwap<Route>,
    gating: AtomicBool,
    /// Bumped on every gate or route change, to wake connections holding commands.
    changes: watch::Sender<u64>,
    /// Writes (commands that are not plain reads) counted from before the gate check until
    /// their replies arrive: the drain waits for 0. Reads are not counted.
    pub inflight: AtomicI64,
    /// Connections holding commands behind the gate now, and commands held.
    pub held_clients: AtomicU64,
    /// Connections with subscriptions, and how many of them have subscribed again on the
    /// target during the current cutover (before the flip, so no message is missed).
    pub subscribers: AtomicI64,
    pub resubscribed: AtomicI64,
    /// Connections between MULTI and EXEC/DISCARD: the drain waits for them, so no
    /// transaction straddles the fence.
    pub in_multi: AtomicI64,
}

impl Router {
    pub fn new(side: Side, upstream: Arc<Upstream>, epoch: u64) -> Router {
        Router {
            current: ArcSwap::from_pointee(Route {
                epoch,
                side,
                upstream,
            }),
            gating: AtomicBool::new(false),
            changes: watch::channel(0).0,
            inflight: AtomicI64::new(0),
            held_clients: AtomicU64::new(0),
            subscribers: AtomicI64::new(0),
            resubscribed: AtomicI64::new(0),
            in_multi: AtomicI64::new(0),
        }
    }

    /// The current route (no refcount traffic: for the hot path).
    pub fn route(&self) -> Guard<Arc<Route>> {
        self.current.load()
    }

    pub fn upstream(&self) -> Arc<Upstream> {
        self.current.load().upstream.clone()
    }

    pub fn gating(&self) -> bool {
        // SeqCst, with `add_inflight`: see the gate check in the session.
        self.gating.load(Ordering::SeqCst)
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    fn bump(&self) {
        self.changes.send_modify(|v| *v += 1);
    }

    pub fn close_gate(&self) {
        self.gating.store(true, Ordering::SeqCst);
        self.bump();
    }

    pub fn open_gate(&self) {
        self.gating.store(false, Ordering::SeqCst);
        self.bump();
    }

    /// Swaps the route (the gate stays closed; `open_gate` releases the held commands).
    pub fn switch(&self, side: Side, upstream: Arc<Upstream>) -> u64 {
        let epoch = self.current.load().epoch + 1;
        self.current.store(Arc::new(Route {
            epoch,
            side,
            upstream,
        }));
        self.bump();
        epoch
    }

    pub fn add_inflight(&self, n: i64) {
        self.inflight.fetch_add(n, Ordering::SeqCst);
    }

    pub fn inflight(&self) -> i64 {
        self.inflight.load(Ordering::SeqCst)
    }
}
