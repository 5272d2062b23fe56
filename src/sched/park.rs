//! park / unpark: the one blocking primitive every face is built on.
//!
//! A waiter (a task, or a plain OS thread outside any task) *arms* a [`Park`], publishes the
//! [`Unparker`] it hands out wherever a waker will find it (a wait queue, a timer, a join list),
//! then *waits*. Any thread may call [`Unparker::unpark`]; exactly one wake-up per park wins.
//!
//! ## The park word
//!
//! Every waiter owns one `AtomicU64`:
//!
//! ```text
//!  63                                   4 3      2 1     0
//! +--------------------------------------+--------+-------+
//! |              generation              | reason | state |
//! +--------------------------------------+--------+-------+
//! ```
//!
//! | state  | meaning                                         | who may leave it, to what              |
//! |--------|-------------------------------------------------|----------------------------------------|
//! | IDLE   | no park in progress                             | the waiter itself: -> ARMED            |
//! | ARMED  | park announced, unparkers of this gen are live  | a waker, or the waiter itself (timeout, interruption, a superseded or dropped park): -> IDLE(gen+1, reason) |
//!
//! `reason` is written by the winner: 1 unparked, 2 timed out, 3 interrupted. An [`Unparker`]
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
//!    waiter has one live park at a time: arming a new one retires an older armed one first. A park
//!    dropped without waiting retires its generation the way a waker would (its unparkers go
//!    stale), so an abandoned park never leaks into the next one.
//! 2. The waiter publishes `Unparker{g}` (the publication's own lock or release orders step 1).
//! 3. `Park::wait`: if the word already left `(g, ARMED)`, return its reason without switching.
//!    Otherwise register the deadline (a timer holding another `Unparker{g}`) and switch to the
//!    scheduler with `Suspend::Park`.
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
//! itself CASes `(g, ARMED) -> (g+1, IDLE, TIMED_OUT)`; if that fails a waker won.

use std::os::fd::RawFd;
use std::panic::Location;
use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use super::reactor::poll::{PollWake, PolledPark};
use super::task::Task;

const STATE_MASK: u64 = 0b11;
const IDLE: u64 = 0;
const ARMED: u64 = 1;
const REASON_SHIFT: u32 = 2;
const GEN_SHIFT: u32 = 4;

/// Why a park ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wake {
    /// An [`Unparker`] woke the waiter.
    Unparked,
    /// The deadline passed first.
    TimedOut,
    /// The waiting task was interrupted (cancellation).
    Interrupted,
}

impl Wake {
    fn code(self) -> u64 {
        match self {
            Wake::Unparked => 1,
            Wake::TimedOut => 2,
            Wake::Interrupted => 3,
        }
    }
    fn from_word(w: u64) -> Wake {
        match (w >> REASON_SHIFT) & 0b11 {
            2 => Wake::TimedOut,
            3 => Wake::Interrupted,
            _ => Wake::Unparked,
        }
    }
}

/// The atomic word of one waiter (see the module doc for its states).
pub(crate) struct ParkWord(AtomicU64);

impl ParkWord {
    pub(crate) const fn new() -> Self {
        ParkWord(AtomicU64::new(0))
    }

    /// Step 1: announce a park; returns its generation. A park of this waiter that is still
    /// armed (made and not yet waited on or dropped) is superseded: its generation is retired
    /// as if woken, so its unparkers go stale and waiting on it returns at once.
    fn arm(&self) -> u64 {
        let mut w = self.0.load(Ordering::Relaxed);
        if w & STATE_MASK != IDLE {
            self.wake(w >> GEN_SHIFT, Wake::Unparked);
            w = self.0.load(Ordering::Relaxed);
        }
        let gen_ = w >> GEN_SHIFT;
        self.0.store(gen_ << GEN_SHIFT | ARMED, Ordering::Relaxed);
        gen_
    }

    fn armed(gen_: u64) -> u64 {
        gen_ << GEN_SHIFT | ARMED
    }

    /// Whether a park is armed (step 4 and 6: a task whose word is not armed was woken).
    pub(crate) fn is_armed(&self) -> bool {
        self.0.load(Ordering::Acquire) & STATE_MASK == ARMED
    }

    /// Step 5: wakes generation `gen_`. Returns whether this call woke it (false when the
    /// generation is stale or already woken).
    fn wake(&self, gen_: u64, why: Wake) -> bool {
        let mut w = self.0.load(Ordering::Acquire);
        loop {
            if w != Self::armed(gen_) {
                return false;
            }
            let next = (gen_ + 1) << GEN_SHIFT | why.code() << REASON_SHIFT | IDLE;
            match self
                .0
                .compare_exchange_weak(w, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return true,
                Err(now) => w = now,
            }
        }
    }

    /// Wakes whatever generation is armed right now (interruption).
    fn wake_current(&self, why: Wake) -> bool {
        let w = self.0.load(Ordering::Acquire);
        self.wake(w >> GEN_SHIFT, why)
    }

