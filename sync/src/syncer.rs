//! The syncer: keeps the target equal to the source, as a replica would, with an applied
//! offset that is the truth.
//!
//! One run: read the target's checkpoint; PSYNC from it (or from scratch); on FULLRESYNC,
//! load the RDB (RESTORE of each value, straight from its bytes); then apply the command
//! stream in transactions that each carry the checkpoint of their end offset. Any lost
//! link ends the run; the next run resumes from the checkpoint, so nothing is applied twice
//! and nothing skipped.

use std::sync::Arc;
use std::time::Duration;

use cluster::{Connector, SessionSetup};
use tokio::sync::watch;

use crate::config::SyncConfig;
use crate::sink::{Next, TargetMemory};
use crate::status::{SyncState, SyncStatus};
use crate::SyncError;

/// Runs until `stop` turns true, retrying what can be retried.
pub async fn run(mut cfg: SyncConfig, status: Arc<SyncStatus>, mut stop: watch::Receiver<bool>) {
    // (The SCAN copy has no replication offset: its lag is what it made and the target
    // has not applied yet.)
    let mut poller = match &cfg.source {
        crate::source::SourceSpec::Link(c) => {
            Some(tokio::spawn(poll_source_offset(c.clone(), status.clone())))
        }
        _ => None,
    };
    let mut backoff = Duration::from_millis(100);
    let mut memory = TargetMemory::default();
    loop {
        let result = tokio::select! {
            r = run_once(&cfg, &status, &mut memory) => r,
            _ = stop.wait_for(|s| *s) => Err(SyncError::Stopped),
        };
        match result {
            Ok(Next::Again) => {
                backoff = Duration::from_millis(100);
                continue;
            }
            Err(SyncError::Forbidden(why)) if cfg.scan_fallback.is_some() => {
                // `auto`: the source refuses replication (a managed service): the SCAN
                // copy instead, with the proxy tracking the keys written from now on.
                tracing::warn!(
                    refusal = %why,
                    "the source refuses replication: syncing with the SCAN copy instead (sync.source_mode = \"auto\"); writers that bypass this proxy can't be tracked"
                );
                if let Some(spec) = cfg.scan_fallback.take() {
                    cfg.source = crate::source::SourceSpec::Scan(spec);
                }
                if let Some(p) = poller.take() {
                    p.abort();
                }
                continue;
            }
            Err(SyncError::Stopped) | Ok(Next::Done) => {
                status.set_state(SyncState::Stopped);
                break;
            }
            Err(e) if e.is_retryable() => {
                tracing::warn!(error = %e, "sync interrupted; resuming from the target's checkpoint");
                status.set_error(e.to_string());
                status.set_state(SyncState::Connecting);
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.wait_for(|s| *s) => { status.set_state(SyncState::Stopped); break; }
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            Err(e) => {
                tracing::error!(error = %e, "sync stopped");
                status.set_error(e.to_string());
                status.set_state(SyncState::Error);
                break;
            }
        }
    }
    if let Some(p) = poller {
        p.abort();
    }
}

/// Polls the source's `master_repl_offset` once a second: the other half of the lag.
async fn poll_source_offset(source: Arc<Connector>, status: Arc<SyncStatus>) {
    let mut conn = None;
    loop {
        if conn.is_none() {
            conn = source.connect(&SessionSetup::default()).await.ok();
        }
        if let Some(c) = conn.as_mut() {
            match c.request(&[&[b"INFO", b"replication"]]).await {
                Ok(r) => {
                    let text = String::from_utf8_lossy(&r[0]);
                    if let Some(off) = cluster::info::int_field(&text, "master_repl_offset") {
                        status.set_source_offset(off);
                    }
                }
                Err(_) => conn = None,
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// One run: reach the target, then hand over to its sink (one server or a cluster).
async fn run_once(
    cfg: &SyncConfig,
    status: &SyncStatus,
    memory: &mut TargetMemory,
) -> Result<Next, SyncError> {
    status.set_state(SyncState::Connecting);
    if let (None, crate::source::SourceSpec::Link(c)) = (&cfg.scope, &cfg.source) {
        refuse_cluster_source(c).await?;
    }
    let mut control = match cfg.target.connect(&SessionSetup::default()).await {
        Ok(c) => c,
        Err(e) if e.is_retryable() && !memory.cluster_masters.is_empty() => {
            tracing::warn!(error = %e, "the target URL's node does not answer; reaching the cluster through its other masters");
            return crate::sink::cluster::run_once(cfg, status, memory).await;
        }
        Err(e) => return Err(SyncError::Target(e.to_string())),
    };
    if crate::sink::is_cluster(&mut control).await? {
        drop(control);
        return crate::sink::cluster::run_once(cfg, status, memory).await;
    }
    crate::sink::node::run_once(cfg, status, control).await
}

/// A lone link replicates one node: a cluster node would give one master's share and look
/// complete. (A cluster source gets one link per master; it ends up here only when it did
/// not answer while cutover started and was taken for a single server.)
async fn refuse_cluster_source(source: &Connector) -> Result<(), SyncError> {
    let mut conn = source
        .connect(&SessionSetup::default())
        .await
        .map_err(|e| SyncError::Source(e.to_string()))?;
    let r = conn
        .request(&[&[b"INFO", b"cluster"]])
        .await
        .map_err(|e| SyncError::Source(e.to_string()))?;
    if cluster::info::cluster_enabled(&r[0]) {
        return Err(SyncError::Config(format!(
            "the source {} is a Redis Cluster node, but it was not recognised as one when cutover started (it did not answer then): one link would copy one master's share only; restart cutover to sync every master",
            source.addr()
        )));
    }
    Ok(())
}
