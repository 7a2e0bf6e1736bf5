//! Streaming mode: a value above the reader's value limit, read from its start (after the
//! replay, see the parent module) and handed out as bounded [`ValuePart`]s, one per event.
//!
//! What is held at a time: one part (at most [`PART_ELEMS`] elements, about
//! [`PART_BYTES`]), plus
//! - the element being read (a list element, member, field or value is never split), or
//!   the packed node being read (a quicklist node, a stream listpack) with its decoded
//!   elements not handed out yet;
//! - for an LZF-compressed string: an 8 KiB window of output (LZF back references reach
//!   no further), so it is decompressed on the fly whatever its size;
//! - for a stream's consumer group: its pending entries list (ID, delivery time and count:
//!   about 33 bytes per pending entry), from where it is read until the consumers that own
//!   the entries have been read (the RDB has the group PEL first, the owners after it).

use super::*;
use crate::rdb::decode::packed::{self, Elem, PackErr};
use crate::rdb::decode::stream::node_entries;
use crate::rdb::decode::{
    field_expire, PendingEntry, StreamEntry, StreamId, StreamIdmp, StreamMeta, ValuePart,
    PART_BYTES, PART_ELEMS,
};

/// How far back an LZF back reference can reach.
const LZF_WINDOW: usize = 8192;

/// Whether values of type `t` can be arbitrarily large (else they are one packed blob,
/// bounded by the source's settings, or a module value).
pub(super) fn streamable(t: u8) -> bool {
    matches!(
        t,
        T_STRING
            | T_LIST
            | T_SET
            | T_ZSET
            | T_HASH
            | T_ZSET_2
            | T_LIST_QUICKLIST
            | T_LIST_QUICKLIST_2
            | T_STREAM_LISTPACKS
            | T_STREAM_LISTPACKS_2
            | T_STREAM_LISTPACKS_3
            | T_STREAM_LISTPACKS_4
            | T_HASH_METADATA_PRE_GA
            | T_HASH_METADATA
    )
}

/// A value being read in streaming mode.
pub(super) struct Big {
    t: u8,
    key: Bytes,
    step: Step,
}

type NodeEntry = (StreamId, Option<Vec<(Bytes, Bytes)>>);

/// A packed-encoding parser (ziplist or listpack).
type PackParse = for<'b> fn(&'b [u8]) -> Result<Vec<Elem<'b>>, PackErr>;

enum Step {
    /// The value's first fields are next.
    Header,
    /// A string stored raw: bytes left.
    Raw(u64),
    /// A string stored as an integer: its text.
    Text(Option<Bytes>),
    Lzf(Box<Lzf>),
    /// Types 1-5, 22, 24: elements left (and 24's next field expiry).
    Elems {
        left: u64,
        min_expire: Option<i64>,
    },
    /// Quicklist nodes left, and the elements of the last node not handed out yet.
    ListNodes {
        left: u64,
        carry: std::vec::IntoIter<Bytes>,
    },
    /// Stream listpack nodes left, and the entries of the last node not handed out yet.
    StreamNodes {
        left: u64,
        carry: std::vec::IntoIter<NodeEntry>,
    },
    StreamMeta,
    /// Consumer groups left.
    Groups {
        left: u64,
    },
    /// Inside a group: its consumers.
    Consumers(Box<GroupPel>),
    /// Type 26's IDMP fields.
    Idmp,
    Finish,
}

/// An LZF string being decompressed.
struct Lzf {
    /// Where the string starts (for errors).
    at: u64,
    /// Compressed bytes left.
    in_left: u64,
    /// Decompressed bytes still to come.
    out_left: u64,
    /// Output: up to `LZF_WINDOW` bytes already handed out, then the rest.
    win: Vec<u8>,
    handed: usize,
}

/// A consumer group being read.
struct GroupPel {
    /// Groups left after this one.
    groups_left: u64,
    consumers_left: u64,
    /// The group's PEL in ID order: ID, delivery time, delivery count.
    pel: Vec<(StreamId, i64, u64)>,
    /// Per PEL entry: a consumer owns it.
    claimed: Vec<bool>,
    n_claimed: usize,
    pel_at: u64,
    /// The consumer being read and its pending entries left.
    consumer: Bytes,
    consumer_left: u64,
}

