//! The raw mutex behind `sync::Mutex` and `ocaml::mutex`: one CAS when free; when contended,
//! **eventual fairness**: a released lock is left free for whoever runs (barging), and the
//! oldest waiter is only nudged to come and compete, unless some waiter has waited longer than
//! [`STARVATION_BOUND`] (1 ms), in which case the lock is handed from holder to waiter, oldest
//! first, until the queue has caught up. The idea is Go's `sync.Mutex` (normal and starvation
//! modes) and parking_lot's eventual fairness; the code and this text are bobine's own.
//!
//! ## Glossary
//!
//! - **barging**: taking a free lock while others are queued for it. A running task (on any
//!   domain) or a plain OS thread that finds the lock free takes it, instead of the lock waiting
//!   for a parked waiter to be scheduled (on another domain that can take microseconds, and the
//!   lock would sit idle meanwhile: a convoy).
//! - **nudge**: the wake-up `unlock` gives the oldest waiter in normal mode (the wait queue's
//!   [`Woken::Nudged`]): nothing is handed over, the waiter comes back and tries again.
//! - **the nudged waiter**: the one waiter nudged and not yet back (the WOKEN bit is its
//!   token). While it is on its way, `unlock` nudges nobody else: no thundering herd.
//! - **hand-off mode** (Go's starvation mode): `unlock` passes the lock, still locked, to the
//!   oldest waiter; nobody barges.
//! - **deferring**: a `lock` caller that finds the lock free while the nudged waiter is on
//!   the caller's own domain queues behind it instead of barging (see below).
//!
//! ## State word
//!
//! | bit     | set by                                              | cleared by                                              |
//! |---------|-----------------------------------------------------|---------------------------------------------------------|
//! | LOCKED  | `lock`/`try_lock` (CAS); kept set by a hand-off     | `unlock` (normal mode), or the hand-off that finds nobody |
//! | QUEUED  | a waiter about to queue (under the queue lock)      | whoever leaves the queue empty (under the queue lock)   |
//! | WOKEN   | `unlock` that nudges (CAS, before popping)          | the nudged waiter, in the CAS of its next attempt (or its `pass_on` if it unwinds); `unlock` if the queue emptied meanwhile |
//! | HANDOFF | the nudged waiter that lost after waiting more than the bound (CAS, only while LOCKED) | the waiter handed the lock that waited less than the bound or was the last; the hand-off that finds nobody |
//!
//! Invariants: HANDOFF implies LOCKED (a lock in hand-off mode is never free); WOKEN and
//! HANDOFF are never both set (HANDOFF is set by WOKEN's owner in the CAS that clears WOKEN,
//! and `unlock` nudges nobody in hand-off mode); at most one waiter owns WOKEN.
//!
//! What `lock` and `unlock` do, by state (`-`: any):
//!
//! | LOCKED | QUEUED | WOKEN | HANDOFF | `lock` (a newcomer)                 | the nudged waiter back       | `unlock` (the holder)                              |
//! |--------|--------|-------|---------|-------------------------------------|------------------------------|----------------------------------------------------|
//! | 0      | 0      | 0     | 0       | takes it (fast path: one CAS)       | —                            | —                                                  |
//! | 1      | 0      | -     | 0       | spins if that may help, then queues | queues at the front          | releases (one CAS if the word is exactly LOCKED)   |
//! | 1      | 1      | 0     | 0       | spins if that may help, then queues | —                            | releases, then nudges the oldest waiter (sets WOKEN) |
//! | 1      | 1      | 1     | 0       | spins if that may help, then queues | queues at the front, clears WOKEN; sets HANDOFF if it waited > bound | releases; nudges nobody (one is on its way)  |
//! | 0      | -      | 0     | 0       | takes it (barging: slow path, CAS)  | —                            | —                                                  |
//! | 0      | -      | 1     | 0       | takes it, unless the nudged waiter is on the caller's domain: then queues at the back (deferring) | takes it, clears WOKEN | — |
//! | 1      | -      | 0     | 1       | queues at the back, no spinning     | —                            | hands it to the oldest waiter, still locked; with nobody queued, frees it and leaves hand-off mode |
//!
//! ## Protocol
//!
//! 1. `lock`: CAS `0 -> LOCKED`. On failure (the slow path): unless deferring, CAS LOCKED in
//!    if the word has neither LOCKED nor HANDOFF (barging), and spin a little while it is held
//!    if that may help (another thread may be running the holder, our own domain has nothing
//!    else to run, and the lock is not in hand-off mode), then:
//! 2. take the queue lock and, in one CAS: if the lock is free (normal mode) and we are not
//!    deferring, take it (and clear WOKEN if we are the nudged waiter); otherwise set QUEUED,
//!    and if we are the nudged waiter clear WOKEN and, if we have waited more than the bound,
//!    set HANDOFF (only while LOCKED: the CAS fails if the holder released meanwhile, and we
//!    try again). Then queue (at the front if we were nudged: we keep our place), release the
//!    queue lock, note the time if this is the first time this `lock` call queues because the
//!    lock was taken, and park. The clock is read only on this slow path, never under the
//!    queue lock: when a call first queues, and when a nudged waiter loses or is handed the
//!    lock.
//! 3. `unlock`: CAS `LOCKED -> 0` (the fast path). Otherwise, in normal mode, one CAS clears
//!    LOCKED (the lock is free from here: anyone may take it) and, if QUEUED is set and WOKEN
//!    is not (no nudged waiter is on its way), sets WOKEN; having set it, take the queue lock,
//!    pop the oldest waiter as a nudge (clearing QUEUED if it was the last), release the queue
//!    lock and wake it. If the queue turned out empty, clear WOKEN (and QUEUED). (A nudged
//!    waiter that unwinds passes its nudge on the same way, but sets WOKEN only while the lock
//!    is free: if somebody barged meanwhile, their `unlock` will.) In hand-off mode (HANDOFF
//!    seen before the release CAS, which is conditioned on it), take the queue lock and pop the
//!    oldest waiter as a hand-over: the word keeps LOCKED and HANDOFF for it; with nobody
//!    queued, clear LOCKED, HANDOFF and QUEUED (back to normal mode, free).
//! 4. A waiter back from its park: nudged ([`Woken::Nudged`]) -> it owns WOKEN and goes back to
//!    step 1 (its next CAS clears WOKEN, whether it takes the lock or queues again); handed the
//!    lock ([`Woken::Notified`]) -> it holds it, and leaves hand-off mode (clears HANDOFF) if it
//!    waited less than the bound or nobody is queued behind it.
//! 5. Stops and abandoned waiters (the wait queue's rules): a waiter stopped while queued
//!    unlinks itself (clearing QUEUED if it leaves the queue empty) and unwinds. One unlinked
//!    by a waker keeps what it was given even if the stop ended its park at the same moment:
//!    a nudged one goes back to step 1 (it takes the lock or queues again, and the stop takes
//!    effect at its next park point), so WOKEN is always cleared by its owner's next CAS; a
//!    handed one holds the lock. One that unwinds out of the wait after a waker chose it
//!    passes on what it got (`pass_on`): a hand-over is unlocked again (to the next waiter, in
//!    hand-off mode), a nudge clears WOKEN and nudges the next waiter if the lock is free. A
//!    waker that finds its waiter abandoned by the shutdown (`Unparker::hand_over` is false)
//!    pops the next one instead, for a nudge as for a hand-over.
//!
//! No wake-up is lost: a waiter sets QUEUED (step 2) in a CAS on the same word as the holder's
//! release (or sees it set already, which is as good), so either the holder's release comes
//! first and the waiter sees the lock free and takes it, or the holder sees QUEUED and nudges
//! (or hands over) under the queue lock, which the waiter holds until it is linked. A nudge
//! withheld because WOKEN is set is owed by WOKEN's owner, which clears WOKEN only by taking
//! the lock (its `unlock` nudges then) or by queueing again while the lock is held (the
//! holder's `unlock` nudges then). A deferring caller queues only while WOKEN is set, so the
//! same owner owes it its turn.
//!
//! ## Deferring to a nudged waiter of one's own domain
//!
//! A nudged task runs on its own domain, and a domain runs one task at a time: a task of that
//! same domain that finds the lock free cannot be overtaken by it before it yields or parks.
//! Barging then only makes the nudged waiter run, find the lock taken, and park again, which
//! on one domain doubles the switches of a contended lock and gains nothing. So a `lock` caller
//! on the nudged waiter's domain queues at the back instead (`nudged_on` remembers the domain
//! of the waiter nudged last; it is a hint: a stale value costs one barge or one deferral,
//! never a lost wake-up, since the caller queues only while WOKEN is set). Tasks of other
//! domains and plain threads still barge; `try_lock` always does. A deferring caller has not
//! been kept from a free lock by anyone, so it notes the time only when it first loses a race
//! after a nudge (no clock read on the common path of one domain).
//!
//! ## The bound
//!
//! A nudged waiter that loses, and has waited longer than [`STARVATION_BOUND`] since it first
//! queued because the lock was taken (or, if it first queued to defer, since it first lost),
//! switches the mutex to hand-off mode: from then on it is served after at most the waiters
//! ahead of it, each holding the lock once. Hand-off mode ends when a waiter handed the lock
//! waited less than the bound, or was the last (one whose clock never started stays in it).
//! So nobody starves: a waiter at the front of the queue gets the lock within the bound, plus
//! one critical section and a wake-up, of its clock starting, and in hand-off mode every
//! waiter queued behind it is served in turn. In normal mode a task that releases and re-takes
//! the lock in a loop keeps it as long as it runs; on one domain it yields only where it parks
//! or yields, as always.
//!
//! A task abandoned by the shutdown (it never runs again) while a nudge or a hand-over is on
//! its way to it keeps it, as the wait queue says: a lock handed to it stays held; a nudge
//! leaves WOKEN set, so later unlocks nudge nobody and the other waiters wait until their own
//! stop (barging callers still take the lock).
//!
//! ## Rejected alternatives
//!
//! - Strict FIFO with direct hand-off on every unlock (what this file did before): never
//!   unfair, but across domains every hand-off waits for the waiter's domain to wake and
//!   schedule it while the lock sits idle: a convoy of about 2 µs per critical section with 4
//!   tasks on 2 domains, against Go's 250 ns.
//! - Barging with no bound (a plain test-and-set lock with a wait queue): fastest, but a
//!   waiter can lose every race for ever to a task that re-locks in a loop.
//! - parking_lot's eventual fairness (a fair unlock every 0.5 ms on average, decided by the
//!   unlocker from a timer): bounds starvation as well, but reads the clock on every contended
//!   unlock; Go's rule reads it only on the waiter's side. The clock costs 34 ns on the
//!   development VM (a contended critical section on one domain costs about 80): it stays off
//!   the paths a one-domain convoy takes.
//! - Handing the lock to a waiter of the unlocker's own domain and nudging only others:
//!   about as fast on one domain as deferring, but the lock would then be held, by a task that
//!   is not running, for as long as the unlocker keeps its domain, while other domains could
//!   use it.
//! - Waking every waiter (or a new one per unlock, without WOKEN): a thundering herd that
//!   re-queues all but one.

