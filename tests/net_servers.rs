//! The network servers of `examples/` (echo, HTTP/1.1, WebSocket over `tungstenite`) under
//! load, on two domains. The examples' own server and client functions are compiled in here,
//! so what the examples serve is what these tests check; every check is about behaviour
//! (bytes, statuses, counts), never about speed.

mod common;

#[path = "../examples/echo.rs"]
#[allow(dead_code)]
mod echo;
#[path = "../examples/http.rs"]
#[allow(dead_code)]
mod http;
#[path = "../examples/websocket.rs"]
#[allow(dead_code)]
mod websocket;

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::{Arc, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

use bobine::net::{TcpListener, TcpStream};
use bobine::sync::Barrier;
use bobine::thread;
use common::tasks::on_domains;

/// The test with 9 000 connections needs most of the process's descriptors: it runs alone
/// (write lock) while the others share (read lock).
static DESCRIPTORS: RwLock<()> = RwLock::new(());

/// A share of the descriptors (see [`DESCRIPTORS`]).
fn shared() -> RwLockReadGuard<'static, ()> {
    DESCRIPTORS.read().unwrap_or_else(|e| e.into_inner())
}

/// `127.0.0.1`, any free port.
fn localhost() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// Waits (parking) until `log` reports no open connection and `accepted` in all, or 10 s.
fn settled(log: &echo::Log, accepted: u64) -> echo::Counts {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let c = log.counts();
        if (c.open == 0 && c.accepted == accepted) || Instant::now() > deadline {
            return c;
        }
        thread::sleep(Duration::from_millis(1));
    }
}

/// 100 client tasks × 50 messages, plus one client on a plain OS thread (blocking in
/// `poll(2)`), through one echo server: every byte comes back, the server logs 101 clients
/// and sees each connection end cleanly.
#[test]
fn echo_100_tasks_and_an_os_thread() {
    let _fds = shared();
    common::watchdog(60, "echo_100_tasks_and_an_os_thread", || {
        let r = on_domains(2, || echo::selftest(None, 100, 50)).expect("echo self-test");
        assert_eq!(r.loops, 1);
        assert_eq!(r.clients, 101);
        assert_eq!(r.counts.accepted, 101);
        assert_eq!(r.counts.failed, 0);
        assert_eq!(r.counts.open, 0);
        assert_eq!(r.counts.bytes, r.bytes);
        assert!(r.bytes > 101 * 50, "messages are at least a byte each");
    });
}

/// One echo server per domain, two listeners sharing the port with `SO_REUSEPORT`, each with
/// its own log: the kernel spreads 101 clients over both, and every byte comes back.
#[test]
fn echo_one_server_per_domain_with_reuseport() {
    let _fds = shared();
    common::watchdog(60, "echo_one_server_per_domain_with_reuseport", || {
        on_domains(2, || {
            let listeners = echo::bind(localhost(), Some(2)).unwrap();
            let addr = listeners[0].local_addr().unwrap();
            assert_eq!(listeners[1].local_addr().unwrap(), addr);
            let logs: Vec<Arc<echo::Log>> =
                (0..2).map(|_| Arc::new(echo::Log::new(false))).collect();
            for (i, (l, log)) in listeners.into_iter().zip(&logs).enumerate() {
                let log = log.clone();
                thread::spawn(move || echo::serve(&l, &log, i));
            }

            let os_client = std::thread::spawn(move || echo::client(addr, 1_000, 50));
            let clients: Vec<_> = (0..100)
                .map(|seed| thread::spawn(move || echo::client(addr, seed, 50)))
                .collect();
            let mut bytes = 0;
            for c in clients {
                bytes += c.join().unwrap().unwrap();
            }
            bytes += bobine::io::unblock(move || os_client.join())
                .unwrap()
                .unwrap();

            let deadline = Instant::now() + Duration::from_secs(10);
            let counts = loop {
                let c: Vec<echo::Counts> = logs.iter().map(|l| l.counts()).collect();
                let done = c.iter().all(|c| c.open == 0)
                    && c.iter().map(|c| c.accepted).sum::<u64>() == 101;
                if done || Instant::now() > deadline {
                    break c;
                }
                thread::sleep(Duration::from_millis(1));
            };
            assert_eq!(
                counts.iter().map(|c| c.accepted).sum::<u64>(),
                101,
                "{counts:?}"
            );
            assert!(
                counts.iter().all(|c| c.open == 0 && c.failed == 0),
                "{counts:?}"
            );
            assert_eq!(counts.iter().map(|c| c.bytes).sum::<u64>(), bytes);
            // The kernel hashes each connection's addresses to pick a listener: with 101
            // connections, one listener getting none has odds of 2^-100.
            assert!(
                counts.iter().all(|c| c.accepted > 0),
                "one listener got every connection: {counts:?}"
            );
        });
    });
}

