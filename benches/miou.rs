//! The Miou face (`bobine::miou`) beside the same work on bobine's std-like face
//! (`bobine::thread`), in the same run, so that the cost of Miou's bookkeeping (the task tree,
//! the rules' checks, the outcome wrapped in `Result<T, miou::Error>`) shows as a ratio:
//!
//! - `miou_spawn_await_one_domain`: spawn a batch of 1000 empty children, then await the
//!   batch; the figure is per child. `miou`: `miou::call_cc` + `miou::await_` in
//!   `miou::run_with(0, ..)` (one domain). Std-like, on a one-domain `bobine::Builder`:
//!   `std-spawn_local` (`thread::spawn_local` + `join`: pinned to its domain, like a `call_cc`
//!   child) and `std-spawn` (`thread::spawn` + `join`). The target: Miou at most
//!   1.3× the std-like spawn + join.
//! - `miou_spawn_await_worker`: the same with children on another domain. `miou`:
//!   `miou::call` + `await_` from domain 0 in `miou::run_with(1, ..)` (2 domains: every child
//!   runs on worker 1). `std-spawn`: `thread::spawn` + `join` on a 2-domain runtime. The
//!   std-like face cannot bind a task to a domain: its tasks start on the spawner's domain and
//!   the idle domain takes some of them before they start, so the placement differs (the
//!   table's notes give the share that ran on domain 1 in one batch measured after the run).
//! - `miou_cancel_parked`: spawn a batch of 1000 children that each sleep for an hour, yield
//!   once (the run queue is FIFO: every child has started and parked when the spawner runs
//!   again), then cancel them one by one, each cancel waiting until its child has unwound; the
//!   figure is per child, spawn included. `miou`: `call_cc` + `miou::cancel`, one domain.
//!   `std-spawn_local`: `thread::spawn_local` + `JoinHandle::cancel` + `join`, one domain. Each
//!   child counts itself when it starts, and every sample checks that all of them had started
//!   (a child cancelled before it starts never runs, which would be cheaper). The table's
//!   notes give the difference with spawn + await of a child that does not park (the
//!   `miou_spawn_await_one_domain` rows): the park, the cancellation and the unwinding.
//! - `miou_parallel_1_worker`, `miou_parallel_2_workers`: one iteration maps
//!   `|x| x.wrapping_mul(31)` over 100 000 `u64`s, one child per item, and collects the
//!   results in input order; the table gives the figure per item. `miou`: `miou::parallel` in
//!   `run_with(1, ..)` (2 domains: domain 0 spawns and awaits, worker 1 runs every item) and
//!   `run_with(2, ..)` (3 domains on this 2-core machine). `std-spawn`: the same spread by
//!   hand, `thread::spawn` per item then `join` in order, on a runtime with as many domains
//!   (the items start on domain 0 and the idle domains take some of them: domain 0 runs items
//!   too, unlike in `parallel`; and all 100 000 are live at once, each with its own stack,
//!   while `parallel`'s workers run items as they come).
//!
//! Every loop runs inside the main task of its runtime, and each criterion sample starts a
//! fresh runtime outside the timing (`iter_custom`). After the groups have run, a markdown
//! table gives each function's median (read back from criterion's
//! `<target>/criterion/miou_<operation>/<function>/new/estimates.json`) and the ratio
//! Miou / std-like: above 1 means Miou costs more. Only ratios from one run mean anything on
//! a shared machine; the CPU model and the load average are printed beside the table.
//! Criterion draws no plots here: they would double the run time (about a minute without).
//!
//! Run with `cargo bench --bench miou` (criterion arguments follow `--`, e.g.
//! `cargo bench --bench miou -- miou_cancel_parked`).

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime};

use bobine::miou;
use criterion::{Criterion, SamplingMode, Throughput};

mod common;

use common::report::{self, Align, cpu_model, fmt_ns, fmt_ratio, load_average, median_ns};
use common::{BATCH, Loop, batches, group, runtime, spawn_join_loop};

/// Items in one `parallel` call.
const ITEMS: u64 = 100_000;
/// How long a child that parks sleeps: far longer than any run, so it stays parked.
const PARK_FOR: Duration = Duration::from_secs(3600);

const MIOU: &str = "miou";
const STD_SPAWN: &str = "std-spawn";
const STD_LOCAL: &str = "std-spawn_local";

