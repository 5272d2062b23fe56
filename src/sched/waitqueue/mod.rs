//! The wait queue every blocking primitive shares: a FIFO list of waiters whose nodes live on
//! the waiters' own stacks.
//!
//! A primitive keeps a [`WaitList`] inside its own [`SpinLock`], next to its state, so that
//! checking the state and queueing happen under one short lock. Waiting is [`WaitIn::park`]
//! (a wait described by name: which lock and list, the [`Wait`], and the hooks the primitive
//! needs); waking is [`WaitList::pop_front`] (which unlinks the oldest waiter and hands back
//! its `Unparker`) or [`WaitList::pop_front_nudge`].
//!
//! A waker wakes a waiter in one of two ways:
//!
//! - it **hands over** what the waiter waits for (a mutex in hand-off mode, a permit, a value,
//!   a notification): the waiter's wait ends [`Woken::Notified`] and the thing is the
//!   waiter's;
//! - it **nudges** it: the thing stays where anyone may take it (a mutex left free, a permit
//!   left in the count) and the waiter is only told to come and compete for it; its wait ends
//!   [`Woken::Nudged`] and it tries again. A waiter that loses that race may queue again *at
//!   the front* ([`WaitIn::front`]), keeping its place. This is what lets the locks of
//!   `sync` serve a running task at once instead of waiting for a parked one to wake (see
//!   `sync::raw`).
//!
//! ## Protocol
//!
//! 1. The waiter arms a [`Park`], links a node holding its `Unparker` at the back of the list
//!    (or at the front, for a waiter that lost after a nudge) under the primitive's lock,
//!    releases the lock and parks.
//! 2. A waker, under the same lock, takes the `Unparker` out of the front node, marks the node
//!    nudged if it nudges, and unlinks it; then (usually after releasing the lock) it unparks
//!    the waiter. From the moment it is unlinked the node belongs to its waiter again; the
//!    waker never touches it after that.
//! 3. The waiter, once its park ends for any reason, looks at its node's `linked` flag, which
//!    the waker cleared (release) as its last touch of the node: unlinked means a waker chose it
//!    ([`Woken::Notified`], or [`Woken::Nudged`] if the node is marked so, which the same
//!    release publishes): whatever the waker handed over (a mutex, a permit, a value) is the
//!    waiter's, and a nudge is the waiter's to act on, even if its park ended by timeout or by
//!    a stop at the same moment. Still linked, it takes the lock, looks again, and unlinks
//!    itself: it timed out or was interrupted.
//! 4. A waiter always leaves the list before its frame ends: on unwinding too (a guard unlinks
//!    the node), so the list never points into a dead stack. A waiter that unlinks itself
//!    (timed out, given up, or unwinding) runs the primitive's `withdraw` hook under the lock
//!    (a barrier uncounts it, a reader-writer lock lets in those it held back); one that a
//!    waker had chosen but that unwinds instead of acting on it runs `pass_on` with how it was
//!    chosen (a mutex or permit handed over goes to the next waiter; a nudge is passed to the
//!    next waiter, or its mark cleared), so nothing handed over and no wake-up is lost.
//!
//! Nodes on the stack cost no allocation; stacks never move, so a node's address is stable for
//! as long as its waiter is inside [`wait_in`]. Rejected alternative: a `VecDeque` of
//! unparkers, which allocates, and cannot remove a timed-out waiter without a search.
//!
//! ## Hand-off waits
//!
//! A primitive that moves a value between the two sides (a rendezvous channel) uses the same
//! list in *hand-off* mode ([`WaitIn::park_handoff`], [`WaitList::pop_front_handoff`]): the
//! node also names a slot on the waiter's stack, and the waker does everything under the lock,
//! so the unparker can be borrowed (no reference count on the task, see
//! `park::park_current_borrowed`) and the waiter never reads the node without the lock.
//!
//! 1. The waiter, under the lock, arms its park, links a node holding its borrowed unparker
//!    and a pointer to its slot, releases the lock and parks.
//! 2. A waker, under the same lock, unlinks the front node: that is the commit. Still under the
//!    lock it moves the value in or out of the slot, then wakes the waiter with
//!    [`HandOff::wake`], its last touch of the node and of the task; then it releases the lock.
//! 3. The waiter, woken `Unparked`, returns at once: only the waker that popped it holds its
//!    unparker, and it moved the value before the wake.
//! 4. A waiter whose park ended otherwise (its deadline, a stop) takes the lock: still linked,
//!    it unlinks itself (the `withdraw` hook runs) and its wait failed; unlinked, a waker
//!    committed it and, since we hold the lock it held, has finished step 2: the hand-off
//!    stands (a stop then takes effect at the next park point).
//!
//! A waiter that unwinds while queued (it cannot, short of its task being abandoned, whose
//! stack is never freed) would unlink itself on the way. The `after_queued` and `pass_on`
//! hooks have no use here: nothing is handed over after the lock is released.
//!
//! Why not the plain protocol: its waker wakes after releasing the lock, so it needs a counted
//! unparker (two atomic read-modify-writes per wait), and its waiter reads `linked` without the
//! lock, which a waker that still holds a borrowed unparker cannot allow.
//!
//! Both protocols are model-checked with loom as a model of their steps (`loom_checks::waitqueue`,
//! which must be kept in step with this module).

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::sched::park::{Unparker, Wait, Wake, park_current, park_current_borrowed, stop};
use crate::util::{SpinGuard, SpinLock};

