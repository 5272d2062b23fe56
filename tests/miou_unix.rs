//! `bobine::miou::unix` behaves as Miou_unix: a loopback echo, Miou's argument checks,
//! `really_read` at the end of a stream, tasks cancelled while blocked in `accept`, `read`,
//! `write`, `connect` or `sleep` (their sockets closed), the same names on plain threads; and
//! `unix::ownership` (Miou_unix.Ownership): `Not_owner`, `give` and `transfer`,
//! `Resource_leaked`, finalisers of panicking and cancelled owners, no double close.

mod common;

use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::rc::Rc;
use std::sync::Mutex;

use bobine::miou::{self, Error, Spawn, ownership::transfer, unix, unix::ownership as owned};
use common::fds::{identity, is_open, open_fds};
use common::panics::{panic_text, payload_text};

/// Set in the child runs of this file (see `common::child`).
const CHILD_ENV: &str = "BOBINE_MIOU_UNIX_CHILD";

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// A listening socket on a fresh loopback port, and its address.
fn listener() -> (unix::FileDescr, SocketAddr) {
    let l = unix::tcpv4().unwrap();
    unix::bind_and_listen(&l, loopback()).unwrap();
    let addr = l.local_addr().unwrap();
    (l, addr)
}

/// A connected pair made by the calling task alone: (client, accepted side, listener).
fn pair() -> (unix::FileDescr, unix::FileDescr, unix::FileDescr) {
    let (l, addr) = listener();
    let c = unix::tcpv4().unwrap();
    unix::connect(&c, addr).unwrap();
    let (s, peer) = unix::accept(&l).unwrap();
    assert_eq!(peer, c.local_addr().unwrap());
    (c, s, l)
}

/// Message `i` of the echo tests: lengths from 1 byte to 5000, contents that tell them apart.
fn message(i: usize) -> Vec<u8> {
    let len = 1 + (i * 997) % 5000;
    (0..len).map(|j| (i * 31 + j) as u8).collect()
}

// ---------------------------------------------------------------------------------------------
// The names

/// A server task and a client task on two domains echo 200 messages, every byte intact.
#[test]
fn echo_over_loopback_returns_every_message_intact() {
    common::watchdog(
        30,
        "echo_over_loopback_returns_every_message_intact",
        || {
            const MESSAGES: usize = 200;
            let (echoed, sent) = miou::run_with(1, || {
                let (l, addr) = listener();
                let server = miou::call(move || {
                    let (s, _) = unix::accept(&l).unwrap();
                    unix::close(l).unwrap();
                    let mut buf = vec![0; 8192];
                    let mut echoed = 0;
                    loop {
                        let n = unix::read(&s, &mut buf, 0, 8192).unwrap();
                        if n == 0 {
                            break;
                        }
                        unix::write(&s, &buf, 0, n).unwrap();
                        echoed += n;
                    }
                    unix::close(s).unwrap();
                    echoed
                });
                let client = miou::call_cc(move || {
                    let c = unix::tcpv4().unwrap();
                    unix::connect(&c, addr).unwrap();
                    let mut sent = 0;
                    for i in 0..MESSAGES {
                        let m = message(i);
                        unix::write(&c, &m, 0, m.len()).unwrap();
                        let mut back = vec![0; m.len() + 2];
                        unix::really_read(&c, &mut back, 1, m.len()).unwrap();
                        assert_eq!(&back[1..=m.len()], &m[..], "message {i} came back changed");
                        sent += m.len();
                    }
                    unix::close(c).unwrap();
                    sent
                });
                let sent = miou::await_exn(client);
                (miou::await_exn(server), sent)
            });
            assert_eq!(echoed, sent, "the server echoed every byte, no more");
        },
    );
}

