//! The rest of `std::thread` in `bobine::thread`: `park`/`park_timeout`/`Thread::unpark` with
//! std's token, `available_parallelism`, thread names with a NUL, and a `JoinHandle` awaited
//! as a future. Each runs in tasks (one and two domains) and, where the API is usable there, on
//! plain threads outside any runtime. `task_local!` has its own file, `task_local.rs`.

mod common;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use bobine::diag::TaskState;
use bobine::thread;
use common::panics::{panic_text, payload_text};
use common::tasks::{DropCounter, in_task_and_thread, spawn_ticker, with_domains};

const HOUR: Duration = Duration::from_secs(3600);

// ---------------------------------------------------------------------------------------------
// park / park_timeout / unpark
// ---------------------------------------------------------------------------------------------

/// A token given before `park` is taken at once, and tokens do not add up: two `unpark`s let
/// one `park` through, and the next `park_timeout` waits out its whole timeout.
#[test]
fn one_token_at_most_taken_at_once() {
    common::watchdog(30, "one_token_at_most_taken_at_once", || {
        in_task_and_thread(|wh| {
            let me = thread::current();
            me.unpark();
            me.unpark();
            thread::park(); // the token is there: returns at once
            let t0 = Instant::now();
            thread::park_timeout(Duration::from_millis(40));
            assert!(
                t0.elapsed() >= Duration::from_millis(40),
                "{wh}: a second token appeared"
            );
        });
    });
}

/// `park_timeout` with no token returns after its timeout, not before; a zero timeout returns.
#[test]
fn park_timeout_without_token_returns_after_the_timeout() {
    common::watchdog(30, "park_timeout_without_token", || {
        in_task_and_thread(|wh| {
            thread::park_timeout(Duration::ZERO);
            let t0 = Instant::now();
            thread::park_timeout(Duration::from_millis(30));
            let waited = t0.elapsed();
            assert!(waited >= Duration::from_millis(30), "{wh}: woke early");
            assert!(waited < Duration::from_secs(10), "{wh}: never woke");
        });
    });
}

/// A parked task is woken by `unpark` from a plain OS thread, from another task of its domain,
/// and from a task of another domain; `park` returns only once the token was given (no
/// spurious returns), which each waker records before unparking.
#[test]
fn unpark_wakes_a_parked_task_from_anywhere() {
    common::watchdog(30, "unpark_wakes_a_parked_task_from_anywhere", || {
        with_domains(2, |d| {
            for from in ["plain thread", "same domain", "other domain"] {
                let given = Arc::new(AtomicBool::new(false));
                let g = given.clone();
                let parked = d.spawn_on(0, move || {
                    thread::park();
                    g.load(Ordering::SeqCst)
                });
                // Let it park first (a token given earlier would also be correct, but this
                // exercises the wake of a parked task).
                thread::sleep(Duration::from_millis(10));
                let who = parked.thread().clone();
                let g = given.clone();
                let wake = move || {
                    g.store(true, Ordering::SeqCst);
                    who.unpark();
                };
                match from {
                    "plain thread" => std::thread::spawn(wake).join().unwrap(),
                    "same domain" => d.spawn_on(0, wake).join().unwrap(),
                    _ => d.spawn_on(1, wake).join().unwrap(),
                }
                assert!(parked.join().unwrap(), "woken from {from} before the token");
            }
        });
    });
}

/// A plain OS thread parked in `bobine::thread::park` is woken by a task's `unpark`.
#[test]
fn unpark_wakes_a_plain_thread_from_a_task() {
    common::watchdog(30, "unpark_wakes_a_plain_thread_from_a_task", || {
        let given = Arc::new(AtomicBool::new(false));
        let g = given.clone();
        let t = std::thread::spawn(move || {
            let me = thread::current();
            let waker = thread::spawn(move || {
                thread::sleep(Duration::from_millis(10));
                g.store(true, Ordering::SeqCst);
                me.unpark();
            });
            thread::park();
            waker.join().unwrap();
        });
        t.join().unwrap();
        assert!(given.load(Ordering::SeqCst));
    });
}

