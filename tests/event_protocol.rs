//! The CML commit protocol under load (`bobine::event`'s module doc): syncs that can match
//! each other through several channels commit exactly once, cycles make progress, many
//! producers and consumers selecting over several channels move every message exactly once,
//! timeouts racing a communication give one outcome to both sides, and stale offers left by
//! choices do not pile up.
//!
//! Each protocol runs on one domain, on two to four domains, and with some parties on plain
//! OS threads (syncs work there too: they block the thread).

mod common;

use std::collections::HashSet;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::time::Duration;

use bobine::event::{Channel, Event, after, choose, select};

/// Where the parties of a protocol run: the number of domains (0: no runtime at all, the test
/// thread coordinates), and which parties (by index) are plain OS threads instead of tasks.
#[derive(Debug, Clone, Copy)]
struct Setup {
    domains: usize,
    threads_every: Option<usize>,
}

const SETUPS: [Setup; 6] = [
    Setup {
        domains: 1,
        threads_every: None,
    },
    Setup {
        domains: 2,
        threads_every: None,
    },
    Setup {
        domains: 4,
        threads_every: None,
    },
    // Mixed: every other party is a plain OS thread.
    Setup {
        domains: 2,
        threads_every: Some(2),
    },
    // Every party a plain OS thread; the runtime only hosts the coordinator.
    Setup {
        domains: 1,
        threads_every: Some(1),
    },
    // No runtime: plain OS threads only.
    Setup {
        domains: 0,
        threads_every: Some(1),
    },
];

impl Setup {
    fn run<T>(self, f: impl FnOnce(Setup) -> T) -> T {
        if self.domains == 0 {
            return f(self);
        }
        bobine::Builder::new()
            .domains(self.domains)
            .run(move || f(self))
    }

    /// Starts party `i` as a task or a plain thread, per the setup.
    fn start<R: Send + 'static>(
        self,
        i: usize,
        f: impl FnOnce() -> R + Send + 'static,
    ) -> Party<R> {
        let done = Channel::new();
        let d2 = done.clone();
        let body = move || d2.send(catch_unwind(AssertUnwindSafe(f)));
        let os = match self.threads_every {
            Some(k) if i % k == 0 => Some(std::thread::spawn(body)),
            _ => {
                bobine::thread::spawn(body);
                None
            }
        };
        Party { done, os }
    }
}

/// A started party: its result (or panic) arrives on a channel, which parks a task and blocks
/// a thread alike, so the coordinator never blocks its domain while a plain thread needs it.
struct Party<R> {
    done: Channel<std::thread::Result<R>>,
    os: Option<std::thread::JoinHandle<()>>,
}

impl<R: Send + 'static> Party<R> {
    /// The party's result; its panic, if it panicked.
    fn join(self) -> R {
        let r = self.done.recv();
        if let Some(t) = self.os {
            t.join().unwrap();
        }
        r.unwrap_or_else(|p| resume_unwind(p))
    }
}

/// What one sync of a party did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Sent,
    Got(u64),
    Stop,
}

/// A: choose [send c1; recv c2] vs B: choose [send c2; recv c1] move exactly one message per round.
#[test]
fn crossed_choices_commit_exactly_once_per_round() {
    // Fewer under valgrind (`scripts/memcheck`).
    let rounds = common::scaled(2000, 20);
    common::watchdog(60, "crossed_choices_commit_exactly_once_per_round", || {
        for setup in SETUPS {
            let (a, b) = setup.run(|s| {
                let (c1, c2): (Channel<u64>, Channel<u64>) = (Channel::new(), Channel::new());
                let party = |i: usize, out: Channel<u64>, inn: Channel<u64>| {
                    s.start(i, move || {
                        let (mut sent, mut got) = (0u64, 0u64);
                        for round in 0..rounds {
                            let step = select(vec![
                                out.send_evt(round).wrap(|()| Step::Sent),
                                inn.recv_evt().wrap(Step::Got),
                            ]);
                            match step {
                                Step::Sent => sent += 1,
                                Step::Got(v) => {
                                    assert_eq!(v, round, "a message of another round");
                                    got += 1;
                                }
                                Step::Stop => unreachable!(),
                            }
                        }
                        (sent, got)
                    })
                };
                let a = party(0, c1.clone(), c2.clone());
                let b = party(1, c2, c1);
                (a.join(), b.join())
            });
            let what = format!("{setup:?}");
            assert_eq!(a.0 + a.1, rounds, "{what}");
            assert_eq!(b.0 + b.1, rounds, "{what}");
            assert_eq!(a.0, b.1, "{what}: A sent {} but B got {}", a.0, b.1);
            assert_eq!(b.0, a.1, "{what}: B sent {} but A got {}", b.0, a.1);
        }
    });
}

