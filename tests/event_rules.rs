//! One test per rule of OCaml's `Event` module (Reppy's Concurrent ML), as
//! `bobine::event` implements it, plus the CML extensions (`never`, `after`, `at`, `join`,
//! `with_nack`) and the OCaml face `bobine::ocaml::event`.
//!
//! Tests that need a partner "already blocked" run on one domain: the partner raises a flag
//! and goes straight into its sync without yielding, so once the flag is seen (after a yield)
//! the partner is parked in that sync with its offer registered.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bobine::event::{self, Channel, Event, after, at, choose, guard, select, with_nack};
use bobine::thread::{spawn, yield_now};
use common::panics::panic_text;
use common::tasks::on_domains;

/// Yields until `flag` reads `want`.
fn wait_for(flag: &AtomicUsize, want: usize) {
    while flag.load(SeqCst) != want {
        yield_now();
    }
}

/// A shared log of what ran, in order.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<String>>>);

impl Log {
    fn push(&self, s: impl Into<String>) {
        self.0.lock().unwrap().push(s.into());
    }
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

/// Which way a `choose [send; receive]` went, or that a timeout won.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Way {
    Sent,
    Received(u64),
    Timeout,
}

/// `choose [send c v; receive c]`, each branch saying what it did.
fn send_or_receive(c: &Channel<u64>, v: u64) -> Event<Way> {
    choose(vec![
        c.send_evt(v).wrap(|()| Way::Sent),
        c.recv_evt().wrap(Way::Received),
    ])
}

fn counter() -> Arc<AtomicUsize> {
    Arc::new(AtomicUsize::new(0))
}

/// Every guard runs once per sync (and poll), in losing branches too and across a blocking wait.
#[test]
fn guard_runs_once_per_sync_even_in_a_branch_not_chosen() {
    common::watchdog(60, "guard_runs_once_per_sync", || {
        on_domains(1, || {
            let idle: Channel<u64> = Channel::new();
            let (g1, g2, g3) = (counter(), counter(), counter());
            const ROUNDS: usize = 100;
            for round in 0..ROUNDS as u64 {
                let (g1, g2, g3, idle) = (g1.clone(), g2.clone(), g3.clone(), idle.clone());
                let v = select(vec![
                    guard(move || {
                        g1.fetch_add(1, SeqCst);
                        Event::always(round)
                    }),
                    guard(move || {
                        g2.fetch_add(1, SeqCst);
                        idle.recv_evt()
                    }),
                    guard(move || {
                        g3.fetch_add(1, SeqCst);
                        Event::never()
                    }),
                ]);
                assert_eq!(v, round);
            }
            assert_eq!(g1.load(SeqCst), ROUNDS);
            assert_eq!(g2.load(SeqCst), ROUNDS, "a losing branch's guard ran too");
            assert_eq!(g3.load(SeqCst), ROUNDS);

            // A sync that blocks, then is completed by a partner, ran its guards once.
            let c: Channel<u64> = Channel::new();
            let (b1, b2) = (counter(), counter());
            let c2 = c.clone();
            let sender = spawn(move || c2.send(5));
            let (b1c, b2c) = (b1.clone(), b2.clone());
            let (cc, idle2) = (c.clone(), idle.clone());
            let v = select(vec![
                guard(move || {
                    b1c.fetch_add(1, SeqCst);
                    idle2.recv_evt()
                }),
                guard(move || {
                    b2c.fetch_add(1, SeqCst);
                    cc.recv_evt()
                }),
            ]);
            assert_eq!(v, 5);
            sender.join().unwrap();
            assert_eq!((b1.load(SeqCst), b2.load(SeqCst)), (1, 1));

            // poll flattens the same way: each guard once, ready or not.
            let (p1, p2) = (counter(), counter());
            let (p1c, p2c, idle3) = (p1.clone(), p2.clone(), idle.clone());
            let r = choose(vec![
                guard(move || {
                    p1c.fetch_add(1, SeqCst);
                    idle3.recv_evt()
                }),
                guard(move || {
                    p2c.fetch_add(1, SeqCst);
                    Event::never()
                }),
            ])
            .poll();
            assert_eq!(r, None);
            assert_eq!((p1.load(SeqCst), p2.load(SeqCst)), (1, 1));
        })
    });
}

/// Flattening is depth-first, left to right: nested guards run in order of appearance.
#[test]
fn guards_run_depth_first_left_to_right() {
    common::watchdog(60, "guards_run_depth_first_left_to_right", || {
        on_domains(1, || {
            let log = Log::default();
            let g = |name: &'static str, inner: Event<u32>, log: &Log| {
                let log = log.clone();
                guard(move || {
                    log.push(name);
                    inner
                })
            };
            let ev = choose(vec![
                g(
                    "a",
                    choose(vec![
                        g("b", Event::never(), &log),
                        g("c", Event::never(), &log),
                    ]),
                    &log,
                ),
                g("d", Event::always(1), &log),
            ]);
            assert_eq!(ev.sync(), 1);
            assert_eq!(log.take(), ["a", "b", "c", "d"]);
        })
    });
}

