//! The scheduler: one loop per domain, the run queue, cross-thread wake-ups, park/unpark,
//! spawning, and runtime start and stop.
//!
//! Glossary:
//! - **domain**: one OS thread running one scheduler loop ([`domain::Local`]), with its own run
//!   queue, timers, stack pool and epoll instance. Its cross-thread face is
//!   [`domain::DomainShared`] (inbox, sleeping flag, eventfd, the thieves' end of its deque of
//!   never-started tasks).
//! - **runtime**: a set of domains started by `run` (or the global runtime used by `spawn` outside
//!   any runtime) sharing ids, the stack arena and the shutdown protocol ([`runtime`]).
//! - **task**: see [`task`]. A task runs on one domain from its first run to its end. Besides
//!   its park word it carries a wake-up token ([`park::token`], behind `thread::park`) and its
//!   local values ([`locals`], behind `task_local!`).
//! - **park**: a task (or plain thread) waiting for one wake-up ([`park`]); every blocking call
//!   of every face ends in one, usually through the wait queue ([`waitqueue`]).
//! - **stop**: a request that a task end early, by unwinding from its park point (cancellation,
//!   or its runtime ending: [`park::stop`], [`shutdown`]).
//! - **watch**: a subscription to a signal ([`signals`]); its callback runs on the process's
//!   signal dispatcher thread, never in signal context.
//!
//! ## Why these files are one unit
//!
//! The kernel is everything that owns a task's life: the task itself ([`task`]), how it waits
//! ([`park`], [`waitqueue`]), where it runs ([`domain`]: run queue, inbox, registry), what wakes
//! it ([`timers`], [`reactor`], [`signals`]), how runtimes start and end ([`runtime`],
//! [`shutdown`]), and how they are watched from outside ([`monitor`]: stalls, deadlocks, long
//! shutdowns; [`inspect`]: the task dump).
//! These files refer to each other in a circle, on purpose: a domain owns its timers and its
//! epoll and runs tasks; a task parks through its domain; a park registers timers; the reactor
//! wakes parks. Cutting the circle would mean callbacks between layers that are really one
//! state machine. The circle stays inside this folder: the faces above (`thread`, `sync`,
//! `event`, `net`, `io`, `time`, `ocaml`) use the kernel and are never used by it, and the
//! kernel's other parts (`stack`, `switch`, `util`) know nothing of the scheduler.
//!
//! This module must not map memory or switch stacks itself: it asks `stack` and `switch`. Only
//! [`reactor`] calls epoll and `poll(2)`.

pub(crate) mod domain;
pub(crate) mod inspect;
pub(crate) mod locals;
pub(crate) mod monitor;
pub(crate) mod park;
pub(crate) mod perturb;
pub(crate) mod reactor;
pub(crate) mod runtime;
pub(crate) mod shutdown;
pub(crate) mod signals;
pub(crate) mod task;
pub(crate) mod timers;
pub(crate) mod waitqueue;

use std::cell::Cell;
use std::ptr::NonNull;
use std::sync::Arc;

use crate::sched::task::Task;
use crate::switch::Suspend;
use domain::Local;
use park::stop::Unwinding;

thread_local! {
    /// The domain this thread runs, if it is a domain thread.
    static LOCAL: Cell<*const Local> = const { Cell::new(std::ptr::null()) };
    /// The task running on this thread right now, if any.
    static CURRENT: Cell<*const Task> = const { Cell::new(std::ptr::null()) };
    /// Unwinds left in flight on this OS thread by tasks abandoned in the middle of one: the
    /// thread's panic count never comes down from them (see [`task_unwinding`]).
    static LEAKED_UNWINDS: Cell<usize> = const { Cell::new(0) };
}

/// The running task, if the caller is one.
pub(crate) fn current_task() -> Option<Arc<Task>> {
    let p = CURRENT.with(|c| c.get());
    if p.is_null() {
        return None;
    }
    // SAFETY: CURRENT points at a task kept alive by its domain's registry while it runs, and
    // it came from an `Arc<Task>`; we add the reference we hand out.
    unsafe {
        Arc::increment_strong_count(p);
        Some(Arc::from_raw(p))
    }
}

/// The running task, as a raw pointer (null outside a task). Valid while that task runs.
#[inline]
pub(crate) fn current_ptr() -> *const Task {
    CURRENT.with(|c| c.get())
}

/// Calls `f` with the running task, without touching its reference count.
#[inline]
pub(crate) fn with_current<R>(f: impl FnOnce(&Task) -> R) -> Option<R> {
    let p = CURRENT.with(|c| c.get());
    if p.is_null() {
        None
    } else {
        // SAFETY: see `current_task`.
        Some(f(unsafe { &*p }))
    }
}

