//! The Redis behind the proxy (the source now; the target after a cutover).
//!
//! Ordinary commands travel on shared pipelined connections, grouped in pools by what a
//! connection's session state must be: the selected db and the protocol version. A client
//! is pinned to one connection of its pool, so its commands never race each other.
//! Scripts and functions (EVAL*, FCALL*) have pools of their own (the script lane): one
//! that runs long blocks only the scripts queued behind it, while everyone else's commands
//! reach Redis and get its `-BUSY`, and the `SCRIPT KILL` or `FUNCTION KILL` a client sends
//! then can reach it too, as with Redis directly.
//! Clients that need session state of their own get a dedicated connection.
//!
//! A Redis Cluster (its node says `cluster_enabled:1`) is reached through its
//! [`Topology`]: each client gets a router task ([`cluster::client`]) that takes the same
//! batches a connection takes and spreads them over the nodes' shared connections (or the
//! client's own connections, for a dedicated one).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use cluster::client::{spawn_client, ClientOptions};
use cluster::{ConnectError, Connector, PipelineHandle, SessionSetup, Topology};

use crate::config::Endpoint;

/// The lane of scripts and functions.
pub const LANE_SCRIPTS: u8 = 1;

pub struct Upstream {
    /// `source` or `target`: names the side in errors and logs.
    pub label: &'static str,
    connector: Arc<Connector>,
    conns_per_pool: usize,
    /// Index: (db * 2 + (resp3 as usize)) * 2 + lane. Created on first use.
    pools: Box<[OnceLock<Box<[PipelineHandle]>>]>,
    databases: u32,
    /// The db of the URL: where clients start.
    default_db: u32,
    /// `redis_version` of the server, for HELLO replies.
    pub version: String,
    /// Set when the server is a cluster node.
    cluster: Option<Arc<Topology>>,
}

impl Upstream {
    /// Connects once to learn the server's version and number of databases. A server that
    /// cannot be reached at start is not fatal: the proxy starts and reconnects.
    pub async fn new(
        label: &'static str,
        endpoint: &Endpoint,
        conns_per_pool: usize,
        timeout: Duration,
    ) -> Result<Upstream, ConnectError> {
        let connector = Arc::new(Connector::new(
            endpoint.url.clone(),
            endpoint.tls_ca_file.as_deref(),
            timeout,
        )?);
        let (version, databases) = match probe(&connector).await {
            Ok(v) => v,
            Err(e) if e.is_retryable() => {
                tracing::warn!(side = label, error = %e, "backend not reachable at start; will keep trying");
                ("7.0.0".to_string(), 16)
            }
            Err(e) => return Err(e),
        };
        let cluster = match Topology::discover(connector.clone(), label).await {
            Ok(c) => c,
            Err(e) if e.is_retryable() => {
                tracing::warn!(side = label, error = %e, "cannot tell whether the backend is a cluster; treating it as one server");
                None
            }
            Err(e) => {
                return Err(ConnectError::Refused {
                    addr: connector.addr(),
                    step: "CLUSTER SHARDS",
                    reply: e.to_string(),
                })
            }
        };
        tracing::info!(side = label, addr = %connector.addr(), version, databases, cluster = cluster.is_some(), "backend");
        let pools = (0..databases as usize * 4)
            .map(|_| OnceLock::new())
            .collect();
        Ok(Upstream {
            label,
            connector,
            conns_per_pool,
            pools,
            databases,
            default_db: if cluster.is_some() {
                0
            } else {
                endpoint.url.db.min(databases.saturating_sub(1))
            },
            version,
            cluster,
        })
    }

    /// Databases a client may SELECT; 0 for a cluster, which allows none but db 0.
    pub fn databases(&self) -> u32 {
        if self.cluster.is_some() {
            0
        } else {
            self.databases
        }
    }

    /// The cluster behind this upstream, if it is one.
    pub fn cluster(&self) -> Option<&Arc<Topology>> {
        self.cluster.as_ref()
    }

    pub fn connector(&self) -> &Connector {
        &self.connector
    }

    pub fn default_db(&self) -> u32 {
        self.default_db
    }

    pub fn addr(&self) -> String {
        self.connector.addr()
    }

    /// The shared connection client `client_id` is pinned to for (db, protocol, lane:
    /// [`LANE_SCRIPTS`] or 0).
    pub fn shared(&self, db: u32, resp3: bool, client_id: u64, lane: u8) -> &PipelineHandle {
        let idx = ((db.min(self.databases.saturating_sub(1)) as usize) * 2 + resp3 as usize) * 2
            + usize::from(lane.min(1));
        let pool = self.pools[idx].get_or_init(|| {
            let setup = SessionSetup {
                db,
                resp3,
                name: None,
            };
            (0..self.conns_per_pool)
                .map(|_| {
                    PipelineHandle::spawn_shared(self.connector.clone(), setup.clone(), self.label)
                })
                .collect()
        });
        &pool[(client_id % pool.len() as u64) as usize]
    }

    /// Opens a connection of the client's own, set up with its db, protocol and name.
    /// Also returns the server's id for it (to `CLIENT UNBLOCK` it during a cutover).
    pub async fn dedicated(
        &self,
        db: u32,
        resp3: bool,
        name: Option<Bytes>,
    ) -> Result<(PipelineHandle, i64), ConnectError> {
        if let Some(topo) = &self.cluster {
            // Its connections open as it touches nodes; its server ids are per node, so
            // CLIENT UNBLOCK during a cutover cannot name one (-1).
            let h = spawn_client(
                topo.clone(),
                ClientOptions {
                    resp3,
                    dedicated: true,
                    name,
                },
            );
            return Ok((h, -1));
        }
        let setup = SessionSetup { db, resp3, name };
        let mut stream = self.connector.connect(&setup).await?;
        let id = stream
            .request(&[&[b"CLIENT", b"ID"]])
            .await
            .ok()
            .and_then(|r| {
                std::str::from_utf8(r.first()?.strip_prefix(b":")?)
                    .ok()?
                    .trim_end()
                    .parse::<i64>()
                    .ok()
            })
            .unwrap_or(-1);
        let h = PipelineHandle::spawn_dedicated(stream, resp3, self.label, self.connector.addr());
        Ok((h, id))
    }
}

/// Reads `redis_version` and the number of databases.
async fn probe(connector: &Connector) -> Result<(String, u32), ConnectError> {
    let mut s = connector.connect(&SessionSetup::default()).await?;
    let replies = s
        .request(&[&[b"INFO", b"server"], &[b"CONFIG", b"GET", b"databases"]])
        .await
        .map_err(|e| ConnectError::Io {
            addr: connector.addr(),
            source: e,
        })?;
    let info = String::from_utf8_lossy(&replies[0]);
    let version = cluster::info::field(&info, "redis_version")
        .unwrap_or("7.0.0")
        .to_string();
    // `*2\r\n$9\r\ndatabases\r\n$2\r\n16\r\n`: the last line holds the value. CONFIG may
    // be renamed or refused on managed services: fall back to Redis's default.
    let databases = std::str::from_utf8(&replies[1])
        .ok()
        .and_then(|t| t.trim_end().rsplit("\r\n").next()?.parse::<u32>().ok())
        .filter(|d| (1..=1_000_000).contains(d))
        .unwrap_or(16);
    Ok((version, databases))
}
