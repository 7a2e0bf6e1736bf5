//! The syncer into a Redis Cluster target (3 masters on loopback), from a standalone
//! source: full load and live stream compared key by key on the owning node, exactly once
//! through kills of cutover, no loss or reordering through a reshard of the target, and
//! sources with keys in several dbs.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;

use cluster::slots::key_slot;
use support::*;

/// Connections to the cluster's nodes and who owns which slot, read once (fresh after a
/// reshard: build another).
struct Owners {
    ranges: Vec<(i64, i64, u16)>,
    wires: HashMap<u16, Wire>,
}

impl Owners {
    /// Asks the first node that answers (a test may have stopped some).
    fn of(cluster: &RedisCluster) -> Owners {
        let mut w = cluster
            .nodes
            .iter()
            .find_map(|s| Wire::try_connect(s.addr()).ok())
            .expect("a node of the cluster answers");
        let ranges = w
            .value(&["CLUSTER", "SLOTS"])
            .items()
            .iter()
            .map(|r| {
                let it = r.items();
                (it[0].int(), it[1].int(), it[2].items()[1].int() as u16)
            })
            .collect();
        Owners {
            ranges,
            wires: HashMap::new(),
        }
    }

    /// The connection to the master of `key`'s slot.
    fn wire(&mut self, key: &[u8]) -> &mut Wire {
        let slot = i64::from(key_slot(key));
        let port = self
            .ranges
            .iter()
            .find(|(lo, hi, _)| (*lo..=*hi).contains(&slot))
            .map(|r| r.2)
            .expect("every slot has an owner");
        self.port(port)
    }

    fn port(&mut self, port: u16) -> &mut Wire {
        self.wires
            .entry(port)
            .or_insert_with(|| Wire::connect(([127, 0, 0, 1], port).into()))
    }

    fn masters(&mut self) -> Vec<u16> {
        let mut ports: Vec<u16> = self.ranges.iter().map(|r| r.2).collect();
        ports.sort_unstable();
        ports.dedup();
        ports
    }
}

/// Every key of the source's db 0 is on the node that owns its slot with the same value
/// (DEBUG DIGEST-VALUE, which ignores encodings) and a TTL within 2 s; and the cluster
/// holds nothing else but cutover's own `__cutover:` keys.
#[track_caller]
fn assert_same_data(source: &RedisServer, cluster: &RedisCluster) {
    let mut s = source.wire();
    let mut owners = Owners::of(cluster);
    // (cutover's own keys on the source, the CUTOVER's attempt marker, stay there.)
    let keys: Vec<Vec<u8>> = scan_keys(&mut s)
        .into_iter()
        .filter(|k| !k.starts_with(b"__cutover:"))
        .collect();
    for k in &keys {
        assert_same_key(&mut s, owners.wire(k), k, "db 0");
    }
    let mut total = 0;
    for port in owners.masters() {
        total += scan_keys(owners.port(port))
            .into_iter()
            .filter(|k| !k.starts_with(b"__cutover:"))
            .count();
    }
    assert_eq!(
        total,
        keys.len(),
        "the cluster has other keys than the source"
    );
}

fn cutover_to(source: &RedisServer, cluster: &RedisCluster, extra: &[&str]) -> Cutover {
    let mut args = vec!["--target".to_string(), cluster.url()];
    args.extend(extra.iter().map(|s| s.to_string()));
    Cutover::builder(source).args(&args).metrics().start()
}

