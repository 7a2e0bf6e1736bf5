//! Every reader error names the byte of the RDB where the problem was found.

use super::*;
use crate::rdb::crc64::crc64;

const HEADER: &[u8] = b"REDIS0010";

/// A raw RDB string (length < 64).
fn string(out: &mut Vec<u8>, s: &[u8]) {
    assert!(s.len() < 64);
    out.push(s.len() as u8);
    out.extend_from_slice(s);
}

/// A string key `k` = `v`.
fn string_key(out: &mut Vec<u8>, k: &[u8], v: &[u8]) {
    out.push(T_STRING);
    string(out, k);
    string(out, v);
}

/// EOF opcode and the checksum of everything before it.
fn finish(mut data: Vec<u8>) -> Vec<u8> {
    data.push(OP_EOF);
    let crc = crc64(0, &data);
    data.extend_from_slice(&crc.to_le_bytes());
    data
}

/// Reads to the end or the first error.
fn read(data: &[u8], limit: Option<u64>) -> Result<Vec<Event>, RdbError> {
    let mut r = RdbReader::new(data);
    if let Some(l) = limit {
        r.set_value_limit(l);
    }
    let mut out = Vec::new();
    while let Some(e) = r.next_event()? {
        out.push(e);
    }
    Ok(out)
}

fn err(data: &[u8]) -> RdbError {
    match read(data, None) {
        Err(e) => e,
        Ok(evs) => panic!("read without an error: {} events", evs.len()),
    }
}

#[test]
fn bad_magic_names_the_first_wrong_byte() {
    for (data, at) in [
        (&b"RUBBISH00"[..], 1),
        (b"xy", 0),
        (b"REDIS00x9\xff", 7),
        (b"VALKEX080", 5),
        (b"VALKEY0a", 7),
    ] {
        match err(data) {
            RdbError::BadMagic { offset } => assert_eq!(offset, at, "{data:?}"),
            e => panic!("{data:?}: {e}"),
        }
    }
    // What could be the start of a header is a file that ends early.
    match err(b"REDIS00") {
        RdbError::Corrupt { offset: 7, what } => assert!(what.contains("end"), "{what}"),
        e => panic!("{e}"),
    }
    let e = err(b"RUBBISH00");
    assert_eq!(e.offset(), 1);
    assert!(e.to_string().contains("at byte 1"), "{e}");
}

#[test]
fn an_unsupported_version_names_its_digits() {
    assert!(matches!(
        err(b"REDIS0014\xff"),
        RdbError::Version {
            offset: 5,
            version: 14
        }
    ));
    assert!(matches!(
        err(b"VALKEY090\xff"),
        RdbError::Version {
            offset: 6,
            version: 90
        }
    ));
}

#[test]
fn unknown_and_unsupported_types_name_the_type_byte() {
    // Header (0..9), SELECTDB 0 (9, 10), a key (11..), then the type byte.
    let mut data = HEADER.to_vec();
    data.extend_from_slice(&[OP_SELECTDB, 0]);
    string_key(&mut data, b"k", b"v");
    let type_at = data.len() as u64;
    let mut junk = data.clone();
    junk.push(100);
    string(&mut junk, b"x");
    match err(&finish(junk)) {
        RdbError::Corrupt { offset, what } => {
            assert_eq!(offset, type_at);
            assert!(what.contains("100"), "{what}");
        }
        e => panic!("{e}"),
    }
    // A type of a newer Redis: the key is named too.
    let mut newer = data.clone();
    newer.push(30);
    string(&mut newer, b"future");
    string(&mut newer, b"x");
    let e = err(&finish(newer));
    match &e {
        RdbError::Unsupported {
            offset,
            value_type: 30,
            key,
            ..
        } => {
            assert_eq!(*offset, type_at);
            assert_eq!(key, "future");
        }
        e => panic!("{e}"),
    }
    assert!(e.to_string().contains(&format!("at byte {type_at}")), "{e}");
}

#[test]
fn a_checksum_mismatch_names_the_checksum() {
    let mut data = HEADER.to_vec();
    string_key(&mut data, b"k", b"v");
    let mut data = finish(data);
    let n = data.len();
    data[n - 1] ^= 1;
    match err(&data) {
        RdbError::Checksum {
            offset,
            expected,
            actual,
        } => {
            assert_eq!(offset, n as u64 - 8);
            assert_ne!(expected, actual);
        }
        e => panic!("{e}"),
    }
}

#[test]
fn an_early_end_and_a_failing_stream_name_where_they_stopped() {
    let mut data = HEADER.to_vec();
    data.push(T_STRING);
    string(&mut data, b"k");
    data.extend_from_slice(&[5, b'a', b'b']);
    match err(&data) {
        RdbError::Corrupt { offset, what } => {
            assert_eq!(offset, data.len() as u64);
            assert!(what.contains("end"), "{what}");
        }
        e => panic!("{e}"),
    }

    /// Hands out its bytes, then fails.
    struct Failing<'a>(&'a [u8]);
    impl Read for Failing<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.0.is_empty() {
                return Err(std::io::ErrorKind::ConnectionReset.into());
            }
            let n = buf.len().min(self.0.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }
    let mut r = RdbReader::new(Failing(&data));
    assert!(matches!(r.next_event(), Ok(Some(Event::Header { .. }))));
    match r.next_event() {
        Err(RdbError::Io { offset, .. }) => assert_eq!(offset, data.len() as u64),
        other => panic!("{other:?}"),
    }
}

#[test]
fn offsets_stay_true_past_the_first_buffer_and_after_a_replay() {
    // Enough keys to refill the buffer several times, then a bad type byte.
    let mut data = HEADER.to_vec();
    let v = [b'v'; 60];
    let mut i = 0u32;
    while data.len() < 3 * BUF_SIZE + 1000 {
        string_key(&mut data, format!("key:{i}").as_bytes(), &v);
        i += 1;
    }
    let type_at = data.len() as u64;
    data.push(100);
    string(&mut data, b"x");
    let data = finish(data);
    assert_eq!(err(&data).offset(), type_at);

    // A list read in streaming mode (the value limit is small), then a bad type byte: the
    // replay of the list's start does not shift the offsets.
    let mut data = HEADER.to_vec();
    data.push(T_LIST);
    string(&mut data, b"list");
    data.push(50); // elements
    for j in 0..50 {
        string(&mut data, format!("element {j:>40}").as_bytes());
    }
    let type_at = data.len() as u64;
    data.push(100);
    string(&mut data, b"x");
    let data = finish(data);
    let mut r = RdbReader::new(&data[..]);
    r.set_value_limit(64);
    let mut streamed = false;
    let e = loop {
        match r.next_event() {
            Ok(Some(Event::BigValueStart { .. })) => streamed = true,
            Ok(Some(_)) => {}
            Ok(None) => panic!("read without an error"),
            Err(e) => break e,
        }
    };
    assert!(streamed);
    assert_eq!(e.offset(), type_at, "{e}");
}

#[test]
fn decoder_offsets_move_into_the_file() {
    let e = crate::rdb::decode::decode(0, b"\x05hello!").unwrap_err();
    assert_eq!(e.offset(), 6);
    let e = e.in_file(100);
    assert!(matches!(e, RdbError::Corrupt { offset: 106, .. }), "{e}");
}
