//! What a client's write changes, for the SCAN copy's tracker ([`sync::tracking`]): the
//! keys it names (in the db it runs in; MOVE and COPY ... DB also the other db), the
//! keyless writes that change whole dbs (FLUSHDB, FLUSHALL, SWAPDB: barriers), and script
//! or function calls that declare no keys (what they write can't be known: counted).
//!
//! The session collects these per command and hands them to the tracker once the
//! command's reply has arrived (the write has run), never before: a mark made before the
//! write runs could be cleared by the copier, which would then read the old value.

use std::ops::Range;

use bytes::Bytes;
use resp::command::{self, flags};
use sync::tracking::{Barrier, Tracker};

/// One effect of a write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Touch {
    Key(u32, Bytes),
    Barrier(Barrier),
    /// A script or function call that declared no keys.
    Untracked,
}

/// The effects of the command in `args` (ranges into `base`), run in `db`, pushed to `out`.
/// Reads push nothing.
pub(crate) fn touches(base: &[u8], args: &[Range<usize>], db: u32, out: &mut Vec<Touch>) {
    let arg = |i: usize| -> &[u8] { args.get(i).map_or(&[][..], |r| &base[r.clone()]) };
    let Some(mut info) = command::lookup(arg(0)) else {
        return;
    };
    if info.has(flags::CONTAINER) {
        match command::lookup_sub(info, arg(1)) {
            Some(sub) => info = sub,
            None => return,
        }
    }
    let scripting = info.has(flags::SCRIPTING) && !info.name.ends_with("_ro");
    if !info.is_write() && !scripting {
        return;
    }
    let num = |i: usize| -> Option<u32> { std::str::from_utf8(arg(i)).ok()?.parse().ok() };
    match info.name {
        "flushall" => return out.push(Touch::Barrier(Barrier::Flush(None))),
        "flushdb" => return out.push(Touch::Barrier(Barrier::Flush(Some(db)))),
        "swapdb" => {
            if let (Some(a), Some(b)) = (num(1), num(2)) {
                out.push(Touch::Barrier(Barrier::Swap(a, b)));
            }
            return;
        }
        "move" => {
            if let Some(other) = num(2) {
                out.push(Touch::Key(other, Bytes::copy_from_slice(arg(1))));
            }
        }
        "copy" => {
            // COPY src dst [DB n] [REPLACE]: dst is in db n.
            let mut i = 3;
            while i + 1 < args.len() {
                if arg(i).eq_ignore_ascii_case(b"db") {
                    if let Some(n) = num(i + 1) {
                        out.push(Touch::Key(n, Bytes::copy_from_slice(arg(2))));
                    }
                }
                i += 1;
            }
        }
        _ => {}
    }
    let mut positions = Vec::new();
    command::key_positions(info, args.len(), arg, &mut positions);
    if scripting && positions.is_empty() {
        out.push(Touch::Untracked);
    }
    out.extend(
        positions
            .into_iter()
            .map(|p| Touch::Key(db, Bytes::copy_from_slice(arg(p)))),
    );
}

/// Hands the effects of writes that have run to the tracker.
pub(crate) fn apply(tracker: &Tracker, touches: Vec<Touch>) {
    for t in touches {
        match t {
            Touch::Key(db, k) => tracker.mark(db, &k),
            Touch::Barrier(b) => tracker.barrier(b),
            Touch::Untracked => {
                if tracker.enabled() {
                    tracker
                        .untracked_scripts
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
