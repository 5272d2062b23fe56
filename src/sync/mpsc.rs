//! `mpsc`: std's multi-producer, single-consumer channels, whose blocking calls park the task.
//!
//! One flavour-agnostic channel: a buffer, a sender count, a receiver flag and two wait lists
//! (the receiver; blocked senders) under one spin lock.
//!
//! | constructor        | `send` blocks                                  |
//! |--------------------|------------------------------------------------|
//! | `channel()`        | never                                          |
//! | `sync_channel(n)`  | while `n` values are buffered                  |
//! | `sync_channel(0)`  | until the receiver has taken this very value   |
//!
//! Rendezvous (`sync_channel(0)`): the sender puts its value in the buffer, marked as having a
//! blocked sender, and waits until the receive count passes its value's sequence number. The
//! receiver, taking a marked value, wakes the oldest blocked sender (senders queue in the order
//! they put values). If the receiver goes away first, the sender takes its value back and
//! returns it in `SendError`, as std does.
//!
//! The error types are std's own, re-exported.

use std::cell::Cell;
use std::collections::VecDeque;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use std::sync::mpsc::{RecvError, RecvTimeoutError, SendError, TryRecvError, TrySendError};

use crate::sched::park::Unparker;
use crate::sched::park::Wait;
use crate::sched::waitqueue::{WaitIn, WaitList};
use crate::util::{SpinGuard, SpinLock};

struct Slot<T> {
    value: Option<T>,
    /// A `send` is blocked until this value is taken (rendezvous).
    sender_waits: bool,
}

struct State<T> {
    buffer: VecDeque<Slot<T>>,
    /// `None`: unbounded.
    capacity: Option<usize>,
    pushed: u64,
    received: u64,
    senders: usize,
    receiver: bool,
    recv_queue: WaitList,
    send_queue: WaitList,
}

impl<T> State<T> {
    /// Takes the next value (skipping slots whose sender withdrew) and the sender to wake:
    /// for a rendezvous whose sender waits, that very sender (senders queue in the order of
    /// their values; an abandoned one is woken for nothing, as it should); for a bounded
    /// channel, the oldest sender waiting for room.
    fn pop_value(&mut self) -> Option<(T, Option<Woke>)> {
        while let Some(slot) = self.buffer.pop_front() {
            self.received += 1;
            let Some(value) = slot.value else { continue };
            let sender = match self.capacity {
                Some(0) if slot.sender_waits => self.send_queue.pop_front().map(Woke::Exact),
                Some(0) | None => None,
                Some(_) => self.send_queue.pop_front().map(Woke::Room),
            };
            return Some((value, sender));
        }
        None
    }
}

impl<T> State<T> {
    /// Takes back the value of the rendezvous sender of sequence number `seq`, if it has not
    /// been received: the value must not be delivered later, nor its slot wake another sender.
    fn withdraw_rendezvous(&mut self, seq: u64) -> Option<T> {
        if self.received > seq {
            return None;
        }
        let index = (seq - self.received) as usize;
        let slot = self.buffer.get_mut(index)?;
        slot.sender_waits = false;
        slot.value.take()
    }
}

/// Takes a rendezvous sender's value back if it unwinds before the value was received (and
/// before its wait could: see `Chan::send`).
struct Withdraw<'a, T> {
    chan: &'a Chan<T>,
    seq: u64,
}

impl<T> Drop for Withdraw<'_, T> {
    fn drop(&mut self) {
        let value = self.chan.state.lock().withdraw_rendezvous(self.seq);
        // Dropped outside the lock.
        drop(value);
    }
}