/// Two parties hand a turn back and forth 2 000 times with park/unpark only, across two
/// domains and between a task and a plain thread: every turn arrives, none is lost. Played
/// twice: with the classic `while !flag { park() }` loop, and strictly (one `park` per turn,
/// one `unpark` per turn, made after the turn is handed over), where a `park` that returned
/// without the token would see the other party's turn.
#[test]
fn park_unpark_ping_pong_loses_no_wake_up() {
    common::watchdog(60, "park_unpark_ping_pong_loses_no_wake_up", || {
        const ROUNDS: usize = 2_000;
        fn play(turn: Arc<AtomicUsize>, me: usize, peer: thread::Thread, strict: bool) -> usize {
            if strict && me == 0 {
                thread::current().unpark(); // the first turn's token
            }
            let mut played = 0;
            while played < ROUNDS {
                if strict {
                    thread::park();
                    let now = turn.load(Ordering::SeqCst);
                    assert_eq!(now % 2, me, "park returned without the token (turn {now})");
                } else {
                    while turn.load(Ordering::SeqCst) % 2 != me {
                        thread::park();
                    }
                }
                played += 1;
                turn.fetch_add(1, Ordering::SeqCst);
                peer.unpark();
            }
            played
        }
        for (plain_peer, strict) in [(false, false), (true, false), (false, true), (true, true)] {
            bobine::Builder::new().domains(2).run(|| {
                let turn = Arc::new(AtomicUsize::new(0));
                let (tx, rx) = bobine::sync::mpsc::channel::<thread::Thread>();
                let t2 = turn.clone();
                let one = thread::spawn(move || {
                    let peer = rx.recv().unwrap();
                    play(t2, 1, peer, strict)
                });
                let me = if plain_peer {
                    let one_thread = one.thread().clone();
                    let t0 = turn.clone();
                    let (mtx, mrx) = std::sync::mpsc::channel();
                    let h = std::thread::spawn(move || {
                        mtx.send(thread::current()).unwrap();
                        play(t0, 0, one_thread, strict)
                    });
                    tx.send(mrx.recv().unwrap()).unwrap();
                    assert_eq!(bobine::io::unblock(move || h.join().unwrap()), ROUNDS);
                    None
                } else {
                    tx.send(thread::current()).unwrap();
                    Some(play(turn.clone(), 0, one.thread().clone(), strict))
                };
                assert_eq!(one.join().unwrap(), ROUNDS);
                if let Some(n) = me {
                    assert_eq!(n, ROUNDS);
                }
                assert_eq!(turn.load(Ordering::SeqCst), 2 * ROUNDS);
            });
        }
    });
}

/// A body to run on a task or a plain thread.
type Job = Box<dyn FnOnce() + Send>;

/// `unpark` does not end an unrelated wait (a `Mutex::lock`), and that wait's own wake-up does
/// not take the token: once the lock is handed over, `park` finds the token and returns.
#[test]
fn unpark_leaves_other_waits_alone_and_they_keep_the_token() {
    common::watchdog(30, "unpark_leaves_other_waits_alone", || {
        fn body(lock: Arc<bobine::sync::Mutex<u32>>, spawn: fn(Job) -> Box<dyn FnOnce()>) {
            let held = lock.lock().unwrap();
            let l2 = lock.clone();
            let got = Arc::new(AtomicBool::new(false));
            let g2 = got.clone();
            let (tx, rx) = std::sync::mpsc::channel();
            let join = spawn(Box::new(move || {
                tx.send(thread::current()).unwrap();
                *l2.lock().unwrap() += 1;
                g2.store(true, Ordering::SeqCst);
                thread::park(); // the token given while it waited for the lock
            }));
            let waiter = rx.recv().unwrap();
            thread::sleep(Duration::from_millis(20));
            waiter.unpark();
            thread::sleep(Duration::from_millis(20));
            assert!(!got.load(Ordering::SeqCst), "unpark ended a Mutex::lock");
            drop(held);
            join();
            assert!(got.load(Ordering::SeqCst));
            assert_eq!(*lock.lock().unwrap(), 1);
        }
        // A task waiting on the lock, on a two-domain runtime.
        bobine::Builder::new().domains(2).run(|| {
            body(Arc::new(bobine::sync::Mutex::new(0)), |f| {
                let h = thread::spawn(f);
                Box::new(move || h.join().unwrap())
            })
        });
        // A plain thread waiting on the lock (its wait sleeps in std's park underneath).
        body(Arc::new(bobine::sync::Mutex::new(0)), |f| {
            let h = std::thread::spawn(f);
            Box::new(move || h.join().unwrap())
        });
    });
}

