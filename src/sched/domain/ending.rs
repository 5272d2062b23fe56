//! How tasks leave a domain: a task's end (its stack back to the pool, its joiners woken, its
//! count published for the shutdown), a task abandoned by the shutdown, and the domain's own
//! close once its runtime has ended.

use std::sync::atomic::Ordering;

use super::{Local, TaskPtr};

impl Local {
    pub(super) fn retire(&self, ptr: TaskPtr) {
        self.wait_out_inspection(ptr);
        let slot = {
            // SAFETY: the registry owns the task until we remove it below.
            let task = unsafe { ptr.as_ref() };
            // SAFETY: the fiber has returned; we are its domain thread.
            let fiber = unsafe { task.fiber_mut() }
                .take()
                .expect("a finished task had a fiber");
            self.stacks
                .borrow_mut()
                .put(&self.rt.arena, fiber.into_slot());
            task.finish();
            task.slot()
        };
        self.count_finished();
        // Last: this may be the task's last reference (a detached task).
        let owned = self.registry.borrow_mut().remove(slot);
        if let Some(owned) = owned {
            self.recycle(owned);
        }
    }

    /// One more task ended here (or was abandoned).
    fn count_finished(&self) {
        let n = self.finished.get() + 1;
        self.finished.set(n);
        // Release: whoever sees the count sees the task finished.
        self.shared.own.finished.store(n, Ordering::Release);
        if self.closing.get() {
            self.rt.progressed();
        }
    }

    /// Gives up on a suspended task for good (see `shutdown`): it never runs again; its fiber
    /// and stack are leaked where they are (frames on that stack may be borrowed by others,
    /// such as a wait-queue node, so the memory must stay), and it finishes as `TaskDropped`.
    pub(crate) fn abandon(&self, ptr: TaskPtr) {
        self.wait_out_inspection(ptr);
        // SAFETY: the registry owns the task until we remove it below; it is not running.
        let task = unsafe { ptr.as_ref() };
        // SAFETY: we are the task's domain thread and its fiber is suspended.
        let fiber = unsafe { task.fiber_mut() }.take();
        std::mem::forget(fiber);
        self.rt.arena.leak_around(task.overflow.guard_low);
        if task.switched_unwinding.get() {
            // Its unwind (if it was in one) stays in flight on this thread for ever.
            task.switched_unwinding.set(false);
            self.parked_unwinding.set(self.parked_unwinding.get() - 1);
            crate::sched::leak_unwind();
        }
        self.parked_stop_settled(task);
        task.parked.set(false);
        // Before `finish`: a waker that sees the task finished also sees why.
        task.abandoned.store(true, Ordering::Release);
        task.finish();
        let slot = task.slot();
        self.count_finished();
        let owned = self.registry.borrow_mut().remove(slot);
        // Never freed: queues may still hold uncounted pointers to the task (a channel
        // waiter's borrowed unparker) or nodes on its stack, which name it.
        std::mem::forget(owned);
    }

    /// The end of the shutdown, once every task of the runtime has ended: drops the timers,
    /// the inbox (wake-ups that came late) and every registration, and marks the domain closed
    /// so that descriptors shared with a later runtime register there.
    pub(crate) fn close(&self) {
        // Every task has ended: only markers of stolen tasks may be left.
        debug_assert!(self.run_queue.has_no_task() && self.stealable.is_empty());
        self.run_queue.clear();
        drop(self.shared.take_inbox());
        let timers = std::mem::take(&mut *self.timers.borrow_mut());
        drop(timers);
        self.shared.closed.store(true, Ordering::SeqCst);
        self.shared.poller().clear();
    }
}
