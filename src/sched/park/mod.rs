//! park / unpark: the one blocking primitive every face is built on.
//!
//! A waiter (a task, or a plain OS thread outside any task) *arms* a [`Park`], publishes the
//! [`Unparker`] it hands out wherever a waker will find it (a wait queue, a timer, a join list),
//! then *waits*. Any thread may call [`Unparker::unpark`]; exactly one wake-up per park wins.
//!
//! ## The park word
//!
//! Every waiter owns one `AtomicU64` (layout in [`word`]):
//!
//! | state  | meaning                                         | who may leave it, to what              |
//! |--------|-------------------------------------------------|----------------------------------------|
//! | IDLE   | no park in progress                             | the waiter itself: -> ARMED            |
//! | ARMED  | park announced, unparkers of this gen are live  | a waker, or the waiter itself (timeout, interruption, a superseded or dropped park): -> IDLE(gen+1, reason) |
//!
//! `reason` is written by the winner ([`Wake`]). An [`Unparker`]
//! carries the generation it was made for, so a stale one (a timer that fires after the task
//! was woken by something else, a second wake) finds a different generation and does nothing:
//! that is how "wakes exactly once" holds without removing anything.
//!
//! The word says nothing of where the task is. That is the domain's business, kept in a
//! `parked` flag on the task that only the domain's thread touches: set when the task has
//! switched out to park and nobody has queued it since.
//!
//! ## Protocol (task)
//!
//! 1. `Park::new` stores `(g, ARMED)`; only the waiter writes the word while it is IDLE. A
//!    waiter has one live park at a time: arming a new one retires an older armed one first
//!    (it ends as [`Wake::Superseded`]). A park dropped without waiting retires its generation
//!    the way a waker would (its unparkers go stale), so an abandoned park never leaks into the
//!    next one.
//! 2. The waiter publishes `Unparker{g}` (the publication's own lock or release orders step 1).
//! 3. `Park::wait`: if the word already left `(g, ARMED)`, return its reason without switching.
//!    If the task was asked to stop, do what [`stop::decide`] says. Otherwise register the
//!    deadline (a timer holding another `Unparker{g}`) and switch to the scheduler with
//!    `Suspend::Park`.
//! 4. The scheduler, now on its own stack, loads the word (no read-modify-write): still
//!    `(g, ARMED)` -> it sets the task's `parked` flag and leaves it off every queue; already
//!    woken -> it queues the task again at once.
//! 5. A waker CASes `(g, ARMED) -> (g+1, IDLE, reason)`; one CAS per generation succeeds. The
//!    winner then asks the task's domain to queue it: directly when it runs on that domain's
//!    thread, else through the domain's inbox (see `sched::domain`).
//! 6. The domain's thread, for such a request (and for every inbox entry of a started task),
//!    queues the task only if `parked` is set and the word is no longer ARMED, clearing
//!    `parked`. Any other request is stale (the task saw its wake before switching, in step 3
//!    or 4, or was queued already) and is dropped.
//!
//! Steps 4 and 6 run on the same thread, so they need no atomics between them; a waker that
//! CASes while step 4 runs has its request handled in step 6, after step 4 (the inbox is only
//! drained by that thread between two tasks). A wake-up is never lost: the task either sees it
//! in step 3 or 4, or is `parked` when the request is handled. A task is never queued twice:
//! only a request that finds `parked` set queues it, and it clears the flag.
//!
//! Rejected alternative: a PARKED state committed with a CAS by the scheduler after the switch,
//! which the waker replaces and then requeues. It is also correct, but costs one more atomic
//! read-modify-write on every park.
//!
//! ## Protocol (plain OS thread)
//!
//! Steps 1, 2 and 5 are the same; the thread waits in `std::thread::park(_timeout)` until its
//! word leaves ARMED, and a waker calls `Thread::unpark` after its CAS. On a timeout the thread
//! itself CASes `(g, ARMED) -> (g+1, IDLE, TIMED_OUT)`; if that fails a waker won. A plain
//! thread is never stopped.
//!
//! ## Which entry point
//!
//! Every wait is described by a [`Wait`]: why (`reason`, for reports), its [`WaitKind`] (what
//! a stop does to it, see [`stop`]) and its deadline.
//!
//! | entry point                         | use it when                                                        | cost |
//! |-------------------------------------|--------------------------------------------------------------------|------|
//! | [`Park::new`] + [`Park::wait_for`]  | the waiter hands out several unparkers, or keeps the park across calls (joins, scopes, event syncs, the blocking pool); also the public API (`Park::wait`, `wait_until`) | one reference count on the task |
//! | [`park_current`]                    | one unparker, published by a closure under the primitive's lock (the wait queue's `wait_in`) | the same, no `Park` object |
//! | [`park_current_borrowed`]           | exactly one waker, which the waiter can withdraw under a lock (the CML channel shorthands) | no reference count |
//! | [`Park::wait_polling`]              | a plain thread must also watch descriptors (an event sync with readiness leaves); for a task it is `wait_for` | a `poll(2)` per wait |

