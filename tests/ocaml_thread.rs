//! The OCaml `Thread` face (`bobine::ocaml::thread`): ids, handles as keys, join, exit,
//! uncaught panics, fairness of `yield_`, `delay`, and the end of the program.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bobine::Park;
use bobine::ocaml::thread;
use common::tasks::DropCounter;

/// Set in the environment of a child process to make a `*_child` test run its body.
const CHILD_ENV: &str = "BOBINE_OCAML_THREAD_CHILD";

/// The main thread is 0 and created threads get 1, 2, 3 ... in creation order (nested creations
/// included); a second runtime starts again at 0, 1.
#[test]
fn ids_count_from_main_zero_in_creation_order_per_runtime() {
    common::watchdog(
        30,
        "ids_count_from_main_zero_in_creation_order_per_runtime",
        || {
            let (created, seen) = bobine::run(|| {
                assert_eq!(thread::id(&thread::self_()), 0);
                let seen = Arc::new(Mutex::new(Vec::new()));
                let mut created = Vec::new();
                for _ in 0..3 {
                    let s = seen.clone();
                    let t = thread::create(
                        move |s: Arc<Mutex<Vec<u64>>>| {
                            let me = thread::id(&thread::self_());
                            s.lock().unwrap().push(me);
                            // A thread created by a thread takes the next id too.
                            let child = thread::create(
                                move |s: Arc<Mutex<Vec<u64>>>| {
                                    s.lock().unwrap().push(thread::id(&thread::self_()))
                                },
                                s.clone(),
                            );
                            thread::join(&child);
                        },
                        s,
                    );
                    created.push(thread::id(&t));
                    thread::join(&t);
                }
                let seen = seen.lock().unwrap().clone();
                (created, seen)
            });
            // Joined one by one: 1 creates 2, then 3 creates 4, then 5 creates 6.
            assert_eq!(created, vec![1, 3, 5]);
            assert_eq!(seen, vec![1, 2, 3, 4, 5, 6]);

            let again = bobine::run(|| {
                let main = thread::id(&thread::self_());
                let t = thread::create(|()| (), ());
                thread::join(&t);
                (main, thread::id(&t))
            });
            assert_eq!(
                again,
                (0, 1),
                "a second runtime numbers its threads from 0 again"
            );
        },
    );
}

/// `create f x` passes `x` to `f`; `self_()` in the new thread equals the handle `create`
/// returned; handles are `Eq + Hash` and work as `HashSet`/`HashMap` keys.
#[test]
// `T` hashes by thread id, which never changes; clippy only sees the `Arc` inside.
#[allow(clippy::mutable_key_type)]
fn handles_are_comparable_and_hashable() {
    common::watchdog(30, "handles_are_comparable_and_hashable", || {
        bobine::run(|| {
            let selves = Arc::new(Mutex::new(HashMap::new()));
            let mut handles = Vec::new();
            for i in 0..50u64 {
                let t = thread::create(
                    move |(i, selves): (u64, Arc<Mutex<HashMap<thread::T, u64>>>)| {
                        selves.lock().unwrap().insert(thread::self_(), i);
                    },
                    (i, selves.clone()),
                );
                handles.push((i, t));
            }
            for (_, t) in &handles {
                thread::join(t);
            }
            let selves = selves.lock().unwrap();
            assert_eq!(
                selves.len(),
                50,
                "self_() of distinct threads must be distinct keys"
            );
            for (i, t) in &handles {
                assert_eq!(
                    selves.get(t),
                    Some(i),
                    "self_() in thread {i} differs from its create handle"
                );
                assert_eq!(t.clone(), *t);
            }
            let set: HashSet<thread::T> = handles
                .iter()
                .map(|(_, t)| t.clone())
                .chain([thread::self_()])
                .collect();
            assert_eq!(set.len(), 51);
            assert!(set.contains(&thread::self_()));
            assert_eq!(thread::self_(), thread::self_());
            assert_ne!(handles[0].1, handles[1].1);
            assert_eq!(format!("{:?}", handles[0].1), "Thread(1)");
        });
    });
}

