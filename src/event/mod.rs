//! First-class synchronous events: Reppy's Concurrent ML, across domains and OS threads.
//!
//! An [`Event`] is a description of a communication; nothing happens until [`Event::sync`]
//! (block until one alternative commits) or [`Event::poll`] (one attempt). Events compose:
//! [`choose`] offers alternatives, [`Event::wrap`] post-processes a result, [`guard`] builds an
//! event at sync time, [`Event::wrap_abort`] and [`with_nack`] learn that their branch lost.
//! Base events: channel sends and receives ([`Channel`]), receives from `mpsc` channels
//! ([`Receiver::recv_evt`](crate::sync::mpsc::Receiver::recv_evt)), [`Event::always`], [`Event::never`],
//! timeouts ([`after`], [`at`]), descriptor readiness ([`readable`], [`writable`]), task
//! completion ([`join`]) and signals the process receives ([`signal`]).
//!
//! References: J. Reppy, *Concurrent Programming in ML* (1999) for the semantics; J. Reppy,
//! C. Russo and Y. Xiao, *Parallel Concurrent ML* (ICFP 2009) for the commit word; OCaml's
//! `Event` module for the names and rules of the OCaml face (`tests/event_rules.rs` has one
//! test per rule).
//!
//! ## Files
//!
//! - `mod.rs` (this file): [`Event`], its combinators and base events, and step 1 below
//!   (flattening into leaves).
//! - `leaves.rs`: what a single leaf is: its base operation, the flag of a `with_nack` group or
//!   a signal leaf, a signal leaf's watch, whether a readiness leaf is ready now.
//! - `sync.rs`: steps 2-5 below: attempt, offer and park, take the offers back, then the
//!   nacks, wraps and aborts.
//! - `channel.rs`: [`Channel`] and its queues of offers; `commit.rs`: the commit word;
//!   `payload.rs`: the type-erased values leaves carry (inline when small).
//! - `source.rs`: receive leaves of primitives that are not CML channels (an `mpsc`
//!   [`Receiver`](crate::sync::mpsc::Receiver)'s `recv_evt`): what such a primitive provides,
//!   and the offer a blocked sync leaves in its waiter list.
//!
//! This module owns channels, offers and commit words. It waits only through `sched::park`
//! (and the reactor's readiness watches for `readable`/`writable` leaves, the kernel's signal
//! watches for `signal` leaves); it must not touch the scheduler's queues.
//!
//! ## `sync`, step by step
//!
//! 1. **Flatten** the event depth-first, left to right, into leaves. Each `guard` runs now, once;
//!    each `with_nack` makes its nack; wraps are pushed down to the leaves; every leaf records
//!    the `wrap_abort` and `with_nack` nodes that enclose it; in a blocking sync each signal
//!    leaf starts watching its signal (deliveries from then on count). A panic here leaves the
//!    sync before anything is offered (nacks made so far fire, watches made so far end). Each
//!    leaf carries its value slot (the value a send or `always` leaf offers, the place a receive
//!    leaf gets its value); the sync's state, its commit word, is in the syncer's frame. A
//!    choice of plain base events (no combinator, no `after` or `signal` leaf), or a lone one,
//!    is not flattened at all: flattening would only copy each event into a leaf, so the events
//!    serve as the leaves where they are.
//! 2. **Attempt**: lock every channel the leaves use, in address order (Go's `select` does the
//!    same), and try the leaves in a random order; the first that can complete does, so the
//!    choice is uniform among the ready leaves. A channel leaf completes by claiming the oldest
//!    live partner offer (first come, first served) through the partner's commit word.
//! 3. **Offer**: if nothing was ready, register an offer on every channel leaf (still under the
//!    locks, so nothing can slip between the attempt and the offer), then release the locks and
//!    park. An offer is a pointer to the sync's state and a leaf index. Partners commit us
//!    through our commit word (`commit.rs`); timer, join, nack, readiness and signal leaves
//!    wake us and we commit them ourselves. Exactly one leaf commits. When only channel leaves
//!    can commit, the unparker set in the state before the first offer is visible is the
//!    partner's only way to wake us, so it holds no reference count on the task.
//! 4. **Take the offers back**: once the word has settled, lock each channel we offered on
//!    (one at a time) and remove our offers that are still queued. A partner that meets one of
//!    them first finds it stale and drops it, still under that channel's lock; so when we have
//!    taken every lock, no partner touches the state any more and the frame holding it may
//!    end. The one exception needs no lock: the channel of the committed leaf, when that leaf
//!    was our only offer there (its partner popped it, and its store of SYNCHED, which we have
//!    seen, was its last touch of the state).
//! 5. After the commit: end the signal watches and fire the nacks of the groups that do not
//!    enclose the chosen leaf, apply the chosen leaf's wraps (inner first), then run the
//!    `wrap_abort` functions that do not enclose it, in reverse order of appearance.
//!
//! Receive leaves of other primitives (`source.rs`: an `mpsc` receiver's `recv_evt`) take
//! part in steps 2 to 4 one source lock at a time, taken while the channel locks are held
//! (never the other way round): the attempt asks the source whether a receive completes now
//! and completes it; the offer goes into the source's own list, or, if the source has become
//! ready since the attempt, the syncer commits that leaf itself (as it does a timer leaf); a
//! sender commits an offer with the commit word like a channel partner; step 4 takes the
//! offers back under each source's lock. A sync with such a leaf always waits in the general
//! loop (`wait_commit`).
//!
//! Holding several channel locks at once is the simpler of the two designs we weighed (the
//! other claims both syncs' words, Parallel CML style); with it a sync never matches itself
//! (our offers do not exist while we attempt) and two syncs that could match each other through
//! two channels serialise on those channels' locks: no livelock, exactly one commit per pair.
//! No user code (guards, wraps, aborts, value drops) runs under a lock: values live in the
//! syncs' own slots, and unsent ones are dropped by their syncer after the commit.
//!
//! A sync of up to four leaves whose values fit two words allocates nothing: the leaves, the
//! channel set, the lock guards and the state are inline in the syncer's frame, and a value
//! travels inline in its payload. Rejected alternative (the first design): the
//! state and its offers as heap objects (`Arc`), cleaned lazily when partners scan past stale
//! offers. It costs an allocation and a free per blocking sync and an atomic reference count
//! per offer; step 4 costs one lock per other channel instead, and leaves no stale offer behind
//! (memory stays flat under choose-heavy loops either way).
//!
//! ## Stops
//!
//! A task stopped while its sync waits (cancelled, or its runtime ending) unwinds from its
//! park; on the way the sync abandons its commit word (WAITING -> ABANDONED, unless something
//! committed first, which then wins), which turns all its offers stale at once, takes its
//! offers back as in step 4, and its nacks fire. A task the shutdown abandons never returns
//! from its park: its offers stay queued, pointing into its stack, which is never freed; a
//! partner that claims one sees that the syncer is dead and skips it (`commit.rs`).

