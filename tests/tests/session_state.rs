//! Where a multiplexing proxy tends to break: switching a client between shared and
//! dedicated backend connections mid-pipeline, state leaking from a client that hangs up
//! in the middle of a transaction/subscription/blocking call, blocking commands stalling
//! other clients, commands the proxy answers itself (arity errors, case, inside MULTI),
//! slow readers, many concurrent clients, and backend failures with commands in flight.
//!
//! Every test also runs directly against Redis with `CUTOVER_TEST_DIRECT=1`.

use std::thread;
use std::time::Duration;

use support::{assert_bytes, assert_prefix, bulk, encode, encode_into, int, poll_until, show};
use support::{Cutover, RedisServer, Value, Wire};

const OK: &[u8] = b"+OK\r\n";
const QUEUED: &[u8] = b"+QUEUED\r\n";
const NIL: &[u8] = b"$-1\r\n";
const PONG: &[u8] = b"+PONG\r\n";
const WAIT: Duration = Duration::from_secs(5);

fn info_u64(server: &RedisServer, section: &str, field: &str) -> u64 {
    server
        .info_field(section, field)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("INFO {section} has no numeric {field}"))
}

fn blocked_clients(server: &RedisServer) -> u64 {
    info_u64(server, "clients", "blocked_clients")
}

/// The server-side connections (other than the one asking) that are in some special state:
/// subscribed, in MULTI, blocked, MONITOR, tracking. Empty when nothing leaked.
fn special_server_clients(server: &RedisServer) -> Vec<String> {
    let list = server.wire().value(&["CLIENT", "LIST"]).text();
    list.lines()
        .filter(|l| !l.contains("cmd=client|list"))
        .filter(|l| {
            let field = |name: &str| {
                l.split(' ')
                    .find_map(|kv| kv.strip_prefix(name))
                    .unwrap_or("")
                    .to_string()
            };
            let flags = field("flags=");
            field("sub=") != "0"
                || field("psub=") != "0"
                || field("ssub=") != "0"
                || field("multi=") != "-1"
                || flags.contains(['b', 'O', 't', 'x', 'S', 'P'])
        })
        .map(str::to_string)
        .collect()
}

// ---------------------------------------------------------------------------------------
// Transitions inside one pipeline
// ---------------------------------------------------------------------------------------

#[test]
fn pipeline_crossing_into_and_out_of_subscribed_mode() {
    let (_server, proxy) = Cutover::with_server();
    let mut a = proxy.wire();
    let mut publ = proxy.wire();
    let mut batch = encode(&["SET", "a", "1"]);
    encode_into(&mut batch, &["SUBSCRIBE", "pc"]);
    encode_into(&mut batch, &["PING"]);
    a.send(&batch);
    assert_bytes(a.read_reply(), OK);
    assert_bytes(
        a.read_reply(),
        b"*3\r\n$9\r\nsubscribe\r\n$2\r\npc\r\n:1\r\n",
    );
    assert_bytes(a.read_reply(), b"*2\r\n$4\r\npong\r\n$0\r\n\r\n");
    assert_bytes(publ.cmd(&["PUBLISH", "pc", "m1"]), int(1));
    assert_bytes(
        a.read_reply(),
        b"*3\r\n$7\r\nmessage\r\n$2\r\npc\r\n$2\r\nm1\r\n",
    );

    let mut batch = encode(&["UNSUBSCRIBE", "pc"]);
    encode_into(&mut batch, &["GET", "a"]);
    encode_into(&mut batch, &["INCR", "a"]);
    a.send(&batch);
    assert_bytes(
        a.read_reply(),
        b"*3\r\n$11\r\nunsubscribe\r\n$2\r\npc\r\n:0\r\n",
    );
    assert_bytes(a.read_reply(), bulk("1"));
    assert_bytes(a.read_reply(), int(2));
    assert_bytes(publ.cmd(&["PUBLISH", "pc", "m2"]), int(0));
}

#[test]
fn pipeline_crossing_blocking_and_transaction_commands() {
    let (_server, proxy) = Cutover::with_server();
    let mut a = proxy.wire();
    let mut batch = Vec::new();
    for args in [
        &["SET", "a", "1"][..],
        &["BLPOP", "nolist", "0.01"],
        &["INCR", "a"],
        &["MULTI"],
        &["INCR", "a"],
        &["EXEC"],
        &["GET", "a"],
        &["RPUSH", "l", "x"],
        &["BLPOP", "l", "0"],
        &["WATCH", "a"],
        &["INCR", "a"],
        &["MULTI"],
        &["INCR", "a"],
        &["EXEC"],
        &["ECHO", "end"],
    ] {
        encode_into(&mut batch, args);
    }
    a.send(&batch);
    for expected in [
        OK,
        b"*-1\r\n",
        b":2\r\n",
        OK,
        QUEUED,
        b"*1\r\n:3\r\n",
        b"$1\r\n3\r\n",
        b":1\r\n",
        b"*2\r\n$1\r\nl\r\n$1\r\nx\r\n",
        OK,
        b":4\r\n",
        OK,
        QUEUED,
        b"*-1\r\n", // own modification after WATCH aborts the transaction
        b"$3\r\nend\r\n",
    ] {
        assert_bytes(a.read_reply(), expected);
    }
}

