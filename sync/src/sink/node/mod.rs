//! One server as the sink: what its run ([`super::run`]) needs of it (the checkpoint, the
//! early purge of a link's slots, the keys per db, FLUSHALL), and the full load's
//! shipping. The stream is [`stream`]; the pipelined connection [`target`]; emptying a
//! link's slots [`purge`].

pub mod purge;
pub mod stream;
pub mod target;

use bytes::BytesMut;

use ::cluster::NodeStream;

use super::run::{Sink, Start};
use super::{LoadTarget, Next};
use crate::checkpoint::{self, Checkpoint};
use crate::config::SyncConfig;
use crate::load::LoadBatch;
use crate::reencode;
use crate::reply::{error_text, frames, load_error};
use crate::scope::LinkScope;
use crate::source::Source;
use crate::status::SyncStatus;
use crate::SyncError;
use target::{Meta, Target};

/// One run into one server (its control connection `control`): [`super::run::run`].
pub(crate) async fn run_once(
    cfg: &SyncConfig,
    status: &SyncStatus,
    control: NodeStream,
) -> Result<Next, SyncError> {
    let sink = NodeSink {
        control,
        target: None,
    };
    super::run::run(cfg, status, sink).await
}

/// One server as the sink: a control connection (checkpoint, preparation, purge), and the
/// pipelined connection of the load and the stream, opened once the source is.
pub(crate) struct NodeSink {
    control: NodeStream,
    target: Option<Target>,
}

impl NodeSink {
    fn target(&mut self) -> Result<&mut Target, SyncError> {
        self.target.as_mut().ok_or_else(not_open)
    }
}

fn not_open() -> SyncError {
    SyncError::Target("internal: the target's connection is not open".into())
}

impl Sink for NodeSink {
    type Load = Self;
    type Resume = ();

    async fn checkpoint(&mut self, cfg: &SyncConfig) -> Result<Option<Checkpoint>, SyncError> {
        checkpoint::read(&mut self.control, cfg.checkpoint_db, cfg.checkpoint_key()).await
    }

