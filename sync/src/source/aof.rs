//! Opening backup files as a source: one file (an RDB, or an AOF with or without an RDB
//! preamble: both start the same way, with an RDB or not, and an RDB file is an AOF whose
//! command part is empty), or a Redis 7 multi-part AOF directory (its manifest names a base
//! file and incr files, loaded in that order).
//!
//! What comes out is a [`Files`] sequence and whether it starts with an RDB (the snapshot;
//! the commands continue at the byte after its checksum).

use std::path::{Path, PathBuf};

use super::files::{self, Files, Part, SELECT_0};
use crate::SyncError;

/// A backup opened: its bytes and what they start with.
#[derive(Debug)]
pub struct Opened {
    pub files: Files,
    /// The sequence starts with an RDB (a snapshot of unknown length: its reader finds the
    /// end).
    pub rdb_first: bool,
    /// What to call the input in messages.
    pub name: String,
    /// The input's identity ([`files::identity`]).
    pub id: String,
}

/// Opens `path`: a directory holding a manifest, a manifest, or a single file.
pub fn open(path: &Path) -> Result<Opened, SyncError> {
    let meta = std::fs::metadata(path).map_err(|e| files::io_err(path, e))?;
    let manifest = if meta.is_dir() {
        Some(find_manifest(path)?)
    } else if path.extension().is_some_and(|e| e == "manifest") {
        Some(path.to_path_buf())
    } else {
        None
    };
    let (parts, kind) = match manifest {
        Some(m) => (manifest_parts(&m)?, "aof-dir"),
        None => (
            vec![Part {
                path: path.to_path_buf(),
                len: meta.len(),
                prefix: b"",
            }],
            "file",
        ),
    };
    let rdb_first = match parts.first() {
        Some(p) => {
            let head = first_bytes(&p.path)?;
            let rdb = head.starts_with(b"REDIS") || head.starts_with(b"VALKEY");
            // An AOF starts with a command (`*`) or an annotation (`#`); anything else is
            // neither, e.g. an RDB whose magic is damaged.
            if !rdb && !head.is_empty() && !matches!(head[0], b'*' | b'#') {
                return Err(SyncError::File(format!(
                    "{}: at byte 0: neither an RDB (it would start with REDIS) nor an AOF (it would start with '*' or '#'): starts with {:?}",
                    p.path.display(),
                    String::from_utf8_lossy(&head)
                )));
            }
            rdb
        }
        None => false,
    };
    let id = files::identity(kind, &parts, &[])?;
    Ok(Opened {
        files: Files::new(parts),
        rdb_first,
        name: path.display().to_string(),
        id,
    })
}

/// The file's first bytes (up to 6: enough for `REDIS`+version or Valkey 9's `VALKEY`).
fn first_bytes(path: &Path) -> Result<Vec<u8>, SyncError> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).map_err(|e| files::io_err(path, e))?;
    let mut magic = [0u8; 6];
    let mut n = 0;
    while n < magic.len() {
        match f
            .read(&mut magic[n..])
            .map_err(|e| files::io_err(path, e))?
        {
            0 => break,
            k => n += k,
        }
    }
    Ok(magic[..n].to_vec())
}

fn find_manifest(dir: &Path) -> Result<PathBuf, SyncError> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| files::io_err(dir, e))? {
        let entry = entry.map_err(|e| files::io_err(dir, e))?;
        let p = entry.path();
        if p.extension().is_some_and(|e| e == "manifest") {
            found.push(p);
        }
    }
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(SyncError::File(format!(
            "{}: no AOF manifest (*.manifest) in this directory",
            dir.display()
        ))),
        _ => Err(SyncError::File(format!(
            "{}: several AOF manifests in this directory; name the one to restore",
            dir.display()
        ))),
    }
}

/// The kind of a manifest entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileType {
    Base,
    Incr,
    History,
}

/// One line of a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: Vec<u8>,
    pub seq: u64,
    pub kind: FileType,
}

/// The parts of a multi-part AOF, in load order: the base, then the incr files.
fn manifest_parts(manifest: &Path) -> Result<Vec<Part>, SyncError> {
    let text = std::fs::read(manifest).map_err(|e| files::io_err(manifest, e))?;
    let entries = parse_manifest(&text).map_err(|(line, why)| {
        SyncError::File(format!("{} line {line}: {why}", manifest.display()))
    })?;
    let dir = manifest.parent().unwrap_or(Path::new("."));
    let mut parts = Vec::new();
    let bases: Vec<&Entry> = entries
        .iter()
        .filter(|e| e.kind == FileType::Base)
        .collect();
    let incrs = entries.iter().filter(|e| e.kind == FileType::Incr);
    for (i, e) in bases.into_iter().chain(incrs).enumerate() {
        let name = String::from_utf8_lossy(&e.name).into_owned();
        if name.contains('/') {
            return Err(SyncError::File(format!(
                "{}: the file name {name:?} has a path in it (manifests name files of their own directory)",
                manifest.display()
            )));
        }
        let path = dir.join(&name);
        let len = std::fs::metadata(&path)
            .map_err(|e| {
                SyncError::File(format!(
                    "{}: lists {name}, which can't be read: {e}",
                    manifest.display()
                ))
            })?
            .len();
        parts.push(Part {
            path,
            len,
            prefix: if i == 0 { b"" } else { SELECT_0 },
        });
    }
    if parts.is_empty() {
        return Err(SyncError::File(format!(
            "{}: the manifest lists no base or incr file",
            manifest.display()
        )));
    }
    Ok(parts)
}

