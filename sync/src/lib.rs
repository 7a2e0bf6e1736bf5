//! The syncer: acts as a replica of the source (PSYNC handshake, full RDB transfer, live
//! command stream) and applies everything to the target, tracking the applied offset.
//!
//! - [`source`]: where data comes from: the replication link (handshake, payload framing,
//!   ACKs), or backup files (RDB, AOF, multi-part AOF directory).
//! - [`stream`]: what each command of a source's stream means (shared by every sink).
//! - [`rdb`]: the streaming RDB reader.
//! - [`load`]: RDB values turned into commands for the target (RESTORE).
//! - [`reencode`]: values re-created with ordinary commands (older targets, big values).
//! - [`target`]: pipelined units of commands to the target, replies checked.
//! - [`cluster_target`]: the same for a Redis Cluster: routed per slot, in order per slot.
//! - [`checkpoint`]: the offset record kept on the target, atomically with the data.
//! - [`slot_checkpoint`]: the same per hash slot, for a Redis Cluster target.
//! - [`slotting`]: where each stream command goes on a Redis Cluster target.
//! - [`syncer`]: the orchestration: start, full load, stream, resume.
//! - [`cluster_sync`]: the same against a Redis Cluster target.
//! - [`status`]: what STATUS and the metrics report.
//! - [`cluster_source`]: a Redis Cluster source: one link per master, the target prepared
//!   once for all, the source's topology watched.
//! - [`scope`]: what one of those links owns (its slots, its checkpoint key).
//! - [`purge`]: emptying one link's slots on the target before it loads again.
//! - [`links`]: the links seen as one (per-link and aggregate figures).

pub mod checkpoint;
pub mod cluster_source;
pub mod cluster_sync;
pub mod cluster_target;
pub mod error;
pub mod links;
pub mod load;
pub mod purge;
pub mod rdb;
pub mod reencode;
pub mod scope;
pub mod sink;
pub mod slot_checkpoint;
pub mod slotting;
pub mod source;
pub mod spool;
pub mod status;
pub mod stream;
pub mod syncer;
pub mod target;

pub use error::SyncError;
pub use links::{LinkInfo, SyncSet};
pub use status::{SyncState, SyncStatus};
pub use syncer::{CrossSlot, DbMap, NotEmpty, OnFullResync, SyncConfig};