/// While one task is parked in `park`, the other tasks of its single domain keep running.
#[test]
fn domain_runs_other_tasks_while_one_parks() {
    common::watchdog(30, "domain_runs_other_tasks_while_one_parks", || {
        bobine::Builder::new().domains(1).run(|| {
            let ticks = Arc::new(AtomicUsize::new(0));
            let stop = Arc::new(AtomicBool::new(false));
            let ticker = spawn_ticker(ticks.clone(), stop.clone());
            let t = ticks.clone();
            let parked = thread::spawn(move || {
                let before = t.load(Ordering::SeqCst);
                thread::park();
                t.load(Ordering::SeqCst) - before
            });
            thread::sleep(Duration::from_millis(50));
            parked.thread().unpark();
            let ticked = parked.join().unwrap();
            stop.store(true, Ordering::SeqCst);
            ticker.join().unwrap();
            assert!(ticked > 0, "the ticker did not run while a task was parked");
        });
    });
}

/// A task cancelled while in `park` unwinds from there (its destructors run) and joins as
/// `TaskCancelled`; one in `park_timeout` too.
#[test]
fn cancelled_task_unwinds_from_park() {
    common::watchdog(30, "cancelled_task_unwinds_from_park", || {
        bobine::Builder::new().domains(2).run(|| {
            let drops = Arc::new(AtomicUsize::new(0));
            let d1 = DropCounter(drops.clone());
            let a = thread::spawn(move || {
                let _d = d1;
                thread::park();
            });
            let d2 = DropCounter(drops.clone());
            let b = thread::spawn(move || {
                let _d = d2;
                thread::park_timeout(HOUR);
            });
            thread::sleep(Duration::from_millis(20));
            a.cancel();
            b.cancel();
            assert!(a.join().unwrap_err().is::<bobine::TaskCancelled>());
            assert!(b.join().unwrap_err().is::<bobine::TaskCancelled>());
            assert_eq!(drops.load(Ordering::SeqCst), 2);
        });
    });
}

/// The task dump names a task parked in `park` with the reason `"thread::park"`.
#[test]
fn dump_shows_thread_park_as_the_reason() {
    common::watchdog(30, "dump_shows_thread_park_as_the_reason", || {
        bobine::run(|| {
            let h = thread::Builder::new()
                .name("parker-in-dump".into())
                .spawn(thread::park)
                .unwrap();
            // Until it has parked (it may not have run yet on a loaded machine).
            let mut reason = None;
            for _ in 0..1000 {
                thread::sleep(Duration::from_millis(2));
                let dump = bobine::diag::dump();
                let info = dump
                    .tasks()
                    .iter()
                    .find(|t| t.name() == Some("parker-in-dump"))
                    .expect("the task is in the dump");
                if info.state() == TaskState::Parked {
                    reason = info.reason().map(str::to_owned);
                    break;
                }
            }
            assert_eq!(reason.as_deref(), Some("thread::park"));
            h.thread().unpark();
            h.join().unwrap();
        });
    });
}

// ---------------------------------------------------------------------------------------------
// available_parallelism
// ---------------------------------------------------------------------------------------------

