//! What Redis sends reaches the client that asked, and nobody else notices: replies of any
//! shape through a shared backend connection.

use std::thread;
use std::time::Duration;

use support::{assert_bytes, assert_prefix, bulk, int, show, Cutover, RedisServer, Wire};

/// A Lua table that contains itself: Redis answers it nested ~8000 levels deep, with an
/// error inside (the Lua stack limit).
const SELF_CONTAINING: &str = "local a = {}; local b = {a}; a[1] = b; return a";

#[test]
fn a_deeply_nested_reply_reaches_its_client_and_costs_no_one_else() {
    let (server, proxy) = Cutover::with_server();
    let direct = server.wire().cmd(&["EVAL", SELF_CONTAINING, "0"]);
    assert!(direct.len() > 30_000, "{}", show(&direct[..64]));

    // Another client's pipelined commands, in flight around the deep reply on the same
    // backend connection (one by default).
    let mut other = proxy.wire();
    let mut first = Vec::new();
    for i in 0..500 {
        support::encode_into(&mut first, &["SET", &format!("k{i}"), "v"]);
    }
    other.send(&first);
    let mut a: Wire = proxy.wire();
    let reply = a.cmd(&["EVAL", SELF_CONTAINING, "0"]);
    let mut second = Vec::new();
    for i in 0..500 {
        support::encode_into(&mut second, &["GET", &format!("k{i}")]);
    }
    other.send(&second);
    for _ in 0..500 {
        assert_eq!(other.read_reply(), b"+OK\r\n");
    }
    for _ in 0..500 {
        assert_eq!(other.read_reply(), b"$1\r\nv\r\n");
    }
    assert_eq!(reply.len(), direct.len());
    assert!(reply == direct, "the reply differs from Redis's own");
    // The connection that carried it still serves.
    assert_eq!(a.cmd(&["PING"]), b"+PONG\r\n");
}

