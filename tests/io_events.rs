//! Readiness events, `bobine::event::{readable, writable}`: in a select with a channel and a
//! timeout (each can win), `poll` on a descriptor that is not ready, syncs on plain OS threads
//! (which wait in `poll(2)`), many syncs on one descriptor, descriptors that are not open.

mod common;

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, IntoRawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bobine::event::{Channel, Event, after, readable, select, writable};
use bobine::net::UnixStream;
use bobine::thread;

#[derive(Debug, PartialEq, Eq)]
enum Won {
    Socket,
    Channel(u32),
    Timeout,
}

/// `readable(fd)` / a channel receive / `after(d)`, as one select.
fn race(fd: i32, c: &Channel<u32>, d: Duration) -> Won {
    select(vec![
        readable(fd).wrap(|()| Won::Socket),
        c.recv_evt().wrap(Won::Channel),
        after(d).wrap(|()| Won::Timeout),
    ])
}

/// Each of the three can win: the socket when data arrives, the channel when a sender comes,
/// the timeout when neither does; the winner may arrive while the sync is blocked.
#[test]
fn select_of_readiness_channel_and_timeout_each_can_win() {
    common::watchdog(
        20,
        "select_of_readiness_channel_and_timeout_each_can_win",
        || {
            bobine::run(|| {
                let (a, b) = UnixStream::pair().unwrap();
                let fd = a.as_raw_fd();
                let c: Channel<u32> = Channel::new();
                let long = Duration::from_secs(10);

                // Nothing comes: the timeout wins, no sooner than its delay.
                let t = Instant::now();
                assert_eq!(race(fd, &c, Duration::from_millis(50)), Won::Timeout);
                assert!(t.elapsed() >= Duration::from_millis(50));

                // A sender comes while the sync is blocked: the channel wins.
                let c2 = c.clone();
                let sender = thread::spawn(move || {
                    thread::sleep(Duration::from_millis(30));
                    c2.send(7);
                });
                assert_eq!(race(fd, &c, long), Won::Channel(7));
                sender.join().unwrap();

                // Data arrives while the sync is blocked: the socket wins; the data is still
                // there to read (readiness consumes nothing).
                let writer = thread::spawn(move || {
                    thread::sleep(Duration::from_millis(30));
                    (&b).write_all(b"x").unwrap();
                    b
                });
                assert_eq!(race(fd, &c, long), Won::Socket);
                let b = writer.join().unwrap();
                let mut one = [0u8; 1];
                (&a).read_exact(&mut one).unwrap();
                assert_eq!(&one, b"x");

                // Data already there: the socket wins at once.
                (&b).write_all(b"y").unwrap();
                assert_eq!(race(fd, &c, long), Won::Socket);
                (&a).read_exact(&mut one).unwrap();

                // Drained again: the timeout wins again (the earlier readiness left nothing).
                assert_eq!(race(fd, &c, Duration::from_millis(20)), Won::Timeout);
            });
        },
    );
}

/// `poll` on a descriptor that is not ready gives `None` and leaves nothing behind: the data
/// that arrives later is whole, a later `poll` sees it, and a later blocked sync on another
/// event is not disturbed by the descriptor becoming ready.
#[test]
fn poll_on_a_descriptor_not_ready_gives_none_and_leaves_nothing_behind() {
    common::watchdog(
        10,
        "poll_on_a_descriptor_not_ready_gives_none_and_leaves_nothing_behind",
        || {
            bobine::run(|| {
                let (a, b) = UnixStream::pair().unwrap();
                let fd = a.as_raw_fd();
                for _ in 0..1000 {
                    assert!(readable(fd).poll().is_none());
                }
                assert!(
                    select(vec![readable(fd).wrap(|()| 1), Event::always(2)]) == 2,
                    "a descriptor that is not ready never commits"
                );
                (&b).write_all(b"data").unwrap();
                assert!(readable(fd).poll().is_some());
                assert!(readable(fd).poll().is_some(), "readiness consumes nothing");
                let mut got = [0u8; 4];
                (&a).read_exact(&mut got).unwrap();
                assert_eq!(&got, b"data");
                assert!(readable(fd).poll().is_none());

                // The descriptor becoming ready later does not end an unrelated wait.
                let writer = thread::spawn(move || {
                    thread::sleep(Duration::from_millis(20));
                    (&b).write_all(b"!").unwrap();
                    b
                });
                let c: Channel<()> = Channel::new();
                let t = Instant::now();
                let r = select(vec![
                    c.recv_evt().wrap(|()| "channel"),
                    after(Duration::from_millis(100)).wrap(|()| "timeout"),
                ]);
                assert_eq!(r, "timeout");
                assert!(t.elapsed() >= Duration::from_millis(100));
                let _b = writer.join().unwrap();
            });
        },
    );
}

