//! Networking with std's signatures whose blocking calls park the task, not the domain.
//!
//! Every socket here wraps its std counterpart with the descriptor in non-blocking mode. An
//! operation is tried first; on `EAGAIN` the task parks until the domain's epoll reports the
//! socket ready (the socket is registered once, edge-triggered, the first time a task waits on
//! it), then tries again. A plain OS thread using these types blocks in `poll(2)` on the
//! descriptor instead. Timeouts (`set_read_timeout`, `set_write_timeout`, `connect_timeout`)
//! are the domain's timers; they fail the operation as std's do.
//!
//! What is here:
//!
//! - TCP: [`TcpListener`], [`TcpStream`] (`std::net`'s, plus `TcpListener::bind_reuseport`).
//! - UDP: [`UdpSocket`], with multicast (`join_multicast_v4/v6`, `leave_multicast_v4/v6`,
//!   loop and TTL options) and broadcast.
//! - Unix sockets: [`UnixListener`], [`UnixStream`], [`UnixDatagram`]
//!   (`std::os::unix::net`'s), by path or by `std::os::unix::net::SocketAddr`, so abstract
//!   names too (`bind_addr`, `connect_addr`, `send_to_addr`).
//! - Names: [`lookup_host`] resolves `"host:port"` on the blocking pool while the task parks.
//!   Every call here that takes `impl ToSocketAddrs` does the same for a host name and parses a
//!   literal address in place, never resolving a name on the domain (`resolve.rs` says how it
//!   tells them apart).
//!
//! What is not: std's unstable methods (`TcpStream::set_linger`, `UdpSocket::set_hop_limit`,
//! ancillary data and credentials on Unix sockets), and `ToSocketAddrs` impls of your own that
//! resolve names themselves (they run on the calling thread, as std would run them).
//!
//! This module owns the socket types and their non-blocking syscalls (`handle.rs` is the core
//! every socket shares, `common.rs` the methods written once for all of them, `resolve.rs` the
//! name lookups); readiness comes from the kernel's reactor (`sched::reactor::source`), lookups
//! run on the I/O face's blocking pool (`io::unblock`). It must not touch epoll or the
//! scheduler directly.

#[macro_use]
mod common;
mod addr;
mod handle;
mod resolve;
mod tcp;
mod udp;
mod unix;
mod unix_datagram;

pub use tcp::{Incoming, TcpListener, TcpStream};

// The socket core, shared with the Miou face's Miou_unix names (`miou::unix`).
pub(crate) use handle::{Handle, TimedOut, send};
pub use resolve::lookup_host;
pub(crate) use tcp::{AcceptBackoff, accept, listen_reuseport};
pub use udp::UdpSocket;
pub use unix::{Incoming as UnixIncoming, UnixListener, UnixStream};
pub use unix_datagram::UnixDatagram;

pub use std::net::{
    IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, SocketAddrV4, SocketAddrV6, ToSocketAddrs,
};
