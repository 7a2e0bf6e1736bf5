//! CUTOVER to a Redis Cluster target: the test of the cutover issue with a 3-master cluster
//! on the target side. Under load (application clients and redis-benchmark -P 16 through
//! the proxy), every acknowledged write is on the cluster exactly once, in order, and no
//! client sees an error; after the switch the proxy routes by slot.

use std::thread;
use std::time::Duration;

use support::*;

const WAIT: Duration = Duration::from_secs(60);

#[test]
fn cutover_to_a_cluster_under_load_loses_nothing() {
    if skip_direct("the cutover") {
        return;
    }
    let source = sync_source();
    let cluster = RedisCluster::start(3);
    let proxy = Cutover::start(&source, &["--target", &cluster.url()]);
    let ok = try_poll_until(WAIT, || {
        let st = proxy.status();
        st["sync_state"] == "streaming"
            && st["applied_offset"].parse::<u64>().unwrap_or(0) >= master_offset(&source)
    });
    assert!(ok, "syncer not streaming: {:?}", proxy.status());
    // Six application clients and redis-benchmark -P 16 alongside.
    let load = AppLoad::start(proxy.addr(), 100000);
    poll_until(WAIT, || {
        cluster.owner_of(b"c:5").cmd(&["EXISTS", "c:5"]) == int(1)
    });
    thread::sleep(Duration::from_millis(300));
    // Under this load the syncer may be a few MB behind (applying into a cluster is slower
    // than the proxy's writes to the source): the pre-check (MAXLAG, 1 MB by default,
    // tested in cutover.rs) is lifted so that what is tested is the catch-up under load.
    let r = cutover(&proxy, &["TIMEOUT", "10000", "MAXLAG", "268435456"]);
    assert_bytes(&r, b"+OK\r\n");
    let st = proxy.status();
    assert_eq!(st["route"], "target");
    thread::sleep(Duration::from_millis(300));
    let rounds = load.finish();
    assert_acked_writes(&rounds, |k| cluster.owner_of(k.as_bytes()).wire());
    assert_eq!(st["source_writes_after_fence"], "0");
    let pause: f64 = st["last_pause_ms"].parse().unwrap();
    eprintln!("cutover to a cluster: pause {pause} ms, rounds {rounds:?}");

    // FINISH: cutover's keys leave every master (the per-slot checkpoints of the stream
    // included).
    let per_slot = |cluster: &support::RedisCluster| -> usize {
        cluster
            .masters()
            .iter()
            .map(|m| {
                support::scan_keys(&mut m.wire())
                    .into_iter()
                    .filter(|k| k.starts_with(b"__cutover:"))
                    .count()
            })
            .sum()
    };
    // After the switch the per-slot checkpoints go by themselves; the main hash (with the
    // switch record) stays until FINISH.
    poll_until(SYNC_WAIT, || per_slot(&cluster) == 1);
    let mut admin = proxy.admin();
    admin.set_timeout(Duration::from_secs(20));
    let done = support::Value::parse(&admin.cmd(&["FINISH"])).text();
    assert!(done.contains("__cutover:checkpoint"), "{done}");
    assert_eq!(per_slot(&cluster), 0);
}
