//! Stream values (types 15, 19, 21, 26): the listpack nodes with their master entries and
//! delta-encoded IDs (src/t_stream.c), the stream metadata, and consumer groups with their
//! pending entries lists (src/rdb.c rdbLoadObject).

use super::packed::{self, Elem};
use super::{corrupt_at, pack_err, unsupported, Cur};
use crate::rdb::format::*;
use crate::rdb::RdbError;
use bytes::Bytes;
use std::collections::HashMap;

/// Entry flags in a stream listpack.
const FLAG_DELETED: i64 = 1;
const FLAG_SAMEFIELDS: i64 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct StreamId {
    pub ms: u64,
    pub seq: u64,
}

impl StreamId {
    /// The 16-byte big-endian form used for listpack node keys and PEL entries.
    pub(crate) fn from_raw(raw: [u8; 16]) -> Self {
        let (ms, seq) = raw.split_at(8);
        StreamId {
            ms: u64::from_be_bytes(ms.try_into().expect("8 bytes")),
            seq: u64::from_be_bytes(seq.try_into().expect("8 bytes")),
        }
    }
}

impl std::fmt::Display for StreamId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct StreamEntry {
    pub id: StreamId,
    pub fields: Vec<(Bytes, Bytes)>,
}

/// An entry of a group's pending entries list.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingEntry {
    pub id: StreamId,
    /// The consumer owning it (from the consumers' own PELs).
    pub consumer: Bytes,
    /// Last delivery, Unix ms.
    pub delivery_time_ms: i64,
    pub delivery_count: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Consumer {
    pub name: Bytes,
    /// Last attempted interaction, Unix ms.
    pub seen_time_ms: i64,
    /// Last successful interaction, Unix ms (stream types 21+, Redis 7.2+).
    pub active_time_ms: Option<i64>,
    /// IDs of the pending entries it owns.
    pub pending: Vec<StreamId>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    pub name: Bytes,
    pub last_id: StreamId,
    /// The group's logical read counter (types 19+, Redis 7.0+); `None` when the format has
    /// none or Redis recorded it as unknown (-1).
    pub entries_read: Option<u64>,
    pub pending: Vec<PendingEntry>,
    pub consumers: Vec<Consumer>,
}

/// IDMP (idempotent producer) settings of a Redis 8.6 stream (type 26).
#[derive(Debug, Clone, PartialEq)]
pub struct StreamIdmp {
    pub duration_secs: u64,
    pub max_size: u64,
    pub iids_added: u64,
    pub iids_duplicates: u64,
}

/// A stream's metadata, after its entries in the RDB (see [`StreamValue`]).
#[derive(Debug, Clone, PartialEq)]
pub struct StreamMeta {
    pub length: u64,
    pub last_id: StreamId,
    pub first_id: Option<StreamId>,
    pub max_deleted_id: Option<StreamId>,
    pub entries_added: Option<u64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StreamValue {
    /// Live entries in ID order (entries flagged deleted are left out).
    pub entries: Vec<StreamEntry>,
    /// The length Redis recorded (equals `entries.len()` for a sound value).
    pub length: u64,
    pub last_id: StreamId,
    /// Types 19+ (Redis 7.0+).
    pub first_id: Option<StreamId>,
    pub max_deleted_id: Option<StreamId>,
    pub entries_added: Option<u64>,
    pub groups: Vec<Group>,
    /// Type 26 (Redis 8.6+).
    pub idmp: Option<StreamIdmp>,
}

pub(super) fn decode(t: u8, c: &mut Cur<'_>) -> Result<StreamValue, RdbError> {
    let mut entries = Vec::new();
    for _ in 0..c.len()? {
        let key_at = c.pos;
        let key = c.string()?;
        let master: [u8; 16] = (&*key)
            .try_into()
            .map_err(|_| corrupt_at(key_at, "stream node key is not a 16-byte ID"))?;
        let master = StreamId::from_raw(master);
        let (at, blob) = c.blob()?;
        let items = packed::listpack(&blob).map_err(|e| pack_err(at, "stream listpack", e))?;
        node_entries(master, &items, |id, fields| {
            if let Some(fields) = fields {
                entries.push(StreamEntry { id, fields });
            }
        })
        .map_err(|what| corrupt_at(at, format!("stream listpack: {what}")))?;
    }
    let length = c.len()?;
    let last_id = StreamId {
        ms: c.len()?,
        seq: c.len()?,
    };
    let (mut first_id, mut max_deleted_id, mut entries_added) = (None, None, None);
    if t >= T_STREAM_LISTPACKS_2 {
        first_id = Some(StreamId {
            ms: c.len()?,
            seq: c.len()?,
        });
        max_deleted_id = Some(StreamId {
            ms: c.len()?,
            seq: c.len()?,
        });
        entries_added = Some(c.len()?);
    }
    let mut groups = Vec::new();
    for _ in 0..c.len()? {
        groups.push(group(t, c)?);
    }
    let mut idmp = None;
    if t >= T_STREAM_LISTPACKS_4 {
        let duration_secs = c.len()?;
        let max_size = c.len()?;
        if c.len()? != 0 {
            // The per-producer IDMP records' layout could not be verified against Redis
            // 8.6 sources or samples here; refuse rather than guess.
            return Err(unsupported(
                t,
                "stream with IDMP producer records (Redis 8.6 XADD IDMP)",
            ));
        }
        let iids_added = c.len()?;
        let iids_duplicates = c.len()?;
        idmp = Some(StreamIdmp {
            duration_secs,
            max_size,
            iids_added,
            iids_duplicates,
        });
    }
    Ok(StreamValue {
        entries,
        length,
        last_id,
        first_id,
        max_deleted_id,
        entries_added,
        groups,
        idmp,
    })
}

fn int(e: Option<&Elem<'_>>, what: &'static str) -> Result<i64, &'static str> {
    e.and_then(|e| e.as_int()).ok_or(what)
}

