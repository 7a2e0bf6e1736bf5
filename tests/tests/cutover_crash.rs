//! The switch survives any crash: cutover killed at each step of a CUTOVER (its fault
//! points, `CUTOVER_FAULT=<point>`: the process aborts there as a `kill -9` would) and
//! started again. Exactly one side serves afterwards, with every acknowledged write on it,
//! none twice: before the commit point (the switch record confirmed on the target) the
//! clients are back on the source, after it on the target.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::{
    poll_until, sync_source, wait_caught_up, Cutover, RedisServer, Value, Wire, SYNC_WAIT,
};

/// A client through the proxy: INCRs one key, one at a time, counting what was
/// acknowledged and what was sent without an answer (the proxy died under it). It follows
/// the proxy to its new address after a restart.
struct Writer {
    addr: Arc<Mutex<SocketAddr>>,
    acked: Arc<AtomicU64>,
    unanswered: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    fn start(addr: SocketAddr) -> Writer {
        let w = Writer {
            addr: Arc::new(Mutex::new(addr)),
            acked: Arc::default(),
            unanswered: Arc::default(),
            stop: Arc::default(),
            thread: None,
        };
        let (a, acked, unanswered, stop) = (
            w.addr.clone(),
            w.acked.clone(),
            w.unanswered.clone(),
            w.stop.clone(),
        );
        let thread = std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let addr = *a.lock().unwrap();
                let Ok(mut c) = Wire::try_connect(addr) else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                c.set_timeout(Duration::from_secs(20));
                while !stop.load(Ordering::Relaxed) {
                    match c.try_cmd(&["INCR", "acked"]) {
                        Ok(r) if r.starts_with(b":") => {
                            acked.fetch_add(1, Ordering::SeqCst);
                        }
                        Ok(r) => panic!("a client got an error: {}", support::show(&r)),
                        Err(_) => {
                            unanswered.fetch_add(1, Ordering::SeqCst);
                            break;
                        }
                    }
                }
            }
        });
        Writer {
            thread: Some(thread),
            ..w
        }
    }

    fn follow(&self, addr: SocketAddr) {
        *self.addr.lock().unwrap() = addr;
    }

    fn wait_acked(&self, more: u64) {
        let from = self.acked.load(Ordering::SeqCst);
        poll_until(SYNC_WAIT, || {
            self.acked.load(Ordering::SeqCst) >= from + more
        });
    }

    /// Stops; (acknowledged, sent without an answer).
    fn finish(mut self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().expect("writer");
        }
        (
            self.acked.load(Ordering::SeqCst),
            self.unanswered.load(Ordering::SeqCst),
        )
    }
}

fn counter(w: &mut Wire) -> u64 {
    match w.value(&["GET", "acked"]) {
        Value::Bulk(b) => String::from_utf8_lossy(&b).parse().unwrap(),
        other => panic!("{other:?}"),
    }
}

#[track_caller]
fn crash_at(point: &str, switched: bool) {
    let source = sync_source();
    let target = RedisServer::start();
    let start = |fault: Option<&str>| {
        let mut b = Cutover::builder(&source).args(&["--target", &target.url()]);
        if let Some(f) = fault {
            b = b.env("CUTOVER_FAULT", f);
        }
        b.start()
    };
    let mut proxy = start(Some(point));
    wait_caught_up(&source, &proxy);
    let writer = Writer::start(proxy.addr());
    writer.wait_acked(200);

    // The CUTOVER: the process dies at the point, its admin connection with it.
    let mut admin = proxy.admin();
    admin.set_timeout(Duration::from_secs(20));
    let r = admin.try_cmd(&["CUTOVER"]);
    assert!(r.is_err(), "{point}: CUTOVER answered {r:?}");
    assert!(!proxy.wait_exit(Duration::from_secs(10)).success());

    let proxy = start(None);
    writer.follow(proxy.addr());
    writer.wait_acked(200);
    let st = proxy.status();
    let want = if switched { "target" } else { "source" };
    assert_eq!(st["route"], want, "{point}: {st:?}");
    let recorded = target
        .wire()
        .cmd(&["HGET", "__cutover:checkpoint", "route"]);
    assert_eq!(
        recorded.starts_with(b"$6\r\ntarget"),
        switched,
        "{point}: the switch record"
    );
    if !switched {
        // Back on the source, the sync streams again and a CUTOVER now goes through.
        poll_until(SYNC_WAIT, || proxy.status()["sync_state"] == "streaming");
        assert_eq!(support::cutover(&proxy, &[]), b"+OK\r\n", "{point}");
        writer.wait_acked(100);
        assert_eq!(proxy.status()["route"], "target");
    }
    let (acked, unanswered) = writer.finish();
    // Every acknowledged INCR is on the side that serves, none twice; one sent as the
    // process died may or may not have run.
    let v = counter(&mut proxy.wire());
    assert!(
        v >= acked && v <= acked + unanswered,
        "{point}: counter {v}, acknowledged {acked}, unanswered {unanswered}"
    );
    assert_eq!(counter(&mut target.wire()), v, "{point}: the target");
}

#[test]
fn killed_after_the_gate() {
    crash_at("after_gate", false);
}

#[test]
fn killed_after_the_drain() {
    crash_at("after_drain", false);
}

#[test]
fn killed_after_the_fence() {
    crash_at("after_fence", false);
}

#[test]
fn killed_during_the_catch_up() {
    crash_at("during_catchup", false);
}

#[test]
fn killed_after_the_commit() {
    crash_at("after_commit", true);
}

#[test]
fn killed_after_the_flip() {
    crash_at("after_flip", true);
}

