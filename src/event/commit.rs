//! The commit point of a blocking sync: one atomic state word, and the value slots of its
//! leaves ([`Slot`], one in each channel and `always` leaf).
//!
//! | state     | meaning                                                          | who leaves it, to what |
//! |-----------|------------------------------------------------------------------|------------------------|
//! | WAITING   | offers are registered, nothing chosen                            | a channel partner: -> CLAIMED; the syncer itself (timer, join, nack, readiness, signal ready): -> SYNCHED(leaf); the syncer when interrupted: -> ABANDONED |
//! | CLAIMED   | a partner won and is moving the value in or out of the slot      | that partner: -> SYNCHED(leaf) |
//! | SYNCHED k | leaf `k` committed; its slot holds the received value, if any    | nobody                 |
//! | ABANDONED | the syncer gave up (cancelled); its offers are dead              | nobody                 |
//! | BUSY      | the syncer is replacing its unparker (a few instructions, no switch) | the syncer: -> WAITING |
//!
//! Every source commits only through a CAS from WAITING, so exactly one leaf commits. A partner
//! goes through CLAIMED so the value is in place (or taken) and the syncer woken before SYNCHED
//! is visible: the syncer, woken for any reason, waits out a CLAIMED word before it reads its
//! slot, and SYNCHED is the partner's last touch of the state.
//!
//! A partner's commit, step by step (under the lock of the channel whose queue held the offer):
//!
//! 1. [`SyncState::claim`]: CAS WAITING -> CLAIMED; on BUSY, spin until the syncer is done
//!    and try again; on anything else the offer is stale (skip it).
//! 2. Still in `claim`, take the syncer's unparker. If the syncer is a task the shutdown
//!    abandoned, give up: the word stays CLAIMED for good (nobody will ever look at it again;
//!    the sync's other offers are stale from now on) and nothing is moved, so nothing is lost.
//! 3. Move the value into the receive leaf's slot ([`Slot::put`]) or out of the send leaf's
//!    slot ([`Slot::take`]).
//! 4. [`SyncState::complete`]: wake the syncer with the unparker taken in step 2, then store
//!    SYNCHED(leaf) (release). That store is the partner's last touch of the state.
//!
//! The state lives in the syncer's frame (see `sync.rs`): it is alive for a partner because the
//! syncer removes its offers from every channel, under each channel's lock, before that frame
//! ends, and because a claimed sync's syncer waits for SYNCHED before it does so.
//!
//! The unparker needs no lock of its own: the syncer writes it before any offer is visible
//! ([`SyncState::set_unparker_unpublished`], published by the channel locks), or later only
//! inside a BUSY window ([`SyncState::set_unparker`]: WAITING -> BUSY, write, release store of
//! WAITING), and a partner reads it only after its claim, which acquires the word. Rejected
//! alternative: a spin lock around it, two more atomic read-modify-writes per blocked sync.
//!
//! The word's transitions are [`CommitWord`], which the loom checks (`loom_checks::commit`) run
//! as it is, with the unparker, the slots and the syncer's loop modelled.

use std::cell::UnsafeCell;

use super::payload::Payload;
use crate::sched::park::Unparker;
// The word's atomics and its spin wait come from the loom shim: `CommitWord` is model-checked
// as it is (`crate::loom_checks::commit`).
use crate::util::atomic::{AtomicU64, Ordering, spin};

/// Leaves a sync keeps inline in its frame (more are allocated).
pub(crate) const INLINE_LEAVES: usize = 4;

const WAITING: u64 = 0;
const CLAIMED: u64 = 1;
const SYNCHED: u64 = 2;
const ABANDONED: u64 = 3;
const TAG: u64 = 0b11;
const LEAF_SHIFT: u32 = 2;
/// A CLAIMED tag with a payload no partner's claim has: the syncer's own short window.
const BUSY: u64 = CLAIMED | 1 << LEAF_SHIFT;

