//! The wait queue's protocols (`sched::waitqueue`'s module doc: "Protocol" steps 1-4 and
//! "Hand-off waits" steps 1-4), modelled: the list is a `VecDeque` under a lock (the
//! primitive's spin lock), each node has the real fields the protocol reads across threads
//! (`linked`, an atomic with the same orderings; `unparker`, `nudged` and `slot` as loom cells,
//! so that an access outside the lock that the protocol does not order is reported as a data
//! race), and each waiter parks on the real park word of a plain thread. The primitive is a
//! semaphore (permits handed over to the oldest waiter) or a rendezvous (a value moved into the
//! waiter's slot). Keep in step with `WaitIn::{park, park_handoff}`, `LeaveOnDrop`,
//! `WaitList::{take_front, pop_front_handoff, unlink}`.

use std::collections::VecDeque;

use loom::cell::UnsafeCell;
use loom::sync::{Arc, Mutex};
use loom::thread;

use super::{Parker, model, wait_thread};
use crate::sched::park::{ParkWord, Wake};
use crate::util::atomic::{AtomicBool, Ordering};

/// One waiter's node (on its stack in the real code) and what its unparker reaches.
struct Node {
    unparker: UnsafeCell<Option<u64>>,
    linked: AtomicBool,
    nudged: UnsafeCell<bool>,
    slot: UnsafeCell<Option<u32>>,
    park: ParkWord,
    parker: Arc<Parker>,
}

impl Node {
    fn new() -> Arc<Node> {
        Arc::new(Node {
            unparker: UnsafeCell::new(None),
            linked: AtomicBool::new(false),
            nudged: UnsafeCell::new(false),
            slot: UnsafeCell::new(None),
            park: ParkWord::new(),
            parker: Parker::new(),
        })
    }
}

/// An unparker taken out of a node: it reaches the waiter's park, never the node.
struct Unparker {
    park_of: Arc<Node>,
    g: u64,
}

impl Unparker {
    fn unpark(&self) -> bool {
        let woke = self.park_of.park.wake(self.g, Wake::Unparked);
        if woke {
            self.park_of.parker.unpark();
        }
        woke
    }
}

/// The primitive's state under its lock: free permits and the waiters.
struct State {
    permits: u32,
    list: VecDeque<Arc<Node>>,
}

struct Sem(Mutex<State>);

/// How a wait ended, as `Woken` says it.
#[derive(Debug, PartialEq, Eq)]
enum Woken {
    Notified,
    TimedOut,
}

impl Sem {
    fn new() -> Arc<Sem> {
        Arc::new(Sem(Mutex::new(State {
            permits: 0,
            list: VecDeque::new(),
        })))
    }

    /// `unlink`: the last touch of the node is the release store of `linked`.
    fn unlink(list: &mut VecDeque<Arc<Node>>, node: &Arc<Node>) {
        list.retain(|n| !Arc::ptr_eq(n, node));
        node.linked.store(false, Ordering::Release);
    }

    /// Step 2 (`take_front`), under the lock: the unparker out of the front node, then unlink.
    fn take_front(st: &mut State) -> Option<Unparker> {
        let node = st.list.front()?.clone();
        // SAFETY: (model) a linked node's fields are the lock holder's.
        let g = node.unparker.with_mut(|p| unsafe { (*p).take() });
        // SAFETY: (model) as above; `unlink`'s release store publishes it.
        node.nudged.with_mut(|p| unsafe { *p = false });
        Self::unlink(&mut st.list, &node);
        g.map(|g| Unparker { park_of: node, g })
    }

    /// A release: hands the permit to the oldest waiter (after the lock), else adds it to the
    /// count.
    fn release(&self) {
        let mut st = self.0.lock().unwrap();
        match Self::take_front(&mut st) {
            Some(u) => {
                drop(st);
                // A waiter always takes what a waker hands it (nobody is abandoned here).
                u.unpark();
            }
            None => st.permits += 1,
        }
    }

    /// `WaitIn::park` for one permit. `gives_up`: the waiter's park ends on its own (a deadline,
    /// a stop) at a point loom chooses, racing the waker. Returns how the wait ended; a
    /// `Notified` waiter holds a permit.
    fn acquire(&self, gives_up: bool) -> Woken {
        let mut st = self.0.lock().unwrap();
        if st.permits > 0 {
            st.permits -= 1;
            return Woken::Notified;
        }
        // Step 1: arm, link with the unparker, release the lock, park.
        let node = Node::new();
        let g = node.park.arm();
        // SAFETY: (model) the node is not linked yet.
        node.unparker.with_mut(|p| unsafe { *p = Some(g) });
        node.linked.store(true, Ordering::Relaxed);
        st.list.push_back(node.clone());
        drop(st);
        if gives_up {
            node.park.wake(g, Wake::TimedOut);
        }
        wait_thread(&node.park, g, &node.parker);
        // Step 3: unlinked (acquire) means chosen, whatever ended the park; the waker's
        // mark (`nudged`) is read as `Waiter::chosen` reads it, published by that store.
        // SAFETY: (model) unlinked: the node is ours again.
        let chosen = || node.nudged.with(|p| unsafe { *p });
        if !node.linked.load(Ordering::Acquire) {
            assert!(!chosen(), "a semaphore hands permits over");
            return Woken::Notified;
        }
        let mut st = self.0.lock().unwrap();
        if node.linked.load(Ordering::Relaxed) {
            Self::unlink(&mut st.list, &node);
            Woken::TimedOut
        } else {
            assert!(!chosen(), "a semaphore hands permits over");
            Woken::Notified
        }
    }