fn chunk(part: ValuePart) -> Event {
    Event::BigValueChunk(Box::new(part))
}

impl<R: Read> RdbReader<R> {
    /// Switches to streaming mode for the value of `key` (type `t`), which starts at `pos`.
    pub(super) fn big_start(&mut self, t: u8, key: Bytes) -> Event {
        self.state = State::Big;
        self.big = Some(Box::new(Big {
            t,
            key: key.clone(),
            step: Step::Header,
        }));
        Event::BigValueStart {
            db: self.db,
            key,
            expire_ms: self.pending_expire.take(),
            value_type: t,
        }
    }

    /// The next event of the value being streamed.
    #[inline(never)]
    pub(super) fn big_next(&mut self) -> Result<Event, RdbError> {
        let Some(mut b) = self.big.take() else {
            return Err(self.corrupt_at(self.position(), "internal: no value is being streamed"));
        };
        match self.big_step(&mut b) {
            Ok(Event::BigValueEnd) => {
                self.state = State::Body;
                Ok(Event::BigValueEnd)
            }
            Ok(ev) => {
                self.big = Some(b);
                Ok(ev)
            }
            Err(RdbError::Unsupported {
                offset,
                value_type,
                why,
                ..
            }) => Err(RdbError::Unsupported {
                offset,
                value_type,
                key: String::from_utf8_lossy(&b.key).into_owned(),
                why,
            }),
            Err(e) => Err(e),
        }
    }

    fn big_step(&mut self, b: &mut Big) -> Result<Event, RdbError> {
        let t = b.t;
        loop {
            match &mut b.step {
                Step::Header => b.step = self.big_header(t)?,
                Step::Raw(0) => b.step = Step::Finish,
                Step::Raw(left) => {
                    let n = (*left).min(PART_BYTES as u64) as usize;
                    let part = self.read_raw(n)?;
                    *left -= n as u64;
                    return Ok(chunk(ValuePart::String(Bytes::from(part))));
                }
                Step::Text(text) => match text.take() {
                    Some(s) => return Ok(chunk(ValuePart::String(s))),
                    None => b.step = Step::Finish,
                },
                Step::Lzf(z) => match self.lzf_part(z)? {
                    Some(p) => return Ok(chunk(ValuePart::String(p))),
                    None => b.step = Step::Finish,
                },
                Step::Elems { left: 0, .. } => b.step = Step::Finish,
                Step::Elems { left, min_expire } => {
                    let min_expire = *min_expire;
                    return self.elems(t, left, min_expire).map(chunk);
                }
                Step::ListNodes { left, carry } => {
                    let mut part = Vec::new();
                    let mut bytes = 0;
                    loop {
                        while part.len() < PART_ELEMS && bytes < PART_BYTES {
                            let Some(e) = carry.next() else { break };
                            bytes += e.len();
                            part.push(e);
                        }
                        if part.len() >= PART_ELEMS || bytes >= PART_BYTES || *left == 0 {
                            break;
                        }
                        *carry = self.list_node(t)?.into_iter();
                        *left -= 1;
                    }
                    if part.is_empty() {
                        b.step = Step::Finish;
                    } else {
                        return Ok(chunk(ValuePart::List(part)));
                    }
                }
                Step::StreamNodes { left, carry } => {
                    let (mut entries, mut deleted) = (Vec::new(), Vec::new());
                    let mut bytes = 0;
                    loop {
                        while entries.len() + deleted.len() < PART_ELEMS && bytes < PART_BYTES {
                            match carry.next() {
                                Some((id, Some(fields))) => {
                                    bytes += 16
                                        + fields
                                            .iter()
                                            .map(|(f, v)| f.len() + v.len())
                                            .sum::<usize>();
                                    entries.push(StreamEntry { id, fields });
                                }
                                Some((id, None)) => {
                                    bytes += 16;
                                    deleted.push(id);
                                }
                                None => break,
                            }
                        }
                        if entries.len() + deleted.len() >= PART_ELEMS
                            || bytes >= PART_BYTES
                            || *left == 0
                        {
                            break;
                        }
                        *carry = self.stream_node()?.into_iter();
                        *left -= 1;
                    }
                    if entries.is_empty() && deleted.is_empty() {
                        b.step = Step::StreamMeta;
                    } else {
                        return Ok(chunk(ValuePart::StreamEntries { entries, deleted }));
                    }
                }
                Step::StreamMeta => {
                    let meta = self.stream_meta(t)?;
                    b.step = Step::Groups { left: self.len()? };
                    return Ok(chunk(ValuePart::StreamMeta(meta)));
                }
                Step::Groups { left: 0 } => {
                    b.step = if t >= T_STREAM_LISTPACKS_4 {
                        Step::Idmp
                    } else {
                        Step::Finish
                    };
                }
                Step::Groups { left } => {
                    let groups_left = *left - 1;
                    let (part, g) = self.group(t, groups_left)?;
                    b.step = Step::Consumers(g);
                    return Ok(chunk(part));
                }
                Step::Consumers(g) => {
                    if g.consumer_left > 0 {
                        return self.pending(g).map(chunk);
                    }
                    if g.consumers_left > 0 {
                        return self.consumer(t, g).map(chunk);
                    }
                    if g.n_claimed != g.pel.len() {
                        let i = g.claimed.iter().position(|c| !c).unwrap_or(0);
                        return Err(self.corrupt_at(
                            g.pel_at,
                            format!("pending entry {} without a consumer", g.pel[i].0),
                        ));
                    }
                    b.step = Step::Groups {
                        left: g.groups_left,
                    };
                }
                Step::Idmp => {
                    let part = self.idmp(t)?;
                    b.step = Step::Finish;
                    return Ok(chunk(part));
                }
                Step::Finish => return Ok(Event::BigValueEnd),
            }
        }
    }

