//! One test per fixed runtime bug, named after the bug.

mod common;

use std::time::Duration;

/// A task with a 16 KiB stack that panics while `RUST_BACKTRACE=1` is reported and joined,
/// instead of overflowing its stack while the panic hook formats the backtrace (the hook now
/// formats on the scheduler's stack).
#[test]
fn panic_report_with_backtrace_fits_a_small_task_stack() {
    if common::child::is_child("BOBINE_REGRESSION_CHILD") {
        let joined_err = bobine::Builder::new().domains(1).run(|| {
            let h = bobine::thread::Builder::new()
                .name("small".into())
                .stack_size(16 * 1024)
                .spawn(|| panic!("small stack panic"))
                .unwrap();
            eprintln!("child: the task's id is {}", h.thread().id().as_u64());
            h.join().is_err()
        });
        assert!(joined_err);
        return;
    }
    let out = common::child::run(
        "panic_report_with_backtrace_fits_a_small_task_stack",
        &[("BOBINE_REGRESSION_CHILD", "1"), ("RUST_BACKTRACE", "1")],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "child failed: {}\n{stderr}",
        out.status
    );
    let id = stderr
        .lines()
        .find_map(|l| l.strip_prefix("child: the task's id is "))
        .expect("the child announces the task's id");
    assert!(
        stderr.contains(&format!("thread 'small' (task {id}) panicked at")),
        "{stderr}"
    );
    assert!(stderr.contains("small stack panic"), "{stderr}");
    assert!(!stderr.contains("overflowed"), "{stderr}");
}

/// A domain asleep in epoll with no timer hears of tasks spawned later on another domain and
/// takes some of them (it used to sleep until the runtime ended).
#[test]
fn sleeping_domain_takes_work_spawned_after_it_slept() {
    common::watchdog(30, "sleeping_domain_takes_work", || {
        let threads = bobine::Builder::new().domains(2).run(|| {
            // Let domain 1 run out of work and fall asleep.
            bobine::thread::sleep(Duration::from_millis(50));
            let hs: Vec<_> = (0..200)
                .map(|_| {
                    bobine::thread::spawn(|| {
                        // Hold the domain for a while, as CPU-bound work does, so the spawning
                        // domain cannot start all 200 before the sleeper wakes up.
                        let until = std::time::Instant::now() + Duration::from_millis(1);
                        while std::time::Instant::now() < until {
                            std::hint::spin_loop();
                        }
                        std::thread::current().id()
                    })
                })
                .collect();
            hs.into_iter()
                .map(|h| h.join().unwrap())
                .collect::<std::collections::HashSet<_>>()
        });
        assert_eq!(threads.len(), 2, "all 200 tasks ran on one domain");
    });
}

/// A `Park` dropped without waiting retires its generation: its unparker no longer wakes the
/// next park, and arming again does not trip the "armed twice" check.
#[test]
fn dropped_park_is_retired() {
    common::watchdog(30, "dropped_park_is_retired", || {
        bobine::Builder::new().domains(1).run(|| {
            let first = bobine::Park::new();
            let stale = first.unparker();
            drop(first);
            let second = bobine::Park::new();
            assert!(
                !stale.unpark(),
                "a dropped park's unparker woke a later park"
            );
            let deadline = std::time::Instant::now() + Duration::from_millis(5);
            assert_eq!(
                second.wait_until("test", Some(deadline)),
                bobine::Wake::TimedOut
            );
        });
    });
}

/// Never-started scoped tasks that one domain handed to another just before `run` ended are
/// dropped before the task whose stack they borrow (they used to be dropped after it, reading a
/// dead frame).
#[test]
fn handed_over_scoped_tasks_drop_before_their_scope_owner() {
    use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
    use std::time::Instant;
    const ALIVE: u64 = 0xA11CE;
    const DEAD: u64 = 0xDEAD;
    static BAD_READS: AtomicUsize = AtomicUsize::new(0);
    static DROPS: AtomicUsize = AtomicUsize::new(0);
    struct Canary(AtomicU64);
    impl Drop for Canary {
        fn drop(&mut self) {
            self.0.store(DEAD, Ordering::SeqCst);
        }
    }
    struct Borrower<'a>(&'a Canary);
    impl Drop for Borrower<'_> {
        fn drop(&mut self) {
            DROPS.fetch_add(1, Ordering::SeqCst);
            if self.0.0.load(Ordering::SeqCst) != ALIVE {
                BAD_READS.fetch_add(1, Ordering::SeqCst);
            }
        }
    }
    fn busy_until(t: Instant) {
        while Instant::now() < t {
            std::hint::spin_loop();
        }
    }
    common::watchdog(30, "handed_over_scoped_tasks", || {
        bobine::Builder::new().domains(2).run(|| {
            let base = Instant::now() + Duration::from_millis(50);
            // Keep domain 1 busy around the end, so work handed to it waits in its inbox.
            drop(bobine::thread::spawn(move || {
                bobine::time::sleep_until(base + Duration::from_millis(10));
                busy_until(base + Duration::from_millis(200));
            }));
            busy_until(Instant::now() + Duration::from_millis(5));
            bobine::thread::sleep(Duration::from_millis(1));
            bobine::time::sleep_until(base);
            drop(bobine::thread::spawn_local(move || {
                let canary = Canary(AtomicU64::new(ALIVE));
                bobine::thread::scope(|s| {
                    for _ in 0..8 {
                        let b = Borrower(&canary);
                        s.spawn(move || {
                            let _b = b;
                            bobine::Park::new().wait("forever");
                        });
                    }
                    busy_until(base + Duration::from_millis(30));
                    bobine::Park::new().wait("forever");
                });
            }));
            bobine::time::sleep_until(base + Duration::from_millis(60));
        });
    });
    assert_eq!(
        DROPS.load(Ordering::SeqCst),
        8,
        "every borrower is dropped once"
    );
    assert_eq!(
        BAD_READS.load(Ordering::SeqCst),
        0,
        "a borrower outlived the frame it borrows"
    );
}

