//! Reply dispatch on a backend connection, fed by hand: runs of replies per batch, frames
//! split at every byte, unsolicited frames on dedicated connections.

use super::*;

fn batch(count: u32, flags: u8) -> (Batch, mpsc::UnboundedReceiver<Reply>) {
    let (tx, rx) = mpsc::unbounded_channel();
    (
        Batch {
            data: Bytes::new(),
            count,
            flags: BatchFlags(flags),
            reply: tx,
            tag: 0,
        },
        rx,
    )
}

fn drain(rx: &mut mpsc::UnboundedReceiver<Reply>) -> Vec<(Vec<u8>, u32, ReplyKind)> {
    let mut v = Vec::new();
    while let Ok(r) = rx.try_recv() {
        v.push((r.data.to_vec(), r.count, r.kind));
    }
    v
}

/// Concatenates the data of counted replies.
fn counted(v: &[(Vec<u8>, u32, ReplyKind)]) -> (Vec<u8>, u32) {
    let mut data = Vec::new();
    let mut n = 0;
    for (d, c, k) in v {
        if *k == ReplyKind::Data {
            data.extend_from_slice(d);
            n += c;
        }
    }
    (data, n)
}

#[test]
fn consecutive_replies_of_one_batch_leave_as_one_message() {
    let mut st = ConnState::new(false, false);
    let (a, mut ra) = batch(3, 0);
    let (b, mut rb) = batch(1, 0);
    st.owe(&a);
    st.owe(&b);
    let mut rbuf = BytesMut::from(&b"+OK\r\n$3\r\nfoo\r\n:1\r\n*1\r\n$1\r\nx\r\n"[..]);
    st.dispatch(&mut rbuf).unwrap();
    let ga = drain(&mut ra);
    assert_eq!(ga.len(), 1, "one message for the run of three");
    assert_eq!(ga[0].0, b"+OK\r\n$3\r\nfoo\r\n:1\r\n");
    assert_eq!(ga[0].1, 3);
    let gb = drain(&mut rb);
    assert_eq!(gb[0].0, b"*1\r\n$1\r\nx\r\n");
    assert!(rbuf.is_empty());
    assert!(st.inflight.is_empty());
}

#[test]
fn replies_split_at_every_byte_reach_their_owners_intact() {
    let wire: &[u8] = b"+OK\r\n$5\r\nhel\r\n\r\n*2\r\n:1\r\n$-1\r\n-ERR x\r\n%1\r\n+k\r\n+v\r\n";
    for split in 1..wire.len() {
        let mut st = ConnState::new(false, true);
        let (a, mut ra) = batch(2, 0);
        let (b, mut rb) = batch(3, 0);
        st.owe(&a);
        st.owe(&b);
        let mut rbuf = BytesMut::from(&wire[..split]);
        st.dispatch(&mut rbuf).unwrap();
        rbuf.extend_from_slice(&wire[split..]);
        st.dispatch(&mut rbuf).unwrap();
        let (da, na) = counted(&drain(&mut ra));
        let (db, nb) = counted(&drain(&mut rb));
        assert_eq!((na, nb), (2, 3), "split at {split}");
        assert_eq!(da, b"+OK\r\n$5\r\nhel\r\n\r\n");
        assert_eq!(db, b"*2\r\n:1\r\n$-1\r\n-ERR x\r\n%1\r\n+k\r\n+v\r\n");
    }
}

#[test]
fn a_reply_nobody_asked_for_is_a_desync_on_a_shared_connection() {
    let mut st = ConnState::new(false, false);
    let mut rbuf = BytesMut::from(&b"+OK\r\n"[..]);
    assert!(matches!(
        st.dispatch(&mut rbuf),
        Err(DriveError::Unexpected)
    ));
}

