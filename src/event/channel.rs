//! CML channels: synchronous rendezvous points shared by any number of senders and receivers,
//! tasks on any domain and plain OS threads alike.
//!
//! A channel is two FIFO queues of offers (blocked senders, blocked receivers) under one spin
//! lock. An offer is one of two kinds:
//!
//! - a **sync offer** names a blocked general sync ([`SyncState`], in the syncer's frame) and
//!   one of its leaves, with that leaf's value [`Slot`] (where a send offer's value waits). A partner commits it
//!   with the sync's state word (claim, move the value, complete: `commit.rs`), because the sync
//!   may have committed elsewhere. Once its word has settled, the syncer takes its offers out of
//!   every channel it offered on (under each channel's lock: `sync.rs`, step 4 of the module
//!   doc); an offer a partner meets before that is stale and dropped as it scans past it. Stale
//!   offers are also swept every [`SWEEP_EVERY`] registrations.
//! - a **waiter** is a `Channel::send`/`recv` shorthand blocked on its own stack: one leaf, so
//!   nothing else can commit it, and no state word is needed. The channel lock is its commit
//!   point.
//!
//! ## The waiter protocol
//!
//! 1. The shorthand, under the channel lock, finds no partner. It arms its park, writes its
//!    unparker and its value slot (an `Option<T>` on its stack: the value to send, or an empty
//!    place for the one it will receive) into a [`Waiter`] on its stack, queues a pointer to it,
//!    and releases the lock. Then it parks.
//! 2. A partner, under the same lock, pops the waiter: popping is the commit. Still under the
//!    lock it moves the value (typed, with no allocation, when the partner is a shorthand too;
//!    through [`SlotFns`] when it is a general sync holding a boxed payload), then takes the
//!    unparker out of the waiter (its last touch of the waiter) and wakes it; it releases the
//!    lock. Owning the unparker matters: a woken waiter may return, and its thread end, before
//!    `unpark` has finished with what the unparker names.
//! 3. The waiter, woken `Unparked`, returns: only its partner holds that unparker, and the
//!    value was moved before the wake.
//! 4. A waiter woken otherwise (its task is being stopped), or unwound while parked, takes the
//!    channel lock and removes itself from the queue. Found there: nobody committed it, it
//!    unwinds (a value it meant to send is dropped by itself, outside the lock). Not found: a
//!    partner popped it and, holding the lock we just took, has finished step 2: the commit
//!    stands and the wait returns normally (the stop takes effect at the next park point).
//!
//! Step 4 is why a waiter's frame may be borrowed by the queue: it never returns (or unwinds
//! past its frame) while its offer is queued or a partner is inside step 2.

use std::collections::VecDeque;
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::Arc;

use super::commit::{Claim, Slot, SyncState};
use super::payload::Payload;
use super::{BaseOp, Event};
use crate::sched::park::{Unparker, Wait, Wake, park_current_borrowed, stop};
use crate::util::{SpinGuard, SpinLock};

/// Registrations between two full sweeps of a queue's stale offers.
const SWEEP_EVERY: u32 = 64;

/// A blocked sync's interest in one channel.
pub(crate) enum Offer {
    /// Leaf `leaf` of a general sync, whose state and slots live in its syncer's frame (see
    /// the module doc for why the pointers stay valid while the offer is queued).
    Sync {
        state: NonNull<SyncState>,
        slot: NonNull<Slot>,
        leaf: usize,
    },
    /// A shorthand blocked on its stack (see the module doc for why the pointer stays valid).
    Waiter(NonNull<Waiter>),
}

// SAFETY: both pointers are only followed under the channel lock while the offer is queued (or
// by the partner that popped it, until it completes or wakes it), and what they name outlives
// that (module doc; `commit.rs`); everything an offer gives access to is `Send` (a waiter's
// slot holds a `T: Send`, a sync's slots hold payloads, which are `Send`).
unsafe impl Send for Offer {}

