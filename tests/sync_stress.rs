//! Stress tests of `bobine::sync` and the OCaml `Mutex`/`Condition` under contention from tasks
//! on several domains and plain OS threads at once, each counting every operation (nothing
//! lost, nothing duplicated), plus the fairness properties: waiters served in arrival order
//! (a released mutex or permit is left free for a running task, and a woken waiter that loses
//! it keeps its place), and a writer that readers cannot starve. Starvation under constant
//! barging is in `lock_fairness.rs`.
//!
//! Hand-offs to a plain OS thread cost a wake-up of that thread, so the plain-thread shares of
//! the work are kept to a few thousand operations.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use bobine::sync::{Barrier, Condvar, Mutex, RwLock, Semaphore, mpsc};
use bobine::thread;
use common::tasks::on_domains;

/// Checks that `log` is `0, 1, ..., n-1` repeated: participants took their turns strictly in
/// rotation.
fn assert_rotation(log: &[usize], n: usize, rounds: usize) {
    assert_eq!(log.len(), n * rounds, "turns taken");
    for (k, &who) in log.iter().enumerate() {
        assert_eq!(who, k % n, "turn {k} taken by {who}");
    }
}

/// The counter and turnstile shared by the participants of the mutex/condvar stress test.
struct Turnstile {
    counter: u64,
    turn: usize,
    log: Vec<usize>,
}

/// 8 tasks on 4 domains and 2 plain OS threads hammer one `Mutex` and one `Condvar`: plain
/// increments between strict turns taken through `wait_while` and `notify_all`. The count is
/// exact and the turns went strictly round the table.
#[test]
fn mutex_and_condvar_counts_are_exact_across_four_domains_and_plain_threads() {
    const TASKS: usize = 8;
    const PLAIN: usize = 2;
    const N: usize = TASKS + PLAIN;
    const ROUNDS: usize = 200;
    const INCS: u64 = 10;
    common::watchdog(60, "mutex_and_condvar_counts_are_exact", || {
        let shared = Arc::new((
            Mutex::new(Turnstile {
                counter: 0,
                turn: 0,
                log: Vec::new(),
            }),
            Condvar::new(),
        ));
        let participant = |me: usize, shared: Arc<(Mutex<Turnstile>, Condvar)>| {
            move || {
                let (m, cv) = &*shared;
                for _ in 0..ROUNDS {
                    for _ in 0..INCS {
                        m.lock().unwrap().counter += 1;
                    }
                    let mut g = cv
                        .wait_while(m.lock().unwrap(), |s| s.turn % N != me)
                        .unwrap();
                    g.turn += 1;
                    g.log.push(me);
                    cv.notify_all();
                }
            }
        };
        let plain: Vec<_> = (TASKS..N)
            .map(|me| std::thread::spawn(participant(me, shared.clone())))
            .collect();
        on_domains(4, || {
            let tasks: Vec<_> = (0..TASKS)
                .map(|me| thread::spawn(participant(me, shared.clone())))
                .collect();
            tasks.into_iter().for_each(|h| h.join().unwrap());
        });
        plain.into_iter().for_each(|h| h.join().unwrap());
        let g = shared.0.lock().unwrap();
        assert_eq!(g.counter, N as u64 * ROUNDS as u64 * INCS);
        assert_eq!(g.turn, N * ROUNDS);
        assert_rotation(&g.log, N, ROUNDS);
    });
}

/// The tokens of the condvar stress test, counted by who took them.
#[derive(Default)]
struct Pool {
    tokens: u64,
    produced: u64,
    by_untimed: u64,
    by_timed: u64,
    producers_done: bool,
}

