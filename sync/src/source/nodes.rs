//! Reading keys from a live Redis, one server or every master of a cluster: SCAN, DUMP
//! with the absolute expiry, EXISTS, RANDOMKEY, INFO keyspace, over connections that
//! reconnect (everything sent is a read, safe to send again). Shared by the SCAN copy
//! ([`super::scan`]) and `verify` ([`crate::verify`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use cluster::{Connector, NodeStream, SessionSetup};

use super::scan::RdbOut;
use crate::checkpoint::OWN_PREFIX;
use crate::reply::{array_elements, error_text};
use crate::SyncError;

/// Keys asked per SCAN call.
const SCAN_COUNT: usize = 512;

/// A key as read from the source.
pub(crate) enum Read {
    /// Gone (deleted or expired since it was listed).
    Gone,
    /// Its DUMP payload and absolute expiry (0: none).
    Value { payload: Bytes, expire_ms: i64 },
}

/// The connection to the source, reconnected (and its db selected again) when it drops:
/// everything it sends is a read, safe to send again.
pub(crate) struct Conn {
    connector: Arc<Connector>,
    /// Keys asked per SCAN call.
    pub(crate) scan_count: usize,
    /// The server's Redis version (major, minor).
    pub(crate) version: (u32, u32),
    stream: NodeStream,
    db: u32,
    /// PEXPIRETIME exists (7.0+); else PTTL.
    abs_expiry: bool,
}

impl Conn {
    pub(crate) async fn connect(connector: &Arc<Connector>) -> Result<Conn, SyncError> {
        let mut stream = connector
            .connect(&SessionSetup::default())
            .await
            .map_err(|e| SyncError::Source(e.to_string()))?;
        let info = stream
            .request(&[&[b"INFO", b"server"]])
            .await
            .map_err(|e| SyncError::Source(e.to_string()))?;
        let text = String::from_utf8_lossy(&info[0]).into_owned();
        let version = version_of(&text);
        let major = version.0;
        // DUMP is the one command the copy can't do without.
        let probe = stream
            .request(&[&[b"DUMP", b"__cutover:probe"]])
            .await
            .map_err(|e| SyncError::Source(e.to_string()))?;
        // (A cluster node redirects the probe key: DUMP itself is allowed.)
        if let Some(e) =
            error_text(&probe[0]).filter(|e| !e.starts_with("MOVED") && !e.starts_with("ASK"))
        {
            return Err(SyncError::Config(format!(
                "the source refuses DUMP ({e}): the SCAN copy reads keys with DUMP"
            )));
        }
        Ok(Conn {
            connector: connector.clone(),
            stream,
            db: 0,
            abs_expiry: major >= 7,
            scan_count: SCAN_COUNT,
            version,
        })
    }

