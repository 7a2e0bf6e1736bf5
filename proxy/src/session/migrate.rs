//! A client's share of a cutover: when the gate closes or the route switches, its
//! connection state follows (a dedicated connection is dropped or swapped once what it
//! owes is in, a blocked command is unblocked on the source and re-issued where the route
//! settles, subscriptions are made again on the target before the switch).

use super::*;

/// What a client carries through a cutover, beside its ordinary state.
#[derive(Default)]
pub(super) struct Migration {
    /// During a cutover: the same subscriptions on the target, and how many of their
    /// confirmations are still to come (swallowed: the client already had its own).
    pub presub: Option<PipelineHandle>,
    pub presub_pending: u32,
    /// Subscribe on the target at the next turn of `process_input` (it may wait for the
    /// connection).
    pub presub_wanted: bool,
    /// The server's id of that target connection.
    pub presub_id: i64,
    /// This client's target subscriptions are confirmed and counted in
    /// `Router::resubscribed`.
    pub presub_counted: bool,
    /// The target connection that takes over once the old one's replies are in.
    pub swap_after_drain: Option<PipelineHandle>,
    /// The dedicated connection belongs to the previous route: drop it once `owed` is 0.
    pub stale_dedicated: bool,
    /// During a cutover it was unblocked on the source (CLIENT UNBLOCK); its nil reply is
    /// swallowed and the command re-issued with its remaining timeout where the route
    /// settles.
    pub unblocking: bool,
    pub reissue_pending: bool,
    /// Re-issue the blocked command at the next turn of `process_input`, once the gate
    /// is open.
    pub reissue_wanted: bool,
}

