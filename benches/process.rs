//! What a `bobine::process` call costs beside std's, and what the domain gets back meanwhile.
//!
//! - `status`: `Command::new("true").status()`: bobine in a task of a one-domain runtime (the
//!   spawn on the blocking pool, the wait on a pidfd, the task parked for both) beside std on
//!   the bench thread (the thread blocked in both).
//! - `unblock`: an empty `io::unblock` round trip from a task, the price of moving a spawn to
//!   the pool; a spawn costs the domain only this, instead of the whole spawn.
//!
//! Each criterion sample starts a fresh runtime outside the timing (`iter_custom`); the pool's
//! threads outlive it (they are reaped after 10 s idle), so after the warm-up no thread is
//! started inside the timing. A markdown table of the medians and the ratios follows.
//!
//! Run with `cargo bench --bench process` (criterion arguments follow `--`).

use std::time::{Duration, Instant, SystemTime};

mod common;

use common::{group, report, runtime};

/// `iters` runs of `true` by bobine in a task; returns their time.
fn bobine_status(iters: u64) -> Duration {
    runtime().run(move || {
        let start = Instant::now();
        for _ in 0..iters {
            let status = bobine::process::Command::new("true").status();
            assert!(status.expect("runs true").success());
        }
        start.elapsed()
    })
}

/// `iters` runs of `true` by std on this thread; returns their time.
fn std_status(iters: u64) -> Duration {
    let start = Instant::now();
    for _ in 0..iters {
        let status = std::process::Command::new("true").status();
        assert!(status.expect("runs true").success());
    }
    start.elapsed()
}

/// `iters` empty blocking-pool round trips from a task; returns their time.
fn bobine_unblock(iters: u64) -> Duration {
    runtime().run(move || {
        let start = Instant::now();
        for i in 0..iters {
            std::hint::black_box(bobine::io::unblock(move || i));
        }
        start.elapsed()
    })
}

const GROUPS: [(&str, &str); 2] = [
    ("process_status", "Command::status of `true`"),
    ("process_unblock", "an empty io::unblock round trip"),
];
const RUNTIMES: [&str; 2] = ["bobine", "std"];

fn main() {
    let since = SystemTime::now();
    let mut c = common::criterion();
    group(
        &mut c,
        GROUPS[0].0,
        &[(RUNTIMES[0], bobine_status), (RUNTIMES[1], std_status)],
    );
    group(&mut c, GROUPS[1].0, &[(RUNTIMES[0], bobine_unblock)]);
    c.final_summary();
    if report::print_peer_table(&GROUPS, &RUNTIMES, since) {
        println!();
        println!(
            "bobine: a task on one domain (spawn on the blocking pool, wait on a pidfd); std: the \
             bench thread. CPU: {}; load average {}.",
            report::cpu_model(),
            report::load_average(),
        );
    }
}