mod channel;
pub(crate) mod commit;
mod leaves;
pub(crate) mod payload;
pub(crate) mod source;
mod sync;

pub use channel::Channel;

use std::mem::ManuallyDrop;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use commit::{INLINE_LEAVES, Slot};
use leaves::{BaseOp, OneShot, SignalWatch};
use payload::Payload;
use smallvec::SmallVec;
use sync::run_sync;

use crate::sched::reactor::Dir;
use crate::util::SpinLock;

/// One leaf after flattening: its operation, how to turn its payload into the event's value,
/// and the `wrap_abort` / `with_nack` nodes that enclose it.
struct Leaf<T> {
    op: BaseOp,
    finish: Box<dyn FnOnce(Payload) -> T + Send>,
    /// `None` when no `wrap_abort` or `with_nack` encloses the leaf (the common case: a leaf
    /// stays small and costs no allocation).
    enclosing: Option<Box<Enclosing>>,
}

/// What the attempt, the offers and the wait need of a leaf: its base operation (with its value
/// slot). A flattened [`Leaf`] has one, and so has a plain base [`Event`], which serves as its
/// own leaf in a choice of plain base events (`sync.rs`).
trait HasOp {
    fn op(&self) -> &BaseOp;
}

impl<T> HasOp for Leaf<T> {
    #[inline]
    fn op(&self) -> &BaseOp {
        &self.op
    }
}

