//! The streaming RDB reader: a pull parser over `std::io::Read` that yields one [`Event`]
//! per header, opcode and key, holding at most one value in memory.
//!
//! How it stays fast and exact:
//! - One internal buffer (256 KiB). The hot primitives (`u8`, lengths, short strings) are
//!   inlined checks against it; refilling is a cold path that also does the bookkeeping
//!   for the two things that must see every byte: the CRC64 (computed over each consumed
//!   stretch in bulk just before it leaves the buffer) and value capture.
//! - Values are not decoded here. The reader walks a value's RDB-level structure (lengths,
//!   strings, the few fixed-size fields) only to find where it ends, and captures the
//!   bytes as they pass: a value that fits in the buffer is one `memcpy`, a bigger one is
//!   appended chunk by chunk at refill time. So type + value + version + CRC rebuilds a
//!   `DUMP` payload exactly (see `KeyEntry::restore_payload`).
//! - Untrusted lengths never size an allocation directly: strings are capped
//!   (`MAX_STRING_LEN`, LZF ratio), and collections are walked, not preallocated.
//! - With a value limit ([`RdbReader::set_value_limit`]), a value of a type that can be
//!   arbitrarily large is captured as usual until it passes the limit (checked where the
//!   capture grows: at refills and before long skips, off the hot path); then its bytes so
//!   far are put back in front of the unread ones and the value is read again from its
//!   start, decoded piece by piece ([`big`]). The CRC has already seen the replayed bytes
//!   and skips them.
//! - Every error names the byte of the RDB where the problem was found (`position`, which
//!   stays true across refills and replays).
//!
//! Here: the events and the walk of each value to its end; in [`prim`]: the buffer, its
//! refills and the RDB's primitives (lengths, strings); in [`big`]: streaming mode.

mod big;
mod prim;

use super::crc64::crc64;
use super::format::*;
use super::{Event, KeyEntry, RdbError};
use bytes::Bytes;
use prim::LenOrEnc;
use std::io::Read;

const BUF_SIZE: usize = 256 * 1024;

/// No value limit: every value is captured whole.
const NO_LIMIT: u64 = u64::MAX;

/// Why a type 26 stream is refused.
const IDMP_UNSUPPORTED: &str = "stream with IDMP producer records (Redis 8.6 XADD IDMP): their layout is not known to this reader";

/// How many leading bytes of `h` (at most 9) fit an RDB header: `REDIS` and 4 digits, or
/// `VALKEY` and 3.
fn header_fit(h: &[u8]) -> usize {
    [&b"REDIS"[..], b"VALKEY"]
        .iter()
        .map(|magic| {
            h.iter()
                .take(9)
                .enumerate()
                .take_while(|&(i, &c)| match magic.get(i) {
                    Some(&m) => c == m,
                    None => c.is_ascii_digit(),
                })
                .count()
        })
        .max()
        .unwrap_or(0)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Header,
    Body,
    /// Inside a value read in streaming mode (`big`).
    Big,
    Done,
    Failed,
}

/// Reads events from an RDB stream.
pub struct RdbReader<R: Read> {
    inner: R,
    buf: Box<[u8]>,
    /// Next unread byte in `buf`.
    pos: usize,
    /// End of the valid bytes in `buf`.
    end: usize,
    /// Stream offset of `buf[0]`.
    base: u64,
    /// CRC64 of everything before `buf[crc_from]`, while `crc_active`.
    crc: u64,
    crc_from: usize,
    /// Cleared once the EOF opcode is consumed: the 8-byte trailer is not checksummed.
    crc_active: bool,
    /// While a value is being read: where it starts in `buf` (or 0 after a refill, the
    /// earlier part then being in `captured`).
    cap_from: Option<usize>,
    captured: Vec<u8>,
    version: u32,
    valkey: bool,
    db: u32,
    /// EXPIRETIME(_MS) seen since the last key, for the next key.
    pending_expire: Option<i64>,
    /// Offset of the type byte of the key being read (its errors point there).
    key_at: u64,
    state: State,
    /// Values of a streamable type above this many bytes are read in streaming mode.
    value_limit: u64,
    /// The value being captured is of a streamable type and a limit is set.
    switchable: bool,
    /// Set where the capture passed the limit (the error returned with it is a signal).
    switch_now: bool,
    /// The value being read in streaming mode.
    big: Option<Box<big::Big>>,
}

