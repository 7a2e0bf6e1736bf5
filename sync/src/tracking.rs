//! What changed on a source that can't be replicated from, as the proxy saw it: the keys
//! written through the proxy since the SCAN copy ([`crate::source::scan`]) last copied them
//! (the dirty set), the keyless writes that change whole dbs (barriers: FLUSHDB, FLUSHALL,
//! SWAPDB), and the cutover's request for the last copy (the fence).
//!
//! The rule that makes the copy lossless (shared/notes/online-without-psync.md): a key is
//! marked once a write's REPLY passes the proxy (the write has run), and the copier unmarks
//! a key BEFORE it reads it (DUMP). Whatever the timing, a write either is in the copy the
//! copier reads or marks the key again after the unmark, so it is copied again later.
//!
//! Memory is bounded: past `max_keys` marked keys the set is dropped and everything is
//! marked for a rescan instead (a full pass copies every key again, each after that point:
//! nothing is lost, more is copied).

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use bytes::Bytes;
use tokio::sync::{oneshot, Notify};

/// A keyless write that changes whole dbs, applied to the target in order with the copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Barrier {
    /// FLUSHDB of this db; FLUSHALL is `Flush(None)`.
    Flush(Option<u32>),
    /// SWAPDB a b: both dbs are emptied on the target and copied again.
    Swap(u32, u32),
}

/// The dbs a key is marked in (almost always one).
#[derive(Debug)]
enum Dbs {
    One(u32),
    Many(Vec<u32>),
}

impl Dbs {
    fn has(&self, db: u32) -> bool {
        match self {
            Dbs::One(d) => *d == db,
            Dbs::Many(v) => v.contains(&db),
        }
    }
    fn add(&mut self, db: u32) -> bool {
        if self.has(db) {
            return false;
        }
        match self {
            Dbs::One(d) => *self = Dbs::Many(vec![*d, db]),
            Dbs::Many(v) => v.push(db),
        }
        true
    }
    /// Removes `db`; whether none is left.
    fn remove(&mut self, db: u32) -> (bool, bool) {
        match self {
            Dbs::One(d) if *d == db => (true, true),
            Dbs::One(_) => (false, false),
            Dbs::Many(v) => {
                let before = v.len();
                v.retain(|d| *d != db);
                (v.len() != before, v.is_empty())
            }
        }
    }
    fn each(self, mut f: impl FnMut(u32)) {
        match self {
            Dbs::One(d) => f(d),
            Dbs::Many(v) => v.into_iter().for_each(f),
        }
    }
}

const SHARDS: usize = 16;

type Shard = HashMap<Box<[u8]>, Dbs>;

/// The dirty set and everything else the proxy tells the SCAN copy.
pub struct Tracker {
    /// Off until the SCAN copy runs (in `auto` mode, until PSYNC was refused): marking
    /// costs nothing then.
    enabled: AtomicBool,
    /// The clients were switched to the target: their writes no longer concern the
    /// source, nothing more is marked.
    switched: AtomicBool,
    shards: Vec<Mutex<Shard>>,
    hasher: std::collections::hash_map::RandomState,
    keys: AtomicU64,
    key_bytes: AtomicU64,
    max_keys: u64,
    /// The set overflowed: every key must be copied again (a full pass).
    rescan: AtomicBool,
    barriers: Mutex<Vec<Barrier>>,
    fences: Mutex<Vec<oneshot::Sender<i64>>>,
    wake: Notify,
    /// Script or function calls that declared no keys but may write: what they change
    /// can't be tracked (reported; `verify` is the check).
    pub untracked_scripts: AtomicU64,
    /// Times the set overflowed into a rescan.
    pub overflows: AtomicU64,
    /// Write commands (and script calls) the proxy forwarded while tracking.
    pub writes_forwarded: AtomicU64,
    pub scripts_forwarded: AtomicU64,
    /// Writes the source counted beyond those (INFO commandstats): writers that bypass
    /// the proxy, whose keys can't be tracked.
    pub untracked_writes: AtomicU64,
    /// The copy's figures (STATUS, metrics).
    pub progress: ScanProgress,
}

/// Where the SCAN copy is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ScanState {
    Off = 0,
    /// The first pass: every key.
    Copy = 1,
    /// Copying what changed since, round after round.
    Rounds = 2,
}

