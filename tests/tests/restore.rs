//! `cutover restore`: backup files made by real Redis servers (RDB files, single-file AOFs
//! of 6.2, multi-part AOF directories of 7.0) restored into fresh servers and a cluster,
//! compared key by key with the server that wrote them (DEBUG DIGEST-VALUE and PTTL);
//! point-in-time restore, truncated and corrupted files, and kills during an import.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use support::{
    assert_same_key, cutover_bin, fill_every_type, poll_until, scan_keys, show, RedisCluster,
    RedisServer, Value, Wire, SYNC_WAIT,
};

/// Runs `cutover restore <input> --target <url> <extra...>` to its end.
fn restore(input: &Path, target: &str, extra: &[&str]) -> Output {
    let mut cmd = Command::new(cutover_bin());
    cmd.arg("restore")
        .arg(input)
        .args(["--target", target])
        .args(extra)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null());
    cmd.output().expect("run cutover restore")
}

fn text(o: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[track_caller]
fn restore_ok(input: &Path, target: &str, extra: &[&str]) -> String {
    let o = restore(input, target, extra);
    assert!(o.status.success(), "restore failed: {}", text(&o));
    text(&o)
}

/// Waits until the server has no AOF rewrite under way or scheduled.
fn wait_rewrite_done(s: &RedisServer) {
    poll_until(SYNC_WAIT, || {
        s.info_field("persistence", "aof_rewrite_in_progress")
            .as_deref()
            == Some("0")
            && s.info_field("persistence", "aof_rewrite_scheduled")
                .as_deref()
                == Some("0")
    });
}

/// Writes the dataset the AOF tests restore: every type, counters, a transaction, a
/// script, TTLs, a deleted key, keys in db 3. `round` keeps the keys of two calls apart
/// where they must differ.
fn feed(w: &mut Wire, round: u32) {
    let tag = format!("r{round}");
    fill_every_type(w, &tag, &[]);
    for i in 0..300 {
        w.cmd(&["INCR", &format!("counter:{}", i % 7)]);
    }
    for c in [
        vec!["MULTI"],
        vec!["INCR", "tx:a"],
        vec!["LPUSH", "tx:list", "x"],
        vec!["EXEC"],
    ] {
        let r = w.cmd(&c);
        assert!(!r.starts_with(b"-"), "{c:?}: {}", show(&r));
    }
    let r = w.cmd(&[
        "EVAL",
        "redis.call('SET', KEYS[1], ARGV[1]); return redis.call('INCR', KEYS[2])",
        "2",
        "ev:a",
        "ev:b",
        "v",
    ]);
    assert!(r.starts_with(b":"), "{}", show(&r));
    w.cmd(&["SET", &format!("{tag}:gone"), "x"]);
    w.cmd(&["DEL", &format!("{tag}:gone")]);
    w.cmd(&["SET", "ttl:ex", "v", "EX", "3000"]);
    w.cmd(&["PEXPIRE", &format!("{tag}:str"), "900000"]);
    w.cmd(&["SELECT", "3"]);
    w.cmd(&["SET", &format!("db3:{tag}"), "three"]);
    w.cmd(&["INCR", "db3:counter"]);
    w.cmd(&["SELECT", "0"]);
}

/// Every key of `dbs` on the source is on the target with the same value and TTL, and the
/// target holds nothing else (cutover's own checkpoint aside).
#[track_caller]
fn assert_same_dataset(source: &RedisServer, target: &RedisServer, dbs: &[u32]) {
    let mut s = source.wire();
    let mut t = target.wire();
    for db in dbs {
        let db = db.to_string();
        s.cmd(&["SELECT", &db]);
        t.cmd(&["SELECT", &db]);
        let keys = scan_keys(&mut s);
        for k in &keys {
            assert_same_key(&mut s, &mut t, k, &format!("db{db}"));
        }
        let theirs: Vec<_> = scan_keys(&mut t)
            .into_iter()
            .filter(|k| !k.starts_with(b"__cutover:"))
            .collect();
        assert_eq!(theirs.len(), keys.len(), "db{db}: key counts differ");
    }
}

fn aof_server(preamble: &str) -> RedisServer {
    RedisServer::builder()
        .args(&[
            "--appendonly",
            "yes",
            "--aof-use-rdb-preamble",
            preamble,
            "--aof-timestamp-enabled",
            "yes",
        ])
        .start()
}

/// Files copied out of a server's directory (a backup taken off the host).
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, to.join(p.file_name().unwrap())).unwrap();
    }
}

