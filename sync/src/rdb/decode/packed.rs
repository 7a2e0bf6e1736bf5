//! Parsers for Redis's compact in-memory encodings as they appear inside RDB strings:
//! listpack (src/listpack.c), ziplist (src/ziplist.c), intset (src/intset.c) and zipmap
//! (src/zipmap.c). Input is untrusted: every read is bounds-checked and the header's own
//! byte count must match the blob, as Redis's integrity checks require.

use bytes::Bytes;

/// One element of a listpack or ziplist: both store small integers in binary.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Elem<'a> {
    Int(i64),
    Str(&'a [u8]),
}

impl Elem<'_> {
    /// The element as Redis would return it to a client (integers in decimal).
    pub(crate) fn to_bytes(self) -> Bytes {
        match self {
            Elem::Int(v) => Bytes::from(v.to_string()),
            Elem::Str(s) => Bytes::copy_from_slice(s),
        }
    }

    pub(crate) fn as_int(self) -> Option<i64> {
        match self {
            Elem::Int(v) => Some(v),
            // Stream and hash-TTL integers are always written with lpAppendInteger, but a
            // string holding a plain integer means the same to Redis (lpGetInteger).
            Elem::Str(s) => std::str::from_utf8(s).ok()?.parse().ok(),
        }
    }

    /// A sorted-set score (zzlGetScore: integers directly, strings through strtod).
    pub(crate) fn as_score(self) -> Option<f64> {
        match self {
            Elem::Int(v) => Some(v as f64),
            Elem::Str(s) => parse_score(s),
        }
    }
}

/// A score written as text ("3.19", "inf", "-inf", "nan", "1e300"), as strtod reads it.
pub(crate) fn parse_score(s: &[u8]) -> Option<f64> {
    let t = std::str::from_utf8(s).ok()?.trim();
    t.parse::<f64>().ok()
}

/// Where and why a packed blob is malformed (byte offset inside the blob).
#[derive(Debug)]
pub(crate) struct PackErr {
    pub at: usize,
    pub what: &'static str,
}

fn err<T>(at: usize, what: &'static str) -> Result<T, PackErr> {
    Err(PackErr { at, what })
}

fn slice<'a>(data: &'a [u8], at: usize, n: usize, what: &'static str) -> Result<&'a [u8], PackErr> {
    match at.checked_add(n) {
        Some(end) if end <= data.len() => Ok(&data[at..end]),
        _ => err(at, what),
    }
}

fn le_uint(b: &[u8]) -> u64 {
    b.iter().rev().fold(0u64, |acc, &x| (acc << 8) | x as u64)
}

/// Sign-extends the low `bits` bits of `v`.
fn sign_extend(v: u64, bits: u32) -> i64 {
    let shift = 64 - bits;
    ((v << shift) as i64) >> shift
}

/// Size of the listpack "backlen" trailer for an entry of `l` bytes (lpEncodeBacklen).
fn lp_backlen_size(l: usize) -> usize {
    match l {
        0..=127 => 1,
        128..=16382 => 2,
        16383..=2_097_150 => 3,
        2_097_151..=268_435_454 => 4,
        _ => 5,
    }
}