/// Three parties each choosing [send to the next; receive from the previous] never livelock.
#[test]
fn a_three_way_cycle_of_choices_makes_progress() {
    // Fewer under valgrind (`scripts/memcheck`).
    let messages = common::scaled(3000, 20);
    common::watchdog(60, "a_three_way_cycle_of_choices_makes_progress", || {
        for setup in SETUPS {
            let results = setup.run(|s| {
                let chans: Vec<Channel<u64>> = (0..3).map(|_| Channel::new()).collect();
                let stop: Channel<()> = Channel::new();
                let moved = Arc::new(AtomicU64::new(0));
                let parties: Vec<_> = (0..3)
                    .map(|i| {
                        let out = chans[i].clone();
                        let inn = chans[(i + 2) % 3].clone();
                        let (stop, moved) = (stop.clone(), moved.clone());
                        s.start(i, move || {
                            let (mut sent, mut got) = (0u64, 0u64);
                            loop {
                                let step = select(vec![
                                    out.send_evt(sent).wrap(|()| Step::Sent),
                                    inn.recv_evt().wrap(Step::Got),
                                    stop.recv_evt().wrap(|()| Step::Stop),
                                ]);
                                match step {
                                    Step::Sent => sent += 1,
                                    Step::Got(v) => {
                                        assert_eq!(v, got, "party {i}: lost or repeated");
                                        got += 1;
                                        moved.fetch_add(1, SeqCst);
                                    }
                                    Step::Stop => return (sent, got),
                                }
                            }
                        })
                    })
                    .collect();
                while moved.load(SeqCst) < messages {
                    bobine::thread::sleep(Duration::from_millis(1));
                }
                for _ in 0..3 {
                    stop.send(());
                }
                parties.into_iter().map(Party::join).collect::<Vec<_>>()
            });
            let what = format!("{setup:?}: {results:?}");
            for i in 0..3 {
                assert_eq!(results[i].0, results[(i + 1) % 3].1, "{what}");
            }
            let total: u64 = results.iter().map(|r| r.1).sum();
            assert!(total >= messages, "{what}");
        }
    });
}

/// Four producers and four consumers choosing over three channels deliver each message once.
#[test]
fn many_producers_and_consumers_over_several_channels_deliver_each_message_once() {
    const PRODUCERS: u64 = 4;
    const CONSUMERS: usize = 4;
    const STOP: u64 = u64::MAX;
    // Messages per producer; fewer under valgrind (`scripts/memcheck`).
    let each = common::scaled(2000, 20);
    common::watchdog(60, "many_producers_and_consumers", || {
        for setup in SETUPS {
            let per_consumer = setup.run(|s| {
                let chans: Vec<Channel<u64>> = (0..3).map(|_| Channel::new()).collect();
                let consumers: Vec<_> = (0..CONSUMERS)
                    .map(|i| {
                        let chans = chans.clone();
                        s.start(i, move || {
                            let mut mine = Vec::new();
                            loop {
                                let v = select(chans.iter().map(|c| c.recv_evt()).collect());
                                if v == STOP {
                                    return mine;
                                }
                                mine.push(v);
                            }
                        })
                    })
                    .collect();
                let producers: Vec<_> = (0..PRODUCERS)
                    .map(|p| {
                        let chans = chans.clone();
                        s.start(p as usize + 1, move || {
                            for i in 0..each {
                                let v = p * each + i;
                                select(chans.iter().map(|c| c.send_evt(v)).collect::<Vec<_>>());
                            }
                        })
                    })
                    .collect();
                producers.into_iter().for_each(Party::join);
                for k in 0..CONSUMERS {
                    chans[k % 3].send(STOP);
                }
                consumers.into_iter().map(Party::join).collect::<Vec<_>>()
            });
            let what = format!("{setup:?}");
            let all: Vec<u64> = per_consumer.iter().flatten().copied().collect();
            assert_eq!(all.len() as u64, PRODUCERS * each, "{what}: count");
            let n = PRODUCERS * each;
            assert_eq!(all.iter().sum::<u64>(), n * (n - 1) / 2, "{what}: checksum");
            let distinct: HashSet<u64> = all.iter().copied().collect();
            assert_eq!(
                distinct.len() as u64,
                n,
                "{what}: a message delivered twice"
            );
            for mine in &per_consumer {
                for p in 0..PRODUCERS {
                    let of_p: Vec<u64> = mine.iter().copied().filter(|v| v / each == p).collect();
                    assert!(of_p.is_sorted(), "{what}: producer {p} out of order");
                }
            }
        }
    });
}

