//! Unit tests of key slots, topology replies and redirections. Replies are written out by
//! hand in the layouts the Redis 7.0 documentation gives for CLUSTER SHARDS and CLUSTER
//! SLOTS, in RESP2 and RESP3.

use proptest::prelude::*;

use super::*;

fn origin() -> NodeAddr {
    NodeAddr::new("10.0.0.9", 7000)
}

/// Minimal RESP writer for building replies in tests.
#[derive(Default)]
struct W(Vec<u8>);

impl W {
    fn raw(mut self, s: &[u8]) -> Self {
        self.0.extend_from_slice(s);
        self
    }
    fn bulk(self, s: &[u8]) -> Self {
        self.raw(format!("${}\r\n", s.len()).as_bytes())
            .raw(s)
            .raw(b"\r\n")
    }
    fn int(self, n: i64) -> Self {
        self.raw(format!(":{n}\r\n").as_bytes())
    }
    fn arr(self, n: usize) -> Self {
        self.raw(format!("*{n}\r\n").as_bytes())
    }
    fn map(self, n: usize, resp3: bool) -> Self {
        if resp3 {
            self.raw(format!("%{n}\r\n").as_bytes())
        } else {
            self.arr(2 * n)
        }
    }
}

/// One node of a CLUSTER SHARDS reply (the field set of Redis 7.0).
fn shards_node(w: W, resp3: bool, endpoint: &[u8], port: i64, role: &[u8]) -> W {
    w.map(8, resp3)
        .bulk(b"id")
        .bulk(b"e10b7051d6bf2d5febd39a2be297bbaea6084111")
        .bulk(b"port")
        .int(port)
        .bulk(b"ip")
        .bulk(b"127.0.0.1")
        .bulk(b"endpoint")
        .bulk(endpoint)
        .bulk(b"role")
        .bulk(role)
        .bulk(b"replication-offset")
        .int(72156)
        .bulk(b"health")
        .bulk(b"online")
        .bulk(b"hostname")
        .bulk(b"")
}

/// Three shards: 0-5460 on :30001 (replica :30004), 5461-10922 on :30002, and
/// 10923-16383 on :30003 in two ranges, with an unknown ("?") endpoint.
fn shards_reply(resp3: bool) -> Vec<u8> {
    let mut w = W::default().arr(3);
    // shard 1
    w = w.map(2, resp3).bulk(b"slots").arr(2).int(0).int(5460);
    w = w.bulk(b"nodes").arr(2);
    w = shards_node(w, resp3, b"127.0.0.1", 30001, b"master");
    w = shards_node(w, resp3, b"127.0.0.1", 30004, b"replica");
    // shard 2
    w = w.map(2, resp3).bulk(b"slots").arr(2).int(5461).int(10922);
    w = w.bulk(b"nodes").arr(1);
    w = shards_node(w, resp3, b"127.0.0.1", 30002, b"master");
    // shard 3: the master comes after its replica, and the slots come in two ranges
    w = w.map(2, resp3).bulk(b"slots").arr(4);
    w = w.int(10923).int(12000).int(12001).int(16383);
    w = w.bulk(b"nodes").arr(2);
    w = shards_node(w, resp3, b"host-b.example", 30006, b"replica");
    w = shards_node(w, resp3, b"?", 30003, b"master");
    w.0
}

fn check_three_shards(map: &SlotMap) {
    let a = NodeAddr::new("127.0.0.1", 30001);
    let b = NodeAddr::new("127.0.0.1", 30002);
    let c = NodeAddr::new("10.0.0.9", 30003);
    assert_eq!(map.master_for(0), Some(&a));
    assert_eq!(map.master_for(5460), Some(&a));
    assert_eq!(map.master_for(5461), Some(&b));
    assert_eq!(map.master_for(10922), Some(&b));
    assert_eq!(map.master_for(10923), Some(&c));
    assert_eq!(map.master_for(12001), Some(&c));
    assert_eq!(map.master_for(16383), Some(&c));
    assert_eq!(map.master_for(16384), None);
    assert_eq!(map.master_for(u16::MAX), None);
    assert_eq!(map.masters(), vec![a, b, c]);
    assert_eq!(map.replicas_for(1), &[NodeAddr::new("127.0.0.1", 30004)]);
    assert!(map.replicas_for(6000).is_empty());
    assert_eq!(map.assigned_slots(), 16384);
}

#[test]
fn known_slots() {
    // CRC16/XMODEM check value: crc("123456789") = 0x31C3.
    assert_eq!(key_slot(b"123456789"), 0x31C3);
    // Values from the Redis cluster specification and CLUSTER KEYSLOT.
    assert_eq!(key_slot(b"foo"), 12182);
    assert_eq!(key_slot(b"hello"), 866);
    assert_eq!(key_slot(b"somekey"), 11058);
    assert_eq!(key_slot(b""), 0);
}