impl<R: Read> RdbReader<R> {
    pub fn new(inner: R) -> Self {
        RdbReader {
            inner,
            buf: vec![0u8; BUF_SIZE].into_boxed_slice(),
            pos: 0,
            end: 0,
            base: 0,
            crc: 0,
            crc_from: 0,
            crc_active: true,
            cap_from: None,
            captured: Vec::new(),
            version: 0,
            valkey: false,
            db: 0,
            pending_expire: None,
            key_at: 0,
            state: State::Header,
            value_limit: NO_LIMIT,
            switchable: false,
            switch_now: false,
            big: None,
        }
    }

    /// Reads values bigger than `bytes` (serialized) in streaming mode, when their type can
    /// be arbitrarily large: strings (type 0, LZF-compressed ones decompressed on the fly),
    /// lists (1, 14, 18), sets (2), sorted sets (3, 5), hashes (4, 22, 24) and streams (15,
    /// 19, 21, 26). Such a value gives [`Event::BigValueStart`], its contents in bounded
    /// pieces ([`Event::BigValueChunk`]) and [`Event::BigValueEnd`] instead of one
    /// [`Event::Key`], so the reader holds at most about `bytes` of it (what it captured
    /// before seeing the value pass the limit, read again from memory), then, in streaming
    /// mode, one piece, plus one element or packed node, or a stream group's pending
    /// entries list (about 33 bytes per pending entry). Values of the single-blob encodings (listpack, ziplist, intset,
    /// zipmap, types 9-13, 16, 17, 20, 23, 25: bounded by the source's `*-max-listpack-*`
    /// settings) and module values always come whole.
    pub fn set_value_limit(&mut self, bytes: u64) {
        self.value_limit = bytes;
    }

    /// The next event; `Ok(None)` after `Event::End`. After an error the reader cannot
    /// resynchronize: further calls fail.
    pub fn next_event(&mut self) -> Result<Option<Event>, RdbError> {
        let r = match self.state {
            State::Done => return Ok(None),
            State::Failed => {
                return Err(self.corrupt_at(self.position(), "reader used again after an error"))
            }
            State::Header => self.header().map(Some),
            State::Body => self.body(),
            State::Big => self.big_next().map(Some),
        };
        if r.is_err() {
            self.state = State::Failed;
            self.cap_from = None;
            self.captured = Vec::new();
            self.big = None;
        }
        r
    }

    /// Bytes consumed so far (for progress reporting).
    pub fn position(&self) -> u64 {
        self.base + self.pos as u64
    }

    /// RDB version from the header (0 before it is read; 80 for a `VALKEY080` file).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Bytes already taken from the inner reader but not consumed. After `End`, this is
    /// whatever followed the RDB in the stream (e.g. a diskless transfer's EOF mark).
    pub fn buffered(&self) -> &[u8] {
        &self.buf[self.pos..self.end]
    }

    /// The inner reader (bytes in [`Self::buffered`] are not returned to it).
    pub fn into_inner(self) -> R {
        self.inner
    }

    // ----- events -----

    fn header(&mut self) -> Result<Event, RdbError> {
        let at = self.position();
        if let Err(e) = self.fill(9) {
            // Too short: an error about the end only if what is there could be a header.
            let got = &self.buf[self.pos..self.end];
            let fit = header_fit(got);
            return Err(if fit == got.len() {
                e
            } else {
                RdbError::BadMagic {
                    offset: at + fit as u64,
                }
            });
        }
        let mut h = [0u8; 9];
        h.copy_from_slice(&self.buf[self.pos..self.pos + 9]);
        let fit = header_fit(&h);
        if fit < h.len() {
            return Err(RdbError::BadMagic {
                offset: at + fit as u64,
            });
        }
        // All digits after the magic (checked by `header_fit`).
        let number = |d: &[u8]| d.iter().fold(0u32, |acc, &c| acc * 10 + (c - b'0') as u32);
        let version = if h.starts_with(b"REDIS") {
            let v = number(&h[5..]);
            if !(1..=MAX_RDB_VERSION).contains(&v) {
                return Err(RdbError::Version {
                    offset: at + 5,
                    version: v,
                });
            }
            v
        } else {
            // "VALKEY" (`header_fit`). Valkey 9 writes "VALKEY080". Its core types are
            // Redis's up to 21; its own later types and opcodes are refused where met.
            let v = number(&h[6..]);
            if v != 80 {
                return Err(RdbError::Version {
                    offset: at + 6,
                    version: v,
                });
            }
            self.valkey = true;
            v
        };
        self.pos += 9;
        self.version = version;
        self.state = State::Body;
        Ok(Event::Header { version })
    }

