//! Sources: where the data comes from. Every source opens at a position (a checkpoint's,
//! or from the start), yields a snapshot where it has one (RDB bytes), then a command
//! stream whose offsets the checkpoint records, and is told what the target has applied.
//!
//! - [`link`]: a live Redis, as its replica (PSYNC, the RDB, the replication stream).
//! - [`aof`] over [`files`]: backup files (an RDB file, a single-file AOF with or without
//!   an RDB preamble, a Redis 7 multi-part AOF directory); the offsets are positions in
//!   the files' bytes.
//! - [`scan`]: a live Redis that refuses replication, copied by SCAN + DUMP, then the keys
//!   the proxy saw written ([`crate::tracking`]) copied again as a command stream.
//!
//! The syncer's loops ([`crate::syncer`], the sinks of [`crate::sink`],
//! [`crate::cluster_source`]) see only [`Source`]; a new kind of source is a new variant
//! here and a file of its own.

pub mod aof;
pub mod files;
pub mod link;
pub mod nodes;
pub mod scan;

use std::path::PathBuf;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use cluster::Connector;

pub use link::{ChunkReader, Link, Payload, PsyncReply};

use crate::SyncError;

/// What to open.
#[derive(Debug, Clone)]
pub enum SourceSpec {
    /// A Redis that grants replication.
    Link(Arc<Connector>),
    /// Backup files ([`aof::open`] tells which kind).
    Backup {
        path: PathBuf,
        /// Point in time: the AOF is applied up to its first `#TS:` annotation later
        /// than this Unix time (seconds).
        until: Option<i64>,
    },
    /// An RDB that carries the replication id and offset it was taken at (`cutover dump`,
    /// or a BGSAVE of a master with replicas): loaded as if the source had sent it, so the
    /// next run asks the source to continue from there (`cutover run --seed`).
    Seed(PathBuf),
    /// A live Redis that refuses replication: the SCAN copy.
    Scan(scan::ScanSpec),
}

impl SourceSpec {
    /// The live source's connector (None for files).
    pub fn connector(&self) -> Option<&Arc<Connector>> {
        match self {
            SourceSpec::Link(c) => Some(c),
            SourceSpec::Scan(s) => Some(&s.source),
            SourceSpec::Backup { .. } | SourceSpec::Seed(_) => None,
        }
    }

    /// What to call it in messages.
    pub fn describe(&self) -> String {
        match self {
            SourceSpec::Link(c) => c.addr().to_string(),
            SourceSpec::Scan(s) => s.source.addr().to_string(),
            SourceSpec::Backup { path, .. } | SourceSpec::Seed(path) => path.display().to_string(),
        }
    }
}

/// What the snapshot is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Snapshot {
    /// The replication link's RDB payload.
    Payload(Payload),
    /// Files that start with an RDB of unknown length (its reader finds its end); `total`
    /// is the size of all the files, for progress. `commands_follow`: an AOF's commands
    /// follow the RDB, and the stream's offsets are positions in the files; otherwise (a
    /// seed) the stream is the live source's, from the offset the RDB names.
    Preamble { total: u64, commands_follow: bool },
    /// The SCAN copy's first pass, as an RDB of unknown length.
    Scan,
    /// No snapshot: commands from the start.
    None,
}

/// The replication id and offset an RDB was taken at (its AUX fields `repl-id` and
/// `repl-offset`, written before any key).
pub fn seed_position(path: &std::path::Path) -> Result<(String, i64), SyncError> {
    use crate::rdb::{Event, RdbReader};
    let f = std::fs::File::open(path).map_err(|e| files::io_err(path, e))?;
    let mut rd = RdbReader::new(std::io::BufReader::new(f));
    let (mut id, mut offset) = (None, None);
    loop {
        let ev = rd
            .next_event()
            .map_err(|e| SyncError::File(format!("{}: {e}", path.display())))?;
        match ev {
            Some(Event::Header { .. }) => {}
            Some(Event::Aux { key, value }) => match &key[..] {
                b"repl-id" => id = Some(String::from_utf8_lossy(&value).into_owned()),
                b"repl-offset" => {
                    offset = std::str::from_utf8(&value)
                        .ok()
                        .and_then(|v| v.parse::<i64>().ok())
                }
                _ => {}
            },
            _ => break,
        }
    }
    match (id, offset) {
        (Some(id), Some(off)) if id.len() == 40 && off >= 0 => Ok((id, off)),
        _ => Err(SyncError::File(format!(
            "{}: this RDB does not say which replication history it belongs to (no repl-id/repl-offset AUX fields): a file from `cutover dump`, `redis-cli --rdb` or a master's BGSAVE while it had replicas can seed; this one can only be restored (`cutover restore`), and the sync then needs a full load",
            path.display()
        ))),
    }
}

/// Backup files being read.
#[derive(Debug)]
pub struct Backup {
    pub files: files::Files,
    rdb_first: bool,
    until: Option<i64>,
    /// False for a seed: only its RDB counts.
    commands_follow: bool,
}

impl Backup {
    /// Hands the files' bytes to the RDB's reader from the first byte, until it stops
    /// taking them (it stops at the RDB's end; what follows is the command stream, read
    /// again from there). `loaded` counts what it took.
    pub async fn feed(
        &mut self,
        tx: tokio::sync::mpsc::Sender<Bytes>,
        loaded: &std::sync::atomic::AtomicU64,
    ) -> Result<(), SyncError> {
        self.files.seek(0)?;
        loop {
            let n = self.files.fill()?;
            if n == 0 {
                return Ok(());
            }
            let chunk = self.files.rbuf.split().freeze();
            crate::status::SyncStatus::add(loaded, n as u64);
            if tx.send(chunk).await.is_err() {
                return Ok(());
            }
        }
    }
}

