//! The one blocking primitive: `Park` / `Unparker` / `Wake`, in tasks and on plain OS threads,
//! woken from the same domain, other domains, other runtimes and plain threads, racing timeouts.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use bobine::thread;
use bobine::{Park, Unparker, Wake};

/// A token passed around a ring of waiters: waiter `i` may go when `turn == i`.
struct Ring {
    state: Mutex<(usize, Vec<Option<Unparker>>)>,
}

impl Ring {
    fn new(n: usize) -> Ring {
        Ring {
            state: Mutex::new((0, (0..n).map(|_| None).collect())),
        }
    }

    /// Parks until it is `me`'s turn. The park is armed only when it will be waited on.
    fn wait_turn(&self, me: usize) {
        loop {
            let park = {
                let mut g = self.state.lock().unwrap();
                if g.0 == me {
                    return;
                }
                let park = Park::new();
                g.1[me] = Some(park.unparker());
                park
            };
            assert_eq!(park.wait("test: ring turn"), Wake::Unparked);
        }
    }

    /// Hands the token to `next` and wakes it if it waits.
    fn pass(&self, next: usize) {
        let waiter = {
            let mut g = self.state.lock().unwrap();
            g.0 = next;
            g.1[next].take()
        };
        if let Some(u) = waiter {
            assert!(
                u.unpark(),
                "the waiter registered for this turn was already woken"
            );
        }
    }
}

/// Plain OS threads unpark a task 3 000 times; every unpark wins and every wait sees `Unparked`.
#[test]
fn unpark_from_plain_threads_wakes_a_task_every_round() {
    common::watchdog(
        30,
        "unpark_from_plain_threads_wakes_a_task_every_round",
        || {
            const ROUNDS: usize = 3000;
            let won = Arc::new(AtomicUsize::new(0));
            let (tx, rx) = mpsc::channel::<Unparker>();
            let rx = Arc::new(Mutex::new(rx));
            let wakers: Vec<_> = (0..3)
                .map(|_| {
                    let (rx, won) = (rx.clone(), won.clone());
                    std::thread::spawn(move || {
                        loop {
                            let u = rx.lock().unwrap().recv();
                            match u {
                                Ok(u) => {
                                    if u.unpark() {
                                        won.fetch_add(1, Ordering::SeqCst);
                                    }
                                }
                                Err(_) => return,
                            }
                        }
                    })
                })
                .collect();
            let woken = bobine::Builder::new().domains(2).run(move || {
                let mut woken = 0;
                for _ in 0..ROUNDS {
                    let park = Park::new();
                    tx.send(park.unparker()).unwrap();
                    if park.wait("test: woken by a plain thread") == Wake::Unparked {
                        woken += 1;
                    }
                }
                woken
            });
            for w in wakers {
                w.join().unwrap();
            }
            assert_eq!(woken, ROUNDS);
            assert_eq!(won.load(Ordering::SeqCst), ROUNDS);
        },
    );
}

/// A token ring of 6 tasks on a two-domain runtime: 6 000 hand-offs by unpark, each task goes
/// exactly its share of turns, in order.
#[test]
fn ring_of_tasks_on_two_domains_passes_every_token() {
    common::watchdog(
        30,
        "ring_of_tasks_on_two_domains_passes_every_token",
        || {
            const TASKS: usize = 6;
            const LAPS: usize = 1000;
            let (counts, log, threads) = bobine::Builder::new().domains(2).run(|| {
                let ring = Arc::new(Ring::new(TASKS));
                let log = Arc::new(Mutex::new(Vec::with_capacity(TASKS * LAPS)));
                let threads = Arc::new(Mutex::new(HashSet::new()));
                let handles: Vec<_> = (0..TASKS)
                    .map(|me| {
                        let (ring, log, threads) = (ring.clone(), log.clone(), threads.clone());
                        thread::spawn(move || {
                            let mut mine = 0;
                            for _ in 0..LAPS {
                                ring.wait_turn(me);
                                threads.lock().unwrap().insert(std::thread::current().id());
                                log.lock().unwrap().push(me);
                                mine += 1;
                                ring.pass((me + 1) % TASKS);
                            }
                            mine
                        })
                    })
                    .collect();
                let counts: Vec<usize> = handles.into_iter().map(|h| h.join().unwrap()).collect();
                let log = log.lock().unwrap().clone();
                let n = threads.lock().unwrap().len();
                (counts, log, n)
            });
            assert_eq!(counts, vec![LAPS; TASKS]);
            assert_eq!(log.len(), TASKS * LAPS);
            for (i, who) in log.iter().enumerate() {
                assert_eq!(
                    *who,
                    i % TASKS,
                    "the token went out of order at hand-off {i}"
                );
            }
            eprintln!("ring tasks ran on {threads} OS thread(s)");
        },
    );
}

