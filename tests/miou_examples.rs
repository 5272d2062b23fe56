//! The Miou programs in `examples/`, run as tests: the philosophers stopped by a timeout
//! through `await_first`, and the `parallel` merge sort. The examples' own logic is compiled
//! in here, so what the examples print is what these tests check.

mod common;

#[path = "../examples/miou_parallel.rs"]
#[allow(dead_code)]
mod miou_parallel;
#[path = "../examples/miou_philosophers.rs"]
#[allow(dead_code)]
mod miou_philosophers;

use std::time::Duration;

use bobine::miou;
use common::watchdog;

/// The timer wins the race, the dinner is cancelled: every philosopher has left the table and
/// every fork is free when `await_first` returns, nobody shared a fork, and everyone ate, on
/// one domain and across worker domains.
#[test]
fn philosophers_stop_on_the_timeout_and_free_every_fork() {
    watchdog(60, "miou philosophers", || {
        for workers in [0, 1, 2] {
            let r = miou_philosophers::dinner(5, workers, Duration::from_millis(150));
            assert_eq!(r.still_seated, 0, "workers = {workers}");
            assert!(r.forks_free, "workers = {workers}");
            assert_eq!(r.shared_forks, 0, "workers = {workers}");
            assert!(r.meals.iter().all(|&m| m > 0), "{:?}", r.meals);
        }
    });
}

/// The `parallel` merge sort sorts, over one to three workers and any chunk count.
#[test]
fn parallel_sort_sorts() {
    watchdog(60, "miou parallel sort", || {
        for workers in 1..=3 {
            for chunks in [1, 2, 3, 7] {
                let data = miou_parallel::input(10_007, workers as u64 * 31 + chunks as u64);
                let mut expected = data.clone();
                expected.sort_unstable();
                let got =
                    miou::run_with(workers, move || miou_parallel::parallel_sort(data, chunks));
                assert!(got == expected, "workers {workers}, chunks {chunks}");
            }
        }
    });
}
