use super::*;
use crate::load::{encode_rdb, LoadMsg};
use crate::rdb::decode::{Consumer, Group, PendingEntry, StreamEntry, ValuePart};
use std::sync::atomic::AtomicU64;

const OLD: TargetCaps = TargetCaps {
    restore: false,
    stream_meta: false,
    create_consumer: true,
    field_ttl: false,
};

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn entry(key: &str, expire_ms: Option<i64>) -> KeyEntry {
    KeyEntry {
        db: 3,
        key: b(key),
        expire_ms,
        value_type: 0,
        value: Bytes::new(),
    }
}

/// Splits RESP commands (arrays of bulk strings) back into their arguments.
fn parse(mut buf: &[u8]) -> Commands {
    fn line(buf: &mut &[u8], kind: u8) -> usize {
        assert_eq!(buf[0], kind, "{:?}", String::from_utf8_lossy(buf));
        let end = buf.windows(2).position(|w| w == b"\r\n").unwrap();
        let n = std::str::from_utf8(&buf[1..end]).unwrap().parse().unwrap();
        *buf = &buf[end + 2..];
        n
    }
    let mut out = Vec::new();
    while !buf.is_empty() {
        let n = line(&mut buf, b'*');
        let mut args = Vec::new();
        for _ in 0..n {
            let len = line(&mut buf, b'$');
            args.push(buf[..len].to_vec());
            assert_eq!(&buf[len..len + 2], b"\r\n");
            buf = &buf[len + 2..];
        }
        out.push(args);
    }
    out
}

fn run(e: &KeyEntry, v: &Value, caps: TargetCaps) -> Vec<Vec<String>> {
    let mut sink = VecSink::default();
    write_commands(e, v, caps, &mut sink).unwrap();
    let cmds = parse(&sink.buf);
    assert_eq!(cmds.len(), sink.names.len());
    for (c, (name, key)) in cmds.iter().zip(&sink.names) {
        assert!(
            name.split(' ').zip(c).all(|(n, a)| n.as_bytes() == &a[..]),
            "{name} vs {:?}",
            String::from_utf8_lossy(&c[0])
        );
        assert_eq!(key, &e.key);
    }
    cmds.into_iter()
        .map(|c| {
            c.into_iter()
                .map(|a| String::from_utf8_lossy(&a).into_owned())
                .collect()
        })
        .collect()
}

fn words(s: &str) -> Vec<String> {
    s.split(' ').map(String::from).collect()
}

#[test]
fn string_exact_wire_bytes() {
    let e = entry("k", Some(1_700_000_000_123));
    let mut sink = VecSink::default();
    write_commands(&e, &Value::String(b("v\r\n")), OLD, &mut sink).unwrap();
    assert_eq!(
        &sink.buf[..],
        &b"*2\r\n$3\r\nDEL\r\n$1\r\nk\r\n\
           *3\r\n$3\r\nSET\r\n$1\r\nk\r\n$3\r\nv\r\n\r\n\
           *3\r\n$9\r\nPEXPIREAT\r\n$1\r\nk\r\n$13\r\n1700000000123\r\n"[..]
    );
    let names: Vec<_> = sink.names.iter().map(|(n, _)| *n).collect();
    assert_eq!(names, ["DEL", "SET", "PEXPIREAT"]);
    // An empty string is still a key.
    let cmds = run(&entry("e", None), &Value::String(Bytes::new()), OLD);
    assert_eq!(
        cmds,
        vec![
            words("DEL e"),
            vec!["SET".into(), "e".into(), String::new()]
        ]
    );
}

#[test]
fn big_string_is_set_then_appended() {
    let s: Vec<u8> = (0..(2 * CHUNK_BYTES + 10))
        .map(|i| (i % 251) as u8)
        .collect();
    let mut sink = VecSink::default();
    write_commands(
        &entry("big", None),
        &Value::String(Bytes::from(s.clone())),
        OLD,
        &mut sink,
    )
    .unwrap();
    let cmds = parse(&sink.buf);
    let names: Vec<&[u8]> = cmds.iter().map(|c| &c[0][..]).collect();
    assert_eq!(names, [&b"DEL"[..], b"SET", b"APPEND", b"APPEND"]);
    let sizes: Vec<usize> = cmds[1..].iter().map(|c| c[2].len()).collect();
    assert_eq!(sizes, [CHUNK_BYTES, CHUNK_BYTES, 10]);
    let joined: Vec<u8> = cmds[1..].iter().flat_map(|c| c[2].clone()).collect();
    assert_eq!(joined, s);
}

