//! Tests of the request scanner: Redis's bad-input table (tests/unit/protocol.tcl and
//! proxy-semantics.md), behaviour checked against redis-server 7.0.15, partial feeds at
//! every split point, binary data, inline quoting, and a property test against the
//! redis-protocol crate's RESP2 decoder.

use super::*;
use proptest::prelude::*;

/// What the scanner made of one frame: its kind, its length and its arguments (copied).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Got {
    Frame(FrameKind, usize, Vec<Vec<u8>>),
    Error(ProtocolError),
}

fn frame_args(p: &RequestParser, buf: &[u8], kind: FrameKind) -> Vec<Vec<u8>> {
    let src = match kind {
        FrameKind::Inline => p.inline_encoded(),
        _ => buf,
    };
    p.args().iter().map(|r| src[r.clone()].to_vec()).collect()
}

/// Feeds `input` in pieces ending at `cuts` (plus the end), like a connection would:
/// bytes are appended to a buffer, every complete frame is taken off its front.
fn feed_with(p: &mut RequestParser, input: &[u8], cuts: &[usize]) -> (Vec<Got>, usize) {
    let mut out = Vec::new();
    let mut buf = Vec::new();
    let mut fed = 0;
    let mut ends: Vec<usize> = cuts.iter().copied().filter(|&c| c <= input.len()).collect();
    ends.sort_unstable();
    ends.push(input.len());
    for end in ends {
        buf.extend_from_slice(&input[fed..end.max(fed)]);
        fed = end.max(fed);
        loop {
            match p.parse(&buf) {
                Ok(Some(f)) => {
                    assert!(f.len > 0 && f.len <= buf.len());
                    out.push(Got::Frame(f.kind, f.len, frame_args(p, &buf, f.kind)));
                    buf.drain(..f.len);
                }
                Ok(None) => break,
                Err(e) => {
                    out.push(Got::Error(e));
                    return (out, buf.len());
                }
            }
        }
    }
    (out, buf.len())
}

fn feed(input: &[u8]) -> (Vec<Got>, usize) {
    feed_with(&mut RequestParser::new(Limits::default()), input, &[])
}

fn feed_unauth(input: &[u8]) -> (Vec<Got>, usize) {
    let mut p = RequestParser::new(Limits::default());
    p.set_authenticated(false);
    feed_with(&mut p, input, &[])
}

/// The results, fed in one piece, must be those of every two-piece split and of a
/// byte-by-byte feed.
fn feed_all_splits(input: &[u8]) -> (Vec<Got>, usize) {
    let whole = feed(input);
    for cut in 0..=input.len() {
        let got = feed_with(&mut RequestParser::new(Limits::default()), input, &[cut]);
        assert_eq!(
            got,
            whole,
            "split at {cut} of {:?}",
            String::from_utf8_lossy(input)
        );
    }
    let bytewise: Vec<usize> = (0..input.len()).collect();
    let got = feed_with(&mut RequestParser::new(Limits::default()), input, &bytewise);
    assert_eq!(
        got,
        whole,
        "byte by byte: {:?}",
        String::from_utf8_lossy(input)
    );
    whole
}

fn cmd(args: &[&[u8]]) -> Vec<Vec<u8>> {
    args.iter().map(|a| a.to_vec()).collect()
}

