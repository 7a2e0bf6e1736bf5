use super::*;
use crate::rdb::{Event, KeyEntry, RdbReader};
use crate::source::nodes::{bulk, integer};

fn entry(db: u32, key: &str, value_type: u8, value: Vec<u8>, expire_ms: Option<i64>) -> KeyEntry {
    KeyEntry {
        db,
        key: Bytes::from(key.to_string()),
        expire_ms,
        value_type,
        value: Bytes::from(value),
    }
}

/// A string value as an RDB string (length + bytes).
fn string_value(s: &[u8]) -> Vec<u8> {
    let mut b = BytesMut::new();
    write_len(&mut b, s.len() as u64);
    b.extend_from_slice(s);
    b.to_vec()
}

#[test]
fn dump_payloads_make_an_rdb_the_reader_takes_back_exactly() {
    let long_key = "k".repeat(20_000);
    let entries = vec![
        entry(0, "a", 0, string_value(b"one"), None),
        entry(
            0,
            &long_key,
            0,
            string_value(&vec![b'x'; 300]),
            Some(4_102_444_800_000),
        ),
        entry(3, "b", 0, string_value(b""), None),
    ];
    let mut out = RdbOut::new();
    let mut file = Vec::new();
    for e in &entries {
        let payload = e.restore_payload(11);
        out.key(e.db, &e.key, &payload, e.expire_ms.unwrap_or(0))
            .unwrap();
        file.extend_from_slice(&out.take());
    }
    file.extend_from_slice(&out.finish());
    let mut rd = RdbReader::new(&file[..]);
    let mut got = Vec::new();
    let mut header = None;
    let mut end = None;
    while let Some(ev) = rd.next_event().unwrap() {
        match ev {
            Event::Header { version } => header = Some(version),
            Event::Key(k) => got.push(k),
            Event::End { checksum } => end = Some(checksum),
            _ => {}
        }
    }
    assert_eq!(header, Some(11));
    assert_eq!(got, entries);
    assert!(end.is_some_and(|c| c != 0), "a real checksum, verified");
}

#[test]
fn an_empty_source_is_an_empty_rdb() {
    let mut out = RdbOut::new();
    let file = out.finish();
    let mut rd = RdbReader::new(&file[..]);
    assert_eq!(rd.next_event().unwrap(), Some(Event::Header { version: 9 }));
    assert!(matches!(rd.next_event().unwrap(), Some(Event::End { .. })));
}

#[test]
fn payloads_of_two_versions_are_refused() {
    let mut out = RdbOut::new();
    let a = entry(0, "a", 0, string_value(b"1"), None);
    out.key(0, b"a", &a.restore_payload(10), 0).unwrap();
    assert!(out.key(0, b"b", &a.restore_payload(11), 0).is_err());
    assert!(out.key(0, b"c", b"short", 0).is_err());
}

#[test]
fn stream_commands_select_once_per_db_and_keep_ttls_absolute() {
    let mut s = StreamOut {
        buf: BytesMut::new(),
        db: None,
        produced: 0,
    };
    s.restore(2, b"k", b"PAYLOAD", 1234);
    s.restore(2, b"n", b"P", 0);
    s.del(2, b"gone");
    s.barrier(Barrier::Swap(0, 1));
    s.barrier(Barrier::Flush(None));
    let b = s.take().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&b),
        "*2\r\n$6\r\nSELECT\r\n$1\r\n2\r\n\
         *6\r\n$7\r\nRESTORE\r\n$1\r\nk\r\n$4\r\n1234\r\n$7\r\nPAYLOAD\r\n$6\r\nABSTTL\r\n$7\r\nREPLACE\r\n\
         *5\r\n$7\r\nRESTORE\r\n$1\r\nn\r\n$1\r\n0\r\n$1\r\nP\r\n$7\r\nREPLACE\r\n\
         *2\r\n$3\r\nDEL\r\n$4\r\ngone\r\n\
         *2\r\n$6\r\nSELECT\r\n$1\r\n0\r\n*1\r\n$7\r\nFLUSHDB\r\n\
         *2\r\n$6\r\nSELECT\r\n$1\r\n1\r\n*1\r\n$7\r\nFLUSHDB\r\n\
         *1\r\n$8\r\nFLUSHALL\r\n"
    );
    assert_eq!(s.produced, b.len() as i64);
    assert!(s.take().is_none());
}

#[test]
fn replies_are_read_as_redis_sends_them() {
    assert_eq!(bulk(b"$3\r\nabc\r\n"), Some(&b"abc"[..]));
    assert_eq!(bulk(b"$-1\r\n"), None);
    assert_eq!(bulk(b"$5\r\nab\r\n"), None);
    assert_eq!(integer(b":-2\r\n"), Some(-2));
    assert_eq!(integer(b"$1\r\n1\r\n"), None);
}

#[test]
fn function_libraries_come_first_as_the_rdb_carries_them() {
    // FUNCTION2 opcode, then the library code as an RDB string; version 10 and a CRC.
    let code = b"#!lua name=lib\nredis.register_function('f', function() return 1 end)";
    let mut payload = vec![0xF5];
    payload.extend_from_slice(&string_value(code));
    payload.extend_from_slice(&10u16.to_le_bytes());
    payload.extend_from_slice(&[0; 8]);
    let mut out = RdbOut::new();
    out.functions(&payload).unwrap();
    let e = entry(0, "a", 0, string_value(b"1"), None);
    out.key(0, b"a", &e.restore_payload(10), 0).unwrap();
    let mut file = out.take().to_vec();
    file.extend_from_slice(&out.finish());
    let mut rd = RdbReader::new(&file[..]);
    assert_eq!(
        rd.next_event().unwrap(),
        Some(Event::Header { version: 10 })
    );
    assert_eq!(
        rd.next_event().unwrap(),
        Some(Event::Function {
            code: Bytes::from_static(code)
        })
    );
    // No libraries: nothing written.
    let mut empty = RdbOut::new();
    empty.functions(&[0x0a, 0, 1, 2, 3, 4, 5, 6, 7, 8]).unwrap();
    assert_eq!(empty.len(), 0);
}
