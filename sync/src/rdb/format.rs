//! Constants and small pieces of the RDB format shared by the streaming reader and the
//! value decoder: opcodes and value types (src/rdb.h), module value opcodes, LZF
//! decompression (src/lzf_d.c semantics) and the bounds we put on untrusted lengths.

/// Opcodes (one byte, where a value type byte would otherwise be).
pub(crate) const OP_KEY_META: u8 = 243; // Redis 8.x key metadata (RDB 13)
pub(crate) const OP_SLOT_INFO: u8 = 244;
pub(crate) const OP_FUNCTION2: u8 = 245;
pub(crate) const OP_FUNCTION_PRE_GA: u8 = 246;
pub(crate) const OP_MODULE_AUX: u8 = 247;
pub(crate) const OP_IDLE: u8 = 248;
pub(crate) const OP_FREQ: u8 = 249;
pub(crate) const OP_AUX: u8 = 250;
pub(crate) const OP_RESIZEDB: u8 = 251;
pub(crate) const OP_EXPIRETIME_MS: u8 = 252;
pub(crate) const OP_EXPIRETIME: u8 = 253;
pub(crate) const OP_SELECTDB: u8 = 254;
pub(crate) const OP_EOF: u8 = 255;

/// Value types.
pub(crate) const T_STRING: u8 = 0;
pub(crate) const T_LIST: u8 = 1;
pub(crate) const T_SET: u8 = 2;
pub(crate) const T_ZSET: u8 = 3;
pub(crate) const T_HASH: u8 = 4;
pub(crate) const T_ZSET_2: u8 = 5;
pub(crate) const T_MODULE_PRE_GA: u8 = 6;
pub(crate) const T_MODULE_2: u8 = 7;
pub(crate) const T_HASH_ZIPMAP: u8 = 9;
pub(crate) const T_LIST_ZIPLIST: u8 = 10;
pub(crate) const T_SET_INTSET: u8 = 11;
pub(crate) const T_ZSET_ZIPLIST: u8 = 12;
pub(crate) const T_HASH_ZIPLIST: u8 = 13;
pub(crate) const T_LIST_QUICKLIST: u8 = 14;
pub(crate) const T_STREAM_LISTPACKS: u8 = 15;
pub(crate) const T_HASH_LISTPACK: u8 = 16;
pub(crate) const T_ZSET_LISTPACK: u8 = 17;
pub(crate) const T_LIST_QUICKLIST_2: u8 = 18;
pub(crate) const T_STREAM_LISTPACKS_2: u8 = 19;
pub(crate) const T_SET_LISTPACK: u8 = 20;
pub(crate) const T_STREAM_LISTPACKS_3: u8 = 21;
pub(crate) const T_HASH_METADATA_PRE_GA: u8 = 22;
pub(crate) const T_HASH_LISTPACK_EX_PRE_GA: u8 = 23;
pub(crate) const T_HASH_METADATA: u8 = 24;
pub(crate) const T_HASH_LISTPACK_EX: u8 = 25;
/// Redis 8.6 (RDB 13): stream with IDMP (idempotent producer) state after the groups.
pub(crate) const T_STREAM_LISTPACKS_4: u8 = 26;

/// Module value opcodes (`RedisModule_Save*` annotations, src/rdb.h).
pub(crate) const MOD_EOF: u64 = 0;
pub(crate) const MOD_SINT: u64 = 1;
pub(crate) const MOD_UINT: u64 = 2;
pub(crate) const MOD_FLOAT: u64 = 3;
pub(crate) const MOD_DOUBLE: u64 = 4;
pub(crate) const MOD_STRING: u64 = 5;

/// Quicklist v2 node containers.
pub(crate) const QL_PLAIN: u64 = 1;
pub(crate) const QL_PACKED: u64 = 2;

/// Special string encodings (the low 6 bits after a `11` length prefix).
pub(crate) const ENC_INT8: u8 = 0;
pub(crate) const ENC_INT16: u8 = 1;
pub(crate) const ENC_INT32: u8 = 2;
pub(crate) const ENC_LZF: u8 = 3;

/// Highest RDB version this reader understands (Redis 8.6 writes 13).
pub(crate) const MAX_RDB_VERSION: u32 = 13;

/// Largest single string we accept. Redis's own ceiling for a value is
/// `proto-max-bulk-len` (512 MB by default); a length above this is taken as corruption
/// rather than something to allocate for.
pub(crate) const MAX_STRING_LEN: u64 = 4 << 30;

/// LZF's best case is a 3-byte back reference expanding to 264 bytes, so a declared
/// decompressed length above 88x the compressed one cannot be genuine; refusing it keeps a
/// corrupt header from making us allocate gigabytes.
pub(crate) const LZF_MAX_RATIO: u64 = 88;

