//! Tests of the command table and key positions. The movable-keys cases follow what Redis
//! 7.0's cluster routing computes (`getKeysFromCommand`, i.e. each command's getkeys
//! function in db.c); each case was compared with redis-server 7.0.15's `COMMAND GETKEYS`,
//! which agrees except where it answers with an error (we give no keys or clamp), and in
//! two places where it uses key specs instead: `XREAD STREAMS a b 0` (unbalanced: it says
//! `a`, XREAD itself fails) and GEORADIUS with both STORE and STOREDIST (it lists both
//! destinations; the command and cluster routing use only the last one). Positions are
//! listed in increasing order (Redis lists ZUNIONSTORE's destination last).

use super::*;

fn keys(args: &[&str]) -> Vec<usize> {
    let info = lookup(args[0].as_bytes()).expect("known command");
    keys_of(info, args)
}

fn keys_of(info: &CommandInfo, args: &[&str]) -> Vec<usize> {
    let mut out = vec![];
    key_positions(info, args.len(), |i| args[i].as_bytes(), &mut out);
    out
}

#[test]
fn table_is_sorted_and_consistent() {
    assert!(COMMANDS.len() > 300);
    for pair in COMMANDS.windows(2) {
        assert!(
            pair[0].name < pair[1].name,
            "{} / {}",
            pair[0].name,
            pair[1].name
        );
    }
    for c in COMMANDS.iter() {
        assert_eq!(c.name, c.name.to_ascii_lowercase());
        assert!(
            c.name.len()
                <= if c.name.contains('|') {
                    MAX_SUB_NAME
                } else {
                    MAX_NAME
                }
        );
        if let Some((container, _)) = c.name.split_once('|') {
            let parent = lookup(container.as_bytes()).expect("container exists");
            assert!(parent.has(flags::CONTAINER), "{}", parent.name);
        }
    }
}

#[test]
fn lookups_ignore_case() {
    for name in [&b"get"[..], b"GET", b"gEt"] {
        let info = lookup(name).expect("GET");
        assert_eq!(
            (
                info.name,
                info.arity,
                info.first_key,
                info.last_key,
                info.step
            ),
            ("get", 2, 1, 1, 1)
        );
        assert!(info.has(flags::READONLY) && info.has(flags::FAST) && !info.is_write());
    }
    assert!(lookup(b"SET").is_some_and(|c| c.is_write() && c.has(flags::DENYOOM)));
    assert!(lookup(b"GeoRadiusByMember_RO").is_some());
    assert_eq!(lookup(b"nosuchcommand"), None);
    assert_eq!(lookup(b""), None);
    assert_eq!(lookup(&[b'g'; 100]), None);
    assert_eq!(lookup(b"get\0"), None);
    // Subcommands are no command names of their own.
    assert_eq!(lookup(b"config|get"), None);
    assert_eq!(lookup(b"CONFIG|GET"), None);
}

#[test]
fn subcommands() {
    let client = lookup(b"CLIENT").unwrap();
    assert!(client.has(flags::CONTAINER));
    let setname = lookup_sub(client, b"SetName").unwrap();
    assert_eq!(setname.name, "client|setname");
    assert_eq!(setname.arity, 3);
    let config = lookup(b"config").unwrap();
    assert!(lookup_sub(config, b"GET").is_some_and(|c| c.arity == -3));
    assert!(lookup_sub(config, b"SET").is_some_and(|c| c.has(flags::ADMIN)));
    assert_eq!(lookup_sub(config, b"nope"), None);
    assert_eq!(lookup_sub(config, b"get|x"), None);
    assert_eq!(lookup_sub(config, &[b'x'; 200]), None);
    assert_eq!(lookup_sub(setname, b"x"), None, "no sub-subcommands");
    // Key positions of subcommands count from the container's name.
    let object = lookup(b"OBJECT").unwrap();
    let enc = lookup_sub(object, b"encoding").unwrap();
    assert_eq!(keys_of(enc, &["OBJECT", "ENCODING", "k"]), [2]);
    assert!(!lookup(b"get").unwrap().has(flags::CONTAINER));
}

