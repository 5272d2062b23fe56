//! Receive leaves of primitives that are not CML channels (today `sync::mpsc`'s receivers,
//! through `Receiver::recv_evt`): what such a primitive provides ([`RecvSource`]) and the offer
//! a blocked sync leaves in its waiter list ([`SyncOffer`]).
//!
//! A source's shared state lives in a [`Shared`], with the table of its functions in front, and
//! a leaf holds a [`SourceRef`] to it: one word, so that this leaf kind does not make the
//! leaves of every event larger (a `dyn RecvSource` reference would take two).
//!
//! A source keeps its own lock and its own list of offers; the sync algorithm (`sync.rs`) calls
//! it at each step of the module doc's `sync`, one source lock at a time, possibly while it
//! holds the locks of the CML channels of the same sync (never the other way round: a source
//! never takes a channel lock, so the order is always channels, then one source):
//!
//! 1. Attempt: [`RecvSource::ready`] says whether a receive would complete now (a message, or
//!    every sender gone); [`RecvSource::take`] completes it (the result, `Ok` or `Err`, as the
//!    leaf's payload), or says `None` if another receiver took the message in between (the
//!    attempt then looks again).
//! 2. Offer: [`RecvSource::offer`] registers a [`SyncOffer`] under the source's lock, unless the
//!    source has become ready since the attempt (nothing holds it still between the two, unlike
//!    a channel): then the syncer commits its own leaf ([`SyncOffer::commit_self`], WAITING ->
//!    SYNCHED through the commit word, as a timer leaf does) and moves the result into the
//!    leaf's slot, still under the source's lock. If the word has already left WAITING (another
//!    source committed the sync), nothing is taken.
//! 3. A partner (a sender) commits an offer under the source's lock, as a channel partner does
//!    (`commit.rs`): [`SyncOffer::claim`] (WAITING -> CLAIMED, or `None` for a stale offer,
//!    which it drops), then [`ClaimedOffer::complete`] moves the result into the slot, wakes
//!    the syncer and stores SYNCHED. Only after a successful claim does the partner give up
//!    its message: a partner that loses the race keeps it (queued, or for the next offer).
//! 4. Take back: once the word has settled, the syncer calls [`RecvSource::withdraw`] on every
//!    source it offered on; under the source's lock, its offers still queued are removed. A
//!    partner holds that lock from its claim to its completion, so once `withdraw` returns no
//!    partner touches the sync's state any more and the syncer's frame may end.
//!
//! Steps 2 to 4 are model-checked with loom as they are used by `sync::mpsc`
//! (`loom_checks::source`).
//!
//! Syncs with a source leaf always wait in the general loop (`wait_commit`), never with the
//! borrowed unparker of the channels-only path: step 2 may commit the sync with nobody to wake
//! it.

use std::marker::PhantomData;
use std::ops::Deref;
use std::ptr::NonNull;
use std::sync::Arc;

use super::Event;
use super::commit::{Claim, Slot, SyncState};
use super::leaves::BaseOp;
use super::payload::Payload;

/// A primitive whose receive can be a leaf of a sync (module doc). Its shared state is kept in
/// a [`Shared`], which a leaf refers to with a [`SourceRef`].
pub(crate) trait RecvSource {
    /// Step 1: whether a receive would complete now.
    fn ready(&self) -> bool;

    /// Step 1: completes a receive now, if one can: its result as the leaf's payload.
    fn take(&self) -> Option<Payload>;

    /// Step 2: registers `offer`, or commits the sync to it at once if the source is ready.
    fn offer(&self, offer: SyncOffer);

    /// Step 4: removes the offers of `state` still queued, under the source's lock.
    fn withdraw(&self, state: &SyncState);
}

/// A source's shared state with the table of its [`RecvSource`] functions in front, so that a
/// leaf refers to it with one word ([`SourceRef`]; a `dyn` reference would be two, and make
/// every leaf of every event one word larger).
///
/// ```text
///  Arc<Shared<S>> --> +----------------+
///                     | &'static Fns   |  <- a SourceRef points here (repr(C): first field)
///                     | inner: S       |
///                     +----------------+
/// ```
#[repr(C)]
pub(crate) struct Shared<S> {
    fns: &'static Fns,
    inner: S,
}

impl<S: RecvSource> Shared<S> {
    /// `inner`, with its functions in front.
    pub(crate) fn new(inner: S) -> Shared<S> {
        Shared {
            fns: &Of::<S>::FNS,
            inner,
        }
    }
}

