use super::*;

fn cmd(args: &[&[u8]]) -> (Vec<u8>, Vec<std::ops::Range<usize>>) {
    let mut b = BytesMut::new();
    resp::encode::command(&mut b, args.iter().copied());
    let mut p = RequestParser::new(Limits::default());
    let f = p.parse(&b).unwrap().unwrap();
    assert_eq!(f.len, b.len());
    (b.to_vec(), p.args().to_vec())
}

#[test]
fn only_a_plain_set_joins_an_mset() {
    let (f, a) = cmd(&[b"set", b"k\r\n", b"v"]);
    assert_eq!(plain_set(&f, &a), Some(&b"$3\r\nk\r\n\r\n$1\r\nv\r\n"[..]));
    for other in [
        &[&b"SET"[..], b"k", b"v", b"EX", b"10"][..],
        &[b"GET", b"k"],
        &[b"SETNX", b"k", b"v"],
        &[b"SET", b"k"],
    ] {
        let (f, a) = cmd(other);
        assert_eq!(plain_set(&f, &a), None, "{other:?}");
    }
}

#[test]
fn sets_go_as_one_mset_and_anything_else_ends_the_run() {
    let mut t = Txn::new(0, 0);
    assert!(t.is_empty());
    t.push_set(b"$1\r\na\r\n$1\r\n1\r\n");
    t.push_set(b"$1\r\nb\r\n$1\r\n2\r\n");
    assert!(!t.is_empty());
    assert_eq!(t.count, 0);
    t.emit_mset();
    assert_eq!(t.count, 1);
    assert_eq!(
        &t.buf[..],
        b"*5\r\n$4\r\nMSET\r\n$1\r\na\r\n$1\r\n1\r\n$1\r\nb\r\n$1\r\n2\r\n"
    );
    // Named as sent, for an error.
    assert_eq!(
        nth_command(&t.cmds, 0),
        ("MSET".to_string(), "a".to_string())
    );
    // A source MULTI left open drops the SETs that followed it.
    t.mark(0);
    t.push_set(b"$1\r\nc\r\n$1\r\n3\r\n");
    assert_eq!(t.roll_back(), Some(0));
    t.emit_mset();
    assert_eq!(t.count, 1);
}

#[test]
fn a_long_run_is_cut_into_several_msets() {
    let mut t = Txn::new(0, 0);
    for _ in 0..MSET_MAX_PAIRS * 2 + 1 {
        t.push_set(b"$1\r\na\r\n$1\r\n1\r\n");
    }
    assert_eq!(t.count, 2);
    t.emit_mset();
    assert_eq!(t.count, 3);
}