/// A panic in a guard leaves `sync` before anything is offered: no partner sees the send before it.
#[test]
fn a_panic_in_a_guard_leaves_sync_before_anything_is_offered() {
    common::watchdog(60, "a_panic_in_a_guard_leaves_sync", || {
        on_domains(1, || {
            let c: Channel<u64> = Channel::new();
            let c2 = c.clone();
            let msg = panic_text(move || {
                select(vec![
                    c2.send_evt(1),
                    guard(|| -> Event<()> { panic!("guard failed") }),
                ])
            });
            assert!(msg.contains("guard failed"), "{msg}");
            // Another task finds no sender on c.
            let c2 = c.clone();
            let probe = spawn(move || c2.recv_evt().poll());
            assert_eq!(
                probe.join().unwrap(),
                None,
                "the panicked sync left an offer"
            );

            // A receiver blocked before: the guard panics after the send leaf (which was
            // ready) was built, and the receiver does not get that value.
            let waiting = counter();
            let (c2, w2) = (c.clone(), waiting.clone());
            let receiver = spawn(move || {
                w2.store(1, SeqCst);
                c2.recv()
            });
            wait_for(&waiting, 1);
            let c2 = c.clone();
            let msg = panic_text(move || {
                select(vec![
                    c2.send_evt(1),
                    guard(|| -> Event<()> { panic!("guard failed again") }),
                ])
            });
            assert!(msg.contains("guard failed again"), "{msg}");
            yield_now();
            assert!(!receiver.is_finished(), "the receiver got a value");
            // The receiver is still there for another task's poll, which gives it 2.
            let c2 = c.clone();
            let poller = spawn(move || c2.send_evt(2).poll());
            assert_eq!(poller.join().unwrap(), Some(()));
            assert_eq!(receiver.join().unwrap(), 2);
        })
    });
}

/// Among three ready `always` leaves each wins 20%..46% of 3000 rounds; `never` leaves never win.
#[test]
fn choice_is_uniform_among_ready_always_leaves() {
    common::watchdog(60, "choice_is_uniform_among_ready_always_leaves", || {
        on_domains(1, || {
            let mut hits = [0u32; 3];
            for _ in 0..3000 {
                let i = select(vec![
                    Event::never(),
                    Event::always(0usize),
                    Event::always(1),
                    Event::never(),
                    Event::always(2),
                ]);
                hits[i] += 1;
            }
            assert_eq!(hits.iter().sum::<u32>(), 3000);
            for (i, &h) in hits.iter().enumerate() {
                assert!(
                    (600..=1380).contains(&h),
                    "leaf {i} chosen {h}/3000: {hits:?}"
                );
            }
        })
    });
}

/// Among three channels with a blocked sender each wins 20%..46% of 3000 rounds; no value lost.
#[test]
fn choice_is_uniform_among_ready_channels() {
    common::watchdog(60, "choice_is_uniform_among_ready_channels", || {
        on_domains(1, || {
            let chans: Vec<Channel<u64>> = (0..3).map(|_| Channel::new()).collect();
            let offered: Vec<Arc<AtomicUsize>> = (0..3).map(|_| counter()).collect();
            for (c, o) in chans.iter().zip(&offered) {
                let (c, o) = (c.clone(), o.clone());
                // Runs until the runtime ends (then it is dropped while blocked).
                spawn(move || {
                    for k in 0.. {
                        o.fetch_add(1, SeqCst);
                        c.send(k);
                    }
                });
            }
            let mut taken = [0usize; 3];
            for _ in 0..3000 {
                // Every sender blocked again (offered one more than we took from it).
                for (i, o) in offered.iter().enumerate() {
                    wait_for(o, taken[i] + 1);
                }
                let evs = chans
                    .iter()
                    .enumerate()
                    .map(|(i, c)| c.recv_evt().wrap(move |k| (i, k)))
                    .collect();
                let (i, k) = select(evs);
                assert_eq!(k, taken[i] as u64, "channel {i}: value lost or repeated");
                taken[i] += 1;
            }
            assert_eq!(taken.iter().sum::<usize>(), 3000);
            for (i, &t) in taken.iter().enumerate() {
                assert!(
                    (600..=1380).contains(&t),
                    "channel {i} chosen {t}/3000: {taken:?}"
                );
            }
        })
    });
}