impl<S> Deref for Shared<S> {
    type Target = S;
    fn deref(&self) -> &S {
        &self.inner
    }
}

/// The [`RecvSource`] functions of one type, over a type-erased pointer to its [`Shared`].
struct Fns {
    ready: unsafe fn(NonNull<()>) -> bool,
    take: unsafe fn(NonNull<()>) -> Option<Payload>,
    offer: unsafe fn(NonNull<()>, SyncOffer),
    withdraw: unsafe fn(NonNull<()>, &SyncState),
    /// Gives back one reference of the `Arc` (a [`SourceRef`] dropped).
    release: unsafe fn(NonNull<()>),
}

/// The [`Fns`] of sources of type `S`.
struct Of<S>(PhantomData<S>);

impl<S: RecvSource> Of<S> {
    const FNS: Fns = Fns {
        ready: Self::ready,
        take: Self::take,
        offer: Self::offer,
        withdraw: Self::withdraw,
        release: Self::release,
    };

    /// # Safety
    ///
    /// `p` is the pointer of a live `Arc<Shared<S>>` (a [`SourceRef`] holds one).
    unsafe fn inner<'a>(p: NonNull<()>) -> &'a S {
        // SAFETY: the caller's contract.
        unsafe { &p.cast::<Shared<S>>().as_ref().inner }
    }

    /// # Safety
    ///
    /// As [`Of::inner`].
    unsafe fn ready(p: NonNull<()>) -> bool {
        // SAFETY: forwarded.
        unsafe { Self::inner(p) }.ready()
    }

    /// # Safety
    ///
    /// As [`Of::inner`].
    unsafe fn take(p: NonNull<()>) -> Option<Payload> {
        // SAFETY: forwarded.
        unsafe { Self::inner(p) }.take()
    }

    /// # Safety
    ///
    /// As [`Of::inner`].
    unsafe fn offer(p: NonNull<()>, offer: SyncOffer) {
        // SAFETY: forwarded.
        unsafe { Self::inner(p) }.offer(offer)
    }

    /// # Safety
    ///
    /// As [`Of::inner`].
    unsafe fn withdraw(p: NonNull<()>, state: &SyncState) {
        // SAFETY: forwarded.
        unsafe { Self::inner(p) }.withdraw(state)
    }

    /// # Safety
    ///
    /// As [`Of::inner`], and the reference is not used afterwards.
    unsafe fn release(p: NonNull<()>) {
        // SAFETY: the caller's contract: `p` came from `Arc::into_raw` of an `Arc<Shared<S>>`
        // whose reference we own.
        drop(unsafe { Arc::from_raw(p.cast::<Shared<S>>().as_ptr()) });
    }
}

/// One counted reference to a source's [`Shared`] state, type-erased: what a receive leaf
/// holds.
pub(crate) struct SourceRef(NonNull<()>);

// SAFETY: only made (`SourceRef::new`) from a `Shared<S>` with `S: Send + Sync`, whose
// functions take `&S`.
unsafe impl Send for SourceRef {}
// SAFETY: as above.
unsafe impl Sync for SourceRef {}

impl SourceRef {
    /// A reference to `src`'s state (the `Arc`'s count keeps it).
    pub(crate) fn new<S: RecvSource + Send + Sync + 'static>(src: Arc<Shared<S>>) -> SourceRef {
        let raw = Arc::into_raw(src).cast_mut().cast::<()>();
        SourceRef(NonNull::new(raw).expect("an Arc is never null"))
    }

    fn fns(&self) -> &'static Fns {
        // SAFETY: we hold a reference to a live `Shared<_>`, whose first field (`repr(C)`) is
        // its functions.
        unsafe { *self.0.cast::<&'static Fns>().as_ptr() }
    }

    /// [`RecvSource::ready`] of the source.
    pub(crate) fn ready(&self) -> bool {
        // SAFETY: `self.0` is a live `Arc<Shared<S>>` of the type `fns` was made for.
        unsafe { (self.fns().ready)(self.0) }
    }

    /// [`RecvSource::take`] of the source.
    pub(crate) fn take(&self) -> Option<Payload> {
        // SAFETY: as in `ready`.
        unsafe { (self.fns().take)(self.0) }
    }

    /// [`RecvSource::offer`] of the source.
    pub(crate) fn offer(&self, offer: SyncOffer) {
        // SAFETY: as in `ready`.
        unsafe { (self.fns().offer)(self.0, offer) }
    }

    /// [`RecvSource::withdraw`] of the source.
    pub(crate) fn withdraw(&self, state: &SyncState) {
        // SAFETY: as in `ready`.
        unsafe { (self.fns().withdraw)(self.0, state) }
    }
}

