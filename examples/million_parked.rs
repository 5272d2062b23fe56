//! Many parked tasks at once: spawns `n` tasks on one domain, each parked on one shared
//! semaphore, lets them all run to their park, then releases and joins them; prints the cost
//! per task of each phase and the page-table memory (`VmPTE`) at the end. The measurement
//! behind TARGETS.md's "a million tasks" row: the cost per task should stay flat from 10⁴ to
//! 10⁶.
//!
//! Run with `cargo run --release --example million_parked [n]` (default 100 000); under
//! `perf stat -e page-faults` for the faults per task.

use std::sync::Arc;
use std::time::Instant;

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .map_or(100_000, |a| a.parse().expect("a number of tasks"));
    bobine::Builder::new()
        .domains(1)
        .max_tasks(n + 16)
        .run(move || {
            let gate = Arc::new(bobine::sync::Semaphore::new(0));
            let t0 = Instant::now();
            let tasks: Vec<_> = (0..n)
                .map(|_| {
                    let g = gate.clone();
                    bobine::thread::spawn(move || g.acquire())
                })
                .collect();
            let t1 = Instant::now();
            // One domain: a yield runs every task queued before it, up to its park.
            bobine::thread::yield_now();
            let t2 = Instant::now();
            for _ in 0..n {
                gate.release();
            }
            for t in tasks {
                t.join().expect("a parked task ends");
            }
            let t3 = Instant::now();
            let per = |a: Instant, b: Instant| (b - a).as_nanos() as f64 / n as f64;
            let pte = std::fs::read_to_string("/proc/self/status")
                .ok()
                .and_then(|s| {
                    s.lines()
                        .find(|l| l.starts_with("VmPTE"))
                        .map(str::to_owned)
                })
                .unwrap_or_default();
            println!(
                "{n} tasks: spawn {:.0} ns/task, first run to the park {:.0} ns/task, release \
                 and join {:.0} ns/task, in all {:.0} ns/task; {}",
                per(t0, t1),
                per(t1, t2),
                per(t2, t3),
                per(t0, t3),
                pte.split_whitespace().collect::<Vec<_>>().join(" ")
            );
        });
}
