//! The full load when RESTORE can't carry the values: a target older than the source
//! (Redis 7.0 into 6.2: values re-created with ordinary commands) and values above the
//! big-value threshold (rebuilt in chunks). Every key is compared on both sides: DEBUG
//! DIGEST-VALUE (the same for the same logical value on 6.2 and 7.0, but blind to a
//! stream's consumer groups), PTTL, and for streams XINFO STREAM FULL (groups, consumers,
//! pending entries with their delivery times and counts; 7.0's counters when both sides
//! have them; seen/active times are not carried).

use support::*;

/// Pairs of a flat `[name, value, ...]` reply.
fn pairs(v: &Value) -> Vec<(String, Value)> {
    v.items()
        .chunks(2)
        .map(|p| (p[0].text(), p[1].clone()))
        .collect()
}

/// A stream's XINFO STREAM FULL without what depends on the encoding or the time of the
/// load, keeping only fields both sides report.
fn stream_view(w: &mut Wire, key: &[u8], keep: &dyn Fn(&str) -> bool) -> String {
    let v = w.value(&[&b"XINFO"[..], b"STREAM", key, b"FULL", b"COUNT", b"0"]);
    let skip = |k: &str| {
        matches!(
            k,
            "radix-tree-keys" | "radix-tree-nodes" | "seen-time" | "active-time"
        ) || !keep(k)
    };
    let mut out = String::new();
    for (k, val) in pairs(&v) {
        if skip(&k) {
            continue;
        }
        if k == "groups" {
            for g in val.items() {
                out.push_str("group{");
                for (gk, gv) in pairs(g) {
                    if skip(&gk) {
                        continue;
                    }
                    if gk == "consumers" {
                        for c in gv.items() {
                            out.push_str("consumer{");
                            for (ck, cv) in pairs(c) {
                                if !skip(&ck) {
                                    out.push_str(&format!("{ck}={cv:?};"));
                                }
                            }
                            out.push('}');
                        }
                    } else {
                        out.push_str(&format!("{gk}={gv:?};"));
                    }
                }
                out.push('}');
            }
        } else {
            out.push_str(&format!("{k}={val:?};"));
        }
    }
    out
}

/// Every key of dbs 0..16 is on the target with the same value and a TTL within 2 s, and
/// the target has nothing else but the checkpoint. Returns how many keys were compared.
#[track_caller]
fn assert_same_data(source: &RedisServer, target: &RedisServer, same_version: bool) -> usize {
    let mut s = source.wire();
    let mut t = target.wire();
    // Fields 7.0 has and 6.2 has not.
    let keep = |k: &str| {
        same_version
            || !matches!(
                k,
                "max-deleted-entry-id"
                    | "entries-added"
                    | "recorded-first-entry-id"
                    | "entries-read"
                    | "lag"
            )
    };
    let mut compared = 0;
    for db in 0..16u32 {
        let dbs = db.to_string();
        s.cmd(&["SELECT", &dbs]);
        t.cmd(&["SELECT", &dbs]);
        let keys = scan_keys(&mut s);
        for k in &keys {
            let ks: &[u8] = k;
            let what = || format!("db {db} key {}", show(ks));
            let ty = s.value(&[&b"TYPE"[..], ks]).text();
            assert_eq!(ty, t.value(&[&b"TYPE"[..], ks]).text(), "{}", what());
            let a = s.cmd(&[&b"DEBUG"[..], b"DIGEST-VALUE", ks]);
            let b = t.cmd(&[&b"DEBUG"[..], b"DIGEST-VALUE", ks]);
            assert_eq!(show(&a), show(&b), "{} differs", what());
            if ty == "stream" {
                let va = stream_view(&mut s, ks, &keep);
                let vb = stream_view(&mut t, ks, &keep);
                assert_eq!(va, vb, "{}: stream metadata differs", what());
                if ks.ends_with(b":stream") {
                    // The view holds what it should: pending entries and consumers.
                    assert!(
                        va.contains("pending=Array([Array(") && va.contains("consumer{"),
                        "{va}"
                    );
                }
            }
            let pa = s.value(&[&b"PTTL"[..], ks]).int();
            let pb = t.value(&[&b"PTTL"[..], ks]).int();
            if pa < 0 || pb < 0 {
                assert_eq!(pa, pb, "{}: TTL presence differs", what());
            } else {
                assert!((pa - pb).abs() < 2_000, "{}: PTTL {pa} vs {pb}", what());
            }
            compared += 1;
        }
        let own = u64::from(db == 0);
        let ts = t.value(&["DBSIZE"]).int() as u64;
        let expected = keys.len() as u64 + if ts > keys.len() as u64 { own } else { 0 };
        assert_eq!(ts, expected, "db {db}: target has extra keys");
    }
    compared
}

