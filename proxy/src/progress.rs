//! The syncer's figures for people and for Prometheus: a progress bar for the full load
//! (bytes, keys/s, ETA) when stderr is a terminal (off a terminal the syncer's own log
//! lines report progress), and the STATUS sync fields published as gauges every second.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sync::{SyncState, SyncStatus};

/// Publishes the sync fields of STATUS as Prometheus gauges, once a second.
pub fn spawn_gauges(status: Arc<SyncStatus>) {
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
        loop {
            state.set(status.state() as u8 as f64);
            source.set(status.source_offset() as f64);
            applied.set(status.applied() as f64);
            lag_bytes.set(status.lag_bytes() as f64);
            lag_ms.set(status.lag_ms() as f64);
            rdb.set(SyncStatus::get(&status.rdb_bytes) as f64);
            rdb_loaded.set(SyncStatus::get(&status.rdb_bytes_loaded) as f64);
            keys.set(SyncStatus::get(&status.keys_loaded) as f64);
            full.set(SyncStatus::get(&status.full_syncs) as f64);
            partial.set(SyncStatus::get(&status.partial_syncs) as f64);
            spool.set(SyncStatus::get(&status.spool_bytes) as f64);
            after_fence.set(SyncStatus::get(&status.writes_after_fence) as f64);
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
}

/// Draws the bar whenever a full load runs. Returns at once when stderr is not a terminal.
pub fn spawn(status: Arc<SyncStatus>) {
    if !std::io::stderr().is_terminal() {
        return;
    }
    tokio::spawn(async move {
        let mut bar: Option<ProgressBar> = None;
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let loading = status.state() == SyncState::FullSync;
            match (&bar, loading) {
                (None, true) => {
                    let total = SyncStatus::get(&status.rdb_bytes);
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
                    b.set_position(SyncStatus::get(&status.rdb_bytes_loaded));
                    let keys = SyncStatus::get(&status.keys_loaded);
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