#[test]
fn lists_and_sets_in_chunks_of_elements_and_bytes() {
    let items: Vec<Bytes> = (0..2500).map(|i| b(&format!("e{i}"))).collect();
    let cmds = run(&entry("l", Some(5)), &Value::List(items.clone()), OLD);
    let counts: Vec<usize> = cmds.iter().map(|c| c.len() - 2).collect();
    assert_eq!(counts, [0, 1000, 1000, 500, 1]); // DEL, RPUSH x3, PEXPIREAT
    assert_eq!(cmds[1][0], "RPUSH");
    let back: Vec<String> = cmds[1..4].iter().flat_map(|c| c[2..].to_vec()).collect();
    let want: Vec<String> = (0..2500).map(|i| format!("e{i}")).collect();
    assert_eq!(back, want, "order kept");
    assert_eq!(cmds[4], words("PEXPIREAT l 5"));

    // By bytes: 400 KB members go two per command; a member over the limit goes alone.
    let big: Vec<Bytes> = vec![
        Bytes::from(vec![b'a'; 400 * 1024]),
        Bytes::from(vec![b'b'; 400 * 1024]),
        Bytes::from(vec![b'c'; 400 * 1024]),
        Bytes::from(vec![b'd'; 3 * CHUNK_BYTES]),
        b("e"),
    ];
    let cmds = run(&entry("s", None), &Value::Set(big), OLD);
    let counts: Vec<usize> = cmds[1..].iter().map(|c| c.len() - 2).collect();
    assert_eq!(counts, [2, 1, 1, 1]);
    assert!(cmds[1..].iter().all(|c| c[0] == "SADD"));
    assert!(cmds[3][2].len() == 3 * CHUNK_BYTES && cmds[4][2] == "e");
}

#[test]
fn chunk_bounds() {
    let sizes = [CHUNK_BYTES, 1, CHUNK_BYTES - 1, 1, 0];
    let got: Vec<usize> = chunks(&sizes, |s| *s).map(|c| c.len()).collect();
    assert_eq!(got, [1, 2, 2]);
    let empty: [usize; 0] = [];
    assert_eq!(chunks(&empty, |s| *s).count(), 0);
    let many = vec![0usize; 3 * CHUNK_ELEMS + 1];
    let got: Vec<usize> = chunks(&many, |s| *s).map(|c| c.len()).collect();
    assert_eq!(got, [CHUNK_ELEMS, CHUNK_ELEMS, CHUNK_ELEMS, 1]);
}

#[test]
fn scores_keep_full_precision() {
    assert_eq!(score(0.1 + 0.2), "0.30000000000000004");
    assert_eq!(score(1e-300), "1e-300");
    assert_eq!(score(5e-324), "5e-324");
    assert_eq!(score(f64::MIN_POSITIVE), "2.2250738585072014e-308");
    assert_eq!(score(f64::MAX), "1.7976931348623157e308");
    assert_eq!(score(f64::INFINITY), "inf");
    assert_eq!(score(f64::NEG_INFINITY), "-inf");
    assert_eq!(score(0.0), "0");
    assert_eq!(score(-0.0), "-0");
    assert_eq!(score(3.0), "3");
    assert_eq!(score(-12.5), "-12.5");
    assert_eq!(score(1e22), "1e22");
    assert_eq!(score(123456789012345680.0), "123456789012345680");
    assert_eq!(score(1000.0), "1000");
    // Round trip over many bit patterns (what strtod on the target reads back).
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..200_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let f = f64::from_bits(x);
        if f.is_nan() {
            continue;
        }
        let s = score(f);
        assert_eq!(s.parse::<f64>().unwrap().to_bits(), f.to_bits(), "{s}");
        assert!(s.len() <= 24, "{s}");
    }

    let pairs = vec![
        (b("a"), 0.1 + 0.2),
        (b("b"), 1e-300),
        (b("c"), 5e-324),
        (b("d"), f64::INFINITY),
        (b("e"), f64::NEG_INFINITY),
    ];
    let cmds = run(&entry("z", None), &Value::ZSet(pairs), OLD);
    assert_eq!(
        cmds[1],
        words("ZADD z 0.30000000000000004 a 1e-300 b 5e-324 c inf d -inf e")
    );
}

#[test]
fn zset_chunks_count_pairs() {
    let pairs: Vec<(Bytes, f64)> = (0..1500).map(|i| (b(&format!("m{i}")), i as f64)).collect();
    let cmds = run(&entry("z", None), &Value::ZSet(pairs), OLD);
    let counts: Vec<usize> = cmds[1..].iter().map(|c| (c.len() - 2) / 2).collect();
    assert_eq!(counts, [1000, 500]);
    assert_eq!(&cmds[2][2..4], &["1000".to_string(), "m1000".to_string()]);
}

