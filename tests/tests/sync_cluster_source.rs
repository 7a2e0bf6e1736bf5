//! The syncer from a Redis Cluster source (3 masters on loopback): one replication link per
//! master. Into one server and into a cluster of another shape (2 masters): every key equal
//! (DEBUG DIGEST-VALUE and PTTL) after the full load and after live writes, STATUS showing
//! each link and their sum; exactly once through kills of cutover; a slot moved on the
//! source stops the sync and says so; a whole-db command on one link stops it naming it;
//! CUTOVER under load fences every master and loses nothing.

use std::collections::HashMap;
use std::thread;
use std::time::Duration;

use cluster::slots::{key_slot, NodeAddr, SlotMap};
use support::*;

/// The target: one server, or a cluster (connections to its masters, by slot, read once).
enum Target<'a> {
    One(Wire),
    Cluster {
        ranges: Vec<(i64, i64, u16)>,
        wires: HashMap<u16, Wire>,
        _cluster: &'a RedisCluster,
    },
}

impl<'a> Target<'a> {
    fn one(server: &RedisServer) -> Target<'a> {
        Target::One(server.wire())
    }

    fn cluster(cluster: &'a RedisCluster) -> Target<'a> {
        let ranges = cluster.nodes[0]
            .wire()
            .value(&["CLUSTER", "SLOTS"])
            .items()
            .iter()
            .map(|r| {
                let it = r.items();
                (it[0].int(), it[1].int(), it[2].items()[1].int() as u16)
            })
            .collect();
        Target::Cluster {
            ranges,
            wires: HashMap::new(),
            _cluster: cluster,
        }
    }

    fn wire(&mut self, key: &[u8]) -> &mut Wire {
        match self {
            Target::One(w) => w,
            Target::Cluster { ranges, wires, .. } => {
                let slot = i64::from(key_slot(key));
                let port = ranges
                    .iter()
                    .find(|(lo, hi, _)| (*lo..=*hi).contains(&slot))
                    .map(|r| r.2)
                    .expect("every slot has an owner");
                wires
                    .entry(port)
                    .or_insert_with(|| Wire::connect(([127, 0, 0, 1], port).into()))
            }
        }
    }

    /// Keys other than cutover's own, everywhere on the target.
    fn data_keys(&mut self) -> usize {
        let ports: Vec<u16> = match self {
            Target::One(w) => {
                return scan_keys(w)
                    .into_iter()
                    .filter(|k| !k.starts_with(b"__cutover:"))
                    .count()
            }
            Target::Cluster { ranges, .. } => {
                let mut p: Vec<u16> = ranges.iter().map(|r| r.2).collect();
                p.sort_unstable();
                p.dedup();
                p
            }
        };
        ports
            .into_iter()
            .map(|port| {
                scan_keys(&mut Wire::connect(([127, 0, 0, 1], port).into()))
                    .into_iter()
                    .filter(|k| !k.starts_with(b"__cutover:"))
                    .count()
            })
            .sum()
    }
}

/// Every key of every source master is on the target with the same value (DEBUG
/// DIGEST-VALUE, which ignores encodings) and a TTL within 2 s; the target holds nothing
/// else but cutover's own `__cutover:` keys. Returns how many keys were compared.
#[track_caller]
fn assert_same_data(source: &RedisCluster, target: &mut Target) -> usize {
    let mut total = 0;
    for m in source.masters() {
        let mut s = m.wire();
        // (cutover's own keys on the source, the CUTOVER's attempt marker, stay there.)
        let keys: Vec<Vec<u8>> = scan_keys(&mut s)
            .into_iter()
            .filter(|k| !k.starts_with(b"__cutover:"))
            .collect();
        total += keys.len();
        for k in &keys {
            assert_same_key(&mut s, target.wire(k), k, "source");
        }
    }
    assert_eq!(
        target.data_keys(),
        total,
        "the target has other keys than the source"
    );
    total
}

/// The sum of the source masters' replication offsets.
fn source_offset(source: &RedisCluster) -> u64 {
    source.masters().iter().map(master_offset).sum()
}

