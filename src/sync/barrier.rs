//! `Barrier`, like `std::sync::Barrier`: the arrival count and the wait list under one spin lock;
//! the last to arrive opens it, wakes every waiter and is the leader. A waiter stopped before
//! the opening takes its arrival back as it leaves (the wait queue's `withdraw` hook). The
//! opening is handed over to every waiter at once (nothing is left to compete for), so the
//! locks' barging rule (`raw.rs`) has nothing to change here.

use crate::sched::park::Wait;
use crate::sched::waitqueue::{WaitIn, WaitList, Woken};
use crate::util::SpinLock;

struct BarrierState {
    arrived: usize,
    /// How many times the barrier has opened.
    generation: u64,
    queue: WaitList,
}

/// A barrier for `n` tasks, like `std::sync::Barrier`.
///
/// ```
/// use std::sync::Arc;
/// bobine::run(|| {
///     let b = Arc::new(bobine::sync::Barrier::new(3));
///     let hs: Vec<_> = (0..3).map(|_| {
///         let b = b.clone();
///         bobine::thread::spawn(move || b.wait().is_leader())
///     }).collect();
///     let leaders = hs.into_iter().map(|h| h.join().unwrap()).filter(|l| *l).count();
///     assert_eq!(leaders, 1);
/// });
/// ```
pub struct Barrier {
    n: usize,
    state: SpinLock<BarrierState>,
}

/// What [`Barrier::wait`] returns, like `std::sync::BarrierWaitResult`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BarrierWaitResult(bool);

impl BarrierWaitResult {
    /// True for exactly one of the tasks that passed the barrier together: the last to arrive.
    pub fn is_leader(&self) -> bool {
        self.0
    }
}

impl Barrier {
    /// A barrier that opens when `n` tasks wait on it (`n` of 0 or 1 never blocks).
    pub const fn new(n: usize) -> Barrier {
        Barrier {
            n,
            state: SpinLock::new(BarrierState {
                arrived: 0,
                generation: 0,
                queue: WaitList::new(),
            }),
        }
    }

    /// Waits until `n` tasks are waiting, then lets them all through; reusable. A task
    /// stopped while it waits unwinds from here and no longer counts towards the opening.
    #[track_caller]
    pub fn wait(&self) -> BarrierWaitResult {
        loop {
            let mut state = self.state.lock();
            state.arrived += 1;
            if state.arrived >= self.n {
                state.arrived = 0;
                state.generation += 1;
                while let Some(u) = state.queue.pop_front() {
                    u.unpark();
                }
                return BarrierWaitResult(true);
            }
            let generation = state.generation;
            let woken = WaitIn::new(
                &self.state,
                |s: &mut BarrierState| &mut s.queue,
                Wait::hand_over("Barrier::wait"),
            )
            .withdraw(|s: &mut BarrierState| {
                // Leaving before the opening: we no longer count towards it.
                if s.generation == generation {
                    s.arrived -= 1;
                }
            })
            .park(state);
            // The barrier opened; any other end of the wait (we left, uncounted) means arriving
            // again.
            if woken == Woken::Notified {
                return BarrierWaitResult(false);
            }
        }
    }
}

impl std::fmt::Debug for Barrier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Barrier")
            .field("n", &self.n)
            .finish_non_exhaustive()
    }
}
