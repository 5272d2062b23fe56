//! Async interop: `bobine::block_on` drives futures from tasks and plain threads.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::tasks::spawn_ticker;

/// A future that is ready at once needs no wake-up.
#[test]
fn block_on_a_ready_future() {
    common::watchdog(20, "block_on_a_ready_future", || {
        assert_eq!(bobine::run(|| bobine::block_on(async { 6 * 7 })), 42);
        assert_eq!(bobine::block_on(async { "outside" }), "outside");
    });
}

/// A future woken from a plain thread later: the task parks meanwhile and the other tasks of
/// its one domain keep running.
#[test]
fn block_on_parks_the_task_not_the_domain() {
    common::watchdog(20, "block_on_parks_the_task_not_the_domain", || {
        bobine::Builder::new().domains(1).run(|| {
            let ticks = Arc::new(AtomicUsize::new(0));
            let stop = Arc::new(AtomicBool::new(false));
            let ticker = spawn_ticker(ticks.clone(), stop.clone());
            let (tx, rx) = tokio::sync::oneshot::channel::<u32>();
            // The main task reads the count and goes straight into `block_on` (one domain: the
            // ticker cannot run in between). The future is only woken once the ticker has
            // ticked three more times, so if the wait blocked the domain it would never end
            // (and the watchdog would fail the test).
            let before = ticks.load(Ordering::SeqCst);
            let seen = ticks.clone();
            let sender = std::thread::spawn(move || {
                while seen.load(Ordering::SeqCst) < before + 3 {
                    std::thread::sleep(Duration::from_millis(1));
                }
                tx.send(5).unwrap();
            });
            assert_eq!(bobine::block_on(rx).unwrap(), 5);
            assert!(ticks.load(Ordering::SeqCst) >= before + 3);
            stop.store(true, Ordering::SeqCst);
            ticker.join().unwrap();
            sender.join().unwrap();
        })
    });
}

/// An async-only client used from ordinary tasks: a tokio runtime runs on a side thread (its
/// reactor and timers), bobine tasks call into it with `block_on`.
#[test]
fn tasks_await_a_tokio_runtime_on_a_side_thread() {
    common::watchdog(30, "tasks_await_a_tokio_runtime_on_a_side_thread", || {
        let tokio_rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let handle = tokio_rt.handle().clone();
        let total = bobine::Builder::new().domains(2).run(move || {
            let tasks: Vec<_> = (0..20u64)
                .map(|i| {
                    let handle = handle.clone();
                    bobine::thread::spawn(move || {
                        // A tokio timer and a tokio task, awaited from a bobine task.
                        let job = handle.spawn(async move {
                            tokio::time::sleep(Duration::from_millis(5)).await;
                            i * 2
                        });
                        bobine::block_on(job).unwrap()
                    })
                })
                .collect();
            tasks.into_iter().map(|t| t.join().unwrap()).sum::<u64>()
        });
        assert_eq!(total, (0..20u64).map(|i| i * 2).sum());
        drop(tokio_rt);
    });
}

/// Many wake-ups, some during the poll, some between polls, from several threads: every item
/// of a tokio mpsc channel arrives.
#[test]
fn block_on_loses_no_wake_up() {
    common::watchdog(30, "block_on_loses_no_wake_up", || {
        bobine::Builder::new().domains(2).run(|| {
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<u32>();
            let senders: Vec<_> = (0..4)
                .map(|_| {
                    let tx = tx.clone();
                    std::thread::spawn(move || {
                        for i in 0..2_000 {
                            tx.send(i).unwrap();
                            if i % 64 == 0 {
                                std::thread::yield_now();
                            }
                        }
                    })
                })
                .collect();
            drop(tx);
            let mut n = 0;
            while bobine::block_on(rx.recv()).is_some() {
                n += 1;
            }
            assert_eq!(n, 8_000);
            for s in senders {
                s.join().unwrap();
            }
        })
    });
}

/// A panic in `poll` goes on from `block_on`; a task cancelled while it waits unwinds.
#[test]
fn block_on_panics_and_cancellation() {
    common::watchdog(20, "block_on_panics_and_cancellation", || {
        bobine::run(|| {
            let h = bobine::thread::spawn(|| bobine::block_on(async { panic!("in the future") }));
            let payload = h.join().unwrap_err();
            assert_eq!(
                payload.downcast_ref::<&str>().copied(),
                Some("in the future")
            );
            let (_tx, rx) = tokio::sync::oneshot::channel::<()>();
            let waiting = bobine::thread::spawn(move || bobine::block_on(rx));
            bobine::thread::sleep(Duration::from_millis(20));
            waiting.cancel();
            let err = waiting.join().unwrap_err();
            assert!(err.downcast_ref::<bobine::TaskCancelled>().is_some());
        })
    });
}

#[path = "../examples/async_bridge.rs"]
#[allow(dead_code)]
mod async_bridge;

/// The async-bridge example (a tokio service and its async client on a side runtime, used from
/// bobine tasks through `block_on`, and a tokio task awaiting a bobine task) on one and two
/// domains: every client gets its own reply, and the awaited value arrives.
#[test]
fn async_bridge_example_runs() {
    common::watchdog(60, "async_bridge_example_runs", || {
        for domains in [1, 2] {
            let report = bobine::Builder::new()
                .domains(domains)
                .run(|| async_bridge::demo(16));
            let expected: Vec<String> = (0..16).map(|i| format!("HELLO {i}")).collect();
            assert_eq!(report.replies, expected, "{domains} domain(s)");
            assert_eq!(report.awaited, 2 * 3_628_800, "{domains} domain(s)");
        }
    });
}

/// A `Waker` that panics when the awaited task ends is the user's bug, not the scheduler's:
/// the domain reports it and goes on (its other tasks run, the handle still gives the value).
#[test]
fn a_panicking_waker_does_not_take_the_domain_down() {
    use std::future::Future;
    use std::task::{Context, Poll, RawWaker, RawWakerVTable, Waker};

    fn clone(p: *const ()) -> RawWaker {
        RawWaker::new(p, &VTABLE)
    }
    fn wake(_: *const ()) {
        panic!("a waker that panics");
    }
    fn noop(_: *const ()) {}
    static VTABLE: RawWakerVTable = RawWakerVTable::new(clone, wake, wake, noop);

    common::watchdog(
        30,
        "a_panicking_waker_does_not_take_the_domain_down",
        || {
            let value = bobine::Builder::new().domains(1).run(|| {
                let mut handle = bobine::thread::spawn(|| {
                    bobine::thread::sleep(Duration::from_millis(10));
                    7
                });
                // SAFETY: the vtable's functions ignore the data pointer.
                let waker = unsafe { Waker::from_raw(RawWaker::new(std::ptr::null(), &VTABLE)) };
                let mut cx = Context::from_waker(&waker);
                assert!(std::pin::Pin::new(&mut handle).poll(&mut cx).is_pending());
                // The task ends while this one sleeps: its domain wakes the panicking waker.
                bobine::thread::sleep(Duration::from_millis(50));
                let other = bobine::thread::spawn(|| 1).join().unwrap();
                let noop_waker = Waker::noop();
                let mut cx = Context::from_waker(noop_waker);
                match std::pin::Pin::new(&mut handle).poll(&mut cx) {
                    Poll::Ready(v) => v.unwrap() + other,
                    Poll::Pending => panic!("the task has ended"),
                }
            });
            assert_eq!(value, 8);
        },
    );
}
