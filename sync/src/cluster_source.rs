//! Syncing from a Redis Cluster source: one replication link per master.
//!
//! Why: a replica of one master sees that master's slots only, so a cluster is copied by
//! one link per master, each a full syncer ([`crate::syncer::run`]) with its own offsets,
//! checkpoint and lag, confined to its master's slots ([`crate::scope`]). What the links
//! share is decided here, once, so that no link takes another's keys for its own:
//! - The plan ([`Plan`]): each master and the slot ranges it serves when the sync starts.
//!   It is recorded on the target (in the main checkpoint hash:
//!   [`checkpoint::links_record`]) the first time; a restart against a source whose masters
//!   serve other ranges is refused (the links' checkpoints describe the old layout).
//! - The target ([`prepare_target`]): checked empty (or emptied, `sync.target_not_empty`)
//!   once, before any link starts; a link that must load again later empties only its
//!   own slots ([`crate::sink::node::purge`]).
//! - The source's topology is watched ([`watch`]): every [`WATCH_EVERY`] its slot map is
//!   read again, and any slot served by another master than in the plan (a migration, a
//!   failover, a master added or removed) stops every link and puts the whole sync in
//!   error, naming what changed. The links' own check (a key of a foreign slot in a
//!   stream) catches a migration while it is under way.

use std::sync::Arc;
use std::time::Duration;

use cluster::slots::{key_slot, NodeAddr, SlotMap, SLOT_COUNT};
use cluster::{Connector, NodeStream, SessionSetup};
use tokio::sync::watch;

use crate::checkpoint;
use crate::config::{NotEmpty, SyncConfig};
use crate::links::{LinkInfo, SyncSet};
use crate::reply::error_text;
use crate::scope::{ranges_text, LinkScope};
use crate::status::SyncStatus;
use crate::SyncError;

/// How often the source's slot map is read again while syncing.
pub const WATCH_EVERY: Duration = Duration::from_secs(2);

/// The masters of the source and the slots each serves, in slot order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub links: Vec<(NodeAddr, Vec<(u16, u16)>)>,
}

impl Plan {
    /// From a slot map: one link per master that serves slots.
    pub fn from_map(map: &SlotMap) -> Plan {
        let mut links: Vec<(NodeAddr, Vec<(u16, u16)>)> = Vec::new();
        for slot in 0..SLOT_COUNT {
            let Some(master) = map.master_for(slot) else {
                continue;
            };
            let i = match links.iter().position(|(m, _)| m == master) {
                Some(i) => i,
                None => {
                    links.push((master.clone(), Vec::new()));
                    links.len() - 1
                }
            };
            let ranges = &mut links[i].1;
            match ranges.last_mut() {
                Some(r) if r.1 + 1 == slot => r.1 = slot,
                _ => ranges.push((slot, slot)),
            }
        }
        Plan { links }
    }

    /// What is recorded on the target: the ranges of each link (not the addresses: a
    /// failover keeps the slots, and the new master continues its old master's history).
    pub fn describe(&self) -> String {
        self.links
            .iter()
            .map(|(_, r)| ranges_text(r))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The master serving `slot` in the plan.
    fn master_for(&self, slot: u16) -> Option<&NodeAddr> {
        self.links
            .iter()
            .find(|(_, rs)| rs.iter().any(|&(lo, hi)| (lo..=hi).contains(&slot)))
            .map(|(m, _)| m)
    }

    /// What differs between the plan and `map` (None: nothing), in words.
    pub fn changes(&self, map: &SlotMap) -> Option<String> {
        // (old master, new master) -> (first slot, count)
        let mut moves: Vec<(Option<&NodeAddr>, Option<&NodeAddr>, u16, usize)> = Vec::new();
        for slot in 0..SLOT_COUNT {
            let was = self.master_for(slot);
            let now = map.master_for(slot);
            if was == now {
                continue;
            }
            match moves.iter_mut().find(|m| m.0 == was && m.1 == now) {
                Some(m) => m.3 += 1,
                None => moves.push((was, now, slot, 1)),
            }
        }
        if moves.is_empty() {
            return None;
        }
        let show = |n: Option<&NodeAddr>| n.map_or("no master".to_string(), |a| a.to_string());
        let parts: Vec<String> = moves
            .iter()
            .map(|(was, now, first, n)| {
                let what = if *n == 1 {
                    format!("slot {first}")
                } else {
                    format!("{n} slots from slot {first}")
                };
                format!("{what} moved from {} to {}", show(*was), show(*now))
            })
            .collect();
        Some(format!(
            "the source's topology changed during the sync: {} (a reshard, a failover, or a master added or removed); every link is stopped rather than leave the target half-synced; restart cutover to sync the new layout",
            parts.join("; ")
        ))
    }
}

/// Which node of each source master a link replicates from.
#[derive(Debug, Clone, Copy)]
pub enum LinkNodes<'a> {
    /// The master itself.
    Masters,
    /// A replica of it, from the source's slot map: the one `chosen` names for that
    /// master, else the first the map lists.
    Replicas {
        map: &'a SlotMap,
        chosen: &'a [NodeAddr],
    },
}