/// A destructor run by the shutdown that spawns a task gets a task that is stopped at once: its
/// closure is dropped (once, as the task) without running, and it finishes with `TaskDropped`
/// before `run` returns (it used to leak a task nobody would run, whose closure was later
/// dropped from unmapped memory).
#[test]
fn spawn_from_a_destructor_during_shutdown_gives_a_dropped_task() {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};
    static LATE: Mutex<Option<bobine::thread::JoinHandle<()>>> = Mutex::new(None);
    static CLOSURE_DROPS: AtomicUsize = AtomicUsize::new(0);
    struct Counted;
    impl Drop for Counted {
        fn drop(&mut self) {
            CLOSURE_DROPS.fetch_add(1, Ordering::SeqCst);
        }
    }
    struct SpawnOnDrop;
    impl Drop for SpawnOnDrop {
        fn drop(&mut self) {
            let c = Counted;
            let h = bobine::thread::spawn(move || drop(c));
            *LATE.lock().unwrap() = Some(h);
        }
    }
    common::watchdog(30, "spawn_from_a_destructor", || {
        bobine::Builder::new().domains(1).run(|| {
            drop(bobine::thread::spawn(|| {
                let _g = SpawnOnDrop;
                bobine::thread::sleep(Duration::from_secs(3600));
            }));
            bobine::thread::sleep(Duration::from_millis(20));
        });
        let late = LATE.lock().unwrap().take().expect("the destructor ran");
        assert!(late.is_finished());
        assert_eq!(CLOSURE_DROPS.load(Ordering::SeqCst), 1);
        let err = late.join().unwrap_err();
        assert!(err.downcast_ref::<bobine::TaskDropped>().is_some());
    });
}

/// A detached task whose value holds the `JoinHandle` of another finished task: recycling the
/// detached task drops that handle, which recycles the other task (this re-entered the task
/// cache and panicked on the scheduler).
#[test]
fn detached_value_holding_a_join_handle() {
    common::watchdog(30, "detached_value_holding_a_join_handle", || {
        for domains in [1, 2] {
            let n = bobine::Builder::new().domains(domains).run(|| {
                for _ in 0..50 {
                    drop(bobine::thread::spawn(|| {
                        let inner = bobine::thread::spawn(|| 1u32);
                        bobine::thread::sleep(Duration::from_millis(1));
                        inner
                    }));
                }
                bobine::thread::sleep(Duration::from_millis(30));
                bobine::thread::spawn(|| 7).join().unwrap()
            });
            assert_eq!(n, 7);
        }
    });
}

/// The value of a detached task is dropped by the task itself, so a destructor that joins
/// another task parks that task instead of blocking the domain's OS thread (which deadlocked).
#[test]
fn detached_value_whose_destructor_joins() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static JOINED: AtomicUsize = AtomicUsize::new(0);
    struct JoinOnDrop(Option<bobine::thread::JoinHandle<()>>);
    impl Drop for JoinOnDrop {
        fn drop(&mut self) {
            if let Some(h) = self.0.take() {
                h.join().unwrap();
                JOINED.fetch_add(1, Ordering::SeqCst);
            }
        }
    }
    common::watchdog(30, "detached_value_whose_destructor_joins", || {
        bobine::Builder::new().domains(1).run(|| {
            drop(bobine::thread::spawn(|| {
                JoinOnDrop(Some(bobine::thread::spawn(|| {
                    bobine::thread::sleep(Duration::from_millis(10))
                })))
            }));
            bobine::thread::sleep(Duration::from_millis(100));
        });
    });
    assert_eq!(JOINED.load(Ordering::SeqCst), 1);
}

/// A destructor that blocks while the runtime stops a task at shutdown waits for real (a
/// sleep, a join) and finishes, instead of aborting with a panic during unwinding.
#[test]
fn blocking_destructor_during_shutdown_returns() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static FLUSHED: AtomicUsize = AtomicUsize::new(0);
    struct FlushOnDrop;
    impl Drop for FlushOnDrop {
        fn drop(&mut self) {
            bobine::thread::sleep(Duration::from_millis(1));
            let other = bobine::thread::spawn(|| ());
            let _ = other.join();
            FLUSHED.fetch_add(1, Ordering::SeqCst);
        }
    }
    common::watchdog(30, "blocking_destructor_during_shutdown", || {
        bobine::Builder::new().domains(2).run(|| {
            for _ in 0..4 {
                drop(bobine::thread::spawn(|| {
                    let _g = FlushOnDrop;
                    bobine::thread::sleep(Duration::from_secs(3600));
                }));
            }
            bobine::thread::sleep(Duration::from_millis(20));
        });
    });
    assert_eq!(FLUSHED.load(Ordering::SeqCst), 4);
}