/// A runtime's main task and a task of the global runtime (another OS thread for certain)
/// ping-pong 2 000 times through unparks; every round is counted on both sides.
#[test]
fn ping_pong_with_a_task_on_another_thread() {
    common::watchdog(30, "ping_pong_with_a_task_on_another_thread", || {
        const ROUNDS: usize = 2000;
        let ring = Arc::new(Ring::new(2));
        let r = ring.clone();
        // Spawned from a plain thread: it runs on the global runtime's domains.
        let partner = std::thread::spawn(move || {
            thread::spawn(move || {
                let os = std::thread::current().id();
                for _ in 0..ROUNDS {
                    r.wait_turn(1);
                    r.pass(0);
                }
                (ROUNDS, os)
            })
        })
        .join()
        .unwrap();
        let (mine, main_os) = bobine::Builder::new().domains(2).run(|| {
            let os = std::thread::current().id();
            let mut mine = 0;
            for _ in 0..ROUNDS {
                ring.wait_turn(0);
                mine += 1;
                ring.pass(1);
            }
            ring.wait_turn(0);
            (mine, os)
        });
        let (theirs, partner_os) = partner.join().unwrap();
        assert_eq!(mine, ROUNDS);
        assert_eq!(theirs, ROUNDS);
        assert_ne!(
            main_os, partner_os,
            "the partner ran on the runtime's own thread"
        );
    });
}

/// An unparker of an earlier (ended) park does nothing to a later park of the same task: it
/// returns false and the later park still times out.
#[test]
fn stale_unparker_does_not_wake_a_later_park() {
    common::watchdog(30, "stale_unparker_does_not_wake_a_later_park", || {
        bobine::Builder::new().domains(1).run(|| {
            // Earlier park ended by an unpark.
            let p1 = Park::new();
            let u1 = p1.unparker();
            assert!(u1.unpark());
            assert_eq!(p1.wait("test: p1"), Wake::Unparked);
            // Earlier park ended by a timeout.
            let p2 = Park::new();
            let u2 = p2.unparker();
            assert_eq!(
                p2.wait_until("test: p2", Some(Instant::now())),
                Wake::TimedOut
            );

            let p3 = Park::new();
            let u3 = p3.unparker();
            assert!(
                !u1.unpark(),
                "a stale unparker claimed to wake a later park"
            );
            assert!(
                !u2.unpark(),
                "a stale unparker claimed to wake a later park"
            );
            let deadline = Instant::now() + Duration::from_millis(20);
            assert_eq!(p3.wait_until("test: p3", Some(deadline)), Wake::TimedOut);
            assert!(Instant::now() >= deadline);
            assert!(!u3.unpark(), "the unparker of a timed-out park must lose");
        });
    });
}

/// `unpark` of one park returns true once, then false, through the same handle and its clones.
#[test]
fn unpark_twice_returns_true_then_false() {
    common::watchdog(30, "unpark_twice_returns_true_then_false", || {
        bobine::Builder::new().domains(1).run(|| {
            let park = Park::new();
            let u = park.unparker();
            let clone = u.clone();
            let helper = thread::spawn(move || (u.unpark(), u.unpark(), clone.unpark()));
            assert_eq!(park.wait("test: woken by helper"), Wake::Unparked);
            assert_eq!(helper.join().unwrap(), (true, false, false));
        });
        // The same on a plain thread.
        std::thread::spawn(|| {
            let park = Park::new();
            let u = park.unparker();
            assert!(u.unpark());
            assert!(!u.unpark());
            assert!(!u.clone().unpark());
            assert_eq!(park.wait("test: plain"), Wake::Unparked);
        })
        .join()
        .unwrap();
    });
}

/// An unpark that happens before `wait` makes `wait` return `Unparked` at once, without
/// switching to another task.
#[test]
fn unpark_before_wait_returns_at_once() {
    common::watchdog(30, "unpark_before_wait_returns_at_once", || {
        bobine::Builder::new().domains(1).run(|| {
            let ran = Arc::new(AtomicBool::new(false));
            let r = ran.clone();
            let other = thread::spawn(move || r.store(true, Ordering::SeqCst));
            for _ in 0..100 {
                let park = Park::new();
                assert!(park.unparker().unpark());
                assert_eq!(park.wait("test: pre-unparked"), Wake::Unparked);
                let park = Park::new();
                assert!(park.unparker().unpark());
                let far = Instant::now() + Duration::from_secs(3600);
                assert_eq!(
                    park.wait_until("test: pre-unparked, timed", Some(far)),
                    Wake::Unparked
                );
            }
            assert!(
                !ran.load(Ordering::SeqCst),
                "a wait that was already unparked switched away"
            );
            other.join().unwrap();
        });
    });
}

