//! CML channels: synchronous rendezvous points shared by any number of senders and receivers,
//! tasks on any domain and plain OS threads alike.
//!
//! A channel is two FIFO queues of offers (blocked senders, blocked receivers) under one spin
//! lock. An offer names a blocked sync ([`SyncState`]) and one of its leaves; a send offer's
//! value waits in that sync's slot, not in the channel. A sync that commits elsewhere leaves
//! stale offers behind: they are skipped and dropped when a partner scans past them, and swept
//! every [`SWEEP_EVERY`] registrations, so memory stays flat however many choices are made.

use std::collections::VecDeque;
use std::marker::PhantomData;
use std::sync::Arc;

use super::commit::{AbandonOnUnwind, Outcome, Payload, SyncState};
use super::{BaseOp, Event};
use crate::sched::park::park_current;
use crate::util::{SpinGuard, SpinLock};

/// Registrations between two full sweeps of a queue's stale offers.
const SWEEP_EVERY: u32 = 64;

/// A blocked sync's interest in one channel.
pub(crate) struct Offer {
    pub(crate) sync: Arc<SyncState>,
    pub(crate) leaf: usize,
}

#[derive(Default)]
pub(crate) struct Queues {
    senders: VecDeque<Offer>,
    receivers: VecDeque<Offer>,
    registrations: u32,
}

impl Queues {
    /// Hands `value` to the oldest blocked receiver; gives it back if there is none.
    pub(crate) fn give(&mut self, value: Payload) -> Result<(), Payload> {
        while let Some(offer) = self.receivers.pop_front() {
            if offer.sync.claim() {
                // SAFETY: we hold the claim until `complete`.
                unsafe { offer.sync.put(offer.leaf, value) };
                offer.sync.complete(offer.leaf);
                return Ok(());
            }
        }
        Err(value)
    }

    /// Takes the value of the oldest blocked sender, if any.
    pub(crate) fn take(&mut self) -> Option<Payload> {
        while let Some(offer) = self.senders.pop_front() {
            if offer.sync.claim() {
                // SAFETY: we hold the claim until `complete`.
                let value = unsafe { offer.sync.take(offer.leaf) };
                offer.sync.complete(offer.leaf);
                return Some(value);
            }
        }
        None
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
            if front.sync.is_waiting() {
                return true;
            }
            q.pop_front();
        }
        false
    }

    pub(crate) fn register(&mut self, offer: Offer, sender: bool) {
        self.registrations = self.registrations.wrapping_add(1);
        if self.registrations % SWEEP_EVERY == 0 {
            self.senders.retain(|o| o.sync.is_waiting());
            self.receivers.retain(|o| o.sync.is_waiting());
        }
        if sender {
            self.senders.push_back(offer);
        } else {
            self.receivers.push_back(offer);
        }
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
                value: Box::new(v),
            },
            |_| (),
        )
    }

    /// The event of receiving a value from this channel.
    pub fn recv_evt(&self) -> Event<T> {
        Event::base(
            BaseOp::Recv {
                chan: self.inner.clone(),
            },
            |payload| {
                *payload
                    .downcast::<T>()
                    .expect("a channel carries values of its own type")
            },
        )
    }

    /// Sends `v`, parking until a receiver takes it (`sync(send_evt(v))`, without building
    /// the event).
    ///
    /// # Panics
    ///
    /// If the task is unwound while it waits (its runtime is ending).
    #[track_caller]
    pub fn send(&self, v: T) {
        let mut queues = self.inner.queues.lock();
        let value: Payload = Box::new(v);
        let value = match queues.give(value) {
            Ok(()) => return,
            Err(value) => value,
        };
        let state = SyncState::single_reused(Some(value));
        let offer = Offer {
            sync: state.clone(),
            leaf: 0,
        };
        wait_single(&state, queues, offer, true, "Channel::send");
        SyncState::reuse(state);
    }

    /// Receives a value, parking until a sender offers one (`sync(recv_evt())`, without
    /// building the event).
    ///
    /// # Panics
    ///
    /// If the task is unwound while it waits (its runtime is ending).
    #[track_caller]
    pub fn recv(&self) -> T {
        let mut queues = self.inner.queues.lock();
        let payload = match queues.take() {
            Some(p) => p,
            None => {
                let state = SyncState::single_reused(None);
                let offer = Offer {
                    sync: state.clone(),
                    leaf: 0,
                };
                wait_single(&state, queues, offer, false, "Channel::recv");
                // SAFETY: `wait_single` returned, so the word has settled.
                let value =
                    unsafe { state.slot_value(0) }.expect("a committed receive has its value");
                SyncState::reuse(state);
                value
            }
        };
        *payload
            .downcast::<T>()
            .expect("a channel carries values of its own type")
    }
}

/// The blocking half of a one-leaf sync on a channel: registers `offer` (the unparker is in
/// the commit word's hands before the offer is visible, so no commit can miss it), releases the
/// channel, and parks until a partner commits it.
#[track_caller]
fn wait_single(
    state: &SyncState,
    queues: SpinGuard<'_, Queues>,
    offer: Offer,
    sender: bool,
    what: &'static str,
) {
    let mut queues = Some(queues);
    let abandon = AbandonOnUnwind { state };
    let why = park_current(what, None, |u| {
        state.set_unparker(u);
        let mut queues = queues.take().expect("published once");
        queues.register(offer, sender);
    });
    std::mem::forget(abandon);
    match state.outcome() {
        Outcome::Synched(_) => {}
        Outcome::Waiting | Outcome::Abandoned => {
            debug_assert_eq!(why, crate::sched::park::Wake::Interrupted);
            if state.abandon() {
                // Our offer is stale now; a value we did not send is dropped here, by us.
                // SAFETY: we abandoned the word, so no partner can claim it any more.
                drop(unsafe { state.slot_value(0) });
                drop(state.take_unparker());
                crate::sched::interrupted_wait(what);
            }
            // A partner committed first: it wins (outcome waits out its claim).
            state.outcome();
        }
    }
}