/// One waiter, on its owner's stack. Every field is touched only under the lock of the list
/// the node is in (or by its owner while it is in no list), except `linked`, which the owner
/// may read without the lock once woken (and `nudged`, which that read publishes).
pub(crate) struct Waiter {
    unparker: Cell<Option<Unparker>>,
    prev: Cell<*const Waiter>,
    next: Cell<*const Waiter>,
    /// Cleared (release) by whoever unlinks the node; a woken owner that reads it cleared
    /// (acquire) knows a waker chose it without taking the lock.
    linked: AtomicBool,
    /// What the waiter waits for, for primitives with several kinds (readers and writers).
    tag: u8,
    /// Set by a waker that nudges (step 2) before it unlinks the node: nothing was handed over.
    nudged: Cell<bool>,
    /// Hand-off waits only: the waiter's slot, which the waker fills or empties under the lock.
    slot: *mut (),
}

impl Waiter {
    /// How a waker that unlinked this node chose it (read by the owner once unlinked).
    fn chosen(&self) -> Woken {
        if self.nudged.get() {
            Woken::Nudged
        } else {
            Woken::Notified
        }
    }
}

/// How a wait in [`wait_in`] ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Woken {
    /// A waker unlinked us: what it handed over is ours.
    Notified,
    /// A waker unlinked us without handing anything over ([`WaitList::pop_front_nudge`]): what
    /// we wait for was left for anyone to take, and we should try again (a waiter that loses
    /// may queue again at the front, [`WaitIn::front`]).
    Nudged,
    /// The deadline passed first.
    TimedOut,
    /// The wait was given up (a wait for readiness or time, at shutdown: see `park::stop`).
    /// A hand-over wait never ends this way.
    Interrupted,
}

/// A FIFO list of [`Waiter`]s. Plain data: the owning primitive's lock protects it.
pub(crate) struct WaitList {
    head: *const Waiter,
    tail: *const Waiter,
    len: usize,
}

// SAFETY: the raw pointers name nodes of waiters that are blocked inside `wait_in`; the list is
// only touched under its primitive's lock, from whichever thread holds it.
unsafe impl Send for WaitList {}

// The nodes' cells are only touched under the list's lock, never across user code.
impl std::panic::UnwindSafe for WaitList {}
impl std::panic::RefUnwindSafe for WaitList {}

impl WaitList {
    pub(crate) const fn new() -> Self {
        WaitList {
            head: std::ptr::null(),
            tail: std::ptr::null(),
            len: 0,
        }
    }

    /// Whether nobody waits (waiters of abandoned tasks do not count: they are dropped from
    /// the front here, so that a newcomer does not queue behind them).
    pub(crate) fn is_empty(&mut self) -> bool {
        self.drop_dead_front();
        self.head.is_null()
    }

    /// Whether no node is linked at all, waiters of abandoned tasks included: unlike
    /// [`is_empty`](Self::is_empty) it looks at no waiter's task, which suits a waker that has
    /// just popped one (it meets an abandoned waiter when it pops it, and skips it then).
    pub(crate) fn nobody_linked(&self) -> bool {
        self.head.is_null()
    }

