//! Clients must not be able to tell the proxy from Redis: sessions, transactions, blocking
//! commands, pub/sub, scripting, protocol versions, inline and binary input, pipelines.
//!
//! Every test also runs directly against Redis with `CUTOVER_TEST_DIRECT=1`.

use std::collections::HashSet;
use std::thread;
use std::time::Duration;

use support::{assert_bytes, assert_prefix, bulk, encode, encode_into, int, poll_until, show};
use support::{Cutover, RedisServer, Value, Wire};

const OK: &[u8] = b"+OK\r\n";
const QUEUED: &[u8] = b"+QUEUED\r\n";
const NIL: &[u8] = b"$-1\r\n";
const PONG: &[u8] = b"+PONG\r\n";
const WAIT: Duration = Duration::from_secs(5);

fn blocked_clients(server: &RedisServer) -> u64 {
    server
        .info_field("clients", "blocked_clients")
        .and_then(|v| v.parse().ok())
        .expect("INFO clients has blocked_clients")
}

// ---------------------------------------------------------------------------------------
// SELECT
// ---------------------------------------------------------------------------------------

#[test]
fn select_is_per_client() {
    let (server, proxy) = Cutover::with_server();
    let mut a = proxy.wire();
    let mut b = proxy.wire();
    assert_bytes(a.cmd(&["SELECT", "3"]), OK);
    assert_bytes(a.cmd(&["SET", "k", "in-db3"]), OK);
    assert_bytes(b.cmd(&["SET", "k", "in-db0"]), OK);
    assert_bytes(a.cmd(&["GET", "k"]), bulk("in-db3"));
    assert_bytes(b.cmd(&["GET", "k"]), bulk("in-db0"));

    // A new client starts in db 0.
    let mut c = proxy.wire();
    assert_bytes(c.cmd(&["GET", "k"]), bulk("in-db0"));

    // The data really is in db 3 on the server.
    let mut direct = server.wire();
    assert_bytes(direct.cmd(&["SELECT", "3"]), OK);
    assert_bytes(direct.cmd(&["GET", "k"]), bulk("in-db3"));
    assert_bytes(direct.cmd(&["DBSIZE"]), int(1));

    // Bad SELECTs give Redis' errors and leave the db unchanged.
    assert_bytes(
        a.cmd(&["SELECT", "16"]),
        b"-ERR DB index is out of range\r\n",
    );
    assert_bytes(
        a.cmd(&["SELECT", "abc"]),
        b"-ERR value is not an integer or out of range\r\n",
    );
    assert_bytes(a.cmd(&["GET", "k"]), bulk("in-db3"));

    // Switching back works.
    assert_bytes(a.cmd(&["SELECT", "0"]), OK);
    assert_bytes(a.cmd(&["GET", "k"]), bulk("in-db0"));
}

#[test]
fn select_respects_the_servers_database_count() {
    let server = RedisServer::builder().args(&["--databases", "4"]).start();
    let proxy = Cutover::start::<&str>(&server, &[]);
    let mut a = proxy.wire();
    assert_bytes(a.cmd(&["SELECT", "3"]), OK);
    assert_bytes(a.cmd(&["SET", "k", "v"]), OK);
    assert_bytes(
        a.cmd(&["SELECT", "4"]),
        b"-ERR DB index is out of range\r\n",
    );
    assert_bytes(a.cmd(&["GET", "k"]), bulk("v"));
}