/// A metric's value from the Prometheus text (0 when absent).
fn metric(proxy: &Cutover, name: &str) -> f64 {
    let (_, body) = proxy.metrics_text();
    body.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

const LIB: &str = "#!lua name=cutoverlib\nredis.register_function('echo1', function(keys, args) return args[1] end)";

#[test]
fn full_sync_then_live_stream_into_a_cluster() {
    if skip_direct("the syncer") {
        return;
    }
    let source = sync_source();
    let cluster = RedisCluster::start(3);
    let mut s = source.wire();
    for i in 0..4 {
        fill_every_type(&mut s, &format!("before{i}"), &["0.1", "tenth"]);
    }
    assert_bytes(s.cmd(&["FUNCTION", "LOAD", LIB]), bulk("cutoverlib"));
    // Values above 4 KB (the 700-element ones) are re-created in chunks of ordinary
    // commands, each routed by its key's slot; the others go by RESTORE.
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, "[sync]\nbig_value_bytes = 4096\n").unwrap();
    let proxy = cutover_to(&source, &cluster, &["--config", cfg.to_str().unwrap()]);
    wait_caught_up(&source, &proxy);
    assert_same_data(&source, &cluster);
    // The function reached every master (EVALSHA/FCALL may land on any).
    for m in cluster.masters() {
        assert_bytes(m.cmd(&["FCALL", "echo1", "0", "x"]), bulk("x"));
    }
    let st = proxy.status();
    assert_eq!(st["full_syncs"], "1", "{st:?}");

    // Live writes: every type again, a transaction in one slot, MSET and DEL across
    // slots, a script (replicated as a transaction of its effects), a transaction across
    // slots (split, counted), TTL changes, and a function loaded live (every master).
    let mut p = proxy.wire();
    fill_every_type(&mut p, "after", &["0.1", "tenth"]);
    p.send(b"MULTI\r\nINCR {t}a\r\nINCRBY {t}b 5\r\nRPUSH {t}l x y\r\nEXEC\r\n");
    for _ in 0..5 {
        p.read_reply();
    }
    assert_bytes(
        p.cmd(&["MSET", "m:1", "a", "m:2", "b", "m:3", "c", "m:4", "d"]),
        b"+OK\r\n",
    );
    assert_bytes(p.cmd(&["DEL", "m:1", "m:3", "before0:str"]), int(3));
    p.cmd(&[
        "EVAL",
        "redis.call('SET', KEYS[1], 'x'); redis.call('INCR', KEYS[2]); return 1",
        "2",
        "{ev}1",
        "{ev}2",
    ]);
    p.send(b"MULTI\r\nSET x:1 one\r\nINCR x:2\r\nSADD x:3 m\r\nEXEC\r\n");
    for _ in 0..5 {
        p.read_reply();
    }
    assert_bytes(p.cmd(&["EXPIRE", "before1:list-small", "1000"]), int(1));
    assert_bytes(p.cmd(&["PERSIST", "before1:ttl"]), int(1));
    assert_bytes(
        p.cmd(&[
            "FUNCTION",
            "LOAD",
            "REPLACE",
            &LIB.replace("echo1", "echo2"),
        ]),
        bulk("cutoverlib"),
    );
    wait_caught_up(&source, &proxy);
    assert_same_data(&source, &cluster);
    for m in cluster.masters() {
        assert_bytes(m.cmd(&["FCALL", "echo2", "0", "y"]), bulk("y"));
    }
    let st = proxy.status();
    assert_eq!(st["split_transactions"], "1", "{st:?}");
    assert_eq!(st["lag_bytes"], "0", "{st:?}");
    assert_eq!(metric(&proxy, "cutover_sync_split_transactions_total"), 1.0);

    // FLUSHALL in the stream empties every master; what follows it is applied after.
    assert_bytes(p.cmd(&["FLUSHALL"]), b"+OK\r\n");
    p.cmd(&["SET", "late:1", "a"]);
    p.cmd(&["RPUSH", "late:2", "b"]);
    wait_caught_up(&source, &proxy);
    assert_same_data(&source, &cluster);
}

/// Keys spread over the slots (`ctr:0` .. `ctr:<keys - 1>`), dealt to `writers` writers
/// on `source`, for [`Counters`].
fn spread(
    source: &RedisServer,
    writers: usize,
    keys: usize,
) -> Vec<(std::net::SocketAddr, Vec<String>)> {
    (0..writers)
        .map(|t| {
            let mine = (t..keys).step_by(writers).map(|k| format!("ctr:{k}"));
            (source.addr(), mine.collect())
        })
        .collect()
}

