//! The admin listener: RESP, so `redis-cli -p <admin port>` works.
//!
//! Commands: `STATUS` (INFO-style `field:value` lines), `CUTOVER`, `PING`, `AUTH` (when an
//! admin password is set), `QUIT`, `HELP`; and what client libraries send when they connect,
//! so a deployment script can use one (redis-py 8 opens with `HELLO 3` and `CLIENT
//! SETINFO`): `HELLO 2|3 [AUTH user pass] [SETNAME name]`, `CLIENT SETINFO|SETNAME|GETNAME|ID`,
//! `ECHO`, `RESET`, `SELECT 0`.

use std::sync::Arc;

use bytes::{Buf, BytesMut};
use resp::{encode, FrameKind, Limits, RequestParser};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::session::Shared;
use crate::stats::Stats;

/// Argument `j` as a number, or the error naming the option `name` that needs it.
fn number(args: &[Vec<u8>], j: usize, name: &[u8]) -> Result<u64, String> {
    args.get(j)
        .and_then(|v| std::str::from_utf8(v).ok()?.parse::<u64>().ok())
        .ok_or_else(|| format!("{} needs a number", String::from_utf8_lossy(name)))
}

/// `VERIFY [FULL] [SAMPLE <n>] [ROUNDS <n>]`.
fn parse_verify(args: &[Vec<u8>]) -> Result<sync::verify::Options, String> {
    let mut o = sync::verify::Options::default();
    let mut i = 0;
    while i < args.len() {
        let a = args[i].to_ascii_uppercase();
        let num = |j: usize| number(args, j, &a);
        match a.as_slice() {
            b"FULL" => o.sample = None,
            b"SAMPLE" => {
                o.sample = Some(num(i + 1)?.max(1));
                i += 1;
            }
            b"ROUNDS" => {
                o.rounds = num(i + 1)?.min(100) as u32;
                i += 1;
            }
            _ => return Err("syntax: VERIFY [FULL] [SAMPLE <n>] [ROUNDS <n>]".into()),
        }
        i += 1;
    }
    Ok(o)
}

/// `CUTOVER [CHECK] [TIMEOUT <ms>] [MAXLAG <bytes>] [MAXDIRTY <keys>] [VERIFIED]`.
fn parse_cutover(args: &[Vec<u8>], timeout_ms: u64) -> Result<crate::cutover::Options, String> {
    let mut o = crate::cutover::Options {
        timeout: std::time::Duration::from_millis(timeout_ms),
        ..Default::default()
    };
    let mut i = 0;
    while i < args.len() {
        let a = args[i].to_ascii_uppercase();
        let num = |j: usize| number(args, j, &a).map_err(|e| format!("ERR {e}"));
        match a.as_slice() {
            b"CHECK" => o.check_only = true,
            b"TIMEOUT" => {
                o.timeout = std::time::Duration::from_millis(num(i + 1)?.clamp(1, 600_000));
                i += 1;
            }
            b"MAXLAG" => {
                o.max_lag = num(i + 1)?;
                i += 1;
            }
            b"MAXDIRTY" => {
                o.max_dirty = Some(num(i + 1)?);
                i += 1;
            }
            b"VERIFIED" => o.verified = true,
            _ => {
                return Err(format!(
                    "ERR syntax: CUTOVER [CHECK] [TIMEOUT <ms>] [MAXLAG <bytes>] [MAXDIRTY <keys>] [VERIFIED] (got '{}')",
                    String::from_utf8_lossy(&args[i][..args[i].len().min(32)])
                ))
            }
        }
        i += 1;
    }
    Ok(o)
}

