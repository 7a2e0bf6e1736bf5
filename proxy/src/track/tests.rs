use super::*;

fn run(parts: &[&str], db: u32) -> Vec<Touch> {
    let mut base = Vec::new();
    let mut args = Vec::new();
    for p in parts {
        let start = base.len();
        base.extend_from_slice(p.as_bytes());
        args.push(start..base.len());
        base.push(b' ');
    }
    let mut out = Vec::new();
    touches(&base, &args, db, &mut out);
    out
}

fn key(db: u32, k: &str) -> Touch {
    Touch::Key(db, Bytes::copy_from_slice(k.as_bytes()))
}

#[test]
fn writes_touch_their_keys_in_the_db_they_run_in() {
    assert_eq!(run(&["SET", "a", "1"], 2), vec![key(2, "a")]);
    assert_eq!(
        run(&["mset", "a", "1", "b", "2"], 0),
        vec![key(0, "a"), key(0, "b")]
    );
    assert_eq!(
        run(&["RENAME", "a", "b"], 0),
        vec![key(0, "a"), key(0, "b")]
    );
    assert_eq!(
        run(&["XGROUP", "CREATE", "s", "g", "$"], 0),
        vec![key(0, "s")]
    );
}

#[test]
fn reads_touch_nothing() {
    assert!(run(&["GET", "a"], 0).is_empty());
    assert!(run(&["EVAL_RO", "return 1", "1", "a"], 0).is_empty());
    assert!(run(&["XINFO", "STREAM", "s"], 0).is_empty());
    assert!(run(&["NOSUCH", "a"], 0).is_empty());
}

#[test]
fn move_and_copy_touch_the_other_db_too() {
    assert_eq!(run(&["MOVE", "k", "5"], 1), vec![key(5, "k"), key(1, "k")]);
    assert_eq!(
        run(&["COPY", "a", "b", "DB", "4", "REPLACE"], 0),
        vec![key(4, "b"), key(0, "a"), key(0, "b")]
    );
}

#[test]
fn whole_db_writes_are_barriers() {
    assert_eq!(
        run(&["FLUSHALL"], 3),
        vec![Touch::Barrier(Barrier::Flush(None))]
    );
    assert_eq!(
        run(&["flushdb", "ASYNC"], 3),
        vec![Touch::Barrier(Barrier::Flush(Some(3)))]
    );
    assert_eq!(
        run(&["SWAPDB", "0", "1"], 3),
        vec![Touch::Barrier(Barrier::Swap(0, 1))]
    );
}

#[test]
fn scripts_touch_their_declared_keys_or_are_counted_untracked() {
    assert_eq!(
        run(&["EVAL", "redis.call('set',KEYS[1],1)", "1", "k"], 0),
        vec![key(0, "k")]
    );
    assert_eq!(run(&["FCALL", "f", "0"], 0), vec![Touch::Untracked]);
    assert_eq!(
        run(&["EVALSHA", "abc", "0", "x"], 0),
        vec![Touch::Untracked]
    );
}

#[test]
fn apply_marks_only_while_tracking() {
    let t = Tracker::new(100, false);
    apply(&t, run(&["SET", "a", "1"], 0));
    assert_eq!(t.dirty_keys(), 0);
    t.enable();
    apply(&t, run(&["SET", "a", "1"], 0));
    apply(&t, run(&["FCALL", "f", "0"], 0));
    apply(&t, run(&["FLUSHDB"], 0));
    assert_eq!(t.dirty_keys(), 1);
    assert_eq!(
        t.untracked_scripts
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    assert_eq!(t.take_barriers(), vec![Barrier::Flush(Some(0))]);
}

#[test]
fn the_source_count_of_writes_sums_write_commands_only() {
    let info = "# Commandstats\r\n\
        cmdstat_set:calls=10,usec=5,usec_per_call=0.5,rejected_calls=0,failed_calls=0\r\n\
        cmdstat_get:calls=100,usec=5,usec_per_call=0.05,rejected_calls=0,failed_calls=0\r\n\
        cmdstat_incr:calls=3,usec=1\r\n\
        cmdstat_xgroup|create:calls=2,usec=1\r\n\
        cmdstat_client|list:calls=7,usec=1\r\n\
        cmdstat_nosuch:calls=9\r\n";
    assert_eq!(source_writes(info), 15);
}

#[test]
fn kinds_are_told_apart() {
    let mut out = Vec::new();
    let k = |parts: &[&str], out: &mut Vec<Touch>| {
        let mut base = Vec::new();
        let mut args = Vec::new();
        for p in parts {
            let s = base.len();
            base.extend_from_slice(p.as_bytes());
            args.push(s..base.len());
        }
        touches(&base, &args, 0, out)
    };
    assert_eq!(k(&["GET", "a"], &mut out), Kind::Read);
    assert_eq!(k(&["SET", "a", "1"], &mut out), Kind::Write);
    assert_eq!(k(&["EVAL", "x", "0"], &mut out), Kind::Script);
    assert_eq!(k(&["FLUSHDB"], &mut out), Kind::Write);
}
