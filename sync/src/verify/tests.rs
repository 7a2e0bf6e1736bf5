use super::*;

fn v(payload: &'static [u8], expire_ms: i64) -> Read {
    Read::Value {
        payload: Bytes::from_static(payload),
        expire_ms,
    }
}

/// A string payload (type 0, 1-byte value), version 10.
const A: &[u8] = b"\x00\x01a\x0a\x00\x00\x00\x00\x00\x00\x00\x00\x00";
const B: &[u8] = b"\x00\x01b\x0a\x00\x00\x00\x00\x00\x00\x00\x00\x00";
/// A set of one member "a".
const SET_A: &[u8] = b"\x02\x01\x01a\x0a\x00\x00\x00\x00\x00\x00\x00\x00\x00";

#[test]
fn each_kind_of_difference_is_named() {
    assert_eq!(compare(&v(A, 0), &v(A, 0), 1000), None);
    assert_eq!(compare(&Read::Gone, &Read::Gone, 1000), None);
    let kind = |a: &Read, b: &Read| compare(a, b, 1000).map(|(k, _)| k);
    assert_eq!(kind(&v(A, 0), &Read::Gone), Some(Difference::Missing));
    assert_eq!(kind(&Read::Gone, &v(A, 0)), Some(Difference::Extra));
    assert_eq!(kind(&v(A, 0), &v(B, 0)), Some(Difference::Value));
    assert_eq!(kind(&v(A, 0), &v(SET_A, 0)), Some(Difference::Type));
    assert_eq!(kind(&v(A, 5_000), &v(A, 0)), Some(Difference::Ttl));
    assert_eq!(kind(&v(A, 0), &v(A, 5_000)), Some(Difference::Ttl));
    assert_eq!(kind(&v(A, 5_000), &v(A, 7_000)), Some(Difference::Ttl));
    // Within the tolerance: equal.
    assert_eq!(kind(&v(A, 5_000), &v(A, 5_900)), None);
}

#[test]
fn details_name_kinds_and_ttls_never_values() {
    let (_, d) = compare(&v(A, 0), &v(SET_A, 0), 1000).unwrap();
    assert_eq!(d, "string on the source, set on the target");
    let (_, d) = compare(&v(A, 0), &v(B, 0), 1000).unwrap();
    assert!(
        !d.contains('a') || !d.contains('b') || d == "string values differ",
        "{d}"
    );
}