/// A never-started task's closure is dropped at shutdown as that task (its first run drops it),
/// so a destructor that blocks there parks the task (it used to crash, switching with no task
/// context).
#[test]
fn never_started_closure_with_blocking_destructor() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static SLEPT: AtomicUsize = AtomicUsize::new(0);
    struct SleepOnDrop;
    impl Drop for SleepOnDrop {
        fn drop(&mut self) {
            bobine::thread::sleep(Duration::from_millis(1));
            SLEPT.fetch_add(1, Ordering::SeqCst);
        }
    }
    common::watchdog(30, "never_started_closure", || {
        bobine::Builder::new().domains(1).run(|| {
            let g = SleepOnDrop;
            drop(bobine::thread::spawn(move || drop(g)));
        });
    });
    assert_eq!(SLEPT.load(Ordering::SeqCst), 1);
}

/// Stacks freed on one domain serve spawns on another: with at most 17 tasks alive, a runtime
/// capped at 300 stacks never runs out (stolen tasks used to strand their stacks).
#[test]
fn freed_stacks_serve_every_domain() {
    common::watchdog(60, "freed_stacks_serve_every_domain", || {
        bobine::Builder::new().domains(2).max_tasks(300).run(|| {
            for round in 0..200 {
                let hs: Vec<_> = (0..16)
                    .map(|_| {
                        bobine::thread::Builder::new()
                            .spawn(|| {
                                let t = std::time::Instant::now();
                                while t.elapsed() < Duration::from_micros(100) {
                                    std::hint::spin_loop();
                                }
                            })
                            .unwrap_or_else(|e| panic!("round {round}: {e}"))
                    })
                    .collect();
                for h in hs {
                    h.join().unwrap();
                }
            }
        });
    });
}

/// A `Park` waited on by a task other than the one that made it is refused with a clear panic
/// (it used to switch the wrong fiber).
#[test]
fn park_waited_by_another_task_panics() {
    common::watchdog(30, "park_waited_by_another_task_panics", || {
        let err = bobine::Builder::new().domains(1).run(|| {
            let park = bobine::Park::new();
            let h = bobine::thread::spawn_local(move || park.wait("stolen"));
            h.join().unwrap_err()
        });
        let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(
            msg.contains("must be waited on by the task or thread that made it"),
            "{msg}"
        );
    });
}

/// An absurd stack size is an error from `Builder::spawn`, not a crash.
#[test]
fn huge_stack_size_is_an_error() {
    common::watchdog(30, "huge_stack_size_is_an_error", || {
        bobine::Builder::new().domains(1).run(|| {
            let err = bobine::thread::Builder::new()
                .stack_size(usize::MAX)
                .spawn(|| ())
                .unwrap_err();
            assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
            assert!(err.to_string().contains("too large"), "{err}");
        });
    });
}

/// The OCaml idiom `protect m (fun () -> while true do Condition.wait c m done)` in a thread
/// left blocked when `run` ends unwinds cleanly (protect's unlock used to raise from a
/// destructor and abort the process).
#[test]
fn protect_around_condition_wait_unwinds_at_shutdown() {
    use bobine::ocaml::{condition, mutex, thread};
    common::watchdog(30, "protect_around_condition_wait", || {
        let m = mutex::create();
        let m_after = m.clone();
        bobine::Builder::new().domains(1).run(|| {
            let c = condition::create();
            let (m2, c2) = (m.clone(), c.clone());
            thread::create(
                move |()| {
                    mutex::protect(&m2, || {
                        loop {
                            condition::wait(&c2, &m2)
                        }
                    })
                },
                (),
            );
            thread::delay(0.02);
        });
        // The mutex was released by the wait, and nobody holds it now.
        assert!(mutex::try_lock(&m_after));
        mutex::unlock(&m_after);
    });
}

/// A mutex handed to a waiter that the runtime then unwinds before it runs is passed on, not
/// lost (it used to stay locked forever with no owner).
#[test]
fn mutex_handed_to_an_unwound_waiter_is_passed_on() {
    static M: bobine::sync::Mutex<u32> = bobine::sync::Mutex::new(0);
    common::watchdog(30, "mutex_handed_to_an_unwound_waiter", || {
        bobine::Builder::new().domains(1).run(|| {
            let g = M.lock().unwrap();
            drop(bobine::thread::spawn(|| *M.lock().unwrap() += 1));
            bobine::thread::sleep(Duration::from_millis(20));
            drop(g);
        });
        assert!(
            M.try_lock().is_ok(),
            "the mutex stayed locked after its waiter was dropped"
        );
        assert!(!M.is_poisoned(), "a forced unwind is not a panic");
    });
}