use std::cell::Cell;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::sched::park::Wait;
use crate::sched::waitqueue::{WaitIn, WaitList, Woken};
use crate::util::SpinLock;

const LOCKED: u8 = 1;
const QUEUED: u8 = 2;
const WOKEN: u8 = 4;
const HANDOFF: u8 = 8;
/// Spins before queueing, when the holder may be running on another thread.
const SPINS: u32 = 64;

/// How long a waiter may wait before the lock is handed to waiters in turn (Go uses the same
/// 1 ms): the starvation bound of `sync`'s locks and semaphore.
pub(crate) const STARVATION_BOUND: Duration = Duration::from_millis(1);

/// A lock with no data and no owner: callers pair `lock` and `unlock`.
pub(crate) struct RawMutex {
    state: AtomicU8,
    /// The domain of the waiter nudged last (`Unparker::domain_addr`, 0 for a plain thread):
    /// meaningful while WOKEN is set, and only a hint (see "Deferring" in the module doc).
    nudged_on: AtomicUsize,
    queue: SpinLock<WaitList>,
    /// Switches to hand-off mode so far (the unit tests check that the bound was enforced).
    #[cfg(test)]
    handoffs: AtomicUsize,
}

impl RawMutex {
    pub(crate) const fn new() -> Self {
        RawMutex {
            state: AtomicU8::new(0),
            nudged_on: AtomicUsize::new(0),
            queue: SpinLock::new(WaitList::new()),
            #[cfg(test)]
            handoffs: AtomicUsize::new(0),
        }
    }