impl Offer {
    /// The offer of leaf `leaf` of the sync `state`, whose value slot is `slot`.
    pub(crate) fn sync(state: &SyncState, slot: &Slot, leaf: usize) -> Offer {
        Offer::Sync {
            state: NonNull::from(state),
            slot: NonNull::from(slot),
            leaf,
        }
    }

    /// Whether a partner could still commit this offer (a waiter's task may have been
    /// abandoned by a shutdown: that shows when it is woken, see [`Waiter::wake`]; a sync
    /// offer's syncer is checked as it is claimed, see [`Queues::pop_partner`]).
    fn is_live(&self) -> bool {
        match self {
            // SAFETY: a queued offer's sync is alive (module doc), and we hold the lock.
            Offer::Sync { state, .. } => unsafe { state.as_ref() }.is_waiting(),
            Offer::Waiter(_) => true,
        }
    }

    fn is(&self, waiter: &Waiter) -> bool {
        matches!(self, Offer::Waiter(p) if std::ptr::eq(p.as_ptr(), waiter))
    }

    fn of_sync(&self, state: *const SyncState) -> bool {
        matches!(self, Offer::Sync { state: p, .. } if std::ptr::eq(p.as_ptr(), state))
    }
}

/// A partner found in a queue and already committed: a claimed general sync (to be completed
/// after the value has moved), or a popped waiter (to be woken after the value has moved).
enum Partner {
    Claimed {
        state: NonNull<SyncState>,
        slot: NonNull<Slot>,
        leaf: usize,
        claim: Claim,
    },
    Waiter(NonNull<Waiter>),
}

impl Partner {
    /// Moves `value` into a claimed receive offer's slot and completes it.
    ///
    /// # Safety
    ///
    /// `state` and `slot` are those of a `Claimed` partner just popped (its claim gives us
    /// the slot, and keeps the sync alive, until `complete`).
    unsafe fn put_and_complete(
        state: NonNull<SyncState>,
        slot: NonNull<Slot>,
        leaf: usize,
        claim: Claim,
        value: Payload,
    ) {
        // SAFETY: per the contract.
        unsafe {
            slot.as_ref().put(value);
            state.as_ref().complete(leaf, claim);
        }
    }

    /// Takes the value out of a claimed send offer's slot and completes it.
    ///
    /// # Safety
    ///
    /// As [`Partner::put_and_complete`].
    unsafe fn take_and_complete(
        state: NonNull<SyncState>,
        slot: NonNull<Slot>,
        leaf: usize,
        claim: Claim,
    ) -> Payload {
        // SAFETY: per the contract.
        unsafe {
            let value = slot.as_ref().take();
            state.as_ref().complete(leaf, claim);
            value
        }
    }
}

/// Moves a boxed payload in or out of a waiter's typed slot, for general syncs (which only
/// know payloads) meeting a shorthand.
struct SlotFns {
    /// Takes the value out of a sending waiter's `Option<T>`, boxed.
    take: unsafe fn(*mut ()) -> Payload,
    /// Puts a payload (a boxed `T`) into a receiving waiter's `Option<T>`.
    put: unsafe fn(*mut (), Payload),
}

/// The [`SlotFns`] of `Option<T>` slots.
struct TypedSlot<T>(PhantomData<T>);

impl<T: Send + 'static> TypedSlot<T> {
    const FNS: SlotFns = SlotFns {
        take: Self::take,
        put: Self::put,
    };

    /// # Safety
    ///
    /// `slot` points to a live `Option<T>` the caller may write.
    unsafe fn take(slot: *mut ()) -> Payload {
        // SAFETY: forwarded to the caller.
        let slot = unsafe { &mut *slot.cast::<Option<T>>() };
        Payload::new(slot.take().expect("a sending waiter holds its value"))
    }

    /// # Safety
    ///
    /// As for [`TypedSlot::take`].
    unsafe fn put(slot: *mut (), value: Payload) {
        // SAFETY: forwarded to the caller.
        let slot = unsafe { &mut *slot.cast::<Option<T>>() };
        *slot = Some(
            value
                .downcast::<T>()
                .expect("a channel carries values of its own type"),
        );
    }
}

