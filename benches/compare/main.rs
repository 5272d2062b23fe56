//! bobine beside its peers, every row of the comparison in one run: `cargo bench --bench
//! compare`. The runtimes alternate round by round; the tables give medians over the rounds and
//! each peer's median ÷ bobine's, with the machine they were measured on. They are printed,
//! written to `target/compare.md`, and, with `-- --readme`, put into README.md between its
//! `<!-- compare:begin -->` and `<!-- compare:end -->` markers.
//!
//! # Rows
//!
//! Every figure is a time per operation, lower is better; "threads" are scheduler threads:
//! bobine domains (`Builder::domains`), tokio's current-thread runtime for 1 and its
//! multi-thread runtime with 2 workers for 2, may workers (`may::config().set_workers`), and
//! for OS threads (std, crossbeam-channel) the CPUs they may use: pinned to one CPU for 1, free
//! on both for 2.
//!
//! - **yield** (1 thread): two tasks each yielding in a loop; one yield. bobine
//!   `thread::yield_now`, tokio `task::yield_now().await`, may `coroutine::yield_now` (after a
//!   start handshake: see `yields::may`), two OS threads calling `std::thread::yield_now`
//!   (`sched_yield`) for reference.
//! - **spawn + join** (1 and 2 threads): spawn a batch of empty tasks, then join them; one
//!   task. Batches of 1000 for bobine (`thread::spawn` + `join`), tokio (`tokio::spawn` +
//!   awaiting the handle) and may; of 100 for std threads.
//! - **ping-pong** (1 and 2 threads): two tasks pass a counter over two rendezvous channels;
//!   one round trip. bobine `sync::mpsc::sync_channel(0)`, tokio `mpsc::channel(1)`, may
//!   `mpsc::channel()` (unbounded), std `sync_channel(0)` and crossbeam `bounded(0)` between
//!   two OS threads.
//! - **mutex** (1 and 2 threads): 4 tasks each doing `lock; yield; unlock` on one mutex; one
//!   critical section. bobine `sync::Mutex` + `thread::yield_now`, tokio `sync::Mutex` +
//!   `task::yield_now`, may `sync::Mutex` + `coroutine::yield_now`, 4 std threads
//!   `std::sync::Mutex` + `std::thread::yield_now`.
//! - **select over 3 channels** (1 thread): one task receives from whichever of 3 channels has
//!   a message, a partner sends on them in turn; one message. bobine `event::choose` of the 3
//!   `recv_evt` then `sync` (as `benches/events.rs`), tokio `select!` over 3 `mpsc::channel(1)`,
//!   crossbeam `select!` over 3 `bounded(0)` (the partner an OS thread).
//! - **many parked tasks** (1 thread): `n` tasks spawned, each parked on one shared semaphore,
//!   then released and joined (the loop of `examples/million_parked.rs`): total time, time per
//!   task of each phase, resident and page-table memory (`VmRSS`, `VmPTE`) per parked task.
//!   bobine and tokio current-thread at 10⁴, 10⁵ and 10⁶ tasks; may at 10⁴ and 3·10⁴ (it
//!   aborts near 32 700 here, see `cases::MAY_MAX`); std threads at 10⁴, for reference.
//! - **servers** (one CPU): the echo (64-byte messages, 50 connections) and HTTP/1.1 keep-alive
//!   (100 connections) cases of `benches/net`, run by that bench's code (included below as the
//!   `net` module): server CPU per message or request, total and user space; bobine, tokio
//!   current-thread, may (echo) and may_minihttp (HTTP).
//!
//! bobine on 2 domains: the ping-pong's and the mutex's tasks are split evenly between the
//! domains (`runtimes::split_evenly`); spawn + join leaves placement to bobine's scheduler.
//! tokio and may place their tasks themselves.
//!
//! # How it measures
//!
//! In each round, every case runs once, the runtimes of a row one after the other (the order
//! rotated by one each round), so that the drift of a shared machine hits them alike. Each
//! measurement is a child process, this binary re-executed (`child.rs`): may reads its worker
//! count once per process, runtimes leave threads and caches behind, and memory must be
//! measured per runtime in isolation. A micro-benchmark child warms its loop up while finding
//! how many operations fill a quarter of the sample, then times one run of about the sample
//! (100 ms); every run starts a fresh bobine or tokio runtime outside the timing (may's
//! scheduler is global: it starts with the first run and lives as long as the child). See
//! `harness.rs` for the rounds and `tables.rs` for the report.
//!
//! # Running it
//!
//! ```text
//! cargo bench --bench compare                   # everything, about 5 minutes on 2 cores
//! cargo bench --bench compare -- --readme       # the same, then README.md's tables replaced
//! cargo bench --bench compare -- --readme-only  # README.md from the last target/compare.md
//! cargo bench --bench compare -- --quick        # a smoke check of every case, under a minute
//! cargo bench --bench compare -- pingpong parked-10000  # only cases whose name has one of these
//! ```
//!
//! Longer runs: `--rounds N` (micro-benchmarks, default 15), `--sample-ms N` (100),
//! `--parked-rounds N` (5), `--sizes 10000,100000,1000000`, `--net-rounds N` (3),
//! `--net-secs S` (4) and `--net-warmup S` (1). The net bench's `NET_BENCH_SERVER_CPU` and
//! `NET_BENCH_CLIENT_CPU` choose the servers' CPUs. Run outside `cargo bench` (without its
//! `--bench` argument), every option defaults to the quick run.
//!
//! # Go
//!
//! Go is not a dependency of this crate: `benches/go/compare.go` runs the same loops on
//! goroutines (lock + `runtime.Gosched` + unlock under `GOMAXPROCS`=1 and 2, spawn + join with a
//! `sync.WaitGroup`, unbuffered-channel ping-pong, `Gosched`, `select` over 3 channels, and a
//! million goroutines parked on one channel, each size in a child process) and prints medians
//! in the same units. It is run by hand (`apt-get install golang-go`, then `go run
//! benches/go/compare.go`), never by CI, and its figures are reported beside these tables, not
//! in them.

