//! In-crate tests that need both a kernel hook that is not public (stopping a task with
//! `park::stop::interrupt`, the hook cancellation will build on) and a face to drive it (tasks,
//! scopes, channels). They live here, above the kernel, so that no kernel file names a face,
//! test code included.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::TaskDropped;
use crate::sched::park::Park;
use crate::sched::park::stop::interrupt;
use crate::sched::task::Task;

/// Exits the process if `f` has not returned within `secs` (a livelock or deadlock fails
/// the test run instead of hanging it).
fn within<T>(secs: u64, f: impl FnOnce() -> T) -> T {
    let done = Arc::new(AtomicBool::new(false));
    let flag = done.clone();
    std::thread::spawn(move || {
        let end = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        while std::time::Instant::now() < end {
            if flag.load(Ordering::Acquire) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        eprintln!("watchdog: a stop test hung");
        std::process::exit(3);
    });
    let out = f();
    done.store(true, Ordering::Release);
    out
}

/// The running task, once it has published itself in `slot`.
fn published(slot: &std::sync::Mutex<Option<Arc<Task>>>) -> Arc<Task> {
    loop {
        if let Some(t) = slot.lock().unwrap().clone() {
            return t;
        }
        crate::thread::yield_now();
    }
}

/// Hole 7: a scope owner that is stopped keeps waiting for its scoped tasks (an
/// uninterruptible wait: it used to loop straight back into a park that returned at once,
/// never letting its domain run anything else), and unwinds only once they have ended.
#[test]
fn stopped_scope_owner_waits_for_its_tasks() {
    within(30, || {
        crate::Builder::new().domains(1).run(|| {
            let slot: Arc<Mutex<Option<Arc<Task>>>> = Arc::new(Mutex::new(None));
            let order: Arc<Mutex<Vec<&str>>> = Arc::new(Mutex::new(Vec::new()));
            struct Record(Arc<Mutex<Vec<&'static str>>>, &'static str);
            impl Drop for Record {
                fn drop(&mut self) {
                    self.0.lock().unwrap().push(self.1);
                }
            }
            let (slot2, order2) = (slot.clone(), order.clone());
            let owner = crate::thread::spawn(move || {
                let _unwound = Record(order2.clone(), "owner unwound");
                *slot2.lock().unwrap() = crate::sched::current_task();
                crate::thread::scope(|s| {
                    s.spawn(|| {
                        crate::thread::sleep(std::time::Duration::from_millis(50));
                        order2.lock().unwrap().push("scoped task done");
                    });
                });
                order2.lock().unwrap().push("scope returned");
                // Stopped: the next park unwinds.
                crate::thread::sleep(std::time::Duration::from_secs(3600));
            });
            let task = published(&slot);
            crate::thread::sleep(std::time::Duration::from_millis(10));
            assert!(interrupt(&task));
            // The domain still runs other tasks (this one) while the owner waits.
            crate::thread::sleep(std::time::Duration::from_millis(10));
            assert!(!owner.is_finished());
            assert!(owner.join().unwrap_err().is::<TaskDropped>());
            assert_eq!(
                *order.lock().unwrap(),
                ["scoped task done", "scope returned", "owner unwound"]
            );
        });
    });
}

/// Hole 2: a stop requested from a plain thread while the task is starting on its domain
/// (`start` publishes the task's domain with the release store of STARTED, `interrupt`
/// reads it after an acquire load) always lands: every task ends stopped.
#[test]
fn stop_racing_the_first_run() {
    within(60, || {
        crate::Builder::new().domains(2).run(|| {
            let (tx, rx) = std::sync::mpsc::channel::<Arc<Task>>();
            let stopper = std::thread::spawn(move || {
                for task in rx {
                    assert!(interrupt(&task));
                }
            });
            for _ in 0..300 {
                let h = crate::thread::spawn(|| {
                    crate::sched::park::Park::new().wait("test");
                });
                tx.send(h.task().clone()).unwrap();
                assert!(h.join().unwrap_err().is::<TaskDropped>());
            }
            drop(tx);
            stopper.join().unwrap();
        });
    });
}

/// A stopped task unwinds out of its park (its destructors run, `join` gives
/// `TaskDropped`), and a park made by a destructor during that unwind really waits: the
/// destructor gets what it waits for.
#[test]
fn a_stopped_task_unwinds_and_its_destructors_may_wait() {
    crate::Builder::new().domains(2).run(|| {
        let slot: Arc<Mutex<Option<Arc<Task>>>> = Arc::new(Mutex::new(None));
        let (tx, rx) = crate::sync::mpsc::channel::<u32>();
        struct WaitsInDrop(crate::sync::mpsc::Receiver<u32>, Arc<Mutex<Option<u32>>>);
        impl Drop for WaitsInDrop {
            fn drop(&mut self) {
                *self.1.lock().unwrap() = self.0.recv().ok();
            }
        }
        let got = Arc::new(Mutex::new(None));
        let (slot2, got2) = (slot.clone(), got.clone());
        let h = crate::thread::spawn(move || {
            let _guard = WaitsInDrop(rx, got2);
            *slot2.lock().unwrap() = crate::sched::current_task();
            Park::new().wait("test");
            unreachable!("a stopped park unwinds");
        });
        let task = loop {
            if let Some(t) = slot.lock().unwrap().clone() {
                break t;
            }
            crate::thread::yield_now();
        };
        // Let the task reach its park, then stop it.
        crate::thread::sleep(std::time::Duration::from_millis(20));
        assert!(interrupt(&task));
        assert!(!interrupt(&task), "stopped once");
        crate::thread::sleep(std::time::Duration::from_millis(20));
        assert!(!h.is_finished(), "the destructor waits for its message");
        tx.send(9).unwrap();
        let err = h.join().unwrap_err();
        assert!(err.is::<crate::TaskDropped>());
        assert_eq!(*got.lock().unwrap(), Some(9));
    });
}