/// Notifications race timeouts on one `Condvar`: 3 producer tasks add 3000 tokens with
/// `notify_one`; 2 consumer tasks wait without a deadline; 3 tasks on 3 domains and a plain
/// thread wait with deadlines of 1 to 30 microseconds (thousands of timed-out waiters leave the
/// queue while notifiers take waiters off it). Every token is taken exactly once.
#[test]
fn condvar_notifications_racing_timeouts_lose_no_token() {
    const PRODUCERS: u64 = 3;
    const TOKENS: u64 = 1000;
    const TIMED_TASKS: usize = 3;
    common::watchdog(60, "condvar_notifications_racing_timeouts", || {
        let shared = Arc::new((Mutex::new(Pool::default()), Condvar::new()));
        let timed = |shared: Arc<(Mutex<Pool>, Condvar)>, yield_: fn()| {
            move || {
                let (m, cv) = &*shared;
                let mut attempts = 0u64;
                loop {
                    let mut g = m.lock().unwrap();
                    if g.producers_done {
                        return attempts;
                    }
                    if g.tokens == 0 {
                        let wait = Duration::from_micros(1 + attempts % 30);
                        let (g2, r) = cv.wait_timeout(g, wait).unwrap();
                        g = g2;
                        if r.timed_out() {
                            // Leave without looking: the timed-out path must not take a token
                            // a notifier meant for someone.
                            drop(g);
                            attempts += 1;
                            yield_();
                            continue;
                        }
                    }
                    if g.tokens > 0 {
                        g.tokens -= 1;
                        g.by_timed += 1;
                    }
                    attempts += 1;
                }
            }
        };
        let plain = std::thread::spawn(timed(shared.clone(), std::thread::yield_now));
        on_domains(3, || {
            let timed: Vec<_> = (0..TIMED_TASKS)
                .map(|_| thread::spawn(timed(shared.clone(), thread::yield_now)))
                .collect();
            let untimed: Vec<_> = (0..2)
                .map(|_| {
                    let shared = shared.clone();
                    thread::spawn(move || {
                        let (m, cv) = &*shared;
                        let mut g = m.lock().unwrap();
                        loop {
                            g = cv
                                .wait_while(g, |p| p.tokens == 0 && !p.producers_done)
                                .unwrap();
                            if g.tokens == 0 {
                                return;
                            }
                            g.tokens -= 1;
                            g.by_untimed += 1;
                        }
                    })
                })
                .collect();
            let producers: Vec<_> = (0..PRODUCERS)
                .map(|_| {
                    let shared = shared.clone();
                    thread::spawn(move || {
                        let (m, cv) = &*shared;
                        for i in 0..TOKENS {
                            let mut g = m.lock().unwrap();
                            g.tokens += 1;
                            g.produced += 1;
                            cv.notify_one();
                            drop(g);
                            if i % 2 == 0 {
                                // Paced, so that the timed waiters often find no token.
                                thread::sleep(Duration::from_micros(20));
                            }
                        }
                    })
                })
                .collect();
            producers.into_iter().for_each(|h| h.join().unwrap());
            let (m, cv) = &*shared;
            m.lock().unwrap().producers_done = true;
            cv.notify_all();
            untimed.into_iter().for_each(|h| h.join().unwrap());
            timed.into_iter().for_each(|h| {
                h.join().unwrap();
            });
        });
        plain.join().unwrap();
        let g = shared.0.lock().unwrap();
        assert_eq!(g.produced, PRODUCERS * TOKENS);
        assert_eq!(g.tokens, 0, "tokens left over");
        assert_eq!(g.by_untimed + g.by_timed, PRODUCERS * TOKENS);
    });
}

/// On one domain, tasks T1..T8 queue on a held mutex in a known order; they get it in that
/// order. A release leaves the mutex free (T1 is only woken): the releaser's `try_lock` right
/// after takes it (barging); T1, woken, finds it taken and queues again at the front, keeping
/// its place; the releaser's `lock` (T1 woken again, on its own domain) queues behind T8.
#[test]
fn mutex_serves_waiters_in_arrival_order_and_a_release_leaves_it_free() {
    const N: usize = 8;
    common::watchdog(60, "mutex_serves_waiters_in_arrival_order", || {
        on_domains(1, || {
            let m = Arc::new(Mutex::new(Vec::new()));
            let g = m.lock().unwrap();
            let tasks: Vec<_> = (1..=N)
                .map(|i| {
                    let m = m.clone();
                    let h = thread::spawn(move || m.lock().unwrap().push(i));
                    // One domain, FIFO: T_i runs until it parks in `lock`.
                    thread::yield_now();
                    assert!(!h.is_finished());
                    h
                })
                .collect();
            drop(g);
            let mut g = m
                .try_lock()
                .expect("a released mutex is free, even with waiters queued");
            g.push(0);
            // T1 runs (woken), finds the mutex taken, and queues again at the front.
            for _ in 0..10 {
                thread::yield_now();
            }
            assert!(!tasks[0].is_finished(), "T1 got a mutex that was held");
            drop(g);
            let g = m.lock().unwrap();
            assert_eq!(*g, [0].into_iter().chain(1..=N).collect::<Vec<_>>());
            drop(g);
            tasks.into_iter().for_each(|h| h.join().unwrap());
        });
    });
}

