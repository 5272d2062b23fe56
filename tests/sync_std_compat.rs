//! `bobine::sync` is a drop-in for `std::sync`: one program, written once against the
//! `sync`/`thread` module names, is instantiated with std's modules and with bobine's and must
//! give the same results — inside `bobine::run` (1 and 2 domains), on plain threads outside any
//! runtime (tasks then run on the global runtime), and with plain `std::thread` threads sharing
//! bobine's primitives. The edge behaviours (poisoning, timeouts, disconnection, the `try_`
//! calls, the iterators) are written once too, and the same checks run against std (which proves
//! they state std's behaviour) and against bobine.

mod common;

use std::time::Duration;

/// What the program observed; std's run and bobine's runs must agree on every field.
#[derive(Debug, PartialEq, Eq)]
struct Summary {
    /// The `Mutex<u64>` counter after every worker's increments.
    counter: u64,
    /// Workers counted by the main thread's `wait_while`, and the sum of the counts each worker
    /// saw when it was released by the broadcast.
    latch: (u64, u64),
    /// Every value received on `channel()`, sorted, and whether each producer's values arrived
    /// in the order it sent them.
    channel: (Vec<u64>, bool),
    /// The same for `sync_channel(2)`.
    sync2: (Vec<u64>, bool),
    /// The same for `sync_channel(0)`.
    sync0: (Vec<u64>, bool),
    /// The final value of the `RwLock` pair, and how many reads saw it torn (`a != b`).
    rwlock: (u64, u64),
    /// Leaders of each barrier round, and waiters that left a round before all had arrived.
    barrier: (Vec<u64>, u64),
}

const WORKERS: u64 = 4;
const INCREMENTS: u64 = 250;
const PRODUCERS: u64 = 3;
const MESSAGES: u64 = 100;
const WRITES: u64 = 50;
const READS: u64 = 100;
const ROUNDS: usize = 20;

/// What every correct run gives.
fn expected() -> Summary {
    let values: Vec<u64> = (0..PRODUCERS)
        .flat_map(|p| (0..MESSAGES).map(move |i| p * 1000 + i))
        .collect();
    Summary {
        counter: WORKERS * INCREMENTS,
        latch: (WORKERS, WORKERS * WORKERS),
        channel: (values.clone(), true),
        sync2: (values.clone(), true),
        sync0: (values, true),
        rwlock: (2 * WRITES, 0),
        barrier: (vec![1; ROUNDS], 0),
    }
}

