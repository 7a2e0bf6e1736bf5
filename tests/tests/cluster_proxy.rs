//! The proxy in front of a Redis Cluster: clients see one server. Each test starts its own
//! cluster on loopback (tests reshard and fail over, so they must not share one) and
//! checks what clients get through the proxy against what the nodes hold directly.

use std::collections::BTreeSet;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use support::{
    assert_bytes, bulk, int, poll_until, show, skip_direct, Cutover, RedisCluster, Wire,
};

const CROSSSLOT: &[u8] = b"-CROSSSLOT Keys in request don't hash to the same slot\r\n";

fn proxy(cluster: &RedisCluster) -> Cutover {
    Cutover::builder(&cluster.nodes[0])
        .source_url(&cluster.url())
        .start()
}

/// Keys, values, multi-key commands across slots, keyless commands, SCAN, SELECT.
#[test]
fn commands_are_routed_split_and_merged() {
    if skip_direct("cluster routing") {
        return;
    }
    let cluster = RedisCluster::start(3);
    let p = proxy(&cluster);
    let mut c = p.wire();

    // Every key lands on the node that owns its slot.
    let keys: Vec<String> = (0..60).map(|i| format!("route:{i}")).collect();
    for (i, k) in keys.iter().enumerate() {
        assert_bytes(c.cmd(&["SET", k, &i.to_string()]), b"+OK\r\n");
    }
    for (i, k) in keys.iter().enumerate() {
        let owner = cluster.owner_of(k.as_bytes());
        assert_bytes(owner.cmd(&["GET", k]), bulk(i.to_string()));
    }
    let owners: BTreeSet<u16> = keys
        .iter()
        .map(|k| cluster.owner_of(k.as_bytes()).port())
        .collect();
    assert_eq!(owners.len(), 3, "the keys spread over every master");

    // MGET across slots, merged in request order, with a missing key.
    let mut mget = vec!["MGET".to_string()];
    mget.extend(keys[..10].iter().cloned());
    mget.insert(5, "route:missing".into());
    let mut expected = b"*11\r\n".to_vec();
    for i in 0..10 {
        if i == 4 {
            expected.extend(b"$-1\r\n");
        }
        expected.extend(bulk(i.to_string()));
    }
    assert_bytes(c.cmd(&mget), &expected);

    // MSET across slots, then the values are where they belong.
    let mut mset = vec!["MSET".to_string()];
    for i in 0..10 {
        mset.push(format!("mset:{i}"));
        mset.push(format!("v{i}"));
    }
    assert_bytes(c.cmd(&mset), b"+OK\r\n");
    for i in 0..10 {
        let k = format!("mset:{i}");
        assert_bytes(
            cluster.owner_of(k.as_bytes()).cmd(&["GET", &k]),
            bulk(format!("v{i}")),
        );
    }
    // EXISTS / TOUCH count repeated keys like Redis; DEL / UNLINK sum.
    assert_bytes(
        c.cmd(&["EXISTS", "mset:0", "mset:1", "mset:0", "nope", "mset:7"]),
        int(4),
    );
    assert_bytes(c.cmd(&["TOUCH", "mset:2", "mset:3", "nope"]), int(2));
    assert_bytes(c.cmd(&["DEL", "mset:0", "mset:1", "nope"]), int(2));
    assert_bytes(c.cmd(&["UNLINK", "mset:2", "mset:3", "mset:4"]), int(3));

    // Commands whose keys span slots and can't be split: Redis's own error.
    assert_bytes(c.cmd(&["SUNIONSTORE", "a", "b", "c"]), CROSSSLOT);
    assert_bytes(c.cmd(&["RENAME", "route:0", "route:1"]), CROSSSLOT);
    // Same slot via a hash tag: fine.
    assert_bytes(c.cmd(&["SET", "{t}a", "1"]), b"+OK\r\n");
    assert_bytes(c.cmd(&["RENAME", "{t}a", "{t}b"]), b"+OK\r\n");
    assert_bytes(c.cmd(&["GET", "{t}b"]), bulk("1"));

    // Keyless commands.
    assert_bytes(c.cmd(&["PING"]), b"+PONG\r\n");
    assert_bytes(c.cmd(&["ECHO", "hi"]), bulk("hi"));
    let total = cluster.dbsize();
    assert_bytes(c.cmd(&["DBSIZE"]), int(total));
    let all = c.value(&["KEYS", "*"]);
    assert_eq!(all.items().len() as i64, total);
    assert!(!c.value(&["RANDOMKEY"]).bytes().is_empty());
    assert_bytes(
        c.cmd(&["SELECT", "1"]),
        b"-ERR SELECT is not allowed in cluster mode\r\n",
    );
    assert_bytes(c.cmd(&["SELECT", "0"]), b"+OK\r\n");

    // SCAN visits every key exactly once, across masters, with small COUNTs.
    let mut seen = Vec::new();
    let mut cursor = "0".to_string();
    loop {
        let v = c.value(&["SCAN", &cursor, "COUNT", "7"]);
        cursor = v.items()[0].text();
        seen.extend(v.items()[1].items().iter().map(|k| k.bytes().to_vec()));
        if cursor == "0" {
            break;
        }
    }
    let unique: BTreeSet<Vec<u8>> = seen.iter().cloned().collect();
    assert_eq!(seen.len(), unique.len(), "SCAN returned a key twice");
    assert_eq!(unique.len() as i64, total, "SCAN missed keys");

    // A pipeline mixing all of the above keeps its order.
    let mut pipe = Vec::new();
    for i in 0..30 {
        support::encode_into(&mut pipe, &["SET", &format!("pipe:{i}"), &i.to_string()]);
        support::encode_into(
            &mut pipe,
            &["MGET", &format!("pipe:{i}"), "route:0", "route:1"],
        );
        support::encode_into(&mut pipe, &["PING"]);
    }
    c.send(&pipe);
    for i in 0..30 {
        assert_bytes(c.read_reply(), b"+OK\r\n");
        let mut m = b"*3\r\n".to_vec();
        m.extend(bulk(i.to_string()));
        m.extend(bulk("0"));
        m.extend(bulk("1"));
        assert_bytes(c.read_reply(), &m);
        assert_bytes(c.read_reply(), b"+PONG\r\n");
    }

    // FLUSHALL reaches every master.
    assert_bytes(c.cmd(&["FLUSHALL"]), b"+OK\r\n");
    assert_eq!(cluster.dbsize(), 0);
    assert_bytes(c.cmd(&["DBSIZE"]), int(0));
}