/// Waits until every link streams and the sum applied is the sum of the masters' offsets.
#[track_caller]
fn wait_caught_up(source: &RedisCluster, proxy: &Cutover) {
    wait_applied(proxy, || source_offset(source));
}

/// cutover in front of the cluster `source` (its first node's URL), syncing to `target`.
fn cutover_from(source: &RedisCluster, target: &str, extra: &[&str]) -> Cutover {
    let mut args = vec!["--target".to_string(), target.to_string()];
    args.extend(extra.iter().map(|s| s.to_string()));
    Cutover::builder(&source.nodes[0])
        .args(&args)
        .metrics()
        .start()
}

/// A source cluster of 3 masters that starts diskless transfers at once.
fn source_cluster() -> RedisCluster {
    RedisCluster::start_with(3, 0, &["--repl-diskless-sync-delay", "0"])
}

/// Fills every type on each master of `source` (keys `{<tag on master i>}:...`, so each
/// tag's keys share one slot and are written on its master directly).
fn fill_each_master(source: &RedisCluster, prefix: &str) {
    for i in 0..source.masters().len() {
        let tag = format!("{{{}}}", source.key_on(i, prefix));
        fill_every_type(&mut source.nodes[i].wire(), &tag, &["0.1", "tenth"]);
    }
}

/// While cutover is down: master `i` forgets the history cutover would resume from (a
/// tiny backlog, overrun by 200 KB of writes) and deletes `gone`, so its link must load
/// it again, emptying its own slots first (and only those) on the target.
fn overrun_backlog(source: &RedisCluster, i: usize, gone: &str) {
    let m = &source.masters()[i];
    assert_bytes(
        m.cmd(&["CONFIG", "SET", "repl-backlog-size", "16384"]),
        b"+OK\r\n",
    );
    assert_bytes(m.cmd(&["DEL", gone]), int(1));
    let tag = source.key_on(i, "filler");
    let value = "x".repeat(1000);
    let mut w = m.wire();
    for j in 0..200 {
        assert_bytes(
            w.cmd(&["SET", &format!("{{{tag}}}:{j}"), &value]),
            b"+OK\r\n",
        );
    }
}

/// After a restart where master `reloaded` overran its backlog: that link loaded again
/// (its slots emptied first), the others continued.
#[track_caller]
fn assert_one_link_reloaded(proxy: &Cutover, reloaded: &RedisServer) {
    let st = proxy.status();
    assert_eq!(st["full_syncs"], "1", "{st:?}");
    assert_eq!(st["partial_syncs"], "2", "{st:?}");
    let port = format!("addr=127.0.0.1:{},", reloaded.port());
    let line = (0..3)
        .map(|i| st[&format!("sync_link{i}")].clone())
        .find(|l| l.starts_with(&port))
        .expect("the reloaded master's link");
    assert!(line.contains("full_syncs=1"), "{line}");
    assert!(
        proxy.log_tail().contains("emptied this link's slots"),
        "{}",
        proxy.log_tail()
    );
}

/// Checks STATUS shows one line per link, each streaming, and that the top-level
/// offsets are their sums.
#[track_caller]
fn assert_links_in_status(proxy: &Cutover, masters: usize) {
    let st = proxy.status();
    assert_eq!(st["sync_links"], masters.to_string(), "{st:?}");
    let mut applied = 0u64;
    let mut slots = 0u64;
    for i in 0..masters {
        let line = &st[&format!("sync_link{i}")];
        let fields: HashMap<&str, &str> = line
            .split(',')
            .filter_map(|kv| kv.split_once('='))
            .collect();
        assert_eq!(fields["state"], "streaming", "{line}");
        assert!(fields["addr"].starts_with("127.0.0.1:"), "{line}");
        assert_eq!(fields["full_syncs"], "1", "{line}");
        applied += fields["applied_offset"].parse::<u64>().unwrap();
        for r in fields["slots"].split(' ') {
            let (lo, hi) = r.split_once('-').unwrap_or((r, r));
            slots += hi.parse::<u64>().unwrap() - lo.parse::<u64>().unwrap() + 1;
        }
    }
    assert_eq!(slots, 16384, "{st:?}");
    assert_eq!(st["applied_offset"], applied.to_string(), "{st:?}");
    assert_eq!(st["full_syncs"], masters.to_string(), "{st:?}");
}