/// Several clients in different dbs pipelining at the same time over the same proxy:
/// a shared backend connection must never let one client's SELECT leak into another's.
#[test]
fn select_isolation_under_concurrent_pipelines() {
    let (_server, proxy) = Cutover::with_server();
    let handles: Vec<_> = (0..4)
        .map(|db| {
            let mut w = proxy.wire();
            thread::spawn(move || {
                assert_bytes(w.cmd(&["SELECT", &db.to_string()]), OK);
                for round in 0..20 {
                    let mut batch = Vec::new();
                    for i in 0..25 {
                        let key = format!("key:{i}");
                        let val = format!("db{db}-round{round}-{i}");
                        encode_into(&mut batch, &["SET", &key, &val]);
                        encode_into(&mut batch, &["GET", &key]);
                    }
                    w.send(&batch);
                    for i in 0..25 {
                        let val = format!("db{db}-round{round}-{i}");
                        assert_bytes(w.read_reply(), OK);
                        assert_bytes(w.read_reply(), bulk(&val));
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("client thread");
    }
}

// ---------------------------------------------------------------------------------------
// Transactions
// ---------------------------------------------------------------------------------------

#[test]
fn multi_exec_discard_and_errors() {
    let (server, proxy) = Cutover::with_server();
    let mut a = proxy.wire();
    let mut b = proxy.wire();

    assert_bytes(a.cmd(&["MULTI"]), OK);
    assert_bytes(a.cmd(&["SET", "m", "1"]), QUEUED);
    assert_bytes(a.cmd(&["INCR", "m"]), QUEUED);
    assert_bytes(a.cmd(&["GET", "m"]), QUEUED);
    // Other clients are not held up by an open transaction, and don't see it yet.
    assert_bytes(b.cmd(&["SET", "other", "x"]), OK);
    assert_bytes(b.cmd(&["GET", "m"]), NIL);
    assert_bytes(a.cmd(&["EXEC"]), b"*3\r\n+OK\r\n:2\r\n$1\r\n2\r\n");
    assert_bytes(b.cmd(&["GET", "m"]), bulk("2"));

    // DISCARD.
    assert_bytes(a.cmd(&["MULTI"]), OK);
    assert_bytes(a.cmd(&["SET", "m", "100"]), QUEUED);
    assert_bytes(a.cmd(&["DISCARD"]), OK);
    assert_bytes(a.cmd(&["GET", "m"]), bulk("2"));

    // A queueing error aborts EXEC.
    assert_bytes(a.cmd(&["MULTI"]), OK);
    assert_bytes(
        a.cmd(&["SET", "m"]),
        b"-ERR wrong number of arguments for 'set' command\r\n",
    );
    assert_bytes(
        a.cmd(&["EXEC"]),
        b"-EXECABORT Transaction discarded because of previous errors.\r\n",
    );
    assert_bytes(a.cmd(&["GET", "m"]), bulk("2"));

    // Nesting and stray EXEC/DISCARD.
    assert_bytes(a.cmd(&["MULTI"]), OK);
    assert_bytes(a.cmd(&["MULTI"]), b"-ERR MULTI calls can not be nested\r\n");
    assert_bytes(a.cmd(&["DISCARD"]), OK);
    assert_bytes(a.cmd(&["EXEC"]), b"-ERR EXEC without MULTI\r\n");
    assert_bytes(a.cmd(&["DISCARD"]), b"-ERR DISCARD without MULTI\r\n");

    // A whole transaction written in one go.
    let mut batch = Vec::new();
    for args in [
        &["MULTI"][..],
        &["INCR", "m"],
        &["INCR", "m"],
        &["EXEC"],
        &["GET", "m"],
    ] {
        encode_into(&mut batch, args);
    }
    a.send(&batch);
    assert_bytes(a.read_reply(), OK);
    assert_bytes(a.read_reply(), QUEUED);
    assert_bytes(a.read_reply(), QUEUED);
    assert_bytes(a.read_reply(), b"*2\r\n:3\r\n:4\r\n");
    assert_bytes(a.read_reply(), bulk("4"));

    // A transaction in a SELECTed db runs in that db.
    assert_bytes(a.cmd(&["SELECT", "5"]), OK);
    assert_bytes(a.cmd(&["MULTI"]), OK);
    assert_bytes(a.cmd(&["SET", "t", "in5"]), QUEUED);
    assert_bytes(a.cmd(&["EXEC"]), b"*1\r\n+OK\r\n");
    let mut direct = server.wire();
    assert_bytes(direct.cmd(&["SELECT", "5"]), OK);
    assert_bytes(direct.cmd(&["GET", "t"]), bulk("in5"));
    // ... and the client stays in db 5 afterwards.
    assert_bytes(a.cmd(&["GET", "t"]), bulk("in5"));
}

#[test]
fn watch_aborts_exec_when_another_client_modifies_the_key() {
    let (_server, proxy) = Cutover::with_server();
    let mut a = proxy.wire();
    let mut b = proxy.wire();

    assert_bytes(a.cmd(&["SET", "w", "orig"]), OK);
    assert_bytes(a.cmd(&["WATCH", "w"]), OK);
    assert_bytes(b.cmd(&["SET", "w", "theirs"]), OK);
    assert_bytes(a.cmd(&["MULTI"]), OK);
    assert_bytes(a.cmd(&["SET", "w", "mine"]), QUEUED);
    assert_bytes(a.cmd(&["EXEC"]), b"*-1\r\n");
    assert_bytes(a.cmd(&["GET", "w"]), bulk("theirs"));

    // Unmodified: EXEC runs.
    assert_bytes(a.cmd(&["WATCH", "w"]), OK);
    assert_bytes(a.cmd(&["MULTI"]), OK);
    assert_bytes(a.cmd(&["SET", "w", "mine"]), QUEUED);
    assert_bytes(a.cmd(&["EXEC"]), b"*1\r\n+OK\r\n");
    assert_bytes(b.cmd(&["GET", "w"]), bulk("mine"));

    // UNWATCH forgets the watch.
    assert_bytes(a.cmd(&["WATCH", "w"]), OK);
    assert_bytes(b.cmd(&["SET", "w", "again"]), OK);
    assert_bytes(a.cmd(&["UNWATCH"]), OK);
    assert_bytes(a.cmd(&["MULTI"]), OK);
    assert_bytes(a.cmd(&["SET", "w", "final"]), QUEUED);
    assert_bytes(a.cmd(&["EXEC"]), b"*1\r\n+OK\r\n");
    assert_bytes(b.cmd(&["GET", "w"]), bulk("final"));

    assert_bytes(a.cmd(&["MULTI"]), OK);
    assert_bytes(
        a.cmd(&["WATCH", "w"]),
        b"-ERR WATCH inside MULTI is not allowed\r\n",
    );
    assert_bytes(a.cmd(&["DISCARD"]), OK);
}

// ---------------------------------------------------------------------------------------
// Blocking commands
// ---------------------------------------------------------------------------------------

#[test]
fn blpop_is_woken_by_another_clients_rpush() {
    let (server, proxy) = Cutover::with_server();
    let mut a = proxy.wire();
    let mut b = proxy.wire();
    let mut c = proxy.wire();

    a.send_cmd(&["BLPOP", "queue", "0"]);
    poll_until(WAIT, || blocked_clients(&server) == 1);

    // Other clients keep working while `a` is blocked.
    assert_bytes(c.cmd(&["PING"]), PONG);
    assert_bytes(c.cmd(&["SET", "x", "1"]), OK);

    assert_bytes(b.cmd(&["RPUSH", "queue", "hello"]), int(1));
    assert_bytes(a.read_reply(), b"*2\r\n$5\r\nqueue\r\n$5\r\nhello\r\n");
    assert_bytes(b.cmd(&["LLEN", "queue"]), int(0));

    // `a` is an ordinary client again.
    assert_bytes(a.cmd(&["GET", "x"]), bulk("1"));
    // A timed-out BLPOP answers a null array.
    assert_bytes(a.cmd(&["BLPOP", "nothing", "0.05"]), b"*-1\r\n");
    assert_bytes(a.cmd(&["PING"]), PONG);
    poll_until(WAIT, || blocked_clients(&server) == 0);
}

#[test]
fn xread_block_is_woken_by_xadd() {
    let (server, proxy) = Cutover::with_server();
    let mut a = proxy.wire();
    let mut b = proxy.wire();
    assert_prefix(b.cmd(&["XADD", "s", "1-1", "f", "old"]), "$3\r\n1-1");
    a.send_cmd(&["XREAD", "BLOCK", "0", "STREAMS", "s", "$"]);
    poll_until(WAIT, || blocked_clients(&server) == 1);
    assert_bytes(b.cmd(&["XADD", "s", "2-1", "f", "new"]), bulk("2-1"));
    assert_bytes(
        a.read_reply(),
        b"*1\r\n*2\r\n$1\r\ns\r\n*1\r\n*2\r\n$3\r\n2-1\r\n*2\r\n$1\r\nf\r\n$3\r\nnew\r\n",
    );
    assert_bytes(a.cmd(&["XLEN", "s"]), int(2));
}

// ---------------------------------------------------------------------------------------
// Pub/sub
// ---------------------------------------------------------------------------------------

#[test]
fn pubsub_resp2_subscribe_psubscribe_then_back_to_normal() {
    let (_server, proxy) = Cutover::with_server();
    let mut sub = proxy.wire();
    let mut publ = proxy.wire();

    sub.send_cmd(&["SUBSCRIBE", "ch1", "ch2"]);
    assert_bytes(
        sub.read_reply(),
        b"*3\r\n$9\r\nsubscribe\r\n$3\r\nch1\r\n:1\r\n",
    );
    assert_bytes(
        sub.read_reply(),
        b"*3\r\n$9\r\nsubscribe\r\n$3\r\nch2\r\n:2\r\n",
    );
    assert_bytes(
        sub.cmd(&["PSUBSCRIBE", "news.*"]),
        b"*3\r\n$10\r\npsubscribe\r\n$6\r\nnews.*\r\n:3\r\n",
    );

    assert_bytes(publ.cmd(&["PUBLISH", "ch1", "hi"]), int(1));
    assert_bytes(
        sub.read_reply(),
        b"*3\r\n$7\r\nmessage\r\n$3\r\nch1\r\n$2\r\nhi\r\n",
    );
    assert_bytes(publ.cmd(&["PUBLISH", "news.tech", "yo"]), int(1));
    assert_bytes(
        sub.read_reply(),
        b"*4\r\n$8\r\npmessage\r\n$6\r\nnews.*\r\n$9\r\nnews.tech\r\n$2\r\nyo\r\n",
    );
    assert_bytes(publ.cmd(&["PUBLISH", "nobody", "x"]), int(0));

    // In subscribed mode, RESP2 allows only a few commands.
    assert_bytes(
        sub.cmd(&["GET", "x"]),
        &b"-ERR Can't execute 'get': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context\r\n"[..],
    );
    assert_bytes(sub.cmd(&["PING"]), b"*2\r\n$4\r\npong\r\n$0\r\n\r\n");

    // Unsubscribe from everything (Redis picks the order of the two channels).
    sub.send_cmd(&["UNSUBSCRIBE"]);
    let mut seen = HashSet::new();
    let mut counts = Vec::new();
    for _ in 0..2 {
        let v = sub.read_value();
        let items = v.items();
        assert_eq!(items[0].bytes(), b"unsubscribe");
        seen.insert(items[1].text());
        counts.push(items[2].int());
    }
    assert_eq!(seen, HashSet::from(["ch1".to_string(), "ch2".to_string()]));
    assert_eq!(counts, vec![2, 1]);
    assert_bytes(
        sub.cmd(&["PUNSUBSCRIBE"]),
        b"*3\r\n$12\r\npunsubscribe\r\n$6\r\nnews.*\r\n:0\r\n",
    );

    // Back to normal on the same connection.
    assert_bytes(sub.cmd(&["SET", "x", "1"]), OK);
    assert_bytes(sub.cmd(&["GET", "x"]), bulk("1"));
    assert_bytes(sub.cmd(&["PING"]), PONG);
    // Nobody listens any more.
    assert_bytes(publ.cmd(&["PUBLISH", "ch1", "gone"]), int(0));
    assert_bytes(publ.cmd(&["PUBLISH", "news.tech", "gone"]), int(0));
}

#[test]
fn pubsub_resp3_pushes_and_normal_commands() {
    let (_server, proxy) = Cutover::with_server();
    let mut sub = proxy.wire();
    let mut publ = proxy.wire();
    assert_prefix(sub.cmd(&["HELLO", "3"]), "%");
    assert_bytes(
        sub.cmd(&["SUBSCRIBE", "c3"]),
        b">3\r\n$9\r\nsubscribe\r\n$2\r\nc3\r\n:1\r\n",
    );
    // RESP3 allows any command while subscribed.
    assert_bytes(sub.cmd(&["GET", "nokey"]), b"_\r\n");
    assert_bytes(sub.cmd(&["PING"]), PONG);
    assert_bytes(publ.cmd(&["PUBLISH", "c3", "m"]), int(1));
    assert_bytes(
        sub.read_reply(),
        b">3\r\n$7\r\nmessage\r\n$2\r\nc3\r\n$1\r\nm\r\n",
    );
    assert_bytes(
        sub.cmd(&["UNSUBSCRIBE", "c3"]),
        b">3\r\n$11\r\nunsubscribe\r\n$2\r\nc3\r\n:0\r\n",
    );
    assert_bytes(publ.cmd(&["PUBLISH", "c3", "m"]), int(0));
    assert_bytes(sub.cmd(&["SET", "k", "v"]), OK);
}

// ---------------------------------------------------------------------------------------
// Scripting
// ---------------------------------------------------------------------------------------

#[test]
fn eval_evalsha_and_noscript() {
    let (_server, proxy) = Cutover::with_server();
    let mut a = proxy.wire();
    assert_bytes(
        a.cmd(&[
            "EVAL",
            "return redis.call('SET', KEYS[1], ARGV[1])",
            "1",
            "ek",
            "ev",
        ]),
        OK,
    );
    assert_bytes(a.cmd(&["GET", "ek"]), bulk("ev"));
    assert_bytes(
        a.cmd(&["EVAL", "return {1, 'two', {3, false}}", "0"]),
        b"*3\r\n:1\r\n$3\r\ntwo\r\n*2\r\n:3\r\n$-1\r\n",
    );
    assert_bytes(
        a.cmd(&["EVAL", "return redis.error_reply('my error')", "0"]),
        b"-my error\r\n",
    );

    let sha = a.value(&["SCRIPT", "LOAD", "return ARGV[1] .. KEYS[1]"]);
    let sha = sha.text();
    assert_eq!(sha.len(), 40, "SHA1 hex: {sha}");
    assert_bytes(a.cmd(&["EVALSHA", &sha, "1", "k", "v"]), bulk("vk"));
    // A script loaded by one client is usable by another.
    let mut b = proxy.wire();
    assert_bytes(b.cmd(&["EVALSHA", &sha, "1", "K", "V"]), bulk("VK"));
    assert_bytes(
        b.cmd(&["EVALSHA", "ffffffffffffffffffffffffffffffffffffffff", "0"]),
        b"-NOSCRIPT No matching script. Please use EVAL.\r\n",
    );

    // Functions.
    assert_bytes(
        b.cmd(&[
            "FUNCTION",
            "LOAD",
            "#!lua name=testlib\nredis.register_function('echo1', function(keys, args) return args[1] end)",
        ]),
        bulk("testlib"),
    );
    assert_bytes(
        a.cmd(&["FCALL", "echo1", "0", "via-function"]),
        bulk("via-function"),
    );

    // Scripts run in the client's db.
    assert_bytes(b.cmd(&["SELECT", "2"]), OK);
    assert_bytes(
        b.cmd(&["EVAL", "return redis.call('GET', KEYS[1])", "1", "ek"]),
        NIL,
    );
    assert_bytes(
        a.cmd(&["EVAL", "return redis.call('GET', KEYS[1])", "1", "ek"]),
        bulk("ev"),
    );
}

// ---------------------------------------------------------------------------------------
// CLIENT
// ---------------------------------------------------------------------------------------

#[test]
fn client_setname_getname_and_id_are_per_client() {
    let (_server, proxy) = Cutover::with_server();
    let mut a = proxy.wire();
    let mut b = proxy.wire();

    assert_bytes(a.cmd(&["CLIENT", "GETNAME"]), NIL);
    assert_bytes(a.cmd(&["CLIENT", "SETNAME", "alpha"]), OK);
    assert_bytes(b.cmd(&["CLIENT", "GETNAME"]), NIL);
    assert_bytes(b.cmd(&["CLIENT", "SETNAME", "beta"]), OK);
    assert_bytes(a.cmd(&["CLIENT", "GETNAME"]), bulk("alpha"));
    assert_bytes(b.cmd(&["CLIENT", "GETNAME"]), bulk("beta"));
    assert_bytes(
        a.cmd(&["CLIENT", "SETNAME", "has space"]),
        b"-ERR Client names cannot contain spaces, newlines or special characters.\r\n",
    );
    assert_bytes(a.cmd(&["CLIENT", "GETNAME"]), bulk("alpha"));

    // Distinct, stable ids.
    let id_a = a.value(&["CLIENT", "ID"]).int();
    let id_b = b.value(&["CLIENT", "ID"]).int();
    assert_ne!(id_a, id_b);
    assert_eq!(a.value(&["CLIENT", "ID"]).int(), id_a);
    let mut ids = HashSet::from([id_a, id_b]);
    for _ in 0..10 {
        let mut w = proxy.wire();
        assert!(
            ids.insert(w.value(&["CLIENT", "ID"]).int()),
            "CLIENT ID repeated"
        );
    }

    // CLIENT INFO describes this client.
    let info = a.value(&["CLIENT", "INFO"]).text();
    assert!(info.contains(&format!("id={id_a} ")), "CLIENT INFO: {info}");
    assert!(info.contains(" name=alpha "), "CLIENT INFO: {info}");
    assert!(info.contains(" db=0 "), "CLIENT INFO: {info}");

    // An empty name clears it.
    assert_bytes(a.cmd(&["CLIENT", "SETNAME", ""]), OK);
    assert_bytes(a.cmd(&["CLIENT", "GETNAME"]), NIL);
    assert_bytes(b.cmd(&["CLIENT", "GETNAME"]), bulk("beta"));
}

// ---------------------------------------------------------------------------------------
// SCAN
// ---------------------------------------------------------------------------------------

fn scan_all(w: &mut Wire, extra: &[&str]) -> HashSet<Vec<u8>> {
    let mut keys = HashSet::new();
    let mut cursor = "0".to_string();
    for _ in 0..100_000 {
        let mut args = vec!["SCAN", cursor.as_str()];
        args.extend_from_slice(extra);
        let reply = w.value(&args);
        let items = reply.items();
        let next = items[0].text();
        for k in items[1].items() {
            keys.insert(k.bytes().to_vec());
        }
        if next == "0" {
            return keys;
        }
        cursor = next;
    }
    panic!("SCAN did not finish");
}

#[test]
fn scan_visits_every_key_in_the_clients_db() {
    let (_server, proxy) = Cutover::with_server();
    let mut a = proxy.wire();
    let mut batch = Vec::new();
    let mut expected = HashSet::new();
    for i in 0..1000 {
        let key = format!("key:{i}");
        encode_into(&mut batch, &["SET", &key, "v"]);
        expected.insert(key.into_bytes());
    }
    a.send(&batch);
    for _ in 0..1000 {
        assert_bytes(a.read_reply(), OK);
    }
    // Some keys elsewhere must not show up.
    let mut b = proxy.wire();
    assert_bytes(b.cmd(&["SELECT", "4"]), OK);
    for i in 0..50 {
        assert_bytes(b.cmd(&["SET", &format!("other:{i}"), "v"]), OK);
    }

    assert_eq!(scan_all(&mut a, &["COUNT", "97"]), expected);
    assert_eq!(scan_all(&mut b, &[]).len(), 50);
    let ones = scan_all(&mut a, &["MATCH", "key:1*", "COUNT", "500"]);
    assert_eq!(ones.len(), 111); // key:1, key:10..19, key:100..199
}

// ---------------------------------------------------------------------------------------
// HELLO / RESP3
// ---------------------------------------------------------------------------------------

fn hello_field<'a>(v: &'a Value, name: &str) -> &'a Value {
    match v {
        Value::Map(pairs) => pairs
            .iter()
            .find(|(k, _)| k.bytes() == name.as_bytes())
            .map(|(_, v)| v),
        Value::Array(items) => items
            .chunks(2)
            .find(|kv| kv[0].bytes() == name.as_bytes())
            .map(|kv| &kv[1]),
        other => panic!("HELLO reply is neither map nor array: {other:?}"),
    }
    .unwrap_or_else(|| panic!("HELLO reply has no {name}: {v:?}"))
}

#[test]
fn hello_3_switches_to_resp3_and_hello_2_back() {
    let (_server, proxy) = Cutover::with_server();
    let mut a = proxy.wire();
    assert_bytes(a.cmd(&["HSET", "h", "f", "v"]), int(1));
    assert_bytes(a.cmd(&["SADD", "s", "m"]), int(1));

    let hello = a.value(&["HELLO", "3"]);
    assert!(
        matches!(hello, Value::Map(_)),
        "HELLO 3 gives a map: {hello:?}"
    );
    assert_eq!(hello_field(&hello, "proto"), &Value::Int(3));
    let id = a.value(&["CLIENT", "ID"]).int();
    assert_eq!(
        hello_field(&hello, "id"),
        &Value::Int(id),
        "HELLO id vs CLIENT ID"
    );
    // CLIENT INFO is a verbatim string in RESP3.
    assert_prefix(a.cmd(&["CLIENT", "INFO"]), "=");
    // Transactions carry RESP3 replies.
    assert_bytes(a.cmd(&["MULTI"]), OK);
    assert_bytes(a.cmd(&["HGETALL", "h"]), QUEUED);
    assert_bytes(a.cmd(&["GET", "missing"]), QUEUED);
    assert_bytes(a.cmd(&["EXEC"]), b"*2\r\n%1\r\n$1\r\nf\r\n$1\r\nv\r\n_\r\n");
    assert_eq!(hello_field(&hello, "server").text(), "redis");
    assert!(!hello_field(&hello, "version").text().is_empty());
    assert_bytes(a.cmd(&["HGETALL", "h"]), b"%1\r\n$1\r\nf\r\n$1\r\nv\r\n");
    assert_bytes(a.cmd(&["GET", "missing"]), b"_\r\n");
    assert_bytes(a.cmd(&["SMEMBERS", "s"]), b"~1\r\n$1\r\nm\r\n");
    assert_bytes(a.cmd(&["ZADD", "z", "1.5", "x"]), int(1));
    assert_bytes(a.cmd(&["ZSCORE", "z", "x"]), b",1.5\r\n");

    // Another client stays on RESP2 meanwhile.
    let mut b = proxy.wire();
    assert_bytes(b.cmd(&["HGETALL", "h"]), b"*2\r\n$1\r\nf\r\n$1\r\nv\r\n");
    assert_bytes(b.cmd(&["GET", "missing"]), NIL);

    let hello = a.value(&["HELLO", "2"]);
    assert!(
        matches!(hello, Value::Array(_)),
        "HELLO 2 gives an array: {hello:?}"
    );
    assert_eq!(hello_field(&hello, "proto"), &Value::Int(2));
    assert_bytes(a.cmd(&["HGETALL", "h"]), b"*2\r\n$1\r\nf\r\n$1\r\nv\r\n");
    assert_bytes(a.cmd(&["GET", "missing"]), NIL);
    assert_bytes(a.cmd(&["ZSCORE", "z", "x"]), bulk("1.5"));

    assert_bytes(
        a.cmd(&["HELLO", "4"]),
        b"-NOPROTO unsupported protocol version\r\n",
    );
    // HELLO without a version reports the current one.
    assert_eq!(hello_field(&a.value(&["HELLO"]), "proto"), &Value::Int(2));
}

/// A RESP3 client and a RESP2 client pipelining at the same time each get their own
/// encoding.
#[test]
fn resp2_and_resp3_clients_concurrently() {
    let (_server, proxy) = Cutover::with_server();
    let mut setup = proxy.wire();
    assert_bytes(setup.cmd(&["HSET", "h", "f", "v"]), int(1));
    let handles: Vec<_> = [2, 3, 2, 3]
        .into_iter()
        .map(|proto| {
            let mut w = proxy.wire();
            thread::spawn(move || {
                assert_prefix(
                    w.cmd(&["HELLO", &proto.to_string()]),
                    if proto == 3 { "%" } else { "*" },
                );
                let (hgetall, nil): (&[u8], &[u8]) = if proto == 3 {
                    (b"%1\r\n$1\r\nf\r\n$1\r\nv\r\n", b"_\r\n")
                } else {
                    (b"*2\r\n$1\r\nf\r\n$1\r\nv\r\n", NIL)
                };
                for _ in 0..20 {
                    let mut batch = Vec::new();
                    for _ in 0..25 {
                        encode_into(&mut batch, &["HGETALL", "h"]);
                        encode_into(&mut batch, &["GET", "missing"]);
                    }
                    w.send(&batch);
                    for _ in 0..25 {
                        assert_bytes(w.read_reply(), hgetall);
                        assert_bytes(w.read_reply(), nil);
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("client thread");
    }
}

// ---------------------------------------------------------------------------------------
// Inline, binary, large, pipelined
// ---------------------------------------------------------------------------------------

#[test]
fn inline_commands() {
    let (_server, proxy) = Cutover::with_server();
    let mut a = proxy.wire();
    a.send(b"PING\r\n");
    assert_bytes(a.read_reply(), PONG);
    a.send(b"SET a b\r\n");
    assert_bytes(a.read_reply(), OK);
    a.send(b"GET a\r\n");
    assert_bytes(a.read_reply(), bulk("b"));
    // Quoting and escapes.
    a.send(b"SET \"key with space\" \"va\\x41\\n\\\"q\"\r\n");
    assert_bytes(a.read_reply(), OK);
    assert_bytes(a.cmd(&["GET", "key with space"]), bulk("vaA\n\"q"));
    a.send(b"ECHO 'single quoted'\r\n");
    assert_bytes(a.read_reply(), bulk("single quoted"));
    // Long inline commands (under the 64 KiB limit).
    let long = "x".repeat(60_000);
    a.send(format!("ECHO {long}\r\n").as_bytes());
    assert_bytes(a.read_reply(), bulk(&long));
    // LF-only line ends, several per write, mixed with multibulk.
    let mut batch = b"PING\nECHO x\r\n".to_vec();
    batch.extend_from_slice(&encode(&["ECHO", "y"]));
    batch.extend_from_slice(b"   ECHO   spaced   \r\n");
    a.send(&batch);
    assert_bytes(a.read_reply(), PONG);
    assert_bytes(a.read_reply(), bulk("x"));
    assert_bytes(a.read_reply(), bulk("y"));
    assert_bytes(a.read_reply(), bulk("spaced"));
}

#[test]
fn binary_keys_and_values_are_byte_exact() {
    let (server, proxy) = Cutover::with_server();
    let mut a = proxy.wire();
    let key: &[u8] = b"bin\0key\r\n$3\r\n*1\r\n\xff\xfe";
    let value: Vec<u8> = (0..=255u8).cycle().take(1024).collect();
    assert_bytes(a.cmd(&[b"SET".as_slice(), key, &value]), OK);
    assert_bytes(a.cmd(&[b"GET".as_slice(), key]), bulk(&value));
    assert_bytes(a.cmd(&[b"STRLEN".as_slice(), key]), int(1024));
    assert_bytes(a.cmd(&[b"APPEND".as_slice(), key, b"\r\n"]), int(1026));
    let mut longer = value.clone();
    longer.extend_from_slice(b"\r\n");
    assert_bytes(
        a.cmd(&[b"MGET".as_slice(), key, b"\xc3\x28missing"]),
        [b"*2\r\n".to_vec(), bulk(&longer), NIL.to_vec()].concat(),
    );
    assert_bytes(
        a.cmd(&[b"HSET".as_slice(), b"h\0", b"\0f\r\n", b"\n"]),
        int(1),
    );
    assert_bytes(
        a.cmd(&[b"HGETALL".as_slice(), b"h\0"]),
        [b"*2\r\n".to_vec(), bulk(b"\0f\r\n"), bulk(b"\n")].concat(),
    );
    assert_bytes(a.cmd(&[b"SET".as_slice(), b"", b""]), OK);
    assert_bytes(a.cmd(&[b"GET".as_slice(), b""]), b"$0\r\n\r\n");
    // The server stored exactly these bytes.
    assert_bytes(server.cmd(&[b"GET".as_slice(), key]), bulk(&longer));
}

#[test]
fn large_values_and_replies() {
    let (_server, proxy) = Cutover::with_server();
    let mut a = proxy.wire();
    let big: Vec<u8> = (0..(1 << 20))
        .map(|i: u32| (i.wrapping_mul(31) % 251) as u8)
        .collect();
    assert_bytes(a.cmd(&[b"SET".as_slice(), b"big", &big]), OK);
    assert_bytes(a.cmd(&["STRLEN", "big"]), int(1 << 20));
    let reply = a.cmd(&["GET", "big"]);
    assert_eq!(reply.len(), big.len() + 12);
    assert!(reply == bulk(&big), "1 MiB value differs");
    // Commands after the big one are still in step.
    assert_bytes(a.cmd(&["PING"]), PONG);

    // A reply with many elements.
    let mut batch = Vec::new();
    let mut args: Vec<String> = vec!["RPUSH".into(), "list".into()];
    args.extend((0..10_000).map(|i| format!("item-{i}")));
    encode_into(&mut batch, &args);
    a.send(&batch);
    assert_bytes(a.read_reply(), int(10_000));
    let list = a.value(&["LRANGE", "list", "0", "-1"]);
    let items = list.items();
    assert_eq!(items.len(), 10_000);
    assert_eq!(items[9_999].text(), "item-9999");
}

#[test]
fn twenty_thousand_command_pipeline_in_one_write() {
    let (_server, proxy) = Cutover::with_server();
    let mut a = proxy.wire();
    let mut batch = Vec::new();
    for i in 0..10_000 {
        encode_into(&mut batch, &["INCR", "ctr"]);
        encode_into(&mut batch, &["ECHO", &i.to_string()]);
    }
    let writer = a.send_in_background(batch);
    for i in 0..10_000i64 {
        let r = a.read_reply();
        if r != int(i + 1) {
            panic!(
                "reply {} of INCR: expected :{}, got {}",
                2 * i,
                i + 1,
                show(&r)
            );
        }
        let r = a.read_reply();
        if r != bulk(i.to_string()) {
            panic!("reply {} of ECHO {i}: got {}", 2 * i + 1, show(&r));
        }
    }
    writer.join().unwrap().expect("write the pipeline");
    assert_bytes(a.cmd(&["GET", "ctr"]), bulk("10000"));
}

#[test]
fn hundred_thousand_command_pipeline() {
    let (_server, proxy) = Cutover::with_server();
    let mut a = proxy.wire();
    let mut batch = Vec::new();
    for i in 0..50_000 {
        encode_into(&mut batch, &["SET", &format!("p:{i}"), &i.to_string()]);
        encode_into(&mut batch, &["GET", &format!("p:{}", i / 2)]);
    }
    let writer = a.send_in_background(batch);
    for i in 0..50_000 {
        let r = a.read_reply();
        if r != OK {
            panic!("reply {} (SET p:{i}): {}", 2 * i, show(&r));
        }
        let r = a.read_reply();
        if r != bulk((i / 2).to_string()) {
            panic!("reply {} (GET p:{}): {}", 2 * i + 1, i / 2, show(&r));
        }
    }
    writer.join().unwrap().expect("write the pipeline");
    assert_bytes(a.cmd(&["DBSIZE"]), int(50_000));
}

#[test]
fn a_thousand_clients_at_once() {
    let (_server, proxy) = Cutover::with_server();
    let mut clients: Vec<Wire> = (0..1000).map(|_| proxy.wire()).collect();
    for (i, w) in clients.iter_mut().enumerate() {
        w.send(&encode(&["SET", &format!("c{i}"), &i.to_string()]));
    }
    for w in clients.iter_mut() {
        assert_bytes(w.read_reply(), OK);
    }
    for (i, w) in clients.iter_mut().enumerate().rev() {
        assert_bytes(w.cmd(&["GET", &format!("c{i}")]), bulk(i.to_string()));
    }
}

/// Every request split into 1-byte writes (exercises every partial-frame path).
#[test]
fn requests_split_into_single_bytes() {
    let (_server, proxy) = Cutover::with_server();
    let mut a = proxy.wire();
    let mut batch = encode(&["SET", "split", "a\r\nb"]);
    batch.extend_from_slice(b"PING\r\n");
    batch.extend_from_slice(&encode(&["GET", "split"]));
    batch.extend_from_slice(&encode(&["MGET", "split", "nope"]));
    for b in &batch {
        a.send(std::slice::from_ref(b));
    }
    assert_bytes(a.read_reply(), OK);
    assert_bytes(a.read_reply(), PONG);
    assert_bytes(a.read_reply(), bulk("a\r\nb"));
    assert_bytes(a.read_reply(), b"*2\r\n$4\r\na\r\nb\r\n$-1\r\n");
}

#[test]
fn mset_mget_200_keys() {
    let (_server, proxy) = Cutover::with_server();
    let mut a = proxy.wire();
    let mut mset: Vec<String> = vec!["MSET".into()];
    let mut mget: Vec<String> = vec!["MGET".into()];
    let mut expected = b"*201\r\n".to_vec();
    for i in 0..200 {
        mset.push(format!("mk:{i}"));
        mset.push(format!("value-{i}"));
        mget.push(format!("mk:{i}"));
        expected.extend_from_slice(&bulk(format!("value-{i}")));
    }
    mget.push("mk:missing".into());
    expected.extend_from_slice(NIL);
    assert_bytes(a.cmd(&mset), OK);
    assert_bytes(a.cmd(&mget), &expected);
    let mut del = mget.clone();
    del[0] = "DEL".into();
    assert_bytes(a.cmd(&del), int(200));
    let mut exists = mget;
    exists[0] = "EXISTS".into();
    assert_bytes(a.cmd(&exists), int(0));
}

// ---------------------------------------------------------------------------------------
// QUIT / RESET
// ---------------------------------------------------------------------------------------

#[test]
fn quit_replies_ok_and_closes() {
    let (_server, proxy) = Cutover::with_server();
    let mut a = proxy.wire();
    assert_bytes(a.cmd(&["SET", "q", "1"]), OK);
    assert_bytes(a.cmd(&["QUIT"]), OK);
    a.expect_closed();

    // Commands pipelined before QUIT are answered, those after it are not.
    let mut p = proxy.wire();
    let mut batch = encode(&["INCR", "q"]);
    encode_into(&mut batch, &["GET", "q"]);
    encode_into(&mut batch, &["QUIT"]);
    encode_into(&mut batch, &["INCR", "q"]);
    p.send(&batch);
    assert_bytes(p.read_reply(), int(2));
    assert_bytes(p.read_reply(), bulk("2"));
    assert_bytes(p.read_reply(), OK);
    p.expect_closed();
    assert_bytes(proxy.wire().cmd(&["DECR", "q"]), int(1));

    // Commands pipelined after QUIT are not answered.
    let mut b = proxy.wire();
    let mut batch = encode(&["QUIT"]);
    batch.extend_from_slice(&encode(&["SET", "q", "2"]));
    b.send(&batch);
    assert_bytes(b.read_reply(), OK);
    b.expect_closed();

    let mut c = proxy.wire();
    assert_bytes(c.cmd(&["GET", "q"]), bulk("1"));
}

#[test]
fn reset_restores_a_fresh_session() {
    let (_server, proxy) = Cutover::with_server();
    let mut a = proxy.wire();
    let mut b = proxy.wire();
    assert_bytes(a.cmd(&["HSET", "h", "f", "v"]), int(1));
    assert_bytes(a.cmd(&["SELECT", "2"]), OK);
    assert_bytes(a.cmd(&["SET", "r", "in2"]), OK);
    assert_bytes(a.cmd(&["CLIENT", "SETNAME", "named"]), OK);
    assert_prefix(a.cmd(&["HELLO", "3"]), "%");
    assert_bytes(a.cmd(&["RESET"]), b"+RESET\r\n");
    assert_bytes(a.cmd(&["CLIENT", "GETNAME"]), NIL); // RESP2 again, no name
    assert_bytes(a.cmd(&["GET", "r"]), NIL); // db 0 again
    assert_bytes(a.cmd(&["HGETALL", "h"]), b"*2\r\n$1\r\nf\r\n$1\r\nv\r\n");

    // RESET discards a transaction.
    assert_bytes(a.cmd(&["MULTI"]), OK);
    assert_bytes(a.cmd(&["SET", "x", "1"]), QUEUED);
    assert_bytes(a.cmd(&["RESET"]), b"+RESET\r\n");
    assert_bytes(a.cmd(&["EXEC"]), b"-ERR EXEC without MULTI\r\n");
    assert_bytes(a.cmd(&["GET", "x"]), NIL);

    // RESET leaves subscribed mode.
    assert_bytes(
        a.cmd(&["SUBSCRIBE", "rc"]),
        b"*3\r\n$9\r\nsubscribe\r\n$2\r\nrc\r\n:1\r\n",
    );
    assert_bytes(a.cmd(&["RESET"]), b"+RESET\r\n");
    assert_bytes(b.cmd(&["PUBLISH", "rc", "x"]), int(0));
    assert_bytes(a.cmd(&["PING"]), PONG);
    assert_bytes(a.cmd(&["SET", "x", "2"]), OK);

    // RESET leaves MONITOR mode.
    assert_bytes(a.cmd(&["MONITOR"]), OK);
    assert_bytes(a.cmd(&["RESET"]), b"+RESET\r\n");
    assert_bytes(b.cmd(&["SET", "after-monitor", "1"]), OK);
    assert_bytes(a.cmd(&["PING"]), PONG);

    // RESET ends a WATCH.
    assert_bytes(a.cmd(&["WATCH", "x"]), OK);
    assert_bytes(a.cmd(&["RESET"]), b"+RESET\r\n");
    assert_bytes(b.cmd(&["SET", "x", "3"]), OK);
    assert_bytes(a.cmd(&["MULTI"]), OK);
    assert_bytes(a.cmd(&["GET", "x"]), QUEUED);
    assert_bytes(a.cmd(&["EXEC"]), b"*1\r\n$1\r\n3\r\n");
}

// ---------------------------------------------------------------------------------------
// Replication commands (proxy-only: Redis itself accepts them)
// ---------------------------------------------------------------------------------------

#[test]
fn sync_psync_replconf_are_refused() {
    if support::skip_direct("Redis accepts SYNC/PSYNC/REPLCONF") {
        return;
    }
    let (server, proxy) = Cutover::with_server();
    let mut bystander = proxy.wire();
    for args in [
        &["SYNC"][..],
        &["PSYNC", "?", "-1"],
        &["REPLCONF", "listening-port", "1234"],
        &["REPLCONF", "capa", "psync2"],
    ] {
        let mut w = proxy.wire();
        let reply = w.cmd(args);
        assert_prefix(&reply, "-");
        assert_bytes(bystander.cmd(&["PING"]), PONG);
    }
    assert_eq!(
        server
            .info_field("replication", "connected_slaves")
            .as_deref(),
        Some("0"),
        "the server gained a replica through the proxy"
    );
    // The refusal also holds inline.
    let mut w = proxy.wire();
    w.send(b"SYNC\r\n");
    assert_prefix(w.read_reply(), "-");
}

// ---------------------------------------------------------------------------------------
// CLIENT TRACKING, MONITOR
// ---------------------------------------------------------------------------------------

#[test]
fn client_tracking_resp3_invalidation_push() {
    let (_server, proxy) = Cutover::with_server();
    let mut a = proxy.wire();
    let mut b = proxy.wire();
    assert_bytes(b.cmd(&["SET", "tk", "v1"]), OK);
    assert_prefix(a.cmd(&["HELLO", "3"]), "%");
    assert_bytes(a.cmd(&["CLIENT", "TRACKING", "on"]), OK);
    assert_bytes(a.cmd(&["GET", "tk"]), bulk("v1"));
    assert_bytes(b.cmd(&["SET", "tk", "v2"]), OK);
    assert_bytes(
        a.read_reply(),
        b">2\r\n$10\r\ninvalidate\r\n*1\r\n$2\r\ntk\r\n",
    );
    // The tracking client carries on normally.
    assert_bytes(a.cmd(&["GET", "tk"]), bulk("v2"));
    assert_bytes(a.cmd(&["CLIENT", "TRACKING", "off"]), OK);
    assert_bytes(b.cmd(&["SET", "tk", "v3"]), OK);
    assert_bytes(a.cmd(&["GET", "tk"]), bulk("v3"));
}

#[test]
fn monitor_sees_another_clients_commands() {
    let (_server, proxy) = Cutover::with_server();
    let mut mon = proxy.wire();
    let mut b = proxy.wire();
    assert_bytes(mon.cmd(&["MONITOR"]), OK);
    assert_bytes(b.cmd(&["SET", "monitored:key", "42"]), OK);
    for _ in 0..100 {
        let line = mon.read_reply();
        assert_prefix(&line, "+");
        if line
            .windows(b"\"SET\" \"monitored:key\" \"42\"".len())
            .any(|w| w == b"\"SET\" \"monitored:key\" \"42\"")
        {
            return;
        }
    }
    panic!("MONITOR never showed the SET");
}

// ---------------------------------------------------------------------------------------
// Faults
// ---------------------------------------------------------------------------------------

/// Clients that write 10k commands and close without reading must not disturb a client
/// running commands at the same time.
#[test]
fn client_killed_mid_pipeline_does_not_disturb_others() {
    let (_server, proxy) = Cutover::with_server();
    let addr = proxy.addr();
    let mut steady = proxy.wire();
    let killers = thread::spawn(move || {
        for round in 0..3 {
            let mut w = Wire::connect(addr);
            let mut batch = Vec::new();
            for i in 0..10_000 {
                encode_into(
                    &mut batch,
                    &["SET", &format!("kill:{round}:{i}"), "xxxxxxxxxxxxxxxx"],
                );
                encode_into(&mut batch, &["INCR", "killer-ctr"]);
            }
            // Write everything (or as much as the proxy accepts) and hang up unread.
            let _ = w.stream().set_write_timeout(Some(Duration::from_secs(5)));
            let _ = w.try_send(&batch);
            drop(w);
        }
    });
    let mut n = 0i64;
    while n < 6_000 {
        let mut batch = Vec::new();
        for i in 0..100 {
            encode_into(&mut batch, &["INCR", "steady-ctr"]);
            encode_into(&mut batch, &["ECHO", &format!("e{}", n + i)]);
        }
        steady.send(&batch);
        for i in 0..100 {
            assert_bytes(steady.read_reply(), int(n + i + 1));
            assert_bytes(steady.read_reply(), bulk(format!("e{}", n + i)));
        }
        n += 100;
    }
    killers.join().expect("killer thread");
    assert_bytes(steady.cmd(&["INCR", "steady-ctr"]), int(6_001));
    let mut fresh = proxy.wire();
    assert_bytes(fresh.cmd(&["GET", "steady-ctr"]), bulk("6001"));
    assert_bytes(fresh.cmd(&["PING"]), PONG);
}

/// True when a fresh client can write and read back through the proxy.
fn works_again(proxy: &Cutover, key: &str, value: &str) -> bool {
    let Ok(mut w) = Wire::try_connect(proxy.addr()) else {
        return false;
    };
    w.set_timeout(Duration::from_secs(2));
    matches!(w.try_cmd(&["SET", key, value]), Ok(r) if r == OK)
        && matches!(w.try_cmd(&["GET", key]), Ok(r) if r == bulk(value))
}

#[test]
fn backend_connections_killed_then_proxy_recovers() {
    let (server, proxy) = Cutover::with_server();
    let mut a = proxy.wire();
    assert_bytes(a.cmd(&["SET", "before", "1"]), OK);
    let mut m = proxy.wire();
    assert_bytes(
        m.cmd(&["SUBSCRIBE", "ch"]),
        b"*3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n",
    );

    let killed = server
        .wire()
        .value(&["CLIENT", "KILL", "TYPE", "normal"])
        .int();
    assert!(killed >= 1, "nothing was connected to the server");
    let killed = server
        .wire()
        .value(&["CLIENT", "KILL", "TYPE", "pubsub"])
        .int();
    assert!(killed <= 1);

    poll_until(WAIT, || works_again(&proxy, "after", "2"));
    let mut b = proxy.wire();
    assert_bytes(b.cmd(&["GET", "before"]), bulk("1"));
    assert_bytes(b.cmd(&["SELECT", "1"]), OK);
    assert_bytes(b.cmd(&["GET", "before"]), NIL);
}

#[test]
fn backend_restarted_then_proxy_recovers() {
    let (mut server, proxy) = Cutover::with_server();
    let mut a = proxy.wire();
    assert_bytes(a.cmd(&["SET", "k", "1"]), OK);
    server.stop();

    // While the server is down a command fails or the connection closes; it never hangs.
    a.set_timeout(Duration::from_secs(8));
    let started = std::time::Instant::now();
    let reply = a.try_cmd(&["GET", "k"]);
    eprintln!(
        "reply while the server is down after {:?}: {:?}",
        started.elapsed(),
        reply.as_ref().map(|r| show(r))
    );
    match reply {
        Ok(reply) => assert_prefix(reply, "-"),
        Err(e) => assert_ne!(e.kind(), std::io::ErrorKind::WouldBlock, "hung: {e}"),
    }

    server.restart();
    let started = std::time::Instant::now();
    poll_until(Duration::from_secs(10), || works_again(&proxy, "k", "2"));
    eprintln!("recovered {:?} after the restart", started.elapsed());
    let mut b = proxy.wire();
    assert_bytes(b.cmd(&["INCR", "k"]), int(3));
}
