//! In-crate tests that need both a kernel hook that is not public (stopping a task with
//! `park::stop::interrupt`, the hook cancellation will build on) and a face to drive it (tasks,
//! scopes, channels). They live here, above the kernel, so that no kernel file names a face,
//! test code included.

use std::sync::{Arc, Mutex};

use crate::TaskDropped;
use crate::sched::park::Park;
use crate::sched::park::stop::interrupt;
use crate::sched::task::Task;
use crate::util::within;

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

/// A CML `Channel::recv` stopped just as a sender commits with it does not lose the
/// value: the send has returned (it committed with the still-queued waiter), so the receiver
/// must get the value, the stop taking effect at its next park point (the stop's rule:
/// a value handed over as the stop lands is delivered, and nothing is lost). The stop's `Interrupted` wins the park word first, so
/// `wait_task` raises out of the park before the shorthand can see the commit, and the value
/// moved into the waiter's slot is dropped with its frame.
#[test]
fn stopped_channel_receiver_keeps_a_committed_value() {
    stopped_receiver_keeps_a_committed_value(|c| c.recv());
}

/// The same through a general sync (`recv_evt().sync()`): the partner claims and completes
/// the sync, then the syncer raises out of its park and `AbandonOnUnwind` drops the received
/// value.
#[test]
fn stopped_sync_receiver_keeps_a_committed_value() {
    stopped_receiver_keeps_a_committed_value(|c| c.recv_evt().sync());
}

/// The two tests above: a receiver parked in `recv` is stopped, then a send commits with its
/// still-queued offer.
fn stopped_receiver_keeps_a_committed_value(recv: fn(&crate::event::Channel<u32>) -> u32) {
    within(30, || {
        crate::Builder::new().domains(1).run(move || {
            let c: crate::event::Channel<u32> = crate::event::Channel::new();
            let slot: Arc<Mutex<Option<Arc<Task>>>> = Arc::new(Mutex::new(None));
            let got: Arc<Mutex<Option<u32>>> = Arc::new(Mutex::new(None));
            let (c2, slot2, got2) = (c.clone(), slot.clone(), got.clone());
            let h = crate::thread::spawn(move || {
                *slot2.lock().unwrap() = crate::sched::current_task();
                let v = recv(&c2);
                *got2.lock().unwrap() = Some(v);
                crate::thread::yield_now();
            });
            let task = published(&slot);
            crate::thread::sleep(std::time::Duration::from_millis(10));
            // Same domain: the stop's wake-up lands now; the receiver's offer is still queued.
            assert!(interrupt(&task));
            c.send(7);
            assert!(h.join().unwrap_err().is::<TaskDropped>());
            assert_eq!(
                *got.lock().unwrap(),
                Some(7),
                "the send committed, but the stopped receiver dropped the value"
            );
        });
    });
}

/// A `Condvar` notification given to a waiter that is stopped before it has relocked
/// the mutex goes to the next waiter (the condvar's doc: "a notification handed to it meanwhile
/// goes to the next waiter"). `wait_raw` returned `Notified`, so its `pass_on` is not armed any
/// more; the relock parks (the notifier still holds the mutex), raises, and the notification
/// is gone: the other consumer sleeps for ever with a value waiting.
#[test]
fn notification_of_a_waiter_stopped_while_relocking_is_passed_on() {
    within(30, || {
        crate::Builder::new().domains(1).run(|| {
            type Shared = (crate::sync::Mutex<Vec<u32>>, crate::sync::Condvar);
            let pair: Arc<Shared> = Arc::new(Default::default());
            let consumer = |pair: Arc<Shared>| {
                let slot: Arc<Mutex<Option<Arc<Task>>>> = Arc::new(Mutex::new(None));
                let slot2 = slot.clone();
                let h = crate::thread::spawn(move || {
                    *slot2.lock().unwrap() = crate::sched::current_task();
                    let (m, cv) = &*pair;
                    let mut g = m.lock().unwrap();
                    while g.is_empty() {
                        g = cv.wait(g).unwrap();
                    }
                    g.pop().unwrap()
                });
                (h, published(&slot))
            };
            let (first, first_task) = consumer(pair.clone());
            let (second, _) = consumer(pair.clone());
            crate::thread::sleep(std::time::Duration::from_millis(10));
            let (m, cv) = &*pair;
            let mut g = m.lock().unwrap();
            g.push(1);
            cv.notify_one(); // the first consumer is chosen
            assert!(interrupt(&first_task));
            // Still holding the mutex: the first consumer's relock parks, and is stopped there.
            crate::thread::sleep(std::time::Duration::from_millis(10));
            drop(g);
            assert!(first.join().unwrap_err().is::<TaskDropped>());
            // Were the notification lost, the second consumer would sleep for ever with a
            // value waiting, and the watchdog would end the run.
            assert_eq!(second.join().unwrap(), 1);
        });
    });
}

