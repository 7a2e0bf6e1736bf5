use super::*;

fn node(port: u16) -> NodeAddr {
    NodeAddr::new("127.0.0.1", port)
}

fn b(s: &str) -> Bytes {
    Bytes::from(s.to_string())
}

#[test]
fn redirections_and_transient_errors_ask_for_a_resend() {
    let from = node(7000);
    assert_eq!(
        retry_of(b"-MOVED 3999 127.0.0.1:7001\r\n", &from),
        Some(Retry::Moved(node(7001)))
    );
    assert_eq!(
        retry_of(b"-ASK 3999 127.0.0.1:7002\r\n", &from),
        Some(Retry::Ask(node(7002)))
    );
    // No host: the host of the node that answered.
    assert_eq!(
        retry_of(b"-MOVED 1 :7003\r\n", &NodeAddr::new("10.0.0.1", 7000)),
        Some(Retry::Moved(NodeAddr::new("10.0.0.1", 7003)))
    );
    for e in [
        "-TRYAGAIN Multiple keys request during rehashing of slot\r\n",
        "-CLUSTERDOWN The cluster is down\r\n",
        "-LOADING Redis is loading the dataset in memory\r\n",
        "-BUSY Redis is busy running a script\r\n",
        "-MASTERDOWN Link with MASTER is down\r\n",
    ] {
        assert!(
            matches!(retry_of(e.as_bytes(), &from), Some(Retry::Later(_))),
            "{e}"
        );
    }
    for f in [
        "+OK\r\n",
        ":1\r\n",
        "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n",
        "-CROSSSLOT Keys in request don't hash to the same slot\r\n",
        "-EXECABORT Transaction discarded because of previous errors.\r\n",
    ] {
        assert_eq!(retry_of(f.as_bytes(), &from), None, "{f}");
    }
}

#[test]
fn a_transaction_ran_when_exec_answered_an_array() {
    let from = node(7000);
    let ran = [
        b("+OK\r\n"),
        b("+QUEUED\r\n"),
        b("+QUEUED\r\n"),
        b("*2\r\n:1\r\n+OK\r\n"),
    ];
    assert_eq!(txn_retry(&ran, &from), None);
    // A queued command redirected: the transaction was discarded; go where it says.
    let moved = [
        b("+OK\r\n"),
        b("-MOVED 12 127.0.0.1:7001\r\n"),
        b("+QUEUED\r\n"),
        b("-EXECABORT Transaction discarded because of previous errors.\r\n"),
    ];
    assert_eq!(txn_retry(&moved, &from), Some(Retry::Moved(node(7001))));
    // EXEC itself refused (keys of the queued commands missing during a migration).
    let tryagain = [
        b("+OK\r\n"),
        b("+QUEUED\r\n"),
        b("+QUEUED\r\n"),
        b("-TRYAGAIN Multiple keys request during rehashing of slot\r\n"),
    ];
    assert!(matches!(txn_retry(&tryagain, &from), Some(Retry::Later(_))));
    // Refused for a reason a resend can't fix: the caller reports it.
    let refused = [
        b("+OK\r\n"),
        b("-ERR unknown command 'FOO'\r\n"),
        b("+QUEUED\r\n"),
        b("-EXECABORT Transaction discarded because of previous errors.\r\n"),
    ];
    assert_eq!(txn_retry(&refused, &from), None);
    // A command failing inside EXEC ran (the others too): nothing to resend.
    let partly = [
        b("+OK\r\n"),
        b("+QUEUED\r\n"),
        b("+QUEUED\r\n"),
        b("*2\r\n-WRONGTYPE Operation against a key holding the wrong kind of value\r\n+OK\r\n"),
    ];
    assert_eq!(txn_retry(&partly, &from), None);
}
