//! Every default `redis-benchmark` test runs through the proxy without an error
//! (redis-benchmark 7 exits with status 1 on the first error reply).

use std::process::Command;

use support::Cutover;

const DEFAULT_TESTS: &[&str] = &[
    "PING_INLINE",
    "PING_MBULK",
    "SET",
    "GET",
    "INCR",
    "LPUSH",
    "RPUSH",
    "LPOP",
    "RPOP",
    "SADD",
    "HSET",
    "SPOP",
    "ZADD",
    "ZPOPMIN",
    "LPUSH (needed to benchmark LRANGE)",
    "LRANGE_100 (first 100 elements)",
    "LRANGE_300 (first 300 elements)",
    "LRANGE_500 (first 500 elements)",
    "LRANGE_600 (first 600 elements)",
    "MSET (10 keys)",
];

fn run_benchmark(proxy: &Cutover, extra: &[&str], expected: &[&str]) {
    let port = proxy.addr().port().to_string();
    let mut args = vec![
        "-h",
        "127.0.0.1",
        "-p",
        &port,
        "-n",
        "2000",
        "-c",
        "10",
        "-q",
    ];
    args.extend_from_slice(extra);
    let out = Command::new("redis-benchmark")
        .args(&args)
        .output()
        .expect("run redis-benchmark (is redis-tools installed?)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let context = || format!("redis-benchmark {args:?}\nstdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(
        out.status.success(),
        "exit status {}: {}",
        out.status,
        context()
    );
    // -q prints progress lines ending in \r; keep the final ones.
    let lines: Vec<&str> = stdout
        .split(['\r', '\n'])
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    for name in expected {
        let prefix = format!("{name}: ");
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(&prefix) && l.contains("requests per second")),
            "no result for {name}: {}",
            context()
        );
    }
    for l in lines
        .iter()
        .chain(stderr.lines().collect::<Vec<_>>().iter())
    {
        assert!(
            !l.contains("ERR") && !l.to_ascii_lowercase().contains("error"),
            "error line {l:?}: {}",
            context()
        );
    }
}

#[test]
fn all_default_tests() {
    let (_server, proxy) = Cutover::with_server();
    run_benchmark(&proxy, &[], DEFAULT_TESTS);
}

#[test]
fn all_default_tests_pipelined() {
    let (_server, proxy) = Cutover::with_server();
    run_benchmark(&proxy, &["-P", "16"], DEFAULT_TESTS);
}

#[test]
fn resp3_session() {
    let (_server, proxy) = Cutover::with_server();
    run_benchmark(
        &proxy,
        &["-3", "-P", "4", "-t", "ping,set,get,hset,lrange_100,mset"],
        &[
            "PING_INLINE",
            "PING_MBULK",
            "SET",
            "GET",
            "HSET",
            "LRANGE_100 (first 100 elements)",
            "MSET (10 keys)",
        ],
    );
}

#[test]
fn random_keys_larger_values_more_clients() {
    let (_server, proxy) = Cutover::with_server();
    run_benchmark(
        &proxy,
        &[
            "-c",
            "50",
            "-r",
            "1000",
            "-d",
            "2000",
            "-P",
            "8",
            "-t",
            "set,get,lpush,lpop",
        ],
        &["SET", "GET", "LPUSH", "LPOP"],
    );
}