/// Joining twice is fine, and joining an ended thread returns at once (no switch to others).
#[test]
fn join_twice_and_join_of_an_ended_thread_return_at_once() {
    common::watchdog(
        30,
        "join_twice_and_join_of_an_ended_thread_return_at_once",
        || {
            bobine::Builder::new().domains(1).run(|| {
                let done = Arc::new(AtomicBool::new(false));
                let t = thread::create(
                    |(d,): (Arc<AtomicBool>,)| {
                        thread::yield_();
                        d.store(true, Ordering::SeqCst);
                    },
                    (done.clone(),),
                );
                thread::join(&t);
                assert!(
                    done.load(Ordering::SeqCst),
                    "join returned before the thread ended"
                );

                let sentinel_ran = Arc::new(AtomicBool::new(false));
                let s = sentinel_ran.clone();
                let sentinel = thread::create(move |()| s.store(true, Ordering::SeqCst), ());
                thread::join(&t);
                thread::join(&t.clone());
                assert!(
                    !sentinel_ran.load(Ordering::SeqCst),
                    "joining an ended thread switched to another thread"
                );
                thread::join(&sentinel);
                thread::join(&sentinel);
                assert!(sentinel_ran.load(Ordering::SeqCst));
            });
        },
    );
}

/// `exit()` ends the thread at once; cleanups of every frame run; `join` returns normally.
#[test]
fn exit_ends_the_thread_and_runs_cleanups() {
    common::watchdog(30, "exit_ends_the_thread_and_runs_cleanups", || {
        let cleanups = Arc::new(AtomicUsize::new(0));
        let after_exit = Arc::new(AtomicUsize::new(0));
        let (c, a) = (cleanups.clone(), after_exit.clone());
        bobine::run(move || {
            fn deep(n: u32, c: &Arc<AtomicUsize>) {
                let _frame = DropCounter(c.clone());
                if n == 0 {
                    thread::exit();
                }
                deep(n - 1, c);
            }
            let threads: Vec<_> = (0..10)
                .map(|_| {
                    thread::create(
                        |(c, a): (Arc<AtomicUsize>, Arc<AtomicUsize>)| {
                            let _outer = DropCounter(c.clone());
                            thread::yield_();
                            deep(4, &c);
                            a.fetch_add(1, Ordering::SeqCst);
                        },
                        (c.clone(), a.clone()),
                    )
                })
                .collect();
            for t in &threads {
                thread::join(t);
            }
            // The main thread goes on after its threads exited.
            assert_eq!(c.load(Ordering::SeqCst), 10 * 6);
        });
        assert_eq!(
            after_exit.load(Ordering::SeqCst),
            0,
            "code after exit() ran"
        );
        assert_eq!(cleanups.load(Ordering::SeqCst), 10 * 6);
    });
}

/// Child body for [`uncaught_panic_prints_killed_message_and_others_go_on`]; does nothing unless
/// run as that test's child process.
#[test]
fn uncaught_panic_child() {
    if !common::child::is_child(CHILD_ENV) {
        return;
    }
    common::watchdog(30, "uncaught_panic_child", || {
        let progress = bobine::run(|| {
            let progress = Arc::new(AtomicUsize::new(0));
            let boom = thread::create(
                |n: u32| {
                    thread::yield_();
                    panic!("boom {n}");
                },
                42,
            );
            assert_eq!(thread::id(&boom), 1);
            let quiet = thread::create(|()| thread::exit(), ());
            let p = progress.clone();
            let worker = thread::create(
                move |()| {
                    for _ in 0..100 {
                        p.fetch_add(1, Ordering::SeqCst);
                        thread::yield_();
                    }
                },
                (),
            );
            thread::join(&boom);
            thread::join(&quiet);
            thread::join(&worker);
            progress.load(Ordering::SeqCst)
        });
        assert_eq!(
            progress, 100,
            "other threads must go on after one was killed"
        );
    });
}

/// An uncaught panic prints exactly `Thread 1 killed on uncaught exception boom 42` on stderr
/// (and `exit()` prints nothing); other threads go on and `join` returns normally.
#[test]
fn uncaught_panic_prints_killed_message_and_others_go_on() {
    common::watchdog(
        60,
        "uncaught_panic_prints_killed_message_and_others_go_on",
        || {
            let out = common::child::run("uncaught_panic_child", &[(CHILD_ENV, "1")]);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                out.status.success(),
                "the child test failed; its stderr:\n{stderr}"
            );
            let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
            assert_eq!(
                lines,
                vec!["Thread 1 killed on uncaught exception boom 42"],
                "stderr was:\n{stderr}"
            );
        },
    );
}

