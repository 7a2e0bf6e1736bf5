//! The request scanner (what clients send the proxy): never panics, frames stay inside the
//! buffer, and feeding the same bytes in two pieces gives the same first frame as feeding
//! them whole (it is resumable).
#![no_main]

use libfuzzer_sys::fuzz_target;
use resp::{FrameKind, Limits, RequestParser};

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_bulk_len: 1 << 20,
        ..Limits::default()
    };
    let mut whole = RequestParser::new(limits.clone());
    let mut pos = 0;
    let mut first = None;
    for _ in 0..1000 {
        match whole.parse(&data[pos..]) {
            Ok(Some(f)) => {
                assert!(f.len > 0 && pos + f.len <= data.len());
                if f.kind == FrameKind::Multibulk {
                    for r in whole.args() {
                        assert!(r.start <= r.end && r.end <= f.len);
                    }
                }
                first.get_or_insert(f.len);
                pos += f.len;
            }
            Ok(None) | Err(_) => break,
        }
    }
    // The first frame again, the bytes arriving in two pieces.
    let cut = data.first().map_or(0, |&b| b as usize % (data.len() + 1));
    let mut split = RequestParser::new(limits);
    let early = split.parse(&data[..cut]);
    let again = match early {
        Ok(Some(f)) => Some(f.len),
        Ok(None) => split.parse(data).ok().flatten().map(|f| f.len),
        Err(_) => return,
    };
    if let (Some(a), Some(b)) = (first, again) {
        assert_eq!(a, b);
    }
});