/// A row of the table: a Miou function against a std-like one in one criterion group.
struct Row {
    group: &'static str,
    operation: &'static str,
    miou: &'static str,
    std_like: (&'static str, &'static str),
    /// Criterion's figure is per this many operations (one `parallel` call: [`ITEMS`]).
    per: u64,
    /// The largest ratio Miou / std-like the project aims at, if it has set one.
    target: Option<f64>,
}

const ONE_DOMAIN: &str = "miou_spawn_await_one_domain";
const WORKER: &str = "miou_spawn_await_worker";
const CANCEL: &str = "miou_cancel_parked";
const PARALLEL_1: &str = "miou_parallel_1_worker";
const PARALLEL_2: &str = "miou_parallel_2_workers";

const ROWS: [Row; 6] = [
    Row {
        group: ONE_DOMAIN,
        operation: "spawn + await, one domain",
        miou: "call_cc + await_",
        std_like: (STD_LOCAL, "spawn_local + join"),
        per: 1,
        target: Some(1.3),
    },
    Row {
        group: ONE_DOMAIN,
        operation: "spawn + await, one domain",
        miou: "call_cc + await_",
        std_like: (STD_SPAWN, "spawn + join"),
        per: 1,
        target: Some(1.3),
    },
    Row {
        group: WORKER,
        operation: "spawn + await on another domain (2 domains)",
        miou: "call + await_",
        std_like: (STD_SPAWN, "spawn + join (placed by the scheduler)"),
        per: 1,
        target: None,
    },
    Row {
        group: CANCEL,
        operation: "cancel a parked child, spawn included, one domain",
        miou: "call_cc + cancel",
        std_like: (STD_LOCAL, "spawn_local + cancel + join"),
        per: 1,
        target: None,
    },
    Row {
        group: PARALLEL_1,
        operation: "parallel, per item of 100 000, 1 worker (2 domains)",
        miou: "parallel",
        std_like: (STD_SPAWN, "spawn + join per item, 2 domains"),
        per: ITEMS,
        target: None,
    },
    Row {
        group: PARALLEL_2,
        operation: "parallel, per item of 100 000, 2 workers (3 domains)",
        miou: "parallel",
        std_like: (STD_SPAWN, "spawn + join per item, 3 domains"),
        per: ITEMS,
        target: None,
    },
];

// ---------------------------------------------------------------------------------------------
// spawn + await

/// Spawns `iters` children with `spawn` in batches of [`BATCH`], awaiting each batch before
/// the next; must run in a Miou task. Returns the time taken.
fn miou_spawn_await_loop(iters: u64, spawn: impl Fn() -> miou::Promise<()>) -> Duration {
    let mut promises = Vec::with_capacity(BATCH as usize);
    let start = Instant::now();
    for n in batches(iters, BATCH) {
        for _ in 0..n {
            promises.push(spawn());
        }
        for p in promises.drain(..) {
            miou::await_exn(p);
        }
    }
    start.elapsed()
}

fn miou_call_cc(iters: u64) -> Duration {
    miou::run_with(0, move || {
        miou_spawn_await_loop(iters, || miou::call_cc(|| ()))
    })
}

fn miou_call(iters: u64) -> Duration {
    miou::run_with(1, move || {
        miou_spawn_await_loop(iters, || miou::call(|| ()))
    })
}

fn std_spawn_local(iters: u64) -> Duration {
    runtime().run(move || {
        let mut handles = Vec::with_capacity(BATCH as usize);
        let start = Instant::now();
        for n in batches(iters, BATCH) {
            for _ in 0..n {
                handles.push(bobine::thread::spawn_local(|| ()));
            }
            for h in handles.drain(..) {
                h.join().expect("empty task panicked");
            }
        }
        start.elapsed()
    })
}

fn std_spawn_one_domain(iters: u64) -> Duration {
    runtime().run(move || spawn_join_loop(iters))
}

fn std_spawn_two_domains(iters: u64) -> Duration {
    bobine::Builder::new()
        .domains(2)
        .run(move || spawn_join_loop(iters))
}

/// How many of [`BATCH`] std-like tasks spawned from domain 0 of a 2-domain runtime ran on
/// another domain (one batch, measured apart from the timing).
fn std_spawn_placement() -> usize {
    bobine::Builder::new().domains(2).run(|| {
        let here = std::thread::current().id();
        let handles: Vec<_> = (0..BATCH)
            .map(|_| bobine::thread::spawn(|| std::thread::current().id()))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("empty task panicked"))
            .filter(|&id| id != here)
            .count()
    })
}

