//! The reader's primitives: the buffer and its refills (where the CRC64 and the value
//! capture see every byte before it leaves the buffer), and the RDB's fixed-size fields,
//! lengths and strings, read or skipped. Every error says at which byte of the RDB the
//! problem was found.

use super::*;
use std::io::ErrorKind;

/// Reserve at most this much ahead when a long string is captured (growth past it is
/// amortized by `Vec`), so a corrupt length cannot make us reserve gigabytes up front.
const MAX_RESERVE: u64 = 64 << 20;

/// A length field or, where a string is expected, a special encoding.
pub(super) enum LenOrEnc {
    Len(u64),
    Enc(u8),
}

impl<R: Read> RdbReader<R> {
    pub(super) fn corrupt_at(&self, offset: u64, what: impl Into<String>) -> RdbError {
        RdbError::Corrupt {
            offset,
            what: what.into(),
        }
    }

    #[inline]
    pub(super) fn avail(&self) -> usize {
        self.end - self.pos
    }

    /// Makes at least `n` (<= buffer size) bytes available.
    #[inline]
    pub(super) fn fill(&mut self, n: usize) -> Result<(), RdbError> {
        if self.avail() >= n {
            Ok(())
        } else {
            self.refill(n)
        }
    }

    /// Brings the CRC up to `pos` (after a replay, `crc_from` may be ahead of `pos`: those
    /// bytes were checksummed before).
    pub(super) fn crc_to_pos(&mut self) {
        if self.crc_active && self.pos > self.crc_from {
            self.crc = crc64(self.crc, &self.buf[self.crc_from..self.pos]);
            self.crc_from = self.pos;
        }
    }

