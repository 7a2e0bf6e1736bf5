//! The SCAN copy against real servers standing in for a managed Redis (SYNC, PSYNC,
//! CONFIG, DEBUG and KEYS renamed away; or an ACL user without them and without CLIENT
//! PAUSE): the every-type dataset copied while clients write through the proxy (counters,
//! lists, MULTI/EXEC, EVAL, DEL, EXPIRE, RENAME, FLUSHDB), then CUTOVER under load: every
//! acknowledged write on the target exactly once, no client error, every other key equal
//! (DIGEST-VALUE and PTTL).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use support::*;

const WAIT: Duration = Duration::from_secs(60);
/// DEBUG under the name the stand-in keeps it for the test's own checks.
const DEBUG: &str = "TESTDEBUG";

/// A source standing in for a managed service: replication, CONFIG, DEBUG and KEYS
/// renamed away (DEBUG kept under a name only this test knows, to compare digests).
fn managed_source() -> RedisServer {
    RedisServer::builder()
        .args(&[
            "--rename-command",
            "SYNC",
            "",
            "--rename-command",
            "PSYNC",
            "",
            "--rename-command",
            "CONFIG",
            "",
            "--rename-command",
            "KEYS",
            "",
            "--rename-command",
            "DEBUG",
            DEBUG,
        ])
        .start()
}

/// Keys the application load writes (they go on on the target after the switch).
fn written_by_load(k: &[u8]) -> bool {
    [
        "c:", "m:", "l:", "last:", "r:", "key:", "counter:", "mylist",
    ]
    .iter()
    .any(|p| k.starts_with(p.as_bytes()))
}

/// Every key of `db` but the load's and cutover's own is the same on both sides.
fn assert_same_db(source: &RedisServer, target: &RedisServer, db: u32, source_debug: &str) {
    let mut s = source.wire();
    let mut t = target.wire();
    s.cmd(&["SELECT", &db.to_string()]);
    t.cmd(&["SELECT", &db.to_string()]);
    let keep = |k: &Vec<u8>| !written_by_load(k) && !k.starts_with(b"__cutover:");
    let mut sk: Vec<Vec<u8>> = scan_keys(&mut s).into_iter().filter(keep).collect();
    let mut tk: Vec<Vec<u8>> = scan_keys(&mut t).into_iter().filter(keep).collect();
    sk.sort();
    tk.sort();
    assert_eq!(sk.len(), tk.len(), "db{db}: key counts differ");
    assert!(sk == tk, "db{db}: the key names differ");
    for k in &sk {
        let a = s.cmd(&[source_debug.as_bytes(), b"DIGEST-VALUE", k]);
        let b = t.cmd(&[&b"DEBUG"[..], b"DIGEST-VALUE", k]);
        assert_eq!(show(&a), show(&b), "db{db} key {} differs", show(k));
        let pa = s.value(&[&b"PTTL"[..], k]).int();
        let pb = t.value(&[&b"PTTL"[..], k]).int();
        assert!(
            (pa < 0 && pa == pb) || (pa >= 0 && pb >= 0 && (pa - pb).abs() < 2_000),
            "db{db} key {}: PTTL {pa} vs {pb}",
            show(k)
        );
    }
}

/// Writes through the proxy to the dataset while the copy runs: overwrites, deletes,
/// expiries, renames, a transaction and a script; stops when told. Returns how many
/// rounds it made.
fn mutator(addr: std::net::SocketAddr, stop: Arc<AtomicBool>) -> thread::JoinHandle<u64> {
    thread::spawn(move || {
        let mut w = Wire::connect(addr);
        w.set_timeout(Duration::from_secs(20));
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let i = n % 20_000;
            let k = format!("key:{i}");
            let _ = k;
            let d = format!("k:{i}");
            assert_bytes(w.cmd(&["SET", &d, &format!("new{n}")]), b"+OK\r\n");
            assert_bytes(w.cmd(&["DEL", &format!("k:{}", i + 20_000)]), int(1));
            assert_bytes(
                w.cmd(&["PEXPIRE", &format!("k:{}", i + 40_000), "900000"]),
                int(1),
            );
            assert_bytes(
                w.cmd(&[
                    "RENAME",
                    &format!("k:{}", i + 60_000),
                    &format!("renamed:{i}"),
                ]),
                b"+OK\r\n",
            );
            w.cmd(&["MULTI"]);
            w.cmd(&["HSET", &format!("h:{i}"), "f", &n.to_string()]);
            w.cmd(&["SADD", "members", &n.to_string()]);
            let exec = w.value(&["EXEC"]);
            assert_eq!(exec.items().len(), 2, "EXEC");
            assert_bytes(
                w.cmd(&[
                    "EVAL",
                    "return redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])",
                    "1",
                    "scores",
                    &n.to_string(),
                    &format!("m{i}"),
                ]),
                int(1),
            );
            n += 1;
            if n >= 20_000 {
                break;
            }
        }
        n
    })
}