/// The program, over the module paths `$sync` (`std::sync` or `bobine::sync`) and `$thread`
/// (`std::thread` or `bobine::thread`).
macro_rules! program {
    ($name:ident, $sync:path, $thread:path) => {
        mod $name {
            use std::sync::Arc;
            use std::sync::atomic::{AtomicU64, Ordering};

            use super::*;
            use sync::{Barrier, Condvar, Mutex, RwLock, mpsc};
            use $sync as sync;
            use $thread as thread;

            pub fn run() -> Summary {
                Summary {
                    counter: counter(),
                    latch: latch(),
                    channel: {
                        let (tx, rx) = mpsc::channel();
                        let hs: Vec<_> = (0..PRODUCERS)
                            .map(|p| {
                                let tx = tx.clone();
                                thread::spawn(move || {
                                    (0..MESSAGES).for_each(|i| tx.send(p * 1000 + i).unwrap())
                                })
                            })
                            .collect();
                        drop(tx);
                        let got = collect(rx);
                        hs.into_iter().for_each(|h| h.join().unwrap());
                        got
                    },
                    sync2: sync_channel(2),
                    sync0: sync_channel(0),
                    rwlock: rwlock(),
                    barrier: barrier(),
                }
            }

            fn counter() -> u64 {
                let counter = Arc::new(Mutex::new(0u64));
                let hs: Vec<_> = (0..WORKERS)
                    .map(|_| {
                        let c = counter.clone();
                        thread::spawn(move || {
                            for _ in 0..INCREMENTS {
                                *c.lock().unwrap() += 1;
                            }
                        })
                    })
                    .collect();
                hs.into_iter().for_each(|h| h.join().unwrap());
                *counter.lock().unwrap()
            }

            /// Workers check in and wait for "go"; the main thread waits until all checked in,
            /// then broadcasts "go".
            fn latch() -> (u64, u64) {
                let latch = Arc::new((Mutex::new((0u64, false)), Condvar::new()));
                let hs: Vec<_> = (0..WORKERS)
                    .map(|_| {
                        let latch = latch.clone();
                        thread::spawn(move || {
                            let (m, cv) = &*latch;
                            let mut g = m.lock().unwrap();
                            g.0 += 1;
                            cv.notify_all();
                            let g = cv.wait_while(g, |s| !s.1).unwrap();
                            g.0
                        })
                    })
                    .collect();
                let (m, cv) = &*latch;
                let mut g = cv.wait_while(m.lock().unwrap(), |s| s.0 < WORKERS).unwrap();
                let checked_in = g.0;
                g.1 = true;
                cv.notify_all();
                drop(g);
                let seen = hs.into_iter().map(|h| h.join().unwrap()).sum();
                (checked_in, seen)
            }

            /// Receives until every sender is gone; sorted values and whether each producer's
            /// values came in order.
            fn collect(rx: mpsc::Receiver<u64>) -> (Vec<u64>, bool) {
                let mut next = vec![0u64; PRODUCERS as usize];
                let mut in_order = true;
                let mut got = Vec::new();
                for v in rx.iter() {
                    let p = (v / 1000) as usize;
                    in_order &= v % 1000 == next[p];
                    next[p] = v % 1000 + 1;
                    got.push(v);
                }
                got.sort_unstable();
                (got, in_order)
            }

            fn sync_channel(bound: usize) -> (Vec<u64>, bool) {
                let (tx, rx) = mpsc::sync_channel(bound);
                let hs: Vec<_> = (0..PRODUCERS)
                    .map(|p| {
                        let tx = tx.clone();
                        thread::spawn(move || {
                            (0..MESSAGES).for_each(|i| tx.send(p * 1000 + i).unwrap())
                        })
                    })
                    .collect();
                drop(tx);
                let got = collect(rx);
                hs.into_iter().for_each(|h| h.join().unwrap());
                got
            }

            /// Two writers bump both halves of a pair (yielding in between); two readers count
            /// the torn pairs they see.
            fn rwlock() -> (u64, u64) {
                let lock = Arc::new(RwLock::new((0u64, 0u64)));
                let writers: Vec<_> = (0..2)
                    .map(|_| {
                        let lock = lock.clone();
                        thread::spawn(move || {
                            for _ in 0..WRITES {
                                let mut w = lock.write().unwrap();
                                w.0 += 1;
                                thread::yield_now();
                                w.1 += 1;
                            }
                            0
                        })
                    })
                    .collect();
                let readers: Vec<_> = (0..2)
                    .map(|_| {
                        let lock = lock.clone();
                        thread::spawn(move || {
                            let mut torn = 0;
                            for _ in 0..READS {
                                let r = lock.read().unwrap();
                                torn += u64::from(r.0 != r.1);
                                drop(r);
                                thread::yield_now();
                            }
                            torn
                        })
                    })
                    .collect();
                let torn = writers
                    .into_iter()
                    .chain(readers)
                    .map(|h| h.join().unwrap())
                    .sum();
                let last = *lock.read().unwrap();
                assert_eq!(last.0, last.1);
                (last.0, torn)
            }

            /// `WORKERS` threads pass a barrier `ROUNDS` times: leaders per round, and early
            /// leavers (a waiter released before everyone arrived).
            fn barrier() -> (Vec<u64>, u64) {
                let barrier = Arc::new(Barrier::new(WORKERS as usize));
                let arrived: Arc<Vec<AtomicU64>> =
                    Arc::new((0..ROUNDS).map(|_| AtomicU64::new(0)).collect());
                let leaders: Arc<Vec<AtomicU64>> =
                    Arc::new((0..ROUNDS).map(|_| AtomicU64::new(0)).collect());
                let early = Arc::new(AtomicU64::new(0));
                let hs: Vec<_> = (0..WORKERS)
                    .map(|_| {
                        let (barrier, arrived, leaders, early) = (
                            barrier.clone(),
                            arrived.clone(),
                            leaders.clone(),
                            early.clone(),
                        );
                        thread::spawn(move || {
                            for r in 0..ROUNDS {
                                arrived[r].fetch_add(1, Ordering::SeqCst);
                                if barrier.wait().is_leader() {
                                    leaders[r].fetch_add(1, Ordering::SeqCst);
                                }
                                if arrived[r].load(Ordering::SeqCst) != WORKERS {
                                    early.fetch_add(1, Ordering::SeqCst);
                                }
                            }
                        })
                    })
                    .collect();
                hs.into_iter().for_each(|h| h.join().unwrap());
                (
                    leaders.iter().map(|l| l.load(Ordering::SeqCst)).collect(),
                    early.load(Ordering::SeqCst),
                )
            }
        }
    };
}

