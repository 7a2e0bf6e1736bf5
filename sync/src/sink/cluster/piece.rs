//! What the router carries and answers: pieces of commands with their bookkeeping, the
//! units they travel in (plain or MULTI/EXEC), what a unit's replies say about retrying
//! (a redirection, a transient error), and what the router hands back when a unit is done.

use ::cluster::slots::{NodeAddr, Redirect, RedirectKind};
use bytes::{Bytes, BytesMut};

use crate::reply::{error_text, transient};

/// How a unit's pieces are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `MULTI, pieces..., trailer, EXEC`: applied whole or not at all.
    Txn,
    /// One-command pieces, each standing alone.
    Plain,
}

/// Commands for one slot (or one node), with the caller's description of them.
#[derive(Debug)]
pub struct Piece<T> {
    /// Whole encoded commands.
    pub data: Bytes,
    /// How many commands `data` holds (1 in [`Mode::Plain`]).
    pub count: u32,
    pub info: T,
}

/// What the router needs to know about a piece.
pub trait PieceInfo {
    /// In [`Mode::Plain`]: the key this command must stay in order with, or `None` when it
    /// may run again after later commands of its key (`RESTORE ... REPLACE` of a whole
    /// value, a read). A refused command with an order key, followed by a command of the
    /// same key that ran, can't be repaired by sending it again: the run stops (retryably).
    fn order_key(&self) -> Option<&[u8]>;
}

/// Appends what closes a [`Mode::Txn`] unit of `slot` before its EXEC (the checkpoint),
/// returning how many commands it wrote.
pub type Trailer<T> = fn(u16, &[Piece<T>], &mut BytesMut) -> u32;

/// A unit the target answered for good (applied, or refused for a reason retrying can't
/// help: the caller reads which from the replies).
#[derive(Debug)]
pub struct Done<T> {
    /// [`NO_SLOT`] for a unit sent to a node ([`Router::enqueue_node`]).
    pub slot: u16,
    /// The node that answered.
    pub node: NodeAddr,
    pub mode: Mode,
    pub pieces: Vec<Piece<T>>,
    /// [`Mode::Txn`]: MULTI's reply, one per queued command (the pieces', then the
    /// trailer's), EXEC's. [`Mode::Plain`]: one final reply per piece.
    pub replies: Vec<Bytes>,
}

/// Why a unit (or some of its pieces) must be sent again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Retry {
    Moved(NodeAddr),
    Ask(NodeAddr),
    Later(String),
}

/// Classifies one reply frame: `Some` when it asks for the command to be sent again.
/// `from` is the node that answered (a redirection without a host means its host).
pub(crate) fn retry_of(frame: &[u8], from: &NodeAddr) -> Option<Retry> {
    let e = error_text(frame)?;
    if let Some(r) = Redirect::parse(e.as_bytes()) {
        let to = r.node.or_host_of(from);
        return Some(match r.kind {
            RedirectKind::Moved => Retry::Moved(to),
            RedirectKind::Ask => Retry::Ask(to),
        });
    }
    (transient(&e) || e.starts_with("CLUSTERDOWN")).then_some(Retry::Later(e))
}

/// The redirection or transient error that kept a [`Mode::Txn`] unit from running, if
/// that is what happened. `replies` excludes the reply to ASKING. An EXEC that answered an
/// array ran the unit: `None`.
pub(crate) fn txn_retry(replies: &[Bytes], from: &NodeAddr) -> Option<Retry> {
    let exec = replies.last()?;
    if exec.first() == Some(&b'*') && !exec.starts_with(b"*-1") {
        return None;
    }
    replies.iter().find_map(|f| retry_of(f, from))
}

/// What a piece costs in memory: its bytes and its bookkeeping (a stream of small commands
/// spends more on the latter), so the in-flight window bounds memory, not just payload.
pub(crate) fn cost<T>(p: &Piece<T>) -> usize {
    p.data.len() + 160
}
