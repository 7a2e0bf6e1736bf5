//! Decoding serialized values (the `value` bytes of a [`KeyEntry`]) into their logical
//! contents, for targets that cannot take a RESTORE payload (older Redis versions, values
//! too big for one command): the applier re-creates them with ordinary commands.
//!
//! Covers every value type Redis has written up to 8.6 except modules: plain encodings
//! (string, list, set, zset with text or binary scores, hash, hash with field TTLs), zipmap,
//! ziplist, intset, listpack, quicklist v1/v2 (plain and packed nodes, LZF-compressed or
//! not) and streams v1..v4 (listpacks with master entries and deltas, consumer groups,
//! PELs). Errors carry the byte offset inside `value`.

pub(super) mod packed;
pub(super) mod stream;

pub use stream::{
    Consumer, Group, PendingEntry, StreamEntry, StreamId, StreamIdmp, StreamMeta, StreamValue,
};

use super::format::*;
use super::{KeyEntry, RdbError};
use bytes::Bytes;
use packed::{Elem, PackErr};
use std::borrow::Cow;

/// The logical contents of a value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    String(Bytes),
    /// Elements from head to tail.
    List(Vec<Bytes>),
    /// Members, in the order the encoding holds them.
    Set(Vec<Bytes>),
    /// Member and score pairs. Scores keep full precision (binary doubles are taken as
    /// they are, text scores are parsed), including `inf`, `-inf` and NaN.
    ZSet(Vec<(Bytes, f64)>),
    /// Field, value and the field's absolute expiry in Unix milliseconds (hash field TTLs,
    /// Redis 7.4+), in the order the encoding holds them.
    Hash(Vec<(Bytes, Bytes, Option<i64>)>),
    Stream(StreamValue),
}

/// A piece of a value too big to be held whole, as the reader hands it out in streaming
/// mode (see [`crate::rdb::RdbReader::set_value_limit`]): between
/// [`crate::rdb::Event::BigValueStart`] and [`crate::rdb::Event::BigValueEnd`], in file
/// order. Collections come in runs of at most [`PART_ELEMS`] elements and about
/// [`PART_BYTES`] bytes (a single element is never split), strings in slices of at most
/// [`PART_BYTES`]. [`Assembler`] puts the parts back together into the [`Value`] that
/// [`decode`] gives for the same bytes.
#[derive(Debug, Clone, PartialEq)]
pub enum ValuePart {
    /// The next bytes of a string (type 0).
    String(Bytes),
    /// The next list elements, head to tail (types 1, 14, 18).
    List(Vec<Bytes>),
    /// The next set members (type 2).
    Set(Vec<Bytes>),
    /// The next sorted set members and scores (types 3, 5).
    ZSet(Vec<(Bytes, f64)>),
    /// The next hash fields, values and field expiries (types 4, 22, 24).
    Hash(Vec<(Bytes, Bytes, Option<i64>)>),
    /// The next stream entries (types 15, 19, 21, 26), in ID order. `deleted`: the IDs of
    /// entries of the same stretch that are still in the file but flagged deleted (a
    /// group's pending entries may refer to them), also in ID order.
    StreamEntries {
        entries: Vec<StreamEntry>,
        deleted: Vec<StreamId>,
    },
    /// After the last entries: the stream's metadata.
    StreamMeta(StreamMeta),
    /// A consumer group; its consumers follow.
    StreamGroup {
        name: Bytes,
        last_id: StreamId,
        entries_read: Option<u64>,
    },
    /// A consumer of the group last announced; `pending` of its pending entries follow.
    StreamConsumer {
        name: Bytes,
        seen_time_ms: i64,
        active_time_ms: Option<i64>,
        pending: u64,
    },
    /// The next pending entries of the consumer last announced (in its own ID order), with
    /// their delivery time and count from the group's PEL.
    StreamPending(Vec<PendingEntry>),
    /// Type 26: the IDMP settings, last.
    StreamIdmp(StreamIdmp),
}

