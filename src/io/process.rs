//! Waiting for a child process without blocking the domain: the machinery behind OCaml's
//! `Thread.wait_pid`, kept here so that every face that waits for processes shares it.
//!
//! For a positive pid:
//! 1. Probe with `waitid(P_PID, pid, WEXITED | WNOHANG | WNOWAIT)`: `ECHILD` means it is not a
//!    child of ours, and the wait fails at once (a pidfd would otherwise wait for any process
//!    to end, ours or not). `WNOWAIT` leaves an ended child to be reaped in step 3.
//! 2. Open a pidfd for it (`pidfd_open(2)`, Linux 5.3+) and wait until it is readable, which it
//!    is once the process has ended: the task parks on the domain's epoll like any descriptor
//!    wait (a plain OS thread blocks in `poll(2)`).
//! 3. Reap it with `waitpid(pid, WNOHANG)`.
//! 4. If that found nothing (no pidfd could be had, so step 2 did not wait), wait with a
//!    blocking `waitpid` on the blocking pool while the task parks.
//!
//! Any other pid (`-1`: any child, `0`: any child of our process group, `< -1`: any child of
//! that group) has no pidfd to wait on, and goes straight to step 4.
//!
//! The probe goes through nix. The pidfd is opened with the raw `syscall(2)` (neither libc nor
//! nix wraps `pidfd_open`), and reaping stays on `libc::waitpid`: nix's wait functions decode
//! the status into its `Signal` enum, which cannot hold a real-time signal, so a child killed by
//! `SIGRTMIN + n` would come back as an error instead of its status.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::sys::wait::{Id, WaitPidFlag, waitid};
use nix::unistd::Pid;

use crate::sched::reactor::Dir;
use crate::sched::reactor::source::wait_raw;

/// How a child that [`wait_child`] collected ended (or stopped). Signal numbers are the
/// system's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ChildStatus {
    /// It ended normally with this exit code.
    Exited(i32),
    /// It was killed by this signal.
    Signaled(i32),
    /// It was stopped by this signal.
    Stopped(i32),
}

/// Waits until child `pid` ends (see the module doc for the meaning of `pid <= 0`), reaps it and
/// returns its pid and status; `reason` names the wait in task dumps. The calling task parks;
/// a plain OS thread blocks.
///
/// # Errors
///
/// `ECHILD` if there is no such child; the error of waiting on its pidfd or of `waitpid`.
#[track_caller]
pub(crate) fn wait_child(pid: i32, reason: &'static str) -> io::Result<(i32, ChildStatus)> {
    if pid > 0 {
        // Step 1. Only ECHILD matters: the probe's other outcomes (the child is running, has
        // ended, or nix could not decode a real-time signal, EINVAL) all go on to step 2.
        let probe = waitid(
            Id::Pid(Pid::from_raw(pid)),
            WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT,
        );
        if let Err(Errno::ECHILD) = probe {
            return Err(io::Error::from_raw_os_error(libc::ECHILD));
        }
        // Step 2.
        if let Some(pidfd) = pidfd_open(pid) {
            wait_raw(pidfd.as_raw_fd(), Dir::Read, None, reason)?;
        }
        // Step 3.
        if let Some(reaped) = waitpid(pid, libc::WNOHANG)? {
            return Ok(reaped);
        }
    }
    // Step 4.
    match crate::io::unblock(move || waitpid(pid, 0))? {
        Some(reaped) => Ok(reaped),
        None => unreachable!("a blocking waitpid returns a child"),
    }
}

/// A pidfd for `pid`, or `None` if the kernel gives none (too old, or the process is gone).
fn pidfd_open(pid: i32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open(2) takes a pid and flags and returns a new descriptor or -1; it touches
    // no memory of ours.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: a fresh descriptor that nothing else owns.
    Some(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// `waitpid(2)`, retried on `EINTR`; `None` when `WNOHANG` found nothing yet.
fn waitpid(pid: i32, flags: libc::c_int) -> io::Result<Option<(i32, ChildStatus)>> {
    let mut status: libc::c_int = 0;
    loop {
        // SAFETY: `status` is a valid c_int to write to.
        let r = unsafe { libc::waitpid(pid, &mut status, flags) };
        if r > 0 {
            let st = if libc::WIFEXITED(status) {
                ChildStatus::Exited(libc::WEXITSTATUS(status))
            } else if libc::WIFSIGNALED(status) {
                ChildStatus::Signaled(libc::WTERMSIG(status))
            } else {
                ChildStatus::Stopped(libc::WSTOPSIG(status))
            };
            return Ok(Some((r, st)));
        }
        if r == 0 {
            return Ok(None);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}
