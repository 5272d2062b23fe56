//! Sockets under faults: an accept storm at `EMFILE` (in a child process with a lowered
//! descriptor limit), and peers that reset, half-close or vanish beside a connection that keeps
//! working.
//!
//! The storm counts `accept4(2)` calls to show the server does not busy-loop: this binary
//! defines its own `accept4` (below), which the linker binds bobine's (and std's) calls to
//! instead of libc's, since a definition in the executable comes before a shared library's;
//! it counts each call by outcome and makes the system call itself. No tracing, no timing:
//! the counts are checked against what the documented back-off allows.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, SocketAddrV4};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use bobine::net::{Shutdown, TcpListener, TcpStream, UnixListener};
use bobine::thread;

use crate::common::fds::{
    connect_raw, connect_unix_raw, exhaust_descriptors, lower_nofile, raw_tcp_socket,
    raw_unix_socket, set_linger_zero,
};
use crate::{CHILD_ENV, common, in_child, limit, size, test_path};

/// `accept4(2)` calls of this process that returned a descriptor.
static ACCEPT_OK: AtomicU64 = AtomicU64::new(0);
/// ... that failed with `EAGAIN` (nothing to accept: the caller parks).
static ACCEPT_EAGAIN: AtomicU64 = AtomicU64::new(0);
/// ... that failed with `EMFILE` or `ENFILE` (out of descriptors: the caller backs off).
static ACCEPT_EMFILE: AtomicU64 = AtomicU64::new(0);
/// ... that failed otherwise.
static ACCEPT_OTHER: AtomicU64 = AtomicU64::new(0);

/// `accept4(2)`, counted (see the module doc): the system call made directly, its outcome
/// added to one of the counters above, errno left as the call set it.
///
/// # Safety
///
/// As `accept4(2)`: `addr` and `len` are null, or valid for the kernel to write the peer's
/// address and its length.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn accept4(
    fd: libc::c_int,
    addr: *mut libc::sockaddr,
    len: *mut libc::socklen_t,
    flags: libc::c_int,
) -> libc::c_int {
    // SAFETY: the caller's arguments go to the system call unchanged; the caller upholds its
    // contract (see `# Safety`).
    let r = unsafe { libc::syscall(libc::SYS_accept4, fd, addr, len, flags) };
    let counter = if r >= 0 {
        &ACCEPT_OK
    } else {
        match io::Error::last_os_error().raw_os_error() {
            Some(libc::EAGAIN) => &ACCEPT_EAGAIN,
            Some(libc::EMFILE | libc::ENFILE) => &ACCEPT_EMFILE,
            _ => &ACCEPT_OTHER,
        }
    };
    counter.fetch_add(1, Ordering::Relaxed);
    r as libc::c_int
}

/// Which listener a child of [`reliability_emfile_storm`] serves on: `tcp` or `unix`.
const KIND_ENV: &str = "BOBINE_RELIABILITY_KIND";

/// The documented back-off of `TcpListener::accept` at `EMFILE`: 1 ms, doubling to 256 ms.
const BACKOFF_MIN_MS: u64 = 1;
const BACKOFF_MAX_MS: u64 = 256;

/// The most `EMFILE` attempts one `accept` call can make within `elapsed`: each attempt but the
/// last is followed by a back-off sleep of at least the documented length, so `n` attempts
/// take at least the sum of the first `n - 1` back-offs.
fn max_emfile_attempts(elapsed: Duration) -> u64 {
    let budget = elapsed.as_millis() as u64;
    let (mut attempts, mut slept, mut backoff) = (1, 0, BACKOFF_MIN_MS);
    while slept + backoff <= budget {
        slept += backoff;
        attempts += 1;
        backoff = (backoff * 2).min(BACKOFF_MAX_MS);
    }
    attempts
}

/// Sleeps (parking the task) until `cond` holds, for at most `limit`; returns whether it held.
fn wait_for(limit: Duration, cond: impl Fn() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if cond() {
            return true;
        }
        thread::sleep(Duration::from_millis(2));
    }
    cond()
}

/// Answers one client: reads a byte, writes it back, waits for the client to close, closes
/// and counts it in `closed`.
fn echo_once<S>(s: S, closed: &AtomicUsize)
where
    for<'a> &'a S: Read + Write,
{
    let mut b = [0u8; 1];
    (&s).read_exact(&mut b).unwrap();
    (&s).write_all(&b).unwrap();
    let mut rest = Vec::new();
    let _ = (&s).read_to_end(&mut rest);
    drop(s);
    closed.fetch_add(1, Ordering::SeqCst);
}