/// The overflow-report data of the running task (for the stack overflow signal handler).
pub(crate) fn running_overflow_info() -> *const crate::stack::OverflowInfo {
    let p = CURRENT.with(|c| c.get());
    if p.is_null() {
        std::ptr::null()
    } else {
        // SAFETY: see `current_task`; only a field address is computed.
        unsafe { &raw const (*p).overflow }
    }
}

#[inline]
fn set_current(t: *const Task) {
    CURRENT.with(|c| c.set(t));
}

/// Whether `task`, the task running on this thread, is unwinding (from a panic, or from a
/// stop), as far as can be known (see `park::stop`).
///
/// std keeps one panic count per OS thread, and a task may switch out in the middle of an
/// unwind (a destructor that blocks): the count then stays raised while the domain runs other
/// tasks. So the count answers for the task only while no other task of this thread is
/// switched out mid-unwind (the domain counts those, and those that may be; abandoned ones stay
/// counted for the thread); otherwise the answer is `Unsure`.
pub(crate) fn task_unwinding(task: &Task) -> Unwinding {
    if task.draining.get() {
        return Unwinding::Yes;
    }
    if !std::thread::panicking() {
        return Unwinding::No;
    }
    let others = with_local(|l| l.parked_unwinding()) + LEAKED_UNWINDS.with(Cell::get);
    if others == 0 {
        Unwinding::Yes
    } else {
        Unwinding::Unsure
    }
}

/// A task abandoned in the middle of an unwind leaves that unwind in flight on this thread.
pub(crate) fn leak_unwind() {
    LEAKED_UNWINDS.with(|n| n.set(n.get() + 1));
}

/// Whether the caller is unwinding from a panic, as poisoning needs it: for a task, whether it
/// is certainly unwinding from a panic (not from the runtime's stop: a task stopped while it
/// holds a lock did not break the lock's data; and not when it cannot be told, see
/// [`task_unwinding`]); outside a task, std's answer, unless a task abandoned mid-unwind on
/// this thread keeps that answer raised for good (then it cannot be told either).
#[inline]
pub(crate) fn panicking() -> bool {
    std::thread::panicking() && panicking_slow()
}

#[cold]
fn panicking_slow() -> bool {
    with_current(|t| task_unwinding(t) == Unwinding::Yes && !t.stop_unwinding.get())
        .unwrap_or_else(|| LEAKED_UNWINDS.with(Cell::get) == 0)
}

/// Whether spinning on a held lock could see it released without holding anyone up: true on a
/// plain OS thread, or on a domain of a runtime with other domains (the holder may be running
/// there) that has nothing else to run (no ready task, no wake-up in its inbox). On a lone
/// domain the holder cannot run while we spin; on a domain with ready tasks the holder may be
/// one of them, and spinning would only delay them: park at once.
pub(crate) fn spinning_may_help() -> bool {
    let p = LOCAL.with(|l| l.get());
    if p.is_null() {
        return true;
    }
    // SAFETY: as in `with_local`.
    let local = unsafe { &*p };
    local.rt.domains.len() > 1 && !local.has_ready_work()
}

/// The address of this thread's domain, to compare with `Unparker::domain_addr`; 0 on a
/// thread that is not a domain.
#[inline]
pub(crate) fn current_domain_addr() -> usize {
    let p = LOCAL.with(|l| l.get());
    if p.is_null() {
        return 0;
    }
    // SAFETY: as in `with_local`.
    Arc::as_ptr(&unsafe { &*p }.shared) as usize
}

/// Whether this thread runs `domain` and that domain has not shut down. Costs no reference
/// count: a caller holding a `Weak` compares pointers (the `Weak` keeps the allocation, so an
/// equal pointer is that very domain, alive since this thread runs it).
pub(crate) fn runs_live_domain(domain: *const domain::DomainShared) -> bool {
    let p = LOCAL.with(|l| l.get());
    if p.is_null() {
        return false;
    }
    // SAFETY: as in `with_local`.
    let shared = &unsafe { &*p }.shared;
    std::ptr::eq(Arc::as_ptr(shared), domain)
        && !shared.closed.load(std::sync::atomic::Ordering::Acquire)
}

/// The index of the domain this thread runs (0 is where `run` started), and how many domains
/// its runtime has; `None` on a thread that is not a domain.
pub(crate) fn domain_index() -> Option<(usize, usize)> {
    let p = LOCAL.with(|l| l.get());
    (!p.is_null()).then(|| {
        // SAFETY: as in `with_local`.
        let local = unsafe { &*p };
        (local.shared.index, local.rt.domains.len())
    })
}

/// Whether this thread is a domain thread.
pub(crate) fn on_domain() -> bool {
    !LOCAL.with(|l| l.get()).is_null()
}

