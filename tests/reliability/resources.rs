//! Resources given back: descriptors after cancellations of tasks holding sockets, and
//! resident memory over a long run of spawn, cancel, choose and connect/close loops. Both count
//! process-wide figures, so each runs in a child process (see the crate doc).

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bobine::TaskCancelled;
use bobine::event::{self, Channel, select};
use bobine::net::{TcpListener, TcpStream, UnixStream};
use bobine::{miou, thread};

use crate::common::fds::open_fds;
use crate::common::memory::resident_bytes;
use crate::common::panics::payload_text;
use crate::{CHILD_ENV, common, in_child, limit, size, test_path};

const HOUR: Duration = Duration::from_secs(3600);

/// Tasks per batch of the descriptor test: five kinds, [`BATCH`] / 5 of each.
const BATCH: u64 = 100;

/// Joins a task that must have been cancelled.
#[track_caller]
fn expect_cancelled<T: 'static>(h: thread::JoinHandle<T>) {
    match h.join() {
        Ok(_) => panic!("a cancelled task ended normally"),
        Err(p) => assert!(
            p.is::<TaskCancelled>(),
            "a cancelled task ended with '{}', not TaskCancelled",
            payload_text(&*p)
        ),
    }
}

/// Reads from `s` until the peer is gone, then waits for ever: a task that ends only when it is
/// cancelled, holding `s` meanwhile.
fn hold(mut s: impl Read) {
    let mut buf = [0u8; 16];
    while s.read(&mut buf).is_ok_and(|n| n > 0) {}
    thread::sleep(HOUR);
}

/// A task of kind `kind` that takes descriptors and parks holding them: a Unix socket pair
/// (0), a TCP connection to `listener` (1), a connection accepted from it (2), a listener of
/// its own, parked in `accept` (3), a Unix pair waited on through a `select` of readiness and
/// a timer (4). `parked` counts those that hold their descriptors.
fn holder(kind: u64, listener: Arc<TcpListener>, parked: Arc<AtomicU64>) -> impl FnOnce() + Send {
    move || match kind {
        0 => {
            let (a, _b) = UnixStream::pair().unwrap();
            parked.fetch_add(1, Ordering::SeqCst);
            hold(&a);
        }
        1 => {
            let c = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
            parked.fetch_add(1, Ordering::SeqCst);
            hold(&c);
        }
        2 => {
            let (s, _) = listener.accept().unwrap();
            parked.fetch_add(1, Ordering::SeqCst);
            hold(&s);
        }
        3 => {
            let own = TcpListener::bind("127.0.0.1:0").unwrap();
            parked.fetch_add(1, Ordering::SeqCst);
            let _ = own.accept();
            thread::sleep(HOUR);
        }
        _ => {
            let (a, _b) = UnixStream::pair().unwrap();
            parked.fetch_add(1, Ordering::SeqCst);
            select(vec![event::readable(a.as_raw_fd()), event::after(HOUR)]);
            thread::sleep(HOUR);
        }
    }
}

/// One batch: [`BATCH`] holders on a fresh listener, cancelled once all hold their descriptors
/// (`settle`) or right after they were spawned (some never start, some are cancelled in the
/// middle of taking their descriptors). Returns once all have been joined.
fn batch(settle: bool) {
    let listener = Arc::new(TcpListener::bind("127.0.0.1:0").unwrap());
    let parked = Arc::new(AtomicU64::new(0));
    let hs: Vec<_> = (0..BATCH)
        .map(|i| thread::spawn(holder(i % 5, listener.clone(), parked.clone())))
        .collect();
    if settle {
        while parked.load(Ordering::SeqCst) < BATCH {
            thread::sleep(Duration::from_millis(1));
        }
        thread::sleep(Duration::from_millis(1)); // the last ones park in their waits
    }
    for h in &hs {
        h.cancel();
    }
    for h in hs {
        expect_cancelled(h);
    }
}

/// Reads from `fd` until the peer is gone, then waits for ever: a Miou task that ends only
/// when it is cancelled, holding `fd` meanwhile.
fn miou_hold(fd: &miou::unix::FileDescr) {
    let mut buf = [0u8; 16];
    while miou::unix::read(fd, &mut buf, 0, 16).is_ok_and(|n| n > 0) {}
    thread::sleep(HOUR);
}

