//! Resumable, zero-copy scanner for client requests.
//!
//! The proxy must accept and refuse exactly what Redis accepts and refuses, with the same
//! error texts, so the rules below follow Redis 7.0's `processMultibulkBuffer` and
//! `processInlineBuffer` (networking.c) rather than the RESP spec; each deviation is noted
//! where it is made. Checked against a real redis-server 7.0.15.
//!
//! Contract:
//! - `parse(buf)` looks at the command that starts at `buf[0]`.
//! - `Ok(None)`: incomplete. Call again later with a buffer that starts with the SAME bytes
//!   plus more; bytes already examined are never scanned again (the parser keeps its
//!   position, argument ranges and pending bulk length between calls).
//! - `Ok(Some(frame))`: one whole command of `frame.len` bytes. The caller must drop those
//!   bytes (or pass `&buf[frame.len..]`) before the next call. `args()` gives the argument
//!   ranges of that frame until the next call.
//! - `Err(e)`: the client sent what Redis refuses; reply `-ERR {e}` and close.
//!
//! Redis details that are easy to get wrong, all reproduced here:
//! - Header lines (`*N`, `$L`) end at the first `\r`; the byte after it is skipped without
//!   being looked at (Redis accepts `*1\rX$4\r\nPING\r\n`).
//! - Redis searches for line ends with `strchr`, which stops at a NUL byte: a NUL before
//!   the end of a header or inline line means the line never ends, and the client gets a
//!   "too big ..." error once more than `max_inline_len` bytes are buffered (Redis's
//!   "protocol desync" regression tests rely on this).
//! - Numbers follow `string2ll`: no `+`, no leading zeros, no `-0`, no spaces.
//! - `*0`, `*-N` and blank inline lines are ignored, not errors.
//!
//! One deliberate deviation: Redis skips the two bytes after a bulk body without checking
//! them (it answers `*1\r\n$4\r\nPINGxy` with `+PONG`). We require `\r\n` there and fail with
//! [`ProtocolError::MissingBulkCrlf`], because a client whose lengths are off is out of
//! sync, and continuing would forward garbage to a shared backend connection.

use std::ops::Range;

use crate::ProtocolError;

#[cfg(test)]
mod tests;

/// Redis's limits on requests.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest bulk argument (Redis `proto-max-bulk-len`, 512 MB).
    pub max_bulk_len: usize,
    /// Longest `*`/`$` header line or inline command without CRLF (Redis: 64 KiB).
    pub max_inline_len: usize,
    /// Largest multibulk count (Redis: 1024*1024*1024... checked as `> INT_MAX` is invalid, and
    /// `> 1024*1024` needs authentication-free sanity; we use Redis's INT_MAX rule).
    pub max_multibulk_len: usize,
    /// Before authentication: at most this many arguments (Redis: 10).
    pub unauth_max_multibulk_len: usize,
    /// Before authentication: at most this many bytes per bulk (Redis: 16 KiB).
    pub unauth_max_bulk_len: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bulk_len: 512 * 1024 * 1024,
            max_inline_len: 64 * 1024,
            max_multibulk_len: i32::MAX as usize,
            unauth_max_multibulk_len: 10,
            unauth_max_bulk_len: 16 * 1024,
        }
    }
}

/// What kind of frame `parse` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    /// `*N\r\n$L\r\n...`: `args()` index the caller's buffer (relative to the frame start).
    Multibulk,
    /// A whitespace-separated line (with Redis's quoting rules). `args()` index
    /// `inline_encoded()`, which holds the same command re-encoded as a multibulk.
    Inline,
    /// Something Redis silently ignores (`*0`, `*-1`, an empty or blank line): skip `len` bytes.
    Empty,
}

/// One complete request at the start of the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    pub len: usize,
    pub kind: FrameKind,
}

/// Where the scanner stopped inside the current frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// No byte of the frame at `buf[0]` has been looked at.
    Start,
    /// Looking for the `\r` that ends the `*N` line starting at `pos` (= 0).
    MultibulkHeader,
    /// Looking for the `\r` that ends the `$L` line starting at `pos`.
    BulkHeader,
    /// Waiting for `len` bytes and CRLF starting at `pos`.
    BulkBody(usize),
    /// Looking for the `\n` that ends the inline command starting at 0.
    Inline,
}