/// Transactions pinned to a slot, WATCH, blocking commands and pub/sub on the right node.
#[test]
fn transactions_blocking_and_pubsub() {
    if skip_direct("cluster routing") {
        return;
    }
    let cluster = RedisCluster::start(3);
    let p = proxy(&cluster);
    let mut c = p.wire();

    // One slot: runs as a unit on its node.
    assert_bytes(c.cmd(&["MULTI"]), b"+OK\r\n");
    assert_bytes(c.cmd(&["SET", "{acct}a", "10"]), b"+QUEUED\r\n");
    assert_bytes(c.cmd(&["INCRBY", "{acct}b", "5"]), b"+QUEUED\r\n");
    assert_bytes(c.cmd(&["PING"]), b"+QUEUED\r\n");
    assert_bytes(c.cmd(&["EXEC"]), b"*3\r\n+OK\r\n:5\r\n+PONG\r\n");
    assert_bytes(
        cluster.owner_of(b"{acct}a").cmd(&["GET", "{acct}b"]),
        bulk("5"),
    );

    // A key of another slot: CROSSSLOT, and EXEC aborts like Redis.
    assert_bytes(c.cmd(&["MULTI"]), b"+OK\r\n");
    assert_bytes(c.cmd(&["SET", "{acct}a", "11"]), b"+QUEUED\r\n");
    assert_bytes(c.cmd(&["SET", "{other}x", "1"]), CROSSSLOT);
    assert_bytes(
        c.cmd(&["EXEC"]),
        b"-EXECABORT Transaction discarded because of previous errors.\r\n",
    );
    assert_bytes(c.cmd(&["GET", "{acct}a"]), bulk("10"));
    assert_bytes(c.cmd(&["GET", "{other}x"]), b"$-1\r\n");

    // WATCH pins the slot; a change by another client aborts EXEC.
    assert_bytes(c.cmd(&["WATCH", "{acct}a"]), b"+OK\r\n");
    let mut other = p.wire();
    assert_bytes(other.cmd(&["SET", "{acct}a", "99"]), b"+OK\r\n");
    assert_bytes(c.cmd(&["MULTI"]), b"+OK\r\n");
    assert_bytes(c.cmd(&["SET", "{acct}a", "12"]), b"+QUEUED\r\n");
    assert_bytes(c.cmd(&["EXEC"]), b"*-1\r\n");
    assert_bytes(c.cmd(&["GET", "{acct}a"]), bulk("99"));

    // BLPOP waits on the key's node and is woken by a push through the proxy.
    let mut blocked = p.wire();
    blocked.send_cmd(&["BLPOP", "queue:1", "10"]);
    poll_until(Duration::from_secs(5), || {
        let info = cluster.owner_of(b"queue:1").cmd(&["INFO", "clients"]);
        show(&info).contains("blocked_clients:1")
    });
    assert_bytes(other.cmd(&["RPUSH", "queue:1", "job"]), int(1));
    let mut exp = b"*2\r\n".to_vec();
    exp.extend(bulk("queue:1"));
    exp.extend(bulk("job"));
    assert_bytes(blocked.read_reply(), &exp);

    // SUBSCRIBE on one node hears a PUBLISH sent anywhere; SSUBSCRIBE is by slot.
    let mut sub = p.wire();
    sub.send_cmd(&["SUBSCRIBE", "news"]);
    let mut conf = b"*3\r\n".to_vec();
    conf.extend(bulk("subscribe"));
    conf.extend(bulk("news"));
    conf.extend(int(1));
    assert_bytes(sub.read_reply(), &conf);
    assert_bytes(other.cmd(&["PUBLISH", "news", "hello"]), int(1));
    let mut msg = b"*3\r\n".to_vec();
    msg.extend(bulk("message"));
    msg.extend(bulk("news"));
    msg.extend(bulk("hello"));
    assert_bytes(sub.read_reply(), &msg);

    let mut ssub = p.wire();
    ssub.send_cmd(&["SSUBSCRIBE", "shard:chan"]);
    let mut conf = b"*3\r\n".to_vec();
    conf.extend(bulk("ssubscribe"));
    conf.extend(bulk("shard:chan"));
    conf.extend(int(1));
    assert_bytes(ssub.read_reply(), &conf);
    assert_bytes(other.cmd(&["SPUBLISH", "shard:chan", "hi"]), int(1));
    let mut msg = b"*3\r\n".to_vec();
    msg.extend(bulk("smessage"));
    msg.extend(bulk("shard:chan"));
    msg.extend(bulk("hi"));
    assert_bytes(ssub.read_reply(), &msg);
}

