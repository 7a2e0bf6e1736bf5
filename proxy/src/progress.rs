//! The syncer's figures for people and for Prometheus: a progress bar for the full load
//! (bytes, keys/s, ETA) when stderr is a terminal (off a terminal the syncer's own log
//! lines report progress), and the STATUS sync fields published as gauges every second:
//! the whole, and each link of a cluster source with a `link` label (its master).

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sync::{SyncSet, SyncState};

/// Publishes the sync fields of STATUS as Prometheus gauges, once a second.
pub fn spawn_gauges(set: Arc<SyncSet>) {
    use metrics::gauge;
    tokio::spawn(async move {
        let state = gauge!("cutover_sync_state");
        let source = gauge!("cutover_sync_source_offset");
        let applied = gauge!("cutover_sync_applied_offset");
        let lag_bytes = gauge!("cutover_sync_lag_bytes");
        let lag_ms = gauge!("cutover_sync_lag_ms");
        let rdb = gauge!("cutover_sync_rdb_bytes");
        let rdb_loaded = gauge!("cutover_sync_rdb_bytes_loaded");
        let keys = gauge!("cutover_sync_keys_loaded");
        let full = gauge!("cutover_sync_full_syncs");
        let partial = gauge!("cutover_sync_partial_syncs");
        let spool = gauge!("cutover_sync_spool_bytes");
        let after_fence = gauge!("cutover_source_writes_after_fence");
        // The SCAN copy's figures (0 until it runs).
        let scan_total = gauge!("cutover_scan_keys_total");
        let scan_copied = gauge!("cutover_scan_keys_copied");
        let scan_recopied = gauge!("cutover_scan_keys_recopied");
        let scan_rounds = gauge!("cutover_scan_rounds");
        let dirty = gauge!("cutover_scan_dirty_keys");
        let untracked = gauge!("cutover_scan_untracked_writes");
        // Per link only when there are several (a cluster source).
        let per_link: Vec<_> = if set.is_multi() {
            set.links
                .iter()
                .map(|l| {
                    let label = [("link", l.addr.clone())];
                    (
                        l.status.clone(),
                        gauge!("cutover_sync_link_state", &label),
                        gauge!("cutover_sync_link_source_offset", &label),
                        gauge!("cutover_sync_link_applied_offset", &label),
                        gauge!("cutover_sync_link_lag_bytes", &label),
                    )
                })
                .collect()
        } else {
            Vec::new()
        };
        loop {
            state.set(set.state() as u8 as f64);
            source.set(set.source_offset() as f64);
            applied.set(set.applied() as f64);
            lag_bytes.set(set.lag_bytes() as f64);
            lag_ms.set(set.lag_ms() as f64);
            rdb.set(set.total(|s| &s.rdb_bytes) as f64);
            rdb_loaded.set(set.total(|s| &s.rdb_bytes_loaded) as f64);
            keys.set(set.total(|s| &s.keys_loaded) as f64);
            full.set(set.total(|s| &s.full_syncs) as f64);
            partial.set(set.total(|s| &s.partial_syncs) as f64);
            spool.set(set.total(|s| &s.spool_bytes) as f64);
            after_fence.set(set.total(|s| &s.writes_after_fence) as f64);
            if let Some(t) = set.scanning() {
                use std::sync::atomic::Ordering::Relaxed;
                let p = &t.progress;
                scan_total.set(p.keys_total.load(Relaxed) as f64);
                scan_copied.set(p.keys_copied.load(Relaxed) as f64);
                scan_recopied.set(p.keys_recopied.load(Relaxed) as f64);
                scan_rounds.set(p.rounds.load(Relaxed) as f64);
                dirty.set(t.dirty_keys() as f64);
                untracked.set(t.untracked_writes.load(Relaxed) as f64);
            }
            for (st, state, source, applied, lag) in &per_link {
                state.set(st.state() as u8 as f64);
                source.set(st.source_offset() as f64);
                applied.set(st.applied() as f64);
                lag.set(st.lag_bytes() as f64);
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
}

/// Draws the bar whenever a full load runs. Returns at once when stderr is not a terminal.
pub fn spawn(set: Arc<SyncSet>) {
    if !std::io::stderr().is_terminal() {
        return;
    }
    tokio::spawn(async move {
        let mut bar: Option<ProgressBar> = None;
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let loading = set
                .links
                .iter()
                .any(|l| l.status.state() == SyncState::FullSync);
            match (&bar, loading) {
                (None, true) if set.scanning().is_some() => {
                    // The SCAN copy: keys read of those INFO keyspace counted.
                    let total = set.scanning().map_or(0, |t| {
                        t.progress
                            .keys_total
                            .load(std::sync::atomic::Ordering::Relaxed)
                    });
                    let b = ProgressBar::with_draw_target(
                        Some(total.max(1)),
                        ProgressDrawTarget::stderr(),
                    );
                    if let Ok(style) = ProgressStyle::with_template(
                        "SCAN copy [{bar:30}] {pos}/{len} keys {msg} eta {eta}",
                    ) {
                        b.set_style(style.progress_chars("=> "));
                    }
                    bar = Some(b);
                }
                (Some(b), true) if set.scanning().is_some() => {
                    if let Some(t) = set.scanning() {
                        let p = &t.progress;
                        use std::sync::atomic::Ordering::Relaxed;
                        b.set_position(p.keys_copied.load(Relaxed));
                        b.set_message(format!("{} dirty", t.dirty_keys()));
                    }
                }
                (None, true) => {
                    let total = set.total(|s| &s.rdb_bytes);
                    let b = if total > 0 {
                        ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr())
                    } else {
                        ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr())
                    };
                    let template = if total > 0 {
                        "full sync [{bar:30}] {bytes}/{total_bytes} {msg} eta {eta}"
                    } else {
                        "full sync {spinner} {bytes} {msg} (diskless: size unknown)"
                    };
                    if let Ok(style) = ProgressStyle::with_template(template) {
                        b.set_style(style.progress_chars("=> "));
                    }
                    bar = Some(b);
                }
                (Some(b), true) => {
                    b.set_position(set.total(|s| &s.rdb_bytes_loaded));
                    let keys = set.total(|s| &s.keys_loaded);
                    let secs = b.elapsed().as_secs_f64().max(0.001);
                    b.set_message(format!("{keys} keys, {:.0} keys/s", keys as f64 / secs));
                }
                (Some(b), false) => {
                    b.finish_and_clear();
                    bar = None;
                }
                (None, false) => {}
            }
        }
    });
}