    /// The value's leading fields: what comes next.
    fn big_header(&mut self, t: u8) -> Result<Step, RdbError> {
        Ok(match t {
            T_STRING => {
                let at = self.position();
                match self.len_or_enc()? {
                    LenOrEnc::Len(n) => {
                        if n > MAX_STRING_LEN {
                            return Err(self.corrupt_at(at, "string longer than the 4 GiB limit"));
                        }
                        Step::Raw(n)
                    }
                    LenOrEnc::Enc(ENC_INT8) => {
                        Step::Text(Some(int_to_bytes(self.u8()? as i8 as i64).into()))
                    }
                    LenOrEnc::Enc(ENC_INT16) => Step::Text(Some(
                        int_to_bytes(i16::from_le_bytes(self.array()?) as i64).into(),
                    )),
                    LenOrEnc::Enc(ENC_INT32) => Step::Text(Some(
                        int_to_bytes(i32::from_le_bytes(self.array()?) as i64).into(),
                    )),
                    LenOrEnc::Enc(ENC_LZF) => {
                        let clen = self.len()?;
                        let len = self.len()?;
                        check_lzf_lens(clen, len).map_err(|w| self.corrupt_at(at, w))?;
                        Step::Lzf(Box::new(Lzf {
                            at,
                            in_left: clen,
                            out_left: len,
                            win: Vec::new(),
                            handed: 0,
                        }))
                    }
                    LenOrEnc::Enc(_) => return Err(self.corrupt_at(at, "unknown string encoding")),
                }
            }
            T_HASH_METADATA => {
                let min_expire = Some(i64::from_le_bytes(self.array()?));
                Step::Elems {
                    left: self.len()?,
                    min_expire,
                }
            }
            T_LIST | T_SET | T_ZSET | T_ZSET_2 | T_HASH | T_HASH_METADATA_PRE_GA => Step::Elems {
                left: self.len()?,
                min_expire: None,
            },
            T_LIST_QUICKLIST | T_LIST_QUICKLIST_2 => Step::ListNodes {
                left: self.len()?,
                carry: Vec::new().into_iter(),
            },
            T_STREAM_LISTPACKS | T_STREAM_LISTPACKS_2 | T_STREAM_LISTPACKS_3
            | T_STREAM_LISTPACKS_4 => Step::StreamNodes {
                left: self.len()?,
                carry: Vec::new().into_iter(),
            },
            _ => {
                return Err(self.corrupt_at(
                    self.position(),
                    format!("internal: value type {t} is not streamed"),
                ))
            }
        })
    }

