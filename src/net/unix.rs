//! Unix-domain stream sockets: [`UnixListener`] and [`UnixStream`], with the signatures of
//! `std::os::unix::net`.

use std::io;
use std::net::Shutdown;
use std::os::fd::AsRawFd;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use nix::sys::socket::{self as sock, AddressFamily, SockFlag, SockType, UnixAddr};

use super::AcceptBackoff;
use super::handle::Handle;

use crate::sched::reactor::Dir;

/// The size of `sockaddr_un`'s path field (108 bytes on Linux).
const SUN_PATH_LEN: usize =
    std::mem::size_of::<libc::sockaddr_un>() - std::mem::offset_of!(libc::sockaddr_un, sun_path);

/// A Unix-domain socket server: `std::os::unix::net::UnixListener` for tasks. `accept` parks
/// the calling task (a plain OS thread blocks in `poll(2)`). Out of descriptors
/// (`EMFILE`/`ENFILE`), `accept` neither fails nor spins: as [`TcpListener`](super::TcpListener)'s,
/// it reports the condition once on standard error, backs off (1 ms, doubling to 256 ms) and
/// tries again; in non-blocking mode the error is returned at once.
///
/// ```
/// use std::io::{Read, Write};
/// use bobine::net::{UnixListener, UnixStream};
/// bobine::run(|| {
///     let path = std::env::temp_dir().join(format!("bobine-doc-{}.sock", std::process::id()));
///     let _ = std::fs::remove_file(&path);
///     let listener = UnixListener::bind(&path).unwrap();
///     let server = bobine::thread::spawn(move || {
///         let (mut s, _) = listener.accept().unwrap();
///         s.write_all(b"hi").unwrap();
///     });
///     let mut c = UnixStream::connect(&path).unwrap();
///     let mut buf = String::new();
///     c.read_to_string(&mut buf).unwrap();
///     assert_eq!(buf, "hi");
///     server.join().unwrap();
///     std::fs::remove_file(&path).unwrap();
/// });
/// ```
pub struct UnixListener {
    h: Handle<std::os::unix::net::UnixListener>,
    /// `EMFILE`/`ENFILE` was reported already.
    reported: AtomicBool,
}

impl UnixListener {
    fn wrap(h: Handle<std::os::unix::net::UnixListener>) -> UnixListener {
        UnixListener {
            h,
            reported: AtomicBool::new(false),
        }
    }

    /// Binds a listener to the socket file `path`.
    ///
    /// # Errors
    ///
    /// As std (`AddrInUse` if the file exists, …).
    pub fn bind<P: AsRef<Path>>(path: P) -> io::Result<UnixListener> {
        Self::from_std(std::os::unix::net::UnixListener::bind(path)?)
    }

    /// Binds a listener to `socket_addr`: a path, or an abstract name
    /// (`SocketAddr::from_abstract_name`, through `std::os::linux::net::SocketAddrExt`); an
    /// unnamed address gets a fresh abstract name from the kernel (autobind), as in std.
    ///
    /// ```
    /// use std::os::linux::net::SocketAddrExt;
    /// use std::os::unix::net::SocketAddr;
    /// use bobine::net::{UnixListener, UnixStream};
    /// bobine::run(|| {
    ///     let name = format!("bobine-doc-bind-addr-{}", std::process::id());
    ///     let addr = SocketAddr::from_abstract_name(&name).unwrap();
    ///     let listener = UnixListener::bind_addr(&addr).unwrap();
    ///     let local = listener.local_addr().unwrap();
    ///     assert_eq!(local.as_abstract_name(), Some(name.as_bytes()));
    ///     let client = bobine::thread::spawn(move || UnixStream::connect_addr(&addr).is_ok());
    ///     listener.accept().unwrap();
    ///     assert!(client.join().unwrap());
    /// });
    /// ```
    ///
    /// # Errors
    ///
    /// As std (`AddrInUse` for a name or path taken, …).
    pub fn bind_addr(socket_addr: &SocketAddr) -> io::Result<UnixListener> {
        Self::from_std(std::os::unix::net::UnixListener::bind_addr(socket_addr)?)
    }

    /// Accepts a connection, parking until one arrives (see the type's doc for `EMFILE`).
    ///
    /// # Errors
    ///
    /// As std, except `EMFILE`/`ENFILE` (retried) and `ECONNABORTED` (retried); `WouldBlock`
    /// in non-blocking mode when none is pending.
    #[track_caller]
    pub fn accept(&self) -> io::Result<(UnixStream, SocketAddr)> {
        let mut backoff = AcceptBackoff::new();
        loop {
            match self.h.op(Dir::Read, "UnixListener::accept", |l| l.accept()) {
                Ok((s, addr)) => return Ok((UnixStream { h: Handle::new(s)? }, addr)),
                Err(e) => backoff.after(e, &self.h, &self.reported)?,
            }
        }
    }

    /// An endless iterator over incoming connections.
    pub fn incoming(&self) -> Incoming<'_> {
        Incoming { listener: self }
    }

    /// The address the listener is bound to.
    ///
    /// # Errors
    ///
    /// As std.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.h.get().local_addr()
    }
}

impl std::fmt::Debug for UnixListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnixListener")
            .field("fd", &self.as_raw_fd())
            .finish()
    }
}

/// The iterator of [`UnixListener::incoming`]; it never returns `None`.
#[derive(Debug)]
pub struct Incoming<'a> {
    listener: &'a UnixListener,
}

