//! Faults on sockets and descriptors: `accept` out of descriptors (an accept storm at
//! `EMFILE`), peers that reset, half-close or vanish, writes to closed peers (no `SIGPIPE`),
//! descriptors closed (or closed and reused) while a task waits on them, invalid descriptors,
//! refused and unreachable connections, zero timeouts.
//!
//! Tests that change process-wide state (the descriptor limit, the `SIGPIPE` disposition) run
//! their body in a child process: this test binary re-run on one test with [`CHILD_ENV`] set.

mod common;

use std::io::{self, IoSlice, Read, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use bobine::net::{Shutdown, TcpListener, TcpStream, UdpSocket, UnixStream};
use bobine::thread;
use common::fds::{
    connect_raw, exhaust_descriptors, lower_nofile, pipe, raw_tcp_socket, set_linger_zero, tcp_pair,
};
use common::panics::payload_text;
use common::tasks::in_task_and_thread;

/// Set (to the test's name) in the environment of a child process to make that test run its
/// child body.
const CHILD_ENV: &str = "BOBINE_NET_FAULTS_CHILD";

/// Writes `bytes` to a raw descriptor.
fn write_raw(fd: RawFd, bytes: &[u8]) {
    // SAFETY: `bytes` is valid for its length.
    let n = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
    assert_eq!(
        n,
        bytes.len() as isize,
        "write: {}",
        io::Error::last_os_error()
    );
}

/// Waits (in a task: parks) until `raw` is readable, through `bobine::io::wait_readable`.
fn wait_readable_raw(raw: RawFd) -> io::Result<()> {
    // SAFETY: the descriptor is open when the wait starts; the tests close it (or reuse its
    // number) during the wait on purpose, which is the behaviour under test: bobine only
    // passes the number to syscalls that report a closed descriptor as EBADF.
    let fd = unsafe { BorrowedFd::borrow_raw(raw) };
    bobine::io::wait_readable(fd)
}

fn is_ebadf(r: &io::Result<()>) -> bool {
    matches!(r, Err(e) if e.raw_os_error() == Some(libc::EBADF))
}

// ---------------------------------------------------------------------------------------------
// accept at EMFILE

/// Clients of the accept storm, connected while the server's process is out of descriptors.
const STORM_CLIENTS: usize = 8;

/// User plus system CPU time of the whole process (every thread).
fn process_cpu_time() -> Duration {
    // SAFETY: an all-zero rusage is valid; getrusage fills it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let r = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    assert_eq!(r, 0);
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Sleeps (parking the task) until `cond` holds, for at most `limit`; returns whether it held.
fn wait_for(limit: Duration, cond: impl Fn() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if cond() {
            return true;
        }
        thread::sleep(Duration::from_millis(5));
    }
    cond()
}

/// The child body of the accept storm: lowers `RLIMIT_NOFILE`, fills the descriptor table,
/// lets clients connect, checks that the server does not spin, then frees the descriptors and
/// checks that every pending client is served.
fn accept_storm_child() {
    lower_nofile(128);
    bobine::Builder::new().domains(1).run(|| {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = match listener.local_addr().unwrap() {
            SocketAddr::V4(a) => a,
            SocketAddr::V6(_) => unreachable!("bound to 127.0.0.1"),
        };
        let accepted = Arc::new(AtomicUsize::new(0));
        let connected = Arc::new(AtomicUsize::new(0));
        let answered = Arc::new(AtomicUsize::new(0));

        // The server: accepts the storm plus one later client, echoing one byte on each.
        let acc = accepted.clone();
        let server = thread::spawn(move || {
            let mut handlers = Vec::new();
            for _ in 0..=STORM_CLIENTS {
                let (s, _) = listener
                    .accept()
                    .expect("accept must not fail at EMFILE: it backs off and retries");
                acc.fetch_add(1, Ordering::SeqCst);
                handlers.push(thread::spawn(move || {
                    let mut b = [0u8; 1];
                    (&s).read_exact(&mut b).unwrap();
                    (&s).write_all(&b).unwrap();
                }));
            }
            for h in handlers {
                h.join().unwrap();
            }
        });

        // The clients, on a plain thread with sockets made before the table is full.
        let socks: Vec<OwnedFd> = (0..STORM_CLIENTS).map(|_| raw_tcp_socket()).collect();
        let (go, wait_go) = mpsc::channel::<()>();
        let (conn, ans) = (connected.clone(), answered.clone());
        let clients = std::thread::spawn(move || {
            wait_go.recv().unwrap();
            let mut streams = Vec::new();
            for (i, fd) in socks.into_iter().enumerate() {
                connect_raw(&fd, addr).expect("connect into the backlog");
                let mut s = std::net::TcpStream::from(fd);
                s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                s.write_all(&[i as u8]).unwrap();
                conn.fetch_add(1, Ordering::SeqCst);
                streams.push(s);
            }
            for (i, mut s) in streams.into_iter().enumerate() {
                let mut b = [0u8; 1];
                s.read_exact(&mut b).expect("a pending client is answered");
                assert_eq!(b[0], i as u8);
                ans.fetch_add(1, Ordering::SeqCst);
            }
            // A client arriving after the recovery is served as well.
            let mut late = std::net::TcpStream::connect(addr).unwrap();
            late.set_read_timeout(Some(Duration::from_secs(20)))
                .unwrap();
            late.write_all(b"L").unwrap();
            let mut b = [0u8; 1];
            late.read_exact(&mut b).unwrap();
            assert_eq!(&b, b"L");
            ans.fetch_add(1, Ordering::SeqCst);
        });

        let hog = exhaust_descriptors();
        go.send(()).unwrap();
        assert!(
            wait_for(Duration::from_secs(10), || connected.load(Ordering::SeqCst)
                == STORM_CLIENTS),
            "the clients could not connect"
        );
        // Let the server meet EMFILE, then watch it while descriptors stay exhausted.
        thread::sleep(Duration::from_millis(50));
        let (cpu0, t0) = (process_cpu_time(), Instant::now());
        thread::sleep(Duration::from_millis(300));
        let (cpu, wall) = (process_cpu_time() - cpu0, t0.elapsed());
        println!("accept storm: {cpu:?} of CPU over {wall:?} while out of descriptors");
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            0,
            "nothing can be accepted while the table is full"
        );
        assert!(
            cpu < wall / 2,
            "the server busy-loops at EMFILE: {cpu:?} of CPU in {wall:?}"
        );

        drop(hog);
        assert!(
            wait_for(Duration::from_secs(10), || answered.load(Ordering::SeqCst)
                == STORM_CLIENTS + 1),
            "serving did not resume once descriptors were freed: {} of {} answered",
            answered.load(Ordering::SeqCst),
            STORM_CLIENTS + 1
        );
        server.join().unwrap();
        bobine::io::unblock(move || clients.join()).unwrap();
        println!("accept storm child: ok");
    });
}

