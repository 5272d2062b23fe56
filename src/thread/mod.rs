//! The std-like face: `std::thread`'s API, with tasks instead of OS threads.
//!
//! Change `use std::thread` to `use bobine::thread` and the program runs its threads as tasks:
//! `spawn` returns a [`JoinHandle`] whose `join` parks the caller, `scope` lets tasks borrow the
//! caller's stack, `sleep` and `yield_now` let the other tasks of the domain run.
//!
//! Called outside any runtime (from a plain thread), `spawn` starts the task on a global runtime
//! that is started on first use, so `bobine::thread::spawn` works without wrapping `main`.
//!
//! The rest of `std::thread` sits in submodules: [`park`]/[`park_timeout`]/[`Thread::unpark`]
//! and [`available_parallelism`] (`park.rs`), a [`JoinHandle`] awaited as a future
//! (`future.rs`), and task-locals, [`task_local!`](crate::task_local) (`local.rs`).
//!
//! This module owns the std-like task root (a task's value or panic becomes its `JoinHandle`'s
//! result), the handles, and scopes. It spawns through `sched::runtime::spawn_raw` and waits
//! through `sched::park`; it must not touch the scheduler's queues.

use std::any::Any;
use std::cell::UnsafeCell;
use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::mem::ManuallyDrop;
use std::num::NonZeroU64;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::sched::park::stop::catch_at_root;
use crate::sched::park::token::Token;
use crate::sched::park::{Park, Unparker, Wait};
use crate::sched::runtime::{RuntimeShared, SpawnOptions, current_runtime, spawn_raw};
use crate::sched::task::{Task, TaskDropped};
use crate::util::SpinLock;

mod future;
mod local;
mod park;

pub use local::{AccessError, LocalKey};
pub use park::{available_parallelism, park, park_timeout};
pub use std::thread::Result;

/// A unique identifier of a task (or of a plain OS thread seen from bobine).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ThreadId(NonZeroU64);

impl ThreadId {
    /// The id as a number; unique in the process for its whole life.
    pub fn as_u64(&self) -> NonZeroU64 {
        self.0
    }
}

impl fmt::Debug for ThreadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ThreadId({})", self.0)
    }
}

struct OsThread {
    id: ThreadId,
    name: Option<String>,
    /// The thread's wake-up token (see [`park`]).
    token: Token,
}

#[derive(Clone)]
enum Inner {
    Task(Arc<Task>),
    Os(Arc<OsThread>),
}

/// A handle to a task (or, outside any task, to the current OS thread), like `std::thread::Thread`.
#[derive(Clone)]
pub struct Thread {
    inner: Inner,
}

impl Thread {
    pub(crate) fn from_task(task: Arc<Task>) -> Thread {
        Thread {
            inner: Inner::Task(task),
        }
    }

    pub(crate) fn task(&self) -> Option<&Arc<Task>> {
        match &self.inner {
            Inner::Task(t) => Some(t),
            Inner::Os(_) => None,
        }
    }

    /// The task's unique id.
    pub fn id(&self) -> ThreadId {
        match &self.inner {
            Inner::Task(t) => ThreadId(NonZeroU64::new(t.thread_id).expect("task ids are never 0")),
            Inner::Os(o) => o.id,
        }
    }

    /// The task's name, if it was given one (the main task of `run` is `"main"`).
    pub fn name(&self) -> Option<&str> {
        match &self.inner {
            Inner::Task(t) => t.name(),
            Inner::Os(o) => o.name.as_deref(),
        }
    }
}

impl fmt::Debug for Thread {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Thread")
            .field("id", &self.id())
            .field("name", &self.name())
            .finish()
    }
}

/// The handle of the running task, or of the current OS thread outside any task.
pub fn current() -> Thread {
    if let Some(task) = crate::sched::current_task() {
        return Thread::from_task(task);
    }
    fn fresh(name: Option<String>) -> Arc<OsThread> {
        let id = crate::sched::task::reserve_thread_ids(1);
        Arc::new(OsThread {
            id: ThreadId(NonZeroU64::new(id).expect("thread ids start at 1")),
            name,
            token: Token::new(),
        })
    }
    thread_local! {
        static OS: Arc<OsThread> = fresh(std::thread::current().name().map(str::to_owned));
    }
    // While the thread's locals are being destroyed, a fresh handle (with a fresh id) stands in.
    let os = OS.try_with(Arc::clone).unwrap_or_else(|_| fresh(None));
    Thread {
        inner: Inner::Os(os),
    }
}

