//! The rest of `bobine::net` (issue 13): host names resolved off the domain (`lookup_host` and
//! every `impl ToSocketAddrs` call), `UnixDatagram`, UDP multicast, and Unix sockets by
//! `SocketAddr` (abstract names); in tasks, across domains, and on plain OS threads outside any
//! runtime, checked against std where std has the same call.

mod common;

use std::io;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, ToSocketAddrs};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::SocketAddr as UnixAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bobine::net::{
    Shutdown, TcpListener, TcpStream, UdpSocket, UnixDatagram, UnixListener, UnixStream,
    lookup_host,
};
use bobine::thread;
use common::tasks::{in_task_and_thread, spawn_ticker};

const CHILD: &str = "BOBINE_NET_MORE_CHILD";
const TIMEOUT: Duration = Duration::from_millis(100);
/// Far beyond any wait here: a wait this long means something was not woken.
const GENEROUS: Duration = Duration::from_secs(5);

/// A fresh socket path in the temporary directory.
fn socket_path(name: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let p = std::env::temp_dir().join(format!(
        "bobine-net-more-{}-{name}-{}.sock",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_file(&p);
    p
}

/// A fresh abstract name, unique to this process and call.
fn abstract_name(name: &str) -> UnixAddr {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = format!(
        "bobine-net-more-{}-{name}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    UnixAddr::from_abstract_name(n).unwrap()
}

/// Checks that `op` fails with `WouldBlock` no sooner than `timeout` (and not forever after).
fn assert_times_out<T: std::fmt::Debug>(what: &str, op: impl FnOnce() -> io::Result<T>) {
    let t = Instant::now();
    let e = op().expect_err(what);
    let took = t.elapsed();
    assert_eq!(e.kind(), io::ErrorKind::WouldBlock, "{what}: {e:?}");
    assert!(took >= TIMEOUT, "{what}: gave up after {took:?}");
    assert!(took < GENEROUS, "{what}: gave up only after {took:?}");
}

/// std's error kind for resolving `s` (off the domain in a task, as the check itself must not
/// block it).
fn std_kind(s: &'static str) -> io::ErrorKind {
    bobine::io::unblock(move || s.to_socket_addrs().map(|_| ()).unwrap_err().kind())
}

// ---------------------------------------------------------------------------------------------
// Names.

/// `lookup_host` resolves `"localhost:port"` (through /etc/hosts, offline) to loopback addresses
/// with the port, and returns a literal address as it is.
#[test]
fn lookup_host_resolves_names_and_parses_literals() {
    common::watchdog(30, "lookup_host_resolves_names_and_parses_literals", || {
        fn check(where_: &str) {
            let got: Vec<SocketAddr> = lookup_host("localhost:4242").unwrap().collect();
            let std_got: Vec<SocketAddr> =
                bobine::io::unblock(|| "localhost:4242".to_socket_addrs().unwrap().collect());
            assert_eq!(
                got, std_got,
                "{where_}: the same addresses as std, in order"
            );
            assert!(!got.is_empty() && got.iter().all(|a| a.ip().is_loopback()));
            let v4: Vec<SocketAddr> = lookup_host("127.0.0.1:9").unwrap().collect();
            assert_eq!(v4, ["127.0.0.1:9".parse::<SocketAddr>().unwrap()]);
            let v6: Vec<SocketAddr> = lookup_host("[::1]:9").unwrap().collect();
            assert_eq!(v6, ["[::1]:9".parse::<SocketAddr>().unwrap()]);
        }
        in_task_and_thread(check);
    });
}

/// A string that does not resolve fails with std's error kind: no port, a bad port, a name
/// the resolver does not know.
#[test]
fn lookup_host_errors_are_std_errors() {
    common::watchdog(60, "lookup_host_errors_are_std_errors", || {
        fn check(where_: &str) {
            for s in [
                "localhost",
                "localhost:notaport",
                "bobine-no-such-host.invalid:80",
            ] {
                let e = lookup_host(s).unwrap_err();
                assert_eq!(e.kind(), std_kind(s), "{where_}: {s:?}: {e}");
            }
            let e = TcpStream::connect("bobine-no-such-host.invalid:80").unwrap_err();
            assert_eq!(e.kind(), std_kind("bobine-no-such-host.invalid:80"));
            let e = UdpSocket::bind("localhost").unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{where_}: {e}");
        }
        in_task_and_thread(check);
    });
}

/// `TcpListener::bind`, `TcpStream::connect`, `UdpSocket::bind/connect/send_to` take host
/// names in every std form (`&str`, `String`, `&String`, `(&str, u16)`, `(String, u16)`).
#[test]
fn socket_calls_take_host_names() {
    common::watchdog(30, "socket_calls_take_host_names", || {
        fn check(where_: &str) {
            let listener = TcpListener::bind("localhost:0").unwrap();
            let port = listener.local_addr().unwrap().port();
            assert!(listener.local_addr().unwrap().ip().is_loopback());
            let name = format!("localhost:{port}");
            let server = thread::spawn(move || {
                for i in 0..4u8 {
                    let (mut s, _) = listener.accept().unwrap();
                    s.write_all(&[i]).unwrap();
                }
            });
            let streams = [
                TcpStream::connect(name.as_str()).unwrap(),
                TcpStream::connect(&name).unwrap(),
                TcpStream::connect(("localhost", port)).unwrap(),
                TcpStream::connect((String::from("localhost"), port)).unwrap(),
            ];
            for (i, mut s) in streams.into_iter().enumerate() {
                let mut b = [0u8];
                s.read_exact(&mut b).unwrap();
                assert_eq!(b[0] as usize, i, "{where_}");
            }
            server.join().unwrap();

            // The sender's family is the first address of "localhost" (send_to takes the first).
            let first = lookup_host("localhost:0").unwrap().next().unwrap();
            let receiver = UdpSocket::bind(("localhost", 0)).unwrap();
            let port = receiver.local_addr().unwrap().port();
            let sender = UdpSocket::bind(SocketAddr::new(first.ip(), 0)).unwrap();
            sender
                .send_to(b"by name", format!("localhost:{port}"))
                .unwrap();
            let mut buf = [0u8; 16];
            let (n, from) = receiver.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..n], b"by name", "{where_}");
            assert_eq!(from, sender.local_addr().unwrap());
            sender.connect(("localhost", port)).unwrap();
            assert_eq!(sender.peer_addr().unwrap().port(), port);
            sender.send(b"connected").unwrap();
            let n = receiver.recv(&mut buf).unwrap();
            assert_eq!(&buf[..n], b"connected", "{where_}");
        }
        in_task_and_thread(check);
    });
}

/// With the blocking pool held by a job (one pool thread), a task resolving a name for
/// `connect`, `bind` or `send_to` waits for the pool, parked, while the other tasks of its
/// single domain keep running; literal addresses never wait for the pool. Child run: the pool's
/// size is set by the environment of a fresh process.
#[test]
fn names_wait_for_the_pool_and_the_domain_runs_others() {
    const NAME: &str = "names_wait_for_the_pool_and_the_domain_runs_others";
    if !common::child::is_child_of(CHILD, NAME) {
        let env = [(CHILD, NAME), ("BOBINE_BLOCKING_THREADS", "1")];
        let (out, killed) = common::child::run_within(NAME, &env, Duration::from_secs(60));
        assert!(!killed, "child hung");
        common::child::assert_ok(NAME, &out);
        return;
    }
    common::watchdog(30, NAME, || {
        bobine::Builder::new().domains(1).run(|| {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let port = listener.local_addr().unwrap().port();
            let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
            let uport = receiver.local_addr().unwrap().port();
            // Connections complete in the listener's backlog; nobody needs to accept them.
            type Op = Box<dyn FnOnce() + Send>;
            let by_name: [(&str, Op); 3] = [
                (
                    "connect",
                    Box::new(move || drop(TcpStream::connect(format!("localhost:{port}")))),
                ),
                (
                    "bind",
                    Box::new(|| drop(UdpSocket::bind("localhost:0").unwrap())),
                ),
                (
                    "send_to",
                    Box::new(move || {
                        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
                        s.send_to(b"x", ("localhost", uport)).unwrap();
                    }),
                ),
            ];
            for (what, op) in by_name {
                // Hold the pool's one thread.
                let (release, held) = std::sync::mpsc::channel::<()>();
                let (started, running) = bobine::sync::mpsc::channel::<()>();
                let holder = thread::spawn(move || {
                    bobine::io::unblock(move || {
                        started.send(()).unwrap();
                        held.recv().unwrap();
                    })
                });
                running.recv().unwrap();
                let done = Arc::new(AtomicBool::new(false));
                let d = done.clone();
                let resolver = thread::spawn(move || {
                    op();
                    d.store(true, Ordering::SeqCst);
                });
                let (ticks, stop) = (
                    Arc::new(AtomicUsize::new(0)),
                    Arc::new(AtomicBool::new(false)),
                );
                let ticker = spawn_ticker(ticks.clone(), stop.clone());
                // Literal addresses, meanwhile, do not wait for the pool.
                drop(TcpStream::connect(("127.0.0.1", port)).unwrap());
                let s = UdpSocket::bind("127.0.0.1:0").unwrap();
                s.send_to(b"y", format!("127.0.0.1:{uport}")).unwrap();
                thread::sleep(Duration::from_millis(50));
                assert!(
                    !done.load(Ordering::SeqCst),
                    "{what}: did not wait for the pool"
                );
                assert!(
                    ticks.load(Ordering::SeqCst) > 0,
                    "{what}: the domain stopped"
                );
                release.send(()).unwrap();
                resolver.join().unwrap();
                assert!(done.load(Ordering::SeqCst));
                holder.join().unwrap();
                stop.store(true, Ordering::SeqCst);
                ticker.join().unwrap();
            }
            drop(listener);
        })
    });
}

// ---------------------------------------------------------------------------------------------
// UDP multicast.

/// Whether std sockets on this machine carry a multicast datagram over loopback (joined on
/// `127.0.0.1`, sent from a socket bound to it).
fn std_loopback_multicast(group: Ipv4Addr) -> Result<(), String> {
    let r = std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).map_err(|e| e.to_string())?;
    r.join_multicast_v4(&group, &Ipv4Addr::LOCALHOST)
        .map_err(|e| format!("join: {e}"))?;
    r.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let s = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).map_err(|e| e.to_string())?;
    let to = SocketAddrV4::new(group, r.local_addr().unwrap().port());
    s.send_to(b"probe", to).map_err(|e| format!("send: {e}"))?;
    let mut b = [0u8; 8];
    r.recv_from(&mut b).map_err(|e| format!("recv: {e}"))?;
    Ok(())
}

