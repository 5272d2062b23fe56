//! The task tree: one [`Node`] per Miou task, attached to its kernel task as face data, with
//! its parent, its live children and the resources it owns; and how a task ends.
//!
//! ## Who touches what
//!
//! - `children`: only the node's own task (spawn, await, cancel, its end), so without a lock:
//!   every caller reaches it through the running task's own node (`with_current_node`,
//!   `current`, or the task's root), never through a promise or a parent link.
//! - `resources`: the owner's task, and a child that hands one back with `transfer` (another
//!   task, maybe on another domain): under a spin lock.
//! - `cancelled`, `succeeded`, `ended`: atomics, written by the parent (`cancel`) and the
//!   task itself (its end), read by the parent (and `ended` by whoever holds a promise).
//! - `parent`, `run`: plain pointers up, read by the node's own task only (see [`Node`]).
//!
//! ## How a task ends (its root, [`Launch::run`])
//!
//! 1. The body runs under the kernel's root catch. If it unwinds (a panic, or a
//!    cancellation: the kernel's stop), its destructors run in the unwind; then, once the
//!    unwind is caught, the task cancels every live child (all of them first, then waits for
//!    each: a subtree is torn down in parallel) and runs the finalisers of what it owns,
//!    newest first. The waits for children are uninterruptible (a parent never ends before
//!    its children), and the whole tear-down runs as the task's last words
//!    (`stop::last_words`): a stop does not cut its waits short.
//!
//!    Not in the unwind itself, from a drop guard: a task switched out mid-unwind leaves its
//!    domain's panic count raised, and the kernel cannot then tell whether a stopped task of
//!    that domain is unwinding, so it defers its stop; a parent waiting mid-unwind for a
//!    child cancelled on its own domain would wait for ever.
//! 2. If the body returns, the rules are checked (unless the task was cancelled meanwhile: it
//!    then ends as in step 1): a live child breaks rule 1, an owned resource rule 8. Either
//!    aborts the run ([`RunState::abort`]): the error is recorded and the main task is
//!    cancelled, which tears the whole tree down from the top. The task then cleans up as in
//!    step 1 and ends with the error.
//! 3. The outcome (the value, or the [`Error`] as an `Err` payload) is stored in the kernel
//!    task for the parent's `await_`, the node tells its orphans collector (if any) that it
//!    has ended, and the kernel finishes the task.
//!
//! A child cancelled before it started never runs its body: its closure is dropped, as the
//! task, and that drop runs step 1's clean-up (the finalisers of what it was given).
//!
//! Rejected: keeping the tree in one run-wide map under a lock. Every spawn and await would
//! take it, across domains; a node per task, whose children only its own task touches, keeps
//! the common path (a parent spawning and awaiting its own children) free of contention and
//! of shared counters.

use std::any::Any;
use std::cell::{Cell, UnsafeCell};
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use super::Error;
use super::ownership::ResourceInner;
use crate::sched::park::stop::{self, catch_at_root};
use crate::sched::task::Task;
use crate::util::SpinLock;

/// Node ids: unique in the process (orphans and resources name their owner by id). Each
/// thread reserves a block at a time, so spawns on different domains do not share a counter.
static NEXT_NODE: AtomicU64 = AtomicU64::new(1);
/// Ids a thread reserves at once.
const ID_BLOCK: u64 = 1024;
/// Nodes a parent keeps from its awaited children for its next ones (see [`Node::recycle`]).
const NODE_CACHE: usize = 1024;

thread_local! {
    /// This thread's reserved node ids: `[next, end)`.
    static IDS: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
}

/// A process-unique node id.
#[inline]
fn next_id() -> u64 {
    IDS.with(|ids| {
        let (mut next, mut end) = ids.get();
        if next == end {
            next = NEXT_NODE.fetch_add(ID_BLOCK, Ordering::Relaxed);
            end = next + ID_BLOCK;
        }
        ids.set((next + 1, end));
        next
    })
}

/// What the tasks of one Miou run share.
pub(crate) struct RunState {
    /// The error that aborted the run, if one did (the first wins).
    fatal: SpinLock<Option<Error>>,
    /// The main task, cancelled to abort the run; taken when it ends (a node cached for reuse
    /// may keep this state alive past the run, and must not keep the task, its domain and
    /// that domain's descriptors with it).
    main: SpinLock<Option<Arc<Task>>>,
    /// The signal handlers of `sys_signal`, until the main task ends.
    signals: SpinLock<Vec<(i32, crate::sched::signals::Watch)>>,
}