/// Where the syncer stands, as seen by [`SyncState::outcome`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Waiting,
    Synched(usize),
    Abandoned,
}

/// One sync: its state word and how to wake it. (The value slots are in the leaves.)
pub(crate) struct SyncState {
    word: CommitWord,
    unparker: UnparkerCell,
}

/// The commit word alone (the module doc's table), with every transition of it: what
/// [`SyncState`] does to its word, apart from the unparker and the slots it guards. Kept apart
/// so that the model checks run this very code under loom.
pub(crate) struct CommitWord(AtomicU64);

impl CommitWord {
    /// A word in WAITING.
    pub(crate) fn new() -> CommitWord {
        CommitWord(AtomicU64::new(WAITING))
    }

    /// Whether the sync still waits (WAITING or BUSY).
    #[inline]
    pub(crate) fn is_waiting(&self) -> bool {
        matches!(self.0.load(Ordering::Acquire), WAITING | BUSY)
    }

    /// A partner's step 1: WAITING -> CLAIMED, waiting out the syncer's BUSY window; false if
    /// the word has left WAITING for good (a stale offer). The successful CAS acquires what the
    /// syncer released (its unparker, its send slot).
    #[inline]
    pub(crate) fn claim(&self) -> bool {
        let mut spins = 0u32;
        loop {
            match self.0.compare_exchange_weak(
                WAITING,
                CLAIMED,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return true,
                // The syncer is replacing its unparker on its own thread: a few instructions.
                Err(BUSY | WAITING) => spin(&mut spins),
                Err(_) => return false,
            }
        }
    }

    /// A partner's last step: CLAIMED -> SYNCHED(leaf) (release: the slot's new content goes
    /// with it). The partner's last touch of the word.
    #[inline]
    pub(crate) fn synched(&self, leaf: usize) {
        self.0
            .store(SYNCHED | (leaf as u64) << LEAF_SHIFT, Ordering::Release);
    }

