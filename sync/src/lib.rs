//! The syncer: acts as a replica of the source (PSYNC handshake, full RDB transfer, live
//! command stream) and applies everything to the target, tracking the applied offset.

pub mod rdb;