/// Most elements in one [`ValuePart`].
pub const PART_ELEMS: usize = 1000;
/// About the most bytes in one [`ValuePart`] (a string part: at most this).
pub const PART_BYTES: usize = 1024 * 1024;

/// Puts the parts of a streamed value back together (tests, small uses: it holds the whole
/// value).
#[derive(Debug)]
pub struct Assembler {
    value: Value,
}

impl Assembler {
    /// For a value of RDB type `value_type` (one of the types the reader streams).
    pub fn new(value_type: u8) -> Result<Assembler, RdbError> {
        let value = match value_type {
            T_STRING => Value::String(Bytes::new()),
            T_LIST | T_LIST_QUICKLIST | T_LIST_QUICKLIST_2 => Value::List(Vec::new()),
            T_SET => Value::Set(Vec::new()),
            T_ZSET | T_ZSET_2 => Value::ZSet(Vec::new()),
            T_HASH | T_HASH_METADATA_PRE_GA | T_HASH_METADATA => Value::Hash(Vec::new()),
            T_STREAM_LISTPACKS | T_STREAM_LISTPACKS_2 | T_STREAM_LISTPACKS_3
            | T_STREAM_LISTPACKS_4 => Value::Stream(StreamValue {
                entries: Vec::new(),
                length: 0,
                last_id: StreamId::default(),
                first_id: None,
                max_deleted_id: None,
                entries_added: None,
                groups: Vec::new(),
                idmp: None,
            }),
            t => return Err(unsupported(t, format!("type {t} is never streamed"))),
        };
        Ok(Assembler { value })
    }

    /// Adds the next part; a part that does not belong to the value's type is an error.
    pub fn push(&mut self, part: ValuePart) -> Result<(), RdbError> {
        let wrong = || RdbError::Corrupt {
            offset: 0,
            what: "value part of another type".into(),
        };
        match (&mut self.value, part) {
            (Value::String(s), ValuePart::String(p)) => {
                let mut v = Vec::with_capacity(s.len() + p.len());
                v.extend_from_slice(s);
                v.extend_from_slice(&p);
                *s = Bytes::from(v);
            }
            (Value::List(l), ValuePart::List(p)) => l.extend(p),
            (Value::Set(l), ValuePart::Set(p)) => l.extend(p),
            (Value::ZSet(l), ValuePart::ZSet(p)) => l.extend(p),
            (Value::Hash(l), ValuePart::Hash(p)) => l.extend(p),
            (Value::Stream(s), part) => match part {
                ValuePart::StreamEntries { entries, .. } => s.entries.extend(entries),
                ValuePart::StreamMeta(m) => {
                    s.length = m.length;
                    s.last_id = m.last_id;
                    s.first_id = m.first_id;
                    s.max_deleted_id = m.max_deleted_id;
                    s.entries_added = m.entries_added;
                }
                ValuePart::StreamGroup {
                    name,
                    last_id,
                    entries_read,
                } => s.groups.push(Group {
                    name,
                    last_id,
                    entries_read,
                    pending: Vec::new(),
                    consumers: Vec::new(),
                }),
                ValuePart::StreamConsumer {
                    name,
                    seen_time_ms,
                    active_time_ms,
                    ..
                } => s
                    .groups
                    .last_mut()
                    .ok_or_else(wrong)?
                    .consumers
                    .push(Consumer {
                        name,
                        seen_time_ms,
                        active_time_ms,
                        pending: Vec::new(),
                    }),
                ValuePart::StreamPending(p) => {
                    let g = s.groups.last_mut().ok_or_else(wrong)?;
                    let c = g.consumers.last_mut().ok_or_else(wrong)?;
                    c.pending.extend(p.iter().map(|p| p.id));
                    g.pending.extend(p);
                }
                ValuePart::StreamIdmp(i) => s.idmp = Some(i),
                _ => return Err(wrong()),
            },
            _ => return Err(wrong()),
        }
        Ok(())
    }

