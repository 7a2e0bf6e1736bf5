//! Replies decoded into values, for the replies cutover reads itself (CLUSTER SHARDS and
//! SLOTS, ACL GETUSER, CLIENT ID, CONFIG GET...): its own control commands, never the
//! clients' traffic, which is forwarded as raw bytes and only framed by [`crate::reply`].
//!
//! [`Value::decode`] reads exactly one reply filling its buffer; values borrow their bytes
//! from it. Decoding is iterative (an explicit stack of open aggregates, at most
//! `max_depth`), so a hostile nesting depth is an error, not a stack overflow, and an
//! aggregate count longer than the bytes that follow is refused before it sizes anything.

/// One decoded reply element, borrowing its bytes from the reply.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    /// `$-1`, `*-1`, `_`.
    Nil,
    Int(i64),
    /// Simple, bulk and verbatim strings (without the `txt:`), doubles, big numbers,
    /// booleans: their bytes.
    Bytes(&'a [u8]),
    /// `-ERR ...` or a blob error (without the `-`).
    Error(&'a [u8]),
    /// Arrays, sets and pushes.
    List(Vec<Value<'a>>),
    /// RESP3 maps, flattened to key, value, key, value...
    Map(Vec<Value<'a>>),
}

/// Not one valid reply: where, and what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed reply at byte {at}: {what}")]
pub struct Malformed {
    pub at: usize,
    pub what: &'static str,
}

/// Nesting allowed by [`Value::decode_one`] (ACL GETUSER's selectors are three deep).
pub const DEFAULT_MAX_DEPTH: usize = 16;

impl<'a> Value<'a> {
    /// Decodes exactly one reply filling `buf` (trailing bytes are an error).
    pub fn decode(buf: &'a [u8], max_depth: usize) -> Result<Value<'a>, Malformed> {
        decode(buf, max_depth)
    }

    /// [`Value::decode`] with [`DEFAULT_MAX_DEPTH`].
    pub fn decode_one(buf: &'a [u8]) -> Result<Value<'a>, Malformed> {
        decode(buf, DEFAULT_MAX_DEPTH)
    }

    pub fn bytes(&self) -> Option<&'a [u8]> {
        match self {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// Integers, and strings holding one (some fields are strings in some versions).
    pub fn int(&self) -> Option<i64> {
        match self {
            Value::Int(n) => Some(*n),
            Value::Bytes(b) => parse_i64(b),
            _ => None,
        }
    }

    pub fn items(&self) -> Option<&[Value<'a>]> {
        match self {
            Value::List(v) => Some(v),
            _ => None,
        }
    }

    pub fn is_error(&self) -> bool {
        matches!(self, Value::Error(_))
    }

    /// Field/value pairs: a RESP3 map, or the flat `[field, value, ...]` list that stands
    /// for a map in RESP2.
    pub fn fields(&self) -> Option<impl Iterator<Item = (&Value<'a>, &Value<'a>)>> {
        match self {
            Value::Map(v) | Value::List(v) if v.len() % 2 == 0 => {
                Some(v.chunks_exact(2).map(|p| (&p[0], &p[1])))
            }
            _ => None,
        }
    }

    /// The value of one field (names compared ignoring ASCII case).
    pub fn field(&self, name: &[u8]) -> Option<&Value<'a>> {
        self.fields()?
            .find(|(k, _)| k.bytes().is_some_and(|b| b.eq_ignore_ascii_case(name)))
            .map(|(_, v)| v)
    }

    /// Lossy text of a string or an error, for messages.
    pub fn text(&self) -> String {
        match self {
            Value::Bytes(b) | Value::Error(b) => String::from_utf8_lossy(b).into_owned(),
            Value::Int(n) => n.to_string(),
            other => format!("{other:?}"),
        }
    }
}

/// A decimal integer of at most 19 digits, no sign.
pub fn parse_u64(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &d| {
        d.is_ascii_digit().then(|| n * 10 + u64::from(d - b'0'))
    })
}

/// A decimal integer with an optional `-`.
pub fn parse_i64(line: &[u8]) -> Option<i64> {
    match line.strip_prefix(b"-") {
        Some(digits) => parse_u64(digits)
            .and_then(|n| i64::try_from(n).ok())
            .map(|n| -n),
        None => parse_u64(line).and_then(|n| i64::try_from(n).ok()),
    }
}

/// An aggregate being filled while decoding.
struct Open<'a> {
    map: bool,
    want: usize,
    items: Vec<Value<'a>>,
}

impl<'a> Open<'a> {
    fn close(self) -> Value<'a> {
        if self.map {
            Value::Map(self.items)
        } else {
            Value::List(self.items)
        }
    }
}

fn decode(buf: &[u8], max_depth: usize) -> Result<Value<'_>, Malformed> {
    let bad = |at: usize, what: &'static str| Malformed { at, what };
    let mut stack: Vec<Open<'_>> = Vec::new();
    let mut pos = 0usize;
    loop {
        let at = pos;
        let kind = *buf.get(pos).ok_or_else(|| bad(at, "truncated"))?;
        let rest = buf.get(pos + 1..).unwrap_or_default();
        let eol = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| bad(at, "line without CRLF"))?;
        let line = &rest[..eol];
        pos += 1 + eol + 2;
        let mut value = match kind {
            b'+' | b',' | b'(' | b'#' => Value::Bytes(line),
            b'-' => Value::Error(line),
            b':' => Value::Int(parse_i64(line).ok_or_else(|| bad(at, "bad integer"))?),
            b'_' => Value::Nil,
            b'$' | b'=' | b'!' => {
                let n = parse_i64(line).ok_or_else(|| bad(at, "bad bulk length"))?;
                if n == -1 && kind == b'$' {
                    Value::Nil
                } else {
                    let n = usize::try_from(n).map_err(|_| bad(at, "bad bulk length"))?;
                    let end = pos
                        .checked_add(n)
                        .ok_or_else(|| bad(at, "bad bulk length"))?;
                    let payload = buf.get(pos..end).ok_or_else(|| bad(at, "truncated bulk"))?;
                    if buf.get(end..end + 2) != Some(b"\r\n".as_slice()) {
                        return Err(bad(end, "bulk string not followed by CRLF"));
                    }
                    pos = end + 2;
                    match kind {
                        b'!' => Value::Error(payload),
                        // Verbatim strings start with a 3-letter format and a colon.
                        b'=' => Value::Bytes(payload.get(4..).unwrap_or_default()),
                        _ => Value::Bytes(payload),
                    }
                }
            }
            b'*' | b'~' | b'>' | b'%' => {
                let n = parse_i64(line).ok_or_else(|| bad(at, "bad aggregate length"))?;
                if n == -1 && kind == b'*' {
                    Value::Nil
                } else {
                    let n = usize::try_from(n).map_err(|_| bad(at, "bad aggregate length"))?;
                    let map = kind == b'%';
                    let want = if map { n.checked_mul(2) } else { Some(n) }
                        .ok_or_else(|| bad(at, "bad aggregate length"))?;
                    // Every element takes at least 3 bytes: a longer count is a lie, and
                    // must not size an allocation.
                    if want > (buf.len() - pos) / 3 {
                        return Err(bad(at, "aggregate longer than the reply"));
                    }
                    if want == 0 {
                        Open {
                            map,
                            want,
                            items: Vec::new(),
                        }
                        .close()
                    } else {
                        if stack.len() >= max_depth {
                            return Err(bad(at, "nested too deeply"));
                        }
                        stack.push(Open {
                            map,
                            want,
                            items: Vec::with_capacity(want),
                        });
                        continue;
                    }
                }
            }
            // Attributes (`|`) never annotate the replies cutover reads; anything else is
            // not RESP.
            _ => return Err(bad(at, "unexpected type byte")),
        };
        // Hand the finished value to its parent, closing every aggregate it completes.
        loop {
            let Some(top) = stack.last_mut() else {
                if pos != buf.len() {
                    return Err(bad(pos, "trailing bytes after the reply"));
                }
                return Ok(value);
            };
            top.items.push(value);
            if top.items.len() < top.want {
                break;
            }
            match stack.pop() {
                Some(done) => value = done.close(),
                None => return Err(bad(pos, "decoder stack underflow")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(b: &[u8]) -> Value<'_> {
        Value::decode_one(b).expect("a reply")
    }

    #[test]
    fn scalars() {
        assert_eq!(v(b"+OK\r\n"), Value::Bytes(b"OK"));
        assert_eq!(v(b"-ERR x\r\n"), Value::Error(b"ERR x"));
        assert_eq!(v(b":-42\r\n").int(), Some(-42));
        assert_eq!(v(b"$4\r\na\r\nb\r\n").bytes(), Some(&b"a\r\nb"[..]));
        assert_eq!(v(b"$-1\r\n"), Value::Nil);
        assert_eq!(v(b"*-1\r\n"), Value::Nil);
        assert_eq!(v(b"_\r\n"), Value::Nil);
        assert_eq!(v(b",1.5\r\n").text(), "1.5");
        assert_eq!(v(b"=8\r\ntxt:abcd\r\n").text(), "abcd");
        assert_eq!(v(b"!3\r\nERR\r\n"), Value::Error(b"ERR"));
    }

    #[test]
    fn nested_and_fields() {
        // ACL GETUSER in RESP2: alternating names and values, a list inside.
        let r = b"*4\r\n$5\r\nflags\r\n*2\r\n$2\r\non\r\n$6\r\nnopass\r\n$8\r\ncommands\r\n$5\r\n+@all\r\n";
        let val = v(r);
        assert_eq!(
            val.field(b"commands").map(Value::text).as_deref(),
            Some("+@all")
        );
        assert_eq!(
            val.field(b"FLAGS").and_then(Value::items).map(<[_]>::len),
            Some(2)
        );
        let m = v(b"%1\r\n+a\r\n*1\r\n:1\r\n");
        assert_eq!(
            m.field(b"a").and_then(Value::items),
            Some(&[Value::Int(1)][..])
        );
        // An error inside a list is an element, not a failure.
        let e = v(b"*2\r\n:1\r\n-ERR inside\r\n");
        assert!(e.items().is_some_and(|a| a[1].is_error()));
    }

    #[test]
    fn bad_input_is_named() {
        assert_eq!(
            Value::decode_one(b"*2\r\n:1\r\n").map_err(|e| e.what),
            Err("aggregate longer than the reply")
        );
        assert!(Value::decode_one(b"$5\r\nab").is_err());
        assert!(Value::decode_one(b"?x\r\n").is_err());
        assert!(Value::decode_one(b":1\r\n:2\r\n").is_err());
        assert!(Value::decode_one(b"$1\r\naXY").is_err());
        let deep = "*1\r\n".repeat(DEFAULT_MAX_DEPTH + 1) + ":1\r\n";
        assert_eq!(
            Value::decode_one(deep.as_bytes()).map_err(|e| e.what),
            Err("nested too deeply")
        );
        // A count that promises more than the bytes that follow sizes nothing.
        assert!(Value::decode_one(b"*999999999999\r\n").is_err());
    }
}
