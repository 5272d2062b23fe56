//! Side-by-side comparison of bobine with peer runtimes, on the same loops:
//!
//! - `yield`: two tasks on one scheduler thread, each yielding in a loop; the figure is one yield
//!   (one switch to the other task). bobine (1 domain, `thread::yield_now`), tokio current-thread
//!   (`tokio::task::yield_now().await`), may with one worker (`coroutine::yield_now`). Plain
//!   threads have no meaningful equivalent and are left out.
//! - `spawn_join`: spawn a batch of empty tasks, then join the batch; the figure is per task.
//!   Batches of 1000 for bobine, tokio (`tokio::spawn` + awaiting the `JoinHandle`) and may;
//!   batches of 100 for std threads (`std::thread::spawn` + `join`), which cost about a thousand
//!   times more.
//!
//! Every green-thread loop runs inside a task of its runtime (a driver task that is also one of
//! the two yielders), and each criterion sample starts a fresh runtime outside the timing
//! (`iter_custom`). may is configured with `may::config().set_workers(1)` and tokio uses
//! `new_current_thread().enable_all()`, so every runtime schedules on a single thread.
//!
//! After the groups have run, a markdown table gives each runtime's median (read back from
//! criterion's `<target>/criterion/compare_<operation>/<runtime>/new/estimates.json`) and each
//! peer's median divided by bobine's: above 1 means bobine is faster. Only ratios from one run
//! mean anything on a shared machine.
//!
//! Run with `cargo bench --bench compare` (criterion arguments follow `--`, e.g.
//! `cargo bench --bench compare -- compare_yield`).

use std::time::{Duration, Instant, SystemTime};

use criterion::Criterion;

mod common;

use common::peers::{may_run, may_spawn, tokio_run};
use common::{BATCH, batches, bobine_yield, group, report};

/// OS threads spawned before they are joined.
const STD_BATCH: u64 = 100;

const BOBINE: &str = "bobine";
const TOKIO: &str = "tokio-ct";
const MAY: &str = "may";
const STD: &str = "std";
const RUNTIMES: [&str; 4] = [BOBINE, TOKIO, MAY, STD];
/// Criterion groups and the operation each measures. The groups are prefixed so that their
/// results do not overwrite those of `benches/core.rs` (criterion keys results by group and
/// function name only).
const GROUPS: [(&str, &str); 2] = [
    ("compare_yield", "yield"),
    ("compare_spawn_join", "spawn_join"),
];

// ---------------------------------------------------------------------------------------------
// bobine

fn bobine_spawn_join(iters: u64) -> Duration {
    common::runtime().run(move || common::spawn_join_loop(iters))
}

// ---------------------------------------------------------------------------------------------
// tokio, current-thread runtime

fn tokio_yield(iters: u64) -> Duration {
    tokio_run(async move {
        let start = Instant::now();
        let other = tokio::spawn(async move {
            for _ in 0..iters {
                tokio::task::yield_now().await;
            }
        });
        for _ in 0..iters {
            tokio::task::yield_now().await;
        }
        other.await.expect("yielding task panicked");
        start.elapsed() / 2
    })
}

fn tokio_spawn_join(iters: u64) -> Duration {
    tokio_run(async move {
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
    })
}

// ---------------------------------------------------------------------------------------------
// may, one worker

fn may_yield(iters: u64) -> Duration {
    may_run(move || {
        let start = Instant::now();
        let other = may_spawn(move || {
            for _ in 0..iters {
                may::coroutine::yield_now();
            }
        });
        for _ in 0..iters {
            may::coroutine::yield_now();
        }
        other.join().expect("yielding coroutine panicked");
        start.elapsed() / 2
    })
}

fn may_spawn_join(iters: u64) -> Duration {
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

// ---------------------------------------------------------------------------------------------
// std threads

fn std_spawn_join(iters: u64) -> Duration {
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

// ---------------------------------------------------------------------------------------------
// criterion groups

fn yield_group(c: &mut Criterion) {
    group(
        c,
        GROUPS[0].0,
        &[
            (BOBINE, bobine_yield),
            (TOKIO, tokio_yield),
            (MAY, may_yield),
        ],
    );
}

fn spawn_join_group(c: &mut Criterion) {
    group(
        c,
        GROUPS[1].0,
        &[
            (BOBINE, bobine_spawn_join),
            (TOKIO, tokio_spawn_join),
            (MAY, may_spawn_join),
            (STD, std_spawn_join),
        ],
    );
}

fn main() {
    // Before may's scheduler starts (it reads its configuration once).
    may::config().set_workers(1);
    let since = SystemTime::now();
    let mut c = common::criterion();
    yield_group(&mut c);
    spawn_join_group(&mut c);
    c.final_summary();
    report::print_peer_table(&GROUPS, &RUNTIMES, since);
}
