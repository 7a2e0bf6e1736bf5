//! `verify`: proves the target holds what the source holds ([`sync::verify`] compares).
//!
//! - `cutover verify --source URL --target URL ...`: one run, a report on stdout (counts,
//!   up to 20 key names per kind of difference, names only), the full list in a JSON file
//!   if asked; exit status 0 equal, 1 different, 2 could not run.
//! - Inside `cutover run`: admin `VERIFY [SAMPLE n] [FULL] [ROUNDS n]` runs one in the
//!   background; a difference is checked again once the target has applied past the
//!   source's offset at the time (replication) or once nothing is dirty (SCAN copy), so
//!   only real differences are reported. STATUS shows it; `CUTOVER VERIFIED` (or
//!   `cutover.require_verify`) switches only after a clean one since the last full load.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use sync::verify::{Difference, Options, Progress, Report, Sides};

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The source: redis://[user:pass@]host:port (one server or any node of a cluster), or
    /// an RDB file (to check a restore from it).
    #[arg(long)]
    pub source: String,
    /// The target (one server or any node of a cluster).
    #[arg(long)]
    pub target: String,
    /// Every key, in both directions (the default).
    #[arg(long, conflicts_with = "sample")]
    pub full: bool,
    /// Only this many random keys of the source (no pass for extra keys on the target).
    #[arg(long)]
    pub sample: Option<u64>,
    /// Times a difference is checked again (1 s apart) before it is reported.
    #[arg(long, default_value_t = 3)]
    pub rounds: u32,
    /// Expiries further apart than this are a difference.
    #[arg(long, default_value_t = 1000)]
    pub ttl_tolerance_ms: i64,
    /// Only keys matching this glob pattern.
    #[arg(long = "match")]
    pub pattern: Option<String>,
    /// Only this db.
    #[arg(long)]
    pub db: Option<u32>,
    /// Write every difference to this JSON file.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Keys read per second per side at most (0: no limit).
    #[arg(long, default_value_t = 0)]
    pub max_ops: u64,
    /// Extra CA certificates (PEM) for rediss:// URLs.
    #[arg(long)]
    pub tls_ca_file: Option<PathBuf>,
    /// Log level or tracing filter (RUST_LOG wins).
    #[arg(long, default_value = "warn")]
    pub log_level: String,
}

/// Most key names printed per kind of difference.
const SHOWN: usize = 20;

async fn side(
    url: &str,
    ca: Option<&std::path::Path>,
    what: &str,
) -> anyhow::Result<(Arc<cluster::Connector>, bool)> {
    let url = cluster::RedisUrl::parse(url).with_context(|| format!("--{what}"))?;
    let c = cluster::Connector::new(url, ca, Duration::from_secs(5))
        .with_context(|| format!("--{what}"))?;
    let mut conn = c
        .connect(&cluster::SessionSetup::default())
        .await
        .with_context(|| format!("connecting to the {what}"))?;
    let is_cluster = sync::sink::is_cluster(&mut conn).await?;
    Ok((Arc::new(c), is_cluster))
}

/// `cutover verify`: runs the comparison and prints the report. The report, or why it
/// could not run.
pub async fn run_cli(args: VerifyArgs) -> anyhow::Result<Report> {
    let file = !args.source.starts_with("redis://") && !args.source.starts_with("rediss://");
    let (target, target_cluster) =
        side(&args.target, args.tls_ca_file.as_deref(), "target").await?;
    let opts = Options {
        sample: args.sample,
        ttl_tolerance_ms: args.ttl_tolerance_ms,
        pattern: args
            .pattern
            .as_ref()
            .map(|p| bytes::Bytes::from(p.clone().into_bytes())),
        db: args.db,
        rounds: args.rounds,
        max_ops: args.max_ops,
    };
    let progress = Arc::new(Progress::default());
    let bar = spawn_bar(progress.clone());
    let report = if file {
        // An RDB file: what a restore from it must have made of the target.
        let path = PathBuf::from(&args.source);
        anyhow::ensure!(
            path.is_file(),
            "--source {}: neither a redis:// URL nor a file",
            args.source
        );
        sync::verify::file::run(&path, &target, target_cluster, &opts, &progress).await
    } else {
        let (source, source_cluster) =
            side(&args.source, args.tls_ca_file.as_deref(), "source").await?;
        let sides = Sides {
            source,
            source_cluster,
            target,
            target_cluster,
        };
        sync::verify::run(&sides, &opts, &progress, || {
            tokio::time::sleep(Duration::from_secs(1))
        })
        .await
    };
    if let Some(b) = bar {
        b.abort();
        eprint!("\r\x1b[2K");
    }
    let report = report?;
    print_report(&report);
    if let Some(path) = &args.report {
        write_json(path, &report).with_context(|| format!("writing {}", path.display()))?;
        println!("report: {}", path.display());
    }
    Ok(report)
}

