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
//! Users: with `proxy.client_auth = "source"` a client that authenticates runs as its own
//! user, so the server enforces that user's ACL: its commands go on pools of that user's
//! connections ([`Upstream::user_pools`], made on first use). Clients that have not
//! authenticated use the base pools, which log in as the server's default user would
//! without AUTH (`"source"`) or with the URL's credentials (`"proxy"`).
//!
//! A Redis Cluster (its node says `cluster_enabled:1`) is reached through its
//! [`Topology`]: each client gets a router task ([`cluster::client`]) that takes the same
//! batches a connection takes and spreads them over the nodes' shared connections (or the
//! client's own connections, for a dedicated one).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use cluster::client::{spawn_client, ClientOptions};
use cluster::{Auth, ConnectError, Connector, Login, PipelineHandle, SessionSetup, Topology};

use crate::config::Endpoint;

/// The lane of scripts and functions.
pub const LANE_SCRIPTS: u8 = 1;

/// The shared connections of one identity: a pool per (db, protocol, lane), each made on
/// first use.
pub struct Pools {
    auth: Auth,
    /// Index: (db * 2 + (resp3 as usize)) * 2 + lane.
    pools: Box<[OnceLock<Box<[PipelineHandle]>>]>,
}

impl Pools {
    fn new(auth: Auth, databases: u32) -> Pools {
        Pools {
            auth,
            pools: (0..databases.max(1) as usize * 4)
                .map(|_| OnceLock::new())
                .collect(),
        }
    }
}

/// What the server said to a client's credentials.
pub enum LoginOutcome {
    /// Accepted: the client's commands run as that user.
    Accepted,
    /// The server has no password to check (`AUTH <password> called without any password
    /// configured...`): its reply, verbatim.
    NoPassword(Bytes),
    /// Refused (`-WRONGPASS ...`): its reply, verbatim.
    Refused(Bytes),
}

