//! `bobine::net` behaves as `std::net` / `std::os::unix::net`: timeouts, non-blocking mode,
//! peek, try_clone, shutdown, incoming, one stream shared by a reading and a writing task,
//! addresses, std round trips, IPv6, UDP, Unix sockets; in tasks, on plain OS threads outside
//! any runtime, and across runtimes.

mod common;

use std::io::{self, Read, Write};
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use bobine::net::{Shutdown, TcpListener, TcpStream, UdpSocket, UnixListener, UnixStream};
use bobine::thread;
use common::fds::tcp_pair;
use common::tasks::in_task_and_thread;

/// A fresh socket path in the temporary directory.
fn socket_path(name: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let p = std::env::temp_dir().join(format!(
        "bobine-net-api-{}-{name}-{}.sock",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_file(&p);
    p
}

const TIMEOUT: Duration = Duration::from_millis(100);
/// Far beyond any timeout used here: a wait this long means the timeout was not applied.
const GENEROUS: Duration = Duration::from_secs(5);

/// Checks that `op` fails with `WouldBlock` no sooner than `timeout`.
fn assert_times_out<T: std::fmt::Debug>(
    what: &str,
    timeout: Duration,
    op: impl FnOnce() -> io::Result<T>,
) {
    let t = Instant::now();
    let r = op();
    let took = t.elapsed();
    let e = r.expect_err(what);
    assert_eq!(e.kind(), io::ErrorKind::WouldBlock, "{what}: {e:?}");
    assert!(
        took >= timeout,
        "{what}: gave up after {took:?} < {timeout:?}"
    );
    assert!(took < GENEROUS, "{what}: gave up only after {took:?}");
}

/// A read timeout makes a read with nothing to read fail with `WouldBlock` after the timeout;
/// the stream still works afterwards.
#[test]
fn tcp_read_timeout_gives_would_block_after_the_timeout() {
    common::watchdog(
        20,
        "tcp_read_timeout_gives_would_block_after_the_timeout",
        || {
            fn check(where_: &str) {
                let (mut c, mut s) = tcp_pair();
                c.set_read_timeout(Some(TIMEOUT)).unwrap();
                assert_eq!(c.read_timeout().unwrap(), Some(TIMEOUT));
                let mut buf = [0u8; 8];
                assert_times_out(&format!("read {where_}"), TIMEOUT, || c.read(&mut buf));
                s.write_all(b"late").unwrap();
                let mut got = [0u8; 4];
                c.read_exact(&mut got).unwrap();
                assert_eq!(&got, b"late");
                c.set_read_timeout(None).unwrap();
                assert_eq!(c.read_timeout().unwrap(), None);
            }
            in_task_and_thread(check);
        },
    );
}

/// A write timeout makes a write into full buffers (the peer not reading) fail with
/// `WouldBlock` after the timeout.
#[test]
fn tcp_write_timeout_gives_would_block_when_the_buffers_stay_full() {
    common::watchdog(
        30,
        "tcp_write_timeout_gives_would_block_when_the_buffers_stay_full",
        || {
            fn check(where_: &str) {
                let (mut c, _s) = tcp_pair();
                c.set_write_timeout(Some(TIMEOUT)).unwrap();
                assert_eq!(c.write_timeout().unwrap(), Some(TIMEOUT));
                let chunk = vec![7u8; 64 * 1024];
                let mut written = 0usize;
                for _ in 0..4096 {
                    let t = Instant::now();
                    match c.write(&chunk) {
                        Ok(n) => written += n,
                        Err(e) => {
                            let took = t.elapsed();
                            assert_eq!(e.kind(), io::ErrorKind::WouldBlock, "{where_}: {e:?}");
                            assert!(took >= TIMEOUT, "{where_}: gave up after {took:?}");
                            assert!(took < GENEROUS, "{where_}: gave up after {took:?}");
                            assert!(written > 0);
                            return;
                        }
                    }
                }
                panic!("{where_}: {written} bytes written and the buffers never filled");
            }
            in_task_and_thread(check);
        },
    );
}

/// In non-blocking mode reads, accepts and receives give `WouldBlock` at once; back in blocking
/// mode they wait again.
#[test]
fn set_nonblocking_gives_would_block_at_once() {
    common::watchdog(20, "set_nonblocking_gives_would_block_at_once", || {
        fn check(where_: &str) {
            let would_block = |what: &str, r: io::Result<usize>| {
                let e = r.expect_err(what);
                assert_eq!(
                    e.kind(),
                    io::ErrorKind::WouldBlock,
                    "{what} {where_}: {e:?}"
                );
            };
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            listener.set_nonblocking(true).unwrap();
            would_block("accept", listener.accept().map(|_| 0));
            let mut c = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
            // Non-blocking accept succeeds once a connection is pending.
            let mut s = None;
            for _ in 0..1000 {
                match listener.accept() {
                    Ok((x, _)) => {
                        s = Some(x);
                        break;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        thread::sleep(Duration::from_millis(1));
                    }
                    Err(e) => panic!("{e}"),
                }
            }
            let mut s = s.expect("the pending connection is accepted");
            c.set_nonblocking(true).unwrap();
            let mut buf = [0u8; 8];
            would_block("TcpStream::read", c.read(&mut buf));
            would_block("TcpStream::peek", c.peek(&mut buf));
            s.write_all(b"hi").unwrap();
            let mut got = 0;
            for _ in 0..1000 {
                match c.read(&mut buf) {
                    Ok(n) => {
                        got = n;
                        break;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        thread::sleep(Duration::from_millis(1));
                    }
                    Err(e) => panic!("{e}"),
                }
            }
            assert_eq!(&buf[..got], b"hi");
            c.set_nonblocking(false).unwrap();
            c.set_read_timeout(Some(TIMEOUT)).unwrap();
            assert_times_out("blocking read again", TIMEOUT, || c.read(&mut buf));

            let u = UdpSocket::bind("127.0.0.1:0").unwrap();
            u.set_nonblocking(true).unwrap();
            would_block("UdpSocket::recv_from", u.recv_from(&mut buf).map(|r| r.0));
            let (a, _b) = UnixStream::pair().unwrap();
            a.set_nonblocking(true).unwrap();
            would_block("UnixStream::read", (&a).read(&mut buf));
        }
        in_task_and_thread(check);
    });
}

/// `peek` waits for data (parking the task), returns it without consuming it.
#[test]
fn peek_waits_for_data_and_leaves_it_queued() {
    common::watchdog(10, "peek_waits_for_data_and_leaves_it_queued", || {
        bobine::run(|| {
            let (mut c, s) = tcp_pair();
            let writer = thread::spawn(move || {
                thread::sleep(Duration::from_millis(30));
                (&s).write_all(b"hello").unwrap();
                s
            });
            let mut buf = [0u8; 16];
            let n = c.peek(&mut buf).unwrap();
            assert!(n > 0 && b"hello".starts_with(&buf[..n]), "{:?}", &buf[..n]);
            let _s = writer.join().unwrap();
            let mut all = [0u8; 5];
            c.read_exact(&mut all).unwrap();
            assert_eq!(&all, b"hello");
            c.set_read_timeout(Some(TIMEOUT)).unwrap();
            assert_times_out("read after the peeked data was consumed", TIMEOUT, || {
                c.read(&mut buf)
            });
        });
    });
}

/// `try_clone` gives a second handle on the same connection (another descriptor), with the same
/// timeouts; it keeps working when the original is dropped.
#[test]
fn try_clone_shares_the_connection() {
    common::watchdog(10, "try_clone_shares_the_connection", || {
        bobine::run(|| {
            let (c, mut s) = tcp_pair();
            c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
            let mut c2 = c.try_clone().unwrap();
            assert_ne!(c.as_raw_fd(), c2.as_raw_fd());
            assert_eq!(c2.read_timeout().unwrap(), Some(Duration::from_secs(3)));
            assert_eq!(c2.local_addr().unwrap(), c.local_addr().unwrap());
            (&c).write_all(b"one").unwrap();
            c2.write_all(b"two").unwrap();
            let mut got = [0u8; 6];
            s.read_exact(&mut got).unwrap();
            assert_eq!(&got, b"onetwo");
            s.write_all(b"abc").unwrap();
            let mut b = [0u8; 3];
            (&c).read_exact(&mut b).unwrap();
            assert_eq!(&b, b"abc");
            drop(c);
            s.write_all(b"xyz").unwrap();
            c2.read_exact(&mut b).unwrap();
            assert_eq!(&b, b"xyz");
            // A task blocked reading through the clone gets what arrives later.
            let reader = thread::spawn(move || {
                let mut b = [0u8; 4];
                c2.read_exact(&mut b).unwrap();
                b
            });
            thread::sleep(Duration::from_millis(20));
            s.write_all(b"late").unwrap();
            assert_eq!(&reader.join().unwrap(), b"late");
        });
    });
}

/// `shutdown(Write)` gives the peer end of file (and reading still works); `shutdown(Read)`
/// ends a read blocked on another handle of the socket with end of file.
#[test]
fn shutdown_write_and_read() {
    common::watchdog(10, "shutdown_write_and_read", || {
        bobine::run(|| {
            let (mut c, mut s) = tcp_pair();
            c.write_all(b"last words").unwrap();
            c.shutdown(Shutdown::Write).unwrap();
            let mut got = Vec::new();
            s.read_to_end(&mut got).unwrap();
            assert_eq!(got, b"last words");
            s.write_all(b"still heard").unwrap();
            let mut b = [0u8; 11];
            c.read_exact(&mut b).unwrap();
            assert_eq!(&b, b"still heard");
            let e = c.write(b"x").unwrap_err();
            assert_eq!(
                e.kind(),
                io::ErrorKind::BrokenPipe,
                "write after shutdown: {e:?}"
            );

            let (c, _s) = tcp_pair();
            let c2 = c.try_clone().unwrap();
            let reader = thread::spawn(move || {
                let mut b = [0u8; 8];
                (&c2).read(&mut b)
            });
            thread::sleep(Duration::from_millis(30)); // the reader parks
            c.shutdown(Shutdown::Read).unwrap();
            assert_eq!(reader.join().unwrap().unwrap(), 0);

            let (a, b) = UnixStream::pair().unwrap();
            a.shutdown(Shutdown::Write).unwrap();
            let mut got = Vec::new();
            (&b).read_to_end(&mut got).unwrap();
            assert!(got.is_empty());
            let a2 = a.try_clone().unwrap();
            let reader = thread::spawn(move || {
                let mut buf = [0u8; 8];
                (&a2).read(&mut buf)
            });
            thread::sleep(Duration::from_millis(30));
            a.shutdown(Shutdown::Read).unwrap();
            assert_eq!(reader.join().unwrap().unwrap(), 0);
        });
    });
}

/// `incoming()` yields each connection in turn.
#[test]
fn incoming_yields_each_connection() {
    common::watchdog(10, "incoming_yields_each_connection", || {
        bobine::run(|| {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let server = thread::spawn(move || {
                let mut served = 0;
                for s in listener.incoming().take(3) {
                    let s = s.unwrap();
                    let mut b = [0u8; 1];
                    (&s).read_exact(&mut b).unwrap();
                    (&s).write_all(&[b[0] + 1]).unwrap();
                    served += 1;
                }
                served
            });
            for i in 0..3u8 {
                let mut c = TcpStream::connect(addr).unwrap();
                c.write_all(&[i]).unwrap();
                let mut b = [0u8; 1];
                c.read_exact(&mut b).unwrap();
                assert_eq!(b[0], i + 1);
            }
            assert_eq!(server.join().unwrap(), 3);

            let path = socket_path("incoming");
            let listener = UnixListener::bind(&path).unwrap();
            let p2 = path.clone();
            let server = thread::spawn(move || {
                listener
                    .incoming()
                    .take(2)
                    .map(|s| {
                        let mut got = String::new();
                        s.unwrap().read_to_string(&mut got).unwrap();
                        got
                    })
                    .collect::<Vec<_>>()
            });
            for msg in ["a", "b"] {
                let mut c = UnixStream::connect(&p2).unwrap();
                c.write_all(msg.as_bytes()).unwrap();
            }
            assert_eq!(server.join().unwrap(), ["a", "b"]);
            std::fs::remove_file(&path).unwrap();
        });
    });
}

/// One task reads a stream (`&TcpStream`) while another writes it, each parking in its own
/// direction; a megabyte goes through an echoing peer intact.
#[test]
fn one_task_reads_while_another_writes_the_same_stream() {
    common::watchdog(
        30,
        "one_task_reads_while_another_writes_the_same_stream",
        || {
            for domains in [1, 2] {
                bobine::Builder::new().domains(domains).run(|| {
                    const LEN: usize = 1 << 20;
                    let (c, s) = tcp_pair();
                    let echo = thread::spawn(move || {
                        let mut buf = vec![0u8; 16 * 1024];
                        let mut total = 0;
                        loop {
                            let n = (&s).read(&mut buf).unwrap();
                            if n == 0 {
                                return total;
                            }
                            (&s).write_all(&buf[..n]).unwrap();
                            total += n;
                        }
                    });
                    let c = Arc::new(c);
                    let wc = c.clone();
                    let writer = thread::spawn(move || {
                        let data: Vec<u8> = (0..LEN).map(|i| (i % 251) as u8).collect();
                        for chunk in data.chunks(10_000) {
                            (&*wc).write_all(chunk).unwrap();
                        }
                        wc.shutdown(Shutdown::Write).unwrap();
                    });
                    let rc = c.clone();
                    let reader = thread::spawn(move || {
                        let mut got = Vec::with_capacity(LEN);
                        (&*rc).read_to_end(&mut got).unwrap();
                        got
                    });
                    writer.join().unwrap();
                    let got = reader.join().unwrap();
                    assert_eq!(echo.join().unwrap(), LEN);
                    assert_eq!(got.len(), LEN);
                    assert!(got.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8));
                });
            }
        },
    );
}

/// `local_addr` and `peer_addr` of both ends agree with each other and with the listener;
/// an unconnected UDP socket has no peer.
#[test]
fn local_and_peer_addresses_match() {
    common::watchdog(10, "local_and_peer_addresses_match", || {
        bobine::run(|| {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            assert_eq!(addr.ip(), Ipv4Addr::LOCALHOST);
            assert_ne!(addr.port(), 0);
            let c = TcpStream::connect(addr).unwrap();
            let (s, from) = listener.accept().unwrap();
            assert_eq!(c.peer_addr().unwrap(), addr);
            assert_eq!(s.local_addr().unwrap(), addr);
            assert_eq!(s.peer_addr().unwrap(), c.local_addr().unwrap());
            assert_eq!(from, c.local_addr().unwrap());
            let u = UdpSocket::bind("127.0.0.1:0").unwrap();
            assert_eq!(
                u.peer_addr().unwrap_err().kind(),
                io::ErrorKind::NotConnected
            );

            let path = socket_path("addr");
            let l = UnixListener::bind(&path).unwrap();
            assert_eq!(l.local_addr().unwrap().as_pathname(), Some(path.as_path()));
            let c = UnixStream::connect(&path).unwrap();
            let (s, _) = l.accept().unwrap();
            assert_eq!(c.peer_addr().unwrap().as_pathname(), Some(path.as_path()));
            assert_eq!(s.local_addr().unwrap().as_pathname(), Some(path.as_path()));
            std::fs::remove_file(&path).unwrap();
        });
    });
}

/// std sockets wrapped with `from_std` (or `try_from`) work in tasks; `into_std` gives them
/// back, still non-blocking as documented; wrapping again works.
#[test]
fn from_std_and_into_std_round_trip() {
    common::watchdog(10, "from_std_and_into_std_round_trip", || {
        bobine::run(|| {
            let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let listener = TcpListener::from_std(std_listener).unwrap();
            let addr = listener.local_addr().unwrap();
            let server = thread::spawn(move || {
                let (s, _) = listener.accept().unwrap();
                let mut std_s = s.into_std();
                // Still non-blocking: nothing to read yet is WouldBlock, not a wait.
                let mut b = [0u8; 4];
                let e = std_s.read(&mut b).unwrap_err();
                assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
                std_s.write_all(b"ping").unwrap();
                let s = TcpStream::try_from(std_s).unwrap();
                (&s).read_exact(&mut b).unwrap();
                assert_eq!(&b, b"pong");
                listener.into_std()
            });
            let std_c = std::net::TcpStream::connect(addr).unwrap();
            let mut c = TcpStream::from_std(std_c).unwrap();
            let mut b = [0u8; 4];
            c.read_exact(&mut b).unwrap();
            assert_eq!(&b, b"ping");
            c.write_all(b"pong").unwrap();
            let std_listener = server.join().unwrap();
            assert_eq!(std_listener.local_addr().unwrap(), addr);
            // Through an OwnedFd and back.
            let fd = OwnedFd::from(c);
            let c = TcpStream::from_std(std::net::TcpStream::from(fd)).unwrap();
            assert_eq!(c.peer_addr().unwrap().port(), addr.port());

            let u = UdpSocket::from_std(std::net::UdpSocket::bind("127.0.0.1:0").unwrap()).unwrap();
            let ua = u.local_addr().unwrap();
            let std_u = u.into_std();
            assert_eq!(std_u.local_addr().unwrap(), ua);
            let u = UdpSocket::try_from(std_u).unwrap();
            u.send_to(b"self", ua).unwrap();
            let mut buf = [0u8; 8];
            assert_eq!(u.recv_from(&mut buf).unwrap(), (4, ua));

            let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
            let a = UnixStream::from_std(a).unwrap();
            let b = UnixStream::try_from(b).unwrap();
            (&a).write_all(b"u").unwrap();
            let mut one = [0u8; 1];
            (&b).read_exact(&mut one).unwrap();
            assert_eq!(&one, b"u");
            let std_a = a.into_std();
            assert_eq!(
                (&std_a).read(&mut one).unwrap_err().kind(),
                io::ErrorKind::WouldBlock
            );
        });
    });
}

/// TCP and UDP over IPv6 loopback (skipped when `::1` cannot be bound).
#[test]
fn ipv6_loopback_if_available() {
    common::watchdog(10, "ipv6_loopback_if_available", || {
        bobine::run(|| {
            let listener = match TcpListener::bind("[::1]:0") {
                Ok(l) => l,
                Err(e) => {
                    println!("skipped: cannot bind [::1]: {e}");
                    return;
                }
            };
            let addr = listener.local_addr().unwrap();
            assert!(addr.is_ipv6());
            let server = thread::spawn(move || {
                let (s, peer) = listener.accept().unwrap();
                assert!(peer.is_ipv6());
                let mut b = [0u8; 2];
                (&s).read_exact(&mut b).unwrap();
                (&s).write_all(&b).unwrap();
            });
            let mut c = TcpStream::connect(addr).unwrap();
            assert_eq!(c.peer_addr().unwrap(), addr);
            c.write_all(b"v6").unwrap();
            let mut b = [0u8; 2];
            c.read_exact(&mut b).unwrap();
            assert_eq!(&b, b"v6");
            server.join().unwrap();
            let t = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).unwrap_err();
            assert_eq!(t.kind(), io::ErrorKind::ConnectionRefused);

            let a = UdpSocket::bind("[::1]:0").unwrap();
            let bsock = UdpSocket::bind("[::1]:0").unwrap();
            a.send_to(b"six", bsock.local_addr().unwrap()).unwrap();
            let mut buf = [0u8; 8];
            let (n, from) = bsock.recv_from(&mut buf).unwrap();
            assert_eq!((&buf[..n], from), (&b"six"[..], a.local_addr().unwrap()));
        });
    });
}