    async fn before_open(
        &mut self,
        cfg: &SyncConfig,
        cp: Option<&Checkpoint>,
    ) -> Result<bool, SyncError> {
        // A link of a cluster source whose last full load did not finish loads again: its
        // slots are emptied first, before the source starts sending (emptying them SCANs
        // the whole target, and a source left unread that long drops the replica).
        match (&cfg.scope, cp) {
            (Some(scope), Some(c)) if !c.is_streaming() => {
                self.purge(cfg, scope).await?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn opened(&mut self, cfg: &SyncConfig) -> Result<(), SyncError> {
        self.target = Some(Target::connect(&cfg.target).await?);
        Ok(())
    }

    async fn switched(&mut self, cfg: &SyncConfig) -> Result<bool, SyncError> {
        let ckdb = cfg.checkpoint_db.to_string();
        let rec = self
            .control
            .request(&[&[b"SELECT", ckdb.as_bytes()], &checkpoint::SWITCH_QUERY])
            .await
            .map_err(|e| SyncError::Target(e.to_string()))?;
        let switched = checkpoint::parse_switch(rec.get(1).map_or(&[][..], |r| &r[..]))
            .map_err(SyncError::Target)?;
        Ok(switched.is_some())
    }

    /// Each db with keys (our checkpoint hash, in `checkpoint_db`, not counted).
    async fn busy(&mut self, cfg: &SyncConfig, ours: bool) -> Result<Vec<String>, SyncError> {
        let r = self
            .control
            .request(&[&[b"INFO", b"keyspace"]])
            .await
            .map_err(|e| SyncError::Target(e.to_string()))?;
        let text = String::from_utf8_lossy(&r[0]).into_owned();
        let mut busy = Vec::new();
        for (n, keys) in ::cluster::info::keyspace(&text) {
            let own = u64::from(ours && n == cfg.checkpoint_db);
            if keys > own {
                busy.push(format!("db{n} ({} keys)", keys - own));
            }
        }
        Ok(busy)
    }

    async fn flush(&mut self, busy: &[String]) -> Result<(), SyncError> {
        tracing::warn!(dbs = %busy.join(", "), "emptying the target before the full load");
        let r = self
            .control
            .request(&[&[b"FLUSHALL"]])
            .await
            .map_err(|e| SyncError::Target(e.to_string()))?;
        if let Some(e) = error_text(&r[0]) {
            return Err(SyncError::Target(format!("FLUSHALL: {e}")));
        }
        Ok(())
    }

    async fn purge(&mut self, cfg: &SyncConfig, scope: &LinkScope) -> Result<(), SyncError> {
        purge::node(&mut self.control, cfg.db_map.target(0), scope).await?;
        Ok(())
    }

    fn load_target(&mut self) -> &mut Self {
        self
    }

    fn loaded(_offset: i64) {}

    async fn resume(&mut self, _cfg: &SyncConfig, cp: &Checkpoint) -> Result<(), SyncError> {
        tracing::info!(
            offset = cp.offset,
            "partial resync: continuing from the target's checkpoint"
        );
        Ok(())
    }

    async fn stream(
        self,
        cfg: &SyncConfig,
        status: &SyncStatus,
        link: Source,
        start: Start,
        _resume: (),
    ) -> Result<(), SyncError> {
        // The control connection stays open while streaming.
        let NodeSink {
            control: _control,
            target,
        } = self;
        let target = target.ok_or_else(not_open)?;
        stream::stream(
            cfg,
            status,
            link,
            target,
            start.replid,
            start.offset,
            start.db,
        )
        .await
    }
}

impl LoadTarget for NodeSink {
    async fn write_checkpoint(
        &mut self,
        cfg: &SyncConfig,
        cp: &Checkpoint,
        ckdb: &str,
    ) -> Result<(), SyncError> {
        let mut out = BytesMut::new();
        resp::encode::command(&mut out, [&b"SELECT"[..], ckdb.as_bytes()].into_iter());
        cp.hset(cfg.checkpoint_key(), &mut out);
        self.control
            .request_raw(&out, 2)
            .await
            .map_err(|e| SyncError::Target(e.to_string()))?;
        Ok(())
    }

    async fn probe(&mut self, rdb_version: u16) -> Result<reencode::TargetCaps, SyncError> {
        probe_target(self.target()?, rdb_version).await
    }

    fn ship(&mut self, b: LoadBatch) -> Result<(), SyncError> {
        if b.count > 0 {
            self.target()?.send(b.data, b.count, Meta::Load(b.names))?;
        }
        Ok(())
    }

    async fn settle(&mut self, limit: usize) -> Result<(), SyncError> {
        let target = self.target()?;
        while target.inflight_bytes() > limit {
            let (m, r) = target.next_done().await?;
            check_load(m, &r)?;
        }
        Ok(())
    }

    async fn finish(&mut self) -> Result<(), SyncError> {
        self.target()?.drain(|m, r| check_load(m, &r)).await
    }

    fn in_flight(&self) -> String {
        String::new()
    }

    fn is_cluster(&self) -> bool {
        false
    }
}

/// Finds out what the target takes (RESTORE of the source's RDB version, newer stream and
/// hash commands): one unit of probe commands, answered after everything before it.
async fn probe_target(
    target: &mut Target,
    rdb_version: u16,
) -> Result<reencode::TargetCaps, SyncError> {
    let (data, count) = reencode::probe_commands(rdb_version);
    target.send(data.freeze(), count, Meta::Control("probe"))?;
    loop {
        match target.next_done().await? {
            (Meta::Control("probe"), r) => return reencode::parse_probe(&frames(&r)?),
            (m, r) => check_load(m, &r)?,
        }
    }
}

fn check_load(meta: Meta, replies: &[u8]) -> Result<(), SyncError> {
    let Meta::Load(names) = meta else {
        return Ok(());
    };
    for (frame, (cmd, key)) in frames(replies)?.into_iter().zip(names) {
        if let Some(e) = error_text(frame) {
            return Err(load_error(cmd, &key, e));
        }
    }
    Ok(())
}
