//! `mpsc`: std's multi-producer, single-consumer channels, whose blocking calls park the task.
//!
//! One flavour-agnostic channel: a buffer, a sender count, a receiver flag, two wait lists
//! (the receiver; blocked senders) and the receive offers of blocked event syncs, under one
//! spin lock.
//!
//! | constructor        | `send` blocks                                  |
//! |--------------------|------------------------------------------------|
//! | `channel()`        | never                                          |
//! | `sync_channel(n)`  | while `n` values are buffered                  |
//! | `sync_channel(0)`  | until the receiver has taken this very value   |
//!
//! Rendezvous (`sync_channel(0)`) has no buffer: the two wait lists are *hand-off* waits (see
//! `sched::waitqueue`), whose nodes name a slot on the waiter's stack.
//!
//! 1. `send`, under the lock, pops the oldest waiting receiver if there is one, moves its value
//!    into that receiver's slot and wakes it (still under the lock), and returns: the value was
//!    taken at that moment. Otherwise it queues itself with its value in its slot and parks.
//! 2. `recv`, under the lock, pops the oldest waiting sender if there is one, takes the value
//!    out of its slot and wakes it, and returns the value. Otherwise (unless every sender is
//!    gone) it queues itself with an empty slot and parks.
//! 3. A woken waiter looks at its slot: a sender whose value is still there was woken by the
//!    receiver going away and returns it in `SendError`, as std does; a receiver whose slot is
//!    empty was woken by the last sender going away (`Disconnected`).
//! 4. A waiter whose park ends otherwise (a deadline, a stop) takes the lock and leaves the
//!    list; if a partner had already popped it, the hand-off stands (a stop then unwinds the
//!    task at its next park point): a message is never lost nor delivered twice.
//!
//! A same-domain round trip thus costs no allocation, no reference count and one lock per side;
//! a sender that finds its receiver waiting does not park. Rejected alternative (the previous
//! design): the value in the shared buffer and the sender parked until the receive count
//! passed its sequence number, which parked every sender and took the lock twice per side.
//!
//! **Sends that never block yield now and then.** An unbounded `send` (and a `send` that finds
//! room, `try_send`, `try_recv`) never parks, so a task looping on it would keep its domain
//! until the loop ends, and a receiver queued on the same domain would not run meanwhile: the
//! buffer would grow with the whole loop (std's `port_gone_concurrent` and `test_recv_try_iter`
//! run as tasks grew until the kernel killed the process). Each of those calls ends, outside
//! the lock, in `sched::preempt_point`: every 64th such call of a task yields if other tasks
//! of its domain are ready, as Go's scheduler preempts a goroutine. On one domain a sender
//! then runs at most 64 messages ahead of its receiver, which drains the buffer on its turn.
//! Plain threads never yield there. Rejected alternative: yielding only when the send wakes a
//! receiver of the same domain: once woken, the receiver waits in the run queue while the
//! sender's later sends find nobody waiting, so the sender would never yield again.
//!
//! ## Receives as events
//!
//! [`Receiver::recv_evt`] (in `events.rs`) makes a receive one leaf of a CML sync
//! (`event::source` says what a sync asks of such a source). A sync that blocks leaves an
//! *offer* in `offers`: pointers to its commit word and to its leaf's value slot, both in the
//! syncer's frame.
//!
//! 1. Attempt (the syncer, under the lock): a receive completes now exactly as `try_recv`
//!    would (a buffered value, waking a sender for the room; a blocked rendezvous sender's
//!    value, waking it; `Err(RecvError)` with no sender left), and the leaf commits with it.
//! 2. Offer (the syncer, under the lock, before it parks): if a receive could complete now
//!    (the channel changed since the attempt), the syncer commits its own leaf through its
//!    commit word and takes the value as in step 1; if the word has already left WAITING
//!    (another leaf committed), it takes nothing. Otherwise the offer is queued at the back.
//! 3. A sender holding a value, with the buffer empty (any flavour; a rendezvous sender once
//!    no blocked `recv` is there to take it), pops offers oldest first under the lock and
//!    claims each through its commit word (WAITING -> CLAIMED). A stale offer (its sync
//!    committed elsewhere, was cancelled, or its task was abandoned) fails the claim and is
//!    dropped: the sender moves on to the next. After a successful claim, and only then, the
//!    value moves into the offer's slot as `Ok(value)`, the syncer is woken and the word
//!    stored SYNCHED, all under the lock: the send is complete (a rendezvous `send` returns).
//!    With no live offer, the value goes where it went before: into the buffer (waking a
//!    blocked `recv`), or, for a rendezvous, the sender queues and parks.
//! 4. Take back: once its word has settled, the syncer removes its offers still queued, under
//!    the lock; from then on no sender touches its frame.
//! 5. The last sender going away commits every live offer with `Err(RecvError)`, under the
//!    lock (and wakes the blocked `recv`s, as before).
//!
//! Invariant (at every release of the lock): a live offer is queued only while no receive
//! could complete: the buffer is empty, no rendezvous sender waits, a sender is left. Step 2
//! keeps it as an offer is queued, steps 3 and 5 as a value arrives or the last sender goes.
//! So no value waits in the buffer while an offer that could take it sleeps; and a value is
//! given up only to a claimed offer, so a sync that commits elsewhere takes nothing, and a
//! sender that loses every claim keeps its value for the next receive. A sender serves offers
//! before it wakes a blocked `recv`; a woken `recv` that finds the value gone waits again.
//!
//! Offers are a second waiting structure next to the wait lists (STYLE.md, 13): a wait-list
//! node is one waiter, committed by unlinking it; an offer is one leaf of a sync that may have
//! offers in several channels at once, committed through the sync's word, which a sender may
//! find settled already. The CML channels keep their sync offers the same way. The hand-shake
//! is the CML channels' (claim, move, complete under the channel lock; see `event::commit`);
//! steps 2 to 4 are model-checked with loom (`loom_checks::source`: a value is received once
//! or left in the channel, and step 2's re-check loses no wake-up), and the whole is run by
//! the counted stress test of `tests/mpsc_events.rs`.
//!
//! The error types are std's own, re-exported.