/// The entries of one listpack node, in order, to `out`: the fields of a live entry,
/// `None` for one flagged deleted. The node is a master entry (count, deleted, field
/// names, 0), then per entry flags, ms/seq deltas, [field count], fields and/or values,
/// and the entry's element count.
pub(crate) fn node_entries(
    master: StreamId,
    items: &[Elem<'_>],
    mut out: impl FnMut(StreamId, Option<Vec<(Bytes, Bytes)>>),
) -> Result<(), &'static str> {
    let mut it = items.iter();
    let count = int(it.next(), "missing entry count")?;
    let deleted = int(it.next(), "missing deleted count")?;
    let nfields = int(it.next(), "missing master field count")?;
    if count < 0 || deleted < 0 || nfields < 0 || nfields as usize > items.len() {
        return Err("negative or impossible counts in the master entry");
    }
    let master_fields: Vec<Bytes> = it
        .by_ref()
        .take(nfields as usize)
        .map(|e| e.to_bytes())
        .collect();
    if master_fields.len() != nfields as usize {
        return Err("master entry fields cut short");
    }
    if int(it.next(), "missing master entry terminator")? != 0 {
        return Err("master entry terminator is not 0");
    }
    let total = count.checked_add(deleted).ok_or("entry counts overflow")?;
    for _ in 0..total {
        let flags = int(it.next(), "missing entry flags")?;
        let ms = int(it.next(), "missing entry ms delta")?;
        let seq = int(it.next(), "missing entry seq delta")?;
        let id = StreamId {
            ms: master.ms.wrapping_add(ms as u64),
            seq: master.seq.wrapping_add(seq as u64),
        };
        let live = flags & FLAG_DELETED == 0;
        let mut fields = Vec::new();
        if flags & FLAG_SAMEFIELDS != 0 {
            for f in &master_fields {
                let v = it.next().ok_or("entry values cut short")?;
                if live {
                    fields.push((f.clone(), v.to_bytes()));
                }
            }
        } else {
            let n = int(it.next(), "missing entry field count")?;
            if n < 0 || n as usize > items.len() {
                return Err("impossible entry field count");
            }
            for _ in 0..n {
                let f = it.next().ok_or("entry fields cut short")?;
                let v = it.next().ok_or("entry values cut short")?;
                if live {
                    fields.push((f.to_bytes(), v.to_bytes()));
                }
            }
        }
        int(it.next(), "missing entry element count")?;
        out(id, live.then_some(fields));
    }
    if it.next().is_some() {
        return Err("elements left after the last entry");
    }
    Ok(())
}

fn group(t: u8, c: &mut Cur<'_>) -> Result<Group, RdbError> {
    let name = c.string()?.into_bytes();
    let last_id = StreamId {
        ms: c.len()?,
        seq: c.len()?,
    };
    let entries_read = if t >= T_STREAM_LISTPACKS_2 {
        Some(c.len()?).filter(|&n| n != u64::MAX) // -1 saved as a length
    } else {
        None
    };
    let pel_at = c.pos;
    let mut pel = Vec::new();
    for _ in 0..c.len()? {
        let id = StreamId::from_raw(c.array()?);
        let delivery_time_ms = i64::from_le_bytes(c.array()?);
        let delivery_count = c.len()?;
        pel.push((id, delivery_time_ms, delivery_count));
    }
    let mut consumers = Vec::new();
    let mut owner: HashMap<StreamId, usize> = HashMap::new();
    for _ in 0..c.len()? {
        let name = c.string()?.into_bytes();
        let seen_time_ms = i64::from_le_bytes(c.array()?);
        let active_time_ms = if t >= T_STREAM_LISTPACKS_3 {
            Some(i64::from_le_bytes(c.array()?))
        } else {
            None
        };
        let mut pending = Vec::new();
        for _ in 0..c.len()? {
            let id = StreamId::from_raw(c.array()?);
            if owner.insert(id, consumers.len()).is_some() {
                return Err(c.corrupt("pending entry owned by two consumers"));
            }
            pending.push(id);
        }
        consumers.push(Consumer {
            name,
            seen_time_ms,
            active_time_ms,
            pending,
        });
    }
    let mut pending = Vec::with_capacity(pel.len());
    for (id, delivery_time_ms, delivery_count) in pel {
        let Some(idx) = owner.remove(&id) else {
            return Err(corrupt_at(
                pel_at,
                format!("pending entry {id} without a consumer"),
            ));
        };
        pending.push(PendingEntry {
            id,
            consumer: consumers[idx].name.clone(),
            delivery_time_ms,
            delivery_count,
        });
    }
    if !owner.is_empty() {
        return Err(corrupt_at(
            pel_at,
            "consumer owns an entry missing from the group's PEL",
        ));
    }
    Ok(Group {
        name,
        last_id,
        entries_read,
        pending,
        consumers,
    })
}