use std::os::fd::RawFd;
use std::panic::Location;
use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::reactor::poll::{PollWake, PolledPark};
use super::task::{ParkSite, Task};
use crate::switch::Suspend;

pub(crate) mod stop;
pub(crate) mod token;
mod word;

pub(crate) use word::ParkWord;
pub use word::Wake;

/// What a stop (cancellation, or the runtime ending) does to a wait: see [`stop`]'s table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WaitKind {
    /// Something must hand the waiter what it waits for (a lock, a permit, a message, a join,
    /// a commit). A stop unwinds the task out of it; a task that is already unwinding (a
    /// destructor) keeps waiting.
    HandOver,
    /// Readiness or time (I/O, sleep): the wait may end early with an error. At shutdown such
    /// waits are the first to be given up.
    Soft,
    /// Never cut short, even by a stop: the waiter's frame is borrowed by others until they end
    /// (a scope waiting for its tasks).
    Uninterruptible,
}

/// One wait, described: why (shown in reports), what a stop does to it, and until when.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Wait {
    pub(crate) reason: &'static str,
    pub(crate) kind: WaitKind,
    pub(crate) deadline: Option<Instant>,
}

impl Wait {
    /// A wait for a hand-over (see [`WaitKind::HandOver`]), with no deadline.
    pub(crate) const fn hand_over(reason: &'static str) -> Wait {
        Wait {
            reason,
            kind: WaitKind::HandOver,
            deadline: None,
        }
    }

    /// A wait for readiness or time (see [`WaitKind::Soft`]), with no deadline.
    pub(crate) const fn soft(reason: &'static str) -> Wait {
        Wait {
            reason,
            kind: WaitKind::Soft,
            deadline: None,
        }
    }

    /// A wait no stop may cut short (see [`WaitKind::Uninterruptible`]).
    pub(crate) const fn uninterruptible(reason: &'static str) -> Wait {
        Wait {
            reason,
            kind: WaitKind::Uninterruptible,
            deadline: None,
        }
    }

    /// The same wait, ending at `deadline` (`None`: no deadline).
    pub(crate) const fn until(mut self, deadline: Option<Instant>) -> Wait {
        self.deadline = deadline;
        self
    }
}

/// The parking state of a plain OS thread (a thread that is not running a task).
pub(crate) struct ThreadParker {
    word: ParkWord,
    thread: std::thread::Thread,
    /// How a waker interrupts the thread when it waits in `poll(2)` (a sync with readiness
    /// leaves) rather than in `std::thread::park`.
    poll: PollWake,
}

impl ThreadParker {
    fn new() -> ThreadParker {
        ThreadParker {
            word: ParkWord::new(),
            thread: std::thread::current(),
            poll: PollWake::new(),
        }
    }

    /// The waker's side of a wake-up, after its CAS won: unpark the thread, and interrupt its
    /// `poll(2)` if it polls.
    fn notify(&self) {
        self.thread.unpark();
        self.poll.notify();
    }
}

thread_local! {
    static THREAD_PARKER: Arc<ThreadParker> = Arc::new(ThreadParker::new());
}

/// This thread's parker; a fresh one while the thread's locals are being destroyed (a
/// destructor that blocks on a bobine lock then still works).
fn thread_parker() -> Arc<ThreadParker> {
    THREAD_PARKER
        .try_with(Arc::clone)
        .unwrap_or_else(|_| Arc::new(ThreadParker::new()))
}

#[derive(Clone)]
enum Target {
    Task(Arc<Task>),
    /// A task woken by exactly one known waker, which is done with it once it has woken it (see
    /// [`park_current_borrowed`]): no reference count.
    TaskRef(NonNull<Task>),
    Thread(Arc<ThreadParker>),
}

// SAFETY: `Task` is `Send + Sync`; a `TaskRef` is only made by `park_current_borrowed`, whose
// contract keeps the task alive for every use of the unparker, from whichever thread.
unsafe impl Send for Target {}
// SAFETY: as above.
unsafe impl Sync for Target {}

