//! Values re-created with ordinary commands instead of `RESTORE`: for a target whose Redis is
//! older than the source's (its RDB format can't take the source's DUMP payloads), and for
//! values too big for one command (rebuilt in chunks).
//!
//! Each key becomes `DEL key`, then the commands that build its value (chunks of at most
//! [`CHUNK_ELEMS`] elements and about [`CHUNK_BYTES`] bytes), then `PEXPIREAT` when it has
//! an expiry. Streams keep their entries, last ID, consumer groups (last delivered ID, read
//! counter on 7.0+), consumers and pending entries (owner, delivery time and count).
//! What the target can't hold (hash field TTLs before 7.4, module values) is an error that
//! names the key. Not carried: consumers' seen/active times (the target sets them to the
//! time of the load) and the IDMP settings of Redis 8.6 streams.
//!
//! What the target accepts is found by probing it ([`probe_commands`], [`parse_probe`]):
//! exact, whatever its version or fork.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use bytes::{Bytes, BytesMut};

use crate::rdb::decode::{PendingEntry, StreamId, StreamMeta, StreamValue, Value, ValuePart};
use crate::rdb::KeyEntry;
use crate::SyncError;

/// Most elements (members, field-value pairs, IDs) in one command.
pub const CHUNK_ELEMS: usize = 1000;
/// About the most payload bytes in one command (an element bigger than this goes alone).
pub const CHUNK_BYTES: usize = 1024 * 1024;

/// The key the probe writes (and deletes again) on the target.
pub const PROBE_KEY: &[u8] = b"__cutover:probe";

/// What the target can take, found by [`probe_commands`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TargetCaps {
    /// `RESTORE` takes payloads of the source's RDB version.
    pub restore: bool,
    /// `XSETID ... ENTRIESADDED n MAXDELETEDID id` and `XGROUP CREATE ... ENTRIESREAD n`
    /// (Redis 7.0+).
    pub stream_meta: bool,
    /// `XGROUP CREATECONSUMER` (Redis 6.2+).
    pub create_consumer: bool,
    /// Hash field TTLs: `HPEXPIREAT` (Redis 7.4+).
    pub field_ttl: bool,
}

impl TargetCaps {
    /// A target at least as new as the source.
    pub const ALL: TargetCaps = TargetCaps {
        restore: true,
        stream_meta: true,
        create_consumer: true,
        field_ttl: true,
    };
}