pub struct Upstream {
    /// `source` or `target`: names the side in errors and logs.
    pub label: &'static str,
    connector: Arc<Connector>,
    conns_per_pool: usize,
    /// Clients that have not authenticated (or every client with `client_auth = "proxy"`).
    base: Pools,
    /// Per user (credentials as the client gave them), made on first use.
    users: Mutex<HashMap<Arc<Login>, Arc<Pools>>>,
    /// The server runs commands of a connection that has not authenticated (its default
    /// user has no password). Without it, clients must AUTH first (`client_auth =
    /// "source"`); the proxy answers NOAUTH until they do. Not known (the server did not
    /// answer at start): false until [`Upstream::probe_later`] learns it.
    pub anonymous_ok: std::sync::atomic::AtomicBool,
    anonymous_known: std::sync::atomic::AtomicBool,
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
    /// `auth_by_backend`: `client_auth = "source"` (the base pools log in as nobody).
    pub async fn new(
        label: &'static str,
        endpoint: &Endpoint,
        conns_per_pool: usize,
        timeout: Duration,
        auth_by_backend: bool,
    ) -> Result<Upstream, ConnectError> {
        let connector = Arc::new(Connector::new(
            endpoint.url.clone(),
            endpoint.tls_ca_file.as_deref(),
            timeout,
        )?);
        let (version, databases, anonymous_ok, known) = match probe(&connector).await {
            Ok((v, d, a)) => (v, d, a, true),
            Err(e) if e.is_retryable() => {
                tracing::warn!(side = label, error = %e, "backend not reachable at start; will keep trying");
                ("7.0.0".to_string(), 16, false, false)
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
        let base_auth = if auth_by_backend {
            Auth::Anonymous
        } else {
            Auth::Url
        };
        Ok(Upstream {
            label,
            connector,
            conns_per_pool,
            base: Pools::new(base_auth, databases),
            users: Mutex::new(HashMap::new()),
            anonymous_ok: anonymous_ok.into(),
            anonymous_known: known.into(),
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
    /// [`LANE_SCRIPTS`] or 0), among `pools` (the base pools when None).
    pub fn shared<'a>(
        &'a self,
        pools: Option<&'a Pools>,
        db: u32,
        resp3: bool,
        client_id: u64,
        lane: u8,
    ) -> &'a PipelineHandle {
        let pools = pools.unwrap_or(&self.base);
        let idx = ((db.min(self.databases.saturating_sub(1)) as usize) * 2 + resp3 as usize) * 2
            + usize::from(lane.min(1));
        let pool = pools.pools[idx].get_or_init(|| {
            let setup = SessionSetup {
                db,
                resp3,
                name: None,
                auth: pools.auth.clone(),
            };
            (0..self.conns_per_pool)
                .map(|_| {
                    PipelineHandle::spawn_shared(self.connector.clone(), setup.clone(), self.label)
                })
                .collect()
        });
        &pool[(client_id % pool.len() as u64) as usize]
    }

    /// The pools of a user's connections (made on first use).
    pub fn user_pools(&self, login: &Arc<Login>) -> Arc<Pools> {
        let mut users = self.users.lock().unwrap_or_else(|p| p.into_inner());
        users
            .entry(login.clone())
            .or_insert_with(|| Arc::new(Pools::new(Auth::Login(login.clone()), self.databases)))
            .clone()
    }

    /// Makes a user's connections log in this way (the cutover's preparation: a user whose
    /// AUTH the target has no password for).
    pub fn set_user_auth(&self, login: &Arc<Login>, auth: Auth) {
        let mut users = self.users.lock().unwrap_or_else(|p| p.into_inner());
        users.insert(login.clone(), Arc::new(Pools::new(auth, self.databases)));
    }

    /// Asks the server whether these credentials log in (a connection of their own that
    /// runs `AUTH`, then closes). An error: the server could not be asked.
    pub async fn check_login(&self, login: &Arc<Login>) -> Result<LoginOutcome, ConnectError> {
        let setup = SessionSetup {
            auth: Auth::Login(login.clone()),
            ..SessionSetup::default()
        };
        match self.connector.connect(&setup).await {
            Ok(_) => Ok(LoginOutcome::Accepted),
            Err(ConnectError::Refused {
                step: "AUTH",
                reply,
                ..
            }) => {
                let bytes = Bytes::from(format!("-{reply}\r\n"));
                if reply.starts_with("ERR AUTH") && reply.contains("without any password") {
                    Ok(LoginOutcome::NoPassword(bytes))
                } else {
                    Ok(LoginOutcome::Refused(bytes))
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Opens a connection of the client's own, set up with its db, protocol and name.
    /// Also returns the server's id for it (to `CLIENT UNBLOCK` it during a cutover).
    /// `login`: the client's user (None: as the base pools log in).
    pub async fn dedicated(
        &self,
        db: u32,
        resp3: bool,
        name: Option<Bytes>,
        login: Option<&Arc<Login>>,
    ) -> Result<(PipelineHandle, i64), ConnectError> {
        let auth = match login {
            Some(l) => Auth::Login(l.clone()),
            None => self.base.auth.clone(),
        };
        if let Some(topo) = &self.cluster {
            // Its connections open as it touches nodes; its server ids are per node, so
            // CLIENT UNBLOCK during a cutover cannot name one (-1).
            let h = spawn_client(
                topo.clone(),
                ClientOptions {
                    resp3,
                    dedicated: true,
                    name,
                    auth,
                    lane: 0,
                },
            );
            return Ok((h, -1));
        }
        let setup = SessionSetup {
            db,
            resp3,
            name,
            auth,
        };
        let mut stream = self.connector.connect(&setup).await?;
        let id = stream
            .request(&[&[b"CLIENT", b"ID"]])
            .await
            .ok()
            .and_then(|r| resp::Value::decode_one(r.first()?).ok()?.int())
            .unwrap_or(-1);
        let h = PipelineHandle::spawn_dedicated(stream, resp3, self.label, self.connector.addr());
        Ok((h, id))
    }

    /// When the server did not answer at start: learns in the background whether it runs
    /// commands of a connection that has not logged in (until then clients must AUTH).
    pub fn probe_later(self: &Arc<Self>) {
        use std::sync::atomic::Ordering;
        if self.anonymous_known.load(Ordering::Relaxed) {
            return;
        }
        let up = self.clone();
        tokio::spawn(async move {
            loop {
                if let Ok(ok) = anonymous_allowed(&up.connector).await {
                    up.anonymous_ok.store(ok, Ordering::Relaxed);
                    up.anonymous_known.store(true, Ordering::Relaxed);
                    return;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
    }

    /// How the base pools log in.
    pub fn base_auth(&self) -> &Auth {
        &self.base.auth
    }
}

/// Reads `redis_version`, the number of databases, and whether the server runs commands
/// of a connection that has not authenticated.
async fn probe(connector: &Connector) -> Result<(String, u32, bool), ConnectError> {
    let anonymous_ok = anonymous_allowed(connector).await.unwrap_or(false);
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
    // `databases 16` (a list in RESP2). CONFIG may be renamed or refused on managed
    // services: fall back to Redis's default.
    let databases = resp::Value::decode_one(&replies[1])
        .ok()
        .and_then(|v| v.field(b"databases")?.int())
        .and_then(|d| u32::try_from(d).ok())
        .filter(|d| (1..=1_000_000).contains(d))
        .unwrap_or(16);
    Ok((version, databases, anonymous_ok))
}

/// Whether the server runs a command (PING) on a connection that has not logged in.
async fn anonymous_allowed(connector: &Connector) -> Result<bool, ConnectError> {
    let mut s = connector
        .connect(&SessionSetup {
            auth: Auth::Anonymous,
            ..SessionSetup::default()
        })
        .await?;
    let r = s
        .request(&[&[b"PING"]])
        .await
        .map_err(|e| ConnectError::Io {
            addr: connector.addr(),
            source: e,
        })?;
    Ok(r.first().is_some_and(|p| p.first() != Some(&b'-')))
}
