//! Where a key lives in a Redis Cluster: the hash slot of a key ([`key_slot`]), which node
//! serves each of the 16384 slots ([`SlotMap`]), and what a `-MOVED`/`-ASK` redirection
//! points at ([`Redirect`]).
//!
//! Topology replies are control-plane traffic (one per refresh, a few KiB), so they are
//! decoded here into a small borrowed tree rather than streamed. They still come from the
//! network, so the decoder is iterative with a depth cap, checks every declared length
//! against the bytes actually present before allocating, and never panics: a malformed
//! reply is a [`SlotsError`], not a crash of the proxy.
//!
//! Values stay bytes; only node addresses become `String`s, because they are host names
//! handed to the resolver.

use resp::value::{parse_u64, Value};
use std::fmt;
use std::io;

use crate::{NodeStream, RedisUrl};

/// Number of hash slots in a Redis Cluster.
pub const SLOT_COUNT: u16 = 16384;

/// Nesting a topology reply may have. CLUSTER SHARDS needs 4 levels (shards, shard map,
/// node list, node map); anything much deeper is not a topology reply.
const MAX_DEPTH: usize = 8;

/// The hash slot of `key`: CRC16 (XMODEM) of the key, or of its hash tag, modulo 16384.
///
/// The hash tag is what lies between the first `{` and the first `}` after it, and only
/// when that is non-empty: `{user1}.a` and `{user1}.b` share a slot, while `foo{}{bar}`
/// hashes the whole key (the first tag is empty, and Redis never looks for a second one).
pub fn key_slot(key: &[u8]) -> u16 {
    let hashed = hash_tag(key).unwrap_or(key);
    // 16384 is a power of two, so the modulo is a mask (as in Redis' keyHashSlot).
    crc16::State::<crc16::XMODEM>::calculate(hashed) & (SLOT_COUNT - 1)
}

/// The non-empty hash tag of `key`, if it has one.
fn hash_tag(key: &[u8]) -> Option<&[u8]> {
    let open = key.iter().position(|&b| b == b'{')?;
    let rest = key.get(open + 1..)?;
    let close = rest.iter().position(|&b| b == b'}')?;
    if close == 0 {
        None
    } else {
        rest.get(..close)
    }
}

/// Why a topology reply could not be turned into a [`SlotMap`].
#[derive(Debug, thiserror::Error)]
pub enum SlotsError {
    /// The bytes are not one well-formed RESP reply.
    #[error("malformed RESP reply at byte {at}: {what}")]
    Malformed { at: usize, what: &'static str },
    /// Valid RESP, but not shaped like the reply of the command we sent.
    #[error("unexpected CLUSTER {command} reply: {what}")]
    Shape {
        command: &'static str,
        what: &'static str,
    },
    /// The node answered with an error (cluster support disabled, LOADING, NOAUTH, ...).
    #[error("the node refused CLUSTER {command}: {reply}")]
    Refused {
        command: &'static str,
        reply: String,
    },
    #[error("talking to the node: {0}")]
    Io(#[from] io::Error),
}

impl SlotsError {
    fn shape(command: &'static str, what: &'static str) -> Self {
        SlotsError::Shape { command, what }
    }
}

/// A node's address as the cluster announces it. `host` may be a name, an IPv4 address or
/// a bare IPv6 address (no brackets); an empty `host` means "the host you asked", which
/// [`NodeAddr::or_host_of`] fills in.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeAddr {
    pub host: String,
    pub port: u16,
}

impl NodeAddr {
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        NodeAddr {
            host: host.into(),
            port,
        }
    }

    /// This address, with the host of `origin` when the cluster did not know its own
    /// (Redis announces an empty or `?` endpoint then, and clients are meant to use the
    /// host they sent the command to).
    pub fn or_host_of(&self, origin: &NodeAddr) -> NodeAddr {
        if self.host.is_empty() {
            NodeAddr::new(origin.host.clone(), self.port)
        } else {
            self.clone()
        }
    }
}