/// An `off`/`len` outside the buffer panics with Miou's `Invalid_argument("Miou_unix.<name>")`.
#[test]
fn out_of_range_off_or_len_panics_with_invalid_argument() {
    common::watchdog(
        20,
        "out_of_range_off_or_len_panics_with_invalid_argument",
        || {
            let fd = unix::tcpv4().unwrap();
            let bad: [(usize, usize); 4] = [(9, 0), (0, 9), (4, 5), (1, usize::MAX)];
            for (off, len) in bad {
                let mut buf = [0u8; 8];
                let cases: [(&str, String); 3] = [
                    (
                        "Miou_unix.read",
                        panic_text(|| unix::read(&fd, &mut buf, off, len)),
                    ),
                    (
                        "Miou_unix.write",
                        panic_text(|| unix::write(&fd, &[0; 8], off, len)),
                    ),
                    (
                        "Miou_unix.really_read",
                        panic_text(|| unix::really_read(&fd, &mut buf, off, len)),
                    ),
                ];
                for (name, text) in cases {
                    assert!(
                        text.starts_with(&format!("Invalid_argument(\"{name}\")")),
                        "off {off}, len {len}: {text}"
                    );
                }
            }
            // The edges: an empty range at the end does nothing, and needs no connection.
            let mut buf = [0u8; 8];
            unix::write(&fd, &buf, 8, 0).unwrap();
            unix::really_read(&fd, &mut buf, 8, 0).unwrap();
            unix::close(fd).unwrap();
        },
    );
}

/// `sleep` of a negative, NaN or infinite duration panics with `Invalid_argument`; 0 returns.
#[test]
fn sleep_refuses_negative_and_non_finite_durations() {
    common::watchdog(
        20,
        "sleep_refuses_negative_and_non_finite_durations",
        || {
            for secs in [-1.0, -0.001, f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
                let text = panic_text(|| unix::sleep(secs));
                assert!(
                    text.starts_with("Invalid_argument(\"Miou_unix.sleep\")"),
                    "sleep({secs}): {text}"
                );
            }
            unix::sleep(0.0);
            unix::sleep(0.001);
            miou::run_with(0, || {
                unix::sleep(0.0);
                unix::sleep(0.001);
            });
        },
    );
}

/// `really_read` past the end of the stream is `UnexpectedEof` (Miou's `End_of_file`).
#[test]
fn really_read_at_end_of_stream_is_unexpected_eof() {
    common::watchdog(20, "really_read_at_end_of_stream_is_unexpected_eof", || {
        miou::run_with(0, || {
            let (c, s, l) = pair();
            unix::write(&s, b"abc", 0, 3).unwrap();
            unix::close(s).unwrap();
            let mut buf = [0u8; 6];
            let e = unix::really_read(&c, &mut buf, 1, 5).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof, "{e}");
            assert!(e.to_string().contains("End_of_file"), "{e}");
            assert_eq!(&buf, b"\0abc\0\0");
            assert_eq!(unix::read(&c, &mut buf, 0, 6).unwrap(), 0);
            unix::close(c).unwrap();
            unix::close(l).unwrap();
        });
    });
}

/// Outside any runtime, the same names block plain OS threads: an echo between two threads.
#[test]
fn the_names_work_on_plain_threads() {
    common::watchdog(20, "the_names_work_on_plain_threads", || {
        let (l, addr) = listener();
        let server = std::thread::spawn(move || {
            let (s, _) = unix::accept(&l).unwrap();
            let mut buf = [0u8; 5];
            unix::really_read(&s, &mut buf, 0, 5).unwrap();
            unix::write(&s, &buf, 0, 5).unwrap();
        });
        let c = unix::tcpv4().unwrap();
        unix::connect(&c, addr).unwrap();
        unix::sleep(0.001);
        unix::write(&c, b"hello", 0, 5).unwrap();
        let mut back = [0u8; 5];
        unix::really_read(&c, &mut back, 0, 5).unwrap();
        assert_eq!(&back, b"hello");
        server.join().unwrap();
    });
}

// ---------------------------------------------------------------------------------------------
// Cancellation

/// What a child blocked by [`cancel_while_blocked`] left: the identities of its descriptors,
/// whether it reached its blocking call, and whether that call returned.
#[derive(Default)]
struct Trace {
    fds: Vec<String>,
    blocking: bool,
    returned: bool,
}