    /// How many times a waiter switched this mutex to hand-off mode.
    #[cfg(test)]
    pub(crate) fn handoffs(&self) -> usize {
        self.handoffs.load(Ordering::Relaxed)
    }

    /// Takes the lock if it is free (barging past queued waiters in normal mode; never in
    /// hand-off mode, where the lock is never free while waiters are queued).
    #[inline]
    pub(crate) fn try_lock(&self) -> bool {
        self.attempt(false)
    }

    /// One attempt: CAS LOCKED in if the word has neither LOCKED nor HANDOFF, clearing WOKEN
    /// too if the caller is the nudged waiter (`nudged`).
    #[inline]
    fn attempt(&self, nudged: bool) -> bool {
        let clear = if nudged { WOKEN } else { 0 };
        let mut s = self.state.load(Ordering::Relaxed);
        loop {
            if s & (LOCKED | HANDOFF) != 0 {
                return false;
            }
            match self.state.compare_exchange_weak(
                s,
                (s | LOCKED) & !clear,
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
        let here = crate::sched::current_domain_addr();
        // When this call first queued because the lock was taken (the clock is read on this
        // slow path only, never under the queue lock), and whether we are the nudged waiter
        // (we own WOKEN).
        let since: Cell<Option<Instant>> = Cell::new(None);
        let mut nudged = false;
        loop {
            // Whether to let the nudged waiter go first (see "Deferring" in the module doc).
            let defer = |s: u8| {
                !nudged
                    && here != 0
                    && s & WOKEN != 0
                    && self.nudged_on.load(Ordering::Relaxed) == here
            };
            // Step 1: barge, then spin.
            if !defer(self.state.load(Ordering::Relaxed)) {
                if self.attempt(nudged) {
                    return;
                }
                if crate::sched::spinning_may_help() {
                    for _ in 0..SPINS {
                        std::hint::spin_loop();
                        let s = self.state.load(Ordering::Relaxed);
                        if s & HANDOFF != 0 {
                            break;
                        }
                        if s & LOCKED == 0 && self.attempt(nudged) {
                            return;
                        }
                    }
                }
            }
            // A nudged waiter that lost: has it waited past the bound? (One that first queued
            // only to defer starts its clock now.)
            let starving = nudged
                && match since.get() {
                    Some(t) => t.elapsed() > STARVATION_BOUND,
                    None => {
                        since.set(Some(Instant::now()));
                        false
                    }
                };
            // Step 2: under the queue lock, take it or announce ourselves.
            let queue = self.queue.lock();
            let mut s = self.state.load(Ordering::Relaxed);
            let mut deferring = false;
            let took = loop {
                let free = s & (LOCKED | HANDOFF) == 0;
                if free && !defer(s) {
                    let new = (s | LOCKED) & !if nudged { WOKEN } else { 0 };
                    match self.state.compare_exchange_weak(
                        s,
                        new,
                        Ordering::Acquire,
                        Ordering::Relaxed,
                    ) {
                        Ok(_) => break true,
                        Err(now) => s = now,
                    }
                    continue;
                }
                let mut new = s | QUEUED;
                if nudged {
                    new &= !WOKEN;
                    if starving && s & LOCKED != 0 {
                        new |= HANDOFF;
                    }
                }
                if new == s {
                    // QUEUED is set already: what we saw is as good as a CAS that changes
                    // nothing (a holder that releases after it sees QUEUED).
                    deferring = free;
                    break false;
                }
                // Relaxed: the queue lock orders the node's publication; the word only has to
                // be one modification order with the holder's release (see the module doc).
                match self
                    .state
                    .compare_exchange_weak(s, new, Ordering::Relaxed, Ordering::Relaxed)
                {
                    Ok(_) => {
                        #[cfg(test)]
                        if new & HANDOFF != 0 {
                            self.handoffs.fetch_add(1, Ordering::Relaxed);
                        }
                        deferring = free;
                        break false;
                    }
                    Err(now) => s = now,
                }
            };
            if took {
                return;
            }
            let front = std::mem::replace(&mut nudged, false);
            let woken = WaitIn::new(&self.queue, |l| l, Wait::hand_over(reason))
                .front(front)
                .after_queued(|| {
                    if !deferring && since.get().is_none() {
                        since.set(Some(Instant::now()));
                    }
                })
                .withdraw(|queue: &mut WaitList| {
                    if queue.is_empty() {
                        self.state.fetch_and(!QUEUED, Ordering::Relaxed);
                    }
                })
                .pass_on(|how| match how {
                    // Handed the lock but unwinding: release it (to the next waiter).
                    Woken::Notified => self.unlock(),
                    // Nudged but unwinding: the nudge goes to the next waiter.
                    _ => {
                        self.state.fetch_and(!WOKEN, Ordering::Relaxed);
                        self.nudge_next();
                    }
                })
                .park(queue);
            // Step 4.
            match woken {
                Woken::Notified => {
                    // Handed over (hand-off mode): the word kept LOCKED for us. Back to normal
                    // mode if nobody is queued behind us or we waited less than the bound (one
                    // that never started its clock cannot tell, and stays).
                    let last = self.state.load(Ordering::Relaxed) & QUEUED == 0;
                    if last || since.get().is_some_and(|t| t.elapsed() < STARVATION_BOUND) {
                        self.state.fetch_and(!HANDOFF, Ordering::Relaxed);
                    }
                    return;
                }
                Woken::Nudged => nudged = true,
                // A hand-over wait ends otherwise only by unwinding; try again all the same.
                Woken::TimedOut | Woken::Interrupted => {}
            }
        }
    }

    /// Releases the lock: in normal mode it is left free and the oldest waiter is nudged; in
    /// hand-off mode it is handed to the oldest waiter.
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
        let mut s = self.state.load(Ordering::Relaxed);
        loop {
            if s & HANDOFF != 0 {
                return self.hand_off();
            }
            // Step 3 in one CAS: release, and take WOKEN if someone is queued and nobody
            // nudged is on the way (the lock is free as of this CAS: nobody barged yet).
            let nudge = s & (QUEUED | WOKEN) == QUEUED;
            let new = (s & !LOCKED) | if nudge { WOKEN } else { 0 };
            match self
                .state
                .compare_exchange_weak(s, new, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) if nudge => return self.nudge_front(),
                Ok(_) => return,
                Err(now) => s = now,
            }
        }
    }

