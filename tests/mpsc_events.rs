//! `mpsc::Receiver::recv_evt`: a receive from a std-like channel as a CML event, in `select`
//! with other receivers, CML channels and timeouts. The event commits by taking exactly one
//! message; an event that loses to another branch takes nothing (the message stays for the next
//! receive); disconnection enables it with `Err(RecvError)`; a rendezvous sender blocked in
//! `send` is matched by the committing receive; `poll` is `try_recv`; a task cancelled while it
//! waits loses no message; and a counted stress test over two domains and a plain thread
//! receives every message exactly once.
//!
//! Only behaviour is asserted, never timing.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use bobine::event::{Channel, Event, after, select};
use bobine::sync::mpsc::{self, Receiver, RecvError, TryRecvError};
use bobine::{TaskCancelled, thread};
use common::panics::payload_text;
use common::rng::Rng;
use common::tasks::{in_task_and_thread, on_domains, spawn_ticker, with_domains};

const HOUR: Duration = Duration::from_secs(3600);

/// Which branch of a select committed, and with what.
#[derive(Debug, PartialEq, Eq)]
enum Got {
    A(Result<u32, RecvError>),
    B(Result<u32, RecvError>),
    Timeout,
}

/// `select` over two receivers and a timeout.
fn select_ab(a: &Receiver<u32>, b: &Receiver<u32>, timeout: Duration) -> Got {
    select(vec![
        a.recv_evt().wrap(Got::A),
        b.recv_evt().wrap(Got::B),
        after(timeout).wrap(|()| Got::Timeout),
    ])
}

/// A select over two receivers and `after` commits to whichever has a message, in order, and
/// to the timeout when neither has one; in a task and on a plain thread.
#[test]
fn select_between_two_receivers_and_a_timeout() {
    common::watchdog(30, "select_between_two_receivers_and_a_timeout", || {
        in_task_and_thread(|at| {
            let (ta, a) = mpsc::channel();
            let (tb, b) = mpsc::sync_channel(4);
            let ms = Duration::from_millis(5);
            assert_eq!(select_ab(&a, &b, ms), Got::Timeout, "{at}: nothing sent");
            tb.send(1).unwrap();
            tb.send(2).unwrap();
            assert_eq!(select_ab(&a, &b, HOUR), Got::B(Ok(1)), "{at}");
            assert_eq!(select_ab(&a, &b, HOUR), Got::B(Ok(2)), "{at}: in order");
            ta.send(3).unwrap();
            assert_eq!(select_ab(&a, &b, HOUR), Got::A(Ok(3)), "{at}");
            assert_eq!(select_ab(&a, &b, ms), Got::Timeout, "{at}: all taken");
            assert_eq!(a.try_recv(), Err(TryRecvError::Empty), "{at}");
            assert_eq!(b.try_recv(), Err(TryRecvError::Empty), "{at}");
        });
    });
}

/// A select blocked on two receivers (and a CML channel) is woken by a send from a task of
/// another domain, and by a plain thread, and takes that message.
#[test]
fn a_blocked_select_is_committed_by_a_sender_elsewhere() {
    common::watchdog(
        30,
        "a_blocked_select_is_committed_by_a_sender_elsewhere",
        || {
            with_domains(2, |rt| {
                let (ta, a) = mpsc::channel::<u32>();
                let (tb, b) = mpsc::sync_channel::<u32>(1);
                let cml: Channel<u32> = Channel::new();
                let sel = |a: &Receiver<u32>, b: &Receiver<u32>| {
                    select(vec![
                        a.recv_evt().wrap(Got::A),
                        b.recv_evt().wrap(Got::B),
                        cml.recv_evt().wrap(|v| Got::A(Ok(1000 + v))),
                    ])
                };
                let h = rt.spawn_on(1, move || {
                    thread::sleep(Duration::from_millis(10));
                    tb.send(5).unwrap();
                    tb
                });
                assert_eq!(sel(&a, &b), Got::B(Ok(5)), "sent from domain 1");
                let _tb = h.join().unwrap();
                let t = std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(10));
                    ta.send(6).unwrap();
                    ta
                });
                assert_eq!(sel(&a, &b), Got::A(Ok(6)), "sent from a plain thread");
                let _ta = t.join().unwrap();
            });
        },
    );
}