/// A blocked `Channel::send`/`recv` shorthand, on its own stack (see the module doc).
pub(crate) struct Waiter {
    /// The waiter's `Option<T>`: `Some(value)` to send, or `None` to receive into.
    slot: *mut (),
    fns: &'static SlotFns,
    /// Set before the waiter is queued, read by the partner that pops it.
    unparker: Option<Unparker>,
}

impl Waiter {
    /// Step 2 for a partner that popped this waiter: the value has moved; take the unparker
    /// out (our last touch of the waiter: once woken it may return and its frame be gone) and
    /// wake it.
    ///
    /// # Safety
    ///
    /// `this` was just popped from its queue and the channel lock is still held.
    ///
    /// Returns false if the waiter is a task the shutdown abandoned: it will never take what
    /// was moved into its slot (the memory stays: an abandoned task's stack is never freed), so
    /// the caller takes it back for the next partner.
    unsafe fn wake(this: NonNull<Waiter>) -> bool {
        // SAFETY: per the contract, the waiter is alive (module doc, step 4) and ours.
        let unparker = unsafe { (*this.as_ptr()).unparker.take() };
        unparker
            .expect("a queued waiter has its unparker")
            .hand_over()
    }
}

#[derive(Default)]
pub(crate) struct Queues {
    senders: VecDeque<Offer>,
    receivers: VecDeque<Offer>,
    registrations: u32,
}

impl Queues {
    /// Pops and commits the oldest live offer of `q` (stale offers, and those of syncers a
    /// shutdown abandoned, are dropped).
    #[inline]
    fn pop_partner(q: &mut VecDeque<Offer>) -> Option<Partner> {
        while let Some(offer) = q.pop_front() {
            match offer {
                Offer::Waiter(w) => return Some(Partner::Waiter(w)),
                Offer::Sync { state, slot, leaf } => {
                    // SAFETY: a queued offer's sync is alive, and we hold the lock.
                    if let Some(claim) = unsafe { state.as_ref() }.claim() {
                        return Some(Partner::Claimed {
                            state,
                            slot,
                            leaf,
                            claim,
                        });
                    }
                }
            }
        }
        None
    }

    /// Hands `value` to the oldest blocked receiver; gives it back if there is none.
    pub(crate) fn give(&mut self, mut value: Payload) -> Result<(), Payload> {
        loop {
            match Self::pop_partner(&mut self.receivers) {
                None => return Err(value),
                Some(Partner::Claimed {
                    state,
                    slot,
                    leaf,
                    claim,
                }) => {
                    // SAFETY: just popped and claimed.
                    unsafe { Partner::put_and_complete(state, slot, leaf, claim, value) };
                    return Ok(());
                }
                Some(Partner::Waiter(w)) => {
                    // SAFETY: just popped under the lock we hold: the waiter and its slot are
                    // ours until we wake it (and for good if its task was abandoned: then
                    // `wake` says so and the value is taken back); its slot is an `Option<T>`
                    // of this channel's `T`.
                    unsafe {
                        let waiter = w.as_ref();
                        (waiter.fns.put)(waiter.slot, value);
                        if Waiter::wake(w) {
                            return Ok(());
                        }
                        value = (waiter.fns.take)(waiter.slot);
                    }
                }
            }
        }
    }

    /// Takes the value of the oldest blocked sender, if any.
    pub(crate) fn take(&mut self) -> Option<Payload> {
        match Self::pop_partner(&mut self.senders)? {
            Partner::Claimed {
                state,
                slot,
                leaf,
                claim,
            } => {
                // SAFETY: just popped and claimed.
                Some(unsafe { Partner::take_and_complete(state, slot, leaf, claim) })
            }
            Partner::Waiter(w) => {
                // SAFETY: as in `give`.
                unsafe {
                    let waiter = w.as_ref();
                    let value = (waiter.fns.take)(waiter.slot);
                    // An abandoned sender's value is delivered all the same.
                    Waiter::wake(w);
                    Some(value)
                }
            }
        }
    }

