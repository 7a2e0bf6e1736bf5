//! Tests of the reply scanner: every type, nesting, attributes, partial feeds at every
//! split point, limits, and property tests against the redis-protocol crate's decoders.

use super::*;
use proptest::prelude::*;

/// Feeds `input` in pieces ending at `cuts` (plus the end) and returns the lengths of the
/// replies found, the bytes left over, and the error if one ended the stream.
fn feed_with(
    s: &mut ReplyScanner,
    input: &[u8],
    cuts: &[usize],
) -> (Vec<usize>, usize, Option<ReplyError>) {
    let mut lens = Vec::new();
    let mut buf = Vec::new();
    let mut fed = 0;
    let mut ends: Vec<usize> = cuts.iter().copied().filter(|&c| c <= input.len()).collect();
    ends.sort_unstable();
    ends.push(input.len());
    for end in ends {
        buf.extend_from_slice(&input[fed..end.max(fed)]);
        fed = end.max(fed);
        loop {
            match s.scan(&buf) {
                Ok(Some(n)) => {
                    assert!(n > 0 && n <= buf.len());
                    lens.push(n);
                    buf.drain(..n);
                }
                Ok(None) => break,
                Err(e) => return (lens, buf.len(), Some(e)),
            }
        }
    }
    (lens, buf.len(), None)
}

fn feed(input: &[u8]) -> (Vec<usize>, usize, Option<ReplyError>) {
    feed_with(&mut ReplyScanner::default(), input, &[])
}

/// Whole, every two-piece split and byte by byte must agree.
fn feed_all_splits(input: &[u8]) -> (Vec<usize>, usize, Option<ReplyError>) {
    let whole = feed(input);
    for cut in 0..=input.len() {
        let got = feed_with(&mut ReplyScanner::default(), input, &[cut]);
        assert_eq!(
            got,
            whole,
            "split at {cut} of {:?}",
            String::from_utf8_lossy(input)
        );
    }
    let bytewise: Vec<usize> = (0..input.len()).collect();
    assert_eq!(
        feed_with(&mut ReplyScanner::default(), input, &bytewise),
        whole
    );
    whole
}

fn one(input: &[u8]) -> Result<Option<usize>, ReplyError> {
    ReplyScanner::default().scan(input)
}

#[test]
fn every_type() {
    let replies: &[&[u8]] = &[
        b"+OK\r\n",
        b"-ERR unknown command 'x'\r\n",
        b":-42\r\n",
        b"$3\r\nfoo\r\n",
        b"$0\r\n\r\n",
        b"$-1\r\n",
        b"$4\r\n\r\n\r\n\r\n",
        b"*-1\r\n",
        b"*0\r\n",
        b"*2\r\n$1\r\na\r\n:1\r\n",
        b"_\r\n",
        b"#t\r\n",
        b",3.14\r\n",
        b",-inf\r\n",
        b"(3492890328409238509324850943850943825024385\r\n",
        b"!21\r\nSYNTAX invalid syntax\r\n",
        b"=15\r\ntxt:Some string\r\n",
        b"%2\r\n+first\r\n:1\r\n+second\r\n:2\r\n",
        b"%0\r\n",
        b"~3\r\n+a\r\n+b\r\n+c\r\n",
        b">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$5\r\nhello\r\n",
        b"|1\r\n+key-popularity\r\n%2\r\n$1\r\na\r\n,0.1923\r\n$1\r\nb\r\n,0.0012\r\n*2\r\n:2039123\r\n:9543892\r\n",
        b".\r\n",
        // A lone '\r' is content of a simple string (as hiredis reads it).
        b"+a\rb\r\n",
        b"+\r\n",
    ];
    let mut all = Vec::new();
    for r in replies {
        assert_eq!(
            one(r),
            Ok(Some(r.len())),
            "{:?}",
            String::from_utf8_lossy(r)
        );
        all.extend_from_slice(r);
    }
    let (lens, rest, err) = feed_all_splits(&all);
    assert_eq!(lens, replies.iter().map(|r| r.len()).collect::<Vec<_>>());
    assert_eq!((rest, err), (0, None));
}