/// A Miou child of kind `kind` that takes descriptors (Miou_unix sockets) and parks holding
/// them: a connection to `addr` (0, and 4 on another domain), a connection accepted from
/// `listener` (1), a listener of its own parked in `accept`, on another domain (2), a child of
/// its own holding a connection, awaited (3: cancelling the parent cancels the subtree).
fn miou_holder(
    kind: u64,
    listener: &Rc<miou::unix::FileDescr>,
    addr: SocketAddr,
    parked: &Arc<AtomicU64>,
) -> miou::Promise<()> {
    use miou::unix;
    let connect_and_hold = {
        let parked = parked.clone();
        move || {
            let fd = unix::tcpv4().unwrap();
            unix::connect(&fd, addr).unwrap();
            parked.fetch_add(1, Ordering::SeqCst);
            miou_hold(&fd);
        }
    };
    let parked = parked.clone();
    match kind {
        0 => miou::call_cc(connect_and_hold),
        1 => {
            let listener = listener.clone();
            miou::call_cc(move || {
                let (fd, _) = unix::accept(&listener).unwrap();
                parked.fetch_add(1, Ordering::SeqCst);
                miou_hold(&fd);
            })
        }
        2 => miou::call(move || {
            let own = unix::tcpv4().unwrap();
            unix::bind_and_listen(&own, "127.0.0.1:0".parse().unwrap()).unwrap();
            parked.fetch_add(1, Ordering::SeqCst);
            let _ = unix::accept(&own);
            thread::sleep(HOUR);
        }),
        3 => miou::call_cc(move || {
            let child = miou::call_cc(connect_and_hold);
            miou::await_exn(child);
        }),
        _ => miou::call(connect_and_hold),
    }
}