/// At `EMFILE`, `accept` neither fails nor spins: it reports the condition once on stderr,
/// backs off while descriptors are exhausted, and serves every pending client once they are
/// freed.
#[test]
fn accept_at_emfile_backs_off_reports_once_and_resumes() {
    const NAME: &str = "accept_at_emfile_backs_off_reports_once_and_resumes";
    if common::child::is_child_of(CHILD_ENV, NAME) {
        common::watchdog(30, NAME, accept_storm_child);
        return;
    }
    common::watchdog(60, NAME, || {
        let out = common::child::run(NAME, &[(CHILD_ENV, NAME), ("RUST_BACKTRACE", "0")]);
        common::child::assert_ok(NAME, &out);
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            if line.contains("accept storm") {
                println!("child: {line}");
            }
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        let reports: Vec<&str> = stderr
            .lines()
            .filter(|l| l.contains("bobine: accept on"))
            .collect();
        assert_eq!(
            reports.len(),
            1,
            "the EMFILE condition must be reported exactly once:\n{stderr}"
        );
        assert!(
            reports[0].contains("Too many open files"),
            "the report names the error: {}",
            reports[0]
        );
    });
}

// ---------------------------------------------------------------------------------------------
// Peers that reset, half-close or vanish

/// An echo connection served by a task of the same domain: it keeps answering while another
/// connection of that domain fails.
struct Neighbour {
    client: TcpStream,
    server: thread::JoinHandle<usize>,
}