use std::cell::Cell;
use std::collections::VecDeque;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use std::sync::mpsc::{RecvError, RecvTimeoutError, SendError, TryRecvError, TrySendError};

use crate::event::source::{Shared, SyncOffer};
use crate::sched::park::Unparker;
use crate::sched::park::Wait;
use crate::sched::waitqueue::{WaitIn, WaitList, Woken};
use crate::util::{SpinGuard, SpinLock};

mod events;
use events::AsResult;

struct State<T> {
    /// Buffered values (never used by a rendezvous channel).
    buffer: VecDeque<T>,
    /// `None`: unbounded; `Some(0)`: rendezvous.
    capacity: Option<usize>,
    senders: usize,
    receiver: bool,
    /// Blocked receivers (hand-off waits for a rendezvous channel).
    recv_queue: WaitList,
    /// Blocked senders: waiting for room, or (rendezvous, hand-off waits) for a receiver.
    send_queue: WaitList,
    /// Receive offers of blocked event syncs (`recv_evt`), oldest first. A live one is queued
    /// only while no receive could complete (see "Receives as events").
    offers: VecDeque<SyncOffer>,
    /// How a message, or the disconnection, becomes a receive leaf's result: set by the first
    /// `recv_evt` (which knows `T: Send + 'static`), before any leaf exists, so senders and the
    /// channel's constructors need no such bound.
    as_result: Option<AsResult<T>>,
}

impl<T> State<T> {
    /// A receive now, as `try_recv` (every flavour), and the sender to wake for the room it
    /// freed, if any. Under the lock.
    fn try_take(&mut self) -> (Result<T, TryRecvError>, Option<Unparker>) {
        let got = if self.capacity == Some(0) {
            self.take_from_sender().map(|v| (v, None))
        } else {
            self.pop_value()
        };
        match got {
            Some((v, sender)) => (Ok(v), sender),
            None if self.senders == 0 => (Err(TryRecvError::Disconnected), None),
            None => (Err(TryRecvError::Empty), None),
        }
    }

