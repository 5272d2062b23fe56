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
//! goes through CLAIMED so the value is in place (or taken) and the syncer woken before SYNCHED
//! is visible: the syncer, woken for any reason, waits out a CLAIMED word before it reads its
//! slot, and SYNCHED is the partner's last touch of the state.

use std::any::Any;
use std::cell::UnsafeCell;
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
        let values: Vec<_> = (0..self.state.slot_count())
            // SAFETY: the word has settled (abandoned by us, or synched and waited out).
            .filter_map(|i| unsafe { self.state.slot_value(i) })
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
    slots: Box<[Slot]>,
    unparker: SpinLock<Option<Unparker>>,
}

/// A value slot. Who may touch it is fixed by the commit word, so it needs no lock of its own:
/// the syncer, before its offers are visible and after the word has settled (SYNCHED or
/// ABANDONED, a CLAIMED window waited out); a partner, between its successful `claim` and its
/// `complete`.
struct Slot(UnsafeCell<Option<Payload>>);

// SAFETY: accesses are serialised by the commit word as described on `Slot` (the claim CAS and
// the release store of SYNCHED order the partner's access against the syncer's).
unsafe impl Sync for Slot {}

impl Slot {
    fn new(value: Option<Payload>) -> Slot {
        Slot(UnsafeCell::new(value))
    }

    /// # Safety
    ///
    /// The caller has the access right described on [`Slot`].
    #[allow(clippy::mut_from_ref)]
    unsafe fn get(&self) -> &mut Option<Payload> {
        // SAFETY: forwarded to the caller.
        unsafe { &mut *self.0.get() }
    }
}

impl SyncState {
    pub(crate) fn new(slots: impl Iterator<Item = Option<Payload>>) -> SyncState {
        SyncState {
            word: AtomicU64::new(WAITING),
            slots: slots.map(Slot::new).collect(),
            unparker: SpinLock::new(None),
        }
    }

    /// Whether the sync still waits (offers of a sync that does not are stale).
    pub(crate) fn is_waiting(&self) -> bool {
        self.word.load(Ordering::Acquire) == WAITING
    }

    /// Whether the syncer is a task the shutdown abandoned (its offers must not be committed:
    /// what they would receive would be lost).
    pub(crate) fn syncer_is_dead(&self) -> bool {
        self.unparker.lock().as_ref().is_some_and(Unparker::is_dead)
    }

    /// A partner's step 1: WAITING -> CLAIMED. On success the caller owns the slots until it
    /// calls [`SyncState::complete`].
    pub(crate) fn claim(&self) -> bool {
        self.word
            .compare_exchange(WAITING, CLAIMED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Moves a value into `leaf`'s slot (a receive offer).
    ///
    /// # Safety
    ///
    /// Only after a successful [`SyncState::claim`], before [`SyncState::complete`].
    pub(crate) unsafe fn put(&self, leaf: usize, value: Payload) {
        // SAFETY: the claim gives us the slots until `complete`.
        unsafe { *self.slots[leaf].get() = Some(value) };
    }

    /// Takes the value out of `leaf`'s slot (a send offer).
    ///
    /// # Safety
    ///
    /// Only after a successful [`SyncState::claim`], before [`SyncState::complete`].
    pub(crate) unsafe fn take(&self, leaf: usize) -> Payload {
        // SAFETY: the claim gives us the slots until `complete`.
        unsafe { self.slots[leaf].get() }
            .take()
            .expect("a send offer holds its value until it commits")
    }

    /// A partner's step 2: wakes the syncer, then CLAIMED -> SYNCHED(leaf).
    ///
    /// Waking comes first, so SYNCHED is the partner's last touch of the state: a syncer that
    /// sees it may drop its values and its unparker at once. A syncer woken before it sees
    /// CLAIMED turn into SYNCHED waits the short window out in `outcome`.
    pub(crate) fn complete(&self, leaf: usize) {
        let waker = self.unparker.lock().take();
        if let Some(u) = waker {
            u.unpark();
        }
        self.word
            .store(SYNCHED | (leaf as u64) << LEAF_SHIFT, Ordering::Release);
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
        let mut spins = 0u32;
        loop {
            let w = self.word.load(Ordering::Acquire);
            match w & TAG {
                WAITING => return Outcome::Waiting,
                SYNCHED => return Outcome::Synched((w >> LEAF_SHIFT) as usize),
                ABANDONED => return Outcome::Abandoned,
                _ => {
                    // A partner is between its claim and its completion: a few instructions,
                    // unless its thread was preempted, in which case let it run.
                    spins += 1;
                    if spins < 256 {
                        std::hint::spin_loop();
                    } else {
                        std::thread::yield_now();
                    }
                }
            }
        }
    }

    /// Sets the unparker committers wake. The syncer re-reads the word afterwards, so a
    /// committer that took an older unparker (now stale) is never missed.
    pub(crate) fn set_unparker(&self, u: Unparker) {
        *self.unparker.lock() = Some(u);
    }

    /// Takes the unparker back once the sync has settled (abandoned by us, or SYNCHED: a
    /// partner takes it before it stores SYNCHED).
    pub(crate) fn take_unparker(&self) -> Option<Unparker> {
        self.unparker.lock().take()
    }

    /// Takes the value a committed leaf left in its slot (a receive), or the value a send leaf
    /// never gave away.
    ///
    /// # Safety
    ///
    /// Only by the syncer, once [`SyncState::outcome`] has returned `Synched` or `Abandoned`
    /// (no partner can be inside its claim any more).
    pub(crate) unsafe fn slot_value(&self, leaf: usize) -> Option<Payload> {
        // SAFETY: forwarded to the caller.
        unsafe { self.slots[leaf].get() }.take()
    }

    /// How many slots (leaves) the sync has.
    pub(crate) fn slot_count(&self) -> usize {
        self.slots.len()
    }
}
