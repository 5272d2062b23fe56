//! What a `bobine::fs` call costs beside std's: `fs::read` of a whole file, 4 KiB and 1 MiB
//! (in the page cache after the first read), on the same files.
//!
//! - `bobine`: `bobine::fs::read` in a task of a one-domain runtime: one blocking-pool job per
//!   read (the pool hand-off, and the task parking and waking, on top of std's work);
//! - `std`: `std::fs::read` on the bench thread.
//!
//! Each criterion sample starts a fresh runtime outside the timing (`iter_custom`); the pool's
//! threads outlive it (they are reaped after 10 s idle), so after the warm-up no thread is
//! started inside the timing. A markdown table of the medians and the ratios follows.
//!
//! Run with `cargo bench --bench fs` (criterion arguments follow `--`).

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

mod common;

use common::{group, report, runtime};

/// The files read, made once per run.
static FILES: OnceLock<Files> = OnceLock::new();

struct Files {
    dir: PathBuf,
    small: PathBuf,
    large: PathBuf,
}

fn files() -> &'static Files {
    FILES.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("bobine-bench-fs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let (small, large) = (dir.join("4k"), dir.join("1m"));
        std::fs::write(&small, vec![7u8; 4 << 10]).expect("writes the 4 KiB file");
        std::fs::write(&large, vec![9u8; 1 << 20]).expect("writes the 1 MiB file");
        Files { dir, small, large }
    })
}

/// `iters` reads of `path` by bobine in a task; returns their time.
fn bobine_reads(path: &'static PathBuf, iters: u64) -> Duration {
    runtime().run(move || {
        let start = Instant::now();
        for _ in 0..iters {
            std::hint::black_box(bobine::fs::read(path).expect("reads the file"));
        }
        start.elapsed()
    })
}

/// `iters` reads of `path` by std on this thread; returns their time.
fn std_reads(path: &PathBuf, iters: u64) -> Duration {
    let start = Instant::now();
    for _ in 0..iters {
        std::hint::black_box(std::fs::read(path).expect("reads the file"));
    }
    start.elapsed()
}

fn bobine_4k(iters: u64) -> Duration {
    bobine_reads(&files().small, iters)
}

fn std_4k(iters: u64) -> Duration {
    std_reads(&files().small, iters)
}

fn bobine_1m(iters: u64) -> Duration {
    bobine_reads(&files().large, iters)
}

fn std_1m(iters: u64) -> Duration {
    std_reads(&files().large, iters)
}

const GROUPS: [(&str, &str); 2] = [
    ("fs_read_4k", "fs::read 4 KiB"),
    ("fs_read_1m", "fs::read 1 MiB"),
];
const RUNTIMES: [&str; 2] = ["bobine", "std"];

fn main() {
    let since = SystemTime::now();
    let mut c = common::criterion();
    group(
        &mut c,
        GROUPS[0].0,
        &[(RUNTIMES[0], bobine_4k), (RUNTIMES[1], std_4k)],
    );
    group(
        &mut c,
        GROUPS[1].0,
        &[(RUNTIMES[0], bobine_1m), (RUNTIMES[1], std_1m)],
    );
    c.final_summary();
    if report::print_peer_table(&GROUPS, &RUNTIMES, since) {
        println!();
        println!(
            "bobine: a task on one domain, one pool job per read; std: the bench thread. \
             CPU: {}; load average {}.",
            report::cpu_model(),
            report::load_average(),
        );
    }
    let _ = std::fs::remove_dir_all(&files().dir);
}
