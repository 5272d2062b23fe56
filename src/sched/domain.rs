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
//!    pop the run queue front    -> resume it; requeue on Yield, commit on Park, retire on end
//!    nothing to run             -> fire timers, ask a busy domain for work, sleep in epoll
//! ```
//!
//! A yield or a park touches no atomics beyond the task's park word and makes no syscall:
//! `Instant::now` is read only every 61 rounds (when timers exist) or when idle, and epoll only
//! when idle.
//!
//! ## Cross-thread wake-up (inbox + eventfd)
//!
//! 1. A waker on another thread pushes the task on the inbox (a short mutex) and then sets
//!    `pending` (SeqCst).
//! 2. It then does `sleeping.swap(false)` (SeqCst); only if that returned true does it write the
//!    eventfd. A busy domain therefore costs its wakers no syscall.
//! 3. A domain about to sleep stores `sleeping = true` (SeqCst), then re-checks `pending`; if set
//!    it does not sleep. Otherwise it waits in epoll, and clears `sleeping` when it wakes.
//! 4. Steps 1-2 and 3 form a Dekker pair: either the waker sees `sleeping` and writes the
//!    eventfd, or the domain sees `pending` and does not sleep. No wake-up is lost.
//!
//! Rejected alternative: writing the eventfd on every remote wake (simpler, but a syscall per
//! cross-domain message even when the target is busy).
//!
//! ## Work requesting
//!
//! Tasks never migrate once started, but a task that has not started yet is only a `Send`
//! closure on a stack. An idle domain picks the domain that publishes the most never-started
//! tasks and stores its own index in that domain's `steal_request`. The busy domain sees the
//! request at its next round and moves half of its never-started, non-pinned tasks to the
//! requester's inbox. So that a domain asleep in epoll hears of new work, a domain whose count
//! of never-started tasks goes from 0 to 1 wakes one sleeping peer (clearing its `sleeping`
//! flag first, as a remote waker does), which then asks for work as above. The busy domain's run queue stays single-threaded (no lock, no
//! work-stealing deque on the spawn path).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::park::Unparker;
use super::runtime::RuntimeShared;
use crate::io::Poller;
use crate::stack::Pool;
use crate::switch::Suspend;
use crate::task::Task;
use crate::time::Timers;

const NO_REQUEST: usize = usize::MAX;
/// Rounds between checks of timers and of `done` while tasks keep the domain busy.
const MAINTENANCE_INTERVAL: u32 = 61;

/// The part of a domain that other threads use.
pub(crate) struct DomainShared {
    pub(crate) index: usize,
    inbox: Mutex<Vec<Arc<Task>>>,
    pending: AtomicBool,
    sleeping: AtomicBool,
    pub(crate) stop: AtomicBool,
    steal_request: AtomicUsize,
    /// Never-started, non-pinned tasks in the run queue (published for idle domains).
    stealable: AtomicUsize,
    poller: Poller,
}

impl DomainShared {
    pub(crate) fn new(index: usize) -> std::io::Result<Self> {
        Ok(DomainShared {
            index,
            inbox: Mutex::new(Vec::new()),
            pending: AtomicBool::new(false),
            sleeping: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            steal_request: AtomicUsize::new(NO_REQUEST),
            stealable: AtomicUsize::new(0),
            poller: Poller::new()?,
        })
    }

    /// Steps 1-2 of the wake-up protocol, for one task.
    pub(crate) fn push(&self, task: Arc<Task>) {
        self.inbox
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(task);
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
        self.pending.store(true, Ordering::SeqCst);
        if self.sleeping.swap(false, Ordering::SeqCst) {
            self.poller.wake();
        }
    }

