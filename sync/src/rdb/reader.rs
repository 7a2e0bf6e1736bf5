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

mod big;

use super::crc64::crc64;
use super::format::*;
use super::{Event, KeyEntry, RdbError};
use bytes::Bytes;
use std::io::{ErrorKind, Read};

const BUF_SIZE: usize = 256 * 1024;

/// No value limit: every value is captured whole.
const NO_LIMIT: u64 = u64::MAX;

/// Reserve at most this much ahead when a long string is captured (growth past it is
/// amortized by `Vec`), so a corrupt length cannot make us reserve gigabytes up front.
const MAX_RESERVE: u64 = 64 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Header,
    Body,
    /// Inside a value read in streaming mode (`big`).
    Big,
    Done,
    Failed,
}

/// A length field or, where a string is expected, a special encoding.
enum LenOrEnc {
    Len(u64),
    Enc(u8),
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
        if let Err(e) = self.fill(9) {
            let got = &self.buf[..self.end];
            let plausible = b"REDIS".starts_with(&got[..got.len().min(5)])
                || b"VALKEY".starts_with(&got[..got.len().min(6)]);
            return Err(if plausible { e } else { RdbError::BadMagic });
        }
        let h: [u8; 9] = self.buf[self.pos..self.pos + 9]
            .try_into()
            .expect("9 bytes");
        let digits = |d: &[u8]| {
            d.iter().try_fold(0u32, |acc, &c| {
                c.is_ascii_digit().then(|| acc * 10 + (c - b'0') as u32)
            })
        };
        let version = if &h[..5] == b"REDIS" {
            let v = digits(&h[5..]).ok_or(RdbError::BadMagic)?;
            if !(1..=MAX_RDB_VERSION).contains(&v) {
                return Err(RdbError::Version(v));
            }
            v
        } else if &h[..6] == b"VALKEY" {
            // Valkey 9 writes "VALKEY080". Its core types are Redis's up to 21; its own
            // later types and opcodes are refused where met.
            let v = digits(&h[6..]).ok_or(RdbError::BadMagic)?;
            if v != 80 {
                return Err(RdbError::Version(v));
            }
            self.valkey = true;
            v
        } else {
            return Err(RdbError::BadMagic);
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
            let expected = u64::from_le_bytes(self.array()?);
            if expected != 0 && expected != actual {
                return Err(RdbError::Checksum { expected, actual });
            }
            expected
        } else {
            0
        };
        self.state = State::Done;
        Ok(Event::End { checksum })
    }

    fn key(&mut self, t: u8, type_at: u64) -> Result<Event, RdbError> {
        let known = matches!(t, 0..=7 | 9..=26);
        // Types 27..=42: newer Redis (stream v5, arrays, ...). Anything else is not a type.
        if !known && !(27..=42).contains(&t) {
            return Err(self.corrupt_at(type_at, format!("unknown opcode or value type {t}")));
        }
        let key = self.read_string()?;
        let unsupported = |why: &str| RdbError::Unsupported {
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
            _ => Err(RdbError::Unsupported {
                value_type: t,
                key: String::new(),
                why: format!("unknown value type {t}"),
            }),
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
                return Err(RdbError::Unsupported {
                    value_type: t,
                    key: String::new(),
                    why: "stream with IDMP producer records (Redis 8.6 XADD IDMP): their layout is not known to this reader".into(),
                });
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

    // ----- primitives -----

    fn corrupt_at(&self, offset: u64, what: impl Into<String>) -> RdbError {
        RdbError::Corrupt {
            offset,
            what: what.into(),
        }
    }

    #[inline]
    fn avail(&self) -> usize {
        self.end - self.pos
    }

    /// Makes at least `n` (<= buffer size) bytes available.
    #[inline]
    fn fill(&mut self, n: usize) -> Result<(), RdbError> {
        if self.avail() >= n {
            Ok(())
        } else {
            self.refill(n)
        }
    }

    /// Brings the CRC up to `pos` (after a replay, `crc_from` may be ahead of `pos`: those
    /// bytes were checksummed before).
    fn crc_to_pos(&mut self) {
        if self.crc_active && self.pos > self.crc_from {
            self.crc = crc64(self.crc, &self.buf[self.crc_from..self.pos]);
            self.crc_from = self.pos;
        }
    }

    #[cold]
    #[inline(never)]
    fn refill(&mut self, n: usize) -> Result<(), RdbError> {
        debug_assert!(n <= self.buf.len());
        // Everything before `pos` is about to leave the buffer: account for it first.
        self.crc_to_pos();
        if let Some(from) = self.cap_from {
            self.captured.extend_from_slice(&self.buf[from..self.pos]);
        }
        if self.pos > 0 {
            self.buf.copy_within(self.pos..self.end, 0);
            self.base += self.pos as u64;
            self.end -= self.pos;
            self.crc_from = self.crc_from.saturating_sub(self.pos);
            self.pos = 0;
        }
        if self.cap_from.is_some() {
            self.cap_from = Some(0);
            if self.switchable && self.captured.len() as u64 > self.value_limit {
                return Err(self.switch_signal());
            }
        }
        if self.buf.len() > BUF_SIZE && self.end < BUF_SIZE {
            // A replay is over: back to the normal buffer.
            let mut b = vec![0u8; BUF_SIZE].into_boxed_slice();
            b[..self.end].copy_from_slice(&self.buf[..self.end]);
            self.buf = b;
        }
        // Read only until `n` bytes are there: the inner reader may be a socket, and what
        // follows the RDB must not be waited for.
        while self.end < n {
            match self.inner.read(&mut self.buf[self.end..]) {
                Ok(0) => {
                    return Err(self.corrupt_at(
                        self.base + self.end as u64,
                        "unexpected end of the RDB stream",
                    ))
                }
                Ok(k) => self.end += k,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    #[inline]
    fn u8(&mut self) -> Result<u8, RdbError> {
        self.fill(1)?;
        let b = self.buf[self.pos];
        self.pos += 1;
        Ok(b)
    }

    #[inline]
    fn array<const N: usize>(&mut self) -> Result<[u8; N], RdbError> {
        self.fill(N)?;
        let a = self.buf[self.pos..self.pos + N]
            .try_into()
            .expect("N bytes");
        self.pos += N;
        Ok(a)
    }

    /// Consumes `n` bytes (any amount), captured if a value is being read.
    fn skip(&mut self, mut n: u64) -> Result<(), RdbError> {
        if self.avail() as u64 >= n {
            self.pos += n as usize;
            return Ok(());
        }
        if self.cap_from.is_some() {
            if self.switchable && (self.capture_len() as u64).saturating_add(n) > self.value_limit {
                return Err(self.switch_signal());
            }
            self.captured.reserve(n.min(MAX_RESERVE) as usize);
        }
        loop {
            let a = self.avail() as u64;
            if a >= n {
                self.pos += n as usize;
                return Ok(());
            }
            self.pos = self.end;
            n -= a;
            self.refill(1)?;
        }
    }

    #[inline]
    fn len_or_enc(&mut self) -> Result<LenOrEnc, RdbError> {
        self.fill(1)?;
        let b = self.buf[self.pos];
        match b >> 6 {
            0 => {
                self.pos += 1;
                Ok(LenOrEnc::Len((b & 0x3f) as u64))
            }
            1 => {
                self.fill(2)?;
                let v = (((b & 0x3f) as u64) << 8) | self.buf[self.pos + 1] as u64;
                self.pos += 2;
                Ok(LenOrEnc::Len(v))
            }
            2 => match b {
                0x80 => {
                    self.pos += 1;
                    Ok(LenOrEnc::Len(u32::from_be_bytes(self.array()?) as u64))
                }
                0x81 => {
                    self.pos += 1;
                    Ok(LenOrEnc::Len(u64::from_be_bytes(self.array()?)))
                }
                _ => Err(self.corrupt_at(self.position(), "unknown length encoding")),
            },
            _ => {
                self.pos += 1;
                Ok(LenOrEnc::Enc(b & 0x3f))
            }
        }
    }

    #[inline]
    fn len(&mut self) -> Result<u64, RdbError> {
        match self.len_or_enc()? {
            LenOrEnc::Len(n) => Ok(n),
            LenOrEnc::Enc(_) => Err(self.corrupt_at(
                self.position() - 1,
                "string encoding where a length belongs",
            )),
        }
    }

    /// Consumes one RDB string without decoding it.
    #[inline]
    fn skip_string(&mut self) -> Result<(), RdbError> {
        // Fast path: a short raw string already in the buffer.
        if let Some(&b) = self.buf[self.pos..self.end].first() {
            if b < 0x40 && self.avail() > b as usize {
                self.pos += 1 + b as usize;
                return Ok(());
            }
        }
        let at = self.position();
        match self.len_or_enc()? {
            LenOrEnc::Len(n) => {
                if n > MAX_STRING_LEN {
                    return Err(self.corrupt_at(at, "string longer than the 4 GiB limit"));
                }
                self.skip(n)
            }
            LenOrEnc::Enc(ENC_INT8) => self.skip(1),
            LenOrEnc::Enc(ENC_INT16) => self.skip(2),
            LenOrEnc::Enc(ENC_INT32) => self.skip(4),
            LenOrEnc::Enc(ENC_LZF) => {
                let clen = self.len()?;
                let len = self.len()?;
                check_lzf_lens(clen, len).map_err(|w| self.corrupt_at(at, w))?;
                self.skip(clen)
            }
            LenOrEnc::Enc(_) => Err(self.corrupt_at(at, "unknown string encoding")),
        }
    }

    /// Reads `n` raw bytes (n already capped).
    fn read_raw(&mut self, n: usize) -> Result<Vec<u8>, RdbError> {
        if self.avail() >= n {
            let v = self.buf[self.pos..self.pos + n].to_vec();
            self.pos += n;
            return Ok(v);
        }
        let mut v = Vec::with_capacity(n.min(MAX_RESERVE as usize));
        while v.len() < n {
            if self.avail() == 0 {
                self.refill(1)?;
            }
            let k = self.avail().min(n - v.len());
            v.extend_from_slice(&self.buf[self.pos..self.pos + k]);
            self.pos += k;
        }
        Ok(v)
    }

    /// Reads and decodes one RDB string (integers as decimal text, LZF decompressed).
    fn read_string(&mut self) -> Result<Bytes, RdbError> {
        if let Some(&b) = self.buf[self.pos..self.end].first() {
            if b < 0x40 && self.avail() > b as usize {
                let s = Bytes::copy_from_slice(&self.buf[self.pos + 1..self.pos + 1 + b as usize]);
                self.pos += 1 + b as usize;
                return Ok(s);
            }
        }
        let at = self.position();
        Ok(Bytes::from(match self.len_or_enc()? {
            LenOrEnc::Len(n) => {
                if n > MAX_STRING_LEN {
                    return Err(self.corrupt_at(at, "string longer than the 4 GiB limit"));
                }
                self.read_raw(n as usize)?
            }
            LenOrEnc::Enc(ENC_INT8) => int_to_bytes(self.u8()? as i8 as i64),
            LenOrEnc::Enc(ENC_INT16) => int_to_bytes(i16::from_le_bytes(self.array()?) as i64),
            LenOrEnc::Enc(ENC_INT32) => int_to_bytes(i32::from_le_bytes(self.array()?) as i64),
            LenOrEnc::Enc(ENC_LZF) => {
                let clen = self.len()?;
                let len = self.len()?;
                check_lzf_lens(clen, len).map_err(|w| self.corrupt_at(at, w))?;
                let src = self.read_raw(clen as usize)?;
                lzf_decompress(&src, len as usize).map_err(|w| self.corrupt_at(at, w))?
            }
            LenOrEnc::Enc(_) => return Err(self.corrupt_at(at, "unknown string encoding")),
        }))
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