/// Where the commands go. `done` is called after each complete command, so an
/// implementation may ship what it has between two commands of one value.
pub trait Sink {
    /// The buffer the next command is written into.
    fn buf(&mut self) -> &mut BytesMut;
    /// One command was written to `buf`: `name` and `key` name it if the target refuses it.
    fn done(&mut self, name: &'static str, key: &Bytes) -> Result<(), SyncError>;
}

/// A [`Sink`] that keeps everything (tests, small uses).
#[derive(Debug, Default)]
pub struct VecSink {
    pub buf: BytesMut,
    pub names: Vec<(&'static str, Bytes)>,
}

impl Sink for VecSink {
    fn buf(&mut self) -> &mut BytesMut {
        &mut self.buf
    }
    fn done(&mut self, name: &'static str, key: &Bytes) -> Result<(), SyncError> {
        self.names.push((name, key.clone()));
        Ok(())
    }
}

/// The error for a value that can't exist on the target: names the key (and db) and why.
pub fn cannot(entry: &KeyEntry, command: &str, why: impl std::fmt::Display) -> SyncError {
    SyncError::Apply {
        command: command.to_string(),
        key: crate::reply::show_key(&entry.key),
        offset: -1,
        reply: format!(
            "the key (db {}) cannot be re-created on the target: {why}",
            entry.db
        ),
    }
}

/// Whether `value` has something commands can't re-create even on a target as new as the
/// source (a big value then goes by RESTORE after all).
pub fn needs_restore(value: &Value) -> bool {
    matches!(value, Value::Stream(s) if s.idmp.is_some())
}

/// Writes the commands that re-create `entry` (decoded as `value`) on a target with `caps`.
pub fn write_commands(
    entry: &KeyEntry,
    value: &Value,
    caps: TargetCaps,
    sink: &mut dyn Sink,
) -> Result<(), SyncError> {
    let key = &entry.key;
    // Refuse before writing anything of the key.
    if let Value::Hash(fields) = value {
        if !caps.field_ttl && fields.iter().any(|(_, _, ttl)| ttl.is_some()) {
            return Err(cannot(
                entry,
                "HPEXPIREAT",
                "the hash has field TTLs (Redis 7.4+) and the target's Redis has no \
                 HPEXPIREAT; it can't hold them",
            ));
        }
    }
    let mut w = Writer { sink, key };
    w.cmd("DEL", &[b"DEL", key])?;
    match value {
        Value::String(s) => w.string(s)?,
        Value::List(items) => w.members("RPUSH", items)?,
        Value::Set(items) => w.members("SADD", items)?,
        Value::ZSet(pairs) => w.zset(pairs)?,
        Value::Hash(fields) => w.hash(fields)?,
        Value::Stream(s) => w.stream(s, caps)?,
    }
    if let Some(ms) = entry.expire_ms {
        let ms = ms.to_string();
        w.cmd("PEXPIREAT", &[b"PEXPIREAT", key, ms.as_bytes()])?;
    }
    Ok(())
}

/// Writes a value that arrives in parts (the RDB reader's streaming mode, for values above
/// the big-value threshold): `DEL` at [`PartWriter::start`], each part's commands as it
/// comes ([`PartWriter::part`]), then at [`PartWriter::finish`] what only the end settles
/// (a stream's placeholders deleted again, its last ID and counters) and `PEXPIREAT`.
/// Same commands and chunking as [`write_commands`], so the target ends up with the same
/// value (a Redis 8.6 stream's IDMP settings by `XCFGSET` when the target is that new; its
/// IDMP counters not), with one difference for streams, which are rebuilt before their
/// groups are read:
/// - entries flagged deleted but still in the RDB are added as placeholders in their place
///   and deleted at the end (their IDs are kept until then: 16 bytes each), so pending
///   entries that refer to them are re-created exactly;
/// - a pending entry whose entry is gone from the RDB altogether (trimmed, or its whole
///   listpack node deleted) gets a placeholder only when its ID is above every ID added so
///   far; below that it can't be inserted any more, and the target's `XCLAIM` skips it.
pub struct PartWriter {
    entry: KeyEntry,
    caps: TargetCaps,
    /// A string's first part was written (`SET`; the next ones `APPEND`).
    string_started: bool,
    stream: StreamBuild,
}

/// What a stream being rebuilt from parts needs to remember.
#[derive(Default)]
struct StreamBuild {
    /// Highest ID added so far.
    top: Option<StreamId>,
    /// IDs added as placeholders, deleted at the end.
    placeholders: Vec<StreamId>,
    meta: Option<StreamMeta>,
    group: Bytes,
}

impl PartWriter {
    /// Starts the value of `entry` (its `value` is not used): `DEL`.
    pub fn start(
        entry: KeyEntry,
        caps: TargetCaps,
        sink: &mut dyn Sink,
    ) -> Result<PartWriter, SyncError> {
        let key = entry.key.clone();
        Writer { sink, key: &key }.cmd("DEL", &[b"DEL", &key])?;
        Ok(PartWriter {
            entry,
            caps,
            string_started: false,
            stream: StreamBuild::default(),
        })
    }

