//! `bobine::io::unblock`: the blocking pool. Values come back, panics are resumed in the
//! caller, many blocking jobs run at once while their domain keeps running other tasks, it
//! works outside any runtime, and it carries file I/O.

mod common;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bobine::io::unblock;
use bobine::thread;
use common::tasks::spawn_ticker;

/// The closure's value comes back to the calling task, whatever its type.
#[test]
fn unblock_returns_the_value() {
    common::watchdog(10, "unblock_returns_the_value", || {
        bobine::run(|| {
            assert_eq!(unblock(|| 6 * 7), 42);
            let v = unblock(|| vec![String::from("a"), String::from("b")]);
            assert_eq!(v, ["a", "b"]);
            let r: Result<u8, String> = unblock(|| Err("no".to_string()));
            assert_eq!(r, Err("no".to_string()));
            // It runs off the domain thread.
            let domain_thread = std::thread::current().id();
            assert_ne!(unblock(|| std::thread::current().id()), domain_thread);
        });
    });
}

/// A panic in the closure is resumed in the caller with its payload; the task (and the pool)
/// go on afterwards.
#[test]
fn unblock_resumes_a_panic_with_its_payload() {
    common::watchdog(10, "unblock_resumes_a_panic_with_its_payload", || {
        bobine::run(|| {
            let p = catch_unwind(AssertUnwindSafe(|| {
                unblock(|| -> u8 { std::panic::panic_any(1234u32) })
            }))
            .expect_err("the panic reaches the caller");
            assert_eq!(p.downcast_ref::<u32>(), Some(&1234));
            let n = std::hint::black_box(5);
            let p = catch_unwind(AssertUnwindSafe(|| {
                unblock(move || -> u8 { panic!("formatted {n}") })
            }))
            .expect_err("the panic reaches the caller");
            assert_eq!(
                p.downcast_ref::<String>().map(String::as_str),
                Some("formatted 5")
            );
            assert_eq!(unblock(|| 1), 1, "the pool still works");
            // A task that does not catch it ends with the payload.
            let h = thread::spawn(|| unblock(|| -> u8 { std::panic::panic_any("in a task") }));
            let p = h.join().expect_err("the task panicked");
            assert_eq!(p.downcast_ref::<&str>(), Some(&"in a task"));
        });
    });
}

