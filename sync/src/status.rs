//! What the syncer reports (STATUS fields and metrics). Atomics written by the syncer,
//! read by the admin listener at any time.

use std::sync::atomic::{AtomicI64, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum SyncState {
    Connecting = 0,
    FullSync = 1,
    Streaming = 2,
    Stopped = 3,
    Error = 4,
}

impl SyncState {
    pub fn as_str(self) -> &'static str {
        match self {
            SyncState::Connecting => "connecting",
            SyncState::FullSync => "full_sync",
            SyncState::Streaming => "streaming",
            SyncState::Stopped => "stopped",
            SyncState::Error => "error",
        }
    }
    fn from_u8(v: u8) -> SyncState {
        match v {
            1 => SyncState::FullSync,
            2 => SyncState::Streaming,
            3 => SyncState::Stopped,
            4 => SyncState::Error,
            _ => SyncState::Connecting,
        }
    }
}

#[derive(Debug)]
pub struct SyncStatus {
    state: AtomicU8,
    /// The source's `master_repl_offset`, polled.
    pub source_offset: AtomicI64,
    /// End of the last command (or EXEC) the target confirmed.
    pub applied_offset: AtomicI64,
    /// End of what has arrived from the source's stream (applied or not).
    pub received_offset: AtomicI64,
    /// The cutover's fence: nothing past this offset is applied (-1: none).
    pub fence_offset: AtomicI64,
    /// Commands other than PING/REPLCONF the source sent past the fence (they would be
    /// lost: reported and logged, never applied over the target's new writes).
    pub writes_after_fence: AtomicU64,
    pub rdb_bytes: AtomicU64,
    pub rdb_bytes_loaded: AtomicU64,
    pub keys_loaded: Arc<AtomicU64>,
    /// Keys of the snapshot whose TTL had passed (the target does not keep them).
    pub keys_expired: AtomicU64,
    pub full_syncs: AtomicU64,
    pub partial_syncs: AtomicU64,
    pub spool_bytes: AtomicU64,
    pub commands_applied: AtomicU64,
    /// Commands of the stream handed to the target (SELECT included; MULTI/EXEC, PING
    /// and the like not).
    pub stream_commands: AtomicU64,
    /// Cluster targets: source transactions applied as one transaction per slot.
    pub split_transactions: AtomicU64,
    /// Milliseconds since `epoch` when the applied offset last reached the source offset.
    caught_up_at_ms: AtomicU64,
    epoch: Instant,
    last_error: Mutex<String>,
}

impl Default for SyncStatus {
    fn default() -> Self {
        SyncStatus {
            state: AtomicU8::new(SyncState::Connecting as u8),
            source_offset: AtomicI64::new(0),
            applied_offset: AtomicI64::new(0),
            received_offset: AtomicI64::new(0),
            fence_offset: AtomicI64::new(-1),
            writes_after_fence: AtomicU64::new(0),
            rdb_bytes: AtomicU64::new(0),
            rdb_bytes_loaded: AtomicU64::new(0),
            keys_loaded: Arc::new(AtomicU64::new(0)),
            keys_expired: AtomicU64::new(0),
            full_syncs: AtomicU64::new(0),
            partial_syncs: AtomicU64::new(0),
            spool_bytes: AtomicU64::new(0),
            commands_applied: AtomicU64::new(0),
            stream_commands: AtomicU64::new(0),
            split_transactions: AtomicU64::new(0),
            caught_up_at_ms: AtomicU64::new(0),
            epoch: Instant::now(),
            last_error: Mutex::new(String::new()),
        }
    }
}

impl SyncStatus {
    pub fn state(&self) -> SyncState {
        SyncState::from_u8(self.state.load(Ordering::Relaxed))
    }
    pub fn set_state(&self, s: SyncState) {
        self.state.store(s as u8, Ordering::Relaxed);
    }
    pub fn set_error(&self, msg: String) {
        if let Ok(mut e) = self.last_error.lock() {
            *e = msg;
        }
    }
    pub fn last_error(&self) -> String {
        self.last_error
            .lock()
            .map(|e| e.clone())
            .unwrap_or_default()
    }
    /// Stops applying at `offset` (the cutover's fence).
    pub fn set_fence(&self, offset: i64) {
        self.fence_offset.store(offset, Ordering::Release);
    }
    pub fn fence(&self) -> Option<i64> {
        let f = self.fence_offset.load(Ordering::Acquire);
        (f >= 0).then_some(f)
    }
    pub fn applied(&self) -> i64 {
        self.applied_offset.load(Ordering::Acquire)
    }
    pub fn set_applied(&self, off: i64) {
        self.applied_offset.store(off, Ordering::Release);
        self.note_progress();
    }
    /// What has arrived from the stream: the source is at least there, whatever the last
    /// poll of its offset said.
    pub fn set_received(&self, off: i64) {
        self.received_offset.store(off, Ordering::Relaxed);
        self.note_progress();
    }
    /// The source's offset as best known: the last poll, or what has arrived if newer.
    pub fn source_offset(&self) -> i64 {
        self.source_offset
            .load(Ordering::Relaxed)
            .max(self.received_offset.load(Ordering::Relaxed))
    }
    pub fn set_source_offset(&self, off: i64) {
        self.source_offset.store(off, Ordering::Relaxed);
        self.note_progress();
    }
    fn note_progress(&self) {
        if self.lag_bytes() == 0 && self.state() == SyncState::Streaming {
            self.caught_up_at_ms
                .store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
        }
    }
    /// Source offset minus applied offset (0 when not streaming yet is NOT claimed: the
    /// figure is only meaningful while streaming).
    pub fn lag_bytes(&self) -> i64 {
        (self.source_offset() - self.applied()).max(0)
    }
    /// Milliseconds since the target last caught up with the source (0 when caught up).
    pub fn lag_ms(&self) -> u64 {
        if self.state() == SyncState::Streaming && self.lag_bytes() == 0 {
            return 0;
        }
        let now = self.epoch.elapsed().as_millis() as u64;
        now.saturating_sub(self.caught_up_at_ms.load(Ordering::Relaxed))
    }
    /// The keys-loaded counter, for the parser thread.
    pub fn keys_loaded_handle(&self) -> Arc<AtomicU64> {
        self.keys_loaded.clone()
    }
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}