    /// The commands of the next part.
    pub fn part(&mut self, part: ValuePart, sink: &mut dyn Sink) -> Result<(), SyncError> {
        let key = self.entry.key.clone();
        let mut w = Writer { sink, key: &key };
        let st = &mut self.stream;
        match part {
            ValuePart::String(s) => {
                if self.string_started {
                    w.cmd("APPEND", &[b"APPEND", &key, &s])?;
                } else {
                    self.string_started = true;
                    w.cmd("SET", &[b"SET", &key, &s])?;
                }
            }
            ValuePart::List(items) => w.members("RPUSH", &items)?,
            ValuePart::Set(items) => w.members("SADD", &items)?,
            ValuePart::ZSet(pairs) => w.zset(&pairs)?,
            ValuePart::Hash(fields) => {
                if !self.caps.field_ttl && fields.iter().any(|(_, _, ttl)| ttl.is_some()) {
                    return Err(cannot(
                        &self.entry,
                        "HPEXPIREAT",
                        "the hash has field TTLs (Redis 7.4+) and the target's Redis has no \
                         HPEXPIREAT; it can't hold them",
                    ));
                }
                w.hash(&fields)?;
            }
            ValuePart::StreamEntries { entries, deleted } => {
                let mut deleted = deleted.into_iter().peekable();
                for e in &entries {
                    while let Some(d) = deleted.next_if(|d| *d < e.id) {
                        st.placeholder(&mut w, d)?;
                    }
                    let id = id_text(e.id);
                    let mut args: Vec<&[u8]> = Vec::with_capacity(2 * e.fields.len() + 3);
                    args.extend([&b"XADD"[..], &key, id.as_bytes()]);
                    for (f, v) in &e.fields {
                        args.push(f);
                        args.push(v);
                    }
                    w.cmd("XADD", &args)?;
                    st.top = Some(e.id);
                }
                for d in deleted {
                    st.placeholder(&mut w, d)?;
                }
            }
            ValuePart::StreamMeta(meta) => {
                if st.top.is_none() {
                    // No entries: the stream is made by a group created with MKSTREAM.
                    let tmp = b"__cutover:mkstream";
                    w.cmd(
                        "XGROUP CREATE",
                        &[b"XGROUP", b"CREATE", &key, tmp, b"0", b"MKSTREAM"],
                    )?;
                    w.cmd("XGROUP DESTROY", &[b"XGROUP", b"DESTROY", &key, tmp])?;
                }
                st.meta = Some(meta);
            }
            ValuePart::StreamGroup {
                name,
                last_id,
                entries_read,
            } => {
                w.xgroup_create(&key, &name, last_id, entries_read, self.caps)?;
                st.group = name;
            }
            ValuePart::StreamConsumer { name, pending, .. } => {
                let g = st.group.clone();
                w.create_consumer(&key, &g, &name, pending == 0, self.caps)?;
            }
            ValuePart::StreamPending(pending) => {
                let g = st.group.clone();
                for p in &pending {
                    if !matches!(st.top, Some(top) if p.id <= top) {
                        st.placeholder(&mut w, p.id)?;
                    }
                    w.xclaim(&key, &g, p)?;
                }
            }
            ValuePart::StreamIdmp(i) => {
                // A target that takes the source's (RDB 13) payloads is Redis 8.6+: XCFGSET
                // (its valid ranges: 1..=86400 s, 1..=10000). The counters can't be set.
                let valid =
                    (1..=86_400).contains(&i.duration_secs) && (1..=10_000).contains(&i.max_size);
                if self.caps.restore && valid {
                    let (d, m) = (i.duration_secs.to_string(), i.max_size.to_string());
                    w.cmd(
                        "XCFGSET",
                        &[
                            b"XCFGSET",
                            &key,
                            b"IDMP-DURATION",
                            d.as_bytes(),
                            b"IDMP-MAXSIZE",
                            m.as_bytes(),
                        ],
                    )?;
                } else {
                    tracing::warn!(
                        key = %crate::reply::show_key(&key),
                        duration_secs = i.duration_secs,
                        max_size = i.max_size,
                        "the stream's IDMP settings (Redis 8.6) are not carried to this target"
                    );
                }
            }
        }
        Ok(())
    }

