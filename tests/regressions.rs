//! One test per fixed runtime bug, named after the bug.

mod common;

use std::time::Duration;

/// A task with a 16 KiB stack that panics while `RUST_BACKTRACE=1` is reported and joined,
/// instead of overflowing its stack while the panic hook formats the backtrace (the hook now
/// formats on the scheduler's stack).
#[test]
fn panic_report_with_backtrace_fits_a_small_task_stack() {
    if std::env::var_os("BOBINE_REGRESSION_CHILD").is_some() {
        let joined_err = bobine::Builder::new().domains(1).run(|| {
            let h = bobine::thread::Builder::new()
                .name("small".into())
                .stack_size(16 * 1024)
                .spawn(|| panic!("small stack panic"))
                .unwrap();
            h.join().is_err()
        });
        assert!(joined_err);
        return;
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "panic_report_with_backtrace_fits_a_small_task_stack",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("BOBINE_REGRESSION_CHILD", "1")
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "child failed: {}\n{stderr}",
        out.status
    );
    assert!(
        stderr.contains("thread 'small' (task 1) panicked at"),
        "{stderr}"
    );
    assert!(stderr.contains("small stack panic"), "{stderr}");
    assert!(!stderr.contains("overflowed"), "{stderr}");
}

/// A domain asleep in epoll with no timer hears of tasks spawned later on another domain and
/// takes some of them (it used to sleep until the runtime ended).
#[test]
fn sleeping_domain_takes_work_spawned_after_it_slept() {
    common::watchdog(30, "sleeping_domain_takes_work", || {
        let threads = bobine::Builder::new().domains(2).run(|| {
            // Let domain 1 run out of work and fall asleep.
            bobine::thread::sleep(Duration::from_millis(50));
            let hs: Vec<_> = (0..200)
                .map(|_| {
                    bobine::thread::spawn(|| {
                        // Hold the domain for a while, as CPU-bound work does, so the spawning
                        // domain cannot start all 200 before the sleeper wakes up.
                        let until = std::time::Instant::now() + Duration::from_millis(1);
                        while std::time::Instant::now() < until {
                            std::hint::spin_loop();
                        }
                        std::thread::current().id()
                    })
                })
                .collect();
            hs.into_iter()
                .map(|h| h.join().unwrap())
                .collect::<std::collections::HashSet<_>>()
        });
        assert_eq!(threads.len(), 2, "all 200 tasks ran on one domain");
    });
}

/// A `Park` dropped without waiting retires its generation: its unparker no longer wakes the
/// next park, and arming again does not trip the "armed twice" check.
#[test]
fn dropped_park_is_retired() {
    common::watchdog(30, "dropped_park_is_retired", || {
        bobine::Builder::new().domains(1).run(|| {
            let first = bobine::Park::new();
            let stale = first.unparker();
            drop(first);
            let second = bobine::Park::new();
            assert!(
                !stale.unpark(),
                "a dropped park's unparker woke a later park"
            );
            let deadline = std::time::Instant::now() + Duration::from_millis(5);
            assert_eq!(
                second.wait_until("test", Some(deadline)),
                bobine::Wake::TimedOut
            );
        });
    });
}