fn multibulk(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn only_args(got: &[Got]) -> Vec<Vec<Vec<u8>>> {
    got.iter()
        .filter_map(|g| match g {
            Got::Frame(FrameKind::Empty, _, _) => None,
            Got::Frame(_, _, args) => Some(args.clone()),
            Got::Error(e) => panic!("unexpected error {e}"),
        })
        .collect()
}

fn error_of(input: &[u8]) -> ProtocolError {
    match feed(input).0.pop() {
        Some(Got::Error(e)) => e,
        other => panic!(
            "expected an error for {:?}, got {other:?}",
            String::from_utf8_lossy(input)
        ),
    }
}

// ---- the bad-input table -------------------------------------------------------------

#[test]
fn ignored_frames_keep_the_connection() {
    // `*-10`, `*0`, an empty line: skipped, and the next command still parses.
    for skip in [
        &b"*-10\r\n"[..],
        b"*0\r\n",
        b"\r\n",
        b"\n",
        b"   \t \r\n",
        b"*-1\r\n",
    ] {
        let mut input = skip.to_vec();
        input.extend_from_slice(b"*1\r\n$4\r\nPING\r\n");
        let (got, rest) = feed_all_splits(&input);
        assert_eq!(
            got,
            vec![
                Got::Frame(FrameKind::Empty, skip.len(), vec![]),
                Got::Frame(FrameKind::Multibulk, 14, cmd(&[b"PING"])),
            ],
            "{skip:?}"
        );
        assert_eq!(rest, 0);
    }
}

#[test]
fn refused_lengths() {
    use ProtocolError::*;
    let cases: &[(&[u8], ProtocolError)] = &[
        (b"*3000000000\r\n", InvalidMultibulkLength),
        (b"*3\r\n$3\r\nSET\r\n$1\r\nx\r\n$-10\r\n", InvalidBulkLength),
        (
            b"*3\r\n$3\r\nSET\r\n$1\r\nx\r\n$2000000000\r\n",
            InvalidBulkLength,
        ),
        (
            b"*3\r\n$3\r\nSET\r\n$1\r\nx\r\n$blabla\r\n",
            InvalidBulkLength,
        ),
        (b"*1\r\nfoo\r\n", ExpectedBulk(b'f')),
        (
            b"*3\r\n$3\r\nSET\r\n$1\r\nx\r\nfooz\r\n",
            ExpectedBulk(b'f'),
        ),
        // Requests are flat: a nested array is not a bulk.
        (b"*1\r\n*1\r\n$4\r\nPING\r\n", ExpectedBulk(b'*')),
        (b"*2147483648\r\n", InvalidMultibulkLength),
        (b"*1\r\n$536870913\r\n", InvalidBulkLength),
        // Redis itself skips these two bytes unchecked; see the module docs.
        (b"*1\r\n$4\r\nPINGxy", MissingBulkCrlf),
        (b"*1\r\n$4\r\nPING\rx", MissingBulkCrlf),
        (b"*1\r\n$4\r\nPING\n\r", MissingBulkCrlf),
    ];
    // One byte after the body: still waiting.
    assert_eq!(feed(b"*1\r\n$4\r\nPING\r"), (vec![], 13));
    for (input, want) in cases {
        assert_eq!(
            &error_of(input),
            want,
            "{:?}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn numbers_follow_string2ll() {
    // Each checked against redis-server 7.0.15.
    use ProtocolError::*;
    for (input, want) in [
        (&b"*1\r\n$+4\r\nPING\r\n"[..], InvalidBulkLength),
        (b"*1\r\n$04\r\nPING\r\n", InvalidBulkLength),
        (b"*1\r\n$-0\r\nPING\r\n", InvalidBulkLength),
        (b"*1\r\n$4 \r\nPING\r\n", InvalidBulkLength),
        (b"*1\r\n$\r\nPING\r\n", InvalidBulkLength),
        (b"*+1\r\n$4\r\nPING\r\n", InvalidMultibulkLength),
        (b"*01\r\n$4\r\nPING\r\n", InvalidMultibulkLength),
        (b"*-0\r\nPING\r\n", InvalidMultibulkLength),
        (b"*\r\nPING\r\n", InvalidMultibulkLength),
        (b"*1 \r\n$4\r\nPING\r\n", InvalidMultibulkLength),
        (b"*99999999999999999999\r\n", InvalidMultibulkLength),
        (b"*-\r\n", InvalidMultibulkLength),
    ] {
        assert_eq!(
            error_of(input),
            want,
            "{:?}",
            String::from_utf8_lossy(input)
        );
    }
    assert_eq!(string2ll(b"-9223372036854775808"), Some(i64::MIN));
    assert_eq!(string2ll(b"9223372036854775807"), Some(i64::MAX));
    assert_eq!(string2ll(b"9223372036854775808"), None);
    assert_eq!(string2ll(b"0"), Some(0));
    assert_eq!(string2ll(b"00"), None);
    // Huge negative counts are still "ignore this".
    assert_eq!(
        feed(b"*-9223372036854775808\r\n").0[0],
        Got::Frame(FrameKind::Empty, 23, vec![])
    );
}

#[test]
fn too_big_header_lines_and_inline() {
    let max = Limits::default().max_inline_len;
    let cases: [(Vec<u8>, usize, ProtocolError); 3] = [
        (b"*".to_vec(), 0, ProtocolError::TooBigMultibulkCount),
        (b"*1\r\n$".to_vec(), 4, ProtocolError::TooBigBulkCount),
        (b"PING".to_vec(), 0, ProtocolError::TooBigInline),
    ];
    for (prefix, line_start, err) in cases {
        // Exactly the limit without a line end: still waiting (Redis checks `>`).
        let mut input = prefix.clone();
        input.resize(line_start + max, b'1');
        assert_eq!(feed(&input).0, vec![], "{err:?}");
        input.push(b'1');
        assert_eq!(error_of(&input), err);
        // Fed in pieces, the error comes as soon as the limit is passed.
        let mut p = RequestParser::new(Limits::default());
        assert_eq!(p.parse(&input[..input.len() - 1]), Ok(None));
        assert_eq!(p.parse(&input), Err(err));
    }
}

#[test]
fn bulk_over_max_is_refused_before_its_body() {
    // No byte of the body is needed to refuse it.
    assert_eq!(
        error_of(b"*1\r\n$536870913\r\n"),
        ProtocolError::InvalidBulkLength
    );
    let limits = Limits {
        max_bulk_len: 10,
        ..Limits::default()
    };
    let mut p = RequestParser::new(limits);
    assert_eq!(
        p.parse(b"*1\r\n$11\r\n"),
        Err(ProtocolError::InvalidBulkLength)
    );
    let mut p = RequestParser::new(limits);
    assert_eq!(
        p.parse(b"*1\r\n$10\r\n0123456789\r\n"),
        Ok(Some(Frame {
            len: 21,
            kind: FrameKind::Multibulk
        }))
    );
}

#[test]
fn unauthenticated_limits() {
    // Redis 7.0 with requirepass: more than 10 arguments, or a bulk over 16 KiB.
    assert_eq!(
        feed_unauth(b"*11\r\n").0,
        vec![Got::Error(ProtocolError::UnauthenticatedMultibulkLength)]
    );
    assert_eq!(
        feed_unauth(b"*10\r\n$16385\r\n").0,
        vec![Got::Error(ProtocolError::UnauthenticatedBulkLength)]
    );
    // The general limit is checked first, as in Redis.
    assert_eq!(
        feed_unauth(b"*1\r\n$536870913\r\n").0,
        vec![Got::Error(ProtocolError::InvalidBulkLength)]
    );
    assert_eq!(
        feed_unauth(b"*2147483648\r\n").0,
        vec![Got::Error(ProtocolError::InvalidMultibulkLength)]
    );
    assert_eq!(
        feed_unauth(b"*-5\r\n").0,
        vec![Got::Frame(FrameKind::Empty, 5, vec![])]
    );
    // At the limits: accepted.
    let big = vec![b'v'; 16384];
    let mut args: Vec<&[u8]> = vec![b"AUTH"; 9];
    args.push(&big);
    let input = multibulk(&args);
    assert_eq!(
        only_args(&feed_unauth(&input).0),
        vec![args.iter().map(|a| a.to_vec()).collect::<Vec<_>>()]
    );
    // Authenticated: no such limits.
    let mut p = RequestParser::new(Limits::default());
    p.set_authenticated(false);
    p.set_authenticated(true);
    assert!(matches!(p.parse(b"*11\r\n$16385\r\n"), Ok(None)));
}

#[test]
fn expected_bulk_error_texts_match_redis() {
    // redis-server answers `*1\r\n\r\n` with "expected '$', got ' '": CR and LF would break
    // the reply line, so Redis turns them into spaces.
    assert_eq!(error_of(b"*1\r\n\r\n"), ProtocolError::ExpectedBulk(b'\r'));
    assert_eq!(
        error_of(b"*1\r\n\n\r\n"),
        ProtocolError::ExpectedBulk(b'\n')
    );
    assert_eq!(
        ProtocolError::ExpectedBulk(b'\r').to_string(),
        "Protocol error: expected '$', got ' '"
    );
    let mut out = bytes::BytesMut::new();
    ProtocolError::ExpectedBulk(0xe9).write_reply(&mut out);
    ProtocolError::ExpectedBulk(b'\n').write_reply(&mut out);
    ProtocolError::TooBigInline.write_reply(&mut out);
    assert_eq!(
        &out[..],
        &b"-ERR Protocol error: expected '$', got '\xe9'\r\n\
           -ERR Protocol error: expected '$', got ' '\r\n\
           -ERR Protocol error: too big inline request\r\n"[..]
    );
}

#[test]
fn header_line_end_is_the_first_cr() {
    // Redis never looks at the byte after a header's '\r' (checked on 7.0.15).
    let (got, _) = feed_all_splits(b"*1\rX$4\r\nPING\r\n");
    assert_eq!(only_args(&got), vec![cmd(&[b"PING"])]);
    let (got, _) = feed_all_splits(b"*1\r\n$4\rXPING\r\n");
    assert_eq!(only_args(&got), vec![cmd(&[b"PING"])]);
}

#[test]
fn nul_in_a_line_means_it_never_ends() {
    // Redis's strchr stops at NUL: these wait until more than 64 KiB are buffered, then
    // fail with "too big ..." (Redis's "protocol desync" regression tests).
    let max = Limits::default().max_inline_len;
    for (prefix, err) in [
        (&b"\x00"[..], ProtocolError::TooBigInline),
        (b"PING\x00\r\n", ProtocolError::TooBigInline),
        (b"*\x00", ProtocolError::TooBigMultibulkCount),
        (
            b"*1\x00\r\n$4\r\nPING\r\n",
            ProtocolError::TooBigMultibulkCount,
        ),
        (b"$\x00", ProtocolError::TooBigInline),
        (b"*1\r\n$\x00", ProtocolError::TooBigBulkCount),
    ] {
        let mut p = RequestParser::new(Limits::default());
        let mut input = prefix.to_vec();
        assert_eq!(p.parse(&input), Ok(None), "{prefix:?}");
        input.extend_from_slice(b"payload\r\n");
        assert_eq!(p.parse(&input), Ok(None), "{prefix:?}");
        input.resize(max + 10, b'A');
        assert_eq!(p.parse(&input), Err(err), "{prefix:?}");
    }
    // A NUL inside a bulk is data, and one after a whole command is the next command's.
    let (got, rest) = feed(b"*1\r\n$4\r\nP\x00NG\r\n\x00");
    assert_eq!(only_args(&got), vec![cmd(&[b"P\x00NG"])]);
    assert_eq!(rest, 1);
}

// ---- binary data, pipelines, splits ----------------------------------------------------

#[test]
fn binary_args_are_byte_exact() {
    let args: [&[u8]; 5] = [b"SET", b"k\x00\r\n\xff", b"\r\n\r\n", b"", b"$3\r\n*1\r\n"];
    let input = multibulk(&args);
    let (got, rest) = feed_all_splits(&input);
    assert_eq!(
        got,
        vec![Got::Frame(FrameKind::Multibulk, input.len(), cmd(&args))]
    );
    assert_eq!(rest, 0);
}

#[test]
fn pipelines_split_anywhere() {
    let mut input = Vec::new();
    input.extend(multibulk(&[b"SET", b"key:1", b"v\r\nv"]));
    input.extend_from_slice(b"PING\r\n");
    input.extend_from_slice(b"*0\r\n");
    input.extend(multibulk(&[b"GET", b"key:1"]));
    input.extend_from_slice(b"ECHO \"a b\" 'c d'\n");
    input.extend_from_slice(b"\r\n");
    input.extend(multibulk(&[b""]));
    input.extend_from_slice(b"*1\r\n$4\r\nPI");
    let (got, rest) = feed_all_splits(&input);
    assert_eq!(
        only_args(&got),
        vec![
            cmd(&[b"SET", b"key:1", b"v\r\nv"]),
            cmd(&[b"PING"]),
            cmd(&[b"GET", b"key:1"]),
            cmd(&[b"ECHO", b"a b", b"c d"]),
            cmd(&[b""]),
        ]
    );
    assert_eq!(rest, 10, "the incomplete last command stays buffered");
}

#[test]
fn arg_ranges_are_frame_relative() {
    let mut p = RequestParser::new(Limits::default());
    let buf = b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*1\r\n$4\r\nPING\r\n";
    let f = p.parse(buf).unwrap().unwrap();
    assert_eq!(
        f,
        Frame {
            len: 20,
            kind: FrameKind::Multibulk
        }
    );
    assert_eq!(p.args(), &[8..11, 17..18]);
    let f = p.parse(&buf[20..]).unwrap().unwrap();
    assert_eq!(
        f,
        Frame {
            len: 14,
            kind: FrameKind::Multibulk
        }
    );
    assert_eq!(p.args(), std::slice::from_ref(&(8..12)));
}

#[test]
fn partial_commands_are_not_rescanned() {
    let mut p = RequestParser::new(Limits::default());
    let mut buf = b"*2\r\n$3\r\nSET\r\n$1000000\r\n".to_vec();
    assert_eq!(p.parse(&buf), Ok(None));
    assert_eq!(p.phase, Phase::BulkBody(1_000_000));
    assert_eq!(p.pos, buf.len());
    assert_eq!(
        p.args(),
        std::slice::from_ref(&(8..11)),
        "the first argument is kept"
    );
    buf.resize(buf.len() + 999_999, b'x');
    assert_eq!(p.parse(&buf), Ok(None));
    buf.extend_from_slice(b"x\r");
    assert_eq!(p.parse(&buf), Ok(None));
    buf.push(b'\n');
    assert_eq!(p.parse(&buf).unwrap().unwrap().len, buf.len());

    // A header or inline line arriving in pieces: the search resumes where it stopped.
    let mut p = RequestParser::new(Limits::default());
    assert_eq!(p.parse(b"*1\r\n$12"), Ok(None));
    assert_eq!((p.phase, p.scan), (Phase::BulkHeader, 7));
    let mut p = RequestParser::new(Limits::default());
    assert_eq!(p.parse(b"GET somekey\r"), Ok(None));
    assert_eq!((p.phase, p.scan), (Phase::Inline, 12));
}

#[test]
fn many_pipelined_commands() {
    let mut input = Vec::new();
    for i in 0..100_000 {
        input.extend(multibulk(&[
            b"SET",
            format!("key:{i}").as_bytes(),
            b"value",
        ]));
    }
    let mut p = RequestParser::new(Limits::default());
    let mut at = 0;
    let mut n = 0;
    while let Some(f) = p.parse(&input[at..]).unwrap() {
        assert_eq!(p.args().len(), 3);
        at += f.len;
        n += 1;
    }
    assert_eq!((n, at), (100_000, input.len()));
}

#[test]
fn parser_is_reusable_after_an_error() {
    let mut p = RequestParser::new(Limits::default());
    assert!(p.parse(b"*1\r\n$x\r\n").is_err());
    assert!(p.args().is_empty());
    assert_eq!(
        p.parse(b"PING\r\n"),
        Ok(Some(Frame {
            len: 6,
            kind: FrameKind::Inline
        }))
    );
}

#[test]
fn shrunk_buffers_do_not_panic() {
    // A caller breaking the contract gets nonsense, never a panic.
    let mut p = RequestParser::new(Limits::default());
    assert_eq!(p.parse(b"*2\r\n$3\r\nGET\r\n$5\r\n"), Ok(None));
    let _ = p.parse(b"*2");
    let _ = p.parse(b"");
    let _ = p.parse(b"\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n");
}

// ---- inline commands -------------------------------------------------------------------

fn inline(line: &[u8]) -> Result<Vec<Vec<u8>>, ProtocolError> {
    let (mut got, _) = feed_all_splits(line);
    match got.pop() {
        Some(Got::Frame(FrameKind::Inline, len, args)) => {
            assert_eq!(len, line.len());
            Ok(args)
        }
        Some(Got::Frame(FrameKind::Empty, _, _)) => Ok(vec![]),
        Some(Got::Error(e)) => Err(e),
        other => panic!("{other:?}"),
    }
}

#[test]
fn inline_quoting_like_sdssplitargs() {
    // Expected values are redis-server 7.0.15's answers to ECHO (or its arity error).
    let ok: &[(&[u8], &[&[u8]])] = &[
        (b"PING\n", &[b"PING"]),
        (b"PING\r\n", &[b"PING"]),
        (b"  set  k\tv  \r\n", &[b"set", b"k", b"v"]),
        (b"ECHO \"a\\x41\\n\"\r\n", &[b"ECHO", b"aA\n"]),
        (b"ECHO \"\\x4g\"\r\n", &[b"ECHO", b"x4g"]),
        (
            b"ECHO \"\\r\\t\\b\\a\\\\\\\"\\q\"\r\n",
            &[b"ECHO", b"\r\t\x08\x07\\\"q"],
        ),
        (b"ECHO \"\\xfF\\x00\"\r\n", &[b"ECHO", b"\xff\x00"]),
        (b"ECHO a\"b c\"\r\n", &[b"ECHO", b"ab c"]),
        (b"ECHO 'a\\'b\\n'\r\n", &[b"ECHO", b"a'b\\n"]),
        (b"ECHO \"a\"\x0b\r\n", &[b"ECHO", b"a"]),
        (b"ECHO a\x0bb\r\n", &[b"ECHO", b"a\x0bb"]),
        (b"\x0bPING\r\n", &[b"PING"]),
        (b"ECHO a\rb\r\n", &[b"ECHO", b"a", b"b"]),
        (b"ECHO \"\"\r\n", &[b"ECHO", b""]),
        (b"ECHO '' \"\"\r\n", &[b"ECHO", b"", b""]),
        (b"ECHO \"a\r b\"\r\n", &[b"ECHO", b"a\r b"]),
        (b"ECHO \xc3\xa9\xff\r\n", &[b"ECHO", b"\xc3\xa9\xff"]),
    ];
    for (line, want) in ok {
        assert_eq!(
            inline(line),
            Ok(cmd(want)),
            "{:?}",
            String::from_utf8_lossy(line)
        );
    }
    for line in [
        &b"ECHO \"a\"b\r\n"[..],
        b"ECHO \"abc\r\n",
        b"ECHO 'abc\r\n",
        b"ECHO 'a'b\r\n",
        b"ECHO \"a\\\"\r\n",
        b"ECHO \"a\\\r\n",
        b"set \"\"\"test-key\"\"\" test-value\r\n",
    ] {
        assert_eq!(
            inline(line),
            Err(ProtocolError::UnbalancedQuotes),
            "{:?}",
            String::from_utf8_lossy(line)
        );
    }
    for blank in [&b"\n"[..], b"\r\n", b" \t \r\n", b"\x0b\x0c\r\n", b"\r\r\n"] {
        assert_eq!(inline(blank), Ok(vec![]), "{blank:?}");
    }
}

#[test]
fn inline_is_re_encoded_as_multibulk() {
    let mut p = RequestParser::new(Limits::default());
    let f = p.parse(b"SET k \"a\\r\\nb\"\r\n*1").unwrap().unwrap();
    assert_eq!(
        f,
        Frame {
            len: 16,
            kind: FrameKind::Inline
        }
    );
    assert_eq!(
        p.inline_encoded(),
        b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$4\r\na\r\nb\r\n"
    );
    let enc = p.inline_encoded().to_vec();
    assert_eq!(
        p.args().iter().map(|r| &enc[r.clone()]).collect::<Vec<_>>(),
        [&b"SET"[..], b"k", b"a\r\nb"]
    );
    // The encoding is what a multibulk parse of it gives back.
    let mut q = RequestParser::new(Limits::default());
    let g = q.parse(&enc).unwrap().unwrap();
    assert_eq!((g.len, g.kind), (enc.len(), FrameKind::Multibulk));
    assert_eq!(q.args(), p.args());
}

// ---- property test against redis-protocol ----------------------------------------------

#[derive(Debug, Clone)]
enum Cmd {
    Multibulk(Vec<Vec<u8>>),
    /// Words without blanks or quotes, the separators between them, and the line end.
    Inline(Vec<Vec<u8>>, Vec<&'static [u8]>, &'static [u8]),
    Ignored(&'static [u8]),
}

fn arg_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..24),
        // Bytes that look like protocol, to catch any scanning inside bodies.
        proptest::collection::vec(prop::sample::select(&b"\r\n*$0123\x00"[..]), 0..12),
        (0usize..3000).prop_map(|n| vec![b'x'; n]),
    ]
}

fn word() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(
        prop::sample::select(&b"abcxyzABCXYZ0189_:.-*$+{}\\\x7f\x80\xff"[..]),
        1..10,
    )
}

