//! TCP: [`TcpListener`] and [`TcpStream`], with std's signatures.

use std::io;
use std::net::{Shutdown, SocketAddr, ToSocketAddrs};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nix::sys::socket::{self as sock, SockFlag, SockType, SockaddrStorage, sockopt};

use super::addr::{RawAddr, domain_of, each_addr};
use super::handle::{Handle, TimedOut};
use crate::sched::reactor::Dir;
use crate::util::syscall;

/// A TCP socket server, listening for connections: `std::net::TcpListener` for tasks.
///
/// `accept` parks the calling task until a connection arrives (a plain OS thread blocks).
/// When the process runs out of descriptors (`EMFILE`/`ENFILE`), `accept` does not fail and
/// does not spin: it reports the condition once on standard error, backs off (sleeping
/// 1 ms, doubling to 256 ms) and tries again, so serving resumes as soon as descriptors are
/// freed. In non-blocking mode the error is returned at once instead, as std does.
///
/// ```
/// use std::io::{Read, Write};
/// use bobine::net::{TcpListener, TcpStream};
/// bobine::run(|| {
///     let listener = TcpListener::bind("127.0.0.1:0").unwrap();
///     let addr = listener.local_addr().unwrap();
///     let server = bobine::thread::spawn(move || {
///         let (mut s, _) = listener.accept().unwrap();
///         let mut buf = [0; 5];
///         s.read_exact(&mut buf).unwrap();
///         s.write_all(&buf).unwrap();
///     });
///     let mut c = TcpStream::connect(addr).unwrap();
///     c.write_all(b"hello").unwrap();
///     let mut back = [0; 5];
///     c.read_exact(&mut back).unwrap();
///     assert_eq!(&back, b"hello");
///     server.join().unwrap();
/// });
/// ```
pub struct TcpListener {
    h: Handle<std::net::TcpListener>,
    /// `EMFILE`/`ENFILE` was reported already.
    reported: AtomicBool,
}

/// The first back-off after `EMFILE`/`ENFILE`; doubled up to [`ACCEPT_BACKOFF_MAX`].
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(1);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_millis(256);

impl TcpListener {
    fn wrap(h: Handle<std::net::TcpListener>) -> TcpListener {
        TcpListener {
            h,
            reported: AtomicBool::new(false),
        }
    }

    /// Binds a listener to `addr` (the first address that works), like std: `SO_REUSEADDR` is
    /// set, the backlog is 128. A host name is resolved on the blocking pool while the task
    /// parks ([`lookup_host`](super::lookup_host)); a literal address is parsed in place.
    ///
    /// # Errors
    ///
    /// As `std::net::TcpListener::bind`.
    #[track_caller]
    pub fn bind<A: ToSocketAddrs>(addr: A) -> io::Result<TcpListener> {
        Self::from_std(each_addr(addr, |a| std::net::TcpListener::bind(a))?)
    }

    /// Binds to `addr` with `SO_REUSEPORT` set as well, so that several listeners (one per
    /// domain, say) share the port and the kernel spreads connections among them.
    ///
    /// # Errors
    ///
    /// As [`TcpListener::bind`].
    pub fn bind_reuseport(addr: SocketAddr, backlog: i32) -> io::Result<TcpListener> {
        let fd = socket(&addr, SockType::Stream)?;
        listen_reuseport(fd.as_fd(), addr, backlog)?;
        Ok(TcpListener {
            h: Handle::from_nonblocking(std::net::TcpListener::from(fd)),
            reported: AtomicBool::new(false),
        })
    }

    /// Accepts a connection, parking until one arrives.
    ///
    /// # Errors
    ///
    /// As `std::net::TcpListener::accept`, except `EMFILE`/`ENFILE` (see the type's doc) and
    /// `ECONNABORTED` (a connection reset before it was accepted), which are retried. In
    /// non-blocking mode, `WouldBlock` when no connection is pending.
    #[track_caller]
    pub fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        let (fd, peer) = accept(&self.h, &self.reported, "TcpListener::accept")?;
        let stream = TcpStream {
            h: Handle::from_nonblocking(std::net::TcpStream::from(fd)),
        };
        Ok((stream, peer))
    }

    /// An endless iterator over incoming connections (`accept` in a loop).
    pub fn incoming(&self) -> Incoming<'_> {
        Incoming { listener: self }
    }

    /// The address the listener is bound to.
    ///
    /// # Errors
    ///
    /// As `std::net::TcpListener::local_addr`.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.h.get().local_addr()
    }

    /// Sets `IP_TTL`.
    ///
    /// # Errors
    ///
    /// As std.
    pub fn set_ttl(&self, ttl: u32) -> io::Result<()> {
        self.h.get().set_ttl(ttl)
    }

    /// Reads `IP_TTL`.
    ///
    /// # Errors
    ///
    /// As std.
    pub fn ttl(&self) -> io::Result<u32> {
        self.h.get().ttl()
    }
}

impl std::fmt::Debug for TcpListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpListener")
            .field("addr", &self.local_addr().ok())
            .field("fd", &self.as_raw_fd())
            .finish()
    }
}

