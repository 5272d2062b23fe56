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

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use criterion::{BenchmarkGroup, Criterion, Throughput, measurement::WallTime};

mod common;

use common::{BATCH, bobine_yield};

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

/// Splits `iters` into batches of at most `batch` and calls `f` with each batch size.
fn batches(iters: u64, batch: u64, mut f: impl FnMut(u64)) {
    let mut left = iters;
    while left > 0 {
        let n = left.min(batch);
        f(n);
        left -= n;
    }
}

// ---------------------------------------------------------------------------------------------
// bobine

fn bobine_spawn_join(iters: u64) -> Duration {
    common::runtime().run(move || common::spawn_join_loop(iters))
}

// ---------------------------------------------------------------------------------------------
// tokio, current-thread runtime

fn tokio_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Runs `fut` as a spawned task (not as the `block_on` future, which tokio schedules apart).
fn tokio_run<F>(fut: F) -> Duration
where
    F: std::future::Future<Output = Duration> + Send + 'static,
{
    let rt = tokio_runtime();
    rt.block_on(async move { tokio::spawn(fut).await.expect("driver task panicked") })
}

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
        let mut left = iters;
        while left > 0 {
            let n = left.min(BATCH);
            for _ in 0..n {
                handles.push(tokio::spawn(async {}));
            }
            for h in handles.drain(..) {
                h.await.expect("empty task panicked");
            }
            left -= n;
        }
        start.elapsed()
    })
}

// ---------------------------------------------------------------------------------------------
// may, one worker

/// Spawns a may coroutine.
fn may_spawn<F, T>(f: F) -> may::coroutine::JoinHandle<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    // SAFETY: may marks spawn unsafe because a coroutine may move between worker threads (so a
    // thread-local it reads could change under it) and because blocking the OS thread stalls
    // the worker. Every closure given here touches no thread-local and blocks only through
    // may's own yield and join.
    unsafe { may::coroutine::spawn(f) }
}

fn may_yield(iters: u64) -> Duration {
    may_spawn(move || {
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
    .join()
    .expect("driver coroutine panicked")
}

fn may_spawn_join(iters: u64) -> Duration {
    may_spawn(move || {
        let mut handles = Vec::with_capacity(BATCH as usize);
        let start = Instant::now();
        batches(iters, BATCH, |n| {
            for _ in 0..n {
                handles.push(may_spawn(|| ()));
            }
            for h in handles.drain(..) {
                h.join().expect("empty coroutine panicked");
            }
        });
        start.elapsed()
    })
    .join()
    .expect("driver coroutine panicked")
}

// ---------------------------------------------------------------------------------------------
// std threads

fn std_spawn_join(iters: u64) -> Duration {
    let mut handles = Vec::with_capacity(STD_BATCH as usize);
    let start = Instant::now();
    batches(iters, STD_BATCH, |n| {
        for _ in 0..n {
            handles.push(std::thread::spawn(|| ()));
        }
        for h in handles.drain(..) {
            h.join().expect("empty thread panicked");
        }
    });
    start.elapsed()
}

// ---------------------------------------------------------------------------------------------
// criterion groups

fn bench(g: &mut BenchmarkGroup<'_, WallTime>, name: &str, f: fn(u64) -> Duration) {
    g.bench_function(name, |b| b.iter_custom(f));
}

fn yield_group(c: &mut Criterion) {
    let mut g = c.benchmark_group(GROUPS[0].0);
    g.throughput(Throughput::Elements(1));
    bench(&mut g, BOBINE, bobine_yield);
    bench(&mut g, TOKIO, tokio_yield);
    bench(&mut g, MAY, may_yield);
    g.finish();
}

fn spawn_join_group(c: &mut Criterion) {
    let mut g = c.benchmark_group(GROUPS[1].0);
    g.throughput(Throughput::Elements(1));
    bench(&mut g, BOBINE, bobine_spawn_join);
    bench(&mut g, TOKIO, tokio_spawn_join);
    bench(&mut g, MAY, may_spawn_join);
    bench(&mut g, STD, std_spawn_join);
    g.finish();
}

// ---------------------------------------------------------------------------------------------
// the ratio table

/// Where criterion writes its results, found the way criterion finds it.
fn criterion_dir() -> PathBuf {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return PathBuf::from(home);
    }
    if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(target).join("criterion");
    }
    if let Some(target) = cargo_metadata_target_dir() {
        return target.join("criterion");
    }
    PathBuf::from("target/criterion")
}

fn cargo_metadata_target_dir() -> Option<PathBuf> {
    let cargo = std::env::var_os("CARGO")?;
    let out = std::process::Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .output()
        .ok()?;
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    meta.get("target_directory")?.as_str().map(PathBuf::from)
}

/// The median (ns) criterion recorded for `group/function`, if it was written by this run.
fn median_ns(dir: &Path, group: &str, function: &str, since: SystemTime) -> Option<f64> {
    let path = dir
        .join(group)
        .join(function)
        .join("new")
        .join("estimates.json");
    let modified = std::fs::metadata(&path).and_then(|m| m.modified()).ok()?;
    if modified < since {
        return None; // left over from an earlier run (this one filtered it out)
    }
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).ok()?).ok()?;
    json.get("median")?.get("point_estimate")?.as_f64()
}

fn fmt_ns(v: Option<f64>) -> String {
    match v {
        Some(ns) if ns >= 100.0 => format!("{ns:.0}"),
        Some(ns) => format!("{ns:.1}"),
        None => "-".to_owned(),
    }
}

fn print_ratio_table(since: SystemTime) {
    let dir = criterion_dir();
    let mut rows = Vec::new();
    for (group, operation) in GROUPS {
        let medians: Vec<Option<f64>> = RUNTIMES
            .iter()
            .map(|r| median_ns(&dir, group, r, since))
            .collect();
        if medians.iter().all(Option::is_none) {
            continue;
        }
        let base = medians[0];
        let mut cells: Vec<String> = medians.iter().map(|m| fmt_ns(*m)).collect();
        cells.extend(medians[1..].iter().map(|m| match (*m, base) {
            (Some(m), Some(b)) => format!("{:.2}", m / b),
            _ => "-".to_owned(),
        }));
        rows.push(format!("| {operation} | {} |", cells.join(" | ")));
    }
    if rows.is_empty() {
        println!(
            "(no fresh criterion estimates under {}: no ratio table)",
            dir.display()
        );
        return;
    }
    println!();
    println!(
        "Medians per operation (ns); ratio = peer median / bobine median (> 1: bobine is faster)"
    );
    println!();
    println!(
        "| operation | bobine ns | tokio-ct ns | may ns | std ns \
         | tokio-ct / bobine | may / bobine | std / bobine |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for row in rows {
        println!("{row}");
    }
}

fn main() {
    // Before may's scheduler starts (it reads its configuration once).
    may::config().set_workers(1);
    let since = SystemTime::now();
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(25)
        .configure_from_args();
    yield_group(&mut c);
    spawn_join_group(&mut c);
    c.final_summary();
    print_ratio_table(since);
}