/// Waits until `n` more writes than `now` were sent.
fn wait_writes(sent: &AtomicU64, n: u64) {
    let from = sent.load(Ordering::Relaxed);
    poll_until(SYNC_WAIT, || sent.load(Ordering::Relaxed) >= from + n);
}

#[test]
fn cutover_killed_while_streaming_into_a_cluster_applies_nothing_twice() {
    if skip_direct("the syncer") {
        return;
    }
    let source = sync_source();
    // A resume continues from the checkpoints if the source still has the stream from
    // there: writers going flat out on this small machine outrun a debug build's syncer
    // by more than the default 1 MB backlog while it restarts.
    source.cmd(&["CONFIG", "SET", "repl-backlog-size", "64mb"]);
    let cluster = RedisCluster::start(3);
    source.cmd(&["SET", "seed", "1"]);
    let proxy = cutover_to(&source, &cluster, &[]);
    wait_caught_up(&source, &proxy);
    let counters = Counters::start(spread(&source, 3, 200));
    let proxy = kill_while_applying(proxy, 3, &counters, || cutover_to(&source, &cluster, &[]));
    counters.wait_writes(2_000);
    let counts = counters.finish();
    wait_caught_up(&source, &proxy);
    let mut owners = Owners::of(&cluster);
    for (k, n) in &counts {
        assert_bytes(
            owners.wire(k.as_bytes()).cmd(&["GET", k]),
            bulk(n.to_string()),
        );
    }
    assert_same_data(&source, &cluster);
    // Every restart continued the stream: no second full sync.
    assert_eq!(source.info_field("stats", "sync_full").unwrap(), "1");
    let status = proxy.status();
    assert_eq!(status["full_syncs"], "0", "{status:?}");
    assert_ne!(status["partial_syncs"], "0", "{status:?}");
}

#[test]
fn a_reshard_of_the_target_while_streaming_loses_and_reorders_nothing() {
    if skip_direct("the syncer") {
        return;
    }
    let source = sync_source();
    let cluster = RedisCluster::start(3);
    // Keys of the slot to move, so MIGRATE moves some before the writes and some after.
    let mut s = source.wire();
    for i in 0..40 {
        s.cmd(&["SET", &format!("{{rs}}:k{i}"), "v"]);
    }
    let proxy = cutover_to(&source, &cluster, &[]);
    wait_caught_up(&source, &proxy);
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    // One writer: sequences in the moving slot and in others, and counters.
    let writer = {
        let (addr, stop, sent) = (source.addr(), stop.clone(), sent.clone());
        thread::spawn(move || {
            let mut w = Wire::connect(addr);
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let v = n.to_string();
                let other = format!("seq:{}", n % 7);
                for c in [
                    vec!["RPUSH", "{rs}:list", v.as_str()],
                    vec!["INCR", "{rs}:ctr"],
                    vec!["RPUSH", other.as_str(), v.as_str()],
                ] {
                    let r = w.cmd(&c);
                    assert!(!r.starts_with(b"-"), "{}", show(&r));
                }
                n += 1;
                sent.fetch_add(1, Ordering::Relaxed);
            }
            n
        })
    };
    wait_writes(&sent, 300);
    let (slot, from, to) = cluster.slot_move_for(b"{rs}");
    // Half the slot's keys moved: writes flow while the syncer meets ASK and TRYAGAIN.
    // And the syncer restarts in the middle of it: it reads the slots' checkpoints (one
    // of them half-way to its new node) and resumes.
    cluster.move_slot(slot, from, to, || {
        wait_writes(&sent, 300);
        poll_until(SYNC_WAIT, || {
            metric(&proxy, "cutover_sync_target_retries_total{reason=\"ask\"}") > 0.0
        });
        let partial = proxy.status_u64("partial_syncs");
        source.cmd(&["CLIENT", "KILL", "TYPE", "replica"]);
        poll_until(SYNC_WAIT, || proxy.status_u64("partial_syncs") > partial);
        wait_writes(&sent, 300);
    });
    wait_writes(&sent, 300);
    stop.store(true, Ordering::Relaxed);
    let n = writer.join().unwrap();
    wait_caught_up(&source, &proxy);
    let mut owners = Owners::of(&cluster);
    assert_eq!(owners.wire(b"{rs}").addr(), to.addr(), "the slot moved");
    let list = owners
        .wire(b"{rs}")
        .value(&["LRANGE", "{rs}:list", "0", "-1"]);
    let got: Vec<u64> = list
        .items()
        .iter()
        .map(|v| v.text().parse().unwrap())
        .collect();
    assert_eq!(got, (0..n).collect::<Vec<_>>(), "the moving slot's list");
    assert_bytes(
        owners.wire(b"{rs}").cmd(&["GET", "{rs}:ctr"]),
        bulk(n.to_string()),
    );
    for j in 0..7u64 {
        let k = format!("seq:{j}");
        let list = owners.wire(k.as_bytes()).value(&["LRANGE", &k, "0", "-1"]);
        let got: Vec<u64> = list
            .items()
            .iter()
            .map(|v| v.text().parse().unwrap())
            .collect();
        let want: Vec<u64> = (0..n).filter(|i| i % 7 == j).collect();
        assert_eq!(got, want, "{k}");
    }
    assert_same_data(&source, &cluster);
    // The syncer was redirected: ASK while the slot migrated (awaited above).
    assert!(metric(&proxy, "cutover_sync_target_retries_total") > 0.0);
}

