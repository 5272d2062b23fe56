//! First-class synchronous events: Reppy's Concurrent ML, across domains and OS threads.
//!
//! An [`Event`] is a description of a communication; nothing happens until [`Event::sync`]
//! (block until one alternative commits) or [`Event::poll`] (one attempt). Events compose:
//! [`choose`] offers alternatives, [`Event::wrap`] post-processes a result, [`guard`] builds an
//! event at sync time, [`Event::wrap_abort`] and [`with_nack`] learn that their branch lost.
//! Base events: channel sends and receives ([`Channel`]), [`Event::always`], [`Event::never`],
//! timeouts ([`after`], [`at`]) and task completion ([`join`]).
//!
//! References: J. Reppy, *Concurrent Programming in ML* (1999) for the semantics; J. Reppy,
//! C. Russo and Y. Xiao, *Parallel Concurrent ML* (ICFP 2009) for the commit word. The exact
//! rules this module follows are in SEMANTICS.md §3.
//!
//! ## `sync`, step by step
//!
//! 1. **Flatten** the event depth-first, left to right, into leaves. Each `guard` runs now, once;
//!    each `with_nack` makes its nack; wraps are pushed down to the leaves; every leaf records
//!    the `wrap_abort` and `with_nack` nodes that enclose it. A panic here leaves the sync
//!    before anything is offered (nacks made so far fire).
//! 2. **Attempt**: lock every channel the leaves use, in address order (Go's `select` does the
//!    same), and try the leaves in a random order; the first that can complete does, so the
//!    choice is uniform among the ready leaves. A channel leaf completes by claiming the oldest
//!    live partner offer (first come, first served) through the partner's commit word.
//! 3. **Offer**: if nothing was ready, register an offer on every channel leaf (still under the
//!    locks, so nothing can slip between the attempt and the offer), then release the locks and
//!    park. Partners commit us through our commit word (`commit.rs`); timer, join and nack leaves
//!    wake us and we commit them ourselves. Exactly one leaf commits.
//! 4. After the commit: fire the nacks of the groups that do not enclose the chosen leaf, apply
//!    the chosen leaf's wraps (inner first), then run the `wrap_abort` functions that do not
//!    enclose it, in reverse order of appearance.
//!
//! Holding several channel locks at once is the simpler of the two designs DESIGN.md §6 allows
//! (the other claims both syncs' words, Parallel CML style); with it a sync never matches itself
//! (our offers do not exist while we attempt) and two syncs that could match each other through
//! two channels serialise on those channels' locks: no livelock, exactly one commit per pair.
//! No user code (guards, wraps, aborts, value drops) runs under a lock: values live in the
//! syncs' own slots, and unsent ones are dropped by their syncer after the commit.
//!
//! ## Cancellation hook
//!
//! A sync whose park is interrupted (a cancelled task, or the runtime unwinding it) abandons
//! its commit word (WAITING -> ABANDONED, unless something committed first, which then wins),
//! which turns all its offers stale at once, fires its nacks, and reports the interruption.

mod channel;
mod commit;

pub use channel::Channel;

use std::os::fd::RawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use channel::{ChanInner, Offer};
use commit::{AbandonOnUnwind, Outcome, Payload, SyncState};

use crate::sched::park::{Park, Unparker, Wake};
use crate::sched::reactor::Dir;
use crate::sched::task::Task;
use crate::util::{SpinGuard, SpinLock};

/// A base operation, type-erased.
pub(crate) enum BaseOp {
    Send {
        chan: Arc<ChanInner>,
        value: Payload,
    },
    Recv {
        chan: Arc<ChanInner>,
    },
    Always(Payload),
    Never,
    At(Instant),
    After(Duration),
    Join(Arc<Task>),
    Nack(Arc<NackCell>),
    /// Readiness of a descriptor in one direction.
    Ready {
        fd: RawFd,
        dir: Dir,
    },
}

/// The nack of a `with_nack` group: fired once, when the sync commits outside the group or is
/// abandoned. Waiting syncs are woken and commit their nack leaf themselves.
pub(crate) struct NackCell {
    fired: AtomicBool,
    waiters: SpinLock<Vec<Unparker>>,
}

