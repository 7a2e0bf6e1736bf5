use super::*;

fn drain(s: &mut Spool) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(b) = s.pop(7).unwrap() {
        out.extend_from_slice(&b);
    }
    out
}

#[test]
fn order_is_kept_across_memory_and_file() {
    let dir = std::env::temp_dir().join(format!("spool-test-{}", std::process::id()));
    let mut s = Spool::new(dir.clone(), 10, 1 << 20);
    let mut expected = Vec::new();
    for i in 0..50u8 {
        let chunk = Bytes::from(vec![i; (i % 5 + 1) as usize]);
        expected.extend_from_slice(&chunk);
        s.push(chunk).unwrap();
        // Interleave partial reads with writes.
        if i % 7 == 0 {
            if let Some(b) = s.pop(3).unwrap() {
                let n = b.len();
                assert_eq!(&b[..], &expected[..n]);
                expected.drain(..n);
            }
        }
    }
    assert!(s.file_bytes() > 0, "should have spilled to the file");
    assert_eq!(drain(&mut s), expected);
    assert!(s.is_empty());
    assert_eq!(s.file_bytes(), 0);
    // Drained: the file is gone and memory is used again.
    s.push(Bytes::from_static(b"abc")).unwrap();
    assert_eq!(s.file_bytes(), 0);
    assert_eq!(drain(&mut s), b"abc");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn full_when_the_file_reaches_its_bound() {
    let dir = std::env::temp_dir().join(format!("spool-full-{}", std::process::id()));
    let mut s = Spool::new(dir.clone(), 4, 8);
    s.push(Bytes::from_static(b"1234")).unwrap();
    assert!(!s.is_full());
    s.push(Bytes::from_static(b"5678")).unwrap();
    s.push(Bytes::from_static(b"9abc")).unwrap();
    assert!(s.is_full());
    assert_eq!(drain(&mut s), b"123456789abc");
    assert!(!s.is_full());
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn two_spools_in_one_dir_keep_their_own_bytes() {
    // A cluster source runs one syncer, and one spool, per link in the same process.
    let dir = std::env::temp_dir().join(format!("spool-two-{}", std::process::id()));
    let mut a = Spool::new(dir.clone(), 4, 1 << 20);
    let mut b = Spool::new(dir.clone(), 4, 1 << 20);
    let (mut ea, mut eb) = (Vec::new(), Vec::new());
    for i in 0..40u8 {
        let ca = Bytes::from(vec![i; 3]);
        let cb = Bytes::from(vec![200 - i; 5]);
        ea.extend_from_slice(&ca);
        eb.extend_from_slice(&cb);
        a.push(ca).unwrap();
        b.push(cb).unwrap();
    }
    assert!(a.file_bytes() > 0 && b.file_bytes() > 0);
    assert_eq!(drain(&mut a), ea);
    assert_eq!(drain(&mut b), eb);
    let _ = std::fs::remove_dir_all(&dir);
}
