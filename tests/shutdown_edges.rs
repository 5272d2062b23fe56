//! Edge cases of the shutdown, found by a second independent review of stops (after the fixes
//! for the first, `stop_edges.rs`): each test reproduces a bug that review found (hangs,
//! aborts, lost hand-overs, wrong poisoning) and failed on the code it was written against, two
//! of them restated where the ideal cannot be reached. Tests that could hang, abort or leave
//! the process in a broken state run in a child process (see `child`).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::tasks::{DropCounter, LockOnDrop, RecvOnDrop};

const CHILD: &str = "BOBINE_SHUTDOWN_EDGES_CHILD";

/// Whether this process is the child run of `test`.
fn in_child(test: &str) -> bool {
    common::child::is_child_of(CHILD, test)
}

/// Runs `test` in a child process (see `common::child::run_ok`); returns its stderr.
fn child(test: &str, secs: u64) -> String {
    common::child::run_ok(CHILD, test, secs)
}

/// A task that stage 2 wakes (it joins a task stage 2 abandons: `finish` wakes the joiners)
/// and that then blocks again is never abandoned: stage 2 is applied once per domain and skips
/// tasks already woken, so `run` hangs for ever.
#[test]
fn task_woken_by_an_abandon_and_blocking_again_does_not_hang_run() {
    const NAME: &str = "task_woken_by_an_abandon_and_blocking_again_does_not_hang_run";
    if in_child(NAME) {
        struct JoinThenRecv(
            Option<bobine::thread::JoinHandle<()>>,
            bobine::sync::mpsc::Receiver<()>,
        );
        impl Drop for JoinThenRecv {
            fn drop(&mut self) {
                let _ = self.0.take().unwrap().join();
                let _ = self.1.recv();
            }
        }
        bobine::Builder::new().domains(1).run(|| {
            let (tx_x, rx_x) = bobine::sync::mpsc::channel::<()>();
            // X (registry slot before J's): its destructor waits for ever, stage 2 abandons it.
            let x = bobine::thread::spawn(move || {
                let _w = RecvOnDrop(rx_x);
                bobine::thread::sleep(Duration::from_secs(3600));
            });
            let (tx_j, rx_j) = bobine::sync::mpsc::channel::<()>();
            // J: its destructor joins X, then waits for ever too.
            drop(bobine::thread::spawn(move || {
                let _j = JoinThenRecv(Some(x), rx_j);
                bobine::thread::sleep(Duration::from_secs(3600));
            }));
            bobine::thread::sleep(Duration::from_millis(20));
            std::mem::forget(tx_x);
            std::mem::forget(tx_j);
        });
        eprintln!("child: run returned");
        return;
    }
    let stderr = child(NAME, 30);
    assert!(stderr.contains("child: run returned"), "{stderr}");
}

/// After a run on this thread left an abandoned unwind behind (documented: `panicking()` stays
/// true on the thread), a later `run` on the same thread works (it used to panic at start:
/// `install_panic_hook` called `take_hook`, which std refuses on a panicking thread) and ends.
/// Whether its tasks unwind can no longer be told on that thread, so its stopped task is
/// abandoned after the grace, with a report, rather than unwound (documented).
#[test]
fn later_run_on_a_thread_with_a_leaked_unwind_works() {
    const NAME: &str = "later_run_on_a_thread_with_a_leaked_unwind_works";
    if in_child(NAME) {
        static M: bobine::sync::Mutex<u32> = bobine::sync::Mutex::new(0);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            std::mem::forget(M.lock().unwrap());
            tx.send(()).unwrap();
        });
        rx.recv().unwrap();
        // Run 1: a task unwinds into a destructor that waits for M for ever: abandoned.
        bobine::Builder::new().domains(1).run(|| {
            drop(bobine::thread::spawn(|| {
                let _l = LockOnDrop(&M);
                bobine::thread::sleep(Duration::from_secs(3600));
            }));
            bobine::thread::sleep(Duration::from_millis(20));
        });
        // Run 2, same thread: an ordinary task blocked on a message when the run ends.
        let dropped = Arc::new(AtomicUsize::new(0));
        let d = dropped.clone();
        bobine::Builder::new().domains(1).run(move || {
            let (tx, rx) = bobine::sync::mpsc::channel::<()>();
            drop(bobine::thread::spawn(move || {
                let _c = DropCounter(d);
                let _ = rx.recv();
            }));
            bobine::thread::sleep(Duration::from_millis(20));
            std::mem::forget(tx);
        });
        eprintln!(
            "child: run 2 returned; its task's destructor ran {} time(s)",
            dropped.load(Ordering::SeqCst)
        );
        return;
    }
    let stderr = child(NAME, 30);
    assert!(stderr.contains("child: run 2 returned"), "{stderr}");
    let destructor_ran = stderr.contains("destructor ran 1 time(s)");
    let reported =
        stderr.contains("stayed blocked in Receiver::recv") && stderr.contains("it is abandoned");
    assert!(destructor_ran || reported, "{stderr}");
}

