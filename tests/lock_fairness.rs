//! The locks' eventual fairness (`bobine::sync::Mutex`, `Semaphore`, `RwLock`, and the OCaml
//! mutex): nobody starves under constant barging, counts stay exact with tasks on several
//! domains and plain threads, and a woken waiter that is stopped (cancelled, or its runtime
//! ending) before it takes the lock loses no wake-up: the others all finish.
//!
//! Only behaviour is asserted, never timing. That a starved waiter switches a lock to hand-off
//! mode is checked by the crate's own tests (`src/sync/tests.rs`), which can see the switch.

mod common;

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use bobine::ocaml::mutex as omutex;
use bobine::sync::{Mutex, RwLock, Semaphore};
use bobine::{TaskCancelled, thread};
use common::tasks::{DropCounter, on_domains, with_domains};

const HOUR: Duration = Duration::from_secs(3600);

/// Work inside a critical section, long enough that a waiter woken by its release usually
/// finds the lock taken again by then.
fn busy() {
    for _ in 0..500 {
        std::hint::spin_loop();
    }
}

/// Runs `hammer` in a loop on domains 1 and 2 of a 3-domain runtime and on a plain thread
/// (each until the waiters are done), and `wait` as a waiter on domain 0 (the main task) and on
/// another plain thread, each `rounds` times, once the hammering is under way. Returns how many
/// times the hammering loops went through.
fn hammered(
    hammer: impl Fn() + Send + Sync + 'static,
    wait: impl Fn() + Send + Sync + 'static,
    rounds: usize,
) -> u64 {
    let hammer = Arc::new(hammer);
    let wait = Arc::new(wait);
    let stop = Arc::new(AtomicBool::new(false));
    // Hammering loops so far: domain 1, domain 2, the plain thread.
    let counts: Arc<[AtomicU64; 3]> = Arc::new(Default::default());
    let looping = |i: usize| {
        let (hammer, stop, counts) = (hammer.clone(), stop.clone(), counts.clone());
        move || {
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                hammer();
                n += 1;
                counts[i].store(n, Ordering::SeqCst);
                if n % 256 == 0 && i < 2 {
                    // Not holding the lock: only lets the domain breathe.
                    thread::yield_now();
                }
            }
        }
    };
    let plain_hammer = std::thread::spawn(looping(2));
    with_domains(3, |rt| {
        let tasks = [rt.spawn_on(1, looping(0)), rt.spawn_on(2, looping(1))];
        while counts.iter().any(|c| c.load(Ordering::SeqCst) < 100) {
            thread::yield_now();
        }
        let plain_waiter = {
            let wait = wait.clone();
            std::thread::spawn(move || (0..rounds).for_each(|_| wait()))
        };
        (0..rounds).for_each(|_| wait());
        plain_waiter.join().expect("the plain-thread waiter");
        stop.store(true, Ordering::SeqCst);
        tasks
            .into_iter()
            .for_each(|h| h.join().expect("a hammering task"));
    });
    plain_hammer.join().expect("the plain-thread hammer");
    counts.iter().map(|c| c.load(Ordering::SeqCst)).sum()
}

/// Tasks on two domains and a plain thread take a `Mutex` in a loop (each release is followed
/// at once by their next lock: constant barging pressure) while a task and a plain thread must
/// each get it 20 times: both do (a starved waiter would hang, and the watchdog fail the test),
/// and every increment made under the lock is counted exactly.
#[test]
fn no_mutex_waiter_starves_while_two_domains_and_a_thread_keep_taking_it() {
    const ROUNDS: usize = 20;
    common::watchdog(60, "no_mutex_waiter_starves", || {
        let m = Arc::new(Mutex::new((0u64, 0u64)));
        let (m1, m2) = (m.clone(), m.clone());
        let hammering = hammered(
            move || {
                let mut g = m1.lock().unwrap();
                busy();
                g.0 += 1;
            },
            move || m2.lock().unwrap().1 += 1,
            ROUNDS,
        );
        let (by_hammers, by_waiters) = *m.lock().unwrap();
        assert_eq!(
            by_waiters,
            2 * ROUNDS as u64,
            "each waiter got the lock each time"
        );
        assert_eq!(by_hammers, hammering, "every hammering increment counted");
    });
}

/// The same pressure on a one-permit `Semaphore`: the waiting task and plain thread each get
/// the permit 20 times, and the permit is back at the end.
#[test]
fn no_semaphore_waiter_starves_while_two_domains_and_a_thread_keep_taking_it() {
    const ROUNDS: usize = 20;
    common::watchdog(60, "no_semaphore_waiter_starves", || {
        let sem = Arc::new(Semaphore::new(1));
        let got = Arc::new(AtomicUsize::new(0));
        let (s1, s2, got2) = (sem.clone(), sem.clone(), got.clone());
        hammered(
            move || {
                s1.acquire();
                busy();
                s1.release();
            },
            move || {
                s2.acquire();
                got2.fetch_add(1, Ordering::SeqCst);
                s2.release();
            },
            ROUNDS,
        );
        assert_eq!(got.load(Ordering::SeqCst), 2 * ROUNDS);
        assert_eq!(sem.available(), 1);
    });
}

