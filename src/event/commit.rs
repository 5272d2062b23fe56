//! The commit point of a blocking sync: one atomic state word, and the per-leaf value slots.
//!
//! | state     | meaning                                                          | who leaves it, to what |
//! |-----------|------------------------------------------------------------------|------------------------|
//! | WAITING   | offers are registered, nothing chosen                            | a channel partner: -> CLAIMED; the syncer itself (timer, join, nack ready): -> SYNCHED(leaf); the syncer when interrupted: -> ABANDONED |
//! | CLAIMED   | a partner won and is moving the value in or out of the slot      | that partner: -> SYNCHED(leaf) |
//! | SYNCHED k | leaf `k` committed; its slot holds the received value, if any    | nobody                 |
//! | ABANDONED | the syncer gave up (cancelled); its offers are dead              | nobody                 |
//!
//! Every source commits only through a CAS from WAITING, so exactly one leaf commits. A partner
//! goes through CLAIMED so the value is in place (or taken) before SYNCHED is visible: the
//! syncer, woken for any reason, waits out a CLAIMED word (a few instructions, under no lock
//! of its own) before it reads its slot.

use std::any::Any;
use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::sched::park::Unparker;
use crate::util::SpinLock;

/// A type-erased value travelling through a channel or out of a leaf.
pub(crate) type Payload = Box<dyn Any + Send>;

const WAITING: u64 = 0;
const CLAIMED: u64 = 1;
const SYNCHED: u64 = 2;
const ABANDONED: u64 = 3;
const TAG: u64 = 0b11;
const LEAF_SHIFT: u32 = 2;

thread_local! {
    /// One settled one-leaf sync state kept for the next channel shorthand on this thread.
    static SPARE: Cell<Option<Arc<SyncState>>> = const { Cell::new(None) };
}

/// Guards a blocked sync while it parks: if the syncer unwinds there (the runtime dropping its
/// task, or cancellation), the sync is abandoned, so its offers go stale instead of looking
/// alive to later partners, and every value it still holds is dropped here, by the syncer, not
/// later under some channel's lock.
pub(crate) struct AbandonOnUnwind<'a> {
    pub(crate) state: &'a SyncState,
}

impl Drop for AbandonOnUnwind<'_> {
    fn drop(&mut self) {
        if !self.state.abandon() {
            // A partner committed first: wait out its claim.
            self.state.outcome();
        }
        let slots = match &self.state.slots {
            Slots::One(_) => 1,
            Slots::Many(s) => s.len(),
        };
        let values: Vec<_> = (0..slots)
            .filter_map(|i| self.state.slot_value(i))
            .collect();
        drop(self.state.take_unparker());
        drop(values);
    }
}

/// Where the syncer stands, as seen by [`SyncState::outcome`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Waiting,
    Synched(usize),
    Abandoned,
}

/// One blocking sync: its state word, a value slot per leaf, and how to wake it.
pub(crate) struct SyncState {
    word: AtomicU64,
    slots: Slots,
    unparker: SpinLock<Option<Unparker>>,
}

/// Per-leaf value slots; a one-leaf sync (the `Channel::send`/`recv` shorthand) keeps its one
/// slot inline.
enum Slots {
    One(SpinLock<Option<Payload>>),
    Many(Box<[SpinLock<Option<Payload>>]>),
}

impl std::ops::Index<usize> for Slots {
    type Output = SpinLock<Option<Payload>>;
    fn index(&self, leaf: usize) -> &Self::Output {
        match self {
            Slots::One(slot) if leaf == 0 => slot,
            Slots::One(_) => panic!("a one-leaf sync has no leaf {leaf}"),
            Slots::Many(slots) => &slots[leaf],
        }
    }
}

impl SyncState {
    pub(crate) fn new(slots: impl Iterator<Item = Option<Payload>>) -> SyncState {
        SyncState {
            word: AtomicU64::new(WAITING),
            slots: Slots::Many(slots.map(SpinLock::new).collect()),
            unparker: SpinLock::new(None),
        }
    }