#[test]
fn resp2_pubsub_frames_are_unsolicited_until_the_count_drops_to_zero() {
    let mut st = ConnState::new(true, false);
    // SUBSCRIBE a (no counted reply), then PING (one counted reply).
    let (sub, mut rx) = batch(0, BatchFlags::PUBSUB);
    st.owe(&sub);
    let (ping, _) = {
        let (mut p, r) = batch(1, 0);
        p.reply = sub.reply.clone();
        (p, r)
    };
    st.owe(&ping);
    let wire = b"*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n\
*3\r\n$7\r\nmessage\r\n$1\r\na\r\n$2\r\nhi\r\n\
*2\r\n$4\r\npong\r\n$0\r\n\r\n";
    let mut rbuf = BytesMut::from(&wire[..]);
    st.dispatch(&mut rbuf).unwrap();
    let got = drain(&mut rx);
    let kinds: Vec<_> = got.iter().map(|g| (g.1, g.2)).collect();
    assert_eq!(
        kinds,
        vec![
            (0, ReplyKind::Unsolicited),
            (0, ReplyKind::Unsolicited),
            (1, ReplyKind::Data)
        ]
    );
    assert!(st.subscribed);
    // UNSUBSCRIBE: the confirmation with count 0 ends pub/sub framing...
    let (unsub, _) = batch(0, BatchFlags::PUBSUB);
    st.owe(&unsub);
    let mut rbuf = BytesMut::from(&b"*3\r\n$11\r\nunsubscribe\r\n$1\r\na\r\n:0\r\n"[..]);
    st.dispatch(&mut rbuf).unwrap();
    assert!(!st.subscribed);
    // ...so a list whose first element is "message" is an ordinary reply again.
    let (lrange, mut rl) = batch(1, 0);
    st.owe(&lrange);
    let mut rbuf = BytesMut::from(&b"*3\r\n$7\r\nmessage\r\n$1\r\na\r\n$1\r\nb\r\n"[..]);
    st.dispatch(&mut rbuf).unwrap();
    let got = drain(&mut rl);
    assert_eq!((got[0].1, got[0].2), (1, ReplyKind::Data));
}

#[test]
fn resp3_pushes_are_unsolicited_and_monitor_lines_follow_its_ok() {
    let mut st = ConnState::new(true, true);
    let (get, mut rx) = batch(1, 0);
    st.owe(&get);
    let mut rbuf = BytesMut::from(&b">2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\nk\r\n$1\r\nv\r\n"[..]);
    st.dispatch(&mut rbuf).unwrap();
    let got = drain(&mut rx);
    assert_eq!(got[0].2, ReplyKind::Unsolicited);
    assert_eq!(got[1].2, ReplyKind::Data);

    let mut st = ConnState::new(true, false);
    let (mon, mut rx) = batch(1, BatchFlags::MONITOR);
    st.owe(&mon);
    let mut rbuf = BytesMut::from(&b"+OK\r\n+1700000000.1 [0 127.0.0.1:1] \"set\"\r\n"[..]);
    st.dispatch(&mut rbuf).unwrap();
    let got = drain(&mut rx);
    assert_eq!((got[0].1, got[0].2), (1, ReplyKind::Data));
    assert_eq!((got[1].1, got[1].2), (0, ReplyKind::Unsolicited));
}

#[test]
fn a_lost_connection_fails_exactly_the_commands_still_owed() {
    let mut st = ConnState::new(false, false);
    let (a, mut ra) = batch(3, 0);
    st.owe(&a);
    let mut rbuf = BytesMut::from(&b"+OK\r\n"[..]);
    st.dispatch(&mut rbuf).unwrap();
    st.fail_all(&lost_message("source", "h:1"));
    let got = drain(&mut ra);
    assert_eq!((got[0].1, got[0].2), (1, ReplyKind::Data));
    assert_eq!((got[1].1, got[1].2), (2, ReplyKind::Failed));
    let text = String::from_utf8_lossy(&got[1].0);
    assert_eq!(
        text.matches("-ERR cutover: lost connection to source h:1")
            .count(),
        2
    );
}

#[test]
fn pubsub_frame_recognition() {
    assert_eq!(
        pubsub_frame(b"*4\r\n$8\r\npmessage\r\n$1\r\n*\r\n$1\r\na\r\n$1\r\nb\r\n"),
        Some((PubSubKind::Message, false))
    );
    assert_eq!(
        pubsub_frame(b"*3\r\n$12\r\npunsubscribe\r\n$-1\r\n:0\r\n"),
        Some((PubSubKind::Confirmation, true))
    );
    assert_eq!(pubsub_frame(b"*2\r\n$4\r\npong\r\n$0\r\n\r\n"), None);
}