/// The multicast options round-trip, joining and leaving work (leaving twice fails as std's
/// does), and a datagram sent to a group joined on loopback reaches a task parked in
/// `recv_from` (skipped, with the reason printed, only where std cannot do it either).
#[test]
fn udp_multicast_on_loopback() {
    common::watchdog(30, "udp_multicast_on_loopback", || {
        fn check(where_: &str) {
            let group = Ipv4Addr::new(239, 255, 66, 13);
            let r = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).unwrap();
            let joined = r.join_multicast_v4(&group, &Ipv4Addr::LOCALHOST);
            let std_r = std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).unwrap();
            let std_joined = std_r.join_multicast_v4(&group, &Ipv4Addr::LOCALHOST);
            assert_eq!(
                joined.as_ref().map_err(|e| e.kind()),
                std_joined.as_ref().map_err(|e| e.kind()),
                "{where_}: joining as std does"
            );
            let s = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
            for on in [false, true] {
                s.set_multicast_loop_v4(on).unwrap();
                assert_eq!(s.multicast_loop_v4().unwrap(), on);
                s.set_broadcast(on).unwrap();
                assert_eq!(s.broadcast().unwrap(), on);
            }
            for ttl in [5, 1] {
                s.set_multicast_ttl_v4(ttl).unwrap();
                assert_eq!(s.multicast_ttl_v4().unwrap(), ttl);
            }
            match std_loopback_multicast(group) {
                Ok(()) if joined.is_ok() => {
                    let to = SocketAddrV4::new(group, r.local_addr().unwrap().port());
                    let r2 = r.try_clone().unwrap();
                    let receiver = thread::spawn(move || {
                        let mut b = [0u8; 16];
                        let (n, from) = r2.recv_from(&mut b).unwrap();
                        (b[..n].to_vec(), from)
                    });
                    thread::sleep(Duration::from_millis(20));
                    s.send_to(b"to the group", to).unwrap();
                    let (got, from) = receiver.join().unwrap();
                    assert_eq!(got, b"to the group", "{where_}");
                    assert_eq!(from, s.local_addr().unwrap());
                }
                Ok(()) => println!("{where_}: multicast datagram not checked: no group joined"),
                Err(why) => println!("{where_}: multicast datagram not checked: std: {why}"),
            }
            if joined.is_ok() {
                r.leave_multicast_v4(&group, &Ipv4Addr::LOCALHOST).unwrap();
                std_r
                    .leave_multicast_v4(&group, &Ipv4Addr::LOCALHOST)
                    .unwrap();
            }
            // Leaving a group not joined fails as std's does.
            let again = r
                .leave_multicast_v4(&group, &Ipv4Addr::LOCALHOST)
                .unwrap_err();
            let std_again = std_r
                .leave_multicast_v4(&group, &Ipv4Addr::LOCALHOST)
                .unwrap_err();
            assert_eq!(again.kind(), std_again.kind(), "{where_}: {again}");

            if let Ok(r6) = UdpSocket::bind((Ipv6Addr::UNSPECIFIED, 0)) {
                let g6: Ipv6Addr = "ff02::6b:1".parse().unwrap();
                let std_r6 = std::net::UdpSocket::bind((Ipv6Addr::UNSPECIFIED, 0)).unwrap();
                let joined = r6.join_multicast_v6(&g6, 0);
                let std_joined = std_r6.join_multicast_v6(&g6, 0);
                assert_eq!(
                    joined.as_ref().map_err(|e| e.kind()),
                    std_joined.as_ref().map_err(|e| e.kind()),
                    "{where_}: joining an IPv6 group as std does"
                );
                for on in [false, true] {
                    r6.set_multicast_loop_v6(on).unwrap();
                    assert_eq!(r6.multicast_loop_v6().unwrap(), on);
                }
                if joined.is_ok() {
                    r6.leave_multicast_v6(&g6, 0).unwrap();
                }
            }
        }
        in_task_and_thread(check);
    });
}

