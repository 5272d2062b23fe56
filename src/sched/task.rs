//! Tasks: a fiber plus the state that other threads may see (park word, lifecycle, result,
//! joiners), ids and names.
//!
//! ## Lifecycle
//!
//! | state    | fiber                 | where the task is                                   | may be resumed |
//! |----------|-----------------------|-----------------------------------------------------|----------------|
//! | NEW      | `Some`, not started   | a domain's registry and run queue, an inbox, or a domain's stealable deque; may move to another domain | yes (first run) |
//! | STARTED  | `Some`, started       | its domain's registry, and its run queue when ready  | when ready     |
//! | FINISHED | `None`                | nowhere; only handles (join, `Thread`) keep it alive | no             |
//!
//! Transitions: NEW -> STARTED when a domain first runs it (the domain is fixed from then on:
//! tasks never migrate once started); STARTED -> FINISHED when its body returns, unwinds to its
//! root, or its domain abandons it (see `shutdown`). A task stopped before it ran still starts:
//! its first run drops its closure, as the task, instead of calling it.
//!
//! A finished task's allocation is recycled when its last reference is dropped on a domain
//! thread (its `JoinHandle` after `join`, or the registry for a detached task): the domain
//! keeps a small cache of cleared tasks, so spawning does not allocate once warm.
//!
//! ## Who touches what
//!
//! - `fiber`, `yielder`, `parked`, `slot`, `park_site`, `domain` and the stop state (`deferred`,
//!   `known_clear`, `stop_*`, `switched_unwinding`, `draining`...): only the thread of the domain
//!   that owns the task (for a NEW task: whoever holds it in a queue, which hands it over with
//!   the queue's own synchronisation).
//! - `park`, `cancelled`, `abandoned`: any thread (atomics). `domain` is published by the release store of
//!   STARTED: a thread that sees STARTED (acquire) may read it.
//! - `result`: written once by the task (or by its domain, for a task it dropped) before READY
//!   is published, then taken once: by the joining `JoinHandle`, or by whichever of the task
//!   and a dropped handle comes second (see [`Task::set_outcome`]).
//! - `joiners`: any thread, under its spin lock; see [`Task::finish`] for the lock-free fast path.
//! - `token`: any thread (see `park::token`). `locals`: only the task itself, while it runs
//!   (see `sched::locals`).

use std::any::Any;
use std::cell::{Cell, UnsafeCell};
use std::panic::Location;
use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU8, AtomicU64, Ordering};
use std::task::Waker;
use std::time::Instant;

use crate::sched::domain::DomainShared;
use crate::sched::locals::Locals;
use crate::sched::park::stop::Unwinding;
use crate::sched::park::token::Token;
use crate::sched::park::{ParkWord, Unparker, WaitKind};
use crate::stack::OverflowInfo;
use crate::switch::{Fiber, FiberYielder, Suspend};
use crate::util::SpinLock;

const NEW: u8 = 0;
const STARTED: u8 = 1;
const FINISHED: u8 = 2;

/// `outcome_state`: the outcome is in `result`.
const READY: u8 = 1;
/// `outcome_state`: the `JoinHandle` was dropped without joining.
const DETACHED: u8 = 2;

/// The value a task's body produced, type-erased, or its panic payload.
pub(crate) type Outcome = Result<Box<dyn Any>, Box<dyn Any + Send>>;

/// The process-wide counter behind every [`ThreadId`](crate::thread::ThreadId): tasks of every
/// runtime and plain threads seen by bobine draw from it, so an id names one of them for the
/// whole life of the process, and panic and overflow reports print that same number.
static NEXT_THREAD_ID: AtomicU64 = AtomicU64::new(1);

/// Reserves `n` consecutive thread ids; returns the first.
pub(crate) fn reserve_thread_ids(n: u64) -> u64 {
    NEXT_THREAD_ID.fetch_add(n, Ordering::Relaxed)
}

/// Why and where a task is parked (for shutdown reports, and the task dump to come).
#[derive(Clone, Copy, Debug)]
pub(crate) struct ParkSite {
    pub(crate) reason: &'static str,
    pub(crate) kind: WaitKind,
    pub(crate) location: &'static Location<'static>,
}