/// Inside a runtime it is the runtime's number of domains, in every task; outside, std's answer.
#[test]
fn available_parallelism_is_the_domain_count_inside_and_std_outside() {
    common::watchdog(30, "available_parallelism", || {
        for n in [1, 3] {
            let (main, child) = bobine::Builder::new().domains(n).run(|| {
                let main = thread::available_parallelism().unwrap().get();
                let child = thread::spawn(|| thread::available_parallelism().unwrap().get());
                (main, child.join().unwrap())
            });
            assert_eq!((main, child), (n, n));
        }
        let plain = std::thread::spawn(thread::available_parallelism)
            .join()
            .unwrap()
            .unwrap();
        assert_eq!(plain, std::thread::available_parallelism().unwrap());
    });
}

// ---------------------------------------------------------------------------------------------
// names with a NUL
// ---------------------------------------------------------------------------------------------

/// A name with an interior NUL makes `spawn` and `spawn_scoped` panic with std's very message,
/// in a task and on a plain thread.
#[test]
fn interior_nul_name_panics_as_std_does() {
    common::watchdog(30, "interior_nul_name_panics_as_std_does", || {
        in_task_and_thread(|wh| {
            let name = || String::from("a\0b");
            let std_spawn = panic_text(|| std::thread::Builder::new().name(name()).spawn(|| ()));
            let std_scoped = panic_text(|| {
                std::thread::scope(|s| {
                    std::thread::Builder::new()
                        .name(name())
                        .spawn_scoped(s, || ())
                        .map(drop)
                })
            });
            let ours = panic_text(|| thread::Builder::new().name(name()).spawn(|| ()));
            let scoped = panic_text(|| {
                thread::scope(|s| {
                    thread::Builder::new()
                        .name(name())
                        .spawn_scoped(s, || ())
                        .map(drop)
                })
            });
            assert!(std_spawn.contains("interior null"), "{std_spawn}");
            assert_eq!(ours, std_spawn, "{wh}");
            assert_eq!(scoped, std_scoped, "{wh}");
        });
    });
}

// ---------------------------------------------------------------------------------------------
// JoinHandle as a future
// ---------------------------------------------------------------------------------------------

/// A waker that counts its wake-ups.
struct CountingWaker(AtomicUsize);

impl Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn counting_waker() -> (Arc<CountingWaker>, Waker) {
    let c = Arc::new(CountingWaker(AtomicUsize::new(0)));
    (c.clone(), Waker::from(c))
}

/// `block_on(handle)` gives the task's value, in a task (one and two domains) and on a plain
/// thread (the task then runs on the global runtime).
#[test]
fn block_on_a_join_handle_gives_the_value() {
    common::watchdog(30, "block_on_a_join_handle_gives_the_value", || {
        for domains in [1, 2] {
            let v = bobine::Builder::new().domains(domains).run(|| {
                let h = thread::spawn(|| {
                    thread::sleep(Duration::from_millis(10));
                    6 * 7
                });
                bobine::block_on(h).unwrap()
            });
            assert_eq!(v, 42);
        }
        let v = std::thread::spawn(|| {
            let h = thread::spawn(|| {
                thread::sleep(Duration::from_millis(10));
                String::from("from the global runtime")
            });
            bobine::block_on(h).unwrap()
        })
        .join()
        .unwrap();
        assert_eq!(v, "from the global runtime");
    });
}

/// A tokio current-thread runtime on a plain thread awaits bobine tasks (one finished before
/// the first poll, one still running), and `join!`s two at once.
#[test]
fn tokio_awaits_bobine_tasks() {
    common::watchdog(30, "tokio_awaits_bobine_tasks", || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let quick = thread::spawn(|| 1u32);
        while !quick.is_finished() {
            std::thread::sleep(Duration::from_millis(1));
        }
        let (a, b, c) = rt.block_on(async move {
            let slow = thread::spawn(|| {
                thread::sleep(Duration::from_millis(30));
                2u32
            });
            let slower = thread::spawn(|| {
                thread::sleep(Duration::from_millis(60));
                3u32
            });
            let a = quick.await.unwrap();
            let (b, c) = tokio::join!(slow, slower);
            (a, b.unwrap(), c.unwrap())
        });
        assert_eq!((a, b, c), (1, 2, 3));
    });
}

