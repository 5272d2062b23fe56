//! What the benches share: the bobine loops several of them measure, the criterion set-up, and
//! (in `peers` and `report`) the peer runtimes' helpers and the ratio tables.
#![allow(dead_code)]

pub mod peers;
pub mod report;

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};

/// The criterion configuration of every bench (command-line arguments override it).
pub fn criterion() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(25)
        .configure_from_args()
}

/// A measured loop: runs `iters` operations and returns the time they took.
pub type Loop = fn(u64) -> Duration;

/// Runs one criterion group, one `(function name, loop)` per runtime, each figure per operation.
pub fn group(c: &mut Criterion, name: &str, loops: &[(&str, Loop)]) {
    let mut g = c.benchmark_group(name);
    g.throughput(Throughput::Elements(1));
    for &(function, f) in loops {
        g.bench_function(function, |b| b.iter_custom(f));
    }
    g.finish();
}

/// The sizes of the batches that `iters` splits into: `batch` each, the last one possibly less.
pub fn batches(iters: u64, batch: u64) -> impl Iterator<Item = u64> {
    (0..iters)
        .step_by(batch as usize)
        .map(move |done| (iters - done).min(batch))
}

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
    for n in batches(iters, BATCH) {
        for _ in 0..n {
            handles.push(bobine::thread::spawn(|| ()));
        }
        for h in handles.drain(..) {
            h.join().expect("empty task panicked");
        }
    }
    start.elapsed()
}