// ---------------------------------------------------------------------------------------------
// UnixDatagram.

/// A pair: `recv` parks until a datagram is sent, `peek` leaves it queued, a short buffer
/// truncates the datagram (the rest is dropped, as std), `peek_from` and `recv_from` give the
/// (unnamed) sender.
#[test]
fn unix_datagram_pair_recv_peek_and_truncation() {
    common::watchdog(30, "unix_datagram_pair_recv_peek_and_truncation", || {
        fn check(where_: &str) {
            let (a, b) = UnixDatagram::pair().unwrap();
            let a = Arc::new(a);
            let a2 = a.clone();
            let sender = thread::spawn(move || {
                thread::sleep(Duration::from_millis(20));
                a2.send(b"first").unwrap();
                a2.send(b"second datagram").unwrap();
            });
            let mut buf = [0u8; 32];
            assert_eq!(b.peek(&mut buf).unwrap(), 5, "{where_}");
            let (n, from) = b.peek_from(&mut buf).unwrap();
            assert_eq!((&buf[..n], from.is_unnamed()), (&b"first"[..], true));
            assert_eq!(b.recv(&mut buf).unwrap(), 5);
            let mut short = [0u8; 6];
            let (n, from) = b.recv_from(&mut short).unwrap();
            assert_eq!((&short[..n], from.is_unnamed()), (&b"second"[..], true));
            sender.join().unwrap();
            b.set_nonblocking(true).unwrap();
            let e = b.recv(&mut buf).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::WouldBlock, "the rest was dropped");
            assert!(format!("{b:?}").contains("UnixDatagram"));
        }
        in_task_and_thread(check);
    });
}