/// Payload given to joiners of a task that the runtime dropped before it ended.
#[derive(Debug)]
pub struct TaskDropped;

impl std::fmt::Display for TaskDropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the task was dropped because its runtime ended before it finished")
    }
}

/// Payload given to joiners of a task that was cancelled
/// ([`JoinHandle::cancel`](crate::thread::JoinHandle::cancel)) before it ended.
#[derive(Debug)]
pub struct TaskCancelled;

impl std::fmt::Display for TaskCancelled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the task was cancelled before it finished")
    }
}

/// Per-task data a face attaches to its tasks (the Miou face keeps its task-tree node there).
pub(crate) type FaceData = Arc<dyn Any + Send + Sync>;

/// One waiter for a task's end: a parked waiter, or an async one (a polled `JoinHandle`).
enum Joiner {
    Park(Unparker),
    /// At most one per task: only the task's one `JoinHandle` registers a waker.
    Waker(Waker),
}

impl Joiner {
    /// Wakes the waiter. It runs on the ended task's domain, between two tasks: a user's
    /// `Waker` that panics is reported and the domain goes on (its scheduler must not unwind),
    /// and the other joiners are woken all the same.
    fn wake(self) {
        match self {
            Joiner::Park(u) => {
                u.unpark();
            }
            Joiner::Waker(w) => {
                let woke = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| w.wake()));
                if let Err(payload) = woke {
                    // Its drop may panic too: it is forgotten instead.
                    std::mem::forget(payload);
                    eprintln!(
                        "bobine: the Waker of an awaited JoinHandle panicked when the task \
                         ended; the domain goes on (a waker must not panic)"
                    );
                }
            }
        }
    }
}

pub(crate) struct Task {
    pub(crate) park: ParkWord,
    /// The wake-up token of `thread::park` (apart from `park`: see `park::token`).
    pub(crate) token: Token,
    /// The task's local values (see `sched::locals`); only the task itself touches them.
    pub(crate) locals: Locals,
    /// A stop was requested (cancellation, or the runtime ending): see `park`'s stop table.
    pub(crate) cancelled: AtomicBool,
    /// The stop came from a cancellation (`park::stop::cancel`), not from the runtime ending:
    /// joiners get [`TaskCancelled`] rather than [`TaskDropped`].
    pub(crate) cancel_requested: AtomicBool,
    /// Per-runtime id: the main task is 0, then 1, 2, 3 ... in creation order.
    pub(crate) id: u64,
    /// Process-unique id, shared with plain threads (see [`reserve_thread_ids`]).
    pub(crate) thread_id: u64,
    /// Whether the panic hook reports this task's panics the way std reports a thread's (a face
    /// that reports them its own way, when the task ends, turns this off).
    pub(crate) report_panics: bool,
    /// `spawn_local` tasks never leave the domain that created them.
    pub(crate) pinned: bool,
    pub(crate) overflow: OverflowInfo,
    state: AtomicU8,
    /// Switched out to park and not queued since (park protocol, steps 4 and 6).
    pub(crate) parked: Cell<bool>,
    /// A stop of this parked task waits for its domain to tell that it is not unwinding
    /// (counted in the domain's `deferred`).
    pub(crate) deferred: Cell<bool>,
    /// Set by the domain when it woke a deferred stop: the task is certainly not unwinding.
    pub(crate) known_clear: Cell<bool>,
    /// The last park ended `Interrupted` for a stop: the waiting primitive settles, then
    /// unwinds (`park::stop::unwind_if_stopped`).
    pub(crate) stop_pending: Cell<bool>,
    /// The runtime raised its stop unwind in this task and the task's root has not caught it
    /// yet; a task that parks again (not unwinding) while this is set caught it itself.
    pub(crate) stop_raised: Cell<bool>,
    /// The task's newest unwind is the runtime's stop (not a panic): it does not poison locks.
    pub(crate) stop_unwinding: Cell<bool>,
    /// Switched out while unwinding, or maybe unwinding (counted in its domain's
    /// `parked_unwinding`).
    pub(crate) switched_unwinding: Cell<bool>,
    /// Dropping the closure of a task stopped before it ran: its waits wait, as in unwinding.
    pub(crate) draining: Cell<bool>,
    /// Soft waits the shutdown gave up for this task.
    pub(crate) given_up: Cell<u8>,
    /// Operations that completed without blocking, counted by `sched::preempt_point`.
    pub(crate) ticks: Cell<u32>,
    /// Set (release) by its domain when the shutdown abandons the task, before it finishes:
    /// it never resumes, so a waker that finds it chosen hands what it handed over to the next
    /// waiter instead ([`Unparker::is_dead`]). Any thread may read it.
    pub(crate) abandoned: AtomicBool,
    /// Where the task last parked or yielded (null before its first switch): the place it
    /// resumes from, for the stall report. Written by the task (relaxed), read by an inspector
    /// under the inspection protocol (`sched::inspect`).
    last_site: AtomicPtr<Location<'static>>,
    /// When its domain saw it park (the domain's coarse clock), while `parked` is set: for the
    /// task dump. Only its domain's thread touches it.
    pub(crate) parked_at: Cell<Option<Instant>>,
    /// The stall report named this task already (it is reported once).
    pub(crate) stall_reported: AtomicBool,

