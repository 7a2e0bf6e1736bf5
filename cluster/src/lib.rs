//! Reaching a Redis deployment: where it is ([`url`]), how to open an authenticated
//! connection to one of its nodes ([`connect`]), and the pipelined backend connection many
//! clients share ([`pipeline`]).
//!
//! A standalone server is treated as a cluster of one node; slot maps and redirections join
//! this crate with cluster support.

pub mod client;
pub mod connect;
pub mod error;
pub mod info;
pub mod migrating;
pub mod pipeline;
pub mod slots;
pub mod topology;
pub mod url;
pub mod worker;

pub use connect::{Auth, Connector, Login, NodeStream, SessionSetup};
pub use error::{ConnectError, UrlError};
pub use pipeline::{Batch, BatchFlags, PipelineHandle, Reply};
pub use topology::{Topology, TopologyError};
pub use url::RedisUrl;
