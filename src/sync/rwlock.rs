//! `RwLock<T>`: std's reader-writer lock, fair between readers and writers.
//!
//! All state sits under one short spin lock with the wait list. A newcomer takes the lock only
//! if no one is queued ahead of it, so a waiting writer stops new readers and is not starved;
//! on release the front of the queue is served: one writer, or every reader up to the next
//! writer (hand-off: the releaser counts them in before waking them).

use std::cell::UnsafeCell;
use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::sync::{LockResult, TryLockError, TryLockResult};

use super::poison::Flag;
use crate::sched::park::Wait;
use crate::sched::waitqueue::{WaitIn, WaitList, Woken};
use crate::util::SpinLock;

const READER: u8 = 0;
const WRITER: u8 = 1;

struct State {
    readers: usize,
    writer: bool,
    queue: WaitList,
}

impl State {
    /// Serves the front of the queue after a release, waking whom it lets in. (Unparking under
    /// the spin lock is brief: it queues a task, it never switches.)
    ///
    /// A waiter whose task the shutdown abandoned is counted out again and skipped.
    fn grant(&mut self) {
        while let Some(kind) = self.queue.front_tag() {
            if kind == WRITER {
                if self.readers != 0 || self.writer {
                    return;
                }
                self.writer = true;
                if self.queue.pop_front().is_none_or(|u| u.hand_over()) {
                    return;
                }
                self.writer = false;
                continue;
            }
            if self.writer {
                return;
            }
            self.readers += 1;
            if self.queue.pop_front().is_some_and(|u| !u.hand_over()) {
                self.readers -= 1;
            }
        }
    }
}

/// A reader-writer lock, like `std::sync::RwLock`, whose waits park the task.
pub struct RwLock<T: ?Sized> {
    state: SpinLock<State>,
    poison: Flag,
    data: UnsafeCell<T>,
}

// SAFETY: as std's: the lock hands out `&mut T` to one writer or `&T` to readers.
unsafe impl<T: ?Sized + Send> Send for RwLock<T> {}
// SAFETY: as std's: readers share `&T` across threads, so `T: Sync` is needed too.
unsafe impl<T: ?Sized + Send + Sync> Sync for RwLock<T> {}

// As std's: poisoning is how the lock reports a broken invariant after a panic.
impl<T: ?Sized> std::panic::UnwindSafe for RwLock<T> {}
impl<T: ?Sized> std::panic::RefUnwindSafe for RwLock<T> {}

/// Shared access to a locked [`RwLock`]'s value.
#[must_use = "if unused the RwLock will immediately unlock"]
pub struct RwLockReadGuard<'a, T: ?Sized + 'a> {
    lock: &'a RwLock<T>,
    _not_send: PhantomData<*const ()>,
}

/// Exclusive access to a locked [`RwLock`]'s value.
#[must_use = "if unused the RwLock will immediately unlock"]
pub struct RwLockWriteGuard<'a, T: ?Sized + 'a> {
    lock: &'a RwLock<T>,
    panicking: bool,
    _not_send: PhantomData<*const ()>,
}

// SAFETY: shared guards only give `&T`.
unsafe impl<T: ?Sized + Sync> Sync for RwLockReadGuard<'_, T> {}
// SAFETY: as above.
unsafe impl<T: ?Sized + Sync> Sync for RwLockWriteGuard<'_, T> {}

impl<T> RwLock<T> {
    /// A new unlocked lock.
    pub const fn new(value: T) -> RwLock<T> {
        RwLock {
            state: SpinLock::new(State {
                readers: 0,
                writer: false,
                queue: WaitList::new(),
            }),
            poison: Flag::new(),
            data: UnsafeCell::new(value),
        }
    }

    /// Consumes the lock and returns its value (`Err` if poisoned, still with the value).
    pub fn into_inner(self) -> LockResult<T> {
        self.poison.map(self.data.into_inner())
    }
}