    /// The value is complete: a stream's placeholders deleted and its last ID set, then the
    /// key's expiry.
    pub fn finish(self, sink: &mut dyn Sink) -> Result<(), SyncError> {
        let key = self.entry.key.clone();
        let mut w = Writer { sink, key: &key };
        let st = self.stream;
        for chunk in st.placeholders.chunks(CHUNK_ELEMS) {
            let ids: Vec<String> = chunk.iter().map(|id| id_text(*id)).collect();
            let mut args: Vec<&[u8]> = Vec::with_capacity(ids.len() + 2);
            args.extend([&b"XDEL"[..], &key]);
            args.extend(ids.iter().map(|id| id.as_bytes()));
            w.cmd("XDEL", &args)?;
        }
        if let Some(m) = &st.meta {
            w.xsetid(
                &key,
                m.last_id,
                m.entries_added,
                m.max_deleted_id,
                self.caps,
            )?;
        }
        if let Some(ms) = self.entry.expire_ms {
            let ms = ms.to_string();
            w.cmd("PEXPIREAT", &[b"PEXPIREAT", &key, ms.as_bytes()])?;
        }
        Ok(())
    }
}

impl StreamBuild {
    /// `XADD` of a placeholder entry at `id` (deleted again at the end).
    fn placeholder(&mut self, w: &mut Writer<'_, '_>, id: StreamId) -> Result<(), SyncError> {
        let text = id_text(id);
        let key = w.key.clone();
        w.cmd(
            "XADD",
            &[b"XADD", &key, text.as_bytes(), b"cutover", b"placeholder"],
        )?;
        self.placeholders.push(id);
        self.top = Some(id);
        Ok(())
    }
}

/// A score as text that reads back as the same double: Rust's plain form, or its exponent
/// form when the plain one is long (1e-300 would be 300 digits); both are shortest-roundtrip.
/// `inf`/`-inf` for infinities.
pub fn score(s: f64) -> String {
    if s.is_infinite() {
        return if s > 0.0 { "inf" } else { "-inf" }.to_string();
    }
    let plain = format!("{s}");
    if plain.len() <= 20 {
        plain
    } else {
        format!("{s:e}")
    }
}

/// Splits `items` into runs of at most [`CHUNK_ELEMS`] items and about [`CHUNK_BYTES`]
/// bytes (by `size`), each holding at least one item.
pub fn chunks<'a, T>(
    items: &'a [T],
    size: impl Fn(&T) -> usize + 'a,
) -> impl Iterator<Item = &'a [T]> + 'a {
    let mut rest = items;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let (mut n, mut bytes) = (0, 0);
        while n < rest.len() && n < CHUNK_ELEMS {
            let s = size(&rest[n]);
            if n > 0 && bytes + s > CHUNK_BYTES {
                break;
            }
            bytes += s;
            n += 1;
        }
        let (head, tail) = rest.split_at(n);
        rest = tail;
        Some(head)
    })
}

fn id_text(id: StreamId) -> String {
    id.to_string()
}

struct Writer<'s, 'k> {
    sink: &'s mut dyn Sink,
    key: &'k Bytes,
}

impl Writer<'_, '_> {
    fn cmd(&mut self, name: &'static str, args: &[&[u8]]) -> Result<(), SyncError> {
        resp::encode::command(self.sink.buf(), args.iter().copied());
        self.sink.done(name, self.key)
    }

    /// A consumer group at its last delivered id (ENTRIESREAD only where the target has it).
    fn xgroup_create(
        &mut self,
        key: &[u8],
        group: &[u8],
        last_id: StreamId,
        entries_read: Option<u64>,
        caps: TargetCaps,
    ) -> Result<(), SyncError> {
        let last = id_text(last_id);
        let read = entries_read
            .filter(|_| caps.stream_meta)
            .map(|n| n.to_string());
        let mut args: Vec<&[u8]> = vec![b"XGROUP", b"CREATE", key, group, last.as_bytes()];
        if let Some(n) = &read {
            args.extend([&b"ENTRIESREAD"[..], n.as_bytes()]);
        }
        self.cmd("XGROUP CREATE", &args)
    }

