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
//! | task -> scheduler    | return               | my body ended; take the stack back        |
//!
//! Panics never cross a switch: the body is wrapped by [`catch_at_root`], which turns a panic
//! into the task's outcome. The one exception is corosensei's forced unwind (used when a
//! suspended fiber is dropped): its private payload must reach corosensei's own catch at the
//! coroutine root, so `catch_at_root` re-raises anything it catches while the task is being
//! force-unwound.

use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};

use corosensei::{Coroutine, CoroutineResult, Yielder};

use crate::stack::Slot;

/// Why a task gave the CPU back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Suspend {
    /// Still runnable: requeue at the back.
    Yield,
    /// Wants to sleep until unparked; the scheduler checks the park word after the switch.
    Park,
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

    /// Unwinds a suspended fiber's stack (destructors run) and gives back its stack.
    ///
    /// The caller must have told the fiber's [`catch_at_root`] that a forced unwind is under
    /// way, or the unwind would be taken for a panic of the task.
    pub(crate) fn unwind(mut self) -> Slot {
        self.co.force_unwind();
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

/// Runs a task body, turning a panic into an outcome; a forced unwind (when `forcing` is set)
/// passes through untouched.
pub(crate) fn catch_at_root<R>(
    forcing: &Cell<bool>,
    f: impl FnOnce() -> R,
) -> std::thread::Result<R> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Err(payload) if forcing.get() => resume_unwind(payload),
        outcome => outcome,
    }
}
