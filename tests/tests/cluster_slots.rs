//! The slot map against a real cluster: three masters on loopback, created with
//! `redis-cli --cluster create`. Checks that `cluster::slots` agrees with Redis on every
//! point a router relies on: `key_slot` equals CLUSTER KEYSLOT, `master_for` names the node
//! that accepts a write without redirecting, and a -MOVED from any other node parses to
//! that same node. The map is fetched through `cluster::Connector` in RESP2 and RESP3, and
//! built from CLUSTER SLOTS as well: all three must agree.

use std::collections::HashMap;
use std::time::Duration;

use cluster::slots::{key_slot, NodeAddr, Redirect, RedirectKind, SlotMap};
use cluster::{Connector, RedisUrl, SessionSetup};
use support::{poll_until, show, RedisCluster, Wire};

async fn fetch(url: &str, resp3: bool) -> SlotMap {
    let url = RedisUrl::parse(url).expect("url");
    let origin = NodeAddr::from(&url);
    let connector = Connector::new(url, None, Duration::from_secs(5)).expect("connector");
    let setup = SessionSetup {
        resp3,
        ..SessionSetup::default()
    };
    let mut conn = connector.connect(&setup).await.expect("connect");
    SlotMap::fetch(&mut conn, &origin)
        .await
        .unwrap_or_else(|e| panic!("fetch (resp3={resp3}): {e}"))
}

fn keys() -> Vec<Vec<u8>> {
    let mut keys: Vec<Vec<u8>> = (0..90)
        .map(|i| format!("cluster_slots:key:{i}").into_bytes())
        .collect();
    keys.extend([
        b"".to_vec(),
        b"foo{}{bar}".to_vec(),
        b"foo{{bar}}zap".to_vec(),
        b"{".to_vec(),
        b"}{x}".to_vec(),
        b"{user1000}.following".to_vec(),
        b"\x00\xff\r\n{\x01}".to_vec(),
        b"\xff\xfe".to_vec(),
        b"{a}{b}".to_vec(),
        b"a{b".to_vec(),
    ]);
    keys
}

#[test]
fn slot_map_matches_a_real_cluster() {
    let cluster = RedisCluster::start(3);
    let servers = cluster.masters();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let map = rt.block_on(fetch(&servers[0].url(), false));
    let map3 = rt.block_on(fetch(&servers[1].url(), true));
    assert_eq!(map, map3, "RESP2 and RESP3 CLUSTER SHARDS disagree");
    let raw = servers[2].wire().cmd(&["CLUSTER", "SLOTS"]);
    let origin = NodeAddr::new("127.0.0.1", servers[2].port());
    let from_slots = SlotMap::from_cluster_slots(&raw, &origin)
        .unwrap_or_else(|e| panic!("CLUSTER SLOTS: {e}: {}", show(&raw)));
    assert_eq!(map, from_slots, "CLUSTER SHARDS and CLUSTER SLOTS disagree");

    assert_eq!(map.assigned_slots(), 16384);
    let mut masters = map.masters();
    masters.sort();
    let mut expected: Vec<NodeAddr> = servers
        .iter()
        .map(|s| NodeAddr::new("127.0.0.1", s.port()))
        .collect();
    expected.sort();
    assert_eq!(masters, expected);

    let mut wires: HashMap<u16, Wire> = servers.iter().map(|s| (s.port(), s.wire())).collect();
    let ports: Vec<u16> = servers.iter().map(|s| s.port()).collect();
    let mut seen = HashMap::new();
    for key in keys() {
        let slot = key_slot(&key);
        let first = wires.get_mut(&ports[0]).expect("wire");
        let keyslot = first.cmd(&[b"CLUSTER".as_slice(), b"KEYSLOT", &key]);
        assert_eq!(
            keyslot,
            format!(":{slot}\r\n").into_bytes(),
            "key {}",
            show(&key)
        );
        let master = map
            .master_for(slot)
            .expect("every slot has a master")
            .clone();
        *seen.entry(master.port).or_insert(0) += 1;
        let set: [&[u8]; 3] = [b"SET", &key, b"v"];
        let owner = wires.get_mut(&master.port).expect("master is one of ours");
        // A new cluster refuses writes for a moment after its nodes start.
        poll_until(Duration::from_secs(5), || {
            let reply = owner.cmd(&set);
            assert!(
                !reply.starts_with(b"-MOVED"),
                "{}: {}",
                show(&key),
                show(&reply)
            );
            reply == b"+OK\r\n"
        });
        for port in ports.iter().filter(|&&p| p != master.port) {
            let reply = wires.get_mut(port).expect("wire").cmd(&set);
            let redirect = Redirect::parse(&reply)
                .unwrap_or_else(|| panic!("expected -MOVED, got {}", show(&reply)));
            assert_eq!(redirect.kind, RedirectKind::Moved);
            assert_eq!(redirect.slot, slot);
            assert_eq!(redirect.node, master, "{}", show(&reply));
        }
    }
    // The keys spread over every master, so each of them was checked as owner and as
    // redirecting node.
    assert_eq!(seen.len(), 3, "{seen:?}");
}
