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

use ::cluster::slots::key_slot;
use ::cluster::NodeStream;

use crate::checkpoint::KEY_PREFIX;
use crate::reply::{array_elements, error_text};
use crate::scope::LinkScope;
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
