//! The wake-up token: one permit per waiter, with std's `thread::park` semantics, on top of
//! the park word.
//!
//! A token is *available* or not. [`Token::unpark`] makes it available (idempotent: never
//! more than one); [`Token::park`] takes it at once if available, else waits until it is (or
//! until a deadline). It is a separate thing from the waiter's park word: the word says
//! whether *some* park of the waiter is pending, and every blocking call (a lock, a join, a
//! sleep) arms it; the token belongs to its owner's user code alone. So an internal wake-up
//! (a lock handed over, a timer) never takes or fakes the token, and `unpark` never ends an
//! unrelated wait: it only ends the park that [`Token::park`] armed, whose generation an
//! internal wait that came later has already retired.
//!
//! ## State word
//!
//! | state    | meaning                                              | left by                          |
//! |----------|------------------------------------------------------|----------------------------------|
//! | EMPTY    | no token, the owner does not wait for one            | owner -> PARKED; unpark -> NOTIFIED |
//! | NOTIFIED | the token is available                               | owner -> EMPTY (takes it)        |
//! | PARKED   | no token, the owner waits; its unparker is in `waiter` | unpark -> NOTIFIED (and wakes it); owner -> EMPTY (timed out) |
//!
//! ## Protocol
//!
//! 1. The owner takes the token if it is there: CAS NOTIFIED -> EMPTY; done.
//! 2. It arms a park and stores its unparker in `waiter`.
//! 3. It CASes EMPTY -> PARKED. If that fails an unpark came after step 1 (the state is
//!    NOTIFIED): it clears `waiter`, drops the park (retiring it) and goes back to step 1.
//! 4. It waits on the park (with the caller's deadline, if any).
//! 5. It swaps the state to EMPTY and clears `waiter`. If the swap saw NOTIFIED, it took the
//!    token: done. Otherwise the deadline or a stop ends the call without the token (a timer
//!    that fired before the deadline, its clock being coarse, does not); any other
//!    end (a stale unparker of an earlier round, see below) is no wake-up: back to step 1.
//!
//! An unparker swaps the state to NOTIFIED; if it saw PARKED it takes the unparker out of
//! `waiter` and unparks it. The owner stored that unparker before its CAS of step 3, so the
//! unparker that sees PARKED finds it, unless the owner already left (step 5), in which case
//! the owner saw NOTIFIED and took the token. An unparker that is slow to take `waiter` may
//! find the unparker of the owner's *next* round instead and wake it: that round then finds
//! no token in step 5 and goes back to step 1, so the owner never returns without the token
//! except on a timeout or a stop (no spurious wake-ups).
//!
//! Steps 1-5 and the unparker are model-checked with loom as a model around the real park word
//! (`loom_checks::token`, kept in step with this file): no unpark is lost, and a stale wake of
//! an earlier round is not taken for the token.
//!
//! Rejected alternative: waking the owner through its park word directly (no `waiter` slot).
//! The word is shared with every internal wait, so an `unpark` would end a `Mutex::lock` in
//! progress, and an internal wake-up would look like the token.

use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Instant;

use super::{Park, Unparker, Wait, Wake};
use crate::util::SpinLock;

const EMPTY: u8 = 0;
const NOTIFIED: u8 = 1;
const PARKED: u8 = 2;

/// One waiter's wake-up token (see the module doc). Costs nothing until used: no allocation.
pub(crate) struct Token {
    state: AtomicU8,
    waiter: SpinLock<Option<Unparker>>,
}

impl Token {
    pub(crate) const fn new() -> Token {
        Token {
            state: AtomicU8::new(EMPTY),
            waiter: SpinLock::new(None),
        }
    }

    /// Takes the token, waiting (as `wait` says: its reason and deadline) until it is
    /// available; true if it was taken, false on the deadline. Call it only as the token's
    /// owner (the task or thread it belongs to). A stopped task unwinds from here, unless the
    /// token came first (then the stop takes effect at its next park).
    #[track_caller]
    pub(crate) fn park(&self, wait: &Wait) -> bool {
        loop {
            // Step 1.
            if self
                .state
                .compare_exchange(NOTIFIED, EMPTY, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                return true;
            }
            // Step 2.
            let park = Park::new();
            *self.waiter.lock() = Some(park.unparker());
            // Step 3.
            if self
                .state
                .compare_exchange(EMPTY, PARKED, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
            {
                drop(self.waiter.lock().take());
                continue;
            }
            // Step 4.
            let why = park.wait_for(wait);
            // Step 5.
            let was = self.state.swap(EMPTY, Ordering::Acquire);
            drop(self.waiter.lock().take());
            if was == NOTIFIED {
                return true;
            }
            match why {
                // A timer may fire a little early (its clock is coarse): only the deadline
                // itself ends the wait.
                Wake::TimedOut if wait.deadline.is_some_and(|d| Instant::now() < d) => {}
                Wake::TimedOut => return false,
                Wake::Interrupted => {
                    super::stop::unwind_if_stopped();
                    return false;
                }
                _ => {}
            }
        }
    }

    /// Makes the token available, waking its owner if it waits for it. From any thread.
    pub(crate) fn unpark(&self) {
        if self.state.swap(NOTIFIED, Ordering::AcqRel) == PARKED {
            let waiter = self.waiter.lock().take();
            if let Some(u) = waiter {
                u.unpark();
            }
        }
    }

    /// Drops a stored unparker (a task being recycled: the unparker refers to the task).
    pub(crate) fn clear(&mut self) {
        *self.waiter.get_mut() = None;
        *self.state.get_mut() = EMPTY;
    }
}
