//! The commands the proxy answers itself, because a shared backend connection can't:
//! AUTH and HELLO (against the proxy's users), SELECT (tracked per client), QUIT, RESET,
//! and CLIENT ID / SETNAME / GETNAME / SETINFO / INFO / REPLY. Replies and error texts are
//! Redis 7's.

use std::ops::Range;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use cluster::pipeline::BatchFlags;
use resp::command::CommandInfo;
use resp::encode;

use super::{Action, ClientState, Effect, ReplyMode, Session};
use crate::metrics::Kind;
use crate::upstream::LoginOutcome;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cmd {
    Auth,
    Hello,
    Select,
    Quit,
    Reset,
    ClientId,
    ClientSetName,
    ClientGetName,
    ClientSetInfo,
    ClientInfo,
    ClientReply,
    /// Acts on the proxy's own clients, never on its backend connections.
    ClientKill,
    /// Lists the proxy's own clients.
    ClientList,
    /// Unblocks one of the proxy's own clients (by the id the proxy gave it).
    ClientUnblock,
}

impl Cmd {
    pub fn of(info: &CommandInfo, sub: &[u8], argc: usize) -> Option<Cmd> {
        Some(match info.name {
            "auth" => Cmd::Auth,
            "hello" => Cmd::Hello,
            "select" => Cmd::Select,
            "quit" => Cmd::Quit,
            "reset" => Cmd::Reset,
            "client" if argc >= 2 => {
                let mut lower = [0u8; 8];
                if sub.len() > lower.len() {
                    return None;
                }
                for (d, s) in lower.iter_mut().zip(sub) {
                    *d = s.to_ascii_lowercase();
                }
                match &lower[..sub.len()] {
                    b"id" => Cmd::ClientId,
                    b"setname" => Cmd::ClientSetName,
                    b"getname" => Cmd::ClientGetName,
                    b"setinfo" => Cmd::ClientSetInfo,
                    b"info" => Cmd::ClientInfo,
                    b"reply" => Cmd::ClientReply,
                    b"kill" => Cmd::ClientKill,
                    b"list" => Cmd::ClientList,
                    b"unblock" => Cmd::ClientUnblock,
                    _ => return None,
                }
            }
            _ => return None,
        })
    }

    /// Inside MULTI, Redis queues these (QUIT and RESET run at once; SELECT is forwarded
    /// on the dedicated connection).
    pub fn queues_in_multi(self) -> bool {
        !matches!(self, Cmd::Quit | Cmd::Reset | Cmd::Select)
    }

    fn name(self) -> &'static str {
        match self {
            Cmd::Auth => "auth",
            Cmd::Hello => "hello",
            Cmd::Select => "select",
            Cmd::Quit => "quit",
            Cmd::Reset => "reset",
            Cmd::ClientId => "client|id",
            Cmd::ClientSetName => "client|setname",
            Cmd::ClientGetName => "client|getname",
            Cmd::ClientSetInfo => "client|setinfo",
            Cmd::ClientInfo => "client|info",
            Cmd::ClientList => "client|list",
            Cmd::ClientUnblock => "client|unblock",
            Cmd::ClientReply => "client|reply",
            Cmd::ClientKill => "client|kill",
        }
    }
}