    domain: UnsafeCell<Option<Arc<DomainShared>>>,
    fiber: UnsafeCell<Option<Fiber>>,
    yielder: Cell<*const FiberYielder>,
    slot: Cell<usize>,
    park_site: Cell<Option<ParkSite>>,
    result: UnsafeCell<Option<Outcome>>,
    /// READY | DETACHED: who may take `result` (see [`Task::set_outcome`]).
    outcome_state: AtomicU8,
    has_joiners: AtomicBool,
    joiners: SpinLock<Vec<Joiner>>,
    /// A face's data for this task ([`FaceData`]); only the task itself, while it runs.
    face: UnsafeCell<Option<FaceData>>,
}

// SAFETY: the cells and unsafe cells are touched by one thread at a time, as the module doc
// lays out: the owning domain's thread for the fiber-side fields, the queue holder for a NEW
// task, the joiner after the FINISHED acquire for `result`. Everything else is atomic or locked.
unsafe impl Send for Task {}
// SAFETY: as above.
unsafe impl Sync for Task {}

/// What a new task needs besides its body.
pub(crate) struct TaskConfig {
    pub(crate) id: u64,
    pub(crate) thread_id: u64,
    pub(crate) name: Option<Box<str>>,
    pub(crate) report_panics: bool,
    pub(crate) pinned: bool,
}

impl Task {
    /// Builds a task whose fiber is made by `make_fiber` from the task's address.
    ///
    /// `recycled`, when given, is a finished task from a domain's cache (see [`recycle`]):
    /// its allocation is reused, so a warm spawn does not allocate.
    pub(crate) fn new(
        recycled: Option<CachedTask>,
        cfg: TaskConfig,
        slot: crate::stack::Slot,
        make_fiber: impl FnOnce(crate::stack::Slot, *const Task) -> Fiber,
    ) -> Arc<Task> {
        let stack = (slot.guard_low(), slot.guard_high(), slot.size());
        let task = match recycled {
            Some(cached) => cached.fill(cfg, stack),
            None => Arc::new(Task::blank(cfg, stack)),
        };
        let fiber = make_fiber(slot, Arc::as_ptr(&task));
        // SAFETY: the task has not been shared yet; we are its only user.
        unsafe { *task.fiber.get() = Some(fiber) };
        task
    }

    /// A task that is not queued anywhere and has no fiber, for unit tests of the state it
    /// carries.
    #[cfg(test)]
    pub(crate) fn detached_for_tests() -> Arc<Task> {
        Arc::new(Task::blank(
            TaskConfig {
                id: 0,
                thread_id: reserve_thread_ids(1),
                name: None,
                report_panics: false,
                pinned: true,
            },
            (0, 0, 0),
        ))
    }