    /// Asks the domain to stop, waking it if it sleeps.
    pub(crate) fn request_stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        self.poller.wake();
    }

    pub(crate) fn take_inbox(&self) -> Vec<Arc<Task>> {
        self.pending.store(false, Ordering::SeqCst);
        std::mem::take(&mut *self.inbox.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// Started tasks of a domain: what the domain must unwind if the runtime ends.
#[derive(Default)]
struct Registry {
    slots: Vec<Option<Arc<Task>>>,
    free: Vec<usize>,
}

impl Registry {
    fn insert(&mut self, task: Arc<Task>) -> usize {
        match self.free.pop() {
            Some(i) => {
                self.slots[i] = Some(task);
                i
            }
            None => {
                self.slots.push(Some(task));
                self.slots.len() - 1
            }
        }
    }
    fn remove(&mut self, i: usize) -> Option<Arc<Task>> {
        let t = self.slots.get_mut(i)?.take();
        if t.is_some() {
            self.free.push(i);
        }
        t
    }
}

/// A domain, as seen from its own thread.
pub(crate) struct Local {
    pub(crate) shared: Arc<DomainShared>,
    pub(crate) rt: Arc<RuntimeShared>,
    run_queue: RefCell<VecDeque<Arc<Task>>>,
    timers: RefCell<Timers>,
    registry: RefCell<Registry>,
    pub(crate) stacks: RefCell<Pool>,
    stealable: Cell<usize>,
    tick: Cell<u32>,
}

impl Local {
    pub(crate) fn new(rt: Arc<RuntimeShared>, index: usize) -> Local {
        Local {
            shared: rt.domains[index].clone(),
            rt,
            run_queue: RefCell::new(VecDeque::with_capacity(256)),
            timers: RefCell::new(Timers::default()),
            registry: RefCell::new(Registry::default()),
            stacks: RefCell::new(Pool::default()),
            stealable: Cell::new(0),
            tick: Cell::new(0),
        }
    }

    /// Makes this the current thread's domain until the returned guard drops.
    pub(crate) fn enter(&self) -> EnterGuard {
        let prev = super::LOCAL.with(|l| l.replace(self));
        EnterGuard { prev }
    }

    /// Queues a runnable task at the back of the run queue.
    pub(crate) fn push_ready(&self, task: Arc<Task>) {
        if !task.is_started() && !task.pinned {
            let n = self.stealable.get() + 1;
            self.set_stealable(n);
            if n == 1 {
                self.wake_idle_peer();
            }
        }
        self.run_queue.borrow_mut().push_back(task);
    }

    /// Work that another domain could take has appeared here: wake one sleeping domain so it can
    /// ask for it (it would otherwise sleep until its next timer). Called when our count of
    /// never-started tasks goes from 0 to 1, so a busy spawner pays one scan of the domains'
    /// flags per batch, and a syscall only when a domain actually sleeps.
    fn wake_idle_peer(&self) {
        for d in &self.rt.domains {
            if d.index != self.shared.index
                && d.sleeping.load(Ordering::Relaxed)
                && d.sleeping.swap(false, Ordering::SeqCst)
            {
                d.poller.wake();
                return;
            }
        }
    }

    fn set_stealable(&self, n: usize) {
        self.stealable.set(n);
        self.shared.stealable.store(n, Ordering::Relaxed);
    }

    pub(crate) fn add_timer(&self, deadline: Instant, u: Unparker) {
        self.timers.borrow_mut().add(deadline, u);
    }

    pub(crate) fn timer_went_stale(&self) {
        self.timers.borrow_mut().went_stale();
    }

    /// Runs tasks until `done()` holds. `done` is checked every few rounds, after a task ends,
    /// and before sleeping: off the yield path.
    pub(crate) fn run_until(&self, done: &dyn Fn() -> bool) {
        loop {
            let tick = self.tick.get().wrapping_add(1);
            self.tick.set(tick);
            if tick % MAINTENANCE_INTERVAL == 0 {
                if done() {
                    return;
                }
                if !self.timers.borrow().is_empty() {
                    self.fire_timers(Instant::now());
                }
            }
            if self.shared.pending.load(Ordering::Relaxed) {
                self.drain_inbox();
            }
            if self.shared.steal_request.load(Ordering::Relaxed) != NO_REQUEST {
                self.donate();
            }
            let next = self.run_queue.borrow_mut().pop_front();
            match next {
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
    fn run_task(&self, task: Arc<Task>) -> bool {
        if !task.is_started() {
            self.start(&task);
        }
        super::set_current(Arc::as_ptr(&task));
        // SAFETY: we are the task's domain thread and the fiber is not running.
        let fiber = unsafe { task.fiber_mut() }
            .as_mut()
            .expect("a queued task has a fiber");
        let outcome = fiber.resume();
        super::set_current(std::ptr::null());
        match outcome {
            Some(Suspend::Yield) => self.run_queue.borrow_mut().push_back(task),
            Some(Suspend::Park) => {
                if !task.park.commit() {
                    // Woken between its switch and our commit: runnable at once.
                    self.run_queue.borrow_mut().push_back(task);
                }
            }
            None => {
                self.retire(task);
                return true;
            }
        }
        false
    }

    #[cold]
    fn start(&self, task: &Arc<Task>) {
        let slot = self.registry.borrow_mut().insert(task.clone());
        // SAFETY: this is the task's first run, on the thread of the domain taking it.
        unsafe { task.start(&self.shared, slot) };
        if !task.pinned {
            self.set_stealable(self.stealable.get().saturating_sub(1));
        }
    }

    fn retire(&self, task: Arc<Task>) {
        // SAFETY: the fiber has returned; we are its domain thread.
        let fiber = unsafe { task.fiber_mut() }
            .take()
            .expect("a finished task had a fiber");
        self.stacks.borrow_mut().put(fiber.into_slot());
        self.registry.borrow_mut().remove(task.slot());
        task.finish();
    }

    fn drain_inbox(&self) {
        for task in self.shared.take_inbox() {
            self.push_ready(task);
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

    /// Moves half of our never-started tasks to the domain that asked for work.
    fn donate(&self) {
        let thief = self
            .shared
            .steal_request
            .swap(NO_REQUEST, Ordering::Relaxed);
        let stealable = self.stealable.get();
        if thief == NO_REQUEST || thief == self.shared.index || stealable == 0 {
            return;
        }
        let give = stealable.div_ceil(2);
        let mut skip = stealable - give;
        let mut out = Vec::with_capacity(give);
        self.run_queue.borrow_mut().retain(|t| {
            if t.is_started() || t.pinned || out.len() == give {
                return true;
            }
            if skip > 0 {
                skip -= 1;
                return true;
            }
            out.push(t.clone());
            false
        });
        self.set_stealable(stealable - out.len());
        if let Some(d) = self.rt.domains.get(thief) {
            d.push_many(out);
        }
    }

    fn try_steal(&self) {
        let me = self.shared.index;
        let victim = self
            .rt
            .domains
            .iter()
            .filter(|d| d.index != me)
            .map(|d| (d.stealable.load(Ordering::Relaxed), d))
            .filter(|(n, _)| *n > 0)
            .max_by_key(|(n, _)| *n);
        if let Some((_, d)) = victim {
            let _ = d.steal_request.compare_exchange(
                NO_REQUEST,
                me,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
    }

    fn idle(&self, done: &dyn Fn() -> bool) {
        let mut next_deadline = None;
        if !self.timers.borrow().is_empty() {
            self.fire_timers(Instant::now());
            if !self.run_queue.borrow().is_empty() {
                return;
            }
            next_deadline = self.timers.borrow().next_deadline();
        }
        if done() {
            return;
        }
        if self.rt.domains.len() > 1 {
            self.try_steal();
        }
        let shared = &self.shared;
        shared.sleeping.store(true, Ordering::SeqCst);
        if shared.pending.load(Ordering::SeqCst) || shared.stop.load(Ordering::SeqCst) || done() {
            shared.sleeping.store(false, Ordering::SeqCst);
            return;
        }
        let timeout = next_deadline.map(|d: Instant| d.saturating_duration_since(Instant::now()));
        shared.poller.wait(timeout);
        shared.sleeping.store(false, Ordering::SeqCst);
    }

    /// Shutdown step 4 for one depth: force-unwinds our started tasks of scope depth `depth`,
    /// newest first.
    pub(crate) fn unwind_depth(&self, depth: u32) {
        let mut victims: Vec<Arc<Task>> = self
            .registry
            .borrow()
            .slots
            .iter()
            .flatten()
            .filter(|t| t.depth == depth)
            .cloned()
            .collect();
        victims.sort_by_key(|t| std::cmp::Reverse(t.id));
        for task in victims {
            self.registry.borrow_mut().remove(task.slot());
            // SAFETY: we are the task's domain thread and no fiber runs (shutdown).
            let Some(fiber) = (unsafe { task.fiber_mut() }).take() else {
                continue;
            };
            task.forcing.set(true);
            super::set_current(Arc::as_ptr(&task));
            let slot = fiber.unwind();
            super::set_current(std::ptr::null());
            self.stacks.borrow_mut().put(slot);
            task.finish();
        }
    }

    /// Shutdown step 5: drops every queued task and timer; never-started fibers are dropped
    /// without running.
    pub(crate) fn drop_queued(&self) {
        loop {
            let mut batch: Vec<Arc<Task>> = self.run_queue.borrow_mut().drain(..).collect();
            batch.extend(self.shared.take_inbox());
            if batch.is_empty() {
                break;
            }
            for task in batch {
                drop_unstarted(&task);
            }
        }
        self.set_stealable(0);
        let timers = std::mem::take(&mut *self.timers.borrow_mut());
        drop(timers);
        self.timers.borrow_mut().clear();
    }
}

/// Drops the fiber of a task that never ran (its closure is dropped, nothing runs) and marks it
/// finished. Started tasks are left alone: their domain unwinds them.
pub(crate) fn drop_unstarted(task: &Arc<Task>) {
    if task.is_started() || task.is_finished() {
        return;
    }
    // SAFETY: the task never started and the caller holds it from a queue it drained, so no
    // other thread touches its fiber.
    let fiber = unsafe { task.fiber_mut() }.take();
    drop(fiber);
    task.finish();
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
        // Leftover started tasks would hold stacks of the arena: unwinding happens in the
        // shutdown protocol before a Local is dropped.
        debug_assert!(self.registry.borrow().slots.iter().all(Option::is_none));
    }
}
