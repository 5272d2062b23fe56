//! Cancellation points: every blocking call of every face, with a task parked in it and then
//! cancelled (`JoinHandle::cancel`, or Miou's `cancel`). Each test shows that the task unwinds
//! from the call (its destructors run, `join` gives `TaskCancelled`, the call never returns),
//! that another task of its domain ran while it was parked there, and that the primitive still
//! serves the others afterwards. Each std-face test runs on one domain (the cancel is local)
//! and on two (the cancelled task on domain 1, cancelled from the main task on domain 0; the
//! runtime is a Miou run, whose `pin` places tasks: see `common::tasks::with_domains`). Then
//! tasks cancelled before they started, cancelled twice, or cancelled once finished, and the
//! same for Miou children.
//!
//! Last, 10 000 cancelled tasks holding sockets give every descriptor back (in a child process:
//! the other tests of this binary open descriptors meanwhile).

mod common;

use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bobine::event::{self, Channel, Event};
use bobine::net::{TcpListener, TcpStream, UdpSocket, UnixStream};
use bobine::ocaml::{condition, mutex};
use bobine::sync::{Barrier, Condvar, Mutex, RwLock, Semaphore, mpsc};
use bobine::{TaskCancelled, miou, thread};
use common::panics::payload_text;
use common::tasks::{Domains, DropCounter, with_domains};

const HOUR: Duration = Duration::from_secs(3600);

/// Where each test runs: (domains of the runtime, domain of the cancelled task). The main task
/// runs on domain 0 and cancels from there.
const PLACEMENTS: [(usize, usize); 2] = [(1, 0), (2, 1)];

/// The environment variable that marks a child run of this binary.
const CHILD: &str = "BOBINE_CANCEL_POINTS_CHILD";

/// Runs `body` under the watchdog in each placement; `body` gets the runtime and the domain
/// of the task it cancels.
fn in_each_placement(name: &str, body: impl Fn(&Domains, usize)) {
    common::watchdog(60, name, || {
        for (domains, d) in PLACEMENTS {
            with_domains(domains, |rt| body(rt, d));
        }
    });
}

/// A task started by [`park_in`], parked in its blocking call.
struct Parked<T> {
    handle: thread::JoinHandle<T>,
    drops: Arc<AtomicUsize>,
    returned: Arc<AtomicBool>,
    what: String,
}

/// Starts `call` in a task on domain `d`, and returns once that task is parked in it: the task
/// says it is about to call, then another task of its domain runs to its end, which it can
/// only do once the first has switched out, in `call` (its only park point). `what` names the
/// call in messages.
#[track_caller]
fn park_in<T: Send + 'static>(
    rt: &Domains,
    d: usize,
    what: &str,
    call: impl FnOnce() -> T + Send + 'static,
) -> Parked<T> {
    let drops = Arc::new(AtomicUsize::new(0));
    let returned = Arc::new(AtomicBool::new(false));
    let (ready_tx, ready_rx) = mpsc::channel();
    let handle = rt.spawn_on(d, {
        let (drops, returned) = (drops.clone(), returned.clone());
        move || {
            let _guard = DropCounter(drops);
            ready_tx.send(()).unwrap();
            let v = call();
            returned.store(true, Ordering::SeqCst);
            v
        }
    });
    ready_rx.recv().unwrap();
    let what = format!("{what} (task on domain {d} of {})", rt.count());
    ran_beside(rt, d, &what);
    assert!(
        !handle.is_finished() && !returned.load(Ordering::SeqCst),
        "{what}: the call returned instead of blocking"
    );
    Parked {
        handle,
        drops,
        returned,
        what,
    }
}

/// Runs a task on domain `d` to its end: the domain runs other tasks while one is parked.
#[track_caller]
fn ran_beside(rt: &Domains, d: usize, what: &str) {
    let h = rt.spawn_on(d, miou::domain::self_);
    assert_eq!(
        h.join().unwrap(),
        d,
        "{what}: a task beside it ran on its domain"
    );
}

impl<T: 'static> Parked<T> {
    /// Cancels the task and checks that it unwound from its call: `join` gives
    /// `TaskCancelled`, its destructors ran once, and the call never returned.
    #[track_caller]
    fn cancel(self) {
        self.handle.cancel();
        let what = self.what;
        match self.handle.join() {
            Ok(_) => panic!("{what}: the cancelled task ended normally"),
            Err(p) => assert!(
                p.is::<TaskCancelled>(),
                "{what}: join gave '{}', not TaskCancelled",
                payload_text(&*p)
            ),
        }
        assert_eq!(
            self.drops.load(Ordering::SeqCst),
            1,
            "{what}: the cancelled task's destructors ran once"
        );
        assert!(
            !self.returned.load(Ordering::SeqCst),
            "{what}: the call returned in the cancelled task"
        );
    }

    /// Waits for a task that was not cancelled: its call returned, and `join` gives its value.
    #[track_caller]
    fn finish(self) -> T {
        let what = self.what;
        let v = self
            .handle
            .join()
            .unwrap_or_else(|p| panic!("{what}: the task failed: {}", payload_text(&*p)));
        assert!(self.returned.load(Ordering::SeqCst), "{what}: returned");
        v
    }
}