/// A rendezvous sender unwound at shutdown withdraws its value: later receives take the other
/// senders' values and wake exactly those senders (the receiver used to wake the wrong one).
#[test]
fn unwound_rendezvous_sender_withdraws_its_value() {
    common::watchdog(30, "unwound_rendezvous_sender", || {
        let (tx, rx) = bobine::sync::mpsc::sync_channel::<u32>(0);
        let mut plain = Vec::new();
        bobine::Builder::new().domains(1).run(|| {
            let t0 = tx.clone();
            drop(bobine::thread::spawn(move || {
                let _ = t0.send(0);
            }));
            bobine::thread::sleep(Duration::from_millis(20));
            for i in 1..=2u32 {
                let t = tx.clone();
                plain.push(std::thread::spawn(move || t.send(i).unwrap()));
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        let mut got: Vec<u32> = (0..2)
            .map(|_| rx.recv_timeout(Duration::from_secs(5)).unwrap())
            .collect();
        // The two plain senders queue 20 ms apart, which a loaded machine may not keep in
        // order: what matters is that both values come, and the unwound sender's does not.
        got.sort_unstable();
        assert_eq!(
            got,
            [1, 2],
            "the unwound sender's value must not be delivered"
        );
        for p in plain {
            p.join().unwrap();
        }
        assert!(rx.try_recv().is_err());
    });
}

/// Tasks holding a `Mutex` guard while the runtime unwinds them do not poison it.
#[test]
fn forced_unwind_does_not_poison() {
    static M: bobine::sync::Mutex<u32> = bobine::sync::Mutex::new(0);
    common::watchdog(30, "forced_unwind_does_not_poison", || {
        bobine::Builder::new().domains(1).run(|| {
            let (tx, rx) = bobine::sync::mpsc::channel::<()>();
            drop(bobine::thread::spawn(move || {
                let _g = M.lock().unwrap();
                let _ = rx.recv();
            }));
            bobine::thread::sleep(Duration::from_millis(20));
            std::mem::forget(tx);
        });
        assert!(!M.is_poisoned());
    });
}

/// Every receiver blocked on a channel learns of the disconnection when the last sender goes
/// (two local tasks may share a `Receiver` through an `Rc`; only one used to be woken).
#[test]
fn disconnection_wakes_every_blocked_receiver() {
    common::watchdog(30, "disconnection_wakes_every_blocked_receiver", || {
        bobine::Builder::new().domains(1).run(|| {
            let (tx, rx) = bobine::sync::mpsc::channel::<u32>();
            let rx = std::rc::Rc::new(rx);
            let (r1, r2) = (rx.clone(), rx.clone());
            let h1 = bobine::thread::spawn_local(move || r1.recv());
            let h2 = bobine::thread::spawn_local(move || r2.recv());
            bobine::thread::sleep(Duration::from_millis(10));
            drop(tx);
            assert!(h1.join().unwrap().is_err());
            assert!(h2.join().unwrap().is_err());
        });
    });
}

/// A thread-local destructor of a plain thread may block on a bobine `Mutex` (the parker's own
/// thread-local may already be gone; that used to abort).
#[test]
fn thread_local_destructor_may_block_on_a_mutex() {
    use std::sync::Arc;
    struct OnExit(Arc<bobine::sync::Mutex<u32>>);
    impl Drop for OnExit {
        fn drop(&mut self) {
            *self.0.lock().unwrap() += 1;
        }
    }
    thread_local! {
        static X: std::cell::RefCell<Option<OnExit>> = const { std::cell::RefCell::new(None) };
    }
    common::watchdog(30, "thread_local_destructor_may_block", || {
        let m = Arc::new(bobine::sync::Mutex::new(0));
        let g = m.lock().unwrap();
        let m2 = m.clone();
        let t = std::thread::spawn(move || {
            X.with(|x| *x.borrow_mut() = Some(OnExit(m2)));
            let (tx, rx) = bobine::sync::mpsc::channel::<()>();
            let h = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(5));
                tx.send(()).unwrap();
            });
            rx.recv().unwrap();
            h.join().unwrap();
        });
        std::thread::sleep(Duration::from_millis(50));
        drop(g);
        t.join().unwrap();
        assert_eq!(*m.lock().unwrap(), 1);
    });
}

/// std's unwind-safety markers hold, so `catch_unwind` code written for std compiles.
#[test]
fn sync_types_are_unwind_safe_like_std() {
    fn check<T: std::panic::UnwindSafe + std::panic::RefUnwindSafe>() {}
    check::<bobine::sync::Mutex<u32>>();
    check::<bobine::sync::RwLock<u32>>();
    check::<bobine::sync::Condvar>();
    check::<bobine::sync::Barrier>();
    check::<bobine::sync::Semaphore>();
    check::<bobine::sync::mpsc::Sender<u32>>();
    check::<bobine::sync::mpsc::Receiver<u32>>();
    let m = bobine::sync::Mutex::new(1);
    let r = std::panic::catch_unwind(|| {
        let _g = m.lock().unwrap();
        panic!("poison it");
    });
    assert!(r.is_err());
    assert!(m.is_poisoned());
}

/// A channel receive may block in a thread-local destructor of a plain thread (the per-thread
/// spare commit word may already be destroyed; that used to abort).
#[test]
fn channel_recv_may_block_in_a_thread_local_destructor() {
    use bobine::event::Channel;
    struct Guard(Channel<u32>, std::sync::mpsc::Sender<u32>);
    impl Drop for Guard {
        fn drop(&mut self) {
            let v = self.0.recv();
            self.1.send(v).unwrap();
        }
    }
    thread_local! {
        static G: std::cell::RefCell<Option<Guard>> = const { std::cell::RefCell::new(None) };
    }
    common::watchdog(30, "channel_recv_in_tls_destructor", || {
        let c: Channel<u32> = Channel::new();
        let (tx, rx) = std::sync::mpsc::channel();
        let c2 = c.clone();
        let t = std::thread::spawn(move || {
            G.with(|g| *g.borrow_mut() = Some(Guard(c2.clone(), tx)));
            // A first blocking receive sets up the spare commit word after the guard.
            assert_eq!(c2.recv(), 1);
        });
        c.send(1);
        c.send(2);
        t.join().unwrap();
        assert_eq!(rx.recv().unwrap(), 2);
    });
}