impl NackCell {
    fn fire(&self) {
        if !self.fired.swap(true, Ordering::AcqRel) {
            let waiters = std::mem::take(&mut *self.waiters.lock());
            for w in waiters {
                w.unpark();
            }
        }
    }

    fn is_fired(&self) -> bool {
        self.fired.load(Ordering::Acquire)
    }

    /// Adds a waiter; false if already fired.
    fn add_waiter(&self, u: Unparker) -> bool {
        let mut waiters = self.waiters.lock();
        if self.is_fired() {
            return false;
        }
        waiters.retain(|w| w.is_pending() && !w.same_waiter(&u));
        waiters.push(u);
        true
    }
}

/// One leaf after flattening: its operation, how to turn its payload into the event's value,
/// and the `wrap_abort` / `with_nack` nodes that enclose it.
struct Leaf<T> {
    op: BaseOp,
    finish: Box<dyn FnOnce(Payload) -> T + Send>,
    aborts: Vec<usize>,
    groups: Vec<usize>,
}

/// What flattening collects besides the leaves.
struct Flat {
    /// When the sync started: read before the first guard or at the first `after` leaf,
    /// whichever comes first (a clock read only when needed).
    start: Option<Instant>,
    aborts: Vec<Option<Box<dyn FnOnce() + Send>>>,
    abort_stack: Vec<usize>,
    nacks: Vec<Arc<NackCell>>,
    group_stack: Vec<usize>,
}

impl Drop for Flat {
    /// Nacks not fired by a commit fire here: the sync was abandoned (a guard panicked, or the
    /// sync was interrupted). After a normal commit the non-chosen groups were fired already
    /// and the chosen ones are cleared, so this does nothing.
    fn drop(&mut self) {
        for n in self.nacks.drain(..) {
            n.fire();
        }
    }
}

trait Flatten<T>: Send {
    fn flatten(self: Box<Self>, flat: &mut Flat, out: &mut Vec<Leaf<T>>);
}

/// A first-class synchronous event producing a `T` when synchronised.
///
/// Building an event does nothing; [`Event::sync`] consumes it (build a new one for each sync:
/// events are cheap).
pub struct Event<T> {
    node: Node<T>,
}

/// The common shapes are stored inline, so building `select(vec![c.recv_evt(), ...])`
/// allocates no node per alternative; the rarer combinators are boxed.
enum Node<T> {
    Base(BaseNode<T>),
    Choose(Vec<Event<T>>),
    Boxed(Box<dyn Flatten<T>>),
}

impl<T> Event<T> {
    fn flatten_into(self, flat: &mut Flat, out: &mut Vec<Leaf<T>>) {
        match self.node {
            Node::Base(base) => base.flatten_base(flat, out),
            Node::Choose(evs) => {
                for ev in evs {
                    ev.flatten_into(flat, out);
                }
            }
            Node::Boxed(node) => node.flatten(flat, out),
        }
    }

    fn boxed(node: impl Flatten<T> + 'static) -> Event<T> {
        Event {
            node: Node::Boxed(Box::new(node)),
        }
    }
}

impl<T> std::fmt::Debug for Event<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Event").finish_non_exhaustive()
    }
}

struct BaseNode<T> {
    op: BaseOp,
    finish: Box<dyn FnOnce(Payload) -> T + Send>,
}

impl<T> BaseNode<T> {
    fn flatten_base(self, flat: &mut Flat, out: &mut Vec<Leaf<T>>) {
        let op = match self.op {
            BaseOp::After(d) => {
                let start = *flat.start.get_or_insert_with(Instant::now);
                BaseOp::At(
                    start
                        .checked_add(d)
                        .unwrap_or(start + Duration::from_secs(u32::MAX as u64)),
                )
            }
            op => op,
        };
        out.push(Leaf {
            op,
            finish: self.finish,
            aborts: flat.abort_stack.clone(),
            groups: flat.group_stack.clone(),
        });
    }
}

struct GuardNode<T>(Box<dyn FnOnce() -> Event<T> + Send>);