impl std::str::FromStr for NodeAddr {
    type Err = crate::UrlError;

    /// `host:port`, `[v6]:port`, or a host alone (port 6379), as written in a config file.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (host, port) = crate::url::split_host_port(s)?;
        Ok(NodeAddr::new(host, port))
    }
}

impl From<&RedisUrl> for NodeAddr {
    fn from(url: &RedisUrl) -> Self {
        NodeAddr::new(url.host.clone(), url.port)
    }
}

impl fmt::Display for NodeAddr {
    /// `host:port`, with IPv6 hosts in brackets so the port stays unambiguous.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// One master and its replicas, serving some slots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shard {
    pub master: NodeAddr,
    pub replicas: Vec<NodeAddr>,
}

/// Marks a slot no shard serves (in `SlotMap::owner`).
const UNASSIGNED: u16 = u16::MAX;

/// For each of the 16384 slots, the shard serving it (if any).
#[derive(Clone, PartialEq, Eq)]
pub struct SlotMap {
    /// Only shards that own at least one slot, each master once.
    shards: Vec<Shard>,
    /// Index into `shards` per slot, or [`UNASSIGNED`]. A flat table: a lookup per command
    /// must be one load, and 32 KiB per map is nothing.
    owner: Box<[u16]>,
}

impl fmt::Debug for SlotMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlotMap")
            .field("shards", &self.shards)
            .field("assigned_slots", &self.assigned_slots())
            .finish()
    }
}

impl SlotMap {
    fn empty() -> Self {
        SlotMap {
            shards: Vec::new(),
            owner: vec![UNASSIGNED; usize::from(SLOT_COUNT)].into_boxed_slice(),
        }
    }

    /// Records that `shard` serves `start..=end`. Masters already known (CLUSTER SLOTS lists
    /// a master once per range) are merged; a slot claimed twice goes to the later claim.
    fn assign(&mut self, start: u16, end: u16, shard: Shard) {
        let index = match self.shards.iter().position(|s| s.master == shard.master) {
            Some(i) => {
                let known = &mut self.shards[i].replicas;
                for r in shard.replicas {
                    if !known.contains(&r) {
                        known.push(r);
                    }
                }
                i
            }
            None => {
                self.shards.push(shard);
                self.shards.len() - 1
            }
        };
        // At most 16384 shards can own a slot, so the index always fits below UNASSIGNED.
        let index = u16::try_from(index).unwrap_or(UNASSIGNED);
        for slot in start..=end {
            if let Some(o) = self.owner.get_mut(usize::from(slot)) {
                *o = index;
            }
        }
    }

    /// Drops shards left without slots (a later range took them all) and numbers the rest
    /// in slot order, so the same topology gives the same map whichever reply (and reply
    /// order) it came from.
    fn compact(mut self) -> Self {
        let mut renumber = vec![UNASSIGNED; self.shards.len()];
        let mut order = Vec::with_capacity(self.shards.len());
        for o in self.owner.iter_mut() {
            let Some(new) = renumber.get_mut(usize::from(*o)) else {
                continue;
            };
            if *new == UNASSIGNED {
                *new = u16::try_from(order.len()).unwrap_or(UNASSIGNED);
                order.push(usize::from(*o));
            }
            *o = *new;
        }
        let mut old: Vec<Option<Shard>> = std::mem::take(&mut self.shards)
            .into_iter()
            .map(Some)
            .collect();
        self.shards = order
            .into_iter()
            .filter_map(|i| old.get_mut(i).and_then(Option::take))
            .collect();
        self
    }

    /// The shard serving `slot`, if any (none for slots out of range or unassigned).
    pub fn shard_for(&self, slot: u16) -> Option<&Shard> {
        let index = *self.owner.get(usize::from(slot))?;
        self.shards.get(usize::from(index))
    }

    /// The index in [`SlotMap::shards`] of the shard serving `slot`.
    pub fn shard_index(&self, slot: u16) -> Option<usize> {
        let index = usize::from(*self.owner.get(usize::from(slot))?);
        (index < self.shards.len()).then_some(index)
    }

