//! A progress bar for the full load (bytes, keys/s, ETA) when stderr is a terminal. Off a
//! terminal the syncer's own log lines report progress instead.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sync::{SyncState, SyncStatus};

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