    /// Moves the word past an armed generation without waking anyone: called when a
    /// task ends, so that an unparker that outlives it can never reschedule it.
    pub(crate) fn retire(&self) {
        let w = self.0.load(Ordering::Acquire);
        if w & STATE_MASK != IDLE {
            self.wake(w >> GEN_SHIFT, Wake::Interrupted);
        }
    }

    /// The outcome of generation `gen_`, if it has ended.
    fn outcome(&self, gen_: u64) -> Option<Wake> {
        let w = self.0.load(Ordering::Acquire);
        if w == Self::armed(gen_) {
            None
        } else {
            Some(Wake::from_word(w))
        }
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
            Target::Task(t) => write!(f, "Unparker(task {}, gen {})", t.id, self.gen_),
            Target::TaskRef(_) => write!(f, "Unparker(task, gen {})", self.gen_),
            Target::Thread(_) => write!(f, "Unparker(thread, gen {})", self.gen_),
        }
    }
}

/// Interrupts the park `task` is in right now (if any), and every later one: used by
/// cancellation. Returns whether this call cancelled the task (false if it was already).
///
/// The wake itself happens on the task's domain thread, between two of its tasks: directly
/// when the caller runs there, else when the domain drains the request from its inbox. There
/// the task is not running, so its `cancelled` flag and its park word are read in program
/// order with its own writes: a park armed just before the request is woken, and a park armed
/// after it sees `cancelled` (no store-buffering race between two threads).
///
/// This is the hook structured concurrency (the Miou face) builds on; until then only the tests
/// call it.
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) fn interrupt(task: &Arc<Task>) -> bool {
    let first = !task.cancelled.swap(true, Ordering::AcqRel);
    // A task that has not started cannot be parked; it sees `cancelled` at its first park.
    if task.is_started() {
        super::schedule(task);
    }
    first
}

/// The domain thread's half of [`interrupt`]: wakes the park of a cancelled task, if armed.
pub(crate) fn interrupt_pending(task: &Task) {
    if task.cancelled.load(Ordering::Acquire) {
        task.park.wake_current(Wake::Interrupted);
    }
}

/// One armed park of the current task or thread. `!Send`: it must be waited on where it was
/// made.
///
/// A waiter has one live park at a time: making another one (directly, or through any blocking
/// call such as `join` or `sleep`) supersedes the first, whose `wait` then returns at once.
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
        let gen_ = match &target {
            Target::Task(t) => t.park.arm(),
            Target::Thread(t) => t.word.arm(),
            Target::TaskRef(_) => unreachable!("a Park holds a counted target"),
        };
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
    #[track_caller]
    pub fn wait(self, reason: &'static str) -> Wake {
        self.wait_until(reason, None)
    }

    /// [`Park::wait_until`] that also ends (as `Unparked`) when one of `fds` is ready, for a
    /// plain OS thread, which has no domain to watch them: it waits in `poll(2)`. A task's
    /// descriptors must be watched through its domain (the caller registers them); for a task
    /// this is `wait_until`.
    #[track_caller]
    pub(crate) fn wait_polling(
        self,
        reason: &'static str,
        deadline: Option<Instant>,
        fds: &[(RawFd, libc::c_short)],
    ) -> Wake {
        match &self.target {
            Target::Thread(t) if !fds.is_empty() => {
                let t = t.clone();
                let gen_ = self.gen_;
                let why = wait_thread_polling(&t, gen_, deadline, fds);
                drop(self);
                why
            }
            _ => self.wait_until(reason, deadline),
        }
    }

    /// Blocks until unparked or until `deadline`.
    ///
    /// # Panics
    ///
    /// If called by another task or thread than the one that made the park (a `Park` is
    /// `!Send`, but a `spawn_local` task could still capture another task's park).
    #[track_caller]
    pub fn wait_until(self, reason: &'static str, deadline: Option<Instant>) -> Wake {
        let site = Location::caller();
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
        match &self.target {
            Target::Task(task) => wait_task(task, self.gen_, reason, site, deadline),
            Target::Thread(t) => wait_thread(t, self.gen_, deadline),
            Target::TaskRef(_) => unreachable!("a Park holds a counted target"),
        }
    }
}