#[test]
fn nesting_and_attributes() {
    let replies: &[&[u8]] = &[
        // EXEC with nested replies.
        b"*3\r\n+OK\r\n*2\r\n$1\r\na\r\n*0\r\n$-1\r\n",
        b"*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n",
        // Empty aggregates close their parent correctly.
        b"*2\r\n*0\r\n%0\r\n",
        b"*2\r\n*-1\r\n~0\r\n",
        // Maps count pairs.
        b"%1\r\n*2\r\n:1\r\n:2\r\n%1\r\n+k\r\n+v\r\n",
        // Attributes inside an array: each annotates the element that follows it.
        b"*2\r\n|1\r\n+a\r\n+b\r\n:1\r\n|0\r\n:2\r\n",
        // An attribute before an attribute, and an attribute before an aggregate.
        b"|1\r\n+a\r\n+b\r\n|1\r\n+c\r\n+d\r\n*1\r\n$1\r\nx\r\n",
        // A push inside an array and blobs with protocol-looking bodies.
        b"*2\r\n>1\r\n$4\r\n*1\r\n\r\n!3\r\n$-1\r\n",
    ];
    let mut all = Vec::new();
    for r in replies {
        assert_eq!(
            one(r),
            Ok(Some(r.len())),
            "{:?}",
            String::from_utf8_lossy(r)
        );
        all.extend_from_slice(r);
    }
    let (lens, rest, err) = feed_all_splits(&all);
    assert_eq!(lens, replies.iter().map(|r| r.len()).collect::<Vec<_>>());
    assert_eq!((rest, err), (0, None));
    // An attribute alone is not a reply yet.
    assert_eq!(one(b"|1\r\n+a\r\n+b\r\n"), Ok(None));
}

#[test]
fn incomplete_replies_wait() {
    for r in [
        &b""[..],
        b"+OK",
        b"+OK\r",
        b"$3\r\nfoo",
        b"$3\r\nfoo\r",
        b"*2\r\n:1\r\n",
        b"%1\r\n+k\r\n",
        b"$2147483647\r\n",
        b"*9223372036854775807\r\n",
    ] {
        assert_eq!(one(r), Ok(None), "{:?}", String::from_utf8_lossy(r));
    }
}

#[test]
fn invalid_replies() {
    use ReplyError::*;
    for (r, want) in [
        (&b"@x\r\n"[..], InvalidType(b'@')),
        (b";4\r\nabcd\r\n", InvalidType(b';')),
        (b"\r\n", InvalidType(b'\r')),
        (b"*1\r\nx\r\n", InvalidType(b'x')),
        (b"$-2\r\n", InvalidLength),
        (b"$abc\r\n", InvalidLength),
        (b"$\r\n", InvalidLength),
        (b"$+3\r\nfoo\r\n", InvalidLength),
        (b"$ 3\r\nfoo\r\n", InvalidLength),
        (b"$?\r\n;3\r\nfoo\r\n;0\r\n", InvalidLength),
        (b"*?\r\n", InvalidLength),
        (b"%-1\r\n", InvalidLength),
        (b"~-1\r\n", InvalidLength),
        (b"!-1\r\n", InvalidLength),
        (b"*18446744073709551616\r\n", InvalidLength),
        (b"%9223372036854775808\r\n", InvalidLength),
        (b"$18446744073709551615\r\n", InvalidLength),
        (b"$3\r\nfooXY", MissingCrlf),
        (b"$3\r\nfoo\n\r", MissingCrlf),
        (b"*2\r\n$0\r\nab", MissingCrlf),
    ] {
        assert_eq!(one(r), Err(want), "{:?}", String::from_utf8_lossy(r));
    }
}