impl RunState {
    /// Keeps `watch` as the handler of `sig`, replacing (after it is made, so the signal never
    /// falls back to its old disposition in between) the one installed before.
    pub(crate) fn install_signal(&self, sig: i32, watch: crate::sched::signals::Watch) {
        let old = {
            let mut signals = self.signals.lock();
            match signals.iter_mut().find(|(s, _)| *s == sig) {
                Some((_, w)) => Some(std::mem::replace(w, watch)),
                None => {
                    signals.push((sig, watch));
                    None
                }
            }
        };
        // Dropped outside the lock: a drop waits for a handler call in progress.
        drop(old);
    }

    /// Removes every signal handler of the run (the signals' old dispositions come back).
    fn uninstall_signals(&self) {
        let all = std::mem::take(&mut *self.signals.lock());
        drop(all);
    }

    /// Aborts the run with `error` (rule 1 or 8): records it and cancels the main task, whose
    /// end cancels everything below it. `run` then panics with the error.
    pub(crate) fn abort(&self, error: Error) {
        {
            let mut fatal = self.fatal.lock();
            if fatal.is_none() {
                *fatal = Some(error);
            }
        }
        let main = self.main.lock().clone();
        if let Some(main) = main
            && !main.is_finished()
            && !std::ptr::eq(Arc::as_ptr(&main), crate::sched::current_ptr())
        {
            stop::cancel(&main);
        }
    }
}

/// A live child, as its parent keeps it: its node's id and its task (the parent's one
/// reference to it, which `await_` turns into the child's outcome).
struct Child {
    id: u64,
    task: Arc<Task>,
}

/// The live children of a node: a slab, so that awaiting one of many is O(1).
#[derive(Default)]
struct Children {
    slots: Vec<Option<Child>>,
    free: Vec<u32>,
    /// Nodes of awaited children, for the next children (no allocation once warm).
    spare: Vec<Arc<Node>>,
}

/// What only a node's own task touches (see the module doc): a cell with no lock.
struct OwnCell<T>(UnsafeCell<T>);

impl<T> OwnCell<T> {
    /// # Safety
    ///
    /// The caller is the task of the node this cell belongs to, and does not hold another
    /// reference from this cell (no call here re-enters).
    #[allow(clippy::mut_from_ref)]
    unsafe fn get(&self) -> &mut T {
        // SAFETY: one task at a time, by our caller's contract.
        unsafe { &mut *self.0.get() }
    }
}

// SAFETY: the cell is touched by one task only (its node's), on that task's domain thread;
// other threads only move the `Arc<Node>` holding it around.
unsafe impl<T: Send> Sync for OwnCell<T> {}

// SAFETY: the raw links are dereferenced only by the node's own task, under the invariant in
// `Node`'s doc; everything else is atomic, locked, or touched by that task only (`OwnCell`).
unsafe impl Send for Node {}
// SAFETY: as above.
unsafe impl Sync for Node {}

/// One Miou task in the tree.
///
/// Its links up (`parent`, `run`) are plain pointers, dereferenced only by the node's own
/// task, while it runs, through [`Node::parent`] and [`Node::run`]: a node's task ends only
/// once all its live children have ended (its end cancels and waits for them; `await_` and
/// `cancel` wait for the child's end), and a node is dropped or reused only once its task has
/// ended (its closure, then its task, hold it while it runs); and the run's state outlives
/// every task of the run (`run` holds it until they have all ended). So while a task runs,
/// its parent node and its run are alive. Links are not counted references because a spawn
/// and an await would each touch two more shared counters.
///
/// The fields every child touches (at its spawn, its end and its await) come first and fit,
/// with the `Arc`'s counts, in 64 bytes; the slab, the resources and the collector follow.
#[repr(C)]
pub(crate) struct Node {
    pub(crate) id: u64,
    /// The parent's id (0 for the main task): what rule 2 compares, from any thread.
    parent_id: u64,
    parent: *const Node,
    run: *const RunState,
    /// This node's index in its parent's slab (set by the parent before anyone can await it).
    slot: AtomicU32,
    /// The number of resources owned (written under `resources`' lock).
    owned: AtomicU32,
    /// The number of live children.
    live: OwnCell<u32>,
    /// Set by the parent's `cancel` (and by the tear-down of an ending parent): `await_`
    /// gives `Err(Cancelled)` whatever the task did.
    pub(crate) cancelled: AtomicBool,
    /// Set by the task at its end when its outcome is a value (`await_first` prefers those).
    pub(crate) succeeded: AtomicBool,
    /// Set when the task's body has ended (its outcome is about to be stored).
    pub(crate) ended: AtomicBool,
    children: OwnCell<Children>,
    resources: SpinLock<Vec<Arc<ResourceInner>>>,
    /// Told when the task ends, if it is an orphan.
    pub(crate) collector: Option<Arc<super::orphans::Ended>>,
}

