//! A session in front of a Redis Cluster: its routing state runs inside the session (no
//! task hop per batch); replies from the nodes reach it through the session's channel with
//! the tags its router owns, and a router replaced while it still owed replies answers
//! first.

use super::*;

impl Session {
    /// Hands a batch to this client's cluster router (made, or made again for a new route
    /// or protocol; the session drains its replies before either changes).
    pub(super) fn send_cluster(
        &mut self,
        key: (u64, bool, u8),
        topo: Arc<cluster::Topology>,
        data: Bytes,
        count: u32,
        flags: u8,
        hints: &[Hint],
    ) {
        if self.cluster.as_ref().is_none_or(|(k, _)| *k != key) {
            self.retire_cluster_router();
            self.cluster_gen = self.cluster_gen.wrapping_add(1).max(1);
            let client = ClusterClient::new(
                topo,
                // A user of its own (client_auth = "source"): connections of its own,
                // logged in as that user. Otherwise the nodes' shared connections, logged
                // in as the base pools are (nobody with client_auth = "source").
                ClientOptions {
                    resp3: key.1,
                    lane: key.2,
                    dedicated: self.login.is_some(),
                    name: None,
                    auth: match &self.login {
                        Some(l) => cluster::Auth::Login(l.clone()),
                        None => self.route.upstream.base_auth().clone(),
                    },
                },
                self.tx.clone(),
                self.cluster_gen,
            );
            self.cluster = Some((key, client));
        }
        self.push_pending(count);
        if let Some((_, c)) = &mut self.cluster {
            c.send_hinted(data, hints, BatchFlags(flags));
        }
    }

    /// The cluster router is done with (the route or the protocol changed): dropped, or
    /// kept while it still owes replies. The session drains before either changes, so
    /// this only keeps one when a switch landed while a batch was being handed over.
    pub(super) fn retire_cluster_router(&mut self) {
        if let Some((_, c)) = self.cluster.take() {
            if !c.idle() {
                self.retiring.push(c);
            }
        }
    }

    /// Writes what the cluster routers routed and hands the client what they have ready:
    /// the retiring ones' first, in order; the rest once they are done.
    pub(super) fn cluster_progress(&mut self) {
        let mut ready = std::mem::take(&mut self.cluster_ready);
        if !self.retiring.is_empty() {
            let mut retiring = std::mem::take(&mut self.retiring);
            let mut waiting = false;
            retiring.retain_mut(|c| {
                c.flush();
                if waiting {
                    return true;
                }
                c.take_replies(&mut ready);
                waiting = !c.idle();
                waiting
            });
            for r in ready.drain(..) {
                self.on_reply(r);
            }
            self.retiring = retiring;
            if !self.retiring.is_empty() {
                if let Some((_, c)) = &mut self.cluster {
                    c.flush();
                }
                self.cluster_ready = ready;
                return;
            }
            let deferred = std::mem::take(&mut self.deferred);
            for r in deferred {
                self.on_reply(r);
            }
        }
        if let Some((_, c)) = &mut self.cluster {
            c.flush();
            c.take_replies(&mut ready);
        }
        for r in ready.drain(..) {
            self.on_reply(r);
        }
        self.cluster_ready = ready;
    }

    /// A reply from the channel: a cluster node's (for its router) or the client's own.
    pub(super) fn on_channel_reply(&mut self, r: Reply) {
        if r.tag != 0 {
            let router = self
                .cluster
                .iter_mut()
                .map(|(_, c)| c)
                .chain(self.retiring.iter_mut())
                .find(|c| c.owns(r.tag));
            // None: for a router this session no longer has (nothing waits for it).
            if let Some(c) = router {
                c.on_reply(r);
            }
            return;
        }
        if !self.retiring.is_empty() {
            self.deferred.push_back(r);
            return;
        }
        self.on_reply(r);
    }
}
