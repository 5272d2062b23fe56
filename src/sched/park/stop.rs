//! Stops: what a park does when its task is asked to stop (cancelled, or dropped because its
//! runtime is ending), decided in one place, [`decide`].
//!
//! A stop is a flag on the task (`Task::cancelled`) plus a wake-up of the park it is in, if
//! that park reacts. The task then unwinds from its park point with a private payload
//! ([`Stop`]), so its destructors run on its own stack, as the task; its root turns the payload
//! into [`TaskCancelled`] (a cancellation, [`cancel`]) or [`TaskDropped`] (its runtime ended)
//! for whoever joins it.
//!
//! ## Is the task unwinding?
//!
//! Raising while a task is already unwinding (a destructor that blocks) would unwind out of a
//! destructor, which aborts the process. So a park raises only when it is *certain* that its
//! task is not unwinding, which std's panic count tells only in part: the count belongs to the
//! OS thread, and a task switched out in the middle of an unwind leaves it raised while its
//! domain runs the others ([`Unwinding`], from `sched::task_unwinding`):
//!
//! - the count is zero: the task is not unwinding (certain);
//! - the count is raised and no other task of the domain is switched out mid-unwind: it is
//!   (certain);
//! - the count is raised and some other task of the domain is switched out mid-unwind: it
//!   cannot be told (a catch or a `resume_unwind` is invisible to the runtime). Such a stop is
//!   *deferred*: the park waits, and its domain's scheduler, between two tasks, wakes it as soon
//!   as it sees the count at zero, which proves that no switched-out task of the domain is
//!   unwinding, this one included (`Local::resolve_deferred`).
//!
//! A stop request that reaches a task already parked is applied on its domain's thread while
//! the task is switched out ([`interrupt_pending`]): by the domain between tasks, or by the
//! caller itself when it runs there. A task that switched out with the thread's panic count at
//! zero (its domain did not count it as switched out mid-unwind) was not unwinding then and has
//! not run since: its park is ended at once, whatever the count is now (the caller may be
//! unwinding: a destructor that cancels and joins a task). One that switched out with the
//! count raised may be in the middle of its own unwind: between tasks, a zero count proves it
//! is not, and its park is ended; otherwise its stop is deferred the same way.
//!
//! ## The table
//!
//! | the stopped task ...                                  | wait kind       | the park ...                                        |
//! |-------------------------------------------------------|-----------------|-----------------------------------------------------|
//! | is not unwinding                                      | hand-over, soft | ends `Interrupted` with the stop pending: the caller settles its wait, then unwinds ([`unwind_if_stopped`]) |
//! | is not unwinding, and caught an earlier [`Stop`]      | hand-over, soft | runtime ending: abandons it, with a report; otherwise as above, after a yield |
//! | is unwinding, or drops the closure it never ran       | hand-over       | waits: the destructor gets its lock, message or join |
//! | is unwinding                                          | soft            | waits; once the shutdown gives soft waits up, ends `Interrupted` (an error for the caller); a task that keeps waiting after [`GIVE_UPS`] is abandoned |
//! | may be unwinding (undecidable now)                    | hand-over, soft | waits, and the stop is deferred (see above)         |
//! | anything                                              | uninterruptible | waits (a scope owner outlives its tasks)            |
//!
//! ## Settling before unwinding
//!
//! A stop that wins the park word may race a hand-over that already happened elsewhere: a
//! waker that unlinked the waiter (a mutex handed over), a partner that popped a channel waiter
//! and moved the value, a sync committed by its partner. The commit point of those is not the
//! park word, so the park does not unwind by itself: it returns `Interrupted` and the waiting
//! primitive settles first. If the hand-over happened, the wait returns normally with what was
//! handed over (the stop stays requested and takes effect at the next park point); if not, the
//! primitive leaves its queue and calls [`unwind_if_stopped`]. Nothing handed over is lost.
//!
//! Delivery ([`interrupt`], [`interrupt_pending`], and the park's steps 3, 4 and 6 around them)
//! is model-checked with loom as a model (`loom_checks::stop`, kept in step with this file).

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::{WaitKind, Wake};
use crate::sched::task::Task;
#[cfg(doc)]
use crate::sched::task::{TaskCancelled, TaskDropped};