    /// The master serving `slot`.
    pub fn master_for(&self, slot: u16) -> Option<&NodeAddr> {
        self.shard_for(slot).map(|s| &s.master)
    }

    /// The replicas of the master serving `slot` (empty when none or unassigned).
    pub fn replicas_for(&self, slot: u16) -> &[NodeAddr] {
        self.shard_for(slot).map_or(&[], |s| s.replicas.as_slice())
    }

    /// Every master that serves at least one slot, each once, in slot order.
    pub fn masters(&self) -> Vec<NodeAddr> {
        self.shards.iter().map(|s| s.master.clone()).collect()
    }

    /// The shards that serve at least one slot.
    pub fn shards(&self) -> &[Shard] {
        &self.shards
    }

    /// How many slots have a master (16384 when the cluster covers every slot).
    pub fn assigned_slots(&self) -> usize {
        self.owner.iter().filter(|&&o| o != UNASSIGNED).count()
    }

    /// Asks the node behind `conn` for the topology: CLUSTER SHARDS, and CLUSTER SLOTS when
    /// that fails (before Redis 7.0 it is an unknown subcommand). `origin` is the address
    /// `conn` was opened to: nodes that announce no endpoint are reached at its host.
    pub async fn fetch(conn: &mut NodeStream, origin: &NodeAddr) -> Result<SlotMap, SlotsError> {
        let reply = request_one(conn, b"SHARDS").await?;
        if reply.first() != Some(&b'-') {
            return SlotMap::from_cluster_shards(&reply, origin);
        }
        // Any error falls back: if SLOTS fails too, its error is the one worth reporting
        // (it is the same "cluster support disabled" or NOAUTH on every version).
        let reply = request_one(conn, b"SLOTS").await?;
        SlotMap::from_cluster_slots(&reply, origin)
    }

    /// Builds the map from a raw `CLUSTER SHARDS` reply (RESP2 flat lists or RESP3 maps).
    ///
    /// Each shard is `slots` (start/end pairs) and `nodes` (field/value lists: `endpoint`,
    /// `ip`, `port`, `tls-port`, `role`, ...). Shards without a `master` node are left out:
    /// their slots have no one to write to until a failover completes.
    pub fn from_cluster_shards(reply: &[u8], origin: &NodeAddr) -> Result<SlotMap, SlotsError> {
        const CMD: &str = "SHARDS";
        let shape = |what| SlotsError::shape(CMD, what);
        let root = parse_reply(reply, CMD)?;
        let shards = root.items().ok_or_else(|| shape("not a list of shards"))?;
        let mut map = SlotMap::empty();
        for shard in shards {
            let fields = shard
                .fields()
                .ok_or_else(|| shape("a shard is not a map"))?;
            let mut ranges: &[Value] = &[];
            let mut nodes: &[Value] = &[];
            for (k, v) in fields {
                match k.bytes() {
                    Some(b"slots") => ranges = v.items().ok_or_else(|| shape("slots"))?,
                    Some(b"nodes") => nodes = v.items().ok_or_else(|| shape("nodes"))?,
                    _ => {}
                }
            }
            let pairs = ranges.chunks_exact(2);
            if !pairs.remainder().is_empty() {
                return Err(shape("odd number of slot bounds"));
            }
            let mut master = None;
            let mut replicas = Vec::new();
            for node in nodes {
                let (addr, is_master) = shard_node(node, origin)?;
                if is_master {
                    master = Some(addr);
                } else {
                    replicas.push(addr);
                }
            }
            let Some(master) = master else { continue };
            let shard = Shard { master, replicas };
            for pair in pairs {
                let (start, end) = slot_range(&pair[0], &pair[1], CMD)?;
                map.assign(start, end, shard.clone());
            }
        }
        Ok(map.compact())
    }