impl Drop for SourceRef {
    fn drop(&mut self) {
        // SAFETY: as in `ready`; our reference, not used again.
        unsafe { (self.fns().release)(self.0) }
    }
}

/// The offer of a blocked sync's receive leaf, queued in a source's list (module doc).
///
/// It points into the syncer's frame: it stays valid while it is queued, and for the partner
/// that popped it until that partner completes it or drops it, both under the source's lock
/// (step 4).
pub(crate) struct SyncOffer {
    state: NonNull<SyncState>,
    slot: NonNull<Slot>,
    leaf: usize,
}

// SAFETY: the pointers are followed only under the source's lock while the offer is queued or
// just popped, and what they name outlives that (module doc, step 4); a slot holds payloads,
// which are `Send`.
unsafe impl Send for SyncOffer {}

impl SyncOffer {
    /// The offer of leaf `leaf` of the sync `state`, whose value slot is `slot`.
    pub(super) fn new(state: &SyncState, slot: &Slot, leaf: usize) -> SyncOffer {
        SyncOffer {
            state: NonNull::from(state),
            slot: NonNull::from(slot),
            leaf,
        }
    }

    /// Whether the offer belongs to the sync `state` (for [`RecvSource::withdraw`]).
    pub(crate) fn is_of(&self, state: &SyncState) -> bool {
        std::ptr::eq(self.state.as_ptr(), state)
    }

    /// Step 3, a partner's claim: `None` if the offer is stale (its sync committed elsewhere,
    /// was abandoned, or is a task the shutdown abandoned); the caller drops it and keeps its
    /// message.
    ///
    /// # Safety
    ///
    /// The offer was just popped from the source whose lock the caller holds, and the caller
    /// keeps that lock until it completes the claimed offer.
    pub(crate) unsafe fn claim(self) -> Option<ClaimedOffer> {
        // SAFETY: the offer was queued until now, under the lock we hold (caller's contract).
        let claim = unsafe { self.state.as_ref() }.claim()?;
        Some(ClaimedOffer { offer: self, claim })
    }

    /// Step 2, the syncer committing its own leaf at registration: WAITING -> SYNCHED(leaf),
    /// then the result `take` gives goes into the leaf's slot. False (and `take` is not
    /// called) if the word had left WAITING.
    ///
    /// # Safety
    ///
    /// Only in [`RecvSource::offer`] (called by the syncer), on the offer it was given, before
    /// that offer is queued.
    pub(crate) unsafe fn commit_self(&self, take: impl FnOnce() -> Payload) -> bool {
        // SAFETY: the syncer's own state, in its frame (caller's contract: we are the syncer).
        let state = unsafe { self.state.as_ref() };
        if !state.commit_self(self.leaf) {
            return false;
        }
        // SAFETY: the word has settled by our own commit: the slot is the syncer's (ours), and
        // no partner can claim any more.
        unsafe { self.slot.as_ref().put(take()) };
        true
    }
}

/// An offer a partner has claimed (step 3): it must complete it, under the source's lock.
pub(crate) struct ClaimedOffer {
    offer: SyncOffer,
    claim: Claim,
}

impl ClaimedOffer {
    /// Moves `result` into the leaf's slot, wakes the syncer and stores SYNCHED (the partner's
    /// last touch of the sync).
    pub(crate) fn complete(self, result: Payload) {
        let ClaimedOffer { offer, claim } = self;
        // SAFETY: our claim gives us the slot and keeps the sync alive until `complete`
        // (`commit.rs`); the caller still holds the source's lock (`SyncOffer::claim`).
        unsafe {
            offer.slot.as_ref().put(result);
            offer.state.as_ref().complete(offer.leaf, claim);
        }
    }
}

/// The event of a receive from `src`, whose result (the payload its leaf gets) is a `V`.
pub(crate) fn recv_event<V: Send + 'static>(src: SourceRef) -> Event<V> {
    Event::base(
        BaseOp::Source {
            src,
            value: Slot::new(None),
        },
        |payload| {
            payload
                .downcast::<V>()
                .expect("a source gives results of its own type")
        },
    )
}