/// When a select commits to another branch, the receive takes nothing: the message sent to
/// the losing receiver is there for the next `recv`. Two messages, one to each receiver of a
/// blocked select, sent together: exactly one is taken by the select, the other stays.
#[test]
fn a_receive_that_loses_leaves_the_message_for_the_next_recv() {
    const ROUNDS: u32 = 200;
    common::watchdog(60, "a_receive_that_loses_leaves_the_message", || {
        // Another branch ready at the attempt: `always` against an empty receiver, then a
        // message sent after the sync lost.
        in_task_and_thread(|at| {
            let (tx, rx) = mpsc::channel::<u32>();
            let got = select(vec![rx.recv_evt().wrap(|_| 0), Event::always(1)]);
            assert_eq!(got, 1, "{at}");
            tx.send(9).unwrap();
            assert_eq!(rx.recv(), Ok(9), "{at}: the message is for the next recv");
        });
        on_domains(2, || {
            let (ta, a) = mpsc::channel::<u32>();
            let (tb, b) = mpsc::channel::<u32>();
            let mut a_won = 0;
            for n in 0..ROUNDS {
                let sender = thread::spawn({
                    let (ta, tb) = (ta.clone(), tb.clone());
                    move || {
                        if n % 2 == 0 {
                            thread::yield_now();
                        }
                        ta.send(n).unwrap();
                        tb.send(n).unwrap();
                    }
                });
                let (left, other) = match select_ab(&a, &b, HOUR) {
                    Got::A(Ok(v)) => {
                        a_won += 1;
                        (v, &b)
                    }
                    Got::B(Ok(v)) => (v, &a),
                    g => panic!("round {n}: {g:?}"),
                };
                assert_eq!(left, n, "round {n}");
                assert_eq!(other.recv(), Ok(n), "round {n}: the loser's message stays");
                sender.join().unwrap();
                assert_eq!(a.try_recv(), Err(TryRecvError::Empty));
                assert_eq!(b.try_recv(), Err(TryRecvError::Empty));
            }
            assert!(a_won > 0, "a sent first: a won {a_won} of {ROUNDS}");
        });
    });
}

/// Once every sender is gone the event gives `Err(RecvError)`, after the buffered messages:
/// at the attempt (`poll`, `select`), and to a select already blocked when the last sender
/// drops (a task of another domain drops it).
#[test]
fn disconnection_enables_the_event_with_recv_error() {
    common::watchdog(30, "disconnection_enables_the_event", || {
        in_task_and_thread(|at| {
            let (tx, rx) = mpsc::sync_channel::<u32>(2);
            tx.send(1).unwrap();
            drop(tx);
            assert_eq!(rx.recv_evt().poll(), Some(Ok(1)), "{at}: buffered first");
            assert_eq!(rx.recv_evt().poll(), Some(Err(RecvError)), "{at}");
            assert_eq!(rx.recv_evt().sync(), Err(RecvError), "{at}");
        });
        on_domains(2, || {
            // Every flavour; the senders (two of them) dropped by a task while the select
            // waits.
            for cap in [None, Some(2), Some(0)] {
                let (senders, rx): (Vec<Box<dyn Send>>, Receiver<u32>) = match cap {
                    None => {
                        let (tx, rx) = mpsc::channel::<u32>();
                        (vec![Box::new(tx.clone()), Box::new(tx)], rx)
                    }
                    Some(n) => {
                        let (tx, rx) = mpsc::sync_channel::<u32>(n);
                        (vec![Box::new(tx.clone()), Box::new(tx)], rx)
                    }
                };
                let h = thread::spawn(move || {
                    thread::sleep(Duration::from_millis(10));
                    drop(senders);
                });
                let (_keep, other) = mpsc::channel::<u32>();
                let got = select_ab(&rx, &other, HOUR);
                assert_eq!(got, Got::A(Err(RecvError)), "capacity {cap:?}");
                h.join().unwrap();
            }
        });
    });
}