/// Every default redis-benchmark test, MSET included, pipelined and not.
#[test]
fn redis_benchmark_default_tests() {
    if skip_direct("cluster routing") {
        return;
    }
    let cluster = RedisCluster::start(3);
    let p = proxy(&cluster);
    for pipeline in ["1", "16"] {
        let out = Command::new("redis-benchmark")
            .args(["-h", "127.0.0.1", "-p", &p.addr().port().to_string()])
            .args(["-n", "2000", "-c", "8", "-r", "1000", "-q", "-P", pipeline])
            .output()
            .expect("run redis-benchmark");
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "redis-benchmark failed: {text}");
        for test in [
            "PING_INLINE",
            "PING_MBULK",
            "SET",
            "GET",
            "INCR",
            "LPUSH",
            "RPUSH",
            "LPOP",
            "RPOP",
            "SADD",
            "HSET",
            "SPOP",
            "ZADD",
            "ZPOPMIN",
            "LRANGE_100",
            "LRANGE_600",
            "MSET (10 keys)",
        ] {
            assert!(
                text.lines()
                    .any(|l| l.contains(test) && l.contains("requests per second")),
                "-P {pipeline}: no result for {test}: {text}"
            );
        }
        assert!(!text.contains("ERR"), "-P {pipeline}: errors: {text}");
    }
    // -r spreads the MSET keys over slots: they were split and all written.
    assert!(cluster.dbsize() > 100);
}

