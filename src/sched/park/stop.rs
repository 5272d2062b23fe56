//! Stops: what a park does when its task is asked to stop (cancelled, or dropped because its
//! runtime is ending), decided in one place, [`decide`].
//!
//! A stop is a flag on the task (`Task::cancelled`) plus a wake-up of the park it is in, if
//! that park reacts. The task then unwinds from its park point with a private payload
//! ([`Stop`]), so its destructors run on its own stack, as the task; its root turns the payload
//! into [`TaskDropped`] for whoever joins it.
//!
//! | the stopped task ...                                            | wait kind      | the park ...                                   |
//! |-----------------------------------------------------------------|----------------|------------------------------------------------|
//! | is running normally                                             | hand-over, soft| unwinds it (raises [`Stop`])                    |
//! | caught an earlier [`Stop`] itself and parks again               | hand-over, soft| runtime ending: abandons it, with a report; otherwise raises again, after a yield |
//! | is unwinding (a destructor), or drops the closure it never ran  | hand-over      | waits: the destructor gets its lock, message or join |
//! | is unwinding                                                    | soft           | waits; once the shutdown gives soft waits up, returns `Wake::Interrupted` |
//! | anything                                                        | uninterruptible| waits (a scope owner outlives its tasks)        |
//!
//! Raising while the task is already unwinding would unwind out of a destructor, which aborts
//! the process; that is why an unwinding task waits instead, and why the runtime tracks which
//! task is unwinding (`sched::task_unwinding`): the OS thread's panic count is shared by every
//! task of the domain.
//!
//! A park that would not react when it starts (`Task::park_reacts` false) is not woken by a
//! stop request: its unparker stays valid for the hand-over it waits for.

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::Wake;
use crate::sched::task::{Task, TaskDropped};

/// The payload of the runtime's stop unwind. Private: only a task's root (through
/// [`catch_at_root`]) knows it, and turns it into [`TaskDropped`].
pub(crate) struct Stop;

/// What a park does about a stop request (see the module doc's table).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OnStop {
    /// Keep waiting.
    Wait,
    /// Unwind the task from here.
    Raise,
    /// End the wait early, as `Wake::Interrupted` (a soft wait given up at shutdown).
    GiveUp,
    /// The task caught the runtime's unwind while its runtime is ending: it is abandoned.
    Abandon,
}

/// The decision of the module doc's table, for a stopped task that parks (or was woken by the
/// stop) in a wait of `kind`. `unwinding` is whether the task was unwinding (or draining an
/// unstarted closure) when the park started; `ending` whether its runtime is shutting down;
/// `soft_given_up` whether the shutdown gives soft waits up already.
pub(crate) fn decide(
    task: &Task,
    kind: super::WaitKind,
    unwinding: bool,
    ending: bool,
    soft_given_up: bool,
) -> OnStop {
    use super::WaitKind::*;
    match (kind, unwinding) {
        (Uninterruptible, _) => OnStop::Wait,
        (Soft, true) if soft_given_up => OnStop::GiveUp,
        (_, true) => OnStop::Wait,
        (_, false) if task.stop_raised.get() && ending => OnStop::Abandon,
        (_, false) => OnStop::Raise,
    }
}

/// A stop point outside any park (a yield): unwinds the running task if it was asked to stop
/// and is not unwinding already; a task that caught an earlier stop while its runtime ends is
/// abandoned, as at a park.
pub(crate) fn at_yield(task: &Task) {
    if !task.is_cancelled() || task.draining.get() || crate::sched::task_unwinding(task) {
        return;
    }
    let (ending, _) = crate::sched::with_local(|l| l.shutdown_state());
    match decide(task, super::WaitKind::HandOver, false, ending, false) {
        OnStop::Raise => raise(task),
        OnStop::Abandon => abandon_swallower(task, "thread::yield_now", None),
        OnStop::Wait | OnStop::GiveUp => {}
    }
}

/// Abandons the running task, which caught the runtime's stop unwind and went on to block (or
/// yield) again while its runtime ends: reported, then switched out for good.
pub(crate) fn abandon_swallower(
    task: &Task,
    reason: &str,
    site: Option<&'static std::panic::Location<'static>>,
) -> ! {
    let at = site.map(|l| format!(" at {l}")).unwrap_or_default();
    eprintln!(
        "bobine: task {} caught the runtime's unwind (a catch_unwind around a blocking call?) \
         and went on to {reason}{at} while its runtime was ending; it is abandoned: its \
         remaining code and destructors will not run",
        task.describe()
    );
    task.suspend(crate::switch::Suspend::Abandon);
    unreachable!("an abandoned task is never resumed")
}

