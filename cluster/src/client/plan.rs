//! Planning a command: which node(s) take it, as what parts, and how their replies come
//! together ([`Merge`]): keyed commands by slot, commands spanning slots split per slot
//! (or refused with `-CROSSSLOT`), keyless ones to every master, a transaction pinned to
//! the slot of its first key.

use super::*;

impl ClusterClient {
    pub(super) fn route_command(
        &mut self,
        cmd: Bytes,
        args: &[std::ops::Range<usize>],
        pubsub: bool,
        flags: BatchFlags,
    ) {
        let arg = |i: usize| -> &[u8] { args.get(i).map(|r| &cmd[r.clone()]).unwrap_or(&[]) };
        let name = arg(0);
        let info = command::lookup(name);
        let lname = info.map(|i| i.name).unwrap_or("");
        let argc = args.len();
        let pubsub_cmd = info.is_some_and(|i| i.has(command::flags::PUBSUB));
        let replies = match lname {
            _ if !pubsub_cmd => 1,
            "subscribe" | "psubscribe" | "ssubscribe" | "unsubscribe" | "punsubscribe"
            | "sunsubscribe"
                if pubsub =>
            {
                0
            }
            "unsubscribe" | "punsubscribe" | "sunsubscribe" => argc.saturating_sub(1).max(1) as u32,
            _ => 1,
        };
        // The key slots.
        self.keybuf.clear();
        if let Some(info) = info {
            let sub_info = if info.has(command::flags::CONTAINER) {
                command::lookup_sub(info, arg(1))
            } else {
                None
            };
            let i = sub_info.unwrap_or(info);
            command::key_positions(i, argc, arg, &mut self.keybuf);
        }
        let mut slot = None;
        let mut cross = false;
        for &p in &self.keybuf {
            let s = key_slot(arg(p));
            match slot {
                None => slot = Some(s),
                Some(x) if x != s => cross = true,
                _ => {}
            }
        }
        let sub = |s: &[u8]| arg(1).eq_ignore_ascii_case(s);
        let seq = self.seq_end();
        // A transaction (dedicated clients only).
        if self.opts.dedicated {
            if let Some(done) = self.transaction(seq, lname, &cmd, slot, cross) {
                if let Some(e) = done {
                    self.entries.push_back(e);
                }
                return;
            }
        }
        let entry = match (lname, cross) {
            // Most commands: one key (or keys of one slot), to that slot's master.
            _ if slot.is_some() && !cross => {
                Entry::sent(smallvec![Part::new(cmd, slot, None)], Merge::One)
            }
            ("ping", _) if !self.opts.dedicated && argc <= 2 => local(if argc == 2 {
                bulk(arg(1))
            } else {
                Bytes::from_static(b"+PONG\r\n")
            }),
            ("echo", _) if !self.opts.dedicated && argc == 2 => local(bulk(arg(1))),
            ("mget", true) => self.split(
                &cmd,
                args,
                1,
                1,
                Merge::Mget {
                    positions: Vec::new(),
                    keys: argc - 1,
                },
            ),
            ("mset", true) => self.split(&cmd, args, 1, 2, Merge::AllOk),
            ("del" | "unlink" | "exists" | "touch", true) => {
                self.split(&cmd, args, 1, 1, Merge::Sum)
            }
            (_, true) => local(Bytes::from_static(CROSSSLOT)),
            ("dbsize", _) => self.broadcast(&cmd, Merge::Sum),
            ("keys", _) => self.broadcast(&cmd, Merge::Concat),
            ("randomkey", _) => self.broadcast(&cmd, Merge::FirstNonNil),
            ("flushall" | "flushdb", _) => self.broadcast(&cmd, Merge::First),
            ("script", _) if sub(b"load") || sub(b"flush") => self.broadcast(&cmd, Merge::First),
            ("function", _)
                if sub(b"load") || sub(b"delete") || sub(b"flush") || sub(b"restore") =>
            {
                self.broadcast(&cmd, Merge::First)
            }
            ("config", _) if sub(b"set") => self.broadcast(&cmd, Merge::First),
            ("scan", _) => self.scan(&cmd, args),
            _ => Entry::sent(smallvec![Part::new(cmd, slot, None)], Merge::One),
        };
        let mut entry = entry;
        if entry.local.is_none() {
            entry.replies = replies;
            // Several keys in a slot being migrated: -TRYAGAIN is possible, and a retry
            // must not be overtaken by what the client sent after it.
            if self.keybuf.len() >= 2
                && entry
                    .parts
                    .iter()
                    .any(|p| p.slot.is_some_and(|s| self.topo.migrating.is_migrating(s)))
            {
                self.barrier = Some(seq);
            }
        }
        self.entries.push_back(entry);
        let n = self.entries.back().map_or(0, |e| e.parts.len());
        for p in 0..n {
            self.send_part(seq, p, false, flags);
        }
        if let Some(e) = self.entries.back_mut() {
            if e.local.is_none() && e.parts.is_empty() {
                e.local = Some(Bytes::from_static(
                    b"-ERR cutover: the cluster has no masters\r\n",
                ));
            }
        }
    }