/// A message that counts its drops.
struct Msg(u32, #[allow(dead_code)] DropCounter);

fn msg(v: u32) -> (Msg, Arc<AtomicUsize>) {
    let drops = Arc::new(AtomicUsize::new(0));
    (Msg(v, DropCounter(drops.clone())), drops)
}

/// A task parked in `JoinHandle::join` unwinds when cancelled; the task it was joining is not
/// cancelled with it and runs to its end.
#[test]
fn join_unwinds_when_cancelled() {
    in_each_placement("join_unwinds_when_cancelled", |rt, d| {
        let (gate_tx, gate_rx) = mpsc::channel::<()>();
        let (done_tx, done_rx) = mpsc::channel::<u32>();
        let p = park_in(rt, d, "JoinHandle::join", move || {
            let child = thread::spawn(move || {
                gate_rx.recv().unwrap();
                done_tx.send(7).unwrap();
            });
            let _ = child.join();
        });
        p.cancel();
        gate_tx.send(()).unwrap();
        assert_eq!(done_rx.recv().unwrap(), 7, "the joined task ran to its end");
    });
}

/// A task parked in `Mutex::lock` unwinds when cancelled and leaves the queue: at the unlock
/// the lock goes to the next waiter, and is afterwards free and not poisoned.
#[test]
fn mutex_lock_unwinds_when_cancelled() {
    in_each_placement("mutex_lock_unwinds_when_cancelled", |rt, d| {
        let m = Arc::new(Mutex::new(0u32));
        let g = m.lock().unwrap();
        let p = park_in(rt, d, "Mutex::lock", {
            let m = m.clone();
            move || drop(m.lock())
        });
        let next = park_in(rt, d, "Mutex::lock (next waiter)", {
            let m = m.clone();
            move || *m.lock().unwrap() += 1
        });
        p.cancel();
        drop(g);
        next.finish();
        assert_eq!(*m.try_lock().expect("the mutex is free, not poisoned"), 1);
    });
}

/// A task cancelled while it holds a `MutexGuard` (parked elsewhere) releases the lock as it
/// unwinds, without poisoning it: a cancellation is not a panic of the holder.
#[test]
fn mutex_held_by_a_cancelled_task_is_released_unpoisoned() {
    in_each_placement("mutex_held_by_a_cancelled_task", |rt, d| {
        let m = Arc::new(Mutex::new(0u32));
        let p = park_in(rt, d, "sleep holding a MutexGuard", {
            let m = m.clone();
            move || {
                let _g = m.lock().unwrap();
                thread::sleep(HOUR);
            }
        });
        assert!(m.try_lock().is_err(), "the task holds the mutex");
        p.cancel();
        assert!(!m.is_poisoned(), "a cancellation poisoned the mutex");
        assert!(m.try_lock().is_ok(), "the mutex was released");
    });
}

/// The body of the two condvar tests: a waiter in `wait` (or `wait_timeout`) is cancelled;
/// the mutex is free afterwards (the wait does not relock on the way out) and a notification
/// reaches the next waiter.
fn condvar_case(rt: &Domains, d: usize, timed: bool) {
    let pair = Arc::new((Mutex::new(false), Condvar::new()));
    let what = if timed {
        "Condvar::wait_timeout"
    } else {
        "Condvar::wait"
    };
    let p = park_in(rt, d, what, {
        let pair = pair.clone();
        move || {
            let (m, cv) = &*pair;
            let g = m.lock().unwrap();
            if timed {
                drop(cv.wait_timeout(g, HOUR));
            } else {
                drop(cv.wait(g));
            }
        }
    });
    let next = park_in(rt, d, "Condvar::wait_while (next waiter)", {
        let pair = pair.clone();
        move || {
            let (m, cv) = &*pair;
            assert!(*cv.wait_while(m.lock().unwrap(), |ready| !*ready).unwrap());
        }
    });
    p.cancel();
    let (m, cv) = &*pair;
    *m.try_lock()
        .expect("the cancelled waiter left the mutex free, not poisoned") = true;
    cv.notify_one();
    next.finish();
}

/// A task parked in `Condvar::wait` unwinds when cancelled, leaving the mutex unlocked; a
/// later `notify_one` wakes the next waiter.
#[test]
fn condvar_wait_unwinds_when_cancelled() {
    in_each_placement("condvar_wait_unwinds_when_cancelled", |rt, d| {
        condvar_case(rt, d, false)
    });
}

/// A task parked in `Condvar::wait_timeout` (an hour) unwinds when cancelled, leaving the mutex
/// unlocked; a later `notify_one` wakes the next waiter.
#[test]
fn condvar_wait_timeout_unwinds_when_cancelled() {
    in_each_placement("condvar_wait_timeout_unwinds_when_cancelled", |rt, d| {
        condvar_case(rt, d, true)
    });
}

/// A task parked in `RwLock::read` (a writer holds the lock) unwinds when cancelled; the next
/// reader gets in at the release, and the lock is free afterwards.
#[test]
fn rwlock_read_unwinds_when_cancelled() {
    in_each_placement("rwlock_read_unwinds_when_cancelled", |rt, d| {
        let l = Arc::new(RwLock::new(0u32));
        let w = l.write().unwrap();
        let p = park_in(rt, d, "RwLock::read", {
            let l = l.clone();
            move || drop(l.read())
        });
        let next = park_in(rt, d, "RwLock::read (next reader)", {
            let l = l.clone();
            move || *l.read().unwrap()
        });
        p.cancel();
        drop(w);
        assert_eq!(next.finish(), 0);
        assert!(l.try_write().is_ok(), "no reader is counted in any more");
    });
}

/// A task parked in `RwLock::write` (a reader holds the lock) unwinds when cancelled; a reader
/// that the waiting writer held back is let in at once, and the lock is free afterwards.
#[test]
fn rwlock_write_unwinds_when_cancelled() {
    in_each_placement("rwlock_write_unwinds_when_cancelled", |rt, d| {
        let l = Arc::new(RwLock::new(0u32));
        let r = l.read().unwrap();
        let p = park_in(rt, d, "RwLock::write", {
            let l = l.clone();
            move || drop(l.write())
        });
        let held_back = park_in(rt, d, "RwLock::read (behind the writer)", {
            let l = l.clone();
            move || *l.read().unwrap()
        });
        p.cancel();
        // The main task still holds its read lock: the reader gets in beside it.
        assert_eq!(held_back.finish(), 0);
        drop(r);
        assert!(l.try_write().is_ok(), "the lock is free");
    });
}

/// A task parked in `Semaphore::acquire` unwinds when cancelled, taking no permit: the next
/// waiter gets the first permit released, and the count is right afterwards.
#[test]
fn semaphore_acquire_unwinds_when_cancelled() {
    in_each_placement("semaphore_acquire_unwinds_when_cancelled", |rt, d| {
        let s = Arc::new(Semaphore::new(0));
        let p = park_in(rt, d, "Semaphore::acquire", {
            let s = s.clone();
            move || s.acquire()
        });
        let next = park_in(rt, d, "Semaphore::acquire (next waiter)", {
            let s = s.clone();
            move || s.acquire()
        });
        p.cancel();
        s.release();
        next.finish();
        assert_eq!(s.available(), 0, "the next waiter took the permit");
        s.release();
        assert_eq!(s.available(), 1, "the cancelled waiter took no permit");
    });
}

/// A task parked in `Barrier::wait` unwinds when cancelled and no longer counts: the barrier
/// of two then waits for two new arrivals, and exactly one of them is the leader.
#[test]
fn barrier_wait_unwinds_when_cancelled() {
    in_each_placement("barrier_wait_unwinds_when_cancelled", |rt, d| {
        let b = Arc::new(Barrier::new(2));
        let p = park_in(rt, d, "Barrier::wait", {
            let b = b.clone();
            move || b.wait().is_leader()
        });
        p.cancel();
        // Had the cancelled arrival still counted, this one would pass alone.
        let first = park_in(rt, d, "Barrier::wait (first of two)", {
            let b = b.clone();
            move || b.wait().is_leader()
        });
        let second = b.wait().is_leader();
        let first = first.finish();
        assert!(
            first != second,
            "exactly one leader (first {first}, second {second})"
        );
    });
}

/// A task parked in `mpsc::Receiver::recv` unwinds when cancelled; a message sent afterwards
/// is received by the next receiver, once.
#[test]
fn mpsc_recv_unwinds_when_cancelled() {
    in_each_placement("mpsc_recv_unwinds_when_cancelled", |rt, d| {
        let (tx, rx) = mpsc::channel::<u32>();
        // The receiver outlives the cancelled task: it is shared under a mutex, which the
        // task holds while it waits and releases as it unwinds.
        let rx = Arc::new(Mutex::new(rx));
        let p = park_in(rt, d, "Receiver::recv", {
            let rx = rx.clone();
            move || rx.lock().unwrap().recv().ok()
        });
        p.cancel();
        tx.send(1).unwrap();
        let rx = rx.lock().expect("not poisoned by the cancellation");
        assert_eq!(rx.recv().unwrap(), 1);
        assert!(rx.try_recv().is_err(), "one message, received once");
    });
}

/// A task parked in `SyncSender::send` on a full channel unwinds when cancelled: its message
/// is dropped, never delivered, and a sender queued behind it gets the room freed next.
#[test]
fn full_sync_channel_send_unwinds_when_cancelled() {
    in_each_placement("full_sync_channel_send_unwinds_when_cancelled", |rt, d| {
        let (tx, rx) = mpsc::sync_channel::<Msg>(1);
        let (m1, _) = msg(1);
        tx.send(m1).unwrap();
        let (m2, m2_drops) = msg(2);
        let p = park_in(rt, d, "SyncSender::send (full)", {
            let tx = tx.clone();
            move || tx.send(m2).map_err(|_| ()).unwrap()
        });
        let (m3, _) = msg(3);
        let next = park_in(rt, d, "SyncSender::send (next sender)", {
            let tx = tx.clone();
            move || tx.send(m3).map_err(|_| ()).unwrap()
        });
        p.cancel();
        assert_eq!(
            m2_drops.load(Ordering::SeqCst),
            1,
            "the unsent message was dropped"
        );
        assert_eq!(rx.recv().unwrap().0, 1);
        assert_eq!(rx.recv().unwrap().0, 3, "the next sender's message follows");
        next.finish();
        assert!(
            rx.try_recv().is_err(),
            "the cancelled message was not delivered"
        );
    });
}

/// A task parked in a rendezvous send (`sync_channel(0)`) unwinds when cancelled: its message
/// is withdrawn (dropped, never received), and the channel serves the next sender.
#[test]
fn rendezvous_send_unwinds_when_cancelled() {
    in_each_placement("rendezvous_send_unwinds_when_cancelled", |rt, d| {
        let (tx, rx) = mpsc::sync_channel::<Msg>(0);
        let (m1, m1_drops) = msg(1);
        let p = park_in(rt, d, "SyncSender::send (rendezvous)", {
            let tx = tx.clone();
            move || tx.send(m1).map_err(|_| ()).unwrap()
        });
        p.cancel();
        assert_eq!(
            m1_drops.load(Ordering::SeqCst),
            1,
            "the message was dropped"
        );
        assert!(
            rx.try_recv().is_err(),
            "the withdrawn message is not received"
        );
        let (m2, _) = msg(2);
        let next = park_in(rt, d, "SyncSender::send (next sender)", {
            let tx = tx.clone();
            move || tx.send(m2).map_err(|_| ()).unwrap()
        });
        assert_eq!(rx.recv().unwrap().0, 2);
        next.finish();
    });
}

/// A task parked in `Event::sync` on a receive unwinds when cancelled, and its offer is
/// withdrawn: a later sender does not match it (`poll` finds no partner); the next receiver
/// gets the next value.
#[test]
fn event_sync_unwinds_when_cancelled() {
    cancelled_receiver_leaves_no_offer("event_sync_unwinds_when_cancelled", |ch| {
        ch.recv_evt().sync()
    });
}

/// The body of the two CML receive tests: a task parked receiving on a channel (through
/// `recv`) is cancelled; no later sender matches its offer, and the next receiver gets the
/// next value.
fn cancelled_receiver_leaves_no_offer(name: &str, recv: fn(&Channel<u32>) -> u32) {
    in_each_placement(name, |rt, d| {
        let ch = Channel::<u32>::new();
        let p = park_in(rt, d, "a CML receive", {
            let ch = ch.clone();
            move || recv(&ch)
        });
        p.cancel();
        assert!(
            ch.send_evt(1).poll().is_none(),
            "a sender matched the cancelled receiver's offer"
        );
        let next = park_in(rt, d, "Channel::recv (next receiver)", {
            let ch = ch.clone();
            move || ch.recv()
        });
        ch.send(2);
        assert_eq!(next.finish(), 2);
    });
}

/// A task parked in `select` with a `with_nack` branch unwinds when cancelled: the nack fires
/// then (not before), and every offer of the sync is withdrawn (later senders on either
/// channel find no partner).
#[test]
fn select_with_nack_unwinds_and_fires_the_nack() {
    in_each_placement("select_with_nack_unwinds_and_fires_the_nack", |rt, d| {
        let (a, b) = (Channel::<u32>::new(), Channel::<u32>::new());
        let (nack_tx, nack_rx) = mpsc::channel::<Event<()>>();
        let p = park_in(rt, d, "select with with_nack", {
            let (a, b) = (a.clone(), b.clone());
            move || {
                event::select(vec![
                    a.recv_evt(),
                    event::with_nack(move |nack| {
                        nack_tx.send(nack).unwrap();
                        b.recv_evt()
                    }),
                ])
            }
        });
        let nack = nack_rx.try_recv().expect("the with_nack function ran");
        let watcher = park_in(rt, d, "sync on the nack", move || nack.sync());
        p.cancel();
        watcher.finish();
        assert!(a.send_evt(1).poll().is_none(), "an offer on a survived");
        assert!(b.send_evt(2).poll().is_none(), "an offer on b survived");
    });
}

/// A task parked in `Channel::recv` (the CML shorthand) unwinds when cancelled, and a later
/// sender does not match it; the next receiver gets the next value.
#[test]
fn event_channel_recv_unwinds_when_cancelled() {
    cancelled_receiver_leaves_no_offer("event_channel_recv_unwinds_when_cancelled", |ch| ch.recv());
}

/// A task parked in `Channel::send` (the CML shorthand) unwinds when cancelled: its value is
/// dropped and never received.
#[test]
fn event_channel_send_unwinds_when_cancelled() {
    in_each_placement("event_channel_send_unwinds_when_cancelled", |rt, d| {
        let ch = Channel::<Msg>::new();
        let (m1, m1_drops) = msg(1);
        let p = park_in(rt, d, "Channel::send", {
            let ch = ch.clone();
            move || ch.send(m1)
        });
        p.cancel();
        assert_eq!(m1_drops.load(Ordering::SeqCst), 1, "the value was dropped");
        assert!(
            ch.recv_evt().poll().is_none(),
            "the cancelled value was received"
        );
    });
}

/// A task parked in `TcpListener::accept` unwinds when cancelled; the listener then accepts
/// the next connection, which works.
#[test]
fn tcp_accept_unwinds_when_cancelled() {
    in_each_placement("tcp_accept_unwinds_when_cancelled", |rt, d| {
        let l = Arc::new(TcpListener::bind("127.0.0.1:0").unwrap());
        let addr = l.local_addr().unwrap();
        let p = park_in(rt, d, "TcpListener::accept", {
            let l = l.clone();
            move || drop(l.accept())
        });
        p.cancel();
        let mut c = TcpStream::connect(addr).unwrap();
        let (mut s, _) = l.accept().unwrap();
        c.write_all(b"x").unwrap();
        let mut buf = [0u8; 1];
        s.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"x");
    });
}