/// Four readers on two domains keep the read lock continuously held (each holds it across a
/// yield, overlapping the others); a writer asking for the write lock 50 times gets it every
/// time after a bounded number of reader acquisitions (a reader-preferring lock would starve it).
#[test]
fn rwlock_writer_is_not_starved_by_overlapping_readers() {
    const READERS: usize = 4;
    const WRITES: u64 = 50;
    /// Reader acquisitions during one wait of the writer after which the readers stop, so that
    /// a starved writer fails the test instead of hanging it.
    const CAP: u64 = 10_000;
    common::watchdog(60, "rwlock_writer_is_not_starved", || {
        // One domain: nothing runs between the writer's "asking" and its queueing, so the
        // count is exactly what the lock lets through. Two domains: the OS may preempt the
        // writer's thread in that window while readers go on elsewhere, so only starvation
        // (reaching the cap) is checked there.
        for (domains, bound) in [(1, 100), (2, CAP)] {
            let (value, worst) = on_domains(domains, || {
                let lock = Arc::new(RwLock::new(0u64));
                let asking = Arc::new(AtomicBool::new(false));
                let done = Arc::new(AtomicBool::new(false));
                let during = Arc::new(AtomicU64::new(0));
                let readers: Vec<_> = (0..READERS)
                    .map(|_| {
                        let (lock, asking, done, during) =
                            (lock.clone(), asking.clone(), done.clone(), during.clone());
                        thread::spawn(move || {
                            while !done.load(Ordering::SeqCst)
                                && during.load(Ordering::SeqCst) < CAP
                            {
                                let g = lock.read().unwrap();
                                if asking.load(Ordering::SeqCst) {
                                    during.fetch_add(1, Ordering::SeqCst);
                                }
                                thread::yield_now();
                                drop(g);
                            }
                        })
                    })
                    .collect();
                let writer = {
                    let (lock, asking, during) = (lock.clone(), asking.clone(), during.clone());
                    thread::spawn(move || {
                        let mut worst = 0;
                        for _ in 0..WRITES {
                            // Let the readers pile up again.
                            for _ in 0..20 {
                                thread::yield_now();
                            }
                            during.store(0, Ordering::SeqCst);
                            asking.store(true, Ordering::SeqCst);
                            let mut w = lock.write().unwrap();
                            asking.store(false, Ordering::SeqCst);
                            worst = worst.max(during.load(Ordering::SeqCst));
                            *w += 1;
                        }
                        worst
                    })
                };
                let worst = writer.join().unwrap();
                done.store(true, Ordering::SeqCst);
                readers.into_iter().for_each(|h| h.join().unwrap());
                let value = *lock.read().unwrap();
                (value, worst)
            });
            assert_eq!(value, WRITES);
            assert!(
                worst < bound,
                "{worst} reader acquisitions while the writer waited on {domains} domain(s) (the cap is {CAP})"
            );
        }
    });
}

