//! `Semaphore` (counting), with the mutex's eventual fairness (see `raw.rs`).
//!
//! It keeps its count and its wait list under one spin lock, with two more fields: how many
//! waiters were nudged and are not back yet (`woken`), and whether it is in hand-off mode.
//!
//! ## Rule
//!
//! | mode     | `acquire` (a newcomer)                  | a nudged waiter back                         | `release`                                                     |
//! |----------|-----------------------------------------|----------------------------------------------|---------------------------------------------------------------|
//! | normal   | takes a free permit, even with waiters queued (barging); otherwise queues at the back | takes a free permit; otherwise queues again at the front, and switches to hand-off mode if it first queued more than the bound ago | adds the permit to the count; nudges the oldest waiter if fewer waiters are on their way than there are free permits |
//! | hand-off | queues at the back (no permit is free while anyone is queued) | queues again at the front             | hands the permit to the oldest waiter (the count stays 0); with nobody queued, adds it to the count and leaves hand-off mode |
//!
//! A waiter handed a permit leaves hand-off mode if it waited less than the bound
//! ([`STARVATION_BOUND`], 1 ms) or was the last.
//!
//! ## Protocol (all under the spin lock)
//!
//! 1. `acquire`: in normal mode, a free permit is taken at once. Otherwise the caller queues
//!    (noting when it first did) and parks.
//! 2. `release`: in hand-off mode, pop the oldest waiter as a hand-over and wake it; if there
//!    is none, leave hand-off mode. In normal mode (or with nobody to hand to), add the permit
//!    (failing at the maximum, changing nothing); then, while `woken` is less than the free
//!    permits and someone is queued, pop the oldest as a nudge, count it in `woken`, wake it.
//! 3. A nudged waiter back counts itself out of `woken` and acts as a newcomer would, except
//!    that it queues again at the front, and switches to hand-off mode if it has waited past the
//!    bound (no permit is free then, so no permit is left idle in hand-off mode). A waiter
//!    handed a permit has it.
//! 4. Stops: a waiter stopped while queued unlinks itself. One that unwinds after a waker
//!    chose it passes on what it got: a handed permit is released again (to the next waiter), a
//!    nudge is counted out of `woken` and given to the next waiter if a permit is free. A waiter
//!    nudged or handed a permit as it is stopped keeps it (the stop takes effect at its next
//!    park point), as the wait queue says.
//! 5. Timed waits (`acquire_timeout`, `permit_timeout`): a waiter whose deadline passes while
//!    it is still queued unlinks itself (no waker chose it, so it owes nothing; if it was the
//!    last waiter, hand-off mode ends) and returns false. One that a waker chose as the
//!    deadline passed keeps what it was given: a handed permit is its own (it returns true);
//!    a nudge is acted on as in step 3, taking a free permit if there is one (true), and
//!    otherwise, with no permit free, counting itself out of `woken` and returning false. A
//!    permit is thus never created by a timeout (only a release adds one) nor lost by one
//!    (every release either added to the count, or handed the permit to a waiter that
//!    returns true, and a nudge is always counted out under the lock).
//!
//! Invariant (normal mode, at every release of the spin lock): if someone is queued, no more
//! permits are free than waiters are on their way (`permits <= woken`): a free permit always
//! has a waiter coming for it, so a wake-up is never lost. Hand-off mode starts only when no
//! permit is free and ends as soon as one would be left over, so no permit is idle while
//! anyone waits.
//!
//! Direct hand-off on every release (what this file did before) is simple and strictly FIFO,
//! but across domains a released permit then waits for its waiter's domain to wake, as a
//! mutex hand-off does. Requests here are always of one permit; a semaphore that took several
//! permits at once would need hand-off (or strict FIFO) for large requests, or small ones
//! barging past would starve them: that is why such semaphores (tokio's) are FIFO.
//!
//! ## Permits as guards
//!
//! [`Semaphore::permit`], [`Semaphore::try_permit`] and [`Semaphore::permit_timeout`] take a
//! permit as [`acquire`](Semaphore::acquire), [`try_acquire`](Semaphore::try_acquire) and
//! [`acquire_timeout`](Semaphore::acquire_timeout) do, and return a [`SemaphorePermit`] that
//! gives it back when dropped (on unwinding too), as a `MutexGuard` unlocks;
//! [`SemaphorePermit::forget`] keeps it taken. The names follow the rest of `sync` (`lock`
//! gives a guard, `acquire` a bare permit); `tokio::sync::Semaphore` names its guard the same
//! way, though there `acquire` returns it.
//!
//! The OCaml faces' `Semaphore.Counting` and `Semaphore.Binary` are this semaphore; OCaml's own
//! are a mutex and a condition, whose `release` wakes a waiter that then competes, as here
//! (two `release`s of a binary semaphore with one waiter leave the value 0 once the waiter is
//! through, in OCaml as here).

