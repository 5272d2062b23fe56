//! OCaml's `Mutex`, `Condition` and `Semaphore` (`bobine::ocaml`), as OCaml's manual states
//! them: the exact error messages of every misuse, `try_lock` and `protect`, the wake-up order of
//! `signal` and `broadcast`, releasing semaphores from any thread, and that no misuse leaves a
//! primitive's wait queue in a bad state.
//!
//! The ordering tests run on one domain, where a task created and then yielded to runs until it
//! blocks: the waiters queue in a known order.

mod common;

use std::sync::Arc;
use std::sync::Mutex as StdMutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use bobine::ocaml::semaphore::{binary, counting};
use bobine::ocaml::{condition, mutex, thread};
use common::panics::panic_text;
use common::tasks::on_domains;

const DEADLOCK: &str = "Sys_error(\"Mutex.lock: Resource deadlock avoided\")";
const UNLOCK: &str = "Sys_error(\"Mutex.unlock: Operation not permitted\")";
const WAIT: &str = "Sys_error(\"Condition.wait: Operation not permitted\")";
const INIT: &str = "Invalid_argument(\"Semaphore.Counting.init: wrong initial value\")";
const OVERFLOW: &str = "Sys_error(\"Semaphore.Counting.release: overflow\")";

/// Runs `f` as the main task of a one-domain runtime, under the watchdog.
fn on_one_domain(name: &str, f: impl FnOnce()) {
    common::watchdog(60, name, || on_domains(1, f));
}

/// A shared log of events.
type Log = Arc<StdMutex<Vec<u64>>>;

fn log() -> Log {
    Arc::new(StdMutex::new(Vec::new()))
}

fn snapshot(log: &Log) -> Vec<u64> {
    log.lock().unwrap().clone()
}

/// Lets the other tasks of the (single) domain run until they block again.
fn settle() {
    for _ in 0..10 {
        thread::yield_();
    }
}

/// Creates `n` threads that each lock `m`, log their number `1..=n`, and unlock; each is
/// yielded to right after it is created, so on one domain they queue on `m` in that order when
/// `m` is held.
fn queue_lockers(m: &mutex::T, n: u64, log: &Log) -> Vec<thread::T> {
    (1..=n)
        .map(|i| {
            let (m, log) = (m.clone(), log.clone());
            let t = thread::create(
                move |i| {
                    mutex::lock(&m);
                    log.lock().unwrap().push(i);
                    mutex::unlock(&m);
                },
                i,
            );
            thread::yield_();
            t
        })
        .collect()
}

/// Creates `n` threads that each lock `m`, count themselves in `waiting`, wait once on `c`, log
/// their number `1..=n`, and unlock; on one domain they are queued on `c` in that order when
/// this returns.
fn queue_waiters(
    m: &mutex::T,
    c: &condition::T,
    n: u64,
    waiting: &Arc<AtomicUsize>,
    log: &Log,
) -> Vec<thread::T> {
    (1..=n)
        .map(|i| {
            let (m, c, waiting, log) = (m.clone(), c.clone(), waiting.clone(), log.clone());
            let t = thread::create(
                move |i| {
                    mutex::lock(&m);
                    waiting.fetch_add(1, Ordering::SeqCst);
                    condition::wait(&c, &m);
                    log.lock().unwrap().push(i);
                    mutex::unlock(&m);
                },
                i,
            );
            thread::yield_();
            t
        })
        .collect()
}

/// Locking a mutex the caller holds raises `Resource deadlock avoided`, in a task and on a
/// plain thread, and the caller still holds it afterwards.
#[test]
fn relock_by_owner_raises_resource_deadlock_avoided() {
    let check = || {
        let m = mutex::create();
        mutex::lock(&m);
        assert_eq!(panic_text(|| mutex::lock(&m)), DEADLOCK);
        assert!(!mutex::try_lock(&m), "the owner no longer holds the mutex");
        mutex::unlock(&m);
        assert!(mutex::try_lock(&m));
        mutex::unlock(&m);
    };
    on_one_domain("relock_by_owner_raises_resource_deadlock_avoided", check);
    common::watchdog(60, "relock_by_owner_on_a_plain_thread", check);
}

