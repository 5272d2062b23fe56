//! Messages counted exactly once: the many-to-many channel stress (producers and consumers on
//! four domains and plain threads, choosing among channels), and cancellation racing delivery.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use bobine::TaskCancelled;
use bobine::event::{self, Channel, Event, select};
use bobine::sync::mpsc;
use bobine::thread;

use crate::common::panics::payload_text;
use crate::common::rng::Rng;
use crate::common::tasks::{Domains, with_domains};
use crate::{common, limit, size};

/// The value that tells a consumer to stop (never a message).
const STOP: u64 = u64::MAX;

/// Channels of the many-to-many stress.
const CHANNELS: usize = 4;

/// One flag per message: how many times it was received.
struct Seen(Vec<AtomicU8>);

impl Seen {
    fn new(n: u64) -> Seen {
        Seen((0..n).map(|_| AtomicU8::new(0)).collect())
    }

    fn record(&self, v: u64) {
        self.0[v as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Asserts that every message was received exactly once, naming the first that was not.
    #[track_caller]
    fn assert_exactly_once(&self, what: &str) {
        let mut lost = 0u64;
        let mut duplicated = 0u64;
        let mut first = None;
        for (v, c) in self.0.iter().enumerate() {
            match c.load(Ordering::Relaxed) {
                1 => {}
                0 => {
                    lost += 1;
                    first.get_or_insert((v, 0));
                }
                n => {
                    duplicated += 1;
                    first.get_or_insert((v, n));
                }
            }
        }
        assert!(
            lost == 0 && duplicated == 0,
            "{what}: {lost} messages lost and {duplicated} received more than once of {} \
             (first: message {:?} received {} times)",
            self.0.len(),
            first.map(|f| f.0),
            first.map_or(0, |f| f.1)
        );
    }
}

/// How a producer sends message `v`: by a `select` among a send on every channel (odd
/// messages), or by a plain send on one channel (even ones).
fn produce(chans: &[Channel<u64>], v: u64) {
    if v % 2 == 1 {
        select(chans.iter().map(|c| c.send_evt(v)).collect());
    } else {
        chans[(v / 2) as usize % CHANNELS].send(v);
    }
}

/// A consumer: `select`s a receive among every channel, one time in four with a short timeout
/// as another alternative (a timeout commits instead of a message now and then, and the
/// message must then go to someone else); records each message; returns how many it got once
/// it receives [`STOP`].
fn consume(chans: &[Channel<u64>], seen: &Seen) -> u64 {
    let mut got = 0u64;
    for round in 0u64.. {
        let mut evs: Vec<Event<Option<u64>>> =
            chans.iter().map(|c| c.recv_evt().wrap(Some)).collect();
        if round % 4 == 0 {
            evs.push(event::after(Duration::from_micros(50)).wrap(|()| None));
        }
        match select(evs) {
            Some(STOP) => return got,
            Some(v) => {
                seen.record(v);
                got += 1;
            }
            None => {}
        }
    }
    unreachable!()
}

/// Many to many: 8 producer tasks (two per domain) and 2 producer threads send every message
/// once, through `select` among four channels or a plain send, to 8 consumer tasks (two per
/// domain) and a consumer thread that `select` among the four, sometimes with a timeout; every
/// message is received exactly once and nobody hangs.
#[test]
fn reliability_many_to_many_exactly_once() {
    let total = size(40_000, 1_000_000);
    common::watchdog(limit(60), "reliability_many_to_many_exactly_once", || {
        let chans: Arc<Vec<Channel<u64>>> =
            Arc::new((0..CHANNELS).map(|_| Channel::new()).collect());
        let seen = Arc::new(Seen::new(total));
        const TASK_PRODUCERS: u64 = 8;
        const PRODUCERS: u64 = TASK_PRODUCERS + 2;
        const TASK_CONSUMERS: usize = 8;
        let received = with_domains(4, |rt: &Domains| {
            // Producer p sends the messages v with v % PRODUCERS == p.
            let producer = move |chans: Arc<Vec<Channel<u64>>>, p: u64| {
                move || {
                    let mut v = p;
                    while v < total {
                        produce(&chans, v);
                        v += PRODUCERS;
                    }
                }
            };
            let consumers: Vec<_> = (0..TASK_CONSUMERS)
                .map(|k| {
                    let (chans, seen) = (chans.clone(), seen.clone());
                    rt.spawn_on(k % 4, move || consume(&chans, &seen))
                })
                .collect();
            let thread_consumer = {
                let (chans, seen) = (chans.clone(), seen.clone());
                std::thread::spawn(move || consume(&chans, &seen))
            };
            let producers: Vec<_> = (0..TASK_PRODUCERS)
                .map(|p| rt.spawn_on(p as usize % 4, producer(chans.clone(), p)))
                .collect();
            let thread_producers: Vec<_> = (TASK_PRODUCERS..PRODUCERS)
                .map(|p| std::thread::spawn(producer(chans.clone(), p)))
                .collect();
            for h in producers {
                h.join().unwrap();
            }
            bobine::io::unblock(move || {
                for h in thread_producers {
                    h.join().unwrap();
                }
            });
            // Every message is sent, hence received (sends are rendezvous): stop the consumers.
            for k in 0..=TASK_CONSUMERS {
                chans[k % CHANNELS].send(STOP);
            }
            let mut received: u64 = consumers.into_iter().map(|h| h.join().unwrap()).sum();
            received += bobine::io::unblock(move || thread_consumer.join().unwrap());
            received
        });
        assert_eq!(received, total, "messages received, summed over consumers");
        seen.assert_exactly_once("many to many");
        eprintln!("many to many: {total} messages, each received exactly once");
    });
}

/// A rendezvous channel of one of two kinds, seen from the receiving side.
#[derive(Clone)]
enum Rx {
    /// `bobine::sync::mpsc::sync_channel(0)`.
    Mpsc(Rc<mpsc::Receiver<u64>>),
    /// A CML channel, received through a `select` with a timeout that never fires.
    Cml(Channel<u64>),
}

impl Rx {
    fn recv(&self) -> u64 {
        match self {
            Rx::Mpsc(rx) => rx.recv().unwrap(),
            Rx::Cml(c) => select(vec![
                c.recv_evt(),
                event::after(Duration::from_secs(3600)).wrap(|()| STOP),
            ]),
        }
    }

    /// Whether a message is waiting (a sender blocked in its send).
    fn has_message(&self) -> bool {
        match self {
            Rx::Mpsc(rx) => rx.try_recv().is_ok(),
            Rx::Cml(c) => c.recv_evt().poll().is_some(),
        }
    }
}

/// How the rounds of a race ended.
#[derive(Default, Debug)]
struct Tally {
    /// The cancelled receiver got the round's message before it unwound.
    victim: u64,
    /// The message was left for the next receiver.
    left: u64,
}

/// One race configuration: `rounds` rounds in which a receiver task on domain 0, parked in
/// `recv`, is cancelled at about the moment the giver (a task on domain 1, or a plain thread)
/// sends the round's message. The receiver records what it gets before it can unwind; the main
/// task receives what it did not get. Every message is received exactly once.
fn race(rt: &Domains, rounds: u64, cml: bool, giver_is_thread: bool, seed: u64) -> Tally {
    let (go_tx, go_rx) = mpsc::channel::<u64>();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let (rx, send): (Rx, Box<dyn Fn(u64) + Send>) = if cml {
        let c = Channel::new();
        let c2 = c.clone();
        (Rx::Cml(c), Box::new(move |v| c2.send(v)))
    } else {
        let (tx, rx) = mpsc::sync_channel(0);
        (
            Rx::Mpsc(Rc::new(rx)),
            Box::new(move |v| tx.send(v).unwrap()),
        )
    };
    let giver = move || {
        let mut rng = Rng::seeded(seed ^ 0xfeed);
        for n in go_rx {
            for _ in 0..rng.below(200) {
                std::hint::spin_loop();
            }
            send(n);
            done_tx.send(()).unwrap();
        }
    };
    let (giver_task, giver) = if giver_is_thread {
        (None, Some(std::thread::spawn(giver)))
    } else {
        (Some(rt.spawn_on(1, giver)), None)
    };
    let seen = Seen::new(rounds);
    let mut rng = Rng::seeded(seed);
    // Shown with the failure's message (the harness prints what a failed test wrote).
    eprintln!("cancel vs delivery: seed {:#x}", rng.0);
    let mut tally = Tally::default();
    for n in 0..rounds {
        let got = Rc::new(RefCell::new(Vec::new()));
        let victim = thread::spawn_local({
            let (rx, got) = (rx.clone(), got.clone());
            move || {
                loop {
                    let v = rx.recv();
                    got.borrow_mut().push(v);
                }
            }
        });
        thread::yield_now(); // the victim parks in recv
        match n % 16 {
            // Settled one way: cancelled before the message is sent, it cannot get it.
            0 => {
                victim.cancel();
                while !victim.is_finished() {
                    thread::yield_now();
                }
                go_tx.send(n).unwrap();
            }
            // Settled the other way: the message was taken before the cancel.
            1 => {
                go_tx.send(n).unwrap();
                while got.borrow().is_empty() {
                    thread::yield_now();
                }
                victim.cancel();
            }
            // A race: the cancel lands at about the send.
            _ => {
                go_tx.send(n).unwrap();
                match rng.below(3) {
                    0 => {}
                    1 => {
                        for _ in 0..rng.below(400) {
                            std::hint::spin_loop();
                        }
                    }
                    _ => thread::yield_now(),
                }
                victim.cancel();
            }
        }
        match victim.join() {
            Ok(()) => unreachable!("the receiver loops until cancelled"),
            Err(p) => assert!(
                p.is::<TaskCancelled>(),
                "round {n}: the receiver ended with '{}', not TaskCancelled",
                payload_text(&*p)
            ),
        }
        let by_victim = got.borrow().clone();
        match by_victim[..] {
            [v] => {
                assert_eq!(v, n, "round {n}: the message the cancelled receiver got");
                seen.record(v);
                tally.victim += 1;
            }
            [] => {
                let v = rx.recv();
                assert_eq!(v, n, "round {n}: the message left for the next receiver");
                seen.record(v);
                tally.left += 1;
            }
            _ => panic!("round {n}: the cancelled receiver got {by_victim:?}"),
        }
        done_rx.recv().unwrap();
        assert!(
            !rx.has_message(),
            "round {n}: a message left over (duplicated)"
        );
    }
    drop(go_tx);
    if let Some(h) = giver_task {
        h.join().unwrap();
    }
    if let Some(h) = giver {
        bobine::io::unblock(move || h.join().unwrap());
    }
    seen.assert_exactly_once("cancel vs delivery");
    assert!(
        tally.victim > 0 && tally.left > 0,
        "both outcomes happen (the settled rounds force them): {tally:?}"
    );
    tally
}

/// Cancellation racing delivery: receivers parked in a rendezvous `recv` (an `mpsc`
/// `sync_channel(0)`, or a CML channel in a `select`) are cancelled at about the moment a
/// task on another domain or a plain thread sends to them, in every mix; whichever wins, each
/// message is received exactly once, by the cancelled receiver or by the next.
#[test]
fn reliability_cancel_vs_delivery() {
    let races = size(2_000, 100_000);
    common::watchdog(limit(90), "reliability_cancel_vs_delivery", || {
        let mut counted = 0;
        for (i, (cml, thread)) in [(false, false), (false, true), (true, false), (true, true)]
            .into_iter()
            .enumerate()
        {
            let rounds = races / 4;
            let tally = with_domains(2, |rt| race(rt, rounds, cml, thread, i as u64));
            counted += tally.victim + tally.left;
            eprintln!(
                "cancel vs delivery ({}, giver on {}): {tally:?}",
                if cml {
                    "CML channel"
                } else {
                    "mpsc rendezvous"
                },
                if thread { "a plain thread" } else { "domain 1" }
            );
        }
        assert_eq!(counted, races / 4 * 4, "every race counted once");
    });
}
