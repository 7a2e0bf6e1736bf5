//! What the session decides for each command: which connection, how many replies, whether
//! the proxy answers it. (The behaviour on the wire is tested against real servers in
//! tests/.)

use std::net::SocketAddr;
use std::time::Instant;

use super::*;

fn state() -> ClientState {
    ClientState {
        id: 7,
        peer: SocketAddr::from(([127, 0, 0, 1], 5000)),
        created: Instant::now(),
        db: 0,
        resp3: false,
        name: None,
        lib_name: None,
        lib_ver: None,
        user: None,
        authenticated: true,
        reply_mode: ReplyMode::On,
        monitoring: false,
        dedicated: false,
        subscribed: false,
        in_multi: false,
        watching: false,
        watch_broken: false,
    }
}

/// Classifies a command given as words, the way `process_input` does.
fn decide(st: &ClientState, words: &[&str]) -> Action {
    let mut base = Vec::new();
    let mut ranges = Vec::new();
    for w in words {
        let start = base.len();
        base.extend_from_slice(w.as_bytes());
        ranges.push(start..base.len());
    }
    classify(st, 16, &base, &ranges)
}

fn fwd(a: &Action) -> (u32, u8, bool) {
    match a {
        Action::Forward {
            count,
            flags,
            dedicated,
            ..
        } => (*count, *flags, *dedicated),
        other => panic!("expected Forward, got {other:?}"),
    }
}

fn reply(a: &Action) -> String {
    match a {
        Action::Reply(b) => String::from_utf8_lossy(b).into_owned(),
        other => panic!("expected Reply, got {other:?}"),
    }
}

#[test]
fn ordinary_commands_share_a_connection() {
    let st = state();
    assert_eq!(fwd(&decide(&st, &["GET", "k"])), (1, 0, false));
    assert_eq!(fwd(&decide(&st, &["set", "k", "v"])), (1, 0, false));
    assert_eq!(fwd(&decide(&st, &["EVAL", "return 1", "0"])), (1, 0, false));
    // Unknown to our table (a newer server's command): the server decides.
    assert_eq!(fwd(&decide(&st, &["NEWCMD", "x"])), (1, 0, false));
    // EXEC without MULTI: Redis's own error comes back from the server.
    assert_eq!(fwd(&decide(&st, &["EXEC"])), (1, 0, false));
}

#[test]
fn stateful_commands_get_a_dedicated_connection() {
    let st = state();
    for words in [
        &["MULTI"][..],
        &["WATCH", "k"],
        &["BLPOP", "q", "0"],
        &["BZPOPMIN", "z", "1"],
        &["BLMOVE", "a", "b", "LEFT", "RIGHT", "0"],
        &["WAIT", "1", "0"],
        &["XREAD", "BLOCK", "0", "STREAMS", "s", "$"],
        &["CLIENT", "TRACKING", "on"],
        &["SCRIPT", "KILL"],
    ] {
        assert!(fwd(&decide(&st, words)).2, "{words:?} not dedicated");
    }
    assert!(!fwd(&decide(&st, &["XREAD", "STREAMS", "s", "0"])).2);
    assert_eq!(
        fwd(&decide(&st, &["MONITOR"])),
        (1, BatchFlags::MONITOR, true)
    );
}

#[test]
fn subscriptions_owe_no_counted_replies() {
    let st = state();
    assert_eq!(
        fwd(&decide(&st, &["SUBSCRIBE", "a", "b"])),
        (0, BatchFlags::PUBSUB, true)
    );
    // Not subscribed: one confirmation per channel arrives as an ordinary reply.
    assert_eq!(fwd(&decide(&st, &["UNSUBSCRIBE", "a", "b"])), (2, 0, false));
    assert_eq!(fwd(&decide(&st, &["PUNSUBSCRIBE"])), (1, 0, false));
    let mut st = state();
    st.dedicated = true;
    assert_eq!(
        fwd(&decide(&st, &["UNSUBSCRIBE"])),
        (0, BatchFlags::PUBSUB, true)
    );
    assert_eq!(fwd(&decide(&st, &["PING"])), (1, 0, true));
}

#[test]
fn a_monitoring_connection_owes_nothing() {
    let mut st = state();
    st.dedicated = true;
    st.monitoring = true;
    assert_eq!(fwd(&decide(&st, &["PING"])), (0, 0, true));
}

#[test]
fn the_proxy_answers_session_commands() {
    let st = state();
    for (words, cmd) in [
        (&["AUTH", "pw"][..], local::Cmd::Auth),
        (&["hello", "3"], local::Cmd::Hello),
        (&["CLIENT", "SETNAME", "x"], local::Cmd::ClientSetName),
        (&["client", "getname"], local::Cmd::ClientGetName),
        (&["CLIENT", "ID"], local::Cmd::ClientId),
        (&["CLIENT", "INFO"], local::Cmd::ClientInfo),
        (
            &["CLIENT", "SETINFO", "LIB-NAME", "x"],
            local::Cmd::ClientSetInfo,
        ),
        (&["CLIENT", "REPLY", "OFF"], local::Cmd::ClientReply),
        (&["QUIT"], local::Cmd::Quit),
        (&["CLIENT", "LIST"], local::Cmd::ClientList),
        (&["client", "unblock", "7"], local::Cmd::ClientUnblock),
    ] {
        match decide(&st, words) {
            Action::Local { cmd: c, .. } => assert_eq!(c, cmd, "{words:?}"),
            other => panic!("{words:?}: {other:?}"),
        }
    }
    // Other CLIENT subcommands go to the server.
    assert_eq!(
        fwd(&decide(&st, &["CLIENT", "NO-EVICT", "on"])),
        (1, 0, false)
    );
}