    /// Whether a receive would complete now: a buffered value, a rendezvous sender waiting
    /// (even one whose task was abandoned: its value is delivered all the same), or no sender
    /// left. Under the lock.
    fn receive_ready(&self) -> bool {
        !self.buffer.is_empty()
            || self.senders == 0
            || (self.capacity == Some(0) && !self.send_queue.nobody_linked())
    }

    /// Takes the next buffered value and the sender waiting for the room it frees, if any.
    fn pop_value(&mut self) -> Option<(T, Option<Unparker>)> {
        let value = self.buffer.pop_front()?;
        let sender = match self.capacity {
            Some(_) => self.send_queue.pop_front(),
            None => None,
        };
        Some((value, sender))
    }

    /// Rendezvous step 1: moves `value` into the slot of the oldest waiting receiver and wakes
    /// it; gives the value back if no receiver waits. Under the lock.
    fn hand_to_receiver(&mut self, mut value: T) -> Result<(), T> {
        while let Some(receiver) = self.recv_queue.pop_front_handoff() {
            let slot = receiver.slot().cast::<Option<T>>();
            // SAFETY: a rendezvous receiver's slot is an `Option<T>` on its stack, ours to
            // write until we wake it (`WaitIn::park_handoff`).
            unsafe { *slot = Some(value) };
            if receiver.wake() {
                return Ok(());
            }
            // An abandoned receiver never takes it: the next one may.
            // SAFETY: as above; an abandoned task's stack is never freed.
            value = unsafe { (*slot).take() }.expect("the value just moved in");
        }
        Err(value)
    }

    /// Rendezvous step 2: takes the value of the oldest waiting sender and wakes it. Under the
    /// lock.
    #[inline(always)]
    fn take_from_sender(&mut self) -> Option<T> {
        let sender = self.send_queue.pop_front_handoff()?;
        // SAFETY: a rendezvous sender's slot is an `Option<T>` holding its value, ours until
        // we wake it (`WaitIn::park_handoff`).
        let value = unsafe { (*sender.slot().cast::<Option<T>>()).take() };
        // An abandoned sender's value is delivered all the same.
        sender.wake();
        Some(value.expect("a waiting sender holds its value"))
    }

    /// Wakes every waiter of a rendezvous list (a side of the channel went away); each finds
    /// its slot as it left it (step 3). Under the lock.
    fn wake_all_handoff(list: &mut WaitList) {
        while let Some(w) = list.pop_front_handoff() {
            w.wake();
        }
    }
}

/// Which wait list of a channel.
#[derive(Clone, Copy)]
enum Queue {
    Senders,
    Receivers,
}

struct Chan<T> {
    state: SpinLock<State<T>>,
}

/// A channel's shared state, with its event-source functions in front (`event::source`).
type ChanRef<T> = Arc<Shared<Chan<T>>>;

fn new_chan<T>(capacity: Option<usize>) -> ChanRef<T> {
    Arc::new(Shared::new(Chan {
        state: SpinLock::new(State {
            buffer: VecDeque::new(),
            capacity,
            senders: 1,
            receiver: true,
            recv_queue: WaitList::new(),
            send_queue: WaitList::new(),
            offers: VecDeque::new(),
            as_result: None,
        }),
    }))
}

/// An unbounded channel, like `std::sync::mpsc::channel`.
///
/// ```
/// use bobine::sync::mpsc;
/// bobine::run(|| {
///     let (tx, rx) = mpsc::channel();
///     for i in 0..3 {
///         let tx = tx.clone();
///         bobine::thread::spawn(move || tx.send(i).unwrap());
///     }
///     drop(tx);
///     let mut got: Vec<i32> = rx.iter().collect();
///     got.sort();
///     assert_eq!(got, [0, 1, 2]);
/// });
/// ```
pub fn channel<T>() -> (Sender<T>, Receiver<T>) {
    let chan = new_chan(None);
    (
        Sender { chan: chan.clone() },
        Receiver {
            chan,
            _not_sync: PhantomData,
        },
    )
}