    /// A NEW task with no fiber; `stack` is (guard low, guard high, usable size).
    #[inline(always)]
    fn blank(cfg: TaskConfig, stack: (usize, usize, usize)) -> Task {
        let (guard_low, guard_high, stack_size) = stack;
        let overflow = OverflowInfo {
            guard_low,
            guard_high,
            stack_size,
            id: cfg.thread_id,
            name: cfg.name,
        };
        Task {
            park: ParkWord::new(),
            token: Token::new(),
            locals: Locals::new(),
            cancelled: AtomicBool::new(false),
            cancel_requested: AtomicBool::new(false),
            id: cfg.id,
            thread_id: cfg.thread_id,
            report_panics: cfg.report_panics,
            pinned: cfg.pinned,
            overflow,
            state: AtomicU8::new(NEW),
            parked: Cell::new(false),
            deferred: Cell::new(false),
            known_clear: Cell::new(false),
            stop_pending: Cell::new(false),
            stop_raised: Cell::new(false),
            stop_unwinding: Cell::new(false),
            switched_unwinding: Cell::new(false),
            draining: Cell::new(false),
            given_up: Cell::new(0),
            ticks: Cell::new(0),
            abandoned: AtomicBool::new(false),
            last_site: AtomicPtr::new(std::ptr::null_mut()),
            parked_at: Cell::new(None),
            stall_reported: AtomicBool::new(false),

            domain: UnsafeCell::new(None),
            fiber: UnsafeCell::new(None),
            yielder: Cell::new(std::ptr::null()),
            slot: Cell::new(usize::MAX),
            park_site: Cell::new(None),
            result: UnsafeCell::new(None),
            outcome_state: AtomicU8::new(0),
            has_joiners: AtomicBool::new(false),
            joiners: SpinLock::new(Vec::new()),
            face: UnsafeCell::new(None),
        }
    }

    /// Drops what a finished task still holds (name, domain, outcome, joiners, face data), so
    /// that its allocation can wait in a domain's cache for the next spawn. `&mut` proves that
    /// no other reference (no handle, unparker or queue entry) exists. The caller must hold no
    /// borrow that these drops could need: an outcome may hold other tasks' last references,
    /// whose release recycles them in turn.
    pub(crate) fn empty(&mut self) {
        debug_assert!(
            self.fiber.get_mut().is_none(),
            "a task is recycled only once it has ended"
        );
        self.overflow.name = None;
        *self.domain.get_mut() = None;
        *self.result.get_mut() = None;
        *self.joiners.get_mut() = Vec::new();
        *self.face.get_mut() = None;
        self.token.clear();
        self.locals.clear();
    }

    /// A new counted reference to this task.
    pub(crate) fn arc(&self) -> Arc<Task> {
        let ptr: *const Task = self;
        // SAFETY: every `Task` lives in an `Arc` (`Task::new` and `Task::dropped` are the only
        // constructors and both return one), and `&self` proves it is alive now.
        unsafe {
            Arc::increment_strong_count(ptr);
            Arc::from_raw(ptr)
        }
    }

    pub(crate) fn name(&self) -> Option<&str> {
        self.overflow.name.as_deref()
    }

    /// `'name' (id N)` or `<unnamed> (id N)`, for messages; N is the task's `ThreadId`.
    pub(crate) fn describe(&self) -> String {
        match self.name() {
            Some(n) => format!("'{n}' (id {})", self.thread_id),
            None => format!("<unnamed> (id {})", self.thread_id),
        }
    }

    /// Whether the task has started. Acquire: pairs with [`Task::start`]'s release, so a
    /// thread that sees a started task may read its domain.
    pub(crate) fn is_started(&self) -> bool {
        self.state.load(Ordering::Acquire) != NEW
    }