fn command_strategy() -> impl Strategy<Value = Cmd> {
    prop_oneof![
        6 => proptest::collection::vec(arg_bytes(), 1..8).prop_map(Cmd::Multibulk),
        2 => proptest::collection::vec(word(), 1..6)
            .prop_filter("inline commands cannot start with '*'", |w| w[0][0] != b'*')
            .prop_flat_map(|words| {
                let n = words.len();
                (
                    Just(words),
                    proptest::collection::vec(
                        prop::sample::select(vec![&b" "[..], b"  ", b"\t", b" \t "]),
                        n,
                    ),
                    prop::sample::select(vec![&b"\r\n"[..], b"\n"]),
                )
            })
            .prop_map(|(w, s, e)| Cmd::Inline(w, s, e)),
        1 => prop::sample::select(vec![&b"*0\r\n"[..], b"*-1\r\n", b"\r\n", b"\n", b"  \r\n"])
            .prop_map(Cmd::Ignored),
    ]
}

fn encode_cmd(c: &Cmd, out: &mut Vec<u8>) {
    match c {
        Cmd::Multibulk(args) => {
            let refs: Vec<&[u8]> = args.iter().map(|a| &a[..]).collect();
            out.extend(multibulk(&refs));
        }
        Cmd::Inline(words, seps, end) => {
            for (i, w) in words.iter().enumerate() {
                if i > 0 {
                    out.extend_from_slice(seps[i]);
                }
                out.extend_from_slice(w);
            }
            out.extend_from_slice(seps[0]);
            out.extend_from_slice(end);
        }
        Cmd::Ignored(bytes) => out.extend_from_slice(bytes),
    }
}

