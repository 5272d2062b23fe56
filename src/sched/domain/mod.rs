//! One domain: its scheduler loop, run queue, inbox, timers, registry and stack pool.
//!
//! ## The loop
//!
//! ```text
//!  loop:
//!    stop?                      -> leave (see runtime.rs for shutdown)
//!    inbox flag set?            -> move the inbox into the run queue
//!    steal request?             -> donate half of our never-started tasks
//!    every 61st round           -> fire due timers, check `done`
//!    pop the run queue front    -> resume it; requeue on Yield, check the word on Park, retire on end
//!    nothing to run             -> fire timers, ask a busy domain for work, sleep in epoll
//! ```
//!
//! A yield or a park touches no atomics beyond the task's park word and one relaxed load of the
//! domain's `attention` word, and makes no syscall: `Instant::now` is read only every 61 rounds
//! (when timers exist) or when idle, and epoll only when idle.
//!
//! ## Who owns a task
//!
//! Every task of a domain, started or not, is owned by the domain's **registry** (one strong
//! reference) from the moment it is queued there until it ends or the runtime unwinds it. The
//! run queue holds plain pointers into the registry, so queueing, yielding and waking locally
//! cost no reference counting. The **inbox** is different: it holds owning references (a remote
//! waker's, or a task handed over by another thread), which the domain turns into registry
//! entries or drops when it drains the inbox.
//!
//! ## Cross-thread wake-up (inbox + eventfd)
//!
//! 1. A waker on another thread pushes the task on the inbox (a short mutex) and then sets the
//!    INBOX bit of `attention` (SeqCst).
//! 2. It then does `sleeping.swap(false)` (SeqCst); only if that returned true does it write the
//!    eventfd. A busy domain therefore costs its wakers no syscall.
//! 3. A domain about to sleep stores `sleeping = true` (SeqCst), then re-checks INBOX; if set
//!    it does not sleep. Otherwise it waits in epoll, and clears `sleeping` when it wakes.
//! 4. Steps 1-2 and 3 form a Dekker pair: either the waker sees `sleeping` and writes the
//!    eventfd, or the domain sees INBOX and does not sleep. No wake-up is lost.
//!
//! Rejected alternative: writing the eventfd on every remote wake (simpler, but a syscall per
//! cross-domain message even when the target is busy).
//!
//! The flags live in [`doorbell`], which the loom check `loom_checks::inbox` runs as it is,
//! with the inbox, the eventfd and this loop modelled.
//!
//! ## Spinning before sleeping
//!
//! A started task never moves, so a task woken from another domain runs where it lives, and a
//! sleeping domain costs its waker an eventfd write and the sleeper an epoll return (tens of
//! microseconds on a VM): two domains passing a message back and forth would pay that on
//! every hop. So a domain with nothing to run first spins for up to [`SPIN`] (50 µs), watching
//! `attention`, before it sleeps, while `sleeping` is still false, so a waker writes no eventfd
//! (step 2 above sees a domain that is not asleep). It spins only:
//!
//! - in a runtime of several domains (on one domain, every wake-up comes from the domain
//!   itself, a timer or epoll);
//! - while its recent sleeps were short ([`SPIN`] or less: `spin_credit`, up to 4, gained by
//!   each short sleep or successful spin, lost by a long sleep or a spin that found nothing),
//!   so a domain whose work arrives every millisecond does not burn 50 µs per arrival;
//! - while fewer than half of the runtime's domains are spinning (but two may: two domains
//!   passing messages are often both idle at once, and one asleep costs the pair a wake-up per
//!   hop), as Go bounds its spinning threads (`RuntimeShared::spinning`);
//! - giving the core up (`sched_yield`) between rounds of 64 looks, so that on a machine with
//!   more runnable threads than cores a spinner does not keep its waker off the core (without
//!   it, a two-domain ping-pong on a loaded 2-core VM took up to 245 µs a round trip instead
//!   of 45 µs asleep).
//!
//! Spinning changes when a wake-up is seen, never whether: a domain that stops spinning goes
//! through steps 3-4 as before.
//!
//! ## Work requesting
//!
//! Tasks never migrate once started, but a task that has not started yet is only a `Send`
//! closure on a stack. An idle domain picks the domain that publishes the most never-started
//! tasks, stores its own index in that domain's `steal_request` and sets its STEAL bit. The busy domain sees the
//! request at its next round and moves half of its never-started, non-pinned tasks to the
//! requester's inbox. So that a domain asleep in epoll hears of new work, a domain whose count
//! of never-started tasks goes from 0 to 1 wakes one sleeping peer (clearing its `sleeping`
//! flag first, as a remote waker does), which then asks for work as above. The busy domain's run queue stays single-threaded (no lock, no
//! work-stealing deque on the spawn path).
//!
//! ## Many cores
//!
//! What each hot path touches that another domain may also touch (the machines this is
//! measured on have 2 cores; the rest is the model the code is written to):
//!
//! | path | state shared with other domains | cost when many domains run it at once |
//! |------|--------------------------------|----------------------------------------|
//! | spawn from a task | none but the target queue: task and thread ids come from per-domain blocks (one shared `fetch_add` per 64 or 256 spawns), the stack pool, task cache and registry are the domain's own, the spawn count and `stealable` live on the domain's own line ([`OwnLine`]); the arena's depot (a mutex) is visited once per 64 stacks, and only by a domain whose pool over- or underflows | flat |
//! | the first spawn after the stealable count was 0 | reads the peers' `sleeping` flags until one is asleep, and wakes that one only | one line per peer read, on a 0 → 1 change, not per spawn |
//! | park, yield, unpark on the same domain | none | flat |
//! | unpark from another domain or thread | the target domain's inbox mutex, `attention` and `sleeping` (one line) | contended only when many domains wake tasks of one domain at once |
//! | an idle domain | the peers' `stealable` (read), one victim's `steal_request` (one CAS), the runtime's `spinning` counter | off the hot paths |
//!
//! No idle herd: an idle domain that asks for work stores its request in one victim only, a
//! victim serves one request at a time (the others go back to sleep and are woken by the next
//! 0 → 1 change), and a 0 → 1 change wakes one sleeper. What a 16- to 64-core machine would
//! still show, and the remedy each would take: the per-domain inbox mutex under a fan-in of
//! wake-ups (an intrusive MPSC list drained with one swap); the shutdown's `all_finished`,
//! which sums two counters per domain (once per shutdown round, not per task); and, for never-
//! started work stuck behind a task that never yields, a queue that an idle domain can take
//! from without the busy one's help (a work-stealing deque).