/// Bound to paths: `send_to` a path, `peek_from` and `recv_from` name the sender's path, `connect` + `send`,
/// `local_addr`/`peer_addr`; errors as std's (`NotConnected`, `NotFound`, `BrokenPipe` after
/// `shutdown`).
#[test]
fn unix_datagram_by_path_and_errors() {
    common::watchdog(30, "unix_datagram_by_path_and_errors", || {
        fn check(where_: &str) {
            let (pa, pb) = (socket_path("dga"), socket_path("dgb"));
            let a = UnixDatagram::bind(&pa).unwrap();
            let b = UnixDatagram::bind(&pb).unwrap();
            assert_eq!(a.local_addr().unwrap().as_pathname(), Some(pa.as_path()));
            a.send_to(b"to b", &pb).unwrap();
            let mut buf = [0u8; 16];
            let (n, from) = b.peek_from(&mut buf).unwrap();
            assert_eq!(&buf[..n], b"to b", "{where_}");
            assert_eq!(from.as_pathname(), Some(pa.as_path()));
            let (n, from) = b.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..n], b"to b", "{where_}");
            assert_eq!(from.as_pathname(), Some(pa.as_path()));
            let e = a.peer_addr().unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::NotConnected);
            let e = a.send(b"nowhere").unwrap_err();
            let std_e = std::os::unix::net::UnixDatagram::unbound()
                .unwrap()
                .send(b"nowhere")
                .unwrap_err();
            assert_eq!(e.kind(), std_e.kind(), "{where_}: {e}");
            let e = a.send_to(b"x", socket_path("absent")).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::NotFound, "{where_}: {e}");

            b.connect(&pa).unwrap();
            assert_eq!(b.peer_addr().unwrap().as_pathname(), Some(pa.as_path()));
            b.send(b"back").unwrap();
            let n = a.recv(&mut buf).unwrap();
            assert_eq!(&buf[..n], b"back");
            b.shutdown(Shutdown::Write).unwrap();
            let e = b.send(b"after").unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::BrokenPipe, "{where_}: {e}");
            let e = UnixDatagram::bind(&pa).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
            std::fs::remove_file(&pa).unwrap();
            std::fs::remove_file(&pb).unwrap();
        }
        in_task_and_thread(check);
    });
}

