//! CUTOVER against real servers: under load nothing acknowledged is lost or applied twice,
//! no client sees an error, every connection reads its own writes across the switch; the
//! abort path leaves everything on the source; session state crosses the switch.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use support::*;

const WAIT: Duration = Duration::from_secs(30);

#[track_caller]
fn wait_streaming(source: &RedisServer, proxy: &Cutover) {
    let ok = try_poll_until(WAIT, || {
        let st = proxy.status();
        st["sync_state"] == "streaming"
            && st["applied_offset"].parse::<u64>().unwrap_or(0) >= master_offset(source)
    });
    assert!(
        ok,
        "syncer not caught up: {:?}; source offset {}",
        proxy.status(),
        master_offset(source)
    );
}

/// A source, an empty target, and cutover in front syncing it, caught up.
fn synced() -> (RedisServer, RedisServer, Cutover) {
    let source = sync_source();
    let target = RedisServer::start();
    let proxy = Cutover::start(&source, &["--target", &target.url()]);
    wait_streaming(&source, &proxy);
    (source, target, proxy)
}

#[test]
fn cutover_under_load_loses_nothing_and_shows_no_errors() {
    if skip_direct("the cutover") {
        return;
    }
    let (source, target, proxy) = synced();
    // Six application clients and redis-benchmark -P 16 alongside.
    let load = AppLoad::start(proxy.addr(), 200000);
    poll_until(WAIT, || target.cmd(&["EXISTS", "c:5"]) == int(1));
    thread::sleep(Duration::from_millis(300));
    assert_bytes(cutover(&proxy, &["TIMEOUT", "5000"]), b"+OK\r\n");
    let st = proxy.status();
    assert_eq!(st["route"], "target");
    assert_eq!(st["cutover_state"], "switched");
    let pause: f64 = st["last_pause_ms"].parse().unwrap();
    thread::sleep(Duration::from_millis(300));
    let rounds = load.finish();
    // Every acknowledged write is on the target exactly once, in order.
    assert_acked_writes(&rounds, |_| target.wire());
    // Writes after the switch went to the target, not the source.
    let last_on_source = source.cmd(&["GET", "c:0"]);
    assert_ne!(
        last_on_source,
        bulk(rounds[0].to_string()),
        "post-switch writes reached the source"
    );
    assert!(pause < 1000.0, "pause {pause} ms");
    assert_eq!(st["source_writes_after_fence"], "0");
}

#[test]
fn a_stalled_target_aborts_the_cutover_and_clients_continue_on_the_source() {
    if skip_direct("the cutover") {
        return;
    }
    let (source, target, proxy) = synced();
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..3)
        .map(|i| app_client(proxy.addr(), i, stop.clone()))
        .collect();
    poll_until(WAIT, || target.cmd(&["EXISTS", "c:2"]) == int(1));
    target.signal("-STOP");
    let r = cutover(&proxy, &["TIMEOUT", "300"]);
    target.signal("-CONT");
    let text = String::from_utf8_lossy(&r).into_owned();
    assert!(
        text.starts_with("-ERR aborted") && text.contains("deadline"),
        "{text}"
    );
    let st = proxy.status();
    assert_eq!(st["route"], "source");
    assert_eq!(st["cutover_state"], "aborted");
    // The source is writable again and clients never noticed.
    thread::sleep(Duration::from_millis(200));
    assert_bytes(source.cmd(&["SET", "direct", "1"]), b"+OK\r\n");
    // Writers keep going: the syncer streams, a little behind them (CUTOVER catches up).
    poll_until(WAIT, || proxy.status()["sync_state"] == "streaming");
    // A later cutover succeeds; nothing was lost in between.
    assert_bytes(cutover(&proxy, &["TIMEOUT", "5000"]), b"+OK\r\n");
    thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    let rounds: Vec<u64> = clients
        .into_iter()
        .map(|c| c.join().expect("a client saw an error"))
        .collect();
    for (id, n) in rounds.iter().enumerate() {
        assert_bytes(
            target.cmd(&["GET", &format!("c:{id}")]),
            bulk(n.to_string()),
        );
    }
}