/// Live writes through the proxy (which routes them to the source's masters): every type
/// again, a transaction in one slot, MSET and DEL across slots (split by the proxy),
/// TTL changes, a script.
fn live_writes(proxy: &Cutover, before: &str) {
    let mut p = proxy.wire();
    fill_every_type(&mut p, "after", &["0.1", "tenth"]);
    p.send(b"MULTI\r\nINCR {t}a\r\nINCRBY {t}b 5\r\nRPUSH {t}l x y\r\nEXEC\r\n");
    for _ in 0..5 {
        assert!(!p.read_reply().starts_with(b"-"));
    }
    assert_bytes(
        p.cmd(&["MSET", "m:1", "a", "m:2", "b", "m:3", "c", "m:4", "d"]),
        b"+OK\r\n",
    );
    assert_bytes(p.cmd(&["DEL", "m:1", "m:3"]), int(2));
    let list = format!("{before}:list-small");
    assert_bytes(p.cmd(&["EXPIRE", &list, "1000"]), int(1));
    let ttl = format!("{before}:ttl");
    assert_bytes(p.cmd(&["PERSIST", &ttl]), int(1));
    p.cmd(&[
        "EVAL",
        "redis.call('SET', KEYS[1], 'x'); redis.call('INCR', KEYS[2]); return 1",
        "2",
        "{ev}1",
        "{ev}2",
    ]);
}

#[test]
fn cluster_source_into_one_server_full_load_live_writes_and_a_whole_db_command() {
    if skip_direct("the syncer") {
        return;
    }
    let source = source_cluster();
    fill_each_master(&source, "before");
    let target = RedisServer::start();
    let proxy = cutover_from(&source, &target.url(), &[]);
    wait_caught_up(&source, &proxy);
    let mut t = Target::one(&target);
    let n = assert_same_data(&source, &mut t);
    assert!(n > 50, "{n} keys");
    assert_links_in_status(&proxy, 3);
    // Every master ran one full sync for its link.
    for m in source.masters() {
        assert_eq!(m.info_field("stats", "sync_full").unwrap(), "1");
    }

    let before = format!("{{{}}}", source.key_on(0, "before"));
    live_writes(&proxy, &before);
    wait_caught_up(&source, &proxy);
    assert_same_data(&source, &mut t);
    assert_links_in_status(&proxy, 3);
    assert_eq!(proxy.status()["lag_bytes"], "0");
    let (_, metrics) = proxy.metrics_text();
    assert_eq!(
        metrics
            .lines()
            .filter(|l| l.starts_with("cutover_sync_link_applied_offset{"))
            .count(),
        3,
        "{metrics}"
    );

    // Restarted after master 2 overran its backlog (and deleted a key meanwhile): its
    // link loads again, emptying only its own slots on the target first.
    drop(proxy);
    let gone = format!("{{{}}}:str", source.key_on(2, "before"));
    overrun_backlog(&source, 2, &gone);
    let proxy = cutover_from(&source, &target.url(), &[]);
    wait_caught_up(&source, &proxy);
    assert_same_data(&source, &mut t);
    assert_bytes(target.cmd(&["EXISTS", &gone]), int(0));
    assert_one_link_reloaded(&proxy, &source.masters()[2]);

    // A FLUSHALL on one master would wipe the other links' keys on the target: that link
    // stops, naming the command and itself; the target keeps everything.
    let keys_before = t.data_keys();
    let flushed = &source.masters()[1];
    assert_bytes(flushed.cmd(&["FLUSHALL"]), b"+OK\r\n");
    poll_until(SYNC_WAIT, || proxy.status()["sync_state"] == "error");
    let err = proxy.status()["last_error"].clone();
    assert!(
        err.contains("FLUSHALL") && err.contains(&format!("127.0.0.1:{}", flushed.port())),
        "{err}"
    );
    assert_eq!(t.data_keys(), keys_before);
    let r = cutover(&proxy, &["CHECK"]);
    assert!(
        r.starts_with(b"-ERR") && show(&r).contains("error"),
        "{}",
        show(&r)
    );
}

