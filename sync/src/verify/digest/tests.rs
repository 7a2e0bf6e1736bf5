use super::*;
use bytes::{BufMut, Bytes, BytesMut};

/// An RDB length (6-bit / 14-bit forms are enough here).
fn len(out: &mut BytesMut, n: usize) {
    if n < 64 {
        out.put_u8(n as u8);
    } else {
        out.put_u8(0x40 | (n >> 8) as u8);
        out.put_u8(n as u8);
    }
}

fn string(out: &mut BytesMut, s: &[u8]) {
    len(out, s.len());
    out.extend_from_slice(s);
}

/// A DUMP payload: type, value, version 10, a (not checked here) CRC.
fn payload(t: u8, value: &BytesMut) -> Bytes {
    let mut p = BytesMut::new();
    p.put_u8(t);
    p.extend_from_slice(value);
    p.put_u16_le(10);
    p.put_u64_le(0);
    p.freeze()
}

fn set(members: &[&str]) -> Bytes {
    let mut v = BytesMut::new();
    len(&mut v, members.len());
    for m in members {
        string(&mut v, m.as_bytes());
    }
    payload(2, &v)
}

fn zset(pairs: &[(&str, f64)]) -> Bytes {
    let mut v = BytesMut::new();
    len(&mut v, pairs.len());
    for (m, s) in pairs {
        string(&mut v, m.as_bytes());
        v.put_f64_le(*s);
    }
    payload(5, &v)
}

fn hash(fields: &[(&str, &str)]) -> Bytes {
    let mut v = BytesMut::new();
    len(&mut v, fields.len());
    for (f, x) in fields {
        string(&mut v, f.as_bytes());
        string(&mut v, x.as_bytes());
    }
    payload(4, &v)
}

fn list(items: &[&str]) -> Bytes {
    let mut v = BytesMut::new();
    len(&mut v, items.len());
    for i in items {
        string(&mut v, i.as_bytes());
    }
    payload(1, &v)
}

fn d(p: &Bytes) -> Digest {
    of_payload(p).unwrap()
}

#[test]
fn sets_and_hashes_compare_by_content_not_order() {
    assert_eq!(d(&set(&["a", "b", "c"])), d(&set(&["c", "a", "b"])));
    assert_ne!(d(&set(&["a", "b"])), d(&set(&["a", "b", "c"])));
    assert_eq!(
        d(&hash(&[("f", "1"), ("g", "2")])),
        d(&hash(&[("g", "2"), ("f", "1")]))
    );
    assert_ne!(
        d(&hash(&[("f", "1"), ("g", "2")])),
        d(&hash(&[("f", "1"), ("g", "3")]))
    );
}

#[test]
fn lists_keep_their_order_and_scores_their_bits() {
    assert_ne!(d(&list(&["a", "b"])), d(&list(&["b", "a"])));
    let one = 1.5f64;
    let next = f64::from_bits(one.to_bits() + 1);
    assert_ne!(d(&zset(&[("m", one)])), d(&zset(&[("m", next)])));
    assert_eq!(
        d(&zset(&[("a", 1.0), ("b", 2.0)])),
        d(&zset(&[("b", 2.0), ("a", 1.0)]))
    );
}

#[test]
fn the_kind_is_told_apart_from_the_contents() {
    assert_eq!(d(&set(&["a"])).kind, Kind::Set);
    assert_eq!(d(&list(&["a"])).kind, Kind::List);
    assert_ne!(d(&set(&["a"])).hash, d(&list(&["a"])).hash);
    assert!(of_payload(b"short").is_err());
}