#[test]
fn blocking_command_inside_multi_does_not_block() {
    let (_server, proxy) = Cutover::with_server();
    let mut a = proxy.wire();
    assert_bytes(a.cmd(&["MULTI"]), OK);
    assert_bytes(a.cmd(&["BLPOP", "l", "0"]), QUEUED);
    assert_bytes(a.cmd(&["EXEC"]), b"*1\r\n*-1\r\n");
}

// ---------------------------------------------------------------------------------------
// Session commands inside transactions and scripts
// ---------------------------------------------------------------------------------------

#[test]
fn select_inside_multi_changes_the_clients_db() {
    let (server, proxy) = Cutover::with_server();
    let mut a = proxy.wire();
    assert_bytes(a.cmd(&["MULTI"]), OK);
    assert_bytes(a.cmd(&["SELECT", "2"]), QUEUED);
    assert_bytes(a.cmd(&["SET", "inmulti", "x"]), QUEUED);
    assert_bytes(a.cmd(&["EXEC"]), b"*2\r\n+OK\r\n+OK\r\n");
    // After EXEC the client is in db 2.
    assert_bytes(a.cmd(&["SET", "after", "y"]), OK);
    let mut direct = server.wire();
    assert_bytes(direct.cmd(&["SELECT", "2"]), OK);
    assert_bytes(direct.cmd(&["GET", "inmulti"]), bulk("x"));
    assert_bytes(direct.cmd(&["GET", "after"]), bulk("y"));
    assert_bytes(a.cmd(&["GET", "inmulti"]), bulk("x"));
}

#[test]
fn client_id_inside_multi_is_the_clients_id() {
    let (_server, proxy) = Cutover::with_server();
    let mut a = proxy.wire();
    let id = a.value(&["CLIENT", "ID"]).int();
    assert_bytes(a.cmd(&["MULTI"]), OK);
    assert_bytes(a.cmd(&["CLIENT", "ID"]), QUEUED);
    assert_bytes(a.cmd(&["EXEC"]), format!("*1\r\n:{id}\r\n"));
}

#[test]
fn select_inside_a_script_does_not_leak() {
    let (_server, proxy) = Cutover::with_server();
    let mut a = proxy.wire();
    assert_bytes(
        a.cmd(&[
            "EVAL",
            "redis.call('SELECT', 3); redis.call('SET', 'k', 'db3'); return 1",
            "0",
        ]),
        int(1),
    );
    assert_bytes(a.cmd(&["GET", "k"]), NIL);
    assert_bytes(a.cmd(&["SELECT", "3"]), OK);
    assert_bytes(a.cmd(&["GET", "k"]), bulk("db3"));
}