/// A line of progress on stderr, when it is a terminal.
fn spawn_bar(p: Arc<Progress>) -> Option<tokio::task::JoinHandle<()>> {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return None;
    }
    Some(tokio::spawn(async move {
        let started = Instant::now();
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let checked = p.checked.load(Ordering::Relaxed);
            let total = p.total.load(Ordering::Relaxed).max(1);
            let rate = checked as f64 / started.elapsed().as_secs_f64().max(0.001);
            eprint!(
                "\r\x1b[2Kverify {checked}/{total} keys ({:.0}%), {:.0} keys/s, {} to check again",
                100.0 * checked as f64 / total as f64,
                rate,
                p.candidates.load(Ordering::Relaxed)
            );
        }
    }))
}

/// A key name for people: printable bytes as they are, others escaped.
pub fn printable(key: &[u8]) -> String {
    let mut s = String::with_capacity(key.len());
    for &b in key.iter().take(200) {
        if b.is_ascii_graphic() || b == b' ' {
            s.push(b as char);
        } else {
            s.push_str(&format!("\\x{b:02x}"));
        }
    }
    if key.len() > 200 {
        s.push_str("...");
    }
    s
}

fn print_report(r: &Report) {
    println!(
        "verified {} keys in {:.2} s: {}",
        r.checked,
        r.secs,
        if r.differences.is_empty() {
            "the target holds what the source holds".to_string()
        } else {
            format!("{} differences", r.differences.len())
        }
    );
    if r.settled > 0 {
        println!(
            "({} differences seen at first were writes on their way: gone when checked again)",
            r.settled
        );
    }
    for kind in Difference::ALL {
        let n = r.count(kind);
        if n == 0 {
            continue;
        }
        println!("{}: {n}", kind.as_str());
        for f in r.differences.iter().filter(|f| f.kind == kind).take(SHOWN) {
            println!("  db{} {} ({})", f.db, printable(&f.key), f.detail);
        }
        if n > SHOWN {
            println!(
                "  ... and {} more (--report FILE lists them all)",
                n - SHOWN
            );
        }
    }
}

/// A JSON string of arbitrary bytes (invalid UTF-8 escaped byte by byte as \u00XX).
fn json_str(out: &mut String, b: &[u8]) {
    out.push('"');
    for &c in b {
        match c {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(c as char),
            _ => out.push_str(&format!("\\u{c:04x}")),
        }
    }
    out.push('"');
}

fn write_json(path: &std::path::Path, r: &Report) -> std::io::Result<()> {
    let mut s = String::new();
    s.push_str(&format!(
        "{{\"checked\":{},\"seconds\":{:.3},\"settled\":{},\"equal\":{},\"counts\":{{",
        r.checked,
        r.secs,
        r.settled,
        r.differences.is_empty()
    ));
    for (i, k) in Difference::ALL.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&format!("\"{}\":{}", k.as_str(), r.count(*k)));
    }
    s.push_str("},\"differences\":[");
    for (i, f) in r.differences.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&format!(
            "{{\"kind\":\"{}\",\"db\":{},\"key\":",
            f.kind.as_str(),
            f.db
        ));
        json_str(&mut s, &f.key);
        s.push_str(",\"detail\":");
        json_str(&mut s, f.detail.as_bytes());
        s.push('}');
    }
    s.push_str("]}\n");
    let mut f = std::fs::File::create(path)?;
    f.write_all(s.as_bytes())?;
    f.sync_all()
}

/// The proxy's verify (admin VERIFY): one at a time, in the background.
#[derive(Debug, Default)]
pub struct VerifyState {
    /// 0 idle, 1 running, 2 done, 3 error.
    state: AtomicU8,
    pub progress: std::sync::Mutex<Arc<Progress>>,
    pub differences: AtomicU64,
    /// Unix seconds when the last one finished.
    pub finished_at: AtomicU64,
    /// The last one finished clean, started while streaming, after `full_syncs` full loads.
    clean: AtomicBool,
    full_syncs_at_start: AtomicU64,
    pub last_error: std::sync::Mutex<String>,
}

impl VerifyState {
    pub fn state(&self) -> &'static str {
        match self.state.load(Ordering::Relaxed) {
            1 => "running",
            2 => "done",
            3 => "error",
            _ => "idle",
        }
    }

    pub fn checked(&self) -> u64 {
        self.progress
            .lock()
            .map(|p| p.checked.load(Ordering::Relaxed))
            .unwrap_or(0)
    }

    /// Whether a clean verify finished since the sync last loaded everything.
    pub fn clean_now(&self, full_syncs: u64) -> bool {
        self.state.load(Ordering::Relaxed) == 2
            && self.clean.load(Ordering::Relaxed)
            && self.full_syncs_at_start.load(Ordering::Relaxed) == full_syncs
    }
}