#[test]
fn hash_tags() {
    // Only the first non-empty {...} counts.
    assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
    assert_eq!(key_slot(b"{user1000}.followers"), key_slot(b"user1000"));
    // First tag empty: the whole key is hashed (no search for a second tag).
    assert_eq!(key_slot(b"foo{}{bar}"), key_slot_whole(b"foo{}{bar}"));
    assert_ne!(key_slot(b"foo{}{bar}"), key_slot(b"bar"));
    // The tag runs from the first { to the first } after it.
    assert_eq!(key_slot(b"foo{{bar}}zap"), key_slot(b"{bar"));
    assert_eq!(key_slot(b"foo{bar}{zap}"), key_slot(b"bar"));
    // No closing brace, or the } comes first: whole key.
    assert_eq!(key_slot(b"{"), key_slot_whole(b"{"));
    assert_eq!(key_slot(b"foo{bar"), key_slot_whole(b"foo{bar"));
    assert_eq!(key_slot(b"}{x}"), key_slot(b"x"));
    assert_eq!(key_slot(b"}"), key_slot_whole(b"}"));
    assert_eq!(key_slot(b"{}"), key_slot_whole(b"{}"));
    // Binary keys hash their bytes.
    assert_eq!(key_slot(b"\x00\xff{\r\n}\x01"), key_slot(b"\r\n"));
    assert_eq!(key_slot(b"\xff\xfe\x00"), key_slot_whole(b"\xff\xfe\x00"));
}

fn key_slot_whole(key: &[u8]) -> u16 {
    crc16::State::<crc16::XMODEM>::calculate(key) % 16384
}

proptest! {
    #[test]
    fn matches_redis_protocol_keyslot(key in prop::collection::vec(
        prop_oneof![Just(b'{'), Just(b'}'), Just(b'a'), Just(0u8), any::<u8>()], 0..16)) {
        prop_assert_eq!(key_slot(&key), redis_protocol::redis_keyslot(&key));
    }
}

#[test]
fn cluster_shards_resp2_and_resp3() {
    for resp3 in [false, true] {
        let map = SlotMap::from_cluster_shards(&shards_reply(resp3), &origin())
            .unwrap_or_else(|e| panic!("resp3={resp3}: {e}"));
        check_three_shards(&map);
        assert_eq!(
            map.replicas_for(16000),
            &[NodeAddr::new("host-b.example", 30006)]
        );
    }
}

#[test]
fn cluster_shards_tls_port_and_masterless_shard() {
    // A TLS-only node lists `tls-port` and no `port`; a shard whose master failed and
    // has no replacement yet has only a replica (its slots stay unassigned).
    let w = W::default()
        .arr(2)
        .raw(b"%2\r\n+slots\r\n*2\r\n:0\r\n:99\r\n+nodes\r\n*1\r\n")
        .raw(b"%3\r\n+endpoint\r\n$9\r\nnode-a.tl\r\n+tls-port\r\n:6380\r\n+role\r\n+master\r\n")
        .raw(b"%2\r\n+slots\r\n*2\r\n:100\r\n:199\r\n+nodes\r\n*1\r\n")
        .raw(b"%3\r\n+endpoint\r\n$0\r\n\r\n+port\r\n:6381\r\n+role\r\n+replica\r\n");
    let map = SlotMap::from_cluster_shards(&w.0, &origin()).unwrap();
    assert_eq!(map.master_for(50), Some(&NodeAddr::new("node-a.tl", 6380)));
    assert_eq!(map.master_for(150), None);
    assert_eq!(map.assigned_slots(), 100);
    assert_eq!(map.masters().len(), 1);
}

#[test]
fn cluster_shards_empty_cluster() {
    let map = SlotMap::from_cluster_shards(b"*0\r\n", &origin()).unwrap();
    assert_eq!(map.assigned_slots(), 0);
    assert!(map.masters().is_empty());
    assert_eq!(map.master_for(0), None);
}

/// CLUSTER SLOTS as in the Redis 7.0 docs: `[start, end, [host, port, id, metadata]...]`.
fn slots_node(w: W, host: Option<&[u8]>, port: i64, resp3: bool) -> W {
    let w = w.arr(4);
    let w = match host {
        Some(h) => w.bulk(h),
        None if resp3 => w.raw(b"_\r\n"),
        None => w.raw(b"$-1\r\n"),
    };
    let w = w
        .int(port)
        .bulk(b"09dbe9720cda62f7865eabc5fd8857c5d2678366");
    w.map(1, resp3)
        .bulk(b"hostname")
        .bulk(b"host-1.redis.example.com")
}