/// Receivers blocked in order r1, r2, r3 get the next three sends in order; senders likewise.
#[test]
fn blocked_partners_are_served_first_come_first_served() {
    common::watchdog(60, "blocked_partners_are_served_fcfs", || {
        on_domains(1, || {
            let idle: Channel<u64> = Channel::new();
            for round in 0..50u64 {
                let c: Channel<u64> = Channel::new();
                let arrived = counter();
                let receivers: Vec<_> = (0..3)
                    .map(|i| {
                        let (c, a, idle) = (c.clone(), arrived.clone(), idle.clone());
                        let h = spawn(move || {
                            a.store(i + 1, SeqCst);
                            if (i + round as usize) % 2 == 0 {
                                c.recv()
                            } else {
                                select(vec![idle.recv_evt(), c.recv_evt()])
                            }
                        });
                        wait_for(&arrived, i + 1);
                        h
                    })
                    .collect();
                for v in [10, 20, 30] {
                    if round % 2 == 0 {
                        c.send(round * 100 + v);
                    } else {
                        c.send_evt(round * 100 + v).sync();
                    }
                }
                let got: Vec<u64> = receivers.into_iter().map(|h| h.join().unwrap()).collect();
                assert_eq!(got, [10, 20, 30].map(|v| round * 100 + v), "round {round}");

                // And senders.
                let arrived = counter();
                let senders: Vec<_> = (0..3u64)
                    .map(|i| {
                        let (c, a, idle) = (c.clone(), arrived.clone(), idle.clone());
                        let h = spawn(move || {
                            a.store(i as usize + 1, SeqCst);
                            if (i + round) % 2 == 0 {
                                c.send(i);
                            } else {
                                select(vec![idle.recv_evt().wrap(|_| ()), c.send_evt(i)]);
                            }
                        });
                        wait_for(&arrived, i as usize + 1);
                        h
                    })
                    .collect();
                let got: Vec<u64> = (0..3).map(|_| c.recv_evt().sync()).collect();
                assert_eq!(got, [0, 1, 2], "round {round}: senders out of order");
                senders.into_iter().for_each(|h| h.join().unwrap());
            }
        })
    });
}

/// `choose [send c 1; receive c]` alone never completes: `poll` is `None`, a timeout wins.
#[test]
fn a_sync_never_matches_itself() {
    common::watchdog(60, "a_sync_never_matches_itself", || {
        on_domains(1, || {
            let c: Channel<u64> = Channel::new();
            assert_eq!(send_or_receive(&c, 1).poll(), None);
            for _ in 0..20 {
                let way = select(vec![
                    send_or_receive(&c, 1),
                    after(Duration::from_millis(20)).wrap(|()| Way::Timeout),
                ]);
                assert_eq!(way, Way::Timeout);
            }
            // No live offer remains from those syncs.
            assert_eq!(c.recv_evt().poll(), None);
            assert_eq!(c.send_evt(3).poll(), None);
        })
    });
}

/// Two tasks each on `choose [send c id; receive c]` pair up: one sends, the other gets its value.
#[test]
fn two_syncs_offering_send_and_receive_pair_up() {
    common::watchdog(60, "two_syncs_offering_send_and_receive_pair_up", || {
        for domains in [1, 2] {
            let (a_sent, b_sent) = on_domains(domains, || {
                let c: Channel<u64> = Channel::new();
                let (mut a_sent, mut b_sent) = (0, 0);
                for _ in 0..200 {
                    let (ca, cb) = (c.clone(), c.clone());
                    let a = spawn(move || send_or_receive(&ca, 1).sync());
                    let b = spawn(move || send_or_receive(&cb, 2).sync());
                    match (a.join().unwrap(), b.join().unwrap()) {
                        (Way::Sent, Way::Received(1)) => a_sent += 1,
                        (Way::Received(2), Way::Sent) => b_sent += 1,
                        other => panic!("on {domains} domain(s): {other:?}"),
                    }
                }
                (a_sent, b_sent)
            });
            assert_eq!(a_sent + b_sent, 200, "on {domains} domain(s)");
        }
    });
}

/// `always` gets no preference over a ready receive; when it wins the sender keeps its value.
#[test]
fn always_gets_no_preference_and_a_blocked_partner_keeps_its_value() {
    common::watchdog(60, "always_gets_no_preference", || {
        on_domains(1, || {
            let c: Channel<u64> = Channel::new();
            let (offered, sent) = (counter(), counter());
            let (c2, o2, s2) = (c.clone(), offered.clone(), sent.clone());
            spawn(move || {
                for k in 0.. {
                    o2.fetch_add(1, SeqCst);
                    c2.send(k);
                    s2.fetch_add(1, SeqCst);
                }
            });
            let (mut always_won, mut expected) = (0, 0u64);
            for _ in 0..1000 {
                wait_for(&offered, expected as usize + 1);
                match select(vec![Event::always(None), c.recv_evt().wrap(Some)]) {
                    Some(k) => {
                        assert_eq!(k, expected);
                        expected += 1;
                    }
                    None => {
                        always_won += 1;
                        yield_now();
                        assert_eq!(sent.load(SeqCst), expected as usize, "sender completed");
                        // Still blocked, still holding the same value.
                        assert_eq!(c.recv_evt().poll(), Some(expected));
                        expected += 1;
                    }
                }
            }
            assert!(
                (300..=700).contains(&always_won),
                "always won {always_won}/1000"
            );
            assert_eq!(expected, 1000);
        })
    });
}