/// `writable` is ready on a socket with room, not ready once its buffers are full, and ready
/// again when the peer drains them (waking a blocked sync).
#[test]
fn writable_follows_the_buffer_space() {
    common::watchdog(10, "writable_follows_the_buffer_space", || {
        bobine::run(|| {
            let (a, b) = UnixStream::pair().unwrap();
            let fd = a.as_raw_fd();
            assert!(writable(fd).poll().is_some());
            a.set_nonblocking(true).unwrap();
            let chunk = [0u8; 4096];
            let mut filled = false;
            for _ in 0..100_000 {
                match (&a).write(&chunk) {
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        filled = true;
                        break;
                    }
                    Err(e) => panic!("{e}"),
                }
            }
            assert!(filled, "the socket buffers never filled up");
            assert!(writable(fd).poll().is_none());
            let drainer = thread::spawn(move || {
                thread::sleep(Duration::from_millis(30));
                b.set_nonblocking(true).unwrap();
                let mut buf = vec![0u8; 1 << 16];
                while (&b).read(&mut buf).is_ok() {}
                b
            });
            let r = select(vec![
                writable(fd).wrap(|()| "writable"),
                after(Duration::from_secs(10)).wrap(|()| "timeout"),
            ]);
            assert_eq!(r, "writable");
            let _b = drainer.join().unwrap();
        });
    });
}

/// A plain OS thread (no runtime) syncs on readiness in `poll(2)`: it wakes when data arrives,
/// when a channel partner comes while it waits on a descriptor that never becomes ready, and
/// when its timeout passes.
#[test]
fn readiness_syncs_on_a_plain_thread() {
    common::watchdog(15, "readiness_syncs_on_a_plain_thread", || {
        let (a, b) = UnixStream::pair().unwrap();
        let fd = a.as_raw_fd();
        let c: Channel<u32> = Channel::new();
        let long = Duration::from_secs(10);

        let writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            (&b).write_all(b"z").unwrap();
            b
        });
        assert_eq!(race(fd, &c, long), Won::Socket);
        let b = writer.join().unwrap();
        let mut one = [0u8; 1];
        (&a).read_exact(&mut one).unwrap();

        // The descriptor stays quiet; a partner on the channel ends the poll(2) wait, from a
        // plain thread and from a task of a runtime.
        let c2 = c.clone();
        let sender = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            c2.send(1);
        });
        assert_eq!(race(fd, &c, long), Won::Channel(1));
        sender.join().unwrap();
        let c2 = c.clone();
        let runtime = std::thread::spawn(move || {
            bobine::run(move || {
                thread::sleep(Duration::from_millis(30));
                c2.send(2);
            })
        });
        assert_eq!(race(fd, &c, long), Won::Channel(2));
        runtime.join().unwrap();

        let t = Instant::now();
        assert_eq!(race(fd, &c, Duration::from_millis(50)), Won::Timeout);
        assert!(t.elapsed() >= Duration::from_millis(50));

        // A task of a runtime makes the descriptor readable for the waiting thread.
        let runtime = std::thread::spawn(move || {
            bobine::run(move || {
                thread::sleep(Duration::from_millis(30));
                (&b).write_all(b"w").unwrap();
                b
            })
        });
        assert_eq!(race(fd, &c, long), Won::Socket);
        drop(runtime.join().unwrap());
        assert!(writable(fd).poll().is_some());
    });
}