impl<T> Flatten<T> for GuardNode<T> {
    fn flatten(self: Box<Self>, flat: &mut Flat, out: &mut Vec<Leaf<T>>) {
        // The sync starts before any guard runs: an `after` leaf built later counts from here.
        flat.start.get_or_insert_with(Instant::now);
        (self.0)().flatten_into(flat, out);
    }
}

struct WrapNode<T, U> {
    inner: Event<T>,
    f: Box<dyn FnOnce(T) -> U + Send>,
}

impl<T: 'static, U: 'static> Flatten<U> for WrapNode<T, U> {
    fn flatten(self: Box<Self>, flat: &mut Flat, out: &mut Vec<Leaf<U>>) {
        let mut inner = Vec::new();
        self.inner.flatten_into(flat, &mut inner);
        // One wrap function serves every leaf below it; only the chosen one calls it.
        let f = Arc::new(SpinLock::new(Some(self.f)));
        for leaf in inner {
            let f = f.clone();
            let finish = leaf.finish;
            out.push(Leaf {
                op: leaf.op,
                finish: Box::new(move |p| {
                    let g = f.lock().take().expect("a wrap function runs once");
                    g(finish(p))
                }),
                aborts: leaf.aborts,
                groups: leaf.groups,
            });
        }
    }
}

struct WrapAbortNode<T> {
    inner: Event<T>,
    abort: Box<dyn FnOnce() + Send>,
}

impl<T> Flatten<T> for WrapAbortNode<T> {
    fn flatten(self: Box<Self>, flat: &mut Flat, out: &mut Vec<Leaf<T>>) {
        let id = flat.aborts.len();
        flat.aborts.push(Some(self.abort));
        flat.abort_stack.push(id);
        self.inner.flatten_into(flat, out);
        flat.abort_stack.pop();
    }
}

struct NackNode<T>(Box<dyn FnOnce(Event<()>) -> Event<T> + Send>);

impl<T> Flatten<T> for NackNode<T> {
    fn flatten(self: Box<Self>, flat: &mut Flat, out: &mut Vec<Leaf<T>>) {
        let cell = Arc::new(NackCell {
            fired: AtomicBool::new(false),
            waiters: SpinLock::new(Vec::new()),
        });
        let id = flat.nacks.len();
        flat.nacks.push(cell.clone());
        let nack = Event::base(BaseOp::Nack(cell), |_| ());
        flat.group_stack.push(id);
        (self.0)(nack).flatten_into(flat, out);
        flat.group_stack.pop();
    }
}

impl<T: 'static> Event<T> {
    pub(crate) fn base(op: BaseOp, finish: impl FnOnce(Payload) -> T + Send + 'static) -> Event<T> {
        Event {
            node: Node::Base(BaseNode {
                op,
                finish: Box::new(finish),
            }),
        }
    }

    /// An event that is always ready with `v` (and gets no preference over other ready ones).
    pub fn always(v: T) -> Self
    where
        T: Send,
    {
        Event::base(BaseOp::Always(Box::new(v)), |p| {
            *p.downcast::<T>().expect("always carries its own value")
        })
    }

    /// An event that is never ready.
    pub fn never() -> Self {
        Event::base(BaseOp::Never, |_| {
            unreachable!("a never event never commits")
        })
    }

    /// Applies `f` to the result, in the syncing task, after the commit.
    pub fn wrap<U: 'static>(self, f: impl FnOnce(T) -> U + Send + 'static) -> Event<U> {
        Event::boxed(WrapNode {
            inner: self,
            f: Box::new(f),
        })
    }

    /// Runs `f` (once, in the syncing task, after the commit) if the sync commits to a leaf
    /// outside this event, or `poll` finds nothing ready. Not under a choice, it never runs.
    pub fn wrap_abort(self, f: impl FnOnce() + Send + 'static) -> Self {
        Event::boxed(WrapAbortNode {
            inner: self,
            abort: Box::new(f),
        })
    }

    /// Blocks until one alternative commits and returns its (wrapped) value.
    ///
    /// # Panics
    ///
    /// A panic of a guard or wrap function propagates (a wrap panics after the communication
    /// happened). If the task is unwound while it waits (its runtime is ending), the sync is
    /// abandoned and this panics with a clear message.
    #[track_caller]
    pub fn sync(self) -> T {
        match run_sync(self, true) {
            Some(v) => v,
            None => unreachable!("a blocking sync commits or panics"),
        }
    }

    /// One attempt: if an alternative is ready it really happens and its value is returned;
    /// otherwise `None`, no offer is left anywhere, and every `wrap_abort` runs. Never blocks.
    pub fn poll(self) -> Option<T> {
        run_sync(self, false)
    }
}

