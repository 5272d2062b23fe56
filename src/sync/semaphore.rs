//! `Semaphore` (counting, FIFO).
//!
//! It keeps its count and its wait list under one spin lock. A released permit goes straight to
//! the oldest waiter (hand-off), so a newcomer never overtakes a queued task.

use crate::sched::park::Wait;
use crate::sched::waitqueue::{WaitIn, WaitList, Woken};
use crate::util::SpinLock;

struct SemState {
    permits: usize,
    /// The most permits the semaphore may hold (`usize::MAX` unless a face sets one).
    max: usize,
    queue: WaitList,
}

/// A release that would take a semaphore past its maximum.
#[derive(Debug)]
pub(crate) struct Full;

/// A counting semaphore whose `acquire` parks the task while no permit is free.
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
                queue: WaitList::new(),
            }),
        }
    }

    /// Takes a permit, parking until one is free (oldest waiter first). A task stopped while
    /// it waits unwinds from here (a permit handed to it meanwhile goes to the next waiter).
    #[track_caller]
    pub fn acquire(&self) {
        loop {
            let mut state = self.state.lock();
            if state.permits > 0 && state.queue.is_empty() {
                state.permits -= 1;
                return;
            }
            let woken = WaitIn::new(
                &self.state,
                |s: &mut SemState| &mut s.queue,
                Wait::hand_over("Semaphore::acquire"),
            )
            // A permit handed to a waiter that unwinds instead goes back (to the next waiter);
            // at the maximum it merges with the permits there.
            .pass_on(|_| drop(self.try_release()))
            .park(state);
            // A permit is handed over; any other end of the wait means trying again.
            if woken == Woken::Notified {
                return;
            }
        }
    }

    /// Takes a permit if one is free and nobody is queued; never blocks.
    pub fn try_acquire(&self) -> bool {
        let mut state = self.state.lock();
        if state.permits > 0 && state.queue.is_empty() {
            state.permits -= 1;
            true
        } else {
            false
        }
    }

    /// Gives a permit back: to the oldest waiter if there is one.
    ///
    /// # Panics
    ///
    /// If the count would overflow `usize`.
    pub fn release(&self) {
        if self.try_release().is_err() {
            panic!("Semaphore::release: permit count overflow");
        }
    }

    /// Gives a permit back, to the oldest waiter if there is one; fails (changing nothing) if
    /// the semaphore already holds its maximum.
    pub(crate) fn try_release(&self) -> Result<(), Full> {
        loop {
            let mut state = self.state.lock();
            match state.queue.pop_front() {
                Some(next) => {
                    drop(state);
                    // A waiter whose task the shutdown abandoned passes the permit on.
                    if next.hand_over() {
                        return Ok(());
                    }
                }
                None if state.permits >= state.max => return Err(Full),
                None => {
                    state.permits += 1;
                    return Ok(());
                }
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