/// On one domain, a writer W and then a reader R queue on a write-locked `RwLock`. The release
/// leaves the lock free and wakes W only (R is behind a writer): the releaser's `try_write`
/// right after takes it (barging); W, woken, finds it taken and queues again at the front, so
/// the next release still goes to W, then to R. A newcomer reader does not overtake the
/// waiting writer (`try_read` fails while W waits), and once W is through it does.
#[test]
fn rwlock_release_leaves_it_free_and_a_woken_writer_keeps_its_place() {
    common::watchdog(60, "rwlock_woken_writer_keeps_its_place", || {
        on_domains(1, || {
            let lock = Arc::new(RwLock::new(Vec::new()));
            let g = lock.write().unwrap();
            let writer = {
                let lock = lock.clone();
                thread::spawn(move || lock.write().unwrap().push("W"))
            };
            thread::yield_now();
            let reader = {
                let lock = lock.clone();
                thread::spawn(move || {
                    let g = lock.read().unwrap();
                    assert_eq!(*g, ["main", "W"], "the reader came in after the writer");
                })
            };
            thread::yield_now();
            drop(g);
            let mut g = lock
                .try_write()
                .expect("a released RwLock is free, even with waiters queued");
            g.push("main");
            for _ in 0..10 {
                thread::yield_now();
            }
            assert!(!writer.is_finished(), "W got a lock that was held");
            drop(g);
            assert!(
                lock.try_read().is_err(),
                "a newcomer reader overtook a waiting writer"
            );
            writer.join().unwrap();
            reader.join().unwrap();
            assert_eq!(*lock.try_read().expect("free for readers"), ["main", "W"]);
        });
    });
}

/// 6 reader tasks and 3 writer tasks on 3 domains, and a plain-thread reader and writer, share
/// one `RwLock` over a pair that writers keep equal: readers never see it torn, every write is
/// counted, readers and writers alike finish (nobody starves).
#[test]
fn rwlock_readers_and_writers_across_domains_and_a_plain_thread_count_exactly() {
    const ROUNDS: u64 = 400;
    common::watchdog(60, "rwlock_readers_and_writers_count_exactly", || {
        let lock = Arc::new(RwLock::new((0u64, 0u64)));
        let reads = Arc::new(AtomicU64::new(0));
        let writer = |yield_: fn()| {
            let lock = lock.clone();
            move || {
                for _ in 0..ROUNDS {
                    let mut g = lock.write().unwrap();
                    g.0 += 1;
                    yield_();
                    g.1 += 1;
                }
            }
        };
        let reader = |yield_: fn()| {
            let (lock, reads) = (lock.clone(), reads.clone());
            move || {
                for _ in 0..ROUNDS {
                    let g = lock.read().unwrap();
                    yield_();
                    assert_eq!(g.0, g.1, "a reader saw a write half done");
                    reads.fetch_add(1, Ordering::SeqCst);
                }
            }
        };
        let plain = [
            std::thread::spawn(writer(std::thread::yield_now)),
            std::thread::spawn(reader(std::thread::yield_now)),
        ];
        on_domains(3, || {
            let tasks: Vec<_> = (0..9)
                .map(|i| {
                    if i % 3 == 0 {
                        thread::spawn(writer(thread::yield_now))
                    } else {
                        thread::spawn(reader(thread::yield_now))
                    }
                })
                .collect();
            tasks.into_iter().for_each(|h| h.join().unwrap());
        });
        plain.into_iter().for_each(|h| h.join().unwrap());
        assert_eq!(*lock.read().unwrap(), (4 * ROUNDS, 4 * ROUNDS));
        assert_eq!(reads.load(Ordering::SeqCst), 7 * ROUNDS);
    });
}

