//! Miou_unix's names (the Unix layer of Miou, `lib/miou_unix.mli`): TCP sockets whose
//! blocking calls park the calling task, never its domain, and [`sleep`]. [`ownership`] gives
//! the same names over sockets that are Miou resources (Miou_unix's `Ownership`).
//!
//! A [`FileDescr`] is a non-blocking, close-on-exec socket built on `bobine::net`'s socket
//! core: an operation is tried first; on `EAGAIN` the task parks until the epoll of the
//! domain running it reports the socket ready (registered once, edge-triggered, the first
//! time a task waits on it), then tries again; `EINTR` is retried. On a plain OS thread,
//! outside any runtime, the same calls block that thread in `poll(2)`. A task cancelled
//! ([`cancel`](super::cancel)) while it is blocked in [`accept`], [`connect`], [`read`],
//! [`really_read`], [`write`](fn@write) or [`sleep`] unwinds from there, so the sockets it holds are
//! dropped, hence closed.
//!
//! This module owns only the names and Miou's argument checks; the syscalls and the waiting
//! are `net`'s (`net::Handle`, `net::accept`, `net::listen_reuseport`). It must not touch the
//! reactor or the scheduler.
//!
//! ## Errors: `io::Result`, not `Unix_error`
//!
//! Miou_unix raises `Unix.Unix_error` when a syscall fails and `End_of_file` when
//! [`really_read`] meets the end of the stream. Here those are values: every call that makes
//! a syscall returns [`std::io::Result`], the type every Rust I/O caller already handles (and
//! `?` propagates), with the OS error inside (`raw_os_error()` is the errno OCaml would
//! name); `End_of_file` is an error of kind [`io::ErrorKind::UnexpectedEof`]. What stays a
//! panic is what Miou raises for a programming error, `Invalid_argument`: an `off`/`len`
//! outside the buffer panics with `Invalid_argument("Miou_unix.read")` (resp.
//! `"Miou_unix.write"`, `"Miou_unix.really_read"`), and [`sleep`] of a negative or
//! non-finite duration with `Invalid_argument("Miou_unix.sleep")`; the message then says
//! what was wrong. Rejected: panicking with the OS error, as OCaml raises. A port would read
//! closer to the original, but a Rust caller could not handle a reset connection without
//! `catch_unwind`, and a panic in a Miou task is its outcome, not a value it can look at.
//!
//! ## Differences from Miou_unix
//!
//! - Rust has no optional arguments: `off` and `len` are always given (Miou's defaults are
//!   `0` and the rest of the buffer: pass `0, buf.len()`), and the backlog of
//!   [`bind_and_listen`] (Miou's `?backlog`, 64) has its own function,
//!   [`bind_and_listen_with_backlog`]. `SO_REUSEADDR` and `SO_REUSEPORT` are always set
//!   (Miou's defaults), so several listeners (one per domain) can share a port.
//! - [`close`] takes the descriptor by value: using or closing it again does not compile,
//!   and dropping a [`FileDescr`] closes it.
//! - [`accept`] always makes the new socket close-on-exec (Miou's `?cloexec`); when the
//!   process is out of descriptors (`EMFILE`/`ENFILE`) it reports it once and backs off
//!   until descriptors are freed, as `bobine::net::TcpListener::accept` does.
//! - [`write`](fn@write) uses `send(2)` with `MSG_NOSIGNAL`: a peer that has gone gives
//!   `BrokenPipe`, never `SIGPIPE`.
//! - [`sleep`] of a negative or non-finite duration panics (Miou wakes such a sleeper at
//!   once); a finite duration too long for the clock sleeps for ever.
//!
//! ## Example
//!
//! A loopback echo: a server task accepts one connection and echoes it until the end of the
//! stream; the main task sends a message and reads it back.
//!
//! ```
//! use bobine::miou::{self, unix};
//! miou::run_with(1, || {
//!     let listener = unix::tcpv4().unwrap();
//!     unix::bind_and_listen(&listener, "127.0.0.1:0".parse().unwrap()).unwrap();
//!     let addr = listener.local_addr().unwrap();
//!     let server = miou::call(move || {
//!         let (client, _peer) = unix::accept(&listener).unwrap();
//!         let mut buf = [0; 64];
//!         loop {
//!             let n = unix::read(&client, &mut buf, 0, 64).unwrap();
//!             if n == 0 {
//!                 break; // the end of the stream
//!             }
//!             unix::write(&client, &buf, 0, n).unwrap();
//!         }
//!         unix::close(client).unwrap();
//!         unix::close(listener).unwrap();
//!     });
//!     let c = unix::tcpv4().unwrap();
//!     unix::connect(&c, addr).unwrap();
//!     unix::write(&c, b"hello", 0, 5).unwrap();
//!     let mut back = [0; 5];
//!     unix::really_read(&c, &mut back, 0, 5).unwrap();
//!     assert_eq!(&back, b"hello");
//!     unix::close(c).unwrap();
//!     miou::await_exn(server);
//! });
//! ```