/// Offers all `evs`; whichever is ready first (uniformly at random among ready ones) commits.
///
/// # Panics
///
/// `Invalid_argument("Event.choose")` if `evs` is empty.
#[track_caller]
pub fn choose<T: 'static>(evs: Vec<Event<T>>) -> Event<T> {
    if evs.is_empty() {
        panic!("Invalid_argument(\"Event.choose\")");
    }
    Event {
        node: Node::Choose(evs),
    }
}

/// `choose(evs).sync()`.
///
/// ```
/// use bobine::event::{Channel, Event, select};
/// bobine::run(|| {
///     let c: Channel<i32> = Channel::new();
///     let v = select(vec![c.recv_evt(), Event::always(5)]);
///     assert_eq!(v, 5);
/// });
/// ```
#[track_caller]
pub fn select<T: 'static>(evs: Vec<Event<T>>) -> T {
    choose(evs).sync()
}

/// An event built at sync time: `f` runs once per sync, when the sync starts.
pub fn guard<T: 'static>(f: impl FnOnce() -> Event<T> + Send + 'static) -> Event<T> {
    Event::boxed(GuardNode(Box::new(f)))
}

/// Like [`guard`], and `f` also gets a *nack* event, which becomes ready when the sync commits
/// to a leaf outside the event `f` returns, when `poll` gives `None`, or when the sync is
/// abandoned (a later guard panicked, or the task was interrupted).
pub fn with_nack<T: 'static>(f: impl FnOnce(Event<()>) -> Event<T> + Send + 'static) -> Event<T> {
    Event::boxed(NackNode(Box::new(f)))
}

/// Ready `d` after the start of the sync it is part of.
pub fn after(d: Duration) -> Event<()> {
    Event::base(BaseOp::After(d), |_| ())
}

/// Ready at `t` (at once if `t` has passed).
pub fn at(t: Instant) -> Event<()> {
    Event::base(BaseOp::At(t), |_| ())
}

/// Ready when `fd` is readable (data, end of file, or an error to read): a task's sync watches
/// it through its domain's epoll, a plain OS thread's sync waits in `poll(2)`. Readiness is
/// checked at each attempt, so a leaf that was ready and is no longer (another reader took the
/// data) does not commit. A descriptor that is not open counts as ready (the read reports it).
///
/// ```
/// use std::io::Write;
/// use std::os::fd::AsRawFd;
/// use bobine::event::{readable, after, select};
/// bobine::run(|| {
///     let (a, mut b) = std::os::unix::net::UnixStream::pair().unwrap();
///     let quiet = select(vec![readable(a.as_raw_fd()).wrap(|_| "data"), after(std::time::Duration::from_millis(5)).wrap(|_| "timeout")]);
///     assert_eq!(quiet, "timeout");
///     b.write_all(b"x").unwrap();
///     assert!(readable(a.as_raw_fd()).poll().is_some());
/// });
/// ```
pub fn readable(fd: RawFd) -> Event<()> {
    Event::base(BaseOp::Ready { fd, dir: Dir::Read }, |_| ())
}

/// Ready when `fd` is writable (or in error); see [`readable`].
pub fn writable(fd: RawFd) -> Event<()> {
    Event::base(
        BaseOp::Ready {
            fd,
            dir: Dir::Write,
        },
        |_| (),
    )
}

/// Whether a readiness leaf is ready now.
fn fd_ready(fd: RawFd, dir: Dir) -> bool {
    crate::sched::reactor::poll::ready_now(fd, dir).unwrap_or(true)
}