/// Writers on two domains and a plain thread take an `RwLock` in a loop while a reader task and
/// a reader plain thread must each get in 20 times: they do, and every write is counted.
#[test]
fn no_reader_starves_while_writers_on_two_domains_and_a_thread_keep_writing() {
    const ROUNDS: usize = 20;
    common::watchdog(60, "no_reader_starves", || {
        let lock = Arc::new(RwLock::new(0u64));
        let reads = Arc::new(AtomicUsize::new(0));
        let (l1, l2, reads2) = (lock.clone(), lock.clone(), reads.clone());
        let hammering = hammered(
            move || {
                let mut g = l1.write().unwrap();
                busy();
                *g += 1;
            },
            move || {
                drop(l2.read().unwrap());
                reads2.fetch_add(1, Ordering::SeqCst);
            },
            ROUNDS,
        );
        assert_eq!(reads.load(Ordering::SeqCst), 2 * ROUNDS);
        assert_eq!(*lock.read().unwrap(), hammering);
    });
}

/// The OCaml mutex under the same pressure: the waiters get it, and its error rules still hold
/// afterwards (unlocking a mutex one does not hold is `Sys_error`).
#[test]
fn no_ocaml_mutex_waiter_starves_and_its_errors_are_unchanged() {
    const ROUNDS: usize = 20;
    common::watchdog(60, "no_ocaml_mutex_waiter_starves", || {
        let m = omutex::create();
        let got = Arc::new(AtomicUsize::new(0));
        let (m1, m2, got2) = (m.clone(), m.clone(), got.clone());
        hammered(
            move || {
                omutex::lock(&m1);
                busy();
                omutex::unlock(&m1);
            },
            move || {
                omutex::protect(&m2, || {
                    got2.fetch_add(1, Ordering::SeqCst);
                })
            },
            ROUNDS,
        );
        assert_eq!(got.load(Ordering::SeqCst), 2 * ROUNDS);
        let text = common::panics::panic_text(|| omutex::unlock(&m));
        assert!(
            text.contains("Mutex.unlock: Operation not permitted"),
            "{text}"
        );
        assert!(omutex::try_lock(&m), "free at the end");
        omutex::unlock(&m);
    });
}

/// Three tasks T1, T2, T3 queued on a held lock, on one domain, and a log of who took it.
struct Queued {
    log: Rc<RefCell<Vec<usize>>>,
    tasks: Vec<thread::JoinHandle<()>>,
}

impl Queued {
    /// Spawns T1..T3, each running `take(i)` (which takes the lock, logs `i` and releases it),
    /// and lets each run until it parks.
    fn new(take: impl Fn(usize, &Rc<RefCell<Vec<usize>>>) + Clone + 'static) -> Queued {
        let log = Rc::new(RefCell::new(Vec::new()));
        let tasks = (1..=3)
            .map(|i| {
                let (take, log) = (take.clone(), log.clone());
                let h = thread::spawn_local(move || take(i, &log));
                thread::yield_now();
                assert!(!h.is_finished(), "T{i} waits");
                h
            })
            .collect();
        Queued { log, tasks }
    }

    /// Lets the woken task run (one domain: it runs when we yield).
    fn settle() {
        for _ in 0..10 {
            thread::yield_now();
        }
    }

    /// Checks that T1 was cancelled and T2, T3 finished, and returns the log.
    fn finish(self) -> Vec<usize> {
        let mut tasks = self.tasks.into_iter();
        let t1 = tasks.next().unwrap();
        assert!(
            t1.join().unwrap_err().is::<TaskCancelled>(),
            "T1 was cancelled"
        );
        tasks.for_each(|h| h.join().expect("T2 and T3 finish"));
        self.log.borrow().clone()
    }
}

/// A mutex release wakes T1, a running task takes the mutex first, and T1 is cancelled before
/// it runs: T1 finds the mutex taken, queues again, and unwinds; its wake-up is not lost: the
/// next release wakes T2, then T3, and the mutex ends free.
#[test]
fn a_cancelled_woken_mutex_waiter_passes_its_wake_up_on() {
    common::watchdog(60, "a_cancelled_woken_mutex_waiter", || {
        on_domains(1, || {
            let m = Rc::new(Mutex::new(()));
            let g = m.lock().unwrap();
            let q = Queued::new({
                let m = m.clone();
                move |i, log| {
                    let _g = m.lock().unwrap();
                    log.borrow_mut().push(i);
                }
            });
            drop(g);
            let g = m.try_lock().expect("a released mutex is free");
            q.tasks[0].cancel();
            Queued::settle();
            drop(g);
            assert_eq!(q.finish(), [2, 3]);
            assert!(m.try_lock().is_ok(), "free at the end");
        });
    });
}