/// `sync_channel(0)`: a sender blocked in `send` is matched by the select's receive and its
/// `send` returns; a select blocked first is matched by a later `send` (and by `try_send`),
/// which returns once the select has the value.
#[test]
fn rendezvous_senders_are_matched_by_the_committing_receive() {
    common::watchdog(30, "rendezvous_senders_are_matched", || {
        on_domains(2, || {
            let (tx, rx) = mpsc::sync_channel::<u32>(0);
            let (_keep, other) = mpsc::channel::<u32>();
            let delivered = Arc::new(AtomicBool::new(false));
            // Sender blocked first.
            let h = thread::spawn({
                let (tx, delivered) = (tx.clone(), delivered.clone());
                move || {
                    tx.send(1).unwrap();
                    delivered.store(true, Ordering::SeqCst);
                }
            });
            let mut polls = 0u32;
            let got = loop {
                // None until the sender is blocked in `send`.
                if let Some(got) = rx.recv_evt().poll() {
                    break got;
                }
                assert!(!delivered.load(Ordering::SeqCst), "send returned unmatched");
                polls += 1;
                assert!(polls < 100_000, "the sender never blocked");
                thread::sleep(Duration::from_millis(1));
            };
            assert_eq!(got, Ok(1));
            h.join().unwrap();
            assert!(
                delivered.load(Ordering::SeqCst),
                "send returned after the match"
            );
            // Select blocked first, a `send` from another task matches it.
            let h = thread::spawn({
                let tx = tx.clone();
                move || {
                    thread::sleep(Duration::from_millis(10));
                    tx.send(2).unwrap();
                }
            });
            assert_eq!(select_ab(&rx, &other, HOUR), Got::A(Ok(2)));
            h.join().unwrap();
            // And a `try_send`, which succeeds only with the select waiting.
            let h = thread::spawn({
                let tx = tx.clone();
                move || {
                    let mut tries = 0u32;
                    while tx.try_send(3).is_err() {
                        tries += 1;
                        assert!(tries < 100_000, "the select never waited");
                        thread::sleep(Duration::from_millis(1));
                    }
                }
            });
            assert_eq!(select_ab(&rx, &other, HOUR), Got::A(Ok(3)));
            h.join().unwrap();
            // No receiver waits any more: a rendezvous try_send fails.
            assert!(tx.try_send(4).is_err());
        });
    });
}

/// A sender blocked in a rendezvous `send` is matched by `select` (not only by `poll`): the
/// send returns, and the selected value is the one sent.
#[test]
fn a_blocked_rendezvous_sender_is_matched_by_select() {
    common::watchdog(
        30,
        "a_blocked_rendezvous_sender_is_matched_by_select",
        || {
            on_domains(1, || {
                let (tx, rx) = mpsc::sync_channel::<u32>(0);
                let (_keep, other) = mpsc::channel::<u32>();
                let h = thread::spawn(move || tx.send(11));
                // One domain: the sender runs, finds nobody, and parks in `send`.
                thread::yield_now();
                assert!(!h.is_finished(), "the sender waits for a receiver");
                assert_eq!(select_ab(&rx, &other, HOUR), Got::A(Ok(11)));
                assert_eq!(h.join().unwrap(), Ok(()));
            });
        },
    );
}

/// `recv_evt().poll()` behaves as `try_recv` for every flavour: `Some(Ok)`, `None` when empty
/// (nothing left behind: a later send goes to `try_recv`), `Some(Err)` once disconnected.
#[test]
fn poll_of_recv_evt_is_try_recv() {
    common::watchdog(30, "poll_of_recv_evt_is_try_recv", || {
        in_task_and_thread(|at| {
            for cap in [None, Some(0), Some(3)] {
                let (tx, rx): (Box<dyn Fn(u32) -> bool>, Receiver<u32>) = match cap {
                    None => {
                        let (tx, rx) = mpsc::channel();
                        (Box::new(move |v| tx.send(v).is_ok()), rx)
                    }
                    Some(n) => {
                        let (tx, rx) = mpsc::sync_channel(n);
                        (Box::new(move |v| tx.try_send(v).is_ok()), rx)
                    }
                };
                let what = format!("{at}, capacity {cap:?}");
                assert_eq!(rx.recv_evt().poll(), None, "{what}");
                assert_eq!(rx.try_recv(), Err(TryRecvError::Empty), "{what}");
                if cap != Some(0) {
                    assert!(tx(4), "{what}");
                    assert_eq!(rx.recv_evt().poll(), Some(Ok(4)), "{what}");
                    assert!(tx(5), "{what}");
                    assert_eq!(rx.try_recv(), Ok(5), "{what}");
                } else {
                    assert!(!tx(4), "{what}: no receiver waits, poll left no offer");
                }
                drop(tx);
                assert_eq!(rx.recv_evt().poll(), Some(Err(RecvError)), "{what}");
                assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected), "{what}");
            }
        });
    });
}