/// On one domain, tasks T1..T8 queue on a semaphore with no permit in a known order; each
/// release wakes exactly the oldest waiter, which takes the permit. In odd rounds the releaser
/// takes the permit back first (`try_acquire` barges: a released permit is left free): the
/// woken waiter finds none and queues again at the front, so the next release still goes to it.
#[test]
fn semaphore_serves_waiters_in_arrival_order() {
    const N: usize = 8;
    common::watchdog(60, "semaphore_serves_waiters_in_arrival_order", || {
        on_domains(1, || {
            let sem = Arc::new(Semaphore::new(0));
            let log = Arc::new(std::sync::Mutex::new(Vec::new()));
            let tasks: Vec<_> = (1..=N)
                .map(|i| {
                    let (sem, log) = (sem.clone(), log.clone());
                    let h = thread::spawn(move || {
                        sem.acquire();
                        log.lock().unwrap().push(i);
                    });
                    thread::yield_now();
                    h
                })
                .collect();
            assert!(log.lock().unwrap().is_empty());
            let settle = || {
                for _ in 0..10 {
                    thread::yield_now();
                }
            };
            for k in 1..=N {
                sem.release();
                assert_eq!(sem.available(), 1, "a released permit is left free");
                if k % 2 == 1 {
                    assert!(sem.try_acquire(), "try_acquire takes a free permit");
                    settle();
                    assert_eq!(*log.lock().unwrap(), (1..k).collect::<Vec<_>>());
                    sem.release();
                }
                settle();
                assert_eq!(*log.lock().unwrap(), (1..=k).collect::<Vec<_>>());
                assert_eq!(sem.available(), 0);
            }
            tasks.into_iter().for_each(|h| h.join().unwrap());
            sem.release();
            assert_eq!(sem.available(), 1);
        });
    });
}

/// 16 tasks on 4 domains and one plain thread share a semaphore of 3 permits, 300 times each:
/// never more than 3 inside at once, every entry counted, all permits back at the end.
#[test]
fn semaphore_never_admits_more_than_its_permits() {
    const TASKS: usize = 16;
    const K: usize = 3;
    const ROUNDS: u64 = 300;
    common::watchdog(60, "semaphore_never_admits_more_than_its_permits", || {
        let sem = Arc::new(Semaphore::new(K));
        let inside = Arc::new(AtomicUsize::new(0));
        let max = Arc::new(AtomicUsize::new(0));
        let entries = Arc::new(AtomicU64::new(0));
        let worker = |yield_: fn()| {
            let (sem, inside, max, entries) =
                (sem.clone(), inside.clone(), max.clone(), entries.clone());
            move || {
                for _ in 0..ROUNDS {
                    sem.acquire();
                    let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                    max.fetch_max(now, Ordering::SeqCst);
                    entries.fetch_add(1, Ordering::SeqCst);
                    yield_();
                    inside.fetch_sub(1, Ordering::SeqCst);
                    sem.release();
                }
            }
        };
        let plain = std::thread::spawn(worker(std::thread::yield_now));
        on_domains(4, || {
            let tasks: Vec<_> = (0..TASKS)
                .map(|_| thread::spawn(worker(thread::yield_now)))
                .collect();
            tasks.into_iter().for_each(|h| h.join().unwrap());
        });
        plain.join().unwrap();
        let max = max.load(Ordering::SeqCst);
        assert!(
            (1..=K).contains(&max),
            "{max} inside at once with {K} permits"
        );
        assert_eq!(entries.load(Ordering::SeqCst), (TASKS as u64 + 1) * ROUNDS);
        assert_eq!(sem.available(), K);
    });
}

