//! Unix-domain stream sockets: [`UnixListener`] and [`UnixStream`], with the signatures of
//! `std::os::unix::net`.

use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::net::Shutdown;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use super::handle::{Handle, dup, send_vectored};
use super::tcp::{fd_traits, total_len};
use crate::io::source::Dir;
use crate::io::syscall;

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
    /// Binds a listener to the socket file `path`.
    ///
    /// # Errors
    ///
    /// As std (`AddrInUse` if the file exists, …).
    pub fn bind<P: AsRef<Path>>(path: P) -> io::Result<UnixListener> {
        Self::from_std(std::os::unix::net::UnixListener::bind(path)?)
    }

    /// Wraps a std listener (switching its descriptor to non-blocking mode).
    ///
    /// # Errors
    ///
    /// If the descriptor's mode cannot be changed.
    pub fn from_std(l: std::os::unix::net::UnixListener) -> io::Result<UnixListener> {
        Ok(UnixListener { h: Handle::new(l)? })
    }

    /// The std listener back (its descriptor stays non-blocking).
    pub fn into_std(self) -> std::os::unix::net::UnixListener {
        self.h.into_inner()
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

    /// A second listener on the same socket (a duplicated descriptor).
    ///
    /// # Errors
    ///
    /// If the descriptor cannot be duplicated.
    pub fn try_clone(&self) -> io::Result<UnixListener> {
        let fd = dup(self.as_raw_fd())?;
        Ok(UnixListener {
            h: Handle::from_nonblocking(std::os::unix::net::UnixListener::from(fd)),
        })
    }

    /// In non-blocking mode `accept` returns `WouldBlock` instead of parking.
    ///
    /// # Errors
    ///
    /// Never; the `Result` is std's.
    pub fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        self.h.set_nonblocking(nonblocking);
        Ok(())
    }

    /// Takes the pending socket error (`SO_ERROR`).
    ///
    /// # Errors
    ///
    /// As std.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.h.get().take_error()
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

    /// Wraps a std stream (switching its descriptor to non-blocking mode).
    ///
    /// # Errors
    ///
    /// If the descriptor's mode cannot be changed.
    pub fn from_std(s: std::os::unix::net::UnixStream) -> io::Result<UnixStream> {
        Ok(UnixStream { h: Handle::new(s)? })
    }

    /// The std stream back (its descriptor stays non-blocking).
    pub fn into_std(self) -> std::os::unix::net::UnixStream {
        self.h.into_inner()
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

    /// A second handle on the same connection (a duplicated descriptor).
    ///
    /// # Errors
    ///
    /// If the descriptor cannot be duplicated.
    pub fn try_clone(&self) -> io::Result<UnixStream> {
        let fd = dup(self.as_raw_fd())?;
        let s = UnixStream {
            h: Handle::from_nonblocking(std::os::unix::net::UnixStream::from(fd)),
        };
        s.h.set_timeout(Dir::Read, self.h.timeout(Dir::Read))?;
        s.h.set_timeout(Dir::Write, self.h.timeout(Dir::Write))?;
        Ok(s)
    }

    /// How long a read may wait before it fails with `WouldBlock` (`None`: forever).
    ///
    /// # Errors
    ///
    /// `InvalidInput` for `Some(Duration::ZERO)`, as std.
    pub fn set_read_timeout(&self, dur: Option<Duration>) -> io::Result<()> {
        self.h.set_timeout(Dir::Read, dur)
    }

    /// How long a write may wait before it fails with `WouldBlock` (`None`: forever).
    ///
    /// # Errors
    ///
    /// `InvalidInput` for `Some(Duration::ZERO)`, as std.
    pub fn set_write_timeout(&self, dur: Option<Duration>) -> io::Result<()> {
        self.h.set_timeout(Dir::Write, dur)
    }

    /// The read timeout.
    ///
    /// # Errors
    ///
    /// Never; the `Result` is std's.
    pub fn read_timeout(&self) -> io::Result<Option<Duration>> {
        Ok(self.h.timeout(Dir::Read))
    }

    /// The write timeout.
    ///
    /// # Errors
    ///
    /// Never; the `Result` is std's.
    pub fn write_timeout(&self) -> io::Result<Option<Duration>> {
        Ok(self.h.timeout(Dir::Write))
    }

    /// In non-blocking mode reads and writes return `WouldBlock` instead of parking.
    ///
    /// # Errors
    ///
    /// Never; the `Result` is std's.
    pub fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        self.h.set_nonblocking(nonblocking);
        Ok(())
    }

    /// Takes the pending socket error (`SO_ERROR`).
    ///
    /// # Errors
    ///
    /// As std.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.h.get().take_error()
    }
}

impl std::fmt::Debug for UnixStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnixStream")
            .field("fd", &self.as_raw_fd())
            .finish()
    }
}

impl Read for &UnixStream {
    #[track_caller]
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.h
            .op_stream(Dir::Read, "UnixStream::read", buf.len(), |mut s| {
                s.read(buf)
            })
    }

    #[track_caller]
    fn read_vectored(&mut self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        self.h
            .op_stream(Dir::Read, "UnixStream::read", total_len(bufs), |mut s| {
                s.read_vectored(bufs)
            })
    }
}

impl Write for &UnixStream {
    #[track_caller]
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.h
            .op_stream(Dir::Write, "UnixStream::write", buf.len(), |s| send(s, buf))
    }

    #[track_caller]
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let len = bufs.iter().map(|b| b.len()).sum();
        self.h.op_stream(Dir::Write, "UnixStream::write", len, |s| {
            send_vectored(s.as_raw_fd(), bufs)
        })
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Read for UnixStream {
    #[track_caller]
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&*self).read(buf)
    }

    #[track_caller]
    fn read_vectored(&mut self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        (&*self).read_vectored(bufs)
    }
}

impl Write for UnixStream {
    #[track_caller]
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&*self).write(buf)
    }

    #[track_caller]
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        (&*self).write_vectored(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// `send(2)` with `MSG_NOSIGNAL` (std's Unix stream writes use `write(2)`, which raises
/// `SIGPIPE` on a closed peer).
fn send(s: &std::os::unix::net::UnixStream, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for `buf.len()` bytes.
    let n = syscall!(send(
        s.as_raw_fd(),
        buf.as_ptr().cast(),
        buf.len(),
        libc::MSG_NOSIGNAL
    ))?;
    Ok(n as usize)
}

fd_traits!(UnixListener, std::os::unix::net::UnixListener);
fd_traits!(UnixStream, std::os::unix::net::UnixStream);
