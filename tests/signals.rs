//! `bobine::event::signal`: a sync is woken when the process receives the signal during it,
//! in tasks on any domain and on plain threads, alone or in a `select`; deliveries before the
//! sync do not count; the process's own disposition of the signal is back once no sync
//! catches it.
//!
//! A signal belongs to the whole process, and the harness runs these tests on parallel threads
//! of one process: each test raises and watches signals no other test uses (SIGUSR1, SIGUSR2,
//! `SIGRTMIN + k`), and first installs a handler of its own that counts deliveries, so that a
//! delivery no sync catches is counted instead of ending the process (the default action).
//!
//! A test knows that a sync catches its signal when a guard placed after the signal leaf has
//! run ([`caught`]): flattening goes left to right and the leaf's watch starts when flattening
//! reaches it. Signals are sent to the process (`kill(getpid(), sig)`), so any thread may take
//! them.

mod common;

use std::collections::HashSet;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use bobine::event::{Channel, Event, after, choose, guard, readable, select, signal};
use bobine::sync::mpsc::{self, Sender};
use bobine::thread;
use common::panics::panic_text;
use common::tasks::{on_domains, spawn_ticker};

/// `SIGRTMIN + k`: the signals of the tests below, one set per test.
fn rt(k: i32) -> i32 {
    libc::SIGRTMIN() + k
}

/// Deliveries to the tests' own handler, per signal number.
static FALLBACK: [AtomicU64; 65] = [const { AtomicU64::new(0) }; 65];

extern "C" fn count_fallback(sig: libc::c_int) {
    FALLBACK[sig as usize].fetch_add(1, SeqCst);
}

/// Makes the tests' counting handler `sig`'s disposition (what bobine must give back).
fn fallback(sig: i32) {
    // SAFETY: a zeroed sigaction is plain data; the handler only touches an atomic.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = count_fallback as extern "C" fn(libc::c_int) as usize;
        action.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut action.sa_mask);
        assert_eq!(libc::sigaction(sig, &action, std::ptr::null_mut()), 0);
    }
}

fn fallbacks(sig: i32) -> u64 {
    FALLBACK[sig as usize].load(SeqCst)
}

/// Whether the tests' counting handler is `sig`'s disposition right now.
fn fallback_installed(sig: i32) -> bool {
    // SAFETY: a query (null new action) into a zeroed, valid out-pointer.
    unsafe {
        let mut current: libc::sigaction = std::mem::zeroed();
        assert_eq!(libc::sigaction(sig, std::ptr::null(), &mut current), 0);
        current.sa_sigaction == count_fallback as extern "C" fn(libc::c_int) as usize
    }
}