    /// A one-leaf sync state for the channel shorthands, reusing this thread's spare one when
    /// it has one (see [`SyncState::reuse`]): a blocking `send`/`recv` then allocates nothing
    /// for its commit word.
    pub(crate) fn single_reused(value: Option<Payload>) -> Arc<SyncState> {
        match SPARE.with(|s| s.take()) {
            Some(state) => {
                *state.slots[0].lock() = value;
                state
            }
            None => Arc::new(SyncState::single(value)),
        }
    }

    /// Keeps a settled one-leaf state as this thread's spare if nothing else refers to it any
    /// more (no stale offer, no committer still holding it).
    pub(crate) fn reuse(mut state: Arc<SyncState>) {
        if let Some(s) = Arc::get_mut(&mut state) {
            if let Slots::One(slot) = &mut s.slots {
                *slot.get_mut() = None;
                *s.word.get_mut() = WAITING;
                *s.unparker.get_mut() = None;
                SPARE.with(|spare| spare.set(Some(state)));
            }
        }
    }

    /// A sync of one leaf, whose slot starts with `value`.
    pub(crate) fn single(value: Option<Payload>) -> SyncState {
        SyncState {
            word: AtomicU64::new(WAITING),
            slots: Slots::One(SpinLock::new(value)),
            unparker: SpinLock::new(None),
        }
    }

    /// Whether the sync still waits (offers of a sync that does not are stale).
    pub(crate) fn is_waiting(&self) -> bool {
        self.word.load(Ordering::Acquire) == WAITING
    }

    /// A partner's step 1: WAITING -> CLAIMED. On success the caller owns the slots until it
    /// calls [`SyncState::complete`].
    pub(crate) fn claim(&self) -> bool {
        self.word
            .compare_exchange(WAITING, CLAIMED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Moves a value into `leaf`'s slot (a receive offer), after a successful claim.
    pub(crate) fn put(&self, leaf: usize, value: Payload) {
        *self.slots[leaf].lock() = Some(value);
    }

    /// Takes the value out of `leaf`'s slot (a send offer), after a successful claim.
    pub(crate) fn take(&self, leaf: usize) -> Payload {
        self.slots[leaf]
            .lock()
            .take()
            .expect("a send offer holds its value until it commits")
    }

    /// A partner's step 2: CLAIMED -> SYNCHED(leaf), then wakes the syncer.
    pub(crate) fn complete(&self, leaf: usize) {
        self.word
            .store(SYNCHED | (leaf as u64) << LEAF_SHIFT, Ordering::Release);
        let waker = self.unparker.lock().take();
        if let Some(u) = waker {
            u.unpark();
        }
    }

    /// The syncer commits one of its own leaves (a timer, a join, a nack became ready).
    pub(crate) fn commit_self(&self, leaf: usize) -> bool {
        let synched = SYNCHED | (leaf as u64) << LEAF_SHIFT;
        self.word
            .compare_exchange(WAITING, synched, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// The syncer gives up (it was interrupted): false if something committed first.
    pub(crate) fn abandon(&self) -> bool {
        self.word
            .compare_exchange(WAITING, ABANDONED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Where the sync stands; waits out a partner's CLAIMED window.
    pub(crate) fn outcome(&self) -> Outcome {
        loop {
            let w = self.word.load(Ordering::Acquire);
            match w & TAG {
                WAITING => return Outcome::Waiting,
                SYNCHED => return Outcome::Synched((w >> LEAF_SHIFT) as usize),
                ABANDONED => return Outcome::Abandoned,
                _ => std::hint::spin_loop(),
            }
        }
    }

    /// Sets the unparker committers wake. The syncer re-reads the word afterwards, so a
    /// committer that took an older unparker (now stale) is never missed.
    pub(crate) fn set_unparker(&self, u: Unparker) {
        *self.unparker.lock() = Some(u);
    }

    /// Takes the unparker back once the sync has settled.
    pub(crate) fn take_unparker(&self) -> Option<Unparker> {
        self.unparker.lock().take()
    }

    /// Takes the value a committed leaf left in its slot (a receive), or the value a send leaf
    /// never gave away.
    pub(crate) fn slot_value(&self, leaf: usize) -> Option<Payload> {
        self.slots[leaf].lock().take()
    }
}