impl Neighbour {
    fn new(listener: &TcpListener) -> Neighbour {
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (s, _) = listener.accept().unwrap();
        let server = thread::spawn(move || {
            let mut n = 0;
            let mut b = [0u8; 4];
            loop {
                match (&s).read_exact(&mut b) {
                    Ok(()) => {
                        (&s).write_all(&b).unwrap();
                        n += 1;
                    }
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return n,
                    Err(e) => panic!("the neighbour's connection failed: {e}"),
                }
            }
        });
        client
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        Neighbour { client, server }
    }

    /// One round trip.
    fn ping(&mut self, i: u32) {
        self.client.write_all(&i.to_le_bytes()).unwrap();
        let mut b = [0u8; 4];
        self.client.read_exact(&mut b).unwrap();
        assert_eq!(u32::from_le_bytes(b), i);
    }

    /// Closes the connection; returns how many messages the server task echoed.
    fn finish(self) -> usize {
        self.client.shutdown(Shutdown::Write).unwrap();
        self.server.join().unwrap()
    }
}

/// A peer that resets its connection (`SO_LINGER` 0, then close) fails the read of the task
/// owning that connection with `ConnectionReset`, and its next write with an error; another
/// connection served on the same domain is unaffected.
#[test]
fn peer_reset_fails_only_the_owning_task() {
    common::watchdog(20, "peer_reset_fails_only_the_owning_task", || {
        bobine::Builder::new().domains(1).run(|| {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let mut n = Neighbour::new(&listener);
            n.ping(1);
            let victim = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
            let (owned, _) = listener.accept().unwrap();
            let owner = thread::spawn(move || {
                let mut buf = [0u8; 16];
                let read = (&owned).read(&mut buf).map_err(|e| e.kind());
                let write = (&owned).write(b"late").map_err(|e| e.kind());
                (read, write)
            });
            thread::sleep(Duration::from_millis(50)); // the owner parks in read
            n.ping(2);
            set_linger_zero(victim.as_raw_fd());
            drop(victim);
            let (read, write) = owner.join().unwrap();
            assert_eq!(read, Err(io::ErrorKind::ConnectionReset));
            assert!(
                matches!(
                    write,
                    Err(io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset)
                ),
                "a write after the reset fails: {write:?}"
            );
            n.ping(3);
            assert_eq!(n.finish(), 3);
        });
    });
}

/// A peer that half-closes (`shutdown(Write)`) gives the owning task end of file; the task can
/// still write back and the peer reads it; the domain's other connection is unaffected.
#[test]
fn peer_half_close_gives_eof_and_the_reply_still_arrives() {
    common::watchdog(
        20,
        "peer_half_close_gives_eof_and_the_reply_still_arrives",
        || {
            bobine::Builder::new().domains(1).run(|| {
                let listener = TcpListener::bind("127.0.0.1:0").unwrap();
                let mut n = Neighbour::new(&listener);
                n.ping(1);
                let mut peer = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
                let (owned, _) = listener.accept().unwrap();
                let owner = thread::spawn(move || {
                    let mut got = Vec::new();
                    (&owned).read_to_end(&mut got).unwrap();
                    (&owned).write_all(b"reply after EOF").unwrap();
                    got
                });
                peer.write_all(b"request").unwrap();
                thread::sleep(Duration::from_millis(50)); // the owner parks in read
                n.ping(2);
                peer.shutdown(Shutdown::Write).unwrap();
                let mut reply = Vec::new();
                peer.set_read_timeout(Some(Duration::from_secs(10)))
                    .unwrap();
                peer.read_to_end(&mut reply).unwrap();
                assert_eq!(reply, b"reply after EOF");
                assert_eq!(owner.join().unwrap(), b"request");
                n.ping(3);
                assert_eq!(n.finish(), 3);
            });
        },
    );
}