    /// Hands `value` to the oldest blocked receiver, typed: a shorthand receiver gets it with
    /// no allocation. Gives it back if there is none.
    ///
    /// # Safety
    ///
    /// These are the queues of a `Channel<T>`.
    unsafe fn give_typed<T: Send + 'static>(&mut self, mut value: T) -> Result<(), T> {
        loop {
            match Self::pop_partner(&mut self.receivers) {
                None => return Err(value),
                Some(Partner::Claimed {
                    state,
                    slot,
                    leaf,
                    claim,
                }) => {
                    let value = Payload::new(value);
                    // SAFETY: just popped and claimed.
                    unsafe { Partner::put_and_complete(state, slot, leaf, claim, value) };
                    return Ok(());
                }
                Some(Partner::Waiter(w)) => {
                    // SAFETY: as in `give`; the slot is an `Option<T>` (caller's contract).
                    unsafe {
                        let slot = w.as_ref().slot.cast::<Option<T>>();
                        *slot = Some(value);
                        if Waiter::wake(w) {
                            return Ok(());
                        }
                        value = (*slot).take().expect("the value just moved in");
                    }
                }
            }
        }
    }

    /// Takes the value of the oldest blocked sender, typed.
    ///
    /// # Safety
    ///
    /// These are the queues of a `Channel<T>`.
    unsafe fn take_typed<T: Send + 'static>(&mut self) -> Option<T> {
        match Self::pop_partner(&mut self.senders)? {
            Partner::Claimed {
                state,
                slot,
                leaf,
                claim,
            } => {
                // SAFETY: just popped and claimed.
                let value = unsafe { Partner::take_and_complete(state, slot, leaf, claim) };
                Some(
                    value
                        .downcast::<T>()
                        .expect("a channel carries values of its own type"),
                )
            }
            Partner::Waiter(w) => {
                // SAFETY: as in `give_typed`.
                unsafe {
                    let value = (*w.as_ref().slot.cast::<Option<T>>()).take();
                    // An abandoned sender's value is delivered all the same.
                    Waiter::wake(w);
                    value
                }
            }
        }
    }

    /// Whether a blocked receiver is waiting (stale offers at the front are dropped).
    pub(crate) fn has_receiver(&mut self) -> bool {
        Self::live_front(&mut self.receivers)
    }

    /// Whether a blocked sender is waiting (stale offers at the front are dropped).
    pub(crate) fn has_sender(&mut self) -> bool {
        Self::live_front(&mut self.senders)
    }

    fn live_front(q: &mut VecDeque<Offer>) -> bool {
        while let Some(front) = q.front() {
            if front.is_live() {
                return true;
            }
            q.pop_front();
        }
        false
    }

    /// Takes a waiter out of its queue (step 4); false if a partner popped it first.
    fn withdraw(&mut self, waiter: &Waiter, sender: bool) -> bool {
        let q = if sender {
            &mut self.senders
        } else {
            &mut self.receivers
        };
        match q.iter().position(|o| o.is(waiter)) {
            Some(i) => {
                q.remove(i);
                true
            }
            None => false,
        }
    }

    /// Takes an offer of the sync `state` out of the senders' or the receivers' queue, if a
    /// partner has not dropped it already (its word has settled; step 4 of the module doc's
    /// `sync`).
    pub(crate) fn withdraw_sync(&mut self, state: *const SyncState, sender: bool) {
        let q = if sender {
            &mut self.senders
        } else {
            &mut self.receivers
        };
        if let Some(i) = q.iter().position(|o| o.of_sync(state)) {
            q.remove(i);
        }
    }

    /// Queues `offer` at the back of the senders' or the receivers' queue.
    #[inline(always)]
    pub(crate) fn register(&mut self, offer: Offer, sender: bool) {
        self.registrations = self.registrations.wrapping_add(1);
        if self.registrations % SWEEP_EVERY == 0 {
            self.sweep();
        }
        if sender {
            self.senders.push_back(offer);
        } else {
            self.receivers.push_back(offer);
        }
    }

    /// Drops the stale offers of both queues.
    #[cold]
    fn sweep(&mut self) {
        self.senders.retain(Offer::is_live);
        self.receivers.retain(Offer::is_live);
    }
}

