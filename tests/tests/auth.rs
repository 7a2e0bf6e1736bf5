//! AUTH against `--password`, with Redis' exact error texts and pre-authentication limits.
//!
//! The source server always has `requirepass` set to the same password, so that with
//! `CUTOVER_TEST_DIRECT=1` the very same expectations are checked against Redis itself (and
//! so the proxy is also tested authenticating to its source with a URL password).

use support::{assert_bytes, assert_prefix, bulk, encode, Cutover, RedisServer, Value};

const PW: &str = "s3cret-pw";
const OK: &[u8] = b"+OK\r\n";
const PONG: &[u8] = b"+PONG\r\n";
const NOAUTH: &[u8] = b"-NOAUTH Authentication required.\r\n";
const WRONGPASS: &[u8] = b"-WRONGPASS invalid username-password pair or user is disabled.\r\n";

fn with_password() -> (RedisServer, Cutover) {
    let server = RedisServer::builder().password(PW).start();
    let proxy = Cutover::builder(&server).password(PW).start();
    (server, proxy)
}

#[test]
fn noauth_before_auth_wrongpass_on_bad_password() {
    let (_server, proxy) = with_password();
    let mut w = proxy.wire_noauth();
    assert_bytes(w.cmd(&["PING"]), NOAUTH);
    assert_bytes(w.cmd(&["GET", "k"]), NOAUTH);
    assert_bytes(w.cmd(&["SELECT", "1"]), NOAUTH);
    assert_bytes(w.cmd(&["CLIENT", "SETNAME", "x"]), NOAUTH);
    w.send(b"PING\r\n");
    assert_bytes(w.read_reply(), NOAUTH);
    assert_bytes(w.cmd(&["AUTH", "wrong"]), WRONGPASS);
    assert_bytes(w.cmd(&["AUTH", "default", "wrong"]), WRONGPASS);
    assert_bytes(w.cmd(&["AUTH", "nosuchuser", PW]), WRONGPASS);
    assert_bytes(w.cmd(&["AUTH", "a", "b", "c"]), b"-ERR syntax error\r\n");
    assert_bytes(w.cmd(&["PING"]), NOAUTH);

    assert_bytes(w.cmd(&["AUTH", PW]), OK);
    assert_bytes(w.cmd(&["PING"]), PONG);
    assert_bytes(w.cmd(&["SET", "k", "v"]), OK);
    assert_bytes(w.cmd(&["GET", "k"]), bulk("v"));
    // A failed AUTH afterwards keeps the session authenticated (as in Redis).
    assert_bytes(w.cmd(&["AUTH", "wrong"]), WRONGPASS);
    assert_bytes(w.cmd(&["PING"]), PONG);

    // AUTH with the default user name, and inline.
    let mut x = proxy.wire_noauth();
    assert_bytes(x.cmd(&["AUTH", "default", PW]), OK);
    assert_bytes(x.cmd(&["GET", "k"]), bulk("v"));
    let mut y = proxy.wire_noauth();
    y.send(format!("AUTH {PW}\r\nGET k\r\n").as_bytes());
    assert_bytes(y.read_reply(), OK);
    assert_bytes(y.read_reply(), bulk("v"));

    // Authentication is per client.
    let mut z = proxy.wire_noauth();
    assert_bytes(z.cmd(&["GET", "k"]), NOAUTH);
    // QUIT works unauthenticated.
    assert_bytes(z.cmd(&["QUIT"]), OK);
    z.expect_closed();
}

#[test]
fn hello_with_auth() {
    let (_server, proxy) = with_password();
    let mut w = proxy.wire_noauth();
    assert_prefix(
        w.cmd(&["HELLO", "3"]),
        "-NOAUTH HELLO must be called with the client already authenticated",
    );
    assert_bytes(
        w.cmd(&["HELLO", "3", "AUTH", "default", "wrong"]),
        WRONGPASS,
    );
    assert_bytes(w.cmd(&["PING"]), NOAUTH);
    let hello = w.value(&["HELLO", "3", "AUTH", "default", PW]);
    let Value::Map(pairs) = &hello else {
        panic!("HELLO 3 AUTH: expected a map, got {hello:?}");
    };
    assert!(pairs
        .iter()
        .any(|(k, v)| k.bytes() == b"proto" && *v == Value::Int(3)));
    assert_bytes(w.cmd(&["GET", "nokey"]), b"_\r\n");
}