/// A peer that vanishes (its socket dropped) gives the owning task end of file, then an error
/// (`BrokenPipe` or `ConnectionReset`) on writing; the domain's other connection is unaffected.
#[test]
fn vanished_peer_gives_eof_then_a_write_error_to_its_task_only() {
    common::watchdog(
        20,
        "vanished_peer_gives_eof_then_a_write_error_to_its_task_only",
        || {
            bobine::Builder::new().domains(1).run(|| {
                let listener = TcpListener::bind("127.0.0.1:0").unwrap();
                let mut n = Neighbour::new(&listener);
                let peer = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
                let (owned, _) = listener.accept().unwrap();
                let owner = thread::spawn(move || {
                    let mut buf = [0u8; 16];
                    let eof = (&owned).read(&mut buf).unwrap();
                    for _ in 0..200 {
                        if let Err(e) = (&owned).write(b"anyone there?") {
                            return (eof, Some(e.kind()));
                        }
                        thread::sleep(Duration::from_millis(5));
                    }
                    (eof, None)
                });
                thread::sleep(Duration::from_millis(50));
                n.ping(1);
                drop(peer);
                n.ping(2);
                let (eof, err) = owner.join().unwrap();
                assert_eq!(eof, 0, "the owner reads end of file");
                assert!(
                    matches!(
                        err,
                        Some(io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset)
                    ),
                    "writing to a vanished peer fails: {err:?}"
                );
                n.ping(3);
                assert_eq!(n.finish(), 3);
            });
        },
    );
}

/// The same for a Unix stream: the peer dropped gives end of file, then `BrokenPipe`.
#[test]
fn vanished_unix_peer_gives_eof_then_broken_pipe() {
    common::watchdog(20, "vanished_unix_peer_gives_eof_then_broken_pipe", || {
        bobine::Builder::new().domains(1).run(|| {
            let (owned, peer) = UnixStream::pair().unwrap();
            let (other_a, other_b) = UnixStream::pair().unwrap();
            let owner = thread::spawn(move || {
                let mut buf = [0u8; 16];
                let eof = (&owned).read(&mut buf).unwrap();
                (eof, (&owned).write(b"x").map_err(|e| e.kind()))
            });
            let other = thread::spawn(move || {
                let mut b = [0u8; 2];
                (&other_b).read_exact(&mut b).unwrap();
                (&other_b).write_all(&b).unwrap();
            });
            thread::sleep(Duration::from_millis(50));
            drop(peer);
            let (eof, write) = owner.join().unwrap();
            assert_eq!(eof, 0);
            assert_eq!(write, Err(io::ErrorKind::BrokenPipe));
            (&other_a).write_all(b"ok").unwrap();
            let mut b = [0u8; 2];
            (&other_a).read_exact(&mut b).unwrap();
            assert_eq!(&b, b"ok");
            other.join().unwrap();
        });
    });
}

// ---------------------------------------------------------------------------------------------
// Writes to a closed peer: BrokenPipe, never SIGPIPE

/// Restores the default `SIGPIPE` disposition (Rust programs start with it ignored), so that a
/// write raising `SIGPIPE` kills the child.
fn default_sigpipe() {
    // SAFETY: setting a signal's disposition to SIG_DFL.
    let old = unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    assert_ne!(old, libc::SIG_ERR);
}

/// Calls `write` until it fails (the peer's reset may take a round trip); returns the error.
fn write_until_error(mut write: impl FnMut() -> io::Result<usize>) -> io::Error {
    for _ in 0..400 {
        match write() {
            Ok(_) => thread::sleep(Duration::from_millis(5)),
            Err(e) => return e,
        }
    }
    panic!("writes to a closed peer kept succeeding");
}

fn assert_closed_peer_error(e: &io::Error, what: &str) {
    assert!(
        matches!(
            e.kind(),
            io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
        ),
        "{what}: expected BrokenPipe or ConnectionReset, got {e:?}"
    );
}

fn tcp_write_child(where_: &str) {
    let (mut c, s) = tcp_pair();
    drop(s);
    let e = write_until_error(|| c.write(b"hello"));
    assert_closed_peer_error(&e, &format!("TcpStream::write {where_}"));
    let e = c.write_all(b"again").unwrap_err();
    assert_closed_peer_error(&e, &format!("TcpStream::write_all {where_}"));
}

