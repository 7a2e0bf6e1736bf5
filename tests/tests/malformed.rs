//! Bad input: the same error texts Redis gives (tests/unit/protocol.tcl), the connection
//! closed after a protocol error, frames Redis ignores ignored, other clients unaffected.
//!
//! Every test also runs directly against Redis with `CUTOVER_TEST_DIRECT=1`.

use support::{assert_bytes, bulk, encode, Cutover};

const PONG: &[u8] = b"+PONG\r\n";
const OK: &[u8] = b"+OK\r\n";

/// (name, input, the exact error reply). Each one closes the connection.
fn fatal_cases() -> Vec<(&'static str, Vec<u8>, &'static [u8])> {
    let mut too_big_mbulk = b"*".to_vec();
    too_big_mbulk.extend(vec![b'1'; 65 * 1024]);
    let mut too_big_bulk = b"*1\r\n$".to_vec();
    too_big_bulk.extend(vec![b'1'; 65 * 1024]);
    let too_big_inline = vec![b'a'; 65 * 1024];
    vec![
        (
            "multibulk length over 1024*1024*1024",
            b"*3000000000\r\n".to_vec(),
            b"-ERR Protocol error: invalid multibulk length\r\n",
        ),
        (
            "multibulk length over INT_MAX",
            b"*2147483648\r\n".to_vec(),
            b"-ERR Protocol error: invalid multibulk length\r\n",
        ),
        (
            "bulk length one over 512 MB",
            b"*2\r\n$4\r\nECHO\r\n$536870913\r\n".to_vec(),
            b"-ERR Protocol error: invalid bulk length\r\n",
        ),
        (
            "non-numeric multibulk length",
            b"*blabla\r\n".to_vec(),
            b"-ERR Protocol error: invalid multibulk length\r\n",
        ),
        (
            "negative bulk length",
            b"*1\r\n$-10\r\n".to_vec(),
            b"-ERR Protocol error: invalid bulk length\r\n",
        ),
        (
            "bulk length over proto-max-bulk-len",
            b"*1\r\n$2000000000\r\n".to_vec(),
            b"-ERR Protocol error: invalid bulk length\r\n",
        ),
        (
            "non-numeric bulk length",
            b"*1\r\n$blabla\r\n".to_vec(),
            b"-ERR Protocol error: invalid bulk length\r\n",
        ),
        (
            "element that is not a bulk string",
            b"*1\r\nfoo\r\n".to_vec(),
            b"-ERR Protocol error: expected '$', got 'f'\r\n",
        ),
        (
            "nested array in a request",
            b"*1\r\n*1\r\n$4\r\nPING\r\n".to_vec(),
            b"-ERR Protocol error: expected '$', got '*'\r\n",
        ),
        (
            "integer element in a request",
            b"*2\r\n$3\r\nGET\r\n:1\r\n".to_vec(),
            b"-ERR Protocol error: expected '$', got ':'\r\n",
        ),
        (
            "multibulk header over 64 KiB without CRLF",
            too_big_mbulk,
            b"-ERR Protocol error: too big mbulk count string\r\n",
        ),
        (
            "bulk header over 64 KiB without CRLF",
            too_big_bulk,
            b"-ERR Protocol error: too big bulk count string\r\n",
        ),
        (
            "inline line over 64 KiB without CRLF",
            too_big_inline,
            b"-ERR Protocol error: too big inline request\r\n",
        ),
        (
            "unbalanced quotes in an inline command",
            b"SET \"a b\r\n".to_vec(),
            b"-ERR Protocol error: unbalanced quotes in request\r\n",
        ),
    ]
}

#[test]
fn protocol_errors_reply_like_redis_and_close() {
    let (_server, proxy) = Cutover::with_server();
    let mut bystander = proxy.wire();
    assert_bytes(bystander.cmd(&["SET", "bystander", "ok"]), OK);
    for (name, input, expected) in fatal_cases() {
        let mut w = proxy.wire();
        // The connection is up and in step before the bad input.
        assert_bytes(w.cmd(&["PING"]), PONG);
        // The server may close before reading all of a long input: ignore write errors.
        let _ = w.try_send(&input);
        let reply = w
            .try_read_reply()
            .unwrap_or_else(|e| panic!("{name}: no error reply: {e}"));
        if reply != expected {
            panic!(
                "{name}: expected {}, got {}",
                support::show(expected),
                support::show(&reply)
            );
        }
        w.expect_closed();
        // Other clients are unaffected.
        assert_bytes(bystander.cmd(&["GET", "bystander"]), bulk("ok"));
    }
}

