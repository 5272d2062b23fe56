//! The domain's doorbell: the `attention` bits its loop looks at once per round, and the
//! `sleeping` flag of the cross-thread wake-up protocol (the parent module's doc, steps 1-4).
//!
//! Kept apart from the inbox and the eventfd it guards, so that the model checks run this very
//! code under loom (`crate::loom_checks::inbox`); every method is a single atomic operation or
//! two, inlined where the domain used to spell them out.

use crate::util::atomic::{AtomicBool, AtomicU8, Ordering, dekker_fence};

/// `attention` bits: the inbox has tasks.
pub(crate) const INBOX: u8 = 1;
/// `attention` bits: someone waits for this domain's part of a task dump (`sched::inspect`).
pub(crate) const DUMP: u8 = 4;

/// `attention` and `sleeping` of one domain.
pub(crate) struct Doorbell {
    /// INBOX | DUMP: what the loop must look at besides its run queue (one load per round).
    attention: AtomicU8,
    sleeping: AtomicBool,
}

impl Doorbell {
    pub(crate) fn new() -> Doorbell {
        Doorbell {
            attention: AtomicU8::new(0),
            sleeping: AtomicBool::new(false),
        }
    }

    /// Steps 1 (its second half) and 2, after the caller pushed on the inbox: sets INBOX, then
    /// takes the sleeper's flag. True if the domain was asleep: the caller writes its eventfd.
    #[inline]
    pub(crate) fn ring_inbox(&self) -> bool {
        self.ring(INBOX)
    }

    /// [`ring_inbox`](Self::ring_inbox) for another bit (DUMP: a dump request was pushed).
    #[inline]
    pub(crate) fn ring(&self, bit: u8) -> bool {
        self.attention.fetch_or(bit, Ordering::SeqCst);
        dekker_fence();
        self.take_sleeper()
    }

    /// The waker's half of the Dekker pair (step 2): called after a SeqCst write the sleeper
    /// re-checks (INBOX, or a peer's `stealable`), so this load must be SeqCst too (on aarch64
    /// a weaker load may be satisfied before that write is visible). True if this call cleared
    /// `sleeping`: the caller writes the eventfd.
    ///
    /// A compare-exchange rather than a swap: the same on the machine (one locked instruction,
    /// and only when the load saw the flag set), but loom mis-models a swap racing a plain
    /// store (loom issue 254: the store may land between the swap's read and its write), which
    /// the sleeper's stores of `sleeping` are.
    #[inline]
    pub(crate) fn take_sleeper(&self) -> bool {
        self.sleeping.load(Ordering::SeqCst)
            && self
                .sleeping
                .compare_exchange(true, false, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
    }

    /// The loop's look at the bits, once per round (relaxed: a hint, the inbox has its lock).
    #[inline]
    pub(crate) fn peek(&self) -> u8 {
        self.attention.load(Ordering::Relaxed)
    }

    /// Clears INBOX before the inbox is drained: a push after this sets it again.
    #[inline]
    pub(crate) fn clear_inbox(&self) {
        self.attention.fetch_and(!INBOX, Ordering::SeqCst);
    }

    /// Clears DUMP before the dump requests are taken: a request after this sets it again.
    pub(crate) fn clear_dump(&self) {
        self.attention.fetch_and(!DUMP, Ordering::SeqCst);
    }

    /// Step 3, first half: the domain is about to sleep.
    #[inline]
    pub(crate) fn begin_sleep(&self) {
        self.sleeping.store(true, Ordering::SeqCst);
        dekker_fence();
    }

    /// Step 3, second half: the re-check after [`begin_sleep`](Self::begin_sleep); true if
    /// the inbox has tasks or a dump request waits (the domain must not sleep). Also the
    /// monitor's look at a domain's mail.
    #[inline]
    pub(crate) fn mail_pending(&self) -> bool {
        self.attention.load(Ordering::SeqCst) & (INBOX | DUMP) != 0
    }

    /// Step 3's end: the domain did not sleep after all, or woke up.
    #[inline]
    pub(crate) fn end_sleep(&self) {
        self.sleeping.store(false, Ordering::SeqCst);
    }

    /// Whether the domain sleeps (or is about to), with nothing to run.
    pub(crate) fn is_sleeping(&self) -> bool {
        self.sleeping.load(Ordering::SeqCst)
    }
}