use std::cell::Cell;
use std::fmt;
use std::time::{Duration, Instant};

use super::raw::STARVATION_BOUND;
use crate::sched::park::Wait;
use crate::sched::waitqueue::{WaitIn, WaitList, Woken};
use crate::util::{SpinGuard, SpinLock};

struct SemState {
    permits: usize,
    /// The most permits the semaphore may hold (`usize::MAX` unless a face sets one).
    max: usize,
    /// Waiters nudged and not back yet (each may take a free permit).
    woken: usize,
    /// Hand-off mode: a released permit goes to the oldest waiter.
    handoff: bool,
    queue: WaitList,
    /// Switches to hand-off mode so far (the unit tests check that the bound was enforced).
    #[cfg(test)]
    handoffs: usize,
}

/// A release that would take a semaphore past its maximum.
#[derive(Debug)]
pub(crate) struct Full;

/// A counting semaphore whose `acquire` parks the task while no permit is free.
///
/// Fairness is eventual, as for [`Mutex`](super::Mutex): a released permit may be taken by a
/// running task before the oldest waiter, which is woken to compete for it, but no waiter
/// waits much longer than 1 ms past its turn: then permits go to waiters in arrival order.
///
/// ```
/// use std::sync::Arc;
/// let sem = Arc::new(bobine::sync::Semaphore::new(2));
/// assert!(sem.try_acquire());
/// assert_eq!(sem.available(), 1);
/// sem.release();
/// assert_eq!(sem.available(), 2);
/// ```
pub struct Semaphore {
    state: SpinLock<SemState>,
}

impl Semaphore {
    /// A semaphore with `permits` free permits.
    pub const fn new(permits: usize) -> Semaphore {
        Semaphore::with_max(permits, usize::MAX)
    }

    /// A semaphore with `permits` free permits that never holds more than `max` (see
    /// [`Semaphore::try_release`]); `permits <= max`.
    pub(crate) const fn with_max(permits: usize, max: usize) -> Semaphore {
        assert!(permits <= max);
        Semaphore {
            state: SpinLock::new(SemState {
                permits,
                max,
                woken: 0,
                handoff: false,
                queue: WaitList::new(),
                #[cfg(test)]
                handoffs: 0,
            }),
        }
    }

    /// How many times a waiter switched this semaphore to hand-off mode.
    #[cfg(test)]
    pub(crate) fn handoffs(&self) -> usize {
        self.state.lock().handoffs
    }

    /// Takes a permit, parking until one is free. A task stopped while it waits unwinds from
    /// here (a permit handed to it meanwhile goes to the next waiter).
    #[track_caller]
    pub fn acquire(&self) {
        let took = self.acquire_until(None, "Semaphore::acquire");
        debug_assert!(took, "a wait with no deadline ends with a permit");
    }

    /// Takes a permit, parking until one is free or `timeout` has passed; true if a permit
    /// was taken, false (nothing taken) on timeout. A zero `timeout` is
    /// [`try_acquire`](Semaphore::try_acquire).
    ///
    /// A release that races the deadline is never lost: a waiter chosen by it (handed the
    /// permit, or woken to compete for it) returns true holding a permit if one is free for it,
    /// and otherwise returns false having passed the wake-up on to the next waiter, so the
    /// permit stays in the count or goes to that waiter (step 5). A task stopped while it
    /// waits unwinds from here, taking no permit, as from [`acquire`](Semaphore::acquire).
    ///
    /// ```
    /// use std::time::Duration;
    /// let sem = bobine::sync::Semaphore::new(1);
    /// assert!(sem.acquire_timeout(Duration::from_millis(10)));
    /// assert!(!sem.acquire_timeout(Duration::from_millis(10)), "none left");
    /// assert_eq!(sem.available(), 0);
    /// ```
    #[track_caller]
    pub fn acquire_timeout(&self, timeout: Duration) -> bool {
        // A deadline past what `Instant` can hold is no deadline.
        let deadline = Instant::now().checked_add(timeout);
        self.acquire_until(deadline, "Semaphore::acquire_timeout")
    }