/// Ready when the task of `h` has ended.
pub fn join<T>(h: &crate::thread::JoinHandle<T>) -> Event<()> {
    Event::base(BaseOp::Join(h.task().clone()), |_| ())
}

fn flatten<T>(ev: Event<T>, flat: &mut Flat) -> Vec<Leaf<T>> {
    let mut leaves = Vec::new();
    ev.flatten_into(flat, &mut leaves);
    leaves
}

/// A small xorshift generator for the random choice (uniform enough for picking among a few
/// ready leaves); seeded per thread.
fn random(bound: usize) -> usize {
    use std::cell::Cell;
    thread_local! {
        static STATE: Cell<u64> = Cell::new({
            let mut h = std::hash::DefaultHasher::new();
            std::hash::Hash::hash(&std::thread::current().id(), &mut h);
            std::hash::Hash::hash(&Instant::now(), &mut h);
            std::hash::Hasher::finish(&h) | 1
        });
    }
    STATE.with(|s| {
        let mut x = s.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.set(x);
        (x % bound as u64) as usize
    })
}

/// The channels the leaves use, deduplicated and in address order (the lock order).
fn channels<T>(leaves: &[Leaf<T>]) -> Vec<Arc<ChanInner>> {
    let mut chans: Vec<Arc<ChanInner>> = leaves
        .iter()
        .filter_map(|l| match &l.op {
            BaseOp::Send { chan, .. } | BaseOp::Recv { chan } => Some(chan.clone()),
            _ => None,
        })
        .collect();
    chans.sort_by_key(|c| Arc::as_ptr(c) as usize);
    chans.dedup_by_key(|c| Arc::as_ptr(c) as usize);
    chans
}

/// Steps 2-4 for `sync` (`block`) and `poll`.
#[track_caller]
fn run_sync<T>(ev: Event<T>, block: bool) -> Option<T> {
    let mut flat = Flat {
        start: None,
        aborts: Vec::new(),
        abort_stack: Vec::new(),
        nacks: Vec::new(),
        group_stack: Vec::new(),
    };
    let mut leaves = flatten(ev, &mut flat);
    let chans = channels(&leaves);
    let index_of = |chan: &Arc<ChanInner>| {
        chans
            .iter()
            .position(|c| Arc::ptr_eq(c, chan))
            .expect("collected above")
    };

    // Step 2: attempt, under every channel lock.
    let mut guards: Vec<_> = chans.iter().map(|c| c.queues.lock()).collect();
    let mut committed: Option<(usize, Payload)> = None;
    loop {
        // Pick uniformly among the leaves ready now (count them, draw, find the drawn one: no
        // allocation); a channel leaf can still lose its partner to another sync between the
        // look and the claim, then look again.
        let count = (0..leaves.len())
            .filter(|&i| leaf_ready(&leaves[i], &mut guards, &chans))
            .count();
        if count == 0 {
            break;
        }
        let draw = if count == 1 { 0 } else { random(count) };
        let Some(i) = (0..leaves.len())
            .filter(|&i| leaf_ready(&leaves[i], &mut guards, &chans))
            .nth(draw)
        else {
            continue;
        };
        let done = match &mut leaves[i].op {
            BaseOp::Send { chan, value } => {
                let v = std::mem::replace(value, Box::new(()));
                match guards[index_of(chan)].give(v) {
                    Ok(()) => Some(Box::new(()) as Payload),
                    Err(v) => {
                        *value = v;
                        None
                    }
                }
            }
            BaseOp::Recv { chan } => guards[index_of(chan)].take(),
            BaseOp::Always(v) => Some(std::mem::replace(v, Box::new(()))),
            _ => Some(Box::new(()) as Payload),
        };
        if let Some(p) = done {
            committed = Some((i, p));
            break;
        }
    }

    let (chosen, payload) = match committed {
        Some(c) => {
            drop(guards);
            c
        }
        None if !block => {
            drop(guards);
            // Nothing ready: every wrap_abort runs (reverse order), every nack fires (Flat's drop).
            run_aborts(&mut flat, &[]);
            drop(leaves);
            return None;
        }
        None => {
            // Step 3: offer every channel leaf, still under the locks.
            let state = Arc::new(SyncState::new(leaves.iter_mut().map(|l| match &mut l.op {
                BaseOp::Send { value, .. } => Some(std::mem::replace(value, Box::new(()))),
                _ => None,
            })));
            for (i, leaf) in leaves.iter().enumerate() {
                match &leaf.op {
                    BaseOp::Send { chan, .. } => {
                        guards[index_of(chan)].register(Offer::shared(state.clone(), i), true)
                    }
                    BaseOp::Recv { chan } => {
                        guards[index_of(chan)].register(Offer::shared(state.clone(), i), false)
                    }
                    _ => {}
                }
            }
            // From here until the commit, an unwind (the runtime dropping this task) abandons
            // the sync and drops its values.
            let abandon = AbandonOnUnwind { state: &state };
            drop(guards);
            let chosen = wait_commit(&state, &leaves, &mut flat);
            std::mem::forget(abandon);
            let payload = match &leaves[chosen].op {
                BaseOp::Recv { .. } => {
                    // SAFETY: `wait_commit` returned a committed leaf: the word has settled.
                    unsafe { state.slot_value(chosen) }.expect("a committed receive has its value")
                }
                _ => Box::new(()) as Payload,
            };
            // Our stale offers may linger in channels (and be dropped under their locks): leave
            // nothing of ours in them. Unsent values are dropped here, by us.
            drop(release_slots(&state, &leaves));
            (chosen, payload)
        }
    };

    // Step 4: nacks of the other groups, the chosen leaf's wraps, the other aborts.
    let leaf = leaves.swap_remove(chosen);
    for (g, cell) in flat.nacks.iter().enumerate() {
        if !leaf.groups.contains(&g) {
            cell.fire();
        }
    }
    flat.nacks.clear();
    drop(leaves);
    let aborts = AbortsOnDrop {
        flat: &mut flat,
        keep: leaf.aborts,
    };
    let value = (leaf.finish)(payload);
    drop(aborts);
    Some(value)
}

