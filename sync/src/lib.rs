//! The syncer: moves data from a source into a target and keeps the target equal to it,
//! tracking what is applied so that any interruption resumes without applying anything
//! twice or skipping anything.
//!
//! - [`source`]: where data comes from: a live Redis as its replica (PSYNC, the RDB, the
//!   replication stream), or backup files (RDB, AOF, multi-part AOF directory).
//! - [`stream`]: what each command of a source's stream means (the same for every sink).
//! - [`sink`]: where it goes: one server, a Redis Cluster (routed per slot, in order per
//!   slot, per-slot checkpoints), or an RDB file; the full load shared by all.
//! - [`rdb`]: the streaming RDB reader; [`load`]: its events encoded as the target's
//!   commands (RESTORE); [`reencode`]: values re-created with ordinary commands (older
//!   targets, big values).
//! - [`checkpoint`], [`slot_checkpoint`]: the record kept on the target, atomically with
//!   the data (the proxy reads the switch record there too).
//! - [`syncer`]: the run loop: reach the target, hand over to its sink, retry, resume.
//! - [`cluster_source`]: a Redis Cluster source: one link per master, the target prepared
//!   once for all, the source's topology watched; [`scope`]: what one link owns;
//!   [`links`]: the links seen as one.
//! - [`config`], [`status`], [`error`]: what the syncer is told, reports, and fails with;
//!   [`reply`]: reading replies; [`spool`]: stream bytes waiting on disk.

pub mod checkpoint;
pub mod cluster_source;
pub mod config;
pub mod error;
pub mod links;
pub mod load;
pub mod rdb;
pub mod reencode;
pub mod reply;
pub mod scope;
pub mod sink;
pub mod slot_checkpoint;
pub mod source;
pub mod spool;
pub mod status;
pub mod stream;
pub mod syncer;
pub mod tracking;
pub mod verify;

pub use config::{CrossSlot, DbMap, NotEmpty, OnFullResync, SyncConfig};
pub use error::SyncError;
pub use links::{LinkInfo, SyncSet};
pub use status::{SyncState, SyncStatus};
