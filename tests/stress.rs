//! Stress tests of the cross-thread protocols (park/unpark across domains and plain threads,
//! spawn/join/scope/detach churn), each bounded and counting every hand-off.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bobine::{Park, Unparker, thread};

/// A turn-taking slot: the holder of turn `n` hands it to `n + 1` and wakes its waiter.
struct Turns {
    turn: AtomicU64,
    waiter: [Mutex<Option<Unparker>>; 2],
}

impl Turns {
    fn new() -> Self {
        Turns {
            turn: AtomicU64::new(0),
            waiter: [Mutex::new(None), Mutex::new(None)],
        }
    }

    fn wait_for(&self, want: u64, timed: bool) {
        let me = (want % 2) as usize;
        loop {
            if self.turn.load(Ordering::Acquire) == want {
                return;
            }
            let park = Park::new();
            *self.waiter[me].lock().unwrap() = Some(park.unparker());
            if self.turn.load(Ordering::Acquire) == want {
                return;
            }
            if timed {
                park.wait_until("turn", Some(Instant::now() + Duration::from_micros(50)));
            } else {
                park.wait("turn");
            }
        }
    }

    fn give(&self, next: u64) {
        self.turn.store(next, Ordering::Release);
        if let Some(u) = self.waiter[(next % 2) as usize].lock().unwrap().take() {
            u.unpark();
        }
    }
}

fn busy_for(d: Duration) {
    let t = Instant::now();
    while t.elapsed() < d {
        std::hint::spin_loop();
    }
}

/// Pairs of tasks on two domains hand a turn back and forth 20 000 times each, some waits with
/// deadlines that race the wake-up: every turn is taken exactly once and nobody hangs.
#[test]
fn cross_domain_turn_taking_loses_no_wake_up() {
    const ITERS: u64 = 20_000;
    const PAIRS: u64 = 6;
    common::watchdog(60, "cross_domain_turn_taking", || {
        let total = bobine::Builder::new().domains(2).run(|| {
            let hs: Vec<_> = (0..PAIRS)
                .map(|p| {
                    let s = Arc::new(Turns::new());
                    let s2 = s.clone();
                    let a = thread::spawn(move || {
                        busy_for(Duration::from_millis(2));
                        for i in 0..ITERS {
                            s.wait_for(2 * i, p % 2 == 0 && i % 7 == 0);
                            s.give(2 * i + 1);
                            if i % 13 == 0 {
                                thread::yield_now();
                            }
                        }
                        ITERS
                    });
                    let b = thread::spawn(move || {
                        busy_for(Duration::from_millis(2));
                        for i in 0..ITERS {
                            s2.wait_for(2 * i + 1, i % 5 == 0);
                            s2.give(2 * i + 2);
                        }
                        ITERS
                    });
                    (a, b)
                })
                .collect();
            hs.into_iter()
                .map(|(a, b)| a.join().unwrap() + b.join().unwrap())
                .sum::<u64>()
        });
        assert_eq!(total, 2 * ITERS * PAIRS);
    });
}

/// A task and a plain OS thread take turns 20 000 times: task-to-thread and thread-to-task
/// wake-ups through the same slot.
#[test]
fn task_and_plain_thread_turn_taking() {
    const ITERS: u64 = 20_000;
    common::watchdog(60, "task_and_plain_thread_turn_taking", || {
        let s = Arc::new(Turns::new());
        let s2 = s.clone();
        let plain = std::thread::spawn(move || {
            for i in 0..ITERS {
                s2.wait_for(2 * i + 1, i % 3 == 0);
                s2.give(2 * i + 2);
            }
        });
        bobine::Builder::new().domains(2).run(|| {
            let t = thread::spawn(move || {
                for i in 0..ITERS {
                    s.wait_for(2 * i, i % 11 == 0);
                    s.give(2 * i + 1);
                }
            });
            t.join().unwrap();
        });
        plain.join().unwrap();
    });
}

