//! The full load: the source's snapshot (an RDB from the link, or at the start of files)
//! read on a blocking thread that also encodes the target's commands ([`crate::load`]),
//! shipped to any sink through [`LoadTarget`], between a `loading` and a `streaming`
//! checkpoint.

use bytes::Bytes;
use tokio::sync::mpsc;

use super::LoadTarget;
use crate::checkpoint::Checkpoint;
use crate::config::SyncConfig;
use crate::load::LoadMsg;
use crate::source::{ChunkReader, Link, Payload, Snapshot, Source};
use crate::spool::{spool_err, Spool};
use crate::status::{SyncState, SyncStatus};
use crate::SyncError;

/// Loads the source's snapshot into the target. Returns the db the command stream starts
/// in and the offset it starts at (files: the byte after the RDB).
pub(crate) async fn full_load<D: LoadTarget>(
    cfg: &SyncConfig,
    status: &SyncStatus,
    source: &mut Source,
    dest: &mut D,
    replid: &str,
    offset: i64,
) -> Result<(u32, i64), SyncError> {
    status.set_state(SyncState::FullSync);
    status
        .rdb_bytes_loaded
        .store(0, std::sync::atomic::Ordering::Relaxed);
    status
        .keys_loaded
        .store(0, std::sync::atomic::Ordering::Relaxed);
    let dbs = cfg.checkpoint_db.to_string();
    let loading = Checkpoint {
        state: "loading".into(),
        replid: replid.to_string(),
        offset,
        db: 0,
    };
    dest.write_checkpoint(cfg, &loading, &dbs).await?;

    let snapshot = source.snapshot().await?;
    let total = match &snapshot {
        Snapshot::Payload(Payload::Len(n)) => Some(*n),
        Snapshot::Preamble { total, .. } => Some(*total),
        _ => None,
    };
    if let Some(n) = total {
        status
            .rdb_bytes
            .store(n, std::sync::atomic::Ordering::Relaxed);
    }
    let (stream_db, offset) = if snapshot == Snapshot::None {
        // Commands from the first byte (an AOF without an RDB preamble).
        (0, offset)
    } else {
        tracing::info!(
            ?snapshot,
            "full load: loading the source's RDB into the target"
        );
        let started = std::time::Instant::now();
        let (db, rdb_len) = load_snapshot(cfg, status, source, dest, &snapshot).await?;
        tracing::info!(
            keys = SyncStatus::get(&status.keys_loaded),
            bytes = SyncStatus::get(&status.rdb_bytes_loaded),
            secs = started.elapsed().as_secs_f64(),
            "snapshot loaded"
        );
        match snapshot {
            Snapshot::Payload(Payload::Eof(_)) => {
                // A diskless master sends no stream until the replica's first ACK.
                source.ack(offset).await?;
                (db, offset)
            }
            Snapshot::Preamble {
                commands_follow: true,
                ..
            } => {
                // Files: the commands follow the RDB's checksum, and every AOF part starts
                // in db 0.
                source.seek(rdb_len)?;
                (0, rdb_len as i64)
            }
            _ => (db, offset),
        }
    };
    let streaming = Checkpoint {
        state: "streaming".into(),
        replid: replid.to_string(),
        offset,
        db: stream_db,
    };
    dest.write_checkpoint(cfg, &streaming, &dbs).await?;
    Ok((stream_db, offset))
}

/// Reads the RDB (on a blocking thread, encoding the target's commands there too) and
/// ships them. Returns the db the stream starts in and the RDB's length.
async fn load_snapshot<D: LoadTarget>(
    cfg: &SyncConfig,
    status: &SyncStatus,
    source: &mut Source,
    dest: &mut D,
    snapshot: &Snapshot,
) -> Result<(u32, u64), SyncError> {
    let (chunk_tx, chunk_rx) = mpsc::channel::<Bytes>(64);
    let (batch_tx, mut batch_rx) = mpsc::channel::<Result<LoadMsg, SyncError>>(16);
    let keys_loaded = status.keys_loaded_handle();
    let big_value_bytes = cfg.big_value_bytes;
    let db_map = cfg.db_map.clone();
    let cluster = dest.is_cluster();
    let scope = cfg.scope.clone();
    // The parser thread also encodes the RESTORE commands: the async side only ships
    // finished batches, one channel message per ~256 KB instead of one per key.
    let reader = tokio::task::spawn_blocking(move || {
        let r = crate::load::encode_rdb(
            ChunkReader::new(chunk_rx),
            &batch_tx,
            &keys_loaded,
            big_value_bytes,
            &db_map,
            cluster,
            scope.as_deref(),
        );
        match r {
            Ok(end) => Some(end),
            Err(e) => {
                let _ = batch_tx.blocking_send(Err(e));
                None
            }
        }
    });
    // (The RDB of a file source is at the start of its first file.)
    let file = source.file_at(0);
    let feeding = async {
        match (source, snapshot) {
            (Source::Link(link), Snapshot::Payload(p)) => {
                feed_link(cfg, status, link, p, chunk_tx).await
            }
            (Source::Backup(b), _) => b.feed(chunk_tx, &status.rdb_bytes_loaded).await,
            (Source::Scan(s), _) => s.feed(chunk_tx, &status.rdb_bytes_loaded).await,
            _ => Err(SyncError::Config("internal: no snapshot to feed".into())),
        }
    };
    let apply = apply_batches(cfg, status, dest, &mut batch_rx);
    let (fed, applied) = tokio::join!(feeding, apply);
    let rdb_len = reader.await.ok().flatten();
    fed?;
    let stream_db = applied.map_err(|e| match e {
        // Files: the error names the file (the RDB's own message has the byte offset, in the
        // file as in the RDB).
        SyncError::Rdb(e) if matches!(snapshot, Snapshot::Preamble { .. }) => {
            SyncError::File(format!("{}: {e}", file.as_deref().unwrap_or("the RDB")))
        }
        e => e,
    })?;
    let end = rdb_len.ok_or_else(|| SyncError::Source("the RDB reader stopped early".into()))?;
    SyncStatus::add(&status.keys_expired, end.expired);
    if end.expired > 0 {
        tracing::info!(
            keys = end.expired,
            "keys whose TTL had passed were not loaded (the target drops them)"
        );
    }
    Ok((stream_db, end.rdb_len))
}