#[test]
fn a_source_with_keys_in_several_dbs_needs_a_db_map() {
    if skip_direct("the syncer") {
        return;
    }
    let source = sync_source();
    let cluster = RedisCluster::start(3);
    let mut s = source.wire();
    s.cmd(&["SET", "in0", "a"]);
    s.cmd(&["SELECT", "3"]);
    s.cmd(&["SET", "in3", "b"]);
    s.cmd(&["SELECT", "5"]);
    s.cmd(&["SET", "in5", "c"]);
    s.cmd(&["SET", "in5b", "d"]);
    let full_before = source.info_field("stats", "sync_full").unwrap();
    // Refused at start, naming the dbs, before any full sync of the source.
    let proxy = cutover_to(&source, &cluster, &[]);
    poll_until(SYNC_WAIT, || proxy.status()["sync_state"] == "error");
    let err = proxy.status()["last_error"].clone();
    assert!(
        err.contains("db3 (1 keys)") && err.contains("db5 (2 keys)") && err.contains("db_map"),
        "{err}"
    );
    assert!(!err.contains("db0"), "{err}");
    assert_eq!(
        source.info_field("stats", "sync_full").unwrap(),
        full_before
    );
    assert_eq!(cluster.dbsize(), 0);
    drop(proxy);

    // Mapped to db 0: loaded and streamed.
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, "[sync.db_map]\n\"3\" = 0\n\"5\" = 0\n").unwrap();
    let proxy = cutover_to(&source, &cluster, &["--config", cfg.to_str().unwrap()]);
    wait_caught_up(&source, &proxy);
    let mut owners = Owners::of(&cluster);
    for (k, v) in [("in0", "a"), ("in3", "b"), ("in5", "c"), ("in5b", "d")] {
        assert_bytes(owners.wire(k.as_bytes()).cmd(&["GET", k]), bulk(v));
    }
    let mut p = proxy.wire();
    p.cmd(&["SELECT", "3"]);
    p.cmd(&["SET", "live3", "e"]);
    p.cmd(&["SELECT", "0"]);
    p.cmd(&["SET", "live0", "f"]);
    wait_caught_up(&source, &proxy);
    for (k, v) in [("live3", "e"), ("live0", "f")] {
        assert_bytes(owners.wire(k.as_bytes()).cmd(&["GET", k]), bulk(v));
    }
    // A db the map does not send to 0, met in the stream: the sync stops, naming it.
    p.cmd(&["SELECT", "7"]);
    p.cmd(&["SET", "in7", "g"]);
    poll_until(SYNC_WAIT, || proxy.status()["sync_state"] == "error");
    let err = proxy.status()["last_error"].clone();
    assert!(err.contains("db7"), "{err}");
    assert_bytes(owners.wire(b"in7").cmd(&["EXISTS", "in7"]), int(0));
}