    /// The tag of the oldest waiter (abandoned ones dropped first, as in `is_empty`).
    pub(crate) fn front_tag(&mut self) -> Option<u8> {
        self.drop_dead_front();
        // SAFETY: a linked node is alive (its waiter is blocked in `WaitIn::park`, or its task
        // was abandoned with its stack left in place).
        (!self.head.is_null()).then(|| unsafe { (*self.head).tag })
    }

    /// Unlinks the oldest waiter and returns its unparker, for the caller to wake.
    ///
    /// The waiter may be a task the shutdown abandoned (its node stays on a stack that is
    /// never freed): a caller that hands something over wakes it with
    /// [`Unparker::hand_over`], and on `false` hands it to the next waiter instead.
    pub(crate) fn pop_front(&mut self) -> Option<Unparker> {
        self.take_front(false)
    }

    /// Unlinks the oldest waiter as a **nudge** and returns its unparker, for the caller to
    /// wake: its wait ends [`Woken::Nudged`], with nothing handed over (it comes back to
    /// compete). Like [`pop_front`](Self::pop_front), the waiter may be a task the shutdown
    /// abandoned: wake it with [`Unparker::hand_over`], and on `false` nudge the next one.
    pub(crate) fn pop_front_nudge(&mut self) -> Option<Unparker> {
        self.take_front(true)
    }

    fn take_front(&mut self, nudge: bool) -> Option<Unparker> {
        if self.head.is_null() {
            return None;
        }
        let node = self.head;
        // Take the unparker first: once `unlink` clears `linked`, the owner may return and
        // its node be gone.
        // SAFETY: a linked node is alive; we hold the list's lock.
        let unparker = unsafe { (*node).unparker.take() };
        // SAFETY: as above; `unlink`'s release store publishes the mark to the owner.
        unsafe { (*node).nudged.set(nudge) };
        // SAFETY: as above.
        unsafe { self.unlink(node) };
        unparker
    }

    /// Hand-off mode, step 2: unlinks the oldest waiter and hands back its slot and unparker.
    ///
    /// The caller moves the value through [`HandOff::slot`] and calls [`HandOff::wake`]
    /// before it releases the lock (a waiter woken by its deadline or a stop may leave as soon
    /// as it gets the lock). Only for lists whose waiters all wait with
    /// [`WaitIn::park_handoff`].
    #[inline]
    pub(crate) fn pop_front_handoff(&mut self) -> Option<HandOff> {
        if self.head.is_null() {
            return None;
        }
        let node = self.head;
        // SAFETY: a linked node is alive (its waiter cannot leave without the lock we hold);
        // its unparker and slot are ours to read under the lock.
        let (unparker, slot) = unsafe { ((*node).unparker.take(), (*node).slot) };
        // SAFETY: as above.
        unsafe { self.unlink(node) };
        Some(HandOff {
            slot,
            unparker: unparker.expect("a queued waiter holds its unparker"),
        })
    }

    /// Unlinks the waiters of abandoned tasks at the front.
    fn drop_dead_front(&mut self) {
        while !self.head.is_null() {
            let node = self.head;
            // SAFETY: a linked node is alive; we hold the list's lock.
            let unparker = unsafe { (*node).unparker.take() };
            let dead = unparker.as_ref().is_some_and(Unparker::is_dead);
            if !dead {
                // SAFETY: as above.
                unsafe { (*node).unparker.set(unparker) };
                return;
            }
            // SAFETY: as above.
            unsafe { self.unlink(node) };
        }
    }

    /// Links `node` at the front.
    ///
    /// # Safety
    ///
    /// As [`push_back`](Self::push_back).
    unsafe fn push_front(&mut self, node: &Waiter) {
        node.prev.set(std::ptr::null());
        node.next.set(self.head);
        if self.head.is_null() {
            self.tail = node;
        } else {
            // SAFETY: the head is a linked, live node.
            unsafe { (*self.head).prev.set(node) };
        }
        self.head = node;
        node.linked.store(true, Ordering::Relaxed);
        self.len += 1;
    }

    /// Links `node` at the back.
    ///
    /// # Safety
    ///
    /// `node` must stay alive and in place until it is unlinked (see the protocol, step 4).
    #[inline]
    unsafe fn push_back(&mut self, node: &Waiter) {
        node.prev.set(self.tail);
        node.next.set(std::ptr::null());
        if self.tail.is_null() {
            self.head = node;
        } else {
            // SAFETY: the tail is a linked, live node.
            unsafe { (*self.tail).next.set(node) };
        }
        self.tail = node;
        node.linked.store(true, Ordering::Relaxed);
        self.len += 1;
    }

