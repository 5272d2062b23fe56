//! The park word: one `AtomicU64` per waiter (a task, or a plain OS thread), whose states are
//! the table of the park module's doc.
//!
//! ```text
//!  63                                   5 4        2 1     0
//! +--------------------------------------+----------+-------+
//! |              generation              |  reason  | state |
//! +--------------------------------------+----------+-------+
//! ```
//!
//! `reason` is written by whoever ends a generation (the [`Wake`] code: 1 unparked, 2 timed
//! out, 3 interrupted, 4 superseded). An unparker carries the generation it was made for, so a
//! stale one finds another generation and does nothing.
//!
//! Model-checked as it is, with loom (`loom_checks::park_word`): its atomics come from the
//! `util::atomic` shim.

use crate::util::atomic::{AtomicU64, Ordering};

const STATE_MASK: u64 = 0b11;
const IDLE: u64 = 0;
const ARMED: u64 = 1;
const REASON_SHIFT: u32 = 2;
const REASON_MASK: u64 = 0b111;
const GEN_SHIFT: u32 = 5;

/// Why a park ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Wake {
    /// An [`Unparker`](super::Unparker) woke the waiter.
    Unparked,
    /// The deadline passed first.
    TimedOut,
    /// The wait was given up: the task's runtime is ending and nothing ended the wait within
    /// the shutdown's grace (only waits for readiness or time are given up this way).
    Interrupted,
    /// The same task or thread armed a newer park before waiting on this one: a waiter has one
    /// live park at a time, and the newer one retired this one.
    Superseded,
}

impl Wake {
    fn code(self) -> u64 {
        match self {
            Wake::Unparked => 1,
            Wake::TimedOut => 2,
            Wake::Interrupted => 3,
            Wake::Superseded => 4,
        }
    }

    fn from_word(w: u64) -> Wake {
        match (w >> REASON_SHIFT) & REASON_MASK {
            2 => Wake::TimedOut,
            3 => Wake::Interrupted,
            4 => Wake::Superseded,
            _ => Wake::Unparked,
        }
    }
}

/// The atomic word of one waiter (see the park module's doc for its states).
pub(crate) struct ParkWord(AtomicU64);

impl ParkWord {
    pub(crate) fn new() -> Self {
        ParkWord(AtomicU64::new(0))
    }

    /// Step 1: announces a park; returns its generation. A park of this waiter that is still
    /// armed (made and not yet waited on or dropped) is superseded: its generation is retired,
    /// so its unparkers go stale and waiting on it returns [`Wake::Superseded`] at once.
    pub(crate) fn arm(&self) -> u64 {
        let mut w = self.0.load(Ordering::Relaxed);
        if w & STATE_MASK != IDLE {
            self.wake(w >> GEN_SHIFT, Wake::Superseded);
            w = self.0.load(Ordering::Relaxed);
        }
        let gen_ = w >> GEN_SHIFT;
        self.0.store(Self::armed(gen_), Ordering::Relaxed);
        gen_
    }

    fn armed(gen_: u64) -> u64 {
        gen_ << GEN_SHIFT | ARMED
    }

    /// Whether a park is armed (steps 4 and 6: a task whose word is not armed was woken).
    pub(crate) fn is_armed(&self) -> bool {
        self.0.load(Ordering::Acquire) & STATE_MASK == ARMED
    }

    /// Step 5: ends generation `gen_` with `why`. Returns whether this call ended it (false
    /// when the generation is stale or already ended).
    pub(crate) fn wake(&self, gen_: u64, why: Wake) -> bool {
        let mut w = self.0.load(Ordering::Acquire);
        loop {
            if w != Self::armed(gen_) {
                return false;
            }
            let next = (gen_ + 1) << GEN_SHIFT | why.code() << REASON_SHIFT | IDLE;
            match self
                .0
                .compare_exchange_weak(w, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return true,
                Err(now) => w = now,
            }
        }
    }

    /// Ends whatever generation is armed right now (a stop, a give-up at shutdown).
    pub(crate) fn wake_current(&self, why: Wake) -> bool {
        let w = self.0.load(Ordering::Acquire);
        w & STATE_MASK == ARMED && self.wake(w >> GEN_SHIFT, why)
    }

    /// Moves the word past an armed generation without waking anyone: called when a task ends,
    /// so that an unparker that outlives it can never reschedule it.
    pub(crate) fn retire(&self) {
        self.wake_current(Wake::Interrupted);
    }

