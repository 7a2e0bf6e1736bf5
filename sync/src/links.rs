//! The replication links the proxy runs, seen as one: a standalone source has one, a
//! Redis Cluster source one per master ([`crate::cluster_source`]).
//!
//! Why: STATUS, the metrics and CUTOVER must see every link (each with its own offsets,
//! state and lag) and also the whole, with figures that mean what they meant for a single
//! link, so existing tools keep working: offsets and lag are sums, `lag_ms` the worst,
//! the state the least advanced (an error anywhere, or a change of the source's topology,
//! is an error of the whole).

use std::sync::{Arc, Mutex};

use cluster::Connector;

use crate::status::{SyncState, SyncStatus};

/// One replication link.
#[derive(Debug)]
pub struct LinkInfo {
    /// The source node it replicates from (`host:port`).
    pub addr: String,
    /// Its slots (empty for a standalone source: everything).
    pub ranges: Vec<(u16, u16)>,
    /// Reaches its source node (the cutover fences it).
    pub source: Arc<Connector>,
    pub status: Arc<SyncStatus>,
}

/// Every link, and what went wrong with the set as a whole.
#[derive(Debug)]
pub struct SyncSet {
    pub links: Vec<LinkInfo>,
    /// The SCAN copy's tracker (source_mode scan or auto): the proxy marks the keys
    /// written; the copy is in use once it is enabled.
    pub tracker: Option<Arc<crate::tracking::Tracker>>,
    /// Why the whole sync stopped (the source's topology changed...): an error state.
    error: Mutex<Option<String>>,
}

impl SyncSet {
    pub fn new(links: Vec<LinkInfo>) -> SyncSet {
        SyncSet {
            links,
            tracker: None,
            error: Mutex::new(None),
        }
    }

    /// A set of one link (a standalone source).
    pub fn single(addr: String, source: Arc<Connector>, status: Arc<SyncStatus>) -> SyncSet {
        SyncSet::new(vec![LinkInfo {
            addr,
            ranges: Vec::new(),
            source,
            status,
        }])
    }

    /// With the SCAN copy's tracker.
    pub fn with_tracker(mut self, t: Option<Arc<crate::tracking::Tracker>>) -> SyncSet {
        self.tracker = t;
        self
    }

    /// The tracker, when the SCAN copy is the way data moves.
    pub fn scanning(&self) -> Option<&Arc<crate::tracking::Tracker>> {
        self.tracker.as_ref().filter(|t| t.enabled())
    }

    /// Whether the links share the target (a cluster source).
    pub fn is_multi(&self) -> bool {
        self.links.iter().any(|l| !l.ranges.is_empty())
    }

    /// Stops the whole with `why` (kept: the first reason wins).
    pub fn fail(&self, why: String) {
        let mut e = self.error.lock().unwrap_or_else(|p| p.into_inner());
        if e.is_none() {
            *e = Some(why);
        }
    }

    /// The set's own error, if any.
    pub fn set_error(&self) -> Option<String> {
        self.error.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The least advanced state: error (anywhere) < stopped < connecting < full sync <
    /// streaming.
    pub fn state(&self) -> SyncState {
        if self.set_error().is_some() {
            return SyncState::Error;
        }
        let rank = |s: SyncState| match s {
            SyncState::Error => 0,
            SyncState::Stopped => 1,
            SyncState::Connecting => 2,
            SyncState::FullSync => 3,
            SyncState::Streaming => 4,
        };
        self.links
            .iter()
            .map(|l| l.status.state())
            .min_by_key(|s| rank(*s))
            .unwrap_or(SyncState::Stopped)
    }

    fn sum(&self, f: impl Fn(&SyncStatus) -> i64) -> i64 {
        self.links.iter().map(|l| f(&l.status)).sum()
    }

    pub fn applied(&self) -> i64 {
        self.sum(SyncStatus::applied)
    }

    pub fn source_offset(&self) -> i64 {
        self.sum(SyncStatus::source_offset)
    }

    pub fn lag_bytes(&self) -> i64 {
        self.sum(SyncStatus::lag_bytes)
    }

    /// The worst link's.
    pub fn lag_ms(&self) -> u64 {
        self.links
            .iter()
            .map(|l| l.status.lag_ms())
            .max()
            .unwrap_or(0)
    }

    /// A counter summed over the links.
    pub fn total(&self, f: impl Fn(&SyncStatus) -> &std::sync::atomic::AtomicU64) -> u64 {
        self.links
            .iter()
            .map(|l| SyncStatus::get(f(&l.status)))
            .sum()
    }

    /// The set's error, else the first link's (named when there are several).
    pub fn last_error(&self) -> String {
        if let Some(e) = self.set_error() {
            return e;
        }
        let multi = self.links.len() > 1;
        self.links
            .iter()
            .map(|l| (l, l.status.last_error()))
            .filter(|(_, e)| !e.is_empty())
            // A link in error first: it is what stops the whole.
            .min_by_key(|(l, _)| l.status.state() != SyncState::Error)
            .map(|(l, e)| {
                if multi {
                    format!("link {}: {e}", l.addr)
                } else {
                    e
                }
            })
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(port: u16, state: SyncState, applied: i64, source: i64) -> LinkInfo {
        let st = Arc::new(SyncStatus::default());
        st.set_state(state);
        st.set_applied(applied);
        st.set_source_offset(source);
        let url = cluster::RedisUrl::parse(&format!("redis://127.0.0.1:{port}")).unwrap();
        LinkInfo {
            addr: format!("127.0.0.1:{port}"),
            ranges: vec![(port, port)],
            source: Arc::new(Connector::new(url, None, std::time::Duration::from_secs(1)).unwrap()),
            status: st,
        }
    }

    #[test]
    fn the_whole_is_the_sum_and_the_least_advanced() {
        let set = SyncSet::new(vec![
            link(1, SyncState::Streaming, 100, 150),
            link(2, SyncState::FullSync, 10, 10),
        ]);
        assert!(set.is_multi());
        assert_eq!(set.applied(), 110);
        assert_eq!(set.source_offset(), 160);
        assert_eq!(set.lag_bytes(), 50);
        assert_eq!(set.state(), SyncState::FullSync);
        set.links[1].status.set_state(SyncState::Streaming);
        assert_eq!(set.state(), SyncState::Streaming);
        set.links[0].status.set_error("boom".into());
        set.links[0].status.set_state(SyncState::Error);
        assert_eq!(set.state(), SyncState::Error);
        assert_eq!(set.last_error(), "link 127.0.0.1:1: boom");
        set.fail("topology changed".into());
        set.fail("later".into());
        assert_eq!(set.last_error(), "topology changed");
    }
}