    /// Whether a stop (cancellation, or the runtime ending) was requested.
    pub(crate) fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Acquire)
    }

    pub(crate) fn is_finished(&self) -> bool {
        self.state.load(Ordering::Acquire) == FINISHED
    }

    /// What joiners get when the task was stopped before its body produced an outcome:
    /// [`TaskCancelled`] after a cancellation, [`TaskDropped`] when its runtime ended.
    pub(crate) fn stopped_payload(&self) -> Box<dyn Any + Send> {
        if self.cancel_requested.load(Ordering::Acquire) {
            Box::new(TaskCancelled)
        } else {
            Box::new(TaskDropped)
        }
    }

    /// The data a face attached to this task, if any, without touching its reference count.
    ///
    /// # Safety
    ///
    /// Only the task itself may call it, and [`Task::set_face_data`] must not be called while
    /// the reference lives (a face sets its data at its task's root, around the body, and
    /// reads it within the body).
    pub(crate) unsafe fn face_data(&self) -> Option<&FaceData> {
        // SAFETY: only this task's thread touches `face`, and our caller does not replace it
        // while the reference lives.
        unsafe { (*self.face.get()).as_ref() }
    }

    /// Attaches (or, with `None`, detaches) a face's data. Call it only from the task itself,
    /// while no reference from [`Task::face_data`] lives.
    pub(crate) fn set_face_data(&self, data: Option<FaceData>) -> Option<FaceData> {
        // SAFETY: only this task's thread touches `face`, and no reference from `face_data`
        // lives across this call (its contract).
        unsafe { std::mem::replace(&mut *self.face.get(), data) }
    }

    /// The domain that runs this task, once started.
    pub(crate) fn domain(&self) -> &Arc<DomainShared> {
        // SAFETY: set once, when the task starts, by its domain's thread, before the task can
        // arm a park; only tasks with an armed park (started ones) are scheduled by a waker.
        unsafe { (*self.domain.get()).as_ref().expect("task has not started") }
    }

    /// NEW -> STARTED on `domain`.
    ///
    /// # Safety
    ///
    /// Called once, by the domain thread that is about to run the task for the first time.
    pub(crate) unsafe fn start(&self, domain: &Arc<DomainShared>) {
        // SAFETY: per the contract, nobody else touches this field now.
        unsafe { *self.domain.get() = Some(domain.clone()) };
        // Release: publishes `domain` to whoever sees STARTED (an interrupting thread).
        self.state.store(STARTED, Ordering::Release);
    }

    /// The task's index in its domain's registry.
    pub(crate) fn slot(&self) -> usize {
        self.slot.get()
    }

    pub(crate) fn set_slot(&self, slot: usize) {
        self.slot.set(slot);
    }

    /// The task's fiber.
    ///
    /// # Safety
    ///
    /// Only the owning domain's thread may call this, and not while the fiber runs.
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn fiber_mut(&self) -> &mut Option<Fiber> {
        // SAFETY: per the contract, this is the only reference to the fiber.
        unsafe { &mut *self.fiber.get() }
    }

    pub(crate) fn set_yielder(&self, y: &FiberYielder) {
        self.yielder.set(y);
    }

    /// Switches from this task (which must be the one running) to its scheduler.
    #[inline]
    pub(crate) fn suspend(&self, why: Suspend) {
        let y = self.yielder.get();
        assert!(
            !y.is_null(),
            "bobine: a task that is not running tried to switch"
        );
        if std::thread::panicking() {
            return self.suspend_while_panicking(y, why);
        }
        // SAFETY: only the running task calls this on itself (it reached us through the
        // current-task thread-local), so `y` is the yielder of the fiber running now.
        unsafe { crate::switch::suspend(y, why) }
    }

    /// [`Task::suspend`] while the thread's panic count is raised: a task switched out in the
    /// middle of an unwind leaves it raised while other tasks run, so its domain counts such
    /// tasks, and those that may be (see `sched::task_unwinding`).
    #[cold]
    fn suspend_while_panicking(&self, y: *const FiberYielder, why: Suspend) {
        let unwinding = super::task_unwinding(self) != Unwinding::No;
        if unwinding {
            super::with_local(|l| l.switched_out_unwinding(self, true));
        }
        // SAFETY: as in `suspend`: `y` is the yielder of the fiber running now.
        unsafe { crate::switch::suspend(y, why) }
        if unwinding {
            super::with_local(|l| l.switched_out_unwinding(self, false));
        }
    }

    /// Runs `f` on the stack of the scheduler that resumed this task (which must be the one
    /// running): for work too deep for a small task stack, such as formatting a backtrace.
    pub(crate) fn on_parent_stack<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        let y = self.yielder.get();
        assert!(
            !y.is_null(),
            "bobine: a task that is not running asked for its scheduler's stack"
        );
        // SAFETY: as in `suspend`: `y` is the yielder of the fiber running now.
        unsafe { (*y).on_parent_stack(f) }
    }

    pub(crate) fn set_park_site(&self, site: Option<ParkSite>) {
        if let Some(s) = site {
            self.set_last_site(s.location);
        }
        self.park_site.set(site);
    }

    /// Records where the task switches out from (a park or a yield), for the stall report.
    #[inline]
    pub(crate) fn set_last_site(&self, site: &'static Location<'static>) {
        self.last_site.store(
            site as *const Location<'static> as *mut _,
            Ordering::Relaxed,
        );
    }

    /// Where the task last switched out from (it resumed there), if it ever did.
    pub(crate) fn last_site(&self) -> Option<&'static Location<'static>> {
        let p = self.last_site.load(Ordering::Relaxed);
        // SAFETY: only `&'static Location` values are stored (`set_last_site`).
        (!p.is_null()).then(|| unsafe { &*p })
    }

    /// Why and where the task is parked, if it is: read by the shutdown's reports (and by the
    /// task dump to come). Only its domain's thread reads it.
    pub(crate) fn park_site(&self) -> Option<ParkSite> {
        self.park_site.get()
    }

    /// Stores the body's outcome. Called by the task itself, at its root.
    ///
    /// If the task's `JoinHandle` is gone, nobody will take the value: it is dropped right here,
    /// on the task's own stack and as the task, as std drops a detached thread's value on that
    /// thread, rather than later on the scheduler's stack where a destructor could neither
    /// block nor panic safely. The task sets READY and a dropped handle sets DETACHED, each with
    /// one `fetch_add` on `outcome_state` (each bit is set once, so adding is or-ing, in one
    /// `lock xadd` instead of a compare-exchange loop): whichever sets its bit second saw the other's and
    /// takes the value, so exactly one of them drops it. A handle that joins never sets
    /// DETACHED; it takes the value after FINISHED.
    pub(crate) fn set_outcome(&self, outcome: Outcome) {
        // SAFETY: the task runs on one thread, and nobody takes before READY.
        unsafe { *self.result.get() = Some(outcome) };
        if self.outcome_state.fetch_add(READY, Ordering::AcqRel) & DETACHED != 0 {
            if let Some(value) = self.take_result() {
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(value)));
            }
        }
    }

    /// The `JoinHandle` is dropped without joining: returns the value for the caller to drop if
    /// it is already there (else the task drops it when it ends).
    pub(crate) fn detach(&self) -> Option<Outcome> {
        if self.outcome_state.fetch_add(DETACHED, Ordering::AcqRel) & READY != 0 {
            self.take_result()
        } else {
            None
        }
    }

    fn take_result(&self) -> Option<Outcome> {
        // SAFETY: the caller won the READY/DETACHED exchange (or joins after FINISHED with the
        // handle alive), so it is the only one to take, and nothing writes `result` after READY.
        unsafe { (*self.result.get()).take() }
    }

    /// -> FINISHED: publishes the outcome (or `TaskDropped` if there is none), retires the park
    /// word (so a late unparker does nothing), and wakes every joiner.
    ///
    /// Joiners and the finisher meet through a Dekker pair, so that finishing a task nobody
    /// waits for takes no lock: the joiner pushes its unparker under the lock, then stores
    /// `has_joiners` and re-reads the state; the finisher stores FINISHED, then reads
    /// `has_joiners` (all SeqCst). Either the finisher sees the joiner and wakes it, or the
    /// joiner sees FINISHED and does not sleep.
    pub(crate) fn finish(&self) {
        if self.outcome_state.load(Ordering::Acquire) & READY == 0 {
            // The task never reached the end of its body (the runtime dropped it).
            self.set_outcome(Err(self.stopped_payload()));
        }
        self.park.retire();
        self.state.store(FINISHED, Ordering::SeqCst);
        if self.has_joiners.load(Ordering::SeqCst) {
            let waiters = std::mem::take(&mut *self.joiners.lock());
            for w in waiters {
                w.wake();
            }
        }
    }

    /// Adds `waker` to the joiners, to be unparked when the task finishes; false (and nothing
    /// added) if it has already finished. A later waker of the same waiter replaces an earlier
    /// one.
    pub(crate) fn add_joiner(&self, waker: Unparker) -> bool {
        {
            let mut joiners = self.joiners.lock();
            // Entries of parks that have ended (a sync that committed elsewhere) go too, so the
            // list stays as long as the number of live waiters.
            joiners.retain(|j| match j {
                Joiner::Park(w) => w.is_pending() && !w.same_waiter(&waker),
                Joiner::Waker(_) => true,
            });
            joiners.push(Joiner::Park(waker));
        }
        self.has_joiners.store(true, Ordering::SeqCst);
        self.state.load(Ordering::SeqCst) != FINISHED
    }

    /// Registers `waker` to be woken (once) when the task finishes, replacing the waker an
    /// earlier call registered (unless it wakes the same task); false if it has already
    /// finished (the waker may then stay registered, unused, until [`Task::remove_join_waker`]
    /// or the task's recycling). The same Dekker pair as [`Task::add_joiner`]: a task that ends
    /// between the caller's check and this registration is seen here.
    ///
    /// Only the task's `JoinHandle` calls it, so one waker at most is registered.
    pub(crate) fn add_join_waker(&self, waker: &Waker) -> bool {
        // Cloned before the spin lock: a waker's clone, like its drop, runs the user's code.
        let fresh = waker.clone();
        let (old, unused) = {
            let mut joiners = self.joiners.lock();
            match joiners.iter_mut().find_map(|j| match j {
                Joiner::Waker(w) => Some(w),
                Joiner::Park(_) => None,
            }) {
                Some(w) if w.will_wake(waker) => (None, Some(fresh)),
                Some(w) => (Some(std::mem::replace(w, fresh)), None),
                None => {
                    joiners.push(Joiner::Waker(fresh));
                    (None, None)
                }
            }
        };
        // Dropped outside the spin lock: a waker's drop may run arbitrary code.
        drop(old);
        drop(unused);
        self.has_joiners.store(true, Ordering::SeqCst);
        self.state.load(Ordering::SeqCst) != FINISHED
    }

    /// Withdraws the waker registered by [`Task::add_join_waker`], if it is still there (a
    /// `JoinHandle` dropped while pending).
    pub(crate) fn remove_join_waker(&self) {
        let waker = {
            let mut joiners = self.joiners.lock();
            joiners
                .iter()
                .position(|j| matches!(j, Joiner::Waker(_)))
                .map(|i| joiners.swap_remove(i))
        };
        // Dropped outside the spin lock: a waker's drop may run arbitrary code.
        drop(waker);
    }

    /// Blocks the caller until the task has finished (a hand-over wait: a stopped caller
    /// unwinds out of it).
    #[track_caller]
    pub(crate) fn wait_finished(&self, reason: &'static str) {
        self.wait_finished_as(&super::park::Wait::hand_over(reason));
    }

    /// Blocks the caller until the task has finished, whatever happens to the caller: a stop
    /// does not cut this wait short (for a parent that must outlive its children).
    #[track_caller]
    pub(crate) fn wait_finished_uninterruptibly(&self, reason: &'static str) {
        self.wait_finished_as(&super::park::Wait::uninterruptible(reason));
    }

    /// The wait of the two above; `#[track_caller]` like them, so the park records the
    /// joiner's location, not this function's.
    #[track_caller]
    fn wait_finished_as(&self, wait: &super::park::Wait) {
        while !self.is_finished() {
            let park = super::park::Park::new();
            if !self.add_joiner(park.unparker()) {
                return;
            }
            let why = park.wait_for(wait);
            if why == super::park::Wake::Interrupted && !self.is_finished() {
                // Stopped before the task ended (had it ended, the join would stand).
                super::park::stop::unwind_if_stopped();
            }
        }
    }

    /// Takes the outcome of a finished task, for the `JoinHandle` that joins it (it never
    /// detached, so the task left the value there).
    pub(crate) fn take_outcome(&self) -> Option<Outcome> {
        debug_assert!(self.is_finished());
        self.take_result()
    }
}

