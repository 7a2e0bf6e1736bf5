//! Throughput of the RESP scanners on the proxy's hot paths: client requests (pipelined SET
//! and GET) and server replies (typical small replies, and one big bulk arriving in
//! socket-sized pieces, which must cost O(bytes) rather than O(bytes x pieces)).
//!
//! Run: `cargo bench -p cutover-benches -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use resp::request::{Limits, RequestParser};
use resp::ReplyScanner;

const COMMANDS: usize = 10_000;

fn push_command(out: &mut Vec<u8>, args: &[&[u8]]) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

fn pipeline(get: bool) -> Vec<u8> {
    let value = [b'v'; 100];
    let mut out = Vec::new();
    for i in 0..COMMANDS {
        let key = format!("key:{i:04}");
        if get {
            push_command(&mut out, &[b"GET", key.as_bytes()]);
        } else {
            push_command(&mut out, &[b"SET", key.as_bytes(), &value]);
        }
    }
    out
}

/// Parses every command of `buf` the way the proxy does: frame by frame from the front.
fn parse_all(parser: &mut RequestParser, buf: &[u8]) -> usize {
    let mut at = 0;
    let mut args = 0;
    while let Ok(Some(frame)) = parser.parse(&buf[at..]) {
        args += parser.args().len();
        at += frame.len;
    }
    assert_eq!(at, buf.len());
    args
}

fn requests(c: &mut Criterion) {
    let mut group = c.benchmark_group("request");
    for (name, buf) in [
        ("set_100B_x10k", pipeline(false)),
        ("get_x10k", pipeline(true)),
    ] {
        group.throughput(Throughput::Bytes(buf.len() as u64));
        let mut parser = RequestParser::new(Limits::default());
        group.bench_function(name, |b| b.iter(|| parse_all(&mut parser, black_box(&buf))));
    }
    group.finish();
}

fn scan_all(scanner: &mut ReplyScanner, buf: &[u8]) -> usize {
    let mut at = 0;
    let mut n = 0;
    while let Ok(Some(len)) = scanner.scan(&buf[at..]) {
        at += len;
        n += 1;
    }
    assert_eq!(at, buf.len());
    n
}

fn replies(c: &mut Criterion) {
    let mut group = c.benchmark_group("reply");

    // +OK, a 100-byte bulk, and an array of 10 such bulks, repeated.
    let bulk = format!("$100\r\n{}\r\n", "v".repeat(100));
    let mut typical = Vec::new();
    for _ in 0..COMMANDS / 3 {
        typical.extend_from_slice(b"+OK\r\n");
        typical.extend_from_slice(bulk.as_bytes());
        typical.extend_from_slice(b"*10\r\n");
        for _ in 0..10 {
            typical.extend_from_slice(bulk.as_bytes());
        }
    }
    group.throughput(Throughput::Bytes(typical.len() as u64));
    let mut scanner = ReplyScanner::default();
    group.bench_function("typical_mix", |b| {
        b.iter(|| scan_all(&mut scanner, black_box(&typical)))
    });

    // A 4 MB bulk arriving 16 KiB at a time: the scanner is called once per piece.
    let len = 4 << 20;
    let mut big = format!("${len}\r\n").into_bytes();
    big.resize(big.len() + len, b'x');
    big.extend_from_slice(b"\r\n");
    group.throughput(Throughput::Bytes(big.len() as u64));
    let mut scanner = ReplyScanner::default();
    group.bench_function("bulk_4MB_in_16KiB_pieces", |b| {
        b.iter(|| {
            let mut fed = 0;
            loop {
                fed = (fed + 16 * 1024).min(big.len());
                match scanner.scan(black_box(&big[..fed])) {
                    Ok(Some(n)) => break n,
                    Ok(None) => {}
                    Err(e) => panic!("{e}"),
                }
            }
        })
    });
    group.finish();
}

criterion_group!(benches, requests, replies);
criterion_main!(benches);