/// Whether the proxy closed this connection (EOF or reset) within a few seconds (a read
/// that only times out says no).
fn closed(w: &mut Wire) -> bool {
    w.set_timeout(std::time::Duration::from_secs(5));
    match w.try_read_reply() {
        Ok(_) => false,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

#[test]
fn client_kill_acts_on_the_proxys_own_clients() {
    let (_server, proxy) = Cutover::with_server();
    if proxy.is_direct() {
        return;
    }
    let mut a = proxy.wire();
    let id = support::Value::parse(&a.cmd(&["CLIENT", "ID"])).int();
    let mut b = proxy.wire();
    // By the id CLIENT ID gave (Redis never issued it: the proxy's own).
    assert_eq!(b.cmd(&["CLIENT", "KILL", "ID", &id.to_string()]), b":1\r\n");
    assert!(closed(&mut a));
    // By address, the old form.
    let mut c = proxy.wire();
    c.cmd(&["PING"]);
    let addr = c.stream().local_addr().unwrap().to_string();
    assert_eq!(b.cmd(&["CLIENT", "KILL", &addr]), b"+OK\r\n");
    assert!(closed(&mut c));
    assert!(b
        .cmd(&["CLIENT", "KILL", "127.0.0.1:1"])
        .starts_with(b"-ERR No such client"));
    // Every normal client but the caller; the shared backend connection survives.
    let mut d = proxy.wire();
    let mut e = proxy.wire();
    d.cmd(&["PING"]);
    e.cmd(&["PING"]);
    assert_eq!(b.cmd(&["CLIENT", "KILL", "TYPE", "normal"]), b":2\r\n");
    assert!(closed(&mut d));
    assert!(closed(&mut e));
    assert_eq!(b.cmd(&["SET", "k", "still"]), b"+OK\r\n");
    assert_eq!(proxy.wire().cmd(&["GET", "k"]), b"$5\r\nstill\r\n");
    // The caller itself, with SKIPME no: answered, then closed.
    let me = support::Value::parse(&b.cmd(&["CLIENT", "ID"]))
        .int()
        .to_string();
    assert_eq!(
        b.cmd(&["CLIENT", "KILL", "ID", &me, "SKIPME", "no"]),
        b":1\r\n"
    );
    assert!(closed(&mut b));
}

/// Redis answers other clients `-BUSY` while a script runs past its limit, and one of them
/// can kill it; through the proxy, the other clients' commands must not sit behind the
/// script on the shared connection (they did: PING waited forever, so SCRIPT KILL could
/// never be sent).
#[test]
fn a_long_script_does_not_hold_other_clients_behind_it() {
    let server = RedisServer::builder()
        .args(&["--busy-reply-threshold", "200"])
        .start();
    let proxy = Cutover::start::<&str>(&server, &[]);
    let mut a = proxy.wire();
    a.set_timeout(Duration::from_secs(20));
    // A pipelined GET behind the script keeps its place in a's order.
    a.send_cmd(&["SET", "k", "before"]);
    a.send_cmd(&["EVAL", "while true do end", "0"]);
    a.send_cmd(&["GET", "k"]);
    assert_bytes(a.read_reply(), b"+OK\r\n");
    let mut b = proxy.wire();
    b.set_timeout(Duration::from_secs(10));
    // Once the script passed its limit, Redis answers -BUSY, as it would directly.
    let mut busy = false;
    for _ in 0..200 {
        let r = b.cmd(&["PING"]);
        if r.starts_with(b"-BUSY") {
            busy = true;
            break;
        }
        assert_bytes(r, b"+PONG\r\n");
        thread::sleep(Duration::from_millis(20));
    }
    assert!(
        busy,
        "no -BUSY: the script is not running, or PING never got to Redis"
    );
    assert_bytes(b.cmd(&["SCRIPT", "KILL"]), b"+OK\r\n");
    let killed = a.read_reply();
    assert!(
        killed.starts_with(b"-") && String::from_utf8_lossy(&killed).contains("killed"),
        "{}",
        show(&killed)
    );
    assert_bytes(a.read_reply(), bulk("before"));
    assert_bytes(b.cmd(&["PING"]), b"+PONG\r\n");
    assert_bytes(a.cmd(&["EVAL", "return 7", "0"]), int(7));
}

/// CLIENT LIST and CLIENT UNBLOCK act on the proxy's own clients, as Redis would on its
/// own (they used to show and act on the proxy's backend connections: an id from CLIENT ID
/// through the proxy unblocked nothing, and the blocked client waited forever).
#[test]
fn client_list_and_unblock_see_the_proxys_own_clients() {
    let (_server, proxy) = Cutover::with_server();
    let mut a = proxy.wire();
    assert_bytes(a.cmd(&["CLIENT", "SETNAME", "app-a"]), b"+OK\r\n");
    assert_bytes(a.cmd(&["SELECT", "2"]), b"+OK\r\n");
    let a_id = a.value(&["CLIENT", "ID"]).int();
    let mut b = proxy.wire();
    let b_id = b.value(&["CLIENT", "ID"]).int();
    let list = b.value(&["CLIENT", "LIST"]).text();
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(lines.len(), 2, "{list}");
    let line_a = lines
        .iter()
        .find(|l| l.starts_with(&format!("id={a_id} ")))
        .expect("a listed");
    // Its last command, as Redis shows another client's.
    assert!(
        line_a.contains(" name=app-a ")
            && line_a.contains(" db=2 ")
            && line_a.contains(" cmd=client|id "),
        "{line_a}"
    );
    assert!(list.contains(&format!("id={b_id} ")), "{list}");
    assert!(
        list.contains(&format!("addr={} ", b.stream().local_addr().unwrap())),
        "{list}"
    );
    let only_a = b.value(&["CLIENT", "LIST", "ID", &a_id.to_string()]).text();
    assert_eq!(only_a.lines().count(), 1, "{only_a}");
    assert_prefix(
        b.cmd(&["CLIENT", "LIST", "TYPE", "bogus"]),
        b"-ERR Unknown client type",
    );

    // A client blocked in BLPOP, unblocked by another with the id the proxy gave it.
    let mut c = proxy.wire();
    c.set_timeout(std::time::Duration::from_secs(10));
    let c_id = c.value(&["CLIENT", "ID"]).int();
    c.send_cmd(&["BLPOP", "nothing", "0"]);
    let mut unblocked = false;
    for _ in 0..200 {
        let r = b.value(&["CLIENT", "UNBLOCK", &c_id.to_string()]).int();
        if r == 1 {
            unblocked = true;
            break;
        }
        thread::sleep(Duration::from_millis(10));
    }
    assert!(unblocked, "CLIENT UNBLOCK never found the blocked client");
    assert_bytes(c.read_reply(), b"*-1\r\n");
    assert_bytes(c.cmd(&["PING"]), b"+PONG\r\n");
    // Not blocked (any more), or not a client: 0.
    assert_bytes(b.cmd(&["CLIENT", "UNBLOCK", &c_id.to_string()]), int(0));
    assert_bytes(b.cmd(&["CLIENT", "UNBLOCK", "999999"]), int(0));
    assert_prefix(
        b.cmd(&["CLIENT", "UNBLOCK", "x"]),
        b"-ERR value is not an integer",
    );
}

/// CLIENT TRACKING ... REDIRECT names a client by the id the proxy gave it: the
/// invalidations reach that client's own connection (the server knows it by another id).
#[test]
fn tracking_redirect_names_the_proxys_client() {
    let (_server, proxy) = Cutover::with_server();
    let mut sub = proxy.wire();
    sub.set_timeout(Duration::from_secs(10));
    let sub_id = sub.value(&["CLIENT", "ID"]).int();
    assert_prefix(sub.cmd(&["SUBSCRIBE", "__redis__:invalidate"]), b"*3\r\n");
    let mut a = proxy.wire();
    assert_bytes(
        a.cmd(&["CLIENT", "TRACKING", "on", "REDIRECT", &sub_id.to_string()]),
        b"+OK\r\n",
    );
    assert_bytes(a.cmd(&["GET", "watched"]), b"$-1\r\n");
    let mut w = proxy.wire();
    assert_bytes(w.cmd(&["SET", "watched", "1"]), b"+OK\r\n");
    // The invalidation message, on the subscriber's connection.
    let msg = sub.read_reply();
    let text = String::from_utf8_lossy(&msg);
    assert!(
        text.contains("__redis__:invalidate") && text.contains("watched"),
        "{text}"
    );
    assert_prefix(
        a.cmd(&["CLIENT", "TRACKING", "on", "REDIRECT", "999999"]),
        b"-ERR The client ID you want redirect to does not exist",
    );
}

/// Sets up `app1` (limited to `app1:*`) on a server, directly.
fn add_app_user(server: &RedisServer) {
    assert_eq!(
        server.cmd(&["ACL", "SETUSER", "app1", "on", ">pw1", "~app1:*", "+@all"]),
        b"+OK\r\n"
    );
}

#[test]
fn each_user_is_checked_by_the_source_and_runs_as_itself() {
    let source = RedisServer::start();
    let target = RedisServer::start();
    add_app_user(&source);
    let proxy = support::cutover_with_target(&source, &target, &[]);

    let mut app = proxy.wire();
    // The source's own refusal, word for word.
    let wrong = app.cmd(&["AUTH", "app1", "nope"]);
    assert_eq!(wrong, source.wire().cmd(&["AUTH", "app1", "nope"]));
    assert_prefix(wrong, b"-WRONGPASS");
    assert_eq!(app.cmd(&["AUTH", "app1", "pw1"]), b"+OK\r\n");
    assert_eq!(app.cmd(&["ACL", "WHOAMI"]), bulk(b"app1"));
    assert_eq!(app.cmd(&["SET", "app1:a", "1"]), b"+OK\r\n");
    // Redis enforces the user's key patterns: not the proxy's own credential.
    assert_prefix(app.cmd(&["GET", "other"]), b"-NOPERM");
    // HELLO 3 AUTH logs in the same way, on another client.
    let mut h = proxy.wire();
    let hello = h.cmd(&["HELLO", "3", "AUTH", "app1", "pw1"]);
    assert_prefix(hello, b"%7");
    assert_prefix(h.cmd(&["SET", "other", "x"]), b"-NOPERM");
    // Options HELLO refuses are refused before the AUTH in them: not logged in.
    let mut bad = proxy.wire();
    assert_prefix(
        bad.cmd(&["HELLO", "3", "bogus", "AUTH", "app1", "pw1"]),
        b"-ERR Syntax error in HELLO option 'bogus'",
    );
    assert_eq!(bad.cmd(&["ACL", "WHOAMI"]), bulk(b"default"));
    // A client that did not log in is the source's default user.
    let mut anon = proxy.wire();
    assert_eq!(anon.cmd(&["ACL", "WHOAMI"]), bulk(b"default"));
    assert_eq!(anon.cmd(&["SET", "other", "y"]), b"+OK\r\n");

    // Before the switch the user is copied to the target (it has none), and the client
    // goes on there as itself.
    support::wait_caught_up(&source, &proxy);
    assert_prefix(support::cutover(&proxy, &[]), b"+OK");
    assert_prefix(target.cmd(&["ACL", "GETUSER", "app1"]), b"*");
    assert_eq!(app.cmd(&["ACL", "WHOAMI"]), bulk(b"app1"));
    assert_eq!(app.cmd(&["GET", "app1:a"]), bulk(b"1"));
    assert_prefix(app.cmd(&["GET", "other"]), b"-NOPERM");
    let mut late = proxy.wire();
    assert_eq!(late.cmd(&["AUTH", "app1", "pw1"]), b"+OK\r\n");
    assert_prefix(late.cmd(&["SET", "x", "1"]), b"-NOPERM");
}

#[test]
fn a_cutover_is_refused_naming_a_user_the_target_cannot_take() {
    let source = RedisServer::start();
    // The target refuses ACL (renamed away), so the user can't be copied there.
    let target = RedisServer::builder()
        .args(&["--rename-command", "ACL", ""])
        .start();
    add_app_user(&source);
    let proxy = support::cutover_with_target(&source, &target, &[]);
    let mut app = proxy.wire();
    assert_eq!(app.cmd(&["AUTH", "app1", "pw1"]), b"+OK\r\n");
    support::wait_caught_up(&source, &proxy);
    let r = support::cutover(&proxy, &[]);
    assert_prefix(&r, b"-");
    assert!(String::from_utf8_lossy(&r).contains("app1"), "{}", show(&r));
    // Clients stay on the source.
    assert_eq!(app.cmd(&["SET", "app1:b", "2"]), b"+OK\r\n");
    assert_eq!(source.cmd(&["GET", "app1:b"]), bulk(b"2"));
}

#[test]
fn a_new_default_password_costs_only_the_clients_that_do_not_know_it() {
    let source = RedisServer::builder().password("old").start();
    let proxy = Cutover::builder(&source).start();
    let mut a = proxy.wire();
    // The source wants a password: so does the proxy, with Redis's words.
    assert_eq!(
        a.cmd(&["GET", "k"]),
        b"-NOAUTH Authentication required.\r\n"
    );
    assert_eq!(a.cmd(&["AUTH", "old"]), b"+OK\r\n");
    assert_eq!(a.cmd(&["SET", "k", "1"]), b"+OK\r\n");
    assert_eq!(a.cmd(&["CONFIG", "SET", "requirepass", "new"]), b"+OK\r\n");
    // Every connection the proxy has is dropped (as a network blip would).
    let mut admin = support::Wire::connect(source.addr());
    assert_eq!(admin.cmd(&["AUTH", "new"]), b"+OK\r\n");
    assert_prefix(
        admin.cmd(&["CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"]),
        b":",
    );
    // Who knows the new password is served; who gives the old one is refused by Redis.
    let mut b = proxy.wire();
    assert_eq!(b.cmd(&["AUTH", "new"]), b"+OK\r\n");
    assert_eq!(b.cmd(&["GET", "k"]), bulk(b"1"));
    let mut c = proxy.wire();
    assert_prefix(c.cmd(&["AUTH", "old"]), b"-WRONGPASS");
}

#[test]
fn a_user_the_target_has_with_other_passwords_is_not_changed_and_the_cutover_refused() {
    let source = RedisServer::start();
    let target = RedisServer::start();
    add_app_user(&source);
    assert_eq!(
        target.cmd(&["ACL", "SETUSER", "app1", "on", ">other", "~*", "+@all"]),
        b"+OK\r\n"
    );
    let proxy = support::cutover_with_target(&source, &target, &[]);
    let mut app = proxy.wire();
    assert_eq!(app.cmd(&["AUTH", "app1", "pw1"]), b"+OK\r\n");
    support::wait_caught_up(&source, &proxy);
    let r = support::cutover(&proxy, &[]);
    let text = String::from_utf8_lossy(&r);
    assert!(
        r.starts_with(b"-") && text.contains("app1") && text.contains("other passwords"),
        "{text}"
    );
    // The target's user kept its own password (and permissions) only.
    let mut t = support::Wire::connect(target.addr());
    assert_prefix(t.cmd(&["AUTH", "app1", "pw1"]), b"-WRONGPASS");
    assert_eq!(t.cmd(&["AUTH", "app1", "other"]), b"+OK\r\n");
}

#[test]
fn the_proxys_own_password_is_a_gate_in_front_of_the_source() {
    let source = RedisServer::start();
    add_app_user(&source);
    let proxy = Cutover::builder(&source).password("gate").start();
    let mut w = support::Wire::connect(proxy.addr());
    assert_eq!(w.cmd(&["PING"]), b"-NOAUTH Authentication required.\r\n");
    // The source's user, but not a credential the proxy knows: the gate refuses it.
    assert_prefix(w.cmd(&["AUTH", "app1", "pw1"]), b"-WRONGPASS");
    // The gate's password; the source's default user needs none.
    assert_eq!(w.cmd(&["AUTH", "gate"]), b"+OK\r\n");
    assert_eq!(w.cmd(&["ACL", "WHOAMI"]), bulk(b"default"));
}

/// A source that did not answer at start: until cutover learns whether it runs commands
/// without AUTH, clients must log in (it does not assume so); once it answers, a client
/// that does not log in is served, as by Redis directly.
#[test]
fn a_source_down_at_start_is_asked_later_whether_it_needs_a_password() {
    let port = support::free_port();
    let down = format!("redis://127.0.0.1:{port}");
    let placeholder = RedisServer::start();
    let proxy = Cutover::builder(&placeholder).source_url(&down).start();
    let mut early = proxy.wire();
    assert_eq!(
        early.cmd(&["SET", "k", "v"]),
        b"-NOAUTH Authentication required.\r\n"
    );
    let source = RedisServer::builder().port(port).start();
    support::poll_until(std::time::Duration::from_secs(15), || {
        proxy.wire().cmd(&["SET", "k", "v"]) == b"+OK\r\n"
    });
    assert_eq!(source.cmd(&["GET", "k"]), bulk(b"v"));
}