pub mod ownership;

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::sys::socket::{self as sock, AddressFamily, SockFlag, SockType, SockaddrStorage, sockopt};

use crate::net::{Handle, TimedOut};
use crate::sched::reactor::Dir;

/// Miou's default backlog for [`bind_and_listen`].
const DEFAULT_BACKLOG: u32 = 64;

/// A socket for Miou_unix's calls (Miou_unix's `file_descr`): non-blocking and close-on-exec,
/// registered with the reactor of the domain whose task first waits on it. Closed by
/// [`close`] or when dropped.
///
/// One `FileDescr` may be shared by several tasks (in an `Arc` or an `Rc`), say one reading
/// and one writing; the calls take it by reference.
pub struct FileDescr {
    h: Handle<OwnedFd>,
    /// `EMFILE`/`ENFILE` was reported already by [`accept`] on this socket.
    reported: AtomicBool,
}

impl FileDescr {
    fn wrap(fd: OwnedFd) -> FileDescr {
        FileDescr {
            h: Handle::from_nonblocking(fd),
            reported: AtomicBool::new(false),
        }
    }

    /// The address the socket is bound to (`getsockname(2)`).
    ///
    /// # Errors
    ///
    /// As `getsockname(2)`; `InvalidInput` if the socket is not an Internet socket.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        to_std(sock::getsockname::<SockaddrStorage>(self.as_raw_fd())?)
    }

    /// The address of the peer (`getpeername(2)`).
    ///
    /// # Errors
    ///
    /// `NotConnected` when the socket is not connected; as `getpeername(2)` otherwise.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        to_std(sock::getpeername::<SockaddrStorage>(self.as_raw_fd())?)
    }
}

impl AsRawFd for FileDescr {
    fn as_raw_fd(&self) -> RawFd {
        self.h.get().as_raw_fd()
    }
}

impl AsFd for FileDescr {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.h.get().as_fd()
    }
}

impl From<FileDescr> for OwnedFd {
    /// The descriptor, still non-blocking (Miou_unix's `to_file_descr`, taking it over).
    fn from(fd: FileDescr) -> OwnedFd {
        fd.h.into_inner()
    }
}

impl std::fmt::Debug for FileDescr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileDescr")
            .field("fd", &self.as_raw_fd())
            .field("addr", &self.local_addr().ok())
            .field("peer", &self.peer_addr().ok())
            .finish()
    }
}

/// A `SocketAddr` from the kernel's address of an Internet socket.
fn to_std(a: SockaddrStorage) -> io::Result<SocketAddr> {
    if let Some(v4) = a.as_sockaddr_in() {
        Ok(SocketAddr::from(*v4))
    } else if let Some(v6) = a.as_sockaddr_in6() {
        Ok(SocketAddr::from(*v6))
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not an Internet socket address",
        ))
    }
}

