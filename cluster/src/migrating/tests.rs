//! Unit tests of the migrating-slot marks.

use super::*;

#[test]
fn marks_hold_per_slot_and_expire_together() {
    let m = MigratingSlots::default();
    assert!(!m.is_migrating(7));
    m.mark(7);
    assert!(m.is_migrating(7));
    assert!(!m.is_migrating(8));
    // Recent: kept.
    m.expire();
    assert!(m.is_migrating(7));
    // Older than the hold (as if marked long ago): forgotten, one flag again.
    m.marks[7].store(1, Ordering::Relaxed);
    m.latest.store(1, Ordering::Relaxed);
    let later = MigratingSlots {
        born: Instant::now() - std::time::Duration::from_secs(u64::from(HOLD_SECS) + 5),
        ..m
    };
    assert!(!later.is_migrating(7));
    later.expire();
    assert!(!later.any.load(Ordering::Relaxed));
    assert_eq!(later.marks[7].load(Ordering::Relaxed), 0);
    assert!(!later.is_migrating(u16::MAX));
}