    /// The stream's last id (and its counters where the target has them: 7.0+).
    fn xsetid(
        &mut self,
        key: &[u8],
        last_id: StreamId,
        entries_added: Option<u64>,
        max_deleted_id: Option<StreamId>,
        caps: TargetCaps,
    ) -> Result<(), SyncError> {
        let last = id_text(last_id);
        let mut args: Vec<&[u8]> = vec![b"XSETID", key, last.as_bytes()];
        let meta = match (caps.stream_meta, entries_added, max_deleted_id) {
            (true, Some(added), Some(maxdel)) => Some((added.to_string(), id_text(maxdel))),
            _ => None,
        };
        if let Some((added, maxdel)) = &meta {
            args.extend([
                &b"ENTRIESADDED"[..],
                added.as_bytes(),
                b"MAXDELETEDID",
                maxdel.as_bytes(),
            ]);
        }
        self.cmd("XSETID", &args)
    }

    /// A consumer of `group`: XGROUP CREATECONSUMER (6.2+); before 6.2 reading its own
    /// (empty) history creates it, and one with pending entries is created by its XCLAIMs.
    fn create_consumer(
        &mut self,
        key: &[u8],
        group: &[u8],
        name: &[u8],
        no_pending: bool,
        caps: TargetCaps,
    ) -> Result<(), SyncError> {
        if caps.create_consumer {
            self.cmd(
                "XGROUP CREATECONSUMER",
                &[b"XGROUP", b"CREATECONSUMER", key, group, name],
            )
        } else if no_pending {
            self.cmd(
                "XREADGROUP",
                &[
                    b"XREADGROUP",
                    b"GROUP",
                    group,
                    name,
                    b"COUNT",
                    b"1",
                    b"STREAMS",
                    key,
                    b"0-0",
                ],
            )
        } else {
            Ok(())
        }
    }

    /// A pending entry, owned by its consumer, with its delivery time and count.
    fn xclaim(&mut self, key: &[u8], group: &[u8], p: &PendingEntry) -> Result<(), SyncError> {
        let id = id_text(p.id);
        let time = p.delivery_time_ms.to_string();
        let count = p.delivery_count.to_string();
        self.cmd(
            "XCLAIM",
            &[
                b"XCLAIM",
                key,
                group,
                &p.consumer,
                b"0",
                id.as_bytes(),
                b"TIME",
                time.as_bytes(),
                b"RETRYCOUNT",
                count.as_bytes(),
                b"FORCE",
                b"JUSTID",
            ],
        )
    }

    /// `SET` of the first [`CHUNK_BYTES`], `APPEND` of the rest.
    fn string(&mut self, s: &[u8]) -> Result<(), SyncError> {
        let key = self.key.clone();
        let mut parts = s.chunks(CHUNK_BYTES);
        let first = parts.next().unwrap_or(&[]);
        self.cmd("SET", &[b"SET", &key, first])?;
        for part in parts {
            self.cmd("APPEND", &[b"APPEND", &key, part])?;
        }
        Ok(())
    }

    /// `RPUSH`/`SADD` chunks.
    fn members(&mut self, name: &'static str, items: &[Bytes]) -> Result<(), SyncError> {
        let key = self.key.clone();
        for chunk in chunks(items, |m| m.len()) {
            let mut args: Vec<&[u8]> = Vec::with_capacity(chunk.len() + 2);
            args.push(name.as_bytes());
            args.push(&key);
            args.extend(chunk.iter().map(|m| &m[..]));
            self.cmd(name, &args)?;
        }
        Ok(())
    }

    fn zset(&mut self, pairs: &[(Bytes, f64)]) -> Result<(), SyncError> {
        let key = self.key.clone();
        for chunk in chunks(pairs, |(m, _)| m.len() + 24) {
            let scores: Vec<String> = chunk.iter().map(|(_, s)| score(*s)).collect();
            let mut args: Vec<&[u8]> = Vec::with_capacity(2 * chunk.len() + 2);
            args.push(b"ZADD");
            args.push(&key);
            for ((m, _), s) in chunk.iter().zip(&scores) {
                args.push(s.as_bytes());
                args.push(m);
            }
            self.cmd("ZADD", &args)?;
        }
        Ok(())
    }

