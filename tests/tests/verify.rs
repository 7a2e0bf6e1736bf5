//! `verify` against real servers: differences planted one by one on the target are each
//! reported as exactly what they are and nothing else is; equal data in other encodings
//! (and with DEBUG renamed away on both sides) compares equal; inside `cutover run`,
//! VERIFY under load reports nothing until a key is changed on the target, and CUTOVER
//! VERIFIED waits for a clean one.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use support::*;

/// Runs `cutover verify`; (exit code, stdout, the JSON report).
fn verify(source: &str, target: &str, extra: &[&str]) -> (i32, String, serde_json::Value) {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    let o = Command::new(cutover_bin())
        .args(["verify", "--source", source, "--target", target, "--report"])
        .arg(&report)
        .args(["--rounds", "1"])
        .args(extra)
        .output()
        .expect("run cutover verify");
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let code = o.status.code().unwrap_or(-1);
    let json = std::fs::read(&report)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(serde_json::Value::Null);
    assert!(
        code == 0 || code == 1,
        "verify could not run ({code}): {out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    (code, out, json)
}

/// The (kind, key) pairs of a report.
fn found(report: &serde_json::Value) -> BTreeSet<(String, String)> {
    report["differences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["kind"].as_str().unwrap().to_string(),
                d["key"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The same data, written the same way, on a server.
fn fill(w: &mut Wire) {
    fill_every_type(w, "v", &["0.1", "tenth"]);
    let mut hset = vec!["HSET".to_string(), "bighash".to_string()];
    for i in 0..200_000 {
        hset.push(format!("f{i}"));
        hset.push(format!("{i}"));
    }
    assert_bytes(w.cmd(&hset), int(200_000));
    w.cmd(&["ZADD", "scores", "1.5", "m", "2", "n"]);
    w.cmd(&["RPUSH", "seq", "a", "b", "c"]);
    w.cmd(&["XADD", "events", "1-1", "f", "1"]);
    w.cmd(&["XADD", "events", "2-1", "f", "2"]);
    w.cmd(&["XGROUP", "CREATE", "events", "g", "0"]);
    for k in [
        "plain",
        "gets-ttl",
        "loses-ttl",
        "ttl-shifted",
        "gone",
        "retyped",
        "changed",
    ] {
        w.cmd(&["SET", k, "x"]);
    }
    w.cmd(&["PEXPIREAT", "loses-ttl", "4102444800000"]);
    w.cmd(&["PEXPIREAT", "ttl-shifted", "4102444800000"]);
}

#[test]
fn each_planted_difference_is_reported_as_exactly_that() {
    let source = RedisServer::start();
    let target = RedisServer::start();
    fill(&mut source.wire());
    fill(&mut target.wire());
    let (code, out, report) = verify(&source.url(), &target.url(), &[]);
    assert_eq!(code, 0, "{out}");
    assert!(found(&report).is_empty(), "{out}");

    let mut t = target.wire();
    t.cmd(&["DEL", "gone"]);
    t.cmd(&["SET", "changed", "y"]);
    t.cmd(&["HSET", "bighash", "f123456", "other"]);
    // One ulp above 1.5.
    t.cmd(&["ZADD", "scores", "1.5000000000000002", "m"]);
    t.cmd(&["DEL", "seq"]);
    t.cmd(&["RPUSH", "seq", "a", "c", "b"]);
    t.cmd(&["XDEL", "events", "2-1"]);
    t.cmd(&["XGROUP", "SETID", "events", "g", "1-1"]);
    t.cmd(&["PEXPIREAT", "gets-ttl", "4102444800000"]);
    t.cmd(&["PERSIST", "loses-ttl"]);
    t.cmd(&["PEXPIREAT", "ttl-shifted", "4102444900000"]);
    t.cmd(&["SET", "extra", "1"]);
    t.cmd(&["DEL", "retyped"]);
    t.cmd(&["SADD", "retyped", "x"]);
    // cutover's own keys are never reported.
    t.cmd(&["SET", "__cutover:checkpoint", "1"]);
    let (code, out, report) = verify(&source.url(), &target.url(), &[]);
    assert_eq!(code, 1, "{out}");
    let want: BTreeSet<(String, String)> = [
        ("missing", "gone"),
        ("value", "changed"),
        ("value", "bighash"),
        ("value", "scores"),
        ("value", "seq"),
        ("value", "events"),
        ("ttl", "gets-ttl"),
        ("ttl", "loses-ttl"),
        ("ttl", "ttl-shifted"),
        ("extra", "extra"),
        ("type", "retyped"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(found(&report), want, "{out}");
    // The group's last id alone differs too.
    t.cmd(&["XADD", "events", "2-1", "f", "2"]);
    let (_, out, report) = verify(&source.url(), &target.url(), &["--match", "events"]);
    assert_eq!(
        found(&report),
        [("value".to_string(), "events".to_string())].into(),
        "{out}"
    );
    // Names only, never values, on stdout.
    assert!(!out.contains("other"), "{out}");
}

#[test]
fn the_same_data_in_other_encodings_is_equal_without_debug() {
    let no_debug = ["--rename-command", "DEBUG", ""];
    let source = RedisServer::builder().args(&no_debug).start();
    // Every collection as its big encoding on the target.
    let target = RedisServer::builder()
        .args(&no_debug)
        .args(&[
            "--hash-max-listpack-entries",
            "0",
            "--set-max-intset-entries",
            "0",
            "--zset-max-listpack-entries",
            "0",
            "--list-max-listpack-size",
            "1",
        ])
        .start();
    for s in [&source, &target] {
        let mut w = s.wire();
        w.cmd(&["HSET", "h", "a", "1", "b", "2", "c", "3"]);
        w.cmd(&["SADD", "ints", "1", "2", "3", "40"]);
        w.cmd(&["SADD", "strs", "x", "y", "z"]);
        w.cmd(&["ZADD", "z", "1", "a", "2.5", "b"]);
        w.cmd(&["RPUSH", "l", "1", "2", "3", "4", "5"]);
    }
    assert_ne!(
        source.cmd(&["OBJECT", "ENCODING", "h"]),
        target.cmd(&["OBJECT", "ENCODING", "h"])
    );
    let (code, out, report) = verify(&source.url(), &target.url(), &[]);
    assert_eq!(code, 0, "{out}");
    assert!(found(&report).is_empty());
    assert_eq!(report["checked"], 5, "{out}");
}

#[test]
fn verify_inside_run_under_load_then_a_real_difference_and_cutover_verified() {
    if skip_direct("VERIFY") {
        return;
    }
    let source = sync_source();
    fill_every_type(&mut source.wire(), "r", &[]);
    let target = RedisServer::start();
    let proxy = cutover_with_target(&source, &target, &[]);
    wait_caught_up(&source, &proxy);
    // Not verified yet: CUTOVER VERIFIED refuses.
    let r = cutover(&proxy, &["CHECK", "VERIFIED"]);
    assert!(
        String::from_utf8_lossy(&r).contains("VERIFY"),
        "{}",
        show(&r)
    );
    let load = AppLoad::start(proxy.addr(), 100_000);
    let run_verify = |proxy: &Cutover| -> std::collections::HashMap<String, String> {
        let mut a = proxy.admin();
        assert_prefix(a.cmd(&["VERIFY", "FULL"]), b"+OK");
        poll_until(Duration::from_secs(60), || {
            let st = proxy.status();
            st["verify_state"] == "done" || st["verify_state"] == "error"
        });
        proxy.status()
    };
    for _ in 0..3 {
        let st = run_verify(&proxy);
        assert_eq!(st["verify_state"], "done", "{st:?}");
        assert_eq!(st["verify_differences"], "0", "{st:?}");
        assert!(st["verify_keys_checked"].parse::<u64>().unwrap() > 0);
    }
    assert_bytes(
        cutover(&proxy, &["CHECK", "VERIFIED"]),
        b"+OK: ready for CUTOVER\r\n",
    );
    // A key changed on the target behind the syncer's back is a real difference.
    target.cmd(&["SET", "r:str", "tampered"]);
    let st = run_verify(&proxy);
    assert_eq!(st["verify_differences"], "1", "{st:?}");
    let r = cutover(&proxy, &["VERIFIED"]);
    assert!(
        String::from_utf8_lossy(&r).contains("VERIFY"),
        "{}",
        show(&r)
    );
    load.finish();
}

#[test]
fn a_6_2_source_against_a_cluster_target_and_back() {
    if skip_direct("the syncer") {
        return;
    }
    let source = RedisServer::builder()
        .redis62()
        .args(&["--repl-diskless-sync-delay", "0"])
        .start();
    {
        let mut s = source.wire();
        for i in 0..200 {
            s.cmd(&["SET", &format!("k{i}"), &i.to_string()]);
            s.cmd(&["HSET", &format!("h{i}"), "f", &i.to_string()]);
        }
        s.cmd(&["ZADD", "z", "1", "a", "2", "b"]);
        s.cmd(&["SET", "t", "1", "PX", "900000"]);
    }
    let cluster = RedisCluster::start(3);
    let proxy = Cutover::start(&source, &["--target", &cluster.url()]);
    wait_caught_up(&source, &proxy);
    let (code, out, _) = verify(&source.url(), &cluster.url(), &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("verified 402 keys"), "{out}");
    // A key lost on the cluster: missing one way, extra the other.
    assert_bytes(cluster.owner_of(b"k7").cmd(&["DEL", "k7"]), int(1));
    let (code, _, report) = verify(&source.url(), &cluster.url(), &[]);
    assert_eq!(code, 1);
    assert_eq!(
        found(&report),
        [("missing".to_string(), "k7".to_string())].into()
    );
    let (code, _, report) = verify(&cluster.url(), &source.url(), &[]);
    assert_eq!(code, 1);
    assert_eq!(
        found(&report),
        [("extra".to_string(), "k7".to_string())].into()
    );
    // A sample checks that many keys of the source.
    let (code, out, report) = verify(&source.url(), &cluster.url(), &["--sample", "50"]);
    assert!(code == 0 || code == 1, "{out}");
    let checked = report["checked"].as_u64().unwrap();
    assert!((40..=60).contains(&checked), "{out}");
}

#[test]
fn a_verify_that_cannot_run_says_so_with_status_2() {
    let target = RedisServer::start();
    let o = Command::new(cutover_bin())
        .args([
            "verify",
            "--source",
            "redis://127.0.0.1:1",
            "--target",
            &target.url(),
        ])
        .output()
        .expect("run cutover verify");
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("could not run") && err.contains("source"),
        "{err}"
    );
}

#[test]
fn a_restore_is_checked_against_its_rdb_file() {
    let source = RedisServer::start();
    {
        let mut s = source.wire();
        fill_every_type(&mut s, "f", &["0.1", "tenth"]);
        s.cmd(&["SELECT", "2"]);
        s.cmd(&["SET", "in2", "x"]);
        assert_bytes(s.cmd(&["SAVE"]), b"+OK\r\n");
    }
    let file = source.dir().join("dump.rdb");
    let target = RedisServer::start();
    let o = Command::new(cutover_bin())
        .arg("restore")
        .arg(&file)
        .args(["--target", &target.url()])
        .output()
        .expect("run cutover restore");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (code, out, _) = verify(file.to_str().unwrap(), &target.url(), &[]);
    assert_eq!(code, 0, "{out}");
    let mut t = target.wire();
    t.cmd(&["SELECT", "2"]);
    t.cmd(&["SET", "in2", "changed"]);
    t.cmd(&["SET", "new", "x"]);
    let (code, out, report) = verify(file.to_str().unwrap(), &target.url(), &[]);
    assert_eq!(code, 1, "{out}");
    assert_eq!(
        found(&report),
        [
            ("extra".to_string(), "new".to_string()),
            ("value".to_string(), "in2".to_string())
        ]
        .into(),
        "{out}"
    );
}