impl ScanState {
    /// As STATUS shows it in `sync_state`.
    pub fn as_str(self) -> &'static str {
        match self {
            ScanState::Off => "off",
            ScanState::Copy => "scan_copy",
            ScanState::Rounds => "scan_rounds",
        }
    }
}

/// The SCAN copy's figures.
#[derive(Debug, Default)]
pub struct ScanProgress {
    state: std::sync::atomic::AtomicU8,
    /// Keys the source held when the first pass started (INFO keyspace).
    pub keys_total: AtomicU64,
    /// Keys read by the first pass so far.
    pub keys_copied: AtomicU64,
    /// Keys copied again since (dirty keys, rescans).
    pub keys_recopied: AtomicU64,
    /// Rounds finished: each ends when nothing dirty is left.
    pub rounds: AtomicU64,
}

impl ScanProgress {
    pub fn state(&self) -> ScanState {
        match self.state.load(Ordering::Relaxed) {
            1 => ScanState::Copy,
            2 => ScanState::Rounds,
            _ => ScanState::Off,
        }
    }
    pub fn set_state(&self, s: ScanState) {
        self.state.store(s as u8, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for Tracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracker")
            .field("enabled", &self.enabled())
            .field("keys", &self.dirty_keys())
            .finish()
    }
}

impl Tracker {
    /// A tracker holding at most `max_keys` marked keys (then: rescan everything).
    pub fn new(max_keys: u64, enabled: bool) -> Tracker {
        Tracker {
            enabled: AtomicBool::new(enabled),
            switched: AtomicBool::new(false),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: Default::default(),
            keys: AtomicU64::new(0),
            key_bytes: AtomicU64::new(0),
            max_keys: max_keys.max(1),
            rescan: AtomicBool::new(false),
            barriers: Mutex::new(Vec::new()),
            fences: Mutex::new(Vec::new()),
            wake: Notify::new(),
            untracked_scripts: AtomicU64::new(0),
            overflows: AtomicU64::new(0),
            writes_forwarded: AtomicU64::new(0),
            scripts_forwarded: AtomicU64::new(0),
            untracked_writes: AtomicU64::new(0),
            progress: ScanProgress::default(),
        }
    }

