use super::*;

/// A file of its own per test (they run in parallel): `dir/name`.
fn tmp_in(dir: &str, name: &str, data: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cutover-files-{}-{dir}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, data).unwrap();
    p
}

fn parts(dir: &str) -> Vec<Part> {
    let a = tmp_in(dir, "a.aof", b"AAAA");
    let b = tmp_in(dir, "b.aof", b"BB");
    vec![
        Part {
            path: a,
            len: 4,
            prefix: b"",
        },
        Part {
            path: b,
            len: 2,
            prefix: SELECT_0,
        },
    ]
}

fn read_all(f: &mut Files) -> Vec<u8> {
    while f.fill().unwrap() > 0 {}
    f.rbuf.split().to_vec()
}

#[test]
fn parts_read_as_one_sequence_with_their_prefixes() {
    let mut f = Files::new(parts("parts_read_as_one_sequence_with_their_prefixes"));
    assert_eq!(f.len(), 6 + SELECT_0.len() as u64);
    let mut want = b"AAAA".to_vec();
    want.extend_from_slice(SELECT_0);
    want.extend_from_slice(b"BB");
    assert_eq!(read_all(&mut f), want);
    assert!(f.at_end());
    assert_eq!(f.fill().unwrap(), 0);
}

#[test]
fn a_seek_reads_on_from_any_position() {
    let mut f = Files::new(parts("a_seek_reads_on_from_any_position"));
    // Inside the second part's prefix.
    f.seek(6).unwrap();
    let mut want = SELECT_0[2..].to_vec();
    want.extend_from_slice(b"BB");
    assert_eq!(read_all(&mut f), want);
    f.seek(2).unwrap();
    assert_eq!(&read_all(&mut f)[..2], b"AA");
    assert!(f.seek(f.len() + 1).is_err());
}

#[test]
fn positions_are_named_by_file_and_byte() {
    let f = Files::new(parts("positions_are_named_by_file_and_byte"));
    assert!(f.locate(3).ends_with("a.aof at byte 3"), "{}", f.locate(3));
    let second = 4 + SELECT_0.len() as u64;
    assert!(f.locate(second + 1).ends_with("b.aof at byte 1"));
    assert!(f.locate(5).ends_with("b.aof (at its start)"));
}

#[test]
fn a_file_that_shrinks_while_read_is_an_error() {
    let p = tmp_in(
        "a_file_that_shrinks_while_read_is_an_error",
        "shrinks.aof",
        b"0123456789",
    );
    let mut f = Files::new(vec![Part {
        path: p.clone(),
        len: 20,
        prefix: b"",
    }]);
    let e = f.fill().unwrap_err();
    assert!(matches!(e, SyncError::File(_)), "{e}");
    assert!(e.to_string().contains("shorter"), "{e}");
}

#[test]
fn identity_depends_on_names_and_contents() {
    let a = identity(
        "file",
        &parts("identity_depends_on_names_and_contents"),
        &[],
    )
    .unwrap();
    assert_eq!(a.len(), 40);
    assert_eq!(
        a,
        identity(
            "file",
            &parts("identity_depends_on_names_and_contents"),
            &[]
        )
        .unwrap()
    );
    assert_ne!(
        a,
        identity(
            "aof-dir",
            &parts("identity_depends_on_names_and_contents"),
            &[]
        )
        .unwrap()
    );
    let mut other = parts("identity_depends_on_names_and_contents");
    other[0].path = tmp_in("identity_depends_on_names_and_contents", "c.aof", b"CCCC");
    assert_ne!(a, identity("file", &other, &[]).unwrap());
}
