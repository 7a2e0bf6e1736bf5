//! Errors of the wire protocol, with the exact texts Redis sends for each.

/// A client sent something Redis itself would refuse. The connection must be closed after
/// the error reply, exactly as Redis does. `Display` gives the message after `-ERR `.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("Protocol error: invalid multibulk length")]
    InvalidMultibulkLength,
    #[error("Protocol error: invalid bulk length")]
    InvalidBulkLength,
    /// Redis turns a `\r` or `\n` byte into a space in this message (it must not break the
    /// reply line); `Display` does the same. Bytes above 0x7f are shown as the Unicode
    /// character of that code point; [`ProtocolError::write_reply`] writes the raw byte as
    /// Redis does.
    #[error("Protocol error: expected '$', got '{}'", char::from(printable(*.0)))]
    ExpectedBulk(u8),
    #[error("Protocol error: too big mbulk count string")]
    TooBigMultibulkCount,
    #[error("Protocol error: too big bulk count string")]
    TooBigBulkCount,
    #[error("Protocol error: too big inline request")]
    TooBigInline,
    #[error("Protocol error: unbalanced quotes in request")]
    UnbalancedQuotes,
    #[error("Protocol error: unauthenticated multibulk length")]
    UnauthenticatedMultibulkLength,
    #[error("Protocol error: unauthenticated bulk length")]
    UnauthenticatedBulkLength,
    #[error("Protocol error: expected CRLF after bulk string")]
    MissingBulkCrlf,
}

impl ProtocolError {
    /// Writes the whole error reply exactly as Redis sends it: `-ERR <message>\r\n`.
    pub fn write_reply(&self, out: &mut bytes::BytesMut) {
        use bytes::BufMut;
        out.put_slice(b"-ERR ");
        match self {
            ProtocolError::ExpectedBulk(b) => {
                out.put_slice(b"Protocol error: expected '$', got '");
                out.put_u8(printable(*b));
                out.put_slice(b"'");
            }
            other => out.put_slice(other.to_string().as_bytes()),
        }
        out.put_slice(b"\r\n");
    }
}

/// What Redis's `addReplyErrorFormat` does to a byte of an error message.
fn printable(b: u8) -> u8 {
    if b == b'\r' || b == b'\n' {
        b' '
    } else {
        b
    }
}

/// A server sent a reply that is not valid RESP (or nests deeper than allowed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    #[error("invalid reply type byte 0x{0:02x}")]
    InvalidType(u8),
    #[error("invalid length in reply header")]
    InvalidLength,
    #[error("reply nests deeper than {0} levels")]
    TooDeep(usize),
    #[error("reply header line longer than {0} bytes")]
    HeaderTooLong(usize),
    #[error("missing CRLF after bulk reply")]
    MissingCrlf,
}
