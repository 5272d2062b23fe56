//! Conversions between `std::net::SocketAddr` and the kernel's socket addresses, and the
//! address family of a socket for an address.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use nix::sys::socket::AddressFamily;

/// Room for a socket address the kernel fills in, with its length: what `accept4(2)` writes the
/// peer's address into (addresses we pass to the kernel are nix's `SockaddrStorage`).
pub(crate) struct RawAddr {
    storage: libc::sockaddr_storage,
    len: libc::socklen_t,
}

impl RawAddr {
    /// Room for an address the kernel fills in (`accept`, `recvfrom`).
    pub(crate) fn empty() -> RawAddr {
        RawAddr {
            // SAFETY: an all-zero sockaddr_storage is valid.
            storage: unsafe { std::mem::zeroed() },
            len: std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t,
        }
    }

    pub(crate) fn as_ptr(&self) -> *const libc::sockaddr {
        (&self.storage as *const libc::sockaddr_storage).cast()
    }

    pub(crate) fn as_mut_ptr(&mut self) -> *mut libc::sockaddr {
        (&mut self.storage as *mut libc::sockaddr_storage).cast()
    }

    pub(crate) fn len_mut(&mut self) -> &mut libc::socklen_t {
        &mut self.len
    }

    /// The address the kernel filled in.
    pub(crate) fn to_socket_addr(&self) -> io::Result<SocketAddr> {
        match self.storage.ss_family as libc::c_int {
            libc::AF_INET => {
                // SAFETY: the family says the storage holds a sockaddr_in.
                let sin = unsafe { &*(self.as_ptr() as *const libc::sockaddr_in) };
                Ok(SocketAddr::V4(SocketAddrV4::new(
                    Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes()),
                    u16::from_be(sin.sin_port),
                )))
            }
            libc::AF_INET6 => {
                // SAFETY: the family says the storage holds a sockaddr_in6.
                let sin6 = unsafe { &*(self.as_ptr() as *const libc::sockaddr_in6) };
                Ok(SocketAddr::V6(SocketAddrV6::new(
                    Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                    u16::from_be(sin6.sin6_port),
                    sin6.sin6_flowinfo,
                    sin6.sin6_scope_id,
                )))
            }
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "invalid socket address family",
            )),
        }
    }
}

/// The address family of `socket(2)` for `addr`.
pub(crate) fn domain_of(addr: &SocketAddr) -> AddressFamily {
    match addr {
        SocketAddr::V4(_) => AddressFamily::Inet,
        SocketAddr::V6(_) => AddressFamily::Inet6,
    }
}

/// Resolves `addr` (a host name on the blocking pool, see `net::resolve`) and runs `f` on each
/// address until one succeeds, as std does; the last error otherwise.
#[track_caller]
pub(crate) fn each_addr<A: std::net::ToSocketAddrs, R>(
    addr: A,
    mut f: impl FnMut(&SocketAddr) -> io::Result<R>,
) -> io::Result<R> {
    let mut last = None;
    for a in super::resolve::socket_addrs(&addr)? {
        match f(&a) {
            Ok(r) => return Ok(r),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "could not resolve to any addresses",
        )
    }))
}