/// The id of the running task, or of the current OS thread outside any task, as a number
/// (cheaper than `current().id()` inside a task: no reference counting).
pub(crate) fn current_id() -> u64 {
    crate::sched::with_current(|t| t.thread_id).unwrap_or_else(|| current().id().as_u64().get())
}

/// Parks the current task for at least `d`; other tasks of its domain run meanwhile.
#[track_caller]
pub fn sleep(d: Duration) {
    crate::time::sleep(d)
}

/// Lets the other ready tasks of the domain run before this one continues (FIFO order).
#[inline]
#[track_caller]
pub fn yield_now() {
    crate::sched::yield_now()
}

/// Spawns a task, like `std::thread::spawn`.
///
/// The task starts on the caller's domain (an idle domain may take it before it starts), or
/// on the global runtime when called outside any runtime.
///
/// # Panics
///
/// When no stack can be had (the runtime's `max_tasks` is reached, or memory is exhausted), as
/// std panics when it cannot create a thread. Use [`Builder::spawn`] to get the error instead.
///
/// ```
/// let h = bobine::thread::spawn(|| 6 * 7);
/// assert_eq!(h.join().unwrap(), 42);
/// ```
pub fn spawn<F, T>(f: F) -> JoinHandle<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    Builder::new().spawn(f).expect("failed to spawn task")
}

/// Spawns a task that stays on the current domain; neither `f` nor its value need be `Send`.
///
/// # Panics
///
/// Outside a task, or when no stack can be had.
pub fn spawn_local<F, T>(f: F) -> JoinHandle<T>
where
    F: FnOnce() -> T + 'static,
    T: 'static,
{
    let opts = SpawnOptions {
        pinned: true,
        ..SpawnOptions::default()
    };
    // SAFETY: `f` is 'static; the task is pinned, so `f` never leaves this thread.
    let task = unsafe { spawn_raw(None, opts, move |task: &Task| std_root(task, f)) }
        .expect("failed to spawn task");
    JoinHandle::new(task)
}

/// The std-like task root: runs `f` and stores its value, or its panic's payload.
fn std_root<F, T>(task: &Task, f: F)
where
    F: FnOnce() -> T,
    T: 'static,
{
    let outcome = catch_at_root(task, f).map(|v| Box::new(v) as Box<dyn Any>);
    task.set_outcome(outcome);
}

/// Spawns a task of another face, whose root (`root`) catches and stores the outcome its own
/// way (see `ocaml::thread::create`), with the usual handle.
pub(crate) fn spawn_rooted<R>(opts: SpawnOptions, root: R) -> io::Result<JoinHandle<()>>
where
    R: FnOnce(&Task) + Send + 'static,
{
    // SAFETY: `root` is 'static and Send.
    let task = unsafe { spawn_raw(None, opts, root) }?;
    Ok(JoinHandle::new(task))
}

/// Task factory, like `std::thread::Builder`: a name and a stack size.
#[derive(Debug, Default)]
pub struct Builder {
    name: Option<String>,
    stack_size: Option<usize>,
}

impl Builder {
    /// A builder with no name and the runtime's default stack size.
    pub fn new() -> Builder {
        Builder::default()
    }

    /// Names the task (shown in panic messages and stack overflow reports).
    pub fn name(mut self, name: String) -> Builder {
        self.name = Some(name);
        self
    }

    /// The usable stack size of the task, in bytes (rounded up to whole pages, at least 16 KiB).
    pub fn stack_size(mut self, size: usize) -> Builder {
        self.stack_size = Some(size);
        self
    }

    /// Refuses a name with an interior NUL as std does: with a panic, when spawning.
    #[inline]
    fn check_name(&self) {
        if let Some(name) = &self.name {
            check_name_bytes(name);
        }
    }

    fn options(self) -> SpawnOptions {
        SpawnOptions {
            name: self.name,
            stack_size: self.stack_size,
            ..SpawnOptions::default()
        }
    }