    /// Builds the map from a raw `CLUSTER SLOTS` reply: one entry per slot range,
    /// `[start, end, master, replica...]`, each node `[endpoint, port, id, metadata?]`.
    /// RESP3 only changes the metadata into a map, which is not needed here.
    pub fn from_cluster_slots(reply: &[u8], origin: &NodeAddr) -> Result<SlotMap, SlotsError> {
        const CMD: &str = "SLOTS";
        let shape = |what| SlotsError::shape(CMD, what);
        let root = parse_reply(reply, CMD)?;
        let ranges = root
            .items()
            .ok_or_else(|| shape("not a list of slot ranges"))?;
        let mut map = SlotMap::empty();
        for range in ranges {
            let parts = range
                .items()
                .ok_or_else(|| shape("a range is not a list"))?;
            let [start, end, master, replicas @ ..] = parts else {
                return Err(shape("a range has no master"));
            };
            let (start, end) = slot_range(start, end, CMD)?;
            let master = slots_node(master, origin)?;
            let replicas = replicas
                .iter()
                .map(|r| slots_node(r, origin))
                .collect::<Result<Vec<_>, _>>()?;
            map.assign(start, end, Shard { master, replicas });
        }
        Ok(map.compact())
    }
}

async fn request_one(conn: &mut NodeStream, sub: &[u8]) -> Result<bytes::Bytes, SlotsError> {
    let cmd: &[&[u8]] = &[b"CLUSTER", sub];
    let mut replies = conn.request(&[cmd]).await?;
    replies
        .pop()
        .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof).into())
}

/// A validated `start..=end` slot range.
fn slot_range(start: &Value, end: &Value, command: &'static str) -> Result<(u16, u16), SlotsError> {
    let bad = || SlotsError::shape(command, "slot range bounds are not slots 0..=16383");
    let slot = |v: &Value| {
        v.int()
            .and_then(|n| u16::try_from(n).ok())
            .filter(|&s| s < SLOT_COUNT)
            .ok_or_else(bad)
    };
    let (start, end) = (slot(start)?, slot(end)?);
    if start > end {
        return Err(bad());
    }
    Ok((start, end))
}

/// A node of CLUSTER SHARDS: its address and whether it is the shard's master.
fn shard_node(node: &Value, origin: &NodeAddr) -> Result<(NodeAddr, bool), SlotsError> {
    let shape = |what| SlotsError::shape("SHARDS", what);
    let fields = node.fields().ok_or_else(|| shape("a node is not a map"))?;
    let (mut endpoint, mut ip, mut port, mut tls_port, mut master) =
        (None, None, None, None, false);
    for (k, v) in fields {
        match k.bytes() {
            Some(b"endpoint") => endpoint = v.bytes(),
            Some(b"ip") => ip = v.bytes(),
            Some(b"port") => port = v.int(),
            Some(b"tls-port") => tls_port = v.int(),
            Some(b"role") => master = v.bytes() == Some(b"master"),
            _ => {}
        }
    }
    // Redis lists `port` when the node has a plaintext port and `tls-port` when it serves
    // TLS; a TLS-only node has only the latter.
    let port = port
        .or(tls_port)
        .and_then(|p| u16::try_from(p).ok())
        .filter(|&p| p != 0)
        .ok_or_else(|| shape("a node has no valid port"))?;
    // `endpoint` is the one the cluster wants clients to use (cluster-preferred-endpoint-type);
    // `ip` is there for older layouts that might lack it.
    let host = host_of(endpoint.or(ip)).ok_or_else(|| shape("a node endpoint is not UTF-8"))?;
    Ok((NodeAddr::new(host, port).or_host_of(origin), master))
}

/// A node of CLUSTER SLOTS: `[endpoint, port, id, ...]`.
fn slots_node(node: &Value, origin: &NodeAddr) -> Result<NodeAddr, SlotsError> {
    let shape = |what| SlotsError::shape("SLOTS", what);
    let parts = node.items().ok_or_else(|| shape("a node is not a list"))?;
    let [endpoint, port, ..] = parts else {
        return Err(shape("a node has no endpoint and port"));
    };
    let port = port
        .int()
        .and_then(|p| u16::try_from(p).ok())
        .filter(|&p| p != 0)
        .ok_or_else(|| shape("a node has no valid port"))?;
    // A null endpoint is Redis 7's "unknown endpoint"; older versions send an empty string.
    let host = host_of(endpoint.bytes()).ok_or_else(|| shape("a node endpoint is not UTF-8"))?;
    Ok(NodeAddr::new(host, port).or_host_of(origin))
}