/// `after(d)` counts from the start of the sync, before any guard runs (a slow guard used to
/// delay the timeout it preceded).
#[test]
fn after_counts_from_before_the_guards() {
    use bobine::event::{self, Channel};
    common::watchdog(30, "after_counts_from_before_the_guards", || {
        bobine::Builder::new().domains(1).run(|| {
            let c: Channel<()> = Channel::new();
            let start = std::time::Instant::now();
            let slow_guard = event::guard(move || {
                std::thread::sleep(Duration::from_millis(300));
                c.recv_evt()
            });
            event::select(vec![slow_guard, event::after(Duration::from_millis(250))]);
            // The timeout counted from the start, so it was already due when the guard ended:
            // the sync returns right after the 300 ms guard, not 250 ms later (550 ms). The
            // bound leaves 200 ms of slack for a loaded machine.
            let took = start.elapsed();
            assert!(took < Duration::from_millis(500), "{took:?}");
        });
    });
}

// ---------------------------------------------------------------------------------------------
// The soundness and shutdown holes of the core review (issue 9), one test each. Cases that
// crashed, aborted or hung the process run in a child process, which is killed past a limit.

const HOLE_CHILD: &str = "BOBINE_HOLE_CHILD";

/// Runs `test` (a test of this file) in a child process with `HOLE_CHILD` set, killing it
/// after `secs`; returns its stderr after checking that it ended on its own, successfully.
fn hole_child(test: &str, secs: u64) -> String {
    common::child::run_ok(HOLE_CHILD, test, secs)
}

/// Whether this process is the child run of `test`.
fn in_hole_child(test: &str) -> bool {
    common::child::is_child_of(HOLE_CHILD, test)
}

/// Hole 1: a scope's task spawned from a plain OS thread (a `std::thread::scope` thread inside
/// the bobine scope) runs on the scope owner's runtime, and the owner does not return before
/// it ends, even when `run` ends meanwhile. The task used to run on the global runtime, and
/// reading the owner's stack after the owner had been unwound crashed the process.
#[test]
fn scoped_task_spawned_from_a_plain_thread_stays_on_the_owners_runtime() {
    const NAME: &str = "scoped_task_spawned_from_a_plain_thread_stays_on_the_owners_runtime";
    if in_hole_child(NAME) {
        use std::sync::Mutex;
        static SEEN: Mutex<Vec<String>> = Mutex::new(Vec::new());
        // Domain 0 is this thread.
        let here = std::thread::current().name().unwrap_or_default().to_owned();
        bobine::Builder::new().domains(2).run(|| {
            drop(bobine::thread::spawn(|| {
                let data = vec![7u64; 1000];
                bobine::thread::scope(|s| {
                    std::thread::scope(|ts| {
                        ts.spawn(|| {
                            s.spawn(|| {
                                let name = std::thread::current().name().map(str::to_owned);
                                SEEN.lock().unwrap().push(name.unwrap_or_default());
                                // Outlives `run`'s main task; reads the owner's stack after.
                                for _ in 0..20 {
                                    bobine::thread::sleep(Duration::from_millis(5));
                                    assert_eq!(data.iter().sum::<u64>(), 7000);
                                }
                            });
                        });
                    });
                });
            }));
            bobine::thread::sleep(Duration::from_millis(30));
        });
        let seen = SEEN.lock().unwrap();
        assert_eq!(seen.len(), 1, "the scoped task ran once");
        assert!(
            seen[0] == here || seen[0].starts_with("bobine-domain-"),
            "the scoped task ran on {:?}, not on the owner's runtime",
            seen[0]
        );
        return;
    }
    hole_child(NAME, 30);
}

/// Hole 1, second part: a scope opened by a destructor at shutdown, whose task is stopped
/// before it runs, still ends: the task's closure gives its count back when it is dropped (it
/// used to stay counted, and the owner waited for ever).
#[test]
fn scope_whose_task_never_runs_still_ends() {
    const NAME: &str = "scope_whose_task_never_runs_still_ends";
    if in_hole_child(NAME) {
        use std::sync::atomic::{AtomicBool, Ordering};
        static RAN: AtomicBool = AtomicBool::new(false);
        static ENDED: AtomicBool = AtomicBool::new(false);
        struct ScopeOnDrop;
        impl Drop for ScopeOnDrop {
            fn drop(&mut self) {
                bobine::thread::scope(|s| {
                    s.spawn(|| RAN.store(true, Ordering::SeqCst));
                });
                ENDED.store(true, Ordering::SeqCst);
            }
        }
        bobine::Builder::new().domains(1).run(|| {
            // Never started: main returns before it runs, so the shutdown drops its closure.
            let g = ScopeOnDrop;
            drop(bobine::thread::spawn(move || drop(g)));
        });
        assert!(ENDED.load(Ordering::SeqCst), "the scope ended");
        assert!(
            !RAN.load(Ordering::SeqCst),
            "a task spawned at shutdown never runs"
        );
        return;
    }
    hole_child(NAME, 30);
}

