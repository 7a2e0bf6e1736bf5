//! The reply side of a session: what is owed equals what is pending. Every command
//! sent records how many replies it owes (`push_pending`); replies from the backend, the
//! proxy's own and a transaction's spliced EXEC come back in command order, and a batch's
//! last reply is when its writes leave the in-flight count (after marking what they
//! touched, for the SCAN copy's tracker).

use super::*;

impl Session {
    /// Sends an EXEC whose reply must have the proxy's own results spliced in.
    pub(super) fn send_exec(&mut self, data: Bytes, queued: Vec<Queued>) {
        let discard = self.st.reply_mode != ReplyMode::On;
        self.send(data, 1, 0);
        // `send` recorded an ordinary entry for it; make it the EXEC entry.
        if let Some(last) = self.pending.back_mut() {
            if let Pending::Backend {
                remaining: 1,
                writes,
                touches,
                ..
            } = last
            {
                let (writes, touches) = (*writes, std::mem::take(touches));
                *last = Pending::Exec {
                    queued,
                    discard,
                    writes,
                    touches,
                };
            }
        }
    }

    /// The server's EXEC reply with the results of the proxy's queued commands inserted
    /// at their places. Only the array header is rewritten; the server's elements stay
    /// the bytes it sent. A nil (WATCH abort) or error (EXECABORT) reply passes as is.
    pub(super) fn splice_exec(&mut self, reply: Bytes, queued: Vec<Queued>) -> Bytes {
        let remote = queued
            .iter()
            .filter(|q| matches!(q, Queued::Remote { .. }))
            .count();
        let Some((m, header_len)) = array_header(&reply) else {
            return reply;
        };
        if m != remote {
            tracing::warn!(
                client = self.st.id,
                "EXEC reply does not match the queued commands; passed through unchanged"
            );
            return reply;
        }
        let mut elems = Vec::with_capacity(m);
        let mut scanner = resp::ReplyScanner::default();
        let mut pos = header_len;
        for _ in 0..m {
            match scanner.scan(&reply[pos..]) {
                Ok(Some(n)) => {
                    elems.push(pos..pos + n);
                    pos += n;
                }
                _ => return reply,
            }
        }
        let mut out = BytesMut::with_capacity(reply.len() + 64);
        resp::encode::array_header(&mut out, queued.len());
        let mut next = elems.into_iter();
        for q in queued {
            match q {
                Queued::Remote { set_db } => {
                    let Some(r) = next.next() else { break };
                    if let Some(db) = set_db {
                        if reply[r.start] != b'-' {
                            self.st.db = db;
                        }
                    }
                    out.extend_from_slice(&reply[r]);
                }
                Queued::Local(cmd, args) => {
                    let r = self
                        .exec_local(cmd, &args)
                        .unwrap_or_else(|| Bytes::from_static(b"+OK\r\n"));
                    out.extend_from_slice(&r);
                }
            }
        }
        out.freeze()
    }

    /// Hands what writes that have run changed to the tracker.
    pub(super) fn touch(&self, touches: Vec<Touch>) {
        if touches.is_empty() {
            return;
        }
        if let Some(t) = &self.sh.tracker {
            crate::track::apply(t, touches);
        }
    }

    pub(super) fn push_pending(&mut self, count: u32) {
        if count == 0 {
            // Nothing will answer: the writes counted for it are not in flight.
            let w = std::mem::take(&mut self.next_writes);
            self.sh.router.add_inflight(-(w as i64));
            // No reply will say when they ran (CLIENT REPLY OFF): marked as they leave.
            let touches = std::mem::take(&mut self.next_touches);
            self.touch(touches);
            return;
        }
        let discard = self.st.reply_mode != ReplyMode::On;
        // The exporter keeps every recorded sample until it is scraped; timing one batch
        // in LATENCY_SAMPLE keeps that cost (and the clock read) off the hot path while
        // the distribution stays representative.
        self.batches_sent = self.batches_sent.wrapping_add(1);
        let sent = (self.batches_sent & (LATENCY_SAMPLE - 1) == 0).then(Instant::now);
        let writes = std::mem::take(&mut self.next_writes);
        let touches = std::mem::take(&mut self.next_touches);
        self.pending.push_back(Pending::Backend {
            remaining: count,
            discard,
            sent,
            writes,
            touches,
        });
        self.owed += count;
    }

    /// A reply the proxy makes, placed after every reply owed so far.
    pub(super) fn reply_local(&mut self, reply: Bytes) {
        if self.st.reply_mode != ReplyMode::On {
            return;
        }
        self.reply_local_force(reply);
    }

    pub(super) fn reply_local_force(&mut self, reply: Bytes) {
        if self.pending.is_empty() {
            self.out.extend_from_slice(&reply);
        } else {
            self.pending.push_back(Pending::Local(reply));
        }
    }

