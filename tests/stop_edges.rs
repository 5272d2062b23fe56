//! Edge cases of stops and shutdown, found by an independent review of the stop protocol: each
//! test reproduces a bug that review found (hangs, aborts, lost hand-overs, wrong poisoning) and
//! failed on the code it was written against. Tests that could hang, abort or leave the process
//! in a broken state run in a child process (see `child`).

mod common;

use std::os::fd::AsFd;
use std::panic::catch_unwind;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::tasks::{LockOnDrop, RecvOnDrop};

const CHILD: &str = "BOBINE_STOP_EDGES_CHILD";

/// Whether this process is the child run of `test`.
fn in_child(test: &str) -> bool {
    common::child::is_child_of(CHILD, test)
}

/// Runs `test` in a child process (see `common::child::run_ok`); returns its stderr.
fn child(test: &str, secs: u64) -> String {
    common::child::run_ok(CHILD, test, secs)
}

/// Spawns a task that panics and whose destructor then waits (on `rx`): it stays switched out
/// in the middle of its unwind, so its domain's OS thread keeps a raised panic count while
/// the domain runs the other tasks.
fn park_mid_unwind(rx: bobine::sync::mpsc::Receiver<()>) -> bobine::thread::JoinHandle<()> {
    let h = bobine::thread::spawn(move || {
        let _w = RecvOnDrop(rx);
        panic!("review: this task's destructor waits in the middle of its unwind");
    });
    bobine::thread::sleep(Duration::from_millis(20));
    h
}

/// A destructor that waits for a raw descriptor nobody writes to is given up at shutdown
/// like any other readiness wait (the 100 ms revalidation of `io::wait_readable` wakes the task,
/// which the shutdown counts as progress, so the grace never elapses and `run` hangs).
#[test]
fn raw_descriptor_wait_in_a_destructor_is_given_up_at_shutdown() {
    const NAME: &str = "raw_descriptor_wait_in_a_destructor_is_given_up_at_shutdown";
    if in_child(NAME) {
        struct WaitOnDrop(std::os::unix::net::UnixStream);
        impl Drop for WaitOnDrop {
            fn drop(&mut self) {
                let r = bobine::io::wait_readable(self.0.as_fd());
                eprintln!("child: wait_readable returned {r:?}");
            }
        }
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        bobine::Builder::new().domains(1).run(move || {
            drop(bobine::thread::spawn(move || {
                let _w = WaitOnDrop(a);
                bobine::thread::sleep(Duration::from_secs(3600));
            }));
            bobine::thread::sleep(Duration::from_millis(20));
        });
        drop(b);
        return;
    }
    let stderr = child(NAME, 20);
    assert!(stderr.contains("that wait is given up"), "{stderr}");
}

/// A task that caught a panic of its own (`catch_unwind`) while holding a mutex is not
/// unwinding when it unlocks it afterwards: the mutex is not poisoned, even while another task of its domain is switched out in
/// the middle of an unwind (its record `unwinds` is never cleared after the catch, and with
/// the thread's panic count raised by the other task it is taken for unwinding).
#[test]
fn caught_panic_does_not_poison_later_unlocks() {
    common::watchdog(30, "caught_panic_does_not_poison_later_unlocks", || {
        let poisoned = bobine::Builder::new().domains(1).run(|| {
            let (tx, rx) = bobine::sync::mpsc::channel::<()>();
            let b = park_mid_unwind(rx);
            let t = bobine::thread::spawn(|| {
                let m = bobine::sync::Mutex::new(0u32);
                let mut g = m.lock().unwrap();
                let _ = catch_unwind(|| panic!("review: caught at once"));
                *g += 1;
                drop(g);
                m.is_poisoned()
            });
            let poisoned = t.join().unwrap();
            tx.send(()).unwrap();
            assert!(b.join().is_err());
            poisoned
        });
        assert!(
            !poisoned,
            "a mutex unlocked normally by a task that had caught a panic was poisoned"
        );
    });
}

