//! Replies from the nodes: each part's result, redirections (`-MOVED` refreshes the map,
//! `-ASK` resends once with `ASKING`, `-TRYAGAIN`/`-CLUSTERDOWN` retry after a backoff),
//! and the client's replies emitted in its order once whole.

use super::*;

impl ClusterClient {
    pub(super) fn on_node_reply(&mut self, r: Reply) {
        let tag = r.tag.wrapping_sub(self.tag_base);
        if r.kind == ReplyKind::Unsolicited {
            self.emit();
            self.ready.push(Reply { tag: 0, ..r });
            return;
        }
        let failed = r.kind == ReplyKind::Failed;
        let mut pos = 0;
        for _ in 0..r.count {
            let len = match self.scanner.scan(&r.data[pos..]) {
                Ok(Some(n)) => n,
                _ => break,
            };
            let frame = r.data.slice(pos..pos + len);
            pos += len;
            let Some(Some(conn)) = self.conns.get_mut((tag as usize).wrapping_sub(1)) else {
                continue;
            };
            let Some(o) = conn.owed.pop_front() else {
                continue;
            };
            if o.discard {
                continue;
            }
            // Only an error can be a redirection: no copy of the address otherwise.
            let from = (frame.first() == Some(&b'-')).then(|| conn.addr.clone());
            self.on_part_reply(o.seq, o.part, frame, failed, from.as_ref());
        }
    }

    /// `from`: the node that answered (a redirection without a host means its host, as
    /// the syncer's router reads it too).
    pub(super) fn on_part_reply(
        &mut self,
        seq: u64,
        p: usize,
        frame: Bytes,
        failed: bool,
        from: Option<&NodeAddr>,
    ) {
        let in_multi = self.multi.is_some();
        let Some(e) = self.entry_mut(seq) else { return };
        let replies = e.replies;
        let Some(part) = e.parts.get_mut(p) else {
            return;
        };
        if replies > 1 {
            // An UNSUBSCRIBE outside pub/sub: several replies for one part; keep them all.
            let mut acc = BytesMut::from(part.result.take().unwrap_or_default().as_ref());
            acc.extend_from_slice(&frame);
            part.result = Some(acc.freeze());
            part.got += 1;
            if part.got >= replies {
                part.failed |= failed;
                e.pending = e.pending.saturating_sub(1);
            }
            return;
        }
        if frame.first() == Some(&b'-') && !failed && !in_multi && part.attempts < MAX_ATTEMPTS {
            if let Some(rd) = Redirect::parse(&frame) {
                part.attempts += 1;
                let addr = match from {
                    Some(f) => rd.node.or_host_of(f),
                    None => rd.node.clone(),
                };
                part.node = Some(addr);
                let asking = rd.kind == RedirectKind::Ask;
                if asking {
                    self.topo.migrating.mark(rd.slot);
                } else {
                    self.topo.request_refresh();
                }
                self.send_part(seq, p, asking, BatchFlags::default());
                return;
            }
            if frame.starts_with(b"-TRYAGAIN") || frame.starts_with(b"-CLUSTERDOWN") {
                part.attempts += 1;
                let backoff = (RETRY_MIN * 2u32.saturating_pow(part.attempts - 1)).min(RETRY_MAX);
                // Resent to its slot's master as the map then says.
                let slot = part.slot;
                if slot.is_some() {
                    part.node = None;
                }
                if let Some(s) = slot.filter(|_| frame.starts_with(b"-TRYAGAIN")) {
                    self.topo.migrating.mark(s);
                }
                self.topo.request_refresh();
                self.retries.push((Instant::now() + backoff, seq, p));
                return;
            }
        }
        part.result = Some(frame);
        part.failed |= failed;
        e.pending = e.pending.saturating_sub(1);
    }

    pub(super) fn retry_due(&mut self) {
        let now = Instant::now();
        let mut due = Vec::new();
        self.retries.retain(|&(t, seq, p)| {
            if t <= now {
                due.push((seq, p));
                false
            } else {
                true
            }
        });
        for (seq, p) in due {
            self.send_part(seq, p, false, BatchFlags::default());
        }
    }

    /// Moves every reply complete at the front, in order, to `ready` (one message).
    ///
    /// The replies of a batch (the commands the client sent in one write) are handed over
    /// together once the last of its nodes answered, as Redis writes the replies of what
    /// it read in one go: handing over each node's share as it comes costs the client one
    /// wakeup and read per node instead of one. Dedicated clients get theirs at once
    /// (pushes must not overtake them), and so does a batch of many commands.
    pub(super) fn emit(&mut self) {
        let complete = self
            .entries
            .iter()
            .take_while(|e| {
                e.local.is_some() || (e.pending == 0 && e.parts.iter().all(|p| p.result.is_some()))
            })
            .count();
        let upto = self.base + complete as u64;
        while self.batch_ends.front().is_some_and(|&e| e <= self.base) {
            self.batch_ends.pop_front();
        }
        let last_end = self
            .batch_ends
            .iter()
            .take_while(|&&e| e <= upto)
            .last()
            .copied();
        let limit = match last_end {
            // Dedicated clients get theirs at once: a push (a tracking invalidation, a
            // message) must not overtake a reply that is ready.
            _ if self.opts.dedicated => upto,
            Some(l) => l,
            None if complete >= HOLD_MAX_ENTRIES => upto,
            None => self.base,
        };
        // One message per batch: the session counts each message against one batch of
        // its own (the same batches, handed over by `send`).
        while self.base < limit {
            let stop = match self.batch_ends.front() {
                Some(&e) if e <= limit => {
                    self.batch_ends.pop_front();
                    e
                }
                _ => limit,
            };
            let mut count = 0u32;
            let mut failed = false;
            while self.base < stop {
                let Some(e) = self.entries.pop_front() else {
                    break;
                };
                self.base += 1;
                failed |= e.parts.iter().any(|p| p.failed);
                count += e.replies;
                merge_into(&mut self.emit_buf, e, self.opts.resp3);
            }
            if count > 0 || !self.emit_buf.is_empty() {
                // The buffer is reused: once the owner has copied the previous message
                // out and dropped it, `split` finds its memory free again.
                self.ready.push(Reply {
                    data: self.emit_buf.split().freeze(),
                    count,
                    kind: if failed {
                        ReplyKind::Failed
                    } else {
                        ReplyKind::Data
                    },
                    tag: 0,
                });
            }
        }
    }
}