#[test]
fn killed_after_the_first_released_write() {
    crash_at("after_release", true);
}

/// The switch record reached the target but its confirmation was lost: the CUTOVER
/// aborted, the source was marked before any client command went back there, and the
/// process died once a client's write was answered by the source. The restart routes to
/// the source (that write would be lost on the target) and takes the record back.
#[test]
fn killed_after_an_unconfirmed_commit() {
    crash_at("unconfirmed_commit", false);
}

/// Starts cutover (sync to `target`), which must refuse to start: what it said.
fn start_refused(source: &RedisServer, target: &RedisServer) -> String {
    let out = std::process::Command::new(support::cutover_bin())
        .args([
            "run",
            "--listen",
            &format!("127.0.0.1:{}", support::free_port()),
        ])
        .args(["--admin", &format!("127.0.0.1:{}", support::free_port())])
        .args(["--source", &source.url(), "--target", &target.url()])
        .output()
        .expect("run cutover");
    assert!(!out.status.success(), "cutover started");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_target_down_at_start_keeps_the_clients_on_the_source_until_it_answers() {
    let source = sync_source();
    let port = support::free_port();
    let url = format!("redis://127.0.0.1:{port}");
    let proxy = Cutover::builder(&source).args(&["--target", &url]).start();
    let mut c = proxy.wire();
    assert_eq!(c.cmd(&["SET", "k", "v"]), b"+OK\r\n");
    assert_eq!(c.cmd(&["GET", "k"]), b"$1\r\nv\r\n");
    assert_eq!(proxy.status()["route"], "source");
    assert!(support::cutover(&proxy, &["CHECK"]).starts_with(b"-"));
    // The target comes up: synced, and the CUTOVER goes through.
    let target = RedisServer::builder().port(port).start();
    wait_caught_up(&source, &proxy);
    poll_until(SYNC_WAIT, || {
        support::cutover(&proxy, &["CHECK"]).starts_with(b"+")
    });
    assert_eq!(support::cutover(&proxy, &[]), b"+OK\r\n");
    assert_eq!(target.cmd(&["GET", "k"]), b"$1\r\nv\r\n");
    // cutover's attempt marker was never applied to the target.
    assert_eq!(target.cmd(&["EXISTS", "__cutover:attempt"]), b":0\r\n");
}

#[test]
fn a_target_down_at_start_after_an_attempt_is_refused() {
    let source = sync_source();
    let mut target = RedisServer::start();
    let proxy = Cutover::builder(&source)
        .args(&["--target", &target.url()])
        .env("CUTOVER_FAULT", "after_fence")
        .start();
    wait_caught_up(&source, &proxy);
    let mut admin = proxy.admin();
    admin.set_timeout(Duration::from_secs(20));
    assert!(admin.try_cmd(&["CUTOVER"]).is_err());
    drop(proxy);
    assert_eq!(source.cmd(&["EXISTS", "__cutover:attempt"]), b":1\r\n");
    target.stop();
    let err = start_refused(&source, &target);
    assert!(err.contains("attempt marker"), "{err}");
    // The target answers again (empty: it had no persistence): no switch recorded, the
    // clients are on the source, the marker and the pause are gone.
    target.restart();
    let proxy = Cutover::builder(&source)
        .args(&["--target", &target.url()])
        .start();
    assert_eq!(proxy.status()["route"], "source");
    poll_until(SYNC_WAIT, || {
        source.cmd(&["EXISTS", "__cutover:attempt"]) == b":0\r\n"
    });
    assert_eq!(proxy.wire().cmd(&["SET", "after", "1"]), b"+OK\r\n");
}

#[test]
fn finish_removes_the_bookkeeping_and_a_restart_refuses_the_old_source() {
    let source = sync_source();
    let target = RedisServer::start();
    let proxy = Cutover::builder(&source)
        .args(&["--target", &target.url()])
        .start();
    wait_caught_up(&source, &proxy);
    let mut admin = proxy.admin();
    admin.set_timeout(Duration::from_secs(20));
    assert!(admin.cmd(&["FINISH"]).starts_with(b"-ERR no CUTOVER yet"));
    let mut c = proxy.wire();
    assert_eq!(c.cmd(&["SET", "k", "v"]), b"+OK\r\n");
    assert_eq!(support::cutover(&proxy, &[]), b"+OK\r\n");
    assert!(target.cmd(&["EXISTS", "__cutover:checkpoint"]) == b":1\r\n");

    let done = Value::parse(&admin.cmd(&["FINISH"])).text();
    assert!(done.contains("__cutover:checkpoint"), "{done}");
    let mut t = target.wire();
    let left: Vec<_> = support::scan_keys(&mut t)
        .into_iter()
        .filter(|k| k.starts_with(b"__cutover:"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    assert_eq!(source.cmd(&["EXISTS", "__cutover:finished"]), b":1\r\n");
    // The clients are still served, from the target; the source takes writes again.
    assert_eq!(c.cmd(&["SET", "after", "1"]), b"+OK\r\n");
    assert_eq!(target.cmd(&["GET", "after"]), b"$1\r\n1\r\n");
    assert_eq!(source.cmd(&["SET", "direct", "1"]), b"+OK\r\n");
    drop(proxy);

    // The same configuration started again: refused, saying why.
    let err = start_refused(&source, &target);
    assert!(
        err.contains("finished") && err.contains("configure the target as the source"),
        "{err}"
    );
    // With the old source down it can't read the mark: refused too, never routed there.
    let mut source = source;
    source.stop();
    let err = start_refused(&source, &target);
    assert!(err.contains("cannot tell whether the migration"), "{err}");
}
