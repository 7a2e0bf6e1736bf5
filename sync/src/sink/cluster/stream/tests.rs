use super::*;
use crate::reencode;
use crate::sink::cluster::router::PieceInfo;
use crate::sink::cluster::trailer;
use crate::slot_checkpoint;
use ::cluster::info::keyspace;

#[test]
fn applied_is_the_oldest_unconfirmed_start() {
    let mut o = Outstanding::default();
    assert_eq!(o.applied(100, None), 100);
    o.add(10);
    o.add(10); // two parts of one source transaction
    o.add(30);
    assert_eq!(o.applied(100, None), 10);
    o.remove(10);
    assert_eq!(o.applied(100, None), 10, "one part still outstanding");
    o.remove(10);
    assert_eq!(o.applied(100, None), 30);
    // A source transaction or a barrier under way holds it back.
    assert_eq!(o.applied(100, [20]), 20);
    o.remove(30);
    assert!(o.is_empty());
    assert_eq!(o.applied(100, [90, 95]), 90);
    assert_eq!(o.applied(100, None), 100);
    // Removing what is not there changes nothing.
    o.remove(5);
    assert!(o.is_empty());
}

#[test]
fn keyspace_lines() {
    let info =
        "# Keyspace\r\ndb0:keys=3,expires=0,avg_ttl=0\r\ndb12:keys=1,expires=1,avg_ttl=5\r\n";
    assert_eq!(keyspace(info), vec![(0, 3), (12, 1)]);
    assert_eq!(keyspace("# Keyspace\r\n"), vec![]);
}

#[test]
fn unmapped_dbs_are_named() {
    let e = unmapped_dbs(&["db3 (5 keys)".into(), "db7 (1 keys)".into()]).to_string();
    assert!(e.contains("db3 (5 keys), db7 (1 keys)"), "{e}");
    assert!(e.contains("sync.db_map"), "{e}");
}

#[test]
fn a_slot_transaction_ends_with_its_checkpoint() {
    let piece = |start, end| Piece {
        data: Bytes::from_static(b"*1\r\n$4\r\nPING\r\n"),
        count: 1,
        info: Tag::Stream { start, end },
    };
    let mut out = BytesMut::new();
    let n = trailer(77, &[piece(0, 10), piece(10, 25)], &mut out);
    assert_eq!(n, 1);
    let mut want = BytesMut::new();
    slot_checkpoint::set_command(&mut want, 77, 25);
    assert_eq!(out, want);
    // No stream piece (a barrier's own transaction): nothing added.
    let mut out = BytesMut::new();
    let b = Piece {
        data: Bytes::new(),
        count: 1,
        info: Tag::Broadcast { tolerate: None },
    };
    assert_eq!(trailer(77, &[b], &mut out), 0);
    assert!(out.is_empty());
}

#[test]
fn only_partial_value_commands_are_ordered_per_key() {
    let load = |name| Tag::Load {
        name,
        key: Bytes::from_static(b"k"),
    };
    assert_eq!(load("RESTORE").order_key(), None);
    assert_eq!(load("RPUSH").order_key(), Some(&b"k"[..]));
    assert_eq!(
        Tag::Load {
            name: "SCRIPT LOAD",
            key: Bytes::new()
        }
        .order_key(),
        None
    );
    assert_eq!(Tag::Probe.order_key(), Some(reencode::PROBE_KEY));
    assert_eq!(Tag::Stream { start: 0, end: 1 }.order_key(), None);
}

fn done(cmds: &[&[u8]], replies: &[&str]) -> Done<Tag> {
    let mut data = BytesMut::new();
    for c in cmds {
        data.extend_from_slice(c);
    }
    Done {
        slot: 1,
        node: NodeAddr::new("127.0.0.1", 7000),
        mode: Mode::Txn,
        pieces: vec![Piece {
            data: data.freeze(),
            count: cmds.len() as u32,
            info: Tag::Stream { start: 0, end: 99 },
        }],
        replies: replies.iter().map(|r| Bytes::from(r.to_string())).collect(),
    }
}

#[test]
fn stream_transactions_are_checked_without_missing_an_error() {
    let set = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n";
    let lpop = b"*2\r\n$4\r\nLPOP\r\n$1\r\nl\r\n";
    let ok = done(
        &[set, lpop],
        &[
            "+OK\r\n",
            "+QUEUED\r\n",
            "+QUEUED\r\n",
            "+QUEUED\r\n",
            "*3\r\n+OK\r\n$3\r\n\r\n-\r\n+OK\r\n",
        ],
    );
    // A value holding CRLF and '-' is no error.
    check_stream_txn(&ok).unwrap();
    let bad = done(
        &[set, lpop],
        &[
            "+OK\r\n",
            "+QUEUED\r\n",
            "+QUEUED\r\n",
            "+QUEUED\r\n",
            "*3\r\n+OK\r\n-WRONGTYPE Operation against a key holding the wrong kind of value\r\n+OK\r\n",
        ],
    );
    match check_stream_txn(&bad) {
        Err(SyncError::Apply {
            command,
            key,
            offset,
            reply,
        }) => {
            assert_eq!((command.as_str(), key.as_str(), offset), ("LPOP", "l", 99));
            assert!(reply.starts_with("WRONGTYPE"), "{reply}");
        }
        other => panic!("{other:?}"),
    }
    let refused = done(
        &[set],
        &[
            "+OK\r\n",
            "-OOM command not allowed when used memory > 'maxmemory'.\r\n",
            "+QUEUED\r\n",
            "-EXECABORT Transaction discarded because of previous errors.\r\n",
        ],
    );
    match check_stream_txn(&refused) {
        Err(SyncError::Apply { command, reply, .. }) => {
            assert_eq!(command, "SET");
            assert!(reply.starts_with("OOM"), "{reply}");
        }
        other => panic!("{other:?}"),
    }
}