/// Whether `leaf` can complete now (channel leaves: a live partner is queued).
fn leaf_ready<T>(
    leaf: &Leaf<T>,
    guards: &mut [SpinGuard<'_, channel::Queues>],
    chans: &[Arc<ChanInner>],
) -> bool {
    let queues = |chan: &Arc<ChanInner>| {
        chans
            .iter()
            .position(|c| Arc::ptr_eq(c, chan))
            .expect("collected")
    };
    match &leaf.op {
        BaseOp::Always(_) => true,
        BaseOp::Never => false,
        BaseOp::At(t) => Instant::now() >= *t,
        BaseOp::After(_) => unreachable!("resolved at flattening"),
        BaseOp::Join(task) => task.is_finished(),
        BaseOp::Nack(cell) => cell.is_fired(),
        BaseOp::Ready { fd, dir } => fd_ready(*fd, *dir),
        BaseOp::Send { chan, .. } => guards[queues(chan)].has_receiver(),
        BaseOp::Recv { chan } => guards[queues(chan)].has_sender(),
    }
}

/// Takes what a settled sync still holds (values it did not send, its unparker) so that they
/// are dropped by the syncer, not by whoever drops a stale offer under a channel lock.
fn release_slots<T>(state: &SyncState, leaves: &[Leaf<T>]) -> (Vec<Payload>, Option<Unparker>) {
    let unsent = leaves
        .iter()
        .enumerate()
        .filter(|(_, l)| matches!(l.op, BaseOp::Send { .. }))
        // SAFETY: callers call this once the word has settled (committed or abandoned by us).
        .filter_map(|(i, _)| unsafe { state.slot_value(i) })
        .collect();
    (unsent, state.take_unparker())
}

/// Runs the `wrap_abort` functions not in `keep`, in reverse order of appearance. A panicking
/// one does not stop the others; the first panic is raised again afterwards (unless the
/// thread is already unwinding, when raising would abort).
fn run_aborts(flat: &mut Flat, keep: &[usize]) {
    let mut first_panic = None;
    for (id, abort) in flat.aborts.iter_mut().enumerate().rev() {
        if !keep.contains(&id) {
            if let Some(f) = abort.take() {
                if let Err(p) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
                    first_panic.get_or_insert(p);
                }
            }
        }
    }
    if let Some(p) = first_panic {
        if !std::thread::panicking() {
            std::panic::resume_unwind(p);
        }
    }
}