#[test]
fn deep_nesting_is_refused_without_recursion() {
    // What Redis answers to a Lua table that contains itself: ~8000 levels, then an error.
    let mut lua = b"*1\r\n".repeat(7995);
    lua.extend_from_slice(b"-ERR reached lua stack limit\r\n");
    assert_eq!(one(&lua), Ok(Some(lua.len())));
    let mut deep = b"*1\r\n".repeat(10_000);
    deep.extend_from_slice(b":1\r\n");
    assert_eq!(
        ReplyScanner::new(5_000).scan(&deep),
        Err(ReplyError::TooDeep(5_000))
    );
    // Allowed, it is scanned iteratively: no stack overflow at any depth.
    let mut s = ReplyScanner::new(20_000);
    assert_eq!(s.scan(&deep), Ok(Some(deep.len())));
    // Exactly at the cap.
    let mut at_cap = b"%1\r\n+k\r\n".repeat(DEFAULT_MAX_DEPTH);
    at_cap.extend_from_slice(b"_\r\n");
    assert_eq!(one(&at_cap), Ok(Some(at_cap.len())));
    let mut over = b">1\r\n".to_vec();
    over.extend_from_slice(&at_cap);
    assert_eq!(one(&over), Err(ReplyError::TooDeep(DEFAULT_MAX_DEPTH)));
    assert_eq!(
        ReplyScanner::new(0).scan(b"*1\r\n:1\r\n"),
        Err(ReplyError::TooDeep(0))
    );
    assert_eq!(ReplyScanner::new(0).scan(b"*0\r\n"), Ok(Some(4)));
}

#[test]
fn header_and_line_caps() {
    let mut long_header = b"$".to_vec();
    long_header.resize(DEFAULT_MAX_HEADER_LEN + 2, b'1');
    assert_eq!(
        one(&long_header),
        Err(ReplyError::HeaderTooLong(DEFAULT_MAX_HEADER_LEN))
    );
    // At the cap, no error yet (a lone trailing '\r' may start the CRLF).
    assert_eq!(one(&long_header[..DEFAULT_MAX_HEADER_LEN + 1]), Ok(None));
    let mut with_cr = long_header[..DEFAULT_MAX_HEADER_LEN + 1].to_vec();
    with_cr.push(b'\r');
    assert_eq!(one(&with_cr), Ok(None));

    // Simple lines may be long (MONITOR, Lua error replies).
    let mut monitor = b"+1700000000.000000 [0 127.0.0.1:5000] \"SET\" \"k\" \"".to_vec();
    monitor.resize(1 << 20, b'v');
    monitor.extend_from_slice(b"\"\r\n");
    assert_eq!(one(&monitor), Ok(Some(monitor.len())));
    let mut s = ReplyScanner::with_limits(8, 16, 32);
    assert_eq!(s.scan(&monitor), Err(ReplyError::HeaderTooLong(32)));
    let mut s = ReplyScanner::with_limits(8, 16, 32);
    assert_eq!(
        s.scan(b"+0123456789012345678901234567890\r\n"),
        Ok(Some(34))
    );
    let mut s = ReplyScanner::with_limits(8, 2, 32);
    assert_eq!(s.scan(b"*10\r\n"), Ok(None));
    let mut s = ReplyScanner::with_limits(8, 2, 32);
    assert_eq!(s.scan(b"*100\r\n"), Err(ReplyError::HeaderTooLong(2)));
}

