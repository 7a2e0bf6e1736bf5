//! Verify against an RDB file instead of a live source: after `cutover restore` (or any
//! load of a backup), does the target hold what the file holds? The file is read key by
//! key (keys whose TTL has passed are left out: a restore does not create them) and each
//! key compared with the target's as in a live verify; then the target's keys the file
//! does not have are extras (the file's key names are remembered as 64-bit hashes per db,
//! a few bytes a key).

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use cluster::Connector;

use super::{compare, Difference, Found, Options, Progress, Report};
use crate::checkpoint::OWN_PREFIX;
use crate::rdb::{Event, RdbReader};
use crate::source::nodes::{Nodes, Read};
use crate::SyncError;

/// Keys compared per round trip.
const BATCH: usize = 2000;

fn key_hash(key: &[u8]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut h);
    h.finish()
}

/// Compares the target with the RDB file at `path`.
pub async fn run(
    path: &std::path::Path,
    target: &Arc<Connector>,
    target_cluster: bool,
    opts: &Options,
    progress: &Progress,
) -> Result<Report, SyncError> {
    let started = std::time::Instant::now();
    let file_err = |e: std::io::Error| SyncError::File(format!("{}: {e}", path.display()));
    let f = std::fs::File::open(path).map_err(file_err)?;
    let mut rd = RdbReader::new(std::io::BufReader::with_capacity(1 << 20, f));
    let mut tgt = Nodes::connect(target, target_cluster)
        .await
        .map_err(super::as_target)?;
    progress.total.store(
        std::fs::metadata(path).map(|m| m.len()).unwrap_or(0),
        Ordering::Relaxed,
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let mut version = 0u16;
    let mut seen: HashMap<u32, HashSet<u64>> = HashMap::new();
    let mut batch: Vec<(Bytes, Read)> = Vec::with_capacity(BATCH);
    let mut batch_db = 0u32;
    let mut found = Vec::new();
    let pattern_ok = |k: &[u8]| opts.pattern.as_ref().is_none_or(|p| glob(p, k));
    loop {
        let ev = rd
            .next_event()
            .map_err(|e| SyncError::File(format!("{}: {e}", path.display())))?;
        let flush = match &ev {
            Some(Event::Key(k)) => batch.len() >= BATCH || (k.db != batch_db && !batch.is_empty()),
            None | Some(Event::End { .. }) => !batch.is_empty(),
            _ => false,
        };
        if flush {
            check(&mut tgt, batch_db, &mut batch, opts, &mut found, progress).await?;
        }
        match ev {
            Some(Event::Header { version: v }) => version = v as u16,
            Some(Event::Key(k)) => {
                let expired = k.expire_ms.is_some_and(|e| e <= now);
                let skip = expired
                    || opts.db.is_some_and(|d| d != k.db)
                    || !pattern_ok(&k.key)
                    || k.key.starts_with(OWN_PREFIX);
                if skip {
                    continue;
                }
                seen.entry(k.db).or_default().insert(key_hash(&k.key));
                batch_db = k.db;
                let payload = Bytes::from(k.restore_payload(version));
                batch.push((
                    k.key.clone(),
                    Read::Value {
                        payload,
                        expire_ms: k.expire_ms.unwrap_or(0),
                    },
                ));
            }
            Some(Event::BigValueStart { key, .. }) => {
                return Err(SyncError::File(format!(
                    "{}: key {} is bigger than verify reads at once",
                    path.display(),
                    crate::reply::show_key(&key)
                )))
            }
            None | Some(Event::End { .. }) => break,
            Some(_) => {}
        }
    }
    // The target's keys the file does not hold.
    let (dbs, _) = tgt.keyspace().await.map_err(super::as_target)?;
    for db in dbs {
        if opts.db.is_some_and(|d| d != db) {
            continue;
        }
        let empty = HashSet::new();
        let mine = seen.get(&db).unwrap_or(&empty);
        for node in 0..tgt.conns.len() {
            let mut cursor = Bytes::from_static(b"0");
            loop {
                let (next, keys) = tgt.conns[node]
                    .scan_match(db, &cursor, opts.pattern.as_deref())
                    .await
                    .map_err(super::as_target)?;
                for k in keys {
                    if !mine.contains(&key_hash(&k)) {
                        found.push(Found {
                            kind: Difference::Extra,
                            db,
                            key: k,
                            detail: "not in the file".into(),
                        });
                    }
                }
                if &next[..] == b"0" {
                    break;
                }
                cursor = next;
            }
        }
    }
    found.sort_by(|a, b| (a.kind, a.db, &a.key).cmp(&(b.kind, b.db, &b.key)));
    Ok(Report {
        checked: progress.checked.load(Ordering::Relaxed),
        differences: found,
        settled: 0,
        secs: started.elapsed().as_secs_f64(),
    })
}

/// Compares a batch of the file's keys with the target's.
async fn check(
    tgt: &mut Nodes,
    db: u32,
    batch: &mut Vec<(Bytes, Read)>,
    opts: &Options,
    found: &mut Vec<Found>,
    progress: &Progress,
) -> Result<(), SyncError> {
    let keys: Vec<Bytes> = batch.iter().map(|(k, _)| k.clone()).collect();
    let theirs = super::read_on(tgt, db, &keys, true)
        .await
        .map_err(super::as_target)?;
    for ((k, mine), theirs) in batch.drain(..).zip(theirs) {
        if let Some((kind, detail)) = compare(&mine, &theirs, opts.ttl_tolerance_ms) {
            found.push(Found {
                kind,
                db,
                key: k,
                detail,
            });
        }
    }
    progress
        .checked
        .fetch_add(keys.len() as u64, Ordering::Relaxed);
    Ok(())
}

/// Redis's glob (`*`, `?`, `[...]`, `\\`) over bytes, for `--match` on a file.
fn glob(p: &[u8], s: &[u8]) -> bool {
    match (p.first(), s.first()) {
        (None, None) => true,
        (None, Some(_)) => false,
        (Some(b'*'), _) => glob(&p[1..], s) || (!s.is_empty() && glob(p, &s[1..])),
        (Some(_), None) => false,
        (Some(b'?'), Some(_)) => glob(&p[1..], &s[1..]),
        (Some(b'['), Some(&c)) => {
            let Some(end) = p.iter().skip(1).position(|&x| x == b']').map(|i| i + 1) else {
                return p[0] == c && glob(&p[1..], &s[1..]);
            };
            let set = &p[1..end];
            let (neg, set) = match set.first() {
                Some(b'^') => (true, &set[1..]),
                _ => (false, set),
            };
            let mut hit = false;
            let mut i = 0;
            while i < set.len() {
                if i + 2 < set.len() && set[i + 1] == b'-' {
                    if set[i] <= c && c <= set[i + 2] {
                        hit = true;
                    }
                    i += 3;
                } else {
                    if set[i] == c {
                        hit = true;
                    }
                    i += 1;
                }
            }
            hit != neg && glob(&p[end + 1..], &s[1..])
        }
        (Some(b'\\'), Some(&c)) if p.len() > 1 => p[1] == c && glob(&p[2..], &s[1..]),
        (Some(&x), Some(&c)) => x == c && glob(&p[1..], &s[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::glob;

    #[test]
    fn glob_matches_as_redis_does() {
        assert!(glob(b"user:*", b"user:1"));
        assert!(!glob(b"user:*", b"users"));
        assert!(glob(b"h?llo", b"hello"));
        assert!(glob(b"h[ae]llo", b"hallo"));
        assert!(!glob(b"h[^e]llo", b"hello"));
        assert!(glob(b"k[0-9]", b"k7"));
        assert!(glob(b"a\\*", b"a*"));
        assert!(!glob(b"a\\*", b"ab"));
        assert!(glob(b"*", b""));
    }
}
