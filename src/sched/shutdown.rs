//! The end of a runtime: when its main task returns, `run` stops every other task, lets each
//! unwind from where it waits (its destructors run on its own stack, as the task), and returns
//! once all have ended. It never aborts, and never hangs on a wait nothing can end: such a
//! wait is reported and given up.
//!
//! ## Protocol
//!
//! 1. Domain 0 sees the main task finished, sets `closing` on the runtime and asks every other
//!    domain to stop its normal loop ([`begin`]).
//! 2. Each domain, in [`take_part`]: adopts the never-started tasks waiting in its inbox, then
//!    stops every task it owns (the stop of `park::stop`: a parked task that reacts is woken and
//!    unwinds from its park point; a never-started one drops its closure when it first runs).
//!    Tasks that arrive later (spawned by a destructor, handed over by another domain, spawned
//!    into a scope from a plain thread) are stopped as they arrive. A never-started task in a
//!    stealable deque is in no registry: it is stopped when a domain takes it out to run it
//!    (`domain`'s "Work stealing", step 4), or, taken by a domain that has not seen the end
//!    yet, runs and is stopped with that domain's other tasks.
//! 3. Each domain runs its loop as usual meanwhile: destructors may block, and do get their
//!    lock, message, join, timer or socket, since the tasks that hold those are being stopped
//!    too and every domain keeps running. A scope owner waits for its tasks (an uninterruptible
//!    wait), so borrowed frames outlive their borrowers.
//! 4. The runtime is done when the tasks that ended (summed over domains) equal the tasks
//!    spawned (`RuntimeShared::all_finished`); the domain that sees it wakes the others.
//! 5. Progress is watched while domains are idle (they wake at least every [`TICK`]): a task
//!    ending, or a parked task being woken, is progress. After [`GRACE`] with no progress and
//!    every domain idle, the runtime moves to stage 1: waits for readiness or time of tasks
//!    that are unwinding are given up (they return an error or early), with a report. After
//!    another quiet [`GRACE`], stage 2: every task still parked is reported (name, what it
//!    waits for, where) and abandoned.
//! 6. An abandoned task never runs again. Its stack stays mapped (frames on it may be linked
//!    into wait queues that outlive the runtime) and its fiber is leaked; it finishes as
//!    `TaskDropped` for its joiners. A task that catches the runtime's unwind and blocks again
//!    is abandoned at once, by the park (see `park::stop`).
//! 7. Each domain then closes (timers, inbox, registrations) and its thread ends; `run` joins
//!    them and drops the runtime.
//!
//! A domain that is busy (a task computing without ever parking) keeps the runtime from being
//! idle, so the stages wait for it: scheduling is cooperative, and nothing can stop such a
//! task.
//!
//! Rejected alternative: dropping suspended fibers, which makes corosensei unwind them on the
//! scheduler's terms. A destructor that blocks then cannot switch (it has nowhere to go), so it
//! had to fail at once, and a lock or join in a destructor aborted the process.

use std::time::{Duration, Instant};

use super::domain::{Local, TaskPtr};
use super::park::{WaitKind, Wake};
use super::runtime::RuntimeShared;
use super::task::Task;
use std::panic::Location;
use std::sync::atomic::Ordering;

/// How often an idle domain looks at the shutdown's progress.
pub(crate) const TICK: Duration = Duration::from_millis(50);
/// How long the shutdown waits with no progress before it gives up on waits (step 5).
pub(crate) const GRACE: Duration = Duration::from_secs(1);

/// What one domain has seen of the shutdown's progress (step 5).
#[derive(Default)]
pub(crate) struct Watch {
    seen_progress: u64,
    quiet_since: Option<Instant>,
    applied_stage: u32,
}

/// Step 1, on domain 0 once the main task has finished.
pub(crate) fn begin(rt: &RuntimeShared) {
    rt.closing.store(true, Ordering::SeqCst);
    for d in &rt.domains[1..] {
        d.request_stop();
    }
}

