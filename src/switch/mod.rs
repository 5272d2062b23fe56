//! Context switching: the only module that uses corosensei.
//!
//! A [`Fiber`] is a coroutine on a pooled [`Slot`] whose body takes no input and reports, each
//! time it gives the CPU back, why it did so ([`Suspend`]). What crosses a switch:
//!
//! | direction            | value                | meaning                                   |
//! |----------------------|----------------------|-------------------------------------------|
//! | scheduler -> task    | `()`                 | "run"                                     |
//! | task -> scheduler    | `Suspend::Yield`     | put me at the back of the run queue       |
//! | task -> scheduler    | `Suspend::Park`      | I parked (see `sched::park`)              |
//! | task -> scheduler    | `Suspend::Abandon`   | never resume me (see `sched::shutdown`)   |
//! | task -> scheduler    | return               | my body ended; take the stack back        |
//!
//! Panics never cross a switch: every task root catches them (`sched::park::stop::catch_at_root`).
//! A suspended fiber is never dropped (that would make corosensei force-unwind it on the
//! scheduler's terms): the runtime stops tasks by unwinding them from their own park points,
//! and a fiber it gives up on is leaked with its stack.

use corosensei::{Coroutine, CoroutineResult, Yielder};

use crate::stack::Slot;

/// Why a task gave the CPU back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Suspend {
    /// Still runnable: requeue at the back.
    Yield,
    /// Wants to sleep until unparked; the scheduler checks the park word after the switch.
    Park,
    /// Must never run again: the scheduler leaks the fiber and its stack where they are.
    Abandon,
}

/// The handle a running fiber uses to switch back to its scheduler.
pub(crate) type FiberYielder = Yielder<(), Suspend>;

/// A task's execution context: a coroutine on a guarded stack.
pub(crate) struct Fiber {
    co: Coroutine<(), Suspend, (), Slot>,
}

impl Fiber {
    /// Prepares `body` to run on `slot`. The closure is written onto the new stack itself, so
    /// creating a fiber allocates nothing.
    ///
    /// # Safety
    ///
    /// Everything `body` borrows must stay valid until the fiber has finished or been dropped.
    pub(crate) unsafe fn new_unchecked(slot: Slot, body: impl FnOnce(&FiberYielder)) -> Fiber {
        // SAFETY: forwarded to our caller.
        let co =
            unsafe { Coroutine::with_stack_unchecked(slot, move |y: &FiberYielder, ()| body(y)) };
        Fiber { co }
    }

    /// Runs the fiber until it suspends (`Some`) or its body returns (`None`).
    #[inline]
    pub(crate) fn resume(&mut self) -> Option<Suspend> {
        match self.co.resume(()) {
            CoroutineResult::Yield(s) => Some(s),
            CoroutineResult::Return(()) => None,
        }
    }

    /// Gives back the stack of a finished fiber for reuse.
    pub(crate) fn into_slot(self) -> Slot {
        self.co.into_stack()
    }
}

/// Switches from the running fiber back to its scheduler.
///
/// # Safety
///
/// `y` must be the yielder of the fiber running on this thread right now.
#[inline]
pub(crate) unsafe fn suspend(y: *const FiberYielder, why: Suspend) {
    // SAFETY: per the contract, `y` points into the running fiber's root frame.
    unsafe { (*y).suspend(why) }
}
