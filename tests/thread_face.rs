//! The std-like face (`bobine::run`, `bobine::Builder`, `bobine::thread`, `bobine::time`):
//! spawning and joining, panics and names, scopes, sleeping, the global runtime, several
//! runtimes at once, stack exhaustion, shutdown with blocked tasks, and work spreading.

mod common;

use std::collections::HashSet;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bobine::thread;
use bobine::{Park, TaskDropped, Unparker};
use common::panics::payload_text;
use common::tasks::DropCounter;

const HOUR: Duration = Duration::from_secs(3600);

/// 100 000 tasks are spawned and joined and every value comes back exactly once.
#[test]
fn hundred_thousand_tasks_all_join_with_their_values() {
    common::watchdog(
        60,
        "hundred_thousand_tasks_all_join_with_their_values",
        || {
            const N: u64 = 100_000;
            const BATCH: u64 = 10_000;
            let (sum, count) = bobine::run(|| {
                let mut sum = 0u64;
                let mut count = 0u64;
                for b in 0..N / BATCH {
                    let handles: Vec<_> = (b * BATCH..(b + 1) * BATCH)
                        .map(|i| thread::spawn(move || (i, i * 3 + 1)))
                        .collect();
                    for (i, h) in (b * BATCH..).zip(handles) {
                        let (got_i, v) = h.join().expect("task panicked");
                        assert_eq!(got_i, i, "a handle returned another task's value");
                        sum += v;
                        count += 1;
                    }
                }
                (sum, count)
            });
            assert_eq!(count, N);
            assert_eq!(sum, 3 * N * (N - 1) / 2 + N);
        },
    );
}

/// Joining a panicked task gives `Err` with the panic's payload, for `&str` and `String` messages.
#[test]
fn join_of_panicked_task_returns_its_payload() {
    common::watchdog(30, "join_of_panicked_task_returns_its_payload", || {
        bobine::run(|| {
            let h = thread::spawn(|| -> u32 { panic!("static boom") });
            let err = h.join().expect_err("a panicked task must join as Err");
            assert_eq!(err.downcast_ref::<&str>(), Some(&"static boom"));

            let n = 42;
            let h = thread::spawn(move || -> u32 { panic!("formatted boom {n}") });
            let err = h.join().expect_err("a panicked task must join as Err");
            assert_eq!(
                err.downcast_ref::<String>().map(String::as_str),
                Some("formatted boom 42")
            );

            // The runtime goes on: a sibling of a panicked task still returns its value.
            let ok = thread::spawn(|| 7u32);
            assert_eq!(ok.join().unwrap(), 7);
        });
    });
}

/// Task names: given by `Builder::name`, seen by `current()` and `JoinHandle::thread()`; the main
/// task is "main"; unnamed tasks have none.
#[test]
fn names_are_seen_by_the_task_and_its_handle() {
    common::watchdog(30, "names_are_seen_by_the_task_and_its_handle", || {
        bobine::run(|| {
            assert_eq!(thread::current().name(), Some("main"));
            let h = thread::Builder::new()
                .name("x".into())
                .spawn(|| thread::current().name().map(str::to_owned))
                .unwrap();
            assert_eq!(h.thread().name(), Some("x"));
            assert_eq!(h.join().unwrap().as_deref(), Some("x"));

            let h = thread::spawn(|| thread::current().name().map(str::to_owned));
            assert_eq!(h.thread().name(), None);
            assert_eq!(h.join().unwrap(), None);
        });
    });
}

/// `current().id()` is unique per task and equals `handle.thread().id()`.
#[test]
fn ids_are_unique_and_match_the_handle() {
    common::watchdog(30, "ids_are_unique_and_match_the_handle", || {
        bobine::run(|| {
            let main_id = thread::current().id();
            let handles: Vec<_> = (0..1000)
                .map(|_| thread::spawn(|| thread::current().id()))
                .collect();
            let mut seen = HashSet::new();
            seen.insert(main_id);
            for h in handles {
                let expected = h.thread().id();
                let got = h.join().unwrap();
                assert_eq!(
                    got, expected,
                    "current().id() differs from handle.thread().id()"
                );
                assert!(seen.insert(got), "id {got:?} given to two tasks");
            }
            assert_eq!(seen.len(), 1001);
        });
    });
}

