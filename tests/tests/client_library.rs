//! A real client library through the proxy: the `redis` crate's sync API, with its
//! connection setup (CLIENT SETINFO pipelined, SELECT from the URL, AUTH or HELLO 3 AUTH).

use redis::{Commands, Connection, RedisResult};
use support::{assert_bytes, bulk, Cutover, RedisServer};

fn connect(url: &str) -> Connection {
    let client = redis::Client::open(url).unwrap_or_else(|e| panic!("open {url}: {e}"));
    client
        .get_connection_with_timeout(std::time::Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connect {url}: {e}"))
}

#[test]
fn set_get_incr_and_binary() {
    let (_server, proxy) = Cutover::with_server();
    let mut con = connect(&format!("redis://{}/", proxy.addr()));
    let () = con.set("lib:k", "v").unwrap();
    let v: String = con.get("lib:k").unwrap();
    assert_eq!(v, "v");
    let missing: Option<String> = con.get("lib:missing").unwrap();
    assert_eq!(missing, None);
    assert_eq!(con.incr::<_, _, i64>("lib:n", 1).unwrap(), 1);
    assert_eq!(con.incr::<_, _, i64>("lib:n", 41).unwrap(), 42);
    let key: &[u8] = b"bin\0\r\n\xff";
    let val: &[u8] = b"\r\n$-1\r\n\0";
    let () = con.set(key, val).unwrap();
    let back: Vec<u8> = con.get(key).unwrap();
    assert_eq!(back, val);
    let pong: String = redis::cmd("PING").query(&mut con).unwrap();
    assert_eq!(pong, "PONG");
    let err = redis::cmd("INCR")
        .arg("lib:k")
        .query::<i64>(&mut con)
        .unwrap_err();
    assert!(err.to_string().contains("not an integer"), "{err}");
    // The connection is still in step after an error.
    assert_eq!(con.get::<_, i64>("lib:n").unwrap(), 42);
}

#[test]
fn pipelines_and_transactions() {
    let (_server, proxy) = Cutover::with_server();
    let mut con = connect(&format!("redis://{}/", proxy.addr()));

    let (a, b, c): (i64, i64, String) = redis::pipe()
        .set("p", 1)
        .ignore()
        .incr("p", 5)
        .incr("p", 1)
        .get("p")
        .query(&mut con)
        .unwrap();
    assert_eq!((a, b, c.as_str()), (6, 7, "7"));

    // MULTI/EXEC.
    let (x, y): (i64, i64) = redis::pipe()
        .atomic()
        .set("t", 10)
        .ignore()
        .incr("t", 1)
        .incr("t", 1)
        .query(&mut con)
        .unwrap();
    assert_eq!((x, y), (11, 12));

    // A large pipeline.
    let mut pipe = redis::pipe();
    for i in 0..5_000 {
        pipe.set(format!("bulk:{i}"), i).ignore();
    }
    for i in 0..5_000 {
        pipe.get(format!("bulk:{i}"));
    }
    let values: Vec<i64> = pipe.query(&mut con).unwrap();
    assert_eq!(values, (0..5_000).collect::<Vec<i64>>());

    // WATCH-based optimistic transaction, with another client interfering once.
    let () = con.set("tx", 100).unwrap();
    let mut other = connect(&format!("redis://{}/", proxy.addr()));
    let mut interfered = false;
    let result: RedisResult<(i64,)> = redis::transaction(&mut con, &["tx"], |con, pipe| {
        let v: i64 = con.get("tx")?;
        if !interfered {
            interfered = true;
            let () = other.set("tx", 1000)?;
        }
        pipe.set("tx", v + 1).ignore().get("tx").query(con)
    });
    assert_eq!(result.unwrap(), (1001,));
    assert!(interfered);
}

#[test]
fn url_database_and_password() {
    let server = RedisServer::builder().password("libpw").start();
    let proxy = Cutover::builder(&server).password("libpw").start();

    let mut con = connect(&format!("redis://:libpw@{}/3", proxy.addr()));
    let () = con.set("in3", "yes").unwrap();
    let mut direct = server.wire();
    assert_bytes(direct.cmd(&["SELECT", "3"]), b"+OK\r\n");
    assert_bytes(direct.cmd(&["GET", "in3"]), bulk("yes"));

    let bad = redis::Client::open(format!("redis://:wrong@{}/", proxy.addr()))
        .unwrap()
        .get_connection();
    assert!(bad.is_err(), "a wrong password must fail");

    // RESP3: the crate authenticates with HELLO 3 AUTH.
    let mut con3 = connect(&format!(
        "redis://default:libpw@{}/3?protocol=resp3",
        proxy.addr()
    ));
    let v: String = con3.get("in3").unwrap();
    assert_eq!(v, "yes");
    let () = con3.hset("h", "f", "v").unwrap();
    let all: std::collections::HashMap<String, String> = con3.hgetall("h").unwrap();
    assert_eq!(all.get("f").map(String::as_str), Some("v"));
}

#[test]
fn the_admin_port_takes_client_libraries_as_they_connect() {
    let server = RedisServer::start();
    let proxy = Cutover::start(&server, &["--admin-password", "adm"]);
    let admin = proxy.admin_addr();

    // The redis crate: RESP3 (HELLO 3 AUTH, CLIENT SETINFO pipelined) and RESP2 (AUTH).
    for url in [
        format!("redis://default:adm@{admin}/?protocol=resp3"),
        format!("redis://:adm@{admin}/"),
    ] {
        let mut con = connect(&url);
        let status: String = redis::cmd("STATUS").query(&mut con).unwrap();
        assert!(status.contains("route:source"), "{url}: {status}");
        let pong: String = redis::cmd("PING").query(&mut con).unwrap();
        assert_eq!(pong, "PONG");
        let check: RedisResult<String> = redis::cmd("CUTOVER").arg("CHECK").query(&mut con);
        // No target: the check says why, as an error the library reports.
        assert!(check.is_err(), "{url}");
    }

    // redis-py 8 in its default settings, then RESP3 explicitly.
    let script = format!(
        "import redis\n\
         for proto in (None, 3):\n\
         \x20   kw = {{}} if proto is None else {{'protocol': proto}}\n\
         \x20   r = redis.Redis(host='127.0.0.1', port={}, password='adm', **kw)\n\
         \x20   s = r.execute_command('STATUS')\n\
         \x20   s = s.decode() if isinstance(s, bytes) else s\n\
         \x20   assert 'route:source' in s, s\n\
         \x20   assert r.ping()\n\
         \x20   r.client_setname('deploy')\n\
         \x20   assert r.client_getname() in (b'deploy', 'deploy')\n\
         print('ok')\n",
        admin.port()
    );
    support::run_redis_py(&script);

    // The replies themselves, as Redis words them.
    let mut w = proxy.admin();
    assert!(w
        .cmd(&["HELLO", "3"])
        .starts_with(b"-NOAUTH HELLO must be called"));
    assert!(w.cmd(&["HELLO", "4"]).starts_with(b"-NOPROTO"));
    assert!(w
        .cmd(&["HELLO", "3", "AUTH", "default", "nope"])
        .starts_with(b"-WRONGPASS"));
    let hello = w.cmd(&["HELLO", "3", "AUTH", "default", "adm", "SETNAME", "x"]);
    assert!(
        hello.starts_with(b"%7\r\n$6\r\nserver\r\n$7\r\ncutover\r\n"),
        "{}",
        support::show(&hello)
    );
    assert_bytes(w.cmd(&["CLIENT", "GETNAME"]), bulk("x"));
    assert_bytes(w.cmd(&["CLIENT", "SETINFO", "LIB-NAME", "t"]), b"+OK\r\n");
    assert_bytes(w.cmd(&["ECHO", "hi"]), bulk("hi"));
    assert_bytes(w.cmd(&["SELECT", "0"]), b"+OK\r\n");
    assert!(w
        .cmd(&["SELECT", "1"])
        .starts_with(b"-ERR DB index is out of range"));
    assert_bytes(w.cmd(&["CLIENT", "GETNAME"]), bulk("x"));
    assert_bytes(w.cmd(&["RESET"]), b"+RESET\r\n");
    assert!(w.cmd(&["STATUS"]).starts_with(b"-NOAUTH"));
}

/// An application's own ACL user, as redis-py 8 and the redis crate log in with it: the
/// source checks it, and its permissions hold through the proxy.
#[test]
fn client_libraries_log_in_as_their_own_user() {
    let server = RedisServer::start();
    assert_bytes(
        server.cmd(&["ACL", "SETUSER", "app1", "on", ">pw1", "~app1:*", "+@all"]),
        b"+OK\r\n",
    );
    let proxy = Cutover::start::<&str>(&server, &[]);

    for proto in ["", "?protocol=resp3"] {
        let mut con = connect(&format!("redis://app1:pw1@{}/{proto}", proxy.addr()));
        let () = con.set("app1:k", "v").unwrap();
        let who: String = redis::cmd("ACL").arg("WHOAMI").query(&mut con).unwrap();
        assert_eq!(who, "app1");
        let denied: RedisResult<Option<String>> = con.get("other");
        match denied {
            Err(e) => assert_eq!(e.code(), Some("NOPERM"), "{proto}: {e}"),
            Ok(v) => panic!("{proto}: a key outside app1's patterns was read: {v:?}"),
        }
    }
    assert_bytes(server.cmd(&["GET", "app1:k"]), bulk("v"));
    let bad = redis::Client::open(format!("redis://app1:nope@{}/", proxy.addr()))
        .unwrap()
        .get_connection_with_timeout(std::time::Duration::from_secs(10));
    match bad {
        Err(e) => assert_eq!(e.kind(), redis::ErrorKind::AuthenticationFailed, "{e}"),
        Ok(_) => panic!("a wrong password logged in"),
    }

    let script = format!(
        "import redis\n\
         for proto in (2, 3):\n\
         \x20   r = redis.Redis(host='127.0.0.1', port={}, username='app1', password='pw1', protocol=proto)\n\
         \x20   assert r.acl_whoami() in (b'app1', 'app1')\n\
         \x20   r.set('app1:py', 'x')\n\
         \x20   try:\n\
         \x20       r.get('other')\n\
         \x20       raise SystemExit('read a key outside the user')\n\
         \x20   except redis.exceptions.NoPermissionError:\n\
         \x20       pass\n\
         try:\n\
         \x20   redis.Redis(host='127.0.0.1', port={}, username='app1', password='bad').ping()\n\
         \x20   raise SystemExit('a wrong password logged in')\n\
         except redis.exceptions.AuthenticationError:\n\
         \x20   pass\n\
         print('ok')\n",
        proxy.addr().port(),
        proxy.addr().port()
    );
    support::run_redis_py(&script);
}