#[test]
fn session_state_crosses_the_switch() {
    if skip_direct("the cutover") {
        return;
    }
    let (source, target, proxy) = synced();
    let mut a = proxy.wire();
    // db, name and protocol.
    assert_bytes(a.cmd(&["SELECT", "4"]), b"+OK\r\n");
    assert_bytes(a.cmd(&["CLIENT", "SETNAME", "app-a"]), b"+OK\r\n");
    a.cmd(&["HELLO", "3"]);
    assert_bytes(a.cmd(&["SET", "k4", "before"]), b"+OK\r\n");
    // A script loaded through the proxy.
    let sha = a.value(&["SCRIPT", "LOAD", "return 'from-script'"]).text();
    // A WATCH that spans the switch.
    let mut w = proxy.wire();
    assert_bytes(w.cmd(&["SET", "watched", "1"]), b"+OK\r\n");
    assert_bytes(w.cmd(&["WATCH", "watched"]), b"+OK\r\n");
    wait_streaming(&source, &proxy);
    assert_bytes(cutover(&proxy, &["TIMEOUT", "5000"]), b"+OK\r\n");
    // db 4 and RESP3 carried over: a map reply, the key written before the switch.
    assert_bytes(a.cmd(&["GET", "k4"]), bulk("before"));
    assert_bytes(a.cmd(&["CLIENT", "GETNAME"]), bulk("app-a"));
    a.cmd(&["HSET", "h", "f", "v"]);
    assert_bytes(a.cmd(&["HGETALL", "h"]), b"%1\r\n$1\r\nf\r\n$1\r\nv\r\n");
    assert_bytes(a.cmd(&["EVALSHA", &sha, "0"]), bulk("from-script"));
    assert_bytes(target.cmd(&["SELECT", "4"]), b"+OK\r\n");
    let mut t = target.wire();
    t.cmd(&["SELECT", "4"]);
    assert_bytes(t.cmd(&["HGET", "h", "f"]), bulk("v"));
    // The WATCH made on the source cannot guard the target: EXEC answers nil.
    assert_bytes(w.cmd(&["MULTI"]), b"+OK\r\n");
    assert_bytes(w.cmd(&["SET", "watched", "2"]), b"+QUEUED\r\n");
    assert_bytes(w.cmd(&["EXEC"]), b"*-1\r\n");
    assert_bytes(target.cmd(&["GET", "watched"]), bulk("1"));
    // And the next transaction works normally.
    assert_bytes(w.cmd(&["MULTI"]), b"+OK\r\n");
    assert_bytes(w.cmd(&["SET", "watched", "3"]), b"+QUEUED\r\n");
    assert_bytes(w.cmd(&["EXEC"]), b"*1\r\n+OK\r\n");
}

#[test]
fn a_second_cutover_is_refused_and_a_restart_keeps_the_target() {
    if skip_direct("the cutover") {
        return;
    }
    let source = sync_source();
    let target = RedisServer::start();
    let mut proxy = Cutover::start(&source, &["--target", &target.url()]);
    wait_streaming(&source, &proxy);
    assert_bytes(cutover(&proxy, &["CHECK"]), b"+OK: ready for CUTOVER\r\n");
    assert_bytes(cutover(&proxy, &[]), b"+OK\r\n");
    let again = String::from_utf8_lossy(&cutover(&proxy, &[])).into_owned();
    assert!(again.starts_with("-ERR already switched"), "{again}");
    // The switch is recorded on the target (written right after the flip).
    poll_until(WAIT, || {
        target.cmd(&["HGET", "__cutover:checkpoint", "route"]) == bulk("target")
    });
    proxy.kill();
    let proxy = Cutover::start(&source, &["--target", &target.url()]);
    assert_eq!(proxy.status()["route"], "target");
    assert_bytes(proxy.wire().cmd(&["SET", "after-restart", "1"]), b"+OK\r\n");
    assert_bytes(target.cmd(&["GET", "after-restart"]), bulk("1"));
    assert_bytes(source.cmd(&["EXISTS", "after-restart"]), int(0));
}