    pub(super) fn on_reply(&mut self, r: Reply) {
        if r.kind == ReplyKind::Unsolicited {
            if self.mig.presub_pending > 0 {
                if let Some((PubSubKind::Confirmation, _)) = pubsub_frame(&r.data) {
                    // A confirmation of the subscriptions made on the target for the
                    // cutover: the client has its own already.
                    self.mig.presub_pending -= 1;
                    if self.mig.presub_pending == 0 {
                        self.mig.presub_counted = true;
                        self.sh.router.resubscribed.fetch_add(1, Ordering::AcqRel);
                    }
                    return;
                }
            }
            if self.st.subscribed {
                if let Some((PubSubKind::Confirmation, true)) = pubsub_frame(&r.data) {
                    self.st.subscribed = false;
                }
            }
            self.out.extend_from_slice(&r.data);
            return;
        }
        // A cluster client's router hands over every reply complete at its front in one
        // message, which may answer several batches: each batch takes its own share, so
        // its writes leave the in-flight count (the cutover's drain waits for it) and a
        // local reply queued between two batches keeps its place.
        let mut r = r;
        loop {
            let expects = match self.pending.front() {
                Some(Pending::Backend { remaining, .. }) => *remaining,
                Some(Pending::Exec { .. }) => 1,
                _ => break,
            };
            if r.count <= expects || expects == 0 {
                break;
            }
            let Some(cut) = frames_len(&r.data, expects) else {
                break;
            };
            let head = Reply {
                data: r.data.split_to(cut),
                count: expects,
                kind: r.kind,
                tag: r.tag,
            };
            r.count -= expects;
            self.on_batch_reply(head);
        }
        self.on_batch_reply(r);
    }

    /// Replies to (part of) the batch at the front of `pending`.
    pub(super) fn on_batch_reply(&mut self, r: Reply) {
        if let Some(Pending::Exec { .. }) = self.pending.front() {
            if let Some(Pending::Exec {
                queued,
                discard,
                writes,
                touches,
            }) = self.pending.pop_front()
            {
                self.touch(touches);
                self.sh.router.add_inflight(-(writes as i64));
                let data = if r.kind == ReplyKind::Data {
                    self.splice_exec(r.data, queued)
                } else {
                    r.data
                };
                if !discard {
                    self.out.extend_from_slice(&data);
                }
                self.owed -= r.count.min(1);
                self.flush_locals();
            }
            return;
        }
        let Some(Pending::Backend {
            remaining,
            discard,
            sent,
            writes,
            touches,
        }) = self.pending.front_mut()
        else {
            // Cannot happen: replies only come for batches we recorded.
            tracing::error!(
                client = self.st.id,
                "reply with nothing pending; closing client"
            );
            self.closing = true;
            return;
        };
        let swallowed = self.mig.unblocking
            && self.owed == r.count
            && r.kind == ReplyKind::Data
            && matches!(&r.data[..], b"*-1\r\n" | b"$-1\r\n" | b"_\r\n");
        if swallowed {
            // The nil CLIENT UNBLOCK produced on the source: the command runs again where
            // the route settles, with what is left of its timeout (at once if the gate has
            // already reopened, e.g. after an abort the UNBLOCK arrived late for).
            if self.sh.router.gating() {
                self.mig.reissue_pending = true;
            } else {
                self.mig.reissue_wanted = true;
            }
        } else if !*discard {
            self.out.extend_from_slice(&r.data);
        }
        if self.owed == r.count && !swallowed {
            self.block = None;
            self.view.blocked_on.store(-1, Ordering::Relaxed);
        }
        if self.owed == r.count {
            self.mig.unblocking = false;
        }
        let n = r.count.min(*remaining);
        *remaining -= n;
        self.owed -= n;
        if *remaining == 0 {
            // Marked before the write leaves the in-flight count: once the cutover's drain
            // sees zero, every mark is in.
            if !touches.is_empty() {
                let t = std::mem::take(touches);
                if let Some(tr) = &self.sh.tracker {
                    crate::track::apply(tr, t);
                }
            }
            self.sh.router.add_inflight(-(*writes as i64));
            if let Some(sent) = sent {
                self.sh.metrics.latency.record(sent.elapsed().as_secs_f64());
            }
            self.pending.pop_front();
            self.flush_locals();
        }
        if r.kind == ReplyKind::Failed {
            self.sh.metrics.backend_errors.increment(1);
            if self.dedicated.is_some() {
                // Its MULTI, subscriptions or blocked command are gone with the connection.
                self.closing = true;
            }
        }
    }

    /// Writes the proxy's own replies that were waiting behind the backend's.
    pub(super) fn flush_locals(&mut self) {
        while let Some(Pending::Local(_)) = self.pending.front() {
            if let Some(Pending::Local(b)) = self.pending.pop_front() {
                self.out.extend_from_slice(&b);
            }
        }
    }
}