    /// The whole value (a group's pending entries in ID order, as its PEL holds them).
    pub fn finish(mut self) -> Value {
        if let Value::Stream(s) = &mut self.value {
            for g in &mut s.groups {
                g.pending.sort_by_key(|p| p.id);
            }
        }
        self.value
    }
}

/// Decodes a value of RDB type `entry_type`. Module values (types 6, 7) and types this
/// build does not know give [`RdbError::Unsupported`] (with an empty key: use
/// [`decode_entry`] to have the key named). Offsets in errors count from the value's first
/// byte ([`RdbError::in_file`] makes them the file's).
pub fn decode(entry_type: u8, value: &[u8]) -> Result<Value, RdbError> {
    let mut c = Cur::new(value);
    let v = decode_inner(entry_type, &mut c)?;
    if c.pos != value.len() {
        return Err(c.corrupt("bytes left over after the value"));
    }
    Ok(v)
}

/// [`decode`] for a key read by the reader: `Unsupported` errors name the key.
pub fn decode_entry(entry: &KeyEntry) -> Result<Value, RdbError> {
    decode(entry.value_type, &entry.value).map_err(|e| match e {
        RdbError::Unsupported {
            offset,
            value_type,
            why,
            ..
        } => RdbError::Unsupported {
            offset,
            value_type,
            key: String::from_utf8_lossy(&entry.key).into_owned(),
            why,
        },
        other => other,
    })
}

fn unsupported(value_type: u8, why: impl Into<String>) -> RdbError {
    RdbError::Unsupported {
        offset: 0,
        value_type,
        key: String::new(),
        why: why.into(),
    }
}