    fn body(&mut self) -> Result<Option<Event>, RdbError> {
        loop {
            let op_at = self.position();
            let op = self.u8()?;
            match op {
                OP_EOF => return self.eof().map(Some),
                OP_SELECTDB => {
                    let db = self.len()?;
                    self.db = u32::try_from(db)
                        .map_err(|_| self.corrupt_at(op_at, "database number out of range"))?;
                    return Ok(Some(Event::Db(self.db)));
                }
                OP_RESIZEDB => {
                    let size = self.len()?;
                    let expires = self.len()?;
                    return Ok(Some(Event::ResizeDb { size, expires }));
                }
                OP_AUX => {
                    let key = self.read_string()?;
                    let value = self.read_string()?;
                    return Ok(Some(Event::Aux { key, value }));
                }
                OP_EXPIRETIME_MS => {
                    self.pending_expire = Some(i64::from_le_bytes(self.array()?));
                }
                OP_EXPIRETIME => {
                    let secs = i32::from_le_bytes(self.array()?);
                    self.pending_expire = Some(secs as i64 * 1000);
                }
                OP_IDLE => {
                    self.len()?; // LRU idle seconds: not carried over
                }
                OP_FREQ => {
                    self.u8()?; // LFU counter: not carried over
                }
                OP_MODULE_AUX => {
                    let module_id = self.len()?;
                    if self.len()? != MOD_UINT {
                        return Err(
                            self.corrupt_at(op_at, "module aux data without its 'when' field")
                        );
                    }
                    self.len()?; // when: before or after the keyspace
                    self.skip_module_value()?;
                    return Ok(Some(Event::ModuleAux { module_id }));
                }
                OP_FUNCTION2 => {
                    let code = self.read_string()?;
                    return Ok(Some(Event::Function { code }));
                }
                OP_FUNCTION_PRE_GA => {
                    // 7.0-rc1/rc2: name, engine, optional description, code. Redis turns it
                    // into the later form the same way.
                    let name = self.read_string()?;
                    let engine = self.read_string()?;
                    if self.len()? != 0 {
                        self.read_string()?; // description
                    }
                    let body = self.read_string()?;
                    let mut code = Vec::with_capacity(body.len() + name.len() + engine.len() + 9);
                    code.extend_from_slice(b"#!");
                    code.extend_from_slice(&engine);
                    code.extend_from_slice(b" name=");
                    code.extend_from_slice(&name);
                    code.push(b'\n');
                    code.extend_from_slice(&body);
                    return Ok(Some(Event::Function {
                        code: Bytes::from(code),
                    }));
                }
                OP_SLOT_INFO => {
                    // Cluster slot sizing hint: slot, keys, keys with expiry.
                    self.len()?;
                    self.len()?;
                    self.len()?;
                }
                OP_KEY_META if !self.valkey => {
                    // Redis 8.x module key metadata for the next key: class count, then per
                    // class a 4-byte class spec and a module-annotated value. Not carried.
                    for _ in 0..self.len()? {
                        self.skip(4)?;
                        self.skip_module_value()?;
                    }
                }
                t => return self.key(t, op_at).map(Some),
            }
        }
    }

    fn eof(&mut self) -> Result<Event, RdbError> {
        // The checksum covers everything up to and including the EOF opcode.
        self.crc_to_pos();
        self.crc_active = false;
        let actual = self.crc;
        // Versions before 5 have no checksum trailer.
        let checksum = if self.version >= 5 {
            let offset = self.position();
            let expected = u64::from_le_bytes(self.array()?);
            if expected != 0 && expected != actual {
                return Err(RdbError::Checksum {
                    offset,
                    expected,
                    actual,
                });
            }
            expected
        } else {
            0
        };
        self.state = State::Done;
        Ok(Event::End { checksum })
    }