#[test]
fn a_managed_source_is_copied_by_scan_under_load_and_switched_losing_nothing() {
    if skip_direct("the SCAN copy") {
        return;
    }
    let source = managed_source();
    let target = RedisServer::start();
    {
        let mut s = source.wire();
        assert_bytes(s.cmd(&[DEBUG, "POPULATE", "80000", "k"]), b"+OK\r\n");
        fill_every_type(&mut s, "every", &[]);
        s.cmd(&["SELECT", "2"]);
        fill_every_type(&mut s, "db2", &[]);
        s.cmd(&["SET", "db2:gone", "x"]);
    }
    // auto: PSYNC is refused, so the SCAN copy.
    let proxy = Cutover::start(&source, &["--target", &target.url()]);
    let stop = Arc::new(AtomicBool::new(false));
    let mutate = mutator(proxy.addr(), stop.clone());
    let load = AppLoad::start(proxy.addr(), 100_000);
    // A FLUSHDB through the proxy while the copy runs: a barrier, applied on the target too.
    {
        let mut w = Wire::connect(proxy.addr());
        poll_until(WAIT, || {
            proxy.status()["sync_mode"] == "scan" && proxy.status_u64("scan_keys_copied") > 0
        });
        w.cmd(&["SELECT", "2"]);
        assert_bytes(w.cmd(&["FLUSHDB"]), b"+OK\r\n");
        fill_every_type(&mut w, "db2again", &[]);
    }
    poll_until(WAIT, || proxy.status()["sync_state"] == "scan_rounds");
    thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let mutations = mutate.join().expect("the mutator saw an error");
    assert!(mutations > 0);
    let before = proxy.status();
    assert_bytes(cutover(&proxy, &["TIMEOUT", "10000"]), b"+OK\r\n");
    let st = proxy.status();
    assert_eq!(st["route"], "target", "{st:?}");
    thread::sleep(Duration::from_millis(300));
    let rounds = load.finish();
    assert_acked_writes(&rounds, |_| target.wire());
    for db in [0, 2] {
        assert_same_db(&source, &target, db, DEBUG);
    }
    assert_bytes(target.cmd(&["EXISTS", "k:20000"]), int(0));
    assert!(
        before["scan_keys_total"].parse::<u64>().unwrap() >= 80_000,
        "{before:?}"
    );
    assert_eq!(st["untracked_writes"], "0", "{st:?}");
    // The writes during the copy were tracked and copied again.
    assert!(
        before["scan_keys_recopied"].parse::<u64>().unwrap() > 0,
        "{before:?}"
    );
    assert_eq!(st["sync_mode"], "scan");
    assert_eq!(st["source_writes_after_fence"], "0", "{st:?}");
    eprintln!("before the switch: {before:?}\nafter: {st:?}");
}

#[test]
fn auto_mode_replicates_a_source_that_grants_psync() {
    if skip_direct("the syncer") {
        return;
    }
    let source = sync_source();
    source.cmd(&["SET", "a", "1"]);
    let target = RedisServer::start();
    let proxy = Cutover::start(&source, &["--target", &target.url()]);
    wait_caught_up(&source, &proxy);
    let st = proxy.status();
    assert_eq!(st["sync_mode"], "psync", "{st:?}");
    assert_eq!(st["sync_state"], "streaming");
    assert_bytes(target.cmd(&["GET", "a"]), bulk("1"));
}