/// Checks an LZF string's declared lengths before anything is allocated for it.
pub(crate) fn check_lzf_lens(clen: u64, len: u64) -> Result<(), &'static str> {
    if len > MAX_STRING_LEN {
        return Err("LZF string longer than the 4 GiB limit");
    }
    if clen == 0 || len > clen.saturating_mul(LZF_MAX_RATIO) {
        return Err("LZF lengths impossible (decompressed/compressed ratio)");
    }
    Ok(())
}

/// LZF decompression of `src` into exactly `out_len` bytes (lengths already checked with
/// [`check_lzf_lens`]). Every read and back reference is bounds-checked: corrupt input
/// gives an error, never a panic.
pub(crate) fn lzf_decompress(src: &[u8], out_len: usize) -> Result<Vec<u8>, &'static str> {
    let mut out: Vec<u8> = Vec::with_capacity(out_len);
    let mut i = 0;
    while i < src.len() {
        let ctrl = src[i] as usize;
        i += 1;
        if ctrl < 32 {
            // Literal run of ctrl + 1 bytes.
            let n = ctrl + 1;
            if src.len() - i < n {
                return Err("LZF literal run past the end of the input");
            }
            if out_len - out.len() < n {
                return Err("LZF output longer than declared");
            }
            out.extend_from_slice(&src[i..i + n]);
            i += n;
        } else {
            // Back reference: 3 bits of length (7 = one more length byte), 13 bits of
            // distance minus one.
            let mut len = ctrl >> 5;
            if len == 7 {
                let Some(&b) = src.get(i) else {
                    return Err("LZF back reference truncated");
                };
                len += b as usize;
                i += 1;
            }
            len += 2;
            let Some(&lo) = src.get(i) else {
                return Err("LZF back reference truncated");
            };
            i += 1;
            let dist = ((ctrl & 0x1f) << 8) + lo as usize + 1;
            if dist > out.len() {
                return Err("LZF back reference before the start of the output");
            }
            if out_len - out.len() < len {
                return Err("LZF output longer than declared");
            }
            // An overlapping reference (dist < len) repeats the last `dist` bytes: copy
            // what is available and let the copyable span double each round.
            let start = out.len() - dist;
            let mut left = len;
            while left > 0 {
                let n = left.min(out.len() - start);
                out.extend_from_within(start..start + n);
                left -= n;
            }
        }
    }
    if out.len() != out_len {
        return Err("LZF output shorter than declared");
    }
    Ok(out)
}

/// A module type's 9-character name from its 64-bit id (the upper 54 bits, 6 bits per
/// character; the low 10 bits are the encoding version), as moduleTypeNameByID does.
pub(crate) fn module_type_name(id: u64) -> String {
    const CHARSET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut id = id >> 10;
    let mut name = [0u8; 9];
    for slot in name.iter_mut().rev() {
        *slot = CHARSET[(id & 63) as usize];
        id >>= 6;
    }
    String::from_utf8_lossy(&name).into_owned()
}

/// Decimal text of an integer-encoded string, as Redis turns it back into a string.
pub(crate) fn int_to_bytes(v: i64) -> Vec<u8> {
    v.to_string().into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lzf_literal_and_backref() {
        // "aaaaaaaaaa": literal 'a', then a back reference of distance 1, length 9.
        let src = [0x00, b'a', (7 << 5), 9 - 2 - 7, 0x00];
        assert_eq!(lzf_decompress(&src, 10).unwrap(), b"aaaaaaaaaa");
        // Short back reference: "abcabc".
        let src = [0x02, b'a', b'b', b'c', (1 << 5), 0x02];
        assert_eq!(lzf_decompress(&src, 6).unwrap(), b"abcabc");
        // Overlapping reference of distance 2, length 7: "ab" + "abababa".
        let src = [0x01, b'a', b'b', (5 << 5), 0x01];
        assert_eq!(lzf_decompress(&src, 9).unwrap(), b"ababababa");
    }

    #[test]
    fn lzf_rejects_bad_input() {
        assert!(lzf_decompress(&[0x05, b'a'], 6).is_err()); // literal past end
        assert!(lzf_decompress(&[0x00, b'a', 0x20, 0x05], 4).is_err()); // distance too far
        assert!(lzf_decompress(&[0x00, b'a'], 2).is_err()); // short output
        assert!(lzf_decompress(&[0x01, b'a', b'b'], 1).is_err()); // long output
        assert!(lzf_decompress(&[0xe0], 10).is_err()); // truncated
        assert!(check_lzf_lens(1, 89).is_err());
        assert!(check_lzf_lens(1, 88).is_ok());
        assert!(check_lzf_lens(0, 0).is_err());
    }

    #[test]
    fn module_names() {
        // "ReJSON-RL" with encoding version 3.
        let chars = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut id = 0u64;
        for c in b"ReJSON-RL" {
            id = (id << 6) | chars.iter().position(|x| x == c).unwrap() as u64;
        }
        assert_eq!(module_type_name((id << 10) | 3), "ReJSON-RL");
    }
}
