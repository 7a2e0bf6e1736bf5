//! Sinks: where the data goes. One server ([`crate::syncer`] with [`crate::target`]), a
//! Redis Cluster ([`crate::cluster_sync`] with [`crate::cluster_target`]), or a file
//! ([`rdb_file`]).

pub mod rdb_file;