    #[cold]
    #[inline(never)]
    pub(super) fn refill(&mut self, n: usize) -> Result<(), RdbError> {
        debug_assert!(n <= self.buf.len());
        // Everything before `pos` is about to leave the buffer: account for it first.
        self.crc_to_pos();
        if let Some(from) = self.cap_from {
            self.captured.extend_from_slice(&self.buf[from..self.pos]);
        }
        if self.pos > 0 {
            self.buf.copy_within(self.pos..self.end, 0);
            self.base += self.pos as u64;
            self.end -= self.pos;
            self.crc_from = self.crc_from.saturating_sub(self.pos);
            self.pos = 0;
        }
        if self.cap_from.is_some() {
            self.cap_from = Some(0);
            if self.switchable && self.captured.len() as u64 > self.value_limit {
                return Err(self.switch_signal());
            }
        }
        if self.buf.len() > BUF_SIZE && self.end < BUF_SIZE {
            // A replay is over: back to the normal buffer.
            let mut b = vec![0u8; BUF_SIZE].into_boxed_slice();
            b[..self.end].copy_from_slice(&self.buf[..self.end]);
            self.buf = b;
        }
        // Read only until `n` bytes are there: the inner reader may be a socket, and what
        // follows the RDB must not be waited for.
        while self.end < n {
            match self.inner.read(&mut self.buf[self.end..]) {
                Ok(0) => {
                    return Err(self.corrupt_at(
                        self.base + self.end as u64,
                        "unexpected end of the RDB stream",
                    ))
                }
                Ok(k) => self.end += k,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(RdbError::Io {
                        offset: self.base + self.end as u64,
                        source: e,
                    })
                }
            }
        }
        Ok(())
    }

    #[inline]
    pub(super) fn u8(&mut self) -> Result<u8, RdbError> {
        self.fill(1)?;
        let b = self.buf[self.pos];
        self.pos += 1;
        Ok(b)
    }

    #[inline]
    pub(super) fn array<const N: usize>(&mut self) -> Result<[u8; N], RdbError> {
        self.fill(N)?;
        let a = self.buf[self.pos..self.pos + N]
            .try_into()
            .expect("N bytes");
        self.pos += N;
        Ok(a)
    }

    /// Consumes `n` bytes (any amount), captured if a value is being read.
    pub(super) fn skip(&mut self, mut n: u64) -> Result<(), RdbError> {
        if self.avail() as u64 >= n {
            self.pos += n as usize;
            return Ok(());
        }
        if self.cap_from.is_some() {
            if self.switchable && (self.capture_len() as u64).saturating_add(n) > self.value_limit {
                return Err(self.switch_signal());
            }
            self.captured.reserve(n.min(MAX_RESERVE) as usize);
        }
        loop {
            let a = self.avail() as u64;
            if a >= n {
                self.pos += n as usize;
                return Ok(());
            }
            self.pos = self.end;
            n -= a;
            self.refill(1)?;
        }
    }

    #[inline]
    pub(super) fn len_or_enc(&mut self) -> Result<LenOrEnc, RdbError> {
        self.fill(1)?;
        let b = self.buf[self.pos];
        match b >> 6 {
            0 => {
                self.pos += 1;
                Ok(LenOrEnc::Len((b & 0x3f) as u64))
            }
            1 => {
                self.fill(2)?;
                let v = (((b & 0x3f) as u64) << 8) | self.buf[self.pos + 1] as u64;
                self.pos += 2;
                Ok(LenOrEnc::Len(v))
            }
            2 => match b {
                0x80 => {
                    self.pos += 1;
                    Ok(LenOrEnc::Len(u32::from_be_bytes(self.array()?) as u64))
                }
                0x81 => {
                    self.pos += 1;
                    Ok(LenOrEnc::Len(u64::from_be_bytes(self.array()?)))
                }
                _ => Err(self.corrupt_at(self.position(), "unknown length encoding")),
            },
            _ => {
                self.pos += 1;
                Ok(LenOrEnc::Enc(b & 0x3f))
            }
        }
    }

    #[inline]
    pub(super) fn len(&mut self) -> Result<u64, RdbError> {
        match self.len_or_enc()? {
            LenOrEnc::Len(n) => Ok(n),
            LenOrEnc::Enc(_) => Err(self.corrupt_at(
                self.position() - 1,
                "string encoding where a length belongs",
            )),
        }
    }

    /// Consumes one RDB string without decoding it.
    #[inline]
    pub(super) fn skip_string(&mut self) -> Result<(), RdbError> {
        // Fast path: a short raw string already in the buffer.
        if let Some(&b) = self.buf[self.pos..self.end].first() {
            if b < 0x40 && self.avail() > b as usize {
                self.pos += 1 + b as usize;
                return Ok(());
            }
        }
        let at = self.position();
        match self.len_or_enc()? {
            LenOrEnc::Len(n) => {
                if n > MAX_STRING_LEN {
                    return Err(self.corrupt_at(at, "string longer than the 4 GiB limit"));
                }
                self.skip(n)
            }
            LenOrEnc::Enc(ENC_INT8) => self.skip(1),
            LenOrEnc::Enc(ENC_INT16) => self.skip(2),
            LenOrEnc::Enc(ENC_INT32) => self.skip(4),
            LenOrEnc::Enc(ENC_LZF) => {
                let clen = self.len()?;
                let len = self.len()?;
                check_lzf_lens(clen, len).map_err(|w| self.corrupt_at(at, w))?;
                self.skip(clen)
            }
            LenOrEnc::Enc(_) => Err(self.corrupt_at(at, "unknown string encoding")),
        }
    }

    /// Reads `n` raw bytes (n already capped).
    pub(super) fn read_raw(&mut self, n: usize) -> Result<Vec<u8>, RdbError> {
        if self.avail() >= n {
            let v = self.buf[self.pos..self.pos + n].to_vec();
            self.pos += n;
            return Ok(v);
        }
        let mut v = Vec::with_capacity(n.min(MAX_RESERVE as usize));
        while v.len() < n {
            if self.avail() == 0 {
                self.refill(1)?;
            }
            let k = self.avail().min(n - v.len());
            v.extend_from_slice(&self.buf[self.pos..self.pos + k]);
            self.pos += k;
        }
        Ok(v)
    }

    /// Reads and decodes one RDB string (integers as decimal text, LZF decompressed).
    pub(super) fn read_string(&mut self) -> Result<Bytes, RdbError> {
        if let Some(&b) = self.buf[self.pos..self.end].first() {
            if b < 0x40 && self.avail() > b as usize {
                let s = Bytes::copy_from_slice(&self.buf[self.pos + 1..self.pos + 1 + b as usize]);
                self.pos += 1 + b as usize;
                return Ok(s);
            }
        }
        let at = self.position();
        Ok(Bytes::from(match self.len_or_enc()? {
            LenOrEnc::Len(n) => {
                if n > MAX_STRING_LEN {
                    return Err(self.corrupt_at(at, "string longer than the 4 GiB limit"));
                }
                self.read_raw(n as usize)?
            }
            LenOrEnc::Enc(ENC_INT8) => int_to_bytes(self.u8()? as i8 as i64),
            LenOrEnc::Enc(ENC_INT16) => int_to_bytes(i16::from_le_bytes(self.array()?) as i64),
            LenOrEnc::Enc(ENC_INT32) => int_to_bytes(i32::from_le_bytes(self.array()?) as i64),
            LenOrEnc::Enc(ENC_LZF) => {
                let clen = self.len()?;
                let len = self.len()?;
                check_lzf_lens(clen, len).map_err(|w| self.corrupt_at(at, w))?;
                let src = self.read_raw(clen as usize)?;
                lzf_decompress(&src, len as usize).map_err(|w| self.corrupt_at(at, w))?
            }
            LenOrEnc::Enc(_) => return Err(self.corrupt_at(at, "unknown string encoding")),
        }))
    }
}