/// Parks the running task (or the current thread) once, without a [`Park`] object: arms the
/// park word, hands an [`Unparker`] to `publish` (which queues it wherever wakers look), then
/// waits. The waiting primitives use this: it saves the reference count a `Park` holds on its
/// task, since the running task is alive for as long as this frame runs.
///
/// If `publish` panics, the armed generation is retired before the panic goes on.
#[track_caller]
pub(crate) fn park_current(
    reason: &'static str,
    deadline: Option<Instant>,
    publish: impl FnOnce(Unparker),
) -> Wake {
    park_current_inner(reason, deadline, false, publish)
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
/// and wakes it under that lock, and a waiter that gives up withdraws under it.
#[track_caller]
pub(crate) unsafe fn park_current_borrowed(
    reason: &'static str,
    deadline: Option<Instant>,
    publish: impl FnOnce(Unparker),
) -> Wake {
    park_current_inner(reason, deadline, true, publish)
}

#[track_caller]
fn park_current_inner(
    reason: &'static str,
    deadline: Option<Instant>,
    borrowed: bool,
    publish: impl FnOnce(Unparker),
) -> Wake {
    let site = Location::caller();
    let current = super::current_ptr();
    if !current.is_null() {
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
        wait_task(task, gen_, reason, site, deadline)
    } else {
        let t = thread_parker();
        let gen_ = t.word.arm();
        let retire = RetireOnUnwind(&t.word, gen_);
        publish(Unparker {
            target: Target::Thread(t.clone()),
            gen_,
        });
        std::mem::forget(retire);
        wait_thread(&t, gen_, deadline)
    }
}

/// Retires an armed generation if the code between arming and waiting unwinds.
struct RetireOnUnwind<'a>(&'a ParkWord, u64);

impl Drop for RetireOnUnwind<'_> {
    fn drop(&mut self) {
        self.0.wake(self.1, Wake::Unparked);
    }
}

impl Drop for Park {
    /// A park dropped without waiting (an early return after arming) retires its generation:
    /// `(g, ARMED) -> (g+1, IDLE)`, so its unparkers go stale and the next park starts clean.
    /// After a wait the generation has already moved on and this does nothing.
    fn drop(&mut self) {
        let word = match &self.target {
            Target::Task(t) => &t.park,
            Target::Thread(t) => &t.word,
            Target::TaskRef(_) => unreachable!("a Park holds a counted target"),
        };
        word.wake(self.gen_, Wake::Unparked);
    }
}

fn wait_task(
    task: &Task,
    gen_: u64,
    reason: &'static str,
    site: &'static Location<'static>,
    deadline: Option<Instant>,
) -> Wake {
    if let Some(why) = task.park.outcome(gen_) {
        return why;
    }
    if task.forcing.get() {
        // The runtime is ending and is unwinding this task: a destructor that blocks gets
        // `Interrupted` at once instead of a switch (nothing would ever resume it).
        task.park.wake(gen_, Wake::Interrupted);
        return Wake::Interrupted;
    }
    if std::thread::panicking() {
        panic!(
            "bobine: task {} tried to block ({reason}, at {site}) while it is unwinding from a \
             panic; blocking in a destructor during a panic is not supported",
            task.describe()
        );
    }
    if task.cancelled.load(Ordering::Acquire) {
        if task.park.wake(gen_, Wake::Interrupted) {
            return Wake::Interrupted;
        }
        return task.park.outcome(gen_).unwrap_or(Wake::Unparked);
    }
    if let Some(d) = deadline {
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
    task.set_park_site(Some((reason, site)));
    task.suspend(crate::switch::Suspend::Park);
    task.set_park_site(None);
    let why = task
        .park
        .outcome(gen_)
        .expect("a parked task resumed before it was woken");
    if deadline.is_some() && why != Wake::TimedOut {
        super::with_local(|local| local.timer_went_stale());
    }
    why
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

impl Unparker {
    /// Whether the park this unparker belongs to is still waiting.
    pub(crate) fn is_pending(&self) -> bool {
        let word = match &self.target {
            Target::Task(t) => &t.park,
            // SAFETY: as in `wake`: alive while its one waker holds it.
            Target::TaskRef(t) => unsafe { &t.as_ref().park },
            Target::Thread(t) => &t.word,
        };
        word.outcome(self.gen_).is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// The cancellation hook: an interrupted park ends with `Interrupted`, and every later park
    /// of that task ends at once the same way, without switching.
    #[test]
    fn interrupt_wakes_current_park_and_every_later_one() {
        crate::Builder::new().domains(2).run(|| {
            let slot: Arc<Mutex<Option<Arc<Task>>>> = Arc::new(Mutex::new(None));
            let slot2 = slot.clone();
            let h = crate::thread::spawn(move || {
                *slot2.lock().unwrap() = crate::sched::current_task();
                let first = Park::new().wait("test");
                let second = Park::new().wait_until("test", None);
                let third = Park::new().wait_until(
                    "test",
                    Some(Instant::now() + std::time::Duration::from_secs(3600)),
                );
                (first, second, third)
            });
            let task = loop {
                if let Some(t) = slot.lock().unwrap().clone() {
                    break t;
                }
                crate::thread::yield_now();
            };
            // Let the task reach its park, then interrupt it.
            crate::thread::sleep(std::time::Duration::from_millis(20));
            assert!(interrupt(&task));
            assert_eq!(
                h.join().unwrap(),
                (Wake::Interrupted, Wake::Interrupted, Wake::Interrupted)
            );
        });
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
