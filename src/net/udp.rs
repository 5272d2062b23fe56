//! UDP: [`UdpSocket`], with std's signatures.

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::AsRawFd;

use super::addr::each_addr;
use super::handle::Handle;
use super::resolve::socket_addrs;
use crate::sched::reactor::Dir;

/// A UDP socket: `std::net::UdpSocket` for tasks. Receiving parks the calling task until a
/// datagram arrives, sending until the socket has room (a plain OS thread blocks in
/// `poll(2)`); a read or write timeout ends such a wait with `WouldBlock`, as std's do.
///
/// ```
/// use bobine::net::UdpSocket;
/// bobine::run(|| {
///     let a = UdpSocket::bind("127.0.0.1:0").unwrap();
///     let b = UdpSocket::bind("127.0.0.1:0").unwrap();
///     let to = b.local_addr().unwrap();
///     let receiver = bobine::thread::spawn(move || {
///         let mut buf = [0; 16];
///         let (n, _) = b.recv_from(&mut buf).unwrap();
///         buf[..n].to_vec()
///     });
///     a.send_to(b"ping", to).unwrap();
///     assert_eq!(receiver.join().unwrap(), b"ping");
/// });
/// ```
pub struct UdpSocket {
    h: Handle<std::net::UdpSocket>,
}

impl UdpSocket {
    fn wrap(h: Handle<std::net::UdpSocket>) -> UdpSocket {
        UdpSocket { h }
    }

    /// Binds a socket to `addr` (the first address that works). A host name is resolved on the
    /// blocking pool while the task parks ([`lookup_host`](super::lookup_host)); a literal
    /// address is parsed in place.
    ///
    /// # Errors
    ///
    /// As `std::net::UdpSocket::bind`.
    #[track_caller]
    pub fn bind<A: ToSocketAddrs>(addr: A) -> io::Result<UdpSocket> {
        Self::from_std(each_addr(addr, |a| std::net::UdpSocket::bind(a))?)
    }

    /// Receives a datagram, parking until one arrives; returns its length and sender.
    ///
    /// # Errors
    ///
    /// As std; `WouldBlock` when the read timeout expires.
    #[track_caller]
    pub fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.h
            .op(Dir::Read, "UdpSocket::recv_from", |s| s.recv_from(buf))
    }

    /// Like [`UdpSocket::recv_from`], leaving the datagram queued.
    ///
    /// # Errors
    ///
    /// As [`UdpSocket::recv_from`].
    #[track_caller]
    pub fn peek_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.h
            .op(Dir::Read, "UdpSocket::peek_from", |s| s.peek_from(buf))
    }

    /// Sends a datagram to `addr` (its first resolved address; a host name is resolved on the
    /// blocking pool while the task parks, see [`lookup_host`](super::lookup_host)).
    ///
    /// # Errors
    ///
    /// As std; `WouldBlock` when the write timeout expires.
    #[track_caller]
    pub fn send_to<A: ToSocketAddrs>(&self, buf: &[u8], addr: A) -> io::Result<usize> {
        let to = socket_addrs(&addr)?.next().ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "no addresses to send data to")
        })?;
        self.h
            .op(Dir::Write, "UdpSocket::send_to", |s| s.send_to(buf, to))
    }

    /// Sets the peer that [`UdpSocket::send`] and [`UdpSocket::recv`] use (the first address
    /// that works; a host name is resolved on the blocking pool while the task parks).
    ///
    /// # Errors
    ///
    /// As std.
    #[track_caller]
    pub fn connect<A: ToSocketAddrs>(&self, addr: A) -> io::Result<()> {
        each_addr(addr, |a| self.h.get().connect(a))
    }

    /// Sends a datagram to the connected peer.
    ///
    /// # Errors
    ///
    /// As std (`ConnectionRefused` after an ICMP error, …).
    #[track_caller]
    pub fn send(&self, buf: &[u8]) -> io::Result<usize> {
        self.h.op(Dir::Write, "UdpSocket::send", |s| s.send(buf))
    }

    /// Receives a datagram from the connected peer.
    ///
    /// # Errors
    ///
    /// As std.
    #[track_caller]
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.h.op(Dir::Read, "UdpSocket::recv", |s| s.recv(buf))
    }

    /// Like [`UdpSocket::recv`], leaving the datagram queued.
    ///
    /// # Errors
    ///
    /// As std.
    #[track_caller]
    pub fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.h.op(Dir::Read, "UdpSocket::peek", |s| s.peek(buf))
    }

    /// The local address.
    ///
    /// # Errors
    ///
    /// As std.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.h.get().local_addr()
    }

    /// The connected peer's address.
    ///
    /// # Errors
    ///
    /// `NotConnected` if not connected.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.h.get().peer_addr()
    }

    /// Sets `SO_BROADCAST`.
    ///
    /// # Errors
    ///
    /// As std.
    pub fn set_broadcast(&self, on: bool) -> io::Result<()> {
        self.h.get().set_broadcast(on)
    }

    /// Reads `SO_BROADCAST`.
    ///
    /// # Errors
    ///
    /// As std.
    pub fn broadcast(&self) -> io::Result<bool> {
        self.h.get().broadcast()
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

impl std::fmt::Debug for UdpSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UdpSocket")
            .field("addr", &self.local_addr().ok())
            .field("fd", &self.as_raw_fd())
            .finish()
    }
}

socket_common!(UdpSocket, std::net::UdpSocket);
timeouts!(UdpSocket);