    /// Sends `cmds` (encoded, `n` of them) in `db` and returns their replies; reconnects
    /// and sends them again when the connection drops (for up to a minute).
    pub(crate) async fn request(
        &mut self,
        db: u32,
        cmds: &[u8],
        n: usize,
    ) -> Result<Vec<Bytes>, SyncError> {
        let give_up = Instant::now() + Duration::from_secs(60);
        let mut backoff = Duration::from_millis(50);
        loop {
            let r = self.try_request(db, cmds, n).await;
            match r {
                Ok(r) => return Ok(r),
                Err(e) if Instant::now() < give_up => {
                    tracing::warn!(error = %e, "SCAN copy: the source connection failed; reconnecting");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                    match self.connector.connect(&SessionSetup::default()).await {
                        Ok(s) => {
                            self.stream = s;
                            self.db = 0;
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "SCAN copy: reconnecting to the source")
                        }
                    }
                }
                Err(e) => return Err(SyncError::Source(e)),
            }
        }
    }

    async fn try_request(&mut self, db: u32, cmds: &[u8], n: usize) -> Result<Vec<Bytes>, String> {
        if db != self.db {
            let d = db.to_string();
            let r = self
                .stream
                .request(&[&[b"SELECT", d.as_bytes()]])
                .await
                .map_err(|e| e.to_string())?;
            if let Some(e) = error_text(&r[0]) {
                return Err(format!("SELECT {db}: {e}"));
            }
            self.db = db;
        }
        self.stream
            .request_raw(cmds, n)
            .await
            .map_err(|e| e.to_string())
    }

    /// One SCAN step: the next cursor and the keys (cutover's own left out).
    pub(crate) async fn scan(
        &mut self,
        db: u32,
        cursor: &[u8],
    ) -> Result<(Bytes, Vec<Bytes>), SyncError> {
        self.scan_match(db, cursor, None).await
    }

    /// One SCAN step over the keys matching `pattern` (cutover's own left out).
    pub(crate) async fn scan_match(
        &mut self,
        db: u32,
        cursor: &[u8],
        pattern: Option<&[u8]>,
    ) -> Result<(Bytes, Vec<Bytes>), SyncError> {
        let (next, mut keys) = self.scan_raw(db, cursor, pattern).await?;
        keys.retain(|k| !k.starts_with(OWN_PREFIX));
        Ok((next, keys))
    }

    /// One SCAN step over every key matching `pattern`, cutover's own included.
    pub(crate) async fn scan_all(
        &mut self,
        db: u32,
        cursor: &[u8],
        pattern: &[u8],
    ) -> Result<(Bytes, Vec<Bytes>), SyncError> {
        self.scan_raw(db, cursor, Some(pattern)).await
    }

    async fn scan_raw(
        &mut self,
        db: u32,
        cursor: &[u8],
        pattern: Option<&[u8]>,
    ) -> Result<(Bytes, Vec<Bytes>), SyncError> {
        let mut out = BytesMut::new();
        let count = self.scan_count.to_string();
        match pattern {
            Some(p) => resp::encode::command(
                &mut out,
                [
                    &b"SCAN"[..],
                    cursor,
                    b"MATCH",
                    p,
                    b"COUNT",
                    count.as_bytes(),
                ]
                .into_iter(),
            ),
            None => resp::encode::command(
                &mut out,
                [&b"SCAN"[..], cursor, b"COUNT", count.as_bytes()].into_iter(),
            ),
        }
        let r = self.request(db, &out, 1).await?;
        let bad = || SyncError::Source("SCAN: unexpected reply".into());
        if let Some(e) = error_text(&r[0]) {
            return Err(SyncError::Config(format!(
                "{} refuses SCAN: {e}",
                self.connector.addr()
            )));
        }
        let parts = array_elements(&r[0]).ok_or_else(bad)?;
        let [cur, keys] = parts.as_slice() else {
            return Err(bad());
        };
        let next = Bytes::copy_from_slice(bulk(cur).ok_or_else(bad)?);
        let keys = array_elements(keys)
            .ok_or_else(bad)?
            .into_iter()
            .filter_map(bulk)
            .map(Bytes::copy_from_slice)
            .collect();
        Ok((next, keys))
    }

    /// `n` random keys of `db` (RANDOMKEY, pipelined; repeats possible).
    pub(crate) async fn random_keys(&mut self, db: u32, n: usize) -> Result<Vec<Bytes>, SyncError> {
        let mut out = BytesMut::new();
        for _ in 0..n {
            resp::encode::command(&mut out, [&b"RANDOMKEY"[..]].into_iter());
        }
        let r = self.request(db, &out, n).await?;
        if let Some(e) = r.first().and_then(|f| error_text(f)) {
            return Err(SyncError::Config(format!(
                "{} refuses RANDOMKEY: {e}",
                self.connector.addr()
            )));
        }
        Ok(r.iter()
            .filter_map(|f| bulk(f))
            .map(Bytes::copy_from_slice)
            .collect())
    }

    /// Whether each key exists (EXISTS, pipelined).
    pub(crate) async fn exists(&mut self, db: u32, keys: &[Bytes]) -> Result<Vec<bool>, SyncError> {
        let mut out = BytesMut::new();
        for k in keys {
            resp::encode::command(&mut out, [&b"EXISTS"[..], k].into_iter());
        }
        let r = self.request(db, &out, keys.len()).await?;
        r.iter()
            .map(|f| {
                integer(f).map(|n| n > 0).ok_or_else(|| {
                    SyncError::Source(format!("EXISTS: {}", error_text(f).unwrap_or_default()))
                })
            })
            .collect()
    }

    /// DUMP and expiry of each key, pipelined.
    pub(crate) async fn read(&mut self, db: u32, keys: &[Bytes]) -> Result<Vec<Read>, SyncError> {
        self.read_with(db, keys, true).await
    }

    /// DUMP of each key, and its expiry when `ttls` (else every key reads as without one:
    /// for a db that has no volatile key).
    pub(crate) async fn read_with(
        &mut self,
        db: u32,
        keys: &[Bytes],
        ttls: bool,
    ) -> Result<Vec<Read>, SyncError> {
        let mut out = BytesMut::new();
        let ttl: &[u8] = if self.abs_expiry {
            b"PEXPIRETIME"
        } else {
            b"PTTL"
        };
        for k in keys {
            resp::encode::command(&mut out, [&b"DUMP"[..], k].into_iter());
            if ttls {
                resp::encode::command(&mut out, [ttl, k].into_iter());
            }
        }
        let per = if ttls { 2 } else { 1 };
        let replies = self.request(db, &out, keys.len() * per).await?;
        let now = now_ms();
        let mut reads = Vec::with_capacity(keys.len());
        for (k, pair) in keys.iter().zip(replies.chunks(per)) {
            let dump = &pair[0];
            if let Some(e) = error_text(dump) {
                return Err(SyncError::Source(format!(
                    "DUMP {}: {e}",
                    crate::reply::show_key(k)
                )));
            }
            let Some(range) = bulk_range(dump) else {
                reads.push(Read::Gone);
                continue;
            };
            let t = match pair.get(1) {
                None => -1,
                Some(ttl) => integer(ttl).ok_or_else(|| {
                    SyncError::Source(format!(
                        "{} {}: unexpected reply",
                        String::from_utf8_lossy(ttl_name(self.abs_expiry)),
                        crate::reply::show_key(k)
                    ))
                })?,
            };
            let expire_ms = match t {
                -2 => {
                    reads.push(Read::Gone);
                    continue;
                }
                t if t < 0 => 0,
                t if self.abs_expiry => t,
                t => now + t,
            };
            reads.push(Read::Value {
                payload: dump.slice(range),
                expire_ms,
            });
        }
        Ok(reads)
    }

    /// How many keys of `db` have a TTL (INFO keyspace `expires`).
    pub(crate) async fn volatile(&mut self, db: u32) -> Result<u64, SyncError> {
        let r = self
            .request(self.db, b"*2\r\n$4\r\nINFO\r\n$8\r\nkeyspace\r\n", 1)
            .await?;
        let text = String::from_utf8_lossy(&r[0]);
        Ok(cluster::info::keyspace_db(&text, db).map_or(0, |d| d.expires))
    }

    /// The function libraries (7.0+), first in the RDB as Redis writes them.
    pub(crate) async fn functions(&mut self, out: &mut RdbOut) -> Result<(), SyncError> {
        if !self.abs_expiry {
            return Ok(());
        }
        let r = self
            .request(self.db, b"*2\r\n$8\r\nFUNCTION\r\n$4\r\nDUMP\r\n", 1)
            .await?;
        match (error_text(&r[0]), bulk(&r[0])) {
            (Some(e), _) => {
                tracing::warn!(error = %e, "the source refuses FUNCTION DUMP: its functions are not copied");
                Ok(())
            }
            (None, Some(p)) => out.functions(p),
            (None, None) => Ok(()),
        }
    }

    /// How many keys `db` holds (DBSIZE).
    pub(crate) async fn dbsize(&mut self, db: u32) -> Result<u64, SyncError> {
        let r = self.request(db, b"*1\r\n$6\r\nDBSIZE\r\n", 1).await?;
        integer(&r[0]).map(|n| n.max(0) as u64).ok_or_else(|| {
            SyncError::Source(format!("DBSIZE: {}", error_text(&r[0]).unwrap_or_default()))
        })
    }

    /// The dbs holding keys, and how many keys in all.
    pub(crate) async fn keyspace(&mut self) -> Result<(Vec<u32>, u64), SyncError> {
        let r = self
            .request(self.db, b"*2\r\n$4\r\nINFO\r\n$8\r\nkeyspace\r\n", 1)
            .await?;
        let text = String::from_utf8_lossy(&r[0]).into_owned();
        let ks = cluster::info::keyspace(&text);
        let total = ks.iter().map(|(_, n)| *n).sum();
        Ok((ks.into_iter().map(|(d, _)| d).collect(), total))
    }
}

