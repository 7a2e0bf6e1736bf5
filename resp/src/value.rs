//! Replies decoded into values, for the few replies cutover reads itself (ACL GETUSER,
//! CLIENT ID, CONFIG GET, INFO...): its own control commands, never the clients' traffic,
//! which is forwarded as raw bytes and only framed by [`crate::reply`].
//!
//! `Value::parse(buf)` reads the first complete reply at `buf[0]`: `Ok(None)` when more bytes
//! are needed. Nesting is bounded by [`MAX_DEPTH`] (decoding recurses; these replies are
//! a few levels deep), and an `-error` inside an array is a value like any other.

use bytes::Bytes;

use crate::ReplyError;

/// Deepest nesting decoded (ACL GETUSER's selectors are three levels).
pub const MAX_DEPTH: usize = 64;

/// One decoded reply (RESP2 and RESP3).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `+OK`, or a RESP3 verbatim string's text.
    Simple(Bytes),
    /// `-ERR ...` (without the `-`).
    Error(Bytes),
    Int(i64),
    Bulk(Bytes),
    /// `$-1`, `*-1`, `_`.
    Nil,
    /// Arrays, sets and pushes.
    Array(Vec<Value>),
    /// RESP3 maps, as their key/value pairs.
    Map(Vec<(Value, Value)>),
    /// `,` doubles and `(` big numbers, as their text.
    Number(Bytes),
    Bool(bool),
}

impl Value {
    /// Decodes the first reply in `buf`; with the bytes it used.
    pub fn parse(buf: &[u8]) -> Result<Option<(Value, usize)>, ReplyError> {
        let mut scanner = crate::ReplyScanner::new(MAX_DEPTH);
        let Some(len) = scanner.scan(buf)? else {
            return Ok(None);
        };
        let mut pos = 0;
        let v = decode(&buf[..len], &mut pos, 0)?;
        Ok(Some((v, len)))
    }

    /// Decodes a buffer holding exactly one reply.
    pub fn from_reply(buf: &[u8]) -> Result<Value, ReplyError> {
        match Value::parse(buf)? {
            Some((v, _)) => Ok(v),
            None => Err(ReplyError::InvalidLength),
        }
    }

    /// The bytes of a string-like value (simple, bulk, error text, number text).
    pub fn bytes(&self) -> Option<&Bytes> {
        match self {
            Value::Simple(b) | Value::Bulk(b) | Value::Error(b) | Value::Number(b) => Some(b),
            _ => None,
        }
    }

    /// An integer, or a string holding one.
    pub fn int(&self) -> Option<i64> {
        match self {
            Value::Int(n) => Some(*n),
            Value::Simple(b) | Value::Bulk(b) => std::str::from_utf8(b).ok()?.trim().parse().ok(),
            _ => None,
        }
    }

    pub fn array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }

    pub fn is_error(&self) -> bool {
        matches!(self, Value::Error(_))
    }

    /// The value at `key` in a map, or in a RESP2 array of alternating keys and values
    /// (how RESP2 answers what RESP3 answers with a map).
    pub fn field(&self, key: &[u8]) -> Option<&Value> {
        match self {
            Value::Map(pairs) => pairs
                .iter()
                .find(|(k, _)| k.bytes().is_some_and(|b| b.eq_ignore_ascii_case(key)))
                .map(|(_, v)| v),
            Value::Array(a) => a
                .chunks_exact(2)
                .find(|kv| kv[0].bytes().is_some_and(|b| b.eq_ignore_ascii_case(key)))
                .map(|kv| &kv[1]),
            _ => None,
        }
    }

    /// Lossy text, for messages.
    pub fn text(&self) -> String {
        match self.bytes() {
            Some(b) => String::from_utf8_lossy(b).into_owned(),
            None => format!("{self:?}"),
        }
    }
}

/// The line starting at `*pos` (without CRLF); moves past it.
fn line<'a>(buf: &'a [u8], pos: &mut usize) -> Result<&'a [u8], ReplyError> {
    let rest = buf.get(*pos..).ok_or(ReplyError::InvalidLength)?;
    let end = rest
        .windows(2)
        .position(|w| w == b"\r\n")
        .ok_or(ReplyError::InvalidLength)?;
    *pos += end + 2;
    Ok(&rest[..end])
}

fn number(b: &[u8]) -> Result<i64, ReplyError> {
    std::str::from_utf8(b)
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .ok_or(ReplyError::InvalidLength)
}