fn tcp_write_vectored_child(where_: &str) {
    let (mut c, s) = tcp_pair();
    drop(s);
    let e = write_until_error(|| c.write_vectored(&[IoSlice::new(b"hel"), IoSlice::new(b"lo")]));
    assert_closed_peer_error(&e, &format!("TcpStream::write_vectored {where_}"));
}

fn unix_write_child(where_: &str) {
    let (mut a, b) = UnixStream::pair().unwrap();
    drop(b);
    let e = write_until_error(|| a.write(b"hello"));
    assert_eq!(
        e.kind(),
        io::ErrorKind::BrokenPipe,
        "UnixStream::write {where_}"
    );
}

fn unix_write_vectored_child(where_: &str) {
    let (mut a, b) = UnixStream::pair().unwrap();
    drop(b);
    let e = write_until_error(|| a.write_vectored(&[IoSlice::new(b"hel"), IoSlice::new(b"lo")]));
    assert_eq!(
        e.kind(),
        io::ErrorKind::BrokenPipe,
        "UnixStream::write_vectored {where_}"
    );
}

/// Runs `body` in a child with `SIGPIPE` at its default disposition, in a task and on a plain
/// thread; the child must end normally.
fn sigpipe_case(name: &str, body: fn(&str)) {
    if common::child::is_child_of(CHILD_ENV, name) {
        common::watchdog(20, name, || {
            default_sigpipe();
            in_task_and_thread(body);
            println!("{name}: no SIGPIPE");
        });
        return;
    }
    common::watchdog(40, name, || {
        let out = common::child::run(name, &[(CHILD_ENV, name), ("RUST_BACKTRACE", "0")]);
        common::child::assert_ok(name, &out);
    });
}

/// `TcpStream::write`/`write_all` to a closed peer fail with `BrokenPipe` (or
/// `ConnectionReset`); no `SIGPIPE`, even at its default disposition.
#[test]
fn tcp_write_to_a_closed_peer_is_broken_pipe_not_sigpipe() {
    sigpipe_case(
        "tcp_write_to_a_closed_peer_is_broken_pipe_not_sigpipe",
        tcp_write_child,
    );
}

/// `TcpStream::write_vectored` to a closed peer fails with `BrokenPipe` (or
/// `ConnectionReset`); no `SIGPIPE`, even at its default disposition.
#[test]
fn tcp_write_vectored_to_a_closed_peer_is_broken_pipe_not_sigpipe() {
    sigpipe_case(
        "tcp_write_vectored_to_a_closed_peer_is_broken_pipe_not_sigpipe",
        tcp_write_vectored_child,
    );
}

/// `UnixStream::write` to a closed peer fails with `BrokenPipe`; no `SIGPIPE`.
#[test]
fn unix_write_to_a_closed_peer_is_broken_pipe_not_sigpipe() {
    sigpipe_case(
        "unix_write_to_a_closed_peer_is_broken_pipe_not_sigpipe",
        unix_write_child,
    );
}

/// `UnixStream::write_vectored` to a closed peer fails with `BrokenPipe`; no `SIGPIPE`.
#[test]
fn unix_write_vectored_to_a_closed_peer_is_broken_pipe_not_sigpipe() {
    sigpipe_case(
        "unix_write_vectored_to_a_closed_peer_is_broken_pipe_not_sigpipe",
        unix_write_vectored_child,
    );
}

// ---------------------------------------------------------------------------------------------
// A descriptor closed while a task waits on it