/// Read and write timeouts give `WouldBlock` after the timeout (a send on a full pair);
/// non-blocking mode gives it at once; a zero timeout is refused, as std.
#[test]
fn unix_datagram_timeouts_and_nonblocking() {
    common::watchdog(30, "unix_datagram_timeouts_and_nonblocking", || {
        fn check(where_: &str) {
            // `a` has filled `b`'s queue; nothing was sent to `a`.
            let (a, _b, _) = full_route(Route::Pair);
            let mut buf = [0u8; 8];
            a.set_read_timeout(Some(TIMEOUT)).unwrap();
            assert_eq!(a.read_timeout().unwrap(), Some(TIMEOUT));
            assert_times_out(&format!("recv {where_}"), || a.recv(&mut buf));
            assert_times_out(&format!("recv_from {where_}"), || a.recv_from(&mut buf));
            assert_times_out(&format!("peek {where_}"), || a.peek(&mut buf));
            let e = a.set_read_timeout(Some(Duration::ZERO)).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
            a.set_nonblocking(true).unwrap();
            let t = Instant::now();
            assert_eq!(
                a.recv(&mut buf).unwrap_err().kind(),
                io::ErrorKind::WouldBlock
            );
            let e = a.send(&[0u8; 512]).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
            assert!(t.elapsed() < TIMEOUT, "{where_}: non-blocking mode waited");
            a.set_nonblocking(false).unwrap();
            a.set_write_timeout(Some(TIMEOUT)).unwrap();
            assert_eq!(a.write_timeout().unwrap(), Some(TIMEOUT));
            assert_times_out(&format!("send {where_}"), || a.send(&[0u8; 512]));
            a.set_write_timeout(None).unwrap();
            assert_eq!(a.write_timeout().unwrap(), None);
        }
        in_task_and_thread(check);
    });
}

