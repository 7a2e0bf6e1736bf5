//! CRC64 as Redis computes it for RDB files and DUMP payloads (src/crc64.c): the "Jones"
//! polynomial 0xad93d23594c935a9, reflected input and output, initial value 0, no final
//! xor. `crc64(0, b"123456789") == 0xe9c6d914c4b8d9ca`.
//!
//! It runs over every byte of multi-GB RDB transfers, so it is fast: on x86-64 with
//! PCLMULQDQ (checked at run time) long inputs are folded 64 bytes at a time with
//! carry-less multiplication (many GB/s); everything else is table driven, slice-by-8
//! (eight 256-entry tables, 16 KiB, built at compile time; about 1.5 GB/s here).

/// The Jones polynomial with its bits reversed (the reflected form used by the
/// right-shifting algorithm).
const POLY_REFLECTED: u64 = 0x95ac_9329_ac4b_c9b5;

const fn make_tables() -> [[u64; 256]; 8] {
    let mut t = [[0u64; 256]; 8];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u64;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 == 1 {
                (c >> 1) ^ POLY_REFLECTED
            } else {
                c >> 1
            };
            k += 1;
        }
        t[0][i] = c;
        i += 1;
    }
    // t[k][i]: the CRC contribution of byte i followed by k zero bytes.
    let mut k = 1;
    while k < 8 {
        let mut i = 0;
        while i < 256 {
            let prev = t[k - 1][i];
            t[k][i] = (prev >> 8) ^ t[0][(prev & 0xff) as usize];
            i += 1;
        }
        k += 1;
    }
    t
}

static TABLES: [[u64; 256]; 8] = make_tables();

/// Continues a CRC64 over `data`. Start with `crc = 0`; feeding a buffer in pieces gives
/// the same result as feeding it whole.
pub fn crc64(crc: u64, data: &[u8]) -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        if data.len() >= clmul::MIN_LEN && clmul::available() {
            // SAFETY: the CPU supports the instructions (checked just above).
            return unsafe { clmul::crc64(crc, data) };
        }
    }
    crc64_table(crc, data)
}

/// The slice-by-8 table implementation.
fn crc64_table(crc: u64, data: &[u8]) -> u64 {
    let t = &TABLES;
    let mut crc = crc;
    let mut chunks = data.chunks_exact(8);
    for chunk in &mut chunks {
        let word = u64::from_le_bytes(chunk.try_into().expect("chunk of 8"));
        let x = crc ^ word;
        crc = t[7][(x & 0xff) as usize]
            ^ t[6][((x >> 8) & 0xff) as usize]
            ^ t[5][((x >> 16) & 0xff) as usize]
            ^ t[4][((x >> 24) & 0xff) as usize]
            ^ t[3][((x >> 32) & 0xff) as usize]
            ^ t[2][((x >> 40) & 0xff) as usize]
            ^ t[1][((x >> 48) & 0xff) as usize]
            ^ t[0][(x >> 56) as usize];
    }
    for &b in chunks.remainder() {
        crc = t[0][((crc ^ b as u64) & 0xff) as usize] ^ (crc >> 8);
    }
    crc
}

/// `x^n mod P` in normal bit order (bit i = coefficient of x^i), P the Jones polynomial.
const fn xpow_mod(n: u32) -> u64 {
    const POLY: u64 = 0xad93_d235_94c9_35a9;
    let mut r: u64 = 1;
    let mut i = 0;
    while i < n {
        let carry = r >> 63;
        r <<= 1;
        if carry == 1 {
            r ^= POLY;
        }
        i += 1;
    }
    r
}

/// Carry-less multiplication folding (the method of Intel's "Fast CRC Computation for
/// Generic Polynomials Using PCLMULQDQ"), in the reflected domain:
///
/// 16 bytes loaded little-endian are a 128-bit value whose bit j is the coefficient of
/// x^(127-j) of that block; its low lane H (first 8 bytes) is the high half. Appending a
/// block B after `n` bits of distance is `X * x^n + B = H * x^(n+64) + L * x^n + B (mod P)`;
/// each 64x64 carry-less product of reflected operands comes out multiplied by x, hence
/// the constants `x^(n+63) mod P` and `x^(n-1) mod P`. Four accumulators run 64 bytes
/// apart to hide the multiplier's latency; they are folded into one at the end, and that
/// last 128-bit state is reduced by running the table CRC over its 16 bytes (the CRC of a
/// block is exactly `block * x^64 mod P`).
#[cfg(target_arch = "x86_64")]
mod clmul {
    use super::{crc64_table, xpow_mod};
    use std::arch::x86_64::*;
    use std::sync::atomic::{AtomicU8, Ordering};

    /// Below this the table is as fast.
    pub(super) const MIN_LEN: usize = 128;

    /// Multipliers for a fold over `n` bits: [low lane (H), high lane (L)].
    const fn keys(n: u32) -> [u64; 2] {
        [
            xpow_mod(n + 63).reverse_bits(),
            xpow_mod(n - 1).reverse_bits(),
        ]
    }
    const K512: [u64; 2] = keys(512);
    const K128: [u64; 2] = keys(128);

    pub(super) fn available() -> bool {
        // 0 unknown, 1 no, 2 yes.
        static STATE: AtomicU8 = AtomicU8::new(0);
        match STATE.load(Ordering::Relaxed) {
            0 => {
                let yes = is_x86_feature_detected!("pclmulqdq") && is_x86_feature_detected!("sse2");
                STATE.store(if yes { 2 } else { 1 }, Ordering::Relaxed);
                yes
            }
            s => s == 2,
        }
    }