/// A task waiting (`io::wait_readable`) on the descriptor of a bobine socket that another task
/// drops wakes with `EBADF`; so does a plain OS thread waiting on it.
#[test]
fn dropping_a_socket_wakes_its_raw_waiters_with_ebadf() {
    common::watchdog(
        20,
        "dropping_a_socket_wakes_its_raw_waiters_with_ebadf",
        || {
            bobine::Builder::new().domains(1).run(|| {
                // A Unix stream and a TCP stream, each waited on by a task and by a plain thread.
                let (unix, _unix_peer) = UnixStream::pair().unwrap();
                let (tcp, _tcp_peer) = tcp_pair();
                for (name, raw, owner) in [
                    (
                        "UnixStream",
                        unix.as_raw_fd(),
                        Box::new(unix) as Box<dyn Send>,
                    ),
                    ("TcpStream", tcp.as_raw_fd(), Box::new(tcp) as Box<dyn Send>),
                ] {
                    let task_waiter = thread::spawn(move || {
                        let t = Instant::now();
                        (wait_readable_raw(raw), t.elapsed())
                    });
                    let os_waiter = std::thread::spawn(move || wait_readable_raw(raw));
                    thread::sleep(Duration::from_millis(50));
                    let dropper = thread::spawn(move || drop(owner));
                    dropper.join().unwrap();
                    let (r, waited) = task_waiter.join().unwrap();
                    assert!(
                        is_ebadf(&r),
                        "{name}: the task's wait ends with EBADF: {r:?}"
                    );
                    assert!(
                        waited < Duration::from_secs(5),
                        "{name}: the task woke only after {waited:?}"
                    );
                    let r = bobine::io::unblock(move || os_waiter.join().unwrap());
                    assert!(
                        is_ebadf(&r),
                        "{name}: the thread's wait ends with EBADF: {r:?}"
                    );
                }
            });
        },
    );
}

/// The OCaml face: `Thread.wait_read` on a socket another thread drops raises
/// `Unix.Unix_error(Unix.EBADF, "select", "")`.
#[test]
fn dropping_a_socket_fails_an_ocaml_wait_read_with_ebadf() {
    common::watchdog(
        20,
        "dropping_a_socket_fails_an_ocaml_wait_read_with_ebadf",
        || {
            bobine::Builder::new().domains(1).run(|| {
                let (a, _b) = UnixStream::pair().unwrap();
                let raw = a.as_raw_fd();
                let waiter = thread::spawn(move || bobine::ocaml::thread::wait_read(raw));
                thread::sleep(Duration::from_millis(50));
                drop(a);
                let payload = waiter.join().expect_err("wait_read must raise");
                assert_eq!(
                    payload_text(&*payload),
                    "Unix.Unix_error(Unix.EBADF, \"select\", \"\")"
                );
            });
        },
    );
}

/// A raw pipe descriptor closed behind bobine's back (`libc::close`) while a task and a plain
/// thread wait on it: both waits end with `EBADF`, none hangs.
#[test]
fn closing_a_raw_descriptor_behind_bobines_back_ends_the_wait_with_ebadf() {
    common::watchdog(
        20,
        "closing_a_raw_descriptor_behind_bobines_back_ends_the_wait_with_ebadf",
        || {
            bobine::Builder::new().domains(1).run(|| {
                for on_thread in [false, true] {
                    let (r, _w) = pipe();
                    let raw = r.as_raw_fd();
                    let r = std::mem::ManuallyDrop::new(r); // closed by hand below
                    let waiter: Box<dyn FnOnce() -> io::Result<()>> = if on_thread {
                        let h = std::thread::spawn(move || wait_readable_raw(raw));
                        Box::new(move || bobine::io::unblock(move || h.join().unwrap()))
                    } else {
                        let h = thread::spawn(move || wait_readable_raw(raw));
                        Box::new(move || h.join().unwrap())
                    };
                    thread::sleep(Duration::from_millis(50));
                    let closed = Instant::now();
                    // SAFETY: closing the read end we own (wrapped in ManuallyDrop so it is
                    // closed once): the waiter only has its number.
                    assert_eq!(unsafe { libc::close(r.as_raw_fd()) }, 0);
                    let res = waiter();
                    let after = closed.elapsed();
                    let who = if on_thread { "plain thread" } else { "task" };
                    println!("{who}: the wait ended {after:?} after the close");
                    assert!(is_ebadf(&res), "{who}: expected EBADF, got {res:?}");
                    assert!(
                        after < Duration::from_secs(2),
                        "{who}: the close was noticed only after {after:?}"
                    );
                }
            });
        },
    );
}