/// Awaiting a task that panicked gives `Err` with its payload; awaiting a cancelled one gives
/// `Err(TaskCancelled)`.
#[test]
fn awaited_panic_and_cancellation_are_errors() {
    common::watchdog(30, "awaited_panic_and_cancellation_are_errors", || {
        bobine::Builder::new().domains(2).run(|| {
            let h = thread::spawn(|| -> u8 { panic!("awaited boom") });
            let err = bobine::block_on(h).unwrap_err();
            assert_eq!(payload_text(&*err), "awaited boom");
            let h = thread::spawn(|| thread::sleep(HOUR));
            h.cancel();
            let err = bobine::block_on(h).unwrap_err();
            assert!(err.is::<bobine::TaskCancelled>());
        });
    });
}

/// The task's end wakes the waker of the latest poll, exactly once; an earlier poll's waker is
/// replaced and never woken. Polling after `Ready` panics.
#[test]
fn the_latest_waker_is_woken_once_and_a_spent_handle_panics() {
    common::watchdog(30, "the_latest_waker_is_woken_once", || {
        bobine::run(|| {
            let (go_tx, go_rx) = bobine::sync::mpsc::channel::<()>();
            let mut h = thread::spawn(move || {
                go_rx.recv().unwrap();
                5u8
            });
            let (first, w1) = counting_waker();
            let (second, w2) = counting_waker();
            assert!(
                Pin::new(&mut h)
                    .poll(&mut Context::from_waker(&w1))
                    .is_pending()
            );
            assert!(
                Pin::new(&mut h)
                    .poll(&mut Context::from_waker(&w2))
                    .is_pending()
            );
            go_tx.send(()).unwrap();
            for _ in 0..1000 {
                if second.0.load(Ordering::SeqCst) > 0 {
                    break;
                }
                thread::sleep(Duration::from_millis(1));
            }
            assert_eq!(second.0.load(Ordering::SeqCst), 1);
            assert_eq!(first.0.load(Ordering::SeqCst), 0);
            let out = Pin::new(&mut h).poll(&mut Context::from_waker(&w2));
            assert!(matches!(out, Poll::Ready(Ok(5))));
            let text = panic_text(|| Pin::new(&mut h).poll(&mut Context::from_waker(&w2)));
            assert_eq!(text, "JoinHandle polled after completion");
            drop(h);
            thread::sleep(Duration::from_millis(5));
            assert_eq!(second.0.load(Ordering::SeqCst), 1, "woken more than once");
        });
    });
}

/// Dropping a pending handle detaches the task, as dropping an unpolled one does: the task
/// runs to its end and its value is dropped; its withdrawn waker is never woken.
#[test]
fn dropping_a_pending_handle_detaches_the_task() {
    common::watchdog(30, "dropping_a_pending_handle_detaches_the_task", || {
        bobine::run(|| {
            let drops = Arc::new(AtomicUsize::new(0));
            let d = drops.clone();
            let (go_tx, go_rx) = bobine::sync::mpsc::channel::<()>();
            let (done_tx, done_rx) = bobine::sync::mpsc::channel::<()>();
            let mut h = thread::spawn(move || {
                go_rx.recv().unwrap();
                let _ = done_tx.send(());
                DropCounter(d)
            });
            let (woken, w) = counting_waker();
            assert!(
                Pin::new(&mut h)
                    .poll(&mut Context::from_waker(&w))
                    .is_pending()
            );
            drop(h);
            go_tx.send(()).unwrap();
            done_rx.recv().unwrap();
            for _ in 0..1000 {
                if drops.load(Ordering::SeqCst) > 0 {
                    break;
                }
                thread::sleep(Duration::from_millis(1));
            }
            assert_eq!(
                drops.load(Ordering::SeqCst),
                1,
                "the detached value was not dropped"
            );
            assert_eq!(woken.0.load(Ordering::SeqCst), 0);
        });
    });
}
