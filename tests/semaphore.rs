//! `bobine::sync::Semaphore`'s permit guards and timed acquire: a `SemaphorePermit` gives its
//! permit back when dropped (on a panic's unwinding and a cancellation's too) unless
//! forgotten; `acquire_timeout` and `permit_timeout` return false / `None` with nothing taken
//! once the timeout passes, and a timeout racing a release neither loses nor creates a permit
//! (a counted stress test over two domains and plain threads); a task cancelled while it waits
//! takes no permit; the domain runs other tasks while one waits.
//!
//! Only behaviour is asserted, never timing (timeouts are short, bounds on elapsed time
//! generous).

mod common;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bobine::sync::{Semaphore, SemaphorePermit};
use bobine::{TaskCancelled, thread};
use common::panics::payload_text;
use common::rng::Rng;
use common::tasks::{in_task_and_thread, on_domains, spawn_ticker, with_domains};

const HOUR: Duration = Duration::from_secs(3600);

/// A permit guard gives its permit back when dropped, in a task and on a plain thread.
#[test]
fn a_permit_is_given_back_when_dropped() {
    common::watchdog(30, "a_permit_is_given_back_when_dropped", || {
        in_task_and_thread(|at| {
            let sem = Semaphore::new(2);
            let a = sem.permit();
            let b = sem.try_permit().expect("a second permit is free");
            assert_eq!(sem.available(), 0, "{at}: two permits held");
            assert!(sem.try_permit().is_none(), "{at}: none is left");
            drop(a);
            assert_eq!(sem.available(), 1, "{at}: one given back");
            drop(b);
            assert_eq!(sem.available(), 2, "{at}: both given back");
        });
    });
}

/// A permit held across a panic is given back as the stack unwinds: in a task (whose `join`
/// gives the panic) and on a plain thread (`catch_unwind`).
#[test]
fn a_permit_is_given_back_when_its_holder_panics() {
    common::watchdog(30, "a_permit_is_given_back_when_its_holder_panics", || {
        let sem = Arc::new(Semaphore::new(1));
        on_domains(1, || {
            let h = thread::spawn({
                let sem = sem.clone();
                move || {
                    let _p = sem.permit();
                    panic!("holder fails");
                }
            });
            let err = h.join().expect_err("the holder panicked");
            assert_eq!(payload_text(&*err), "holder fails");
            assert_eq!(sem.available(), 1, "in a task: the permit is back");
        });
        let caught = catch_unwind(AssertUnwindSafe(|| {
            let _p = sem.permit_timeout(HOUR).expect("a free permit");
            assert_eq!(sem.available(), 0);
            panic!("holder fails");
        }));
        assert!(caught.is_err());
        assert_eq!(sem.available(), 1, "on a plain thread: the permit is back");
    });
}

/// `forget` keeps the permit taken; a later `release` gives it back by hand.
#[test]
fn a_forgotten_permit_stays_taken() {
    common::watchdog(30, "a_forgotten_permit_stays_taken", || {
        in_task_and_thread(|at| {
            let sem = Semaphore::new(1);
            let p = sem.permit();
            assert!(
                format!("{p:?}").starts_with("SemaphorePermit"),
                "{at}: Debug names the guard: {p:?}"
            );
            p.forget();
            assert_eq!(sem.available(), 0, "{at}: still taken after forget");
            assert!(!sem.acquire_timeout(Duration::from_millis(5)), "{at}");
            sem.release();
            assert_eq!(sem.available(), 1, "{at}: released by hand");
        });
    });
}

/// A timed acquire with no permit free returns false (and `permit_timeout` `None`) once the
/// timeout has passed, not before, and leaves the count unchanged; with a permit free it takes
/// it at once; a zero timeout is `try_acquire`. In a task and on a plain thread.
#[test]
fn a_timed_acquire_expires_leaving_the_count_unchanged() {
    common::watchdog(30, "a_timed_acquire_expires", || {
        in_task_and_thread(|at| {
            let sem = Semaphore::new(0);
            let t = Instant::now();
            assert!(!sem.acquire_timeout(Duration::from_millis(30)), "{at}");
            assert!(t.elapsed() >= Duration::from_millis(30), "{at}: not before");
            assert!(
                sem.permit_timeout(Duration::from_millis(10)).is_none(),
                "{at}"
            );
            assert!(!sem.acquire_timeout(Duration::ZERO), "{at}");
            assert_eq!(sem.available(), 0, "{at}: nothing taken, nothing made");
            sem.release();
            assert!(sem.acquire_timeout(Duration::ZERO), "{at}: a free permit");
            sem.release();
            let p = sem.permit_timeout(HOUR).expect("a free permit");
            assert_eq!(sem.available(), 0, "{at}");
            drop(p);
            assert_eq!(sem.available(), 1, "{at}");
        });
    });
}