impl Node {
    fn new(
        parent: Option<&Node>,
        spare: Option<Arc<Node>>,
        run: *const RunState,
        collector: Option<Arc<super::orphans::Ended>>,
    ) -> Arc<Node> {
        let id = next_id();
        let (parent_id, parent) = match parent {
            Some(p) => (p.id, p as *const Node),
            None => (0, std::ptr::null()),
        };
        if let Some(mut cached) = spare {
            let node = Arc::get_mut(&mut cached).expect("a cached node has no other reference");
            node.id = id;
            node.parent_id = parent_id;
            node.parent = parent;
            node.run = run;
            node.slot = AtomicU32::new(u32::MAX);
            *node.cancelled.get_mut() = false;
            *node.succeeded.get_mut() = false;
            *node.ended.get_mut() = false;
            node.collector = collector;
            return cached;
        }
        Arc::new(Node {
            id,
            parent_id,
            parent,
            run,
            slot: AtomicU32::new(u32::MAX),
            owned: AtomicU32::new(0),
            live: OwnCell(UnsafeCell::new(0)),
            cancelled: AtomicBool::new(false),
            succeeded: AtomicBool::new(false),
            ended: AtomicBool::new(false),
            children: OwnCell(UnsafeCell::new(Children::default())),
            resources: SpinLock::new(Vec::new()),
            collector,
        })
    }

    /// Keeps `child`'s node, if this is its last reference, for this node's next child (a
    /// spawn then allocates nothing for its node); other nodes are just dropped. Called by
    /// this node's task, once the child has left the tree.
    #[inline]
    pub(crate) fn recycle(&self, mut child: Arc<Node>) {
        let Some(n) = Arc::get_mut(&mut child) else {
            return;
        };
        // What the node refers to goes now, not when it is reused.
        n.parent = std::ptr::null();
        n.collector = None;
        debug_assert_eq!(*n.live.0.get_mut(), 0, "a recycled node has no live child");
        let c = n.children.0.get_mut();
        c.slots.clear();
        c.free.clear();
        c.spare.clear();
        n.resources.get_mut().clear();
        *n.owned.get_mut() = 0;
        // SAFETY: called by this node's task (its await).
        let mine = unsafe { self.children.get() };
        if mine.spare.len() < NODE_CACHE {
            mine.spare.push(child);
        }
    }

    /// A node for a new child of `self`, not in the tree yet (see [`Node::adopt`]). Called by
    /// this node's task.
    pub(crate) fn new_child(&self, collector: Option<Arc<super::orphans::Ended>>) -> Arc<Node> {
        // SAFETY: called by this node's task (its spawn).
        let spare = unsafe { self.children.get() }.spare.pop();
        Node::new(Some(self), spare, self.run, collector)
    }

    /// The node's parent, `None` for the main task. Call it only from the node's own task,
    /// while it runs (see the invariant in [`Node`]'s doc).
    pub(crate) fn parent(&self) -> Option<&Node> {
        // SAFETY: by `Node`'s invariant, the parent is alive while this node's task runs.
        unsafe { self.parent.as_ref() }
    }

    /// The state of the node's run. Call it only from the node's own task, while it runs.
    pub(crate) fn run(&self) -> &RunState {
        // SAFETY: by `Node`'s invariant, the run's state outlives its tasks.
        unsafe { &*self.run }
    }

    /// A new counted reference to this node.
    pub(crate) fn arc(&self) -> Arc<Node> {
        let ptr: *const Node = self;
        // SAFETY: every `Node` lives in an `Arc` (`Node::new` is the only constructor and
        // returns one), and `&self` proves it is alive now.
        unsafe {
            Arc::increment_strong_count(ptr);
            Arc::from_raw(ptr)
        }
    }