/// Raises the soft limit on descriptors to the hard limit; returns the new soft limit.
fn raise_descriptor_limit() -> libc::rlim_t {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into a valid, properly sized struct.
    let got = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) };
    assert_eq!(got, 0, "getrlimit: {}", io::Error::last_os_error());
    if rl.rlim_cur < rl.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: rl.rlim_max,
            rlim_max: rl.rlim_max,
        };
        // SAFETY: setrlimit reads one valid rlimit; raising the soft limit up to the hard one
        // is always allowed.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            rl = raised;
        }
    }
    rl.rlim_cur
}

/// 9 000 connections open at once in one process (18 000 descriptors: the client ends and the
/// server ends): the clients (tasks) all connect first and wait at a barrier until the echo
/// server has accepted every one; then each sends a message of its own and checks the echo.
/// The server's log must show all 9 000 open at the same time and every one closed cleanly.
#[test]
fn nine_thousand_connections_at_once() {
    const WANTED: usize = 9_000;
    let _fds = DESCRIPTORS.write().unwrap_or_else(|e| e.into_inner());
    common::watchdog(120, "nine_thousand_connections_at_once", || {
        let limit = raise_descriptor_limit();
        // Two descriptors per connection, and room for the rest of the process.
        let n = WANTED.min((limit.saturating_sub(400) / 2) as usize);
        if n < WANTED {
            eprintln!(
                "nine_thousand_connections_at_once: descriptor limit {limit}: {n} connections \
                 instead of {WANTED}"
            );
        }
        on_domains(2, || {
            let listeners = echo::bind(localhost(), Some(1)).unwrap();
            let addr = listeners[0].local_addr().unwrap();
            let log = Arc::new(echo::Log::new(false));
            echo::start(listeners, &log);

            let connected = Arc::new(Barrier::new(n + 1));
            let go = Arc::new(Barrier::new(n + 1));
            let mut clients = Vec::with_capacity(n);
            for i in 0..n {
                // Keep the accept queue (4 096 deep, or `somaxconn`) from overflowing, which
                // would cost the overflowing clients a one-second SYN retransmission.
                while i as u64 - log.counts().accepted.min(i as u64) >= 1_000 {
                    thread::sleep(Duration::from_millis(1));
                }
                let (connected, go) = (connected.clone(), go.clone());
                clients.push(thread::spawn(move || -> io::Result<()> {
                    // Every client reaches both barriers, even one whose connect failed.
                    let conn = TcpStream::connect(addr);
                    connected.wait();
                    go.wait();
                    let mut s = conn?;
                    let msg = format!("client {i} says hello");
                    s.write_all(msg.as_bytes())?;
                    let mut back = vec![0; msg.len()];
                    s.read_exact(&mut back)?;
                    assert_eq!(back, msg.as_bytes(), "client {i}");
                    Ok(())
                }));
            }
            connected.wait();
            let deadline = Instant::now() + Duration::from_secs(30);
            while log.counts().accepted < n as u64 && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(5));
            }
            let before = log.counts();
            assert_eq!(before.accepted, n as u64, "{before:?}");
            assert_eq!(before.open, n as u64, "all open at once: {before:?}");
            go.wait();

            for (i, c) in clients.into_iter().enumerate() {
                if let Err(e) = c.join().unwrap() {
                    panic!("client {i}: {e}");
                }
            }
            let after = settled(&log, n as u64);
            assert_eq!(after.accepted, n as u64, "{after:?}");
            assert_eq!(after.open, 0, "{after:?}");
            assert_eq!(after.max_open, n as u64, "{after:?}");
            assert_eq!(after.failed, 0, "{after:?}");
        });
    });
}