/// A bounded channel, like `std::sync::mpsc::sync_channel`: `bound` values may wait in the
/// buffer; with `bound` 0 every `send` waits for the matching `recv` (a rendezvous).
pub fn sync_channel<T>(bound: usize) -> (SyncSender<T>, Receiver<T>) {
    let chan = new_chan(Some(bound));
    (
        SyncSender { chan: chan.clone() },
        Receiver {
            chan,
            _not_sync: PhantomData,
        },
    )
}

/// The sending half of [`channel`].
pub struct Sender<T> {
    chan: ChanRef<T>,
}

/// The sending half of [`sync_channel`].
pub struct SyncSender<T> {
    chan: ChanRef<T>,
}

/// The receiving half of a channel. Like std's it may move between threads but is not shared.
pub struct Receiver<T> {
    chan: ChanRef<T>,
    _not_sync: PhantomData<Cell<()>>,
}

impl<T> Chan<T> {
    /// Blocking send (every flavour).
    #[track_caller]
    fn send(&self, mut value: T) -> Result<(), SendError<T>> {
        let mut state = self.state.lock();
        if state.capacity == Some(0) {
            return self.send_rendezvous(state, value);
        }
        loop {
            if !state.receiver {
                return Err(SendError(value));
            }
            match state.capacity {
                Some(cap) if state.buffer.len() >= cap => {}
                _ => {
                    if !state.offers.is_empty() {
                        // Events step 3 (a live offer means an empty buffer).
                        match state.hand_to_offer(value) {
                            Ok(()) => {
                                drop(state);
                                crate::sched::preempt_point();
                                return Ok(());
                            }
                            Err(v) => value = v,
                        }
                    }
                    state.buffer.push_back(value);
                    let receiver = state.recv_queue.pop_front();
                    drop(state);
                    self.hand_value_to(receiver);
                    // Delivered; a sender that never blocks lets its domain's other tasks
                    // (its receiver, often) run now and then.
                    crate::sched::preempt_point();
                    return Ok(());
                }
            }
            // Bounded and full: wait for room.
            state = self.wait(state, Queue::Senders, "SyncSender::send", None, || {
                self.wake_next_sender()
            });
        }
    }

    /// Rendezvous steps 1, 3 and 4 for a sender (module doc).
    #[track_caller]
    fn send_rendezvous(
        &self,
        mut state: SpinGuard<'_, State<T>>,
        value: T,
    ) -> Result<(), SendError<T>> {
        if !state.receiver {
            return Err(SendError(value));
        }
        let Err(value) = state.hand_to_receiver(value) else {
            return Ok(());
        };
        // Events step 3: a receive offer commits with this very value.
        let Err(value) = state.hand_to_offer(value) else {
            return Ok(());
        };
        fn senders<T>(s: &mut State<T>) -> &mut WaitList {
            &mut s.send_queue
        }
        // A value not taken stays here: returned in `SendError`, or dropped by this frame if
        // the task unwinds (a stop), outside the lock.
        let mut slot = Some(value);
        // SAFETY: every waker of a rendezvous send queue commits with `pop_front_handoff` and
        // wakes under the lock (`take_from_sender`, `wake_all_handoff`); `slot` outlives the
        // wait.
        let woken = unsafe {
            WaitIn::new(&self.state, senders, Wait::hand_over("SyncSender::send"))
                .park_handoff(state, (&raw mut slot).cast())
        };
        debug_assert_eq!(woken, Woken::Notified, "a rendezvous send has no deadline");
        match slot {
            None => Ok(()),
            // Woken by the receiver going away.
            Some(value) => Err(SendError(value)),
        }
    }

