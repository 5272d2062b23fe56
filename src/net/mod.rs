//! Networking with std's signatures whose blocking calls park the task, not the domain.
//!
//! Every socket here wraps its std counterpart with the descriptor in non-blocking mode. An
//! operation is tried first; on `EAGAIN` the task parks until the domain's epoll reports the
//! socket ready (the socket is registered once, edge-triggered, the first time a task waits on
//! it), then tries again. A plain OS thread using these types blocks in `poll(2)` on the
//! descriptor instead. Timeouts (`set_read_timeout`, `set_write_timeout`, `connect_timeout`)
//! are the domain's timers; they fail the operation as std's do.
//!
//! This module owns the socket types and their non-blocking syscalls (`handle.rs` is the core
//! every socket shares, `common.rs` the methods written once for all of them); readiness comes
//! from the kernel's reactor (`sched::reactor::source`). It must not touch epoll or the
//! scheduler directly.

#[macro_use]
mod common;
mod addr;
mod handle;
mod resolve;
mod tcp;
mod udp;
mod unix;

pub use tcp::{Incoming, TcpListener, TcpStream};

// The socket core, shared with the Miou face's Miou_unix names (`miou::unix`).
pub(crate) use handle::{Handle, TimedOut, send};
pub use resolve::lookup_host;
pub(crate) use tcp::{AcceptBackoff, accept, listen_reuseport};
pub use udp::UdpSocket;
pub use unix::{Incoming as UnixIncoming, UnixListener, UnixStream};

pub use std::net::{
    IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, SocketAddrV4, SocketAddrV6, ToSocketAddrs,
};
