//! `Mutex<T>`: std's `Mutex` with a task-parking lock (see `raw.rs` for the protocol).
//!
//! Poisoning is std's: a guard dropped while its thread (task) panics poisons the mutex, and
//! later `lock`s return `Err(PoisonError)` that still carries the guard.

use std::cell::UnsafeCell;
use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::sync::{LockResult, TryLockError, TryLockResult};

use super::poison::Flag;
use super::raw::RawMutex;

/// A mutual exclusion lock, like `std::sync::Mutex`, whose `lock` parks the task (not the
/// domain) while another holds it.
///
/// Fairness is eventual: `unlock` leaves the lock free for whoever runs (a task on any domain,
/// a plain thread) and wakes the oldest waiter to compete for it; a woken waiter that loses
/// keeps its place. Once a waiter has waited more than 1 ms, the lock is handed to waiters in
/// arrival order until they have caught up: nobody starves.
///
/// ```
/// use std::sync::Arc;
/// use bobine::sync::Mutex;
///
/// let total = bobine::run(|| {
///     let m = Arc::new(Mutex::new(0u64));
///     let hs: Vec<_> = (0..8).map(|_| {
///         let m = m.clone();
///         bobine::thread::spawn(move || for _ in 0..100 { *m.lock().unwrap() += 1 })
///     }).collect();
///     hs.into_iter().for_each(|h| h.join().unwrap());
///     let n = *m.lock().unwrap();
///     n
/// });
/// assert_eq!(total, 800);
/// ```
pub struct Mutex<T: ?Sized> {
    raw: RawMutex,
    poison: Flag,
    data: UnsafeCell<T>,
}

// SAFETY: the mutex gives access to `T` to one holder at a time; sending it moves the `T`.
unsafe impl<T: ?Sized + Send> Send for Mutex<T> {}
// SAFETY: as std's: `&Mutex<T>` only gives `&mut T` under the lock, so `T: Send` suffices.
unsafe impl<T: ?Sized + Send> Sync for Mutex<T> {}

// As std's: poisoning is how a mutex reports a broken invariant after a panic.
impl<T: ?Sized> std::panic::UnwindSafe for Mutex<T> {}
impl<T: ?Sized> std::panic::RefUnwindSafe for Mutex<T> {}

/// The guard of a locked [`Mutex`]; unlocks when dropped. Like std's, it stays on the thread
/// (task) that locked it, and is invariant in `T` (it hands out `&mut T`), so this does not
/// compile:
///
/// ```compile_fail
/// use bobine::sync::MutexGuard;
/// fn shorten<'a, 'g>(g: MutexGuard<'g, &'static str>) -> MutexGuard<'g, &'a str> {
///     g
/// }
/// ```
#[must_use = "if unused the Mutex will immediately unlock"]
pub struct MutexGuard<'a, T: ?Sized + 'a> {
    pub(super) mutex: &'a Mutex<T>,
    /// Whether the holder was already panicking when it locked (then its drop does not poison).
    panicking: bool,
    _not_send: PhantomData<*const ()>,
}

// SAFETY: a shared guard only gives `&T`, as `&Mutex<T>` would to the holder.
unsafe impl<T: ?Sized + Sync> Sync for MutexGuard<'_, T> {}

impl<T> Mutex<T> {
    /// A new unlocked mutex.
    pub const fn new(value: T) -> Mutex<T> {
        Mutex {
            raw: RawMutex::new(),
            poison: Flag::new(),
            data: UnsafeCell::new(value),
        }
    }

    /// Consumes the mutex and returns its value (`Err` if poisoned, still with the value).
    pub fn into_inner(self) -> LockResult<T> {
        self.poison.map(self.data.into_inner())
    }
}

impl<T: ?Sized> Mutex<T> {
    /// Locks the mutex, parking the caller until it is free.
    ///
    /// A task stopped while it waits (its runtime is ending) unwinds from here; one that is
    /// already unwinding (a destructor) keeps waiting. Relocking a mutex the caller holds
    /// blocks forever, as std allows.
    #[track_caller]
    pub fn lock(&self) -> LockResult<MutexGuard<'_, T>> {
        self.raw.lock("Mutex::lock");
        self.guard()
    }

    /// Locks the mutex if it is free, without blocking.
    pub fn try_lock(&self) -> TryLockResult<MutexGuard<'_, T>> {
        if !self.raw.try_lock() {
            return Err(TryLockError::WouldBlock);
        }
        self.guard().map_err(TryLockError::Poisoned)
    }

    fn guard(&self) -> LockResult<MutexGuard<'_, T>> {
        let guard = MutexGuard {
            mutex: self,
            panicking: crate::sched::panicking(),
            _not_send: PhantomData,
        };
        self.poison.map(guard)
    }

    /// Whether a holder panicked while holding the lock.
    pub fn is_poisoned(&self) -> bool {
        self.poison.get()
    }

    /// Clears the poison flag.
    pub fn clear_poison(&self) {
        self.poison.clear();
    }

    /// A mutable reference to the value: no locking needed, the borrow proves exclusivity.
    pub fn get_mut(&mut self) -> LockResult<&mut T> {
        self.poison.map(self.data.get_mut())
    }

    /// Releases the lock on behalf of a guard that is being taken apart (condition variables).
    pub(super) fn unlock_raw(&self) {
        self.raw.unlock()
    }

    /// Re-takes the lock for a condition variable's waiter and rebuilds its guard.
    #[track_caller]
    pub(super) fn relock(&self, panicking: bool) -> LockResult<MutexGuard<'_, T>> {
        self.raw.lock("Condvar::wait (relocking the mutex)");
        let guard = MutexGuard {
            mutex: self,
            panicking,
            _not_send: PhantomData,
        };
        self.poison.map(guard)
    }
}

impl<T: ?Sized> MutexGuard<'_, T> {
    pub(super) fn was_panicking(&self) -> bool {
        self.panicking
    }
}

impl<T: ?Sized> Drop for MutexGuard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        self.mutex.poison.on_release(self.panicking);
        self.mutex.raw.unlock();
    }
}

impl<T: ?Sized> Deref for MutexGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard exists only while the lock is held.
        unsafe { &*self.mutex.data.get() }
    }
}

impl<T: ?Sized> DerefMut for MutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard exists only while the lock is held, and `&mut self` is unique.
        unsafe { &mut *self.mutex.data.get() }
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for MutexGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl<T: ?Sized + fmt::Display> fmt::Display for MutexGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&**self, f)
    }
}

impl<T: Default> Default for Mutex<T> {
    fn default() -> Self {
        Mutex::new(T::default())
    }
}

impl<T> From<T> for Mutex<T> {
    fn from(value: T) -> Self {
        Mutex::new(value)
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for Mutex<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Mutex");
        match self.try_lock() {
            Ok(guard) => d.field("data", &&*guard),
            Err(TryLockError::Poisoned(err)) => d.field("data", &&**err.get_ref()),
            Err(TryLockError::WouldBlock) => d.field("data", &format_args!("<locked>")),
        };
        d.field("poisoned", &self.is_poisoned())
            .finish_non_exhaustive()
    }
}