/// A writer running through the proxy while a slot it writes to moves between masters
/// (ASK while keys migrate, MOVED after): no error, nothing lost, nothing reordered.
#[test]
fn reshard_under_load_loses_and_reorders_nothing() {
    if skip_direct("cluster routing") {
        return;
    }
    let cluster = RedisCluster::start(3);
    let p = proxy(&cluster);
    // Keys sharing one slot (hash tag), plus keys elsewhere.
    let tag = "{mv}";
    let (slot, from, to) = cluster.slot_move_for(tag.as_bytes());
    let keys: Vec<String> = (0..20).map(|i| format!("{tag}list:{i}")).collect();
    // Some data in the slot first, so MIGRATE has keys to move in two steps.
    let mut c = p.wire();
    for k in &keys {
        assert_bytes(c.cmd(&["RPUSH", k, "0"]), int(1));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let keys = keys.clone();
        let addr = p.addr();
        thread::spawn(move || {
            let mut w = Wire::connect(addr);
            let mut n = 1u64;
            while !stop.load(Ordering::Relaxed) {
                // A pipeline of 20: one RPUSH per key, then an INCR.
                let mut pipe = Vec::new();
                for k in &keys {
                    support::encode_into(&mut pipe, &["RPUSH", k, &n.to_string()]);
                }
                support::encode_into(&mut pipe, &["INCR", "counter:elsewhere"]);
                w.send(&pipe);
                for _ in 0..keys.len() {
                    let r = w.read_reply();
                    assert_eq!(r.first(), Some(&b':'), "write {n}: {}", show(&r));
                }
                let r = w.read_reply();
                assert_eq!(r.first(), Some(&b':'), "INCR {n}: {}", show(&r));
                n += 1;
            }
            n - 1
        })
    };
    // Let some writes happen, then move the slot with writes during the ASK phase.
    let mut probe = p.wire();
    poll_until(Duration::from_secs(10), || {
        probe.value(&["LLEN", &keys[0]]).int() > 50
    });
    cluster.move_slot(slot, from, to, || {
        let before = probe.value(&["LLEN", &keys[0]]).int();
        poll_until(Duration::from_secs(10), || {
            probe.value(&["LLEN", &keys[0]]).int() > before + 50
        });
    });
    let after = probe.value(&["LLEN", &keys[0]]).int();
    poll_until(Duration::from_secs(10), || {
        probe.value(&["LLEN", &keys[0]]).int() > after + 50
    });
    stop.store(true, Ordering::Relaxed);
    let rounds = writer.join().expect("writer saw an error");
    // On the new owner: every list holds 0..=rounds in order.
    let mut direct = to.wire();
    for k in &keys {
        let v = direct.value(&["LRANGE", k, "0", "-1"]);
        let got: Vec<u64> = v
            .items()
            .iter()
            .map(|x| x.text().parse().unwrap())
            .collect();
        let want: Vec<u64> = (0..=rounds).collect();
        assert_eq!(got, want, "{k}");
    }
    assert_bytes(
        cluster
            .owner_of(b"counter:elsewhere")
            .cmd(&["GET", "counter:elsewhere"]),
        bulk(rounds.to_string()),
    );
}

/// A manual failover of a master under load: clients pause at most briefly, see no error,
/// and every acknowledged INCR is counted.
#[test]
fn failover_under_load_is_a_short_pause() {
    if skip_direct("cluster routing") {
        return;
    }
    let cluster = RedisCluster::start_with(3, 1, &[]);
    let p = proxy(&cluster);
    let key = "fo:counter";
    let master_port = cluster.owner_of(key.as_bytes()).port();
    // The replica of that master.
    let replica = cluster.nodes[3..]
        .iter()
        .find(|r| {
            let info = r.cmd(&["INFO", "replication"]);
            show(&info).contains(&format!("master_port:{master_port}"))
        })
        .expect("a replica of the key's master");
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let addr = p.addr();
        thread::spawn(move || {
            let mut w = Wire::connect(addr);
            let mut acked = 0u64;
            let mut longest = Duration::ZERO;
            while !stop.load(Ordering::Relaxed) {
                let t = std::time::Instant::now();
                let r = w.cmd(&["INCR", key]);
                assert_eq!(r.first(), Some(&b':'), "INCR {acked}: {}", show(&r));
                longest = longest.max(t.elapsed());
                acked += 1;
            }
            (acked, longest)
        })
    };
    let mut probe = p.wire();
    poll_until(Duration::from_secs(10), || count(&mut probe, key) > 100);
    cluster.failover(replica);
    let now = count(&mut probe, key);
    poll_until(Duration::from_secs(10), || {
        count(&mut probe, key) > now + 100
    });
    stop.store(true, Ordering::Relaxed);
    let (acked, longest) = writer.join().expect("writer saw an error");
    assert_bytes(replica.cmd(&["GET", key]), bulk(acked.to_string()));
    assert!(
        longest < Duration::from_secs(5),
        "longest pause {longest:?}"
    );
    eprintln!("failover: {acked} INCRs, longest pause {longest:?}");
}

