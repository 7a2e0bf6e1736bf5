//! Proxy-only behaviour: the admin port, Prometheus metrics, graceful shutdown, and
//! multiplexing onto shared backend connections. Skipped with `CUTOVER_TEST_DIRECT=1`.

use std::path::PathBuf;
use std::time::Duration;

use tempfile::TempDir;

use support::{assert_bytes, bulk, encode_into, int, poll_until, skip_direct};
use support::{Cutover, RedisServer, Wire};

const OK: &[u8] = b"+OK\r\n";
const WAIT: Duration = Duration::from_secs(5);

#[test]
fn admin_ping_and_status_fields() {
    if skip_direct("admin port") {
        return;
    }
    let (server, proxy) = Cutover::with_server();
    let mut admin = proxy.admin();
    assert_bytes(admin.cmd(&["PING"]), b"+PONG\r\n");

    let status = proxy.status();
    for field in ["version", "uptime_s", "route", "clients", "commands_total"] {
        assert!(
            status.contains_key(field),
            "STATUS lacks {field}: {status:?}"
        );
    }
    assert!(!status["version"].is_empty());
    status["uptime_s"]
        .parse::<u64>()
        .unwrap_or_else(|_| panic!("uptime_s is not a number: {status:?}"));
    assert_eq!(status["route"], "source", "STATUS: {status:?}");
    let port = format!("127.0.0.1:{}", server.port());
    assert!(
        status.values().any(|v| v.contains(&port)),
        "no STATUS field names the source {port}: {status:?}"
    );
}

#[test]
fn status_counts_commands_and_clients() {
    if skip_direct("admin port") {
        return;
    }
    let (_server, proxy) = Cutover::with_server();
    poll_until(WAIT, || proxy.status_u64("clients") == 0);
    let before = proxy.status_u64("commands_total");

    let mut clients: Vec<Wire> = (0..3).map(|_| proxy.wire()).collect();
    for (i, w) in clients.iter_mut().enumerate() {
        assert_bytes(w.cmd(&["SET", &format!("k{i}"), "v"]), OK);
    }
    poll_until(WAIT, || proxy.status_u64("clients") == 3);

    let mut batch = Vec::new();
    for _ in 0..100 {
        encode_into(&mut batch, &["INCR", "n"]);
    }
    clients[0].send(&batch);
    for i in 0..100 {
        assert_bytes(clients[0].read_reply(), int(i + 1));
    }
    poll_until(WAIT, || proxy.status_u64("commands_total") >= before + 103);

    drop(clients);
    poll_until(WAIT, || proxy.status_u64("clients") == 0);
}

#[test]
fn prometheus_metrics_served() {
    if skip_direct("metrics endpoint") {
        return;
    }
    let server = RedisServer::start();
    let proxy = Cutover::builder(&server).metrics().start();
    let mut w = proxy.wire();
    for _ in 0..10 {
        assert_bytes(w.cmd(&["SET", "m", "1"]), OK);
    }
    poll_until(WAIT, || {
        let (status, body) = proxy.metrics_text();
        status.contains(" 200") && body.lines().any(|l| l.starts_with("cutover_"))
    });
    let (_, body) = proxy.metrics_text();
    assert!(!body.trim().is_empty());
}

/// SIGTERM: the reply to a command already sent is still delivered (both for a multiplexed
/// command held back by the server and for a blocked BLPOP), then the process exits 0.
#[test]
fn sigterm_finishes_in_flight_commands_and_exits_zero() {
    if skip_direct("signals") {
        return;
    }
    let (server, mut proxy) = Cutover::with_server();
    let mut writer = proxy.wire();
    let mut blocker = proxy.wire();
    let mut direct = server.wire();

    // Hold writes on the server so the SET is in flight inside the proxy/server.
    assert_bytes(direct.cmd(&["CLIENT", "PAUSE", "10000", "WRITE"]), OK);
    writer.send_cmd(&["SET", "inflight", "1"]);
    blocker.send_cmd(&["BLPOP", "sigq", "10"]);
    poll_until(WAIT, || {
        server.info_field("clients", "blocked_clients").as_deref() == Some("2")
    });

    proxy.signal("TERM");
    // It stops accepting while the in-flight commands are still pending.
    poll_until(WAIT, || Wire::try_connect(proxy.addr()).is_err());
    assert_bytes(direct.cmd(&["CLIENT", "UNPAUSE"]), OK);
    assert_bytes(direct.cmd(&["RPUSH", "sigq", "x"]), int(1));

    assert_bytes(writer.read_reply(), OK);
    assert_bytes(blocker.read_reply(), b"*2\r\n$4\r\nsigq\r\n$1\r\nx\r\n");
    let status = proxy.wait_exit(Duration::from_secs(10));
    assert_eq!(
        status.code(),
        Some(0),
        "exit status after SIGTERM: {status}"
    );
    assert_bytes(direct.cmd(&["GET", "inflight"]), bulk("1"));
}