    /// A waiter stopped while queued, which unwinds (step 4, `LeaveOnDrop`): unlinks itself if
    /// still linked, else passes what it was handed on to the next waiter (`pass_on`).
    fn acquire_and_unwind(&self) {
        let mut st = self.0.lock().unwrap();
        if st.permits > 0 {
            // It got a permit at once; its unwind gives it back (the permit's guard).
            st.permits -= 1;
            drop(st);
            self.release();
            return;
        }
        let node = Node::new();
        let g = node.park.arm();
        // SAFETY: (model) the node is not linked yet.
        node.unparker.with_mut(|p| unsafe { *p = Some(g) });
        node.linked.store(true, Ordering::Relaxed);
        st.list.push_back(node.clone());
        drop(st);
        // The stop ends the park (`stop_parked`'s wake), racing a waker.
        node.park.wake(g, Wake::Interrupted);
        wait_thread(&node.park, g, &node.parker);
        let mut st = self.0.lock().unwrap();
        if node.linked.load(Ordering::Relaxed) {
            Self::unlink(&mut st.list, &node);
            return;
        }
        // Chosen: `pass_on(Notified)` gives the permit to the next waiter or back to the count.
        // SAFETY: (model) unlinked, so the node is ours again (acquired by the lock).
        assert!(
            !node.nudged.with(|p| unsafe { *p }),
            "a semaphore hands permits over"
        );
        match Self::take_front(&mut st) {
            Some(u) => {
                drop(st);
                u.unpark();
            }
            None => st.permits += 1,
        }
    }
}

/// One permit released while a waiter that may time out waits for it: the permit ends up
/// exactly once, with the waiter (`Notified`, even if its deadline passed at the same moment)
/// or in the count.
#[test]
fn loom_waitqueue_handed_over_once_despite_timeout() {
    model(|| {
        let sem = Sem::new();
        let releaser = {
            let sem = sem.clone();
            thread::spawn(move || sem.release())
        };
        let woken = sem.acquire(true);
        releaser.join().unwrap();
        let left = sem.0.lock().unwrap().permits;
        match woken {
            Woken::Notified => assert_eq!(left, 0, "the permit is the waiter's alone"),
            Woken::TimedOut => assert_eq!(left, 1, "the permit is in the count"),
        }
    });
}

/// A waiter that is chosen but unwinds (stopped) passes its permit on to the next waiter, which
/// waits with no deadline: it always gets the permit (a lost hand-off would leave it parked for
/// ever, which loom reports), and the permit is never duplicated.
#[test]
fn loom_waitqueue_pass_on_from_an_unwinding_waiter() {
    model(|| {
        let sem = Sem::new();
        let stopped = {
            let sem = sem.clone();
            thread::spawn(move || sem.acquire_and_unwind())
        };
        let releaser = {
            let sem = sem.clone();
            thread::spawn(move || sem.release())
        };
        assert_eq!(sem.acquire(false), Woken::Notified);
        stopped.join().unwrap();
        releaser.join().unwrap();
        assert_eq!(
            sem.0.lock().unwrap().permits,
            0,
            "one permit, held by the waiter"
        );
    });
}

/// Hand-off mode: a sender moves a value into a receiver's slot under the lock and wakes it
/// there; the receiver may time out at the same moment. The value goes exactly once: to the
/// receiver (which reads its slot without the lock when woken `Unparked`), or stays with the
/// sender.
#[test]
fn loom_waitqueue_handoff_value_moved_once() {
    model(|| {
        let sem = Sem::new();
        let sender = {
            let sem = sem.clone();
            thread::spawn(move || {
                // Step 2, all under the lock: unlink (the commit), move, wake.
                let mut st = sem.0.lock().unwrap();
                let Some(node) = st.list.front().cloned() else {
                    return false;
                };
                // SAFETY: (model) a linked node's fields are the lock holder's.
                let g = node.unparker.with_mut(|p| unsafe { (*p).take() }).unwrap();
                Sem::unlink(&mut st.list, &node);
                // SAFETY: (model) the waiter reads its slot only once woken by us, or under
                // the lock we hold.
                node.slot.with_mut(|p| unsafe { *p = Some(9) });
                Unparker { park_of: node, g }.unpark();
                drop(st);
                true
            })
        };
        // The receiver: step 1, under the lock, then park; its deadline races the sender.
        let node = Node::new();
        let gen_ = {
            let mut st = sem.0.lock().unwrap();
            let g = node.park.arm();
            // SAFETY: (model) the node is not linked yet.
            node.unparker.with_mut(|p| unsafe { *p = Some(g) });
            node.linked.store(true, Ordering::Relaxed);
            st.list.push_back(node.clone());
            g
        };
        node.park.wake(gen_, Wake::TimedOut);
        let why = wait_thread(&node.park, gen_, &node.parker);
        let received = if why == Wake::Unparked {
            // Step 3: only the sender that popped us held the unparker; it moved the value
            // before the wake.
            true
        } else {
            // Step 4: under the lock, still linked means nobody committed us.
            let mut st = sem.0.lock().unwrap();
            if node.linked.load(Ordering::Relaxed) {
                Sem::unlink(&mut st.list, &node);
                false
            } else {
                true
            }
        };
        // SAFETY: (model) as the comments above say.
        let value = node.slot.with_mut(|p| unsafe { (*p).take() });
        let delivered = sender.join().unwrap();
        assert_eq!(
            received, delivered,
            "the value is moved iff the receiver has it"
        );
        assert_eq!(value, received.then_some(9));
    });
}
