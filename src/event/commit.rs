//! The commit point of a blocking sync: one atomic state word, and the per-leaf value slots.
//!
//! | state     | meaning                                                          | who leaves it, to what |
//! |-----------|------------------------------------------------------------------|------------------------|
//! | WAITING   | offers are registered, nothing chosen                            | a channel partner: -> CLAIMED; the syncer itself (timer, join, nack, readiness, signal ready): -> SYNCHED(leaf); the syncer when interrupted: -> ABANDONED |
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

    /// The syncer commits one of its own leaves (a timer, a join, a nack, a readiness or a
    /// signal leaf became ready).
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    use super::*;
    use crate::sched::park::{Park, Wake};
    use crate::util::{joined, within};

    /// The three ways out of WAITING.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum Way {
        /// A partner claims, puts a value into leaf 0 and completes.
        Claim,
        /// The syncer commits its own leaf 1.
        CommitSelf,
        Abandon,
    }

    const WAYS: [Way; 3] = [Way::Claim, Way::CommitSelf, Way::Abandon];

    /// A sync with `n` empty slots.
    fn state(n: usize) -> SyncState {
        SyncState::new((0..n).map(|_| None))
    }

    /// Tries `way` out of WAITING; a claim that wins is left CLAIMED.
    fn attempt(s: &SyncState, way: Way) -> bool {
        match way {
            Way::Claim => s.claim(),
            Way::CommitSelf => s.commit_self(1),
            Way::Abandon => s.abandon(),
        }
    }

    /// The value a slot holds, as a `u64`.
    fn value(s: &SyncState, leaf: usize) -> Option<u64> {
        // SAFETY: the callers have seen `outcome` settle (SYNCHED or ABANDONED).
        let v = unsafe { s.slot_value(leaf) }?;
        Some(*v.downcast::<u64>().expect("the tests' values are u64"))
    }

    /// From WAITING the first of `claim`, `commit_self`, `abandon` wins; the others then fail.
    #[test]
    fn exactly_one_way_out_of_waiting_wins() {
        within(20, || {
            for first in WAYS {
                let s = state(2);
                assert!(attempt(&s, first), "{first:?} from WAITING");
                for other in WAYS {
                    assert!(!attempt(&s, other), "{other:?} after {first:?}");
                }
                if first == Way::Claim {
                    s.complete(0);
                    for other in WAYS {
                        assert!(!attempt(&s, other), "{other:?} after a completed claim");
                    }
                }
                let expected = match first {
                    Way::Claim => Outcome::Synched(0),
                    Way::CommitSelf => Outcome::Synched(1),
                    Way::Abandon => Outcome::Abandoned,
                };
                assert_eq!(s.outcome(), expected);
            }
        });
    }

    /// `is_waiting` holds only in WAITING: not once CLAIMED, SYNCHED or ABANDONED.
    #[test]
    fn is_waiting_only_until_something_wins() {
        within(20, || {
            let s = state(1);
            assert!(s.is_waiting());
            assert_eq!(s.outcome(), Outcome::Waiting);
            assert!(s.claim());
            assert!(!s.is_waiting(), "CLAIMED");
            s.complete(0);
            assert!(!s.is_waiting(), "SYNCHED by a partner");
            let s = state(2);
            assert!(s.commit_self(1));
            assert!(!s.is_waiting(), "SYNCHED by the syncer");
            let s = state(1);
            assert!(s.abandon());
            assert!(!s.is_waiting(), "ABANDONED");
        });
    }

    /// `outcome` waits out a partner's CLAIMED window, then says `Synched` with the value in.
    #[test]
    fn outcome_waits_out_a_claimed_window() {
        within(20, || {
            let s = Arc::new(state(1));
            let claimed = Arc::new(std::sync::Barrier::new(2));
            let (s2, claimed2) = (s.clone(), claimed.clone());
            let partner = std::thread::spawn(move || {
                assert!(s2.claim());
                claimed2.wait();
                // Make it likely that the syncer looks while the word is CLAIMED.
                std::thread::sleep(Duration::from_millis(30));
                // SAFETY: between our successful claim and our completion.
                unsafe { s2.put(0, Box::new(42u64)) };
                s2.complete(0);
            });
            claimed.wait();
            assert!(!s.is_waiting());
            assert_eq!(s.outcome(), Outcome::Synched(0));
            assert_eq!(value(&s, 0), Some(42));
            joined(partner);
        });
    }

    /// A woken syncer reads the partner's value with `slot_value` once `outcome` says `Synched`.
    #[test]
    fn a_partners_value_is_read_back_once_synched() {
        within(20, || {
            // Leaf 0 offers to send 7; leaf 1 offers to receive.
            let s = Arc::new(SyncState::new(
                [Some(Box::new(7u64) as Payload), None].into_iter(),
            ));
            let park = Park::new();
            s.set_unparker(park.unparker());
            let s2 = s.clone();
            let partner = std::thread::spawn(move || {
                assert!(s2.claim());
                // SAFETY: between our successful claim and our completion.
                unsafe { s2.put(1, Box::new(99u64)) };
                s2.complete(1);
            });
            if s.outcome() == Outcome::Waiting {
                assert_eq!(park.wait("commit test"), Wake::Unparked);
            }
            assert_eq!(s.outcome(), Outcome::Synched(1));
            assert_eq!(value(&s, 1), Some(99), "the received value");
            assert_eq!(value(&s, 0), Some(7), "the send offer that was not taken");
            joined(partner);

            // A partner that takes from a send offer leaves its slot empty.
            let s = SyncState::new([Some(Box::new(5u64) as Payload)].into_iter());
            assert!(s.claim());
            // SAFETY: between our successful claim and our completion.
            let taken = unsafe { s.take(0) };
            s.complete(0);
            assert_eq!(*taken.downcast::<u64>().unwrap(), 5);
            assert_eq!(s.outcome(), Outcome::Synched(0));
            assert_eq!(value(&s, 0), None);
        });
    }

    /// `complete` takes the unparker and wakes the syncer once; `abandon` takes nothing.
    #[test]
    fn complete_wakes_the_syncer_once_and_abandon_leaves_the_unparker() {
        within(20, || {
            let s = state(1);
            let park = Park::new();
            let u = park.unparker();
            s.set_unparker(u.clone());
            assert!(s.claim());
            s.complete(0);
            assert!(!u.is_pending(), "complete woke the syncer");
            assert!(s.take_unparker().is_none(), "complete took the unparker");
            assert_eq!(park.wait("commit test"), Wake::Unparked);

            let s = state(1);
            let park = Park::new();
            let u = park.unparker();
            s.set_unparker(u.clone());
            assert!(s.abandon());
            assert!(u.is_pending(), "abandon woke nobody");
            let back = s.take_unparker().expect("abandon leaves the unparker");
            assert!(back.same_waiter(&u));
            assert!(s.take_unparker().is_none());
        });
    }

    /// Threads racing `claim`, `commit_self` and `abandon` have one winner in every round.
    #[test]
    fn racing_ways_out_of_waiting_have_one_winner() {
        const ROUNDS: usize = 100_000;
        within(60, || {
            let states: Arc<Vec<SyncState>> = Arc::new((0..ROUNDS).map(|_| state(2)).collect());
            // A spinning barrier per round, so that the racers start their attempts together.
            let arrived = Arc::new(AtomicUsize::new(0));
            let racers: Vec<_> = (0..WAYS.len())
                .map(|racer| {
                    let (states, arrived) = (states.clone(), arrived.clone());
                    std::thread::spawn(move || {
                        let mut won = Vec::new();
                        for (round, s) in states.iter().enumerate() {
                            // Each racer takes each way in turn: whichever two threads the two
                            // cores run at a time, every pair of ways races.
                            let way = WAYS[(racer + round) % WAYS.len()];
                            arrived.fetch_add(1, Ordering::AcqRel);
                            let mut spins = 0u32;
                            while arrived.load(Ordering::Acquire) < WAYS.len() * (round + 1) {
                                spins += 1;
                                if spins < 200 {
                                    std::hint::spin_loop();
                                } else {
                                    std::thread::yield_now();
                                }
                            }
                            // A few pauses of varying length, so that the racers' attempts
                            // sometimes overlap to the instruction.
                            for _ in 0..(round * 7 + racer * 3) % 8 {
                                std::hint::spin_loop();
                            }
                            if attempt(s, way) {
                                if way == Way::Claim {
                                    // SAFETY: between our successful claim and our completion.
                                    unsafe { s.put(0, Box::new(round as u64)) };
                                    s.complete(0);
                                }
                                won.push((round, way));
                            }
                        }
                        won
                    })
                })
                .collect();
            let mut winner = vec![None; ROUNDS];
            for racer in racers {
                for (round, way) in joined(racer) {
                    if let Some(other) = winner[round].replace(way) {
                        panic!("round {round}: both {other:?} and {way:?} won");
                    }
                }
            }
            for (round, s) in states.iter().enumerate() {
                let way = winner[round].unwrap_or_else(|| panic!("round {round}: nobody won"));
                match (way, s.outcome()) {
                    (Way::Claim, Outcome::Synched(0)) => {
                        assert_eq!(value(s, 0), Some(round as u64), "round {round}")
                    }
                    (Way::CommitSelf, Outcome::Synched(1)) | (Way::Abandon, Outcome::Abandoned) => {
                    }
                    (way, outcome) => {
                        panic!("round {round}: {way:?} won, the word says {outcome:?}")
                    }
                }
            }
        });
    }
}
