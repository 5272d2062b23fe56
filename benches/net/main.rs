//! Servers side by side: bobine's `bobine::net` against tokio (current-thread) and may, measured
//! by the server's CPU time per request as well as by the request rate.
//!
//! Workloads (`<workload>/<server>` names the cases):
//!
//! - `echo`: 50 connections, each in a closed loop writing a 64-byte message and reading it
//!   back. Servers: `bobine` (one domain, a task per connection, blocking-style `read` /
//!   `write_all`), `tokio-ct` (current-thread runtime, a spawned task per connection,
//!   `tokio::net`), `may` (one worker, a coroutine per connection, `may::net`). Every echo server
//!   sets `TCP_NODELAY` and echoes through a 4 KiB heap buffer.
//! - `http`: HTTP/1.1 plaintext keep-alive, 100 connections, each in a closed loop (as wrk does)
//!   sending `GET / HTTP/1.1` with a `Host` header and reading the whole response. Servers:
//!   `bobine` and `tokio-ct` run the same connection code (one `read`, parse every complete
//!   request with `httparse`, one `write_all` of the responses, [`http::HttpConn`]) with a task per
//!   connection; `may-minihttp` is `may_minihttp::HttpServer` on one may worker. All three
//!   answer with the same bytes (may_minihttp's: status, `Server`, `Date`, `Content-Length`,
//!   `Hello, world!`), and none sets `TCP_NODELAY` (may_minihttp does not).
//! - `idle` (bobine only, the case `idle/bobine`): the bobine echo server (listening with a
//!   backlog of 4096) gets 19 000 connections, opened in batches of 1000 (each batch waited on
//!   until the server holds it), held idle for a second (`NET_BENCH_IDLE_SECS`); then the
//!   server's resident memory is read from `/proc/<pid>/status`, and one 64-byte message goes
//!   out on every connection; every echo must come back. Both processes raise their soft
//!   descriptor limit to the hard one. It runs once, whatever `NET_BENCH_ROUNDS` says.
//!
//! How it runs: every server is a child process (this bench binary re-executed with
//! `NET_BENCH_SERVE=<case>`) pinned, all its threads, to one CPU (`NET_BENCH_SERVER_CPU`, 0 by
//! default); it binds the port the parent picked and says `ready` on its standard output. The
//! load generator is the same for every server: one thread of the bench process pinned to
//! another CPU (`NET_BENCH_CLIENT_CPU`, 1), driving all the connections through one level-
//! triggered epoll (connections are opened before the clock starts). After a warm-up
//! (`NET_BENCH_WARMUP_SECS`, default 1) it counts completed requests for `NET_BENCH_SECS`
//! (default 3) and reads the server's CPU time over exactly that window from
//! `/proc/<pid>/stat` (user and system, all threads), its context switches from
//! `/proc/<pid>/task/*/status`, and its own CPU time with `getrusage(RUSAGE_THREAD)`; the time
//! each side spent runnable but waiting for its CPU (`schedstat`'s run delay, "queued") says
//! whether other processes disturbed the run: rates mean little unless both are near 0. The
//! kernel here samples the user/system split at the scheduler tick (`CONFIG_TICK_CPU_ACCOUNTING`),
//! so the user-space figure of one 3-second window is good to about ±15%. Each case runs
//! `NET_BENCH_ROUNDS` times (default 2), round-robin with the others, and the tables give the
//! round of each case with the least server CPU per request: other load on the machine only
//! ever adds to that figure (without `CONFIG_IRQ_TIME_ACCOUNTING` the softirq work of other
//! processes' packets is charged to whatever task it interrupts), so the least disturbed round
//! is the best estimate. `NET_BENCH_PICK=median` gives the median of each figure instead. Raise
//! `NET_BENCH_SECS` or `NET_BENCH_ROUNDS` to tighten the figures. On a shared machine whose
//! scheduler groups processes by session (`/proc/sys/kernel/sched_autogroup_enabled`), a session
//! of its own with a raised priority keeps other work off the pinned CPUs:
//! `setsid sh -c 'echo -20 > /proc/self/autogroup; exec cargo bench --bench net'`.
//!
//! Run with `cargo bench --bench net`; arguments after `--` that do not start with `-` keep only
//! the cases whose name contains one of them (`cargo bench --bench net -- echo`, `-- http/may`).
//! Run without `--bench` (as `cargo test --benches` does), every case runs for a fraction of a
//! second, as a smoke test.
//!
//! The tables give, per case: requests (messages) per second, the server's CPU microseconds per
//! request (total, user, system), how busy the server and the load generator were, the server's
//! context switches per request, how long each side waited for its CPU, and each figure divided
//! by bobine's. The project's targets follow each table, MET or MISSED.
//!
//! Files: `cases.rs` (the cases and the configuration), `server.rs` (the server child process),
//! `echo.rs` and `http.rs` (bobine's servers), `peer_servers.rs` (tokio's, may's and
//! may_minihttp's), `load.rs` (the load generator and its figures), `idle.rs` (the idle case),
//! `os.rs` (pinning and CPU accounting); this file runs the cases and prints the report.
//! The modules reach each other through `super::`, never `crate::`, so that `benches/compare`
//! can include this file as a module (`#[path]`) and run the same servers and load generator.