    /// Records a spawned child as live.
    #[inline]
    pub(crate) fn adopt(&self, node: &Node, task: Arc<Task>) {
        // SAFETY: called by this node's task (spawns go through the running task's node).
        let c = unsafe { self.children.get() };
        let i = match c.free.pop() {
            Some(i) => i,
            None => {
                c.slots.push(None);
                u32::try_from(c.slots.len() - 1).expect("fewer than 2^32 live children")
            }
        };
        node.slot.store(i, Ordering::Relaxed);
        c.slots[i as usize] = Some(Child { id: node.id, task });
        // SAFETY: as above.
        unsafe { *self.live.get() += 1 };
    }

    /// Forgets a child that was awaited or cancelled, handing back its task; `None` if it was
    /// not live (cancelled already). Called by this node's task only.
    #[inline]
    pub(crate) fn release(&self, child: &Node) -> Option<Arc<Task>> {
        let i = child.slot.load(Ordering::Relaxed);
        // SAFETY: called by this node's task (awaits and cancels go through its own node).
        let c = unsafe { self.children.get() };
        match c.slots.get_mut(i as usize) {
            Some(slot @ Some(_)) if slot.as_ref().is_some_and(|l| l.id == child.id) => {
                let live = slot.take().map(|l| l.task);
                c.free.push(i);
                // SAFETY: as above.
                unsafe { *self.live.get() -= 1 };
                live
            }
            _ => None,
        }
    }

    /// The task of `child` while it is a live child of this node. The reference stays valid
    /// as long as the child is live: only this node's own task (the caller, which must be it)
    /// removes children, in [`Node::release`] and [`Node::cancel_children`].
    #[inline]
    pub(crate) fn child_task(&self, child: &Node) -> Option<&Task> {
        let i = child.slot.load(Ordering::Relaxed) as usize;
        // SAFETY: called by this node's task; the reference into the slab ends here.
        let c = unsafe { self.children.get() };
        let task: *const Task = match c.slots.get(i) {
            Some(Some(live)) if live.id == child.id => Arc::as_ptr(&live.task),
            _ => return None,
        };
        // SAFETY: the slab's `Arc` keeps the task alive until the child is released, which
        // only the caller (this node's task) does, after it is done with the reference.
        Some(unsafe { &*task })
    }

    /// Whether `child` is a live child of this node.
    pub(crate) fn is_live_child(&self, child: &Node) -> bool {
        self.child_task(child).is_some()
    }

    /// The number of live children.
    pub(crate) fn live_children(&self) -> usize {
        // SAFETY: called by this node's task (its end).
        unsafe { *self.live.get() as usize }
    }

    /// Records `r` as owned by this node.
    pub(crate) fn own(&self, r: Arc<ResourceInner>) {
        let mut mine = self.resources.lock();
        mine.push(r);
        self.owned.store(mine.len() as u32, Ordering::Release);
    }

    /// Takes `r` out of what this node owns; `None` if it does not own it.
    pub(crate) fn unown(&self, r: &Arc<ResourceInner>) -> Option<Arc<ResourceInner>> {
        let mut mine = self.resources.lock();
        let i = mine.iter().position(|x| Arc::ptr_eq(x, r))?;
        let taken = mine.remove(i);
        self.owned.store(mine.len() as u32, Ordering::Release);
        Some(taken)
    }

    /// Whether `self` is `child`'s parent (rule 2).
    pub(crate) fn is_parent_of(&self, child: &Node) -> bool {
        child.parent_id == self.id
    }

    /// Cancels every live child and waits (uninterruptibly) until each has ended; they leave
    /// the tree.
    pub(crate) fn cancel_children(&self) {
        let kids: Vec<Arc<Task>> = {
            // SAFETY: called by this node's task (its end), or by the drop of a closure that
            // never ran (then the node has no child at all).
            let c = unsafe { self.children.get() };
            c.free.clear();
            // SAFETY: as above.
            unsafe { *self.live.get() = 0 };
            std::mem::take(&mut c.slots)
                .into_iter()
                .flatten()
                .map(|l| l.task)
                .collect()
        };
        cancel_all(&kids);
        for t in kids {
            crate::sched::release(t);
        }
    }

    /// Runs the finalisers of everything this node owns, newest first; a finaliser's panic
    /// is reported and does not stop the others.
    pub(crate) fn finalise(&self) {
        let owned = {
            let mut mine = self.resources.lock();
            self.owned.store(0, Ordering::Release);
            std::mem::take(&mut *mine)
        };
        for r in owned.into_iter().rev() {
            r.finalise();
        }
    }

    /// Step 1 of the module doc: what a task that did not return normally leaves behind.
    fn tear_down(&self) {
        self.cancel_children();
        self.finalise();
    }