fn decode(buf: &[u8], pos: &mut usize, depth: usize) -> Result<Value, ReplyError> {
    if depth > MAX_DEPTH {
        return Err(ReplyError::TooDeep(MAX_DEPTH));
    }
    let t = *buf.get(*pos).ok_or(ReplyError::InvalidLength)?;
    *pos += 1;
    let l = line(buf, pos)?;
    let copy = |b: &[u8]| Bytes::copy_from_slice(b);
    Ok(match t {
        b'+' => Value::Simple(copy(l)),
        b'-' => Value::Error(copy(l)),
        b':' => Value::Int(number(l)?),
        b',' | b'(' => Value::Number(copy(l)),
        b'#' => Value::Bool(l == b"t"),
        b'_' => Value::Nil,
        b'$' | b'=' | b'!' => {
            let n = number(l)?;
            if n < 0 {
                return Ok(Value::Nil);
            }
            let n = n as usize;
            let body = buf.get(*pos..*pos + n).ok_or(ReplyError::InvalidLength)?;
            *pos += n + 2;
            match t {
                b'!' => Value::Error(copy(body)),
                // Verbatim: `txt:` then the text.
                b'=' => Value::Simple(copy(body.get(4..).unwrap_or(&[]))),
                _ => Value::Bulk(copy(body)),
            }
        }
        b'*' | b'~' | b'>' => {
            let n = number(l)?;
            if n < 0 {
                return Ok(Value::Nil);
            }
            let mut items = Vec::with_capacity((n as usize).min(1024));
            for _ in 0..n {
                items.push(decode(buf, pos, depth + 1)?);
            }
            Value::Array(items)
        }
        b'%' => {
            let n = number(l)?.max(0);
            let mut pairs = Vec::with_capacity((n as usize).min(1024));
            for _ in 0..n {
                let k = decode(buf, pos, depth + 1)?;
                let v = decode(buf, pos, depth + 1)?;
                pairs.push((k, v));
            }
            Value::Map(pairs)
        }
        b'|' => {
            // Attributes: skipped; the value they annotate follows.
            let n = number(l)?.max(0);
            for _ in 0..n * 2 {
                decode(buf, pos, depth + 1)?;
            }
            return decode(buf, pos, depth);
        }
        other => return Err(ReplyError::InvalidType(other)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(b: &[u8]) -> Value {
        Value::from_reply(b).expect("a reply")
    }

    #[test]
    fn scalars() {
        assert_eq!(v(b"+OK\r\n"), Value::Simple(Bytes::from_static(b"OK")));
        assert_eq!(v(b"-ERR x\r\n"), Value::Error(Bytes::from_static(b"ERR x")));
        assert_eq!(v(b":-42\r\n").int(), Some(-42));
        assert_eq!(
            v(b"$4\r\na\r\nb\r\n").bytes().map(|b| &b[..]),
            Some(&b"a\r\nb"[..])
        );
        assert_eq!(v(b"$-1\r\n"), Value::Nil);
        assert_eq!(v(b"*-1\r\n"), Value::Nil);
        assert_eq!(v(b"_\r\n"), Value::Nil);
        assert_eq!(v(b"#t\r\n"), Value::Bool(true));
        assert_eq!(v(b",1.5\r\n").text(), "1.5");
        assert_eq!(v(b"=8\r\ntxt:abcd\r\n").text(), "abcd");
        assert_eq!(
            v(b"!3\r\nERR\r\n"),
            Value::Error(Bytes::from_static(b"ERR"))
        );
    }

    #[test]
    fn nested_and_fields() {
        // ACL GETUSER in RESP2: alternating names and values, an array inside.
        let r = b"*4\r\n$5\r\nflags\r\n*2\r\n$2\r\non\r\n$6\r\nnopass\r\n$8\r\ncommands\r\n$5\r\n+@all\r\n";
        let val = v(r);
        assert_eq!(
            val.field(b"commands").map(Value::text).as_deref(),
            Some("+@all")
        );
        assert_eq!(
            val.field(b"FLAGS").and_then(Value::array).map(<[_]>::len),
            Some(2)
        );
        let m = v(b"%1\r\n+a\r\n*1\r\n:1\r\n");
        assert_eq!(
            m.field(b"a").and_then(Value::array),
            Some(&[Value::Int(1)][..])
        );
        // An error inside an array is an element, not a failure.
        let e = v(b"*2\r\n:1\r\n-ERR inside\r\n");
        assert!(e.array().is_some_and(|a| a[1].is_error()));
        // Attributes are skipped.
        assert_eq!(v(b"|1\r\n+k\r\n+v\r\n:7\r\n"), Value::Int(7));
    }

    #[test]
    fn partial_and_bad_input() {
        assert_eq!(Value::parse(b"*2\r\n:1\r\n"), Ok(None));
        assert_eq!(Value::parse(b"$5\r\nab"), Ok(None));
        assert!(Value::parse(b"?x\r\n").is_err());
        let deep = "*1\r\n".repeat(MAX_DEPTH + 2) + ":1\r\n";
        assert!(Value::parse(deep.as_bytes()).is_err());
        let (val, used) = Value::parse(b":1\r\n:2\r\n").expect("ok").expect("some");
        assert_eq!((val, used), (Value::Int(1), 4));
    }
}
