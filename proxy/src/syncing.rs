//! Starting the syncer (`--target`): one replication link for a standalone source, one per
//! master for a Redis Cluster source ([`sync::cluster_source`]), seen by STATUS, the
//! metrics and CUTOVER as one [`SyncSet`].

use std::sync::Arc;

use anyhow::Context;
use sync::{SyncSet, SyncStatus};
use tokio::sync::watch;

use crate::config::{Endpoint, Settings};
use crate::upstream::Upstream;

/// Starts syncing `source` into `target` until `stop` turns true.
pub fn start(
    settings: &Settings,
    source: &Upstream,
    target: &Endpoint,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<Arc<SyncSet>> {
    let seed = Arc::new(
        cluster::Connector::new(
            settings.source.url.clone(),
            settings.source.tls_ca_file.as_deref(),
            settings.connect_timeout,
        )
        .context("source")?,
    );
    use crate::config::SourceMode;
    let tracker = match (settings.sync.source_mode, source.cluster()) {
        (SourceMode::Psync, _) => None,
        // A cluster source is replicated per master; a managed cluster that refuses it
        // needs source_mode = "scan".
        (SourceMode::Auto, Some(_)) => None,
        (mode, _) => Some(Arc::new(sync::tracking::Tracker::new(
            settings.sync.scan_max_dirty_keys,
            mode == SourceMode::Scan,
        ))),
    };
    let target_connector = Arc::new(
        cluster::Connector::new(
            target.url.clone(),
            target.tls_ca_file.as_deref(),
            settings.connect_timeout,
        )
        .context("target")?,
    );
    let scan_spec = tracker.as_ref().map(|t| sync::source::scan::ScanSpec {
        source: seed.clone(),
        tracker: t.clone(),
        max_ops: settings.sync.scan_max_ops,
        cluster: source.cluster().is_some(),
        target: Some(target_connector.clone()),
    });
    let (source_spec, scan_fallback) = match (settings.sync.source_mode, scan_spec) {
        (SourceMode::Scan, Some(spec)) => (sync::source::SourceSpec::Scan(spec), None),
        (_, spec) => (sync::source::SourceSpec::Link(seed.clone()), spec),
    };
    let cfg = sync::SyncConfig {
        source: source_spec,
        scan_fallback,
        target: target_connector,
        listening_port: settings.listen.port(),
        not_empty: settings.sync.not_empty,
        on_full_resync: settings.sync.on_full_resync,
        checkpoint_db: settings.sync.checkpoint_db,
        forward_publish: settings.sync.forward_publish,
        max_txn_bytes: settings.sync.max_txn_bytes,
        max_inflight_bytes: settings.sync.max_inflight_bytes,
        spool_dir: settings.sync.spool_dir.clone(),
        spool_max_bytes: settings.sync.spool_max_bytes,
        big_value_bytes: settings.sync.big_value_bytes,
        db_map: settings.sync.db_map.clone(),
        cross_slot: settings.sync.cross_slot,
        scope: None,
        seed: settings.sync.seed.clone(),
    };
    if settings.sync.seed.is_some() && source.cluster().is_some() {
        anyhow::bail!(
            "sync.seed (--seed) takes one RDB of a standalone source; the source {} is a Redis Cluster",
            source.addr()
        );
    }
    let scanning = matches!(cfg.source, sync::source::SourceSpec::Scan(_));
    let set = match source.cluster() {
        // One link: a standalone source, or the SCAN copy (of every master).
        _ if scanning => {
            let status = Arc::new(SyncStatus::default());
            tracing::info!(target = %target.url, "syncer starting: the SCAN copy");
            tokio::spawn(sync::syncer::run(cfg, status.clone(), stop));
            Arc::new(SyncSet::single(source.addr(), seed, status).with_tracker(tracker))
        }
        None => {
            let status = Arc::new(SyncStatus::default());
            tracing::info!(target = %target.url, "syncer starting");
            tokio::spawn(sync::syncer::run(cfg, status.clone(), stop));
            Arc::new(SyncSet::single(source.addr(), seed, status).with_tracker(tracker))
        }
        Some(topo) => {
            // The masters and their slots as the proxy found them at start; the links
            // watch for any change from here on.
            // One reading of the map for both the plan and the replicas.
            let map = topo.map();
            let plan = sync::cluster_source::Plan::from_map(&map.slots);
            if plan.links.is_empty() {
                anyhow::bail!(
                    "the source {} is a Redis Cluster whose masters serve no slots: nothing to sync",
                    source.addr()
                );
            }
            let (links, cfgs) = sync::cluster_source::links(
                &plan,
                &seed,
                &cfg,
                if settings.sync.from_replicas {
                    sync::cluster_source::LinkNodes::Replicas {
                        map: &map.slots,
                        chosen: &settings.sync.chosen_replicas,
                    }
                } else {
                    sync::cluster_source::LinkNodes::Masters
                },
            )
            .context("source links")?;
            let set = Arc::new(SyncSet::new(links));
            tracing::info!(
                target = %target.url,
                links = plan.links.len(),
                plan = %plan.describe(),
                "syncer starting: one replication link per source master"
            );
            tokio::spawn(sync::cluster_source::run(
                set.clone(),
                cfgs,
                plan,
                seed,
                stop,
            ));
            set
        }
    };
    crate::progress::spawn(set.clone());
    crate::progress::spawn_gauges(set.clone());
    Ok(set)
}