/// Decides how a local command runs: some must wait for owed replies (they change the
/// connection later commands use), SELECT on a dedicated connection is forwarded.
pub(crate) fn action(
    cmd: Cmd,
    st: &ClientState,
    databases: u32,
    base: &[u8],
    args: &[Range<usize>],
) -> Action {
    let arg = |i: usize| -> &[u8] { args.get(i).map(|r| &base[r.clone()]).unwrap_or(&[]) };
    let argc = args.len();
    let arity_ok = match cmd {
        Cmd::Auth => (2..=3).contains(&argc),
        Cmd::Hello => true,
        Cmd::Select => argc == 2,
        Cmd::Quit | Cmd::Reset => argc == 1,
        Cmd::ClientId | Cmd::ClientGetName | Cmd::ClientInfo => argc == 2,
        Cmd::ClientSetName | Cmd::ClientReply => argc == 3,
        Cmd::ClientSetInfo => argc == 4,
        Cmd::ClientKill => argc >= 3,
        Cmd::ClientList => argc == 2 || argc >= 4,
        Cmd::ClientUnblock => (3..=4).contains(&argc),
    };
    if !arity_ok && st.in_multi && cmd.queues_in_multi() {
        // Inside MULTI the server must see the bad command: its error also makes the
        // transaction fail at EXEC, as Redis does.
        return Action::Forward {
            count: 1,
            flags: 0,
            kind: Kind::Local,
            dedicated: true,
            effect: Effect::None,
        };
    }
    if !arity_ok {
        if cmd == Cmd::Auth && argc > 3 {
            return Action::Reply(Bytes::from_static(b"-ERR syntax error\r\n"));
        }
        return Action::Reply(wrong_arity(cmd.name()));
    }
    let drain = match cmd {
        Cmd::Select => {
            let Some(db) = parse_db(arg(1)) else {
                return Action::Reply(Bytes::from_static(
                    b"-ERR value is not an integer or out of range\r\n",
                ));
            };
            if databases == 0 && db != 0 {
                // A cluster (see Upstream::databases).
                return Action::Reply(Bytes::from_static(
                    b"-ERR SELECT is not allowed in cluster mode\r\n",
                ));
            }
            if db >= databases.max(1) as i64 || db < 0 {
                return Action::Reply(Bytes::from_static(b"-ERR DB index is out of range\r\n"));
            }
            if st.dedicated {
                // The dedicated connection switches db itself (also inside MULTI).
                return Action::Forward {
                    count: 1,
                    flags: 0,
                    kind: Kind::Local,
                    dedicated: true,
                    effect: Effect::SetDb(db as u32),
                };
            }
            db as u32 != st.db
        }
        // Changing protocol moves a shared client to another pool.
        Cmd::Hello => !st.dedicated,
        Cmd::Reset => true,
        _ => false,
    };
    Action::Local { cmd, drain }
}

fn parse_db(b: &[u8]) -> Option<i64> {
    std::str::from_utf8(b).ok()?.parse::<i64>().ok()
}

fn wrong_arity(name: &str) -> Bytes {
    Bytes::from(format!(
        "-ERR wrong number of arguments for '{name}' command\r\n"
    ))
}

fn err(msg: &'static [u8]) -> Bytes {
    Bytes::from_static(msg)
}

const WRONGPASS: &[u8] = b"-WRONGPASS invalid username-password pair or user is disabled.\r\n";

/// Redis's refusal of a command in RESP2 pub/sub mode.
pub(crate) fn not_in_subscribed_context(cmd: Cmd) -> Bytes {
    Bytes::from(format!(
        "-ERR Can't execute '{}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context\r\n",
        cmd.name()
    ))
}

/// Redis's reply to a command it does not know.
pub(crate) fn unknown_command(base: &[u8], args: &[Range<usize>]) -> Bytes {
    let name = args.first().map(|r| &base[r.clone()]).unwrap_or(&[]);
    let mut msg = String::from("-ERR unknown command '");
    msg.push_str(&sanitize(name, 128));
    msg.push_str("', with args beginning with: ");
    for r in args.iter().skip(1) {
        msg.push('\'');
        msg.push_str(&sanitize(&base[r.clone()], 128));
        msg.push_str("' ");
        if msg.len() > 256 {
            break;
        }
    }
    msg.push_str("\r\n");
    Bytes::from(msg)
}

/// Like Redis's error-message cleanup: no CR/LF in an error line, bounded length.
fn sanitize(b: &[u8], max: usize) -> String {
    String::from_utf8_lossy(&b[..b.len().min(max)])
        .chars()
        .map(|c| if c == '\r' || c == '\n' { ' ' } else { c })
        .collect()
}