use std::cell::{Cell, RefCell};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

mod doorbell;
mod idle;
mod queues;

#[cfg(all(test, bobine_loom))]
pub(crate) use doorbell::Doorbell as ModelDoorbell;
use doorbell::{Doorbell, INBOX, STEAL};

pub(crate) use queues::TaskPtr;
use queues::{Registry, RunQueue};

use super::park::Unparker;
use super::reactor::Poller;
use super::runtime::RuntimeShared;
use super::shutdown::Watch;
use super::task::{CachedTask, Task, TaskCache};
use super::timers::Timers;
use crate::stack::Pool;
use crate::switch::Suspend;

const NO_REQUEST: usize = usize::MAX;
/// How long an idle domain sleeps before asking again when a peer has work it did not get.
const IDLE_RECHECK: std::time::Duration = std::time::Duration::from_millis(1);
/// How long an idle domain may spin before it sleeps (see the module doc).
const SPIN: std::time::Duration = std::time::Duration::from_micros(50);
/// The most spin credit a domain holds (see the module doc).
const SPIN_CREDIT: u8 = 4;
/// Finished tasks kept per domain for reuse by the next spawns.
const TASK_CACHE: usize = 1024;
/// Rounds between checks of timers and of `done` while tasks keep the domain busy.
const MAINTENANCE_INTERVAL: u32 = 61;
/// Thread ids a domain reserves at once (so a spawn does not touch the process-wide counter).
const ID_BLOCK: u64 = 256;
/// Per-runtime task ids a domain reserves at once: small, so that on one domain ids stay in
/// creation order and a runtime's ids stay dense.
const TASK_ID_BLOCK: u64 = 64;