#[test]
fn what_a_cluster_cannot_run_stops_the_sync_naming_it() {
    if skip_direct("the syncer") {
        return;
    }
    let source = sync_source();
    let cluster = RedisCluster::start(3);
    let dir = tempfile::tempdir().unwrap();
    let stop_cfg = dir.path().join("stop.toml");
    std::fs::write(&stop_cfg, "[sync]\ncross_slot_transactions = \"stop\"\n").unwrap();
    let proxy = cutover_to(&source, &cluster, &["--config", stop_cfg.to_str().unwrap()]);
    wait_caught_up(&source, &proxy);
    let mut s = source.wire();
    s.cmd(&["SET", "before", "1"]);
    // A transaction whose keys span slots, with sync.cross_slot_transactions = "stop".
    s.send(b"MULTI\r\nSET x:1 a\r\nSET x:2 b\r\nEXEC\r\n");
    for _ in 0..4 {
        s.read_reply();
    }
    poll_until(SYNC_WAIT, || proxy.status()["sync_state"] == "error");
    let err = proxy.status()["last_error"].clone();
    assert!(
        err.contains("MULTI/EXEC") && err.contains("2 commands on keys in 2 slots"),
        "{err}"
    );
    let mut owners = Owners::of(&cluster);
    assert_bytes(owners.wire(b"before").cmd(&["GET", "before"]), bulk("1"));
    assert_bytes(owners.wire(b"x:1").cmd(&["EXISTS", "x:1"]), int(0));
    drop(proxy);

    // Split by default: the resumed run applies it per slot, then meets a command no
    // cluster can run (a RENAME across slots) and stops, naming it (never a value).
    let proxy = cutover_to(&source, &cluster, &[]);
    s.cmd(&["SET", "r:1", "secret-value"]);
    s.cmd(&["RENAME", "r:1", "r:2"]);
    poll_until(SYNC_WAIT, || proxy.status()["sync_state"] == "error");
    let err = proxy.status()["last_error"].clone();
    assert!(err.starts_with("RENAME can't be applied"), "{err}");
    assert!(!err.contains("secret"), "{err}");
    let mut owners = Owners::of(&cluster);
    for (k, v) in [("x:1", "a"), ("x:2", "b"), ("r:1", "secret-value")] {
        assert_bytes(owners.wire(k.as_bytes()).cmd(&["GET", k]), bulk(v));
    }
    assert_eq!(proxy.status()["split_transactions"], "1");
    assert_eq!(proxy.status()["partial_syncs"], "1");
}