/// Spawn, join, scope and detach churn on three domains with small stacks: handles joined on
/// other domains and dropped elsewhere; every value is counted.
#[test]
fn spawn_join_scope_detach_churn() {
    const ROUNDS: u64 = 150;
    common::watchdog(120, "spawn_join_scope_detach_churn", || {
        let sum = bobine::Builder::new()
            .domains(3)
            .stack_size(32 * 1024)
            .run(|| {
                let detached = Arc::new(AtomicU64::new(0));
                let mut total = 0u64;
                for _ in 0..ROUNDS {
                    let hs: Vec<_> = (0..64u64)
                        .map(|i| {
                            let d = detached.clone();
                            thread::spawn(move || {
                                let kids: Vec<_> = (0..4u64)
                                    .map(|k| {
                                        thread::spawn(move || {
                                            if k % 2 == 0 {
                                                thread::yield_now();
                                            } else {
                                                thread::sleep(Duration::from_micros(10 * k));
                                            }
                                            i * 10 + k
                                        })
                                    })
                                    .collect();
                                drop(thread::spawn(move || {
                                    d.fetch_add(1, Ordering::Relaxed);
                                }));
                                let mut local = [0u64; 4];
                                thread::scope(|s| {
                                    for (j, slot) in local.iter_mut().enumerate() {
                                        s.spawn(move || {
                                            thread::yield_now();
                                            *slot = j as u64;
                                        });
                                    }
                                });
                                let mut acc: u64 = local.iter().sum();
                                for h in kids {
                                    acc += h.join().unwrap();
                                }
                                acc
                            })
                        })
                        .collect();
                    let (a, b): (Vec<_>, Vec<_>) =
                        hs.into_iter().enumerate().partition(|(i, _)| i % 2 == 0);
                    let joiner = thread::spawn(move || {
                        b.into_iter().map(|(_, h)| h.join().unwrap()).sum::<u64>()
                    });
                    total += a.into_iter().map(|(_, h)| h.join().unwrap()).sum::<u64>();
                    total += joiner.join().unwrap();
                }
                while detached.load(Ordering::Relaxed) < ROUNDS * 64 {
                    thread::sleep(Duration::from_millis(1));
                }
                total
            });
        let per_round: u64 = (0..64u64)
            .map(|i| 6 + (0..4).map(|k| i * 10 + k).sum::<u64>())
            .sum();
        assert_eq!(sum, per_round * ROUNDS);
    });
}

/// Channel shorthands (`send`/`recv`, whose waiter lives on the waiter's stack) between
/// tasks on two domains and plain threads: every message arrives exactly once.
#[test]
fn channel_shorthands_across_domains_and_threads_deliver_exactly_once() {
    use bobine::event::Channel;
    const PER_PRODUCER: u64 = 5_000;
    common::watchdog(60, "channel_shorthands_exactly_once", || {
        let c: Channel<u64> = Channel::new();
        let plain_c = c.clone();
        let plain = std::thread::spawn(move || {
            for i in 0..PER_PRODUCER {
                plain_c.send(3 * PER_PRODUCER + i);
            }
        });
        let (count, sum) = bobine::Builder::new().domains(2).run(|| {
            for p in 0..3u64 {
                let c = c.clone();
                drop(thread::spawn(move || {
                    for i in 0..PER_PRODUCER {
                        c.send(p * PER_PRODUCER + i);
                    }
                }));
            }
            let consumers: Vec<_> = (0..2)
                .map(|k| {
                    let c = c.clone();
                    thread::spawn(move || {
                        let (mut n, mut s) = (0u64, 0u64);
                        for _ in 0..2 * PER_PRODUCER {
                            let v = c.recv();
                            n += 1;
                            s += v;
                            if (v + k) % 97 == 0 {
                                thread::yield_now();
                            }
                        }
                        (n, s)
                    })
                })
                .collect();
            consumers
                .into_iter()
                .map(|h| h.join().unwrap())
                .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
        });
        plain.join().unwrap();
        let total = 4 * PER_PRODUCER;
        assert_eq!(count, total);
        assert_eq!(sum, total * (total - 1) / 2);
    });
}