fn decode_inner(t: u8, c: &mut Cur<'_>) -> Result<Value, RdbError> {
    Ok(match t {
        T_STRING => Value::String(c.string()?.into_bytes()),
        T_LIST => Value::List(c.counted(|c| Ok(c.string()?.into_bytes()))?),
        T_SET => Value::Set(c.counted(|c| Ok(c.string()?.into_bytes()))?),
        T_ZSET => Value::ZSet(c.counted(|c| {
            let member = c.string()?.into_bytes();
            Ok((member, c.text_double()?))
        })?),
        T_ZSET_2 => Value::ZSet(c.counted(|c| {
            let member = c.string()?.into_bytes();
            Ok((member, f64::from_le_bytes(c.array::<8>()?)))
        })?),
        T_HASH => Value::Hash(c.counted(|c| {
            let field = c.string()?.into_bytes();
            Ok((field, c.string()?.into_bytes(), None))
        })?),
        T_MODULE_PRE_GA => return Err(unsupported(t, "pre-release module value")),
        T_MODULE_2 => {
            let id = c.len()?;
            return Err(unsupported(
                t,
                format!(
                    "value of module type '{}' can only be moved with RESTORE",
                    module_type_name(id)
                ),
            ));
        }
        T_HASH_ZIPMAP => {
            let (at, blob) = c.blob()?;
            let pairs = packed::zipmap(&blob).map_err(|e| pack_err(at, "zipmap", e))?;
            Value::Hash(
                pairs
                    .into_iter()
                    .map(|(f, v)| (Bytes::copy_from_slice(f), Bytes::copy_from_slice(v), None))
                    .collect(),
            )
        }
        T_LIST_ZIPLIST => Value::List(elems(c, packed::ziplist, "ziplist")?),
        T_SET_INTSET => {
            let (at, blob) = c.blob()?;
            let ints = packed::intset(&blob).map_err(|e| pack_err(at, "intset", e))?;
            Value::Set(
                ints.into_iter()
                    .map(|v| Bytes::from(v.to_string()))
                    .collect(),
            )
        }
        T_ZSET_ZIPLIST => Value::ZSet(zset_pairs(c, packed::ziplist, "ziplist")?),
        T_HASH_ZIPLIST => Value::Hash(hash_pairs(c, packed::ziplist, "ziplist")?),
        T_LIST_QUICKLIST => {
            let mut out = Vec::new();
            for _ in 0..c.len()? {
                out.extend(elems(c, packed::ziplist, "quicklist ziplist node")?);
            }
            Value::List(out)
        }
        T_LIST_QUICKLIST_2 => {
            let mut out = Vec::new();
            for _ in 0..c.len()? {
                match c.len()? {
                    QL_PLAIN => out.push(c.string()?.into_bytes()),
                    QL_PACKED => out.extend(elems(c, packed::listpack, "quicklist listpack node")?),
                    _ => return Err(c.corrupt("quicklist node container neither plain nor packed")),
                }
            }
            Value::List(out)
        }
        T_HASH_LISTPACK => Value::Hash(hash_pairs(c, packed::listpack, "listpack")?),
        T_ZSET_LISTPACK => Value::ZSet(zset_pairs(c, packed::listpack, "listpack")?),
        T_SET_LISTPACK => Value::Set(elems(c, packed::listpack, "listpack")?),
        T_STREAM_LISTPACKS | T_STREAM_LISTPACKS_2 | T_STREAM_LISTPACKS_3 | T_STREAM_LISTPACKS_4 => {
            Value::Stream(stream::decode(t, c)?)
        }
        T_HASH_METADATA_PRE_GA | T_HASH_METADATA => {
            // 24 stores the hash's next expiry first and field TTLs relative to it (+1,
            // 0 meaning none); the 7.4 release candidates' 22 stored them absolute.
            let min_expire = if t == T_HASH_METADATA {
                Some(i64::from_le_bytes(c.array::<8>()?))
            } else {
                None
            };
            Value::Hash(c.counted(|c| {
                let at = c.pos;
                let ttl = c.len()?;
                let field = c.string()?.into_bytes();
                let value = c.string()?.into_bytes();
                let expire = field_expire(ttl, min_expire).map_err(|w| corrupt_at(at, w))?;
                Ok((field, value, expire))
            })?)
        }
        T_HASH_LISTPACK_EX_PRE_GA | T_HASH_LISTPACK_EX => {
            if t == T_HASH_LISTPACK_EX {
                c.array::<8>()?; // the hash's next expiry: derivable, not needed
            }
            let (at, blob) = c.blob()?;
            let items = packed::listpack(&blob).map_err(|e| pack_err(at, "listpack", e))?;
            if items.len() % 3 != 0 {
                return Err(corrupt_at(
                    at,
                    "hash listpack with TTLs not made of triples",
                ));
            }
            let mut out = Vec::with_capacity(items.len() / 3);
            for t in items.chunks_exact(3) {
                // Absolute expiry in ms, 0 when the field has none.
                let ttl = t[2]
                    .as_int()
                    .ok_or_else(|| corrupt_at(at, "hash field TTL is not an integer"))?;
                out.push((t[0].to_bytes(), t[1].to_bytes(), (ttl != 0).then_some(ttl)));
            }
            Value::Hash(out)
        }
        _ => return Err(unsupported(t, format!("unknown value type {t}"))),
    })
}

/// A hash field's absolute expiry from its form in types 22 and 24: 24 (`min_expire`: the
/// hash's next expiry) stores it relative to that, plus one, 0 meaning none; 22 stores it
/// absolute.
pub(crate) fn field_expire(ttl: u64, min_expire: Option<i64>) -> Result<Option<i64>, &'static str> {
    const RANGE: &str = "hash field TTL out of range";
    Ok(match (ttl, min_expire) {
        (0, _) => None,
        (ttl, Some(min)) => Some(
            i64::try_from(ttl)
                .ok()
                .and_then(|ttl| ttl.checked_add(min)?.checked_sub(1))
                .ok_or(RANGE)?,
        ),
        (ttl, None) => Some(i64::try_from(ttl).map_err(|_| RANGE)?),
    })
}