/// The iterator of [`TcpListener::incoming`]; it never returns `None`.
#[derive(Debug)]
pub struct Incoming<'a> {
    listener: &'a TcpListener,
}

impl Iterator for Incoming<'_> {
    type Item = io::Result<TcpStream>;
    fn next(&mut self) -> Option<io::Result<TcpStream>> {
        Some(self.listener.accept().map(|(s, _)| s))
    }
}

/// A TCP connection: `std::net::TcpStream` for tasks. Reads and writes park the calling task
/// until the socket is ready (a plain OS thread blocks in `poll(2)`); timeouts set with
/// [`TcpStream::set_read_timeout`] / [`TcpStream::set_write_timeout`] end such a wait with
/// `WouldBlock`, as std's do. Writes never raise `SIGPIPE`: a closed peer gives `BrokenPipe`.
pub struct TcpStream {
    h: Handle<std::net::TcpStream>,
}

impl TcpStream {
    fn wrap(h: Handle<std::net::TcpStream>) -> TcpStream {
        TcpStream { h }
    }

    /// Connects to `addr`, trying each resolved address in turn, parking while the connection
    /// is being made.
    ///
    /// A host name (`"localhost:80"`, `("example.org", 443)`) is resolved on the blocking pool
    /// while the task parks, so a slow lookup does not hold up the domain
    /// ([`lookup_host`](super::lookup_host)); a literal address is parsed in place.
    ///
    /// # Errors
    ///
    /// The last address's error: `ConnectionRefused`, unreachable networks, and so on.
    #[track_caller]
    pub fn connect<A: ToSocketAddrs>(addr: A) -> io::Result<TcpStream> {
        each_addr(addr, |a| Self::connect_until(a, None))
    }

    /// Connects to `addr`, giving up with `TimedOut` after `timeout`.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for a zero timeout (as std); `TimedOut`; the connection's error.
    #[track_caller]
    pub fn connect_timeout(addr: &SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
        if timeout.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "cannot set a 0 duration timeout",
            ));
        }
        Self::connect_until(addr, Some(Instant::now() + timeout))
    }

    #[track_caller]
    fn connect_until(addr: &SocketAddr, deadline: Option<Instant>) -> io::Result<TcpStream> {
        let fd = socket(addr, SockType::Stream)?;
        let to = SockaddrStorage::from(*addr);
        let started = loop {
            match sock::connect(fd.as_raw_fd(), &to).map_err(io::Error::from) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => break r,
            }
        };
        let stream = TcpStream {
            h: Handle::from_nonblocking(std::net::TcpStream::from(fd)),
        };
        match started {
            Ok(_) => return Ok(stream),
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
            Err(e) => return Err(e),
        }
        match stream
            .h
            .wait_ready(Dir::Write, deadline, "TcpStream::connect")
        {
            Ok(()) => {}
            Err(TimedOut::Yes) => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "connection timed out",
                ));
            }
            Err(TimedOut::No(e)) => return Err(e),
        }
        match stream.h.get().take_error()? {
            Some(e) => Err(e),
            None => Ok(stream),
        }
    }

    /// The remote address.
    ///
    /// # Errors
    ///
    /// As std (`NotConnected`, …).
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.h.get().peer_addr()
    }

    /// The local address.
    ///
    /// # Errors
    ///
    /// As std.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.h.get().local_addr()
    }

    /// Shuts down the read half, the write half or both; a task blocked reading this socket
    /// (through another handle) then sees end of file.
    ///
    /// # Errors
    ///
    /// As std.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.h.get().shutdown(how)
    }

    /// Reads without consuming, parking until data (or end of file) is there.
    ///
    /// # Errors
    ///
    /// As [`std::io::Read::read`].
    #[track_caller]
    pub fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.h.op(Dir::Read, "TcpStream::peek", |s| s.peek(buf))
    }

    /// Sets `TCP_NODELAY`.
    ///
    /// # Errors
    ///
    /// As std.
    pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        self.h.get().set_nodelay(nodelay)
    }

    /// Reads `TCP_NODELAY`.
    ///
    /// # Errors
    ///
    /// As std.
    pub fn nodelay(&self) -> io::Result<bool> {
        self.h.get().nodelay()
    }

    /// Sets `IP_TTL`.
    ///
    /// # Errors
    ///
    /// As std.
    pub fn set_ttl(&self, ttl: u32) -> io::Result<()> {
        self.h.get().set_ttl(ttl)
    }

    /// Reads `IP_TTL`.
    ///
    /// # Errors
    ///
    /// As std.
    pub fn ttl(&self) -> io::Result<u32> {
        self.h.get().ttl()
    }
}

impl std::fmt::Debug for TcpStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpStream")
            .field("addr", &self.local_addr().ok())
            .field("peer", &self.peer_addr().ok())
            .field("fd", &self.as_raw_fd())
            .finish()
    }
}

