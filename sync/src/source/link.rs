//! The replication link to the source: the replica handshake (one reply awaited per step),
//! PSYNC, and framing of what follows: the RDB payload (`$<len>` or diskless `$EOF:<mark>`)
//! and then the command stream.

use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use cluster::{Connector, NodeStream, SessionSetup};
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::mpsc;

use crate::SyncError;

/// What PSYNC answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PsyncReply {
    /// A full sync follows: the RDB, then the stream from `offset`.
    Full { replid: String, offset: i64 },
    /// Partial sync: the stream continues after the requested offset. A new replid is
    /// given when the source's replication id changed (failover).
    Continue { replid: Option<String> },
}

/// How the RDB payload is delimited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    Len(u64),
    /// Diskless: the payload ends with these 40 bytes.
    Eof([u8; 40]),
}

pub struct Link {
    pub r: ReadHalf<NodeStream>,
    pub w: WriteHalf<NodeStream>,
    /// Bytes read from the source not yet consumed.
    pub rbuf: BytesMut,
}

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

fn src(e: impl std::fmt::Display) -> SyncError {
    SyncError::Source(e.to_string())
}

impl Link {
    /// Connects (AUTH from the URL), announces the replica, and sends PSYNC.
    /// `resume`: the replication id and the offset applied so far.
    pub async fn open(
        connector: &Connector,
        listening_port: u16,
        resume: Option<(&str, i64)>,
    ) -> Result<(Link, PsyncReply), SyncError> {
        let stream = connector
            .connect(&SessionSetup::default())
            .await
            .map_err(|e| match e {
                cluster::ConnectError::Refused { .. } if !e.is_retryable() => {
                    SyncError::Config(format!("source: {e}"))
                }
                e => src(e),
            })?;
        let (r, w) = tokio::io::split(stream);
        let mut link = Link {
            r,
            w,
            rbuf: BytesMut::with_capacity(64 * 1024),
        };
        let port = listening_port.to_string();
        // One reply awaited per step: a master refuses PSYNC sent while it has pending
        // output for us.
        let reply = link.step(&[b"PING"]).await?;
        if reply.starts_with('-') && !reply.starts_with("-NOAUTH") && !reply.starts_with("-NOPERM")
        {
            return Err(src(format!("PING refused: {reply}")));
        }
        // Old masters refuse these; not fatal.
        let _ = link
            .step(&[b"REPLCONF", b"listening-port", port.as_bytes()])
            .await?;
        let _ = link
            .step(&[b"REPLCONF", b"capa", b"eof", b"capa", b"psync2"])
            .await?;
        let (id, off) = match resume {
            Some((id, applied)) => (id.to_string(), (applied + 1).to_string()),
            None => ("?".to_string(), "-1".to_string()),
        };
        let reply = link
            .step(&[b"PSYNC", id.as_bytes(), off.as_bytes()])
            .await?;
        let parsed = parse_psync(&reply)?;
        Ok((link, parsed))
    }

    /// Sends one command and reads its one-line reply, skipping `\n` keepalives.
    async fn step(&mut self, args: &[&[u8]]) -> Result<String, SyncError> {
        let mut out = BytesMut::new();
        resp::encode::command(&mut out, args.iter().copied());
        self.w.write_all(&out).await.map_err(src)?;
        let line = tokio::time::timeout(HANDSHAKE_TIMEOUT, self.read_line())
            .await
            .map_err(|_| src("no reply during the replica handshake"))??;
        Ok(String::from_utf8_lossy(&line).into_owned())
    }

    /// One CRLF-terminated line, keepalive newlines skipped.
    pub async fn read_line(&mut self) -> Result<Bytes, SyncError> {
        loop {
            while self.rbuf.first() == Some(&b'\n') {
                self.rbuf.advance(1);
            }
            if let Some(i) = memchr::memchr(b'\n', &self.rbuf) {
                let mut line = self.rbuf.split_to(i + 1);
                line.truncate(i);
                if line.last() == Some(&b'\r') {
                    line.truncate(i - 1);
                }
                return Ok(line.freeze());
            }
            if self.rbuf.len() > 64 * 1024 {
                return Err(src("reply line too long"));
            }
            self.fill().await?;
        }
    }

    /// Reads more bytes from the source. EOF is an error: the link is gone.
    pub async fn fill(&mut self) -> Result<usize, SyncError> {
        if self.rbuf.capacity() - self.rbuf.len() < 16 * 1024 {
            self.rbuf.reserve(64 * 1024);
        }
        let n = self.r.read_buf(&mut self.rbuf).await.map_err(src)?;
        if n == 0 {
            return Err(src("connection closed by the source"));
        }
        Ok(n)
    }

    /// Reads the payload header that follows `+FULLRESYNC`.
    pub async fn payload_header(&mut self) -> Result<Payload, SyncError> {
        let line = self.read_line().await?;
        if line.first() == Some(&b'-') {
            return Err(src(format!(
                "full sync failed: {}",
                String::from_utf8_lossy(&line[1..])
            )));
        }
        let rest = line
            .strip_prefix(b"$")
            .ok_or_else(|| src("expected the RDB payload header"))?;
        if let Some(mark) = rest.strip_prefix(b"EOF:") {
            let mark: [u8; 40] = mark
                .try_into()
                .map_err(|_| src("diskless payload mark is not 40 bytes"))?;
            return Ok(Payload::Eof(mark));
        }
        let len = std::str::from_utf8(rest)
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(|| src("invalid RDB payload length"))?;
        Ok(Payload::Len(len))
    }

