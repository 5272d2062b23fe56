//! Unix-domain datagram sockets: [`UnixDatagram`], with the signatures of
//! `std::os::unix::net::UnixDatagram`.
//!
//! Receiving waits for readiness like every bobine socket. Sending needs more care, because
//! Linux tells a sender that a datagram can be queued only for some of the ways it can fail:
//!
//! - the sender's own buffer is full: the socket is not writable, and becomes so (an epoll
//!   event, a `poll(2)` wake-up) when the receivers consume its datagrams;
//! - the receiver's queue is full (`net.unix.max_dgram_qlen` datagrams) and the socket is
//!   connected to that receiver: the kernel makes the socket not writable and wakes it when
//!   the receiver reads;
//! - the receiver's queue is full and the datagram goes to an address (`send_to` to a socket
//!   it is not connected to): the send fails with `EAGAIN` while the socket stays writable, and
//!   no event will come when the receiver reads.
//!
//! So a send that fails with `EAGAIN`:
//!
//! 1. asks at once (a zero-timeout `poll(2)`) whether the socket is writable;
//! 2. if not, waits for it to become so, as any operation does (the readiness tick was read
//!    before the send, so an event between the two is not lost), then tries again;
//! 3. if it is, the receiver is full and nothing will say when it has room: the task sleeps
//!    (1 ms, doubling to 50 ms, within the write timeout) and tries again, as
//!    [`UnixStream::connect`](super::UnixStream::connect) does for a full backlog.
//!
//! The alternative, waiting for readiness in every case, would park a task for ever (epoll
//! reports no new edge) or spin a plain thread (`poll(2)` returns at once) in the third case.

use std::io;
use std::net::Shutdown;
use std::os::fd::AsRawFd;
use std::os::unix::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::socket::{self as sock, MsgFlags};

use super::handle::{Handle, TimedOut};
use super::unix::from_raw_unix_addr;
use crate::sched::reactor::Dir;
use crate::sched::reactor::poll::ready_now;
use crate::util::syscall;

type Std = std::os::unix::net::UnixDatagram;

/// The first sleep of a send to a full receiver (step 3 of the module doc), and the longest.
const FULL_BACKOFF_MIN: Duration = Duration::from_millis(1);
const FULL_BACKOFF_MAX: Duration = Duration::from_millis(50);

/// A Unix-domain datagram socket: `std::os::unix::net::UnixDatagram` for tasks. Receiving
/// parks the calling task until a datagram arrives; sending parks it while the datagram cannot
/// be queued (a full buffer, or a full receiver: see the module doc of `net::unix_datagram`).
/// A plain OS thread blocks instead. Timeouts end such a wait with `WouldBlock`, as std's do.
///
/// ```
/// use bobine::net::UnixDatagram;
/// bobine::run(|| {
///     let (a, b) = UnixDatagram::pair().unwrap();
///     let receiver = bobine::thread::spawn(move || {
///         let mut buf = [0; 16];
///         let n = b.recv(&mut buf).unwrap();
///         buf[..n].to_vec()
///     });
///     a.send(b"ping").unwrap();
///     assert_eq!(receiver.join().unwrap(), b"ping");
/// });
/// ```
pub struct UnixDatagram {
    h: Handle<Std>,
}

impl UnixDatagram {
    fn wrap(h: Handle<Std>) -> UnixDatagram {
        UnixDatagram { h }
    }

    /// A socket bound to the file `path`.
    ///
    /// # Errors
    ///
    /// As std (`AddrInUse` if the file exists, `InvalidInput` for a path too long, …).
    pub fn bind<P: AsRef<Path>>(path: P) -> io::Result<UnixDatagram> {
        Self::from_std(Std::bind(path)?)
    }

