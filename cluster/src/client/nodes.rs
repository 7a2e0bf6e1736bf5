//! The connections a client's parts travel on: the node's shared connection, or the
//! client's own one to that node; sending a part (with `ASKING` after `-ASK`), flushing
//! what was gathered, failing a part whose node can't be reached.

use super::*;

impl ClusterClient {
    /// The connection (tag) to `addr`, opened if needed.
    pub(super) fn conn_for(&mut self, addr: &NodeAddr) -> Option<u32> {
        if let Some(i) = self
            .conns
            .iter()
            .position(|c| c.as_ref().is_some_and(|c| &c.addr == addr))
        {
            return Some(i as u32 + 1);
        }
        let handle = if self.opts.dedicated {
            let connector = self.topo.connector(addr).ok()?;
            PipelineHandle::spawn_dedicated_lazy(
                connector,
                SessionSetup {
                    db: 0,
                    resp3: self.opts.resp3,
                    name: self.opts.name.clone(),
                    auth: self.opts.auth.clone(),
                },
                self.topo.label,
            )
        } else {
            self.topo
                .shared(
                    addr,
                    self.opts.resp3,
                    self.opts.lane,
                    matches!(self.opts.auth, crate::connect::Auth::Anonymous),
                )
                .ok()?
        };
        let conn = Conn {
            addr: addr.clone(),
            handle,
            owed: VecDeque::new(),
            out: BytesMut::new(),
            out_count: 0,
            out_flags: 0,
        };
        let i = match self.conns.iter().position(Option::is_none) {
            Some(i) => {
                self.conns[i] = Some(conn);
                i
            }
            None => {
                self.conns.push(Some(conn));
                self.conns.len() - 1
            }
        };
        let tag = i as u32 + 1;
        if let Some(s) = self
            .map
            .slots
            .shards()
            .iter()
            .position(|s| &s.master == addr)
        {
            if let Some(t) = self.shard_tag.get_mut(s) {
                *t = tag;
            }
        }
        Some(tag)
    }

    /// The tag a part goes to: its node if it names one, else its slot's master, else the
    /// default node.
    pub(super) fn tag_for(&mut self, slot: Option<u16>, node: Option<&NodeAddr>) -> Option<u32> {
        if let Some(n) = node {
            return self.conn_for(&n.clone());
        }
        let shard = match slot {
            Some(s) => self.map.slots.shard_index(s)?,
            None => 0,
        };
        match self.shard_tag.get(shard) {
            Some(&t) if t != 0 => Some(t),
            _ => {
                let addr = self.map.slots.shards().get(shard)?.master.clone();
                self.conn_for(&addr)
            }
        }
    }

    /// Sends part `p` of entry `seq` (with ASKING first when `asking`).
    pub(super) fn send_part(&mut self, seq: u64, p: usize, asking: bool, flags: BatchFlags) {
        let (slot, node, replies) = match self.entry_mut(seq) {
            Some(e) => match e.parts.get(p) {
                Some(part) => (part.slot, part.node.clone(), e.replies),
                None => return,
            },
            None => return,
        };
        let Some(tag) = self.tag_for(slot, node.as_ref()) else {
            self.fail_part(seq, p, b"-CLUSTERDOWN Hash slot not served\r\n");
            return;
        };
        let Some(Some(conn)) = self.conns.get_mut(tag as usize - 1) else {
            return;
        };
        // Borrowed, not cloned: the entry and the connection are different fields.
        let idx = usize::try_from(seq - self.base).unwrap_or(usize::MAX);
        let Some(cmd) = self
            .entries
            .get(idx)
            .and_then(|e| e.parts.get(p))
            .map(|x| &x.cmd)
        else {
            return;
        };
        if asking {
            conn.out.extend_from_slice(b"*1\r\n$6\r\nASKING\r\n");
            conn.owed.push_back(Owed {
                seq,
                part: p,
                discard: true,
            });
            conn.out_count += 1;
        }
        conn.out.extend_from_slice(cmd);
        conn.out_count += replies;
        conn.out_flags |= flags.0;
        // One marker per reply (none for subscribe-family commands).
        for _ in 0..replies {
            conn.owed.push_back(Owed {
                seq,
                part: p,
                discard: false,
            });
        }
        if replies == 0 {
            if let Some(e) = self.entry_mut(seq) {
                e.pending = e.pending.saturating_sub(1);
                if let Some(part) = e.parts.get_mut(p) {
                    part.result = Some(Bytes::new());
                }
            }
        }
    }

    /// Hands every node its accumulated commands.
    pub(super) fn flush_out(&mut self) {
        let mut lost = Vec::new();
        for (i, c) in self.conns.iter_mut().enumerate() {
            let Some(conn) = c else { continue };
            if conn.out.is_empty() {
                continue;
            }
            let batch = Batch {
                data: conn.out.split().freeze(),
                count: std::mem::take(&mut conn.out_count),
                flags: BatchFlags(std::mem::take(&mut conn.out_flags)),
                reply: self.node_tx.clone(),
                tag: self.tag_base + i as u32 + 1,
            };
            if conn.handle.send(batch).is_err() {
                // The connection's task is gone (a dedicated connection was lost).
                lost.extend(conn.owed.drain(..));
            }
        }
        for o in lost {
            if !o.discard {
                self.fail_part(
                    o.seq,
                    o.part,
                    b"-ERR cutover: lost the backend connection of this client\r\n",
                );
            }
        }
    }

    pub(super) fn fail_part(&mut self, seq: u64, p: usize, err: &'static [u8]) {
        if let Some(e) = self.entry_mut(seq) {
            if let Some(part) = e.parts.get_mut(p) {
                if part.result.is_none() {
                    part.result = Some(Bytes::from_static(err));
                    part.failed = true;
                    e.pending = e.pending.saturating_sub(1);
                }
            }
        }
    }
}