    /// Handles MULTI/EXEC/DISCARD/WATCH/UNWATCH and commands inside a transaction.
    /// `None`: not a transaction matter, route normally. `Some(entry)`: handled (the
    /// entry, if any, is to be recorded; its parts were sent or held).
    pub(super) fn transaction(
        &mut self,
        seq: u64,
        lname: &str,
        cmd: &Bytes,
        slot: Option<u16>,
        cross: bool,
    ) -> Option<Option<Entry>> {
        let one = |cmd: Bytes, node: Option<NodeAddr>| {
            Entry::sent(smallvec![Part::new(cmd, None, node)], Merge::One)
        };
        match (lname, self.multi.is_some()) {
            ("watch", false) => {
                if cross {
                    return Some(Some(local(Bytes::from_static(CROSSSLOT))));
                }
                // WATCH without keys: the server's arity error.
                let slot = slot?;
                if let Some((w, _)) = &self.watch {
                    if *w != slot {
                        return Some(Some(local(Bytes::from_static(CROSSSLOT))));
                    }
                }
                let node = self.master_of(slot)?;
                self.watch = Some((slot, node.clone()));
                self.push_and_send(seq, one(cmd.clone(), Some(node)));
                Some(None)
            }
            ("unwatch", false) => {
                let node = self.watch.take().map(|w| w.1);
                self.push_and_send(seq, one(cmd.clone(), node));
                Some(None)
            }
            ("multi", false) => {
                let mut m = Multi::default();
                if let Some((s, n)) = &self.watch {
                    m.slot = Some(*s);
                    m.node = Some(n.clone());
                }
                let pinned = m.node.clone();
                self.multi = Some(m);
                match pinned {
                    Some(n) => self.push_and_send(seq, one(cmd.clone(), Some(n))),
                    None => {
                        // Clients wait for MULTI's reply before sending the command that
                        // names the node: answer it now, send it once the node is known.
                        self.entries
                            .push_back(local(Bytes::from_static(b"+OK\r\n")));
                        if let Some(m) = &mut self.multi {
                            m.held.push(cmd.clone());
                        }
                    }
                }
                Some(None)
            }
            ("exec" | "discard", true) => {
                let mut m = self.multi.take()?;
                self.watch = None;
                if m.node.is_none() {
                    let n = self.map.default_node().cloned();
                    self.pin(&mut m, None, n);
                }
                let mut e = one(cmd.clone(), m.node.clone());
                if m.dirty {
                    e.parts[0].cmd = Bytes::from_static(b"*1\r\n$7\r\nDISCARD\r\n");
                    if lname == "exec" {
                        e.merge = Merge::Replace(Bytes::from_static(EXECABORT));
                    }
                }
                self.push_and_send(seq, e);
                Some(None)
            }
            (_, true) => {
                let mut m = self.multi.take()?;
                let refused = cross || matches!((slot, m.slot), (Some(s), Some(p)) if s != p);
                if refused {
                    m.dirty = true;
                    self.multi = Some(m);
                    return Some(Some(local(Bytes::from_static(CROSSSLOT))));
                }
                if m.node.is_none() {
                    if let Some(s) = slot {
                        let n = self.master_of(s);
                        self.pin(&mut m, Some(s), n);
                    }
                }
                match m.node.clone() {
                    Some(n) => self.push_and_send(seq, one(cmd.clone(), Some(n))),
                    None => {
                        self.entries
                            .push_back(local(Bytes::from_static(b"+QUEUED\r\n")));
                        m.held.push(cmd.clone());
                    }
                }
                self.multi = Some(m);
                Some(None)
            }
            _ => None,
        }
    }