/// Starts `VERIFY` in the background; refused while one runs or without a target.
pub fn start(sh: &Arc<crate::session::Shared>, opts: Options) -> Result<(), String> {
    let Some(set) = sh.sync.clone() else {
        return Err("no target configured (--target)".into());
    };
    let Some(target) = sh.settings.target.clone() else {
        return Err("no target configured (--target)".into());
    };
    let v = &sh.verify;
    if v.state
        .compare_exchange(0, 1, Ordering::AcqRel, Ordering::Acquire)
        .or_else(|s| {
            if s == 1 {
                Err(s)
            } else {
                v.state
                    .compare_exchange(s, 1, Ordering::AcqRel, Ordering::Acquire)
            }
        })
        .is_err()
    {
        return Err("a VERIFY is already running".into());
    }
    let streaming = set.state() == sync::SyncState::Streaming;
    v.full_syncs_at_start
        .store(set.total(|s| &s.full_syncs), Ordering::Relaxed);
    let progress = Arc::new(Progress::default());
    if let Ok(mut p) = v.progress.lock() {
        *p = progress.clone();
    }
    let sh = sh.clone();
    tokio::spawn(async move {
        let r = async {
            let target_c = Arc::new(
                cluster::Connector::new(
                    target.url.clone(),
                    target.tls_ca_file.as_deref(),
                    sh.settings.connect_timeout,
                )
                .map_err(|e| e.to_string())?,
            );
            let mut conn = target_c
                .connect(&cluster::SessionSetup::default())
                .await
                .map_err(|e| e.to_string())?;
            let target_cluster = sync::sink::is_cluster(&mut conn)
                .await
                .map_err(|e| e.to_string())?;
            let sides = Sides {
                source: Arc::new(sh.source.connector().clone()),
                source_cluster: sh.source.cluster().is_some(),
                target: target_c,
                target_cluster,
            };
            let settle = || settle(set.clone());
            sync::verify::run(&sides, &opts, &progress, settle)
                .await
                .map_err(|e| e.to_string())
        }
        .await;
        let v = &sh.verify;
        v.finished_at.store(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            Ordering::Relaxed,
        );
        match r {
            Ok(report) => {
                let n = report.differences.len() as u64;
                v.differences.store(n, Ordering::Relaxed);
                v.clean.store(n == 0 && streaming, Ordering::Relaxed);
                if n == 0 {
                    tracing::info!(
                        keys = report.checked,
                        settled = report.settled,
                        secs = report.secs,
                        "VERIFY: the target holds what the source holds"
                    );
                } else {
                    for f in report.differences.iter().take(SHOWN) {
                        tracing::warn!(kind = f.kind.as_str(), db = f.db, key = %printable(&f.key), detail = %f.detail, "VERIFY: a difference");
                    }
                    tracing::warn!(
                        differences = n,
                        keys = report.checked,
                        "VERIFY found differences"
                    );
                }
                v.state.store(2, Ordering::Relaxed);
            }
            Err(e) => {
                tracing::warn!(error = %e, "VERIFY could not run");
                if let Ok(mut l) = v.last_error.lock() {
                    *l = e;
                }
                v.clean.store(false, Ordering::Relaxed);
                v.state.store(3, Ordering::Relaxed);
            }
        }
    });
    Ok(())
}

/// Before a difference is checked again: until the target has what the source had when it
/// was read (every link past its source's offset now; the SCAN copy: nothing dirty, nothing
/// unapplied), for 10 s at most.
async fn settle(set: Arc<sync::SyncSet>) {
    let deadline = Instant::now() + Duration::from_secs(10);
    if let Some(t) = set.scanning() {
        while (t.dirty_keys() > 0 || set.lag_bytes() > 0) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        return;
    }
    let mut want = Vec::with_capacity(set.links.len());
    for l in &set.links {
        let off = async {
            let mut c = l
                .source
                .connect(&cluster::SessionSetup::default())
                .await
                .ok()?;
            let r = c.request(&[&[b"INFO", b"replication"]]).await.ok()?;
            cluster::info::int_field(&String::from_utf8_lossy(&r[0]), "master_repl_offset")
        }
        .await;
        want.push(off.unwrap_or_else(|| l.status.source_offset()));
    }
    while Instant::now() < deadline
        && set
            .links
            .iter()
            .zip(&want)
            .any(|(l, &w)| l.status.applied() < w)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