impl Session {
    /// `CLIENT KILL addr:port` (old form: +OK or "No such client") or `CLIENT KILL
    /// <filter> <value> ...` (ID, ADDR, LADDR, TYPE, SKIPME, MAXAGE; the number killed), over
    /// the proxy's own clients as Redis does over its own: the backend connections the
    /// proxy shares are never touched.
    fn client_kill(&mut self, args: &[Bytes]) -> Bytes {
        let err = |m: &str| {
            let mut b = BytesMut::new();
            encode::error(&mut b, m.as_bytes());
            b.freeze()
        };
        let me = self.st.id;
        if args.len() == 3 {
            let addr = String::from_utf8_lossy(&args[2]).into_owned();
            let (n, mine) = self.sh.clients.kill(|c| c.peer.to_string() == addr, me);
            self.closing |= mine;
            return if n > 0 {
                ok()
            } else {
                err("ERR No such client")
            };
        }
        if !args.len().is_multiple_of(2) {
            return err("ERR syntax error");
        }
        let mut id = None;
        let (mut addr, mut laddr) = (None, None);
        let mut skipme = true;
        let mut maxage = None;
        for pair in args[2..].chunks(2) {
            let v = String::from_utf8_lossy(&pair[1]).into_owned();
            match pair[0].to_ascii_lowercase().as_slice() {
                b"id" => match v.parse::<u64>() {
                    Ok(n) => id = Some(n),
                    Err(_) => return err("ERR client-id should be greater than 0"),
                },
                b"addr" => addr = Some(v),
                b"laddr" => laddr = Some(v),
                b"skipme" => match v.to_ascii_lowercase().as_str() {
                    "yes" => skipme = true,
                    "no" => skipme = false,
                    _ => return err("ERR syntax error"),
                },
                b"maxage" => match v.parse::<u64>() {
                    Ok(n) => maxage = Some(n),
                    Err(_) => return err("ERR syntax error"),
                },
                b"type" => match v.to_ascii_lowercase().as_str() {
                    "normal" | "pubsub" => {}
                    // The proxy's clients are none of these.
                    "master" | "replica" | "slave" => return integer(0),
                    _ => {
                        return err(&format!(
                            "ERR Unknown client type '{}'",
                            sanitize(v.as_bytes(), 64)
                        ))
                    }
                },
                // USER: the proxy's clients all use the backend's credentials.
                b"user" => {}
                _ => return err("ERR syntax error"),
            }
        }
        let (n, mine) = self.sh.clients.kill(
            |c| {
                id.is_none_or(|i| c.id == i)
                    && addr.as_ref().is_none_or(|a| c.peer.to_string() == *a)
                    && laddr
                        .as_ref()
                        .is_none_or(|a| c.local.is_some_and(|l| l.to_string() == *a))
                    && maxage.is_none_or(|m| c.created.elapsed().as_secs() >= m)
                    && !(skipme && c.id == me)
            },
            me,
        );
        // Killed by its own command: the reply goes out, then the connection closes.
        self.closing |= mine;
        integer(n as i64)
    }
}

fn integer(n: i64) -> Bytes {
    let mut b = BytesMut::new();
    encode::integer(&mut b, n);
    b.freeze()
}

/// Whether HELLO's options parse (each AUTH with two arguments, SETNAME with one).
fn hello_options_ok(args: &[Bytes]) -> bool {
    let mut i = 2;
    while i < args.len() {
        let more = args.len() - i - 1;
        if args[i].eq_ignore_ascii_case(b"auth") && more >= 2 {
            i += 3;
        } else if args[i].eq_ignore_ascii_case(b"setname") && more >= 1 {
            i += 2;
        } else {
            return false;
        }
    }
    true
}

/// The `AUTH user pass` option of a HELLO, if it has one.
fn hello_auth(args: &[Bytes]) -> Option<(Bytes, Bytes)> {
    let mut i = 2;
    while i < args.len() {
        if args[i].eq_ignore_ascii_case(b"auth") {
            return Some((args.get(i + 1)?.clone(), args.get(i + 2)?.clone()));
        }
        i += if args[i].eq_ignore_ascii_case(b"setname") {
            2
        } else {
            1
        };
    }
    None
}

/// Client names: printable ASCII without spaces (Redis's rule).
fn valid_name(b: &[u8]) -> bool {
    b.iter().all(|&c| (b'!'..=b'~').contains(&c))
}

impl Session {
    pub(super) fn run_local(&mut self, cmd: Cmd, args: &[Bytes]) {
        if let Some(reply) = self.exec_local(cmd, args) {
            self.reply_local(reply);
        }
        // What CLIENT LIST shows changes only with these (not per command).
        if matches!(
            cmd,
            Cmd::Select
                | Cmd::Hello
                | Cmd::Auth
                | Cmd::Reset
                | Cmd::ClientSetName
                | Cmd::ClientSetInfo
        ) {
            self.publish();
        }
    }

