//! Writing the replies that the proxy answers itself (RESP2 or RESP3 as the client speaks).

use bytes::{BufMut, BytesMut};

/// `+s\r\n`
pub fn simple(out: &mut BytesMut, s: &[u8]) {
    out.reserve(s.len() + 3);
    out.put_u8(b'+');
    out.put_slice(s);
    out.put_slice(b"\r\n");
}

/// `-msg\r\n` (`msg` includes the code, e.g. `ERR ...`, `NOAUTH ...`).
pub fn error(out: &mut BytesMut, msg: &[u8]) {
    out.reserve(msg.len() + 3);
    out.put_u8(b'-');
    out.put_slice(msg);
    out.put_slice(b"\r\n");
}

/// `:n\r\n`
pub fn integer(out: &mut BytesMut, n: i64) {
    header(out, b':', n);
}

/// `$len\r\nbytes\r\n`
pub fn bulk(out: &mut BytesMut, b: &[u8]) {
    header(out, b'$', b.len() as i64);
    out.reserve(b.len() + 2);
    out.put_slice(b);
    out.put_slice(b"\r\n");
}

/// Null bulk: `$-1` in RESP2, `_` in RESP3.
pub fn null(out: &mut BytesMut, resp3: bool) {
    if resp3 {
        out.put_slice(b"_\r\n");
    } else {
        out.put_slice(b"$-1\r\n");
    }
}

/// `*n\r\n`
pub fn array_header(out: &mut BytesMut, n: usize) {
    header(out, b'*', n as i64);
}

/// A map of `n` pairs: `%n` in RESP3, a flat array of `2n` in RESP2.
pub fn map_header(out: &mut BytesMut, n: usize, resp3: bool) {
    if resp3 {
        header(out, b'%', n as i64);
    } else {
        header(out, b'*', 2 * n as i64);
    }
}

/// A verbatim-or-bulk text: RESP3 `=len\r\ntxt:...`, RESP2 bulk. Used for INFO-style text.
pub fn verbatim_text(out: &mut BytesMut, text: &[u8], resp3: bool) {
    if resp3 {
        header(out, b'=', text.len() as i64 + 4);
        out.put_slice(b"txt:");
        out.put_slice(text);
        out.put_slice(b"\r\n");
    } else {
        bulk(out, text);
    }
}

/// A multibulk request or array of bulk strings.
pub fn command<'a>(out: &mut BytesMut, args: impl ExactSizeIterator<Item = &'a [u8]>) {
    array_header(out, args.len());
    for a in args {
        bulk(out, a);
    }
}

fn header(out: &mut BytesMut, kind: u8, n: i64) {
    let tmp = itoa_buf(n);
    out.reserve(tmp.1 + 3);
    out.put_u8(kind);
    out.put_slice(&tmp.0[..tmp.1]);
    out.put_slice(b"\r\n");
}

/// Formats an i64 without allocating.
fn itoa_buf(n: i64) -> ([u8; 20], usize) {
    let mut buf = [0u8; 20];
    let neg = n < 0;
    let mut v = n.unsigned_abs();
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    if neg {
        i -= 1;
        buf[i] = b'-';
    }
    let len = buf.len() - i;
    buf.copy_within(i.., 0);
    (buf, len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_and_bulks_on_the_wire() {
        let mut out = BytesMut::new();
        integer(&mut out, -1234567890123);
        integer(&mut out, 0);
        bulk(&mut out, b"a\r\nb");
        null(&mut out, false);
        null(&mut out, true);
        map_header(&mut out, 2, false);
        assert_eq!(
            &out[..],
            b":-1234567890123\r\n:0\r\n$4\r\na\r\nb\r\n$-1\r\n_\r\n*4\r\n"
        );
        let mut out = BytesMut::new();
        integer(&mut out, i64::MIN);
        assert_eq!(&out[..], b":-9223372036854775808\r\n");
    }
}