    /// A socket bound to `socket_addr`: a path, or an abstract name
    /// (`SocketAddr::from_abstract_name`, through `std::os::linux::net::SocketAddrExt`).
    ///
    /// ```
    /// use std::os::linux::net::SocketAddrExt;
    /// use std::os::unix::net::SocketAddr;
    /// use bobine::net::UnixDatagram;
    /// let name = format!("bobine-doc-datagram-{}", std::process::id());
    /// let addr = SocketAddr::from_abstract_name(&name).unwrap();
    /// let receiver = UnixDatagram::bind_addr(&addr).unwrap();
    /// UnixDatagram::unbound().unwrap().send_to_addr(b"hi", &addr).unwrap();
    /// let mut buf = [0; 2];
    /// assert_eq!(receiver.recv(&mut buf).unwrap(), 2);
    /// ```
    ///
    /// # Errors
    ///
    /// As std.
    pub fn bind_addr(socket_addr: &SocketAddr) -> io::Result<UnixDatagram> {
        Self::from_std(Std::bind_addr(socket_addr)?)
    }

    /// A socket bound to no address.
    ///
    /// # Errors
    ///
    /// As std.
    pub fn unbound() -> io::Result<UnixDatagram> {
        Self::from_std(Std::unbound()?)
    }

    /// Two sockets connected to each other.
    ///
    /// # Errors
    ///
    /// As std.
    pub fn pair() -> io::Result<(UnixDatagram, UnixDatagram)> {
        let (a, b) = Std::pair()?;
        Ok((Self::from_std(a)?, Self::from_std(b)?))
    }

    /// Connects the socket to the socket bound to `path`: [`UnixDatagram::send`] goes there,
    /// and only datagrams from there are received. Connecting a datagram socket never waits.
    ///
    /// # Errors
    ///
    /// As std (`NotFound`, `ConnectionRefused` for a file that is no socket, …).
    pub fn connect<P: AsRef<Path>>(&self, path: P) -> io::Result<()> {
        self.h.get().connect(path)
    }

    /// Connects the socket to `socket_addr` (a path or an abstract name); see
    /// [`UnixDatagram::connect`].
    ///
    /// # Errors
    ///
    /// As std.
    pub fn connect_addr(&self, socket_addr: &SocketAddr) -> io::Result<()> {
        self.h.get().connect_addr(socket_addr)
    }

