//! `cutover restore`: backup files into a live Redis (one server or a Redis Cluster). The
//! files are a source like the replication link ([`sync::source`]): an RDB file, a
//! single-file AOF (with or without an RDB preamble), or a Redis 7 multi-part AOF
//! directory. The same syncer applies them, with the same checkpoint on the target, so a
//! restore killed at any point and run again with the same arguments continues where the
//! target stands: no AOF command applied twice, no finished RDB loaded again.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sync::source::SourceSpec;
use sync::{SyncState, SyncStatus};
use tokio::sync::watch;

use crate::config::{Config, EndpointConfig};

/// Most bytes of commands in flight to the target during a restore.
const RESTORE_INFLIGHT: usize = 16 * 1024 * 1024;

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// An RDB file, an AOF file, or a multi-part AOF directory (or its manifest).
    pub input: PathBuf,
    /// The Redis to restore into: redis://[user:pass@]host:port[/db] or rediss://.
    #[arg(long)]
    pub target: String,
    /// Source db -> target db, e.g. `3=0,4=1` (dbs not listed keep their number).
    #[arg(long, value_delimiter = ',')]
    pub db_map: Vec<String>,
    /// When the target already holds keys: `refuse` (default) or `flush` it first.
    #[arg(long, default_value = "refuse")]
    pub target_not_empty: String,
    /// Point-in-time restore: stop the AOF at its first `#TS:` annotation later than this
    /// Unix time (seconds).
    #[arg(long)]
    pub until: Option<i64>,
    /// TOML configuration file for the `[sync]` settings (see config.example.toml).
    #[arg(long, short = 'c')]
    pub config: Option<PathBuf>,
    /// Extra CA certificates (PEM) for a rediss:// target.
    #[arg(long)]
    pub tls_ca_file: Option<PathBuf>,
    /// Log level or tracing filter (RUST_LOG wins).
    #[arg(long, default_value = "info")]
    pub log_level: String,
}

/// How long a restore waits on a target that keeps failing before it gives up.
const GIVE_UP: Duration = Duration::from_secs(30);

/// What a restore did, for the final report.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub keys: u64,
    /// Keys of the snapshot whose TTL had passed (not kept by the target; in `keys` too).
    pub expired: u64,
    pub commands: u64,
    pub secs: f64,
    pub resumed: bool,
}