pub async fn serve(listener: TcpListener, sh: Arc<Shared>) {
    let tls = match &sh.settings.admin_tls {
        // Checked when the configuration was read.
        Some(files) => crate::tls::acceptor(files).ok(),
        None => None,
    };
    loop {
        tokio::select! {
            _ = sh.shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => match tls.clone() {
                    None => {
                        tokio::spawn(connection(stream, sh.clone()));
                    }
                    Some(acceptor) => {
                        let sh = sh.clone();
                        tokio::spawn(async move {
                            let shake = tokio::time::timeout(
                                std::time::Duration::from_secs(10),
                                acceptor.accept(stream),
                            );
                            if let Ok(Ok(s)) = shake.await {
                                connection(s, sh).await;
                            }
                        });
                    }
                },
                Err(e) => {
                    tracing::warn!(error = %e, "admin accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
    }
}

async fn connection<S>(mut stream: S, sh: Arc<Shared>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut parser = RequestParser::new(Limits {
        max_bulk_len: 1024 * 1024,
        ..Limits::default()
    });
    let mut authed = sh.settings.admin_password.is_none();
    let mut resp3 = false;
    let mut name: Option<Vec<u8>> = None;
    let id = NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    parser.set_authenticated(authed);
    let mut inbuf = BytesMut::with_capacity(1024);
    let mut out = BytesMut::new();
    loop {
        loop {
            let frame = match parser.parse(&inbuf) {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => {
                    e.write_reply(&mut out);
                    let _ = stream.write_all(&out).await;
                    return;
                }
            };
            if frame.kind == FrameKind::Empty {
                inbuf.advance(frame.len);
                continue;
            }
            let args: Vec<Vec<u8>> = {
                let base: &[u8] = if frame.kind == FrameKind::Inline {
                    parser.inline_encoded()
                } else {
                    &inbuf[..frame.len]
                };
                parser
                    .args()
                    .iter()
                    .map(|r| base[r.clone()].to_vec())
                    .collect()
            };
            inbuf.advance(frame.len);
            let cmd = args
                .first()
                .map(|a| a.to_ascii_uppercase())
                .unwrap_or_default();
            let quit = cmd == b"QUIT";
            match cmd.as_slice() {
                b"AUTH" => {
                    let pass = args.last().map(|p| p.as_slice()).unwrap_or(&[]);
                    match &sh.settings.admin_password {
                        None => encode::error(&mut out, b"ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?"),
                        Some(p) if args.len() >= 2 && p.as_bytes() == pass => {
                            authed = true;
                            parser.set_authenticated(true);
                            encode::simple(&mut out, b"OK");
                        }
                        Some(_) => encode::error(&mut out, b"WRONGPASS invalid username-password pair or user is disabled."),
                    }
                }
                b"QUIT" => encode::simple(&mut out, b"OK"),
                b"HELLO" => {
                    match hello(&args[1..], sh.settings.admin_password.as_deref(), authed) {
                        Err(e) => encode::error(&mut out, e.as_bytes()),
                        Ok(h) => {
                            authed = true;
                            parser.set_authenticated(true);
                            if let Some(p) = h.proto {
                                resp3 = p == 3;
                            }
                            if h.name.is_some() {
                                name = h.name;
                            }
                            hello_reply(&mut out, resp3, id);
                        }
                    }
                }
                b"RESET" => {
                    authed = sh.settings.admin_password.is_none();
                    parser.set_authenticated(authed);
                    resp3 = false;
                    name = None;
                    encode::simple(&mut out, b"RESET");
                }
                _ if !authed => encode::error(&mut out, b"NOAUTH Authentication required."),
                b"ECHO" if args.len() == 2 => encode::bulk(&mut out, &args[1]),
                b"SELECT" if args.len() == 2 => {
                    if args[1] == b"0" {
                        encode::simple(&mut out, b"OK");
                    } else {
                        encode::error(&mut out, b"ERR DB index is out of range");
                    }
                }
                b"CLIENT" => {
                    let sub = args
                        .get(1)
                        .map(|a| a.to_ascii_uppercase())
                        .unwrap_or_default();
                    match sub.as_slice() {
                        b"SETINFO" if args.len() == 4 => encode::simple(&mut out, b"OK"),
                        b"SETNAME" if args.len() == 3 => {
                            name = Some(args[2].clone()).filter(|n| !n.is_empty());
                            encode::simple(&mut out, b"OK");
                        }
                        b"GETNAME" => match &name {
                            Some(n) => encode::bulk(&mut out, n),
                            None => encode::null(&mut out, resp3),
                        },
                        b"ID" => encode::integer(&mut out, id as i64),
                        _ => encode::error(
                            &mut out,
                            b"ERR the admin port answers CLIENT SETINFO, SETNAME, GETNAME and ID only",
                        ),
                    }
                }
                b"PING" => encode::simple(&mut out, b"PONG"),
                b"CUTOVER" => match parse_cutover(&args[1..], sh.settings.cutover.timeout_ms) {
                    Err(e) => encode::error(&mut out, e.as_bytes()),
                    Ok(opts) => {
                        // Flush what is owed first: this can take up to its TIMEOUT.
                        if !out.is_empty() {
                            if stream.write_all(&out).await.is_err() {
                                return;
                            }
                            out.clear();
                        }
                        match crate::cutover::run(&sh, opts).await {
                            Ok(None) => encode::simple(&mut out, b"OK: ready for CUTOVER"),
                            Ok(Some(r)) => {
                                tracing::info!(
                                    epoch = r.epoch,
                                    pause_ms = r.pause_ms,
                                    fence = r.fence_offset,
                                    held = r.held_clients,
                                    "cutover report"
                                );
                                encode::simple(&mut out, b"OK")
                            }
                            Err(e) => encode::error(
                                &mut out,
                                format!("ERR {}", e.replace(['\r', '\n'], " ")).as_bytes(),
                            ),
                        }
                    }
                },
                b"FINISH" => match crate::finish::run(&sh).await {
                    Ok(summary) => encode::bulk(&mut out, summary.as_bytes()),
                    Err(e) => encode::error(
                        &mut out,
                        format!("ERR {}", e.replace(['\r', '\n'], " ")).as_bytes(),
                    ),
                },
                b"VERIFY" => match parse_verify(&args[1..])
                    .and_then(|o| crate::verify::start(&sh, o))
                {
                    Ok(()) => encode::simple(&mut out, b"OK: VERIFY started (see STATUS verify_*)"),
                    Err(e) => encode::error(&mut out, format!("ERR {e}").as_bytes()),
                },
                b"STATUS" | b"INFO" => encode::bulk(&mut out, status(&sh).as_bytes()),
                // redis-cli asks for command docs when it starts interactively.
                b"COMMAND" => encode::array_header(&mut out, 0),
                b"HELP" => {
                    let lines: [&[u8]; 7] = [
                        b"STATUS - proxy, route and counters as field:value lines",
                        b"CUTOVER [CHECK] [TIMEOUT <ms>] [MAXLAG <bytes>] [MAXDIRTY <keys>] [VERIFIED] - switch every client to the target",
                        b"VERIFY [FULL] [SAMPLE <n>] [ROUNDS <n>] - compare the target with the source in the background",
                        b"FINISH - after CUTOVER: mark the source finished, remove cutover's keys from the target",
                        b"PING",
                        b"AUTH <password> - when admin.password is set",
                        b"QUIT",
                    ];
                    encode::array_header(&mut out, lines.len());
                    for l in lines {
                        encode::simple(&mut out, l);
                    }
                }
                _ => encode::error(
                    &mut out,
                    format!(
                        "ERR unknown admin command '{}' (try HELP)",
                        String::from_utf8_lossy(&cmd[..cmd.len().min(64)])
                    )
                    .as_bytes(),
                ),
            }
            if quit {
                let _ = stream.write_all(&out).await;
                return;
            }
        }
        if !out.is_empty() {
            if stream.write_all(&out).await.is_err() {
                return;
            }
            out.clear();
        }
        if inbuf.capacity() - inbuf.len() < 256 {
            inbuf.reserve(1024);
        }
        match stream.read_buf(&mut inbuf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// Ids of admin connections (CLIENT ID, HELLO).
static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// What a HELLO asked for.
#[derive(Debug, Default)]
struct Hello {
    proto: Option<u8>,
    name: Option<Vec<u8>>,
}

/// `HELLO [protover [AUTH user pass] [SETNAME name]]`, as Redis checks it: the errors are
/// Redis's own texts.
fn hello(args: &[Vec<u8>], password: Option<&str>, authed: bool) -> Result<Hello, String> {
    let mut h = Hello::default();
    let mut i = 0;
    if let Some(v) = args.first() {
        let v = std::str::from_utf8(v)
            .ok()
            .and_then(|v| v.parse::<i64>().ok())
            .ok_or("ERR Protocol version is not an integer or out of range")?;
        if v != 2 && v != 3 {
            return Err("NOPROTO unsupported protocol version".into());
        }
        h.proto = Some(v as u8);
        i = 1;
    }
    let mut authed = authed;
    while i < args.len() {
        let opt = args[i].to_ascii_uppercase();
        match opt.as_slice() {
            b"AUTH" if i + 2 < args.len() => {
                match password {
                    Some(p) if p.as_bytes() == args[i + 2].as_slice() => authed = true,
                    None => authed = true,
                    Some(_) => {
                        return Err(
                            "WRONGPASS invalid username-password pair or user is disabled.".into(),
                        )
                    }
                }
                i += 3;
            }
            b"SETNAME" if i + 1 < args.len() => {
                h.name = Some(args[i + 1].clone());
                i += 2;
            }
            _ => {
                return Err(format!(
                    "ERR Syntax error in HELLO option '{}'",
                    String::from_utf8_lossy(&args[i][..args[i].len().min(32)])
                ))
            }
        }
    }
    if !authed {
        return Err("NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time".into());
    }
    Ok(h)
}

/// HELLO's reply: who answers (a map in RESP3, a flat array in RESP2).
fn hello_reply(out: &mut BytesMut, resp3: bool, id: u64) {
    encode::map_header(out, 7, resp3);
    encode::bulk(out, b"server");
    encode::bulk(out, b"cutover");
    encode::bulk(out, b"version");
    encode::bulk(out, env!("CARGO_PKG_VERSION").as_bytes());
    encode::bulk(out, b"proto");
    encode::integer(out, if resp3 { 3 } else { 2 });
    encode::bulk(out, b"id");
    encode::integer(out, id as i64);
    encode::bulk(out, b"mode");
    encode::bulk(out, b"standalone");
    encode::bulk(out, b"role");
    encode::bulk(out, b"master");
    encode::bulk(out, b"modules");
    encode::array_header(out, 0);
}

/// INFO-style report of the proxy's state.
pub fn status(sh: &Shared) -> String {
    let st = &sh.stats;
    let mut s = String::with_capacity(512);
    let mut line = |k: &str, v: &dyn std::fmt::Display| {
        s.push_str(k);
        s.push(':');
        s.push_str(&v.to_string());
        s.push_str("\r\n");
    };
    line("version", &env!("CARGO_PKG_VERSION"));
    line("uptime_s", &st.started.elapsed().as_secs());
    let route = sh.router.route();
    line("route", &route.side.as_str());
    line("route_epoch", &route.epoch);
    line("source", &sh.source.addr());
    line("source_version", &sh.source.version);
    line("listen", &sh.settings.listen);
    line("clients", &Stats::get(&st.clients));
    line("connections_total", &Stats::get(&st.connections_total));
    line(
        "rejected_connections",
        &Stats::get(&st.rejected_connections),
    );
    line(
        "dedicated_connections_total",
        &Stats::get(&st.dedicated_connections),
    );
    line("commands_total", &Stats::get(&st.commands_total));
    let co = &sh.cutover;
    line("cutover_state", &co.state().as_str());
    let pause_us = co.last_pause_us.load(std::sync::atomic::Ordering::Relaxed);
    line("last_pause_ms", &format!("{:.3}", pause_us as f64 / 1000.0));
    line(
        "held_commands_max",
        &co.held_clients_max
            .load(std::sync::atomic::Ordering::Relaxed),
    );
    line(
        "last_cutover_dirty_keys",
        &co.last_dirty_keys
            .load(std::sync::atomic::Ordering::Relaxed),
    );
    line(
        "held_clients",
        &sh.router
            .held_clients
            .load(std::sync::atomic::Ordering::Relaxed),
    );
    line(
        "source_writes_after_fence",
        &sh.sync
            .as_ref()
            .map_or(0, |s| s.total(|l| &l.writes_after_fence)),
    );
    match &sh.sync {
        None => line("sync_state", &"off"),
        Some(sy) => {
            // The whole (sums; the least advanced state), then each link of a cluster
            // source on one line, as INFO shows replicas.
            match sy.scanning() {
                Some(t) => {
                    use std::sync::atomic::Ordering::Relaxed;
                    let p = &t.progress;
                    // The SCAN copy's own names for the states: the first pass is loaded
                    // (scan_copy), then the rounds stream.
                    let state = match sy.state() {
                        sync::SyncState::FullSync => "scan_copy",
                        sync::SyncState::Streaming => "scan_rounds",
                        s => s.as_str(),
                    };
                    line("sync_state", &state);
                    line("sync_mode", &"scan");
                    line("scan_keys_total", &p.keys_total.load(Relaxed));
                    line("scan_keys_copied", &p.keys_copied.load(Relaxed));
                    line("scan_keys_recopied", &p.keys_recopied.load(Relaxed));
                    line("scan_rounds", &p.rounds.load(Relaxed));
                    line("dirty_keys", &t.dirty_keys());
                    line("dirty_bytes", &t.dirty_key_bytes());
                    line("dirty_overflows", &t.overflows.load(Relaxed));
                    line("untracked_writes", &t.untracked_writes.load(Relaxed));
                    line("untracked_script_calls", &t.untracked_scripts.load(Relaxed));
                }
                None => {
                    line("sync_state", &sy.state().as_str());
                    line("sync_mode", &"psync");
                }
            }
            let target = sh.settings.target.as_ref().map(|t| t.url.addr());
            line("target", &target.unwrap_or_default());
            line("source_offset", &sy.source_offset());
            line("applied_offset", &sy.applied());
            line("lag_bytes", &sy.lag_bytes());
            line("lag_ms", &sy.lag_ms());
            line("rdb_bytes", &sy.total(|l| &l.rdb_bytes));
            line("rdb_bytes_loaded", &sy.total(|l| &l.rdb_bytes_loaded));
            line("keys_loaded", &sy.total(|l| &l.keys_loaded));
            line("full_syncs", &sy.total(|l| &l.full_syncs));
            line("partial_syncs", &sy.total(|l| &l.partial_syncs));
            line("spool_bytes", &sy.total(|l| &l.spool_bytes));
            line("split_transactions", &sy.total(|l| &l.split_transactions));
            line("last_error", &sy.last_error());
            let v = &sh.verify;
            line("verify_state", &v.state());
            line("verify_keys_checked", &v.checked());
            line(
                "verify_differences",
                &v.differences.load(std::sync::atomic::Ordering::Relaxed),
            );
            line(
                "verify_finished_at",
                &v.finished_at.load(std::sync::atomic::Ordering::Relaxed),
            );
            if sy.is_multi() {
                line("sync_links", &sy.links.len());
                for (i, l) in sy.links.iter().enumerate() {
                    use sync::SyncStatus as S;
                    let st = &l.status;
                    line(
                        &format!("sync_link{i}"),
                        &format!(
                            "addr={},slots={},state={},source_offset={},applied_offset={},lag_bytes={},lag_ms={},keys_loaded={},full_syncs={},partial_syncs={}",
                            l.addr,
                            // Ranges apart with spaces: commas part the fields.
                            sync::scope::ranges_text(&l.ranges).replace(',', " "),
                            st.state().as_str(),
                            st.source_offset(),
                            st.applied(),
                            st.lag_bytes(),
                            st.lag_ms(),
                            S::get(&st.keys_loaded),
                            S::get(&st.full_syncs),
                            S::get(&st.partial_syncs),
                        ),
                    );
                    let err = st.last_error();
                    if !err.is_empty() {
                        line(
                            &format!("sync_link{i}_error"),
                            &err.replace(['\r', '\n'], " "),
                        );
                    }
                }
            }
        }
    }
    s
}