/// A mutex release wakes T1, and T1 is cancelled before it runs, with the mutex still free: T1
/// takes it (a wake-up it acted on stands, like a hand-over) and unwinds at its next park
/// point, releasing it; T2 and T3 get it after.
#[test]
fn a_cancelled_woken_mutex_waiter_that_finds_it_free_takes_it_first() {
    common::watchdog(60, "a_cancelled_woken_mutex_waiter_takes_it", || {
        on_domains(1, || {
            let m = Rc::new(Mutex::new(()));
            let g = m.lock().unwrap();
            let q = Queued::new({
                let m = m.clone();
                move |i, log| {
                    let g = m.lock().unwrap();
                    log.borrow_mut().push(i);
                    drop(g);
                    // T1's next park point: the cancellation takes effect here.
                    thread::sleep(if i == 1 { HOUR } else { Duration::ZERO });
                }
            });
            drop(g);
            q.tasks[0].cancel();
            assert_eq!(q.finish(), [1, 2, 3]);
        });
    });
}

/// A semaphore release wakes T1, a running task takes the permit first, and T1 is cancelled
/// before it runs: T1 finds no permit, queues again and unwinds; the next release wakes T2,
/// whose release wakes T3; the permit is back at the end.
#[test]
fn a_cancelled_woken_semaphore_waiter_passes_its_wake_up_on() {
    common::watchdog(60, "a_cancelled_woken_semaphore_waiter", || {
        on_domains(1, || {
            let sem = Rc::new(Semaphore::new(0));
            let q = Queued::new({
                let sem = sem.clone();
                move |i, log| {
                    sem.acquire();
                    log.borrow_mut().push(i);
                    sem.release();
                }
            });
            sem.release();
            assert!(sem.try_acquire(), "a released permit is free");
            q.tasks[0].cancel();
            Queued::settle();
            sem.release();
            assert_eq!(q.finish(), [2, 3]);
            assert_eq!(sem.available(), 1);
        });
    });
}

/// A writer W1 woken by a release is cancelled before it runs, a running task having taken the
/// write lock first: W1 queues again and unwinds, counted out of the waiting writers (newcomer
/// readers are not kept out for ever), and its wake-up goes on to W2 and W3.
#[test]
fn a_cancelled_woken_writer_passes_its_wake_up_on() {
    common::watchdog(60, "a_cancelled_woken_writer", || {
        on_domains(1, || {
            let lock = Rc::new(RwLock::new(()));
            let g = lock.write().unwrap();
            let q = Queued::new({
                let lock = lock.clone();
                move |i, log| {
                    let _g = lock.write().unwrap();
                    log.borrow_mut().push(i);
                }
            });
            drop(g);
            let g = lock.try_write().expect("a released lock is free");
            q.tasks[0].cancel();
            Queued::settle();
            drop(g);
            assert_eq!(q.finish(), [2, 3]);
            assert!(lock.try_read().is_ok(), "no writer waits: readers come in");
        });
    });
}

/// The runtime ends while a task holds a mutex (sleeping) and three others wait for it, on one
/// domain and on two: every task is stopped; the holder's unwinding releases the mutex, the
/// woken waiter takes it or unwinds, and so on down the queue. `run` returns (nothing hangs on
/// a lost wake-up) and every task's destructors ran.
#[test]
fn a_runtime_ending_with_woken_waiters_on_their_way_ends() {
    common::watchdog(60, "a_runtime_ending_with_woken_waiters", || {
        for domains in [1, 2] {
            let m = Arc::new(Mutex::new(0u32));
            let drops = Arc::new(AtomicUsize::new(0));
            let (m2, d2) = (m.clone(), drops.clone());
            bobine::Builder::new().domains(domains).run(move || {
                let (m, drops) = (m2, d2);
                let holding = Arc::new(AtomicBool::new(false));
                {
                    let (m, drops, holding) = (m.clone(), drops.clone(), holding.clone());
                    drop(thread::spawn(move || {
                        let _counted = DropCounter(drops);
                        let _g = m.lock().unwrap();
                        holding.store(true, Ordering::SeqCst);
                        thread::sleep(HOUR);
                    }));
                }
                while !holding.load(Ordering::SeqCst) {
                    thread::yield_now();
                }
                for _ in 0..3 {
                    let (m, drops) = (m.clone(), drops.clone());
                    drop(thread::spawn(move || {
                        let _counted = DropCounter(drops);
                        *m.lock().unwrap() += 1;
                        thread::sleep(HOUR);
                    }));
                }
                thread::sleep(Duration::from_millis(20));
            });
            assert_eq!(drops.load(Ordering::SeqCst), 4, "{domains} domain(s)");
            assert!(m.try_lock().is_ok(), "the mutex is free at the end");
        }
    });
}