/// The resumable request scanner. One per client connection.
#[derive(Debug)]
pub struct RequestParser {
    limits: Limits,
    authenticated: bool,
    args: Vec<Range<usize>>,
    phase: Phase,
    /// Start of the element being parsed (header line or bulk body), frame-relative.
    pos: usize,
    /// Where the search for the end of the current line resumes: everything in
    /// `pos..scan` is known to hold neither the terminator nor a NUL.
    scan: usize,
    /// A NUL was found before the line end: the line can never end (see module docs).
    stuck: bool,
    /// Bulk arguments still expected in the current multibulk.
    remaining: usize,
    /// Inline commands re-encoded as a multibulk; `args` index it for `FrameKind::Inline`.
    inline: Vec<u8>,
    /// Unescaped inline arguments, before re-encoding (kept to reuse its allocation).
    scratch: Vec<u8>,
}

impl RequestParser {
    pub fn new(limits: Limits) -> Self {
        RequestParser {
            limits,
            authenticated: true,
            args: Vec::new(),
            phase: Phase::Start,
            pos: 0,
            scan: 0,
            stuck: false,
            remaining: 0,
            inline: Vec::new(),
            scratch: Vec::new(),
        }
    }

    /// Stricter limits apply while `false` (Redis applies them only when auth is required).
    pub fn set_authenticated(&mut self, authenticated: bool) {
        self.authenticated = authenticated;
    }

    pub fn parse(&mut self, buf: &[u8]) -> Result<Option<Frame>, ProtocolError> {
        let result = self.step(buf);
        if !matches!(result, Ok(None)) {
            // A frame was returned or the client is to be dropped: either way the next
            // call starts a new frame. The args of a returned frame stay readable.
            self.phase = Phase::Start;
            self.pos = 0;
            self.scan = 0;
            self.stuck = false;
            self.remaining = 0;
        }
        if result.is_err() {
            self.args.clear();
        }
        result
    }

    /// Argument ranges of the last frame returned by `parse` (command name first).
    pub fn args(&self) -> &[Range<usize>] {
        &self.args
    }

    /// For `FrameKind::Inline`: the command re-encoded as a RESP multibulk.
    pub fn inline_encoded(&self) -> &[u8] {
        &self.inline
    }