/// Runs `body` as a child on one domain, lets it run until it parks, cancels it, and checks
/// that it unwound from its blocking call (which never returned) and that every descriptor it
/// recorded is closed.
fn cancel_while_blocked(what: &str, body: fn(&Rc<RefCell<Trace>>)) {
    miou::run_with(0, || {
        let trace = Rc::new(RefCell::new(Trace::default()));
        let t = trace.clone();
        let child = miou::call_cc(move || body(&t));
        // One domain: the child runs until it parks, then the parent goes on.
        while !trace.borrow().blocking {
            miou::yield_();
        }
        miou::yield_();
        miou::cancel(&child);
        assert!(
            matches!(miou::await_(child), Err(Error::Cancelled)),
            "{what}: the child was not cancelled"
        );
        let trace = trace.borrow();
        assert!(!trace.returned, "{what}: the blocking call returned");
        assert!(!trace.fds.is_empty());
        for fd in &trace.fds {
            assert!(!is_open(fd), "{what}: {fd} is still open");
        }
    });
}

/// Records `fd` in the trace.
fn record(t: &Rc<RefCell<Trace>>, fd: &impl AsRawFd) {
    t.borrow_mut().fds.push(identity(fd.as_raw_fd()));
}

/// Marks the trace around a blocking call.
fn blocking<R>(t: &Rc<RefCell<Trace>>, call: impl FnOnce() -> R) -> R {
    t.borrow_mut().blocking = true;
    let r = call();
    t.borrow_mut().returned = true;
    r
}

/// A task cancelled while blocked in `accept` unwinds from it; its listener is closed.
#[test]
fn cancelled_accept_unwinds_and_closes_the_listener() {
    common::watchdog(
        20,
        "cancelled_accept_unwinds_and_closes_the_listener",
        || {
            cancel_while_blocked("accept", |t| {
                let (l, _) = listener();
                record(t, &l);
                let _ = blocking(t, || unix::accept(&l));
            });
        },
    );
}

/// A task cancelled while blocked in `read` or `really_read` unwinds; its sockets are closed.
#[test]
fn cancelled_read_unwinds_and_closes_the_sockets() {
    common::watchdog(20, "cancelled_read_unwinds_and_closes_the_sockets", || {
        cancel_while_blocked("read", |t| {
            let (c, s, l) = pair();
            for fd in [&c, &s, &l] {
                record(t, fd);
            }
            let _ = blocking(t, || unix::read(&s, &mut [0; 16], 0, 16));
        });
        cancel_while_blocked("really_read", |t| {
            let (c, s, l) = pair();
            for fd in [&c, &s, &l] {
                record(t, fd);
            }
            unix::write(&c, b"ab", 0, 2).unwrap();
            let _ = blocking(t, || unix::really_read(&s, &mut [0; 16], 0, 16));
        });
    });
}

/// A task cancelled while blocked in `write` (buffers full) unwinds; its sockets are closed.
#[test]
fn cancelled_write_unwinds_and_closes_the_sockets() {
    common::watchdog(20, "cancelled_write_unwinds_and_closes_the_sockets", || {
        cancel_while_blocked("write", |t| {
            let (c, s, l) = pair();
            for fd in [&c, &s, &l] {
                record(t, fd);
            }
            let big = vec![7u8; 64 << 20];
            let _ = blocking(t, || unix::write(&c, &big, 0, big.len()));
        });
    });
}

/// A task cancelled while blocked in `connect` (queue full) unwinds; its sockets are closed.
#[test]
fn cancelled_connect_unwinds_and_closes_the_sockets() {
    common::watchdog(
        20,
        "cancelled_connect_unwinds_and_closes_the_sockets",
        || {
            cancel_while_blocked("connect", |t| {
                let l = unix::tcpv4().unwrap();
                unix::bind_and_listen_with_backlog(&l, loopback(), 0).unwrap();
                let addr = l.local_addr().unwrap();
                record(t, &l);
                // With a backlog of 0 the kernel queues one connection and then drops SYNs: a
                // later connect stays in progress. Every connection is kept open meanwhile.
                let mut made = Vec::new();
                for i in 0..64 {
                    let c = unix::tcpv4().unwrap();
                    record(t, &c);
                    // The first connection completes; the parent cancels once a later one waits.
                    t.borrow_mut().blocking = i > 0;
                    unix::connect(&c, addr).unwrap();
                    made.push(c);
                }
                t.borrow_mut().returned = true;
            });
        },
    );
}