/// The oracle: redis-protocol's RESP2 decoder for multibulk commands (each decoded from
/// where it starts in the pipeline), the generated words for inline ones.
fn oracle(cmds: &[Cmd], buf: &[u8]) -> Vec<Vec<Vec<u8>>> {
    use redis_protocol::resp2::{decode::decode, types::OwnedFrame};
    let mut want = Vec::new();
    let mut at = 0;
    for c in cmds {
        let mut one = Vec::new();
        encode_cmd(c, &mut one);
        match c {
            Cmd::Multibulk(_) => {
                let (frame, len) = decode(&buf[at..])
                    .expect("oracle error")
                    .expect("oracle: incomplete");
                assert_eq!(len, one.len());
                let OwnedFrame::Array(items) = frame else {
                    panic!("oracle: not an array")
                };
                want.push(
                    items
                        .into_iter()
                        .map(|f| match f {
                            OwnedFrame::BulkString(b) => b,
                            other => panic!("oracle: not a bulk: {other:?}"),
                        })
                        .collect(),
                );
            }
            Cmd::Inline(words, _, _) => want.push(words.clone()),
            Cmd::Ignored(_) => {}
        }
        at += one.len();
    }
    want
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn pipelines_match_redis_protocol(
        cmds in proptest::collection::vec(command_strategy(), 1..12),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..8),
    ) {
        let mut buf = Vec::new();
        for c in &cmds {
            encode_cmd(c, &mut buf);
        }
        let want = oracle(&cmds, &buf);
        let cuts: Vec<usize> = cuts.iter().map(|i| i.index(buf.len() + 1)).collect();
        let (got, rest) = feed_with(&mut RequestParser::new(Limits::default()), &buf, &cuts);
        prop_assert_eq!(rest, 0);
        prop_assert_eq!(only_args(&got), want);
    }
}
