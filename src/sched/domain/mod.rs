//! One domain: its scheduler loop, run queue, inbox, timers, registry and stack pool.
//!
//! ## The loop
//!
//! ```text
//!  loop:
//!    stop?                      -> leave (see runtime.rs for shutdown)
//!    inbox flag set?            -> move the inbox into the run queue (or the stealable deque)
//!    every 61st round           -> fire due timers, check `done`
//!    pop the run queue front    -> a marker: take the oldest task of our stealable deque;
//!                                  resume it; requeue on Yield, check the word on Park, retire on end
//!    nothing to run             -> fire timers, steal from a busy domain, spin, sleep in epoll
//! ```
//!
//! A yield or a park touches no atomics beyond the task's park word and one relaxed load of the
//! domain's `attention` word, and makes no syscall: `Instant::now` is read only every 61 rounds
//! (when timers exist) or when idle, and epoll only when idle.
//!
//! ## Who owns a task
//!
//! Every task a domain has started, and every never-started task it keeps to itself (pinned
//! ones, and all of them in a runtime of one domain or while the runtime ends), is owned by
//! the domain's **registry** (one strong reference) from the moment it is queued there until it
//! ends or the runtime unwinds it. The run queue holds plain pointers into the registry, so
//! queueing, yielding and waking locally cost no reference counting. Two queues hold owning
//! references instead: the **inbox** (a remote waker's reference, or a task handed over by
//! another thread), which the domain turns into registry entries or drops when it drains it;
//! and the **stealable deque** (see "Work stealing"), whose never-started tasks enter the
//! registry of whichever domain takes them out, just before their first run.
//!
//! ## Cross-thread wake-up (inbox + eventfd)
//!
//! 1. A waker on another thread pushes the task on the inbox (a short mutex) and then sets the
//!    INBOX bit of `attention` (SeqCst).
//! 2. It then does `sleeping.swap(false)` (SeqCst); only if that returned true does it write the
//!    eventfd. A busy domain therefore costs its wakers no syscall.
//! 3. A domain about to sleep stores `sleeping = true` (SeqCst), then re-checks INBOX (and the
//!    peers' deques: "Work stealing", step 2); if set it does not sleep. Otherwise it waits in epoll, and clears `sleeping` when it wakes.
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
//! ## Work stealing
//!
//! Tasks never migrate once started, but a task that has not started yet is only a `Send`
//! closure on a stack, and a domain whose task computes without yielding never comes back to
//! its loop: whatever is queued behind that task must be taken **without the busy domain's
//! help**. So in a runtime of several domains, each domain keeps its never-started, non-pinned
//! tasks in a work-stealing deque (crossbeam-deque's Chase-Lev deque, FIFO flavour: Chase and
//! Lev, "Dynamic circular work-stealing deque", SPAA 2005; Lê et al., "Correct and efficient
//! work-stealing for weak memory models", PPoPP 2013). The owner pushes at the back and pops at
//! the front; thieves take from the front too, with a CAS on the front index, so a task leaves
//! the deque exactly once, to whoever won that CAS.
//!
//! 1. **Spawn.** A never-started, non-pinned task queued on a domain of a multi-domain runtime
//!    that is not ending (spawned there, or adopted from its inbox) is pushed on the domain's
//!    deque, and a [`MARKER`] is pushed on its run queue where the task would have been. The
//!    deque's reference is the task's only owning one among the domains: no registry has it.
//! 2. **Wake a peer.** After the push the owner issues a SeqCst fence and reads the deque's
//!    length; if it holds one task (it was empty, or thieves emptied it), the owner wakes one
//!    sleeping peer ([`DomainShared::wake_if_sleeping`]). A domain about to sleep stores
//!    `sleeping = true` (SeqCst), then looks at every peer's deque (each look has a SeqCst fence
//!    between its reads of the two ends) and does not sleep if one holds a task. Store, fence,
//!    load on both sides: either the owner's fence comes first in the fences' total order, and
//!    the sleeper's look sees the task, or the sleeper's comes first, and the owner reads the
//!    front index the sleeper saw or a later one (so a length of at most 1) and then its
//!    `sleeping` flag set: no domain sleeps through stealable work. The length check keeps a
//!    burst of spawns to one wake scan; the fence is paid on every spawn of a multi-domain
//!    runtime (a one-domain runtime has no deque: its spawns are as before).
//! 3. **Run in order.** The owner's loop, popping a marker, pops the deque's front: the oldest
//!    never-started task still there. If thieves took it, the marker finds nothing and is
//!    skipped. Each push of step 1 adds a marker and a steal takes a task but leaves its
//!    marker, so markers do not fall behind the deque's tasks, but for a batch of step 5, whose
//!    count may come out low if thieves take from it meanwhile; and the loop also pops the
//!    deque whenever its run queue is empty, so a task without a marker still runs. Tasks of one domain thus start in spawn
//!    order, interleaved with started tasks as before; only a steal lets a later task start
//!    ahead of started tasks queued between its marker and an earlier, stolen one's.
//! 4. **Take ownership.** Whoever gets a task out of a deque (the owner in step 3, a thief in
//!    step 5) moves the reference straight into its own registry before anything else runs on
//!    its thread ([`Local::register`]), and the task starts there. Started tasks and pinned
//!    tasks are never in a deque, so they never move.
//! 5. **Steal.** An idle domain (nothing in its run queue, its inbox or its own deque) picks the
//!    peer whose deque is longest and takes half of its tasks, at most 32, in one CAS
//!    (`steal_batch_and_pop`): the first into its registry and run queue (step 4), the rest
//!    into its own deque with one marker each, where they stay stealable by others. If it found
//!    nothing it spins, then sleeps, as below; the spin watches its own `attention` only (a
//!    task just spawned is usually about to run on its spawner's domain), and the look before
//!    sleeping (step 2) sends it back here if a peer's deque has a task by then.
//!
//! Why no task is lost or run twice: a task is in exactly one place at every moment, one
//! deque, a thief's hands between the CAS and step 4 (on that thread, with no switch), or one
//! registry, and only the winner of the front CAS moves it out of a deque. Every task is
//! counted as spawned before step 1 and as finished only when it ends, so
//! [`RuntimeShared::all_finished`] stays false while any task sits in a deque or in a thief's
//! hands. The shutdown (`shutdown`) stops a deque's task when it enters a registry: step 4
//! sets its stop if that domain is ending, and a domain that has not seen the end yet runs it
//! and stops it with its other tasks when it does; an ending domain queues new tasks in its
//! registry directly (step 1 does not apply), so its own stop pass sees them.
//!
//! Rejected alternatives: work *requesting* (the previous design), where an idle domain asked
//! a busy one, which handed half of its never-started tasks over from its loop: no atomics on
//! the spawn path, but a task that never yields keeps the work behind it from ever being handed
//! over. A run queue shared under a lock: a lock on every spawn and every first run. Checking
//! emptiness before the push (no fence): a thief could empty the deque between that look and
//! the push, and a peer then sleep through it.
//!
//! ## Many cores
//!
//! What each hot path touches that another domain may also touch (the machines this is
//! measured on have 2 cores; the rest is the model the code is written to):
//!
//! | path | state shared with other domains | cost when many domains run it at once |
//! |------|--------------------------------|----------------------------------------|
//! | spawn from a task, one domain | none but the target queue: task and thread ids come from per-domain blocks (one shared `fetch_add` per 64 or 256 spawns), the stack pool, task cache and registry are the domain's own, the spawn count lives on the domain's own line ([`OwnLine`]); the arena's depot (a mutex) is visited once per 64 stacks, and only by a domain whose pool over- or underflows | flat |
//! | spawn from a task, several domains | as above, plus the domain's deque: a store of its back index, a SeqCst fence, a read of its front index (written by thieves); the first run pops it with one `lock xadd` on the front index | flat while nobody steals; thieves contend on one victim's front index only |
//! | a spawn that leaves the deque with one task | reads the peers' `sleeping` flags until one is asleep, and wakes that one only | one line per peer read, not per spawn of a burst |
//! | park, yield, unpark on the same domain | none | flat |
//! | unpark from another domain or thread | the target domain's inbox mutex, `attention` and `sleeping` (one line) | contended only when many domains wake tasks of one domain at once |
//! | an idle domain | the peers' deque ends (read), one victim's front index (one CAS per batch of up to 32), the epoch of crossbeam's deque (pinned per steal), the runtime's `spinning` counter | off the hot paths |
//!
//! No idle herd: a push that leaves one task in a deque wakes one sleeper, and thieves that
//! lose the CAS to each other retry on the longest deque. What a 16- to 64-core machine would
//! still show, and the remedy each would take: the per-domain inbox mutex under a fan-in of
//! wake-ups (an intrusive MPSC list drained with one swap); the shutdown's `all_finished`,
//! which sums two counters per domain (once per shutdown round, not per task); and thieves
//! scanning every peer's deque (a random victim, as Go does, beyond some count of domains).

