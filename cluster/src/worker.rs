//! Which session worker the current thread is.
//!
//! With several session workers (one single-threaded runtime each, see the proxy's
//! server), a client's session and the shared node connections it uses must live on the
//! same thread: a reply then wakes a task of the same thread instead of crossing to
//! another (measured: a second worker of one multi-threaded runtime cost ~50% more CPU
//! per request, mostly in those wakeups). Shared connections are kept per worker.

use std::cell::Cell;

thread_local! {
    static WORKER: Cell<usize> = const { Cell::new(0) };
}

/// Marks the current thread as session worker `i` (0: the main runtime's threads).
pub fn set(i: usize) {
    WORKER.with(|w| w.set(i));
}

/// The session worker of the current thread.
pub fn current() -> usize {
    WORKER.with(|w| w.get())
}