/// The links of `plan`: a status, a connector and a configuration each (`base` with the
/// link's source node and scope). Linked through replicas ([`LinkNodes::Replicas`]), each
/// link still carries its master's offsets: a replica passes its master's stream on with
/// the same replication ids and offsets, so checkpoints, lag and the cutover's wait for
/// each master's offset hold as they are; the cutover still fences the masters (the
/// link's `source` in [`LinkInfo`]).
pub fn links(
    plan: &Plan,
    seed: &Connector,
    base: &SyncConfig,
    nodes: LinkNodes<'_>,
) -> Result<(Vec<LinkInfo>, Vec<SyncConfig>), SyncError> {
    if let LinkNodes::Replicas { map, chosen } = nodes {
        check_chosen(plan, map, chosen)?;
    }
    let mut infos = Vec::new();
    let mut cfgs = Vec::new();
    for (master, ranges) in &plan.links {
        let node = |n: &NodeAddr| {
            seed.for_node(&n.host, n.port)
                .map(Arc::new)
                .map_err(|e| SyncError::Config(format!("source {n}: {e}")))
        };
        let source = node(master)?;
        let (link_source, addr) = match nodes {
            LinkNodes::Masters => (source.clone(), master.to_string()),
            LinkNodes::Replicas { map, chosen } => {
                let replica = replica_for(map, master, chosen)?;
                (node(replica)?, format!("{replica} (replica of {master})"))
            }
        };
        let scope = Arc::new(LinkScope::new(master.to_string(), ranges.clone()));
        let status = Arc::new(SyncStatus::default());
        let mut cfg = base.clone();
        cfg.source = crate::source::SourceSpec::Link(link_source);
        cfg.scope = Some(scope);
        cfgs.push(cfg);
        infos.push(LinkInfo {
            addr,
            ranges: ranges.clone(),
            source,
            status,
        });
    }
    Ok((infos, cfgs))
}

/// The replica a link for `master` replicates from: the one `chosen` names, else the
/// first the map lists.
fn replica_for<'m>(
    map: &'m SlotMap,
    master: &NodeAddr,
    chosen: &[NodeAddr],
) -> Result<&'m NodeAddr, SyncError> {
    let replicas = replicas_of(map, master);
    replicas
        .iter()
        .find(|r| chosen.contains(r))
        .or(replicas.first())
        .ok_or_else(|| {
            SyncError::Config(format!(
                "sync.source_nodes = \"replicas\": the source master {master} has no replica to sync from"
            ))
        })
}

fn replicas_of<'m>(map: &'m SlotMap, master: &NodeAddr) -> &'m [NodeAddr] {
    map.shards()
        .iter()
        .find(|s| &s.master == master)
        .map_or(&[], |s| s.replicas.as_slice())
}

/// Every replica in `chosen` (`sync.source_replicas`) must be a replica of a master in
/// the plan, and no master may have two: a name that matches nothing is a typo or a
/// stale list, and silently linking elsewhere would put the full sync on a node the user
/// meant to spare.
fn check_chosen(plan: &Plan, map: &SlotMap, chosen: &[NodeAddr]) -> Result<(), SyncError> {
    for (i, want) in chosen.iter().enumerate() {
        let owner = plan
            .links
            .iter()
            .map(|(m, _)| m)
            .find(|m| replicas_of(map, m).contains(want));
        let Some(master) = owner else {
            let known: Vec<String> = plan
                .links
                .iter()
                .flat_map(|(m, _)| replicas_of(map, m).iter().map(|r| r.to_string()))
                .collect();
            return Err(SyncError::Config(format!(
                "sync.source_replicas: {want} is not a replica of any source master (the source's replicas: {})",
                if known.is_empty() { "none".to_string() } else { known.join(", ") }
            )));
        };
        if let Some(other) = chosen[..i]
            .iter()
            .find(|o| replicas_of(map, master).contains(o))
        {
            return Err(SyncError::Config(format!(
                "sync.source_replicas names two replicas of the master {master}: {other} and {want}; a master has one link"
            )));
        }
    }
    Ok(())
}