#[test]
fn big_bulk_in_pieces_is_examined_once() {
    let len = 4 << 20;
    let mut reply = format!("${len}\r\n").into_bytes();
    let header = reply.len();
    reply.resize(header + len, b'\r');
    reply.extend_from_slice(b"\r\n");
    let mut s = ReplyScanner::default();
    let mut fed = 0;
    let mut calls = 0;
    while fed < reply.len() {
        fed = (fed + 16 * 1024).min(reply.len());
        calls += 1;
        match s.scan(&reply[..fed]) {
            Ok(None) => {
                // Once the header is read, the body is only waited for.
                assert_eq!(s.phase, Phase::Blob(header + len));
            }
            Ok(Some(n)) => assert_eq!((n, fed), (reply.len(), reply.len())),
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(calls, reply.len().div_ceil(16 * 1024));
    // Ready for the next reply at once.
    assert_eq!(s.scan(b":1\r\n"), Ok(Some(4)));

    // A long simple line fed in pieces: the CRLF search resumes where it stopped.
    let mut s = ReplyScanner::default();
    let mut line = b"+".to_vec();
    line.resize(100_000, b'x');
    assert_eq!(s.scan(&line), Ok(None));
    assert_eq!(s.scan, line.len());
    line.push(b'\r');
    assert_eq!(s.scan(&line), Ok(None));
    assert_eq!(s.scan, line.len() - 1);
    line.push(b'\n');
    assert_eq!(s.scan(&line), Ok(Some(line.len())));
}

#[test]
fn reset_forgets_progress() {
    let mut s = ReplyScanner::default();
    assert_eq!(s.scan(b"*2\r\n$5\r\nab"), Ok(None));
    s.reset();
    assert_eq!(s.scan(b"+OK\r\n"), Ok(Some(5)));
    // And after an error, the scanner starts afresh too.
    assert!(s.scan(b"*1\r\n@\r\n").is_err());
    assert_eq!(s.scan(b":1\r\n"), Ok(Some(4)));
}

#[test]
fn shrunk_buffers_do_not_panic() {
    let mut s = ReplyScanner::default();
    assert_eq!(s.scan(b"*2\r\n$5\r\nabc"), Ok(None));
    let _ = s.scan(b"*2");
    let _ = s.scan(b"");
    let _ = s.scan(b"\r\n\r\n\r\n\r\n\r\n\r\n");
}

// ---- property tests against redis-protocol ---------------------------------------------

/// A reply tree, restricted to what redis-protocol's RESP3 decoder accepts (map keys and
/// set members are non-aggregates; no attribute before a null or another attribute).
#[derive(Debug, Clone)]
enum R {
    Line(u8, Vec<u8>),
    Blob(u8, Vec<u8>),
    Agg(u8, Vec<R>),
    Map(u8, Vec<(R, R)>),
    Attr(Vec<(R, R)>, Box<R>),
}

fn encode(r: &R, out: &mut Vec<u8>) {
    match r {
        R::Line(t, body) => {
            out.push(*t);
            out.extend_from_slice(body);
            out.extend_from_slice(b"\r\n");
        }
        R::Blob(t, body) => {
            out.extend_from_slice(format!("{}{}\r\n", char::from(*t), body.len()).as_bytes());
            out.extend_from_slice(body);
            out.extend_from_slice(b"\r\n");
        }
        R::Agg(t, items) => {
            out.extend_from_slice(format!("{}{}\r\n", char::from(*t), items.len()).as_bytes());
            items.iter().for_each(|i| encode(i, out));
        }
        R::Map(t, pairs) => {
            out.extend_from_slice(format!("{}{}\r\n", char::from(*t), pairs.len()).as_bytes());
            for (k, v) in pairs {
                encode(k, out);
                encode(v, out);
            }
        }
        R::Attr(pairs, inner) => {
            encode(&R::Map(b'|', pairs.clone()), out);
            encode(inner, out);
        }
    }
}

fn text() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(prop::sample::select(&b"abcXYZ 019:.-_*$%"[..]), 0..16)
}

fn leaf() -> impl Strategy<Value = R> {
    prop_oneof![
        text().prop_map(|t| R::Line(b'+', t)),
        text().prop_map(|t| R::Line(b'-', [&b"ERR "[..], &t].concat())),
        any::<i64>().prop_map(|n| R::Line(b':', n.to_string().into_bytes())),
        (-1_000_000i32..1_000_000)
            .prop_map(|n| R::Line(b',', format!("{}", f64::from(n) / 64.0).into_bytes())),
        any::<bool>().prop_map(|b| R::Line(b'#', if b { b"t".to_vec() } else { b"f".to_vec() })),
        Just(R::Line(b'_', vec![])),
        "[1-9][0-9]{0,40}".prop_map(|n| R::Line(b'(', n.into_bytes())),
        proptest::collection::vec(any::<u8>(), 0..40).prop_map(|b| R::Blob(b'$', b)),
        proptest::collection::vec(prop::sample::select(&b"\r\n*$:+"[..]), 0..8)
            .prop_map(|b| R::Blob(b'$', b)),
        (0usize..5000).prop_map(|n| R::Blob(b'$', vec![b'z'; n])),
        text().prop_map(|t| R::Blob(b'!', [&b"ERR "[..], &t].concat())),
        proptest::collection::vec(any::<u8>(), 0..20)
            .prop_map(|b| R::Blob(b'=', [&b"txt:"[..], &b].concat())),
    ]
}

fn not_null(r: &R) -> bool {
    !matches!(r, R::Line(b'_', _) | R::Attr(..))
}

fn resp3_tree() -> impl Strategy<Value = R> {
    leaf().prop_recursive(5, 96, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(|v| R::Agg(b'*', v)),
            proptest::collection::vec(inner.clone(), 0..4).prop_map(|v| R::Agg(b'>', v)),
            proptest::collection::vec(leaf(), 0..5).prop_map(|v| R::Agg(b'~', v)),
            proptest::collection::vec((leaf(), inner.clone()), 0..4).prop_map(|v| R::Map(b'%', v)),
            (
                proptest::collection::vec((leaf(), leaf()), 0..3),
                inner.prop_filter("attribute target", not_null),
            )
                .prop_map(|(a, r)| R::Attr(a, Box::new(r))),
        ]
    })
}

