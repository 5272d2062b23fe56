//! `Condvar`: std's condition variable over bobine's `Mutex`.
//!
//! `wait` queues the caller on the condvar's wait list *before* it unlocks the mutex (the
//! `after_queued` step of `wait_in`), so a `notify_one` made after the unlock always finds it:
//! no lost wake-up. Waiters are woken oldest first. As with std, callers loop on their
//! condition. A task stopped while it waits unwinds without relocking (its guard was given up
//! to the wait); a notification handed to it meanwhile goes to the next waiter.
//!
//! A notification is handed over (it is the waiter's), but the mutex is not: a notified waiter
//! takes it again through the mutex's ordinary `lock`, with its eventual fairness (`raw.rs`).
//! So notifying under the lock and unlocking after forms no convoy: the notified waiter
//! competes for the mutex like any caller, and `notify_all` wakes a crowd that the mutex then
//! lets through one woken waiter at a time.

use std::sync::{LockResult, PoisonError};
use std::time::{Duration, Instant};

use super::mutex::MutexGuard;
use crate::sched::park::Wait;
use crate::sched::waitqueue::{WaitIn, WaitList, Woken};
use crate::util::SpinLock;

/// A condition variable, like `std::sync::Condvar`, whose waits park the task.
///
/// ```
/// use std::sync::Arc;
/// use bobine::sync::{Condvar, Mutex};
///
/// bobine::run(|| {
///     let pair = Arc::new((Mutex::new(false), Condvar::new()));
///     let pair2 = pair.clone();
///     bobine::thread::spawn(move || {
///         *pair2.0.lock().unwrap() = true;
///         pair2.1.notify_one();
///     });
///     let (lock, cvar) = &*pair;
///     let ready = cvar.wait_while(lock.lock().unwrap(), |ready| !*ready).unwrap();
///     assert!(*ready);
/// });
/// ```
pub struct Condvar {
    waiters: SpinLock<WaitList>,
}

/// Whether a timed wait ended by timeout, like `std::sync::WaitTimeoutResult`.
#[derive(Debug, PartialEq, Eq, Copy, Clone)]
pub struct WaitTimeoutResult(bool);

impl WaitTimeoutResult {
    /// True if the wait ended because its time ran out.
    pub fn timed_out(&self) -> bool {
        self.0
    }
}

impl Condvar {
    /// A new condition variable with no waiters.
    pub const fn new() -> Condvar {
        Condvar {
            waiters: SpinLock::new(WaitList::new()),
        }
    }

    /// Unlocks the guard's mutex, waits for a notification, relocks it.
    #[track_caller]
    pub fn wait<'a, T>(&self, guard: MutexGuard<'a, T>) -> LockResult<MutexGuard<'a, T>> {
        self.wait_deadline(guard, None).0
    }

    /// Waits while `condition` holds (checked first, and after each wake-up).
    #[track_caller]
    pub fn wait_while<'a, T, F>(
        &self,
        mut guard: MutexGuard<'a, T>,
        mut condition: F,
    ) -> LockResult<MutexGuard<'a, T>>
    where
        F: FnMut(&mut T) -> bool,
    {
        while condition(&mut *guard) {
            guard = self.wait(guard)?;
        }
        Ok(guard)
    }

    /// Waits for a notification or until `dur` has passed.
    #[track_caller]
    pub fn wait_timeout<'a, T>(
        &self,
        guard: MutexGuard<'a, T>,
        dur: Duration,
    ) -> LockResult<(MutexGuard<'a, T>, WaitTimeoutResult)> {
        let (result, timed_out) = self.wait_deadline(guard, Instant::now().checked_add(dur));
        match result {
            Ok(g) => Ok((g, WaitTimeoutResult(timed_out))),
            Err(e) => Err(PoisonError::new((
                e.into_inner(),
                WaitTimeoutResult(timed_out),
            ))),
        }
    }

    /// Waits while `condition` holds, for at most `dur` in all; `timed_out()` is true if the
    /// time ran out with the condition still holding.
    #[track_caller]
    pub fn wait_timeout_while<'a, T, F>(
        &self,
        mut guard: MutexGuard<'a, T>,
        dur: Duration,
        mut condition: F,
    ) -> LockResult<(MutexGuard<'a, T>, WaitTimeoutResult)>
    where
        F: FnMut(&mut T) -> bool,
    {
        let deadline = Instant::now().checked_add(dur);
        loop {
            if !condition(&mut *guard) {
                return Ok((guard, WaitTimeoutResult(false)));
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok((guard, WaitTimeoutResult(true)));
            }
            let (result, timed_out) = self.wait_deadline(guard, deadline);
            guard = match result {
                Ok(g) => g,
                Err(e) => {
                    return Err(PoisonError::new((
                        e.into_inner(),
                        WaitTimeoutResult(timed_out),
                    )));
                }
            };
        }
    }

    /// Wakes the oldest waiter, if any.
    pub fn notify_one(&self) {
        loop {
            let next = self.waiters.lock().pop_front();
            // A waiter whose task the shutdown abandoned passes the notification on.
            if next.is_none_or(|u| u.hand_over()) {
                return;
            }
        }
    }

    /// Wakes every waiter.
    pub fn notify_all(&self) {
        let mut waiters = self.waiters.lock();
        while let Some(u) = waiters.pop_front() {
            u.unpark();
        }
    }

    #[track_caller]
    fn wait_deadline<'a, T>(
        &self,
        guard: MutexGuard<'a, T>,
        deadline: Option<Instant>,
    ) -> (LockResult<MutexGuard<'a, T>>, bool) {
        let mutex = guard.mutex;
        let panicking = guard.was_panicking();
        let release = move || {
            // The guard is taken apart: the lock is released here and re-taken below, without
            // the guard's poisoning logic (std does the same).
            std::mem::forget(guard);
            mutex.unlock_raw();
        };
        let woken = self.wait_raw(Wait::hand_over("Condvar::wait").until(deadline), release);
        let relocked = self.relock_after(woken, || mutex.relock(panicking));
        (relocked, woken == Woken::TimedOut)
    }

    /// Runs `relock` (taking the caller's lock again) after a wait that ended `woken`. If the
    /// relock unwinds (the task is stopped while it waits for its mutex) after a notification
    /// was handed to it, the notification goes to the next waiter: nothing is lost.
    #[track_caller]
    pub(crate) fn relock_after<R>(&self, woken: Woken, relock: impl FnOnce() -> R) -> R {
        struct PassOn<'a>(&'a Condvar);
        impl Drop for PassOn<'_> {
            fn drop(&mut self) {
                self.0.notify_one();
            }
        }
        let pass_on = (woken == Woken::Notified).then_some(PassOn(self));
        let relocked = relock();
        std::mem::forget(pass_on);
        relocked
    }

    /// Waits for a notification on behalf of a lock that is not a [`Mutex`](super::Mutex) (the
    /// OCaml face's): `unlock` runs once the caller is queued, so a notification sent after it
    /// is never lost; the caller takes its lock again itself. A notification handed to a
    /// waiter that is stopped instead goes to the next waiter.
    #[track_caller]
    pub(crate) fn wait_raw(&self, wait: Wait, unlock: impl FnOnce()) -> Woken {
        let queue = self.waiters.lock();
        WaitIn::new(&self.waiters, |l| l, wait)
            .after_queued(unlock)
            .pass_on(|_| self.notify_one())
            .park(queue)
    }
}

impl Default for Condvar {
    fn default() -> Self {
        Condvar::new()
    }
}

impl std::fmt::Debug for Condvar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Condvar").finish_non_exhaustive()
    }
}
