use super::*;

#[test]
fn plain_host_port() {
    let u = RedisUrl::parse("redis://127.0.0.1:6380").unwrap();
    assert_eq!(
        (u.host.as_str(), u.port, u.tls, u.db),
        ("127.0.0.1", 6380, false, 0)
    );
    assert_eq!(u.password, None);
}

#[test]
fn defaults_and_db() {
    let u = RedisUrl::parse("rediss://example.com/3").unwrap();
    assert_eq!((u.port, u.tls, u.db), (6379, true, 3));
}

#[test]
fn credentials_are_decoded_and_masked() {
    let u = RedisUrl::parse("redis://app:p%40ss%3Aw@h:1/0").unwrap();
    assert_eq!(u.username.as_deref(), Some(&b"app"[..]));
    assert_eq!(u.password.as_deref(), Some(&b"p@ss:w"[..]));
    let shown = format!("{u} {u:?}");
    assert!(!shown.contains("p@ss"), "{shown}");
    assert!(shown.contains("***"));
}

#[test]
fn password_only_forms() {
    let u = RedisUrl::parse("redis://:secret@h:2").unwrap();
    assert_eq!(
        (u.username.clone(), u.password.as_deref()),
        (None, Some(&b"secret"[..]))
    );
    let u = RedisUrl::parse("redis://secret@h:2").unwrap();
    assert_eq!(u.password.as_deref(), Some(&b"secret"[..]));
    // An '@' inside the password: the user-info ends at the last '@'.
    let u = RedisUrl::parse("redis://u:a@b@h:2").unwrap();
    assert_eq!(u.password.as_deref(), Some(&b"a@b"[..]));
    assert_eq!(u.host, "h");
}

#[test]
fn ipv6() {
    let u = RedisUrl::parse("redis://[::1]:7000").unwrap();
    assert_eq!((u.host.as_str(), u.port), ("::1", 7000));
    assert_eq!(u.addr(), "[::1]:7000");
}

#[test]
fn bad_urls_are_refused() {
    for bad in [
        "http://h:1",
        "redis://",
        "redis://h:0",
        "redis://h:99999",
        "redis://h:1/x",
        "redis://u:%zz@h",
        "redis://:1",
    ] {
        assert!(RedisUrl::parse(bad).is_err(), "{bad} accepted");
    }
}