/// While a task waits in a select over receivers, a second task of the same single-domain
/// runtime keeps running (it is the one that finally sends).
#[test]
fn the_domain_runs_other_tasks_while_a_select_waits() {
    common::watchdog(
        30,
        "the_domain_runs_other_tasks_while_a_select_waits",
        || {
            on_domains(1, || {
                let (ta, a) = mpsc::channel::<u32>();
                let (_tb, b) = mpsc::channel::<u32>();
                let ticks = Arc::new(AtomicUsize::new(0));
                let stop = Arc::new(AtomicBool::new(false));
                let ticker = spawn_ticker(ticks.clone(), stop.clone());
                let sender = thread::spawn({
                    let ticks = ticks.clone();
                    move || {
                        while ticks.load(Ordering::SeqCst) < 5 {
                            thread::sleep(Duration::from_millis(1));
                        }
                        ta.send(42).unwrap();
                    }
                });
                assert_eq!(select_ab(&a, &b, HOUR), Got::A(Ok(42)));
                assert!(ticks.load(Ordering::SeqCst) >= 5);
                stop.store(true, Ordering::SeqCst);
                ticker.join().unwrap();
                sender.join().unwrap();
            });
        },
    );
}

/// A task cancelled while it waits in a select over receivers unwinds and takes nothing: the
/// message sent afterwards is there for `recv`. Then the cancel races a send, many times:
/// the message is either the cancelled task's (it got it before the cancel took effect, and
/// says so) or still in the channel, never lost nor taken twice. On one domain and two.
#[test]
fn cancelling_a_select_on_receivers_loses_no_message() {
    const ROUNDS: u32 = 300;
    common::watchdog(
        60,
        "cancelling_a_select_on_receivers_loses_no_message",
        || {
            for domains in [1, 2] {
                on_domains(domains, || {
                    let (ta, a) = mpsc::channel::<u32>();
                    let (tb, b) = mpsc::sync_channel::<u32>(0);
                    // `Receiver` is not `Sync`: shared with the waiting task through a mutex.
                    let (a, b) = (
                        Arc::new(bobine::sync::Mutex::new(a)),
                        bobine::sync::Mutex::new(b),
                    );
                    let b = Arc::new(b);
                    let taken = Arc::new(AtomicU64::new(0));
                    let mut mine = 0u64;
                    let mut rng = Rng::seeded(domains as u64);
                    for n in 1..=ROUNDS {
                        let h = thread::spawn({
                            let (a, b, taken) = (a.clone(), b.clone(), taken.clone());
                            move || {
                                let ea = a.lock().unwrap().recv_evt();
                                let eb = b.lock().unwrap().recv_evt();
                                let got = select(vec![ea.wrap(Got::A), eb.wrap(Got::B)]);
                                match got {
                                    Got::A(Ok(v)) | Got::B(Ok(v)) => {
                                        taken.fetch_add(v as u64, Ordering::SeqCst);
                                    }
                                    g => panic!("{g:?}"),
                                }
                                thread::sleep(HOUR);
                            }
                        });
                        for _ in 0..rng.below(3) {
                            thread::yield_now();
                        }
                        if rng.below(2) == 0 {
                            ta.send(n).unwrap();
                            h.cancel();
                        } else {
                            h.cancel();
                            ta.send(n).unwrap();
                        }
                        let err = h.join().expect_err("cancelled");
                        assert!(err.is::<TaskCancelled>(), "{}", payload_text(&*err));
                        match a.lock().unwrap().try_recv() {
                            Ok(v) => {
                                assert_eq!(v, n);
                                mine += v as u64;
                            }
                            Err(e) => assert_eq!(e, TryRecvError::Empty),
                        }
                        assert_eq!(
                            mine + taken.load(Ordering::SeqCst),
                            (1..=n as u64).sum::<u64>(),
                            "round {n} on {domains} domain(s): every message once"
                        );
                        assert!(
                            b.lock().unwrap().recv_evt().poll().is_none(),
                            "nothing on b"
                        );
                    }
                    drop(tb);
                });
            }
        },
    );
}

/// What a consumer of the stress test got: which receiver, and its result.
type Received = (usize, Result<u64, RecvError>);