use std::time::Duration;

#[path = "../common/mod.rs"]
pub(crate) mod common;

pub(crate) mod cases;
mod echo;
mod http;
mod idle;
pub(crate) mod load;
pub(crate) mod os;
mod peer_servers;
pub(crate) mod server;

use cases::{Case, Config, Server, WORKLOADS, Workload, all_cases};
use common::report::{Align, print_table};
use idle::{print_idle, run_idle};
use load::{Sample, run_case};
use os::{load_average, pin_to};
use server::{SERVE_ENV, serve};

/// Connections of the echo workload.
const ECHO_CONNS: usize = 50;
/// Size of an echo message.
const ECHO_LEN: usize = 64;
/// Connections of the HTTP workload.
const HTTP_CONNS: usize = 100;
/// How long the load generator waits for a response before it gives up on the server.
const STALL: Duration = Duration::from_secs(10);
/// Run-queue wait (% of wall time) above which a run is flagged as disturbed.
const DISTURBED: f64 = 5.0;
/// The name of the idle-connections case (bobine's echo server only).
const IDLE_CASE: &str = "idle/bobine";
/// Connections the idle case holds open (the descriptor limit here is 20 000 per process).
const IDLE_CONNS: usize = 19_000;
/// The listen backlog of the idle case's server.
const IDLE_BACKLOG: i32 = 4096;
/// Connections the idle case opens before it waits for the server to have accepted them all
/// (well under [`IDLE_BACKLOG`], so the accept queue never overflows).
const IDLE_BATCH: usize = 1000;

// ---------------------------------------------------------------------------------------------
// Report

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    }
}

/// The round with the least server CPU per request.
fn best_sample(samples: &[Sample]) -> Sample {
    *samples
        .iter()
        .min_by(|a, b| a.cpu_us.total_cmp(&b.cpu_us))
        .expect("at least one round")
}

/// The median of each figure over `samples` (figure by figure).
pub(crate) fn median_sample(samples: &[Sample]) -> Sample {
    let m = |f: fn(&Sample) -> f64| median(samples.iter().map(f).collect());
    Sample {
        rate: m(|s| s.rate),
        cpu_us: m(|s| s.cpu_us),
        user_us: m(|s| s.user_us),
        sys_us: m(|s| s.sys_us),
        server_busy: m(|s| s.server_busy),
        client_busy: m(|s| s.client_busy),
        switches: m(|s| s.switches),
        server_queued: m(|s| s.server_queued),
        client_queued: m(|s| s.client_queued),
    }
}

fn ratio(num: f64, den: f64) -> String {
    if den > 0.0 {
        format!("{:.2}", num / den)
    } else {
        "-".to_owned()
    }
}

fn verdict(met: bool) -> &'static str {
    if met { "MET" } else { "MISSED" }
}