/// UDP: `send_to`/`recv_from`, `peek_from`, `connect`/`send`/`recv`, a receiver parked until a
/// datagram arrives, the read timeout; in a task and on a plain thread.
#[test]
fn udp_datagrams_and_timeouts() {
    common::watchdog(20, "udp_datagrams_and_timeouts", || {
        fn check(where_: &str) {
            let a = UdpSocket::bind("127.0.0.1:0").unwrap();
            let b = UdpSocket::bind("127.0.0.1:0").unwrap();
            let (aa, ba) = (a.local_addr().unwrap(), b.local_addr().unwrap());
            assert_eq!(a.send_to(b"one", ba).unwrap(), 3);
            let mut buf = [0u8; 16];
            assert_eq!(b.peek_from(&mut buf).unwrap(), (3, aa));
            assert_eq!(b.recv_from(&mut buf).unwrap(), (3, aa));
            assert_eq!(&buf[..3], b"one");

            a.connect(ba).unwrap();
            b.connect(aa).unwrap();
            assert_eq!(a.peer_addr().unwrap(), ba);
            a.send(b"two").unwrap();
            assert_eq!(b.peek(&mut buf).unwrap(), 3);
            assert_eq!(b.recv(&mut buf).unwrap(), 3);
            assert_eq!(&buf[..3], b"two");

            b.set_read_timeout(Some(TIMEOUT)).unwrap();
            assert_eq!(b.read_timeout().unwrap(), Some(TIMEOUT));
            assert_times_out(&format!("UdpSocket::recv {where_}"), TIMEOUT, || {
                b.recv(&mut buf)
            });
            assert_times_out(&format!("UdpSocket::recv_from {where_}"), TIMEOUT, || {
                b.recv_from(&mut buf)
            });

            // A receiver blocked (parked, or in poll) gets a datagram sent later.
            b.set_read_timeout(Some(GENEROUS)).unwrap();
            let b2 = b.try_clone().unwrap();
            let (tx, rx) = mpsc::channel();
            let sender = std::thread::spawn(move || {
                rx.recv().unwrap();
                std::thread::sleep(Duration::from_millis(30));
                a.send(b"three").unwrap();
            });
            tx.send(()).unwrap();
            let mut buf2 = [0u8; 16];
            let n = b2.recv(&mut buf2).unwrap();
            assert_eq!(&buf2[..n], b"three", "{where_}");
            sender.join().unwrap();
        }
        in_task_and_thread(check);
    });
}

