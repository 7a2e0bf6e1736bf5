use super::*;

#[test]
fn every_slot_has_a_short_key_in_that_slot() {
    for slot in 0..SLOT_COUNT {
        let k = key(slot);
        assert_eq!(key_slot(k), slot, "{}", String::from_utf8_lossy(k));
        assert!(k.starts_with(PREFIX) && k.ends_with(b"}"));
        // The tag: a decimal number of at most 6 digits.
        assert!(
            k.len() <= PREFIX.len() + 6 + 1,
            "{}",
            String::from_utf8_lossy(k)
        );
    }
    // Deterministic: the same key for the same slot in every run and every version.
    assert_eq!(key(key_slot(b"0")), b"__cutover:cp:{0}");
}

#[test]
fn commands() {
    let slot = key_slot(b"7");
    let mut out = BytesMut::new();
    set_command(&mut out, slot, 42);
    get_command(&mut out, slot);
    let k = String::from_utf8(key(slot).to_vec()).unwrap();
    assert_eq!(
        out,
        format!(
            "*3\r\n$3\r\nSET\r\n${}\r\n{k}\r\n$2\r\n42\r\n*2\r\n$3\r\nGET\r\n${}\r\n{k}\r\n",
            k.len(),
            k.len()
        )
        .as_bytes()
    );
}

#[test]
fn get_replies() {
    assert_eq!(parse_get(b"$-1\r\n"), Ok(None));
    assert_eq!(parse_get(b"_\r\n"), Ok(None));
    assert_eq!(parse_get(b"$3\r\n123\r\n"), Ok(Some(123)));
    assert_eq!(parse_get(b"$1\r\n0\r\n"), Ok(Some(0)));
    assert!(parse_get(b"$2\r\n-1\r\n").is_err());
    assert!(parse_get(b"$1\r\nx\r\n").is_err());
    assert_eq!(
        parse_get(b"-MOVED 1 127.0.0.1:7000\r\n"),
        Err("-MOVED 1 127.0.0.1:7000".to_string())
    );
}

#[test]
fn skip_table() {
    let mut t = SkipTable::new(100);
    assert!(t.applied(5, 100));
    assert!(!t.applied(5, 101));
    t.set(5, 200);
    assert!(t.applied(5, 200));
    assert!(!t.applied(5, 201));
    assert!(!t.applied(6, 150));
    // A slot checkpoint below the floor (the floor moved on after it): the floor wins.
    t.set(7, 50);
    assert!(t.applied(7, 100));
    assert_eq!(t.max(), 200);
    assert_eq!(SkipTable::new(9).max(), 9);
}
