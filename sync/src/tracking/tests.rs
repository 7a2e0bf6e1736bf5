use super::*;

fn taken(t: &Tracker, max: usize) -> Vec<(u32, Vec<u8>)> {
    let mut out = Vec::new();
    t.take(max, &mut out);
    let mut v: Vec<_> = out.into_iter().map(|(d, k)| (d, k.to_vec())).collect();
    v.sort();
    v
}

#[test]
fn nothing_is_marked_while_disabled() {
    let t = Tracker::new(100, false);
    t.mark(0, b"a");
    t.barrier(Barrier::Flush(None));
    assert_eq!(t.dirty_keys(), 0);
    assert!(t.take_barriers().is_empty());
    t.enable();
    t.mark(0, b"a");
    assert_eq!(t.dirty_keys(), 1);
}

#[test]
fn a_key_is_marked_once_per_db_and_taken_with_each() {
    let t = Tracker::new(100, true);
    t.mark(0, b"k");
    t.mark(0, b"k");
    t.mark(3, b"k");
    t.mark(0, b"other");
    assert_eq!(t.dirty_keys(), 3);
    assert_eq!(t.dirty_key_bytes(), 1 + 1 + 5);
    assert_eq!(
        taken(&t, 10),
        vec![
            (0, b"k".to_vec()),
            (0, b"other".to_vec()),
            (3, b"k".to_vec())
        ]
    );
    assert_eq!(t.dirty_keys(), 0);
    assert_eq!(t.dirty_key_bytes(), 0);
    assert!(taken(&t, 10).is_empty());
}

#[test]
fn clear_unmarks_one_db_only() {
    let t = Tracker::new(100, true);
    t.mark(0, b"k");
    t.mark(1, b"k");
    t.clear(0, b"k");
    t.clear(0, b"absent");
    assert_eq!(t.dirty_keys(), 1);
    assert_eq!(taken(&t, 10), vec![(1, b"k".to_vec())]);
}

#[test]
fn take_respects_its_limit_and_leaves_the_rest() {
    let t = Tracker::new(10_000, true);
    for i in 0..1000 {
        t.mark(0, format!("key{i}").as_bytes());
    }
    let first = taken(&t, 300);
    assert!(first.len() >= 300 && first.len() < 320, "{}", first.len());
    let rest = taken(&t, 10_000);
    assert_eq!(first.len() + rest.len(), 1000);
    assert_eq!(t.dirty_keys(), 0);
}

#[test]
fn overflow_drops_the_set_and_owes_a_rescan() {
    let t = Tracker::new(5, true);
    for i in 0..6 {
        t.mark(0, format!("k{i}").as_bytes());
    }
    assert!(t.rescan_owed());
    assert_eq!(t.dirty_keys(), 0);
    assert_eq!(t.overflows.load(Ordering::Relaxed), 1);
    assert!(t.take_rescan());
    assert!(!t.take_rescan());
    // Marking goes on after it.
    t.mark(0, b"later");
    assert_eq!(taken(&t, 10), vec![(0, b"later".to_vec())]);
}

#[test]
fn barriers_come_out_in_order() {
    let t = Tracker::new(5, true);
    t.barrier(Barrier::Flush(Some(2)));
    t.barrier(Barrier::Swap(0, 1));
    t.barrier(Barrier::Flush(None));
    assert_eq!(
        t.take_barriers(),
        vec![
            Barrier::Flush(Some(2)),
            Barrier::Swap(0, 1),
            Barrier::Flush(None)
        ]
    );
    assert!(t.take_barriers().is_empty());
}

#[tokio::test]
async fn fences_are_answered_with_the_offset() {
    let t = Tracker::new(5, true);
    let a = t.fence();
    let b = t.fence();
    assert!(t.fence_wanted());
    t.answer_fences(42);
    assert!(!t.fence_wanted());
    assert_eq!(a.await.unwrap(), 42);
    assert_eq!(b.await.unwrap(), 42);
}