/// `poll (send c v)` with a receiver blocked really delivers `v`; `poll (receive c)` takes a value.
#[test]
fn poll_performs_a_ready_communication() {
    common::watchdog(60, "poll_performs_a_ready_communication", || {
        on_domains(1, || {
            let c: Channel<u64> = Channel::new();
            for round in 0..20 {
                let waiting = counter();
                let (c2, w2) = (c.clone(), waiting.clone());
                let receiver = spawn(move || {
                    w2.store(1, SeqCst);
                    c2.recv_evt().sync()
                });
                wait_for(&waiting, 1);
                assert_eq!(c.send_evt(round).poll(), Some(()));
                assert_eq!(receiver.join().unwrap(), round);

                let waiting = counter();
                let (c2, w2) = (c.clone(), waiting.clone());
                let sender = spawn(move || {
                    w2.store(1, SeqCst);
                    c2.send(round + 100)
                });
                wait_for(&waiting, 1);
                assert_eq!(c.recv_evt().poll(), Some(round + 100));
                sender.join().unwrap();
            }
            assert_eq!(Event::always(3).poll(), Some(3));
        })
    });
}

/// `poll` finding nothing gives `None`, leaves no offer, and runs every `wrap_abort` in reverse.
#[test]
fn poll_that_finds_nothing_leaves_no_offer_and_runs_every_wrap_abort() {
    common::watchdog(60, "poll_that_finds_nothing", || {
        on_domains(2, || {
            let c: Channel<u64> = Channel::new();
            assert_eq!(c.recv_evt().poll(), None);
            assert_eq!(c.send_evt(1).poll(), None);
            // A sender from another task does not find the polled receive.
            let c2 = c.clone();
            let sender = spawn(move || {
                let polled = c2.send_evt(1).poll();
                let timed = select(vec![
                    c2.send_evt(2).wrap(|()| "sent"),
                    after(Duration::from_millis(20)).wrap(|()| "timeout"),
                ]);
                (polled, timed)
            });
            assert_eq!(sender.join().unwrap(), (None, "timeout"));
            // Nor does a receiver find the polled send.
            let c2 = c.clone();
            let receiver = spawn(move || c2.recv_evt().poll());
            assert_eq!(receiver.join().unwrap(), None);

            let log = Log::default();
            let d: Channel<u64> = Channel::new();
            let (l1, l2, l3) = (log.clone(), log.clone(), log.clone());
            let r = choose(vec![
                c.recv_evt().wrap_abort(move || l1.push("a")),
                Event::never().wrap_abort(move || l2.push("b")),
                d.send_evt(3).wrap(|()| 0).wrap_abort(move || l3.push("c")),
            ])
            .poll();
            assert_eq!(r, None);
            assert_eq!(log.take(), ["c", "b", "a"]);
            // A poll that succeeds runs only the other branches' aborts.
            let (l1, l2) = (log.clone(), log.clone());
            let r = choose(vec![
                Event::never().wrap_abort(move || l1.push("never")),
                Event::always(9).wrap_abort(move || l2.push("always")),
            ])
            .poll();
            assert_eq!(r, Some(9));
            assert_eq!(log.take(), ["never"]);
        })
    });
}

/// Wrap functions apply inner first, in the syncing task, also when pushed through a choice.
#[test]
fn wrap_functions_apply_inner_first() {
    common::watchdog(60, "wrap_functions_apply_inner_first", || {
        on_domains(2, || {
            let log = Log::default();
            let (l1, l2) = (log.clone(), log.clone());
            let v = Event::always(2)
                .wrap(move |x| {
                    l1.push("inner");
                    x + 1
                })
                .wrap(move |x| {
                    l2.push("outer");
                    x * 10
                })
                .sync();
            assert_eq!(v, 30);
            assert_eq!(log.take(), ["inner", "outer"]);

            let c: Channel<u64> = Channel::new();
            let c2 = c.clone();
            let sender = spawn(move || c2.send(4));
            let me = bobine::thread::current().id();
            let (l1, l2) = (log.clone(), log.clone());
            let v = choose(vec![
                c.recv_evt().wrap(move |x| {
                    assert_eq!(bobine::thread::current().id(), me, "wrap ran elsewhere");
                    l1.push("leaf");
                    x + 1
                }),
                Event::never(),
            ])
            .wrap(move |x| {
                assert_eq!(bobine::thread::current().id(), me, "wrap ran elsewhere");
                l2.push("choice");
                x * 100
            })
            .sync();
            assert_eq!(v, 500);
            assert_eq!(log.take(), ["leaf", "choice"]);
            sender.join().unwrap();
        })
    });
}