    fn key(&mut self, t: u8, type_at: u64) -> Result<Event, RdbError> {
        self.key_at = type_at;
        let known = matches!(t, 0..=7 | 9..=26);
        // Types 27..=42: newer Redis (stream v5, arrays, ...). Anything else is not a type.
        if !known && !(27..=42).contains(&t) {
            return Err(self.corrupt_at(type_at, format!("unknown opcode or value type {t}")));
        }
        let key = self.read_string()?;
        let unsupported = |why: &str| RdbError::Unsupported {
            offset: type_at,
            value_type: t,
            key: String::from_utf8_lossy(&key).into_owned(),
            why: why.to_owned(),
        };
        if !known {
            return Err(unsupported(
                "value type newer than this reader (Redis > 8.6)",
            ));
        }
        if t == T_MODULE_PRE_GA {
            return Err(unsupported(
                "pre-release module format (Redis 4.0 RC) cannot be delimited",
            ));
        }
        if self.valkey && t >= T_HASH_METADATA_PRE_GA {
            return Err(unsupported("Valkey-specific value type"));
        }
        self.cap_from = Some(self.pos);
        self.switchable = self.value_limit != NO_LIMIT && big::streamable(t);
        let r = self.skip_value(t);
        if self.switchable && self.passed_limit(r.is_ok()) {
            return Ok(self.stream_value(t, key));
        }
        let value = self.take_capture();
        match r {
            Ok(()) => {}
            Err(RdbError::Unsupported { why, .. }) => return Err(unsupported(&why)),
            Err(e) => return Err(e),
        }
        Ok(Event::Key(KeyEntry {
            db: self.db,
            key,
            expire_ms: self.pending_expire.take(),
            value_type: t,
            value,
        }))
    }

    /// Finds the end of a value of type `t`, consuming it (the bytes are captured).
    fn skip_value(&mut self, t: u8) -> Result<(), RdbError> {
        match t {
            T_STRING
            | T_HASH_ZIPMAP
            | T_LIST_ZIPLIST
            | T_SET_INTSET
            | T_ZSET_ZIPLIST
            | T_HASH_ZIPLIST
            | T_HASH_LISTPACK
            | T_ZSET_LISTPACK
            | T_SET_LISTPACK
            | T_HASH_LISTPACK_EX_PRE_GA => self.skip_string(),
            T_LIST | T_SET | T_LIST_QUICKLIST => {
                for _ in 0..self.len()? {
                    self.skip_string()?;
                }
                Ok(())
            }
            T_ZSET => {
                for _ in 0..self.len()? {
                    self.skip_string()?;
                    // Score as text: one length byte, 253..255 for nan/+inf/-inf.
                    let n = self.u8()?;
                    if n < 253 {
                        self.skip(n as u64)?;
                    }
                }
                Ok(())
            }
            T_HASH => {
                for _ in 0..self.len()? {
                    self.skip_string()?;
                    self.skip_string()?;
                }
                Ok(())
            }
            T_ZSET_2 => {
                for _ in 0..self.len()? {
                    self.skip_string()?;
                    self.skip(8)?;
                }
                Ok(())
            }
            T_MODULE_2 => {
                self.len()?; // module type id
                self.skip_module_value()
            }
            T_LIST_QUICKLIST_2 => {
                for _ in 0..self.len()? {
                    let at = self.position();
                    let container = self.len()?;
                    if container != QL_PLAIN && container != QL_PACKED {
                        return Err(self
                            .corrupt_at(at, "quicklist node container neither plain nor packed"));
                    }
                    self.skip_string()?;
                }
                Ok(())
            }
            T_STREAM_LISTPACKS | T_STREAM_LISTPACKS_2 | T_STREAM_LISTPACKS_3
            | T_STREAM_LISTPACKS_4 => self.skip_stream(t),
            T_HASH_METADATA_PRE_GA | T_HASH_METADATA => {
                if t == T_HASH_METADATA {
                    self.skip(8)?; // next field expiry
                }
                for _ in 0..self.len()? {
                    self.len()?; // field TTL
                    self.skip_string()?;
                    self.skip_string()?;
                }
                Ok(())
            }
            T_HASH_LISTPACK_EX => {
                self.skip(8)?; // next field expiry
                self.skip_string()
            }
            _ => Err(self.unsupported(t, format!("unknown value type {t}"))),
        }
    }