    /// The syncer commits one of its own leaves: WAITING -> SYNCHED(leaf).
    pub(crate) fn commit_self(&self, leaf: usize) -> bool {
        let synched = SYNCHED | (leaf as u64) << LEAF_SHIFT;
        self.0
            .compare_exchange(WAITING, synched, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// The syncer gives up: WAITING -> ABANDONED; false if something committed first.
    pub(crate) fn abandon(&self) -> bool {
        self.0
            .compare_exchange(WAITING, ABANDONED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Where the sync stands; waits out a partner's CLAIMED window.
    pub(crate) fn outcome(&self) -> Outcome {
        let mut spins = 0u32;
        loop {
            let w = self.0.load(Ordering::Acquire);
            match w & TAG {
                WAITING => return Outcome::Waiting,
                SYNCHED => return Outcome::Synched((w >> LEAF_SHIFT) as usize),
                ABANDONED => return Outcome::Abandoned,
                // A partner is between its claim and its completion.
                _ => spin(&mut spins),
            }
        }
    }

    /// The syncer opens its BUSY window (WAITING -> BUSY), keeping partners out of its
    /// unparker; false if the word has left WAITING.
    pub(crate) fn enter_busy(&self) -> bool {
        self.0
            .compare_exchange(WAITING, BUSY, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    /// The syncer closes its BUSY window: BUSY -> WAITING (release: a partner's claim then sees
    /// what the syncer wrote inside the window).
    pub(crate) fn leave_busy(&self) {
        self.0.store(WAITING, Ordering::Release);
    }
}

/// The syncer's unparker. Who may touch it is fixed by the commit word (module doc): the
/// syncer before its offers are visible, inside a BUSY window, and once the word has settled;
/// a partner after its successful claim.
struct UnparkerCell(UnsafeCell<Option<Unparker>>);

// SAFETY: accesses are serialised by the commit word as described on `UnparkerCell` (the claim
// CAS acquires what the syncer released, by the channel locks or the store ending BUSY).
unsafe impl Sync for UnparkerCell {}

/// What a partner holds between its successful [`SyncState::claim`] and its
/// [`SyncState::complete`]: the syncer's unparker (none if the syncer has not set one yet: it
/// looks at the word after setting it).
pub(crate) struct Claim(Option<Unparker>);

/// A leaf's value slot: the value a send (or `always`) leaf offers, or the place a receive leaf
/// gets its value. Who may touch it is fixed by the commit word of its sync, so it needs no lock
/// of its own: the syncer, before its offers are visible and after the word has settled
/// (SYNCHED or ABANDONED, a CLAIMED window waited out); a partner, between its successful
/// [`SyncState::claim`] and its [`SyncState::complete`].
pub(crate) struct Slot(UnsafeCell<Option<Payload>>);

// SAFETY: accesses are serialised by the commit word as described on `Slot` (the claim CAS and
// the release store of SYNCHED order the partner's access against the syncer's); a payload is
// `Send`.
unsafe impl Sync for Slot {}

impl Slot {
    /// A slot holding `value`.
    pub(crate) fn new(value: Option<Payload>) -> Slot {
        Slot(UnsafeCell::new(value))
    }

    /// The slot's content.
    ///
    /// # Safety
    ///
    /// The caller has the access right described on [`Slot`].
    #[allow(clippy::mut_from_ref)]
    #[inline]
    pub(crate) unsafe fn get(&self) -> &mut Option<Payload> {
        // SAFETY: forwarded to the caller.
        unsafe { &mut *self.0.get() }
    }

    /// Moves a value into a receive leaf's slot.
    ///
    /// # Safety
    ///
    /// Only after a successful [`SyncState::claim`] of the slot's sync, before
    /// [`SyncState::complete`].
    #[inline]
    pub(crate) unsafe fn put(&self, value: Payload) {
        // SAFETY: the claim gives us the slot until `complete`.
        unsafe { *self.get() = Some(value) };
    }

    /// Takes the value out of a send leaf's slot.
    ///
    /// # Safety
    ///
    /// As [`Slot::put`].
    #[inline]
    pub(crate) unsafe fn take(&self) -> Payload {
        // SAFETY: the claim gives us the slot until `complete`.
        unsafe { self.get() }
            .take()
            .expect("a send offer holds its value until it commits")
    }
}

impl SyncState {
    pub(crate) fn new() -> SyncState {
        SyncState {
            word: CommitWord::new(),
            unparker: UnparkerCell(UnsafeCell::new(None)),
        }
    }

    /// Whether the sync still waits (offers of a sync that does not are stale).
    #[inline]
    pub(crate) fn is_waiting(&self) -> bool {
        self.word.is_waiting()
    }

    /// A partner's steps 1 and 2: WAITING -> CLAIMED, and the syncer's unparker. `None` if the
    /// offer is stale, or if its syncer is a task the shutdown abandoned (whatever it would
    /// receive would be lost): the caller skips it. On success the caller owns the sync's slots
    /// until it calls [`SyncState::complete`].
    #[inline]
    pub(crate) fn claim(&self) -> Option<Claim> {
        if !self.word.claim() {
            return None;
        }
        // SAFETY: our claim gives us the unparker (see `UnparkerCell`).
        let unparker = unsafe { (*self.unparker.0.get()).take() };
        if unparker.as_ref().is_some_and(Unparker::is_dead) {
            return None;
        }
        Some(Claim(unparker))
    }

    /// A partner's step 4: wakes the syncer, then CLAIMED -> SYNCHED(leaf).
    ///
    /// Waking comes first, so SYNCHED is the partner's last touch of the state: a syncer that
    /// sees it may end its frame at once. A syncer woken before it sees CLAIMED turn into
    /// SYNCHED waits the short window out in `outcome`.
    #[inline]
    pub(crate) fn complete(&self, leaf: usize, claim: Claim) {
        if let Some(u) = claim.0 {
            u.unpark();
        }
        crate::sched::perturb::os_point();
        self.word.synched(leaf);
    }

    /// The syncer commits one of its own leaves (a timer, a join, a nack, a readiness or a
    /// signal leaf became ready).
    pub(crate) fn commit_self(&self, leaf: usize) -> bool {
        self.word.commit_self(leaf)
    }

    /// The syncer gives up (it was interrupted): false if something committed first.
    pub(crate) fn abandon(&self) -> bool {
        self.word.abandon()
    }

    /// Where the sync stands; waits out a partner's CLAIMED window.
    pub(crate) fn outcome(&self) -> Outcome {
        self.word.outcome()
    }

    /// Sets the unparker a committing partner wakes, before any offer of the sync is visible.
    ///
    /// # Safety
    ///
    /// Only by the syncer, before it registers its first offer.
    pub(crate) unsafe fn set_unparker_unpublished(&self, u: Unparker) {
        // SAFETY: nobody else can reach the state yet (the caller's contract). The first and
        // only unparker of a fresh state: a write, with nothing to read or drop before it.
        unsafe {
            debug_assert!((*self.unparker.0.get()).is_none());
            self.unparker.0.get().write(Some(u));
        }
    }

    /// Replaces the unparker a committing partner wakes, while offers may be visible: inside a
    /// BUSY window. Only the syncer calls it. False (nothing set) if the word has left WAITING:
    /// something committed; the syncer re-reads the word afterwards either way, so a committer
    /// that took an older unparker (now stale) is never missed.
    pub(crate) fn set_unparker(&self, u: Unparker) -> bool {
        if !self.word.enter_busy() {
            return false;
        }
        // SAFETY: BUSY keeps partners out of the unparker (see `UnparkerCell`).
        let old = unsafe { (*self.unparker.0.get()).replace(u) };
        self.word.leave_busy();
        // Dropped after the window (a counted unparker's last reference may go here).
        drop(old);
        true
    }

    /// Takes the unparker back once the sync has settled (abandoned by us, or SYNCHED: a
    /// partner takes it as it claims). The syncer needs no such call: the unparker goes with
    /// the state.
    #[cfg(test)]
    pub(crate) fn take_unparker(&self) -> Option<Unparker> {
        assert!(!self.is_waiting(), "only once the word has settled");
        // SAFETY: settled: no partner touches the unparker any more.
        unsafe { (*self.unparker.0.get()).take() }
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

    /// A sync and its leaves' slots, as a syncer's frame holds them.
    struct Frame {
        sync: SyncState,
        slots: Vec<Slot>,
    }

    impl std::ops::Deref for Frame {
        type Target = SyncState;
        fn deref(&self) -> &SyncState {
            &self.sync
        }
    }

    /// A sync whose leaves' slots hold `values`.
    fn frame(values: impl IntoIterator<Item = Option<Payload>>) -> Frame {
        Frame {
            sync: SyncState::new(),
            slots: values.into_iter().map(Slot::new).collect(),
        }
    }

    /// A sync with `n` empty slots.
    fn state(n: usize) -> Frame {
        frame((0..n).map(|_| None))
    }

    /// Tries `way` out of WAITING: whether it won, with a winning claim (the word is left
    /// CLAIMED until the caller completes it).
    fn attempt(s: &SyncState, way: Way) -> (bool, Option<Claim>) {
        match way {
            Way::Claim => match s.claim() {
                Some(c) => (true, Some(c)),
                None => (false, None),
            },
            Way::CommitSelf => (s.commit_self(1), None),
            Way::Abandon => (s.abandon(), None),
        }
    }

    /// The value a slot holds, as a `u64`.
    fn value(s: &Frame, leaf: usize) -> Option<u64> {
        // SAFETY: the callers have seen `outcome` settle (SYNCHED or ABANDONED).
        let v = unsafe { s.slots[leaf].get() }.take()?;
        Some(v.downcast::<u64>().expect("the tests' values are u64"))
    }

    /// From WAITING the first of `claim`, `commit_self`, `abandon` wins; the others then fail.
    #[test]
    fn exactly_one_way_out_of_waiting_wins() {
        within(20, || {
            for first in WAYS {
                let s = state(2);
                let (won, claim) = attempt(&s, first);
                assert!(won, "{first:?} from WAITING");
                for other in WAYS {
                    assert!(!attempt(&s, other).0, "{other:?} after {first:?}");
                }
                if let Some(claim) = claim {
                    s.complete(0, claim);
                    for other in WAYS {
                        assert!(!attempt(&s, other).0, "{other:?} after a completed claim");
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
            let claim = s.claim().expect("claimed from WAITING");
            assert!(!s.is_waiting(), "CLAIMED");
            s.complete(0, claim);
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
                let claim = s2.claim().expect("claimed from WAITING");
                claimed2.wait();
                // Make it likely that the syncer looks while the word is CLAIMED.
                std::thread::sleep(Duration::from_millis(30));
                // SAFETY: between our successful claim and our completion.
                unsafe { s2.slots[0].put(Payload::new(42u64)) };
                s2.complete(0, claim);
            });
            claimed.wait();
            assert!(!s.is_waiting());
            assert_eq!(s.outcome(), Outcome::Synched(0));
            assert_eq!(value(&s, 0), Some(42));
            joined(partner);
        });
    }

    /// A woken syncer reads the partner's value from its slot once `outcome` says `Synched`.
    #[test]
    fn a_partners_value_is_read_back_once_synched() {
        within(20, || {
            // Leaf 0 offers to send 7; leaf 1 offers to receive.
            let s = Arc::new(frame([Some(Payload::new(7u64)), None]));
            let park = Park::new();
            s.set_unparker(park.unparker());
            let s2 = s.clone();
            let partner = std::thread::spawn(move || {
                let claim = s2.claim().expect("claimed from WAITING");
                // SAFETY: between our successful claim and our completion.
                unsafe { s2.slots[1].put(Payload::new(99u64)) };
                s2.complete(1, claim);
            });
            if s.outcome() == Outcome::Waiting {
                assert_eq!(park.wait("commit test"), Wake::Unparked);
            }
            assert_eq!(s.outcome(), Outcome::Synched(1));
            assert_eq!(value(&s, 1), Some(99), "the received value");
            assert_eq!(value(&s, 0), Some(7), "the send offer that was not taken");
            joined(partner);

            // A partner that takes from a send offer leaves its slot empty.
            let s = frame([Some(Payload::new(5u64))]);
            let claim = s.claim().expect("claimed from WAITING");
            // SAFETY: between our successful claim and our completion.
            let taken = unsafe { s.slots[0].take() };
            s.complete(0, claim);
            assert_eq!(taken.downcast::<u64>().ok(), Some(5));
            assert_eq!(s.outcome(), Outcome::Synched(0));
            assert_eq!(value(&s, 0), None);
        });
    }

    /// `claim` takes the unparker and `complete` wakes the syncer once; `abandon` takes nothing.
    #[test]
    fn complete_wakes_the_syncer_once_and_abandon_leaves_the_unparker() {
        within(20, || {
            let s = state(1);
            let park = Park::new();
            let u = park.unparker();
            s.set_unparker(u.clone());
            let claim = s.claim().expect("claimed from WAITING");
            assert!(s.take_unparker().is_none(), "the claim took the unparker");
            s.complete(0, claim);
            assert!(!u.is_pending(), "complete woke the syncer");
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
            let states: Arc<Vec<Frame>> = Arc::new((0..ROUNDS).map(|_| state(2)).collect());
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
                            let (this_won, claim) = attempt(s, way);
                            if this_won {
                                if let Some(claim) = claim {
                                    // SAFETY: between our successful claim and our completion.
                                    unsafe { s.slots[0].put(Payload::new(round as u64)) };
                                    s.complete(0, claim);
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