/// Makes a [`FileDescr`] of a descriptor (Miou_unix's `of_file_descr`), switching it to
/// non-blocking mode. Meant for sockets (a socket pair, one inherited from a parent
/// process); Miou_unix's calls on it then park the task as on one from [`tcpv4`].
///
/// # Errors
///
/// If the descriptor's mode cannot be read or changed (`fcntl(2)`).
pub fn of_file_descr(fd: OwnedFd) -> io::Result<FileDescr> {
    let flags = OFlag::from_bits_retain(fcntl(&fd, FcntlArg::F_GETFL)?);
    fcntl(&fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    Ok(FileDescr::wrap(fd))
}

/// A new TCP/IPv4 socket (Miou_unix's `tcpv4`), non-blocking and close-on-exec.
///
/// # Errors
///
/// As `socket(2)` (`EMFILE` when the process is out of descriptors, ...).
pub fn tcpv4() -> io::Result<FileDescr> {
    stream(AddressFamily::Inet)
}

/// A new TCP/IPv6 socket (Miou_unix's `tcpv6`), non-blocking and close-on-exec.
///
/// # Errors
///
/// As [`tcpv4`].
pub fn tcpv6() -> io::Result<FileDescr> {
    stream(AddressFamily::Inet6)
}

fn stream(family: AddressFamily) -> io::Result<FileDescr> {
    let fd = sock::socket(
        family,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    Ok(FileDescr::wrap(fd))
}

/// Binds `fd` to `addr` and makes it listen, with Miou's default backlog of 64 (Miou_unix's
/// `bind_and_listen`). `SO_REUSEADDR` and `SO_REUSEPORT` are set first: several listeners
/// (one per domain, say) may share the port, and the kernel spreads connections over them.
///
/// # Errors
///
/// As `bind(2)` and `listen(2)`: `AddrInUse`, `InvalidInput` for an address of the other
/// family, ...
pub fn bind_and_listen(fd: &FileDescr, addr: SocketAddr) -> io::Result<()> {
    bind_and_listen_with_backlog(fd, addr, DEFAULT_BACKLOG)
}

/// [`bind_and_listen`] with the length of the queue of pending connections (Miou's
/// `?backlog`); the kernel caps it at `net.core.somaxconn`.
///
/// # Errors
///
/// As [`bind_and_listen`].
pub fn bind_and_listen_with_backlog(
    fd: &FileDescr,
    addr: SocketAddr,
    backlog: u32,
) -> io::Result<()> {
    let backlog = i32::try_from(backlog).unwrap_or(i32::MAX);
    crate::net::listen_reuseport(fd.as_fd(), addr, backlog)
}

/// Accepts a connection on the listening socket `fd`, parking until one arrives (Miou_unix's
/// `accept`); the new socket is non-blocking and close-on-exec. Returns it with the peer's
/// address.
///
/// # Errors
///
/// As `accept4(2)`, except that `ECONNABORTED` (a connection reset before it was accepted)
/// is retried, and `EMFILE`/`ENFILE` are reported once on standard error and retried after a
/// back-off (1 ms, doubling to 256 ms) until descriptors are freed.
#[track_caller]
pub fn accept(fd: &FileDescr) -> io::Result<(FileDescr, SocketAddr)> {
    let (new, peer) = crate::net::accept(&fd.h, &fd.reported, "Miou_unix.accept")?;
    Ok((FileDescr::wrap(new), peer))
}

/// Connects `fd` to `addr`, parking while the connection is being made (Miou_unix's
/// `connect`).
///
/// # Errors
///
/// The connection's error: `ConnectionRefused`, an unreachable network, ...
#[track_caller]
pub fn connect(fd: &FileDescr, addr: SocketAddr) -> io::Result<()> {
    let to = SockaddrStorage::from(addr);
    match sock::connect(fd.as_raw_fd(), &to) {
        Ok(()) => return Ok(()),
        // Interrupted, the connection goes on in the background (POSIX): wait for it as for
        // one in progress.
        Err(Errno::EINPROGRESS | Errno::EINTR) => {}
        Err(e) => return Err(e.into()),
    }
    match fd.h.wait_ready(Dir::Write, None, "Miou_unix.connect") {
        Ok(()) => {}
        Err(TimedOut::No(e)) => return Err(e),
        Err(TimedOut::Yes) => unreachable!("a wait without a deadline does not time out"),
    }
    match sock::getsockopt(&fd.as_fd(), sockopt::SocketError)? {
        0 => Ok(()),
        errno => Err(io::Error::from_raw_os_error(errno)),
    }
}

/// Panics with `Invalid_argument(what)` unless `off` and `len` designate a range of a buffer
/// of `size` bytes (Miou's check).
#[track_caller]
fn check_range(what: &str, size: usize, off: usize, len: usize) {
    if off > size || len > size - off {
        panic!(
            "Invalid_argument(\"{what}\"): off {off} and len {len} do not designate a valid \
             range of a buffer of {size} bytes"
        );
    }
}

/// Reads up to `len` bytes from `fd` into `buf[off..off + len]`, parking until some are
/// there, and returns how many were read: 0 means the end of the stream (or `len` was 0)
/// (Miou_unix's `read`).
///
/// # Panics
///
/// With `Invalid_argument("Miou_unix.read")` if `off` and `len` do not designate a range of
/// `buf`.
///
/// # Errors
///
/// As `read(2)`: `ConnectionReset`, `NotConnected`, ...
#[track_caller]
pub fn read(fd: &FileDescr, buf: &mut [u8], off: usize, len: usize) -> io::Result<usize> {
    check_range("Miou_unix.read", buf.len(), off, len);
    read_in(fd, &mut buf[off..off + len])
}

/// One read into `dst`, parking until something is there.
#[track_caller]
fn read_in(fd: &FileDescr, dst: &mut [u8]) -> io::Result<usize> {
    let len = dst.len();
    fd.h.op_stream(Dir::Read, "Miou_unix.read", len, |o| {
        Ok(nix::unistd::read(o, &mut *dst)?)
    })
}

/// Reads exactly `len` bytes from `fd` into `buf[off..off + len]`, parking as often as needed
/// (Miou_unix's `really_read`). With `len` 0 it does nothing.
///
/// # Panics
///
/// With `Invalid_argument("Miou_unix.really_read")` if `off` and `len` do not designate a
/// range of `buf`.
///
/// # Errors
///
/// `UnexpectedEof` (Miou's `End_of_file`) if the stream ends first; the bytes read until then
/// are in `buf`. As `read(2)` otherwise.
#[track_caller]
pub fn really_read(fd: &FileDescr, buf: &mut [u8], off: usize, len: usize) -> io::Result<()> {
    check_range("Miou_unix.really_read", buf.len(), off, len);
    let mut done = 0;
    while done < len {
        match read_in(fd, &mut buf[off + done..off + len])? {
            0 => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "End_of_file: Miou_unix.really_read: the stream ended after {done} of \
                         {len} bytes"
                    ),
                ));
            }
            n => done += n,
        }
    }
    Ok(())
}