/// At shutdown, a task that once caught a panic of its own and now loops on `sleep`, while
/// another task of its domain is parked for ever in the middle of an unwind, does not hang
/// `run` (it used to: taken for unwinding, its sleeps never raised and each timer wake-up
/// counted as progress). Whether it is unwinding cannot be told then (std's panic count is the
/// thread's), so its stop is deferred; its sleeps are given up, and past that it is abandoned,
/// with a report.
#[test]
fn task_that_caught_a_panic_ends_at_shutdown() {
    const NAME: &str = "task_that_caught_a_panic_ends_at_shutdown";
    if in_child(NAME) {
        static M: bobine::sync::Mutex<u32> = bobine::sync::Mutex::new(0);
        // A plain thread holds M for ever: the destructor below can only be abandoned.
        std::mem::forget(M.lock().unwrap());
        bobine::Builder::new().domains(1).run(|| {
            drop(bobine::thread::spawn(|| {
                let _l = LockOnDrop(&M);
                panic!("review: unwinding into a destructor that waits for ever");
            }));
            bobine::thread::sleep(Duration::from_millis(20));
            drop(
                bobine::thread::Builder::new()
                    .name("looper".into())
                    .spawn(|| {
                        let _ = catch_unwind(|| panic!("review: caught at once"));
                        loop {
                            bobine::thread::sleep(Duration::from_millis(10));
                        }
                    })
                    .unwrap(),
            );
            bobine::thread::sleep(Duration::from_millis(20));
        });
        return;
    }
    let stderr = child(NAME, 20);
    let looper: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("task 'looper'"))
        .collect();
    assert!(
        looper
            .iter()
            .all(|l| l.contains("given up") || l.contains("abandoned")),
        "{stderr}"
    );
}

/// A task unwinding from a panic that `io::unblock` resumed (`resume_unwind`: the panic hook
/// does not see it) whose destructor waits is not unwound again when the runtime stops it, even
/// while another task of its domain is parked mid-unwind (its unwind is not recorded, the
/// park reacts to the stop and raises out of the destructor: the process aborts).
#[test]
fn unblock_panic_with_a_waiting_destructor_survives_the_shutdown() {
    const NAME: &str = "unblock_panic_with_a_waiting_destructor_survives_the_shutdown";
    if in_child(NAME) {
        bobine::Builder::new().domains(1).run(|| {
            let (tx_b, rx_b) = bobine::sync::mpsc::channel::<()>();
            drop(park_mid_unwind(rx_b));
            let (tx_a, rx_a) = bobine::sync::mpsc::channel::<()>();
            drop(bobine::thread::spawn(move || {
                let _w = RecvOnDrop(rx_a);
                bobine::io::unblock(|| panic!("review: a panic in the blocking pool"));
            }));
            bobine::thread::sleep(Duration::from_millis(100));
            // Nobody will send: both destructors wait until the shutdown abandons them.
            std::mem::forget(tx_a);
            std::mem::forget(tx_b);
        });
        eprintln!("child: run returned");
        return;
    }
    let stderr = child(NAME, 30);
    assert!(stderr.contains("child: run returned"), "{stderr}");
}

/// The same with a panic hook the user installs inside `run` (it replaces bobine's, so a
/// task's panic is not recorded either): a stopped task whose destructor waits aborts the
/// process at shutdown.
#[test]
fn user_hook_installed_in_run_and_a_waiting_destructor_survive_the_shutdown() {
    const NAME: &str = "user_hook_installed_in_run_and_a_waiting_destructor_survive_the_shutdown";
    if in_child(NAME) {
        bobine::Builder::new().domains(1).run(|| {
            std::panic::set_hook(Box::new(|_| {}));
            let (tx_b, rx_b) = bobine::sync::mpsc::channel::<()>();
            drop(park_mid_unwind(rx_b));
            let (tx_a, rx_a) = bobine::sync::mpsc::channel::<()>();
            drop(bobine::thread::spawn(move || {
                let _w = RecvOnDrop(rx_a);
                panic!("review: a task panic the user's hook sees");
            }));
            bobine::thread::sleep(Duration::from_millis(50));
            std::mem::forget(tx_a);
            std::mem::forget(tx_b);
        });
        eprintln!("child: run returned");
        return;
    }
    let stderr = child(NAME, 30);
    assert!(stderr.contains("child: run returned"), "{stderr}");
}