/// Each losing branch's `wrap_abort` runs once, after the wrap, in reverse order of appearance.
#[test]
fn wrap_abort_of_branches_not_chosen_runs_once_in_reverse_order_after_the_wrap() {
    common::watchdog(60, "wrap_abort_of_branches_not_chosen", || {
        on_domains(1, || {
            let log = Log::default();
            let idle: Channel<u64> = Channel::new();
            let l = |name: &'static str| {
                let log = log.clone();
                move || log.push(name)
            };
            let lw = log.clone();
            let v = select(vec![
                Event::never().wrap_abort(l("A")),
                idle.recv_evt().wrap_abort(l("B")),
                Event::always(1)
                    .wrap(move |x| {
                        lw.push("wrap");
                        x
                    })
                    .wrap_abort(l("chosen")),
                Event::never().wrap_abort(l("C")),
            ]);
            assert_eq!(v, 1);
            assert_eq!(log.take(), ["wrap", "C", "B", "A"]);

            // Nested aborts around a losing branch: each once, the inner one first.
            let v = select(vec![
                choose(vec![Event::never().wrap_abort(l("inner")), idle.recv_evt()])
                    .wrap_abort(l("outer")),
                Event::always(2),
            ]);
            assert_eq!(v, 2);
            assert_eq!(log.take(), ["inner", "outer"]);

            // Blocking: the partner arrives after we parked.
            let c: Channel<u64> = Channel::new();
            let c2 = c.clone();
            let sender = spawn(move || c2.send(7));
            let lw = log.clone();
            let v = select(vec![
                idle.recv_evt().wrap_abort(l("idle")),
                c.recv_evt()
                    .wrap(move |x| {
                        lw.push("wrap");
                        x
                    })
                    .wrap_abort(l("chosen")),
                Event::never().wrap_abort(l("never")),
            ]);
            assert_eq!(v, 7);
            assert_eq!(log.take(), ["wrap", "never", "idle"]);
            sender.join().unwrap();
        })
    });
}

/// A `wrap_abort` not under a choice never runs (single send, `always`, one-branch choice, guard).
#[test]
fn wrap_abort_not_under_a_choice_never_runs() {
    common::watchdog(60, "wrap_abort_not_under_a_choice_never_runs", || {
        on_domains(1, || {
            let aborts = counter();
            let a = || {
                let n = aborts.clone();
                move || {
                    n.fetch_add(1, SeqCst);
                }
            };
            let c: Channel<u64> = Channel::new();
            let c2 = c.clone();
            let receiver = spawn(move || c2.recv());
            c.send_evt(1).wrap_abort(a()).sync();
            assert_eq!(receiver.join().unwrap(), 1);
            assert_eq!(Event::always(2).wrap_abort(a()).sync(), 2);
            assert_eq!(choose(vec![Event::always(3).wrap_abort(a())]).sync(), 3);
            let abort = a();
            assert_eq!(guard(move || Event::always(4).wrap_abort(abort)).sync(), 4);
            assert_eq!(Event::always(5).wrap_abort(a()).poll(), Some(5));
            assert_eq!(aborts.load(SeqCst), 0);
        })
    });
}

/// A panic in a wrap escapes `sync` after the communication: the partner has completed.
#[test]
fn a_panic_in_a_wrap_escapes_sync_after_the_communication() {
    common::watchdog(60, "a_panic_in_a_wrap_escapes_sync", || {
        on_domains(1, || {
            let c: Channel<u64> = Channel::new();
            // Our sync is ready at once (the receiver is blocked).
            let waiting = counter();
            let (c2, w2) = (c.clone(), waiting.clone());
            let receiver = spawn(move || {
                w2.store(1, SeqCst);
                c2.recv()
            });
            wait_for(&waiting, 1);
            let c2 = c.clone();
            let msg = panic_text(move || {
                c2.send_evt(5)
                    .wrap(|()| -> u8 { panic!("wrap failed") })
                    .sync()
            });
            assert!(msg.contains("wrap failed"), "{msg}");
            assert_eq!(receiver.join().unwrap(), 5);

            // Our sync blocks first; the sender commits it; the wrap panics with the value.
            let c2 = c.clone();
            let sender = spawn(move || c2.send(9));
            let aborts = counter();
            let (c2, a2) = (c.clone(), aborts.clone());
            let msg = panic_text(move || {
                select(vec![
                    c2.recv_evt().wrap(|v| -> u64 { panic!("got {v}") }),
                    Event::never().wrap_abort(move || {
                        a2.fetch_add(1, SeqCst);
                    }),
                ])
            });
            assert!(msg.contains("got 9"), "{msg}");
            sender.join().unwrap();
            assert_eq!(aborts.load(SeqCst), 1);
        })
    });
}

/// `choose []` and `select []` panic with `Invalid_argument("Event.choose")`, in both faces.
#[test]
fn choose_and_select_of_nothing_panic_invalid_argument() {
    common::watchdog(60, "choose_and_select_of_nothing", || {
        const EXPECTED: &str = "Invalid_argument(\"Event.choose\")";
        on_domains(1, || {
            assert_eq!(panic_text(|| choose::<u32>(vec![])), EXPECTED);
            assert_eq!(panic_text(|| select::<u32>(vec![])), EXPECTED);
            assert_eq!(
                panic_text(|| bobine::ocaml::event::choose::<u32>(vec![])),
                EXPECTED
            );
            assert_eq!(
                panic_text(|| bobine::ocaml::event::select::<u32>(vec![])),
                EXPECTED
            );
        });
        // On a plain thread too.
        assert_eq!(panic_text(|| select::<u32>(vec![])), EXPECTED);
    });
}

/// Increments its counter when dropped.
struct Tracked(u64, Arc<AtomicUsize>);

impl Drop for Tracked {
    fn drop(&mut self) {
        self.1.fetch_add(1, SeqCst);
    }
}