/// Writes all of `buf[off..off + len]` to `fd`, parking whenever the socket's buffer is full
/// (Miou_unix's `write`, which writes everything). A peer that has gone gives `BrokenPipe`,
/// never `SIGPIPE`.
///
/// # Panics
///
/// With `Invalid_argument("Miou_unix.write")` if `off` and `len` do not designate a range of
/// `buf`.
///
/// # Errors
///
/// As `send(2)`: `BrokenPipe`, `ConnectionReset`, ... Part of the bytes may have been sent
/// before the error.
#[track_caller]
pub fn write(fd: &FileDescr, buf: &[u8], off: usize, len: usize) -> io::Result<()> {
    check_range("Miou_unix.write", buf.len(), off, len);
    let mut rest = &buf[off..off + len];
    while !rest.is_empty() {
        let raw = fd.as_raw_fd();
        let n =
            fd.h.op_stream(Dir::Write, "Miou_unix.write", rest.len(), |_| {
                crate::net::send(raw, rest)
            })?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        rest = &rest[n..];
    }
    Ok(())
}

/// Closes `fd` (Miou_unix's `close`). Dropping a [`FileDescr`] closes it too; `close`
/// reports the error of `close(2)`, if any. Tasks waiting on the descriptor through
/// [`crate::io::wait_readable`] or [`crate::io::wait_writable`] wake with `EBADF`.
///
/// # Errors
///
/// As `close(2)`; the descriptor is closed even then.
pub fn close(fd: FileDescr) -> io::Result<()> {
    Ok(nix::unistd::close(OwnedFd::from(fd))?)
}

/// Suspends the calling task for `secs` seconds (Miou_unix's `sleep`); its domain runs other
/// tasks meanwhile. On a plain OS thread it sleeps the thread. A cancelled task unwinds from
/// it.
///
/// # Panics
///
/// With `Invalid_argument("Miou_unix.sleep")` if `secs` is negative, NaN or infinite.
#[track_caller]
pub fn sleep(secs: f64) {
    if !secs.is_finite() || secs < 0.0 {
        panic!(
            "Invalid_argument(\"Miou_unix.sleep\"): the duration must be a finite number of \
             seconds, 0 or more (got {secs})"
        );
    }
    // Too long for a `Duration`: for ever, as far as the clock can tell.
    crate::time::sleep(Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX));
}