#[test]
fn hello_setname_and_argument_errors_of_session_commands() {
    let (_server, proxy) = Cutover::with_server();
    let mut a = proxy.wire();
    let hello = a.value(&["HELLO", "2", "SETNAME", "viahello"]);
    assert!(matches!(hello, Value::Array(_)), "{hello:?}");
    assert_bytes(a.cmd(&["CLIENT", "GETNAME"]), bulk("viahello"));

    let cases: &[(&[&str], &[u8])] = &[
        (
            &["CLIENT", "SETNAME"],
            b"-ERR wrong number of arguments for 'client|setname' command\r\n",
        ),
        (
            &["CLIENT", "SETNAME", "a", "b"],
            b"-ERR wrong number of arguments for 'client|setname' command\r\n",
        ),
        (
            &["CLIENT", "GETNAME", "x"],
            b"-ERR wrong number of arguments for 'client|getname' command\r\n",
        ),
        (
            &["CLIENT", "ID", "x"],
            b"-ERR wrong number of arguments for 'client|id' command\r\n",
        ),
        (
            &["CLIENT", "INFO", "x"],
            b"-ERR wrong number of arguments for 'client|info' command\r\n",
        ),
        (
            &["CLIENT"],
            b"-ERR wrong number of arguments for 'client' command\r\n",
        ),
        (
            &["CLIENT", "FOO"],
            b"-ERR unknown subcommand 'FOO'. Try CLIENT HELP.\r\n",
        ),
        (
            &["SELECT"],
            b"-ERR wrong number of arguments for 'select' command\r\n",
        ),
        (
            &["SELECT", "1", "2"],
            b"-ERR wrong number of arguments for 'select' command\r\n",
        ),
        (&["SELECT", "-1"], b"-ERR DB index is out of range\r\n"),
        (
            &["HELLO", "abc"],
            b"-ERR Protocol version is not an integer or out of range\r\n",
        ),
        (
            &["HELLO", "1"],
            b"-NOPROTO unsupported protocol version\r\n",
        ),
        (
            &["HELLO", "3", "AUTH"],
            b"-ERR Syntax error in HELLO option 'AUTH'\r\n",
        ),
        (
            &["HELLO", "3", "AUTH", "default"],
            b"-ERR Syntax error in HELLO option 'AUTH'\r\n",
        ),
        (
            &["HELLO", "3", "FOO"],
            b"-ERR Syntax error in HELLO option 'FOO'\r\n",
        ),
        (
            &["HELLO", "3", "SETNAME"],
            b"-ERR Syntax error in HELLO option 'SETNAME'\r\n",
        ),
        (
            &["HELLO", "3", "SETNAME", "a b"],
            b"-ERR Client names cannot contain spaces, newlines or special characters.\r\n",
        ),
        (
            &["AUTH"],
            b"-ERR wrong number of arguments for 'auth' command\r\n",
        ),
        (
            &["RESET", "x"],
            b"-ERR wrong number of arguments for 'reset' command\r\n",
        ),
        (
            &["PING", "a", "b"],
            b"-ERR wrong number of arguments for 'ping' command\r\n",
        ),
        (
            &[""],
            b"-ERR unknown command '', with args beginning with: \r\n",
        ),
    ];
    for (args, expected) in cases {
        let reply = a.cmd(args);
        if reply != *expected {
            panic!(
                "{args:?}\n  expected: {}\n    actual: {}",
                show(expected),
                show(&reply)
            );
        }
    }
    // None of the failed commands changed the session.
    assert_bytes(a.cmd(&["CLIENT", "GETNAME"]), bulk("viahello"));
    assert_bytes(a.cmd(&["GET", "nokey"]), NIL);
}

#[test]
fn command_names_are_case_insensitive() {
    let (server, proxy) = Cutover::with_server();
    let mut a = proxy.wire();
    let mut b = proxy.wire();
    assert_bytes(a.cmd(&["select", "4"]), OK);
    assert_bytes(a.cmd(&["sEt", "ci", "1"]), OK);
    assert_bytes(a.cmd(&["client", "setname", "lower"]), OK);
    assert_bytes(a.cmd(&["Client", "GetName"]), bulk("lower"));
    assert_bytes(a.cmd(&["multi"]), OK);
    assert_bytes(a.cmd(&["incr", "ci"]), QUEUED);
    assert_bytes(a.cmd(&["exec"]), b"*1\r\n:2\r\n");
    assert_bytes(
        a.cmd(&["subscribe", "lc"]),
        b"*3\r\n$9\r\nsubscribe\r\n$2\r\nlc\r\n:1\r\n",
    );
    assert_bytes(b.cmd(&["publish", "lc", "m"]), int(1));
    assert_bytes(
        a.read_reply(),
        b"*3\r\n$7\r\nmessage\r\n$2\r\nlc\r\n$1\r\nm\r\n",
    );
    assert_bytes(a.cmd(&["reset"]), b"+RESET\r\n");
    assert_prefix(a.cmd(&["hello", "3"]), "%");
    assert_bytes(a.cmd(&["get", "nokey"]), b"_\r\n");
    let mut direct = server.wire();
    assert_bytes(direct.cmd(&["SELECT", "4"]), OK);
    assert_bytes(direct.cmd(&["GET", "ci"]), bulk("2"));
    let mut q = proxy.wire();
    assert_bytes(q.cmd(&["quit"]), OK);
    q.expect_closed();
}

#[test]
fn client_reply_off_and_skip() {
    let (_server, proxy) = Cutover::with_server();
    let mut a = proxy.wire();
    let mut bystander = proxy.wire();
    let mut batch = Vec::new();
    for args in [
        &["CLIENT", "REPLY", "OFF"][..],
        &["SET", "quiet", "1"],
        &["INCR", "quiet"],
        &["CLIENT", "REPLY", "ON"],
        &["PING"],
        &["CLIENT", "REPLY", "SKIP"],
        &["ECHO", "skipped"],
        &["ECHO", "seen"],
    ] {
        encode_into(&mut batch, args);
    }
    a.send(&batch);
    assert_bytes(a.read_reply(), OK);
    assert_bytes(a.read_reply(), PONG);
    assert_bytes(a.read_reply(), bulk("seen"));
    assert_bytes(a.cmd(&["GET", "quiet"]), bulk("2"));
    // The shared connection stayed in step for everyone else.
    for i in 0..20 {
        assert_bytes(
            bystander.cmd(&["ECHO", &i.to_string()]),
            bulk(i.to_string()),
        );
    }
}