#[test]
fn cutover_flags() {
    for name in ["multi", "exec", "discard", "watch", "unwatch"] {
        assert!(
            lookup(name.as_bytes()).unwrap().has(flags::TRANSACTION),
            "{name}"
        );
    }
    for name in [
        "eval",
        "eval_ro",
        "evalsha",
        "evalsha_ro",
        "fcall",
        "fcall_ro",
    ] {
        assert!(
            lookup(name.as_bytes()).unwrap().has(flags::SCRIPTING),
            "{name}"
        );
    }
    for name in [
        "client", "config", "cluster", "xinfo", "object", "function", "script", "acl",
    ] {
        assert!(
            lookup(name.as_bytes()).unwrap().has(flags::CONTAINER),
            "{name}"
        );
    }
    for name in [
        "blpop",
        "brpop",
        "blmove",
        "brpoplpush",
        "bzpopmin",
        "blmpop",
        "bzmpop",
        "xread",
        "xreadgroup",
        "wait",
    ] {
        assert!(
            lookup(name.as_bytes()).unwrap().has(flags::BLOCKING),
            "{name}"
        );
    }
    assert!(!lookup(b"lpop").unwrap().has(flags::BLOCKING));
    assert!(!lookup(b"get")
        .unwrap()
        .has(flags::TRANSACTION | flags::SCRIPTING));
    assert!(lookup(b"subscribe").unwrap().has(flags::PUBSUB));
    assert!(lookup(b"auth").unwrap().has(flags::NO_AUTH));
    assert!(lookup(b"hello").unwrap().has(flags::NO_AUTH));
    assert!(lookup(b"xread").unwrap().has(flags::MOVABLE_KEYS));
}

#[test]
fn arity() {
    let get = lookup(b"get").unwrap();
    assert!(get.arity_ok(2));
    assert!(!get.arity_ok(1) && !get.arity_ok(3));
    let set = lookup(b"set").unwrap();
    assert_eq!(set.arity, -3);
    assert!(!set.arity_ok(2) && set.arity_ok(3) && set.arity_ok(10));
    let ping = lookup(b"ping").unwrap();
    assert!(ping.arity_ok(1) && ping.arity_ok(2) && !ping.arity_ok(0));
}

#[test]
fn fixed_key_positions() {
    assert_eq!(keys(&["GET", "k"]), [1]);
    assert_eq!(keys(&["MSET", "a", "1", "b", "2"]), [1, 3]);
    assert_eq!(keys(&["MGET", "a", "b", "c"]), [1, 2, 3]);
    assert_eq!(keys(&["DEL", "a", "b"]), [1, 2]);
    assert_eq!(keys(&["BLPOP", "a", "b", "0"]), [1, 2]);
    assert_eq!(keys(&["RPOPLPUSH", "a", "b"]), [1, 2]);
    assert_eq!(
        keys(&[
            "GEOSEARCHSTORE",
            "dst",
            "src",
            "FROMMEMBER",
            "m",
            "BYRADIUS",
            "1",
            "km"
        ]),
        [1, 2]
    );
    assert_eq!(keys(&["PING"]), Vec::<usize>::new());
    // Short or odd lists: clamped, never a panic.
    assert_eq!(keys(&["GET"]), Vec::<usize>::new());
    assert_eq!(keys(&["MSET", "a"]), [1]);
    assert_eq!(keys(&["MSET", "a", "1", "b"]), [1, 3]);
    assert_eq!(keys(&["BLPOP"]), Vec::<usize>::new());
    assert_eq!(keys(&["BLPOP", "0"]), Vec::<usize>::new());
}

