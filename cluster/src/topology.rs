//! A Redis Cluster as the proxy sees it: the current slot map (with an epoch that changes
//! whenever the map does) and one shared pipelined connection per node and protocol.
//!
//! The map is read on every command, so it lives in an `ArcSwap` (a load, no lock). It is
//! refreshed by one background task: periodically, and soon after anyone reports a
//! `-MOVED` ([`Topology::request_refresh`]); reports arriving together cost one refresh.
//! Nodes that leave the map lose their shared connections at the next refresh.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::Notify;

use crate::connect::{Connector, SessionSetup};
use crate::migrating::MigratingSlots;
use crate::pipeline::PipelineHandle;
use crate::slots::{NodeAddr, SlotMap, SlotsError};
use crate::ConnectError;

/// How often the map is refreshed when nothing asks for it.
const REFRESH_EVERY: Duration = Duration::from_secs(5);
/// At most one refresh per this interval, however many `-MOVED` replies arrive.
const MIN_REFRESH_GAP: Duration = Duration::from_millis(50);

/// One version of the slot map.
pub struct MapState {
    /// Increases by one each time the map changes.
    pub epoch: u64,
    pub slots: SlotMap,
    /// The masters, in slot order: the order SCAN walks them.
    pub masters: Vec<NodeAddr>,
}

impl MapState {
    /// The node keyless commands go to.
    pub fn default_node(&self) -> Option<&NodeAddr> {
        self.masters.first()
    }
}

struct Node {
    connector: Arc<Connector>,
    /// Shared connections, RESP2 and RESP3, per session worker (`worker * 2 + resp3`).
    shared: Vec<Option<PipelineHandle>>,
}

pub struct Topology {
    seed: Arc<Connector>,
    /// `source` or `target`, for errors and logs.
    pub label: &'static str,
    map: ArcSwap<MapState>,
    nodes: Mutex<HashMap<NodeAddr, Node>>,
    refresh: Notify,
    /// Slots recently answered with `-ASK` or `-TRYAGAIN`, as any client saw them.
    pub migrating: MigratingSlots,
}

impl Topology {
    /// Asks the node of `seed` whether it is a cluster node; if so, fetches the map and
    /// starts the refresher. `Ok(None)`: a standalone server.
    pub async fn discover(
        seed: Arc<Connector>,
        label: &'static str,
    ) -> Result<Option<Arc<Topology>>, TopologyError> {
        let mut conn = seed.connect(&SessionSetup::default()).await?;
        let replies = conn
            .request(&[&[b"INFO", b"cluster"]])
            .await
            .map_err(|e| TopologyError::Io(seed.addr(), e))?;
        let enabled = replies
            .first()
            .is_some_and(|r| crate::info::cluster_enabled(r));
        if !enabled {
            return Ok(None);
        }
        let origin = NodeAddr::from(seed.url());
        let slots = SlotMap::fetch(&mut conn, &origin).await?;
        let masters = slots.masters();
        tracing::info!(
            side = label,
            masters = masters.len(),
            slots = slots.assigned_slots(),
            "cluster detected"
        );
        let topo = Arc::new(Topology {
            seed,
            label,
            map: ArcSwap::from_pointee(MapState {
                epoch: 1,
                slots,
                masters,
            }),
            nodes: Mutex::new(HashMap::new()),
            refresh: Notify::new(),
            migrating: MigratingSlots::default(),
        });
        tokio::spawn(refresher(topo.clone()));
        Ok(Some(topo))
    }

    /// The current map.
    pub fn map(&self) -> arc_swap::Guard<Arc<MapState>> {
        self.map.load()
    }

    /// Someone saw the map is stale (a `-MOVED`): refresh soon.
    pub fn request_refresh(&self) {
        self.refresh.notify_one();
    }

    /// A connector for `addr` (same credentials and TLS as the URL's node).
    pub fn connector(&self, addr: &NodeAddr) -> Result<Arc<Connector>, ConnectError> {
        let mut nodes = self.nodes.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = nodes.get(addr) {
            return Ok(n.connector.clone());
        }
        let connector = Arc::new(self.seed.for_node(&addr.host, addr.port)?);
        nodes.insert(
            addr.clone(),
            Node {
                connector: connector.clone(),
                shared: Vec::new(),
            },
        );
        Ok(connector)
    }

