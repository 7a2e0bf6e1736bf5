//! The syncer against real servers: full load, live stream, offsets, resume after every
//! kind of interruption, exactly-once through each fault (a concurrent INCR counter).

use std::thread;
use std::time::{Duration, Instant};

use support::*;

fn keys_of(server: &RedisServer, db: u32) -> Vec<Vec<u8>> {
    let mut w = server.wire();
    w.cmd(&["SELECT", &db.to_string()]);
    scan_keys(&mut w)
}

/// Every key of every db is on the target with the same value (DEBUG DIGEST-VALUE, which
/// ignores encodings) and a TTL within `tol_ms`; and the target has nothing else but the
/// checkpoint.
#[track_caller]
fn assert_same_data(source: &RedisServer, target: &RedisServer) {
    let mut s = source.wire();
    let mut t = target.wire();
    for db in 0..16u32 {
        let dbs = db.to_string();
        s.cmd(&["SELECT", &dbs]);
        t.cmd(&["SELECT", &dbs]);
        let keys = keys_of(source, db);
        for k in &keys {
            assert_same_key(&mut s, &mut t, k, &format!("db {db}"));
        }
        let own = u64::from(db == 0);
        let ts = t.value(&["DBSIZE"]).int() as u64;
        let expected = keys.len() as u64 + if ts > keys.len() as u64 { own } else { 0 };
        assert_eq!(ts, expected, "db {db}: target has extra keys");
    }
}

fn counter_writer(
    proxy_addr: std::net::SocketAddr,
    key: &'static str,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> thread::JoinHandle<u64> {
    thread::spawn(move || {
        let mut w = Wire::connect(proxy_addr);
        let mut acked = 0u64;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            match w.try_cmd(&["INCR", key]) {
                Ok(r) if r.starts_with(b":") => acked += 1,
                Ok(r) => panic!("INCR failed: {}", show(&r)),
                Err(e) => panic!("INCR connection failed: {e}"),
            }
        }
        acked
    })
}

#[test]
fn full_sync_then_live_stream_every_type() {
    if skip_direct("the syncer") {
        return;
    }
    let source = sync_source();
    let target = RedisServer::start();
    let mut s = source.wire();
    fill_every_type(&mut s, "before", &[]);
    s.cmd(&["SELECT", "3"]);
    fill_every_type(&mut s, "db3", &[]);
    s.cmd(&["SELECT", "0"]);
    let lib = "#!lua name=cutoverlib\nredis.register_function('echo1', function(keys, args) return args[1] end)";
    assert_bytes(s.cmd(&["FUNCTION", "LOAD", lib]), bulk("cutoverlib"));
    let proxy = cutover_with_target(&source, &target, &[]);
    wait_caught_up(&source, &proxy);
    assert_same_data(&source, &target);
    assert_bytes(target.cmd(&["FCALL", "echo1", "0", "x"]), bulk("x"));
    let st = proxy.status();
    assert!(st["keys_loaded"].parse::<u64>().unwrap() > 30, "{st:?}");
    assert_eq!(st["full_syncs"], "1");

    // Live writes through the proxy, in several dbs and inside transactions.
    let mut p = proxy.wire();
    fill_every_type(&mut p, "after", &[]);
    p.cmd(&["SELECT", "5"]);
    fill_every_type(&mut p, "db5", &[]);
    p.send(b"MULTI\r\nINCR txn\r\nINCR txn\r\nEXEC\r\n");
    for _ in 0..4 {
        p.read_reply();
    }
    p.cmd(&["SELECT", "0"]);
    assert_bytes(p.cmd(&["DEL", "before:str"]), int(1));
    assert_bytes(p.cmd(&["EXPIRE", "before:list-small", "1000"]), int(1));
    p.cmd(&[
        "EVAL",
        "redis.call('SET', KEYS[1], 'x'); redis.call('INCR', KEYS[2]); return 1",
        "2",
        "ev1",
        "ev2",
    ]);
    wait_caught_up(&source, &proxy);
    assert_same_data(&source, &target);
    assert_eq!(proxy.status()["lag_bytes"], "0");
}

