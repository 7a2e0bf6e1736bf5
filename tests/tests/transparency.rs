//! What Redis sends reaches the client that asked, and nobody else notices: replies of any
//! shape through a shared backend connection.

use support::{show, Cutover, Wire};

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
