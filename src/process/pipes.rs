//! The parent's ends of a child's piped standard streams: [`ChildStdin`], [`ChildStdout`] and
//! [`ChildStderr`], each a std pipe end in non-blocking mode behind the socket core
//! (`net::Handle`), so that a read or write that would block parks the task (a plain OS
//! thread blocks in `poll(2)`).
//!
//! The O_NONBLOCK rule: the flag lives on the pipe end's open file description, which every
//! holder of the descriptor shares. So whenever an end leaves bobine (given to another child
//! through [`Stdio`], or converted into an [`OwnedFd`] or a raw descriptor), the flag is
//! cleared first: the other program then sees the blocking descriptor it expects.

use std::fmt;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, IntoRawFd, OwnedFd, RawFd};
use std::process::Stdio;

use nix::fcntl::{FcntlArg, OFlag, fcntl};

use crate::net::Handle;
use crate::sched::reactor::Dir;

/// Sets (`on`) or clears O_NONBLOCK on the open file description of `fd`.
///
/// `fcntl(F_GETFL/F_SETFL)` fails only for a descriptor that is not open (`EBADF`), which a
/// pipe end we own never is; callers that cannot report an error ignore it.
fn set_os_nonblocking(fd: BorrowedFd<'_>, on: bool) -> io::Result<()> {
    let flags = OFlag::from_bits_retain(fcntl(fd, FcntlArg::F_GETFL)?);
    let new = if on {
        flags | OFlag::O_NONBLOCK
    } else {
        flags - OFlag::O_NONBLOCK
    };
    if new != flags {
        fcntl(fd, FcntlArg::F_SETFL(new))?;
    }
    Ok(())
}

/// Defines a pipe end type wrapping the std one `$std`, with its conversions.
macro_rules! pipe_end {
    ($(#[$doc:meta])* $name:ident, $std:ty) => {
        $(#[$doc])*
        pub struct $name {
            handle: Handle<$std>,
        }

        impl $name {
            /// Wraps std's end, switching it to non-blocking mode.
            pub(super) fn new(io: $std) -> $name {
                // Cannot fail on an open descriptor (see `set_os_nonblocking`).
                let _ = set_os_nonblocking(io.as_fd(), true);
                $name {
                    handle: Handle::from_nonblocking(io),
                }
            }

            /// Takes std's end out, in blocking mode again (the O_NONBLOCK rule).
            fn into_std(self) -> $std {
                let io = self.handle.into_inner();
                let _ = set_os_nonblocking(io.as_fd(), false);
                io
            }
        }

        impl AsFd for $name {
            fn as_fd(&self) -> BorrowedFd<'_> {
                self.handle.get().as_fd()
            }
        }

        impl AsRawFd for $name {
            fn as_raw_fd(&self) -> RawFd {
                self.handle.get().as_raw_fd()
            }
        }

        /// The descriptor is put back in blocking mode first.
        impl IntoRawFd for $name {
            fn into_raw_fd(self) -> RawFd {
                self.into_std().into_raw_fd()
            }
        }

        /// The descriptor is put back in blocking mode first.
        impl From<$name> for OwnedFd {
            fn from(end: $name) -> OwnedFd {
                OwnedFd::from(end.into_std())
            }
        }

        /// Takes a pipe end (switched to non-blocking mode).
        impl From<OwnedFd> for $name {
            fn from(fd: OwnedFd) -> $name {
                $name::new(<$std>::from(fd))
            }
        }

        /// Hands the end to another child (`a | b`), in blocking mode again.
        impl From<$name> for Stdio {
            fn from(end: $name) -> Stdio {
                Stdio::from(end.into_std())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($name))
                    .field("fd", &self.as_raw_fd())
                    .finish_non_exhaustive()
            }
        }
    };
}

pipe_end!(
    /// The parent's end of a child's standard input ([`Child::stdin`](super::Child::stdin)):
    /// a write that would block parks the task. Closing it (dropping it) gives the child end
    /// of file.
    ///
    /// ```
    /// use std::io::Write;
    /// use bobine::process::{Command, Stdio};
    /// bobine::run(|| {
    ///     let mut child = Command::new("cat")
    ///         .stdin(Stdio::piped())
    ///         .stdout(Stdio::piped())
    ///         .spawn()
    ///         .unwrap();
    ///     child.stdin.take().unwrap().write_all(b"hello").unwrap();
    ///     let out = child.wait_with_output().unwrap();
    ///     assert_eq!(out.stdout, b"hello");
    /// });
    /// ```
    ChildStdin,
    std::process::ChildStdin
);

pipe_end!(
    /// The parent's end of a child's standard output ([`Child::stdout`](super::Child::stdout)):
    /// a read that would block parks the task.
    ///
    /// ```
    /// use std::io::Read;
    /// use bobine::process::{Command, Stdio};
    /// bobine::run(|| {
    ///     let mut child = Command::new("echo").arg("hi").stdout(Stdio::piped()).spawn().unwrap();
    ///     let mut s = String::new();
    ///     child.stdout.take().unwrap().read_to_string(&mut s).unwrap();
    ///     assert_eq!(s, "hi\n");
    ///     assert!(child.wait().unwrap().success());
    /// });
    /// ```
    ChildStdout,
    std::process::ChildStdout
);

pipe_end!(
    /// The parent's end of a child's standard error ([`Child::stderr`](super::Child::stderr)):
    /// a read that would block parks the task.
    ///
    /// ```
    /// use std::io::Read;
    /// use bobine::process::{Command, Stdio};
    /// bobine::run(|| {
    ///     let mut child = Command::new("sh")
    ///         .args(["-c", "echo oops >&2"])
    ///         .stderr(Stdio::piped())
    ///         .spawn()
    ///         .unwrap();
    ///     let mut s = String::new();
    ///     child.stderr.take().unwrap().read_to_string(&mut s).unwrap();
    ///     assert_eq!(s, "oops\n");
    ///     child.wait().unwrap();
    /// });
    /// ```
    ChildStderr,
    std::process::ChildStderr
);

/// A read of up to `buf.len()` bytes from a pipe end: parks while the pipe is empty.
#[track_caller]
fn read_pipe<T: AsFd + AsRawFd>(
    handle: &Handle<T>,
    reason: &'static str,
    buf: &mut [u8],
) -> io::Result<usize> {
    let len = buf.len();
    handle.op_stream(Dir::Read, reason, len, |io| {
        Ok(nix::unistd::read(io.as_fd(), &mut *buf)?)
    })
}

impl Write for ChildStdin {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&*self).write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// As std's: a shared `ChildStdin` writes too.
impl Write for &ChildStdin {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.handle
            .op_stream(Dir::Write, "ChildStdin::write", buf.len(), |io| {
                Ok(nix::unistd::write(io.as_fd(), buf)?)
            })
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Read for ChildStdout {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        read_pipe(&self.handle, "ChildStdout::read", buf)
    }
}

impl Read for ChildStderr {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        read_pipe(&self.handle, "ChildStderr::read", buf)
    }
}

impl ChildStdout {
    /// The socket core, for the concurrent reads of `wait_with_output`.
    pub(super) fn handle(&self) -> &Handle<std::process::ChildStdout> {
        &self.handle
    }
}

impl ChildStderr {
    /// The socket core, for the concurrent reads of `wait_with_output`.
    pub(super) fn handle(&self) -> &Handle<std::process::ChildStderr> {
        &self.handle
    }
}
