//! Cancellation delivery (`sched::park::stop`: [`interrupt`] on the canceller's side,
//! `interrupt_pending` / `stop_parked` on the domain's; the park protocol's steps 3, 4 and 6
//! around them), modelled with the real park word. The task's side and the domain's run on one
//! thread, in program order, as they do; the canceller and a hand-over waker run on others and
//! reach the domain through its inbox (a lock, then an unpark of the domain's thread, which
//! stands for the doorbell checked in `inbox`). Only the wait kinds that react to a stop, for
//! a task that is not unwinding (the table's first row), are modelled. Keep in step with
//! `park::wait_task`, `park::act_on_stop`, `stop::{interrupt, interrupt_pending, stop_parked}`
//! and `Local::{run_task, woken}`.
//!
//! [`interrupt`]: crate::sched::park::stop::interrupt

use loom::sync::atomic::AtomicBool;
use loom::sync::{Arc, Mutex};
use loom::thread;

use super::{Parker, model};
use crate::sched::park::{ParkWord, Wake};
use crate::util::atomic::Ordering;

struct Task {
    cancelled: AtomicBool,
    park: ParkWord,
    /// The domain's inbox: wake-up requests for the task (it is started: they only wake).
    inbox: Mutex<usize>,
    domain: Arc<Parker>,
}

impl Task {
    /// `interrupt`: the flag, then (the task has started) a wake-up request to its domain.
    fn interrupt(&self) -> bool {
        let first = !self.cancelled.swap(true, Ordering::AcqRel);
        self.request();
        first
    }

    /// `schedule` from another thread: through the inbox.
    fn request(&self) {
        *self.inbox.lock().unwrap() += 1;
        self.domain.unpark();
    }

    /// A hand-over: the waker's CAS, then a request (step 5).
    fn hand_over(&self, g: u64) -> bool {
        let woke = self.park.wake(g, Wake::Unparked);
        if woke {
            self.request();
        }
        woke
    }

    /// `Local::woken` for a started task (step 6), with `interrupt_pending` first; `parked` is
    /// the task's `parked` flag (the domain thread's alone). True if it queued the task.
    fn woken(&self, parked: &mut bool) -> bool {
        if *parked && self.cancelled.load(Ordering::Acquire) {
            // `stop_parked`: the task switched out with the panic count at zero.
            self.park.wake_current(Wake::Interrupted);
        }
        if *parked && !self.park.is_armed() {
            *parked = false;
            return true;
        }
        false
    }

    /// One park of the task, on the domain's thread: `wait_task` (step 3 and the stop
    /// decision), the switch, `run_task`'s step 4, then the domain handling its inbox (step 6)
    /// and sleeping while it has nothing to run, until the task is queued again.
    fn park_once(&self, g: u64) -> Wake {
        // Step 3.
        if let Some(why) = self.park.outcome(g) {
            return why;
        }
        if self.cancelled.load(Ordering::Acquire) {
            // `act_on_stop`, Raise: end the park; a hand-over that won first stands (the wait
            // settles with it and the stop stays pending).
            self.park.wake(g, Wake::Interrupted);
            return self.park.outcome(g).expect("ended");
        }
        // The switch; step 4.
        let mut parked = false;
        let mut queued = false;
        if self.park.is_armed() {
            parked = true;
            if self.cancelled.load(Ordering::Acquire) {
                queued = self.woken(&mut parked);
            }
        } else {
            queued = true;
        }
        while !queued {
            let requests = std::mem::take(&mut *self.inbox.lock().unwrap());
            for _ in 0..requests {
                queued |= self.woken(&mut parked);
            }
            if !queued {
                self.domain.park();
            }
        }
        self.park
            .outcome(g)
            .expect("a queued task's park has ended")
    }
}

fn task() -> Arc<Task> {
    Arc::new(Task {
        cancelled: AtomicBool::new(false),
        park: ParkWord::new(),
        inbox: Mutex::new(0),
        domain: Parker::new(),
    })
}

/// A task parks while it is cancelled from another thread: the stop ends that park (whether it
/// lands before the task looks, between its look and the switch, or once it is parked), and
/// exactly once; it is never lost (a parked task nobody wakes would be a deadlock loom reports).
#[test]
fn loom_stop_delivered_once_never_lost() {
    model(|| {
        let t = task();
        let canceller = {
            let t = t.clone();
            thread::spawn(move || t.interrupt())
        };
        let g = t.park.arm();
        assert_eq!(t.park_once(g), Wake::Interrupted, "the stop ends the park");
        assert!(canceller.join().unwrap(), "one stop, requested once");
    });
}

/// A stop races a hand-over (a lock or a message handed to the parked task): whichever wins the
/// park word, nothing is lost. The hand-over winning means the task keeps what it was handed and
/// the stop ends its next park; the stop winning means the hand-over failed (the waker keeps
/// what it would have handed). The stop is delivered exactly once either way.
#[test]
fn loom_stop_races_a_hand_over() {
    model(|| {
        let t = task();
        let g = t.park.arm();
        let waker = {
            let t = t.clone();
            thread::spawn(move || t.hand_over(g))
        };
        let canceller = {
            let t = t.clone();
            thread::spawn(move || t.interrupt())
        };
        let mut stops = 0;
        match t.park_once(g) {
            Wake::Unparked => {
                // Handed over: the wait returns normally. The next park point sees the stop.
                let g2 = t.park.arm();
                assert_eq!(t.park_once(g2), Wake::Interrupted, "the stop is not lost");
                stops += 1;
                assert!(waker.join().unwrap(), "the hand-over stands");
            }
            Wake::Interrupted => {
                stops += 1;
                assert!(!waker.join().unwrap(), "a hand-over after the stop failed");
            }
            other => panic!("unexpected end of the park: {other:?}"),
        }
        assert_eq!(stops, 1);
        assert!(canceller.join().unwrap());
    });
}