#[test]
fn movable_key_positions() {
    let none: Vec<usize> = vec![];
    // numkeys at 2
    assert_eq!(keys(&["EVAL", "return 1", "2", "a", "b", "x"]), [3, 4]);
    assert_eq!(keys(&["evalsha", "abc", "1", "a"]), [3]);
    assert_eq!(keys(&["EVAL_RO", "s", "0"]), none);
    assert_eq!(keys(&["EVALSHA_RO", "s", "1", "a", "b"]), [3]);
    assert_eq!(keys(&["FCALL", "f", "3", "a", "b", "c"]), [3, 4, 5]);
    assert_eq!(keys(&["FCALL_RO", "f", "1", "a"]), [3]);
    // numkeys larger than the arguments, negative, not a number: no keys.
    assert_eq!(keys(&["EVAL", "s", "3", "a", "b"]), none);
    assert_eq!(keys(&["EVAL", "s", "-1", "a"]), none);
    assert_eq!(keys(&["EVAL", "s", "x", "a"]), none);
    assert_eq!(keys(&["EVAL", "s"]), none);
    assert_eq!(keys(&["EVAL", "s", "99999999999999999999999", "a"]), none);
    // numkeys at 1
    assert_eq!(
        keys(&["ZUNION", "2", "a", "b", "WEIGHTS", "1", "2"]),
        [2, 3]
    );
    assert_eq!(keys(&["ZINTER", "1", "a"]), [2]);
    assert_eq!(keys(&["ZDIFF", "2", "a", "b", "WITHSCORES"]), [2, 3]);
    assert_eq!(keys(&["ZINTERCARD", "2", "a", "b", "LIMIT", "1"]), [2, 3]);
    assert_eq!(keys(&["SINTERCARD", "1", "a"]), [2]);
    assert_eq!(keys(&["LMPOP", "2", "a", "b", "LEFT"]), [2, 3]);
    assert_eq!(keys(&["ZMPOP", "1", "a", "MIN"]), [2]);
    assert_eq!(keys(&["ZUNION"]), none);
    // dest + numkeys at 2
    assert_eq!(
        keys(&["ZUNIONSTORE", "d", "2", "a", "b", "AGGREGATE", "SUM"]),
        [1, 3, 4]
    );
    assert_eq!(keys(&["ZINTERSTORE", "d", "1", "a"]), [1, 3]);
    assert_eq!(keys(&["ZDIFFSTORE", "d", "2", "a", "b"]), [1, 3, 4]);
    assert_eq!(keys(&["ZDIFFSTORE", "d", "0"]), none);
    // timeout, then numkeys at 2
    assert_eq!(
        keys(&["BLMPOP", "0", "2", "a", "b", "LEFT", "COUNT", "2"]),
        [3, 4]
    );
    assert_eq!(keys(&["BZMPOP", "1.5", "1", "a", "MAX"]), [3]);
    // XREAD / XREADGROUP: half of what follows STREAMS.
    assert_eq!(
        keys(&["XREAD", "COUNT", "2", "BLOCK", "0", "STREAMS", "a", "b", "0", "0"]),
        [6, 7]
    );
    assert_eq!(keys(&["XREAD", "STREAMS", "streams", "0"]), [2]);
    assert_eq!(
        keys(&[
            "xreadgroup",
            "GROUP",
            "streams",
            "c",
            "NOACK",
            "streams",
            "s",
            ">"
        ]),
        [6]
    );
    assert_eq!(
        keys(&["XREAD", "STREAMS", "a", "b", "0"]),
        none,
        "unbalanced"
    );
    assert_eq!(keys(&["XREAD", "STREAMS"]), none);
    assert_eq!(keys(&["XREAD", "COUNT"]), none);
    assert_eq!(keys(&["XREAD", "BOGUS", "STREAMS", "a", "0"]), none);
    // SORT / SORT_RO
    assert_eq!(keys(&["SORT", "k"]), [1]);
    assert_eq!(
        keys(&["SORT", "k", "BY", "w_*", "LIMIT", "0", "10", "GET", "#", "STORE", "d"]),
        [1, 10]
    );
    assert_eq!(keys(&["SORT", "k", "STORE", "d1", "STORE", "d2"]), [1, 5]);
    assert_eq!(
        keys(&["SORT", "k", "BY", "store", "ALPHA"]),
        [1],
        "BY's pattern is no option"
    );
    assert_eq!(keys(&["SORT", "k", "STORE"]), [1]);
    assert_eq!(keys(&["SORT_RO", "k", "BY", "x", "GET", "#"]), [1]);
    assert_eq!(keys(&["SORT"]), none);
    // MIGRATE
    assert_eq!(keys(&["MIGRATE", "h", "6379", "k", "0", "1000"]), [3]);
    assert_eq!(
        keys(&["MIGRATE", "h", "6379", "", "0", "1000", "COPY", "KEYS", "a", "b"]),
        [8, 9]
    );
    assert_eq!(
        keys(&["MIGRATE", "h", "6379", "", "0", "1000", "AUTH", "keys", "KEYS", "a"]),
        [9]
    );
    assert_eq!(
        keys(&["MIGRATE", "h", "6379", "", "0", "1000", "AUTH2", "u", "keys", "KEYS", "a", "b"]),
        [10, 11]
    );
    assert_eq!(
        keys(&["MIGRATE", "h", "6379", "k", "0", "1000", "KEYS", "a"]),
        none,
        "syntax error"
    );
    assert_eq!(keys(&["MIGRATE", "h", "6379"]), none);
    // GEORADIUS / GEORADIUSBYMEMBER: the key, and the last STORE / STOREDIST.
    assert_eq!(
        keys(&["GEORADIUS", "k", "15", "37", "200", "km", "STORE", "d"]),
        [1, 7]
    );
    assert_eq!(
        keys(&[
            "GEORADIUS",
            "k",
            "15",
            "37",
            "200",
            "km",
            "STORE",
            "d",
            "STOREDIST",
            "e"
        ]),
        [1, 9]
    );
    assert_eq!(
        keys(&["GEORADIUS", "k", "15", "37", "200", "km", "WITHDIST"]),
        [1]
    );
    assert_eq!(
        keys(&["GEORADIUSBYMEMBER", "k", "m", "200", "km", "storedist", "d"]),
        [1, 6]
    );
    assert_eq!(
        keys(&["GEORADIUS", "k", "15", "37", "200", "km", "STORE"]),
        [1]
    );
    assert_eq!(keys(&["GEORADIUS"]), none);
    assert_eq!(keys(&["GEORADIUS_RO", "k", "15", "37", "200", "km"]), [1]);
}

