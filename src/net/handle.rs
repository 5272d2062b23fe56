//! The core every bobine socket shares: a std socket whose descriptor is always non-blocking,
//! its readiness [`Source`], and the blocking-style behaviour on top (timeouts, the user's own
//! non-blocking mode).

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::sched::reactor::Dir;
use crate::sched::reactor::poll::{Waited, poll_thread};
use crate::sched::reactor::source::Source;

use nix::fcntl::{FcntlArg, fcntl};
use nix::sys::socket::{MsgFlags, SockaddrStorage};

/// A std socket `T` that looks blocking to tasks and threads (see the module doc).
pub(crate) struct Handle<T: AsRawFd> {
    io: T,
    source: Arc<Source>,
    /// Non-blocking mode and timeouts, shared with the handle's clones (`try_clone`), as std's
    /// are (they live in the open file and the socket, which clones share).
    settings: Arc<Settings>,
    /// Per direction, the readiness tick seen before a stream read or write that moved fewer
    /// bytes than asked (the kernel buffer was emptied, or filled): while the tick has not
    /// moved since, trying again would only give `EAGAIN`, so a task waits at once. `NONE`
    /// when no such hint holds. See [`Handle::op_stream`].
    drained: [AtomicU64; 2],
}

/// A handle's non-blocking mode and timeouts (see [`Handle`]).
#[derive(Default)]
struct Settings {
    /// The user asked for non-blocking behaviour: `WouldBlock` is returned, not waited out.
    nonblocking: AtomicBool,
    /// Timeouts in nanoseconds, 0 for none (a zero timeout is refused, as in std).
    read_timeout: AtomicU64,
    write_timeout: AtomicU64,
}

/// No drained hint.
const NONE: u64 = u64::MAX;

impl<T: AsRawFd> Handle<T> {
    /// Wraps `io`, switching its descriptor to non-blocking mode.
    pub(crate) fn new(io: T) -> io::Result<Handle<T>>
    where
        T: StdSocket,
    {
        io.set_os_nonblocking()?;
        Ok(Self::from_nonblocking(io))
    }

    /// Wraps `io`, whose descriptor is already non-blocking (made with `SOCK_NONBLOCK`).
    pub(crate) fn from_nonblocking(io: T) -> Handle<T> {
        let source = Source::owned(io.as_raw_fd());
        Handle {
            io,
            source,
            settings: Arc::new(Settings::default()),
            drained: [AtomicU64::new(NONE), AtomicU64::new(NONE)],
        }
    }

    pub(crate) fn get(&self) -> &T {
        &self.io
    }

    /// Runs `op` until it does not report `WouldBlock`: on `WouldBlock` the task parks until the
    /// descriptor is ready in `dir` (a plain thread blocks in `poll(2)`), `EINTR` is retried. A
    /// timeout set for `dir` gives `WouldBlock` (`EAGAIN`) when it expires, as std's socket
    /// timeouts do; in non-blocking mode `WouldBlock` is returned at once.
    #[track_caller]
    pub(crate) fn op<R>(
        &self,
        dir: Dir,
        reason: &'static str,
        mut op: impl FnMut(&T) -> io::Result<R>,
    ) -> io::Result<R> {
        let deadline = self.deadline(dir);
        self.op_until(dir, deadline, reason, || op(&self.io))
            .map_err(|e| match e {
                TimedOut::No(e) => e,
                TimedOut::Yes => io::Error::from_raw_os_error(libc::EAGAIN),
            })
    }

