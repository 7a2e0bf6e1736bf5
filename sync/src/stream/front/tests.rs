use super::*;
use resp::{Limits, RequestParser};

fn step(front: &Front, raw: &[u8], status: &SyncStatus) -> Step {
    let mut p = RequestParser::new(Limits::default());
    let f = p.parse(raw).unwrap().unwrap();
    front.step(&p, f.kind, &raw[..f.len], 100, status)
}

fn cmd(args: &[&[u8]]) -> Vec<u8> {
    let mut b = bytes::BytesMut::new();
    resp::encode::command(&mut b, args.iter().copied());
    b.to_vec()
}

#[test]
fn each_kind_of_frame() {
    let s = SyncStatus::default();
    let f = Front::new(false, None);
    assert_eq!(step(&f, &cmd(&[b"PING"]), &s), Step::Skip);
    assert_eq!(
        step(&f, &cmd(&[b"REPLCONF", b"GETACK", b"*"]), &s),
        Step::GetAck
    );
    assert_eq!(step(&f, &cmd(&[b"replconf", b"x"]), &s), Step::Skip);
    assert_eq!(step(&f, &cmd(&[b"multi"]), &s), Step::Multi);
    assert_eq!(step(&f, &cmd(&[b"EXEC"]), &s), Step::Exec);
    assert_eq!(step(&f, &cmd(&[b"SELECT", b"3"]), &s), Step::Select(3));
    assert_eq!(step(&f, &cmd(&[b"SELECT", b"x"]), &s), Step::Apply);
    assert_eq!(step(&f, &cmd(&[b"SET", b"k", b"v"]), &s), Step::Apply);
    // Both kinds of publish are dropped alike.
    assert_eq!(step(&f, &cmd(&[b"PUBLISH", b"c", b"m"]), &s), Step::Skip);
    assert_eq!(step(&f, &cmd(&[b"SPUBLISH", b"c", b"m"]), &s), Step::Skip);
    let fwd = Front::new(true, None);
    assert_eq!(step(&fwd, &cmd(&[b"PUBLISH", b"c", b"m"]), &s), Step::Apply);
    assert_eq!(
        step(&fwd, &cmd(&[b"SPUBLISH", b"c", b"m"]), &s),
        Step::Apply
    );
    assert_eq!(
        step(&fwd, &cmd(&[b"PUBLISH", b"__sentinel__:hello", b"m"]), &s),
        Step::Skip
    );
}

#[test]
fn annotations_keepalives_and_garbage() {
    let s = SyncStatus::default();
    let f = Front::new(false, Some(1000));
    assert_eq!(step(&f, b"#TS:999\r\n", &s), Step::Skip);
    assert_eq!(step(&f, b"#TS:1000\r\n", &s), Step::Skip);
    assert_eq!(step(&f, b"#TS:1001\r\n", &s), Step::Stop);
    assert_eq!(
        step(&Front::new(false, None), b"#TS:1001\r\n", &s),
        Step::Skip
    );
    assert_eq!(step(&f, b"\r\n", &s), Step::Skip);
    assert_eq!(step(&f, b"GARBAGE here\r\n", &s), Step::Invalid);
    assert_eq!(annotation_time(b"#TS:12"), Some(12));
    assert_eq!(annotation_time(b"#XX:12"), None);
}

#[test]
fn writes_past_the_fence_are_counted_not_applied() {
    let s = SyncStatus::default();
    s.fence_offset
        .store(50, std::sync::atomic::Ordering::Relaxed);
    let f = Front::new(false, None);
    assert_eq!(step(&f, &cmd(&[b"SET", b"k", b"v"]), &s), Step::Skip);
    assert_eq!(SyncStatus::get(&s.writes_after_fence), 1);
    assert_eq!(
        step(&f, &cmd(&[b"REPLCONF", b"GETACK", b"*"]), &s),
        Step::GetAck
    );
    // cutover's own writes there (FINISH's mark) and the frames around them are not the
    // applications' writes: skipped, not counted.
    for c in [
        cmd(&[b"SET", b"__cutover:finished", b"1"]),
        cmd(&[b"SELECT", b"0"]),
        cmd(&[b"MULTI"]),
        cmd(&[b"EXEC"]),
    ] {
        assert_eq!(step(&f, &c, &s), Step::Skip);
    }
    assert_eq!(SyncStatus::get(&s.writes_after_fence), 1);
}

#[test]
fn cutovers_own_keys_on_the_source_are_not_applied() {
    let s = SyncStatus::default();
    let f = Front::new(false, None);
    assert_eq!(
        step(&f, &cmd(&[b"SET", b"__cutover:attempt", b"2"]), &s),
        Step::Skip
    );
    assert_eq!(
        step(&f, &cmd(&[b"DEL", b"__cutover:attempt"]), &s),
        Step::Skip
    );
    assert_eq!(
        step(&f, &cmd(&[b"SET", b"__cutoverx", b"1"]), &s),
        Step::Apply
    );
}