    /// Unlinks `node`, which must be linked in this list. Clearing `linked` is the last access
    /// to the node: after it the owner may return without the lock.
    ///
    /// # Safety
    ///
    /// `node` is linked in `self`, and its neighbours are live linked nodes.
    #[inline]
    unsafe fn unlink(&mut self, node: *const Waiter) {
        // SAFETY: per the contract, the node is live until the store at the end.
        let (prev, next) = unsafe { ((*node).prev.get(), (*node).next.get()) };
        if prev.is_null() {
            self.head = next;
        } else {
            // SAFETY: per the contract, neighbours are live.
            unsafe { (*prev).next.set(next) };
        }
        if next.is_null() {
            self.tail = prev;
        } else {
            // SAFETY: as above.
            unsafe { (*next).prev.set(prev) };
        }
        self.len -= 1;
        // SAFETY: still live; after this store the owner may free it, so this is the last use.
        unsafe { (*node).linked.store(false, Ordering::Release) };
    }
}

/// A waiter of a hand-off wait, just popped by [`WaitList::pop_front_handoff`] under the lock
/// that is still held.
pub(crate) struct HandOff {
    slot: *mut (),
    unparker: Unparker,
}

impl HandOff {
    /// The waiter's slot, as it gave it to [`WaitIn::park_handoff`]; the caller may read and
    /// write it (as the type the primitive agreed on) until it calls [`HandOff::wake`].
    #[inline]
    pub(crate) fn slot(&self) -> *mut () {
        self.slot
    }

    /// Step 2's end: wakes the waiter (call it under the lock, after moving the value). True
    /// if the waiter has what was moved (woken now, or its park ended meanwhile and it will
    /// find itself chosen); false if it is a task the shutdown abandoned, which never will:
    /// the caller takes back what it moved (the slot stays valid: an abandoned task's stack
    /// is never freed) and tries the next waiter.
    #[inline]
    pub(crate) fn wake(self) -> bool {
        self.unparker.hand_over()
    }
}

/// Runs when a waiter unwinds out of its wait (it was stopped while it waited): unlinks the
/// node and runs `withdraw` if no waker did (step 4); if a waker did, what it handed over (a
/// mutex, a permit, a signal) or the nudge it gave would be lost with this waiter, so
/// `pass_on` gives it to the next one.
struct LeaveOnDrop<'a, S, L: Fn(&mut S) -> &mut WaitList, P: FnOnce(Woken), W: FnOnce(&mut S)> {
    lock: &'a SpinLock<S>,
    list: &'a L,
    node: &'a Waiter,
    pass_on: Option<P>,
    withdraw: Option<W>,
    /// Cleared once the wait has ended normally: dropping then does nothing.
    armed: bool,
}

impl<S, L, P, W> LeaveOnDrop<'_, S, L, P, W>
where
    L: Fn(&mut S) -> &mut WaitList,
    P: FnOnce(Woken),
    W: FnOnce(&mut S),
{
    /// Unlinks the node if it is still linked, running `withdraw` under the lock; returns
    /// whether it was.
    fn leave(&mut self) -> bool {
        let mut guard = self.lock.lock();
        let linked = self.node.linked.load(Ordering::Relaxed);
        if linked {
            // SAFETY: the node is linked in this list, which we hold the lock of.
            unsafe { (self.list)(&mut guard).unlink(self.node) };
            if let Some(withdraw) = self.withdraw.take() {
                withdraw(&mut guard);
            }
        }
        linked
    }
}

impl<S, L, P, W> Drop for LeaveOnDrop<'_, S, L, P, W>
where
    L: Fn(&mut S) -> &mut WaitList,
    P: FnOnce(Woken),
    W: FnOnce(&mut S),
{
    fn drop(&mut self) {
        if self.armed && !self.leave() {
            if let Some(pass_on) = self.pass_on.take() {
                // Unlinked by a waker (acquire, in `leave`'s lock): the mark is the waker's.
                pass_on(self.node.chosen());
            }
        }
    }
}

