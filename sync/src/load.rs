//! The full load's encoder, run on the RDB reader's thread: RDB events become batches of
//! target commands. Each key becomes `RESTORE key <abs ms> <payload> ABSTTL REPLACE`, the
//! payload built straight from the value's bytes (type + value + RDB version + CRC64), so
//! values are never decoded when the target can take the source's format.

use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::{Bytes, BytesMut};
use tokio::sync::mpsc;

use crate::rdb::{Event, RdbReader};
use crate::SyncError;

/// Commands for the target, ready to send.
#[derive(Debug)]
pub struct LoadBatch {
    pub data: Bytes,
    pub count: u32,
    /// (command, key) per command, to name a key the target refuses.
    pub names: Vec<(&'static str, Bytes)>,
    /// The db the command stream will start in (AUX `repl-stream-db`), once known.
    pub stream_db: Option<u32>,
}

const BATCH_BYTES: usize = 256 * 1024;

struct Builder {
    buf: BytesMut,
    names: Vec<(&'static str, Bytes)>,
    stream_db: Option<u32>,
}

impl Builder {
    fn take(&mut self) -> LoadBatch {
        LoadBatch {
            data: self.buf.split().freeze(),
            count: self.names.len() as u32,
            names: std::mem::take(&mut self.names),
            stream_db: self.stream_db.take(),
        }
    }
}

/// Reads the whole RDB from `input`, sending batches to `out`. Blocking: run it on a
/// blocking thread.
pub fn encode_rdb<R: Read>(
    input: R,
    out: &mpsc::Sender<Result<LoadBatch, SyncError>>,
    keys_loaded: &AtomicU64,
) -> Result<(), SyncError> {
    let mut rd = RdbReader::new(input);
    let mut b = Builder {
        buf: BytesMut::with_capacity(BATCH_BYTES + 64 * 1024),
        names: Vec::new(),
        stream_db: None,
    };
    let mut version: u16 = 0;
    let mut payload = Vec::new();
    let gone = |_| SyncError::Target("full load stopped".into());
    while let Some(ev) = rd.next_event()? {
        match ev {
            Event::Header { version: v } => version = v as u16,
            Event::Aux { key, value } => match &key[..] {
                b"repl-stream-db" => {
                    b.stream_db = std::str::from_utf8(&value)
                        .ok()
                        .and_then(|v| v.parse().ok())
                }
                // Scripts of 6.2 and older sources: EVALSHA in the stream needs them.
                b"lua" => {
                    resp::encode::command(
                        &mut b.buf,
                        [&b"SCRIPT"[..], b"LOAD", &value].into_iter(),
                    );
                    b.names.push(("SCRIPT LOAD", Bytes::new()));
                }
                _ => {}
            },
            Event::Db(n) => {
                let n = n.to_string();
                resp::encode::command(&mut b.buf, [&b"SELECT"[..], n.as_bytes()].into_iter());
                b.names.push(("SELECT", Bytes::new()));
            }
            Event::Key(k) => {
                payload.clear();
                k.write_restore_payload(version, &mut payload);
                let ttl = itoa(k.expire_ms.unwrap_or(0).max(0));
                resp::encode::command(
                    &mut b.buf,
                    [
                        &b"RESTORE"[..],
                        &k.key,
                        ttl.as_bytes(),
                        &payload,
                        b"ABSTTL",
                        b"REPLACE",
                    ]
                    .into_iter(),
                );
                b.names.push(("RESTORE", k.key));
                keys_loaded.fetch_add(1, Ordering::Relaxed);
            }
            Event::Function { code } => {
                resp::encode::command(
                    &mut b.buf,
                    [&b"FUNCTION"[..], b"LOAD", b"REPLACE", &code].into_iter(),
                );
                b.names.push(("FUNCTION LOAD", Bytes::new()));
            }
            Event::ModuleAux { module_id } => {
                tracing::warn!(module_id, "module AUX data in the RDB is not transferred");
            }
            Event::ResizeDb { .. } => {}
            Event::End { .. } => break,
        }
        if b.buf.len() >= BATCH_BYTES {
            out.blocking_send(Ok(b.take())).map_err(gone)?;
        }
    }
    if !b.buf.is_empty() || b.stream_db.is_some() {
        out.blocking_send(Ok(b.take())).map_err(gone)?;
    }
    Ok(())
}

fn itoa(n: i64) -> String {
    n.to_string()
}