    /// The shared connection to `addr` for the protocol and lane (0, or 1 for scripts and
    /// functions: one that runs long holds only the scripts behind it), logged in with the
    /// URL's credentials or, `anonymous`, not at all; opened on first use.
    pub fn shared(
        &self,
        addr: &NodeAddr,
        resp3: bool,
        lane: u8,
        anonymous: bool,
    ) -> Result<PipelineHandle, ConnectError> {
        let connector = self.connector(addr)?;
        let mut nodes = self.nodes.lock().unwrap_or_else(|p| p.into_inner());
        let node = nodes.entry(addr.clone()).or_insert_with(|| Node {
            connector: connector.clone(),
            shared: Vec::new(),
        });
        let i = ((crate::worker::current() * 2 + resp3 as usize) * 2 + usize::from(lane.min(1)))
            * 2
            + anonymous as usize;
        if node.shared.len() <= i {
            node.shared.resize(i + 1, None);
        }
        let h = node.shared[i].get_or_insert_with(|| {
            let setup = SessionSetup {
                resp3,
                auth: if anonymous {
                    crate::connect::Auth::Anonymous
                } else {
                    crate::connect::Auth::Url
                },
                ..SessionSetup::default()
            };
            PipelineHandle::spawn_shared(node.connector.clone(), setup, self.label)
        });
        Ok(h.clone())
    }

    /// Fetches the map from the first node that answers (known masters first, then the
    /// URL's node) and installs it if it changed.
    async fn refresh_once(&self) -> Result<bool, TopologyError> {
        let mut candidates = self.map().masters.clone();
        candidates.push(NodeAddr::from(self.seed.url()));
        let mut last = None;
        for addr in candidates {
            let connector = match self.connector(&addr) {
                Ok(c) => c,
                Err(e) => {
                    last = Some(e.into());
                    continue;
                }
            };
            let fetched = async {
                let mut conn = connector.connect(&SessionSetup::default()).await?;
                Ok::<_, TopologyError>(SlotMap::fetch(&mut conn, &addr).await?)
            }
            .await;
            match fetched {
                Ok(slots) if slots.assigned_slots() > 0 => return Ok(self.install(slots)),
                Ok(_) => last = Some(TopologyError::NoSlots(addr.to_string())),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or(TopologyError::NoSlots(self.seed.addr())))
    }

    fn install(&self, slots: SlotMap) -> bool {
        let cur = self.map();
        if cur.slots == slots {
            return false;
        }
        let masters = slots.masters();
        // Nodes no longer in the map lose their shared connections (their tasks end once
        // the last client holding a handle lets go).
        {
            let mut nodes = self.nodes.lock().unwrap_or_else(|p| p.into_inner());
            nodes.retain(|addr, _| {
                slots
                    .shards()
                    .iter()
                    .any(|s| &s.master == addr || s.replicas.contains(addr))
            });
        }
        tracing::info!(
            side = self.label,
            epoch = cur.epoch + 1,
            masters = masters.len(),
            "cluster slot map changed"
        );
        metrics::counter!("cutover_cluster_map_changes_total", "side" => self.label).increment(1);
        self.map.store(Arc::new(MapState {
            epoch: cur.epoch + 1,
            slots,
            masters,
        }));
        true
    }
}

/// Lives as long as the process: a topology belongs to an upstream, which never goes away.
async fn refresher(t: Arc<Topology>) {
    loop {
        let _ = tokio::time::timeout(REFRESH_EVERY, t.refresh.notified()).await;
        t.migrating.expire();
        if let Err(e) = t.refresh_once().await {
            tracing::warn!(side = t.label, error = %e, "cluster slot map refresh failed");
        }
        tokio::time::sleep(MIN_REFRESH_GAP).await;
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    #[error("cluster slot map: {0}")]
    Slots(#[from] SlotsError),
    #[error("{0}: the cluster serves no slots")]
    NoSlots(String),
}

impl TopologyError {
    /// Whether trying again later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            TopologyError::Connect(e) => e.is_retryable(),
            TopologyError::Io(..) | TopologyError::NoSlots(_) => true,
            TopologyError::Slots(_) => false,
        }
    }
}