/// Scoped tasks mutate a local array through borrows, each element exactly once.
#[test]
fn scope_tasks_mutate_borrowed_locals() {
    common::watchdog(30, "scope_tasks_mutate_borrowed_locals", || {
        bobine::run(|| {
            let mut arr = [0u64; 256];
            let counter = AtomicUsize::new(0);
            thread::scope(|s| {
                for (i, x) in arr.iter_mut().enumerate() {
                    let counter = &counter;
                    s.spawn(move || {
                        thread::yield_now();
                        *x += (i as u64) * (i as u64);
                        counter.fetch_add(1, Ordering::Relaxed);
                    });
                }
            });
            assert_eq!(counter.load(Ordering::Relaxed), 256);
            for (i, x) in arr.iter().enumerate() {
                assert_eq!(*x, (i as u64) * (i as u64));
            }
        });
    });
}

/// A scoped join returns the task's value, computed from borrowed data.
#[test]
fn scoped_join_returns_values() {
    common::watchdog(30, "scoped_join_returns_values", || {
        bobine::run(|| {
            let data: Vec<u64> = (1..=1000).collect();
            let total = thread::scope(|s| {
                let handles: Vec<_> = data
                    .chunks(100)
                    .map(|c| s.spawn(move || c.iter().sum::<u64>()))
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).sum::<u64>()
            });
            assert_eq!(total, 500_500);
        });
    });
}

/// A scoped task that panics and is not joined makes `scope` panic with "a scoped thread panicked".
#[test]
fn scope_panics_when_an_unjoined_scoped_task_panicked() {
    common::watchdog(
        30,
        "scope_panics_when_an_unjoined_scoped_task_panicked",
        || {
            bobine::run(|| {
                let ran = AtomicUsize::new(0);
                let r = catch_unwind(AssertUnwindSafe(|| {
                    thread::scope(|s| {
                        s.spawn(|| panic!("scoped boom"));
                        for _ in 0..10 {
                            s.spawn(|| ran.fetch_add(1, Ordering::Relaxed));
                        }
                    })
                }));
                let err = r.expect_err("scope must panic when a scoped task panicked unjoined");
                assert_eq!(payload_text(&*err), "a scoped thread panicked");
                // The other scoped tasks were still waited for.
                assert_eq!(ran.load(Ordering::Relaxed), 10);
            });
        },
    );
}

/// A scoped task that panics but is joined does not make `scope` panic; the join gets the payload.
#[test]
fn scope_does_not_panic_when_the_panicked_task_was_joined() {
    common::watchdog(
        30,
        "scope_does_not_panic_when_the_panicked_task_was_joined",
        || {
            bobine::run(|| {
                let v = thread::scope(|s| {
                    let h = s.spawn(|| -> u32 { panic!("joined scoped boom") });
                    let err = h.join().expect_err("joined panic must be Err");
                    assert_eq!(payload_text(&*err), "joined scoped boom");
                    5u32
                });
                assert_eq!(v, 5);
            });
        },
    );
}