    /// `HSET` chunks, then `HPEXPIREAT` per group of fields sharing an expiry.
    fn hash(&mut self, fields: &[(Bytes, Bytes, Option<i64>)]) -> Result<(), SyncError> {
        let key = self.key.clone();
        for chunk in chunks(fields, |(f, v, _)| f.len() + v.len()) {
            let mut args: Vec<&[u8]> = Vec::with_capacity(2 * chunk.len() + 2);
            args.push(b"HSET");
            args.push(&key);
            for (f, v, _) in chunk {
                args.push(f);
                args.push(v);
            }
            self.cmd("HSET", &args)?;
        }
        let mut by_ttl: BTreeMap<i64, Vec<&Bytes>> = BTreeMap::new();
        for (f, _, ttl) in fields {
            if let Some(ms) = ttl {
                by_ttl.entry(*ms).or_default().push(f);
            }
        }
        for (ms, fields) in by_ttl {
            let ms = ms.to_string();
            for chunk in chunks(&fields, |f| f.len()) {
                let n = chunk.len().to_string();
                let mut args: Vec<&[u8]> = Vec::with_capacity(chunk.len() + 5);
                args.extend([
                    &b"HPEXPIREAT"[..],
                    &key,
                    ms.as_bytes(),
                    b"FIELDS",
                    n.as_bytes(),
                ]);
                args.extend(chunk.iter().map(|f| &f[..]));
                self.cmd("HPEXPIREAT", &args)?;
            }
        }
        Ok(())
    }

    /// Entries by `XADD` (with placeholders for deleted entries still pending in a group,
    /// so `XCLAIM` can re-create those pending entries; deleted again at the end), groups,
    /// consumers, pending entries, then `XSETID` for the last ID (and 7.0's counters).
    fn stream(&mut self, s: &StreamValue, caps: TargetCaps) -> Result<(), SyncError> {
        let key = self.key.clone();
        let live: HashSet<StreamId> = s.entries.iter().map(|e| e.id).collect();
        let ghosts: BTreeSet<StreamId> = s
            .groups
            .iter()
            .flat_map(|g| g.pending.iter().map(|p| p.id))
            .filter(|id| !live.contains(id))
            .collect();
        let mut entries = s.entries.iter().peekable();
        let mut ghost_ids = ghosts.iter().peekable();
        loop {
            let next_ghost = ghost_ids.peek().copied().copied();
            let take_entry = match (entries.peek(), next_ghost) {
                (None, None) => break,
                (Some(e), Some(g)) => e.id < g,
                (Some(_), None) => true,
                (None, Some(_)) => false,
            };
            if take_entry {
                let e = entries.next().expect("peeked");
                let id = id_text(e.id);
                let mut args: Vec<&[u8]> = Vec::with_capacity(2 * e.fields.len() + 3);
                args.extend([&b"XADD"[..], &key, id.as_bytes()]);
                for (f, v) in &e.fields {
                    args.push(f);
                    args.push(v);
                }
                self.cmd("XADD", &args)?;
            } else {
                let id = id_text(*ghost_ids.next().expect("peeked"));
                self.cmd(
                    "XADD",
                    &[b"XADD", &key, id.as_bytes(), b"cutover", b"placeholder"],
                )?;
            }
        }
        if s.entries.is_empty() && ghosts.is_empty() {
            // An empty stream: made by a group created with MKSTREAM, then destroyed.
            let tmp = b"__cutover:mkstream";
            self.cmd(
                "XGROUP CREATE",
                &[b"XGROUP", b"CREATE", &key, tmp, b"0", b"MKSTREAM"],
            )?;
            self.cmd("XGROUP DESTROY", &[b"XGROUP", b"DESTROY", &key, tmp])?;
        }
        for g in &s.groups {
            self.xgroup_create(&key, &g.name, g.last_id, g.entries_read, caps)?;
            for c in &g.consumers {
                self.create_consumer(&key, &g.name, &c.name, c.pending.is_empty(), caps)?;
            }
            for p in &g.pending {
                self.xclaim(&key, &g.name, p)?;
            }
        }
        let ghosts: Vec<String> = ghosts.into_iter().map(id_text).collect();
        for chunk in chunks(&ghosts, |id| id.len()) {
            let mut args: Vec<&[u8]> = Vec::with_capacity(chunk.len() + 2);
            args.extend([&b"XDEL"[..], &key]);
            args.extend(chunk.iter().map(|id| id.as_bytes()));
            self.cmd("XDEL", &args)?;
        }
        self.xsetid(&key, s.last_id, s.entries_added, s.max_deleted_id, caps)
    }
}