/// A timed acquire gets a permit released before its deadline: by a task of another domain,
/// and by a plain thread.
#[test]
fn a_timed_acquire_gets_a_permit_released_in_time() {
    common::watchdog(30, "a_timed_acquire_gets_a_permit_released_in_time", || {
        on_domains(2, || {
            let sem = Arc::new(Semaphore::new(0));
            let releaser = thread::spawn({
                let sem = sem.clone();
                move || {
                    thread::sleep(Duration::from_millis(10));
                    sem.release();
                }
            });
            assert!(sem.acquire_timeout(HOUR), "released by a task");
            releaser.join().unwrap();
            let releaser = std::thread::spawn({
                let sem = sem.clone();
                move || {
                    std::thread::sleep(Duration::from_millis(10));
                    sem.release();
                }
            });
            let p = sem
                .permit_timeout(HOUR)
                .expect("released by a plain thread");
            releaser.join().unwrap();
            drop(p);
            assert_eq!(sem.available(), 1);
        });
    });
}

/// While a task waits in `acquire_timeout` (and then in `permit`), a second task of the same
/// single-domain runtime keeps running: the wait parks the task, not the domain.
#[test]
fn the_domain_runs_other_tasks_while_one_waits_for_a_permit() {
    common::watchdog(30, "the_domain_runs_other_tasks_while_one_waits", || {
        on_domains(1, || {
            let sem = Arc::new(Semaphore::new(0));
            let ticks = Arc::new(AtomicUsize::new(0));
            let stop = Arc::new(AtomicBool::new(false));
            let ticker = spawn_ticker(ticks.clone(), stop.clone());
            assert!(!sem.acquire_timeout(Duration::from_millis(60)));
            let during_timeout = ticks.load(Ordering::SeqCst);
            assert!(
                during_timeout >= 2,
                "ticked {during_timeout} times meanwhile"
            );
            let releaser = thread::spawn({
                let (sem, ticks) = (sem.clone(), ticks.clone());
                move || {
                    // Released only once the ticker has run while `permit` waits.
                    while ticks.load(Ordering::SeqCst) < during_timeout + 3 {
                        thread::sleep(Duration::from_millis(1));
                    }
                    sem.release();
                }
            });
            drop(sem.permit());
            assert!(ticks.load(Ordering::SeqCst) >= during_timeout + 3);
            stop.store(true, Ordering::SeqCst);
            ticker.join().unwrap();
            releaser.join().unwrap();
            assert_eq!(sem.available(), 1);
        });
    });
}

/// A waiter woken to compete for a released permit, which a running task takes first and
/// which cannot run again before its deadline has passed, returns false; the wake-up it was
/// given is counted out, so the next release still wakes the next waiter (were it not, that
/// waiter would sleep for ever and the watchdog fire).
#[test]
fn a_woken_waiter_past_its_deadline_gives_up_and_loses_no_wake_up() {
    common::watchdog(30, "a_woken_waiter_past_its_deadline", || {
        on_domains(1, || {
            let sem = Arc::new(Semaphore::new(0));
            let timed = thread::spawn({
                let sem = sem.clone();
                move || sem.acquire_timeout(Duration::from_millis(20))
            });
            // One domain: once we run again, `timed` has parked in its wait.
            thread::yield_now();
            sem.release();
            assert!(sem.try_acquire(), "the released permit is free to take");
            // Keep the domain (no park point) until the waiter's deadline is behind it.
            let t = Instant::now();
            while t.elapsed() < Duration::from_millis(40) {
                std::hint::spin_loop();
            }
            assert!(!timed.join().unwrap(), "no permit for the late waiter");
            assert_eq!(sem.available(), 0);
            let next = thread::spawn({
                let sem = sem.clone();
                move || sem.acquire()
            });
            thread::yield_now();
            sem.release();
            next.join().unwrap();
            assert_eq!(sem.available(), 0, "the next waiter took it");
            sem.release();
            assert_eq!(sem.available(), 1);
        });
    });
}

