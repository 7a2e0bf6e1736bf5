//! The client as the proxy's registry shows it to the other clients (CLIENT LIST, KILL,
//! UNBLOCK, TRACKING REDIRECT): its published state, and the server's ids of its own
//! connection that commands naming it by the proxy's id must be rewritten to.

use super::*;

impl Session {
    /// Keeps `Router::subscribers` in step with whether this client has subscriptions.
    /// The server's id of this client's own connection, also for CLIENT LIST's view.
    pub(super) fn set_backend_id(&mut self, id: i64) {
        self.backend_id = id;
        self.view.backend_id.store(id, Ordering::Relaxed);
    }

    /// `CLIENT TRACKING ... REDIRECT <id>` names one of the proxy's clients; the server
    /// knows that client's own connection by another id. The command with that id, or the
    /// error Redis gives for a client it does not know; None for any other command.
    pub(super) fn tracking_redirect(
        &self,
        inline: bool,
        len: usize,
    ) -> Option<Result<Bytes, Bytes>> {
        let base: &[u8] = if inline {
            self.parser.inline_encoded()
        } else {
            &self.inbuf[self.batch.end..self.batch.end + len]
        };
        let args = self.parser.args();
        let arg = |i: usize| -> &[u8] { args.get(i).map_or(&[][..], |r| &base[r.clone()]) };
        if !arg(0).eq_ignore_ascii_case(b"client") || !arg(1).eq_ignore_ascii_case(b"tracking") {
            return None;
        }
        let at = (2..args.len()).find(|&i| arg(i).eq_ignore_ascii_case(b"redirect"))? + 1;
        let Some(id) = std::str::from_utf8(arg(at))
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
        else {
            return Some(Err(Bytes::from_static(
                b"-ERR value is not an integer or out of range\r\n",
            )));
        };
        let Some(backend) = self.sh.clients.backend_of(id) else {
            return Some(Err(Bytes::from_static(
                b"-ERR The client ID you want redirect to does not exist\r\n",
            )));
        };
        let b = backend.to_string();
        let mut out = BytesMut::new();
        resp::encode::command(
            &mut out,
            (0..args.len()).map(|i| if i == at { b.as_bytes() } else { arg(i) }),
        );
        Some(Ok(out.freeze()))
    }

    /// CLIENT UNBLOCK <id> [TIMEOUT|ERROR], `id` one of the proxy's own clients.
    pub(super) fn client_unblock(&mut self, args: &[Bytes]) {
        let Some(id) = std::str::from_utf8(&args[2])
            .ok()
            .and_then(|s| s.parse::<i64>().ok())
        else {
            self.reply_local(Bytes::from_static(
                b"-ERR value is not an integer or out of range\r\n",
            ));
            return;
        };
        let mode = args.get(3);
        if let Some(m) = mode {
            if !m.eq_ignore_ascii_case(b"timeout") && !m.eq_ignore_ascii_case(b"error") {
                self.reply_local(Bytes::from_static(
                    b"-ERR CLIENT UNBLOCK reason should be TIMEOUT or ERROR\r\n",
                ));
                return;
            }
        }
        let blocked = u64::try_from(id)
            .ok()
            .and_then(|i| self.sh.clients.blocked_on(i));
        match blocked {
            Some(backend) => {
                let b = backend.to_string();
                let mut cmd = BytesMut::new();
                let mut parts: Vec<&[u8]> = vec![b"CLIENT", b"UNBLOCK", b.as_bytes()];
                if let Some(m) = mode {
                    parts.push(m);
                }
                resp::encode::command(&mut cmd, parts.into_iter());
                self.flush_batch();
                self.send(cmd.freeze(), 1, 0);
            }
            None => self.reply_local(Bytes::from_static(b":0\r\n")),
        }
    }

    /// Publishes the client's state for CLIENT LIST (when it changes: rare).
    pub(super) fn publish(&self) {
        let st = &self.st;
        let text = |b: &Option<Bytes>| {
            b.as_ref()
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_default()
        };
        let v = crate::clients::ViewState {
            name: text(&st.name),
            db: st.db,
            user: st
                .user
                .as_ref()
                .map(|u| String::from_utf8_lossy(u).into_owned())
                .unwrap_or_else(|| "default".into()),
            resp: if st.resp3 { 3 } else { 2 },
            lib_name: text(&st.lib_name),
            lib_ver: text(&st.lib_ver),
            flags: if st.monitoring {
                "O"
            } else if self.subs.iter().any(|s| !s.is_empty()) {
                "P"
            } else if st.dedicated {
                "x"
            } else {
                "N"
            },
            sub: self.subs[0].len(),
            psub: self.subs[1].len(),
            ssub: self.subs[2].len(),
        };
        if let Ok(mut s) = self.view.state.lock() {
            *s = v;
        }
    }
}
