//! `cutover ctl`: the admin commands from the command line, for people who don't use
//! redis-cli. Speaks RESP to the admin listener and prints the reply.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::{bail, Context};

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
    let mut s = TcpStream::connect(&args.admin)
        .with_context(|| format!("connecting to the admin port {}", args.admin))?;
    s.set_read_timeout(Some(Duration::from_secs(660)))?;
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

/// Sends one command; returns a simple reply as `+text`/`-text`, or a bulk's contents.
fn request(s: &mut TcpStream, args: &[String]) -> anyhow::Result<String> {
    let mut out = bytes::BytesMut::new();
    resp::encode::command(&mut out, args.iter().map(|a| a.as_bytes()));
    s.write_all(&out)?;
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
                    let start = text.find("\r\n").map_or(0, |i| i + 2);
                    text[start..text.len().saturating_sub(2)].replace("\r\n", "\n")
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