pub(crate) struct ChanInner {
    pub(crate) queues: SpinLock<Queues>,
}

/// A CML channel carrying values of type `T`: a rendezvous point (no buffer). Cloning gives
/// another handle to the same channel.
///
/// ```
/// use bobine::event::Channel;
/// bobine::run(|| {
///     let c = Channel::new();
///     let c2 = c.clone();
///     bobine::thread::spawn(move || c2.send("hello"));
///     assert_eq!(c.recv(), "hello");
/// });
/// ```
pub struct Channel<T> {
    pub(crate) inner: Arc<ChanInner>,
    _values: PhantomData<fn(T) -> T>,
}

impl<T> Clone for Channel<T> {
    fn clone(&self) -> Self {
        Channel {
            inner: self.inner.clone(),
            _values: PhantomData,
        }
    }
}

impl<T> std::fmt::Debug for Channel<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Channel({:p})", Arc::as_ptr(&self.inner))
    }
}

impl<T: Send + 'static> Default for Channel<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Send + 'static> Channel<T> {
    /// A new channel.
    pub fn new() -> Self {
        Channel {
            inner: Arc::new(ChanInner {
                queues: SpinLock::new(Queues::default()),
            }),
            _values: PhantomData,
        }
    }

    /// The event of sending `v` on this channel: it commits when a receiver takes `v`.
    pub fn send_evt(&self, v: T) -> Event<()> {
        Event::base(
            BaseOp::Send {
                chan: self.inner.clone(),
                value: Slot::new(Some(Payload::new(v))),
            },
            |_| (),
        )
    }

    /// The event of receiving a value from this channel.
    pub fn recv_evt(&self) -> Event<T> {
        Event::base(
            BaseOp::Recv {
                chan: self.inner.clone(),
                value: Slot::new(None),
            },
            |payload| {
                payload
                    .downcast::<T>()
                    .expect("a channel carries values of its own type")
            },
        )
    }

    /// Sends `v`, parking until a receiver takes it (`sync(send_evt(v))`, without building
    /// the event). A task stopped while it waits unwinds from here; `v` is not delivered.
    #[track_caller]
    pub fn send(&self, v: T) {
        let mut queues = self.inner.queues.lock();
        // SAFETY: the queues of a `Channel<T>`.
        let Err(v) = (unsafe { queues.give_typed(v) }) else {
            return;
        };
        let mut slot = Some(v);
        self.wait(&mut slot, queues, true, "Channel::send");
        debug_assert!(slot.is_none(), "a committed send gave its value away");
    }

    /// Receives a value, parking until a sender offers one (`sync(recv_evt())`, without
    /// building the event). A task stopped while it waits unwinds from here.
    #[track_caller]
    pub fn recv(&self) -> T {
        let mut queues = self.inner.queues.lock();
        // SAFETY: the queues of a `Channel<T>`.
        if let Some(v) = unsafe { queues.take_typed() } {
            return v;
        }
        let mut slot = None;
        self.wait(&mut slot, queues, false, "Channel::recv");
        slot.expect("a committed receive has its value")
    }

    /// Steps 1, 3 and 4 of the waiter protocol (module doc) for a shorthand whose value slot is
    /// `slot`: queues a waiter, releases the channel, and parks until a partner commits it.
    /// Whatever happens, the waiter is out of the queue before this returns or unwinds.
    #[track_caller]
    fn wait(
        &self,
        slot: &mut Option<T>,
        queues: SpinGuard<'_, Queues>,
        sender: bool,
        what: &'static str,
    ) {
        let mut waiter = Waiter {
            slot: (slot as *mut Option<T>).cast(),
            fns: &TypedSlot::<T>::FNS,
            unparker: None,
        };
        let waiter_ptr = NonNull::from(&mut waiter);
        let mut queues = Some(queues);
        let withdraw = Withdraw {
            chan: &self.inner,
            waiter: waiter_ptr,
            sender,
        };
        // SAFETY: the unparker goes into the waiter only, which one partner pops (under the
        // channel lock) and wakes before it releases that lock; we never leave before our
        // waiter is out of the queue and no partner is inside step 2 (`Withdraw`), so the
        // unparker is never used after this wait.
        let why = unsafe {
            park_current_borrowed(&Wait::hand_over(what), |u| {
                // SAFETY: not queued yet: nobody else sees the waiter.
                (*waiter_ptr.as_ptr()).unparker = Some(u);
                let mut queues = queues.take().expect("published once");
                queues.register(Offer::Waiter(waiter_ptr), sender);
            })
        };
        if why == Wake::Unparked {
            // Step 3: committed, the value has moved.
            std::mem::forget(withdraw);
            return;
        }
        // Step 4: the wait ended otherwise (a stop). Committed after all (a partner popped us
        // as the stop landed): the value has moved and the wait stands; the stop takes effect
        // at the next park point. Else we left the queue: unwind.
        if withdraw.withdraw() {
            stop::unwind_if_stopped();
            unreachable!("a channel wait ends by its partner or a stop ({why:?})");
        }
    }
}