/// An integer kept as a string; 0 while the key does not exist.
fn count(w: &mut Wire, key: &str) -> u64 {
    let r = w.cmd(&["GET", key]);
    if r == b"$-1\r\n" {
        return 0;
    }
    support::Value::parse(&r).text().parse().unwrap_or(0)
}

/// A command with two keys of a slot being migrated, one moved and one not, gets
/// -TRYAGAIN until the migration ends and is resent. Once the proxy has seen the slot
/// migrating (a -ASK), what the client pipelined after such a command waits for it: a
/// write to the key still on the source must not run before the read sent ahead of it.
#[test]
fn a_write_pipelined_behind_a_tryagain_waits_for_it() {
    if skip_direct("cluster routing") {
        return;
    }
    let cluster = RedisCluster::start(3);
    let p = proxy(&cluster);
    let tag = "{ta}";
    let (a, b) = (format!("{tag}a"), format!("{tag}b"));
    let (slot, from, to) = cluster.slot_move_for(tag.as_bytes());
    let mut w = p.wire();
    assert_bytes(w.cmd(&["SET", &a, "1"]), b"+OK\r\n");
    assert_bytes(w.cmd(&["SET", &b, "1"]), b"+OK\r\n");
    let tryagains = |s: &support::RedisServer| {
        s.info_field("errorstats", "errorstat_TRYAGAIN")
            .and_then(|v| v.strip_prefix("count=").and_then(|n| n.parse::<u64>().ok()))
            .unwrap_or(0)
    };
    let mut stayed_key = String::new();
    cluster.move_slot(slot, from, to, || {
        // One of the two keys has moved: which one is up to GETKEYSINSLOT's order.
        let moved_a = from.cmd(&["EXISTS", &a]) == int(0);
        let (moved, stayed) = if moved_a { (&a, &b) } else { (&b, &a) };
        stayed_key = stayed.clone();
        // A read of the moved key: -ASK, followed; the slot is now known to migrate.
        assert_bytes(w.cmd(&["GET", moved]), bulk("1"));
        let before = tryagains(from);
        w.send_cmd(&["MGET", &a, &b]);
        w.send_cmd(&["SET", stayed, "2"]);
        // The MGET is refused (-TRYAGAIN) and retried while the slot migrates...
        poll_until(Duration::from_secs(10), || tryagains(from) > before + 1);
        // ...and the SET behind it has not run.
        assert_bytes(from.cmd(&["GET", stayed]), bulk("1"));
    });
    // The migration ended: the MGET read both keys before the SET, then the SET ran.
    assert_bytes(w.read_reply(), b"*2\r\n$1\r\n1\r\n$1\r\n1\r\n");
    assert_bytes(w.read_reply(), b"+OK\r\n");
    assert_bytes(to.cmd(&["GET", &stayed_key]), bulk("2"));
    assert_bytes(w.cmd(&["GET", &stayed_key]), bulk("2"));
}

/// A script that runs long on one node holds only the scripts behind it: other clients'
/// commands for that node reach it and get Redis's -BUSY, and SCRIPT KILL gets through.
#[test]
fn a_long_script_on_a_node_does_not_hold_other_clients() {
    if skip_direct("cluster routing") {
        return;
    }
    let cluster = RedisCluster::start_with(3, 0, &["--busy-reply-threshold", "200"]);
    let proxy = proxy(&cluster);
    let mut a = proxy.wire();
    a.set_timeout(Duration::from_secs(20));
    a.send_cmd(&["SET", "{s}k", "before"]);
    a.send_cmd(&["EVAL", "while true do end", "1", "{s}k"]);
    a.send_cmd(&["GET", "{s}k"]);
    assert_bytes(a.read_reply(), b"+OK\r\n");
    let mut b = proxy.wire();
    b.set_timeout(Duration::from_secs(10));
    let mut busy = false;
    for _ in 0..200 {
        let r = b.cmd(&["GET", "{s}other"]);
        if r.starts_with(b"-BUSY") {
            busy = true;
            break;
        }
        thread::sleep(Duration::from_millis(20));
    }
    assert!(busy, "no -BUSY: B's GET sat behind the script");
    assert_bytes(b.cmd(&["SCRIPT", "KILL"]), b"+OK\r\n");
    let killed = a.read_reply();
    assert!(killed.starts_with(b"-"), "{}", show(&killed));
    assert_bytes(a.read_reply(), bulk("before"));
    assert_bytes(a.cmd(&["EVAL", "return 7", "0"]), int(7));
}