#[test]
fn cluster_source_into_a_cluster_of_another_shape() {
    if skip_direct("the syncer") {
        return;
    }
    let source = source_cluster();
    fill_each_master(&source, "before");
    let target = RedisCluster::start(2);
    let proxy = cutover_from(&source, &target.url(), &[]);
    wait_caught_up(&source, &proxy);
    let mut t = Target::cluster(&target);
    assert_same_data(&source, &mut t);
    assert_links_in_status(&proxy, 3);

    let before = format!("{{{}}}", source.key_on(2, "before"));
    live_writes(&proxy, &before);
    wait_caught_up(&source, &proxy);
    assert_same_data(&source, &mut t);
    assert_links_in_status(&proxy, 3);

    // Restarted with the same layout: each link resumes from its own checkpoint.
    drop(proxy);
    let mut p = source.nodes[1].wire();
    let k = source.key_on(1, "while-down");
    p.cmd(&["SET", &k, "v"]);
    let proxy = cutover_from(&source, &target.url(), &[]);
    wait_caught_up(&source, &proxy);
    assert_same_data(&source, &mut t);
    let st = proxy.status();
    assert_eq!(st["partial_syncs"], "3", "{st:?}");
    assert_eq!(st["full_syncs"], "0", "{st:?}");

    // Again, after master 0 overran its backlog: its link empties its slots on the
    // target cluster (CLUSTER GETKEYSINSLOT) and loads again; the others continue.
    drop(proxy);
    let gone = format!("{{{}}}:hash-big", source.key_on(0, "before"));
    overrun_backlog(&source, 0, &gone);
    let proxy = cutover_from(&source, &target.url(), &[]);
    wait_caught_up(&source, &proxy);
    assert_same_data(&source, &mut t);
    assert_bytes(t.wire(gone.as_bytes()).cmd(&["EXISTS", &gone]), int(0));
    assert_one_link_reloaded(&proxy, &source.masters()[0]);
}

/// For [`Counters`]: one writer per master of `source`, on `keys` keys of one slot there.
fn per_master(source: &RedisCluster, keys: usize) -> Vec<(std::net::SocketAddr, Vec<String>)> {
    (0..source.masters().len())
        .map(|i| {
            let tag = source.key_on(i, "ctr");
            let mine = (0..keys).map(|n| format!("{{{tag}}}:{n}"));
            (source.nodes[i].addr(), mine.collect())
        })
        .collect()
}

#[test]
fn cutover_killed_while_streaming_from_a_cluster_applies_nothing_twice() {
    if skip_direct("the syncer") {
        return;
    }
    let source = source_cluster();
    for m in source.masters() {
        // Room for the writes made while cutover is down (a debug build restarts slowly).
        m.cmd(&["CONFIG", "SET", "repl-backlog-size", "64mb"]);
    }
    fill_each_master(&source, "seed");
    let target = RedisServer::start();
    let proxy = cutover_from(&source, &target.url(), &[]);
    wait_caught_up(&source, &proxy);
    let counters = Counters::start(per_master(&source, 50));
    let proxy = kill_while_applying(proxy, 2, &counters, || {
        cutover_from(&source, &target.url(), &[])
    });
    counters.wait_writes(1_000);
    let counts = counters.finish();
    wait_caught_up(&source, &proxy);
    let mut t = Target::one(&target);
    for (k, n) in &counts {
        assert_bytes(t.wire(k.as_bytes()).cmd(&["GET", k]), bulk(n.to_string()));
    }
    assert_same_data(&source, &mut t);
    // Every restart continued each master's stream: one full sync per master in all.
    for m in source.masters() {
        assert_eq!(m.info_field("stats", "sync_full").unwrap(), "1");
    }
    assert_eq!(proxy.status()["partial_syncs"], "3");
}