impl Session {
    /// The gate opened or the route switched: resume held commands; a connection of the
    /// old route that carries no state is dropped (the next one opens on the new route).
    pub(super) fn route_changed(&mut self) {
        let route = self.sh.router.route();
        let gating = self.sh.router.gating();
        if gating
            && self.block.is_some()
            && self.owed == 1
            && !self.mig.unblocking
            && self.backend_id >= 0
        {
            // Blocked on the source: unblock it there so the drain completes.
            self.mig.unblocking = true;
            let up = route.upstream.clone();
            let id = self.backend_id.to_string();
            tokio::spawn(async move {
                if let Ok(mut c) = up
                    .connector()
                    .connect(&cluster::SessionSetup::default())
                    .await
                {
                    let _ = c.request(&[&[b"CLIENT", b"UNBLOCK", id.as_bytes()]]).await;
                }
            });
        }
        if gating
            && self.counted_subscriber
            && self.mig.presub.is_none()
            && route.epoch == self.route.epoch
        {
            // Subscribe on the target too before anything is released there (opened in
            // `process_input`, which may wait for the connection).
            self.mig.presub_wanted = true;
        }
        if !gating && route.epoch == self.route.epoch && self.mig.presub.is_some() {
            // Aborted: the source connection stays, the target one goes.
            drop(route);
            self.drop_presub();
            return self.route_changed();
        }
        if route.epoch != self.route.epoch && !gating {
            self.route = Arc::clone(&route);
            if let Some(p) = self.mig.presub.take() {
                // Switched: the target connection, already subscribed, takes over (once
                // replies still owed by the old one, e.g. a RESP3 subscriber's read, are in).
                self.mig.presub_pending = 0;
                if self.mig.presub_counted {
                    self.mig.presub_counted = false;
                    self.sh.router.resubscribed.fetch_sub(1, Ordering::AcqRel);
                }
                if self.owed > 0 {
                    self.mig.swap_after_drain = Some(p);
                    self.wait_drain = true;
                } else {
                    self.dedicated = Some(p);
                    self.set_backend_id(self.mig.presub_id);
                }
            }
            if self.st.watching {
                self.st.watch_broken = true;
            }
            // (RESP3 subscribers have `subscribed` false: their pushes need no framing
            // help, but their subscriptions live on that connection all the same.)
            let stateless = !self.st.subscribed
                && !self.counted_subscriber
                && !self.st.monitoring
                && !self.st.in_multi
                && self.owed == 0;
            if self.dedicated.is_some() && stateless {
                self.dedicated = None;
                self.st.dedicated = false;
                self.view.backend_id.store(-1, Ordering::Relaxed);
            } else if self.owed > 0
                && !self.st.subscribed
                && !self.counted_subscriber
                && !self.st.monitoring
                && !self.st.in_multi
            {
                // Replies (reads sent during the gate) still owed by the old route: let them
                // come before anything goes to the new one, or replies from two servers
                // could arrive out of order; then leave a dedicated connection behind.
                self.mig.stale_dedicated = self.dedicated.is_some();
                self.wait_drain = true;
            }
        }
        if !gating && self.mig.reissue_pending {
            self.mig.reissue_pending = false;
            self.mig.reissue_wanted = true;
        }
        if self.held && !self.sh.router.gating() {
            self.held = false;
            self.sh.router.held_clients.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Sends the blocking command again (after a cutover moved it) with the time it has
    /// left; before anything the client sent after it.
    pub(super) async fn reissue_blocked(&mut self) {
        let Some(b) = self.block.take() else { return };
        let Some(cmd) = with_remaining_timeout(&b) else {
            tracing::warn!(
                client = self.st.id,
                "cannot re-issue a blocking command after the cutover"
            );
            return;
        };
        if self.dedicated.is_none() {
            if let Err(reply) = self.open_dedicated().await {
                self.reply_local(reply);
                return;
            }
        }
        self.block = Some(Blocked {
            raw: cmd.clone(),
            at: Instant::now(),
            timeout: b.timeout,
        });
        self.view
            .blocked_on
            .store(self.backend_id, Ordering::Relaxed);
        // Counted like any write, so a later cutover's drain accounts for it.
        self.sh.router.add_inflight(1);
        self.next_writes += 1;
        self.send(cmd, 1, 0);
    }

    /// The client's db as numbered on `side`: the syncer put source db N into target db
    /// `sync.db_map(N)`, so after the switch the client must find its keys there.
    pub(super) fn db_on(&self, side: crate::route::Side) -> u32 {
        match side {
            crate::route::Side::Source => self.st.db,
            crate::route::Side::Target => self.sh.settings.sync.db_map.target(self.st.db),
        }
    }

    pub(super) fn count_subscriber(&mut self) {
        self.publish();
        let has = self.subs.iter().any(|s| !s.is_empty());
        if has != self.counted_subscriber {
            self.counted_subscriber = has;
            self.sh
                .router
                .subscribers
                .fetch_add(if has { 1 } else { -1 }, Ordering::AcqRel);
        }
    }

    /// Makes this client's subscriptions on the target as well (during a cutover).
    pub(super) async fn subscribe_on_target(&mut self) {
        let Some(target) = self.sh.target.load_full() else {
            return;
        };
        let h = match target
            .dedicated(
                self.db_on(crate::route::Side::Target),
                self.st.resp3,
                self.st.name.clone(),
                self.login.as_ref(),
            )
            .await
        {
            Ok((h, id)) => {
                self.mig.presub_id = id;
                h
            }
            Err(e) => {
                tracing::warn!(client = self.st.id, error = %e, "cannot subscribe on the target");
                return;
            }
        };
        let mut out = BytesMut::new();
        let mut n = 0u32;
        for (k, cmd) in [&b"SUBSCRIBE"[..], b"PSUBSCRIBE", b"SSUBSCRIBE"]
            .iter()
            .enumerate()
        {
            if self.subs[k].is_empty() {
                continue;
            }
            n += self.subs[k].len() as u32;
            resp::encode::command(
                &mut out,
                std::iter::once(*cmd)
                    .chain(self.subs[k].iter().map(|b| &b[..]))
                    .collect::<Vec<_>>()
                    .into_iter(),
            );
        }
        let batch = Batch {
            data: out.freeze(),
            count: 0,
            flags: BatchFlags(BatchFlags::PUBSUB),
            reply: self.tx.clone(),
            tag: 0,
        };
        // The gate may have reopened (abort) while the connection was opening.
        let still = self.sh.router.gating() && self.sh.router.route().epoch == self.route.epoch;
        if still && h.send(batch).is_ok() {
            self.mig.presub = Some(h);
            self.mig.presub_pending = n;
            if n == 0 {
                self.mig.presub_counted = true;
                self.sh.router.resubscribed.fetch_add(1, Ordering::AcqRel);
            }
        }
    }

    /// Drops the target subscriptions made for a cutover, undoing their count.
    pub(super) fn drop_presub(&mut self) {
        self.mig.presub = None;
        self.mig.presub_pending = 0;
        if self.mig.presub_counted {
            self.mig.presub_counted = false;
            self.sh.router.resubscribed.fetch_sub(1, Ordering::AcqRel);
        }
    }
}