/// Calls `f` with this thread's domain. Panics on a thread that is not a domain.
#[inline]
pub(crate) fn with_local<R>(f: impl FnOnce(&Local) -> R) -> R {
    let p = LOCAL.with(|l| l.get());
    assert!(
        !p.is_null(),
        "bobine: this thread is not running a bobine domain"
    );
    // SAFETY: LOCAL is set by the domain thread for exactly as long as its `Local` lives.
    f(unsafe { &*p })
}

/// Asks a woken task's domain to queue it (park protocol, step 5): directly when the caller
/// runs on that domain's thread (no reference counting: the domain owns the task), else
/// through the domain's inbox.
pub(crate) fn schedule(task: &Arc<Task>) {
    let p = LOCAL.with(|l| l.get());
    if !p.is_null() {
        // SAFETY: as in `with_local`.
        let local = unsafe { &*p };
        if Arc::ptr_eq(&local.shared, task.domain()) {
            local.woken(task);
            return;
        }
    }
    task.domain().push(task.clone());
}

/// Drops a reference to a task; if it was the last one and this is a domain thread, the
/// allocation goes to the domain's cache for the next spawn.
pub(crate) fn release(task: Arc<Task>) {
    let p = LOCAL.with(|l| l.get());
    if !p.is_null() && task.is_finished() {
        // SAFETY: as in `with_local`.
        unsafe { &*p }.recycle(task);
    }
}

/// Wakes a task known only by reference (a borrowed unparker) with `wake`, its CAS of step
/// 5, then does what [`schedule`] does; returns what `wake` returned.
///
/// On the task's own domain the task cannot run while we do this, so a reference is enough.
/// Elsewhere, a task woken while still ARMED may run on and end as soon as the CAS lands, so
/// the counted reference the inbox needs is taken before it (and dropped if the CAS fails).
///
/// # Safety
///
/// `task` is alive until `wake` has returned.
pub(crate) unsafe fn schedule_woken_ref(
    task: NonNull<Task>,
    wake: impl FnOnce(&Task) -> bool,
) -> bool {
    // SAFETY: alive until `wake` returns (the caller's contract).
    let t = unsafe { task.as_ref() };
    let p = LOCAL.with(|l| l.get());
    if !p.is_null() {
        // SAFETY: as in `with_local`.
        let local = unsafe { &*p };
        if Arc::ptr_eq(&local.shared, t.domain()) {
            let woke = wake(t);
            if woke {
                local.woken(t);
            }
            return woke;
        }
    }
    let counted = t.arc();
    let woke = wake(t);
    if woke {
        let domain = counted.domain().clone();
        domain.push(counted);
    } else {
        release(counted);
    }
    woke
}

/// Gives the rest of this time slice to the other ready tasks of the domain (FIFO). Outside a
/// task it yields the OS thread.
#[inline]
#[track_caller]
pub(crate) fn yield_now() {
    let site = std::panic::Location::caller();
    let yielded = with_current(|task| {
        task.set_last_site(site);
        // A yield is a stop point: a task asked to stop unwinds here.
        park::stop::at_yield(task);
        task.suspend(Suspend::Yield)
    });
    if yielded.is_none() {
        std::thread::yield_now();
    }
}

/// How many non-blocking operations a task makes between two looks at whether it should
/// give its domain up (see [`preempt_point`]).
pub(crate) const PREEMPT_INTERVAL: u32 = 64;

/// A point where a task that keeps going without blocking (an unbounded `send` in a loop, a
/// `try_recv` loop) lets the other ready tasks of its domain run now and then, as Go's
/// scheduler preempts a goroutine: every [`PREEMPT_INTERVAL`]th call yields if the domain has
/// other work ready. The rest of the calls cost one thread-local read and a counter.
///
/// Faces call it at the end of an operation that did not block, holding no lock of theirs. A
/// yield here is a stop point like any other (`park::stop::at_yield`); it never happens
/// outside a task, nor while the thread is panicking (a destructor that sends while the task
/// unwinds goes on without switching).
///
/// Why 64: a yield costs about as much as a few dozen sends, so yielding every 64 keeps the
/// sender's cost within a few per cent of a plain send, while a receiver on the same domain
/// sees at most 64 messages queued by that sender between two of its turns (the queue's memory
/// stays bounded instead of growing with the sender's loop).
#[inline]
pub(crate) fn preempt_point() {
    let p = current_ptr();
    if p.is_null() {
        return;
    }
    // SAFETY: CURRENT points at the running task, alive while it runs (see `current_task`).
    let task = unsafe { &*p };
    let n = task.ticks.get().wrapping_add(1);
    task.ticks.set(n);
    if n % PREEMPT_INTERVAL == 0 {
        preempt(task);
    }
}

#[cold]
fn preempt(task: &Task) {
    if std::thread::panicking() || !with_local(|l| l.has_ready_work()) {
        return;
    }
    park::stop::at_yield(task);
    task.suspend(Suspend::Yield);
}