// ---------------------------------------------------------------------------------------------
// cancellation of a parked child

/// Checks that every child had started (and so parked) before it was cancelled.
fn check_started(started: &Cell<u64>, iters: u64) {
    assert_eq!(
        started.get(),
        iters,
        "a child was cancelled before it started: the figure would not be that of a parked child"
    );
}

fn miou_cancel(iters: u64) -> Duration {
    miou::run_with(0, move || {
        let started = Rc::new(Cell::new(0u64));
        let mut promises = Vec::with_capacity(BATCH as usize);
        let start = Instant::now();
        for n in batches(iters, BATCH) {
            for _ in 0..n {
                let started = started.clone();
                promises.push(miou::call_cc(move || {
                    started.set(started.get() + 1);
                    bobine::thread::sleep(PARK_FOR);
                }));
            }
            // FIFO: every child runs up to its sleep before this task runs again.
            miou::yield_();
            for p in promises.drain(..) {
                miou::cancel(&p);
            }
        }
        let elapsed = start.elapsed();
        check_started(&started, iters);
        elapsed
    })
}

fn std_cancel(iters: u64) -> Duration {
    runtime().run(move || {
        let started = Rc::new(Cell::new(0u64));
        let mut handles = Vec::with_capacity(BATCH as usize);
        let start = Instant::now();
        for n in batches(iters, BATCH) {
            for _ in 0..n {
                let started = started.clone();
                handles.push(bobine::thread::spawn_local(move || {
                    started.set(started.get() + 1);
                    bobine::thread::sleep(PARK_FOR);
                }));
            }
            // FIFO: every child runs up to its sleep before this task runs again.
            bobine::thread::yield_now();
            for h in handles.drain(..) {
                h.cancel();
                let payload = h.join().expect_err("a cancelled task gives Err");
                assert!(payload.is::<bobine::TaskCancelled>());
            }
        }
        let elapsed = start.elapsed();
        check_started(&started, iters);
        elapsed
    })
}

// ---------------------------------------------------------------------------------------------
// parallel

/// The work of one item.
fn item(x: u64) -> u64 {
    x.wrapping_mul(31)
}

/// Checks the results of one call: all of them, in input order.
fn check_items(out: &[u64]) {
    assert_eq!(out.len() as u64, ITEMS);
    assert_eq!(out[out.len() - 1], item(ITEMS - 1));
}

/// `iters` calls of `miou::parallel` over [`ITEMS`] items with `workers` worker domains.
fn miou_parallel(workers: usize, iters: u64) -> Duration {
    miou::run_with(workers, move || {
        let start = Instant::now();
        for _ in 0..iters {
            let out: Vec<u64> = miou::parallel(item, (0..ITEMS).collect())
                .into_iter()
                .map(|r| r.expect("item panicked"))
                .collect();
            check_items(&out);
        }
        start.elapsed()
    })
}

/// The same by hand on a runtime with `domains` domains: a task per item, joined in order.
fn std_parallel(domains: usize, iters: u64) -> Duration {
    bobine::Builder::new().domains(domains).run(move || {
        let start = Instant::now();
        for _ in 0..iters {
            let handles: Vec<_> = (0..ITEMS)
                .map(|x| bobine::thread::spawn(move || item(x)))
                .collect();
            let out: Vec<u64> = handles
                .into_iter()
                .map(|h| h.join().expect("item panicked"))
                .collect();
            check_items(&out);
        }
        start.elapsed()
    })
}

fn miou_parallel_1(iters: u64) -> Duration {
    miou_parallel(1, iters)
}

fn miou_parallel_2(iters: u64) -> Duration {
    miou_parallel(2, iters)
}

fn std_parallel_2(iters: u64) -> Duration {
    std_parallel(2, iters)
}

fn std_parallel_3(iters: u64) -> Duration {
    std_parallel(3, iters)
}

/// A group whose iteration is one call over [`ITEMS`] items (up to half a second by hand):
/// criterion's fewest samples, with a flat number of iterations each, keep it near the
/// measurement time.
fn parallel_group(c: &mut Criterion, name: &str, loops: &[(&str, Loop)]) {
    let mut g = c.benchmark_group(name);
    g.throughput(Throughput::Elements(ITEMS));
    g.sampling_mode(SamplingMode::Flat);
    g.sample_size(10);
    for &(function, f) in loops {
        g.bench_function(function, |b| b.iter_custom(f));
    }
    g.finish();
}

