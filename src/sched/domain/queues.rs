//! A domain's two single-threaded task structures, touched only by the domain's thread: the
//! registry, which owns every task the domain has started or keeps to itself, and the run
//! queue, which points into it and holds markers for the stealable deque (see "Who owns a task"
//! and "Work stealing" in the parent module).

use std::cell::UnsafeCell;
use std::collections::VecDeque;
use std::ptr::NonNull;
use std::sync::Arc;

use crate::sched::task::Task;

/// The tasks a domain owns (see "Who owns a task").
#[derive(Default)]
pub(super) struct Registry {
    pub(super) slots: Vec<Option<Arc<Task>>>,
    free: Vec<usize>,
}

impl Registry {
    pub(super) fn insert(&mut self, task: Arc<Task>) -> usize {
        match self.free.pop() {
            Some(i) => {
                self.slots[i] = Some(task);
                i
            }
            None => {
                self.slots.push(Some(task));
                self.slots.len() - 1
            }
        }
    }
    pub(super) fn remove(&mut self, i: usize) -> Option<Arc<Task>> {
        let t = self.slots.get_mut(i)?.take();
        if t.is_some() {
            self.free.push(i);
        }
        t
    }
}

/// A pointer to a task owned by the domain's registry.
pub(crate) type TaskPtr = NonNull<Task>;

/// A run-queue entry that stands for "the oldest never-started task still in the domain's
/// stealable deque" (see "Work stealing" in the parent module). No task lives at this address
/// (`NonNull::dangling` is the type's alignment, inside the never-mapped first page).
pub(super) const MARKER: TaskPtr = NonNull::dangling();

/// The FIFO run queue: non-owning pointers into the registry, and [`MARKER`]s.
///
/// Accessed only by the domain's thread (a `Local` is `!Sync`), and no borrow of the deque
/// escapes a method, so the methods cannot overlap; that is what the unsafe blocks rely on.
#[derive(Default)]
pub(super) struct RunQueue(UnsafeCell<VecDeque<TaskPtr>>);

impl RunQueue {
    #[inline]
    pub(super) fn push(&self, t: TaskPtr) {
        // SAFETY: see the type's doc: this is the only live reference to the deque.
        unsafe { (*self.0.get()).push_back(t) }
    }
    #[inline]
    pub(super) fn pop(&self) -> Option<TaskPtr> {
        // SAFETY: as in `push`.
        unsafe { (*self.0.get()).pop_front() }
    }
    pub(super) fn is_empty(&self) -> bool {
        // SAFETY: as in `push`.
        unsafe { (*self.0.get()).is_empty() }
    }
    /// Whether the queue holds no task pointer (markers aside).
    pub(super) fn has_no_task(&self) -> bool {
        // SAFETY: as in `push`.
        unsafe { (*self.0.get()).iter().all(|&t| t == MARKER) }
    }
    pub(super) fn clear(&self) {
        // SAFETY: as in `push`.
        unsafe { (*self.0.get()).clear() }
    }
}