impl<T> HasOp for Event<T> {
    #[inline]
    fn op(&self) -> &BaseOp {
        match &self.node {
            Node::Base(base) => &base.op,
            _ => unreachable!("only a plain base event serves as a leaf"),
        }
    }
}

/// The `wrap_abort` and `with_nack` nodes that enclose a leaf, by index in [`Flat`].
#[derive(Clone, Default)]
struct Enclosing {
    aborts: Vec<usize>,
    groups: Vec<usize>,
}

impl Enclosing {
    /// What encloses the leaves flattened now.
    #[inline]
    fn now(flat: &Flat) -> Option<Box<Enclosing>> {
        if flat.abort_stack.is_empty() && flat.group_stack.is_empty() {
            return None;
        }
        Self::copy(flat)
    }

    #[cold]
    fn copy(flat: &Flat) -> Option<Box<Enclosing>> {
        Some(Box::new(Enclosing {
            aborts: flat.abort_stack.clone(),
            groups: flat.group_stack.clone(),
        }))
    }
}

/// The leaves of one sync: a few inline (a small choice allocates nothing for them).
type Leaves<T> = SmallVec<[Leaf<T>; INLINE_LEAVES]>;

/// What flattening collects besides the leaves.
struct Flat {
    /// Whether the sync blocks (`sync`) or makes one attempt (`poll`).
    block: bool,
    /// When the sync started: read before the first guard or at the first `after` leaf,
    /// whichever comes first (a clock read only when needed).
    start: Option<Instant>,
    aborts: Vec<Option<Box<dyn FnOnce() + Send>>>,
    abort_stack: Vec<usize>,
    nacks: Vec<Arc<OneShot>>,
    group_stack: Vec<usize>,
}

impl Drop for Flat {
    /// Nacks not fired by a commit fire here: the sync was abandoned (a guard panicked, or the
    /// sync was interrupted). After a normal commit the non-chosen groups were fired already
    /// and the chosen ones are cleared, so this does nothing.
    fn drop(&mut self) {
        if !self.nacks.is_empty() {
            for n in self.nacks.drain(..) {
                n.fire();
            }
        }
    }
}

trait Flatten<T>: Send {
    fn flatten(self: Box<Self>, flat: &mut Flat, out: &mut Leaves<T>);
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
    fn flatten_into(self, flat: &mut Flat, out: &mut Leaves<T>) {
        let mut ev = ManuallyDrop::new(self);
        // SAFETY: `ev` is valid, and taken over by the call (never used or dropped here again).
        unsafe { Self::flatten_from(&mut *ev, flat, out) }
    }

    /// Flattens the event at `ev`, reading its parts in place (see [`push_base`] for why).
    ///
    /// # Safety
    ///
    /// `ev` points to a valid event, which this call takes over: the caller must neither use
    /// nor drop it again, whether this returns or unwinds.
    unsafe fn flatten_from(ev: *mut Event<T>, flat: &mut Flat, out: &mut Leaves<T>) {
        // SAFETY: the caller's contract; each arm moves out what it keeps, once.
        unsafe {
            match &mut (*ev).node {
                Node::Base(base) => push_base(base, flat, out),
                Node::Choose(evs) => flatten_choice(std::ptr::read(evs), flat, out),
                Node::Boxed(node) => std::ptr::read(node).flatten(flat, out),
            }
        }
    }