    /// Whether the park that ended last ended by its deadline (the shutdown does not count a
    /// timer's wake-up as progress).
    pub(crate) fn last_timed_out(&self) -> bool {
        let w = self.0.load(Ordering::Acquire);
        w & STATE_MASK == IDLE && Wake::from_word(w) == Wake::TimedOut
    }

    /// The outcome of generation `gen_`, if it has ended: its reason while the word still
    /// shows its end, [`Wake::Superseded`] once a newer park has been armed over it.
    pub(crate) fn outcome(&self, gen_: u64) -> Option<Wake> {
        let w = self.0.load(Ordering::Acquire);
        if w == Self::armed(gen_) {
            None
        } else if w >> GEN_SHIFT == gen_ + 1 && w & STATE_MASK == IDLE {
            Some(Wake::from_word(w))
        } else {
            Some(Wake::Superseded)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One generation is ended exactly once: the first `wake` wins, later ones (of any reason)
    /// and wakes of other generations do nothing.
    #[test]
    fn a_generation_ends_once() {
        let w = ParkWord::new();
        let g = w.arm();
        assert!(w.is_armed());
        assert_eq!(w.outcome(g), None);
        assert!(
            !w.wake(g + 1, Wake::Unparked),
            "a future generation is not armed"
        );
        assert!(w.wake(g, Wake::TimedOut));
        assert!(!w.wake(g, Wake::Unparked), "ended already");
        assert!(!w.is_armed());
        assert_eq!(w.outcome(g), Some(Wake::TimedOut));
    }

    /// Arming again moves to the next generation: an unparker of the old one is stale.
    #[test]
    fn rearming_makes_old_unparkers_stale() {
        let w = ParkWord::new();
        let g0 = w.arm();
        assert!(w.wake(g0, Wake::Unparked));
        let g1 = w.arm();
        assert_ne!(g0, g1);
        assert!(
            !w.wake(g0, Wake::Unparked),
            "a stale generation wakes nothing"
        );
        assert_eq!(w.outcome(g1), None);
        assert!(w.wake(g1, Wake::Unparked));
    }

    /// Arming while a park is still armed supersedes it: its outcome is `Superseded`, and its
    /// unparkers no longer wake anything.
    #[test]
    fn arming_over_an_armed_park_supersedes_it() {
        let w = ParkWord::new();
        let g0 = w.arm();
        let g1 = w.arm();
        assert_ne!(g0, g1);
        assert_eq!(w.outcome(g0), Some(Wake::Superseded));
        assert!(!w.wake(g0, Wake::Unparked));
        assert_eq!(w.outcome(g1), None, "the newer park is armed");
    }

    /// `wake_current` ends the armed generation, and does nothing on an idle word; `retire`
    /// leaves the word idle so that no later unparker of that generation wakes anything.
    #[test]
    fn wake_current_and_retire() {
        let w = ParkWord::new();
        assert!(!w.wake_current(Wake::Interrupted), "nothing armed");
        let g = w.arm();
        assert!(w.wake_current(Wake::Interrupted));
        assert_eq!(w.outcome(g), Some(Wake::Interrupted));
        let g = w.arm();
        w.retire();
        assert!(!w.is_armed());
        assert!(!w.wake(g, Wake::Unparked));
    }

    /// Every reason survives the round trip through the word.
    #[test]
    fn reasons_round_trip() {
        for why in [
            Wake::Unparked,
            Wake::TimedOut,
            Wake::Interrupted,
            Wake::Superseded,
        ] {
            let w = ParkWord::new();
            let g = w.arm();
            assert!(w.wake(g, why));
            assert_eq!(w.outcome(g), Some(why));
        }
    }

    /// Two threads racing to end one generation: exactly one wins, every time.
    #[test]
    fn racing_wakers_have_one_winner() {
        use std::sync::Arc;
        for _ in 0..2000 {
            let w = Arc::new(ParkWord::new());
            let g = w.arm();
            let w2 = w.clone();
            let other = std::thread::spawn(move || w2.wake(g, Wake::TimedOut));
            let mine = w.wake(g, Wake::Unparked);
            let theirs = other.join().unwrap();
            assert!(mine ^ theirs, "exactly one waker wins");
        }
    }
}