#[track_caller]
fn multipart_round_trip(preamble: &str) {
    let source = aof_server(preamble);
    let mut w = source.wire();
    feed(&mut w, 1);
    assert_eq!(
        Value::parse(&w.cmd(&["BGREWRITEAOF"])).text(),
        "Background append only file rewriting started"
    );
    wait_rewrite_done(&source);
    feed(&mut w, 2);
    let dir = source.dir().join("appendonlydir");
    let base_ext = if preamble == "yes" {
        ".base.rdb"
    } else {
        ".base.aof"
    };
    let manifest = std::fs::read_to_string(dir.join("appendonly.aof.manifest")).unwrap();
    assert!(manifest.contains(base_ext), "{manifest}");

    let target = RedisServer::start();
    let out = restore_ok(&dir, &target.url(), &[]);
    assert!(out.contains("commands applied"), "{out}");
    assert_same_dataset(&source, &target, &[0, 3]);

    // Run again: nothing is applied twice, no second load.
    let again = restore_ok(&dir, &target.url(), &[]);
    assert!(
        again.contains(": 0 keys loaded")
            && again.contains(" 0 commands applied")
            && again.contains("continued from the target's checkpoint"),
        "{again}"
    );
    assert_same_dataset(&source, &target, &[0, 3]);

    // The directory grows (more incr writes): a new run applies only what is new.
    feed(&mut w, 3);
    let more = restore_ok(&dir, &target.url(), &[]);
    assert!(more.contains(": 0 keys loaded"), "{more}");
    assert_same_dataset(&source, &target, &[0, 3]);

    // Into a 3-master cluster: db 3 mapped to its db 0 (the keys differ).
    let cluster = RedisCluster::start(3);
    restore_ok(&dir, &cluster.url(), &["--db-map", "3=0"]);
    let mut n = 0;
    for db in ["0", "3"] {
        w.cmd(&["SELECT", db]);
        for k in scan_keys(&mut w) {
            assert_same_key(&mut w, &mut cluster.wire_for(&k), &k, "cluster");
            n += 1;
        }
    }
    w.cmd(&["SELECT", "0"]);
    // Each slot written by the stream keeps a checkpoint key, and the main hash.
    let ours = cluster.dbsize() - n;
    assert!(ours >= 1, "{ours}");
}

#[test]
fn a_multipart_aof_with_an_rdb_base_restores_equal_to_its_server() {
    multipart_round_trip("yes");
}

#[test]
fn a_multipart_aof_with_a_resp_base_restores_equal_to_its_server() {
    multipart_round_trip("no");
}

#[test]
fn a_redis_6_2_single_file_aof_restores_into_7_0() {
    for preamble in ["yes", "no"] {
        let source = RedisServer::builder()
            .redis62()
            .args(&["--appendonly", "yes", "--aof-use-rdb-preamble", preamble])
            .start();
        let mut w = source.wire();
        feed(&mut w, 1);
        w.cmd(&["BGREWRITEAOF"]);
        wait_rewrite_done(&source);
        feed(&mut w, 2);
        let file = source.dir().join("appendonly.aof");
        let head = std::fs::read(&file).unwrap();
        assert_eq!(head.starts_with(b"REDIS"), preamble == "yes");
        let target = RedisServer::start();
        restore_ok(&file, &target.url(), &[]);
        assert_same_dataset(&source, &target, &[0, 3]);
    }
}

