//! `Semaphore` (counting, FIFO).
//!
//! It keeps its count and its wait list under one spin lock. A released permit goes straight to
//! the oldest waiter (hand-off), so a newcomer never overtakes a queued task.

use crate::sched::waitqueue::{WaitList, Woken, wait_in};
use crate::util::SpinLock;

struct SemState {
    permits: usize,
    queue: WaitList,
}

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
        Semaphore {
            state: SpinLock::new(SemState {
                permits,
                queue: WaitList::new(),
            }),
        }
    }

    /// Takes a permit, parking until one is free (oldest waiter first).
    ///
    /// # Panics
    ///
    /// If the task is unwound while it waits (its runtime is ending).
    #[track_caller]
    pub fn acquire(&self) {
        let mut state = self.state.lock();
        if state.permits > 0 && state.queue.is_empty() {
            state.permits -= 1;
            return;
        }
        let woken = wait_in(
            &self.state,
            state,
            |s| &mut s.queue,
            0,
            "Semaphore::acquire",
            None,
            || (),
            || self.release(),
        );
        if woken != Woken::Notified {
            crate::sched::interrupted_wait("Semaphore::acquire");
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
        let mut state = self.state.lock();
        match state.queue.pop_front() {
            Some(next) => {
                drop(state);
                next.unpark();
            }
            None => {
                state.permits = state
                    .permits
                    .checked_add(1)
                    .expect("Semaphore::release: permit count overflow");
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