#[test]
fn hashes_and_field_ttls() {
    let fields = vec![(b("f"), b("v"), None), (b("g"), Bytes::new(), None)];
    let cmds = run(&entry("h", None), &Value::Hash(fields), OLD);
    assert_eq!(cmds[1], vec!["HSET", "h", "f", "v", "g", ""]);
    assert_eq!(cmds.len(), 2);

    let fields = vec![
        (b("a"), b("1"), Some(4_000_000_000_000)),
        (b("b"), b("2"), None),
        (b("c"), b("3"), Some(4_000_000_000_000)),
        (b("d"), b("4"), Some(3_000_000_000_000)),
    ];
    // A target without field TTLs: refused, naming the key and db, nothing written.
    let e = entry("user:\x01ttl", Some(9));
    let mut sink = VecSink::default();
    let err = write_commands(&e, &Value::Hash(fields.clone()), OLD, &mut sink).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(&err, SyncError::Apply { command, key, .. } if command == "HPEXPIREAT" && key == "user:?ttl"),
        "{err:?}"
    );
    assert!(msg.contains("db 3") && msg.contains("field TTLs"), "{msg}");
    assert!(sink.buf.is_empty() && sink.names.is_empty());

    // A 7.4+ target: HSET, then HPEXPIREAT per expiry, then the key's TTL.
    let cmds = run(&e, &Value::Hash(fields), TargetCaps::ALL);
    assert_eq!(cmds[1], words("HSET user:\x01ttl a 1 b 2 c 3 d 4"));
    assert_eq!(
        cmds[2],
        words("HPEXPIREAT user:\x01ttl 3000000000000 FIELDS 1 d")
    );
    assert_eq!(
        cmds[3],
        words("HPEXPIREAT user:\x01ttl 4000000000000 FIELDS 2 a c")
    );
    assert_eq!(cmds[4], words("PEXPIREAT user:\x01ttl 9"));
    assert_eq!(cmds.len(), 5);
}

fn id(ms: u64, seq: u64) -> StreamId {
    StreamId { ms, seq }
}

fn sample_stream() -> StreamValue {
    StreamValue {
        entries: vec![
            StreamEntry {
                id: id(1, 1),
                fields: vec![(b("f"), b("v"))],
            },
            StreamEntry {
                id: id(5, 0),
                fields: vec![(b("f"), b("w")), (b("x"), b("y"))],
            },
        ],
        length: 2,
        last_id: id(9, 0),
        first_id: Some(id(1, 1)),
        max_deleted_id: Some(id(3, 0)),
        entries_added: Some(4),
        groups: vec![
            Group {
                name: b("g1"),
                last_id: id(5, 0),
                entries_read: Some(3),
                pending: vec![
                    PendingEntry {
                        id: id(1, 1),
                        consumer: b("alice"),
                        delivery_time_ms: 1_700_000_000_000,
                        delivery_count: 2,
                    },
                    PendingEntry {
                        id: id(3, 0), // deleted since delivered
                        consumer: b("bob"),
                        delivery_time_ms: 1_700_000_000_001,
                        delivery_count: 1,
                    },
                ],
                consumers: vec![
                    Consumer {
                        name: b("alice"),
                        seen_time_ms: 1,
                        active_time_ms: None,
                        pending: vec![id(1, 1)],
                    },
                    Consumer {
                        name: b("bob"),
                        seen_time_ms: 1,
                        active_time_ms: None,
                        pending: vec![id(3, 0)],
                    },
                    Consumer {
                        name: b("idle"),
                        seen_time_ms: 1,
                        active_time_ms: None,
                        pending: vec![],
                    },
                ],
            },
            Group {
                name: b("g2"),
                last_id: id(0, 0),
                entries_read: None,
                pending: vec![],
                consumers: vec![],
            },
        ],
        idmp: None,
    }
}

#[test]
fn stream_with_groups_consumers_and_pending_entries() {
    let s = Value::Stream(sample_stream());
    let e = entry("s", Some(77));
    let want_70 = [
        "DEL s",
        "XADD s 1-1 f v",
        "XADD s 3-0 cutover placeholder",
        "XADD s 5-0 f w x y",
        "XGROUP CREATE s g1 5-0 ENTRIESREAD 3",
        "XGROUP CREATECONSUMER s g1 alice",
        "XGROUP CREATECONSUMER s g1 bob",
        "XGROUP CREATECONSUMER s g1 idle",
        "XCLAIM s g1 alice 0 1-1 TIME 1700000000000 RETRYCOUNT 2 FORCE JUSTID",
        "XCLAIM s g1 bob 0 3-0 TIME 1700000000001 RETRYCOUNT 1 FORCE JUSTID",
        "XGROUP CREATE s g2 0-0",
        "XDEL s 3-0",
        "XSETID s 9-0 ENTRIESADDED 4 MAXDELETEDID 3-0",
        "PEXPIREAT s 77",
    ];
    let got = run(&e, &s, TargetCaps::ALL);
    assert_eq!(got, want_70.iter().map(|c| words(c)).collect::<Vec<_>>());

    // 6.2: no read counters, no ENTRIESADDED/MAXDELETEDID.
    let got = run(&e, &s, OLD);
    let want_62: Vec<Vec<String>> = want_70
        .iter()
        .map(|c| {
            words(
                &c.replace(" ENTRIESREAD 3", "")
                    .replace(" ENTRIESADDED 4 MAXDELETEDID 3-0", ""),
            )
        })
        .collect();
    assert_eq!(got, want_62);

    // Before 6.2 (no CREATECONSUMER): XCLAIM creates owners; others by reading history.
    let pre62 = TargetCaps {
        create_consumer: false,
        ..OLD
    };
    let got = run(&e, &s, pre62);
    assert!(!got.iter().any(|c| c[1] == "CREATECONSUMER"));
    assert!(got.contains(&words("XREADGROUP GROUP g1 idle COUNT 1 STREAMS s 0-0")));
    assert_eq!(got.iter().filter(|c| c[0] == "XREADGROUP").count(), 1);
}