/// Step 4 of the waiter protocol, also on unwinding: takes the waiter out of its queue, or
/// waits for the partner that popped it to finish (by taking the channel lock).
struct Withdraw<'a> {
    chan: &'a ChanInner,
    waiter: NonNull<Waiter>,
    sender: bool,
}

impl Withdraw<'_> {
    /// True when the waiter was still queued (nobody committed it).
    fn withdraw(self) -> bool {
        let this = std::mem::ManuallyDrop::new(self);
        this.take_out()
    }

    fn take_out(&self) -> bool {
        // SAFETY: the waiter lives in the frame that owns this guard.
        let waiter = unsafe { self.waiter.as_ref() };
        self.chan.queues.lock().withdraw(waiter, self.sender)
    }
}

impl Drop for Withdraw<'_> {
    fn drop(&mut self) {
        self.take_out();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A shorthand `recv` whose task is stopped (the cancellation hook) unwinds and takes its
    /// offer out of the queue: a later send finds no receiver, and the stack state is never
    /// touched again.
    #[test]
    fn interrupted_shorthand_recv_withdraws_its_offer() {
        crate::Builder::new().domains(1).run(|| {
            let c: Channel<u32> = Channel::new();
            let c2 = c.clone();
            let slot: Arc<Mutex<Option<Arc<crate::sched::task::Task>>>> =
                Arc::new(Mutex::new(None));
            let slot2 = slot.clone();
            let h = crate::thread::spawn(move || {
                *slot2.lock().unwrap() = crate::sched::current_task();
                c2.recv()
            });
            crate::thread::sleep(std::time::Duration::from_millis(10));
            let task = slot.lock().unwrap().clone().expect("the receiver started");
            assert!(crate::sched::park::stop::interrupt(&task));
            let err = h.join().unwrap_err();
            assert!(err.is::<crate::TaskDropped>());
            assert!(
                c.send_evt(7).poll().is_none(),
                "a withdrawn receiver must not take a value"
            );
            assert!(c.inner.queues.lock().receivers.is_empty());
        });
    }

    /// The same for a shorthand `send`: its value is dropped by the sender, never delivered.
    #[test]
    fn interrupted_shorthand_send_withdraws_its_value() {
        crate::Builder::new().domains(1).run(|| {
            let c: Channel<u32> = Channel::new();
            let c2 = c.clone();
            let slot: Arc<Mutex<Option<Arc<crate::sched::task::Task>>>> =
                Arc::new(Mutex::new(None));
            let slot2 = slot.clone();
            let h = crate::thread::spawn(move || {
                *slot2.lock().unwrap() = crate::sched::current_task();
                c2.send(5)
            });
            crate::thread::sleep(std::time::Duration::from_millis(10));
            let task = slot.lock().unwrap().clone().expect("the sender started");
            assert!(crate::sched::park::stop::interrupt(&task));
            assert!(h.join().is_err());
            assert!(
                c.recv_evt().poll().is_none(),
                "a withdrawn sender's value must not be received"
            );
            assert!(c.inner.queues.lock().senders.is_empty());
        });
    }
}