/// Timeouts racing unparks from a plain thread: each round has exactly one outcome, and the
/// unparker's return value agrees with it (task waiter and plain-thread waiter).
#[test]
fn timeout_racing_unpark_has_exactly_one_outcome() {
    common::watchdog(60, "timeout_racing_unpark_has_exactly_one_outcome", || {
        const ROUNDS: u64 = 1500;
        /// Waits `i`-dependent tiny amounts on both sides so both outcomes happen.
        fn race(
            i: u64,
            tx: &mpsc::Sender<(u64, Unparker)>,
            results: &mpsc::Receiver<(u64, bool)>,
        ) -> (u64, u64) {
            let park = Park::new();
            tx.send((i, park.unparker())).unwrap();
            let deadline = Instant::now() + Duration::from_micros(i * 37 % 300);
            let why = park.wait_until("test: race", Some(deadline));
            let (j, unpark_won) = results.recv().unwrap();
            assert_eq!(j, i);
            match why {
                Wake::Unparked => {
                    assert!(
                        unpark_won,
                        "round {i}: woken as Unparked but unpark() returned false"
                    );
                    (1, 0)
                }
                Wake::TimedOut => {
                    assert!(
                        !unpark_won,
                        "round {i}: timed out but unpark() returned true"
                    );
                    assert!(
                        Instant::now() >= deadline,
                        "round {i}: timed out before its deadline"
                    );
                    (0, 1)
                }
                other => panic!("round {i}: nothing else ends this park, got {other:?}"),
            }
        }
        /// Round number and unparker to the unparking thread; round number and `unpark()`'s
        /// result back; the thread's handle.
        type Unparking = (
            mpsc::Sender<(u64, Unparker)>,
            mpsc::Receiver<(u64, bool)>,
            std::thread::JoinHandle<()>,
        );
        fn unparker_thread() -> Unparking {
            let (tx, rx) = mpsc::channel::<(u64, Unparker)>();
            let (rtx, rrx) = mpsc::channel();
            let h = std::thread::spawn(move || {
                for (i, u) in rx {
                    let spin = Instant::now() + Duration::from_micros(i * 53 % 300);
                    while Instant::now() < spin {
                        std::hint::spin_loop();
                    }
                    rtx.send((i, u.unpark())).unwrap();
                }
            });
            (tx, rrx, h)
        }

        // Waiter: a task.
        let (tx, rrx, h) = unparker_thread();
        let (unparked, timed_out) = bobine::Builder::new().domains(2).run(move || {
            let mut totals = (0, 0);
            for i in 0..ROUNDS {
                let (u, t) = race(i, &tx, &rrx);
                totals.0 += u;
                totals.1 += t;
            }
            totals
        });
        h.join().unwrap();
        assert_eq!(unparked + timed_out, ROUNDS);
        eprintln!("task waiter: {unparked} unparked, {timed_out} timed out");

        // Waiter: a plain OS thread.
        let (tx, rrx, h) = unparker_thread();
        let (unparked, timed_out) = std::thread::spawn(move || {
            let mut totals = (0, 0);
            for i in 0..ROUNDS {
                let (u, t) = race(i, &tx, &rrx);
                totals.0 += u;
                totals.1 += t;
            }
            totals
        })
        .join()
        .unwrap();
        h.join().unwrap();
        assert_eq!(unparked + timed_out, ROUNDS);
        eprintln!("plain-thread waiter: {unparked} unparked, {timed_out} timed out");
    });
}