/// 1 000 tasks each sleeping 200 ms all finish, each slept at least 200 ms, and they overlap.
#[test]
fn thousand_sleepers_overlap() {
    common::watchdog(30, "thousand_sleepers_overlap", || {
        let start = Instant::now();
        let slept = bobine::run(|| {
            let handles: Vec<_> = (0..1000)
                .map(|_| {
                    thread::spawn(|| {
                        let t = Instant::now();
                        thread::sleep(Duration::from_millis(200));
                        t.elapsed()
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap())
                .collect::<Vec<_>>()
        });
        assert_eq!(slept.len(), 1000);
        for d in &slept {
            assert!(
                *d >= Duration::from_millis(200),
                "a sleep of 200 ms lasted {d:?}"
            );
        }
        // Serially this would take 200 s.
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "sleepers did not overlap: {:?}",
            start.elapsed()
        );
    });
}

/// `spawn` on a plain OS thread (outside any `run`) starts tasks on the global runtime, and the
/// plain thread can join them.
#[test]
fn spawn_outside_run_uses_the_global_runtime() {
    common::watchdog(30, "spawn_outside_run_uses_the_global_runtime", || {
        let plain = std::thread::spawn(|| {
            let handles: Vec<_> = (0..100u64)
                .map(|i| {
                    thread::spawn(move || {
                        thread::yield_now();
                        thread::sleep(Duration::from_millis(1));
                        // A task of the global runtime is a task: it has a task handle.
                        let inner = thread::spawn(move || i * 2);
                        inner.join().unwrap() + 1
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum::<u64>()
        });
        let sum = plain.join().unwrap();
        assert_eq!(sum, (0..100u64).map(|i| i * 2 + 1).sum::<u64>());
    });
}

/// Four runtimes running at once on four OS threads, each with two domains, all get right results.
#[test]
fn several_runtimes_run_in_parallel() {
    common::watchdog(60, "several_runtimes_run_in_parallel", || {
        let threads: Vec<_> = (0..4u64)
            .map(|r| {
                std::thread::spawn(move || {
                    bobine::Builder::new().domains(2).run(move || {
                        let handles: Vec<_> = (0..2000u64)
                            .map(|i| {
                                thread::spawn(move || {
                                    if i % 7 == 0 {
                                        thread::yield_now();
                                    }
                                    r * 1_000_000 + i
                                })
                            })
                            .collect();
                        handles.into_iter().map(|h| h.join().unwrap()).sum::<u64>()
                    })
                })
            })
            .collect();
        for (r, t) in (0..4u64).zip(threads) {
            let expected = r * 1_000_000 * 2000 + 1999 * 2000 / 2;
            assert_eq!(t.join().unwrap(), expected, "runtime {r} got a wrong sum");
        }
    });
}

/// Parks the calling task until `release` unparks it; registers its unparker in `parked`.
fn park_until_released(parked: &Mutex<Vec<Unparker>>) {
    let park = Park::new();
    parked.lock().unwrap().push(park.unparker());
    park.wait("test: held until released");
}

/// With `max_tasks(10)`, exactly 9 tasks can live beside the main task; `Builder::spawn` then
/// returns `Err`, `spawn` panics, and once the tasks end their stacks are reused.
#[test]
fn stack_exhaustion_is_an_error_and_stacks_are_reused() {
    common::watchdog(
        30,
        "stack_exhaustion_is_an_error_and_stacks_are_reused",
        || {
            bobine::Builder::new().domains(1).max_tasks(10).run(|| {
                let parked = Arc::new(Mutex::new(Vec::new()));
                let ended = Arc::new(AtomicUsize::new(0));
                for round in 0..3 {
                    let mut handles = Vec::new();
                    let err = loop {
                        let (p, e) = (parked.clone(), ended.clone());
                        match thread::Builder::new().spawn(move || {
                            park_until_released(&p);
                            e.fetch_add(1, Ordering::SeqCst);
                        }) {
                            Ok(h) => handles.push(h),
                            Err(e) => break e,
                        }
                        assert!(
                            handles.len() <= 9,
                            "more than max_tasks - 1 tasks were spawned"
                        );
                    };
                    assert_eq!(
                        handles.len(),
                        9,
                        "round {round}: the main task uses one of the 10 stacks"
                    );
                    assert!(!err.to_string().is_empty());

                    // `spawn` panics instead of returning the error.
                    let r = catch_unwind(|| {
                        thread::spawn(|| ());
                    });
                    assert!(
                        r.is_err(),
                        "round {round}: thread::spawn must panic when out of stacks"
                    );

                    // Let the 9 tasks park, then release them all.
                    while parked.lock().unwrap().len() < 9 {
                        thread::yield_now();
                    }
                    let unparkers: Vec<_> = parked.lock().unwrap().drain(..).collect();
                    for u in unparkers {
                        assert!(u.unpark());
                    }
                    for h in handles {
                        h.join().unwrap();
                    }
                    assert_eq!(ended.load(Ordering::SeqCst), 9 * (round + 1));
                }
            });
        },
    );
}

/// Tasks still blocked when `run` returns (sleeping for an hour, or parked with nobody to unpark
/// them, on both domains when work spreads) are dropped with their destructors run, and `run`
/// returns.
#[test]
fn blocked_tasks_are_dropped_with_destructors_when_run_returns() {
    common::watchdog(
        30,
        "blocked_tasks_are_dropped_with_destructors_when_run_returns",
        || {
            const N: usize = 200;
            // Which domain a task starts on is up to the scheduler: try a few runtimes until one
            // spreads its tasks over both domains (every run checks the drops).
            let mut most_threads = 0;
            for _ in 0..10 {
                let drops = Arc::new(AtomicUsize::new(0));
                let started = Arc::new(AtomicUsize::new(0));
                let resumed = Arc::new(AtomicUsize::new(0));
                let os_threads = Arc::new(Mutex::new(HashSet::new()));
                let (d, st, os, res) = (
                    drops.clone(),
                    started.clone(),
                    os_threads.clone(),
                    resumed.clone(),
                );
                bobine::Builder::new().domains(2).run(move || {
                    for i in 0..N {
                        let (d, st, os, res) = (d.clone(), st.clone(), os.clone(), res.clone());
                        thread::spawn(move || {
                            let _guard = DropCounter(d);
                            os.lock().unwrap().insert(std::thread::current().id());
                            st.fetch_add(1, Ordering::SeqCst);
                            if i % 2 == 0 {
                                thread::sleep(HOUR);
                            } else {
                                let park = Park::new();
                                let _nobody = park.unparker();
                                park.wait("test: parked forever");
                            }
                            res.fetch_add(1, Ordering::SeqCst);
                        });
                    }
                    while st.load(Ordering::SeqCst) < N {
                        thread::sleep(Duration::from_millis(1));
                    }
                    assert_eq!(
                        d.load(Ordering::SeqCst),
                        0,
                        "no task may be dropped while run is going on"
                    );
                });
                assert_eq!(started.load(Ordering::SeqCst), N);
                assert_eq!(
                    resumed.load(Ordering::SeqCst),
                    0,
                    "a task blocked forever was resumed"
                );
                assert_eq!(
                    drops.load(Ordering::SeqCst),
                    N,
                    "every blocked task's destructors must run"
                );
                most_threads = most_threads.max(os_threads.lock().unwrap().len());
                if most_threads > 1 {
                    break;
                }
            }
            eprintln!("blocked tasks ran on up to {most_threads} OS thread(s)");
        },
    );
}

/// A `JoinHandle` kept past `run` joins as `Err(TaskDropped)` for started and never-started tasks.
#[test]
fn join_handle_kept_past_run_gives_task_dropped() {
    common::watchdog(30, "join_handle_kept_past_run_gives_task_dropped", || {
        let drops = Arc::new(AtomicUsize::new(0));
        let d = drops.clone();
        let (started_handle, unstarted_handle) = bobine::Builder::new().domains(1).run(move || {
            let flag = Arc::new(AtomicBool::new(false));
            let f = flag.clone();
            let d1 = d.clone();
            let started = thread::spawn(move || {
                let _g = DropCounter(d1);
                f.store(true, Ordering::SeqCst);
                thread::sleep(HOUR);
                1u32
            });
            while !flag.load(Ordering::SeqCst) {
                thread::yield_now();
            }
            // Spawned just before main returns: with one domain it never gets to run.
            let g = DropCounter(d);
            let unstarted = thread::spawn(move || {
                let _g = g;
                2u32
            });
            assert!(!started.is_finished());
            (started, unstarted)
        });
        assert!(started_handle.is_finished());
        assert!(unstarted_handle.is_finished());
        let e1 = started_handle
            .join()
            .expect_err("a dropped task cannot have a value");
        assert!(
            e1.is::<TaskDropped>(),
            "payload of a dropped task must be TaskDropped"
        );
        let e2 = unstarted_handle
            .join()
            .expect_err("a task that never ran cannot have a value");
        assert!(
            e2.is::<TaskDropped>(),
            "payload of a never-started task must be TaskDropped"
        );
        assert_eq!(
            drops.load(Ordering::SeqCst),
            2,
            "both tasks' captured values must be dropped"
        );
    });
}

/// `spawn_local` runs a closure holding an `Rc` (not `Send`) and returns a non-`Send` value.
#[test]
fn spawn_local_accepts_non_send_values() {
    common::watchdog(30, "spawn_local_accepts_non_send_values", || {
        bobine::Builder::new().domains(2).run(|| {
            let shared = Rc::new(std::cell::RefCell::new(Vec::new()));
            let handles: Vec<_> = (0..100)
                .map(|i| {
                    let s = shared.clone();
                    thread::spawn_local(move || {
                        thread::yield_now();
                        s.borrow_mut().push(i);
                        Rc::new(i)
                    })
                })
                .collect();
            let values: Vec<_> = handles.into_iter().map(|h| *h.join().unwrap()).collect();
            assert_eq!(values, (0..100).collect::<Vec<_>>());
            let mut seen = shared.borrow().clone();
            seen.sort_unstable();
            assert_eq!(seen, (0..100).collect::<Vec<_>>());
            assert_eq!(Rc::strong_count(&shared), 1);
        });
    });
}

/// `yield_now` hands over in FIFO order: three tasks on one domain interleave round-robin.
#[test]
fn yield_now_is_fifo() {
    common::watchdog(30, "yield_now_is_fifo", || {
        let order = bobine::Builder::new().domains(1).run(|| {
            let order = Arc::new(Mutex::new(Vec::new()));
            let handles: Vec<_> = ['a', 'b', 'c']
                .into_iter()
                .map(|name| {
                    let order = order.clone();
                    thread::spawn(move || {
                        for i in 0..4 {
                            order.lock().unwrap().push((name, i));
                            thread::yield_now();
                        }
                    })
                })
                .collect();
            for h in handles {
                h.join().unwrap();
            }
            Arc::try_unwrap(order).unwrap().into_inner().unwrap()
        });
        let expected: Vec<_> = (0..4)
            .flat_map(|i| ['a', 'b', 'c'].map(|n| (n, i)))
            .collect();
        assert_eq!(order, expected);
    });
}

/// `Builder::domains(0)` makes `run` panic with a message naming the rule.
#[test]
fn zero_domains_panics_with_a_clear_message() {
    common::watchdog(30, "zero_domains_panics_with_a_clear_message", || {
        let ran = AtomicBool::new(false);
        let r = catch_unwind(AssertUnwindSafe(|| {
            bobine::Builder::new()
                .domains(0)
                .run(|| ran.store(true, Ordering::SeqCst))
        }));
        let err = r.expect_err("domains(0) must panic");
        let msg = payload_text(&*err);
        assert!(
            msg.contains("at least one domain"),
            "unclear message: {msg:?}"
        );
        assert!(
            !ran.load(Ordering::SeqCst),
            "the main task must not run with 0 domains"
        );
    });
}

/// `is_finished` is false while the task is blocked and true once it has ended (before `join`).
#[test]
fn is_finished_tracks_the_task() {
    common::watchdog(30, "is_finished_tracks_the_task", || {
        bobine::run(|| {
            let parked = Arc::new(Mutex::new(Vec::new()));
            let p = parked.clone();
            let h = thread::spawn(move || {
                park_until_released(&p);
                11u32
            });
            assert!(!h.is_finished());
            while parked.lock().unwrap().is_empty() {
                thread::yield_now();
            }
            assert!(!h.is_finished(), "a parked task is not finished");
            assert!(parked.lock().unwrap().pop().unwrap().unpark());
            let deadline = Instant::now() + Duration::from_secs(20);
            while !h.is_finished() {
                assert!(Instant::now() < deadline, "is_finished never became true");
                thread::sleep(Duration::from_millis(1));
            }
            assert_eq!(h.join().unwrap(), 11);
        });
    });
}

/// Tasks spawned from tasks spawned from tasks (a tree of 1 + 10 + 100 + 1000) all run and join.
#[test]
fn nested_spawns_all_complete() {
    common::watchdog(30, "nested_spawns_all_complete", || {
        fn tree(depth: u32) -> u64 {
            if depth == 0 {
                return 1;
            }
            let kids: Vec<_> = (0..10)
                .map(|_| thread::spawn(move || tree(depth - 1)))
                .collect();
            1 + kids.into_iter().map(|h| h.join().unwrap()).sum::<u64>()
        }
        let n = bobine::run(|| thread::spawn(|| tree(3)).join().unwrap());
        assert_eq!(n, 1 + 10 + 100 + 1000);
    });
}

/// With two domains, work spreads: 1 000 yielding tasks spawned after domain 1 went idle do not
/// all run on domain 0.
#[test]
fn work_spreads_to_an_idle_second_domain() {
    common::watchdog(30, "work_spreads_to_an_idle_second_domain", || {
        let (main_os, seen, done) = bobine::Builder::new().domains(2).run(|| {
            let main_os = std::thread::current().id();
            // Give domain 1 time to find nothing to do and go to sleep: work spawned later must
            // still reach it.
            thread::sleep(Duration::from_millis(20));
            let seen = Arc::new(Mutex::new(HashSet::new()));
            let done = Arc::new(AtomicUsize::new(0));
            let handles: Vec<_> = (0..1000u64)
                .map(|i| {
                    let (seen, done) = (seen.clone(), done.clone());
                    thread::spawn(move || {
                        // Hold the domain before the first yield, as CPU-bound work does, so the
                        // spawning domain cannot start all 1000 before the sleeper wakes up.
                        let until = std::time::Instant::now() + Duration::from_micros(200);
                        while std::time::Instant::now() < until {
                            std::hint::spin_loop();
                        }
                        let mut x = i;
                        for _ in 0..20 {
                            for k in 0..200u64 {
                                x = std::hint::black_box(
                                    x.wrapping_mul(6364136223846793005).wrapping_add(k),
                                );
                            }
                            thread::yield_now();
                        }
                        seen.lock().unwrap().insert(std::thread::current().id());
                        done.fetch_add(1, Ordering::Relaxed);
                        x
                    })
                })
                .collect();
            for h in handles {
                h.join().unwrap();
            }
            let seen = seen.lock().unwrap().clone();
            (main_os, seen, done.load(Ordering::Relaxed))
        });
        assert_eq!(done, 1000);
        assert!(
            seen.iter().any(|t| *t != main_os),
            "with domains(2), all 1000 tasks ran on domain 0: the idle domain never took any work"
        );
    });
}

/// `time::sleep_until` with a deadline in the past returns without letting other tasks run, and
/// `sleep_until` in the future lasts at least until the deadline.
#[test]
fn sleep_until_in_the_past_returns_at_once() {
    common::watchdog(30, "sleep_until_in_the_past_returns_at_once", || {
        bobine::Builder::new().domains(1).run(|| {
            let ran = Arc::new(AtomicBool::new(false));
            let r = ran.clone();
            let h = thread::spawn(move || r.store(true, Ordering::SeqCst));
            let past = Instant::now() - Duration::from_millis(50);
            bobine::time::sleep_until(past);
            bobine::time::sleep_until(Instant::now());
            assert!(
                !ran.load(Ordering::SeqCst),
                "sleep_until in the past switched to another task"
            );
            h.join().unwrap();

            let target = Instant::now() + Duration::from_millis(50);
            bobine::time::sleep_until(target);
            assert!(Instant::now() >= target);
            let t = Instant::now();
            bobine::time::sleep(Duration::from_millis(50));
            assert!(t.elapsed() >= Duration::from_millis(50));
        });
    });
}