/// Unix sockets: listener, connect, accept, echo, pair, read timeout; in a task and on a plain
/// thread.
#[test]
fn unix_listener_streams_and_pairs() {
    common::watchdog(20, "unix_listener_streams_and_pairs", || {
        fn check(where_: &str) {
            let path = socket_path("echo");
            let listener = UnixListener::bind(&path).unwrap();
            let server = std::thread::spawn(move || {
                // On the plain-thread run this blocks in poll; in the task run the server
                // runs on a plain thread too: bobine types work from both at once.
                let (s, _) = listener.accept().unwrap();
                let mut b = [0u8; 5];
                (&s).read_exact(&mut b).unwrap();
                (&s).write_all(&b).unwrap();
            });
            let mut c = UnixStream::connect(&path).unwrap();
            c.write_all(b"hello").unwrap();
            let mut b = [0u8; 5];
            c.read_exact(&mut b).unwrap();
            assert_eq!(&b, b"hello", "{where_}");
            server.join().unwrap();
            std::fs::remove_file(&path).unwrap();
            assert_eq!(
                UnixListener::bind(&path).map(|_| ()).ok(),
                Some(()),
                "the path can be bound again once removed"
            );
            std::fs::remove_file(&path).unwrap();

            let (mut x, mut y) = UnixStream::pair().unwrap();
            x.write_all(b"pair").unwrap();
            let mut b = [0u8; 4];
            y.read_exact(&mut b).unwrap();
            assert_eq!(&b, b"pair");
            y.set_read_timeout(Some(TIMEOUT)).unwrap();
            assert_eq!(y.read_timeout().unwrap(), Some(TIMEOUT));
            assert_times_out(&format!("UnixStream::read {where_}"), TIMEOUT, || {
                y.read(&mut b)
            });
            let y2 = y.try_clone().unwrap();
            assert_eq!(y2.read_timeout().unwrap(), Some(TIMEOUT));
            drop(x);
            assert_eq!(
                y.read(&mut b).unwrap(),
                0,
                "end of file once the peer is gone"
            );
        }
        in_task_and_thread(check);
    });
}

