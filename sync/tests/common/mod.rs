//! Shared by the RDB tests: the reader's streaming mode against its plain mode. A file is
//! read once with whole values and once with a value limit (fed in odd-sized pieces so
//! that replays and refills meet every boundary); every value above the limit must come out
//! in bounded pieces that put together equal what `decode` gives for the whole value, and
//! everything else must be identical, the checksum included.

#![allow(dead_code)]

use sync::rdb::decode::{decode_entry, Assembler, Value, ValuePart, PART_BYTES, PART_ELEMS};
use sync::rdb::{Event, RdbError, RdbReader};

/// The types the reader streams.
pub fn streamable(t: u8) -> bool {
    matches!(t, 0..=5 | 14 | 15 | 18 | 19 | 21 | 22 | 24 | 26)
}

/// Feeds a slice in pieces of varying sizes (1 byte to 64 KiB + 1).
pub struct Pieces<'a> {
    data: &'a [u8],
    n: usize,
}

impl<'a> Pieces<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Pieces { data, n: 0 }
    }
}

impl std::io::Read for Pieces<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        const SIZES: [usize; 8] = [1, 7, 3, 4096 + 5, 2, 65_537, 13, 300_001];
        self.n += 1;
        let n = SIZES[self.n % SIZES.len()]
            .min(buf.len())
            .min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

/// The events, and where the reader stopped.
fn read(data: &[u8], limit: Option<u64>) -> Result<(Vec<Event>, u64), RdbError> {
    let mut r = RdbReader::new(Pieces::new(data));
    if let Some(l) = limit {
        r.set_value_limit(l);
    }
    let mut out = Vec::new();
    while let Some(e) = r.next_event()? {
        out.push(e);
    }
    Ok((out, r.position()))
}

/// Equal values, NaN scores equal to each other; a stream group's pending entries compared
/// in ID order (streaming mode hands them out by consumer).
pub fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Stream(x), Value::Stream(y)) => {
            let sorted = |s: &sync::rdb::decode::StreamValue| {
                let mut s = s.clone();
                for g in &mut s.groups {
                    g.pending.sort_by_key(|p| p.id);
                }
                s
            };
            sorted(x) == sorted(y)
        }
        (Value::ZSet(x), Value::ZSet(y)) => {
            x.len() == y.len()
                && x.iter().zip(y).all(|((m1, s1), (m2, s2))| {
                    m1 == m2 && (s1.to_bits() == s2.to_bits() || (s1.is_nan() && s2.is_nan()))
                })
        }
        _ => a == b,
    }
}

/// Checks one part's bounds.
fn check_part(p: &ValuePart) {
    let n = match p {
        ValuePart::String(s) => {
            assert!(!s.is_empty(), "empty string part");
            assert!(s.len() <= PART_BYTES, "string part of {} bytes", s.len());
            1
        }
        ValuePart::List(v) | ValuePart::Set(v) => v.len(),
        ValuePart::ZSet(v) => v.len(),
        ValuePart::Hash(v) => v.len(),
        ValuePart::StreamEntries { entries, deleted } => entries.len() + deleted.len(),
        ValuePart::StreamPending(v) => v.len(),
        _ => 1,
    };
    assert!((1..=PART_ELEMS).contains(&n), "part of {n} elements");
}

/// What [`check_streamed`] saw.
#[derive(Debug, Default)]
pub struct Streamed {
    /// Values read in pieces, by type.
    pub values: std::collections::BTreeMap<u8, usize>,
    /// Pieces handed out.
    pub parts: usize,
    /// The largest serialized value read in pieces.
    pub biggest: usize,
}