/// A task cancelled while it waits in `acquire_timeout`, `permit_timeout` or `permit` unwinds
/// (join gives `TaskCancelled`) without taking a permit: the next waiter gets the one
/// released, and the count is right afterwards. On one domain, and with the waiters on
/// domain 1 cancelled from domain 0.
#[test]
fn a_task_cancelled_while_waiting_takes_no_permit() {
    type Wait = fn(&Semaphore);
    let waits: [(&str, Wait); 3] = [
        ("acquire_timeout", |s| {
            s.acquire_timeout(HOUR);
        }),
        ("permit_timeout", |s| {
            let _p = s.permit_timeout(HOUR);
            unreachable!("a cancelled waiter got a permit");
        }),
        ("permit", |s| {
            let _p = s.permit();
            unreachable!("a cancelled waiter got a permit");
        }),
    ];
    common::watchdog(60, "a_task_cancelled_while_waiting_takes_no_permit", || {
        for (domains, d) in [(1, 0), (2, 1)] {
            for (what, wait) in waits {
                with_domains(domains, |rt| {
                    let sem = Arc::new(Semaphore::new(0));
                    let parked = Arc::new(AtomicBool::new(false));
                    let victim = rt.spawn_on(d, {
                        let (sem, parked) = (sem.clone(), parked.clone());
                        move || {
                            parked.store(true, Ordering::SeqCst);
                            wait(&sem);
                        }
                    });
                    let next = rt.spawn_on(d, {
                        let sem = sem.clone();
                        move || drop(sem.permit_timeout(HOUR).expect("the released permit"))
                    });
                    while !parked.load(Ordering::SeqCst) {
                        thread::yield_now();
                    }
                    // Once the victim is parked (or, if the cancel comes first, at its park
                    // point) it unwinds.
                    thread::sleep(Duration::from_millis(5));
                    victim.cancel();
                    let err = victim.join().expect_err("the victim was cancelled");
                    assert!(err.is::<TaskCancelled>(), "{what}: {}", payload_text(&*err));
                    sem.release();
                    next.join().unwrap();
                    assert_eq!(sem.available(), 1, "{what} on {domains}: one permit, back");
                });
            }
        }
    });
}

/// A task cancelled while it holds a permit guard (parked elsewhere) gives the permit back as
/// it unwinds.
#[test]
fn a_cancelled_holder_gives_its_permit_back() {
    common::watchdog(30, "a_cancelled_holder_gives_its_permit_back", || {
        on_domains(2, || {
            let sem = Arc::new(Semaphore::new(1));
            let holding = Arc::new(AtomicBool::new(false));
            let holder = thread::spawn({
                let (sem, holding) = (sem.clone(), holding.clone());
                move || {
                    let _p: SemaphorePermit<'_> = sem.permit();
                    holding.store(true, Ordering::SeqCst);
                    thread::sleep(HOUR);
                }
            });
            while !holding.load(Ordering::SeqCst) {
                thread::yield_now();
            }
            assert_eq!(sem.available(), 0);
            holder.cancel();
            assert!(holder.join().unwrap_err().is::<TaskCancelled>());
            assert_eq!(sem.available(), 1, "given back on the way out");
        });
    });
}