/// Outside any runtime, bobine sockets block their plain OS thread (in poll) and work as std's:
/// a listener thread, client threads, a reader blocked until a writer thread writes.
#[test]
fn plain_threads_outside_any_runtime_block_in_poll() {
    common::watchdog(
        20,
        "plain_threads_outside_any_runtime_block_in_poll",
        || {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let server = std::thread::spawn(move || {
                for s in listener.incoming().take(4) {
                    let s = s.unwrap();
                    std::thread::spawn(move || {
                        let mut b = [0u8; 8];
                        let n = (&s).read(&mut b).unwrap();
                        (&s).write_all(&b[..n]).unwrap();
                    });
                }
            });
            let clients: Vec<_> = (0..4u8)
                .map(|i| {
                    std::thread::spawn(move || {
                        let mut c = TcpStream::connect(addr).unwrap();
                        c.write_all(&[i; 3]).unwrap();
                        let mut b = [0u8; 3];
                        c.read_exact(&mut b).unwrap();
                        assert_eq!(b, [i; 3]);
                    })
                })
                .collect();
            for c in clients {
                c.join().unwrap();
            }
            server.join().unwrap();

            let (a, b) = UnixStream::pair().unwrap();
            let reader = std::thread::spawn(move || {
                let mut got = String::new();
                (&b).read_to_string(&mut got).unwrap();
                got
            });
            std::thread::sleep(Duration::from_millis(30));
            (&a).write_all(b"from a thread").unwrap();
            drop(a);
            assert_eq!(reader.join().unwrap(), "from a thread");
        },
    );
}

