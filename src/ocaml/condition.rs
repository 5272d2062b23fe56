//! OCaml's `Condition`.
//!
//! | OCaml                  | here                    | error (panic message)                                 |
//! |------------------------|-------------------------|-------------------------------------------------------|
//! | `Condition.create ()`  | [`create`]`()`          |                                                       |
//! | `Condition.wait c m`   | [`wait`]`(&c, &m)`      | `Sys_error("Condition.wait: Operation not permitted")` if the caller does not hold `m` |
//! | `Condition.signal c`   | [`signal`]`(&c)`        | wakes the oldest waiter; nothing if none              |
//! | `Condition.broadcast c`| [`broadcast`]`(&c)`     | wakes every waiter                                    |
//!
//! A thin layer over [`crate::sync::Condvar`]: `wait` queues the caller before it unlocks `m`,
//! so a `signal` made after the unlock is never lost; it relocks `m` before returning. As in
//! OCaml, callers loop on their condition.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::mutex;
use crate::sched::park::Wait;
use crate::sync::Condvar;

/// A condition variable handle: cheap to clone, shared by every clone.
#[derive(Clone)]
pub struct T {
    cv: Arc<Condvar>,
}

impl std::fmt::Debug for T {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Condition").finish_non_exhaustive()
    }
}

/// `Condition.create ()`.
pub fn create() -> T {
    T {
        cv: Arc::new(Condvar::new()),
    }
}

/// `Condition.wait c m`: atomically unlocks `m` and waits on `c`; relocks `m` before returning.
///
/// # Panics
///
/// `Sys_error("Condition.wait: Operation not permitted")` if the caller does not hold `m`.
#[track_caller]
pub fn wait(c: &T, m: &mutex::T) {
    let me = crate::thread::current_id();
    if m.inner.owner.load(Ordering::Relaxed) != me {
        panic!("Sys_error(\"Condition.wait: Operation not permitted\")");
    }
    let woken = c.cv.wait_raw(Wait::hand_over("Condition.wait"), || {
        m.inner.owner.store(0, Ordering::Relaxed);
        m.inner.raw.unlock();
    });
    c.cv.relock_after(woken, || {
        m.inner.raw.lock("Condition.wait (relocking the mutex)")
    });
    m.inner.owner.store(me, Ordering::Relaxed);
}

/// `Condition.signal c`: wakes the oldest waiter, if any.
pub fn signal(c: &T) {
    c.cv.notify_one()
}

/// `Condition.broadcast c`: wakes every waiter.
pub fn broadcast(c: &T) {
    c.cv.notify_all()
}