    /// The next run of elements of a plain collection.
    fn elems(
        &mut self,
        t: u8,
        left: &mut u64,
        min_expire: Option<i64>,
    ) -> Result<ValuePart, RdbError> {
        let mut bytes = 0;
        macro_rules! run {
            ($read:expr, $size:expr) => {{
                let mut v = Vec::new();
                while *left > 0 && v.len() < PART_ELEMS && bytes < PART_BYTES {
                    let item = $read;
                    bytes += $size(&item);
                    v.push(item);
                    *left -= 1;
                }
                v
            }};
        }
        Ok(match t {
            T_LIST => ValuePart::List(run!(self.read_string()?, Bytes::len)),
            T_SET => ValuePart::Set(run!(self.read_string()?, Bytes::len)),
            T_ZSET | T_ZSET_2 => ValuePart::ZSet(run!(
                {
                    let member = self.read_string()?;
                    let score = if t == T_ZSET {
                        self.text_score()?
                    } else {
                        f64::from_le_bytes(self.array()?)
                    };
                    (member, score)
                },
                |p: &(Bytes, f64)| p.0.len() + 8
            )),
            T_HASH => ValuePart::Hash(run!(
                {
                    let field = self.read_string()?;
                    (field, self.read_string()?, None)
                },
                |p: &(Bytes, Bytes, Option<i64>)| p.0.len() + p.1.len()
            )),
            _ => ValuePart::Hash(run!(
                {
                    let at = self.position();
                    let ttl = self.len()?;
                    let field = self.read_string()?;
                    let value = self.read_string()?;
                    let expire =
                        field_expire(ttl, min_expire).map_err(|w| self.corrupt_at(at, w))?;
                    (field, value, expire)
                },
                |p: &(Bytes, Bytes, Option<i64>)| p.0.len() + p.1.len() + 8
            )),
        })
    }

    /// A type-3 score: one length byte, 253/254/255 for NaN/+inf/-inf, else that much text.
    fn text_score(&mut self) -> Result<f64, RdbError> {
        let at = self.position();
        Ok(match self.u8()? {
            253 => f64::NAN,
            254 => f64::INFINITY,
            255 => f64::NEG_INFINITY,
            n => {
                let n = n as usize;
                self.fill(n)?;
                let v = packed::parse_score(&self.buf[self.pos..self.pos + n]);
                self.pos += n;
                v.ok_or_else(|| self.corrupt_at(at, "score is not a number"))?
            }
        })
    }

    fn pack_err(&self, at: u64, what: &str, e: PackErr) -> RdbError {
        self.corrupt_at(at, format!("{what}: {} (at byte {} of it)", e.what, e.at))
    }

    /// The elements of the next quicklist node.
    fn list_node(&mut self, t: u8) -> Result<Vec<Bytes>, RdbError> {
        let at = self.position();
        let (parse, what): (PackParse, _) = if t == T_LIST_QUICKLIST {
            (packed::ziplist, "quicklist ziplist node")
        } else {
            match self.len()? {
                QL_PLAIN => return Ok(vec![self.read_string()?]),
                QL_PACKED => (packed::listpack, "quicklist listpack node"),
                _ => {
                    return Err(
                        self.corrupt_at(at, "quicklist node container neither plain nor packed")
                    )
                }
            }
        };
        let at = self.position();
        let blob = self.read_string()?;
        let items = parse(&blob).map_err(|e| self.pack_err(at, what, e))?;
        Ok(items.into_iter().map(Elem::to_bytes).collect())
    }

