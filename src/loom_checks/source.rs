//! The receive offers of an `mpsc` channel in a CML sync (`sync::mpsc`'s "Receives as events",
//! `event::source`), as a model: the real [`CommitWord`] and park word, the channel's lock as
//! a lock around its buffer and its queued offer, the syncer's unparker and the leaf's value
//! slot as loom cells. The syncer follows `event::sync` for a sync with a source leaf (leaf 0)
//! and a timer-like leaf of its own (leaf 1): the attempt, the offer with its re-check (step 2:
//! commit its own leaf if the channel became ready), the general wait loop, then the take-back
//! (step 4). The sender follows `State::hand_to_offer` (step 3). Keep in step with those.

use loom::cell::UnsafeCell;
use loom::sync::atomic::AtomicBool;
use loom::sync::{Arc, Mutex};
use loom::thread;

use super::{Parker, model, wait_thread};
use crate::event::commit::{CommitWord, Outcome};
use crate::sched::park::{ParkWord, Wake};
use crate::util::atomic::Ordering;

/// What the channel's lock guards: its buffer and whether the sync's offer is queued.
#[derive(Default)]
struct Chan {
    buffer: Option<u32>,
    offer: bool,
}

/// A blocked sync with a receive leaf (0) on an mpsc channel and a leaf of its own (1).
struct Syncer {
    word: CommitWord,
    unparker: UnsafeCell<Option<u64>>,
    slot: UnsafeCell<Option<u32>>,
    park: ParkWord,
    parker: Arc<Parker>,
    chan: Mutex<Chan>,
    /// The syncer's own leaf is ready (a timer that expired).
    fired: AtomicBool,
    /// That leaf's waiters (the timer's unparkers).
    waiters: Mutex<Vec<u64>>,
}

impl Syncer {
    fn new() -> Syncer {
        Syncer {
            word: CommitWord::new(),
            unparker: UnsafeCell::new(None),
            slot: UnsafeCell::new(None),
            park: ParkWord::new(),
            parker: Parker::new(),
            chan: Mutex::new(Chan::default()),
            fired: AtomicBool::new(false),
            waiters: Mutex::new(Vec::new()),
        }
    }

    fn unpark(&self, g: u64) {
        if self.park.wake(g, Wake::Unparked) {
            self.parker.unpark();
        }
    }

    /// A send (step 3), under the channel's lock: the queued offer, if its claim succeeds,
    /// gets the value (moved in, syncer woken, SYNCHED stored); else the value is buffered.
    fn send(&self, value: u32) {
        let mut chan = self.chan.lock().unwrap();
        if std::mem::take(&mut chan.offer) && self.word.claim() {
            // SAFETY: (model) the claim gives the sender the unparker and the slot.
            let u = self.unparker.with_mut(|p| unsafe { (*p).take() });
            // SAFETY: (model) as above, until SYNCHED.
            self.slot.with_mut(|p| unsafe { *p = Some(value) });
            if let Some(g) = u {
                self.unpark(g);
            }
            self.word.synched(0);
            return;
        }
        chan.buffer = Some(value);
    }

    /// The syncer's own leaf becomes ready: it wakes the leaf's waiters.
    fn fire(&self) {
        self.fired.store(true, Ordering::Release);
        for g in std::mem::take(&mut *self.waiters.lock().unwrap()) {
            self.unpark(g);
        }
    }

    /// `settle`: the word, then the syncer's own leaf.
    fn settle(&self) -> Option<usize> {
        if let Outcome::Synched(k) = self.word.outcome() {
            return Some(k);
        }
        if self.fired.load(Ordering::Acquire) && self.word.commit_self(1) {
            return Some(1);
        }
        match self.word.outcome() {
            Outcome::Synched(k) => Some(k),
            _ => None,
        }
    }

    /// The syncer: attempt, offer (step 2), the wait loop, take-back (step 4). Returns the
    /// committed leaf.
    fn sync(&self) -> usize {
        // Attempt: a buffered value completes the receive at once.
        if let Some(v) = self.chan.lock().unwrap().buffer.take() {
            // SAFETY: (model) no offer is visible: the slot is ours.
            self.slot.with_mut(|p| unsafe { *p = Some(v) });
            return 0;
        }
        if self.fired.load(Ordering::Acquire) {
            return 1;
        }
        // Step 2: the offer, or our own commit if the channel became ready meanwhile.
        {
            let mut chan = self.chan.lock().unwrap();
            match chan.buffer.take() {
                Some(v) => {
                    assert!(self.word.commit_self(0), "nothing else can commit yet");
                    // SAFETY: (model) settled by our own commit: the slot is ours.
                    self.slot.with_mut(|p| unsafe { *p = Some(v) });
                }
                None => chan.offer = true,
            }
        }
        let k = loop {
            let g = self.park.arm();
            if self.word.enter_busy() {
                // SAFETY: (model) BUSY keeps senders out of the unparker.
                self.unparker.with_mut(|p| unsafe { *p = Some(g) });
                self.word.leave_busy();
            }
            self.waiters.lock().unwrap().push(g);
            if let Some(k) = self.settle() {
                self.park.wake(g, Wake::Superseded);
                break k;
            }
            wait_thread(&self.park, g, &self.parker);
        };
        // Step 4: the offer still queued is taken back under the channel's lock.
        self.chan.lock().unwrap().offer = false;
        k
    }
}

/// A send races the syncer's offer (and its re-check) and the syncer's own leaf: exactly one
/// leaf commits, the syncer always learns it (no lost wake-up), and the value is received once
/// (in the slot, leaf 0) or left in the channel for the next receive (leaf 1), never both,
/// never lost.
#[test]
fn loom_source_offer_takes_the_value_once_or_leaves_it() {
    model(|| {
        let s = Arc::new(Syncer::new());
        let sender = {
            let s = s.clone();
            thread::spawn(move || s.send(42))
        };
        let timer = {
            let s = s.clone();
            thread::spawn(move || s.fire())
        };
        let k = s.sync();
        // SAFETY: (model) the word has settled, or the attempt took the value itself.
        let received = s.slot.with_mut(|p| unsafe { (*p).take() });
        sender.join().unwrap();
        timer.join().unwrap();
        let left = s.chan.lock().unwrap().buffer.take();
        match k {
            0 => assert_eq!((received, left), (Some(42), None), "received once"),
            _ => assert_eq!(
                (received, left),
                (None, Some(42)),
                "left for the next receive"
            ),
        }
    });
}

/// With no other leaf, a send racing the syncer's attempt and offer always ends the sync with
/// the value received: a value buffered between the attempt and the offer is taken by the
/// offer's re-check (step 2), never left in the buffer while the syncer sleeps (loom would
/// report the deadlock).
#[test]
fn loom_source_offer_recheck_loses_no_wake_up() {
    model(|| {
        let s = Arc::new(Syncer::new());
        let sender = {
            let s = s.clone();
            thread::spawn(move || s.send(7))
        };
        let k = s.sync();
        // SAFETY: (model) the word has settled, or the attempt took the value itself.
        let received = s.slot.with_mut(|p| unsafe { (*p).take() });
        sender.join().unwrap();
        assert_eq!(k, 0);
        assert_eq!(received, Some(7));
        assert_eq!(s.chan.lock().unwrap().buffer, None);
    });
}