/// A task parked in `TcpStream::read` unwinds when cancelled, consuming nothing: the bytes
/// sent afterwards are read by the next reader.
#[test]
fn tcp_read_unwinds_when_cancelled() {
    in_each_placement("tcp_read_unwinds_when_cancelled", |rt, d| {
        let (c, s) = common::fds::tcp_pair();
        let s = Arc::new(s);
        let p = park_in(rt, d, "TcpStream::read", {
            let s = s.clone();
            move || drop((&*s).read(&mut [0u8; 8]))
        });
        p.cancel();
        (&c).write_all(b"xy").unwrap();
        let mut buf = [0u8; 2];
        (&*s).read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"xy");
    });
}

/// A task parked in `UdpSocket::recv_from` unwinds when cancelled, consuming nothing: the
/// datagram sent afterwards is received by the next receiver.
#[test]
fn udp_recv_from_unwinds_when_cancelled() {
    in_each_placement("udp_recv_from_unwinds_when_cancelled", |rt, d| {
        let a = Arc::new(UdpSocket::bind("127.0.0.1:0").unwrap());
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        let p = park_in(rt, d, "UdpSocket::recv_from", {
            let a = a.clone();
            move || drop(a.recv_from(&mut [0u8; 8]))
        });
        p.cancel();
        b.send_to(b"y", a.local_addr().unwrap()).unwrap();
        let mut buf = [0u8; 8];
        let (n, from) = a.recv_from(&mut buf).unwrap();
        assert_eq!((&buf[..n], from), (&b"y"[..], b.local_addr().unwrap()));
    });
}