#[test]
fn a_slot_moved_on_the_source_stops_the_sync_and_says_which() {
    if skip_direct("the syncer") {
        return;
    }
    let source = source_cluster();
    // Keys of the slot to move (MIGRATE carries them to the other master).
    let mut w = source.wire_for(b"{mv}");
    for i in 0..20 {
        w.cmd(&["SET", &format!("{{mv}}:k{i}"), "v"]);
    }
    fill_each_master(&source, "before");
    let target = RedisServer::start();
    let proxy = cutover_from(&source, &target.url(), &[]);
    wait_caught_up(&source, &proxy);
    let (slot, from, to) = source.slot_move_for(b"{mv}");
    source.move_slot(slot, from, to, || {});
    poll_until(SYNC_WAIT, || proxy.status()["sync_state"] == "error");
    let st = proxy.status();
    let err = &st["last_error"];
    assert!(
        err.contains("topology changed") && err.contains(&format!("slot {slot}")),
        "{st:?}"
    );
    let log = proxy.log_tail();
    assert!(log.contains("topology changed"), "{log}");
    let r = cutover(&proxy, &["CHECK"]);
    assert!(r.starts_with(b"-ERR"), "{}", show(&r));
    // The topology watch stops every link once the map shows the move.
    poll_until(SYNC_WAIT, || {
        let st = proxy.status();
        st["last_error"].contains(&format!("slot {slot} moved from"))
            || (0..3).all(|i| !st[&format!("sync_link{i}")].contains("state=streaming"))
    });
    drop(proxy);

    // A restart against the new layout is refused: the checkpoints describe the old one.
    let proxy = cutover_from(&source, &target.url(), &[]);
    poll_until(SYNC_WAIT, || proxy.status()["sync_state"] == "error");
    let err = proxy.status()["last_error"].clone();
    assert!(err.contains("topology changed since"), "{err}");
    drop(proxy);

    // Unless the target may be emptied: then it starts over with the new layout.
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, "[sync]\ntarget_not_empty = \"flush\"\n").unwrap();
    let proxy = cutover_from(&source, &target.url(), &["--config", cfg.to_str().unwrap()]);
    wait_caught_up(&source, &proxy);
    assert_same_data(&source, &mut Target::one(&target));
    assert_eq!(proxy.status()["full_syncs"], "3");
}

#[test]
fn cutover_from_a_cluster_source_under_load_loses_nothing() {
    if skip_direct("the cutover") {
        return;
    }
    let source = source_cluster();
    let target = RedisServer::start();
    let proxy = cutover_from(&source, &target.url(), &[]);
    wait_caught_up(&source, &proxy);
    // Six application clients and redis-benchmark -P 16 alongside.
    let load = AppLoad::start(proxy.addr(), 100000);
    poll_until(SYNC_WAIT, || target.cmd(&["EXISTS", "c:5"]) == int(1));
    thread::sleep(Duration::from_millis(300));
    assert_bytes(cutover(&proxy, &["TIMEOUT", "10000"]), b"+OK\r\n");
    let st = proxy.status();
    assert_eq!(st["route"], "target");
    assert_eq!(st["cutover_state"], "switched");
    thread::sleep(Duration::from_millis(300));
    let rounds = load.finish();
    // Every acknowledged write is on the target exactly once, in order.
    assert_acked_writes(&rounds, |_| target.wire());
    // No master took a write past its fence.
    assert_eq!(st["source_writes_after_fence"], "0");
    let pause: f64 = st["last_pause_ms"].parse().unwrap();
    eprintln!("cutover from a cluster: pause {pause} ms, rounds {rounds:?}");
}

