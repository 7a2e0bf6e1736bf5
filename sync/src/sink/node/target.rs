//! The syncer's connection to the target: units of pipelined commands (a batch of RESTOREs,
//! or one transaction of stream commands plus the checkpoint) whose replies come back whole,
//! in order, to be checked.

use std::collections::VecDeque;

use ::cluster::pipeline::{Batch, BatchFlags, Reply, ReplyKind};
use ::cluster::{Connector, PipelineHandle, SessionSetup};
use bytes::{Bytes, BytesMut};
use tokio::sync::mpsc;

use crate::SyncError;

/// What a unit was, for checking its replies and for reporting.
#[derive(Debug)]
pub enum Meta {
    /// RESTOREs and SELECTs of the full load: (command, key) per reply, in order.
    Load(Vec<(&'static str, Bytes)>),
    /// One transaction of the stream: MULTI, SELECT, the commands, SELECT, checkpoint, EXEC.
    /// `cmds`: the raw stream commands, to name one that fails.
    Txn { end_offset: i64, cmds: Bytes },
    /// Anything else whose replies must all be non-errors.
    Control(&'static str),
}

struct Unit {
    remaining: u32,
    replies: BytesMut,
    meta: Meta,
    size: usize,
}

pub struct Target {
    handle: PipelineHandle,
    rx: mpsc::UnboundedReceiver<Reply>,
    tx: mpsc::UnboundedSender<Reply>,
    units: VecDeque<Unit>,
    inflight_bytes: usize,
}

fn tgt(e: impl std::fmt::Display) -> SyncError {
    SyncError::Target(e.to_string())
}

impl Target {
    pub async fn connect(connector: &Connector) -> Result<Target, SyncError> {
        let stream = connector
            .connect(&SessionSetup {
                name: Some(Bytes::from_static(b"cutover-syncer")),
                ..SessionSetup::default()
            })
            .await
            .map_err(|e| {
                if e.is_retryable() {
                    tgt(e)
                } else {
                    SyncError::Config(format!("target: {e}"))
                }
            })?;
        let handle = PipelineHandle::spawn_dedicated(stream, false, "target", connector.addr());
        let (tx, rx) = mpsc::unbounded_channel();
        Ok(Target {
            handle,
            rx,
            tx,
            units: VecDeque::new(),
            inflight_bytes: 0,
        })
    }

    /// Queues a unit of `count` commands.
    pub fn send(&mut self, data: Bytes, count: u32, meta: Meta) -> Result<(), SyncError> {
        let size = data.len();
        self.handle
            .send(Batch {
                data,
                count,
                flags: BatchFlags::default(),
                reply: self.tx.clone(),
                tag: 0,
            })
            .map_err(|_| tgt("connection lost"))?;
        self.inflight_bytes += size;
        self.units.push_back(Unit {
            remaining: count,
            replies: BytesMut::new(),
            meta,
            size,
        });
        Ok(())
    }

    pub fn inflight_units(&self) -> usize {
        self.units.len()
    }

    pub fn inflight_bytes(&self) -> usize {
        self.inflight_bytes
    }

    /// Waits for the oldest unit's replies. Cancel-safe: state changes only after a reply
    /// has been received.
    pub async fn next_done(&mut self) -> Result<(Meta, Bytes), SyncError> {
        loop {
            if let Some(u) = self.units.front() {
                if u.remaining == 0 {
                    let u = self.units.pop_front().ok_or_else(|| tgt("internal"))?;
                    self.inflight_bytes -= u.size;
                    return Ok((u.meta, u.replies.freeze()));
                }
            } else {
                // Nothing in flight: never completes (callers select on it).
                std::future::pending::<()>().await;
            }
            let r = self.rx.recv().await.ok_or_else(|| tgt("connection lost"))?;
            if r.kind == ReplyKind::Failed {
                return Err(tgt("connection lost while commands were in flight"));
            }
            if r.kind == ReplyKind::Unsolicited {
                continue;
            }
            let front = self
                .units
                .front_mut()
                .ok_or_else(|| tgt("reply with nothing in flight"))?;
            front.replies.extend_from_slice(&r.data);
            front.remaining = front.remaining.saturating_sub(r.count);
        }
    }

    /// Waits for every unit, checking each with `check`.
    pub async fn drain(
        &mut self,
        mut check: impl FnMut(Meta, Bytes) -> Result<(), SyncError>,
    ) -> Result<(), SyncError> {
        while !self.units.is_empty() {
            let (m, r) = self.next_done().await?;
            check(m, r)?;
        }
        Ok(())
    }
}