    /// The entries of the next stream listpack node, deleted ones included (as `None`).
    fn stream_node(&mut self) -> Result<Vec<NodeEntry>, RdbError> {
        let key_at = self.position();
        let key = self.read_string()?;
        let master: [u8; 16] = (&key[..])
            .try_into()
            .map_err(|_| self.corrupt_at(key_at, "stream node key is not a 16-byte ID"))?;
        let master = StreamId::from_raw(master);
        let at = self.position();
        let blob = self.read_string()?;
        let items = packed::listpack(&blob).map_err(|e| self.pack_err(at, "stream listpack", e))?;
        let mut out = Vec::new();
        node_entries(master, &items, |id, fields| out.push((id, fields)))
            .map_err(|what| self.corrupt_at(at, format!("stream listpack: {what}")))?;
        Ok(out)
    }

    fn stream_id(&mut self) -> Result<StreamId, RdbError> {
        Ok(StreamId {
            ms: self.len()?,
            seq: self.len()?,
        })
    }

    fn stream_meta(&mut self, t: u8) -> Result<StreamMeta, RdbError> {
        let length = self.len()?;
        let last_id = self.stream_id()?;
        let (mut first_id, mut max_deleted_id, mut entries_added) = (None, None, None);
        if t >= T_STREAM_LISTPACKS_2 {
            first_id = Some(self.stream_id()?);
            max_deleted_id = Some(self.stream_id()?);
            entries_added = Some(self.len()?);
        }
        Ok(StreamMeta {
            length,
            last_id,
            first_id,
            max_deleted_id,
            entries_added,
        })
    }

    /// A group's name, last ID, read counter and PEL (kept), and its consumer count.
    fn group(&mut self, t: u8, groups_left: u64) -> Result<(ValuePart, Box<GroupPel>), RdbError> {
        let name = self.read_string()?;
        let last_id = self.stream_id()?;
        let entries_read = if t >= T_STREAM_LISTPACKS_2 {
            Some(self.len()?).filter(|&n| n != u64::MAX) // -1 saved as a length
        } else {
            None
        };
        let pel_at = self.position();
        let n = self.len()?;
        let mut pel = Vec::with_capacity(n.min(4096) as usize);
        for _ in 0..n {
            let id = StreamId::from_raw(self.array()?);
            let time = i64::from_le_bytes(self.array()?);
            pel.push((id, time, self.len()?));
        }
        if !pel.windows(2).all(|w| w[0].0 < w[1].0) {
            pel.sort_by_key(|p| p.0);
        }
        let consumers_left = self.len()?;
        let g = Box::new(GroupPel {
            groups_left,
            consumers_left,
            claimed: vec![false; pel.len()],
            pel,
            n_claimed: 0,
            pel_at,
            consumer: Bytes::new(),
            consumer_left: 0,
        });
        let part = ValuePart::StreamGroup {
            name,
            last_id,
            entries_read,
        };
        Ok((part, g))
    }

    /// The next consumer's name, times and pending count.
    fn consumer(&mut self, t: u8, g: &mut GroupPel) -> Result<ValuePart, RdbError> {
        let name = self.read_string()?;
        let seen_time_ms = i64::from_le_bytes(self.array()?);
        let active_time_ms = if t >= T_STREAM_LISTPACKS_3 {
            Some(i64::from_le_bytes(self.array()?))
        } else {
            None
        };
        let pending = self.len()?;
        g.consumers_left -= 1;
        g.consumer = name.clone();
        g.consumer_left = pending;
        Ok(ValuePart::StreamConsumer {
            name,
            seen_time_ms,
            active_time_ms,
            pending,
        })
    }