fn slots_reply(resp3: bool) -> Vec<u8> {
    let mut w = W::default().arr(4);
    w = w.arr(4).int(0).int(5460);
    w = slots_node(w, Some(b"127.0.0.1"), 30001, resp3);
    w = slots_node(w, Some(b"127.0.0.1"), 30004, resp3);
    w = w.arr(3).int(5461).int(10922);
    w = slots_node(w, Some(b"127.0.0.1"), 30002, resp3);
    // The third master serves two ranges and announces no endpoint (null in 7.0).
    w = w.arr(3).int(10923).int(12000);
    w = slots_node(w, None, 30003, resp3);
    w = w.arr(3).int(12001).int(16383);
    w = slots_node(w, Some(b""), 30003, resp3);
    w.0
}

#[test]
fn cluster_slots_resp2_and_resp3() {
    for resp3 in [false, true] {
        let map = SlotMap::from_cluster_slots(&slots_reply(resp3), &origin())
            .unwrap_or_else(|e| panic!("resp3={resp3}: {e}"));
        check_three_shards(&map);
        assert_eq!(map.shards().len(), 3);
    }
}

#[test]
fn cluster_slots_pre_7_nodes_and_ipv6() {
    // Redis 6: nodes are [ip, port, id] without metadata; IPv6 endpoints are bare.
    let w = W::default()
        .arr(1)
        .arr(3)
        .int(0)
        .int(16383)
        .arr(3)
        .bulk(b"::1")
        .int(7000)
        .bulk(b"abc");
    let map = SlotMap::from_cluster_slots(&w.0, &origin()).unwrap();
    let node = NodeAddr::new("::1", 7000);
    assert_eq!(map.master_for(8000), Some(&node));
    assert_eq!(node.to_string(), "[::1]:7000");
}

