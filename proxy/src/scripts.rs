//! Script bodies seen through the proxy (EVAL bodies, SCRIPT LOAD). Redis does not
//! replicate its script cache, so before the switch they are loaded on the target: an
//! application's EVALSHA keeps working after the cutover.

use std::collections::HashSet;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Mutex;

use bytes::Bytes;

/// At most this many distinct bodies are kept (a client generating scripts must not grow
/// the proxy without bound; the cutover says how many it could not keep).
const MAX_SCRIPTS: usize = 10_000;

#[derive(Default)]
pub struct Scripts {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    seen: HashSet<u64>,
    bodies: Vec<Bytes>,
    dropped: u64,
}

impl Scripts {
    /// Records a body (cheap when already known: a hash and a set lookup).
    pub fn record(&self, body: &[u8]) {
        let mut h = DefaultHasher::new();
        body.hash(&mut h);
        let key = h.finish();
        let Ok(mut g) = self.inner.lock() else { return };
        if g.seen.contains(&key) {
            return;
        }
        if g.bodies.len() >= MAX_SCRIPTS {
            g.dropped += 1;
            return;
        }
        g.seen.insert(key);
        g.bodies.push(Bytes::copy_from_slice(body));
    }

    /// Bodies recorded from index `from` on (to load only the new ones).
    pub fn since(&self, from: usize) -> Vec<Bytes> {
        self.inner
            .lock()
            .map(|g| {
                g.bodies
                    .get(from..)
                    .map(<[Bytes]>::to_vec)
                    .unwrap_or_default()
            })
            .unwrap_or_default()
    }

    pub fn dropped(&self) -> u64 {
        self.inner.lock().map(|g| g.dropped).unwrap_or(0)
    }
}
