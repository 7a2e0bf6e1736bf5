//! What each piece the cluster syncer sends is ([`Tag`]), for checking its replies and for
//! offsets, and how a slot's stream transaction is closed ([`trailer`]: that slot's
//! checkpoint).

use bytes::{Bytes, BytesMut};

use super::router::{Piece, PieceInfo, Router};
use crate::reencode;
use crate::slot_checkpoint;

/// What a piece sent to the cluster is, for checking its replies and for offsets.
#[derive(Debug)]
pub enum Tag {
    /// A command of the full load.
    Load { name: &'static str, key: Bytes },
    /// The target probe's commands (one key, in order).
    Probe,
    /// Stream commands of one slot, lying at `start..end` of the stream (a source
    /// transaction's part: the whole transaction's span).
    Stream { start: i64, end: i64 },
    /// A keyless command of a barrier; an error starting with `tolerate` means done.
    Broadcast { tolerate: Option<&'static str> },
    /// The main checkpoint's floor.
    Floor(i64),
    /// Anything else (reads, control writes).
    Control,
}

impl PieceInfo for Tag {
    fn order_key(&self) -> Option<&[u8]> {
        match self {
            // A whole value replaced: harmless to repeat after anything.
            Tag::Load {
                name: "RESTORE", ..
            } => None,
            Tag::Load { key, .. } if !key.is_empty() => Some(key),
            Tag::Probe => Some(reencode::PROBE_KEY),
            _ => None,
        }
    }
}

/// Closes a slot's stream transaction: its checkpoint, at the end of its last piece.
pub(crate) fn trailer(slot: u16, pieces: &[Piece<Tag>], out: &mut BytesMut) -> u32 {
    let end = pieces
        .iter()
        .filter_map(|p| match p.info {
            Tag::Stream { end, .. } => Some(end),
            _ => None,
        })
        .max();
    match end {
        Some(end) => {
            slot_checkpoint::set_command(out, slot, end);
            1
        }
        None => 0,
    }
}

/// The router the cluster syncer uses.
pub type ClusterRouter = Router<Tag>;