/// Soft waits of one task the shutdown gives up before it abandons the task (one that keeps
/// waiting after its waits were given up, in a loop of retries, would spin for ever).
pub(crate) const GIVE_UPS: u8 = 8;

/// The payload of the runtime's stop unwind. Private: only a task's root (through
/// [`catch_at_root`]) knows it, and turns it into [`TaskCancelled`] or [`TaskDropped`].
///
/// Its drop marks the end of the stop's unwind for its task (`Task::stop_unwinding`): at the
/// root, or where the task itself caught it and let it go. A panic caught inside a destructor
/// while the stop unwinds does not end it.
pub(crate) struct Stop;

impl Drop for Stop {
    fn drop(&mut self) {
        crate::sched::with_current(|t| t.stop_unwinding.set(false));
    }
}

/// Whether a caught panic payload is the runtime's stop (which bobine's own catches must let
/// go on: see `event`'s `run_aborts`).
pub(crate) fn is_stop(payload: &(dyn Any + Send)) -> bool {
    payload.is::<Stop>()
}

/// Whether the running task is unwinding, as far as can be known (see the module doc).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Unwinding {
    /// Certainly not.
    No,
    /// Certainly (or it drops the closure of a task stopped before it ran, which waits alike).
    Yes,
    /// Cannot be told now: another task of its domain is switched out mid-unwind.
    Unsure,
}

/// What a park does about a stop request (see the module doc's table).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OnStop {
    /// Keep waiting.
    Wait,
    /// Keep waiting; the domain decides later (see the module doc).
    Defer,
    /// End the park `Interrupted` with the stop pending: the caller settles, then unwinds.
    Raise,
    /// End the wait early, as `Wake::Interrupted` (a soft wait given up at shutdown).
    GiveUp,
    /// The task cannot be stopped cleanly (it caught the runtime's unwind, or keeps waiting
    /// after its waits were given up) while its runtime is ending: it is abandoned.
    Abandon,
}

/// The decision of the module doc's table, for a stopped task that parks (or was woken by the
/// stop) in a wait of `kind`. `unwinding` is the task's state; `ending` whether its runtime is
/// shutting down; `soft_given_up` whether the shutdown gives soft waits up already.
pub(crate) fn decide(
    task: &Task,
    kind: WaitKind,
    unwinding: Unwinding,
    ending: bool,
    soft_given_up: bool,
) -> OnStop {
    use Unwinding::*;
    match (kind, unwinding) {
        (WaitKind::Uninterruptible, _) => OnStop::Wait,
        (WaitKind::Soft, Yes | Unsure) if soft_given_up => {
            if task.given_up.get() >= GIVE_UPS {
                OnStop::Abandon
            } else {
                OnStop::GiveUp
            }
        }
        (_, Yes) => OnStop::Wait,
        (_, Unsure) => OnStop::Defer,
        (_, No) if task.stop_raised.get() && ending => OnStop::Abandon,
        (_, No) => OnStop::Raise,
    }
}

/// A stop point outside any park (a yield): unwinds the running task if it was asked to stop
/// and is certainly not unwinding; a task that caught an earlier stop while its runtime ends is
/// abandoned, as at a park.
#[inline]
pub(crate) fn at_yield(task: &Task) {
    if task.is_cancelled() {
        stop_at_yield(task);
    }
}

#[cold]
fn stop_at_yield(task: &Task) {
    match crate::sched::task_unwinding(task) {
        Unwinding::Yes => return,
        Unwinding::Unsure => {
            // Whether it unwinds cannot be told now: it waits (its stop deferred) until its
            // domain can tell, instead of keeping the domain busy for ever.
            let park = super::Park::new();
            if park.wait_for(&super::Wait::hand_over("yield (stopped)")) == Wake::Interrupted {
                unwind_if_stopped();
            }
            return;
        }
        Unwinding::No => {}
    }
    let (ending, _) = crate::sched::with_local(|l| l.shutdown_state());
    match decide(task, WaitKind::HandOver, Unwinding::No, ending, false) {
        OnStop::Raise => raise(task),
        OnStop::Abandon => abandon(task, "yield", None),
        OnStop::Wait | OnStop::Defer | OnStop::GiveUp => {}
    }
}