impl Iterator for Incoming<'_> {
    type Item = io::Result<UnixStream>;
    fn next(&mut self) -> Option<io::Result<UnixStream>> {
        Some(self.listener.accept().map(|(s, _)| s))
    }
}

/// A Unix-domain stream: `std::os::unix::net::UnixStream` for tasks (reads and writes park;
/// timeouts give `WouldBlock`; writes to a closed peer give `BrokenPipe`, never `SIGPIPE`).
pub struct UnixStream {
    h: Handle<std::os::unix::net::UnixStream>,
}

impl UnixStream {
    fn wrap(h: Handle<std::os::unix::net::UnixStream>) -> UnixStream {
        UnixStream { h }
    }

    /// Connects to the socket file `path`. While the listener's backlog is full the task
    /// sleeps briefly and tries again (a Unix socket reports no readiness for that).
    ///
    /// # Errors
    ///
    /// As std (`NotFound`, `ConnectionRefused`, `InvalidInput` for a path too long).
    #[track_caller]
    pub fn connect<P: AsRef<Path>>(path: P) -> io::Result<UnixStream> {
        let path = path.as_ref();
        // The same limit and error as before nix: a path that fills `sun_path` has no room for
        // its terminating NUL.
        if path.as_os_str().len() >= SUN_PATH_LEN {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "path must be shorter than SUN_LEN",
            ));
        }
        Self::connect_to(&UnixAddr::new(path)?)
    }

    /// Connects to `socket_addr`: a path, or an abstract name
    /// (`SocketAddr::from_abstract_name`, through `std::os::linux::net::SocketAddrExt`). As
    /// [`UnixStream::connect`], the task sleeps briefly and tries again while the listener's
    /// backlog is full. See [`UnixListener::bind_addr`] for an example.
    ///
    /// # Errors
    ///
    /// As std (`ConnectionRefused` when nobody listens on the name, `InvalidInput` for an
    /// unnamed address).
    #[track_caller]
    pub fn connect_addr(socket_addr: &SocketAddr) -> io::Result<UnixStream> {
        Self::connect_to(&to_unix_addr(socket_addr)?)
    }

    #[track_caller]
    fn connect_to(addr: &UnixAddr) -> io::Result<UnixStream> {
        let fd = sock::socket(
            AddressFamily::Unix,
            SockType::Stream,
            SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
            None,
        )?;
        let mut backoff = Duration::from_millis(1);
        loop {
            let r = sock::connect(fd.as_raw_fd(), addr).map_err(io::Error::from);
            match r {
                Ok(_) => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => {
                    crate::time::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_millis(50));
                }
                Err(e) => return Err(e),
            }
        }
        Ok(UnixStream {
            h: Handle::from_nonblocking(std::os::unix::net::UnixStream::from(fd)),
        })
    }

    /// A connected pair of streams.
    ///
    /// # Errors
    ///
    /// As std.
    pub fn pair() -> io::Result<(UnixStream, UnixStream)> {
        let (a, b) = std::os::unix::net::UnixStream::pair()?;
        Ok((Self::from_std(a)?, Self::from_std(b)?))
    }

    /// The peer's address.
    ///
    /// # Errors
    ///
    /// As std.
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

    /// Shuts down the read half, the write half or both.
    ///
    /// # Errors
    ///
    /// As std.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.h.get().shutdown(how)
    }
}

impl std::fmt::Debug for UnixStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnixStream")
            .field("fd", &self.as_raw_fd())
            .finish()
    }
}

/// `addr` as nix's address type: a path, an abstract name, or unnamed.
fn to_unix_addr(addr: &SocketAddr) -> io::Result<UnixAddr> {
    if let Some(path) = addr.as_pathname() {
        Ok(UnixAddr::new(path)?)
    } else if let Some(name) = addr.as_abstract_name() {
        Ok(UnixAddr::new_abstract(name)?)
    } else {
        Ok(UnixAddr::new_unnamed())
    }
}

/// The address the kernel wrote (`recvfrom`'s sender: `len` bytes of `addr`) as std's type:
/// unnamed when it holds no path, an abstract name when the path starts with a NUL byte, a path
/// (up to its terminating NUL) otherwise.
pub(super) fn from_raw_unix_addr(
    addr: &libc::sockaddr_un,
    len: libc::socklen_t,
) -> io::Result<SocketAddr> {
    let start = std::mem::offset_of!(libc::sockaddr_un, sun_path);
    let path_len = (len as usize).saturating_sub(start).min(SUN_PATH_LEN);
    let bytes = addr.sun_path.map(|c| c as u8);
    let path = &bytes[..path_len];
    match path.first() {
        None => unnamed(),
        Some(0) => SocketAddr::from_abstract_name(&path[1..]),
        Some(_) => {
            let end = path.iter().position(|&b| b == 0).unwrap_or(path.len());
            SocketAddr::from_pathname(std::ffi::OsStr::from_bytes(&path[..end]))
        }
    }
}

/// An unnamed address (a sender that is not bound). std has no constructor for one: the empty
/// path gives it (std's `from_pathname("")` is unnamed); should that ever change, the address
/// of an unbound socket is unnamed by definition.
fn unnamed() -> io::Result<SocketAddr> {
    match SocketAddr::from_pathname("") {
        Ok(addr) if addr.is_unnamed() => Ok(addr),
        _ => std::os::unix::net::UnixDatagram::unbound()?.local_addr(),
    }
}

socket_common!(UnixListener, std::os::unix::net::UnixListener);
socket_common!(UnixStream, std::os::unix::net::UnixStream);
timeouts!(UnixStream);
stream_io!(UnixStream);