/// 6 tasks on 3 domains and one plain thread pass a barrier 1000 times: exactly one leader per
/// round, and nobody leaves a round before all have arrived.
#[test]
fn barrier_elects_exactly_one_leader_per_round() {
    const TASKS: usize = 6;
    const N: usize = TASKS + 1;
    const ROUNDS: usize = 1000;
    common::watchdog(60, "barrier_elects_exactly_one_leader_per_round", || {
        let barrier = Arc::new(Barrier::new(N));
        let arrived: Arc<Vec<AtomicUsize>> =
            Arc::new((0..ROUNDS).map(|_| AtomicUsize::new(0)).collect());
        let leaders: Arc<Vec<AtomicUsize>> =
            Arc::new((0..ROUNDS).map(|_| AtomicUsize::new(0)).collect());
        let early = Arc::new(AtomicUsize::new(0));
        let participant = || {
            let (barrier, arrived, leaders, early) = (
                barrier.clone(),
                arrived.clone(),
                leaders.clone(),
                early.clone(),
            );
            move || {
                for r in 0..ROUNDS {
                    arrived[r].fetch_add(1, Ordering::SeqCst);
                    if barrier.wait().is_leader() {
                        leaders[r].fetch_add(1, Ordering::SeqCst);
                    }
                    if arrived[r].load(Ordering::SeqCst) != N {
                        early.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
        };
        let plain = std::thread::spawn(participant());
        on_domains(3, || {
            let tasks: Vec<_> = (0..TASKS).map(|_| thread::spawn(participant())).collect();
            tasks.into_iter().for_each(|h| h.join().unwrap());
        });
        plain.join().unwrap();
        let leaders: Vec<usize> = leaders.iter().map(|l| l.load(Ordering::SeqCst)).collect();
        assert_eq!(leaders, vec![1; ROUNDS]);
        assert_eq!(early.load(Ordering::SeqCst), 0);
    });
}

/// 8 producer tasks on 3 domains and a plain-thread producer send through one
/// `sync_channel(0)` to a receiving task: every message arrives exactly once, each producer's
/// in order.
#[test]
fn rendezvous_channel_delivers_every_message_exactly_once() {
    const TASKS: usize = 8;
    const N: usize = TASKS + 1;
    const MESSAGES: usize = 1000;
    common::watchdog(
        60,
        "rendezvous_channel_delivers_every_message_exactly_once",
        || {
            let (tx, rx) = mpsc::sync_channel::<(usize, usize)>(0);
            let producer = |p: usize, tx: mpsc::SyncSender<(usize, usize)>| {
                move || {
                    for i in 0..MESSAGES {
                        tx.send((p, i)).unwrap();
                    }
                }
            };
            let plain = std::thread::spawn(producer(TASKS, tx.clone()));
            let (times, in_order) = on_domains(3, move || {
                let tasks: Vec<_> = (0..TASKS)
                    .map(|p| thread::spawn(producer(p, tx.clone())))
                    .collect();
                drop(tx);
                let mut times = vec![vec![0u32; MESSAGES]; N];
                let mut next = [0; N];
                let mut in_order = true;
                for (p, i) in rx.iter() {
                    times[p][i] += 1;
                    in_order &= next[p] == i;
                    next[p] = i + 1;
                }
                tasks.into_iter().for_each(|h| h.join().unwrap());
                (times, in_order)
            });
            plain.join().unwrap();
            assert_eq!(times, vec![vec![1; MESSAGES]; N]);
            assert!(in_order, "a producer's messages arrived out of order");
        },
    );
}

/// A receiver polling with `recv_timeout` deadlines of 0 to 20 microseconds while 2 producer
/// tasks on 2 domains and a plain-thread producer send (deadlines racing the wake-ups): on
/// `channel()`, `sync_channel(1)` and `sync_channel(0)`, with the receiver a task and then a
/// plain thread, every message is received exactly once.
#[test]
fn recv_timeout_racing_sends_loses_no_message() {
    const TASKS: usize = 2;
    const N: usize = TASKS + 1;
    const MESSAGES: usize = 300;

    /// Receives until every producer is gone, retrying on timeouts; counts each message.
    fn receive(rx: mpsc::Receiver<(usize, usize)>) -> (Vec<Vec<u32>>, u64) {
        let mut times = vec![vec![0u32; MESSAGES]; N];
        let mut timeouts = 0u64;
        let mut k = 0u64;
        loop {
            k += 1;
            match rx.recv_timeout(Duration::from_micros(k % 21)) {
                Ok((p, i)) => times[p][i] += 1,
                Err(mpsc::RecvTimeoutError::Timeout) => timeouts += 1,
                Err(mpsc::RecvTimeoutError::Disconnected) => return (times, timeouts),
            }
        }
    }

    fn producer<S: Send + 'static>(
        p: usize,
        tx: S,
        send: fn(&S, (usize, usize)),
    ) -> impl FnOnce() + Send + 'static {
        move || {
            for i in 0..MESSAGES {
                send(&tx, (p, i));
                if i % 2 == 0 {
                    // Paced (a task parks, a plain thread sleeps), so that the receiver's
                    // deadlines often pass.
                    thread::sleep(Duration::from_micros(15));
                }
            }
        }
    }

    fn run<S: Clone + Send + 'static>(
        (tx, rx): (S, mpsc::Receiver<(usize, usize)>),
        send: fn(&S, (usize, usize)),
        receiver_is_a_task: bool,
        what: &str,
    ) {
        let plain = std::thread::spawn(producer(TASKS, tx.clone(), send));
        // A plain receiver is started outside the runtime: a task must not block its domain
        // in a `std` join while tasks it spawned wait to start there.
        let (rx, plain_receiver) = if receiver_is_a_task {
            (Some(rx), None)
        } else {
            (None, Some(std::thread::spawn(move || receive(rx))))
        };
        let from_task = on_domains(2, move || {
            let tasks: Vec<_> = (0..TASKS)
                .map(|p| thread::spawn(producer(p, tx.clone(), send)))
                .collect();
            drop(tx);
            let got = rx.map(receive);
            tasks.into_iter().for_each(|h| h.join().unwrap());
            got
        });
        plain.join().unwrap();
        let (times, _timeouts) =
            from_task.unwrap_or_else(|| plain_receiver.unwrap().join().unwrap());
        assert_eq!(times, vec![vec![1; MESSAGES]; N], "{what}");
    }

    common::watchdog(60, "recv_timeout_racing_sends_loses_no_message", || {
        for receiver_is_a_task in [true, false] {
            let who = if receiver_is_a_task {
                "task"
            } else {
                "plain thread"
            };
            run(
                mpsc::channel(),
                |tx, v| tx.send(v).unwrap(),
                receiver_is_a_task,
                &format!("channel(), receiver a {who}"),
            );
            for bound in [1, 0] {
                run(
                    mpsc::sync_channel(bound),
                    |tx, v| tx.send(v).unwrap(),
                    receiver_is_a_task,
                    &format!("sync_channel({bound}), receiver a {who}"),
                );
            }
        }
    });
}