/// Unlocking a mutex that nobody holds raises `Operation not permitted` (never locked, and
/// unlocked twice).
#[test]
fn unlock_of_an_unlocked_mutex_is_not_permitted() {
    on_one_domain("unlock_of_an_unlocked_mutex_is_not_permitted", || {
        let m = mutex::create();
        assert_eq!(panic_text(|| mutex::unlock(&m)), UNLOCK);
        mutex::lock(&m);
        mutex::unlock(&m);
        assert_eq!(panic_text(|| mutex::unlock(&m)), UNLOCK);
        assert!(mutex::try_lock(&m));
        mutex::unlock(&m);
    });
}

/// Unlocking a mutex held by another thread raises `Operation not permitted`, whether the
/// intruder is a task or a plain thread, and the holder keeps the mutex.
#[test]
fn unlock_by_another_thread_is_not_permitted() {
    on_one_domain("unlock_by_another_thread_is_not_permitted", || {
        let m = mutex::create();
        mutex::lock(&m);
        let msg = Arc::new(StdMutex::new(String::new()));
        let (m2, msg2) = (m.clone(), msg.clone());
        let t = thread::create(
            move |()| *msg2.lock().unwrap() = panic_text(|| mutex::unlock(&m2)),
            (),
        );
        thread::join(&t);
        assert_eq!(*msg.lock().unwrap(), UNLOCK);
        let m2 = m.clone();
        let plain = std::thread::spawn(move || panic_text(|| mutex::unlock(&m2)));
        assert_eq!(plain.join().unwrap(), UNLOCK);
        // Still held by the main thread: a third party cannot take it, the owner can unlock it.
        let m2 = m.clone();
        assert!(
            !std::thread::spawn(move || mutex::try_lock(&m2))
                .join()
                .unwrap()
        );
        mutex::unlock(&m);
        // And a task that holds it can unlock it.
        let m2 = m.clone();
        let t = thread::create(
            move |()| {
                mutex::lock(&m2);
                mutex::unlock(&m2);
            },
            (),
        );
        thread::join(&t);
        assert!(mutex::try_lock(&m));
        mutex::unlock(&m);
    });
}

/// `Condition.wait` without holding the mutex raises `Operation not permitted`: with the mutex
/// free, and with it held by someone else (who keeps it).
#[test]
fn condition_wait_without_the_mutex_is_not_permitted() {
    on_one_domain("condition_wait_without_the_mutex_is_not_permitted", || {
        let m = mutex::create();
        let c = condition::create();
        assert_eq!(panic_text(|| condition::wait(&c, &m)), WAIT);
        assert!(mutex::try_lock(&m), "a failed wait left the mutex locked");
        mutex::unlock(&m);
        // Held by another thread (parked on a semaphore while it holds it): the failed wait
        // must not release it.
        let gate = binary::make(false);
        let (m2, gate2) = (m.clone(), gate.clone());
        let holder = thread::create(
            move |()| {
                mutex::lock(&m2);
                binary::acquire(&gate2);
                mutex::unlock(&m2);
            },
            (),
        );
        thread::yield_();
        assert_eq!(panic_text(|| condition::wait(&c, &m)), WAIT);
        assert!(
            !mutex::try_lock(&m),
            "a failed wait released someone else's mutex"
        );
        binary::release(&gate);
        thread::join(&holder);
        // The condition still works.
        let waiting = Arc::new(AtomicUsize::new(0));
        let log = log();
        let ts = queue_waiters(&m, &c, 1, &waiting, &log);
        mutex::lock(&m);
        condition::signal(&c);
        mutex::unlock(&m);
        ts.iter().for_each(thread::join);
        assert_eq!(snapshot(&log), [1]);
    });
}

