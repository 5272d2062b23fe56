//! The raw mutex behind `sync::Mutex` and `ocaml::mutex`: one CAS when free, a short spin when
//! the holder may be running on another thread, then a FIFO queue with direct hand-off.
//!
//! ## State word
//!
//! | LOCKED | QUEUED | meaning                                                          |
//! |--------|--------|------------------------------------------------------------------|
//! | 0      | 0      | free: `lock` takes it with one CAS                               |
//! | 1      | 0      | held, nobody queued: `unlock` releases it with one CAS           |
//! | 1      | 1      | held, waiters may be queued: `unlock` takes the queue lock       |
//! | 0      | 1      | transient: a waiter is deciding under the queue lock             |
//!
//! QUEUED is set and cleared only under the queue lock; LOCKED changes by CAS (acquire) or by
//! the holder (release).
//!
//! ## Protocol
//!
//! 1. `lock`: CAS LOCKED in if the word has no LOCKED bit. On failure, spin a little if the
//!    holder could be running elsewhere (several domains, or a plain thread), then:
//! 2. take the queue lock, set QUEUED, and try once more (the holder may have just left); if
//!    that fails, queue up (`wait_in`) and park.
//! 3. `unlock`: CAS LOCKED -> free if QUEUED is clear. Otherwise take the queue lock and pop the
//!    oldest waiter: if there is one the mutex **stays locked** and passes to it (hand-off: no
//!    newcomer can barge past a waiter that was chosen); QUEUED is cleared if it was the last.
//!    With nobody queued the word becomes free.
//! 4. A woken waiter that was popped owns the mutex. A waiter stopped while it waits unwinds:
//!    it unlinks itself, or, if it was popped already, passes the mutex on (`pass_on`).
//!
//! Rejected alternative: waking the oldest waiter and letting it compete (parking_lot's
//! default) is faster under heavy contention but lets newcomers starve a woken waiter.

use std::sync::atomic::{AtomicU8, Ordering};

use crate::sched::park::Wait;
use crate::sched::waitqueue::{WaitIn, WaitList, Woken};
use crate::util::SpinLock;

const LOCKED: u8 = 1;
const QUEUED: u8 = 2;
/// Spins before queueing, when the holder may be running on another thread.
const SPINS: u32 = 64;

/// A lock with no data and no owner: callers pair `lock` and `unlock`.
pub(crate) struct RawMutex {
    state: AtomicU8,
    queue: SpinLock<WaitList>,
}

impl RawMutex {
    pub(crate) const fn new() -> Self {
        RawMutex {
            state: AtomicU8::new(0),
            queue: SpinLock::new(WaitList::new()),
        }
    }

    /// Takes the lock if it is free.
    #[inline]
    pub(crate) fn try_lock(&self) -> bool {
        let mut s = self.state.load(Ordering::Relaxed);
        loop {
            if s & LOCKED != 0 {
                return false;
            }
            match self.state.compare_exchange_weak(
                s,
                s | LOCKED,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(now) => s = now,
            }
        }
    }

    /// Takes the lock, parking the caller while it is held (`reason` names the wait in
    /// reports).
    #[inline]
    #[track_caller]
    pub(crate) fn lock(&self, reason: &'static str) {
        if self
            .state
            .compare_exchange(0, LOCKED, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            return;
        }
        self.lock_slow(reason)
    }

    #[cold]
    #[track_caller]
    fn lock_slow(&self, reason: &'static str) {
        if crate::sched::spinning_may_help() {
            for _ in 0..SPINS {
                std::hint::spin_loop();
                if self.state.load(Ordering::Relaxed) & LOCKED == 0 && self.try_lock() {
                    return;
                }
            }
        }
        loop {
            let mut queue = self.queue.lock();
            self.state.fetch_or(QUEUED, Ordering::Relaxed);
            if self.try_lock() {
                if queue.is_empty() {
                    self.state.fetch_and(!QUEUED, Ordering::Relaxed);
                }
                return;
            }
            let woken = WaitIn::new(&self.queue, |l| l, Wait::hand_over(reason))
                .withdraw(|queue: &mut WaitList| {
                    if queue.is_empty() {
                        self.state.fetch_and(!QUEUED, Ordering::Relaxed);
                    }
                })
                .pass_on(|| self.unlock())
                .park(queue);
            // A lock is handed over (a stopped waiter unwinds from the wait instead); any other
            // end of the wait just means trying again.
            if woken == Woken::Notified {
                return;
            }
        }
    }

    /// Releases the lock, handing it to the oldest waiter if there is one.
    #[inline]
    pub(crate) fn unlock(&self) {
        if self
            .state
            .compare_exchange(LOCKED, 0, Ordering::Release, Ordering::Relaxed)
            .is_ok()
        {
            return;
        }
        self.unlock_slow();
    }

    #[cold]
    fn unlock_slow(&self) {
        loop {
            let mut queue = self.queue.lock();
            match queue.pop_front() {
                Some(next) => {
                    if queue.is_empty() {
                        self.state.store(LOCKED, Ordering::Release);
                    }
                    drop(queue);
                    // A waiter whose task the shutdown abandoned passes the lock on (it is
                    // still held: release it again).
                    if next.hand_over() {
                        return;
                    }
                }
                None => {
                    self.state.store(0, Ordering::Release);
                    return;
                }
            }
        }
    }
}