/// How a sender reaches a receiver, for the full-queue tests.
#[derive(Clone, Copy, Debug)]
enum Route {
    /// A socket pair (the sender's own buffer fills).
    Pair,
    /// A socket connected to a bound receiver (the receiver's queue fills; the kernel wakes the
    /// sender when it drains).
    Connected,
    /// `send_to` a bound receiver without connecting, whose queue another socket has filled
    /// (the kernel gives the sender no wake-up when it drains).
    SendTo,
}

/// A sender on `route` whose next send finds a full queue, its receiver, and the receiver's
/// path (for `send_to`).
fn full_route(route: Route) -> (UnixDatagram, UnixDatagram, PathBuf) {
    let path = socket_path("full");
    let (s, r) = match route {
        Route::Pair => UnixDatagram::pair().unwrap(),
        Route::Connected | Route::SendTo => {
            let r = UnixDatagram::bind(&path).unwrap();
            let s = UnixDatagram::unbound().unwrap();
            if let Route::Connected = route {
                s.connect(&path).unwrap();
            }
            (s, r)
        }
    };
    s.set_nonblocking(true).unwrap();
    let mut n = 0;
    while n < 100_000 {
        let sent = match route {
            Route::SendTo => s.send_to(&[1u8; 512], &path),
            _ => s.send(&[1u8; 512]),
        };
        match sent {
            Ok(_) => n += 1,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => panic!("{route:?}: filling: {e}"),
        }
    }
    assert!(n > 0 && n < 100_000, "{route:?}: {n} datagrams");
    s.set_nonblocking(false).unwrap();
    match route {
        // The sender is another socket: when the receiver reads the filler's datagrams, the
        // kernel gives it no wake-up.
        Route::SendTo => (UnixDatagram::unbound().unwrap(), r, path),
        _ => (s, r, path),
    }
}

/// A send on a full queue parks (pair, connected, or `send_to`) while the other tasks of the
/// single domain run, and completes once the receiver reads; nothing is lost. Then the same
/// on plain threads, where the sender blocks without spinning (it uses less CPU time than a
/// twentieth of the time it waits; a sender retrying at once used a third, on a loaded machine).
#[test]
fn unix_datagram_send_waits_while_the_queue_is_full() {
    common::watchdog(
        60,
        "unix_datagram_send_waits_while_the_queue_is_full",
        || {
            for route in [Route::Pair, Route::Connected, Route::SendTo] {
                bobine::Builder::new().domains(1).run(move || {
                    let (s, r, path) = full_route(route);
                    let done = Arc::new(AtomicBool::new(false));
                    let d = done.clone();
                    let sender = thread::spawn(move || {
                        match route {
                            Route::SendTo => s.send_to(b"last", &path).unwrap(),
                            _ => s.send(b"last").unwrap(),
                        };
                        d.store(true, Ordering::SeqCst);
                        let _ = std::fs::remove_file(&path);
                    });
                    let (ticks, stop) = (
                        Arc::new(AtomicUsize::new(0)),
                        Arc::new(AtomicBool::new(false)),
                    );
                    let ticker = spawn_ticker(ticks.clone(), stop.clone());
                    thread::sleep(Duration::from_millis(50));
                    assert!(
                        !done.load(Ordering::SeqCst),
                        "{route:?}: sent into a full queue"
                    );
                    assert!(
                        ticks.load(Ordering::SeqCst) > 0,
                        "{route:?}: the domain stopped"
                    );
                    drain_until_last(&r, route);
                    sender.join().unwrap();
                    stop.store(true, Ordering::SeqCst);
                    ticker.join().unwrap();
                });
                let (s, r, path) = full_route(route);
                let sender = std::thread::spawn(move || {
                    let (t, cpu) = (Instant::now(), thread_cpu_time());
                    match route {
                        Route::SendTo => s.send_to(b"last", &path).unwrap(),
                        _ => s.send(b"last").unwrap(),
                    };
                    (t.elapsed(), thread_cpu_time() - cpu)
                });
                std::thread::sleep(Duration::from_millis(200));
                assert!(
                    !sender.is_finished(),
                    "{route:?}: a plain thread sent into a full queue"
                );
                drain_until_last(&r, route);
                let (wall, cpu) = sender.join().unwrap();
                assert!(
                    cpu < wall / 20,
                    "{route:?}: a plain thread spun while it waited: {cpu:?} of CPU in {wall:?}"
                );
            }
        },
    );
}

