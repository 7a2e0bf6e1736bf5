//! Reading the target's replies (frames, errors, arrays) and naming commands and keys in
//! messages (names only, never values).

use resp::{Limits, RequestParser};

use crate::SyncError;

/// Splits a run of reply frames.
pub fn frames(replies: &[u8]) -> Result<Vec<&[u8]>, SyncError> {
    let mut out = Vec::new();
    let mut scanner = resp::ReplyScanner::default();
    let mut pos = 0;
    while pos < replies.len() {
        match scanner.scan(&replies[pos..]) {
            Ok(Some(n)) => {
                out.push(&replies[pos..pos + n]);
                pos += n;
            }
            _ => return Err(SyncError::Target("invalid reply framing".into())),
        }
    }
    Ok(out)
}

/// The text of an error frame (without `-` and CRLF).
pub fn error_text(frame: &[u8]) -> Option<String> {
    if frame.first() == Some(&b'-') {
        Some(
            String::from_utf8_lossy(&frame[1..])
                .trim_end()
                .chars()
                .take(300)
                .collect(),
        )
    } else {
        None
    }
}

/// Whether an error from the target is worth retrying (the target is busy or loading).
pub fn transient(err: &str) -> bool {
    err.starts_with("LOADING")
        || err.starts_with("BUSY")
        || err.starts_with("TRYAGAIN")
        || err.starts_with("MASTERDOWN")
}

/// Elements of an array frame (`*N` then N frames). None for other types.
pub fn array_elements(frame: &[u8]) -> Option<Vec<&[u8]>> {
    if frame.first() != Some(&b'*') {
        return None;
    }
    let end = memchr::memchr(b'\r', frame)?;
    let n: i64 = std::str::from_utf8(&frame[1..end]).ok()?.parse().ok()?;
    if n < 0 {
        return None;
    }
    let body = &frame[end + 2..];
    let all = frames(body).ok()?;
    (all.len() == n as usize).then_some(all)
}

/// The error for a command of the full load the target refused.
pub(crate) fn load_error(cmd: &str, key: &[u8], e: String) -> SyncError {
    if transient(&e) {
        return SyncError::Target(format!("{cmd}: {e}"));
    }
    let hint = if e.contains("payload version") {
        " (the target's Redis is older than the source's: its RDB format can't take these values)"
    } else {
        ""
    };
    SyncError::Apply {
        command: cmd.to_string(),
        key: show_key(key),
        offset: -1,
        reply: format!("{e}{hint}"),
    }
}

/// Keys in messages: printable, bounded. (Keys are names, not values; values never appear.)
pub(crate) fn show_key(k: &[u8]) -> String {
    let mut s: String = String::from_utf8_lossy(&k[..k.len().min(128)])
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if k.len() > 128 {
        s.push_str("...");
    }
    s
}

/// Name and first key of the i-th raw command (for messages; never values).
pub(crate) fn nth_command(cmds: &[u8], i: usize) -> (String, String) {
    let mut parser = RequestParser::new(Limits::default());
    let mut pos = 0;
    let mut n = 0;
    while pos < cmds.len() {
        let Ok(Some(f)) = parser.parse(&cmds[pos..]) else {
            break;
        };
        if n == i {
            let args = parser.args();
            let base = &cmds[pos..];
            let name = args
                .first()
                .map(|r| String::from_utf8_lossy(&base[r.clone()]).to_uppercase())
                .unwrap_or_default();
            let key = resp::command::lookup(name.as_bytes())
                .and_then(|info| {
                    let mut keys = Vec::new();
                    resp::command::key_positions(
                        info,
                        args.len(),
                        |j| args.get(j).map(|r| &base[r.clone()]).unwrap_or(&[]),
                        &mut keys,
                    );
                    keys.first()
                        .and_then(|&k| args.get(k))
                        .map(|r| show_key(&base[r.clone()]))
                })
                .unwrap_or_default();
            return (name, key);
        }
        pos += f.len;
        n += 1;
    }
    ("(unknown)".into(), String::new())
}