/// `Semaphore.Counting.make` with a negative value raises `Invalid_argument`.
#[test]
fn counting_make_negative_is_an_invalid_argument() {
    common::watchdog(60, "counting_make_negative_is_an_invalid_argument", || {
        assert_eq!(panic_text(|| drop(counting::make(-1))), INIT);
        assert_eq!(panic_text(|| drop(counting::make(i64::MIN))), INIT);
        assert_eq!(counting::get_value(&counting::make(0)), 0);
    });
}

/// `release` at OCaml's `max_int` raises the overflow error and leaves the value as it was; the
/// semaphore still works afterwards.
#[test]
fn counting_release_at_max_overflows_and_keeps_the_value() {
    on_one_domain("counting_release_at_max_overflows", || {
        let s = counting::make(bobine::ocaml::MAX_INT);
        assert_eq!(panic_text(|| counting::release(&s)), OVERFLOW);
        assert_eq!(counting::get_value(&s), bobine::ocaml::MAX_INT);
        assert!(counting::try_acquire(&s));
        assert_eq!(counting::get_value(&s), bobine::ocaml::MAX_INT - 1);
        counting::release(&s);
        assert_eq!(counting::get_value(&s), bobine::ocaml::MAX_INT);
        assert_eq!(panic_text(|| counting::release(&s)), OVERFLOW);
        counting::acquire(&s);
        assert_eq!(counting::get_value(&s), bobine::ocaml::MAX_INT - 1);
    });
}

/// `Binary.release` sets the value to 1: releasing twice then `try_acquire` twice gives true,
/// false; a third release makes it available again.
#[test]
fn binary_release_twice_then_try_acquire_twice_gives_true_false() {
    common::watchdog(60, "binary_release_twice", || {
        let s = binary::make(false);
        assert!(!binary::try_acquire(&s));
        binary::release(&s);
        binary::release(&s);
        assert!(binary::try_acquire(&s));
        assert!(!binary::try_acquire(&s));
        binary::release(&s);
        assert!(binary::try_acquire(&s));
        let s = binary::make(true);
        assert!(binary::try_acquire(&s));
        assert!(!binary::try_acquire(&s));
    });
}

/// `Binary.release` twice while a waiter is queued counts once, as in OCaml (a mutex and a
/// condition there): the first release wakes the waiter, the second finds the value already
/// 1, and once the waiter has taken it the value is 0.
#[test]
fn binary_releases_before_the_woken_waiter_runs_count_once() {
    on_one_domain("binary_releases_count_once", || {
        let s = binary::make(false);
        let taken = Arc::new(AtomicUsize::new(0));
        let w = thread::create(
            {
                let (s, taken) = (s.clone(), taken.clone());
                move |()| {
                    binary::acquire(&s);
                    taken.fetch_add(1, Ordering::SeqCst);
                }
            },
            (),
        );
        thread::yield_();
        assert_eq!(
            taken.load(Ordering::SeqCst),
            0,
            "acquire of a 0 binary waits"
        );
        binary::release(&s);
        binary::release(&s);
        thread::join(&w);
        assert_eq!(taken.load(Ordering::SeqCst), 1);
        assert!(!binary::try_acquire(&s), "the two releases counted once");
    });
}

/// `try_lock` is false while the mutex is held, by another thread or by the caller itself,
/// and true once it is free.
#[test]
fn try_lock_is_false_when_held_even_by_the_caller() {
    on_one_domain("try_lock_is_false_when_held_even_by_the_caller", || {
        let m = mutex::create();
        assert!(mutex::try_lock(&m));
        assert!(!mutex::try_lock(&m), "try_lock by the holder succeeded");
        let m2 = m.clone();
        let seen = Arc::new(AtomicUsize::new(2));
        let seen2 = seen.clone();
        let t = thread::create(
            move |()| seen2.store(usize::from(mutex::try_lock(&m2)), Ordering::SeqCst),
            (),
        );
        thread::join(&t);
        assert_eq!(
            seen.load(Ordering::SeqCst),
            0,
            "try_lock by another task succeeded"
        );
        let m2 = m.clone();
        assert!(
            !std::thread::spawn(move || mutex::try_lock(&m2))
                .join()
                .unwrap()
        );
        // try_lock made the caller the owner: it may unlock, and relocking is an error.
        assert_eq!(panic_text(|| mutex::lock(&m)), DEADLOCK);
        mutex::unlock(&m);
        let m2 = m.clone();
        assert!(
            std::thread::spawn(move || {
                let got = mutex::try_lock(&m2);
                mutex::unlock(&m2);
                got
            })
            .join()
            .unwrap()
        );
    });
}

