//! The RDB reader and decoder on RDB files built byte by byte here, for what neither the
//! sample files nor a Redis 6.2/7.0 server produce: hash field TTL layouts 22/23/24,
//! streams v1..v4 built by hand, text zset scores, LZF-compressed quicklist nodes, module
//! values and module key metadata, pre-GA function opcodes, old expiry and LRU/LFU
//! opcodes, big values (a 10 MB string, a 200k-field hash) across buffer boundaries, and
//! hostile lengths that must be refused without allocating. Every file is also read in
//! streaming mode (value limit 0 and 1024: see `common`), and big values of every streamed
//! type are read in pieces across part and buffer boundaries.

mod common;

use bytes::Bytes;
use sync::rdb::crc64::crc64;
use sync::rdb::decode::{decode, decode_entry, StreamId, Value, ValuePart};
use sync::rdb::{Event, KeyEntry, RdbError, RdbReader};

// ----- writing RDB pieces -----

fn len(out: &mut Vec<u8>, n: u64) {
    if n < 64 {
        out.push(n as u8);
    } else if n < 16384 {
        out.extend_from_slice(&[0x40 | (n >> 8) as u8, n as u8]);
    } else if n <= u32::MAX as u64 {
        out.push(0x80);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    } else {
        out.push(0x81);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

fn string(out: &mut Vec<u8>, s: &[u8]) {
    len(out, s.len() as u64);
    out.extend_from_slice(s);
}

/// An LZF-encoded RDB string made of literal runs only (valid LZF; the reader and decoder
/// do not care how well it compresses).
fn lzf_string(out: &mut Vec<u8>, s: &[u8]) {
    let mut c = Vec::new();
    for chunk in s.chunks(32) {
        c.push(chunk.len() as u8 - 1);
        c.extend_from_slice(chunk);
    }
    out.push(0xc3);
    len(out, c.len() as u64);
    len(out, s.len() as u64);
    out.extend_from_slice(&c);
}

enum Lp<'a> {
    I(i64),
    S(&'a [u8]),
}

/// A listpack with correct encodings and backlens.
fn listpack(items: &[Lp<'_>]) -> Vec<u8> {
    let mut body = Vec::new();
    for it in items {
        let mut e = Vec::new();
        match *it {
            Lp::I(v) if (0..=127).contains(&v) => e.push(v as u8),
            Lp::I(v) if (-4096..=4095).contains(&v) => {
                let u = (v as u64) & 0x1fff;
                e.extend_from_slice(&[0xc0 | (u >> 8) as u8, u as u8]);
            }
            Lp::I(v) if i16::try_from(v).is_ok() => {
                e.push(0xf1);
                e.extend_from_slice(&(v as i16).to_le_bytes());
            }
            Lp::I(v) if i32::try_from(v).is_ok() => {
                e.push(0xf3);
                e.extend_from_slice(&(v as i32).to_le_bytes());
            }
            Lp::I(v) => {
                e.push(0xf4);
                e.extend_from_slice(&v.to_le_bytes());
            }
            Lp::S(s) if s.len() < 64 => {
                e.push(0x80 | s.len() as u8);
                e.extend_from_slice(s);
            }
            Lp::S(s) if s.len() < 4096 => {
                e.extend_from_slice(&[0xe0 | (s.len() >> 8) as u8, s.len() as u8]);
                e.extend_from_slice(s);
            }
            Lp::S(s) => {
                e.push(0xf0);
                e.extend_from_slice(&(s.len() as u32).to_le_bytes());
                e.extend_from_slice(s);
            }
        }
        let l = e.len() as u64;
        body.extend_from_slice(&e);
        // lpEncodeBacklen, the 1..3 byte cases.
        if l <= 127 {
            body.push(l as u8);
        } else if l < 16383 {
            body.extend_from_slice(&[(l >> 7) as u8, (l & 127) as u8 | 128]);
        } else {
            body.extend_from_slice(&[
                (l >> 14) as u8,
                ((l >> 7) & 127) as u8 | 128,
                (l & 127) as u8 | 128,
            ]);
        }
    }
    body.push(0xff);
    let mut out = ((body.len() + 6) as u32).to_le_bytes().to_vec();
    out.extend_from_slice(&(items.len().min(65535) as u16).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

/// A ziplist of short strings.
fn ziplist(items: &[&[u8]]) -> Vec<u8> {
    let mut body = Vec::new();
    let mut prev = 0u8;
    for s in items {
        let start = body.len();
        body.push(prev);
        body.push(s.len() as u8); // 6-bit string length
        body.extend_from_slice(s);
        prev = (body.len() - start) as u8;
    }
    body.push(0xff);
    let mut out = ((body.len() + 10) as u32).to_le_bytes().to_vec();
    out.extend_from_slice(&0u32.to_le_bytes()); // tail offset: not checked
    out.extend_from_slice(&(items.len() as u16).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

/// An RDB file under construction.
struct Rdb(Vec<u8>);

impl Rdb {
    fn new(version: u32) -> Rdb {
        Rdb(format!("REDIS{version:04}").into_bytes())
    }
    fn op(&mut self, op: u8) -> &mut Self {
        self.0.push(op);
        self
    }
    fn raw(&mut self, b: &[u8]) -> &mut Self {
        self.0.extend_from_slice(b);
        self
    }
    fn len(&mut self, n: u64) -> &mut Self {
        len(&mut self.0, n);
        self
    }
    fn str(&mut self, s: &[u8]) -> &mut Self {
        string(&mut self.0, s);
        self
    }
    fn key(&mut self, t: u8, name: &[u8], value: &[u8]) -> &mut Self {
        self.op(t).str(name).raw(value)
    }
    fn finish(&mut self) -> Vec<u8> {
        let mut v = std::mem::take(&mut self.0);
        v.push(0xff);
        let crc = crc64(0, &v);
        v.extend_from_slice(&crc.to_le_bytes());
        v
    }
}

fn read_all(data: &[u8]) -> Result<Vec<Event>, RdbError> {
    common::check_streamed(data, 0);
    common::check_streamed(data, 1024);
    let mut r = RdbReader::new(data);
    let mut out = Vec::new();
    while let Some(e) = r.next_event()? {
        out.push(e);
    }
    assert_eq!(r.position(), data.len() as u64);
    Ok(out)
}

fn keys(events: Vec<Event>) -> Vec<KeyEntry> {
    events
        .into_iter()
        .filter_map(|e| match e {
            Event::Key(k) => Some(k),
            _ => None,
        })
        .collect()
}

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

// ----- tests -----

#[test]
fn big_string_and_big_hash() {
    // 10 MB string (crosses many buffer refills) and a 200k-field hash.
    let big: Vec<u8> = (0..10u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 16) as u8)
        .collect();
    let mut sval = Vec::new();
    string(&mut sval, &big);
    let mut hval = Vec::new();
    len(&mut hval, 200_000);
    for i in 0..200_000 {
        string(&mut hval, format!("field:{i}").as_bytes());
        string(&mut hval, format!("{i}").as_bytes());
    }
    let data = Rdb::new(10)
        .key(0, b"big", &sval)
        .key(4, b"hash", &hval)
        .finish();
    let ks = keys(read_all(&data).unwrap());
    assert_eq!(ks.len(), 2);
    assert_eq!(ks[0].value, sval);
    assert_eq!(ks[1].value, hval);
    assert_eq!(
        decode_entry(&ks[0]).unwrap(),
        Value::String(Bytes::from(big))
    );
    let Value::Hash(fields) = decode_entry(&ks[1]).unwrap() else {
        panic!()
    };
    assert_eq!(fields.len(), 200_000);
    assert_eq!(fields[123_456], (b("field:123456"), b("123456"), None));
}

#[test]
fn hash_field_ttl_layouts() {
    let min = 1_700_000_000_000i64;
    // 24: next expiry, then [ttl relative to it + 1 (0 = none)][field][value].
    let mut v24 = min.to_le_bytes().to_vec();
    len(&mut v24, 2);
    len(&mut v24, 0);
    string(&mut v24, b"a");
    string(&mut v24, b"1");
    len(&mut v24, 5);
    string(&mut v24, b"b");
    string(&mut v24, b"2");
    // 22 (7.4 RC): no next expiry, TTLs absolute.
    let mut v22 = Vec::new();
    len(&mut v22, 1);
    len(&mut v22, (min + 123) as u64);
    string(&mut v22, b"c");
    string(&mut v22, b"3");
    // 23 (7.4 RC): listpack of (field, value, absolute TTL or 0), no next expiry.
    let lp = listpack(&[
        Lp::S(b"d"),
        Lp::S(b"4"),
        Lp::I(0),
        Lp::S(b"e"),
        Lp::I(5),
        Lp::I(min + 9),
    ]);
    let mut v23 = Vec::new();
    string(&mut v23, &lp);
    // 25: next expiry + that listpack.
    let mut v25 = min.to_le_bytes().to_vec();
    string(&mut v25, &lp);
    let data = Rdb::new(12)
        .key(24, b"h24", &v24)
        .key(22, b"h22", &v22)
        .key(23, b"h23", &v23)
        .key(25, b"h25", &v25)
        .finish();
    let ks = keys(read_all(&data).unwrap());
    assert_eq!(
        decode_entry(&ks[0]).unwrap(),
        Value::Hash(vec![
            (b("a"), b("1"), None),
            (b("b"), b("2"), Some(min + 4))
        ])
    );
    assert_eq!(
        decode_entry(&ks[1]).unwrap(),
        Value::Hash(vec![(b("c"), b("3"), Some(min + 123))])
    );
    let expect = Value::Hash(vec![
        (b("d"), b("4"), None),
        (b("e"), b("5"), Some(min + 9)),
    ]);
    assert_eq!(decode_entry(&ks[2]).unwrap(), expect);
    assert_eq!(decode_entry(&ks[3]).unwrap(), expect);
}

#[test]
fn text_scores_and_plain_collections() {
    let mut z = Vec::new();
    len(&mut z, 5);
    for (m, score) in [
        (&b"a"[..], &b"\x043.19"[..]),
        (b"n", b"\xfd"),
        (b"p", b"\xfe"),
        (b"m", b"\xff"),
        (b"e", b"\x051e300"),
    ] {
        string(&mut z, m);
        z.extend_from_slice(score);
    }
    let mut z2 = Vec::new();
    len(&mut z2, 1);
    string(&mut z2, b"x");
    z2.extend_from_slice(&0.1f64.to_le_bytes());
    let mut l = Vec::new();
    len(&mut l, 3);
    string(&mut l, b"one");
    l.extend_from_slice(&[0xc0, 0xfb]); // INT8 -5
    l.extend_from_slice(&[0xc2, 0x00, 0x00, 0x00, 0x80]); // INT32 min
    let data = Rdb::new(9)
        .key(3, b"z", &z)
        .key(5, b"z2", &z2)
        .key(1, b"l", &l)
        .finish();
    let ks = keys(read_all(&data).unwrap());
    let Value::ZSet(pairs) = decode_entry(&ks[0]).unwrap() else {
        panic!()
    };
    assert_eq!(pairs[0], (b("a"), 3.19));
    assert!(pairs[1].1.is_nan());
    assert_eq!(pairs[2].1, f64::INFINITY);
    assert_eq!(pairs[3].1, f64::NEG_INFINITY);
    assert_eq!(pairs[4].1, 1e300);
    assert_eq!(
        decode_entry(&ks[1]).unwrap(),
        Value::ZSet(vec![(b("x"), 0.1)])
    );
    assert_eq!(
        decode_entry(&ks[2]).unwrap(),
        Value::List(vec![b("one"), b("-5"), b("-2147483648")])
    );
}

#[test]
fn quicklists_with_compressed_and_plain_nodes() {
    // v1: ziplist nodes, the second one LZF-compressed.
    let mut q = Vec::new();
    len(&mut q, 2);
    string(&mut q, &ziplist(&[b"a", b"b"]));
    lzf_string(
        &mut q,
        &ziplist(&[b"ccccccccccccccccccccccccccccccccccccccc", b"d"]),
    );
    // v2: a plain node, then a compressed packed node.
    let mut q2 = Vec::new();
    len(&mut q2, 2);
    len(&mut q2, 1);
    string(&mut q2, b"plain element");
    len(&mut q2, 2);
    lzf_string(
        &mut q2,
        &listpack(&[Lp::S(b"x"), Lp::I(-70000), Lp::I(i64::MAX)]),
    );
    let data = Rdb::new(10).key(14, b"q1", &q).key(18, b"q2", &q2).finish();
    let ks = keys(read_all(&data).unwrap());
    assert_eq!(
        decode_entry(&ks[0]).unwrap(),
        Value::List(vec![
            b("a"),
            b("b"),
            b("ccccccccccccccccccccccccccccccccccccccc"),
            b("d")
        ])
    );
    assert_eq!(
        decode_entry(&ks[1]).unwrap(),
        Value::List(vec![
            b("plain element"),
            b("x"),
            b("-70000"),
            b("9223372036854775807")
        ])
    );
}

/// A stream value of type `t` built by hand: one node (master 1000-0, fields f1 f2) with
/// a same-fields entry, a different-fields entry, a deleted one and another same-fields
/// one; one group with one pending entry owned by consumer c1.
fn stream_value(t: u8, idmp_producers: u64) -> Vec<u8> {
    let lp = listpack(&[
        // master entry: count, deleted, field count, fields, 0
        Lp::I(3),
        Lp::I(1),
        Lp::I(2),
        Lp::S(b"f1"),
        Lp::S(b"f2"),
        Lp::I(0),
        // flags SAMEFIELDS, ms delta, seq delta, values, element count
        Lp::I(2),
        Lp::I(0),
        Lp::I(0),
        Lp::S(b"a"),
        Lp::S(b"b"),
        Lp::I(5),
        // no flags: field count, field/value pairs
        Lp::I(0),
        Lp::I(5),
        Lp::I(1),
        Lp::I(1),
        Lp::S(b"x"),
        Lp::I(100),
        Lp::I(6),
        // deleted
        Lp::I(3),
        Lp::I(6),
        Lp::I(0),
        Lp::S(b"c"),
        Lp::S(b"d"),
        Lp::I(5),
        Lp::I(2),
        Lp::I(7),
        Lp::I(0),
        Lp::S(b"e"),
        Lp::S(b"f"),
        Lp::I(5),
    ]);
    let raw = |ms: u64, seq: u64| [ms.to_be_bytes(), seq.to_be_bytes()].concat();
    let mut v = Vec::new();
    len(&mut v, 1);
    string(&mut v, &raw(1000, 0));
    string(&mut v, &lp);
    len(&mut v, 3); // length
    len(&mut v, 1007); // last id
    len(&mut v, 0);
    if t >= 19 {
        for n in [1000, 0, 1006, 0, 4] {
            len(&mut v, n); // first id, max deleted id, entries added
        }
    }
    len(&mut v, 1); // groups
    string(&mut v, b"g");
    len(&mut v, 1005);
    len(&mut v, 1);
    if t >= 19 {
        len(&mut v, 2); // entries read
    }
    len(&mut v, 1); // PEL
    v.extend_from_slice(&raw(1005, 1));
    v.extend_from_slice(&1_700_000_000_000i64.to_le_bytes());
    len(&mut v, 2);
    len(&mut v, 1); // consumers
    string(&mut v, b"c1");
    v.extend_from_slice(&1_700_000_000_001i64.to_le_bytes());
    if t >= 21 {
        v.extend_from_slice(&1_700_000_000_002i64.to_le_bytes());
    }
    len(&mut v, 1);
    v.extend_from_slice(&raw(1005, 1));
    if t >= 26 {
        len(&mut v, 100);
        len(&mut v, 50);
        len(&mut v, idmp_producers);
        len(&mut v, 7);
        len(&mut v, 1);
    }
    v
}

#[test]
fn streams_of_every_version() {
    for t in [15u8, 19, 21, 26] {
        let value = stream_value(t, 0);
        let data = Rdb::new(13).key(t, b"s", &value).finish();
        let ks = keys(read_all(&data).unwrap());
        assert_eq!(ks[0].value, value, "type {t}");
        let Value::Stream(s) = decode_entry(&ks[0]).unwrap() else {
            panic!()
        };
        let id = |ms, seq| StreamId { ms, seq };
        let entries: Vec<(StreamId, Vec<(Bytes, Bytes)>)> =
            s.entries.iter().map(|e| (e.id, e.fields.clone())).collect();
        assert_eq!(
            entries,
            vec![
                (id(1000, 0), vec![(b("f1"), b("a")), (b("f2"), b("b"))]),
                (id(1005, 1), vec![(b("x"), b("100"))]),
                (id(1007, 0), vec![(b("f1"), b("e")), (b("f2"), b("f"))]),
            ],
            "type {t}"
        );
        assert_eq!((s.length, s.last_id), (3, id(1007, 0)));
        assert_eq!(s.first_id, (t >= 19).then_some(id(1000, 0)));
        assert_eq!(s.max_deleted_id, (t >= 19).then_some(id(1006, 0)));
        assert_eq!(s.entries_added, (t >= 19).then_some(4));
        let g = &s.groups[0];
        assert_eq!(
            (&g.name[..], g.last_id, g.entries_read),
            (&b"g"[..], id(1005, 1), (t >= 19).then_some(2))
        );
        assert_eq!(g.pending.len(), 1);
        assert_eq!(g.pending[0].id, id(1005, 1));
        assert_eq!(&g.pending[0].consumer[..], b"c1");
        assert_eq!(
            (g.pending[0].delivery_time_ms, g.pending[0].delivery_count),
            (1_700_000_000_000, 2)
        );
        assert_eq!(g.consumers[0].seen_time_ms, 1_700_000_000_001);
        assert_eq!(
            g.consumers[0].active_time_ms,
            (t >= 21).then_some(1_700_000_000_002)
        );
        assert_eq!(
            s.idmp
                .as_ref()
                .map(|i| (i.duration_secs, i.max_size, i.iids_added)),
            (t >= 26).then_some((100, 50, 7))
        );
    }
    // IDMP producer records: refused, naming the key.
    let data = Rdb::new(13)
        .key(26, b"idmp-stream", &stream_value(26, 1))
        .finish();
    match read_all(&data) {
        Err(RdbError::Unsupported {
            key,
            value_type: 26,
            ..
        }) => assert_eq!(key, "idmp-stream"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        decode(26, &stream_value(26, 1)),
        Err(RdbError::Unsupported { .. })
    ));
}

#[test]
fn modules_metadata_and_opcodes() {
    // A module value: module id, then SINT, UINT, FLOAT, DOUBLE, STRING, EOF.
    let module_id: u64 = (0x1234_5678u64 << 10) | 2;
    let mut m = Vec::new();
    len(&mut m, module_id);
    for (op, operand) in [
        (1u64, vec![0x05]),
        (2, vec![0x81, 0, 0, 0, 0, 0, 0, 1, 0]),
        (3, vec![0; 4]),
        (4, vec![0; 8]),
        (5, vec![0x03, b'a', b'b', b'c']),
    ] {
        len(&mut m, op);
        m.extend_from_slice(&operand);
    }
    len(&mut m, 0);
    let mut sval = Vec::new();
    string(&mut sval, b"v");
    let mut r = Rdb::new(13);
    r.op(250).str(b"redis-ver").str(b"8.6.0"); // AUX
    r.op(247).len(module_id).len(2).len(1).len(2).len(9).len(0); // MODULE_AUX
    r.op(246)
        .str(b"oldlib")
        .str(b"LUA")
        .len(1)
        .str(b"a description")
        .str(b"redis.register_function('f', function() end)");
    r.op(245).str(b"#!lua name=newlib\nreturn 1");
    r.op(254).len(2).op(251).len(10).len(3); // SELECTDB, RESIZEDB
    r.op(244).len(1234).len(10).len(3); // SLOT_INFO
    r.op(253).raw(&1_600_000_000i32.to_le_bytes()); // EXPIRETIME (seconds)
    r.op(248).len(5000); // IDLE
    r.op(249).raw(&[7]); // FREQ
    r.key(7, b"mod", &m);
    // KEY_META: one class, 4-byte spec, module-annotated value (UINT 5, EOF).
    r.op(243).len(1).raw(b"ABCD").len(2).len(5).len(0);
    r.op(252).raw(&1_700_000_000_123i64.to_le_bytes()); // EXPIRETIME_MS
    r.key(0, b"after-meta", &sval);
    let events = read_all(&r.finish()).unwrap();
    assert_eq!(
        events[1],
        Event::Aux {
            key: b("redis-ver"),
            value: b("8.6.0")
        }
    );
    assert_eq!(events[2], Event::ModuleAux { module_id });
    assert_eq!(
        events[3],
        Event::Function {
            code: b("#!LUA name=oldlib\nredis.register_function('f', function() end)")
        }
    );
    assert_eq!(
        events[4],
        Event::Function {
            code: b("#!lua name=newlib\nreturn 1")
        }
    );
    assert_eq!(events[5], Event::Db(2));
    assert_eq!(
        events[6],
        Event::ResizeDb {
            size: 10,
            expires: 3
        }
    );
    let Event::Key(k) = &events[7] else {
        panic!("{:?}", events[7])
    };
    assert_eq!(
        (k.db, k.value_type, k.expire_ms),
        (2, 7, Some(1_600_000_000_000))
    );
    assert_eq!(k.value, m);
    match decode_entry(k) {
        Err(RdbError::Unsupported { key, why, .. }) => {
            assert_eq!(key, "mod");
            assert!(why.contains("module type"), "{why}");
        }
        other => panic!("{other:?}"),
    }
    let Event::Key(k) = &events[8] else { panic!() };
    assert_eq!(
        (&k.key[..], k.expire_ms, &k.value[..]),
        (&b"after-meta"[..], Some(1_700_000_000_123), &sval[..])
    );
    assert!(matches!(events[9], Event::End { .. }));
}

#[test]
fn old_versions_and_length_forms() {
    // Version 4: no checksum trailer. Strings with a 32-bit and a 64-bit length form.
    let mut v = b"REDIS0004".to_vec();
    v.push(0);
    v.extend_from_slice(&[0x80, 0, 0, 0, 1, b'k']);
    v.extend_from_slice(&[0x81, 0, 0, 0, 0, 0, 0, 0, 2, b'v', b'w']);
    v.push(0xff);
    let events = read_all(&v).unwrap();
    let Event::Key(k) = &events[1] else { panic!() };
    assert_eq!(&k.key[..], b"k");
    assert_eq!(decode_entry(k).unwrap(), Value::String(b("vw")));
    assert_eq!(events[2], Event::End { checksum: 0 });
    // An LZF-compressed key.
    let mut key = Vec::new();
    lzf_string(&mut key, b"compressed-key-name");
    let mut sval = Vec::new();
    string(&mut sval, b"x");
    let mut r = Rdb::new(6);
    r.op(0).raw(&key).raw(&sval);
    let ks = keys(read_all(&r.finish()).unwrap());
    assert_eq!(&ks[0].key[..], b"compressed-key-name");
}

#[test]
fn unknown_types() {
    let mut sval = Vec::new();
    string(&mut sval, b"x");
    // A type from a newer Redis: the error names the key and its type byte.
    let data = Rdb::new(13).key(30, b"future", &sval).finish();
    match read_all(&data) {
        Err(RdbError::Unsupported {
            offset: 9,
            key,
            value_type: 30,
            ..
        }) => assert_eq!(key, "future"),
        other => panic!("{other:?}"),
    }
    // Not a type at all.
    let data = Rdb::new(13).key(100, b"junk", &sval).finish();
    assert!(matches!(
        read_all(&data),
        Err(RdbError::Corrupt { offset: 9, .. })
    ));
    // Pre-GA module values cannot be delimited.
    let data = Rdb::new(8).key(6, b"oldmod", &sval).finish();
    assert!(matches!(
        read_all(&data),
        Err(RdbError::Unsupported { value_type: 6, .. })
    ));
    // Valkey-only types are refused.
    let mut v = b"VALKEY080".to_vec();
    v.push(22);
    string(&mut v, b"vk");
    assert!(matches!(
        read_all(&v),
        Err(RdbError::Unsupported { value_type: 22, .. })
    ));
    // The reader stays failed.
    let mut r = RdbReader::new(&data[..]);
    r.next_event().unwrap();
    assert!(r.next_event().is_err());
    assert!(r.next_event().is_err());
}

#[test]
fn hostile_lengths_are_refused_without_allocating() {
    // A string claiming 2^62 bytes.
    let mut v = b"REDIS0010".to_vec();
    v.push(0);
    string(&mut v, b"k");
    v.push(0x81);
    v.extend_from_slice(&(1u64 << 62).to_be_bytes());
    v.extend_from_slice(b"short");
    match read_all(&v) {
        Err(RdbError::Corrupt { offset, what }) => {
            assert_eq!(offset, 12);
            assert!(what.contains("limit"), "{what}");
        }
        other => panic!("{other:?}"),
    }
    // An LZF string claiming to expand to a terabyte.
    let mut v = b"REDIS0010".to_vec();
    v.push(0);
    v.extend_from_slice(&[0x01, b'k', 0xc3, 0x02]);
    v.push(0x81);
    v.extend_from_slice(&(1u64 << 40).to_be_bytes());
    v.extend_from_slice(&[0x00, b'a']);
    assert!(matches!(read_all(&v), Err(RdbError::Corrupt { .. })));
    // A list claiming 2^60 elements, then the data ends: an error, quickly.
    let mut v = b"REDIS0010".to_vec();
    v.push(1);
    string(&mut v, b"k");
    v.push(0x81);
    v.extend_from_slice(&(1u64 << 60).to_be_bytes());
    string(&mut v, b"only one");
    match read_all(&v) {
        Err(RdbError::Corrupt { what, .. }) => assert!(what.contains("end"), "{what}"),
        other => panic!("{other:?}"),
    }
    // The decoder too: counts and lengths are checked against the value's size.
    let mut val = vec![0x81];
    val.extend_from_slice(&(1u64 << 60).to_be_bytes());
    assert!(matches!(decode(1, &val), Err(RdbError::Corrupt { .. })));
    assert!(matches!(
        decode(0, &[0xc3, 0x01, 0x81, 0, 0, 1, 0, 0, 0, 0, 0, 0x00]),
        Err(RdbError::Corrupt { .. })
    ));
    assert!(matches!(
        decode(0, b"\x05hello!"),
        Err(RdbError::Corrupt { offset: 6, .. })
    ));
}

#[test]
fn interrupted_and_failing_readers() {
    struct Flaky<'a>(&'a [u8], bool);
    impl std::io::Read for Flaky<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            self.1 = !self.1;
            if self.1 {
                return Err(std::io::ErrorKind::Interrupted.into());
            }
            let n = buf.len().min(self.0.len()).min(3);
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }
    let mut sval = Vec::new();
    string(&mut sval, &[b'x'; 1000]);
    let data = Rdb::new(10).key(0, b"k", &sval).finish();
    let mut r = RdbReader::new(Flaky(&data, false));
    let mut n = 0;
    while let Some(e) = r.next_event().unwrap() {
        if let Event::Key(k) = e {
            assert_eq!(k.value, sval);
        }
        n += 1;
    }
    assert_eq!(n, 3);

    struct Broken;
    impl std::io::Read for Broken {
        fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
            Err(std::io::ErrorKind::ConnectionReset.into())
        }
    }
    assert!(matches!(
        RdbReader::new(Broken).next_event(),
        Err(RdbError::Io { offset: 0, .. })
    ));
}

#[test]
fn bytes_after_the_rdb_stay_buffered() {
    let mut data = Rdb::new(10).finish();
    data.extend_from_slice(b"EOFMARK");
    let mut r = RdbReader::new(&data[..]);
    while r.next_event().unwrap().is_some() {}
    assert_eq!(r.buffered(), b"EOFMARK");
}

/// A stream of `nodes` listpack nodes of `per_node` entries (IDs n-0.. with one field
/// each; every third entry flagged deleted), one group whose PEL holds every live entry
/// with an even ms, owned by two consumers in turn, and a second group with no PEL.
fn big_stream(t: u8, nodes: u64, per_node: u64) -> Vec<u8> {
    let raw = |ms: u64, seq: u64| [ms.to_be_bytes(), seq.to_be_bytes()].concat();
    let mut v = Vec::new();
    len(&mut v, nodes);
    let mut live = Vec::new();
    let mut last = 0;
    for n in 0..nodes {
        let master = n * per_node + 1;
        let mut items = Vec::new();
        let deleted = (0..per_node).filter(|i| i % 3 == 2).count() as i64;
        items.extend([
            Lp::I(per_node as i64 - deleted),
            Lp::I(deleted),
            Lp::I(1),
            Lp::S(b"field"),
            Lp::I(0),
        ]);
        let values: Vec<String> = (0..per_node).map(|i| format!("value-{n}-{i}")).collect();
        for i in 0..per_node {
            let flags = if i % 3 == 2 { 3 } else { 2 };
            items.extend([Lp::I(flags), Lp::I(i as i64), Lp::I(0)]);
            items.push(Lp::S(values[i as usize].as_bytes()));
            items.push(Lp::I(4));
            if i % 3 != 2 {
                live.push(master + i);
            }
            last = master + i;
        }
        string(&mut v, &raw(master, 0));
        lzf_string(&mut v, &listpack(&items));
    }
    len(&mut v, live.len() as u64);
    len(&mut v, last);
    len(&mut v, 0);
    if t >= 19 {
        for x in [1, 0, last - 1, 0, last] {
            len(&mut v, x);
        }
    }
    len(&mut v, 2); // groups
    let pending: Vec<u64> = live.iter().copied().filter(|ms| ms % 2 == 0).collect();
    string(&mut v, b"readers");
    len(&mut v, last);
    len(&mut v, 0);
    if t >= 19 {
        len(&mut v, 7);
    }
    len(&mut v, pending.len() as u64);
    for (i, ms) in pending.iter().enumerate() {
        v.extend_from_slice(&raw(*ms, 0));
        v.extend_from_slice(&(1_700_000_000_000 + i as i64).to_le_bytes());
        len(&mut v, i as u64 % 5 + 1);
    }
    len(&mut v, 2); // consumers
    for c in 0..2u64 {
        string(&mut v, format!("consumer-{c}").as_bytes());
        v.extend_from_slice(&1_600_000_000_000i64.to_le_bytes());
        if t >= 21 {
            v.extend_from_slice(&1_600_000_000_001i64.to_le_bytes());
        }
        let mine: Vec<u64> = pending
            .iter()
            .copied()
            .enumerate()
            .filter(|(i, _)| (i % 4 == 3) == (c == 1))
            .map(|(_, ms)| ms)
            .collect();
        len(&mut v, mine.len() as u64);
        for ms in mine {
            v.extend_from_slice(&raw(ms, 0));
        }
    }
    string(&mut v, b"idle");
    len(&mut v, 0);
    len(&mut v, 0);
    if t >= 19 {
        len(&mut v, u64::MAX);
    }
    len(&mut v, 0);
    len(&mut v, 1);
    string(&mut v, b"nobody");
    v.extend_from_slice(&5i64.to_le_bytes());
    if t >= 21 {
        v.extend_from_slice(&6i64.to_le_bytes());
    }
    len(&mut v, 0);
    if t >= 26 {
        for x in [60, 100, 0, 0, 0] {
            len(&mut v, x);
        }
    }
    v
}

#[test]
fn big_values_of_every_streamed_type_in_pieces() {
    // A 3 MB LZF string with back references near and far, and an incompressible one.
    let text: Vec<u8> = (0..3_000_000u32)
        .map(|i| {
            let x = i.wrapping_mul(2_654_435_761) >> 13;
            if x % 5 == 0 {
                b'a' + (x % 26) as u8
            } else {
                b"the quick brown fox jumps over the lazy dog "[(i % 44) as usize]
            }
        })
        .collect();
    let c = common::lzf_compress(&text);
    assert!(c.len() < text.len() / 2, "{} of {}", c.len(), text.len());
    let mut lzf = vec![0xc3];
    len(&mut lzf, c.len() as u64);
    len(&mut lzf, text.len() as u64);
    lzf.extend_from_slice(&c);
    assert_eq!(
        decode(0, &lzf).unwrap(),
        Value::String(Bytes::from(text.clone()))
    );
    let noise: Vec<u8> = (0..2_500_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect();
    let mut raw = Vec::new();
    string(&mut raw, &noise);

    // Plain collections of 5000 elements, some of them big (past a part's byte size).
    let n = 5000u64;
    let big_elem = vec![b'E'; 600_000];
    let elem = |i: u64| -> Vec<u8> {
        if i % 1700 == 3 {
            big_elem.clone()
        } else {
            format!("element-{i}").into_bytes()
        }
    };
    let counted = |n: u64| {
        let mut v = Vec::new();
        len(&mut v, n);
        v
    };
    let mut l1 = counted(2 * n);
    let (mut set, mut z3, mut z5, mut h4) = (counted(n), counted(n), counted(n), counted(n));
    let mut h24 = 1_700_000_000_000i64.to_le_bytes().to_vec();
    h24.extend_from_slice(&counted(n));
    let mut h22 = counted(n);
    for i in 0..n {
        let e = elem(i);
        string(&mut l1, &e);
        l1.extend_from_slice(&[0xc0, i as u8]); // and an INT8 element
        string(&mut set, &e);
        string(&mut z3, &e);
        let score = match i % 4 {
            0 => b"\xfd".to_vec(),
            1 => b"\xfe".to_vec(),
            2 => b"\xff".to_vec(),
            _ => {
                let t = format!("{}", i as f64 / 7.0);
                [vec![t.len() as u8], t.into_bytes()].concat()
            }
        };
        z3.extend_from_slice(&score);
        string(&mut z5, &e);
        z5.extend_from_slice(&(i as f64 * -1e300).to_le_bytes());
        string(&mut h4, format!("field-{i}").as_bytes());
        string(&mut h4, &e);
        len(&mut h24, if i % 2 == 0 { 0 } else { i + 1 });
        string(&mut h24, format!("field-{i}").as_bytes());
        string(&mut h24, &e);
        len(&mut h22, if i % 3 == 0 { 0 } else { 1_800_000_000_000 + i });
        string(&mut h22, format!("field-{i}").as_bytes());
        string(&mut h22, &e);
    }

    // Quicklists: v1 ziplist nodes (some compressed), v2 packed and plain nodes.
    let mut q14 = Vec::new();
    len(&mut q14, 400);
    let mut q18 = Vec::new();
    len(&mut q18, 400);
    for node in 0..400u64 {
        let items: Vec<Vec<u8>> = (0..7)
            .map(|i| format!("q{node}-{i}").into_bytes())
            .collect();
        let refs: Vec<&[u8]> = items.iter().map(|v| &v[..]).collect();
        if node % 2 == 0 {
            string(&mut q14, &ziplist(&refs));
        } else {
            lzf_string(&mut q14, &ziplist(&refs));
        }
        if node % 50 == 7 {
            len(&mut q18, 1);
            string(&mut q18, &big_elem);
        } else {
            len(&mut q18, 2);
            let lp: Vec<Lp<'_>> = items
                .iter()
                .map(|v| Lp::S(&v[..]))
                .chain([Lp::I(node as i64 * 1000)])
                .collect();
            lzf_string(&mut q18, &listpack(&lp));
        }
    }

    let mut r = Rdb::new(12);
    r.op(254).len(0);
    r.op(252).raw(&1_900_000_000_000i64.to_le_bytes());
    r.key(0, b"lzf-string", &lzf).key(0, b"raw-string", &raw);
    r.op(254).len(5);
    r.key(1, b"list-1", &l1)
        .key(2, b"set", &set)
        .key(3, b"zset-3", &z3)
        .key(5, b"zset-5", &z5)
        .key(4, b"hash", &h4)
        .key(24, b"hash-24", &h24)
        .key(22, b"hash-22", &h22)
        .key(14, b"quicklist", &q14)
        .key(18, b"quicklist-2", &q18);
    for t in [15u8, 19, 21, 26] {
        r.key(t, format!("stream-{t}").as_bytes(), &big_stream(t, 60, 90));
    }
    let mut small = Vec::new();
    string(&mut small, b"small");
    r.key(0, b"small", &small);
    let data = r.finish();

    // Every value above the limit is streamed (checked inside): all 16 with limit 0, all but
    // the small string with 1024, the big ones with 1 MiB.
    for (limit, values) in [(0, 16), (1024, 15), (1 << 20, 10)] {
        let seen = common::check_streamed(&data, limit);
        let n: usize = seen.values.values().sum();
        assert!(n >= values, "limit {limit}: {seen:?}");
        assert!(seen.parts > 50, "{seen:?}");
    }
    // The stream's pieces: entries with the deleted ones, meta, groups, consumers and
    // pending entries (over 1000: in several pieces).
    let mut rd = RdbReader::new(&data[..]);
    rd.set_value_limit(1024);
    let mut kinds = std::collections::BTreeMap::<String, usize>::new();
    let mut streaming = false;
    while let Some(ev) = rd.next_event().unwrap() {
        match ev {
            Event::BigValueStart { key, .. } => streaming = &key[..] == b"stream-21",
            Event::BigValueChunk(p) if streaming => {
                let name = format!("{p:?}");
                let name = name.split([' ', '(', '{']).next().unwrap().to_owned();
                *kinds.entry(name).or_default() += 1;
                if let ValuePart::StreamEntries { deleted, .. } = &*p {
                    assert!(!deleted.is_empty());
                }
            }
            _ => {}
        }
    }
    assert_eq!(kinds["StreamMeta"], 1, "{kinds:?}");
    assert_eq!(kinds["StreamGroup"], 2, "{kinds:?}");
    assert_eq!(kinds["StreamConsumer"], 3, "{kinds:?}");
    assert!(kinds["StreamPending"] >= 2, "{kinds:?}");
    assert!(kinds["StreamEntries"] >= 4, "{kinds:?}");
}

#[test]
fn broken_values_in_streaming_mode() {
    // Cut anywhere, or with a byte changed, a file read in pieces gives an error or the same
    // events as read whole, never a panic.
    let mut h = Vec::new();
    len(&mut h, 300);
    for i in 0..300 {
        string(&mut h, format!("f{i}").as_bytes());
        string(&mut h, format!("v{i}").as_bytes());
    }
    let text: Vec<u8> = b"abcabcabd".repeat(500);
    let c = common::lzf_compress(&text);
    let mut lzf = vec![0xc3];
    len(&mut lzf, c.len() as u64);
    len(&mut lzf, text.len() as u64);
    lzf.extend_from_slice(&c);
    let mut data = Rdb::new(10)
        .key(4, b"h", &h)
        .key(0, b"s", &lzf)
        .key(15, b"st", &big_stream(15, 3, 10))
        .finish();
    // Checksum disabled, so that changed bytes are read as values.
    let n = data.len();
    data[n - 8..].fill(0);
    common::check_streamed(&data, 16);
    for cut in (0..data.len()).step_by(7) {
        common::check_streamed(&data[..cut], 16);
    }
    let mut read = 0;
    for at in (9..data.len() - 9).step_by(3) {
        let mut bad = data.clone();
        bad[at] ^= 0x5a;
        read += usize::from(!common::check_streamed(&bad, 16).values.is_empty());
    }
    // Many changed files still read (a changed byte inside a string, an ID, a count...).
    assert!(read > 100, "{read}");
}