#[track_caller]
fn ok(w: &mut Wire, args: &[&str]) {
    let r = w.cmd(args);
    assert!(!r.starts_with(b"-"), "{args:?}: {}", show(&r));
}

/// Calls of `cmd` on a server (INFO commandstats).
fn calls(server: &RedisServer, cmd: &str) -> u64 {
    let text = server.wire().value(&["INFO", "commandstats"]).text();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("cmdstat_{cmd}:calls=")))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Not very compressible filler (LZF would shrink a repeated byte to nothing).
fn filler(seed: u64, len: usize) -> String {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (b'a' + (x % 26) as u8) as char
        })
        .collect()
}

/// Every type and encoding, TTLs, binary keys, awkward scores and streams with consumer
/// groups, idle consumers and pending entries (one whose entry was deleted since).
fn fill_every_type(w: &mut Wire, tag: &str, pad: usize) {
    let k = |s: &str| format!("{tag}:{s}");
    let p = filler(tag.len() as u64, pad);
    let cmds: Vec<Vec<String>> = [
        vec!["SET", &k("str"), "hello"],
        vec!["SET", &k("int"), "12345"],
        vec!["SET", &k("empty"), ""],
        vec!["SET", &k("padded"), &p],
        vec!["SET", &k("ttl"), "v", "PX", "600000"],
        vec!["RPUSH", &k("list-small"), "a", "b", "3", &p],
        vec!["SADD", &k("intset"), "1", "2", "300000"],
        vec!["SADD", &k("set-small"), "a", "b", &p],
        vec![
            "ZADD",
            &k("zset-small"),
            "0.30000000000000004",
            "a",
            "inf",
            "b",
            "-inf",
            "c",
            "5e-324",
            "d",
            "1e-300",
            "e",
            "-1.7976931348623157e308",
            &p,
        ],
        vec!["HSET", &k("hash-small"), "f", "v", "g", "", "p", &p],
        vec!["PEXPIRE", &k("hash-small"), "500000"],
        vec!["PFADD", &k("hll"), "a", "b", "c"],
        vec!["SETBIT", &k("bitmap"), "100000", "1"],
        vec!["GEOADD", &k("geo"), "13.361389", "38.115556", "Palermo"],
        // A stream with two groups, an idle consumer and pending entries, one of them
        // deleted from the stream since it was delivered.
        vec!["XADD", &k("stream"), "1-1", "f", "v", "p", &p],
        vec!["XADD", &k("stream"), "2-1", "f", "w"],
        vec!["XADD", &k("stream"), "3-1", "f", "x", "g", "y"],
        vec!["XADD", &k("stream"), "4-1", "f", "z"],
        vec!["XGROUP", "CREATE", &k("stream"), "g1", "0"],
        vec!["XGROUP", "CREATE", &k("stream"), "g2", "$"],
        vec![
            "XREADGROUP",
            "GROUP",
            "g1",
            "c1",
            "COUNT",
            "2",
            "STREAMS",
            &k("stream"),
            ">",
        ],
        vec![
            "XREADGROUP",
            "GROUP",
            "g1",
            "c2",
            "COUNT",
            "1",
            "STREAMS",
            &k("stream"),
            ">",
        ],
        vec![
            "XCLAIM",
            &k("stream"),
            "g1",
            "c2",
            "0",
            "1-1",
            "RETRYCOUNT",
            "5",
        ],
        vec!["XGROUP", "CREATECONSUMER", &k("stream"), "g2", "idle"],
        vec!["XDEL", &k("stream"), "2-1"],
        vec!["EXPIRE", &k("stream"), "700"],
        // Streams without entries: made by MKSTREAM, emptied by XDEL.
        vec!["XGROUP", "CREATE", &k("stream-mk"), "g", "$", "MKSTREAM"],
        vec!["XADD", &k("stream-emptied"), "7-7", "f", "v"],
        vec!["XDEL", &k("stream-emptied"), "7-7"],
    ]
    .into_iter()
    .map(|c| c.into_iter().map(String::from).collect())
    .collect();
    for c in &cmds {
        let r = w.cmd(c);
        assert!(!r.starts_with(b"-"), "{c:?}: {}", show(&r));
    }
    fill_big_encodings(
        w,
        tag,
        &[
            "0.30000000000000004",
            "tiny-sum",
            "5e-324",
            "denormal",
            "inf",
            "plus",
            "-inf",
            "minus",
        ],
    );
    ok(w, &["PEXPIRE", &k("zset-big"), "900000"]);
    // A stream spanning several listpack nodes, with a group that read part of it.
    for i in 1..=300 {
        let id = format!("{}-{}", 1000 + i / 3, i % 3);
        ok(
            w,
            &["XADD", &k("stream-big"), &id, "n", &i.to_string(), "x", "y"],
        );
    }
    ok(w, &["XGROUP", "CREATE", &k("stream-big"), "readers", "0"]);
    ok(
        w,
        &[
            "XREADGROUP",
            "GROUP",
            "readers",
            "r1",
            "COUNT",
            "150",
            "STREAMS",
            &k("stream-big"),
            ">",
        ],
    );
    let bin: &[u8] = b"bin\x00\r\n\xff";
    let mut key = tag.as_bytes().to_vec();
    key.extend_from_slice(bin);
    w.cmd(&[&b"SET"[..], &key, bin]);
    key.extend_from_slice(b":set");
    w.cmd(&[&b"SADD"[..], &key, bin, b"\x00"]);
}