/// A task cancelled while blocked in `sleep` unwinds from it; a socket it held is closed.
#[test]
fn cancelled_sleep_unwinds_and_closes_the_socket() {
    common::watchdog(20, "cancelled_sleep_unwinds_and_closes_the_socket", || {
        cancel_while_blocked("sleep", |t| {
            let fd = unix::tcpv4().unwrap();
            record(t, &fd);
            blocking(t, || unix::sleep(3600.0));
        });
    });
}

/// 300 tasks cancelled in `accept` or `read` leave the count of open descriptors unchanged.
#[test]
fn cancelled_blocked_tasks_leave_the_descriptor_count_unchanged() {
    const NAME: &str = "cancelled_blocked_tasks_leave_the_descriptor_count_unchanged";
    if common::child::is_child_of(CHILD_ENV, NAME) {
        common::watchdog(60, NAME, || {
            let before = open_fds();
            miou::run_with(0, || {
                let round = |i: usize| {
                    let blocking = Rc::new(std::cell::Cell::new(false));
                    let b = blocking.clone();
                    let p = miou::call_cc(move || {
                        let (c, s, l) = pair();
                        b.set(true);
                        if i % 2 == 0 {
                            let _ = unix::accept(&l);
                        } else {
                            let _ = unix::read(&s, &mut [0; 8], 0, 8);
                        }
                        drop(c);
                    });
                    // One domain: once the flag is up, the child is parked in its call.
                    while !blocking.get() {
                        miou::yield_();
                    }
                    miou::cancel(&p);
                    assert!(matches!(miou::await_(p), Err(Error::Cancelled)));
                };
                round(0);
                let base = open_fds();
                for i in 1..=300 {
                    round(i);
                }
                assert_eq!(open_fds(), base, "descriptors leaked by cancelled tasks");
            });
            assert_eq!(open_fds(), before, "descriptors left after the run");
        });
        return;
    }
    common::watchdog(90, NAME, || {
        common::child::run_ok(CHILD_ENV, NAME, 80);
    });
}

// ---------------------------------------------------------------------------------------------
// Ownership

/// A listening owned socket on a fresh loopback port, and its address.
fn owned_listener() -> (owned::FileDescr, SocketAddr) {
    let l = owned::tcpv4().unwrap();
    owned::bind_and_listen(&l, loopback()).unwrap();
    let addr = l.local_addr().unwrap();
    (l, addr)
}

/// Whether `p` ended with `Error::NotOwner`.
fn not_owner<T: 'static>(p: miou::Promise<T>) -> bool {
    matches!(miou::await_(p), Err(Error::NotOwner))
}

/// Any operation by a task that does not own the socket panics with `Miou.Not_owner`.
#[test]
fn a_task_that_does_not_own_a_socket_panics_with_not_owner() {
    common::watchdog(
        20,
        "a_task_that_does_not_own_a_socket_panics_with_not_owner",
        || {
            miou::run_with(0, || {
                let (l, addr) = owned_listener();
                let fd = l.clone();
                assert!(not_owner(miou::call_cc(move || {
                    let _ = owned::accept(&fd);
                })));
                let fd = l.clone();
                assert!(not_owner(miou::call_cc(move || {
                    let _ = owned::read(&fd, &mut [0; 4], 0, 4);
                })));
                let fd = l.clone();
                assert!(not_owner(miou::call_cc(move || {
                    let _ = owned::write(&fd, b"x", 0, 1);
                })));
                let fd = l.clone();
                assert!(not_owner(miou::call_cc(move || {
                    let _ = owned::really_read(&fd, &mut [0; 4], 0, 4);
                })));
                let fd = l.clone();
                assert!(not_owner(miou::call_cc(move || {
                    let _ = owned::connect(&fd, addr);
                })));
                let fd = l.clone();
                assert!(not_owner(miou::call_cc(move || {
                    let _ = owned::close(fd);
                })));

                // Given away, the socket is not the parent's any more.
                let c = owned::tcpv4().unwrap();
                let gone = c.clone();
                let child = Spawn::new()
                    .give(owned::resource(&c))
                    .call_cc(move || owned::close(gone).unwrap());
                let p = catch_unwind(AssertUnwindSafe(|| owned::connect(&c, addr))).unwrap_err();
                assert!(
                    matches!(p.downcast_ref::<Error>(), Some(Error::NotOwner)),
                    "{}",
                    payload_text(&*p)
                );
                miou::await_exn(child);

                // The owner's socket still works.
                let c = owned::tcpv4().unwrap();
                owned::connect(&c, addr).unwrap();
                let (s, _) = owned::accept(&l).unwrap();
                owned::write(&c, b"still", 0, 5).unwrap();
                let mut buf = [0; 5];
                owned::really_read(&s, &mut buf, 0, 5).unwrap();
                assert_eq!(&buf, b"still");
                for fd in [c, s, l] {
                    owned::close(fd).unwrap();
                }
            });
        },
    );
}