/// An opened source.
pub enum Source {
    Link(Link),
    Backup(Backup),
    Scan(scan::Scan),
}

impl Source {
    /// Opens `spec`. `resume`: the checkpoint's source id and offset. The answer says
    /// whether a snapshot follows (`Full`) or the stream continues from `resume`.
    pub async fn open(
        spec: &SourceSpec,
        listening_port: u16,
        resume: Option<(&str, i64)>,
    ) -> Result<(Source, PsyncReply), SyncError> {
        match spec {
            SourceSpec::Link(c) => {
                let (link, reply) = Link::open(c, listening_port, resume).await?;
                Ok((Source::Link(link), reply))
            }
            SourceSpec::Backup { path, until } => {
                let opened = aof::open(path)?;
                let mut b = Backup {
                    files: opened.files,
                    rdb_first: opened.rdb_first,
                    until: *until,
                    commands_follow: true,
                };
                let reply = match resume {
                    Some((id, offset)) if id == opened.id => {
                        b.files.seek(offset.max(0) as u64)?;
                        PsyncReply::Continue { replid: None }
                    }
                    _ => PsyncReply::Full {
                        replid: opened.id,
                        offset: 0,
                    },
                };
                Ok((Source::Backup(b), reply))
            }
            SourceSpec::Scan(spec) => {
                if resume.is_some() {
                    tracing::warn!(
                        "SCAN copy: cutover restarted, and writes made while it was down could not be tracked: everything is copied again"
                    );
                }
                let (scan, replid) = scan::Scan::open(spec).await?;
                Ok((Source::Scan(scan), PsyncReply::Full { replid, offset: 0 }))
            }
            SourceSpec::Seed(path) => {
                let opened = aof::open(path)?;
                if !opened.rdb_first {
                    return Err(SyncError::File(format!(
                        "{}: a seed must be an RDB file",
                        path.display()
                    )));
                }
                let (replid, offset) = seed_position(path)?;
                let b = Backup {
                    files: opened.files,
                    rdb_first: true,
                    until: None,
                    commands_follow: false,
                };
                Ok((Source::Backup(b), PsyncReply::Full { replid, offset }))
            }
        }
    }

    /// What this source's id in a checkpoint means: a checkpoint of another source id is
    /// not ours (files: another input; the link: any id is its history).
    pub fn is_files(&self) -> bool {
        matches!(self, Source::Backup(_))
    }

    /// Whether a run of it always starts with a whole copy (the SCAN copy: what changed
    /// while no run was tracking is not known), so a full load after a resume is expected.
    pub fn copies_again(&self) -> bool {
        matches!(self, Source::Scan(_))
    }

    /// Bytes read and not yet consumed.
    pub fn rbuf(&mut self) -> &mut BytesMut {
        match self {
            Source::Link(l) => &mut l.rbuf,
            Source::Backup(b) => &mut b.files.rbuf,
            Source::Scan(s) => &mut s.rbuf,
        }
    }

    /// Reads more. A link waits for bytes (its end is an error); files give 0 at their end.
    pub async fn fill(&mut self) -> Result<usize, SyncError> {
        match self {
            Source::Link(l) => l.fill().await,
            Source::Backup(b) => b.files.fill(),
            Source::Scan(s) => s.fill().await,
        }
    }

    /// Whether everything was read (never, for a link).
    pub fn at_end(&self) -> bool {
        match self {
            Source::Link(_) | Source::Scan(_) => false,
            Source::Backup(b) => b.files.at_end(),
        }
    }

    /// Whether to read as fast as bytes come (a link: the source must never wait for us)
    /// or only when what was read is used up (files: they wait).
    pub fn eager(&self) -> bool {
        matches!(self, Source::Link(_))
    }

    /// Tells the source what the target has applied (`REPLCONF ACK`; nothing for files).
    pub async fn ack(&mut self, applied: i64) -> Result<(), SyncError> {
        match self {
            Source::Link(l) => l.ack(applied).await,
            Source::Backup(_) | Source::Scan(_) => Ok(()),
        }
    }

    /// The snapshot that follows a `Full` answer.
    pub async fn snapshot(&mut self) -> Result<Snapshot, SyncError> {
        match self {
            Source::Link(l) => Ok(Snapshot::Payload(l.payload_header().await?)),
            Source::Backup(b) if b.rdb_first => Ok(Snapshot::Preamble {
                total: b.files.len(),
                commands_follow: b.commands_follow,
            }),
            Source::Backup(_) => Ok(Snapshot::None),
            Source::Scan(_) => Ok(Snapshot::Scan),
        }
    }

    /// The point in time the stream stops at (files).
    pub fn until(&self) -> Option<i64> {
        match self {
            Source::Link(_) | Source::Scan(_) => None,
            Source::Backup(b) => b.until,
        }
    }

    /// Where offset `pos` of the stream is, for messages.
    pub fn locate(&self, pos: i64) -> String {
        match self {
            Source::Link(_) | Source::Scan(_) => format!("offset {pos}"),
            Source::Backup(b) => b.files.locate(pos.max(0) as u64),
        }
    }

    /// The name of the file offset `pos` of the stream is in (files), for messages.
    pub fn file_at(&self, pos: i64) -> Option<String> {
        match self {
            Source::Link(_) | Source::Scan(_) => None,
            Source::Backup(b) => b
                .files
                .path_at(pos.max(0) as u64)
                .map(|p| p.display().to_string()),
        }
    }

    /// Files: the stream goes on at `pos` (after a snapshot whose end its reader found).
    pub fn seek(&mut self, pos: u64) -> Result<(), SyncError> {
        match self {
            Source::Link(_) | Source::Scan(_) => Ok(()),
            Source::Backup(b) => b.files.seek(pos),
        }
    }
}