/// Called by a waiting primitive once it has settled a wait that ended `Interrupted` (it left
/// its queue: nothing was handed to it): unwinds the task if the park ended because of a stop;
/// returns otherwise (a soft wait the shutdown gave up, for which the caller reports an error).
/// A plain thread is never stopped.
pub(crate) fn unwind_if_stopped() {
    crate::sched::with_current(|task| {
        if task.stop_pending.replace(false) {
            raise(task)
        }
    });
}

/// Whether the running task's last park ended because of a stop that has not unwound it yet
/// (for primitives that must tell a stop from another `Interrupted`).
pub(crate) fn is_pending() -> bool {
    crate::sched::with_current(|t| t.stop_pending.get()).unwrap_or(false)
}

/// Abandons the running task while its runtime ends (see [`OnStop::Abandon`]): reported, then
/// switched out for good.
pub(crate) fn abandon(
    task: &Task,
    what: &str,
    site: Option<&'static std::panic::Location<'static>>,
) -> ! {
    let at = site.map(|l| format!(" at {l}")).unwrap_or_default();
    let why = if task.stop_raised.get() {
        "caught the runtime's unwind (a catch_unwind around a blocking call?) and went on"
    } else {
        "kept waiting after its waits were given up"
    };
    eprintln!(
        "bobine: while its runtime was ending, task {} {why} ({what}{at}); it is abandoned: its \
         remaining code and destructors will not run",
        task.describe()
    );
    task.suspend(crate::switch::Suspend::Abandon);
    unreachable!("an abandoned task is never resumed")
}

/// Unwinds the running task with the runtime's stop payload.
pub(crate) fn raise(task: &Task) -> ! {
    if task.stop_raised.get() {
        // It caught the previous one; let the domain breathe before raising again.
        task.suspend(crate::switch::Suspend::Yield);
    }
    task.stop_raised.set(true);
    task.stop_unwinding.set(true);
    std::panic::resume_unwind(Box::new(Stop))
}

/// Runs a task body, turning a panic into its payload and the runtime's [`Stop`] into
/// [`TaskCancelled`] or [`TaskDropped`]. Every face's task root goes through this.
pub(crate) fn catch_at_root<R>(
    task: &Task,
    f: impl FnOnce() -> R,
) -> Result<R, Box<dyn Any + Send>> {
    let outcome = catch_unwind(AssertUnwindSafe(f));
    // Whatever was unwinding in this task has been caught.
    task.stop_raised.set(false);
    task.stop_unwinding.set(false);
    outcome.map_err(|payload| {
        if payload.is::<Stop>() {
            task.stopped_payload()
        } else {
            payload
        }
    })
}

/// Runs `f` as the running task's last words, after its body has ended: its waits are not
/// cut short by a stop, as a destructor's are not during an unwind (the stop table's
/// "unwinding" rows). A face that cleans up after a task's root caught its unwind (the Miou
/// face cancels the task's children and runs its finalisers there) uses it: doing that work
/// *during* the unwind would leave the domain's panic count raised while the task waits, so
/// the stops of the very tasks it waits for, on the same domain, could not be told apart from
/// an unwind and would be deferred for ever.
pub(crate) fn last_words<R>(f: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            let was = self.0;
            crate::sched::with_current(|t| t.draining.set(was));
        }
    }
    let was = crate::sched::with_current(|t| t.draining.replace(true)).unwrap_or(false);
    let _restore = Restore(was);
    f()
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
/// Cancellation ([`cancel`]) builds on it; the shutdown stops tasks on their own domain,
/// without a request.
pub(crate) fn interrupt(task: &Arc<Task>) -> bool {
    let first = !task.cancelled.swap(true, Ordering::AcqRel);
    crate::sched::perturb::os_point();
    // Acquire (in `is_started`): a started task's domain is visible to `schedule`.
    if task.is_started() {
        crate::sched::schedule(task);
    }
    first
}

/// Cancels `task`: a stop ([`interrupt`]) whose joiners get `TaskCancelled` instead of
/// `TaskDropped`. Returns whether this call stopped it. The caller does not wait: the task
/// unwinds from its park point on its own domain (or, not started yet, never runs).
pub(crate) fn cancel(task: &Arc<Task>) -> bool {
    task.cancel_requested.store(true, Ordering::Release);
    interrupt(task)
}

