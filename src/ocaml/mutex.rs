//! OCaml's `Mutex` (an error-checking mutex, as in OCaml 5).
//!
//! | OCaml                | here                     | error (panic message)                               |
//! |----------------------|--------------------------|-----------------------------------------------------|
//! | `Mutex.create ()`    | [`create`]`()`           |                                                     |
//! | `Mutex.lock m`       | [`lock`]`(&m)`           | `Sys_error("Mutex.lock: Resource deadlock avoided")` if the caller holds it |
//! | `Mutex.try_lock m`   | [`try_lock`]`(&m)`       | never; false if held, by anyone                     |
//! | `Mutex.unlock m`     | [`unlock`]`(&m)`         | `Sys_error("Mutex.unlock: Operation not permitted")` if the caller does not hold it |
//! | `Mutex.protect m f`  | [`protect`]`(&m, f)`     | unlocks on return and on panic                      |
//!
//! Fairness is `bobine::sync::Mutex`'s: `unlock` leaves the mutex free for a running thread to
//! take and wakes the oldest waiter to compete for it; once a waiter has waited more than 1 ms
//! the mutex is handed to waiters in arrival order. `lock` parks the task, not the domain.
//! (OCaml's own mutex makes no promise of order.)
//!
//! ```
//! use bobine::ocaml::mutex;
//! let m = mutex::create();
//! mutex::lock(&m);
//! assert!(!mutex::try_lock(&m));
//! mutex::unlock(&m);
//! assert_eq!(mutex::protect(&m, || 7), 7);
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::sync::raw::RawMutex;

pub(crate) struct Inner {
    pub(crate) raw: RawMutex,
    /// The holder's id (`thread::current_id`), 0 when free.
    pub(crate) owner: AtomicU64,
}

/// A mutex handle: cheap to clone, shared by every clone.
#[derive(Clone)]
pub struct T {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for T {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mutex")
            .field("locked", &(self.inner.owner.load(Ordering::Relaxed) != 0))
            .finish()
    }
}

/// `Mutex.create ()`: a new unlocked mutex.
pub fn create() -> T {
    T {
        inner: Arc::new(Inner {
            raw: RawMutex::new(),
            owner: AtomicU64::new(0),
        }),
    }
}

/// `Mutex.lock m`: locks `m`, parking the caller while another holds it.
///
/// # Panics
///
/// `Sys_error("Mutex.lock: Resource deadlock avoided")` if the caller already holds `m`.
#[track_caller]
pub fn lock(m: &T) {
    let me = crate::thread::current_id();
    if m.inner.owner.load(Ordering::Relaxed) == me {
        panic!("Sys_error(\"Mutex.lock: Resource deadlock avoided\")");
    }
    m.inner.raw.lock("Mutex.lock");
    m.inner.owner.store(me, Ordering::Relaxed);
}

/// `Mutex.try_lock m`: locks `m` if it is free; false if anyone holds it (the caller too).
pub fn try_lock(m: &T) -> bool {
    if m.inner.raw.try_lock() {
        m.inner
            .owner
            .store(crate::thread::current_id(), Ordering::Relaxed);
        true
    } else {
        false
    }
}

/// `Mutex.unlock m`: unlocks `m`, and wakes the oldest waiter to compete for it (see the module
/// doc).
///
/// # Panics
///
/// `Sys_error("Mutex.unlock: Operation not permitted")` if `m` is unlocked or held by another
/// thread.
#[track_caller]
pub fn unlock(m: &T) {
    if m.inner.owner.load(Ordering::Relaxed) != crate::thread::current_id() {
        panic!("Sys_error(\"Mutex.unlock: Operation not permitted\")");
    }
    m.inner.owner.store(0, Ordering::Relaxed);
    m.inner.raw.unlock();
}

/// `Mutex.protect m f`: runs `f` with `m` locked, and unlocks it when `f` returns or panics.
#[track_caller]
pub fn protect<R>(m: &T, f: impl FnOnce() -> R) -> R {
    struct Unlock<'a>(&'a T);
    impl Drop for Unlock<'_> {
        fn drop(&mut self) {
            // While unwinding, a mutex the caller no longer holds (`f` unlocked it, or a
            // `Condition.wait` inside `f` was unwound after releasing it) is left alone: raising
            // `Sys_error` from a destructor during a panic would abort the process.
            let owned = self.0.inner.owner.load(Ordering::Relaxed) == crate::thread::current_id();
            if owned || !std::thread::panicking() {
                unlock(self.0);
            }
        }
    }
    lock(m);
    let _unlock = Unlock(m);
    f()
}
