//! Streaming RDB reader: turns an RDB byte stream into events, one key at a time, never
//! holding the file whole. API FIXED (the applier is written against it); implementation
//! in `rdb/`.
//!
//! Pull-based over `std::io::Read` so the format logic is plain sequential code; the
//! replication client feeds it from the socket through a bounded channel on a blocking
//! thread (see `ChunkReader`).

pub mod crc64;
pub mod decode;
mod format;
mod reader;

pub use reader::RdbReader;

use bytes::Bytes;

/// One item of an RDB file, in file order.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The header: RDB format version (e.g. 10 for Redis 7.0).
    Header { version: u32 },
    /// AUX field (`redis-ver`, `repl-stream-db`, `lua`, ...). Unknown ones are passed on.
    Aux { key: Bytes, value: Bytes },
    /// SELECTDB.
    Db(u32),
    /// RESIZEDB hint: keys and keys-with-expiry in the current db.
    ResizeDb { size: u64, expires: u64 },
    /// One key. `value` is the serialized value exactly as in the file (everything after
    /// the key), i.e. what `DUMP` would carry before its version and checksum trailer.
    Key(KeyEntry),
    /// A value bigger than the reader's value limit ([`RdbReader::set_value_limit`]), of one
    /// of the types that can be arbitrarily large (string, list, set, sorted set, hash,
    /// hash with field TTLs, stream): instead of a [`Event::Key`], its contents follow in
    /// bounded pieces ([`Event::BigValueChunk`]), then [`Event::BigValueEnd`].
    BigValueStart {
        db: u32,
        key: Bytes,
        /// Absolute expiry in Unix milliseconds, if any.
        expire_ms: Option<i64>,
        /// RDB value type byte.
        value_type: u8,
    },
    /// The next piece of the value started by [`Event::BigValueStart`] (boxed: pieces are
    /// few and big, keys many and small; this keeps `Event` as small as a key).
    BigValueChunk(Box<decode::ValuePart>),
    /// The value started by [`Event::BigValueStart`] is complete.
    BigValueEnd,
    /// A function library (FUNCTION2 opcode): its source code, for `FUNCTION LOAD REPLACE`.
    Function { code: Bytes },
    /// MODULE_AUX data (skipped by the reader; reported so it can be logged).
    ModuleAux { module_id: u64 },
    /// EOF opcode reached and the checksum verified (or disabled, `checksum == 0`).
    End { checksum: u64 },
}

#[derive(Debug, Clone, PartialEq)]
pub struct KeyEntry {
    pub db: u32,
    pub key: Bytes,
    /// Absolute expiry in Unix milliseconds, if any.
    pub expire_ms: Option<i64>,
    /// RDB value type byte (0 string, 1 list, ... 24/25 hash with field TTLs).
    pub value_type: u8,
    /// The serialized value bytes (type byte NOT included).
    pub value: Bytes,
}

impl KeyEntry {
    /// The `RESTORE` payload: type byte + value + RDB version (2 bytes LE) + CRC64 (8 bytes
    /// LE) of all of that, as `DUMP` produces it.
    pub fn restore_payload(&self, rdb_version: u16) -> Vec<u8> {
        let mut p = Vec::with_capacity(self.value.len() + 11);
        self.write_restore_payload(rdb_version, &mut p);
        p
    }

    /// Like [`KeyEntry::restore_payload`], appending to a reused buffer.
    pub fn write_restore_payload(&self, rdb_version: u16, p: &mut Vec<u8>) {
        let start = p.len();
        p.reserve(self.value.len() + 11);
        p.push(self.value_type);
        p.extend_from_slice(&self.value);
        p.extend_from_slice(&rdb_version.to_le_bytes());
        let crc = crc64::crc64(0, &p[start..]);
        p.extend_from_slice(&crc.to_le_bytes());
    }
}

/// Why an RDB could not be read. Says where and what: every variant carries the byte
/// offset in the RDB where the problem was found (from the reader: counted from the RDB's
/// first byte; from [`decode::decode`]: counted from the value's first byte, see
/// [`RdbError::in_file`]).
#[derive(Debug, thiserror::Error)]
pub enum RdbError {
    /// The stream under the reader failed (`offset`: bytes read until then).
    #[error("reading the RDB at byte {offset}: {source}")]
    Io {
        offset: u64,
        #[source]
        source: std::io::Error,
    },
    /// `offset`: the first byte of the header that is not `REDIS<4 digits>` or
    /// `VALKEY<3 digits>`.
    #[error("not an RDB file (bad magic at byte {offset})")]
    BadMagic { offset: u64 },
    /// `offset`: the header's version digits.
    #[error("unsupported RDB version {version} at byte {offset}")]
    Version { offset: u64, version: u32 },
    #[error("RDB corrupt at byte {offset}: {what}")]
    Corrupt { offset: u64, what: String },
    /// `offset`: the 8-byte checksum after the EOF opcode.
    #[error(
        "RDB checksum mismatch at byte {offset}: file says {expected:016x}, computed {actual:016x}"
    )]
    Checksum {
        offset: u64,
        expected: u64,
        actual: u64,
    },
    /// `offset`: the key's type byte (from the reader; 0, the value's start, from the
    /// decoder).
    #[error(
        "RDB value of type {value_type} for key {key:?} at byte {offset} is not supported: {why}"
    )]
    Unsupported {
        offset: u64,
        value_type: u8,
        key: String,
        why: String,
    },
}

impl RdbError {
    /// Where the problem was found (see the type's header).
    pub fn offset(&self) -> u64 {
        match self {
            RdbError::Io { offset, .. }
            | RdbError::BadMagic { offset }
            | RdbError::Version { offset, .. }
            | RdbError::Corrupt { offset, .. }
            | RdbError::Checksum { offset, .. }
            | RdbError::Unsupported { offset, .. } => *offset,
        }
    }

    /// An error of [`decode::decode`] (its offset counted from the value's first byte) with
    /// its offset counted in the file, the value starting at byte `value_at` of it.
    pub fn in_file(mut self, value_at: u64) -> RdbError {
        match &mut self {
            RdbError::Io { offset, .. }
            | RdbError::BadMagic { offset }
            | RdbError::Version { offset, .. }
            | RdbError::Corrupt { offset, .. }
            | RdbError::Checksum { offset, .. }
            | RdbError::Unsupported { offset, .. } => *offset = offset.saturating_add(value_at),
        }
        self
    }
}