// ---------------------------------------------------------------------------------------
// Blocking commands never stall other clients
// ---------------------------------------------------------------------------------------

#[test]
fn blocking_commands_do_not_stall_other_clients() {
    let (server, proxy) = Cutover::with_server();
    let mut setup = proxy.wire();
    assert_bytes(
        setup.cmd(&["XGROUP", "CREATE", "gs", "g", "$", "MKSTREAM"]),
        OK,
    );
    type Case<'a> = (&'a [&'a str], &'a [&'a str], &'a [u8]);
    let cases: &[Case] = &[
        (
            &["BLPOP", "l1", "0"],
            &["RPUSH", "l1", "a"],
            b"*2\r\n$2\r\nl1\r\n$1\r\na\r\n",
        ),
        (
            &["BRPOP", "l2", "0"],
            &["LPUSH", "l2", "b"],
            b"*2\r\n$2\r\nl2\r\n$1\r\nb\r\n",
        ),
        (
            &["BLMOVE", "l3", "d3", "LEFT", "RIGHT", "0"],
            &["RPUSH", "l3", "c"],
            b"$1\r\nc\r\n",
        ),
        (
            &["BRPOPLPUSH", "l4", "d4", "0"],
            &["RPUSH", "l4", "d"],
            b"$1\r\nd\r\n",
        ),
        (
            &["BLMPOP", "0", "1", "l5", "LEFT"],
            &["RPUSH", "l5", "e"],
            b"*2\r\n$2\r\nl5\r\n*1\r\n$1\r\ne\r\n",
        ),
        (
            &["BZPOPMIN", "z1", "0"],
            &["ZADD", "z1", "1", "m"],
            b"*3\r\n$2\r\nz1\r\n$1\r\nm\r\n$1\r\n1\r\n",
        ),
        (
            &["XREAD", "BLOCK", "0", "STREAMS", "s1", "$"],
            &["XADD", "s1", "5-1", "f", "v"],
            b"*1\r\n*2\r\n$2\r\ns1\r\n*1\r\n*2\r\n$3\r\n5-1\r\n*2\r\n$1\r\nf\r\n$1\r\nv\r\n",
        ),
        (
            &[
                "XREADGROUP",
                "GROUP",
                "g",
                "c",
                "BLOCK",
                "0",
                "STREAMS",
                "gs",
                ">",
            ],
            &["XADD", "gs", "6-1", "f", "v"],
            b"*1\r\n*2\r\n$2\r\ngs\r\n*1\r\n*2\r\n$3\r\n6-1\r\n*2\r\n$1\r\nf\r\n$1\r\nv\r\n",
        ),
    ];
    for (block, wake, expected) in cases {
        let mut a = proxy.wire();
        let mut b = proxy.wire();
        b.set_timeout(Duration::from_secs(3));
        a.send_cmd(block);
        poll_until(WAIT, || blocked_clients(&server) == 1);
        // If the blocking command sat on a shared backend connection, these would hang.
        assert_bytes(b.cmd(&["PING"]), PONG);
        assert_bytes(b.cmd(&["SET", "unrelated", "1"]), OK);
        let _ = b.cmd(wake);
        let reply = a.read_reply();
        if reply != *expected {
            panic!(
                "{block:?} woken by {wake:?}: expected {}, got {}",
                show(expected),
                show(&reply)
            );
        }
        assert_bytes(a.cmd(&["PING"]), PONG);
    }
}

#[test]
fn wait_does_not_stall_other_clients() {
    let (server, proxy) = Cutover::with_server();
    let mut a = proxy.wire();
    let mut b = proxy.wire();
    b.set_timeout(Duration::from_secs(3));
    assert_bytes(a.cmd(&["SET", "w", "1"]), OK);
    // No replica will ever acknowledge: WAIT 1 0 blocks forever.
    a.send_cmd(&["WAIT", "1", "0"]);
    poll_until(WAIT, || blocked_clients(&server) == 1);
    assert_bytes(b.cmd(&["PING"]), PONG);
    assert_bytes(b.cmd(&["GET", "w"]), bulk("1"));
    drop(a);
    poll_until(WAIT, || blocked_clients(&server) == 0);
    // A WAIT with a timeout answers the number of replicas.
    assert_bytes(b.cmd(&["WAIT", "0", "100"]), int(0));
    assert_bytes(b.cmd(&["WAIT", "1", "20"]), int(0));
}

#[test]
fn blocking_command_runs_in_the_clients_db() {
    let (server, proxy) = Cutover::with_server();
    let mut a = proxy.wire();
    let mut b = proxy.wire();
    let mut c = proxy.wire();
    assert_bytes(a.cmd(&["SELECT", "3"]), OK);
    a.send_cmd(&["BLPOP", "q", "0"]);
    poll_until(WAIT, || blocked_clients(&server) == 1);
    // A push in db 0 does not wake a client blocked in db 3.
    assert_bytes(b.cmd(&["RPUSH", "q", "db0"]), int(1));
    assert_bytes(c.cmd(&["SELECT", "3"]), OK);
    assert_bytes(c.cmd(&["RPUSH", "q", "db3"]), int(1));
    assert_bytes(a.read_reply(), b"*2\r\n$1\r\nq\r\n$3\r\ndb3\r\n");
    assert_bytes(b.cmd(&["LLEN", "q"]), int(1));
}

// ---------------------------------------------------------------------------------------
// Clients hanging up in a special state leave nothing behind
// ---------------------------------------------------------------------------------------

/// Fresh clients in every kind of session behave normally: a leaked WATCH would abort these
/// transactions, a leaked MULTI or SELECT would misplace the writes, a leaked subscription
/// or BLPOP would eat replies.
fn fresh_clients_behave_normally(server: &RedisServer, proxy: &Cutover) {
    // No server connection is left subscribed, in MULTI, blocked, monitoring or tracking.
    poll_until(WAIT, || special_server_clients(server).is_empty());
    let mut setup = proxy.wire();
    assert_bytes(setup.cmd(&["SET", "wk", "changed"]), OK);
    for i in 0..10 {
        let mut n = proxy.wire();
        assert_bytes(n.cmd(&["MULTI"]), OK);
        assert_bytes(n.cmd(&["SET", &format!("fresh{i}"), "v"]), QUEUED);
        assert_bytes(n.cmd(&["EXEC"]), b"*1\r\n+OK\r\n");
        assert_bytes(n.cmd(&["GET", "leak-multi"]), NIL);
        assert_bytes(n.cmd(&["CLIENT", "GETNAME"]), NIL);
        assert_bytes(
            n.cmd(&["SUBSCRIBE", "x"]),
            b"*3\r\n$9\r\nsubscribe\r\n$1\r\nx\r\n:1\r\n",
        );
        assert_bytes(
            n.cmd(&["UNSUBSCRIBE"]),
            b"*3\r\n$11\r\nunsubscribe\r\n$1\r\nx\r\n:0\r\n",
        );
        n.send_cmd(&["BLPOP", "nothing", "0.01"]);
        assert_bytes(n.read_reply(), b"*-1\r\n");
    }
    let mut direct = server.wire();
    assert_bytes(direct.cmd(&["SELECT", "5"]), OK);
    assert_bytes(direct.cmd(&["DBSIZE"]), int(0));
    // No stray invalidation pushes reach a new RESP3 client.
    let mut r3 = proxy.wire();
    assert_prefix(r3.cmd(&["HELLO", "3"]), "%");
    assert_bytes(setup.cmd(&["SET", "wk", "again"]), OK);
    assert_bytes(r3.cmd(&["PING"]), PONG);
}

#[test]
fn hangup_in_multi_leaves_nothing_behind() {
    let (server, proxy) = Cutover::with_server();
    let mut w = proxy.wire();
    assert_bytes(w.cmd(&["SELECT", "5"]), OK);
    assert_bytes(w.cmd(&["MULTI"]), OK);
    assert_bytes(w.cmd(&["SET", "leak-multi", "1"]), QUEUED);
    drop(w);
    fresh_clients_behave_normally(&server, &proxy);
}

#[test]
fn hangup_with_watch_leaves_nothing_behind() {
    let (server, proxy) = Cutover::with_server();
    let mut w = proxy.wire();
    assert_bytes(w.cmd(&["SET", "wk", "0"]), OK);
    assert_bytes(w.cmd(&["WATCH", "wk"]), OK);
    drop(w);
    fresh_clients_behave_normally(&server, &proxy);
}

#[test]
fn hangup_while_subscribed_leaves_nothing_behind() {
    let (server, proxy) = Cutover::with_server();
    let mut w = proxy.wire();
    assert_bytes(
        w.cmd(&["SUBSCRIBE", "leakch"]),
        b"*3\r\n$9\r\nsubscribe\r\n$6\r\nleakch\r\n:1\r\n",
    );
    assert_prefix(w.cmd(&["PSUBSCRIBE", "leak*"]), "*3\r\n$10\r\npsubscribe");
    assert_prefix(w.cmd(&["SSUBSCRIBE", "leaks"]), "*3\r\n$10\r\nssubscribe");
    drop(w);
    let mut p = proxy.wire();
    poll_until(WAIT, || {
        p.cmd(&["PUBLISH", "leakch", "x"]) == int(0) && p.cmd(&["SPUBLISH", "leaks", "x"]) == int(0)
    });
    fresh_clients_behave_normally(&server, &proxy);
}

#[test]
fn hangup_while_monitoring_leaves_nothing_behind() {
    let (server, proxy) = Cutover::with_server();
    let mut w = proxy.wire();
    assert_bytes(w.cmd(&["MONITOR"]), OK);
    drop(w);
    fresh_clients_behave_normally(&server, &proxy);
}

#[test]
fn hangup_while_tracking_leaves_nothing_behind() {
    let (server, proxy) = Cutover::with_server();
    let mut w = proxy.wire();
    assert_prefix(w.cmd(&["HELLO", "3"]), "%");
    assert_bytes(w.cmd(&["CLIENT", "TRACKING", "on"]), OK);
    assert_bytes(w.cmd(&["GET", "wk"]), b"_\r\n");
    drop(w);
    fresh_clients_behave_normally(&server, &proxy);
}

/// A BLPOP cancelled by its client's hang-up must not pop (and lose) a later push.
#[test]
fn hangup_while_blocked_leaves_nothing_behind() {
    let (server, proxy) = Cutover::with_server();
    let mut w = proxy.wire();
    w.send_cmd(&["BLPOP", "leakq", "0"]);
    poll_until(WAIT, || blocked_clients(&server) == 1);
    drop(w);
    poll_until(WAIT, || blocked_clients(&server) == 0);
    let mut p = proxy.wire();
    assert_bytes(p.cmd(&["RPUSH", "leakq", "x"]), int(1));
    assert_bytes(p.cmd(&["LLEN", "leakq"]), int(1));
    fresh_clients_behave_normally(&server, &proxy);
}

// ---------------------------------------------------------------------------------------
// Load-related
// ---------------------------------------------------------------------------------------

#[test]
fn many_concurrent_clients_get_their_own_replies_in_order() {
    let (_server, proxy) = Cutover::with_server();
    let addr = proxy.addr();
    let handles: Vec<_> = (0..4)
        .map(|t| {
            thread::spawn(move || {
                let mut conns: Vec<Wire> = (0..25).map(|_| Wire::connect(addr)).collect();
                for round in 0..20 {
                    // Every connection writes a batch, then every connection reads.
                    for (c, w) in conns.iter_mut().enumerate() {
                        let mut batch = Vec::new();
                        for i in 0..10 {
                            let key = format!("t{t}c{c}");
                            encode_into(&mut batch, &["INCR", &key]);
                            encode_into(&mut batch, &["ECHO", &format!("{t}/{c}/{round}/{i}")]);
                        }
                        w.send(&batch);
                    }
                    for (c, w) in conns.iter_mut().enumerate() {
                        for i in 0..10 {
                            assert_bytes(w.read_reply(), int(round * 10 + i + 1));
                            assert_bytes(w.read_reply(), bulk(format!("{t}/{c}/{round}/{i}")));
                        }
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("client thread");
    }
}

#[test]
fn concurrent_transactions() {
    let (_server, proxy) = Cutover::with_server();
    let handles: Vec<_> = (0..10)
        .map(|_| {
            let mut w = proxy.wire();
            thread::spawn(move || {
                for _ in 0..30 {
                    let mut batch = encode(&["MULTI"]);
                    encode_into(&mut batch, &["INCR", "txctr"]);
                    encode_into(&mut batch, &["INCR", "txctr"]);
                    encode_into(&mut batch, &["EXEC"]);
                    w.send(&batch);
                    assert_bytes(w.read_reply(), OK);
                    assert_bytes(w.read_reply(), QUEUED);
                    assert_bytes(w.read_reply(), QUEUED);
                    let exec = Value::parse(&w.read_reply());
                    let items = exec.items();
                    // Atomic: the two increments are consecutive.
                    assert_eq!(items[1].int(), items[0].int() + 1);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("client thread");
    }
    assert_bytes(proxy.wire().cmd(&["GET", "txctr"]), bulk("600"));
}

#[test]
fn pubsub_many_messages_in_order() {
    let (_server, proxy) = Cutover::with_server();
    let mut sub = proxy.wire();
    let mut publ = proxy.wire();
    assert_bytes(
        sub.cmd(&["SUBSCRIBE", "bulkch"]),
        b"*3\r\n$9\r\nsubscribe\r\n$6\r\nbulkch\r\n:1\r\n",
    );
    let mut batch = Vec::new();
    for i in 0..5_000 {
        encode_into(&mut batch, &["PUBLISH", "bulkch", &format!("msg-{i}")]);
    }
    let writer = publ.send_in_background(batch);
    for i in 0..5_000 {
        let expected = [
            b"*3\r\n$7\r\nmessage\r\n$6\r\nbulkch\r\n".to_vec(),
            bulk(format!("msg-{i}")),
        ]
        .concat();
        assert_bytes(sub.read_reply(), expected);
    }
    for _ in 0..5_000 {
        assert_bytes(publ.read_reply(), int(1));
    }
    writer.join().unwrap().expect("publish");
}

/// A client that sends requests for large replies and does not read them must not hold up
/// other clients (it may be disconnected by the proxy once its output buffer is full).
#[test]
fn slow_reader_does_not_stall_others() {
    let (_server, proxy) = Cutover::with_server();
    let mut setup = proxy.wire();
    let big = vec![b'b'; 1 << 20];
    assert_bytes(setup.cmd(&[b"SET".as_slice(), b"big", &big]), OK);

    let mut slow = proxy.wire();
    let mut batch = Vec::new();
    for _ in 0..64 {
        encode_into(&mut batch, &["GET", "big"]);
    }
    slow.send(&batch);

    let mut fast = proxy.wire();
    fast.set_timeout(Duration::from_secs(3));
    for i in 0..200 {
        assert_bytes(fast.cmd(&["ECHO", &i.to_string()]), bulk(i.to_string()));
    }
    assert_bytes(fast.cmd(&["GET", "small"]), NIL);

    // The slow client gets all its replies, or (proxy only) is disconnected.
    let expected = bulk(&big);
    for i in 0..64 {
        match slow.try_read_reply() {
            Ok(r) => assert!(r == expected, "reply {i} to the slow reader differs"),
            Err(e) if !support::direct() => {
                eprintln!("slow reader disconnected after {i} replies: {e}");
                break;
            }
            Err(e) => panic!("reply {i}: {e}"),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Backend failure with commands in flight
// ---------------------------------------------------------------------------------------

/// Backend connections die while a client's INCR is held in flight by the server: the
/// client gets an error or a closed connection (or, if the proxy retried, the right
/// answer), never a reply meant for another command, and later commands are in step.
#[test]
fn backend_killed_with_commands_in_flight() {
    let (server, proxy) = Cutover::with_server();
    let mut a = proxy.wire();
    assert_bytes(a.cmd(&["PING"]), PONG);
    let mut direct = server.wire();
    assert_bytes(direct.cmd(&["CLIENT", "PAUSE", "10000", "WRITE"]), OK);
    let mut batch = encode(&["INCR", "inflight"]);
    encode_into(&mut batch, &["ECHO", "after-incr"]);
    a.send(&batch);
    poll_until(WAIT, || blocked_clients(&server) >= 1);
    let killed = direct.value(&["CLIENT", "KILL", "TYPE", "normal"]).int();
    assert!(killed >= 1);
    assert_bytes(direct.cmd(&["CLIENT", "UNPAUSE"]), OK);

    a.set_timeout(Duration::from_secs(5));
    let incr = a.try_read_reply();
    let echo = a.try_read_reply();
    let counter = direct.cmd(&["GET", "inflight"]);
    match &incr {
        Ok(r) if r.starts_with(b"-") => {}
        Ok(r) => {
            assert_bytes(r, int(1));
            assert_bytes(&counter, bulk("1"));
        }
        Err(e) => assert_ne!(e.kind(), std::io::ErrorKind::WouldBlock, "INCR reply hung"),
    }
    match &echo {
        Ok(r) if r.starts_with(b"-") => {}
        Ok(r) => assert_bytes(r, bulk("after-incr")),
        Err(e) => assert_ne!(e.kind(), std::io::ErrorKind::WouldBlock, "ECHO reply hung"),
    }
    if incr.is_ok() && echo.is_ok() {
        // The connection survived: it must be in step.
        poll_until(
            WAIT,
            || matches!(a.try_cmd(&["ECHO", "probe"]), Ok(r) if r == bulk("probe")),
        );
        for i in 0..20 {
            assert_bytes(a.cmd(&["ECHO", &i.to_string()]), bulk(i.to_string()));
        }
    }
    poll_until(WAIT, || {
        Wire::try_connect(proxy.addr())
            .ok()
            .and_then(|mut w| w.try_cmd(&["PING"]).ok())
            .is_some_and(|r| r == PONG)
    });
}

// ---------------------------------------------------------------------------------------
// Session commands in special contexts
// ---------------------------------------------------------------------------------------

#[test]
fn session_commands_queued_inside_multi() {
    let (_server, proxy) = Cutover::with_server();
    let mut a = proxy.wire();
    assert_bytes(a.cmd(&["MULTI"]), OK);
    assert_bytes(a.cmd(&["CLIENT", "SETNAME", "inmulti"]), QUEUED);
    assert_bytes(a.cmd(&["CLIENT", "GETNAME"]), QUEUED);
    assert_bytes(a.cmd(&["EXEC"]), b"*2\r\n+OK\r\n$7\r\ninmulti\r\n");
    assert_bytes(a.cmd(&["CLIENT", "GETNAME"]), bulk("inmulti"));
    // A discarded transaction changes nothing.
    assert_bytes(a.cmd(&["MULTI"]), OK);
    assert_bytes(a.cmd(&["CLIENT", "SETNAME", "discarded"]), QUEUED);
    assert_bytes(a.cmd(&["SELECT", "7"]), QUEUED);
    assert_bytes(a.cmd(&["DISCARD"]), OK);
    assert_bytes(a.cmd(&["CLIENT", "GETNAME"]), bulk("inmulti"));
    assert_bytes(a.cmd(&["SET", "where", "db0"]), OK);
    assert_bytes(proxy.wire().cmd(&["GET", "where"]), bulk("db0"));
}

/// In RESP2 subscribed mode Redis refuses session commands too (the proxy answers them
/// itself, so it must apply the same rule).
#[test]
fn session_commands_refused_in_resp2_subscribed_mode() {
    let (_server, proxy) = Cutover::with_server();
    let mut a = proxy.wire();
    assert_bytes(
        a.cmd(&["SUBSCRIBE", "c"]),
        b"*3\r\n$9\r\nsubscribe\r\n$1\r\nc\r\n:1\r\n",
    );
    let mut wrong: Vec<String> = Vec::new();
    for (args, name) in [
        (&["SELECT", "1"][..], "select"),
        (&["CLIENT", "SETNAME", "x"], "client|setname"),
        (&["CLIENT", "GETNAME"], "client|getname"),
        (&["CLIENT", "ID"], "client|id"),
        (&["HELLO", "2"], "hello"),
        (&["AUTH", "x"], "auth"),
        (&["MULTI"], "multi"),
        (&["WATCH", "k"], "watch"),
        (&["BLPOP", "l", "0"], "blpop"),
    ] {
        let expected = format!(
            "-ERR Can't execute '{name}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context\r\n"
        );
        let reply = a.cmd(args);
        if reply != expected.as_bytes() {
            wrong.push(format!("{args:?}: got {}", show(&reply)));
        }
    }
    assert!(
        wrong.is_empty(),
        "while subscribed (RESP2) these were not refused as Redis does:\n{}",
        wrong.join("\n")
    );
    // Nothing changed: still subscribed, no name, db 0.
    assert_bytes(a.cmd(&["PING"]), b"*2\r\n$4\r\npong\r\n$0\r\n\r\n");
    assert_bytes(
        a.cmd(&["UNSUBSCRIBE"]),
        b"*3\r\n$11\r\nunsubscribe\r\n$1\r\nc\r\n:0\r\n",
    );
    assert_bytes(a.cmd(&["CLIENT", "GETNAME"]), NIL);
    assert_bytes(a.cmd(&["SET", "k", "v"]), OK);
    assert_bytes(proxy.wire().cmd(&["GET", "k"]), bulk("v"));
}

#[test]
fn dedicated_connections_follow_resp3_and_db() {
    let (_server, proxy) = Cutover::with_server();
    let mut a = proxy.wire();
    let mut b = proxy.wire();
    assert_prefix(a.cmd(&["HELLO", "3"]), "%");
    assert_bytes(a.cmd(&["SELECT", "3"]), OK);
    // Timeouts answer RESP3 nulls.
    assert_bytes(a.cmd(&["BLPOP", "nothing", "0.01"]), b"_\r\n");
    assert_bytes(
        a.cmd(&["XREAD", "BLOCK", "10", "STREAMS", "nostream", "$"]),
        b"_\r\n",
    );
    assert_bytes(a.cmd(&["HSET", "h", "f", "v"]), int(1));
    // A transaction and a blocking pop in db 3, RESP3.
    assert_bytes(a.cmd(&["MULTI"]), OK);
    assert_bytes(a.cmd(&["HGETALL", "h"]), QUEUED);
    assert_bytes(a.cmd(&["EXEC"]), b"*1\r\n%1\r\n$1\r\nf\r\n$1\r\nv\r\n");
    assert_bytes(a.cmd(&["RPUSH", "l", "x"]), int(1));
    assert_bytes(a.cmd(&["BLPOP", "l", "0"]), b"*2\r\n$1\r\nl\r\n$1\r\nx\r\n");
    // Back on the shared path: still RESP3, still db 3.
    assert_bytes(a.cmd(&["HGETALL", "h"]), b"%1\r\n$1\r\nf\r\n$1\r\nv\r\n");
    assert_bytes(b.cmd(&["HGETALL", "h"]), b"*0\r\n");
}
