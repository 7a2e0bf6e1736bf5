use super::*;
use resp::{Limits, RequestParser};

/// Encodes `words` and places the command.
fn placed(words: &[&[u8]]) -> Result<Placement, SyncError> {
    let mut cmd = BytesMut::new();
    resp::encode::command(&mut cmd, words.iter().copied());
    let mut p = RequestParser::new(Limits::default());
    let f = p.parse(&cmd).unwrap().unwrap();
    assert_eq!(f.len, cmd.len());
    place(&cmd, p.args())
}

fn enc(words: &[&[u8]]) -> BytesMut {
    let mut out = BytesMut::new();
    resp::encode::command(&mut out, words.iter().copied());
    out
}

fn refused(words: &[&[u8]]) -> String {
    match placed(words) {
        Err(e @ SyncError::Cluster { .. }) => e.to_string(),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn one_slot() {
    assert_eq!(
        placed(&[b"SET", b"k", b"v"]).unwrap(),
        Placement::Slot(key_slot(b"k"))
    );
    assert_eq!(
        placed(&[b"mset", b"{t}a", b"1", b"{t}b", b"2"]).unwrap(),
        Placement::Slot(key_slot(b"t"))
    );
    // Movable keys: EVAL's numkeys, XGROUP's key after the subcommand.
    assert_eq!(
        placed(&[b"EVAL", b"return 1", b"2", b"{x}1", b"{x}2", b"arg"]).unwrap(),
        Placement::Slot(key_slot(b"x"))
    );
    assert_eq!(
        placed(&[b"XGROUP", b"CREATE", b"s", b"g", b"0"]).unwrap(),
        Placement::Slot(key_slot(b"s"))
    );
    assert_eq!(
        placed(&[b"RENAME", b"{u}a", b"{u}b"]).unwrap(),
        Placement::Slot(key_slot(b"u"))
    );
    assert_eq!(
        placed(&[b"COPY", b"{u}a", b"{u}b", b"REPLACE"]).unwrap(),
        Placement::Slot(key_slot(b"u"))
    );
    // PUBLISH has no key: its channel's slot.
    assert_eq!(
        placed(&[b"PUBLISH", b"chan", b"hello"]).unwrap(),
        Placement::Slot(key_slot(b"chan"))
    );
}

#[test]
fn multi_key_commands_split_per_slot_in_order() {
    // "a", "b", "c" hash to different slots.
    let (a, b, c) = (key_slot(b"a"), key_slot(b"b"), key_slot(b"c"));
    assert!(a != b && b != c && a != c);
    assert_eq!(
        placed(&[b"MSET", b"a", b"1", b"b", b"2", b"{a}x", b"3", b"c", b"4"]).unwrap(),
        Placement::Split(vec![
            (a, enc(&[b"MSET", b"a", b"1", b"{a}x", b"3"])),
            (b, enc(&[b"MSET", b"b", b"2"])),
            (c, enc(&[b"MSET", b"c", b"4"])),
        ])
    );
    assert_eq!(
        placed(&[b"MSETNX", b"a", b"1", b"b", b"2"]).unwrap(),
        Placement::Split(vec![
            (a, enc(&[b"MSET", b"a", b"1"])),
            (b, enc(&[b"MSET", b"b", b"2"])),
        ])
    );
    for cmd in [&b"DEL"[..], b"UNLINK", b"EXISTS", b"TOUCH"] {
        assert_eq!(
            placed(&[cmd, b"b", b"a", b"{b}z"]).unwrap(),
            Placement::Split(vec![
                (b, enc(&[cmd, b"b", b"{b}z"])),
                (a, enc(&[cmd, b"a"])),
            ])
        );
    }
}

#[test]
fn cross_slot_commands_that_cannot_split_are_refused_by_name() {
    let m = refused(&[b"RENAME", b"a", b"b"]);
    assert!(m.starts_with("RENAME can't be applied"), "{m}");
    assert!(m.contains("2 keys are in 2 slots"), "{m}");
    let m = refused(&[b"SUNIONSTORE", b"a", b"b", b"c"]);
    assert!(m.contains("3 keys are in 3 slots"), "{m}");
    let m = refused(&[b"LMOVE", b"a", b"b", b"LEFT", b"RIGHT"]);
    assert!(m.starts_with("LMOVE"), "{m}");
    // Values never appear in messages.
    let m = refused(&[b"EVAL", b"secret-script", b"2", b"a", b"b"]);
    assert!(!m.contains("secret"), "{m}");
}

#[test]
fn other_dbs_are_refused() {
    assert!(refused(&[b"SWAPDB", b"0", b"1"]).contains("db 0 only"));
    assert!(refused(&[b"MOVE", b"k", b"3"]).contains("db 0 only"));
    assert!(refused(&[b"COPY", b"{u}a", b"{u}b", b"DB", b"2"]).contains("COPY ... DB"));
    assert_eq!(placed(&[b"SELECT", b"3"]).unwrap(), Placement::Select(3));
    assert!(placed(&[b"SELECT", b"x"]).is_err());
}

#[test]
fn keyless_state_is_broadcast_and_made_repeatable() {
    let b = |words: &[&[u8]]| match placed(words).unwrap() {
        Placement::Broadcast { cmd, tolerate } => (cmd, tolerate),
        other => panic!("{other:?}"),
    };
    assert_eq!(b(&[b"FLUSHALL"]), (enc(&[b"FLUSHALL"]), None));
    assert_eq!(
        b(&[b"flushdb", b"ASYNC"]),
        (enc(&[b"flushdb", b"ASYNC"]), None)
    );
    assert_eq!(
        b(&[b"SCRIPT", b"LOAD", b"return 1"]),
        (enc(&[b"SCRIPT", b"LOAD", b"return 1"]), None)
    );
    assert_eq!(b(&[b"SCRIPT", b"FLUSH"]).0, enc(&[b"SCRIPT", b"FLUSH"]));
    assert_eq!(
        b(&[b"FUNCTION", b"LOAD", b"code"]).0,
        enc(&[b"FUNCTION", b"LOAD", b"REPLACE", b"code"])
    );
    assert_eq!(
        b(&[b"FUNCTION", b"LOAD", b"replace", b"code"]).0,
        enc(&[b"FUNCTION", b"LOAD", b"replace", b"code"])
    );
    assert_eq!(
        b(&[b"FUNCTION", b"RESTORE", b"payload"]).0,
        enc(&[b"FUNCTION", b"RESTORE", b"payload", b"REPLACE"])
    );
    assert_eq!(
        b(&[b"FUNCTION", b"RESTORE", b"payload", b"APPEND"]).0,
        enc(&[b"FUNCTION", b"RESTORE", b"payload", b"REPLACE"])
    );
    assert_eq!(
        b(&[b"FUNCTION", b"RESTORE", b"payload", b"FLUSH"]).0,
        enc(&[b"FUNCTION", b"RESTORE", b"payload", b"FLUSH"])
    );
    assert_eq!(
        b(&[b"FUNCTION", b"DELETE", b"lib"]).1,
        Some("ERR Library not found")
    );
    assert_eq!(b(&[b"FUNCTION", b"FLUSH"]).0, enc(&[b"FUNCTION", b"FLUSH"]));
}

#[test]
fn unknown_and_unplaceable_commands_are_refused_by_name() {
    assert!(refused(&[b"MYMODULE.WRITE", b"k"]).starts_with("MYMODULE.WRITE"));
    let m = refused(&[b"EVAL", b"return 1", b"0"]);
    assert!(m.contains("names no key"), "{m}");
    let m = refused(&[b"FUNCTION", b"NOPE"]);
    assert!(m.contains("unknown subcommand"), "{m}");
}