    /// Spawns the task; fails with an error (never aborts) when no stack can be had.
    ///
    /// # Panics
    ///
    /// If the name contains a NUL byte, with std's message.
    ///
    /// ```
    /// let h = bobine::thread::Builder::new().name("worker".into()).spawn(|| {
    ///     bobine::thread::current().name().map(str::to_owned)
    /// }).unwrap();
    /// assert_eq!(h.join().unwrap().as_deref(), Some("worker"));
    /// ```
    pub fn spawn<F, T>(self, f: F) -> io::Result<JoinHandle<T>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.check_name();
        // SAFETY: `f` is 'static and Send.
        let task =
            unsafe { spawn_raw(None, self.options(), move |task: &Task| std_root(task, f)) }?;
        Ok(JoinHandle::new(task))
    }

    /// Spawns a scoped task with this builder's settings.
    ///
    /// # Panics
    ///
    /// If the name contains a NUL byte, with std's message.
    pub fn spawn_scoped<'scope, 'env, F, T>(
        self,
        scope: &'scope Scope<'scope, 'env>,
        f: F,
    ) -> io::Result<ScopedJoinHandle<'scope, T>>
    where
        F: FnOnce() -> T + Send + 'scope,
        T: Send + 'scope,
    {
        self.check_name();
        scope.spawn_with(self, f)
    }
}

/// An owned permission to join a task, like `std::thread::JoinHandle`. Dropping it detaches
/// the task.
///
/// It is also a [`Future`] (an extension): async code may `.await` a
/// task, for the same result as [`join`](JoinHandle::join) gives (see the `future` module).
pub struct JoinHandle<T> {
    thread: ManuallyDrop<Thread>,
    /// A poll registered a waker with the task (see the `future` module).
    waker_registered: bool,
    /// A poll returned the outcome: polling again panics.
    completed: bool,
    _value: PhantomData<T>,
}

/// No field is structurally pinned: a pending `JoinHandle` may move between polls.
impl<T> Unpin for JoinHandle<T> {}

impl<T> JoinHandle<T> {
    pub(crate) fn new(task: Arc<Task>) -> Self {
        JoinHandle {
            thread: ManuallyDrop::new(Thread::from_task(task)),
            waker_registered: false,
            completed: false,
            _value: PhantomData,
        }
    }

    pub(crate) fn task(&self) -> &Arc<Task> {
        self.thread.task().expect("a join handle refers to a task")
    }

    /// The task's [`Thread`] handle.
    pub fn thread(&self) -> &Thread {
        &self.thread
    }

    /// Whether the task has ended (its value or panic is ready).
    pub fn is_finished(&self) -> bool {
        self.task().is_finished()
    }

    /// Cancels the task (an extension: std's threads cannot be cancelled). Returns at once;
    /// the task unwinds from the blocking call it is parked in, or from its next one, so its
    /// destructors run and what it holds is released; a task that has not started never runs.
    /// [`join`](JoinHandle::join) then gives `Err` with a [`TaskCancelled`](crate::TaskCancelled) payload.
    ///
    /// A task that computes without blocking is not interrupted (tasks are cooperative): it
    /// unwinds at its next blocking call, yield included, or finishes normally if it makes
    /// none, and then `join` gives its value. A hand-over that already reached the task (a
    /// lock, a message, a signal) is kept: the task unwinds at its next park point instead,
    /// so nothing handed to it is lost. Cancelling twice, or a finished task, does nothing.
    ///
    /// ```
    /// use std::time::Duration;
    /// let h = bobine::thread::spawn(|| bobine::thread::sleep(Duration::from_secs(3600)));
    /// h.cancel();
    /// assert!(h.join().unwrap_err().is::<bobine::TaskCancelled>());
    /// ```
    pub fn cancel(&self) {
        crate::sched::park::stop::cancel(self.task());
    }
}

impl<T: 'static> JoinHandle<T> {
    /// Waits for the task to end (parking the caller) and returns its value, or the payload of
    /// its panic as `Err` ([`TaskCancelled`](crate::TaskCancelled) for a cancelled task, [`TaskDropped`] for a task
    /// its runtime stopped).
    ///
    /// # Panics
    ///
    /// If the handle was already awaited to completion (as a future).
    #[track_caller]
    pub fn join(mut self) -> Result<T> {
        assert!(!self.completed, "JoinHandle joined after completion");
        // A joiner stopped here unwinds; its handle is dropped on the way (detaching the task).
        self.task().wait_finished("JoinHandle::join");
        // SAFETY: `self` is forgotten right after, so `thread` is neither used nor dropped again.
        let thread = unsafe { ManuallyDrop::take(&mut self.thread) };
        let waker_registered = self.waker_registered;
        std::mem::forget(self);
        let Inner::Task(task) = thread.inner else {
            unreachable!("a join handle refers to a task")
        };
        if waker_registered {
            task.remove_join_waker();
        }
        let outcome = take_outcome(&task);
        crate::sched::release(task);
        outcome
    }
}