    /// Pins a transaction to a node and sends what was held for it.
    pub(super) fn pin(&mut self, m: &mut Multi, slot: Option<u16>, node: Option<NodeAddr>) {
        m.slot = slot;
        m.node = node.clone();
        let held = std::mem::take(&mut m.held);
        let Some(node) = node else { return };
        let Some(tag) = self.conn_for(&node) else {
            return;
        };
        let Some(Some(conn)) = self.conns.get_mut(tag as usize - 1) else {
            return;
        };
        for cmd in &held {
            conn.out.extend_from_slice(cmd);
            conn.out_count += 1;
            conn.owed.push_back(Owed {
                seq: 0,
                part: 0,
                discard: true,
            });
        }
    }

    pub(super) fn push_and_send(&mut self, seq: u64, e: Entry) {
        self.entries.push_back(e);
        self.send_part(seq, 0, false, BatchFlags::default());
    }

    pub(super) fn master_of(&self, slot: u16) -> Option<NodeAddr> {
        self.map.slots.master_for(slot).cloned()
    }

    /// A multi-key command split per slot: `first` = index of the first key, `step` = 1
    /// (keys) or 2 (key value pairs).
    pub(super) fn split(
        &mut self,
        cmd: &Bytes,
        args: &[std::ops::Range<usize>],
        first: usize,
        step: usize,
        merge: Merge,
    ) -> Entry {
        let name = &cmd[args[0].clone()];
        // Slot -> (indexes of its keys in the request, counting from 0).
        let mut groups: Vec<(u16, Vec<usize>)> = Vec::new();
        let mut i = first;
        let mut k = 0;
        while i + step - 1 < args.len() {
            let s = key_slot(&cmd[args[i].clone()]);
            match groups.iter_mut().find(|g| g.0 == s) {
                Some(g) => g.1.push(k),
                None => groups.push((s, vec![k])),
            }
            i += step;
            k += 1;
        }
        let mut parts = SmallVec::with_capacity(groups.len());
        let mut positions = Vec::with_capacity(groups.len());
        for (slot, keys) in groups {
            let mut b = BytesMut::new();
            resp::encode::array_header(&mut b, 1 + keys.len() * step);
            resp::encode::bulk(&mut b, name);
            for &k in &keys {
                for j in 0..step {
                    resp::encode::bulk(&mut b, &cmd[args[first + k * step + j].clone()]);
                }
            }
            parts.push(Part::new(b.freeze(), Some(slot), None));
            positions.push(keys);
        }
        let merge = match merge {
            Merge::Mget { keys, .. } => Merge::Mget { positions, keys },
            m => m,
        };
        Entry::sent(parts, merge)
    }

    pub(super) fn broadcast(&mut self, cmd: &Bytes, merge: Merge) -> Entry {
        let parts: SmallVec<[Part; 1]> = self
            .map
            .masters
            .iter()
            .map(|m| Part::new(cmd.clone(), None, Some(m.clone())))
            .collect();
        Entry::sent(parts, merge)
    }

    /// SCAN: the cursor's low bits name the master, the rest is that master's cursor.
    pub(super) fn scan(&mut self, cmd: &Bytes, args: &[std::ops::Range<usize>]) -> Entry {
        let masters = self.map.masters.len();
        let cursor = args
            .get(1)
            .and_then(|r| std::str::from_utf8(&cmd[r.clone()]).ok())
            .and_then(|s| s.parse::<u64>().ok());
        let Some(cursor) = cursor else {
            return local(Bytes::from_static(b"-ERR invalid cursor\r\n"));
        };
        let node = (cursor & ((1 << SCAN_NODE_BITS) - 1)) as usize;
        let inner = cursor >> SCAN_NODE_BITS;
        let Some(addr) = self.map.masters.get(node).cloned() else {
            // A cursor from before a topology change, or made up: start over is not what
            // the client asked; Redis answers an invalid cursor this way.
            return local(Bytes::from_static(b"-ERR invalid cursor\r\n"));
        };
        let mut b = BytesMut::new();
        resp::encode::array_header(&mut b, args.len());
        for (i, r) in args.iter().enumerate() {
            if i == 1 {
                resp::encode::bulk(&mut b, inner.to_string().as_bytes());
            } else {
                resp::encode::bulk(&mut b, &cmd[r.clone()]);
            }
        }
        Entry::sent(
            smallvec![Part::new(b.freeze(), None, Some(addr))],
            Merge::Scan { node, masters },
        )
    }
}
