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
        let got: Vec<u32> = (0..2)
            .map(|_| rx.recv_timeout(Duration::from_secs(5)).unwrap())
            .collect();
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
