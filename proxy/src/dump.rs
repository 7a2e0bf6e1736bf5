//! `cutover dump`: an RDB of a live Redis taken over the replication link (what
//! `redis-cli --rdb` does), with the source's replication id and offset inside, so the
//! file can seed a far target (`cutover run --seed`). For a Redis Cluster source, one file
//! per master: `<stem>.<host>-<port>.<ext>`.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::Args;

#[derive(Debug, Args)]
pub struct DumpArgs {
    /// The Redis to dump: redis://[user:pass@]host:port or rediss://.
    #[arg(long)]
    pub source: String,
    /// The RDB file to write.
    pub file: PathBuf,
    /// Extra CA certificates (PEM) for a rediss:// source.
    #[arg(long)]
    pub tls_ca_file: Option<PathBuf>,
    /// Log level or tracing filter (RUST_LOG wins).
    #[arg(long, default_value = "info")]
    pub log_level: String,
    /// How to read it: auto (over the replication link, else by SCAN + DUMP when the
    /// source refuses replication), psync, or scan.
    #[arg(long, default_value = "auto", value_parser = ["auto", "psync", "scan"])]
    pub source_mode: String,
    /// SCAN dump: keys read per second at most (0: no limit).
    #[arg(long, default_value_t = 0)]
    pub scan_max_ops: u64,
}

pub async fn run(args: DumpArgs) -> anyhow::Result<Vec<sync::sink::rdb_file::Dumped>> {
    let url = cluster::RedisUrl::parse(&args.source).context("--source")?;
    let seed = cluster::Connector::new(
        url,
        args.tls_ca_file.as_deref(),
        std::time::Duration::from_secs(5),
    )
    .context("--source")?;
    let mut conn = seed
        .connect(&cluster::SessionSetup::default())
        .await
        .context("connecting to the source")?;
    let progress = Arc::new(AtomicU64::new(0));
    let mut out = Vec::new();
    if !sync::sink::is_cluster(&mut conn).await? {
        let scan = || async {
            let seed = Arc::new(seed.clone());
            sync::sink::rdb_file::dump_scan(&seed, &args.file, &progress, args.scan_max_ops).await
        };
        let dumped = match args.source_mode.as_str() {
            "scan" => scan().await?,
            "psync" => sync::sink::rdb_file::dump(&seed, &args.file, &progress).await?,
            _ => match sync::sink::rdb_file::dump(&seed, &args.file, &progress).await {
                Err(sync::SyncError::Forbidden(why)) => {
                    tracing::warn!(refusal = %why, "the source refuses replication: dumping by SCAN + DUMP instead");
                    scan().await?
                }
                r => r?,
            },
        };
        out.push(dumped);
        return Ok(out);
    }
    if args.source_mode == "scan" {
        bail!("--source-mode scan dumps a standalone source; the source is a Redis Cluster");
    }
    let origin = cluster::slots::NodeAddr {
        host: seed.url().host.clone(),
        port: seed.url().port,
    };
    let map = cluster::slots::SlotMap::fetch(&mut conn, &origin)
        .await
        .context("reading the source cluster's slot map")?;
    let masters = map.masters();
    if masters.is_empty() {
        bail!("the source cluster has no master serving slots");
    }
    for m in &masters {
        let node = seed.for_node(&m.host, m.port).context("a source master")?;
        let path = per_master(&args.file, &m.host, m.port);
        tracing::info!(master = %m, file = %path.display(), "dumping");
        out.push(sync::sink::rdb_file::dump(&node, &path, &progress).await?);
    }
    Ok(out)
}

/// `dir/dump.rdb` -> `dir/dump.<host>-<port>.rdb`.
fn per_master(file: &Path, host: &str, port: u16) -> PathBuf {
    let stem = file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "dump".into());
    let ext = file
        .extension()
        .map(|e| format!(".{}", e.to_string_lossy()))
        .unwrap_or_default();
    file.with_file_name(format!("{stem}.{host}-{port}{ext}"))
}