/// The same errors on a connection's very first bytes, and preceded by a valid command in
/// the same write (which must still be answered first).
#[test]
fn protocol_errors_after_valid_commands_in_the_same_write() {
    let (_server, proxy) = Cutover::with_server();
    for (name, input, expected) in fatal_cases().into_iter().take(10) {
        let mut w = proxy.wire();
        let _ = w.try_send(&input);
        assert_eq!(w.read_reply(), expected, "{name} as the first bytes");
        w.expect_closed();

        let mut w = proxy.wire();
        let mut batch = encode(&["SET", "k", name]);
        batch.extend_from_slice(b"PING\r\n");
        batch.extend_from_slice(&input);
        let _ = w.try_send(&batch);
        assert_bytes(w.read_reply(), OK);
        assert_bytes(w.read_reply(), PONG);
        assert_eq!(w.read_reply(), expected, "{name} after valid commands");
        w.expect_closed();
        // The valid command really ran.
        assert_bytes(proxy.wire().cmd(&["GET", "k"]), bulk(name));
    }
}

#[test]
fn ignored_frames_keep_the_connection_open() {
    let (_server, proxy) = Cutover::with_server();
    let mut w = proxy.wire();
    for input in [
        &b"*-10\r\n"[..],
        b"*0\r\n",
        b"\r\n",
        b"\n",
        b"*-1\r\n",
        b"   \r\n",
    ] {
        w.send(input);
        assert_bytes(w.cmd(&["PING"]), PONG);
    }
    // All at once, between real commands.
    w.send(b"*-10\r\nECHO a\r\n*0\r\n\r\n\nECHO b\r\n*0\r\n");
    assert_bytes(w.read_reply(), bulk("a"));
    assert_bytes(w.read_reply(), bulk("b"));
    assert_bytes(w.cmd(&["PING"]), PONG);
}

#[test]
fn command_errors_do_not_close_the_connection() {
    let (_server, proxy) = Cutover::with_server();
    let mut w = proxy.wire();
    assert_bytes(
        w.cmd(&["NOSUCHCOMMAND", "arg"]),
        b"-ERR unknown command 'NOSUCHCOMMAND', with args beginning with: 'arg' \r\n",
    );
    assert_bytes(
        w.cmd(&["GET"]),
        b"-ERR wrong number of arguments for 'get' command\r\n",
    );
    assert_bytes(w.cmd(&["SET", "s", "v"]), OK);
    assert_bytes(
        w.cmd(&["INCR", "s"]),
        b"-ERR value is not an integer or out of range\r\n",
    );
    assert_bytes(
        w.cmd(&["LPUSH", "s", "x"]),
        &b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"[..],
    );
    assert_bytes(w.cmd(&["PING"]), PONG);
}

/// A request whose header promises more bytes than ever arrive, then a hang-up: nothing
/// breaks for anyone else, and a half-sent request is never executed.
#[test]
fn truncated_requests_then_hangup() {
    let (_server, proxy) = Cutover::with_server();
    let mut bystander = proxy.wire();
    for partial in [
        &b"*3\r\n$3\r\nSET\r\n$1\r\nt\r\n$5\r\nab"[..],
        b"*3\r\n$3\r\nSET\r\n$1\r\nt\r\n",
        b"*3\r\n$3\r\nSET\r\n$1\r\nt\r\n$1000000\r\n",
        b"*3\r\n$3\r\nSET",
        b"SET t inline-without-newline",
    ] {
        let mut w = proxy.wire();
        w.send(partial);
        assert_bytes(bystander.cmd(&["PING"]), PONG);
        drop(w);
    }
    assert_bytes(bystander.cmd(&["EXISTS", "t"]), b":0\r\n");
}

/// A 16 MiB bulk (written while the reply is awaited) arrives intact.
#[test]
fn big_declared_bulk_that_arrives() {
    let (_server, proxy) = Cutover::with_server();
    let mut w = proxy.wire();
    let size = 16 << 20;
    let value = vec![b'z'; size];
    let writer = w.send_in_background(encode(&[b"SET".as_slice(), b"huge", &value]));
    assert_bytes(w.read_reply(), OK);
    writer.join().unwrap().expect("write");
    assert_bytes(w.cmd(&["STRLEN", "huge"]), format!(":{size}\r\n"));
}

/// Headers at the limits are accepted: nothing is sent back before the client hangs up.
#[test]
fn headers_at_the_limits_are_accepted() {
    let (_server, proxy) = Cutover::with_server();
    for input in [
        &b"*2147483647\r\n"[..],
        b"*1048577\r\n",
        b"*2\r\n$4\r\nECHO\r\n$536870912\r\n",
        b"*2\r\n$4\r\nECHO\r\n$536870912\r\nsome bytes of it",
    ] {
        let mut w = proxy.wire();
        assert_bytes(w.cmd(&["PING"]), PONG);
        w.send(input);
        w.shutdown_write();
        w.expect_closed();
    }
}