/// A mutex that a plain thread hands over (unlock) to a waiter the shutdown abandoned goes to
/// nobody: the abandoned waiter's queue node stays linked, takes the hand-off, and the mutex
/// stays locked for ever.
#[test]
fn mutex_released_after_its_waiter_was_abandoned_is_not_lost() {
    static M: bobine::sync::Mutex<u32> = bobine::sync::Mutex::new(0);
    common::watchdog(30, "mutex_released_after_its_waiter_was_abandoned", || {
        let g = M.lock().unwrap();
        // The runtime on its own OS thread, so that this thread's panic count stays clean.
        std::thread::spawn(|| {
            bobine::Builder::new().domains(1).run(|| {
                drop(bobine::thread::spawn(|| {
                    let _l = LockOnDrop(&M);
                    bobine::thread::sleep(Duration::from_secs(3600));
                }));
                bobine::thread::sleep(Duration::from_millis(20));
            });
        })
        .join()
        .unwrap();
        drop(g);
        assert!(
            M.try_lock().is_ok(),
            "the mutex went to an abandoned task and stays locked for ever"
        );
    });
}

/// A task abandoned at shutdown in the middle of an unwind on domain 0 (the caller's thread)
/// leaves that thread's panic count raised for good (std keeps it per thread, and nothing can
/// bring it down: this is documented). It is reported, and a bobine lock the caller held
/// across `run` is not poisoned when the caller releases it afterwards.
#[test]
fn abandoned_unwind_on_the_callers_thread_does_not_poison_its_locks() {
    const NAME: &str = "abandoned_unwind_on_the_callers_thread_does_not_poison_its_locks";
    if in_child(NAME) {
        static M: bobine::sync::Mutex<u32> = bobine::sync::Mutex::new(0);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            std::mem::forget(M.lock().unwrap());
            tx.send(()).unwrap();
        });
        rx.recv().unwrap();
        let mine = bobine::sync::Mutex::new(0u32);
        let g = mine.lock().unwrap();
        bobine::Builder::new().domains(1).run(|| {
            let started = Arc::new(AtomicBool::new(false));
            let flag = started.clone();
            drop(bobine::thread::spawn(move || {
                let _l = LockOnDrop(&M);
                flag.store(true, Ordering::Release);
                bobine::thread::sleep(Duration::from_secs(3600));
            }));
            // Until the task holds its guard: a fixed 20 ms was sometimes not enough under
            // valgrind, and the task, never started, was dropped without ever locking.
            while !started.load(Ordering::Acquire) {
                bobine::thread::sleep(Duration::from_millis(1));
            }
        });
        drop(g);
        assert!(
            !mine.is_poisoned(),
            "the caller's bobine mutex was poisoned"
        );
        return;
    }
    let stderr = child(NAME, 30);
    assert!(
        stderr.contains("stayed blocked in Mutex::lock") && stderr.contains("it is abandoned"),
        "{stderr}"
    );
}