#[test]
fn a_failover_of_the_target_and_its_url_node_going_down_lose_nothing() {
    if skip_direct("the syncer") {
        return;
    }
    let source = sync_source();
    source.cmd(&["CONFIG", "SET", "repl-backlog-size", "64mb"]);
    let mut cluster = RedisCluster::start_with(3, 1, &[]);
    source.cmd(&["SET", "seed", "1"]);
    let proxy = cutover_to(&source, &cluster, &[]);
    wait_caught_up(&source, &proxy);
    let counters = Counters::start(spread(&source, 2, 200));
    let progress = |proxy: &Cutover| {
        let from = proxy.status_u64("applied_offset");
        poll_until(SYNC_WAIT, || {
            proxy.status_u64("applied_offset") > from + 10_000
        });
    };
    progress(&proxy);
    // A manual failover of the URL's node, under load: its slots answer -MOVED to the
    // promoted replica from then on.
    let url_port = cluster.nodes[0].port();
    let replica = cluster.nodes[3..]
        .iter()
        .find(|r| r.info_field("replication", "master_port") == Some(url_port.to_string()))
        .expect("a replica of node 0");
    let before_failover = proxy.status_u64("partial_syncs");
    cluster.failover(replica);
    progress(&proxy);
    // The syncer followed it: by -MOVED from the demoted node, or (when its connection to
    // that node dropped first) by a new run that resumed against the new map.
    let moved = metric(
        &proxy,
        "cutover_sync_target_retries_total{reason=\"moved\"}",
    );
    assert!(
        moved > 0.0 || proxy.status_u64("partial_syncs") > before_failover,
        "the failover went unnoticed: {:?}",
        proxy.status()
    );
    // The URL's node (a replica now) goes down, and the replication link drops: the next
    // run reaches the cluster through the masters the last one knew.
    // (The run may also end by itself, on losing its connection to that node.)
    let partial = proxy.status_u64("partial_syncs");
    cluster.nodes[0].stop();
    source.cmd(&["CLIENT", "KILL", "TYPE", "replica"]);
    poll_until(SYNC_WAIT, || proxy.status_u64("partial_syncs") > partial);
    progress(&proxy);
    let counts = counters.finish();
    wait_caught_up(&source, &proxy);
    let mut owners = Owners::of(&cluster);
    for (k, n) in &counts {
        assert_bytes(
            owners.wire(k.as_bytes()).cmd(&["GET", k]),
            bulk(n.to_string()),
        );
    }
    assert_same_data(&source, &cluster);
    assert_eq!(source.info_field("stats", "sync_full").unwrap(), "1");
    assert!(
        proxy
            .log_tail()
            .contains("reaching the cluster through its other masters"),
        "{}",
        proxy.log_tail()
    );
}

#[test]
fn the_scan_copy_into_a_cluster_under_writes_then_cutover() {
    if skip_direct("the SCAN copy") {
        return;
    }
    let source = RedisServer::start();
    let cluster = RedisCluster::start(3);
    {
        let mut s = source.wire();
        for i in 0..3 {
            fill_every_type(&mut s, &format!("scan{i}"), &["0.1", "tenth"]);
        }
        assert_bytes(s.cmd(&["DEBUG", "POPULATE", "20000", "p"]), b"+OK\r\n");
    }
    let proxy = cutover_to(&source, &cluster, &["--source-mode", "scan"]);
    // Writes through the proxy during the copy and the rounds: counters spread over the
    // slots, deletes, a transaction in one slot.
    let mut p = proxy.wire();
    for i in 0..2_000 {
        assert_bytes(p.cmd(&["INCR", &format!("n:{}", i % 97)]), int(i / 97 + 1));
        if i % 10 == 0 {
            assert_bytes(p.cmd(&["DEL", &format!("p:{i}")]), int(1));
        }
    }
    p.cmd(&["MULTI"]);
    p.cmd(&["SET", "{t}a", "1"]);
    p.cmd(&["SET", "{t}b", "2"]);
    assert_eq!(p.value(&["EXEC"]).items().len(), 2);
    poll_until(SYNC_WAIT, || proxy.status()["sync_state"] == "scan_rounds");
    assert_bytes(cutover(&proxy, &["TIMEOUT", "5000"]), b"+OK\r\n");
    assert_eq!(proxy.status()["route"], "target");
    assert_same_data(&source, &cluster);
    // Through the proxy, the counters go on from the target.
    assert_bytes(p.cmd(&["INCR", "n:0"]), int(2_000 / 97 + 2));
}