/// Closures, join handles, events, channels and owned values travel, each dropped exactly once.
#[test]
fn values_of_any_send_type_travel() {
    common::watchdog(60, "values_of_any_send_type_travel", || {
        on_domains(2, || {
            type Job = Box<dyn FnOnce(u64) -> u64 + Send>;
            let jobs: Channel<Job> = Channel::new();
            let j2 = jobs.clone();
            let worker = spawn(move || (0..10).map(|i| (j2.recv())(i)).sum::<u64>());
            for k in 0..10 {
                jobs.send(Box::new(move |i| i * k));
            }
            assert_eq!(worker.join().unwrap(), (0..10).map(|i| i * i).sum());

            let handles: Channel<bobine::thread::JoinHandle<u64>> = Channel::new();
            let h2 = handles.clone();
            let joiner = spawn(move || h2.recv().join().unwrap());
            handles.send(spawn(|| 41 + 1));
            assert_eq!(joiner.join().unwrap(), 42);

            let events: Channel<Event<u64>> = Channel::new();
            let replies: Channel<u64> = Channel::new();
            let (e2, r2) = (events.clone(), replies.clone());
            let syncer = spawn(move || e2.recv().sync() + e2.recv().sync());
            events.send(Event::always(10).wrap(|x| x + 1));
            events.send(r2.recv_evt());
            replies.send(100);
            assert_eq!(syncer.join().unwrap(), 111);

            let chans: Channel<Channel<u64>> = Channel::new();
            let ch2 = chans.clone();
            let server = spawn(move || ch2.recv().send(7));
            let reply = Channel::new();
            chans.send(reply.clone());
            assert_eq!(reply.recv(), 7);
            server.join().unwrap();

            let drops = counter();
            let owned: Channel<Tracked> = Channel::new();
            let o2 = owned.clone();
            let sink = spawn(move || (0..100).map(|_| o2.recv().0).sum::<u64>());
            for i in 0..100 {
                owned.send_evt(Tracked(i, drops.clone())).sync();
            }
            assert_eq!(sink.join().unwrap(), (0..100).sum());
            assert_eq!(drops.load(SeqCst), 100);
            // A send that loses its choice: its value is dropped, once.
            let v = select(vec![
                owned.send_evt(Tracked(0, drops.clone())).wrap(|()| "sent"),
                Event::always("always"),
            ]);
            assert_eq!(v, "always");
            assert_eq!(drops.load(SeqCst), 101);
        })
    });
}

/// A task blocked in a sync when its runtime ends leaves no live offer, and its unsent values drop.
#[test]
fn a_sync_dropped_with_its_runtime_leaves_no_live_offer() {
    // `bobine::run`'s doc: when its closure returns, the tasks still blocked are dropped (unwound).
    // A channel may outlive the runtime (shared with plain threads or another runtime): a send
    // must not be lost into a dropped receiver, nor a dropped sender's value be received.
    common::watchdog(60, "a_sync_dropped_with_its_runtime", || {
        for shorthand in [true, false] {
            let drops = counter();
            let receives: Channel<Tracked> = Channel::new();
            let sends: Channel<Tracked> = Channel::new();
            let (r, s, d) = (receives.clone(), sends.clone(), drops.clone());
            on_domains(1, move || {
                let blocked = counter();
                let b2 = blocked.clone();
                spawn(move || {
                    b2.fetch_add(1, SeqCst);
                    if shorthand {
                        r.recv()
                    } else {
                        select(vec![r.recv_evt(), Channel::new().recv_evt()])
                    }
                });
                let b2 = blocked.clone();
                spawn(move || {
                    b2.fetch_add(1, SeqCst);
                    if shorthand {
                        s.send(Tracked(1, d.clone()));
                    } else {
                        select(vec![
                            s.send_evt(Tracked(1, d.clone())),
                            Channel::new().send_evt(Tracked(2, d.clone())),
                        ]);
                    }
                });
                wait_for(&blocked, 2);
            });
            // (values dropped by the end of run, a send to the dropped receiver, a receive
            // from the dropped sender, values dropped in the end)
            let dropped_by_run = drops.load(SeqCst);
            let sent = receives.send_evt(Tracked(3, drops.clone())).poll();
            let received = sends.recv_evt().poll().map(|t| t.0);
            let unsent = if shorthand { 1 } else { 2 };
            assert_eq!(
                (dropped_by_run, sent, received, drops.load(SeqCst)),
                (unsent, None, None, unsent + 1),
                "{}: offers of dropped tasks still live",
                if shorthand { "send/recv" } else { "select" }
            );
        }
    });
}

