//! Counters the admin STATUS reports. Plain atomics: sessions add to them once per batch
//! of work, not once per command.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

#[derive(Debug)]
pub struct Stats {
    pub started: Instant,
    pub clients: AtomicU64,
    pub connections_total: AtomicU64,
    pub rejected_connections: AtomicU64,
    pub commands_total: AtomicU64,
    pub errors_total: AtomicU64,
    pub dedicated_connections: AtomicU64,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            started: Instant::now(),
            clients: AtomicU64::new(0),
            connections_total: AtomicU64::new(0),
            rejected_connections: AtomicU64::new(0),
            commands_total: AtomicU64::new(0),
            errors_total: AtomicU64::new(0),
            dedicated_connections: AtomicU64::new(0),
        }
    }
}

impl Stats {
    pub fn add(counter: &AtomicU64, n: u64) {
        if n != 0 {
            counter.fetch_add(n, Ordering::Relaxed);
        }
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}