#[test]
fn source_link_killed_while_streaming_resumes_without_full_sync() {
    if skip_direct("the syncer") {
        return;
    }
    let source = sync_source();
    let target = RedisServer::start();
    let proxy = cutover_with_target(&source, &target, &[]);
    wait_caught_up(&source, &proxy);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = (0..3)
        .map(|_| counter_writer(proxy.addr(), "counter", stop.clone()))
        .collect();
    let full_before = source.info_field("stats", "sync_full").unwrap();
    for i in 0..3 {
        let before: u64 = source
            .info_field("stats", "sync_partial_ok")
            .unwrap()
            .parse()
            .unwrap();
        poll_until(SYNC_WAIT, || proxy.status()["sync_state"] == "streaming");
        thread::sleep(Duration::from_millis(100)); // let writes flow between kills
        assert_bytes(source.cmd(&["CLIENT", "KILL", "TYPE", "replica"]), int(1));
        poll_until(SYNC_WAIT, || {
            source
                .info_field("stats", "sync_partial_ok")
                .unwrap()
                .parse::<u64>()
                .unwrap()
                > before
        });
        let _ = i;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let acked: u64 = writers.into_iter().map(|w| w.join().unwrap()).sum();
    wait_caught_up(&source, &proxy);
    assert_eq!(
        source.info_field("stats", "sync_full").unwrap(),
        full_before,
        "a full sync happened"
    );
    assert_bytes(source.cmd(&["GET", "counter"]), bulk(acked.to_string()));
    assert_bytes(target.cmd(&["GET", "counter"]), bulk(acked.to_string()));
    assert_eq!(proxy.status()["partial_syncs"], "3");
}

#[test]
fn cutover_killed_and_restarted_applies_nothing_twice() {
    if skip_direct("the syncer") {
        return;
    }
    let source = sync_source();
    // A resume continues if the source still has the stream from there: two writers going
    // flat out outrun a restarting debug build by more than the default 1 MB backlog on a
    // loaded machine (a run overran it and got a second, legitimate, full sync), as in the
    // cluster version of this test.
    source.cmd(&["CONFIG", "SET", "repl-backlog-size", "64mb"]);
    let target = RedisServer::start();
    let proxy = cutover_with_target(&source, &target, &[]);
    wait_caught_up(&source, &proxy);
    // Two writers straight to the source, so they keep going while cutover is down.
    let key = "restart-counter".to_string();
    let counters = Counters::start(vec![(source.addr(), vec![key.clone()]); 2]);
    let proxy = kill_while_applying(proxy, 3, &counters, || {
        cutover_with_target(&source, &target, &[])
    });
    let counts = counters.finish();
    wait_caught_up(&source, &proxy);
    assert_bytes(target.cmd(&["GET", &key]), bulk(counts[&key].to_string()));
    // Every restart continued the stream: no second full sync. (The last process resumed
    // by PSYNC; how many times its link reconnected since is not the claim here.)
    assert_eq!(source.info_field("stats", "sync_full").unwrap(), "1");
    let status = proxy.status();
    assert_eq!(status["full_syncs"], "0", "{status:?}");
    assert_ne!(status["partial_syncs"], "0", "{status:?}");
}

#[test]
fn target_restarted_while_streaming_resumes_from_its_checkpoint() {
    if skip_direct("the syncer") {
        return;
    }
    let source = sync_source();
    // The target must keep its data (and the checkpoint) across the restart.
    let mut target = RedisServer::builder()
        .args(&["--appendonly", "yes", "--appendfsync", "always"])
        .start();
    let proxy = cutover_with_target(&source, &target, &[]);
    wait_caught_up(&source, &proxy);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = counter_writer(proxy.addr(), "tcounter", stop.clone());
    poll_until(SYNC_WAIT, || target.cmd(&["EXISTS", "tcounter"]) == int(1));
    target.restart();
    poll_until(SYNC_WAIT, || proxy.status()["sync_state"] == "streaming");
    thread::sleep(Duration::from_millis(200));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let acked = writer.join().unwrap();
    wait_caught_up(&source, &proxy);
    assert_bytes(target.cmd(&["GET", "tcounter"]), bulk(acked.to_string()));
    assert_eq!(source.info_field("stats", "sync_full").unwrap(), "1");
}

#[test]
fn backlog_overrun_forces_a_full_resync_that_is_reported() {
    if skip_direct("the syncer") {
        return;
    }
    let source = RedisServer::builder()
        .args(&[
            "--repl-diskless-sync-delay",
            "0",
            "--repl-backlog-size",
            "16kb",
        ])
        .start();
    let target = RedisServer::start();
    let mut proxy = cutover_with_target(&source, &target, &[]);
    wait_caught_up(&source, &proxy);
    proxy.kill();
    let mut s = source.wire();
    let big = "x".repeat(1000);
    for i in 0..200 {
        s.cmd(&["SET", &format!("k{i}"), &big]);
    }
    let proxy = cutover_with_target(&source, &target, &[]);
    wait_caught_up(&source, &proxy);
    assert_eq!(source.info_field("stats", "sync_full").unwrap(), "2");
    assert_eq!(proxy.status()["full_syncs"], "1");
    assert_same_data(&source, &target);
    let log = proxy.log_tail();
    assert!(log.contains("FULLRESYNC"), "not reported: {log}");
}

#[test]
fn a_target_with_data_is_refused_with_a_clear_message() {
    if skip_direct("the syncer") {
        return;
    }
    let source = sync_source();
    let target = RedisServer::start();
    target.cmd(&["SET", "precious", "1"]);
    let proxy = cutover_with_target(&source, &target, &[]);
    poll_until(SYNC_WAIT, || proxy.status()["sync_state"] == "error");
    let err = &proxy.status()["last_error"];
    assert!(err.contains("not empty") && err.contains("db0"), "{err}");
    assert_bytes(target.cmd(&["GET", "precious"]), bulk("1"));
    // The proxy itself keeps serving clients.
    assert_bytes(proxy.wire().cmd(&["PING"]), b"+PONG\r\n");
}

#[test]
fn with_psync_forced_a_source_that_forbids_it_says_to_use_the_scan_copy() {
    if skip_direct("the syncer") {
        return;
    }
    let source = RedisServer::builder()
        .args(&["--rename-command", "PSYNC", ""])
        .start();
    let target = RedisServer::start();
    let proxy = cutover_with_target(&source, &target, &["--source-mode", "psync"]);
    poll_until(SYNC_WAIT, || proxy.status()["sync_state"] == "error");
    let err = &proxy.status()["last_error"];
    assert!(
        err.contains("SCAN copy") && err.contains("source_mode"),
        "{err}"
    );
}

#[test]
fn big_values_and_expiring_keys() {
    if skip_direct("the syncer") {
        return;
    }
    let source = sync_source();
    let target = RedisServer::start();
    let mut s = source.wire();
    let eight_mb = "v".repeat(8 * 1024 * 1024);
    s.cmd(&["SET", "big-string", &eight_mb]);
    let mut hset = vec!["HSET".to_string(), "big-hash".to_string()];
    for i in 0..200_000 {
        hset.push(format!("f{i}"));
        hset.push(format!("{i}"));
    }
    assert_bytes(s.cmd(&hset), int(200_000));
    for i in 0..200 {
        s.cmd(&["SET", &format!("short:{i}"), "x", "PX", "300"]);
    }
    let started = Instant::now();
    let proxy = cutover_with_target(&source, &target, &[]);
    wait_caught_up(&source, &proxy);
    // Keys that expired during the transfer are gone on the target too (or go within
    // their TTL), never left without one.
    poll_until(SYNC_WAIT, || {
        started.elapsed() > Duration::from_millis(400)
            && target.cmd(&["EXISTS", "short:1"]) == int(0)
    });
    wait_caught_up(&source, &proxy);
    assert_same_data(&source, &target);
}

#[test]
fn from_redis_6_2_to_7_0() {
    if skip_direct("the syncer") {
        return;
    }
    let source = RedisServer::builder()
        .redis62()
        .args(&["--repl-diskless-sync-delay", "0"])
        .start();
    let target = RedisServer::start();
    let mut s = source.wire();
    fill_every_type(&mut s, "before", &[]);
    let sha = s
        .value(&["SCRIPT", "LOAD", "return redis.call('INCR', KEYS[1])"])
        .text();
    let proxy = cutover_with_target(&source, &target, &[]);
    wait_caught_up(&source, &proxy);
    assert_same_data(&source, &target);
    let mut p = proxy.wire();
    fill_every_type(&mut p, "after", &[]);
    p.cmd(&["SET", "rel-ttl", "v", "EX", "1000"]);
    p.cmd(&[
        "EVAL",
        "return redis.call('INCR', KEYS[1])",
        "1",
        "scripted",
    ]);
    p.cmd(&["EVALSHA", &sha, "1", "scripted"]);
    wait_caught_up(&source, &proxy);
    assert_same_data(&source, &target);
    assert_bytes(target.cmd(&["GET", "scripted"]), bulk("2"));
}

#[test]
fn source_link_killed_during_the_rdb_transfer_loads_again_exactly() {
    if skip_direct("the syncer") {
        return;
    }
    let source = sync_source();
    let target = RedisServer::start();
    assert_bytes(
        source.cmd(&["DEBUG", "POPULATE", "500000", "bulk", "100"]),
        b"+OK\r\n",
    );
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let proxy = cutover_with_target(&source, &target, &[]);
    let writer = counter_writer(proxy.addr(), "rdb-counter", stop.clone());
    // Cut the link while the RDB is streaming.
    let mut admin = proxy.admin();
    admin.set_timeout(Duration::from_secs(5));
    poll_until(SYNC_WAIT, || {
        let st = Value::parse(&admin.cmd(&["STATUS"])).text();
        st.contains("sync_state:full_sync") && !st.contains("rdb_bytes_loaded:0\r")
    });
    assert_bytes(source.cmd(&["CLIENT", "KILL", "TYPE", "replica"]), int(1));
    poll_until(SYNC_WAIT, || proxy.status()["full_syncs"] == "2");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let acked = writer.join().unwrap();
    wait_caught_up(&source, &proxy);
    assert_bytes(target.cmd(&["GET", "rdb-counter"]), bulk(acked.to_string()));
    assert_eq!(
        target.wire().value(&["DBSIZE"]).int(),
        source.wire().value(&["DBSIZE"]).int() + 1,
        "the checkpoint and exactly the source's keys"
    );
    assert_bytes(
        target.cmd(&["DEBUG", "DIGEST-VALUE", "bulk:123456"]),
        source.cmd(&["DEBUG", "DIGEST-VALUE", "bulk:123456"]),
    );
}

#[test]
fn a_stalled_target_makes_the_stream_wait_in_the_spool_not_the_source() {
    if skip_direct("the syncer") {
        return;
    }
    let source = sync_source();
    let target = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("cutover.toml");
    std::fs::write(
        &cfg,
        format!(
            "[sync]\nmax_inflight_bytes = 65536\nspool_dir = \"{}\"\n",
            dir.path().join("spool").display()
        ),
    )
    .unwrap();
    let proxy = cutover_with_target(&source, &target, &["--config", cfg.to_str().unwrap()]);
    wait_caught_up(&source, &proxy);
    target.signal("-STOP");
    let value = "v".repeat(10_000);
    let mut s = source.wire();
    for i in 0..3000 {
        s.send_cmd(&["SET", &format!("spooled:{i}"), &value]);
    }
    for _ in 0..3000 {
        s.read_reply();
    }
    // 30 MB arrived while the target took nothing: past the memory part, it is on disk.
    poll_until(SYNC_WAIT, || proxy.status_u64("spool_bytes") > 0);
    assert!(
        std::fs::read_dir(dir.path().join("spool")).unwrap().count() == 1,
        "the spool file is in the configured directory"
    );
    // The source never dropped us.
    assert_eq!(source.info_field("stats", "sync_full").unwrap(), "1");
    target.signal("-CONT");
    wait_caught_up(&source, &proxy);
    assert_eq!(proxy.status_u64("spool_bytes"), 0);
    assert_eq!(source.info_field("stats", "sync_partial_ok").unwrap(), "0");
    assert_same_data(&source, &target);
}

/// A relay in front of `upstream` that delivers what the server sends in pieces of 1 to 7
/// bytes: every partial-frame path of the replica (payload header, the diskless EOF mark
/// straddling reads, stream commands) gets exercised.
fn shredding_relay(upstream: std::net::SocketAddr) -> u16 {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { return };
            let Ok(server) = std::net::TcpStream::connect(upstream) else {
                return;
            };
            let _ = client.set_nodelay(true);
            let (mut c_read, mut s_write) =
                (client.try_clone().unwrap(), server.try_clone().unwrap());
            thread::spawn(move || {
                let mut buf = [0u8; 65536];
                while let Ok(n) = c_read.read(&mut buf) {
                    if n == 0 || s_write.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                let _ = s_write.shutdown(std::net::Shutdown::Write);
            });
            let (mut s_read, mut c_write) = (server, client);
            thread::spawn(move || {
                let mut buf = [0u8; 65536];
                let mut piece = 1usize;
                while let Ok(n) = s_read.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let mut at = 0;
                    while at < n {
                        let end = (at + piece).min(n);
                        if c_write.write_all(&buf[at..end]).is_err() {
                            return;
                        }
                        at = end;
                        piece = piece % 7 + 1;
                    }
                }
                let _ = c_write.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    port
}

#[test]
fn payload_and_stream_framing_survive_any_segmentation() {
    if skip_direct("the syncer") {
        return;
    }
    for diskless in ["yes", "no"] {
        let source = RedisServer::builder()
            .args(&[
                "--repl-diskless-sync-delay",
                "0",
                "--repl-diskless-sync",
                diskless,
            ])
            .start();
        let target = RedisServer::start();
        let mut s = source.wire();
        fill_every_type(&mut s, "seg", &[]);
        let relay = shredding_relay(source.addr());
        let proxy = Cutover::builder(&source)
            .source_url(&format!("redis://127.0.0.1:{relay}"))
            .args(&["--target", &target.url()])
            .start();
        wait_caught_up(&source, &proxy);
        let mut p = proxy.wire();
        fill_every_type(&mut p, "seg-live", &[]);
        for i in 0..200 {
            p.cmd(&["INCR", &format!("segc{}", i % 7)]);
        }
        wait_caught_up(&source, &proxy);
        assert_same_data(&source, &target);
    }
}

#[test]
fn db_map_renumbers_dbs_in_the_load_and_the_stream() {
    if skip_direct("the syncer") {
        return;
    }
    let source = sync_source();
    let target = RedisServer::start();
    let mut s = source.wire();
    s.cmd(&["SET", "in0", "a"]);
    s.cmd(&["SELECT", "3"]);
    s.cmd(&["SET", "in3", "b"]);
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, "[sync.db_map]\n\"3\" = 5\n").unwrap();
    let proxy = cutover_with_target(&source, &target, &["--config", cfg.to_str().unwrap()]);
    wait_caught_up(&source, &proxy);
    let mut t = target.wire();
    assert_bytes(t.cmd(&["GET", "in0"]), bulk("a"));
    t.cmd(&["SELECT", "5"]);
    assert_bytes(t.cmd(&["GET", "in3"]), bulk("b"));
    t.cmd(&["SELECT", "3"]);
    assert_bytes(t.cmd(&["DBSIZE"]), int(0));
    // Live writes in db 3 land in db 5, across transactions and after other dbs.
    let mut p = proxy.wire();
    p.cmd(&["SELECT", "3"]);
    p.cmd(&["SET", "live3", "c"]);
    p.cmd(&["SELECT", "0"]);
    p.cmd(&["SET", "live0", "d"]);
    p.cmd(&["SELECT", "3"]);
    p.cmd(&["INCR", "n3"]);
    wait_caught_up(&source, &proxy);
    t.cmd(&["SELECT", "5"]);
    assert_bytes(
        t.cmd(&["MGET", "live3", "n3"]),
        b"*2\r\n$1\r\nc\r\n$1\r\n1\r\n",
    );
    t.cmd(&["SELECT", "0"]);
    assert_bytes(t.cmd(&["GET", "live0"]), bulk("d"));
    t.cmd(&["SELECT", "3"]);
    assert_bytes(t.cmd(&["DBSIZE"]), int(0));
}

#[test]
fn during_the_full_load_a_frozen_target_does_not_slow_the_source_link() {
    if skip_direct("the syncer") {
        return;
    }
    // Disk-based transfer: the payload's size is announced, so "all of it arrived" shows.
    let source = RedisServer::builder()
        .args(&[
            "--repl-diskless-sync",
            "no",
            "--repl-diskless-sync-delay",
            "0",
            "--rdbcompression",
            "no",
        ])
        .start();
    let target = RedisServer::start();
    assert_bytes(
        source.cmd(&["DEBUG", "POPULATE", "300000", "pk", "100"]),
        b"+OK\r\n",
    );
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        format!(
            "[sync]\nspool_dir = \"{}\"\n",
            dir.path().join("spool").display()
        ),
    )
    .unwrap();
    let proxy = cutover_with_target(&source, &target, &["--config", cfg.to_str().unwrap()]);
    poll_until(SYNC_WAIT, || proxy.status()["sync_state"] == "full_sync");
    target.signal("-STOP");
    // The whole payload arrives although the target applies nothing: it waits on disk.
    let all = try_poll_until(SYNC_WAIT, || {
        let st = proxy.status();
        let total: u64 = st["rdb_bytes"].parse().unwrap_or(0);
        total > 0 && st["rdb_bytes_loaded"].parse::<u64>().unwrap_or(0) == total
    });
    let st = proxy.status();
    target.signal("-CONT");
    assert!(
        all,
        "the payload did not all arrive while the target was frozen: {st:?}"
    );
    assert!(st["spool_bytes"].parse::<u64>().unwrap() > 0, "{st:?}");
    wait_caught_up(&source, &proxy);
    assert_eq!(
        target.wire().value(&["DBSIZE"]).int(),
        source.wire().value(&["DBSIZE"]).int() + 1
    );
    assert_bytes(
        target.cmd(&["DEBUG", "DIGEST-VALUE", "pk:299999"]),
        source.cmd(&["DEBUG", "DIGEST-VALUE", "pk:299999"]),
    );
}