/// Unwinds the running task with the runtime's stop payload.
pub(crate) fn raise(task: &Task) -> ! {
    task.stop_raised.set(true);
    task.unwinds.set(task.unwinds.get() + 1);
    std::panic::resume_unwind(Box::new(Stop))
}

/// Runs a task body, turning a panic into its payload and the runtime's [`Stop`] into
/// [`TaskDropped`]. Every face's task root goes through this.
pub(crate) fn catch_at_root<R>(
    task: &Task,
    f: impl FnOnce() -> R,
) -> Result<R, Box<dyn Any + Send>> {
    let outcome = catch_unwind(AssertUnwindSafe(f));
    // Whatever was unwinding in this task has been caught.
    task.unwinds.set(0);
    task.stop_raised.set(false);
    outcome.map_err(|payload| {
        if payload.is::<Stop>() {
            Box::new(TaskDropped) as Box<dyn Any + Send>
        } else {
            payload
        }
    })
}

/// Asks `task` to stop: its park in progress ends if it reacts (see the module doc), and every
/// later park decides by the table. Returns whether this call stopped it (false if it was
/// already). A task that has not started sees the flag when it first runs, and drops its
/// closure instead of calling it.
///
/// The wake itself happens on the task's domain thread, between two of its tasks: directly
/// when the caller runs there, else when the domain drains the request from its inbox. There
/// the task is not running, so its flags and its park word are read in program order with its
/// own writes: a park armed just before the request is woken, and a park armed after it sees
/// the flag (no store-buffering race between two threads).
///
/// This is the hook cancellation (`JoinHandle::cancel`, the Miou face) builds on; until then
/// only the tests call it (the shutdown stops tasks on their own domain, without a request).
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) fn interrupt(task: &Arc<Task>) -> bool {
    let first = !task.cancelled.swap(true, Ordering::AcqRel);
    // Acquire (in `is_started`): a started task's domain is visible to `schedule`.
    if task.is_started() {
        crate::sched::schedule(task);
    }
    first
}

/// The domain thread's half of [`interrupt`]: ends the park of a stopped task if that park
/// reacts to stops.
#[inline]
pub(crate) fn interrupt_pending(task: &Task) {
    if task.park_reacts.get() && task.cancelled.load(Ordering::Acquire) {
        task.park.wake_current(Wake::Interrupted);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::park::WaitKind;

    fn blank_task() -> Arc<Task> {
        crate::sched::task::Task::detached_for_tests()
    }

    /// The decision table, row by row.
    #[test]
    fn decision_table() {
        let t = blank_task();
        let d = |kind, unwinding, ending, given_up| decide(&t, kind, unwinding, ending, given_up);
        for kind in [WaitKind::HandOver, WaitKind::Soft] {
            assert_eq!(d(kind, false, false, false), OnStop::Raise);
            assert_eq!(d(kind, false, true, true), OnStop::Raise);
        }
        assert_eq!(d(WaitKind::HandOver, true, true, true), OnStop::Wait);
        assert_eq!(d(WaitKind::Soft, true, true, false), OnStop::Wait);
        assert_eq!(d(WaitKind::Soft, true, true, true), OnStop::GiveUp);
        for (unwinding, ending) in [(false, false), (true, true), (false, true)] {
            assert_eq!(
                d(WaitKind::Uninterruptible, unwinding, ending, true),
                OnStop::Wait
            );
        }
        t.stop_raised.set(true);
        assert_eq!(d(WaitKind::HandOver, false, true, false), OnStop::Abandon);
        assert_eq!(d(WaitKind::HandOver, false, false, false), OnStop::Raise);
        assert_eq!(d(WaitKind::HandOver, true, true, false), OnStop::Wait);
    }

    /// The root turns the stop payload into `TaskDropped`, passes other payloads through, and
    /// forgets what was unwinding.
    #[test]
    fn root_maps_the_stop_payload() {
        let t = blank_task();
        let r = catch_at_root(&t, || raise(&t));
        assert!(r.unwrap_err().is::<TaskDropped>());
        assert!(!t.stop_raised.get());
        assert_eq!(t.unwinds.get(), 0);
        let r = catch_at_root(&t, || std::panic::resume_unwind(Box::new(7u8)));
        assert_eq!(r.unwrap_err().downcast_ref::<u8>(), Some(&7));
        assert_eq!(catch_at_root(&t, || 5).unwrap(), 5);
    }
}