/// A user of the cluster's own runs as itself on every node.
#[test]
fn each_user_runs_as_itself_on_a_cluster() {
    if skip_direct("cluster routing") {
        return;
    }
    let cluster = RedisCluster::start(3);
    for n in cluster.masters() {
        assert_bytes(
            n.cmd(&["ACL", "SETUSER", "app1", "on", ">pw1", "~app1:*", "+@all"]),
            b"+OK\r\n",
        );
        assert_bytes(
            n.cmd(&["ACL", "SETUSER", "ops", "on", ">opspw", "~*", "&*", "+@all"]),
            b"+OK\r\n",
        );
    }
    // The proxy itself reaches the cluster as `ops`; its clients are not `ops`.
    let url = cluster.url().replace("redis://", "redis://ops:opspw@");
    let proxy = Cutover::builder(&cluster.nodes[0]).source_url(&url).start();
    let mut anon = proxy.wire();
    assert_bytes(anon.cmd(&["ACL", "WHOAMI"]), bulk("default"));
    let mut w = proxy.wire();
    assert_bytes(w.cmd(&["AUTH", "app1", "pw1"]), b"+OK\r\n");
    for i in 0..20 {
        let k = format!("app1:{i}");
        assert_bytes(w.cmd(&["SET", &k, "v"]), b"+OK\r\n");
        assert!(
            w.cmd(&["GET", &format!("other{i}")])
                .starts_with(b"-NOPERM"),
            "a key outside the user's patterns was readable"
        );
    }
    assert_bytes(w.cmd(&["ACL", "WHOAMI"]), bulk("app1"));
    // While it watches, its node connections are its own: AUTH can't reach them all.
    assert_bytes(w.cmd(&["WATCH", "app1:0"]), b"+OK\r\n");
    assert!(w
        .cmd(&["AUTH", "ops", "opspw"])
        .starts_with(b"-ERR cutover: AUTH"));
    assert_bytes(w.cmd(&["ACL", "WHOAMI"]), bulk("app1"));
}

/// A cluster that announces no endpoint (`cluster-preferred-endpoint-type
/// unknown-endpoint`) redirects with `-MOVED <slot> :<port>`: the node is at the host of
/// the node that answered, as the syncer's router also reads it.
#[test]
fn a_redirection_without_a_host_is_followed() {
    if skip_direct("cluster routing") {
        return;
    }
    let cluster = RedisCluster::start_with(
        3,
        0,
        &["--cluster-preferred-endpoint-type", "unknown-endpoint"],
    );
    let p = proxy(&cluster);
    let mut w = p.wire();
    let key = "{hostless}k";
    assert_bytes(w.cmd(&["SET", key, "v1"]), b"+OK\r\n");
    let (slot, from, to) = cluster.slot_move_for(key.as_bytes());
    let moved = from.wire().cmd(&["GET", key]);
    assert_bytes(moved, b"$2\r\nv1\r\n");
    cluster.move_slot(slot, from, to, || {});
    // The node that had it now answers -MOVED without a host.
    let direct = from.wire().cmd(&["GET", key]);
    assert!(
        direct.starts_with(format!("-MOVED {slot} :").as_bytes()),
        "{}",
        show(&direct)
    );
    // Through the proxy (whose map still names the old node): followed.
    assert_bytes(w.cmd(&["GET", key]), bulk("v1"));
    assert_bytes(w.cmd(&["SET", key, "v2"]), b"+OK\r\n");
    assert_bytes(to.wire().cmd(&["GET", key]), bulk("v2"));
}