/// A new non-blocking, close-on-exec socket of `kind` for `addr`'s family.
pub(crate) fn socket(addr: &SocketAddr, kind: SockType) -> io::Result<OwnedFd> {
    Ok(sock::socket(
        domain_of(addr),
        kind,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )?)
}

/// Sets `SO_REUSEADDR` and `SO_REUSEPORT` on `fd`, binds it to `addr` and listens with
/// `backlog`: [`TcpListener::bind_reuseport`], and Miou_unix's `bind_and_listen`.
pub(crate) fn listen_reuseport(
    fd: BorrowedFd<'_>,
    addr: SocketAddr,
    backlog: i32,
) -> io::Result<()> {
    sock::setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    sock::setsockopt(&fd, sockopt::ReusePort, &true)?;
    sock::bind(fd.as_raw_fd(), &SockaddrStorage::from(addr))?;
    // Raw: nix's `Backlog` refuses values above the SOMAXCONN constant, while the kernel
    // takes any value and caps it at `net.core.somaxconn`, which may be set higher.
    // SAFETY: listen(2) on a socket the caller owns; it touches no memory of ours.
    syscall!(listen(fd.as_raw_fd(), backlog))?;
    Ok(())
}

/// Accepts a connection on the listening socket of `h` (non-blocking, close-on-exec), parking
/// until one arrives: [`TcpListener::accept`], and Miou_unix's `accept`. `ECONNABORTED` is
/// retried; `EMFILE`/`ENFILE` are reported once (through `reported`) and retried after a
/// back-off (see [`TcpListener`] and [`AcceptBackoff`]), unless `h` is in non-blocking mode.
#[track_caller]
pub(crate) fn accept<T: AsRawFd>(
    h: &Handle<T>,
    reported: &AtomicBool,
    reason: &'static str,
) -> io::Result<(OwnedFd, SocketAddr)> {
    let mut backoff = AcceptBackoff::new();
    loop {
        let r = h.op(Dir::Read, reason, |l| {
            // Raw: nix's accept4 does not return the peer's address, and asking for it
            // afterwards (getpeername) would cost a second call per connection.
            let mut addr = RawAddr::empty();
            // SAFETY: `addr` has room for any address; the flags make the new descriptor
            // non-blocking and close-on-exec.
            let fd = syscall!(accept4(
                l.as_raw_fd(),
                addr.as_mut_ptr(),
                addr.len_mut(),
                libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC
            ))?;
            // SAFETY: accept4 returned a fresh descriptor that nothing else owns.
            let fd = unsafe { OwnedFd::from_raw_fd(fd) };
            Ok((fd, addr))
        });
        match r {
            Ok((fd, addr)) => return Ok((fd, addr.to_socket_addr()?)),
            Err(e) => backoff.after(e, h, reported)?,
        }
    }
}

/// What an accept loop does with a failed attempt, shared by every listener of `net` (TCP,
/// Unix, Miou_unix's): `ECONNABORTED` (a connection reset before it was accepted) is retried at
/// once; `EMFILE`/`ENFILE` (out of descriptors) are reported once per listener on standard
/// error and retried after a sleep of [`ACCEPT_BACKOFF_MIN`], doubling to
/// [`ACCEPT_BACKOFF_MAX`], so that a listener that stays readable does not make the loop spin
/// and serving resumes once descriptors are freed; in non-blocking mode, and for any other
/// error, the error is the caller's.
pub(crate) struct AcceptBackoff {
    next: Duration,
}

impl AcceptBackoff {
    /// A loop's back-off, before its first failure.
    pub(crate) fn new() -> AcceptBackoff {
        AcceptBackoff {
            next: ACCEPT_BACKOFF_MIN,
        }
    }

    /// Handles the failed attempt `e` on the listener of `h`: `Ok` to try again (after
    /// backing off for `EMFILE`/`ENFILE`), `Err(e)` for the caller.
    pub(crate) fn after<T: AsRawFd>(
        &mut self,
        e: io::Error,
        h: &Handle<T>,
        reported: &AtomicBool,
    ) -> io::Result<()> {
        match e.raw_os_error() {
            Some(libc::ECONNABORTED) => Ok(()),
            Some(libc::EMFILE | libc::ENFILE) if !h.is_nonblocking() => {
                if !reported.swap(true, Ordering::Relaxed) {
                    let at = sock::getsockname::<SockaddrStorage>(h.get().as_raw_fd())
                        .map_or_else(|_| "?".to_string(), |a| a.to_string());
                    eprintln!(
                        "bobine: accept on {at}: {e}; backing off and retrying until \
                         descriptors are freed (reported once)"
                    );
                }
                sleep(self.next);
                self.next = (self.next * 2).min(ACCEPT_BACKOFF_MAX);
                Ok(())
            }
            _ => Err(e),
        }
    }
}

/// Sleeps the task (or the thread, outside any task).
fn sleep(d: Duration) {
    crate::time::sleep(d);
}

socket_common!(TcpListener, std::net::TcpListener);
socket_common!(TcpStream, std::net::TcpStream);
timeouts!(TcpStream);
stream_io!(TcpStream);