/// Elements of one packed string (ziplist or listpack) as client-visible strings.
fn elems(
    c: &mut Cur<'_>,
    parse: for<'b> fn(&'b [u8]) -> Result<Vec<Elem<'b>>, PackErr>,
    what: &'static str,
) -> Result<Vec<Bytes>, RdbError> {
    let (at, blob) = c.blob()?;
    let items = parse(&blob).map_err(|e| pack_err(at, what, e))?;
    Ok(items.into_iter().map(Elem::to_bytes).collect())
}

fn hash_pairs(
    c: &mut Cur<'_>,
    parse: for<'b> fn(&'b [u8]) -> Result<Vec<Elem<'b>>, PackErr>,
    what: &'static str,
) -> Result<Vec<(Bytes, Bytes, Option<i64>)>, RdbError> {
    let (at, blob) = c.blob()?;
    let items = parse(&blob).map_err(|e| pack_err(at, what, e))?;
    if items.len() % 2 != 0 {
        return Err(corrupt_at(
            at,
            "hash encoding with an odd number of elements",
        ));
    }
    Ok(items
        .chunks_exact(2)
        .map(|p| (p[0].to_bytes(), p[1].to_bytes(), None))
        .collect())
}

fn zset_pairs(
    c: &mut Cur<'_>,
    parse: for<'b> fn(&'b [u8]) -> Result<Vec<Elem<'b>>, PackErr>,
    what: &'static str,
) -> Result<Vec<(Bytes, f64)>, RdbError> {
    let (at, blob) = c.blob()?;
    let items = parse(&blob).map_err(|e| pack_err(at, what, e))?;
    if items.len() % 2 != 0 {
        return Err(corrupt_at(
            at,
            "sorted set encoding with an odd number of elements",
        ));
    }
    items
        .chunks_exact(2)
        .map(|p| {
            let score = p[1]
                .as_score()
                .ok_or_else(|| corrupt_at(at, "sorted set score is not a number"))?;
            Ok((p[0].to_bytes(), score))
        })
        .collect()
}

fn corrupt_at(offset: usize, what: impl Into<String>) -> RdbError {
    RdbError::Corrupt {
        offset: offset as u64,
        what: what.into(),
    }
}

/// A malformed packed blob: offset of the blob's string in the value, and where inside it.
fn pack_err(blob_at: usize, what: &str, e: PackErr) -> RdbError {
    corrupt_at(
        blob_at,
        format!("{what}: {} (at byte {} of it)", e.what, e.at),
    )
}

/// A string read from a value: borrowed when stored raw, owned when it was an integer or
/// LZF-compressed.
pub(crate) struct Str<'a>(Cow<'a, [u8]>);

impl Str<'_> {
    fn into_bytes(self) -> Bytes {
        match self.0 {
            Cow::Borrowed(b) => Bytes::copy_from_slice(b),
            Cow::Owned(v) => Bytes::from(v),
        }
    }
}

impl std::ops::Deref for Str<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

/// A cursor over a value's bytes with the RDB primitives (lengths, strings, doubles).
pub(crate) struct Cur<'a> {
    data: &'a [u8],
    pos: usize,
}

/// A length field or, for strings, a special encoding.
enum LenOrEnc {
    Len(u64),
    Enc(u8),
}

impl<'a> Cur<'a> {
    fn new(data: &'a [u8]) -> Self {
        Cur { data, pos: 0 }
    }

    fn corrupt(&self, what: impl Into<String>) -> RdbError {
        corrupt_at(self.pos, what)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], RdbError> {
        if self.data.len() - self.pos < n {
            return Err(self.corrupt("value ends early"));
        }
        let s = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], RdbError> {
        Ok(self.take(N)?.try_into().expect("length checked"))
    }