// ---------------------------------------------------------------------------------------------
// the table

fn print_ratio_table(since: SystemTime, load_before: &str) {
    let median = |group: &str, function: &str, per: u64| {
        median_ns(group, function, since).map(|m| m / per as f64)
    };
    let mut rows = Vec::new();
    for r in &ROWS {
        let m = median(r.group, MIOU, r.per);
        let s = median(r.group, r.std_like.0, r.per);
        if m.is_none() && s.is_none() {
            continue;
        }
        let target = match (r.target, m, s) {
            (Some(t), Some(m), Some(s)) if m / s <= t => format!("≤ {t:.2}: met"),
            (Some(t), Some(_), Some(_)) => format!("≤ {t:.2}: MISSED"),
            (Some(t), _, _) => format!("≤ {t:.2}"),
            (None, _, _) => String::new(),
        };
        rows.push(vec![
            r.operation.to_owned(),
            r.miou.to_owned(),
            fmt_ns(m),
            r.std_like.1.to_owned(),
            fmt_ns(s),
            fmt_ratio(m, s),
            target,
        ]);
    }
    let printed = report::print_table(
        "Medians per operation (ns); ratio = Miou median / std-like median (> 1: Miou costs more)",
        &[
            ("operation", Align::Left),
            ("Miou", Align::Left),
            ("ns", Align::Right),
            ("std-like", Align::Left),
            ("ns", Align::Right),
            ("Miou / std-like", Align::Right),
            ("target", Align::Left),
        ],
        &rows,
    );
    if !printed {
        return;
    }
    println!();
    let difference = |cancel: Option<f64>, plain: Option<f64>| match (cancel, plain) {
        (Some(c), Some(p)) => format!("{:.0}", c - p),
        _ => "-".to_owned(),
    };
    println!(
        "cancel of a parked child minus spawn + await of one that does not park (ns): \
         Miou {}, std-like {}",
        difference(median(CANCEL, MIOU, 1), median(ONE_DOMAIN, MIOU, 1)),
        difference(
            median(CANCEL, STD_LOCAL, 1),
            median(ONE_DOMAIN, STD_LOCAL, 1)
        ),
    );
    if median(WORKER, STD_SPAWN, 1).is_some() {
        println!(
            "spawn + join on 2 domains: the std-like face cannot bind a task to a domain; in one \
             batch measured after the run, {} of {BATCH} tasks ran on domain 1 (Miou's call: all)",
            std_spawn_placement()
        );
    }
    println!(
        "parallel: Miou's domain 0 only spawns and awaits, and its workers run the items as they \
         come; by hand, domain 0 runs the items the other domains do not take, and all 100 000 \
         tasks are live at once (spawned before the first join), each with a stack of its own \
         beyond the domain's pool. The same by hand in batches of {BATCH} (empty tasks, 2 \
         domains) is the std-like figure of the spawn + await row on another domain: {} ns.",
        fmt_ns(median(WORKER, STD_SPAWN, 1))
    );
    println!(
        "CPU: {} ({} CPUs); load average before the run: {load_before}; after: {}",
        cpu_model(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_average()
    );
}

fn main() {
    let since = SystemTime::now();
    let load_before = load_average();
    // Without plots: drawing them (plotters) would double the run time.
    let mut c = common::criterion().without_plots();
    group(
        &mut c,
        ONE_DOMAIN,
        &[
            (MIOU, miou_call_cc),
            (STD_LOCAL, std_spawn_local),
            (STD_SPAWN, std_spawn_one_domain),
        ],
    );
    group(
        &mut c,
        WORKER,
        &[(MIOU, miou_call), (STD_SPAWN, std_spawn_two_domains)],
    );
    group(
        &mut c,
        CANCEL,
        &[(MIOU, miou_cancel), (STD_LOCAL, std_cancel)],
    );
    parallel_group(
        &mut c,
        PARALLEL_1,
        &[(MIOU, miou_parallel_1), (STD_SPAWN, std_parallel_2)],
    );
    parallel_group(
        &mut c,
        PARALLEL_2,
        &[(MIOU, miou_parallel_2), (STD_SPAWN, std_parallel_3)],
    );
    c.final_summary();
    print_ratio_table(since, &load_before);
}