/// N producers (tasks on two domains and a plain thread) each send M numbered messages,
/// spread over K receivers of every flavour (unbounded, bounded, rendezvous); consumers (tasks
/// on both domains and a plain thread) `select` over every receiver still connected plus a
/// timeout until all are disconnected. Every message is received exactly once (a count per
/// message, and the sum), and nobody hangs.
#[test]
fn stress_every_message_received_once_across_domains() {
    const PRODUCERS: u64 = 6;
    const M: u64 = 2000;
    const K: usize = 4;
    const CONSUMERS: usize = 5;
    common::watchdog(120, "stress_every_message_received_once", || {
        let total = (PRODUCERS * M) as usize;
        let seen: Arc<Vec<AtomicU8>> = Arc::new((0..total).map(|_| AtomicU8::new(0)).collect());
        let sum = Arc::new(AtomicU64::new(0));
        let timeouts = Arc::new(AtomicU64::new(0));
        type SendFn = Box<dyn Fn(u64) + Send + Sync>;
        let mut senders: Vec<SendFn> = Vec::new();
        let mut receivers = Vec::new();
        for k in 0..K {
            match k % 3 {
                0 => {
                    let (tx, rx) = mpsc::channel::<u64>();
                    senders.push(Box::new(move |v| tx.send(v).unwrap()));
                    receivers.push(rx);
                }
                1 => {
                    let (tx, rx) = mpsc::sync_channel::<u64>(2);
                    senders.push(Box::new(move |v| tx.send(v).unwrap()));
                    receivers.push(rx);
                }
                _ => {
                    let (tx, rx) = mpsc::sync_channel::<u64>(0);
                    senders.push(Box::new(move |v| tx.send(v).unwrap()));
                    receivers.push(rx);
                }
            }
        }
        // The consumers share the receivers (each builds its events under a lock).
        let receivers: Arc<Vec<bobine::sync::Mutex<Receiver<u64>>>> = Arc::new(
            receivers
                .into_iter()
                .map(bobine::sync::Mutex::new)
                .collect(),
        );
        let consume = {
            let (receivers, seen, sum, timeouts) = (
                receivers.clone(),
                seen.clone(),
                sum.clone(),
                timeouts.clone(),
            );
            move |salt: u64| {
                let mut rng = Rng::seeded(salt);
                let mut live: Vec<usize> = (0..K).collect();
                let mut got = 0u64;
                while !live.is_empty() {
                    let mut evs: Vec<Event<Option<Received>>> = live
                        .iter()
                        .map(|&k| {
                            let ev = receivers[k].lock().unwrap().recv_evt();
                            ev.wrap(move |r| Some((k, r)))
                        })
                        .collect();
                    let t = Duration::from_micros(100 + rng.below(2000));
                    evs.push(after(t).wrap(|()| None));
                    match select(evs) {
                        None => {
                            timeouts.fetch_add(1, Ordering::Relaxed);
                        }
                        Some((k, Err(RecvError))) => live.retain(|&l| l != k),
                        Some((_, Ok(v))) => {
                            let before = seen[v as usize].fetch_add(1, Ordering::SeqCst);
                            assert_eq!(before, 0, "message {v} received twice");
                            sum.fetch_add(v, Ordering::SeqCst);
                            got += 1;
                        }
                    }
                }
                got
            }
        };
        let senders = Arc::new(senders);
        let produce = {
            let senders = senders.clone();
            move |p: u64| {
                let mut rng = Rng::seeded(1000 + p);
                for i in 0..M {
                    let k = rng.below(K as u64) as usize;
                    (senders[k])(p * M + i);
                }
            }
        };
        let plain_consumer = std::thread::spawn({
            let consume = consume.clone();
            move || consume(99)
        });
        let plain_producer = std::thread::spawn({
            let produce = produce.clone();
            move || produce(PRODUCERS - 1)
        });
        let got_in_tasks: u64 = with_domains(2, |rt| {
            let consumers: Vec<_> = (0..CONSUMERS - 1)
                .map(|c| {
                    let consume = consume.clone();
                    rt.spawn_on(c % 2, move || consume(c as u64))
                })
                .collect();
            let producers: Vec<_> = (0..PRODUCERS - 1)
                .map(|p| {
                    let produce = produce.clone();
                    rt.spawn_on(p as usize % 2, move || produce(p))
                })
                .collect();
            for p in producers {
                p.join().unwrap();
            }
            plain_producer.join().unwrap();
            // Every producer is done: the last senders go, disconnecting every receiver.
            drop(senders);
            drop(produce);
            consumers.into_iter().map(|c| c.join().unwrap()).sum()
        });
        let got = got_in_tasks + plain_consumer.join().unwrap();
        assert_eq!(got as usize, total, "messages received");
        assert!(
            seen.iter().all(|s| s.load(Ordering::SeqCst) == 1),
            "each once"
        );
        let n = total as u64;
        assert_eq!(sum.load(Ordering::SeqCst), n * (n - 1) / 2, "checksum");
        drop(consume);
    });
}