    /// The address the socket is bound to.
    ///
    /// # Errors
    ///
    /// As std.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.h.get().local_addr()
    }

    /// The address of the socket this one is connected to.
    ///
    /// # Errors
    ///
    /// `NotConnected` if it is not connected, as std.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.h.get().peer_addr()
    }

    /// Receives a datagram, parking until one arrives; returns its length (at most `buf`'s: the
    /// rest of a longer datagram is dropped) and its sender.
    ///
    /// # Errors
    ///
    /// As std; `WouldBlock` when the read timeout expires.
    #[track_caller]
    pub fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.h
            .op(Dir::Read, "UnixDatagram::recv_from", |s| s.recv_from(buf))
    }

    /// Receives a datagram, parking until one arrives; returns its length.
    ///
    /// # Errors
    ///
    /// As std; `WouldBlock` when the read timeout expires.
    #[track_caller]
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.h.op(Dir::Read, "UnixDatagram::recv", |s| s.recv(buf))
    }

    /// Like [`UnixDatagram::recv`], leaving the datagram queued (`MSG_PEEK`; std has this
    /// method unstable, as `unix_socket_peek`).
    ///
    /// # Errors
    ///
    /// As [`UnixDatagram::recv`].
    #[track_caller]
    pub fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.h.op(Dir::Read, "UnixDatagram::peek", |s| {
            Ok(sock::recv(s.as_raw_fd(), buf, MsgFlags::MSG_PEEK)?)
        })
    }

    /// Like [`UnixDatagram::recv_from`], leaving the datagram queued (`MSG_PEEK`; std has this
    /// method unstable, as `unix_socket_peek`).
    ///
    /// # Errors
    ///
    /// As [`UnixDatagram::recv_from`].
    #[track_caller]
    pub fn peek_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        let (n, from, len) = self.h.op(Dir::Read, "UnixDatagram::peek_from", |s| {
            // Raw: nix's `recvmsg`/`recvfrom` lose an unnamed sender's empty address (or
            // panic on it), and std's `peek_from` is unstable.
            // SAFETY: an all-zero `sockaddr_un` is valid.
            let mut from: libc::sockaddr_un = unsafe { std::mem::zeroed() };
            let mut len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
            // SAFETY: `buf` is writable for its length; `from` has room for `len` bytes, and
            // the kernel writes at most that many, then the length of the sender's address.
            let n = syscall!(recvfrom(
                s.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_PEEK,
                (&mut from as *mut libc::sockaddr_un).cast(),
                &mut len
            ))?;
            Ok((n as usize, from, len))
        })?;
        Ok((n, from_raw_unix_addr(&from, len)?))
    }

    /// Sends a datagram to the socket bound to `path`, parking while it cannot be queued.
    ///
    /// # Errors
    ///
    /// As std (`NotFound`, `ConnectionRefused`, …); `WouldBlock` when the write timeout
    /// expires.
    #[track_caller]
    pub fn send_to<P: AsRef<Path>>(&self, buf: &[u8], path: P) -> io::Result<usize> {
        let path = path.as_ref();
        self.send_with("UnixDatagram::send_to", |s| s.send_to(buf, path))
    }

    /// Sends a datagram to `socket_addr` (a path or an abstract name), parking while it cannot
    /// be queued.
    ///
    /// # Errors
    ///
    /// As [`UnixDatagram::send_to`].
    #[track_caller]
    pub fn send_to_addr(&self, buf: &[u8], socket_addr: &SocketAddr) -> io::Result<usize> {
        self.send_with("UnixDatagram::send_to_addr", |s| {
            s.send_to_addr(buf, socket_addr)
        })
    }

    /// Sends a datagram to the connected peer, parking while it cannot be queued.
    ///
    /// # Errors
    ///
    /// As std (`NotConnected`, `ConnectionRefused` once the peer is gone, `BrokenPipe` after
    /// `shutdown(Write)`); `WouldBlock` when the write timeout expires.
    #[track_caller]
    pub fn send(&self, buf: &[u8]) -> io::Result<usize> {
        self.send_with("UnixDatagram::send", |s| s.send(buf))
    }

    /// Shuts down the read half, the write half or both.
    ///
    /// # Errors
    ///
    /// As std.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.h.get().shutdown(how)
    }

    /// Runs the send `op` until the datagram is queued (see the module doc's steps).
    #[track_caller]
    fn send_with(
        &self,
        reason: &'static str,
        mut op: impl FnMut(&Std) -> io::Result<usize>,
    ) -> io::Result<usize> {
        let deadline = self.h.deadline(Dir::Write);
        let fd = self.as_raw_fd();
        let mut backoff = FULL_BACKOFF_MIN;
        loop {
            // `Ok(None)`: the receiver is full (step 3).
            let sent = self.h.op_until(Dir::Write, deadline, reason, || {
                match op(self.h.get()) {
                    // Step 1.
                    Err(e)
                        if e.kind() == io::ErrorKind::WouldBlock
                            && !self.h.is_nonblocking()
                            && ready_now(fd, Dir::Write)? =>
                    {
                        Ok(None)
                    }
                    // Step 2 (in `op_until`) for `WouldBlock`.
                    r => r.map(Some),
                }
            });
            match sent {
                Ok(Some(n)) => return Ok(n),
                Ok(None) => {}
                Err(TimedOut::Yes) => return Err(io::Error::from_raw_os_error(libc::EAGAIN)),
                Err(TimedOut::No(e)) => return Err(e),
            }
            // Step 3.
            let now = Instant::now();
            let nap = match deadline {
                Some(d) if d <= now => return Err(io::Error::from_raw_os_error(libc::EAGAIN)),
                Some(d) => backoff.min(d - now),
                None => backoff,
            };
            crate::time::sleep(nap);
            backoff = (backoff * 2).min(FULL_BACKOFF_MAX);
        }
    }
}

impl std::fmt::Debug for UnixDatagram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("UnixDatagram");
        d.field("fd", &self.as_raw_fd());
        if let Ok(local) = self.local_addr() {
            d.field("local", &local);
        }
        if let Ok(peer) = self.peer_addr() {
            d.field("peer", &peer);
        }
        d.finish()
    }
}

socket_common!(UnixDatagram, std::os::unix::net::UnixDatagram);
timeouts!(UnixDatagram);