impl Target {
    fn word(&self) -> &ParkWord {
        match self {
            Target::Task(t) => &t.park,
            // SAFETY: as in `Unparker::wake`: alive while its one waker holds it.
            Target::TaskRef(t) => unsafe { &t.as_ref().park },
            Target::Thread(t) => &t.word,
        }
    }
}

/// Wakes one park of one waiter, from any thread. Cloning it does not multiply wake-ups: the
/// first `unpark` of any clone wins, the others do nothing.
#[derive(Clone)]
pub struct Unparker {
    target: Target,
    gen_: u64,
}

impl Unparker {
    /// Wakes the waiter if this park is still pending. Returns whether this call woke it.
    pub fn unpark(&self) -> bool {
        self.wake(Wake::Unparked)
    }

    pub(crate) fn wake(&self, why: Wake) -> bool {
        match &self.target {
            Target::Task(task) => {
                let woke = task.park.wake(self.gen_, why);
                if woke {
                    super::schedule(task);
                }
                woke
            }
            Target::TaskRef(task) => {
                // SAFETY: per `park_current_borrowed`, the task is alive while its one waker
                // holds this unparker; `schedule_woken_ref` says how long that lasts.
                unsafe { super::schedule_woken_ref(*task, |t| t.park.wake(self.gen_, why)) }
            }
            Target::Thread(t) => {
                let woke = t.word.wake(self.gen_, why);
                if woke {
                    t.notify();
                }
                woke
            }
        }
    }

    /// Wakes the waiter to hand it what it waited for (a lock, a permit, a notification):
    /// true if the waiter has it (woken now, or its park ended meanwhile and it will find
    /// itself chosen), false if it is a task the shutdown abandoned, which never will (the
    /// caller hands it to the next waiter). Looking at the task only when the wake fails keeps
    /// it out of the waker's cache in the common case.
    pub(crate) fn hand_over(&self) -> bool {
        self.unpark() || !self.is_dead()
    }

    /// Whether the waiter is a task the shutdown abandoned (it ended without ever leaving its
    /// wait): a waker skips it and hands what it would have handed over to the next waiter.
    ///
    /// Not merely finished: a waiter that a waker unlinked may run to its end between the
    /// unlink and the waker's look (its park ended by a stop, on another thread), having taken
    /// what it was handed, or passed it on as it unwound. Handing that to the next waiter as
    /// well would duplicate it (two holders of a mutex, a permit more).
    pub(crate) fn is_dead(&self) -> bool {
        match &self.target {
            Target::Task(t) => t.abandoned.load(Ordering::Acquire),
            // SAFETY: as in `wake`: alive while its one waker holds it (an abandoned task is
            // never freed).
            Target::TaskRef(t) => unsafe { t.as_ref() }.abandoned.load(Ordering::Acquire),
            Target::Thread(_) => false,
        }
    }

    /// The domain the waiter runs on, as an address to compare with
    /// [`current_domain_addr`](crate::sched::current_domain_addr); 0 for a plain OS thread. A
    /// primitive uses it to tell a waiter of the caller's own domain (which cannot run before
    /// the caller yields or parks) from one that may run at once.
    pub(crate) fn domain_addr(&self) -> usize {
        match &self.target {
            Target::Task(t) => Arc::as_ptr(t.domain()) as usize,
            // SAFETY: as in `wake`: alive while its one waker holds it.
            Target::TaskRef(t) => Arc::as_ptr(unsafe { t.as_ref() }.domain()) as usize,
            Target::Thread(_) => 0,
        }
    }

    /// Whether the park this unparker belongs to is still waiting.
    pub(crate) fn is_pending(&self) -> bool {
        self.target.word().outcome(self.gen_).is_none()
    }

