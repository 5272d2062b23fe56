//! The I/O face: how a task waits for a descriptor without blocking its domain, and how it
//! runs a call that can only block.
//!
//! - [`wait_readable`] and [`wait_writable`] wait on any descriptor through the kernel's
//!   reactor (`sched::reactor`: each domain's epoll, a descriptor registered once,
//!   edge-triggered, the first time a task must wait on it). A plain OS thread (outside any
//!   task) blocks in `poll(2)` on the descriptor instead.
//! - [`unblock`] runs a closure on the blocking pool (`pool`) while the calling task parks.
//! - The private `process` module waits for a child process through a pidfd (or the pool);
//!   `ocaml::thread::wait_pid` and `bobine::process::Child::wait` share it.
//!
//! This module owns the blocking pool's threads and the process waits. It must not touch the
//! reactor's registrations or the scheduler: it only parks, through `sched::park`.

mod pool;
pub(crate) mod process;

use std::os::fd::{AsRawFd, BorrowedFd};

pub use pool::unblock;

use crate::sched::reactor::Dir;
use crate::sched::reactor::source;

/// Waits until `fd` is readable (or at end of file, or in error): parks the task (its domain
/// runs others), or blocks a plain OS thread in `poll(2)`.
///
/// Works for any descriptor epoll or `poll(2)` accepts (sockets, pipes, terminals, eventfds…;
/// a regular file is always ready). If the descriptor is closed while waiting (by a bobine
/// socket being dropped, or behind bobine's back; the latter is noticed within 100 ms), the
/// wait ends with `EBADF`, never with a wake-up for a later descriptor that reuses the number.
///
/// ```
/// use std::io::Write;
/// use std::os::fd::AsFd;
/// bobine::run(|| {
///     let (a, mut b) = std::os::unix::net::UnixStream::pair().unwrap();
///     let reader = bobine::thread::spawn(move || bobine::io::wait_readable(a.as_fd()).is_ok());
///     b.write_all(b"x").unwrap();
///     assert!(reader.join().unwrap());
/// });
/// ```
///
/// # Errors
///
/// `EBADF` for a descriptor that is not open or was closed while waiting; the error of
/// registering it with epoll, if any.
#[track_caller]
pub fn wait_readable(fd: BorrowedFd<'_>) -> std::io::Result<()> {
    source::wait_raw(fd.as_raw_fd(), Dir::Read, None, "io::wait_readable").map(|_| ())
}

/// Waits until `fd` is writable (or in error); see [`wait_readable`].
///
/// # Errors
///
/// As for [`wait_readable`].
#[track_caller]
pub fn wait_writable(fd: BorrowedFd<'_>) -> std::io::Result<()> {
    source::wait_raw(fd.as_raw_fd(), Dir::Write, None, "io::wait_writable").map(|_| ())
}