/// A task parked in `io::wait_readable` on a pipe unwinds when cancelled; the next waiter on
/// the same descriptor is woken when a byte arrives.
#[test]
fn wait_readable_on_a_pipe_unwinds_when_cancelled() {
    in_each_placement("wait_readable_on_a_pipe_unwinds_when_cancelled", |rt, d| {
        let (r, w) = common::fds::pipe();
        let r = Arc::new(r);
        let p = park_in(rt, d, "io::wait_readable (pipe)", {
            let r = r.clone();
            move || drop(bobine::io::wait_readable(r.as_fd()))
        });
        p.cancel();
        let next = park_in(rt, d, "io::wait_readable (next waiter)", {
            let r = r.clone();
            move || bobine::io::wait_readable(r.as_fd()).is_ok()
        });
        std::fs::File::from(w).write_all(b"z").unwrap();
        assert!(next.finish(), "the next waiter saw the byte");
    });
}

/// A task parked in `thread::sleep` (an hour) unwinds when cancelled; timers still serve the
/// other tasks.
#[test]
fn sleep_unwinds_when_cancelled() {
    in_each_placement("sleep_unwinds_when_cancelled", |rt, d| {
        let p = park_in(rt, d, "thread::sleep", || thread::sleep(HOUR));
        p.cancel();
        rt.spawn_on(d, || thread::sleep(Duration::from_millis(1)))
            .join()
            .unwrap();
    });
}

