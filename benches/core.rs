//! Core micro-benchmarks of bobine's scheduler, on one domain.
//!
//! - `raw_switch`: a bare `corosensei::Coroutine` resume + suspend round trip, the floor every
//!   task switch is built on.
//! - `yield`: two tasks on one domain, each calling `bobine::thread::yield_now()` in a loop; the
//!   figure is the time of one yield (one switch from a task to the next, through the scheduler).
//! - `spawn_join/empty`: spawn 1000 empty tasks, then join the 1000; the figure is per task.
//! - `spawn_join/100k_parked`: the same with 100 000 other tasks alive and parked (each asleep
//!   for an hour), to show that spawn and join do not degrade with the number of live tasks.
//! - `unblock/round_trip`: a task calling `bobine::io::unblock(|| 1)` in a loop; the figure is
//!   one round trip (the job handed to a warm blocking-pool worker, run there, the task woken
//!   and resumed with the value).
//! - Before criterion, a plain measurement: resident memory per parked task (RSS from
//!   `/proc/self/statm` before and after 100 000 tasks have started and parked), printed as
//!   `rss per parked task: X KiB` (target: at most 4.5 KiB with the default stack).
//!
//! Run with `cargo bench --bench core` (criterion arguments follow `--`, e.g.
//! `cargo bench --bench core -- yield`).
//!
//! Each criterion sample starts one runtime and runs the whole measured loop in it
//! (`iter_custom`), so runtime start-up is outside the timing. The parked variant keeps one
//! runtime (with its 100 000 sleepers) alive on a helper thread for the whole benchmark, since
//! setting the sleepers up again for every sample would dominate the run time.

use std::hint::black_box;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};

mod common;

use common::{BATCH, bobine_yield, runtime, spawn_join_loop};

/// Live parked tasks in the "no collapse" variant and in the memory measurement.
const PARKED: usize = 100_000;
/// How long the parked tasks sleep: far longer than any run, so they stay parked.
const PARK_FOR: Duration = Duration::from_secs(3600);

/// The floor: one corosensei resume + suspend round trip, no scheduler.
fn raw_switch(c: &mut Criterion) {
    let mut co: corosensei::Coroutine<(), (), ()> = corosensei::Coroutine::new(|y, ()| {
        loop {
            y.suspend(());
        }
    });
    let mut g = c.benchmark_group("raw_switch");
    g.throughput(Throughput::Elements(1));
    g.bench_function("corosensei", |b| b.iter(|| black_box(co.resume(()))));
    g.finish();
}

fn yield_bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("yield");
    g.throughput(Throughput::Elements(1));
    g.bench_function("bobine", |b| b.iter_custom(bobine_yield));
    g.finish();
}

/// One task making `iters` blocking-pool round trips with a trivial job.
fn unblock_bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("unblock");
    g.throughput(Throughput::Elements(1));
    g.bench_function("round_trip", |b| {
        b.iter_custom(|iters| {
            runtime().run(move || {
                // Outside the timing: the first call starts the pool's worker.
                black_box(bobine::io::unblock(|| 1));
                let start = Instant::now();
                for _ in 0..iters {
                    black_box(bobine::io::unblock(|| black_box(1)));
                }
                start.elapsed()
            })
        })
    });
    g.finish();
}

/// Spawns [`PARKED`] tasks that sleep for an hour, and lets each of them run once (so it has
/// started, touched its stack and parked). Must run inside a task.
fn park_many() {
    for _ in 0..PARKED {
        // Detached: the runtime keeps parked tasks and drops them when `run` returns.
        drop(bobine::thread::spawn(|| bobine::time::sleep(PARK_FOR)));
    }
    // The run queue is FIFO: by the time this task runs again every sleeper has run and parked.
    bobine::thread::yield_now();
}

/// A runtime kept alive on a helper thread, with [`PARKED`] sleepers, that runs the spawn +
/// join loop on request.
struct ParkedRuntime {
    requests: Option<mpsc::Sender<u64>>,
    replies: mpsc::Receiver<Duration>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ParkedRuntime {
    fn start() -> ParkedRuntime {
        let (req_tx, req_rx) = mpsc::channel::<u64>();
        let (rep_tx, rep_rx) = mpsc::channel::<Duration>();
        let thread = std::thread::spawn(move || {
            runtime().run(move || {
                park_many();
                // Blocking this domain's thread between requests is fine: nothing else needs
                // to run while the sleepers sleep.
                while let Ok(iters) = req_rx.recv() {
                    if rep_tx.send(spawn_join_loop(iters)).is_err() {
                        break;
                    }
                }
            })
        });
        ParkedRuntime {
            requests: Some(req_tx),
            replies: rep_rx,
            thread: Some(thread),
        }
    }

    fn spawn_join(&self, iters: u64) -> Duration {
        self.requests
            .as_ref()
            .expect("runtime running")
            .send(iters)
            .expect("runtime thread alive");
        self.replies.recv().expect("runtime thread alive")
    }
}

impl Drop for ParkedRuntime {
    fn drop(&mut self) {
        drop(self.requests.take());
        if let Some(t) = self.thread.take() {
            t.join().expect("runtime thread panicked");
        }
    }
}

fn spawn_join(c: &mut Criterion) {
    let mut g = c.benchmark_group("spawn_join");
    g.throughput(Throughput::Elements(1));
    g.bench_function("empty", |b| {
        b.iter_custom(|iters| runtime().run(move || spawn_join_loop(iters)))
    });
    // Only set the sleepers up if this benchmark is selected by the command-line filter.
    let mut parked: Option<ParkedRuntime> = None;
    g.bench_function("100k_parked", |b| {
        let rt = parked.get_or_insert_with(ParkedRuntime::start);
        b.iter_custom(|iters| rt.spawn_join(iters))
    });
    g.finish();
    drop(parked);
}

/// Resident set size of this process, in bytes.
fn rss_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("read /proc/self/statm");
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("resident pages in /proc/self/statm");
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
    pages * page
}

/// Prints the resident memory per parked task (default stack size).
fn rss_per_parked_task() {
    let (before, after) = runtime().run(|| {
        // Warm up the runtime's own structures (stack pool, run queue, timer heap) with a few
        // tasks so that one-off allocations are not charged to the measured tasks.
        spawn_join_loop(BATCH);
        let before = rss_bytes();
        park_many();
        (before, rss_bytes())
    });
    let per_task = after.saturating_sub(before) as f64 / PARKED as f64 / 1024.0;
    println!(
        "rss per parked task: {per_task:.2} KiB ({PARKED} tasks, RSS {:.1} MiB -> {:.1} MiB; target <= 4.5 KiB)",
        before as f64 / (1 << 20) as f64,
        after as f64 / (1 << 20) as f64,
    );
}

fn main() {
    // First, in a fresh process: memory freed by earlier benchmarks would stay resident in the
    // allocator and hide part of what the parked tasks cost.
    rss_per_parked_task();
    let mut c = common::criterion();
    raw_switch(&mut c);
    yield_bench(&mut c);
    spawn_join(&mut c);
    unblock_bench(&mut c);
    c.final_summary();
}