#[test]
fn links_from_replicas_leave_the_masters_alone() {
    if skip_direct("the syncer") {
        return;
    }
    let source = RedisCluster::start_with(3, 2, &["--repl-diskless-sync-delay", "0"]);
    let replicas = &source.nodes[3..];
    // Every replica linked and served its one full sync by its master.
    poll_until(SYNC_WAIT, || {
        replicas
            .iter()
            .all(|r| r.info_field("replication", "master_link_status").as_deref() == Some("up"))
    });
    // ...and known as replicas to the node whose URL cutover gets.
    poll_until(SYNC_WAIT, || {
        let nodes = source.nodes[0].cmd(&["CLUSTER", "NODES"]);
        show(&nodes).matches(" slave ").count() == 6
    });
    // The slot map as cutover reads it from that node. Two masters get their replica
    // named in sync.source_replicas: the one listed last, which cutover would not pick by
    // itself; the third links through its first.
    let origin = NodeAddr::new("127.0.0.1", source.nodes[0].port());
    let map = SlotMap::from_cluster_shards(&source.nodes[0].cmd(&["CLUSTER", "SHARDS"]), &origin)
        .unwrap();
    assert_eq!(map.shards().len(), 3);
    let mut linked = Vec::new();
    let mut spared = Vec::new();
    let mut names = Vec::new();
    for (i, shard) in map.shards().iter().enumerate() {
        let r = &shard.replicas;
        assert_eq!(r.len(), 2, "{shard:?}");
        let (used, other) = if i < 2 {
            names.push(format!("\"{}\"", r[1]));
            (r[1].port, r[0].port)
        } else {
            (r[0].port, r[1].port)
        };
        linked.push(used);
        spared.push(other);
    }
    let node = |port: u16| replicas.iter().find(|r| r.port() == port).unwrap();

    fill_each_master(&source, "before");
    let target = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        format!(
            "[sync]\nsource_nodes = \"replicas\"\nsource_replicas = [{}]\n",
            names.join(", ")
        ),
    )
    .unwrap();
    let proxy = cutover_from(&source, &target.url(), &["--config", cfg.to_str().unwrap()]);
    wait_caught_up(&source, &proxy);
    let mut t = Target::one(&target);
    assert!(assert_same_data(&source, &mut t) > 50);
    assert_links_in_status(&proxy, 3);

    // The full syncs came from the replicas cutover was told to use: each master served
    // only its own two replicas, each linked replica one full sync, the others none.
    for m in source.masters() {
        assert_eq!(m.info_field("stats", "sync_full").unwrap(), "2");
        assert_eq!(
            m.info_field("replication", "connected_slaves").unwrap(),
            "2"
        );
    }
    for (&used, &other) in linked.iter().zip(&spared) {
        assert_eq!(node(used).info_field("stats", "sync_full").unwrap(), "1");
        assert_eq!(
            node(used)
                .info_field("replication", "connected_slaves")
                .unwrap(),
            "1"
        );
        assert_eq!(node(other).info_field("stats", "sync_full").unwrap(), "0");
    }
    let st = proxy.status();
    let lines: Vec<&String> = (0..3).map(|i| &st[&format!("sync_link{i}")]).collect();
    for used in &linked {
        let addr = format!("127.0.0.1:{used} (replica of");
        assert!(lines.iter().any(|l| l.contains(&addr)), "{addr}: {lines:?}");
    }

    // Live writes (to the masters, through the proxy) reach the target by way of the
    // replicas, the applied offsets matching the masters' own.
    let before = format!("{{{}}}", source.key_on(0, "before"));
    live_writes(&proxy, &before);
    wait_caught_up(&source, &proxy);
    assert_same_data(&source, &mut t);

    // The cutover fences the masters and waits for each link (on its replica) to reach
    // its master's offset; then writes go to the target.
    let mut p = proxy.wire();
    assert_bytes(p.cmd(&["SET", "{last}before", "1"]), b"+OK\r\n");
    assert_bytes(cutover(&proxy, &["TIMEOUT", "10000"]), b"+OK\r\n");
    assert_eq!(proxy.status()["route"], "target");
    assert_bytes(target.cmd(&["GET", "{last}before"]), b"$1\r\n1\r\n");
    assert_bytes(p.cmd(&["SET", "{last}after", "2"]), b"+OK\r\n");
    assert_bytes(target.cmd(&["GET", "{last}after"]), b"$1\r\n2\r\n");
}

