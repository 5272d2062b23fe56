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

use super::commit::{Outcome, Payload, SyncState};
use super::{BaseOp, Event};
use crate::sched::park::park_current_borrowed;
use crate::util::{SpinGuard, SpinLock};

/// Registrations between two full sweeps of a queue's stale offers.
const SWEEP_EVERY: u32 = 64;

/// A blocked sync's interest in one channel.
pub(crate) struct Offer {
    sync: OfferSync,
    pub(crate) leaf: usize,
}

enum OfferSync {
    /// A general sync's state, shared with its syncer (stale offers keep it alive).
    Shared(Arc<SyncState>),
    /// The state of a `Channel::send`/`recv` shorthand, on its syncer's stack. The syncer never
    /// returns before this offer has left the queue: a partner pops it to commit, and a syncer
    /// that gives up (interrupted, or unwound) takes it out itself under the channel lock.
    Borrowed(*const SyncState),
}

// SAFETY: `Borrowed` points to a `SyncState` (which is `Sync`) that stays alive while the offer
// is queued (see `OfferSync::Borrowed`); the queue that holds it is behind the channel's lock.
unsafe impl Send for Offer {}

impl Offer {
    pub(crate) fn shared(sync: Arc<SyncState>, leaf: usize) -> Offer {
        Offer {
            sync: OfferSync::Shared(sync),
            leaf,
        }
    }

    fn sync(&self) -> &SyncState {
        match &self.sync {
            OfferSync::Shared(state) => state,
            // SAFETY: a queued borrowed offer's state is alive (see `OfferSync::Borrowed`), and
            // the offer is only read while it is in, or just popped from, its queue.
            OfferSync::Borrowed(state) => unsafe { &**state },
        }
    }

    fn is(&self, state: *const SyncState) -> bool {
        matches!(self.sync, OfferSync::Borrowed(p) if std::ptr::eq(p, state))
    }
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
            if offer.sync().claim() {
                // SAFETY: we hold the claim until `complete`.
                unsafe { offer.sync().put(offer.leaf, value) };
                offer.sync().complete(offer.leaf);
                return Ok(());
            }
        }
        Err(value)
    }

    /// Takes the value of the oldest blocked sender, if any.
    pub(crate) fn take(&mut self) -> Option<Payload> {
        while let Some(offer) = self.senders.pop_front() {
            if offer.sync().claim() {
                // SAFETY: we hold the claim until `complete`.
                let value = unsafe { offer.sync().take(offer.leaf) };
                offer.sync().complete(offer.leaf);
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
            if front.sync().is_waiting() {
                return true;
            }
            q.pop_front();
        }
        false
    }

    /// Takes out the offers of a shorthand sync that gave up.
    fn withdraw(&mut self, state: *const SyncState) {
        self.senders.retain(|o| !o.is(state));
        self.receivers.retain(|o| !o.is(state));
    }

    pub(crate) fn register(&mut self, offer: Offer, sender: bool) {
        self.registrations = self.registrations.wrapping_add(1);
        if self.registrations % SWEEP_EVERY == 0 {
            self.senders.retain(|o| o.sync().is_waiting());
            self.receivers.retain(|o| o.sync().is_waiting());
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
        let state = SyncState::single(Some(value));
        wait_single(&self.inner, &state, queues, true, "Channel::send");
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
                let state = SyncState::single(None);
                wait_single(&self.inner, &state, queues, false, "Channel::recv");
                // SAFETY: `wait_single` returned normally: the word is SYNCHED and the partner
                // is done with the slot.
                unsafe { state.slot_value(0) }.expect("a committed receive has its value")
            }
        };
        *payload
            .downcast::<T>()
            .expect("a channel carries values of its own type")
    }
}

/// The blocking half of a one-leaf sync on a channel, whose `state` lives on the caller's
/// stack: registers a borrowed offer (the unparker is fixed before the offer is visible, so no
/// commit can miss it), releases the channel, and parks until a partner commits it. Whatever
/// happens, the offer is out of the queue before this returns or unwinds.
#[track_caller]
fn wait_single(
    chan: &ChanInner,
    state: &SyncState,
    queues: SpinGuard<'_, Queues>,
    sender: bool,
    what: &'static str,
) {
    let offer = Offer {
        sync: OfferSync::Borrowed(state),
        leaf: 0,
    };
    let mut queues = Some(queues);
    let withdraw = Withdraw { chan, state };
    // SAFETY: the unparker goes into `state` only, whose one committer takes it under its
    // claim and is done with it once it has woken us; we never return before our offer has left
    // the queue and the word has settled (see `Withdraw`), so it never outlives this wait.
    let why = unsafe {
        park_current_borrowed(what, None, |u| {
            state.set_unparker(u);
            let mut queues = queues.take().expect("published once");
            queues.register(offer, sender);
        })
    };
    if state.outcome() == Outcome::Waiting {
        debug_assert_eq!(why, crate::sched::park::Wake::Interrupted);
        if state.abandon() {
            // Take our offer out and drop a value we did not send, then report.
            drop(withdraw);
            crate::sched::interrupted_wait(what);
        }
        // A partner committed first: it wins (outcome waits out its claim).
        state.outcome();
    }
    std::mem::forget(withdraw);
}

/// Makes a shorthand sync that gives up (interrupted, or unwound while parked) safe to leave:
/// its word is abandoned (or a racing commit is waited out), its offer taken out of the queue,
/// and what it still holds dropped here.
struct Withdraw<'a> {
    chan: &'a ChanInner,
    state: &'a SyncState,
}

impl Drop for Withdraw<'_> {
    fn drop(&mut self) {
        if !self.state.abandon() {
            self.state.outcome();
        }
        self.chan.queues.lock().withdraw(self.state);
        // SAFETY: settled (abandoned by us, or synched and waited out), and our offer is out of
        // the queue: no partner can reach the state any more.
        let value = unsafe { self.state.slot_value(0) };
        drop(self.state.take_unparker());
        drop(value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A shorthand `recv` whose task is interrupted (the cancellation hook) takes its offer out
    /// of the queue: a later send finds no receiver, and the stack state is never touched again.
    #[test]
    fn interrupted_shorthand_recv_withdraws_its_offer() {
        crate::Builder::new().domains(1).run(|| {
            let c: Channel<u32> = Channel::new();
            let c2 = c.clone();
            let slot: Arc<Mutex<Option<Arc<crate::task::Task>>>> = Arc::new(Mutex::new(None));
            let slot2 = slot.clone();
            let h = crate::thread::spawn(move || {
                *slot2.lock().unwrap() = crate::sched::current_task();
                c2.recv()
            });
            crate::thread::sleep(std::time::Duration::from_millis(10));
            let task = slot.lock().unwrap().clone().expect("the receiver started");
            assert!(crate::sched::park::interrupt(&task));
            let err = h.join().unwrap_err();
            let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
            assert!(msg.contains("Channel::recv was interrupted"), "{msg}");
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
            let slot: Arc<Mutex<Option<Arc<crate::task::Task>>>> = Arc::new(Mutex::new(None));
            let slot2 = slot.clone();
            let h = crate::thread::spawn(move || {
                *slot2.lock().unwrap() = crate::sched::current_task();
                c2.send(5)
            });
            crate::thread::sleep(std::time::Duration::from_millis(10));
            let task = slot.lock().unwrap().clone().expect("the sender started");
            assert!(crate::sched::park::interrupt(&task));
            assert!(h.join().is_err());
            assert!(
                c.recv_evt().poll().is_none(),
                "a withdrawn sender's value must not be received"
            );
            assert!(c.inner.queues.lock().senders.is_empty());
        });
    }
}
