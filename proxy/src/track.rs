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

/// What kind of command it was, for the count of writes forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Read,
    Write,
    Script,
}

/// The effects of the command in `args` (ranges into `base`), run in `db`, pushed to `out`.
/// Reads push nothing.
pub(crate) fn touches(base: &[u8], args: &[Range<usize>], db: u32, out: &mut Vec<Touch>) -> Kind {
    let arg = |i: usize| -> &[u8] { args.get(i).map_or(&[][..], |r| &base[r.clone()]) };
    let Some(mut info) = command::lookup(arg(0)) else {
        return Kind::Read;
    };
    if info.has(flags::CONTAINER) {
        match command::lookup_sub(info, arg(1)) {
            Some(sub) => info = sub,
            None => return Kind::Read,
        }
    }
    let scripting = info.has(flags::SCRIPTING) && !info.name.ends_with("_ro");
    if !info.is_write() && !scripting {
        return Kind::Read;
    }
    let kind = if scripting { Kind::Script } else { Kind::Write };
    let num = |i: usize| -> Option<u32> { std::str::from_utf8(arg(i)).ok()?.parse().ok() };
    match info.name {
        "flushall" => {
            out.push(Touch::Barrier(Barrier::Flush(None)));
            return kind;
        }
        "flushdb" => {
            out.push(Touch::Barrier(Barrier::Flush(Some(db))));
            return kind;
        }
        "swapdb" => {
            if let (Some(a), Some(b)) = (num(1), num(2)) {
                out.push(Touch::Barrier(Barrier::Swap(a, b)));
            }
            return kind;
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
    kind
}

/// Counts a forwarded command of `kind` (for the comparison with the source's own count).
pub(crate) fn count(tracker: &Tracker, kind: Kind) {
    use std::sync::atomic::Ordering::Relaxed;
    match kind {
        Kind::Read => {}
        Kind::Write => {
            tracker.writes_forwarded.fetch_add(1, Relaxed);
        }
        Kind::Script => {
            tracker.scripts_forwarded.fetch_add(1, Relaxed);
        }
    }
}

/// The source's count of write calls from `INFO commandstats` (every `cmdstat_<name>`
/// line whose command the table says writes).
pub(crate) fn source_writes(commandstats: &str) -> u64 {
    commandstats
        .lines()
        .filter_map(cluster::info::commandstats_line)
        .filter(|stat| {
            let info = match stat.name.split_once('|') {
                Some((c, sub)) => command::lookup(c.as_bytes())
                    .and_then(|c| command::lookup_sub(c, sub.as_bytes())),
                None => command::lookup(stat.name.as_bytes()),
            };
            info.is_some_and(|i| i.is_write())
        })
        .map(|stat| stat.calls)
        .sum()
}

/// Watches for writers that bypass the proxy while the SCAN copy runs: every 2 s, the
/// source's count of write calls against the writes the proxy forwarded. The proxy counts
/// a write before the source runs it, so the source's share only runs ahead when someone
/// else writes. Calls inside scripts are counted by the source and not by the proxy:
/// periods with scripts are left out (the baseline moves on). Failed writes the proxy
/// counted can hide as many bypassing ones: an estimate, reported as
/// `untracked_writes` and warned about once.
pub(crate) async fn watch_untracked(
    tracker: std::sync::Arc<Tracker>,
    source: std::sync::Arc<cluster::Connector>,
    shutdown: tokio_util::sync::CancellationToken,
) {
    use std::sync::atomic::Ordering::Relaxed;
    let mut conn = None;
    let mut base: Option<(u64, u64, u64)> = None;
    let mut warned = false;
    // The first sample is taken as soon as tracking starts (the baseline), then one every
    // 2 s.
    let mut pause = std::time::Duration::ZERO;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(pause) => {}
        }
        if !tracker.enabled() || tracker.is_switched() {
            base = None;
            pause = std::time::Duration::from_millis(100);
            continue;
        }
        pause = std::time::Duration::from_secs(2);
        if conn.is_none() {
            conn = source.connect(&cluster::SessionSetup::default()).await.ok();
        }
        let Some(c) = conn.as_mut() else { continue };
        let r = match c.request(&[&[b"INFO", b"commandstats"]]).await {
            Ok(r) => r,
            Err(_) => {
                conn = None;
                continue;
            }
        };
        if r[0].first() == Some(&b'-') {
            tracing::info!("the source refuses INFO commandstats: writers that bypass the proxy can't be counted");
            return;
        }
        let src = source_writes(&String::from_utf8_lossy(&r[0]));
        let px = tracker.writes_forwarded.load(Relaxed);
        let scripts = tracker.scripts_forwarded.load(Relaxed);
        tracing::debug!(
            src,
            px,
            scripts,
            ?base,
            "writes counted by the source and the proxy"
        );
        match base {
            Some((s0, p0, sc0)) if sc0 == scripts => {
                let ahead = (src - s0.min(src)).saturating_sub(px - p0.min(px));
                if ahead > 0 {
                    tracker.untracked_writes.fetch_add(ahead, Relaxed);
                    if !warned {
                        warned = true;
                        tracing::warn!(
                            writes = ahead,
                            "the source took writes that did not pass through the proxy: their keys are not tracked; point every writer at the proxy, then check with verify"
                        );
                    }
                    // Counted once: the baseline moves past them.
                    base = Some((src, px, scripts));
                }
            }
            _ => base = Some((src, px, scripts)),
        }
    }
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