    /// The next pending entries of the current consumer, with their group PEL data.
    fn pending(&mut self, g: &mut GroupPel) -> Result<ValuePart, RdbError> {
        let mut part = Vec::new();
        while g.consumer_left > 0 && part.len() < PART_ELEMS {
            let at = self.position();
            let id = StreamId::from_raw(self.array()?);
            let i = g.pel.binary_search_by_key(&id, |p| p.0).map_err(|_| {
                self.corrupt_at(
                    g.pel_at,
                    "consumer owns an entry missing from the group's PEL",
                )
            })?;
            if g.claimed[i] {
                return Err(self.corrupt_at(at, "pending entry owned by two consumers"));
            }
            g.claimed[i] = true;
            g.n_claimed += 1;
            g.consumer_left -= 1;
            let (_, delivery_time_ms, delivery_count) = g.pel[i];
            part.push(PendingEntry {
                id,
                consumer: g.consumer.clone(),
                delivery_time_ms,
                delivery_count,
            });
        }
        Ok(ValuePart::StreamPending(part))
    }

    fn idmp(&mut self, t: u8) -> Result<ValuePart, RdbError> {
        let duration_secs = self.len()?;
        let max_size = self.len()?;
        if self.len()? != 0 {
            return Err(self.unsupported(t, IDMP_UNSUPPORTED));
        }
        Ok(ValuePart::StreamIdmp(StreamIdmp {
            duration_secs,
            max_size,
            iids_added: self.len()?,
            iids_duplicates: self.len()?,
        }))
    }

    /// The next at most [`PART_BYTES`] of an LZF string; `None` at its end.
    fn lzf_part(&mut self, z: &mut Lzf) -> Result<Option<Bytes>, RdbError> {
        while z.in_left > 0 && z.win.len() - z.handed < PART_BYTES {
            self.lzf_token(z)?;
        }
        if z.in_left == 0 && z.out_left != 0 {
            return Err(self.corrupt_at(z.at, "LZF output shorter than declared"));
        }
        let ready = z.win.len() - z.handed;
        if ready == 0 {
            return Ok(None);
        }
        let n = ready.min(PART_BYTES);
        let part = Bytes::copy_from_slice(&z.win[z.handed..z.handed + n]);
        z.handed += n;
        if z.handed > LZF_WINDOW {
            z.win.drain(..z.handed - LZF_WINDOW);
            z.handed = LZF_WINDOW;
        }
        Ok(Some(part))
    }

    fn lzf_byte(&mut self, z: &mut Lzf) -> Result<u8, RdbError> {
        if z.in_left == 0 {
            return Err(self.corrupt_at(z.at, "LZF back reference truncated"));
        }
        z.in_left -= 1;
        self.u8()
    }

    /// One LZF instruction: a literal run or a back reference (same checks as
    /// `lzf_decompress`).
    fn lzf_token(&mut self, z: &mut Lzf) -> Result<(), RdbError> {
        let ctrl = self.lzf_byte(z)? as usize;
        if ctrl < 32 {
            let n = ctrl + 1;
            if z.in_left < n as u64 {
                return Err(self.corrupt_at(z.at, "LZF literal run past the end of the input"));
            }
            if z.out_left < n as u64 {
                return Err(self.corrupt_at(z.at, "LZF output longer than declared"));
            }
            self.fill(n)?;
            z.win.extend_from_slice(&self.buf[self.pos..self.pos + n]);
            self.pos += n;
            z.in_left -= n as u64;
            z.out_left -= n as u64;
        } else {
            let mut len = ctrl >> 5;
            if len == 7 {
                len += self.lzf_byte(z)? as usize;
            }
            len += 2;
            let lo = self.lzf_byte(z)? as usize;
            let dist = ((ctrl & 0x1f) << 8) + lo + 1;
            if dist > z.win.len() {
                return Err(
                    self.corrupt_at(z.at, "LZF back reference before the start of the output")
                );
            }
            if z.out_left < len as u64 {
                return Err(self.corrupt_at(z.at, "LZF output longer than declared"));
            }
            let start = z.win.len() - dist;
            let mut left = len;
            while left > 0 {
                let n = left.min(z.win.len() - start);
                z.win.extend_from_within(start..start + n);
                left -= n;
            }
            z.out_left -= len as u64;
        }
        Ok(())
    }
}
