//! cutover: a Redis-protocol proxy that applications use instead of their Redis, so their
//! data can be migrated to another Redis and the switch made without downtime.
//!
//! - [`server`]: starting everything, listeners, shutdown.
//! - [`session`]: one client connection: reading commands, answering what the proxy owns,
//!   forwarding the rest in order.
//! - [`upstream`]: the Redis behind the proxy: pools of shared pipelined connections and
//!   dedicated ones.
//! - [`users`]: the applications' own users made to exist on the target before a switch.
//! - [`syncing`]: starting the syncer (one link, or one per master of a cluster source).
//! - [`admin`], [`metrics`], [`stats`]: the operator's view.
//! - [`restore`], [`dump`]: `cutover restore` (backup files into a Redis) and
//!   `cutover dump` (an RDB of a live Redis).
//! - [`config`], [`cli`], [`logging`]: how it is configured.

pub mod admin;
pub mod auth;
pub mod cli;
pub mod clients;
pub mod config;
pub mod ctl;
pub mod cutover;
pub mod dump;
pub mod fault;
pub mod finish;
pub mod logging;
pub mod metrics;
pub mod progress;
pub mod restore;
pub mod route;
pub mod scripts;
pub mod server;
pub mod session;
pub mod stats;
pub mod syncing;
pub mod tls;
pub mod track;
pub mod upstream;
pub mod users;
pub mod verify;