use std::cell::{Cell, RefCell};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicPtr, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crossbeam_deque::{Stealer, Worker};

mod doorbell;
mod ending;
mod idle;
mod queues;

pub(crate) use doorbell::DUMP;
#[cfg(all(test, bobine_loom))]
pub(crate) use doorbell::Doorbell as ModelDoorbell;
use doorbell::{Doorbell, INBOX};

pub(crate) use queues::TaskPtr;
use queues::{MARKER, Registry, RunQueue};

use super::park::Unparker;
use super::reactor::Poller;
use super::runtime::RuntimeShared;
use super::shutdown::Watch;
use super::task::{CachedTask, Task, TaskCache};
use super::timers::Timers;
use crate::stack::Pool;
use crate::switch::Suspend;

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

/// A domain's deque of never-started, non-pinned tasks (see "Work stealing").
type Stealable = Worker<Arc<Task>>;

/// The part of a domain that other threads use.
pub(crate) struct DomainShared {
    pub(crate) index: usize,
    inbox: Mutex<Vec<Arc<Task>>>,
    /// INBOX | DUMP, and `sleeping` (the wake-up protocol's flags).
    bell: Doorbell,
    pub(crate) stop: AtomicBool,
    /// Set when the domain has shut down for good (shutdown step 5): nothing polls its epoll
    /// any more, so descriptors registered there must register elsewhere.
    pub(crate) closed: AtomicBool,
    /// The thieves' end of the domain's stealable deque (see "Work stealing").
    stealer: Stealer<Arc<Task>>,
    /// The owner's end of that deque, until the domain's thread takes it (`Local::new`).
    worker: Mutex<Option<Stealable>>,
    poller: Poller,
    /// The OS thread id of the domain's thread (0 until it runs): for the stall report's look
    /// at `/proc`, and the monitor's census of threads.
    pub(crate) tid: AtomicI32,
    /// The task an inspector is reading (`sched::inspect`, the inspection protocol), or null:
    /// the domain does not let that task's memory go while it is set.
    pub(crate) inspected: AtomicPtr<Task>,
    /// Serialises inspectors (the monitor, `diag::dump` callers) of this domain.
    pub(crate) inspect_lock: Mutex<()>,
    /// Dump requests waiting for this domain's answer (`sched::inspect`).
    pub(crate) dump_requests: Mutex<Vec<Arc<super::inspect::DumpRequest>>>,
    /// What only the domain's own thread writes, on a cache line of its own: the fields above
    /// are written by other threads (wakers, thieves), and sharing a line with them would make
    /// every spawn and every task's end bounce it between cores.
    pub(crate) own: OwnLine,
}

