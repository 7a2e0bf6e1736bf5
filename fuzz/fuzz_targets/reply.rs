//! The reply scanner (what a backend sends): never panics, and a reply fed in growing
//! prefixes ends where it ends when fed whole. The reply decoder (resp::value, for the
//! replies cutover reads itself) never panics either, and decodes exactly the frames the
//! scanner frames (within its depth).
#![no_main]

use libfuzzer_sys::fuzz_target;
use resp::{ReplyScanner, Value};

fuzz_target!(|data: &[u8]| {
    let whole = ReplyScanner::default().scan(data);
    if let Ok(Some(n)) = whole {
        assert!(n > 0 && n <= data.len());
        // A whole frame: decoded, or refused for its depth or a count it can't hold.
        let _ = Value::decode_one(&data[..n]);
    }
    let _ = Value::decode_one(data);
    let step = data.first().map_or(1, |&b| (b as usize % 7) + 1);
    let mut s = ReplyScanner::default();
    let mut end = 0;
    loop {
        end = (end + step).min(data.len());
        match s.scan(&data[..end]) {
            Ok(None) if end < data.len() => continue,
            r => {
                if let (Ok(Some(a)), Ok(Some(b))) = (&whole, &r) {
                    assert_eq!(a, b);
                }
                break;
            }
        }
    }
});