    #[inline]
    #[target_feature(enable = "pclmulqdq,sse2")]
    fn fold(x: __m128i, k: __m128i, block: __m128i) -> __m128i {
        let h = _mm_clmulepi64_si128::<0x00>(x, k);
        let l = _mm_clmulepi64_si128::<0x11>(x, k);
        _mm_xor_si128(_mm_xor_si128(h, l), block)
    }

    #[target_feature(enable = "pclmulqdq,sse2")]
    pub(super) unsafe fn crc64(crc: u64, data: &[u8]) -> u64 {
        debug_assert!(data.len() >= MIN_LEN);
        let load = |i: usize| -> __m128i {
            let b: [u8; 16] = data[i..i + 16].try_into().expect("16 bytes");
            // SAFETY: unaligned load from a 16-byte array.
            unsafe { _mm_loadu_si128(b.as_ptr().cast()) }
        };
        let keys = |k: [u64; 2]| _mm_set_epi64x(k[1] as i64, k[0] as i64);
        let (k512, k128) = (keys(K512), keys(K128));

        // The running CRC is XORed into the first 8 bytes, as the table method does.
        let mut x = [load(0), load(16), load(32), load(48)];
        x[0] = _mm_xor_si128(x[0], _mm_set_epi64x(0, crc as i64));
        let mut i = 64;
        while data.len() - i >= 64 {
            for (j, acc) in x.iter_mut().enumerate() {
                *acc = fold(*acc, k512, load(i + 16 * j));
            }
            i += 64;
        }
        let mut acc = fold(x[0], k128, x[1]);
        acc = fold(acc, k128, x[2]);
        acc = fold(acc, k128, x[3]);
        while data.len() - i >= 16 {
            acc = fold(acc, k128, load(i));
            i += 16;
        }
        let mut state = [0u8; 16];
        // SAFETY: unaligned store into a 16-byte array.
        unsafe { _mm_storeu_si128(state.as_mut_ptr().cast(), acc) };
        crc64_table(crc64_table(0, &state), &data[i..])
    }
}

#[cfg(test)]
mod tests {
    use super::crc64;

    /// Bit-at-a-time reference, straight from the definition.
    fn crc64_bitwise(mut crc: u64, data: &[u8]) -> u64 {
        for &b in data {
            crc ^= b as u64;
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ super::POLY_REFLECTED
                } else {
                    crc >> 1
                };
            }
        }
        crc
    }

    #[test]
    fn redis_test_vector() {
        assert_eq!(crc64(0, b"123456789"), 0xe9c6_d914_c4b8_d9ca);
    }

    #[test]
    fn redis_test_vector_long() {
        // Redis's crc64.c self test; `sizeof(li)` there counts the trailing NUL.
        let li = concat!(
            "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed ",
            "do eiusmod tempor incididunt ut labore et dolore magna ",
            "aliqua. Ut enim ad minim veniam, quis nostrud exercitation ",
            "ullamco laboris nisi ut aliquip ex ea commodo consequat. Duis ",
            "aute irure dolor in reprehenderit in voluptate velit esse ",
            "cillum dolore eu fugiat nulla pariatur. Excepteur sint ",
            "occaecat cupidatat non proident, sunt in culpa qui officia ",
            "deserunt mollit anim id est laborum.\0"
        );
        assert_eq!(crc64(0, li.as_bytes()), 0xc779_4709_e696_83b3);
        assert_eq!(crc64(0, b""), 0);
    }

    #[test]
    fn fast_path_matches_table_for_all_lengths_and_seeds() {
        let data: Vec<u8> = (0..5000u32)
            .map(|i| (i.wrapping_mul(2_246_822_519) >> 11) as u8)
            .collect();
        for len in (0..600).chain([1023, 1024, 1025, 4096, 4999, 5000]) {
            for seed in [0u64, 1, 0xe9c6_d914_c4b8_d9ca, u64::MAX] {
                let d = &data[..len];
                assert_eq!(
                    crc64(seed, d),
                    super::crc64_table(seed, d),
                    "len {len} seed {seed:x}"
                );
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn clmul_folding_directly() {
        if !super::clmul::available() {
            eprintln!("SKIP: no PCLMULQDQ on this CPU");
            return;
        }
        let data: Vec<u8> = (0..3000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 7) as u8)
            .collect();
        for len in super::clmul::MIN_LEN..data.len() {
            for seed in [0u64, 0x1234_5678_9abc_def0] {
                // SAFETY: availability checked above.
                let fast = unsafe { super::clmul::crc64(seed, &data[..len]) };
                assert_eq!(fast, crc64_bitwise(seed, &data[..len]), "len {len}");
            }
        }
    }

    #[test]
    fn matches_bitwise_and_is_incremental() {
        let data: Vec<u8> = (0..10_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let whole = crc64(0, &data);
        assert_eq!(whole, crc64_bitwise(0, &data));
        for split in [0, 1, 7, 8, 9, 4095, 9999, 10_000] {
            let (a, b) = data.split_at(split);
            assert_eq!(crc64(crc64(0, a), b), whole, "split at {split}");
        }
    }
}

#[cfg(test)]
mod speed {
    #[test]
    #[ignore]
    fn crc64_speed() {
        let data: Vec<u8> = (0..64u32 << 20)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let t = std::time::Instant::now();
        let c = super::crc64(0, &data);
        let s = t.elapsed().as_secs_f64();
        eprintln!("crc64: {:.0} MB/s ({c:x})", data.len() as f64 / 1e6 / s);
    }
}