    /// Whether two unparkers wake the same waiter.
    pub(crate) fn same_waiter(&self, other: &Unparker) -> bool {
        match (&self.target, &other.target) {
            (Target::Task(a), Target::Task(b)) => Arc::ptr_eq(a, b),
            (Target::TaskRef(a), Target::TaskRef(b)) => a == b,
            (Target::Thread(a), Target::Thread(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl std::fmt::Debug for Unparker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.target {
            Target::Task(t) => write!(f, "Unparker(task {}, gen {})", t.thread_id, self.gen_),
            Target::TaskRef(_) => write!(f, "Unparker(task, gen {})", self.gen_),
            Target::Thread(_) => write!(f, "Unparker(thread, gen {})", self.gen_),
        }
    }
}

/// One armed park of the current task or thread. `!Send`: it must be waited on where it was
/// made.
///
/// A waiter has one live park at a time: making another one (directly, or through any blocking
/// call such as `join` or `sleep`) supersedes the first, whose `wait` then returns
/// [`Wake::Superseded`] at once.
///
/// In a task that is being stopped (its runtime is ending), `wait` unwinds the task (its
/// destructors run) instead of returning, unless an unparker woke it first; see the crate's
/// README on shutdown.
pub struct Park {
    target: Target,
    gen_: u64,
    _not_send: std::marker::PhantomData<*const ()>,
}

impl Default for Park {
    fn default() -> Self {
        Self::new()
    }
}

impl Park {
    /// Arms a park for the current task, or for the current OS thread outside any task.
    pub fn new() -> Park {
        let target = match super::current_task() {
            Some(task) => Target::Task(task),
            None => Target::Thread(thread_parker()),
        };
        let gen_ = target.word().arm();
        Park {
            target,
            gen_,
            _not_send: std::marker::PhantomData,
        }
    }

    /// A handle that ends this park.
    pub fn unparker(&self) -> Unparker {
        Unparker {
            target: self.target.clone(),
            gen_: self.gen_,
        }
    }

    /// Blocks until unparked.
    ///
    /// # Panics
    ///
    /// As [`Park::wait_until`].
    #[track_caller]
    pub fn wait(self, reason: &'static str) -> Wake {
        self.wait_until(reason, None)
    }

    /// Blocks until unparked or until `deadline`.
    ///
    /// # Panics
    ///
    /// If called by another task or thread than the one that made the park (a `Park` is
    /// `!Send`, but a `spawn_local` task could still capture another task's park).
    #[track_caller]
    pub fn wait_until(self, reason: &'static str, deadline: Option<Instant>) -> Wake {
        let why = self.wait_for(&Wait::hand_over(reason).until(deadline));
        if why == Wake::Interrupted {
            // A stop: what an unparker hands over is settled by its `unpark` result.
            stop::unwind_if_stopped();
        }
        why
    }

    /// Blocks as `wait` describes (see the module doc's entry points). A stop ends the wait
    /// `Interrupted` with the stop pending: the caller settles its wait (keeps what was handed
    /// to it, or withdraws), then calls [`stop::unwind_if_stopped`].
    #[track_caller]
    pub(crate) fn wait_for(self, wait: &Wait) -> Wake {
        let site = Location::caller();
        self.check_mine(site);
        // Dropping `self` afterwards does nothing: the generation has ended.
        match &self.target {
            Target::Task(task) => wait_task(task, self.gen_, wait, site),
            Target::Thread(t) => wait_thread(t, self.gen_, wait.deadline),
            Target::TaskRef(_) => unreachable!("a Park holds a counted target"),
        }
    }

    /// [`Park::wait_for`] that also ends (as `Unparked`) when one of `fds` is ready, for a
    /// plain OS thread, which has no domain to watch them: it waits in `poll(2)`. A task's
    /// descriptors must be watched through its domain (the caller registers them); for a task
    /// this is `wait_for`.
    #[track_caller]
    pub(crate) fn wait_polling(self, wait: &Wait, fds: &[(RawFd, libc::c_short)]) -> Wake {
        match &self.target {
            Target::Thread(t) if !fds.is_empty() => {
                self.check_mine(Location::caller());
                wait_thread_polling(t, self.gen_, wait.deadline, fds)
            }
            _ => self.wait_for(wait),
        }
    }

    /// Refuses a wait by another task or thread than the one that made the park.
    #[track_caller]
    fn check_mine(&self, site: &'static Location<'static>) {
        let mine = match &self.target {
            Target::Task(task) => {
                super::with_current(|c| std::ptr::eq(c, Arc::as_ptr(task))).unwrap_or(false)
            }
            Target::Thread(t) => {
                super::with_current(|_| ()).is_none()
                    && THREAD_PARKER
                        .try_with(|me| Arc::ptr_eq(me, t))
                        .unwrap_or(t.thread.id() == std::thread::current().id())
            }
            Target::TaskRef(_) => unreachable!("a Park holds a counted target"),
        };
        assert!(
            mine,
            "bobine: a Park must be waited on by the task or thread that made it (at {site})"
        );
    }
}

impl Drop for Park {
    /// A park dropped without waiting (an early return after arming) retires its generation:
    /// `(g, ARMED) -> (g+1, IDLE)`, so its unparkers go stale and the next park starts clean.
    fn drop(&mut self) {
        self.target.word().wake(self.gen_, Wake::Superseded);
    }
}

/// Parks the running task (or the current thread) once, without a [`Park`] object: arms the
/// park word, hands an [`Unparker`] to `publish` (which queues it wherever wakers look), then
/// waits as `wait` describes. The wait queue uses this.
///
/// If `publish` panics, the armed generation is retired before the panic goes on.
#[track_caller]
pub(crate) fn park_current(wait: &Wait, publish: impl FnOnce(Unparker)) -> Wake {
    park_current_inner(wait, false, publish)
}

/// Like [`park_current`], with an unparker that holds no reference count on the task.
///
/// # Safety
///
/// The unparker handed to `publish` must reach exactly one waker, kept where the task itself
/// can withdraw it, and the task must not leave the wait while that waker may still hold it
/// unused: it leaves only once woken (the waker's CAS is the last thing it does to the task,
/// see [`super::schedule_woken_ref`]) or after withdrawing the unparker. The channel shorthands
/// guarantee this with the channel lock: the waker takes the unparker out of the queued waiter
/// and wakes it under that lock, and a waiter that gives up (or unwinds) withdraws under it.
#[track_caller]
#[inline(always)]
pub(crate) unsafe fn park_current_borrowed(wait: &Wait, publish: impl FnOnce(Unparker)) -> Wake {
    park_current_inner(wait, true, publish)
}

/// Inlined into its callers (the task's path is a few instructions), so that the unparker
/// reaches `publish` in registers rather than through memory.
#[track_caller]
#[inline(always)]
fn park_current_inner(wait: &Wait, borrowed: bool, publish: impl FnOnce(Unparker)) -> Wake {
    let site = Location::caller();
    let current = super::current_ptr();
    if current.is_null() {
        return park_thread(wait, publish);
    }
    // SAFETY: the running task is alive while it runs, and this frame is on its stack.
    let task = unsafe { &*current };
    let gen_ = task.park.arm();
    let retire = RetireOnUnwind(&task.park, gen_);
    let target = if borrowed {
        Target::TaskRef(NonNull::from(task))
    } else {
        Target::Task(task.arc())
    };
    publish(Unparker { target, gen_ });
    std::mem::forget(retire);
    wait_task(task, gen_, wait, site)
}

/// [`park_current`] for a plain OS thread.
#[inline(never)]
fn park_thread(wait: &Wait, publish: impl FnOnce(Unparker)) -> Wake {
    let t = thread_parker();
    let gen_ = t.word.arm();
    let retire = RetireOnUnwind(&t.word, gen_);
    publish(Unparker {
        target: Target::Thread(t.clone()),
        gen_,
    });
    std::mem::forget(retire);
    wait_thread(&t, gen_, wait.deadline)
}

/// Retires an armed generation if the code between arming and waiting unwinds.
struct RetireOnUnwind<'a>(&'a ParkWord, u64);

impl Drop for RetireOnUnwind<'_> {
    fn drop(&mut self) {
        self.0.wake(self.1, Wake::Superseded);
    }
}

/// Steps 3 and 4 for a task, with the stop decision of [`stop`]. A stop ends the park
/// `Interrupted` with the stop pending (`Task::stop_pending`): the caller settles its wait and
/// unwinds ([`stop::unwind_if_stopped`]).
fn wait_task(task: &Task, gen_: u64, wait: &Wait, site: &'static Location<'static>) -> Wake {
    task.stop_pending.set(false);
    task.known_clear.set(false);
    if let Some(why) = task.park.outcome(gen_) {
        return why;
    }
    if task.is_cancelled() {
        let unwinding = super::task_unwinding(task);
        if let Some(why) = act_on_stop(task, gen_, wait, unwinding, site) {
            return why;
        }
    }
    if let Some(d) = wait.deadline {
        if d <= Instant::now() {
            if task.park.wake(gen_, Wake::TimedOut) {
                return Wake::TimedOut;
            }
            return task.park.outcome(gen_).unwrap_or(Wake::Unparked);
        }
        super::with_local(|local| {
            local.add_timer(
                d,
                Unparker {
                    target: Target::Task(task.arc()),
                    gen_,
                },
            )
        });
    }
    // The stress mode's point (see `sched::perturb`): one relaxed load when it is off.
    if super::perturb::enabled() {
        super::perturb::task_point(task);
    }
    task.set_park_site(Some(ParkSite {
        reason: wait.reason,
        kind: wait.kind,
        location: site,
    }));
    task.suspend(Suspend::Park);
    task.set_park_site(None);
    if task.deferred.get() {
        super::with_local(|local| local.parked_stop_settled(task));
    }
    let why = task
        .park
        .outcome(gen_)
        .expect("a parked task resumed before it was woken");
    if wait.deadline.is_some() && why != Wake::TimedOut {
        super::with_local(|local| local.timer_went_stale());
    }
    if why == Wake::Interrupted && task.is_cancelled() {
        // Woken by the stop (its domain saw that the task is not unwinding), or by the
        // shutdown giving soft waits up. The generation is over: whatever the table says now,
        // the wait ends here.
        let unwinding = if task.known_clear.replace(false) {
            stop::Unwinding::No
        } else {
            super::task_unwinding(task)
        };
        return act_on_stop(task, gen_, wait, unwinding, site).unwrap_or(why);
    }
    why
}

/// Carries out [`stop::decide`] for a stopped task at a park of generation `gen_`: `None` to
/// keep waiting, `Some(why)` to end the wait, or it abandons the task.
fn act_on_stop(
    task: &Task,
    gen_: u64,
    wait: &Wait,
    unwinding: stop::Unwinding,
    site: &'static Location<'static>,
) -> Option<Wake> {
    let (ending, soft_given_up) = super::with_local(|l| l.shutdown_state());
    match stop::decide(task, wait.kind, unwinding, ending, soft_given_up) {
        stop::OnStop::Wait | stop::OnStop::Defer => None,
        stop::OnStop::GiveUp => {
            task.given_up.set(task.given_up.get() + 1);
            task.park.wake(gen_, Wake::Interrupted);
            super::shutdown::report_given_up(task, wait.reason, site);
            Some(Wake::Interrupted)
        }
        stop::OnStop::Raise => {
            task.park.wake(gen_, Wake::Interrupted);
            task.stop_pending.set(true);
            Some(Wake::Interrupted)
        }
        stop::OnStop::Abandon => {
            task.park.wake(gen_, Wake::Superseded);
            let what = format!("it waited again in {}", wait.reason);
            stop::abandon(task, &what, Some(site))
        }
    }
}

/// Like [`wait_thread`], but the thread waits in `poll(2)` on `fds` as well (each with its
/// `poll` events): a descriptor becoming ready ends the park as `Unparked`.
fn wait_thread_polling(
    t: &ThreadParker,
    gen_: u64,
    deadline: Option<Instant>,
    fds: &[(RawFd, libc::c_short)],
) -> Wake {
    struct Polled<'a>(&'a ParkWord, u64);
    impl PolledPark for Polled<'_> {
        fn ended(&self) -> bool {
            self.0.outcome(self.1).is_some()
        }
        fn end(&self, timed_out: bool) -> bool {
            let why = if timed_out {
                Wake::TimedOut
            } else {
                Wake::Unparked
            };
            self.0.wake(self.1, why)
        }
    }
    t.poll.wait(&Polled(&t.word, gen_), fds, deadline);
    t.word
        .outcome(gen_)
        .expect("a polling wait returns once its park has ended")
}