impl<T: ?Sized> RwLock<T> {
    /// Locks for reading, parking while a writer holds the lock or waits for it.
    #[track_caller]
    pub fn read(&self) -> LockResult<RwLockReadGuard<'_, T>> {
        self.lock_as(READER, "RwLock::read");
        self.read_guard()
    }

    /// Locks for writing, parking while anyone holds the lock or waits ahead.
    #[track_caller]
    pub fn write(&self) -> LockResult<RwLockWriteGuard<'_, T>> {
        self.lock_as(WRITER, "RwLock::write");
        self.write_guard()
    }

    /// Takes the lock as a reader or a writer (`tag`), queueing behind anyone already waiting.
    #[track_caller]
    fn lock_as(&self, tag: u8, reason: &'static str) {
        loop {
            let mut state = self.state.lock();
            let free =
                !state.writer && state.queue.is_empty() && (tag == READER || state.readers == 0);
            if free {
                if tag == READER {
                    state.readers += 1;
                } else {
                    state.writer = true;
                }
                return;
            }
            let woken = WaitIn::new(&self.state, |s| &mut s.queue, Wait::hand_over(reason))
                .tag(tag)
                // Leaving the queue: those held back behind us may come in now.
                .withdraw(State::grant)
                .pass_on(|_| self.release(tag == WRITER))
                .park(state);
            // The lock is handed over (the releaser counted us in); any other end of the wait
            // means trying again.
            if woken == Woken::Notified {
                return;
            }
        }
    }

    /// Locks for reading if that needs no waiting.
    pub fn try_read(&self) -> TryLockResult<RwLockReadGuard<'_, T>> {
        let mut state = self.state.lock();
        if state.writer || !state.queue.is_empty() {
            return Err(TryLockError::WouldBlock);
        }
        state.readers += 1;
        drop(state);
        self.read_guard().map_err(TryLockError::Poisoned)
    }

    /// Locks for writing if that needs no waiting.
    pub fn try_write(&self) -> TryLockResult<RwLockWriteGuard<'_, T>> {
        let mut state = self.state.lock();
        if state.writer || state.readers > 0 || !state.queue.is_empty() {
            return Err(TryLockError::WouldBlock);
        }
        state.writer = true;
        drop(state);
        self.write_guard().map_err(TryLockError::Poisoned)
    }

    /// Whether a writer panicked while holding the lock.
    pub fn is_poisoned(&self) -> bool {
        self.poison.get()
    }

    /// Clears the poison flag.
    pub fn clear_poison(&self) {
        self.poison.clear();
    }

    /// A mutable reference to the value: the borrow proves exclusivity.
    pub fn get_mut(&mut self) -> LockResult<&mut T> {
        self.poison.map(self.data.get_mut())
    }

    fn read_guard(&self) -> LockResult<RwLockReadGuard<'_, T>> {
        let guard = RwLockReadGuard {
            lock: self,
            _not_send: PhantomData,
        };
        self.poison.map(guard)
    }

    fn write_guard(&self) -> LockResult<RwLockWriteGuard<'_, T>> {
        let guard = RwLockWriteGuard {
            lock: self,
            panicking: crate::sched::panicking(),
            _not_send: PhantomData,
        };
        self.poison.map(guard)
    }

    fn release(&self, writer: bool) {
        let mut state = self.state.lock();
        if writer {
            state.writer = false;
        } else {
            state.readers -= 1;
        }
        if state.readers == 0 && !state.writer {
            state.grant();
        }
    }
}

impl<T: ?Sized> Drop for RwLockReadGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.release(false);
    }
}

impl<T: ?Sized> Drop for RwLockWriteGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.poison.on_release(self.panicking);
        self.lock.release(true);
    }
}

impl<T: ?Sized> Deref for RwLockReadGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: readers hold shared access while the guard lives.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T: ?Sized> Deref for RwLockWriteGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the writer holds exclusive access while the guard lives.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T: ?Sized> DerefMut for RwLockWriteGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as above, and `&mut self` is unique.
        unsafe { &mut *self.lock.data.get() }
    }
}

impl<T: Default> Default for RwLock<T> {
    fn default() -> Self {
        RwLock::new(T::default())
    }
}

impl<T> From<T> for RwLock<T> {
    fn from(value: T) -> Self {
        RwLock::new(value)
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for RwLock<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("RwLock");
        match self.try_read() {
            Ok(guard) => d.field("data", &&*guard),
            Err(TryLockError::Poisoned(err)) => d.field("data", &&**err.get_ref()),
            Err(TryLockError::WouldBlock) => d.field("data", &format_args!("<locked>")),
        };
        d.field("poisoned", &self.is_poisoned())
            .finish_non_exhaustive()
    }
}

impl<T: ?Sized + fmt::Display> fmt::Display for RwLockReadGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&**self, f)
    }
}

impl<T: ?Sized + fmt::Display> fmt::Display for RwLockWriteGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&**self, f)
    }
}

impl<'a, T: ?Sized> RwLockWriteGuard<'a, T> {
    /// Turns exclusive access into shared access without letting a writer in between; readers
    /// queued at the front come in with it.
    pub fn downgrade(s: Self) -> RwLockReadGuard<'a, T> {
        let lock = s.lock;
        std::mem::forget(s);
        let mut state = lock.state.lock();
        state.writer = false;
        state.readers += 1;
        state.grant();
        drop(state);
        RwLockReadGuard {
            lock,
            _not_send: PhantomData,
        }
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for RwLockReadGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for RwLockWriteGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}