#[test]
fn empty_stream_is_made_with_mkstream() {
    let s = StreamValue {
        entries: vec![],
        length: 0,
        last_id: id(7, 3),
        first_id: Some(id(0, 0)),
        max_deleted_id: Some(id(7, 3)),
        entries_added: Some(5),
        groups: vec![],
        idmp: None,
    };
    let got = run(&entry("s", None), &Value::Stream(s), TargetCaps::ALL);
    let want = [
        "DEL s",
        "XGROUP CREATE s __cutover:mkstream 0 MKSTREAM",
        "XGROUP DESTROY s __cutover:mkstream",
        "XSETID s 7-3 ENTRIESADDED 5 MAXDELETEDID 7-3",
    ];
    assert_eq!(got, want.iter().map(|c| words(c)).collect::<Vec<_>>());
}

#[test]
fn many_deleted_pending_entries_are_deleted_in_chunks() {
    let pending: Vec<PendingEntry> = (1..=2500)
        .map(|i| PendingEntry {
            id: id(i, 0),
            consumer: b("c"),
            delivery_time_ms: 1,
            delivery_count: 1,
        })
        .collect();
    let s = StreamValue {
        entries: vec![],
        length: 0,
        last_id: id(3000, 0),
        first_id: None,
        max_deleted_id: None,
        entries_added: None,
        groups: vec![Group {
            name: b("g"),
            last_id: id(3000, 0),
            entries_read: None,
            consumers: vec![Consumer {
                name: b("c"),
                seen_time_ms: 1,
                active_time_ms: None,
                pending: pending.iter().map(|p| p.id).collect(),
            }],
            pending,
        }],
        idmp: None,
    };
    let got = run(&entry("s", None), &Value::Stream(s), TargetCaps::ALL);
    let xdel: Vec<usize> = got
        .iter()
        .filter(|c| c[0] == "XDEL")
        .map(|c| c.len() - 2)
        .collect();
    assert_eq!(xdel, [1000, 1000, 500]);
    assert_eq!(got.iter().filter(|c| c[0] == "XADD").count(), 2500);
    assert_eq!(got.iter().filter(|c| c[0] == "XCLAIM").count(), 2500);
    assert_eq!(got.last().unwrap(), &words("XSETID s 3000-0"));
}

#[test]
fn probe_replies() {
    let (cmds, n) = probe_commands(10);
    let cmds = parse(&cmds);
    assert_eq!(cmds.len(), n as usize);
    assert_eq!(cmds[0][0], b"RESTORE");
    assert_eq!(cmds[0][1], PROBE_KEY);
    // The payload: string "x", RDB version 10, CRC64.
    assert_eq!(&cmds[0][3][..4], &[0, 1, b'x', 10]);
    assert_eq!(
        cmds.last().unwrap(),
        &vec![b"DEL".to_vec(), PROBE_KEY.to_vec()]
    );

    let ok: &[u8] = b"+OK\r\n";
    let one: &[u8] = b":1\r\n";
    let err: &[u8] = b"-ERR wrong number of arguments for 'xsetid' command\r\n";
    // Redis 7.0 for a 7.0 source.
    let r70 = [
        ok,
        one,
        b"$3\r\n1-1\r\n",
        ok,
        ok,
        ok,
        one,
        one,
        one,
        err,
        one,
    ];
    assert_eq!(
        parse_probe(&r70).unwrap(),
        TargetCaps {
            restore: true,
            stream_meta: true,
            create_consumer: true,
            field_ttl: false
        }
    );
    // Redis 6.2 for a 7.0 source.
    let v: &[u8] = b"-ERR DUMP payload version or checksum are wrong\r\n";
    let r62 = [
        v,
        b":0\r\n",
        b"$3\r\n1-1\r\n",
        err,
        err,
        ok,
        one,
        one,
        one,
        err,
        one,
    ];
    assert_eq!(
        parse_probe(&r62).unwrap(),
        TargetCaps {
            restore: false,
            stream_meta: false,
            create_consumer: true,
            field_ttl: false
        }
    );
    // 7.4+: HPEXPIREAT answers an array.
    let r74 = [
        ok,
        one,
        b"$3\r\n1-1\r\n",
        ok,
        ok,
        ok,
        one,
        one,
        one,
        b"*1\r\n:1\r\n",
        one,
    ];
    assert_eq!(parse_probe(&r74).unwrap(), TargetCaps::ALL);
    // A loading target is retried; a read-only one stops with the reason.
    let mut busy = r70;
    busy[5] = b"-LOADING Redis is loading the dataset in memory\r\n";
    assert!(parse_probe(&busy).unwrap_err().is_retryable());
    let mut ro = r70;
    ro[0] = b"-READONLY You can't write against a read only replica.\r\n";
    let e = parse_probe(&ro).unwrap_err();
    assert!(
        !e.is_retryable() && e.to_string().contains("READONLY"),
        "{e}"
    );
    assert!(parse_probe(&r70[..3]).is_err());
}

