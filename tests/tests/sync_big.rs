//! The full load with values far above the big-value threshold: each is read from the RDB
//! in pieces and rebuilt on the target in chunks, never held whole, so cutover's memory
//! stays bounded whatever the value sizes. One value of each type of about 20 MB (a
//! string stored LZF-compressed, a list, a set, a sorted set with extreme scores, a hash, a
//! stream with groups, consumers and pending entries, some of them deleted) plus small
//! keys: every key equal on both sides (DEBUG DIGEST-VALUE, PTTL; the stream's groups,
//! consumers and pending entries too), each key counted once, and cutover's peak RSS
//! (VmHWM) far below the data it moved.

use std::time::Duration;

use support::*;

/// Bytes per big value.
const VALUE_BYTES: usize = 20 << 20;
/// Elements of the big collections (about 100 bytes each).
const ELEMS: usize = VALUE_BYTES / 100;
/// Bound on cutover's peak RSS while it moves about 120 MB of big values.
const MAX_RSS_KB: u64 = 40 * 1024;

/// Deterministic text from a small alphabet (LZF finds back references in it).
fn text(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b"abcdefghijklmnop"[(x % 16) as usize]
        })
        .collect()
}

/// Sends `cmds` pipelined in groups, checking every reply.
fn pipeline(w: &mut Wire, cmds: &[Vec<Vec<u8>>]) {
    for group in cmds.chunks(200) {
        let mut out = Vec::new();
        for c in group {
            encode_into(&mut out, c);
        }
        w.send(&out);
        for c in group {
            let r = w.read_reply();
            assert!(
                !r.starts_with(b"-"),
                "{}: {}",
                show(&c[0]),
                show(&r[..r.len().min(200)])
            );
        }
    }
}

#[track_caller]
fn ok(w: &mut Wire, args: &[&str]) {
    let r = w.cmd(args);
    assert!(!r.starts_with(b"-"), "{args:?}: {}", show(&r));
}

