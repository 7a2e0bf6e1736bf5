//! Unit tests of how a cluster source's links pick their nodes.

use super::*;

fn map(reply: &[u8]) -> SlotMap {
    SlotMap::from_cluster_slots(reply, &NodeAddr::new("127.0.0.1", 1)).unwrap()
}

/// A CLUSTER SLOTS reply: (lo, hi, port) per range.
fn slots_reply(ranges: &[(u16, u16, u16)]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", ranges.len()).into_bytes();
    for (lo, hi, port) in ranges {
        out.extend_from_slice(
            format!(
                "*3\r\n:{lo}\r\n:{hi}\r\n*3\r\n$9\r\n127.0.0.1\r\n:{port}\r\n$40\r\n{}\r\n",
                "a".repeat(40)
            )
            .as_bytes(),
        );
    }
    out
}

#[test]
fn plans_and_their_changes() {
    let m = map(&slots_reply(&[(0, 99, 7001), (100, 16383, 7002)]));
    let plan = Plan::from_map(&m);
    assert_eq!(plan.links.len(), 2);
    assert_eq!(plan.describe(), "0-99 100-16383");
    assert_eq!(plan.changes(&m), None);
    let moved = map(&slots_reply(&[(0, 100, 7001), (101, 16383, 7002)]));
    let why = plan.changes(&moved).unwrap();
    assert!(
        why.contains("slot 100 moved from 127.0.0.1:7002 to 127.0.0.1:7001"),
        "{why}"
    );
    let failed_over = map(&slots_reply(&[(0, 99, 7003), (100, 16383, 7002)]));
    let why = plan.changes(&failed_over).unwrap();
    assert!(
        why.contains("100 slots from slot 0 moved from 127.0.0.1:7001 to 127.0.0.1:7003"),
        "{why}"
    );
    let split = map(&slots_reply(&[
        (0, 49, 7001),
        (50, 99, 7002),
        (100, 16383, 7001),
    ]));
    let p = Plan::from_map(&split);
    assert_eq!(p.describe(), "0-49,100-16383 50-99");
}

/// CLUSTER SLOTS (RESP2) of two masters with two replicas each.
fn two_shards() -> SlotMap {
    let node = |port: u16| format!("*3\r\n$8\r\n10.0.0.1\r\n:{port}\r\n$2\r\nid\r\n");
    let reply = format!(
        "*2\r\n*5\r\n:0\r\n:8191\r\n{}{}{}*5\r\n:8192\r\n:16383\r\n{}{}{}",
        node(7000),
        node(7010),
        node(7011),
        node(7001),
        node(7020),
        node(7021)
    );
    SlotMap::from_cluster_slots(reply.as_bytes(), &NodeAddr::new("10.0.0.1", 7000)).unwrap()
}

fn a(port: u16) -> NodeAddr {
    NodeAddr::new("10.0.0.1", port)
}

#[test]
fn a_named_replica_is_used_and_the_others_keep_their_first() {
    let map = two_shards();
    let plan = Plan::from_map(&map);
    assert_eq!(plan.links.len(), 2);
    let chosen = [a(7021)];
    check_chosen(&plan, &map, &chosen).unwrap();
    assert_eq!(replica_for(&map, &a(7000), &chosen).unwrap(), &a(7010));
    assert_eq!(replica_for(&map, &a(7001), &chosen).unwrap(), &a(7021));
    assert_eq!(replica_for(&map, &a(7001), &[]).unwrap(), &a(7020));
}

#[test]
fn a_name_that_is_no_replica_or_two_for_one_master_is_refused() {
    let map = two_shards();
    let plan = Plan::from_map(&map);
    // A master, an unknown node, another host: each named, with the replicas there are.
    for bad in [a(7000), a(7099), NodeAddr::new("localhost", 7010)] {
        let msg = check_chosen(&plan, &map, std::slice::from_ref(&bad))
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains(&bad.to_string()) && msg.contains("10.0.0.1:7011"),
            "{msg}"
        );
    }
    let msg = check_chosen(&plan, &map, &[a(7010), a(7021), a(7011)])
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("10.0.0.1:7000") && msg.contains("7010") && msg.contains("7011"),
        "{msg}"
    );
}