    /// Parks on one of the channel's wait lists (a timeout just ends the wait: callers loop on
    /// their condition) and returns with the lock taken again. `pass_on` hands a wake-up on if
    /// the waiter is unwound after being chosen.
    #[track_caller]
    fn wait<'a>(
        &'a self,
        state: SpinGuard<'a, State<T>>,
        queue: Queue,
        what: &'static str,
        deadline: Option<Instant>,
        pass_on: impl FnOnce(),
    ) -> SpinGuard<'a, State<T>> {
        fn senders<T>(s: &mut State<T>) -> &mut WaitList {
            &mut s.send_queue
        }
        fn receivers<T>(s: &mut State<T>) -> &mut WaitList {
            &mut s.recv_queue
        }
        let list: fn(&mut State<T>) -> &mut WaitList = match queue {
            Queue::Senders => senders,
            Queue::Receivers => receivers,
        };
        // Callers loop on their condition, so any end of the wait will do.
        WaitIn::new(&self.state, list, Wait::hand_over(what).until(deadline))
            .pass_on(|_| pass_on())
            .park(state);
        self.state.lock()
    }

    fn try_send(&self, value: T) -> Result<(), TrySendError<T>> {
        let mut state = self.state.lock();
        if !state.receiver {
            return Err(TrySendError::Disconnected(value));
        }
        let room = match state.capacity {
            // A rendezvous completes at once only if a receiver is already waiting (blocked,
            // or an event sync's offer).
            Some(0) => {
                return state
                    .hand_to_receiver(value)
                    .or_else(|v| state.hand_to_offer(v))
                    .map_err(TrySendError::Full);
            }
            Some(cap) => state.buffer.len() < cap,
            None => true,
        };
        if !room {
            return Err(TrySendError::Full(value));
        }
        let value = match state.offers.is_empty() {
            true => value,
            false => match state.hand_to_offer(value) {
                Ok(()) => return Ok(()),
                Err(v) => v,
            },
        };
        state.buffer.push_back(value);
        let receiver = state.recv_queue.pop_front();
        drop(state);
        self.hand_value_to(receiver);
        Ok(())
    }

    #[track_caller]
    fn recv(&self, deadline: Option<Instant>) -> Result<T, RecvTimeoutError> {
        let mut state = self.state.lock();
        if state.capacity == Some(0) {
            return self.recv_rendezvous(state, deadline);
        }
        loop {
            if let Some((value, sender)) = state.pop_value() {
                drop(state);
                self.wake_sender(sender);
                return Ok(value);
            }
            if state.senders == 0 {
                return Err(RecvTimeoutError::Disconnected);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(RecvTimeoutError::Timeout);
            }
            state = self.wait(state, Queue::Receivers, "Receiver::recv", deadline, || {
                self.wake_next_receiver()
            });
        }
    }

    /// Rendezvous steps 2, 3 and 4 for a receiver (module doc).
    #[track_caller]
    fn recv_rendezvous<'a>(
        &'a self,
        mut state: SpinGuard<'a, State<T>>,
        deadline: Option<Instant>,
    ) -> Result<T, RecvTimeoutError> {
        fn receivers<T>(s: &mut State<T>) -> &mut WaitList {
            &mut s.recv_queue
        }
        loop {
            if let Some(value) = state.take_from_sender() {
                return Ok(value);
            }
            if state.senders == 0 {
                return Err(RecvTimeoutError::Disconnected);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(RecvTimeoutError::Timeout);
            }
            let mut slot: Option<T> = None;
            let wait = Wait::hand_over("Receiver::recv").until(deadline);
            // SAFETY: every waker of a rendezvous receive queue commits with
            // `pop_front_handoff` and wakes under the lock (`hand_to_receiver`,
            // `wake_all_handoff`); `slot` outlives the wait.
            let woken = unsafe {
                WaitIn::new(&self.state, receivers, wait)
                    .park_handoff(state, (&raw mut slot).cast())
            };
            match (woken, slot) {
                (Woken::Notified, Some(value)) => return Ok(value),
                // Woken by the last sender going away.
                (Woken::Notified, None) => return Err(RecvTimeoutError::Disconnected),
                (Woken::TimedOut, _) => return Err(RecvTimeoutError::Timeout),
                // A wait the shutdown gave up: look again, as the other flavours do. (A
                // hand-off wait is never nudged; were it, looking again is right too.)
                (Woken::Interrupted | Woken::Nudged, _) => state = self.state.lock(),
            }
        }
    }

    fn try_recv(&self) -> Result<T, TryRecvError> {
        let (got, sender) = self.state.lock().try_take();
        self.wake_sender(sender);
        got
    }

    /// Wakes the sender waiting for the room a receive freed, if any.
    fn wake_sender(&self, sender: Option<Unparker>) {
        self.hand_room_to(sender);
    }

    /// Wakes a sender for the room freed; one whose task was abandoned passes it on.
    fn hand_room_to(&self, sender: Option<Unparker>) {
        if sender.is_some_and(|u| !u.hand_over()) {
            self.wake_next_sender();
        }
    }

    /// Wakes a receiver for a value in the buffer; one whose task was abandoned passes it on.
    fn hand_value_to(&self, receiver: Option<Unparker>) {
        if receiver.is_some_and(|u| !u.hand_over()) {
            self.wake_next_receiver();
        }
    }

    /// Passes a "room freed" wake-up on to the next blocked sender (one that got it unwound).
    fn wake_next_sender(&self) {
        let next = self.state.lock().send_queue.pop_front();
        self.hand_room_to(next);
    }

    /// Passes a "value sent" wake-up on to the next blocked receiver (several may wait: local
    /// tasks sharing a `Receiver`), when the one chosen unwound instead.
    fn wake_next_receiver(&self) {
        let next = self.state.lock().recv_queue.pop_front();
        self.hand_value_to(next);
    }

    fn add_sender(&self) {
        self.state.lock().senders += 1;
    }

    fn drop_sender(&self) {
        let mut state = self.state.lock();
        state.senders -= 1;
        if state.senders == 0 {
            state.disconnect_offers();
            // Every blocked receiver learns of the disconnection (several can wait: a `Receiver`
            // shared through an `Rc` by local tasks).
            if state.capacity == Some(0) {
                State::<T>::wake_all_handoff(&mut state.recv_queue);
                return;
            }
            while let Some(u) = state.recv_queue.pop_front() {
                u.unpark();
            }
        }
    }

    fn drop_receiver(&self) {
        let mut state = self.state.lock();
        state.receiver = false;
        if state.capacity == Some(0) {
            // Each blocked sender takes its own value back (step 3).
            State::<T>::wake_all_handoff(&mut state.send_queue);
            return;
        }
        while let Some(u) = state.send_queue.pop_front() {
            u.unpark();
        }
        // Buffered values are dropped now, outside the lock.
        let dropped = std::mem::take(&mut state.buffer);
        drop(state);
        drop(dropped);
    }
}