    /// Whether a task that returned normally has nothing to check or clean up: not cancelled,
    /// no live child, no resource. Reads two counters its own task keeps (a resource can only
    /// be handed to it by a child, and none is alive).
    #[inline]
    fn ends_clean(&self) -> bool {
        !self.cancelled.load(Ordering::Acquire)
            && self.live_children() == 0
            && self.owned.load(Ordering::Acquire) == 0
    }

    /// Step 2: the checks of a task that returned normally; on a breach, the run is aborted
    /// and the task cleans up.
    fn check_end(&self) -> Result<(), Error> {
        if self.cancelled.load(Ordering::Acquire) {
            // Cancelled while it computed, it returned before a park point could unwind it:
            // it ends as a cancelled task does, and its parent sees `Cancelled` anyway.
            self.tear_down();
            return Ok(());
        }
        let error = if self.live_children() > 0 {
            Error::StillHasChildren
        } else if self.owned.load(Ordering::Acquire) > 0 {
            Error::ResourceLeaked
        } else {
            return Ok(());
        };
        self.run().abort(error.same_rule());
        self.tear_down();
        Err(error)
    }
}

/// Cancels the tasks `kids` (all first, so they unwind in parallel), then waits for each to
/// end.
pub(crate) fn cancel_all(kids: &[Arc<Task>]) {
    for k in kids {
        stop::cancel(k);
    }
    for k in kids {
        k.wait_finished_uninterruptibly("miou: a parent waits for its cancelled children");
    }
}

/// The Miou node of the running task.
///
/// # Panics
///
/// Outside a task of a Miou run, naming `what` was called.
#[track_caller]
pub(crate) fn current(what: &str) -> Arc<Node> {
    with_current_node(what, Node::arc)
}

/// Calls `f` with the Miou node of the running task, without touching its reference count.
///
/// # Panics
///
/// Outside a task of a Miou run, naming `what` was called.
#[track_caller]
pub(crate) fn with_current_node<R>(what: &str, f: impl FnOnce(&Node) -> R) -> R {
    match current_node() {
        Some(me) => f(me),
        None => not_a_miou_task(what),
    }
}

/// The running task's node. The reference is good while the task's body runs: the face data
/// is set and cleared only at its root (`run_body`), around the body.
#[inline]
fn current_node<'a>() -> Option<&'a Node> {
    let task = crate::sched::current_ptr();
    if task.is_null() {
        return None;
    }
    // SAFETY: the running task is alive while it runs; its face data is replaced only at its
    // root, around the body that calls this, so not while the reference is used.
    let data = unsafe { (*task).face_data() }?;
    (**data).downcast_ref::<Node>()
}

/// The node of the running task, for a caller that must keep its own caller's location
/// (`#[track_caller]` through a closure is lost).
///
/// # Panics
///
/// Outside a task of a Miou run, naming `what` was called.
#[track_caller]
pub(crate) fn current_node_for<'a>(what: &str) -> &'a Node {
    match current_node() {
        Some(me) => me,
        None => not_a_miou_task(what),
    }
}

/// [`with_current_node`], or `None` outside a task of a Miou run.
pub(crate) fn try_with_current_node<R>(f: impl FnOnce(&Node) -> R) -> Option<R> {
    current_node().map(f)
}

#[cold]
#[track_caller]
fn not_a_miou_task(what: &str) -> ! {
    panic!(
        "bobine::miou::{what} must be called from a Miou task (inside miou::run, in a task \
         started by call_cc, call or parallel)"
    )
}

/// How a body that gave no value ended.
enum Ended {
    /// It returned, but broke a rule (the run is aborted).
    Rule(Error),
    /// It unwound: a panic's payload, or the kernel's `TaskCancelled`.
    Unwound(Box<dyn Any + Send>),
}

