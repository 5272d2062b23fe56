//! Work stealing without the busy domain's help, and sends that yield: never-started tasks
//! queued behind a task that never returns to its scheduler are taken by idle domains, and a
//! task sending in a loop on an unbounded channel lets its receiver on the same domain run.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bobine::sync::mpsc;
use bobine::thread;

/// How many non-blocking sends a task makes between two yields when other tasks of its domain
/// are ready (documented on `bobine::sync::mpsc::Sender::send`).
const PREEMPT_INTERVAL: u64 = 64;

/// Tasks spawned on domain 0 before its task started spinning (never yielding, until one of
/// them sets the flag) are run by domain 1: without stealing from outside, domain 0 would have
/// to come back to its scheduler to hand them over, which the spinner never lets it do.
#[test]
fn queued_tasks_run_elsewhere_while_their_domain_spins() {
    common::watchdog(
        30,
        "queued_tasks_run_elsewhere_while_their_domain_spins",
        || {
            for _ in 0..20 {
                bobine::Builder::new().domains(2).run(|| {
                    const TASKS: usize = 40;
                    let spinner_os = std::thread::current().id();
                    let flag = Arc::new(AtomicBool::new(false));
                    let ran = Arc::new(AtomicUsize::new(0));
                    let handles: Vec<_> = (0..TASKS)
                        .map(|_| {
                            let (flag, ran) = (flag.clone(), ran.clone());
                            thread::spawn(move || {
                                if ran.fetch_add(1, Ordering::AcqRel) + 1 == TASKS {
                                    flag.store(true, Ordering::Release);
                                }
                                std::thread::current().id()
                            })
                        })
                        .collect();
                    // The main task (pinned to domain 0) spins without ever yielding.
                    while !flag.load(Ordering::Acquire) {
                        std::hint::spin_loop();
                    }
                    for h in handles {
                        assert_ne!(
                            h.join().unwrap(),
                            spinner_os,
                            "a task ran on the domain that was spinning"
                        );
                    }
                });
            }
        },
    );
}

/// Runs a sender of `(who, seq)` messages that records how many of its own messages were
/// still unreceived before each send; returns the most it saw.
fn send_counted(
    tx: mpsc::Sender<(usize, u64)>,
    who: usize,
    count: u64,
    received: &[AtomicU64],
) -> u64 {
    let mut most = 0;
    for seq in 0..count {
        let backlog = seq - received[who].load(Ordering::Acquire);
        most = most.max(backlog);
        tx.send((who, seq)).unwrap();
    }
    most
}

/// Receives until every sender is gone, checking that each sender's messages arrive once
/// each and in order; publishes per-sender progress in `received`; returns the total.
fn receive_counted(rx: mpsc::Receiver<(usize, u64)>, received: &[AtomicU64]) -> u64 {
    let mut next = vec![0u64; received.len()];
    let mut total = 0;
    for (who, seq) in rx.iter() {
        assert_eq!(seq, next[who], "sender {who}: a message lost or repeated");
        next[who] += 1;
        received[who].store(next[who], Ordering::Release);
        total += 1;
    }
    total
}

/// std's `port_gone_concurrent` shape on one domain: a task sends 1 000 000 messages on an
/// unbounded channel in a loop that never blocks, while its receiver (spawned first, on the
/// same domain) counts them. Every message arrives once, in order, and the sender never runs
/// more than [`PREEMPT_INTERVAL`] messages ahead of the receiver: it yields every 64 sends
/// while the receiver is ready, and the receiver drains the whole buffer on its turn.
#[test]
fn unbounded_send_loop_lets_its_receiver_on_the_same_domain_run() {
    common::watchdog(
        120,
        "unbounded_send_loop_lets_its_receiver_on_the_same_domain_run",
        || {
            const N: u64 = 1_000_000;
            let (total, most) = bobine::Builder::new().domains(1).run(|| {
                let received: Arc<[AtomicU64]> = Arc::new([AtomicU64::new(0)]);
                let (tx, rx) = mpsc::channel();
                let r = received.clone();
                let receiver = thread::spawn(move || receive_counted(rx, &r));
                let sender = thread::spawn(move || send_counted(tx, 0, N, &received));
                let most = sender.join().unwrap();
                (receiver.join().unwrap(), most)
            });
            assert_eq!(total, N);
            assert!(
                most <= PREEMPT_INTERVAL,
                "the sender ran {most} messages ahead of its receiver"
            );
        },
    );
}