/// `Park` works on a plain OS thread outside any runtime: woken by other plain threads and by
/// tasks, and timing out no earlier than its deadline.
#[test]
fn park_on_a_plain_thread_outside_any_runtime() {
    common::watchdog(30, "park_on_a_plain_thread_outside_any_runtime", || {
        std::thread::spawn(|| {
            // Woken by another plain thread, 500 rounds.
            let mut woken = 0;
            for _ in 0..500 {
                let park = Park::new();
                let u = park.unparker();
                let t = std::thread::spawn(move || u.unpark());
                if park.wait("test: plain, by plain") == Wake::Unparked {
                    woken += 1;
                }
                assert!(t.join().unwrap());
            }
            assert_eq!(woken, 500);

            // Woken by tasks of a runtime running on another thread, 500 rounds.
            let (tx, rx) = mpsc::channel::<Unparker>();
            let rt = std::thread::spawn(move || {
                bobine::Builder::new().domains(2).run(move || {
                    let mut won = 0;
                    for u in rx {
                        let h = thread::spawn(move || u.unpark());
                        if h.join().unwrap() {
                            won += 1;
                        }
                    }
                    won
                })
            });
            let mut woken = 0;
            for _ in 0..500 {
                let park = Park::new();
                tx.send(park.unparker()).unwrap();
                if park.wait("test: plain, by task") == Wake::Unparked {
                    woken += 1;
                }
            }
            drop(tx);
            assert_eq!(woken, 500);
            assert_eq!(rt.join().unwrap(), 500);

            // Nobody unparks: a timeout, no earlier than the deadline.
            let park = Park::new();
            let u = park.unparker();
            let deadline = Instant::now() + Duration::from_millis(50);
            assert_eq!(
                park.wait_until("test: plain timeout", Some(deadline)),
                Wake::TimedOut
            );
            assert!(Instant::now() >= deadline);
            assert!(!u.unpark());
        })
        .join()
        .unwrap();
    });
}

/// A park that is dropped without being waited on leaves no trace: its unparker does not wake
/// the next park, in a task and on a plain thread.
#[test]
fn dropped_park_does_not_disturb_the_next_park() {
    common::watchdog(30, "dropped_park_does_not_disturb_the_next_park", || {
        fn check() {
            let p1 = Park::new();
            let u1 = p1.unparker();
            drop(p1);
            let p2 = Park::new();
            assert!(
                !u1.unpark(),
                "the unparker of a dropped park woke a later park"
            );
            let deadline = Instant::now() + Duration::from_millis(10);
            assert_eq!(
                p2.wait_until("test: after a dropped park", Some(deadline)),
                Wake::TimedOut
            );
        }
        bobine::Builder::new().domains(1).run(check);
        std::thread::spawn(check).join().unwrap();
    });
}

/// Wake-ups that land while the waiter still runs with its park armed (here: yielding between
/// arming and waiting), from a task on the same domain, a task on another domain and a plain
/// thread: each wait ends exactly once, the task is never queued twice (a second queue entry
/// would resume it while it is parked for a later round, which the runtime reports), and no
/// wake-up is lost.
#[test]
fn wake_while_yielding_with_an_armed_park_queues_the_task_once() {
    common::watchdog(
        60,
        "wake_while_yielding_with_an_armed_park_queues_the_task_once",
        || {
            const ROUNDS: usize = 3000;
            let (tx, rx) = mpsc::channel::<Unparker>();
            let plain = std::thread::spawn(move || {
                let mut n = 0;
                while let Ok(u) = rx.recv() {
                    assert!(u.unpark());
                    n += 1;
                }
                n
            });
            let rounds = bobine::Builder::new().domains(2).run(move || {
                let (to_local, from_main) = bobine::sync::mpsc::channel::<Unparker>();
                let local = thread::spawn_local(move || {
                    let mut n = 0;
                    for u in from_main {
                        assert!(u.unpark());
                        n += 1;
                    }
                    n
                });
                let (to_remote, remote_rx) = bobine::sync::mpsc::channel::<Unparker>();
                let remote = thread::spawn(move || {
                    let mut n = 0;
                    for u in remote_rx {
                        // Sometimes wake at once, sometimes after the waiter has yielded a
                        // while, sometimes (likely) after it has switched out to park.
                        for _ in 0..(n % 3) {
                            thread::yield_now();
                        }
                        assert!(u.unpark());
                        n += 1;
                    }
                    n
                });
                let mut done = 0;
                for i in 0..ROUNDS {
                    let park = Park::new();
                    let u = park.unparker();
                    match i % 3 {
                        0 => to_local.send(u).unwrap(),
                        1 => to_remote.send(u).unwrap(),
                        _ => tx.send(u).unwrap(),
                    }
                    for _ in 0..(i % 4) {
                        thread::yield_now();
                    }
                    assert_eq!(park.wait("test: woken while yielding"), Wake::Unparked);
                    done += 1;
                }
                drop((to_local, to_remote, tx));
                (done, local.join().unwrap(), remote.join().unwrap())
            });
            let by_plain = plain.join().unwrap();
            assert_eq!(rounds.0, ROUNDS);
            assert_eq!(rounds.1 + rounds.2 + by_plain, ROUNDS);
        },
    );
}
