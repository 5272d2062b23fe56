//! `RwLock<T>`: std's reader-writer lock, fair between readers and writers, with the mutex's
//! eventual fairness (see `raw.rs`).
//!
//! All state sits under one short spin lock with the wait list: the holders (`readers`,
//! `writer`), the writers waiting (queued, or nudged and not back yet), the waiters nudged and
//! not back yet (`woken`), and whether the lock is in hand-off mode.
//!
//! ## Rule
//!
//! | who                         | takes the lock (normal mode) when                        | otherwise                      |
//! |-----------------------------|----------------------------------------------------------|--------------------------------|
//! | a newcomer reader           | no writer holds it and no writer waits                   | queues at the back             |
//! | a newcomer writer           | nobody holds it (barging past queued waiters)            | queues at the back             |
//! | a nudged reader, back       | no writer holds it (it was ahead of the waiting writers) | queues again at the front      |
//! | a nudged writer, back       | nobody holds it                                          | queues again at the front      |
//!
//! In hand-off mode nobody takes the lock: it is granted to the front of the queue.
//!
//! A waiting writer stops newcomer readers, so overlapping readers cannot starve it; writers
//! may barge, and the bound protects whoever they overtake.
//!
//! ## Protocol (all under the spin lock)
//!
//! 1. Taking: by the table above; a caller that cannot queues (noting when it first did) and
//!    parks.
//! 2. Serving, after every change that may let someone in (a release, a downgrade, a waiter
//!    leaving): in hand-off mode, the releaser **grants** the front of the queue: one writer,
//!    or every reader up to the next writer, counted in before they are woken (a hand-over).
//!    In normal mode, if no nudged waiter is on its way, it **nudges** the front of the queue
//!    if it could enter now: the writer at the front if nobody holds the lock, or every reader
//!    up to the next writer if no writer holds it; the lock is left to whoever takes it first.
//! 3. A nudged waiter back counts itself out of `woken` (and, a writer, out of the waiting
//!    writers), and takes the lock by the table; if it cannot, it queues again at the front,
//!    and switches the lock to hand-off mode if it first queued more than the bound
//!    ([`STARVATION_BOUND`], 1 ms) ago. A waiter granted the lock holds it, and leaves
//!    hand-off mode if it waited less than the bound or nobody is queued behind it.
//! 4. Stops: a waiter stopped while queued unlinks itself (uncounting itself if a writer) and
//!    serves (step 2: those it held back may come in). One that unwinds after a waker chose it
//!    passes on what it got: a grant is released (step 2 again), a nudge is counted out and
//!    the lock served. One chosen as it is stopped keeps what it got, as the wait queue says.
//!
//! Hand-off mode starts only while the lock is held (the nudged waiter could not take it), and
//! every release serves, granting or, with nobody queued, leaving the mode: so the lock is
//! never free in hand-off mode with waiters queued. (Waking under the spin lock is brief: it
//! queues a task, it never switches.)

use std::cell::{Cell, UnsafeCell};
use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;
use std::sync::{LockResult, TryLockError, TryLockResult};
use std::time::Instant;

use super::poison::Flag;
use super::raw::STARVATION_BOUND;
use crate::sched::park::Wait;
use crate::sched::waitqueue::{WaitIn, WaitList, Woken};
use crate::util::SpinLock;

const READER: u8 = 0;
const WRITER: u8 = 1;

struct State {
    readers: usize,
    writer: bool,
    /// Writers queued, or nudged and not back yet: while any, newcomer readers queue.
    writers_waiting: usize,
    /// Waiters nudged and not back yet.
    woken: usize,
    /// Hand-off mode: the lock is granted to the front of the queue.
    handoff: bool,
    queue: WaitList,
    /// Switches to hand-off mode so far (the unit tests check that the bound was enforced).
    #[cfg(test)]
    handoffs: usize,
}

impl State {
    /// Whether a caller of kind `tag` may take the lock now (the module doc's table; `nudged`
    /// for a nudged waiter back).
    fn may_take(&self, tag: u8, nudged: bool) -> bool {
        if self.handoff || self.writer {
            return false;
        }
        if tag == READER {
            nudged || self.writers_waiting == 0
        } else {
            self.readers == 0
        }
    }