/// `protect` returns `f`'s value and unlocks; when `f` panics the panic goes through, the
/// mutex is unlocked, and a thread waiting for it gets it.
#[test]
fn protect_unlocks_on_return_and_on_panic() {
    on_one_domain("protect_unlocks_on_return_and_on_panic", || {
        let m = mutex::create();
        assert_eq!(mutex::protect(&m, || 42), 42);
        assert!(mutex::try_lock(&m), "protect left the mutex locked");
        mutex::unlock(&m);

        let log = log();
        let mut waiters = Vec::new();
        let msg = panic_text(|| {
            mutex::protect(&m, || {
                // Queue a waiter while protect holds the mutex.
                waiters = queue_lockers(&m, 1, &log);
                assert!(snapshot(&log).is_empty());
                panic!("boom inside protect");
            })
        });
        assert_eq!(msg, "boom inside protect");
        waiters.iter().for_each(thread::join);
        assert_eq!(
            snapshot(&log),
            [1],
            "the waiter did not get the mutex after the panic"
        );
        assert!(
            mutex::try_lock(&m),
            "protect left the mutex locked after a panic"
        );
        mutex::unlock(&m);
        // A relock inside protect is the owner's error; protect still unlocks.
        assert_eq!(
            panic_text(|| mutex::protect(&m, || mutex::lock(&m))),
            DEADLOCK
        );
        assert!(mutex::try_lock(&m));
        mutex::unlock(&m);
    });
}

/// `signal` wakes exactly one waiter, the oldest: three waiters queued in order 1, 2, 3 wake
/// in that order, one per signal.
#[test]
fn signal_wakes_the_oldest_waiter_first() {
    on_one_domain("signal_wakes_the_oldest_waiter_first", || {
        let (m, c, waiting, log) = (
            mutex::create(),
            condition::create(),
            Arc::new(AtomicUsize::new(0)),
            log(),
        );
        let ts = queue_waiters(&m, &c, 3, &waiting, &log);
        assert_eq!(waiting.load(Ordering::SeqCst), 3);
        for k in 1..=3u64 {
            mutex::lock(&m);
            condition::signal(&c);
            mutex::unlock(&m);
            settle();
            assert_eq!(
                snapshot(&log),
                (1..=k).collect::<Vec<_>>(),
                "after signal {k}"
            );
        }
        ts.iter().for_each(thread::join);
    });
}

/// `broadcast` wakes every waiter (oldest first), each exactly once.
#[test]
fn broadcast_wakes_every_waiter() {
    on_one_domain("broadcast_wakes_every_waiter", || {
        let (m, c, waiting, log) = (
            mutex::create(),
            condition::create(),
            Arc::new(AtomicUsize::new(0)),
            log(),
        );
        let ts = queue_waiters(&m, &c, 5, &waiting, &log);
        assert_eq!(waiting.load(Ordering::SeqCst), 5);
        mutex::lock(&m);
        condition::broadcast(&c);
        mutex::unlock(&m);
        ts.iter().for_each(thread::join);
        assert_eq!(snapshot(&log), [1, 2, 3, 4, 5]);
    });
}