/// Parses a manifest as Redis does: `file <name> seq <n> type <b|h|i>` per line (keys in
/// any case and order, unknown pairs ignored), `#` comments. Errors: (line number, why).
pub fn parse_manifest(text: &[u8]) -> Result<Vec<Entry>, (usize, String)> {
    let mut out: Vec<Entry> = Vec::new();
    let mut lines = text.split(|&b| b == b'\n').enumerate().peekable();
    while let Some((i, raw)) = lines.next() {
        let n = i + 1;
        // The text ends with a newline: the empty piece after it is not a line.
        if raw.is_empty() && lines.peek().is_none() {
            break;
        }
        if raw.len() > 1024 {
            return Err((n, "line longer than 1024 bytes".into()));
        }
        if raw.first() == Some(&b'#') {
            continue;
        }
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        let line = trim(line);
        if line.is_empty() {
            return Err((n, "empty line".into()));
        }
        let args = split_args(line).ok_or((n, "unbalanced quotes".to_string()))?;
        if args.len() < 6 || args.len() % 2 != 0 {
            return Err((
                n,
                "expected `file <name> seq <n> type <b|h|i>` (pairs of key and value)".into(),
            ));
        }
        let (mut name, mut seq, mut kind) = (None, None, None);
        for kv in args.chunks(2) {
            let key = kv[0].to_ascii_lowercase();
            let v = &kv[1];
            match key.as_slice() {
                b"file" => name = Some(v.clone()),
                b"seq" => {
                    seq = Some(
                        std::str::from_utf8(v)
                            .ok()
                            .and_then(|s| s.parse::<u64>().ok())
                            .ok_or((n, "seq is not a number".to_string()))?,
                    )
                }
                b"type" => {
                    kind = Some(match v.first() {
                        Some(b'b') => FileType::Base,
                        Some(b'i') => FileType::Incr,
                        Some(b'h') => FileType::History,
                        _ => return Err((n, "type is not b, h or i".into())),
                    })
                }
                _ => {}
            }
        }
        let (Some(name), Some(seq), Some(kind)) = (name, seq, kind) else {
            return Err((n, "a file, seq or type is missing".into()));
        };
        if kind == FileType::Base && out.iter().any(|e| e.kind == FileType::Base) {
            return Err((n, "a second base file".into()));
        }
        if kind == FileType::Incr {
            if let Some(prev) = out.iter().rev().find(|e| e.kind == FileType::Incr) {
                if seq <= prev.seq {
                    return Err((n, "incr files' seq must increase".into()));
                }
            }
        }
        out.push(Entry { name, seq, kind });
    }
    Ok(out)
}

fn trim(s: &[u8]) -> &[u8] {
    let start = s
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |i| i + 1);
    &s[start..end.max(start)]
}

/// Splits a line into arguments as Redis's `sdssplitargs` does: spaces separate, double
/// quotes take `\\ \" \n \r \t \a \b \xHH`, single quotes take `\'`. None: unbalanced.
pub fn split_args(line: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < line.len() {
        while i < line.len() && line[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= line.len() {
            break;
        }
        let mut cur = Vec::new();
        match line[i] {
            b'"' => {
                i += 1;
                loop {
                    let c = *line.get(i)?;
                    if c == b'\\' && i + 3 < line.len() && line[i + 1] == b'x' {
                        let hex = std::str::from_utf8(&line[i + 2..i + 4]).ok();
                        if let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                            cur.push(v);
                            i += 4;
                            continue;
                        }
                    }
                    if c == b'\\' && i + 1 < line.len() {
                        cur.push(match line[i + 1] {
                            b'n' => b'\n',
                            b'r' => b'\r',
                            b't' => b'\t',
                            b'b' => 8,
                            b'a' => 7,
                            other => other,
                        });
                        i += 2;
                        continue;
                    }
                    if c == b'"' {
                        i += 1;
                        // A closing quote must be followed by a space or the end.
                        if line.get(i).is_some_and(|b| !b.is_ascii_whitespace()) {
                            return None;
                        }
                        break;
                    }
                    cur.push(c);
                    i += 1;
                }
            }
            b'\'' => {
                i += 1;
                loop {
                    let c = *line.get(i)?;
                    if c == b'\\' && line.get(i + 1) == Some(&b'\'') {
                        cur.push(b'\'');
                        i += 2;
                        continue;
                    }
                    if c == b'\'' {
                        i += 1;
                        if line.get(i).is_some_and(|b| !b.is_ascii_whitespace()) {
                            return None;
                        }
                        break;
                    }
                    cur.push(c);
                    i += 1;
                }
            }
            _ => {
                while i < line.len() && !line[i].is_ascii_whitespace() {
                    cur.push(line[i]);
                    i += 1;
                }
            }
        }
        out.push(cur);
    }
    Some(out)
}

#[cfg(test)]
mod tests;
