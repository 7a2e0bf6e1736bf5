//! `cutover ctl`: the admin commands from the command line, for people who don't use
//! redis-cli. Speaks RESP to the admin listener (over TLS when it does) and prints the
//! reply.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::{bail, Context};
use tokio_rustls::rustls;

use crate::cli::{CtlAction, CtlArgs};

pub fn run(args: &CtlArgs) -> anyhow::Result<()> {
    let mut cmd: Vec<String> = Vec::new();
    match &args.action {
        CtlAction::Status => cmd.push("STATUS".into()),
        CtlAction::Finish => cmd.push("FINISH".into()),
        CtlAction::Verify { sample } => {
            cmd.push("VERIFY".into());
            match sample {
                Some(n) => cmd.extend(["SAMPLE".into(), n.to_string()]),
                None => cmd.push("FULL".into()),
            }
        }
        CtlAction::Cutover {
            check,
            timeout_ms,
            max_lag,
            max_dirty,
            verified,
        } => {
            cmd.push("CUTOVER".into());
            if *check {
                cmd.push("CHECK".into());
            }
            if let Some(t) = timeout_ms {
                cmd.extend(["TIMEOUT".into(), t.to_string()]);
            }
            if let Some(l) = max_lag {
                cmd.extend(["MAXLAG".into(), l.to_string()]);
            }
            if let Some(d) = max_dirty {
                cmd.extend(["MAXDIRTY".into(), d.to_string()]);
            }
            if *verified {
                cmd.push("VERIFIED".into());
            }
        }
    }
    let tcp = TcpStream::connect(&args.admin)
        .with_context(|| format!("connecting to the admin port {}", args.admin))?;
    tcp.set_read_timeout(Some(Duration::from_secs(660)))?;
    let mut s = if args.tls || args.tls_ca_file.is_some() || args.tls_cert_file.is_some() {
        let cert_key = match (&args.tls_cert_file, &args.tls_key_file) {
            (Some(c), Some(k)) => Some((c.as_path(), k.as_path())),
            _ => None,
        };
        let config = crate::tls::client_config(args.tls_ca_file.as_deref(), cert_key)?;
        // The host part of `host:port` (an IP address or a name the certificate names).
        let host = args
            .admin
            .rsplit_once(':')
            .map_or(args.admin.as_str(), |(h, _)| h)
            .trim_start_matches('[')
            .trim_end_matches(']');
        let name = rustls::pki_types::ServerName::try_from(host.to_string())
            .with_context(|| format!("`{host}` as a TLS server name"))?;
        let conn = rustls::ClientConnection::new(config, name).context("TLS")?;
        Conn::Tls(Box::new(rustls::StreamOwned::new(conn, tcp)))
    } else {
        Conn::Plain(tcp)
    };
    if let Some(pw) = &args.password {
        let reply = request(&mut s, &["AUTH".into(), pw.clone()])?;
        if let Some(e) = reply.strip_prefix('-') {
            bail!("admin AUTH: {e}");
        }
    }
    let reply = request(&mut s, &cmd)?;
    match reply.strip_prefix('-') {
        Some(e) => bail!("{e}"),
        None => {
            println!("{reply}");
            Ok(())
        }
    }
}

/// The connection to the admin listener.
enum Conn {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Conn::Plain(s) => s.read(buf),
            Conn::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Conn::Plain(s) => s.write(buf),
            Conn::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Conn::Plain(s) => s.flush(),
            Conn::Tls(s) => s.flush(),
        }
    }
}

/// Sends one command; returns a simple reply as `+text`/`-text`, or a bulk's contents.
fn request(s: &mut Conn, args: &[String]) -> anyhow::Result<String> {
    let mut out = bytes::BytesMut::new();
    resp::encode::command(&mut out, args.iter().map(|a| a.as_bytes()));
    s.write_all(&out)?;
    s.flush()?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let mut scanner = resp::ReplyScanner::default();
    loop {
        if let Some(n) = scanner
            .scan(&buf)
            .map_err(|e| anyhow::anyhow!("bad reply: {e}"))?
        {
            let frame = &buf[..n];
            let text = String::from_utf8_lossy(frame);
            return Ok(match frame.first() {
                Some(b'$') => {
                    // `$-1` (nil) has no body: nothing to print.
                    let start = text.find("\r\n").map_or(0, |i| i + 2);
                    let end = text.len().saturating_sub(2).max(start);
                    text[start..end].replace("\r\n", "\n")
                }
                _ => text.trim_end().to_string(),
            });
        }
        let n = s.read(&mut chunk)?;
        if n == 0 {
            bail!("the admin port closed the connection");
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}