/// A task parked in `time::sleep_until` (an hour ahead) unwinds when cancelled; timers still
/// serve the other tasks.
#[test]
fn sleep_until_unwinds_when_cancelled() {
    in_each_placement("sleep_until_unwinds_when_cancelled", |rt, d| {
        let p = park_in(rt, d, "time::sleep_until", || {
            bobine::time::sleep_until(Instant::now() + HOUR)
        });
        p.cancel();
        rt.spawn_on(d, || {
            bobine::time::sleep_until(Instant::now() + Duration::from_millis(1))
        })
        .join()
        .unwrap();
    });
}

/// A task parked in `io::unblock` unwinds when cancelled without waiting for its job: the job
/// is still blocked on the pool when `join` returns, and runs to its end afterwards.
#[test]
fn unblock_unwinds_while_its_job_finishes_on_the_pool() {
    in_each_placement("unblock_unwinds_while_its_job_finishes", |rt, d| {
        let (gate_tx, gate_rx) = std::sync::mpsc::channel::<()>();
        let (done_tx, done_rx) = mpsc::channel::<()>();
        let finished = Arc::new(AtomicBool::new(false));
        let p = park_in(rt, d, "io::unblock", {
            let finished = finished.clone();
            move || {
                bobine::io::unblock(move || {
                    gate_rx.recv().unwrap();
                    finished.store(true, Ordering::SeqCst);
                    done_tx.send(()).unwrap();
                })
            }
        });
        p.cancel();
        assert!(
            !finished.load(Ordering::SeqCst),
            "the cancelled task waited for its job"
        );
        gate_tx.send(()).unwrap();
        done_rx.recv().unwrap();
        assert!(finished.load(Ordering::SeqCst), "the job ran to its end");
    });
}

