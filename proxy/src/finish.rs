//! FINISH: ends a migration once the clients are on the target. It marks the old source
//! finished (`__cutover:finished`: a cutover started again with the same configuration
//! refuses to route there, saying the configuration should now name the target as the
//! source), stops the syncer and the source's write pause, and removes cutover's own keys
//! from the target (`__cutover:*`: the checkpoint and switch record, per-slot checkpoints on
//! a cluster, a link's checkpoints), saying what it removed.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::cutover::{connect_for_key, connect_masters, connect_node, request, text};
use crate::route::Side;
use crate::session::Shared;
use crate::upstream::Upstream;

const FINISHED_KEY: &[u8] = sync::checkpoint::FINISHED_KEY;

/// Runs FINISH; the summary of what it did.
pub async fn run(sh: &Arc<Shared>) -> Result<String, String> {
    let route = sh.router.route();
    if route.side != Side::Target {
        return Err(
            "no CUTOVER yet: FINISH ends a migration once the clients are on the target".into(),
        );
    }
    let Some(target) = sh.target.load_full() else {
        return Err("no target configured".into());
    };
    // The old source first: once it says finished, nothing can route back to it.
    sh.cutover.finished.store(true, Ordering::Release);
    if let Some(sync) = &sh.sync {
        for l in &sync.links {
            let mut c = connect_node(&l.source, "source").await?;
            request(&mut c, &[b"CLIENT", b"UNPAUSE"], "source").await?;
        }
    }
    let epoch = route.epoch.to_string();
    let mut c = connect_for_key(&sh.source, FINISHED_KEY, "source").await?;
    let r = request(&mut c, &[b"SET", FINISHED_KEY, epoch.as_bytes()], "source").await?;
    if r.first() == Some(&b'-') {
        return Err(format!(
            "the source refused the finished mark: {}",
            text(&r)
        ));
    }
    let _ = request(&mut c, &[b"DEL", sync::checkpoint::ATTEMPT_KEY], "source").await;
    let _ = sh.stop_sync.send(true);
    let pattern = [sync::checkpoint::OWN_PREFIX, b"*"].concat();
    let removed = remove_own_keys(sh, &target, &pattern).await?;
    tracing::warn!(epoch = route.epoch, removed = %removed, "FINISH: the migration is over");
    Ok(format!(
        "finished: the source is marked ({}); removed from the target: {removed}; configure the target as the source from now on",
        String::from_utf8_lossy(FINISHED_KEY)
    ))
}

/// Right after a switch: the per-slot checkpoints of a cluster target (`__cutover:cp:{n}`,
/// up to 16,384 keys) serve no one any more (a restarted cutover routes to the target and
/// never resumes the sync), so they go at once, in the background.
pub fn remove_slot_checkpoints(sh: Arc<Shared>, target: Arc<Upstream>) {
    if target.cluster().is_none() {
        return;
    }
    tokio::spawn(async move {
        let pattern = [sync::slot_checkpoint::PREFIX, b"*"].concat();
        match remove_own_keys(&sh, &target, &pattern).await {
            Ok(what) => {
                tracing::info!(removed = %what, "after the switch: per-slot checkpoints removed from the target")
            }
            Err(e) => {
                tracing::warn!(error = %e, "removing the per-slot checkpoints from the target (FINISH removes them too)")
            }
        }
    });
}

/// Deletes every key matching `pattern` (cutover's own) from the target (each master of a
/// cluster; the checkpoint db of one server). Returns what went, by kind.
async fn remove_own_keys(sh: &Shared, target: &Upstream, pattern: &[u8]) -> Result<String, String> {
    let db = if target.cluster().is_some() {
        0
    } else {
        sh.settings.sync.checkpoint_db
    };
    let dbs = db.to_string();
    let (mut main, mut slots, mut links, mut other) = (0u64, 0u64, 0u64, 0u64);
    for mut m in connect_masters(target, "target").await? {
        request(&mut m, &[b"SELECT", dbs.as_bytes()], "target").await?;
        let mut cursor = b"0".to_vec();
        loop {
            let r = request(
                &mut m,
                &[b"SCAN", &cursor, b"MATCH", pattern, b"COUNT", b"1000"],
                "target",
            )
            .await?;
            let (next, keys) =
                scan_reply(&r).ok_or_else(|| format!("target: SCAN: {}", text(&r)))?;
            for k in &keys {
                let mut args: Vec<&[u8]> = vec![b"UNLINK"];
                args.push(k);
                request(&mut m, &args, "target").await?;
                if k.as_slice() == sync::checkpoint::KEY {
                    main += 1;
                } else if k.starts_with(sync::slot_checkpoint::PREFIX) {
                    slots += 1;
                } else if k.starts_with(sync::checkpoint::KEY_PREFIX) {
                    links += 1;
                } else {
                    other += 1;
                }
            }
            if next == b"0" {
                break;
            }
            cursor = next;
        }
    }
    let mut parts = Vec::new();
    if main > 0 {
        parts.push("the checkpoint and switch record (__cutover:checkpoint)".to_string());
    }
    if slots > 0 {
        parts.push(format!(
            "{slots} per-slot checkpoints ({}n}})",
            String::from_utf8_lossy(sync::slot_checkpoint::PREFIX)
        ));
    }
    if links > 0 {
        parts.push(format!(
            "{links} link checkpoints (__cutover:checkpoint:<slot>)"
        ));
    }
    if other > 0 {
        parts.push(format!("{other} other __cutover:* keys"));
    }
    if parts.is_empty() {
        parts.push("nothing (no __cutover:* key left)".into());
    }
    Ok(parts.join(", "))
}

/// `*2 $cursor *n keys...` of a SCAN reply.
fn scan_reply(r: &[u8]) -> Option<(Vec<u8>, Vec<Vec<u8>>)> {
    let v = resp::Value::decode_one(r).ok()?;
    let [cursor, keys] = v.items()? else {
        return None;
    };
    let keys = keys
        .items()?
        .iter()
        .map(|k| k.bytes().map(<[u8]>::to_vec))
        .collect::<Option<Vec<_>>>()?;
    Some((cursor.bytes()?.to_vec(), keys))
}

/// At start: whether the source was marked finished by FINISH.
pub async fn finished_marked(source: &Upstream) -> Result<bool, String> {
    let mut c = connect_for_key(source, FINISHED_KEY, "source").await?;
    let r = request(&mut c, &[b"EXISTS", FINISHED_KEY], "source").await?;
    Ok(&r[..] == b":1\r\n")
}