    /// Whether writes are being tracked (the proxy checks this before finding keys).
    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Acquire)
    }

    /// Turns tracking on (before the copy's first pass starts).
    pub fn enable(&self) {
        self.enabled.store(true, Ordering::Release);
    }

    fn shard(&self, key: &[u8]) -> std::sync::MutexGuard<'_, Shard> {
        let mut h = self.hasher.build_hasher();
        h.write(key);
        let i = (h.finish() as usize) % SHARDS;
        self.shards[i].lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The cutover switched the clients: from now on their writes go to the target and
    /// mark nothing.
    pub fn switched(&self) {
        self.switched.store(true, Ordering::Release);
    }

    /// Whether the cutover switched the clients.
    pub fn is_switched(&self) -> bool {
        self.switched.load(Ordering::Acquire)
    }

    fn marking(&self) -> bool {
        self.enabled() && !self.switched.load(Ordering::Acquire)
    }

    /// A write on `key` in `db` has run (its reply passed the proxy).
    pub fn mark(&self, db: u32, key: &[u8]) {
        if !self.marking() {
            return;
        }
        let added = {
            let mut s = self.shard(key);
            match s.get_mut(key) {
                Some(dbs) => dbs.add(db),
                None => {
                    s.insert(key.into(), Dbs::One(db));
                    true
                }
            }
        };
        if added {
            let n = self.keys.fetch_add(1, Ordering::Relaxed) + 1;
            self.key_bytes
                .fetch_add(key.len() as u64, Ordering::Relaxed);
            if n == 1 {
                self.wake.notify_one();
            }
            if n > self.max_keys {
                self.overflow();
            }
        }
    }

    /// Too many marked keys: drop them all, copy everything again instead.
    fn overflow(&self) {
        if self.rescan.swap(true, Ordering::AcqRel) {
            return;
        }
        self.overflows.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            max_keys = self.max_keys,
            "the dirty set is full (sync.scan_max_dirty_keys): every key is copied again instead"
        );
        for s in &self.shards {
            s.lock().unwrap_or_else(|p| p.into_inner()).clear();
        }
        self.keys.store(0, Ordering::Relaxed);
        self.key_bytes.store(0, Ordering::Relaxed);
        self.wake.notify_one();
    }

    /// The copier is about to read `key` of `db`: its mark goes first.
    pub fn clear(&self, db: u32, key: &[u8]) {
        let mut s = self.shard(key);
        let Some(dbs) = s.get_mut(key) else {
            return;
        };
        let (removed, empty) = dbs.remove(db);
        if empty {
            s.remove(key);
        }
        drop(s);
        if removed {
            sub(&self.keys, 1);
            sub(&self.key_bytes, key.len() as u64);
        }
    }

    /// Takes (unmarks) up to `max` marked keys into `out`. The copier reads each after this.
    pub fn take(&self, max: usize, out: &mut Vec<(u32, Bytes)>) {
        let mut taken = 0u64;
        let mut bytes = 0u64;
        for shard in &self.shards {
            if out.len() >= max {
                break;
            }
            let mut s = shard.lock().unwrap_or_else(|p| p.into_inner());
            if s.is_empty() {
                continue;
            }
            let room = max - out.len();
            let picked: Vec<(Box<[u8]>, Dbs)> = if s.len() <= room {
                std::mem::take(&mut *s).into_iter().collect()
            } else {
                let keys: Vec<Box<[u8]>> = s.keys().take(room).cloned().collect();
                keys.into_iter()
                    .filter_map(|k| s.remove_entry(&k))
                    .collect()
            };
            drop(s);
            for (k, dbs) in picked {
                let key = Bytes::from(Vec::from(k));
                dbs.each(|d| {
                    taken += 1;
                    bytes += key.len() as u64;
                    out.push((d, key.clone()));
                });
            }
        }
        sub(&self.keys, taken);
        sub(&self.key_bytes, bytes);
    }

    /// Keys marked and not yet taken.
    pub fn dirty_keys(&self) -> u64 {
        self.keys.load(Ordering::Relaxed)
    }

    /// Their names' bytes (the values' sizes are not known until they are read).
    pub fn dirty_key_bytes(&self) -> u64 {
        self.key_bytes.load(Ordering::Relaxed)
    }

    /// Asks for every key to be copied again (changes may have been missed).
    pub fn rescan_all(&self) {
        if self.marking() {
            self.rescan.store(true, Ordering::Release);
            self.wake.notify_one();
        }
    }

    /// Takes the "copy everything again" flag.
    pub fn take_rescan(&self) -> bool {
        self.rescan.swap(false, Ordering::AcqRel)
    }

    /// Whether a rescan is owed.
    pub fn rescan_owed(&self) -> bool {
        self.rescan.load(Ordering::Acquire)
    }

    /// FLUSHDB, FLUSHALL or SWAPDB ran on the source through the proxy.
    pub fn barrier(&self, b: Barrier) {
        if !self.marking() {
            return;
        }
        self.barriers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(b);
        self.wake.notify_one();
    }

    /// The barriers not yet applied, in order.
    pub fn take_barriers(&self) -> Vec<Barrier> {
        std::mem::take(&mut *self.barriers.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// The cutover's last copy: answered with the stream offset that covers every key
    /// marked before the call, once the copier has emitted them. The caller holds the
    /// writes (gate, drain) so the set can only shrink meanwhile.
    pub fn fence(&self) -> oneshot::Receiver<i64> {
        let (tx, rx) = oneshot::channel();
        self.fences
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(tx);
        self.wake.notify_one();
        rx
    }

    /// Whether a fence is waiting.
    pub fn fence_wanted(&self) -> bool {
        !self
            .fences
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty()
    }

    /// Answers the waiting fences with `offset`.
    pub fn answer_fences(&self, offset: i64) {
        for tx in std::mem::take(&mut *self.fences.lock().unwrap_or_else(|p| p.into_inner())) {
            let _ = tx.send(offset);
        }
    }

    /// Waits until something may be there to do (or `max` passes).
    pub async fn wait(&self, max: std::time::Duration) {
        let _ = tokio::time::timeout(max, self.wake.notified()).await;
    }
}

/// Subtracts without wrapping (an overflow resets the counts while others still mark).
fn sub(c: &AtomicU64, n: u64) {
    let _ = c.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
        Some(v.saturating_sub(n))
    });
}

#[cfg(test)]
mod tests;