program!(std_program, std::sync, std::thread);
program!(bobine_program, bobine::sync, bobine::thread);
program!(mixed_program, bobine::sync, std::thread);

/// The edge behaviours, over the module paths `$sync` and `$thread`. Where a check needs a
/// thread to be blocked already, the caller sleeps first: the assertions hold either way, the
/// sleep only makes the blocked case the one exercised.
macro_rules! edges {
    ($name:ident, $sync:path, $thread:path) => {
        mod $name {
            use std::sync::Arc;
            use std::time::Duration;

            use sync::mpsc::{
                self, RecvError, RecvTimeoutError, SendError, TryRecvError, TrySendError,
            };
            use sync::{Condvar, Mutex, RwLock, TryLockError};
            use $sync as sync;
            use $thread as thread;

            const SETTLE: Duration = Duration::from_millis(20);
            const LONG: Duration = Duration::from_secs(30);

            pub fn all() {
                mutex_poisoning();
                rwlock_poisoning();
                condvar_timeouts();
                recv_timeout();
                disconnection();
                try_calls();
                iterators();
            }

            fn mutex_poisoning() {
                let m = Arc::new(Mutex::new(1u32));
                let m2 = m.clone();
                let died = thread::spawn(move || {
                    let mut g = m2.lock().unwrap();
                    *g = 2;
                    panic!("a holder panics: the mutex is poisoned");
                })
                .join();
                assert!(died.is_err());
                assert!(m.is_poisoned());
                // lock() gives Err, but the guard inside is usable.
                let mut g = match m.lock() {
                    Ok(_) => panic!("a poisoned mutex locked with Ok"),
                    Err(e) => e.into_inner(),
                };
                assert_eq!(*g, 2);
                *g = 3;
                // Held: WouldBlock (from another thread).
                let m2 = m.clone();
                let would_block =
                    thread::spawn(move || matches!(m2.try_lock(), Err(TryLockError::WouldBlock)))
                        .join()
                        .unwrap();
                assert!(would_block, "try_lock of a held mutex must give WouldBlock");
                drop(g);
                // Free but poisoned: Poisoned, with a usable guard.
                match m.try_lock() {
                    Err(TryLockError::Poisoned(e)) => assert_eq!(*e.into_inner(), 3),
                    Err(TryLockError::WouldBlock) => panic!("a free mutex gave WouldBlock"),
                    Ok(_) => panic!("a poisoned mutex try_locked with Ok"),
                }
                m.clear_poison();
                assert!(!m.is_poisoned());
                assert_eq!(*m.lock().unwrap(), 3);
                assert_eq!(*m.try_lock().unwrap(), 3);
                // into_inner and get_mut report the poison and still give the value.
                let m2 = m.clone();
                assert!(
                    thread::spawn(move || {
                        let _g = m2.lock().unwrap();
                        panic!("poison again");
                    })
                    .join()
                    .is_err()
                );
                let mut m = Arc::try_unwrap(m).expect("no other owner");
                match m.get_mut() {
                    Err(e) => *e.into_inner() = 4,
                    Ok(_) => panic!("get_mut of a poisoned mutex gave Ok"),
                }
                match m.into_inner() {
                    Err(e) => assert_eq!(e.into_inner(), 4),
                    Ok(_) => panic!("into_inner of a poisoned mutex gave Ok"),
                }

                // A condvar waiter relocks a mutex poisoned while it waited: its wait gives
                // Err, still with the guard.
                let pair = Arc::new((Mutex::new(false), Condvar::new()));
                let pair2 = pair.clone();
                let waiter = thread::spawn(move || {
                    let (m, cv) = &*pair2;
                    let mut g = match m.lock() {
                        Ok(g) => g,
                        Err(e) => return (true, *e.into_inner()),
                    };
                    while !*g {
                        g = match cv.wait(g) {
                            Ok(g) => g,
                            Err(e) => return (true, *e.into_inner()),
                        };
                    }
                    (false, *g)
                });
                thread::sleep(SETTLE);
                let pair2 = pair.clone();
                assert!(
                    thread::spawn(move || {
                        let mut g = pair2.0.lock().unwrap();
                        *g = true;
                        pair2.1.notify_all();
                        panic!("poison while a waiter waits");
                    })
                    .join()
                    .is_err()
                );
                assert_eq!(waiter.join().unwrap(), (true, true));
            }

            fn rwlock_poisoning() {
                let l = Arc::new(RwLock::new(1u32));
                // A panicking reader does not poison.
                let l2 = l.clone();
                assert!(
                    thread::spawn(move || {
                        let _r = l2.read().unwrap();
                        panic!("a reader panics");
                    })
                    .join()
                    .is_err()
                );
                assert!(!l.is_poisoned());
                // A panicking writer does.
                let l2 = l.clone();
                assert!(
                    thread::spawn(move || {
                        let mut w = l2.write().unwrap();
                        *w = 2;
                        panic!("a writer panics: the lock is poisoned");
                    })
                    .join()
                    .is_err()
                );
                assert!(l.is_poisoned());
                match l.read() {
                    Err(e) => assert_eq!(*e.into_inner(), 2),
                    Ok(_) => panic!("a poisoned RwLock read with Ok"),
                }
                match l.write() {
                    Err(e) => *e.into_inner() = 3,
                    Ok(_) => panic!("a poisoned RwLock wrote with Ok"),
                }
                match l.try_read() {
                    Err(TryLockError::Poisoned(e)) => assert_eq!(*e.into_inner(), 3),
                    _ => panic!("try_read of a free poisoned RwLock must give Poisoned"),
                }
                match l.try_write() {
                    Err(TryLockError::Poisoned(e)) => assert_eq!(*e.into_inner(), 3),
                    _ => panic!("try_write of a free poisoned RwLock must give Poisoned"),
                }
                // Held for reading (by another thread): try_write would block.
                let l2 = l.clone();
                let (held_tx, held_rx) = mpsc::channel();
                let (go_tx, go_rx) = mpsc::channel::<()>();
                let reader = thread::spawn(move || {
                    let r = l2.read().unwrap_or_else(|e| e.into_inner());
                    held_tx.send(()).unwrap();
                    go_rx.recv().unwrap();
                    drop(r);
                });
                held_rx.recv().unwrap();
                assert!(matches!(l.try_write(), Err(TryLockError::WouldBlock)));
                go_tx.send(()).unwrap();
                reader.join().unwrap();
                l.clear_poison();
                assert!(!l.is_poisoned());
                assert_eq!(*l.read().unwrap(), 3);
                assert_eq!(*l.try_write().unwrap(), 3);
            }

            fn condvar_timeouts() {
                let pair = Arc::new((Mutex::new(0u32), Condvar::new()));
                let (m, cv) = &*pair;
                // Nobody notifies: the wait times out (std allows spurious wake-ups, which
                // report `timed_out() == false`, so retry a bounded number of times).
                let mut g = m.lock().unwrap();
                let mut timed_out = false;
                for _ in 0..100 {
                    let (g2, r) = cv.wait_timeout(g, Duration::from_millis(5)).unwrap();
                    g = g2;
                    if r.timed_out() {
                        timed_out = true;
                        break;
                    }
                }
                assert!(timed_out, "wait_timeout with no notifier never timed out");
                // The condition never turns false: wait_timeout_while times out, guard back.
                let (g2, r) = cv
                    .wait_timeout_while(g, Duration::from_millis(10), |v| *v == 0)
                    .unwrap();
                assert!(r.timed_out());
                assert_eq!(*g2, 0);
                drop(g2);
                // A notifier makes the condition false well within the limit.
                let pair2 = pair.clone();
                let notifier = thread::spawn(move || {
                    for _ in 0..3 {
                        *pair2.0.lock().unwrap() += 1;
                        pair2.1.notify_one();
                    }
                });
                let (g, r) = cv
                    .wait_timeout_while(m.lock().unwrap(), LONG, |v| *v < 3)
                    .unwrap();
                assert!(!r.timed_out());
                assert_eq!(*g, 3);
                drop(g);
                notifier.join().unwrap();
                // wait_timeout with a notification before the limit: not timed out.
                let pair2 = pair.clone();
                let mut g = m.lock().unwrap();
                let notifier = thread::spawn(move || {
                    *pair2.0.lock().unwrap() = 10;
                    pair2.1.notify_all();
                });
                let mut last = None;
                while *g != 10 {
                    let (g2, r) = cv.wait_timeout(g, LONG).unwrap();
                    g = g2;
                    last = Some(r.timed_out());
                }
                assert_eq!(last, Some(false));
                drop(g);
                notifier.join().unwrap();
            }

            fn recv_timeout() {
                let (tx, rx) = mpsc::channel::<u32>();
                assert_eq!(
                    rx.recv_timeout(Duration::from_millis(10)),
                    Err(RecvTimeoutError::Timeout)
                );
                let h = thread::spawn(move || tx.send(9).unwrap());
                assert_eq!(rx.recv_timeout(LONG), Ok(9));
                h.join().unwrap();
                assert_eq!(
                    rx.recv_timeout(Duration::from_millis(10)),
                    Err(RecvTimeoutError::Disconnected)
                );

                let (tx, rx) = mpsc::sync_channel::<u32>(0);
                assert_eq!(
                    rx.recv_timeout(Duration::from_millis(10)),
                    Err(RecvTimeoutError::Timeout)
                );
                let h = thread::spawn(move || tx.send(8).unwrap());
                assert_eq!(rx.recv_timeout(LONG), Ok(8));
                h.join().unwrap();
                assert_eq!(rx.recv_timeout(LONG), Err(RecvTimeoutError::Disconnected));
            }

            fn disconnection() {
                // RecvError only once every sender is gone and the buffer is drained.
                let (tx, rx) = mpsc::channel();
                let tx2 = tx.clone();
                tx.send(1).unwrap();
                tx2.send(2).unwrap();
                drop(tx);
                assert_eq!(rx.recv(), Ok(1));
                drop(tx2);
                assert_eq!(rx.recv(), Ok(2));
                assert_eq!(rx.recv(), Err(RecvError));
                assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));

                let (tx, rx) = mpsc::sync_channel(4);
                tx.send(1).unwrap();
                drop(tx);
                assert_eq!(rx.recv(), Ok(1));
                assert_eq!(rx.recv(), Err(RecvError));

                // A receiver blocked in recv is released by the last sender's drop.
                let (tx, rx) = mpsc::channel::<u8>();
                let tx2 = tx.clone();
                let h = thread::spawn(move || rx.recv());
                thread::sleep(SETTLE);
                drop(tx);
                thread::sleep(SETTLE);
                drop(tx2);
                assert_eq!(h.join().unwrap(), Err(RecvError));

                // The receiver is gone: the value comes back in SendError.
                let (tx, rx) = mpsc::channel();
                drop(rx);
                assert_eq!(tx.send(String::from("back")), Err(SendError("back".into())));
                let (tx, rx) = mpsc::sync_channel(1);
                drop(rx);
                assert_eq!(
                    tx.send(String::from("again")),
                    Err(SendError("again".into()))
                );

                // A sender blocked on a full buffer, then the receiver drops.
                let (tx, rx) = mpsc::sync_channel(1);
                tx.send(1).unwrap();
                let h = thread::spawn(move || tx.send(2));
                thread::sleep(SETTLE);
                drop(rx);
                assert_eq!(h.join().unwrap(), Err(SendError(2)));

                // A rendezvous sender blocked waiting for its receiver, which drops.
                let (tx, rx) = mpsc::sync_channel(0);
                let h = thread::spawn(move || tx.send(String::from("mine")));
                thread::sleep(SETTLE);
                drop(rx);
                assert_eq!(h.join().unwrap(), Err(SendError("mine".into())));
            }

            fn try_calls() {
                let (tx, rx) = mpsc::sync_channel(1);
                assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
                tx.try_send(1).unwrap();
                assert_eq!(tx.try_send(2), Err(TrySendError::Full(2)));
                assert_eq!(rx.try_recv(), Ok(1));
                assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
                tx.try_send(3).unwrap();
                drop(tx);
                // Buffered values outlive the senders; then Disconnected.
                assert_eq!(rx.try_recv(), Ok(3));
                assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));

                let (tx, rx) = mpsc::sync_channel(1);
                drop(rx);
                assert_eq!(tx.try_send(4), Err(TrySendError::Disconnected(4)));

                // Rendezvous: Full while no receiver waits; succeeds once one does.
                let (tx, rx) = mpsc::sync_channel(0);
                assert_eq!(tx.try_send(5), Err(TrySendError::Full(5)));
                let h = thread::spawn(move || rx.recv());
                let mut sent = false;
                for _ in 0..10_000 {
                    match tx.try_send(6) {
                        Ok(()) => {
                            sent = true;
                            break;
                        }
                        Err(TrySendError::Full(_)) => thread::sleep(Duration::from_millis(1)),
                        Err(TrySendError::Disconnected(_)) => panic!("the receiver is alive"),
                    }
                }
                assert!(sent, "try_send never met the waiting receiver");
                assert_eq!(h.join().unwrap(), Ok(6));
                assert_eq!(tx.try_send(7), Err(TrySendError::Disconnected(7)));

                let (tx, rx) = mpsc::channel::<u8>();
                assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
                drop(tx);
                assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
            }

            fn iterators() {
                let (tx, rx) = mpsc::channel();
                for i in 0..5 {
                    tx.send(i).unwrap();
                }
                // try_iter takes what is there and never blocks.
                assert_eq!(rx.try_iter().collect::<Vec<_>>(), [0, 1, 2, 3, 4]);
                assert_eq!(rx.try_iter().next(), None);
                tx.send(5).unwrap();
                let h = thread::spawn(move || {
                    for i in 6..10 {
                        tx.send(i).unwrap();
                    }
                });
                // iter blocks for each value and ends when the senders are gone.
                assert_eq!(rx.iter().collect::<Vec<_>>(), [5, 6, 7, 8, 9]);
                h.join().unwrap();

                let (tx, rx) = mpsc::sync_channel(0);
                let h = thread::spawn(move || {
                    for i in 0..4 {
                        tx.send(i).unwrap();
                    }
                });
                let mut by_ref = Vec::new();
                for v in &rx {
                    by_ref.push(v);
                    if v == 1 {
                        break;
                    }
                }
                // into_iter takes the receiver and ends when the senders are gone.
                let rest: Vec<_> = rx.into_iter().collect();
                h.join().unwrap();
                assert_eq!((by_ref, rest), (vec![0, 1], vec![2, 3]));
            }
        }
    };
}