/// The link's payload: read at network speed into the spool (memory, then a bounded
/// file); a pump hands it to the reader as fast as the target takes it. A slow target never
/// makes the source wait (its replica output buffer fills meanwhile with the writes it
/// takes, and past its limit it would drop us).
async fn feed_link(
    cfg: &SyncConfig,
    status: &SyncStatus,
    link: &mut Link,
    payload: &Payload,
    chunk_tx: mpsc::Sender<Bytes>,
) -> Result<(), SyncError> {
    let loaded = &status.rdb_bytes_loaded;
    // (A mutex only to be Send; it is never held across an await.)
    let spool = std::sync::Mutex::new(Spool::new(
        cfg.spool_dir.clone(),
        PAYLOAD_SPOOL_MEMORY,
        cfg.spool_max_bytes,
    ));
    let arrived = tokio::sync::Notify::new();
    let fed_all = std::sync::atomic::AtomicBool::new(false);
    let feed = async {
        let r = link
            .stream_payload(
                payload,
                |c| {
                    let mut sp = spool
                        .lock()
                        .map_err(|_| SyncError::Config("spool lock poisoned".into()))?;
                    if sp.is_full() {
                        return Err(SyncError::Config(
                            "the spool is full (sync.spool_max_bytes) while loading the RDB".into(),
                        ));
                    }
                    sp.push(c).map_err(spool_err)?;
                    status
                        .spool_bytes
                        .store(sp.file_bytes(), std::sync::atomic::Ordering::Relaxed);
                    arrived.notify_one();
                    Ok(())
                },
                |n| SyncStatus::add(loaded, n),
            )
            .await;
        fed_all.store(true, std::sync::atomic::Ordering::Release);
        arrived.notify_one();
        r
    };
    let pump = async {
        loop {
            // "All fed" is read BEFORE popping: if it was set, nothing can arrive after the
            // pop, so an empty pop then means the payload is done.
            let all = fed_all.load(std::sync::atomic::Ordering::Acquire);
            let next = spool
                .lock()
                .map_err(|_| SyncError::Config("spool lock poisoned".into()))?
                // Pieces of a socket read's size: the channel to the reader holds 64.
                .pop(64 * 1024)
                .map_err(spool_err)?;
            match next {
                Some(c) => {
                    if chunk_tx.send(c).await.is_err() {
                        // The reader stopped: its error (or its early end) is what the
                        // load reports.
                        break;
                    }
                }
                None if all => break,
                None => arrived.notified().await,
            }
        }
        status
            .spool_bytes
            .store(0, std::sync::atomic::Ordering::Relaxed);
        drop(chunk_tx);
        Ok::<(), SyncError>(())
    };
    let (fed, pumped) = tokio::join!(feed, pump);
    fed?;
    pumped
}

/// RDB payload kept in memory during the full load before the spool goes to disk (small:
/// the load's own windows already hold up to 16 MB).
const PAYLOAD_SPOOL_MEMORY: usize = 4 * 1024 * 1024;

/// Ships the encoder's batches to the sink, keeping a bounded amount in flight. Returns the
/// db the command stream starts in.
async fn apply_batches<D: LoadTarget>(
    cfg: &SyncConfig,
    status: &SyncStatus,
    dest: &mut D,
    batches: &mut mpsc::Receiver<Result<LoadMsg, SyncError>>,
) -> Result<u32, SyncError> {
    let mut stream_db = 0;
    let mut last_progress = std::time::Instant::now();
    // RESTOREs keep the target busy with far less in flight than the stream allows;
    // a smaller window keeps the full load's memory small whatever the dataset.
    let limit = cfg.max_inflight_bytes.clamp(1024 * 1024, 16 * 1024 * 1024);
    while let Some(msg) = batches.recv().await {
        let b = match msg? {
            LoadMsg::Batch(b) => b,
            LoadMsg::Probe { rdb_version, reply } => {
                let caps = dest.probe(rdb_version).await?;
                tracing::info!(rdb_version, ?caps, "what the target takes");
                let _ = reply.send(caps);
                continue;
            }
        };
        if let Some(db) = b.stream_db {
            stream_db = db;
        }
        dest.ship(b)?;
        dest.settle(limit).await?;
        if last_progress.elapsed() > std::time::Duration::from_secs(5) {
            last_progress = std::time::Instant::now();
            tracing::info!(
                keys = SyncStatus::get(&status.keys_loaded),
                bytes = SyncStatus::get(&status.rdb_bytes_loaded),
                total = SyncStatus::get(&status.rdb_bytes),
                in_flight = %dest.in_flight(),
                "full sync progress"
            );
        }
    }
    dest.finish().await?;
    Ok(stream_db)
}