    /// [`Handle::op`] for a stream read or write of `len` bytes, which skips a syscall known to
    /// fail (as tokio does). A read that returns fewer bytes than asked has emptied the socket's
    /// receive buffer (a write that takes fewer, filled its send buffer); more can only come
    /// with a new edge, which the domain's epoll reports and which bumps the source's tick. So
    /// while the tick equals the one read before that short operation, a task waits for the
    /// tick to move instead of trying the syscall: an `EAGAIN` saved per message on a
    /// request-response connection. Data that arrived before the short read completed gives a
    /// later event too, which then costs one spurious retry, never a lost wake-up. A final
    /// condition (end of file, hang-up, error) gives no further edge, so once epoll has
    /// reported one ([`Source::finished`]) the syscall is always tried: a short read may have
    /// left an end of file behind it. Plain threads and non-blocking mode always try the
    /// syscall.
    #[track_caller]
    pub(crate) fn op_stream(
        &self,
        dir: Dir,
        reason: &'static str,
        len: usize,
        mut op: impl FnMut(&T) -> io::Result<usize>,
    ) -> io::Result<usize> {
        let hint = &self.drained[dir as usize];
        let in_task = !crate::sched::current_ptr().is_null();
        let mut deadline = None;
        let mut first = true;
        loop {
            let tick = self.source.tick(dir);
            let skip = in_task
                && hint.load(Ordering::Relaxed) == tick
                && !self.source.finished(dir)
                && !self.is_nonblocking();
            if !skip {
                match op(&self.io) {
                    Ok(n) => {
                        let short = n > 0 && n < len;
                        hint.store(if short { tick } else { NONE }, Ordering::Relaxed);
                        return Ok(n);
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock && !self.is_nonblocking() => {}
                    Err(e) => return Err(e),
                }
            }
            if std::mem::take(&mut first) {
                deadline = self.deadline(dir);
            }
            let waited = if in_task {
                self.source.wait(dir, tick, deadline, reason)
            } else {
                poll_thread(self.io.as_raw_fd(), dir, deadline)
            };
            match waited {
                Ok(Waited::Retry) => {}
                Ok(Waited::TimedOut) => return Err(io::Error::from_raw_os_error(libc::EAGAIN)),
                Err(e) => return Err(e),
            }
        }
    }

    /// The deadline of an operation in `dir` starting now.
    pub(crate) fn deadline(&self, dir: Dir) -> Option<Instant> {
        let t = match dir {
            Dir::Read => &self.settings.read_timeout,
            Dir::Write => &self.settings.write_timeout,
        };
        match t.load(Ordering::Relaxed) {
            0 => None,
            ns => Some(Instant::now() + Duration::from_nanos(ns)),
        }
    }

    /// [`Handle::op`] with an explicit deadline; `Err(TimedOut::Yes)` when it passes.
    #[track_caller]
    pub(crate) fn op_until<R>(
        &self,
        dir: Dir,
        deadline: Option<Instant>,
        reason: &'static str,
        mut op: impl FnMut() -> io::Result<R>,
    ) -> Result<R, TimedOut> {
        loop {
            let tick = self.source.tick(dir);
            match op() {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && !self.is_nonblocking() => {
                    let waited = if crate::sched::current_ptr().is_null() {
                        poll_thread(self.io.as_raw_fd(), dir, deadline)
                    } else {
                        self.source.wait(dir, tick, deadline, reason)
                    };
                    match waited {
                        Ok(Waited::Retry) => continue,
                        Ok(Waited::TimedOut) => return Err(TimedOut::Yes),
                        Err(e) => return Err(TimedOut::No(e)),
                    }
                }
                r => return r.map_err(TimedOut::No),
            }
        }
    }

    /// Waits until the descriptor is ready in `dir` (or the deadline passes), without an
    /// operation to try (a connect in progress).
    #[track_caller]
    pub(crate) fn wait_ready(
        &self,
        dir: Dir,
        deadline: Option<Instant>,
        reason: &'static str,
    ) -> Result<(), TimedOut> {
        let fd = self.io.as_raw_fd();
        let mut first = true;
        self.op_until(dir, deadline, reason, || {
            if std::mem::take(&mut first) || !crate::sched::reactor::poll::ready_now(fd, dir)? {
                Err(io::Error::from_raw_os_error(libc::EAGAIN))
            } else {
                Ok(())
            }
        })
    }

    /// Whether the user asked for non-blocking behaviour.
    pub(crate) fn is_nonblocking(&self) -> bool {
        self.settings.nonblocking.load(Ordering::Relaxed)
    }

    /// A second handle on a duplicate of the descriptor, sharing this one's settings.
    pub(crate) fn try_clone(&self) -> io::Result<Handle<T>>
    where
        T: AsFd + From<OwnedFd>,
    {
        let fd = dup(self.io.as_fd())?;
        let mut h = Handle::from_nonblocking(T::from(fd));
        h.settings = self.settings.clone();
        Ok(h)
    }

    pub(crate) fn set_nonblocking(&self, on: bool) {
        self.settings.nonblocking.store(on, Ordering::Relaxed);
    }

    pub(crate) fn set_timeout(&self, dir: Dir, d: Option<Duration>) -> io::Result<()> {
        let ns = match d {
            None => 0,
            Some(d) if d.is_zero() => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "cannot set a 0 duration timeout",
                ));
            }
            Some(d) => d.as_nanos().clamp(1, u64::MAX as u128) as u64,
        };
        match dir {
            Dir::Read => self.settings.read_timeout.store(ns, Ordering::Relaxed),
            Dir::Write => self.settings.write_timeout.store(ns, Ordering::Relaxed),
        }
        Ok(())
    }

    pub(crate) fn timeout(&self, dir: Dir) -> Option<Duration> {
        let ns = match dir {
            Dir::Read => self.settings.read_timeout.load(Ordering::Relaxed),
            Dir::Write => self.settings.write_timeout.load(Ordering::Relaxed),
        };
        (ns != 0).then(|| Duration::from_nanos(ns))
    }

    /// Takes the std socket out (still non-blocking), closing the readiness source.
    pub(crate) fn into_inner(self) -> T {
        let this = std::mem::ManuallyDrop::new(self);
        this.source.close();
        // SAFETY: `this` is never used or dropped again; each field is read out exactly once.
        unsafe {
            drop(std::ptr::read(&this.source));
            std::ptr::read(&this.io)
        }
    }
}