/// Prints one workload's table and its targets.
fn print_workload(workload: Workload, results: &[(Case, Sample)], cfg: &Config) {
    let rows: Vec<(Case, Sample)> = results
        .iter()
        .filter(|(c, _)| c.workload == workload)
        .copied()
        .collect();
    if rows.is_empty() {
        return;
    }
    let unit = workload.unit();
    let base = rows
        .iter()
        .find(|(c, _)| c.server == Server::Bobine)
        .map(|r| r.1);
    let mut table = Vec::new();
    for (case, s) in &rows {
        let mut row = vec![
            case.server_name().to_owned(),
            format!("{:.0}", s.rate),
            format!("{:.2}", s.cpu_us),
            format!("{:.2}", s.user_us),
            format!("{:.2}", s.sys_us),
            format!("{:.0}", s.server_busy),
            format!("{:.0}", s.client_busy),
            format!("{:.0} / {:.0}", s.server_queued, s.client_queued),
            format!("{:.2}", s.switches),
        ];
        match base {
            Some(b) if case.server != Server::Bobine => {
                row.push(ratio(s.rate, b.rate));
                row.push(ratio(s.cpu_us, b.cpu_us));
                row.push(ratio(s.user_us, b.user_us));
            }
            _ => row.extend(["-".to_owned(), "-".to_owned(), "-".to_owned()]),
        }
        table.push(row);
    }
    let rate_col = format!("{unit}/s");
    let cpu_col = format!("CPU µs/{unit}");
    let user_col = format!("user µs/{unit}");
    let sys_col = format!("sys µs/{unit}");
    let csw_col = format!("ctx sw/{unit}");
    let columns = [
        ("server", Align::Left),
        (rate_col.as_str(), Align::Right),
        (cpu_col.as_str(), Align::Right),
        (user_col.as_str(), Align::Right),
        (sys_col.as_str(), Align::Right),
        ("server busy %", Align::Right),
        ("client busy %", Align::Right),
        ("queued % (server / client)", Align::Right),
        (csw_col.as_str(), Align::Right),
        ("rate ÷ bobine", Align::Right),
        ("CPU ÷ bobine", Align::Right),
        ("user ÷ bobine", Align::Right),
    ];
    let caption = format!(
        "{} ({} connections{}): {} s measured after {} s warm-up, {} of {} round(s). \
         CPU = server process CPU per {unit}; ratio = peer / bobine (CPU ratios > 1: bobine \
         uses less; rate ratio < 1: bobine is faster)",
        workload.name(),
        workload.connections(),
        match workload {
            Workload::Echo => format!(", {ECHO_LEN}-byte messages"),
            Workload::Http => ", keep-alive GET".to_owned(),
        },
        cfg.measure.as_secs_f64(),
        cfg.warmup.as_secs_f64(),
        if cfg.median {
            "median"
        } else {
            "least-CPU round"
        },
        cfg.rounds,
    );
    print_table(&caption, &columns, &table);
    let disturbed: Vec<&str> = rows
        .iter()
        .filter(|(_, s)| s.server_queued.max(s.client_queued) > DISTURBED)
        .map(|(c, _)| c.server_name())
        .collect();
    if !disturbed.is_empty() {
        println!(
            "\nDISTURBED: other processes took the pinned CPUs for more than {DISTURBED}% of the \
             time ({}): rates are not comparable, CPU per {unit} less so.",
            disturbed.join(", ")
        );
    }

    let Some(b) = base else {
        println!("\n(no bobine row: no targets)");
        return;
    };
    println!();
    let peers: &[Server] = match workload {
        Workload::Echo => &[Server::TokioCt],
        Workload::Http => &[Server::TokioCt, Server::May],
    };
    for &peer in peers {
        let Some((case, p)) = rows.iter().find(|(c, _)| c.server == peer) else {
            continue;
        };
        let name = case.server_name();
        println!(
            "- total server CPU per {unit} ≤ {name}'s: {:.2} vs {:.2} µs → {}",
            b.cpu_us,
            p.cpu_us,
            verdict(b.cpu_us <= p.cpu_us)
        );
        println!(
            "- user-space CPU per {unit} ≤ 0.8 × {name}'s: {:.2} vs {:.2} µs → {}",
            b.user_us,
            0.8 * p.user_us,
            verdict(b.user_us <= 0.8 * p.user_us)
        );
        if workload == Workload::Http {
            println!(
                "- {unit}/s ≥ {name}'s: {:.0} vs {:.0} → {}",
                b.rate,
                p.rate,
                verdict(b.rate >= p.rate)
            );
        }
    }
}

fn main() {
    if let Ok(name) = std::env::var(SERVE_ENV) {
        serve(&name);
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = !args.iter().any(|a| a == "--bench");
    let filters: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
    let cfg = Config::from_env(quick);
    let cases: Vec<Case> = all_cases()
        .filter(|c| filters.is_empty() || filters.iter().any(|f| c.name().contains(f.as_str())))
        .collect();
    let idle = filters.is_empty() || filters.iter().any(|f| IDLE_CASE.contains(f.as_str()));
    if cases.is_empty() && !idle {
        println!("net: no case matches {filters:?}");
        return;
    }
    if let Err(e) = pin_to(cfg.client_cpu) {
        eprintln!(
            "net: cannot pin the load generator to CPU {}: {e}",
            cfg.client_cpu
        );
    }
    let load_before = load_average();
    let mut samples: Vec<(Case, Vec<Sample>)> = cases.iter().map(|&c| (c, Vec::new())).collect();
    for round in 1..=cfg.rounds {
        for (case, runs) in &mut samples {
            let s = run_case(*case, &cfg)
                .unwrap_or_else(|e| panic!("{} (round {round}): {e}", case.name()));
            println!(
                "{:<18} round {round}: {:>8.0} {}/s, server {:.2} µs/{} ({:.2} user, {:.2} sys), \
                 busy: server {:.0}%, client {:.0}%; queued: server {:.0}%, client {:.0}%",
                case.name(),
                s.rate,
                case.workload.unit(),
                s.cpu_us,
                case.workload.unit(),
                s.user_us,
                s.sys_us,
                s.server_busy,
                s.client_busy,
                s.server_queued,
                s.client_queued
            );
            runs.push(s);
        }
    }
    let idle_result = idle.then(|| {
        let r = run_idle(&cfg).unwrap_or_else(|e| panic!("{IDLE_CASE}: {e}"));
        println!(
            "{IDLE_CASE:<18} {} held, {} answered in {:.1} ms, server RSS {} KiB",
            r.held,
            r.answered,
            r.answer_time.as_secs_f64() * 1e3,
            r.rss_kib
        );
        r
    });
    let results: Vec<(Case, Sample)> = samples
        .iter()
        .map(|(c, runs)| {
            let pick = if cfg.median {
                median_sample(runs)
            } else {
                best_sample(runs)
            };
            (*c, pick)
        })
        .collect();
    for workload in WORKLOADS {
        print_workload(workload, &results, &cfg);
    }
    if let Some(r) = &idle_result {
        print_idle(r, &cfg);
    }
    println!();
    println!(
        "Server pinned to CPU {}, load generator to CPU {}; load average {load_before} before, \
         {} after.",
        cfg.server_cpu,
        cfg.client_cpu,
        load_average()
    );
}
