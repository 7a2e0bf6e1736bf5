//! Emptying one link's slots on the target, before that link loads its master again.
//!
//! Why: with a cluster source, each master's link shares the target with the others, so a
//! link that must load again (its earlier full load was interrupted, or its master can only
//! offer a full resync) can't empty the whole target as a lone syncer does: that would
//! destroy the other links' keys. It deletes exactly the keys of the slots it serves
//! instead: on one server, a SCAN of the db with each key's slot computed here; on a
//! cluster, `CLUSTER GETKEYSINSLOT` per slot on the node owning it (which also takes the
//! slots' own `__cutover:cp:{n}` checkpoints, stale with the history they described).
//! Checkpoint hashes (`__cutover:checkpoint*`) are never deleted: they are not data.

use bytes::{Bytes, BytesMut};
use cluster::slots::key_slot;
use cluster::NodeStream;

use crate::checkpoint::KEY_PREFIX;
use crate::cluster_sync::{ClusterRouter, Tag};
use crate::cluster_target::{Mode, Piece};
use crate::scope::LinkScope;
use crate::target::{array_elements, error_text};
use crate::SyncError;

fn tgt(e: impl std::fmt::Display) -> SyncError {
    SyncError::Target(e.to_string())
}

/// The bytes of a bulk string frame.
fn bulk(frame: &[u8]) -> Option<&[u8]> {
    let nl = memchr::memchr(b'\n', frame)?;
    frame.get(nl + 1..frame.len().checked_sub(2)?)
}

/// Deletes the keys of `scope`'s slots from `db` of one target server. Returns how many.
pub async fn node(conn: &mut NodeStream, db: u32, scope: &LinkScope) -> Result<u64, SyncError> {
    let dbs = db.to_string();
    let r = conn
        .request(&[&[b"SELECT", dbs.as_bytes()]])
        .await
        .map_err(tgt)?;
    if let Some(e) = error_text(&r[0]) {
        return Err(SyncError::Target(format!("SELECT {db}: {e}")));
    }
    let mut cursor = b"0".to_vec();
    let mut deleted = 0u64;
    loop {
        let r = conn
            .request(&[&[b"SCAN", &cursor, b"COUNT", b"1000"]])
            .await
            .map_err(tgt)?;
        let reply = &r[0];
        let parts = array_elements(reply)
            .filter(|p| p.len() == 2)
            .ok_or_else(|| {
                SyncError::Target(format!(
                    "SCAN: {}",
                    String::from_utf8_lossy(reply).trim_end()
                ))
            })?;
        let next = bulk(parts[0]).unwrap_or(b"0").to_vec();
        let keys: Vec<&[u8]> = array_elements(parts[1])
            .unwrap_or_default()
            .into_iter()
            .filter_map(bulk)
            .filter(|k| !k.starts_with(KEY_PREFIX) && scope.owns(key_slot(k)))
            .collect();
        if !keys.is_empty() {
            let mut args: Vec<&[u8]> = vec![b"UNLINK"];
            args.extend(keys.iter().copied());
            let r = conn.request(&[&args]).await.map_err(tgt)?;
            if let Some(e) = error_text(&r[0]) {
                return Err(SyncError::Target(format!("UNLINK: {e}")));
            }
            deleted += keys.len() as u64;
        }
        if next == b"0" {
            break;
        }
        cursor = next;
    }
    tracing::warn!(link = %scope.label, slots = %scope.ranges_text(), deleted, "emptied this link's slots on the target before loading its master again");
    Ok(deleted)
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