/// All elements of a listpack, in order.
pub(crate) fn listpack(data: &[u8]) -> Result<Vec<Elem<'_>>, PackErr> {
    if data.len() < 7 {
        return err(0, "listpack shorter than its header");
    }
    let total = le_uint(&data[0..4]) as usize;
    if total != data.len() {
        return err(0, "listpack header byte count differs from its length");
    }
    let declared = le_uint(&data[4..6]) as usize;
    let mut out = Vec::with_capacity(declared.min(data.len() / 2));
    let mut p = 6;
    loop {
        let Some(&b) = data.get(p) else {
            return err(p, "listpack without end marker");
        };
        if b == 0xff {
            if p + 1 != data.len() {
                return err(p, "listpack end marker before the end");
            }
            break;
        }
        let (elem, enc_len) = if b & 0x80 == 0 {
            (Elem::Int((b & 0x7f) as i64), 1)
        } else if b & 0xc0 == 0x80 {
            let n = (b & 0x3f) as usize;
            (
                Elem::Str(slice(data, p + 1, n, "listpack string past the end")?),
                1 + n,
            )
        } else if b & 0xe0 == 0xc0 {
            let h = slice(data, p, 2, "listpack integer past the end")?;
            let v = (((h[0] & 0x1f) as u64) << 8) | h[1] as u64;
            (Elem::Int(sign_extend(v, 13)), 2)
        } else if b & 0xf0 == 0xe0 {
            let h = slice(data, p, 2, "listpack string length past the end")?;
            let n = (((h[0] & 0x0f) as usize) << 8) | h[1] as usize;
            (
                Elem::Str(slice(data, p + 2, n, "listpack string past the end")?),
                2 + n,
            )
        } else {
            match b {
                0xf0 => {
                    let n = le_uint(slice(
                        data,
                        p + 1,
                        4,
                        "listpack string length past the end",
                    )?) as usize;
                    (
                        Elem::Str(slice(data, p + 5, n, "listpack string past the end")?),
                        5 + n,
                    )
                }
                0xf1..=0xf4 => {
                    let n = match b {
                        0xf1 => 2,
                        0xf2 => 3,
                        0xf3 => 4,
                        _ => 8,
                    };
                    let v = le_uint(slice(data, p + 1, n, "listpack integer past the end")?);
                    (Elem::Int(sign_extend(v, 8 * n as u32)), 1 + n)
                }
                _ => return err(p, "listpack entry with an unknown encoding"),
            }
        };
        let step = enc_len + lp_backlen_size(enc_len);
        if data.len() - p < step {
            return err(p, "listpack entry past the end");
        }
        p += step;
        out.push(elem);
    }
    if declared != 0xffff && declared != out.len() {
        return err(4, "listpack element count differs from its header");
    }
    Ok(out)
}

/// All elements of a ziplist, in order.
pub(crate) fn ziplist(data: &[u8]) -> Result<Vec<Elem<'_>>, PackErr> {
    if data.len() < 11 {
        return err(0, "ziplist shorter than its header");
    }
    if le_uint(&data[0..4]) as usize != data.len() {
        return err(0, "ziplist header byte count differs from its length");
    }
    let declared = le_uint(&data[8..10]) as usize;
    let mut out = Vec::with_capacity(declared.min(data.len() / 2));
    let mut p = 10;
    loop {
        let Some(&b) = data.get(p) else {
            return err(p, "ziplist without end marker");
        };
        if b == 0xff {
            if p + 1 != data.len() {
                return err(p, "ziplist end marker before the end");
            }
            break;
        }
        // Length of the previous entry: 1 byte, or 0xfe + 4 bytes.
        p += if b < 0xfe { 1 } else { 5 };
        let Some(&enc) = data.get(p) else {
            return err(p, "ziplist entry past the end");
        };
        let (elem, len) = match enc >> 6 {
            0 => {
                let n = (enc & 0x3f) as usize;
                (
                    Elem::Str(slice(data, p + 1, n, "ziplist string past the end")?),
                    1 + n,
                )
            }
            1 => {
                let h = slice(data, p, 2, "ziplist string length past the end")?;
                let n = (((h[0] & 0x3f) as usize) << 8) | h[1] as usize;
                (
                    Elem::Str(slice(data, p + 2, n, "ziplist string past the end")?),
                    2 + n,
                )
            }
            2 => {
                let h = slice(data, p + 1, 4, "ziplist string length past the end")?;
                let n = u32::from_be_bytes([h[0], h[1], h[2], h[3]]) as usize;
                (
                    Elem::Str(slice(data, p + 5, n, "ziplist string past the end")?),
                    5 + n,
                )
            }
            _ => {
                let n = match enc {
                    0xc0 => 2,
                    0xd0 => 4,
                    0xe0 => 8,
                    0xf0 => 3,
                    0xfe => 1,
                    0xf1..=0xfd => 0,
                    _ => return err(p, "ziplist entry with an unknown encoding"),
                };
                if n == 0 {
                    // 4-bit immediate: 0001..1101 means 0..12.
                    (Elem::Int((enc & 0x0f) as i64 - 1), 1)
                } else {
                    let v = le_uint(slice(data, p + 1, n, "ziplist integer past the end")?);
                    (Elem::Int(sign_extend(v, 8 * n as u32)), 1 + n)
                }
            }
        };
        p += len;
        out.push(elem);
    }
    if declared != 0xffff && declared != out.len() {
        return err(8, "ziplist element count differs from its header");
    }
    Ok(out)
}

