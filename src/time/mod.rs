//! Time: `sleep` and `sleep_until`, over the kernel's per-domain timers (`sched::timers`).
//!
//! A sleeping task parks with a deadline; its domain fires the timer, so the domain runs other
//! tasks meanwhile. This module owns only the face; it must not touch the timer heap.

use std::time::{Duration, Instant};

use crate::sched::park::{Park, Wait, Wake};

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
#[track_caller]
pub fn sleep(d: Duration) {
    sleep_deadline(Instant::now().checked_add(d))
}

/// Puts the current task (or thread) to sleep until `t`; returns at once if `t` has passed.
#[track_caller]
pub fn sleep_until(t: Instant) {
    sleep_deadline(Some(t))
}

/// Sleeps until `deadline` (`None`: later than the clock can express, so for ever). The park
/// records the caller's location (`#[track_caller]` down from the public functions), so a
/// report or dump names the line that slept, not this one.
#[track_caller]
fn sleep_deadline(deadline: Option<Instant>) {
    if crate::sched::current_ptr().is_null() {
        loop {
            let left = match deadline {
                Some(t) => t.saturating_duration_since(Instant::now()),
                None => Duration::MAX,
            };
            if left.is_zero() {
                return;
            }
            std::thread::sleep(left);
        }
    }
    // A stopped task unwinds out of its sleep; at shutdown, a sleep in a destructor that
    // nothing else ends is given up (it returns early).
    while deadline.is_none_or(|t| Instant::now() < t) {
        if Park::new().wait_for(&Wait::soft("sleep").until(deadline)) == Wake::Interrupted {
            crate::sched::park::stop::unwind_if_stopped();
            return;
        }
    }
}