impl<T> Sender<T> {
    /// Sends a value; fails (returning it) only if the receiver is gone. Never blocks, but in a
    /// task every 64th send that did not wait yields if other tasks of the domain are ready, as
    /// Go's scheduler preempts a goroutine: a task that sends in a loop to a receiver on its own
    /// domain lets it run, and the messages queued between two of the receiver's turns stay
    /// bounded. Such a yield is a stop point (a cancelled task unwinds there, its value sent).
    pub fn send(&self, t: T) -> Result<(), SendError<T>> {
        self.chan.send(t)
    }
}

impl<T> SyncSender<T> {
    /// Sends a value, parking while the buffer is full (or, for `sync_channel(0)`, until the
    /// receiver takes it). Fails, returning the value, if the receiver is gone. A task stopped
    /// while it waits unwinds from here, and its value is not delivered. A send that found
    /// room may yield, as [`Sender::send`] does.
    #[track_caller]
    pub fn send(&self, t: T) -> Result<(), SendError<T>> {
        self.chan.send(t)
    }

    /// Sends a value only if that needs no waiting. In a task, every 64th call without
    /// waiting yields if other tasks of the domain are ready (see [`Sender::send`]), so a loop
    /// of `try_send` on a full channel lets a receiver on the same domain run.
    pub fn try_send(&self, t: T) -> Result<(), TrySendError<T>> {
        let sent = self.chan.try_send(t);
        crate::sched::preempt_point();
        sent
    }
}

impl<T> Receiver<T> {
    /// Takes the next value, parking until one arrives; `Err` once every sender is gone and the
    /// buffer is empty. A task stopped while it waits unwinds from here.
    #[track_caller]
    pub fn recv(&self) -> Result<T, RecvError> {
        self.chan.recv(None).map_err(|_| RecvError)
    }