/// Hole 3: a task that panics while a `BufWriter<TcpStream>` holds data flushes it in the
/// destructor: when the socket is full the flush parks the task until the peer reads, and
/// everything arrives (it used to abort the process). A lock taken by a destructor during the
/// panic waits for its holder the same way.
#[test]
fn blocking_while_panicking_parks_instead_of_aborting() {
    const NAME: &str = "blocking_while_panicking_parks_instead_of_aborting";
    if in_hole_child(NAME) {
        use std::io::{BufWriter, Read, Write};
        use std::sync::Arc;
        const BYTES: usize = 32 << 20;
        bobine::Builder::new().domains(1).run(|| {
            let listener = bobine::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let writer = bobine::thread::spawn(move || {
                let stream = bobine::net::TcpStream::connect(addr).unwrap();
                let mut w = BufWriter::with_capacity(BYTES, stream);
                w.write_all(&vec![1u8; BYTES]).unwrap();
                panic!("boom with data in the buffer");
            });
            let (mut peer, _) = listener.accept().unwrap();
            // Let the writer panic and fill the socket before anyone reads.
            bobine::thread::sleep(Duration::from_millis(50));
            assert!(!writer.is_finished(), "the flush waits for the reader");
            let mut got = 0;
            let mut buf = vec![0u8; 1 << 16];
            loop {
                let n = peer.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                got += n;
            }
            assert_eq!(got, BYTES, "every buffered byte arrived");
            let err = writer.join().unwrap_err();
            assert_eq!(
                common::panics::payload_text(&*err),
                "boom with data in the buffer"
            );

            // A destructor that locks a mutex held by another task of the same domain.
            let m = Arc::new(bobine::sync::Mutex::new(0u32));
            let held = m.lock().unwrap();
            struct LockOnDrop(Arc<bobine::sync::Mutex<u32>>);
            impl Drop for LockOnDrop {
                fn drop(&mut self) {
                    *self.0.lock().unwrap_or_else(|e| e.into_inner()) += 1;
                }
            }
            let m2 = m.clone();
            let locker = bobine::thread::spawn(move || {
                let _g = LockOnDrop(m2);
                panic!("boom holding a lock-taking destructor");
            });
            bobine::thread::sleep(Duration::from_millis(20));
            assert!(!locker.is_finished());
            drop(held);
            assert!(locker.join().is_err());
            assert_eq!(*m.lock().unwrap(), 1, "the destructor got the lock");
        });
        return;
    }
    hole_child(NAME, 60);
}

/// Hole 4: at shutdown, a destructor of a newer task that locks a mutex held by an older
/// parked task waits for it: the older task is stopped too, releases the mutex as it unwinds,
/// and the destructor gets it (it used to abort the process, a panic during unwinding).
#[test]
fn shutdown_destructor_waits_for_a_lock_held_by_an_older_task() {
    const NAME: &str = "shutdown_destructor_waits_for_a_lock_held_by_an_older_task";
    if in_hole_child(NAME) {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicU32, Ordering};
        static GOT: AtomicU32 = AtomicU32::new(0);
        struct LockOnDrop(Arc<bobine::sync::Mutex<u32>>);
        impl Drop for LockOnDrop {
            fn drop(&mut self) {
                let mut g = self.0.lock().unwrap();
                *g += 1;
                GOT.store(*g, Ordering::SeqCst);
            }
        }
        for domains in [1, 2] {
            GOT.store(0, Ordering::SeqCst);
            bobine::Builder::new().domains(domains).run(|| {
                let m = Arc::new(bobine::sync::Mutex::new(0u32));
                let (m1, m2) = (m.clone(), m.clone());
                // Older: holds the lock while it waits for ever.
                drop(bobine::thread::spawn(move || {
                    let _held = m1.lock().unwrap();
                    bobine::thread::sleep(Duration::from_secs(3600));
                }));
                bobine::thread::sleep(Duration::from_millis(10));
                // Newer: its destructor will need the lock.
                drop(bobine::thread::spawn(move || {
                    let _g = LockOnDrop(m2);
                    bobine::thread::sleep(Duration::from_secs(3600));
                }));
                bobine::thread::sleep(Duration::from_millis(10));
            });
            assert_eq!(GOT.load(Ordering::SeqCst), 1, "{domains} domain(s)");
        }
        return;
    }
    hole_child(NAME, 30);
}

/// Hole 5: the closure of a task that never started is dropped at shutdown as that task, so a
/// destructor that blocks (here on a lock an older task holds) parks it while the holder is
/// stopped (it used to block the domain's OS thread, and `run` hung).
#[test]
fn never_started_closure_may_wait_for_a_lock_at_shutdown() {
    const NAME: &str = "never_started_closure_may_wait_for_a_lock_at_shutdown";
    if in_hole_child(NAME) {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, Ordering};
        static GOT: AtomicBool = AtomicBool::new(false);
        struct LockOnDrop(Arc<bobine::sync::Mutex<()>>);
        impl Drop for LockOnDrop {
            fn drop(&mut self) {
                let _g = self.0.lock().unwrap();
                GOT.store(true, Ordering::SeqCst);
            }
        }
        bobine::Builder::new().domains(1).run(|| {
            let m = Arc::new(bobine::sync::Mutex::new(()));
            let m1 = m.clone();
            drop(bobine::thread::spawn(move || {
                let _held = m1.lock().unwrap();
                bobine::thread::sleep(Duration::from_secs(3600));
            }));
            bobine::thread::sleep(Duration::from_millis(10));
            let g = LockOnDrop(m);
            // Never runs: main returns first.
            drop(bobine::thread::spawn(move || drop(g)));
        });
        assert!(GOT.load(Ordering::SeqCst));
        return;
    }
    hole_child(NAME, 30);
}