/// The part of a domain that other threads use.
pub(crate) struct DomainShared {
    pub(crate) index: usize,
    inbox: Mutex<Vec<Arc<Task>>>,
    /// INBOX | STEAL, and `sleeping` (the wake-up protocol's flags).
    bell: Doorbell,
    pub(crate) stop: AtomicBool,
    /// Set when the domain has shut down for good (shutdown step 5): nothing polls its epoll
    /// any more, so descriptors registered there must register elsewhere.
    pub(crate) closed: AtomicBool,
    steal_request: AtomicUsize,
    poller: Poller,
    /// What only the domain's own thread writes, on a cache line of its own: the fields above
    /// are written by other threads (wakers, thieves), and sharing a line with them would make
    /// every spawn and every task's end bounce it between cores.
    pub(crate) own: OwnLine,
}

/// The fields of a [`DomainShared`] that only its domain's thread writes (others read them).
#[repr(align(128))]
pub(crate) struct OwnLine {
    /// Never-started, non-pinned tasks in the run queue (published for idle domains).
    stealable: AtomicUsize,
    /// Tasks spawned by this domain's tasks (wherever they run). The shutdown compares the sum
    /// over domains, plus the spawns from other threads, with the sum of `finished`.
    pub(crate) spawned: AtomicU64,
    /// Tasks that ended (or were abandoned) here.
    pub(crate) finished: AtomicU64,
}

impl DomainShared {
    pub(crate) fn new(index: usize) -> std::io::Result<Self> {
        Ok(DomainShared {
            index,
            inbox: Mutex::new(Vec::new()),
            bell: Doorbell::new(),
            stop: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            steal_request: AtomicUsize::new(NO_REQUEST),
            poller: Poller::new()?,
            own: OwnLine {
                stealable: AtomicUsize::new(0),
                spawned: AtomicU64::new(0),
                finished: AtomicU64::new(0),
            },
        })
    }

    /// Steps 1-2 of the wake-up protocol, for one task.
    pub(crate) fn push(&self, task: Arc<Task>) {
        self.inbox
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(task);
        super::perturb::os_point();
        self.notify();
    }

    fn push_many(&self, tasks: Vec<Arc<Task>>) {
        self.inbox
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(tasks);
        self.notify();
    }

    fn notify(&self) {
        if self.bell.ring_inbox() {
            self.poller.wake();
        }
    }

    /// The waker's half of the Dekker pair (see [`Doorbell::take_sleeper`]): writes the
    /// eventfd if the domain sleeps; returns whether it did.
    fn wake_if_sleeping(&self) -> bool {
        if self.bell.take_sleeper() {
            self.poller.wake();
            return true;
        }
        false
    }

    /// Whether the domain sleeps in epoll (or is about to), with nothing to run.
    pub(crate) fn is_sleeping(&self) -> bool {
        self.bell.is_sleeping()
    }

    /// Wakes the domain if it sleeps (or makes its next sleep return at once).
    pub(crate) fn nudge(&self) {
        self.poller.wake();
    }