/// The outcome of a finished task, for its handle (`join`, or a poll): its value, or the
/// payload of its panic or stop.
fn take_outcome<T: 'static>(task: &Task) -> Result<T> {
    match task.take_outcome() {
        Some(Ok(value)) => Ok(*(value as Box<dyn Any>)
            .downcast::<T>()
            .expect("task value of the joined type")),
        Some(Err(payload)) => Err(payload),
        None => Err(Box::new(TaskDropped)),
    }
}

impl<T> Drop for JoinHandle<T> {
    fn drop(&mut self) {
        // SAFETY: `thread` is not used after this point.
        let thread = unsafe { ManuallyDrop::take(&mut self.thread) };
        if let Inner::Task(task) = thread.inner {
            if self.waker_registered && !self.completed {
                // A pending future dropped: its waker is not woken any more.
                task.remove_join_waker();
            }
            if !self.completed {
                // A value nobody joined is dropped here, by whoever drops the handle (std does
                // the same), or by the task itself if it has not finished yet.
                drop(task.detach());
            }
            crate::sched::release(task);
        }
    }
}

impl<T> fmt::Debug for JoinHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinHandle")
            .field("thread", &self.thread)
            .finish()
    }
}

/// Creates a scope in which tasks may borrow from the caller's stack; every task spawned in it
/// is joined before `scope` returns, like `std::thread::scope`.
///
/// The scope's tasks run on the caller's runtime (the global one for a plain thread), whichever
/// thread spawns them: a `&Scope` handed to a plain thread spawns there too. The caller never
/// returns or unwinds before they have all ended, even when its runtime is ending (it waits
/// for them while they are stopped).
///
/// # Panics
///
/// If `f` panics, or if a scoped task panicked and was not joined (std's rule).
///
/// ```
/// let mut counts = [0u32; 4];
/// bobine::run(|| {
///     bobine::thread::scope(|s| {
///         for c in counts.iter_mut() {
///             s.spawn(move || *c += 1);
///         }
///     });
/// });
/// assert_eq!(counts, [1; 4]);
/// ```
#[track_caller]
pub fn scope<'env, F, T>(f: F) -> T
where
    F: for<'scope> FnOnce(&'scope Scope<'scope, 'env>) -> T,
{
    let scope = Scope {
        data: Arc::new(ScopeData {
            running: AtomicUsize::new(0),
            unjoined_panics: AtomicUsize::new(0),
            waiter: SpinLock::new(None),
        }),
        rt: current_runtime(),
        _scope: PhantomData,
        _env: PhantomData,
    };
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&scope)));
    scope.data.wait_all();
    match result {
        Err(payload) => std::panic::resume_unwind(payload),
        Ok(_) if scope.data.unjoined_panics.load(Ordering::Acquire) > 0 => {
            panic!("a scoped thread panicked")
        }
        Ok(value) => value,
    }
}

struct ScopeData {
    running: AtomicUsize,
    unjoined_panics: AtomicUsize,
    waiter: SpinLock<Option<Unparker>>,
}

impl ScopeData {
    fn task_done(&self) {
        if self.running.fetch_sub(1, Ordering::AcqRel) == 1 {
            if let Some(w) = self.waiter.lock().take() {
                w.unpark();
            }
        }
    }

    /// Waits until every task of the scope has ended. Uninterruptible: the tasks borrow the
    /// caller's frame, so even a caller that is being stopped waits for them (they are stopped
    /// too, and end).
    #[track_caller]
    fn wait_all(&self) {
        while self.running.load(Ordering::Acquire) > 0 {
            let park = Park::new();
            *self.waiter.lock() = Some(park.unparker());
            if self.running.load(Ordering::Acquire) == 0 {
                break;
            }
            park.wait_for(&Wait::uninterruptible("thread::scope"));
        }
    }
}

/// A scope's count of a spawned task: given back when the task ends, or when its closure is
/// dropped without running (its spawn failed, or its runtime stopped it before it ran).
struct Ticket(Arc<ScopeData>);

impl Drop for Ticket {
    fn drop(&mut self) {
        self.0.task_done();
    }
}

/// A scope to spawn borrowing tasks in; see [`scope`].
pub struct Scope<'scope, 'env: 'scope> {
    data: Arc<ScopeData>,
    /// The runtime of the scope's owner: every scoped task runs there.
    rt: Arc<RuntimeShared>,
    _scope: PhantomData<&'scope mut &'scope ()>,
    _env: PhantomData<&'env mut &'env ()>,
}