/// Hole 6: a task that catches the runtime's unwind (`catch_unwind` around a blocking call) and
/// blocks again is reported by name and abandoned; `run` returns (it used to spin for ever).
/// One that re-raises the caught unwind later ends normally.
#[test]
fn task_that_swallows_the_runtimes_unwind_is_abandoned() {
    const NAME: &str = "task_that_swallows_the_runtimes_unwind_is_abandoned";
    if in_hole_child(NAME) {
        use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, Ordering};
        static RERAISED: AtomicBool = AtomicBool::new(false);
        bobine::Builder::new().domains(2).run(|| {
            let m = Arc::new(bobine::sync::Mutex::new(()));
            let held = m.lock().unwrap();
            let m1 = m.clone();
            drop(
                bobine::thread::Builder::new()
                    .name("swallower".into())
                    .spawn(move || {
                        loop {
                            let _ = catch_unwind(AssertUnwindSafe(|| drop(m1.lock())));
                        }
                    })
                    .unwrap(),
            );
            drop(bobine::thread::spawn(|| {
                let caught = catch_unwind(|| bobine::thread::sleep(Duration::from_secs(3600)));
                RERAISED.store(true, Ordering::SeqCst);
                if let Err(payload) = caught {
                    resume_unwind(payload);
                }
            }));
            bobine::thread::sleep(Duration::from_millis(20));
            std::mem::forget(held);
        });
        assert!(RERAISED.load(Ordering::SeqCst));
        return;
    }
    let stderr = hole_child(NAME, 30);
    assert!(
        stderr.contains("task 'swallower'") && stderr.contains("caught the runtime's unwind"),
        "{stderr}"
    );
}

/// Hole 8: a task stopped while it waits on a `Barrier` no longer counts towards its opening
/// (it used to stay counted, so the barrier later opened one waiter short).
#[test]
fn stopped_barrier_waiter_is_uncounted() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    common::watchdog(30, "stopped_barrier_waiter_is_uncounted", || {
        let barrier = Arc::new(bobine::sync::Barrier::new(2));
        let b = barrier.clone();
        bobine::Builder::new().domains(1).run(move || {
            drop(bobine::thread::spawn(move || {
                b.wait();
            }));
            bobine::thread::sleep(Duration::from_millis(10));
        });
        // Two plain threads now: the first must wait for the second.
        let second_arrived = Arc::new(AtomicBool::new(false));
        let (b1, flag) = (barrier.clone(), second_arrived.clone());
        let first = std::thread::spawn(move || {
            b1.wait();
            flag.load(Ordering::SeqCst)
        });
        std::thread::sleep(Duration::from_millis(50));
        second_arrived.store(true, Ordering::SeqCst);
        barrier.wait();
        assert!(
            first.join().unwrap(),
            "the barrier opened before the second waiter arrived"
        );
    });
}

/// Hole 9: a descriptor waited on through a raw wait does not keep a runtime's domain (its
/// epoll and eventfd) alive once that runtime has ended (it did until the descriptor number
/// was reused).
#[test]
fn raw_wait_does_not_keep_a_dead_domain_alive() {
    const NAME: &str = "raw_wait_does_not_keep_a_dead_domain_alive";
    if in_hole_child(NAME) {
        use std::io::Write;
        use std::os::fd::AsFd;
        let (a, mut b) = std::os::unix::net::UnixStream::pair().unwrap();
        let before = common::fds::open_fds();
        bobine::Builder::new().domains(1).run(|| {
            let h = bobine::thread::spawn(move || {
                bobine::io::wait_readable(a.as_fd()).unwrap();
                a
            });
            bobine::thread::sleep(Duration::from_millis(10));
            b.write_all(b"x").unwrap();
            let a = h.join().unwrap();
            // Keep `a` open past the runtime: its raw source stays in the table.
            std::mem::forget(a);
        });
        assert_eq!(
            common::fds::open_fds(),
            before,
            "the ended runtime's epoll and eventfd are closed"
        );
        return;
    }
    hole_child(NAME, 30);
}

/// Hole 11: a park superseded by a newer park of the same task says so when waited on (it
/// used to return `Unparked`, like a real wake-up).
#[test]
fn superseded_park_is_not_a_wake_up() {
    common::watchdog(30, "superseded_park_is_not_a_wake_up", || {
        bobine::Builder::new().domains(1).run(|| {
            let first = bobine::Park::new();
            let second = bobine::Park::new();
            assert!(!first.unparker().unpark(), "the first park is over");
            assert_eq!(first.wait("test"), bobine::Wake::Superseded);
            let u = second.unparker();
            assert!(u.unpark());
            assert_eq!(second.wait("test"), bobine::Wake::Unparked);
        });
    });
}