// ----- the encoder: mode chosen at the header, big values, refusals -----

fn rdb_len(out: &mut Vec<u8>, n: u64) {
    if n < 64 {
        out.push(n as u8);
    } else if n < 16384 {
        out.extend_from_slice(&[0x40 | (n >> 8) as u8, n as u8]);
    } else {
        out.push(0x80);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    }
}

fn rdb_str(out: &mut Vec<u8>, s: &[u8]) {
    rdb_len(out, s.len() as u64);
    out.extend_from_slice(s);
}

/// An RDB (version 10) with a small string, a set of `n` members (with an expiry) and
/// `extra` keys.
fn rdb(n: usize, extra: &[(u8, &[u8], Vec<u8>)]) -> Vec<u8> {
    let mut r = b"REDIS0010".to_vec();
    r.extend_from_slice(&[254, 0]); // SELECTDB 0
    r.push(0);
    rdb_str(&mut r, b"small");
    rdb_str(&mut r, b"v");
    r.push(252); // EXPIRETIME_MS
    r.extend_from_slice(&4_000_000_000_000i64.to_le_bytes());
    r.push(2);
    rdb_str(&mut r, b"bigset");
    rdb_len(&mut r, n as u64);
    for i in 0..n {
        rdb_str(&mut r, format!("member-{i:06}").as_bytes());
    }
    for (t, k, v) in extra {
        r.push(*t);
        rdb_str(&mut r, k);
        r.extend_from_slice(v);
    }
    r.push(255);
    r.extend_from_slice(&0u64.to_le_bytes()); // checksum disabled
    r
}

/// Commands, each a list of arguments.
type Commands = Vec<Vec<Vec<u8>>>;

/// Runs the encoder, answering its probe with `caps`: the commands and batch sizes.
fn encode(
    data: Vec<u8>,
    caps: TargetCaps,
    big: usize,
) -> (Result<(), SyncError>, Commands, Vec<usize>) {
    encode_scoped(data, caps, big, None)
}

