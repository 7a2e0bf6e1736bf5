use super::*;

#[test]
fn a_manifest_as_redis_writes_it() {
    let m = b"file appendonly.aof.2.base.rdb seq 2 type b\nfile appendonly.aof.3.incr.aof seq 3 type i\nfile appendonly.aof.4.incr.aof seq 4 type i\n";
    let e = parse_manifest(m).unwrap();
    assert_eq!(e.len(), 3);
    assert_eq!(e[0].name, b"appendonly.aof.2.base.rdb");
    assert_eq!(e[0].kind, FileType::Base);
    assert_eq!(e[2].seq, 4);
    assert_eq!(e[2].kind, FileType::Incr);
}

#[test]
fn keys_in_any_case_and_order_unknown_pairs_comments_and_quotes() {
    let m = b"# a comment\nTYPE h SEQ 1 FILE old.aof\nfile \"with space.aof\" seq 5 type incr extra x\n";
    let e = parse_manifest(m).unwrap();
    assert_eq!(e[0].kind, FileType::History);
    assert_eq!(e[0].name, b"old.aof");
    assert_eq!(e[1].name, b"with space.aof");
    assert_eq!(e[1].kind, FileType::Incr);
}

#[test]
fn bad_manifests_name_the_line() {
    let cases: &[(&[u8], usize, &str)] = &[
        (b"file a seq 1 type b\n\nfile b seq 2 type i\n", 2, "empty"),
        (b"file a seq 1\n", 1, "pairs"),
        (b"file a seq x type b\n", 1, "seq"),
        (b"file a seq 1 type z\n", 1, "type"),
        (
            b"file a seq 1 type b\nfile b seq 2 type b\n",
            2,
            "second base",
        ),
        (b"file a seq 3 type i\nfile b seq 2 type i\n", 2, "increase"),
        (b"file \"a seq 1 type b\n", 1, "quotes"),
        (b"fil a seq 1 type b\n", 1, "missing"),
    ];
    for (text, line, why) in cases {
        let (l, w) = parse_manifest(text).unwrap_err();
        assert_eq!(l, *line, "{}", String::from_utf8_lossy(text));
        assert!(w.contains(why), "{w} (wanted {why})");
    }
    let long = format!("file {} seq 1 type b\n", "a".repeat(1100));
    assert!(parse_manifest(long.as_bytes())
        .unwrap_err()
        .1
        .contains("1024"));
}

#[test]
fn arguments_split_as_sdssplitargs_does() {
    let a = split_args(br#"a "b c" 'd e' "\x41\n\"" 'it\'s'"#).unwrap();
    assert_eq!(
        a,
        vec![
            b"a".to_vec(),
            b"b c".to_vec(),
            b"d e".to_vec(),
            b"A\n\"".to_vec(),
            b"it's".to_vec()
        ]
    );
    assert!(split_args(br#""a"b"#).is_none());
    assert!(split_args(br#"'a"#).is_none());
}

#[test]
fn a_directory_opens_through_its_manifest_in_load_order() {
    let dir = std::env::temp_dir().join(format!("cutover-aofdir-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("x.1.base.aof"), b"*1\r\n$4\r\nPING\r\n").unwrap();
    std::fs::write(dir.join("x.2.incr.aof"), b"").unwrap();
    std::fs::write(dir.join("x.0.base.aof"), b"old").unwrap();
    std::fs::write(
        dir.join("x.manifest"),
        b"file x.0.base.aof seq 0 type h\nfile x.1.base.aof seq 1 type b\nfile x.2.incr.aof seq 2 type i\n",
    )
    .unwrap();
    let o = open(&dir).unwrap();
    assert!(!o.rdb_first);
    let names: Vec<_> = o
        .files
        .parts()
        .iter()
        .map(|p| p.path.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["x.1.base.aof", "x.2.incr.aof"]);
    assert_eq!(o.files.parts()[1].prefix, SELECT_0);
    // A listed file that is missing.
    std::fs::write(
        dir.join("x.manifest"),
        b"file x.1.base.aof seq 1 type b\nfile x.9.incr.aof seq 9 type i\n",
    )
    .unwrap();
    let e = open(&dir).unwrap_err().to_string();
    assert!(e.contains("x.9.incr.aof"), "{e}");
}

#[test]
fn a_file_is_an_rdb_when_it_starts_like_one() {
    let dir = std::env::temp_dir().join(format!("cutover-magic-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (name, data, rdb) in [
        ("r.rdb", &b"REDIS0011\xfa"[..], true),
        ("v.rdb", b"VALKEY080\xfa", true),
        ("a.aof", b"*1\r\n$4\r\nPING\r\n", false),
        ("ts.aof", b"#TS:1700000000\r\n*1\r\n$4\r\nPING\r\n", false),
        ("empty.aof", b"", false),
    ] {
        let p = dir.join(name);
        std::fs::write(&p, data).unwrap();
        assert_eq!(open(&p).unwrap().rdb_first, rdb, "{name}");
    }
    // Neither: a damaged magic, a cut header, text. Refused at byte 0, not "restored"
    // as an AOF whose only command is truncated.
    for (name, data) in [
        ("junk", &b"REDIX0010\xff"[..]),
        ("short", b"RED"),
        ("text", b"hello\n"),
    ] {
        let p = dir.join(name);
        std::fs::write(&p, data).unwrap();
        let e = open(&p).unwrap_err().to_string();
        assert!(e.contains(name) && e.contains("at byte 0"), "{e}");
    }
}