/// Hole 12: a panic hook installed before `run` sees the panics of tasks (it never did), and
/// the id in a task's panic report is its `ThreadId` (it used to be a per-runtime number).
#[test]
fn user_panic_hook_sees_task_panics_and_reports_use_the_thread_id() {
    const NAME: &str = "user_panic_hook_sees_task_panics_and_reports_use_the_thread_id";
    if in_hole_child(NAME) {
        let builtin_report = std::env::var_os("BOBINE_HOLE_DEFAULT_HOOK").is_some();
        if !builtin_report {
            std::panic::set_hook(Box::new(|info| {
                let t = bobine::thread::current();
                eprintln!(
                    "user hook: {} in {:?} ({})",
                    common::panics::payload_text(info.payload()),
                    t.name(),
                    t.id().as_u64()
                );
            }));
        }
        bobine::Builder::new().domains(1).run(|| {
            let h = bobine::thread::Builder::new()
                .name("worker".into())
                .spawn(|| panic!("task panic"))
                .unwrap();
            eprintln!("child: the task's id is {}", h.thread().id().as_u64());
            assert!(h.join().is_err());
        });
        return;
    }
    let id_of = |stderr: &str| {
        stderr
            .lines()
            .find_map(|l| l.strip_prefix("child: the task's id is "))
            .expect("the child announces the id")
            .to_owned()
    };
    let stderr = hole_child(NAME, 30);
    let id = id_of(&stderr);
    assert!(
        stderr.contains(&format!("user hook: task panic in Some(\"worker\") ({id})")),
        "{stderr}"
    );
    assert!(
        !stderr.contains("thread 'worker'"),
        "a user hook replaces the report\n{stderr}"
    );
    let (out, _) = common::child::run_within(
        NAME,
        &[(HOLE_CHILD, NAME), ("BOBINE_HOLE_DEFAULT_HOOK", "1")],
        Duration::from_secs(30),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let id = id_of(&stderr);
    assert!(
        stderr.contains(&format!("thread 'worker' (task {id}) panicked at")),
        "{stderr}"
    );
}

/// The shutdown never hangs on a wait nothing can end: a destructor's read of a socket nobody
/// writes to is given up (it returns an error) after the grace, with a report; a destructor
/// waiting for a lock that a plain thread keeps for ever is reported and its task abandoned;
/// `run` returns.
#[test]
fn shutdown_gives_up_waits_that_nothing_can_end() {
    const NAME: &str = "shutdown_gives_up_waits_that_nothing_can_end";
    if in_hole_child(NAME) {
        use std::io::Read;
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::{Arc, Mutex};
        static READ_ERROR: Mutex<Option<String>> = Mutex::new(None);
        static LOCKED: AtomicBool = AtomicBool::new(false);
        struct ReadOnDrop(bobine::net::UnixStream);
        impl Drop for ReadOnDrop {
            fn drop(&mut self) {
                let r = self.0.read(&mut [0u8; 8]);
                *READ_ERROR.lock().unwrap() = r.err().map(|e| e.to_string());
            }
        }
        struct LockOnDrop(Arc<bobine::sync::Mutex<()>>);
        impl Drop for LockOnDrop {
            fn drop(&mut self) {
                let _g = self.0.lock();
                LOCKED.store(true, Ordering::SeqCst);
            }
        }
        let m = Arc::new(bobine::sync::Mutex::new(()));
        let (locked_tx, locked_rx) = std::sync::mpsc::channel();
        let m1 = m.clone();
        // A plain thread takes the lock and never gives it back.
        std::thread::spawn(move || {
            std::mem::forget(m1.lock().unwrap());
            locked_tx.send(()).unwrap();
        });
        locked_rx.recv().unwrap();
        let (a, _b) = bobine::net::UnixStream::pair().unwrap();
        let started = std::time::Instant::now();
        bobine::Builder::new().domains(2).run(move || {
            let reader = bobine::thread::Builder::new().name("reader".into());
            drop(reader.spawn(move || {
                let _g = ReadOnDrop(a);
                bobine::thread::sleep(Duration::from_secs(3600));
            }));
            let locker = bobine::thread::Builder::new().name("locker".into());
            drop(locker.spawn(move || {
                let _g = LockOnDrop(m);
                bobine::thread::sleep(Duration::from_secs(3600));
            }));
            bobine::thread::sleep(Duration::from_millis(20));
        });
        eprintln!("child: run returned after {:?}", started.elapsed());
        let err = READ_ERROR.lock().unwrap().clone().expect("the read failed");
        assert!(err.contains("given up"), "{err}");
        assert!(
            !LOCKED.load(Ordering::SeqCst),
            "the abandoned destructor never got the lock"
        );
        return;
    }
    let stderr = hole_child(NAME, 60);
    assert!(
        stderr.contains("task 'reader'") && stderr.contains("that wait is given up"),
        "{stderr}"
    );
    assert!(
        stderr.contains("task 'locker'")
            && stderr.contains("stayed blocked in Mutex::lock")
            && stderr.contains("it is abandoned"),
        "{stderr}"
    );
}

/// Cancels and joins a task when dropped: the scope-guard pattern, and what Miou's tear-down
/// does for the children of a task that unwinds.
struct CancelAndJoin(Option<bobine::thread::JoinHandle<()>>);

impl Drop for CancelAndJoin {
    fn drop(&mut self) {
        if let Some(h) = self.0.take() {
            h.cancel();
            assert!(h.join().unwrap_err().is::<bobine::TaskCancelled>());
        }
    }
}

/// A destructor that cancels and joins a task parked on its domain, while its own task unwinds
/// (from a panic or a cancellation), returns: the parked task is stopped. It hung: the stop of
/// the parked task was deferred because the thread's panic count was raised, by the unwinding
/// task itself, although the parked task had switched out with the count at zero and so was
/// certainly not unwinding. Miou's `cancel` of a child parked in `await_` on a grandchild of
/// the same domain hung the same way.
#[test]
fn destructor_cancelling_a_parked_task_during_an_unwind_returns() {
    common::watchdog(30, "destructor_cancelling_a_parked_task", || {
        bobine::Builder::new().domains(1).run(|| {
            for cancel in [false, true] {
                let guard_ran = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
                let ran = guard_ran.clone();
                let owner = bobine::thread::spawn(move || {
                    let parked = bobine::thread::spawn(|| {
                        bobine::thread::sleep(Duration::from_secs(3600));
                    });
                    let _guard = CancelAndJoin(Some(parked));
                    // Let the other task park first.
                    bobine::thread::yield_now();
                    ran.store(true, std::sync::atomic::Ordering::SeqCst);
                    if !cancel {
                        panic!("regression: unwinding into a destructor that cancels and joins");
                    }
                    bobine::thread::sleep(Duration::from_secs(3600));
                });
                bobine::thread::yield_now();
                bobine::thread::yield_now();
                assert!(guard_ran.load(std::sync::atomic::Ordering::SeqCst));
                if cancel {
                    owner.cancel();
                }
                let err = owner.join().unwrap_err();
                assert_eq!(err.is::<bobine::TaskCancelled>(), cancel);
            }
        });
    });
}