#[test]
fn an_rdb_restores_into_a_server_and_a_cluster_once() {
    let source = RedisServer::start();
    let mut w = source.wire();
    fill_every_type(&mut w, "t", &[]);
    w.cmd(&["DEBUG", "POPULATE", "20000", "pop", "64"]);
    let file = source.dir().join("cli.rdb");
    let o = Command::new("redis-cli")
        .args(["-p", &source.port().to_string(), "--rdb"])
        .arg(&file)
        .output()
        .expect("redis-cli --rdb");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    let target = RedisServer::start();
    let out = restore_ok(&file, &target.url(), &[]);
    let n = w.value(&["DBSIZE"]).int();
    assert!(out.contains(&format!("{n} keys loaded")), "{out}");
    assert_same_dataset(&source, &target, &[0]);
    let again = restore_ok(&file, &target.url(), &[]);
    assert!(again.contains(": 0 keys loaded"), "{again}");

    // An older target: values re-created with ordinary commands.
    let old = RedisServer::builder().redis62().start();
    let out = restore_ok(&file, &old.url(), &[]);
    assert!(out.contains(&format!("{n} keys loaded")), "{out}");
    assert_same_dataset(&source, &old, &[0]);

    // A damaged copy: a key's type byte made a type that does not exist. Refused naming
    // the file and that byte; what was loaded before stays.
    let bad = source.dir().join("bad.rdb");
    let mut data = std::fs::read(&file).unwrap();
    let type_at = data
        .windows(10)
        .position(|w| w == b"\x09pop:10000")
        .expect("the key pop:10000 in the RDB")
        - 1;
    assert_eq!(data[type_at], 0, "pop:10000 is a string");
    data[type_at] = 100;
    std::fs::write(&bad, &data).unwrap();
    let fresh = RedisServer::start();
    let o = restore(&bad, &fresh.url(), &[]);
    assert!(!o.status.success(), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("bad.rdb") && err.contains(&format!("at byte {type_at}:")),
        "{}",
        text(&o)
    );

    let cluster = RedisCluster::start(3);
    restore_ok(&file, &cluster.url(), &[]);
    let keys = scan_keys(&mut w);
    for k in &keys {
        assert_same_key(&mut w, &mut cluster.wire_for(k), k, "cluster");
    }
    // The checkpoint: one hash, and the per-slot records of the stream (none: no stream).
    let on_cluster = cluster.dbsize() as usize;
    assert_eq!(on_cluster, keys.len() + 1, "keys on the cluster");
}

#[test]
fn a_point_in_time_restore_stops_at_the_annotation() {
    let source = aof_server("yes");
    let mut w = source.wire();
    // Annotations are written at most once a second, before the next command: one
    // write per second gives each its own.
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    };
    let mut times = Vec::new();
    for i in 0..3 {
        let t = now();
        poll_until(Duration::from_secs(3), || now() > t);
        times.push(now());
        w.cmd(&["SET", &format!("pit:{i}"), "v"]);
    }
    let dir = source.dir().join("appendonlydir");
    let target = RedisServer::start();
    // Up to the second write's second: the third write comes after a later annotation.
    restore_ok(&dir, &target.url(), &["--until", &times[1].to_string()]);
    let mut t = target.wire();
    assert_eq!(t.value(&["EXISTS", "pit:0", "pit:1"]).int(), 2);
    assert_eq!(t.value(&["EXISTS", "pit:2"]).int(), 0);
    // Before everything.
    let early = RedisServer::start();
    restore_ok(
        &dir,
        &early.url(),
        &["--until", &(times[0] - 1).to_string()],
    );
    assert_eq!(early.wire().value(&["EXISTS", "pit:0"]).int(), 0);
}