/// A `wrap_abort` that panics makes `select` panic, as documented; while another task of the
/// domain is parked in the middle of an unwind, whether the syncing task is unwinding cannot be
/// told (std's panic count is the thread's), and raising from a destructor would abort, so the
/// panic is then reported by the hook but not raised: the process never aborts.
#[test]
fn panicking_wrap_abort_is_raised_and_never_aborts() {
    use bobine::event::{Event, select};
    fn sync_with_panicking_abort() -> bool {
        catch_unwind(|| {
            select(vec![
                Event::always(1u32),
                Event::never().wrap_abort(|| panic!("review: abort panics")),
            ])
        })
        .is_err()
    }
    common::watchdog(30, "panicking_wrap_abort_is_raised", || {
        let (alone, beside) = bobine::Builder::new().domains(1).run(|| {
            let alone = bobine::thread::spawn(sync_with_panicking_abort)
                .join()
                .unwrap();
            let (tx, rx) = bobine::sync::mpsc::channel::<()>();
            let b = park_mid_unwind(rx);
            let beside = bobine::thread::spawn(sync_with_panicking_abort)
                .join()
                .unwrap();
            tx.send(()).unwrap();
            assert!(b.join().is_err());
            (alone, beside)
        });
        assert!(alone, "the wrap_abort's panic was dropped");
        assert!(
            !beside,
            "raised while it could not be told whether the task unwinds"
        );
    });
}

/// A task that caught the runtime's unwind at shutdown and then panics for real while holding
/// a mutex poisons it (its `stop_raised` stays set until its root, and `sched::panicking`
/// takes every later unwind of the task for the runtime's).
#[test]
fn real_panic_after_a_caught_stop_poisons() {
    static M: bobine::sync::Mutex<u32> = bobine::sync::Mutex::new(0);
    static PANICKED: AtomicBool = AtomicBool::new(false);
    common::watchdog(30, "real_panic_after_a_caught_stop_poisons", || {
        bobine::Builder::new().domains(1).run(|| {
            drop(bobine::thread::spawn(|| {
                let _ = catch_unwind(|| bobine::thread::sleep(Duration::from_secs(3600)));
                let mut g = M.lock().unwrap();
                *g += 1;
                PANICKED.store(true, Ordering::SeqCst);
                panic!("review: a real panic while holding M");
            }));
            bobine::thread::sleep(Duration::from_millis(20));
        });
        assert!(PANICKED.load(Ordering::SeqCst));
        assert!(
            M.is_poisoned(),
            "a task that panicked while holding the mutex did not poison it"
        );
    });
}

/// A `Semaphore.Binary` released twice, in a destructor at shutdown, while a waiter that the
/// shutdown stops is queued: nothing aborts and `run` returns. (It once did abort: a permit
/// handed to the unwinding waiter was passed on with `Semaphore::release`, which panics on a
/// semaphore at its maximum, inside a destructor.) The first release wakes the waiter and
/// leaves the permit free, the second finds the value at 1 already (two releases before the
/// woken waiter runs count once, as in OCaml), and the waiter, woken as it is stopped, takes
/// the permit as it comes back (its stop would take effect at its next park point: there is
/// none), so the value ends at 0.
#[test]
fn binary_semaphore_permit_of_an_unwound_waiter_is_passed_on() {
    const NAME: &str = "binary_semaphore_permit_of_an_unwound_waiter_is_passed_on";
    if in_child(NAME) {
        use bobine::ocaml::semaphore::binary;
        let s = binary::make(false);
        let s2 = s.clone();
        bobine::Builder::new().domains(1).run(move || {
            // Queued first at shutdown: its destructor releases twice (the second release of a
            // binary semaphore at 1 leaves it at 1).
            struct ReleaseTwice(binary::T);
            impl Drop for ReleaseTwice {
                fn drop(&mut self) {
                    binary::release(&self.0);
                    binary::release(&self.0);
                }
            }
            let s1 = s2.clone();
            drop(bobine::thread::spawn(move || {
                let _r = ReleaseTwice(s1);
                bobine::thread::sleep(Duration::from_secs(3600));
            }));
            // Then the waiter.
            drop(bobine::thread::spawn(move || binary::acquire(&s2)));
            bobine::thread::sleep(Duration::from_millis(20));
        });
        eprintln!("child: run returned; value {}", binary::try_acquire(&s));
        return;
    }
    let stderr = child(NAME, 30);
    assert!(
        stderr.contains("child: run returned; value false"),
        "{stderr}"
    );
}