/// Runs every link until `stop` turns true: the target prepared once, then the links, and
/// the source's topology watched meanwhile.
pub async fn run(
    set: Arc<SyncSet>,
    cfgs: Vec<SyncConfig>,
    plan: Plan,
    seed: Arc<Connector>,
    mut stop: watch::Receiver<bool>,
) {
    let Some(base) = cfgs.first().cloned() else {
        set.fail("the source cluster has no master serving slots".into());
        return;
    };
    let mut backoff = Duration::from_millis(200);
    loop {
        let r = tokio::select! {
            r = prepare_target(&base, &plan) => r,
            _ = stop.wait_for(|s| *s) => return,
        };
        match r {
            Ok(()) => break,
            Err(e) if e.is_retryable() => {
                tracing::warn!(error = %e, "preparing the target for the links; retrying");
                for l in &set.links {
                    l.status.set_error(e.to_string());
                }
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            Err(e) => {
                tracing::error!(error = %e, "sync stopped");
                set.fail(e.to_string());
                return;
            }
        }
    }
    let (link_stop, link_stop_rx) = watch::channel(false);
    for (cfg, info) in cfgs.into_iter().zip(&set.links) {
        tracing::info!(link = %info.addr, slots = %ranges_text(&info.ranges), "source link starting");
        tokio::spawn(crate::syncer::run(
            cfg,
            info.status.clone(),
            link_stop_rx.clone(),
        ));
    }
    tokio::select! {
        why = watch(&plan, &seed) => {
            tracing::error!(reason = %why, "sync stopped");
            set.fail(why);
        }
        _ = stop.wait_for(|s| *s) => {}
    }
    let _ = link_stop.send(true);
}

/// Reads the source's slot map every [`WATCH_EVERY`] (from the URL's node, else from the
/// masters of the plan) until it differs from `plan`; returns what changed.
async fn watch(plan: &Plan, seed: &Connector) -> String {
    let mut candidates = vec![NodeAddr::from(seed.url())];
    candidates.extend(plan.links.iter().map(|(m, _)| m.clone()));
    let mut failures = 0u32;
    loop {
        tokio::time::sleep(WATCH_EVERY).await;
        let mut map = None;
        for addr in &candidates {
            let Ok(c) = seed.for_node(&addr.host, addr.port) else {
                continue;
            };
            let fetched = async {
                let mut conn = c.connect(&SessionSetup::default()).await.ok()?;
                SlotMap::fetch(&mut conn, addr).await.ok()
            };
            if let Ok(Some(m)) = tokio::time::timeout(Duration::from_secs(5), fetched).await {
                if m.assigned_slots() > 0 {
                    map = Some(m);
                    break;
                }
            }
        }
        match map {
            Some(m) => {
                failures = 0;
                if let Some(why) = plan.changes(&m) {
                    return why;
                }
            }
            None => {
                failures += 1;
                if failures % 5 == 1 {
                    tracing::warn!(
                        "cannot read the source's slot map to watch its topology; retrying"
                    );
                }
            }
        }
    }
}

/// Decides, once for every link, what the target may hold: a completed cutover refuses;
/// the plan recorded by an earlier run must be this one (the links resume from their own
/// checkpoints), else it is refused (or, with `sync.target_not_empty = "flush"`, the
/// target starts over); with no plan recorded, the target must be empty (or is emptied
/// when `sync.target_not_empty = "flush"`, decided as for every sink by
/// [`crate::sink::run::must_empty`]) and the plan is recorded.
pub async fn prepare_target(cfg: &SyncConfig, plan: &Plan) -> Result<(), SyncError> {
    let tgt = |e: &dyn std::fmt::Display| SyncError::Target(e.to_string());
    let mut control = connect(&cfg.target).await?;
    let is_cluster = crate::sink::is_cluster(&mut control).await?;
    let (nodes, mut record) = if is_cluster {
        let origin = NodeAddr::from(cfg.target.url());
        let map = SlotMap::fetch(&mut control, &origin)
            .await
            .map_err(|e| tgt(&e))?;
        let mut nodes = Vec::new();
        for m in map.masters() {
            let c = cfg
                .target
                .for_node(&m.host, m.port)
                .map_err(|e| SyncError::Config(format!("target {m}: {e}")))?;
            nodes.push(Arc::new(c));
        }
        let owner = map
            .master_for(key_slot(checkpoint::KEY))
            .ok_or_else(|| tgt(&"no master serves the checkpoint's slot"))?;
        let c = cfg
            .target
            .for_node(&owner.host, owner.port)
            .map_err(|e| SyncError::Config(format!("target {owner}: {e}")))?;
        (nodes, connect(&Arc::new(c)).await?)
    } else {
        let db = cfg.checkpoint_db.to_string();
        let r = control
            .request(&[&[b"SELECT", db.as_bytes()]])
            .await
            .map_err(|e| tgt(&e))?;
        if let Some(e) = error_text(&r[0]) {
            return Err(SyncError::Target(format!("SELECT {db}: {e}")));
        }
        (vec![cfg.target.clone()], control)
    };
    let r = record
        .request(&[&checkpoint::LINKS_QUERY])
        .await
        .map_err(|e| tgt(&e))?;
    let recorded = checkpoint::parse_links(&r[0])?;
    if recorded.switched {
        return Err(crate::sink::run::live_target());
    }
    let wanted = plan.describe();
    match recorded.plan {
        Some(recorded) if recorded == wanted => {
            tracing::info!(plan = %wanted, "the target holds these links' checkpoints: each resumes from its own");
            return Ok(());
        }
        Some(recorded) if cfg.not_empty == NotEmpty::Flush => {
            tracing::warn!(recorded = %recorded, now = %wanted, "the target's checkpoints were written for another layout of the source's slots; sync.target_not_empty = \"flush\": starting over");
        }
        Some(recorded) => {
            return Err(SyncError::Config(format!(
                "the target's checkpoints were written for a source whose masters served the slots [{recorded}], and the source's masters now serve [{wanted}]: its topology changed since, so the checkpoints no longer describe one master each. Empty the target (its __cutover:* keys too), or set sync.target_not_empty = \"flush\", to sync from scratch"
            )));
        }
        None => {}
    }
    let mut busy = Vec::new();
    for n in &nodes {
        let mut c = connect(n).await?;
        let r = c
            .request(&[&[b"INFO", b"keyspace"]])
            .await
            .map_err(|e| tgt(&e))?;
        let keys: u64 = ::cluster::info::keyspace(&String::from_utf8_lossy(&r[0]))
            .into_iter()
            .map(|(_, k)| k)
            .sum();
        if keys > 0 {
            busy.push((n.clone(), format!("{} ({keys} keys)", n.addr())));
        }
    }
    let names: Vec<String> = busy.iter().map(|(_, s)| s.clone()).collect();
    if crate::sink::run::must_empty(&names, false, false, cfg.not_empty, false)? {
        tracing::warn!(nodes = %names.join(", "), "emptying the target before the links' full loads");
        for (n, _) in &busy {
            let mut c = connect(n).await?;
            let r = c.request(&[&[b"FLUSHALL"]]).await.map_err(|e| tgt(&e))?;
            if let Some(e) = error_text(&r[0]) {
                return Err(SyncError::Target(format!("FLUSHALL on {}: {e}", n.addr())));
            }
        }
    }
    let r = record
        .request(&[&checkpoint::links_record(wanted.as_bytes())])
        .await
        .map_err(|e| tgt(&e))?;
    if let Some(e) = error_text(&r[0]) {
        return Err(SyncError::Target(format!("recording the links: {e}")));
    }
    tracing::info!(plan = %wanted, links = plan.links.len(), "target prepared for one link per source master");
    Ok(())
}

async fn connect(c: &Arc<Connector>) -> Result<NodeStream, SyncError> {
    c.connect(&SessionSetup::default()).await.map_err(|e| {
        if e.is_retryable() {
            SyncError::Target(e.to_string())
        } else {
            SyncError::Config(format!("target: {e}"))
        }
    })
}

#[cfg(test)]
mod tests;
