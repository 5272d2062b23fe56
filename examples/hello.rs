//! The README example: blocking-style code on green threads.
//!
//! Run with `cargo run --release --example hello`.

use std::time::{Duration, Instant};

use bobine::thread;

fn main() {
    let started = Instant::now();
    let report = bobine::run(|| {
        // 10 000 tasks that each block for 100 ms: they overlap on the domains, so this takes
        // about 100 ms, not 1 000 s, and costs a few KiB per task instead of an OS thread each.
        let sleepers: Vec<_> = (0..10_000u64)
            .map(|i| {
                thread::spawn(move || {
                    thread::sleep(Duration::from_millis(100));
                    i
                })
            })
            .collect();
        let sum: u64 = sleepers.into_iter().map(|h| h.join().unwrap()).sum();

        // Scoped tasks borrow the caller's stack, as with std::thread::scope.
        let mut words = ["green", "threads", "without", "colour"].map(String::from);
        thread::scope(|s| {
            for w in words.iter_mut() {
                s.spawn(move || w.make_ascii_uppercase());
            }
        });

        // A panicking task does not take the program down: join gives the payload.
        let failed = thread::Builder::new()
            .name("doomed".into())
            .spawn(|| -> u32 { panic!("on purpose") })
            .unwrap()
            .join()
            .is_err();

        format!(
            "sum of ids = {sum}\nwords = {}\nthe doomed task panicked: {failed}",
            words.join(" ")
        )
    });
    println!("{report}");
    println!(
        "10 000 sleepers overlapped: {}",
        started.elapsed() < Duration::from_secs(5)
    );
}