/// `signal` and `broadcast` with no waiter do nothing: they are not remembered, so a later
/// waiter stays blocked until the next signal.
#[test]
fn signal_and_broadcast_with_no_waiter_do_nothing() {
    on_one_domain("signal_and_broadcast_with_no_waiter_do_nothing", || {
        let (m, c, waiting, log) = (
            mutex::create(),
            condition::create(),
            Arc::new(AtomicUsize::new(0)),
            log(),
        );
        condition::signal(&c);
        condition::broadcast(&c);
        mutex::lock(&m);
        condition::signal(&c);
        condition::broadcast(&c);
        mutex::unlock(&m);
        let ts = queue_waiters(&m, &c, 2, &waiting, &log);
        settle();
        assert_eq!(waiting.load(Ordering::SeqCst), 2);
        assert!(
            snapshot(&log).is_empty(),
            "an earlier signal woke a later waiter"
        );
        mutex::lock(&m);
        condition::signal(&c);
        mutex::unlock(&m);
        settle();
        assert_eq!(snapshot(&log), [1]);
        condition::broadcast(&c);
        ts.iter().for_each(thread::join);
        assert_eq!(snapshot(&log), [1, 2]);
    });
}

/// Any thread may release a semaphore: a task blocked in `acquire` is released by another
/// task and by a plain thread; a thread that never acquired raises the value.
#[test]
fn any_thread_may_release_a_semaphore() {
    on_one_domain("any_thread_may_release_a_semaphore", || {
        let s = counting::make(0);
        let done = Arc::new(AtomicUsize::new(0));
        let acquirer = |s: &counting::T| {
            let (s, done) = (s.clone(), done.clone());
            let t = thread::create(
                move |()| {
                    counting::acquire(&s);
                    done.fetch_add(1, Ordering::SeqCst);
                },
                (),
            );
            thread::yield_();
            t
        };
        let w = acquirer(&s);
        assert_eq!(done.load(Ordering::SeqCst), 0, "acquire of 0 did not block");
        let s2 = s.clone();
        thread::join(&thread::create(move |()| counting::release(&s2), ()));
        thread::join(&w);
        assert_eq!(done.load(Ordering::SeqCst), 1);
        assert_eq!(counting::get_value(&s), 0);

        let w = acquirer(&s);
        let s2 = s.clone();
        std::thread::spawn(move || counting::release(&s2))
            .join()
            .unwrap();
        thread::join(&w);
        assert_eq!(done.load(Ordering::SeqCst), 2);
        assert_eq!(counting::get_value(&s), 0);

        let s2 = s.clone();
        std::thread::spawn(move || counting::release(&s2))
            .join()
            .unwrap();
        assert_eq!(counting::get_value(&s), 1);

        // Binary: a blocked task released by a plain thread.
        let b = binary::make(false);
        let (b2, done2) = (b.clone(), done.clone());
        let w = thread::create(
            move |()| {
                binary::acquire(&b2);
                done2.fetch_add(1, Ordering::SeqCst);
            },
            (),
        );
        thread::yield_();
        assert_eq!(
            done.load(Ordering::SeqCst),
            2,
            "acquire of a 0 binary did not block"
        );
        let b2 = b.clone();
        std::thread::spawn(move || binary::release(&b2))
            .join()
            .unwrap();
        thread::join(&w);
        assert_eq!(done.load(Ordering::SeqCst), 3);
        // The permit went to the waiter, not to the value.
        assert!(!binary::try_acquire(&b));
    });
}

/// Misusing a mutex that has queued waiters (relock by the owner, unlock by a task and by a
/// plain thread, unlocking it twice) leaves its queue intact: the waiters then get it once each,
/// oldest first, and it ends free.
#[test]
fn mutex_misuse_never_corrupts_its_queue() {
    on_one_domain("mutex_misuse_never_corrupts_its_queue", || {
        let m = mutex::create();
        let log = log();
        mutex::lock(&m);
        let ts = queue_lockers(&m, 3, &log);
        assert_eq!(panic_text(|| mutex::lock(&m)), DEADLOCK);
        let m2 = m.clone();
        let intruder = thread::create(
            move |()| assert_eq!(panic_text(|| mutex::unlock(&m2)), UNLOCK),
            (),
        );
        thread::join(&intruder);
        let m2 = m.clone();
        assert_eq!(
            std::thread::spawn(move || panic_text(|| mutex::unlock(&m2)))
                .join()
                .unwrap(),
            UNLOCK
        );
        settle();
        assert!(snapshot(&log).is_empty(), "a misuse let a waiter in");
        mutex::unlock(&m);
        assert_eq!(panic_text(|| mutex::unlock(&m)), UNLOCK);
        ts.iter().for_each(thread::join);
        assert_eq!(snapshot(&log), [1, 2, 3]);
        // Normal use afterwards, with a second round of waiters.
        mutex::lock(&m);
        let ts = queue_lockers(&m, 3, &log);
        mutex::unlock(&m);
        ts.iter().for_each(thread::join);
        assert_eq!(snapshot(&log), [1, 2, 3, 1, 2, 3]);
        assert!(mutex::try_lock(&m));
        mutex::unlock(&m);
    });
}

