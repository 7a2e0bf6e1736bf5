//! A file as the sink: `cutover dump`, an RDB of a live server taken over the replication
//! link, as `redis-cli --rdb` takes it. The RDB a master sends its replicas carries its
//! replication id and offset (AUX `repl-id`, `repl-offset`, `repl-stream-db`), so the file
//! can later seed a far target that then asks the source to continue from there
//! (`cutover run --seed`).
//!
//! The payload is written as it arrives, never held whole, to `<file>.part`, synced, then
//! renamed: a file with the final name is always a whole RDB.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;

use ::cluster::Connector;

use crate::source::{Link, PsyncReply};
use crate::status::SyncStatus;
use crate::SyncError;

/// What a dump wrote.
#[derive(Debug, Clone)]
pub struct Dumped {
    pub path: PathBuf,
    pub replid: String,
    pub offset: i64,
    pub bytes: u64,
    /// A SCAN dump: how many keys it holds (it has no replication id or offset).
    pub keys: Option<u64>,
}

fn file_err(path: &Path, e: std::io::Error) -> SyncError {
    SyncError::File(format!("{}: {e}", path.display()))
}

/// A file written as `<path>.part`, synced and renamed to `path` once whole (removed if
/// not): a reader never sees half a dump.
struct PartFile {
    path: PathBuf,
    part: PathBuf,
    file: std::io::BufWriter<std::fs::File>,
    bytes: u64,
}

impl PartFile {
    fn create(path: &Path) -> Result<PartFile, SyncError> {
        let mut part = path.as_os_str().to_owned();
        part.push(".part");
        let part = PathBuf::from(part);
        let file = std::io::BufWriter::with_capacity(
            1024 * 1024,
            std::fs::File::create(&part).map_err(|e| file_err(&part, e))?,
        );
        Ok(PartFile {
            path: path.to_path_buf(),
            part,
            file,
            bytes: 0,
        })
    }

    fn write(&mut self, chunk: &[u8], progress: &AtomicU64) -> Result<(), SyncError> {
        self.bytes += chunk.len() as u64;
        SyncStatus::add(progress, chunk.len() as u64);
        self.file
            .write_all(chunk)
            .map_err(|e| file_err(&self.part, e))
    }

    /// Synced and renamed into place; the bytes written.
    fn commit(self) -> Result<u64, SyncError> {
        let file = self
            .file
            .into_inner()
            .map_err(|e| file_err(&self.part, e.into_error()))?;
        file.sync_all().map_err(|e| file_err(&self.part, e))?;
        drop(file);
        std::fs::rename(&self.part, &self.path).map_err(|e| file_err(&self.path, e))?;
        Ok(self.bytes)
    }

    fn discard(self) {
        let part = self.part.clone();
        drop(self);
        let _ = std::fs::remove_file(part);
    }
}

/// Takes an RDB of `source` into `path`; `progress` counts the bytes written.
pub async fn dump(
    source: &Connector,
    path: &Path,
    progress: &AtomicU64,
) -> Result<Dumped, SyncError> {
    let (mut link, reply) = Link::open(source, 0, None).await?;
    let PsyncReply::Full { replid, offset } = reply else {
        return Err(SyncError::Source(
            "the source answered a full sync request with CONTINUE".into(),
        ));
    };
    let payload = link.payload_header().await?;
    let mut file = PartFile::create(path)?;
    // Local writes are quick; the source's socket is read again right after each. (The
    // link counts what it read; the file what it wrote: the same bytes.)
    let r = link
        .stream_payload(&payload, |chunk| file.write(&chunk, progress), |_| {})
        .await;
    if let Err(e) = r {
        file.discard();
        return Err(e);
    }
    let bytes = file.commit()?;
    Ok(Dumped {
        path: path.to_path_buf(),
        replid,
        offset,
        bytes,
        keys: None,
    })
}

/// An RDB of a source that refuses replication, built from SCAN + DUMP
/// ([`crate::source::scan::dump_rdb`]): readable by Redis at start-up and by
/// `redis-check-rdb`, restorable, but without a replication position (it can't seed).
pub async fn dump_scan(
    source: &std::sync::Arc<Connector>,
    path: &Path,
    progress: &AtomicU64,
    max_ops: u64,
) -> Result<Dumped, SyncError> {
    let mut file = PartFile::create(path)?;
    let r =
        crate::source::scan::dump_rdb(source, max_ops, |chunk| file.write(chunk, progress)).await;
    let keys = match r {
        Ok(k) => k,
        Err(e) => {
            file.discard();
            return Err(e);
        }
    };
    let bytes = file.commit()?;
    Ok(Dumped {
        path: path.to_path_buf(),
        replid: String::new(),
        offset: -1,
        bytes,
        keys: Some(keys),
    })
}