#[test]
fn every_command_survives_any_short_argument_list() {
    let words = [
        "STREAMS", "KEYS", "STORE", "2", "", "-1", "LIMIT", "AUTH2", "GROUP", "x",
    ];
    for c in COMMANDS.iter() {
        for argc in 0..8 {
            let args: Vec<&str> = (0..argc)
                .map(|i| {
                    if i == 0 {
                        c.name
                    } else {
                        words[i % words.len()]
                    }
                })
                .collect();
            let mut out = vec![];
            key_positions(c, argc, |i| args[i].as_bytes(), &mut out);
            assert!(
                out.iter().all(|&p| p > 0 && p < argc.max(1)),
                "{} {args:?}: {out:?}",
                c.name
            );
            assert!(
                out.windows(2).all(|w| w[0] < w[1]),
                "{} {args:?}: {out:?}",
                c.name
            );
        }
    }
}

#[test]
fn index_round_trip() {
    for name in [&b"get"[..], b"set", b"client", b"zunionstore"] {
        let info = lookup(name).expect("known");
        let i = index_of(info).expect("in the table");
        assert!(std::ptr::eq(by_index(i).expect("back"), info));
    }
    let sub = lookup_sub(lookup(b"client").expect("client"), b"list").expect("client|list");
    assert_eq!(
        by_index(index_of(sub).expect("i")).map(|c| c.name),
        Some("client|list")
    );
}