/// A socket given to a child (`Spawn::give`) comes back to the parent by `transfer`.
#[test]
fn a_socket_given_to_a_child_comes_back_by_transfer() {
    common::watchdog(
        20,
        "a_socket_given_to_a_child_comes_back_by_transfer",
        || {
            miou::run_with(1, || {
                let (l, addr) = owned_listener();
                let fd = l.clone();
                let acceptor = Spawn::new().give(owned::resource(&l)).call(move || {
                    let (s, _) = owned::accept(&fd).unwrap();
                    assert!(owned::resource(&s).is_owned(), "accepted: the child's");
                    transfer(owned::resource(&fd));
                    transfer(owned::resource(&s));
                    s
                });
                let c = owned::tcpv4().unwrap();
                owned::connect(&c, addr).unwrap();
                let s = miou::await_exn(acceptor);
                assert!(owned::resource(&l).is_owned() && owned::resource(&s).is_owned());
                for i in 0..20 {
                    let m = message(i);
                    owned::write(&c, &m, 0, m.len()).unwrap();
                    let mut back = vec![0; m.len()];
                    owned::really_read(&s, &mut back, 0, m.len()).unwrap();
                    assert_eq!(back, m, "message {i}");
                }
                for fd in [c, s, l] {
                    owned::close(fd).unwrap();
                }
            });
        },
    );
}

/// Handles to sockets whose owner broke rule 8 (kept here so that only the finaliser can close
/// them): see the test below.
static LEAKED: Mutex<Vec<(String, owned::FileDescr)>> = Mutex::new(Vec::new());

/// Returning while owning a socket aborts `miou::run` with `ResourceLeaked`; the socket closes.
#[test]
fn returning_while_owning_a_socket_aborts_the_run_with_resource_leaked() {
    common::watchdog(
        20,
        "returning_while_owning_a_socket_aborts_the_run_with_resource_leaked",
        || {
            let out = catch_unwind(|| {
                miou::run_with(0, || {
                    let child = miou::call_cc(|| {
                        let (l, _) = owned_listener();
                        LEAKED
                            .lock()
                            .unwrap()
                            .push((identity(l.as_raw_fd()), l.clone()));
                    });
                    let _ = miou::await_(child);
                })
            });
            let payload = out.expect_err("the run must be aborted");
            let error = payload
                .downcast::<Error>()
                .unwrap_or_else(|p| panic!("not a miou::Error: {}", payload_text(&*p)));
            assert_eq!(*error, Error::ResourceLeaked);
            let (id, fd) = LEAKED.lock().unwrap().pop().unwrap();
            assert!(!is_open(&id), "the leaked socket {id} is still open");
            assert_eq!(
                fd.local_addr().unwrap_err().raw_os_error(),
                Some(libc::EBADF)
            );
        },
    );
}