edges!(std_edges, std::sync, std::thread);
edges!(bobine_edges, bobine::sync, bobine::thread);
edges!(mixed_edges, bobine::sync, std::thread);

/// The program run with std's modules gives the expected results (the reference is right).
#[test]
fn std_program_gives_the_reference_results() {
    common::watchdog(60, "std_program_gives_the_reference_results", || {
        assert_eq!(std_program::run(), expected());
    });
}

/// Inside `bobine::run`, on one domain and on two, bobine's modules give std's results.
#[test]
fn bobine_program_matches_std_inside_run_on_one_and_two_domains() {
    common::watchdog(60, "bobine_program_matches_std_inside_run", || {
        let reference = std_program::run();
        for domains in [1, 2] {
            let got = bobine::Builder::new()
                .domains(domains)
                .run(bobine_program::run);
            assert_eq!(got, reference, "on {domains} domain(s)");
        }
    });
}

/// Outside any runtime, `bobine::thread::spawn` starts tasks on the global runtime and the
/// program, driven from a plain thread, gives std's results.
#[test]
fn bobine_program_matches_std_outside_any_runtime() {
    common::watchdog(60, "bobine_program_matches_std_outside_any_runtime", || {
        assert_eq!(bobine_program::run(), std_program::run());
    });
}

