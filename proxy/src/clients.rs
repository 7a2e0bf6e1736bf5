//! The proxy's own clients, as CLIENT KILL, CLIENT LIST and CLIENT UNBLOCK see them (id,
//! addresses, age, idle time, name, db, user, protocol, whether blocked): a client's
//! command acts on the application connections, never on the backend connections the
//! proxy shares among them.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
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
    /// What CLIENT LIST shows of it, kept by its session.
    pub view: Arc<ClientView>,
}

/// A client as CLIENT LIST shows it. The session publishes its state when it changes
/// (SELECT, HELLO, AUTH, SETNAME, SETINFO, subscriptions: rare), and stamps its activity
/// once per read, not per command.
#[derive(Debug, Default)]
pub struct ClientView {
    pub state: Mutex<ViewState>,
    /// Milliseconds since the client connected, at its last input.
    pub active_ms: AtomicU64,
    /// The server's id of the dedicated connection a blocking command of this client waits
    /// on, or -1: what CLIENT UNBLOCK <this client's id> must name on the server.
    pub blocked_on: AtomicI64,
    /// The server's id of the client's own (dedicated) connection, or -1: what CLIENT
    /// TRACKING ... REDIRECT <this client's id> must name on the server.
    pub backend_id: AtomicI64,
    /// The last command it sent (its place in the command table, plus one; 0: none yet),
    /// stamped once per read.
    pub last_cmd: AtomicU16,
}

/// The client's state for CLIENT LIST.
#[derive(Debug, Clone, Default)]
pub struct ViewState {
    pub name: String,
    pub db: u32,
    pub user: String,
    pub resp: u8,
    pub lib_name: String,
    pub lib_ver: String,
    /// `N`, `x` (transaction or own connection), `P` (pub/sub), `O` (monitor).
    pub flags: &'static str,
    pub sub: usize,
    pub psub: usize,
    pub ssub: usize,
}

impl ClientEntry {
    /// The CLIENT LIST / CLIENT INFO line of this client (`cmd`: its current command, when
    /// it is the one asking; else the last one it sent).
    pub fn line(&self, cmd: Option<&str>) -> String {
        let last = self.view.last_cmd.load(Ordering::Relaxed);
        let cmd = cmd.unwrap_or_else(|| {
            last.checked_sub(1)
                .and_then(resp::command::by_index)
                .map_or("NULL", |c| c.name)
        });
        let v = self
            .view
            .state
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default();
        let age_ms = self.created.elapsed().as_millis() as u64;
        let idle = age_ms.saturating_sub(self.view.active_ms.load(Ordering::Relaxed)) / 1000;
        format!(
            "id={} addr={} laddr={} fd=-1 name={} age={} idle={} flags={} db={} sub={} psub={} ssub={} multi=-1 qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 rbs=0 rbp=0 obl=0 oll=0 omem=0 tot-mem=0 events=r cmd={} user={} redir=-1 resp={} lib-name={} lib-ver={}\n",
            self.id,
            self.peer,
            self.local.map(|a| a.to_string()).unwrap_or_default(),
            v.name,
            age_ms / 1000,
            idle,
            v.flags,
            v.db,
            v.sub,
            v.psub,
            v.ssub,
            cmd,
            v.user,
            v.resp,
            v.lib_name,
            v.lib_ver,
        )
    }
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
        view: Arc<ClientView>,
    ) -> CancellationToken {
        let kill = shutdown.child_token();
        view.blocked_on.store(-1, Ordering::Relaxed);
        view.backend_id.store(-1, Ordering::Relaxed);
        let e = ClientEntry {
            id,
            peer,
            local,
            created: Instant::now(),
            kill: kill.clone(),
            view,
        };
        if let Ok(mut m) = self.map.lock() {
            m.insert(id, e);
        }
        kill
    }

    /// The clients `pred` accepts, by id.
    pub fn list(&self, pred: impl Fn(&ClientEntry) -> bool) -> Vec<ClientEntry> {
        let Ok(m) = self.map.lock() else {
            return Vec::new();
        };
        let mut v: Vec<ClientEntry> = m.values().filter(|e| pred(e)).cloned().collect();
        v.sort_by_key(|e| e.id);
        v
    }

    /// The server's id of client `id`'s own connection, if it has one.
    pub fn backend_of(&self, id: u64) -> Option<i64> {
        let m = self.map.lock().ok()?;
        let b = m.get(&id)?.view.backend_id.load(Ordering::Relaxed);
        (b >= 0).then_some(b)
    }

    /// The server's id of the connection client `id` is blocked on, if it is.
    pub fn blocked_on(&self, id: u64) -> Option<i64> {
        let m = self.map.lock().ok()?;
        let b = m.get(&id)?.view.blocked_on.load(Ordering::Relaxed);
        (b >= 0).then_some(b)
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
