//! The RDB reader and the value decoder (backup files and replication payloads): never
//! panic, whatever the bytes; a small value limit exercises the pieces of big values.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sync::rdb::{decode, Event, RdbReader};

fuzz_target!(|data: &[u8]| {
    for limit in [u64::MAX, 64] {
        let mut rd = RdbReader::new(data);
        rd.set_value_limit(limit);
        for _ in 0..10_000 {
            match rd.next_event() {
                Ok(Some(Event::Key(k))) => {
                    let _ = decode::decode_entry(&k);
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
    }
});