/// The members of an intset (16, 32 or 64-bit little-endian integers).
pub(crate) fn intset(data: &[u8]) -> Result<Vec<i64>, PackErr> {
    if data.len() < 8 {
        return err(0, "intset shorter than its header");
    }
    let width = le_uint(&data[0..4]) as usize;
    if !matches!(width, 2 | 4 | 8) {
        return err(0, "intset with an unknown encoding");
    }
    let n = le_uint(&data[4..8]) as usize;
    if n.checked_mul(width).and_then(|b| b.checked_add(8)) != Some(data.len()) {
        return err(4, "intset length differs from its header");
    }
    Ok(data[8..]
        .chunks_exact(width)
        .map(|c| sign_extend(le_uint(c), 8 * width as u32))
        .collect())
}

/// A field and its value, borrowed from the blob.
pub(crate) type Pair<'a> = (&'a [u8], &'a [u8]);

/// Field/value pairs of a zipmap (the pre-2.6 small hash encoding).
pub(crate) fn zipmap(data: &[u8]) -> Result<Vec<Pair<'_>>, PackErr> {
    // A length: one byte below 254, or 254 + 4 bytes (host order: little-endian on
    // every machine Redis ran on); 255 ends the map.
    fn zm_len(data: &[u8], p: &mut usize) -> Result<Option<usize>, PackErr> {
        let Some(&b) = data.get(*p) else {
            return err(*p, "zipmap without end marker");
        };
        match b {
            0xff => Ok(None),
            0xfe => {
                let v = le_uint(slice(data, *p + 1, 4, "zipmap length past the end")?);
                *p += 5;
                Ok(Some(v as usize))
            }
            _ => {
                *p += 1;
                Ok(Some(b as usize))
            }
        }
    }
    if data.is_empty() {
        return err(0, "empty zipmap");
    }
    let mut out = Vec::new();
    let mut p = 1; // skip zmlen, which is only a hint
    loop {
        let Some(klen) = zm_len(data, &mut p)? else {
            if p + 1 != data.len() {
                return err(p, "zipmap end marker before the end");
            }
            break;
        };
        let key = slice(data, p, klen, "zipmap key past the end")?;
        p += klen;
        let Some(vlen) = zm_len(data, &mut p)? else {
            return err(p, "zipmap key without a value");
        };
        let Some(&free) = data.get(p) else {
            return err(p, "zipmap value past the end");
        };
        p += 1;
        let value = slice(data, p, vlen, "zipmap value past the end")?;
        p += vlen;
        if data.len() - p < free as usize {
            return err(p, "zipmap free space past the end");
        }
        p += free as usize;
        out.push((key, value));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a listpack from already-encoded entries (encoding + data), adding backlens
    /// and the header.
    fn lp(entries: &[Vec<u8>]) -> Vec<u8> {
        let mut body = Vec::new();
        for e in entries {
            body.extend_from_slice(e);
            let l = e.len();
            // Backlen bytes only need the right count here; the parser skips them.
            body.extend(std::iter::repeat_n(0u8, lp_backlen_size(l)));
        }
        body.push(0xff);
        let mut out = Vec::new();
        out.extend_from_slice(&((body.len() + 6) as u32).to_le_bytes());
        out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
        out.extend_from_slice(&body);
        out
    }

    #[test]
    fn listpack_all_encodings() {
        let long = vec![b'x'; 300];
        let huge = vec![b'y'; 5000];
        let mut e12 = vec![0xe0 | (300 >> 8) as u8, (300 & 0xff) as u8];
        e12.extend_from_slice(&long);
        let mut e32 = vec![0xf0];
        e32.extend_from_slice(&(5000u32).to_le_bytes());
        e32.extend_from_slice(&huge);
        let entries = vec![
            vec![0x05],                         // 7-bit uint 5
            vec![0x83, b'a', b'b', b'c'],       // 6-bit string "abc"
            vec![0xc0 | 0x1f, 0xff],            // 13-bit -1
            vec![0xd0, 0x00],                   // 13-bit -4096
            vec![0xcf, 0xff],                   // 13-bit 4095
            e12,                                // 12-bit string
            e32,                                // 32-bit string
            vec![0xf1, 0x18, 0xfc],             // int16 -1000
            vec![0xf2, 0xff, 0xff, 0x7f],       // int24 8388607
            vec![0xf2, 0x00, 0x00, 0x80],       // int24 -8388608
            vec![0xf3, 0xff, 0xff, 0xff, 0x7f], // int32 max
            [vec![0xf4], i64::MIN.to_le_bytes().to_vec()].concat(),
        ];
        let data = lp(&entries);
        let got = listpack(&data).unwrap();
        assert_eq!(
            got,
            vec![
                Elem::Int(5),
                Elem::Str(b"abc"),
                Elem::Int(-1),
                Elem::Int(-4096),
                Elem::Int(4095),
                Elem::Str(&long),
                Elem::Str(&huge),
                Elem::Int(-1000),
                Elem::Int(8_388_607),
                Elem::Int(-8_388_608),
                Elem::Int(i32::MAX as i64),
                Elem::Int(i64::MIN),
            ]
        );
    }

    #[test]
    fn listpack_rejects_garbage() {
        let data = lp(&[vec![0x83, b'a', b'b', b'c']]);
        for cut in 0..data.len() {
            assert!(listpack(&data[..cut]).is_err());
        }
        let mut bad = data.clone();
        bad[6] = 0xf5; // unknown encoding
        assert!(listpack(&bad).is_err());
        let mut bad = data.clone();
        bad[4] = 2; // wrong count
        assert!(listpack(&bad).is_err());
    }

    fn zl(entries: &[Vec<u8>]) -> Vec<u8> {
        let mut body = Vec::new();
        for e in entries {
            body.push(0); // prevlen (not checked)
            body.extend_from_slice(e);
        }
        body.push(0xff);
        let mut out = Vec::new();
        out.extend_from_slice(&((body.len() + 10) as u32).to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
        out.extend_from_slice(&body);
        out
    }

    #[test]
    fn ziplist_all_encodings() {
        let s300 = vec![b'z'; 300];
        let mut e14 = vec![0x40 | (300 >> 8) as u8, (300 & 0xff) as u8];
        e14.extend_from_slice(&s300);
        let mut e32 = vec![0x80, 0, 0, 1, 44];
        e32.extend_from_slice(&s300);
        let entries = vec![
            vec![0x02, b'h', b'i'],
            e14,
            e32,
            vec![0xc0, 0x00, 0x80],             // int16 -32768
            vec![0xd0, 0xff, 0xff, 0xff, 0x7f], // int32 max
            [vec![0xe0], (-5i64).to_le_bytes().to_vec()].concat(),
            vec![0xf0, 0x00, 0x00, 0x40], // int24 4194304
            vec![0xfe, 0xc3],             // int8 -61
            vec![0xf1],                   // immediate 0
            vec![0xfd],                   // immediate 12
        ];
        let data = zl(&entries);
        let got = ziplist(&data).unwrap();
        assert_eq!(
            got,
            vec![
                Elem::Str(b"hi"),
                Elem::Str(&s300),
                Elem::Str(&s300),
                Elem::Int(-32768),
                Elem::Int(i32::MAX as i64),
                Elem::Int(-5),
                Elem::Int(4_194_304),
                Elem::Int(-61),
                Elem::Int(0),
                Elem::Int(12),
            ]
        );
        for cut in 0..data.len() {
            assert!(ziplist(&data[..cut]).is_err());
        }
    }

    #[test]
    fn intset_widths() {
        let mut d = vec![2, 0, 0, 0, 2, 0, 0, 0];
        d.extend_from_slice(&(-2i16).to_le_bytes());
        d.extend_from_slice(&(300i16).to_le_bytes());
        assert_eq!(intset(&d).unwrap(), vec![-2, 300]);
        let mut d = vec![8, 0, 0, 0, 1, 0, 0, 0];
        d.extend_from_slice(&i64::MAX.to_le_bytes());
        assert_eq!(intset(&d).unwrap(), vec![i64::MAX]);
        assert!(intset(&d[..d.len() - 1]).is_err());
        let mut d = vec![3, 0, 0, 0, 0, 0, 0, 0];
        assert!(intset(&d).is_err());
        d[0] = 4;
        assert_eq!(intset(&d).unwrap(), Vec::<i64>::new());
    }

    #[test]
    fn zipmap_pairs() {
        // "\x02\x03foo\x03\x00bar\x05hello\x05\x00world\xff" from zipmap.c, plus free bytes.
        let d = b"\x02\x03foo\x03\x02barXY\x05hello\x05\x00world\xff";
        assert_eq!(
            zipmap(d).unwrap(),
            vec![(&b"foo"[..], &b"bar"[..]), (&b"hello"[..], &b"world"[..])]
        );
        for cut in 0..d.len() {
            assert!(zipmap(&d[..cut]).is_err());
        }
    }
}