/// A task looping on `thread::yield_now` (it never parks) unwinds at a yield when cancelled;
/// the tasks beside it ran meanwhile.
#[test]
fn yield_loop_unwinds_at_the_yield() {
    in_each_placement("yield_loop_unwinds_at_the_yield", |rt, d| {
        let p = park_in::<()>(rt, d, "a thread::yield_now loop", || {
            loop {
                thread::yield_now();
            }
        });
        p.cancel();
    });
}

/// A task parked in the OCaml face's `Mutex.lock` unwinds when cancelled and leaves the queue:
/// the next waiter gets the mutex at the unlock, and it is free afterwards.
#[test]
fn ocaml_mutex_lock_unwinds_when_cancelled() {
    in_each_placement("ocaml_mutex_lock_unwinds_when_cancelled", |rt, d| {
        let m = mutex::create();
        mutex::lock(&m);
        let p = park_in(rt, d, "Mutex.lock", {
            let m = m.clone();
            move || mutex::lock(&m)
        });
        let next = park_in(rt, d, "Mutex.lock (next waiter)", {
            let m = m.clone();
            move || {
                mutex::lock(&m);
                mutex::unlock(&m);
            }
        });
        p.cancel();
        mutex::unlock(&m);
        next.finish();
        assert!(mutex::try_lock(&m), "the mutex is free");
        mutex::unlock(&m);
    });
}

/// A task parked in the OCaml face's `Condition.wait` (inside `Mutex.protect`) unwinds when
/// cancelled, leaving the mutex unlocked; a later `signal` wakes the next waiter.
#[test]
fn ocaml_condition_wait_unwinds_when_cancelled() {
    in_each_placement("ocaml_condition_wait_unwinds_when_cancelled", |rt, d| {
        let (m, c) = (mutex::create(), condition::create());
        let ready = Arc::new(AtomicBool::new(false));
        let p = park_in(rt, d, "Condition.wait", {
            let (m, c) = (m.clone(), c.clone());
            move || mutex::protect(&m, || condition::wait(&c, &m))
        });
        let next = park_in(rt, d, "Condition.wait (next waiter)", {
            let (m, c, ready) = (m.clone(), c.clone(), ready.clone());
            move || {
                mutex::protect(&m, || {
                    while !ready.load(Ordering::SeqCst) {
                        condition::wait(&c, &m);
                    }
                })
            }
        });
        p.cancel();
        assert!(
            mutex::try_lock(&m),
            "the cancelled waiter left the mutex free"
        );
        ready.store(true, Ordering::SeqCst);
        condition::signal(&c);
        mutex::unlock(&m);
        next.finish();
    });
}

