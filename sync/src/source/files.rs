//! A file source's bytes seen as one sequence: an RDB file, or an AOF's parts in manifest
//! order (base, then incr files). Positions in that sequence are the source's offsets: the
//! checkpoint records one, and a resume opens the sequence there again.
//!
//! A part may be preceded by a few bytes of its own (`prefix`): Redis loads every AOF part
//! with a fresh client in db 0, so the parts after the first start with `SELECT 0`. Those
//! bytes count in the offsets like the files' own, so offsets stay the same from one run to
//! the next.
//!
//! Files are read with plain blocking reads of at most [`CHUNK`] bytes: they are local, and
//! the page cache answers in microseconds; the restore's runtime does nothing else meanwhile.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use bytes::BytesMut;

use crate::SyncError;

/// Bytes read at a time.
pub const CHUNK: usize = 256 * 1024;

/// One file of the sequence.
#[derive(Debug, Clone)]
pub struct Part {
    pub path: PathBuf,
    /// Its length when the source was opened (a file still growing is read up to there).
    pub len: u64,
    /// Bytes that come before it in the sequence (see the module's header).
    pub prefix: &'static [u8],
}

impl Part {
    fn span(&self) -> u64 {
        self.prefix.len() as u64 + self.len
    }
}

/// The sequence, read from a position.
#[derive(Debug)]
pub struct Files {
    parts: Vec<Part>,
    /// Position of the next byte to read.
    pos: u64,
    /// The part being read and the file's own offset in it (None: not opened yet).
    open: Option<(usize, File)>,
    /// Bytes read and not yet consumed.
    pub rbuf: BytesMut,
}

/// `SELECT 0`, the prefix of every AOF part after the first.
pub const SELECT_0: &[u8] = b"*2\r\n$6\r\nSELECT\r\n$1\r\n0\r\n";

impl Files {
    pub fn new(parts: Vec<Part>) -> Files {
        Files {
            parts,
            pos: 0,
            open: None,
            rbuf: BytesMut::new(),
        }
    }

    pub fn parts(&self) -> &[Part] {
        &self.parts
    }

    /// Length of the whole sequence.
    pub fn len(&self) -> u64 {
        self.parts.iter().map(Part::span).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Position of the next byte `fill` reads (bytes in `rbuf` come before it).
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Reading goes on from `pos` (unread bytes are dropped).
    pub fn seek(&mut self, pos: u64) -> Result<(), SyncError> {
        if pos > self.len() {
            return Err(SyncError::File(format!(
                "the checkpoint's position {pos} is past the end of the input ({} bytes): it was made from other files",
                self.len()
            )));
        }
        self.pos = pos;
        self.open = None;
        self.rbuf.clear();
        Ok(())
    }

    /// Whether everything was read.
    pub fn at_end(&self) -> bool {
        self.pos >= self.len()
    }

    /// Where `pos` lies, for messages: `file at byte n` (or `file (at its start)` in a
    /// prefix).
    pub fn locate(&self, pos: u64) -> String {
        match self.part_at(pos) {
            Some((p, start)) if pos < start => format!("{} (at its start)", p.path.display()),
            Some((p, start)) => format!("{} at byte {}", p.path.display(), pos - start),
            None => format!("position {pos}"),
        }
    }

    /// The file `pos` lies in (the last one past the end).
    pub fn path_at(&self, pos: u64) -> Option<&Path> {
        self.part_at(pos).map(|(p, _)| p.path.as_path())
    }

    /// The part `pos` lies in (its prefix included; the last one past the end), and where
    /// the file's own bytes start in the sequence.
    fn part_at(&self, pos: u64) -> Option<(&Part, u64)> {
        let mut at = 0u64;
        for (i, p) in self.parts.iter().enumerate() {
            let start = at + p.prefix.len() as u64;
            if pos < start + p.len || i + 1 == self.parts.len() {
                return Some((p, start));
            }
            at = start + p.len;
        }
        None
    }

    /// Reads up to [`CHUNK`] more bytes into `rbuf`; 0 at the end.
    pub fn fill(&mut self) -> Result<usize, SyncError> {
        let before = self.rbuf.len();
        self.read_into(CHUNK)?;
        Ok(self.rbuf.len() - before)
    }

    fn read_into(&mut self, max: usize) -> Result<(), SyncError> {
        // Find the part holding `pos`.
        let mut at = 0u64;
        for (i, p) in self.parts.iter().enumerate() {
            let plen = p.prefix.len() as u64;
            if self.pos < at + plen {
                let from = (self.pos - at) as usize;
                self.rbuf.extend_from_slice(&p.prefix[from..]);
                self.pos = at + plen;
                return Ok(());
            }
            let start = at + plen;
            if self.pos < start + p.len {
                let off = self.pos - start;
                if !matches!(&self.open, Some((j, _)) if *j == i) {
                    let mut f = File::open(&p.path).map_err(|e| io_err(&p.path, e))?;
                    f.seek(SeekFrom::Start(off))
                        .map_err(|e| io_err(&p.path, e))?;
                    self.open = Some((i, f));
                }
                let Some((_, file)) = self.open.as_mut() else {
                    return Err(SyncError::File("internal: file not open".into()));
                };
                let want = ((p.len - off) as usize).min(max);
                let old = self.rbuf.len();
                self.rbuf.resize(old + want, 0);
                let n = read_full(file, &mut self.rbuf[old..]).map_err(|e| io_err(&p.path, e))?;
                self.rbuf.truncate(old + n);
                if n < want {
                    return Err(SyncError::File(format!(
                        "{} became shorter while it was read (at byte {}): was it replaced?",
                        p.path.display(),
                        off + n as u64
                    )));
                }
                self.pos += n as u64;
                return Ok(());
            }
            at = start + p.len;
        }
        Ok(())
    }
}

fn read_full(f: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

pub fn io_err(path: &Path, e: std::io::Error) -> SyncError {
    SyncError::File(format!("{}: {e}", path.display()))
}

/// An identity for the input, in the shape of a replication id (40 hex digits): the
/// checkpoint names it, and a resume continues only from a checkpoint of the same input.
/// Made from the kind, the parts' names and the first bytes of the first part (an AOF
/// that grows keeps its identity; one rewritten gets another).
pub fn identity(kind: &str, parts: &[Part], tail: &[u8]) -> Result<String, SyncError> {
    use crate::rdb::crc64::crc64;
    let mut names = Vec::new();
    names.extend_from_slice(kind.as_bytes());
    for p in parts {
        names.push(0);
        if let Some(n) = p.path.file_name() {
            names.extend_from_slice(n.as_encoded_bytes());
        }
    }
    let mut head = vec![0u8; 4096];
    let mut n = 0;
    if let Some(first) = parts.first() {
        let mut f = File::open(&first.path).map_err(|e| io_err(&first.path, e))?;
        n = read_full(&mut f, &mut head).map_err(|e| io_err(&first.path, e))?;
    }
    head.truncate(n);
    head.extend_from_slice(tail);
    let a = crc64(0, &names);
    let b = crc64(0x5eed, &head);
    let kind_tag = crc64(0, kind.as_bytes()) as u32;
    Ok(format!("{kind_tag:08x}{a:016x}{b:016x}"))
}

#[cfg(test)]
mod tests;