/// 20 keep-alive clients × 300 requests each on one connection (single requests, two
/// pipelined in one write, one split across two writes, `HEAD`, `POST` with a body, HTTP/1.0
/// keep-alive, then `Connection: close`), every response checked; a head that does not parse
/// gets 400 after the good request before it; an oversized head gets 431; a body larger than
/// the server's buffer is skipped and the request after it answered.
#[test]
fn http_keep_alive_pipelining_and_errors() {
    let _fds = shared();
    common::watchdog(60, "http_keep_alive_pipelining_and_errors", || {
        on_domains(2, || {
            let listeners = http::bind(localhost(), None).unwrap();
            let addr = listeners[0].local_addr().unwrap();
            http::start(listeners);

            let clients: Vec<_> = (0..20)
                .map(|_| thread::spawn(move || http::client_session(addr, 300)))
                .collect();
            http::bad_request_session(addr).unwrap();

            // A head past the 64 KiB limit.
            let mut c = http::ClientConn::connect(addr).unwrap();
            let mut big = b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Filler: ".to_vec();
            big.resize(http::MAX_HEAD + 100, b'f');
            big.extend_from_slice(b"\r\n\r\n");
            c.send(&big).unwrap();
            let r = c.response(false).unwrap();
            assert_eq!((r.status, r.close), (431, true), "{r:?}");
            c.expect_closed().unwrap();

            // A 1 MiB body (many buffers' worth), pipelined with the request after it.
            let mut c = http::ClientConn::connect(addr).unwrap();
            let body = vec![b'z'; 1 << 20];
            let head = format!(
                "POST /upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            let mut bytes = head.into_bytes();
            bytes.extend_from_slice(&body);
            bytes.extend_from_slice(http::GET);
            let writer = {
                let s = c.stream.try_clone().unwrap();
                thread::spawn(move || (&s).write_all(&bytes))
            };
            http::check_hello(&c.response(false).unwrap(), false).unwrap();
            http::check_hello(&c.response(false).unwrap(), false).unwrap();
            writer.join().unwrap().unwrap();

            // `Connection: close` in a pipelined batch: the requests after it are not answered.
            let mut c = http::ClientConn::connect(addr).unwrap();
            let mut batch = http::GET.to_vec();
            batch.extend_from_slice(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n");
            batch.extend_from_slice(http::GET);
            c.send(&batch).unwrap();
            http::check_hello(&c.response(false).unwrap(), false).unwrap();
            http::check_hello(&c.response(false).unwrap(), true).unwrap();
            c.expect_closed().unwrap();

            // HTTP/1.0 without keep-alive closes after one response.
            let mut c = http::ClientConn::connect(addr).unwrap();
            c.send(b"GET / HTTP/1.0\r\n\r\n").unwrap();
            http::check_hello(&c.response(false).unwrap(), true).unwrap();
            c.expect_closed().unwrap();

            let mut answered = 0;
            for h in clients {
                answered += h.join().unwrap().unwrap();
            }
            assert_eq!(answered, 20 * 301);
        });
    });
}

/// The `Date` header's formatting, against dates worked out by hand.
#[test]
fn http_date_format() {
    common::watchdog(10, "http_date_format", check_http_dates);
}

/// See [`http_date_format`].
fn check_http_dates() {
    let cases: [(u64, &str); 5] = [
        (0, "Thu, 01 Jan 1970 00:00:00 GMT"),
        (784_111_777, "Sun, 06 Nov 1994 08:49:37 GMT"),
        (951_782_400, "Tue, 29 Feb 2000 00:00:00 GMT"),
        (1_709_251_199, "Thu, 29 Feb 2024 23:59:59 GMT"),
        (4_107_542_400, "Mon, 01 Mar 2100 00:00:00 GMT"),
    ];
    for (secs, text) in cases {
        assert_eq!(std::str::from_utf8(&http::http_date(secs)).unwrap(), text);
    }
}

/// `tungstenite`'s blocking API, unchanged, on both ends: 30 client tasks and one client on a
/// plain OS thread, text and binary messages up to 200 KiB, a ping and the close handshake,
/// against one echo task per connection.
#[test]
fn websocket_echo_with_tungstenite() {
    let _fds = shared();
    common::watchdog(60, "websocket_echo_with_tungstenite", || {
        on_domains(2, || {
            let listener = TcpListener::bind(localhost()).unwrap();
            let addr = listener.local_addr().unwrap();
            let served = Arc::new(bobine::sync::Mutex::new(Vec::new()));
            {
                let served = served.clone();
                thread::spawn(move || {
                    for stream in listener.incoming() {
                        let served = served.clone();
                        let stream = stream.unwrap();
                        thread::spawn(move || {
                            let r = websocket::serve_connection(stream).map_err(|e| e.to_string());
                            served.lock().unwrap().push(r);
                        });
                    }
                });
            }
            let os_client = std::thread::spawn(move || {
                websocket::client(addr, 99, 12).map_err(|e| e.to_string())
            });
            let clients: Vec<_> = (0..30)
                .map(|seed| {
                    thread::spawn(move || {
                        websocket::client(addr, seed, 12).map_err(|e| e.to_string())
                    })
                })
                .collect();
            for c in clients {
                c.join().unwrap().unwrap();
            }
            bobine::io::unblock(move || os_client.join())
                .unwrap()
                .unwrap();

            let deadline = Instant::now() + Duration::from_secs(10);
            while served.lock().unwrap().len() < 31 && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(1));
            }
            let served = served.lock().unwrap();
            assert_eq!(served.len(), 31);
            for r in served.iter() {
                assert_eq!(r, &Ok(12), "every connection echoed its 12 messages");
            }
        });
    });
}

/// The three examples' `--selftest` runs (the same functions their `main` calls), on two
/// domains; the echo one with two `SO_REUSEPORT` accept loops.
#[test]
fn example_selftests() {
    let _fds = shared();
    common::watchdog(60, "example_selftests", || {
        let e = on_domains(2, || echo::selftest(Some(2), 20, 20)).expect("echo");
        assert_eq!((e.loops, e.clients, e.counts.failed), (2, 21, 0));
        let h = on_domains(2, || http::selftest(Some(2), 10, 50)).expect("http");
        assert_eq!(h.requests, 10 * 51 + 2);
        let w = on_domains(2, || websocket::selftest(10, 8).map_err(|e| e.to_string()))
            .expect("websocket");
        assert_eq!(w.messages, 80);
    });
}