    /// Runs a local command; its reply, or None when it has none (CLIENT REPLY OFF/SKIP).
    pub(super) fn exec_local(&mut self, cmd: Cmd, args: &[Bytes]) -> Option<Bytes> {
        let reply = match cmd {
            Cmd::Auth => self.auth(args),
            Cmd::Hello => self.hello(args, false),
            Cmd::Select => {
                // Range checked in `action`.
                self.st.db = parse_db(&args[1]).unwrap_or(0) as u32;
                ok()
            }
            Cmd::Quit => {
                self.closing = true;
                ok()
            }
            Cmd::Reset => self.reset(),
            Cmd::ClientId => {
                let mut b = BytesMut::new();
                encode::integer(&mut b, self.st.id as i64);
                b.freeze()
            }
            Cmd::ClientKill => self.client_kill(args),
            Cmd::ClientSetName => {
                let name = &args[2];
                if !valid_name(name) {
                    err(b"-ERR Client names cannot contain spaces, newlines or special characters.\r\n")
                } else {
                    self.st.name = if name.is_empty() {
                        None
                    } else {
                        Some(name.clone())
                    };
                    ok()
                }
            }
            Cmd::ClientGetName => {
                let mut b = BytesMut::new();
                match &self.st.name {
                    Some(n) => encode::bulk(&mut b, n),
                    None => encode::null(&mut b, self.st.resp3),
                }
                b.freeze()
            }
            Cmd::ClientSetInfo => {
                let (attr, value) = (&args[2], &args[3]);
                if !value.iter().all(|&c| (b'!'..=b'~').contains(&c)) {
                    Bytes::from(format!(
                        "-ERR {} cannot contain spaces, newlines or special characters.\r\n",
                        sanitize(attr, 32)
                    ))
                } else if attr.eq_ignore_ascii_case(b"lib-name") {
                    self.st.lib_name = Some(value.clone());
                    ok()
                } else if attr.eq_ignore_ascii_case(b"lib-ver") {
                    self.st.lib_ver = Some(value.clone());
                    ok()
                } else {
                    Bytes::from(format!(
                        "-ERR Unrecognized option '{}'\r\n",
                        sanitize(attr, 64)
                    ))
                }
            }
            Cmd::ClientInfo => {
                let mut b = BytesMut::new();
                encode::verbatim_text(&mut b, self.client_info_line().as_bytes(), self.st.resp3);
                b.freeze()
            }
            Cmd::ClientList => self.client_list(args),
            // Handled where it is parsed: it becomes the server's own CLIENT UNBLOCK.
            Cmd::ClientUnblock => {
                err(b"-ERR CLIENT UNBLOCK can't run inside MULTI through the proxy\r\n")
            }
            Cmd::ClientReply => {
                let mode = &args[2];
                if mode.eq_ignore_ascii_case(b"on") {
                    self.st.reply_mode = ReplyMode::On;
                    ok()
                } else if mode.eq_ignore_ascii_case(b"off") {
                    self.st.reply_mode = ReplyMode::Off;
                    return None;
                } else if mode.eq_ignore_ascii_case(b"skip") {
                    // Skips the NEXT command's reply; this one has none either.
                    if self.st.reply_mode == ReplyMode::On {
                        self.st.reply_mode = ReplyMode::Skip;
                        // `after_command` would clear it at once; mark it for the next one.
                        self.skip_armed();
                    }
                    return None;
                } else {
                    err(b"-ERR syntax error\r\n")
                }
            }
        };
        Some(reply)
    }

    /// CLIENT REPLY SKIP must outlive the `after_command` of the CLIENT command itself.
    fn skip_armed(&mut self) {
        self.st.reply_mode = ReplyMode::Skip;
        self.skip_pending = true;
    }