    fn u8(&mut self) -> Result<u8, RdbError> {
        Ok(self.take(1)?[0])
    }

    fn len_or_enc(&mut self) -> Result<LenOrEnc, RdbError> {
        let b = self.u8()?;
        Ok(match b >> 6 {
            0 => LenOrEnc::Len((b & 0x3f) as u64),
            1 => LenOrEnc::Len((((b & 0x3f) as u64) << 8) | self.u8()? as u64),
            2 => match b {
                0x80 => LenOrEnc::Len(u32::from_be_bytes(self.array()?) as u64),
                0x81 => LenOrEnc::Len(u64::from_be_bytes(self.array()?)),
                _ => return Err(corrupt_at(self.pos - 1, "unknown length encoding")),
            },
            _ => LenOrEnc::Enc(b & 0x3f),
        })
    }

    fn len(&mut self) -> Result<u64, RdbError> {
        match self.len_or_enc()? {
            LenOrEnc::Len(n) => Ok(n),
            LenOrEnc::Enc(_) => Err(corrupt_at(
                self.pos - 1,
                "string encoding where a length belongs",
            )),
        }
    }

    /// Runs `f` once per element of a length-prefixed collection. Capacity is not taken
    /// from the (untrusted) count.
    fn counted<T>(
        &mut self,
        mut f: impl FnMut(&mut Self) -> Result<T, RdbError>,
    ) -> Result<Vec<T>, RdbError> {
        let n = self.len()?;
        let mut out = Vec::with_capacity((n as usize).min(self.data.len() - self.pos));
        for _ in 0..n {
            out.push(f(self)?);
        }
        Ok(out)
    }

    fn string(&mut self) -> Result<Str<'a>, RdbError> {
        let start = self.pos;
        Ok(Str(match self.len_or_enc()? {
            LenOrEnc::Len(n) => {
                if n > (self.data.len() - self.pos) as u64 {
                    return Err(self.corrupt("string longer than the value"));
                }
                Cow::Borrowed(self.take(n as usize)?)
            }
            LenOrEnc::Enc(ENC_INT8) => Cow::Owned(int_to_bytes(self.u8()? as i8 as i64)),
            LenOrEnc::Enc(ENC_INT16) => {
                Cow::Owned(int_to_bytes(i16::from_le_bytes(self.array()?) as i64))
            }
            LenOrEnc::Enc(ENC_INT32) => {
                Cow::Owned(int_to_bytes(i32::from_le_bytes(self.array()?) as i64))
            }
            LenOrEnc::Enc(ENC_LZF) => {
                let clen = self.len()?;
                let len = self.len()?;
                check_lzf_lens(clen, len).map_err(|w| corrupt_at(start, w))?;
                if clen > (self.data.len() - self.pos) as u64 {
                    return Err(self.corrupt("compressed string longer than the value"));
                }
                let src = self.take(clen as usize)?;
                Cow::Owned(lzf_decompress(src, len as usize).map_err(|w| corrupt_at(start, w))?)
            }
            LenOrEnc::Enc(_) => return Err(corrupt_at(start, "unknown string encoding")),
        }))
    }

    /// A string holding a packed encoding, with its offset for error messages.
    fn blob(&mut self) -> Result<(usize, Str<'a>), RdbError> {
        let at = self.pos;
        Ok((at, self.string()?))
    }

    /// A type-3 score: one length byte, 253/254/255 for NaN/+inf/-inf, else that many
    /// bytes of text ("%.17g").
    fn text_double(&mut self) -> Result<f64, RdbError> {
        let at = self.pos;
        Ok(match self.u8()? {
            253 => f64::NAN,
            254 => f64::INFINITY,
            255 => f64::NEG_INFINITY,
            n => {
                let text = self.take(n as usize)?;
                packed::parse_score(text).ok_or_else(|| corrupt_at(at, "score is not a number"))?
            }
        })
    }
}
