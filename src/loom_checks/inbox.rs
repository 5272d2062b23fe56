//! The cross-thread wake-up of a domain (`sched::domain`'s module doc, "Cross-thread wake-up",
//! steps 1-4): the real [`Doorbell`] (`attention` and `sleeping`), with the inbox (a lock), the
//! eventfd (a counter under a lock with a condition variable, read-to-reset as an eventfd is)
//! and the domain's loop modelled as `Local::run_until` and `Local::idle` do it (without the
//! spin before sleeping, which only changes when a wake-up is seen). A lost wake-up leaves the
//! domain asleep for ever: loom reports the deadlock. Keep in step with
//! `DomainShared::{push, take_inbox}` and `Local::idle`.

use loom::sync::{Arc, Condvar, Mutex};
use loom::thread;

use super::model;
use crate::sched::domain::ModelDoorbell as Doorbell;

const INBOX: u8 = 1;

/// The eventfd and the `epoll_wait` on it.
#[derive(Default)]
struct EventFd {
    count: Mutex<u32>,
    ready: Condvar,
}

impl EventFd {
    fn write(&self) {
        *self.count.lock().unwrap() += 1;
        self.ready.notify_one();
    }

    /// The domain sleeps until the eventfd is readable, and reads it.
    fn wait(&self) {
        let mut n = self.count.lock().unwrap();
        while *n == 0 {
            n = self.ready.wait(n).unwrap();
        }
        *n = 0;
    }
}

struct Domain {
    bell: Doorbell,
    inbox: Mutex<Vec<u32>>,
    eventfd: EventFd,
}

impl Domain {
    /// `DomainShared::push`: steps 1 and 2.
    fn push(&self, task: u32) {
        self.inbox.lock().unwrap().push(task);
        if self.bell.ring_inbox() {
            self.eventfd.write();
        }
    }

    /// The domain's loop until it has received `n` tasks: the per-round relaxed look at
    /// `attention`, then, with nothing to run, step 3 and the sleep.
    fn run_until(&self, n: usize) -> Vec<u32> {
        let mut got = Vec::new();
        while got.len() < n {
            if self.bell.peek() & INBOX != 0 {
                // `take_inbox`.
                self.bell.clear_inbox();
                got.append(&mut self.inbox.lock().unwrap());
                continue;
            }
            // `idle`: step 3.
            self.bell.begin_sleep();
            if self.bell.mail_pending() {
                self.bell.end_sleep();
                continue;
            }
            self.eventfd.wait();
            self.bell.end_sleep();
        }
        got
    }
}

fn domain() -> Arc<Domain> {
    Arc::new(Domain {
        bell: Doorbell::new(),
        inbox: Mutex::new(Vec::new()),
        eventfd: EventFd::default(),
    })
}

/// One waker, one domain going to sleep: the task arrives (the domain sees INBOX, or the waker
/// sees `sleeping` and writes the eventfd).
#[test]
fn loom_inbox_sleeping_no_lost_wakeup() {
    model(|| {
        let d = domain();
        let waker = {
            let d = d.clone();
            thread::spawn(move || d.push(7))
        };
        assert_eq!(d.run_until(1), vec![7]);
        waker.join().unwrap();
    });
}

/// Two wakers at once, while the domain drains and sleeps between them: both tasks arrive,
/// each once.
#[test]
fn loom_inbox_sleeping_two_wakers() {
    model(|| {
        let d = domain();
        let wakers: Vec<_> = (0..2)
            .map(|i| {
                let d = d.clone();
                thread::spawn(move || d.push(i))
            })
            .collect();
        let mut got = d.run_until(2);
        got.sort_unstable();
        assert_eq!(got, vec![0, 1], "each task once");
        for w in wakers {
            w.join().unwrap();
        }
    });
}
