//! UDP: [`UdpSocket`], with std's signatures.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
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

    /// Joins the IPv4 multicast group `multiaddr` on the interface whose address is `interface`
    /// (`Ipv4Addr::UNSPECIFIED`: the kernel's choice) (`IP_ADD_MEMBERSHIP`).
    ///
    /// # Errors
    ///
    /// As std (the kernel's error, for a socket of the other family say).
    pub fn join_multicast_v4(&self, multiaddr: &Ipv4Addr, interface: &Ipv4Addr) -> io::Result<()> {
        self.h.get().join_multicast_v4(multiaddr, interface)
    }

    /// Joins the IPv6 multicast group `multiaddr` on the interface of index `interface` (0: the
    /// kernel's choice) (`IPV6_ADD_MEMBERSHIP`).
    ///
    /// # Errors
    ///
    /// As std (the kernel's error, for a socket of the other family say).
    pub fn join_multicast_v6(&self, multiaddr: &Ipv6Addr, interface: u32) -> io::Result<()> {
        self.h.get().join_multicast_v6(multiaddr, interface)
    }

    /// Leaves an IPv4 multicast group joined with [`UdpSocket::join_multicast_v4`]
    /// (`IP_DROP_MEMBERSHIP`).
    ///
    /// # Errors
    ///
    /// As std (the kernel's error, for a socket of the other family say).
    pub fn leave_multicast_v4(&self, multiaddr: &Ipv4Addr, interface: &Ipv4Addr) -> io::Result<()> {
        self.h.get().leave_multicast_v4(multiaddr, interface)
    }

    /// Leaves an IPv6 multicast group joined with [`UdpSocket::join_multicast_v6`]
    /// (`IPV6_DROP_MEMBERSHIP`).
    ///
    /// # Errors
    ///
    /// As std (the kernel's error, for a socket of the other family say).
    pub fn leave_multicast_v6(&self, multiaddr: &Ipv6Addr, interface: u32) -> io::Result<()> {
        self.h.get().leave_multicast_v6(multiaddr, interface)
    }

    /// Sets `IP_MULTICAST_LOOP`: whether IPv4 multicast datagrams sent from this socket are looped
    /// back to the local host's members of the group.
    ///
    /// # Errors
    ///
    /// As std (the kernel's error, for a socket of the other family say).
    pub fn set_multicast_loop_v4(&self, multicast_loop_v4: bool) -> io::Result<()> {
        self.h.get().set_multicast_loop_v4(multicast_loop_v4)
    }

    /// Reads `IP_MULTICAST_LOOP`.
    ///
    /// # Errors
    ///
    /// As std (the kernel's error, for a socket of the other family say).
    pub fn multicast_loop_v4(&self) -> io::Result<bool> {
        self.h.get().multicast_loop_v4()
    }

    /// Sets `IP_MULTICAST_TTL`: how many hops IPv4 multicast datagrams from this socket may take
    /// (1, the default, keeps them on the local network).
    ///
    /// # Errors
    ///
    /// As std (the kernel's error, for a socket of the other family say).
    pub fn set_multicast_ttl_v4(&self, multicast_ttl_v4: u32) -> io::Result<()> {
        self.h.get().set_multicast_ttl_v4(multicast_ttl_v4)
    }

    /// Reads `IP_MULTICAST_TTL`.
    ///
    /// # Errors
    ///
    /// As std (the kernel's error, for a socket of the other family say).
    pub fn multicast_ttl_v4(&self) -> io::Result<u32> {
        self.h.get().multicast_ttl_v4()
    }

    /// Sets `IPV6_MULTICAST_LOOP`: whether IPv6 multicast datagrams sent from this socket are
    /// looped back to the local host's members of the group.
    ///
    /// # Errors
    ///
    /// As std (the kernel's error, for a socket of the other family say).
    pub fn set_multicast_loop_v6(&self, multicast_loop_v6: bool) -> io::Result<()> {
        self.h.get().set_multicast_loop_v6(multicast_loop_v6)
    }

    /// Reads `IPV6_MULTICAST_LOOP`.
    ///
    /// # Errors
    ///
    /// As std (the kernel's error, for a socket of the other family say).
    pub fn multicast_loop_v6(&self) -> io::Result<bool> {
        self.h.get().multicast_loop_v6()
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