/// A panic hook installed before `run` (so chained by bobine's) that blocks on a bobine lock held
/// by another task of the same domain parks its task until the lock is free, as any wait does
/// (blocking the domain's thread instead would deadlock). While it waits, std counts the thread
/// as in a panic hook, so another panic on that domain would abort the process: documented in
/// the README, as the lesser evil.
#[test]
fn panic_hook_that_blocks_on_a_lock_waits_for_it() {
    const NAME: &str = "panic_hook_that_blocks_on_a_lock_waits_for_it";
    if in_child(NAME) {
        static LOG: bobine::sync::Mutex<Vec<String>> = bobine::sync::Mutex::new(Vec::new());
        std::panic::set_hook(Box::new(|info| {
            LOG.lock().unwrap().push(info.to_string());
        }));
        bobine::Builder::new().domains(1).run(|| {
            let g = LOG.lock().unwrap();
            // A's hook waits for LOG, held here: the task parks, and this one runs on.
            let a = bobine::thread::spawn(|| panic!("review2: A"));
            bobine::thread::sleep(Duration::from_millis(20));
            drop(g);
            assert!(a.join().is_err());
        });
        eprintln!(
            "child: run returned; {} panics logged",
            LOG.lock().unwrap().len()
        );
        return;
    }
    let stderr = child(NAME, 30);
    assert!(
        stderr.contains("child: run returned; 1 panics logged"),
        "{stderr}"
    );
}

/// A rendezvous sender abandoned at shutdown stays in the channel's send queue; the receiver
/// that takes its value skips it (dead) and wakes the next sender instead, whose value was not
/// taken: that sender queues again at the back, the queue's order no longer matches the values'
/// order, and the last live sender is never woken although its value was received.
#[test]
fn rendezvous_senders_queued_behind_an_abandoned_one_all_return() {
    common::watchdog(40, "rendezvous_senders_behind_an_abandoned_one", || {
        let (tx, rx) = bobine::sync::mpsc::sync_channel::<u32>(0);
        let tx0 = tx.clone();
        // The runtime on its own OS thread: its abandoned unwind stays there.
        std::thread::spawn(move || {
            bobine::Builder::new().domains(1).run(move || {
                struct SendOnDrop(bobine::sync::mpsc::SyncSender<u32>);
                impl Drop for SendOnDrop {
                    fn drop(&mut self) {
                        let _ = self.0.send(0);
                    }
                }
                drop(bobine::thread::spawn(move || {
                    let _s = SendOnDrop(tx0);
                    bobine::thread::sleep(Duration::from_secs(3600));
                }));
                bobine::thread::sleep(Duration::from_millis(20));
            });
        })
        .join()
        .unwrap();
        let senders: Vec<_> = [1u32, 2]
            .into_iter()
            .map(|v| {
                let tx = tx.clone();
                let h = std::thread::spawn(move || tx.send(v));
                // Queue them in order.
                std::thread::sleep(Duration::from_millis(50));
                h
            })
            .collect();
        let mut got = Vec::new();
        for _ in 0..3 {
            got.push(rx.recv().unwrap());
            // Let a woken sender look again before the next receive.
            std::thread::sleep(Duration::from_millis(50));
        }
        for h in senders {
            assert!(h.join().unwrap().is_ok());
        }
        got.sort();
        assert_eq!(got, [0, 1, 2]);
    });
}

/// A task stopped while it holds a mutex does not poison it, even when a destructor run by the
/// stop's unwind catches a panic of its own: the panic hook clears `stop_unwinding` for good, so
/// the rest of the stop's unwind is taken for a panic and the guard poisons the mutex.
#[test]
fn stop_unwind_with_a_caught_panic_in_a_destructor_does_not_poison() {
    static M: bobine::sync::Mutex<u32> = bobine::sync::Mutex::new(0);
    common::watchdog(
        30,
        "stop_unwind_with_a_caught_panic_does_not_poison",
        || {
            struct CatchesOnDrop;
            impl Drop for CatchesOnDrop {
                fn drop(&mut self) {
                    let _ = std::panic::catch_unwind(|| panic!("review2: caught in a destructor"));
                }
            }
            std::thread::spawn(|| {
                bobine::Builder::new().domains(1).run(|| {
                    drop(bobine::thread::spawn(|| {
                        let _g = M.lock().unwrap();
                        let _c = CatchesOnDrop;
                        bobine::thread::sleep(Duration::from_secs(3600));
                    }));
                    bobine::thread::sleep(Duration::from_millis(20));
                });
            })
            .join()
            .unwrap();
            assert!(
                !M.is_poisoned(),
                "a mutex held by a stopped task was poisoned by the stop"
            );
        },
    );
}