/// A domain's cache of finished task allocations, for spawns to reuse.
///
/// Entries are uniquely owned: a task enters only when the reference handed in is its last one.
/// `Arc<Task>` is never downgraded (no `Weak` exists), so a strong count of 1, read with an
/// acquire fence like `Arc::drop` uses, proves that nobody else can reach the task. The cache
/// then keeps the raw allocation and writes the next task into it in place: no allocation and
/// no atomic read-modify-write on either side.
#[derive(Default)]
pub(crate) struct TaskCache {
    free: Vec<NonNull<Task>>,
}

/// A cleared task allocation taken from a [`TaskCache`].
pub(crate) struct CachedTask(NonNull<Task>);

impl CachedTask {
    /// Builds a blank task (as [`Task::blank`]) in the allocation and hands it out again as an
    /// `Arc`. The task is written in place, field by field, not built aside and copied.
    #[inline(always)]
    fn fill(self, cfg: TaskConfig, stack: (usize, usize, usize)) -> Arc<Task> {
        let ptr = self.0.as_ptr();
        std::mem::forget(self);
        // SAFETY: the allocation came from `Arc::into_raw` of the last reference (see
        // `recycle`), so nobody else can see it. The old value was emptied by
        // `Task::empty`, which dropped everything that owns memory or references (the fiber
        // was already gone), so overwriting it without dropping it leaks nothing.
        unsafe {
            ptr.write(Task::blank(cfg, stack));
            Arc::from_raw(ptr)
        }
    }
}

