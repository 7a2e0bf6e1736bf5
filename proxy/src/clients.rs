//! The proxy's own clients, as CLIENT KILL sees them (id, address, local address, age):
//! a client's command acts on the application connections, never on the backend
//! connections the proxy shares among them.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Instant;

use tokio_util::sync::CancellationToken;

/// One connected client.
#[derive(Debug, Clone)]
pub struct ClientEntry {
    pub id: u64,
    pub peer: SocketAddr,
    pub local: Option<SocketAddr>,
    pub created: Instant,
    kill: CancellationToken,
}

/// Every connected client. Touched when clients come and go, not per command.
#[derive(Debug, Default)]
pub struct Clients {
    map: Mutex<HashMap<u64, ClientEntry>>,
}

impl Clients {
    /// Adds a client; its token is a child of `shutdown`, also cancelled when another
    /// client kills it.
    pub fn register(
        &self,
        id: u64,
        peer: SocketAddr,
        local: Option<SocketAddr>,
        shutdown: &CancellationToken,
    ) -> CancellationToken {
        let kill = shutdown.child_token();
        let e = ClientEntry {
            id,
            peer,
            local,
            created: Instant::now(),
            kill: kill.clone(),
        };
        if let Ok(mut m) = self.map.lock() {
            m.insert(id, e);
        }
        kill
    }

    pub fn unregister(&self, id: u64) {
        if let Ok(mut m) = self.map.lock() {
            m.remove(&id);
        }
    }

    /// Kills every client `pred` accepts but `me` (whose own end the caller handles).
    /// Returns how many matched, and whether `me` did.
    pub fn kill(&self, pred: impl Fn(&ClientEntry) -> bool, me: u64) -> (usize, bool) {
        let Ok(m) = self.map.lock() else {
            return (0, false);
        };
        let mut n = 0;
        let mut mine = false;
        for e in m.values().filter(|e| pred(e)) {
            n += 1;
            if e.id == me {
                mine = true;
            } else {
                e.kill.cancel();
            }
        }
        (n, mine)
    }
}