/// Plain `std::thread` threads sharing bobine's primitives give std's results, both when the
/// main thread is plain and when it is the main task of a one-domain runtime.
#[test]
fn bobine_sync_on_plain_os_threads_matches_std() {
    common::watchdog(60, "bobine_sync_on_plain_os_threads_matches_std", || {
        let reference = std_program::run();
        assert_eq!(mixed_program::run(), reference, "plain main thread");
        let got = bobine::Builder::new().domains(1).run(mixed_program::run);
        assert_eq!(got, reference, "main task of a one-domain runtime");
    });
}

/// The edge checks hold for std itself: they state std's behaviour.
#[test]
fn edge_behaviours_hold_for_std() {
    common::watchdog(60, "edge_behaviours_hold_for_std", std_edges::all);
}

/// Poisoning, timeouts, disconnection, try_ calls and iterators behave like std inside a
/// runtime (one domain and two).
#[test]
fn edge_behaviours_match_std_inside_run() {
    common::watchdog(60, "edge_behaviours_match_std_inside_run", || {
        bobine::Builder::new().domains(1).run(bobine_edges::all);
        bobine::Builder::new().domains(2).run(bobine_edges::all);
    });
}

/// The same edge behaviours outside any runtime: tasks of the global runtime and a plain main
/// thread, and plain OS threads only.
#[test]
fn edge_behaviours_match_std_outside_any_runtime() {
    common::watchdog(60, "edge_behaviours_match_std_outside_any_runtime", || {
        bobine_edges::all();
        mixed_edges::all();
    });
}