/// Re-runs this test binary on the in-crate test `name` alone, in a child process marked by
/// `BOBINE_IN_CRATE_CHILD`, killing it after `secs`; asserts that it ended on its own, without a
/// signal, and successfully.
fn child_run(name: &str, secs: u64) {
    use std::os::unix::process::ExitStatusExt;
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env("BOBINE_IN_CRATE_CHILD", name)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let end = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    let mut killed = false;
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() >= end {
            child.kill().unwrap();
            killed = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!killed, "child '{name}' hung\nstderr:\n{stderr}");
    assert_eq!(
        out.status.signal(),
        None,
        "child '{name}' was killed by a signal\nstderr:\n{stderr}"
    );
    assert!(
        out.status.success(),
        "child '{name}' failed\nstderr:\n{stderr}"
    );
}

/// Whether this process is the child run of the in-crate test `name` (see `child_run`).
fn in_child_run(name: &str) -> bool {
    std::env::var("BOBINE_IN_CRATE_CHILD").is_ok_and(|v| v == name)
}

/// A deferred stop that the domain resolves after a hand-over from another thread already woke
/// the task (its wake-up still in the inbox) leaves `known_clear` set: `wake_current` fails, the
/// task returns `Unparked`, and the flag is not consumed. Much later, a sleep in a destructor of
/// a real panic, given up at shutdown, reads it as "certainly not unwinding" and raises the
/// stop out of the destructor: the process aborts.
#[test]
fn stale_known_clear_does_not_raise_out_of_a_destructor() {
    const NAME: &str = "tests::stale_known_clear_does_not_raise_out_of_a_destructor";
    if !in_child_run(NAME) {
        return child_run(NAME, 30);
    }
    crate::Builder::new().domains(1).run(|| {
        struct RecvOnDrop(crate::sync::mpsc::Receiver<()>);
        impl Drop for RecvOnDrop {
            fn drop(&mut self) {
                let _ = self.0.recv();
            }
        }
        struct SleepOnDrop;
        impl Drop for SleepOnDrop {
            fn drop(&mut self) {
                crate::thread::sleep(std::time::Duration::from_secs(3600));
            }
        }
        // X stays switched out in the middle of an unwind while T parks: T's park defers stops.
        let (tx_x, rx_x) = crate::sync::mpsc::channel::<()>();
        let x = crate::thread::spawn(move || {
            let _w = RecvOnDrop(rx_x);
            panic!("review2: X unwinds into a destructor that waits");
        });
        crate::thread::sleep(std::time::Duration::from_millis(10));
        let slot: Arc<Mutex<Option<Arc<Task>>>> = Arc::new(Mutex::new(None));
        let slot2 = slot.clone();
        let (tx_t, rx_t) = crate::sync::mpsc::channel::<u32>();
        drop(crate::thread::spawn(move || {
            *slot2.lock().unwrap() = crate::sched::current_task();
            let v = rx_t.recv().unwrap();
            let _s = SleepOnDrop;
            panic!("review2: T panics for real after its hand-over ({v})");
        }));
        let task = published(&slot);
        crate::thread::sleep(std::time::Duration::from_millis(10));
        // X ends its unwind: the thread's panic count is zero again.
        tx_x.send(()).unwrap();
        assert!(x.join().is_err());
        // T is stopped while parked in a deferring park: the stop is deferred.
        assert!(interrupt(&task));
        // A plain thread hands T its message: T's park word is woken, its wake-up waits in the
        // domain's inbox.
        std::thread::spawn(move || tx_t.send(5).unwrap())
            .join()
            .unwrap();
        // Between this yield and the next task, the domain resolves the deferred stop (before it
        // drains the inbox): T is parked, its word is not armed any more.
        crate::thread::yield_now();
        // T gets its message, panics, and sleeps in its destructor; the runtime ends.
        crate::thread::sleep(std::time::Duration::from_millis(20));
    });
}
