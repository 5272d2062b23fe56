//! Async interop: a future driven from blocking-style code.
//!
//! [`block_on`] polls a future in the caller: in a task, the task parks between polls (its
//! domain runs other tasks); outside any task, the OS thread blocks. The future's [`Waker`]
//! raises a flag and ends the caller's current park.
//!
//! ## The wake-up hand-shake
//!
//! 1. The caller polls the future. A wake during the poll raises `notified`.
//! 2. If the poll is pending, the caller takes `notified` (swap to false); if it was raised,
//!    it polls again.
//! 3. Otherwise it arms a park, stores the park's unparker in `waiter`, and takes `notified`
//!    once more: a wake between 2 and this store raised the flag (and found no waiter), so
//!    the caller polls again instead of parking.
//! 4. A waker raises `notified` (release), then takes `waiter` and unparks it: a waiter stored
//!    in step 3 before the waker's take is woken; one stored after it sees the flag in step 3.
//!
//! So no wake-up is lost, and a wake never polls the future on the waker's thread: the future
//! is only ever polled by the caller.

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

use crate::sched::park::{Park, Unparker, Wait};

/// The caller's side of a [`block_on`]: the flag and the parked caller.
struct Signal {
    notified: AtomicBool,
    waiter: Mutex<Option<Unparker>>,
}

impl Wake for Signal {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref()
    }

    /// Step 4.
    fn wake_by_ref(self: &Arc<Self>) {
        self.notified.store(true, Ordering::Release);
        let waiter = self.waiter.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(u) = waiter {
            u.unpark();
        }
    }
}

/// Runs `future` to completion and returns its output: in a task, the task parks while the
/// future is pending (its domain runs other tasks meanwhile); outside any task, the calling
/// thread blocks. The future is polled only here, on the caller's stack; its waker may be
/// called from any thread (an async runtime's reactor, a plain thread, another task).
///
/// So an async-only library can be used from ordinary bobine tasks, by running its reactor
/// elsewhere (a tokio runtime on a side thread, say) and awaiting its futures with `block_on`:
///
/// ```
/// let v = bobine::run(|| bobine::block_on(async { 6 * 7 }));
/// assert_eq!(v, 42);
/// ```
///
/// # Panics
///
/// A panic of the future's `poll` goes on from here. A task stopped while it waits (cancelled,
/// or its runtime ending) unwinds from here; the future is dropped as it unwinds.
#[track_caller]
pub fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let signal = Arc::new(Signal {
        notified: AtomicBool::new(false),
        waiter: Mutex::new(None),
    });
    let waker = Waker::from(signal.clone());
    let mut cx = Context::from_waker(&waker);
    loop {
        // Step 1.
        if let Poll::Ready(v) = future.as_mut().poll(&mut cx) {
            return v;
        }
        // Steps 2 and 3.
        while !signal.notified.swap(false, Ordering::AcqRel) {
            let park = Park::new();
            *signal.waiter.lock().unwrap_or_else(|e| e.into_inner()) = Some(park.unparker());
            if signal.notified.swap(false, Ordering::AcqRel) {
                break;
            }
            if park.wait_for(&Wait::hand_over("block_on")) == crate::Wake::Interrupted {
                // Nothing was handed over: a stopped task unwinds here.
                crate::sched::park::stop::unwind_if_stopped();
            }
        }
    }
}