/// Four busy threads looping "work; yield" alternate: nobody runs more than a few iterations in
/// a row (one domain, so that the order is the scheduler's alone).
#[test]
fn busy_threads_alternate_on_yield() {
    common::watchdog(30, "busy_threads_alternate_on_yield", || {
        const ITERS: usize = 200;
        let log = bobine::Builder::new().domains(1).run(|| {
            let log = Arc::new(Mutex::new(Vec::with_capacity(4 * ITERS)));
            let threads: Vec<_> = (0..4usize)
                .map(|who| {
                    thread::create(
                        move |log: Arc<Mutex<Vec<usize>>>| {
                            let mut x = who as u64;
                            for _ in 0..ITERS {
                                for k in 0..500u64 {
                                    x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(k));
                                }
                                log.lock().unwrap().push(who);
                                thread::yield_();
                            }
                        },
                        log.clone(),
                    )
                })
                .collect();
            for t in &threads {
                thread::join(t);
            }
            log.lock().unwrap().clone()
        });
        assert_eq!(log.len(), 4 * ITERS);
        for who in 0..4 {
            assert_eq!(
                log.iter().filter(|w| **w == who).count(),
                ITERS,
                "thread {who} lost iterations"
            );
        }
        let mut longest = 0;
        let mut run = 0;
        for i in 0..log.len() {
            run = if i > 0 && log[i] == log[i - 1] {
                run + 1
            } else {
                1
            };
            longest = longest.max(run);
        }
        assert!(
            longest <= 3,
            "a thread ran {longest} iterations in a row: yield_ did not alternate"
        );
    });
}

/// `delay` with a negative (or NaN) value returns at once without switching; `delay 0.05` sleeps at
/// least 50 ms while the other threads run.
#[test]
fn delay_negative_returns_at_once_and_positive_sleeps_while_others_run() {
    common::watchdog(
        30,
        "delay_negative_returns_at_once_and_positive_sleeps_while_others_run",
        || {
            bobine::Builder::new().domains(1).run(|| {
                let ran = Arc::new(AtomicBool::new(false));
                let r = ran.clone();
                let other = thread::create(move |()| r.store(true, Ordering::SeqCst), ());
                thread::delay(-1.0);
                thread::delay(-0.001);
                thread::delay(f64::NAN);
                assert!(
                    !ran.load(Ordering::SeqCst),
                    "a negative delay switched to another thread"
                );

                let t = Instant::now();
                thread::delay(0.05);
                assert!(
                    t.elapsed() >= Duration::from_millis(50),
                    "delay 0.05 lasted {:?}",
                    t.elapsed()
                );
                assert!(
                    ran.load(Ordering::SeqCst),
                    "other threads must run during a delay"
                );
                thread::join(&other);
            });
        },
    );
}

/// When the main thread returns, `run` ends without waiting for threads blocked forever (delay,
/// `join (self ())`, a park nobody ends, a join on such a thread, a busy yielder), and their
/// cleanups run.
#[test]
fn run_ends_when_main_returns_despite_threads_blocked_forever() {
    common::watchdog(
        30,
        "run_ends_when_main_returns_despite_threads_blocked_forever",
        || {
            let cleanups = Arc::new(AtomicUsize::new(0));
            let started = Arc::new(AtomicUsize::new(0));
            let (c, s) = (cleanups.clone(), started.clone());
            bobine::Builder::new().domains(2).run(move || {
                type Arg = (Arc<AtomicUsize>, Arc<AtomicUsize>);
                let sleeper = thread::create(
                    |(c, s): Arg| {
                        let _c = DropCounter(c);
                        s.fetch_add(1, Ordering::SeqCst);
                        thread::delay(1e9);
                    },
                    (c.clone(), s.clone()),
                );
                thread::create(
                    |(c, s): Arg| {
                        let _c = DropCounter(c);
                        s.fetch_add(1, Ordering::SeqCst);
                        thread::join(&thread::self_());
                    },
                    (c.clone(), s.clone()),
                );
                thread::create(
                    |(c, s): Arg| {
                        let _c = DropCounter(c);
                        s.fetch_add(1, Ordering::SeqCst);
                        let park = Park::new();
                        let _nobody = park.unparker();
                        park.wait("test: parked forever");
                    },
                    (c.clone(), s.clone()),
                );
                thread::create(
                    move |(c, s): Arg| {
                        let _c = DropCounter(c);
                        s.fetch_add(1, Ordering::SeqCst);
                        thread::join(&sleeper);
                    },
                    (c.clone(), s.clone()),
                );
                thread::create(
                    |(c, s): Arg| {
                        let _c = DropCounter(c);
                        s.fetch_add(1, Ordering::SeqCst);
                        loop {
                            thread::yield_();
                        }
                    },
                    (c.clone(), s.clone()),
                );
                while s.load(Ordering::SeqCst) < 5 {
                    thread::yield_();
                }
                assert_eq!(c.load(Ordering::SeqCst), 0);
            });
            assert_eq!(started.load(Ordering::SeqCst), 5);
            assert_eq!(
                cleanups.load(Ordering::SeqCst),
                5,
                "the cleanups of every abandoned thread must run"
            );
        },
    );
}