#[test]
fn cutover_check_explains_what_is_missing() {
    if skip_direct("the cutover") {
        return;
    }
    let source = sync_source();
    let proxy = Cutover::start(&source, &[] as &[&str]);
    let r = String::from_utf8_lossy(&cutover(&proxy, &["CHECK"])).into_owned();
    assert!(r.contains("no target configured"), "{r}");
    let r = String::from_utf8_lossy(&cutover(&proxy, &["TIMEOUT"])).into_owned();
    assert!(r.starts_with("-ERR TIMEOUT needs a number"), "{r}");
}

#[test]
fn ctl_speaks_to_the_admin_port() {
    if skip_direct("the cutover") {
        return;
    }
    let (_source, target, proxy) = synced();
    let admin = proxy.admin_addr().to_string();
    let ctl = |args: &[&str]| {
        std::process::Command::new(cutover_bin())
            .args(["ctl", "--admin", &admin])
            .args(args)
            .output()
            .unwrap()
    };
    let out = ctl(&["status"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("route:source\n") && text.contains("sync_state:streaming"),
        "{text}"
    );
    let out = ctl(&["cutover", "--check"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // VERIFIED waits for a clean VERIFY, which ctl starts.
    let out = ctl(&["cutover", "--check", "--verified"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("VERIFY"));
    let out = ctl(&["verify"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    poll_until(WAIT, || proxy.status()["verify_state"] == "done");
    assert_eq!(proxy.status()["verify_differences"], "0");
    let out = ctl(&["cutover", "--verified", "--timeout-ms", "5000"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(proxy.status()["route"], "target");
    let out = ctl(&["cutover"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already switched"));
    // FINISH: says what it removed; the bookkeeping is gone from the target.
    let out = ctl(&["finish"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("__cutover:checkpoint"), "{said}");
    assert_eq!(target.cmd(&["EXISTS", "__cutover:checkpoint"]), b":0\r\n");
}

#[test]
fn subscribers_keep_receiving_after_the_switch() {
    if skip_direct("the cutover") {
        return;
    }
    let (source, target, proxy) = synced();
    let mut s2 = proxy.wire();
    assert_bytes(
        s2.cmd(&["SUBSCRIBE", "news"]),
        b"*3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:1\r\n",
    );
    assert_bytes(
        s2.cmd(&["PSUBSCRIBE", "ev.*"]),
        b"*3\r\n$10\r\npsubscribe\r\n$4\r\nev.*\r\n:2\r\n",
    );
    let mut s3 = proxy.wire();
    s3.cmd(&["HELLO", "3"]);
    assert_bytes(
        s3.cmd(&["SUBSCRIBE", "news"]),
        b">3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:1\r\n",
    );
    let mut publisher = proxy.wire();
    assert_bytes(publisher.cmd(&["PUBLISH", "news", "before"]), int(2));
    assert_bytes(
        s2.read_reply(),
        b"*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$6\r\nbefore\r\n",
    );
    assert_bytes(
        s3.read_reply(),
        b">3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$6\r\nbefore\r\n",
    );
    assert_bytes(cutover(&proxy, &["TIMEOUT", "5000"]), b"+OK\r\n");
    // Published on the target now: both still hear it, and nothing else (no stray
    // confirmations of the subscriptions made on the target).
    assert_bytes(publisher.cmd(&["PUBLISH", "news", "after"]), int(2));
    assert_bytes(
        s2.read_reply(),
        b"*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$5\r\nafter\r\n",
    );
    assert_bytes(
        s3.read_reply(),
        b">3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$5\r\nafter\r\n",
    );
    assert_bytes(publisher.cmd(&["PUBLISH", "ev.x", "pat"]), int(1));
    assert_bytes(
        s2.read_reply(),
        b"*4\r\n$8\r\npmessage\r\n$4\r\nev.*\r\n$4\r\nev.x\r\n$3\r\npat\r\n",
    );
    // The subscriptions are really on the target.
    assert_bytes(
        target.cmd(&["PUBSUB", "NUMSUB", "news"]),
        b"*2\r\n$4\r\nnews\r\n:2\r\n",
    );
    assert_bytes(
        source.cmd(&["PUBSUB", "NUMSUB", "news"]),
        b"*2\r\n$4\r\nnews\r\n:0\r\n",
    );
    // And the client can leave pub/sub mode as usual.
    s2.send(b"UNSUBSCRIBE\r\nPUNSUBSCRIBE\r\n");
    assert_bytes(
        s2.read_reply(),
        b"*3\r\n$11\r\nunsubscribe\r\n$4\r\nnews\r\n:1\r\n",
    );
    assert_bytes(
        s2.read_reply(),
        b"*3\r\n$12\r\npunsubscribe\r\n$4\r\nev.*\r\n:0\r\n",
    );
    assert_bytes(s2.cmd(&["SET", "x", "1"]), b"+OK\r\n");
}

#[test]
fn a_blocked_client_is_moved_and_gets_the_element_pushed_after_the_switch() {
    if skip_direct("the cutover") {
        return;
    }
    let (source, target, proxy) = synced();
    let mut blocked = proxy.wire();
    blocked.set_timeout(Duration::from_secs(20));
    assert_bytes(blocked.cmd(&["SET", "marker", "m"]), b"+OK\r\n");
    // BLPOP forever. (A command pipelined behind a blocked one would have to overtake it
    // to move: such a connection keeps the drain from completing and the cutover aborts.)
    blocked.send_cmd(&["BLPOP", "jobs", "0"]);
    let mut timed = proxy.wire();
    timed.set_timeout(Duration::from_secs(20));
    timed.send_cmd(&["BRPOP", "other", "30"]);
    poll_until(WAIT, || {
        source.info_field("clients", "blocked_clients").as_deref() == Some("2")
    });
    wait_streaming(&source, &proxy);
    assert_bytes(cutover(&proxy, &["TIMEOUT", "5000"]), b"+OK\r\n");
    // Both now wait on the target, with what was left of their timeouts.
    poll_until(WAIT, || {
        target.info_field("clients", "blocked_clients").as_deref() == Some("2")
    });
    assert_eq!(
        source.info_field("clients", "blocked_clients").as_deref(),
        Some("0")
    );
    let mut pusher = proxy.wire();
    assert_bytes(pusher.cmd(&["RPUSH", "jobs", "j1"]), int(1));
    assert_bytes(blocked.read_reply(), b"*2\r\n$4\r\njobs\r\n$2\r\nj1\r\n");
    assert_bytes(blocked.cmd(&["GET", "marker"]), bulk("m"));
    assert_bytes(pusher.cmd(&["LPUSH", "other", "o1"]), int(1));
    assert_bytes(timed.read_reply(), b"*2\r\n$5\r\nother\r\n$2\r\no1\r\n");
}

#[test]
fn automatic_cutover_once_the_lag_holds() {
    if skip_direct("the cutover") {
        return;
    }
    let source = sync_source();
    let target = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        "[cutover]\nauto = true\nauto_max_lag = 0\nauto_hold_ms = 300\n",
    )
    .unwrap();
    let proxy = Cutover::start(
        &source,
        &["--target", &target.url(), "--config", cfg.to_str().unwrap()],
    );
    let mut w = proxy.wire();
    assert_bytes(w.cmd(&["SET", "k", "v"]), b"+OK\r\n");
    poll_until(WAIT, || proxy.status()["route"] == "target");
    assert_eq!(proxy.status()["cutover_state"], "switched");
    assert_bytes(w.cmd(&["SET", "k2", "v2"]), b"+OK\r\n");
    assert_bytes(
        target.cmd(&["MGET", "k", "k2"]),
        b"*2\r\n$1\r\nv\r\n$2\r\nv2\r\n",
    );
}

#[test]
fn a_write_to_the_source_after_the_fence_is_reported_not_applied() {
    if skip_direct("the cutover") {
        return;
    }
    let (source, target, proxy) = synced();
    assert_bytes(proxy.wire().cmd(&["SET", "k", "before"]), b"+OK\r\n");
    wait_streaming(&source, &proxy);
    assert_bytes(cutover(&proxy, &["TIMEOUT", "5000"]), b"+OK\r\n");
    // The source stays paused for writes, but a writer that lifts the pause and bypasses the proxy must not reach the
    // target over its new writes.
    assert_bytes(
        proxy.wire().cmd(&["SET", "k", "after-on-target"]),
        b"+OK\r\n",
    );
    let mut s = source.wire();
    s.send(b"CLIENT UNPAUSE\r\nSET k sneaky\r\n");
    assert_bytes(s.read_reply(), b"+OK\r\n");
    assert_bytes(s.read_reply(), b"+OK\r\n");
    poll_until(WAIT, || proxy.status_u64("source_writes_after_fence") >= 1);
    assert_bytes(target.cmd(&["GET", "k"]), bulk("after-on-target"));
    assert!(proxy.log_tail().contains("after the cutover's fence"));
}

#[test]
fn a_full_resync_offered_after_the_switch_never_touches_the_live_target() {
    if skip_direct("the cutover") {
        return;
    }
    let mut source = sync_source();
    let target = RedisServer::start();
    let proxy = Cutover::start(&source, &["--target", &target.url()]);
    wait_streaming(&source, &proxy);
    assert_bytes(proxy.wire().cmd(&["SET", "before", "1"]), b"+OK\r\n");
    wait_streaming(&source, &proxy);
    assert_bytes(cutover(&proxy, &["TIMEOUT", "5000"]), b"+OK\r\n");
    assert_bytes(proxy.wire().cmd(&["SET", "after", "2"]), b"+OK\r\n");
    // The old source comes back empty, with a new replication id: the syncer's resume is
    // answered with a full resync, which must not empty the target that now serves.
    source.restart();
    poll_until(WAIT, || {
        proxy.status()["last_error"].contains("full resync after the cutover")
    });
    assert_bytes(
        target.cmd(&["MGET", "before", "after"]),
        b"*2\r\n$1\r\n1\r\n$1\r\n2\r\n",
    );
    assert_bytes(proxy.wire().cmd(&["GET", "after"]), bulk("2"));
}

#[test]
fn db_map_applies_to_clients_after_the_switch() {
    if skip_direct("the cutover") {
        return;
    }
    let source = sync_source();
    let target = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, "[sync.db_map]\n\"3\" = 5\n").unwrap();
    let proxy = cutover_with_target(&source, &target, &["--config", cfg.to_str().unwrap()]);
    wait_streaming(&source, &proxy);
    let mut c = proxy.wire();
    assert_bytes(c.cmd(&["SELECT", "3"]), b"+OK\r\n");
    assert_bytes(c.cmd(&["SET", "k", "v"]), b"+OK\r\n");
    wait_streaming(&source, &proxy);
    assert_bytes(cutover(&proxy, &["TIMEOUT", "5000"]), b"+OK\r\n");
    // Still "db 3" for the client: its keys are where the syncer put them (target db 5).
    assert_bytes(c.cmd(&["GET", "k"]), bulk("v"));
    assert_bytes(c.cmd(&["SET", "k2", "w"]), b"+OK\r\n");
    let mut t = target.wire();
    t.cmd(&["SELECT", "5"]);
    assert_bytes(t.cmd(&["MGET", "k", "k2"]), b"*2\r\n$1\r\nv\r\n$1\r\nw\r\n");
    // A new client selecting db 3 finds them too.
    let mut d = proxy.wire();
    d.cmd(&["SELECT", "3"]);
    assert_bytes(d.cmd(&["GET", "k2"]), bulk("w"));
}
