//! TLS on the client listener: redis-cli --tls and redis-py with ssl=True through the proxy,
//! with and without client certificates; a plain client is refused.

use std::process::Command;

use support::{tls_files, Cutover, RedisServer, Wire};

fn redis_cli(
    port: u16,
    tls: &support::TlsFiles,
    client: Option<&(std::path::PathBuf, std::path::PathBuf)>,
    args: &[&str],
) -> String {
    let mut c = Command::new("redis-cli");
    c.args(["-p", &port.to_string(), "--tls", "--cacert"])
        .arg(&tls.ca);
    if let Some((cert, key)) = client {
        c.arg("--cert").arg(cert).arg("--key").arg(key);
    }
    let out = c.args(args).output().expect("redis-cli");
    String::from_utf8_lossy(&out.stdout).trim().to_string() + &String::from_utf8_lossy(&out.stderr)
}

#[test]
fn applications_reach_the_proxy_over_tls() {
    let server = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let tls = tls_files(dir.path());
    let cert = tls.cert.to_str().unwrap().to_string();
    let key = tls.key.to_str().unwrap().to_string();
    let proxy = Cutover::builder(&server)
        .args(&["--tls-cert-file", &cert, "--tls-key-file", &key])
        .start();
    let port = proxy.addr().port();
    assert_eq!(redis_cli(port, &tls, None, &["SET", "k", "over tls"]), "OK");
    assert_eq!(redis_cli(port, &tls, None, &["GET", "k"]), "over tls");
    assert_eq!(server.cmd(&["GET", "k"]), b"$8\r\nover tls\r\n");

    // redis-py, ssl=True, verifying the proxy's certificate.
    let script = format!(
        "import redis\n\
         r = redis.Redis(host='127.0.0.1', port={port}, ssl=True, ssl_ca_certs='{}')\n\
         r.set('py', 'tls')\n\
         assert r.get('py') == b'tls'\n\
         assert r.incr('n') == 1\n\
         print('ok')\n",
        tls.ca.display()
    );
    support::run_redis_py(&script);

    // A plain client gets no Redis replies.
    let mut w = Wire::connect(proxy.addr());
    w.set_timeout(std::time::Duration::from_secs(2));
    let r = w.try_cmd(&["PING"]);
    assert!(!matches!(&r, Ok(b) if b.starts_with(b"+PONG")), "{r:?}");
}

#[test]
fn client_certificates_can_be_required() {
    let server = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let tls = tls_files(dir.path());
    let (cert, key, ca) = (
        tls.cert.to_str().unwrap().to_string(),
        tls.key.to_str().unwrap().to_string(),
        tls.ca.to_str().unwrap().to_string(),
    );
    let proxy = Cutover::builder(&server)
        .args(&[
            "--tls-cert-file",
            &cert,
            "--tls-key-file",
            &key,
            "--tls-client-ca-file",
            &ca,
        ])
        .start();
    let port = proxy.addr().port();
    let client = (tls.client_cert.clone(), tls.client_key.clone());
    assert_eq!(redis_cli(port, &tls, Some(&client), &["PING"]), "PONG");
    let without = redis_cli(port, &tls, None, &["PING"]);
    assert_ne!(without, "PONG", "{without}");
}

#[test]
fn the_admin_listener_speaks_tls_when_configured() {
    let server = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let tls = tls_files(dir.path());
    let admin = support::free_port();
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        format!(
            "[admin]\nlisten = \"127.0.0.1:{admin}\"\ntls_cert_file = \"{}\"\ntls_key_file = \"{}\"\n",
            tls.cert.display(),
            tls.key.display()
        ),
    )
    .unwrap();
    let mut child = Command::new(support::cutover_bin())
        .args(["run", "--config"])
        .arg(&config)
        .args(["--listen", &format!("127.0.0.1:{}", support::free_port())])
        .args(["--source", &server.url()])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut pong = String::new();
    support::poll_until(std::time::Duration::from_secs(15), || {
        pong = redis_cli(admin, &tls, None, &["PING"]);
        pong == "PONG"
    });
    let status = redis_cli(admin, &tls, None, &["STATUS"]);
    assert!(status.contains("route:source"), "{status}");
    // cutover ctl, over TLS, trusting the test CA.
    let out = Command::new(support::cutover_bin())
        .args([
            "ctl",
            "--admin",
            &format!("127.0.0.1:{admin}"),
            "--tls-ca-file",
        ])
        .arg(&tls.ca)
        .arg("status")
        .output()
        .unwrap();
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("route:source"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Without the CA the certificate is not trusted: refused, not spoken to in clear.
    let out = Command::new(support::cutover_bin())
        .args([
            "ctl",
            "--admin",
            &format!("127.0.0.1:{admin}"),
            "--tls",
            "status",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("UnknownIssuer"),
        "{err}"
    );
    // Plain RESP gets nothing.
    let mut w = Wire::connect(std::net::SocketAddr::from(([127, 0, 0, 1], admin)));
    w.set_timeout(std::time::Duration::from_secs(2));
    assert!(!matches!(w.try_cmd(&["PING"]), Ok(b) if b.starts_with(b"+PONG")));
    let _ = child.kill();
    let _ = child.wait();
}