pub async fn run(args: RestoreArgs) -> anyhow::Result<Report> {
    let mut cfg = match &args.config {
        Some(p) => Config::from_file(p)?,
        None => Config::default(),
    };
    let target = EndpointConfig {
        url: args.target.clone(),
        tls_ca_file: args.tls_ca_file.clone(),
    };
    // A restore reads no live source; the configuration's checks want one, and the
    // target's URL passes them (it is never used as a source).
    if cfg.source.is_none() {
        cfg.source = Some(target.clone());
    }
    cfg.target = Some(target);
    cfg.sync.target_not_empty = args.target_not_empty.clone();
    for m in &args.db_map {
        let Some((from, to)) = m.split_once('=') else {
            bail!("--db-map {m}: expected <source db>=<target db>, e.g. 3=0");
        };
        let to: u32 = to
            .trim()
            .parse()
            .with_context(|| format!("--db-map {m}: the target db is not a number"))?;
        cfg.sync.db_map.insert(from.trim().to_string(), to);
    }
    let origin = args
        .config
        .as_ref()
        .map_or("command line".to_string(), |p| p.display().to_string());
    let settings = cfg.validate(&origin)?;
    let Some(target) = settings.target.clone() else {
        bail!("--target is required");
    };
    // Opened once here so a bad input is refused before anything is touched.
    let opened = sync::source::aof::open(&args.input)?;
    let total = opened.files.len();
    drop(opened);

    let sy = &settings.sync;
    let sync_cfg = sync::SyncConfig {
        source: SourceSpec::Backup {
            path: args.input.clone(),
            until: args.until,
        },
        target: Arc::new(
            cluster::Connector::new(
                target.url.clone(),
                target.tls_ca_file.as_deref(),
                settings.connect_timeout,
            )
            .context("target")?,
        ),
        listening_port: 0,
        not_empty: sy.not_empty,
        on_full_resync: sy.on_full_resync,
        checkpoint_db: sy.checkpoint_db,
        forward_publish: sy.forward_publish,
        max_txn_bytes: sy.max_txn_bytes,
        // A file waits for the target: 16 MB in flight keep it busy. Measured on an AOF of
        // 1M SETs (144 MB): 1.31-1.35 s and 45 MB of RSS, against 1.55 s and 144 MB with
        // the live stream's 64 MB (which must absorb a source's bursts instead).
        max_inflight_bytes: sy.max_inflight_bytes.min(RESTORE_INFLIGHT),
        big_value_bytes: sy.big_value_bytes,
        spool_dir: sy.spool_dir.clone(),
        spool_max_bytes: sy.spool_max_bytes,
        db_map: sy.db_map.clone(),
        cross_slot: sy.cross_slot,
        scope: None,
        seed: None,
        scan_fallback: None,
    };
    tracing::info!(input = %args.input.display(), target = %target.url, bytes = total, "restore starting");
    let status = Arc::new(SyncStatus::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let started = Instant::now();
    let progress = tokio::spawn(show_progress(status.clone(), total));
    let syncer = sync::syncer::run(sync_cfg, status.clone(), stop_rx);
    tokio::pin!(syncer);
    // A target that keeps failing without progress for GIVE_UP ends the restore (a rerun
    // continues from its checkpoint); brief outages are ridden out.
    let watchdog = async {
        let mut stuck = 0;
        let mut last = (0, 0, 0);
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let now = (
                status.applied(),
                SyncStatus::get(&status.keys_loaded),
                SyncStatus::get(&status.rdb_bytes_loaded),
            );
            let failing =
                status.state() == SyncState::Connecting && !status.last_error().is_empty();
            stuck = if failing && now == last { stuck + 1 } else { 0 };
            last = now;
            if stuck >= GIVE_UP.as_secs() {
                return;
            }
        }
    };
    let mut gave_up = false;
    let interrupted = tokio::select! {
        _ = &mut syncer => false,
        _ = tokio::signal::ctrl_c() => {
            let _ = stop_tx.send(true);
            syncer.await;
            true
        }
        _ = watchdog => {
            let _ = stop_tx.send(true);
            syncer.await;
            gave_up = true;
            false
        }
    };
    if gave_up {
        bail!(
            "restore stopped: no progress for {} s ({}); run the same command again to continue from the target's checkpoint",
            GIVE_UP.as_secs(),
            status.last_error()
        );
    }
    progress.abort();
    let report = Report {
        keys: SyncStatus::get(&status.keys_loaded),
        expired: SyncStatus::get(&status.keys_expired),
        commands: SyncStatus::get(&status.stream_commands),
        secs: started.elapsed().as_secs_f64(),
        resumed: SyncStatus::get(&status.partial_syncs) > 0,
    };
    if status.state() == SyncState::Error {
        bail!("restore failed: {}", status.last_error());
    }
    if interrupted {
        bail!("interrupted; run the same command again to continue from the target's checkpoint");
    }
    Ok(report)
}

/// A bar over the input's bytes (keys, commands, ETA) in a terminal; log lines every 5 s
/// otherwise.
async fn show_progress(status: Arc<SyncStatus>, total: u64) {
    let position = |s: &SyncStatus| {
        SyncStatus::get(&s.rdb_bytes_loaded).max(
            s.received_offset
                .load(std::sync::atomic::Ordering::Relaxed)
                .max(0) as u64,
        )
    };
    if std::io::stderr().is_terminal() {
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        if let Ok(style) =
            ProgressStyle::with_template("restore [{bar:30}] {bytes}/{total_bytes} {msg} eta {eta}")
        {
            bar.set_style(style.progress_chars("=> "));
        }
        loop {
            bar.set_position(position(&status).min(total));
            bar.set_message(format!(
                "{} keys, {} commands",
                SyncStatus::get(&status.keys_loaded),
                SyncStatus::get(&status.stream_commands)
            ));
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    loop {
        tokio::time::sleep(Duration::from_secs(5)).await;
        tracing::info!(
            bytes = position(&status),
            total,
            keys = SyncStatus::get(&status.keys_loaded),
            commands = SyncStatus::get(&status.stream_commands),
            "restore progress"
        );
    }
}