    /// Reads the RDB payload at network speed, handing each chunk to `sink` (which must
    /// not wait: the source is never kept waiting on the target); on return `rbuf` holds
    /// whatever followed the payload (the start of the command stream). `progress` is told
    /// each chunk's size.
    pub async fn stream_payload(
        &mut self,
        payload: &Payload,
        mut sink: impl FnMut(Bytes) -> Result<(), SyncError>,
        mut progress: impl FnMut(u64),
    ) -> Result<(), SyncError> {
        match payload {
            Payload::Len(len) => {
                let mut left = *len;
                while left > 0 {
                    if self.rbuf.is_empty() {
                        self.fill().await?;
                    }
                    let n = (self.rbuf.len() as u64).min(left) as usize;
                    let chunk = self.rbuf.split_to(n).freeze();
                    left -= n as u64;
                    progress(n as u64);
                    sink(chunk)?;
                }
                Ok(())
            }
            Payload::Eof(mark) => {
                // The payload ends with the 40-byte mark, which may straddle reads: hold the
                // last 40 bytes back until more arrive or they turn out to be the mark. The
                // master sends nothing after it until our first ACK.
                loop {
                    if self.rbuf.len() >= 40 && self.rbuf.ends_with(mark) {
                        let n = self.rbuf.len() - 40;
                        if n > 0 {
                            let chunk = self.rbuf.split_to(n).freeze();
                            progress(n as u64);
                            sink(chunk)?;
                        }
                        self.rbuf.clear();
                        return Ok(());
                    }
                    if self.rbuf.len() > 40 {
                        let n = self.rbuf.len() - 40;
                        let chunk = self.rbuf.split_to(n).freeze();
                        progress(n as u64);
                        sink(chunk)?;
                    }
                    self.fill().await?;
                }
            }
        }
    }

    /// `REPLCONF ACK <offset>`.
    pub async fn ack(&mut self, offset: i64) -> Result<(), SyncError> {
        let off = offset.to_string();
        let mut out = BytesMut::new();
        resp::encode::command(
            &mut out,
            [&b"REPLCONF"[..], b"ACK", off.as_bytes()].into_iter(),
        );
        self.w.write_all(&out).await.map_err(src)
    }
}

fn parse_psync(reply: &str) -> Result<PsyncReply, SyncError> {
    if let Some(rest) = reply.strip_prefix("+FULLRESYNC ") {
        let mut it = rest.split_whitespace();
        let replid = it.next().unwrap_or_default().to_string();
        let offset = it.next().and_then(|o| o.parse::<i64>().ok());
        return match offset {
            Some(offset) if replid.len() == 40 => Ok(PsyncReply::Full { replid, offset }),
            _ => Err(src(format!("invalid FULLRESYNC reply: {reply}"))),
        };
    }
    if let Some(rest) = reply.strip_prefix("+CONTINUE") {
        let id = rest.trim();
        return Ok(PsyncReply::Continue {
            replid: (id.len() == 40).then(|| id.to_string()),
        });
    }
    if reply.starts_with("-NOMASTERLINK") || reply.starts_with("-LOADING") {
        return Err(src(format!("source not ready: {reply}")));
    }
    if reply.starts_with('-') {
        return Err(SyncError::Forbidden(
            reply.trim_start_matches('-').to_string(),
        ));
    }
    Err(src(format!("unexpected PSYNC reply: {reply}")))
}

/// `std::io::Read` over chunks arriving on a channel, for the RDB reader on its blocking
/// thread. The channel is bounded, so a slow reader slows the link, never memory.
pub struct ChunkReader {
    rx: mpsc::Receiver<Bytes>,
    cur: Bytes,
}

impl ChunkReader {
    pub fn new(rx: mpsc::Receiver<Bytes>) -> Self {
        ChunkReader {
            rx,
            cur: Bytes::new(),
        }
    }
}

impl std::io::Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.cur.is_empty() {
            match self.rx.blocking_recv() {
                Some(c) => self.cur = c,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur[..n]);
        self.cur.advance(n);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psync_replies() {
        let id = "a".repeat(40);
        assert_eq!(
            parse_psync(&format!("+FULLRESYNC {id} 1234")).unwrap(),
            PsyncReply::Full {
                replid: id.clone(),
                offset: 1234
            }
        );
        assert_eq!(
            parse_psync("+CONTINUE").unwrap(),
            PsyncReply::Continue { replid: None }
        );
        assert_eq!(
            parse_psync(&format!("+CONTINUE {id}")).unwrap(),
            PsyncReply::Continue {
                replid: Some(id.clone())
            }
        );
        assert!(parse_psync("-LOADING x").unwrap_err().is_retryable());
        let e = parse_psync("-ERR unknown command 'PSYNC'").unwrap_err();
        assert!(matches!(e, SyncError::Forbidden(_)));
        assert!(e.to_string().contains("SCAN copy"));
    }
}