/// An owner that panics runs its sockets' finalisers: they are closed as it ends.
#[test]
fn a_panicking_owner_s_sockets_are_closed() {
    common::watchdog(20, "a_panicking_owner_s_sockets_are_closed", || {
        miou::run_with(0, || {
            let kept: Rc<RefCell<Vec<owned::FileDescr>>> = Rc::default();
            let k = kept.clone();
            let child = miou::call_cc(move || {
                let (l, addr) = owned_listener();
                let c = owned::tcpv4().unwrap();
                owned::connect(&c, addr).unwrap();
                let (s, _) = owned::accept(&l).unwrap();
                k.borrow_mut().extend([l, c, s]);
                panic!("the owner fails");
            });
            match miou::await_(child) {
                Err(Error::Panic(p)) => assert_eq!(payload_text(&*p), "the owner fails"),
                other => panic!("expected the child's panic, got {:?}", other.err()),
            }
            for fd in kept.borrow().iter() {
                let e = fd.local_addr().unwrap_err();
                assert_eq!(e.raw_os_error(), Some(libc::EBADF), "{fd:?} is still open");
            }
        });
    });
}

/// An owner cancelled while blocked in `accept` runs its finaliser: the socket is closed.
#[test]
fn a_cancelled_owner_s_socket_is_closed_by_its_finaliser() {
    common::watchdog(
        20,
        "a_cancelled_owner_s_socket_is_closed_by_its_finaliser",
        || {
            miou::run_with(0, || {
                let kept: Rc<RefCell<Option<(String, owned::FileDescr)>>> = Rc::default();
                let k = kept.clone();
                let child = miou::call_cc(move || {
                    let (l, _) = owned_listener();
                    *k.borrow_mut() = Some((identity(l.as_raw_fd()), l.clone()));
                    let _ = owned::accept(&l);
                    unreachable!("accept returned");
                });
                while kept.borrow().is_none() {
                    miou::yield_();
                }
                miou::cancel(&child);
                assert!(matches!(miou::await_(child), Err(Error::Cancelled)));
                let (id, fd) = kept.take().unwrap();
                assert!(!is_open(&id), "{id} is still open");
                assert!(!owned::resource(&fd).is_owned());
            });
        },
    );
}

/// Opens sockets until one reuses the number `raw` (the lowest free one, unless another test
/// takes it first); returns them with their identities.
fn reuse(raw: i32) -> Vec<(String, unix::FileDescr)> {
    let mut fresh = Vec::new();
    for _ in 0..16 {
        let s = unix::tcpv4().unwrap();
        let reused = s.as_raw_fd() == raw;
        fresh.push((identity(s.as_raw_fd()), s));
        if reused {
            break;
        }
    }
    fresh
}

/// Checks that every socket of `fresh` is still open.
fn assert_still_open(what: &str, fresh: &[(String, unix::FileDescr)]) {
    for (id, _) in fresh {
        assert!(is_open(id), "{what}: {id} was closed by a second close");
    }
}

/// A socket closed once (`close`, finaliser or drop) is never closed again by the others.
#[test]
fn a_closed_socket_is_never_closed_again() {
    common::watchdog(20, "a_closed_socket_is_never_closed_again", || {
        miou::run_with(0, || {
            // `close`, then the drop of the other handle.
            let a = owned::tcpv4().unwrap();
            let other = a.clone();
            let raw = a.as_raw_fd();
            owned::close(a).unwrap();
            let fresh = reuse(raw);
            drop(other);
            assert_still_open("close, then drop", &fresh);

            // The finaliser of a panicking owner, then the drop of the last handle.
            let kept: Rc<RefCell<Option<owned::FileDescr>>> = Rc::default();
            let k = kept.clone();
            let child = miou::call_cc(move || {
                *k.borrow_mut() = Some(owned::tcpv4().unwrap());
                panic!("the owner fails");
            });
            assert!(miou::await_(child).is_err());
            let last = kept.take().unwrap();
            let fresh = reuse(last.as_raw_fd());
            drop(last);
            assert_still_open("finaliser, then drop", &fresh);

            // The drop of the last handle, then the finaliser of a panicking owner.
            let fresh: Rc<RefCell<Vec<(String, unix::FileDescr)>>> = Rc::default();
            let f = fresh.clone();
            let child = miou::call_cc(move || {
                let b = owned::tcpv4().unwrap();
                let raw = b.as_raw_fd();
                drop(b);
                *f.borrow_mut() = reuse(raw);
                panic!("the owner fails");
            });
            assert!(miou::await_(child).is_err());
            assert_still_open("drop, then finaliser", &fresh.borrow());
        });
    });
}
