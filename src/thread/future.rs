//! `impl Future for JoinHandle<T>`: async code awaits a task.
//!
//! ## The hand-shake with the task's end
//!
//! The task's joiners (`Task::add_joiner`, `Task::finish`) take a waker too: a poll registers
//! its context's waker there, and the task's end wakes it, once.
//!
//! 1. The poll checks whether the task has finished (acquire); if so, go to 4.
//! 2. It registers its waker in the task's joiner list, under the list's lock, replacing the
//!    waker of an earlier poll (only the task's one handle registers one, so there is at most
//!    one); then it raises `has_joiners` and reads the task's state again (both SeqCst).
//! 3. Still not finished: the poll returns `Pending`. The task's end (stores FINISHED, then
//!    reads `has_joiners`, both SeqCst) sees the flag, takes the list and wakes the waker.
//!    A task that ended between 1 and 2 is seen by the re-read in 2 (the Dekker pair: at least
//!    one side sees the other), so no wake-up is lost.
//! 4. Finished: the poll withdraws its waker if it registered one, takes the outcome exactly as
//!    `join` does, and returns `Ready`. The handle is then spent: polling it again panics (as
//!    std's futures do after completion), and dropping it no longer detaches.
//!
//! A pending handle dropped withdraws its waker and detaches the task, as dropping an
//! unpolled handle does.
//!
//! The waker is woken on the ended task's domain thread, between two tasks (also for a task
//! the shutdown abandoned): like any waker it must be quick and must not block.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use super::{JoinHandle, Result, take_outcome};

/// Awaiting a task gives what [`JoinHandle::join`] gives: its value, or the payload of its
/// panic, cancellation or stop as `Err`.
///
/// ```
/// let h = bobine::thread::spawn(|| 6 * 7);
/// assert_eq!(bobine::block_on(h).unwrap(), 42);
/// ```
///
/// # Panics
///
/// When polled again after it returned `Ready`.
impl<T: 'static> Future for JoinHandle<T> {
    type Output = Result<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T>> {
        let this = self.get_mut();
        assert!(!this.completed, "JoinHandle polled after completion");
        let task = this.thread.task().expect("a join handle refers to a task");
        // Step 1.
        if !task.is_finished() {
            // Step 2.
            this.waker_registered = true;
            if task.add_join_waker(cx.waker()) {
                // Step 3.
                return Poll::Pending;
            }
        }
        // Step 4.
        if this.waker_registered {
            task.remove_join_waker();
            this.waker_registered = false;
        }
        this.completed = true;
        Poll::Ready(take_outcome(task))
    }
}