/// On one domain, rendezvous senders that are certainly blocked (each ran until it parked)
/// get their own values back when the receiver drops, after the receiver took the first one.
#[test]
fn blocked_rendezvous_senders_get_their_values_back_when_the_receiver_drops() {
    common::watchdog(
        60,
        "blocked_rendezvous_senders_get_their_values_back",
        || {
            bobine::Builder::new().domains(1).run(|| {
                let (tx, rx) = bobine::sync::mpsc::sync_channel::<String>(0);
                let senders: Vec<_> = ["first", "second", "third"]
                    .into_iter()
                    .map(|v| {
                        let tx = tx.clone();
                        let h = bobine::thread::spawn(move || tx.send(v.to_owned()));
                        // One domain, FIFO: the sender runs until it parks in `send`.
                        bobine::thread::yield_now();
                        assert!(
                            !h.is_finished(),
                            "a rendezvous send returned with no receiver"
                        );
                        h
                    })
                    .collect();
                drop(tx);
                assert_eq!(rx.recv().as_deref(), Ok("first"));
                drop(rx);
                let outcomes: Vec<_> = senders.into_iter().map(|h| h.join().unwrap()).collect();
                assert_eq!(
                    outcomes,
                    [
                        Ok(()),
                        Err(bobine::sync::mpsc::SendError("second".to_owned())),
                        Err(bobine::sync::mpsc::SendError("third".to_owned())),
                    ]
                );
            });
        },
    );
}

