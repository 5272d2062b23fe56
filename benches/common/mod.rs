//! The bobine loops that both benches measure, written once.
#![allow(dead_code)]

use std::time::{Duration, Instant};

/// Tasks spawned before a batch is joined.
pub const BATCH: u64 = 1000;

/// One domain, so bobine schedules on a single thread like its single-threaded peers.
pub fn runtime() -> bobine::Builder {
    bobine::Builder::new().domains(1)
}

/// Two tasks each yield `iters` times; returns the time of `iters` yields (half the total).
pub fn bobine_yield(iters: u64) -> Duration {
    runtime().run(move || {
        let start = Instant::now();
        let other = bobine::thread::spawn(move || {
            for _ in 0..iters {
                bobine::thread::yield_now();
            }
        });
        for _ in 0..iters {
            bobine::thread::yield_now();
        }
        other.join().expect("yielding task panicked");
        start.elapsed() / 2
    })
}

/// Spawns `iters` empty tasks in batches of [`BATCH`], joining each batch before the next;
/// must run inside a task. Returns the time taken.
pub fn spawn_join_loop(iters: u64) -> Duration {
    let mut handles = Vec::with_capacity(BATCH as usize);
    let start = Instant::now();
    let mut left = iters;
    while left > 0 {
        let n = left.min(BATCH);
        for _ in 0..n {
            handles.push(bobine::thread::spawn(|| ()));
        }
        for h in handles.drain(..) {
            h.join().expect("empty task panicked");
        }
        left -= n;
    }
    start.elapsed()
}
