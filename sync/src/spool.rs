//! A FIFO of replication-stream bytes between the source link and the applier: memory up
//! to a limit, then a file in a bounded local directory. The source must never drop us for
//! being slow, so its socket is read at network speed even when the target falls behind;
//! what the target can't take yet waits here.
//!
//! Order is kept by one rule: once data goes to the file, everything after it goes there
//! too until the file has been read back entirely. The memory part therefore always holds
//! older bytes than the file.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::PathBuf;

use bytes::{Bytes, BytesMut};

pub struct Spool {
    mem: VecDeque<Bytes>,
    mem_bytes: usize,
    mem_limit: usize,
    dir: PathBuf,
    max_file_bytes: u64,
    file: Option<SpoolFile>,
}

struct SpoolFile {
    f: File,
    path: PathBuf,
    written: u64,
    read: u64,
}

impl Drop for SpoolFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Spool {
    /// `mem_limit` bytes are kept in memory; beyond, up to `max_file_bytes` in a file in
    /// `dir` (created if needed, removed when drained or dropped).
    pub fn new(dir: PathBuf, mem_limit: usize, max_file_bytes: u64) -> Spool {
        Spool {
            mem: VecDeque::new(),
            mem_bytes: 0,
            mem_limit,
            dir,
            max_file_bytes,
            file: None,
        }
    }

    /// Whether it can take no more: stop reading the source until it drains.
    pub fn is_full(&self) -> bool {
        self.file
            .as_ref()
            .is_some_and(|f| f.written - f.read >= self.max_file_bytes)
    }

    pub fn is_empty(&self) -> bool {
        self.mem.is_empty() && self.file.as_ref().is_none_or(|f| f.read == f.written)
    }

    /// Bytes waiting in the file (the `spool_bytes` figure).
    pub fn file_bytes(&self) -> u64 {
        self.file.as_ref().map_or(0, |f| f.written - f.read)
    }

    pub fn push(&mut self, data: Bytes) -> io::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        if self.file.is_none() && self.mem_bytes + data.len() <= self.mem_limit {
            self.mem_bytes += data.len();
            self.mem.push_back(data);
            return Ok(());
        }
        if self.file.is_none() {
            std::fs::create_dir_all(&self.dir)?;
            // One file per spool: a cluster source runs a syncer (and a spool) per link
            // in the same process, and a shared name would let one truncate another's.
            static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let path = self
                .dir
                .join(format!("cutover-spool-{}-{n}.bin", std::process::id()));
            let f = OpenOptions::new()
                .create(true)
                .truncate(true)
                .read(true)
                .write(true)
                .open(&path)?;
            tracing::warn!(path = %path.display(), "the target is behind the source: spooling the stream to disk");
            self.file = Some(SpoolFile {
                f,
                path,
                written: 0,
                read: 0,
            });
        }
        if let Some(sf) = self.file.as_mut() {
            sf.f.seek(SeekFrom::Start(sf.written))?;
            sf.f.write_all(&data)?;
            sf.written += data.len() as u64;
        }
        Ok(())
    }

    /// Up to `max` of the oldest bytes.
    pub fn pop(&mut self, max: usize) -> io::Result<Option<Bytes>> {
        if let Some(front) = self.mem.pop_front() {
            self.mem_bytes -= front.len();
            return Ok(Some(front));
        }
        let Some(sf) = self.file.as_mut() else {
            return Ok(None);
        };
        let n = ((sf.written - sf.read) as usize).min(max.max(1));
        if n == 0 {
            self.file = None; // drained: removed on drop; new data goes to memory again
            return Ok(None);
        }
        let mut buf = BytesMut::zeroed(n);
        sf.f.seek(SeekFrom::Start(sf.read))?;
        sf.f.read_exact(&mut buf)?;
        sf.read += n as u64;
        if sf.read == sf.written {
            self.file = None;
        }
        Ok(Some(buf.freeze()))
    }
}

/// A spool that can't be written or read: the local disk, not either side.
pub fn spool_err(e: io::Error) -> crate::SyncError {
    crate::SyncError::Config(format!("spooling the stream to disk: {e}"))
}

#[cfg(test)]
mod tests;