fn resp2_tree() -> impl Strategy<Value = R> {
    let leaf = prop_oneof![
        text().prop_map(|t| R::Line(b'+', t)),
        text().prop_map(|t| R::Line(b'-', [&b"ERR "[..], &t].concat())),
        any::<i64>().prop_map(|n| R::Line(b':', n.to_string().into_bytes())),
        proptest::collection::vec(any::<u8>(), 0..40).prop_map(|b| R::Blob(b'$', b)),
        Just(R::Line(b'$', b"-1".to_vec())),
        Just(R::Line(b'*', b"-1".to_vec())),
    ];
    leaf.prop_recursive(6, 96, 6, |inner| {
        proptest::collection::vec(inner, 0..6).prop_map(|v| R::Agg(b'*', v))
    })
}

/// Splits `buf` into whole replies with `decode` (the oracle) and checks our scanner
/// finds the same boundaries, whichever way the bytes arrive.
fn check_against<F>(
    trees: &[R],
    cuts: &[prop::sample::Index],
    decode: F,
) -> Result<(), TestCaseError>
where
    F: Fn(&[u8]) -> Option<usize>,
{
    let mut buf = Vec::new();
    let mut expected = Vec::new();
    for t in trees {
        let before = buf.len();
        encode(t, &mut buf);
        expected.push(buf.len() - before);
    }
    let mut at = 0;
    let mut oracle = Vec::new();
    while at < buf.len() {
        let n = decode(&buf[at..]).ok_or_else(|| TestCaseError::fail("oracle failed"))?;
        oracle.push(n);
        at += n;
    }
    prop_assert_eq!(&oracle, &expected);
    let cuts: Vec<usize> = cuts.iter().map(|i| i.index(buf.len() + 1)).collect();
    let (lens, rest, err) = feed_with(&mut ReplyScanner::default(), &buf, &cuts);
    prop_assert_eq!(err, None);
    prop_assert_eq!(rest, 0);
    prop_assert_eq!(lens, expected);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn resp3_boundaries_match_redis_protocol(
        trees in proptest::collection::vec(resp3_tree(), 1..6),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..10),
    ) {
        check_against(&trees, &cuts, |b| {
            match redis_protocol::resp3::decode::complete::decode(b) {
                Ok(Some((_, n))) => Some(n),
                _ => None,
            }
        })?;
    }

    #[test]
    fn resp2_boundaries_match_redis_protocol(
        trees in proptest::collection::vec(resp2_tree(), 1..6),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..10),
    ) {
        check_against(&trees, &cuts, |b| match redis_protocol::resp2::decode::decode(b) {
            Ok(Some((_, n))) => Some(n),
            _ => None,
        })?;
    }
}
