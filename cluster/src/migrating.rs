//! Slots seen migrating: a slot some client recently got `-ASK` or `-TRYAGAIN` for.
//!
//! Why: during a migration a command with several keys of one slot gets `-TRYAGAIN` when
//! some of its keys have moved and others not, and is resent after a backoff. Commands a
//! client sent after it are already on the wire and may run first, which reorders that
//! client's commands. A router holds the rest of a client's commands behind such a
//! command while its slot is known to be migrating (see `ClusterClient`), which costs a
//! round trip, so the knowledge has to be cheap to ask for and to forget: one flag read
//! on the hot path while nothing migrates, and the marks dropped [`HOLD_SECS`] after the
//! last one. The first `-TRYAGAIN` of a migration nobody had seen yet can still be
//! overtaken: a limit, not a guarantee.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Instant;

use crate::slots::SLOT_COUNT;

/// How long a mark holds without a new `-ASK` or `-TRYAGAIN` for its slot.
pub const HOLD_SECS: u32 = 10;

pub struct MigratingSlots {
    born: Instant,
    /// Any slot marked since the last [`expire`](Self::expire) that cleared everything.
    any: AtomicBool,
    /// Seconds since `born` of the latest mark, plus one (0: never).
    latest: AtomicU32,
    /// Per slot, as `latest`.
    marks: Box<[AtomicU32]>,
}

impl Default for MigratingSlots {
    fn default() -> Self {
        MigratingSlots {
            born: Instant::now(),
            any: AtomicBool::new(false),
            latest: AtomicU32::new(0),
            marks: (0..SLOT_COUNT).map(|_| AtomicU32::new(0)).collect(),
        }
    }
}

impl MigratingSlots {
    fn now(&self) -> u32 {
        u32::try_from(self.born.elapsed().as_secs())
            .unwrap_or(u32::MAX - 1)
            .saturating_add(1)
    }

    /// A node answered `-ASK` or `-TRYAGAIN` for `slot`.
    pub fn mark(&self, slot: u16) {
        let now = self.now();
        if let Some(m) = self.marks.get(usize::from(slot)) {
            m.store(now, Ordering::Relaxed);
            self.latest.store(now, Ordering::Relaxed);
            self.any.store(true, Ordering::Release);
        }
    }

    /// Whether `slot` was marked in the last [`HOLD_SECS`].
    pub fn is_migrating(&self, slot: u16) -> bool {
        if !self.any.load(Ordering::Acquire) {
            return false;
        }
        let m = self
            .marks
            .get(usize::from(slot))
            .map_or(0, |m| m.load(Ordering::Relaxed));
        m != 0 && self.now().saturating_sub(m) <= HOLD_SECS
    }

    /// Forgets every mark once the latest is older than [`HOLD_SECS`] (called now and
    /// then, off the hot path), so that [`is_migrating`](Self::is_migrating) is one flag
    /// read again.
    pub fn expire(&self) {
        if !self.any.load(Ordering::Acquire) {
            return;
        }
        if self
            .now()
            .saturating_sub(self.latest.load(Ordering::Relaxed))
            <= HOLD_SECS
        {
            return;
        }
        self.any.store(false, Ordering::Release);
        for m in self.marks.iter() {
            m.store(0, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests;