/// [`encode`] for a link of a cluster source owning `scope`.
fn encode_scoped(
    data: Vec<u8>,
    caps: TargetCaps,
    big: usize,
    scope: Option<crate::scope::LinkScope>,
) -> (Result<(), SyncError>, Commands, Vec<usize>) {
    let (tx, mut rx) = tokio::sync::mpsc::channel(4);
    let keys = AtomicU64::new(0);
    let enc = std::thread::spawn(move || {
        encode_rdb(
            &data[..],
            &tx,
            &keys,
            big,
            &crate::config::DbMap::default(),
            false,
            scope.as_ref(),
        )
    });
    let mut cmds = Vec::new();
    let mut sizes = Vec::new();
    let mut probes = 0;
    while let Some(m) = rx.blocking_recv() {
        match m {
            Ok(LoadMsg::Probe { rdb_version, reply }) => {
                assert_eq!(rdb_version, 10);
                probes += 1;
                reply.send(caps).unwrap();
            }
            Ok(LoadMsg::Batch(batch)) => {
                let c = parse(&batch.data);
                assert_eq!(c.len(), batch.names.len());
                assert_eq!(c.len() as u32, batch.count);
                sizes.push(batch.data.len());
                cmds.extend(c);
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(probes, 1);
    (enc.join().unwrap().map(|_| ()), cmds, sizes)
}

#[test]
fn encoder_restores_unless_the_target_is_older_or_the_value_big() {
    // Same version, small values: RESTORE only (a string without TTL goes in an MSET run).
    let (r, cmds, _) = encode(rdb(10, &[]), TargetCaps::ALL, 1 << 20);
    r.unwrap();
    let names: Vec<&[u8]> = cmds.iter().map(|c| &c[0][..]).collect();
    assert_eq!(names, [&b"SELECT"[..], b"MSET", b"RESTORE"]);

    // An older target: every key re-created.
    let (r, cmds, _) = encode(rdb(10, &[]), OLD, 1 << 20);
    r.unwrap();
    let names: Vec<&[u8]> = cmds.iter().map(|c| &c[0][..]).collect();
    assert_eq!(
        names,
        [
            &b"SELECT"[..],
            b"DEL",
            b"SET",
            b"DEL",
            b"SADD",
            b"PEXPIREAT"
        ]
    );
    assert_eq!(
        cmds[5][1..],
        [b"bigset".to_vec(), b"4000000000000".to_vec()]
    );

    // A big set on a target that takes RESTORE: SADD chunks spanning batches, in order.
    let n = 60_000;
    let (r, cmds, sizes) = encode(rdb(n, &[]), TargetCaps::ALL, 64 * 1024);
    r.unwrap();
    assert_eq!(&cmds[1][0], b"MSET");
    assert_eq!(&cmds[2][..], &[b"DEL".to_vec(), b"bigset".to_vec()]);
    assert_eq!(&cmds.last().unwrap()[0], b"PEXPIREAT");
    let sadds: Vec<&Vec<Vec<u8>>> = cmds[3..cmds.len() - 1].iter().collect();
    assert!(sadds
        .iter()
        .all(|c| c[0] == b"SADD" && c.len() - 2 <= CHUNK_ELEMS));
    let members: Vec<&[u8]> = sadds
        .iter()
        .flat_map(|c| c[2..].iter().map(|m| &m[..]))
        .collect();
    assert_eq!(members.len(), n);
    assert_eq!(members[n - 1], format!("member-{:06}", n - 1).as_bytes());
    assert!(sizes.len() >= 3, "{sizes:?}");
    assert!(
        sizes.iter().all(|&s| s < 256 * 1024 + 64 * 1024),
        "{sizes:?}"
    );
}

#[test]
fn module_values_name_the_key_or_go_by_restore() {
    // A module value: 64-bit module id (name "cutovermd", encver 1), then EOF.
    let name = b"cutovermd";
    let mut id: u64 = 0;
    let charset = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    for c in name {
        id = (id << 6) | charset.iter().position(|x| x == c).unwrap() as u64;
    }
    id = (id << 10) | 1;
    let mut m = vec![0x81];
    m.extend_from_slice(&id.to_be_bytes());
    m.push(0);
    let data = rdb(1, &[(7, b"mod:key", m)]);

    let (r, _, _) = encode(data.clone(), OLD, 1 << 20);
    let err = r.unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(&err, SyncError::Apply { key, .. } if key == "mod:key"),
        "{err:?}"
    );
    assert!(msg.contains("cutovermd") && msg.contains("older"), "{msg}");

    // Big but the target takes RESTORE: the module value goes by RESTORE.
    let (r, cmds, _) = encode(data, TargetCaps::ALL, 0);
    r.unwrap();
    let last = cmds.last().unwrap();
    assert_eq!(
        (&last[0][..], &last[1][..]),
        (&b"RESTORE"[..], &b"mod:key"[..])
    );
}

// ----- values that arrive in parts (the reader's streaming mode) -----

/// Runs a [`PartWriter`] over `parts`: its commands as words.
fn run_parts(e: &KeyEntry, parts: Vec<ValuePart>, caps: TargetCaps) -> Vec<Vec<String>> {
    let mut sink = VecSink::default();
    let mut w = PartWriter::start(e.clone(), caps, &mut sink).unwrap();
    for p in parts {
        w.part(p, &mut sink).unwrap();
    }
    w.finish(&mut sink).unwrap();
    let cmds = parse(&sink.buf);
    assert_eq!(cmds.len(), sink.names.len());
    cmds.iter()
        .map(|c| {
            c.iter()
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect()
        })
        .collect()
}

#[test]
fn stream_in_parts_keeps_deleted_pending_entries() {
    use crate::rdb::decode::StreamMeta;
    let s = sample_stream();
    let pending = |i: usize| s.groups[0].pending[i].clone();
    let parts = vec![
        ValuePart::StreamEntries {
            entries: vec![s.entries[0].clone()],
            deleted: vec![id(3, 0)],
        },
        ValuePart::StreamEntries {
            entries: vec![s.entries[1].clone()],
            deleted: vec![id(6, 0)],
        },
        ValuePart::StreamMeta(StreamMeta {
            length: 2,
            last_id: id(9, 0),
            first_id: Some(id(1, 1)),
            max_deleted_id: Some(id(8, 0)),
            entries_added: Some(5),
        }),
        ValuePart::StreamGroup {
            name: b("g1"),
            last_id: id(5, 0),
            entries_read: Some(3),
        },
        ValuePart::StreamConsumer {
            name: b("alice"),
            seen_time_ms: 1,
            active_time_ms: None,
            pending: 2,
        },
        ValuePart::StreamPending(vec![pending(0)]),
        ValuePart::StreamPending(vec![PendingEntry {
            id: id(8, 0), // trimmed away, above every ID: a placeholder at the end
            ..pending(0)
        }]),
        ValuePart::StreamConsumer {
            name: b("bob"),
            seen_time_ms: 1,
            active_time_ms: None,
            pending: 2,
        },
        ValuePart::StreamPending(vec![
            pending(1), // flagged deleted, still in the file: its placeholder is there
            PendingEntry {
                id: id(7, 0), // below the top now: not re-created
                consumer: b("bob"),
                delivery_time_ms: 5,
                delivery_count: 1,
            },
        ]),
        ValuePart::StreamConsumer {
            name: b("idle"),
            seen_time_ms: 1,
            active_time_ms: None,
            pending: 0,
        },
        ValuePart::StreamGroup {
            name: b("g2"),
            last_id: id(0, 0),
            entries_read: None,
        },
    ];
    let got = run_parts(&entry("s", Some(77)), parts.clone(), TargetCaps::ALL);
    let want = [
        "DEL s",
        "XADD s 1-1 f v",
        "XADD s 3-0 cutover placeholder",
        "XADD s 5-0 f w x y",
        "XADD s 6-0 cutover placeholder",
        "XGROUP CREATE s g1 5-0 ENTRIESREAD 3",
        "XGROUP CREATECONSUMER s g1 alice",
        "XCLAIM s g1 alice 0 1-1 TIME 1700000000000 RETRYCOUNT 2 FORCE JUSTID",
        "XADD s 8-0 cutover placeholder",
        "XCLAIM s g1 alice 0 8-0 TIME 1700000000000 RETRYCOUNT 2 FORCE JUSTID",
        "XGROUP CREATECONSUMER s g1 bob",
        "XCLAIM s g1 bob 0 3-0 TIME 1700000000001 RETRYCOUNT 1 FORCE JUSTID",
        "XCLAIM s g1 bob 0 7-0 TIME 5 RETRYCOUNT 1 FORCE JUSTID",
        "XGROUP CREATECONSUMER s g1 idle",
        "XGROUP CREATE s g2 0-0",
        "XDEL s 3-0 6-0 8-0",
        "XSETID s 9-0 ENTRIESADDED 5 MAXDELETEDID 8-0",
        "PEXPIREAT s 77",
    ];
    assert_eq!(got, want.iter().map(|c| words(c)).collect::<Vec<_>>());

    // Before 6.2: no CREATECONSUMER; a consumer without pending entries reads its history.
    let pre62 = TargetCaps {
        create_consumer: false,
        ..OLD
    };
    let got = run_parts(&entry("s", None), parts, pre62);
    assert!(!got.iter().any(|c| c[1] == "CREATECONSUMER"));
    assert!(got.contains(&words("XREADGROUP GROUP g1 idle COUNT 1 STREAMS s 0-0")));
    assert!(got.contains(&words("XSETID s 9-0")));

    // Redis 8.6's IDMP settings: XCFGSET on a target as new, else not carried.
    use crate::rdb::decode::StreamIdmp;
    let idmp = ValuePart::StreamIdmp(StreamIdmp {
        duration_secs: 300,
        max_size: 50,
        iids_added: 7,
        iids_duplicates: 1,
    });
    let got = run_parts(&entry("s", None), vec![idmp.clone()], TargetCaps::ALL);
    assert_eq!(got[1], words("XCFGSET s IDMP-DURATION 300 IDMP-MAXSIZE 50"));
    let got = run_parts(&entry("s", None), vec![idmp], OLD);
    assert_eq!(got, vec![words("DEL s")]);

    // No entries at all: made with MKSTREAM at the metadata.
    let got = run_parts(
        &entry("e", None),
        vec![ValuePart::StreamMeta(StreamMeta {
            length: 0,
            last_id: id(7, 3),
            first_id: None,
            max_deleted_id: None,
            entries_added: None,
        })],
        TargetCaps::ALL,
    );
    let want = [
        "DEL e",
        "XGROUP CREATE e __cutover:mkstream 0 MKSTREAM",
        "XGROUP DESTROY e __cutover:mkstream",
        "XSETID e 7-3",
    ];
    assert_eq!(got, want.iter().map(|c| words(c)).collect::<Vec<_>>());
}

#[test]
fn parts_of_strings_and_hashes() {
    let got = run_parts(
        &entry("k", None),
        vec![
            ValuePart::String(b("abc")),
            ValuePart::String(b("def")),
            ValuePart::String(b("g")),
        ],
        OLD,
    );
    let want = ["DEL k", "SET k abc", "APPEND k def", "APPEND k g"];
    assert_eq!(got, want.iter().map(|c| words(c)).collect::<Vec<_>>());

    // Field TTLs per part; refused (naming the key) where the target has none.
    let parts = vec![
        ValuePart::Hash(vec![(b("a"), b("1"), None), (b("b"), b("2"), Some(9))]),
        ValuePart::Hash(vec![(b("c"), b("3"), Some(9))]),
    ];
    let got = run_parts(&entry("h", None), parts.clone(), TargetCaps::ALL);
    let want = [
        "DEL h",
        "HSET h a 1 b 2",
        "HPEXPIREAT h 9 FIELDS 1 b",
        "HSET h c 3",
        "HPEXPIREAT h 9 FIELDS 1 c",
    ];
    assert_eq!(got, want.iter().map(|c| words(c)).collect::<Vec<_>>());
    let mut sink = VecSink::default();
    let mut w = PartWriter::start(entry("h", None), OLD, &mut sink).unwrap();
    let err = w.part(parts[0].clone(), &mut sink).unwrap_err();
    assert!(
        matches!(&err, SyncError::Apply { key, .. } if key == "h"),
        "{err:?}"
    );
}

/// An RDB value of type 1 (plain list), 2, 5 or 4 with `n` elements.
fn plain_collection(t: u8, n: usize, elem: impl Fn(usize) -> Vec<u8>) -> Vec<u8> {
    let mut v = Vec::new();
    rdb_len(&mut v, n as u64);
    for i in 0..n {
        let e = elem(i);
        rdb_str(&mut v, &e);
        match t {
            5 => v.extend_from_slice(&(i as f64 / 3.0 - 100.0).to_le_bytes()),
            4 => rdb_str(&mut v, format!("value-{i}").as_bytes()),
            _ => {}
        }
    }
    v
}

#[test]
fn encoder_streams_big_values_with_the_same_commands() {
    // Values read whole and re-created (an older target), and the same values read in
    // pieces (big ones): the same commands, chunk for chunk.
    let elem = |i: usize| -> Vec<u8> {
        if i % 997 == 5 {
            vec![b'e'; 300_000] // big elements: chunks split by bytes too
        } else {
            format!("element-{i:05}").into_bytes()
        }
    };
    let mut string = Vec::new();
    rdb_str(&mut string, &vec![b's'; 3 * 1024 * 1024 + 7]);
    let extra: Vec<(u8, &[u8], Vec<u8>)> = vec![
        (1, b"list", plain_collection(1, 5000, elem)),
        (2, b"set", plain_collection(2, 4000, elem)),
        (5, b"zset", plain_collection(5, 3000, elem)),
        (4, b"hash", plain_collection(4, 2500, elem)),
        (0, b"string", string),
    ];
    let data = rdb(2500, &extra);
    let whole = TargetCaps {
        restore: false,
        ..TargetCaps::ALL
    };
    let (r, buffered, _) = encode(data.clone(), whole, usize::MAX);
    r.unwrap();
    let (r, streamed, sizes) = encode(data, whole, 4096);
    r.unwrap();
    assert_eq!(buffered.len(), streamed.len());
    for (i, (a, b)) in buffered.iter().zip(&streamed).enumerate() {
        assert!(
            a == b,
            "command {i} differs: {:?} vs {:?}",
            String::from_utf8_lossy(&a[0]),
            String::from_utf8_lossy(&b[0])
        );
    }
    // Shipped in batches of about 256 KiB (a batch ends after the command that fills it).
    assert!(sizes.len() > 10, "{sizes:?}");
    assert!(
        sizes
            .iter()
            .all(|&s| s < 256 * 1024 + CHUNK_BYTES + 64 * 1024),
        "{sizes:?}"
    );
}

#[test]
fn a_link_loads_only_the_keys_of_its_own_slots() {
    let slot_of = |k: &[u8]| cluster::slots::key_slot(k);
    let only = |k: &[u8]| crate::scope::LinkScope::new("m".into(), vec![(slot_of(k), slot_of(k))]);
    // `small` is a plain key; `bigset` (60k members, over the 64 KB bound) comes in pieces.
    let (r, cmds, _) = encode_scoped(
        rdb(60_000, &[]),
        TargetCaps::ALL,
        64 * 1024,
        Some(only(b"small")),
    );
    r.unwrap();
    let names: Vec<&[u8]> = cmds.iter().map(|c| &c[0][..]).collect();
    assert_eq!(names, [&b"SELECT"[..], b"MSET"]);
    assert_eq!(cmds[1][1], b"small");

    let (r, cmds, _) = encode_scoped(
        rdb(60_000, &[]),
        TargetCaps::ALL,
        64 * 1024,
        Some(only(b"bigset")),
    );
    r.unwrap();
    assert_eq!(&cmds[0][0], b"SELECT");
    assert!(cmds[1..].iter().all(|c| c[1] == b"bigset"));
    assert_eq!(&cmds[1][..], &[b"DEL".to_vec(), b"bigset".to_vec()]);
    assert_eq!(&cmds.last().unwrap()[0], b"PEXPIREAT");
}