/// The commands that probe the target, and how many: RESTORE of a tiny string in the
/// source's RDB version, then each optional command on [`PROBE_KEY`], deleted at the end.
pub fn probe_commands(rdb_version: u16) -> (BytesMut, u32) {
    let probe = KeyEntry {
        db: 0,
        key: Bytes::from_static(PROBE_KEY),
        expire_ms: None,
        value_type: 0,
        value: Bytes::from_static(&[1, b'x']),
    };
    let payload = probe.restore_payload(rdb_version);
    let k = PROBE_KEY;
    let cmds: [&[&[u8]]; PROBE_COMMANDS] = [
        &[b"RESTORE", k, b"0", &payload, b"REPLACE"],
        &[b"DEL", k],
        &[b"XADD", k, b"1-1", b"f", b"v"],
        &[
            b"XSETID",
            k,
            b"1-1",
            b"ENTRIESADDED",
            b"1",
            b"MAXDELETEDID",
            b"0-0",
        ],
        &[b"XGROUP", b"CREATE", k, b"g", b"0", b"ENTRIESREAD", b"0"],
        &[b"XGROUP", b"CREATE", k, b"g2", b"0"],
        &[b"XGROUP", b"CREATECONSUMER", k, b"g2", b"c"],
        &[b"DEL", k],
        &[b"HSET", k, b"f", b"v"],
        &[b"HPEXPIREAT", k, b"4102444800000", b"FIELDS", b"1", b"f"],
        &[b"DEL", k],
    ];
    let mut out = BytesMut::new();
    for c in cmds {
        resp::encode::command(&mut out, c.iter().copied());
    }
    (out, PROBE_COMMANDS as u32)
}

const PROBE_COMMANDS: usize = 11;

/// Reads the probe's replies (one frame each). Errors: a transient one (retry), or a
/// RESTORE refused for another reason than the payload's version (the target takes no
/// writes: nothing would work).
pub fn parse_probe(replies: &[&[u8]]) -> Result<TargetCaps, SyncError> {
    use crate::reply::{error_text, transient};
    if replies.len() != PROBE_COMMANDS {
        return Err(SyncError::Target(format!(
            "probe: {} replies to {PROBE_COMMANDS} commands",
            replies.len()
        )));
    }
    for r in replies {
        if let Some(e) = error_text(r).filter(|e| transient(e)) {
            return Err(SyncError::Target(format!("probing the target: {e}")));
        }
    }
    let restore = match error_text(replies[0]) {
        None => true,
        // The version check ("DUMP payload version or checksum are wrong"); RESTORE renamed
        // away or not allowed to this user: ordinary commands may still do.
        Some(e)
            if e.contains("payload version")
                || e.to_ascii_lowercase().contains("unknown command")
                || e.starts_with("NOPERM") =>
        {
            tracing::info!(reply = %e, "the target does not take the source's RESTORE payloads");
            false
        }
        Some(e) => {
            return Err(SyncError::Apply {
                command: "RESTORE".into(),
                key: String::from_utf8_lossy(PROBE_KEY).into_owned(),
                offset: -1,
                reply: format!("probing the target: {e}"),
            })
        }
    };
    let ok = |i: usize| error_text(replies[i]).is_none();
    Ok(TargetCaps {
        restore,
        stream_meta: ok(3) && ok(4),
        create_consumer: ok(6),
        field_ttl: ok(9),
    })
}

#[cfg(test)]
mod tests;