/// OCaml `Mutex` and `Condition`: 4 tasks on 2 domains and a plain thread take 300 strict
/// turns each (wait on a predicate loop, `broadcast`), with `protect`ed increments in between;
/// the count is exact and the turns went strictly round the table.
#[test]
fn ocaml_mutex_and_condition_take_turns_across_domains_and_a_plain_thread() {
    use bobine::ocaml::{condition, mutex};
    const TASKS: usize = 4;
    const N: usize = TASKS + 1;
    const ROUNDS: usize = 300;
    const INCS: u64 = 3;

    #[derive(Default)]
    struct State {
        counter: u64,
        turn: usize,
        log: Vec<usize>,
    }
    common::watchdog(60, "ocaml_mutex_and_condition_take_turns", || {
        let m = mutex::create();
        let c = condition::create();
        // Touched only with `m` held: the std mutex only satisfies Rust's aliasing rules.
        let state = Arc::new(std::sync::Mutex::new(State::default()));
        let participant = |me: usize| {
            let (m, c, state) = (m.clone(), c.clone(), state.clone());
            move || {
                for _ in 0..ROUNDS {
                    for _ in 0..INCS {
                        mutex::protect(&m, || state.lock().unwrap().counter += 1);
                    }
                    mutex::lock(&m);
                    while state.lock().unwrap().turn % N != me {
                        condition::wait(&c, &m);
                    }
                    let mut s = state.lock().unwrap();
                    s.turn += 1;
                    s.log.push(me);
                    drop(s);
                    condition::broadcast(&c);
                    mutex::unlock(&m);
                }
            }
        };
        let plain = std::thread::spawn(participant(TASKS));
        on_domains(2, || {
            let tasks: Vec<_> = (0..TASKS)
                .map(|me| thread::spawn(participant(me)))
                .collect();
            tasks.into_iter().for_each(|h| h.join().unwrap());
        });
        plain.join().unwrap();
        let s = state.lock().unwrap();
        assert_eq!(s.counter, N as u64 * ROUNDS as u64 * INCS);
        assert_eq!(s.turn, N * ROUNDS);
        assert_rotation(&s.log, N, ROUNDS);
    });
}