#[test]
fn error_replies_are_refusals() {
    let e = SlotMap::from_cluster_shards(
        b"-ERR unknown subcommand 'SHARDS'. Try CLUSTER HELP.\r\n",
        &origin(),
    )
    .unwrap_err();
    assert!(
        matches!(
            e,
            SlotsError::Refused {
                command: "SHARDS",
                ..
            }
        ),
        "{e}"
    );
    let e = SlotMap::from_cluster_slots(
        b"-ERR This instance has cluster support disabled\r\n",
        &origin(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("cluster support disabled"), "{e}");
    let e = SlotMap::from_cluster_slots(b"!5\r\nERR x\r\n", &origin()).unwrap_err();
    assert!(matches!(e, SlotsError::Refused { .. }), "{e}");
}

#[test]
fn malformed_replies_are_errors() {
    let bad: &[&[u8]] = &[
        b"",
        b"*1\r\n",
        b"*1",
        b"*2\r\n*0\r\n",
        b"*1000000000\r\n*0\r\n",
        b"*-5\r\n",
        b"$5\r\nab\r\n",
        b"$2\r\nabXY",
        b"*0\r\n*0\r\n",
        b"?\r\n",
        b"|1\r\n+a\r\n+b\r\n*0\r\n",
        b":12x\r\n",
    ];
    for reply in bad {
        let e = SlotMap::from_cluster_slots(reply, &origin());
        assert!(
            matches!(e, Err(SlotsError::Malformed { .. })),
            "{:?}: {e:?}",
            String::from_utf8_lossy(reply)
        );
    }
    // Deep nesting is refused without recursion.
    let mut deep = b"*1\r\n".repeat(100_000);
    deep.extend_from_slice(b":1\r\n");
    assert!(matches!(
        SlotMap::from_cluster_shards(&deep, &origin()),
        Err(SlotsError::Malformed { .. })
    ));
}

#[test]
fn misshapen_replies_are_errors() {
    let cases: &[&[u8]] = &[
        b":1\r\n",
        b"*1\r\n:1\r\n",
        // slot bound out of range, reversed range, missing master
        b"*1\r\n*3\r\n:0\r\n:16384\r\n*2\r\n$1\r\na\r\n:1\r\n",
        b"*1\r\n*3\r\n:9\r\n:1\r\n*2\r\n$1\r\na\r\n:1\r\n",
        b"*1\r\n*2\r\n:0\r\n:1\r\n",
        // port 0, negative port, port too large, non-UTF-8 host
        b"*1\r\n*3\r\n:0\r\n:1\r\n*2\r\n$1\r\na\r\n:0\r\n",
        b"*1\r\n*3\r\n:0\r\n:1\r\n*2\r\n$1\r\na\r\n:-1\r\n",
        b"*1\r\n*3\r\n:0\r\n:1\r\n*2\r\n$1\r\na\r\n:65536\r\n",
        b"*1\r\n*3\r\n:0\r\n:1\r\n*2\r\n$1\r\n\xff\r\n:1\r\n",
    ];
    for reply in cases {
        let e = SlotMap::from_cluster_slots(reply, &origin());
        assert!(
            matches!(e, Err(SlotsError::Shape { .. })),
            "{:?}: {e:?}",
            String::from_utf8_lossy(reply)
        );
    }
    // SHARDS: odd number of slot bounds, node without a port.
    let odd = b"*1\r\n*4\r\n+slots\r\n*1\r\n:0\r\n+nodes\r\n*0\r\n";
    assert!(matches!(
        SlotMap::from_cluster_shards(odd, &origin()),
        Err(SlotsError::Shape { .. })
    ));
    let no_port =
        b"*1\r\n*4\r\n+slots\r\n*2\r\n:0\r\n:1\r\n+nodes\r\n*1\r\n*2\r\n+role\r\n+master\r\n";
    assert!(matches!(
        SlotMap::from_cluster_shards(no_port, &origin()),
        Err(SlotsError::Shape { .. })
    ));
}

#[test]
fn later_ranges_win_and_orphaned_masters_go() {
    // Slot 0-9 first claimed by :1, then all of them by :2: :1 owns nothing and is gone.
    let w = W::default()
        .arr(2)
        .arr(3)
        .int(0)
        .int(9)
        .arr(2)
        .bulk(b"h")
        .int(1)
        .arr(3)
        .int(0)
        .int(9)
        .arr(2)
        .bulk(b"h")
        .int(2);
    let map = SlotMap::from_cluster_slots(&w.0, &origin()).unwrap();
    assert_eq!(map.masters(), vec![NodeAddr::new("h", 2)]);
    assert_eq!(map.master_for(5), Some(&NodeAddr::new("h", 2)));
}

#[test]
fn redirects() {
    let r = Redirect::parse(b"-MOVED 3999 127.0.0.1:6381\r\n").unwrap();
    assert_eq!(
        r,
        Redirect {
            kind: RedirectKind::Moved,
            slot: 3999,
            node: NodeAddr::new("127.0.0.1", 6381)
        }
    );
    let r = Redirect::parse(b"ASK 16383 redis-1.example:7000").unwrap();
    assert_eq!(r.kind, RedirectKind::Ask);
    assert_eq!(r.slot, 16383);
    assert_eq!(r.node, NodeAddr::new("redis-1.example", 7000));
    // IPv6, bracketed or as Redis writes it.
    let r = Redirect::parse(b"-MOVED 1 [::1]:7000").unwrap();
    assert_eq!(r.node, NodeAddr::new("::1", 7000));
    let r = Redirect::parse(b"-MOVED 1 ::1:7000\r\n").unwrap();
    assert_eq!(r.node, NodeAddr::new("::1", 7000));
    // Unknown host: reached at the host of the node that sent it.
    let r = Redirect::parse(b"-MOVED 3999 :6381\r\n").unwrap();
    assert_eq!(r.node, NodeAddr::new("", 6381));
    assert_eq!(
        r.node.or_host_of(&origin()),
        NodeAddr::new("10.0.0.9", 6381)
    );

    for bad in [
        &b"-ERR unknown command"[..],
        b"-MOVED",
        b"-MOVED 3999",
        b"-MOVED 16384 a:1",
        b"-MOVED -1 a:1",
        b"-MOVED x a:1",
        b"-MOVED 1 a",
        b"-MOVED 1 a:",
        b"-MOVED 1 a:0",
        b"-MOVED 1 a:70000",
        b"-MOVED 1 a:1 extra",
        b"-MOVED  1 a:1",
        b"-MOVED 1 [::1:7000",
        b"-MOVED 1 \xff:7000",
        b"-moved 1 a:1",
        b"-ASKING 1 a:1",
        b"",
    ] {
        assert_eq!(
            Redirect::parse(bad),
            None,
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
}

#[test]
fn node_addresses_parse_as_written_in_a_config_file() {
    let p = |s: &str| s.parse::<NodeAddr>();
    assert_eq!(p("10.0.0.5:7001").unwrap(), NodeAddr::new("10.0.0.5", 7001));
    assert_eq!(p("[::1]:7001").unwrap(), NodeAddr::new("::1", 7001));
    assert_eq!(p("cache-1").unwrap(), NodeAddr::new("cache-1", 6379));
    // What it prints parses back to itself.
    for a in [NodeAddr::new("::1", 7001), NodeAddr::new("h", 1)] {
        assert_eq!(p(&a.to_string()).unwrap(), a);
    }
    for bad in ["", ":7001", "h:0", "h:70000", "h:x", "[::1"] {
        assert!(p(bad).is_err(), "{bad}");
    }
}