/// A Miou child parked in `await_` on its own child is cancelled by its parent with
/// `miou::cancel`: the whole subtree ends, both destructors have run when `cancel` returns,
/// other tasks of the child's domain ran meanwhile, and `await_` gives `Err(Cancelled)`.
#[test]
fn miou_await_unwinds_and_cancel_ends_the_subtree() {
    common::watchdog(60, "miou_await_unwinds_and_cancel_ends_the_subtree", || {
        // Workers: 0 (all on domain 0), 1 (child and grandchild on domain 1), 2 (the child on
        // domain 1, the grandchild on domain 2).
        for workers in [0, 1, 2] {
            miou::run_with(workers, move || {
                let child_drops = Arc::new(AtomicUsize::new(0));
                let grandchild_drops = Arc::new(AtomicUsize::new(0));
                let returned = Arc::new(AtomicBool::new(false));
                let (ready_tx, ready_rx) = mpsc::channel::<usize>();
                let child = {
                    let (cd, gd, returned) = (
                        child_drops.clone(),
                        grandchild_drops.clone(),
                        returned.clone(),
                    );
                    move || {
                        let _guard = DropCounter(cd);
                        // The child reports first: a grandchild on another domain could
                        // otherwise report before it does.
                        ready_tx.send(miou::domain::self_()).unwrap();
                        let tx = ready_tx.clone();
                        let grandchild = move || {
                            let _guard = DropCounter(gd);
                            tx.send(miou::domain::self_()).unwrap();
                            thread::sleep(HOUR);
                        };
                        let p = if workers == 2 {
                            miou::call(grandchild)
                        } else {
                            miou::call_cc(grandchild)
                        };
                        let _ = miou::await_(p);
                        returned.store(true, Ordering::SeqCst);
                    }
                };
                let p = if workers == 0 {
                    miou::call_cc(child)
                } else {
                    miou::Spawn::new().pin(1).call(child)
                };
                let child_domain = ready_rx.recv().unwrap();
                assert_eq!(child_domain, workers.min(1), "where the child runs");
                // A task beside the child runs on its domain: the child has switched out, in
                // `await_`.
                let beside = if workers == 0 {
                    miou::call_cc(miou::domain::self_)
                } else {
                    miou::Spawn::new().pin(1).call(miou::domain::self_)
                };
                assert_eq!(miou::await_exn(beside), child_domain);
                let grandchild_domain = ready_rx.recv().unwrap();
                assert_eq!(grandchild_domain, workers);
                miou::cancel(&p);
                assert_eq!(
                    grandchild_drops.load(Ordering::SeqCst),
                    1,
                    "{workers} workers: the grandchild's destructor ran before cancel returned"
                );
                assert_eq!(
                    child_drops.load(Ordering::SeqCst),
                    1,
                    "{workers} workers: the child's destructor ran before cancel returned"
                );
                assert!(!returned.load(Ordering::SeqCst), "await_ returned");
                assert!(matches!(miou::await_(p), Err(miou::Error::Cancelled)));
            });
        }
    });
}

/// A task cancelled before it started never runs its closure, and the values its closure
/// captured are dropped; `join` gives `TaskCancelled`. On two domains the task's own domain is
/// kept busy until the cancel has been made from domain 0.
#[test]
fn task_cancelled_before_it_started_never_runs() {
    in_each_placement("task_cancelled_before_it_started_never_runs", |rt, d| {
        let ran = Arc::new(AtomicBool::new(false));
        let drops = Arc::new(AtomicUsize::new(0));
        let body = {
            let (ran, guard) = (ran.clone(), DropCounter(drops.clone()));
            move || {
                let _guard = guard;
                ran.store(true, Ordering::SeqCst);
            }
        };
        let h = if d == 0 {
            // Queued on this domain, which does not switch before the cancel.
            let h = thread::spawn_local(body);
            h.cancel();
            h
        } else {
            let cancelled = Arc::new(AtomicBool::new(false));
            let (h_tx, h_rx) = mpsc::channel();
            let busy = rt.spawn_on(d, {
                let cancelled = cancelled.clone();
                move || {
                    h_tx.send(thread::spawn_local(body)).unwrap();
                    while !cancelled.load(Ordering::SeqCst) {
                        std::hint::spin_loop();
                    }
                }
            });
            let h = h_rx.recv().unwrap();
            h.cancel();
            cancelled.store(true, Ordering::SeqCst);
            busy.join().unwrap();
            h
        };
        let err = h.join().expect_err("a cancelled task");
        assert!(err.is::<TaskCancelled>(), "{}", payload_text(&*err));
        assert!(!ran.load(Ordering::SeqCst), "the closure ran");
        assert_eq!(
            drops.load(Ordering::SeqCst),
            1,
            "the captured values were dropped"
        );
    });
}

/// A Miou child parked in `await_` on a grandchild of its domain that is running (it loops on
/// `yield_`) when the child is cancelled: the whole subtree ends and `cancel` returns. (It
/// hung while the child's tear-down waited for the grandchild inside the child's unwind: the
/// domain's raised panic count deferred the grandchild's stop for ever.)
#[test]
fn miou_cancel_ends_a_subtree_whose_grandchild_is_running() {
    common::watchdog(
        30,
        "miou_cancel_ends_a_subtree_whose_grandchild_is_running",
        || {
            miou::run_with(0, || {
                let grandchild_drops = Arc::new(AtomicUsize::new(0));
                let (ready_tx, ready_rx) = mpsc::channel::<()>();
                let p = miou::call_cc({
                    let gd = grandchild_drops.clone();
                    move || {
                        let g = miou::call_cc(move || {
                            let _guard = DropCounter(gd);
                            ready_tx.send(()).unwrap();
                            loop {
                                miou::yield_();
                            }
                        });
                        let _ = miou::await_(g);
                    }
                });
                ready_rx.recv().unwrap();
                miou::cancel(&p);
                assert_eq!(grandchild_drops.load(Ordering::SeqCst), 1);
                assert!(matches!(miou::await_(p), Err(miou::Error::Cancelled)));
            });
        },
    );
}