/// The CPU time the calling thread has used.
fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec for the call to fill in.
    let r = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(r, 0, "clock_gettime: {}", io::Error::last_os_error());
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Reads datagrams from `r` until the one saying "last" (bounded); checks the others.
fn drain_until_last(r: &UnixDatagram, route: Route) {
    r.set_read_timeout(Some(GENEROUS)).unwrap();
    let mut buf = [0u8; 512];
    for _ in 0..100_000 {
        let n = r.recv(&mut buf).unwrap();
        if &buf[..n] == b"last" {
            return;
        }
        assert_eq!(n, 512, "{route:?}");
    }
    panic!("{route:?}: the last datagram never came");
}

/// A receiver parked on one domain is woken by a send from another domain, many times over,
/// nothing lost or duplicated.
#[test]
fn unix_datagram_across_domains() {
    common::watchdog(30, "unix_datagram_across_domains", || {
        bobine::Builder::new().domains(2).run(|| {
            let (a, b) = UnixDatagram::pair().unwrap();
            let receiver = thread::spawn(move || {
                let mut sum = 0u64;
                let mut buf = [0u8; 8];
                for i in 0..200u64 {
                    assert_eq!(b.recv(&mut buf).unwrap(), 8);
                    assert_eq!(u64::from_le_bytes(buf), i, "in order, none lost");
                    sum += i;
                }
                sum
            });
            for i in 0..200u64 {
                a.send(&i.to_le_bytes()).unwrap();
                if i % 16 == 0 {
                    thread::sleep(Duration::from_millis(1));
                }
            }
            assert_eq!(receiver.join().unwrap(), (0..200).sum::<u64>());
        })
    });
}

/// `try_clone` shares the socket and its settings; the descriptor goes to `OwnedFd` and back,
/// and to std and back, still working.
#[test]
fn unix_datagram_clones_and_descriptors() {
    common::watchdog(30, "unix_datagram_clones_and_descriptors", || {
        fn check(where_: &str) {
            let (a, b) = UnixDatagram::pair().unwrap();
            let b2 = b.try_clone().unwrap();
            b.set_read_timeout(Some(TIMEOUT)).unwrap();
            assert_eq!(b2.read_timeout().unwrap(), Some(TIMEOUT), "{where_}");
            assert_ne!(b.as_raw_fd(), b2.as_raw_fd());
            assert_eq!(b.as_fd().as_raw_fd(), b.as_raw_fd());
            let fd: OwnedFd = a.into();
            let a = UnixDatagram::from(fd);
            a.send(b"via fd").unwrap();
            let mut buf = [0u8; 8];
            let n = b2.recv(&mut buf).unwrap();
            assert_eq!(&buf[..n], b"via fd");
            let a = UnixDatagram::from_std(a.into_std()).unwrap();
            a.send(b"via std").unwrap();
            let n = b.recv(&mut buf).unwrap();
            assert_eq!(&buf[..n], b"via std");
            assert!(b.take_error().unwrap().is_none());
        }
        in_task_and_thread(check);
    });
}

// ---------------------------------------------------------------------------------------------
// Unix sockets by SocketAddr: abstract names.