/// The same on two domains with plain threads sending too: the receiver and one sender are
/// pinned to domain 0, another sender task may run on either domain, and two plain threads
/// send from outside. Every message arrives once and in order per sender, and the pinned
/// sender does not run away from its receiver: without the yields the receiver could not run
/// until that sender's loop ended, and its backlog would reach the whole loop. No tight bound
/// holds here, unlike on one domain: a receiver woken by another thread is in no queue of
/// domain 0 until that thread has pushed it on the inbox, and the OS may deschedule the waker
/// in between while the sender's looks at its domain find nothing ready; so the test asserts a
/// quarter of the loop.
#[test]
fn unbounded_sends_from_tasks_and_threads_across_domains_arrive_once() {
    common::watchdog(
        120,
        "unbounded_sends_from_tasks_and_threads_across_domains_arrive_once",
        || {
            const PER_SENDER: u64 = 250_000;
            let (total, most) = bobine::Builder::new().domains(2).run(|| {
                let received: Arc<[AtomicU64]> =
                    Arc::new(std::array::from_fn::<_, 4, _>(|_| AtomicU64::new(0)));
                let (tx, rx) = mpsc::channel();
                let r = received.clone();
                let receiver = thread::spawn_local(move || receive_counted(rx, &r));
                let (t, r) = (tx.clone(), received.clone());
                let pinned = thread::spawn_local(move || send_counted(t, 0, PER_SENDER, &r));
                let (t, r) = (tx.clone(), received.clone());
                let roaming = thread::spawn(move || send_counted(t, 1, PER_SENDER, &r));
                let plain: Vec<_> = (2..4)
                    .map(|who| {
                        let (t, r) = (tx.clone(), received.clone());
                        std::thread::spawn(move || send_counted(t, who, PER_SENDER, &r))
                    })
                    .collect();
                drop(tx);
                let most = pinned.join().unwrap();
                roaming.join().unwrap();
                for p in plain {
                    p.join().unwrap();
                }
                (receiver.join().unwrap(), most)
            });
            assert_eq!(total, 4 * PER_SENDER);
            assert!(
                most <= PER_SENDER / 4,
                "the sender on the receiver's domain ran {most} messages ahead of it"
            );
        },
    );
}