    fn auth(&mut self, args: &[Bytes]) -> Bytes {
        if self.sh.settings.auth_by_backend {
            // Checked by the server, which takes a round trip: see `auth_by_backend`.
            return err(b"-ERR cutover: AUTH inside MULTI is not served through the proxy (send it before MULTI)\r\n");
        }
        let (user, pass) = match args.len() {
            2 => {
                if !self.sh.users.has_default_password() {
                    return err(b"-ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?\r\n");
                }
                (None, &args[1])
            }
            _ => (Some(&args[1]), &args[2]),
        };
        if self.sh.users.check(user.map(|u| &u[..]), pass) {
            self.authenticated_as(user.cloned());
            ok()
        } else {
            tracing::info!(client = self.st.id, peer = %self.st.peer, "AUTH failed");
            Bytes::from_static(WRONGPASS)
        }
    }

    /// AUTH, or HELLO with AUTH, when the server checks credentials (`client_auth =
    /// "source"`): the proxy's own password or users first, where configured (an extra
    /// gate); then the server, on a connection of its own logging in with them. Accepted,
    /// the client's commands run as that user from now on (its own pools; a dedicated
    /// connection logs in too). Refused, the server's reply goes to the client as it is.
    /// Called with nothing owed, so no command of the client runs as the previous user
    /// after it nor as the new one before it.
    pub(super) async fn auth_by_backend(&mut self, cmd: Cmd, args: &[Bytes]) -> Bytes {
        let (user, pass) = match cmd {
            Cmd::Auth if args.len() == 2 => (None, args[1].clone()),
            Cmd::Auth => (Some(args[1].clone()), args[2].clone()),
            // A protocol version it refuses: refused before any AUTH, as Redis does.
            _ if args.len() >= 2 && !matches!(&args[1][..], b"2" | b"3") => {
                return self.hello(args, true)
            }
            // Options it refuses: refused before any AUTH, as Redis does.
            _ if !hello_options_ok(args) => return self.hello(args, true),
            _ => match hello_auth(args) {
                Some((u, p)) => (Some(u), p),
                None => return self.hello(args, false),
            },
        };
        if self.dedicated.is_some() && self.route.upstream.cluster().is_some() {
            // Its connections to the nodes log in when they open; the ones already open
            // can't all be told (AUTH has no key: it would reach one node).
            return err(b"-ERR cutover: AUTH in a transaction, while subscribed or blocked is not served through the proxy on a Redis Cluster (send it before)\r\n");
        }
        let gate = self.sh.users.auth_required() || !self.sh.settings.users.is_empty();
        if gate && !self.sh.users.check(user.as_deref(), &pass) {
            tracing::info!(client = self.st.id, peer = %self.st.peer, "AUTH failed (the proxy's users)");
            return Bytes::from_static(WRONGPASS);
        }
        // As the client gave it: `AUTH pass` and `AUTH default pass` differ when the
        // default user has no password (the first is refused, the second accepted).
        let login = Arc::new(cluster::Login {
            user: user.clone(),
            pass,
        });
        let up = self.route.upstream.clone();
        let logged = match up.check_login(&login).await {
            Ok(LoginOutcome::Accepted) => Some(login),
            // The server's default user has no password: the proxy's gate was the check.
            Ok(LoginOutcome::NoPassword(_)) if gate => None,
            Ok(LoginOutcome::NoPassword(reply)) => return reply,
            Ok(LoginOutcome::Refused(reply)) => {
                tracing::info!(client = self.st.id, peer = %self.st.peer, side = up.label, "AUTH refused by the server");
                return reply;
            }
            Err(e) => {
                self.sh.metrics.backend_errors.increment(1);
                let mut b = BytesMut::new();
                encode::error(
                    &mut b,
                    format!(
                        "ERR cutover: {} {} is unavailable ({e}); AUTH was not checked",
                        up.label,
                        up.addr()
                    )
                    .as_bytes(),
                );
                return b.freeze();
            }
        };
        if let Some(l) = &logged {
            self.sh.logins.record(l);
        }
        if self.dedicated.is_some() {
            // Its own connection logs in too (its reply is the one just given): as the user,
            // or as the default user that needs no password.
            let mut c = BytesMut::new();
            let (user, pass): (&[u8], &[u8]) = match &logged {
                Some(l) => (l.user_name(), &l.pass),
                None => (b"default", b"-"),
            };
            encode::command(&mut c, [&b"AUTH"[..], user, pass].into_iter());
            let mode = self.st.reply_mode;
            self.st.reply_mode = ReplyMode::Off;
            self.send(c.freeze(), 1, 0);
            self.st.reply_mode = mode;
        }
        // New pools (and cluster connections) for the new user; nothing is owed.
        self.login = logged;
        self.user_pools = None;
        self.cluster = None;
        self.authenticated_as(user);
        match cmd {
            Cmd::Auth => ok(),
            _ => self.hello(args, true),
        }
    }