/// Waits until the tests' handler has counted `n` deliveries of `sig` (the watchdog ends a
/// wait that never does).
fn wait_fallbacks(sig: i32, n: u64) {
    while fallbacks(sig) < n {
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Sends `sig` to the process.
fn kill(sig: i32) {
    // SAFETY: kill(2) has no memory-safety preconditions.
    assert_eq!(unsafe { libc::kill(libc::getpid(), sig) }, 0);
}

/// `signal(sig)`, telling `armed` once the sync catches `sig`: the guard after the leaf runs
/// when the leaf's watch is in place.
fn caught(sig: i32, armed: Sender<()>) -> Event<()> {
    choose(vec![
        signal(sig),
        guard(move || {
            let _ = armed.send(());
            Event::never()
        }),
    ])
}

/// A task waiting for a signal is woken when the process receives it, while the other tasks
/// of its (only) domain keep running.
#[test]
fn a_task_waiting_for_a_signal_is_woken_and_its_domain_runs_others() {
    common::watchdog(30, "a_task_waiting_for_a_signal_is_woken", || {
        let sig = libc::SIGUSR1;
        fallback(sig);
        on_domains(1, || {
            let (armed_tx, armed) = mpsc::channel();
            let waiter = thread::spawn(move || caught(sig, armed_tx).sync());
            armed.recv().unwrap();
            let (ticks, stop) = (
                Arc::new(AtomicUsize::new(0)),
                Arc::new(AtomicBool::new(false)),
            );
            let ticker = spawn_ticker(ticks.clone(), stop.clone());
            while ticks.load(SeqCst) < 5 {
                thread::yield_now();
            }
            assert!(!waiter.is_finished(), "woken with no signal");
            kill(sig);
            waiter.join().unwrap();
            stop.store(true, SeqCst);
            ticker.join().unwrap();
        });
        assert_eq!(fallbacks(sig), 0, "the delivery went past the waiting sync");
    });
}

/// In a `select` of a signal, a channel and a timeout, each can win; of two signals, the one
/// received wins.
#[test]
fn select_lets_a_signal_a_channel_or_a_timeout_win() {
    common::watchdog(
        30,
        "select_lets_a_signal_a_channel_or_a_timeout_win",
        || {
            let (sig, other) = (libc::SIGUSR2, rt(0));
            fallback(sig);
            fallback(other);
            on_domains(2, || {
                let c: Channel<u32> = Channel::new();
                let race = move |armed: Sender<()>, c: Channel<u32>, timeout: Duration| {
                    select(vec![
                        signal(other).wrap(|()| "other signal"),
                        caught(sig, armed).wrap(|()| "signal"),
                        c.recv_evt().wrap(|_| "channel"),
                        after(timeout).wrap(|()| "timeout"),
                    ])
                };
                let long = Duration::from_secs(600);

                let (armed_tx, armed) = mpsc::channel();
                let c2 = c.clone();
                let waiter = thread::spawn(move || race(armed_tx, c2, long));
                armed.recv().unwrap();
                kill(sig);
                assert_eq!(waiter.join().unwrap(), "signal");

                let (armed_tx, armed) = mpsc::channel();
                let c2 = c.clone();
                let waiter = thread::spawn(move || race(armed_tx, c2, long));
                armed.recv().unwrap();
                kill(other);
                assert_eq!(waiter.join().unwrap(), "other signal");

                let (armed_tx, armed) = mpsc::channel();
                let c2 = c.clone();
                let waiter = thread::spawn(move || race(armed_tx, c2, long));
                armed.recv().unwrap();
                c.send(7);
                assert_eq!(waiter.join().unwrap(), "channel");

                let (armed_tx, _armed) = mpsc::channel();
                let waiter = thread::spawn(move || race(armed_tx, c, Duration::from_millis(5)));
                assert_eq!(waiter.join().unwrap(), "timeout");
            });
            assert_eq!((fallbacks(sig), fallbacks(other)), (0, 0));
        },
    );
}

/// A delivery before the sync does not fire it, even while another sync keeps the signal
/// watched and has seen that delivery, and even if the event was built before the delivery:
/// `poll` gives `None`, a `select` with a timeout times out.
#[test]
fn a_signal_received_before_the_sync_does_not_fire_it() {
    common::watchdog(
        30,
        "a_signal_received_before_the_sync_does_not_fire_it",
        || {
            let sig = rt(1);
            fallback(sig);
            // Unwatched: the delivery meets the tests' handler, and a later poll sees nothing.
            kill(sig);
            wait_fallbacks(sig, 1);
            assert_eq!(signal(sig).poll(), None);
            on_domains(2, || {
                let (armed_tx, armed) = mpsc::channel();
                let stop: Channel<()> = Channel::new();
                let s = stop.clone();
                // Keeps a sync on the signal, counting deliveries.
                let keeper = thread::spawn(move || {
                    let mut n = 0;
                    loop {
                        let got = select(vec![
                            caught(sig, armed_tx.clone()).wrap(|()| true),
                            s.recv_evt().wrap(|()| false),
                        ]);
                        if !got {
                            return n;
                        }
                        n += 1;
                    }
                });
                // An event built before the delivery, synced after it.
                let built_before = signal(sig);
                armed.recv().unwrap();
                kill(sig);
                // The keeper was woken and catches the signal again: the delivery is past.
                armed.recv().unwrap();
                assert_eq!(signal(sig).poll(), None);
                let late = select(vec![
                    built_before.wrap(|()| "signal"),
                    after(Duration::from_millis(20)).wrap(|()| "timeout"),
                ]);
                assert_eq!(late, "timeout");
                stop.send(());
                assert_eq!(keeper.join().unwrap(), 1);
            });
            assert_eq!(fallbacks(sig), 1, "only the delivery before any sync");
        },
    );
}

/// A plain OS thread (no runtime) waiting for a signal is woken, in a bare sync and in a
/// `select` that also watches a descriptor (the thread then waits in `poll(2)`).
#[test]
fn a_plain_thread_waiting_for_a_signal_is_woken() {
    common::watchdog(30, "a_plain_thread_waiting_for_a_signal_is_woken", || {
        let sig = rt(2);
        fallback(sig);
        let (armed_tx, armed) = mpsc::channel();
        let a = armed_tx.clone();
        let waiter = std::thread::spawn(move || caught(sig, a).sync());
        armed.recv().unwrap();
        kill(sig);
        waiter.join().unwrap();

        let (quiet, _other_end) = std::os::unix::net::UnixStream::pair().unwrap();
        let fd = quiet.as_raw_fd();
        let waiter = std::thread::spawn(move || {
            select(vec![
                readable(fd).wrap(|()| "readable"),
                caught(sig, armed_tx).wrap(|()| "signal"),
            ])
        });
        armed.recv().unwrap();
        kill(sig);
        assert_eq!(waiter.join().unwrap(), "signal");
        drop(quiet);
        assert_eq!(fallbacks(sig), 0);
    });
}

/// One delivery wakes every sync waiting for the signal: tasks on both domains of a runtime
/// and a plain thread.
#[test]
fn one_signal_wakes_every_waiter_on_every_domain_and_thread() {
    common::watchdog(60, "one_signal_wakes_every_waiter", || {
        let sig = rt(3);
        fallback(sig);
        let (woken, domains) = on_domains(2, || {
            let (armed_tx, armed) = mpsc::channel();
            let (woke_tx, woke) = mpsc::channel::<std::thread::ThreadId>();
            let mut hub_threads = HashSet::new();
            let mut waiters = 0;
            // Hubs spawn waiters pinned to the domain they run on; spawn hubs until both
            // domains have some (an idle domain takes unstarted tasks from a busy one).
            while hub_threads.len() < 2 {
                let hubs: Vec<_> = (0..4)
                    .map(|_| {
                        let (a, w) = (armed_tx.clone(), woke_tx.clone());
                        thread::spawn(move || {
                            for _ in 0..2 {
                                let (a, w) = (a.clone(), w.clone());
                                thread::spawn_local(move || {
                                    caught(sig, a).sync();
                                    w.send(std::thread::current().id()).unwrap();
                                });
                            }
                            std::thread::current().id()
                        })
                    })
                    .collect();
                for h in hubs {
                    hub_threads.insert(h.join().unwrap());
                    waiters += 2;
                }
                assert!(waiters < 1000, "every hub ran on one domain");
            }
            let (a, w) = (armed_tx.clone(), woke_tx.clone());
            let plain = std::thread::spawn(move || {
                caught(sig, a).sync();
                w.send(std::thread::current().id()).unwrap();
            });
            waiters += 1;
            for _ in 0..waiters {
                armed.recv().unwrap();
            }
            kill(sig);
            let woken: Vec<_> = (0..waiters).map(|_| woke.recv().unwrap()).collect();
            plain.join().unwrap();
            (woken, hub_threads)
        });
        let threads: HashSet<_> = woken.iter().collect();
        assert_eq!(threads.len(), 3, "both domains and the plain thread");
        assert!(domains.iter().all(|d| threads.contains(d)));
        assert_eq!(fallbacks(sig), 0);
    });
}

/// The process's own disposition of a signal is back once no sync catches it: after a sync
/// that caught a delivery ends, and after a runtime ends with a task waiting for the signal.
#[test]
fn the_previous_disposition_is_back_when_no_sync_catches_the_signal() {
    common::watchdog(60, "the_previous_disposition_is_back", || {
        let sig = rt(4);
        fallback(sig);
        bobine::run(|| {
            let (armed_tx, armed) = mpsc::channel();
            let waiter = thread::spawn(move || caught(sig, armed_tx).sync());
            armed.recv().unwrap();
            assert!(
                !fallback_installed(sig),
                "the sync does not catch the signal"
            );
            kill(sig);
            waiter.join().unwrap();
        });
        assert_eq!(fallbacks(sig), 0, "the sync caught the delivery");
        assert!(fallback_installed(sig), "the previous handler is back");
        kill(sig);
        wait_fallbacks(sig, 1);

        // A runtime that ends while a task waits: the task is stopped, its sync abandoned.
        bobine::run(|| {
            let (armed_tx, armed) = mpsc::channel();
            thread::spawn(move || caught(sig, armed_tx).sync());
            armed.recv().unwrap();
            assert!(!fallback_installed(sig));
        });
        assert!(fallback_installed(sig), "back after the runtime ended");
        kill(sig);
        wait_fallbacks(sig, 2);
    });
}

/// `signal` refuses, with a message naming the signal, what cannot be caught.
#[test]
fn invalid_signals_are_refused_with_their_name() {
    for (sig, name) in [
        (libc::SIGKILL, "9 (SIGKILL)"),
        (libc::SIGSTOP, "19 (SIGSTOP)"),
        (libc::SIGSEGV, "11 (SIGSEGV)"),
        (libc::SIGBUS, "7 (SIGBUS)"),
        (libc::SIGFPE, "8 (SIGFPE)"),
        (libc::SIGILL, "4 (SIGILL)"),
        (0, "signal 0 "),
        (libc::SIGRTMAX() + 1, "signal 65 "),
        (-2, "signal -2 "),
    ] {
        let text = panic_text(|| signal(sig));
        assert!(
            text.starts_with("bobine::event::signal: signal ") && text.contains(name),
            "{text:?} names {name}"
        );
        assert!(text.contains("cannot be watched"), "{text:?}");
    }
}

/// Deliveries spaced by acknowledgements (the waiter's next sync catches the signal before
/// the next one is sent) are each caught by one sync: none lost, none caught twice. For a task
/// and for a plain thread.
#[test]
fn spaced_deliveries_to_a_waiter_resyncing_in_a_loop_are_each_caught_once() {
    common::watchdog(120, "spaced_deliveries_are_each_caught_once", || {
        const N: usize = 200;
        let sig = rt(5);
        fallback(sig);
        /// The waiter's loop: after its `i`-th sync, at least `i` signals were sent.
        fn waiter(sig: i32, armed: Sender<()>, sent: Arc<AtomicUsize>) -> usize {
            for i in 1..=N {
                caught(sig, armed.clone()).sync();
                let s = sent.load(SeqCst);
                assert!(s >= i, "sync {i} ended after only {s} signals");
            }
            N
        }
        /// Sends each signal once the waiter's next sync catches it.
        fn sender(sig: i32, armed: mpsc::Receiver<()>, sent: &AtomicUsize) {
            for _ in 0..N {
                armed.recv().unwrap();
                sent.fetch_add(1, SeqCst);
                kill(sig);
            }
        }
        on_domains(2, || {
            let (armed_tx, armed) = mpsc::channel();
            let sent = Arc::new(AtomicUsize::new(0));
            let s = sent.clone();
            let w = thread::spawn(move || waiter(sig, armed_tx, s));
            sender(sig, armed, &sent);
            assert_eq!(w.join().unwrap(), N);
        });
        let (armed_tx, armed) = mpsc::channel();
        let sent = Arc::new(AtomicUsize::new(0));
        let s = sent.clone();
        let w = std::thread::spawn(move || waiter(sig, armed_tx, s));
        sender(sig, armed, &sent);
        assert_eq!(w.join().unwrap(), N);
        assert_eq!(fallbacks(sig), 0, "a delivery no sync caught");
    });
}