/// A `wait_timeout` that times out still reacquires the mutex: a holder that took the mutex
/// while the waiter slept makes the waiter wait for it, and the waiter then sees its write.
#[test]
fn timed_out_condvar_wait_reacquires_the_mutex() {
    common::watchdog(60, "timed_out_condvar_wait_reacquires_the_mutex", || {
        bobine::Builder::new().domains(1).run(|| {
            use std::sync::Arc;
            let pair = Arc::new((bobine::sync::Mutex::new(0u32), bobine::sync::Condvar::new()));
            let pair2 = pair.clone();
            let waiter = bobine::thread::spawn(move || {
                let (m, cv) = &*pair2;
                let g = m.lock().unwrap();
                let (g, r) = cv.wait_timeout(g, Duration::from_millis(10)).unwrap();
                (*g, r.timed_out())
            });
            bobine::thread::yield_now();
            // The waiter is parked in wait_timeout; take the mutex across its deadline.
            let mut g = pair.0.lock().unwrap();
            bobine::thread::sleep(Duration::from_millis(30));
            *g = 5;
            drop(g);
            assert_eq!(waiter.join().unwrap(), (5, true));
        });
    });
}

/// `RwLockReadGuard` is covariant in `T`, as std's is: a guard of `&'static str` stands for a
/// guard of a shorter-lived `&str`. The functions only compile if that holds, for std's guard
/// and for bobine's; the test uses them.
#[test]
fn read_guard_is_covariant_like_std() {
    fn shorten_std<'a, 'g>(
        g: std::sync::RwLockReadGuard<'g, &'static str>,
    ) -> std::sync::RwLockReadGuard<'g, &'a str> {
        g
    }
    fn shorten<'a, 'g>(
        g: bobine::sync::RwLockReadGuard<'g, &'static str>,
    ) -> bobine::sync::RwLockReadGuard<'g, &'a str> {
        g
    }
    // And `Sync` when `T` is, as std's (its `!Send` is kept by a compile_fail doc test).
    fn is_sync<T: Sync>() {}
    is_sync::<std::sync::RwLockReadGuard<'static, u32>>();
    is_sync::<bobine::sync::RwLockReadGuard<'static, u32>>();
    common::watchdog(10, "read_guard_is_covariant_like_std", || {
        let s = std::sync::RwLock::new("std");
        let b = bobine::sync::RwLock::new("bobine");
        let local = String::from("local");
        let mut got: Vec<&str> = vec![&local];
        got.push(*shorten_std(s.read().unwrap()));
        let g = shorten(b.read().unwrap());
        got.push(*g);
        // The read guard still excludes writers, and gives the lock back when dropped.
        assert!(b.try_write().is_err());
        drop(g);
        assert!(b.try_write().is_ok());
        assert_eq!(got, ["local", "std", "bobine"]);
    });
}