/// Joins the task `h` if it finishes within `limit` (the caller parks meanwhile); `None` if it
/// does not (it is then left to its runtime, which drops it when `run` returns).
fn join_within<T: Send + 'static>(h: thread::JoinHandle<T>, limit: Duration) -> Option<T> {
    let end = Instant::now() + limit;
    while !h.is_finished() && Instant::now() < end {
        thread::sleep(Duration::from_millis(5));
    }
    h.is_finished().then(|| h.join().unwrap())
}

/// A listener and a connection made in one `bobine::run` (where tasks parked on them, which
/// registered them with that runtime's domain) keep working in a later `run`.
#[test]
fn sockets_from_one_runtime_work_in_a_later_runtime() {
    common::watchdog(
        30,
        "sockets_from_one_runtime_work_in_a_later_runtime",
        || {
            // One domain each, so that the registrations are with the `run` caller's domain.
            let (listener, client, server) = bobine::Builder::new().domains(1).run(|| {
                let listener = TcpListener::bind("127.0.0.1:0").unwrap();
                let addr = listener.local_addr().unwrap();
                let acceptor = thread::spawn(move || {
                    let (s, _) = listener.accept().unwrap(); // parks: registers the listener
                    (listener, s)
                });
                thread::sleep(Duration::from_millis(20));
                let c = TcpStream::connect(addr).unwrap();
                let (listener, s) = acceptor.join().unwrap();
                // Park on the accepted stream too, so it is registered with this runtime.
                let reader = thread::spawn(move || {
                    let mut b = [0u8; 1];
                    (&s).read_exact(&mut b).unwrap();
                    s
                });
                thread::sleep(Duration::from_millis(20));
                (&c).write_all(b"1").unwrap();
                (listener, c, reader.join().unwrap())
            });
            let (accepted, read) = bobine::Builder::new().domains(1).run(move || {
                let addr = listener.local_addr().unwrap();
                let acceptor = thread::spawn(move || listener.accept().unwrap().0);
                thread::sleep(Duration::from_millis(20));
                let _c2 = TcpStream::connect(addr).unwrap();
                let accepted = join_within(acceptor, Duration::from_secs(3)).is_some();

                let reader = thread::spawn(move || {
                    let mut b = [0u8; 4];
                    (&server).read_exact(&mut b).unwrap();
                    b
                });
                thread::sleep(Duration::from_millis(20));
                (&client).write_all(b"next").unwrap();
                let read = join_within(reader, Duration::from_secs(3));
                (accepted, read)
            });
            assert!(
                accepted,
                "a connection pending on the listener was not accepted in the second runtime"
            );
            assert_eq!(
                read.as_ref(),
                Some(b"next"),
                "data arriving on the stream was not read in the second runtime"
            );
        },
    );
}

