//! A descriptor's readiness (`sched::reactor::source`'s module doc, steps 1-5), modelled: the
//! direction's `tick` and `interest` with the same orderings as `Source::{tick, wait, ready}`
//! and the `Interest` guard, the waiter list under a lock, the kernel's receive buffer as a
//! lock (a syscall orders like one), and the waiter's park as the real park word of a plain
//! thread. An edge missed leaves the waiter parked for ever: loom reports the deadlock. Keep in
//! step with `Source::{tick, wait, ready}`.

use loom::sync::atomic::{AtomicU64, AtomicUsize, fence};
use loom::sync::{Arc, Mutex};
use loom::thread;

use super::{Parker, model, wait_thread};
use crate::sched::park::{ParkWord, Wake};
use crate::util::atomic::Ordering;

struct Source {
    tick: AtomicU64,
    interest: AtomicUsize,
    /// The waiters (their park and its generation), under the source's lock.
    waiters: Mutex<Vec<(Arc<ParkWord>, u64, Arc<Parker>)>>,
    /// The kernel's receive buffer: bytes waiting to be read.
    kernel: Mutex<u32>,
}

impl Source {
    /// The operation: a non-blocking read of one byte; false on `EAGAIN`.
    fn try_read(&self) -> bool {
        let mut buf = self.kernel.lock().unwrap();
        if *buf == 0 {
            return false;
        }
        *buf -= 1;
        true
    }

    /// A blocking read by a task: steps 1-3, parking until an edge.
    fn read(&self) {
        loop {
            // Step 1.
            let tick = self.tick.load(Ordering::Acquire);
            if self.try_read() {
                return;
            }
            // Step 3 (step 2, registering, is done once and is not modelled).
            let mut waiters = self.waiters.lock().unwrap();
            self.interest.fetch_add(1, Ordering::SeqCst);
            // What C11 gives the SeqCst pair and loom does not model (see `dekker_fence`).
            fence(Ordering::SeqCst);
            if self.tick.load(Ordering::SeqCst) != tick {
                self.interest.fetch_sub(1, Ordering::SeqCst);
                continue;
            }
            let park = Arc::new(ParkWord::new());
            let parker = Parker::new();
            let g = park.arm();
            waiters.push((park.clone(), g, parker.clone()));
            drop(waiters);
            wait_thread(&park, g, &parker);
            // The `Interest` guard, as the waiter leaves (a waker unlinked it).
            self.interest.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Data arrives, then epoll reports the edge and the domain dispatches it (steps 4 and 5).
    fn data_arrives(&self) {
        *self.kernel.lock().unwrap() += 1;
        self.tick.fetch_add(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        if self.interest.load(Ordering::SeqCst) == 0 {
            return;
        }
        let woken = std::mem::take(&mut *self.waiters.lock().unwrap());
        for (park, g, parker) in woken {
            if park.wake(g, Wake::Unparked) {
                parker.unpark();
            }
        }
    }
}

fn source() -> Arc<Source> {
    Arc::new(Source {
        tick: AtomicU64::new(0),
        interest: AtomicUsize::new(0),
        waiters: Mutex::new(Vec::new()),
        kernel: Mutex::new(0),
    })
}

/// A reader that finds nothing to read and parks, racing the edge of the data's arrival: it
/// always reads the data (the poller sees its interest, or it sees the new tick).
#[test]
fn loom_readiness_edge_never_missed() {
    model(|| {
        let s = source();
        let poller = {
            let s = s.clone();
            thread::spawn(move || s.data_arrives())
        };
        s.read();
        poller.join().unwrap();
        assert_eq!(*s.kernel.lock().unwrap(), 0, "the byte was read once");
    });
}

/// Two bytes arriving in two edges, and a reader that reads twice: no edge is lost between
/// the two reads either, and interest is back to zero once nobody waits.
#[test]
fn loom_readiness_two_edges_two_reads() {
    model(|| {
        let s = source();
        let poller = {
            let s = s.clone();
            thread::spawn(move || {
                s.data_arrives();
                s.data_arrives();
            })
        };
        s.read();
        s.read();
        poller.join().unwrap();
        assert_eq!(s.interest.load(Ordering::SeqCst), 0);
    });
}