/// The domain thread's half of [`interrupt`], for a parked task (which is not running): ends
/// its park if that is certainly safe, that is when the task switched out with the thread's
/// panic count at zero, or when the count is zero here, between tasks (then no switched-out
/// task of the domain, this one included, is unwinding); returns whether the stop must be
/// deferred instead (the caller, its domain, registers it). An uninterruptible wait is left
/// alone.
#[inline]
pub(crate) fn interrupt_pending(task: &Task) -> bool {
    if !task.parked.get() || !task.cancelled.load(Ordering::Acquire) {
        return false;
    }
    stop_parked(task)
}

/// [`interrupt_pending`] for a stopped, parked task.
#[cold]
pub(crate) fn stop_parked(task: &Task) -> bool {
    if task.draining.get()
        || task
            .park_site()
            .is_none_or(|site| site.kind == WaitKind::Uninterruptible)
    {
        // Dropping a closure it never ran waits as an unwinding task does.
        return false;
    }
    if task.switched_unwinding.get() && std::thread::panicking() {
        // It switched out with the count raised: maybe in the middle of its own unwind.
        return !task.deferred.get();
    }
    // It switched out with the thread's panic count at zero, so it was not unwinding then, and
    // a parked task has not run since: it is not unwinding, whatever the count is now (raised,
    // maybe, by the running task, which cancels it from a destructor as it unwinds).
    // Only for the wake-up that ends this park: one that lost to a hand-over must not leave
    // the flag for a later park.
    if task.park.wake_current(Wake::Interrupted) {
        task.known_clear.set(true);
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::task::TaskDropped;

    fn blank_task() -> Arc<Task> {
        crate::sched::task::Task::detached_for_tests()
    }

    /// The decision table, row by row.
    #[test]
    fn decision_table() {
        use Unwinding::*;
        let t = blank_task();
        let d = |kind, unwinding, ending, given_up| decide(&t, kind, unwinding, ending, given_up);
        for kind in [WaitKind::HandOver, WaitKind::Soft] {
            assert_eq!(d(kind, No, false, false), OnStop::Raise);
            assert_eq!(d(kind, No, true, true), OnStop::Raise);
            assert_eq!(d(kind, Unsure, true, false), OnStop::Defer);
        }
        assert_eq!(d(WaitKind::HandOver, Yes, true, true), OnStop::Wait);
        assert_eq!(d(WaitKind::HandOver, Unsure, true, true), OnStop::Defer);
        assert_eq!(d(WaitKind::Soft, Yes, true, false), OnStop::Wait);
        assert_eq!(d(WaitKind::Soft, Yes, true, true), OnStop::GiveUp);
        assert_eq!(d(WaitKind::Soft, Unsure, true, true), OnStop::GiveUp);
        for unwinding in [No, Yes, Unsure] {
            assert_eq!(
                d(WaitKind::Uninterruptible, unwinding, true, true),
                OnStop::Wait
            );
        }
        t.given_up.set(GIVE_UPS);
        assert_eq!(d(WaitKind::Soft, Yes, true, true), OnStop::Abandon);
        t.stop_raised.set(true);
        assert_eq!(d(WaitKind::HandOver, No, true, false), OnStop::Abandon);
        assert_eq!(d(WaitKind::HandOver, No, false, false), OnStop::Raise);
        assert_eq!(d(WaitKind::HandOver, Yes, true, false), OnStop::Wait);
    }

    /// The root turns the stop payload into `TaskDropped`, passes other payloads through, and
    /// forgets the stop.
    #[test]
    fn root_maps_the_stop_payload() {
        let t = blank_task();
        let r = catch_at_root(&t, || std::panic::resume_unwind(Box::new(Stop)));
        assert!(r.unwrap_err().is::<TaskDropped>());
        t.stop_raised.set(true);
        t.stop_unwinding.set(true);
        let r = catch_at_root(&t, || std::panic::resume_unwind(Box::new(7u8)));
        assert_eq!(r.unwrap_err().downcast_ref::<u8>(), Some(&7));
        assert!(!t.stop_raised.get() && !t.stop_unwinding.get());
        assert_eq!(catch_at_root(&t, || 5).unwrap(), 5);
    }
}
