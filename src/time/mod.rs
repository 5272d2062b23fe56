//! Time: `sleep` and `sleep_until`, over the kernel's per-domain timers (`sched::timers`).
//!
//! A sleeping task parks with a deadline; its domain fires the timer, so the domain runs other
//! tasks meanwhile. This module owns only the face; it must not touch the timer heap.

use std::time::{Duration, Instant};

use crate::sched::park::{Park, Wake};

/// Puts the current task (or thread, outside any task) to sleep for at least `d`.
///
/// Other tasks of the domain run meanwhile.
///
/// ```
/// bobine::run(|| {
///     let t = std::time::Instant::now();
///     bobine::time::sleep(std::time::Duration::from_millis(5));
///     assert!(t.elapsed() >= std::time::Duration::from_millis(5));
/// });
/// ```
pub fn sleep(d: Duration) {
    match Instant::now().checked_add(d) {
        Some(t) => sleep_until(t),
        None => loop {
            // Longer than the clock can express: sleep until interrupted.
            if Park::new().wait("sleep") == Wake::Interrupted {
                return;
            }
        },
    }
}

/// Puts the current task (or thread) to sleep until `t`; returns at once if `t` has passed.
pub fn sleep_until(t: Instant) {
    if crate::sched::current_task().is_none() {
        let now = Instant::now();
        if t > now {
            std::thread::sleep(t - now);
        }
        return;
    }
    while Instant::now() < t {
        if Park::new().wait_until("sleep", Some(t)) == Wake::Interrupted {
            return;
        }
    }
}