    /// Steps 1, 3, 4 and 5 for a waiter that gives up at `deadline` (`None`: never).
    #[track_caller]
    fn acquire_until(&self, deadline: Option<Instant>, reason: &'static str) -> bool {
        // When we first queued (read outside the spin lock), and whether we were nudged.
        let since: Cell<Option<Instant>> = Cell::new(None);
        let mut nudged = false;
        loop {
            let now = (nudged || deadline.is_some()).then(Instant::now);
            let starving = nudged
                && since
                    .get()
                    .zip(now)
                    .is_some_and(|(t, now)| now - t > STARVATION_BOUND);
            let expired = deadline.zip(now).is_some_and(|(d, now)| now >= d);
            let mut state = self.state.lock();
            if nudged {
                state.woken -= 1;
            }
            if state.permits > 0 && !state.handoff {
                state.permits -= 1;
                return true;
            }
            if expired {
                // Step 5: no permit is free, so a nudge we counted out leaves none idle; the
                // nudges still owed go out all the same.
                self.nudge(state);
                return false;
            }
            if starving {
                // No permit is free: hand-off mode leaves none idle.
                state.handoff = true;
                #[cfg(test)]
                {
                    state.handoffs += 1;
                }
            }
            let front = std::mem::replace(&mut nudged, false);
            let woken = WaitIn::new(
                &self.state,
                |s: &mut SemState| &mut s.queue,
                Wait::hand_over(reason).until(deadline),
            )
            .front(front)
            .after_queued(|| {
                if since.get().is_none() {
                    since.set(Some(Instant::now()));
                }
            })
            .withdraw(|s: &mut SemState| {
                // Step 5: the last waiter gone, hand-off mode has nobody to serve.
                if s.queue.is_empty() {
                    s.handoff = false;
                }
            })
            .pass_on(|how| match how {
                // A permit handed to a waiter that unwinds instead goes back (to the next
                // waiter); at the maximum it merges with the permits there.
                Woken::Notified => drop(self.try_release()),
                // Its nudge goes to the next waiter, if a permit is free.
                _ => {
                    let mut state = self.state.lock();
                    state.woken -= 1;
                    self.nudge(state);
                }
            })
            .park(state);
            match woken {
                Woken::Notified => {
                    // Handed a permit (hand-off mode): back to normal mode if we waited less
                    // than the bound or nobody is queued behind us (no permit is free in
                    // hand-off mode, so there is nobody to nudge).
                    let short = since.get().is_some_and(|t| t.elapsed() < STARVATION_BOUND);
                    let mut state = self.state.lock();
                    if short || state.queue.is_empty() {
                        state.handoff = false;
                    }
                    return true;
                }
                Woken::Nudged => nudged = true,
                // Out of the queue by ourselves, chosen by no waker: nothing to give back.
                Woken::TimedOut => return false,
                // A hand-over wait ends otherwise only by unwinding; try again all the same.
                Woken::Interrupted => {}
            }
        }
    }

    /// Takes a permit if one is free (barging past queued waiters, except in hand-off mode);
    /// never blocks.
    pub fn try_acquire(&self) -> bool {
        let mut state = self.state.lock();
        if state.permits > 0 && !state.handoff {
            state.permits -= 1;
            true
        } else {
            false
        }
    }

    /// Gives a permit back, and wakes the oldest waiter to compete for it (or, in hand-off
    /// mode, hands it to the oldest waiter).
    ///
    /// # Panics
    ///
    /// If the count would overflow `usize`.
    pub fn release(&self) {
        if self.try_release().is_err() {
            panic!("Semaphore::release: permit count overflow");
        }
    }

    /// Gives a permit back (step 2); fails (changing nothing) if the semaphore already holds
    /// its maximum.
    pub(crate) fn try_release(&self) -> Result<(), Full> {
        let mut state = self.state.lock();
        while state.handoff {
            match state.queue.pop_front() {
                Some(next) => {
                    drop(state);
                    // A waiter whose task the shutdown abandoned passes the permit on.
                    if next.hand_over() {
                        return Ok(());
                    }
                    state = self.state.lock();
                }
                None => state.handoff = false,
            }
        }
        if state.permits >= state.max {
            return Err(Full);
        }
        state.permits += 1;
        self.nudge(state);
        Ok(())
    }

