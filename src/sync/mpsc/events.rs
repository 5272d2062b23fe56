//! Receives as CML events: [`Receiver::recv_evt`], the mpsc channel as an event source
//! (`event::source`), and the senders' side of the hand-shake (the module doc's "Receives as
//! events").

use super::{Chan, Receiver, RecvError, State, TryRecvError};
use crate::event::Event;
use crate::event::commit::SyncState;
use crate::event::payload::Payload;
use crate::event::source::{RecvSource, SourceRef, SyncOffer, recv_event};

/// Makes the payload of a `recv_evt` leaf: `Ok(message)` or `Err(RecvError)`.
pub(super) struct AsResult<T> {
    ok: fn(T) -> Payload,
    disconnected: fn() -> Payload,
}

impl<T> Clone for AsResult<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for AsResult<T> {}

impl<T: Send + 'static> AsResult<T> {
    const FNS: AsResult<T> = AsResult {
        ok: |v| Payload::new(Ok::<T, RecvError>(v)),
        disconnected: || Payload::new(Err::<T, RecvError>(RecvError)),
    };
}

impl<T> State<T> {
    /// Events step 3: commits the oldest live receive offer with `value`; gives the value back
    /// if there is none (stale offers are dropped on the way). Under the lock, with the
    /// buffer empty (older values go first).
    #[inline]
    pub(super) fn hand_to_offer(&mut self, value: T) -> Result<(), T> {
        // No event sync waits on this channel: the common case, settled without a call.
        if self.offers.is_empty() {
            return Err(value);
        }
        self.hand_to_offer_slow(value)
    }

    #[cold]
    fn hand_to_offer_slow(&mut self, value: T) -> Result<(), T> {
        debug_assert!(
            self.buffer.is_empty(),
            "a buffered value would be overtaken"
        );
        // Read before any claim: nothing may panic between a claim and its completion (the
        // syncer would wait for ever on a word left CLAIMED).
        let ok = self.as_result.expect("set by recv_evt").ok;
        while let Some(offer) = self.offers.pop_front() {
            // SAFETY: just popped under the lock, which we hold until `complete`.
            if let Some(claimed) = unsafe { offer.claim() } {
                claimed.complete(ok(value));
                return Ok(());
            }
        }
        Err(value)
    }

    /// Events step 5: every live offer commits with `Err(RecvError)` (the last sender is gone).
    /// Under the lock.
    pub(super) fn disconnect_offers(&mut self) {
        if self.offers.is_empty() {
            return;
        }
        // Read before any claim, as in `hand_to_offer_slow`.
        let disconnected = self.as_result.expect("set by recv_evt").disconnected;
        while let Some(offer) = self.offers.pop_front() {
            // SAFETY: as in `hand_to_offer`.
            if let Some(claimed) = unsafe { offer.claim() } {
                claimed.complete(disconnected());
            }
        }
    }
}

/// A receiver's receive as an event leaf ("Receives as events" in the module doc).
impl<T> RecvSource for Chan<T> {
    fn ready(&self) -> bool {
        self.state.lock().receive_ready()
    }

    fn take(&self) -> Option<Payload> {
        let mut state = self.state.lock();
        let (got, sender) = state.try_take();
        let fns = state.as_result.expect("set by recv_evt");
        drop(state);
        self.wake_sender(sender);
        match got {
            Ok(v) => Some((fns.ok)(v)),
            Err(TryRecvError::Disconnected) => Some((fns.disconnected)()),
            Err(TryRecvError::Empty) => None,
        }
    }

    fn offer(&self, offer: SyncOffer) {
        let mut state = self.state.lock();
        if !state.receive_ready() {
            state.offers.push_back(offer);
            return;
        }
        // Ready since the attempt: commit our own leaf, taking the message (step 2).
        let fns = state.as_result.expect("set by recv_evt");
        let mut room = None;
        // SAFETY: the offer we were given by the syncer (us), not queued.
        unsafe {
            offer.commit_self(|| {
                let (got, sender) = state.try_take();
                room = sender;
                match got {
                    Ok(v) => (fns.ok)(v),
                    Err(TryRecvError::Disconnected) => (fns.disconnected)(),
                    Err(TryRecvError::Empty) => unreachable!("ready under the same lock"),
                }
            })
        };
        drop(state);
        self.wake_sender(room);
    }

    fn withdraw(&self, sync: &SyncState) {
        self.state.lock().offers.retain(|o| !o.is_of(sync));
    }
}

impl<T: Send + 'static> Receiver<T> {
    /// The event of receiving the next value (extension: a CML event, see
    /// [`bobine::event`](crate::event)): it can be one alternative of
    /// [`event::choose`](crate::event::choose) / [`select`](crate::event::select) among channel
    /// events, timeouts, descriptors, joins and other receivers.
    ///
    /// The event is ready when a value is there (it commits by taking exactly that value,
    /// the oldest) or when every sender is gone and nothing is buffered (it gives
    /// `Err(RecvError)`); for a `sync_channel(0)` a sender blocked in `send` is matched by the
    /// committing receive, and its `send` returns. If another alternative commits, nothing is
    /// taken: the value stays for the next receive. `recv_evt().poll()` is
    /// [`try_recv`](Receiver::try_recv) without the yield: `Some(Ok(v))`, `Some(Err(RecvError))`
    /// once disconnected, `None` if empty. `recv_evt().sync()` is [`recv`](Receiver::recv).
    ///
    /// The event holds the channel, not the `Receiver` (events are `'static` and `Send`): it
    /// may be synced on another thread, or after the `Receiver` was dropped (then the senders'
    /// `send` fails, so it waits for them all to be gone).
    ///
    /// ```
    /// use std::time::Duration;
    /// use bobine::event::{after, select};
    /// use bobine::sync::mpsc;
    ///
    /// bobine::run(|| {
    ///     let (tx_a, rx_a) = mpsc::channel::<u32>();
    ///     let (_tx_b, rx_b) = mpsc::channel::<&str>();
    ///     tx_a.send(7).unwrap();
    ///     let got = select(vec![
    ///         rx_a.recv_evt().wrap(|r| format!("a: {}", r.unwrap())),
    ///         rx_b.recv_evt().wrap(|r| format!("b: {}", r.unwrap())),
    ///         after(Duration::from_millis(10)).wrap(|()| "timeout".to_string()),
    ///     ]);
    ///     assert_eq!(got, "a: 7");
    ///     drop(tx_a);
    ///     assert_eq!(rx_a.recv_evt().poll(), Some(Err(mpsc::RecvError)));
    /// });
    /// ```
    pub fn recv_evt(&self) -> Event<Result<T, RecvError>> {
        // Before any leaf of this channel exists: from now on its leaves make their results.
        self.chan.state.lock().as_result = Some(AsResult::<T>::FNS);
        recv_event(SourceRef::new(self.chan.clone()))
    }
}
