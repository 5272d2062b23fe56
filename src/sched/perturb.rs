//! Schedule perturbation: a stress mode for the protocol tests, where loom cannot reach (the
//! switch itself, real epoll and eventfds, real threads).
//!
//! With the environment variable `BOBINE_PERTURB` set to a seed (a number; any other
//! non-empty text is hashed into one), the kernel gives the CPU away at random at the points
//! where its cross-thread protocols are most sensitive to timing, so that each run of a test
//! meets other interleavings than the machine's usual ones:
//!
//! | point | where | what it does |
//! |-------|-------|--------------|
//! | a task about to switch out to park | `park::wait_task`, after its unparker is published and its last look at the word (step 3), before `Suspend::Park` (step 4) | a plain yield of the task |
//! | a plain thread's wait | `park::wait_thread`, before `std::thread::park` | `std::thread::yield_now` |
//! | a cross-thread wake-up | `DomainShared::push`, between the inbox push and the doorbell (steps 1-2 of the domain's wake-up protocol) | `std::thread::yield_now` |
//! | a domain going to sleep | `Local::idle`, between `sleeping = true` and the re-check (step 3) | `std::thread::yield_now` |
//! | a stop request | `stop::interrupt`, between the flag and the wake-up request | `std::thread::yield_now` |
//! | a CML partner's commit | `SyncState::complete`, between the wake-up and SYNCHED | `std::thread::yield_now` |
//!
//! Each point fires with probability 1/4, drawn from a per-thread xorshift generator seeded
//! from the seed and the order in which threads first reach a point; since that order and the
//! OS's own scheduling vary, a seed does not replay a run: it only selects a family of
//! perturbed runs. Run the protocol tests under two or three seeds (see README, "Testing").
//!
//! A task's point is a plain `Suspend::Yield`, without the stop point of `sched::yield_now`:
//! the task is between arming its park and switching, where a stop is handled by the park
//! itself, so a stop must not unwind it there. It is legal because a park tolerates any delay
//! between its steps (a wake-up meanwhile is seen in step 3 or 4, or is a request dropped as
//! stale while the task is queued). It is skipped while the thread is panicking (never switch
//! then). An OS yield is legal anywhere, locks held or not: it only delays the thread.
//!
//! Only one point in a task's park, the one that matters: a wake-up that lands while the task
//! is yielded there is the race between steps 3 and 4 (seen by step 4, the task queued at
//! once), which an unperturbed run rarely meets; a yield before step 3 would only delay it.
//!
//! Cost when the variable is unset: one relaxed load of a static and a branch per park of a
//! task and per CML commit by a partner (the other points are off the same-domain hot paths),
//! about 4 instructions (`examples/hot_paths` under callgrind). The variable is read once, at
//! the first point any thread reaches.

use std::cell::Cell;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use super::task::Task;
use crate::switch::Suspend;

const UNKNOWN: u8 = 0;
const OFF: u8 = 1;
const ON: u8 = 2;

static MODE: AtomicU8 = AtomicU8::new(UNKNOWN);
static SEED: AtomicU64 = AtomicU64::new(0);
/// Threads that have drawn from the generator (mixed into each one's seed).
static THREADS: AtomicU64 = AtomicU64::new(0);
/// Points that fired so far (only counted when perturbation is on).
static FIRED: AtomicU64 = AtomicU64::new(0);

/// Whether perturbation is on (reads the environment the first time).
#[inline(always)]
pub(crate) fn enabled() -> bool {
    let mode = MODE.load(Ordering::Relaxed);
    mode != OFF && enabled_slow(mode)
}

#[cold]
#[inline(never)]
fn enabled_slow(mode: u8) -> bool {
    if mode == ON {
        return true;
    }
    let seed = match std::env::var("BOBINE_PERTURB") {
        Ok(s) if !s.is_empty() => s.trim().parse::<u64>().unwrap_or_else(|_| {
            use std::hash::{Hash, Hasher};
            let mut h = std::hash::DefaultHasher::new();
            s.hash(&mut h);
            h.finish()
        }),
        _ => {
            MODE.store(OFF, Ordering::Relaxed);
            return false;
        }
    };
    SEED.store(seed, Ordering::Relaxed);
    // Several threads may get here at once: they all find the same seed.
    MODE.store(ON, Ordering::Release);
    true
}

/// Whether this point fires (probability 1/4), from this thread's generator.
fn fires() -> bool {
    thread_local! {
        static STATE: Cell<u64> = const { Cell::new(0) };
    }
    STATE.with(|s| {
        let mut x = s.get();
        if x == 0 {
            // splitmix64 of the seed and this thread's rank: distinct, never zero.
            let rank = THREADS.fetch_add(1, Ordering::Relaxed);
            let mut z = SEED
                .load(Ordering::Relaxed)
                .wrapping_add(rank.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            x = (z ^ (z >> 31)) | 1;
        }
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.set(x);
        let fire = x & 3 == 0;
        if fire {
            FIRED.fetch_add(1, Ordering::Relaxed);
        }
        fire
    })
}

/// A task's point (the caller checked [`enabled`]): maybe a plain yield of `task`, the
/// running task, to the other ready tasks of its domain.
#[cold]
#[inline(never)]
pub(crate) fn task_point(task: &Task) {
    if fires() && !std::thread::panicking() {
        task.suspend(Suspend::Yield);
    }
}

/// An OS thread's point: maybe gives the core to another thread.
#[inline]
pub(crate) fn os_point() {
    if enabled() {
        os_point_slow();
    }
}

#[cold]
#[inline(never)]
fn os_point_slow() {
    if fires() {
        std::thread::yield_now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Set in the child run of `seeded_runs_yield_at_park_points`.
    const CHILD: &str = "BOBINE_PERTURB_TEST_CHILD";

    /// With `BOBINE_PERTURB` set, tasks that park are yielded at their park point now and then
    /// and the work still completes, every message once; without it, nothing fires. (The
    /// variable is read once per process, so the seeded half runs in a child process.)
    #[test]
    fn seeded_runs_yield_at_park_points() {
        if std::env::var_os(CHILD).is_none() {
            let unset = std::env::var_os("BOBINE_PERTURB").is_none_or(|v| v.is_empty());
            if unset {
                assert!(!enabled(), "off unless the variable is set");
                assert_eq!(FIRED.load(Ordering::Relaxed), 0);
            }
            let out = std::process::Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "sched::perturb::tests::seeded_runs_yield_at_park_points",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(CHILD, "1")
                .env("BOBINE_PERTURB", "12345")
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "the seeded child failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            return;
        }
        assert!(enabled());
        let got = crate::util::within(60, || {
            crate::Builder::new().domains(2).run(|| {
                let (tx, rx) = crate::sync::mpsc::channel::<u32>();
                let receiver = crate::thread::spawn(move || rx.iter().sum::<u32>());
                for i in 0..400 {
                    tx.send(i).unwrap();
                    if i % 3 == 0 {
                        crate::thread::yield_now();
                    }
                }
                drop(tx);
                receiver.join().unwrap()
            })
        });
        assert_eq!(got, (0..400).sum::<u32>(), "every message once");
        assert!(
            FIRED.load(Ordering::Relaxed) > 0,
            "400 receives with a sender beside them: some park points must fire"
        );
    }
}