fn fill(w: &mut Wire) {
    // Small keys (RESTOREd).
    ok(w, &["SET", "small:str", "hello", "PX", "700000"]);
    ok(w, &["RPUSH", "small:list", "a", "b", "c"]);
    ok(w, &["SADD", "small:set", "x", "y"]);
    ok(w, &["ZADD", "small:zset", "1.5", "m", "-inf", "n"]);
    ok(w, &["HSET", "small:hash", "f", "v"]);
    ok(w, &["XADD", "small:stream", "1-1", "f", "v"]);

    // A 20 MB string stored LZF-compressed, with an expiry.
    let mut s: Vec<Vec<u8>> = vec![
        b"SET".to_vec(),
        b"big:string".to_vec(),
        text(1, VALUE_BYTES),
    ];
    s.extend([b"PX".to_vec(), b"900000".to_vec()]);
    pipeline(w, &[s]);

    // Collections of ~200k elements of ~100 bytes, 1000 per command.
    let elem = |i: usize| {
        let mut e = format!("{i:08}-").into_bytes();
        e.extend(text(i as u64, 90));
        e
    };
    let mut cmds = Vec::new();
    for start in (0..ELEMS).step_by(1000) {
        let range = start..(start + 1000).min(ELEMS);
        let mut rpush = vec![b"RPUSH".to_vec(), b"big:list".to_vec()];
        let mut sadd = vec![b"SADD".to_vec(), b"big:set".to_vec()];
        let mut zadd = vec![b"ZADD".to_vec(), b"big:zset".to_vec()];
        let mut hset = vec![b"HSET".to_vec(), b"big:hash".to_vec()];
        for i in range {
            let e = elem(i);
            rpush.push(e.clone());
            sadd.push(e.clone());
            let score = match i % 9 {
                0 => "inf".to_string(),
                1 => "-inf".to_string(),
                2 => "5e-324".to_string(),
                3 => "1.7976931348623157e308".to_string(),
                4 => "-1.7976931348623157e308".to_string(),
                5 => "0.30000000000000004".to_string(),
                _ => format!("{}", (i as f64) / 7.0 - 1e6),
            };
            zadd.push(score.into_bytes());
            zadd.push(e[..90].to_vec());
            hset.push(format!("field:{i}").into_bytes());
            hset.push(e[9..].to_vec());
        }
        cmds.extend([rpush, sadd, zadd, hset]);
    }
    pipeline(w, &cmds);
    ok(w, &["PEXPIRE", "big:hash", "800000"]);

    // A stream of ~200k entries, two groups, three consumers, pending entries (some of
    // them deleted since), acknowledged ones.
    let mut cmds = Vec::new();
    for i in 0..ELEMS {
        let id = format!("{}-{}", 1_000 + i / 4, i % 4);
        let value = &elem(i)[..80];
        cmds.push(vec![
            b"XADD".to_vec(),
            b"big:stream".to_vec(),
            id.into_bytes(),
            b"payload".to_vec(),
            value.to_vec(),
            b"n".to_vec(),
            i.to_string().into_bytes(),
        ]);
    }
    pipeline(w, &cmds);
    ok(w, &["XGROUP", "CREATE", "big:stream", "workers", "0"]);
    ok(w, &["XGROUP", "CREATE", "big:stream", "audit", "$"]);
    ok(
        w,
        &["XGROUP", "CREATECONSUMER", "big:stream", "audit", "idle"],
    );
    for (consumer, count) in [("alice", "3000"), ("bob", "2500")] {
        ok(
            w,
            &[
                "XREADGROUP",
                "GROUP",
                "workers",
                consumer,
                "COUNT",
                count,
                "STREAMS",
                "big:stream",
                ">",
            ],
        );
    }
    ok(
        w,
        &[
            "XACK",
            "big:stream",
            "workers",
            "1000-0",
            "1000-1",
            "1500-2",
        ],
    );
    // Pending entries deleted from the stream (their nodes keep other entries).
    ok(
        w,
        &[
            "XDEL",
            "big:stream",
            "1001-1",
            "1200-3",
            "1700-0",
            "50000-2",
        ],
    );
}

/// A flat `[name, value, ...]` reply, without the fields that depend on time or on the
/// radix tree's layout.
fn view(v: &Value) -> String {
    let skip = |k: &str| {
        matches!(
            k,
            "radix-tree-keys"
                | "radix-tree-nodes"
                | "seen-time"
                | "active-time"
                | "idle"
                | "inactive"
        )
    };
    let mut out = String::new();
    for p in v.items().chunks(2) {
        let k = p[0].text();
        if !skip(&k) {
            out.push_str(&format!("{k}={:?};", p[1]));
        }
    }
    out
}

/// A stream's metadata, groups, consumers and every pending entry (ID, owner, deliveries).
fn stream_state(w: &mut Wire, key: &str) -> String {
    let mut out = view(&w.value(&["XINFO", "STREAM", key]));
    for g in w.value(&["XINFO", "GROUPS", key]).items() {
        out.push_str(&format!("\ngroup {}", view(g)));
        let name = g.items()[1].text();
        for c in w.value(&["XINFO", "CONSUMERS", key, &name]).items() {
            out.push_str(&format!("\n  consumer {}", view(c)));
        }
        let pending = w.value(&["XPENDING", key, &name, "-", "+", "100000"]);
        out.push_str(&format!("\n  {} pending:", pending.items().len()));
        for p in pending.items() {
            let p = p.items();
            out.push_str(&format!(" {}/{}/{}", p[0].text(), p[1].text(), p[3].int()));
        }
    }
    out
}

fn peak_rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/<pid>/status")
}