#[test]
fn sigint_exits_zero() {
    if skip_direct("signals") {
        return;
    }
    let (_server, mut proxy) = Cutover::with_server();
    let mut w = proxy.wire();
    assert_bytes(w.cmd(&["SET", "a", "1"]), OK);
    proxy.signal("INT");
    let status = proxy.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "exit status after SIGINT: {status}");
}

#[test]
fn idle_sigterm_exits_zero_with_clients_connected() {
    if skip_direct("signals") {
        return;
    }
    let (_server, mut proxy) = Cutover::with_server();
    let _idle: Vec<Wire> = (0..5).map(|_| proxy.wire()).collect();
    let status = proxy.sigterm();
    assert_eq!(
        status.code(),
        Some(0),
        "exit status after SIGTERM: {status}"
    );
}

/// Many clients' ordinary commands share a few backend connections.
#[test]
fn ordinary_commands_are_multiplexed() {
    if skip_direct("multiplexing") {
        return;
    }
    let (server, proxy) = Cutover::with_server();
    let mut clients: Vec<Wire> = (0..40).map(|_| proxy.wire()).collect();
    for (i, w) in clients.iter_mut().enumerate() {
        assert_bytes(w.cmd(&["SET", &format!("mux{i}"), "v"]), OK);
        assert_bytes(w.cmd(&["GET", &format!("mux{i}")]), bulk("v"));
    }
    let connected: u64 = server
        .info_field("clients", "connected_clients")
        .and_then(|v| v.parse().ok())
        .expect("connected_clients");
    // Minus the INFO connection itself.
    assert!(
        connected - 1 < 20,
        "40 proxy clients use {} backend connections: not multiplexed",
        connected - 1
    );
}

fn write_config(dir: &TempDir, body: &str) -> PathBuf {
    let path = dir.path().join("cutover.toml");
    std::fs::write(&path, body).expect("write config");
    path
}

#[test]
fn config_file_max_clients() {
    if skip_direct("config file") {
        return;
    }
    let server = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(&dir, "[proxy]\nmax_clients = 3\n");
    let proxy = Cutover::start(&server, &["--config", config.to_str().unwrap()]);
    poll_until(WAIT, || proxy.status_u64("clients") == 0);
    let mut clients: Vec<Wire> = (0..3).map(|_| proxy.wire()).collect();
    for w in clients.iter_mut() {
        assert_bytes(w.cmd(&["PING"]), b"+PONG\r\n");
    }
    // Like Redis: the error is sent on accept, then the connection is closed.
    let mut extra = proxy.wire();
    assert_bytes(
        extra.read_reply(),
        b"-ERR max number of clients reached\r\n",
    );
    extra.expect_closed();
    if proxy.status().contains_key("rejected_connections") {
        poll_until(WAIT, || proxy.status_u64("rejected_connections") >= 1);
    }
    clients.pop();
    poll_until(WAIT, || {
        Wire::try_connect(proxy.addr())
            .ok()
            .and_then(|mut w| w.try_cmd(&["PING"]).ok())
            .is_some_and(|r| r == b"+PONG\r\n")
    });
}