/// Permits released one at a time by a task and a plain thread, raced by tasks on two domains
/// and plain threads that take them with short random timeouts (many expiring as a release
/// comes): every permit released is taken exactly once (the taker keeps it), the starting
/// permits, taken and given back by guards all along, are all in the count at the end, and
/// every taker ends (a lost permit would leave the takers short until their time limit; a
/// lost wake-up would leave a taker that waits without a short timeout asleep).
#[test]
fn timeouts_racing_releases_neither_lose_nor_make_permits() {
    /// Permits the semaphore starts with, passed around through guards.
    const START: usize = 2;
    /// Permits the releasers add, each kept by the taker that gets it (`forget`).
    const RELEASED: usize = 4000;
    /// Tasks per domain, and plain threads, taking permits.
    const TASKS: usize = 3;
    const THREADS: usize = 2;
    common::watchdog(120, "timeouts_racing_releases", || {
        let sem = Arc::new(Semaphore::new(START));
        let kept = Arc::new(AtomicUsize::new(0));
        let timeouts = Arc::new(AtomicUsize::new(0));
        // A taker: waits for a permit with a short random timeout, then keeps it if fewer
        // than `RELEASED` are kept so far, or gives it back (a guard's drop), until all are.
        let taker = {
            let (sem, kept, timeouts) = (sem.clone(), kept.clone(), timeouts.clone());
            move |salt: u64, yield_now: fn()| {
                let mut rng = Rng::seeded(salt);
                let limit = Instant::now() + Duration::from_secs(60);
                while kept.load(Ordering::SeqCst) < RELEASED && Instant::now() < limit {
                    // Mostly short timeouts; some waits long enough that only a wake-up
                    // ends them (a lost one would hang the taker).
                    let p = match rng.below(8) {
                        0 => sem.permit(),
                        1 => sem.permit_timeout(HOUR).expect("a wait of an hour"),
                        _ => {
                            let timeout = Duration::from_micros(rng.below(300));
                            let Some(p) = sem.permit_timeout(timeout) else {
                                timeouts.fetch_add(1, Ordering::Relaxed);
                                continue;
                            };
                            p
                        }
                    };
                    if rng.below(4) == 0 {
                        yield_now();
                    }
                    let keep = kept
                        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |k| {
                            (k < RELEASED).then_some(k + 1)
                        })
                        .is_ok();
                    if keep {
                        p.forget();
                    } else {
                        drop(p);
                    }
                }
            }
        };
        let release_half = |sem: Arc<Semaphore>, sleep: fn(Duration)| {
            move || {
                for k in 0..RELEASED / 2 {
                    sem.release();
                    if k % 8 == 0 {
                        sleep(Duration::from_micros(50));
                    }
                }
            }
        };
        let threads: Vec<_> = (0..THREADS)
            .map(|i| {
                let taker = taker.clone();
                std::thread::spawn(move || taker(100 + i as u64, std::thread::yield_now))
            })
            .collect();
        let plain_releaser = std::thread::spawn(release_half(sem.clone(), std::thread::sleep));
        with_domains(2, |rt| {
            let tasks: Vec<_> = (0..2 * TASKS)
                .map(|i| {
                    let taker = taker.clone();
                    rt.spawn_on(i % 2, move || taker(i as u64, thread::yield_now))
                })
                .collect();
            let releaser = rt.spawn_on(1, release_half(sem.clone(), thread::sleep));
            releaser.join().unwrap();
            for t in tasks {
                t.join().unwrap();
            }
        });
        plain_releaser.join().unwrap();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(
            kept.load(Ordering::SeqCst),
            RELEASED,
            "every release taken once"
        );
        assert_eq!(sem.available(), START, "the starting permits are all back");
        assert!(timeouts.load(Ordering::Relaxed) > 0, "some waits timed out");
    });
}

/// `P` permits shared by tasks on two domains and plain threads that take them with short
/// random timeouts and hold them for a moment: never more than `P` holders at once (no timeout
/// makes a permit), and all `P` are back at the end (none lost).
#[test]
fn timed_takers_never_hold_more_permits_than_there_are() {
    const P: usize = 3;
    const ROUNDS: u64 = 3000;
    common::watchdog(120, "timed_takers_never_hold_more_permits", || {
        let sem = Arc::new(Semaphore::new(P));
        let holders = Arc::new(AtomicUsize::new(0));
        let held = Arc::new(AtomicUsize::new(0));
        let body = {
            let (sem, holders, held) = (sem.clone(), holders.clone(), held.clone());
            move |salt: u64, rounds: u64, yield_now: fn()| {
                let mut rng = Rng::seeded(salt);
                for _ in 0..rounds {
                    let timeout = Duration::from_micros(rng.below(200));
                    let Some(p) = sem.permit_timeout(timeout) else {
                        continue;
                    };
                    let now = holders.fetch_add(1, Ordering::SeqCst) + 1;
                    assert!(now <= P, "{now} holders of {P} permits");
                    held.fetch_add(1, Ordering::Relaxed);
                    yield_now();
                    holders.fetch_sub(1, Ordering::SeqCst);
                    drop(p);
                }
            }
        };
        let threads: Vec<_> = (0..2)
            .map(|i| {
                let body = body.clone();
                std::thread::spawn(move || body(50 + i, ROUNDS / 4, std::thread::yield_now))
            })
            .collect();
        with_domains(2, |rt| {
            let tasks: Vec<_> = (0..8)
                .map(|i| {
                    let body = body.clone();
                    rt.spawn_on(i % 2, move || body(i as u64, ROUNDS, thread::yield_now))
                })
                .collect();
            for t in tasks {
                t.join().unwrap();
            }
        });
        for t in threads {
            t.join().unwrap();
        }
        assert!(held.load(Ordering::Relaxed) > 0);
        assert_eq!(holders.load(Ordering::SeqCst), 0);
        assert_eq!(sem.available(), P, "every permit is back");
    });
}