    fn step(&mut self, buf: &[u8]) -> Result<Option<Frame>, ProtocolError> {
        loop {
            match self.phase {
                Phase::Start => {
                    let Some(&first) = buf.first() else {
                        return Ok(None);
                    };
                    self.args.clear();
                    self.pos = 0;
                    self.scan = 0;
                    self.stuck = false;
                    self.phase = if first == b'*' {
                        Phase::MultibulkHeader
                    } else {
                        Phase::Inline
                    };
                }
                Phase::MultibulkHeader => {
                    let Some(cr) = self.find_line_end(buf, b'\r') else {
                        return if buf.len().saturating_sub(self.pos) > self.limits.max_inline_len {
                            Err(ProtocolError::TooBigMultibulkCount)
                        } else {
                            Ok(None)
                        };
                    };
                    // Redis wants one more byte (the '\n', which it never checks).
                    if cr + 2 > buf.len() {
                        return Ok(None);
                    }
                    let count = match string2ll(buf.get(self.pos + 1..cr).unwrap_or_default()) {
                        Some(n) if n <= 0 => {
                            return Ok(Some(Frame {
                                len: cr + 2,
                                kind: FrameKind::Empty,
                            }));
                        }
                        // Positive, so the conversion is lossless on 64-bit and saturates
                        // (to an over-limit value) on 32-bit.
                        Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
                        None => return Err(ProtocolError::InvalidMultibulkLength),
                    };
                    if count > self.limits.max_multibulk_len {
                        return Err(ProtocolError::InvalidMultibulkLength);
                    }
                    if !self.authenticated && count > self.limits.unauth_max_multibulk_len {
                        return Err(ProtocolError::UnauthenticatedMultibulkLength);
                    }
                    self.remaining = count;
                    // Cap the hint: the declared count is the client's word, not memory
                    // we owe it (Redis caps its argv preallocation at 1024 too).
                    self.args.reserve(count.min(1024));
                    self.pos = cr + 2;
                    self.scan = self.pos;
                    self.phase = Phase::BulkHeader;
                }
                Phase::BulkHeader => {
                    let Some(cr) = self.find_line_end(buf, b'\r') else {
                        return if buf.len().saturating_sub(self.pos) > self.limits.max_inline_len {
                            Err(ProtocolError::TooBigBulkCount)
                        } else {
                            Ok(None)
                        };
                    };
                    if cr + 2 > buf.len() {
                        return Ok(None);
                    }
                    // Checked only once the whole line is there, as Redis does: `*1\r\nfoo`
                    // waits for the line end before failing.
                    let kind = buf[self.pos];
                    if kind != b'$' {
                        return Err(ProtocolError::ExpectedBulk(kind));
                    }
                    let len = match string2ll(buf.get(self.pos + 1..cr).unwrap_or_default()) {
                        Some(n) if n >= 0 => usize::try_from(n).unwrap_or(usize::MAX),
                        _ => return Err(ProtocolError::InvalidBulkLength),
                    };
                    // Refused before waiting for the body: nothing is buffered on the
                    // strength of a length we would not accept.
                    if len > self.limits.max_bulk_len {
                        return Err(ProtocolError::InvalidBulkLength);
                    }
                    if !self.authenticated && len > self.limits.unauth_max_bulk_len {
                        return Err(ProtocolError::UnauthenticatedBulkLength);
                    }
                    self.pos = cr + 2;
                    self.phase = Phase::BulkBody(len);
                }
                Phase::BulkBody(len) => {
                    // O(1) however the body arrives: only the available length is compared.
                    let end = self.pos.saturating_add(len);
                    if buf.len() < end.saturating_add(2) {
                        return Ok(None);
                    }
                    if &buf[end..end + 2] != b"\r\n" {
                        return Err(ProtocolError::MissingBulkCrlf);
                    }
                    self.args.push(self.pos..end);
                    self.pos = end + 2;
                    self.remaining -= 1;
                    if self.remaining == 0 {
                        return Ok(Some(Frame {
                            len: self.pos,
                            kind: FrameKind::Multibulk,
                        }));
                    }
                    self.scan = self.pos;
                    self.phase = Phase::BulkHeader;
                }
                Phase::Inline => {
                    let Some(nl) = self.find_line_end(buf, b'\n') else {
                        return if buf.len() > self.limits.max_inline_len {
                            Err(ProtocolError::TooBigInline)
                        } else {
                            Ok(None)
                        };
                    };
                    let line_end = if nl > 0 && buf[nl - 1] == b'\r' {
                        nl - 1
                    } else {
                        nl
                    };
                    let kind = self.split_inline(&buf[..line_end])?;
                    return Ok(Some(Frame { len: nl + 1, kind }));
                }
            }
        }
    }

    /// Finds `term` at or after `self.scan`, remembering how far it looked. Returns `None`
    /// if it is not there yet or a NUL comes first (Redis's `strchr` stops at NUL, so such a
    /// line never ends; the caller's size check eventually rejects it).
    fn find_line_end(&mut self, buf: &[u8], term: u8) -> Option<usize> {
        if self.stuck {
            return None;
        }
        let from = self.scan.min(buf.len());
        // Header lines are a handful of bytes (`$3\r\n`): a plain loop over the first few
        // beats memchr's setup; long lines (inline commands) go to memchr.
        let head = &buf[from..buf.len().min(from + 16)];
        let found = match head.iter().position(|&b| b == term || b == 0) {
            Some(i) => Some(i),
            None if head.len() < 16 => None,
            None => memchr::memchr2(term, 0, &buf[from + 16..]).map(|i| i + 16),
        };
        match found {
            Some(i) if buf[from + i] == term => {
                // Stay on the terminator: if the byte after it is still missing, the next
                // call finds it again at once.
                self.scan = from + i;
                Some(from + i)
            }
            Some(_) => {
                self.stuck = true;
                None
            }
            None => {
                self.scan = buf.len();
                None
            }
        }
    }

    /// Splits an inline line like Redis's `sdssplitargs` and re-encodes it as a multibulk
    /// into `self.inline`, with `self.args` indexing it.
    fn split_inline(&mut self, line: &[u8]) -> Result<FrameKind, ProtocolError> {
        self.args.clear();
        self.inline.clear();
        self.scratch.clear();
        split_args(line, &mut self.scratch, &mut self.args)?;
        if self.args.is_empty() {
            return Ok(FrameKind::Empty);
        }
        self.inline.push(b'*');
        push_decimal(&mut self.inline, self.args.len());
        self.inline.extend_from_slice(b"\r\n");
        for arg in self.args.iter_mut() {
            let bytes = self.scratch.get(arg.clone()).unwrap_or_default();
            self.inline.push(b'$');
            push_decimal(&mut self.inline, bytes.len());
            self.inline.extend_from_slice(b"\r\n");
            let start = self.inline.len();
            self.inline.extend_from_slice(bytes);
            *arg = start..self.inline.len();
            self.inline.extend_from_slice(b"\r\n");
        }
        Ok(FrameKind::Inline)
    }
}