/// A listener on an abstract name accepts a task's connection (`connect_addr`) and echoes;
/// `local_addr().as_abstract_name()` gives the name back; an abstract name nobody listens on
/// is refused, as std's.
#[test]
fn unix_stream_on_an_abstract_name() {
    common::watchdog(30, "unix_stream_on_an_abstract_name", || {
        fn check(where_: &str) {
            let addr = abstract_name("listener");
            let listener = UnixListener::bind_addr(&addr).unwrap();
            let local = listener.local_addr().unwrap();
            assert_eq!(
                local.as_abstract_name(),
                addr.as_abstract_name(),
                "{where_}"
            );
            assert!(local.as_pathname().is_none());
            let e = UnixListener::bind_addr(&addr).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
            let a2 = addr.clone();
            let client = thread::spawn(move || {
                let mut c = UnixStream::connect_addr(&a2).unwrap();
                let peer = c.peer_addr().unwrap();
                assert_eq!(peer.as_abstract_name(), a2.as_abstract_name());
                c.write_all(b"abstract").unwrap();
                let mut back = [0u8; 8];
                c.read_exact(&mut back).unwrap();
                back
            });
            let (mut s, _) = listener.accept().unwrap();
            let mut b = [0u8; 8];
            s.read_exact(&mut b).unwrap();
            s.write_all(&b).unwrap();
            assert_eq!(&client.join().unwrap(), b"abstract");
            let absent = abstract_name("absent");
            let e = UnixStream::connect_addr(&absent).unwrap_err();
            let std_e = std::os::unix::net::UnixStream::connect_addr(&absent).unwrap_err();
            assert_eq!(e.kind(), std_e.kind(), "{where_}: {e}");
            let unnamed = UnixDatagram::unbound().unwrap().local_addr().unwrap();
            let e = UnixStream::connect_addr(&unnamed).unwrap_err();
            let std_e = std::os::unix::net::UnixStream::connect_addr(&unnamed).unwrap_err();
            assert_eq!(e.kind(), std_e.kind(), "{where_}: {e}");
        }
        in_task_and_thread(check);
    });
}

/// Datagrams between abstract names: `send_to_addr`, `recv_from` and `peek_from` name the
/// sender's abstract name; `connect_addr` + `send`; a parked receiver is woken (also on a
/// runtime of two domains, where it may run on the other one).
#[test]
fn unix_datagrams_between_abstract_names() {
    common::watchdog(30, "unix_datagrams_between_abstract_names", || {
        fn check(where_: &str) {
            let (na, nb) = (abstract_name("dga"), abstract_name("dgb"));
            let a = UnixDatagram::bind_addr(&na).unwrap();
            let b = UnixDatagram::bind_addr(&nb).unwrap();
            assert_eq!(
                b.local_addr().unwrap().as_abstract_name(),
                nb.as_abstract_name()
            );
            let receiver = thread::spawn(move || {
                let mut buf = [0u8; 16];
                let (n, from) = b.peek_from(&mut buf).unwrap();
                assert_eq!(&buf[..n], b"hello b");
                let (m, from2) = b.recv_from(&mut buf).unwrap();
                assert_eq!(m, n);
                b.connect_addr(&from).unwrap();
                b.send(b"hello a").unwrap();
                assert_eq!(
                    b.peer_addr().unwrap().as_abstract_name(),
                    from.as_abstract_name()
                );
                (from, from2, b)
            });
            thread::sleep(Duration::from_millis(10));
            a.send_to_addr(b"hello b", &nb).unwrap();
            let (from, from2, _b) = receiver.join().unwrap();
            assert_eq!(from.as_abstract_name(), na.as_abstract_name(), "{where_}");
            assert_eq!(from2.as_abstract_name(), na.as_abstract_name());
            let mut buf = [0u8; 16];
            let (n, back) = a.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..n], b"hello a");
            assert_eq!(back.as_abstract_name(), nb.as_abstract_name());
            a.connect_addr(&nb).unwrap();
            assert_eq!(
                a.peer_addr().unwrap().as_abstract_name(),
                nb.as_abstract_name()
            );
        }
        in_task_and_thread(check);
        bobine::Builder::new()
            .domains(2)
            .run(|| check("in a task on two domains"));
    });
}