    /// Step 2's nudges: wakes queued waiters, oldest first, while fewer are on their way than
    /// permits are free; each wake-up is made with the spin lock released (waking a task of
    /// another domain may write its eventfd).
    fn nudge<'a>(&'a self, mut state: SpinGuard<'a, SemState>) {
        while state.woken < state.permits {
            let Some(next) = state.queue.pop_front_nudge() else {
                return;
            };
            state.woken += 1;
            drop(state);
            // A waiter whose task the shutdown abandoned never comes back: count it out.
            let abandoned = !next.hand_over();
            state = self.state.lock();
            if abandoned {
                state.woken -= 1;
            }
        }
    }

    /// Takes a permit as [`acquire`](Semaphore::acquire) does, and returns it as a guard
    /// that gives it back when dropped.
    ///
    /// ```
    /// use std::sync::Arc;
    /// bobine::run(|| {
    ///     let sem = Arc::new(bobine::sync::Semaphore::new(1));
    ///     let held = sem.permit();
    ///     let waiter = {
    ///         let sem = sem.clone();
    ///         bobine::thread::spawn(move || drop(sem.permit()))
    ///     };
    ///     drop(held); // the waiter gets it
    ///     waiter.join().unwrap();
    ///     assert_eq!(sem.available(), 1);
    /// });
    /// ```
    #[track_caller]
    pub fn permit(&self) -> SemaphorePermit<'_> {
        self.acquire();
        SemaphorePermit { sem: self }
    }

    /// Takes a permit as [`try_acquire`](Semaphore::try_acquire) does (never blocking), as a
    /// guard; `None` if none is free.
    pub fn try_permit(&self) -> Option<SemaphorePermit<'_>> {
        self.try_acquire().then(|| SemaphorePermit { sem: self })
    }

    /// Takes a permit as [`acquire_timeout`](Semaphore::acquire_timeout) does, as a guard;
    /// `None` if `timeout` passed first (nothing was taken).
    #[track_caller]
    pub fn permit_timeout(&self, timeout: Duration) -> Option<SemaphorePermit<'_>> {
        self.acquire_timeout(timeout)
            .then(|| SemaphorePermit { sem: self })
    }

    /// The free permits now.
    pub fn available(&self) -> usize {
        self.state.lock().permits
    }
}

/// A permit taken from a [`Semaphore`], given back when dropped.
///
/// Made by [`Semaphore::permit`], [`Semaphore::try_permit`] and
/// [`Semaphore::permit_timeout`]. Dropping it is [`Semaphore::release`] (waking a waiter to
/// take the permit); [`SemaphorePermit::forget`] keeps the permit taken instead.
///
/// ```
/// let sem = bobine::sync::Semaphore::new(1);
/// {
///     let _permit = sem.permit();
///     assert_eq!(sem.available(), 0);
///     assert!(sem.try_permit().is_none());
/// }
/// assert_eq!(sem.available(), 1, "given back on drop");
/// ```
#[must_use = "a permit is given back at once if the guard is not kept"]
pub struct SemaphorePermit<'a> {
    sem: &'a Semaphore,
}

impl<'a> SemaphorePermit<'a> {
    /// Keeps the permit taken: the guard is dropped without giving it back, as if
    /// [`Semaphore::acquire`] had taken it (a later [`Semaphore::release`] may return it).
    ///
    /// ```
    /// let sem = bobine::sync::Semaphore::new(2);
    /// sem.permit().forget();
    /// assert_eq!(sem.available(), 1);
    /// ```
    pub fn forget(self) {
        std::mem::forget(self);
    }

    /// The semaphore this permit was taken from.
    pub fn semaphore(&self) -> &'a Semaphore {
        self.sem
    }
}

impl Drop for SemaphorePermit<'_> {
    fn drop(&mut self) {
        // A permit handed back to a semaphore already at its maximum (only a face that sets
        // one, and released past it by hand) merges with the permits there: a destructor must
        // not panic.
        drop(self.sem.try_release());
    }
}

impl fmt::Debug for SemaphorePermit<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SemaphorePermit")
            .field("semaphore", self.sem)
            .finish()
    }
}

impl fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Semaphore")
            .field("available", &self.available())
            .finish()
    }
}