/// One batch of the Miou face: [`BATCH`] Miou children on a fresh listener, cancelled (with
/// their subtrees) once all hold their descriptors, or right after they were spawned.
fn miou_batch(settle: bool) {
    let listener = miou::unix::tcpv4().unwrap();
    miou::unix::bind_and_listen(&listener, "127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    let listener = Rc::new(listener);
    let parked = Arc::new(AtomicU64::new(0));
    let ps: Vec<_> = (0..BATCH)
        .map(|i| miou_holder(i % 5, &listener, addr, &parked))
        .collect();
    if settle {
        while parked.load(Ordering::SeqCst) < BATCH {
            thread::sleep(Duration::from_millis(1));
        }
        thread::sleep(Duration::from_millis(1));
    }
    for p in &ps {
        miou::cancel(p);
    }
    for p in ps {
        assert!(
            matches!(miou::await_(p), Err(miou::Error::Cancelled)),
            "a cancelled Miou child"
        );
    }
}

/// The child body of the descriptor test: `total` cancellations in batches, half of std-face
/// tasks, half of Miou children, the descriptor count checked against the baseline after each
/// batch; and once both runtimes have ended, against the count before either started.
fn cancelled_sockets_child(total: u64) {
    let batches = total / BATCH / 2;
    let before = open_fds();
    bobine::Builder::new().domains(2).run(move || {
        batch(true); // warm-up: the runtime's own descriptors are all open now
        let baseline = open_fds();
        for b in 0..batches {
            batch(b % 2 == 0);
            assert_eq!(
                open_fds(),
                baseline,
                "descriptors after batch {b} of tasks ({} cancellations) against the baseline",
                (b + 1) * BATCH
            );
        }
    });
    miou::run_with(1, move || {
        miou_batch(true);
        let baseline = open_fds();
        for b in 0..batches {
            miou_batch(b % 2 == 0);
            assert_eq!(
                open_fds(),
                baseline,
                "descriptors after batch {b} of Miou children ({} cancellations) against the \
                 baseline",
                (b + 1) * BATCH
            );
        }
    });
    assert_eq!(
        open_fds(),
        before,
        "descriptors once both runtimes have ended, against the count before they started"
    );
    eprintln!(
        "child: {} cancellations of tasks holding sockets (half std-face tasks, half Miou \
         children); descriptors back to the baseline after each batch of {BATCH}, and to \
         {before} once the runtimes ended",
        2 * batches * BATCH
    );
}

/// Cancelled tasks holding sockets release them: std-face tasks holding Unix pairs, TCP
/// connections (connected or accepted), a listener parked in `accept`, or parked in a `select`
/// on readiness, and Miou children (and a subtree) holding Miou_unix sockets, cancelled in
/// batches (once parked, or as they start); after every batch the process has exactly the
/// descriptors it had before (counted in `/proc/self/fd`), and once the runtimes have ended,
/// those it had before they started.
#[test]
fn reliability_cancelled_sockets_release_fds() {
    const NAME: &str = "reliability_cancelled_sockets_release_fds";
    let name = &test_path(module_path!(), NAME);
    let total = size(1_000, 10_000);
    if in_child(name) {
        common::watchdog(limit(60), NAME, || cancelled_sockets_child(total));
        return;
    }
    let stderr = common::child::run_ok(CHILD_ENV, name, limit(60) + 10);
    assert!(
        stderr.contains(&format!("child: {total} cancellations")),
        "{stderr}"
    );
    eprintln!(
        "{}",
        stderr.lines().find(|l| l.starts_with("child:")).unwrap()
    );
}

/// Operations per round of the memory test, by loop.
const SPAWNS: u64 = 256;
const CANCELS: u64 = 128;
const CHOICES: u64 = 1024;
const CONNECTS: u64 = 64;

/// One round of the memory test: spawn and join (and a scope), cancel parked tasks, `select`
/// between two channels and a timeout, connect to `addr` and close. Counts everything: each
/// loop's results are exact.
fn memory_round(addr: std::net::SocketAddr, closed: &AtomicU64) {
    // Spawn and join.
    let hs: Vec<_> = (0..SPAWNS).map(|i| thread::spawn(move || i * 2)).collect();
    let sum: u64 = hs.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(sum, SPAWNS * (SPAWNS - 1));
    let mut slots = [0u64; 4];
    thread::scope(|s| {
        for (j, slot) in slots.iter_mut().enumerate() {
            s.spawn(move || *slot = j as u64 + 1);
        }
    });
    assert_eq!(slots, [1, 2, 3, 4]);

    // Cancel tasks parked in a sleep or a receive.
    let never: Channel<u64> = Channel::new();
    let hs: Vec<_> = (0..CANCELS)
        .map(|i| {
            let never = never.clone();
            thread::spawn(move || {
                if i % 2 == 0 {
                    thread::sleep(HOUR);
                } else {
                    never.recv();
                }
            })
        })
        .collect();
    thread::yield_now();
    for h in &hs {
        h.cancel();
    }
    for h in hs {
        expect_cancelled(h);
    }

    // Choose: a producer `select`s a send on one of two channels; the consumer `select`s a
    // receive on either or a short timeout.
    let (a, b) = (Channel::<u64>::new(), Channel::<u64>::new());
    let producer = {
        let (a, b) = (a.clone(), b.clone());
        thread::spawn(move || {
            for i in 0..CHOICES {
                select(vec![a.send_evt(i), b.send_evt(i)]);
            }
        })
    };
    let (mut got, mut sum) = (0u64, 0u64);
    while got < CHOICES {
        let v = select(vec![
            a.recv_evt().wrap(Some),
            b.recv_evt().wrap(Some),
            event::after(Duration::from_micros(20)).wrap(|()| None),
        ]);
        if let Some(v) = v {
            got += 1;
            sum += v;
        }
    }
    producer.join().unwrap();
    assert_eq!(
        sum,
        CHOICES * (CHOICES - 1) / 2,
        "every choice's value once"
    );

    // Connect, one round trip, close; the server side closes too (counted in `closed`).
    let before = closed.load(Ordering::SeqCst);
    for i in 0..CONNECTS {
        let mut c = TcpStream::connect(addr).unwrap();
        c.write_all(&i.to_le_bytes()).unwrap();
        let mut back = [0u8; 8];
        c.read_exact(&mut back).unwrap();
        assert_eq!(u64::from_le_bytes(back), i);
    }
    while closed.load(Ordering::SeqCst) < before + CONNECTS {
        thread::sleep(Duration::from_millis(1));
    }
}

/// How much the resident set may grow from the end of the warm-up to any later round.
///
/// Why this bound: after the warm-up every pool the loops use (the stack arenas, the
/// allocator's per-thread arenas, the channels' and timers' queues) has about reached the size
/// the loops need, so a later round needs little new memory, and what remains is allocator
/// noise: fragmentation moving pages in and out of the resident set. In the runs made while
/// writing this test the growth after the warm-up was at most 1.3 MiB (debug, 12 rounds, so a
/// short warm-up) and 0.2 MiB in release. A leak grows with every round instead: one round
/// makes about 1 500 operations (spawns, cancellations, choices, connections), so a leak of
/// B bytes per operation adds about 1.5 B KiB per round, and 8 MiB is crossed after
/// 5 500 / B rounds: leaked task stacks (384 tasks a round, at least one 4 KiB page touched
/// each: 1.5 MiB a round) within six rounds, so in either size; a leak of 64 bytes per
/// operation within 90 rounds, 8 bytes within 700 (the soak size measures 750 rounds after a
/// warm-up of 250, the short size 18 after 6). The short size catches only the large leaks,
/// `BOBINE_SOAK=1` the small ones.
const GROWTH_BOUND: u64 = 8 << 20;

/// The child body of the memory test: `rounds` rounds, the first quarter a warm-up; the
/// resident set sampled after each.
fn memory_child(rounds: u64) {
    bobine::Builder::new().domains(2).run(move || {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let closed = Arc::new(AtomicU64::new(0));
        let server = {
            let closed = closed.clone();
            thread::spawn(move || {
                loop {
                    let (s, _) = listener.accept().unwrap();
                    let closed = closed.clone();
                    drop(thread::spawn(move || {
                        let mut b = [0u8; 8];
                        if (&s).read_exact(&mut b).is_ok() {
                            (&s).write_all(&b).unwrap();
                        }
                        let mut rest = Vec::new();
                        let _ = (&s).read_to_end(&mut rest);
                        drop(s);
                        closed.fetch_add(1, Ordering::SeqCst);
                    }));
                }
            })
        };
        let warm_up = (rounds / 4).max(3);
        let mut baseline = 0;
        let mut fds = 0;
        let mut samples = Vec::new();
        for r in 0..rounds {
            memory_round(addr, &closed);
            let rss = resident_bytes();
            samples.push(rss >> 10);
            if r + 1 == warm_up {
                baseline = rss;
                fds = open_fds();
            } else if r + 1 > warm_up {
                assert!(
                    rss <= baseline + GROWTH_BOUND,
                    "resident memory grew by {} KiB from the end of the warm-up (round {warm_up}) \
                     to round {}; samples (KiB): {samples:?}",
                    (rss - baseline) >> 10,
                    r + 1
                );
                assert_eq!(open_fds(), fds, "descriptors after round {}", r + 1);
            }
        }
        server.cancel();
        expect_cancelled(server);
        let last = *samples.last().unwrap();
        eprintln!(
            "child: {rounds} rounds; resident {} KiB after the warm-up, {last} KiB at the end, \
             at most {} KiB (samples: first {:?}, last {:?})",
            baseline >> 10,
            samples[warm_up as usize..].iter().max().unwrap(),
            &samples[..samples.len().min(4)],
            &samples[samples.len().saturating_sub(4)..]
        );
    });
}

/// Memory stays flat over a long run of spawn/join, cancellation, `select` (with timeouts
/// that win now and then) and TCP connect/close loops: after a warm-up, the resident set
/// (`/proc/self/statm`) never grows past [`GROWTH_BOUND`], and the descriptors stay where
/// they were.
#[test]
fn reliability_memory_flat() {
    const NAME: &str = "reliability_memory_flat";
    let name = &test_path(module_path!(), NAME);
    let rounds = size(24, 1_000);
    if in_child(name) {
        common::watchdog(limit(90), NAME, || memory_child(rounds));
        return;
    }
    let stderr = common::child::run_ok(CHILD_ENV, name, limit(90) + 10);
    assert!(
        stderr.contains(&format!("child: {rounds} rounds")),
        "{stderr}"
    );
    eprintln!(
        "{}",
        stderr.lines().find(|l| l.starts_with("child:")).unwrap()
    );
}