#[test]
fn an_acl_user_without_replication_or_client_pause_is_copied_and_switched() {
    if skip_direct("the SCAN copy") {
        return;
    }
    let source = RedisServer::start();
    source.cmd(&[
        "ACL",
        "SETUSER",
        "app",
        "on",
        ">apppw",
        "~*",
        "&*",
        "+@all",
        "-psync",
        "-sync",
        "-replconf",
        "-client|pause",
        "-client|unpause",
        "-config",
        "-debug",
        "-keys",
    ]);
    {
        let mut s = source.wire();
        fill_every_type(&mut s, "acl", &[]);
    }
    let target = RedisServer::start();
    let url = format!("redis://app:apppw@127.0.0.1:{}", source.port());
    let proxy = Cutover::builder(&source)
        .source_url(&url)
        .args(&["--target", &target.url(), "--source-mode", "scan"])
        .start();
    poll_until(WAIT, || proxy.status()["sync_state"] == "scan_rounds");
    let mut w = proxy.wire();
    assert_bytes(w.cmd(&["INCR", "acl:counter"]), int(1));
    assert_bytes(w.cmd(&["DEL", "acl:str"]), int(1));
    // MAXDIRTY refuses while more is dirty than allowed (the two keys just written may
    // already be copied: then it passes, which is also right).
    let refused = cutover(&proxy, &["CHECK", "MAXDIRTY", "0"]);
    assert!(
        refused.starts_with(b"+OK") || String::from_utf8_lossy(&refused).contains("MAXDIRTY"),
        "{}",
        show(&refused)
    );
    assert_bytes(cutover(&proxy, &["TIMEOUT", "5000"]), b"+OK\r\n");
    assert_eq!(proxy.status()["route"], "target");
    assert_bytes(target.cmd(&["GET", "acl:counter"]), bulk("1"));
    assert_bytes(target.cmd(&["EXISTS", "acl:str"]), int(0));
    assert_same_db(&source, &target, 0, "DEBUG");
    assert_bytes(w.cmd(&["INCR", "acl:counter"]), int(2));
}

#[test]
fn a_writer_that_bypasses_the_proxy_is_reported() {
    if skip_direct("the SCAN copy") {
        return;
    }
    let source = managed_source();
    let target = RedisServer::start();
    let proxy = Cutover::start(
        &source,
        &["--target", &target.url(), "--source-mode", "scan"],
    );
    poll_until(WAIT, || proxy.status()["sync_state"] == "scan_rounds");
    // Writes through the proxy are tracked, then a writer straight to the source is not:
    // it shows within a few seconds, and only it.
    let mut p = proxy.wire();
    for i in 0..200 {
        assert_bytes(p.cmd(&["SET", &format!("via:{i}"), "1"]), b"+OK\r\n");
    }
    // (Written on at each poll: the watcher's first sample may come after the first ones.)
    let mut s = source.wire();
    let mut bypassed = 0u64;
    poll_until(WAIT, || {
        for _ in 0..50 {
            assert_bytes(
                s.cmd(&["SET", &format!("bypass:{bypassed}"), "1"]),
                b"+OK\r\n",
            );
            bypassed += 1;
        }
        proxy.status_u64("untracked_writes") >= 100
    });
    let n = proxy.status_u64("untracked_writes");
    assert!(
        n <= bypassed,
        "proxied writes counted as untracked: {n} of {bypassed}"
    );
}

#[test]
fn a_scan_dump_of_a_managed_source_is_an_rdb_redis_loads() {
    if skip_direct("cutover dump") {
        return;
    }
    let source = managed_source();
    {
        let mut s = source.wire();
        fill_every_type(&mut s, "sd", &["0.1", "tenth"]);
        assert_bytes(s.cmd(&[DEBUG, "POPULATE", "3000", "pop", "40"]), b"+OK\r\n");
        assert_bytes(
            s.cmd(&[
                "FUNCTION",
                "LOAD",
                "#!lua name=slib\nredis.register_function('sf', function(keys, args) return args[1] end)",
            ]),
            bulk("slib"),
        );
        s.cmd(&["SELECT", "3"]);
        fill_every_type(&mut s, "sd3", &[]);
    }
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("scan.rdb");
    // auto: PSYNC is refused, so SCAN + DUMP.
    let o = std::process::Command::new(cutover_bin())
        .args(["dump", "--source", &source.url()])
        .arg(&file)
        .output()
        .expect("run cutover dump");
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success() && out.contains("SCAN + DUMP"),
        "{out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let check = std::process::Command::new("redis-check-rdb")
        .arg(&file)
        .output()
        .expect("run redis-check-rdb");
    let report = String::from_utf8_lossy(&check.stdout);
    assert!(
        check.status.success() && report.contains("RDB looks OK"),
        "{report}"
    );
    // A fresh server started on the file holds what the source holds.
    let fresh = RedisServer::builder()
        .args(&[
            "--dir",
            tmp.path().to_str().unwrap(),
            "--dbfilename",
            "scan.rdb",
        ])
        .start();
    for db in [0, 3] {
        assert_same_db(&source, &fresh, db, DEBUG);
    }
    assert_bytes(fresh.cmd(&["FCALL", "sf", "0", "hi"]), bulk("hi"));
}