/// The listener of a storm: TCP on loopback, or a Unix socket file.
enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener, PathBuf),
}

/// Where the storm's clients connect.
#[derive(Clone)]
enum Target {
    Tcp(SocketAddrV4),
    Unix(PathBuf),
}

/// A client's end of a connection: what both kinds of std stream do.
trait ClientStream: Read + Write + Send {}
impl<S: Read + Write + Send> ClientStream for S {}

impl Listener {
    /// A new listener of `kind` (`"tcp"` or `"unix"`).
    fn bind(kind: &str) -> Listener {
        match kind {
            "tcp" => Listener::Tcp(TcpListener::bind("127.0.0.1:0").unwrap()),
            _ => {
                let path = std::env::temp_dir().join(format!(
                    "bobine-reliability-storm-{}.sock",
                    std::process::id()
                ));
                let _ = std::fs::remove_file(&path);
                Listener::Unix(UnixListener::bind(&path).unwrap(), path)
            }
        }
    }

    fn target(&self) -> Target {
        match self {
            Listener::Tcp(l) => match l.local_addr().unwrap() {
                SocketAddr::V4(a) => Target::Tcp(a),
                SocketAddr::V6(_) => unreachable!("bound to 127.0.0.1"),
            },
            Listener::Unix(_, path) => Target::Unix(path.clone()),
        }
    }

    /// Accepts a connection and starts a task answering it (see [`echo_once`]).
    fn accept_and_answer(&self, closed: Arc<AtomicUsize>) -> thread::JoinHandle<()> {
        const WHY: &str = "accept does not fail at EMFILE: it backs off and retries";
        match self {
            Listener::Tcp(l) => {
                let (s, _) = l.accept().expect(WHY);
                thread::spawn(move || echo_once(s, &closed))
            }
            Listener::Unix(l, _) => {
                let (s, _) = l.accept().expect(WHY);
                thread::spawn(move || echo_once(s, &closed))
            }
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Listener::Unix(_, path) = self {
            let _ = std::fs::remove_file(path);
        }
    }
}

impl Target {
    /// A socket for a client, made before the descriptor table is filled.
    fn socket(&self) -> OwnedFd {
        match self {
            Target::Tcp(_) => raw_tcp_socket(),
            Target::Unix(_) => raw_unix_socket(),
        }
    }

    /// One client of the storm, on a plain thread: connects `fd` (made by [`Target::socket`]
    /// before the descriptor table was filled), sends `tag`.
    fn storm_client(&self, fd: OwnedFd, tag: u8) -> Box<dyn ClientStream> {
        let mut s: Box<dyn ClientStream> = match self {
            Target::Tcp(addr) => {
                connect_raw(&fd, *addr).expect("connect into the backlog");
                let s = std::net::TcpStream::from(fd);
                s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                Box::new(s)
            }
            Target::Unix(path) => {
                connect_unix_raw(&fd, path).expect("connect into the backlog");
                let s = std::os::unix::net::UnixStream::from(fd);
                s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                Box::new(s)
            }
        };
        s.write_all(&[tag]).unwrap();
        s
    }