/// A timeout racing a communication: in each round both sides communicated or both timed out.
#[test]
fn timeouts_racing_a_sender_give_both_sides_one_outcome() {
    const ROUNDS: u64 = 600;
    common::watchdog(60, "timeouts_racing_a_sender", || {
        for setup in SETUPS {
            let (sender, receiver) = setup.run(|s| {
                let (c, go): (Channel<u64>, Channel<u64>) = (Channel::new(), Channel::new());
                // A short busy delay and a short timeout, varied per round and side, so that the
                // timer and the partner's arrival race.
                let micros = |round: u64, mul: u64, modulo: u64, unit: u64| {
                    Duration::from_micros((round * mul) % modulo * unit)
                };
                let (c2, go2) = (c.clone(), go.clone());
                let sender = s.start(0, move || {
                    (0..ROUNDS)
                        .map(|round| {
                            go2.send(round);
                            spin(micros(round, 7, 11, 10));
                            select(vec![
                                c2.send_evt(round).wrap(|()| true),
                                after(micros(round, 1, 5, 20)).wrap(|()| false),
                            ])
                        })
                        .collect::<Vec<bool>>()
                });
                let receiver = s.start(1, move || {
                    (0..ROUNDS)
                        .map(|round| {
                            assert_eq!(go.recv(), round);
                            spin(micros(round, 3, 7, 10));
                            select(vec![
                                c.recv_evt().wrap(Some),
                                after(micros(round, 1, 3, 30)).wrap(|()| None),
                            ])
                        })
                        .collect::<Vec<Option<u64>>>()
                });
                (sender.join(), receiver.join())
            });
            let mut delivered = 0;
            for round in 0..ROUNDS {
                let (sent, got) = (sender[round as usize], receiver[round as usize]);
                match got {
                    Some(v) => {
                        assert_eq!(v, round, "{setup:?}: round {round} got another's value");
                        assert!(sent, "{setup:?}: round {round}: received, sender timed out");
                        delivered += 1;
                    }
                    None => assert!(!sent, "{setup:?}: round {round}: sent, nobody got it"),
                }
            }
            let sent = sender.iter().filter(|&&s| s).count();
            assert_eq!(sent, delivered, "{setup:?}");
        }
    });
}

/// Busy-waits `d` without yielding (the partner may be on the same domain: then it waits).
fn spin(d: Duration) {
    let t0 = std::time::Instant::now();
    while t0.elapsed() < d {
        std::hint::spin_loop();
    }
}

/// This process's resident set size, in bytes (from `/proc/self/statm`).
fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("statm's second field");
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    pages * page as u64
}

/// `syncs` receives of `select [recv idle...; recv busy]` where `busy` always has a sender and
/// the idle channels never do: every sync that blocks leaves a stale offer on each idle
/// channel, which must be swept. Returns the RSS growth over the run.
fn many_choices(domains: usize, idle_channels: usize, syncs: u64) -> u64 {
    bobine::Builder::new().domains(domains).run(move || {
        let idle: Vec<Channel<u64>> = (0..idle_channels).map(|_| Channel::new()).collect();
        let busy: Channel<u64> = Channel::new();
        let b2 = busy.clone();
        bobine::thread::spawn(move || {
            for k in 0.. {
                b2.send(k);
            }
        });
        let receive = |expected: u64| {
            let mut evs: Vec<Event<u64>> = idle.iter().map(|c| c.recv_evt()).collect();
            evs.push(busy.recv_evt());
            assert_eq!(choose(evs).sync(), expected);
        };
        // Warm up (allocator pools, stacks) before the first measure.
        for k in 0..1000 {
            receive(k);
        }
        let before = rss_bytes();
        for k in 1000..syncs {
            receive(k);
        }
        rss_bytes().saturating_sub(before)
    })
}

/// 200 000 syncs of `select [recv c1; recv c2]` (c1 idle, c2 busy) grow RSS by less than 64 MiB.
#[test]
fn memory_stays_flat_under_many_choices() {
    common::watchdog(60, "memory_stays_flat_under_many_choices", || {
        let growth = many_choices(1, 1, 200_000);
        assert!(growth < 64 << 20, "RSS grew by {} MiB", growth >> 20);
    });
}

/// 100 000 syncs over sixteen idle channels and a busy one grow RSS by less than 16 MiB.
#[test]
fn memory_stays_flat_under_many_wide_choices() {
    common::watchdog(60, "memory_stays_flat_under_many_wide_choices", || {
        // This whole test binary runs in about 5 MiB. With the periodic sweep of stale offers
        // disabled, this run grew by about 38 MiB, which the 64 MiB bound above cannot see.
        let growth = many_choices(2, 16, 100_000);
        assert!(growth < 16 << 20, "RSS grew by {} MiB", growth >> 20);
    });
}
