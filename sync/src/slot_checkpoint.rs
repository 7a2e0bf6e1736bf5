//! Checkpoints per hash slot, for a Redis Cluster target.
//!
//! Why: on a standalone target every stream transaction also writes the one checkpoint hash
//! ([`crate::checkpoint`]), so the data and the offset it reflects can never disagree. A
//! cluster runs MULTI/EXEC within ONE slot only (`-CROSSSLOT` otherwise), so a single key
//! can't share a transaction with the keys of every slot. Each slot gets its own key
//! instead, `__cutover:cp:{T}` where the hash tag `T` is a short string whose slot is that
//! slot, and each slot's transaction ends with `SET __cutover:cp:{T} <end offset>`:
//! a slot's data and its checkpoint still change together, atomically.
//!
//! Resuming then needs two numbers per slot: the main hash keeps the replication id, the db
//! and a *floor*, an offset every slot has reached (written once every node has confirmed
//! everything below it); the stream resumes from the floor, and a command for slot `s`
//! ending at or below `max(floor, cp[s])` was already applied and is skipped
//! ([`SkipTable`]). The per-slot keys move with their slot when the cluster reshards
//! (MIGRATE takes every key of the slot), so the record stays with the data it describes.

use std::sync::OnceLock;

use bytes::BytesMut;
use cluster::slots::{key_slot, SLOT_COUNT};

/// What every per-slot checkpoint key starts with (then the tag and `}`).
pub const PREFIX: &[u8] = b"__cutover:cp:{";

/// For each slot, the smallest decimal number whose slot it is: the tag of its key.
/// Found once by trying 0, 1, 2... (about 170,000 CRC16s of at most 6 bytes).
fn tags() -> &'static [u32] {
    static TAGS: OnceLock<Box<[u32]>> = OnceLock::new();
    TAGS.get_or_init(|| {
        let mut tags = vec![u32::MAX; usize::from(SLOT_COUNT)];
        let mut missing = tags.len();
        let mut n: u32 = 0;
        while missing > 0 {
            let slot = usize::from(key_slot(n.to_string().as_bytes()));
            if let Some(t) = tags.get_mut(slot) {
                if *t == u32::MAX {
                    *t = n;
                    missing -= 1;
                }
            }
            n += 1;
        }
        tags.into_boxed_slice()
    })
}

/// The checkpoint key of `slot` (`__cutover:cp:{<tag>}`), from a table built once.
pub fn key(slot: u16) -> &'static [u8] {
    static KEYS: OnceLock<Box<[Box<[u8]>]>> = OnceLock::new();
    let keys = KEYS.get_or_init(|| {
        tags()
            .iter()
            .map(|tag| {
                let tag = tag.to_string();
                let mut k = Vec::with_capacity(PREFIX.len() + tag.len() + 1);
                k.extend_from_slice(PREFIX);
                k.extend_from_slice(tag.as_bytes());
                k.push(b'}');
                k.into_boxed_slice()
            })
            .collect()
    });
    keys.get(usize::from(slot)).map_or(&[], |k| &k[..])
}

/// Writes `SET <key of slot> <offset>`.
pub fn set_command(out: &mut BytesMut, slot: u16, offset: i64) {
    let v = offset.to_string();
    resp::encode::command(out, [&b"SET"[..], key(slot), v.as_bytes()].into_iter());
}

/// Writes `GET <key of slot>`.
pub fn get_command(out: &mut BytesMut, slot: u16) {
    resp::encode::command(out, [&b"GET"[..], key(slot)].into_iter());
}

/// Reads the reply to [`get_command`]: `Ok(None)` when the key does not exist, `Err` with
/// the reply's text when it is not an offset.
pub fn parse_get(frame: &[u8]) -> Result<Option<i64>, String> {
    let show = || String::from_utf8_lossy(frame).trim_end().to_string();
    match resp::Value::decode_one(frame) {
        Ok(resp::Value::Nil) => Ok(None),
        Ok(v @ resp::Value::Bytes(_)) => v.int().filter(|n| *n >= 0).map(Some).ok_or_else(show),
        _ => Err(show()),
    }
}

/// Which stream commands a resumed run must skip: those a slot's checkpoint already
/// covers.
#[derive(Debug, Clone)]
pub struct SkipTable {
    floor: i64,
    /// Per slot, the checkpoint found (-1: none).
    slots: Box<[i64]>,
}

impl SkipTable {
    /// Nothing recorded per slot: everything above `floor` is applied.
    pub fn new(floor: i64) -> SkipTable {
        SkipTable {
            floor,
            slots: vec![-1; usize::from(SLOT_COUNT)].into_boxed_slice(),
        }
    }

    /// Records what the target holds for `slot`.
    pub fn set(&mut self, slot: u16, offset: i64) {
        if let Some(s) = self.slots.get_mut(usize::from(slot)) {
            *s = offset;
        }
    }

    /// Whether a command for `slot` ending at `end` is already on the target.
    pub fn applied(&self, slot: u16, end: i64) -> bool {
        let cp = self.slots.get(usize::from(slot)).copied().unwrap_or(-1);
        end <= self.floor.max(cp)
    }

    /// The highest offset any slot records: past it nothing is skipped any more.
    pub fn max(&self) -> i64 {
        self.slots.iter().copied().fold(self.floor, i64::max)
    }
}

#[cfg(test)]
mod tests;
