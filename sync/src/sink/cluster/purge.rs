//! Emptying one link's slots on a cluster target, before that link loads its master
//! again: `CLUSTER GETKEYSINSLOT` per slot on the node owning it (which also takes the
//! slots' own `__cutover:cp:{n}` checkpoints, stale with the history they described).
//! Checkpoint hashes (`__cutover:checkpoint*`) are never deleted. Why a link empties only
//! its own slots: [`crate::sink::node::purge`].

use bytes::{Bytes, BytesMut};

use super::router::{Mode, Piece};
use super::tag::{ClusterRouter, Tag};
use crate::checkpoint::KEY_PREFIX;
use crate::reply::{array_elements, error_text};
use crate::scope::LinkScope;
use crate::SyncError;

/// The bytes of a bulk string frame.
fn bulk(frame: &[u8]) -> Option<&[u8]> {
    let nl = memchr::memchr(b'\n', frame)?;
    frame.get(nl + 1..frame.len().checked_sub(2)?)
}

/// Deletes the keys of `scope`'s slots from a cluster target (nothing else may be in flight
/// on `router`). Returns how many.
pub async fn cluster(router: &mut ClusterRouter, scope: &LinkScope) -> Result<u64, SyncError> {
    let mut pending: Vec<u16> = scope.slots().collect();
    let mut deleted = 0u64;
    while !pending.is_empty() {
        // One GETKEYSINSLOT per slot, pipelined per node.
        for &slot in &pending {
            let s = slot.to_string();
            let mut cmd = BytesMut::new();
            resp::encode::command(
                &mut cmd,
                [&b"CLUSTER"[..], b"GETKEYSINSLOT", s.as_bytes(), b"1000"].into_iter(),
            );
            router.enqueue(slot, Mode::Plain, control(cmd));
        }
        router.flush()?;
        let mut unlinks = Vec::new();
        for _ in 0..pending.len() {
            let d = router.next().await?;
            let reply = d.replies.first().cloned().unwrap_or_default();
            let (keys, full): (Vec<Bytes>, bool) = match array_elements(&reply) {
                Some(items) => {
                    let full = items.len() >= 1000;
                    let keys = items
                        .into_iter()
                        .filter_map(bulk)
                        .filter(|k| !k.starts_with(KEY_PREFIX))
                        .map(Bytes::copy_from_slice)
                        .collect();
                    (keys, full)
                }
                None => {
                    return Err(SyncError::Target(format!(
                        "CLUSTER GETKEYSINSLOT {}: {}",
                        d.slot,
                        String::from_utf8_lossy(&reply).trim_end()
                    )))
                }
            };
            if !keys.is_empty() {
                unlinks.push((d.slot, keys, full));
            }
        }
        pending.clear();
        for (slot, keys, _) in &unlinks {
            let mut cmd = BytesMut::new();
            let words: Vec<&[u8]> = std::iter::once(&b"UNLINK"[..])
                .chain(keys.iter().map(|k| &k[..]))
                .collect();
            resp::encode::command(&mut cmd, words.into_iter());
            router.enqueue(*slot, Mode::Plain, control(cmd));
            deleted += keys.len() as u64;
        }
        router.flush()?;
        for _ in 0..unlinks.len() {
            let d = router.next().await?;
            if let Some(e) = d.replies.first().and_then(|r| error_text(r)) {
                return Err(SyncError::Target(format!("UNLINK in slot {}: {e}", d.slot)));
            }
        }
        // A full page may have more behind it.
        pending = unlinks
            .iter()
            .filter(|(_, _, full)| *full)
            .map(|(s, _, _)| *s)
            .collect();
    }
    tracing::warn!(link = %scope.label, slots = %scope.ranges_text(), deleted, "emptied this link's slots on the target cluster before loading its master again");
    Ok(deleted)
}

fn control(cmd: BytesMut) -> Piece<Tag> {
    Piece {
        data: cmd.freeze(),
        count: 1,
        info: Tag::Control,
    }
}