fn wait_thread(t: &ThreadParker, gen_: u64, deadline: Option<Instant>) -> Wake {
    loop {
        if let Some(why) = t.word.outcome(gen_) {
            return why;
        }
        super::perturb::os_point();
        match deadline {
            None => std::thread::park(),
            Some(d) => {
                let now = Instant::now();
                if now >= d {
                    if t.word.wake(gen_, Wake::TimedOut) {
                        return Wake::TimedOut;
                    }
                    continue;
                }
                std::thread::park_timeout(d - now);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A park superseded by a newer one of the same waiter ends as `Superseded`, not as a
    /// wake-up.
    #[test]
    fn a_superseded_park_says_so() {
        let first = Park::new();
        let second = Park::new();
        assert_eq!(first.wait("test"), Wake::Superseded);
        let u = second.unparker();
        assert!(u.unpark());
        assert_eq!(second.wait("test"), Wake::Unparked);
    }

    /// A wake-up that lands between arming and waiting is not lost: `wait` returns at once.
    #[test]
    fn unpark_before_wait_is_kept() {
        let park = Park::new();
        let u = park.unparker();
        assert!(u.is_pending());
        assert!(u.unpark());
        assert!(!u.unpark(), "a park is woken once");
        assert_eq!(park.wait("test"), Wake::Unparked);
        assert!(!u.is_pending());
    }
}