use std::time::Duration;

/// `benches/net`, for its servers, load generator and figures (its report and `main` are not
/// used here).
#[allow(dead_code)]
#[path = "../net/main.rs"]
mod net;

/// `benches/common`, through `net`, which includes it (a file included twice would be two
/// modules).
use net::common;

mod cases;
mod child;
mod harness;
mod machine;
mod mutex;
mod parked;
mod pingpong;
mod runtimes;
mod select3;
mod servers;
mod spawn;
mod tables;
mod yields;

/// What to run and how long, from the command line.
pub struct Options {
    /// A smoke check: few rounds, short samples.
    pub quick: bool,
    /// Rounds of the micro-benchmarks.
    pub rounds: usize,
    /// How long one micro-benchmark measurement runs.
    pub sample: Duration,
    /// Rounds of the parked-tasks cases.
    pub parked_rounds: usize,
    /// Task counts of the parked-tasks cases.
    pub sizes: Vec<usize>,
    /// Rounds of the server cases.
    pub net_rounds: usize,
    /// Seconds measured per server case, after the warm-up seconds.
    pub net_secs: f64,
    pub net_warmup: f64,
    /// Keep only the cases whose name contains one of these (all if empty).
    pub filters: Vec<String>,
    /// Put the tables into README.md after the run.
    pub readme: bool,
    /// Only put the last run's tables (`target/compare.md`) into README.md.
    pub readme_only: bool,
}

impl Options {
    /// Parses the arguments (`--bench`, which `cargo bench` passes, means a full run).
    fn parse(args: &[String]) -> Result<Options, String> {
        let quick = args.iter().any(|a| a == "--quick") || !args.iter().any(|a| a == "--bench");
        let mut o = Options {
            quick,
            rounds: if quick { 3 } else { 15 },
            sample: Duration::from_millis(if quick { 20 } else { 100 }),
            parked_rounds: if quick { 1 } else { 5 },
            sizes: if quick {
                vec![10_000, 100_000]
            } else {
                vec![10_000, 100_000, 1_000_000]
            },
            net_rounds: if quick { 1 } else { 3 },
            net_secs: if quick { 0.3 } else { 4.0 },
            net_warmup: if quick { 0.1 } else { 1.0 },
            filters: Vec::new(),
            readme: false,
            readme_only: false,
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let mut value = |what: &str| {
                it.next()
                    .ok_or_else(|| format!("{a} needs {what}"))
                    .map(String::as_str)
            };
            let number = |v: &str| v.parse::<f64>().map_err(|_| format!("{a}: {v:?}"));
            match a.as_str() {
                "--bench" | "--quick" => {}
                "--readme" => o.readme = true,
                "--readme-only" => o.readme_only = true,
                "--rounds" => o.rounds = number(value("a count")?)? as usize,
                "--sample-ms" => o.sample = Duration::from_millis(number(value("ms")?)? as u64),
                "--parked-rounds" => o.parked_rounds = number(value("a count")?)? as usize,
                "--sizes" => {
                    o.sizes = value("counts")?
                        .split(',')
                        .map(|s| s.trim().parse().map_err(|_| format!("--sizes: {s:?}")))
                        .collect::<Result<_, _>>()?
                }
                "--net-rounds" => o.net_rounds = number(value("a count")?)? as usize,
                "--net-secs" => o.net_secs = number(value("seconds")?)?,
                "--net-warmup" => o.net_warmup = number(value("seconds")?)?,
                f if !f.starts_with('-') => o.filters.push(f.to_owned()),
                other => return Err(format!("unknown option {other}")),
            }
        }
        if o.readme && o.quick {
            return Err("--readme wants a full run, not a quick one".to_owned());
        }
        Ok(o)
    }

    /// Whether the case named `name` runs.
    pub fn keeps(&self, name: &str) -> bool {
        self.filters.is_empty() || self.filters.iter().any(|f| name.contains(f.as_str()))
    }
}

/// A server child (`NET_BENCH_SERVE`), a measurement child (`--child`), or the comparison.
fn main() {
    if let Ok(name) = std::env::var(net::server::SERVE_ENV) {
        net::server::serve(&name);
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some(child::CHILD) {
        child::main(&args[1..]);
    }
    let opts = Options::parse(&args).unwrap_or_else(|e| {
        eprintln!("compare: {e} (the options are in benches/compare/main.rs's doc)");
        std::process::exit(2)
    });
    let report_path = tables::report_path();
    if opts.readme_only {
        let report = std::fs::read_to_string(&report_path)
            .unwrap_or_else(|e| panic!("{}: {e}", report_path.display()));
        tables::splice_readme(&report).unwrap_or_else(|e| panic!("{e}"));
        println!("README.md: tables replaced from {}", report_path.display());
        return;
    }
    let machine = machine::Machine::read();
    println!("compare: {}", machine.line());
    let results = harness::run(&opts);
    let report = tables::render(&results, &machine, &opts);
    println!("\n{report}");
    if let Some(dir) = report_path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    match std::fs::write(&report_path, &report) {
        Ok(()) => println!("written to {}", report_path.display()),
        Err(e) => eprintln!("compare: {}: {e}", report_path.display()),
    }
    if opts.readme {
        tables::splice_readme(&report).unwrap_or_else(|e| panic!("{e}"));
        println!("README.md: tables replaced");
    }
}
