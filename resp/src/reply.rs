//! Resumable boundary scanner for replies (RESP2 and RESP3).
//!
//! The proxy forwards replies as the raw bytes the server sent; all it needs is where each
//! reply ends, so nothing is decoded. Replies, unlike requests, nest (RESP3 maps, Lua
//! tables, EXEC), and a server (or whoever sits in its place) decides how deep: nesting is
//! tracked with an explicit stack capped at `max_depth`, never by recursion.
//!
//! `scan(buf)` returns the length of the first complete reply at `buf[0]`, or `None` when
//! more bytes are needed. It is resumable: call again with a buffer starting with the same
//! bytes plus more, and it continues where it stopped (a 4 MB bulk fed in 16 KiB pieces is
//! examined once). Nesting is tracked with an explicit stack capped at `max_depth`.
//! Types: `+ - : $ * _ # , ( ! = % ~ > | .` (attributes `|` are a prefix of the reply they
//! annotate and are included in its length). Null bulk/array `$-1`/`*-1` are valid.
//!
//! Not supported: RESP3 streamed strings and aggregates (`$?`, `*?`, `;` chunks), which no
//! Redis version sends; their headers are reported as [`ReplyError::InvalidLength`] (and `;`
//! as [`ReplyError::InvalidType`]).

use crate::ReplyError;

#[cfg(test)]
mod tests;

/// Default cap on nesting depth of a reply. What Redis sends is what the client asked for
/// and must reach it: a Lua table that contains itself comes back nested ~8000 deep (until
/// Lua's stack limit, then an error inside). The cap bounds memory, not what Redis may send:
/// each level costs 8 bytes here and at least 4 bytes of the reply itself, so even at the
/// cap the stack is 8 MB for a 4 MB reply.
pub const DEFAULT_MAX_DEPTH: usize = 1 << 20;

/// Default cap on a length header line (`$`, `*`, `%`, ... up to its CRLF). Real headers
/// are at most ~22 bytes; the cap only bounds what a broken peer can make us buffer.
pub const DEFAULT_MAX_HEADER_LEN: usize = 64 * 1024;

/// Default cap on a simple line (`+`, `-`, `:`, `,`, `(`, `#`, `_`, `.`). These are not
/// short in practice: MONITOR streams each command as one `+` line (a 1 MB SET value gives
/// a line of up to 4 MB), and Lua's `redis.error_reply`/`status_reply` can return lines of
/// any size. So the cap matches Redis's own largest bulk, `proto-max-bulk-len`.
pub const DEFAULT_MAX_LINE_LEN: usize = 512 * 1024 * 1024;

/// Where the scanner stopped inside the current reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Looking for the CRLF that ends the line starting at `pos`.
    Line,
    /// Waiting for a blob body that ends (before its CRLF) at this offset.
    Blob(usize),
}

#[derive(Debug)]
pub struct ReplyScanner {
    max_depth: usize,
    max_header_len: usize,
    max_line_len: usize,
    phase: Phase,
    /// Start of the element being scanned, relative to the start of the reply.
    pos: usize,
    /// Where the CRLF search resumes: `pos..scan` holds no `\r` followed by `\n`.
    scan: usize,
    /// Elements still expected by each open aggregate, innermost last.
    stack: Vec<u64>,
}

impl Default for ReplyScanner {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_DEPTH)
    }
}

impl ReplyScanner {
    pub fn new(max_depth: usize) -> Self {
        Self::with_limits(max_depth, DEFAULT_MAX_HEADER_LEN, DEFAULT_MAX_LINE_LEN)
    }

    /// `max_header_len` caps length header lines, `max_line_len` simple lines (both counted
    /// without the CRLF); beyond them `scan` fails with [`ReplyError::HeaderTooLong`].
    pub fn with_limits(max_depth: usize, max_header_len: usize, max_line_len: usize) -> Self {
        ReplyScanner {
            max_depth,
            max_header_len,
            max_line_len,
            phase: Phase::Line,
            pos: 0,
            scan: 0,
            stack: Vec::new(),
        }
    }

    pub fn scan(&mut self, buf: &[u8]) -> Result<Option<usize>, ReplyError> {
        let result = self.step(buf);
        if !matches!(result, Ok(None)) {
            // Ready for the next reply (which the caller will pass at buf[0]).
            self.reset();
        }
        result
    }

    /// Forget any partial progress (e.g. after the connection was reset).
    pub fn reset(&mut self) {
        self.phase = Phase::Line;
        self.pos = 0;
        self.scan = 0;
        self.stack.clear();
    }