/// Misusing a condition that has queued waiters (waits without the mutex, from the main task
/// and from a plain thread) leaves its queue intact: signal still wakes them one at a time,
/// oldest first, and the condition works normally afterwards.
#[test]
fn condition_misuse_never_corrupts_its_queue() {
    on_one_domain("condition_misuse_never_corrupts_its_queue", || {
        let (m, c, waiting, log) = (
            mutex::create(),
            condition::create(),
            Arc::new(AtomicUsize::new(0)),
            log(),
        );
        let ts = queue_waiters(&m, &c, 3, &waiting, &log);
        assert_eq!(panic_text(|| condition::wait(&c, &m)), WAIT);
        let (m2, c2) = (m.clone(), c.clone());
        assert_eq!(
            std::thread::spawn(move || panic_text(|| condition::wait(&c2, &m2)))
                .join()
                .unwrap(),
            WAIT
        );
        // A different mutex held by the caller does not make the wait legal.
        let other = mutex::create();
        mutex::lock(&other);
        assert_eq!(panic_text(|| condition::wait(&c, &m)), WAIT);
        mutex::unlock(&other);
        settle();
        assert!(snapshot(&log).is_empty(), "a misuse woke a waiter");
        for k in 1..=3u64 {
            condition::signal(&c);
            settle();
            assert_eq!(
                snapshot(&log),
                (1..=k).collect::<Vec<_>>(),
                "after signal {k}"
            );
        }
        ts.iter().for_each(thread::join);
        // Normal use afterwards.
        let ts = queue_waiters(&m, &c, 3, &waiting, &log);
        assert_eq!(waiting.load(Ordering::SeqCst), 6);
        mutex::lock(&m);
        condition::broadcast(&c);
        mutex::unlock(&m);
        ts.iter().for_each(thread::join);
        assert_eq!(snapshot(&log), [1, 2, 3, 1, 2, 3]);
        assert!(mutex::try_lock(&m));
        mutex::unlock(&m);
    });
}

/// `Semaphore.Counting` (made right after a failed `make`): each release wakes the oldest
/// queued waiter, one per release, which takes the permit; its value only rises once nobody
/// waits.
#[test]
fn counting_semaphore_hands_permits_to_the_oldest_waiter() {
    on_one_domain("counting_semaphore_fifo", || {
        assert_eq!(panic_text(|| drop(counting::make(-5))), INIT);
        let s = counting::make(0);
        let log = log();
        let ts: Vec<_> = (1..=3u64)
            .map(|i| {
                let (s, log) = (s.clone(), log.clone());
                let t = thread::create(
                    move |i| {
                        counting::acquire(&s);
                        log.lock().unwrap().push(i);
                    },
                    i,
                );
                thread::yield_();
                t
            })
            .collect();
        for k in 1..=3u64 {
            counting::release(&s);
            settle();
            assert_eq!(
                snapshot(&log),
                (1..=k).collect::<Vec<_>>(),
                "after release {k}"
            );
            assert_eq!(counting::get_value(&s), 0);
        }
        ts.iter().for_each(thread::join);
        counting::release(&s);
        assert_eq!(counting::get_value(&s), 1);
    });
}