/// Reads `data` whole and with `limit`, and compares (panics on a difference). A file the
/// plain read refuses must be refused in streaming mode too; one whose values don't all
/// decode may be refused in streaming mode (it decodes while reading).
pub fn check_streamed(data: &[u8], limit: u64) -> Streamed {
    let mut seen = Streamed::default();
    let (whole, end) = match read(data, None) {
        Ok(ev) => ev,
        Err(e) => {
            let r = read(data, Some(limit));
            assert!(r.is_err(), "read whole: {e}; in pieces: fine");
            return seen;
        }
    };
    let (streamed, streamed_end) = match read(data, Some(limit)) {
        Ok(ev) => ev,
        Err(e) => {
            let undecodable = whole.iter().any(|ev| match ev {
                Event::Key(k) => {
                    streamable(k.value_type)
                        && k.value.len() as u64 > limit
                        && decode_entry(k).is_err()
                }
                _ => false,
            });
            assert!(
                undecodable,
                "refused in streaming mode (limit {limit}) only: {e}"
            );
            return seen;
        }
    };
    assert_eq!(end, streamed_end, "stopped elsewhere in streaming mode");
    let mut it = streamed.into_iter();
    for ev in &whole {
        let got = it.next();
        let Event::Key(k) = ev else {
            assert_eq!(got.as_ref(), Some(ev));
            continue;
        };
        match got {
            Some(Event::Key(k2)) => {
                assert_eq!(&k2, k);
                assert!(
                    !streamable(k.value_type) || k.value.len() as u64 <= limit,
                    "{:?} (type {}, {} bytes) not streamed with limit {limit}",
                    k.key,
                    k.value_type,
                    k.value.len()
                );
            }
            Some(Event::BigValueStart {
                db,
                key,
                expire_ms,
                value_type,
            }) => {
                assert_eq!(
                    (db, &key, expire_ms, value_type),
                    (k.db, &k.key, k.expire_ms, k.value_type)
                );
                assert!(streamable(value_type) && k.value.len() as u64 > limit);
                let mut asm = Assembler::new(value_type).unwrap();
                loop {
                    match it.next() {
                        Some(Event::BigValueChunk(p)) => {
                            check_part(&p);
                            seen.parts += 1;
                            asm.push(*p).unwrap();
                        }
                        Some(Event::BigValueEnd) => break,
                        other => panic!("{:?}: {other:?} inside a streamed value", k.key),
                    }
                }
                let got = asm.finish();
                let want = decode_entry(k).unwrap();
                assert!(
                    same_value(&got, &want),
                    "{:?} (type {}) differs when streamed",
                    k.key,
                    k.value_type
                );
                *seen.values.entry(value_type).or_default() += 1;
                seen.biggest = seen.biggest.max(k.value.len());
            }
            other => panic!("{:?}: {other:?} instead", k.key),
        }
    }
    assert_eq!(it.next(), None);
    seen
}

/// An LZF compressor (greedy, 3-byte hash of the last position): real back references,
/// near and far (up to the 8 KiB window), short and long (up to 264 bytes).
pub fn lzf_compress(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut last: std::collections::HashMap<[u8; 3], usize> = Default::default();
    let mut lit: Vec<u8> = Vec::new();
    let flush = |out: &mut Vec<u8>, lit: &mut Vec<u8>| {
        for c in lit.chunks(32) {
            out.push(c.len() as u8 - 1);
            out.extend_from_slice(c);
        }
        lit.clear();
    };
    let mut i = 0;
    while i < input.len() {
        let m = (i + 3 <= input.len())
            .then(|| {
                let k = [input[i], input[i + 1], input[i + 2]];
                let prev = last.insert(k, i)?;
                let dist = i - prev;
                (dist <= 8192).then_some(prev)
            })
            .flatten();
        let len = m.map_or(0, |p| {
            let mut l = 0;
            while i + l < input.len() && input[p + l] == input[i + l] && l < 264 {
                l += 1;
            }
            l
        });
        if len >= 3 {
            flush(&mut out, &mut lit);
            let dist = i - m.unwrap() - 1;
            let l = len - 2;
            if l < 7 {
                out.push(((l as u8) << 5) | (dist >> 8) as u8);
            } else {
                out.push((7 << 5) | (dist >> 8) as u8);
                out.push((l - 7) as u8);
            }
            out.push(dist as u8);
            for j in i + 1..(i + len).min(input.len().saturating_sub(2)) {
                last.insert([input[j], input[j + 1], input[j + 2]], j);
            }
            i += len;
        } else {
            lit.push(input[i]);
            i += 1;
        }
    }
    flush(&mut out, &mut lit);
    out
}