    fn skip_stream(&mut self, t: u8) -> Result<(), RdbError> {
        for _ in 0..self.len()? {
            self.skip_string()?; // node key (master ID)
            self.skip_string()?; // listpack
        }
        self.len()?; // length
        self.len()?; // last ID
        self.len()?;
        if t >= T_STREAM_LISTPACKS_2 {
            for _ in 0..5 {
                self.len()?; // first ID, max deleted ID, entries added
            }
        }
        for _ in 0..self.len()? {
            self.skip_string()?; // group name
            self.len()?; // last delivered ID
            self.len()?;
            if t >= T_STREAM_LISTPACKS_2 {
                self.len()?; // entries read
            }
            for _ in 0..self.len()? {
                self.skip(16 + 8)?; // raw ID, delivery time
                self.len()?; // delivery count
            }
            for _ in 0..self.len()? {
                self.skip_string()?; // consumer name
                self.skip(8)?; // seen time
                if t >= T_STREAM_LISTPACKS_3 {
                    self.skip(8)?; // active time
                }
                let at = self.position();
                let n = self.len()?;
                let bytes = n
                    .checked_mul(16)
                    .ok_or_else(|| self.corrupt_at(at, "consumer PEL size overflows"))?;
                self.skip(bytes)?;
            }
        }
        if t >= T_STREAM_LISTPACKS_4 {
            self.len()?; // IDMP duration
            self.len()?; // IDMP max size
            if self.len()? != 0 {
                return Err(self.unsupported(t, IDMP_UNSUPPORTED));
            }
            self.len()?; // IIDs added
            self.len()?; // IIDs duplicates
        }
        Ok(())
    }

    /// A module-annotated value: opcodes and operands up to the EOF opcode
    /// (rdbLoadCheckModuleValue).
    fn skip_module_value(&mut self) -> Result<(), RdbError> {
        loop {
            let at = self.position();
            match self.len()? {
                MOD_EOF => return Ok(()),
                MOD_SINT | MOD_UINT => {
                    self.len()?;
                }
                MOD_FLOAT => self.skip(4)?,
                MOD_DOUBLE => self.skip(8)?,
                MOD_STRING => self.skip_string()?,
                _ => return Err(self.corrupt_at(at, "unknown module value opcode")),
            }
        }
    }

    /// A value of type `t` this reader can't take: at the key's type byte (the key is
    /// named where it is known, see `key`).
    fn unsupported(&self, t: u8, why: impl Into<String>) -> RdbError {
        RdbError::Unsupported {
            offset: self.key_at,
            value_type: t,
            key: String::new(),
            why: why.into(),
        }
    }

    /// After the walk of a switchable value: whether it passed the limit.
    #[inline]
    fn passed_limit(&mut self, walked: bool) -> bool {
        self.switchable = false;
        self.switch_now || (walked && self.capture_len() as u64 > self.value_limit)
    }

    /// The value being captured goes to streaming mode: back to its start, and its first
    /// event.
    #[cold]
    #[inline(never)]
    fn stream_value(&mut self, t: u8, key: Bytes) -> Event {
        self.switch_now = false;
        let value_at = self.position() - self.capture_len() as u64;
        self.replay_value(value_at);
        self.big_start(t, key)
    }

    /// Bytes captured so far.
    fn capture_len(&self) -> usize {
        self.cap_from
            .map_or(0, |from| self.captured.len() + self.pos - from)
    }

    /// Marks that the value being captured passed the limit; the error only unwinds the
    /// walk (`key` looks at `switch_now` first).
    #[cold]
    fn switch_signal(&mut self) -> RdbError {
        self.switch_now = true;
        RdbError::Corrupt {
            offset: self.position(),
            what: String::new(),
        }
    }

    /// Ends the capture and goes back to the value's start (`value_at`), the captured bytes
    /// put back in front of the unread ones. The CRC has seen them: `crc_from` points past
    /// them.
    fn replay_value(&mut self, value_at: u64) {
        self.crc_to_pos();
        let from = self.cap_from.take().expect("a value is being captured");
        if self.captured.is_empty() {
            // All of it is still in the buffer.
            self.pos = from;
            return;
        }
        let mut prefix = std::mem::take(&mut self.captured);
        let plen = prefix.len() + (self.pos - from);
        let end = plen + (self.end - self.pos);
        prefix.reserve_exact(end.max(BUF_SIZE) - prefix.len());
        prefix.extend_from_slice(&self.buf[from..self.end]);
        prefix.resize(end.max(BUF_SIZE), 0);
        self.buf = prefix.into_boxed_slice();
        self.base = value_at;
        self.pos = 0;
        self.end = end;
        self.crc_from = plen;
    }

    /// Ends a capture started at `cap_from`, returning the value's bytes.
    fn take_capture(&mut self) -> Bytes {
        let Some(from) = self.cap_from.take() else {
            return Bytes::new();
        };
        if self.captured.is_empty() {
            Bytes::copy_from_slice(&self.buf[from..self.pos])
        } else {
            self.captured.extend_from_slice(&self.buf[from..self.pos]);
            Bytes::from(std::mem::take(&mut self.captured))
        }
    }
}

#[cfg(test)]
mod tests;