/// A wait on a [`WaitList`], described by name: the primitive's lock and the list in it, a tag
/// (what the waiter waits for, when a list mixes kinds), where it queues (at the back, or at
/// the front for a waiter that keeps its place), the [`Wait`], and three hooks, each a no-op
/// unless set:
///
/// - `after_queued`: runs once the waiter is queued and the lock released, before it parks (a
///   condition variable unlocks its mutex there: any waker that comes after finds it queued);
/// - `withdraw`: runs under the lock when the waiter leaves the list by itself (timed out,
///   given up, or unwinding), with the primitive's state;
/// - `pass_on`: runs when the waiter was chosen by a waker but unwinds instead of acting on it,
///   with how it was chosen ([`Woken::Notified`]: what it was handed goes to the next waiter;
///   [`Woken::Nudged`]: the nudge does).
pub(crate) struct WaitIn<'a, S, L, A = fn(), W = fn(&mut S), P = fn(Woken)> {
    lock: &'a SpinLock<S>,
    list: L,
    tag: u8,
    front: bool,
    wait: Wait,
    after_queued: A,
    withdraw: W,
    pass_on: P,
}

impl<'a, S, L> WaitIn<'a, S, L>
where
    L: Fn(&mut S) -> &mut WaitList,
{
    /// A wait on `list(state)` of `lock`, with no hooks and tag 0.
    pub(crate) fn new(lock: &'a SpinLock<S>, list: L, wait: Wait) -> Self {
        fn nothing() {}
        fn nothing_with<S>(_: &mut S) {}
        fn nothing_passed(_: Woken) {}
        WaitIn {
            lock,
            list,
            tag: 0,
            front: false,
            wait,
            after_queued: nothing,
            withdraw: nothing_with::<S>,
            pass_on: nothing_passed,
        }
    }
}