    /// A client connecting with a socket made now, sending `tag`.
    fn client(&self, tag: u8) -> Box<dyn ClientStream> {
        let mut s: Box<dyn ClientStream> = match self {
            Target::Tcp(addr) => {
                let s = std::net::TcpStream::connect(addr).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                Box::new(s)
            }
            Target::Unix(path) => {
                let s = std::os::unix::net::UnixStream::connect(path).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                Box::new(s)
            }
        };
        s.write_all(&[tag]).unwrap();
        s
    }
}

/// Reads back each client's tag.
fn expect_answers(streams: Vec<Box<dyn ClientStream>>, answered: &AtomicUsize) {
    for (i, mut s) in streams.into_iter().enumerate() {
        let mut b = [0u8; 1];
        s.read_exact(&mut b).expect("a pending client is answered");
        assert_eq!(b[0], i as u8);
        answered.fetch_add(1, Ordering::SeqCst);
    }
}

/// The child body of the storm on a listener of `kind`: `cycles` times, fills the descriptor
/// table, lets `clients` clients connect, holds the table full for a while, frees it; every
/// client is answered, then a last wave connects normally. Prints its figures.
fn storm_child(kind: &str, cycles: u64, clients: usize) {
    lower_nofile(128 + 3 * clients as u64);
    let kind = kind.to_owned();
    bobine::Builder::new().domains(2).run(move || {
        let listener = Listener::bind(&kind);
        let target = listener.target();
        let total = (cycles as usize + 1) * clients;
        let accepted = Arc::new(AtomicUsize::new(0));
        let closed = Arc::new(AtomicUsize::new(0));
        let (acc, clo) = (accepted.clone(), closed.clone());
        let server = thread::spawn(move || {
            let handlers: Vec<_> = (0..total)
                .map(|_| {
                    let h = listener.accept_and_answer(clo.clone());
                    acc.fetch_add(1, Ordering::SeqCst);
                    h
                })
                .collect();
            for h in handlers {
                h.join().unwrap();
            }
        });
        let mut worst = (0, 0);
        for cycle in 0..cycles {
            // The last storm's connections closed on both sides: the table stays full once
            // filled, nothing in this process closes a descriptor until the hog is dropped.
            assert!(
                wait_for(Duration::from_secs(20), || closed.load(Ordering::SeqCst)
                    == accepted.load(Ordering::SeqCst)),
                "cycle {cycle}: the last storm's connections were not all closed"
            );
            let socks: Vec<OwnedFd> = (0..clients).map(|_| target.socket()).collect();
            let before = accepted.load(Ordering::SeqCst);
            let emfile_before = ACCEPT_EMFILE.load(Ordering::SeqCst);
            let hog = exhaust_descriptors();
            let t0 = Instant::now();
            let (connected_tx, connected) = mpsc::channel();
            let answered = Arc::new(AtomicUsize::new(0));
            let (ans, tgt) = (answered.clone(), target.clone());
            let client_thread = std::thread::spawn(move || {
                let streams: Vec<_> = socks
                    .into_iter()
                    .enumerate()
                    .map(|(i, fd)| tgt.storm_client(fd, i as u8))
                    .collect();
                connected_tx.send(()).unwrap();
                expect_answers(streams, &ans);
            });
            bobine::io::unblock(move || connected.recv().unwrap());
            // Out of descriptors with every client waiting: the server backs off.
            thread::sleep(Duration::from_millis(300));
            let emfile = ACCEPT_EMFILE.load(Ordering::SeqCst) - emfile_before;
            let elapsed = t0.elapsed();
            assert_eq!(
                accepted.load(Ordering::SeqCst),
                before,
                "cycle {cycle}: nothing can be accepted while the table is full"
            );
            assert!(
                emfile >= 1,
                "cycle {cycle}: the server never met EMFILE (the test tests nothing)"
            );
            let allowed = max_emfile_attempts(elapsed);
            assert!(
                emfile <= allowed,
                "cycle {cycle}: {emfile} accept attempts failed with EMFILE in {elapsed:?}; \
                 the back-off allows at most {allowed}: the server busy-loops"
            );
            worst = worst.max((emfile, allowed));
            drop(hog);
            assert!(
                wait_for(Duration::from_secs(20), || answered.load(Ordering::SeqCst)
                    == clients),
                "cycle {cycle}: serving did not resume once descriptors were freed: {} of \
                 {clients} answered",
                answered.load(Ordering::SeqCst)
            );
            bobine::io::unblock(move || client_thread.join()).unwrap();
        }
        // A last wave after the storms, with sockets made now.
        let late = std::thread::spawn(move || {
            let streams = (0..clients).map(|i| target.client(i as u8)).collect();
            expect_answers(streams, &AtomicUsize::new(0));
        });
        bobine::io::unblock(move || late.join()).unwrap();
        server.join().unwrap();
        let ok = ACCEPT_OK.load(Ordering::SeqCst);
        let eagain = ACCEPT_EAGAIN.load(Ordering::SeqCst);
        let emfile = ACCEPT_EMFILE.load(Ordering::SeqCst);
        assert_eq!(
            ok, total as u64,
            "accept4 returned a descriptor once per connection (the counting accept4 is in use)"
        );
        assert_eq!(
            ACCEPT_OTHER.load(Ordering::SeqCst),
            0,
            "no other accept error"
        );
        // Each EAGAIN parks the server until the listener's next readiness edge; a connection
        // arriving makes at most one, and a retry after a back-off may find nothing too.
        let eagain_bound = 2 * total as u64 + emfile + 4;
        assert!(
            eagain <= eagain_bound,
            "{eagain} accept attempts found nothing for {total} connections and {emfile} \
             back-offs (at most {eagain_bound}): the server spins while idle"
        );
        eprintln!(
            "child: {cycles} storms of {clients} clients survived; accept4: {ok} accepted, \
             {eagain} EAGAIN, {emfile} EMFILE (worst storm: {} of {} allowed)",
            worst.0, worst.1
        );
    });
}

/// An `EMFILE` storm survived, on a TCP and on a Unix listener: clients connect while the
/// server's process is out of descriptors (a lowered `RLIMIT_NOFILE`, the table filled); the
/// server neither fails nor busy-loops (its `EMFILE` attempts, counted, stay within the
/// documented back-off), reports the condition once, serves every waiting client as soon as
/// descriptors are freed, storm after storm, and then a last wave.
#[test]
fn reliability_emfile_storm() {
    const NAME: &str = "reliability_emfile_storm";
    let name = &test_path(module_path!(), NAME);
    let (cycles, clients) = (size(2, 20), size(32, 100) as usize);
    if in_child(name) {
        let kind = std::env::var(KIND_ENV).unwrap();
        common::watchdog(limit(30), NAME, || storm_child(&kind, cycles, clients));
        return;
    }
    common::watchdog(2 * limit(30) + 20, NAME, || {
        for kind in ["tcp", "unix"] {
            let (out, killed) = common::child::run_within(
                name,
                &[(CHILD_ENV, name), (KIND_ENV, kind), ("RUST_BACKTRACE", "0")],
                Duration::from_secs(limit(30) + 10),
            );
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(!killed, "{kind}: the child hung\n{stderr}");
            common::child::assert_ok(name, &out);
            assert!(
                stderr.contains(&format!(
                    "child: {cycles} storms of {clients} clients survived"
                )),
                "{kind}: {stderr}"
            );
            let reports = stderr
                .lines()
                .filter(|l| l.contains("bobine: accept on") && l.contains("Too many open files"))
                .count();
            assert_eq!(
                reports, 1,
                "{kind}: the condition is reported once:\n{stderr}"
            );
            let figures = stderr.lines().find(|l| l.starts_with("child:")).unwrap();
            eprintln!("{kind}: {figures}");
        }
    });
}

/// What a client asks of the server's handler, as its first four bytes.
const ECHO: &[u8; 4] = b"echo";
const RESET: &[u8; 4] = b"rset";
const HALF: &[u8; 4] = b"half";
const VANISH: &[u8; 4] = b"vani";
const BIG: &[u8; 4] = b"bigw";

/// What a handler saw: its kind and the error (or end of file) that reached it.
#[derive(Debug, PartialEq)]
enum Outcome {
    /// The echo connection ended normally after this many round trips.
    Echoed(u64),
    /// The read after the peer's reset failed with this.
    ResetRead(io::ErrorKind),
    /// The half-closed request arrived whole, and the reply was written.
    HalfClosed(Vec<u8>),
    /// End of file, then a write failed with this.
    Vanished(io::ErrorKind),
    /// A long write to a peer that reset failed with this.
    ResetWrite(io::ErrorKind),
}

/// The server's handler of one connection: reads the client's request kind, plays its part,
/// and reports what reached it.
fn handle(s: TcpStream) -> Outcome {
    let mut kind = [0u8; 4];
    (&s).read_exact(&mut kind).unwrap();
    match &kind {
        ECHO => {
            let mut n = 0;
            let mut b = [0u8; 8];
            loop {
                match (&s).read_exact(&mut b) {
                    Ok(()) => {
                        (&s).write_all(&b).unwrap();
                        n += 1;
                    }
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                        return Outcome::Echoed(n);
                    }
                    Err(e) => panic!("the healthy connection failed: {e}"),
                }
            }
        }
        RESET => {
            (&s).write_all(RESET).unwrap();
            let mut b = [0u8; 16];
            match (&s).read(&mut b) {
                Ok(n) => panic!("read {n} bytes after the peer's reset"),
                Err(e) => Outcome::ResetRead(e.kind()),
            }
        }
        HALF => {
            let mut got = Vec::new();
            (&s).read_to_end(&mut got).unwrap();
            (&s).write_all(b"reply after EOF").unwrap();
            Outcome::HalfClosed(got)
        }
        VANISH => {
            (&s).write_all(b"ok").unwrap();
            let mut b = [0u8; 16];
            assert_eq!(
                (&s).read(&mut b).unwrap(),
                0,
                "end of file from a vanished peer"
            );
            for _ in 0..2000 {
                if let Err(e) = (&s).write(b"anyone there?") {
                    return Outcome::Vanished(e.kind());
                }
                thread::sleep(Duration::from_millis(1));
            }
            panic!("writes to a vanished peer never failed");
        }
        BIG => {
            let chunk = vec![7u8; 64 << 10];
            for _ in 0..1024 {
                if let Err(e) = (&s).write_all(&chunk) {
                    return Outcome::ResetWrite(e.kind());
                }
            }
            panic!("64 MiB written to a peer that reset");
        }
        other => panic!("unknown request {other:?}"),
    }
}