    /// Whether the event is a base event whose flattening would change nothing (not an `after`
    /// leaf, whose deadline counts from the sync's start, nor a `signal` leaf, whose watch
    /// starts at flattening).
    #[inline]
    fn is_plain(&self) -> bool {
        match &self.node {
            Node::Base(base) => !matches!(
                base.op,
                BaseOp::After(_) | BaseOp::Signal { watch: None, .. }
            ),
            _ => false,
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

/// Flattens the events of a choice, left to right, each read in place in the vector's buffer.
/// The events not reached yet are dropped if one of them panics (a guard), and the buffer is
/// freed either way.
fn flatten_choice<T>(evs: Vec<Event<T>>, flat: &mut Flat, out: &mut Leaves<T>) {
    /// The events `[next, len)` not flattened yet, and the buffer.
    struct Rest<T> {
        buf: *mut Event<T>,
        cap: usize,
        len: usize,
        next: usize,
    }
    impl<T> Drop for Rest<T> {
        fn drop(&mut self) {
            // SAFETY: `[next, len)` are valid events nobody took over; the buffer came from a
            // vector of this capacity, whose elements are all gone after this.
            unsafe {
                let rest = std::ptr::slice_from_raw_parts_mut(
                    self.buf.add(self.next),
                    self.len - self.next,
                );
                std::ptr::drop_in_place(rest);
                drop(Vec::from_raw_parts(self.buf, 0, self.cap));
            }
        }
    }
    let mut evs = ManuallyDrop::new(evs);
    let mut rest = Rest {
        buf: evs.as_mut_ptr(),
        cap: evs.capacity(),
        len: evs.len(),
        next: 0,
    };
    while rest.next < rest.len {
        // SAFETY: in bounds; taken over by `flatten_from` (and no longer `Rest`'s) at once.
        let ev = unsafe { rest.buf.add(rest.next) };
        rest.next += 1;
        // SAFETY: as above.
        unsafe { Event::flatten_from(ev, flat, out) };
    }
}

/// Pushes the leaf of the base event at `base`, moving its operation and its finish function
/// straight from where they are into the leaf's place in `out`.
///
/// A base event is assembled field by field (narrow stores) when it is built; moving it through
/// locals, as a by-value flattening does, reloads it with wide loads that straddle those
/// stores, which the CPU cannot forward: that stalled a small choice's sync for longer than all
/// the rest of its flattening.
///
/// # Safety
///
/// `base` points to a valid base node, which this call takes over (as `flatten_from`).
#[inline(always)]
unsafe fn push_base<T>(base: *mut BaseNode<T>, flat: &mut Flat, out: &mut Leaves<T>) {
    // SAFETY: the caller's contract.
    let (op, finish) = unsafe { (&raw const (*base).op, &raw const (*base).finish) };
    // SAFETY: as above.
    let op_ref = unsafe { &*op };
    if matches!(
        op_ref,
        BaseOp::After(_) | BaseOp::Signal { watch: None, .. }
    ) {
        // SAFETY: as above: both moved out once, here.
        let (op, finish) = unsafe { (std::ptr::read(op), std::ptr::read(finish)) };
        let op = BaseNode::<T>::resolve(op, flat);
        out.push(Leaf {
            op,
            finish,
            enclosing: Enclosing::now(flat),
        });
        return;
    }
    let enclosing = Enclosing::now(flat);
    out.reserve(1);
    let len = out.len();
    // SAFETY: room for one more was reserved; `op` and `finish` are moved out once, here, into
    // the new leaf, whose three fields are all written before the length covers it.
    unsafe {
        let leaf = out.as_mut_ptr().add(len);
        std::ptr::copy_nonoverlapping(op, &raw mut (*leaf).op, 1);
        std::ptr::copy_nonoverlapping(finish, &raw mut (*leaf).finish, 1);
        std::ptr::write(&raw mut (*leaf).enclosing, enclosing);
        out.set_len(len + 1);
    }
}

impl<T> BaseNode<T> {
    /// An `after` leaf's deadline, a blocking sync's signal watch.
    #[cold]
    fn resolve(op: BaseOp, flat: &mut Flat) -> BaseOp {
        match op {
            BaseOp::After(d) => {
                let start = *flat.start.get_or_insert_with(Instant::now);
                BaseOp::At(
                    start
                        .checked_add(d)
                        .unwrap_or(start + Duration::from_secs(u32::MAX as u64)),
                )
            }
            BaseOp::Signal { sig, watch: None } if flat.block => {
                let watch = SignalWatch::new(sig)
                    .unwrap_or_else(|e| panic!("bobine::event::signal({sig}): {e}"));
                BaseOp::Signal {
                    sig,
                    watch: Some(watch),
                }
            }
            op => op,
        }
    }
}

struct GuardNode<T>(Box<dyn FnOnce() -> Event<T> + Send>);

impl<T> Flatten<T> for GuardNode<T> {
    fn flatten(self: Box<Self>, flat: &mut Flat, out: &mut Leaves<T>) {
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
    fn flatten(self: Box<Self>, flat: &mut Flat, out: &mut Leaves<U>) {
        let mut inner = Leaves::new();
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
                enclosing: leaf.enclosing,
            });
        }
    }
}

struct WrapAbortNode<T> {
    inner: Event<T>,
    abort: Box<dyn FnOnce() + Send>,
}

impl<T> Flatten<T> for WrapAbortNode<T> {
    fn flatten(self: Box<Self>, flat: &mut Flat, out: &mut Leaves<T>) {
        let id = flat.aborts.len();
        flat.aborts.push(Some(self.abort));
        flat.abort_stack.push(id);
        self.inner.flatten_into(flat, out);
        flat.abort_stack.pop();
    }
}

struct NackNode<T>(Box<dyn FnOnce(Event<()>) -> Event<T> + Send>);

impl<T> Flatten<T> for NackNode<T> {
    fn flatten(self: Box<Self>, flat: &mut Flat, out: &mut Leaves<T>) {
        let cell = Arc::new(OneShot::new());
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
        Event::base(BaseOp::Always(Slot::new(Some(Payload::new(v)))), |p| {
            p.downcast::<T>().expect("always carries its own value")
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
    /// happened). A task stopped while it waits unwinds from here: the sync is abandoned and
    /// its nacks fire.
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

/// Ready when the process receives the signal `sig` (`libc::SIGINT`, `libc::SIGTERM`,
/// `libc::SIGRTMIN() + 1`, ...) during the sync.
///
/// The sync catches `sig` from the moment its flattening reaches this leaf (after the guards
/// before it in the event have run) until it commits: a delivery before that does not count,
/// so [`Event::poll`] of a signal event gives `None`. The sync's task parks (its domain runs
/// others); a plain OS thread blocks. Every sync catching `sig` when the process receives it
/// is woken, in every runtime and thread (a signal is not a message: nobody takes it away
/// from the others). Several deliveries while a sync waits make one commit.
///
/// While at least one sync catches `sig`, the process's own disposition of it (the default
/// action, an ignore, a handler installed with `sigaction`) does not run; it is back as soon
/// as the last such sync has ended, so between two syncs a delivery meets that disposition
/// (for SIGINT and SIGTERM by default: the end of the process). A program that waits for a
/// signal in a loop and must survive a delivery between two waits sets it to ignored first
/// (`libc::signal(sig, libc::SIG_IGN)`). The handler bobine installs only counts the delivery
/// and wakes a dispatcher thread, `bobine-signals`, which wakes the syncs: nothing of yours
/// runs in signal context.
///
/// ```
/// use std::time::Duration;
/// use bobine::event::{after, select, signal};
///
/// bobine::run(|| {
///     // Wait for SIGINT or SIGTERM, for 10 ms at most.
///     let why = select(vec![
///         signal(libc::SIGINT).wrap(|()| "interrupted"),
///         signal(libc::SIGTERM).wrap(|()| "terminated"),
///         after(Duration::from_millis(10)).wrap(|()| "time's up"),
///     ]);
///     assert_eq!(why, "time's up");
/// });
/// ```
///
/// # Panics
///
/// Here, if `sig` cannot be caught: SIGKILL and SIGSTOP, the fault signals SIGSEGV, SIGBUS,
/// SIGFPE and SIGILL, the numbers the C library keeps for itself (between the standard signals
/// and `SIGRTMIN`), and numbers outside `1..=SIGRTMAX`; the message names the signal. At the
/// sync, if the signal facility cannot start (no descriptor left for its pipe, no thread).
#[track_caller]
pub fn signal(sig: i32) -> Event<()> {
    if let Err(e) = crate::sched::signals::check(sig) {
        panic!("bobine::event::signal: {e}");
    }
    Event::base(BaseOp::Signal { sig, watch: None }, |_| ())
}

/// Ready when the task of `h` has ended.
pub fn join<T>(h: &crate::thread::JoinHandle<T>) -> Event<()> {
    Event::base(BaseOp::Join(h.task().clone()), |_| ())
}
