//! The report: markdown tables of the medians and ratios, in two parts. The first (header,
//! one table per row of the comparison, notes) is what README.md shows between its
//! `<!-- compare:begin -->` and `<!-- compare:end -->` markers; the second (every case with
//! its spread over the rounds, failures, placements) follows a `<!-- details -->` line in
//! `target/compare.md` and on the standard output.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::Options;
use crate::cases::{MAY_MAX, OPS, Peer, STD_MAX};
use crate::harness::{MicroResult, NetResult, ParkedResult, Results, median};
use crate::machine::Machine;

/// The README's markers around the generated text.
pub const BEGIN: &str = "<!-- compare:begin -->";
pub const END: &str = "<!-- compare:end -->";
/// The line of `target/compare.md` after which the details start.
pub const DETAILS: &str = "<!-- details -->";

/// `1 234 567`: digits grouped by three, as in the README.
fn grouped(v: u64) -> String {
    let s = v.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

/// A time in nanoseconds: `7.3 ns`, `213 ns`, `70 402 ns`, `1.25 ms`.
pub fn fmt_ns(ns: f64) -> String {
    if ns < 100.0 {
        format!("{ns:.1} ns")
    } else if ns < 1e6 {
        format!("{} ns", grouped(ns.round() as u64))
    } else {
        format!("{:.2} ms", ns / 1e6)
    }
}

/// A time in seconds: `85.2 ms`, `1.02 s`.
fn fmt_s(s: f64) -> String {
    if s < 1.0 {
        format!("{:.1} ms", s * 1e3)
    } else {
        format!("{s:.2} s")
    }
}

/// A ratio: `29×`, `1.35×`, `0.47×`, `0.011×`.
pub fn fmt_ratio(r: f64) -> String {
    if r >= 10.0 {
        format!("{r:.0}×")
    } else if r >= 0.1 {
        format!("{r:.2}×")
    } else {
        format!("{r:.3}×")
    }
}

/// `value (ratio)` when there is a baseline to divide by, else `value`.
fn with_ratio(text: String, value: f64, base: Option<f64>) -> String {
    match base {
        Some(b) if b > 0.0 => format!("{text} ({})", fmt_ratio(value / b)),
        _ => text,
    }
}

/// A markdown table of `rows` under `columns`; `align` has one letter per column, `l` (left)
/// or `r` (right).
fn table(out: &mut String, columns: &[&str], align: &str, rows: &[Vec<String>]) {
    debug_assert_eq!(columns.len(), align.len());
    let _ = writeln!(out, "| {} |", columns.join(" | "));
    let rule: Vec<&str> = align
        .chars()
        .map(|a| if a == 'l' { "---" } else { "---:" })
        .collect();
    let _ = writeln!(out, "|{}|", rule.join("|"));
    for row in rows {
        let _ = writeln!(out, "| {} |", row.join(" | "));
    }
    out.push('\n');
}

/// The whole report: the README part, the [`DETAILS`] line, the details.
pub fn render(results: &Results, machine: &Machine, opts: &Options) -> String {
    let mut out = String::new();
    header(&mut out, results, machine, opts);
    micro_table(&mut out, &results.micro);
    parked_table(&mut out, &results.parked);
    net_table(&mut out, &results.net);
    let _ = writeln!(out, "{DETAILS}\n");
    micro_details(&mut out, &results.micro);
    parked_details(&mut out, &results.parked);
    net_details(&mut out, &results.net);
    out
}

/// The header: where, when, how many rounds, which way the ratios go.
fn header(out: &mut String, results: &Results, machine: &Machine, opts: &Options) {
    if opts.quick {
        let _ = writeln!(
            out,
            "**Quick run** (a smoke check: few rounds, short samples; not figures to publish).\n"
        );
    }
    let _ = writeln!(
        out,
        "Measured by `cargo bench --bench compare` on {}; load average {} before the run, {} \
         after; the run took {:.1} min.\n",
        machine.line(),
        results.load_before,
        results.load_after,
        results.elapsed.as_secs_f64() / 60.0
    );
    let _ = writeln!(
        out,
        "Medians over rounds: {} of the operations (samples of {} ms), {} of the parked tasks, \
         {} of the servers ({} s each after {} s of warm-up); within a round the runtimes of a \
         row run one after the other, each in a fresh child process. In brackets: the peer's \
         median ÷ bobine's. Lower is better for every figure, so above 1 means bobine takes \
         less time, memory or CPU.\n",
        opts.rounds,
        opts.sample.as_millis(),
        opts.parked_rounds,
        opts.net_rounds,
        opts.net_secs,
        opts.net_warmup
    );
}

/// The micro-benchmark table: one row per operation, one column per runtime.
fn micro_table(out: &mut String, micro: &[MicroResult]) {
    if micro.is_empty() {
        return;
    }
    let peers: Vec<Peer> = Peer::ALL
        .into_iter()
        .filter(|p| micro.iter().any(|r| r.case.peer == *p))
        .collect();
    let mut rows = Vec::new();
    for op in &OPS {
        let of_op: Vec<&MicroResult> = micro.iter().filter(|r| std::ptr::eq(r.op, op)).collect();
        if of_op.is_empty() {
            continue;
        }
        let base = of_op
            .iter()
            .find(|r| r.case.peer == Peer::Bobine)
            .and_then(|r| r.median());
        let mut row = vec![op.label.to_owned(), op.threads.to_string()];
        for &p in &peers {
            row.push(match of_op.iter().find(|r| r.case.peer == p) {
                None => "–".to_owned(),
                Some(r) => match r.median() {
                    None => "failed".to_owned(),
                    Some(m) if p == Peer::Bobine => fmt_ns(m),
                    Some(m) => with_ratio(fmt_ns(m), m, base),
                },
            });
        }
        rows.push(row);
    }
    let mut columns = vec!["operation (time per operation)", "threads"];
    columns.extend(peers.iter().map(|p| p.heading()));
    let _ = writeln!(out, "**Operations**\n");
    let align = format!("lr{}", "r".repeat(peers.len()));
    table(out, &columns, &align, &rows);
    let rebuilt: Vec<String> = micro
        .iter()
        .filter(|r| r.rebuilds > 0)
        .map(|r| format!("{} {}", r.rebuilds, r.op.case_name(r.case)))
        .collect();
    let _ = writeln!(
        out,
        "- threads = scheduler threads: bobine domains; tokio's current-thread runtime (1) or \
         multi-thread runtime with 2 workers (2); may workers; OS threads (std, crossbeam) pinned \
         to one CPU (1) or free on both (2).\n\
         - bobine on 2 domains: the ping-pong's two tasks and the mutex's four are split evenly \
         between the domains (a runtime where the split came out otherwise is rebuilt{}), and \
         never migrate: every ping-pong hop crosses domains and wakes the other domain's thread, \
         as it wakes the other thread for std and crossbeam. tokio and may place their tasks \
         themselves and run a woken task on the worker that woke it, so their two ping-pong \
         tasks mostly share one thread. spawn + join leaves the placement to bobine's scheduler \
         (an idle domain takes half of the never-started tasks).\n\
         - ping-pong: bobine and std `sync_channel(0)`, tokio `mpsc::channel(1)`, may \
         `mpsc::channel()` (unbounded; may has no bounded channel), crossbeam `bounded(0)`. \
         Select: bobine `choose` of 3 `recv_evt` then `sync`, tokio `select!` over 3 \
         `mpsc::channel(1)`, crossbeam `select!` over 3 `bounded(0)`, the sender on another \
         task or thread.\n",
        if rebuilt.is_empty() {
            String::new()
        } else {
            format!(": {}", rebuilt.join(", "))
        }
    );
}

/// The parked-tasks table: one row per runtime and count.
fn parked_table(out: &mut String, parked: &[ParkedResult]) {
    if parked.is_empty() {
        return;
    }
    let bobine_at = |n: usize| {
        parked
            .iter()
            .find(|r| r.case.peer == Peer::Bobine && r.n == n)
            .and_then(ParkedResult::median)
    };
    let mut rows = Vec::new();
    for r in parked {
        let Some(m) = r.median() else {
            let mut row = vec![r.case.label.to_owned(), grouped(r.n as u64)];
            row.push(format!("failed: {}", r.failures.last().map_or("", |s| s)));
            row.extend((0..6).map(|_| String::new()));
            rows.push(row);
            continue;
        };
        let base = bobine_at(r.n).filter(|_| r.case.peer != Peer::Bobine);
        rows.push(vec![
            r.case.label.to_owned(),
            grouped(r.n as u64),
            with_ratio(fmt_s(m.total_s()), m.total_s(), base.map(|b| b.total_s())),
            fmt_ns(m.per_task(m.spawn_ns)),
            fmt_ns(m.per_task(m.run_ns)),
            fmt_ns(m.per_task(m.release_ns)),
            with_ratio(
                format!("{:.2} KiB", m.rss_per_task()),
                m.rss_per_task(),
                base.map(|b| b.rss_per_task()),
            ),
            format!("{:.0} B", m.pte_per_task()),
            format!("{:.1} MiB", m.pte1 / 1024.0),
        ]);
    }
    let _ = writeln!(out, "**Many parked tasks** (one scheduler thread)\n");
    table(
        out,
        &[
            "runtime",
            "tasks",
            "total time",
            "spawn, per task",
            "first run to the park, per task",
            "release + join, per task",
            "resident memory per parked task",
            "page tables per task",
            "VmPTE, all parked",
        ],
        "lrrrrrrrr",
        &rows,
    );
    let _ = writeln!(
        out,
        "- Each task parks on one shared semaphore (bobine `sync::Semaphore`, tokio \
         `sync::Semaphore`, may `sync::Semphore`, OS threads a `Mutex` + `Condvar` one), then \
         all are released and joined. Memory: `VmRSS` and `VmPTE` of a child process running \
         that case alone, read before the spawns and with every task parked; default stacks \
         (bobine 256 KiB reserved, may 32 KiB, std 2 MiB).\n\
         - may runs at most {} coroutines: it maps each stack with a guard page (two mappings \
         each) and aborts near 32 700 on `vm.max_map_count` = 65 530. std threads run at {} at \
         most, for reference (their kernel stacks are not in `VmRSS`).\n",
        grouped(MAY_MAX as u64),
        grouped(STD_MAX as u64)
    );
}

/// The servers table: one row per workload and server.
fn net_table(out: &mut String, net: &[NetResult]) {
    if net.is_empty() {
        return;
    }
    let mut rows = Vec::new();
    for r in net {
        let unit = r.case.workload.unit();
        let base = net
            .iter()
            .find(|b| b.case.workload == r.case.workload && b.case.server_name() == "bobine")
            .and_then(NetResult::median)
            .filter(|_| r.case.server_name() != "bobine");
        let Some(m) = r.median() else {
            rows.push(vec![
                r.case.workload.name().to_owned(),
                r.case.server_name().to_owned(),
                "failed".to_owned(),
                String::new(),
                String::new(),
                String::new(),
            ]);
            continue;
        };
        rows.push(vec![
            r.case.workload.name().to_owned(),
            r.case.server_name().to_owned(),
            format!("{} {unit}/s", grouped(m.rate.round() as u64)),
            with_ratio(
                format!("{:.2} µs", m.cpu_us),
                m.cpu_us,
                base.map(|b| b.cpu_us),
            ),
            with_ratio(
                format!("{:.2} µs", m.user_us),
                m.user_us,
                base.map(|b| b.user_us),
            ),
            format!("{:.0}% / {:.0}%", m.server_queued, m.client_queued),
        ]);
    }
    let _ = writeln!(
        out,
        "**Servers** (server pinned to one CPU, load generator on the other)\n"
    );
    table(
        out,
        &[
            "workload",
            "server",
            "rate",
            "server CPU per message / request",
            "of which user space",
            "CPU taken by others (server / client)",
        ],
        "llrrrr",
        &rows,
    );
    let _ = writeln!(
        out,
        "- The cases of `cargo bench --bench net`, run by its code: echo of 64-byte messages \
         over 50 connections, HTTP/1.1 keep-alive `GET` over 100 connections, one closed loop \
         per connection. Most server CPU is the kernel's TCP work, the same for every runtime; \
         the user-space part is what a runtime controls. The load generator's single core \
         saturates first, so rates say little. The last column is the time the server's and \
         the load generator's threads waited for their CPU while other processes ran on it: \
         above a few %, the run was disturbed (and the kernel charges other processes' \
         interrupts to whatever runs).\n"
    );
}

/// Every micro case with its spread over the rounds.
fn micro_details(out: &mut String, micro: &[MicroResult]) {
    if micro.is_empty() {
        return;
    }
    let mut rows = Vec::new();
    for r in micro {
        let min = r.ns.iter().copied().fold(f64::INFINITY, f64::min);
        let max = r.ns.iter().copied().fold(0.0, f64::max);
        let mut notes = Vec::new();
        if r.rebuilds > 0 {
            notes.push(format!("{} runtimes rebuilt", r.rebuilds));
        }
        if let Some(f) = r.failures.last() {
            notes.push(format!("{} failed: {f}", r.failures.len()));
        }
        rows.push(vec![
            r.op.case_name(r.case),
            r.median().map_or("-".to_owned(), fmt_ns),
            if r.ns.is_empty() {
                "-".to_owned()
            } else {
                fmt_ns(min)
            },
            if r.ns.is_empty() {
                "-".to_owned()
            } else {
                fmt_ns(max)
            },
            r.ns.len().to_string(),
            notes.join("; "),
        ]);
    }
    let _ = writeln!(out, "**Micro-benchmark cases**\n");
    let columns = ["case", "median", "min", "max", "rounds", "notes"];
    table(out, &columns, "lrrrrl", &rows);
}

/// Every parked case with the spread of its total time.
fn parked_details(out: &mut String, parked: &[ParkedResult]) {
    if parked.is_empty() {
        return;
    }
    let mut rows = Vec::new();
    for r in parked {
        let totals: Vec<f64> = r.runs.iter().map(|p| p.total_s()).collect();
        let min = totals.iter().copied().fold(f64::INFINITY, f64::min);
        let max = totals.iter().copied().fold(0.0, f64::max);
        rows.push(vec![
            r.case.name(r.n),
            median(&totals).map_or("-".to_owned(), fmt_s),
            if totals.is_empty() {
                "-".to_owned()
            } else {
                fmt_s(min)
            },
            if totals.is_empty() {
                "-".to_owned()
            } else {
                fmt_s(max)
            },
            r.runs.len().to_string(),
            r.failures.last().map_or(String::new(), |f| {
                format!("{} failed: {f}", r.failures.len())
            }),
        ]);
    }
    let _ = writeln!(out, "**Parked-task cases** (total time)\n");
    let columns = ["case", "median", "min", "max", "rounds", "notes"];
    table(out, &columns, "lrrrrl", &rows);
}

/// Every server case with all of the net bench's figures (medians).
fn net_details(out: &mut String, net: &[NetResult]) {
    if net.is_empty() {
        return;
    }
    let mut rows = Vec::new();
    for r in net {
        let failures = r.failures.last().map_or(String::new(), |f| {
            format!("{} failed: {f}", r.failures.len())
        });
        let Some(m) = r.median() else {
            rows.push(vec![r.case.name(), "-".to_owned(), failures]);
            continue;
        };
        rows.push(vec![
            r.case.name(),
            format!(
                "{:.0}/s; CPU {:.2} µs (user {:.2}, sys {:.2}); busy: server {:.0}%, client \
                 {:.0}%; queued: server {:.0}%, client {:.0}%; {:.2} context switches",
                m.rate,
                m.cpu_us,
                m.user_us,
                m.sys_us,
                m.server_busy,
                m.client_busy,
                m.server_queued,
                m.client_queued,
                m.switches
            ),
            format!("{} {failures}", r.samples.len()),
        ]);
    }
    let _ = writeln!(out, "**Server cases** (medians; per message or request)\n");
    table(out, &["case", "figures", "rounds"], "lll", &rows);
}

/// Where the report goes: `<target dir>/compare.md`.
pub fn report_path() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("compare.md")
}

/// The README.md this bench regenerates.
pub fn readme_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")
}

/// Replaces the text between the README's markers with the README part of `report` (what
/// precedes its [`DETAILS`] line).
pub fn splice_readme(report: &str) -> Result<(), String> {
    let path = readme_path();
    let readme = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let part = report.split(DETAILS).next().unwrap_or(report).trim();
    let (Some(b), Some(e)) = (readme.find(BEGIN), readme.find(END)) else {
        return Err(format!(
            "{}: no {BEGIN} ... {END} markers to put the tables between",
            path.display()
        ));
    };
    if e < b {
        return Err(format!("{}: {END} comes before {BEGIN}", path.display()));
    }
    let new = format!("{}{BEGIN}\n\n{part}\n\n{}", &readme[..b], &readme[e..]);
    std::fs::write(&path, new).map_err(|e| format!("{}: {e}", path.display()))
}