/// The fields of a [`DomainShared`] that only its domain's thread writes (others read them).
#[repr(align(128))]
pub(crate) struct OwnLine {
    /// Tasks spawned by this domain's tasks (wherever they run). The shutdown compares the sum
    /// over domains, plus the spawns from other threads, with the sum of `finished`.
    pub(crate) spawned: AtomicU64,
    /// Tasks that ended (or were abandoned) here.
    pub(crate) finished: AtomicU64,
    /// The task the domain is running right now, or null while it is in its scheduler
    /// (relaxed; for the monitor's stall watch and the inspection protocol).
    pub(crate) running: AtomicPtr<Task>,
    /// Resumes of tasks so far: tells a task that keeps the domain from one that is resumed
    /// again and again.
    pub(crate) resumes: AtomicU64,
    /// Sleeps in epoll so far (bumped as each begins): the monitor's proof that a domain slept
    /// all along between two looks.
    pub(crate) naps: AtomicU64,
    /// The domain sleeps with no deadline: no timer of its own can wake it.
    pub(crate) asleep_forever: AtomicBool,
}

impl DomainShared {
    pub(crate) fn new(index: usize) -> std::io::Result<Self> {
        let worker = Worker::new_fifo();
        Ok(DomainShared {
            index,
            inbox: Mutex::new(Vec::new()),
            bell: Doorbell::new(),
            stop: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            stealer: worker.stealer(),
            worker: Mutex::new(Some(worker)),
            poller: Poller::new()?,
            tid: AtomicI32::new(0),
            inspected: AtomicPtr::new(std::ptr::null_mut()),
            inspect_lock: Mutex::new(()),
            dump_requests: Mutex::new(Vec::new()),
            own: OwnLine {
                spawned: AtomicU64::new(0),
                finished: AtomicU64::new(0),
                running: AtomicPtr::new(std::ptr::null_mut()),
                resumes: AtomicU64::new(0),
                naps: AtomicU64::new(0),
                asleep_forever: AtomicBool::new(false),
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

    fn notify(&self) {
        if self.bell.ring_inbox() {
            self.poller.wake();
        }
    }

    /// Asks the domain for its part of a task dump: the wake-up protocol's steps 1-2, with the
    /// DUMP bit instead of INBOX.
    pub(crate) fn request_dump(&self, request: Arc<super::inspect::DumpRequest>) {
        self.dump_requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(request);
        if self.bell.ring(DUMP) {
            self.poller.wake();
        }
    }

    /// Clears DUMP before the dump requests are taken.
    pub(crate) fn clear_dump(&self) {
        self.bell.clear_dump();
    }

    /// Whether wake-ups or dump requests wait in the inbox (for the monitor).
    pub(crate) fn has_mail(&self) -> bool {
        self.bell.mail_pending()
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
    /// Never-started, non-pinned tasks, which idle domains may take (see "Work stealing").
    stealable: Stealable,
    /// Whether the runtime has other domains (else nobody could steal: no deque is used).
    peers: bool,
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
    /// The domain's coarse clock: the last `Instant::now` it read (every few rounds, and when
    /// idle), for the task dump's waiting times.
    pub(crate) clock: Cell<Instant>,
    /// Mirror of `shared.own.resumes`.
    resumes: Cell<u64>,
    /// What the shutdown has seen and done on this domain.
    pub(crate) watch: RefCell<Watch>,
}

impl Local {
    pub(crate) fn new(rt: Arc<RuntimeShared>, index: usize) -> Local {
        let stealable = rt.domains[index]
            .worker
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .expect("one Local per domain");
        Local {
            peers: rt.domains.len() > 1,
            stealable,
            shared: rt.domains[index].clone(),
            rt,
            run_queue: RunQueue::default(),
            timers: RefCell::new(Timers::default()),
            registry: RefCell::new(Registry::default()),
            stacks: RefCell::new(Pool::default()),
            task_cache: RefCell::new(TaskCache::default()),
            countdown: Cell::new(MAINTENANCE_INTERVAL),
            spin_credit: Cell::new(0),
            ids: Cell::new((0, 0)),
            parked_unwinding: Cell::new(0),
            finished: Cell::new(0),
            spawned: Cell::new(0),
            task_ids: Cell::new((0, 0)),
            deferred: Cell::new(0),
            closing: Cell::new(false),
            clock: Cell::new(Instant::now()),
            resumes: Cell::new(0),
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
        !self.run_queue.is_empty()
            || self.shared.bell.peek() & INBOX != 0
            || !self.stealable.is_empty()
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
        // SAFETY: `gettid` has no preconditions.
        let tid = unsafe { libc::gettid() };
        self.shared.tid.store(tid, Ordering::Release);
        let prev = super::LOCAL.with(|l| l.replace(self));
        EnterGuard { prev }
    }

    /// Takes a never-started task that is new to this domain (spawned here, or handed over
    /// through the inbox) and queues it: on the stealable deque if other domains may take it
    /// (work stealing, step 1), else in the registry and the run queue.
    #[inline]
    pub(crate) fn adopt(&self, task: Arc<Task>) {
        debug_assert!(!task.is_started());
        if self.peers && !task.pinned && !self.closing.get() {
            self.stealable.push(task);
            self.run_queue.push(MARKER);
            // Work stealing, step 2: the Dekker pair with a peer about to sleep.
            std::sync::atomic::fence(Ordering::SeqCst);
            if self.stealable.len() <= 1 {
                self.wake_idle_peer();
            }
            return;
        }
        let ptr = self.register(task);
        self.run_queue.push(ptr);
    }

    /// Makes the registry the owner of a never-started task that is to run here (work
    /// stealing, step 4), and returns the queue's pointer to it.
    #[inline]
    fn register(&self, task: Arc<Task>) -> TaskPtr {
        let ptr = NonNull::from(&*task);
        let slot = self.registry.borrow_mut().insert(task);
        // SAFETY: the registry now owns the task, which lives until it is removed from there.
        let t = unsafe { ptr.as_ref() };
        t.set_slot(slot);
        if self.closing.get() {
            // The runtime is ending: the task is stopped as it arrives (shutdown step 2).
            t.cancelled.store(true, Ordering::Release);
        }
        ptr
    }

    /// Calls `f` with every task waiting in our stealable deque (for the task dump): each is
    /// taken out and put back in turn, so the deque's order stays; a thief may take some
    /// meanwhile, and then they are not seen.
    pub(crate) fn each_stealable(&self, mut f: impl FnMut(&Task)) {
        let mut held = Vec::with_capacity(self.stealable.len());
        while let Some(t) = self.stealable.pop() {
            f(&t);
            held.push(t);
        }
        for t in held {
            self.stealable.push(t);
        }
    }

    /// The oldest never-started task still in our stealable deque, now owned by the registry.
    #[inline]
    fn take_stealable(&self) -> Option<TaskPtr> {
        let task = self.stealable.pop()?;
        Some(self.register(task))
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
                let now = Instant::now();
                self.clock.set(now);
                if !self.timers.borrow().is_empty() {
                    self.fire_timers(now);
                }
                // I/O readiness, so that sockets are served while tasks keep us busy.
                self.shared.poller.poll_busy();
            }
            let attention = self.shared.bell.peek();
            if attention != 0 {
                if attention & INBOX != 0 {
                    self.drain_inbox();
                }
                if attention & DUMP != 0 {
                    self.answer_dumps();
                }
            }
            let next = match self.run_queue.pop() {
                // Work stealing, step 3: a marker takes the oldest task left in the deque, or
                // nothing if thieves took it.
                Some(p) if p == MARKER => match self.take_stealable() {
                    Some(task) => Some(task),
                    None => continue,
                },
                Some(task) => Some(task),
                // Tasks a thief moved here beyond its markers (see `try_steal`).
                None => self.take_stealable(),
            };
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
        // For the monitor's stall watch (relaxed stores to our own line, no fence).
        let own = &self.shared.own;
        let resumes = self.resumes.get() + 1;
        self.resumes.set(resumes);
        own.resumes.store(resumes, Ordering::Relaxed);
        own.running.store(ptr.as_ptr(), Ordering::Relaxed);
        let outcome = fiber.resume();
        // Inspection protocol, step D2 (`sched::inspect`).
        own.running.store(std::ptr::null_mut(), Ordering::Relaxed);
        super::set_current(std::ptr::null());
        match outcome {
            Some(Suspend::Yield) => self.run_queue.push(ptr),
            Some(Suspend::Park) => {
                // Park protocol, step 4.
                if task.park.is_armed() {
                    task.parked.set(true);
                    task.parked_at.set(Some(self.clock.get()));
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

    /// Whether the run queue and the stealable deque are empty.
    pub(crate) fn nothing_to_run(&self) -> bool {
        self.run_queue.has_no_task() && self.stealable.is_empty()
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
