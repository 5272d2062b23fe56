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
//! The OCaml faces' `Semaphore.Counting` and `Semaphore.Binary` are this semaphore; OCaml's own
//! are a mutex and a condition, whose `release` wakes a waiter that then competes, as here
//! (two `release`s of a binary semaphore with one waiter leave the value 0 once the waiter is
//! through, in OCaml as here).

use std::cell::Cell;
use std::time::Instant;

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
        // When we first queued (read outside the spin lock), and whether we were nudged.
        let since: Cell<Option<Instant>> = Cell::new(None);
        let mut nudged = false;
        loop {
            let starving = nudged && since.get().is_some_and(|t| t.elapsed() > STARVATION_BOUND);
            let mut state = self.state.lock();
            if nudged {
                state.woken -= 1;
            }
            if state.permits > 0 && !state.handoff {
                state.permits -= 1;
                return;
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
                Wait::hand_over("Semaphore::acquire"),
            )
            .front(front)
            .after_queued(|| {
                if since.get().is_none() {
                    since.set(Some(Instant::now()));
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
                    return;
                }
                Woken::Nudged => nudged = true,
                // A hand-over wait ends otherwise only by unwinding; try again all the same.
                Woken::TimedOut | Woken::Interrupted => {}
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

    /// The free permits now.
    pub fn available(&self) -> usize {
        self.state.lock().permits
    }
}

impl std::fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Semaphore")
            .field("available", &self.available())
            .finish()
    }
}