    /// Nudges the oldest waiter if one is queued, the lock is free and no nudged waiter is on
    /// its way (a nudged waiter that unwinds passes its nudge on this way).
    fn nudge_next(&self) {
        let mut s = self.state.load(Ordering::Relaxed);
        loop {
            if s & QUEUED == 0 || s & (LOCKED | WOKEN | HANDOFF) != 0 {
                return;
            }
            match self.state.compare_exchange_weak(
                s,
                s | WOKEN,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return self.nudge_front(),
                Err(now) => s = now,
            }
        }
    }

    /// Step 3, normal mode, once the caller owns WOKEN: pops the oldest waiter as a nudge and
    /// wakes it; WOKEN is then its until it clears it.
    fn nudge_front(&self) {
        loop {
            let mut queue = self.queue.lock();
            match queue.pop_front_nudge() {
                Some(next) => {
                    if queue.nobody_linked() {
                        self.state.fetch_and(!QUEUED, Ordering::Relaxed);
                    }
                    drop(queue);
                    self.nudged_on.store(next.domain_addr(), Ordering::Relaxed);
                    // A waiter whose task the shutdown abandoned never comes back: nudge the
                    // next one instead.
                    if next.hand_over() {
                        return;
                    }
                }
                None => {
                    // Everyone left meanwhile.
                    self.state.fetch_and(!(WOKEN | QUEUED), Ordering::Relaxed);
                    return;
                }
            }
        }
    }

    /// Step 3, hand-off mode: the lock, still held, goes to the oldest waiter.
    fn hand_off(&self) {
        loop {
            let mut queue = self.queue.lock();
            match queue.pop_front() {
                Some(next) => {
                    if queue.nobody_linked() {
                        self.state.fetch_and(!QUEUED, Ordering::Relaxed);
                    }
                    drop(queue);
                    // A waiter whose task the shutdown abandoned passes the lock on (it is
                    // still held: hand it again).
                    if next.hand_over() {
                        return;
                    }
                }
                None => {
                    // Nobody to hand it to: free, and back to normal mode.
                    self.state
                        .fetch_and(!(LOCKED | HANDOFF | QUEUED), Ordering::Release);
                    return;
                }
            }
        }
    }
}