/// Runs `body` as the task `task` of node `node`, with the node attached to the task, and
/// ends it (steps 1 and 2 of the module doc).
fn run_body<T>(
    task: &Task,
    node: Arc<Node>,
    body: impl FnOnce() -> T,
) -> (Arc<Node>, Result<T, Ended>) {
    // The task holds the node while its body runs (moved in and back out: no count touched).
    task.set_face_data(Some(node as Arc<dyn Any + Send + Sync>));
    let outcome = catch_at_root(task, body);
    let data = task
        .set_face_data(None)
        .expect("the task's node stays attached while its body runs");
    debug_assert!(
        data.is::<Node>(),
        "only the Miou face attaches data to its tasks"
    );
    // SAFETY: `data` is the `Arc<Node>` attached above, unsized: the same allocation and
    // value, so it converts back without a type check.
    let node = unsafe { Arc::from_raw(Arc::into_raw(data) as *const Node) };
    let ended = match outcome {
        // The common end: nothing to check or clean up.
        Ok(v) if node.ends_clean() => Ok(v),
        // The tear-down may cancel and wait: the node is attached again meanwhile, so that a
        // finaliser may use Miou's calls.
        ended => {
            task.set_face_data(Some(node.clone() as Arc<dyn Any + Send + Sync>));
            let ended = stop::last_words(|| match ended {
                Ok(v) => node.check_end().map(|()| v).map_err(Ended::Rule),
                Err(payload) => {
                    node.tear_down();
                    Err(Ended::Unwound(payload))
                }
            });
            task.set_face_data(None);
            ended
        }
    };
    (node, ended)
}

/// A child's closure and node, until its first run. Dropped without running (the child was
/// cancelled before it started, or its runtime ended first, or the spawn failed), it runs the
/// tear-down (the finalisers of what the child was given) and tells its collector.
pub(crate) struct Launch<F> {
    pub(crate) node: Arc<Node>,
    pub(crate) f: Option<F>,
}

impl<F> Launch<F> {
    /// The child's root: runs its body (steps 1 to 3 of the module doc) and stores its
    /// outcome: the value (boxed as the kernel stores every task's value, which allocates
    /// nothing for a zero-sized one), or the [`Error`] as the payload of an `Err`.
    pub(crate) fn run<T: 'static>(mut self, task: &Task)
    where
        F: FnOnce() -> T,
    {
        let f = self.f.take().expect("a child runs once");
        // SAFETY: `self` is forgotten right after, so its node is not dropped twice.
        let node = unsafe { std::ptr::read(&self.node) };
        std::mem::forget(self);
        let (node, ended) = run_body(task, node, f);
        let outcome = match ended {
            Ok(v) => Ok(Box::new(v) as Box<dyn Any>),
            Err(Ended::Rule(e)) => Err(Box::new(e) as Box<dyn Any + Send>),
            Err(Ended::Unwound(payload)) => Err(Box::new(Error::from_payload(payload)) as _),
        };
        node.succeeded.store(outcome.is_ok(), Ordering::Release);
        node.ended.store(true, Ordering::Release);
        if let Some(c) = &node.collector {
            c.push(node.id);
        }
        drop(node);
        task.set_outcome(outcome);
    }
}

impl<F> Drop for Launch<F> {
    fn drop(&mut self) {
        if self.f.take().is_some() {
            stop::last_words(|| self.node.tear_down());
            self.node.ended.store(true, Ordering::Release);
            if let Some(c) = &self.node.collector {
                c.push(self.node.id);
            }
        }
    }
}

/// `miou::run` and `run_with`: a runtime whose main task is the root of the tree.
pub(crate) fn run<T>(builder: crate::Builder, f: impl FnOnce() -> T) -> T {
    crate::sched::runtime::describe_payloads(super::error::payload_text);
    let state = Arc::new(RunState {
        fatal: SpinLock::new(None),
        main: SpinLock::new(None),
        signals: SpinLock::new(Vec::new()),
    });
    let run_state = state.clone();
    let outcome = catch_unwind(AssertUnwindSafe(move || {
        builder.run(move || {
            let task = crate::sched::current_task().expect("the main task runs as a task");
            *run_state.main.lock() = Some(task.clone());
            let node = Node::new(None, None, Arc::as_ptr(&run_state), None);
            let (_, ended) = run_body(&task, node, f);
            // No handler task is started once the main task has ended.
            run_state.uninstall_signals();
            run_state.main.lock().take();
            match ended {
                Ok(v) => Ok(v),
                // A panic (or the cancellation that aborts the run) goes on out of `run`.
                Err(Ended::Unwound(payload)) => resume_unwind(payload),
                Err(Ended::Rule(e)) => Err(e),
            }
        })
    }));
    if let Some(error) = state.fatal.lock().take() {
        eprintln!(
            "bobine::miou: the run is aborted: {error}: {}",
            error.advice()
        );
        resume_unwind(Box::new(error));
    }
    match outcome {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => resume_unwind(Box::new(e)),
        Err(payload) => resume_unwind(payload),
    }
}
