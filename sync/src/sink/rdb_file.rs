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
    let mut part = path.as_os_str().to_owned();
    part.push(".part");
    let part = PathBuf::from(part);
    let mut file = std::io::BufWriter::with_capacity(
        1024 * 1024,
        std::fs::File::create(&part).map_err(|e| file_err(&part, e))?,
    );
    let mut bytes = 0u64;
    // Local writes are quick; the source's socket is read again right after each.
    let r = link
        .stream_payload(
            &payload,
            |chunk| file.write_all(&chunk).map_err(|e| file_err(&part, e)),
            |n| {
                bytes += n;
                SyncStatus::add(progress, n);
            },
        )
        .await;
    if let Err(e) = r {
        let _ = std::fs::remove_file(&part);
        return Err(e);
    }
    let file = file
        .into_inner()
        .map_err(|e| file_err(&part, e.into_error()))?;
    file.sync_all().map_err(|e| file_err(&part, e))?;
    drop(file);
    std::fs::rename(&part, path).map_err(|e| file_err(path, e))?;
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
    let mut part = path.as_os_str().to_owned();
    part.push(".part");
    let part = PathBuf::from(part);
    let mut file = std::io::BufWriter::with_capacity(
        1024 * 1024,
        std::fs::File::create(&part).map_err(|e| file_err(&part, e))?,
    );
    let mut bytes = 0u64;
    let r = crate::source::scan::dump_rdb(source, max_ops, |chunk| {
        bytes += chunk.len() as u64;
        SyncStatus::add(progress, chunk.len() as u64);
        file.write_all(chunk).map_err(|e| file_err(&part, e))
    })
    .await;
    let keys = match r {
        Ok(k) => k,
        Err(e) => {
            drop(file);
            let _ = std::fs::remove_file(&part);
            return Err(e);
        }
    };
    let file = file
        .into_inner()
        .map_err(|e| file_err(&part, e.into_error()))?;
    file.sync_all().map_err(|e| file_err(&part, e))?;
    drop(file);
    std::fs::rename(&part, path).map_err(|e| file_err(path, e))?;
    Ok(Dumped {
        path: path.to_path_buf(),
        replid: String::new(),
        offset: -1,
        bytes,
        keys: Some(keys),
    })
}
