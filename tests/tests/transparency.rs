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