/// C's `isspace` in the "C" locale, which is what `sdssplitargs` uses to skip blanks.
fn is_c_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Redis's `sdssplitargs`, byte for byte: unescaped arguments are appended to `out` and
/// their ranges to `ranges`. `line` holds no NUL (the line search stops at NUL), so reading
/// past its end as 0 reproduces the C code's reliance on the terminating NUL exactly,
/// including its odd corners (`a"b c"` is one argument `ab c`; `\v` and `\f` are blanks
/// between arguments but part of an unquoted one).
fn split_args(
    line: &[u8],
    out: &mut Vec<u8>,
    ranges: &mut Vec<Range<usize>>,
) -> Result<(), ProtocolError> {
    let at = |i: usize| line.get(i).copied().unwrap_or(0);
    let mut p = 0;
    loop {
        while is_c_space(at(p)) {
            p += 1;
        }
        if at(p) == 0 {
            return Ok(());
        }
        let start = out.len();
        let (mut in_dq, mut in_sq, mut done) = (false, false, false);
        while !done {
            let c = at(p);
            if in_dq {
                if c == b'\\' && at(p + 1) == b'x' {
                    if let (Some(hi), Some(lo)) = (hex_value(at(p + 2)), hex_value(at(p + 3))) {
                        out.push(hi * 16 + lo);
                        p += 3;
                    } else {
                        // `\x` without two hex digits is an ordinary escape: `x`.
                        p += 1;
                        out.push(b'x');
                    }
                } else if c == b'\\' && at(p + 1) != 0 {
                    p += 1;
                    out.push(match at(p) {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'b' => 0x08,
                        b'a' => 0x07,
                        other => other,
                    });
                } else if c == b'"' {
                    // A closing quote must be followed by a blank or the end.
                    if at(p + 1) != 0 && !is_c_space(at(p + 1)) {
                        return Err(ProtocolError::UnbalancedQuotes);
                    }
                    done = true;
                } else if c == 0 {
                    return Err(ProtocolError::UnbalancedQuotes);
                } else {
                    out.push(c);
                }
            } else if in_sq {
                if c == b'\\' && at(p + 1) == b'\'' {
                    p += 1;
                    out.push(b'\'');
                } else if c == b'\'' {
                    if at(p + 1) != 0 && !is_c_space(at(p + 1)) {
                        return Err(ProtocolError::UnbalancedQuotes);
                    }
                    done = true;
                } else if c == 0 {
                    return Err(ProtocolError::UnbalancedQuotes);
                } else {
                    out.push(c);
                }
            } else {
                match c {
                    b' ' | b'\n' | b'\r' | b'\t' | 0 => done = true,
                    b'"' => in_dq = true,
                    b'\'' => in_sq = true,
                    _ => out.push(c),
                }
            }
            if at(p) != 0 {
                p += 1;
            }
        }
        ranges.push(start..out.len());
    }
}

/// Redis's `string2ll`: an optional `-`, then `0` alone or digits without a leading zero,
/// nothing else, at most 20 bytes, within i64.
fn string2ll(s: &[u8]) -> Option<i64> {
    // LONG_STR_SIZE is 21: longer strings are refused before looking at them.
    if s.is_empty() || s.len() >= 21 {
        return None;
    }
    if s == b"0" {
        return Some(0);
    }
    let (negative, digits) = match s.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, s),
    };
    match digits.first() {
        Some(b'1'..=b'9') => {}
        _ => return None,
    }
    let mut v: u64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    if negative {
        if v > i64::MAX as u64 + 1 {
            return None;
        }
        Some((v as i64).wrapping_neg())
    } else {
        i64::try_from(v).ok()
    }
}

/// Appends `n` in decimal (lengths for the re-encoded inline command).
fn push_decimal(out: &mut Vec<u8>, mut n: usize) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}