#[test]
fn a_truncated_aof_loses_its_last_command_and_a_corrupt_one_is_named() {
    let source = RedisServer::builder()
        .args(&["--appendonly", "yes", "--aof-use-rdb-preamble", "no"])
        .start();
    let mut w = source.wire();
    for i in 0..100 {
        w.cmd(&["SET", &format!("k{i}"), &format!("v{i}")]);
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("copy");
    copy_dir(&source.dir().join("appendonlydir"), &dir);
    let incr: PathBuf = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(".incr.aof"))
        .unwrap();
    let data = std::fs::read(&incr).unwrap();
    // The last command loses its last 3 bytes.
    std::fs::write(&incr, &data[..data.len() - 3]).unwrap();
    let target = RedisServer::start();
    let out = restore_ok(&dir, &target.url(), &[]);
    assert!(out.contains("truncated"), "{out}");
    let mut t = target.wire();
    assert_eq!(t.value(&["EXISTS", "k98"]).int(), 1);
    assert_eq!(t.value(&["EXISTS", "k99"]).int(), 0);

    // A corrupted byte in the middle: a clear error naming the file and the byte.
    let mut bad = data.clone();
    let at = bad.len() / 2;
    let star = at + bad[at..].iter().position(|&b| b == b'*').unwrap();
    bad[star] = b'?';
    std::fs::write(&incr, &bad).unwrap();
    let fresh = RedisServer::start();
    let o = restore(&dir, &fresh.url(), &[]);
    assert!(!o.status.success(), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    let name = incr.file_name().unwrap().to_string_lossy();
    assert!(
        err.contains(&*name) && err.contains(&format!("at byte {star}")),
        "{err}"
    );
    // What came before the bad byte is applied, nothing after it.
    assert_eq!(fresh.wire().value(&["EXISTS", "k0"]).int(), 1);

    // A manifest line that doesn't parse, and a missing incr file.
    let manifest = dir.join("appendonly.aof.manifest");
    let good = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(&manifest, format!("{good}file x seq\n")).unwrap();
    let o = restore(&dir, &fresh.url(), &[]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("appendonly.aof.manifest line"),
        "{}",
        text(&o)
    );
    std::fs::write(&manifest, format!("{good}file gone.aof seq 99 type i\n")).unwrap();
    let o = restore(&dir, &fresh.url(), &[]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("gone.aof"),
        "{}",
        text(&o)
    );
}

#[test]
fn kills_during_an_aof_import_apply_every_command_once() {
    let source = RedisServer::builder()
        .args(&["--appendonly", "yes", "--aof-use-rdb-preamble", "no"])
        .start();
    // Concurrent INCR streams: 4 connections, 30 keys each, pipelined.
    let writers: Vec<_> = (0..4)
        .map(|c| {
            let addr = source.addr();
            std::thread::spawn(move || {
                let mut w = Wire::connect(addr);
                for round in 0..200 {
                    let mut batch = Vec::new();
                    for k in 0..30 {
                        let key = format!("c{c}:{k}:{}", round % 3);
                        support::encode_into(&mut batch, &["INCR", key.as_str()]);
                    }
                    w.send(&batch);
                    for _ in 0..30 {
                        w.read_reply();
                    }
                }
            })
        })
        .collect();
    for h in writers {
        h.join().unwrap();
    }
    let dir = source.dir().join("appendonlydir");
    let target = RedisServer::start();
    let tmp = tempfile::tempdir().unwrap();
    // Small transactions so that a kill lands between checkpoints.
    let config = tmp.path().join("c.toml");
    std::fs::write(
        &config,
        "[sync]\nmax_txn_bytes = 4096\nmax_inflight_bytes = 65536\n",
    )
    .unwrap();
    let mut t = target.wire();
    let applied = |t: &mut Wire| -> i64 {
        match t.value(&["HGET", "__cutover:checkpoint", "offset"]) {
            Value::Bulk(b) => String::from_utf8_lossy(&b).parse().unwrap_or(0),
            _ => 0,
        }
    };
    let total = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum::<u64>() as i64;
    let mut kills = 0;
    for step in 1..=3 {
        let mut child = Command::new(cutover_bin())
            .arg("restore")
            .arg(&dir)
            .args(["--target", &target.url(), "--config"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mark = total * step / 4;
        poll_until(SYNC_WAIT, || {
            applied(&mut t) > mark || child.try_wait().unwrap().is_some()
        });
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap();
            kills += 1;
        }
        child.wait().unwrap();
    }
    assert!(kills >= 2, "the import finished before it could be killed");
    restore_ok(&dir, &target.url(), &["--config", config.to_str().unwrap()]);
    assert_same_dataset(&source, &target, &[0]);
}

/// Killed in the middle of an RDB's load, a restore run again loads it again into the
/// target it had partly filled (its own partial load: emptied first), ends equal to the
/// file's server, and a third run loads nothing.
#[test]
fn a_restore_killed_during_an_rdb_load_loads_it_again_once() {
    let source = RedisServer::start();
    let mut w = source.wire();
    fill_every_type(&mut w, "k", &[]);
    w.cmd(&["DEBUG", "POPULATE", "300000", "pop", "64"]);
    assert_eq!(w.cmd(&["SAVE"]), b"+OK\r\n");
    let rdb = source.dir().join("dump.rdb");
    let target = RedisServer::start();
    let mut t = target.wire();
    let mut child = Command::new(cutover_bin())
        .arg("restore")
        .arg(&rdb)
        .args(["--target", &target.url()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    poll_until(SYNC_WAIT, || {
        t.value(&["DBSIZE"]).int() > 30_000 || child.try_wait().unwrap().is_some()
    });
    assert!(
        child.try_wait().unwrap().is_none(),
        "the restore finished before it could be killed"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    // A key that is not the file's: the rerun must empty its own partial load first.
    assert_eq!(t.cmd(&["SET", "not-from-the-file", "1"]), b"+OK\r\n");
    let n = w.value(&["DBSIZE"]).int();
    let second = restore_ok(&rdb, &target.url(), &[]);
    assert!(second.contains(&format!(": {n} keys loaded")), "{second}");
    assert_eq!(t.cmd(&["EXISTS", "not-from-the-file"]), b":0\r\n");
    let again = restore_ok(&rdb, &target.url(), &[]);
    assert!(again.contains(": 0 keys loaded"), "{again}");
    // The whole dataset, without cutover's checkpoint: equal (DEBUG DIGEST).
    assert_eq!(t.cmd(&["DEL", "__cutover:checkpoint"]), b":1\r\n");
    assert_eq!(t.cmd(&["DEBUG", "DIGEST"]), w.cmd(&["DEBUG", "DIGEST"]));
    assert_eq!(t.cmd(&["DBSIZE"]), w.cmd(&["DBSIZE"]));
}

/// Runs `cutover dump --source <url> <file>`; its stdout.
#[track_caller]
fn dump(source_url: &str, file: &Path) -> String {
    let o = Command::new(cutover_bin())
        .args(["dump", "--source", source_url])
        .arg(file)
        .output()
        .expect("run cutover dump");
    assert!(o.status.success(), "dump failed: {}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn a_dump_carries_the_replication_position_and_restores_into_a_server_and_a_cluster() {
    let source = RedisServer::start();
    let mut w = source.wire();
    fill_every_type(&mut w, "d", &[]);
    w.cmd(&["DEBUG", "POPULATE", "5000", "pop", "32"]);
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("dump.rdb");
    let out = dump(&source.url(), &file);
    let replid = source.info_field("replication", "master_replid").unwrap();
    assert!(out.contains(&replid), "{out}");
    // The file names its history: the AUX fields a seed needs.
    let data = std::fs::read(&file).unwrap();
    let has = |needle: &[u8]| data.windows(needle.len()).any(|w| w == needle);
    assert!(has(b"repl-id") && has(replid.as_bytes()) && has(b"repl-offset"));
    assert!(!tmp.path().join("dump.rdb.part").exists());

    let target = RedisServer::start();
    restore_ok(&file, &target.url(), &[]);
    assert_same_dataset(&source, &target, &[0]);
    let cluster = RedisCluster::start(3);
    restore_ok(&file, &cluster.url(), &[]);
    for k in scan_keys(&mut w) {
        assert_same_key(&mut w, &mut cluster.wire_for(&k), &k, "cluster");
    }
}

#[test]
fn a_dump_of_a_cluster_writes_one_file_per_master() {
    let cluster = RedisCluster::start(3);
    let mut keys = Vec::new();
    for i in 0..300 {
        let k = format!("ck{i}");
        cluster
            .wire_for(k.as_bytes())
            .cmd(&["SET", &k, &i.to_string()]);
        keys.push(k);
    }
    let tmp = tempfile::tempdir().unwrap();
    let out = dump(&cluster.url(), &tmp.path().join("c.rdb"));
    let files = std::fs::read_dir(tmp.path()).unwrap().count();
    assert_eq!(files, 3, "{out}");
    let mut total = 0;
    for m in cluster.masters() {
        let f = tmp.path().join(format!("c.127.0.0.1-{}.rdb", m.port()));
        assert!(f.exists(), "{out}");
        let t = RedisServer::start();
        restore_ok(&f, &t.url(), &[]);
        let mut tw = t.wire();
        let n = tw.value(&["DBSIZE"]).int() - 1;
        assert_eq!(n, m.wire().value(&["DBSIZE"]).int());
        total += n;
    }
    assert_eq!(total, keys.len() as i64);
}

#[test]
fn a_seeded_target_continues_with_a_partial_sync() {
    let source = support::sync_source();
    let mut w = source.wire();
    fill_every_type(&mut w, "s", &[]);
    w.cmd(&["DEBUG", "POPULATE", "20000", "pop", "32"]);
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("seed.rdb");
    dump(&source.url(), &file);
    // Written after the dump: they reach the target through the stream.
    for i in 0..500 {
        w.cmd(&["INCR", &format!("after:{}", i % 10)]);
    }
    w.cmd(&["DEL", "pop:7"]);
    let full = |s: &RedisServer| s.info_field("stats", "sync_full").unwrap();
    let partial = |s: &RedisServer| s.info_field("stats", "sync_partial_ok").unwrap();
    let (full0, partial0) = (full(&source), partial(&source));
    let target = RedisServer::start();
    let proxy = support::cutover_with_target(&source, &target, &["--seed", file.to_str().unwrap()]);
    support::wait_caught_up(&source, &proxy);
    assert_eq!(
        full(&source),
        full0,
        "the seed must spare the source a full sync"
    );
    assert_eq!(
        partial(&source).parse::<u64>().unwrap(),
        partial0.parse::<u64>().unwrap() + 1
    );
    assert_same_dataset(&source, &target, &[0]);

    // A file that names no replication history is refused, saying why.
    let bare = tmp.path().join("bare.rdb");
    let other = RedisServer::start();
    other.cmd(&["SET", "x", "y"]);
    other.cmd(&["SAVE"]);
    std::fs::copy(other.dir().join("dump.rdb"), &bare).unwrap();
    let fresh = RedisServer::start();
    let p = support::cutover_with_target(&source, &fresh, &["--seed", bare.to_str().unwrap()]);
    poll_until(SYNC_WAIT, || p.status()["sync_state"] == "error");
    assert!(
        p.status()["last_error"].contains("repl-id"),
        "{:?}",
        p.status()
    );
}

/// A seed whose offset the source no longer holds (its backlog moved on): the source
/// answers the resume with +FULLRESYNC, which is reported and handled as any full resync:
/// the target is loaded again and equals the source.
#[test]
fn a_stale_seed_gets_a_full_sync() {
    let source = support::sync_source();
    let mut w = source.wire();
    assert_eq!(
        w.cmd(&["CONFIG", "SET", "repl-backlog-size", "16384"]),
        b"+OK\r\n"
    );
    fill_every_type(&mut w, "s", &[]);
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("seed.rdb");
    dump(&source.url(), &file);
    // Far more than the backlog holds.
    let big = "v".repeat(200);
    for i in 0..2000 {
        w.cmd(&["SET", &format!("late:{i}"), &big]);
    }
    let full =
        |s: &RedisServer| -> u64 { s.info_field("stats", "sync_full").unwrap().parse().unwrap() };
    let full0 = full(&source);
    let target = RedisServer::start();
    let proxy = support::cutover_with_target(&source, &target, &["--seed", file.to_str().unwrap()]);
    support::wait_caught_up(&source, &proxy);
    assert!(
        full(&source) > full0,
        "the stale seed's resume became a full sync"
    );
    assert_eq!(proxy.status()["full_syncs"], "2", "{:?}", proxy.status());
    assert_same_dataset(&source, &target, &[0]);
}

/// A Redis Cluster target seeded from a file, then caught up by a partial sync.
#[test]
fn a_cluster_target_is_seeded_then_continues() {
    let source = support::sync_source();
    let mut w = source.wire();
    fill_every_type(&mut w, "s", &[]);
    w.cmd(&["DEBUG", "POPULATE", "5000", "pop", "32"]);
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("seed.rdb");
    dump(&source.url(), &file);
    for i in 0..300 {
        w.cmd(&["INCR", &format!("after:{}", i % 10)]);
    }
    w.cmd(&["DEL", "pop:7"]);
    let stat =
        |s: &RedisServer, f: &str| -> u64 { s.info_field("stats", f).unwrap().parse().unwrap() };
    let (full0, partial0) = (stat(&source, "sync_full"), stat(&source, "sync_partial_ok"));
    let cluster = RedisCluster::start(3);
    let proxy = support::Cutover::builder(&source)
        .args(&["--target", &cluster.url(), "--seed", file.to_str().unwrap()])
        .start();
    support::wait_caught_up(&source, &proxy);
    assert_eq!(
        stat(&source, "sync_full"),
        full0,
        "the seed spares a full sync"
    );
    assert!(stat(&source, "sync_partial_ok") > partial0);
    let keys = scan_keys(&mut w);
    assert!(keys.len() > 5000, "{}", keys.len());
    for k in &keys {
        assert_same_key(&mut w, &mut cluster.wire_for(k), k, "seeded cluster");
    }
    assert_eq!(
        cluster.wire_for(b"pop:7").cmd(&["EXISTS", "pop:7"]),
        b":0\r\n",
        "deleted after the dump"
    );
}

/// Bytes as the fixtures' JSON writes them: UTF-8 where valid, other bytes as the char of
/// the same number.
fn json_str(mut rest: &[u8]) -> String {
    let mut out = String::new();
    while !rest.is_empty() {
        match std::str::from_utf8(rest) {
            Ok(s) => {
                out.push_str(s);
                break;
            }
            Err(e) => {
                let good = e.valid_up_to();
                out.push_str(std::str::from_utf8(&rest[..good]).unwrap());
                out.push(rest[good] as char);
                rest = &rest[good + 1..];
            }
        }
    }
    out
}

fn txt(v: &Value) -> String {
    json_str(v.bytes())
}

/// A JSON value of the fixtures' expectations as Redis would print it.
fn json_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Every key the reader finds in the file is on the target (or absent because its TTL
/// has passed), and the redis-rdb-tools expectations hold for the values.
#[track_caller]
fn check_fixture(name: &str, data: &[u8], json: Option<serde_json::Value>, t: &mut Wire) {
    use sync::rdb::{Event, RdbReader};
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let mut rd = RdbReader::new(data);
    let mut dbs: Vec<u32> = Vec::new();
    let mut live = std::collections::HashSet::new();
    while let Some(ev) = rd.next_event().unwrap() {
        let Event::Key(k) = ev else { continue };
        if dbs.last() != Some(&k.db) {
            dbs.push(k.db);
        }
        t.cmd(&["SELECT", &k.db.to_string()]);
        let exists = t.value(&[&b"EXISTS"[..], &k.key]).int();
        if k.expire_ms.is_some_and(|e| e <= now) {
            assert_eq!(exists, 0, "{name}: expired key {} restored", show(&k.key));
        } else {
            assert_eq!(exists, 1, "{name}: key {} missing", show(&k.key));
            live.insert((k.db, k.key.to_vec()));
        }
    }
    let Some(serde_json::Value::Array(per_db)) = json else {
        return;
    };
    for (db, obj) in dbs.iter().zip(per_db) {
        t.cmd(&["SELECT", &db.to_string()]);
        let serde_json::Value::Object(keys) = obj else {
            continue;
        };
        for (key, want) in keys {
            let key = key.as_str();
            if !live.contains(&(*db, key.as_bytes().to_vec())) {
                continue;
            }
            let ty = t.value(&["TYPE", key]).text();
            let what = format!("{name}: db{db} key {key} ({ty})");
            match ty.as_str() {
                "string" => assert_eq!(txt(&t.value(&["GET", key])), json_text(&want), "{what}"),
                "list" => {
                    let got: Vec<String> = t
                        .value(&["LRANGE", key, "0", "-1"])
                        .items()
                        .iter()
                        .map(txt)
                        .collect();
                    let want: Vec<String> =
                        want.as_array().unwrap().iter().map(json_text).collect();
                    assert_eq!(got, want, "{what}");
                }
                "set" => {
                    let mut got: Vec<String> = t
                        .value(&["SMEMBERS", key])
                        .items()
                        .iter()
                        .map(txt)
                        .collect();
                    let mut want: Vec<String> =
                        want.as_array().unwrap().iter().map(json_text).collect();
                    got.sort();
                    want.sort();
                    assert_eq!(got, want, "{what}");
                }
                "zset" => {
                    let v = t.value(&["ZRANGE", key, "0", "-1", "WITHSCORES"]);
                    let got: std::collections::BTreeMap<String, f64> = v
                        .items()
                        .chunks(2)
                        .map(|p| (txt(&p[0]), p[1].text().parse().unwrap()))
                        .collect();
                    let want: std::collections::BTreeMap<String, f64> = want
                        .as_object()
                        .unwrap()
                        .iter()
                        .map(|(m, s)| (m.clone(), json_text(s).parse().unwrap()))
                        .collect();
                    assert_eq!(got.len(), want.len(), "{what}");
                    for (m, s) in &want {
                        let g = got[m];
                        assert!((g - s).abs() <= s.abs() * 1e-12, "{what}: {m} {g} vs {s}");
                    }
                }
                "hash" => {
                    let v = t.value(&["HGETALL", key]);
                    let got: std::collections::BTreeMap<String, String> = v
                        .items()
                        .chunks(2)
                        .map(|p| (txt(&p[0]), txt(&p[1])))
                        .collect();
                    let want: std::collections::BTreeMap<String, String> = want
                        .as_object()
                        .unwrap()
                        .iter()
                        .map(|(f, v)| (f.clone(), json_text(v)))
                        .collect();
                    assert_eq!(got, want, "{what}");
                }
                _ => {}
            }
        }
    }
}

#[test]
fn every_rdb_fixture_restores_where_the_target_can_hold_it() {
    let dir = support::workspace_root().join("../shared/fixtures/rdb");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "rdb"))
        .collect();
    files.sort();
    assert!(files.len() >= 30, "the fixture set is incomplete");
    let target = RedisServer::start();
    let mut refused = Vec::new();
    for f in &files {
        let name = f.file_stem().unwrap().to_string_lossy().into_owned();
        let o = restore(f, &target.url(), &["--target-not-empty", "flush"]);
        if !o.status.success() {
            let err = String::from_utf8_lossy(&o.stderr);
            let last = err.lines().last().unwrap_or_default().to_string();
            refused.push((name, last));
            continue;
        }
        if name == "keys_with_expiry" {
            // Its one key expired in 2022: counted, not kept.
            let out = String::from_utf8_lossy(&o.stdout);
            assert!(out.contains("(1 of them expired"), "{out}");
        }
        let json = std::fs::read_to_string(dir.join("json").join(format!("{name}.json")))
            .ok()
            .map(|t| serde_json::from_str(&t).unwrap());
        check_fixture(&name, &std::fs::read(f).unwrap(), json, &mut target.wire());
    }
    eprintln!("refused: {refused:#?}");
    for (name, why) in &refused {
        assert!(
            why.contains("key"),
            "{name}: the refusal names no key: {why}"
        );
    }
    // A 7.0 target can't hold hash field TTLs (7.4) or module values of an 8.6 RDB.
    let names: Vec<&str> = refused.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "redis_7_4_all_types",
            "redis_8_6_all_types",
            "redis_stack_7_4_modules"
        ]
    );
}