#[test]
fn big_values_are_streamed_with_bounded_memory() {
    if skip_direct("the syncer") {
        return;
    }
    let source = sync_source();
    let target = RedisServer::start();
    let mut s = source.wire();
    s.set_timeout(Duration::from_secs(60));
    fill(&mut s);
    let keys = s.value(&["DBSIZE"]).int();
    assert_eq!(keys, 12);
    let used = s.value(&["MEMORY", "USAGE", "big:string"]).int();
    assert!(used as usize > VALUE_BYTES, "{used}");

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("cutover.toml");
    // A 4 MiB window of commands in flight to the target (16 MiB by default, a bound of its
    // own), so that the allocator's variance does not eat the margin: peaks of 25-29 MB
    // here, 29-38 MB with the default window, about 150 MB when values are read whole.
    std::fs::write(
        &config,
        "[sync]\nbig_value_bytes = 1048576\nmax_inflight_bytes = 4194304\n",
    )
    .unwrap();
    let started = std::time::Instant::now();
    let proxy = Cutover::start(
        &source,
        &[
            "--target",
            &target.url(),
            "--config",
            config.to_str().unwrap(),
        ],
    );
    wait_caught_up(&source, &proxy);
    let took = started.elapsed();
    let rss_kb = peak_rss_kb(proxy.pid());
    let rdb_bytes = proxy.status_u64("rdb_bytes_loaded");
    eprintln!(
        "full load of {} keys, {:.1} MB of RDB, in {:.1} s; cutover's peak RSS {:.1} MB",
        keys,
        rdb_bytes as f64 / 1e6,
        took.as_secs_f64(),
        rss_kb as f64 / 1024.0
    );
    assert_eq!(proxy.status_u64("keys_loaded"), keys as u64);

    let mut t = target.wire();
    t.set_timeout(Duration::from_secs(60));
    let names = [
        "small:str",
        "small:list",
        "small:set",
        "small:zset",
        "small:hash",
        "small:stream",
        "big:string",
        "big:list",
        "big:set",
        "big:zset",
        "big:hash",
        "big:stream",
    ];
    for k in names {
        let a = s.cmd(&["DEBUG", "DIGEST-VALUE", k]);
        let b = t.cmd(&["DEBUG", "DIGEST-VALUE", k]);
        assert_eq!(show(&a), show(&b), "{k} differs");
        let pa = s.value(&["PTTL", k]).int();
        let pb = t.value(&["PTTL", k]).int();
        if pa < 0 || pb < 0 {
            assert_eq!(pa, pb, "{k}: TTL presence differs");
        } else {
            assert!((pa - pb).abs() < 5_000, "{k}: PTTL {pa} vs {pb}");
        }
    }
    for k in ["big:list", "big:set", "big:zset", "big:hash", "big:stream"] {
        let ty = s.value(&["TYPE", k]).text();
        let len_cmd = match ty.as_str() {
            "list" => "LLEN",
            "set" => "SCARD",
            "zset" => "ZCARD",
            "hash" => "HLEN",
            _ => "XLEN",
        };
        let n = t.value(&[len_cmd, k]).int();
        assert_eq!(n, s.value(&[len_cmd, k]).int(), "{k}");
        assert!(n as usize >= ELEMS - 10, "{k}: {n}");
    }
    let a = stream_state(&mut s, "big:stream");
    let b = stream_state(&mut t, "big:stream");
    assert_eq!(a, b, "stream groups, consumers or pending entries differ");
    assert!(a.contains("5497 pending:"), "{}", &a[..a.len().min(2000)]);
    assert!(
        a.contains(" 1200-3/"),
        "a deleted pending entry: {}",
        &a[..a.len().min(2000)]
    );

    // Memory: cutover never held one of the values (each about 20 MB) whole.
    assert!(
        rss_kb < MAX_RSS_KB,
        "cutover's peak RSS {rss_kb} kB (bound {MAX_RSS_KB} kB)"
    );

    // The stream of commands goes on after the load.
    let mut p = proxy.wire();
    assert_bytes(p.cmd(&["RPUSH", "big:list", "tail"]), int(ELEMS as i64 + 1));
    wait_caught_up(&source, &proxy);
    assert_eq!(
        show(&s.cmd(&["DEBUG", "DIGEST-VALUE", "big:list"])),
        show(&t.cmd(&["DEBUG", "DIGEST-VALUE", "big:list"]))
    );
}