    /// Asks the domain to stop, waking it if it sleeps.
    pub(crate) fn request_stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        self.poller.wake();
    }

    /// The domain's epoll instance, where descriptors its tasks wait on are registered.
    pub(crate) fn poller(&self) -> &Poller {
        &self.poller
    }

    pub(crate) fn take_inbox(&self) -> Vec<Arc<Task>> {
        self.bell.clear_inbox();
        std::mem::take(&mut *self.inbox.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// A domain, as seen from its own thread.
pub(crate) struct Local {
    pub(crate) shared: Arc<DomainShared>,
    pub(crate) rt: Arc<RuntimeShared>,
    run_queue: RunQueue,
    timers: RefCell<Timers>,
    registry: RefCell<Registry>,
    pub(crate) stacks: RefCell<Pool>,
    task_cache: RefCell<TaskCache>,
    stealable: Cell<usize>,
    countdown: Cell<u32>,
    /// Recent idle periods were short: how many more spins before sleeping are worth it.
    spin_credit: Cell<u8>,
    /// Thread ids reserved for this domain's spawns: `[next, end)`.
    ids: Cell<(u64, u64)>,
    /// Tasks of this domain switched out in the middle of an unwind (see
    /// `sched::task_unwinding`).
    parked_unwinding: Cell<usize>,
    /// Mirror of `shared.own.finished` (only this thread writes it).
    finished: Cell<u64>,
    /// Mirror of `shared.own.spawned`.
    spawned: Cell<u64>,
    /// Per-runtime task ids reserved for this domain's spawns: `[next, end)`.
    task_ids: Cell<(u64, u64)>,
    /// Parked tasks whose stop is deferred (see `park::stop`).
    deferred: Cell<usize>,
    /// The runtime is ending and this domain takes part (see `shutdown`).
    pub(crate) closing: Cell<bool>,
    /// What the shutdown has seen and done on this domain.
    pub(crate) watch: RefCell<Watch>,
}

impl Local {
    pub(crate) fn new(rt: Arc<RuntimeShared>, index: usize) -> Local {
        Local {
            shared: rt.domains[index].clone(),
            rt,
            run_queue: RunQueue::default(),
            timers: RefCell::new(Timers::default()),
            registry: RefCell::new(Registry::default()),
            stacks: RefCell::new(Pool::default()),
            task_cache: RefCell::new(TaskCache::default()),
            stealable: Cell::new(0),
            countdown: Cell::new(MAINTENANCE_INTERVAL),
            spin_credit: Cell::new(0),
            ids: Cell::new((0, 0)),
            parked_unwinding: Cell::new(0),
            finished: Cell::new(0),
            spawned: Cell::new(0),
            task_ids: Cell::new((0, 0)),
            deferred: Cell::new(0),
            closing: Cell::new(false),
            watch: RefCell::new(Watch::default()),
        }
    }

    /// A fresh per-runtime task id for a task spawned here: from a block this domain reserved
    /// (so spawns on different domains do not share a counter's cache line), or, if
    /// `ordered`, straight from the runtime's sequence (see `SpawnOptions::ordered_id`).
    pub(crate) fn task_id(&self, ordered: bool) -> u64 {
        if ordered {
            return self.rt.reserve_task_ids(1);
        }
        let (next, end) = self.task_ids.get();
        if next < end {
            self.task_ids.set((next + 1, end));
            return next;
        }
        let first = self.rt.reserve_task_ids(TASK_ID_BLOCK);
        self.task_ids.set((first + 1, first + TASK_ID_BLOCK));
        first
    }

    /// One more task spawned by this domain's tasks (published before the task is queued, so
    /// before it can end: see `RuntimeShared::all_finished`).
    pub(crate) fn count_spawned(&self) {
        let n = self.spawned.get() + 1;
        self.spawned.set(n);
        self.shared.own.spawned.store(n, Ordering::Release);
    }

    /// Whether other work waits for this domain's thread: a ready task, or wake-ups in the
    /// inbox (a relaxed look: a hint for whether to spin, see `sched::spinning_may_help`).
    #[inline]
    pub(crate) fn has_ready_work(&self) -> bool {
        !self.run_queue.is_empty() || self.shared.bell.peek() & INBOX != 0
    }

    /// A fresh process-unique thread id for a task spawned here.
    pub(crate) fn next_thread_id(&self) -> u64 {
        let (next, end) = self.ids.get();
        if next < end {
            self.ids.set((next + 1, end));
            return next;
        }
        let first = super::task::reserve_thread_ids(ID_BLOCK);
        self.ids.set((first + 1, first + ID_BLOCK));
        first
    }

    /// How many tasks of this domain are switched out in the middle of an unwind.
    pub(crate) fn parked_unwinding(&self) -> usize {
        self.parked_unwinding.get()
    }

    /// `task` (running here) switches out while unwinding (`out`), or is back.
    pub(crate) fn switched_out_unwinding(&self, task: &Task, out: bool) {
        task.switched_unwinding.set(out);
        let n = self.parked_unwinding.get();
        self.parked_unwinding.set(if out { n + 1 } else { n - 1 });
    }

    /// For the stop decision of a task parking here: whether the runtime is ending, and
    /// whether the shutdown gives soft waits up already.
    pub(crate) fn shutdown_state(&self) -> (bool, bool) {
        let ending = self.closing.get();
        (ending, ending && self.rt.soft_waits_given_up())
    }

    /// Makes this the current thread's domain until the returned guard drops.
    pub(crate) fn enter(&self) -> EnterGuard {
        let prev = super::LOCAL.with(|l| l.replace(self));
        EnterGuard { prev }
    }

    /// Takes ownership of a task that is new to this domain (spawned here, or handed over
    /// through the inbox) and queues it.
    pub(crate) fn adopt(&self, task: Arc<Task>) {
        let ptr = NonNull::from(&*task);
        let slot = self.registry.borrow_mut().insert(task);
        // SAFETY: the registry now owns the task, which lives until it is removed from there.
        let t = unsafe { ptr.as_ref() };
        t.set_slot(slot);
        if self.closing.get() {
            // The runtime is ending: the task is stopped as it arrives (shutdown step 2).
            t.cancelled.store(true, Ordering::Release);
        }
        if !t.is_started() && !t.pinned {
            let n = self.stealable.get() + 1;
            self.set_stealable(n);
            if n == 1 && self.rt.domains.len() > 1 {
                self.wake_idle_peer();
            }
        }
        self.run_queue.push(ptr);
    }

    /// Keeps the allocation of a finished task whose last reference this is, for the next spawn.
    #[inline]
    pub(crate) fn recycle(&self, task: Arc<Task>) {
        super::task::recycle(&self.task_cache, task, TASK_CACHE);
    }

    /// A cleared task allocation to build the next task in, if the cache has one.
    pub(crate) fn cached_task(&self) -> Option<CachedTask> {
        self.task_cache.borrow_mut().take()
    }

    /// A wake-up of one of our started tasks (park protocol, step 6): queues it if it is
    /// parked and woken; any other request is stale and does nothing. A pending interrupt
    /// (see `park::interrupt`) is applied first, here on the task's own thread.
    #[inline]
    pub(crate) fn woken(&self, task: &Task) {
        if super::park::stop::interrupt_pending(task) {
            self.defer_stop(task);
        }
        if task.parked.get() && !task.park.is_armed() {
            task.parked.set(false);
            if self.closing.get() && !task.park.last_timed_out() {
                // A timer's wake-up is not progress: a wait that revalidates itself every so
                // often would keep the shutdown from ever giving it up.
                self.rt.progressed();
            }
            self.run_queue.push(NonNull::from(task));
        }
    }

    /// Registers the stop of a parked task that cannot be told apart from an unwinding one
    /// (see `park::stop`): it is woken once the domain can tell.
    fn defer_stop(&self, task: &Task) {
        if !task.deferred.replace(true) {
            self.deferred.set(self.deferred.get() + 1);
        }
    }

    /// A task back from a park: it no longer counts as deferred (called by the task itself).
    pub(crate) fn parked_stop_settled(&self, task: &Task) {
        if task.deferred.replace(false) {
            self.deferred.set(self.deferred.get() - 1);
        }
    }

    /// Wakes the deferred stops (see `park::stop`) once no task of this domain is switched out
    /// mid-unwind: called between tasks, where a zero panic count proves that no switched-out
    /// task of this thread is unwinding. Those tasks are then certainly not unwinding.
    #[cold]
    fn resolve_deferred(&self) {
        if std::thread::panicking() {
            return;
        }
        self.for_each_task(|ptr| {
            // SAFETY: the registry owns the task; no task runs while the domain walks it.
            let task = unsafe { ptr.as_ref() };
            if task.deferred.get() && task.parked.get() {
                self.parked_stop_settled(task);
                task.known_clear.set(true);
                task.park.wake_current(super::park::Wake::Interrupted);
                self.woken(task);
            }
        });
    }

    pub(crate) fn add_timer(&self, deadline: Instant, u: Unparker) {
        self.timers.borrow_mut().add(deadline, u);
    }

    pub(crate) fn timer_went_stale(&self) {
        let dropped = self.timers.borrow_mut().went_stale();
        // Dropped outside the borrow: an unparker may hold a task's last reference.
        drop(dropped);
    }

    /// Runs tasks until `done()` holds. `done` is checked every few rounds, after a task ends,
    /// and before sleeping: off the yield path.
    pub(crate) fn run_until(&self, done: &dyn Fn() -> bool) {
        loop {
            let countdown = self.countdown.get() - 1;
            self.countdown.set(countdown);
            if countdown == 0 {
                self.countdown.set(MAINTENANCE_INTERVAL);
                if done() {
                    return;
                }
                if !self.timers.borrow().is_empty() {
                    self.fire_timers(Instant::now());
                }
                // I/O readiness, so that sockets are served while tasks keep us busy.
                self.shared.poller.poll_busy();
            }
            let attention = self.shared.bell.peek();
            if attention != 0 {
                if attention & INBOX != 0 {
                    self.drain_inbox();
                }
                if attention & STEAL != 0 {
                    self.donate();
                }
            }
            match self.run_queue.pop() {
                Some(task) => {
                    if self.run_task(task) && done() {
                        return;
                    }
                }
                None => {
                    if done() {
                        return;
                    }
                    self.idle(done);
                }
            }
        }
    }

    /// Runs `task` until it gives the CPU back; returns whether it ended.
    #[inline]
    fn run_task(&self, ptr: TaskPtr) -> bool {
        // SAFETY: queued tasks are owned by our registry until they are retired here.
        let task = unsafe { ptr.as_ref() };
        if !task.is_started() {
            self.start(task);
        }
        super::set_current(task);
        // SAFETY: we are the task's domain thread and the fiber is not running.
        let fiber = unsafe { task.fiber_mut() }
            .as_mut()
            .expect("a queued task has a fiber");
        let outcome = fiber.resume();
        super::set_current(std::ptr::null());
        match outcome {
            Some(Suspend::Yield) => self.run_queue.push(ptr),
            Some(Suspend::Park) => {
                // Park protocol, step 4.
                if task.park.is_armed() {
                    task.parked.set(true);
                    if task.is_cancelled() {
                        // Stopped before it parked (and it kept waiting: it may be unwinding):
                        // the stop is applied now, or deferred.
                        self.woken(task);
                    }
                } else {
                    // Woken between its last look and the switch: runnable at once.
                    self.run_queue.push(ptr);
                }
            }
            Some(Suspend::Abandon) => {
                self.abandon(ptr);
                return true;
            }
            None => {
                self.retire(ptr);
                return true;
            }
        }
        if self.deferred.get() > 0 {
            self.resolve_deferred();
        }
        false
    }

    #[cold]
    fn start(&self, task: &Task) {
        // SAFETY: this is the task's first run, on the thread of the domain that owns it.
        unsafe { task.start(&self.shared) };
        if !task.pinned {
            self.set_stealable(self.stealable.get().saturating_sub(1));
        }
    }

    fn retire(&self, ptr: TaskPtr) {
        let slot = {
            // SAFETY: the registry owns the task until we remove it below.
            let task = unsafe { ptr.as_ref() };
            // SAFETY: the fiber has returned; we are its domain thread.
            let fiber = unsafe { task.fiber_mut() }
                .take()
                .expect("a finished task had a fiber");
            self.stacks
                .borrow_mut()
                .put(&self.rt.arena, fiber.into_slot());
            task.finish();
            task.slot()
        };
        self.count_finished();
        // Last: this may be the task's last reference (a detached task).
        let owned = self.registry.borrow_mut().remove(slot);
        if let Some(owned) = owned {
            self.recycle(owned);
        }
    }

    /// One more task ended here (or was abandoned).
    fn count_finished(&self) {
        let n = self.finished.get() + 1;
        self.finished.set(n);
        // Release: whoever sees the count sees the task finished.
        self.shared.own.finished.store(n, Ordering::Release);
        if self.closing.get() {
            self.rt.progressed();
        }
    }

    /// Gives up on a suspended task for good (see `shutdown`): it never runs again; its fiber
    /// and stack are leaked where they are (frames on that stack may be borrowed by others,
    /// such as a wait-queue node, so the memory must stay), and it finishes as `TaskDropped`.
    pub(crate) fn abandon(&self, ptr: TaskPtr) {
        // SAFETY: the registry owns the task until we remove it below; it is not running.
        let task = unsafe { ptr.as_ref() };
        // SAFETY: we are the task's domain thread and its fiber is suspended.
        let fiber = unsafe { task.fiber_mut() }.take();
        std::mem::forget(fiber);
        self.rt.arena.leak_around(task.overflow.guard_low);
        if task.switched_unwinding.get() {
            // Its unwind (if it was in one) stays in flight on this thread for ever.
            task.switched_unwinding.set(false);
            self.parked_unwinding.set(self.parked_unwinding.get() - 1);
            super::leak_unwind();
        }
        self.parked_stop_settled(task);
        task.parked.set(false);
        // Before `finish`: a waker that sees the task finished also sees why.
        task.abandoned.store(true, Ordering::Release);
        task.finish();
        let slot = task.slot();
        self.count_finished();
        let owned = self.registry.borrow_mut().remove(slot);
        // Never freed: queues may still hold uncounted pointers to the task (a channel
        // waiter's borrowed unparker) or nodes on its stack, which name it.
        std::mem::forget(owned);
    }

    /// Calls `f` with every task this domain owns (not running: called between tasks).
    pub(crate) fn for_each_task(&self, mut f: impl FnMut(TaskPtr)) {
        let tasks: Vec<TaskPtr> = self
            .registry
            .borrow()
            .slots
            .iter()
            .flatten()
            .map(|t| NonNull::from(&**t))
            .collect();
        for t in tasks {
            f(t);
        }
    }

    /// Whether the run queue is empty.
    pub(crate) fn nothing_to_run(&self) -> bool {
        self.run_queue.is_empty()
    }

    pub(crate) fn drain_inbox(&self) {
        for task in self.shared.take_inbox() {
            if task.is_started() {
                // A remote wake-up of one of ours: the registry owns it; drop the waker's
                // reference.
                self.woken(&task);
            } else {
                self.adopt(task);
            }
        }
    }

    fn fire_timers(&self, now: Instant) {
        loop {
            let due = self.timers.borrow_mut().pop_due(now);
            match due {
                Some(u) => {
                    u.wake(super::park::Wake::TimedOut);
                }
                None => return,
            }
        }
    }

    /// The end of the shutdown, once every task of the runtime has ended: drops the timers,
    /// the inbox (wake-ups that came late) and every registration, and marks the domain closed
    /// so that descriptors shared with a later runtime register there.
    pub(crate) fn close(&self) {
        debug_assert!(self.run_queue.is_empty());
        self.run_queue.clear();
        drop(self.shared.take_inbox());
        self.set_stealable(0);
        let timers = std::mem::take(&mut *self.timers.borrow_mut());
        drop(timers);
        self.shared.closed.store(true, Ordering::SeqCst);
        self.shared.poller().clear();
    }
}

/// Restores the previous domain of this thread when dropped.
pub(crate) struct EnterGuard {
    prev: *const Local,
}

impl Drop for EnterGuard {
    fn drop(&mut self) {
        super::LOCAL.with(|l| l.set(self.prev));
    }
}

impl Drop for Local {
    fn drop(&mut self) {
        // Leftover tasks would hold stacks of the arena: the shutdown protocol unwinds every
        // task before a Local is dropped.
        debug_assert!(self.registry.borrow().slots.iter().all(Option::is_none));
    }
}
