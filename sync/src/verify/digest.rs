//! What a value IS, independent of how it is encoded: a listpack on one side and a
//! hashtable on the other, an intset and a set of strings, a ziplist from an old RDB and a
//! quicklist, must compare equal. The DUMP payload is decoded ([`crate::rdb::decode`]) and
//! hashed in a canonical order: lists in order, sets and hashes sorted, sorted-set members
//! with their scores' exact bits, streams with their entries, groups, consumers and
//! pending entries (not the times they record). Module values are compared by their
//! serialized bytes.
//!
//! The digest is 128 bits from two independently salted SipHashes, computed within one
//! process only (never stored or sent), so its algorithm may change between builds.

use std::hash::Hasher;

use crate::rdb::decode::{self, Value};
use crate::rdb::RdbError;

/// The kind of value, as TYPE names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    String,
    List,
    Set,
    ZSet,
    Hash,
    Stream,
    Module,
}

impl Kind {
    /// From the RDB type byte (the first byte of a DUMP payload).
    pub fn of(type_byte: u8) -> Option<Kind> {
        Some(match type_byte {
            0 => Kind::String,
            1 | 10 | 14 | 18 => Kind::List,
            2 | 11 | 20 => Kind::Set,
            3 | 5 | 12 | 17 => Kind::ZSet,
            4 | 9 | 13 | 16 | 22..=25 => Kind::Hash,
            15 | 19 | 21 | 26 => Kind::Stream,
            6 | 7 => Kind::Module,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::String => "string",
            Kind::List => "list",
            Kind::Set => "set",
            Kind::ZSet => "zset",
            Kind::Hash => "hash",
            Kind::Stream => "stream",
            Kind::Module => "module",
        }
    }
}

/// A value's kind and canonical digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Digest {
    pub kind: Kind,
    pub hash: (u64, u64),
}

/// Two salted hashers fed the same bytes.
struct Twin(
    std::collections::hash_map::DefaultHasher,
    std::collections::hash_map::DefaultHasher,
);

impl Twin {
    fn new() -> Twin {
        let mut a = std::collections::hash_map::DefaultHasher::new();
        let mut b = std::collections::hash_map::DefaultHasher::new();
        a.write_u64(0x9e37_79b9_7f4a_7c15);
        b.write_u64(0xc2b2_ae3d_27d4_eb4f);
        Twin(a, b)
    }
    fn bytes(&mut self, b: &[u8]) {
        // Length first: ["ab","c"] and ["a","bc"] differ.
        self.0.write_usize(b.len());
        self.1.write_usize(b.len());
        self.0.write(b);
        self.1.write(b);
    }
    fn u64(&mut self, v: u64) {
        self.0.write_u64(v);
        self.1.write_u64(v);
    }
    fn finish(&self) -> (u64, u64) {
        (self.0.finish(), self.1.finish())
    }
}

/// The digest of a DUMP payload (type byte, value, RDB version, CRC).
pub fn of_payload(payload: &[u8]) -> Result<Digest, RdbError> {
    let n = payload.len();
    if n < 11 {
        return Err(RdbError::Corrupt {
            offset: 0,
            what: "DUMP payload too short".into(),
        });
    }
    let type_byte = payload[0];
    let kind = Kind::of(type_byte).ok_or_else(|| RdbError::Corrupt {
        offset: 0,
        what: format!("unknown value type {type_byte}"),
    })?;
    let body = &payload[1..n - 10];
    let mut h = Twin::new();
    h.u64(kind as u64);
    if kind == Kind::Module {
        h.bytes(body);
        return Ok(Digest {
            kind,
            hash: h.finish(),
        });
    }
    match decode::decode(type_byte, body)? {
        Value::String(s) => h.bytes(&s),
        Value::List(items) => {
            h.u64(items.len() as u64);
            for i in &items {
                h.bytes(i);
            }
        }
        Value::Set(mut members) => {
            members.sort_unstable();
            h.u64(members.len() as u64);
            for m in &members {
                h.bytes(m);
            }
        }
        Value::ZSet(mut pairs) => {
            pairs.sort_unstable_by(|a, b| a.0.cmp(&b.0));
            h.u64(pairs.len() as u64);
            for (m, score) in &pairs {
                h.bytes(m);
                // Exact bits: one ulp apart is a difference. (+0 and -0 are one score.)
                let s = if *score == 0.0 { 0.0f64 } else { *score };
                h.u64(s.to_bits());
            }
        }
        Value::Hash(mut fields) => {
            fields.sort_unstable_by(|a, b| a.0.cmp(&b.0));
            h.u64(fields.len() as u64);
            for (f, v, ttl) in &fields {
                h.bytes(f);
                h.bytes(v);
                h.u64(ttl.map_or(0, |t| t as u64));
            }
        }
        Value::Stream(s) => {
            // Entries and the last ID; groups by name with their last ID, pending entries
            // (ID, owner, delivery count) and consumers (name, pending IDs). Left out: times
            // (deliveries, consumers' activity: when things happened, not what the stream
            // holds) and what only newer formats record (first ID, max deleted ID, entries
            // added, entries read), so a 6.2 side and a 7.0 side compare.
            let id = |h: &mut Twin, i: &decode::StreamId| {
                h.u64(i.ms);
                h.u64(i.seq);
            };
            h.u64(s.entries.len() as u64);
            for e in &s.entries {
                id(&mut h, &e.id);
                h.u64(e.fields.len() as u64);
                for (f, v) in &e.fields {
                    h.bytes(f);
                    h.bytes(v);
                }
            }
            id(&mut h, &s.last_id);
            let mut groups: Vec<&decode::Group> = s.groups.iter().collect();
            groups.sort_by(|a, b| a.name.cmp(&b.name));
            h.u64(groups.len() as u64);
            for g in groups {
                h.bytes(&g.name);
                id(&mut h, &g.last_id);
                let mut pel: Vec<&decode::PendingEntry> = g.pending.iter().collect();
                pel.sort_by_key(|p| (p.id.ms, p.id.seq));
                h.u64(pel.len() as u64);
                for p in pel {
                    id(&mut h, &p.id);
                    h.bytes(&p.consumer);
                    h.u64(p.delivery_count);
                }
                let mut consumers: Vec<&decode::Consumer> = g.consumers.iter().collect();
                consumers.sort_by(|a, b| a.name.cmp(&b.name));
                h.u64(consumers.len() as u64);
                for c in consumers {
                    h.bytes(&c.name);
                    let mut ids: Vec<(u64, u64)> =
                        c.pending.iter().map(|i| (i.ms, i.seq)).collect();
                    ids.sort_unstable();
                    h.u64(ids.len() as u64);
                    for (ms, seq) in ids {
                        h.u64(ms);
                        h.u64(seq);
                    }
                }
            }
        }
    }
    Ok(Digest {
        kind,
        hash: h.finish(),
    })
}

#[cfg(test)]
mod tests;