/// Many syncs, in many tasks and on plain threads, wait for the same descriptor; one write
/// wakes them all (readiness is not consumed by a sync).
#[test]
fn many_syncs_on_the_same_descriptor_all_wake() {
    common::watchdog(15, "many_syncs_on_the_same_descriptor_all_wake", || {
        const TASKS: usize = 32;
        const THREADS: usize = 4;
        bobine::run(|| {
            let (a, b) = UnixStream::pair().unwrap();
            let fd = a.as_raw_fd();
            let woken = Arc::new(AtomicUsize::new(0));
            let waiting = |w: Arc<AtomicUsize>| {
                move || {
                    let r = select(vec![
                        readable(fd).wrap(|()| true),
                        after(Duration::from_secs(10)).wrap(|()| false),
                    ]);
                    if r {
                        w.fetch_add(1, Ordering::SeqCst);
                    }
                    r
                }
            };
            let tasks: Vec<_> = (0..TASKS)
                .map(|_| thread::spawn(waiting(woken.clone())))
                .collect();
            let threads: Vec<_> = (0..THREADS)
                .map(|_| std::thread::spawn(waiting(woken.clone())))
                .collect();
            thread::sleep(Duration::from_millis(50));
            assert_eq!(woken.load(Ordering::SeqCst), 0, "nothing is readable yet");
            (&b).write_all(b"!").unwrap();
            for t in tasks {
                assert!(t.join().unwrap(), "a task's sync timed out");
            }
            let threads_ok =
                bobine::io::unblock(move || threads.into_iter().all(|t| t.join().unwrap()));
            assert!(threads_ok, "a thread's sync timed out");
            assert_eq!(woken.load(Ordering::SeqCst), TASKS + THREADS);
            drop(a);
        });
    });
}

/// A descriptor that is not open counts as ready (the operation reports the error), in a task
/// and on a plain thread; a descriptor closed while a sync waits on it ends that wait.
#[test]
fn a_descriptor_not_open_counts_as_ready() {
    common::watchdog(10, "a_descriptor_not_open_counts_as_ready", || {
        const NEVER_OPENED: i32 = 1_000_000;
        fn check() {
            assert!(readable(NEVER_OPENED).poll().is_some());
            assert!(writable(NEVER_OPENED).poll().is_some());
            let r = select(vec![
                readable(NEVER_OPENED).wrap(|()| "ready"),
                after(Duration::from_secs(10)).wrap(|()| "timeout"),
            ]);
            assert_eq!(r, "ready");
        }
        bobine::run(check);
        std::thread::spawn(check).join().unwrap();

        bobine::run(|| {
            let (a, _b) = UnixStream::pair().unwrap();
            let fd = a.as_raw_fd();
            let waiter = thread::spawn(move || {
                select(vec![
                    readable(fd).wrap(|()| "ready"),
                    after(Duration::from_secs(10)).wrap(|()| "timeout"),
                ])
            });
            thread::sleep(Duration::from_millis(30));
            drop(a);
            assert_eq!(waiter.join().unwrap(), "ready");
        });
    });
}

/// A raw descriptor closed behind bobine's back (`libc::close`) while a sync waits on its
/// readiness: the descriptor is no longer open, so the leaf counts as ready, and the sync must
/// end without waiting for its other leaves (as `io::wait_readable` notices a close within
/// 100 ms). Checked in a task and on a plain thread; the 3 s timeout leaf bounds the test.
#[test]
fn a_raw_descriptor_closed_behind_bobines_back_ends_a_blocked_sync() {
    common::watchdog(
        20,
        "a_raw_descriptor_closed_behind_bobines_back_ends_a_blocked_sync",
        || {
            fn check(where_: &'static str) -> Result<(), String> {
                let (r, w) = common::fds::pipe();
                let (r, w) = (r.into_raw_fd(), w.into_raw_fd());
                let closer = std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(30));
                    // SAFETY: the read end is ours and closed once, here.
                    assert_eq!(unsafe { libc::close(r) }, 0);
                });
                let t = Instant::now();
                let v = select(vec![
                    readable(r).wrap(|()| "ready"),
                    after(Duration::from_secs(3)).wrap(|()| "timeout"),
                ]);
                let took = t.elapsed();
                closer.join().unwrap();
                // SAFETY: the write end is ours and closed once, here.
                unsafe { libc::close(w) };
                if v != "ready" || took >= Duration::from_millis(1500) {
                    return Err(format!(
                        "{where_}: {v:?} after {took:?}: the close was noticed only when the \
                         3 s timeout fired; without a timeout leaf the sync would hang"
                    ));
                }
                Ok(())
            }
            let in_task = bobine::run(|| check("in a task"));
            let on_thread = std::thread::spawn(|| check("on a plain thread"))
                .join()
                .unwrap();
            assert_eq!((in_task, on_thread), (Ok(()), Ok(())));
        },
    );
}