#[test]
fn reset_deauthenticates() {
    let (_server, proxy) = with_password();
    let mut w = proxy.wire_noauth();
    assert_bytes(w.cmd(&["AUTH", PW]), OK);
    assert_bytes(w.cmd(&["RESET"]), b"+RESET\r\n");
    assert_bytes(w.cmd(&["PING"]), NOAUTH);
    assert_bytes(w.cmd(&["AUTH", PW]), OK);
    assert_bytes(w.cmd(&["PING"]), PONG);
}

#[test]
fn auth_without_a_configured_password() {
    let (_server, proxy) = Cutover::with_server();
    let mut w = proxy.wire();
    assert_bytes(
        w.cmd(&["AUTH", "whatever"]),
        &b"-ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?\r\n"[..],
    );
    assert_bytes(w.cmd(&["AUTH", "someone", "whatever"]), WRONGPASS);
    // The default user has no password: any password is accepted for it by name.
    assert_bytes(w.cmd(&["AUTH", "default", "whatever"]), OK);
    assert_prefix(w.cmd(&["HELLO", "3", "AUTH", "default", "whatever"]), "%");
    assert_bytes(w.cmd(&["GET", "nokey"]), b"_\r\n");
    assert_bytes(w.cmd(&["PING"]), PONG);
}

#[test]
fn pre_auth_limits() {
    let (_server, proxy) = with_password();

    // More than 10 arguments before authentication: error and close.
    let mut w = proxy.wire_noauth();
    w.send(b"*11\r\n");
    assert_bytes(
        w.read_reply(),
        b"-ERR Protocol error: unauthenticated multibulk length\r\n",
    );
    w.expect_closed();

    // A bulk over 16 KiB before authentication: error and close.
    let mut w = proxy.wire_noauth();
    w.send(b"*2\r\n$16385\r\n");
    assert_bytes(
        w.read_reply(),
        b"-ERR Protocol error: unauthenticated bulk length\r\n",
    );
    w.expect_closed();

    // At the limits: just NOAUTH, connection kept.
    let mut w = proxy.wire_noauth();
    let ten: Vec<&str> = vec!["MSET", "a", "1", "b", "2", "c", "3", "d", "4", "e"];
    assert_bytes(w.cmd(&ten), NOAUTH);
    let big = vec![b'x'; 16384];
    assert_bytes(w.cmd(&[b"ECHO".as_slice(), &big]), NOAUTH);

    // After AUTH the limits are gone.
    assert_bytes(w.cmd(&["AUTH", PW]), OK);
    let mut many: Vec<String> = vec!["MSET".into()];
    for i in 0..20 {
        many.push(format!("k{i}"));
        many.push(format!("v{i}"));
    }
    assert_bytes(w.cmd(&many), OK);
    let big = vec![b'y'; 100_000];
    assert_bytes(w.cmd(&[b"SET".as_slice(), b"big", &big]), OK);
    assert_bytes(w.cmd(&["STRLEN", "big"]), b":100000\r\n");

    // An unauthenticated client pipelining commands gets NOAUTH for each, in order.
    let mut p = proxy.wire_noauth();
    let mut batch = Vec::new();
    for _ in 0..100 {
        batch.extend_from_slice(&encode(&["GET", "k1"]));
    }
    batch.extend_from_slice(&encode(&["AUTH", PW]));
    batch.extend_from_slice(&encode(&["GET", "k1"]));
    p.send(&batch);
    for _ in 0..100 {
        assert_bytes(p.read_reply(), NOAUTH);
    }
    assert_bytes(p.read_reply(), OK);
    assert_bytes(p.read_reply(), bulk("v1"));
}
