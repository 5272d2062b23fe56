//! OCaml's `Condition`.
//!
//! | OCaml                  | here                    | error (panic message)                                 |
//! |------------------------|-------------------------|-------------------------------------------------------|
//! | `Condition.create ()`  | [`create`]`()`          |                                                       |
//! | `Condition.wait c m`   | [`wait`]`(&c, &m)`      | `Sys_error("Condition.wait: Operation not permitted")` if the caller does not hold `m` |
//! | `Condition.signal c`   | [`signal`]`(&c)`        | wakes the oldest waiter; nothing if none              |
//! | `Condition.broadcast c`| [`broadcast`]`(&c)`     | wakes every waiter                                    |
//!
//! `wait` queues the caller before it unlocks `m`, so a `signal` made after the unlock is never
//! lost; it relocks `m` before returning. As in OCaml, a wait may also end spuriously: loop on
//! the condition.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::mutex;
use crate::sched::waitqueue::{WaitList, wait_in};
use crate::util::SpinLock;

/// A condition variable handle: cheap to clone, shared by every clone.
#[derive(Clone)]
pub struct T {
    waiters: Arc<SpinLock<WaitList>>,
}

impl std::fmt::Debug for T {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Condition").finish_non_exhaustive()
    }
}

/// `Condition.create ()`.
pub fn create() -> T {
    T {
        waiters: Arc::new(SpinLock::new(WaitList::new())),
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
    let queue = c.waiters.lock();
    let release = || {
        m.inner.owner.store(0, Ordering::Relaxed);
        m.inner.raw.unlock();
    };
    let _woken = wait_in(
        &c.waiters,
        queue,
        |l| l,
        0,
        "Condition.wait",
        None,
        release,
        || signal(c),
    );
    if m.inner.raw.lock().is_err() {
        crate::sched::interrupted_wait("Condition.wait (relocking the mutex)");
    }
    m.inner.owner.store(me, Ordering::Relaxed);
}

/// `Condition.signal c`: wakes the oldest waiter, if any.
pub fn signal(c: &T) {
    let next = c.waiters.lock().pop_front();
    if let Some(u) = next {
        u.unpark();
    }
}

/// `Condition.broadcast c`: wakes every waiter.
pub fn broadcast(c: &T) {
    let mut waiters = c.waiters.lock();
    while let Some(u) = waiters.pop_front() {
        u.unpark();
    }
}