impl<'a, S, L, A, W, P> WaitIn<'a, S, L, A, W, P>
where
    L: Fn(&mut S) -> &mut WaitList,
    A: FnOnce(),
    W: FnOnce(&mut S),
    P: FnOnce(Woken),
{
    /// Sets the waiter's tag (read by wakers with [`WaitList::front_tag`]).
    pub(crate) fn tag(mut self, tag: u8) -> Self {
        self.tag = tag;
        self
    }

    /// Queues the waiter at the front instead of the back: a waiter that was nudged and lost
    /// the race keeps its place ahead of those that came after it.
    pub(crate) fn front(mut self, front: bool) -> Self {
        self.front = front;
        self
    }

    /// Sets the `after_queued` hook.
    pub(crate) fn after_queued<A2: FnOnce()>(self, f: A2) -> WaitIn<'a, S, L, A2, W, P> {
        WaitIn {
            lock: self.lock,
            list: self.list,
            tag: self.tag,
            front: self.front,
            wait: self.wait,
            after_queued: f,
            withdraw: self.withdraw,
            pass_on: self.pass_on,
        }
    }

    /// Sets the `withdraw` hook.
    pub(crate) fn withdraw<W2: FnOnce(&mut S)>(self, f: W2) -> WaitIn<'a, S, L, A, W2, P> {
        WaitIn {
            lock: self.lock,
            list: self.list,
            tag: self.tag,
            front: self.front,
            wait: self.wait,
            after_queued: self.after_queued,
            withdraw: f,
            pass_on: self.pass_on,
        }
    }

    /// Sets the `pass_on` hook.
    pub(crate) fn pass_on<P2: FnOnce(Woken)>(self, f: P2) -> WaitIn<'a, S, L, A, W, P2> {
        WaitIn {
            lock: self.lock,
            list: self.list,
            tag: self.tag,
            front: self.front,
            wait: self.wait,
            after_queued: self.after_queued,
            withdraw: self.withdraw,
            pass_on: f,
        }
    }

    /// Queues the caller at the back of the list (or the front: [`front`](Self::front); the
    /// caller holds the lock's `guard`), releases the lock, runs `after_queued`, parks until a
    /// waker unlinks it, the deadline passes, or the wait is given up, and says how the wait
    /// ended. The lock is not held on return: a caller that needs the state again takes it.
    ///
    /// Whatever happens, the caller's node is out of the list when this returns or unwinds
    /// (protocol step 4).
    #[track_caller]
    pub(crate) fn park(self, guard: SpinGuard<'_, S>) -> Woken {
        let WaitIn {
            lock,
            list,
            tag,
            front,
            wait,
            after_queued,
            withdraw,
            pass_on,
        } = self;
        let node = Waiter {
            unparker: Cell::new(None),
            prev: Cell::new(std::ptr::null()),
            next: Cell::new(std::ptr::null()),
            linked: AtomicBool::new(false),
            tag,
            nudged: Cell::new(false),
            slot: std::ptr::null_mut(),
        };
        let mut guard = Some(guard);
        let mut leave = None;
        let why = park_current(&wait, |unparker| {
            let mut guard = guard.take().expect("published once");
            node.unparker.set(Some(unparker));
            // SAFETY: `leave` below unlinks the node before this frame ends, on every path.
            unsafe {
                if front {
                    list(&mut guard).push_front(&node)
                } else {
                    list(&mut guard).push_back(&node)
                }
            };
            drop(guard);
            leave = Some(LeaveOnDrop {
                lock,
                list: &list,
                node: &node,
                pass_on: Some(pass_on),
                withdraw: Some(withdraw),
                armed: true,
            });
            after_queued();
        });
        let mut leave = leave.expect("the waiter was queued");
        // From here the wait has ended normally: the guard only has to drop its hooks.
        leave.armed = false;
        if !node.linked.load(Ordering::Acquire) {
            // A waker unlinked us (release): what it handed over is ours, even if a stop or the
            // deadline ended the park at the same moment (the stop then takes effect at the
            // next park point); a nudge is ours to act on.
            return node.chosen();
        }
        if !leave.leave() {
            // A waker chose us just now: ours all the same.
            return node.chosen();
        }
        match why {
            Wake::TimedOut => Woken::TimedOut,
            _ => {
                // Out of the list with nothing handed over: a stop unwinds now (the hooks have
                // run); a soft wait the shutdown gave up reports it.
                stop::unwind_if_stopped();
                Woken::Interrupted
            }
        }
    }

    /// A hand-off wait (module doc, "Hand-off waits"): queues the caller with `slot`, releases
    /// the lock, parks until a waker commits it (`Notified`: the waker has moved the value
    /// through `slot`), the deadline passes, or the wait is given up, as [`WaitIn::park`]
    /// does. Only the `withdraw` hook is used. The lock is not held on return.
    ///
    /// # Safety
    ///
    /// Every waker of this list commits with [`WaitList::pop_front_handoff`] and finishes
    /// with [`HandOff::wake`] before it releases the lock; `slot` stays valid for them (it is
    /// in the caller's frame, which outlives this call).
    #[track_caller]
    #[inline(always)]
    pub(crate) unsafe fn park_handoff(self, guard: SpinGuard<'_, S>, slot: *mut ()) -> Woken {
        let WaitIn {
            lock,
            list,
            tag,
            wait,
            withdraw,
            ..
        } = self;
        let node = Waiter {
            unparker: Cell::new(None),
            prev: Cell::new(std::ptr::null()),
            next: Cell::new(std::ptr::null()),
            linked: AtomicBool::new(false),
            tag,
            nudged: Cell::new(false),
            slot,
        };
        let mut guard = Some(guard);
        // Unwinding with the node queued (which only a bug could cause) must not leave the list
        // pointing into a dead frame.
        let mut leave = LeaveOnDrop {
            lock,
            list: &list,
            node: &node,
            pass_on: None::<fn(Woken)>,
            withdraw: Some(withdraw),
            armed: true,
        };
        // SAFETY: the unparker goes into the node only; a waker takes it out under the lock and
        // wakes it before releasing that lock (the caller's contract), and we leave only when
        // woken by it or after taking the lock and finding (or making) the node unlinked (step
        // 4), so it is never used after this wait.
        let why = unsafe {
            park_current_borrowed(&wait, |unparker| {
                let mut guard = guard.take().expect("published once");
                // A write, not `Cell::set`: nothing to read or drop in an unlinked node.
                node.unparker.as_ptr().write(Some(unparker));
                // SAFETY: `leave` unlinks the node before this frame ends, on every path.
                list(&mut guard).push_back(&node);
                drop(guard);
            })
        };
        if why == Wake::Unparked {
            // Step 3: only the waker that popped us holds that unparker.
            leave.armed = false;
            return Woken::Notified;
        }
        // Step 4.
        leave.armed = false;
        if !leave.leave() {
            return Woken::Notified;
        }
        match why {
            Wake::TimedOut => Woken::TimedOut,
            _ => {
                stop::unwind_if_stopped();
                Woken::Interrupted
            }
        }
    }
}

#[cfg(test)]
mod tests;