/// A task's blocking call does not block its domain: a ticker task of the same (only) domain
/// keeps ticking while the call blocks (the call waits, bounded, for the ticks).
#[test]
fn the_domain_keeps_running_tasks_during_a_blocking_call() {
    common::watchdog(
        20,
        "the_domain_keeps_running_tasks_during_a_blocking_call",
        || {
            bobine::Builder::new().domains(1).run(|| {
                let ticks = Arc::new(AtomicUsize::new(0));
                let stop = Arc::new(AtomicBool::new(false));
                let ticker = spawn_ticker(ticks.clone(), stop.clone());
                let t = ticks.clone();
                let ticked = unblock(move || {
                    let t0 = t.load(Ordering::SeqCst);
                    let end = Instant::now() + Duration::from_secs(5);
                    while Instant::now() < end {
                        if t.load(Ordering::SeqCst) >= t0 + 5 {
                            return true;
                        }
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    false
                });
                assert!(ticked, "the domain did not run its ticker during the call");
                stop.store(true, Ordering::SeqCst);
                ticker.join().unwrap();
            });
        },
    );
}

/// 64 tasks of one domain each make a blocking call at once, with the pool already warm (an
/// idle worker left by an earlier call): all 64 calls are in flight together (each waits until
/// it sees the others, up to a common deadline), and a ticker task of the same domain keeps
/// ticking while they block.
#[test]
fn many_blocking_calls_run_at_once_while_the_domain_keeps_running() {
    common::watchdog(
        30,
        "many_blocking_calls_run_at_once_while_the_domain_keeps_running",
        || {
            const JOBS: usize = 64;
            bobine::Builder::new().domains(1).run(|| {
                // Warm the pool: its worker goes idle, as after any earlier call.
                unblock(|| ());
                thread::sleep(Duration::from_millis(100));
                let ticks = Arc::new(AtomicUsize::new(0));
                let stop = Arc::new(AtomicBool::new(false));
                let ticker = spawn_ticker(ticks.clone(), stop.clone());
                let inside = Arc::new(AtomicUsize::new(0));
                let deadline = Instant::now() + Duration::from_secs(5);
                let jobs: Vec<_> = (0..JOBS)
                    .map(|i| {
                        let (inside, ticks) = (inside.clone(), ticks.clone());
                        thread::spawn(move || {
                            unblock(move || {
                                // A blocking call that ends only once every job is in flight
                                // and the domain has ticked meanwhile (or the deadline).
                                inside.fetch_add(1, Ordering::SeqCst);
                                let t0 = ticks.load(Ordering::SeqCst);
                                while Instant::now() < deadline {
                                    if inside.load(Ordering::SeqCst) == JOBS
                                        && ticks.load(Ordering::SeqCst) >= t0 + 3
                                    {
                                        return Ok(i);
                                    }
                                    std::thread::sleep(Duration::from_millis(1));
                                }
                                Err(format!(
                                    "job {i}: {} of {JOBS} calls in flight, {} ticks since it \
                                     started",
                                    inside.load(Ordering::SeqCst),
                                    ticks.load(Ordering::SeqCst) - t0
                                ))
                            })
                        })
                    })
                    .collect();
                let results: Vec<_> = jobs.into_iter().map(|j| j.join().unwrap()).collect();
                stop.store(true, Ordering::SeqCst);
                ticker.join().unwrap();
                let failed: Vec<&String> =
                    results.iter().filter_map(|r| r.as_ref().err()).collect();
                assert!(
                    failed.is_empty(),
                    "{} of {JOBS} calls did not run together; first: {}",
                    failed.len(),
                    failed[0]
                );
            });
        },
    );
}

/// Outside any task, `unblock` runs the closure on the calling thread and returns its value;
/// a panic propagates as is.
#[test]
fn unblock_outside_any_runtime_runs_on_the_calling_thread() {
    common::watchdog(
        10,
        "unblock_outside_any_runtime_runs_on_the_calling_thread",
        || {
            let me = std::thread::current().id();
            assert!(unblock(move || std::thread::current().id() == me));
            assert_eq!(unblock(|| "value"), "value");
            let p = catch_unwind(|| unblock(|| -> u8 { std::panic::panic_any(7i64) }))
                .expect_err("the panic propagates");
            assert_eq!(p.downcast_ref::<i64>(), Some(&7));
            // Nested: the closure runs on a pool thread, outside any task, where unblock
            // runs inline.
            let v = bobine::run(|| unblock(|| unblock(|| 5) + 1));
            assert_eq!(v, 6);
        },
    );
}

/// File I/O through `unblock`: a file written, read back and removed from tasks.
#[test]
fn file_io_through_unblock() {
    common::watchdog(10, "file_io_through_unblock", || {
        bobine::run(|| {
            let path =
                std::env::temp_dir().join(format!("bobine-io-pool-{}.txt", std::process::id()));
            let data: Vec<u8> = (0..100_000u32).map(|i| (i % 253) as u8).collect();
            let (p, d) = (path.clone(), data.clone());
            unblock(move || std::fs::write(&p, &d)).unwrap();
            let readers: Vec<_> = (0..4)
                .map(|_| {
                    let p = path.clone();
                    thread::spawn(move || unblock(move || std::fs::read(&p)).unwrap())
                })
                .collect();
            for r in readers {
                assert_eq!(r.join().unwrap(), data);
            }
            let p = path.clone();
            let meta = unblock(move || std::fs::metadata(&p)).unwrap();
            assert_eq!(meta.len(), data.len() as u64);
            let p = path.clone();
            unblock(move || std::fs::remove_file(&p)).unwrap();
            let p = path.clone();
            let e = unblock(move || std::fs::read(&p)).unwrap_err();
            assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
        });
    });
}

/// Dropped when its value is dropped: shows where a result nobody waits for ends.
struct Flag(Arc<AtomicBool>);

impl Drop for Flag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// A task whose runtime ends while it waits in `unblock`: the call still runs to completion on
/// the pool, and its value is dropped there (not leaked, not delivered).
#[test]
fn a_call_outliving_its_runtime_completes_and_its_value_is_dropped() {
    common::watchdog(
        10,
        "a_call_outliving_its_runtime_completes_and_its_value_is_dropped",
        || {
            let finished = Arc::new(AtomicBool::new(false));
            let dropped = Arc::new(AtomicBool::new(false));
            let (f2, d2) = (finished.clone(), dropped.clone());
            bobine::run(move || {
                thread::spawn(move || {
                    let _flag = unblock(move || {
                        std::thread::sleep(Duration::from_millis(200));
                        f2.store(true, Ordering::SeqCst);
                        Flag(d2)
                    });
                    unreachable!("the runtime ended before the call returned");
                });
                thread::sleep(Duration::from_millis(20));
            });
            assert!(!finished.load(Ordering::SeqCst), "run waited for the call");
            let end = Instant::now() + Duration::from_secs(5);
            while !dropped.load(Ordering::SeqCst) && Instant::now() < end {
                std::thread::sleep(Duration::from_millis(5));
            }
            assert!(
                finished.load(Ordering::SeqCst),
                "the call ran to completion"
            );
            assert!(dropped.load(Ordering::SeqCst), "its value was dropped");
        },
    );
}