#[test]
fn from_redis_7_0_to_6_2_re_creates_every_value() {
    if skip_direct("the syncer") {
        return;
    }
    let source = sync_source();
    let target = RedisServer::builder().redis62().start();
    let mut s = source.wire();
    fill_every_type(&mut s, "before", 100);
    s.cmd(&["SELECT", "3"]);
    fill_every_type(&mut s, "db3", 10);
    s.cmd(&["SELECT", "7"]);
    fill_every_type(&mut s, "db7", 0);
    s.cmd(&["SELECT", "0"]);
    let proxy = cutover_with_target(&source, &target, &[]);
    wait_caught_up(&source, &proxy);
    let n = assert_same_data(&source, &target, false);
    assert_eq!(n, 72, "keys compared");
    // Only the probe went by RESTORE.
    assert_eq!(calls(&target, "restore"), 1);
    assert!(calls(&target, "xclaim") > 0);
    let log = proxy.log_tail();
    assert!(log.contains("re-created with ordinary commands"), "{log}");

    // Live writes through the proxy, in several dbs.
    let mut p = proxy.wire();
    fill_every_type(&mut p, "after", 50);
    p.cmd(&["SELECT", "5"]);
    fill_every_type(&mut p, "db5", 0);
    p.cmd(&["SELECT", "0"]);
    assert_bytes(p.cmd(&["DEL", "before:str"]), int(1));
    assert_bytes(p.cmd(&["EXPIRE", "before:list-small", "1000"]), int(1));
    wait_caught_up(&source, &proxy);
    assert_same_data(&source, &target, false);
}

#[test]
fn big_values_are_rebuilt_in_chunks() {
    if skip_direct("the syncer") {
        return;
    }
    let source = sync_source();
    let target = RedisServer::start();
    let mut s = source.wire();
    // Values past 1 KiB go by commands (7.0 into 7.0: read counters and stream counters
    // carried too); smaller ones by RESTORE.
    fill_every_type(&mut s, "v", 1500);
    s.cmd(&["SELECT", "2"]);
    fill_every_type(&mut s, "db2", 1500);
    s.cmd(&["SELECT", "0"]);
    let mut sadd = vec!["SADD".to_string(), "huge-set".to_string()];
    let mut rpush = vec!["RPUSH".to_string(), "huge-list".to_string()];
    for i in 0..5500 {
        sadd.push(format!("member-{i}"));
        rpush.push(format!("{i}"));
    }
    ok(&mut s, &sadd.iter().map(String::as_str).collect::<Vec<_>>());
    ok(
        &mut s,
        &rpush.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    ok(&mut s, &["PEXPIRE", "huge-list", "800000"]);
    let big = filler(7, 3 * 1024 * 1024 + 5);
    ok(&mut s, &["SET", "huge-string", &big]);

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("cutover.toml");
    std::fs::write(&config, "[sync]\nbig_value_bytes = 1024\n").unwrap();
    let proxy = cutover_with_target(&source, &target, &["--config", config.to_str().unwrap()]);
    wait_caught_up(&source, &proxy);
    let n = assert_same_data(&source, &target, true);
    assert_eq!(n, 51, "keys compared");
    // Chunks of at most 1000 members; 1 MiB string pieces.
    assert!(calls(&target, "sadd") >= 6, "{}", calls(&target, "sadd"));
    assert!(calls(&target, "rpush") >= 6, "{}", calls(&target, "rpush"));
    assert!(
        calls(&target, "append") >= 3,
        "{}",
        calls(&target, "append")
    );
    assert!(calls(&target, "xsetid") > 0);
    // Small values still go by RESTORE (plus the probe).
    assert!(calls(&target, "restore") > 10);
}