impl<'scope> Scope<'scope, '_> {
    /// Spawns a task that may borrow anything that outlives the scope.
    ///
    /// # Panics
    ///
    /// When no stack can be had.
    pub fn spawn<F, T>(&'scope self, f: F) -> ScopedJoinHandle<'scope, T>
    where
        F: FnOnce() -> T + Send + 'scope,
        T: Send + 'scope,
    {
        self.spawn_with(Builder::new(), f)
            .expect("failed to spawn scoped task")
    }

    fn spawn_with<F, T>(
        &'scope self,
        builder: Builder,
        f: F,
    ) -> io::Result<ScopedJoinHandle<'scope, T>>
    where
        F: FnOnce() -> T + Send + 'scope,
        T: Send + 'scope,
    {
        let packet = Arc::new(Packet {
            result: UnsafeCell::new(None),
        });
        let their_packet = packet.clone();
        let data = self.data.clone();
        data.running.fetch_add(1, Ordering::AcqRel);
        let ticket = Ticket(data.clone());
        let body = move |task: &Task| {
            let result = catch_at_root(task, f);
            if counts_as_panic(&result) {
                data.unjoined_panics.fetch_add(1, Ordering::AcqRel);
            }
            // SAFETY: the joiner reads the packet only after the task finished.
            unsafe { *their_packet.result.get() = Some(result) };
            drop(their_packet);
            task.set_outcome(Ok(Box::new(())));
            // Last: the owner may return (and end the borrows) as soon as this is given back.
            drop(ticket);
        };
        // SAFETY: `scope` waits for every task it spawned before the borrows of 'scope end (a
        // task holds its ticket until its body is done, or until its closure is dropped), and
        // `f` is Send.
        let task = unsafe { spawn_raw(Some(&self.rt), builder.options(), body) }?;
        Ok(ScopedJoinHandle {
            thread: Thread::from_task(task),
            packet,
            scope: self.data.clone(),
            _scope: PhantomData,
        })
    }
}

impl fmt::Debug for Scope<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scope")
            .field("running", &self.data.running.load(Ordering::Relaxed))
            .finish()
    }
}

/// Whether a scoped task's outcome makes its scope panic unless joined: a panic does (std's
/// rule); being stopped by the runtime does not.
fn counts_as_panic<T>(outcome: &Result<T>) -> bool {
    outcome.as_ref().is_err_and(|p| !p.is::<TaskDropped>())
}

struct Packet<T> {
    result: UnsafeCell<Option<Result<T>>>,
}

// SAFETY: the result is written once by the task and read once by the joiner after the task
// has finished (the FINISHED release/acquire orders them); `T: Send` crosses between them.
unsafe impl<T: Send> Sync for Packet<T> {}

/// An owned permission to join a scoped task.
pub struct ScopedJoinHandle<'scope, T> {
    thread: Thread,
    packet: Arc<Packet<T>>,
    scope: Arc<ScopeData>,
    _scope: PhantomData<&'scope ()>,
}

impl<T> ScopedJoinHandle<'_, T> {
    /// The task's [`Thread`] handle.
    pub fn thread(&self) -> &Thread {
        &self.thread
    }

    /// Whether the task has ended.
    pub fn is_finished(&self) -> bool {
        self.thread.task().is_some_and(|t| t.is_finished())
    }

    /// Waits for the task and returns its value, or its panic payload as `Err` (a joined
    /// panic does not make the scope panic).
    #[track_caller]
    pub fn join(self) -> Result<T> {
        let task = self
            .thread
            .task()
            .expect("a scoped handle refers to a task");
        task.wait_finished("ScopedJoinHandle::join");
        // SAFETY: the task has finished writing the packet (FINISHED acquire in wait_finished).
        match unsafe { (*self.packet.result.get()).take() } {
            Some(result) => {
                if counts_as_panic(&result) {
                    // The panic is handled by whoever joined it.
                    self.scope.unjoined_panics.fetch_sub(1, Ordering::AcqRel);
                }
                result
            }
            None => Err(Box::new(TaskDropped)),
        }
    }
}

impl<T> fmt::Debug for ScopedJoinHandle<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScopedJoinHandle")
            .field("thread", &self.thread)
            .finish()
    }
}

/// Panics as std does for a thread name with an interior NUL (std's message, with the
/// `NulError`). Out of line: a named spawn allocates its name anyway, and an unnamed one (the
/// common case) then only tests for `None`.
#[cold]
#[inline(never)]
fn check_name_bytes(name: &str) {
    if name.contains('\0') {
        std::ffi::CString::new(name.as_bytes())
            .expect("thread name may not contain interior null bytes");
    }
}