/// (major, minor) of `redis_version` in INFO server text ((0, 0) when absent).
pub(crate) fn version_of(info: &str) -> (u32, u32) {
    let v = cluster::info::field(info, "redis_version").unwrap_or("0.0");
    let mut it = v.split('.').map(|p| p.trim().parse::<u32>().unwrap_or(0));
    (it.next().unwrap_or(0), it.next().unwrap_or(0))
}

fn ttl_name(abs: bool) -> &'static [u8] {
    if abs {
        b"PEXPIRETIME"
    } else {
        b"PTTL"
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The bytes of a bulk string frame (None for nil and other types).
pub(crate) fn bulk(frame: &[u8]) -> Option<&[u8]> {
    bulk_range(frame).map(|r| &frame[r])
}

pub(crate) fn bulk_range(frame: &[u8]) -> Option<std::ops::Range<usize>> {
    if frame.first() != Some(&b'$') {
        return None;
    }
    let end = memchr::memchr(b'\r', frame)?;
    let n: i64 = std::str::from_utf8(&frame[1..end]).ok()?.parse().ok()?;
    let n = usize::try_from(n).ok()?;
    let start = end + 2;
    (frame.len() >= start + n).then_some(start..start + n)
}

pub(crate) fn integer(frame: &[u8]) -> Option<i64> {
    if frame.first() != Some(&b':') {
        return None;
    }
    let end = memchr::memchr(b'\r', frame)?;
    std::str::from_utf8(&frame[1..end]).ok()?.parse().ok()
}

/// Keeps the copy under `max_ops` keys per second.
pub(crate) struct Pacer {
    per_key: Option<Duration>,
    next: Instant,
}

impl Pacer {
    pub(crate) fn new(max_ops: u64) -> Pacer {
        Pacer {
            per_key: (max_ops > 0).then(|| Duration::from_secs_f64(1.0 / max_ops as f64)),
            next: Instant::now(),
        }
    }
    pub(crate) async fn take(&mut self, keys: usize) {
        let Some(per) = self.per_key else {
            return;
        };
        let now = Instant::now();
        if self.next > now {
            tokio::time::sleep_until(self.next.into()).await;
        }
        self.next = self.next.max(now) + per * keys as u32;
    }
}

/// The source's nodes: one server, or every master of a cluster with the slots it serves.
pub(crate) struct Nodes {
    pub(crate) conns: Vec<Conn>,
    /// Cluster: the index in `conns` of each slot's master.
    owner: Option<Vec<u16>>,
}

impl Nodes {
    pub(crate) async fn connect(
        source: &Arc<Connector>,
        cluster: bool,
    ) -> Result<Nodes, SyncError> {
        if !cluster {
            return Ok(Nodes {
                conns: vec![Conn::connect(source).await?],
                owner: None,
            });
        }
        let mut seed = source
            .connect(&SessionSetup::default())
            .await
            .map_err(|e| SyncError::Source(e.to_string()))?;
        let origin = cluster::slots::NodeAddr {
            host: source.url().host.clone(),
            port: source.url().port,
        };
        let map = cluster::slots::SlotMap::fetch(&mut seed, &origin)
            .await
            .map_err(|e| SyncError::Source(format!("the source cluster's slot map: {e}")))?;
        let masters = map.masters();
        let mut conns = Vec::with_capacity(masters.len());
        for m in &masters {
            let c = source
                .for_node(&m.host, m.port)
                .map_err(|e| SyncError::Source(e.to_string()))?;
            conns.push(Conn::connect(&Arc::new(c)).await?);
        }
        let mut owner = vec![0u16; usize::from(cluster::slots::SLOT_COUNT)];
        for (slot, o) in owner.iter_mut().enumerate() {
            let m = map.master_for(slot as u16).ok_or_else(|| {
                SyncError::Source(format!("the source cluster serves no slot {slot}"))
            })?;
            *o = masters.iter().position(|x| x == m).unwrap_or(0) as u16;
        }
        tracing::info!(
            masters = conns.len(),
            "SCAN copy of a Redis Cluster: every master is scanned"
        );
        Ok(Nodes {
            conns,
            owner: Some(owner),
        })
    }

    /// Each node's connector (to reach them apart, e.g. to subscribe).
    pub(crate) fn connectors(&self) -> Vec<Arc<Connector>> {
        self.conns.iter().map(|c| c.connector.clone()).collect()
    }

    /// `keys` grouped by the node that holds them: (node, positions in `keys`, the keys).
    pub(crate) fn split(&self, keys: &[Bytes]) -> Vec<(usize, Vec<usize>, Vec<Bytes>)> {
        let mut groups: Vec<(usize, Vec<usize>, Vec<Bytes>)> = (0..self.conns.len())
            .map(|n| (n, Vec::new(), Vec::new()))
            .collect();
        for (i, k) in keys.iter().enumerate() {
            let g = &mut groups[self.of(k)];
            g.1.push(i);
            g.2.push(k.clone());
        }
        groups.retain(|g| !g.1.is_empty());
        groups
    }

    /// The node that holds `key`.
    pub(crate) fn of(&self, key: &[u8]) -> usize {
        match &self.owner {
            None => 0,
            Some(o) => usize::from(o[usize::from(cluster::slots::key_slot(key))]),
        }
    }

    /// The dbs holding keys on any node, and how many keys in all.
    pub(crate) async fn keyspace(&mut self) -> Result<(Vec<u32>, u64), SyncError> {
        let mut dbs = Vec::new();
        let mut total = 0;
        for c in &mut self.conns {
            let (d, n) = c.keyspace().await?;
            total += n;
            for db in d {
                if !dbs.contains(&db) {
                    dbs.push(db);
                }
            }
        }
        dbs.sort_unstable();
        Ok((dbs, total))
    }
}
