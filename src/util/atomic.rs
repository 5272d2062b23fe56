//! The atomics of the model-checked protocol cores: std's, or loom's when the crate is built
//! with `--cfg bobine_loom` (see `crate::loom_checks`).
//!
//! Only the small types that hold a protocol's whole state word use this module (the park word,
//! the domain's doorbell, the CML commit word); everything else keeps std's atomics. Under
//! `bobine_loom` the crate is built for the model checks alone: a task or a runtime cannot run
//! there, since loom's atomics work only inside `loom::model`.

#[cfg(bobine_loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
#[cfg(not(bobine_loom))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};

/// One round of a wait for another thread's window of a few instructions: spins, then lets
/// the OS run that thread if it was preempted. Under loom, a yield to the model's scheduler
/// (loom needs one in every spin loop to explore what the other thread does).
#[inline]
pub(crate) fn spin(spins: &mut u32) {
    #[cfg(bobine_loom)]
    {
        let _ = spins;
        loom::thread::yield_now();
    }
    #[cfg(not(bobine_loom))]
    {
        *spins += 1;
        if *spins < 256 {
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
    }
}

/// Nothing, except under loom: a `SeqCst` fence. Placed between the two `SeqCst` accesses of
/// each side of a Dekker pair (a store, then a load of another location).
///
/// Why: loom treats `SeqCst` loads and stores as acquire/release (loom issue 180), which lets
/// both sides of a Dekker pair miss each other, a false alarm; it models `fence(SeqCst)`
/// exactly. In C11 a `SeqCst` store followed by a `SeqCst` load on another location already
/// has the ordering this fence gives (all `SeqCst` operations are in one total order that
/// agrees with program order), so the fence only makes loom see the guarantee the real build
/// relies on; in the real build it compiles to nothing.
#[inline(always)]
pub(crate) fn dekker_fence() {
    #[cfg(bobine_loom)]
    loom::sync::atomic::fence(Ordering::SeqCst);
}