    fn step(&mut self, buf: &[u8]) -> Result<Option<usize>, ReplyError> {
        loop {
            match self.phase {
                Phase::Blob(end) => {
                    // O(1) per call however the body arrives.
                    if buf.len() < end.saturating_add(2) {
                        return Ok(None);
                    }
                    if &buf[end..end + 2] != b"\r\n" {
                        return Err(ReplyError::MissingCrlf);
                    }
                    self.pos = end + 2;
                    self.scan = self.pos;
                    self.phase = Phase::Line;
                    if self.element_done() {
                        return Ok(Some(self.pos));
                    }
                }
                Phase::Line => {
                    let Some(&kind) = buf.get(self.pos) else {
                        return Ok(None);
                    };
                    let limit = match kind {
                        b'+' | b'-' | b':' | b',' | b'(' | b'#' | b'_' | b'.' => self.max_line_len,
                        b'$' | b'!' | b'=' | b'*' | b'~' | b'>' | b'%' | b'|' => {
                            self.max_header_len
                        }
                        other => return Err(ReplyError::InvalidType(other)),
                    };
                    let Some(cr) = self.find_crlf(buf) else {
                        // The line so far, without its type byte, and a possible lone '\r'
                        // at the end that may yet be the start of the CRLF.
                        let mut seen = buf.len().saturating_sub(self.pos + 1);
                        if buf.last() == Some(&b'\r') {
                            seen = seen.saturating_sub(1);
                        }
                        if seen > limit {
                            return Err(ReplyError::HeaderTooLong(limit));
                        }
                        return Ok(None);
                    };
                    if cr - (self.pos + 1) > limit {
                        return Err(ReplyError::HeaderTooLong(limit));
                    }
                    let line = &buf[self.pos + 1..cr];
                    let next = cr + 2;
                    match kind {
                        b'$' | b'!' | b'=' => match parse_len(line)? {
                            // `$-1`: the RESP2 null bulk.
                            None if kind == b'$' => {}
                            None => return Err(ReplyError::InvalidLength),
                            Some(n) => {
                                let end = usize::try_from(n)
                                    .ok()
                                    .and_then(|n| next.checked_add(n))
                                    .filter(|end| end.checked_add(2).is_some())
                                    .ok_or(ReplyError::InvalidLength)?;
                                self.pos = next;
                                self.phase = Phase::Blob(end);
                                continue;
                            }
                        },
                        b'*' | b'~' | b'>' | b'%' | b'|' => {
                            let count = match parse_len(line)? {
                                // `*-1`: the RESP2 null array.
                                None if kind == b'*' => 0,
                                None => return Err(ReplyError::InvalidLength),
                                Some(n) if kind == b'%' => {
                                    n.checked_mul(2).ok_or(ReplyError::InvalidLength)?
                                }
                                // An attribute map, then the reply it annotates: one more
                                // element, so that both end up in the same frame.
                                Some(n) if kind == b'|' => n
                                    .checked_mul(2)
                                    .and_then(|n| n.checked_add(1))
                                    .ok_or(ReplyError::InvalidLength)?,
                                Some(n) => n,
                            };
                            if count > 0 {
                                if self.stack.len() >= self.max_depth {
                                    return Err(ReplyError::TooDeep(self.max_depth));
                                }
                                self.stack.push(count);
                                self.pos = next;
                                self.scan = next;
                                continue;
                            }
                        }
                        // Simple lines: their content does not matter for the boundary.
                        _ => {}
                    }
                    self.pos = next;
                    self.scan = next;
                    if self.element_done() {
                        return Ok(Some(self.pos));
                    }
                }
            }
        }
    }

    /// An element ended at `self.pos`: counts it against the open aggregates, closing the
    /// ones it completes. True when the whole reply is complete.
    fn element_done(&mut self) -> bool {
        while let Some(left) = self.stack.last_mut() {
            *left -= 1;
            if *left > 0 {
                return false;
            }
            // The aggregate is complete: it is one element of its parent.
            self.stack.pop();
        }
        true
    }

    /// Finds the first `\r\n` at or after `self.scan` (a lone `\r` is content, as in
    /// hiredis), remembering how far it looked.
    fn find_crlf(&mut self, buf: &[u8]) -> Option<usize> {
        let mut from = self.scan.max(self.pos + 1);
        while from < buf.len() {
            let Some(offset) = memchr::memchr(b'\r', &buf[from..]) else {
                break;
            };
            let cr = from + offset;
            match buf.get(cr + 1) {
                Some(b'\n') => return Some(cr),
                Some(_) => from = cr + 1,
                None => {
                    // Resume on this '\r': its '\n' may come with the next read.
                    self.scan = cr;
                    return None;
                }
            }
        }
        self.scan = from.max(buf.len());
        None
    }
}

/// A length or count: `-1` gives `None` (null), other negatives, `?` (RESP3 streaming),
/// empty or non-digit text are invalid.
fn parse_len(s: &[u8]) -> Result<Option<u64>, ReplyError> {
    if s == b"-1" {
        return Ok(None);
    }
    if s.is_empty() {
        return Err(ReplyError::InvalidLength);
    }
    let mut v: u64 = 0;
    for &d in s {
        if !d.is_ascii_digit() {
            return Err(ReplyError::InvalidLength);
        }
        v = v
            .checked_mul(10)
            .and_then(|v| v.checked_add(u64::from(d - b'0')))
            .ok_or(ReplyError::InvalidLength)?;
    }
    Ok(Some(v))
}