/// A sender a receive wakes: the one whose rendezvous value was taken, or one waiting for the
/// room freed (which, if its task was abandoned, goes to the next sender).
enum Woke {
    Exact(Unparker),
    Room(Unparker),
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

fn new_chan<T>(capacity: Option<usize>) -> Arc<Chan<T>> {
    Arc::new(Chan {
        state: SpinLock::new(State {
            buffer: VecDeque::new(),
            capacity,
            pushed: 0,
            received: 0,
            senders: 1,
            receiver: true,
            recv_queue: WaitList::new(),
            send_queue: WaitList::new(),
        }),
    })
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
    chan: Arc<Chan<T>>,
}

/// The sending half of [`sync_channel`].
pub struct SyncSender<T> {
    chan: Arc<Chan<T>>,
}

/// The receiving half of a channel. Like std's it may move between threads but is not shared.
pub struct Receiver<T> {
    chan: Arc<Chan<T>>,
    _not_sync: PhantomData<Cell<()>>,
}

impl<T> Chan<T> {
    /// Blocking send (every flavour).
    #[track_caller]
    fn send(&self, value: T) -> Result<(), SendError<T>> {
        let mut state = self.state.lock();
        loop {
            if !state.receiver {
                return Err(SendError(value));
            }
            match state.capacity {
                Some(0) => break,
                Some(cap) if state.buffer.len() >= cap => {}
                _ => {
                    state.buffer.push_back(Slot {
                        value: Some(value),
                        sender_waits: false,
                    });
                    state.pushed += 1;
                    let receiver = state.recv_queue.pop_front();
                    drop(state);
                    self.hand_value_to(receiver);
                    return Ok(());
                }
            }
            // Bounded and full: wait for room.
            state = self.wait(state, Queue::Senders, "SyncSender::send", None, || {
                self.wake_next_sender()
            });
        }
        // Rendezvous: hand the value over and wait until it is taken.
        let seq = state.pushed;
        state.buffer.push_back(Slot {
            value: Some(value),
            sender_waits: true,
        });
        state.pushed += 1;
        // Under the lock (it is needed again below): an abandoned receiver passes it on.
        while let Some(u) = state.recv_queue.pop_front() {
            if u.hand_over() {
                break;
            }
        }
        // If this sender unwinds while it waits (cancellation, or its runtime ending), its
        // value must not be delivered later, nor its slot wake another sender: taken back as
        // it leaves the queue, under the same lock (a receive in between would otherwise take
        // the value and wake the next sender in its place), or by `Withdraw` if it unwinds
        // from elsewhere.
        let withdraw = Withdraw { chan: self, seq };
        let taken: Cell<Option<T>> = Cell::new(None);
        loop {
            if state.received > seq {
                std::mem::forget(withdraw);
                return Ok(());
            }
            if !state.receiver {
                std::mem::forget(withdraw);
                let index = (seq - state.received) as usize;
                let value = state.buffer[index]
                    .value
                    .take()
                    .expect("an untaken rendezvous value");
                return Err(SendError(value));
            }
            fn senders<T>(s: &mut State<T>) -> &mut WaitList {
                &mut s.send_queue
            }
            WaitIn::new(&self.state, senders, Wait::hand_over("SyncSender::send"))
                .withdraw(|s: &mut State<T>| taken.set(s.withdraw_rendezvous(seq)))
                .park(state);
            // A value taken back here is dropped by this frame (on unwinding too), outside
            // the lock.
            state = self.state.lock();
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
            // A rendezvous completes at once only if the receiver is already waiting.
            Some(0) => state.buffer.is_empty() && !state.recv_queue.is_empty(),
            Some(cap) => state.buffer.len() < cap,
            None => true,
        };
        if !room {
            return Err(TrySendError::Full(value));
        }
        state.buffer.push_back(Slot {
            value: Some(value),
            sender_waits: false,
        });
        state.pushed += 1;
        let receiver = state.recv_queue.pop_front();
        drop(state);
        self.hand_value_to(receiver);
        Ok(())
    }

    #[track_caller]
    fn recv(&self, deadline: Option<Instant>) -> Result<T, RecvTimeoutError> {
        let mut state = self.state.lock();
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

    fn try_recv(&self) -> Result<T, TryRecvError> {
        let mut state = self.state.lock();
        match state.pop_value() {
            Some((value, sender)) => {
                drop(state);
                self.wake_sender(sender);
                Ok(value)
            }
            None if state.senders == 0 => Err(TryRecvError::Disconnected),
            None => Err(TryRecvError::Empty),
        }
    }

    /// Wakes the sender a receive chose (see [`Woke`]).
    fn wake_sender(&self, sender: Option<Woke>) {
        match sender {
            Some(Woke::Exact(u)) => drop(u.unpark()),
            Some(Woke::Room(u)) => self.hand_room_to(Some(u)),
            None => {}
        }
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
            // Every blocked receiver learns of the disconnection (several can wait: a `Receiver`
            // shared through an `Rc` by local tasks).
            while let Some(u) = state.recv_queue.pop_front() {
                u.unpark();
            }
        }
    }

    fn drop_receiver(&self) {
        let mut state = self.state.lock();
        state.receiver = false;
        while let Some(u) = state.send_queue.pop_front() {
            u.unpark();
        }
        // Buffered values are dropped now, outside the lock; a rendezvous sender still waiting
        // takes its own value back.
        let dropped = if state.capacity == Some(0) {
            VecDeque::new()
        } else {
            std::mem::take(&mut state.buffer)
        };
        drop(state);
        drop(dropped);
    }
}

impl<T> Sender<T> {
    /// Sends a value; fails (returning it) only if the receiver is gone. Never blocks.
    pub fn send(&self, t: T) -> Result<(), SendError<T>> {
        self.chan.send(t)
    }
}

impl<T> SyncSender<T> {
    /// Sends a value, parking while the buffer is full (or, for `sync_channel(0)`, until the
    /// receiver takes it). Fails, returning the value, if the receiver is gone. A task stopped
    /// while it waits unwinds from here, and its value is not delivered.
    #[track_caller]
    pub fn send(&self, t: T) -> Result<(), SendError<T>> {
        self.chan.send(t)
    }

    /// Sends a value only if that needs no waiting.
    pub fn try_send(&self, t: T) -> Result<(), TrySendError<T>> {
        self.chan.try_send(t)
    }
}

impl<T> Receiver<T> {
    /// Takes the next value, parking until one arrives; `Err` once every sender is gone and the
    /// buffer is empty. A task stopped while it waits unwinds from here.
    #[track_caller]
    pub fn recv(&self) -> Result<T, RecvError> {
        self.chan.recv(None).map_err(|_| RecvError)
    }

    /// Takes the next value if one is there.
    pub fn try_recv(&self) -> Result<T, TryRecvError> {
        self.chan.try_recv()
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