/// A Miou child cancelled before it started never runs, and the values its closure captured
/// have been dropped when `cancel` returns; `await_` gives `Err(Cancelled)`.
#[test]
fn miou_child_cancelled_before_it_started_never_runs() {
    common::watchdog(30, "miou_child_cancelled_before_it_started", || {
        miou::run_with(0, || {
            let ran = Arc::new(AtomicBool::new(false));
            let drops = Arc::new(AtomicUsize::new(0));
            let p = miou::call_cc({
                let (ran, guard) = (ran.clone(), DropCounter(drops.clone()));
                move || {
                    let _guard = guard;
                    ran.store(true, Ordering::SeqCst);
                }
            });
            miou::cancel(&p);
            assert_eq!(
                drops.load(Ordering::SeqCst),
                1,
                "the captured values were dropped"
            );
            assert!(!ran.load(Ordering::SeqCst), "the child ran");
            assert!(matches!(miou::await_(p), Err(miou::Error::Cancelled)));
        });
    });
}

/// Cancelling a task twice is harmless (it unwinds once), and cancelling a finished task does
/// nothing: `join` gives its value.
#[test]
fn cancelling_twice_or_a_finished_task_is_harmless() {
    in_each_placement(
        "cancelling_twice_or_a_finished_task_is_harmless",
        |rt, d| {
            let p = park_in(rt, d, "thread::sleep (cancelled twice)", || {
                thread::sleep(HOUR)
            });
            p.handle.cancel();
            p.cancel();
            let h = rt.spawn_on(d, || 42u32);
            while !h.is_finished() {
                thread::sleep(Duration::from_millis(1));
            }
            h.cancel();
            h.cancel();
            assert_eq!(h.join().unwrap(), 42, "a finished task keeps its value");
        },
    );
}

/// Miou: cancelling a child twice is harmless, and so is cancelling a child that has ended
/// (awaiting it then gives `Err(Cancelled)`, rule 5).
#[test]
fn miou_cancelling_twice_or_an_ended_child_is_harmless() {
    common::watchdog(30, "miou_cancelling_twice_or_an_ended_child", || {
        miou::run_with(1, || {
            let p = miou::call(|| thread::sleep(HOUR));
            miou::cancel(&p);
            miou::cancel(&p);
            assert!(matches!(miou::await_(p), Err(miou::Error::Cancelled)));
            let p = miou::call(|| 42u32);
            while !p.is_finished() {
                thread::sleep(Duration::from_millis(1));
            }
            miou::cancel(&p);
            miou::cancel(&p);
            assert!(matches!(miou::await_(p), Err(miou::Error::Cancelled)));
        });
    });
}

/// 10 000 tasks on two domains, each parked reading its end of a Unix socket pair (the other
/// end is the next task's), are cancelled: once they are joined, the process has exactly the
/// descriptors it had before the sockets were made. In a child process, since the other
/// tests of this binary open descriptors meanwhile.
#[test]
fn cancelled_tasks_give_back_their_sockets() {
    const NAME: &str = "cancelled_tasks_give_back_their_sockets";
    const TASKS: usize = 10_000;
    if !common::child::is_child_of(CHILD, NAME) {
        common::child::run_ok(CHILD, NAME, 180);
        return;
    }
    common::watchdog(150, NAME, || {
        with_domains(2, |rt| {
            let before = common::fds::open_fds();
            let (ready_tx, ready_rx) = mpsc::channel::<()>();
            let mut handles = Vec::with_capacity(TASKS);
            for _ in 0..TASKS / 2 {
                let (a, b) = UnixStream::pair().unwrap();
                for (d, s) in [(0, a), (1, b)] {
                    let ready = ready_tx.clone();
                    handles.push(rt.spawn_on(d, move || {
                        ready.send(()).unwrap();
                        let mut buf = [0u8; 8];
                        loop {
                            // The peer's end closes when the peer is cancelled first: end of
                            // file, then wait for our own cancellation.
                            match (&s).read(&mut buf) {
                                Ok(0) | Err(_) => thread::sleep(HOUR),
                                Ok(_) => {}
                            }
                        }
                    }));
                }
            }
            for _ in 0..TASKS {
                ready_rx.recv().unwrap();
            }
            // Every task has reached its read; the tasks beside them run.
            ran_beside(rt, 0, "10 000 readers");
            ran_beside(rt, 1, "10 000 readers");
            assert!(
                common::fds::open_fds() >= before + TASKS,
                "{} descriptors open with {TASKS} sockets, {before} before",
                common::fds::open_fds()
            );
            for h in &handles {
                h.cancel();
            }
            for h in handles {
                let err = h.join().expect_err("a cancelled task");
                assert!(err.is::<TaskCancelled>(), "{}", payload_text(&*err));
            }
            assert_eq!(
                common::fds::open_fds(),
                before,
                "descriptors open after {TASKS} cancelled socket holders were joined"
            );
        });
    });
}
