//! The CML commit word (`event::commit`'s module doc), as it is: the real [`CommitWord`],
//! with the syncer's unparker cell and a receive leaf's value slot modelled as loom cells (so
//! that an access the word does not order is reported as a data race), the channel's lock as a
//! lock, and the syncer's parks as the real park word of a plain thread. The syncer's side
//! follows `event::sync`'s `wait_commit` and `settle` (a fresh park per round, its unparker set
//! inside a BUSY window, then a look at the word and at its own leaves before parking); the
//! partner's follows `SyncState::{claim, complete}`. Keep in step with those.

use loom::cell::UnsafeCell;
use loom::sync::atomic::AtomicBool;
use loom::sync::{Arc, Mutex};
use loom::thread;

use super::{Parker, model, wait_thread};
use crate::event::commit::{CommitWord, Outcome};
use crate::sched::park::{ParkWord, Wake};
use crate::util::atomic::Ordering;

/// A blocked sync with a receive leaf (0, on a channel) and a join leaf (1).
struct Syncer {
    word: CommitWord,
    /// The generation of the syncer's current park (its unparker).
    unparker: UnsafeCell<Option<u64>>,
    slot: UnsafeCell<Option<u32>>,
    park: ParkWord,
    parker: Arc<Parker>,
    /// The channel's lock, and whether the sync's offer is in its queue.
    offer: Mutex<bool>,
    /// The joined task has finished (what the join leaf waits for).
    finished: AtomicBool,
    /// The join leaf's waiter list (the task's joiners, under its lock).
    joiners: Mutex<Vec<u64>>,
}

impl Syncer {
    fn new() -> Syncer {
        Syncer {
            word: CommitWord::new(),
            unparker: UnsafeCell::new(None),
            slot: UnsafeCell::new(None),
            park: ParkWord::new(),
            parker: Parker::new(),
            offer: Mutex::new(false),
            finished: AtomicBool::new(false),
            joiners: Mutex::new(Vec::new()),
        }
    }

    fn unpark(&self, g: u64) {
        if self.park.wake(g, Wake::Unparked) {
            self.parker.unpark();
        }
    }

    /// A partner's commit, steps 1-4, under the channel lock: whether it delivered `value`.
    fn partner_sends(&self, value: u32) -> bool {
        let offer = self.offer.lock().unwrap();
        if !*offer || !self.word.claim() {
            return false;
        }
        // SAFETY: (model) the claim gives the partner the unparker (step 2).
        let u = self.unparker.with_mut(|p| unsafe { (*p).take() });
        // SAFETY: (model) and the slot (step 3), until SYNCHED.
        self.slot.with_mut(|p| unsafe { *p = Some(value) });
        // Step 4: wake, then SYNCHED, the partner's last touch.
        if let Some(g) = u {
            self.unpark(g);
        }
        self.word.synched(0);
        true
    }

    /// The joined task ends: it marks itself finished, then wakes its joiners.
    fn task_ends(&self) {
        self.finished.store(true, Ordering::Release);
        for g in std::mem::take(&mut *self.joiners.lock().unwrap()) {
            self.unpark(g);
        }
    }

    /// `settle`: the word, then the syncer's own leaf (committed by the syncer itself).
    fn settle(&self) -> Option<usize> {
        if let Outcome::Synched(k) = self.word.outcome() {
            return Some(k);
        }
        if self.finished.load(Ordering::Acquire) && self.word.commit_self(1) {
            return Some(1);
        }
        match self.word.outcome() {
            Outcome::Synched(k) => Some(k),
            _ => None,
        }
    }

    /// The syncer, from its first park to the commit (`wait_commit`'s loop).
    fn sync(&self) -> usize {
        // The first park's unparker is set before the offer is visible.
        let mut g = self.park.arm();
        // SAFETY: (model) nobody can reach the state yet.
        self.unparker.with_mut(|p| unsafe { *p = Some(g) });
        *self.offer.lock().unwrap() = true;
        loop {
            self.joiners.lock().unwrap().push(g);
            if let Some(k) = self.settle() {
                // The park is dropped: its generation retired.
                self.park.wake(g, Wake::Superseded);
                return k;
            }
            wait_thread(&self.park, g, &self.parker);
            // The next round's park, its unparker replaced inside a BUSY window.
            g = self.park.arm();
            if self.word.enter_busy() {
                // SAFETY: (model) BUSY keeps partners out of the unparker.
                self.unparker.with_mut(|p| unsafe { *p = Some(g) });
                self.word.leave_busy();
            }
        }
    }
}

/// A partner and the syncer's own join leaf race to commit one sync, while the syncer parks,
/// wakes and replaces its unparker: exactly one commits, the syncer always learns it (no lost
/// wake-up: loom would report the deadlock), and a received value is in the slot when the
/// syncer reads it (no data race).
#[test]
fn loom_commit_word_partner_or_own_leaf_commits_once() {
    model(|| {
        let s = Arc::new(Syncer::new());
        let partner = {
            let s = s.clone();
            thread::spawn(move || s.partner_sends(42))
        };
        let joinee = {
            let s = s.clone();
            thread::spawn(move || s.task_ends())
        };
        let k = s.sync();
        // Read at once, as the syncer does: SYNCHED (acquired by `outcome`) publishes it.
        // SAFETY: (model) the word has settled.
        let value = s.slot.with_mut(|p| unsafe { (*p).take() });
        let delivered = partner.join().unwrap();
        joinee.join().unwrap();
        assert_eq!(
            delivered,
            k == 0,
            "the partner delivered iff leaf 0 committed"
        );
        assert_eq!(
            value,
            (k == 0).then_some(42),
            "the value is in the slot iff received"
        );
        assert_eq!(s.word.outcome(), Outcome::Synched(k));
    });
}

/// A stopped syncer abandons its sync while a partner commits it: exactly one of them wins the
/// word; if the partner did, its value is the syncer's (the commit stands), else the partner
/// still holds it.
#[test]
fn loom_commit_word_abandon_or_commit() {
    model(|| {
        let s = Arc::new(Syncer::new());
        let g = s.park.arm();
        // SAFETY: (model) nobody can reach the state yet.
        s.unparker.with_mut(|p| unsafe { *p = Some(g) });
        *s.offer.lock().unwrap() = true;
        let partner = {
            let s = s.clone();
            thread::spawn(move || s.partner_sends(42))
        };
        // The stop: abandon unless something committed first, then wait out a claim.
        let abandoned = s.word.abandon();
        let outcome = s.word.outcome();
        // SAFETY: (model) settled: `outcome` waited out the partner's window.
        let value = (!abandoned).then(|| s.slot.with_mut(|p| unsafe { (*p).take() }));
        let delivered = partner.join().unwrap();
        assert_ne!(abandoned, delivered, "exactly one wins the word");
        if abandoned {
            assert_eq!(outcome, Outcome::Abandoned);
        } else {
            assert_eq!(outcome, Outcome::Synched(0));
            assert_eq!(value, Some(Some(42)), "the committed value is the syncer's");
        }
    });
}
