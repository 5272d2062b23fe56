//! In-crate tests of the locks' starvation bound: a waiter kept from a lock by tasks of two
//! other domains that take and release it in a loop (barging each time) switches the lock to
//! hand-off mode, and then gets it. The switch is seen through a counter each primitive keeps
//! for the tests; the rest is behaviour, never timing. Behaviour-only tests of the same rule
//! (with plain threads too, and stops of woken waiters) are in `tests/lock_fairness.rs`.

use std::any::Any;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::raw::RawMutex;
use super::{RwLock, Semaphore};
use crate::sched::park::stop::catch_at_root;
use crate::sched::runtime::SpawnOptions;
use crate::sched::task::Task;
use crate::thread::JoinHandle;
use crate::util::within;

/// Times each waiter takes the lock.
const ROUNDS: usize = 3;

/// Starts `f` as a task bound to domain `d` of the running runtime.
fn spawn_on(d: usize, f: impl FnOnce() + Send + 'static) -> JoinHandle<()> {
    let opts = SpawnOptions {
        domain: Some(d),
        ..SpawnOptions::default()
    };
    crate::thread::spawn_rooted(opts, move |task: &Task| {
        let outcome = catch_at_root(task, f).map(|()| Box::new(()) as Box<dyn Any>);
        task.set_outcome(outcome);
    })
    .expect("a task on a domain")
}

/// Work inside a critical section, long enough that a waiter woken by its release finds the
/// lock taken again by then.
fn busy() {
    for _ in 0..500 {
        std::hint::spin_loop();
    }
}

/// Runs `waiter` as the main task of a runtime of 3 domains while `hammer` runs in a loop on
/// domains 1 and 2 (taking and releasing the lock; they start before the waiter and stop only
/// once it is done), and a task that yields keeps domain 0 busy, so that the waiter, woken,
/// does not spin: it can take the lock by barging only if its one attempt meets the lock free.
/// Returns how many times the hammering tasks went through.
fn hammered(
    hammer: impl Fn() + Send + Sync + 'static,
    waiter: impl FnOnce() + Send + 'static,
) -> u64 {
    within(60, move || {
        crate::Builder::new().domains(3).run(move || {
            let stop = Arc::new(AtomicBool::new(false));
            let hammer = Arc::new(hammer);
            let rounds: Arc<[AtomicU64; 2]> = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
            let hammers: Vec<_> = (0..2)
                .map(|i| {
                    let (stop, rounds, hammer) = (stop.clone(), rounds.clone(), hammer.clone());
                    spawn_on(i + 1, move || {
                        let mut n = 0u64;
                        while !stop.load(Ordering::Relaxed) {
                            hammer();
                            n += 1;
                            rounds[i].store(n, Ordering::Relaxed);
                            if n % 256 == 0 {
                                // Not holding the lock: only lets the domain breathe.
                                crate::thread::yield_now();
                            }
                        }
                    })
                })
                .collect();
            let yielder = {
                let stop = stop.clone();
                spawn_on(0, move || {
                    while !stop.load(Ordering::Relaxed) {
                        crate::thread::yield_now();
                    }
                })
            };
            while rounds.iter().any(|r| r.load(Ordering::Relaxed) < 100) {
                crate::thread::yield_now();
            }
            waiter();
            stop.store(true, Ordering::Relaxed);
            for h in hammers {
                h.join().expect("a hammering task");
            }
            yielder.join().expect("the yielding task");
            rounds.iter().map(|r| r.load(Ordering::Relaxed)).sum()
        })
    })
}

/// A mutex waiter that tasks of two other domains keep overtaking switches the mutex to
/// hand-off mode once past the bound, and gets the lock: it does not starve.
#[test]
fn an_overtaken_mutex_waiter_switches_to_hand_off_and_gets_the_lock() {
    let m = Arc::new(RawMutex::new());
    let (m1, m2) = (m.clone(), m.clone());
    let taken = Arc::new(AtomicU64::new(0));
    let t = taken.clone();
    let hammering = hammered(
        move || {
            m1.lock("test");
            busy();
            m1.unlock();
        },
        move || {
            for _ in 0..ROUNDS {
                m2.lock("test");
                t.fetch_add(1, Ordering::Relaxed);
                m2.unlock();
            }
        },
    );
    assert_eq!(taken.load(Ordering::Relaxed), ROUNDS as u64);
    assert!(hammering > 0, "the other domains took the lock too");
    assert!(
        m.handoffs() > 0,
        "the waiter switched the mutex to hand-off"
    );
    assert!(m.try_lock(), "free at the end");
}

/// A semaphore waiter that tasks of two other domains keep overtaking (one permit, taken and
/// given back in a loop) switches it to hand-off mode once past the bound, and gets a permit.
#[test]
fn an_overtaken_semaphore_waiter_switches_to_hand_off_and_gets_a_permit() {
    let sem = Arc::new(Semaphore::new(1));
    let (s1, s2) = (sem.clone(), sem.clone());
    let hammering = hammered(
        move || {
            s1.acquire();
            busy();
            s1.release();
        },
        move || {
            for _ in 0..ROUNDS {
                s2.acquire();
                s2.release();
            }
        },
    );
    assert!(hammering > 0, "the other domains took the permit too");
    assert!(
        sem.handoffs() > 0,
        "the waiter switched the semaphore to hand-off"
    );
    assert_eq!(sem.available(), 1, "the permit is back");
}

/// A reader that writers on two other domains keep overtaking (each takes the write lock in a
/// loop, barging) switches the lock to hand-off mode once past the bound, and gets in.
#[test]
fn an_overtaken_reader_switches_to_hand_off_and_gets_in() {
    let lock = Arc::new(RwLock::new(0u64));
    let (l1, l2) = (lock.clone(), lock.clone());
    let hammering = hammered(
        move || {
            let mut g = l1.write().unwrap();
            busy();
            *g += 1;
        },
        move || {
            for _ in 0..ROUNDS {
                drop(l2.read().unwrap());
            }
        },
    );
    assert!(hammering > 0, "the writers took the lock too");
    assert!(
        lock.handoffs() > 0,
        "the reader switched the lock to hand-off"
    );
    assert_eq!(*lock.read().unwrap(), hammering, "every write counted");
}