/// A client of kind `kind` (not [`ECHO`]) that misbehaves in its way.
fn bad_client(addr: SocketAddr, kind: &'static [u8; 4]) {
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    c.write_all(kind).unwrap();
    match kind {
        RESET => {
            let mut b = [0u8; 4];
            c.read_exact(&mut b).unwrap(); // the handler now waits in read
            set_linger_zero(c.as_raw_fd());
        }
        HALF => {
            c.write_all(b"the request").unwrap();
            c.shutdown(Shutdown::Write).unwrap();
            let mut reply = Vec::new();
            c.read_to_end(&mut reply).unwrap();
            assert_eq!(reply, b"reply after EOF");
        }
        VANISH => {
            let mut b = [0u8; 2];
            c.read_exact(&mut b).unwrap(); // the handler now waits in read
        }
        BIG => {
            let mut b = vec![0u8; 64 << 10];
            c.read_exact(&mut b).unwrap(); // the handler is writing
            set_linger_zero(c.as_raw_fd());
        }
        _ => unreachable!(),
    }
}

/// Peers that reset, half-close or vanish, round after round, on a server whose handlers run
/// on two domains: each error (or end of file) reaches the task that owns that socket and is
/// the documented one (`ConnectionReset` on a read after a reset; end of file then
/// `BrokenPipe`/`ConnectionReset` on writing to a vanished peer; `ConnectionReset`/`BrokenPipe`
/// on a long write to a peer that reset; the whole request and a reply after a half-close),
/// while a healthy connection served on the same runtime answers a round trip after every fault.
#[test]
fn reliability_peer_resets_contained() {
    let rounds = size(20, 500);
    common::watchdog(limit(60), "reliability_peer_resets_contained", || {
        bobine::Builder::new().domains(2).run(move || {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let (out_tx, outcomes) = bobine::sync::mpsc::channel::<Outcome>();
            let server = thread::spawn(move || {
                for _ in 0..1 + 4 * rounds {
                    let (s, _) = listener.accept().unwrap();
                    let out_tx = out_tx.clone();
                    drop(thread::spawn(move || out_tx.send(handle(s)).unwrap()));
                }
            });
            let mut healthy = TcpStream::connect(addr).unwrap();
            healthy.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            healthy.write_all(ECHO).unwrap();
            let mut ping = |i: u64| {
                healthy.write_all(&i.to_le_bytes()).unwrap();
                let mut b = [0u8; 8];
                healthy.read_exact(&mut b).unwrap();
                assert_eq!(u64::from_le_bytes(b), i, "the healthy connection's echo");
            };
            let mut pings = 0;
            let mut seen = [0u64; 4];
            for _ in 0..rounds {
                for kind in [RESET, HALF, VANISH, BIG] {
                    thread::spawn(move || bad_client(addr, kind)).join().unwrap();
                    ping(pings);
                    pings += 1;
                }
                for _ in 0..4 {
                    let i = match outcomes.recv().unwrap() {
                        Outcome::ResetRead(k) => {
                            assert_eq!(k, io::ErrorKind::ConnectionReset, "a read after a reset");
                            0
                        }
                        Outcome::HalfClosed(got) => {
                            assert_eq!(got, b"the request", "the half-closed request");
                            1
                        }
                        Outcome::Vanished(k) => {
                            assert!(
                                matches!(
                                    k,
                                    io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
                                ),
                                "a write to a vanished peer: {k:?}"
                            );
                            2
                        }
                        Outcome::ResetWrite(k) => {
                            assert!(
                                matches!(
                                    k,
                                    io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
                                ),
                                "a long write to a peer that reset: {k:?}"
                            );
                            3
                        }
                        Outcome::Echoed(n) => panic!("the healthy connection ended after {n}"),
                    };
                    seen[i] += 1;
                }
            }
            assert_eq!(seen, [rounds; 4], "one outcome per faulty connection, each of its kind");
            healthy.shutdown(Shutdown::Write).unwrap();
            assert_eq!(outcomes.recv().unwrap(), Outcome::Echoed(pings));
            server.join().unwrap();
            eprintln!(
                "peer faults: {rounds} rounds of reset, half-close, vanish and reset-while-writing; \
                 {pings} healthy round trips between them"
            );
        });
    });
}