impl<T: AsRawFd> Drop for Handle<T> {
    fn drop(&mut self) {
        // Waiters on the descriptor (raw waits) learn it is going, and the epoll registration
        // goes, before the descriptor is closed (when `io` drops, after this).
        self.source.close();
    }
}

/// Whether an operation with a deadline timed out, or failed otherwise.
pub(crate) enum TimedOut {
    Yes,
    No(io::Error),
}

impl From<io::Error> for TimedOut {
    fn from(e: io::Error) -> Self {
        TimedOut::No(e)
    }
}

/// The std socket types a [`Handle`] wraps, with the one thing `Handle::new` needs from them.
pub(crate) trait StdSocket: AsRawFd {
    /// Puts the descriptor in non-blocking mode (`ioctl(FIONBIO)`).
    fn set_os_nonblocking(&self) -> io::Result<()>;
}

/// std's own `set_nonblocking` makes exactly the `ioctl(FIONBIO)` we need, with no unsafe code
/// on our side; nix has no safe wrapper for that ioctl (only macros that generate unsafe
/// functions), and `fcntl(F_GETFL/F_SETFL)` would take two calls instead of one.
macro_rules! std_socket {
    ($($t:ty),*) => {$(
        impl StdSocket for $t {
            fn set_os_nonblocking(&self) -> io::Result<()> {
                self.set_nonblocking(true)
            }
        }
    )*};
}
std_socket!(
    std::net::TcpListener,
    std::net::TcpStream,
    std::net::UdpSocket,
    std::os::unix::net::UnixListener,
    std::os::unix::net::UnixStream,
    std::os::unix::net::UnixDatagram
);

/// `send(2)` with `MSG_NOSIGNAL`: a closed peer gives `EPIPE`, never `SIGPIPE` (std's Unix
/// stream writes use `write(2)`).
pub(crate) fn send(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    Ok(nix::sys::socket::send(fd, buf, MsgFlags::MSG_NOSIGNAL)?)
}

/// How many bytes a vectored call can move at most: the kernel takes the first `UIO_MAXIOV`
/// slices only (std's `readv` passes no more), so a call that moves fewer bytes than all the
/// slices hold is short only against this (see [`Handle::op_stream`]).
pub(crate) fn vectored_len(lens: impl Iterator<Item = usize>) -> usize {
    lens.take(libc::UIO_MAXIOV as usize).sum()
}

/// `sendmsg(2)` of `bufs` with `MSG_NOSIGNAL` (std's vectored writes use `writev`, which raises
/// `SIGPIPE` on a closed peer).
pub(crate) fn send_vectored(fd: RawFd, bufs: &[std::io::IoSlice<'_>]) -> io::Result<usize> {
    // The kernel refuses more than UIO_MAXIOV slices (EMSGSIZE): pass the first ones only, as
    // a short write.
    let bufs = &bufs[..bufs.len().min(libc::UIO_MAXIOV as usize)];
    // No control data and no address: nix builds the msghdr without allocating.
    let n =
        nix::sys::socket::sendmsg::<SockaddrStorage>(fd, bufs, &[], MsgFlags::MSG_NOSIGNAL, None)?;
    Ok(n)
}

/// Duplicates `fd` (close-on-exec; the lowest free number, as `dup(2)` would give).
pub(crate) fn dup(fd: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    let new = fcntl(fd, FcntlArg::F_DUPFD_CLOEXEC(0))?;
    // SAFETY: fcntl returned a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}
