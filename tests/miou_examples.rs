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

#[path = "../examples/miou_echo.rs"]
#[allow(dead_code)]
mod miou_echo;

/// The book's echo server (examples/miou_echo.rs), one server per domain on a shared port:
/// 100 clients × 50 messages all echoed, then SIGINT stops it cleanly (every orphan awaited,
/// no rule broken) and every descriptor it opened is closed. Runs in a child process, since
/// SIGINT is process-wide.
#[test]
fn miou_echo_serves_then_stops_cleanly_on_sigint() {
    const NAME: &str = "miou_echo_serves_then_stops_cleanly_on_sigint";
    const ENV: &str = "BOBINE_MIOU_ECHO_CHILD";
    const CLIENTS: usize = 100;
    const MESSAGES: usize = 50;
    if !common::child::is_child_of(ENV, NAME) {
        watchdog(120, NAME, || {
            common::child::run_ok(ENV, NAME, 100);
        });
        return;
    }
    use std::io::{Read, Write};
    use std::sync::atomic::Ordering;
    // The process-wide signal facility keeps its pipe open for good once started: start it
    // first, so that the count below is the server's own.
    miou::run_with(0, || miou::sys_signal(libc::SIGINT, |_| ()));
    let before = common::fds::open_fds();
    let stats = miou_echo::serve("127.0.0.1:0".parse().unwrap(), 2, |addr| {
        // The clients are plain threads, ten at a time; then SIGINT.
        std::thread::spawn(move || {
            for batch in 0..CLIENTS / 10 {
                let clients: Vec<_> = (0..10)
                    .map(|c| {
                        std::thread::spawn(move || {
                            let mut s = std::net::TcpStream::connect(addr).unwrap();
                            for m in 0..MESSAGES {
                                let msg = format!("client {batch}/{c} message {m:02}\n");
                                s.write_all(msg.as_bytes()).unwrap();
                                let mut back = vec![0; msg.len()];
                                s.read_exact(&mut back).unwrap();
                                assert_eq!(back, msg.as_bytes());
                            }
                        })
                    })
                    .collect();
                for c in clients {
                    c.join().unwrap();
                }
            }
            // SAFETY: sending SIGINT to this (child) process, whose handler the server installed.
            unsafe { libc::kill(libc::getpid(), libc::SIGINT) };
        });
    });
    let msg_len = "client 0/0 message 00\n".len() as u64;
    assert_eq!(stats.connections.load(Ordering::SeqCst), CLIENTS as u64);
    assert_eq!(
        stats.bytes.load(Ordering::SeqCst),
        (CLIENTS * MESSAGES) as u64 * msg_len
    );
    assert_eq!(stats.servers_stopped.load(Ordering::SeqCst), 3);
    assert_eq!(
        common::fds::open_fds(),
        before,
        "every descriptor is closed"
    );
}

/// The `parallel` prime count agrees with the count on one domain, over one to three workers.
#[test]
fn parallel_prime_count_agrees() {
    watchdog(60, "miou parallel primes", || {
        let expected = miou_parallel::primes(20_000);
        for workers in 1..=3 {
            for chunks in [1, 7, 64] {
                let got = miou::run_with(workers, move || {
                    miou_parallel::parallel_primes(20_000, chunks)
                });
                assert_eq!(got, expected, "workers {workers}, chunks {chunks}");
            }
        }
    });
}