/// A task stopped while a `wrap_abort` function of its `select` blocks unwinds (its destructors
/// run): `run_aborts` catches the stop's unwind to run the other aborts, so when the next abort
/// blocks at shutdown the task looks like one that caught the runtime's unwind itself
/// (`stop_raised`, not unwinding) and is abandoned on the spot.
#[test]
fn stop_inside_a_wrap_abort_unwinds_the_task() {
    common::watchdog(30, "stop_inside_a_wrap_abort_unwinds_the_task", || {
        use bobine::event::{Event, select};
        let dropped = Arc::new(AtomicUsize::new(0));
        let d = dropped.clone();
        // The runtime on its own OS thread: whatever it leaves behind stays there.
        std::thread::spawn(move || {
            bobine::Builder::new().domains(1).run(move || {
                let (tx1, rx1) = bobine::sync::mpsc::channel::<()>();
                let (tx2, rx2) = bobine::sync::mpsc::channel::<()>();
                drop(bobine::thread::spawn(move || {
                    let _c = DropCounter(d);
                    select(vec![
                        Event::always(()),
                        Event::never().wrap_abort(move || {
                            let _ = rx1.recv();
                        }),
                        Event::never().wrap_abort(move || {
                            let _ = rx2.recv();
                        }),
                    ]);
                }));
                bobine::thread::sleep(Duration::from_millis(20));
                std::mem::forget(tx1);
                std::mem::forget(tx2);
            });
        })
        .join()
        .unwrap();
        assert_eq!(
            dropped.load(Ordering::SeqCst),
            1,
            "the stopped task was abandoned instead of unwinding"
        );
    });
}

/// `run` called by a destructor while its thread unwinds (std allows any work there) does not
/// abort: `install_panic_hook` calls `std::panic::take_hook`, which panics on a panicking
/// thread, inside the destructor, during the unwind.
#[test]
fn run_from_a_destructor_during_a_panic_does_not_abort() {
    const NAME: &str = "run_from_a_destructor_during_a_panic_does_not_abort";
    if in_child(NAME) {
        struct RunsOnDrop;
        impl Drop for RunsOnDrop {
            fn drop(&mut self) {
                let v = bobine::Builder::new().domains(1).run(|| 7);
                eprintln!("child: run in a destructor returned {v}");
            }
        }
        let r = std::panic::catch_unwind(|| {
            let _r = RunsOnDrop;
            panic!("review2: unwinding through a destructor that runs a runtime");
        });
        assert!(r.is_err());
        return;
    }
    let stderr = child(NAME, 30);
    assert!(
        stderr.contains("child: run in a destructor returned 7"),
        "{stderr}"
    );
}

/// A task that loops on `yield_now` (a stop point) is stopped at shutdown even while another
/// task of its domain is parked for ever in the middle of an unwind: `at_yield` then cannot
/// tell whether it unwinds and lets it go on, without deferring anything; it keeps the domain
/// busy, so the shutdown never sees it idle, never gives up or abandons the parked task, and
/// `run` hangs (without that parked task, the same loop is stopped at its next yield).
#[test]
fn yielding_task_is_stopped_beside_a_task_parked_mid_unwind() {
    const NAME: &str = "yielding_task_is_stopped_beside_a_task_parked_mid_unwind";
    if in_child(NAME) {
        bobine::Builder::new().domains(1).run(|| {
            let (tx, rx) = bobine::sync::mpsc::channel::<()>();
            drop(bobine::thread::spawn(move || {
                let _w = RecvOnDrop(rx);
                panic!("review2: unwinding into a destructor that waits for ever");
            }));
            bobine::thread::sleep(Duration::from_millis(20));
            drop(bobine::thread::spawn(|| {
                loop {
                    bobine::thread::yield_now();
                }
            }));
            bobine::thread::sleep(Duration::from_millis(20));
            std::mem::forget(tx);
        });
        eprintln!("child: run returned");
        return;
    }
    let stderr = child(NAME, 30);
    assert!(stderr.contains("child: run returned"), "{stderr}");
}