/// `after d` counts from the start of each sync: built, left 120 ms, `after 50 ms` waits >= 50 ms.
#[test]
fn after_counts_from_the_start_of_each_sync() {
    common::watchdog(60, "after_counts_from_the_start_of_each_sync", || {
        on_domains(1, || {
            let ev = after(Duration::from_millis(50));
            bobine::thread::sleep(Duration::from_millis(120));
            let t0 = Instant::now();
            ev.sync();
            assert!(
                t0.elapsed() >= Duration::from_millis(50),
                "{:?}",
                t0.elapsed()
            );

            let idle: Channel<u64> = Channel::new();
            let ev = choose(vec![
                after(Duration::from_millis(30)).wrap(|()| 1),
                idle.recv_evt(),
            ]);
            bobine::thread::sleep(Duration::from_millis(60));
            let t0 = Instant::now();
            assert_eq!(ev.sync(), 1);
            assert!(
                t0.elapsed() >= Duration::from_millis(30),
                "{:?}",
                t0.elapsed()
            );

            assert_eq!(after(Duration::ZERO).poll(), Some(()));
            assert_eq!(after(Duration::from_secs(3600)).poll(), None);
        })
    });
}

/// `at t` with `t` passed is ready at once; a future `at t` fires no earlier than `t`.
#[test]
fn at_a_time_in_the_past_is_ready_at_once() {
    common::watchdog(60, "at_a_time_in_the_past_is_ready_at_once", || {
        on_domains(1, || {
            let past = Instant::now();
            bobine::thread::sleep(Duration::from_millis(2));
            assert_eq!(at(past).poll(), Some(()));
            let idle: Channel<u64> = Channel::new();
            assert_eq!(select(vec![idle.recv_evt(), at(past).wrap(|()| 3)]), 3);
            let future = Instant::now() + Duration::from_millis(30);
            assert_eq!(at(future + Duration::from_secs(3600)).poll(), None);
            at(future).sync();
            assert!(Instant::now() >= future);
        })
    });
}

/// `join h` is not ready while the task runs and is ready once it ends (task, plain thread, poll).
#[test]
fn join_is_ready_when_the_task_ends() {
    common::watchdog(60, "join_is_ready_when_the_task_ends", || {
        on_domains(2, || {
            let gate: Channel<u64> = Channel::new();
            let g2 = gate.clone();
            let h = spawn(move || g2.recv() * 2);
            assert_eq!(event::join(&h).poll(), None);
            let first = select(vec![
                event::join(&h).wrap(|()| "joined"),
                after(Duration::from_millis(20)).wrap(|()| "timeout"),
            ]);
            assert_eq!(first, "timeout");
            assert!(!h.is_finished());
            gate.send(21);
            event::join(&h).sync();
            assert!(h.is_finished());
            assert_eq!(event::join(&h).poll(), Some(()));
            assert_eq!(h.join().unwrap(), 42);

            // A plain thread waits on the join event of a task.
            let g2 = gate.clone();
            let h = spawn(move || g2.recv());
            let (tx, rx) = std::sync::mpsc::channel();
            let os = std::thread::spawn(move || {
                event::join(&h).sync();
                tx.send(h.is_finished()).unwrap();
                h.join().unwrap()
            });
            gate.send(5);
            assert_eq!(os.join().unwrap(), 5);
            assert!(rx.recv().unwrap());
        })
    });
}

/// A shared slot where a `with_nack` function leaves its nack event.
type NackSlot = Arc<Mutex<Option<Event<()>>>>;

/// `with_nack` whose function stores its nack and returns `inner`.
fn nacked<T: 'static>(slot: &NackSlot, inner: Event<T>) -> Event<T> {
    let slot = slot.clone();
    with_nack(move |nack| {
        *slot.lock().unwrap() = Some(nack);
        inner
    })
}

fn nack_of(slot: &NackSlot) -> Event<()> {
    slot.lock()
        .unwrap()
        .take()
        .expect("the with_nack function ran")
}

/// The nack fires when the sync commits to another branch, and wakes a task blocked on it.
#[test]
fn with_nack_fires_when_the_sync_commits_elsewhere() {
    common::watchdog(
        60,
        "with_nack_fires_when_the_sync_commits_elsewhere",
        || {
            on_domains(2, || {
                let idle: Channel<u64> = Channel::new();
                let slot = NackSlot::default();
                let v = select(vec![nacked(&slot, idle.recv_evt()), Event::always(7)]);
                assert_eq!(v, 7);
                assert_eq!(nack_of(&slot).poll(), Some(()));

                // Blocking, with a watcher task waiting on the nack since the guard ran.
                let fired = counter();
                for round in 0..50 {
                    let c: Channel<u64> = Channel::new();
                    let watchers = Arc::new(Mutex::new(Vec::new()));
                    let (f2, w2, idle2) = (fired.clone(), watchers.clone(), idle.clone());
                    let ev = with_nack(move |nack| {
                        w2.lock().unwrap().push(spawn(move || {
                            nack.sync();
                            f2.fetch_add(1, SeqCst);
                        }));
                        idle2.recv_evt()
                    });
                    let c2 = c.clone();
                    let sender = spawn(move || c2.send(round));
                    assert_eq!(select(vec![ev, c.recv_evt()]), round);
                    sender.join().unwrap();
                    for w in watchers.lock().unwrap().drain(..) {
                        w.join().unwrap();
                    }
                    assert_eq!(fired.load(SeqCst), round as usize + 1);
                }
            })
        },
    );
}