/// Two runtimes running at once share a listener: a task of each accepts on it. The runtime
/// whose domain registered it ends while the other's task still waits; that task still gets the
/// next connection.
#[test]
fn two_runtimes_at_once_share_a_listener() {
    common::watchdog(30, "two_runtimes_at_once_share_a_listener", || {
        let listener = Arc::new(TcpListener::bind("127.0.0.1:0").unwrap());
        let addr = listener.local_addr().unwrap();
        let (first_waiting, wait_first) = mpsc::channel::<()>();
        // Runtime A: its task waits in accept first (registering the listener with A's
        // domain), then A ends, dropping that task.
        let la = listener.clone();
        let a = std::thread::spawn(move || {
            bobine::Builder::new().domains(1).run(move || {
                thread::spawn(move || {
                    let _ = la.accept();
                });
                thread::sleep(Duration::from_millis(50));
                first_waiting.send(()).unwrap();
                thread::sleep(Duration::from_millis(100));
            });
        });
        wait_first.recv().unwrap();
        // Runtime B: its task waits on the same listener, and still waits when A ends.
        let lb = listener.clone();
        let b = std::thread::spawn(move || {
            bobine::Builder::new().domains(1).run(move || {
                let acceptor = thread::spawn(move || {
                    let (mut s, _) = lb.accept().unwrap();
                    let mut got = [0u8; 1];
                    s.read_exact(&mut got).unwrap();
                    s.write_all(&got).unwrap();
                    got[0]
                });
                join_within(acceptor, Duration::from_secs(4))
            })
        });
        a.join().unwrap();
        std::thread::sleep(Duration::from_millis(50));
        let mut c = std::net::TcpStream::connect(addr).unwrap();
        c.set_read_timeout(Some(GENEROUS)).unwrap();
        c.write_all(b"B").unwrap();
        let mut back = [0u8; 1];
        let echoed = c.read_exact(&mut back).is_ok();
        let served = b.join().unwrap();
        assert_eq!(
            served,
            Some(b'B'),
            "the task of the runtime still running never got the connection"
        );
        assert!(echoed);
    });
}
