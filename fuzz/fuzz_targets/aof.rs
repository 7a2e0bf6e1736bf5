//! AOF input: the manifest parser (with Redis's quoting rules) and the stream front over
//! the commands of an AOF (annotations, MULTI/EXEC, SELECT): never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use resp::{Limits, RequestParser};
use sync::source::aof::{parse_manifest, split_args};
use sync::stream::Front;
use sync::SyncStatus;

fuzz_target!(|data: &[u8]| {
    let _ = parse_manifest(data);
    for line in data.split(|&b| b == b'\n').take(64) {
        let _ = split_args(line);
    }
    let status = SyncStatus::default();
    let front = Front::new(false, Some(1_700_000_000));
    let mut parser = RequestParser::new(Limits::default());
    let mut pos = 0;
    for _ in 0..1000 {
        match parser.parse(&data[pos..]) {
            Ok(Some(f)) => {
                let _ = front.step(&parser, f.kind, &data[pos..], (pos + f.len) as i64, &status);
                pos += f.len;
            }
            Ok(None) | Err(_) => break,
        }
    }
});