/// Steps 2-7 for one domain, on its thread.
pub(crate) fn take_part(local: &Local) {
    local.closing.set(true);
    local.drain_inbox();
    local.for_each_task(|t| stop_task(local, t));
    local.run_until(&|| done(local));
    local.close();
}

/// Step 2 for one task of this domain.
fn stop_task(local: &Local, ptr: TaskPtr) {
    // SAFETY: the registry owns the task; no task runs while the domain walks it.
    let task = unsafe { ptr.as_ref() };
    task.cancelled.store(true, Ordering::Release);
    if task.is_started() {
        // The stop's wake-up (`park::stop::interrupt_pending`), and the queueing if it woke.
        local.woken(task);
    }
}

/// The loop's `done` during the shutdown: step 4, and the watch of step 5.
fn done(local: &Local) -> bool {
    let rt = &local.rt;
    if rt.all_finished() {
        for d in &rt.domains {
            if d.index != local.shared.index {
                d.nudge();
            }
        }
        return true;
    }
    watch(local);
    false
}

/// Step 5: applies the stages the runtime reached, and moves to the next one when nothing has
/// happened for [`GRACE`] while every domain is idle.
fn watch(local: &Local) {
    let rt = &local.rt;
    let stage = rt.stage.load(Ordering::Acquire);
    let applied = local.watch.borrow().applied_stage;
    if applied < stage {
        local.watch.borrow_mut().applied_stage = stage;
        for s in applied + 1..=stage {
            apply(local, s);
        }
    }
    let progress = rt.progress.load(Ordering::Relaxed);
    let now = Instant::now();
    let quiet_since = {
        let mut w = local.watch.borrow_mut();
        if w.quiet_since.is_none() || w.seen_progress != progress {
            w.seen_progress = progress;
            w.quiet_since = Some(now);
            return;
        }
        w.quiet_since.expect("set above")
    };
    let me = local.shared.index;
    let idle =
        local.nothing_to_run() && rt.domains.iter().all(|d| d.index == me || d.is_sleeping());
    if idle
        && now.duration_since(quiet_since) >= GRACE
        && rt
            .stage
            .compare_exchange(stage, stage + 1, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    {
        // The next stage needs another quiet grace.
        rt.progressed();
        for d in &rt.domains {
            d.nudge();
        }
    }
}

/// Reports a wait the shutdown gives up (step 5), from the task's park.
pub(crate) fn report_given_up(task: &Task, reason: &str, site: &Location<'static>) {
    eprintln!(
        "bobine: while its runtime was ending, task {} waited in {reason} (at {site}) with \
         nothing happening for {} s; that wait is given up",
        task.describe(),
        GRACE.as_secs()
    );
}

/// Applies stage `stage` to this domain's parked tasks (step 5).
fn apply(local: &Local, stage: u32) {
    // Wake-ups already sent count: a task they woke is not stuck.
    local.drain_inbox();
    local.for_each_task(|ptr| {
        // SAFETY: the registry owns the task; no task runs while the domain walks it.
        let task = unsafe { ptr.as_ref() };
        if !task.parked.get() || !task.park.is_armed() {
            return;
        }
        let Some(site) = task.park_site() else {
            return;
        };
        match stage {
            0 => {}
            1 if site.kind == WaitKind::Soft => {
                // It resumes, and its park gives the wait up (reported there).
                task.park.wake_current(Wake::Interrupted);
                local.woken(task);
            }
            // Stage 2, and again after every further quiet grace: a task woken by an abandon
            // (its join ended) may block again on something nothing will end.
            2.. => {
                eprintln!(
                    "bobine: while its runtime was ending, task {} stayed blocked in {} (at {}) \
                     with nothing left that could end the wait; it is abandoned: its stack stays \
                     allocated and its remaining destructors will not run",
                    task.describe(),
                    site.reason,
                    site.location
                );
                local.abandon(ptr);
            }
            1 => {}
        }
    });
}