#[test]
fn a_redis_6_2_cluster_is_routed_synced_and_cut_over_to_7_0() {
    if skip_direct("the syncer") {
        return;
    }
    let source = RedisCluster::start_v62(3);
    // 6.2 has no CLUSTER SHARDS: the proxy's and the links' slot maps come from CLUSTER
    // SLOTS.
    let r = source.nodes[0].cmd(&["CLUSTER", "SHARDS"]);
    assert!(r.starts_with(b"-ERR"), "{}", show(&r));
    assert!(source.nodes[0]
        .info_field("server", "redis_version")
        .unwrap()
        .starts_with("6.2."));
    fill_each_master(&source, "before");
    let target = RedisServer::start();
    let proxy = cutover_from(&source, &target.url(), &[]);

    // Clients see one server: keys on every master, split and merged, counted and scanned.
    let mut p = proxy.wire();
    let keys: Vec<String> = (0..30).map(|i| format!("k:{i}")).collect();
    let mut mset = vec!["MSET".to_string()];
    for (i, k) in keys.iter().enumerate() {
        mset.push(k.clone());
        mset.push(format!("v{i}"));
    }
    assert_bytes(p.cmd(&mset), b"+OK\r\n");
    let mut mget = vec!["MGET".to_string()];
    mget.extend(keys.iter().cloned());
    let got: Vec<String> = p.value(&mget).items().iter().map(|v| v.text()).collect();
    let want: Vec<String> = (0..30).map(|i| format!("v{i}")).collect();
    assert_eq!(got, want);
    let sizes: Vec<i64> = source
        .masters()
        .iter()
        .map(|m| m.wire().value(&["DBSIZE"]).int())
        .collect();
    assert!(
        sizes.iter().all(|&n| n > 10),
        "the keys did not spread over the masters: {sizes:?}"
    );
    let total: i64 = sizes.iter().sum();
    assert_bytes(p.cmd(&["DBSIZE"]), int(total));
    assert_eq!(scan_keys(&mut p).len() as i64, total);

    // The 6.2 masters' data on the 7.0 target, the live writes too.
    wait_caught_up(&source, &proxy);
    let mut t = Target::one(&target);
    assert!(assert_same_data(&source, &mut t) > 50);
    assert_links_in_status(&proxy, 3);
    let before = format!("{{{}}}", source.key_on(0, "before"));
    live_writes(&proxy, &before);
    wait_caught_up(&source, &proxy);
    assert_same_data(&source, &mut t);

    // CUTOVER: the 6.2 masters fenced, then writes go to the 7.0 target.
    assert_bytes(cutover(&proxy, &["TIMEOUT", "10000"]), b"+OK\r\n");
    assert_eq!(proxy.status()["route"], "target");
    assert_bytes(p.cmd(&["SET", "{x}after", "1"]), b"+OK\r\n");
    assert_bytes(target.cmd(&["GET", "{x}after"]), b"$1\r\n1\r\n");
    assert_bytes(p.cmd(&["GET", "k:7"]), b"$2\r\nv7\r\n");
}

#[test]
fn a_cluster_source_copied_by_scan_then_cutover() {
    if skip_direct("the SCAN copy") {
        return;
    }
    let source = source_cluster();
    fill_each_master(&source, "scan");
    let target = RedisServer::start();
    let proxy = cutover_from(&source, &target.url(), &["--source-mode", "scan"]);
    // Writes through the proxy (routed to each key's master) during the copy and rounds.
    let mut p = proxy.wire();
    for i in 0..1_500 {
        assert_bytes(p.cmd(&["INCR", &format!("n:{}", i % 50)]), int(i / 50 + 1));
        assert_bytes(p.cmd(&["SET", &format!("s:{i}"), "v"]), b"+OK\r\n");
        if i % 3 == 0 {
            assert_bytes(p.cmd(&["DEL", &format!("s:{i}")]), int(1));
        }
    }
    poll_until(SYNC_WAIT, || proxy.status()["sync_state"] == "scan_rounds");
    assert_bytes(cutover(&proxy, &["TIMEOUT", "15000"]), b"+OK\r\n");
    assert_eq!(proxy.status()["route"], "target");
    let n = assert_same_data(&source, &mut Target::one(&target));
    assert!(n > 1_000, "{n} keys compared");
    assert_bytes(p.cmd(&["INCR", "n:0"]), int(31));
}