/// A descriptor closed and its number immediately reused for a new pipe that is readable: the
/// old waiter (task or plain thread) must not return `Ok` for the new file; it gets `EBADF`.
#[test]
fn a_reused_descriptor_number_does_not_wake_the_old_waiter_with_ok() {
    common::watchdog(
        20,
        "a_reused_descriptor_number_does_not_wake_the_old_waiter_with_ok",
        || {
            bobine::Builder::new().domains(1).run(|| {
                for on_thread in [false, true] {
                    let (old_r, _old_w) = pipe();
                    let raw = old_r.as_raw_fd();
                    let waiter: Box<dyn FnOnce() -> io::Result<()>> = if on_thread {
                        let h = std::thread::spawn(move || wait_readable_raw(raw));
                        Box::new(move || bobine::io::unblock(move || h.join().unwrap()))
                    } else {
                        let h = thread::spawn(move || wait_readable_raw(raw));
                        Box::new(move || h.join().unwrap())
                    };
                    thread::sleep(Duration::from_millis(50));
                    let (new_r, new_w) = pipe();
                    // Close the old file and reuse its number at once: dup2 does both
                    // atomically, so no other thread can take the number in between.
                    // SAFETY: both descriptors are ours; `raw` is still owned by `old_r`, which
                    // now names the new pipe's read end (and closes it when dropped).
                    let d = unsafe { libc::dup2(new_r.as_raw_fd(), raw) };
                    assert_eq!(d, raw, "dup2: {}", io::Error::last_os_error());
                    write_raw(new_w.as_raw_fd(), b"for the new file");
                    let res = waiter();
                    let who = if on_thread { "plain thread" } else { "task" };
                    assert!(
                        is_ebadf(&res),
                        "{who}: the old waiter must get EBADF, not a wake-up for the new file: {res:?}"
                    );
                    drop(old_r);
                }
            });
        },
    );
}

// ---------------------------------------------------------------------------------------------
// Invalid descriptors, refused and unreachable connections, zero timeouts

/// A descriptor number that is not open.
const NEVER_OPENED: RawFd = 1_000_000;

/// Waiting on a descriptor that was never opened is `EBADF` (no panic, no hang), in a task and
/// on a plain thread, in both directions.
#[test]
fn waiting_on_a_never_opened_descriptor_is_ebadf() {
    common::watchdog(10, "waiting_on_a_never_opened_descriptor_is_ebadf", || {
        fn check(where_: &str) {
            // SAFETY: not a valid descriptor on purpose; bobine only passes the number to
            // syscalls, which report EBADF.
            let fd = unsafe { BorrowedFd::borrow_raw(NEVER_OPENED) };
            let r = bobine::io::wait_readable(fd);
            assert!(is_ebadf(&r), "wait_readable {where_}: {r:?}");
            let r = bobine::io::wait_writable(fd);
            assert!(is_ebadf(&r), "wait_writable {where_}: {r:?}");
        }
        in_task_and_thread(check);
    });
}

/// A local address with nothing listening (a listener bound, then closed).
fn closed_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let a = l.local_addr().unwrap();
    drop(l);
    a
}

/// Connecting to a port nobody listens on is `ConnectionRefused`, with and without a timeout,
/// in a task and on a plain thread.
#[test]
fn connecting_to_a_closed_port_is_refused() {
    common::watchdog(10, "connecting_to_a_closed_port_is_refused", || {
        fn check(where_: &str) {
            let addr = closed_port();
            let e = TcpStream::connect(addr).unwrap_err();
            assert_eq!(
                e.kind(),
                io::ErrorKind::ConnectionRefused,
                "{where_}: {e:?}"
            );
            let e = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap_err();
            assert_eq!(
                e.kind(),
                io::ErrorKind::ConnectionRefused,
                "{where_}: {e:?}"
            );
        }
        in_task_and_thread(check);
    });
}

/// A Unix socket file with no listener behind it is `ConnectionRefused`; a missing path is
/// `NotFound`.
#[test]
fn connecting_to_a_dead_unix_socket_is_refused() {
    common::watchdog(10, "connecting_to_a_dead_unix_socket_is_refused", || {
        bobine::run(|| {
            let dir = std::env::temp_dir();
            let path = dir.join(format!("bobine-faults-dead-{}.sock", std::process::id()));
            let _ = std::fs::remove_file(&path);
            drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
            let e = UnixStream::connect(&path).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused, "{e:?}");
            std::fs::remove_file(&path).unwrap();
            let e = UnixStream::connect(&path).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::NotFound, "{e:?}");
        });
    });
}