/// The nack fires when `poll` finds nothing ready.
#[test]
fn with_nack_fires_when_poll_gives_none() {
    common::watchdog(60, "with_nack_fires_when_poll_gives_none", || {
        on_domains(1, || {
            let idle: Channel<u64> = Channel::new();
            let slot = NackSlot::default();
            assert_eq!(
                choose(vec![nacked(&slot, idle.recv_evt()), Event::never()]).poll(),
                None
            );
            assert_eq!(nack_of(&slot).poll(), Some(()));
        })
    });
}

/// The nack fires when the sync is abandoned because a later guard panics.
#[test]
fn with_nack_fires_when_a_later_guard_panics() {
    common::watchdog(60, "with_nack_fires_when_a_later_guard_panics", || {
        on_domains(1, || {
            let slot = NackSlot::default();
            let s2 = slot.clone();
            let msg = panic_text(move || {
                select(vec![
                    nacked(&s2, Event::always(1)),
                    guard(|| -> Event<u32> { panic!("late guard") }),
                ])
            });
            assert!(msg.contains("late guard"), "{msg}");
            assert_eq!(nack_of(&slot).poll(), Some(()));
        })
    });
}

/// The nack does not fire when its own branch (or one nested in its group) is chosen.
#[test]
fn with_nack_does_not_fire_when_its_branch_is_chosen() {
    common::watchdog(
        60,
        "with_nack_does_not_fire_when_its_branch_is_chosen",
        || {
            on_domains(2, || {
                let slot = NackSlot::default();
                let v = select(vec![nacked(&slot, Event::always(1)), Event::never()]);
                assert_eq!(v, 1);
                assert_eq!(nack_of(&slot).poll(), None);

                let (c, idle): (Channel<u64>, Channel<u64>) = (Channel::new(), Channel::new());
                let c2 = c.clone();
                let sender = spawn(move || c2.send(3));
                // Nested groups around the chosen leaf: neither fires; the losing one does.
                let outer = NackSlot::default();
                let losing = NackSlot::default();
                let v = select(vec![
                    nacked(
                        &outer,
                        choose(vec![nacked(&slot, c.recv_evt()), Event::never()]),
                    ),
                    nacked(&losing, idle.recv_evt()),
                ]);
                assert_eq!(v, 3);
                sender.join().unwrap();
                assert_eq!(nack_of(&losing).poll(), Some(()));
                for s in [&slot, &outer] {
                    let watcher_saw = select(vec![
                        nack_of(s).wrap(|()| "fired"),
                        after(Duration::from_millis(20)).wrap(|()| "timeout"),
                    ]);
                    assert_eq!(watcher_saw, "timeout");
                }
            })
        },
    );
}

/// The OCaml face (`new_channel` ... `poll`, with OCaml threads) behaves the same.
#[test]
fn ocaml_face_names_work_the_same() {
    use bobine::ocaml::event as ev;
    use bobine::ocaml::thread;
    common::watchdog(60, "ocaml_face_names_work_the_same", || {
        on_domains(2, || {
            let c = ev::new_channel::<&'static str>();
            let t = thread::create(move |c| ev::sync(ev::send(&c, "hello")), c.clone());
            assert_eq!(ev::sync(ev::receive(&c)), "hello");
            thread::join(&t);

            let d = ev::new_channel::<u64>();
            assert_eq!(ev::poll(ev::receive(&d)), None);
            assert_eq!(ev::poll(ev::send(&d, 1)), None);
            let aborts = counter();
            let guards = counter();
            let (a2, g2) = (aborts.clone(), guards.clone());
            let v = ev::select(vec![
                ev::wrap_abort(ev::wrap(ev::receive(&d), |x| x + 1), move || {
                    a2.fetch_add(1, SeqCst);
                }),
                ev::guard(move || {
                    g2.fetch_add(1, SeqCst);
                    ev::wrap(ev::always(5), |x| x * 2)
                }),
            ]);
            assert_eq!(v, 10);
            assert_eq!((aborts.load(SeqCst), guards.load(SeqCst)), (1, 1));

            // Two OCaml threads on `choose [send; receive]` pair up.
            let results = Arc::new(Mutex::new(Vec::new()));
            let ts: Vec<_> = (1..=2u64)
                .map(|id| {
                    let (d, r) = (d.clone(), results.clone());
                    thread::create(
                        move |()| {
                            let way = ev::sync(ev::choose(vec![
                                ev::wrap(ev::send(&d, id), |()| Way::Sent),
                                ev::wrap(ev::receive(&d), Way::Received),
                            ]));
                            r.lock().unwrap().push((id, way));
                        },
                        (),
                    )
                })
                .collect();
            ts.iter().for_each(thread::join);
            let mut got = results.lock().unwrap().clone();
            got.sort_by_key(|&(id, _)| id);
            assert!(
                got == [(1, Way::Sent), (2, Way::Received(1))]
                    || got == [(1, Way::Received(2)), (2, Way::Sent)],
                "{got:?}"
            );
            assert_eq!(ev::poll(ev::always(4)), Some(4));
        })
    });
}
