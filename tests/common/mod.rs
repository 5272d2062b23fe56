//! Shared helpers for the integration tests: the watchdog (here), child runs of the test binary
//! (`child`), connected descriptors (`fds`), resident memory (`memory`), panic texts (`panics`),
//! a random generator for races (`rng`), and running bodies in tasks (`tasks`). Each test binary
//! uses only some of them, hence `dead_code` is allowed.
#![allow(dead_code)]

pub mod child;
pub mod fds;
pub mod memory;
pub mod panics;
pub mod rng;
pub mod tasks;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Whether this test runs under valgrind (`scripts/memcheck` sets `BOBINE_UNDER_VALGRIND`),
/// where code runs 20 to 50 times slower and all threads share one CPU.
pub fn under_valgrind() -> bool {
    std::env::var_os("BOBINE_UNDER_VALGRIND").is_some()
}

/// An iteration count: `n` natively, `n / div` (at least one) under valgrind, so that a stress
/// test keeps its shape there and ends within its watchdog.
pub fn scaled(n: u64, div: u64) -> u64 {
    if under_valgrind() {
        (n / div).max(1)
    } else {
        n
    }
}

/// Runs `f` under a watchdog: if it has not returned within `secs` seconds the whole test
/// process exits with a message, so a deadlock fails fast instead of hanging CI.
pub fn watchdog<T>(secs: u64, name: &str, f: impl FnOnce() -> T) -> T {
    let done = Arc::new(AtomicBool::new(false));
    let flag = done.clone();
    let name = name.to_owned();
    std::thread::spawn(move || {
        let deadline = std::time::Instant::now() + Duration::from_secs(secs);
        while std::time::Instant::now() < deadline {
            if flag.load(Ordering::Acquire) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if !flag.load(Ordering::Acquire) {
            // Straight to the process's stderr: the harness captures `eprintln!` (in threads a
            // test spawns too), and the captured text dies with the process.
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "watchdog: test '{name}' did not finish within {secs} s (deadlock or hang)"
            );
            std::process::exit(3);
        }
    });
    let out = f();
    done.store(true, Ordering::Release);
    out
}