    fn authenticated_as(&mut self, user: Option<Bytes>) {
        self.st.authenticated = true;
        self.st.user = user.filter(|u| &u[..] != b"default");
        self.parser.set_authenticated(true);
    }

    /// `checked`: its AUTH option was already checked (and the client logged in) by
    /// [`Session::auth_by_backend`].
    pub(super) fn hello(&mut self, args: &[Bytes], checked: bool) -> Bytes {
        let mut proto = if self.st.resp3 { 3 } else { 2 };
        if args.len() >= 2 {
            let v = std::str::from_utf8(&args[1])
                .ok()
                .and_then(|s| s.parse::<i64>().ok());
            match v {
                None => return err(b"-ERR Protocol version is not an integer or out of range\r\n"),
                Some(2) => proto = 2,
                Some(3) => proto = 3,
                Some(_) => return err(b"-NOPROTO unsupported protocol version\r\n"),
            }
        }
        let mut auth: Option<(Bytes, Bytes)> = None;
        let mut setname: Option<Bytes> = None;
        let mut i = 2;
        while i < args.len() {
            let opt = &args[i];
            let more = args.len() - i - 1;
            if opt.eq_ignore_ascii_case(b"auth") && more >= 2 {
                auth = Some((args[i + 1].clone(), args[i + 2].clone()));
                i += 3;
            } else if opt.eq_ignore_ascii_case(b"setname") && more >= 1 {
                setname = Some(args[i + 1].clone());
                i += 2;
            } else {
                return Bytes::from(format!(
                    "-ERR Syntax error in HELLO option '{}'\r\n",
                    sanitize(opt, 64)
                ));
            }
        }
        if let Some((user, pass)) = &auth {
            if checked {
            } else if self.sh.settings.auth_by_backend {
                return err(b"-ERR cutover: HELLO with AUTH inside MULTI is not served through the proxy (send it before MULTI)\r\n");
            } else if !self.sh.users.check(Some(user), pass) {
                return Bytes::from_static(WRONGPASS);
            }
        }
        if auth.is_none() && !self.st.authenticated {
            return err(b"-NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time\r\n");
        }
        if let Some(name) = &setname {
            if !valid_name(name) {
                return err(
                    b"-ERR Client names cannot contain spaces, newlines or special characters.\r\n",
                );
            }
        }
        if let Some((user, _)) = auth {
            if !checked {
                self.authenticated_as(Some(user));
            }
        }
        if let Some(name) = setname {
            self.st.name = if name.is_empty() { None } else { Some(name) };
        }
        let resp3 = proto == 3;
        if resp3 != self.st.resp3 && self.dedicated.is_some() {
            // The private connection must speak the client's protocol too; its own HELLO
            // reply is dropped, the proxy's (with the client's id) is sent instead.
            let mut cmd = BytesMut::new();
            let v: &[u8] = if resp3 { b"3" } else { b"2" };
            encode::command(&mut cmd, [&b"HELLO"[..], v].into_iter());
            let flag = if resp3 {
                BatchFlags::RESP3
            } else {
                BatchFlags::RESP2
            };
            let mode = self.st.reply_mode;
            self.st.reply_mode = ReplyMode::Off;
            self.send(cmd.freeze(), 1, flag);
            self.st.reply_mode = mode;
        }
        self.st.resp3 = resp3;
        self.hello_reply()
    }