    /// Takes the lock as `tag` (the caller checked `may_take`).
    fn take(&mut self, tag: u8) {
        if tag == READER {
            self.readers += 1;
        } else {
            self.writer = true;
        }
    }

    /// Step 2: serves the front of the queue, granting in hand-off mode, nudging otherwise.
    fn serve(&mut self) {
        if self.handoff {
            return self.grant();
        }
        if self.woken > 0 || self.writer {
            return;
        }
        while let Some(kind) = self.queue.front_tag() {
            if kind == WRITER && (self.readers > 0 || self.woken > 0) {
                // Readers hold it, or the readers ahead of this writer were just nudged.
                return;
            }
            // A waiter whose task the shutdown abandoned never comes back: skip it (and count
            // it out, a writer).
            if self.queue.pop_front_nudge().is_some_and(|u| u.hand_over()) {
                self.woken += 1;
            } else if kind == WRITER {
                self.writers_waiting -= 1;
            }
            if kind == WRITER && self.woken > 0 {
                return;
            }
        }
    }

    /// Step 2 in hand-off mode: grants the front of the queue, waking whom it lets in; with
    /// nobody queued, leaves hand-off mode.
    ///
    /// A waiter whose task the shutdown abandoned is counted out again and skipped.
    fn grant(&mut self) {
        while let Some(kind) = self.queue.front_tag() {
            if kind == WRITER {
                if self.readers != 0 || self.writer {
                    return;
                }
                self.writer = true;
                self.writers_waiting -= 1;
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
        // Nobody left to grant (even if only abandoned waiters were skipped): hand-off mode
        // ends here, or the lock could be left free with newcomers queueing behind nobody.
        self.handoff = false;
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
///
/// Covariant in `T`, as std's is: it holds a pointer to the value and a reference to the
/// lock's state, not `&RwLock<T>` (whose `UnsafeCell<T>` would make it invariant). A shared
/// guard only reads the value, so a guard of a longer-lived `T` may stand for a shorter one.
///
/// Like std's, it stays on the thread (task) that locked it: it is not `Send`, so this does
/// not compile:
///
/// ```compile_fail
/// fn is_send<T: Send>() {}
/// is_send::<bobine::sync::RwLockReadGuard<'static, u32>>();
/// ```
pub struct RwLockReadGuard<'a, T: ?Sized + 'a> {
    data: NonNull<T>,
    state: &'a SpinLock<State>,
    _not_send: PhantomData<*const ()>,
}

/// Exclusive access to a locked [`RwLock`]'s value.
///
/// Invariant in `T`, as std's is (it hands out `&mut T`), so this does not compile:
///
/// ```compile_fail
/// use bobine::sync::RwLockWriteGuard;
/// fn shorten<'a, 'g>(g: RwLockWriteGuard<'g, &'static str>) -> RwLockWriteGuard<'g, &'a str> {
///     g
/// }
/// ```
#[must_use = "if unused the RwLock will immediately unlock"]
pub struct RwLockWriteGuard<'a, T: ?Sized + 'a> {
    lock: &'a RwLock<T>,
    panicking: bool,
    _not_send: PhantomData<*const ()>,
}

// SAFETY: shared guards only give `&T` (the `NonNull` makes the guard `!Sync` by default;
// std's guard is `Sync` exactly when `T` is).
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
                writers_waiting: 0,
                woken: 0,
                handoff: false,
                queue: WaitList::new(),
                #[cfg(test)]
                handoffs: 0,
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
    /// How many times a waiter switched this lock to hand-off mode.
    #[cfg(test)]
    pub(crate) fn handoffs(&self) -> usize {
        self.state.lock().handoffs
    }

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

    /// Takes the lock as a reader or a writer (`tag`), by the module doc's table.
    #[track_caller]
    fn lock_as(&self, tag: u8, reason: &'static str) {
        let writer = tag == WRITER;
        // When we first queued (read outside the spin lock), and whether we were nudged.
        let since: Cell<Option<Instant>> = Cell::new(None);
        let mut nudged = false;
        loop {
            let starving = nudged && since.get().is_some_and(|t| t.elapsed() > STARVATION_BOUND);
            let mut state = self.state.lock();
            if nudged {
                state.woken -= 1;
                if writer {
                    state.writers_waiting -= 1;
                }
            }
            if state.may_take(tag, nudged) {
                state.take(tag);
                return;
            }
            if starving {
                // It is held (we could not take it): hand-off mode starts with a holder, whose
                // release grants.
                state.handoff = true;
                #[cfg(test)]
                {
                    state.handoffs += 1;
                }
            }
            if writer {
                state.writers_waiting += 1;
            }
            let front = std::mem::replace(&mut nudged, false);
            let woken = WaitIn::new(&self.state, |s| &mut s.queue, Wait::hand_over(reason))
                .tag(tag)
                .front(front)
                .after_queued(|| {
                    if since.get().is_none() {
                        since.set(Some(Instant::now()));
                    }
                })
                // Leaving the queue: those held back behind us may come in now.
                .withdraw(|s: &mut State| {
                    if writer {
                        s.writers_waiting -= 1;
                    }
                    s.serve();
                })
                .pass_on(|how| match how {
                    // Granted the lock but unwinding: release it.
                    Woken::Notified => self.release(writer),
                    // Nudged but unwinding: count ourselves out, serve the next.
                    _ => {
                        let mut s = self.state.lock();
                        s.woken -= 1;
                        if writer {
                            s.writers_waiting -= 1;
                        }
                        s.serve();
                    }
                })
                .park(state);
            match woken {
                Woken::Notified => {
                    // Granted (hand-off mode; the releaser counted us in): back to normal mode
                    // if we waited less than the bound or nobody is queued behind us.
                    let short = since.get().is_some_and(|t| t.elapsed() < STARVATION_BOUND);
                    let mut state = self.state.lock();
                    if short || state.queue.is_empty() {
                        state.handoff = false;
                    }
                    return;
                }
                Woken::Nudged => nudged = true,
                // A hand-over wait ends otherwise only by unwinding; try again all the same.
                Woken::TimedOut | Woken::Interrupted => {}
            }
        }
    }

    /// Locks for reading if that needs no waiting (no writer holds the lock or waits for it).
    pub fn try_read(&self) -> TryLockResult<RwLockReadGuard<'_, T>> {
        let mut state = self.state.lock();
        if !state.may_take(READER, false) {
            return Err(TryLockError::WouldBlock);
        }
        state.readers += 1;
        drop(state);
        self.read_guard().map_err(TryLockError::Poisoned)
    }

    /// Locks for writing if that needs no waiting (nobody holds the lock, and it is not in
    /// hand-off mode).
    pub fn try_write(&self) -> TryLockResult<RwLockWriteGuard<'_, T>> {
        let mut state = self.state.lock();
        if !state.may_take(WRITER, false) {
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
            // SAFETY: an `UnsafeCell`'s pointer is never null.
            data: unsafe { NonNull::new_unchecked(self.data.get()) },
            state: &self.state,
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
        release(&self.state, writer);
    }
}

/// Gives the lock back (a reader or the writer, `writer`) and serves whoever may come in.
fn release(state: &SpinLock<State>, writer: bool) {
    let mut state = state.lock();
    if writer {
        state.writer = false;
    } else {
        state.readers -= 1;
    }
    state.serve();
}

impl<T: ?Sized> Drop for RwLockReadGuard<'_, T> {
    fn drop(&mut self) {
        release(self.state, false);
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
        // SAFETY: `data` points into the lock, which outlives 'a, and readers hold shared
        // access while the guard lives.
        unsafe { self.data.as_ref() }
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
        state.serve();
        drop(state);
        RwLockReadGuard {
            // SAFETY: an `UnsafeCell`'s pointer is never null.
            data: unsafe { NonNull::new_unchecked(lock.data.get()) },
            state: &lock.state,
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
