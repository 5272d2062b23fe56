//! std's poisoning, shared by `Mutex` and `RwLock`: a guard dropped while its holder panics
//! marks the lock, and later acquisitions report it (still handing out access).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{LockResult, PoisonError};

/// A lock's poison flag.
pub(crate) struct Flag(AtomicBool);

impl Flag {
    pub(crate) const fn new() -> Flag {
        Flag(AtomicBool::new(false))
    }

    pub(crate) fn get(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    pub(crate) fn clear(&self) {
        self.0.store(false, Ordering::Relaxed);
    }

    /// `Ok(value)`, or `Err` carrying it if the lock is poisoned.
    pub(crate) fn map<T>(&self, value: T) -> LockResult<T> {
        if self.get() {
            Err(PoisonError::new(value))
        } else {
            Ok(value)
        }
    }

    /// Called as a guard is dropped; `was_panicking` is whether its holder already panicked
    /// when it acquired (then dropping it does not poison). The runtime's stop unwind (a task
    /// stopped while it holds the lock) is not a panic of the holder either.
    #[inline]
    pub(crate) fn on_release(&self, was_panicking: bool) {
        if !was_panicking && crate::sched::panicking() {
            self.0.store(true, Ordering::Relaxed);
        }
    }
}