/// What a key holds, read with ordinary commands (a 6.2 and a 7.0 side compare).
fn content(w: &mut Wire, key: &str) -> String {
    let t = w.value(&["TYPE", key]).text();
    let mut v = match t.as_str() {
        "string" => vec![w.value(&["GET", key]).text()],
        "list" => w
            .value(&["LRANGE", key, "0", "-1"])
            .items()
            .iter()
            .map(|x| x.text())
            .collect(),
        "set" => w
            .value(&["SMEMBERS", key])
            .items()
            .iter()
            .map(|x| x.text())
            .collect(),
        "hash" => w
            .value(&["HGETALL", key])
            .items()
            .iter()
            .map(|x| x.text())
            .collect(),
        "zset" => w
            .value(&["ZRANGE", key, "0", "-1", "WITHSCORES"])
            .items()
            .iter()
            .map(|x| x.text())
            .collect(),
        _ => vec![],
    };
    if t == "set" || t == "hash" {
        v.sort();
    }
    let ttl = w.value(&["PTTL", key]).int();
    format!("{t} {v:?} ttl:{}", if ttl > 0 { "yes" } else { "no" })
}

#[test]
fn rounds_into_an_older_target_re_create_values() {
    if skip_direct("the SCAN copy") {
        return;
    }
    let source = RedisServer::start();
    source.cmd(&["SET", "before", "1"]);
    let target = RedisServer::builder().redis62().start();
    let proxy = Cutover::start(
        &source,
        &["--target", &target.url(), "--source-mode", "scan"],
    );
    poll_until(WAIT, || proxy.status()["sync_state"] == "scan_rounds");
    // Written after the first pass: copied by the rounds, into a 6.2 that refuses 7.0's
    // RESTORE payloads.
    let mut p = proxy.wire();
    p.cmd(&["RPUSH", "l", "a", "b", "c"]);
    p.cmd(&["HSET", "h", "f", "1", "g", "2"]);
    p.cmd(&["SADD", "s", "x", "y"]);
    p.cmd(&["ZADD", "z", "1.5", "m", "2", "n"]);
    p.cmd(&["SET", "t", "v", "PX", "900000"]);
    p.cmd(&["INCR", "before"]);
    assert_bytes(cutover(&proxy, &["TIMEOUT", "5000"]), b"+OK\r\n");
    let (mut s, mut t) = (source.wire(), target.wire());
    for k in ["before", "l", "h", "s", "z", "t"] {
        assert_eq!(content(&mut s, k), content(&mut t, k), "key {k}");
    }
}

#[test]
fn with_keyspace_notifications_on_writers_that_bypass_the_proxy_are_copied_too() {
    if skip_direct("the SCAN copy") {
        return;
    }
    let source = RedisServer::builder()
        .args(&["--notify-keyspace-events", "KEA"])
        .start();
    source.cmd(&["SET", "before", "1"]);
    let target = RedisServer::start();
    let proxy = Cutover::start(
        &source,
        &["--target", &target.url(), "--source-mode", "scan"],
    );
    poll_until(WAIT, || proxy.status()["sync_state"] == "scan_rounds");
    // Straight to the source: the proxy never sees these writes, the events name them.
    // (Written again at each poll: the subscription may start a moment after the copy.)
    let mut s = source.wire();
    let mut t = target.wire();
    poll_until(WAIT, || {
        s.cmd(&["SELECT", "0"]);
        s.cmd(&["SET", "bypass", "x"]);
        s.cmd(&["HSET", "bypass:h", "f", "1"]);
        s.cmd(&["SET", "before", "2"]);
        s.cmd(&["SELECT", "4"]);
        s.cmd(&["SET", "in4", "y"]);
        thread::sleep(Duration::from_millis(50));
        t.cmd(&["SELECT", "0"]);
        let zero = t.cmd(&["GET", "before"]) == bulk("2")
            && t.cmd(&["GET", "bypass"]) == bulk("x")
            && t.cmd(&["HGET", "bypass:h", "f"]) == bulk("1");
        t.cmd(&["SELECT", "4"]);
        zero && t.cmd(&["GET", "in4"]) == bulk("y")
    });
    // A DEL too.
    s.cmd(&["SELECT", "0"]);
    s.cmd(&["DEL", "bypass"]);
    poll_until(WAIT, || target.cmd(&["EXISTS", "bypass"]) == int(0));
}