#[test]
fn config_file_named_users() {
    if skip_direct("config file") {
        return;
    }
    let server = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        &dir,
        // The proxy's own users only (the source has none of them).
        "[proxy]\nclient_auth = \"proxy\"\nusers = [{ name = \"app\", password = \"apppw\" }]\n",
    );
    let proxy = Cutover::builder(&server)
        .password("defaultpw")
        .args(&["--config", config.to_str().unwrap()])
        .start();
    let mut w = proxy.wire_noauth();
    assert_bytes(w.cmd(&["PING"]), b"-NOAUTH Authentication required.\r\n");
    assert_bytes(
        w.cmd(&["AUTH", "app", "wrong"]),
        b"-WRONGPASS invalid username-password pair or user is disabled.\r\n",
    );
    assert_bytes(
        w.cmd(&["AUTH", "app", "defaultpw"]),
        b"-WRONGPASS invalid username-password pair or user is disabled.\r\n",
    );
    assert_bytes(w.cmd(&["AUTH", "app", "apppw"]), OK);
    assert_bytes(w.cmd(&["SET", "k", "v"]), OK);
    let mut h = proxy.wire_noauth();
    let hello = h.value(&["HELLO", "3", "AUTH", "app", "apppw"]);
    assert!(matches!(hello, support::Value::Map(_)), "{hello:?}");
    assert_bytes(h.cmd(&["GET", "k"]), bulk("v"));
    let mut d = proxy.wire_noauth();
    assert_bytes(d.cmd(&["AUTH", "defaultpw"]), OK);
    assert_bytes(d.cmd(&["GET", "k"]), bulk("v"));
}

/// A client that never reads its replies is disconnected once its output passes
/// `client_output_limit`; everyone else carries on.
#[test]
fn config_file_client_output_limit() {
    if skip_direct("config file") {
        return;
    }
    let server = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(&dir, "[proxy]\nclient_output_limit = 1048576\n");
    let proxy = Cutover::start(&server, &["--config", config.to_str().unwrap()]);
    let mut fast = proxy.wire();
    let big = vec![b'b'; 1 << 20];
    assert_bytes(fast.cmd(&[b"SET".as_slice(), b"big", &big]), OK);
    let mut slow = proxy.wire();
    let mut batch = Vec::new();
    for _ in 0..64 {
        encode_into(&mut batch, &["GET", "big"]);
    }
    slow.send(&batch);
    poll_until(WAIT, || proxy.status_u64("clients") == 1);
    for i in 0..50 {
        assert_bytes(fast.cmd(&["ECHO", &i.to_string()]), bulk(i.to_string()));
    }
    let mut got = 0;
    while slow.try_read_reply().is_ok() {
        got += 1;
    }
    assert!(got < 64, "the slow reader got all 64 MiB of replies");
}

#[test]
fn source_url_db_is_the_default_db() {
    if skip_direct("source URL") {
        return;
    }
    let server = RedisServer::start();
    let proxy = Cutover::builder(&server).db(2).start();
    let mut w = proxy.wire();
    assert_bytes(w.cmd(&["SET", "k", "in-db2"]), OK);
    let mut direct = server.wire();
    assert_bytes(direct.cmd(&["SELECT", "2"]), OK);
    assert_bytes(direct.cmd(&["GET", "k"]), bulk("in-db2"));
}

/// A `rediss://` source, verified against the CA given with `--tls-ca-file`.
#[test]
fn tls_source() {
    if skip_direct("TLS source") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let tls = support::tls_files(dir.path());
    let server = RedisServer::builder().tls(&tls).start();
    let proxy = Cutover::start(&server, &["--tls-ca-file", tls.ca.to_str().unwrap()]);
    let mut w = proxy.wire();
    assert_bytes(w.cmd(&["SET", "over-tls", "yes"]), OK);
    assert_bytes(w.cmd(&["GET", "over-tls"]), bulk("yes"));
    let big = vec![b'x'; 3 << 20];
    assert_bytes(w.cmd(&[b"SET".as_slice(), b"big", &big]), OK);
    assert_bytes(w.cmd(&["GET", "big"]), bulk(&big));
    let mut b = proxy.wire();
    b.send_cmd(&["BLPOP", "tq", "0"]);
    assert_bytes(w.cmd(&["RPUSH", "tq", "v"]), int(1));
    assert_bytes(b.read_reply(), b"*2\r\n$2\r\ntq\r\n$1\r\nv\r\n");

    // The data really is on the TLS server.
    let out = std::process::Command::new("redis-cli")
        .args(["--tls", "--cacert"])
        .arg(&tls.ca)
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &server.port().to_string(),
            "GET",
            "over-tls",
        ])
        .output()
        .expect("redis-cli");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "yes");
}
