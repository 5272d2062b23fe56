//! Unix-domain stream sockets: [`UnixListener`] and [`UnixStream`], with the signatures of
//! `std::os::unix::net`.

use std::io;
use std::net::Shutdown;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use super::handle::Handle;

use crate::sched::reactor::Dir;
use crate::util::syscall;

/// A Unix-domain socket server: `std::os::unix::net::UnixListener` for tasks. `accept` parks
/// the calling task (a plain OS thread blocks in `poll(2)`).
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
}

impl UnixListener {
    fn wrap(h: Handle<std::os::unix::net::UnixListener>) -> UnixListener {
        UnixListener { h }
    }

    /// Binds a listener to the socket file `path`.
    ///
    /// # Errors
    ///
    /// As std (`AddrInUse` if the file exists, …).
    pub fn bind<P: AsRef<Path>>(path: P) -> io::Result<UnixListener> {
        Self::from_std(std::os::unix::net::UnixListener::bind(path)?)
    }

    /// Accepts a connection, parking until one arrives.
    ///
    /// # Errors
    ///
    /// As std; `WouldBlock` in non-blocking mode when none is pending.
    #[track_caller]
    pub fn accept(&self) -> io::Result<(UnixStream, SocketAddr)> {
        let (s, addr) = self
            .h
            .op(Dir::Read, "UnixListener::accept", |l| l.accept())?;
        Ok((UnixStream { h: Handle::new(s)? }, addr))
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
        let bytes = path.as_ref().as_os_str().as_bytes();
        // SAFETY: an all-zero sockaddr_un is valid.
        let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
        if bytes.len() >= addr.sun_path.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "path must be shorter than SUN_LEN",
            ));
        }
        addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
        for (d, s) in addr.sun_path.iter_mut().zip(bytes) {
            *d = *s as libc::c_char;
        }
        let len = std::mem::size_of::<libc::sa_family_t>() + bytes.len() + 1;
        // SAFETY: socket(2) with valid constants.
        let fd = syscall!(socket(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0
        ))?;
        // SAFETY: socket returned a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let mut backoff = Duration::from_millis(1);
        loop {
            // SAFETY: `addr` is a valid sockaddr_un of at least `len` bytes.
            let r = syscall!(connect(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_un).cast(),
                len as libc::socklen_t
            ));
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

socket_common!(UnixListener, std::os::unix::net::UnixListener);
socket_common!(UnixStream, std::os::unix::net::UnixStream);
timeouts!(UnixStream);
stream_io!(UnixStream);