#[test]
fn select_waits_for_owed_replies_only_when_the_db_changes() {
    let st = state();
    match decide(&st, &["SELECT", "3"]) {
        Action::Local { drain, .. } => assert!(drain),
        other => panic!("{other:?}"),
    }
    match decide(&st, &["SELECT", "0"]) {
        Action::Local { drain, .. } => assert!(!drain),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        reply(&decide(&st, &["SELECT", "16"])),
        "-ERR DB index is out of range\r\n"
    );
    assert_eq!(
        reply(&decide(&st, &["SELECT", "x"])),
        "-ERR value is not an integer or out of range\r\n"
    );
    assert_eq!(
        reply(&decide(&st, &["SELECT"])),
        "-ERR wrong number of arguments for 'select' command\r\n"
    );
    let mut st = state();
    st.dedicated = true;
    match decide(&st, &["SELECT", "2"]) {
        Action::Forward {
            effect, dedicated, ..
        } => assert_eq!((effect, dedicated), (Effect::SetDb(2), true)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn before_auth_only_auth_hello_quit_reset_run() {
    let mut st = state();
    st.authenticated = false;
    assert_eq!(
        reply(&decide(&st, &["GET", "k"])),
        "-NOAUTH Authentication required.\r\n"
    );
    assert_eq!(
        reply(&decide(&st, &["foo", "a", "b"])),
        "-ERR unknown command 'foo', with args beginning with: 'a' 'b' \r\n"
    );
    for words in [&["AUTH", "x"][..], &["HELLO", "3"], &["QUIT"], &["RESET"]] {
        assert!(
            matches!(decide(&st, words), Action::Local { .. }),
            "{words:?}"
        );
    }
}

#[test]
fn replication_commands_are_refused() {
    let st = state();
    for w in ["SYNC", "PSYNC", "REPLCONF"] {
        assert!(reply(&decide(&st, &[w])).starts_with("-ERR cutover: SYNC, PSYNC and REPLCONF"));
    }
}

#[test]
fn subscription_kinds() {
    assert_eq!(sub_kind("subscribe"), 0);
    assert_eq!(sub_kind("unsubscribe"), 0);
    assert_eq!(sub_kind("psubscribe"), 1);
    assert_eq!(sub_kind("punsubscribe"), 1);
    assert_eq!(sub_kind("ssubscribe"), 2);
    assert_eq!(sub_kind("sunsubscribe"), 2);
}

#[test]
fn blocking_commands_are_reissued_with_what_is_left_of_their_timeout() {
    let b = |raw: &'static [u8], timeout, ago_ms: u64| Blocked {
        raw: Bytes::from_static(raw),
        at: Instant::now() - std::time::Duration::from_millis(ago_ms),
        timeout,
    };
    let r = with_remaining_timeout(&b(
        b"*3\r\n$5\r\nBLPOP\r\n$1\r\nq\r\n$1\r\n0\r\n",
        TimeoutArg::LastSecs,
        500,
    ))
    .unwrap();
    assert_eq!(
        &r[..],
        b"*3\r\n$5\r\nBLPOP\r\n$1\r\nq\r\n$1\r\n0\r\n",
        "0 stays forever"
    );
    let r = with_remaining_timeout(&b(
        b"*3\r\n$5\r\nBLPOP\r\n$1\r\nq\r\n$1\r\n5\r\n",
        TimeoutArg::LastSecs,
        2000,
    ))
    .unwrap();
    let t: f64 = std::str::from_utf8(&r[r.len() - 7..r.len() - 2])
        .unwrap()
        .parse()
        .unwrap();
    assert!((2.9..3.01).contains(&t), "{t}");
    let r = with_remaining_timeout(&b(
        b"*3\r\n$5\r\nBLPOP\r\n$1\r\nq\r\n$1\r\n1\r\n",
        TimeoutArg::LastSecs,
        5000,
    ))
    .unwrap();
    assert!(
        r.ends_with(b"$5\r\n0.001\r\n"),
        "expired: the smallest timeout"
    );
    let r = with_remaining_timeout(&b(
        b"*6\r\n$5\r\nXREAD\r\n$5\r\nBLOCK\r\n$4\r\n1000\r\n$7\r\nSTREAMS\r\n$1\r\ns\r\n$1\r\n$\r\n",
        TimeoutArg::BlockMs,
        400,
    ))
    .unwrap();
    let s = String::from_utf8_lossy(&r);
    let ms: u64 = s.split("\r\n").nth(6).unwrap().parse().unwrap();
    assert!((590..=600).contains(&ms), "{s}");
    let r = with_remaining_timeout(&b(
        b"*5\r\n$6\r\nBLMPOP\r\n$2\r\n10\r\n$1\r\n1\r\n$1\r\nq\r\n$4\r\nLEFT\r\n",
        TimeoutArg::FirstSecs,
        1000,
    ))
    .unwrap();
    assert!(
        String::from_utf8_lossy(&r).contains("\r\n9.0"),
        "{}",
        String::from_utf8_lossy(&r)
    );
}

#[test]
fn a_reply_message_splits_at_frame_boundaries() {
    let data = b"+OK\r\n*2\r\n$1\r\na\r\n:1\r\n$-1\r\n";
    assert_eq!(frames_len(data, 1), Some(5));
    assert_eq!(frames_len(data, 2), Some(20));
    assert_eq!(frames_len(data, 3), Some(data.len()));
    assert_eq!(frames_len(data, 4), None);
    assert_eq!(frames_len(b"*2\r\n:1\r\n", 1), None);
}