/// `connect_timeout` to a listener whose accept queue is full (the kernel drops the SYNs, so
/// nothing answers) ends with `TimedOut` after the timeout, never a hang; other tasks of the
/// domain run meanwhile.
#[test]
fn connect_timeout_to_a_silent_listener_times_out() {
    common::watchdog(20, "connect_timeout_to_a_silent_listener_times_out", || {
        bobine::Builder::new().domains(1).run(|| {
            let listener =
                TcpListener::bind_reuseport(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), 0).unwrap();
            let addr = listener.local_addr().unwrap();
            let ticks = Arc::new(AtomicUsize::new(0));
            let t2 = ticks.clone();
            let ticker = thread::spawn(move || {
                for _ in 0..10 {
                    thread::sleep(Duration::from_millis(10));
                    t2.fetch_add(1, Ordering::SeqCst);
                }
            });
            // Fill the accept queue (nothing accepts), until a connection is not answered.
            let mut queued = Vec::new();
            let mut timed_out = None;
            for _ in 0..16 {
                let t = Instant::now();
                match TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
                    Ok(s) => queued.push(s),
                    Err(e) => {
                        timed_out = Some((e, t.elapsed()));
                        break;
                    }
                }
            }
            let (e, took) = timed_out.expect("the accept queue never filled up");
            println!("after {} queued: {e:?} after {took:?}", queued.len());
            assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e:?}");
            assert!(
                took >= Duration::from_millis(200),
                "timed out early: {took:?}"
            );
            assert!(took < Duration::from_secs(10), "took {took:?}");
            assert!(
                ticks.load(Ordering::SeqCst) > 0,
                "the domain was blocked during the connect"
            );
            ticker.join().unwrap();
        });
    });
}

/// `connect_timeout` to a non-routable address (10.255.255.1:9) ends within a bound: with
/// `TimedOut` or an unreachable error (or, where the network intercepts every address, a
/// connection), never a hang.
#[test]
fn connect_timeout_to_a_non_routable_address_ends() {
    common::watchdog(20, "connect_timeout_to_a_non_routable_address_ends", || {
        bobine::run(|| {
            let addr = SocketAddr::from((Ipv4Addr::new(10, 255, 255, 1), 9));
            let t = Instant::now();
            let r = TcpStream::connect_timeout(&addr, Duration::from_millis(200));
            let took = t.elapsed();
            println!("connect_timeout to {addr}: {r:?} after {took:?}");
            if let Err(e) = &r {
                assert!(
                    matches!(
                        e.kind(),
                        io::ErrorKind::TimedOut
                            | io::ErrorKind::HostUnreachable
                            | io::ErrorKind::NetworkUnreachable
                            | io::ErrorKind::PermissionDenied
                    ),
                    "{e:?}"
                );
            }
            assert!(took < Duration::from_secs(10), "took {took:?}");
        });
    });
}

/// Zero timeouts are refused with `InvalidInput` (as std), leaving the timeout unchanged.
#[test]
fn zero_timeouts_are_invalid_input() {
    common::watchdog(10, "zero_timeouts_are_invalid_input", || {
        bobine::run(|| {
            let zero = Some(Duration::ZERO);
            let invalid = |r: io::Result<()>| {
                assert_eq!(r.unwrap_err().kind(), io::ErrorKind::InvalidInput);
            };
            let (c, _s) = tcp_pair();
            invalid(c.set_read_timeout(zero));
            invalid(c.set_write_timeout(zero));
            assert_eq!(c.read_timeout().unwrap(), None);
            assert_eq!(c.write_timeout().unwrap(), None);
            let u = UdpSocket::bind("127.0.0.1:0").unwrap();
            invalid(u.set_read_timeout(zero));
            invalid(u.set_write_timeout(zero));
            assert_eq!(u.read_timeout().unwrap(), None);
            let (a, _b) = UnixStream::pair().unwrap();
            invalid(a.set_read_timeout(zero));
            invalid(a.set_write_timeout(zero));
            assert_eq!(a.read_timeout().unwrap(), None);
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let e = TcpStream::connect_timeout(&listener.local_addr().unwrap(), Duration::ZERO)
                .unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        });
    });
}