impl Drop for CachedTask {
    fn drop(&mut self) {
        // SAFETY: as in `fill`: we own the allocation's last reference.
        drop(unsafe { Arc::from_raw(self.0.as_ptr()) });
    }
}

impl TaskCache {
    /// Keeps an emptied task allocation (see [`recycle`]) if the cache has fewer than `limit`;
    /// otherwise gives it back.
    fn put(&mut self, task: NonNull<Task>, limit: usize) -> Result<(), NonNull<Task>> {
        if self.free.len() >= limit {
            return Err(task);
        }
        self.free.push(task);
        Ok(())
    }

    pub(crate) fn take(&mut self) -> Option<CachedTask> {
        self.free.pop().map(CachedTask)
    }
}

impl Drop for TaskCache {
    fn drop(&mut self) {
        for ptr in self.free.drain(..) {
            drop(CachedTask(ptr));
        }
    }
}

/// Keeps the allocation of `task` in `cache` for the next spawn if this is its last reference
/// and the cache has room; otherwise just drops the reference.
///
/// The task is emptied before the cache is borrowed: what it held (its outcome above all) may
/// hold other tasks' last references, whose release comes back here.
#[inline]
pub(crate) fn recycle(cache: &std::cell::RefCell<TaskCache>, task: Arc<Task>, limit: usize) {
    if Arc::strong_count(&task) != 1 {
        // Not the last reference: whoever drops the last one recycles it (or frees it).
        return;
    }
    // Pairs with the release decrements of the references dropped before ours.
    std::sync::atomic::fence(Ordering::Acquire);
    let ptr = Arc::into_raw(task) as *mut Task;
    // SAFETY: a strong count of 1 with no `Weak` in existence (tasks are never downgraded)
    // means this was the only reference, so we may mutate through it.
    unsafe { (*ptr).empty() };
    // SAFETY: `Arc::into_raw` never returns null.
    let ptr = unsafe { NonNull::new_unchecked(ptr) };
    let full = cache.borrow_mut().put(ptr, limit);
    if let Err(ptr) = full {
        drop(CachedTask(ptr));
    }
}