    fn hello_reply(&self) -> Bytes {
        let resp3 = self.st.resp3;
        let mut b = BytesMut::new();
        encode::map_header(&mut b, 7, resp3);
        encode::bulk(&mut b, b"server");
        encode::bulk(&mut b, b"redis");
        encode::bulk(&mut b, b"version");
        encode::bulk(&mut b, self.sh.router.route().upstream.version.as_bytes());
        encode::bulk(&mut b, b"proto");
        encode::integer(&mut b, if resp3 { 3 } else { 2 });
        encode::bulk(&mut b, b"id");
        encode::integer(&mut b, self.st.id as i64);
        encode::bulk(&mut b, b"mode");
        encode::bulk(&mut b, b"standalone");
        encode::bulk(&mut b, b"role");
        encode::bulk(&mut b, b"master");
        encode::bulk(&mut b, b"modules");
        encode::array_header(&mut b, 0);
        b.freeze()
    }

    fn reset(&mut self) -> Bytes {
        // Dropping the dedicated connection ends its MULTI, WATCH, subscriptions, MONITOR
        // and tracking on the server, as RESET would.
        self.dedicated = None;
        self.st.dedicated = false;
        self.st.monitoring = false;
        self.st.subscribed = false;
        for set in self.subs.iter_mut() {
            set.clear();
        }
        self.count_subscriber();
        self.drop_presub();
        self.set_in_multi(false);
        self.st.watching = false;
        self.st.watch_broken = false;
        self.queued.clear();
        self.st.db = self.sh.router.route().upstream.default_db();
        self.st.resp3 = false;
        self.st.name = None;
        self.st.reply_mode = ReplyMode::On;
        if self.login.take().is_some() {
            self.user_pools = None;
            self.cluster = None;
        }
        if super::auth_required(&self.sh, &self.route) {
            self.st.authenticated = false;
            self.st.user = None;
            self.parser.set_authenticated(false);
        } else {
            self.st.user = None;
        }
        Bytes::from_static(b"+RESET\r\n")
    }

    /// CLIENT LIST [TYPE normal|pubsub|master|replica] [ID id ...]: the proxy's own clients.
    fn client_list(&self, args: &[Bytes]) -> Bytes {
        let mut ids: Option<Vec<u64>> = None;
        let mut kind: Option<String> = None;
        let mut i = 2;
        while i < args.len() {
            if args[i].eq_ignore_ascii_case(b"type") && i + 1 < args.len() {
                let t = String::from_utf8_lossy(&args[i + 1]).to_ascii_lowercase();
                if !matches!(
                    t.as_str(),
                    "normal" | "pubsub" | "master" | "replica" | "slave"
                ) {
                    return Bytes::from(format!(
                        "-ERR Unknown client type '{}'\r\n",
                        sanitize(&args[i + 1], 32)
                    ));
                }
                kind = Some(t);
                i += 2;
            } else if args[i].eq_ignore_ascii_case(b"id") && i + 1 < args.len() {
                let mut v = Vec::new();
                for a in &args[i + 1..] {
                    match std::str::from_utf8(a)
                        .ok()
                        .and_then(|s| s.parse::<u64>().ok())
                    {
                        Some(n) if n > 0 => v.push(n),
                        _ => return err(b"-ERR Invalid client ID\r\n"),
                    }
                }
                ids = Some(v);
                break;
            } else {
                return err(b"-ERR syntax error\r\n");
            }
        }
        self.publish();
        let me = self.st.id;
        let entries = self.sh.clients.list(|e| {
            let pubsub = e.view.state.lock().map(|s| s.flags == "P").unwrap_or(false);
            let kind_ok = match kind.as_deref() {
                None => true,
                Some("normal") => !pubsub,
                Some("pubsub") => pubsub,
                _ => false,
            };
            kind_ok && ids.as_ref().is_none_or(|v| v.contains(&e.id))
        });
        let mut text = String::new();
        for e in entries {
            text.push_str(&e.line((e.id == me).then_some("client|list")));
        }
        let mut b = BytesMut::new();
        encode::verbatim_text(&mut b, text.as_bytes(), self.st.resp3);
        b.freeze()
    }

    fn client_info_line(&self) -> String {
        self.publish();
        self.sh
            .clients
            .list(|e| e.id == self.st.id)
            .first()
            .map(|e| e.line(Some("client|info")))
            .unwrap_or_default()
    }
}

fn ok() -> Bytes {
    Bytes::from_static(b"+OK\r\n")
}