/// The host to use for an announced endpoint: empty when the node does not know it
/// (missing, null, empty or `?`), for [`NodeAddr::or_host_of`] to fill in.
fn host_of(endpoint: Option<&[u8]>) -> Option<String> {
    match endpoint {
        None | Some(b"") | Some(b"?") => Some(String::new()),
        Some(bytes) => {
            let s = std::str::from_utf8(bytes).ok()?;
            // Accept a bracketed IPv6 endpoint too: hosts are kept bare.
            let s = s
                .strip_prefix('[')
                .and_then(|s| s.strip_suffix(']'))
                .unwrap_or(s);
            Some(s.to_string())
        }
    }
}

/// Whether a redirection moves the slot for good or for one command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedirectKind {
    /// `-MOVED`: the slot now lives on `node`; update the map and resend there.
    Moved,
    /// `-ASK`: the slot is being migrated; send `ASKING` and then this one command to
    /// `node`, leaving the map as it is.
    Ask,
}

/// A parsed `-MOVED <slot> <host:port>` or `-ASK <slot> <host:port>` error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect {
    pub kind: RedirectKind,
    pub slot: u16,
    /// Where to go. The host is empty when Redis sent `:port` (the node does not know its
    /// own address): use [`NodeAddr::or_host_of`] with the node that sent the redirection.
    pub node: NodeAddr,
}

impl Redirect {
    /// Parses an error line, with or without the leading `-` and the trailing CRLF.
    /// Returns `None` for any other error (or a malformed redirection, which the caller
    /// should pass through to the client as the error it is).
    ///
    /// The address is split at its last `:`, so both `[::1]:7000` and the unbracketed
    /// `::1:7000` that Redis itself writes for IPv6 nodes give host `::1`.
    pub fn parse(err_line: &[u8]) -> Option<Redirect> {
        let line = err_line.strip_prefix(b"-").unwrap_or(err_line);
        let line = line.strip_suffix(b"\r\n").unwrap_or(line);
        let mut parts = line.split(|&b| b == b' ');
        let kind = match parts.next()? {
            b"MOVED" => RedirectKind::Moved,
            b"ASK" => RedirectKind::Ask,
            _ => return None,
        };
        let slot = parse_u64(parts.next()?)
            .and_then(|n| u16::try_from(n).ok())
            .filter(|&s| s < SLOT_COUNT)?;
        let addr = parts.next()?;
        if parts.next().is_some() {
            return None;
        }
        let colon = addr.iter().rposition(|&b| b == b':')?;
        let port = parse_u64(&addr[colon + 1..])
            .and_then(|p| u16::try_from(p).ok())
            .filter(|&p| p != 0)?;
        let host = std::str::from_utf8(&addr[..colon]).ok()?;
        let host = match host.strip_prefix('[') {
            Some(inner) => inner.strip_suffix(']')?,
            None => host,
        };
        Some(Redirect {
            kind,
            slot,
            node: NodeAddr::new(host, port),
        })
    }
}

/// Decodes exactly one reply filling `buf`; an error reply becomes [`SlotsError::Refused`].
fn parse_reply<'a>(buf: &'a [u8], command: &'static str) -> Result<Value<'a>, SlotsError> {
    let value = Value::decode(buf, MAX_DEPTH).map_err(|e| SlotsError::Malformed {
        at: e.at,
        what: e.what,
    })?;
    if let Value::Error(text) = value {
        return Err(SlotsError::Refused {
            command,
            reply: String::from_utf8_lossy(text).into_owned(),
        });
    }
    Ok(value)
}
