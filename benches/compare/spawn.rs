//! Row "spawn + join": spawn a batch of empty tasks, then join the batch; the figure is one
//! task. Batches of 1000 ([`BATCH`]) on the green-thread runtimes, of 100 for OS threads, which
//! cost about a thousand times more.

use std::time::{Duration, Instant};

use crate::common::peers::{may_run, may_spawn, tokio_run};
use crate::common::{BATCH, batches, runtime, spawn_join_loop};
use crate::runtimes::tokio_mt_run;

/// OS threads spawned before they are joined.
const STD_BATCH: u64 = 100;

/// bobine, one domain: `common::spawn_join_loop` in the main task.
pub fn bobine_1(iters: u64) -> Duration {
    runtime().run(move || spawn_join_loop(iters))
}

/// bobine, two domains: the same loop in the main task (domain 0); the idle domain 1 takes half
/// of the batch's never-started tasks when it asks.
pub fn bobine_2(iters: u64) -> Duration {
    bobine::Builder::new()
        .domains(2)
        .run(move || spawn_join_loop(iters))
}

/// `tokio::spawn` of a batch, then awaiting each `JoinHandle`.
async fn tokio_loop(iters: u64) -> Duration {
    let mut handles = Vec::with_capacity(BATCH as usize);
    let start = Instant::now();
    for n in batches(iters, BATCH) {
        for _ in 0..n {
            handles.push(tokio::spawn(async {}));
        }
        for h in handles.drain(..) {
            h.await.expect("empty task panicked");
        }
    }
    start.elapsed()
}

/// tokio current-thread.
pub fn tokio_ct(iters: u64) -> Duration {
    tokio_run(tokio_loop(iters))
}

/// tokio multi-thread, 2 workers.
pub fn tokio_mt(iters: u64) -> Duration {
    tokio_mt_run(tokio_loop(iters))
}

/// may (1 or 2 workers, as the child configured it): `coroutine::spawn` of a batch, then
/// `join`.
pub fn may(iters: u64) -> Duration {
    may_run(move || {
        let mut handles = Vec::with_capacity(BATCH as usize);
        let start = Instant::now();
        for n in batches(iters, BATCH) {
            for _ in 0..n {
                handles.push(may_spawn(|| ()));
            }
            for h in handles.drain(..) {
                h.join().expect("empty coroutine panicked");
            }
        }
        start.elapsed()
    })
}

/// `std::thread::spawn` of a batch of 100, then `join` (on one CPU or two, as the child pinned
/// itself).
pub fn std(iters: u64) -> Duration {
    let mut handles = Vec::with_capacity(STD_BATCH as usize);
    let start = Instant::now();
    for n in batches(iters, STD_BATCH) {
        for _ in 0..n {
            handles.push(std::thread::spawn(|| ()));
        }
        for h in handles.drain(..) {
            h.join().expect("empty thread panicked");
        }
    }
    start.elapsed()
}