/// The runtime ends while a busy domain still has many never-started tasks and an idle one is
/// taking them: every task either ran to its end (its join gives its value) or was dropped
/// (`TaskDropped`), each closure is dropped exactly once, and no join hangs.
#[test]
fn steals_racing_the_shutdown_run_or_drop_each_task_once() {
    common::watchdog(
        120,
        "steals_racing_the_shutdown_run_or_drop_each_task_once",
        || {
            const TASKS: usize = 2000;
            static DROPS: AtomicUsize = AtomicUsize::new(0);
            static STARTED: AtomicUsize = AtomicUsize::new(0);
            static COMPLETED: AtomicUsize = AtomicUsize::new(0);
            struct Counted;
            impl Drop for Counted {
                fn drop(&mut self) {
                    DROPS.fetch_add(1, Ordering::SeqCst);
                }
            }
            let (mut ran, mut dropped) = (0, 0);
            for round in 0..16u64 {
                for c in [&DROPS, &STARTED, &COMPLETED] {
                    c.store(0, Ordering::SeqCst);
                }
                let handles = bobine::Builder::new().domains(2).run(move || {
                    let handles: Vec<_> = (0..TASKS)
                        .map(|i| {
                            let guard = Counted;
                            thread::spawn(move || {
                                let _guard = guard;
                                STARTED.fetch_add(1, Ordering::SeqCst);
                                thread::yield_now();
                                COMPLETED.fetch_add(1, Ordering::SeqCst);
                                i
                            })
                        })
                        .collect();
                    // Domain 0 stays busy (no yield) while domain 1 steals, then the runtime
                    // ends with tasks still queued.
                    let until = Instant::now() + Duration::from_micros(100 * round);
                    while Instant::now() < until {
                        std::hint::spin_loop();
                    }
                    handles
                });
                let mut ok = 0;
                for (i, h) in handles.into_iter().enumerate() {
                    assert!(h.is_finished(), "a task outlived its runtime");
                    match h.join() {
                        Ok(v) => {
                            assert_eq!(v, i);
                            ok += 1;
                        }
                        Err(e) => assert!(
                            e.downcast_ref::<bobine::TaskDropped>().is_some(),
                            "a task ended with something else than TaskDropped"
                        ),
                    }
                }
                assert_eq!(ok, COMPLETED.load(Ordering::SeqCst));
                assert!(STARTED.load(Ordering::SeqCst) >= ok);
                assert_eq!(
                    DROPS.load(Ordering::SeqCst),
                    TASKS,
                    "a closure dropped twice or never"
                );
                ran += ok;
                dropped += TASKS - ok;
            }
            // Not a guarantee, but what makes the test a race: some tasks ran, some did not.
            eprintln!("steals racing the shutdown: {ran} tasks ran, {dropped} were dropped");
        },
    );
}

/// The shape of std's `port_gone_concurrent`, on one domain: the main task sends in a loop
/// until the send fails, while the receiver task, spawned first, takes one message and ends.
/// The loop's yields let the receiver run, so the loop ends (before, it never yielded, the
/// receiver never ran, and the buffer grew until the process was killed).
#[test]
fn send_loop_sees_its_receiver_go_on_one_domain() {
    common::watchdog(30, "send_loop_sees_its_receiver_go_on_one_domain", || {
        let sent = bobine::Builder::new().domains(1).run(|| {
            let (tx, rx) = mpsc::channel::<u32>();
            let receiver = thread::spawn(move || rx.recv().unwrap());
            let mut sent = 0u64;
            while tx.send(7).is_ok() {
                sent += 1;
            }
            assert_eq!(receiver.join().unwrap(), 7);
            sent
        });
        assert!(
            sent >= 1,
            "the receiver got a message, so one send succeeded"
        );
        assert!(
            sent <= PREEMPT_INTERVAL,
            "the receiver ran only after {sent} sends"
        );
    });
}

/// The shape of std's `test_recv_try_iter`, on one domain: a task asks for values with an
/// unbounded `send` and collects the answers with `try_iter` in a loop that never blocks,
/// until it has three; the main task answers each request. The asking loop's yields let the
/// main task answer, so it gets its three answers.
#[test]
fn try_iter_request_loop_gets_its_answers_on_one_domain() {
    common::watchdog(
        30,
        "try_iter_request_loop_gets_its_answers_on_one_domain",
        || {
            let total = bobine::Builder::new().domains(1).run(|| {
                let (ask, asked) = mpsc::channel::<()>();
                let (answer, answers) = mpsc::channel::<u32>();
                let asker = thread::spawn(move || {
                    let mut total = 0;
                    loop {
                        for v in answers.try_iter() {
                            total += v;
                            if total == 6 {
                                return total;
                            }
                        }
                        ask.send(()).unwrap();
                    }
                });
                for () in asked.iter() {
                    if answer.send(2).is_err() {
                        break;
                    }
                }
                asker.join().unwrap()
            });
            assert_eq!(total, 6);
        },
    );
}
