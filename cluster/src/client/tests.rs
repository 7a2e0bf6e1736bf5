//! Reply merging and SCAN cursors of the cluster router, on the wire bytes.

use super::*;

fn entry(results: &[&'static [u8]], merge: Merge) -> Entry {
    let parts: SmallVec<[Part; 1]> = results
        .iter()
        .map(|r| {
            let mut p = Part::new(Bytes::new(), None, None);
            p.result = Some(Bytes::from_static(r));
            p
        })
        .collect();
    Entry {
        pending: 0,
        parts,
        merge,
        replies: 1,
        local: None,
    }
}

fn merged(results: &[&'static [u8]], merge: Merge) -> Vec<u8> {
    let mut out = BytesMut::new();
    merge_into(&mut out, entry(results, merge), false);
    out.to_vec()
}

#[test]
fn mget_parts_are_put_back_in_request_order() {
    // Keys 0, 2 on one slot, key 1 on another, key 3 missing on a third.
    let merge = Merge::Mget {
        positions: vec![vec![0, 2], vec![1], vec![3]],
        keys: 4,
    };
    let out = merged(
        &[
            b"*2\r\n$1\r\na\r\n$1\r\nc\r\n",
            b"*1\r\n$1\r\nb\r\n",
            b"*1\r\n$-1\r\n",
        ],
        merge,
    );
    assert_eq!(out, b"*4\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n$-1\r\n");
}

#[test]
fn sums_all_ok_and_the_first_error() {
    assert_eq!(
        merged(&[b":2\r\n", b":0\r\n", b":5\r\n"], Merge::Sum),
        b":7\r\n"
    );
    assert_eq!(merged(&[b"+OK\r\n", b"+OK\r\n"], Merge::AllOk), b"+OK\r\n");
    assert_eq!(
        merged(&[b"+OK\r\n", b"-OOM no\r\n", b"-ERR x\r\n"], Merge::AllOk),
        b"-OOM no\r\n"
    );
    assert_eq!(
        merged(
            &[b"*1\r\n$1\r\na\r\n", b"*0\r\n", b"*1\r\n$1\r\nb\r\n"],
            Merge::Concat
        ),
        b"*2\r\n$1\r\na\r\n$1\r\nb\r\n"
    );
    assert_eq!(
        merged(&[b"$-1\r\n", b"$1\r\nk\r\n"], Merge::FirstNonNil),
        b"$1\r\nk\r\n"
    );
    assert_eq!(
        merged(&[b"$-1\r\n", b"$-1\r\n"], Merge::FirstNonNil),
        b"$-1\r\n"
    );
}

#[test]
fn scan_cursor_carries_the_master() {
    let reply = Bytes::from_static(b"*2\r\n$2\r\n17\r\n*1\r\n$1\r\nk\r\n");
    // Master 1 of 3, its cursor 17: (17 << 10) | 1.
    assert_eq!(
        &rewrite_scan(&reply, 1, 3)[..],
        b"*2\r\n$5\r\n17409\r\n*1\r\n$1\r\nk\r\n"
    );
    // A master that is done hands over to the next one, the last one ends the scan.
    let done = Bytes::from_static(b"*2\r\n$1\r\n0\r\n*0\r\n");
    assert_eq!(&rewrite_scan(&done, 1, 3)[..], b"*2\r\n$1\r\n2\r\n*0\r\n");
    assert_eq!(&rewrite_scan(&done, 2, 3)[..], b"*2\r\n$1\r\n0\r\n*0\r\n");
    // Errors pass through.
    let err = Bytes::from_static(b"-ERR invalid cursor\r\n");
    assert_eq!(&rewrite_scan(&err, 0, 3)[..], &err[..]);
}

fn direct(args: &[&[u8]]) -> Option<u16> {
    let info = command::lookup(args[0])?;
    direct_slot(info, args.len(), |i| args.get(i).copied().unwrap_or(&[]))
}

#[test]
fn direct_slot_only_for_plain_single_slot_commands() {
    assert_eq!(direct(&[b"SET", b"foo", b"bar"]), Some(key_slot(b"foo")));
    assert_eq!(direct(&[b"get", b"{u1}x"]), Some(key_slot(b"u1")));
    // Several keys: one slot, or the router's own look (split or CROSSSLOT).
    assert_eq!(
        direct(&[b"MSET", b"{t}a", b"1", b"{t}b", b"2"]),
        Some(key_slot(b"t"))
    );
    assert_eq!(direct(&[b"MSET", b"a", b"1", b"b", b"2"]), None);
    assert_eq!(direct(&[b"DEL", b"a", b"b"]), None);
    // No key where one is due (the server's arity error), movable keys, containers,
    // pub/sub and transactions: left to the router.
    assert_eq!(direct(&[b"GET"]), None);
    assert_eq!(direct(&[b"EVAL", b"return 1", b"1", b"k"]), None);
    assert_eq!(direct(&[b"OBJECT", b"ENCODING", b"k"]), None);
    assert_eq!(direct(&[b"SSUBSCRIBE", b"ch"]), None);
    assert_eq!(direct(&[b"WATCH", b"k"]), None);
    assert_eq!(direct(&[b"PING"]), None);
}

#[test]
fn direct_slot_agrees_with_the_routers_key_positions() {
    let cases: &[&[&[u8]]] = &[
        &[b"SET", b"k1", b"v"],
        &[b"HSET", b"h", b"f", b"v"],
        &[b"ZADD", b"z", b"1", b"m"],
        &[b"LPUSH", b"l", b"a", b"b"],
        &[b"RENAME", b"{x}a", b"{x}b"],
        &[b"SMOVE", b"{s}a", b"{s}b", b"m"],
        &[b"MGET", b"{m}1", b"{m}2", b"{m}3"],
        &[b"EXPIRE", b"k", b"10"],
        &[b"INCR", b"counter"],
    ];
    for args in cases {
        let info = command::lookup(args[0]).expect("known");
        let mut keys = Vec::new();
        command::key_positions(info, args.len(), |i| args[i], &mut keys);
        let slots: Vec<u16> = keys.iter().map(|&p| key_slot(args[p])).collect();
        let expected = slots
            .first()
            .copied()
            .filter(|s| slots.iter().all(|x| x == s));
        assert_eq!(direct(args), expected, "{:?}", args[0]);
        assert!(expected.is_some());
    }
}

#[test]
fn answered_entries_held_for_their_batch_do_not_hold_a_new_map_back() {
    // An MGET answered but held for its batch (the SET behind it waits): a new slot map
    // may be adopted.
    let done = entry(&[b"*2\r\n$1\r\n1\r\n$1\r\n1\r\n"], Merge::One);
    assert!(all_answered([&done]));
    // A part still owed by a node: not yet.
    let mut owed = entry(&[b"+OK\r\n"], Merge::One);
    owed.parts[0].result = None;
    owed.pending = 1;
    assert!(!all_answered([&done, &owed]));
    assert!(all_answered(std::iter::empty::<&Entry>()));
}
