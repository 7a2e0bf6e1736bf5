//! DUMP payloads (what a source or a target sends the SCAN copy and verify): the canonical
//! digest never panics on any bytes, and a payload the RDB builder takes makes an RDB the
//! reader reads to its end or rejects, without panicking either.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sync::rdb::RdbReader;
use sync::source::scan::RdbOut;

fuzz_target!(|data: &[u8]| {
    let _ = sync::verify::digest::of_payload(data);
    let mut out = RdbOut::new();
    let expire = data.first().map_or(0, |&b| i64::from(b) * 1_000_000);
    if out.key(0, b"k", data, expire).is_ok() {
        let mut file = out.take().to_vec();
        file.extend_from_slice(&out.finish());
        let mut rd = RdbReader::new(&file[..]);
        for _ in 0..64 {
            match rd.next_event() {
                Ok(Some(_)) => {}
                _ => break,
            }
        }
    }
});