    /// Takes the next value if one is there. In a task, every 64th call without waiting
    /// yields if other tasks of the domain are ready (see [`Sender::send`]), so a `try_recv`
    /// loop lets a sender on the same domain run.
    pub fn try_recv(&self) -> Result<T, TryRecvError> {
        let got = self.chan.try_recv();
        crate::sched::preempt_point();
        got
    }

    /// Like [`Receiver::recv`], giving up after `timeout` (a timer of the domain).
    #[track_caller]
    pub fn recv_timeout(&self, timeout: Duration) -> Result<T, RecvTimeoutError> {
        self.chan.recv(Instant::now().checked_add(timeout))
    }

    /// Like [`Receiver::recv`], giving up at `deadline`.
    #[track_caller]
    pub fn recv_deadline(&self, deadline: Instant) -> Result<T, RecvTimeoutError> {
        self.chan.recv(Some(deadline))
    }

    /// An iterator that blocks for each value and ends when the channel is disconnected.
    pub fn iter(&self) -> Iter<'_, T> {
        Iter { rx: self }
    }

    /// An iterator over the values already there; it never blocks.
    pub fn try_iter(&self) -> TryIter<'_, T> {
        TryIter { rx: self }
    }
}

// As std's channels: unwinding cannot leave a channel half-updated (no user code runs under
// its lock).
impl<T> std::panic::UnwindSafe for Sender<T> {}
impl<T> std::panic::RefUnwindSafe for Sender<T> {}
impl<T> std::panic::UnwindSafe for SyncSender<T> {}
impl<T> std::panic::RefUnwindSafe for SyncSender<T> {}
impl<T> std::panic::UnwindSafe for Receiver<T> {}
impl<T> std::panic::RefUnwindSafe for Receiver<T> {}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.chan.add_sender();
        Sender {
            chan: self.chan.clone(),
        }
    }
}

impl<T> Clone for SyncSender<T> {
    fn clone(&self) -> Self {
        self.chan.add_sender();
        SyncSender {
            chan: self.chan.clone(),
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        self.chan.drop_sender();
    }
}

impl<T> Drop for SyncSender<T> {
    fn drop(&mut self) {
        self.chan.drop_sender();
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        self.chan.drop_receiver();
    }
}

/// Blocking iterator of a [`Receiver`] (see [`Receiver::iter`]).
#[derive(Debug)]
pub struct Iter<'a, T: 'a> {
    rx: &'a Receiver<T>,
}

/// Non-blocking iterator of a [`Receiver`] (see [`Receiver::try_iter`]).
#[derive(Debug)]
pub struct TryIter<'a, T: 'a> {
    rx: &'a Receiver<T>,
}

/// Owning blocking iterator of a [`Receiver`].
#[derive(Debug)]
pub struct IntoIter<T> {
    rx: Receiver<T>,
}

impl<T> Iterator for Iter<'_, T> {
    type Item = T;
    #[track_caller]
    fn next(&mut self) -> Option<T> {
        self.rx.recv().ok()
    }
}

impl<T> Iterator for TryIter<'_, T> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        self.rx.try_recv().ok()
    }
}

impl<T> Iterator for IntoIter<T> {
    type Item = T;
    #[track_caller]
    fn next(&mut self) -> Option<T> {
        self.rx.recv().ok()
    }
}

impl<'a, T> IntoIterator for &'a Receiver<T> {
    type Item = T;
    type IntoIter = Iter<'a, T>;
    fn into_iter(self) -> Iter<'a, T> {
        self.iter()
    }
}

impl<T> IntoIterator for Receiver<T> {
    type Item = T;
    type IntoIter = IntoIter<T>;
    fn into_iter(self) -> IntoIter<T> {
        IntoIter { rx: self }
    }
}

impl<T> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sender").finish_non_exhaustive()
    }
}

impl<T> fmt::Debug for SyncSender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SyncSender").finish_non_exhaustive()
    }
}

impl<T> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receiver").finish_non_exhaustive()
    }
}