/// Runs the aborts after the chosen wrap, even if the wrap panics.
struct AbortsOnDrop<'a> {
    flat: &'a mut Flat,
    keep: Vec<usize>,
}

impl Drop for AbortsOnDrop<'_> {
    fn drop(&mut self) {
        run_aborts(self.flat, &self.keep);
    }
}

/// Step 3's park loop: until a leaf commits. Timer, join and nack leaves wake us; we commit
/// them ourselves. Returns the committed leaf.
#[track_caller]
fn wait_commit<T>(state: &SyncState, leaves: &[Leaf<T>], flat: &mut Flat) -> usize {
    let at = leaves
        .iter()
        .filter_map(|l| match l.op {
            BaseOp::At(t) => Some(t),
            _ => None,
        })
        .min();
    // Readiness leaves are looked at again every REVALIDATE: a descriptor closed behind
    // bobine's back gives no event, but counts as ready once closed.
    let revalidate = leaves.iter().any(|l| matches!(l.op, BaseOp::Ready { .. }));
    let in_task = !crate::sched::current_ptr().is_null();
    // A plain thread watches its readiness leaves in poll(2); a task through its domain.
    let polled: Vec<(RawFd, libc::c_short)> = if in_task {
        Vec::new()
    } else {
        leaves
            .iter()
            .filter_map(|l| match l.op {
                BaseOp::Ready { fd, dir } => Some((fd, dir.poll_events())),
                _ => None,
            })
            .collect()
    };
    loop {
        let park = Park::new();
        state.set_unparker(park.unparker());
        for leaf in leaves {
            match &leaf.op {
                BaseOp::Join(task) => {
                    task.add_joiner(park.unparker());
                }
                BaseOp::Nack(cell) => {
                    cell.add_waiter(park.unparker());
                }
                BaseOp::Ready { fd, dir } if in_task => {
                    // A descriptor epoll cannot watch (not open, or a regular file) is ready
                    // now, so `settle` commits it.
                    let _ = crate::sched::reactor::source::watch(*fd, *dir, park.unparker());
                }
                _ => {}
            }
        }
        if let Some(k) = settle(state, leaves) {
            return k;
        }
        // Interrupted, and nothing committed first (if something did, it wins): abandon. Our
        // offers are stale from now on; the nacks fire as `flat` is dropped. If the park
        // unwinds instead (the runtime dropping this task), the guard abandons.
        let deadline = if revalidate {
            let slice = Instant::now() + crate::sched::reactor::source::REVALIDATE;
            Some(at.map_or(slice, |t| t.min(slice)))
        } else {
            at
        };
        let why = park.wait_polling("Event.sync", deadline, &polled);
        if why == Wake::Interrupted && state.abandon() {
            flat.aborts.clear();
            drop(release_slots(state, leaves));
            crate::sched::interrupted_wait("Event.sync");
        }
    }
}

/// Whether the sync has committed, committing a ready timer, join or nack leaf ourselves.
fn settle<T>(state: &SyncState, leaves: &[Leaf<T>]) -> Option<usize> {
    match state.outcome() {
        Outcome::Synched(k) => return Some(k),
        Outcome::Abandoned => unreachable!("only the syncer abandons"),
        Outcome::Waiting => {}
    }
    let now = Instant::now();
    for (i, leaf) in leaves.iter().enumerate() {
        let ready = match &leaf.op {
            BaseOp::At(t) => now >= *t,
            BaseOp::Join(task) => task.is_finished(),
            BaseOp::Nack(cell) => cell.is_fired(),
            BaseOp::Ready { fd, dir } => fd_ready(*fd, *dir),
            _ => false,
        };
        if ready && state.commit_self(i) {
            return Some(i);
        }
    }
    match state.outcome() {
        Outcome::Synched(k) => Some(k),
        _ => None,
    }
}
